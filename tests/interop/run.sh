#!/bin/sh
# tests/interop/run.sh - `make interop`: install node-llama-cpp 3.21.1 (npm,
# prebuilt CPU llama.cpp) into build/interop once, then score the toy GGUF
# files with llama.cpp and compare with `hma eval` of the same weights
# (tests/interop/score.mjs; docs/interop.md). INTEROP_ROWS rows per set
# (default 4). Needs node >= 20 and npm (the registry only for the install).
set -u
cd "$(dirname "$0")/../.." || exit 2
ROWS=${INTEROP_ROWS:-4}
T=examples/data/toy-llama
command -v node >/dev/null 2>&1 || { echo "interop: node not found" >&2; exit 1; }
if [ ! -d build/interop/node_modules/node-llama-cpp ]; then
    mkdir -p build/interop
    # exit 3: the registry could not be reached (CI reports the stage as skipped, loudly)
    (cd build/interop && npm i -E --no-audit --no-fund node-llama-cpp@3.21.1) || { echo "interop: npm install failed: SKIPPED (no registry?)" >&2; rm -rf build/interop/node_modules; exit 3; }
fi
fail=0
node tests/interop/score.mjs --gguf $T/base.gguf --ref $T/base.safetensors --rows "$ROWS" || fail=1
node tests/interop/score.mjs --gguf $T/aligned-q8_0.gguf --ref $T/aligned.safetensors --rows "$ROWS" || fail=1
# libhma's merged GGUF outputs: llama.cpp must load them and score them as
# the C evaluator scores the same merge of the safetensors pair (MA and HMA,
# from BF16 inputs, from Q8_0 inputs (requantized to Q8_0), and a Q8_0 base
# with a BF16 aligned model).
HMA=${HMA_BIN:-examples/hma}
O=build/interop/out
rm -rf "$O" && mkdir -p "$O"
REF="base=$T/base.safetensors;model=$T/aligned.safetensors"
merge_check() { # NAME BASE MODEL ALPHA [GROUPS]
    name=$1 b=$2 m=$3 a=$4 g=${5:-}
    if [ -n "$g" ]; then
        "$HMA" merge -q --base "$b" --model "$m" --alpha "$a" --groups "$g" -o "$O/$name.gguf" || { echo "interop: hma merge $name failed" >&2; fail=1; return; }
        node tests/interop/score.mjs --gguf "$O/$name.gguf" --ref "$REF;alpha=$a;groups=$g" --rows "$ROWS" || fail=1
    else
        "$HMA" merge -q --base "$b" --model "$m" --alpha "$a" -o "$O/$name.gguf" || { echo "interop: hma merge $name failed" >&2; fail=1; return; }
        node tests/interop/score.mjs --gguf "$O/$name.gguf" --ref "$REF;alpha=$a" --rows "$ROWS" || fail=1
    fi
}
merge_check ma-bf16 $T/base.gguf $T/aligned.gguf 0.5
merge_check hma-bf16 $T/base.gguf $T/aligned.gguf 0.3,0.5,0.7 blocks:3
merge_check ma-q8_0 $T/base-q8_0.gguf $T/aligned-q8_0.gguf 0.5
merge_check ma-mixed $T/base-q8_0.gguf $T/aligned.gguf 0.5
[ $fail = 0 ] && echo "interop: ok" || echo "interop: FAILED"
[ $fail = 0 ]
