/*
 * experiment/toyeval.c - the toy evaluator of the experiment: load a toy-llama
 * model (toyllm.c) from a checkpoint or from a merge plan held in memory,
 * pick rows of eval.bin, and score them in bits per byte (see toyeval.h).
 * `hma eval` (cli/eval.c) and the search driver (search.c) use it.
 */
#define _POSIX_C_SOURCE 200809L
#include "toyeval.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static char toy_msg[1024];

const char *exp_error(void) { return toy_msg; }

static int toy_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(toy_msg, sizeof toy_msg, fmt, ap);
    va_end(ap);
    return code ? code : 1;
}

int exp_fail(const char *cmd) {
    fprintf(stderr, "hma %s: %s\n", cmd, toy_msg);
    return 1;
}

double exp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *exp_default_eval(const char *model_path) {
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

int exp_rows_pick(exp_rows *out, const toyllm_evalset *es, unsigned rows) {
    memset(out, 0, sizeof *out);
    if (rows == 0 || rows > es->n) rows = es->n;
    size_t L = es->L;
    out->code = malloc((size_t)rows * L);
    out->prose = malloc((size_t)rows * L);
    if (!out->code || !out->prose) {
        exp_rows_free(out);
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

void exp_rows_free(exp_rows *r) {
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

int exp_load_store(toyllm **out, const hma_store *st) {
    getter_ctx c = {st, NULL, NULL, 0};
    return load_with(out, get_store, &c);
}

int exp_load_plan(toyllm **out, hma_plan *plan) {
    getter_ctx c = {NULL, plan, NULL, 0};
    return load_with(out, get_plan, &c);
}

int exp_score(const toyllm *m, const exp_rows *r, int threads, double s[2]) {
    int rc = toyllm_score(m, r->code, r->rows, r->L, threads, &s[0]);
    if (!rc) rc = toyllm_score(m, r->prose, r->rows, r->L, threads, &s[1]);
    if (rc == TOYLLM_ENOMEM) return toy_fail(HMA_ERR_NO_MEMORY, "out of memory scoring");
    if (rc) return toy_fail(HMA_ERR_INVALID_ARGUMENT, "scoring failed (toyllm error %d)", rc);
    return 0;
}
