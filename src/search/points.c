/*
 * points.c - point lists (hma_points): evaluated ratio vectors with their
 * scores, weighted objective, origin, and the best point.
 */
#include "search/search_impl.h"

#include <math.h>
#include <string.h>

hma_points *hma__points_new(size_t k, size_t ns, const double *weights) {
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

int hma__points_reserve(hma_points *p, size_t want) {
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
    hma_point_kind *kd = hma__realloc(p->kind, cap * sizeof *kd);
    if (kd) p->kind = kd;
    size_t *rn = hma__realloc(p->run, cap * sizeof(size_t));
    if (rn) p->run = rn;
    if (!r || !s || !o || !kd || !rn) return hma__fail(HMA_ERR_NO_MEMORY, "hma_points: out of memory for %zu points", want);
    p->cap = cap;
    return HMA_OK;
}

int hma__points_add(hma_points *p, const double *ratios, const double *scores, hma_point_kind kind,
                    size_t run) {
    int rc = hma__points_reserve(p, p->n + 1);
    if (rc) return rc;
    memcpy(p->ratios + p->n * p->k, ratios, p->k * sizeof(double));
    memcpy(p->scores + p->n * p->ns, scores, p->ns * sizeof(double));
    p->obj[p->n] = weighted(p, scores);
    p->kind[p->n] = kind;
    p->run[p->n] = run;
    p->n++;
    return HMA_OK;
}

hma_points *hma__points_copy(const hma_points *src) {
    hma_points *p = hma__points_new(src->k, src->ns, src->weights);
    if (!p || hma__points_reserve(p, src->n)) {
        hma_points_free(p);
        return NULL;
    }
    if (src->n) {
        memcpy(p->ratios, src->ratios, src->n * src->k * sizeof(double));
        memcpy(p->scores, src->scores, src->n * src->ns * sizeof(double));
        memcpy(p->obj, src->obj, src->n * sizeof(double));
        memcpy(p->kind, src->kind, src->n * sizeof *p->kind);
        memcpy(p->run, src->run, src->n * sizeof(size_t));
    }
    p->n = src->n;
    return p;
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
int hma_points_info(const hma_points *p, size_t i, hma_point_kind *kind, size_t *run) {
    if (!p || i >= p->n)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_points_info: point %zu out of range (%zu points)", i, p ? p->n : 0);
    if (kind) *kind = p->kind[i];
    if (run) *run = p->run[i];
    return HMA_OK;
}

size_t hma_points_best(const hma_points *p) {
    size_t best = HMA_NPOS;
    if (!p) return best;
    for (size_t i = 0; i < p->n; i++)
        if (!isnan(p->obj[i]) && (best == HMA_NPOS || p->obj[i] < p->obj[best])) best = i;
    return best;
}
