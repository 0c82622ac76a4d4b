/*
 * mk_sce.c - mergekit's sce (mergekit/merge_methods/sce.py): select the
 * elements where the task vectors vary most, weight each task vector by
 * its mean square, and average the ones that agree with the majority sign.
 *
 * tv_i = x_i - base (float32, written into x_i). If 0 < select_topk < 1:
 * key = (float) population variance over the sources per element, computed
 * in double (torch.var on CPU accumulates float32 input in double), kept in
 * job->scratch; k = int(count_nonzero(key) * select_topk) where, as torch
 * promotes the int64 count times a Python float to float32, the product
 * is (float)count * (float)select_topk; the first k elements by key
 * (descending, equal keys by ascending flat index) survive in every tv_i,
 * the rest become 0 (select_topk <= 0 or k == 0: all). Sign consensus
 * ("sum") on the unweighted masked tv_i. Weights: mean(tv_i^2) in double
 * (fixed chunks), divided by their sum (1/T each when |sum| < 1e-6), as
 * float32. erased_i = w_i [counted_i]; out = base + (sum tv_i erased_i) /
 * max(sum erased_i, 1e-6f), sums float32 in source order.
 */
#include "mergekit/mk_sparse.h"

#include <math.h>

int hma__mk_validate_sce(const hma__mk_job *job, const char *what) {
    if (job->base < 0 || (size_t)job->base >= job->n_in)
        return hma__fail(HMA_ERR_RECIPE, "%s: merge_method sce needs a base_model", what);
    return HMA_OK;
}

typedef struct sce_arg {
    const hma__mk_job *job;
    const hma__mk_parts *pt;
    float **tv;          /* the T task vectors (in the job's x) */
    size_t T;
    const float *base;
    float *key;          /* variance keys (job->scratch) or NULL */
    uint64_t *nnz;       /* per chunk */
    double *sq;          /* nchunks x T sums of tv^2 */
    const hma__mk_mask *mask; /* NULL: keep all */
    const float *w;      /* T weights */
} sce_arg;

/* tv_i = x_i - base in place; the variance keys when a mask is wanted. */
static int sce_delta_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    const sce_arg *a = arg;
    for (size_t i = 0; i < a->T; i++) {
        float *x = a->tv[i];
        for (uint64_t e = e0; e < e1; e++) x[e] -= a->base[e];
    }
    if (!a->key) return HMA_OK;
    uint64_t nz = 0;
    double T = (double)a->T;
    for (uint64_t e = e0; e < e1; e++) {
        double s = 0.0;
        for (size_t i = 0; i < a->T; i++) s += (double)a->tv[i][e];
        double mean = s / T, v = 0.0;
        for (size_t i = 0; i < a->T; i++) {
            double d = (double)a->tv[i][e] - mean;
            v += d * d;
        }
        float k = (float)(v / T);
        a->key[e] = k;
        nz += k != 0.0f;
    }
    a->nnz[c] = nz;
    return HMA_OK;
}

/* The mask applied to every tv_i, and the per-chunk sums of tv_i^2. */
static int sce_mask_part(void *arg, unsigned p, unsigned worker) {
    (void)worker;
    const sce_arg *a = arg;
    hma__mk_mask_cur cur = {0, 0, 0};
    if (a->mask) cur = hma__mk_mask_start(a->mask, p);
    uint64_t c0, c1;
    hma__mk_part_chunks(a->pt, p, &c0, &c1);
    for (uint64_t c = c0; c < c1; c++) {
        uint64_t e0, e1;
        hma__mk_chunk_range(a->pt->n, c, &e0, &e1);
        if (a->mask)
            for (uint64_t e = e0; e < e1; e++)
                if (!hma__mk_mask_keep(a->mask, hma__mk_key_bits(a->key[e]), &cur))
                    for (size_t i = 0; i < a->T; i++) a->tv[i][e] = 0.0f;
        for (size_t i = 0; i < a->T; i++) {
            const float *x = a->tv[i];
            double s = 0.0;
            for (uint64_t e = e0; e < e1; e++) s += (double)x[e] * (double)x[e];
            a->sq[c * a->T + i] = s;
        }
    }
    return HMA_OK;
}

static int sce_combine_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const sce_arg *a = arg;
    float *out = a->job->out;
    for (uint64_t e = e0; e < e1; e++) {
        float sum = 0.0f;
        for (size_t i = 0; i < a->T; i++) sum += a->tv[i][e];
        int pos = sum >= 0.0f;
        float merged = 0.0f, den = 0.0f;
        for (size_t i = 0; i < a->T; i++) {
            float v = a->tv[i][e];
            int counted = pos ? v > 0.0f : v < 0.0f;
            float er = counted ? a->w[i] : 0.0f;
            merged += v * er;
            den += er;
        }
        out[e] = a->base[e] + merged / (den < 1e-6f ? 1e-6f : den);
    }
    return HMA_OK;
}

int hma__mk_run_sce(const hma__mk_job *job) {
    const float *base = job->x[job->base];
    uint64_t n = job->n;
    size_t T = job->n_in - 1;
    if (T == 0 || n == 0) {
        if (n) memcpy(job->out, base, n * sizeof *job->out);
        return HMA_OK;
    }
    double topk = job->global && job->global->set[HMA__P_SELECT_TOPK] ? job->global->v[HMA__P_SELECT_TOPK] : 1.0;
    int masking = topk < 1.0;
    hma__mk_parts pt;
    hma__mk_parts_init(&pt, n, job->threads, job->ws);
    uint64_t nc = pt.nchunks;
    float **tv = hma__malloc(T * sizeof *tv);
    float *w = hma__malloc(T * sizeof *w);
    uint64_t *nnz = hma__calloc(nc, sizeof *nnz);
    double *sq = hma__malloc(nc * T * sizeof *sq);
    hma__mk_mask mask;
    memset(&mask, 0, sizeof mask);
    int rc = HMA_OK;
    if (!tv || !w || !nnz || !sq) rc = hma__fail(HMA_ERR_NO_MEMORY, "tensor '%s': out of memory", job->name);
    if (rc == HMA_OK) {
        size_t t = 0;
        for (size_t i = 0; i < job->n_in; i++)
            if ((long)i != job->base) tv[t++] = job->x[i];
        sce_arg a = {job, &pt, tv, T, base, masking && topk > 0.0 ? job->scratch : NULL, nnz, sq, NULL, w};
        rc = hma__mk_for(job->threads, n, sce_delta_chunk, &a);
        if (rc == HMA_OK && masking) {
            uint64_t k = 0;
            if (topk > 0.0) {
                uint64_t nz = 0;
                for (uint64_t c = 0; c < nc; c++) nz += nnz[c];
                float kf = (float)nz * (float)topk; /* torch: int64 tensor x float -> float32 */
                k = kf > 0.0f ? (uint64_t)kf : 0;
            }
            if (k == 0) {
                mask.kind = HMA__MK_KEEP_NONE;
                for (size_t i = 0; i < T; i++) memset(tv[i], 0, n * sizeof *tv[i]);
                a.key = NULL;
            } else {
                hma__mk_sel s;
                hma__mk_keys keys = hma__mk_keys_f(job->scratch, NULL);
                rc = hma__mk_sel_init(&s, &pt);
                if (rc == HMA_OK) {
                    rc = hma__mk_sel_count(&s, &keys, NULL, k, 1);
                    if (rc == HMA_OK) rc = hma__mk_sel_cut(&s, &keys, k, 1, &mask.a);
                    hma__mk_sel_free(&s);
                }
                mask.kind = HMA__MK_KEEP_TOP;
                a.mask = &mask;
            }
        }
        if (rc == HMA_OK) rc = hma__mk_parts_run(&pt, sce_mask_part, &a);
        if (rc == HMA_OK) {
            /* sce_weight: mean(tv^2) per task vector, normalised by the sum */
            double m[64], *mean = T <= 64 ? m : hma__malloc(T * sizeof *mean);
            if (!mean) rc = hma__fail(HMA_ERR_NO_MEMORY, "tensor '%s': out of memory", job->name);
            if (rc == HMA_OK) {
                double total = 0.0;
                for (size_t i = 0; i < T; i++) {
                    double s = 0.0;
                    for (uint64_t c = 0; c < nc; c++) s += sq[c * T + i];
                    mean[i] = s / (double)n;
                    total += mean[i];
                }
                for (size_t i = 0; i < T; i++)
                    w[i] = fabs(total) < 1e-6 ? 1.0f / (float)T : (float)(mean[i] / total);
                if (mean != m) hma__free(mean);
                rc = hma__mk_for(job->threads, n, sce_combine_chunk, &a);
            }
        }
    }
    hma__mk_mask_free(&mask);
    hma__free(tv);
    hma__free(w);
    hma__free(nnz);
    hma__free(sq);
    return rc;
}
