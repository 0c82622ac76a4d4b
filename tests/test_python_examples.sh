#!/bin/sh
# test_python_examples.sh - the example scripts of the Python binding
# (examples/python/merge.py, search.py) run on the shipped toy pair, each in a
# temporary folder: exit status, output, and merge.py's tensors byte for byte
# equal to those of `hma merge` with the same recipe.
# Environment: HMA_BIN (default examples/hma), PYTHON (default /usr/bin/python3),
# LIBOUT (library folder, default lib).
set -u
[ -n "${SAN:-}" ] && { echo "test_python_examples: skipped under sanitizers"; exit 0; }
HMA=${HMA_BIN:-examples/hma}
PY=${PYTHON:-/usr/bin/python3}
case ${LIBOUT:-lib} in /*) libdir=${LIBOUT:-lib} ;; *) libdir=$PWD/${LIBOUT:-lib} ;; esac
export HMA_LIBRARY="$libdir/libhma.so.1"
EX=$PWD/examples/python
D=$PWD/${HMA_TOY_DIR:-examples/data/toy-llama}
case ${HMA_TOY_DIR:-} in /*) D=$HMA_TOY_DIR ;; esac
T=$(mktemp -d "${TMPDIR:-/tmp}/hma-pyex.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# same_tensors A B: equal tensor table and data (the recipe metadata may differ)
same_tensors() {
    "$PY" - "$1" "$2" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return h, b[8 + n:]
a, b = load(sys.argv[1]), load(sys.argv[2])
sys.exit(0 if a == b and len(a[0]) == 75 else 1)
PY
}

# merge.py: plain MA, then HMA with per-block ratios; each equals hma merge.
(cd "$T" && "$PY" "$EX/merge.py" "$D/base.safetensors" "$D/aligned.safetensors" ma.safetensors --ratio 0.3) \
    > "$T/ma.out" 2> "$T/ma.err" || fail "merge.py --ratio 0.3 exited $?: $(cat "$T/ma.err")"
grep -q "^wrote ma.safetensors: 75 tensors, 1 groups, ratios \[0.3\]" "$T/ma.out" || fail "merge.py output: $(cat "$T/ma.out")"
"$HMA" merge --base "$D/base.safetensors" --model "$D/aligned.safetensors" --alpha 0.3 -q -o "$T/ma_ref.safetensors" \
    || fail "hma merge --alpha 0.3"
same_tensors "$T/ma.safetensors" "$T/ma_ref.safetensors" || fail "merge.py --ratio 0.3 differs from hma merge --alpha 0.3"
(cd "$T" && "$PY" "$EX/merge.py" "$D/base.safetensors" "$D/aligned.safetensors" hma.safetensors \
    --groups blocks:3 --ratios 0.2,0.4,0.6) > "$T/hma.out" 2> "$T/hma.err" || fail "merge.py --ratios exited $?: $(cat "$T/hma.err")"
grep -q "^wrote hma.safetensors: 75 tensors, 3 groups, ratios \[0.2, 0.4, 0.6\], mean 0.4000" "$T/hma.out" \
    || fail "merge.py --ratios output: $(cat "$T/hma.out")"
"$HMA" merge --base "$D/base.safetensors" --model "$D/aligned.safetensors" --alpha 0.2,0.4,0.6 --groups blocks:3 -q \
    -o "$T/hma_ref.safetensors" || fail "hma merge --alpha 0.2,0.4,0.6"
same_tensors "$T/hma.safetensors" "$T/hma_ref.safetensors" || fail "merge.py --ratios differs from hma merge --alpha 0.2,0.4,0.6"
# a missing input: exit 1, one message, nothing written
(cd "$T" && "$PY" "$EX/merge.py" "$T/missing.safetensors" "$D/aligned.safetensors" x.safetensors) > /dev/null 2> "$T/err"
st=$?
[ "$st" = 1 ] || fail "merge.py with a missing input exited $st, want 1"
grep -q "^merge.py: .*missing.safetensors" "$T/err" || fail "merge.py missing-input message: $(cat "$T/err")"
[ -e "$T/x.safetensors" ] && fail "merge.py wrote x.safetensors after an error"

# search.py: 4 MA points and a search of --budget at each of 2 means; a
# Pareto front of MA and SEARCH points with two finite scores each.
(cd "$T" && "$PY" "$EX/search.py" "$D/base.safetensors" "$D/aligned.safetensors" --budget 4) > "$T/s.out" 2> "$T/s.err" \
    || fail "search.py exited $?: $(cat "$T/s.err")"
"$PY" - "$T/s.out" <<'PY' || fail "search.py output: $(cat "$T/s.out")"
import re, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines[0] == "12 evaluations; Pareto front (alignment loss, forgetting):", lines[0]
front = [re.match(r"^  (MA|SEARCH) +ratios \[('\d\.\d{3}', ){2}'\d\.\d{3}'\]  scores (\S+) (\S+)$", l) for l in lines[1:]]
assert front and all(front), lines
s = [(float(m.group(3)), float(m.group(4))) for m in front]
assert all(0 <= a < 1 and 0 <= b < 1 for a, b in s), s
assert any(m.group(1) == "MA" for m in front), lines
for i, p in enumerate(s):  # no point of the front dominates another
    for q in s[i + 1:]:
        assert not (q[0] < p[0] and q[1] < p[1]) and not (p[0] < q[0] and p[1] < q[1]), (p, q)
PY

[ "$fails" = 0 ] || exit 1
echo "test_python_examples: merge.py (MA and HMA, equal to hma merge; error exit) and search.py: ok"
