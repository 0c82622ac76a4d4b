/*
 * plan.c - the merge plan's model: creation (rows matched across inputs by
 * name, classified), groups and name rules, the structure setters, the
 * plan's metadata, and the row queries. See merge/plan.h for the other
 * files of the plan.
 */
#include "merge/plan.h"

#include <stdio.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------- */

const char *hma__plan_input_path(const hma_plan *p, size_t j) {
    const char *s = hma_store_file_path(p->in[j], 0);
    return s ? s : "?";
}

static const char *row_name_at(const void *owner, size_t idx, size_t *len) {
    const hma_plan *p = owner;
    *len = strlen(p->rows[idx].name);
    return p->rows[idx].name;
}

static size_t find_row(const hma_plan *p, const char *name) {
    return hma__names_find(&p->names, name, strlen(name), row_name_at, p);
}

static int same_shape(const hma_tensor *a, const hma_tensor *b) {
    unsigned nd = hma_tensor_ndim(a);
    if (nd != hma_tensor_ndim(b)) return 0;
    return nd == 0 || memcmp(hma_tensor_shape(a), hma_tensor_shape(b), nd * sizeof(uint64_t)) == 0;
}

static char *fmt_reason(const char *fmt, ...) HMA_PRINTF(1, 2);
static char *fmt_reason(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return hma__strdup(buf);
}

/* Classify row r: float merge, identical copy, or unmatched (with reason). */
static int classify_row(hma_plan *p, size_t r) {
    hma__prow *row = &p->rows[r];
    const hma_tensor **t = &p->rt[r * p->n_in];
    size_t ref = HMA_NPOS;
    for (size_t j = 0; j < p->n_in; j++)
        if (t[j] && ref == HMA_NPOS) ref = j;
    char s1[256], s2[256];
    row->kind = HMA__ROW_FLOAT;
    for (size_t j = 0; j < p->n_in && row->kind != HMA__ROW_UNMATCHED; j++) {
        if (!t[j]) {
            row->kind = HMA__ROW_UNMATCHED;
            row->reason = fmt_reason("missing from input %zu (%s)", j, hma__plan_input_path(p, j));
        } else if (!same_shape(t[j], t[ref])) {
            hma__shape_str(t[j], ",", s1, sizeof s1);
            hma__shape_str(t[ref], ",", s2, sizeof s2);
            row->kind = HMA__ROW_UNMATCHED;
            row->reason = fmt_reason("shape %s in input %zu (%s) differs from %s in input %zu (%s)",
                                     s1, j, hma__plan_input_path(p, j), s2, ref, hma__plan_input_path(p, ref));
        }
    }
    if (row->kind == HMA__ROW_FLOAT) {
        int all_float = 1, all_same = 1;
        for (size_t j = 0; j < p->n_in; j++) {
            all_float &= hma__kdtype_ok(hma_tensor_dtype(t[j]));
            all_same &= hma_tensor_dtype(t[j]) == hma_tensor_dtype(t[0]);
        }
        if (!all_float) {
            if (all_same) {
                row->kind = HMA__ROW_RAW;
            } else {
                size_t j = 1;
                while (hma_tensor_dtype(t[j]) == hma_tensor_dtype(t[0])) j++;
                row->kind = HMA__ROW_UNMATCHED;
                row->reason = fmt_reason(
                    "dtype %s in input %zu (%s) cannot be averaged with %s in input 0 (%s)",
                    hma_dtype_name(hma_tensor_dtype(t[j])), j, hma__plan_input_path(p, j),
                    hma_dtype_name(hma_tensor_dtype(t[0])), hma__plan_input_path(p, 0));
            }
        }
    }
    row->nelem = hma_tensor_nelements(t[ref]);
    if (row->kind == HMA__ROW_FLOAT && row->nelem > UINT64_MAX / 8) {
        row->kind = HMA__ROW_UNMATCHED;
        row->reason = fmt_reason("%llu elements: the output size would overflow",
                                 (unsigned long long)row->nelem);
    }
    if (row->kind == HMA__ROW_UNMATCHED && !row->reason) return HMA_ERR_NO_MEMORY;
    return HMA_OK;
}

/* Group and action of every row from the current spec, rules and options. */
static void refresh_rows(hma_plan *p) {
    for (size_t r = 0; r < p->n_rows; r++) {
        hma__prow *row = &p->rows[r];
        const hma_tensor **t = &p->rt[r * p->n_in];
        row->src = 0;
        if (row->kind == HMA__ROW_UNMATCHED) {
            row->group = HMA_GROUP_NONE;
            if (p->copy_from != HMA_NPOS && t[p->copy_from]) {
                row->action = HMA_ACTION_COPY_FROM;
                row->src = p->copy_from;
            } else {
                row->action = p->copy_from != HMA_NPOS ? HMA_ACTION_SKIP : HMA_ACTION_MISMATCH;
            }
        } else if (row->kind == HMA__ROW_RAW) {
            row->group = HMA_GROUP_NONE;
            row->action = HMA_ACTION_COPY_IDENTICAL;
        } else {
            row->action = HMA_ACTION_MERGE;
            int g = INT32_MIN;
            for (size_t k = 0; k < p->n_rules && g == INT32_MIN; k++)
                if (hma__rule_match(p->rules[k].pattern, row->name)) g = p->rules[k].group;
            if (g == INT32_MIN) {
                if (row->layer >= 0)
                    g = (int)hma__groupspec_group(&p->gs, p->L, row->layer);
                else
                    g = row->is_emb ? 0 : HMA_GROUP_MEAN;
            }
            row->group = g;
        }
        if (row->action == HMA_ACTION_MERGE) {
            row->out_dtype = p->out_dtype == HMA_DTYPE_COUNT ? hma_tensor_dtype(t[0]) : p->out_dtype;
            /* no overflow: classify_row() refuses nelem > UINT64_MAX / 8 */
            row->out_nbytes = row->nelem * hma__kdtype_size(row->out_dtype);
        } else if (row->action == HMA_ACTION_COPY_FROM || row->action == HMA_ACTION_COPY_IDENTICAL) {
            row->out_dtype = hma_tensor_dtype(t[row->src]);
            row->out_nbytes = hma_tensor_nbytes(t[row->src]);
        } else {
            row->out_dtype = HMA_DTYPE_COUNT;
            row->out_nbytes = 0;
        }
    }
}

/* ---- SIMD (testing knobs; the dispatch itself is core/cpu.c) ------------------ */

hma_simd hma_simd_best(void) { return (hma_simd)hma__cpu_level(); }

int hma_simd_available(hma_simd level) { return hma__cpu_level_available(level); }

const char *hma_simd_name(hma_simd level) {
    if (level == HMA_SIMD_AUTO) return "auto";
    return hma__cpu_level_name(level);
}

int hma__plan_path(const hma_plan *p) { return p->simd == HMA_SIMD_AUTO ? hma__cpu_level() : p->simd; }

/* ---- create / free --------------------------------------------------------------- */

void hma_plan_free(hma_plan *p) {
    if (!p) return;
    for (size_t r = 0; r < p->n_rows; r++) hma__free(p->rows[r].reason);
    for (size_t k = 0; k < p->n_rules; k++) hma__free(p->rules[k].pattern);
    hma__free(p->rules);
    hma__free(p->rows);
    hma__free(p->rt);
    hma__names_free(&p->names);
    hma__free(p->in);
    for (size_t k = 0; k < p->nmeta; k++) {
        hma__free(p->mkeys[k]);
        hma__free(p->mvals[k]);
    }
    hma__free(p->mkeys);
    hma__free(p->mvals);
    if (p->ws) {
        hma__free(p->ws->W);
        hma__free(p->ws->ratios);
        pthread_mutex_destroy(&p->ws->mu);
        hma__free(p->ws);
    }
    hma__groupspec_free(&p->gs);
    pthread_mutex_destroy(&p->smu);
    hma__free(p);
}

int hma_plan_create(hma_plan **out, hma_store *const *inputs, size_t n_inputs) {
    if (!out || !inputs) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_create: NULL argument");
    if (n_inputs < 2 || n_inputs > HMA_KMAX_INPUTS)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_create: %zu inputs (expected 2..%d)",
                         n_inputs, HMA_KMAX_INPUTS);
    for (size_t j = 0; j < n_inputs; j++)
        if (!inputs[j]) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_create: input %zu is NULL", j);
    hma_plan *p = hma__calloc(1, sizeof *p);
    if (!p) return hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_create: out of memory");
    p->ws = hma__calloc(1, sizeof *p->ws);
    if (!p->ws) {
        hma__free(p);
        return hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_create: out of memory");
    }
    pthread_mutex_init(&p->ws->mu, NULL);
    pthread_mutex_init(&p->smu, NULL);
    hma__names_init(&p->names);
    p->n_in = n_inputs;
    p->method = HMA_METHOD_LINEAR;
    p->out_dtype = HMA_DTYPE_COUNT;
    p->copy_from = HMA_NPOS;
    p->simd = HMA_SIMD_AUTO;
    int rc = HMA_ERR_NO_MEMORY;
    p->in = hma__malloc(n_inputs * sizeof *p->in);
    if (!p->in) goto oom;
    memcpy(p->in, inputs, n_inputs * sizeof *p->in);
    /* Upper bound on rows: every tensor of every input (checked sum). */
    uint64_t maxrows = 0;
    for (size_t j = 0; j < n_inputs; j++)
        if (hma__add_overflows(maxrows, hma_store_count(inputs[j]), &maxrows)) goto oom;
    uint64_t cells;
    if (hma__mul_overflows(maxrows ? maxrows : 1, n_inputs, &cells) || cells > SIZE_MAX / sizeof(void *))
        goto oom;
    p->rows = hma__calloc(maxrows ? maxrows : 1, sizeof *p->rows);
    if (!p->rows || hma__names_reserve(&p->names, (size_t)maxrows) != HMA_OK) goto oom;
    for (size_t j = 0; j < n_inputs; j++) {
        size_t cnt = hma_store_count(inputs[j]);
        for (size_t i = 0; i < cnt; i++) {
            const char *nm = hma_tensor_name(hma_store_tensor(inputs[j], i));
            if (find_row(p, nm) != HMA_NPOS) continue;
            p->rows[p->n_rows].name = nm;
            if (hma__names_add(&p->names, nm, strlen(nm), p->n_rows) != HMA_OK) goto oom;
            p->n_rows++;
        }
    }
    p->rt = hma__calloc(p->n_rows ? p->n_rows * n_inputs : 1, sizeof *p->rt);
    if (!p->rt) goto oom;
    long maxl = -1;
    for (size_t r = 0; r < p->n_rows; r++) {
        hma__prow *row = &p->rows[r];
        for (size_t j = 0; j < n_inputs; j++) p->rt[r * n_inputs + j] = hma_store_find(inputs[j], row->name);
        row->layer = hma_layer_from_name(row->name);
        row->is_emb = hma_is_embedding_name(row->name);
        if (row->layer > maxl) maxl = row->layer;
        if (classify_row(p, r) != HMA_OK) goto oom;
    }
    p->L = maxl + 1;
    if ((rc = hma__groupspec_parse("all", &p->gs)) != HMA_OK) goto fail;
    if ((rc = hma__plan_reset_weights(p, 1)) != HMA_OK) goto fail;
    p->ws->gen = 1;
    refresh_rows(p);
    *out = p;
    return HMA_OK;
oom:
    rc = hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_create: out of memory");
fail:
    hma_plan_free(p);
    return rc;
}

size_t hma_plan_input_count(const hma_plan *p) { return p ? p->n_in : 0; }
hma_store *hma_plan_input(const hma_plan *p, size_t i) { return p && i < p->n_in ? p->in[i] : NULL; }
long hma_plan_layer_count(const hma_plan *p) { return p ? p->L : 0; }
size_t hma_plan_group_count(const hma_plan *p) { return p ? p->K : 0; }
const char *hma_plan_groups_spec(const hma_plan *p) { return p ? p->gs.text : NULL; }

/* ---- structural setters ------------------------------------------------------------ */

int hma_plan_set_method(hma_plan *p, hma_method m) {
    HMA__CHECK_PLAN(p, "hma_plan_set_method");
    if ((int)m < HMA_METHOD_LINEAR || (int)m > HMA_METHOD_SLERP)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_method: unknown method %d", (int)m);
    if (m == HMA_METHOD_SLERP && p->n_in != 2)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_method: SLERP needs exactly 2 inputs, the plan has %zu",
                         p->n_in);
    p->method = m;
    return HMA_OK;
}

int hma_plan_set_base(hma_plan *p, size_t base) {
    HMA__CHECK_PLAN(p, "hma_plan_set_base");
    if (base >= p->n_in)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_base: input %zu out of range (the plan has %zu)",
                         base, p->n_in);
    p->base = base;
    return HMA_OK;
}

int hma_plan_set_normalize(hma_plan *p, int on) {
    HMA__CHECK_PLAN(p, "hma_plan_set_normalize");
    p->normalize = on != 0;
    return HMA_OK;
}

int hma_plan_set_groups(hma_plan *p, const char *spec) {
    HMA__CHECK_PLAN(p, "hma_plan_set_groups");
    hma__groupspec gs;
    int rc = hma__groupspec_parse(spec, &gs);
    if (rc) return rc;
    size_t K = hma__groupspec_count(&gs, p->L);
    if (K > HMA__MAX_GROUPS) {
        hma__groupspec_free(&gs);
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "group spec '%s': %zu groups (at most %u)", spec, K,
                         HMA__MAX_GROUPS);
    }
    for (size_t k = 0; k < p->n_rules; k++)
        if (p->rules[k].group >= 0 && (size_t)p->rules[k].group >= K) {
            hma__groupspec_free(&gs);
            return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                             "group spec '%s': rule '%s' names group %d but there would be %zu groups",
                             spec, p->rules[k].pattern, p->rules[k].group, K);
        }
    if ((rc = hma__plan_reset_weights(p, K)) != HMA_OK) {
        hma__groupspec_free(&gs);
        return rc;
    }
    hma__groupspec_free(&p->gs);
    p->gs = gs;
    refresh_rows(p);
    return HMA_OK;
}

int hma_plan_add_rule(hma_plan *p, const char *pattern, int group) {
    HMA__CHECK_PLAN(p, "hma_plan_add_rule");
    if (!pattern || !*pattern) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_add_rule: empty pattern");
    if (group != HMA_GROUP_MEAN && (group < 0 || (size_t)group >= p->K))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "hma_plan_add_rule: rule '%s': group %d out of range (0..%zu or HMA_GROUP_MEAN)",
                         pattern, group, p->K - 1);
    if (p->n_rules == p->cap_rules) {
        size_t nc = p->cap_rules ? 2 * p->cap_rules : 8;
        hma__prule *nr = hma__realloc(p->rules, nc * sizeof *nr);
        if (!nr) return hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_add_rule: out of memory");
        p->rules = nr;
        p->cap_rules = nc;
    }
    char *copy = hma__strdup(pattern);
    if (!copy) return hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_add_rule: out of memory");
    p->rules[p->n_rules].pattern = copy;
    p->rules[p->n_rules].group = group;
    p->n_rules++;
    refresh_rows(p);
    return HMA_OK;
}

void hma_plan_clear_rules(hma_plan *p) {
    if (!p) return;
    for (size_t k = 0; k < p->n_rules; k++) hma__free(p->rules[k].pattern);
    p->n_rules = 0;
    refresh_rows(p);
}

int hma_plan_set_output_dtype(hma_plan *p, hma_dtype dtype) {
    HMA__CHECK_PLAN(p, "hma_plan_set_output_dtype");
    if (dtype != HMA_DTYPE_COUNT && ((int)dtype < 0 || dtype >= HMA_DTYPE_COUNT || !hma__kdtype_ok(dtype)))
        return hma__fail(HMA_ERR_UNSUPPORTED_DTYPE,
                         "hma_plan_set_output_dtype: %s cannot hold averages (expected F16, BF16, F32 or F64)",
                         hma_dtype_name(dtype) ? hma_dtype_name(dtype) : "unknown dtype");
    p->out_dtype = dtype;
    refresh_rows(p);
    return HMA_OK;
}

int hma_plan_set_output_gguf_type(hma_plan *p, hma_gguf_type type) {
    HMA__CHECK_PLAN(p, "hma_plan_set_output_gguf_type");
    if (type != HMA_GGUF_AUTO && type != HMA_GGUF_Q8_0)
        return hma__fail(HMA_ERR_UNSUPPORTED_DTYPE,
                         "hma_plan_set_output_gguf_type: type %d (expected HMA_GGUF_AUTO or HMA_GGUF_Q8_0; "
                         "F32, F16 and BF16 are hma_plan_set_output_dtype())", (int)type);
    p->gguf_q8 = type == HMA_GGUF_Q8_0;
    return HMA_OK;
}

int hma_plan_copy_unmatched(hma_plan *p, size_t input) {
    HMA__CHECK_PLAN(p, "hma_plan_copy_unmatched");
    if (input != HMA_NPOS && input >= p->n_in)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "hma_plan_copy_unmatched: input %zu out of range (0..%zu, or HMA_NPOS for off)", input,
                         p->n_in - 1);
    p->copy_from = input;
    refresh_rows(p);
    return HMA_OK;
}

int hma_plan_set_flags(hma_plan *p, unsigned flags) {
    HMA__CHECK_PLAN(p, "hma_plan_set_flags");
    if (flags & ~(unsigned)HMA_MERGE_ALLOW_NONFINITE)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_flags: unknown flag bits 0x%x",
                         flags & ~(unsigned)HMA_MERGE_ALLOW_NONFINITE);
    p->flags = flags;
    return HMA_OK;
}

int hma_plan_set_threads(hma_plan *p, unsigned threads) {
    HMA__CHECK_PLAN(p, "hma_plan_set_threads");
    p->threads = threads;
    return HMA_OK;
}

int hma_plan_set_simd(hma_plan *p, hma_simd level) {
    HMA__CHECK_PLAN(p, "hma_plan_set_simd");
    if (level != HMA_SIMD_AUTO && !hma__cpu_level_name(level))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_simd: unknown SIMD level %d", (int)level);
    if (level != HMA_SIMD_AUTO && !hma__cpu_level_available(level))
        return hma__fail(HMA_ERR_UNSUPPORTED, "hma_plan_set_simd: %s is not available on this CPU",
                         hma__cpu_level_name(level));
    p->simd = level;
    return HMA_OK;
}

int hma_plan_set_progress(hma_plan *p, hma_progress_fn fn, void *user) {
    HMA__CHECK_PLAN(p, "hma_plan_set_progress");
    p->progress = fn;
    p->progress_user = user;
    return HMA_OK;
}


int hma_plan_set_metadata(hma_plan *p, const char *key, const char *value) {
    HMA__CHECK_PLAN(p, "hma_plan_set_metadata");
    if (!key || !*key || !value)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_metadata: NULL or empty key, or NULL value");
    char *v = hma__strdup(value);
    if (!v) return hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_set_metadata: out of memory");
    for (size_t k = 0; k < p->nmeta; k++)
        if (strcmp(p->mkeys[k], key) == 0) {
            hma__free(p->mvals[k]);
            p->mvals[k] = v;
            return HMA_OK;
        }
    char *kc = hma__strdup(key);
    char **nk = kc ? hma__realloc(p->mkeys, (p->nmeta + 1) * sizeof *nk) : NULL;
    if (nk) p->mkeys = nk;
    char **nv = nk ? hma__realloc(p->mvals, (p->nmeta + 1) * sizeof *nv) : NULL;
    if (nv) p->mvals = nv;
    if (!nv) {
        hma__free(kc);
        hma__free(v);
        return hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_set_metadata: out of memory");
    }
    p->mkeys[p->nmeta] = kc;
    p->mvals[p->nmeta] = v;
    p->nmeta++;
    return HMA_OK;
}

/* ---- row queries --------------------------------------------------------------------- */

size_t hma_plan_tensor_count(const hma_plan *p) { return p ? p->n_rows : 0; }

size_t hma_plan_find(const hma_plan *p, const char *name) {
    if (!p || !name) return HMA_NPOS;
    return find_row(p, name);
}

#define ROW_OK(p, i) ((p) && (i) < (p)->n_rows)

const char *hma_plan_tensor_name(const hma_plan *p, size_t i) { return ROW_OK(p, i) ? p->rows[i].name : NULL; }
long hma_plan_tensor_layer(const hma_plan *p, size_t i) { return ROW_OK(p, i) ? p->rows[i].layer : -1; }
int hma_plan_tensor_group(const hma_plan *p, size_t i) { return ROW_OK(p, i) ? p->rows[i].group : HMA_GROUP_NONE; }
hma_action hma_plan_tensor_action(const hma_plan *p, size_t i) {
    return ROW_OK(p, i) ? p->rows[i].action : HMA_ACTION_MISMATCH;
}
const char *hma_plan_tensor_reason(const hma_plan *p, size_t i) {
    if (!ROW_OK(p, i)) return "";
    return p->rows[i].reason ? p->rows[i].reason : "";
}
const hma_tensor *hma_plan_tensor_input(const hma_plan *p, size_t i, size_t input) {
    if (!ROW_OK(p, i) || input >= p->n_in) return NULL;
    return p->rt[i * p->n_in + input];
}
hma_dtype hma_plan_tensor_dtype(const hma_plan *p, size_t i) {
    return ROW_OK(p, i) ? p->rows[i].out_dtype : HMA_DTYPE_COUNT;
}
uint64_t hma_plan_tensor_nbytes(const hma_plan *p, size_t i) { return ROW_OK(p, i) ? p->rows[i].out_nbytes : 0; }

