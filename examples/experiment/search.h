/*
 * experiment/search.h - the search driver of the alignment-tax experiment:
 * MA along a = 0 ... 1 and an HMA ratio search at each mean on a toy-llama
 * pair, printed as one markdown table, with SVG plots and CSV files (see
 * search.c and docs/experiment.md). `hma search` (cli/search.c) fills the
 * configuration from its options; the driver takes a "score these n
 * vectors" callback so that a program can score them elsewhere.
 */
#ifndef EXP_SEARCH_H
#define EXP_SEARCH_H

#include <stddef.h>

#define EXP_SEARCH_MAX_LIST 64 /* most --ma and --means values */

typedef struct exp_search_config {
    const char *base, *model;  /* the checkpoint pair (required) */
    const char *groups;        /* HMA groups spec (default blocks:3) */
    const char *eval_path;     /* eval.bin; NULL: the one beside base */
    const char *outdir;        /* output folder (default ".") */
    double ma[EXP_SEARCH_MAX_LIST];
    size_t n_ma;               /* MA ratios (default 0.1 ... 0.9) */
    double means[EXP_SEARCH_MAX_LIST];
    size_t n_means;            /* HMA means (default 0.3, 0.5, 0.7) */
    long budget;               /* candidates per search (default 10) */
    long search_rows;          /* rows of each set scoring candidates (default 32) */
    long rows;                 /* rows of each set of the final table (0: all) */
    long threads;              /* scoring threads (default 2) */
    unsigned long long seed;   /* search seed (default 0) */
    double lo, hi;             /* bounds of every ratio (default 0 and 1) */
    long batch;                /* candidates the search proposes together (default 1) */
} exp_search_config;

/* Set the defaults above (base and model NULL). */
void exp_search_config_init(exp_search_config *c);

/* Run the experiment in this process: exp_scorer_open(), then
 * exp_search_drive() with exp_scorer_score() on that scorer. Progress on
 * stderr, the table on stdout, files in c->outdir. The configuration must be
 * valid (budget, threads and batch >= 1, lo <= hi, every mean within
 * [lo, hi]). Returns the exit status: 0, 1 on an error (one line on stderr),
 * 2 when the groups are too many. */
int exp_search_run(const exp_search_config *c);

/* ---- the pieces, for a program that scores elsewhere (e.g. over MPI ranks) ----
 *
 * The driver asks for scores through a callback, `n` ratio vectors at a
 * time; a distributed program gives each worker its share of them. Sketch of
 * an MPI program (every rank runs the toy evaluator):
 *
 *   every rank:  exp_scorer_open(&local, &cfg)          (same cfg everywhere)
 *   rank 0:      exp_search_drive(&cfg, local, scatter, &ctx), then tells the
 *                workers to stop
 *   scatter():   send `set`, `n` and the vectors to the ranks (e.g. vector i
 *                to rank i % size), score rank 0's share with
 *                exp_scorer_score(local, ...), gather the scores back into
 *                place i
 *   rank != 0:   loop: receive set, n and vectors; exp_scorer_score(local, ...);
 *                send the scores back; until told to stop
 *
 * Scores do not depend on where or in which order they are computed, so the
 * table is the one `hma search --batch B` prints in one process
 * (examples/mpi/search.c is this program: `hma-mpi search`). */

/* Score n ratio vectors (row-major, n x k) on the candidate subset (set 0)
 * or on the full set (set 1): scores[2 i] = code bits/byte, scores[2 i + 1] =
 * prose bits/byte of vector i. Return 0, or nonzero to stop the experiment
 * (after printing why on stderr). The driver sends each vector once per set
 * (it caches scores); n is a batch of the search (at most cfg.batch), the
 * MA curve, or the final rescoring of the chosen points. */
typedef int (*exp_score_fn)(void *user, int set, size_t n, size_t k, const double *ratios, double *scores);

/* The toy evaluator of one process: the checkpoint pair and a merge plan in
 * memory, the rows of the subset and of the full set. */
typedef struct exp_scorer exp_scorer;

/* Open the evaluator for c (base, model, groups, eval_path, rows,
 * search_rows, threads). Returns the exit status as exp_search_run() does
 * (0 with *out set; else a message on stderr and *out NULL). */
int exp_scorer_open(exp_scorer **out, const exp_search_config *c);
/* Number of ratios K (the plan's groups). */
size_t exp_scorer_k(const exp_scorer *s);
/* An exp_score_fn: user is the exp_scorer; scores the vectors one after the
 * other with the scorer's threads (cli_fail/exp_fail print the error). */
int exp_scorer_score(void *user, int set, size_t n, size_t k, const double *ratios, double *scores);
/* Free; NULL is fine. */
void exp_scorer_free(exp_scorer *s);

/* The experiment with scores from fn(user, ...): MA on the full set, one
 * search per mean through hma_searcher (batches of c->batch), the chosen
 * points rescored, then the table, CSV and SVG files as exp_search_run().
 * `local` (opened with the same c) gives K, the groups shown in the header
 * and the row counts; it is not used to score unless fn does. Returns the
 * exit status as exp_search_run(). */
int exp_search_drive(const exp_search_config *c, const exp_scorer *local, exp_score_fn fn, void *user);

#endif /* EXP_SEARCH_H */
