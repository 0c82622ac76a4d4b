#!/bin/sh
# test_kill.sh - a merge killed with SIGKILL at random moments (20 runs)
# leaves either nothing or a complete, valid file under the output name,
# never a partial one. Inputs: a synthetic ~100 MB BF16 pair made with numpy;
# the reference is an uninterrupted `hma merge` of the same pair. Only hidden
# ".hma-tmp-*" temporaries may remain after a kill (nothing can clean up after
# SIGKILL; they never carry the final name), and the next merge into the same
# folder removes those of the dead process (stale temporaries are swept when
# an output is begun).
# Environment: HMA_BIN (default examples/hma), PYTHON (default /usr/bin/python3),
# HMA_KILL_RUNS (default 20).
set -u
HMA=${HMA_BIN:-examples/hma}
PY=${PYTHON:-/usr/bin/python3}
RUNS=${HMA_KILL_RUNS:-20}
D=$(mktemp -d "${TMPDIR:-/tmp}/hma-test-kill.XXXXXX") || exit 1
trap 'rm -rf "$D"' EXIT INT TERM
ms() { date +%s%N | cut -c1-13; }
fail() { echo "test_kill.sh: FAIL: $*" >&2; exit 1; }
[ -x "$HMA" ] || fail "$HMA not built"

# 24 layer tensors of 2 Mi BF16 elements per file (96 MiB), aligned = base +
# a small perturbation; the values do not depend on libhma.
tg=$(ms)
"$PY" - "$D" <<'PY' || fail "cannot generate the inputs"
import json, struct, sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(7)
def bf16(x):
    u = x.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
n, names = 1 << 21, ["model.layers.%d.mlp.w" % i for i in range(24)]
base = [rng.standard_normal(n, dtype=np.float32) * 0.02 for _ in names]
for fname, arrs in (("base", base), ("aligned", [b + rng.standard_normal(n, dtype=np.float32) * 0.001 for b in base])):
    hdr, off = {}, 0
    for name in names:
        hdr[name] = {"dtype": "BF16", "shape": [1024, 2048], "data_offsets": [off, off + 2 * n]}
        off += 2 * n
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open("%s/%s.safetensors" % (d, fname), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for a in arrs:
            f.write(bf16(a).tobytes())
PY

merge() { "$HMA" merge --base "$D/base.safetensors" --model "$D/aligned.safetensors" --alpha 0.3 -q -o "$1"; }
# In the background with $! the pid of hma itself (a backgrounded shell
# function would be a subshell, and SIGKILL would miss hma).
merge_bg() { "$HMA" merge --base "$D/base.safetensors" --model "$D/aligned.safetensors" --alpha 0.3 -q -o "$1" 2>/dev/null & }

# The reference is made under the same -o path as the runs below and moved
# aside: hma merge records its command line (with -o) in the output.
mkdir "$D/out" || exit 1
OUT=$D/out/merged.safetensors
t0=$(ms)
merge "$OUT" 2>"$D/err" || { cat "$D/err" >&2; fail "reference merge failed"; }
mv "$OUT" "$D/ref.safetensors" || exit 1
"$HMA" inspect "$D/ref.safetensors" >/dev/null || fail "reference is not valid"
# timed again, warm, as the runs below will be: the fastest of three (one
# slow outlier on a busy machine would put most kills after the merge's end)
T=
for k in 1 2 3; do
    t1=$(ms)
    merge "$OUT" 2>"$D/err" || { cat "$D/err" >&2; fail "second reference merge failed"; }
    t=$(($(ms) - t1))
    if [ -z "$T" ] || [ "$t" -lt "$T" ]; then T=$t; fi
    cmp -s "$D/ref.safetensors" "$OUT" || fail "two uninterrupted merges differ"
    rm -f "$OUT"
done

killed=0; complete=0; swept=0; run=1
# The delays adapt: a run that finished before its kill shrinks T by a
# quarter, so kills keep landing mid-merge even when the machine is busy
# (the reference time then overstates a run's). Up to 3 x RUNS runs are made
# until RUNS runs are done and a quarter of them were killed mid-merge.
while [ "$run" -le "$RUNS" ] || { [ "$killed" -lt $((RUNS / 4)) ] && [ "$run" -le $((3 * RUNS)) ]; }; do
    # a moment from 0 to 1.5x the reference merge time, reproducible per run
    delay=$(awk -v r="$run" -v t="$T" 'BEGIN { srand(r * 7919 + 1); printf "%.3f", rand() * t * 1.5 / 1000 }')
    merge_bg "$OUT"
    pid=$!
    sleep "$delay"
    kill -KILL "$pid" 2>/dev/null
    { wait "$pid"; } 2>/dev/null # no "Killed" line from the shell
    st=$?
    for f in "$D"/out/* "$D"/out/.[!.]*; do
        [ -e "$f" ] || continue
        case ${f##*/} in
            merged.safetensors | .hma-tmp-*) ;;
            *) fail "run $run: unexpected file ${f##*/} in the output folder" ;;
        esac
    done
    if [ -e "$OUT" ]; then
        "$HMA" inspect "$OUT" >/dev/null 2>&1 || fail "run $run (killed after ${delay}s): $OUT is not a valid file"
        cmp -s "$OUT" "$D/ref.safetensors" || fail "run $run (killed after ${delay}s): $OUT differs from the reference"
        complete=$((complete + 1))
    fi
    if [ "$st" -ne 0 ]; then killed=$((killed + 1)); else T=$((T * 3 / 4 + 1)); fi
    # Temporaries the killed process left (its pid is in their names): the
    # next merge into the folder must remove them.
    stale=$(cd "$D/out" && ls -A | grep "^\.hma-tmp-h[0-9a-f]*-$pid-" || true)
    if [ -n "$stale" ]; then
        kill -0 "$pid" 2>/dev/null && fail "run $run: process $pid still alive after SIGKILL"
        merge "$OUT" 2>"$D/err" || { cat "$D/err" >&2; fail "run $run: the merge after the kill failed"; }
        for f in $stale; do
            [ -e "$D/out/$f" ] && fail "run $run: stale temporary $f of the killed process $pid is still there after the next merge"
        done
        left=$(cd "$D/out" && ls -A | grep '^\.hma-tmp-' || true)
        [ -z "$left" ] || fail "run $run: temporaries left after an uninterrupted merge: $left"
        cmp -s "$OUT" "$D/ref.safetensors" || fail "run $run: the merge after the kill differs from the reference"
        swept=$((swept + 1))
    fi
    rm -rf "$D/out" && mkdir "$D/out"
    run=$((run + 1))
done
# The test means something only if kills landed mid-merge.
[ "$killed" -ge $((RUNS / 4)) ] || fail "only $killed of $((run - 1)) runs were killed before finishing"
[ "$swept" -ge 1 ] || fail "no kill left a temporary behind: the sweep was never checked"

# A GGUF output (issue 13): the toy Q8_0 base with the BF16 aligned model
# merged into out.gguf (requantized to Q8_0), killed at moments spread over
# the merge: out.gguf is absent or byte-identical to an uninterrupted merge.
TOYD=${HMA_TOY_DIR:-examples/data/toy-llama}
gmerge() { "$HMA" merge --base "$TOYD/base-q8_0.gguf" --model "$TOYD/aligned.gguf" --alpha 0.3 -q -o "$1"; }
mkdir "$D/g" || exit 1
GOUT=$D/g/out.gguf
gmerge "$GOUT" 2>"$D/err" || { cat "$D/err" >&2; fail "reference GGUF merge failed"; }
mv "$GOUT" "$D/ref.gguf"
GT=
for i in 1 2 3; do
    t=$(ms); gmerge "$GOUT" 2>/dev/null || fail "GGUF merge failed"; t=$(($(ms) - t)); rm -f "$GOUT"
    if [ -z "$GT" ] || [ "$t" -lt "$GT" ]; then GT=$t; fi
done
gkilled=0; gcomplete=0; grun=1
while [ "$grun" -le 10 ] || { [ "$gkilled" -lt 2 ] && [ "$grun" -le 40 ]; }; do
    delay=$(awk -v r="$grun" -v t="$GT" 'BEGIN { srand(r * 104729 + 3); printf "%.3f", rand() * t * 1.5 / 1000 }')
    "$HMA" merge --base "$TOYD/base-q8_0.gguf" --model "$TOYD/aligned.gguf" --alpha 0.3 -q -o "$GOUT" 2>/dev/null &
    pid=$!
    sleep "$delay"
    kill -KILL "$pid" 2>/dev/null
    { wait "$pid"; } 2>/dev/null
    st=$?
    for f in "$D"/g/* "$D"/g/.[!.]*; do
        [ -e "$f" ] || continue
        case ${f##*/} in
            out.gguf | .hma-tmp-*) ;;
            *) fail "GGUF run $grun: unexpected file ${f##*/}" ;;
        esac
    done
    if [ -e "$GOUT" ]; then
        cmp -s "$GOUT" "$D/ref.gguf" || fail "GGUF run $grun (killed after ${delay}s): out.gguf differs from the uninterrupted merge"
        gcomplete=$((gcomplete + 1))
    fi
    if [ "$st" -ne 0 ]; then gkilled=$((gkilled + 1)); else GT=$((GT * 3 / 4 + 1)); fi
    rm -rf "$D/g" && mkdir "$D/g"
    grun=$((grun + 1))
done
[ "$gkilled" -ge 2 ] || fail "GGUF: only $gkilled of $((grun - 1)) runs were killed before finishing"
echo "test_kill.sh: GGUF output: $((grun - 1)) runs, $gkilled killed mid-merge, $gcomplete complete, no partial out.gguf: ok"
echo "test_kill.sh: $((run - 1)) runs (inputs made in $((t0 - tg)) ms, reference merge ${T} ms): $killed killed mid-merge, $complete complete outputs, no partial file, stale temporaries swept after $swept kills: ok"
