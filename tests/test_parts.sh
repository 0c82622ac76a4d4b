#!/bin/sh
# test_parts.sh - partitioned merges with `hma merge --rank R --world N` and
# `--finalize --world N` on the toy pair, sharded in 8 shards: the union of
# the parts is byte-identical to the single-process output for N = 1, 3, 8
# and 11 (idle parts); --rank auto reads each launcher's variables; finalize
# fails naming a missing, truncated or corrupted shard and its part, and
# writes no index; rerunning the part named and finalizing again completes
# the output. Environment: HMA_BIN (default examples/hma).
set -u
HMA=${HMA_BIN:-examples/hma}
T=examples/data/toy-llama
D=$(mktemp -d "${TMPDIR:-/tmp}/hma-test-parts.XXXXXX") || exit 1
trap 'rm -rf "$D"' EXIT INT TERM
N=0
fail() { echo "test_parts.sh: FAIL: $*" >&2; exit 1; }
[ -x "$HMA" ] || fail "no hma program at $HMA (set HMA_BIN)"
# the same arguments (and the same -o) for every run: the command line is
# recorded in each shard's metadata
ARGS="--base $T/base.safetensors --model $T/aligned.safetensors --alpha 0.25 --shard-size 1400KB -q -o $D/out"

"$HMA" merge $ARGS || fail "single-process merge"
mv "$D/out" "$D/single"
[ "$(ls "$D/single" | grep -c '^model-.*-of-00008\.safetensors$')" = 8 ] || fail "expected 8 shards: $(ls "$D/single")"

same() { # the output equals the single-process one, hidden files included
    diff -r "$D/single" "$D/out" >"$D/diff" 2>&1 || { cat "$D/diff" >&2; fail "$1: differs from the single-process output"; }
    N=$((N + 1))
}
for world in 1 3 8 11; do
    r=0
    while [ $r -lt $world ]; do
        "$HMA" merge $ARGS --rank $r --world $world || fail "part $r of $world"
        r=$((r + 1))
    done
    [ ! -e "$D/out/model.safetensors.index.json" ] || fail "an index before finalize ($world parts)"
    "$HMA" merge $ARGS --finalize --world $world || fail "finalize of $world parts"
    same "$world parts"
    rm -rf "$D/out"
done

# --rank auto: each launcher's variables (world 2: shards 0,2,4,6 and 1,3,5,7)
for vars in "OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE" "PMI_RANK PMI_SIZE" "SLURM_PROCID SLURM_NTASKS" "RANK WORLD_SIZE"; do
    set -- $vars
    env "$1=0" "$2=2" "$HMA" merge $ARGS --rank auto || fail "--rank auto with $1"
    env "$1=1" "$2=2" "$HMA" merge $ARGS --rank=auto || fail "--rank=auto with $1"
    "$HMA" merge $ARGS --finalize --world 2 || fail "finalize after --rank auto ($1)"
    same "--rank auto with $1"
    rm -rf "$D/out"
done
env -u OMPI_COMM_WORLD_RANK -u PMI_RANK -u SLURM_PROCID -u RANK "$HMA" merge $ARGS --rank auto 2>"$D/err"
[ $? = 2 ] || fail "--rank auto without a launcher should exit 2"
grep -q "no launcher rank" "$D/err" || fail "--rank auto message: $(cat "$D/err")"
N=$((N + 1))

# usage errors
for bad in "--rank 0" "--world 2" "--rank 2 --world 2" "--rank 0 --world 2 --finalize" "--finalize" "--rank x --world 2"; do
    "$HMA" merge $ARGS $bad 2>"$D/err"
    [ $? = 2 ] || fail "'$bad' should be a usage error"
    N=$((N + 1))
done

# finalize refuses an incomplete output, names the shard and its part, writes no index
run_parts() { r=0; while [ $r -lt 3 ]; do "$HMA" merge $ARGS --rank $r --world 3 || fail "part $r"; r=$((r + 1)); done; }
refused() { # what, expected text
    "$HMA" merge $ARGS --finalize --world 3 2>"$D/err"
    [ $? = 1 ] || fail "$1: finalize should fail"
    grep -q "$2" "$D/err" || fail "$1: message lacks '$2': $(cat "$D/err")"
    [ ! -e "$D/out/model.safetensors.index.json" ] || fail "$1: index written"
    N=$((N + 1))
}
S3=model-00003-of-00008.safetensors # shard 2: part 2 of 3
run_parts
rm "$D/out/$S3"
refused "missing shard" "$S3 (part 2 of 3) is missing"
"$HMA" merge $ARGS --rank 2 --world 3 || fail "rerun of part 2"
"$HMA" merge $ARGS --finalize --world 3 || fail "finalize after the rerun"
same "resumed after a missing shard"
rm -rf "$D/out"

run_parts
size=$(wc -c <"$D/out/$S3")
head -c $((size - 1)) "$D/out/$S3" >"$D/t" && cat "$D/t" >"$D/out/$S3"
refused "truncated shard" "$S3 (part 2 of 3) is $((size - 1)) bytes, expected $size"

run_parts
# flip one byte in the tensor data (well past the header)
printf '\377' | dd of="$D/out/$S3" bs=1 seek=1000000 conv=notrunc 2>/dev/null
refused "corrupted shard" "$S3 (part 2 of 3): checksum"

run_parts
rm "$D/out/.hma-part-$S3"
refused "missing record" "$S3 (part 2 of 3) has no record"

echo "test_parts.sh: ok ($N checks)"
