/*
 * mk_select.c - exact, stable selection of the first k elements of an
 * order (key descending or ascending, equal keys by ascending flat index)
 * in O(n): a radix select on the float bits, never a sort of the tensor.
 *
 * Why not torch's way: mergekit's argsort/topk leave equal keys in an
 * unspecified order, and BF16 deltas tie a lot at a threshold (issue 12,
 * item 5); a flat-index tie rule makes the selected set unique.
 *
 * How: keys are float bits with the sign bit cleared (non-negative floats
 * order like their integer bits). Level 1 histograms the top 15 bits
 * (u >> 16) per part, the parts' counts are added (integers: exact, any
 * order), the bucket holding the wanted rank is found; level 2 histograms
 * the low 16 bits of the keys in that bucket, per part, which gives the
 * threshold and, per part, how many keys equal it. An exclusive prefix of
 * those counts over the parts (in index order) tells each part how many
 * equal keys lie before it, so masks split the ties by flat index without
 * any further pass and whatever the number of parts.
 */
#include "mergekit/mk_sparse.h"

#include "core/pool.h"
#include "merge/kernels.h"

#include <math.h>

/* ---- sources ---------------------------------------------------------- */

hma__mk_in hma__mk_in_of(const hma__mk_job *job, size_t i) {
    hma__mk_in in = hma__mk_in_f(job->x[i]);
    if (job->raw && job->raw[i]) {
        in.f = NULL;
        in.raw = job->raw[i];
        in.dt = job->raw_dtype[i];
    }
    return in;
}

typedef uint16_t mk_v8h __attribute__((vector_size(16)));
typedef uint32_t mk_v8w __attribute__((vector_size(32)));

void hma__mk_in_convert(const hma__mk_in *s, uint64_t e, size_t len, float *buf) {
    if (s->dt == HMA_DTYPE_BF16) {
        /* the exact widening (bits << 16), NaNs kept as they are, as
         * hma__kernel_convert does; inline, without its bounce buffer */
        const unsigned char *r = (const unsigned char *)s->raw + e * 2;
        size_t j = 0;
        for (; j + 8 <= len; j += 8) {
            mk_v8h h;
            memcpy(&h, r + 2 * j, sizeof h);
            mk_v8w w = __builtin_convertvector(h, mk_v8w) << 16;
            memcpy(buf + j, &w, sizeof w);
        }
        for (; j < len; j++) {
            uint16_t h;
            memcpy(&h, r + 2 * j, sizeof h);
            uint32_t w = (uint32_t)h << 16;
            memcpy(buf + j, &w, sizeof w);
        }
        return;
    }
    const unsigned char *r = s->raw;
    hma__kernel_convert(hma__cpu_level(), s->dt, r + e * (hma_dtype_bits(s->dt) / 8), HMA_DTYPE_F32, buf, len);
}

/* ---- parts ------------------------------------------------------------ */

void hma__mk_parts_init(hma__mk_parts *pt, uint64_t n, unsigned threads, hma__mk_ws *ws) {
    pt->n = n;
    pt->ws = ws;
    pt->nchunks = hma__mk_chunks(n);
    pt->threads = threads;
    unsigned c = hma__pool_threads(threads, pt->nchunks ? pt->nchunks : 1);
    if (c > HMA__MK_MAX_PARTS) c = HMA__MK_MAX_PARTS;
    /* Per-part histograms count in uint32: a part stays under 2^32 elements. */
    uint64_t need = (pt->nchunks + 65534) / 65535;
    if (need > c) c = (unsigned)(need < UINT32_MAX ? need : UINT32_MAX);
    if (pt->nchunks && c > pt->nchunks) c = (unsigned)pt->nchunks;
    pt->count = c ? c : 1;
}

unsigned hma__mk_parts_workers(const hma__mk_parts *pt) {
    return pt->count == 1 ? 1 : hma__pool_threads(pt->threads, pt->count);
}

typedef struct parts_arg {
    hma__mk_part_fn fn;
    void *arg;
} parts_arg;

static int parts_job(void *arg, uint64_t job, unsigned worker) {
    const parts_arg *a = arg;
    return a->fn(a->arg, (unsigned)job, worker);
}

int hma__mk_parts_run(const hma__mk_parts *pt, hma__mk_part_fn fn, void *arg) {
    if (pt->n == 0) return HMA_OK;
    if (pt->count == 1) return fn(arg, 0, 0);
    parts_arg a = {fn, arg};
    return hma__pool_run(pt->count, pt->threads, parts_job, &a, NULL, NULL);
}

/* ---- the selection engine --------------------------------------------- */

/* A part's level-2 histogram, then spare counters (count_part) and padding
 * so that parts never share a cache line. */
#define MK_H2_STRIDE (HMA__MK_H2 + 16u)

int hma__mk_sel_init(hma__mk_sel *s, const hma__mk_parts *pt) {
    memset(s, 0, sizeof *s);
    s->pt = pt;
    /* h1 and h1sum must start at zero, h2 and h2sum need not */
    size_t n1 = (size_t)pt->count * HMA__MK_H1_WAYS * HMA__MK_H1, n2 = (size_t)pt->count * MK_H2_STRIDE;
    size_t b1 = n1 * sizeof *s->h1 + HMA__MK_H1 * sizeof *s->h1sum;
    size_t b2 = HMA__MK_H2 * sizeof *s->h2sum + n2 * sizeof *s->h2;
    unsigned char *m1 = hma__mk_ws_take(pt->ws, HMA__MK_WS_H1, b1);
    unsigned char *m2 = m1 ? hma__mk_ws_take(pt->ws, HMA__MK_WS_H2, b2) : NULL;
    if (!m1 || !m2) {
        hma__mk_ws_give(pt->ws, m1);
        return hma__fail(HMA_ERR_NO_MEMORY, "out of memory (selection histograms)");
    }
    memset(m1, 0, b1);
    s->h1sum = (uint64_t *)m1; /* the 8-byte arrays first: both blocks stay aligned */
    s->h1 = (uint32_t *)(m1 + HMA__MK_H1 * sizeof *s->h1sum);
    s->h2sum = (uint64_t *)m2;
    s->h2 = (uint32_t *)(m2 + HMA__MK_H2 * sizeof *s->h2sum);
    s->pred_hi = s->h2_hi = UINT32_MAX;
    return HMA_OK;
}

void hma__mk_sel_free(hma__mk_sel *s) {
    if (s->pt) {
        hma__mk_ws_give(s->pt->ws, s->rkeys);
        hma__mk_ws_give(s->pt->ws, s->h1sum);
        hma__mk_ws_give(s->pt->ws, s->h2sum);
    }
    hma__free(s->rcnt);
    memset(s, 0, sizeof *s);
}

void hma__mk_cut_free(hma__mk_cut *c) {
    hma__free(c->eq_before);
    c->eq_before = NULL;
}

typedef struct count_arg {
    hma__mk_sel *s;
    const hma__mk_keys *keys;
    double *chunk_l1;
} count_arg;

/* Keys of a block: u[j] = bits of |a - b| (or |a|) for [e, e + len);
 * buf: room for 2 x MK_BLK floats (raw sources are converted there). */
#define MK_BLK HMA__MK_BLK
typedef uint32_t mk_v4u __attribute__((vector_size(16)));
typedef float mk_v4f __attribute__((vector_size(16)));
static inline void key_block(const hma__mk_keys *k, uint64_t e, size_t len, uint32_t *u, float *buf) {
    const float *x = hma__mk_in_block(&k->a, e, len, buf);
    const float *b = hma__mk_keys_delta(k) ? hma__mk_in_block(&k->b, e, len, buf + MK_BLK) : NULL;
    const mk_v4u mask = {0x7fffffffu, 0x7fffffffu, 0x7fffffffu, 0x7fffffffu};
    size_t lv = len & ~(size_t)3, j;
    for (j = 0; j < lv; j += 4) {
        mk_v4f v, w;
        memcpy(&v, x + j, sizeof v);
        if (b) {
            memcpy(&w, b + j, sizeof w);
            v -= w;
        }
        mk_v4u r = (mk_v4u)v & mask;
        memcpy(u + j, &r, sizeof r);
    }
    for (; j < len; j++) u[j] = hma__mk_key_bits(b ? x[j] - b[j] : x[j]);
}

static int count_part(void *arg, unsigned p, unsigned worker) {
    (void)worker;
    const count_arg *a = arg;
    const hma__mk_parts *pt = a->s->pt;
    uint32_t *h = a->s->h1 + (size_t)p * HMA__MK_H1_WAYS * HMA__MK_H1;
    uint32_t *h2 = a->s->h2 + (size_t)p * MK_H2_STRIDE, hp = a->s->pred_hi;
    if (hp != UINT32_MAX) memset(h2, 0, MK_H2_STRIDE * sizeof *h2);
    uint32_t u[MK_BLK];
    float buf[2 * MK_BLK];
    uint64_t c0, c1;
    hma__mk_part_chunks(pt, p, &c0, &c1);
    for (uint64_t c = c0; c < c1; c++) {
        uint64_t e0, e1;
        hma__mk_chunk_range(pt->n, c, &e0, &e1);
        double l1 = 0.0;
        for (uint64_t e = e0; e < e1; e += MK_BLK) {
            size_t len = e1 - e < MK_BLK ? (size_t)(e1 - e) : MK_BLK, j = 0;
            key_block(a->keys, e, len, u, buf);
            /* the L1 "before" sum, only when a rescale needs it: a key is
             * the bits of |d|, so this adds fabs((double)d) in index order */
            if (a->chunk_l1)
                for (size_t q = 0; q < len; q++) {
                    float f;
                    memcpy(&f, &u[q], sizeof f);
                    l1 += (double)f;
                }
            /* four interleaved histograms: equal neighbours hit different
             * counters instead of waiting for each other's increment */
            if (hp == UINT32_MAX) {
                for (; j + 4 <= len; j += 4) {
                    h[u[j] >> 16]++;
                    h[HMA__MK_H1 + (u[j + 1] >> 16)]++;
                    h[2 * HMA__MK_H1 + (u[j + 2] >> 16)]++;
                    h[3 * HMA__MK_H1 + (u[j + 3] >> 16)]++;
                }
            } else {
                /* branch-free: keys outside the bucket count in spare
                 * slots past the histogram (one per way) */
                for (; j + 4 <= len; j += 4) {
                    for (unsigned t = 0; t < 4; t++) {
                        uint32_t v = u[j + t];
                        h[t * HMA__MK_H1 + (v >> 16)]++;
                        h2[(v >> 16) == hp ? (v & 0xffffu) : HMA__MK_H2 + t]++;
                    }
                }
            }
            for (; j < len; j++) {
                h[u[j] >> 16]++;
                if ((u[j] >> 16) == hp) h2[u[j] & 0xffffu]++;
            }
        }
        if (a->chunk_l1) a->chunk_l1[c] = l1;
    }
    return HMA_OK;
}

/* The 0-based rank, in the key-descending order of the values, of the key
 * at the boundary of the first m (desc: the m-th largest; asc: the m-th
 * smallest, rank n - m from the top). */
static uint64_t boundary_rank(uint64_t n, uint64_t m, int desc) { return desc ? m - 1 : n - m; }

#define MK_SAMPLE 16384u
#define MK_SAMPLE_MAX 32768u /* the range pass's sample (sample_size) */

/* The level-1 bucket of the boundary key among MK_SAMPLE evenly spaced keys. */
static uint32_t predict_bucket(const hma__mk_keys *keys, uint64_t n, uint64_t m, int desc) {
    uint16_t hb[MK_SAMPLE];
    uint32_t cnt[256] = {0}, cnt2[256] = {0};
    for (uint64_t i = 0; i < MK_SAMPLE; i++) {
        uint64_t e = i * n / MK_SAMPLE;
        float d = hma__mk_in_at(&keys->a, e);
        if (hma__mk_keys_delta(keys)) d -= hma__mk_in_at(&keys->b, e);
        hb[i] = (uint16_t)(hma__mk_key_bits(d) >> 16);
        cnt[hb[i] >> 8]++;
    }
    uint64_t r = boundary_rank(n, m, desc) * MK_SAMPLE / n, above = 0;
    unsigned top = 255;
    while (top > 0 && r >= above + cnt[top]) above += cnt[top--];
    for (uint64_t i = 0; i < MK_SAMPLE; i++)
        if ((unsigned)(hb[i] >> 8) == top) cnt2[hb[i] & 0xffu]++;
    unsigned low = 255;
    while (low > 0 && r >= above + cnt2[low]) above += cnt2[low--];
    return (uint32_t)(top << 8 | low);
}

/* ---- range mode --------------------------------------------------------- */

/*
 * Most of the histogram pass is wasted: one cut needs the counts near its
 * boundary only. A sample predicts a key range [rlo, rhi] that holds the
 * boundary key with high probability (5 standard deviations of the
 * sample's rank error on either side); one vectorised pass counts the keys
 * above the range and collects the few inside it, and the cut is found
 * among the collected keys. When the count shows that the boundary is not
 * in the range (or a part collected more than it had room for), the cut
 * falls back to the histograms: the result never depends on the sample.
 */

/* Stable LSD radix sort of n keys (< 2^31) ascending; tmp: n entries. */
static void sort_keys(uint32_t *k, uint32_t *tmp, size_t n) {
    static const unsigned shift[3] = {0, 11, 22};
    uint32_t cnt[2048];
    for (int pass = 0; pass < 3; pass++) {
        unsigned sh = shift[pass];
        memset(cnt, 0, sizeof cnt);
        for (size_t i = 0; i < n; i++) cnt[(k[i] >> sh) & 2047u]++;
        uint32_t sum = 0;
        for (unsigned b = 0; b < 2048; b++) {
            uint32_t t = cnt[b];
            cnt[b] = sum;
            sum += t;
        }
        for (size_t i = 0; i < n; i++) tmp[cnt[(k[i] >> sh) & 2047u]++] = k[i];
        memcpy(k, tmp, n * sizeof *k);
    }
}

/* The sample's keys: sample i at about i n / S, jittered within the
 * stride (rows whose length divides the stride would otherwise always give
 * the same columns). Each part takes its share of the samples, which lie in
 * or near its own elements: the first touches of a mapped source's pages
 * (most of a sample's cost) are then spread over the threads. */
typedef struct sample_arg {
    const hma__mk_parts *pt;
    const hma__mk_keys *keys;
    uint32_t *k;
    uint64_t S;
} sample_arg;

static int sample_part(void *arg, unsigned p, unsigned worker) {
    (void)worker;
    const sample_arg *a = arg;
    uint64_t n = a->pt->n, S = a->S, stride = n / S;
    uint64_t i0 = S * p / a->pt->count, i1 = S * (p + 1) / a->pt->count;
    int delta = hma__mk_keys_delta(a->keys);
    for (uint64_t i = i0; i < i1; i++) {
        /* jitter in [0, stride), by a multiply-shift (no division per
         * sample) while the stride fits in 32 bits */
        uint64_t h = hma__mk_fmix64(i + 0x51ED2701u);
        uint64_t e = i * n / S + (stride >> 32 ? h % stride : ((h >> 32) * stride) >> 32);
        float d = hma__mk_in_at(&a->keys->a, e);
        if (delta) d -= hma__mk_in_at(&a->keys->b, e);
        a->k[i] = hma__mk_key_bits(d);
    }
    return HMA_OK;
}

/*
 * The sample size for n keys. A sample key costs a cache and TLB miss
 * (about 40 ns a source), a key of the range pass's band a collected key
 * (about 2 ns); the band's width in ranks shrinks as 1/sqrt(S). The cost
 * a S + b n / sqrt(S) is least at S = (b n / 2a)^(2/3), about (n/16)^(2/3):
 * 1K keys for 512K elements, 4K for 4M, 25K for 65M (a fixed 16K sample
 * made the sample cost more than the pass on small tensors). The result
 * never depends on it.
 */
static uint64_t sample_size(uint64_t n) {
    uint64_t S = (uint64_t)pow((double)n / 16.0, 2.0 / 3.0);
    return S < 1024 ? 1024 : S > MK_SAMPLE_MAX ? MK_SAMPLE_MAX : S;
}

/* Predict [*lo, *hi] and the fraction of keys inside it; 0: no range
 * (out of memory: the histogram path then runs). */
static int predict_range(const hma__mk_parts *pt, const hma__mk_keys *keys, uint64_t m, int desc, uint32_t *lo,
                         uint32_t *hi, double *frac) {
    uint64_t n = pt->n, Su = sample_size(n);
    uint32_t *k = hma__mk_ws_take(pt->ws, HMA__MK_WS_SAMPLE, 2 * Su * sizeof *k);
    if (!k) return 0;
    sample_arg sa = {pt, keys, k, Su};
    if (hma__mk_parts_run(pt, sample_part, &sa) != HMA_OK) { /* it cannot fail */
        hma__mk_ws_give(pt->ws, k);
        return 0;
    }
    sort_keys(k, k + Su, (size_t)Su);
    uint64_t r = boundary_rank(n, m, desc);
    double p = ((double)r + 0.5) / (double)n;
    int64_t S = (int64_t)Su, rs = (int64_t)((double)r * (double)S / (double)n);
    int64_t dl = (int64_t)(5.0 * sqrt((double)S * p * (1.0 - p))) + 8;
    /* k ascending: descending rank i is k[S - 1 - i] */
    *hi = rs - dl >= 0 ? k[S - 1 - (rs - dl)] : 0x7fffffffu;
    *lo = rs + dl < S ? k[S - 1 - (rs + dl)] : 0u;
    uint64_t in = 0; /* strictly inside: the keys the pass collects */
    for (int64_t i = 0; i < S; i++) in += k[i] > *lo && k[i] < *hi;
    *frac = (double)in / (double)S;
    hma__mk_ws_give(pt->ws, k);
    return 1;
}

typedef int32_t mk_v4i __attribute__((vector_size(16)));

static int range_part(void *arg, unsigned p, unsigned worker) {
    (void)worker;
    const count_arg *a = arg;
    hma__mk_sel *s = a->s;
    const hma__mk_parts *pt = s->pt;
    uint32_t u[MK_BLK], *col = s->rkeys + (size_t)p * (s->rcap + 1);
    float buf[2 * MK_BLK];
    const uint32_t lo = s->rlo, hi = s->rhi;
    const int open = hi - lo >= 2;
    const mk_v4i vhi = {(int32_t)hi, (int32_t)hi, (int32_t)hi, (int32_t)hi}; /* keys < 2^31: signed compares */
    const uint32_t lo1 = lo + 1, wid = open ? hi - lo - 2 : 0;
    hma__mk_rcount c = {0, 0, 0, 0};
    uint64_t c0, c1, cap = s->rcap;
    hma__mk_part_chunks(pt, p, &c0, &c1);
#ifdef HMA_HAVE_AVX512_KERNELS
    /* the same keys, counts and collected keys, 16 at a time, straight
     * from the sources (no conversion block); not for the L1 sums */
    if (!a->chunk_l1 && hma__cpu_level() >= HMA_SIMD_AVX512 && hma__mk_range_avx512_ok(&a->keys->a) &&
        (!hma__mk_keys_delta(a->keys) || hma__mk_range_avx512_ok(&a->keys->b))) {
        uint64_t e0, e1, tmp;
        hma__mk_chunk_range(pt->n, c0, &e0, &tmp);
        hma__mk_chunk_range(pt->n, c1 - 1, &tmp, &e1);
        /* col has cap + 1 slots; the kernel stores while they fit */
        hma__mk_range_avx512(a->keys, e0, e1, lo, hi, col, cap + 1, &c);
        s->rcnt[p] = c;
        return HMA_OK;
    }
#endif
    for (uint64_t ch = c0; ch < c1; ch++) {
        uint64_t e0, e1;
        hma__mk_chunk_range(pt->n, ch, &e0, &e1);
        double l1 = 0.0;
        for (uint64_t e = e0; e < e1; e += MK_BLK) {
            size_t len = e1 - e < MK_BLK ? (size_t)(e1 - e) : MK_BLK, j;
            key_block(a->keys, e, len, u, buf);
            if (a->chunk_l1) /* as count_part */
                for (size_t q = 0; q < len; q++) {
                    float f;
                    memcpy(&f, &u[q], sizeof f);
                    l1 += (double)f;
                }
            mk_v4i acc = {0, 0, 0, 0};
            size_t lv = len & ~(size_t)3;
            for (j = 0; j < lv; j += 4) {
                mk_v4i v;
                memcpy(&v, u + j, sizeof v);
                acc -= v > vhi;
            }
            c.above += (uint64_t)(acc[0] + acc[1]) + (uint64_t)(acc[2] + acc[3]);
            for (; j < len; j++) c.above += u[j] > hi;
            /* branch-free: a key strictly inside lands in col[in] and moves
             * in on (a branch per key would mispredict: the keys come in
             * lumps of equal values); col has one spare slot past rcap */
            for (j = 0; j < len; j++) {
                c.eq_hi += u[j] == hi;
                c.eq_lo += lo != hi && u[j] == lo;
                col[c.in < cap ? c.in : cap] = u[j];
                c.in += open && u[j] - lo1 <= wid;
            }
        }
        if (a->chunk_l1) a->chunk_l1[ch] = l1;
    }
    s->rcnt[p] = c;
    return HMA_OK;
}

/* The range pass; 0 when it did not run (no prediction, no memory). */
static int range_count(hma__mk_sel *s, const hma__mk_keys *keys, double *chunk_l1, uint64_t m, int desc, int *rc) {
    const hma__mk_parts *pt = s->pt;
    double frac;
    if (!predict_range(pt, keys, m, desc, &s->rlo, &s->rhi, &frac)) return 0;
    if (frac > 0.25) return 0; /* a wide range (many equal keys): histograms */
    uint64_t part = (pt->nchunks + pt->count - 1) / pt->count * HMA__MK_CHUNK;
    s->rcap = (uint64_t)((double)part * frac * 1.5) + 4096;
    if (s->rcap > part) s->rcap = part;
    s->rcnt = hma__calloc(pt->count, sizeof *s->rcnt);
    size_t got = 0;
    s->rkeys = hma__mk_ws_take_n(pt->ws, HMA__MK_WS_RKEYS,
                                 (size_t)pt->count * (s->rcap + 1) * sizeof *s->rkeys, &got); /* + a spare slot each */
    /* all the room the slot has: the parts' columns then start where they
     * did for the tensors before, on pages touched already */
    if (s->rkeys) s->rcap = got / sizeof *s->rkeys / pt->count - 1;
    if (!s->rcnt || !s->rkeys) {
        hma__free(s->rcnt);
        hma__mk_ws_give(pt->ws, s->rkeys);
        s->rcnt = NULL;
        s->rkeys = NULL;
        return 0;
    }
    count_arg a = {s, keys, chunk_l1};
    *rc = hma__mk_parts_run(pt, range_part, &a);
    s->ranged = 1;
    return 1;
}

/* Histograms of one part's collected keys: level 1 (hb == UINT32_MAX:
 * top 16 bits, into way 0 of the part's h1) or level 2 (low 16 bits of
 * the keys in bucket hb, into the part's h2). */
typedef struct rhist_arg {
    hma__mk_sel *s;
    uint32_t hb;
} rhist_arg;

static int rhist_part(void *arg, unsigned p, unsigned worker) {
    (void)worker;
    const rhist_arg *a = arg;
    hma__mk_sel *s = a->s;
    const uint32_t *col = s->rkeys + (size_t)p * (s->rcap + 1);
    uint64_t nk = s->rcnt[p].in;
    /* the collected keys come in runs of equal values: interleaved
     * counters (as count_part) and no branch on the bucket (it would
     * mispredict); keys of other buckets count in a spare slot */
    uint64_t q = 0;
    if (a->hb == UINT32_MAX) {
        uint32_t *h = s->h1 + (size_t)p * HMA__MK_H1_WAYS * HMA__MK_H1;
        memset(h, 0, HMA__MK_H1_WAYS * HMA__MK_H1 * sizeof *h);
        for (; q + 4 <= nk; q += 4)
            for (unsigned t = 0; t < 4; t++) h[t * HMA__MK_H1 + (col[q + t] >> 16)]++;
        for (; q < nk; q++) h[col[q] >> 16]++;
        for (unsigned t = 1; t < HMA__MK_H1_WAYS; t++)
            for (uint32_t i = 0; i < HMA__MK_H1; i++) h[i] += h[t * HMA__MK_H1 + i];
    } else {
        uint32_t *h = s->h2 + (size_t)p * MK_H2_STRIDE, hb = a->hb;
        memset(h, 0, (HMA__MK_H2 + 1) * sizeof *h);
        for (; q < nk; q++) h[(col[q] >> 16) == hb ? (col[q] & 0xffffu) : HMA__MK_H2]++;
    }
    return HMA_OK;
}

/* The cut at descending rank r from the range pass: rhi, a collected key
 * or rlo; 0 when the range missed (or overflowed): the caller falls back
 * to the histograms. */
static int range_cut(hma__mk_sel *s, uint64_t m, int desc, uint64_t r, hma__mk_cut *out, int *rc) {
    const hma__mk_parts *pt = s->pt;
    uint64_t A = 0, H = 0, I = 0, L = 0, n = pt->n;
    for (unsigned p = 0; p < pt->count; p++) {
        const hma__mk_rcount *c = &s->rcnt[p];
        if (c->in > s->rcap) return 0;
        A += c->above;
        H += c->eq_hi;
        I += c->in;
        L += c->eq_lo;
    }
    if (r < A || r - A >= H + I + L) return 0;
    out->eq_before = hma__malloc(pt->count * sizeof *out->eq_before);
    if (!out->eq_before) {
        *rc = hma__fail(HMA_ERR_NO_MEMORY, "out of memory (selection)");
        return 1;
    }
    uint64_t above, eq, before = 0;
    int which; /* 0: rhi, 1: collected, 2: rlo */
    uint32_t lb = 0;
    if (r - A < H) {
        which = 0;
        above = A;
        out->thr = s->rhi;
    } else if (r - A - H >= I) {
        which = 2;
        above = A + H + I;
        out->thr = s->rlo;
    } else {
        /* the key of rank r - A - H among the collected ones: two 16-bit
         * levels, per part in parallel, then added (integers: any order) */
        which = 1;
        uint64_t rr = r - A - H;
        above = 0;
        rhist_arg ha = {s, UINT32_MAX};
        if ((*rc = hma__mk_parts_run(pt, rhist_part, &ha)) != HMA_OK) return 1;
        memset(s->h1sum, 0, HMA__MK_H1 * sizeof *s->h1sum);
        for (unsigned p = 0; p < pt->count; p++) {
            const uint32_t *h = s->h1 + (size_t)p * HMA__MK_H1_WAYS * HMA__MK_H1;
            for (uint32_t i = 0; i < HMA__MK_H1; i++) s->h1sum[i] += h[i];
        }
        uint32_t hb = HMA__MK_H1 - 1;
        while (rr >= above + s->h1sum[hb]) above += s->h1sum[hb--]; /* rr < I: stops */
        ha.hb = hb;
        if ((*rc = hma__mk_parts_run(pt, rhist_part, &ha)) != HMA_OK) return 1;
        memset(s->h2sum, 0, HMA__MK_H2 * sizeof *s->h2sum);
        for (unsigned p = 0; p < pt->count; p++) {
            const uint32_t *h = s->h2 + (size_t)p * MK_H2_STRIDE;
            for (uint32_t i = 0; i < HMA__MK_H2; i++) s->h2sum[i] += h[i];
        }
        lb = HMA__MK_H2 - 1;
        while (rr >= above + s->h2sum[lb]) above += s->h2sum[lb--];
        above += A + H; /* keys greater than the threshold */
        out->thr = hb << 16 | lb;
    }
    for (unsigned p = 0; p < pt->count; p++) {
        out->eq_before[p] = before;
        before += which == 0 ? s->rcnt[p].eq_hi : which == 2 ? s->rcnt[p].eq_lo : s->h2[(size_t)p * MK_H2_STRIDE + lb];
    }
    eq = before;
    out->desc = desc;
    out->n_first = desc ? m - above : m - (n - above - eq);
    out->n_eq = eq;
    out->parts = pt->count;
    *rc = HMA_OK;
    return 1;
}

int hma__mk_sel_count(hma__mk_sel *s, const hma__mk_keys *keys, double *chunk_l1, uint64_t m, int desc) {
    uint64_t n = s->pt->n;
    int rc = HMA_OK;
    /* Small tensors are in cache: a second pass costs less than a sample. */
    int big = m > 0 && m <= n && n >= 8 * (uint64_t)MK_SAMPLE;
    if (big && s->one_cut && range_count(s, keys, chunk_l1, m, desc, &rc)) return rc;
    s->pred_hi = big ? predict_bucket(keys, n, m, desc) : UINT32_MAX;
    count_arg a = {s, keys, chunk_l1};
    rc = hma__mk_parts_run(s->pt, count_part, &a);
    s->h2_hi = s->pred_hi;
    return rc;
}

typedef struct level2_arg {
    hma__mk_sel *s;
    const hma__mk_keys *keys;
    uint32_t hi;
} level2_arg;

static int level2_part(void *arg, unsigned p, unsigned worker) {
    (void)worker;
    const level2_arg *a = arg;
    const hma__mk_parts *pt = a->s->pt;
    uint32_t *h = a->s->h2 + (size_t)p * MK_H2_STRIDE;
    memset(h, 0, HMA__MK_H2 * sizeof *h);
    uint32_t hi = a->hi, u[MK_BLK];
    float buf[2 * MK_BLK];
    uint64_t c0, c1, e0, e1, tmp;
    hma__mk_part_chunks(pt, p, &c0, &c1);
    hma__mk_chunk_range(pt->n, c0, &e0, &tmp);
    hma__mk_chunk_range(pt->n, c1 - 1, &tmp, &e1);
    for (uint64_t e = e0; e < e1; e += MK_BLK) {
        size_t len = e1 - e < MK_BLK ? (size_t)(e1 - e) : MK_BLK;
        key_block(a->keys, e, len, u, buf);
        for (size_t j = 0; j < len; j++)
            if ((u[j] >> 16) == hi) h[u[j] & 0xffffu]++;
    }
    return HMA_OK;
}

/* m == 0 or m >= n: no pass needed. */
static int cut_trivial(const hma__mk_parts *pt, uint64_t m, uint64_t n, int desc, hma__mk_cut *out) {
    out->desc = desc;
    out->eq_before = hma__calloc(pt->count, sizeof *out->eq_before);
    if (!out->eq_before) return hma__fail(HMA_ERR_NO_MEMORY, "out of memory (selection)");
    out->parts = pt->count; /* n_eq 0: no key equals thr, or (m >= n) every key is taken */
    if (m == 0) {
        /* desc: nothing is above or equal to UINT32_MAX; asc: nothing below 0. */
        out->thr = desc ? UINT32_MAX : 0;
        out->n_first = 0;
    } else {
        (void)n;
        /* desc: everything >= 0; asc: everything below UINT32_MAX. */
        out->thr = desc ? 0 : UINT32_MAX;
        out->n_first = UINT64_MAX;
    }
    return HMA_OK;
}

/* exact: the threshold is the boundary key even when m == n (hma__mk_select
 * reports it); masks take the trivial cut then, with no pass. */
static int sel_cut(hma__mk_sel *s, const hma__mk_keys *keys, uint64_t m, int desc, int exact, hma__mk_cut *out) {
    const hma__mk_parts *pt = s->pt;
    uint64_t n = pt->n;
    memset(out, 0, sizeof *out);
    if (m == 0 || m > n || (m == n && !exact)) return cut_trivial(pt, m, n, desc, out);
    if (s->ranged) {
        int rc = HMA_OK;
        if (range_cut(s, m, desc, boundary_rank(n, m, desc), out, &rc)) return rc;
        /* missed: the histograms of all keys after all (h1 may hold the
         * collected keys' counts of an earlier cut) */
        s->ranged = 0;
        memset(s->h1, 0, (size_t)pt->count * HMA__MK_H1_WAYS * HMA__MK_H1 * sizeof *s->h1);
        s->pred_hi = predict_bucket(keys, n, m, desc);
        count_arg a = {s, keys, NULL};
        rc = hma__mk_parts_run(pt, count_part, &a);
        s->h2_hi = s->pred_hi;
        if (rc != HMA_OK) return rc;
    }
    if (!s->merged) {
        const uint32_t *h = s->h1;
        for (size_t t = 0; t < (size_t)pt->count * HMA__MK_H1_WAYS; t++, h += HMA__MK_H1)
            for (uint32_t i = 0; i < HMA__MK_H1; i++) s->h1sum[i] += h[i];
        s->merged = 1;
    }
    /* r: the 0-based rank, in the key-descending order of the values, of the
     * key at the group's boundary (desc: the m-th largest; asc: the m-th
     * smallest, which is rank n - m from the top). */
    uint64_t r = boundary_rank(n, m, desc);
    uint64_t above = 0; /* keys in higher buckets */
    uint32_t hi = HMA__MK_H1 - 1;
    for (;;) {
        if (r < above + s->h1sum[hi]) break;
        above += s->h1sum[hi];
        if (hi == 0) return hma__fail(HMA_ERR_STATE, "selection: the keys changed between passes (internal error)");
        hi--;
    }
    if (hi != s->h2_hi) { /* not predicted: one more pass */
        level2_arg a2 = {s, keys, hi};
        s->h2_hi = UINT32_MAX;
        int rc = hma__mk_parts_run(pt, level2_part, &a2);
        if (rc != HMA_OK) return rc;
        s->h2_hi = hi;
    }
    memset(s->h2sum, 0, HMA__MK_H2 * sizeof *s->h2sum);
    for (unsigned p = 0; p < pt->count; p++) {
        const uint32_t *h = s->h2 + (size_t)p * MK_H2_STRIDE;
        for (uint32_t i = 0; i < HMA__MK_H2; i++) s->h2sum[i] += h[i];
    }
    uint32_t lo = HMA__MK_H2 - 1;
    for (;;) {
        if (r < above + s->h2sum[lo]) break;
        above += s->h2sum[lo];
        if (lo == 0) return hma__fail(HMA_ERR_STATE, "selection: the keys changed between passes (internal error)");
        lo--;
    }
    uint64_t eq = s->h2sum[lo]; /* keys equal to the threshold; `above` keys are greater */
    out->thr = (hi << 16) | lo;
    out->desc = desc;
    /* desc: the group is the `above` greater keys and the first m - above
     * equal ones; asc: the n - above - eq smaller keys and the first rest. */
    out->n_first = desc ? m - above : m - (n - above - eq);
    out->eq_before = hma__malloc(pt->count * sizeof *out->eq_before);
    if (!out->eq_before) return hma__fail(HMA_ERR_NO_MEMORY, "out of memory (selection)");
    uint64_t before = 0;
    for (unsigned p = 0; p < pt->count; p++) {
        out->eq_before[p] = before;
        before += s->h2[(size_t)p * MK_H2_STRIDE + lo];
    }
    out->n_eq = before;
    out->parts = pt->count;
    return HMA_OK;
}

int hma__mk_sel_cut(hma__mk_sel *s, const hma__mk_keys *keys, uint64_t m, int desc, hma__mk_cut *out) {
    return sel_cut(s, keys, m, desc, 0, out);
}

/* ---- the interface of mk.h -------------------------------------------- */

int hma__mk_select(unsigned threads, const float *key, uint64_t n, uint64_t k, int abs_of, float *thr,
                   uint64_t *n_eq_keep) {
    /* The sign bit is ignored either way: keys are non-negative by contract,
     * so only -0 is affected, and -0 == +0 as floats. */
    (void)abs_of;
    if (k == 0 || n == 0) {
        *thr = INFINITY;
        *n_eq_keep = 0;
        return HMA_OK;
    }
    if (k > n) k = n;
    hma__mk_parts pt;
    hma__mk_parts_init(&pt, n, threads, NULL);
    hma__mk_sel s;
    int rc = hma__mk_sel_init(&s, &pt);
    if (rc != HMA_OK) return rc;
    hma__mk_keys keys = hma__mk_keys_f(key, NULL);
    hma__mk_cut cut;
    rc = hma__mk_sel_count(&s, &keys, NULL, k, 1);
    if (rc == HMA_OK) rc = sel_cut(&s, &keys, k, 1, 1, &cut);
    hma__mk_sel_free(&s);
    if (rc != HMA_OK) return rc;
    uint32_t u = cut.thr;
    memcpy(thr, &u, sizeof *thr);
    *n_eq_keep = cut.n_first;
    hma__mk_cut_free(&cut);
    return HMA_OK;
}

typedef struct keep_arg {
    const hma__mk_parts *pt;
    float *x;
    const hma__mk_cut *cut;
} keep_arg;

static int keep_part(void *arg, unsigned p, unsigned worker) {
    (void)worker;
    const keep_arg *a = arg;
    uint64_t c0, c1, e0, e1, tmp;
    hma__mk_part_chunks(a->pt, p, &c0, &c1);
    hma__mk_chunk_range(a->pt->n, c0, &e0, &tmp);
    hma__mk_chunk_range(a->pt->n, c1 - 1, &tmp, &e1);
    uint64_t budget = hma__mk_cut_budget(a->cut, p);
    for (uint64_t e = e0; e < e1; e++)
        if (!hma__mk_cut_in(a->cut, hma__mk_key_bits(a->x[e]), &budget)) a->x[e] = 0.0f;
    return HMA_OK;
}

int hma__mk_keep_topk_abs(unsigned threads, float *x, uint64_t n, uint64_t k) {
    if (k >= n) return HMA_OK;
    if (k == 0) {
        memset(x, 0, n * sizeof *x);
        return HMA_OK;
    }
    hma__mk_parts pt;
    hma__mk_parts_init(&pt, n, threads, NULL);
    hma__mk_sel s;
    int rc = hma__mk_sel_init(&s, &pt);
    if (rc != HMA_OK) return rc;
    hma__mk_keys keys = hma__mk_keys_f(x, NULL);
    hma__mk_cut cut = {0};
    rc = hma__mk_sel_count(&s, &keys, NULL, k, 1);
    if (rc == HMA_OK) rc = hma__mk_sel_cut(&s, &keys, k, 1, &cut);
    hma__mk_sel_free(&s);
    if (rc == HMA_OK) {
        keep_arg a = {&pt, x, &cut};
        rc = hma__mk_parts_run(&pt, keep_part, &a);
    }
    hma__mk_cut_free(&cut);
    return rc;
}
