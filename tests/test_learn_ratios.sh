#!/bin/sh
# test_learn_ratios.sh - examples/python/learn_ratios.py (the paper's ratio
# learning with PyTorch autograd) for a few steps on the shipped toy pair:
# its JSON line (finite values, mean of the ratios equal to --mean, the
# autograd check of dL/dl below 1e-3, ratios moved by the steps), and its
# scores equal to those of the C evaluator (`hma eval`) for the same ratios,
# which checks the PyTorch model against examples/experiment/toyllm.c.
# Skipped, with a message, where $PYTHON cannot import torch (Debian:
# python3-torch; CI installs it) and under sanitizers.
# Environment: HMA_BIN (default examples/hma), PYTHON (default /usr/bin/python3),
# LIBOUT (library folder, default lib).
set -u
[ -n "${SAN:-}" ] && { echo "test_learn_ratios: skipped under sanitizers"; exit 0; }
HMA=${HMA_BIN:-examples/hma}
PY=${PYTHON:-/usr/bin/python3}
case ${LIBOUT:-lib} in /*) libdir=${LIBOUT:-lib} ;; *) libdir=$PWD/${LIBOUT:-lib} ;; esac
export HMA_LIBRARY="$libdir/libhma.so.1"
if ! "$PY" -c "import torch, numpy" 2>/dev/null; then
    echo "test_learn_ratios: SKIPPED: $PY cannot import torch and numpy (install python3-torch)"
    exit 0
fi
D=$PWD/examples/data/toy-llama
T=$(mktemp -d "${TMPDIR:-/tmp}/hma-learn.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

"$PY" examples/python/learn_ratios.py --mean 0.6 --steps 3 --batch 2 --lr 0.1 --reg 0.01 --seed 1 \
    --threads 1 --eval-rows 4 --check-grad --json > "$T/out" 2> "$T/err" \
    || fail "learn_ratios.py exited $?: $(tail -5 "$T/err")"
tail -n 1 "$T/out" > "$T/json"
"$PY" - "$T/json" > "$T/alpha" <<'PY' || fail "learn_ratios.py JSON: $(cat "$T/out")"
import json, math, sys
r = json.loads(open(sys.argv[1]).read())
for key in ("ratios", "logits", "code", "prose", "grad_check_rel_err", "steps", "seconds"):
    assert key in r, key
vals = r["ratios"] + r["logits"] + [r["code"], r["prose"], r["grad_check_rel_err"], r["seconds"]]
assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals), vals
assert len(r["ratios"]) == 3 and len(r["logits"]) == 3, r
assert abs(sum(r["ratios"]) / 3 - 0.6) <= 1e-9, r["ratios"]
assert 0 <= r["grad_check_rel_err"] < 1e-3, r["grad_check_rel_err"]
assert r["steps"] == 3, r["steps"]
assert max(abs(a - 0.6) for a in r["ratios"]) > 1e-4, ("the steps did not move the ratios", r["ratios"])
assert 0.5 < r["code"] < 4 and 0.5 < r["prose"] < 4, r
assert r["eval_rows"] == 4, r
print(",".join(repr(a) for a in r["ratios"]), r["code"], r["prose"])
PY
read -r alpha code prose < "$T/alpha" || fail "no ratios from learn_ratios.py"
if [ -n "${alpha:-}" ]; then
    "$HMA" eval --base "$D/base.safetensors" --model "$D/aligned.safetensors" --alpha "$alpha" --groups blocks:3 \
        --rows 4 --threads 1 > "$T/eval" 2>&1 || fail "hma eval --alpha $alpha: $(cat "$T/eval")"
    "$PY" - "$T/eval" "$code" "$prose" <<'PY' || fail "learn_ratios.py scores $code $prose differ from hma eval: $(cat "$T/eval")"
import re, sys
text = open(sys.argv[1]).read()
c = float(re.search(r"^code +(\S+) bits/byte", text, re.M).group(1))
p = float(re.search(r"^prose +(\S+) bits/byte", text, re.M).group(1))
assert abs(c - float(sys.argv[2])) < 1e-4 and abs(p - float(sys.argv[3])) < 1e-4, (c, p, sys.argv[2:])
PY
fi
grep -q "^check-grad: largest error" "$T/out" || fail "no check-grad line: $(cat "$T/out")"

# A bad option value: exit status 2 (argparse), no JSON.
"$PY" examples/python/learn_ratios.py --steps -1 > "$T/bad" 2>&1
st=$?
[ "$st" = 2 ] || fail "learn_ratios.py --steps -1 exited $st, want 2"

[ "$fails" = 0 ] || exit 1
echo "test_learn_ratios: 3 steps, JSON ok, autograd check ok, scores equal to hma eval: ok"
