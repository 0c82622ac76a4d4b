/*
 * weights.c - the merge plan's weights: per-group rows or ratios, their
 * generation number, the gradient setters, and the thread-safe getters
 * (including the effective weights of one row). Everything here takes the
 * weight lock (plan->ws->mu), never the structure.
 */
#include "merge/plan.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int hma__plan_reset_weights(hma_plan *p, size_t K) {
    double *W = hma__malloc(K * p->n_in * sizeof *W);
    double *R = hma__malloc(K * sizeof *R);
    if (!W || !R) {
        hma__free(W);
        hma__free(R);
        return hma__fail(HMA_ERR_NO_MEMORY, "merge plan: out of memory for %zu groups", K);
    }
    for (size_t k = 0; k < K; k++) {
        R[k] = 0.5;
        for (size_t j = 0; j < p->n_in; j++) W[k * p->n_in + j] = p->n_in == 2 ? 0.5 : 1.0 / (double)p->n_in;
    }
    hma__wstate *s = p->ws;
    pthread_mutex_lock(&s->mu);
    hma__free(s->W);
    hma__free(s->ratios);
    s->W = W;
    s->ratios = R;
    s->ratio_mode = p->n_in == 2;
    p->K = K;
    s->gen++;
    pthread_mutex_unlock(&s->mu);
    return HMA_OK;
}


/* ---- weights ------------------------------------------------------------------------ */

static int check_finite_vec(const double *v, size_t n, const char *fn) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: value %zu is not finite", fn, i);
    return HMA_OK;
}

int hma_plan_set_weights(hma_plan *p, const double *w, size_t n) {
    HMA__CHECK_PLAN(p, "hma_plan_set_weights");
    if (!w) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_weights: NULL weights");
    if (n != p->K * p->n_in)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "hma_plan_set_weights: %zu values (expected %zu groups x %zu inputs = %zu)", n,
                         p->K, p->n_in, p->K * p->n_in);
    int rc = check_finite_vec(w, n, "hma_plan_set_weights");
    if (rc) return rc;
    hma__wstate *s = p->ws;
    pthread_mutex_lock(&s->mu);
    memcpy(s->W, w, n * sizeof *w);
    s->ratio_mode = 0;
    s->gen++;
    pthread_mutex_unlock(&s->mu);
    return HMA_OK;
}

int hma_plan_set_ratios(hma_plan *p, const double *a, size_t n) {
    HMA__CHECK_PLAN(p, "hma_plan_set_ratios");
    if (!a) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_ratios: NULL ratios");
    if (p->n_in != 2)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_ratios: ratios need exactly 2 inputs (the plan has %zu)",
                         p->n_in);
    if (n != p->K)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_ratios: %zu ratios (expected one per group: %zu)", n,
                         p->K);
    int rc = check_finite_vec(a, n, "hma_plan_set_ratios");
    if (rc) return rc;
    hma__wstate *s = p->ws;
    pthread_mutex_lock(&s->mu);
    for (size_t k = 0; k < n; k++) {
        s->ratios[k] = a[k];
        s->W[2 * k] = 1.0 - a[k];
        s->W[2 * k + 1] = a[k];
    }
    s->ratio_mode = 1;
    s->gen++;
    pthread_mutex_unlock(&s->mu);
    return HMA_OK;
}

int hma_plan_set_ratio(hma_plan *p, double a) {
    HMA__CHECK_PLAN(p, "hma_plan_set_ratio");
    double *v = hma__malloc(p->K * sizeof *v);
    if (!v) return hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_set_ratio: out of memory");
    for (size_t k = 0; k < p->K; k++) v[k] = a;
    int rc = hma_plan_set_ratios(p, v, p->K);
    hma__free(v);
    return rc;
}

static double group_pos(size_t k, size_t K) { return K > 1 ? (double)k / (double)(K - 1) : 0.0; }

int hma_plan_set_ratio_gradient(hma_plan *p, const double *anchors, size_t n) {
    HMA__CHECK_PLAN(p, "hma_plan_set_ratio_gradient");
    if (!anchors || n == 0) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_ratio_gradient: no anchors");
    int rc = check_finite_vec(anchors, n, "hma_plan_set_ratio_gradient");
    if (rc) return rc;
    double *v = hma__malloc(p->K * sizeof *v);
    if (!v) return hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_set_ratio_gradient: out of memory");
    for (size_t k = 0; k < p->K; k++) v[k] = hma_gradient_eval(anchors, n, group_pos(k, p->K));
    rc = hma_plan_set_ratios(p, v, p->K);
    hma__free(v);
    return rc;
}

int hma_plan_set_weight_gradient(hma_plan *p, const double *anchors, size_t n_anchors) {
    HMA__CHECK_PLAN(p, "hma_plan_set_weight_gradient");
    if (!anchors || n_anchors == 0 || n_anchors > SIZE_MAX / p->n_in / sizeof(double))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_weight_gradient: no anchors");
    size_t N = p->n_in;
    int rc = check_finite_vec(anchors, n_anchors * N, "hma_plan_set_weight_gradient");
    if (rc) return rc;
    double *col = hma__malloc(n_anchors * sizeof *col);
    double *w = hma__malloc(p->K * N * sizeof *w);
    if (!col || !w) {
        hma__free(col);
        hma__free(w);
        return hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_set_weight_gradient: out of memory");
    }
    for (size_t j = 0; j < N; j++) {
        for (size_t a = 0; a < n_anchors; a++) col[a] = anchors[a * N + j];
        for (size_t k = 0; k < p->K; k++) w[k * N + j] = hma_gradient_eval(col, n_anchors, group_pos(k, p->K));
    }
    rc = hma_plan_set_weights(p, w, p->K * N);
    hma__free(col);
    hma__free(w);
    return rc;
}

int hma_plan_get_weights(const hma_plan *p, double *w, size_t n, uint64_t *generation) {
    HMA__CHECK_PLAN(p, "hma_plan_get_weights");
    if (!w || n < p->K * p->n_in)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_get_weights: room for %zu values, need %zu", w ? n : 0,
                         p->K * p->n_in);
    pthread_mutex_lock(&p->ws->mu);
    memcpy(w, p->ws->W, p->K * p->n_in * sizeof *w);
    if (generation) *generation = p->ws->gen;
    pthread_mutex_unlock(&p->ws->mu);
    return HMA_OK;
}

void hma__plan_mean_row_locked(const hma_plan *p, double *w) {
    size_t N = p->n_in, K = p->K;
    const hma__wstate *ws = p->ws;
    if (ws->ratio_mode) {
        double s = 0.0;
        for (size_t k = 0; k < K; k++) s += ws->ratios[k];
        double abar = s / (double)K;
        w[0] = 1.0 - abar;
        w[1] = abar;
        return;
    }
    for (size_t j = 0; j < N; j++) {
        double s = 0.0;
        for (size_t k = 0; k < K; k++) s += ws->W[k * N + j];
        w[j] = s / (double)K;
    }
}

void hma__plan_group_row(const hma_plan *p, int group, double *w, uint64_t *gen, int *ratio_mode) {
    hma__wstate *s = p->ws;
    pthread_mutex_lock(&s->mu);
    if (ratio_mode) *ratio_mode = s->ratio_mode;
    if (group >= 0 && (size_t)group < p->K)
        memcpy(w, s->W + (size_t)group * p->n_in, p->n_in * sizeof *w);
    else
        hma__plan_mean_row_locked(p, w);
    if (gen) *gen = s->gen;
    pthread_mutex_unlock(&s->mu);
}

int hma_plan_mean_weights(const hma_plan *p, double *w, size_t n) {
    HMA__CHECK_PLAN(p, "hma_plan_mean_weights");
    if (!w || n < p->n_in)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_mean_weights: room for %zu values, need %zu", w ? n : 0,
                         p->n_in);
    hma__plan_group_row(p, HMA_GROUP_MEAN, w, NULL, NULL);
    return HMA_OK;
}

uint64_t hma_plan_generation(const hma_plan *p) {
    if (!p) return 0;
    pthread_mutex_lock(&p->ws->mu);
    uint64_t g = p->ws->gen;
    pthread_mutex_unlock(&p->ws->mu);
    return g;
}

/* Build the operation of a MERGE row from its raw weight row (stats must be
 * ready for SLERP). */
int hma__plan_row_op(const hma_plan *p, size_t i, const double *raw, int ratio_mode, hma__mop *op) {
    const hma__prow *row = &p->rows[i];
    switch (p->method) {
    case HMA_METHOD_TASK_ARITHMETIC: return hma__mop_task(op, raw, p->n_in, p->base);
    case HMA_METHOD_SLERP: hma__mop_slerp(op, raw[1], row->stats, NULL); return HMA_OK;
    default: {
        char what[96];
        if (row->group >= 0)
            snprintf(what, sizeof what, "merge plan: group %d", row->group);
        else
            snprintf(what, sizeof what, "merge plan: the mean weights");
        return hma__mop_linear(op, raw, p->n_in, p->normalize && !ratio_mode, what);
    }
    }
}

int hma_plan_tensor_weights(const hma_plan *p, size_t i, double *w, size_t n, uint64_t *generation) {
    HMA__CHECK_PLAN(p, "hma_plan_tensor_weights");
    if (i >= p->n_rows || !w || n < p->n_in)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_tensor_weights: bad row %zu or buffer", i);
    if (p->rows[i].action != HMA_ACTION_MERGE)
        return hma__fail(HMA_ERR_STATE, "hma_plan_tensor_weights: tensor '%s' is not averaged", p->rows[i].name);
    double raw[HMA_KMAX_INPUTS];
    int rmode;
    hma__plan_group_row(p, p->rows[i].group, raw, generation, &rmode);
    if (p->method == HMA_METHOD_SLERP) {
        memcpy(w, raw, p->n_in * sizeof *w);
        return HMA_OK;
    }
    hma__mop op;
    int rc = hma__plan_row_op(p, i, raw, rmode, &op);
    if (rc) return rc;
    memcpy(w, op.wd, p->n_in * sizeof *w);
    return HMA_OK;
}

