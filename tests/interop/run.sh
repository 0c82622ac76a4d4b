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
    (cd build/interop && npm i -E --no-audit --no-fund node-llama-cpp@3.21.1) || { echo "interop: npm install failed" >&2; exit 1; }
fi
fail=0
node tests/interop/score.mjs --gguf $T/base.gguf --ref $T/base.safetensors --rows "$ROWS" || fail=1
node tests/interop/score.mjs --gguf $T/aligned-q8_0.gguf --ref $T/aligned.safetensors --rows "$ROWS" || fail=1
[ $fail = 0 ] && echo "interop: ok" || echo "interop: FAILED"
[ $fail = 0 ]
