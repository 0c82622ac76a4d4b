#!/bin/sh
# docs/api.md is generated from include/hma.h; fail when someone changed the
# header without regenerating it (`make docs`).
set -u
tmp=$(mktemp); trap 'rm -f "$tmp"' EXIT
${PYTHON:-/usr/bin/python3} tools/gen-api-doc.py include/hma.h > "$tmp" || exit 1
if ! cmp -s "$tmp" docs/api.md; then
    echo "test_docs: docs/api.md is out of date with include/hma.h; run 'make docs'"
    diff -u docs/api.md "$tmp" | head -20
    exit 1
fi
for f in docs/format.md docs/api.md; do
    [ -f "$f" ] || { echo "test_docs: $f missing"; exit 1; }
done
echo "test_docs: docs/api.md matches include/hma.h: ok"
