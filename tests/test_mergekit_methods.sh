#!/bin/sh
# test_mergekit_methods.sh - the mergekit methods and recipes of `hma merge --config`
# against the NumPy reference (tests/test_mergekit_methods.py: every method on the toy
# pair and a 3-model case, mergekit's example recipes in tests/recipes, threads, seed).
# Skipped, with a message, when numpy is missing. Runs under ASan too (about 40 s
# here): the merges of real tensors are where the methods' memory errors would show.
# Environment: HMA_BIN (default examples/hma), PYTHON (default /usr/bin/python3).
set -u
[ "${SAN:-}" = tsan ] && { echo "test_mergekit_methods: skipped under TSan (test_concurrency covers threads)"; exit 0; }
PY=${PYTHON:-/usr/bin/python3}
if ! "$PY" -c "import numpy" 2>/dev/null; then
    echo "test_mergekit_methods: SKIP: numpy is missing for $PY"
    exit 0
fi
exec "$PY" tests/test_mergekit_methods.py --hma "${HMA_BIN:-examples/hma}"
