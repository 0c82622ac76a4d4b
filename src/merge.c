/*
 * merge.c - merge plans: the rows (one per output tensor, matched across
 * inputs), groups and weights, the streaming merge into a writer (chunks
 * on a thread pool, progress, cancel), and the one-tensor merge servers use.
 * The per-tensor arithmetic is in methods.c; layer grouping in groups.c.
 */
#include "internal.h"

#include "groups.h"
#include "kernels.h"
#include "methods.h"
#include "text/strbuf.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Row kinds, fixed at creation. */
enum { ROW_FLOAT = 0, ROW_RAW = 1, ROW_UNMATCHED = 2 };

/* Anonymous memory a worker may use for its buffers (inputs + output). */
#define HMA__THREAD_BUF_BYTES ((size_t)6 << 20)
/* Elements per sub-chunk in one-tensor merges (bounds their buffers). */
#define HMA__SERVE_CHUNK ((size_t)16384)

typedef struct prule {
    char *pattern;
    int group;
} prule;

typedef struct prow {
    const char *name; /* borrowed from the first input holding it */
    long layer;
    int is_emb;
    int kind;     /* ROW_* */
    char *reason; /* why unmatched, NULL otherwise */
    int group;    /* >= 0, HMA_GROUP_MEAN or HMA_GROUP_NONE */
    int action;   /* hma_action */
    int src;      /* input copied from (COPY_*), else 0 */
    hma_dtype out_dtype;
    uint64_t nelem;
    uint64_t out_nbytes;
    atomic_int stats_ready; /* SLERP statistics cached in stats[] */
    double stats[4];
} prow;

struct hma_plan {
    size_t n_in;
    hma_store **in;
    size_t n_rows;
    prow *rows;
    const hma_tensor **rt; /* n_rows x n_in, NULL where absent */
    size_t *hash;          /* row index + 1; 0 = empty */
    size_t hcap;
    long L;
    hma__groupspec gs;
    size_t K;
    prule *rules;
    size_t n_rules, cap_rules;
    int method;
    size_t base;
    int normalize;
    int out_dtype; /* HMA_DTYPE_COUNT = as input 0 */
    long copy_from;
    unsigned flags;
    unsigned threads;
    int simd;
    hma_progress_fn progress;
    void *progress_user;
    /* weights, under wmu */
    pthread_mutex_t wmu;
    double *W;      /* K x n_in */
    double *ratios; /* K, meaningful when ratio_mode */
    int ratio_mode;
    uint64_t gen;
    pthread_mutex_t smu; /* writes of the SLERP statistics cache */
};

/* ---- SIMD ---------------------------------------------------------------------- */

int hma_simd_best(void) { return hma__kpath_best(); }

int hma_simd_available(int level) {
    if (level < 0 || level >= HMA_KPATH_COUNT) return 0;
    return hma__kpath_available(level);
}

const char *hma_simd_name(int level) {
    if (level == HMA_SIMD_AUTO) return "auto";
    if (level < 0 || level >= HMA_KPATH_COUNT) return NULL;
    return hma__kpath_name(level);
}

static int plan_path(const hma_plan *p) { return p->simd == HMA_SIMD_AUTO ? hma__kpath_best() : p->simd; }

/* ---- helpers ------------------------------------------------------------------- */

static const char *input_path(const hma_plan *p, size_t j) {
    const char *s = hma_store_file_path(p->in[j], 0);
    return s ? s : "?";
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static size_t find_row(const hma_plan *p, const char *name) {
    if (!p->hcap) return (size_t)-1;
    size_t m = p->hcap - 1, h = (size_t)name_hash(name) & m;
    while (p->hash[h]) {
        size_t r = p->hash[h] - 1;
        if (strcmp(p->rows[r].name, name) == 0) return r;
        h = (h + 1) & m;
    }
    return (size_t)-1;
}

static void hash_insert(hma_plan *p, size_t r) {
    size_t m = p->hcap - 1, h = (size_t)name_hash(p->rows[r].name) & m;
    while (p->hash[h]) h = (h + 1) & m;
    p->hash[h] = r + 1;
}

static void shape_str(const hma_tensor *t, char *buf, size_t cap) {
    size_t n = 0;
    unsigned nd = hma_tensor_ndim(t);
    const uint64_t *sh = hma_tensor_shape(t);
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (unsigned d = 0; d < nd && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%llu", d ? "," : "", (unsigned long long)sh[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
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
    prow *row = &p->rows[r];
    const hma_tensor **t = &p->rt[r * p->n_in];
    size_t ref = (size_t)-1;
    for (size_t j = 0; j < p->n_in; j++)
        if (t[j] && ref == (size_t)-1) ref = j;
    char s1[256], s2[256];
    row->kind = ROW_FLOAT;
    for (size_t j = 0; j < p->n_in && row->kind != ROW_UNMATCHED; j++) {
        if (!t[j]) {
            row->kind = ROW_UNMATCHED;
            row->reason = fmt_reason("missing from input %zu (%s)", j, input_path(p, j));
        } else if (!same_shape(t[j], t[ref])) {
            shape_str(t[j], s1, sizeof s1);
            shape_str(t[ref], s2, sizeof s2);
            row->kind = ROW_UNMATCHED;
            row->reason = fmt_reason("shape %s in input %zu (%s) differs from %s in input %zu (%s)",
                                     s1, j, input_path(p, j), s2, ref, input_path(p, ref));
        }
    }
    if (row->kind == ROW_FLOAT) {
        int all_float = 1, all_same = 1;
        for (size_t j = 0; j < p->n_in; j++) {
            all_float &= hma__kdtype_ok(hma_tensor_dtype(t[j]));
            all_same &= hma_tensor_dtype(t[j]) == hma_tensor_dtype(t[0]);
        }
        if (!all_float) {
            if (all_same) {
                row->kind = ROW_RAW;
            } else {
                size_t j = 1;
                while (hma_tensor_dtype(t[j]) == hma_tensor_dtype(t[0])) j++;
                row->kind = ROW_UNMATCHED;
                row->reason = fmt_reason(
                    "dtype %s in input %zu (%s) cannot be averaged with %s in input 0 (%s)",
                    hma_dtype_name(hma_tensor_dtype(t[j])), j, input_path(p, j),
                    hma_dtype_name(hma_tensor_dtype(t[0])), input_path(p, 0));
            }
        }
    }
    row->nelem = hma_tensor_nelements(t[ref]);
    if (row->kind == ROW_FLOAT && row->nelem > UINT64_MAX / 8) {
        row->kind = ROW_UNMATCHED;
        row->reason = fmt_reason("%llu elements: the output size would overflow",
                                 (unsigned long long)row->nelem);
    }
    if (row->kind == ROW_UNMATCHED && !row->reason) return HMA_ERR_NO_MEMORY;
    return HMA_OK;
}

/* Group and action of every row from the current spec, rules and options. */
static void refresh_rows(hma_plan *p) {
    for (size_t r = 0; r < p->n_rows; r++) {
        prow *row = &p->rows[r];
        const hma_tensor **t = &p->rt[r * p->n_in];
        row->src = 0;
        if (row->kind == ROW_UNMATCHED) {
            row->group = HMA_GROUP_NONE;
            if (p->copy_from >= 0 && t[p->copy_from]) {
                row->action = HMA_ACTION_COPY_FROM;
                row->src = (int)p->copy_from;
            } else {
                row->action = p->copy_from >= 0 ? HMA_ACTION_SKIP : HMA_ACTION_MISMATCH;
            }
        } else if (row->kind == ROW_RAW) {
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
            row->out_dtype = p->out_dtype == HMA_DTYPE_COUNT ? hma_tensor_dtype(t[0])
                                                             : (hma_dtype)p->out_dtype;
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

/* Uniform weights 1/N (ratio 0.5 for 2 inputs); caller holds wmu or owns the plan. */
static int reset_weights(hma_plan *p, size_t K) {
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
    pthread_mutex_lock(&p->wmu);
    hma__free(p->W);
    hma__free(p->ratios);
    p->W = W;
    p->ratios = R;
    p->ratio_mode = p->n_in == 2;
    p->K = K;
    p->gen++;
    pthread_mutex_unlock(&p->wmu);
    return HMA_OK;
}

/* ---- create / free --------------------------------------------------------------- */

void hma_plan_free(hma_plan *p) {
    if (!p) return;
    for (size_t r = 0; r < p->n_rows; r++) hma__free(p->rows[r].reason);
    for (size_t k = 0; k < p->n_rules; k++) hma__free(p->rules[k].pattern);
    hma__free(p->rules);
    hma__free(p->rows);
    hma__free(p->rt);
    hma__free(p->hash);
    hma__free(p->in);
    hma__free(p->W);
    hma__free(p->ratios);
    hma__groupspec_free(&p->gs);
    pthread_mutex_destroy(&p->wmu);
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
    pthread_mutex_init(&p->wmu, NULL);
    pthread_mutex_init(&p->smu, NULL);
    p->n_in = n_inputs;
    p->method = HMA_METHOD_LINEAR;
    p->out_dtype = HMA_DTYPE_COUNT;
    p->copy_from = -1;
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
    p->hcap = 16;
    while (p->hcap < 2 * maxrows) p->hcap *= 2;
    p->hash = hma__calloc(p->hcap, sizeof *p->hash);
    if (!p->rows || !p->hash) goto oom;
    for (size_t j = 0; j < n_inputs; j++) {
        size_t cnt = hma_store_count(inputs[j]);
        for (size_t i = 0; i < cnt; i++) {
            const char *nm = hma_tensor_name(hma_store_tensor(inputs[j], i));
            if (find_row(p, nm) != (size_t)-1) continue;
            p->rows[p->n_rows].name = nm;
            hash_insert(p, p->n_rows);
            p->n_rows++;
        }
    }
    p->rt = hma__calloc(p->n_rows ? p->n_rows * n_inputs : 1, sizeof *p->rt);
    if (!p->rt) goto oom;
    long maxl = -1;
    for (size_t r = 0; r < p->n_rows; r++) {
        prow *row = &p->rows[r];
        for (size_t j = 0; j < n_inputs; j++) p->rt[r * n_inputs + j] = hma_store_find(inputs[j], row->name);
        row->layer = hma_layer_from_name(row->name);
        row->is_emb = hma_is_embedding_name(row->name);
        if (row->layer > maxl) maxl = row->layer;
        if (classify_row(p, r) != HMA_OK) goto oom;
    }
    p->L = maxl + 1;
    if ((rc = hma__groupspec_parse("all", &p->gs)) != HMA_OK) goto fail;
    if ((rc = reset_weights(p, 1)) != HMA_OK) goto fail;
    p->gen = 1;
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
long hma_plan_layer_count(const hma_plan *p) { return p ? p->L : 0; }
size_t hma_plan_group_count(const hma_plan *p) { return p ? p->K : 0; }
const char *hma_plan_groups_spec(const hma_plan *p) { return p ? p->gs.text : NULL; }

/* ---- structural setters ------------------------------------------------------------ */

#define CHECK_PLAN(p, fn) \
    if (!(p)) return hma__fail(HMA_ERR_INVALID_ARGUMENT, fn ": NULL plan")

int hma_plan_set_method(hma_plan *p, hma_method m) {
    CHECK_PLAN(p, "hma_plan_set_method");
    if ((int)m < HMA_METHOD_LINEAR || (int)m > HMA_METHOD_SLERP)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_method: unknown method %d", (int)m);
    if (m == HMA_METHOD_SLERP && p->n_in != 2)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_method: SLERP needs exactly 2 inputs, the plan has %zu",
                         p->n_in);
    p->method = (int)m;
    return HMA_OK;
}

int hma_plan_set_base(hma_plan *p, size_t base) {
    CHECK_PLAN(p, "hma_plan_set_base");
    if (base >= p->n_in)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_base: input %zu out of range (the plan has %zu)",
                         base, p->n_in);
    p->base = base;
    return HMA_OK;
}

int hma_plan_set_normalize(hma_plan *p, int on) {
    CHECK_PLAN(p, "hma_plan_set_normalize");
    p->normalize = on != 0;
    return HMA_OK;
}

int hma_plan_set_groups(hma_plan *p, const char *spec) {
    CHECK_PLAN(p, "hma_plan_set_groups");
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
    if ((rc = reset_weights(p, K)) != HMA_OK) {
        hma__groupspec_free(&gs);
        return rc;
    }
    hma__groupspec_free(&p->gs);
    p->gs = gs;
    refresh_rows(p);
    return HMA_OK;
}

int hma_plan_add_rule(hma_plan *p, const char *pattern, int group) {
    CHECK_PLAN(p, "hma_plan_add_rule");
    if (!pattern || !*pattern) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_add_rule: empty pattern");
    if (group != HMA_GROUP_MEAN && (group < 0 || (size_t)group >= p->K))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "hma_plan_add_rule: rule '%s': group %d out of range (0..%zu or HMA_GROUP_MEAN)",
                         pattern, group, p->K - 1);
    if (p->n_rules == p->cap_rules) {
        size_t nc = p->cap_rules ? 2 * p->cap_rules : 8;
        prule *nr = hma__realloc(p->rules, nc * sizeof *nr);
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

int hma_plan_set_output_dtype(hma_plan *p, int dtype) {
    CHECK_PLAN(p, "hma_plan_set_output_dtype");
    if (dtype != HMA_DTYPE_COUNT && (dtype < 0 || dtype >= HMA_DTYPE_COUNT || !hma__kdtype_ok((hma_dtype)dtype)))
        return hma__fail(HMA_ERR_UNSUPPORTED_DTYPE,
                         "hma_plan_set_output_dtype: %s cannot hold averages (expected F16, BF16, F32 or F64)",
                         hma_dtype_name(dtype) ? hma_dtype_name(dtype) : "unknown dtype");
    p->out_dtype = dtype;
    refresh_rows(p);
    return HMA_OK;
}

int hma_plan_copy_unmatched(hma_plan *p, long input) {
    CHECK_PLAN(p, "hma_plan_copy_unmatched");
    if (input < -1 || (input >= 0 && (size_t)input >= p->n_in))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_copy_unmatched: input %ld out of range (-1..%zu)",
                         input, p->n_in - 1);
    p->copy_from = input;
    refresh_rows(p);
    return HMA_OK;
}

int hma_plan_set_flags(hma_plan *p, unsigned flags) {
    CHECK_PLAN(p, "hma_plan_set_flags");
    if (flags & ~(unsigned)HMA_MERGE_ALLOW_NONFINITE)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_flags: unknown flag bits 0x%x",
                         flags & ~(unsigned)HMA_MERGE_ALLOW_NONFINITE);
    p->flags = flags;
    return HMA_OK;
}

int hma_plan_set_threads(hma_plan *p, unsigned threads) {
    CHECK_PLAN(p, "hma_plan_set_threads");
    p->threads = threads;
    return HMA_OK;
}

int hma_plan_set_simd(hma_plan *p, int level) {
    CHECK_PLAN(p, "hma_plan_set_simd");
    if (level != HMA_SIMD_AUTO && (level < 0 || level >= HMA_KPATH_COUNT))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_simd: unknown SIMD level %d", level);
    if (level != HMA_SIMD_AUTO && !hma__kpath_available(level))
        return hma__fail(HMA_ERR_UNSUPPORTED, "hma_plan_set_simd: %s is not available on this CPU",
                         hma__kpath_name(level));
    p->simd = level;
    return HMA_OK;
}

int hma_plan_set_progress(hma_plan *p, hma_progress_fn fn, void *user) {
    CHECK_PLAN(p, "hma_plan_set_progress");
    p->progress = fn;
    p->progress_user = user;
    return HMA_OK;
}

/* ---- weights ------------------------------------------------------------------------ */

static int check_finite_vec(const double *v, size_t n, const char *fn) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: value %zu is not finite", fn, i);
    return HMA_OK;
}

int hma_plan_set_weights(hma_plan *p, const double *w, size_t n) {
    CHECK_PLAN(p, "hma_plan_set_weights");
    if (!w) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_weights: NULL weights");
    if (n != p->K * p->n_in)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "hma_plan_set_weights: %zu values (expected %zu groups x %zu inputs = %zu)", n,
                         p->K, p->n_in, p->K * p->n_in);
    int rc = check_finite_vec(w, n, "hma_plan_set_weights");
    if (rc) return rc;
    pthread_mutex_lock(&p->wmu);
    memcpy(p->W, w, n * sizeof *w);
    p->ratio_mode = 0;
    p->gen++;
    pthread_mutex_unlock(&p->wmu);
    return HMA_OK;
}

int hma_plan_set_ratios(hma_plan *p, const double *a, size_t n) {
    CHECK_PLAN(p, "hma_plan_set_ratios");
    if (!a) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_ratios: NULL ratios");
    if (p->n_in != 2)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_ratios: ratios need exactly 2 inputs (the plan has %zu)",
                         p->n_in);
    if (n != p->K)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_set_ratios: %zu ratios (expected one per group: %zu)", n,
                         p->K);
    int rc = check_finite_vec(a, n, "hma_plan_set_ratios");
    if (rc) return rc;
    pthread_mutex_lock(&p->wmu);
    for (size_t k = 0; k < n; k++) {
        p->ratios[k] = a[k];
        p->W[2 * k] = 1.0 - a[k];
        p->W[2 * k + 1] = a[k];
    }
    p->ratio_mode = 1;
    p->gen++;
    pthread_mutex_unlock(&p->wmu);
    return HMA_OK;
}

int hma_plan_set_ratio(hma_plan *p, double a) {
    CHECK_PLAN(p, "hma_plan_set_ratio");
    double *v = hma__malloc(p->K * sizeof *v);
    if (!v) return hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_set_ratio: out of memory");
    for (size_t k = 0; k < p->K; k++) v[k] = a;
    int rc = hma_plan_set_ratios(p, v, p->K);
    hma__free(v);
    return rc;
}

static double group_pos(size_t k, size_t K) { return K > 1 ? (double)k / (double)(K - 1) : 0.0; }

int hma_plan_set_ratio_gradient(hma_plan *p, const double *anchors, size_t n) {
    CHECK_PLAN(p, "hma_plan_set_ratio_gradient");
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
    CHECK_PLAN(p, "hma_plan_set_weight_gradient");
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

int hma_plan_get_weights(hma_plan *p, double *w, size_t n, uint64_t *generation) {
    CHECK_PLAN(p, "hma_plan_get_weights");
    if (!w || n < p->K * p->n_in)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_get_weights: room for %zu values, need %zu", w ? n : 0,
                         p->K * p->n_in);
    pthread_mutex_lock(&p->wmu);
    memcpy(w, p->W, p->K * p->n_in * sizeof *w);
    if (generation) *generation = p->gen;
    pthread_mutex_unlock(&p->wmu);
    return HMA_OK;
}

/* Mean placement weights; caller holds wmu. */
static void mean_row_locked(const hma_plan *p, double *w) {
    size_t N = p->n_in, K = p->K;
    if (p->ratio_mode) {
        double s = 0.0;
        for (size_t k = 0; k < K; k++) s += p->ratios[k];
        double abar = s / (double)K;
        w[0] = 1.0 - abar;
        w[1] = abar;
        return;
    }
    for (size_t j = 0; j < N; j++) {
        double s = 0.0;
        for (size_t k = 0; k < K; k++) s += p->W[k * N + j];
        w[j] = s / (double)K;
    }
}

/* The raw weight row of `group` (or the mean), its generation, and whether
 * it came from ratios (rows (1 - a, a) are never normalized). */
static void group_row(hma_plan *p, int group, double *w, uint64_t *gen, int *ratio_mode) {
    pthread_mutex_lock(&p->wmu);
    if (ratio_mode) *ratio_mode = p->ratio_mode;
    if (group >= 0 && (size_t)group < p->K)
        memcpy(w, p->W + (size_t)group * p->n_in, p->n_in * sizeof *w);
    else
        mean_row_locked(p, w);
    if (gen) *gen = p->gen;
    pthread_mutex_unlock(&p->wmu);
}

int hma_plan_mean_weights(hma_plan *p, double *w, size_t n) {
    CHECK_PLAN(p, "hma_plan_mean_weights");
    if (!w || n < p->n_in)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_mean_weights: room for %zu values, need %zu", w ? n : 0,
                         p->n_in);
    group_row(p, HMA_GROUP_MEAN, w, NULL, NULL);
    return HMA_OK;
}

uint64_t hma_plan_generation(hma_plan *p) {
    if (!p) return 0;
    pthread_mutex_lock(&p->wmu);
    uint64_t g = p->gen;
    pthread_mutex_unlock(&p->wmu);
    return g;
}

/* ---- row queries --------------------------------------------------------------------- */

size_t hma_plan_tensor_count(const hma_plan *p) { return p ? p->n_rows : 0; }

size_t hma_plan_find(const hma_plan *p, const char *name) {
    if (!p || !name) return (size_t)-1;
    return find_row(p, name);
}

#define ROW_OK(p, i) ((p) && (i) < (p)->n_rows)

const char *hma_plan_tensor_name(const hma_plan *p, size_t i) { return ROW_OK(p, i) ? p->rows[i].name : NULL; }
long hma_plan_tensor_layer(const hma_plan *p, size_t i) { return ROW_OK(p, i) ? p->rows[i].layer : -1; }
int hma_plan_tensor_group(const hma_plan *p, size_t i) { return ROW_OK(p, i) ? p->rows[i].group : HMA_GROUP_NONE; }
int hma_plan_tensor_action(const hma_plan *p, size_t i) {
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

/* Build the operation of a MERGE row from its raw weight row (stats must be
 * ready for SLERP). */
static int row_op(const hma_plan *p, size_t i, const double *raw, int ratio_mode, hma__mop *op) {
    const prow *row = &p->rows[i];
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

int hma_plan_tensor_weights(hma_plan *p, size_t i, double *w, size_t n, uint64_t *generation) {
    CHECK_PLAN(p, "hma_plan_tensor_weights");
    if (i >= p->n_rows || !w || n < p->n_in)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_tensor_weights: bad row %zu or buffer", i);
    if (p->rows[i].action != HMA_ACTION_MERGE)
        return hma__fail(HMA_ERR_STATE, "hma_plan_tensor_weights: tensor '%s' is not averaged", p->rows[i].name);
    double raw[HMA_KMAX_INPUTS];
    int rmode;
    group_row(p, p->rows[i].group, raw, generation, &rmode);
    if (p->method == HMA_METHOD_SLERP) {
        memcpy(w, raw, p->n_in * sizeof *w);
        return HMA_OK;
    }
    hma__mop op;
    int rc = row_op(p, i, raw, rmode, &op);
    if (rc) return rc;
    memcpy(w, op.wd, p->n_in * sizeof *w);
    return HMA_OK;
}

/* ---- data access ------------------------------------------------------------------------ */

/* Per-thread scratch: input buffers (only used when an input is not
 * memory-mapped) and an output buffer. */
typedef struct tbuf {
    void *in[HMA_KMAX_INPUTS];
    size_t in_cap[HMA_KMAX_INPUTS];
    void *out;
} tbuf;

static void tb_free(tbuf *tb) {
    for (size_t j = 0; j < HMA_KMAX_INPUTS; j++) hma__free(tb->in[j]);
    hma__free(tb->out);
    memset(tb, 0, sizeof *tb);
}

/* `len` bytes of input j of row i from byte `off`: zero-copy when the store
 * gives a pointer, else read into the thread's buffer j. */
static int in_range(const hma_plan *p, size_t i, size_t j, uint64_t off, size_t len, tbuf *tb,
                    const void **ptr) {
    const hma_tensor *t = p->rt[i * p->n_in + j];
    const unsigned char *d = hma_tensor_data(t);
    if (d) {
        *ptr = d + off;
        return HMA_OK;
    }
    if (tb->in_cap[j] < len) {
        hma__free(tb->in[j]);
        tb->in_cap[j] = 0;
        tb->in[j] = hma__malloc(len ? len : 1);
        if (!tb->in[j]) return hma__fail(HMA_ERR_NO_MEMORY, "merge: out of memory for a %zu-byte buffer", len);
        tb->in_cap[j] = len;
    }
    int rc = hma_store_read(p->in[j], t, off, tb->in[j], len);
    if (rc) return rc;
    *ptr = tb->in[j];
    return HMA_OK;
}

/* Statistics of stats chunk `sc` of row i between inputs a and b. */
static int stats_chunk(const hma_plan *p, size_t i, size_t a, size_t b, uint64_t sc, tbuf *tb, double out[4]) {
    const hma_tensor *ta = p->rt[i * p->n_in + a], *tbt = p->rt[i * p->n_in + b];
    hma_dtype da = hma_tensor_dtype(ta), db = hma_tensor_dtype(tbt);
    uint64_t e0 = sc * HMA__STATS_CHUNK, nel = p->rows[i].nelem;
    size_t n = (size_t)(nel - e0 < HMA__STATS_CHUNK ? nel - e0 : HMA__STATS_CHUNK);
    const void *x, *y;
    int rc = in_range(p, i, a, e0 * hma__kdtype_size(da), n * hma__kdtype_size(da), tb, &x);
    if (!rc) rc = in_range(p, i, b, e0 * hma__kdtype_size(db), n * hma__kdtype_size(db), tb, &y);
    if (rc) return rc;
    hma__kernel_stats(da, x, db, y, n, out);
    return HMA_OK;
}

static uint64_t stats_chunks(uint64_t nelem) { return (nelem + HMA__STATS_CHUNK - 1) / HMA__STATS_CHUNK; }

/* Whole-tensor statistics: chunk sums added in order (the same order the
 * parallel merge uses). */
static int stats_seq(const hma_plan *p, size_t i, size_t a, size_t b, tbuf *tb, double acc[4]) {
    acc[0] = acc[1] = acc[2] = acc[3] = 0.0;
    uint64_t nc = stats_chunks(p->rows[i].nelem);
    for (uint64_t sc = 0; sc < nc; sc++) {
        double part[4];
        int rc = stats_chunk(p, i, a, b, sc, tb, part);
        if (rc) return rc;
        for (int k = 0; k < 4; k++) acc[k] += part[k];
    }
    return HMA_OK;
}

static void stats_publish(hma_plan *p, size_t i, const double s[4]) {
    prow *row = &p->rows[i];
    pthread_mutex_lock(&p->smu);
    if (!atomic_load_explicit(&row->stats_ready, memory_order_relaxed)) {
        memcpy(row->stats, s, sizeof row->stats);
        atomic_store_explicit(&row->stats_ready, 1, memory_order_release);
    }
    pthread_mutex_unlock(&p->smu);
}

static int ensure_stats(hma_plan *p, size_t i, tbuf *tb) {
    if (atomic_load_explicit(&p->rows[i].stats_ready, memory_order_acquire)) return HMA_OK;
    double s[4];
    int rc = stats_seq(p, i, 0, 1, tb, s);
    if (rc) return rc;
    stats_publish(p, i, s);
    return HMA_OK;
}

int hma_plan_tensor_stats(const hma_plan *p, size_t i, size_t a, size_t b, double out[4]) {
    CHECK_PLAN(p, "hma_plan_tensor_stats");
    if (i >= p->n_rows || a >= p->n_in || b >= p->n_in || !out)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_tensor_stats: bad row %zu or inputs %zu, %zu", i, a, b);
    const hma_tensor *ta = p->rt[i * p->n_in + a], *tbt = p->rt[i * p->n_in + b];
    if (!ta || !tbt || !hma__kdtype_ok(hma_tensor_dtype(ta)) || !hma__kdtype_ok(hma_tensor_dtype(tbt)) ||
        hma_tensor_nelements(ta) != hma_tensor_nelements(tbt))
        return hma__fail(HMA_ERR_MISMATCH,
                         "tensor '%s': inputs %zu and %zu are not float tensors of the same size",
                         p->rows[i].name, a, b);
    tbuf tb;
    memset(&tb, 0, sizeof tb);
    int rc = stats_seq(p, i, a, b, &tb, out);
    tb_free(&tb);
    return rc;
}

/* Merge elements [e0, e0 + n) of MERGE row i with op into out. */
static int chunk_merge(const hma_plan *p, int path, int check, size_t i, const hma__mop *op, uint64_t e0,
                       size_t n, tbuf *tb, void *out) {
    const prow *row = &p->rows[i];
    const void *in[HMA_KMAX_INPUTS];
    hma_dtype dt[HMA_KMAX_INPUTS];
    if (n == 0) return HMA_OK;
    for (size_t j = 0; j < p->n_in; j++) {
        dt[j] = hma_tensor_dtype(p->rt[i * p->n_in + j]);
        size_t isz = hma__kdtype_size(dt[j]);
        int rc = in_range(p, i, j, e0 * isz, n * isz, tb, &in[j]);
        if (rc) return rc;
    }
    size_t bi = 0, be = 0;
    if (hma__mop_run(path, op, dt, in, row->out_dtype, out, n, check, &bi, &be)) {
        double v = hma__ld1_f64(dt[bi], in[bi], be);
        return hma__fail(HMA_ERR_NONFINITE,
                         "%s: tensor '%s': input %zu has a non-finite value (%g) at element %llu "
                         "(expected finite inputs; HMA_MERGE_ALLOW_NONFINITE allows them)",
                         input_path(p, bi), row->name, bi, v, (unsigned long long)(e0 + be));
    }
    return HMA_OK;
}

/* Copy bytes [b0, b0 + n) of a COPY_* row into out, checking identity. */
static int chunk_copy(const hma_plan *p, size_t i, uint64_t b0, size_t n, tbuf *tb, void *out) {
    const prow *row = &p->rows[i];
    if (n == 0) return HMA_OK;
    int rc = hma_store_read(p->in[row->src], p->rt[i * p->n_in + row->src], b0, out, n);
    if (rc || row->action != HMA_ACTION_COPY_IDENTICAL) return rc;
    for (size_t j = 1; j < p->n_in; j++) {
        const void *q;
        if ((rc = in_range(p, i, j, b0, n, tb, &q)) != HMA_OK) return rc;
        if (memcmp(out, q, n) == 0) continue;
        size_t k = 0;
        while (((const unsigned char *)out)[k] == ((const unsigned char *)q)[k]) k++;
        hma_dtype dt = hma_tensor_dtype(p->rt[i * p->n_in]);
        int is_int = dt <= HMA_DTYPE_U64;
        return hma__fail(is_int ? HMA_ERR_MISMATCH : HMA_ERR_UNSUPPORTED_DTYPE,
                         "%s: tensor '%s' (%s, cannot be averaged): differs from input 0 (%s) at byte %llu "
                         "(expected identical bytes in every input)",
                         input_path(p, j), row->name, hma_dtype_name(dt), input_path(p, 0),
                         (unsigned long long)(b0 + k));
    }
    return HMA_OK;
}

static int row_unusable(const hma_plan *p, size_t i) {
    const prow *row = &p->rows[i];
    if (row->action == HMA_ACTION_MISMATCH)
        return hma__fail(HMA_ERR_MISMATCH,
                         "tensor '%s': %s (expected the same tensor in every input; "
                         "hma_plan_copy_unmatched() copies such tensors from one input)",
                         row->name, row->reason ? row->reason : "inputs disagree");
    if (row->action == HMA_ACTION_SKIP)
        return hma__fail(HMA_ERR_STATE, "tensor '%s': left out of the output (%s)", row->name,
                         row->reason ? row->reason : "unmatched");
    return HMA_OK;
}

/* ---- one-tensor merges (servers, evaluators) -------------------------------------------------- */

int hma_plan_merge_tensor_at(hma_plan *p, size_t i, uint64_t offset, void *buf, size_t len,
                             uint64_t *generation) {
    CHECK_PLAN(p, "hma_plan_merge_tensor_at");
    if (i >= p->n_rows)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_merge_tensor_at: row %zu out of range (%zu rows)", i,
                         p->n_rows);
    const prow *row = &p->rows[i];
    int rc = row_unusable(p, i);
    if (rc) return rc;
    uint64_t end;
    if (!buf && len) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_merge_tensor_at: NULL buffer");
    if (hma__add_overflows(offset, len, &end) || end > row->out_nbytes)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "tensor '%s': byte range [%llu, +%zu) past its %llu output bytes", row->name,
                         (unsigned long long)offset, len, (unsigned long long)row->out_nbytes);
    unsigned bits = hma_dtype_bits(row->out_dtype);
    size_t osz = bits >= 8 && bits % 8 == 0 ? bits / 8 : 1;
    if (offset % osz || len % osz)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "tensor '%s': byte range [%llu, +%zu) not aligned to its %zu-byte elements (%s)",
                         row->name, (unsigned long long)offset, len, osz, hma_dtype_name(row->out_dtype));
    tbuf tb;
    memset(&tb, 0, sizeof tb);
    if (row->action != HMA_ACTION_MERGE) {
        rc = chunk_copy(p, i, offset, len, &tb, buf);
        if (!rc && generation) *generation = hma_plan_generation(p);
        tb_free(&tb);
        return rc;
    }
    double raw[HMA_KMAX_INPUTS];
    uint64_t gen;
    int rmode;
    group_row(p, row->group, raw, &gen, &rmode);
    if (p->method == HMA_METHOD_SLERP) rc = ensure_stats(p, i, &tb);
    hma__mop op;
    if (!rc) rc = row_op(p, i, raw, rmode, &op);
    int path = plan_path(p), check = !(p->flags & HMA_MERGE_ALLOW_NONFINITE);
    uint64_t e0 = offset / osz, n = len / osz;
    for (uint64_t k = 0; !rc && k < n; k += HMA__SERVE_CHUNK) {
        size_t m = (size_t)(n - k < HMA__SERVE_CHUNK ? n - k : HMA__SERVE_CHUNK);
        rc = chunk_merge(p, path, check, i, &op, e0 + k, m, &tb, (unsigned char *)buf + k * osz);
    }
    tb_free(&tb);
    if (!rc && generation) *generation = gen;
    return rc;
}

int hma_plan_merge_tensor(hma_plan *p, const char *name, uint64_t offset, void *buf, size_t len,
                          uint64_t *generation) {
    CHECK_PLAN(p, "hma_plan_merge_tensor");
    if (!name) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_merge_tensor: NULL name");
    size_t i = find_row(p, name);
    if (i == (size_t)-1) return hma__fail(HMA_ERR_NOT_FOUND, "tensor '%s': not in any input of the plan", name);
    return hma_plan_merge_tensor_at(p, i, offset, buf, len, generation);
}

/* ---- full merge: chunks on a thread pool, streamed into a writer -------------------------------- */

typedef struct mrow {
    size_t row;
    size_t widx;     /* writer index */
    uint64_t first;  /* first job number */
    uint64_t njobs;
} mrow;

typedef struct mctx {
    hma_plan *p;
    hma_writer *w;
    int path, check;
    uint64_t ch;     /* elements per merge chunk (bytes per copy chunk: ch * 8) */
    double *W;       /* weight snapshot, K x N */
    double mean[HMA_KMAX_INPUTS];
    int ratio_mode;  /* the snapshot came from ratios */
    mrow *jr;        /* job ranges of the current phase */
    size_t n_jr;
    double *part;    /* stats phase: 4 doubles per stats chunk */
    int phase;       /* 0 = SLERP statistics, 1 = merge */
    uint64_t njobs, total;
    atomic_uint_fast64_t next, done;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned running;
    int changed, err, cancelled;
    char msg[1024];
} mctx;

static void record_error(mctx *c, int rc) {
    pthread_mutex_lock(&c->mu);
    if (!c->err) {
        c->err = rc;
        snprintf(c->msg, sizeof c->msg, "%s", hma_last_error());
    }
    atomic_store(&c->stop, 1);
    pthread_mutex_unlock(&c->mu);
}

static const mrow *job_range(const mctx *c, uint64_t j) {
    size_t lo = 0, hi = c->n_jr; /* last range with first <= j */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->jr[mid].first <= j) lo = mid; else hi = mid;
    }
    return &c->jr[lo];
}

static int run_job(mctx *c, tbuf *tb, uint64_t j, uint64_t *bytes) {
    hma_plan *p = c->p;
    const mrow *m = job_range(c, j);
    uint64_t k = j - m->first;
    const prow *row = &p->rows[m->row];
    if (c->phase == 0) return stats_chunk(p, m->row, 0, 1, k, tb, c->part + 4 * j);
    if (!tb->out && !(tb->out = hma__malloc((size_t)c->ch * 8)))
        return hma__fail(HMA_ERR_NO_MEMORY, "merge: out of memory for a chunk buffer");
    int rc;
    size_t n;
    uint64_t off;
    if (row->action == HMA_ACTION_MERGE) {
        uint64_t e0 = k * c->ch;
        n = (size_t)(row->nelem - e0 < c->ch ? row->nelem - e0 : c->ch);
        const double *raw = row->group >= 0 ? c->W + (size_t)row->group * p->n_in : c->mean;
        hma__mop op;
        rc = row_op(p, m->row, raw, c->ratio_mode, &op);
        if (!rc) rc = chunk_merge(p, c->path, c->check, m->row, &op, e0, n, tb, tb->out);
        off = e0 * hma__kdtype_size(row->out_dtype);
        n *= hma__kdtype_size(row->out_dtype);
    } else {
        uint64_t cb = c->ch * 8;
        off = k * cb;
        n = (size_t)(row->out_nbytes - off < cb ? row->out_nbytes - off : cb);
        rc = chunk_copy(p, m->row, off, n, tb, tb->out);
    }
    if (!rc) rc = hma_writer_write(c->w, m->widx, off, tb->out, n);
    *bytes = n;
    return rc;
}

static void notify(mctx *c, int finished) {
    pthread_mutex_lock(&c->mu);
    if (finished) c->running--;
    c->changed = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void *worker(void *arg) {
    mctx *c = arg;
    tbuf tb;
    memset(&tb, 0, sizeof tb);
    int report = c->p->progress != NULL;
    while (!atomic_load(&c->stop)) {
        uint64_t j = atomic_fetch_add(&c->next, 1);
        if (j >= c->njobs) break;
        uint64_t bytes = 0;
        int rc = run_job(c, &tb, j, &bytes);
        if (rc) {
            record_error(c, rc);
            break;
        }
        atomic_fetch_add(&c->done, bytes);
        if (report) notify(c, 0);
    }
    tb_free(&tb);
    notify(c, 1);
    return NULL;
}

/* Run the current phase's jobs on `nt` threads while this thread reports
 * progress; returns after every worker has finished. */
static void run_phase(mctx *c, unsigned nt) {
    hma_plan *p = c->p;
    pthread_t *tid = hma__malloc(nt * sizeof *tid);
    if (!tid) {
        record_error(c, hma__fail(HMA_ERR_NO_MEMORY, "merge: out of memory for %u threads", nt));
        return;
    }
    atomic_store(&c->next, 0);
    unsigned started = 0;
    pthread_mutex_lock(&c->mu);
    c->running = 0;
    pthread_mutex_unlock(&c->mu);
    for (; started < nt; started++) {
        pthread_mutex_lock(&c->mu);
        c->running++;
        pthread_mutex_unlock(&c->mu);
        if (pthread_create(&tid[started], NULL, worker, c) != 0) {
            pthread_mutex_lock(&c->mu);
            c->running--;
            pthread_mutex_unlock(&c->mu);
            record_error(c, hma__fail(HMA_ERR_THREAD, "merge: could not start worker thread %u of %u", started + 1, nt));
            break;
        }
    }
    for (;;) {
        pthread_mutex_lock(&c->mu);
        while (c->running > 0 && !c->changed) pthread_cond_wait(&c->cv, &c->mu);
        c->changed = 0;
        unsigned running = c->running;
        pthread_mutex_unlock(&c->mu);
        if (p->progress && !atomic_load(&c->stop)) {
            uint64_t done = atomic_load(&c->done);
            if (p->progress(p->progress_user, done, c->total) != 0) {
                c->cancelled = 1;
                record_error(c, hma__fail(HMA_ERR_CANCELLED,
                                          "merge: cancelled by the progress callback at %llu of %llu bytes",
                                          (unsigned long long)done, (unsigned long long)c->total));
            }
        }
        if (running == 0) break;
    }
    for (unsigned t = 0; t < started; t++) pthread_join(tid[t], NULL);
    hma__free(tid);
}

static unsigned thread_count(const hma_plan *p, uint64_t njobs) {
    unsigned nt = p->threads;
    if (nt == 0) nt = hma__default_threads(1024);
    if (njobs < nt) nt = njobs ? (unsigned)njobs : 1;
    return nt;
}

static const char *method_name(int m) {
    return m == HMA_METHOD_TASK_ARITHMETIC ? "task_arithmetic" : m == HMA_METHOD_SLERP ? "slerp" : "linear";
}

static void sb_doubles(hma__strbuf *sb, const double *v, size_t n) {
    hma__sb_putc(sb, '[');
    for (size_t i = 0; i < n; i++) hma__sb_printf(sb, "%s%.17g", i ? "," : "", v[i]);
    hma__sb_putc(sb, ']');
}

/* The "hma_recipe" metadata: what was merged, how, with which weights. */
static char *build_recipe(const hma_plan *p, const mctx *c, int ratio_mode, const double *ratios, uint64_t gen) {
    hma__strbuf sb;
    hma__sb_init(&sb);
    hma__sb_printf(&sb, "{\"libhma\":\"%s\",\"method\":\"%s\",\"normalize\":%s,\"base\":%zu,\"inputs\":[",
                   hma_version_string(), method_name(p->method), p->normalize ? "true" : "false", p->base);
    for (size_t j = 0; j < p->n_in; j++) {
        if (j) hma__sb_putc(&sb, ',');
        const char *s = input_path(p, j);
        hma__sb_json_string(&sb, s, strlen(s));
    }
    hma__sb_printf(&sb, "],\"layers\":%ld,\"groups\":", p->L);
    hma__sb_json_string(&sb, p->gs.text, strlen(p->gs.text));
    hma__sb_printf(&sb, ",\"group_count\":%zu,\"rules\":[", p->K);
    for (size_t k = 0; k < p->n_rules; k++) {
        hma__sb_puts(&sb, k ? ",{\"pattern\":" : "{\"pattern\":");
        hma__sb_json_string(&sb, p->rules[k].pattern, strlen(p->rules[k].pattern));
        if (p->rules[k].group == HMA_GROUP_MEAN)
            hma__sb_puts(&sb, ",\"group\":\"mean\"}");
        else
            hma__sb_printf(&sb, ",\"group\":%d}", p->rules[k].group);
    }
    hma__sb_puts(&sb, "],\"weights\":[");
    for (size_t k = 0; k < p->K; k++) {
        if (k) hma__sb_putc(&sb, ',');
        sb_doubles(&sb, c->W + k * p->n_in, p->n_in);
    }
    hma__sb_putc(&sb, ']');
    if (ratio_mode) {
        hma__sb_puts(&sb, ",\"ratios\":");
        sb_doubles(&sb, ratios, p->K);
    }
    hma__sb_puts(&sb, ",\"mean_weights\":");
    sb_doubles(&sb, c->mean, p->n_in);
    hma__sb_printf(&sb, ",\"generation\":%llu,\"output_dtype\":\"%s\",\"copy_unmatched\":%ld,\"allow_nonfinite\":%s}",
                   (unsigned long long)gen,
                   p->out_dtype == HMA_DTYPE_COUNT ? "input0" : hma_dtype_name(p->out_dtype), p->copy_from,
                   (p->flags & HMA_MERGE_ALLOW_NONFINITE) ? "true" : "false");
    return hma__sb_detach(&sb, NULL);
}

int hma_plan_merge_to(hma_plan *p, const char *path, uint64_t shard_size) {
    CHECK_PLAN(p, "hma_plan_merge_to");
    if (!path || !*path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_merge_to: empty output path");
    int rc;
    for (size_t i = 0; i < p->n_rows; i++)
        if (p->rows[i].action == HMA_ACTION_MISMATCH) return row_unusable(p, i);

    mctx c;
    memset(&c, 0, sizeof c);
    c.p = p;
    c.path = plan_path(p);
    c.check = !(p->flags & HMA_MERGE_ALLOW_NONFINITE);
    /* Chunk size: (N inputs + output) x 8-byte elements fit a thread's budget. */
    c.ch = HMA__THREAD_BUF_BYTES / ((p->n_in + 1) * 8);
    if (c.ch > ((uint64_t)1 << 18)) c.ch = (uint64_t)1 << 18;
    c.ch -= c.ch % 4096;
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    double *ratios = NULL;
    char *recipe = NULL;
    mrow *rows = hma__calloc(p->n_rows ? p->n_rows : 1, sizeof *rows);
    c.W = hma__malloc(p->K * p->n_in * sizeof *c.W);
    ratios = hma__malloc(p->K * sizeof *ratios);
    if (!rows || !c.W || !ratios) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_merge_to: out of memory");
        goto done;
    }
    /* One consistent weight snapshot for the whole merge. */
    pthread_mutex_lock(&p->wmu);
    memcpy(c.W, p->W, p->K * p->n_in * sizeof *c.W);
    memcpy(ratios, p->ratios, p->K * sizeof *ratios);
    int ratio_mode = c.ratio_mode = p->ratio_mode;
    uint64_t gen = p->gen;
    mean_row_locked(p, c.mean);
    pthread_mutex_unlock(&p->wmu);

    /* Validate the weights of every merged row before creating anything. */
    if (p->method != HMA_METHOD_SLERP)
        for (size_t i = 0; i < p->n_rows; i++) {
            if (p->rows[i].action != HMA_ACTION_MERGE) continue;
            hma__mop op;
            const double *raw = p->rows[i].group >= 0 ? c.W + (size_t)p->rows[i].group * p->n_in : c.mean;
            if ((rc = row_op(p, i, raw, ratio_mode, &op)) != HMA_OK) goto done;
        }

    recipe = build_recipe(p, &c, ratio_mode, ratios, gen);
    if (!recipe) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_merge_to: out of memory for the recipe");
        goto done;
    }
    if ((rc = hma_writer_create(&c.w, path, shard_size)) != HMA_OK) goto done;
    if ((rc = hma_writer_set_metadata(c.w, "format", "pt")) != HMA_OK) goto done;
    if ((rc = hma_writer_set_metadata(c.w, "hma_recipe", recipe)) != HMA_OK) goto done;
    size_t nw = 0;
    uint64_t njobs = 0;
    for (size_t i = 0; i < p->n_rows; i++) {
        const prow *row = &p->rows[i];
        if (row->action == HMA_ACTION_SKIP) continue;
        const hma_tensor *t = p->rt[i * p->n_in + row->src];
        if ((rc = hma_writer_add_tensor(c.w, row->name, row->out_dtype, hma_tensor_ndim(t), hma_tensor_shape(t))) !=
            HMA_OK)
            goto done;
        uint64_t units = row->action == HMA_ACTION_MERGE ? row->nelem : row->out_nbytes;
        uint64_t per = row->action == HMA_ACTION_MERGE ? c.ch : c.ch * 8;
        rows[nw].row = i;
        rows[nw].widx = nw;
        rows[nw].first = njobs;
        rows[nw].njobs = (units + per - 1) / per;
        njobs += rows[nw].njobs;
        c.total += row->out_nbytes;
        nw++;
    }
    if ((rc = hma_writer_begin(c.w)) != HMA_OK) goto done;

    /* Phase 0: SLERP statistics of the rows not cached yet. */
    if (p->method == HMA_METHOD_SLERP) {
        mrow *sr = hma__calloc(nw ? nw : 1, sizeof *sr);
        size_t ns = 0;
        uint64_t nsj = 0;
        if (!sr) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_merge_to: out of memory");
            goto done;
        }
        for (size_t k = 0; k < nw; k++) {
            const prow *row = &p->rows[rows[k].row];
            if (row->action != HMA_ACTION_MERGE || atomic_load(&row->stats_ready)) continue;
            sr[ns].row = rows[k].row;
            sr[ns].first = nsj;
            sr[ns].njobs = stats_chunks(row->nelem);
            nsj += sr[ns].njobs;
            ns++;
        }
        if (nsj) {
            c.part = nsj <= SIZE_MAX / (4 * sizeof(double)) ? hma__malloc(nsj * 4 * sizeof(double)) : NULL;
            if (!c.part) {
                hma__free(sr);
                rc = hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_merge_to: out of memory for statistics");
                goto done;
            }
            c.phase = 0;
            c.jr = sr;
            c.n_jr = ns;
            c.njobs = nsj;
            run_phase(&c, thread_count(p, nsj));
            for (size_t k = 0; k < ns && !c.err; k++) {
                double acc[4] = {0, 0, 0, 0};
                for (uint64_t q = 0; q < sr[k].njobs; q++)
                    for (int e = 0; e < 4; e++) acc[e] += c.part[4 * (sr[k].first + q) + e];
                stats_publish(p, sr[k].row, acc);
            }
        }
        hma__free(sr);
    }
    /* Phase 1: merge and copy chunks into the writer. */
    if (!c.err) {
        c.phase = 1;
        c.jr = rows;
        c.n_jr = nw;
        c.njobs = njobs;
        if (nw) run_phase(&c, thread_count(p, njobs));
        else if (p->progress && p->progress(p->progress_user, 0, 0) != 0)
            record_error(&c, hma__fail(HMA_ERR_CANCELLED, "merge: cancelled by the progress callback"));
    }
    if (c.err) {
        rc = hma__fail(c.err, "%s", c.msg);
        goto done;
    }
    rc = hma_writer_commit(c.w);
done:
    hma_writer_free(c.w);
    hma__free(c.part);
    hma__free(c.W);
    hma__free(ratios);
    hma__free(recipe);
    hma__free(rows);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
    return rc;
}
