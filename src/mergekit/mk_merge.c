/*
 * mk_merge.c - one mergekit tensor merge: the checks of a job before
 * anything is written (hma__mk_validate) and the dispatch to the method
 * (hma__mk_merge). The task-arithmetic family and sce check their own
 * parameters (mk_gta.c, mk_sce.c).
 */
#include "mergekit/mk.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

double hma__mk_get(const hma__mk_job *job, const hma__mk_pv *pv, hma__mk_param p) {
    if (pv && (unsigned)p < HMA__P_COUNT && pv->set[p]) return pv->v[p];
    const hma__mk_pdef *d = hma__mk_pdef_of(hma__mk_info_of(job->method), p);
    return d && d->has_default ? d->def : 0.0;
}

int hma__mk_has(const hma__mk_job *job, const hma__mk_pv *pv, hma__mk_param p) {
    if (pv && (unsigned)p < HMA__P_COUNT && pv->set[p]) return 1;
    const hma__mk_pdef *d = hma__mk_pdef_of(hma__mk_info_of(job->method), p);
    return d && d->has_default;
}

/* Sources other than the base. */
static size_t n_models(const hma__mk_job *job) { return job->n_in - (job->base >= 0 ? 1 : 0); }

/* What each method accepts in mergekit's execute() (mergekit/merge_methods/
 * NAME.py): a one-source tensor is returned as it is by slerp, nuslerp,
 * multislerp, karcher, arcee_fusion (any one source) and by the base-only
 * cases of nearswap, ram, model_stock. */
static int check_counts(const hma__mk_job *job, const char *what, const char *mname) {
    size_t n = job->n_in, k = n_models(job);
    int has_base = job->base >= 0;
    switch (job->method) {
    case HMA__MK_LINEAR:
    case HMA__MK_KARCHER:
        return HMA_OK;
    case HMA__MK_PASSTHROUGH:
        if (n != 1)
            return hma__fail(HMA_ERR_RECIPE, "%s: passthrough takes exactly one model per tensor (got %zu)",
                             what, n);
        return HMA_OK;
    case HMA__MK_SLERP:
    case HMA__MK_ARCEE_FUSION:
        if (n == 1 || (has_base && n == 2)) return HMA_OK;
        return hma__fail(HMA_ERR_RECIPE, "%s: %s takes the base model and exactly one other model (got %zu "
                         "models%s)", what, mname, n, has_base ? " with the base" : " and no base");
    case HMA__MK_NUSLERP:
        if (n == 1 || k == 2) return HMA_OK;
        return hma__fail(HMA_ERR_RECIPE, "%s: nuslerp takes exactly two models besides the optional base "
                         "model (got %zu)", what, k);
    case HMA__MK_MULTISLERP:
        if (k >= 1 || n == 1) return HMA_OK;
        return hma__fail(HMA_ERR_RECIPE, "%s: multislerp needs at least one model besides the base", what);
    case HMA__MK_NEARSWAP:
        if (!has_base) return hma__fail(HMA_ERR_RECIPE, "%s: nearswap needs a base_model", what);
        if (k <= 1) return HMA_OK;
        return hma__fail(HMA_ERR_RECIPE, "%s: nearswap takes the base model and exactly one other model "
                         "(got %zu others)", what, k);
    case HMA__MK_RAM:
    case HMA__MK_RAMPLUS_TL:
        if (!has_base) return hma__fail(HMA_ERR_RECIPE, "%s: %s needs a base_model", what, mname);
        return HMA_OK;
    case HMA__MK_MODEL_STOCK:
        if (!has_base) return hma__fail(HMA_ERR_RECIPE, "%s: model_stock needs a base_model", what);
        if (n == 1 || n >= 3) return HMA_OK;
        return hma__fail(HMA_ERR_RECIPE, "%s: model_stock needs the base model and at least two other "
                         "models (got %zu others)", what, k);
    default:
        return HMA_OK;
    }
}

/* Required parameters present: mergekit's required=True (per-model ones on
 * the models the method reads the value of). */
static int check_required(const hma__mk_job *job, const char *what, const hma__mk_info *mi) {
    for (size_t q = 0; q < mi->n_params; q++) {
        const hma__mk_pdef *d = &mi->params[q];
        if (!d->required) continue;
        const char *pname = hma__mk_param_name(d->id);
        if (!d->per_model) {
            if (!job->global || !job->global->set[d->id])
                return hma__fail(HMA_ERR_RECIPE, "%s: %s needs the parameter '%s'", what, mi->name, pname);
            continue;
        }
        for (size_t i = 0; i < job->n_in; i++) {
            if (job->model[i].set[d->id]) continue;
            if ((long)i == job->base) {
                /* linear merges every source, the base too (mergekit's
                 * LinearMergeTask reads tensor_parameters[base]["weight"]);
                 * nuslerp and multislerp leave the base out. */
                if (job->method != HMA__MK_LINEAR) continue;
                return hma__fail(HMA_ERR_RECIPE, "%s: linear has no base model: give base_model a weight or "
                                 "remove it (model %zu has no '%s')", what, i + 1, pname);
            }
            return hma__fail(HMA_ERR_RECIPE, "%s: %s: model %zu has no '%s' (required)", what, mi->name, i + 1,
                             pname);
        }
    }
    return HMA_OK;
}

/* Values that make the merge impossible, caught before anything is written. */
static int check_values(const hma__mk_job *job, const char *what) {
    switch (job->method) {
    case HMA__MK_LINEAR: {
        if (hma__mk_get(job, job->global, HMA__P_NORMALIZE) == 0.0) return HMA_OK;
        /* The divisor is the float32 sum of the float32 weights (mergekit's
         * weights.sum(dim=0)). */
        float s = 0.0f;
        for (size_t i = 0; i < job->n_in; i++) s += (float)job->model[i].v[HMA__P_WEIGHT];
        if (s == 0.0f)
            return hma__fail(HMA_ERR_RECIPE, "%s: linear: the weights sum to 0 with 'normalize' set (set "
                             "normalize: false or change a 'weight')", what);
        return HMA_OK;
    }
    case HMA__MK_MULTISLERP: {
        if (hma__mk_get(job, job->global, HMA__P_NORMALIZE_WEIGHTS) == 0.0 || n_models(job) < 2) return HMA_OK;
        double s = 0.0;
        for (size_t i = 0; i < job->n_in; i++)
            if ((long)i != job->base) s += job->model[i].v[HMA__P_WEIGHT];
        if (s == 0.0)
            return hma__fail(HMA_ERR_RECIPE, "%s: multislerp: the weights sum to 0 with 'normalize_weights' "
                             "set (change a 'weight')", what);
        return HMA_OK;
    }
    case HMA__MK_KARCHER: {
        double it = hma__mk_get(job, job->global, HMA__P_MAX_ITER);
        if (!(it >= 0.0) || it != floor(it) || it > 1e9)
            return hma__fail(HMA_ERR_RECIPE, "%s: karcher: 'max_iter' must be a whole number >= 0 (got %g)",
                             what, it);
        return HMA_OK;
    }
    default:
        return HMA_OK;
    }
}

int hma__mk_validate(const hma__mk_job *job, const char *what) {
    if (!what) what = job && job->name ? job->name : "mergekit merge";
    const hma__mk_info *mi = job ? hma__mk_info_of(job->method) : NULL;
    if (!mi) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: unknown merge method", what);
    if (job->n_in == 0) return hma__fail(HMA_ERR_RECIPE, "%s: %s: no model has this tensor", what, mi->name);
    if (job->base < -1 || job->base >= (long)job->n_in)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: base index %ld out of range", what, job->base);
    uint64_t prod = 1;
    for (unsigned d = 0; d < job->ndim; d++)
        if (hma__mul_overflows(prod, job->shape[d], &prod))
            return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: shape overflows", what);
    if (prod != job->n)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: shape holds %llu elements, job says %llu", what,
                         (unsigned long long)prod, (unsigned long long)job->n);
    if (mi->validate) return mi->validate(job, what);
    int rc = check_counts(job, what, mi->name);
    if (rc == HMA_OK) rc = check_required(job, what, mi);
    if (rc == HMA_OK) rc = check_values(job, what);
    return rc;
}

/* The source mergekit returns unchanged, or -1: execute() of slerp,
 * nuslerp, karcher and arcee_fusion returns a lone tensor as it is;
 * multislerp (easy_define: `tensors` are the non-base sources) returns its
 * one non-base tensor, the base ignored; nearswap, ram and ramplus_tl
 * return the base when no other model has the tensor; model_stock returns
 * a lone base. */
static long passthrough_source(const hma__mk_job *job) {
    size_t n = job->n_in, k = n_models(job);
    switch (job->method) {
    case HMA__MK_SLERP:
    case HMA__MK_NUSLERP:
    case HMA__MK_KARCHER:
    case HMA__MK_ARCEE_FUSION:
        return n == 1 ? 0 : -1;
    case HMA__MK_MULTISLERP:
        if (n == 1) return 0;
        if (k == 1)
            for (size_t i = 0; i < n; i++)
                if ((long)i != job->base) return (long)i;
        return -1;
    case HMA__MK_NEARSWAP:
    case HMA__MK_RAM:
    case HMA__MK_RAMPLUS_TL:
    case HMA__MK_MODEL_STOCK:
        return k == 0 ? job->base : -1;
    default:
        return -1;
    }
}

/* Cheap, and it keeps every method's assumptions (counts, required
 * values) true even for a caller that skipped validation. */
static int validate_named(const hma__mk_job *job) {
    char what[320];
    snprintf(what, sizeof what, "tensor '%.256s'", job && job->name ? job->name : "?");
    return hma__mk_validate(job, what);
}

int hma__mk_merge(const hma__mk_job *job) {
    int rc = validate_named(job);
    if (rc != HMA_OK) return rc;
    if (job->n == 0) return HMA_OK;
    long only = passthrough_source(job);
    if (only >= 0) {
        memcpy(job->out, job->x[only], job->n * sizeof *job->out); /* n > 0 here */
        return HMA_OK;
    }
    return hma__mk_info_of(job->method)->run(job);
}

int hma__mk_prepare(const hma__mk_job *job, hma__mk_prep **out) {
    *out = NULL;
    int rc = validate_named(job);
    if (rc != HMA_OK || job->n == 0 || hma__mk_info_of(job->method)->run != hma__mk_run_gta) return rc;
    return hma__mk_prepare_gta(job, out);
}

int hma__mk_merge_prepared(const hma__mk_job *job, hma__mk_prep *prep) {
    return prep ? hma__mk_run_gta_prepared(job, prep) : hma__mk_merge(job);
}
