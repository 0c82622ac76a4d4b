/*
 * optimizer.c - hma_ratio_opt: one SGD or Adam step of the authors'
 * gradient method on the logits of the ratio parametrisation (ratios.c).
 */
#include "search/search_impl.h"

#include <math.h>
#include <string.h>

struct hma_ratio_opt {
    size_t k;
    uint64_t t;
    hma_ratio_opt_options o;
    double *l, *m, *v, *work; /* logits, first and second moments, scratch (2k) */
};

void hma_ratio_opt_options_init_size(hma_ratio_opt_options *o, size_t size) {
    hma_ratio_opt_options d;
    memset(&d, 0, sizeof d);
    d.method = HMA_OPT_ADAM;
    d.lr = 2e-5;
    d.mean = 0.5;
    d.eps = HMA_RATIO_EPS_DEFAULT;
    d.penalty = 0;
    d.momentum = 0;
    d.beta1 = 0.9;
    d.beta2 = 0.999;
    d.adam_eps = 1e-8;
    hma__init_size(o, size, &d, sizeof d);
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
    int rc = hma__opts_in(&o, sizeof o, opts, HMA__RATIO_OPT_OPTIONS_V1, "hma_ratio_opt_create",
                          "hma_ratio_opt_options");
    if (rc) return rc;
    if (o.method != HMA_OPT_SGD && o.method != HMA_OPT_ADAM)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_ratio_opt_create: unknown method %d (expected HMA_OPT_SGD or HMA_OPT_ADAM)", (int)o.method);
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
