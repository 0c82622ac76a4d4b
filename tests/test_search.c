/* test_search.c - the ratio parametrisation, the SGD/Adam step, the exact
 * projection, the derivative-free search, Pareto fronts and the sweep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hma.h"
#include "testutil.h"

/* FNV-1a of the proposals of test_search_proposals_pinned(). */
#define PINNED_PROPOSALS 0x47eda956e01be3e0ull

/* ---- independent reference of the parametrisation ------------------------ */

static double ref_sig(double x) { return 1.0 / (1.0 + exp(-x)); }

static void ref_ratios(size_t k, const double *l, double a, double eps, double *out) {
    double S = 0;
    for (size_t i = 0; i < k; i++) S += ref_sig(l[i]) + eps;
    for (size_t i = 0; i < k; i++) out[i] = a * (double)k * (ref_sig(l[i]) + eps) / S;
}

static uint64_t tstate = 12345;
static double trand(void) { /* LCG for test inputs only */
    tstate = tstate * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(tstate >> 11) * 0x1.0p-53;
}

static void test_ratios_mean_and_reference(void **st) {
    (void)st;
    double l[9], r[9], e[9];
    size_t ks[] = {1, 2, 3, 5, 9};
    double eps[] = {0.2, 0.05, 1.0}, means[] = {0.5, 0.3, 1.25, -0.4};
    for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 3; b++)
            for (size_t c = 0; c < 4; c++) {
                size_t k = ks[a];
                for (size_t i = 0; i < k; i++) l[i] = 6 * trand() - 3;
                assert_int_equal(hma_ratios_from_logits(k, l, means[c], eps[b], r), HMA_OK);
                ref_ratios(k, l, means[c], eps[b], e);
                double s = 0;
                for (size_t i = 0; i < k; i++) {
                    assert_true(fabs(r[i] - e[i]) <= 1e-14);
                    s += r[i];
                }
                assert_true(fabs(s / (double)k - means[c]) <= 1e-14);
            }
    assert_int_equal(hma_ratios_from_logits(0, l, 0.5, 0.2, r), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_ratios_from_logits(3, l, 0.5, 0.0, r), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_ratios_from_logits(3, l, NAN, 0.2, r), HMA_ERR_INVALID_ARGUMENT);
    l[1] = NAN;
    assert_int_equal(hma_ratios_from_logits(3, l, 0.5, 0.2, r), HMA_ERR_INVALID_ARGUMENT);
}

static void test_jacobian_vs_finite_differences(void **st) {
    (void)st;
    size_t ks[] = {1, 2, 3, 4, 7};
    double eps[] = {0.2, 0.05, 2.0}, means[] = {0.5, 0.1, 1.3};
    double l[7], lp[7], rp[7], rm[7], J[49], g[7], gl[7];
    for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 3; b++)
            for (size_t c = 0; c < 3; c++) {
                size_t k = ks[a];
                for (size_t i = 0; i < k; i++) l[i] = 8 * trand() - 4;
                assert_int_equal(hma_ratios_jacobian(k, l, means[c], eps[b], J), HMA_OK);
                double h = 1e-5;
                for (size_t j = 0; j < k; j++) {
                    memcpy(lp, l, sizeof l);
                    lp[j] = l[j] + h;
                    ref_ratios(k, lp, means[c], eps[b], rp);
                    lp[j] = l[j] - h;
                    ref_ratios(k, lp, means[c], eps[b], rm);
                    double colsum = 0;
                    for (size_t i = 0; i < k; i++) {
                        double fd = (rp[i] - rm[i]) / (2 * h);
                        assert_true(fabs(fd - J[i * k + j]) <= 1e-8 * (1 + fabs(fd)));
                        colsum += J[i * k + j];
                    }
                    assert_true(fabs(colsum) <= 1e-14);
                }
                /* the chain rule matches J^T g */
                for (size_t i = 0; i < k; i++) g[i] = 2 * trand() - 1;
                assert_int_equal(hma_logits_gradient(k, l, means[c], eps[b], g, gl), HMA_OK);
                for (size_t j = 0; j < k; j++) {
                    double s = 0;
                    for (size_t i = 0; i < k; i++) s += g[i] * J[i * k + j];
                    assert_true(fabs(s - gl[j]) <= 1e-14 * (1 + fabs(s)));
                }
            }
    assert_int_equal(hma_ratios_jacobian((size_t)1 << 40, l, 0.5, 0.2, J), HMA_ERR_OVERFLOW);
    assert_int_equal(hma_ratios_jacobian(3, l, 0.5, 0.2, NULL), HMA_ERR_INVALID_ARGUMENT);
}

static void test_logits_ratios_round_trip(void **st) {
    (void)st;
    double l[6], r[6], l2[6], r2[6], mean;
    /* equal ratios give zero logits */
    double eq[4] = {0.3, 0.3, 0.3, 0.3};
    assert_int_equal(hma_logits_from_ratios(4, eq, 0.2, l, &mean), HMA_OK);
    assert_true(fabs(mean - 0.3) < 1e-15);
    for (int i = 0; i < 4; i++) assert_true(fabs(l[i]) < 1e-12);
    for (int rep = 0; rep < 50; rep++) {
        size_t k = 1 + (size_t)(trand() * 6);
        double eps = rep % 2 ? 0.2 : 0.5, a = 0.1 + trand();
        for (size_t i = 0; i < k; i++) l[i] = 6 * trand() - 3;
        assert_int_equal(hma_ratios_from_logits(k, l, a, eps, r), HMA_OK);
        /* ratios -> logits -> ratios: the same ratios (the logits may differ) */
        assert_int_equal(hma_logits_from_ratios(k, r, eps, l2, &mean), HMA_OK);
        assert_true(fabs(mean - a) <= 1e-14);
        assert_int_equal(hma_ratios_from_logits(k, l2, mean, eps, r2), HMA_OK);
        for (size_t i = 0; i < k; i++) assert_true(fabs(r2[i] - r[i]) <= 1e-12);
    }
    /* unreachable: spread (1 + eps) / eps = 6 or more, mixed signs, zero mean */
    double far[2] = {0.1, 0.7}, mixed[3] = {-0.1, 0.5, 0.5}, zero[2] = {0.5, -0.5};
    assert_int_equal(hma_logits_from_ratios(2, far, 0.2, l, NULL), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_logits_from_ratios(3, mixed, 0.2, l, NULL), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_logits_from_ratios(2, zero, 0.2, l, NULL), HMA_ERR_INVALID_ARGUMENT);
    /* reachable with a smaller eps ((1 + eps) / eps = 11 > 7) */
    assert_int_equal(hma_logits_from_ratios(2, far, 0.1, l, NULL), HMA_OK);
    assert_int_equal(hma_ratios_from_logits(2, l, 0.4, 0.1, r), HMA_OK);
    assert_true(fabs(r[0] - 0.1) < 1e-12 && fabs(r[1] - 0.7) < 1e-12);
}

/* ---- optimizer ----------------------------------------------------------- */

/* Hand computation of g_l for K = 2: a_i = 2a u_i / S. */
static void hand_grad(const double l[2], double a, double eps, double pen, const double g[2], double out[2]) {
    double s0 = ref_sig(l[0]), s1 = ref_sig(l[1]);
    double u0 = s0 + eps, u1 = s1 + eps, S = u0 + u1;
    double a0 = 2 * a * u0 / S, a1 = 2 * a * u1 / S;
    double ga0 = g[0] + pen * (a0 > a ? 1 : (a0 < a ? -1 : 0));
    double ga1 = g[1] + pen * (a1 > a ? 1 : (a1 < a ? -1 : 0));
    /* d a0/d l0 = 2a g0 (S - u0)/S^2 = 2a g0 u1/S^2; d a1/d l0 = -2a g0 u1 / S^2 ... */
    double d0 = s0 * (1 - s0), d1 = s1 * (1 - s1);
    out[0] = 2 * a * d0 * (ga0 * u1 - ga1 * u1) / (S * S);
    out[1] = 2 * a * d1 * (ga1 * u0 - ga0 * u0) / (S * S);
}

static void test_sgd_step_by_hand(void **st) {
    (void)st;
    hma_ratio_opt_options o;
    hma_ratio_opt_options_init(&o);
    o.method = HMA_OPT_SGD;
    o.lr = 0.5;
    o.mean = 0.4;
    o.penalty = 0.1;
    o.momentum = 0.9;
    double l0[2] = {0.3, -0.4}, g[2] = {1.0, -2.0}, l[2], r[2], hg[2], exp_l[2], buf[2];
    hma_ratio_opt *opt = NULL;
    assert_int_equal(hma_ratio_opt_create(&opt, 2, l0, &o), HMA_OK);
    assert_int_equal(hma_ratio_opt_k(opt), 2);
    /* step 1: v = g */
    hand_grad(l0, 0.4, 0.2, 0.1, g, hg);
    for (int i = 0; i < 2; i++) {
        buf[i] = hg[i];
        exp_l[i] = l0[i] - 0.5 * buf[i];
    }
    assert_int_equal(hma_ratio_opt_step(opt, g, l, r), HMA_OK);
    for (int i = 0; i < 2; i++) assert_true(fabs(l[i] - exp_l[i]) < 1e-15);
    double er[2];
    ref_ratios(2, exp_l, 0.4, 0.2, er);
    for (int i = 0; i < 2; i++) assert_true(fabs(r[i] - er[i]) < 1e-15);
    /* step 2: v = 0.9 v + g */
    double prev[2] = {exp_l[0], exp_l[1]};
    hand_grad(prev, 0.4, 0.2, 0.1, g, hg);
    for (int i = 0; i < 2; i++) {
        buf[i] = 0.9 * buf[i] + hg[i];
        exp_l[i] = prev[i] - 0.5 * buf[i];
    }
    assert_int_equal(hma_ratio_opt_step(opt, g, l, NULL), HMA_OK);
    for (int i = 0; i < 2; i++) assert_true(fabs(l[i] - exp_l[i]) < 1e-15);
    assert_int_equal(hma_ratio_opt_steps(opt), 2);
    /* a non-finite gradient leaves the state alone */
    double bad[2] = {NAN, 0};
    assert_int_equal(hma_ratio_opt_step(opt, bad, l, NULL), HMA_ERR_NONFINITE);
    assert_int_equal(hma_ratio_opt_get(opt, l, NULL), HMA_OK);
    for (int i = 0; i < 2; i++) assert_true(fabs(l[i] - exp_l[i]) < 1e-15);
    hma_ratio_opt_free(opt);
    hma_ratio_opt_free(NULL);
}

static void test_adam_step_by_hand(void **st) {
    (void)st;
    hma_ratio_opt_options o;
    hma_ratio_opt_options_init(&o);
    assert_int_equal(o.method, HMA_OPT_ADAM);
    o.lr = 0.01;
    o.mean = 0.6;
    double g1[2] = {0.5, -0.25}, g2[2] = {-1.0, 3.0}, out[2], hg[2];
    double m[2] = {0, 0}, v[2] = {0, 0}, cur[2] = {0, 0};
    hma_ratio_opt *opt = NULL;
    assert_int_equal(hma_ratio_opt_create(&opt, 2, NULL, &o), HMA_OK);
    const double *gs[2] = {g1, g2};
    for (int t = 1; t <= 2; t++) {
        hand_grad(cur, 0.6, 0.2, 0.0, gs[t - 1], hg);
        for (int i = 0; i < 2; i++) {
            m[i] = 0.9 * m[i] + 0.1 * hg[i];
            v[i] = 0.999 * v[i] + 0.001 * hg[i] * hg[i];
            double mh = m[i] / (1 - pow(0.9, t)), vh = v[i] / (1 - pow(0.999, t));
            cur[i] -= 0.01 * mh / (sqrt(vh) + 1e-8);
        }
        assert_int_equal(hma_ratio_opt_step(opt, gs[t - 1], out, NULL), HMA_OK);
        for (int i = 0; i < 2; i++) assert_true(fabs(out[i] - cur[i]) < 1e-12);
    }
    hma_ratio_opt_free(opt);
    /* option checks */
    o.method = 7;
    assert_int_equal(hma_ratio_opt_create(&opt, 2, NULL, &o), HMA_ERR_INVALID_ARGUMENT);
    hma_ratio_opt_options_init(&o);
    o.beta1 = 1.0;
    assert_int_equal(hma_ratio_opt_create(&opt, 2, NULL, &o), HMA_ERR_INVALID_ARGUMENT);
    hma_ratio_opt_options_init(&o);
    o.struct_size = 8;
    assert_int_equal(hma_ratio_opt_create(&opt, 2, NULL, &o), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_ratio_opt_create(&opt, 0, NULL, NULL), HMA_ERR_INVALID_ARGUMENT);
}

/* ---- projection ---------------------------------------------------------- */

static void ref_project(size_t k, const double *y, double S, const double *lo, const double *hi, double *out) {
    double a = -1e3, b = 1e3; /* bisection on the shift */
    for (int it = 0; it < 200; it++) {
        double t = 0.5 * (a + b), s = 0;
        for (size_t i = 0; i < k; i++) s += fmin(hi[i], fmax(lo[i], y[i] - t));
        if (s > S) a = t;
        else b = t;
    }
    for (size_t i = 0; i < k; i++) out[i] = fmin(hi[i], fmax(lo[i], y[i] - 0.5 * (a + b)));
}

static void test_projection_exact(void **st) {
    (void)st;
    double y[12], lo[12], hi[12], out[12], ref[12];
    for (int rep = 0; rep < 300; rep++) {
        size_t k = 1 + (size_t)(trand() * 12);
        double slo = 0, shi = 0;
        for (size_t i = 0; i < k; i++) {
            lo[i] = trand() * 0.5 - (rep % 3 == 0 ? 0.3 : 0);
            hi[i] = lo[i] + (rep % 7 == 0 && i == 0 ? 0 : trand());
            y[i] = 3 * trand() - 1;
            slo += lo[i];
            shi += hi[i];
        }
        double mean = (slo + trand() * (shi - slo)) / (double)k;
        assert_int_equal(hma_project_ratios(k, y, mean, lo, hi, out), HMA_OK);
        ref_project(k, y, mean * (double)k, lo, hi, ref);
        double s = 0;
        for (size_t i = 0; i < k; i++) {
            assert_true(out[i] >= lo[i] && out[i] <= hi[i]);
            assert_true(fabs(out[i] - ref[i]) < 1e-9);
            s += out[i];
        }
        assert_true(fabs(s / (double)k - mean) <= 1e-12 * fmax(1, fabs(mean)));
    }
    lo[0] = 0;
    hi[0] = 1;
    lo[1] = 0;
    hi[1] = 1;
    y[0] = y[1] = 0;
    assert_int_equal(hma_project_ratios(2, y, 1.5, lo, hi, out), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_project_ratios(2, y, 1.0, lo, hi, out), HMA_OK);
    assert_true(out[0] == 1 && out[1] == 1);
    hi[1] = -1;
    assert_int_equal(hma_project_ratios(2, y, 0.0, lo, hi, out), HMA_ERR_INVALID_ARGUMENT);
}

/* ---- search -------------------------------------------------------------- */

typedef struct qobj {
    size_t k;
    double t[8], w[8];
    size_t calls, cancel_at, fail_at;
    double log[64][8];
} qobj;

static int quad_eval(void *user, size_t k, const double *r, size_t ns, double *sc) {
    qobj *q = user;
    assert_int_equal(k, q->k);
    q->calls++;
    if (q->cancel_at && q->calls == q->cancel_at) return HMA_CANCEL;
    if (q->fail_at && q->calls == q->fail_at) return 42;
    if (q->calls <= 64) memcpy(q->log[q->calls - 1], r, k * sizeof(double));
    double f = 0;
    for (size_t i = 0; i < k; i++) f += q->w[i] * (r[i] - q->t[i]) * (r[i] - q->t[i]);
    sc[0] = f;
    if (ns > 1) sc[1] = -f;
    for (size_t s = 2; s < ns; s++) sc[s] = (double)s;
    return 0;
}

/* KKT of min sum w (a - t)^2 s.t. sum a = S, lo <= a <= hi: a_i = clamp(t_i - nu/(2 w_i)). */
static void quad_opt(const qobj *q, double S, double lo, double hi, double *out) {
    double a = -1e3, b = 1e3;
    for (int it = 0; it < 300; it++) {
        double nu = 0.5 * (a + b), s = 0;
        for (size_t i = 0; i < q->k; i++) s += fmin(hi, fmax(lo, q->t[i] - nu / (2 * q->w[i])));
        if (s > S) a = nu;
        else b = nu;
    }
    for (size_t i = 0; i < q->k; i++) out[i] = fmin(hi, fmax(lo, q->t[i] - 0.5 * (a + b) / (2 * q->w[i])));
}

static void check_points(const hma_points *p, size_t k, double mean, double lo, double hi, double tol) {
    size_t n = hma_points_count(p);
    for (size_t i = 0; i < n; i++) {
        const double *r = hma_points_ratios(p, i);
        double s = 0;
        for (size_t j = 0; j < k; j++) {
            assert_true(r[j] >= lo && r[j] <= hi);
            s += r[j];
        }
        assert_true(fabs(s / (double)k - mean) <= 1e-12 * fmax(1, fabs(mean)));
        for (size_t m = 0; m < i; m++) {
            const double *q = hma_points_ratios(p, m);
            double d = 0;
            for (size_t j = 0; j < k; j++) d = fmax(d, fabs(q[j] - r[j]));
            assert_true(d > tol);
        }
    }
}

static void test_search_quadratic_reaches_optimum(void **st) {
    (void)st;
    struct {
        size_t k;
        double mean, lo, hi;
        size_t budget;
    } cases[] = {{3, 0.5, 0.0, 1.0, 40}, {3, 0.3, 0.1, 0.6, 40}, {4, 0.6, 0.0, 1.0, 40}, {5, 0.5, 0.2, 0.9, 50}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        qobj q;
        memset(&q, 0, sizeof q);
        q.k = cases[c].k;
        for (size_t i = 0; i < q.k; i++) {
            q.t[i] = 0.2 + 0.7 * trand();
            q.w[i] = 0.5 + 2 * trand();
        }
        q.t[0] = 0.95; /* push one coordinate against a bound */
        hma_search_options o;
        hma_search_options_init(&o);
        o.k = q.k;
        o.mean = cases[c].mean;
        o.lo = cases[c].lo;
        o.hi = cases[c].hi;
        o.budget = cases[c].budget;
        o.seed = 7 + c;
        hma_points *p = NULL;
        assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_OK);
        assert_int_equal(q.calls, o.budget);
        assert_int_equal(hma_points_count(p), o.budget);
        check_points(p, q.k, o.mean, o.lo, o.hi, o.tolerance);
        double opt[8], fopt = 0;
        quad_opt(&q, o.mean * (double)q.k, o.lo, o.hi, opt);
        for (size_t i = 0; i < q.k; i++) fopt += q.w[i] * (opt[i] - q.t[i]) * (opt[i] - q.t[i]);
        size_t b = hma_points_best(p);
        assert_true(b < hma_points_count(p));
        const double *rb = hma_points_ratios(p, b);
        double d = 0;
        for (size_t i = 0; i < q.k; i++) d = fmax(d, fabs(rb[i] - opt[i]));
        double fb = hma_points_scores(p, b)[0];
        assert_true(d < 1e-3);
        assert_true(fb - fopt < 1e-5);
        /* the first point is the centre: the plain MA at this mean */
        double f0 = hma_points_scores(p, 0)[0];
        assert_true(fb < f0);
        hma_point_kind kind;
        size_t run;
        assert_int_equal(hma_points_info(p, 0, &kind, &run), HMA_OK);
        assert_int_equal(kind, HMA_POINT_SEARCH);
        hma_points_free(p);
    }
}

static void test_search_deterministic_and_seeded(void **st) {
    (void)st;
    qobj q1, q2;
    memset(&q1, 0, sizeof q1);
    q1.k = 4;
    for (size_t i = 0; i < 4; i++) {
        q1.t[i] = trand();
        q1.w[i] = 1 + trand();
    }
    q2 = q1;
    hma_search_options o;
    hma_search_options_init(&o);
    o.k = 4;
    o.budget = 25;
    o.seed = 99;
    o.n_scores = 3;
    double w[3] = {1, 0.5, 0};
    o.weights = w;
    hma_points *a = NULL, *b = NULL;
    assert_int_equal(hma_search(&o, quad_eval, &q1, &a), HMA_OK);
    assert_int_equal(hma_search(&o, quad_eval, &q2, &b), HMA_OK);
    assert_int_equal(hma_points_count(a), 25);
    assert_int_equal(hma_points_count(b), 25);
    assert_int_equal(hma_points_n_scores(a), 3);
    for (size_t i = 0; i < 25; i++) {
        assert_memory_equal(hma_points_ratios(a, i), hma_points_ratios(b, i), 4 * sizeof(double));
        assert_memory_equal(hma_points_scores(a, i), hma_points_scores(b, i), 3 * sizeof(double));
    }
    assert_int_equal(hma_points_best(a), hma_points_best(b));
    /* another seed proposes other vectors (beyond the shared centre) */
    qobj q3 = q1;
    q3.calls = 0;
    o.seed = 100;
    hma_points *c = NULL;
    assert_int_equal(hma_search(&o, quad_eval, &q3, &c), HMA_OK);
    int differ = 0;
    for (size_t i = 1; i < 25; i++)
        differ |= memcmp(hma_points_ratios(a, i), hma_points_ratios(c, i), 4 * sizeof(double)) != 0;
    assert_true(differ);
    assert_memory_equal(hma_points_ratios(a, 0), hma_points_ratios(c, 0), 4 * sizeof(double));
    hma_points_free(a);
    hma_points_free(b);
    hma_points_free(c);
}

static void test_search_budget_bounds_duplicates(void **st) {
    (void)st;
    for (size_t budget = 1; budget <= 30; budget += 7)
        for (size_t k = 2; k <= 6; k += 2) {
            qobj q;
            memset(&q, 0, sizeof q);
            q.k = k;
            for (size_t i = 0; i < k; i++) {
                q.t[i] = trand();
                q.w[i] = 1;
            }
            double lo[6], hi[6];
            for (size_t i = 0; i < k; i++) {
                lo[i] = 0.1 * (double)i / (double)k;
                hi[i] = 0.5 + 0.4 * trand();
            }
            hma_search_options o;
            hma_search_options_init(&o);
            o.k = k;
            o.mean = 0.35;
            o.lo_each = lo;
            o.hi_each = hi;
            o.budget = budget;
            o.tolerance = 1e-3;
            hma_points *p = NULL;
            assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_OK);
            assert_int_equal(q.calls, budget);
            assert_int_equal(hma_points_count(p), budget);
            for (size_t i = 0; i < budget; i++) {
                const double *r = hma_points_ratios(p, i);
                double s = 0;
                for (size_t j = 0; j < k; j++) {
                    assert_true(r[j] >= lo[j] && r[j] <= hi[j]);
                    s += r[j];
                }
                assert_true(fabs(s / (double)k - 0.35) <= 1e-12);
            }
            check_points(p, k, 0.35, 0, 1, 1e-3);
            hma_points_free(p);
        }
}

static void test_search_small_sets_end_early(void **st) {
    (void)st;
    qobj q;
    memset(&q, 0, sizeof q);
    q.k = 1;
    q.w[0] = 1;
    hma_search_options o;
    hma_search_options_init(&o);
    o.k = 1;
    o.budget = 10;
    hma_points *p = NULL;
    assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_OK);
    assert_int_equal(q.calls, 1);
    assert_int_equal(hma_points_count(p), 1);
    assert_true(hma_points_ratios(p, 0)[0] == 0.5);
    hma_points_free(p);
    /* lo == hi == mean: one vector */
    memset(&q, 0, sizeof q);
    q.k = 3;
    o.k = 3;
    o.lo = o.hi = 0.5;
    assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_OK);
    assert_int_equal(q.calls, 1);
    hma_points_free(p);
    /* a set only a little wider than the tolerance: a few distinct vectors, no repeats */
    memset(&q, 0, sizeof q);
    q.k = 2;
    o.k = 2;
    o.lo = 0.5 - 2e-3;
    o.hi = 0.5 + 2e-3;
    o.tolerance = 1e-3;
    o.budget = 30;
    assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_OK);
    assert_true(q.calls >= 2 && q.calls < 30);
    assert_int_equal(hma_points_count(p), q.calls);
    check_points(p, 2, 0.5, o.lo, o.hi, 1e-3);
    hma_points_free(p);
}

static void test_search_callback_stops_and_errors(void **st) {
    (void)st;
    qobj q;
    memset(&q, 0, sizeof q);
    q.k = 3;
    q.w[0] = q.w[1] = q.w[2] = 1;
    q.cancel_at = 5;
    hma_search_options o;
    hma_search_options_init(&o);
    o.k = 3;
    o.budget = 20;
    hma_points *p = NULL;
    assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_ERR_CANCELLED);
    assert_non_null(p);
    assert_int_equal(hma_points_count(p), 4);
    hma_points_free(p);
    memset(&q, 0, sizeof q);
    q.k = 3;
    q.fail_at = 2;
    assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_ERR_CALLBACK);
    assert_int_equal(hma_points_count(p), 1);
    hma_points_free(p);
    /* bad options leave *out NULL */
    p = (hma_points *)&q;
    o.mean = 1.5;
    assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_ERR_INVALID_ARGUMENT);
    assert_null(p);
    o.mean = 0.5;
    o.budget = 0;
    assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_ERR_INVALID_ARGUMENT);
    o.budget = 5;
    o.lo = 0.7;
    o.hi = 0.2;
    assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_ERR_INVALID_ARGUMENT);
    hma_search_options_init(&o);
    o.k = 3;
    o.struct_size = 16;
    assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_ERR_INVALID_ARGUMENT);
    hma_search_options_init(&o);
    assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_ERR_INVALID_ARGUMENT); /* k == 0 */
    o.k = 3;
    assert_int_equal(hma_search(&o, NULL, &q, &p), HMA_ERR_INVALID_ARGUMENT);
}

static void test_search_prior_not_reevaluated(void **st) {
    (void)st;
    qobj q;
    memset(&q, 0, sizeof q);
    q.k = 3;
    q.t[0] = 0.9;
    q.t[1] = 0.1;
    q.t[2] = 0.5;
    q.w[0] = q.w[1] = q.w[2] = 1;
    hma_search_options o;
    hma_search_options_init(&o);
    o.k = 3;
    o.budget = 8;
    hma_points *first = NULL, *second = NULL;
    assert_int_equal(hma_search(&o, quad_eval, &q, &first), HMA_OK);
    size_t calls1 = q.calls;
    o.prior = first;
    o.seed = 5;
    assert_int_equal(hma_search(&o, quad_eval, &q, &second), HMA_OK);
    assert_int_equal(q.calls - calls1, 8);
    assert_int_equal(hma_points_count(second), 16);
    for (size_t i = 0; i < 16; i++) {
        hma_point_kind kind;
        assert_int_equal(hma_points_info(second, i, &kind, NULL), HMA_OK);
        assert_int_equal(kind, i < 8 ? HMA_POINT_PRIOR : HMA_POINT_SEARCH);
    }
    check_points(second, 3, 0.5, 0, 1, o.tolerance);
    /* wrong shape of prior */
    hma_points *third = second;
    o.k = 2;
    assert_int_equal(hma_search(&o, quad_eval, &q, &third), HMA_ERR_INVALID_ARGUMENT);
    assert_null(third);
    hma_points_free(first);
    hma_points_free(second);
}

/* ---- Pareto -------------------------------------------------------------- */

static void front_of(size_t n, const double *x, const double *y, unsigned flags, const size_t *expect, size_t ne) {
    size_t idx[16], nf = 99;
    assert_int_equal(hma_pareto_front(n, x, y, flags, idx, &nf), HMA_OK);
    assert_int_equal(nf, ne);
    for (size_t i = 0; i < ne; i++) assert_int_equal(idx[i], expect[i]);
}

static void test_pareto_hand_made(void **st) {
    (void)st;
    /* a staircase with dominated points in between */
    double x1[] = {3, 1, 2, 2.5, 4, 1.5};
    double y1[] = {1, 5, 2, 3, 0.5, 4.5};
    size_t e1[] = {1, 5, 2, 0, 4};
    front_of(6, x1, y1, 0, e1, 5);
    /* single point; empty set */
    double x2[] = {7}, y2[] = {8};
    size_t e2[] = {0};
    front_of(1, x2, y2, 0, e2, 1);
    front_of(0, NULL, NULL, 0, NULL, 0);
    /* all dominated by one point */
    double x3[] = {2, 3, 1, 4}, y3[] = {2, 3, 1, 1};
    size_t e3[] = {2};
    front_of(4, x3, y3, 0, e3, 1);
    /* duplicates: the first index stays; ties on one axis: the better other axis wins */
    double x4[] = {1, 2, 1, 2, 2, 3}, y4[] = {3, 2, 3, 2, 2.5, 2};
    size_t e4[] = {0, 1};
    front_of(6, x4, y4, 0, e4, 2);
    /* higher-is-better flags: maximise x, minimise y; order stays by raw x */
    double x5[] = {1, 2, 3}, y5[] = {1, 2, 3};
    size_t e5a[] = {0, 1, 2}, e5b[] = {2}, e5c[] = {0};
    front_of(3, x5, y5, HMA_PARETO_MAX_X, e5a, 3);
    front_of(3, x5, y5, HMA_PARETO_MAX_X | HMA_PARETO_MAX_Y, e5b, 1);
    front_of(3, x5, y5, 0, e5c, 1);
    /* NaN and infinity never on the front */
    double x6[] = {NAN, 1, 0, -INFINITY}, y6[] = {0, 1, 2, 0};
    size_t e6[] = {2, 1};
    front_of(4, x6, y6, 0, e6, 2);
    size_t idx[4], nf;
    assert_int_equal(hma_pareto_front(3, x5, y5, 8, idx, &nf), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_pareto_front(3, NULL, y5, 0, idx, &nf), HMA_ERR_INVALID_ARGUMENT);
}

/* ---- sweep --------------------------------------------------------------- */

typedef struct sweep_user {
    size_t calls;
    double seen[128][3];
} sweep_user;

static int sweep_eval(void *user, size_t k, const double *r, size_t ns, double *sc) {
    sweep_user *u = user;
    assert_int_equal(k, 3);
    assert_int_equal(ns, 2);
    assert_true(u->calls < 128);
    memcpy(u->seen[u->calls++], r, 3 * sizeof(double));
    /* alignment loss falls with the ratios (esp. the top block), forgetting rises (esp. the bottom) */
    sc[0] = 1 - (0.5 * r[0] + 0.8 * r[1] + 1.2 * r[2]) / 2.5 + 0.1 * (r[0] - r[2]) * (r[0] - r[2]);
    sc[1] = 1.5 * r[0] * r[0] + r[1] * r[1] + 0.5 * r[2] * r[2];
    return 0;
}

static void test_sweep(void **st) {
    (void)st;
    hma_sweep_options o;
    hma_sweep_options_init(&o);
    double ma[] = {0.2, 0.4, 0.6, 0.8, 0.4};
    double means[] = {0.4, 0.6};
    o.ma_ratios = ma;
    o.n_ma = 5;
    o.hma_means = means;
    o.n_means = 2;
    o.search.k = 3;
    o.search.n_scores = 2;
    o.search.budget = 6;
    sweep_user u;
    memset(&u, 0, sizeof u);
    hma_points *p = NULL;
    assert_int_equal(hma_sweep(&o, sweep_eval, &u, &p), HMA_OK);
    /* the repeated MA ratio and the MA points at the searched means are not evaluated again */
    assert_int_equal(u.calls, 4 + 2 * 6);
    assert_int_equal(hma_points_count(p), u.calls);
    for (size_t i = 0; i < u.calls; i++) {
        hma_point_kind kind;
        size_t run;
        assert_int_equal(hma_points_info(p, i, &kind, &run), HMA_OK);
        assert_memory_equal(hma_points_ratios(p, i), u.seen[i], 3 * sizeof(double));
        if (i < 4) {
            assert_int_equal(kind, HMA_POINT_MA);
            assert_int_equal(run, i);
        } else {
            assert_int_equal(kind, HMA_POINT_SEARCH);
            assert_int_equal(run, (i - 4) / 6);
            const double *r = hma_points_ratios(p, i);
            assert_true(fabs((r[0] + r[1] + r[2]) / 3 - means[run]) <= 1e-12);
        }
        for (size_t j = 0; j < i; j++) {
            double d = 0;
            for (int m = 0; m < 3; m++) d = fmax(d, fabs(u.seen[i][m] - u.seen[j][m]));
            assert_true(d > 1e-6);
        }
    }
    /* the front: non-dominated, sorted by the first score; check by brute force */
    size_t idx[64], nf;
    assert_int_equal(hma_points_pareto(p, 0, 1, 0, idx, &nf), HMA_OK);
    assert_true(nf >= 2);
    size_t n = hma_points_count(p), count = 0;
    for (size_t i = 0; i < n; i++) {
        const double *a = hma_points_scores(p, i);
        int dominated = 0;
        for (size_t j = 0; j < n; j++) {
            const double *b = hma_points_scores(p, j);
            if (b[0] <= a[0] && b[1] <= a[1] && (b[0] < a[0] || b[1] < a[1])) dominated = 1;
        }
        if (!dominated) {
            int found = 0;
            for (size_t f = 0; f < nf; f++) found |= idx[f] == i;
            assert_true(found);
            count++;
        }
    }
    assert_int_equal(count, nf);
    for (size_t f = 1; f < nf; f++) assert_true(hma_points_scores(p, idx[f - 1])[0] < hma_points_scores(p, idx[f])[0]);
    assert_int_equal(hma_points_pareto(p, 0, 2, 0, idx, &nf), HMA_ERR_INVALID_ARGUMENT);
    hma_points_free(p);
    /* a mean the bounds cannot hold fails before any evaluation */
    double bad[] = {1.5};
    o.hma_means = bad;
    o.n_means = 1;
    memset(&u, 0, sizeof u);
    assert_int_equal(hma_sweep(&o, sweep_eval, &u, &p), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(u.calls, 0);
    assert_null(p);
}

/* ---- struct_size (the one rule of hma.h's conventions) -------------------- */

/* The size of each struct's first version, as a caller built against that
 * hma.h computes it (named by the version's last member). */
#define RATIO_OPT_V1 (offsetof(hma_ratio_opt_options, adam_eps) + sizeof(double))
#define SEARCH_V1 (offsetof(hma_search_options, prior) + sizeof(const hma_points *))
#define SWEEP_V1 (offsetof(hma_sweep_options, search) + SEARCH_V1)

/* An older caller's struct: its first `size` bytes copied from `full`, the
 * bytes after them (fields it does not know) garbage that must not be read. */
typedef union old_struct {
    max_align_t align;
    unsigned char b[1024];
} old_struct;

static void *old_copy(old_struct *u, const void *full, size_t size) {
    memset(u->b, 0xff, sizeof u->b); /* as doubles: NaN; as sizes: SIZE_MAX */
    memcpy(u->b, full, size);
    memcpy(u->b, &size, sizeof size); /* struct_size */
    return u->b;
}

/* Fill a buffer of `size` bytes (> sizeof) starting with a copy of *full,
 * struct_size set to `size`: a caller built against a newer libhma. */
static void *new_copy(old_struct *u, const void *full, size_t full_size, size_t size) {
    memset(u->b, 0, sizeof u->b);
    memcpy(u->b, full, full_size);
    memcpy(u->b, &size, sizeof size);
    return u->b;
}

static int last_error_names_struct_size(void) { return strstr(hma_last_error(), "struct_size") != NULL; }

static void test_ratio_opt_options_struct_size(void **st) {
    (void)st;
    hma_ratio_opt_options o;
    hma_ratio_opt_options_init(&o);
    assert_int_equal(o.struct_size, sizeof o);
    assert_true(RATIO_OPT_V1 <= sizeof o);
    o.method = HMA_OPT_SGD;
    o.lr = 0.25;
    o.mean = 0.4;
    double g[3] = {0.5, -1.0, 0.25}, ref[3], got[3];
    hma_ratio_opt *opt = NULL;
    assert_int_equal(hma_ratio_opt_create(&opt, 3, NULL, &o), HMA_OK);
    assert_int_equal(hma_ratio_opt_step(opt, g, ref, NULL), HMA_OK);
    hma_ratio_opt_free(opt);
    /* an older (smaller) struct is accepted: its fields are used, the rest default */
    old_struct u;
    opt = NULL;
    assert_int_equal(hma_ratio_opt_create(&opt, 3, NULL, old_copy(&u, &o, RATIO_OPT_V1)), HMA_OK);
    assert_int_equal(hma_ratio_opt_step(opt, g, got, NULL), HMA_OK);
    assert_memory_equal(got, ref, sizeof ref);
    hma_ratio_opt_free(opt);
    /* below the first version, or above this library's: refused */
    size_t bad[] = {0, sizeof(size_t), RATIO_OPT_V1 - 1, sizeof o + 1, sizeof o + 8};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        opt = NULL;
        o.struct_size = bad[i];
        assert_int_equal(hma_ratio_opt_create(&opt, 3, NULL, bad[i] > sizeof o ? new_copy(&u, &o, sizeof o, bad[i]) : &o),
                         HMA_ERR_INVALID_ARGUMENT);
        assert_null(opt);
        assert_true(last_error_names_struct_size());
    }
    /* NULL options are all defaults */
    assert_int_equal(hma_ratio_opt_create(&opt, 3, NULL, NULL), HMA_OK);
    hma_ratio_opt_free(opt);
}

static void test_search_options_struct_size(void **st) {
    (void)st;
    qobj q;
    memset(&q, 0, sizeof q);
    q.k = 3;
    q.t[0] = 0.8;
    q.t[1] = 0.3;
    q.t[2] = 0.4;
    q.w[0] = q.w[1] = q.w[2] = 1;
    hma_search_options o;
    hma_search_options_init(&o);
    assert_int_equal(o.struct_size, sizeof o);
    assert_true(SEARCH_V1 <= sizeof o);
    o.k = 3;
    o.budget = 9;
    o.seed = 3;
    hma_points *ref = NULL, *p = NULL;
    assert_int_equal(hma_search(&o, quad_eval, &q, &ref), HMA_OK);
    /* an older (smaller) struct is accepted and gives the same points */
    old_struct u;
    q.calls = 0;
    assert_int_equal(hma_search(old_copy(&u, &o, SEARCH_V1), quad_eval, &q, &p), HMA_OK);
    assert_int_equal(hma_points_count(p), hma_points_count(ref));
    for (size_t i = 0; i < hma_points_count(p); i++)
        assert_memory_equal(hma_points_ratios(p, i), hma_points_ratios(ref, i), 3 * sizeof(double));
    hma_points_free(p);
    hma_points_free(ref);
    /* too small or too large: refused before any evaluation, *out NULL */
    size_t small[] = {0, sizeof(size_t), SEARCH_V1 - 1};
    for (size_t i = 0; i < 3; i++) {
        q.calls = 0;
        p = (hma_points *)&q;
        o.struct_size = small[i];
        assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_ERR_INVALID_ARGUMENT);
        assert_null(p);
        assert_int_equal(q.calls, 0);
        assert_true(last_error_names_struct_size());
    }
    o.struct_size = sizeof o;
    q.calls = 0;
    assert_int_equal(hma_search(new_copy(&u, &o, sizeof o, sizeof o + 8), quad_eval, &q, &p), HMA_ERR_INVALID_ARGUMENT);
    assert_null(p);
    assert_int_equal(q.calls, 0);
    assert_true(last_error_names_struct_size());
}

static void test_sweep_options_struct_size(void **st) {
    (void)st;
    hma_sweep_options o;
    hma_sweep_options_init(&o);
    assert_int_equal(o.struct_size, sizeof o);
    assert_int_equal(o.search.struct_size, sizeof o.search);
    assert_true(SWEEP_V1 <= sizeof o);
    /* the embedded struct is the last member (it may only grow with hma_search_options) */
    assert_int_equal(offsetof(hma_sweep_options, search) + sizeof o.search, sizeof o);
    double ma[] = {0.3, 0.5}, means[] = {0.5};
    o.ma_ratios = ma;
    o.n_ma = 2;
    o.hma_means = means;
    o.n_means = 1;
    o.search.k = 3;
    o.search.n_scores = 2;
    o.search.budget = 5;
    sweep_user u;
    memset(&u, 0, sizeof u);
    hma_points *ref = NULL, *p = NULL;
    assert_int_equal(hma_sweep(&o, sweep_eval, &u, &ref), HMA_OK);
    /* an older caller: both struct_sizes of the first version; same points */
    old_struct b;
    hma_sweep_options *old = old_copy(&b, &o, SWEEP_V1);
    memcpy(&old->search.struct_size, &(size_t){SEARCH_V1}, sizeof(size_t));
    memset(&u, 0, sizeof u);
    assert_int_equal(hma_sweep(old, sweep_eval, &u, &p), HMA_OK);
    assert_int_equal(hma_points_count(p), hma_points_count(ref));
    for (size_t i = 0; i < hma_points_count(p); i++)
        assert_memory_equal(hma_points_ratios(p, i), hma_points_ratios(ref, i), 3 * sizeof(double));
    hma_points_free(p);
    hma_points_free(ref);
    /* refused, before any evaluation: sweep struct_size too small or too large, ... */
    size_t outer[] = {0, sizeof(size_t), SWEEP_V1 - 1};
    for (size_t i = 0; i < 3; i++) {
        o.struct_size = outer[i];
        memset(&u, 0, sizeof u);
        p = (hma_points *)&u;
        assert_int_equal(hma_sweep(&o, sweep_eval, &u, &p), HMA_ERR_INVALID_ARGUMENT);
        assert_null(p);
        assert_int_equal(u.calls, 0);
        assert_true(last_error_names_struct_size());
    }
    o.struct_size = sizeof o;
    assert_int_equal(hma_sweep(new_copy(&b, &o, sizeof o, sizeof o + 8), sweep_eval, &u, &p), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(u.calls, 0);
    assert_true(last_error_names_struct_size());
    /* ... the embedded search.struct_size too small, too large, or past the caller's struct */
    size_t inner[] = {0, SEARCH_V1 - 1, sizeof o.search + 8};
    for (size_t i = 0; i < 3; i++) {
        o.search.struct_size = inner[i];
        assert_int_equal(hma_sweep(&o, sweep_eval, &u, &p), HMA_ERR_INVALID_ARGUMENT);
        assert_null(p);
        assert_int_equal(u.calls, 0);
        assert_true(strstr(hma_last_error(), "search.struct_size") != NULL);
    }
    o.search.struct_size = SEARCH_V1 + 8;
    assert_int_equal(hma_sweep(old_copy(&b, &o, SWEEP_V1), sweep_eval, &u, &p), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(u.calls, 0);
    assert_true(strstr(hma_last_error(), "search.struct_size") != NULL);
}

/* ---- ask/tell (hma_searcher) and batches ---------------------------------- */

/* The scores quad_eval gives, without its side effects. */
static void quad_scores(const qobj *q, const double *r, size_t ns, double *sc) {
    double f = 0;
    for (size_t i = 0; i < q->k; i++) f += q->w[i] * (r[i] - q->t[i]) * (r[i] - q->t[i]);
    sc[0] = f;
    if (ns > 1) sc[1] = -f;
    for (size_t s = 2; s < ns; s++) sc[s] = (double)s;
}

/* Run the search through the handle; each batch's scores are computed last
 * candidate first (as if by workers finishing in any order). Checks the
 * batch sizes and the done flag; returns the point list. */
static hma_points *ask_tell(const hma_search_options *o, const qobj *q, size_t *batches) {
    hma_searcher *s = NULL;
    assert_int_equal(hma_searcher_create(&s, o), HMA_OK);
    size_t b = o->batch < o->budget ? o->batch : o->budget, n = 0, told = 0;
    double x[16 * 8], sc[16 * 4];
    assert_true(b <= 16 && o->k <= 8 && o->n_scores <= 4);
    *batches = 0;
    for (;;) {
        assert_int_equal(hma_searcher_ask(s, x, b, &n), HMA_OK);
        if (!n) break;
        assert_false(hma_searcher_done(s));
        assert_true(n <= b);
        for (size_t i = n; i-- > 0;) quad_scores(q, x + i * o->k, o->n_scores, sc + i * o->n_scores);
        assert_int_equal(hma_searcher_tell(s, sc, n), HMA_OK);
        told += n;
        (*batches)++;
    }
    assert_true(hma_searcher_done(s));
    assert_true(told <= o->budget);
    hma_points *p = NULL;
    assert_int_equal(hma_searcher_points(s, &p), HMA_OK);
    hma_searcher_free(s);
    return p;
}

static void assert_same_points(const hma_points *a, const hma_points *b) {
    size_t k = hma_points_k(a), ns = hma_points_n_scores(a);
    assert_int_equal(hma_points_count(a), hma_points_count(b));
    assert_int_equal(hma_points_k(b), k);
    for (size_t i = 0; i < hma_points_count(a); i++) {
        assert_memory_equal(hma_points_ratios(a, i), hma_points_ratios(b, i), k * sizeof(double));
        assert_memory_equal(hma_points_scores(a, i), hma_points_scores(b, i), ns * sizeof(double));
        hma_point_kind ka, kb;
        assert_int_equal(hma_points_info(a, i, &ka, NULL), HMA_OK);
        assert_int_equal(hma_points_info(b, i, &kb, NULL), HMA_OK);
        assert_int_equal(ka, kb);
    }
}

/* A few search problems: bounds per ratio, a start, a prior, several scores. */
static void batch_case(size_t c, qobj *q, hma_search_options *o, double *lo, double *hi, double *start,
                       double *w) {
    memset(q, 0, sizeof *q);
    hma_search_options_init(o);
    q->k = 2 + c % 4; /* 2 .. 5 */
    for (size_t i = 0; i < q->k; i++) {
        q->t[i] = 0.1 + 0.8 * trand();
        q->w[i] = 0.5 + 2 * trand();
    }
    o->k = q->k;
    o->budget = 12 + 7 * c;
    o->seed = 40 + c;
    o->mean = 0.45;
    if (c % 2) {
        for (size_t i = 0; i < q->k; i++) {
            lo[i] = 0.05 * (double)i;
            hi[i] = 0.7 + 0.05 * (double)i;
        }
        o->lo_each = lo;
        o->hi_each = hi;
    }
    if (c % 3 == 1) {
        for (size_t i = 0; i < q->k; i++) start[i] = i ? 0.3 : 0.9;
        o->start = start;
    }
    if (c % 3 == 2) {
        o->n_scores = 3;
        w[0] = 1, w[1] = 0.25, w[2] = 0;
        o->weights = w;
    }
}

static void test_searcher_batch1_is_hma_search(void **st) {
    (void)st;
    for (size_t c = 0; c < 6; c++) {
        qobj q;
        hma_search_options o;
        double lo[8], hi[8], start[8], w[3];
        batch_case(c, &q, &o, lo, hi, start, w);
        hma_points *ref = NULL, *prior = NULL;
        if (c == 4) { /* a prior from an earlier search, another seed */
            o.seed += 100;
            assert_int_equal(hma_search(&o, quad_eval, &q, &prior), HMA_OK);
            o.seed -= 100;
            o.prior = prior;
        }
        q.calls = 0;
        assert_int_equal(hma_search(&o, quad_eval, &q, &ref), HMA_OK);
        assert_int_equal(q.calls, o.budget);
        size_t batches = 0;
        hma_points *p = ask_tell(&o, &q, &batches);
        assert_same_points(ref, p);
        assert_int_equal(batches, o.budget);
        hma_points_free(p);
        hma_points_free(ref);
        hma_points_free(prior);
    }
}

static void test_searcher_batches_match_hma_search(void **st) {
    (void)st;
    const size_t bs[] = {2, 3, 5};
    for (size_t c = 0; c < 6; c++)
        for (size_t bi = 0; bi < 3; bi++) {
            qobj q;
            hma_search_options o;
            double lo[8], hi[8], start[8], w[3];
            batch_case(c, &q, &o, lo, hi, start, w);
            hma_points *serial = NULL, *ref = NULL;
            assert_int_equal(hma_search(&o, quad_eval, &q, &serial), HMA_OK);
            o.batch = bs[bi];
            q.calls = 0;
            assert_int_equal(hma_search(&o, quad_eval, &q, &ref), HMA_OK);
            assert_int_equal(q.calls, o.budget);
            assert_int_equal(hma_points_count(ref), o.budget);
            check_points(ref, q.k, o.mean, 0, 1, o.tolerance);
            const double *l = o.lo_each, *h = o.hi_each;
            for (size_t i = 0; i < o.budget; i++)
                for (size_t j = 0; j < q.k; j++) {
                    double r = hma_points_ratios(ref, i)[j];
                    assert_true(r >= (l ? l[j] : o.lo) && r <= (h ? h[j] : o.hi));
                }
            size_t batches = 0;
            hma_points *p = ask_tell(&o, &q, &batches);
            assert_same_points(ref, p);
            assert_true(batches < o.budget); /* batches of more than one candidate happened */
            /* the centre and the design use no scores: the first points are the serial search's */
            size_t q4 = o.budget / 4 > 4 ? o.budget / 4 : 4, n0 = q.k + 1 < q4 ? q.k + 1 : q4; /* docs/search.md */
            for (size_t i = 0; i < n0; i++)
                assert_memory_equal(hma_points_ratios(ref, i), hma_points_ratios(serial, i), q.k * sizeof(double));
            hma_points_free(p);
            hma_points_free(ref);
            hma_points_free(serial);
        }
}

/* With a fixed budget, batches still find the optimum of an easy quadratic. */
static void test_search_batches_reach_optimum(void **st) {
    (void)st;
    for (size_t b = 1; b <= 5; b += 2) {
        qobj q;
        memset(&q, 0, sizeof q);
        q.k = 3;
        q.t[0] = 0.8, q.t[1] = 0.3, q.t[2] = 0.5;
        q.w[0] = 1, q.w[1] = 2, q.w[2] = 0.5;
        hma_search_options o;
        hma_search_options_init(&o);
        o.k = 3;
        o.budget = 40;
        o.batch = b;
        hma_points *p = NULL;
        assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_OK);
        double opt[3], fopt = 0;
        quad_opt(&q, 1.5, 0, 1, opt);
        for (size_t i = 0; i < 3; i++) fopt += q.w[i] * (opt[i] - q.t[i]) * (opt[i] - q.t[i]);
        assert_true(hma_points_scores(p, hma_points_best(p))[0] - fopt < 1e-5);
        hma_points_free(p);
    }
}

static void test_searcher_struct_size_and_errors(void **st) {
    (void)st;
    qobj q;
    memset(&q, 0, sizeof q);
    q.k = 3;
    q.t[0] = 0.8, q.t[1] = 0.3, q.t[2] = 0.4;
    q.w[0] = q.w[1] = q.w[2] = 1;
    hma_search_options o;
    hma_search_options_init(&o);
    assert_int_equal(o.batch, 1);
    o.k = 3;
    o.budget = 9;
    o.seed = 3;
    hma_points *ref = NULL, *p = NULL;
    assert_int_equal(hma_search(&o, quad_eval, &q, &ref), HMA_OK);
    /* a struct of the first version (no `batch`; garbage after it) means batch 1 */
    o.batch = 4;
    old_struct u;
    q.calls = 0;
    assert_int_equal(hma_search(old_copy(&u, &o, SEARCH_V1), quad_eval, &q, &p), HMA_OK);
    assert_same_points(ref, p);
    hma_points_free(p);
    size_t batches = 0;
    p = ask_tell(old_copy(&u, &o, SEARCH_V1), &q, &batches);
    assert_same_points(ref, p);
    assert_int_equal(batches, 9);
    hma_points_free(p);
    hma_points_free(ref);
    /* batch 0 is refused by both */
    o.batch = 0;
    hma_searcher *s = (hma_searcher *)&q;
    assert_int_equal(hma_searcher_create(&s, &o), HMA_ERR_INVALID_ARGUMENT);
    assert_null(s);
    assert_non_null(strstr(hma_last_error(), "batch"));
    q.calls = 0;
    assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(q.calls, 0);
    assert_int_equal(hma_searcher_create(NULL, &o), HMA_ERR_INVALID_ARGUMENT);
    o.batch = 3;
    assert_int_equal(hma_searcher_create(&s, NULL), HMA_ERR_INVALID_ARGUMENT);
    o.mean = 1.5; /* bounds exclude the mean */
    assert_int_equal(hma_searcher_create(&s, &o), HMA_ERR_INVALID_ARGUMENT);
    assert_null(s);
    o.mean = 0.5;
    assert_int_equal(hma_searcher_create(&s, &o), HMA_OK);
    double x[3 * 3], sc[3];
    size_t n = 99;
    /* tell before any ask; ask without room for a batch; NULLs */
    assert_int_equal(hma_searcher_tell(s, sc, 1), HMA_ERR_STATE);
    assert_int_equal(hma_searcher_ask(s, x, 2, &n), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(n, 0);
    assert_int_equal(hma_searcher_ask(s, NULL, 3, &n), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_searcher_ask(NULL, x, 3, &n), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_searcher_ask(s, x, 3, NULL), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_searcher_ask(s, x, 3, &n), HMA_OK);
    assert_int_equal(n, 3);
    /* ask again before the scores; tell with the wrong count: the batch still waits */
    size_t n2 = 99;
    assert_int_equal(hma_searcher_ask(s, x, 3, &n2), HMA_ERR_STATE);
    assert_int_equal(n2, 0);
    for (size_t i = 0; i < 3; i++) quad_scores(&q, x + 3 * i, 1, sc + i);
    assert_int_equal(hma_searcher_tell(s, sc, 2), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_searcher_tell(s, sc, 4), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_searcher_tell(s, NULL, 3), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_searcher_tell(NULL, sc, 3), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_searcher_points(s, &p), HMA_OK);
    assert_int_equal(hma_points_count(p), 0); /* the waiting batch is not in the list */
    hma_points_free(p);
    sc[1] = NAN; /* a non-finite score is recorded */
    assert_int_equal(hma_searcher_tell(s, sc, 3), HMA_OK);
    assert_int_equal(hma_searcher_tell(s, sc, 3), HMA_ERR_STATE);
    assert_int_equal(hma_searcher_points(s, &p), HMA_OK);
    assert_int_equal(hma_points_count(p), 3);
    assert_true(isnan(hma_points_scores(p, 1)[0]));
    assert_memory_equal(hma_points_ratios(p, 2), x + 6, 3 * sizeof(double));
    hma_points_free(p);
    assert_int_equal(hma_searcher_points(s, NULL), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_searcher_points(NULL, &p), HMA_ERR_INVALID_ARGUMENT);
    assert_null(p);
    /* to the end of the budget; then ask gives nothing */
    size_t total = 3;
    while (!hma_searcher_done(s)) {
        assert_int_equal(hma_searcher_ask(s, x, 3, &n), HMA_OK);
        for (size_t i = 0; i < n; i++) quad_scores(&q, x + 3 * i, 1, sc + i);
        assert_int_equal(hma_searcher_tell(s, sc, n), HMA_OK);
        total += n;
    }
    assert_int_equal(total, 9);
    assert_int_equal(hma_searcher_ask(s, x, 3, &n), HMA_OK);
    assert_int_equal(n, 0);
    assert_int_equal(hma_searcher_tell(s, sc, 0), HMA_ERR_STATE);
    hma_searcher_free(s);
    hma_searcher_free(NULL);
    assert_true(hma_searcher_done(NULL));
    /* a set with a single vector: one candidate, then the end */
    o.lo = o.hi = 0.5;
    assert_int_equal(hma_searcher_create(&s, &o), HMA_OK);
    assert_int_equal(hma_searcher_ask(s, x, 3, &n), HMA_OK);
    assert_int_equal(n, 1);
    assert_int_equal(hma_searcher_tell(s, sc, 1), HMA_OK);
    assert_true(hma_searcher_done(s));
    assert_int_equal(hma_searcher_ask(s, x, 3, &n), HMA_OK);
    assert_int_equal(n, 0);
    hma_searcher_free(s);
    /* a batch larger than the budget needs room for the budget only */
    o.lo = 0, o.hi = 1;
    o.budget = 2;
    o.batch = 50;
    assert_int_equal(hma_searcher_create(&s, &o), HMA_OK);
    assert_int_equal(hma_searcher_ask(s, x, 2, &n), HMA_OK);
    assert_int_equal(n, 2);
    hma_searcher_free(s); /* with a batch waiting */
}

/* A callback that stops in the middle of a batch keeps the points scored before it. */
static void test_search_batch_callback_stops(void **st) {
    (void)st;
    for (size_t at = 2; at <= 7; at++) {
        qobj q;
        memset(&q, 0, sizeof q);
        q.k = 3;
        q.w[0] = q.w[1] = q.w[2] = 1;
        q.fail_at = at;
        hma_search_options o;
        hma_search_options_init(&o);
        o.k = 3;
        o.budget = 20;
        o.batch = 3;
        hma_points *p = NULL;
        assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_ERR_CALLBACK);
        assert_int_equal(hma_points_count(p), at - 1);
        for (size_t i = 0; i + 1 < at; i++) assert_memory_equal(hma_points_ratios(p, i), q.log[i], 3 * sizeof(double));
        hma_points_free(p);
    }
}

/* The sweep honours batch: every search spends its budget within the contract. */
static void test_sweep_batch(void **st) {
    (void)st;
    double ma[] = {0.3, 0.5}, means[] = {0.5, 0.4};
    hma_sweep_options o;
    hma_sweep_options_init(&o);
    o.ma_ratios = ma;
    o.n_ma = 2;
    o.hma_means = means;
    o.n_means = 2;
    o.search.k = 3;
    o.search.n_scores = 2;
    o.search.budget = 8;
    sweep_user u;
    memset(&u, 0, sizeof u);
    hma_points *one = NULL, *three = NULL;
    assert_int_equal(hma_sweep(&o, sweep_eval, &u, &one), HMA_OK);
    o.search.batch = 3;
    memset(&u, 0, sizeof u);
    assert_int_equal(hma_sweep(&o, sweep_eval, &u, &three), HMA_OK);
    assert_int_equal(hma_points_count(three), hma_points_count(one));
    int differ = 0;
    for (size_t i = 0; i < hma_points_count(one); i++)
        differ |= memcmp(hma_points_ratios(one, i), hma_points_ratios(three, i), 3 * sizeof(double)) != 0;
    assert_true(differ);
    hma_points_free(one);
    hma_points_free(three);
}

/* ---- hma_X_init_size(o, size): never writes past the caller's size ---------- */

#define GUARD 0xA5

/* Fill the whole buffer with GUARD bytes (the caller's struct and what lies after it). */
static void *guarded(old_struct *u) {
    memset(u->b, GUARD, sizeof u->b);
    return u->b;
}

/* 1 if every byte of u from `from` on is still GUARD. */
static int guard_intact(const old_struct *u, size_t from) {
    for (size_t i = from; i < sizeof u->b; i++)
        if (u->b[i] != GUARD) return 0;
    return 1;
}

static size_t struct_size_of(const old_struct *u) {
    size_t n;
    memcpy(&n, u->b, sizeof n);
    return n;
}

static void init_group_grad(void *p, size_t n) { hma_group_grad_options_init_size(p, n); }
static void init_ratio_opt(void *p, size_t n) { hma_ratio_opt_options_init_size(p, n); }
static void init_search(void *p, size_t n) { hma_search_options_init_size(p, n); }
static void init_sweep(void *p, size_t n) { hma_sweep_options_init_size(p, n); }
static void init_pack_options(void *p, size_t n) { hma_pack_options_init_size(p, n); }
static void init_pack_stats(void *p, size_t n) { hma_pack_stats_init_size(p, n); }

/* Every _init_size() at every size from 0 to sizeof + 24: it writes exactly
 * the first n = min(size, sizeof) bytes (nothing when size < sizeof(size_t)),
 * struct_size = n, and those bytes are the ones the full-size _init() writes
 * (for the sweep, with search.struct_size the part of n that `search` covers). */
static void test_init_size_writes_only_the_callers_bytes(void **st) {
    (void)st;
    hma_group_grad_options gg;
    hma_ratio_opt_options ro;
    hma_search_options so;
    hma_sweep_options sw;
    hma_pack_options po;
    hma_pack_stats ps;
    hma_group_grad_options_init(&gg);
    hma_ratio_opt_options_init(&ro);
    hma_search_options_init(&so);
    hma_sweep_options_init(&sw);
    hma_pack_options_init(&po);
    hma_pack_stats_init(&ps);
    assert_int_equal(sw.search.struct_size, sizeof sw.search);
    assert_true(so.mean == 0.5 && so.hi == 1 && so.budget == 20 && so.n_scores == 1 && so.tolerance == 1e-6);
    assert_true(ro.method == HMA_OPT_ADAM && ro.lr == 2e-5 && ro.beta2 == 0.999);
    const struct {
        const char *name;
        void (*init)(void *, size_t);
        const void *full;
        size_t size;
    } t[] = {
        {"hma_group_grad_options", init_group_grad, &gg, sizeof gg},
        {"hma_ratio_opt_options", init_ratio_opt, &ro, sizeof ro},
        {"hma_search_options", init_search, &so, sizeof so},
        {"hma_sweep_options", init_sweep, &sw, sizeof sw},
        {"hma_pack_options", init_pack_options, &po, sizeof po},
        {"hma_pack_stats", init_pack_stats, &ps, sizeof ps},
    };
    const size_t at = offsetof(hma_sweep_options, search);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        assert_true(t[i].size + 24 <= sizeof(old_struct));
        assert_int_equal(*(const size_t *)t[i].full, t[i].size);
        t[i].init(NULL, t[i].size); /* a no-op */
        for (size_t size = 0; size <= t[i].size + 24; size++) {
            old_struct u;
            t[i].init(guarded(&u), size);
            size_t n = size < t[i].size ? size : t[i].size;
            if (size < sizeof(size_t)) {
                if (!guard_intact(&u, 0)) print_message("%s: size %zu wrote\n", t[i].name, size);
                assert_true(guard_intact(&u, 0));
                continue;
            }
            if (!guard_intact(&u, n)) print_message("%s: size %zu wrote past %zu\n", t[i].name, size, n);
            assert_true(guard_intact(&u, n));
            assert_int_equal(struct_size_of(&u), n);
            unsigned char want[sizeof(old_struct)];
            memcpy(want, t[i].full, t[i].size);
            memcpy(want, &n, sizeof n);
            if (t[i].init == init_sweep && n >= at + sizeof(size_t)) {
                size_t inner = n - at;
                memcpy(want + at, &inner, sizeof inner);
            }
            assert_memory_equal(u.b, want, n);
        }
    }
}

/* A caller built against an older hma.h: hma_search_options_init_size() at
 * the first version's size leaves the bytes after it alone, and hma_search()
 * runs with that struct (same points as the full one); a larger size gives
 * the library's struct_size; a size ending at an earlier member is filled
 * as far as it goes and then refused by hma_search(). */
static void test_search_options_init_size(void **st) {
    (void)st;
    qobj q;
    memset(&q, 0, sizeof q);
    q.k = 3;
    q.t[0] = 0.8;
    q.t[1] = 0.3;
    q.t[2] = 0.4;
    q.w[0] = q.w[1] = q.w[2] = 1;
    hma_search_options full;
    hma_search_options_init(&full);
    full.k = 3;
    full.budget = 9;
    full.seed = 3;
    hma_points *ref = NULL, *p = NULL;
    assert_int_equal(hma_search(&full, quad_eval, &q, &ref), HMA_OK);
    size_t sizes[] = {SEARCH_V1, sizeof full + 40};
    for (size_t i = 0; i < 2; i++) {
        old_struct u;
        hma_search_options *o = guarded(&u);
        hma_search_options_init_size(o, sizes[i]);
        size_t n = sizes[i] < sizeof full ? sizes[i] : sizeof full;
        assert_int_equal(struct_size_of(&u), n);
        assert_true(guard_intact(&u, n));
        assert_true(o->mean == 0.5 && o->lo == 0 && o->hi == 1 && o->budget == 20 && o->seed == 0 &&
                    o->n_scores == 1 && o->tolerance == 1e-6 && !o->lo_each && !o->hi_each &&
                    !o->weights && !o->start && !o->prior);
        o->k = 3;
        o->budget = 9;
        o->seed = 3;
        q.calls = 0;
        assert_int_equal(hma_search(o, quad_eval, &q, &p), HMA_OK);
        assert_true(guard_intact(&u, n));
        assert_int_equal(hma_points_count(p), hma_points_count(ref));
        for (size_t j = 0; j < hma_points_count(p); j++)
            assert_memory_equal(hma_points_ratios(p, j), hma_points_ratios(ref, j), 3 * sizeof(double));
        hma_points_free(p);
        p = NULL;
    }
    hma_points_free(ref);
    /* ends at `start` (before `prior`): below the first version */
    size_t early = offsetof(hma_search_options, start) + sizeof(const double *);
    old_struct u;
    hma_search_options *o = guarded(&u);
    hma_search_options_init_size(o, early);
    assert_int_equal(struct_size_of(&u), early);
    assert_true(guard_intact(&u, early));
    assert_true(o->mean == 0.5 && o->budget == 20 && o->tolerance == 1e-6 && !o->start);
    o->k = 3;
    q.calls = 0;
    assert_int_equal(hma_search(o, quad_eval, &q, &p), HMA_ERR_INVALID_ARGUMENT);
    assert_null(p);
    assert_int_equal(q.calls, 0);
    assert_true(last_error_names_struct_size());
    assert_true(guard_intact(&u, early));
}

/* The same for hma_sweep_options_init_size(): the embedded search gets the
 * size the caller's struct leaves it. */
static void test_sweep_options_init_size(void **st) {
    (void)st;
    double ma[] = {0.3, 0.5}, means[] = {0.5};
    hma_sweep_options full;
    hma_sweep_options_init(&full);
    full.ma_ratios = ma;
    full.n_ma = 2;
    full.hma_means = means;
    full.n_means = 1;
    full.search.k = 3;
    full.search.n_scores = 2;
    full.search.budget = 5;
    sweep_user su;
    memset(&su, 0, sizeof su);
    hma_points *ref = NULL, *p = NULL;
    assert_int_equal(hma_sweep(&full, sweep_eval, &su, &ref), HMA_OK);
    size_t sizes[] = {SWEEP_V1, sizeof full + 40};
    for (size_t i = 0; i < 2; i++) {
        old_struct u;
        hma_sweep_options *o = guarded(&u);
        hma_sweep_options_init_size(o, sizes[i]);
        size_t n = sizes[i] < sizeof full ? sizes[i] : sizeof full;
        assert_int_equal(struct_size_of(&u), n);
        assert_int_equal(o->search.struct_size, n - offsetof(hma_sweep_options, search));
        assert_true(guard_intact(&u, n));
        assert_true(!o->ma_ratios && o->n_ma == 0 && !o->hma_means && o->n_means == 0 &&
                    o->search.mean == 0.5 && o->search.budget == 20 && o->search.n_scores == 1);
        o->ma_ratios = ma;
        o->n_ma = 2;
        o->hma_means = means;
        o->n_means = 1;
        o->search.k = 3;
        o->search.n_scores = 2;
        o->search.budget = 5;
        memset(&su, 0, sizeof su);
        assert_int_equal(hma_sweep(o, sweep_eval, &su, &p), HMA_OK);
        assert_true(guard_intact(&u, n));
        assert_int_equal(hma_points_count(p), hma_points_count(ref));
        for (size_t j = 0; j < hma_points_count(p); j++)
            assert_memory_equal(hma_points_ratios(p, j), hma_points_ratios(ref, j), 3 * sizeof(double));
        hma_points_free(p);
        p = NULL;
    }
    hma_points_free(ref);
}

/* The same for hma_ratio_opt_options_init_size(). */
static void test_ratio_opt_options_init_size(void **st) {
    (void)st;
    hma_ratio_opt_options full;
    hma_ratio_opt_options_init(&full);
    full.method = HMA_OPT_SGD;
    full.lr = 0.25;
    double g[3] = {0.5, -1.0, 0.25}, ref[3], got[3];
    hma_ratio_opt *opt = NULL;
    assert_int_equal(hma_ratio_opt_create(&opt, 3, NULL, &full), HMA_OK);
    assert_int_equal(hma_ratio_opt_step(opt, g, ref, NULL), HMA_OK);
    hma_ratio_opt_free(opt);
    size_t sizes[] = {RATIO_OPT_V1, sizeof full + 40};
    for (size_t i = 0; i < 2; i++) {
        old_struct u;
        hma_ratio_opt_options *o = guarded(&u);
        hma_ratio_opt_options_init_size(o, sizes[i]);
        size_t n = sizes[i] < sizeof full ? sizes[i] : sizeof full;
        assert_int_equal(struct_size_of(&u), n);
        assert_true(guard_intact(&u, n));
        assert_true(o->method == HMA_OPT_ADAM && o->lr == 2e-5 && o->mean == 0.5 && o->adam_eps == 1e-8);
        o->method = HMA_OPT_SGD;
        o->lr = 0.25;
        opt = NULL;
        assert_int_equal(hma_ratio_opt_create(&opt, 3, NULL, o), HMA_OK);
        assert_int_equal(hma_ratio_opt_step(opt, g, got, NULL), HMA_OK);
        assert_memory_equal(got, ref, sizeof ref);
        hma_ratio_opt_free(opt);
        assert_true(guard_intact(&u, n));
    }
}

/* The search's proposals are pinned: a refactoring must not change a bit. */
static void test_search_proposals_pinned(void **st) {
    (void)st;
    qobj q;
    memset(&q, 0, sizeof q);
    q.k = 4;
    q.t[0] = 0.9;
    q.t[1] = 0.2;
    q.t[2] = 0.6;
    q.t[3] = 0.35;
    q.w[0] = 1;
    q.w[1] = 2;
    q.w[2] = 0.5;
    q.w[3] = 1.5;
    hma_search_options o;
    hma_search_options_init(&o);
    o.k = 4;
    o.budget = 30;
    o.seed = 7;
    o.lo = 0.05;
    o.hi = 0.95;
    hma_points *p = NULL;
    assert_int_equal(hma_search(&o, quad_eval, &q, &p), HMA_OK);
    assert_int_equal(hma_points_count(p), 30);
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the bytes of every proposal */
    for (size_t i = 0; i < 30; i++) {
        const unsigned char *b = (const unsigned char *)hma_points_ratios(p, i);
        for (size_t j = 0; j < 4 * sizeof(double); j++) h = (h ^ b[j]) * 0x100000001b3ull;
    }
    if (h != PINNED_PROPOSALS) print_message("proposal hash %016llx\n", (unsigned long long)h);
    assert_true(h == PINNED_PROPOSALS);
    assert_int_equal(hma_points_best(NULL), HMA_NPOS);
    hma_points_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ratios_mean_and_reference),
        cmocka_unit_test(test_jacobian_vs_finite_differences),
        cmocka_unit_test(test_logits_ratios_round_trip),
        cmocka_unit_test(test_sgd_step_by_hand),
        cmocka_unit_test(test_adam_step_by_hand),
        cmocka_unit_test(test_projection_exact),
        cmocka_unit_test(test_search_quadratic_reaches_optimum),
        cmocka_unit_test(test_search_deterministic_and_seeded),
        cmocka_unit_test(test_search_budget_bounds_duplicates),
        cmocka_unit_test(test_search_small_sets_end_early),
        cmocka_unit_test(test_search_callback_stops_and_errors),
        cmocka_unit_test(test_search_prior_not_reevaluated),
        cmocka_unit_test(test_pareto_hand_made),
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_ratio_opt_options_struct_size),
        cmocka_unit_test(test_search_options_struct_size),
        cmocka_unit_test(test_sweep_options_struct_size),
        cmocka_unit_test(test_init_size_writes_only_the_callers_bytes),
        cmocka_unit_test(test_search_options_init_size),
        cmocka_unit_test(test_sweep_options_init_size),
        cmocka_unit_test(test_ratio_opt_options_init_size),
        cmocka_unit_test(test_search_proposals_pinned),
        cmocka_unit_test(test_searcher_batch1_is_hma_search),
        cmocka_unit_test(test_searcher_batches_match_hma_search),
        cmocka_unit_test(test_search_batches_reach_optimum),
        cmocka_unit_test(test_searcher_struct_size_and_errors),
        cmocka_unit_test(test_search_batch_callback_stops),
        cmocka_unit_test(test_sweep_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
