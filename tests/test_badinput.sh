#!/bin/sh
# test_badinput.sh - every truncation and every single-byte change of a small
# valid checkpoint either opens correctly or fails with an error: never a
# crash, a sanitizer report or an out-of-bounds read, for `hma inspect` and
# `hma merge`.
#  1. tests/fuzz/badinput_sweep.c (built here against $LIBOUT, with ASan when
#     SAN=asan) runs every variant in-process through what the two commands
#     do: the store in both modes, every byte read, a merge to a file.
#  2. A sample of the variants goes through the real program $HMA_BIN:
#     inspect exits 0 (nothing on stderr) or 1 (exactly one stderr line);
#     merge exits 0 with an output that inspects cleanly, or 1 with one
#     stderr line and nothing under the output name.
# Default (make test): every truncation + one replacement value per byte
# in-process, ~1 in 8 variants through the program. HMA_BADINPUT_FULL=1: all
# five replacement values per byte in-process and every truncation + one
# change per byte through the program (for .ci/run under SAN=asan).
set -u
cd "$(dirname "$0")/.." || exit 1
HMA_BIN=${HMA_BIN:-examples/hma}
BUILD=${BUILD:-build}
LIBOUT=${LIBOUT:-lib}
SAN=${SAN:-}
# Build the driver with the compiler that built the library (mixing gcc's and
# clang's ASan runtimes does not work): clang leaves its name in .comment.
if [ -z "${CC:-}" ]; then
    CC=cc
    if readelf -p .comment "${LIBOUT:-lib}/libhma.so" 2>/dev/null | grep -q "clang version"; then CC=clang; fi
fi
FULL=${HMA_BADINPUT_FULL:-0}
[ -x "$HMA_BIN" ] || { echo "test_badinput: $HMA_BIN not built" >&2; exit 1; }
case $LIBOUT in /*) libabs=$LIBOUT ;; *) libabs=$PWD/$LIBOUT ;; esac

case $SAN in
asan) sanflags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" ;;
tsan) sanflags="-fsanitize=thread" ;;
*) sanflags="" ;;
esac
# A sanitizer report must never pass for an ordinary "exit 1".
ASAN_OPTIONS="exitcode=86:detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
UBSAN_OPTIONS="exitcode=87:print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
TSAN_OPTIONS="exitcode=88${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
export ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS

drv=$BUILD/tests/badinput_sweep
mkdir -p "$BUILD/tests"
# shellcheck disable=SC2086
if ! $CC -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror $sanflags -Iinclude -Itests/fuzz \
    -o "$drv" tests/fuzz/badinput_sweep.c -L"$LIBOUT" -Wl,-rpath,"$libabs" -lhma -lpthread -lm; then
    echo "test_badinput: cannot build $drv" >&2
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hma-badinput-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
fail=0
"$drv" write "$tmp" || exit 1

start=$(date +%s)
if [ "$FULL" = 1 ]; then "$drv" sweep "$tmp" full || fail=1; else "$drv" sweep "$tmp" || fail=1; fi
mid=$(date +%s)

# ---- through the real program ------------------------------------------------
set -- $("$drv" count "$tmp/model.safetensors")
nvar=$1 len=$2
v=$tmp/v.safetensors
out=$tmp/out/merged.safetensors
mkdir -p "$tmp/out"
ran=0 inspect_ok=0 inspect_err=0 merge_ok=0 merge_err=0
report() { echo "test_badinput: variant $1: $2" >&2; fail=1; }
one_line() { [ "$(wc -l <"$1")" -eq 1 ] && [ -s "$1" ]; }

k=0
while [ $k -lt "$nvar" ] && [ $fail = 0 ]; do
    # which variants: FULL: truncations + one value per byte (rotating);
    # default: every 8th of those.
    take=0
    if [ $k -lt "$len" ]; then take=1
    else r=$(( (k - len) % 5 )); p=$(( (k - len) / 5 )); [ $r -eq $((p % 5)) ] && take=1; fi
    if [ $take = 1 ] && [ "$FULL" != 1 ] && [ $((k % 8)) != 3 ]; then take=0; fi
    if [ $take = 0 ]; then k=$((k + 1)); continue; fi
    ran=$((ran + 1))
    "$drv" variant "$tmp/model.safetensors" $k "$v" || { report $k "cannot write"; break; }

    "$HMA_BIN" inspect "$v" >"$tmp/o" 2>"$tmp/e"
    rc=$?
    case $rc in
    0) inspect_ok=$((inspect_ok + 1)); [ -s "$tmp/e" ] && report $k "inspect exit 0 wrote to stderr: $(head -c 300 "$tmp/e")" ;;
    1) inspect_err=$((inspect_err + 1)); one_line "$tmp/e" || report $k "inspect exit 1 without exactly one stderr line: $(head -c 600 "$tmp/e")" ;;
    *) report $k "inspect exit $rc: $(head -c 2000 "$tmp/e")" ;;
    esac

    if [ $((k % 2)) = 0 ]; then set -- --base "$tmp/base.safetensors" --model "$v"
    else set -- --base "$v" --model "$tmp/model.safetensors"; fi
    "$HMA_BIN" merge "$@" --alpha 0.5 -q -o "$out" >"$tmp/o" 2>"$tmp/e"
    rc=$?
    case $rc in
    0)
        merge_ok=$((merge_ok + 1))
        "$HMA_BIN" inspect "$out" >/dev/null 2>"$tmp/e2" || report $k "merge exit 0 but the output does not inspect: $(head -c 300 "$tmp/e2")"
        rm -f "$out" ;;
    1)
        merge_err=$((merge_err + 1))
        one_line "$tmp/e" || report $k "merge exit 1 without exactly one stderr line: $(head -c 600 "$tmp/e")"
        [ -e "$out" ] && report $k "failed merge left $out"
        [ -z "$(ls -A "$tmp/out")" ] || report $k "failed merge left files: $(ls -A "$tmp/out")" ;;
    *) report $k "merge exit $rc: $(head -c 2000 "$tmp/e")" ;;
    esac
    k=$((k + 1))
done
end=$(date +%s)
echo "test_badinput: $HMA_BIN on $ran of $nvar variants: inspect $inspect_ok ok / $inspect_err refused, merge $merge_ok ok / $merge_err refused ($((mid - start)) s in-process, $((end - mid)) s program)"
[ $fail = 0 ] && echo "test_badinput: ok" || echo "test_badinput: FAILED"
[ $fail = 0 ]
