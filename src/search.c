/*
 * search.c - choosing the per-block ratios: the paper's logit parametrisation
 * (ratios, Jacobian, inverse), one SGD/Adam step of the authors' gradient
 * method, exact projection onto {mean fixed, bounds}, the derivative-free
 * search, point lists, Pareto fronts and the MA/HMA sweep.
 * Group gradients dL/da_k live in gradients.c. docs/search.md explains why.
 */
#include "internal.h"


#include <float.h>
#include <math.h>
#include <string.h>

/* ======================================================================= */
/* Parametrisation                                                         */
/* ======================================================================= */

static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static int check_param(const char *fn, size_t k, const double *logits, double mean, double eps) {
    if (k == 0 || !logits) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: k must be >= 1 and logits non-NULL", fn);
    if (!(eps > 0) || !isfinite(eps))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: eps %g (expected a finite value > 0)", fn, eps);
    if (!isfinite(mean)) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: mean is not finite", fn);
    for (size_t i = 0; i < k; i++)
        if (isnan(logits[i]))
            return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: logit %zu is NaN (expected a number)", fn, i);
    return HMA_OK;
}

/* u_k = sigmoid(l_k) + eps, g_k = s(1-s); returns S = sum u (in index order). */
static double param_terms(size_t k, const double *logits, double eps, double *u, double *g) {
    double S = 0;
    for (size_t i = 0; i < k; i++) {
        double s = sigmoid(logits[i]);
        if (u) u[i] = s + eps;
        if (g) g[i] = s * (1.0 - s);
        S += s + eps;
    }
    return S;
}

int hma_ratios_from_logits(size_t k, const double *logits, double mean, double eps, double *ratios) {
    int rc = check_param("hma_ratios_from_logits", k, logits, mean, eps);
    if (rc) return rc;
    if (!ratios) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_ratios_from_logits: ratios is NULL");
    double S = param_terms(k, logits, eps, NULL, NULL);
    double scale = mean * (double)k / S;
    for (size_t i = 0; i < k; i++) ratios[i] = scale * (sigmoid(logits[i]) + eps);
    return HMA_OK;
}

int hma_ratios_jacobian(size_t k, const double *logits, double mean, double eps, double *jac) {
    uint64_t kk;
    if (hma__mul_overflows(k, k, &kk) || kk > SIZE_MAX / sizeof(double))
        return hma__fail(HMA_ERR_OVERFLOW, "hma_ratios_jacobian: k = %zu makes k*k overflow", k);
    int rc = check_param("hma_ratios_jacobian", k, logits, mean, eps);
    if (rc) return rc;
    if (!jac) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_ratios_jacobian: jac is NULL");
    double *u = hma__malloc(2 * k * sizeof(double));
    if (!u) return hma__fail(HMA_ERR_NO_MEMORY, "hma_ratios_jacobian: out of memory for k = %zu", k);
    double *g = u + k;
    double S = param_terms(k, logits, eps, u, g);
    double mk = mean * (double)k;
    for (size_t i = 0; i < k; i++) {
        double ai = mk * u[i] / S;
        for (size_t j = 0; j < k; j++) jac[i * k + j] = g[j] * ((i == j ? mk : 0.0) - ai) / S;
    }
    hma__free(u);
    return HMA_OK;
}

int hma_logits_gradient(size_t k, const double *logits, double mean, double eps,
                        const double *grad_ratios, double *grad_logits) {
    int rc = check_param("hma_logits_gradient", k, logits, mean, eps);
    if (rc) return rc;
    if (!grad_ratios || !grad_logits)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_logits_gradient: NULL gradient array");
    double S = param_terms(k, logits, eps, NULL, NULL);
    double mk = mean * (double)k;
    double dot = 0; /* sum_i a_i * dL/da_i */
    for (size_t i = 0; i < k; i++) dot += (mk * (sigmoid(logits[i]) + eps) / S) * grad_ratios[i];
    /* grad_logits may alias grad_ratios: each entry reads only its own index. */
    for (size_t j = 0; j < k; j++) {
        double s = sigmoid(logits[j]);
        grad_logits[j] = s * (1.0 - s) * (mk * grad_ratios[j] - dot) / S;
    }
    return HMA_OK;
}

int hma_logits_from_ratios(size_t k, const double *ratios, double eps, double *logits, double *mean_out) {
    if (k == 0 || !ratios || !logits)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_logits_from_ratios: k must be >= 1, arrays non-NULL");
    if (!(eps > 0) || !isfinite(eps))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_logits_from_ratios: eps %g (expected a finite value > 0)", eps);
    double sum = 0;
    for (size_t i = 0; i < k; i++) {
        if (!isfinite(ratios[i]))
            return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_logits_from_ratios: ratio %zu is not finite", i);
        sum += ratios[i];
    }
    double mean = sum / (double)k;
    if (mean == 0)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_logits_from_ratios: the mean is 0 (no logits reach it unless all ratios are 0; expected a nonzero mean)");
    double qmin = INFINITY, qmax = -INFINITY;
    for (size_t i = 0; i < k; i++) {
        double q = ratios[i] / mean;
        if (q < qmin) qmin = q;
        if (q > qmax) qmax = q;
    }
    /* u_k = c * q_k must lie in (eps, 1 + eps) for every k. */
    double clo = qmin > 0 ? eps / qmin : INFINITY, chi = qmax > 0 ? (1.0 + eps) / qmax : 0;
    if (!(qmin > 0) || !(clo < chi))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "hma_logits_from_ratios: ratios/mean span [%g, %g]; the parametrisation only reaches "
                         "ratios of one sign with max/min < (1 + eps)/eps = %g",
                         qmin, qmax, (1.0 + eps) / eps);
    double c = 0.5 + eps;
    /* Keep c well inside the allowed interval so that no logit is +-infinity. */
    double margin = (chi - clo) * 1e-3;
    if (!(c > clo + margin && c < chi - margin)) c = 0.5 * (clo + chi);
    for (size_t i = 0; i < k; i++) {
        double s = c * (ratios[i] / mean) - eps; /* in (0, 1) */
        logits[i] = log(s) - log1p(-s);
    }
    if (mean_out) *mean_out = mean;
    return HMA_OK;
}

/* ======================================================================= */
/* Optimizer                                                               */
/* ======================================================================= */

struct hma_ratio_opt {
    size_t k;
    uint64_t t;
    hma_ratio_opt_options o;
    double *l, *m, *v, *work; /* logits, first and second moments, scratch (2k) */
};

void hma_ratio_opt_options_init(hma_ratio_opt_options *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->method = HMA_OPT_ADAM;
    o->lr = 2e-5;
    o->mean = 0.5;
    o->eps = HMA_RATIO_EPS_DEFAULT;
    o->penalty = 0;
    o->momentum = 0;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->adam_eps = 1e-8;
}

static int finite_in(double x, double lo, double hi, int lo_open, int hi_open) {
    if (!isfinite(x)) return 0;
    if (lo_open ? !(x > lo) : !(x >= lo)) return 0;
    if (hi_open ? !(x < hi) : !(x <= hi)) return 0;
    return 1;
}

int hma_ratio_opt_create(hma_ratio_opt **out, size_t k, const double *logits0,
                         const hma_ratio_opt_options *opts) {
    if (!out || k == 0) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_ratio_opt_create: out NULL or k == 0");
    hma_ratio_opt_options o;
    hma_ratio_opt_options_init(&o);
    if (opts) {
        if (opts->struct_size < offsetof(hma_ratio_opt_options, adam_eps) + sizeof(double) ||
            opts->struct_size > sizeof o)
            return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_ratio_opt_create: options struct_size %zu (expected %zu; use hma_ratio_opt_options_init)",
                             opts->struct_size, sizeof o);
        memcpy(&o, opts, opts->struct_size);
        o.struct_size = sizeof o;
    }
    if (o.method != HMA_OPT_SGD && o.method != HMA_OPT_ADAM)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_ratio_opt_create: unknown method %d (expected HMA_OPT_SGD or HMA_OPT_ADAM)", o.method);
    if (!finite_in(o.lr, 0, INFINITY, 0, 1) || !isfinite(o.mean) || !finite_in(o.eps, 0, INFINITY, 1, 1) ||
        !finite_in(o.penalty, 0, INFINITY, 0, 1) || !finite_in(o.momentum, 0, 1, 0, 1) ||
        !finite_in(o.beta1, 0, 1, 0, 1) || !finite_in(o.beta2, 0, 1, 0, 1) ||
        !finite_in(o.adam_eps, 0, INFINITY, 0, 1))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "hma_ratio_opt_create: options out of range (expected lr >= 0, finite mean, eps > 0, "
                         "penalty >= 0, momentum/beta1/beta2 in [0, 1), adam_eps >= 0)");
    if (k > SIZE_MAX / (5 * sizeof(double)))
        return hma__fail(HMA_ERR_OVERFLOW, "hma_ratio_opt_create: k = %zu too large", k);
    if (logits0)
        for (size_t i = 0; i < k; i++)
            if (!isfinite(logits0[i]))
                return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_ratio_opt_create: logit %zu is not finite", i);
    hma_ratio_opt *p = hma__calloc(1, sizeof *p);
    double *buf = hma__calloc(5 * k, sizeof(double));
    if (!p || !buf) {
        hma__free(p);
        hma__free(buf);
        return hma__fail(HMA_ERR_NO_MEMORY, "hma_ratio_opt_create: out of memory for k = %zu", k);
    }
    p->k = k;
    p->o = o;
    p->l = buf;
    p->m = buf + k;
    p->v = buf + 2 * k;
    p->work = buf + 3 * k;
    if (logits0) memcpy(p->l, logits0, k * sizeof(double));
    *out = p;
    return HMA_OK;
}

void hma_ratio_opt_free(hma_ratio_opt *opt) {
    if (!opt) return;
    hma__free(opt->l);
    hma__free(opt);
}

size_t hma_ratio_opt_k(const hma_ratio_opt *opt) { return opt ? opt->k : 0; }
uint64_t hma_ratio_opt_steps(const hma_ratio_opt *opt) { return opt ? opt->t : 0; }

int hma_ratio_opt_get(const hma_ratio_opt *opt, double *logits, double *ratios) {
    if (!opt) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_ratio_opt_get: opt is NULL");
    if (logits) memcpy(logits, opt->l, opt->k * sizeof(double));
    if (ratios) return hma_ratios_from_logits(opt->k, opt->l, opt->o.mean, opt->o.eps, ratios);
    return HMA_OK;
}

int hma_ratio_opt_step(hma_ratio_opt *opt, const double *grad_ratios, double *logits_out, double *ratios_out) {
    if (!opt || !grad_ratios) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_ratio_opt_step: NULL opt or gradient");
    size_t k = opt->k;
    const hma_ratio_opt_options *o = &opt->o;
    double *ga = opt->work, *gl = opt->work + k;
    for (size_t i = 0; i < k; i++)
        if (!isfinite(grad_ratios[i]))
            return hma__fail(HMA_ERR_NONFINITE, "hma_ratio_opt_step: dL/da_%zu is not finite", i);
    int rc = hma_ratios_from_logits(k, opt->l, o->mean, o->eps, ga);
    if (rc) return rc;
    for (size_t i = 0; i < k; i++) {
        double d = ga[i] - o->mean;
        double sg = d > 0 ? 1.0 : (d < 0 ? -1.0 : 0.0);
        ga[i] = grad_ratios[i] + o->penalty * sg;
    }
    rc = hma_logits_gradient(k, opt->l, o->mean, o->eps, ga, gl);
    if (rc) return rc;
    uint64_t t = opt->t + 1;
    if (o->method == HMA_OPT_SGD) {
        for (size_t i = 0; i < k; i++) {
            double v = (t == 1 || o->momentum == 0) ? gl[i] : o->momentum * opt->m[i] + gl[i];
            opt->m[i] = v;
            opt->l[i] -= o->lr * v;
        }
    } else {
        double bc1 = 1.0 - pow(o->beta1, (double)t), bc2 = 1.0 - pow(o->beta2, (double)t);
        double step = o->lr / bc1, sbc2 = sqrt(bc2);
        for (size_t i = 0; i < k; i++) {
            opt->m[i] = o->beta1 * opt->m[i] + (1.0 - o->beta1) * gl[i];
            opt->v[i] = o->beta2 * opt->v[i] + (1.0 - o->beta2) * gl[i] * gl[i];
            double denom = sqrt(opt->v[i]) / sbc2 + o->adam_eps;
            opt->l[i] -= step * opt->m[i] / denom;
        }
    }
    opt->t = t;
    if (logits_out) memcpy(logits_out, opt->l, k * sizeof(double));
    if (ratios_out) return hma_ratios_from_logits(k, opt->l, o->mean, o->eps, ratios_out);
    return HMA_OK;
}

/* ======================================================================= */
/* Exact projection onto { sum a = k * mean, lo <= a <= hi }               */
/* ======================================================================= */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double clampd(double x, double lo, double hi) { return x < lo ? lo : (x > hi ? hi : x); }

static double clamped_sum(size_t k, const double *y, double tau, const double *lo, const double *hi) {
    double s = 0;
    for (size_t i = 0; i < k; i++) s += clampd(y[i] - tau, lo[i], hi[i]);
    return s;
}

/* Move the rounding residual of the sum onto coordinates with room left. */
static void fix_sum(size_t k, double *a, double target, const double *lo, const double *hi) {
    for (int pass = 0; pass < 4; pass++) {
        double s = 0;
        for (size_t i = 0; i < k; i++) s += a[i];
        double r = target - s;
        if (r == 0) return;
        size_t best = k;
        double room = 0;
        for (size_t i = 0; i < k; i++) {
            double ri = r > 0 ? hi[i] - a[i] : a[i] - lo[i];
            if (ri > room) {
                room = ri;
                best = i;
            }
        }
        if (best == k) return;
        double d = fabs(r) < room ? r : (r > 0 ? room : -room);
        a[best] = clampd(a[best] + d, lo[best], hi[best]);
    }
}

/* work: 2k doubles. Bounds and feasibility already checked. */
static void project_core(size_t k, const double *y, double target, const double *lo, const double *hi,
                         double *out, double *work) {
    double slo = 0, shi = 0;
    for (size_t i = 0; i < k; i++) {
        slo += lo[i];
        shi += hi[i];
    }
    if (target >= shi) {
        memcpy(out, hi, k * sizeof(double));
        return;
    }
    if (target <= slo) {
        memcpy(out, lo, k * sizeof(double));
        return;
    }
    size_t nb = 2 * k;
    for (size_t i = 0; i < k; i++) {
        work[2 * i] = y[i] - hi[i];
        work[2 * i + 1] = y[i] - lo[i];
    }
    qsort(work, nb, sizeof(double), cmp_double);
    /* f(tau) = clamped_sum is non-increasing: f(work[0]) = shi, f(work[nb-1]) = slo.
     * Find j with f(work[j]) >= target >= f(work[j+1]). */
    size_t a = 0, b = nb - 1;
    while (b - a > 1) {
        size_t mid = a + (b - a) / 2;
        if (clamped_sum(k, y, work[mid], lo, hi) >= target) a = mid;
        else b = mid;
    }
    double t1 = work[a], t2 = work[b];
    double tm = 0.5 * (t1 + t2), fixed = 0, freey = 0;
    size_t nfree = 0;
    for (size_t i = 0; i < k; i++) {
        double v = y[i] - tm;
        if (v <= lo[i]) fixed += lo[i];
        else if (v >= hi[i]) fixed += hi[i];
        else {
            freey += y[i];
            nfree++;
        }
    }
    double tau = t1;
    if (nfree > 0) tau = clampd((freey + fixed - target) / (double)nfree, t1, t2);
    for (size_t i = 0; i < k; i++) out[i] = clampd(y[i] - tau, lo[i], hi[i]);
    fix_sum(k, out, target, lo, hi);
}

static int check_bounds(const char *fn, size_t k, double mean, const double *lo, const double *hi) {
    double slo = 0, shi = 0;
    for (size_t i = 0; i < k; i++) {
        if (!isfinite(lo[i]) || !isfinite(hi[i]) || lo[i] > hi[i])
            return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: bounds of ratio %zu are [%g, %g] (expected finite lo <= hi)",
                             fn, i, lo[i], hi[i]);
        slo += lo[i];
        shi += hi[i];
    }
    double target = mean * (double)k, tol = 1e-12 * fmax(1.0, fabs(target));
    if (!isfinite(mean) || slo > target + tol || shi < target - tol)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "%s: mean %g cannot be kept within the bounds (their means span [%g, %g])", fn, mean,
                         slo / (double)k, shi / (double)k);
    return HMA_OK;
}

int hma_project_ratios(size_t k, const double *y, double mean, const double *lo, const double *hi, double *out) {
    if (k == 0 || !y || !lo || !hi || !out)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_project_ratios: k must be >= 1 and arrays non-NULL");
    int rc = check_bounds("hma_project_ratios", k, mean, lo, hi);
    if (rc) return rc;
    for (size_t i = 0; i < k; i++)
        if (!isfinite(y[i])) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_project_ratios: y[%zu] is not finite", i);
    if (k > SIZE_MAX / (3 * sizeof(double))) return hma__fail(HMA_ERR_OVERFLOW, "hma_project_ratios: k too large");
    double *work = hma__malloc(3 * k * sizeof(double));
    if (!work) return hma__fail(HMA_ERR_NO_MEMORY, "hma_project_ratios: out of memory for k = %zu", k);
    project_core(k, y, mean * (double)k, lo, hi, work + 2 * k, work);
    memcpy(out, work + 2 * k, k * sizeof(double));
    hma__free(work);
    return HMA_OK;
}

/* ======================================================================= */
/* Point lists                                                             */
/* ======================================================================= */

struct hma_points {
    size_t k, ns, n, cap;
    double *ratios;  /* n * k */
    double *scores;  /* n * ns */
    double *obj;     /* n: weighted sum (NaN if not finite) */
    int *kind;
    size_t *run;
    double *weights; /* ns */
};

static hma_points *points_new(size_t k, size_t ns, const double *weights) {
    hma_points *p = hma__calloc(1, sizeof *p);
    if (!p) return NULL;
    p->k = k;
    p->ns = ns;
    p->weights = hma__malloc(ns * sizeof(double));
    if (!p->weights) {
        hma__free(p);
        return NULL;
    }
    for (size_t s = 0; s < ns; s++) p->weights[s] = weights ? weights[s] : 1.0;
    return p;
}

void hma_points_free(hma_points *p) {
    if (!p) return;
    hma__free(p->ratios);
    hma__free(p->scores);
    hma__free(p->obj);
    hma__free(p->kind);
    hma__free(p->run);
    hma__free(p->weights);
    hma__free(p);
}

static double weighted(const hma_points *p, const double *scores) {
    double o = 0;
    for (size_t s = 0; s < p->ns; s++) o += p->weights[s] * scores[s];
    return isfinite(o) ? o : NAN;
}

static int points_reserve(hma_points *p, size_t want) {
    if (want <= p->cap) return HMA_OK;
    size_t cap = p->cap ? p->cap : 16;
    while (cap < want) cap *= 2;
    if (cap > SIZE_MAX / (sizeof(double) * (p->k > p->ns ? p->k : p->ns) + 64))
        return hma__fail(HMA_ERR_OVERFLOW, "hma_points: too many points (%zu)", want);
    double *r = hma__realloc(p->ratios, cap * p->k * sizeof(double));
    if (r) p->ratios = r;
    double *s = hma__realloc(p->scores, cap * p->ns * sizeof(double));
    if (s) p->scores = s;
    double *o = hma__realloc(p->obj, cap * sizeof(double));
    if (o) p->obj = o;
    int *kd = hma__realloc(p->kind, cap * sizeof(int));
    if (kd) p->kind = kd;
    size_t *rn = hma__realloc(p->run, cap * sizeof(size_t));
    if (rn) p->run = rn;
    if (!r || !s || !o || !kd || !rn) return hma__fail(HMA_ERR_NO_MEMORY, "hma_points: out of memory for %zu points", want);
    p->cap = cap;
    return HMA_OK;
}

static int points_add(hma_points *p, const double *ratios, const double *scores, int kind, size_t run) {
    int rc = points_reserve(p, p->n + 1);
    if (rc) return rc;
    memcpy(p->ratios + p->n * p->k, ratios, p->k * sizeof(double));
    memcpy(p->scores + p->n * p->ns, scores, p->ns * sizeof(double));
    p->obj[p->n] = weighted(p, scores);
    p->kind[p->n] = kind;
    p->run[p->n] = run;
    p->n++;
    return HMA_OK;
}

size_t hma_points_count(const hma_points *p) { return p ? p->n : 0; }
size_t hma_points_k(const hma_points *p) { return p ? p->k : 0; }
size_t hma_points_n_scores(const hma_points *p) { return p ? p->ns : 0; }
const double *hma_points_ratios(const hma_points *p, size_t i) {
    return p && i < p->n ? p->ratios + i * p->k : NULL;
}
const double *hma_points_scores(const hma_points *p, size_t i) {
    return p && i < p->n ? p->scores + i * p->ns : NULL;
}
int hma_points_info(const hma_points *p, size_t i, int *kind, size_t *run) {
    if (!p || i >= p->n)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_points_info: point %zu out of range (%zu points)", i, p ? p->n : 0);
    if (kind) *kind = p->kind[i];
    if (run) *run = p->run[i];
    return HMA_OK;
}

size_t hma_points_best(const hma_points *p) {
    size_t best = (size_t)-1;
    if (!p) return best;
    for (size_t i = 0; i < p->n; i++)
        if (!isnan(p->obj[i]) && (best == (size_t)-1 || p->obj[i] < p->obj[best])) best = i;
    return best;
}

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

void hma_search_options_init(hma_search_options *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->mean = 0.5;
    o->lo = 0;
    o->hi = 1;
    o->budget = 20;
    o->n_scores = 1;
    o->tolerance = 1e-6;
}

typedef struct sctx {
    size_t k, n;         /* K ratios; n = K - 1 free dimensions */
    double mean, target; /* target = K * mean */
    double *lo, *hi;     /* K each */
    double tol, span;    /* dedupe tolerance; largest hi - lo */
    hma_points *pts;     /* every point (prior, earlier runs, this run) */
    size_t *known;       /* indices of points in this search's set */
    size_t nknown;
    hma_eval_fn fn;
    void *user;
    int kind;
    size_t run;
    rng r;
    double *scores;      /* ns scratch */
    double *work;        /* projection scratch, 2K */
    double *tlo, *thi;   /* trust-region bounds */
    double *cand, *bestc, *tmp, *tmp2; /* K scratch each */
} sctx;

static double maxdist(size_t k, const double *a, const double *b) {
    double d = 0;
    for (size_t i = 0; i < k; i++) {
        double e = fabs(a[i] - b[i]);
        if (e > d) d = e;
    }
    return d;
}

/* Distance (max norm) from x to the nearest point of the whole list. */
static double nearest(const sctx *c, const double *x) {
    double d = INFINITY;
    for (size_t i = 0; i < c->pts->n; i++) {
        double e = maxdist(c->k, x, c->pts->ratios + i * c->k);
        if (e < d) d = e;
    }
    return d;
}

/* Euclidean distance to the nearest known point (for space filling). */
static double nearest_l2(const sctx *c, const double *x) {
    double d = INFINITY;
    for (size_t j = 0; j < c->nknown; j++) {
        const double *p = c->pts->ratios + c->known[j] * c->k;
        double s = 0;
        for (size_t i = 0; i < c->k; i++) s += (x[i] - p[i]) * (x[i] - p[i]);
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

/* Evaluate x (already in the set and not a duplicate) and record it. */
static int evaluate(sctx *c, const double *x) {
    size_t ns = c->pts->ns;
    for (size_t s = 0; s < ns; s++) c->scores[s] = NAN;
    int r = c->fn(c->user, c->k, x, ns, c->scores);
    if (r == HMA_EVAL_CANCEL)
        return hma__fail(HMA_ERR_CANCELLED, "hma_search: the evaluation callback cancelled the search after %zu points",
                         c->pts->n);
    if (r != 0)
        return hma__fail(HMA_ERR_CALLBACK, "hma_search: the evaluation callback returned %d (failure) after %zu points",
                         r, c->pts->n);
    int rc = points_add(c->pts, x, c->scores, c->kind, c->run);
    if (rc) return rc;
    c->known[c->nknown++] = c->pts->n - 1;
    return HMA_OK;
}

/* A random point of { sum = target, tlo <= a <= thi } into out. */
static void random_in(sctx *c, const double *lo, const double *hi, double *out) {
    for (size_t i = 0; i < c->k; i++) c->tmp2[i] = lo[i] + rng_unif(&c->r) * (hi[i] - lo[i]);
    project_core(c->k, c->tmp2, c->target, lo, hi, out, c->work);
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
        double d = maxdist(c->k, x, center) / (2.0 * r);
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
        project_core(c->k, c->tmp, c->target, c->tlo, c->thi, c->tmp, c->work);
        double move = maxdist(c->k, c->tmp, x);
        memcpy(x, c->tmp, c->k * sizeof(double));
        double f = model_eval(c, m, x, center, scale, z, gz, gx);
        if (move <= 1e-15 * fmax(1.0, c->span) || fabs(fprev - f) <= 1e-15 * fmax(1.0, fabs(f))) break;
        fprev = f;
    }
}

static size_t best_known(const sctx *c) {
    size_t best = (size_t)-1;
    for (size_t j = 0; j < c->nknown; j++) {
        size_t i = c->known[j];
        if (isnan(c->pts->obj[i])) continue;
        if (best == (size_t)-1 || c->pts->obj[i] < c->pts->obj[best]) best = i;
    }
    return best;
}

static void set_tr(sctx *c, const double *center, double r) {
    for (size_t i = 0; i < c->k; i++) {
        c->tlo[i] = fmax(c->lo[i], center[i] - r);
        c->thi[i] = fmin(c->hi[i], center[i] + r);
    }
}

/* The search proper, appending to c->pts. */
static int search_run(sctx *c, size_t budget, const double *start) {
    size_t k = c->k, n = c->n, done = 0;
    int rc;
    /* 1. the centre (or the caller's start) */
    for (size_t i = 0; i < k; i++) c->tmp2[i] = start ? start[i] : c->mean;
    project_core(k, c->tmp2, c->target, c->lo, c->hi, c->bestc, c->work);
    if (nearest(c, c->bestc) > c->tol) {
        if ((rc = evaluate(c, c->bestc))) return rc;
        done++;
    }
    if (n == 0 || c->span <= c->tol) return HMA_OK; /* a single point */
    /* 2. maximin space-filling design */
    size_t n0 = n + 2, q = budget / 4 > 4 ? budget / 4 : 4;
    if (q < n0) n0 = q;
    size_t ncand = 64 + 16 * k;
    while (done < budget && c->nknown < n0) {
        double d = spacefill(c, c->lo, c->hi, ncand, c->cand);
        if (d < 0) break;
        if ((rc = evaluate(c, c->cand))) return rc;
        done++;
    }
    /* 3. trust-region steps on the surrogate */
    model m = {0};
    m.coef = hma__calloc(1 + n + n * (n + 1) / 2 + 2 * n + n * n + 2 * k, sizeof(double));
    if (!m.coef) return hma__fail(HMA_ERR_NO_MEMORY, "hma_search: out of memory (K = %zu)", k);
    m.g = m.coef + 1 + n + n * (n + 1) / 2;
    m.H = m.g + n;
    double *z = m.H + n * n, *gz = z + n, *gx = gz + n;
    double r0 = 0.25 * c->span, r = r0, rmin = fmax(4.0 * c->tol, 1e-9 * c->span);
    int stalls = 0;
    rc = HMA_OK;
    while (done < budget) {
        size_t ib = best_known(c);
        int have = 0;
        if (ib != (size_t)-1) {
            const double *xb = c->pts->ratios + ib * k;
            double fbest = c->pts->obj[ib];
            set_tr(c, xb, r);
            int fitted = 0;
            if ((rc = fit_model(c, xb, c->span, r, &m, &fitted))) break;
            if (fitted) {
                memcpy(c->cand, xb, k * sizeof(double));
                model_minimise(c, &m, xb, c->span, r, c->cand, z, gz, gx);
                have = nearest(c, c->cand) > c->tol;
            }
            if (!have) { /* model stuck on a known point: sample the trust region instead */
                have = spacefill(c, c->tlo, c->thi, ncand, c->cand) >= 0;
            }
            if (have) {
                if ((rc = evaluate(c, c->cand))) break;
                done++;
                double fnew = c->pts->obj[c->pts->n - 1];
                if (!isnan(fnew) && fnew < fbest) {
                    r = fmin(2.0 * r, c->span);
                    stalls = 0;
                } else if ((r *= 0.5) < rmin) {
                    r = r0; /* converged here: restart wide */
                    stalls++;
                }
                continue;
            }
        }
        /* no usable model or trust region exhausted: explore the whole set */
        double d = spacefill(c, c->lo, c->hi, 4 * ncand, c->cand);
        if (d < 0) {
            if (++stalls > 3) break; /* no distinct vector left to find */
            r = r0;
            continue;
        }
        if ((rc = evaluate(c, c->cand))) break;
        done++;
    }
    hma__free(m.coef);
    return rc;
}

static int check_search_opts(const hma_search_options *o, const char *fn) {
    if (!o) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: options are NULL", fn);
    if (o->struct_size < offsetof(hma_search_options, prior) + sizeof(o->prior) || o->struct_size > sizeof *o)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: options struct_size %zu (expected %zu; use hma_search_options_init)",
                         fn, o->struct_size, sizeof *o);
    if (o->k == 0 || o->budget == 0 || o->n_scores == 0)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: k, budget and n_scores must all be >= 1 (got %zu, %zu, %zu)",
                         fn, o->k, o->budget, o->n_scores);
    if (!(o->tolerance >= 0) || !isfinite(o->tolerance))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: tolerance %g (expected finite >= 0)", fn, o->tolerance);
    if (o->k > (SIZE_MAX / sizeof(double)) / 64 || o->n_scores > SIZE_MAX / 64 || o->budget > SIZE_MAX / 4)
        return hma__fail(HMA_ERR_OVERFLOW, "%s: k, n_scores or budget too large", fn);
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
    hma__free(c->scores);
}

/* Set up a context for options o and mean `mean` over point list pts. */
static int sctx_init(sctx *c, const hma_search_options *o, double mean, hma_points *pts, size_t extra) {
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
    c->scores = hma__malloc(o->n_scores * sizeof(double));
    if (!c->lo || !c->known || !c->scores) {
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
    int rc = check_bounds("hma_search", k, mean, c->lo, c->hi);
    if (rc) {
        sctx_free(c);
        return rc;
    }
    for (size_t i = 0; i < pts->n; i++)
        if (in_set(c, pts->ratios + i * k)) c->known[c->nknown++] = i;
    rng_seed(&c->r, o->seed);
    return HMA_OK;
}

int hma_search(const hma_search_options *opts, hma_eval_fn fn, void *user, hma_points **out) {
    if (out) *out = NULL;
    if (!out || !fn) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_search: out or fn is NULL");
    int rc = check_search_opts(opts, "hma_search");
    if (rc) return rc;
    hma_search_options o;
    memset(&o, 0, sizeof o);
    memcpy(&o, opts, opts->struct_size);
    if (o.prior && (o.prior->k != o.k || o.prior->ns != o.n_scores))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_search: prior points have k = %zu, %zu scores (expected %zu, %zu)",
                         o.prior->k, o.prior->ns, o.k, o.n_scores);
    hma_points *pts = points_new(o.k, o.n_scores, o.weights);
    if (!pts) return hma__fail(HMA_ERR_NO_MEMORY, "hma_search: out of memory");
    sctx c;
    if ((rc = sctx_init(&c, &o, o.mean, pts, (o.prior ? o.prior->n : 0) + o.budget))) {
        hma_points_free(pts);
        return rc;
    }
    if (o.prior)
        for (size_t i = 0; i < o.prior->n && !rc; i++) {
            const double *x = o.prior->ratios + i * o.k;
            if (!in_set(&c, x) || nearest(&c, x) <= c.tol) continue;
            if (!(rc = points_add(pts, x, o.prior->scores + i * o.n_scores, HMA_POINT_PRIOR, 0)))
                c.known[c.nknown++] = pts->n - 1;
        }
    c.fn = fn;
    c.user = user;
    c.kind = HMA_POINT_SEARCH;
    if (!rc) rc = search_run(&c, o.budget, o.start);
    sctx_free(&c);
    if (rc && rc != HMA_ERR_CANCELLED && rc != HMA_ERR_CALLBACK) {
        hma_points_free(pts);
        return rc;
    }
    *out = pts;
    return rc;
}

/* ======================================================================= */
/* Pareto fronts                                                           */
/* ======================================================================= */

typedef struct pf_item {
    double x, y; /* both turned lower-is-better */
    size_t i;
} pf_item;

static int pf_cmp(const void *a, const void *b) {
    const pf_item *p = a, *q = b;
    if (p->x != q->x) return p->x < q->x ? -1 : 1;
    if (p->y != q->y) return p->y < q->y ? -1 : 1;
    return (p->i > q->i) - (p->i < q->i);
}

static int pareto_impl(size_t n, const double *x, const double *y, unsigned flags, size_t *idx, size_t *n_front,
                       size_t xstride, size_t ystride) {
    if (!n_front || (n > 0 && (!x || !y || !idx)))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_pareto_front: NULL argument");
    if (flags & ~(unsigned)(HMA_PARETO_MAX_X | HMA_PARETO_MAX_Y))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_pareto_front: unknown flags 0x%x", flags);
    if (n > SIZE_MAX / sizeof(pf_item)) return hma__fail(HMA_ERR_OVERFLOW, "hma_pareto_front: too many points");
    pf_item *it = hma__malloc((n ? n : 1) * sizeof *it);
    if (!it) return hma__fail(HMA_ERR_NO_MEMORY, "hma_pareto_front: out of memory for %zu points", n);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        double xv = x[i * xstride], yv = y[i * ystride];
        if (!isfinite(xv) || !isfinite(yv)) continue;
        it[m].x = (flags & HMA_PARETO_MAX_X) ? -xv : xv;
        it[m].y = (flags & HMA_PARETO_MAX_Y) ? -yv : yv;
        it[m].i = i;
        m++;
    }
    /* Sorted by (x, y, index): a point is on the front iff its y is strictly
     * below every y seen before it (an equal y before it means it is dominated
     * or a later duplicate). */
    qsort(it, m, sizeof *it, pf_cmp);
    size_t nf = 0;
    double ymin = INFINITY;
    for (size_t j = 0; j < m; j++)
        if (it[j].y < ymin) {
            ymin = it[j].y;
            idx[nf++] = it[j].i;
        }
    hma__free(it);
    /* Order by the raw first score (insertion sort: fronts are short). */
    for (size_t a = 1; a < nf; a++) {
        size_t v = idx[a], b = a;
        while (b > 0) {
            size_t u = idx[b - 1];
            double xu = x[u * xstride], xv = x[v * xstride];
            if (xu < xv || (xu == xv && u < v)) break;
            idx[b] = u;
            b--;
        }
        idx[b] = v;
    }
    *n_front = nf;
    return HMA_OK;
}

int hma_pareto_front(size_t n, const double *x, const double *y, unsigned flags, size_t *idx, size_t *n_front) {
    return pareto_impl(n, x, y, flags, idx, n_front, 1, 1);
}

int hma_points_pareto(const hma_points *p, size_t sx, size_t sy, unsigned flags, size_t *idx, size_t *n_front) {
    if (!p || sx >= p->ns || sy >= p->ns)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_points_pareto: NULL list or score index out of range (%zu scores)",
                         p ? p->ns : 0);
    if (p->n == 0) {
        if (!n_front) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_points_pareto: n_front is NULL");
        *n_front = 0;
        return HMA_OK;
    }
    return pareto_impl(p->n, p->scores + sx, p->scores + sy, flags, idx, n_front, p->ns, p->ns);
}

/* ======================================================================= */
/* Sweep                                                                   */
/* ======================================================================= */

void hma_sweep_options_init(hma_sweep_options *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    hma_search_options_init(&o->search);
}

int hma_sweep(const hma_sweep_options *opts, hma_eval_fn fn, void *user, hma_points **out) {
    if (out) *out = NULL;
    if (!opts || !out || !fn) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_sweep: NULL argument");
    if (opts->struct_size != sizeof *opts)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_sweep: options struct_size %zu (expected %zu; use hma_sweep_options_init)",
                         opts->struct_size, sizeof *opts);
    if ((opts->n_ma && !opts->ma_ratios) || (opts->n_means && !opts->hma_means))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_sweep: ma_ratios or hma_means NULL with a nonzero count");
    int rc = check_search_opts(&opts->search, "hma_sweep");
    if (rc) return rc;
    const hma_search_options *so = &opts->search;
    size_t k = so->k;
    for (size_t i = 0; i < opts->n_ma; i++)
        if (!isfinite(opts->ma_ratios[i]))
            return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_sweep: ma_ratios[%zu] is not finite", i);
    for (size_t i = 0; i < opts->n_means; i++) {
        if (!isfinite(opts->hma_means[i]))
            return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_sweep: hma_means[%zu] is not finite", i);
    }
    if (opts->n_means > SIZE_MAX / (so->budget + 1) - opts->n_ma - 1)
        return hma__fail(HMA_ERR_OVERFLOW, "hma_sweep: too many evaluations");
    size_t total = opts->n_ma + opts->n_means * so->budget;
    hma_points *pts = points_new(k, so->n_scores, so->weights);
    double *vec = hma__malloc(k * sizeof(double));
    double *sc = hma__malloc(so->n_scores * sizeof(double));
    if (!pts || !vec || !sc) {
        hma_points_free(pts);
        hma__free(vec);
        hma__free(sc);
        return hma__fail(HMA_ERR_NO_MEMORY, "hma_sweep: out of memory");
    }
    /* Check every search's bounds before evaluating anything. */
    for (size_t i = 0; i < opts->n_means && !rc; i++) {
        sctx c;
        if (!(rc = sctx_init(&c, so, opts->hma_means[i], pts, 0))) sctx_free(&c);
    }
    for (size_t i = 0; i < opts->n_ma && !rc; i++) {
        for (size_t j = 0; j < k; j++) vec[j] = opts->ma_ratios[i];
        int dup = 0;
        for (size_t p = 0; p < pts->n && !dup; p++) dup = maxdist(k, vec, pts->ratios + p * k) <= so->tolerance;
        if (dup) continue;
        for (size_t s = 0; s < so->n_scores; s++) sc[s] = NAN;
        int r = fn(user, k, vec, so->n_scores, sc);
        if (r == HMA_EVAL_CANCEL) rc = hma__fail(HMA_ERR_CANCELLED, "hma_sweep: the evaluation callback cancelled at MA ratio %g", vec[0]);
        else if (r) rc = hma__fail(HMA_ERR_CALLBACK, "hma_sweep: the evaluation callback returned %d at MA ratio %g", r, vec[0]);
        else rc = points_add(pts, vec, sc, HMA_POINT_MA, i);
    }
    for (size_t i = 0; i < opts->n_means && !rc; i++) {
        sctx c;
        if ((rc = sctx_init(&c, so, opts->hma_means[i], pts, total))) break;
        c.fn = fn;
        c.user = user;
        c.kind = HMA_POINT_SEARCH;
        c.run = i;
        rng_seed(&c.r, so->seed + i);
        rc = search_run(&c, so->budget, NULL);
        sctx_free(&c);
    }
    hma__free(vec);
    hma__free(sc);
    if (rc && rc != HMA_ERR_CANCELLED && rc != HMA_ERR_CALLBACK) {
        hma_points_free(pts);
        return rc;
    }
    *out = pts;
    return rc;
}
