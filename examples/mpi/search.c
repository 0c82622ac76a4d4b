/*
 * mpi/search.c - `hma-mpi search ARGS`: `hma search ARGS` (the alignment-tax
 * experiment, experiment/search.h) with the candidates of each request
 * scored on different ranks. Every rank opens its own toy evaluator
 * (exp_scorer_open, same configuration); rank 0 runs the driver
 * (exp_search_drive) and prints and writes everything; its scoring callback
 * broadcasts the request (which set, n, K, the n ratio vectors), every rank
 * scores the vectors i with i mod N = its rank, the ranks agree on the
 * outcome (MPI_Allreduce, MAXLOC of the status: which rank failed) and the
 * scores are gathered back to rank 0 (MPI_Gatherv) and put in candidate
 * order. Scores do not depend on the rank that computes them, so the table
 * and the files are those of `hma search ARGS` in one process (only the
 * timings differ). The other ranks serve requests until rank 0 says stop;
 * the stop carries rank 0's exit status, so every rank exits nonzero when
 * the search failed anywhere.
 *
 * Testing knob: HMA_MPI_TEST_FAIL_RANK=R makes rank R fail its first
 * scoring request, as if its evaluator had failed (tests/test_mpi.sh uses
 * it; nothing else should).
 */
#include "hmampi.h"

#include "cli.h"
#include "search.h"

#include <mpi.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OP_STOP = 0, OP_SCORE = 1 };

typedef struct {
    exp_scorer *local;
    int rank, world;
    int fail_first; /* the test knob: fail the first request */
    int ended;      /* the workers have left their loop (a request failed) */
} mpi_search;

/* Vectors rank r scores of n: i = r, r + world, ... */
static int share(int n, int r, int world) { return n > r ? (n - r - 1) / world + 1 : 0; }

/* Every rank's part of one request (the header already broadcast, `ratios`
 * n x k on every rank): score this rank's share, agree on the outcome, gather
 * the scores into `scores` (n x 2, candidate order; rank 0 only). Returns 0,
 * or the worst status of any rank (rank 0 says which rank failed). */
static int serve(mpi_search *m, int set, int n, int k, const double *ratios, double *scores) {
    int mine = share(n, m->rank, m->world), rc = 0;
    double *x = malloc((size_t)(mine ? mine : 1) * (size_t)k * sizeof *x);
    double *s = malloc((size_t)(mine ? mine : 1) * 2 * sizeof *s);
    double *all = NULL;
    int *counts = NULL, *displs = NULL;
    if (m->rank == 0) {
        all = malloc((size_t)(n ? n : 1) * 2 * sizeof *all);
        counts = malloc((size_t)m->world * sizeof *counts);
        displs = malloc((size_t)m->world * sizeof *displs);
    }
    if (!x || !s || (m->rank == 0 && (!all || !counts || !displs))) {
        fprintf(stderr, "hma-mpi search: rank %d: out of memory\n", m->rank);
        rc = 1;
    } else if (m->fail_first) {
        fprintf(stderr, "hma-mpi search: rank %d: failing its first scoring because HMA_MPI_TEST_FAIL_RANK is set "
                        "(a test knob)\n", m->rank);
        rc = 1;
    } else if (k != (int)exp_scorer_k(m->local)) {
        fprintf(stderr, "hma-mpi search: rank %d: asked for %d ratios, its evaluator has %zu groups\n", m->rank, k,
                exp_scorer_k(m->local));
        rc = 1;
    } else if (mine) {
        for (int j = 0; j < mine; j++)
            memcpy(x + (size_t)j * (size_t)k, ratios + (size_t)(m->rank + j * m->world) * (size_t)k,
                   (size_t)k * sizeof *x);
        rc = exp_scorer_score(m->local, set, (size_t)mine, (size_t)k, x, s); /* printed why */
    }
    m->fail_first = 0;
    int in[2] = {rc, m->rank}, worst[2] = {rc, m->rank};
    if (MPI_Allreduce(in, worst, 1, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD) != MPI_SUCCESS) worst[0] = 1;
    if (!worst[0]) {
        if (m->rank == 0)
            for (int r = 0, o = 0; r < m->world; r++) {
                counts[r] = 2 * share(n, r, m->world);
                displs[r] = o;
                o += counts[r];
            }
        if (MPI_Gatherv(s, 2 * mine, MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
            fprintf(stderr, "hma-mpi search: rank %d: MPI_Gatherv failed\n", m->rank);
            worst[0] = 1;
        } else if (m->rank == 0) {
            /* rank r's j-th score pair is candidate r + j * world */
            for (int r = 0; r < m->world; r++)
                for (int j = 0; j < counts[r] / 2; j++)
                    memcpy(scores + 2 * (size_t)(r + j * m->world), all + displs[r] + 2 * j, 2 * sizeof *scores);
        }
    } else if (m->rank == 0) {
        fprintf(stderr, "hma-mpi search: rank %d failed to score (exit status %d, its message above): every rank stops\n",
                worst[1], worst[0]);
    }
    free(x);
    free(s);
    free(all);
    free(counts);
    free(displs);
    return worst[0];
}

/* Rank 0's exp_score_fn: one request to every rank. */
static int score_on_ranks(void *user, int set, size_t n, size_t k, const double *ratios, double *scores) {
    mpi_search *m = user;
    if (n > (size_t)(INT_MAX / 2) / (k ? k : 1)) {
        fprintf(stderr, "hma-mpi search: %zu vectors of %zu ratios are too many for one request\n", n, k);
        return 1; /* nothing sent: the workers still wait; the stop will tell them */
    }
    int hdr[4] = {OP_SCORE, set, (int)n, (int)k};
    if (MPI_Bcast(hdr, 4, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS ||
        MPI_Bcast((void *)ratios, (int)(n * k), MPI_DOUBLE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
        fprintf(stderr, "hma-mpi search: MPI_Bcast failed\n");
        m->ended = 1;
        return 1;
    }
    int rc = serve(m, set, (int)n, (int)k, ratios, scores);
    if (rc) m->ended = 1; /* every rank saw it and left its loop */
    return rc;
}

/* A worker: serve requests until rank 0 says stop; returns rank 0's status,
 * or the status of a request that failed on some rank. */
static int worker(mpi_search *m) {
    for (;;) {
        int hdr[4];
        if (MPI_Bcast(hdr, 4, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
            fprintf(stderr, "hma-mpi search: rank %d: MPI_Bcast failed\n", m->rank);
            return 1;
        }
        if (hdr[0] == OP_STOP) return hdr[1];
        int n = hdr[2], k = hdr[3];
        double *r = malloc((size_t)(n ? n : 1) * (size_t)(k ? k : 1) * sizeof *r);
        if (!r) {
            /* the vectors cannot be received, and the broadcast must be: stop the job */
            fprintf(stderr, "hma-mpi search: rank %d: out of memory; aborting every rank\n", m->rank);
            MPI_Abort(MPI_COMM_WORLD, 1);
            return 1;
        }
        if (MPI_Bcast(r, n * k, MPI_DOUBLE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
            fprintf(stderr, "hma-mpi search: rank %d: MPI_Bcast failed\n", m->rank);
            free(r);
            return 1;
        }
        int rc;
        rc = serve(m, hdr[1], n, k, r, NULL);
        free(r);
        if (rc) return rc;
    }
}

int hmampi_cmd_search(int argc, char **argv, int rank, int world) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            if (rank == 0) {
                exp_search_config c;
                printf("usage: mpirun -np N hma-mpi search ARGS (the arguments of 'hma search'; the\n"
                       "candidates of each batch are scored on different ranks, rank 0 prints)\n\n");
                fflush(stdout);
                cli_search_parse(argc, argv, &c);
            }
            return 0;
        }
    /* rank 0 parses (and reports a usage error); the others parse the same
     * argv silently once it is known to be good */
    exp_search_config cfg;
    int rc = rank == 0 ? cli_search_parse(argc, argv, &cfg) : 0;
    if (MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS) rc = 1;
    if (rc >= 0) return rc;
    if (rank != 0 && cli_search_parse(argc, argv, &cfg) != -1) return 1;

    mpi_search m = {NULL, rank, world, 0, 0};
    const char *fail = getenv("HMA_MPI_TEST_FAIL_RANK");
    m.fail_first = fail && *fail && atoi(fail) == rank;
    rc = exp_scorer_open(&m.local, &cfg); /* printed why */
    int in[2] = {rc, rank}, worst[2] = {rc, rank};
    if (MPI_Allreduce(in, worst, 1, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD) != MPI_SUCCESS) worst[0] = 1;
    if (worst[0]) {
        if (rank == 0)
            fprintf(stderr, "hma-mpi search: rank %d could not open the evaluator (exit status %d): every rank stops\n",
                    worst[1], worst[0]);
        exp_scorer_free(m.local);
        return rc ? rc : worst[0];
    }
    if (rank == 0) {
        rc = exp_search_drive(&cfg, m.local, score_on_ranks, &m);
        if (!m.ended) {
            int hdr[4] = {OP_STOP, rc, 0, 0};
            if (MPI_Bcast(hdr, 4, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS && !rc) rc = 1;
        }
    } else {
        rc = worker(&m);
    }
    exp_scorer_free(m.local);
    return rc;
}
