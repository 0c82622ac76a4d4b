#!/bin/sh
# test_mpi.sh - `mpirun -np N hma-mpi merge ...` on the toy pair, sharded in
# 8 shards: at 1, 3 and 7 ranks (7: one rank writes two shards; more ranks
# than shards are covered by test_parts.sh) the output is byte-identical to
# the single-process `hma merge`; a failing rank (HMA_MPI_TEST_FAIL_RANK,
# the test knob of examples/mpi/merge.c) leaves no index and makes every
# rank exit nonzero; rerunning the failed part with `hma merge --rank` and
# finalizing completes the output. `hma-mpi search` at 1, 2 and 3 ranks
# prints the table of `hma search` alone (stdout equal but for the timings of
# its "scored:" line) and writes the same CSV and SVG files,
# for --batch 1 and 3; a rank failing its first scoring request
# (HMA_MPI_TEST_FAIL_RANK, also a knob of examples/mpi/search.c) makes every
# rank exit nonzero with a message. Skipped, with a message, when mpirun or
# hma-mpi is missing (and under SAN: LSan reports Open MPI's allocations).
# Environment: HMA_BIN (default examples/hma), HMA_MPI_BIN (default
# examples/hma-mpi), SAN.
set -u
HMA=${HMA_BIN:-examples/hma}
MPI=${HMA_MPI_BIN-examples/hma-mpi}
skip() { echo "test_mpi.sh: SKIPPED: $*"; exit 0; }
[ -z "${SAN:-}" ] || skip "not under SAN=$SAN (LSan reports Open MPI's own allocations)"
command -v mpirun >/dev/null 2>&1 || skip "mpirun not found (install openmpi-bin and libopenmpi-dev: make deps)"
[ -n "$MPI" ] && [ -x "$MPI" ] || skip "no hma-mpi program (make mpi; needs mpicc)"
T=examples/data/toy-llama
D=$(mktemp -d "${TMPDIR:-/tmp}/hma-test-mpi.XXXXXX") || exit 1
trap 'rm -rf "$D"' EXIT INT TERM
N=0
fail() { echo "test_mpi.sh: FAIL: $*" >&2; exit 1; }
[ -x "$HMA" ] || fail "no hma program at $HMA (set HMA_BIN)"
# Open MPI refuses to run as root unless told
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
# one machine, whatever its core count; no network probing
MPIRUN="mpirun --oversubscribe --mca btl self,vader"
ARGS="--base $T/base.safetensors --model $T/aligned.safetensors --alpha 0.25 --shard-size 1400KB -q -o $D/out"

"$HMA" merge $ARGS || fail "single-process merge"
mv "$D/out" "$D/single"
[ "$(ls "$D/single" | grep -c '^model-.*-of-00008\.safetensors$')" = 8 ] || fail "expected 8 shards: $(ls "$D/single")"
same() {
    diff -r "$D/single" "$D/out" >"$D/diff" 2>&1 || { cat "$D/diff" >&2; fail "$1: differs from the single-process output"; }
    N=$((N + 1))
}

for np in 1 3 7; do
    $MPIRUN -np $np "$MPI" merge $ARGS >"$D/log" 2>&1 || { cat "$D/log" >&2; fail "hma-mpi merge at $np ranks"; }
    same "$np ranks"
    rm -rf "$D/out"
done

# A failing rank: each rank's exit status is recorded by a wrapper.
cat >"$D/rank.sh" <<EOS
#!/bin/sh
"$MPI" "\$@"
echo \$? >"$D/status.\$OMPI_COMM_WORLD_RANK"
EOS
HMA_MPI_TEST_FAIL_RANK=1 $MPIRUN -np 3 sh "$D/rank.sh" merge $ARGS >"$D/log" 2>&1
for r in 0 1 2; do
    [ -f "$D/status.$r" ] || { cat "$D/log" >&2; fail "rank $r did not finish"; }
    [ "$(cat "$D/status.$r")" != 0 ] || { cat "$D/log" >&2; fail "rank $r exited 0 although rank 1 failed"; }
done
grep -q "HMA_MPI_TEST_FAIL_RANK" "$D/log" || fail "the failing rank did not say why: $(cat "$D/log")"
grep -q "no index written" "$D/log" || fail "rank 0 did not report the failure: $(cat "$D/log")"
[ ! -e "$D/out/model.safetensors.index.json" ] || fail "index written although a rank failed"
N=$((N + 1))
# resume: rerun the failed part alone, then finalize
"$HMA" merge $ARGS --rank 1 --world 3 || fail "rerun of part 1"
"$HMA" merge $ARGS --finalize --world 3 || fail "finalize after the rerun"
same "resumed after a failed rank"

# -- hma-mpi search: the table and files of hma search alone, whatever the rank count
rm -rf "$D/out" "$D/single" "$D"/status.*
SARGS="--base $T/base.safetensors --model $T/aligned.safetensors --rows 2 --search-rows 1 --ma 0.5 --means 0.5 --budget 4 --threads 1 --out $D/out"
# the "scored:" line holds timings: compare it without its numbers of seconds
untimed() { sed '/^scored:/s/[0-9.]* s\([,;)]\)/_ s\1/g' "$1"; }
for b in 1 3; do
    "$HMA" search $SARGS --batch $b >"$D/single.out" 2>"$D/log" || { cat "$D/log" >&2; fail "hma search --batch $b"; }
    grep -q "^| HMA 0.5 |" "$D/single.out" || fail "hma search --batch $b: no HMA row"
    mv "$D/out" "$D/single"
    for np in 1 2 3; do
        $MPIRUN -np $np "$MPI" search $SARGS --batch $b >"$D/mpi.out" 2>"$D/log" ||
            { cat "$D/log" >&2; fail "hma-mpi search --batch $b at $np ranks"; }
        untimed "$D/single.out" >"$D/a"; untimed "$D/mpi.out" >"$D/b"
        diff "$D/a" "$D/b" >"$D/diff" || { cat "$D/diff" >&2; fail "hma-mpi search --batch $b at $np ranks: stdout differs"; }
        for f in results.csv candidates.csv experiment.svg experiment-front.svg; do
            cmp "$D/single/$f" "$D/out/$f" || fail "hma-mpi search --batch $b at $np ranks: $f differs"
        done
        N=$((N + 1))
        rm -rf "$D/out"
    done
    rm -rf "$D/single"
done
# a rank fails its first scoring request: every rank exits nonzero, rank 0 says which
HMA_MPI_TEST_FAIL_RANK=2 $MPIRUN -np 3 sh "$D/rank.sh" search $SARGS --batch 3 >"$D/mpi.out" 2>"$D/log"
for r in 0 1 2; do
    [ -f "$D/status.$r" ] || { cat "$D/log" >&2; fail "search: rank $r did not finish"; }
    [ "$(cat "$D/status.$r")" != 0 ] || { cat "$D/log" >&2; fail "search: rank $r exited 0 although rank 2 failed"; }
done
grep -q "rank 2: failing its first scoring because HMA_MPI_TEST_FAIL_RANK" "$D/log" || fail "search: the failing rank did not say why: $(cat "$D/log")"
grep -q "rank 2 failed to score" "$D/log" || fail "search: rank 0 did not report the failure: $(cat "$D/log")"
! grep -q "^| method |" "$D/mpi.out" || fail "search: a table printed although a rank failed"
N=$((N + 1))

echo "test_mpi.sh: ok ($N checks)"
