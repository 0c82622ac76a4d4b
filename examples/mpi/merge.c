/*
 * mpi/merge.c - `hma-mpi merge ARGS`: `hma merge ARGS` split over the MPI
 * ranks. Rank R writes part R of N (the shards i with i mod N = R, see
 * hma_writer_set_part()); the ranks agree that every part succeeded
 * (MPI_Allreduce of the exit status, maximum); only then does rank 0
 * finalize (check every shard, write the index and the config files), and
 * its status is broadcast so that every rank exits with it. When any rank
 * fails, no rank finalizes: no index is written and every rank exits
 * nonzero.
 *
 * Testing knob: HMA_MPI_TEST_FAIL_RANK=R makes rank R fail at once, as if
 * its merge had failed (tests/test_mpi.sh uses it; nothing else should).
 */
#include "hmampi.h"

#include "cli.h"

#include <mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int hmampi_cmd_merge(int argc, char **argv, int rank, int world) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            /* the options are those of hma merge, minus the partition ones */
            if (rank == 0) {
                printf("usage: mpirun -np N hma-mpi merge ARGS (the arguments of 'hma merge', without\n"
                       "--rank/--world/--finalize: rank R writes part R of N, rank 0 finalizes)\n\n");
                fflush(stdout);
                cli_cmd_merge(argc, argv);
            }
            return 0;
        }
    int rc;
    const char *fail = getenv("HMA_MPI_TEST_FAIL_RANK");
    if (fail && *fail && atoi(fail) == rank) {
        fprintf(stderr, "hma-mpi merge: rank %d: failing because HMA_MPI_TEST_FAIL_RANK=%s (a test knob)\n", rank, fail);
        rc = 1;
    } else {
        rc = cli_merge_partition(argc, argv, rank, world, 0, rank != 0);
    }
    int worst = rc;
    if (MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) worst = 1;
    if (worst) {
        if (rank == 0)
            fprintf(stderr, "hma-mpi merge: a rank failed (exit status %d): not finalized, no index written; "
                            "rerun (the parts that succeeded are rewritten) or rerun the failed parts with "
                            "'hma merge ... --rank R --world %d', then finalize\n", worst, world);
        return rc ? rc : 1;
    }
    if (rank == 0) rc = cli_merge_partition(argc, argv, 0, world, 1, 0);
    if (MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS && !rc) rc = 1;
    return rc;
}
