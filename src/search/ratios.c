/*
 * ratios.c - the paper's parametrisation of K per-block ratios by K logits
 * with a fixed mean: logits -> ratios, its Jacobian, the chain rule through
 * it, and its inverse (up to the invariance). docs/search.md gives the maths.
 */
#include "internal.h"

#include <math.h>

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
