#!/bin/sh
# Runs every test program given as arguments, then every tests/*.sh script and
# the Python tests, and ends with one line "N passed, N failed".
# Environment: HMA_BIN (the hma program), LIBOUT (library folder), BUILD, PYTHON, SAN.
passed=0; failed=0; failures=""
run_one() {
    name=$1; shift
    if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures="$failures $name"; fi
}
for t in "$@"; do
    echo "== $t"
    if [ "$SAN" = "" ] && [ -n "$HMA_VALGRIND" ]; then
        run_one "$t" valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect "$t"
    else
        run_one "$t" "$t"
    fi
done
for s in tests/*.sh; do
    [ "$s" = tests/run_all.sh ] && continue
    [ -f "$s" ] || continue
    echo "== $s"
    run_one "$s" sh "$s"
done
if [ -d tests/python ] && [ -z "$SAN" ]; then
    echo "== tests/python"
    case "$LIBOUT" in /*) libdir=$LIBOUT ;; *) libdir=$PWD/$LIBOUT ;; esac
    run_one tests/python env HMA_LIBRARY="$libdir/libhma.so.1" "$PYTHON" -m unittest discover -s tests/python -t . -q
fi
[ -n "$failures" ] && echo "failed:$failures"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
