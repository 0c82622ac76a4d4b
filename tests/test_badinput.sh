#!/bin/sh
# test_badinput.sh - every truncation and every single-byte change of a small
# valid checkpoint (a safetensors file, then a GGUF file with BF16, F32, Q8_0
# and F16 tensors: tests/fuzz/fuzz_common.h fz_gguf) either opens correctly
# or fails with an error naming the file: never a
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

# One format: EXT = safetensors or gguf (the merge output is .safetensors).
sweep_format() {
ext=$1
start=$(date +%s)
if [ "$FULL" = 1 ]; then "$drv" sweep "$tmp" full "$ext" || fail=1; else "$drv" sweep "$tmp" "$ext" || fail=1; fi
mid=$(date +%s)

# ---- through the real program ------------------------------------------------
set -- $("$drv" count "$tmp/model.$ext")
nvar=$1 len=$2
v=$tmp/v.$ext
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
    "$drv" variant "$tmp/model.$ext" $k "$v" || { report $k "cannot write"; break; }

    "$HMA_BIN" inspect "$v" >"$tmp/o" 2>"$tmp/e"
    rc=$?
    case $rc in
    0) inspect_ok=$((inspect_ok + 1)); [ -s "$tmp/e" ] && report $k "inspect exit 0 wrote to stderr: $(head -c 300 "$tmp/e")" ;;
    1) inspect_err=$((inspect_err + 1)); one_line "$tmp/e" || report $k "inspect exit 1 without exactly one stderr line: $(head -c 600 "$tmp/e")"
       grep -qF "$v" "$tmp/e" || report $k "inspect error does not name $v: $(head -c 300 "$tmp/e")" ;;
    *) report $k "inspect exit $rc: $(head -c 2000 "$tmp/e")" ;;
    esac

    if [ $((k % 2)) = 0 ]; then set -- --base "$tmp/base.$ext" --model "$v"
    else set -- --base "$v" --model "$tmp/model.$ext"; fi
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
echo "test_badinput: $ext: $HMA_BIN on $ran of $nvar variants: inspect $inspect_ok ok / $inspect_err refused, merge $merge_ok ok / $merge_err refused ($((mid - start)) s in-process, $((end - mid)) s program)"
}
sweep_format safetensors
[ $fail = 0 ] && sweep_format gguf

# ---- the real toy GGUF files: targeted corruptions ---------------------------
# tests/toy_gguf_variants.py: truncations, huge counts and lengths, bad types,
# dimensions, offsets and alignment in examples/data/toy-llama/*.gguf, each
# through `hma inspect` and `hma merge` (with the intact other file; output
# .safetensors). Under SAN=asan this runs the program under ASan.
PY=${PYTHON:-python3}
toy=examples/data/toy-llama
tstart=$(date +%s); toyn=0; toy_ok=0; toy_err=0
if command -v "$PY" >/dev/null 2>&1; then
for f in base-q8_0 base; do
    [ $fail = 0 ] || break
    k=0
    while [ $fail = 0 ]; do
        v=$tmp/toy.gguf
        "$PY" tests/toy_gguf_variants.py "$toy/$f.gguf" $k "$v"
        rc=$?
        [ $rc = 3 ] && break
        [ $rc = 0 ] || { report "toy $f $k" "cannot write the variant"; break; }
        toyn=$((toyn + 1))
        "$HMA_BIN" inspect "$v" >/dev/null 2>"$tmp/e"
        rc=$?
        case $rc in
        0) [ -s "$tmp/e" ] && report "toy $f $k" "inspect exit 0 wrote to stderr: $(head -c 300 "$tmp/e")" ;;
        1) one_line "$tmp/e" || report "toy $f $k" "inspect exit 1 without exactly one stderr line: $(head -c 600 "$tmp/e")"
           grep -qF "$v" "$tmp/e" || report "toy $f $k" "inspect error does not name $v: $(head -c 300 "$tmp/e")" ;;
        *) report "toy $f $k" "inspect exit $rc: $(head -c 2000 "$tmp/e")" ;;
        esac
        out=$tmp/out/merged.safetensors
        "$HMA_BIN" merge --base "$v" --model "$toy/aligned${f#base}.gguf" --alpha 0.5 -q -o "$out" >/dev/null 2>"$tmp/e"
        rc=$?
        case $rc in
        0) toy_ok=$((toy_ok + 1))
           "$HMA_BIN" inspect "$out" >/dev/null 2>"$tmp/e2" || report "toy $f $k" "merge exit 0 but the output does not inspect"
           rm -f "$out" ;;
        1) toy_err=$((toy_err + 1))
           one_line "$tmp/e" || report "toy $f $k" "merge exit 1 without exactly one stderr line: $(head -c 600 "$tmp/e")"
           grep -qF "$v" "$tmp/e" || report "toy $f $k" "merge error does not name $v: $(head -c 300 "$tmp/e")"
           [ -z "$(ls -A "$tmp/out")" ] || report "toy $f $k" "failed merge left files: $(ls -A "$tmp/out")" ;;
        *) report "toy $f $k" "merge exit $rc: $(head -c 2000 "$tmp/e")" ;;
        esac
        k=$((k + 1))
    done
done
rm -f "$tmp/toy.gguf"
echo "test_badinput: toy GGUF: $toyn corruptions of $toy/{base-q8_0,base}.gguf: merge $toy_ok ok / $toy_err refused ($(($(date +%s) - tstart)) s)"
else
    echo "test_badinput: toy GGUF corruptions skipped ($PY not found)"
fi
[ $fail = 0 ] && echo "test_badinput: ok" || echo "test_badinput: FAILED"
[ $fail = 0 ]
