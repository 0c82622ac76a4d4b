/*
 * recipe_api.c - the public hma_recipe_* functions (include/hma.h, "mergekit
 * recipes"): load and parse, getters over a resolved recipe, options,
 * metadata, and the entry of the merge.
 */
#include "mergekit/recipe_impl.h"

#include "core/fileio.h"

#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest recipe file read (a recipe is a few KiB; this only bounds memory). */
#define RECIPE_MAX_BYTES ((size_t)64 << 20)

int hma_recipe_parse(hma_recipe **out, const char *text, size_t len, const char *source_name) {
    if (!out || (!text && len)) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_recipe_parse: NULL argument");
    *out = NULL;
    hma_recipe *r = hma__calloc(1, sizeof *r);
    if (!r) return hma__fail(HMA_ERR_NO_MEMORY, "hma_recipe_parse: out of memory");
    int rc = hma__rcfg_parse(text ? text : "", len, source_name ? source_name : "recipe", &r->cfg);
    if (!rc) {
        r->mi = hma__mk_find(r->cfg->method);
        if (!r->mi) /* the parser checks the name; this only guards the contract */
            rc = hma__fail(HMA_ERR_RECIPE, "%s:%d: merge_method '%s' is unknown", hma__recipe_src(r),
                           r->cfg->method_line, r->cfg->method);
    }
    if (rc) {
        hma_recipe_free(r);
        return rc;
    }
    *out = r;
    return HMA_OK;
}

int hma_recipe_load(hma_recipe **out, const char *path) {
    if (!out || !path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_recipe_load: NULL argument");
    *out = NULL;
    int fd;
    struct stat st;
    int rc = hma__open_read(path, &fd, &st);
    if (rc) return rc;
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > RECIPE_MAX_BYTES) {
        close(fd);
        return hma__fail(S_ISREG(st.st_mode) ? HMA_ERR_RECIPE : HMA_ERR_IO, "%s: %s", path,
                         S_ISREG(st.st_mode) ? "larger than 64 MiB: not a recipe" : "not a regular file");
    }
    size_t len = (size_t)st.st_size;
    char *text = hma__malloc(len ? len : 1);
    if (!text) rc = hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", path);
    if (!rc) rc = hma__pread_full(fd, path, text, len, 0);
    close(fd);
    if (!rc) rc = hma_recipe_parse(out, text, len, path);
    hma__free(text);
    return rc;
}

void hma_recipe_free(hma_recipe *r) {
    if (!r) return;
    hma__recipe_unresolve(r);
    hma__free(r->notes);
    for (size_t k = 0; k < r->nmeta; k++) {
        hma__free(r->mkeys[k]);
        hma__free(r->mvals[k]);
    }
    hma__free(r->mkeys);
    hma__free(r->mvals);
    hma__rcfg_free(r->cfg);
    hma__free(r);
}

const char *hma_recipe_method(const hma_recipe *r) { return r && r->cfg ? r->cfg->method : NULL; }

int hma_recipe_resolve(hma_recipe *r) {
    if (!r) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_recipe_resolve: NULL recipe");
    return r->resolved ? HMA_OK : hma__recipe_resolve(r);
}

/* ---- getters ---------------------------------------------------------------- */

size_t hma_recipe_model_count(const hma_recipe *r) { return r && r->resolved ? r->n_models : 0; }

const char *hma_recipe_model_path(const hma_recipe *r, size_t m) {
    return r && r->resolved && m < r->n_models ? r->models[m].path : NULL;
}

const hma_store *hma_recipe_model_store(const hma_recipe *r, size_t m) {
    return r && r->resolved && m < r->n_models ? r->models[m].store : NULL;
}

size_t hma_recipe_tensor_count(const hma_recipe *r) { return r && r->resolved ? r->n_out : 0; }

static const hma__rout *out_at(const hma_recipe *r, size_t i) {
    return r && r->resolved && i < r->n_out ? &r->out[i] : NULL;
}

const char *hma_recipe_tensor_name(const hma_recipe *r, size_t i) {
    const hma__rout *o = out_at(r, i);
    return o ? o->name : NULL;
}

hma_dtype hma_recipe_tensor_dtype(const hma_recipe *r, size_t i) {
    const hma__rout *o = out_at(r, i);
    return o ? o->dtype : HMA_DTYPE_COUNT;
}

const uint64_t *hma_recipe_tensor_shape(const hma_recipe *r, size_t i, unsigned *ndim) {
    const hma__rout *o = out_at(r, i);
    if (!o) return NULL;
    if (ndim) *ndim = o->ndim;
    return o->shape;
}

double hma_recipe_tensor_t(const hma_recipe *r, size_t i) {
    const hma__rout *o = out_at(r, i);
    return o ? o->t : NAN;
}

size_t hma_recipe_tensor_source_count(const hma_recipe *r, size_t i) {
    const hma__rout *o = out_at(r, i);
    return o ? o->n_src : 0;
}

int hma_recipe_tensor_source(const hma_recipe *r, size_t i, size_t j, size_t *model, const char **input) {
    const hma__rout *o = out_at(r, i);
    if (!o || j >= o->n_src)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_recipe_tensor_source: %s",
                         !r ? "NULL recipe" : !r->resolved ? "recipe not resolved (call hma_recipe_resolve())"
                                                           : "tensor or source index out of range");
    if (model) *model = o->src[j].model;
    if (input) *input = hma_tensor_name(o->src[j].t);
    return HMA_OK;
}

int hma_recipe_tensor_param(const hma_recipe *r, size_t i, size_t j, const char *name, double *value) {
    static const char fn[] = "hma_recipe_tensor_param";
    const hma__rout *o = out_at(r, i);
    if (!name || !value) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    if (!o)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: %s", fn,
                         !r ? "NULL recipe" : !r->resolved ? "recipe not resolved (call hma_recipe_resolve())"
                                                           : "tensor index out of range");
    int p = hma__mk_param_from_name(name);
    const hma__mk_pdef *pd = p < 0 ? NULL : hma__mk_pdef_of(r->mi, (hma__mk_param)p);
    if (!pd) return hma__fail(HMA_ERR_NOT_FOUND, "%s: %s takes no parameter '%s'", fn, r->cfg->method, name);
    const hma__mk_pv *pv;
    if (pd->per_model) {
        if (j >= o->n_src)
            return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: '%s' is a per-model parameter of %s: j must be a source "
                             "index below %zu", fn, name, r->cfg->method, o->n_src);
        pv = &o->pv[j];
    } else {
        if (j != HMA_NPOS)
            return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: '%s' is a global parameter of %s: j must be HMA_NPOS", fn,
                             name, r->cfg->method);
        pv = &o->global;
    }
    if (!pv->set[p])
        return hma__fail(HMA_ERR_NOT_FOUND, "%s: tensor '%s': parameter '%s' has no value%s", fn, o->name, name,
                         pd->per_model ? " for this source" : "");
    *value = pv->v[p];
    return HMA_OK;
}

size_t hma_recipe_note_count(const hma_recipe *r) { return r ? r->cfg->n_notes + r->n_notes : 0; }

const char *hma_recipe_note(const hma_recipe *r, size_t k) {
    if (!r) return NULL;
    if (k < r->cfg->n_notes) return r->cfg->notes[k];
    k -= r->cfg->n_notes;
    return k < r->n_notes ? r->notes[k] : NULL;
}

/* ---- options, metadata, merge ------------------------------------------------ */

static const hma_recipe_options k_defaults = {sizeof(hma_recipe_options), 0, 0, 0, NULL, NULL};

void hma_recipe_options_init_size(hma_recipe_options *o, size_t size) {
    hma__init_size(o, size, &k_defaults, sizeof k_defaults);
}

int hma_recipe_set_metadata(hma_recipe *r, const char *key, const char *value) {
    static const char fn[] = "hma_recipe_set_metadata";
    if (!r || !key || !value) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    if (strcmp(key, "hma_recipe") == 0 || strcmp(key, "hma_recipe_text") == 0)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: key '%s' is the library's", fn, key);
    for (size_t k = 0; k < r->nmeta; k++)
        if (strcmp(r->mkeys[k], key) == 0) {
            char *v = hma__strdup(value);
            if (!v) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", fn);
            hma__free(r->mvals[k]);
            r->mvals[k] = v;
            return HMA_OK;
        }
    char **nk = hma__realloc(r->mkeys, (r->nmeta + 1) * sizeof *nk);
    if (nk) r->mkeys = nk;
    char **nv = nk ? hma__realloc(r->mvals, (r->nmeta + 1) * sizeof *nv) : NULL;
    if (nv) r->mvals = nv;
    char *k = nv ? hma__strdup(key) : NULL, *v = k ? hma__strdup(value) : NULL;
    if (!v) {
        hma__free(k);
        return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", fn);
    }
    r->mkeys[r->nmeta] = k;
    r->mvals[r->nmeta] = v;
    r->nmeta++;
    return HMA_OK;
}

int hma_recipe_merge_to(hma_recipe *r, const char *out_path, const hma_recipe_options *opts) {
    static const char fn[] = "hma_recipe_merge_to";
    if (!r || !out_path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    hma_recipe_options o = k_defaults;
    int rc = hma__opts_in(&o, sizeof o, opts, sizeof o, fn, "hma_recipe_options");
    if (rc) return rc;
    if (!r->resolved && (rc = hma__recipe_resolve(r))) return rc;
    return hma__recipe_run(r, out_path, &o);
}
