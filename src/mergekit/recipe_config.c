/*
 * recipe_config.c - a mergekit recipe's node tree (yaml_tree.c) into the
 * checked configuration hma__rcfg: the keys of mergekit's
 * MergeConfiguration (mergekit/config.py), their types and values, the
 * parameter names of the method (mk_table.c), and the `models:` form
 * normalised into one slice as mergekit/plan.py's normalize_config does.
 *
 * Stricter than mergekit on purpose (pydantic ignores unknown keys and
 * turns "0.5" into 0.5): every unknown key, wrong type, typo'd parameter
 * name and empty or reversed layer range is an error naming the line, so
 * that nothing in a recipe is silently ignored. What mergekit itself
 * ignores (a parameter the method does not take, a global parameter under
 * a model) becomes a note.
 */
#include "mergekit/recipe_config.h"

#include "mergekit/mk.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct rctx {
    hma__rcfg *cfg;
    const char *src; /* source name for messages */
    const hma__mk_info *mi;
    size_t notes_cap;
    int *note_lines; /* to put the notes in line order at the end */
} rctx;

/* ---- messages --------------------------------------------------------------- */

/* A key path for messages ("slices[0].sources[1].layer_range"), cut at
 * PCAP bytes (a cut path still names the place). */
#define PCAP 300
static void pathf(char *buf, const char *fmt, ...) HMA_PRINTF(2, 3);
static void pathf(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, PCAP, fmt, ap);
    va_end(ap);
}

static int fail(const rctx *c, int line, const char *fmt, ...) HMA_PRINTF(3, 4);
static int fail(const rctx *c, int line, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return hma__fail(HMA_ERR_RECIPE, "%s:%d: %s", c->src, line, msg);
}

static int oom(const rctx *c) { return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory reading the recipe", c->src); }

static int note(rctx *c, int line, const char *fmt, ...) HMA_PRINTF(3, 4);
static int note(rctx *c, int line, const char *fmt, ...) {
    char msg[768], full[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "%s:%d: %s", c->src, line, msg);
    hma__rcfg *cfg = c->cfg;
    if (cfg->n_notes == c->notes_cap) {
        size_t nc = c->notes_cap ? 2 * c->notes_cap : 4;
        char **nn = hma__realloc(cfg->notes, nc * sizeof *nn);
        if (!nn) return oom(c);
        cfg->notes = nn;
        int *nl = hma__realloc(c->note_lines, nc * sizeof *nl);
        if (!nl) return oom(c);
        c->note_lines = nl;
        c->notes_cap = nc;
    }
    c->note_lines[cfg->n_notes] = line;
    if (!(cfg->notes[cfg->n_notes] = hma__strdup(full))) return oom(c);
    cfg->n_notes++;
    return HMA_OK;
}

/* "the string 'x'", "the number 0.5", "a list", ... for "expected A, got B". */
static const char *describe(const hma__ynode *n, char buf[112]) {
    char tmp[72];
    if (n->kind == HMA__Y_SEQ) return "a list";
    if (n->kind == HMA__Y_MAP) return "a map";
    hma__yscalar v;
    hma__yscalar_type(n, &v);
    const char *what = v.type == HMA__YT_NULL   ? "nothing (null)"
                       : v.type == HMA__YT_BOOL ? "the boolean"
                       : v.type == HMA__YT_STR  ? (n->quoted ? "the quoted string" : "the string")
                                                : "the number";
    if (v.type == HMA__YT_NULL) return what;
    snprintf(buf, 112, "%s '%s'", what, hma__yclean(n->str, tmp));
    return buf;
}

/* ---- typed values --------------------------------------------------------------- */

/* " (write numbers without quotes)" when n is quoted text that would be a
 * number unquoted: mergekit's pydantic converts it, libhma asks for the
 * number itself. */
static const char *quote_hint(const hma__ynode *n) {
    if (n->kind != HMA__Y_SCALAR || !n->quoted) return "";
    hma__ynode plain = *n;
    plain.quoted = 0;
    hma__yscalar v;
    hma__yscalar_type(&plain, &v);
    int num = v.type == HMA__YT_INT || v.type == HMA__YT_FLOAT || v.numeric;
    return num ? " (write numbers without quotes)" : "";
}

static int is_null(const hma__ynode *n) {
    hma__yscalar v;
    hma__yscalar_type(n, &v);
    return n->kind == HMA__Y_SCALAR && v.type == HMA__YT_NULL;
}

/* A string (PyYAML str). *out is a copy, or NULL for null/absent when
 * allow_null (mergekit's Optional[str]). */
static int get_string(const rctx *c, const hma__ynode *n, const char *path, int allow_null, char **out) {
    char d[112];
    *out = NULL;
    hma__yscalar v;
    hma__yscalar_type(n, &v);
    if (n->kind == HMA__Y_SCALAR && v.type == HMA__YT_NULL && allow_null) return HMA_OK;
    if (n->kind != HMA__Y_SCALAR || v.type != HMA__YT_STR)
        return fail(c, n->line, "%s: expected a string, got %s%s", path, describe(n, d),
                    n->kind == HMA__Y_SCALAR && v.type != HMA__YT_NULL ? " (quote it to make it a string)" : "");
    if (!(*out = hma__strdup(n->str))) return oom(c);
    return HMA_OK;
}

/* A number: a YAML int, float or boolean (pydantic makes true 1.0), or a
 * plain text Python's float() reads (1e-5). Quoted text is refused. */
static int get_number(const rctx *c, const hma__ynode *n, const char *path, double *out) {
    char d[112];
    hma__yscalar v;
    hma__yscalar_type(n, &v);
    int ok = n->kind == HMA__Y_SCALAR &&
             (v.type == HMA__YT_INT || v.type == HMA__YT_FLOAT || v.type == HMA__YT_BOOL || v.numeric);
    if (!ok) return fail(c, n->line, "%s: expected a number, got %s%s", path, describe(n, d), quote_hint(n));
    if (!isfinite(v.num)) return fail(c, n->line, "%s: expected a finite number, got %s", path, describe(n, d));
    *out = v.num;
    return HMA_OK;
}

static int get_int(const rctx *c, const hma__ynode *n, const char *path, long *out) {
    char d[112];
    hma__yscalar v;
    hma__yscalar_type(n, &v);
    if (n->kind != HMA__Y_SCALAR || v.type != HMA__YT_INT)
        return fail(c, n->line, "%s: expected an integer, got %s", path, describe(n, d));
    if (!v.int_ok || v.ival > 1000000000LL || v.ival < -1000000000LL)
        return fail(c, n->line, "%s: the integer %s is out of range", path, n->str);
    *out = (long)v.ival;
    return HMA_OK;
}

static int need_map(const rctx *c, const hma__ynode *n, const char *path, const char *what) {
    char d[112];
    if (n->kind == HMA__Y_MAP) return HMA_OK;
    return fail(c, n->line, "%s: expected %s, got %s", path, what, describe(n, d));
}

static int unknown_key(const rctx *c, const hma__ynode *m, size_t i, const char *where, const char *allowed) {
    char k[72];
    return fail(c, m->key_lines[i], "%s: unknown key '%s' (allowed: %s)", where, hma__yclean(m->keys[i], k), allowed);
}

/* ---- settings (mergekit's ParameterSetting) ------------------------------------------ */

static void setting_clear(hma__rsetting *s) {
    if (!s) return;
    hma__free(s->anchors);
    for (size_t i = 0; i < s->n_filters; i++) {
        hma__free(s->filters[i].filter);
        setting_clear(s->filters[i].value);
        hma__free(s->filters[i].value);
    }
    hma__free(s->filters);
    memset(s, 0, sizeof *s);
}

static int parse_setting(rctx *c, const hma__ynode *n, const char *path, int allow_filters, hma__rsetting *s);

/* One `- filter: S` / `value: V` entry (mergekit's ConditionalParameter). */
static int parse_filter(rctx *c, const hma__ynode *n, const char *path, hma__rfilter *f) {
    f->line = n->line;
    const hma__ynode *value = NULL;
    for (size_t i = 0; i < n->n; i++) {
        char p[PCAP];
        pathf(p, "%s.%s", path, n->keys[i]);
        if (strcmp(n->keys[i], "filter") == 0) {
            int rc = get_string(c, n->items[i], p, 1, &f->filter);
            if (rc) return rc;
        } else if (strcmp(n->keys[i], "value") == 0) {
            value = n->items[i];
        } else {
            return unknown_key(c, n, i, path, "filter, value");
        }
    }
    if (!value) return fail(c, n->line, "%s: 'value' is missing (an entry is {filter: TEXT, value: NUMBER})", path);
    if (!(f->value = hma__calloc(1, sizeof *f->value))) return oom(c);
    char p[PCAP];
    pathf(p, "%s.value", path);
    return parse_setting(c, value, p, 0, f->value);
}

static int parse_setting(rctx *c, const hma__ynode *n, const char *path, int allow_filters, hma__rsetting *s) {
    char d[112];
    s->line = n->line;
    const char *want = allow_filters ? "a number, a list of numbers or a list of {filter, value} maps"
                                     : "a number or a list of numbers";
    if (n->kind == HMA__Y_SCALAR) {
        hma__yscalar v;
        hma__yscalar_type(n, &v);
        if (!(v.type == HMA__YT_INT || v.type == HMA__YT_FLOAT || v.type == HMA__YT_BOOL || v.numeric))
            return fail(c, n->line, "%s: expected %s, got %s%s", path, want, describe(n, d), quote_hint(n));
        s->kind = HMA__RS_NUMBER;
        return get_number(c, n, path, &s->num);
    }
    if (n->kind == HMA__Y_MAP) {
        if (!allow_filters) return fail(c, n->line, "%s: expected %s, got a map", path, want);
        /* pydantic accepts a lone ConditionalParameter, but mergekit's
         * evaluate_setting then raises "Unexpected setting value" */
        return fail(c, n->line, "%s: a {filter, value} map must be an entry of a list ('- filter: ...'); "
                    "mergekit accepts it here but fails when it evaluates it", path);
    }
    if (n->n == 0) return fail(c, n->line, "%s: an empty list (a gradient needs at least 1 number)", path);
    size_t n_scalar = 0, n_map = 0;
    for (size_t i = 0; i < n->n; i++) {
        const hma__ynode *it = n->items[i];
        if (it->kind == HMA__Y_SEQ) return fail(c, it->line, "%s[%zu]: a list inside a list", path, i);
        if (it->kind == HMA__Y_MAP) n_map++;
        else n_scalar++;
    }
    if (n_map && n_scalar) {
        size_t a = 0, b = 0;
        for (size_t i = 0; i < n->n; i++) {
            if (n->items[i]->kind == HMA__Y_MAP) b = i;
            else a = i;
        }
        return fail(c, n->line, "%s: the list mixes numbers (line %d) and {filter, value} maps (line %d)", path,
                    n->items[a]->line, n->items[b]->line);
    }
    if (n_scalar) {
        s->kind = HMA__RS_GRADIENT;
        if (!(s->anchors = hma__calloc(n->n, sizeof *s->anchors))) return oom(c);
        for (size_t i = 0; i < n->n; i++) {
            char p[PCAP];
            pathf(p, "%s[%zu]", path, i);
            int rc = get_number(c, n->items[i], p, &s->anchors[i]);
            if (rc) return rc;
            s->n_anchors++;
        }
        return HMA_OK;
    }
    if (!allow_filters)
        return fail(c, n->line, "%s: expected %s, got a list of maps (filter lists do not nest)", path, want);
    s->kind = HMA__RS_FILTERS;
    if (!(s->filters = hma__calloc(n->n, sizeof *s->filters))) return oom(c);
    for (size_t i = 0; i < n->n; i++) {
        char p[PCAP];
        pathf(p, "%s[%zu]", path, i);
        s->n_filters++;
        int rc = parse_filter(c, n->items[i], p, &s->filters[i]);
        if (rc) return rc;
    }
    return HMA_OK;
}

static void params_clear(hma__rparams *ps) {
    for (size_t i = 0; i < ps->n; i++) {
        hma__free(ps->p[i].name);
        setting_clear(&ps->p[i].s);
    }
    hma__free(ps->p);
    ps->p = NULL;
    ps->n = 0;
}

/* The names the method takes, for "(ties takes: ...)". */
static void method_params(const hma__mk_info *mi, char *buf, size_t cap) {
    size_t j = 0;
    buf[0] = 0;
    for (size_t i = 0; i < mi->n_params && j < cap; i++)
        j += (size_t)snprintf(buf + j, cap - j, "%s%s", i ? ", " : "", hma__mk_param_name(mi->params[i].id));
    if (!mi->n_params) snprintf(buf, cap, "none");
}

/* A `parameters:` map. model_level: under a model or a slice source, where
 * mergekit reads only the per-model ("tensor") parameters. */
static int parse_params(rctx *c, const hma__ynode *n, const char *path, int model_level, hma__rparams *out) {
    if (is_null(n)) return HMA_OK;
    int rc = need_map(c, n, path, "a map of parameter names to values");
    if (rc) return rc;
    if (!(out->p = hma__calloc(n->n ? n->n : 1, sizeof *out->p))) return oom(c);
    for (size_t i = 0; i < n->n; i++) {
        const char *name = n->keys[i];
        char p[PCAP], k[72], list[256];
        pathf(p, "%s.%s", path, hma__yclean(name, k));
        int pid = hma__mk_param_from_name(name);
        if (pid < 0) {
            method_params(c->mi, list, sizeof list);
            return fail(c, n->key_lines[i], "%s: unknown parameter '%s' (%s takes: %s)", path, k, c->mi->name, list);
        }
        hma__rsetting s;
        memset(&s, 0, sizeof s);
        rc = parse_setting(c, n->items[i], p, 1, &s);
        if (rc) {
            setting_clear(&s);
            return rc;
        }
        const hma__mk_pdef *pd = hma__mk_pdef_of(c->mi, (hma__mk_param)pid);
        if (!pd || (model_level && !pd->per_model)) {
            setting_clear(&s);
            if (!pd)
                rc = note(c, n->key_lines[i], "%s: parameter '%s' is not used by %s; ignored, as mergekit does", path,
                          k, c->mi->name);
            else
                rc = note(c, n->key_lines[i],
                          "%s: '%s' is a global parameter of %s: mergekit reads it only from the slice's or the "
                          "top-level parameters; ignored here, as mergekit does",
                          path, k, c->mi->name);
            if (rc) return rc;
            continue;
        }
        hma__rparam *dst = &out->p[out->n];
        if (!(dst->name = hma__strdup(name))) {
            setting_clear(&s);
            return oom(c);
        }
        dst->line = n->key_lines[i];
        dst->s = s;
        out->n++;
    }
    return HMA_OK;
}

/* ---- models, slices, sources ---------------------------------------------------------- */

static void source_clear(hma__rsource *s) {
    hma__free(s->model);
    params_clear(&s->params);
}

static int parse_layer_range(const rctx *c, const hma__ynode *n, const char *path, hma__rsource *s) {
    char d[112];
    if (n->kind != HMA__Y_SEQ || n->n != 2) {
        if (n->kind == HMA__Y_SEQ)
            return fail(c, n->line, "%s: expected [first, end] (2 integers), got a list of %zu", path, n->n);
        return fail(c, n->line, "%s: expected [first, end] (2 integers), got %s", path, describe(n, d));
    }
    char p[PCAP];
    pathf(p, "%s[0]", path);
    int rc = get_int(c, n->items[0], p, &s->lr0);
    if (rc) return rc;
    pathf(p, "%s[1]", path);
    if ((rc = get_int(c, n->items[1], p, &s->lr1))) return rc;
    /* mergekit plans range(a, b) of layers: a reversed or empty range makes
     * no layer at all, silently; negative layers index from the end */
    if (s->lr0 < 0) return fail(c, n->line, "%s: the first layer %ld is negative", path, s->lr0);
    if (s->lr1 <= s->lr0)
        return fail(c, n->line, "%s: [%ld, %ld] holds no layer (expected first < end)", path, s->lr0, s->lr1);
    s->has_range = 1;
    return HMA_OK;
}

/* One entry of `models:` (with_range 0) or of a slice's `sources:` (1). */
static int parse_source(rctx *c, const hma__ynode *n, const char *path, int with_range, hma__rsource *s) {
    int rc = need_map(c, n, path, with_range ? "a map {model, layer_range, parameters}" : "a map {model, parameters}");
    if (rc) return rc;
    s->line = n->line;
    const hma__ynode *params = NULL, *range = NULL;
    for (size_t i = 0; i < n->n; i++) {
        const char *k = n->keys[i];
        char p[PCAP];
        pathf(p, "%s.%s", path, k);
        if (strcmp(k, "model") == 0) {
            if ((rc = get_string(c, n->items[i], p, 0, &s->model))) return rc;
            if (!s->model[0]) return fail(c, n->items[i]->line, "%s: an empty model name", p);
        } else if (strcmp(k, "parameters") == 0) {
            params = n->items[i];
        } else if (with_range && strcmp(k, "layer_range") == 0) {
            range = n->items[i];
        } else {
            return unknown_key(c, n, i, path, with_range ? "model, layer_range, parameters" : "model, parameters");
        }
    }
    if (!s->model) return fail(c, n->line, "%s: 'model' is missing", path);
    if (with_range) {
        char p[PCAP];
        pathf(p, "%s.layer_range", path);
        if (!range) return fail(c, n->line, "%s: 'layer_range' is missing", path);
        if ((rc = parse_layer_range(c, range, p, s))) return rc;
    }
    if (params) {
        char p[PCAP];
        pathf(p, "%s.parameters", path);
        if ((rc = parse_params(c, params, p, 1, &s->params))) return rc;
    }
    return HMA_OK;
}

static int parse_slice(rctx *c, const hma__ynode *n, const char *path, hma__rslice *sl) {
    int rc = need_map(c, n, path, "a map {sources, base_model, parameters}");
    if (rc) return rc;
    sl->line = n->line;
    const hma__ynode *sources = NULL, *params = NULL;
    for (size_t i = 0; i < n->n; i++) {
        const char *k = n->keys[i];
        char p[PCAP];
        pathf(p, "%s.%s", path, k);
        if (strcmp(k, "sources") == 0) {
            sources = n->items[i];
        } else if (strcmp(k, "base_model") == 0) {
            if ((rc = get_string(c, n->items[i], p, 1, &sl->base_model))) return rc;
        } else if (strcmp(k, "parameters") == 0) {
            params = n->items[i];
        } else if (strcmp(k, "residual_weight") == 0) {
            if (is_null(n->items[i])) continue;
            return fail(c, n->key_lines[i],
                        "%s: mergekit accepts residual_weight but its planner never uses it; remove it", p);
        } else {
            return unknown_key(c, n, i, path, "sources, base_model, parameters");
        }
    }
    char p[PCAP];
    pathf(p, "%s.sources", path);
    if (!sources) return fail(c, n->line, "%s: 'sources' is missing", path);
    char d[112];
    if (sources->kind != HMA__Y_SEQ)
        return fail(c, sources->line, "%s: expected a list of sources, got %s", p, describe(sources, d));
    if (sources->n == 0) return fail(c, sources->line, "%s: an empty list (a slice needs a source)", p);
    if (!(sl->src = hma__calloc(sources->n, sizeof *sl->src))) return oom(c);
    for (size_t i = 0; i < sources->n; i++) {
        char q[PCAP];
        pathf(q, "%s[%zu]", p, i);
        sl->n_src++;
        if ((rc = parse_source(c, sources->items[i], q, 1, &sl->src[i]))) return rc;
    }
    /* mergekit/plan.py plan_slice: "All inputs to a slice must contain the
     * same number of layers" */
    for (size_t i = 1; i < sl->n_src; i++) {
        long l0 = sl->src[0].lr1 - sl->src[0].lr0, li = sl->src[i].lr1 - sl->src[i].lr0;
        if (li != l0)
            return fail(c, sl->src[i].line,
                        "%s[%zu].layer_range: %ld layers, but source 0 (line %d) has %ld: all sources of a slice "
                        "take the same number of layers",
                        p, i, li, sl->src[0].line, l0);
    }
    if (params) {
        pathf(p, "%s.parameters", path);
        if ((rc = parse_params(c, params, p, 0, &sl->params))) return rc;
    }
    return HMA_OK;
}

/* ---- small top-level values ----------------------------------------------------------------- */

/* mergekit/common.py dtype_from_name: an optional "torch." prefix, then
 * bfloat16, float16, float32 (int64 is a torch dtype libhma cannot merge
 * in); float64 is libhma's addition. Empty means unset, as there. */
static int parse_dtype(const rctx *c, const hma__ynode *n, const char *key, hma_dtype *out, int *line) {
    char *s = NULL;
    int rc = get_string(c, n, key, 1, &s);
    if (rc) return rc;
    *out = HMA_DTYPE_COUNT;
    *line = n->line;
    if (!s || !s[0]) {
        hma__free(s);
        return HMA_OK;
    }
    const char *name = strncmp(s, "torch.", 6) == 0 ? s + 6 : s;
    static const struct {
        const char *name;
        hma_dtype dt;
    } k_names[] = {{"float32", HMA_DTYPE_F32}, {"float16", HMA_DTYPE_F16}, {"bfloat16", HMA_DTYPE_BF16},
                   {"float64", HMA_DTYPE_F64}};
    for (size_t i = 0; i < sizeof k_names / sizeof k_names[0]; i++)
        if (strcmp(name, k_names[i].name) == 0) *out = k_names[i].dt;
    if (*out == HMA_DTYPE_COUNT) {
        char b[72];
        rc = fail(c, n->line, "%s: '%s' is not a dtype libhma merges in (float32, float16, bfloat16, float64)", key,
                  hma__yclean(s, b));
    }
    hma__free(s);
    return rc;
}

/* mergekit's TokenizerConfig: {source, tokens, pad_to_multiple_of}. Read
 * and checked; tokens and padding are not applied (notes say so). */
static int parse_tokenizer(rctx *c, const hma__ynode *n) {
    hma__rcfg *cfg = c->cfg;
    int rc = need_map(c, n, "tokenizer", "a map {source, tokens, pad_to_multiple_of}");
    if (rc) return rc;
    for (size_t i = 0; i < n->n; i++) {
        const char *k = n->keys[i];
        const hma__ynode *v = n->items[i];
        char p[PCAP];
        pathf(p, "tokenizer.%s", k);
        if (strcmp(k, "source") == 0) {
            if ((rc = get_string(c, v, p, 0, &cfg->tokenizer_source))) return rc;
        } else if (strcmp(k, "tokens") == 0) {
            if (is_null(v)) continue;
            if ((rc = need_map(c, v, p, "a map of token -> {source, force}"))) return rc;
            for (size_t t = 0; t < v->n; t++) {
                char q[PCAP], kk[72];
                pathf(q, "%s.%s", p, hma__yclean(v->keys[t], kk));
                const hma__ynode *e = v->items[t];
                if ((rc = need_map(c, e, q, "a map {source, force}"))) return rc;
                for (size_t j = 0; j < e->n; j++) {
                    const hma__ynode *ev = e->items[j];
                    char d[112];
                    if (strcmp(e->keys[j], "source") == 0) {
                        /* a model, {kind: model_token | zero, ...} or null */
                        if (ev->kind == HMA__Y_SEQ)
                            return fail(c, ev->line, "%s.source: expected a model or a map, got a list", q);
                    } else if (strcmp(e->keys[j], "force") == 0) {
                        hma__yscalar sv;
                        hma__yscalar_type(ev, &sv);
                        if (ev->kind != HMA__Y_SCALAR || sv.type != HMA__YT_BOOL)
                            return fail(c, ev->line, "%s.force: expected true or false, got %s", q, describe(ev, d));
                    } else {
                        return unknown_key(c, e, j, q, "source, force");
                    }
                }
            }
            if (v->n && (rc = note(c, n->key_lines[i],
                                   "tokenizer.tokens: read but not applied: libhma does not build embeddings "
                                   "for added tokens")))
                return rc;
        } else if (strcmp(k, "pad_to_multiple_of") == 0) {
            if (is_null(v)) continue;
            long pad = 0;
            if ((rc = get_int(c, v, p, &pad))) return rc;
            if (pad <= 0) return fail(c, v->line, "%s: expected a positive integer, got %ld", p, pad);
            if ((rc = note(c, n->key_lines[i],
                           "tokenizer.pad_to_multiple_of: read but not applied: libhma does not pad the vocabulary")))
                return rc;
        } else {
            return unknown_key(c, n, i, "tokenizer", "source, tokens, pad_to_multiple_of");
        }
    }
    /* TokenizerConfig.source defaults to "union" */
    if (!cfg->tokenizer_source && !(cfg->tokenizer_source = hma__strdup("union"))) return oom(c);
    cfg->has_tokenizer = 1;
    return HMA_OK;
}

/* ---- the recipe ------------------------------------------------------------------------------- */

#define TOP_KEYS                                                                                       \
    "merge_method, base_model, models, slices, parameters, dtype, out_dtype, tokenizer_source, tokenizer, " \
    "chat_template"

/* `models:` as one slice over all layers, the base appended when it is not
 * among the models (mergekit/plan.py normalize_config). */
static int parse_models(rctx *c, const hma__ynode *n) {
    hma__rcfg *cfg = c->cfg;
    if (!(cfg->slices = hma__calloc(1, sizeof *cfg->slices))) return oom(c);
    cfg->n_slices = 1;
    hma__rslice *sl = &cfg->slices[0];
    sl->line = n->line;
    if (!(sl->src = hma__calloc(n->n + 1, sizeof *sl->src))) return oom(c);
    int base_listed = 0;
    for (size_t i = 0; i < n->n; i++) {
        char p[PCAP];
        pathf(p, "models[%zu]", i);
        sl->n_src++;
        int rc = parse_source(c, n->items[i], p, 0, &sl->src[i]);
        if (rc) return rc;
        if (cfg->base_model && strcmp(sl->src[i].model, cfg->base_model) == 0) base_listed = 1;
    }
    if (cfg->base_model && !base_listed) {
        hma__rsource *b = &sl->src[sl->n_src];
        if (!(b->model = hma__strdup(cfg->base_model))) return oom(c);
        b->line = cfg->base_line;
        sl->n_src++;
    }
    return HMA_OK;
}

static int parse_root(rctx *c, const hma__ynode *root) {
    hma__rcfg *cfg = c->cfg;
    char d[112];
    if (root->kind != HMA__Y_MAP)
        return fail(c, root->line, "a recipe is a map of keys (merge_method, models or slices, ...), got %s",
                    describe(root, d));
    /* the method first: parameter names are checked against it */
    const hma__ynode *models = NULL, *slices = NULL, *params = NULL;
    int models_line = 0, slices_line = 0;
    for (size_t i = 0; i < root->n; i++) {
        if (strcmp(root->keys[i], "merge_method") != 0) continue;
        const hma__ynode *v = root->items[i];
        int rc = get_string(c, v, "merge_method", 0, &cfg->method);
        if (rc) return rc;
        cfg->method_line = v->line;
        if (!(c->mi = hma__mk_find(cfg->method))) {
            char list[400], b[72];
            size_t j = 0;
            for (int m = 0; m < HMA__MK_METHOD_COUNT && j < sizeof list; m++)
                j += (size_t)snprintf(list + j, sizeof list - j, "%s%s", m ? ", " : "",
                                      hma__mk_info_of((hma__mk_method)m)->name);
            return fail(c, v->line, "merge_method: unknown method '%s' (known: %s)", hma__yclean(cfg->method, b), list);
        }
    }
    if (!c->mi) return fail(c, root->line, "merge_method is missing (e.g. merge_method: ties)");
    for (size_t i = 0; i < root->n; i++) {
        const char *k = root->keys[i];
        const hma__ynode *v = root->items[i];
        int rc = HMA_OK;
        if (strcmp(k, "merge_method") == 0) continue;
        if (strcmp(k, "base_model") == 0) {
            rc = get_string(c, v, "base_model", 1, &cfg->base_model);
            if (!rc && cfg->base_model && !cfg->base_model[0])
                rc = fail(c, v->line, "base_model: an empty model name");
            cfg->base_line = v->line;
        } else if (strcmp(k, "models") == 0 || strcmp(k, "slices") == 0) {
            int is_models = k[0] == 'm';
            if (is_null(v)) continue;
            if (v->kind != HMA__Y_SEQ)
                return fail(c, v->line, "%s: expected a list, got %s", k, describe(v, d));
            if (v->n == 0) return fail(c, v->line, "%s: an empty list", k);
            if (is_models) models = v, models_line = root->key_lines[i];
            else slices = v, slices_line = root->key_lines[i];
        } else if (strcmp(k, "parameters") == 0) {
            params = v;
        } else if (strcmp(k, "dtype") == 0) {
            rc = parse_dtype(c, v, "dtype", &cfg->dtype, &cfg->dtype_line);
        } else if (strcmp(k, "out_dtype") == 0) {
            rc = parse_dtype(c, v, "out_dtype", &cfg->out_dtype, &cfg->out_dtype_line);
        } else if (strcmp(k, "tokenizer_source") == 0) {
            char *ts = NULL;
            rc = get_string(c, v, "tokenizer_source", 1, &ts);
            /* mergekit: `if self.tokenizer_source and self.tokenizer` */
            if (!rc && cfg->has_tokenizer && ts && ts[0])
                rc = fail(c, root->key_lines[i], "tokenizer_source: cannot be given with tokenizer (as in mergekit)");
            if (!rc && ts && ts[0]) {
                hma__free(cfg->tokenizer_source);
                cfg->tokenizer_source = ts;
                cfg->has_tokenizer = 1;
                ts = NULL;
            }
            hma__free(ts);
        } else if (strcmp(k, "tokenizer") == 0) {
            if (is_null(v)) continue;
            if (cfg->has_tokenizer)
                return fail(c, root->key_lines[i], "tokenizer: cannot be given with tokenizer_source (as in mergekit)");
            rc = parse_tokenizer(c, v);
        } else if (strcmp(k, "chat_template") == 0) {
            rc = get_string(c, v, "chat_template", 1, &cfg->chat_template);
        } else if (strcmp(k, "modules") == 0) {
            rc = fail(c, root->key_lines[i], "modules: multi-module recipes are not supported by libhma "
                      "(write models or slices)");
        } else {
            rc = unknown_key(c, root, i, "recipe", TOP_KEYS);
        }
        if (rc) return rc;
    }
    if (models && slices)
        return fail(c, models_line > slices_line ? models_line : slices_line,
                    "both models (line %d) and slices (line %d) are given: mergekit takes exactly one", models_line,
                    slices_line);
    if (!models && !slices)
        return fail(c, root->line, "neither models nor slices is given: mergekit needs exactly one of them");
    if (params) {
        int rc = parse_params(c, params, "parameters", 0, &cfg->params);
        if (rc) return rc;
    }
    if (models) return parse_models(c, models);
    cfg->use_slices = 1;
    if (!(cfg->slices = hma__calloc(slices->n, sizeof *cfg->slices))) return oom(c);
    for (size_t i = 0; i < slices->n; i++) {
        char p[PCAP];
        pathf(p, "slices[%zu]", i);
        cfg->n_slices++;
        int rc = parse_slice(c, slices->items[i], p, &cfg->slices[i]);
        if (rc) return rc;
    }
    return HMA_OK;
}

void hma__rcfg_free(hma__rcfg *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_slices; i++) {
        hma__rslice *sl = &c->slices[i];
        for (size_t j = 0; j < sl->n_src; j++) source_clear(&sl->src[j]);
        hma__free(sl->src);
        hma__free(sl->base_model);
        params_clear(&sl->params);
    }
    hma__free(c->slices);
    params_clear(&c->params);
    for (size_t i = 0; i < c->n_notes; i++) hma__free(c->notes[i]);
    hma__free(c->notes);
    hma__free(c->source_name);
    hma__free(c->text);
    hma__free(c->method);
    hma__free(c->base_model);
    hma__free(c->tokenizer_source);
    hma__free(c->chat_template);
    hma__free(c);
}

int hma__rcfg_parse(const char *text, size_t len, const char *source_name, hma__rcfg **out) {
    *out = NULL;
    if (!text) len = 0;
    if (!source_name) source_name = "recipe";
    hma__rcfg *cfg = hma__calloc(1, sizeof *cfg);
    if (!cfg) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory reading the recipe", source_name);
    cfg->dtype = cfg->out_dtype = HMA_DTYPE_COUNT;
    rctx c = {cfg, source_name, NULL, 0, NULL};
    int rc = HMA_OK;
    if (!(cfg->source_name = hma__strdup(source_name)) || !(cfg->text = hma__malloc(len + 1))) {
        rc = oom(&c);
    } else {
        if (len) memcpy(cfg->text, text, len);
        cfg->text[len] = 0;
        cfg->text_len = len;
        hma__ynode *root = NULL;
        rc = hma__yaml_parse(cfg->text, len, source_name, &root);
        if (!rc) rc = parse_root(&c, root);
        hma__ynode_free(root);
    }
    /* notes in the order of their lines (insertion sort: stable, few notes) */
    for (size_t i = 1; !rc && i < cfg->n_notes; i++)
        for (size_t j = i; j > 0 && c.note_lines[j - 1] > c.note_lines[j]; j--) {
            int l = c.note_lines[j];
            c.note_lines[j] = c.note_lines[j - 1];
            c.note_lines[j - 1] = l;
            char *t = cfg->notes[j];
            cfg->notes[j] = cfg->notes[j - 1];
            cfg->notes[j - 1] = t;
        }
    hma__free(c.note_lines);
    if (rc) {
        hma__rcfg_free(cfg);
        return rc;
    }
    *out = cfg;
    return HMA_OK;
}
