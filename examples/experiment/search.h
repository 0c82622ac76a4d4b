/*
 * experiment/search.h - the search driver of the alignment-tax experiment:
 * MA along a = 0 ... 1 and an HMA ratio search at each mean on a toy-llama
 * pair, printed as one markdown table, with SVG plots and CSV files (see
 * search.c and docs/experiment.md). `hma search` (cli/search.c) fills the
 * configuration from its options.
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
} exp_search_config;

/* Set the defaults above (base and model NULL). */
void exp_search_config_init(exp_search_config *c);

/* Run the experiment: progress on stderr, the table on stdout, files in
 * c->outdir. The configuration must be valid (budget and threads >= 1,
 * lo <= hi, every mean within [lo, hi]). Returns the exit status: 0, 1 on
 * an error (one line on stderr), 2 when the groups are too many. */
int exp_search_run(const exp_search_config *c);

#endif /* EXP_SEARCH_H */
