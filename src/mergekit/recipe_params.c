/*
 * recipe_params.c - the value of a recipe parameter for one tensor, as
 * mergekit computes it: evaluate_setting (a number, a gradient over the
 * layers, a filter list) and ConfigReader.parameter (source > slice >
 * global, a level that gives nothing falls through). Both in
 * mergekit/config.py; the comments below quote its rules.
 */
#include "mergekit/recipe_config.h"

#include <string.h>

int hma__rsetting_eval(const hma__rsetting *s, const char *tensor_name, double t, double *v) {
    if (!s) return 0;
    switch (s->kind) {
    case HMA__RS_NUMBER: *v = s->num; return 1;
    case HMA__RS_GRADIENT: {
        if (s->n_anchors == 0) return 0; /* refused at parse time; never read past the end */
        /* mergekit: scaled = t * (len - 1); i0 = int(scaled);
         * i1 = min(len - 1, i0 + 1); frac = scaled - i0;
         * (1 - frac) * g[i0] + frac * g[i1]. t is in [0, 1] there (layer
         * j of n: j / (n - 1), or 1); clamping keeps an out-of-range t
         * (where Python would raise IndexError) inside the list. */
        if (!(t >= 0.0)) t = 0.0; /* also NaN */
        if (t > 1.0) t = 1.0;
        double scaled = t * (double)(s->n_anchors - 1);
        size_t i0 = (size_t)scaled; /* int() truncates; scaled >= 0 */
        if (i0 > s->n_anchors - 1) i0 = s->n_anchors - 1;
        size_t i1 = i0 + 1 < s->n_anchors ? i0 + 1 : s->n_anchors - 1;
        double frac = scaled - (double)i0;
        *v = (1.0 - frac) * s->anchors[i0] + frac * s->anchors[i1];
        return 1;
    }
    case HMA__RS_FILTERS:
        /* the first entry whose filter is absent, "*", or a substring of the
         * tensor name decides, even when its value gives nothing; no match
         * gives nothing (Python's `tensor_name and cond.filter in
         * tensor_name`: an empty or absent name matches only absent/"*") */
        for (size_t i = 0; i < s->n_filters; i++) {
            const hma__rfilter *f = &s->filters[i];
            if (!f->filter || strcmp(f->filter, "*") == 0 ||
                (tensor_name && tensor_name[0] && strstr(tensor_name, f->filter)))
                return hma__rsetting_eval(f->value, tensor_name, t, v);
        }
        return 0;
    }
    return 0;
}

static const hma__rsetting *find_param(const hma__rparams *ps, const char *name, int *line) {
    for (size_t i = 0; i < ps->n; i++)
        if (strcmp(ps->p[i].name, name) == 0) {
            if (line) *line = ps->p[i].s.line;
            return &ps->p[i].s;
        }
    return NULL;
}

static int level(const hma__rparams *ps, const char *name, const char *tensor_name, double t, double *v,
                 int *line) {
    int l = 0;
    const hma__rsetting *s = find_param(ps, name, &l);
    if (!s || !hma__rsetting_eval(s, tensor_name, t, v)) return 0;
    if (line) *line = l;
    return 1;
}

int hma__rcfg_param(const hma__rcfg *cfg, size_t slice, const char *model, const char *name,
                    const char *tensor_name, double t, double *v, int *line) {
    if (!cfg || !name) return 0;
    if (slice < cfg->n_slices) {
        const hma__rslice *sl = &cfg->slices[slice];
        /* mergekit: `for s in slice_out.sources: if s.model == model and ...`:
         * every source of that model, in order, until one gives a value */
        if (model)
            for (size_t i = 0; i < sl->n_src; i++)
                if (strcmp(sl->src[i].model, model) == 0 && level(&sl->src[i].params, name, tensor_name, t, v, line))
                    return 1;
        if (level(&sl->params, name, tensor_name, t, v, line)) return 1;
    }
    return level(&cfg->params, name, tensor_name, t, v, line);
}
