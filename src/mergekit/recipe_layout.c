/*
 * recipe_layout.c - resolve a parsed recipe: open its models, plan its
 * output tensors as mergekit's MergePlanner does (mergekit/plan.py:
 * plan_module, plan_slice, plan_layer, plan_tensor), evaluate every
 * parameter for every tensor and source, and validate each tensor's job, so
 * that every recipe error is found before anything is written.
 */
#include "mergekit/recipe_impl.h"

#include "merge/groups.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

const char *hma__recipe_src(const hma_recipe *r) {
    return r->cfg && r->cfg->source_name ? r->cfg->source_name : "recipe";
}

int hma__recipe_note(hma_recipe *r, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (r->n_notes == r->cap_notes) {
        size_t nc = r->cap_notes ? 2 * r->cap_notes : 8;
        char **nn = hma__realloc(r->notes, nc * sizeof *nn);
        if (!nn) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", hma__recipe_src(r));
        r->notes = nn;
        r->cap_notes = nc;
    }
    char *s = hma__strdup(buf);
    if (!s) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", hma__recipe_src(r));
    r->notes[r->n_notes++] = s;
    return HMA_OK;
}

void hma__recipe_unresolve(hma_recipe *r) {
    for (size_t i = 0; i < r->n_out; i++) {
        hma__free(r->out[i].name);
        hma__free(r->out[i].src);
        hma__free(r->out[i].pv);
    }
    hma__free(r->out);
    r->out = NULL;
    r->n_out = 0;
    for (size_t m = 0; m < r->n_models; m++) {
        hma_store_close(r->models[m].store);
        hma__free(r->models[m].path);
    }
    hma__free(r->models);
    r->models = NULL;
    r->n_models = 0;
    for (size_t k = 0; k < r->n_notes; k++) hma__free(r->notes[k]);
    r->n_notes = 0;
    r->max_n = 0;
    r->out_layers = 0;
    r->cfg_model = 0;
    r->resolved = 0;
}

/* ---- models --------------------------------------------------------------- */

static size_t model_index(const hma_recipe *r, const char *path) {
    for (size_t m = 0; m < r->n_models; m++)
        if (strcmp(r->models[m].path, path) == 0) return m;
    return HMA_NPOS;
}

static int add_model(hma_recipe *r, const char *path, int line, size_t *cap) {
    if (!path || model_index(r, path) != HMA_NPOS) return HMA_OK;
    if (r->n_models == *cap) {
        size_t nc = *cap ? 2 * *cap : 4;
        hma__rmodel *nm = hma__realloc(r->models, nc * sizeof *nm);
        if (!nm) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", hma__recipe_src(r));
        r->models = nm;
        *cap = nc;
    }
    hma__rmodel *m = &r->models[r->n_models];
    memset(m, 0, sizeof *m);
    if (!(m->path = hma__strdup(path))) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", hma__recipe_src(r));
    m->line = line;
    r->n_models++;
    return HMA_OK;
}

static int open_model(hma_recipe *r, hma__rmodel *m) {
    const char *src = hma__recipe_src(r);
    struct stat st;
    if (stat(m->path, &st) != 0) {
        int e = errno;
        if (strchr(m->path, '+'))
            return hma__fail(HMA_ERR_RECIPE,
                             "%s:%d: model '%s': no such file or folder, and mergekit's MODEL+LORA syntax is not "
                             "supported (merge the LoRA into its model first, then name that folder)",
                             src, m->line, m->path);
        if (e == ENOENT || e == ENOTDIR)
            return hma__fail(HMA_ERR_NOT_FOUND,
                             "%s:%d: model '%s': no such file or folder (models are local paths, relative to the "
                             "current folder: a .safetensors file, an index or a Hugging Face folder; Hugging Face "
                             "repository names are not downloaded)",
                             src, m->line, m->path);
        return hma__fail(HMA_ERR_IO, "%s:%d: model '%s': %s", src, m->line, m->path, strerror(e));
    }
    int rc = hma_store_open(&m->store, m->path, 0);
    if (rc) return hma__fail_prefix(rc, "%s:%d: model '%s'", src, m->line, m->path);
    size_t n = hma_store_count(m->store);
    if (n && hma_tensor_gguf_type(hma_store_tensor(m->store, 0)) >= 0)
        return hma__fail(HMA_ERR_UNSUPPORTED,
                         "%s:%d: model '%s' is a GGUF file: recipes need Hugging Face tensor names "
                         "(model.layers.N.self_attn...); give the model's safetensors checkpoint",
                         src, m->line, m->path);
    long top = -1;
    for (size_t i = 0; i < n; i++) {
        long l = hma_layer_from_name(hma_tensor_name(hma_store_tensor(m->store, i)));
        if (l > top) top = l;
    }
    m->layers = top + 1;
    return HMA_OK;
}

/* Every distinct model string once, in order of first mention: the
 * sources of each slice, each slice's base_model, the recipe's base_model. */
static int open_models(hma_recipe *r) {
    const hma__rcfg *c = r->cfg;
    size_t cap = 0;
    int rc = HMA_OK;
    for (size_t s = 0; s < c->n_slices && !rc; s++) {
        for (size_t k = 0; k < c->slices[s].n_src && !rc; k++)
            rc = add_model(r, c->slices[s].src[k].model, c->slices[s].src[k].line, &cap);
        if (!rc) rc = add_model(r, c->slices[s].base_model, c->slices[s].line, &cap);
    }
    if (!rc) rc = add_model(r, c->base_model, c->base_line, &cap);
    for (size_t m = 0; m < r->n_models && !rc; m++) rc = open_model(r, &r->models[m]);
    return rc;
}

/* ---- output tensors --------------------------------------------------------- */

/* `name` with its layer number replaced by `layer`; malloc'ed, NULL on OOM. */
static char *renumber(const char *name, long layer) {
    size_t pos, len;
    if (hma__layer_span(name, &pos, &len) < 0) return hma__strdup(name);
    char num[24];
    int nl = snprintf(num, sizeof num, "%ld", layer);
    size_t tail = strlen(name + pos + len);
    char *s = hma__malloc(pos + (size_t)nl + tail + 1);
    if (!s) return NULL;
    memcpy(s, name, pos);
    memcpy(s + pos, num, (size_t)nl);
    memcpy(s + pos + (size_t)nl, name + pos + len, tail + 1);
    return s;
}

static int is_vocab_name(const char *name) { return hma_is_embedding_name(name) || strstr(name, "lm_head") != NULL; }

static int float_dtype(hma_dtype d) {
    return d == HMA_DTYPE_F16 || d == HMA_DTYPE_BF16 || d == HMA_DTYPE_F32 || d == HMA_DTYPE_F64;
}

/* The source that gives row `row` of a vocabulary mismatch (row >= the
 * common rows): the base when it has the row, else the first that has it. */
size_t hma__rout_extra_source(const hma__rout *o, uint64_t row) {
    if (o->base >= 0 && hma_tensor_shape(o->src[o->base].t)[0] > row) return (size_t)o->base;
    for (size_t k = 0; k < o->n_src; k++)
        if (hma_tensor_shape(o->src[k].t)[0] > row) return k;
    return 0; /* not reached: some source has shape[0] rows */
}

/* Rows [row, end) all come from hma__rout_extra_source(o, row). */
uint64_t hma__rout_extra_end(const hma__rout *o, uint64_t row) {
    uint64_t end = o->shape[0];
    for (size_t k = 0; k < o->n_src; k++) {
        uint64_t rk = hma_tensor_shape(o->src[k].t)[0];
        if (rk > row && rk < end) end = rk;
    }
    return end;
}

/* Shapes of the sources: equal, or (issue item 4) an embedding or lm_head
 * whose rows differ: o->vocab, the common rows merged, the others copied. */
static int check_shapes(hma_recipe *r, hma__rout *o) {
    const char *src = hma__recipe_src(r);
    const hma_tensor *t0 = o->src[0].t;
    unsigned nd = hma_tensor_ndim(t0);
    o->ndim = nd;
    memcpy(o->shape, hma_tensor_shape(t0), nd * sizeof o->shape[0]);
    int rows_differ = 0;
    for (size_t k = 1; k < o->n_src; k++) {
        const hma_tensor *t = o->src[k].t;
        int same = hma_tensor_ndim(t) == nd;
        for (unsigned d = 0; same && d < nd; d++) {
            if (hma_tensor_shape(t)[d] == o->shape[d]) continue;
            if (d == 0 && nd == 2 && is_vocab_name(o->name)) rows_differ = 1;
            else same = 0;
        }
        if (!same) {
            char a[160], b[160];
            hma__shape_str(t0, ", ", a, sizeof a);
            hma__shape_str(t, ", ", b, sizeof b);
            return hma__fail(HMA_ERR_MISMATCH, "%s: tensor '%s': model '%s' has shape %s, model '%s' has %s",
                             src, o->name, r->models[o->src[0].model].path, a, r->models[o->src[k].model].path, b);
        }
    }
    uint64_t lo = o->shape[0], hi = o->shape[0];
    if (rows_differ) {
        for (size_t k = 0; k < o->n_src; k++) {
            uint64_t rk = hma_tensor_shape(o->src[k].t)[0];
            if (rk < lo) lo = rk;
            if (rk > hi) hi = rk;
        }
        o->vocab = 1;
        o->shape[0] = hi;
    }
    o->rows_all = lo;
    o->n = 1;
    for (unsigned d = 0; d < nd; d++) o->n *= o->shape[d]; /* bounded: each source's size fits */
    if (!rows_differ) return HMA_OK;
    /* say exactly what is done: which rows are merged, where the others come from */
    char what[700];
    size_t w = 0;
    w += (size_t)snprintf(what + w, sizeof what - w, "%s: tensor '%s': the models' vocabularies differ (", src, o->name);
    for (size_t k = 0; k < o->n_src && w < sizeof what; k++)
        w += (size_t)snprintf(what + w, sizeof what - w, "%s'%s' %llu rows", k ? ", " : "",
                              r->models[o->src[k].model].path,
                              (unsigned long long)hma_tensor_shape(o->src[k].t)[0]);
    if (w < sizeof what)
        w += (size_t)snprintf(what + w, sizeof what - w, "): rows 0..%llu merged with %s",
                              (unsigned long long)(lo - 1), r->cfg->method);
    for (uint64_t row = lo; row < hi && w < sizeof what;) {
        uint64_t end = hma__rout_extra_end(o, row);
        w += (size_t)snprintf(what + w, sizeof what - w, ", rows %llu..%llu copied from '%s'",
                              (unsigned long long)row, (unsigned long long)(end - 1),
                              r->models[o->src[hma__rout_extra_source(o, row)].model].path);
        row = end;
    }
    return hma__recipe_note(r,
                            "%s; the output has %llu rows (mergekit would truncate every model to the %llu common "
                            "rows; libhma never truncates)",
                            what, (unsigned long long)hi, (unsigned long long)lo);
}

static int push_out(hma_recipe *r, size_t *cap, hma__rout **o) {
    if (r->n_out == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        hma__rout *no = hma__realloc(r->out, nc * sizeof *no);
        if (!no) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", hma__recipe_src(r));
        r->out = no;
        *cap = nc;
    }
    *o = &r->out[r->n_out++];
    memset(*o, 0, sizeof **o);
    (*o)->base = -1;
    return HMA_OK;
}

/* Evaluate the method's parameters for output tensor o (mergekit's
 * plan_tensor: globals looked up with the OUTPUT name, per-model values
 * with each source's INPUT name; the base's required values may be
 * absent), then validate the job without data. */
static int eval_params(hma_recipe *r, hma__rout *o) {
    const hma__rcfg *c = r->cfg;
    const hma__mk_info *mi = r->mi;
    const hma__rslice *sl = &c->slices[o->slice];
    const char *src = hma__recipe_src(r);
    for (size_t i = 0; i < mi->n_params; i++) {
        const hma__mk_pdef *pd = &mi->params[i];
        const char *pname = hma__mk_param_name(pd->id);
        double v;
        if (!pd->per_model) {
            if (hma__rcfg_param(c, o->slice, NULL, pname, o->name, o->t, &v, NULL)) {
                o->global.v[pd->id] = v, o->global.set[pd->id] = 1;
            } else if (pd->has_default) {
                o->global.v[pd->id] = pd->def, o->global.set[pd->id] = 1;
            } else if (pd->required) {
                return hma__fail(HMA_ERR_RECIPE, "%s:%d: tensor '%s': parameter '%s' has no value (%s requires it)",
                                 src, c->method_line, o->name, pname, c->method);
            }
            continue;
        }
        for (size_t k = 0; k < o->n_src; k++) {
            const char *model = r->models[o->src[k].model].path;
            const char *in = hma_tensor_name(o->src[k].t);
            hma__mk_pv *pv = &o->pv[k];
            if (hma__rcfg_param(c, o->slice, model, pname, in, o->t, &v, NULL)) {
                pv->v[pd->id] = v, pv->set[pd->id] = 1;
            } else if (pd->has_default) {
                pv->v[pd->id] = pd->def, pv->set[pd->id] = 1;
            } else if (pd->required && (long)k != o->base) {
                return hma__fail(HMA_ERR_RECIPE,
                                 "%s:%d: tensor '%s': model '%s' (input '%s'): parameter '%s' has no value (%s "
                                 "requires it for every model but the base)",
                                 src, sl->src[k].line, o->name, model, in, pname, c->method);
            }
        }
    }
    hma__mk_job job;
    memset(&job, 0, sizeof job);
    job.method = mi->method;
    job.name = o->name;
    uint64_t shp[HMA_MAX_DIMS];
    memcpy(shp, o->shape, sizeof shp);
    shp[0] = o->ndim ? o->rows_all : 1;
    job.ndim = o->ndim ? o->ndim : 1;
    job.shape = shp;
    uint64_t inner = 1;
    for (unsigned d = 1; d < o->ndim; d++) inner *= o->shape[d];
    job.n = o->ndim ? o->rows_all * inner : 1;
    job.n_in = o->n_src;
    job.base = o->base;
    job.model = o->pv;
    job.global = &o->global;
    char what[600];
    snprintf(what, sizeof what, "%s: tensor '%s'", src, o->name);
    return hma__mk_validate(&job, what);
}

/*
 * One output tensor from the sources of slice `s`: `tmpl` is the name in
 * the first source; in_layer[k] (NULL outside the layers) the layer each
 * source reads; out_layer the output's layer (-1 outside).
 */
static int plan_tensor(hma_recipe *r, size_t *cap, size_t s, const char *tmpl, const long *in_layer, long out_layer,
                       double t) {
    const hma__rcfg *c = r->cfg;
    const hma__rslice *sl = &c->slices[s];
    const char *src = hma__recipe_src(r);
    hma__rout *o = NULL;
    int rc = push_out(r, cap, &o);
    if (rc) return rc;
    o->name = out_layer >= 0 ? renumber(tmpl, out_layer) : hma__strdup(tmpl);
    o->src = hma__calloc(sl->n_src, sizeof *o->src);
    o->pv = hma__calloc(sl->n_src, sizeof *o->pv);
    if (!o->name || !o->src || !o->pv) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", src);
    o->n_src = sl->n_src;
    o->t = t;
    o->layer = out_layer;
    o->slice = s;
    const char *base = sl->base_model ? sl->base_model : c->base_model;
    for (size_t k = 0; k < sl->n_src; k++) {
        hma__rsrc *x = &o->src[k];
        x->model = model_index(r, sl->src[k].model);
        const hma__rmodel *m = &r->models[x->model];
        char *in = in_layer ? renumber(tmpl, in_layer[k]) : hma__strdup(tmpl);
        if (!in) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", src);
        x->t = hma_store_find(m->store, in);
        if (!x->t) {
            rc = hma__fail(HMA_ERR_MISMATCH, "%s:%d: tensor '%s' is missing from model '%s' (output tensor '%s')", src,
                           sl->src[k].line, in, m->path, o->name);
            hma__free(in);
            return rc;
        }
        hma__free(in);
        if (!float_dtype(hma_tensor_dtype(x->t)))
            return hma__fail(HMA_ERR_UNSUPPORTED_DTYPE,
                             "%s:%d: model '%s': tensor '%s' is %s (recipes merge F16, BF16, F32 and F64 tensors)", src,
                             sl->src[k].line, m->path, hma_tensor_name(x->t), hma_dtype_name(hma_tensor_dtype(x->t)));
        if (base && o->base < 0 && strcmp(sl->src[k].model, base) == 0) o->base = (long)k;
    }
    if (base && o->base < 0 && r->mi->base == HMA__MK_BASE_REQUIRED)
        return hma__fail(HMA_ERR_RECIPE, "%s:%d: base_model '%s' is not a source of this slice (%s needs it among them)",
                         src, sl->line, base, c->method);
    if ((rc = check_shapes(r, o))) return rc;
    hma_dtype dt = c->out_dtype != HMA_DTYPE_COUNT ? c->out_dtype : c->dtype;
    if (dt == HMA_DTYPE_COUNT) dt = hma_tensor_dtype(o->src[o->base >= 0 ? o->base : 0].t);
    o->dtype = dt;
    if (o->n > r->max_n) r->max_n = o->n;
    return eval_params(r, o);
}

/* Layers [lr0, lr1) of each source of slice s (models: recipes: all). */
static int slice_ranges(hma_recipe *r, size_t s, long *lr0, long *n) {
    const hma__rslice *sl = &r->cfg->slices[s];
    const char *src = hma__recipe_src(r);
    for (size_t k = 0; k < sl->n_src; k++) {
        const hma__rsource *x = &sl->src[k];
        const hma__rmodel *m = &r->models[model_index(r, x->model)];
        for (size_t j = 0; j < k; j++)
            if (strcmp(sl->src[j].model, x->model) == 0)
                return hma__fail(HMA_ERR_RECIPE,
                                 "%s:%d: model '%s' is listed twice in one slice (mergekit would keep one of them)", src,
                                 x->line, x->model);
        long a = x->has_range ? x->lr0 : 0, b = x->has_range ? x->lr1 : m->layers;
        if (x->has_range && b > m->layers)
            return hma__fail(HMA_ERR_RECIPE, "%s:%d: layer_range [%ld, %ld] of model '%s': it has %ld layers", src, x->line,
                             a, b, x->model, m->layers);
        lr0[k] = a;
        if (k == 0) *n = b - a;
        else if (b - a != *n)
            return hma__fail(x->has_range ? HMA_ERR_RECIPE : HMA_ERR_MISMATCH,
                             "%s:%d: model '%s' gives %ld layers, model '%s' %ld: every source of a slice needs the same "
                             "number of layers",
                             src, x->line, sl->src[0].model, *n, x->model, b - a);
    }
    return HMA_OK;
}

/* Non-layer tensors of the first source of slice s: embeddings (pre) or the others (post). */
static int plan_outer(hma_recipe *r, size_t *cap, size_t s, int embeddings) {
    const hma_store *st = r->models[model_index(r, r->cfg->slices[s].src[0].model)].store;
    for (size_t i = 0; i < hma_store_count(st); i++) {
        const char *nm = hma_tensor_name(hma_store_tensor(st, i));
        if (hma_layer_from_name(nm) >= 0 || !hma_is_embedding_name(nm) != !embeddings) continue;
        int rc = plan_tensor(r, cap, s, nm, NULL, -1, 0.0);
        if (rc) return rc;
    }
    return HMA_OK;
}

static int plan_all(hma_recipe *r) {
    const hma__rcfg *c = r->cfg;
    size_t cap = 0;
    int rc;
    for (size_t s = 0; s < c->n_slices; s++)
        if (c->slices[s].n_src == 0)
            return hma__fail(HMA_ERR_RECIPE, "%s:%d: a slice without sources", hma__recipe_src(r), c->slices[s].line);
    /* pre_weights: t = 0, slices[0]'s sources and parameters */
    if ((rc = plan_outer(r, &cap, 0, 1))) return rc;
    long out_layer = 0;
    for (size_t s = 0; s < c->n_slices; s++) {
        const hma__rslice *sl = &c->slices[s];
        long *lr0 = hma__calloc(sl->n_src, sizeof *lr0), *in = hma__calloc(sl->n_src, sizeof *in), n = 0;
        if (!lr0 || !in) rc = hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", hma__recipe_src(r));
        if (!rc) rc = slice_ranges(r, s, lr0, &n);
        const hma_store *first = rc ? NULL : r->models[model_index(r, sl->src[0].model)].store;
        for (long j = 0; j < n && !rc; j++, out_layer++) {
            /* mergekit's plan_slice: the gradient restarts in every slice */
            double t = n > 1 ? (double)j / (double)(n - 1) : 1.0;
            for (size_t k = 0; k < sl->n_src; k++) in[k] = lr0[k] + j;
            for (size_t i = 0; i < hma_store_count(first) && !rc; i++) {
                const char *nm = hma_tensor_name(hma_store_tensor(first, i));
                if (hma_layer_from_name(nm) == in[0]) rc = plan_tensor(r, &cap, s, nm, in, out_layer, t);
            }
        }
        hma__free(lr0);
        hma__free(in);
        if (rc) return rc;
    }
    r->out_layers = out_layer;
    /* post_weights (final norm, lm_head): t = 0, slices[-1]'s sources */
    return plan_outer(r, &cap, c->n_slices - 1, 0);
}

/* The notes that are about the whole recipe. */
static int recipe_notes(hma_recipe *r) {
    const hma__rcfg *c = r->cfg;
    int rc = HMA_OK;
    if (c->dtype == HMA_DTYPE_F16 || c->dtype == HMA_DTYPE_BF16)
        rc = hma__recipe_note(r, "%s:%d: dtype %s: libhma computes in float32; mergekit would compute in %s",
                              hma__recipe_src(r), c->dtype_line, c->dtype == HMA_DTYPE_F16 ? "float16" : "bfloat16",
                              c->dtype == HMA_DTYPE_F16 ? "float16" : "bfloat16");
    int vocab = 0;
    for (size_t i = 0; i < r->n_out; i++) vocab |= r->out[i].vocab;
    if (!rc && (c->has_tokenizer || vocab))
        rc = hma__recipe_note(r, "tokenizer files copied from %s (folder outputs); vocabularies are not merged%s",
                              r->models[r->cfg_model].path,
                              c->has_tokenizer ? " (tokenizer_source / tokenizer are not applied)" : "");
    return rc;
}

int hma__recipe_resolve(hma_recipe *r) {
    int rc = open_models(r);
    if (!rc) {
        size_t b = r->cfg->base_model ? model_index(r, r->cfg->base_model) : HMA_NPOS;
        r->cfg_model = b != HMA_NPOS ? b : 0;
        rc = plan_all(r);
    }
    if (!rc) rc = recipe_notes(r);
    if (rc) {
        hma__recipe_unresolve(r);
        return rc;
    }
    r->resolved = 1;
    return HMA_OK;
}
