/*
 * mk_gta.c - mergekit's GeneralizedTaskArithmeticMerge (GTATask.execute in
 * mergekit/merge_methods/generalized_task_arithmetic.py): task_arithmetic,
 * ties, dare_linear, dare_ties, breadcrumbs, breadcrumbs_ties, della,
 * della_linear.
 *
 * For each source i other than the base, in order: d_i = x_i - base
 * (float32); sparsify it with that source's density / gamma / epsilon and
 * the global rescale (mk_sparsify.c); wd_i = d_i * (float)w_i. With sign
 * consensus (ties, dare_ties, breadcrumbs_ties, della; mergekit's "sum"):
 * majority = +1 where sum_i wd_i >= 0, else -1; wd_i counts when
 * sign(wd_i) == majority (zeros never count); mixed = sum of the counted
 * wd_i, divisor = sum of their w_i, 0 -> 1. Without: mixed = sum wd_i,
 * divisor = sum w_i, |divisor| < 1e-8 -> 1. Sums are float32 in source
 * order. mixed /= divisor if normalize; mixed *= (float)lambda if lambda
 * != 1; out = base + mixed. int8_mask changes only mergekit's mask dtype.
 *
 * Passes: magnitude and breadcrumbs never store the delta: a histogram
 * pass and a threshold pass read x_i and the base (plus one for the L1
 * rescale when asked), and the final pass recomputes d_i and applies the
 * mask on the fly. DARE writes the masked delta into x_i in one pass,
 * DELLA writes the delta, masks it per row and sums it. The final pass
 * reads every source once, in blocks, and writes out.
 */
#include "mergekit/mk_sparse.h"

#include "core/cpu.h"
#include "core/pool.h"

#include <inttypes.h>
#include <math.h>

typedef enum { SP_NONE, SP_MAGNITUDE, SP_RANDOM, SP_OUTLIERS, SP_DELLA } mk_sparsifier;

static mk_sparsifier sparsifier_of(hma__mk_method m) {
    switch (m) {
    case HMA__MK_TIES: return SP_MAGNITUDE;
    case HMA__MK_DARE_LINEAR:
    case HMA__MK_DARE_TIES: return SP_RANDOM;
    case HMA__MK_BREADCRUMBS:
    case HMA__MK_BREADCRUMBS_TIES: return SP_OUTLIERS;
    case HMA__MK_DELLA:
    case HMA__MK_DELLA_LINEAR: return SP_DELLA;
    default: return SP_NONE;
    }
}

static int has_consensus(hma__mk_method m) {
    return m == HMA__MK_TIES || m == HMA__MK_DARE_TIES || m == HMA__MK_BREADCRUMBS_TIES || m == HMA__MK_DELLA;
}

/* A value as the job gives it, else the method's default (0 if none). */
static double mk_param(const hma__mk_job *job, const hma__mk_pv *pv, hma__mk_param p) {
    if (pv && pv->set[p]) return pv->v[p];
    const hma__mk_pdef *d = hma__mk_pdef_of(hma__mk_info_of(job->method), p);
    return d && d->has_default ? d->def : 0.0;
}

/* ---- validation ------------------------------------------------------- */

int hma__mk_validate_gta(const hma__mk_job *job, const char *what) {
    const hma__mk_info *mi = hma__mk_info_of(job->method);
    const char *mname = mi ? mi->name : "?";
    mk_sparsifier sp = sparsifier_of(job->method);
    if (job->base < 0 || (size_t)job->base >= job->n_in)
        return hma__fail(HMA_ERR_RECIPE, "%s: merge_method %s needs a base_model", what, mname);
    for (size_t i = 0; i < job->n_in; i++) {
        if ((long)i == job->base) continue;
        const hma__mk_pv *pv = &job->model[i];
        if (!pv->set[HMA__P_WEIGHT])
            return hma__fail(HMA_ERR_RECIPE, "%s: model #%zu: merge_method %s needs a 'weight'", what, i, mname);
        double density = mk_param(job, pv, HMA__P_DENSITY);
        if (!(density >= 0.0))
            return hma__fail(HMA_ERR_RECIPE, "%s: model #%zu: density %g is not a number >= 0", what, i, density);
        if (sp == SP_MAGNITUDE && density < 1.0) {
            double k = floor(density * (double)job->n);
            if (k < 1.0)
                return hma__fail(HMA_ERR_RECIPE,
                                 "%s: model #%zu: density %g keeps no element of %" PRIu64
                                 " (ties keeps int(density x %" PRIu64 ") elements, and mergekit refuses to "
                                 "zero a whole tensor)",
                                 what, i, density, job->n, job->n);
        }
        if (sp == SP_OUTLIERS) {
            double gamma = mk_param(job, pv, HMA__P_GAMMA);
            if (!(gamma >= 0.0 && gamma <= 1.0))
                return hma__fail(HMA_ERR_RECIPE, "%s: model #%zu: gamma %g is not in [0, 1]", what, i, gamma);
        }
        if (sp == SP_DELLA && density > 0.0 && density < 1.0) {
            double eps = mk_param(job, pv, HMA__P_EPSILON);
            /* sparsify.della_magprune raises on the same condition */
            if (!(density - eps > 0.0) || !(density + eps < 1.0))
                return hma__fail(HMA_ERR_RECIPE,
                                 "%s: model #%zu: density %g and epsilon %g: della needs 0 < density - epsilon "
                                 "and density + epsilon < 1",
                                 what, i, density, eps);
            if (job->ndim > 2)
                return hma__fail(HMA_ERR_RECIPE,
                                 "%s: model #%zu: %s ranks magnitudes per row, and libhma ranks rows of 1-D "
                                 "and 2-D tensors only (this tensor has %u dimensions)",
                                 what, i, mname, job->ndim);
        }
    }
    return HMA_OK;
}

/* ---- the combining pass ---------------------------------------------- */

#define GTA_BLOCK HMA__MK_BLK

typedef struct gta_src {
    size_t idx;        /* i: the source's index in the job */
    hma__mk_in x;      /* x_i (raw or float32), or the stored (masked) delta when `stored` */
    int stored;
    hma__mk_mask mask; /* applied on the fly when not stored */
    float factor;      /* L1 rescale factor (1: none) */
    float w;
} gta_src;

typedef struct gta_arg {
    const hma__mk_parts *pt;
    hma__mk_in base;
    float *out;
    gta_src *src;
    size_t nsrc;
    int consensus, normalize;
    float lambda;      /* applied when apply_lambda */
    int apply_lambda;
    float divisor;     /* without consensus: sum w_i, already 1 when tiny */
    float *scratch;    /* per worker: (nsrc + 2) * GTA_BLOCK floats, then the stage */
    size_t per_worker; /* floats of scratch per worker */
    const hma__mk_job *job; /* its sink, when set: results go there per chunk via a stage */
    const hma__mk_gta_k *fast; /* the AVX-512 block loop's setup, NULL when it does not apply */
} gta_arg;

/*
 * The block loops run on 4-float vectors (GCC/Clang vector extensions,
 * SSE2 on x86-64): gcc's -O2 does not vectorize loops of unknown trip
 * count, and a data-dependent branch per element and source costs more
 * than the memory traffic. Vector lanes do exactly the scalar float32
 * operations, so the results are the scalar ones; a scalar loop finishes
 * the last len % 4 elements.
 */
typedef float mk_v4f __attribute__((vector_size(16)));
typedef uint32_t mk_v4u __attribute__((vector_size(16)));
typedef int32_t mk_v4i __attribute__((vector_size(16)));

static inline mk_v4f mk_ld(const float *p) {
    mk_v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void mk_st(float *p, mk_v4f v) { memcpy(p, &v, sizeof v); }
static inline mk_v4f mk_splat(float f) { return (mk_v4f){f, f, f, f}; }
/* lanes of v where m is all ones, +0 elsewhere */
static inline mk_v4f mk_and(mk_v4f v, mk_v4i m) { return (mk_v4f)((mk_v4i)v & m); }

/* wd_i of one source over a block of len elements into o: x, b are the
 * block's x_i (or stored delta) and base as float32. */
static inline void gta_weighted(const gta_src *s, const float *x, const float *b, size_t len, float *o,
                                hma__mk_mask_cur *cur) {
    float f = s->factor, w = s->w;
    mk_v4f vf = mk_splat(f), vw = mk_splat(w);
    size_t lv = len & ~(size_t)3, j;
    if (s->stored) {
        for (j = 0; j < lv; j += 4) mk_st(o + j, mk_ld(x + j) * vf * vw);
        for (; j < len; j++) o[j] = x[j] * f * w;
        return;
    }
    switch (s->mask.kind) {
    case HMA__MK_KEEP_ALL:
        for (j = 0; j < lv; j += 4) mk_st(o + j, (mk_ld(x + j) - mk_ld(b + j)) * vf * vw);
        for (; j < len; j++) o[j] = (x[j] - b[j]) * f * w;
        return;
    case HMA__MK_KEEP_NONE:
        for (j = 0; j < len; j++) o[j] = 0.0f;
        return;
    case HMA__MK_KEEP_TOP: {
        /* Elements equal to the threshold are kept while the part's budget
         * lasts (index order). Count them first: a block whose equal
         * elements all fit in the budget keeps u >= thr, a block after the
         * budget ran out keeps u > thr, both vectorized; only the one block
         * where the budget runs out goes element by element. */
        uint32_t thr = s->mask.a.thr;
        const mk_v4u vthr = {thr, thr, thr, thr}, vabs = {0x7fffffffu, 0x7fffffffu, 0x7fffffffu, 0x7fffffffu};
        uint64_t neq = 0;
        if (cur->ba && !cur->all_a) {
            mk_v4i veq = {0, 0, 0, 0};
            for (j = 0; j < lv; j += 4) veq -= (mk_v4i)(((mk_v4u)(mk_ld(x + j) - mk_ld(b + j)) & vabs) == vthr);
            neq = (uint64_t)(veq[0] + veq[1]) + (uint64_t)(veq[2] + veq[3]);
            for (; j < len; j++) neq += hma__mk_key_bits(x[j] - b[j]) == thr;
        }
        if (neq > cur->ba) {
            for (j = 0; j < len; j++) {
                float d = x[j] - b[j];
                o[j] = hma__mk_cut_in(&s->mask.a, hma__mk_key_bits(d), &cur->ba) ? d * f * w : 0.0f;
            }
            return;
        }
        cur->ba -= neq;
        /* neq > 0 or all_a here: every equal element is kept (u >= thr);
         * else none is in the block or none may be kept (u > thr) */
        int eq = neq || cur->all_a;
        mk_v4u vlim = eq ? vthr : vthr + 1u;
        uint32_t lim = eq ? thr : thr + 1u; /* keep u >= lim; thr < 2^31, no wrap */
        for (j = 0; j < lv; j += 4) {
            mk_v4f d = mk_ld(x + j) - mk_ld(b + j);
            mk_st(o + j, mk_and(d, (mk_v4i)(((mk_v4u)d & vabs) >= vlim)) * vf * vw);
        }
        for (; j < len; j++) {
            float d = x[j] - b[j];
            o[j] = (hma__mk_key_bits(d) >= lim ? d : 0.0f) * f * w;
        }
        return;
    }
    default:
        for (j = 0; j < len; j++) {
            float d = x[j] - b[j];
            o[j] = hma__mk_mask_keep(&s->mask, hma__mk_key_bits(d), cur) ? d * f * w : 0.0f;
        }
        return;
    }
}

/* get_mask("sum"): majority +1 where sum_i wd_i >= 0 (else -1, NaN
 * included); wd_i counts when its sign is the majority's. mixed and the
 * divisor are float32 sums in source order. */
static inline void gta_consensus(const gta_arg *a, const float *wd, const float *b, float *o, size_t len) {
    size_t T = a->nsrc, lv = len & ~(size_t)3, j;
    const mk_v4f zero = mk_splat(0.0f), one = mk_splat(1.0f), vl = mk_splat(a->lambda);
    for (j = 0; j < lv; j += 4) {
        mk_v4f acc = zero;
        for (size_t s = 0; s < T; s++) acc += mk_ld(wd + s * GTA_BLOCK + j);
        mk_v4i pos = (mk_v4i)(acc >= zero);
        mk_v4f mixed = zero, div = zero;
        for (size_t s = 0; s < T; s++) {
            mk_v4f v = mk_ld(wd + s * GTA_BLOCK + j);
            mk_v4i counted = (pos & (mk_v4i)(v > zero)) | (~pos & (mk_v4i)(v < zero));
            mixed += mk_and(v, counted);
            div += mk_and(mk_splat(a->src[s].w), counted);
        }
        if (a->normalize) {
            mk_v4i dz = (mk_v4i)(div == zero);
            mixed /= (mk_v4f)((dz & (mk_v4i)one) | (~dz & (mk_v4i)div));
        }
        if (a->apply_lambda) mixed *= vl;
        mk_st(o + j, mk_ld(b + j) + mixed);
    }
    for (; j < len; j++) {
        float acc = 0.0f;
        for (size_t s = 0; s < T; s++) acc += wd[s * GTA_BLOCK + j];
        int pos = acc >= 0.0f;
        float mixed = 0.0f, div = 0.0f;
        for (size_t s = 0; s < T; s++) {
            float v = wd[s * GTA_BLOCK + j];
            int counted = pos ? v > 0.0f : v < 0.0f;
            mixed += counted ? v : 0.0f;
            div += counted ? a->src[s].w : 0.0f;
        }
        if (a->normalize) mixed /= div == 0.0f ? 1.0f : div;
        if (a->apply_lambda) mixed *= a->lambda;
        o[j] = b[j] + mixed;
    }
}

static inline void gta_plain(const gta_arg *a, const float *wd, const float *b, float *o, size_t len) {
    size_t T = a->nsrc, lv = len & ~(size_t)3, j;
    const mk_v4f zero = mk_splat(0.0f), vd = mk_splat(a->divisor), vl = mk_splat(a->lambda);
    for (j = 0; j < lv; j += 4) {
        mk_v4f mixed = zero;
        for (size_t s = 0; s < T; s++) mixed += mk_ld(wd + s * GTA_BLOCK + j);
        if (a->normalize) mixed /= vd;
        if (a->apply_lambda) mixed *= vl;
        mk_st(o + j, mk_ld(b + j) + mixed);
    }
    for (; j < len; j++) {
        float mixed = 0.0f;
        for (size_t s = 0; s < T; s++) mixed += wd[s * GTA_BLOCK + j];
        if (a->normalize) mixed /= a->divisor;
        if (a->apply_lambda) mixed *= a->lambda;
        o[j] = b[j] + mixed;
    }
}

/* wd: nsrc blocks of wd_i, then one for the base and one for a source
 * (raw sources are converted there). */
static inline void gta_block(const gta_arg *a, uint64_t e, size_t len, float *wd, hma__mk_mask_cur *curs,
                             float *out) {
    float *bbuf = wd + a->nsrc * GTA_BLOCK, *xbuf = bbuf + GTA_BLOCK;
    const float *b = hma__mk_in_block(&a->base, e, len, bbuf);
    for (size_t s = 0; s < a->nsrc; s++)
        gta_weighted(&a->src[s], hma__mk_in_block(&a->src[s].x, e, len, xbuf), b, len, wd + s * GTA_BLOCK, &curs[s]);
    if (a->consensus)
        gta_consensus(a, wd, b, out, len);
    else
        gta_plain(a, wd, b, out, len);
}

#ifdef HMA_HAVE_AVX512_KERNELS
/* Settle the block's TOP budgets as gta_weighted would and set each
 * source's lim in k; 0 (nothing changed) when a budget runs out inside the
 * block or the block is not whole vectors: gta_block then does it. */
static int gta_fast_block(const gta_arg *a, hma__mk_gta_k *k, uint64_t e, size_t len, hma__mk_mask_cur *curs) {
    uint64_t neq[HMA__MK_GTA_MAXT];
    if (len % 16) return 0;
    for (size_t s = 0; s < a->nsrc; s++) {
        neq[s] = 0;
        if (a->src[s].mask.kind != HMA__MK_KEEP_TOP) continue;
        uint32_t thr = a->src[s].mask.a.thr;
        if (curs[s].all_a) {
            k->lim[s] = thr;
            continue;
        }
        if (curs[s].ba) neq[s] = hma__mk_count_eq_avx512(&a->src[s].x, &a->base, e, len, thr);
        if (neq[s] > curs[s].ba) return 0;
        k->lim[s] = neq[s] ? thr : thr + 1u; /* thr < 2^31: no wrap */
    }
    for (size_t s = 0; s < a->nsrc; s++) curs[s].ba -= neq[s];
    return 1;
}
#endif

static int gta_part(void *arg, unsigned p, unsigned worker) {
    const gta_arg *a = arg;
    size_t T = a->nsrc;
    float *wd = a->scratch + (size_t)worker * a->per_worker, *stage = wd + (T + 2) * GTA_BLOCK;
    hma__mk_mask_cur cur[64];
    hma__mk_mask_cur *curs = T <= 64 ? cur : hma__malloc(T * sizeof *curs);
    if (!curs) return hma__fail(HMA_ERR_NO_MEMORY, "out of memory (merge)");
    for (size_t s = 0; s < T; s++) curs[s] = hma__mk_mask_start(&a->src[s].mask, p);
#ifdef HMA_HAVE_AVX512_KERNELS
    hma__mk_gta_k fk;
    if (a->fast) fk = *a->fast; /* lim changes per block */
#endif
    uint64_t c0, c1;
    hma__mk_part_chunks(a->pt, p, &c0, &c1);
    int rc = HMA_OK;
    const hma__mk_job *job = a->job;
    for (uint64_t c = c0; c < c1 && rc == HMA_OK; c++) {
        uint64_t e0, e1, e;
        hma__mk_chunk_range(a->pt->n, c, &e0, &e1);
        /* with a sink, the chunk is built in the stage (it stays in cache
         * for the sink's conversion); else straight into out */
        float *o = job->sink ? stage - e0 : a->out;
        for (e = e0; e < e1; e += GTA_BLOCK) {
            size_t len = e1 - e < GTA_BLOCK ? (size_t)(e1 - e) : GTA_BLOCK;
#ifdef HMA_HAVE_AVX512_KERNELS
            if (a->fast && gta_fast_block(a, &fk, e, len, curs)) {
                hma__mk_gta_avx512(&fk, e, len, o + e);
                continue;
            }
#endif
            gta_block(a, e, len, wd, curs, o + e);
        }
        if (job->sink) rc = job->sink(job->sink_user, worker, e0, stage, (size_t)(e1 - e0));
    }
    if (rc == HMA_OK && job->release && c1 > c0) { /* this part's elements are done with */
        uint64_t e0, e1, tmp;
        hma__mk_chunk_range(a->pt->n, c0, &e0, &tmp);
        hma__mk_chunk_range(a->pt->n, c1 - 1, &tmp, &e1);
        if (a->base.raw) job->release(job->release_user, (size_t)job->base, e0, e1);
        for (size_t s = 0; s < T; s++)
            if (a->src[s].x.raw) job->release(job->release_user, a->src[s].idx, e0, e1);
    }
    if (curs != cur) hma__free(curs);
    return rc;
}

/* ---- the method ------------------------------------------------------- */

typedef struct delta_arg {
    float *x;
    const float *b;
} delta_arg;

static int delta_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const delta_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++) a->x[e] -= a->b[e];
    return HMA_OK;
}

int hma__mk_reads_raw(const hma__mk_job *job) {
    /* magnitude and breadcrumbs plan masks on the fly; DARE and DELLA
     * write their masked deltas into x */
    mk_sparsifier sp = sparsifier_of(job->method);
    return job->method == HMA__MK_TASK_ARITHMETIC || sp == SP_MAGNITUDE || sp == SP_OUTLIERS;
}

/* Source i as this method reads it (raw bytes only where it takes them). */
static hma__mk_in gta_in(const hma__mk_job *job, size_t i) {
    return hma__mk_reads_raw(job) ? hma__mk_in_of(job, i) : hma__mk_in_f(job->x[i]);
}

typedef struct copy_arg {
    const hma__mk_job *job;
    const hma__mk_in *base;
    float *stage; /* per worker HMA__MK_CHUNK floats (with a sink) */
} copy_arg;

static int copy_job(void *arg, uint64_t c, unsigned worker) {
    const copy_arg *a = arg;
    uint64_t e0, e1;
    hma__mk_chunk_range(a->job->n, c, &e0, &e1);
    size_t len = (size_t)(e1 - e0);
    if (!a->job->sink) {
        hma__mk_in_convert(a->base, e0, len, a->job->out + e0);
        return HMA_OK;
    }
    float *st = a->stage + (size_t)worker * HMA__MK_CHUNK;
    const float *v = hma__mk_in_block(a->base, e0, len, st);
    return a->job->sink(a->job->sink_user, worker, e0, v, len);
}

/* The result is the base: copied, or converted, or handed to the sink. */
static int gta_copy_base(const hma__mk_job *job, const hma__mk_in *base) {
    uint64_t n = job->n;
    if (n == 0) return HMA_OK;
    if (base->f && !job->sink) {
        memcpy(job->out, base->f, n * sizeof *job->out);
        return HMA_OK;
    }
    copy_arg a = {job, base, NULL};
    uint64_t nc = hma__mk_chunks(n);
    if (job->sink && !base->f) {
        a.stage = hma__malloc((size_t)hma__pool_threads(job->threads, nc) * HMA__MK_CHUNK * sizeof *a.stage);
        if (!a.stage) return hma__fail(HMA_ERR_NO_MEMORY, "tensor '%s': out of memory", job->name);
    }
    int rc = hma__pool_run(nc, job->threads, copy_job, &a, NULL, NULL);
    hma__free(a.stage);
    return rc;
}

#ifdef HMA_HAVE_AVX512_KERNELS
/* The AVX-512 block loop applies when every source is read as float32 or
 * raw BF16 and every mask keeps keys >= some limit (ALL or TOP). */
static int gta_fast_setup(const gta_arg *a, hma__mk_gta_k *k) {
    if (hma__cpu_level() < HMA_SIMD_AVX512 || a->nsrc > HMA__MK_GTA_MAXT || !hma__mk_range_avx512_ok(&a->base))
        return 0;
    memset(k, 0, sizeof *k);
    k->T = a->nsrc;
    k->base = a->base;
    for (size_t s = 0; s < a->nsrc; s++) {
        const gta_src *g = &a->src[s];
        if (g->stored || (g->mask.kind != HMA__MK_KEEP_ALL && g->mask.kind != HMA__MK_KEEP_TOP) ||
            !hma__mk_range_avx512_ok(&g->x))
            return 0;
        k->x[s] = g->x;
        k->lim[s] = 0; /* ALL: every key >= 0 */
        k->f[s] = g->factor;
        k->w[s] = g->w;
    }
    k->consensus = a->consensus;
    k->normalize = a->normalize;
    k->apply_lambda = a->apply_lambda;
    k->lambda = a->lambda;
    k->divisor = a->divisor;
    return 1;
}
#endif

/* What gta_plan found (hma__mk_prep of mk.h): the masks and factors. */
struct hma__mk_prep {
    hma__mk_parts pt;
    gta_src *src;
    size_t T;
};

void hma__mk_prep_free(hma__mk_prep *p) {
    if (!p) return;
    for (size_t s = 0; s < p->T; s++) hma__mk_mask_free(&p->src[s].mask);
    hma__free(p->src);
    hma__free(p);
}

/* Every source's mask and factor (the selection passes: they read the
 * sources and write nothing, except DARE / DELLA, which mask x in place).
 * T > 0 and n > 0. */
static int gta_plan(const hma__mk_job *job, hma__mk_prep **out) {
    *out = NULL;
    hma__mk_in base = gta_in(job, (size_t)job->base);
    uint64_t n = job->n;
    size_t T = job->n_in - 1;
    mk_sparsifier sp = sparsifier_of(job->method);
    int rescale = mk_param(job, job->global, HMA__P_RESCALE) != 0.0;
    hma__mk_prep *pr = hma__calloc(1, sizeof *pr);
    gta_src *src = pr ? hma__calloc(T, sizeof *src) : NULL;
    if (!src) {
        hma__free(pr);
        return hma__fail(HMA_ERR_NO_MEMORY, "tensor '%s': out of memory", job->name);
    }
    pr->src = src;
    pr->T = T;
    hma__mk_parts_init(&pr->pt, n, job->threads, job->ws);
    const hma__mk_parts *pt = &pr->pt;
    int rc = HMA_OK;
    size_t t = 0;
    for (size_t i = 0; i < job->n_in && rc == HMA_OK; i++) {
        if ((long)i == job->base) continue;
        const hma__mk_pv *pv = &job->model[i];
        gta_src *s = &src[t++];
        s->idx = i;
        double density = mk_param(job, pv, HMA__P_DENSITY);
        s->x = gta_in(job, i);
        s->w = (float)mk_param(job, pv, HMA__P_WEIGHT);
        s->factor = 1.0f;
        hma__mk_keys keys = {s->x, base};
        switch (sp) {
        case SP_NONE: break;
        case SP_MAGNITUDE: rc = hma__mk_plan_magnitude(pt, &keys, density, rescale, &s->mask, &s->factor); break;
        case SP_OUTLIERS:
            rc = hma__mk_plan_breadcrumbs(pt, &keys, density, mk_param(job, pv, HMA__P_GAMMA), rescale, &s->mask,
                                          &s->factor);
            break;
        case SP_RANDOM:
            rc = hma__mk_dare_core(job->threads, job->x[i], base.f, n, density, rescale,
                                   hma__mk_rng_key(job->seed, job->name, i), &s->factor);
            s->stored = 1;
            break;
        case SP_DELLA: {
            uint64_t rows = 1, cols = n;
            if (job->ndim == 2) {
                rows = job->shape[0];
                cols = job->shape[1];
            } else if (job->ndim > 2 && density > 0.0 && density < 1.0) {
                rc = hma__fail(HMA_ERR_RECIPE, "tensor '%s': della ranks rows of 1-D and 2-D tensors only",
                               job->name);
                break;
            }
            delta_arg da = {job->x[i], base.f};
            rc = hma__mk_for(job->threads, n, delta_chunk, &da);
            if (rc == HMA_OK)
                rc = hma__mk_della_core(job->threads, job->x[i], rows, cols, density,
                                        mk_param(job, pv, HMA__P_EPSILON), rescale,
                                        hma__mk_rng_key(job->seed, job->name, i), &s->factor);
            s->stored = 1;
            break;
        }
        }
    }
    if (rc != HMA_OK) {
        hma__mk_prep_free(pr);
        return rc;
    }
    *out = pr;
    return HMA_OK;
}

/* The combining pass over the planned sources: out (or the sink). */
static int gta_combine(const hma__mk_job *job, hma__mk_prep *pr) {
    hma__mk_in base = gta_in(job, (size_t)job->base);
    size_t T = pr->T;
    gta_src *src = pr->src;
    double lambda = mk_param(job, job->global, HMA__P_LAMBDA);
    /* the workspace is the job's own (a preparation may be older than it) */
    hma__mk_parts pt = pr->pt;
    pt.ws = job->ws;
    size_t per_worker = (T + 2) * GTA_BLOCK + (job->sink ? (size_t)HMA__MK_CHUNK : 0);
    unsigned workers = hma__mk_parts_workers(&pt);
    float *scratch = hma__mk_ws_take(job->ws, HMA__MK_WS_BLOCKS, (size_t)workers * per_worker * sizeof *scratch);
    if (!scratch) return hma__fail(HMA_ERR_NO_MEMORY, "tensor '%s': out of memory", job->name);
    gta_arg a = {&pt, base, job->out, src, T, has_consensus(job->method),
                 mk_param(job, job->global, HMA__P_NORMALIZE) != 0.0, (float)lambda, lambda != 1.0, 1.0f,
                 scratch, per_worker, job, NULL};
    /* weights.sum(dim=0) in float32, source order */
    float dv = 0.0f;
    for (size_t s = 0; s < T; s++) dv += src[s].w;
    a.divisor = fabsf(dv) < 1e-8f ? 1.0f : dv;
#ifdef HMA_HAVE_AVX512_KERNELS
    hma__mk_gta_k fk;
    if (gta_fast_setup(&a, &fk)) a.fast = &fk;
#endif
    int rc = hma__mk_parts_run(&pt, gta_part, &a);
    hma__mk_ws_give(job->ws, scratch);
    return rc;
}

int hma__mk_prepare_gta(const hma__mk_job *job, hma__mk_prep **out) {
    *out = NULL;
    if (job->n_in < 2 || job->n == 0 || !hma__mk_reads_raw(job)) return HMA_OK; /* nothing to do ahead */
    return gta_plan(job, out);
}

int hma__mk_run_gta_prepared(const hma__mk_job *job, hma__mk_prep *prep) {
    hma__mk_in base = gta_in(job, (size_t)job->base);
    if (job->n_in < 2 || job->n == 0) /* get_task_vectors found nothing: the base */
        return gta_copy_base(job, &base);
    hma__mk_prep *own = NULL;
    if (!prep) {
        int rc = gta_plan(job, &own);
        if (rc != HMA_OK) return rc;
        prep = own;
    }
    int rc = gta_combine(job, prep);
    hma__mk_prep_free(own);
    return rc;
}

int hma__mk_run_gta(const hma__mk_job *job) { return hma__mk_run_gta_prepared(job, NULL); }
