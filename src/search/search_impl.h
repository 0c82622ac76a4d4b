/*
 * search_impl.h - what the files of src/search/ share: the point list's
 * layout, the exact projection, and the entry points of the search that the
 * sweep runs. Nothing here is exported.
 */
#ifndef HMA_SEARCH_IMPL_H
#define HMA_SEARCH_IMPL_H

#include "internal.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* ---- struct_size of each options struct's first version (hma__opts_in) ---
 * Named by the last member of that version, so that they stay put when
 * members are added at the end. */
#define HMA__RATIO_OPT_OPTIONS_V1 (offsetof(hma_ratio_opt_options, adam_eps) + sizeof(double))
#define HMA__SEARCH_OPTIONS_V1 (offsetof(hma_search_options, prior) + sizeof(const hma_points *))
/* Version 2 added `batch` (a version-1 struct means batch 1). */
/* hma_sweep_options ends with its embedded hma_search_options (see hma.h). */
#define HMA__SWEEP_OPTIONS_V1 (offsetof(hma_sweep_options, search) + HMA__SEARCH_OPTIONS_V1)

/* ---- point lists (points.c) --------------------------------------------- */

struct hma_points {
    size_t k, ns, n, cap;
    double *ratios;  /* n * k */
    double *scores;  /* n * ns */
    double *obj;     /* n: weighted sum (NaN if not finite) */
    hma_point_kind *kind;
    size_t *run;
    double *weights; /* ns */
};

/* An empty list of K ratios and ns scores per point; weights NULL = all 1.
 * NULL on OOM (no message set). */
hma_points *hma__points_new(size_t k, size_t ns, const double *weights);
/* Room for `want` points in all (later adds up to that many cannot fail).
 * HMA_OK, HMA_ERR_NO_MEMORY or HMA_ERR_OVERFLOW (message set). */
int hma__points_reserve(hma_points *p, size_t want);
/* A deep copy of src; NULL on OOM. */
hma_points *hma__points_copy(const hma_points *src);
/* Append a copy of one point. HMA_OK, HMA_ERR_NO_MEMORY or HMA_ERR_OVERFLOW. */
int hma__points_add(hma_points *p, const double *ratios, const double *scores, hma_point_kind kind,
                    size_t run);

/* Max-norm distance between two K-vectors. */
static inline double hma__maxdist(size_t k, const double *a, const double *b) {
    double d = 0;
    for (size_t i = 0; i < k; i++) {
        double e = fabs(a[i] - b[i]);
        if (e > d) d = e;
    }
    return d;
}

/* ---- exact projection (project.c) --------------------------------------- */

/* Project y onto { sum a = target, lo <= a <= hi } into out (may equal y);
 * work holds 2k doubles. Bounds and feasibility already checked. */
void hma__project_core(size_t k, const double *y, double target, const double *lo, const double *hi,
                       double *out, double *work);
/* HMA_ERR_INVALID_ARGUMENT (message names fn) unless every lo_k <= hi_k is
 * finite and the bounds admit the mean. */
int hma__ratio_bounds_check(const char *fn, size_t k, double mean, const double *lo, const double *hi);

/* ---- the derivative-free search (search.c), for the sweep ---------------- */

/* The caller's options into dst (defaults for the fields an older caller
 * lacks; the struct_size rule), then their values checked. `type` names the
 * struct in messages ("hma_search_options", "hma_sweep_options.search"). */
int hma__search_opts_read(hma_search_options *dst, const hma_search_options *src, const char *fn,
                          const char *type);
/* HMA_OK when the set { mean, o's bounds } is not empty (else a message naming hma_search). */
int hma__search_check_set(const hma_search_options *o, double mean);
/* One search (o->batch honoured) of o->budget evaluations at `mean` with PRNG seed `seed`,
 * appending HMA_POINT_SEARCH points with run `run` to pts; the points of pts
 * inside the set count as evaluated. `extra`: points pts may still gain. */
int hma__search_mean(const hma_search_options *o, double mean, uint64_t seed, hma_points *pts,
                     size_t extra, hma_eval_fn fn, void *user, size_t run);

#endif /* HMA_SEARCH_IMPL_H */
