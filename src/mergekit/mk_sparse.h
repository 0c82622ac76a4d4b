/*
 * mk_sparse.h - the pieces shared by the sparsifying methods (mk_select.c,
 * mk_sparsify.c, mk_gta.c, mk_sce.c) and nothing else (internal to them).
 *
 * Parts: [0, n) cut into `count` contiguous runs of whole HMA__MK_CHUNK
 * chunks, one job each on the pool. A selection threshold splits the
 * elements equal to it by flat index, so whoever applies a mask must know
 * how many equal elements come before its run: runs are contiguous and
 * visited in index order within a job, and per-run counts are integers, so
 * the result never depends on how many parts (threads) there are.
 */
#ifndef HMA_MERGEKIT_MK_SPARSE_H
#define HMA_MERGEKIT_MK_SPARSE_H

#include "mergekit/mk.h"

#include <string.h>

/* At most this many parts (each holds 768 KiB of histograms at most). */
#define HMA__MK_MAX_PARTS 32u

typedef struct hma__mk_parts {
    uint64_t n, nchunks;
    unsigned count;   /* parts, >= 1 when n > 0 */
    unsigned threads; /* as asked (0 = online CPUs) */
    hma__mk_ws *ws;   /* where the passes' buffers come from (NULL: allocated each time) */
} hma__mk_parts;

/* ws: the run's workspace, or NULL. */
void hma__mk_parts_init(hma__mk_parts *pt, uint64_t n, unsigned threads, hma__mk_ws *ws);
/* Chunks [*c0, *c1) of part p. */
static inline void hma__mk_part_chunks(const hma__mk_parts *pt, unsigned p, uint64_t *c0, uint64_t *c1) {
    *c0 = pt->nchunks * p / pt->count;
    *c1 = pt->nchunks * (p + 1) / pt->count;
}
/* fn once per part, parts in parallel; `worker` is unique among the running
 * jobs (per-worker scratch). HMA_OK or the error of the lowest failing part. */
typedef int (*hma__mk_part_fn)(void *arg, unsigned part, unsigned worker);
int hma__mk_parts_run(const hma__mk_parts *pt, hma__mk_part_fn fn, void *arg);
/* Threads the parts run on (sizes per-worker scratch). */
unsigned hma__mk_parts_workers(const hma__mk_parts *pt);

/* Selection keys are float bits with the sign bit cleared: for non-negative
 * floats (and |x|) the integer order is the float order, -0 equals +0. */
static inline uint32_t hma__mk_key_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u & 0x7fffffffu;
}

/*
 * A cut: the group of the first m elements of an order, where the order is
 * the key descending (`desc`) or ascending, equal keys by ascending flat
 * index either way. An element is in the group iff its key is beyond thr
 * (above for desc, below for asc), or it equals thr and is one of the first
 * n_first such elements by index. eq_before[p]: keys equal to thr in parts
 * before p (so a part starts with budget n_first - eq_before[p]).
 */
typedef struct hma__mk_cut {
    uint32_t thr;
    int desc;
    uint64_t n_first;
    uint64_t *eq_before; /* parts.count entries (owned) */
    uint64_t n_eq;       /* keys equal to thr in all parts */
    unsigned parts;      /* entries of eq_before */
} hma__mk_cut;

static inline uint64_t hma__mk_cut_budget(const hma__mk_cut *c, unsigned part) {
    return c->n_first > c->eq_before[part] ? c->n_first - c->eq_before[part] : 0;
}
/* Keys equal to thr in part p: a part whose budget covers them all keeps
 * them all, with no counting as it goes. */
static inline uint64_t hma__mk_cut_eq_in(const hma__mk_cut *c, unsigned part) {
    return (part + 1 < c->parts ? c->eq_before[part + 1] : c->n_eq) - c->eq_before[part];
}
/* Is key u in the group; *budget is the part's running budget. */
static inline int hma__mk_cut_in(const hma__mk_cut *c, uint32_t u, uint64_t *budget) {
    if (u == c->thr) {
        if (*budget == 0) return 0;
        (*budget)--;
        return 1;
    }
    return c->desc ? u > c->thr : u < c->thr;
}
void hma__mk_cut_free(hma__mk_cut *c);

/*
 * One source as the passes read it: float32 elements (f), or, when f is
 * NULL, the raw bytes of a memory-mapped tensor of dtype dt (F16, BF16,
 * F32 or F64) converted block by block with hma__kernel_convert, the very
 * conversion the recipe layer's load would do, so results are identical
 * and no whole-tensor float32 copy is ever made (hma__mk_job.raw).
 */
typedef struct hma__mk_in {
    const float *f;
    const void *raw;
    hma_dtype dt;
} hma__mk_in;

/* Elements to convert at once (a block lives in L1). */
#define HMA__MK_BLK 1024u

static inline hma__mk_in hma__mk_in_f(const float *f) {
    hma__mk_in in = {f, NULL, HMA_DTYPE_F32};
    return in;
}
/* Source i of a job: raw when the job gives raw bytes for it, else x[i]. */
hma__mk_in hma__mk_in_of(const hma__mk_job *job, size_t i);
/* Convert raw elements [e, e + len) of s into buf. */
void hma__mk_in_convert(const hma__mk_in *s, uint64_t e, size_t len, float *buf);
/* Elements [e, e + len) as float32: s->f + e, or buf filled (len <= its size). */
static inline const float *hma__mk_in_block(const hma__mk_in *s, uint64_t e, size_t len, float *buf) {
    if (s->f) return s->f + e;
    hma__mk_in_convert(s, e, len, buf);
    return buf;
}
/* Element e as float32. */
static inline float hma__mk_in_at(const hma__mk_in *s, uint64_t e) {
    if (s->f) return s->f[e];
    float v;
    if (s->dt == HMA_DTYPE_BF16) { /* the exact widening, as hma__mk_in_convert */
        uint16_t h;
        memcpy(&h, (const unsigned char *)s->raw + e * 2, sizeof h);
        uint32_t w = (uint32_t)h << 16;
        memcpy(&v, &w, sizeof v);
        return v;
    }
    hma__mk_in_convert(s, e, 1, &v);
    return v;
}

/*
 * The keys of a selection: |a[e] - b[e]| (float32 subtraction) when b is
 * given (b.f or b.raw not NULL: a delta never stored), else |a[e]|.
 */
typedef struct hma__mk_keys {
    hma__mk_in a, b;
} hma__mk_keys;
static inline int hma__mk_keys_delta(const hma__mk_keys *k) { return k->b.f || k->b.raw; }
static inline hma__mk_keys hma__mk_keys_f(const float *a, const float *b) {
    hma__mk_keys k = {hma__mk_in_f(a), hma__mk_in_f(b)};
    return k;
}

/* A part's counts in the range pass. The range's ends are sample keys,
 * and BF16 deltas lump on a few values (powers of two above all): the keys
 * equal to an end are counted, not collected, which keeps the collected
 * keys to about a third. */
typedef struct hma__mk_rcount {
    uint64_t above; /* keys > rhi */
    uint64_t eq_hi; /* keys == rhi */
    uint64_t in;    /* keys in (rlo, rhi), collected (> rcap: overflowed) */
    uint64_t eq_lo; /* keys == rlo (0 when rlo == rhi) */
} hma__mk_rcount;

/*
 * Radix selection in two 16-bit levels over the key bits: hma__mk_sel_count
 * fills the per-part level-1 histograms (HMA__MK_H1_WAYS interleaved copies
 * per part, so that runs of equal keys, common in BF16 deltas, do not make
 * every increment wait for the previous one), hma__mk_sel_cut then finds a
 * cut with one more read pass over the keys.
 */
typedef struct hma__mk_sel {
    const hma__mk_parts *pt;
    uint32_t *h1;    /* count x HMA__MK_H1_WAYS x 32768 */
    uint64_t *h1sum; /* 32768, after the merge */
    uint32_t *h2;    /* count x 65536 */
    uint64_t *h2sum; /* 65536 */
    int merged;
    uint32_t pred_hi; /* level-1 bucket whose level-2 counts the count pass also takes */
    uint32_t h2_hi;   /* the bucket h2 holds (UINT32_MAX: none) */
    /* Range mode (mk_select.c): set one_cut before hma__mk_sel_count when
     * only one cut will be asked for; the count pass then counts the keys
     * above a predicted range and collects those inside it instead of
     * histogramming every key, and the cut falls back to the histograms
     * when the range missed. */
    int one_cut;
    int ranged;          /* the count pass took the range path */
    uint32_t rlo, rhi;   /* keys in (rlo, rhi) collected; > rhi, == rhi, == rlo counted */
    uint64_t rcap;       /* collected keys per part, at most */
    hma__mk_rcount *rcnt; /* per part */
    uint32_t *rkeys;     /* count x (rcap + 1) */
} hma__mk_sel;

#define HMA__MK_H1 32768u
#define HMA__MK_H1_WAYS 4u
#define HMA__MK_H2 65536u

int hma__mk_sel_init(hma__mk_sel *s, const hma__mk_parts *pt); /* HMA_OK / HMA_ERR_NO_MEMORY */
void hma__mk_sel_free(hma__mk_sel *s);
/* The AVX-512 range-pass loop (mk_kernels_avx512.c; only where
 * HMA_HAVE_AVX512_KERNELS and hma__cpu_level() is AVX-512): over elements
 * [e0, e1) adds to c's counts (hma__mk_rcount) and writes the keys in
 * (lo, hi) to col[c->in...] in index order while they fit in cap slots
 * (c->in counts on past cap). _ok: the source is one it reads (float32 or
 * raw BF16). */
int hma__mk_range_avx512_ok(const hma__mk_in *s);
void hma__mk_range_avx512(const hma__mk_keys *k, uint64_t e0, uint64_t e1, uint32_t lo, uint32_t hi, uint32_t *col,
                          uint64_t cap, hma__mk_rcount *c);

/* The AVX-512 combining loop of mk_gta.c (mk_kernels_avx512.c) for a
 * block of len elements (a multiple of 16) at e whose masks all keep the
 * keys >= lim[s]: out o[0, len). Sources float32 or raw BF16 (_ok above). */
#define HMA__MK_GTA_MAXT 8u
typedef struct hma__mk_gta_k {
    size_t T; /* <= HMA__MK_GTA_MAXT */
    hma__mk_in base, x[HMA__MK_GTA_MAXT];
    uint32_t lim[HMA__MK_GTA_MAXT];
    float f[HMA__MK_GTA_MAXT], w[HMA__MK_GTA_MAXT];
    int consensus, normalize, apply_lambda;
    float lambda, divisor;
} hma__mk_gta_k;
void hma__mk_gta_avx512(const hma__mk_gta_k *k, uint64_t e, size_t len, float *o);
/* Keys |x - b| equal to thr in a block of len (a multiple of 16) at e. */
uint64_t hma__mk_count_eq_avx512(const hma__mk_in *x, const hma__mk_in *b, uint64_t e, size_t len, uint32_t thr);

/* The level-1 histograms of all keys, and (chunk_l1 not NULL) the sum of
 * the keys of every chunk in double (nchunks entries: mergekit's L1
 * "before" norm). `m`, `desc`: the cut that will be asked for first: a
 * sample of the keys predicts its level-1 bucket, and the pass also takes
 * that bucket's level-2 counts, which saves the second pass whenever the
 * prediction is right (the result never depends on it). m == 0: no
 * prediction. */
int hma__mk_sel_count(hma__mk_sel *s, const hma__mk_keys *keys, double *chunk_l1, uint64_t m, int desc);
/* The cut of the first m elements (m may be 0 or >= n). */
int hma__mk_sel_cut(hma__mk_sel *s, const hma__mk_keys *keys, uint64_t m, int desc, hma__mk_cut *out);

/* ---- the generator (mk_rng.c documents it) ---- */
static inline uint64_t hma__mk_fmix64(uint64_t z) {
    z ^= z >> 30;
    z *= 0xBF58476D1CE4E5B9ull;
    z ^= z >> 27;
    z *= 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z;
}
/* hma__mk_rng_uniform, inlined into the per-element loops of DARE / DELLA. */
static inline float hma__mk_uniform(uint64_t key, uint64_t index) {
    return (float)(hma__mk_fmix64(key + 0x9E3779B97F4A7C15ull * (index + 1)) >> 40) * 0x1p-24f;
}

/* ---- masks (mk_sparsify.c): which elements of a delta survive ---- */
enum {
    HMA__MK_KEEP_ALL = 0,  /* density >= 1 */
    HMA__MK_KEEP_NONE,     /* e.g. k == 0 */
    HMA__MK_KEEP_TOP,      /* in the group of desc cut a (magnitude) */
    HMA__MK_KEEP_BAND      /* not in asc cut a, in asc cut b (breadcrumbs) */
};
typedef struct hma__mk_mask {
    int kind;
    hma__mk_cut a, b;
} hma__mk_mask;
/* A part's running state of a mask; all_a: the part keeps every key equal
 * to a's threshold (ba covers them: nothing to count). */
typedef struct hma__mk_mask_cur {
    uint64_t ba, bb;
    int all_a;
} hma__mk_mask_cur;
static inline hma__mk_mask_cur hma__mk_mask_start(const hma__mk_mask *m, unsigned part) {
    hma__mk_mask_cur c = {0, 0, 0};
    if (m->kind == HMA__MK_KEEP_TOP || m->kind == HMA__MK_KEEP_BAND) c.ba = hma__mk_cut_budget(&m->a, part);
    if (m->kind == HMA__MK_KEEP_TOP) c.all_a = c.ba >= hma__mk_cut_eq_in(&m->a, part);
    if (m->kind == HMA__MK_KEEP_BAND) c.bb = hma__mk_cut_budget(&m->b, part);
    return c;
}
/* Does the element with key bits u survive; elements must be visited in
 * index order within the part. */
static inline int hma__mk_mask_keep(const hma__mk_mask *m, uint32_t u, hma__mk_mask_cur *c) {
    switch (m->kind) {
    case HMA__MK_KEEP_ALL: return 1;
    case HMA__MK_KEEP_TOP: return hma__mk_cut_in(&m->a, u, &c->ba);
    case HMA__MK_KEEP_BAND: {
        int lo = hma__mk_cut_in(&m->a, u, &c->ba); /* both always: both budgets move */
        int hi = hma__mk_cut_in(&m->b, u, &c->bb);
        return !lo && hi;
    }
    default: return 0;
    }
}
void hma__mk_mask_free(hma__mk_mask *m);

/* L1 rescale factor of mergekit's rescaled_masked_tensor (RescaleNorm.l1):
 * (float)(before / after), 1 when either is below 1e-7. */
float hma__mk_rescale_factor(double before, double after);

/*
 * Plan the mask of d = keys (|a - b| or |a|) without writing anything, and
 * the L1 rescale factor (1 without rescale): magnitude keeps the first
 * int(density n) by |d| descending; breadcrumbs keeps ascending positions
 * [n_bot, n - n_top). mk_gta.c applies the mask on the fly.
 */
int hma__mk_plan_magnitude(const hma__mk_parts *pt, const hma__mk_keys *keys, double density, int rescale,
                           hma__mk_mask *mask, float *factor);
int hma__mk_plan_breadcrumbs(const hma__mk_parts *pt, const hma__mk_keys *keys, double density, double gamma,
                             int rescale, hma__mk_mask *mask, float *factor);

/* DARE on d = a - b (b NULL: a is already the delta): writes the masked
 * delta into a; *factor: the L1 rescale factor (1 without rescale), not
 * applied. */
int hma__mk_dare_core(unsigned threads, float *a, const float *b, uint64_t n, double density, int rescale,
                      uint64_t key, float *factor);
/* DELLA on d (already the delta), rows x cols: masks in place; *factor as above. */
int hma__mk_della_core(unsigned threads, float *d, uint64_t rows, uint64_t cols, double density,
                       double epsilon, int rescale, uint64_t key, float *factor);
/* d *= f, in place, element-wise. */
int hma__mk_scale(unsigned threads, float *d, uint64_t n, float f);

#endif /* HMA_MERGEKIT_MK_SPARSE_H */
