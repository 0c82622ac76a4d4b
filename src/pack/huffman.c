/* huffman.c - length-limited canonical Huffman codes and the four-stream
 * byte-symbol coder (see huffman.h). */
#include "internal.h"
#include "pack/bytes.h"
#include "pack/huffman.h"

#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#define HOT static inline __attribute__((always_inline))

/* ---- code lengths ---------------------------------------------------------- */

typedef struct fsym {
    uint32_t f;
    uint16_t s;
} fsym;
static int cmp_fsym(const void *a, const void *b) {
    const fsym *x = a, *y = b;
    if (x->f != y->f) return x->f < y->f ? -1 : 1;
    return x->s < y->s ? -1 : x->s > y->s;
}

/* Optimal code lengths (Moffat & Katajainen, in place) of the ascending
 * frequencies a[0..n), n >= 2: a[i] becomes the length of symbol i. */
static void mk_lengths(uint32_t *a, int n) {
    int root = 0, leaf = 2, next;
    a[0] += a[1];
    for (next = 1; next < n - 1; next++) {
        if (leaf >= n || a[root] < a[leaf]) {
            a[next] = a[root];
            a[root++] = (uint32_t)next;
        } else {
            a[next] = a[leaf++];
        }
        if (leaf >= n || (root < next && a[root] < a[leaf])) {
            a[next] += a[root];
            a[root++] = (uint32_t)next;
        } else {
            a[next] += a[leaf++];
        }
    }
    a[n - 2] = 0;
    for (next = n - 3; next >= 0; next--) a[next] = a[a[next]] + 1;
    int avbl = 1, used = 0, dpth = 0;
    root = n - 2;
    next = n - 1;
    while (avbl > 0) {
        while (root >= 0 && (int)a[root] == dpth) {
            used++;
            root--;
        }
        while (avbl > used) {
            a[next--] = (uint32_t)dpth;
            avbl--;
        }
        avbl = 2 * used;
        dpth++;
        used = 0;
    }
}

void hma__huf_lengths(const uint32_t *h, unsigned nsym, uint8_t *len) {
    fsym fs[HMA__HUF_MAXSYM];
    uint32_t a[HMA__HUF_MAXSYM];
    unsigned cnt[64] = {0}; /* a depth above 63 needs > 2^40 elements */
    int n = 0;
    memset(len, 0, nsym);
    for (unsigned s = 0; s < nsym; s++)
        if (h[s]) fs[n++] = (fsym){h[s], (uint16_t)s};
    if (n == 0) return;
    if (n == 1) {
        len[fs[0].s] = HMA__HUF_SOLE;
        return;
    }
    qsort(fs, (size_t)n, sizeof *fs, cmp_fsym);
    for (int i = 0; i < n; i++) a[i] = fs[i].f;
    mk_lengths(a, n);
    unsigned maxl = 0;
    for (int i = 0; i < n; i++) {
        cnt[a[i]]++;
        if (a[i] > maxl) maxl = a[i];
    }
    /* limit to HMA__HUF_MAXLEN (as miniz does): fold the long codes in, then
     * lengthen the deepest shorter codes until the Kraft sum is exact */
    if (maxl > HMA__HUF_MAXLEN) {
        for (unsigned l = HMA__HUF_MAXLEN + 1; l <= maxl; l++) {
            cnt[HMA__HUF_MAXLEN] += cnt[l];
            cnt[l] = 0;
        }
        uint32_t total = 0;
        for (unsigned l = 1; l <= HMA__HUF_MAXLEN; l++) total += cnt[l] << (HMA__HUF_MAXLEN - l);
        while (total != HMA__HUF_TSIZE) {
            cnt[HMA__HUF_MAXLEN]--;
            for (unsigned l = HMA__HUF_MAXLEN - 1; l > 0; l--)
                if (cnt[l]) {
                    cnt[l]--;
                    cnt[l + 1] += 2;
                    break;
                }
            total--;
        }
        maxl = HMA__HUF_MAXLEN;
    }
    /* least frequent symbols get the longest codes */
    int i = 0;
    for (unsigned l = maxl; l > 0; l--)
        for (unsigned k = 0; k < cnt[l]; k++) len[fs[i++].s] = (uint8_t)l;
}

void hma__huf_codes(const uint8_t *len, unsigned nsym, uint16_t *code) {
    unsigned cnt[HMA__HUF_MAXLEN + 1] = {0}, next[HMA__HUF_MAXLEN + 2];
    for (unsigned s = 0; s < nsym; s++)
        if (len[s] >= 1 && len[s] <= HMA__HUF_MAXLEN) cnt[len[s]]++;
    unsigned c = 0;
    for (unsigned l = 1; l <= HMA__HUF_MAXLEN; l++) {
        c = (c + cnt[l - 1]) << 1;
        next[l] = c;
    }
    for (unsigned s = 0; s < nsym; s++) {
        unsigned l = len[s];
        if (l < 1 || l > HMA__HUF_MAXLEN) {
            code[s] = 0;
            continue;
        }
        unsigned v = next[l]++, r = 0;
        for (unsigned k = 0; k < l; k++) r |= ((v >> k) & 1u) << (l - 1 - k);
        code[s] = (uint16_t)r;
    }
}

/* ---- byte symbols in four streams ----------------------------------------- */

#define NS HMA__HUF_NSTREAM
#define LOOKUPS 5u /* table lookups per stream per window: 5 x 11 bits <= 56 */

/* Header bytes before the streams for lengths len[]. */
static size_t head_size(const uint8_t len[256], unsigned *first, unsigned *count) {
    unsigned f = 0, last = 0, any = 0;
    for (unsigned s = 0; s < 256; s++) {
        if (!len[s]) continue;
        if (!any) f = s;
        any = 1;
        last = s;
    }
    *first = f;
    *count = last - f + 1;
    return 2 + (*count + 1) / 2 + 4 * NS;
}

size_t hma__huf8_plan(const uint32_t hist[256], size_t n, uint8_t len[256]) {
    unsigned first, count;
    hma__huf_lengths(hist, 256, len);
    (void)n;
    /* each stream rounds up to a whole byte: count one byte each */
    uint64_t total = 0;
    for (unsigned s = 0; s < 256; s++)
        if (len[s] && len[s] <= HMA__HUF_MAXLEN) total += (uint64_t)hist[s] * len[s];
    return head_size(len, &first, &count) + (size_t)(total / 8) + NS;
}

/* Header of a block; returns where the stream lengths go. */
static uint8_t *put_head(const uint8_t len[256], uint32_t ec[256], uint8_t *dst) {
    uint16_t code[256];
    unsigned first, count;
    hma__huf_codes(len, 256, code);
    for (unsigned s = 0; s < 256; s++) ec[s] = code[s] | (uint32_t)(len[s] == HMA__HUF_SOLE ? 0 : len[s]) << 16;
    head_size(len, &first, &count);
    uint8_t *o = dst;
    *o++ = (uint8_t)first;
    *o++ = (uint8_t)(count - 1);
    for (unsigned k = 0; k < count; k += 2)
        *o++ = (uint8_t)(len[first + k] | (k + 1 < count ? len[first + k + 1] << 4 : 0));
    return o;
}

/* The 4 streams, stream s holding codes [cut[s], cut[s+1]); code i is
 * ec[sym[i]] or, with keys, ec[keys[i]] (ec then indexed by key). Returns
 * the end. */
HOT uint8_t *put_streams(const uint8_t *sym, const uint16_t *keys, const size_t cut[NS + 1], const uint32_t *ec,
                         uint8_t *lens) {
    uint8_t *o = lens + 4 * NS;
    for (unsigned s = 0; s < NS; s++) {
        size_t lo = cut[s], hi = cut[s + 1];
        uint8_t *p = o;
        uint64_t acc = 0;
        unsigned nb = 0;
        size_t i = lo;
        /* two codes (at most 22 bits) per store */
        for (; i + 2 <= hi; i += 2) {
            uint32_t e = ec[keys ? keys[i] : sym[i]], f = ec[keys ? keys[i + 1] : sym[i + 1]];
            acc |= ((uint64_t)(e & 0xFFFF) | (uint64_t)(f & 0xFFFF) << (e >> 16)) << nb;
            nb += (e >> 16) + (f >> 16);
            hma__st64(p, acc);
            p += nb >> 3;
            acc >>= nb & ~7u;
            nb &= 7;
        }
        for (; i < hi; i++) {
            uint32_t e = ec[keys ? keys[i] : sym[i]];
            acc |= (uint64_t)(e & 0xFFFF) << nb;
            nb += e >> 16;
            hma__st64(p, acc);
            p += nb >> 3;
            acc >>= nb & ~7u;
            nb &= 7;
        }
        if (nb) p++;
        hma__st32(lens + 4 * s, (uint32_t)(p - o));
        o = p;
    }
    return o;
}

static void quarters(size_t n, size_t cut[NS + 1]) {
    size_t hi;
    for (unsigned s = 0; s < NS; s++) hma__huf_quarter(n, s, &cut[s], &hi);
    cut[NS] = n;
}

size_t hma__huf_streams(const uint8_t *src, size_t len, size_t at, size_t start[NS], size_t slen[NS],
                        const char **why) {
    if (at > len || len - at < 4 * NS) {
        *why = "stream lengths cut short";
        return 0;
    }
    const uint8_t *lens = src + at;
    at += 4 * NS;
    for (unsigned s = 0; s < NS; s++) {
        slen[s] = hma__ld32(lens + 4 * s);
        start[s] = at;
        if (slen[s] > len - at) {
            *why = "bit stream extends past the chunk payload";
            return 0;
        }
        at += slen[s];
    }
    return at;
}

size_t hma__huf8_encode(const uint8_t *sym, size_t n, const uint8_t len[256], uint8_t *dst) {
    uint32_t ec[256];
    size_t cut[NS + 1];
    quarters(n, cut);
    uint8_t *lens = put_head(len, ec, dst);
    return (size_t)(put_streams(sym, NULL, cut, ec, lens) - dst);
}

size_t hma__huf8_encode_parts(const uint8_t *codes, const size_t cut[NS + 1], const uint8_t len[256], uint8_t *dst) {
    uint32_t ec[256];
    uint8_t *lens = put_head(len, ec, dst);
    return (size_t)(put_streams(codes, NULL, cut, ec, lens) - dst);
}

size_t hma__huf8_encode_keys(const uint16_t *keys, size_t n, const uint8_t *map, unsigned klo, unsigned khi,
                             const uint8_t len[256], uint32_t *ec_keys, uint8_t *dst) {
    uint32_t ec[256];
    uint8_t *lens = put_head(len, ec, dst);
    size_t cut[NS + 1];
    quarters(n, cut);
    for (unsigned k = klo; k < khi; k++) ec_keys[k] = ec[map[k]];
    return (size_t)(put_streams(NULL, keys, cut, ec_keys, lens) - dst);
}

/* Bytes past `avail` read as zero. */
static uint64_t win_safe(const uint8_t *src, size_t avail, size_t pos) {
    uint64_t w = 0;
    size_t at = pos >> 3;
    for (unsigned k = 0; k < 8; k++)
        if (at + k < avail) w |= (uint64_t)src[at + k] << (8 * k);
    return w >> (pos & 7);
}

/* 56 bits from pos with a sentinel bit above them: after decoding, the
 * sentinel's position tells how many bits were used. */
HOT uint64_t win56(const uint8_t *src, size_t pos) {
    uint64_t w = hma__ld64(src + (pos >> 3)) >> (pos & 7);
    return (w & ((1ull << 56) - 1)) | (1ull << 56);
}
HOT unsigned used56(uint64_t w) { return (unsigned)__builtin_clzll(w) - 7u; }

/*
 * Multi-symbol table: the 11 bits at the read position decode up to 3 whole
 * symbols. Entry: the symbols in bytes 0-2, and in byte 3 the bits used
 * (bits 0-5) and the symbol count (bits 6-7). The entry is stored as it is
 * (4 bytes, of which the first nsym count; the rest is overwritten later or
 * lies in the slack the loop keeps), and a shift by byte 3 uses its low 6
 * bits, as x86 shifts do: three operations besides the lookup.
 */
HOT void dec_lookup(uint64_t *w, uint8_t **o, const uint32_t *tab) {
    uint32_t e = tab[*w & (HMA__HUF_TSIZE - 1)];
    memcpy(*o, &e, 4); /* little-endian: the first symbol first */
    uint32_t c = e >> 24;
    *w >>= c & 63;
    *o += c >> 6;
}

/* The multi-symbol table from the one-symbol table: after the first code,
 * the rest of the 11 index bits decode a second (and third) symbol when its
 * whole code lies inside them. Branch-free: the bytes past nsym are
 * don't-cares. A sole symbol (0 bits) gives 3 symbols for 0 bits. */
static void build_tab3(const uint16_t *tab1, uint32_t *tab3) {
    for (uint32_t i = 0; i < HMA__HUF_TSIZE; i++) {
        uint32_t e1 = tab1[i], l1 = e1 >> 8;
        uint32_t e2 = tab1[i >> l1], u2 = l1 + (e2 >> 8);
        uint32_t e3 = tab1[(i >> u2) & (HMA__HUF_TSIZE - 1)], u3 = u2 + (e3 >> 8);
        uint32_t ok2 = 0u - (u2 <= HMA__HUF_MAXLEN), ok3 = ok2 & (0u - (u3 <= HMA__HUF_MAXLEN));
        uint32_t used = l1 + ((u2 - l1) & ok2) + ((u3 - u2) & ok3);
        tab3[i] = (used | (1 - ok2 - ok3) << 6) << 24 | (e1 & 0xFF) | (e2 & 0xFF) << 8 | (e3 & 0xFF) << 16;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same, 8 entries at a time (tab1 has one entry of slack: a gather reads 4 bytes). */
__attribute__((target("avx2"))) static void build_tab3_avx2(const uint16_t *tab1, uint32_t *tab3) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), lo8 = _mm256_set1_epi32(0xFF);
    const __m256i lo16 = _mm256_set1_epi32(0xFFFF), lim = _mm256_set1_epi32(HMA__HUF_MAXLEN + 1);
    const __m256i imask = _mm256_set1_epi32(HMA__HUF_TSIZE - 1), one = _mm256_set1_epi32(1);
    for (int i = 0; i < (int)HMA__HUF_TSIZE; i += 8) {
        __m256i iv = _mm256_add_epi32(_mm256_set1_epi32(i), lanes);
        __m256i e1 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(tab1 + i)));
        __m256i l1 = _mm256_srli_epi32(e1, 8);
        __m256i e2 = _mm256_and_si256(
            _mm256_i32gather_epi32((const int *)(const void *)tab1, _mm256_srlv_epi32(iv, l1), 2), lo16);
        __m256i u2 = _mm256_add_epi32(l1, _mm256_srli_epi32(e2, 8));
        __m256i i3 = _mm256_and_si256(_mm256_srlv_epi32(iv, u2), imask);
        __m256i e3 = _mm256_and_si256(_mm256_i32gather_epi32((const int *)(const void *)tab1, i3, 2), lo16);
        __m256i u3 = _mm256_add_epi32(u2, _mm256_srli_epi32(e3, 8));
        __m256i ok2 = _mm256_cmpgt_epi32(lim, u2), ok3 = _mm256_and_si256(ok2, _mm256_cmpgt_epi32(lim, u3));
        __m256i used = _mm256_blendv_epi8(_mm256_blendv_epi8(l1, u2, ok2), u3, ok3);
        __m256i nsym = _mm256_sub_epi32(_mm256_sub_epi32(one, ok2), ok3);
        __m256i syms = _mm256_or_si256(_mm256_and_si256(e1, lo8),
                                       _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(e2, lo8), 8),
                                                       _mm256_slli_epi32(_mm256_and_si256(e3, lo8), 16)));
        __m256i ent = _mm256_or_si256(_mm256_slli_epi32(_mm256_or_si256(used, _mm256_slli_epi32(nsym, 6)), 24), syms);
        _mm256_storeu_si256((__m256i *)(void *)(tab3 + i), ent);
    }
}
#endif

/* ---- run codes ---------------------------------------------------------------- */
/*
 * With runs, code r->sym stands for 2 copies of r->byte and r->sym + 1 for
 * 4: a skewed chunk (most elements alike) then costs less than a bit per
 * element. The multi-symbol table is 64-bit: up to 7 output bytes from up to
 * 3 codes, and in byte 7 the bits used (bits 0-3) and the byte count (bits
 * 4-6); the entry is stored as it is, 8 bytes, and the loop keeps 8 bytes of
 * slack in each stream's output.
 */
typedef struct runpat {
    uint8_t cnt[256];  /* output bytes of each code */
    uint32_t pat[256]; /* those bytes, little-endian */
} runpat;

static void runpat_init(runpat *rp, const hma__huf8_runs *r) {
    for (unsigned s = 0; s < 256; s++) {
        rp->cnt[s] = 1;
        rp->pat[s] = s;
    }
    rp->cnt[r->sym] = 2;
    rp->pat[r->sym] = r->byte * 0x0101u;
    rp->cnt[r->sym + 1] = 4;
    rp->pat[r->sym + 1] = r->byte * 0x01010101u;
}

static void build_tab7(const uint16_t *tab1, const runpat *rp, uint64_t *tab) {
    for (uint32_t i = 0; i < HMA__HUF_TSIZE; i++) {
        uint32_t e1 = tab1[i], l1 = e1 >> 8, n1 = rp->cnt[e1 & 0xFF];
        uint32_t e2 = tab1[i >> l1], u2 = l1 + (e2 >> 8), n2 = n1 + rp->cnt[e2 & 0xFF];
        uint32_t e3 = tab1[(i >> u2) & (HMA__HUF_TSIZE - 1)], u3 = u2 + (e3 >> 8), n3 = n2 + rp->cnt[e3 & 0xFF];
        int ok2 = u2 <= HMA__HUF_MAXLEN && n2 <= 7, ok3 = ok2 && u3 <= HMA__HUF_MAXLEN && n3 <= 7;
        uint64_t bytes = rp->pat[e1 & 0xFF];
        uint32_t used = l1, nsym = n1;
        if (ok2) {
            bytes |= (uint64_t)rp->pat[e2 & 0xFF] << (8 * n1);
            used = u2;
            nsym = n2;
        }
        if (ok3) {
            bytes |= (uint64_t)rp->pat[e3 & 0xFF] << (8 * n2);
            used = u3;
            nsym = n3;
        }
        tab[i] = (bytes & ((1ull << 56) - 1)) | (uint64_t)(used | nsym << 4) << 56;
    }
}

HOT void dec_lookup7(uint64_t *w, uint8_t **o, const uint64_t *tab) {
    uint64_t e = tab[*w & (HMA__HUF_TSIZE - 1)];
    memcpy(*o, &e, 8); /* little-endian: the first byte first */
    uint32_t c = (uint32_t)(e >> 56);
    *w >>= c & 15;
    *o += c >> 4;
}

/*
 * The 4 streams into out: while every window load stays inside `avail` and
 * every stream has room for a round, rounds of LOOKUPS table lookups per
 * stream from one 56-bit window each; then one code at a time with
 * byte-checked loads. `wide`: the 64-bit table with run codes (up to 7
 * bytes a lookup), else the 32-bit one (up to 3). Returns -1 when a run
 * would overfill its stream's share of the n bytes.
 */
HOT int dec_streams(const uint16_t *tab1, const uint32_t *tab3, const uint64_t *tab7, const runpat *rp,
                    const uint8_t *src, size_t avail, size_t pos[NS], uint8_t *out, size_t n, const int wide) {
    size_t p0 = pos[0], p1 = pos[1], p2 = pos[2], p3 = pos[3];
    const size_t q = n / NS;
    uint8_t *o0 = out, *o1 = out + q, *o2 = out + 2 * q, *o3 = out + 3 * q;
    uint8_t *const e0 = o1, *const e1 = o2, *const e2 = o3, *const e3 = out + n;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (avail >= 8) {
        const size_t lim = 8 * (avail - 8); /* a window load at pos needs pos / 8 + 8 <= avail */
        const size_t per = (wide ? 7 : 3) * LOOKUPS; /* bytes a stream may emit in one round */
        const size_t store = wide ? 8 : 4;           /* bytes one lookup writes */
        for (;;) {
            size_t pmax = p0 > p1 ? p0 : p1, pm2 = p2 > p3 ? p2 : p3;
            if (pm2 > pmax) pmax = pm2;
            size_t rounds = pmax <= lim ? (lim - pmax) / (LOOKUPS * HMA__HUF_MAXLEN) + 1 : 0;
            size_t r0 = (size_t)(e0 - o0), r1 = (size_t)(e1 - o1), r2 = (size_t)(e2 - o2), r3 = (size_t)(e3 - o3);
            size_t rmin = r0 < r1 ? r0 : r1, rm2 = r2 < r3 ? r2 : r3;
            if (rm2 < rmin) rmin = rm2;
            /* the last round's stores stay inside each stream's share */
            size_t rs = rmin > store ? (rmin - store) / per : 0;
            if (rounds > rs) rounds = rs;
            if (rounds < 2) break;
            for (size_t r = 0; r < rounds; r++) {
                uint64_t w0 = win56(src, p0), w1 = win56(src, p1), w2 = win56(src, p2), w3 = win56(src, p3);
                for (unsigned j = 0; j < LOOKUPS; j++) {
                    if (wide) {
                        dec_lookup7(&w0, &o0, tab7);
                        dec_lookup7(&w1, &o1, tab7);
                        dec_lookup7(&w2, &o2, tab7);
                        dec_lookup7(&w3, &o3, tab7);
                    } else {
                        dec_lookup(&w0, &o0, tab3);
                        dec_lookup(&w1, &o1, tab3);
                        dec_lookup(&w2, &o2, tab3);
                        dec_lookup(&w3, &o3, tab3);
                    }
                }
                p0 += used56(w0);
                p1 += used56(w1);
                p2 += used56(w2);
                p3 += used56(w3);
            }
        }
    }
#else
    (void)tab3;
    (void)tab7;
#endif
    size_t *ps[NS] = {&p0, &p1, &p2, &p3};
    uint8_t *os[NS] = {o0, o1, o2, o3}, *es[NS] = {e0, e1, e2, e3};
    for (unsigned s = 0; s < NS; s++) {
        size_t pp = *ps[s];
        for (uint8_t *o = os[s]; o < es[s];) {
            unsigned e = tab1[win_safe(src, avail, pp) & (HMA__HUF_TSIZE - 1)];
            if (wide) {
                unsigned c = rp->cnt[e & 0xFF];
                if (c > (size_t)(es[s] - o)) return -1;
                for (unsigned k = 0; k < c; k++) *o++ = (uint8_t)(rp->pat[e & 0xFF] >> (8 * k));
            } else {
                *o++ = (uint8_t)e;
            }
            pp += e >> 8;
        }
        *ps[s] = pp;
    }
    pos[0] = p0;
    pos[1] = p1;
    pos[2] = p2;
    pos[3] = p3;
    return 0;
}

/* Each loop twice (with and without run codes), and on x86-64 again for
 * CPUs with BMI2 (shifts by a register without the cl detour), chosen at
 * run time. */
#define DEC_STREAMS_FUNCS(ATTR, SUF)                                                                              \
    ATTR static int dec_streams##SUF(const uint16_t *tab1, const uint32_t *tab3, const uint64_t *tab7,            \
                                     const runpat *rp, const uint8_t *src, size_t avail, size_t pos[NS],         \
                                     uint8_t *out, size_t n) {                                                   \
        return rp ? dec_streams(tab1, tab3, tab7, rp, src, avail, pos, out, n, 1)                                \
                  : dec_streams(tab1, tab3, tab7, rp, src, avail, pos, out, n, 0);                               \
    }
DEC_STREAMS_FUNCS(, _any)
#if defined(__x86_64__) && defined(__GNUC__)
DEC_STREAMS_FUNCS(__attribute__((target("bmi,bmi2"))), _bmi2)
#endif

int hma__huf8_decode(const uint8_t *src, size_t avail, uint8_t *out, size_t n, hma__huf8_tables *t, int isa,
                     const hma__huf8_runs *runs, size_t *used, const char **why) {
    uint16_t *tab = t->one;
    if (avail < 2) {
        *why = "Huffman block header cut short";
        return -1;
    }
    unsigned first = src[0], count = src[1] + 1u;
    size_t at = 2 + (count + 1) / 2;
    if (first + count > 256 || avail < at) {
        *why = "Huffman block header out of range or cut short";
        return -1;
    }
    if ((count & 1) && src[2 + count / 2] >> 4) {
        *why = "code length padding not zero";
        return -1;
    }
    unsigned cnt[HMA__HUF_MAXLEN + 1] = {0}, nz = 0, sole = 256;
    uint8_t len[256] = {0};
    for (unsigned k = 0; k < count; k++) {
        unsigned l = src[2 + k / 2] >> (4 * (k & 1)) & 15u;
        len[first + k] = (uint8_t)l;
        if (!l) continue;
        nz++;
        if (l == HMA__HUF_SOLE) sole = first + k;
        else if (l > HMA__HUF_MAXLEN) nz = 1000;
        else cnt[l]++;
    }
    if (nz == 1000 || (sole < 256 && nz != 1) || (n > 0) != (nz > 0)) {
        *why = "code lengths do not form one complete Huffman code";
        return -1;
    }
    if (sole < 256) {
        for (unsigned k = 0; k < HMA__HUF_TSIZE; k++) tab[k] = (uint16_t)sole;
    } else if (nz) {
        uint32_t kraft = 0;
        for (unsigned l = 1; l <= HMA__HUF_MAXLEN; l++) kraft += cnt[l] << (HMA__HUF_MAXLEN - l);
        if (kraft != HMA__HUF_TSIZE) {
            *why = "code lengths do not form one complete Huffman code";
            return -1;
        }
        uint16_t code[256];
        hma__huf_codes(len, 256, code);
        for (unsigned s = 0; s < 256; s++) {
            unsigned l = len[s];
            if (!l) continue;
            for (unsigned k = code[s]; k < HMA__HUF_TSIZE; k += 1u << l) tab[k] = (uint16_t)(s | l << 8);
        }
    }
    size_t start[NS], slen[NS], pos[NS];
    if (!(at = hma__huf_streams(src, avail, at, start, slen, why))) return -1;
    for (unsigned s = 0; s < NS; s++) pos[s] = 8 * start[s];
#if !(defined(__x86_64__) && defined(__GNUC__))
    (void)isa; /* one set of loops */
#endif
    if (n) {
        runpat rp;
        if (runs) {
            runpat_init(&rp, runs);
            build_tab7(tab, &rp, t->multi7);
        } else {
#if defined(__x86_64__) && defined(__GNUC__)
            if (isa >= 2) build_tab3_avx2(tab, t->multi);
            else
#endif
                build_tab3(tab, t->multi);
        }
        const runpat *r = runs ? &rp : NULL;
        int rc;
#if defined(__x86_64__) && defined(__GNUC__)
        if (isa >= 1) rc = dec_streams_bmi2(tab, t->multi, t->multi7, r, src, avail, pos, out, n);
        else
#endif
            rc = dec_streams_any(tab, t->multi, t->multi7, r, src, avail, pos, out, n);
        if (rc) {
            *why = "a run code overfills its stream's share of the symbols";
            return -1;
        }
    }
    for (unsigned s = 0; s < NS; s++)
        if ((pos[s] - 8 * start[s] + 7) / 8 != slen[s]) {
            *why = "bit stream length differs from the bits its symbols use";
            return -1;
        }
    *used = at;
    return 0;
}
