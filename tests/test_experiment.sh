#!/bin/sh
# test_experiment.sh - quick end-to-end smoke of `hma eval` and `hma search`
# on the shipped toy pair with a tiny budget and a few rows: the table is
# printed, the numbers are sane, the SVG is well-formed XML, the run is
# deterministic (and independent of the thread count).
# Environment: HMA_BIN (default examples/hma), PYTHON (default /usr/bin/python3).
set -u
HMA=${HMA_BIN:-examples/hma}
PY=${PYTHON:-/usr/bin/python3}
D=${HMA_TOY_DIR:-examples/data/toy-llama}
T=$(mktemp -d "${TMPDIR:-/tmp}/hma-exp.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# -- hma eval: a checkpoint, and the same checkpoint as a plan at a = 0 --------
"$HMA" eval "$D/base.safetensors" --rows 2 --json > "$T/ck.json" || fail "hma eval CHECKPOINT"
"$HMA" eval --base "$D/base.safetensors" --model "$D/aligned.safetensors" --alpha 0,0,0 \
    --groups blocks:3 --rows 2 --json > "$T/plan0.json" || fail "hma eval --alpha 0,0,0"
"$HMA" eval --base "$D/base.safetensors" --model "$D/aligned.safetensors" --alpha 0.5 \
    --rows 2 > "$T/plan5.txt" || fail "hma eval --alpha 0.5"
grep -q "^code  [0-9.]* bits/byte" "$T/plan5.txt" || fail "hma eval text output"
"$PY" - "$T/ck.json" "$T/plan0.json" <<'EOF' || fail "hma eval JSON scores"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for j in (a, b):
    assert j["rows"] == 2, j
    for k in ("code_bpb", "prose_bpb"):
        assert 0.5 < j[k] < 4.0, (k, j[k])  # bits per byte of a trained byte model
# a = 0 merges exactly to base: identical scores
assert (a["code_bpb"], a["prose_bpb"]) == (b["code_bpb"], b["prose_bpb"]), (a, b)
EOF
"$HMA" eval --alpha 0.5 > /dev/null 2>&1; [ $? = 2 ] || fail "hma eval usage error must exit 2"
"$HMA" eval "$T/missing.safetensors" > /dev/null 2> "$T/err.txt"; [ $? = 1 ] || fail "missing file must exit 1"
grep -q "not found\|No such" "$T/err.txt" || fail "missing file message: $(cat "$T/err.txt")"

# -- hma search: tiny experiment, twice (1 and 2 threads) ----------------------
run() {
    "$HMA" search --base "$D/base.safetensors" --model "$D/aligned.safetensors" --rows 2 \
        --search-rows 1 --ma 0.5 --means 0.5 --budget 3 --threads "$1" --out "$T/$2" \
        > "$T/$2.out" 2> "$T/$2.err"
}
run 1 a || { cat "$T/a.err"; fail "hma search"; }
run 2 b || { cat "$T/b.err"; fail "hma search (2 threads)"; }
for f in "$T/a.out" "$T/a/experiment.svg" "$T/a/results.csv" "$T/a/candidates.csv"; do
    [ -s "$f" ] || fail "missing output $f"
done
grep -q "^| method |" "$T/a.out" || fail "no table header"
for m in "| base |" "| MA 0.5 |" "| aligned |" "| HMA 0.5 |"; do
    grep -qF "$m" "$T/a.out" || fail "no row '$m'"
done
grep -q "^plot: *$T/a/experiment.svg" "$T/a.out" || fail "plot path not printed"
# deterministic: same table and candidates whatever the thread count
grep "^|" "$T/a.out" > "$T/a.tab"; grep "^|" "$T/b.out" > "$T/b.tab"
cmp -s "$T/a.tab" "$T/b.tab" || fail "tables differ between runs"
cmp -s "$T/a/candidates.csv" "$T/b/candidates.csv" || fail "candidates differ between runs"
"$PY" - "$T/a" <<'EOF' || fail "results, candidates or SVG"
import csv, sys, xml.etree.ElementTree as ET
d = sys.argv[1]
rows = list(csv.DictReader(open(d + "/results.csv")))
assert [r["method"] for r in rows] == ["base", "MA", "aligned", "HMA"], rows
for r in rows:
    a = [float(r[k]) for k in ("a_1", "a_2", "a_3")]
    assert abs(sum(a) / 3 - float(r["mean"])) < 1e-6 and all(0 <= x <= 1 for x in a), r
    assert 0.5 < float(r["code_bpb"]) < 4 and 0.5 < float(r["prose_bpb"]) < 4, r
    assert r["pareto"] in ("0", "1")
assert rows[0]["a_1"] == "0.000000" and rows[2]["a_1"] == "1.000000"
assert any(r["pareto"] == "1" for r in rows)
cand = list(csv.DictReader(open(d + "/candidates.csv")))
assert len(cand) == 3, cand  # the budget
assert all(abs(sum(float(c["a_%d" % i]) for i in (1, 2, 3)) / 3 - 0.5) < 1e-9 for c in cand)
root = ET.parse(d + "/experiment.svg").getroot()
assert root.tag.endswith("svg"), root.tag
ns = "{http://www.w3.org/2000/svg}"
texts = " ".join(t.text or "" for t in root.iter(ns + "text"))
for want in ("code bits/byte", "prose bits/byte", "MA", "HMA", "base", "aligned"):
    assert want in texts, want
assert len(list(root.iter(ns + "polyline"))) >= 1  # the MA curve
assert len(list(root.iter(ns + "circle"))) >= 3    # MA points (+ legend)
EOF
"$HMA" search --base "$D/base.safetensors" > /dev/null 2>&1; [ $? = 2 ] || fail "hma search usage error must exit 2"

# -- hma search --batch: 1 is the default; 2 gives the same table format, the budget spent
run_b() {
    "$HMA" search --base "$D/base.safetensors" --model "$D/aligned.safetensors" --rows 2 \
        --search-rows 1 --ma 0.5 --means 0.5 --budget 5 --threads 1 --out "$T/$1" $2 \
        > "$T/$1.out" 2> "$T/$1.err"
}
run_b d "" || { cat "$T/d.err"; fail "hma search --budget 5"; }
run_b e "--batch 1" || { cat "$T/e.err"; fail "hma search --batch 1"; }
run_b f "--batch 2" || { cat "$T/f.err"; fail "hma search --batch 2"; }
grep "^|" "$T/d.out" > "$T/d.tab"; grep "^|" "$T/e.out" > "$T/e.tab"; grep "^|" "$T/f.out" > "$T/f.tab"
cmp -s "$T/d.tab" "$T/e.tab" || fail "--batch 1 table differs from the default"
cmp -s "$T/d/candidates.csv" "$T/e/candidates.csv" || fail "--batch 1 candidates differ from the default"
[ "$(sed -n 1,2p "$T/d.tab")" = "$(sed -n 1,2p "$T/f.tab")" ] || fail "--batch 2 table header differs"
[ "$(wc -l < "$T/f.tab")" = "$(wc -l < "$T/d.tab")" ] || fail "--batch 2 table has other rows"
[ "$(wc -l < "$T/f/candidates.csv")" = 6 ] || fail "--batch 2: not 5 candidates"
grep -q "batches of 2" "$T/f.out" || fail "--batch 2 not reported"
"$HMA" search --base "$D/base.safetensors" --model "$D/aligned.safetensors" --batch 0 > /dev/null 2>&1
[ $? = 2 ] || fail "--batch 0 must exit 2"

[ "$fails" = 0 ] && echo "test_experiment: all checks passed"
[ "$fails" = 0 ]
