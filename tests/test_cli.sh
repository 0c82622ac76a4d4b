#!/bin/sh
# test_cli.sh - end-to-end tests of `hma merge` and `hma diff` on the toy
# checkpoint pair: outputs are checked with `hma inspect --json` and their
# bytes against an independent numpy computation (float32 arithmetic, RNE to
# BF16 in integer ops). Prints one "ok" line; exits nonzero on the first failure.
# Environment: HMA_BIN (default examples/hma), PYTHON (default /usr/bin/python3).
set -u
HMA=${HMA_BIN:-examples/hma}
PY=${PYTHON:-/usr/bin/python3}
T=examples/data/toy-llama
B=$T/base.safetensors
A=$T/aligned.safetensors
D=$(mktemp -d "${TMPDIR:-/tmp}/hma-test-cli.XXXXXX") || exit 1
trap 'rm -rf "$D"' EXIT INT TERM
N=0

fail() { echo "test_cli.sh: FAIL: $*" >&2; exit 1; }
step() { N=$((N + 1)); }

# expect CODE CMD...: run, check the exit status; stderr goes to $D/err.
expect() {
    want=$1; shift
    "$@" >"$D/out" 2>"$D/err"
    got=$?
    [ "$got" = "$want" ] || { cat "$D/err" >&2; fail "exit $got (expected $want): $*"; }
    step
}
# The error must be exactly one line on stderr.
one_line_err() {
    n=$(wc -l <"$D/err")
    [ "$n" = 1 ] || { cat "$D/err" >&2; fail "expected one stderr line, got $n: $1"; }
    grep -q "^hma $2: " "$D/err" || fail "stderr does not start with 'hma $2: ': $(cat "$D/err")"
}

[ -x "$HMA" ] || fail "no hma program at $HMA (set HMA_BIN)"
"$PY" -c 'import numpy' 2>/dev/null || fail "$PY cannot import numpy"

# The independent checker: reads safetensors with json + numpy only.
cat >"$D/check.py" <<'EOF'
import json, re, struct, sys
import numpy as np

def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    meta = h.pop("__metadata__", {})
    return h, meta, data

def bf16_to_f32(raw):
    u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return u.view(np.float32)

def f32_to_bf16(x):
    u = x.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r[nan] = 0x7FC0
    return r

def tensor(h, data, name):
    b, e = h[name]["data_offsets"]
    return data[b:e]

def layer(name):
    m = re.search(r"(?:^|\.)model\.layers\.(\d+)(?:\.|$)", name)
    return int(m.group(1)) if m else -1

def ratio_of(name, ratios, L):
    """Ratio a tensor gets: its layer's block, embedding -> block 0, else mean."""
    K = len(ratios)
    l = layer(name)
    if l >= 0:
        return ratios[l * K // L]
    if "embed_tokens" in name:
        return ratios[0]
    s = 0.0
    for a in ratios:
        s += a
    return s / K

def main():
    mode, base, aligned, out = sys.argv[1:5]
    hb, _, db = load(base)
    ha, _, da = load(aligned)
    ho, mo, do = load(out)
    if set(ho) != set(hb):
        sys.exit("tensor names differ from the base")
    L = 1 + max(layer(n) for n in hb)
    bad = 0
    for name in hb:
        if ho[name]["dtype"] != "BF16" or ho[name]["shape"] != hb[name]["shape"]:
            sys.exit("%s: dtype/shape %s" % (name, ho[name]))
        x = bf16_to_f32(tensor(hb, db, name))
        y = bf16_to_f32(tensor(ha, da, name))
        if mode == "ma":
            a = ratio_of(name, [float(v) for v in sys.argv[5].split(",")], L)
            w0, w1 = np.float32(1.0 - a), np.float32(a)
            acc = (w0 * x).astype(np.float32) + (w1 * y).astype(np.float32)
        elif mode == "task":
            w = np.float32(float(sys.argv[5]))
            d = (y - x).astype(np.float32)
            acc = x + (w * d).astype(np.float32)
        else:
            sys.exit("bad mode")
        assert acc.dtype == np.float32
        want = f32_to_bf16(acc)
        got = np.frombuffer(tensor(ho, do, name), dtype="<u2")
        diff = int(np.count_nonzero(want != got))
        if diff:
            print("%s: %d of %d elements differ" % (name, diff, got.size), file=sys.stderr)
            bad += 1
    if bad:
        sys.exit("%d tensors differ" % bad)
    recipe = json.loads(mo["hma_recipe"])
    print(json.dumps(recipe, sort_keys=True))

main()
EOF

# Same tensors and bytes (headers may differ in the recipe's input paths)?
cat >"$D/samedata.py" <<'EOF'
import json, struct, sys
def data(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return h, b[8 + n:]
sys.exit(data(sys.argv[1]) != data(sys.argv[2]))
EOF

# Same bytes except the recorded command line (__metadata__ "hma_command",
# which differs when the options do)? Both files must have it.
cat >"$D/samebut.py" <<'EOF'
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); m = h.get("__metadata__", {})
    assert "hma_command" in m, (p, m)
    del m["hma_command"]
    return json.dumps(h), b[8 + n:]
sys.exit(load(sys.argv[1]) != load(sys.argv[2]))
EOF

# Checks one `hma inspect --json` output: tensor count and metadata.
cat >"$D/chk_inspect.py" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
want = int(sys.argv[2])
assert d["summary"]["tensors"] == want, d["summary"]
assert d["metadata"].get("format") == "pt", d["metadata"]
r = json.loads(d["metadata"]["hma_recipe"])
key, val = sys.argv[3], json.loads(sys.argv[4])
assert r[key] == val, (key, r[key], val)
print(len(d["files"]))
EOF

# ---- MA: one ratio, file output -------------------------------------------
expect 0 "$HMA" merge --base "$B" --model "$A" --alpha 0.3 -o "$D/ma.safetensors"
grep -q "^merged 75 tensors, .* GB in .* s (.* GB/s)$" "$D/err" || fail "no summary line: $(cat "$D/err")"
"$PY" "$D/check.py" ma "$B" "$A" "$D/ma.safetensors" 0.3 >/dev/null || fail "MA 0.3 bytes differ from numpy"
"$HMA" inspect --json "$D/ma.safetensors" >"$D/i.json" || fail "inspect of the MA output"
"$PY" "$D/chk_inspect.py" "$D/i.json" 75 ratios '[0.3]' >/dev/null || fail "MA output metadata"
step
# quiet: nothing on stderr
expect 0 "$HMA" merge -q --base "$B" --model "$A" --alpha 0.3 -o "$D/ma_q.safetensors"
[ -s "$D/err" ] && fail "-q printed: $(cat "$D/err")"
"$PY" "$D/samebut.py" "$D/ma.safetensors" "$D/ma_q.safetensors" || fail "same merge, different bytes"
cmp -s "$D/ma.safetensors" "$D/ma_q.safetensors" && fail "-q is not in the recorded command line"
# one command line, the same bytes (the recorded command line included)
mv "$D/ma_q.safetensors" "$D/ma_q.first" || fail "setup"
expect 0 "$HMA" merge -q --base "$B" --model "$A" --alpha 0.3 -o "$D/ma_q.safetensors"
cmp -s "$D/ma_q.first" "$D/ma_q.safetensors" || fail "one command line, different bytes"

# thread count and SIMD path do not change the bytes (but for the command line)
expect 0 "$HMA" merge -q "$B" "$A" --alpha 0.3 --threads 1 --simd scalar -o "$D/ma1.safetensors"
"$PY" "$D/samebut.py" "$D/ma.safetensors" "$D/ma1.safetensors" || fail "1 thread scalar differs from the default"
expect 0 "$HMA" merge -q "$B" "$A" --alpha=0.3 --threads=2 -o "$D/ma2.safetensors"
"$PY" "$D/samebut.py" "$D/ma.safetensors" "$D/ma2.safetensors" || fail "2 threads differ from the default"

# ---- the command line in __metadata__ "hma_command" --------------------------
# "hma", then argv joined with spaces, each argument shell-quoted when needed:
# '...' (a quote written '\''), or $'...' with \xNN for control bytes.
# (The literal assumes $D needs no quoting, as mktemp's names under /tmp.)
expect 0 "$HMA" merge -q --base "$B" --model "$A" --alpha 0.3 --rule 'no match=mean' --rule 'it'"'"'s=0' \
    --rule "$(printf 'x\ty')=0" -o "$D/o.safetensors"
"$HMA" inspect --json "$D/o.safetensors" >"$D/i.json" || fail "inspect of the output"
"$PY" - "$D/i.json" "hma merge -q --base $B --model $A --alpha 0.3 --rule 'no match=mean' --rule 'it'\\''s=0' --rule \$'x\\x09y=0' -o $D/o.safetensors" <<'EOF' || fail "hma_command"
import json, shlex, sys
m = json.load(open(sys.argv[1]))["metadata"]
assert list(m) == ["format", "hma_recipe", "hma_command"], list(m)
assert m["hma_command"] == sys.argv[2], (m["hma_command"], sys.argv[2])
# a POSIX shell reads the '...' forms back as the exact arguments
argv = shlex.split(m["hma_command"].replace(" --rule $'x\\x09y=0'", ""))
assert argv[9:13] == ["--rule", "no match=mean", "--rule", "it's=0"], argv
EOF
step

# ---- HMA: per-block ratios, folder output with config copy ------------------
mkdir "$D/basedir" && cp "$B" "$D/basedir/model.safetensors" && cp "$T/config.json" "$D/basedir/" &&
    printf '{"fake":"tokenizer"}' >"$D/basedir/tokenizer.json" || fail "setup"
expect 0 "$HMA" merge --base "$D/basedir" --model "$A" --alpha 0.2,0.5,0.8 --groups blocks:3 -o "$D/hma_out"
grep -q "copied 2 config/tokenizer files" "$D/err" || fail "config files not reported: $(cat "$D/err")"
cmp -s "$T/config.json" "$D/hma_out/config.json" || fail "config.json not copied"
cmp -s "$D/basedir/tokenizer.json" "$D/hma_out/tokenizer.json" || fail "tokenizer.json not copied"
ls -A "$D/hma_out" | grep -q '^\.hma-tmp' && fail "temporary files left in the output folder"
"$PY" "$D/check.py" ma "$B" "$A" "$D/hma_out/model.safetensors" 0.2,0.5,0.8 >"$D/recipe" ||
    fail "HMA bytes differ from numpy"
grep -q '"groups": "blocks:3"' "$D/recipe" || fail "recipe lacks the groups: $(cat "$D/recipe")"
"$HMA" inspect --json "$D/hma_out" >"$D/i.json" || fail "inspect of the HMA folder"
"$PY" "$D/chk_inspect.py" "$D/i.json" 75 ratios '[0.2,0.5,0.8]' >/dev/null || fail "HMA output metadata"
# an alpha list alone means blocks:K
expect 0 "$HMA" merge -q "$B" "$A" --alpha 0.2,0.5,0.8 -o "$D/hma_k.safetensors"
"$PY" "$D/samedata.py" "$D/hma_out/model.safetensors" "$D/hma_k.safetensors" || fail "--alpha list without --groups"
# writing into an input's folder is refused
expect 2 "$HMA" merge -q --base "$D/basedir" --model "$A" --alpha 0.5 -o "$D/basedir"
one_line_err "output into input folder" merge

# sharded folder output
expect 0 "$HMA" merge -q "$B" "$A" --alpha 0.3 --shard-size 3MB -o "$D/sharded"
[ -f "$D/sharded/model.safetensors.index.json" ] || fail "no index for a sharded output"
"$HMA" inspect --json "$D/sharded" >"$D/i.json" || fail "inspect of the sharded output"
nf=$("$PY" "$D/chk_inspect.py" "$D/i.json" 75 ratios '[0.3]') || fail "sharded output metadata"
[ "$nf" -gt 1 ] || fail "expected several shards, got $nf"
step

# ---- soups and task arithmetic ---------------------------------------------
# weights 1,3 normalized = (0.25, 0.75) = MA 0.75 exactly
expect 0 "$HMA" merge -q --model "$B" --weight 1 --model "$A" --weight 3 -o "$D/soup.safetensors"
expect 0 "$HMA" merge -q "$B" "$A" --alpha 0.75 -o "$D/ma75.safetensors"
"$PY" "$D/check.py" ma "$B" "$A" "$D/ma75.safetensors" 0.75 >/dev/null || fail "MA 0.75 bytes"
"$PY" "$D/samedata.py" "$D/soup.safetensors" "$D/ma75.safetensors" || fail "soup 1:3 differs from MA 0.75"
expect 0 "$HMA" merge -q --base "$B" --model "$A" --method task --weights 0.5 -o "$D/task.safetensors"
"$PY" "$D/check.py" task "$B" "$A" "$D/task.safetensors" 0.5 >/dev/null || fail "task arithmetic bytes"
expect 0 "$HMA" merge -q --base "$B" --model "$A" --method slerp --alpha 0.4 -o "$D/slerp.safetensors"
expect 0 "$HMA" inspect "$D/slerp.safetensors"

# ---- dry run -----------------------------------------------------------------
expect 0 "$HMA" merge --dry-run --base "$B" --model "$A" --alpha 0.2,0.5,0.8 --groups blocks:3 \
    --rule lm_head=2 -o "$D/never.safetensors"
[ -e "$D/never.safetensors" ] && fail "--dry-run wrote the output"
grep -q '^lm_head.weight  *-  *2 merge  *BF16  0.2 0.8$' "$D/out" || fail "dry-run row of lm_head: $(grep lm_head "$D/out")"
grep -q '^model.layers.3.mlp.up_proj.weight  *3  *1 merge  *BF16  0.5 0.5$' "$D/out" || fail "dry-run layer row"
grep -q '^model.norm.weight  *-  *mean merge  *BF16  0.5 0.5$' "$D/out" || fail "dry-run mean row"
grep -q '^mean ratio (weight of input 1): 0.5$' "$D/out" || fail "dry-run mean ratio: $(tail -3 "$D/out")"
grep -q '^2  *6-7 ' "$D/out" || fail "dry-run group table"
[ "$(grep -c ' merge ' "$D/out")" = 75 ] || fail "dry-run does not list 75 tensors"
expect 0 "$HMA" merge --dry-run "$B" "$A" --gradient 0,1 --groups layers
grep -q '^model.layers.7.self_attn.q_proj.weight  *7  *7 merge  *BF16  0 1$' "$D/out" || fail "gradient dry-run"

# ---- diff -----------------------------------------------------------------------
expect 0 "$HMA" diff "$B" "$A"
grep -q '^total (75 tensors)' "$D/out" || fail "diff text has no total"
expect 0 "$HMA" diff --json "$B" "$A"
"$PY" - "$D/out" "$B" "$A" <<'EOF' || fail "diff --json numbers"
import json, struct, sys
import numpy as np
d = json.load(open(sys.argv[1]))
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None); return h, b[8 + n:]
def f(h, data, name):
    s, e = h[name]["data_offsets"]
    return (np.frombuffer(data[s:e], dtype="<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
ha, da = load(sys.argv[2]); hb, db = load(sys.argv[3])
assert len(d["tensors"]) == 75 and d["total"]["tensors"] == 75
keys = [(t["layer"] if t["layer"] is not None else -1, t["name"]) for t in d["tensors"]]
assert keys == sorted(keys), "not sorted by layer then name"
close = lambda a, b: abs(a - b) <= 1e-9 * max(1.0, abs(b))
agg = {}
for t in d["tensors"]:
    x, y = f(ha, da, t["name"]), f(hb, db, t["name"])
    dn, an, bn = np.linalg.norm(y - x), np.linalg.norm(x), np.linalg.norm(y)
    assert close(t["diff_norm"], dn) and close(t["a_norm"], an) and close(t["b_norm"], bn), t
    assert close(t["relative"], dn / an) and close(t["cosine"], x @ y / (an * bn)), t
    s = agg.setdefault(t["layer"], [0.0, 0.0])
    s[0] += dn * dn; s[1] += an * an
for l in d["layers"]:
    s = agg[l["layer"]]
    assert close(l["diff_norm"], s[0] ** 0.5) and close(l["relative"], (s[0] / s[1]) ** 0.5), l
EOF
step

# ---- errors: usage (2) and library (1), one line each ---------------------------
expect 2 "$HMA" merge --base "$B" --alpha 0.5 -o "$D/x.safetensors"; one_line_err "one input" merge
expect 2 "$HMA" merge "$B" "$A" --alpha 0.5; one_line_err "no -o" merge
expect 2 "$HMA" merge "$B" "$A" --alpha 0.5 --bogus -o "$D/x.safetensors"; one_line_err "unknown option" merge
expect 2 "$HMA" merge "$B" "$A" --alpha 0.2,0.8 --groups blocks:3 -o "$D/x.safetensors"; one_line_err "alpha count" merge
expect 2 "$HMA" merge "$B" "$A" --alpha nan -o "$D/x.safetensors"; one_line_err "alpha nan" merge
expect 2 "$HMA" merge "$B" "$A" --alpha 0.5 --dtype I8 -o "$D/x.safetensors"; one_line_err "dtype" merge
expect 2 "$HMA" merge "$B" "$A" --alpha 0.5 --weights 1,2 -o "$D/x.safetensors"; one_line_err "two kinds" merge
expect 2 "$HMA" merge "$B" "$A" --method foo -o "$D/x.safetensors"; one_line_err "method" merge
expect 2 "$HMA" merge "$B" "$A" --shard-size 5GB -o "$D/x.safetensors"; one_line_err "shard file" merge
expect 2 "$HMA" merge "$B" "$A" --shard-size 5XB -o "$D/x"; one_line_err "shard unit" merge
expect 2 "$HMA" merge "$B" "$A" --rule lm_head=9 -o "$D/x.safetensors"; one_line_err "rule group" merge
expect 1 "$HMA" merge "$B" "$D/missing.safetensors" --alpha 0.5 -o "$D/x.safetensors"; one_line_err "missing input" merge
head -c 1000 "$A" >"$D/trunc.safetensors"
expect 1 "$HMA" merge "$B" "$D/trunc.safetensors" --alpha 0.5 -o "$D/x.safetensors"; one_line_err "truncated" merge
[ -e "$D/x.safetensors" ] && fail "a failed merge left an output"
expect 2 "$HMA" diff "$B"; one_line_err "diff one input" diff
expect 1 "$HMA" diff "$B" "$D/trunc.safetensors"; one_line_err "diff truncated" diff
expect 1 "$HMA" merge "$B" "$B" --alpha 0.5 -o "$B"; one_line_err "overwrite input" merge

# inputs that disagree: a copy of the base without lm_head
"$PY" - "$B" "$D/partial.safetensors" <<'EOF' || fail "setup partial"
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); meta = h.pop("__metadata__", None)
out, blobs, off = {}, [], 0
for name, t in sorted(h.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    if name == "lm_head.weight": continue
    s, e = t["data_offsets"]; blobs.append(b[8 + n + s:8 + n + e])
    out[name] = dict(t, data_offsets=[off, off + e - s]); off += e - s
if meta: out["__metadata__"] = meta
hj = json.dumps(out).encode(); hj += b" " * (-len(hj) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))
EOF
expect 1 "$HMA" merge "$B" "$D/partial.safetensors" --alpha 0.5 -o "$D/x.safetensors"; one_line_err "mismatch" merge
grep -q "lm_head.weight" "$D/err" || fail "mismatch error does not name the tensor"
# the side files are committed with the shards: a merge that fails (here a
# folder where model.safetensors must go) copies none of them
mkdir -p "$D/blocked/model.safetensors" || fail "setup"
expect 1 "$HMA" merge --base "$D/basedir" --model "$A" --alpha 0.5 -o "$D/blocked"; one_line_err "blocked output" merge
[ "$(ls -A "$D/blocked")" = model.safetensors ] || fail "a failed folder merge left files: $(ls -A "$D/blocked")"
expect 1 "$HMA" merge --dry-run "$B" "$D/partial.safetensors" --alpha 0.5
grep -q '^lm_head.weight .* MISMATCH ' "$D/out" || fail "dry-run does not show the mismatch"
expect 0 "$HMA" merge -q "$B" "$D/partial.safetensors" --alpha 0.5 --copy-unmatched 0 -o "$D/cu.safetensors"
"$HMA" inspect --json "$D/cu.safetensors" >"$D/i.json" || fail "inspect copy-unmatched"
"$PY" "$D/chk_inspect.py" "$D/i.json" 75 copy_unmatched 0 >/dev/null || fail "copy-unmatched output"
expect 0 "$HMA" diff "$B" "$D/partial.safetensors"
grep -q "lm_head.weight: only in A" "$D/out" || fail "diff does not list the unmatched tensor"

# GGUF: inspect shows the ggml types, merges write GGUF (MA, HMA, Q8_0 mixes)
expect 0 "$HMA" inspect "$T/base-q8_0.gguf"
grep -q '^  blk.0.attn_q.weight  Q8_0 (as F32)  \[256, 256\]' "$D/out" || fail "inspect does not show Q8_0"
"$HMA" inspect --json "$T/base-q8_0.gguf" | grep -q '"gguf_type":"Q8_0"' || fail "inspect --json gguf_type"
expect 0 "$HMA" merge -q --base "$T/base.gguf" --model "$T/aligned.gguf" --alpha 0.5 -o "$D/ma.gguf"
expect 0 "$HMA" inspect "$D/ma.gguf"
grep -q '^  hma.command = hma merge' "$D/out" || fail "hma.command missing from the GGUF output"
grep -q '^  hma.recipe = {' "$D/out" || fail "hma.recipe missing from the GGUF output"
grep -q '^  tokenizer.ggml.model = gpt2' "$D/out" || fail "base metadata not copied"
grep -q '^  blk.0.attn_q.weight  BF16  \[256, 256\]' "$D/out" || fail "BF16 type not kept"
expect 0 "$HMA" merge -q --base "$T/base.gguf" --model "$T/aligned.gguf" --alpha 0.2,0.5,0.8 --groups blocks:3 -o "$D/hma.gguf"
cmp -s "$D/ma.gguf" "$D/hma.gguf" && fail "HMA and MA GGUF outputs are equal"
expect 0 "$HMA" merge -q --base "$T/base-q8_0.gguf" --model "$T/aligned.gguf" --alpha 0.5 -o "$D/q.gguf"
expect 0 "$HMA" inspect "$D/q.gguf"
grep -q '^  blk.0.attn_q.weight  Q8_0 (as F32)' "$D/out" || fail "Q8_0 type not kept"
expect 0 "$HMA" merge -q --base "$T/base.gguf" --model "$T/aligned.gguf" --alpha 0.5 --dtype Q8_0 -o "$D/q2.gguf"
expect 0 "$HMA" inspect "$D/q2.gguf"
grep -q '^  blk.0.ffn_up.weight  Q8_0 (as F32)' "$D/out" || fail "--dtype Q8_0 not applied"
expect 0 "$HMA" merge -q --base "$T/base.gguf" --model "$T/aligned.gguf" --alpha 0.5 --dtype F16 -o "$D/h.gguf"
expect 0 "$HMA" inspect "$D/h.gguf"
grep -q '^  blk.0.ffn_up.weight  F16' "$D/out" || fail "--dtype F16 not applied"
expect 2 "$HMA" merge --base "$T/base.gguf" --model "$A" --alpha 0.5 -o "$D/mixed.gguf"
grep -q 'GGUF and safetensors inputs cannot be merged together' "$D/err" || fail "mixed inputs: no clear error"
[ -e "$D/mixed.gguf" ] && fail "a refused merge left an output"
expect 2 "$HMA" merge --base "$B" --model "$A" --alpha 0.5 --dtype Q8_0 -o "$D/x.safetensors"

expect 0 "$HMA" merge --help
expect 0 "$HMA" diff --help
echo "ok - test_cli.sh: $N checks of hma merge/diff passed"
