/*
 * mk_linear.c - mergekit's element-wise methods: linear, passthrough,
 * nearswap, ram and ramplus_tl (mergekit/merge_methods/linear.py,
 * passthrough.py, nearswap.py, ram.py). Every element is computed in
 * float32 with the operations in mergekit's order, so each result equals
 * mergekit's `dtype: float32` result bit for bit (ram's per-model factors
 * excepted, see ram below).
 */
#include "mergekit/mk.h"

#include <string.h>

/* ---- linear ---- */

typedef struct linear_arg {
    const hma__mk_job *job;
    float *w; /* float32 weights (mergekit: torch.tensor(weights, dtype=float32)) */
    int normalize;
    float wsum;
} linear_arg;

static int linear_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const linear_arg *a = arg;
    const hma__mk_job *job = a->job;
    float *out = job->out;
    for (uint64_t e = e0; e < e1; e++) {
        /* (weights * tensors).sum(dim=0): torch's sum starts from +0 and adds
         * the products in source order. */
        float acc = 0.0f;
        for (size_t i = 0; i < job->n_in; i++) acc += a->w[i] * job->x[i][e];
        out[e] = a->normalize ? acc / a->wsum : acc;
    }
    return HMA_OK;
}

int hma__mk_run_linear(const hma__mk_job *job) {
    /* Every source is merged, the base too (linear.py has no base model). */
    float *w = hma__malloc(job->n_in * sizeof *w);
    if (!w) return hma__fail(HMA_ERR_NO_MEMORY, "tensor '%s': out of memory", job->name);
    linear_arg a = {job, w, hma__mk_get(job, job->global, HMA__P_NORMALIZE) != 0.0, 0.0f};
    for (size_t i = 0; i < job->n_in; i++) {
        w[i] = (float)hma__mk_get(job, &job->model[i], HMA__P_WEIGHT);
        a.wsum += w[i]; /* weights.sum(dim=0), float32, in order */
    }
    int rc = hma__mk_for(job->threads, job->n, linear_chunk, &a);
    hma__free(w);
    return rc;
}

/* ---- passthrough ---- */

typedef struct scale_arg {
    const float *x;
    float *out;
    float s;
} scale_arg;

static int scale_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const scale_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++) a->out[e] = a->x[e] * a->s;
    return HMA_OK;
}

int hma__mk_run_passthrough(const hma__mk_job *job) {
    /* passthrough.py: `tensor * scale` only when scale is set (no default). */
    if (!job->model[0].set[HMA__P_SCALE]) {
        if (job->n) memcpy(job->out, job->x[0], job->n * sizeof *job->out);
        return HMA_OK;
    }
    scale_arg a = {job->x[0], job->out, (float)job->model[0].v[HMA__P_SCALE]};
    return hma__mk_for(job->threads, job->n, scale_chunk, &a);
}

/* ---- nearswap ---- */

typedef struct nearswap_arg {
    const float *a, *b;
    float *out;
    float t;
} nearswap_arg;

static int nearswap_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const nearswap_arg *p = arg;
    for (uint64_t e = e0; e < e1; e++) {
        float a = p->a[e], b = p->b[e];
        float ad = a - b;
        ad = ad < 0.0f ? -ad : ad;
        if (ad < 1e-6f) ad = 1e-6f; /* clamp(min=1e-6); NaN stays NaN, as in torch */
        /* `t / absdiff` is torch's Tensor.__rtruediv__: absdiff.reciprocal()
         * * t, which rounds twice (it differs from a true division in about a
         * quarter of the elements). */
        float w = (1.0f / ad) * p->t;
        if (w < 0.0f) w = 0.0f;
        if (w > 1.0f) w = 1.0f;
        p->out[e] = w * b + (1.0f - w) * a;
    }
    return HMA_OK;
}

int hma__mk_run_nearswap(const hma__mk_job *job) {
    long other = job->base == 0 ? 1 : 0;
    nearswap_arg a = {job->x[job->base], job->x[other], job->out,
                      (float)hma__mk_get(job, job->global, HMA__P_T)};
    return hma__mk_for(job->threads, job->n, nearswap_chunk, &a);
}

/* ---- ram, ramplus_tl ---- */

typedef struct ram_arg {
    const hma__mk_job *job;
    const float *base;
    float eps;     /* float32 epsilon: torch compares with the scalar cast */
    float *lambda; /* ramplus_tl: per-model factor, or NULL (ram) */
} ram_arg;

/* Models whose |x_i - base| > eps at e (_prepare_ram_vectors). */
static unsigned ram_count(const ram_arg *a, uint64_t e) {
    const hma__mk_job *job = a->job;
    unsigned count = 0;
    for (size_t i = 0; i < job->n_in; i++) {
        if ((long)i == job->base) continue;
        float d = job->x[i][e] - a->base[e];
        count += (d < 0.0f ? -d : d) > a->eps;
    }
    return count;
}

/* Per model i (in source order, base skipped): shared_i = its nonzero
 * entries where count > 1, unique_i = where count == 1 (exact in double). */
static void ram_counts_chunk(void *arg, uint64_t e0, uint64_t e1, double *acc) {
    const ram_arg *a = arg;
    const hma__mk_job *job = a->job;
    for (uint64_t e = e0; e < e1; e++) {
        unsigned count = ram_count(a, e);
        if (count == 0) continue;
        size_t k = 0;
        for (size_t i = 0; i < job->n_in; i++) {
            if ((long)i == job->base) continue;
            float d = job->x[i][e] - a->base[e];
            if ((d < 0.0f ? -d : d) > a->eps) acc[2 * k + (count > 1 ? 0 : 1)] += 1.0;
            k++;
        }
    }
}

static int ram_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const ram_arg *a = arg;
    const hma__mk_job *job = a->job;
    for (uint64_t e = e0; e < e1; e++) {
        unsigned count = ram_count(a, e);
        float uniq = count == 1 ? 1.0f : 0.0f, ovl = count > 1 ? 1.0f : 0.0f;
        float cnt = (float)(count > 1 ? count : 1); /* contrib_counts.clamp(min=1) */
        float merged = 0.0f;                         /* .sum(dim=0) from +0 */
        size_t k = 0;
        for (size_t i = 0; i < job->n_in; i++) {
            if ((long)i == job->base) continue;
            float d = job->x[i][e] - a->base[e];
            float nz = (d < 0.0f ? -d : d) > a->eps ? 1.0f : 0.0f;
            float tvz = d * nz; /* tv_flat * nonzero_mask: keeps -0 and NaN as torch does */
            float u = tvz * uniq;
            if (a->lambda) u = u * a->lambda[k];
            merged += u + tvz * ovl / cnt;
            k++;
        }
        job->out[e] = a->base[e] + merged;
    }
    return HMA_OK;
}

int hma__mk_run_ram(const hma__mk_job *job) {
    ram_arg a = {job, job->x[job->base], (float)hma__mk_get(job, job->global, HMA__P_EPSILON), NULL};
    if (job->method != HMA__MK_RAMPLUS_TL) return hma__mk_for(job->threads, job->n, ram_chunk, &a);

    size_t k = job->n_in - 1;
    double *counts = hma__malloc(2 * k * sizeof *counts);
    float *lambda = hma__malloc(k * sizeof *lambda);
    int rc = HMA_OK;
    if (!counts || !lambda) rc = hma__fail(HMA_ERR_NO_MEMORY, "tensor '%s': out of memory", job->name);
    if (rc == HMA_OK) rc = hma__mk_reduce(job->threads, job->n, 2 * k, ram_counts_chunk, &a, counts);
    if (rc == HMA_OK) {
        /* rho_i = shared_i / max(unique_i, epsilon); lambda_i = 1 + r *
         * clamp(rho_i, 0, alpha): a per-model factor, computed in double and
         * rounded once (mergekit computes it in float32: it may differ by
         * one float32 rounding). */
        double eps = hma__mk_get(job, job->global, HMA__P_EPSILON);
        double r = hma__mk_get(job, job->global, HMA__P_R);
        double alpha = hma__mk_get(job, job->global, HMA__P_ALPHA);
        for (size_t i = 0; i < k; i++) {
            double uq = counts[2 * i + 1] > eps ? counts[2 * i + 1] : eps;
            double rho = counts[2 * i] / uq;
            if (rho < 0.0) rho = 0.0;
            if (rho > alpha) rho = alpha;
            lambda[i] = (float)(1.0 + r * rho);
        }
        a.lambda = lambda;
        rc = hma__mk_for(job->threads, job->n, ram_chunk, &a);
    }
    hma__free(counts);
    hma__free(lambda);
    return rc;
}
