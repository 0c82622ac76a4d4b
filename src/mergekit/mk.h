/*
 * mk.h - mergekit's merge methods on whole float32 tensors (internal).
 *
 * The recipe layer (recipe_run.c) loads every source of one output tensor
 * as float32, evaluates the parameters (recipe_params.c) and calls
 * hma__mk_merge(); the methods never see files. docs/merging.md
 * ("mergekit recipes") is the spec, ../shared/mergekit-semantics.md and
 * mergekit itself (arcee-ai/mergekit a6e4028, mergekit/merge_methods/NAME.py,
 * mergekit/sparsify.py) the reference.
 *
 * Numerics: element-wise arithmetic is float32 in mergekit's operation order
 * (so a result equals mergekit's `dtype: float32` result bit for bit where
 * mergekit's order is defined); reductions (norms, dots, L1 sums, variances)
 * are double, summed per fixed chunk of HMA__MK_CHUNK elements and then over
 * chunks in order, so nothing depends on the thread count.
 *
 * Files:
 *   mk_table.c     method and parameter names, defaults, hma__mk_validate
 *   mk_merge.c     hma__mk_merge: the dispatch; hma__mk_validate; hma__mk_get
 *   mk_reduce.c    chunked double reductions, per-vector Gram sums
 *   mk_parallel.c  hma__mk_for / hma__mk_sum: chunked loops on the pool
 *   mk_select.c    exact, stable top-k selection (radix select on |x| bits)
 *   mk_rng.c       the counter-based generator of DARE and DELLA
 *   mk_sparsify.c  magnitude (TIES), breadcrumbs, DARE, DELLA, L1 rescale
 *   mk_gta.c       task_arithmetic, ties, dare_*, breadcrumbs*, della*
 *   mk_sce.c       sce
 *   mk_linear.c    linear, passthrough, nearswap, ram, ramplus_tl
 *   mk_sphere.c    slerp, nuslerp, multislerp, karcher
 *   mk_stock.c     model_stock
 *   mk_fusion.c    arcee_fusion
 */
#ifndef HMA_MERGEKIT_MK_H
#define HMA_MERGEKIT_MK_H

#include "internal.h"

/* Elements per chunk of every parallel loop and reduction (fixed: results
 * never depend on the thread count). */
#define HMA__MK_CHUNK ((uint64_t)1 << 16)

typedef enum hma__mk_method {
    HMA__MK_LINEAR = 0,
    HMA__MK_TASK_ARITHMETIC,
    HMA__MK_TIES,
    HMA__MK_DARE_LINEAR,
    HMA__MK_DARE_TIES,
    HMA__MK_BREADCRUMBS,
    HMA__MK_BREADCRUMBS_TIES,
    HMA__MK_DELLA,
    HMA__MK_DELLA_LINEAR,
    HMA__MK_PASSTHROUGH,
    HMA__MK_SLERP,
    HMA__MK_NUSLERP,
    HMA__MK_MULTISLERP,
    HMA__MK_KARCHER,
    HMA__MK_MODEL_STOCK,
    HMA__MK_SCE,
    HMA__MK_NEARSWAP,
    HMA__MK_RAM,
    HMA__MK_RAMPLUS_TL,
    HMA__MK_ARCEE_FUSION,
    HMA__MK_METHOD_COUNT
} hma__mk_method;

/* Every parameter name any method takes. Whether a name is per model
 * ("tensor parameter" in mergekit) or global depends on the method
 * (epsilon: per model for della, global for ram): see the method table. */
typedef enum hma__mk_param {
    HMA__P_WEIGHT = 0,
    HMA__P_DENSITY,
    HMA__P_GAMMA,
    HMA__P_EPSILON,
    HMA__P_SCALE,
    HMA__P_NORMALIZE,
    HMA__P_RESCALE,
    HMA__P_LAMBDA,
    HMA__P_INT8_MASK,
    HMA__P_T,
    HMA__P_FILTER_WISE,
    HMA__P_NUSLERP_FLATTEN,
    HMA__P_NUSLERP_ROW_WISE,
    HMA__P_MAX_ITER,
    HMA__P_TOL,
    HMA__P_NORMALIZE_WEIGHTS,
    HMA__P_EPS,
    HMA__P_SELECT_TOPK,
    HMA__P_R,
    HMA__P_ALPHA,
    HMA__P_COUNT
} hma__mk_param;

/* One parameter of one method, as mergekit declares it. */
typedef struct hma__mk_pdef {
    hma__mk_param id;
    int per_model;   /* 1: a tensor parameter (one value per model), 0: global */
    int required;    /* mergekit's required=True (per model: not for the base) */
    int has_default; /* 0: no default (absent unless set, e.g. passthrough's scale) */
    double def;
} hma__mk_pdef;

/* Base model use. */
enum { HMA__MK_BASE_NONE = 0, HMA__MK_BASE_OPTIONAL = 1, HMA__MK_BASE_REQUIRED = 2 };

typedef struct hma__mk_job hma__mk_job;

/*
 * Buffers a run keeps from one tensor to the next (selection histograms,
 * collected keys, per-worker blocks): freshly allocated pages cost a fault
 * and a clear each, about a tenth of a TIES merge's time when every tensor
 * asked for new ones. A slot grows to the largest size asked and is reused;
 * its content is not kept. One thread hands the buffers out (before the
 * pool's passes that use them); not thread-safe.
 */
enum { HMA__MK_WS_H1, HMA__MK_WS_H2, HMA__MK_WS_RKEYS, HMA__MK_WS_SAMPLE, HMA__MK_WS_BLOCKS, HMA__MK_WS_SLOTS };
typedef struct hma__mk_ws {
    void *p[HMA__MK_WS_SLOTS];
    size_t cap[HMA__MK_WS_SLOTS];
} hma__mk_ws;
/* At least `bytes` of slot `slot` of ws (uninitialised), or, when ws is
 * NULL, a fresh hma__malloc'ed block; NULL when out of memory. */
void *hma__mk_ws_take(hma__mk_ws *ws, unsigned slot, size_t bytes);
/* The same, and the bytes the block has into *got (>= bytes). A slot that
 * must grow at least doubles, so that a run of growing requests moves to
 * new pages a few times only. */
void *hma__mk_ws_take_n(hma__mk_ws *ws, unsigned slot, size_t bytes, size_t *got);
/* Give back what hma__mk_ws_take(ws, ...) returned: freed when ws is NULL,
 * else kept in the slot. */
void hma__mk_ws_give(hma__mk_ws *ws, void *p);
/* Free every slot; the workspace can be used again (empty). */
void hma__mk_ws_free(hma__mk_ws *ws);

typedef struct hma__mk_info {
    const char *name; /* mergekit's merge_method string */
    hma__mk_method method;
    int base;         /* HMA__MK_BASE_* */
    const hma__mk_pdef *params;
    size_t n_params;
    int (*run)(const hma__mk_job *job); /* hma__mk_merge calls it (job validated) */
    /* the family's own checks (hma__mk_validate's contract), or NULL for
     * the generic ones of mk_merge.c (counts, required and impossible values) */
    int (*validate)(const hma__mk_job *job, const char *what);
} hma__mk_info;

/* The method called `name`, or NULL. */
const hma__mk_info *hma__mk_find(const char *name);
const hma__mk_info *hma__mk_info_of(hma__mk_method m);
/* Parameter names ("weight", "int8_mask", ...), and the reverse (-1 if unknown). */
const char *hma__mk_param_name(hma__mk_param p);
int hma__mk_param_from_name(const char *name);
/* The method's declaration of p, or NULL when the method does not take p. */
const hma__mk_pdef *hma__mk_pdef_of(const hma__mk_info *mi, hma__mk_param p);

/* Evaluated parameter values: v[p] is meaningful when set[p] is 1. */
typedef struct hma__mk_pv {
    double v[HMA__P_COUNT];
    unsigned char set[HMA__P_COUNT];
} hma__mk_pv;

/* One output tensor to merge. */
struct hma__mk_job {
    hma__mk_method method;
    const char *name;        /* output tensor name: messages and the random key */
    unsigned ndim;           /* of the merged block (1-D tensors: 1) */
    const uint64_t *shape;   /* ndim sizes; their product is n */
    uint64_t n;              /* elements */
    size_t n_in;             /* sources, in mergekit's order (the base among them) */
    float *const *x;         /* n_in buffers of n float32; the method may overwrite them */
    long base;               /* index of the base in x, or -1 (no base model) */
    const hma__mk_pv *model; /* n_in per-model values (the base's weight may be unset) */
    const hma__mk_pv *global;
    uint64_t seed;           /* DARE / DELLA key */
    float *out;              /* n float32 results */
    float *scratch;          /* n spare float32 (SCE's variance keys, ...) */
    unsigned threads;        /* 0 = online CPUs */
    /* Optional, only for methods where hma__mk_reads_raw(job) is 1: raw[i],
     * when raw and raw[i] are not NULL, is source i's first element in its
     * file's bytes (dtype raw_dtype[i]: F16, BF16, F32 or F64, little-endian,
     * any alignment) and x[i] is then never read: the method converts
     * blocks on the fly, with the same results as from x[i] loaded. */
    const void *const *raw;
    const hma_dtype *raw_dtype;
    /* Optional, only for methods where hma__mk_reads_raw(job) is 1: when
     * sink is not NULL the result goes to sink instead of out (out is not
     * written): every element exactly once, in pieces [e0, e0 + len) of at
     * most HMA__MK_CHUNK elements, from the pool's threads; `worker` is
     * unique among the calls running at once and below
     * hma__pool_threads(threads, hma__mk_chunks(n)). The caller converts
     * each piece while it is in cache instead of reading out back from
     * memory. HMA_OK, or an error that stops the merge. */
    int (*sink)(void *user, unsigned worker, uint64_t e0, const float *v, size_t len);
    void *sink_user;
    /* Optional, only for methods where hma__mk_reads_raw(job) is 1: called
     * from the pool's threads, when release is not NULL, once the job will
     * not read elements [e0, e1) of raw source src again (the caller may
     * drop their mappings). */
    void (*release)(void *user, size_t src, uint64_t e0, uint64_t e1);
    void *release_user;
    /* Optional: the run's workspace (NULL: every buffer is allocated and
     * freed per tensor). */
    hma__mk_ws *ws;
};

/* 1 when job's method only reads its sources and takes job->raw (so the
 * caller need not load float32 copies of mapped sources), else 0. */
int hma__mk_reads_raw(const hma__mk_job *job);

/*
 * Check the values a job will run with, before anything is written: source
 * counts (slerp needs base + 1 model, ...), required values, ranges (DELLA:
 * 0 < density - epsilon and density + epsilon < 1; densities in [0, 1]...).
 * Nothing is read from x. `what` prefixes the message (e.g. "recipe.yml:
 * tensor 'model.layers.0.mlp.up_proj.weight'"). Returns HMA_OK or
 * HMA_ERR_RECIPE with a message.
 */
int hma__mk_validate(const hma__mk_job *job, const char *what);

/*
 * A merge in two steps, for a caller that cannot write yet but can read
 * (the recipe layer while its output is being reserved): hma__mk_prepare
 * runs what reads the sources and writes nothing (the selection passes of
 * the methods that read raw sources, hma__mk_reads_raw), and
 * hma__mk_merge_prepared the rest, with the same result as hma__mk_merge.
 * *out is NULL when the method has nothing to run ahead (then
 * hma__mk_merge_prepared(job, NULL) is hma__mk_merge). The job given to
 * both must describe the same tensor and sources (raw pointers valid until
 * the merge); its out, sink and workspace may differ. The caller frees the
 * preparation (hma__mk_prep_free; NULL is a no-op). Errors as hma__mk_merge.
 */
typedef struct hma__mk_prep hma__mk_prep;
int hma__mk_prepare(const hma__mk_job *job, hma__mk_prep **out);
int hma__mk_merge_prepared(const hma__mk_job *job, hma__mk_prep *prep);
void hma__mk_prep_free(hma__mk_prep *prep);

/* Merge one tensor into job->out. HMA_OK, or an error (HMA_ERR_NO_MEMORY,
 * HMA_ERR_RECIPE for what validation cannot see, e.g. multislerp's
 * antipodal inputs) with a message naming the tensor. */
int hma__mk_merge(const hma__mk_job *job);

/* ---- mk_parallel.c ---- */
/* fn over [e0, e1) for every chunk c of [0, n) (chunks of HMA__MK_CHUNK);
 * chunks run in parallel on the pool. fn returns HMA_OK or an error. */
typedef int (*hma__mk_chunk_fn)(void *arg, uint64_t c, uint64_t e0, uint64_t e1);
int hma__mk_for(unsigned threads, uint64_t n, hma__mk_chunk_fn fn, void *arg);
/* Number of chunks of n elements. */
uint64_t hma__mk_chunks(uint64_t n);
/* Elements [*e0, *e1) of chunk c of n elements. */
static inline void hma__mk_chunk_range(uint64_t n, uint64_t c, uint64_t *e0, uint64_t *e1) {
    *e0 = c * HMA__MK_CHUNK;
    *e1 = n - *e0 < HMA__MK_CHUNK ? n : *e0 + HMA__MK_CHUNK;
}
/* Sum of part[0..nchunks) in order (double). */
double hma__mk_sum_parts(const double *part, uint64_t nchunks);

/* ---- mk_select.c ---- */
/*
 * Exact stable selection over keys key[0..n) (non-negative floats, no NaN):
 * order = key descending, equal keys by ascending index. Sets *thr to the
 * key of position k-1 (k >= 1) and *n_eq_keep to how many elements equal to
 * *thr (the first ones by index) are among the first k. An element e is
 * among the first k iff key[e] > *thr, or key[e] == *thr and it is one of
 * the first *n_eq_keep such elements by index. `abs_of`: when 1, the keys
 * are |key[e]| (the sign bit is ignored), so deltas need no copy.
 */
int hma__mk_select(unsigned threads, const float *key, uint64_t n, uint64_t k, int abs_of, float *thr,
                   uint64_t *n_eq_keep);
/* Mask in place: zero every x[e] that is not among the first k of |x|
 * (by the order above); k >= n keeps everything, k == 0 zeroes all. */
int hma__mk_keep_topk_abs(unsigned threads, float *x, uint64_t n, uint64_t k);

/* ---- mk_rng.c ---- */
/* Key of one tensor's stream for one source: (seed, tensor name, source
 * position). */
uint64_t hma__mk_rng_key(uint64_t seed, const char *name, size_t source);
/* Uniform float in [0, 1) (a multiple of 2^-24) for element `index`. */
float hma__mk_rng_uniform(uint64_t key, uint64_t index);

/* ---- mk_sparsify.c (per task vector d of n elements, in place) ---- */
/* rescale: L1 rescale to the original norm as mergekit's
 * rescaled_masked_tensor (no rescale when either L1 < 1e-7). */
int hma__mk_magnitude(unsigned threads, float *d, uint64_t n, double density, int rescale);
int hma__mk_breadcrumbs(unsigned threads, float *d, uint64_t n, double density, double gamma,
                        int rescale);
int hma__mk_dare(unsigned threads, float *d, uint64_t n, double density, int rescale, uint64_t key);
/* rows x cols view (1-D: rows = 1). */
int hma__mk_della(unsigned threads, float *d, uint64_t rows, uint64_t cols, double density,
                  double epsilon, int rescale, uint64_t key);

/* The checks of hma__mk_validate for the methods of mk_gta.c and mk_sce.c
 * (hma__mk_validate, in mk_merge.c, calls them; same contract). */
int hma__mk_validate_gta(const hma__mk_job *job, const char *what);
int hma__mk_validate_sce(const hma__mk_job *job, const char *what);

/* ---- the methods (job already validated) ---- */
int hma__mk_run_gta(const hma__mk_job *job);     /* task_arithmetic, ties, dare_*, breadcrumbs*, della* */
/* The two steps of hma__mk_run_gta (hma__mk_prepare's contract). */
int hma__mk_prepare_gta(const hma__mk_job *job, hma__mk_prep **out);
int hma__mk_run_gta_prepared(const hma__mk_job *job, hma__mk_prep *prep);
int hma__mk_run_sce(const hma__mk_job *job);
int hma__mk_run_linear(const hma__mk_job *job);
int hma__mk_run_passthrough(const hma__mk_job *job);
int hma__mk_run_nearswap(const hma__mk_job *job);
int hma__mk_run_ram(const hma__mk_job *job);     /* ram and ramplus_tl */
int hma__mk_run_slerp(const hma__mk_job *job);
int hma__mk_run_nuslerp(const hma__mk_job *job);
int hma__mk_run_multislerp(const hma__mk_job *job);
int hma__mk_run_karcher(const hma__mk_job *job);
int hma__mk_run_model_stock(const hma__mk_job *job);
int hma__mk_run_arcee_fusion(const hma__mk_job *job);

/* ---- mk_merge.c ---- */
/* Parameter p of one model (pv = &job->model[i]) or of the globals
 * (pv = job->global): its evaluated value when set, else the method's
 * default from the table (0 when it has none). */
double hma__mk_get(const hma__mk_job *job, const hma__mk_pv *pv, hma__mk_param p);
/* 1 when p is set in pv or has a default for job's method. */
int hma__mk_has(const hma__mk_job *job, const hma__mk_pv *pv, hma__mk_param p);

/* ---- mk_reduce.c: reductions in double on fixed chunks ---- */
/* fn adds the k sums of elements [e0, e1) (one chunk) to acc[0..k), which
 * starts at 0. */
typedef void (*hma__mk_reduce_fn)(void *arg, uint64_t e0, uint64_t e1, double *acc);
/* sum[j] = the chunks' acc[j] added in chunk order (HMA__MK_CHUNK elements
 * per chunk; chunks run in parallel). HMA_OK or HMA_ERR_NO_MEMORY / pool error. */
int hma__mk_reduce(unsigned threads, uint64_t n, size_t k, hma__mk_reduce_fn fn, void *arg,
                   double *sum);

/* A tensor seen as m vectors of len elements: element i of vector v sits at
 * flat index v * vstride + i * estride. */
typedef struct hma__mk_vecs {
    uint64_t m, len, vstride, estride;
} hma__mk_vecs;
/* One vector (the flattened tensor). */
hma__mk_vecs hma__mk_vecs_flat(uint64_t n);
/* Rows of the last dimension (mergekit's dim=-1); ndim <= 1: one vector. */
hma__mk_vecs hma__mk_vecs_rows(const hma__mk_job *job);
/* Vectors along dimension 0 (what mergekit's transpose(0, -1) puts last):
 * for a 2-D tensor, its columns. ndim <= 1: one vector. */
hma__mk_vecs hma__mk_vecs_dim0(const hma__mk_job *job);

/* Index of the pair (i, j), i <= j, among k vectors' k (k + 1) / 2 pairs. */
static inline size_t hma__mk_tri(size_t i, size_t j, size_t k) { return i * k - i * (i + 1) / 2 + j; }

/*
 * Gram sums per vector of vs: g[v * P + hma__mk_tri(i, j, k)] = sum over the
 * vector's elements of a_i * a_j (i <= j; P = k (k + 1) / 2), in double,
 * with a_i = src[i][e], or float32 (src[i][e] - sub[e]) when sub != NULL.
 * Each vector is summed per HMA__MK_CHUNK of its elements, chunks added in
 * order, so g never depends on the thread count.
 */
int hma__mk_gram(unsigned threads, const hma__mk_vecs *vs, const float *const *src, size_t k,
                 const float *sub, double *g);

/* Walk flat indices e0, e0 + 1, ... and know each one's vector. */
typedef struct hma__mk_vit {
    uint64_t v, rem, m;
    int strided;
} hma__mk_vit;
static inline hma__mk_vit hma__mk_vit_at(const hma__mk_vecs *vs, uint64_t e) {
    hma__mk_vit it;
    it.m = vs->m;
    it.strided = vs->m > 1 && vs->estride != 1;
    if (it.strided) {
        it.v = e % vs->m; /* vstride == 1, estride == m */
        it.rem = 0;
    } else {
        it.v = e / vs->len;
        it.rem = vs->len - e % vs->len;
    }
    return it;
}
static inline void hma__mk_vit_next(hma__mk_vit *it, uint64_t len) {
    if (it->strided) {
        if (++it->v == it->m) it->v = 0;
    } else if (--it->rem == 0) {
        it->v++;
        it->rem = len;
    }
}

#endif /* HMA_MERGEKIT_MK_H */
