#!/bin/sh
# abi/check.sh LIB           compare LIB with the committed ABI baseline
# abi/check.sh --update LIB  rewrite the baseline from LIB (then commit it)
#
# The baseline is abi/libhma.abi (abidw, Debian abigail-tools, public types
# only: --headers-dir include) and abi/symbols.txt (the sorted exported
# symbols). The check fails when a function or variable is removed or its
# type changes in any way abidiff sees (sizes, fields, enumerators, ...);
# added functions are listed and allowed here (tests/test_abi.sh still wants
# them recorded in abi/symbols.txt, so each addition is reviewed).
set -u
cd "$(dirname "$0")/.." || exit 2
update=0
if [ "${1:-}" = --update ]; then update=1; shift; fi
lib=${1:-lib/libhma.so.1}
[ -e "$lib" ] || { echo "abi-check: $lib missing (make lib)"; exit 2; }
for tool in abidw abidiff; do
    command -v $tool >/dev/null || { echo "abi-check: $tool missing (apt-get install abigail-tools)"; exit 2; }
done
syms() { nm -D --defined-only "$1" | awk '{print $3}' | sed 's/@.*//' | grep -v '^HMA_1\.0$' | LC_ALL=C sort -u; }
# No absolute paths in the XML: the baseline is the same from any checkout
# folder. Source locations stay: abidiff needs them to tell public types (from
# include/) from private ones (so that a changed private struct behind an
# opaque handle is not reported); a regenerated baseline therefore also shows
# moved line numbers, which abidiff ignores.
dump() { abidw --no-corpus-path --no-comp-dir-path --headers-dir include --out-file "$2" "$1"; }

if [ "$update" = 1 ]; then
    dump "$lib" abi/libhma.abi || exit 1
    syms "$lib" >abi/symbols.txt
    echo "abi-update: wrote abi/libhma.abi and abi/symbols.txt ($(wc -l <abi/symbols.txt) symbols) from $lib; review and commit them"
    exit 0
fi

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
fail=0
syms "$lib" >"$tmp/symbols.txt"
removed=$(LC_ALL=C comm -23 abi/symbols.txt "$tmp/symbols.txt")
added=$(LC_ALL=C comm -13 abi/symbols.txt "$tmp/symbols.txt")
if [ -n "$removed" ]; then
    echo "abi-check: exported symbols removed (breaks every program using them):"; echo "$removed" | sed 's/^/  - /'
    fail=1
fi
[ -n "$added" ] && { echo "abi-check: new exported symbols (allowed; record them with make abi-update):"; echo "$added" | sed 's/^/  + /'; }

abidiff --hd1 include --hd2 include abi/libhma.abi "$lib" >"$tmp/diff.txt" 2>&1
rc=$?
# abidiff's exit status is a bit set: 1 error, 2 usage, 4 ABI change, 8 incompatible change.
if [ $((rc & 3)) -ne 0 ]; then
    cat "$tmp/diff.txt"; echo "abi-check: abidiff failed (status $rc)"; exit 2
fi
if [ $((rc & 12)) -ne 0 ]; then
    # Only additions are allowed: every "Removed" and "Changed" count must be 0.
    bad=$(grep -E 'summary:' "$tmp/diff.txt" | grep -E '[1-9][0-9]* (Removed|Changed)' || true)
    if [ $((rc & 8)) -ne 0 ] || [ -n "$bad" ]; then
        cat "$tmp/diff.txt"
        echo "abi-check: incompatible ABI change against abi/libhma.abi (see above)."
        echo "  If the change is intended (and the SONAME/version policy in docs/reliability.md allows it), run make abi-update and commit."
        fail=1
    else
        sed -n '/summary:/p' "$tmp/diff.txt"
    fi
fi
[ "$fail" = 0 ] || exit 1
echo "abi-check: $(wc -l <"$tmp/symbols.txt") exported symbols; no removed or changed functions, variables or types against abi/libhma.abi: ok"
