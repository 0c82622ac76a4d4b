#!/bin/sh
# run.sh - what `make bench` runs: builds the benchmark programs with cc into
# $BUILD/bench (linking the shared library in $LIBOUT), then runs the merge
# benchmark (bench/bench_merge.c: floor, libhma 1 and 2 threads, the hma
# program, PyTorch when importable) on a generated 2 x 2.2 GB BF16 pair, then
# the mergekit benchmark (bench/bench_mergekit.c: 3-model TIES and DARE
# recipes through `hma merge --config`, against the 3-input floor and
# mergekit's math in PyTorch, bench/torch_mergekit.py), then
# the delta-pack benchmark (bench/pack_bench.c: ratios and one-core codec
# speed on the toy pair, against the goals) and bench/pack_regimes.c
# (DIFF16 against DIFF on light fine-tunes).
#   sh bench/run.sh [HMA_BIN]
# Environment: CC, BUILD (default build), LIBOUT (default lib), PYTHON,
# HMA_BENCH_DIR, HMA_BENCH_LAYERS (default 22), HMA_BENCH_REPS (default 3),
# HMA_BENCH_ONLY (merge, mergekit or pack: run that part only; default all).
set -e
HMA_BIN=${1:-examples/hma}
CC=${CC:-cc}
BUILD=${BUILD:-build}
LIBOUT=${LIBOUT:-lib}
OUT=$BUILD/bench
mkdir -p "$OUT"
[ -e "$LIBOUT/libhma.so" ] || { echo "bench/run.sh: no $LIBOUT/libhma.so (run make first)" >&2; exit 2; }
LIBABS=$(cd "$LIBOUT" && pwd)
FLAGS="-std=c11 -D_GNU_SOURCE -O2 -g -pthread -ffp-contract=off -Wall -Wextra -Iinclude"
$CC $FLAGS -o "$OUT/gen_pair" bench/gen_pair.c
$CC $FLAGS -o "$OUT/bench_merge" bench/bench_merge.c bench/floor.c bench/bench_util.c \
    -L"$LIBOUT" -Wl,-rpath,"$LIBABS" -lhma -lopenblas -lzstd -lpthread -lm
$CC $FLAGS -o "$OUT/bench_mergekit" bench/bench_mergekit.c bench/floor.c bench/bench_util.c \
    -L"$LIBOUT" -Wl,-rpath,"$LIBABS" -lhma -lopenblas -lzstd -lpthread -lm
# pack_bench times the codec itself, so it links the static library and sees src/.
$CC $FLAGS -Isrc -o "$OUT/pack_bench" bench/pack_bench.c "$LIBOUT/libhma.a" -lzstd -lopenblas -lpthread -lm
$CC $FLAGS -Isrc -o "$OUT/pack_regimes" bench/pack_regimes.c "$LIBOUT/libhma.a" -lzstd -lopenblas -lpthread -lm
[ -x "$HMA_BIN" ] || { echo "bench/run.sh: note: no $HMA_BIN, skipping the CLI timing"; HMA_BIN=; }
ONLY=${HMA_BENCH_ONLY:-all}
case $ONLY in all|merge|mergekit|pack) ;; *) echo "bench/run.sh: HMA_BENCH_ONLY=$ONLY: not merge, mergekit or pack" >&2; exit 2;; esac
rc=0
if [ "$ONLY" = all ] || [ "$ONLY" = merge ]; then
    "$OUT/bench_merge" "$OUT/gen_pair" $HMA_BIN || rc=$?
    echo
fi
if [ "$ONLY" = all ] || [ "$ONLY" = mergekit ]; then
    echo "== mergekit methods (3-model TIES and DARE recipes, hma merge --config)"
    # Needs the hma program: without it bench_mergekit says so and exits 2.
    "$OUT/bench_mergekit" "$OUT/gen_pair" "$HMA_BIN" || rc=$?
    echo
fi
if [ "$ONLY" = all ] || [ "$ONLY" = pack ]; then
    echo "== delta packs (toy pair, one core, CPU time, best of 15)"
    "$OUT/pack_bench" --reps 15 || rc=$?
    echo
    echo "== delta packs on light fine-tunes (toy base plus small steps; no goal)"
    "$OUT/pack_regimes" || rc=$?
fi
exit $rc
