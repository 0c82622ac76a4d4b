/*
 * mk_sphere.c - mergekit's spherical methods: slerp, nuslerp, multislerp
 * and karcher (mergekit/merge_methods/slerp.py, nuslerp.py, multislerp.py,
 * karcher.py). Norms and dots are double reductions on fixed chunks
 * (mk_reduce.c); the per-tensor (or per-vector) coefficients are computed
 * in double and rounded once to float32; every element is then computed in
 * float32 in mergekit's operation order.
 */
#include "mergekit/mk.h"

#include <math.h>
#include <string.h>

/* ---- slerp ---- */

typedef struct lerp2_arg {
    const float *a, *b, *base; /* base: added after (task vectors when set) */
    float *out;
    float ca, cb;
} lerp2_arg;

/* out = ca * a + cb * b, both lerp and slerp (mergekit's s0 * v0 + s1 * v1). */
static int lerp2_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const lerp2_arg *p = arg;
    for (uint64_t e = e0; e < e1; e++) p->out[e] = p->ca * p->a[e] + p->cb * p->b[e];
    return HMA_OK;
}

int hma__mk_run_slerp(const hma__mk_job *job) {
    /* slerp(t, v0 = base, v1 = the other model) */
    const float *v0 = job->x[job->base], *v1 = job->x[job->base == 0 ? 1 : 0];
    double t = hma__mk_get(job, job->global, HMA__P_T);
    hma__mk_vecs vs = hma__mk_vecs_flat(job->n);
    const float *src[2] = {v0, v1};
    double g[3];
    int rc = hma__mk_gram(job->threads, &vs, src, 2, NULL, g);
    if (rc != HMA_OK) return rc;
    /* normalize(): divide only when the norm exceeds eps = 1e-8. */
    double n0 = sqrt(g[0]), n1 = sqrt(g[2]);
    double dot = g[1] / ((n0 > 1e-8 ? n0 : 1.0) * (n1 > 1e-8 ? n1 : 1.0));
    lerp2_arg a = {v0, v1, NULL, job->out, (float)(1.0 - t), (float)t};
    if (!(fabs(dot) > 0.9995)) {
        double theta0 = acos(dot), sin0 = sin(theta0), theta_t = theta0 * t;
        a.ca = (float)(sin(theta0 - theta_t) / sin0);
        a.cb = (float)(sin(theta_t) / sin0);
    }
    return hma__mk_for(job->threads, job->n, lerp2_chunk, &a);
}

/* ---- nuslerp ---- */

typedef struct nuslerp_arg {
    const float *a, *b, *base; /* base NULL: no task vectors */
    float *out;
    hma__mk_vecs vs;
    const float *coef; /* per vector: sin((1-t)theta), sin(t theta), sin(theta), colinear */
    float one_t, t;
} nuslerp_arg;

static int nuslerp_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const nuslerp_arg *p = arg;
    hma__mk_vit it = hma__mk_vit_at(&p->vs, e0);
    for (uint64_t e = e0; e < e1; e++, hma__mk_vit_next(&it, p->vs.len)) {
        const float *k = p->coef + 4 * it.v;
        float v0 = p->a[e], v1 = p->b[e];
        if (p->base) {
            v0 = v0 - p->base[e];
            v1 = v1 - p->base[e];
        }
        float r = k[3] != 0.0f ? p->one_t * v0 + p->t * v1 : (k[0] * v0 + k[1] * v1) / k[2];
        p->out[e] = p->base ? p->base[e] + r : r;
    }
    return HMA_OK;
}

int hma__mk_run_nuslerp(const hma__mk_job *job) {
    size_t idx[2], k = 0;
    for (size_t i = 0; i < job->n_in && k < 2; i++)
        if ((long)i != job->base) idx[k++] = i;
    /* t = w_b / (w_a + w_b) in Python double; 0.5 when the sum is ~0. */
    double wa = hma__mk_get(job, &job->model[idx[0]], HMA__P_WEIGHT);
    double wb = hma__mk_get(job, &job->model[idx[1]], HMA__P_WEIGHT);
    double t = fabs(wa + wb) < 1e-6 ? 0.5 : wb / (wa + wb);
    int flatten = hma__mk_get(job, job->global, HMA__P_NUSLERP_FLATTEN) != 0.0;
    int row_wise = hma__mk_get(job, job->global, HMA__P_NUSLERP_ROW_WISE) != 0.0;
    nuslerp_arg a;
    a.a = job->x[idx[0]];
    a.b = job->x[idx[1]];
    a.base = job->base >= 0 ? job->x[job->base] : NULL;
    a.out = job->out;
    /* nuslerp(): flatten wins; else dim=0 (row_wise) is transposed to the
     * end, so the vectors run along dimension 0 (columns of a matrix);
     * else rows of the last dimension. */
    a.vs = flatten ? hma__mk_vecs_flat(job->n) : row_wise ? hma__mk_vecs_dim0(job) : hma__mk_vecs_rows(job);
    a.one_t = (float)(1.0 - t);
    a.t = (float)t;
    uint64_t m = a.vs.m;
    double *g = hma__malloc(m * 3 * sizeof *g);
    float *coef = hma__malloc(m * 4 * sizeof *coef);
    int rc = HMA_OK;
    if (!g || !coef) rc = hma__fail(HMA_ERR_NO_MEMORY, "tensor '%s': out of memory", job->name);
    const float *src[2] = {a.a, a.b};
    if (rc == HMA_OK) rc = hma__mk_gram(job->threads, &a.vs, src, 2, a.base, g);
    if (rc == HMA_OK) {
        for (uint64_t v = 0; v < m; v++) {
            /* _normalize: x / clamp(|x|, 1e-7); cos clamped to [-1, 1]
             * (NaN stays NaN, as torch.clamp); lerp where |sin| < 1e-8. */
            double n0 = sqrt(g[3 * v]), n1 = sqrt(g[3 * v + 2]);
            double cs = g[3 * v + 1] / ((n0 > 1e-7 ? n0 : 1e-7) * (n1 > 1e-7 ? n1 : 1e-7));
            if (cs < -1.0) cs = -1.0;
            if (cs > 1.0) cs = 1.0;
            double theta = acos(cs), st = sin(theta);
            coef[4 * v] = (float)sin((1.0 - t) * theta);
            coef[4 * v + 1] = (float)sin(t * theta);
            coef[4 * v + 2] = (float)st;
            coef[4 * v + 3] = fabs(st) < 1e-8 ? 1.0f : 0.0f;
        }
        a.coef = coef;
        rc = hma__mk_for(job->threads, job->n, nuslerp_chunk, &a);
    }
    hma__free(g);
    hma__free(coef);
    return rc;
}

/* ---- multislerp ---- */

typedef struct msl_arg {
    const hma__mk_job *job;
    const float *base; /* NULL: no base model */
    size_t k;
    const size_t *idx;  /* the non-base sources, in order */
    const float *w;     /* weights (normalised) */
    const float *nrm;   /* |v_i| + eps, float32 */
    const float *dot;   /* <unit_i, mean> */
    float mean_norm;
    float *mean, *tan;  /* job->out, job->scratch */
    float cf, sf, af;
} msl_arg;

static float msl_v(const msl_arg *a, size_t i, uint64_t e) {
    float v = a->job->x[a->idx[i]][e];
    return a->base ? v - a->base[e] : v; /* tensors -= base_tensor */
}

static void msl_norms(void *arg, uint64_t e0, uint64_t e1, double *acc) {
    const msl_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++)
        for (size_t i = 0; i < a->k; i++) {
            double v = msl_v(a, i, e);
            acc[i] += v * v;
        }
}

/* mean = sum_i unit_i * w_i (from +0); acc: |mean|^2. */
static void msl_mean(void *arg, uint64_t e0, uint64_t e1, double *acc) {
    const msl_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++) {
        float m = 0.0f;
        for (size_t i = 0; i < a->k; i++) m += msl_v(a, i, e) / a->nrm[i] * a->w[i];
        a->mean[e] = m;
        acc[0] += (double)m * m;
    }
}

/* mean /= |mean|; acc[i]: <unit_i, mean>. */
static void msl_dots(void *arg, uint64_t e0, uint64_t e1, double *acc) {
    const msl_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++) {
        float m = a->mean[e] / a->mean_norm;
        a->mean[e] = m;
        for (size_t i = 0; i < a->k; i++) acc[i] += (double)(msl_v(a, i, e) / a->nrm[i]) * m;
    }
}

/* tangent = sum_i (unit_i - dot_i * mean) * w_i (from +0); acc: |tangent|^2. */
static void msl_tangent(void *arg, uint64_t e0, uint64_t e1, double *acc) {
    const msl_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++) {
        float m = a->mean[e], s = 0.0f;
        for (size_t i = 0; i < a->k; i++) s += (msl_v(a, i, e) / a->nrm[i] - a->dot[i] * m) * a->w[i];
        a->tan[e] = s;
        acc[0] += (double)s * s;
    }
}

static int msl_final(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const msl_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++) {
        float r = (a->mean[e] * a->cf + a->tan[e] * a->sf) * a->af;
        a->mean[e] = a->base ? r + a->base[e] : r;
    }
    return HMA_OK;
}

/* Antipodal fallback of two tensors: v0 * w0 + v1 * w1 (+ base). */
static int msl_lerp(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const msl_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++) {
        float r = msl_v(a, 0, e) * a->w[0] + msl_v(a, 1, e) * a->w[1];
        a->mean[e] = a->base ? r + a->base[e] : r;
    }
    return HMA_OK;
}

int hma__mk_run_multislerp(const hma__mk_job *job) {
    size_t k = 0;
    size_t *idx = hma__malloc(job->n_in * sizeof *idx);
    float *fw = hma__malloc(3 * job->n_in * sizeof *fw);
    double *d = hma__malloc((job->n_in + 1) * sizeof *d);
    int rc = HMA_OK;
    if (!idx || !fw || !d) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "tensor '%s': out of memory", job->name);
        goto done;
    }
    /* easy_define: `tensors` and `weight` are the non-base sources (a Python
     * set there, so mergekit's order is unspecified: recipe order here). */
    for (size_t i = 0; i < job->n_in; i++)
        if ((long)i != job->base) idx[k++] = i;
    double wsum = 0.0, eps = hma__mk_get(job, job->global, HMA__P_EPS);
    for (size_t i = 0; i < k; i++) wsum += hma__mk_get(job, &job->model[idx[i]], HMA__P_WEIGHT);
    int norm_w = hma__mk_get(job, job->global, HMA__P_NORMALIZE_WEIGHTS) != 0.0;
    float *w = fw, *nrm = fw + job->n_in, *dot = fw + 2 * job->n_in;
    for (size_t i = 0; i < k; i++) {
        double wi = hma__mk_get(job, &job->model[idx[i]], HMA__P_WEIGHT);
        w[i] = (float)(norm_w ? wi / wsum : wi);
    }
    msl_arg a = {job, job->base >= 0 ? job->x[job->base] : NULL, k, idx, w, nrm, dot, 0.0f,
                 job->out, job->scratch, 0.0f, 0.0f, 0.0f};
    rc = hma__mk_reduce(job->threads, job->n, k, msl_norms, &a, d);
    if (rc != HMA_OK) goto done;
    double avg = 0.0; /* (norms * weights).sum() */
    for (size_t i = 0; i < k; i++) {
        nrm[i] = (float)(sqrt(d[i]) + eps);
        avg += sqrt(d[i]) * (double)w[i];
    }
    rc = hma__mk_reduce(job->threads, job->n, 1, msl_mean, &a, d);
    if (rc != HMA_OK) goto done;
    double mean_norm = sqrt(d[0]);
    if (mean_norm < eps) {
        if (k == 2) {
            rc = hma__mk_for(job->threads, job->n, msl_lerp, &a);
            goto done;
        }
        rc = hma__fail(HMA_ERR_RECIPE, "tensor '%s': multislerp: the weighted sum of the directions is zero "
                       "(antipodal models whose weights cancel out); change a weight", job->name);
        goto done;
    }
    a.mean_norm = (float)mean_norm;
    rc = hma__mk_reduce(job->threads, job->n, k, msl_dots, &a, d);
    if (rc != HMA_OK) goto done;
    for (size_t i = 0; i < k; i++) dot[i] = (float)d[i];
    rc = hma__mk_reduce(job->threads, job->n, 1, msl_tangent, &a, d);
    if (rc != HMA_OK) goto done;
    double tn = sqrt(d[0]) + eps; /* exponential map */
    a.cf = (float)cos(tn);
    a.sf = (float)(sin(tn) / tn);
    a.af = (float)avg;
    rc = hma__mk_for(job->threads, job->n, msl_final, &a);
done:
    hma__free(idx);
    hma__free(fw);
    hma__free(d);
    return rc;
}

/* ---- karcher ---- */

typedef struct kar_arg {
    float *const *unit; /* the valid sources, made unit vectors in place */
    size_t k;
    const float *alpha; /* normalised alphas (float32) */
    const float *coef;  /* per unit: a (theta / sin theta), 0 = skipped */
    const float *dot;   /* per unit: clamped dot, float32 */
    float *u, *T;       /* job->out, job->scratch */
    float s, c, nt;     /* scalars of the pass at hand */
} kar_arg;

static void kar_norms(void *arg, uint64_t e0, uint64_t e1, double *acc) {
    const kar_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++)
        for (size_t i = 0; i < a->k; i++) acc[i] += (double)a->unit[i][e] * a->unit[i][e];
}

/* unit_i = x_i / |x_i| (float32 division by the float32 norm); coef holds
 * the norms here. */
static int kar_units(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const kar_arg *a = arg;
    for (size_t i = 0; i < a->k; i++) {
        float nf = a->coef[i];
        for (uint64_t e = e0; e < e1; e++) a->unit[i][e] = nf == 0.0f ? 0.0f : a->unit[i][e] / nf;
    }
    return HMA_OK;
}

/* u = sum_i a_i unit_i (from +0); acc: |u|^2. */
static void kar_init(void *arg, uint64_t e0, uint64_t e1, double *acc) {
    const kar_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++) {
        float u = 0.0f;
        for (size_t i = 0; i < a->k; i++) u += a->alpha[i] * a->unit[i][e];
        a->u[e] = u;
        acc[0] += (double)u * u;
    }
}

/* u = u / nt (mergekit divides by the float32 norm; no reciprocal). */
static int kar_div(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const kar_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++) a->u[e] = a->u[e] / a->nt;
    return HMA_OK;
}

static void kar_dots(void *arg, uint64_t e0, uint64_t e1, double *acc) {
    const kar_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++)
        for (size_t i = 0; i < a->k; i++) acc[i] += (double)a->u[e] * a->unit[i][e];
}

/* T = sum over the units not skipped of coef_i * (unit_i - dot_i * u), from
 * +0; acc: |T|^2. */
static void kar_tangent(void *arg, uint64_t e0, uint64_t e1, double *acc) {
    const kar_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++) {
        float t = 0.0f, u = a->u[e];
        for (size_t i = 0; i < a->k; i++)
            if (a->coef[i] != 0.0f)
                t += a->coef[i] * (a->unit[i][e] - a->dot[i] * u);
        a->T[e] = t;
        acc[0] += (double)t * t;
    }
}

/* u = cos|T| u + sin|T| (T / |T|); acc: |u|^2. */
static void kar_step(void *arg, uint64_t e0, uint64_t e1, double *acc) {
    const kar_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++) {
        float u = a->c * a->u[e] + a->s * (a->T[e] / a->nt);
        a->u[e] = u;
        acc[0] += (double)u * u;
    }
}

static int kar_scale(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const kar_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++) a->u[e] = a->s * a->u[e];
    return HMA_OK;
}

int hma__mk_run_karcher(const hma__mk_job *job) {
    /* karcher_merge_tensors over every source (KarcherTask: alphas 1/N). */
    size_t n_in = job->n_in;
    double tol = hma__mk_get(job, job->global, HMA__P_TOL);
    long max_iter = (long)hma__mk_get(job, job->global, HMA__P_MAX_ITER);
    double alpha = 1.0 / (double)n_in;
    float **unit = hma__malloc(n_in * sizeof *unit);
    float *fv = hma__malloc(3 * n_in * sizeof *fv);
    double *norm = hma__malloc(n_in * sizeof *norm), *d = hma__malloc(n_in * sizeof *d);
    int rc = HMA_OK;
    if (!unit || !fv || !norm || !d) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "tensor '%s': out of memory", job->name);
        goto done;
    }
    kar_arg a;
    memset(&a, 0, sizeof a);
    for (size_t i = 0; i < n_in; i++) unit[i] = job->x[i];
    a.unit = unit;
    a.k = n_in;
    a.u = job->out;
    a.T = job->scratch;
    rc = hma__mk_reduce(job->threads, job->n, n_in, kar_norms, &a, norm);
    if (rc != HMA_OK) goto done;
    /* Valid: norm > tol (a zero tensor's unit is zero; it only counts in
     * the final scale). */
    size_t k = 0;
    float *alphas = fv, *coef = fv + n_in, *dot = fv + 2 * n_in;
    double asum = 0.0, scale = 0.0;
    for (size_t i = 0; i < n_in; i++) {
        norm[i] = sqrt(norm[i]);
        scale += alpha * norm[i];
        if (norm[i] > tol) {
            unit[k] = job->x[i];
            coef[k] = (float)norm[i];
            k++;
            asum += alpha;
        }
    }
    if (k == 0) {
        memset(job->out, 0, job->n * sizeof *job->out);
        goto done;
    }
    a.k = k;
    /* normalized_alphas = a / alpha_sum (Python doubles); `u += a * ui`
     * multiplies in float32. */
    double alpha_n = alpha / asum;
    for (size_t i = 0; i < k; i++) alphas[i] = (float)alpha_n;
    a.alpha = alphas;
    a.coef = coef; /* the norms, for kar_units */
    rc = hma__mk_for(job->threads, job->n, kar_units, &a);
    if (rc == HMA_OK) rc = hma__mk_reduce(job->threads, job->n, 1, kar_init, &a, d);
    if (rc != HMA_OK) goto done;
    double nu = sqrt(d[0]);
    if (nu < tol) {
        memcpy(job->out, unit[0], job->n * sizeof *job->out);
    } else {
        a.nt = (float)nu;
        rc = hma__mk_for(job->threads, job->n, kar_div, &a);
        if (rc != HMA_OK) goto done;
    }
    a.dot = dot;
    for (long it = 0; it < max_iter; it++) {
        rc = hma__mk_reduce(job->threads, job->n, k, kar_dots, &a, d);
        if (rc != HMA_OK) goto done;
        for (size_t i = 0; i < k; i++) {
            double dt = d[i] < -1.0 ? -1.0 : d[i] > 1.0 ? 1.0 : d[i];
            double theta = acos(dt);
            dot[i] = (float)dt;
            /* theta < tol: this unit adds nothing (mergekit's `continue`) */
            coef[i] = theta < tol ? 0.0f : (float)(alpha_n * (theta / sin(theta)));
        }
        rc = hma__mk_reduce(job->threads, job->n, 1, kar_tangent, &a, d);
        if (rc != HMA_OK) goto done;
        double nT = sqrt(d[0]);
        if (nT < tol) break;
        a.c = (float)cos(nT);
        a.s = (float)sin(nT);
        a.nt = (float)nT;
        rc = hma__mk_reduce(job->threads, job->n, 1, kar_step, &a, d);
        if (rc != HMA_OK) goto done;
        double un = sqrt(d[0]);
        if (un > tol) {
            a.nt = (float)un;
            rc = hma__mk_for(job->threads, job->n, kar_div, &a);
            if (rc != HMA_OK) goto done;
        }
    }
    /* s = sum of a_i |x_i| over every source, zero tensors included. */
    a.s = (float)scale;
    rc = hma__mk_for(job->threads, job->n, kar_scale, &a);
done:
    hma__free(unit);
    hma__free(fv);
    hma__free(norm);
    hma__free(d);
    return rc;
}
