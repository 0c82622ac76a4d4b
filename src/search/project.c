/*
 * project.c - exact Euclidean projection onto { sum a = k * mean,
 * lo <= a <= hi } (sort-based), shared by hma_project_ratios() and the search.
 */
#include "search/search_impl.h"

#include <math.h>
#include <string.h>

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

void hma__project_core(size_t k, const double *y, double target, const double *lo, const double *hi,
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

int hma__ratio_bounds_check(const char *fn, size_t k, double mean, const double *lo, const double *hi) {
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
    int rc = hma__ratio_bounds_check("hma_project_ratios", k, mean, lo, hi);
    if (rc) return rc;
    for (size_t i = 0; i < k; i++)
        if (!isfinite(y[i])) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_project_ratios: y[%zu] is not finite", i);
    if (k > SIZE_MAX / (3 * sizeof(double))) return hma__fail(HMA_ERR_OVERFLOW, "hma_project_ratios: k too large");
    double *work = hma__malloc(3 * k * sizeof(double));
    if (!work) return hma__fail(HMA_ERR_NO_MEMORY, "hma_project_ratios: out of memory for k = %zu", k);
    hma__project_core(k, y, mean * (double)k, lo, hi, work + 2 * k, work);
    memcpy(out, work + 2 * k, k * sizeof(double));
    hma__free(work);
    return HMA_OK;
}
