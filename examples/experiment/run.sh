#!/bin/sh
# examples/experiment/run.sh - the main job (`make run`): the alignment-tax experiment of
# Lin et al. (EMNLP 2024) on the built-in toy checkpoint pair. Usage:
#   sh examples/experiment/run.sh [HMA_PROGRAM]      (default examples/hma)
# Writes build/run/: table.md (the table), experiment.svg (the plot),
# results.csv and candidates.csv (every search candidate); progress goes to stderr.
# About 2.5 minutes on 2 idle cores; docs/experiment.md explains every setting.
set -eu
HMA=${1:-examples/hma}
DATA=${HMA_TOY_DIR:-examples/data/toy-llama}
OUT=${HMA_RUN_OUT:-build/run}
mkdir -p "$OUT"

echo "libhma main job: averaging a model before and after 'alignment' (toy-llama, $DATA)."
echo "MA  theta = (1-a) base + a aligned for a = 0 ... 1; HMA: one ratio per block of layers"
echo "(K = 3, mean fixed). Scores in bits/byte on eval.bin: code = forgetting, prose ="
echo "alignment, lower is better. Progress below, then the table (also in $OUT/table.md)."
echo

start=$(date +%s)
status=0
"$HMA" search --base "$DATA/base.safetensors" --model "$DATA/aligned.safetensors" \
    --eval "$DATA/eval.bin" --groups blocks:3 \
    --ma 0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9 --means 0.5,0.7 \
    --budget 6 --search-rows 16 --seed 0 --threads 2 --out "$OUT" > "$OUT/table.md" || status=$?
echo
cat "$OUT/table.md"
echo
echo "finished in $(($(date +%s) - start)) s"
exit $status
