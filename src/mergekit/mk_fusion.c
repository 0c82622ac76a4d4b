/*
 * mk_fusion.c - mergekit's arcee_fusion (mergekit/merge_methods/
 * arcee_fusion.py): importance = |x - base| * KL(softmax(x) || softmax(base))
 * per row; keep the model's delta where the importance reaches
 * median + 1.5 IQR of all importances.
 *
 * Deliberate difference: mergekit's approximate_quantiles samples 1e6
 * random elements (torch.randperm) when a tensor has more than 1e6; libhma
 * uses every element, so the threshold is exact and deterministic (equal to
 * mergekit's for tensors of at most 1e6 elements).
 */
#include "mergekit/mk.h"

#include "core/pool.h"

#include <math.h>
#include <stdlib.h>

/* ---- the KL term of each row ---- */

typedef struct kl_arg {
    const float *x, *b;
    hma__mk_vecs vs;
    uint64_t rows_per_job;
    float *kl; /* per row, float32 */
} kl_arg;

/* sum over [i0, i1) of f, per chunk of HMA__MK_CHUNK elements added in order
 * (the same rule as every other reduction here). */
#define ROW_SUM(total, len, i, body)                                              \
    do {                                                                          \
        (total) = 0.0;                                                            \
        for (uint64_t c0_ = 0; c0_ < (len); c0_ += HMA__MK_CHUNK) {               \
            uint64_t c1_ = (len) - c0_ < HMA__MK_CHUNK ? (len) : c0_ + HMA__MK_CHUNK; \
            double part_ = 0.0;                                                   \
            for (uint64_t i = c0_; i < c1_; i++) part_ += (body);                 \
            (total) += part_;                                                     \
        }                                                                         \
    } while (0)

/* torch.sum(p * log(p / q), dim=-1) with p = softmax(x) + 1e-8,
 * q = softmax(base) + 1e-8 (_compute_importance), in double. */
static double row_kl(const float *x, const float *b, uint64_t len) {
    float mx = x[0], mb = b[0];
    for (uint64_t i = 1; i < len; i++) {
        /* a NaN maximum stays (torch's max propagates NaN) */
        if (mx == mx && (x[i] > mx || x[i] != x[i])) mx = x[i];
        if (mb == mb && (b[i] > mb || b[i] != b[i])) mb = b[i];
    }
    double sx, sb, kl;
    ROW_SUM(sx, len, i, exp((double)x[i] - mx));
    ROW_SUM(sb, len, i, exp((double)b[i] - mb));
    ROW_SUM(kl, len, i,
            (exp((double)x[i] - mx) / sx + 1e-8) *
                log((exp((double)x[i] - mx) / sx + 1e-8) / (exp((double)b[i] - mb) / sb + 1e-8)));
    return kl;
}

static int kl_job(void *arg, uint64_t job, unsigned worker) {
    (void)worker;
    const kl_arg *a = arg;
    uint64_t r0 = job * a->rows_per_job, r1 = r0 + a->rows_per_job;
    if (r1 > a->vs.m) r1 = a->vs.m;
    for (uint64_t r = r0; r < r1; r++)
        a->kl[r] = (float)row_kl(a->x + r * a->vs.len, a->b + r * a->vs.len, a->vs.len);
    return HMA_OK;
}

typedef struct imp_arg {
    const float *x, *b;
    hma__mk_vecs vs;
    const float *kl;
    float *imp, *copy;
    float thr;
} imp_arg;

/* importance = diff * kl_div.unsqueeze(-1), float32 */
static int imp_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const imp_arg *a = arg;
    hma__mk_vit it = hma__mk_vit_at(&a->vs, e0);
    for (uint64_t e = e0; e < e1; e++, hma__mk_vit_next(&it, a->vs.len)) {
        float d = a->x[e] - a->b[e];
        float v = (d < 0.0f ? -d : d) * a->kl[it.v];
        a->imp[e] = v;
        a->copy[e] = v;
    }
    return HMA_OK;
}

/* fused = base + delta * mask, mask = (importance >= threshold).float() */
static int fuse_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const imp_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++) {
        float mask = a->imp[e] >= a->thr ? 1.0f : 0.0f;
        a->imp[e] = a->b[e] + (a->x[e] - a->b[e]) * mask;
    }
    return HMA_OK;
}

/* ---- exact quantiles: selection in torch.sort's order (NaN last) ---- */

static int flt_lt(float a, float b) { return a < b || (a == a && b != b); }

static int flt_cmp(const void *pa, const void *pb) {
    float a = *(const float *)pa, b = *(const float *)pb;
    return flt_lt(a, b) ? -1 : flt_lt(b, a) ? 1 : 0;
}

/* Put the element of rank k (0-based) of v[lo, hi) at v[k], smaller ones
 * before it and larger ones after it. Three-way quickselect with a median of
 * three pivot (importances tie a lot: every unchanged element is 0); after
 * too many rounds, a sort of what is left (bounded time). */
static void select_rank(float *v, uint64_t lo, uint64_t hi, uint64_t k) {
    int budget = 64;
    while (hi - lo > 16) {
        if (budget-- == 0) {
            qsort(v + lo, hi - lo, sizeof *v, flt_cmp);
            return;
        }
        float p0 = v[lo], p1 = v[lo + (hi - lo) / 2], p2 = v[hi - 1], p;
        if (flt_lt(p0, p1))
            p = flt_lt(p1, p2) ? p1 : flt_lt(p0, p2) ? p2 : p0;
        else
            p = flt_lt(p0, p2) ? p0 : flt_lt(p1, p2) ? p2 : p1;
        /* [lo, lt) < p, [lt, i) == p, (gt, hi) > p */
        uint64_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            float x = v[i];
            if (flt_lt(x, p)) {
                v[i++] = v[lt];
                v[lt++] = x;
            } else if (flt_lt(p, x)) {
                v[i] = v[--gt];
                v[gt] = x;
            } else {
                i++;
            }
        }
        if (k < lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return;
    }
    qsort(v + lo, hi - lo, sizeof *v, flt_cmp);
}

int hma__mk_run_arcee_fusion(const hma__mk_job *job) {
    const float *b = job->x[job->base], *x = job->x[job->base == 0 ? 1 : 0];
    kl_arg k;
    k.x = x;
    k.b = b;
    k.vs = hma__mk_vecs_rows(job); /* softmax(dim=-1); 1-D: one row */
    k.rows_per_job = k.vs.len >= HMA__MK_CHUNK ? 1 : HMA__MK_CHUNK / k.vs.len;
    k.kl = hma__malloc(k.vs.m * sizeof *k.kl);
    if (!k.kl) return hma__fail(HMA_ERR_NO_MEMORY, "tensor '%s': out of memory", job->name);
    uint64_t njobs = (k.vs.m + k.rows_per_job - 1) / k.rows_per_job;
    int rc = njobs == 1 ? kl_job(&k, 0, 0) : hma__pool_run(njobs, job->threads, kl_job, &k, NULL, NULL);
    imp_arg a = {x, b, k.vs, k.kl, job->out, job->scratch, 0.0f};
    if (rc == HMA_OK) rc = hma__mk_for(job->threads, job->n, imp_chunk, &a);
    if (rc == HMA_OK) {
        /* quantile indices (q * (numel - 1)).long() for q = 0.5, 0.25, 0.75:
         * exact in integers (q * (numel - 1) is exact in float32 below 2^24,
         * which mergekit's sample of at most 1e6 never exceeds). */
        uint64_t n = job->n, last = n - 1;
        uint64_t i_med = last / 2, i_q1 = last / 4, i_q3 = 3 * last / 4;
        float *s = job->scratch;
        select_rank(s, 0, n, i_med);
        if (i_q1 < i_med) select_rank(s, 0, i_med, i_q1);
        if (i_q3 > i_med) select_rank(s, i_med + 1, n, i_q3);
        float med = s[i_med], q1 = s[i_q1], q3 = s[i_q3];
        float iqr = q3 - q1;
        a.thr = med + 1.5f * iqr; /* median + 1.5 * iqr, float32 */
        rc = hma__mk_for(job->threads, job->n, fuse_chunk, &a);
    }
    hma__free(k.kl);
    return rc;
}
