/*
 * mk_reduce.c - the double reductions of mergekit's methods (norms, dots,
 * Gram sums, counts), cut into fixed chunks of HMA__MK_CHUNK elements whose
 * partial sums are added in chunk order: the result is a function of the
 * data alone, never of the thread count.
 */
#include "mergekit/mk.h"

#include "core/pool.h"

#include <string.h>

/* ---- flat reductions ---- */

typedef struct reduce_arg {
    hma__mk_reduce_fn fn;
    void *arg;
    size_t k;
    double *part; /* nchunks * k */
} reduce_arg;

static int reduce_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    reduce_arg *a = arg;
    a->fn(a->arg, e0, e1, a->part + c * a->k);
    return HMA_OK;
}

int hma__mk_reduce(unsigned threads, uint64_t n, size_t k, hma__mk_reduce_fn fn, void *arg,
                   double *sum) {
    for (size_t j = 0; j < k; j++) sum[j] = 0.0;
    uint64_t nc = hma__mk_chunks(n);
    if (nc == 0 || k == 0) return HMA_OK;
    double *part = hma__calloc(nc * k, sizeof *part);
    if (!part) return hma__fail(HMA_ERR_NO_MEMORY, "out of memory (%llu partial sums)",
                                (unsigned long long)(nc * k));
    reduce_arg a = {fn, arg, k, part};
    int rc = hma__mk_for(threads, n, reduce_chunk, &a);
    if (rc == HMA_OK)
        for (uint64_t c = 0; c < nc; c++)
            for (size_t j = 0; j < k; j++) sum[j] += part[c * k + j];
    hma__free(part);
    return rc;
}

/* ---- vector layouts ---- */

hma__mk_vecs hma__mk_vecs_flat(uint64_t n) {
    hma__mk_vecs vs = {1, n, n, 1};
    return vs;
}

hma__mk_vecs hma__mk_vecs_rows(const hma__mk_job *job) {
    if (job->ndim <= 1 || job->shape[job->ndim - 1] == 0) return hma__mk_vecs_flat(job->n);
    uint64_t len = job->shape[job->ndim - 1];
    hma__mk_vecs vs = {job->n / len, len, len, 1};
    return vs;
}

hma__mk_vecs hma__mk_vecs_dim0(const hma__mk_job *job) {
    if (job->ndim <= 1 || job->shape[0] == 0) return hma__mk_vecs_flat(job->n);
    /* x[a, rest] for a = 0..shape[0]-1: the vector of `rest` has stride
     * n / shape[0] between its elements. */
    uint64_t len = job->shape[0], m = job->n / len;
    hma__mk_vecs vs = {m, len, 1, m};
    return vs;
}

/* ---- Gram sums ---- */

/* Strided vectors are summed in blocks of this many neighbours, so that one
 * pass over a tensor row feeds several vectors (cache lines are used whole). */
#define GRAM_STRIDED_BLOCK 64u

typedef struct gram_arg {
    const hma__mk_vecs *vs;
    const float *const *src;
    const float *sub;
    size_t k, P;
    uint64_t nc;    /* chunks along one vector */
    uint64_t block; /* vectors per job */
    uint64_t nvb;   /* vector blocks */
    double *part;   /* (v * nc + c) * P */
} gram_arg;

static void gram_add(const gram_arg *a, uint64_t e, double *acc, float *val) {
    size_t k = a->k;
    for (size_t i = 0; i < k; i++) val[i] = a->sub ? a->src[i][e] - a->sub[e] : a->src[i][e];
    size_t q = 0;
    for (size_t i = 0; i < k; i++) {
        double vi = val[i];
        for (size_t j = i; j < k; j++) acc[q++] += vi * (double)val[j];
    }
}

static int gram_job(void *arg, uint64_t job, unsigned worker) {
    (void)worker;
    const gram_arg *a = arg;
    const hma__mk_vecs *vs = a->vs;
    uint64_t vb = job / a->nc, c = job % a->nc;
    uint64_t v0 = vb * a->block, v1 = v0 + a->block < vs->m ? v0 + a->block : vs->m;
    uint64_t i0 = c * HMA__MK_CHUNK, i1 = vs->len - i0 < HMA__MK_CHUNK ? vs->len : i0 + HMA__MK_CHUNK;
    float *val = hma__malloc(a->k * sizeof *val);
    if (!val) return hma__fail(HMA_ERR_NO_MEMORY, "out of memory (%zu floats)", a->k);
    if (vs->estride == 1) {
        for (uint64_t v = v0; v < v1; v++) {
            double *acc = a->part + (v * a->nc + c) * a->P;
            for (uint64_t i = i0; i < i1; i++) gram_add(a, v * vs->vstride + i, acc, val);
        }
    } else {
        /* Element order within each vector is still i ascending. */
        for (uint64_t i = i0; i < i1; i++)
            for (uint64_t v = v0; v < v1; v++)
                gram_add(a, v * vs->vstride + i * vs->estride, a->part + (v * a->nc + c) * a->P, val);
    }
    hma__free(val);
    return HMA_OK;
}

int hma__mk_gram(unsigned threads, const hma__mk_vecs *vs, const float *const *src, size_t k,
                 const float *sub, double *g) {
    size_t P = k * (k + 1) / 2;
    uint64_t m = vs->m;
    if (m == 0 || P == 0) return HMA_OK;
    memset(g, 0, m * P * sizeof *g);
    if (vs->len == 0) return HMA_OK;
    gram_arg a;
    a.vs = vs;
    a.src = src;
    a.sub = sub;
    a.k = k;
    a.P = P;
    a.nc = hma__mk_chunks(vs->len);
    uint64_t min_block = vs->estride == 1 ? 1 : GRAM_STRIDED_BLOCK;
    uint64_t fit = a.nc == 1 ? HMA__MK_CHUNK / vs->len : 0; /* short vectors: several per job */
    a.block = fit > min_block ? fit : min_block;
    a.nvb = (m + a.block - 1) / a.block;
    a.part = g;
    if (a.nc > 1) {
        a.part = hma__calloc(m * a.nc * P, sizeof *a.part);
        if (!a.part) return hma__fail(HMA_ERR_NO_MEMORY, "out of memory (%llu partial sums)",
                                      (unsigned long long)(m * a.nc * P));
    }
    int rc;
    if (a.nvb * a.nc == 1)
        rc = gram_job(&a, 0, 0);
    else
        rc = hma__pool_run(a.nvb * a.nc, threads, gram_job, &a, NULL, NULL);
    if (a.nc > 1) {
        if (rc == HMA_OK)
            for (uint64_t v = 0; v < m; v++)
                for (uint64_t c = 0; c < a.nc; c++)
                    for (size_t q = 0; q < P; q++) g[v * P + q] += a.part[(v * a.nc + c) * P + q];
        hma__free(a.part);
    }
    return rc;
}
