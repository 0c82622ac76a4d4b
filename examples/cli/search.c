/*
 * cli/search.c - `hma search`: reads the options of the alignment-tax
 * experiment and runs its search driver (experiment/search.h). Run
 * `hma search --help`.
 */
#include "args.h"
#include "cli.h"
#include "search.h"

#include <stdio.h>
#include <string.h>

static void search_usage(FILE *f) {
    fprintf(f,
            "usage: hma search --base B --model M [options]\n"
            "The alignment-tax experiment on a toy-llama pair (examples/data/toy-llama):\n"
            "MA theta = (1-a) base + a model (a = weight of the ALIGNED model) at a = 0, the\n"
            "--ma ratios and 1 on the full eval set; an HMA search over per-group ratios\n"
            "a_k with mean a fixed at each --means value, candidates scored on --search-rows\n"
            "rows, the best of each mean rescored on the full set. Prints a markdown table,\n"
            "writes OUT/experiment.svg, OUT/experiment-front.svg (zoom on the Pareto front),\n"
            "OUT/results.csv and OUT/candidates.csv.\n"
            "  --groups SPEC      HMA groups (default blocks:3; see hma merge --help)\n"
            "  --ma LIST          MA ratios (default 0.1,0.2,...,0.9)\n"
            "  --means LIST       HMA means (default 0.3,0.5,0.7)\n"
            "  --budget N         candidates per search, MA centre included (default 10)\n"
            "  --search-rows N    rows of each set scoring candidates (default 32)\n"
            "  --rows N           rows of each set of the final table (default: all)\n"
            "  --lo X --hi X      bounds of every a_k (default 0 and 1)\n"
            "  --seed N           search seed (default 0; mean i uses seed + i)\n"
            "  --eval FILE        evaluation set (default: eval.bin beside --base)\n"
            "  --out DIR          output folder (default .; created if missing)\n"
            "  --threads N        scoring threads (default 2; scores do not depend on it)\n"
            "  --batch B          candidates the search proposes together, from the same\n"
            "                     surrogate (default 1 = the serial search; see docs/search.md)\n");
}

static int parse_list_arg(const char *s, double *v, size_t *n) {
    *n = cli_parse_list(s, v, EXP_SEARCH_MAX_LIST);
    return *n ? 0 : cli_usage("search", "bad number list");
}

/* A count option's value (NULL: missing, reported by the caller). */
static int count_arg(const char *v, long *dst) {
    unsigned long long n;
    if (!v) return 0;
    if (cli_parse_ull(v, 100000, &n)) return cli_usage("search", "bad number");
    *dst = (long)n;
    return 0;
}

int cli_search_parse(int argc, char **argv, exp_search_config *out) {
    exp_search_config c;
    exp_search_config_init(&c);
    cli_args args;
    cli_args_init(&args, argc, argv);
    while (cli_args_next(&args)) {
        const char *v = NULL;
        if (cli_args_help(&args)) {
            search_usage(stdout);
            return 0;
        } else if (cli_args_value(&args, "--base", &v)) c.base = v;
        else if (cli_args_value(&args, "--model", &v)) c.model = v;
        else if (cli_args_value(&args, "--groups", &v)) c.groups = v;
        else if (cli_args_value(&args, "--eval", &v)) c.eval_path = v;
        else if (cli_args_value(&args, "--out", &v)) c.outdir = v;
        else if (cli_args_value(&args, "--ma", &v)) {
            if (v && parse_list_arg(v, c.ma, &c.n_ma)) return 2;
        } else if (cli_args_value(&args, "--means", &v)) {
            if (v && parse_list_arg(v, c.means, &c.n_means)) return 2;
        } else if (cli_args_value(&args, "--lo", &v)) {
            if (v && cli_parse_double(v, &c.lo)) return cli_usage("search", "bad bound");
        } else if (cli_args_value(&args, "--hi", &v)) {
            if (v && cli_parse_double(v, &c.hi)) return cli_usage("search", "bad bound");
        } else if (cli_args_value(&args, "--seed", &v)) {
            if (v && cli_parse_ull(v, ~0ULL, &c.seed)) return cli_usage("search", "bad number");
        } else if (cli_args_value(&args, "--budget", &v)) {
            if (count_arg(v, &c.budget)) return 2;
        } else if (cli_args_value(&args, "--search-rows", &v)) {
            if (count_arg(v, &c.search_rows)) return 2;
        } else if (cli_args_value(&args, "--rows", &v)) {
            if (count_arg(v, &c.rows)) return 2;
        } else if (cli_args_value(&args, "--threads", &v)) {
            if (count_arg(v, &c.threads)) return 2;
        } else if (cli_args_value(&args, "--batch", &v)) {
            if (count_arg(v, &c.batch)) return 2;
        }
        if (!v) return cli_usage("search", "unknown option, missing value or stray argument");
    }
    if (!c.base || !c.model) return cli_usage("search", "--base and --model are required");
    if (c.budget < 1 || c.threads < 1 || c.batch < 1)
        return cli_usage("search", "--budget, --threads and --batch must be >= 1");
    if (!(c.lo <= c.hi)) return cli_usage("search", "--lo must not exceed --hi");
    for (size_t i = 0; i < c.n_means; i++)
        if (c.means[i] < c.lo || c.means[i] > c.hi) return cli_usage("search", "every mean must lie within [--lo, --hi]");
    *out = c;
    return -1;
}

int cli_cmd_search(int argc, char **argv) {
    exp_search_config c;
    int status = cli_search_parse(argc, argv, &c);
    return status >= 0 ? status : exp_search_run(&c);
}
