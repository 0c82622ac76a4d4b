/*
 * cli/diff.c - `hma diff A B`: how far checkpoint B moved from A, tensor by
 * tensor and layer by layer (||B-A||, ||A||, relative change, cosine): the
 * numbers a user looks at to choose HMA groups. Run `hma diff --help`.
 */
#include "args.h"
#include "cli.h"
#include "pool.h"

#include <hma.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "diff"

static void diff_usage(FILE *f) {
    fprintf(f,
            "usage: hma diff A B [--json] [--threads N] [--layers-only]\n"
            "  A, B           checkpoints (file, model.safetensors.index.json, or folder)\n"
            "  --json         print one JSON object instead of tables\n"
            "  --threads N    tensors measured in parallel (0 = all cores, the default)\n"
            "  --layers-only  text output: only the per-layer table and the total\n"
            "Per tensor: ||B-A||, ||A||, ||B||, relative change ||B-A||/||A|| and\n"
            "cosine(A, B), accumulated in double. Per layer (and in total): the norms\n"
            "are sqrt of sums of squares over the layer's tensors, the cosine is\n"
            "sum(A.B) / (||A|| ||B||) over them. Tensors without a layer are layer '-'.\n");
}

typedef struct row {
    size_t i;      /* plan row */
    long layer;
    const char *name;
    double s[4];   /* sum xy, sum xx, sum yy, sum (y-x)^2 */
    int measured;  /* stats valid */
    const char *note; /* why not measured */
} row;

typedef struct job {
    const hma_plan *plan;
    row *rows;
    char msg[1024]; /* hma_last_error() of the failing row (the pool's error) */
} job;

/* One pool job (common/pool.h): the statistics of one row. */
static int measure(void *ctx, void *scratch, size_t k) {
    (void)scratch;
    job *j = ctx;
    row *r = &j->rows[k];
    return r->measured ? hma_plan_tensor_stats(j->plan, r->i, 0, 1, r->s) : HMA_OK;
}

/* The message is per thread: keep the failing row's, read on its thread. */
static void measure_failed(void *ctx, size_t k, int rc) {
    (void)k, (void)rc;
    job *j = ctx;
    snprintf(j->msg, sizeof j->msg, "%s", hma_last_error());
}

static int cmp_rows(const void *pa, const void *pb) {
    const row *a = pa, *b = pb;
    if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* A JSON number, or null when not finite (JSON has no NaN/Infinity). */
static void jnum(FILE *o, double v) {
    if (isfinite(v)) fprintf(o, "%.17g", v);
    else fputs("null", o);
}

typedef struct agg {
    double s[4];
    size_t tensors;
    uint64_t elements;
} agg;

static void derived(const double s[4], double d[5]) {
    d[0] = sqrt(s[3]);                 /* ||B-A|| */
    d[1] = sqrt(s[1]);                 /* ||A|| */
    d[2] = sqrt(s[2]);                 /* ||B|| */
    d[3] = d[0] / d[1];                /* relative change (inf/NaN when ||A|| = 0) */
    d[4] = s[0] / (d[1] * d[2]);       /* cosine */
}

static void text_line(FILE *o, const char *label, const double s[4]) {
    double d[5];
    derived(s, d);
    fprintf(o, "%-56s %12.6g %12.6g %12.6g %10.6g %10.7f\n", label, d[0], d[1], d[2], d[3], d[4]);
}

static void json_stats(FILE *o, const double s[4]) {
    double d[5];
    derived(s, d);
    fputs("\"diff_norm\":", o);
    jnum(o, d[0]);
    fputs(",\"a_norm\":", o);
    jnum(o, d[1]);
    fputs(",\"b_norm\":", o);
    jnum(o, d[2]);
    fputs(",\"relative\":", o);
    jnum(o, d[3]);
    fputs(",\"cosine\":", o);
    jnum(o, d[4]);
}

int cli_cmd_diff(int argc, char **argv) {
    const char *pa = NULL, *pb = NULL;
    int json = 0, layers_only = 0;
    long threads = 0;
    cli_args a;
    cli_args_init(&a, argc, argv);
    while (cli_args_next(&a)) {
        const char *v;
        if (cli_args_help(&a)) {
            diff_usage(stdout);
            return 0;
        } else if (cli_args_flag(&a, "--json")) json = 1;
        else if (cli_args_flag(&a, "--layers-only")) layers_only = 1;
        else if (cli_args_value(&a, "--threads", &v)) {
            if (cli_parse_long(v, 0, 4096, &threads)) return cli_usage(CMD, "--threads needs an integer 0..4096");
        } else if (cli_args_is_option(&a)) return cli_usage(CMD, "unknown option");
        else if (!pa) pa = a.arg;
        else if (!pb) pb = a.arg;
        else return cli_usage(CMD, "more than two checkpoints");
    }
    if (!pb) return cli_usage(CMD, "need two checkpoints A and B");

    hma_store *st[2] = {NULL, NULL};
    hma_plan *plan = NULL;
    row *rows = NULL;
    agg *layers = NULL;
    int rc;
    if ((rc = hma_store_open(&st[0], pa, 0)) != HMA_OK || (rc = hma_store_open(&st[1], pb, 0)) != HMA_OK ||
        (rc = hma_plan_create(&plan, st, 2)) != HMA_OK) {
        rc = cli_fail(CMD, rc);
        goto done;
    }
    size_t R = hma_plan_tensor_count(plan);
    rows = calloc(R ? R : 1, sizeof *rows);
    long L = hma_plan_layer_count(plan);
    layers = calloc((size_t)L + 1, sizeof *layers); /* slot 0: no layer; slot l+1: layer l */
    if (!rows || !layers) {
        fprintf(stderr, "hma diff: out of memory\n");
        rc = 1;
        goto done;
    }
    for (size_t i = 0; i < R; i++) {
        rows[i].i = i;
        rows[i].layer = hma_plan_tensor_layer(plan, i);
        rows[i].name = hma_plan_tensor_name(plan, i);
        const hma_tensor *ta = hma_plan_tensor_input(plan, i, 0), *tb = hma_plan_tensor_input(plan, i, 1);
        if (!ta) rows[i].note = "only in B";
        else if (!tb) rows[i].note = "only in A";
        else if (!hma_dtype_is_float(hma_tensor_dtype(ta)) || !hma_dtype_is_float(hma_tensor_dtype(tb)))
            rows[i].note = "not a float tensor";
        else if (hma_tensor_nelements(ta) != hma_tensor_nelements(tb)) rows[i].note = hma_plan_tensor_reason(plan, i);
        else rows[i].measured = 1;
    }
    qsort(rows, R, sizeof *rows, cmp_rows);

    job j = {.plan = plan, .rows = rows};
    ex_pool_job pj = {.count = R, .run = measure, .ctx = &j, .on_error = measure_failed};
    int err = ex_pool_run(&pj, (unsigned)threads);
    if (err) {
        fprintf(stderr, "hma diff: %s: ", hma_strerror(err));
        for (const char *s = j.msg; *s; s++) fputc((unsigned char)*s < 0x20 ? '?' : *s, stderr);
        fputc('\n', stderr);
        rc = 1;
        goto done;
    }

    agg total;
    memset(&total, 0, sizeof total);
    size_t unmeasured = 0;
    for (size_t k = 0; k < R; k++) {
        if (!rows[k].measured) {
            unmeasured++;
            continue;
        }
        agg *g = &layers[rows[k].layer + 1];
        const hma_tensor *ta = hma_plan_tensor_input(plan, rows[k].i, 0);
        for (int e = 0; e < 4; e++) g->s[e] += rows[k].s[e];
        g->tensors++;
        g->elements += hma_tensor_nelements(ta);
    }
    /* totals summed in layer order: deterministic */
    for (long l = 0; l <= L; l++) {
        for (int e = 0; e < 4; e++) total.s[e] += layers[l].s[e];
        total.tensors += layers[l].tensors;
        total.elements += layers[l].elements;
    }

    FILE *o = stdout;
    if (json) {
        fputs("{\"a\":", o);
        cli_json_string(o, pa);
        fputs(",\"b\":", o);
        cli_json_string(o, pb);
        fputs(",\"tensors\":[", o);
        int first = 1;
        for (size_t k = 0; k < R; k++) {
            if (!rows[k].measured) continue;
            fputs(first ? "\n{\"name\":" : ",\n{\"name\":", o);
            first = 0;
            cli_json_string(o, rows[k].name);
            if (rows[k].layer >= 0) fprintf(o, ",\"layer\":%ld,", rows[k].layer);
            else fputs(",\"layer\":null,", o);
            fprintf(o, "\"elements\":%llu,",
                    (unsigned long long)hma_tensor_nelements(hma_plan_tensor_input(plan, rows[k].i, 0)));
            json_stats(o, rows[k].s);
            fputc('}', o);
        }
        fputs("],\n\"layers\":[", o);
        first = 1;
        for (long l = 0; l <= L; l++) {
            if (!layers[l].tensors) continue;
            fputs(first ? "\n{\"layer\":" : ",\n{\"layer\":", o);
            first = 0;
            if (l == 0) fputs("null", o);
            else fprintf(o, "%ld", l - 1);
            fprintf(o, ",\"tensors\":%zu,\"elements\":%llu,", layers[l].tensors,
                    (unsigned long long)layers[l].elements);
            json_stats(o, layers[l].s);
            fputc('}', o);
        }
        fprintf(o, "],\n\"total\":{\"tensors\":%zu,\"elements\":%llu,", total.tensors,
                (unsigned long long)total.elements);
        json_stats(o, total.s);
        fputs("},\n\"not_compared\":[", o);
        first = 1;
        for (size_t k = 0; k < R; k++) {
            if (rows[k].measured) continue;
            fputs(first ? "{\"name\":" : ",{\"name\":", o);
            first = 0;
            cli_json_string(o, rows[k].name);
            fputs(",\"reason\":", o);
            cli_json_string(o, rows[k].note ? rows[k].note : "");
            fputc('}', o);
        }
        fputs("]}\n", o);
    } else {
        const char *hdr = "%-56s %12s %12s %12s %10s %10s\n";
        if (!layers_only) {
            fprintf(o, "A: %s\nB: %s\n", pa, pb);
            fprintf(o, hdr, "tensor (by layer, then name)", "||B-A||", "||A||", "||B||", "rel", "cosine");
            for (size_t k = 0; k < R; k++) {
                if (!rows[k].measured) continue;
                text_line(o, rows[k].name, rows[k].s);
            }
            fputc('\n', o);
        }
        fprintf(o, hdr, "layer", "||B-A||", "||A||", "||B||", "rel", "cosine");
        for (long l = 0; l <= L; l++) {
            if (!layers[l].tensors) continue;
            char lb[64];
            if (l == 0) snprintf(lb, sizeof lb, "- (%zu tensors without a layer)", layers[l].tensors);
            else snprintf(lb, sizeof lb, "%ld (%zu tensors)", l - 1, layers[l].tensors);
            text_line(o, lb, layers[l].s);
        }
        char tb[64];
        snprintf(tb, sizeof tb, "total (%zu tensors)", total.tensors);
        text_line(o, tb, total.s);
        if (unmeasured) {
            fprintf(o, "\nnot compared (%zu):\n", unmeasured);
            for (size_t k = 0; k < R; k++)
                if (!rows[k].measured) fprintf(o, "  %s: %s\n", rows[k].name, rows[k].note ? rows[k].note : "");
        }
    }
    rc = 0;
    if (fflush(o) != 0 || ferror(o)) {
        fprintf(stderr, "hma diff: cannot write output\n");
        rc = 1;
    }
done:
    free(rows);
    free(layers);
    hma_plan_free(plan);
    hma_store_close(st[0]);
    hma_store_close(st[1]);
    return rc;
}
