/*
 * cli/eval.c - `hma eval`: score a toy-llama checkpoint, or a merge of the
 * base and aligned checkpoints held in memory, on eval.bin in bits per byte,
 * with the experiment's toy evaluator (experiment/toyeval.h).
 *
 *   hma eval CHECKPOINT [--eval FILE] [--rows N] [--threads N] [--json]
 *   hma eval --base B --model M --alpha a|a1,a2,... [--groups SPEC]
 *            [--eval FILE] [--rows N] [--threads N] [--json]
 */
#define _POSIX_C_SOURCE 200809L
#include "args.h"
#include "cli.h"
#include "toyeval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void eval_usage(FILE *f) {
    fprintf(f,
            "usage: hma eval CHECKPOINT [options]\n"
            "       hma eval --base B --model M --alpha a|a1,a2,... [--groups SPEC] [options]\n"
            "Scores a toy-llama checkpoint (examples/data/toy-llama) on eval.bin in bits per byte:\n"
            "code = forgetting, prose = alignment; lower is better for both.\n"
            "The second form scores theta = (1 - a_k) base + a_k model (a = weight of the\n"
            "ALIGNED model) merged in memory, rounded to BF16 as a saved merge would be.\n"
            "  --alpha a|a1,..  one ratio (plain MA) or one per group\n"
            "  --groups SPEC    all | blocks:K | split:S1,S2,.. | layers (default: all for one\n"
            "                   ratio, blocks:K for K ratios)\n"
            "  --eval FILE      evaluation set (default: eval.bin beside the checkpoint)\n"
            "  --rows N         N evenly spaced rows of each set (default: all)\n"
            "  --threads N      worker threads (default 2; scores do not depend on it)\n"
            "  --json           print one JSON object\n");
}

int cli_cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *base = NULL, *model = NULL, *alpha = NULL, *groups = NULL, *evalp = NULL;
    long rows = 0, threads = 2;
    int json = 0;
    cli_args args;
    cli_args_init(&args, argc, argv);
    while (cli_args_next(&args)) {
        const char *v = args.arg; /* an option's value; NULL when it has none */
        if (cli_args_help(&args)) {
            eval_usage(stdout);
            return 0;
        } else if (cli_args_flag(&args, "--json")) json = 1;
        else if (cli_args_value(&args, "--base", &v)) base = v;
        else if (cli_args_value(&args, "--model", &v)) model = v;
        else if (cli_args_value(&args, "--alpha", &v)) alpha = v;
        else if (cli_args_value(&args, "--groups", &v)) groups = v;
        else if (cli_args_value(&args, "--eval", &v)) evalp = v;
        else if (cli_args_value(&args, "--rows", &v)) {
            if (v && cli_parse_long(v, 0, 1024, &rows)) return cli_usage("eval", "bad number");
        } else if (cli_args_value(&args, "--threads", &v)) {
            if (v && cli_parse_long(v, 1, 1024, &threads)) return cli_usage("eval", "bad number");
        } else if (cli_args_is_option(&args)) return cli_usage("eval", "unknown option or missing value");
        else if (ckpt) return cli_usage("eval", "more than one CHECKPOINT");
        else ckpt = args.arg;
        if (!v) return cli_usage("eval", "unknown option or missing value");
    }
    int plan_mode = base || model || alpha || groups;
    if (plan_mode && ckpt) return cli_usage("eval", "give either CHECKPOINT or --base/--model/--alpha");
    if (plan_mode && (!base || !model || !alpha)) return cli_usage("eval", "--base, --model and --alpha go together");
    if (!plan_mode && !ckpt) return cli_usage("eval", "missing CHECKPOINT");
    double ratios[1024];
    size_t k = 0;
    if (plan_mode && !(k = cli_parse_list(alpha, ratios, 1024))) return cli_usage("eval", "bad --alpha list");

    char *evdefault = evalp ? NULL : exp_default_eval(plan_mode ? base : ckpt);
    if (!evalp && !evdefault) return cli_usage("eval", "out of memory");
    const char *evpath = evalp ? evalp : evdefault;

    int status = 1, rc;
    hma_store *st[2] = {NULL, NULL};
    hma_plan *plan = NULL;
    toyllm *m = NULL;
    toyllm_evalset es;
    exp_rows r = {0, 0, NULL, NULL};
    memset(&es, 0, sizeof es);
    double t0 = exp_now();
    if (plan_mode) {
        char spec[32];
        if (!groups) {
            if (k == 1) groups = "all";
            else {
                snprintf(spec, sizeof spec, "blocks:%zu", k);
                groups = spec;
            }
        }
        if ((rc = hma_store_open(&st[0], base, 0)) || (rc = hma_store_open(&st[1], model, 0)) ||
            (rc = hma_plan_create(&plan, st, 2)) || (rc = hma_plan_set_groups(plan, groups)) ||
            (rc = hma_plan_set_output_dtype(plan, HMA_DTYPE_BF16))) {
            status = cli_fail("eval", rc);
            goto done;
        }
        size_t kg = hma_plan_group_count(plan);
        if (k != 1 && k != kg) {
            fprintf(stderr, "hma eval: --alpha has %zu ratios but --groups %s makes %zu groups\n", k, groups, kg);
            status = 2;
            goto done;
        }
        rc = k == 1 ? hma_plan_set_ratio(plan, ratios[0]) : hma_plan_set_ratios(plan, ratios, k);
        if (rc) {
            status = cli_fail("eval", rc);
            goto done;
        }
        if (exp_load_plan(&m, plan)) {
            status = exp_fail("eval");
            goto done;
        }
    } else {
        if ((rc = hma_store_open(&st[0], ckpt, 0))) {
            status = cli_fail("eval", rc);
            goto done;
        }
        if (exp_load_store(&m, st[0])) {
            status = exp_fail("eval");
            goto done;
        }
    }
    double t_load = exp_now() - t0;
    rc = toyllm_evalset_load(&es, evpath);
    if (rc) {
        fprintf(stderr, "hma eval: %s: %s\n", evpath,
                rc == TOYLLM_EIO ? "cannot read" : rc == TOYLLM_EFORMAT ? "not an eval.bin (bad size or header)" : "cannot load");
        goto done;
    }
    if (exp_rows_pick(&r, &es, (unsigned)rows)) {
        status = exp_fail("eval");
        goto done;
    }
    double s[2];
    double t1 = exp_now();
    if (exp_score(m, &r, (int)threads, s)) {
        status = exp_fail("eval");
        goto done;
    }
    double t_score = exp_now() - t1;
    if (json) {
        printf("{\"model\":");
        if (plan_mode) {
            printf("{\"base\":");
            cli_json_string(stdout, base);
            printf(",\"aligned\":");
            cli_json_string(stdout, model);
            printf(",\"groups\":");
            cli_json_string(stdout, groups);
            printf(",\"alpha\":[");
            for (size_t i = 0; i < k; i++) printf(i ? ",%.17g" : "%.17g", ratios[i]);
            printf("]}");
        } else cli_json_string(stdout, ckpt);
        printf(",\"eval\":");
        cli_json_string(stdout, evpath);
        printf(",\"rows\":%u,\"code_bpb\":%.17g,\"prose_bpb\":%.17g,\"load_s\":%.3f,\"score_s\":%.3f}\n", r.rows,
               s[0], s[1], t_load, t_score);
    } else {
        if (plan_mode) {
            printf("model: (1 - a) %s + a %s, groups %s, a =", base, model, groups);
            for (size_t i = 0; i < k; i++) printf(i ? ",%g" : " %g", ratios[i]);
            printf(" (merged in memory, BF16)\n");
        } else printf("model: %s\n", ckpt);
        printf("eval:  %s (%u of %u rows of each set, %u bytes a row)\n", evpath, r.rows, es.n, es.L);
        printf("code  %.6f bits/byte (forgetting; lower is better)\n", s[0]);
        printf("prose %.6f bits/byte (alignment; lower is better)\n", s[1]);
        printf("time: load %.2f s, score %.2f s (%ld threads)\n", t_load, t_score, threads);
    }
    status = fflush(stdout) ? 1 : 0;
done:
    toyllm_free(m);
    exp_rows_free(&r);
    toyllm_evalset_free(&es);
    hma_plan_free(plan);
    hma_store_close(st[1]);
    hma_store_close(st[0]);
    free(evdefault);
    return status;
}
