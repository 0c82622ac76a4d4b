#!/bin/sh
# Runs every test program given as arguments, then every tests/*.sh script and
# the Python tests, and ends with one line "N passed, N failed".
# Environment: HMA_BIN (the hma program), LIBOUT (library folder), BUILD, PYTHON, SAN;
# HMA_VALGRIND=1 runs the programs under valgrind memcheck (not with SAN);
# HMA_PROGRAMS_ONLY=1 runs only the programs given (no scripts, no Python).
passed=0; failed=0; failures=""
run_one() {
    name=$1; shift
    if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures="$failures $name"; fi
}
for t in "$@"; do
    echo "== $t"
    t0=$(date +%s)
    if [ "$SAN" = "" ] && [ -n "$HMA_VALGRIND" ]; then
        # nouserintercepts: a test's own malloc wrapper (test_faults) stays in
        # place; it calls glibc's __libc_malloc, which valgrind still tracks.
        # fair-sched: valgrind runs one thread at a time; without a fair lock,
        # 8 busy merge threads starve the one that sleeps between its 200
        # steps (test_concurrent_merge_tensor: 511 s instead of about 30).
        run_one "$t" valgrind -q --fair-sched=yes --error-exitcode=99 --leak-check=full \
            --errors-for-leak-kinds=definite,indirect --soname-synonyms=somalloc=nouserintercepts "$t"
    else
        run_one "$t" "$t"
    fi
    echo "== $t: $(( $(date +%s) - t0 )) s"
done
if [ -n "$HMA_PROGRAMS_ONLY" ]; then
    [ -n "$failures" ] && echo "failed:$failures"
    echo "$passed passed, $failed failed"
    [ "$failed" = 0 ]
    exit
fi
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
