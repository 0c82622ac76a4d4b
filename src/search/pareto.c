/*
 * pareto.c - Pareto fronts of (alignment, forgetting) points and the MA/HMA
 * sweep that produces them.
 */
#include "search/search_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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

void hma_sweep_options_init_size(hma_sweep_options *o, size_t size) {
    hma_sweep_options d;
    memset(&d, 0, sizeof d);
    hma_search_options_init(&d.search);
    size_t n = hma__init_size(o, size, &d, sizeof d);
    /* The embedded search gets the part of the caller's struct it reaches:
     * `search` is the last member, so a caller's sweep struct ends where its
     * search struct ends. */
    size_t at = offsetof(hma_sweep_options, search);
    if (n >= at + sizeof(size_t)) {
        size_t inner = n - at;
        memcpy((char *)o + at, &inner, sizeof inner);
    }
}

/* The caller's sweep options into *o by the struct_size rule. The embedded
 * search options follow the same rule with their own struct_size, which
 * must lie within the caller's hma_sweep_options. */
static int read_sweep_opts(hma_sweep_options *o, const hma_sweep_options *opts) {
    hma_sweep_options_init(o);
    int rc = hma__opts_in(o, sizeof *o, opts, HMA__SWEEP_OPTIONS_V1, "hma_sweep", "hma_sweep_options");
    if (rc) return rc;
    /* opts->struct_size >= HMA__SWEEP_OPTIONS_V1: search.struct_size is readable */
    size_t room = opts->struct_size - offsetof(hma_sweep_options, search);
    if (opts->search.struct_size > room)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "hma_sweep: hma_sweep_options.search.struct_size is %zu, larger than the %zu bytes "
                         "hma_sweep_options.struct_size (%zu) leaves it: initialise both with "
                         "hma_sweep_options_init()",
                         opts->search.struct_size, room, opts->struct_size);
    return hma__search_opts_read(&o->search, &opts->search, "hma_sweep", "hma_sweep_options.search");
}

int hma_sweep(const hma_sweep_options *opts_in, hma_eval_fn fn, void *user, hma_points **out) {
    if (out) *out = NULL;
    if (!opts_in || !out || !fn) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_sweep: NULL argument");
    hma_sweep_options ov;
    int rc = read_sweep_opts(&ov, opts_in);
    if (rc) return rc;
    const hma_sweep_options *opts = &ov;
    if ((opts->n_ma && !opts->ma_ratios) || (opts->n_means && !opts->hma_means))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_sweep: ma_ratios or hma_means NULL with a nonzero count");
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
    hma_points *pts = hma__points_new(k, so->n_scores, so->weights);
    double *vec = hma__malloc(k * sizeof(double));
    double *sc = hma__malloc(so->n_scores * sizeof(double));
    if (!pts || !vec || !sc) {
        hma_points_free(pts);
        hma__free(vec);
        hma__free(sc);
        return hma__fail(HMA_ERR_NO_MEMORY, "hma_sweep: out of memory");
    }
    /* Check every search's bounds before evaluating anything. */
    for (size_t i = 0; i < opts->n_means && !rc; i++) rc = hma__search_check_set(so, opts->hma_means[i]);
    for (size_t i = 0; i < opts->n_ma && !rc; i++) {
        for (size_t j = 0; j < k; j++) vec[j] = opts->ma_ratios[i];
        int dup = 0;
        for (size_t p = 0; p < pts->n && !dup; p++) dup = hma__maxdist(k, vec, pts->ratios + p * k) <= so->tolerance;
        if (dup) continue;
        for (size_t s = 0; s < so->n_scores; s++) sc[s] = NAN;
        int r = fn(user, k, vec, so->n_scores, sc);
        if (r) {
            char who[96];
            snprintf(who, sizeof who, "hma_sweep: evaluation callback at MA ratio %g", vec[0]);
            rc = hma__callback_result(r, who);
        } else {
            rc = hma__points_add(pts, vec, sc, HMA_POINT_MA, i);
        }
    }
    for (size_t i = 0; i < opts->n_means && !rc; i++)
        rc = hma__search_mean(so, opts->hma_means[i], so->seed + i, pts, total, fn, user, i);
    hma__free(vec);
    hma__free(sc);
    if (rc && rc != HMA_ERR_CANCELLED && rc != HMA_ERR_CALLBACK) {
        hma_points_free(pts);
        return rc;
    }
    *out = pts;
    return rc;
}
