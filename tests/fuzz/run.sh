#!/bin/sh
# tests/fuzz/run.sh SECONDS - build the libFuzzer targets (clang, ASan+UBSan,
# tests/fuzz/build.mk), write their seed corpora with the current library
# (gen_seeds), then run each target for SECONDS seconds (0: only replay the
# seeds and the saved corpus). This is what `make fuzz FUZZ_SECONDS=N` runs.
#
# Fails (exit 1) on any crash, sanitizer report, leak, timeout (> 10 s on one
# input) or out-of-memory (> 2048 MB); the input that caused it is kept in
# build/fuzz/artifacts/. The corpus each target grows is kept in
# build/fuzz/corpus/<target>/ and reused by the next run.
#
# Environment: FUZZ_TARGETS="json pack ..." (default: every tests/fuzz/fuzz_*.c),
# FUZZ_JOBS=N targets at a time (default 1), FUZZ_CC (default clang).
set -u
SECONDS_EACH=${1:-60}
case $SECONDS_EACH in '' | *[!0-9]*) echo "usage: tests/fuzz/run.sh SECONDS" >&2; exit 2 ;; esac
cd "$(dirname "$0")/../.." || exit 2
FZ=build/fuzz
FUZZ_CC=${FUZZ_CC:-clang}
JOBS=${FUZZ_JOBS:-1}
if ! command -v "$FUZZ_CC" >/dev/null 2>&1; then
    echo "fuzz: $FUZZ_CC not found (libFuzzer needs clang; 'make deps' installs it)" >&2
    exit 1
fi
ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
echo "fuzz: building targets in $FZ"
if ! make -s -f tests/fuzz/build.mk -j"$ncpu" FZ="$FZ" FUZZ_CC="$FUZZ_CC"; then
    echo "fuzz: build failed" >&2
    exit 1
fi
rm -rf "$FZ/seeds"
if ! "$FZ/gen_seeds" "$FZ/seeds"; then
    echo "fuzz: seed generation failed" >&2
    exit 1
fi
mkdir -p "$FZ/artifacts" "$FZ/logs"
# Files the targets write (index shards, unpacked packs) go to RAM if we can.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then TMPDIR=/dev/shm; export TMPDIR; fi

targets=${FUZZ_TARGETS:-$(for f in tests/fuzz/fuzz_*.c; do n=${f#tests/fuzz/fuzz_}; echo "${n%.c}"; done)}

run_target() {
    t=$1
    bin=$FZ/fuzz_$t
    corpus=$FZ/corpus/$t
    seeds=$FZ/seeds/$t
    log=$FZ/logs/$t.log
    mkdir -p "$corpus" "$seeds"
    if [ "$SECONDS_EACH" = 0 ]; then limit="-runs=0"; else limit="-max_total_time=$SECONDS_EACH"; fi
    start=$(date +%s)
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$bin" $limit -timeout=10 -rss_limit_mb=2048 -detect_leaks=1 -print_final_stats=1 \
        -artifact_prefix="$FZ/artifacts/$t-" "$corpus" "$seeds" >"$log" 2>&1
    rc=$?
    end=$(date +%s)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    [ -n "$execs" ] || execs=0
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | sed 's/cov: //')
    ncorp=$(find "$corpus" -type f | wc -l | tr -d ' ')
    nseed=$(find "$seeds" -type f | wc -l | tr -d ' ')
    secs=$((end - start))
    rate=$((execs / (secs > 0 ? secs : 1)))
    if [ $rc = 0 ]; then verdict=ok; else
        art=$(grep -o "Test unit written to [^ ]*" "$log" | tail -n 1 | sed 's/Test unit written to //')
        kind=$(grep -o -m1 'ERROR: [A-Za-z]*Sanitizer: [a-z-]*\|ERROR: libFuzzer: [a-z-]*\|runtime error: .*\|check failed: .*' "$log" | head -n 1)
        verdict="FAILED (exit $rc: ${kind:-see $log}; input: ${art:-none})"
    fi
    echo "fuzz_$t: $execs executions in $secs s ($rate/s), corpus $ncorp inputs (+ $nseed seeds), coverage ${cov:-?} edges: $verdict"
    [ $rc = 0 ]
}

total=0; failed=0; failures=""; n=0
status_dir=$(mktemp -d)
i=0
for t in $targets; do
    if [ ! -x "$FZ/fuzz_$t" ]; then echo "fuzz: no target fuzz_$t" >&2; failed=$((failed + 1)); failures="$failures $t"; continue; fi
    ( if run_target "$t"; then echo ok >"$status_dir/$t"; else echo fail >"$status_dir/$t"; fi ) &
    i=$((i + 1))
    if [ $i -ge "$JOBS" ]; then wait; i=0; fi
done
wait
for t in $targets; do
    [ -f "$status_dir/$t" ] || continue
    n=$((n + 1))
    e=$(sed -n 's/^stat::number_of_executed_units: *//p' "$FZ/logs/$t.log" | tail -n 1)
    total=$((total + ${e:-0}))
    if [ "$(cat "$status_dir/$t")" != ok ]; then failed=$((failed + 1)); failures="$failures $t"; fi
done
rm -rf "$status_dir"
[ -n "$failures" ] && echo "fuzz: failed:$failures (inputs in $FZ/artifacts, logs in $FZ/logs)"
echo "fuzz: $n targets x ${SECONDS_EACH} s, $total executions, $failed failed"
[ "$failed" = 0 ]
