/*
 * hma_eval.c - `hma eval`: score a toy-llama checkpoint, or a merge of the
 * base and aligned checkpoints held in memory, on eval.bin in bits per byte;
 * plus the scoring helpers of hma_eval.h that `hma search` shares.
 *
 *   hma eval CHECKPOINT [--eval FILE] [--rows N] [--threads N] [--json]
 *   hma eval --base B --model M --alpha a|a1,a2,... [--groups SPEC]
 *            [--eval FILE] [--rows N] [--threads N] [--json]
 */
#define _POSIX_C_SOURCE 200809L
#include "hma_cli.h"
#include "hma_eval.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- shared helpers ------------------------------------------------------ */

static char toy_msg[1024];

const char *hma_toy_error(void) { return toy_msg; }

static int toy_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(toy_msg, sizeof toy_msg, fmt, ap);
    va_end(ap);
    return code ? code : 1;
}

int hma_toy_fail(const char *cmd) {
    fprintf(stderr, "hma %s: %s\n", cmd, toy_msg);
    return 1;
}

double hma_toy_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t hma_toy_parse_list(const char *s, double *v, size_t max) {
    size_t n = 0;
    while (*s) {
        char *end;
        double x = strtod(s, &end);
        if (end == s || !isfinite(x) || n == max) return 0;
        v[n++] = x;
        if (*end == ',' && end[1]) s = end + 1;
        else if (*end) return 0;
        else s = end;
    }
    return n;
}

char *hma_toy_default_eval(const char *model_path) {
    struct stat sb;
    size_t n = strlen(model_path);
    char *p = malloc(n + sizeof "/eval.bin");
    if (!p) return NULL;
    memcpy(p, model_path, n + 1);
    if (stat(model_path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        char *slash = strrchr(p, '/');
        if (slash) slash[0] = '\0';
        else strcpy(p, ".");
    }
    strcat(p, "/eval.bin");
    return p;
}

int hma_toy_rows_pick(hma_toy_rows *out, const toyllm_evalset *es, unsigned rows) {
    memset(out, 0, sizeof *out);
    if (rows == 0 || rows > es->n) rows = es->n;
    size_t L = es->L;
    out->code = malloc((size_t)rows * L);
    out->prose = malloc((size_t)rows * L);
    if (!out->code || !out->prose) {
        hma_toy_rows_free(out);
        return toy_fail(HMA_ERR_NO_MEMORY, "out of memory for %u rows", rows);
    }
    for (unsigned j = 0; j < rows; j++) {
        size_t src = (size_t)((unsigned long long)j * es->n / rows);
        memcpy(out->code + j * L, es->code + src * L, L);
        memcpy(out->prose + j * L, es->prose + src * L, L);
    }
    out->rows = rows;
    out->L = es->L;
    return 0;
}

void hma_toy_rows_free(hma_toy_rows *r) {
    if (!r) return;
    free(r->code);
    free(r->prose);
    memset(r, 0, sizeof *r);
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) u = sign | 0x7f800000u | (man << 13);
    else if (exp) u = sign | ((exp + 112u) << 23) | (man << 13);
    else if (!man) u = sign;
    else { /* subnormal: normalise */
        exp = 113;
        while (!(man & 0x400u)) man <<= 1, exp--;
        u = sign | (exp << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Convert n little-endian elements of a float dtype to float32. */
static int to_f32(hma_dtype dt, const void *src, float *dst, size_t n) {
    const unsigned char *b = src;
    switch (dt) {
    case HMA_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)(b[2 * i] | b[2 * i + 1] << 8) << 16;
            memcpy(&dst[i], &u, 4);
        }
        return 0;
    case HMA_DTYPE_F16:
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32((uint16_t)(b[2 * i] | b[2 * i + 1] << 8));
        return 0;
    case HMA_DTYPE_F32: memcpy(dst, src, n * 4); return 0;
    default: return -1;
    }
}

typedef struct {
    const hma_store *st;
    hma_plan *plan;
    void *buf; /* plan mode: merged bytes of one tensor */
    size_t cap;
} getter_ctx;

/* toyllm_get_fn over a store: checks shape size and dtype, then converts. */
static int get_store(void *vctx, const char *name, float *dst, size_t nelem) {
    getter_ctx *c = vctx;
    const hma_tensor *t = hma_store_find(c->st, name);
    if (!t) return toy_fail(HMA_ERR_NOT_FOUND, "tensor '%s' not found (is this a toy-llama checkpoint?)", name);
    if (hma_tensor_nelements(t) != nelem)
        return toy_fail(HMA_ERR_MISMATCH, "tensor '%s': %llu elements, expected %zu", name,
                        (unsigned long long)hma_tensor_nelements(t), nelem);
    const void *data = hma_tensor_data(t);
    if (!data) return toy_fail(HMA_ERR_IO, "tensor '%s': %s", name, hma_last_error());
    if (to_f32(hma_tensor_dtype(t), data, dst, nelem))
        return toy_fail(HMA_ERR_UNSUPPORTED_DTYPE, "tensor '%s': dtype %s (expected BF16, F16 or F32)", name,
                        hma_dtype_name(hma_tensor_dtype(t)));
    return 0;
}

/* toyllm_get_fn over a plan: merge the whole tensor in memory, then convert. */
static int get_plan(void *vctx, const char *name, float *dst, size_t nelem) {
    getter_ctx *c = vctx;
    size_t row = hma_plan_find(c->plan, name);
    if (row == HMA_NPOS) return toy_fail(HMA_ERR_NOT_FOUND, "tensor '%s' not in the merge plan", name);
    hma_dtype dt = hma_plan_tensor_dtype(c->plan, row);
    uint64_t nbytes = hma_plan_tensor_nbytes(c->plan, row);
    unsigned bits = hma_dtype_bits(dt);
    if (bits == 0 || nbytes != (uint64_t)nelem * (bits / 8))
        return toy_fail(HMA_ERR_MISMATCH, "tensor '%s': merged size %llu bytes, expected %zu elements", name,
                        (unsigned long long)nbytes, nelem);
    if (nbytes > c->cap) {
        void *nb = realloc(c->buf, (size_t)nbytes);
        if (!nb) return toy_fail(HMA_ERR_NO_MEMORY, "out of memory merging '%s'", name);
        c->buf = nb;
        c->cap = (size_t)nbytes;
    }
    int rc = hma_plan_merge_tensor(c->plan, name, 0, c->buf, (size_t)nbytes, NULL);
    if (rc) return toy_fail(rc, "merging '%s': %s: %s", name, hma_strerror(rc), hma_last_error());
    if (to_f32(dt, c->buf, dst, nelem))
        return toy_fail(HMA_ERR_UNSUPPORTED_DTYPE, "tensor '%s': merged dtype %s (expected BF16, F16 or F32)", name,
                        hma_dtype_name(dt));
    return 0;
}

static int load_with(toyllm **out, toyllm_get_fn fn, getter_ctx *c) {
    toy_msg[0] = '\0';
    int rc = toyllm_load(out, fn, c);
    free(c->buf);
    if (rc == TOYLLM_EGET) return toy_msg[0] ? 1 : toy_fail(1, "loading the model failed");
    if (rc == TOYLLM_ENOMEM) return toy_fail(HMA_ERR_NO_MEMORY, "out of memory loading the model");
    if (rc) return toy_fail(1, "loading the model failed (toyllm error %d)", rc);
    return 0;
}

int hma_toy_load_store(toyllm **out, const hma_store *st) {
    getter_ctx c = {st, NULL, NULL, 0};
    return load_with(out, get_store, &c);
}

int hma_toy_load_plan(toyllm **out, hma_plan *plan) {
    getter_ctx c = {NULL, plan, NULL, 0};
    return load_with(out, get_plan, &c);
}

int hma_toy_score(const toyllm *m, const hma_toy_rows *r, int threads, double s[2]) {
    int rc = toyllm_score(m, r->code, r->rows, r->L, threads, &s[0]);
    if (!rc) rc = toyllm_score(m, r->prose, r->rows, r->L, threads, &s[1]);
    if (rc == TOYLLM_ENOMEM) return toy_fail(HMA_ERR_NO_MEMORY, "out of memory scoring");
    if (rc) return toy_fail(HMA_ERR_INVALID_ARGUMENT, "scoring failed (toyllm error %d)", rc);
    return 0;
}

/* ---- hma eval ---------------------------------------------------------------- */

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

int hma_cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *base = NULL, *model = NULL, *alpha = NULL, *groups = NULL, *evalp = NULL;
    long rows = 0, threads = 2;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            eval_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--base") && has) base = argv[++i];
        else if (!strcmp(a, "--model") && has) model = argv[++i];
        else if (!strcmp(a, "--alpha") && has) alpha = argv[++i];
        else if (!strcmp(a, "--groups") && has) groups = argv[++i];
        else if (!strcmp(a, "--eval") && has) evalp = argv[++i];
        else if ((!strcmp(a, "--rows") || !strcmp(a, "--threads")) && has) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < (a[2] == 'r' ? 0 : 1) || v > 1024) return hma_cli_usage("eval", "bad number");
            if (a[2] == 'r') rows = v;
            else threads = v;
        } else if (a[0] == '-' && a[1]) return hma_cli_usage("eval", "unknown option or missing value");
        else if (ckpt) return hma_cli_usage("eval", "more than one CHECKPOINT");
        else ckpt = a;
    }
    int plan_mode = base || model || alpha || groups;
    if (plan_mode && ckpt) return hma_cli_usage("eval", "give either CHECKPOINT or --base/--model/--alpha");
    if (plan_mode && (!base || !model || !alpha)) return hma_cli_usage("eval", "--base, --model and --alpha go together");
    if (!plan_mode && !ckpt) return hma_cli_usage("eval", "missing CHECKPOINT");
    double ratios[1024];
    size_t k = 0;
    if (plan_mode && !(k = hma_toy_parse_list(alpha, ratios, 1024))) return hma_cli_usage("eval", "bad --alpha list");

    char *evdefault = evalp ? NULL : hma_toy_default_eval(plan_mode ? base : ckpt);
    if (!evalp && !evdefault) return hma_cli_usage("eval", "out of memory");
    const char *evpath = evalp ? evalp : evdefault;

    int status = 1, rc;
    hma_store *st[2] = {NULL, NULL};
    hma_plan *plan = NULL;
    toyllm *m = NULL;
    toyllm_evalset es;
    hma_toy_rows r = {0, 0, NULL, NULL};
    memset(&es, 0, sizeof es);
    double t0 = hma_toy_now();
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
            status = hma_cli_fail("eval", rc);
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
            status = hma_cli_fail("eval", rc);
            goto done;
        }
        if (hma_toy_load_plan(&m, plan)) {
            status = hma_toy_fail("eval");
            goto done;
        }
    } else {
        if ((rc = hma_store_open(&st[0], ckpt, 0))) {
            status = hma_cli_fail("eval", rc);
            goto done;
        }
        if (hma_toy_load_store(&m, st[0])) {
            status = hma_toy_fail("eval");
            goto done;
        }
    }
    double t_load = hma_toy_now() - t0;
    rc = toyllm_evalset_load(&es, evpath);
    if (rc) {
        fprintf(stderr, "hma eval: %s: %s\n", evpath,
                rc == TOYLLM_EIO ? "cannot read" : rc == TOYLLM_EFORMAT ? "not an eval.bin (bad size or header)" : "cannot load");
        goto done;
    }
    if (hma_toy_rows_pick(&r, &es, (unsigned)rows)) {
        status = hma_toy_fail("eval");
        goto done;
    }
    double s[2];
    double t1 = hma_toy_now();
    if (hma_toy_score(m, &r, (int)threads, s)) {
        status = hma_toy_fail("eval");
        goto done;
    }
    double t_score = hma_toy_now() - t1;
    if (json) {
        printf("{\"model\":");
        if (plan_mode) {
            printf("{\"base\":");
            hma_cli_json_string(stdout, base);
            printf(",\"aligned\":");
            hma_cli_json_string(stdout, model);
            printf(",\"groups\":");
            hma_cli_json_string(stdout, groups);
            printf(",\"alpha\":[");
            for (size_t i = 0; i < k; i++) printf(i ? ",%.17g" : "%.17g", ratios[i]);
            printf("]}");
        } else hma_cli_json_string(stdout, ckpt);
        printf(",\"eval\":");
        hma_cli_json_string(stdout, evpath);
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
    hma_toy_rows_free(&r);
    toyllm_evalset_free(&es);
    hma_plan_free(plan);
    hma_store_close(st[1]);
    hma_store_close(st[0]);
    free(evdefault);
    return status;
}
