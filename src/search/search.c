/*
 * search.c - the derivative-free search over ratio vectors with a fixed mean
 * and bounds: a space-filling start, then trust-region steps on a
 * ridge-regularised quadratic surrogate, every proposal projected exactly
 * (project.c). Deterministic: its own PRNG, no FMA contraction.
 * docs/search.md explains the method.
 */
#include "search/search_impl.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ======================================================================= */
/* PRNG: xoshiro256** seeded by splitmix64 (no global state)               */
/* ======================================================================= */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1). */
static double rng_unif(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

/* ======================================================================= */
/* Derivative-free search                                                  */
/* ======================================================================= */

void hma_search_options_init_size(hma_search_options *o, size_t size) {
    hma_search_options d;
    memset(&d, 0, sizeof d);
    d.mean = 0.5;
    d.lo = 0;
    d.hi = 1;
    d.budget = 20;
    d.n_scores = 1;
    d.tolerance = 1e-6;
    d.batch = 1;
    hma__init_size(o, size, &d, sizeof d);
}

typedef struct sctx {
    size_t k, n;         /* K ratios; n = K - 1 free dimensions */
    double mean, target; /* target = K * mean */
    double *lo, *hi;     /* K each */
    double tol, span;    /* dedupe tolerance; largest hi - lo */
    hma_points *pts;     /* every point (prior, earlier runs, this run) */
    size_t *known;       /* indices of points in this search's set */
    size_t nknown;
    double *pend;        /* the batch proposed and not scored yet, npend x K */
    size_t npend;
    size_t run;
    rng r;
    double *work;        /* projection scratch, 2K */
    double *tlo, *thi;   /* trust-region bounds */
    double *cand, *bestc, *tmp, *tmp2; /* K scratch each */
} sctx;

/* Distance (max norm) from x to the nearest point of the whole list or of
 * the batch being proposed. */
static double nearest(const sctx *c, const double *x) {
    double d = INFINITY;
    for (size_t i = 0; i < c->pts->n; i++) {
        double e = hma__maxdist(c->k, x, c->pts->ratios + i * c->k);
        if (e < d) d = e;
    }
    for (size_t i = 0; i < c->npend; i++) {
        double e = hma__maxdist(c->k, x, c->pend + i * c->k);
        if (e < d) d = e;
    }
    return d;
}

static double dist2(size_t k, const double *x, const double *p) {
    double s = 0;
    for (size_t i = 0; i < k; i++) s += (x[i] - p[i]) * (x[i] - p[i]);
    return s;
}

/* Euclidean distance to the nearest known or proposed point (for space filling). */
static double nearest_l2(const sctx *c, const double *x) {
    double d = INFINITY;
    for (size_t j = 0; j < c->nknown; j++) {
        double s = dist2(c->k, x, c->pts->ratios + c->known[j] * c->k);
        if (s < d) d = s;
    }
    for (size_t j = 0; j < c->npend; j++) {
        double s = dist2(c->k, x, c->pend + j * c->k);
        if (s < d) d = s;
    }
    return sqrt(d);
}

static int in_set(const sctx *c, const double *x) {
    double s = 0;
    for (size_t i = 0; i < c->k; i++) {
        if (x[i] < c->lo[i] - 1e-12 || x[i] > c->hi[i] + 1e-12) return 0;
        s += x[i];
    }
    return fabs(s / (double)c->k - c->mean) <= 1e-9 * fmax(1.0, fabs(c->mean));
}

/* Add x (in the set, not a duplicate) to the batch being proposed. */
static void propose(sctx *c, const double *x) {
    memcpy(c->pend + c->npend * c->k, x, c->k * sizeof(double));
    c->npend++;
}

/* A random point of { sum = target, tlo <= a <= thi } into out. */
static void random_in(sctx *c, const double *lo, const double *hi, double *out) {
    for (size_t i = 0; i < c->k; i++) c->tmp2[i] = lo[i] + rng_unif(&c->r) * (hi[i] - lo[i]);
    hma__project_core(c->k, c->tmp2, c->target, lo, hi, out, c->work);
}

/* Maximin choice among `ncand` random points of the box [lo, hi] (projected);
 * returns the chosen point's distance to the nearest known point (max norm
 * distance to all points must exceed tol or the candidate is skipped). */
static double spacefill(sctx *c, const double *lo, const double *hi, size_t ncand, double *out) {
    double bestd = -1;
    for (size_t t = 0; t < ncand; t++) {
        random_in(c, lo, hi, c->tmp);
        if (nearest(c, c->tmp) <= c->tol) continue;
        double d = nearest_l2(c, c->tmp);
        if (d > bestd) {
            bestd = d;
            memcpy(out, c->tmp, c->k * sizeof(double));
        }
    }
    return bestd;
}

/* ---- quadratic surrogate ------------------------------------------------ */

typedef struct model {
    size_t n, p;   /* dimension, number of features */
    int kind;      /* 0 linear, 2 full quadratic */
    double *coef;  /* p */
    double *g, *H; /* n, n*n: model f(z) = c + g.z + 0.5 z'Hz */
} model;

/* Helmert basis: column j (0..n-1) of the K x (K-1) orthonormal basis of {sum = 0}. */
static double helmert(size_t i, size_t j) {
    double jj = (double)(j + 1), norm = sqrt(jj * (jj + 1.0));
    if (i <= j) return 1.0 / norm;
    if (i == j + 1) return -jj / norm;
    return 0.0;
}

/* z = B^T (x - x0) / scale */
static void to_z(const sctx *c, const double *x, const double *x0, double scale, double *z) {
    for (size_t j = 0; j < c->n; j++) {
        double s = 0;
        for (size_t i = 0; i <= j + 1 && i < c->k; i++) s += helmert(i, j) * (x[i] - x0[i]);
        z[j] = s / scale;
    }
}

static size_t features(int kind, size_t n, const double *z, double *phi) {
    size_t p = 0;
    phi[p++] = 1.0;
    for (size_t i = 0; i < n; i++) phi[p++] = z[i];
    if (kind == 2)
        for (size_t i = 0; i < n; i++)
            for (size_t j = i; j < n; j++) phi[p++] = z[i] * z[j];
    return p;
}

/* Cholesky solve of A x = b (A p x p, destroyed); 0 on success. */
static int cholesky_solve(size_t p, double *A, double *b) {
    for (size_t j = 0; j < p; j++) {
        double d = A[j * p + j];
        for (size_t m = 0; m < j; m++) d -= A[j * p + m] * A[j * p + m];
        if (!(d > 0)) return 1;
        d = sqrt(d);
        A[j * p + j] = d;
        for (size_t i = j + 1; i < p; i++) {
            double s = A[i * p + j];
            for (size_t m = 0; m < j; m++) s -= A[i * p + m] * A[j * p + m];
            A[i * p + j] = s / d;
        }
    }
    for (size_t i = 0; i < p; i++) {
        double s = b[i];
        for (size_t m = 0; m < i; m++) s -= A[i * p + m] * b[m];
        b[i] = s / A[i * p + i];
    }
    for (size_t i = p; i-- > 0;) {
        double s = b[i];
        for (size_t m = i + 1; m < p; m++) s -= A[m * p + i] * b[m];
        b[i] = s / A[i * p + i];
    }
    return 0;
}

/* Fit the surrogate around `center` (scaled by `scale`) with local weights
 * of radius r. Returns 0 on success, 1 when no model could be fitted,
 * or an error code < 0 never (allocation failures give HMA_ERR_NO_MEMORY). */
static int fit_model(sctx *c, const double *center, double scale, double r, model *m, int *fitted) {
    *fitted = 0;
    size_t n = c->n, nf = 0;
    double ybest = INFINITY, ymax = -INFINITY;
    for (size_t j = 0; j < c->nknown; j++) {
        double y = c->pts->obj[c->known[j]];
        if (isnan(y)) continue;
        nf++;
        if (y < ybest) ybest = y;
        if (y > ymax) ymax = y;
    }
    if (nf < 2) return HMA_OK;
    /* A full quadratic once 2n + 2 values are known (ridge-regularised, so
     * the curvature terms the data cannot determine shrink towards 0, as in
     * minimum-norm interpolation), a linear model before. */
    size_t pfull = 1 + n + n * (n + 1) / 2, plin = 1 + n;
    int kind = nf >= 2 * n + 2 ? 2 : 0;
    size_t p = kind == 2 ? pfull : plin;
    double ysc = ymax > ybest ? ymax - ybest : 1.0;
    double *A = hma__calloc(p * p + 3 * p + n, sizeof(double));
    if (!A) return hma__fail(HMA_ERR_NO_MEMORY, "hma_search: out of memory for a %zu-term model", p);
    double *b = A + p * p, *phi = b + p, *dg = phi + p, *z = dg + p;
    for (size_t j = 0; j < c->nknown; j++) {
        size_t idx = c->known[j];
        double y = c->pts->obj[idx];
        if (isnan(y)) continue;
        const double *x = c->pts->ratios + idx * c->k;
        double d = hma__maxdist(c->k, x, center) / (2.0 * r);
        double w = 1.0 / (1.0 + d * d);
        to_z(c, x, center, scale, z);
        features(kind, n, z, phi);
        y = (y - ybest) / ysc;
        for (size_t a = 0; a < p; a++) {
            b[a] += w * phi[a] * y;
            for (size_t q = 0; q <= a; q++) A[a * p + q] += w * phi[a] * phi[q];
        }
    }
    for (size_t a = 0; a < p; a++) {
        for (size_t q = 0; q < a; q++) A[q * p + a] = A[a * p + q];
        dg[a] = A[a * p + a] > 0 ? sqrt(A[a * p + a]) : 1.0;
    }
    /* Column-scaled ridge: tiny when the fit is determined, larger when not. */
    double lambda = nf > p ? 1e-9 : 1e-3;
    double *A2 = hma__malloc((p * p + p) * sizeof(double));
    if (!A2) {
        hma__free(A);
        return hma__fail(HMA_ERR_NO_MEMORY, "hma_search: out of memory for a %zu-term model", p);
    }
    double *b2 = A2 + p * p;
    int ok = 0;
    for (int attempt = 0; attempt < 6 && !ok; attempt++, lambda *= 100) {
        for (size_t a = 0; a < p; a++) {
            for (size_t q = 0; q < p; q++) A2[a * p + q] = A[a * p + q] / (dg[a] * dg[q]);
            if (a > 0) A2[a * p + a] += lambda;
            b2[a] = b[a] / dg[a];
        }
        A2[0] += 1e-12;
        ok = cholesky_solve(p, A2, b2) == 0;
    }
    if (ok) {
        m->kind = kind;
        m->p = p;
        for (size_t a = 0; a < p; a++) m->coef[a] = b2[a] / dg[a] * ysc;
        memset(m->H, 0, n * n * sizeof(double));
        for (size_t i = 0; i < n; i++) m->g[i] = m->coef[1 + i];
        size_t q = 1 + n;
        if (kind == 2)
            for (size_t i = 0; i < n; i++)
                for (size_t j = i; j < n; j++) {
                    double v = m->coef[q++];
                    if (i == j) m->H[i * n + i] = 2.0 * v;
                    else m->H[i * n + j] = m->H[j * n + i] = v;
                }
        *fitted = 1;
    }
    hma__free(A2);
    hma__free(A);
    return HMA_OK;
}

/* Model value at x (up to the constant) and its gradient in ratio space. */
static double model_eval(const sctx *c, const model *m, const double *x, const double *center, double scale,
                         double *z, double *gz, double *gx) {
    size_t n = c->n;
    to_z(c, x, center, scale, z);
    double f = 0;
    for (size_t i = 0; i < n; i++) {
        double hz = 0;
        for (size_t j = 0; j < n; j++) hz += m->H[i * n + j] * z[j];
        gz[i] = m->g[i] + hz;
        f += m->g[i] * z[i] + 0.5 * z[i] * hz;
    }
    if (gx) {
        /* d f / d x = B (d f / d z) / scale */
        for (size_t i = 0; i < c->k; i++) gx[i] = 0;
        for (size_t j = 0; j < n; j++)
            for (size_t i = 0; i <= j + 1 && i < c->k; i++) gx[i] += helmert(i, j) * gz[j] / scale;
    }
    return f;
}

/* Projected gradient descent on the model over the trust-region set, from `x` (in/out). */
static void model_minimise(sctx *c, const model *m, const double *center, double scale, double r, double *x,
                           double *z, double *gz, double *gx) {
    size_t n = c->n;
    double hn = 0;
    for (size_t i = 0; i < n * n; i++) hn += m->H[i] * m->H[i];
    hn = sqrt(hn) / (scale * scale); /* Frobenius norm bounds the gradient's Lipschitz constant */
    double fprev = model_eval(c, m, x, center, scale, z, gz, gx);
    for (int it = 0; it < 300; it++) {
        double gmax = 0;
        for (size_t i = 0; i < c->k; i++) gmax = fmax(gmax, fabs(gx[i]));
        if (!(gmax > 0) || !isfinite(gmax)) break;
        double step = hn > 0 ? 1.0 / hn : 0;
        if (hn <= 0 || step * gmax > 4.0 * r) step = 4.0 * r / gmax; /* flat model: run to the boundary */
        for (size_t i = 0; i < c->k; i++) c->tmp[i] = x[i] - step * gx[i];
        hma__project_core(c->k, c->tmp, c->target, c->tlo, c->thi, c->tmp, c->work);
        double move = hma__maxdist(c->k, c->tmp, x);
        memcpy(x, c->tmp, c->k * sizeof(double));
        double f = model_eval(c, m, x, center, scale, z, gz, gx);
        if (move <= 1e-15 * fmax(1.0, c->span) || fabs(fprev - f) <= 1e-15 * fmax(1.0, fabs(f))) break;
        fprev = f;
    }
}

static size_t best_known(const sctx *c) {
    size_t best = HMA_NPOS;
    for (size_t j = 0; j < c->nknown; j++) {
        size_t i = c->known[j];
        if (isnan(c->pts->obj[i])) continue;
        if (best == HMA_NPOS || c->pts->obj[i] < c->pts->obj[best]) best = i;
    }
    return best;
}

static void set_tr(sctx *c, const double *center, double r) {
    for (size_t i = 0; i < c->k; i++) {
        c->tlo[i] = fmax(c->lo[i], center[i] - r);
        c->thi[i] = fmin(c->hi[i], center[i] + r);
    }
}

/* ---- the ask/tell state machine ------------------------------------------ */

enum { PH_CENTRE, PH_DESIGN, PH_TRUST, PH_END };

struct hma_searcher {
    sctx c;
    hma_points *own;     /* the point list when the searcher owns it; NULL for the sweep's */
    size_t batch;        /* largest batch: min(batch option, budget) */
    size_t budget, done; /* evaluations allowed, and told so far */
    int phase;
    size_t n0, ncand;    /* design size; random candidates per space-filling choice */
    model m;
    double *z, *gz, *gx; /* model scratch, n each */
    double r, r0, rmin;  /* trust radius, its restart value and its floor */
    int stalls;
    int pend_tr;         /* the waiting batch is a trust-region step around a point of value fbest */
    double fbest;
};

/* Propose the next batch into c->pend (c->npend = 0 when the search has
 * ended). Each step below is the serial search's, with the batch's
 * candidates counted as known points, so that batch 1 proposes exactly what
 * the serial loop evaluated. */
static int searcher_propose(hma_searcher *s) {
    sctx *c = &s->c;
    size_t room = s->budget - s->done;
    if (room > s->batch) room = s->batch;
    c->npend = 0;
    s->pend_tr = 0;
    if (room == 0) s->phase = PH_END;
    if (s->phase == PH_CENTRE) {
        /* 1. the centre (or the caller's start), projected at creation into bestc */
        s->phase = PH_DESIGN;
        if (nearest(c, c->bestc) > c->tol) propose(c, c->bestc);
        if (c->n == 0 || c->span <= c->tol) s->phase = PH_END; /* a single point */
    }
    if (s->phase == PH_DESIGN) {
        /* 2. maximin space-filling design, handed out `batch` points at a time */
        while (c->npend < room && c->nknown + c->npend < s->n0) {
            if (spacefill(c, c->lo, c->hi, s->ncand, c->cand) < 0) {
                s->phase = PH_TRUST;
                break;
            }
            propose(c, c->cand);
        }
        if (c->nknown + c->npend >= s->n0) s->phase = PH_TRUST;
        if (c->npend) return HMA_OK; /* a batch never mixes design and trust-region points */
    }
    size_t k = c->k;
    while (s->phase == PH_TRUST) {
        /* 3. trust-region steps on the surrogate */
        size_t ib = best_known(c);
        if (ib != HMA_NPOS) {
            const double *xb = c->pts->ratios + ib * k;
            set_tr(c, xb, s->r);
            int fitted = 0, have = 0;
            int rc = fit_model(c, xb, c->span, s->r, &s->m, &fitted);
            if (rc) {
                s->phase = PH_END;
                return rc;
            }
            if (fitted) {
                memcpy(c->cand, xb, k * sizeof(double));
                model_minimise(c, &s->m, xb, c->span, s->r, c->cand, s->z, s->gz, s->gx);
                have = nearest(c, c->cand) > c->tol;
            }
            if (!have) /* model stuck on a known point: sample the trust region instead */
                have = spacefill(c, c->tlo, c->thi, s->ncand, c->cand) >= 0;
            if (have) {
                propose(c, c->cand);
                s->pend_tr = 1;
                s->fbest = c->pts->obj[ib];
                /* the rest of the batch: space filling in the trust region, else in the whole set */
                while (c->npend < room) {
                    if (spacefill(c, c->tlo, c->thi, s->ncand, c->cand) < 0 &&
                        spacefill(c, c->lo, c->hi, 4 * s->ncand, c->cand) < 0)
                        break;
                    propose(c, c->cand);
                }
                return HMA_OK;
            }
        }
        /* no usable model or trust region exhausted: explore the whole set */
        if (spacefill(c, c->lo, c->hi, 4 * s->ncand, c->cand) < 0) {
            if (++s->stalls > 3) s->phase = PH_END; /* no distinct vector left to find */
            s->r = s->r0;
            continue;
        }
        propose(c, c->cand);
        while (c->npend < room && spacefill(c, c->lo, c->hi, 4 * s->ncand, c->cand) >= 0) propose(c, c->cand);
        return HMA_OK;
    }
    return HMA_OK;
}

/* Record the first n candidates of the waiting batch with their scores
 * (room already reserved), then update the trust region if all came. */
static void searcher_record(hma_searcher *s, const double *scores, size_t n) {
    sctx *c = &s->c;
    size_t first = c->pts->n, ns = c->pts->ns;
    for (size_t i = 0; i < n; i++) {
        (void)hma__points_add(c->pts, c->pend + i * c->k, scores + i * ns, HMA_POINT_SEARCH, c->run);
        c->known[c->nknown++] = c->pts->n - 1;
    }
    s->done += n;
    if (n == c->npend && s->pend_tr) {
        int better = 0;
        for (size_t i = first; i < c->pts->n; i++) better |= !isnan(c->pts->obj[i]) && c->pts->obj[i] < s->fbest;
        if (better) {
            s->r = fmin(2.0 * s->r, c->span);
            s->stalls = 0;
        } else if ((s->r *= 0.5) < s->rmin) {
            s->r = s->r0; /* converged here: restart wide */
            s->stalls++;
        }
    }
    c->npend = 0;
    s->pend_tr = 0;
    if (s->done >= s->budget) s->phase = PH_END;
}

int hma__search_opts_read(hma_search_options *dst, const hma_search_options *src, const char *fn,
                          const char *type) {
    if (!src) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: options are NULL", fn);
    hma_search_options_init(dst);
    int rc = hma__opts_in(dst, sizeof *dst, src, HMA__SEARCH_OPTIONS_V1, fn, type);
    if (rc) return rc;
    const hma_search_options *o = dst;
    if (o->k == 0 || o->budget == 0 || o->n_scores == 0)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: k, budget and n_scores must all be >= 1 (got %zu, %zu, %zu)",
                         fn, o->k, o->budget, o->n_scores);
    if (o->batch == 0) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: batch must be >= 1", fn);
    if (!(o->tolerance >= 0) || !isfinite(o->tolerance))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: tolerance %g (expected finite >= 0)", fn, o->tolerance);
    if (o->k > (SIZE_MAX / sizeof(double)) / 64 || o->n_scores > SIZE_MAX / 64 || o->budget > SIZE_MAX / 4)
        return hma__fail(HMA_ERR_OVERFLOW, "%s: k, n_scores or budget too large", fn);
    size_t batch = o->batch < o->budget ? o->batch : o->budget, row = o->k > o->n_scores ? o->k : o->n_scores;
    if (batch > (SIZE_MAX / sizeof(double)) / (64 * row))
        return hma__fail(HMA_ERR_OVERFLOW, "%s: batch %zu too large", fn, o->batch);
    if (o->weights)
        for (size_t s = 0; s < o->n_scores; s++)
            if (!isfinite(o->weights[s])) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: weight %zu is not finite", fn, s);
    if (o->start)
        for (size_t i = 0; i < o->k; i++)
            if (!isfinite(o->start[i])) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: start[%zu] is not finite", fn, i);
    return HMA_OK;
}

static void sctx_free(sctx *c) {
    hma__free(c->lo);
    hma__free(c->known);
    hma__free(c->pend);
}

/* Set up a context for options o and mean `mean` over point list pts; room
 * for `pend` proposed candidates. */
static int sctx_init(sctx *c, const hma_search_options *o, double mean, uint64_t seed, hma_points *pts,
                     size_t extra, size_t pend) {
    memset(c, 0, sizeof *c);
    size_t k = o->k;
    c->k = k;
    c->n = k - 1;
    c->mean = mean;
    c->target = mean * (double)k;
    c->tol = o->tolerance;
    c->pts = pts;
    c->lo = hma__malloc(10 * k * sizeof(double));
    c->known = hma__malloc((pts->n + extra + 1) * sizeof(size_t));
    c->pend = hma__malloc((pend ? pend : 1) * k * sizeof(double));
    if (!c->lo || !c->known || !c->pend) {
        sctx_free(c);
        return hma__fail(HMA_ERR_NO_MEMORY, "hma_search: out of memory (K = %zu)", k);
    }
    c->hi = c->lo + k;
    c->work = c->hi + k;
    c->tlo = c->work + 2 * k;
    c->thi = c->tlo + k;
    c->cand = c->thi + k;
    c->bestc = c->cand + k;
    c->tmp = c->bestc + k;
    c->tmp2 = c->tmp + k;
    for (size_t i = 0; i < k; i++) {
        c->lo[i] = o->lo_each ? o->lo_each[i] : o->lo;
        c->hi[i] = o->hi_each ? o->hi_each[i] : o->hi;
        if (c->hi[i] - c->lo[i] > c->span) c->span = c->hi[i] - c->lo[i];
    }
    int rc = hma__ratio_bounds_check("hma_search", k, mean, c->lo, c->hi);
    if (rc) {
        sctx_free(c);
        return rc;
    }
    for (size_t i = 0; i < pts->n; i++)
        if (in_set(c, pts->ratios + i * k)) c->known[c->nknown++] = i;
    rng_seed(&c->r, seed);
    return HMA_OK;
}

int hma__search_check_set(const hma_search_options *o, double mean) {
    hma_points none = {0};
    none.k = o->k;
    sctx c;
    int rc = sctx_init(&c, o, mean, 0, &none, 0, 1);
    if (!rc) sctx_free(&c);
    return rc;
}

void hma_searcher_free(hma_searcher *s) {
    if (!s) return;
    sctx_free(&s->c);
    hma__free(s->m.coef);
    hma_points_free(s->own);
    hma__free(s);
}

/* A searcher over pts (points of pts inside the set count as known; `extra`:
 * points pts may still gain) at `mean` with PRNG seed `seed`; o already read
 * and checked. The centre (start, or all `mean`) is projected here, so that
 * o's arrays are not needed later. */
static int searcher_new(hma_searcher **out, const hma_search_options *o, double mean, uint64_t seed,
                        hma_points *pts, size_t extra, size_t run) {
    *out = NULL;
    hma_searcher *s = hma__calloc(1, sizeof *s);
    if (!s) return hma__fail(HMA_ERR_NO_MEMORY, "hma_search: out of memory");
    s->batch = o->batch < o->budget ? o->batch : o->budget;
    int rc = sctx_init(&s->c, o, mean, seed, pts, extra, s->batch);
    if (rc) {
        hma__free(s);
        return rc;
    }
    sctx *c = &s->c;
    size_t k = c->k, n = c->n;
    c->run = run;
    s->m.coef = hma__calloc(1 + n + n * (n + 1) / 2 + 2 * n + n * n + 2 * k, sizeof(double));
    if (!s->m.coef) {
        hma_searcher_free(s);
        return hma__fail(HMA_ERR_NO_MEMORY, "hma_search: out of memory (K = %zu)", k);
    }
    s->m.g = s->m.coef + 1 + n + n * (n + 1) / 2;
    s->m.H = s->m.g + n;
    s->z = s->m.H + n * n;
    s->gz = s->z + n;
    s->gx = s->gz + n;
    s->budget = o->budget;
    s->phase = PH_CENTRE;
    s->n0 = n + 2;
    size_t q = o->budget / 4 > 4 ? o->budget / 4 : 4;
    if (q < s->n0) s->n0 = q;
    s->ncand = 64 + 16 * k;
    s->r0 = s->r = 0.25 * c->span;
    s->rmin = fmax(4.0 * c->tol, 1e-9 * c->span);
    for (size_t i = 0; i < k; i++) c->tmp2[i] = o->start ? o->start[i] : c->mean;
    hma__project_core(k, c->tmp2, c->target, c->lo, c->hi, c->bestc, c->work);
    *out = s;
    return HMA_OK;
}

/* hma_searcher_create() for the public function `fn` (named in messages). */
static int searcher_create(hma_searcher **out, const hma_search_options *opts, const char *fn) {
    hma_search_options o;
    int rc = hma__search_opts_read(&o, opts, fn, "hma_search_options");
    if (rc) return rc;
    if (o.prior && (o.prior->k != o.k || o.prior->ns != o.n_scores))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: prior points have k = %zu, %zu scores (expected %zu, %zu)",
                         fn, o.prior->k, o.prior->ns, o.k, o.n_scores);
    hma_points *pts = hma__points_new(o.k, o.n_scores, o.weights);
    if (!pts) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", fn);
    hma_searcher *s = NULL;
    if ((rc = searcher_new(&s, &o, o.mean, o.seed, pts, (o.prior ? o.prior->n : 0) + o.budget, 0))) {
        hma_points_free(pts);
        return rc;
    }
    s->own = pts;
    sctx *c = &s->c;
    if (o.prior)
        for (size_t i = 0; i < o.prior->n && !rc; i++) {
            const double *x = o.prior->ratios + i * o.k;
            if (!in_set(c, x) || nearest(c, x) <= c->tol) continue;
            if (!(rc = hma__points_add(pts, x, o.prior->scores + i * o.n_scores, HMA_POINT_PRIOR, 0)))
                c->known[c->nknown++] = pts->n - 1;
        }
    if (rc) {
        hma_searcher_free(s);
        return rc;
    }
    *out = s;
    return HMA_OK;
}

int hma_searcher_create(hma_searcher **out, const hma_search_options *opts) {
    if (out) *out = NULL;
    if (!out) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_searcher_create: out is NULL");
    return searcher_create(out, opts, "hma_searcher_create");
}

int hma_searcher_ask(hma_searcher *s, double *ratios, size_t max, size_t *n) {
    if (n) *n = 0;
    if (!s || !ratios || !n) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_searcher_ask: NULL argument");
    if (s->c.npend)
        return hma__fail(HMA_ERR_STATE, "hma_searcher_ask: the last batch (%zu candidates) waits for its scores "
                                        "(hma_searcher_tell)", s->c.npend);
    if (max < s->batch)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_searcher_ask: room for %zu candidates, a batch may hold %zu",
                         max, s->batch);
    int rc = searcher_propose(s);
    if (rc) return rc;
    memcpy(ratios, s->c.pend, s->c.npend * s->c.k * sizeof(double));
    *n = s->c.npend;
    return HMA_OK;
}

int hma_searcher_tell(hma_searcher *s, const double *scores, size_t n) {
    if (!s || !scores) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_searcher_tell: NULL argument");
    if (!s->c.npend) return hma__fail(HMA_ERR_STATE, "hma_searcher_tell: no batch waits for scores (hma_searcher_ask)");
    if (n != s->c.npend)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_searcher_tell: %zu score rows for a batch of %zu candidates", n,
                         s->c.npend);
    int rc = hma__points_reserve(s->c.pts, s->c.pts->n + n);
    if (rc) return rc;
    searcher_record(s, scores, n);
    return HMA_OK;
}

int hma_searcher_done(const hma_searcher *s) { return !s || s->phase == PH_END; }

int hma_searcher_points(const hma_searcher *s, hma_points **out) {
    if (out) *out = NULL;
    if (!s || !out) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_searcher_points: NULL argument");
    *out = hma__points_copy(s->c.pts);
    return *out ? HMA_OK : hma__fail(HMA_ERR_NO_MEMORY, "hma_searcher_points: out of memory");
}

/* The loop of hma_search() and the sweep: ask, score each candidate in
 * order with fn, tell. A callback that stops keeps the candidates scored
 * before it. */
static int searcher_run(hma_searcher *s, hma_eval_fn fn, void *user) {
    sctx *c = &s->c;
    size_t ns = c->pts->ns, n = 0;
    double *sc = hma__malloc(s->batch * ns * sizeof(double));
    double *x = hma__malloc(s->batch * c->k * sizeof(double));
    int rc = sc && x ? HMA_OK : hma__fail(HMA_ERR_NO_MEMORY, "hma_search: out of memory");
    while (!rc && !(rc = hma_searcher_ask(s, x, s->batch, &n)) && n) {
        if ((rc = hma__points_reserve(c->pts, c->pts->n + n))) break;
        size_t i = 0;
        for (; i < n && !rc; i++) {
            double *row = sc + i * ns;
            for (size_t j = 0; j < ns; j++) row[j] = NAN;
            int r = fn(user, c->k, x + i * c->k, ns, row);
            if (r) {
                char who[96];
                snprintf(who, sizeof who, "hma_search: evaluation callback after %zu points", c->pts->n + i);
                rc = hma__callback_result(r, who);
            }
        }
        searcher_record(s, sc, rc ? i - 1 : n);
    }
    hma__free(sc);
    hma__free(x);
    return rc;
}

int hma__search_mean(const hma_search_options *o, double mean, uint64_t seed, hma_points *pts,
                     size_t extra, hma_eval_fn fn, void *user, size_t run) {
    hma_searcher *s = NULL;
    int rc = searcher_new(&s, o, mean, seed, pts, extra, run);
    if (rc) return rc;
    rc = searcher_run(s, fn, user);
    hma_searcher_free(s);
    return rc;
}

int hma_search(const hma_search_options *opts, hma_eval_fn fn, void *user, hma_points **out) {
    if (out) *out = NULL;
    if (!out || !fn) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_search: out or fn is NULL");
    hma_searcher *s = NULL;
    int rc = searcher_create(&s, opts, "hma_search");
    if (rc) return rc;
    rc = searcher_run(s, fn, user);
    if (rc && rc != HMA_ERR_CANCELLED && rc != HMA_ERR_CALLBACK) {
        hma_searcher_free(s);
        return rc;
    }
    *out = s->own; /* the searcher's list, handed over */
    s->own = NULL;
    hma_searcher_free(s);
    return rc;
}
