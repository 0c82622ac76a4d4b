/* codec16.c - the chunk methods for 16-bit floats (BF16, F16), which
 * hold nearly every weight: DIFF16 against the base and FLOAT16 alone.
 *
 * They are laid out for decoding speed (pack format version 3): a Huffman
 * stage over one byte per element (huffman.c, one 4 KiB table), and the rest
 * in planes that SIMD code rebuilds without per-element branches. The format
 * of each payload is in codec.h and docs/pack-format.md.
 *
 * DIFF16, per element t with base element b (sign bit 15, magnitude = the
 * 15 bits below it):
 *   d    = mag(t) - mag(b)                       -32767 .. 32767
 *   z    = zigzag(d) + 1 = 2d + 1 (d >= 0), -2d (d < 0)     1 .. 65535
 *   nraw = bit length of z - 1                   0 .. 15
 *   flip = sign(t) xor sign(b)
 *   o    = min(max(K - exponent(b), 0), 15)      K: one byte per chunk
 *   symbol = ((nraw - o + 15) << 1) | flip       0 .. 61, Huffman-coded
 *   raw  = the nraw bits of z below its leading 1, in one of 4 bit streams
 * When one symbol covers more than half the elements (most weights
 * unchanged), codes 62 and 63 stand for 2 and 4 of it in a row.
 * The offset o turns the size of the base's ulp into the expected length of
 * the difference, so that one code serves every exponent; the sign flip is
 * modelled, since weights near zero change sign often.
 */
#include "internal.h"
#include "pack/bytes.h"
#include "pack/huffman.h"
#include "pack/codec.h"

#include <math.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PC16_X86 1
#else
#define PC16_X86 0
#endif

#define NS HMA__HUF_NSTREAM
#define HEAD_DIFF 6u   /* u32 element count, u8 K, u8 run symbol */
#define NO_RUNS 0xFFu  /* run-symbol byte of a chunk without run codes */
#define RUN_SYM 62u    /* codes 62 and 63: 2 and 4 copies of the run symbol */
#define GROUP 8u /* raw-bit group: 8 elements use at most 120 bits, one 16-byte window */


/* Portable SIMD (GCC/Clang vector extensions: SSE2, NEON or plain
 * registers, whatever the target has) on little-endian hosts, for CPUs
 * without the AVX2 loops: 8 elements a step, the rest in scalar loops. */
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define PC16_VEC 1
typedef uint16_t v8u __attribute__((vector_size(16)));
typedef int16_t v8s __attribute__((vector_size(16)));
typedef uint8_t v8b __attribute__((vector_size(8)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v8f __attribute__((vector_size(32)));
#else
#define PC16_VEC 0
#endif

static inline unsigned offset_of(unsigned K, unsigned e) {
    int o = (int)K - (int)e;
    return o < 0 ? 0u : o > 15 ? 15u : (unsigned)o;
}

/* ======================================================================= */
/* Encoding                                                                */
/* ======================================================================= */

/* log2 for the cost estimate: the exponent (frexp is exact) plus a degree-6
 * polynomial of the mantissa (error below 3e-6); plain IEEE arithmetic, not
 * libm's log2, so that every machine picks the same K and writes the same
 * bytes. */
static double flog2(double x) {
    int ex = 0;
    double m = frexp(x, &ex); /* m in [0.5, 1) */
    m = 2 * m - 1;            /* [0, 1) */
    return (double)(ex - 1) + m * (1.4425449 + m * (-0.7181452 + m * (0.4575485 + m * (-0.2779042 + m * (0.1217970 - m * 0.0258411)))));
}

/* K, from h2[e * 32 + nraw * 2 + flip] (rows elo..ehi). The median K0 of
 * e + nraw makes o(e) = K - e the typical nraw of the elements that weigh
 * most; of K0 - 8 .. K0 + 8, take the K whose symbols have the least
 * entropy (on 1-2 ulp differences the median is 25 % off the best). Fills
 * hs with the symbol counts for that K. */
/* The symbol of key cell c = nraw * 2 + flip at an exponent with offset o. */
static inline unsigned sym_of(unsigned c, unsigned o) { return ((c >> 1) + 15 - o) << 1 | (c & 1); }

static unsigned choose_k(const uint32_t *h2, unsigned elo, unsigned ehi, size_t ne, uint32_t hs[256]) {
    uint64_t sum[256 + 16] = {0};
    for (unsigned e = elo; e <= ehi; e++)
        for (unsigned c = 0; c < 32; c++) sum[e + (c >> 1)] += h2[e * 32 + c];
    unsigned K0 = 0;
    uint64_t acc = 0;
    while (K0 < 255 && 2 * (acc + sum[K0]) < ne) acc += sum[K0++];
    unsigned best_k = K0;
    double best = -1;
    memset(hs, 0, 256 * sizeof *hs);
    for (unsigned K = K0 > 8 ? K0 - 8 : 0; K <= K0 + 8 && K <= 255; K++) {
        uint32_t h[64] = {0};
        for (unsigned e = elo; e <= ehi; e++) {
            unsigned o = offset_of(K, e);
            for (unsigned c = 0; c < 32; c++) h[sym_of(c, o)] += h2[e * 32 + c];
        }
        double cost = 0;
        for (unsigned s = 0; s < 62; s++)
            if (h[s]) cost -= (double)h[s] * flog2((double)h[s] / (double)ne);
        if (best < 0 || cost < best) {
            best = cost;
            best_k = K;
            memcpy(hs, h, sizeof h);
        }
    }
    return best_k;
}

/* Encoder pass 1: per element z and its key (exponent, nraw, flip); widens
 * [*elo, *ehi] to the exponents seen; returns the sum of nraw. */
static uint64_t enc_keys_scalar(const uint8_t *t, const uint8_t *b, size_t ne, unsigned esh, unsigned emask,
                                uint16_t *zb, uint16_t *key, unsigned *elo, unsigned *ehi) {
    unsigned lo = *elo, hi = *ehi;
    uint64_t bits = 0;
    for (size_t i = 0; i < ne; i++) {
        unsigned tv = hma__ld16(t + 2 * i), bv = hma__ld16(b + 2 * i), e = (bv >> esh) & emask;
        int d = (int)(tv & 0x7FFF) - (int)(bv & 0x7FFF);
        /* zigzag without a branch: the sign is random, a branch mispredicts */
        unsigned z = (((unsigned)d << 1) ^ (unsigned)(d >> 31)) + 1u;
        unsigned nr = 31u - (unsigned)__builtin_clz(z);
        zb[i] = (uint16_t)z;
        key[i] = (uint16_t)(e * 32 + nr * 2 + ((tv ^ bv) >> 15));
        lo = e < lo ? e : lo;
        hi = e > hi ? e : hi;
        bits += nr;
    }
    *elo = lo;
    *ehi = hi;
    return bits;
}

#if PC16_VEC
static uint64_t enc_keys_vec(const uint8_t *t, const uint8_t *b, size_t ne, unsigned esh, unsigned emask,
                             uint16_t *zb, uint16_t *key, unsigned *elo, unsigned *ehi) {
    v8u vlo = {0, 0, 0, 0, 0, 0, 0, 0}, vhi = vlo;
    vlo = ~vlo;
    v8i vbits = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= ne; i += 8) {
        v8u tv, bv;
        memcpy(&tv, t + 2 * i, 16);
        memcpy(&bv, b + 2 * i, 16);
        v8s d = (v8s)(tv & 0x7FFF) - (v8s)(bv & 0x7FFF);
        v8u z = (((v8u)d << 1) ^ (v8u)(d >> 15)) + 1; /* unsigned: no shift of a negative value */
        /* bit length - 1: the exponent of z as a float (exact below 2^24) */
        v8f zf = __builtin_convertvector(__builtin_convertvector(z, v8i), v8f);
        v8i fb;
        memcpy(&fb, &zf, 32);
        v8i nr32 = (fb >> 23) - 127;
        v8u nr = __builtin_convertvector(nr32, v8u);
        v8u e = (bv >> (uint16_t)esh) & (uint16_t)emask;
        v8u k = (e << 5) | (nr << 1) | ((tv ^ bv) >> 15);
        v8s lt = (v8s)(e < vlo), gt = (v8s)(e > vhi);
        vlo = (v8u)(((v8s)e & lt) | ((v8s)vlo & ~lt));
        vhi = (v8u)(((v8s)e & gt) | ((v8s)vhi & ~gt));
        vbits += nr32;
        memcpy(zb + i, &z, 16);
        memcpy(key + i, &k, 16);
    }
    uint64_t bits = 0;
    for (unsigned j = 0; j < 8; j++) {
        bits += (uint64_t)vbits[j];
        if (i > 0) {
            *elo = vlo[j] < *elo ? vlo[j] : *elo;
            *ehi = vhi[j] > *ehi ? vhi[j] : *ehi;
        }
    }
    return bits + enc_keys_scalar(t + 2 * i, b + 2 * i, ne - i, esh, emask, zb + i, key + i, elo, ehi);
}
#endif

#if PC16_X86
#define AVX2 __attribute__((target("avx2,bmi,bmi2")))
AVX2 static uint64_t enc_keys_avx2(const uint8_t *t, const uint8_t *b, size_t ne, unsigned esh, unsigned emask,
                                   uint16_t *zb, uint16_t *key, unsigned *elo, unsigned *ehi) {
    const __m256i lo15 = _mm256_set1_epi16(0x7FFF), one = _mm256_set1_epi16(1);
    const __m256i em = _mm256_set1_epi16((short)emask), bias = _mm256_set1_epi32(127);
    const __m128i sh = _mm_cvtsi32_si128((int)esh);
    __m256i vlo = _mm256_set1_epi16(-1), vhi = _mm256_setzero_si256(), vbits = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= ne; i += 16) {
        __m256i tv = _mm256_loadu_si256((const __m256i *)(const void *)(t + 2 * i));
        __m256i bv = _mm256_loadu_si256((const __m256i *)(const void *)(b + 2 * i));
        __m256i d = _mm256_sub_epi16(_mm256_and_si256(tv, lo15), _mm256_and_si256(bv, lo15));
        __m256i z = _mm256_add_epi16(_mm256_xor_si256(_mm256_slli_epi16(d, 1), _mm256_srai_epi16(d, 15)), one);
        /* bit length - 1: the exponent of z as a float (exact below 2^24) */
        __m256i zl = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(z));
        __m256i zh = _mm256_cvtepu16_epi32(_mm256_extracti128_si256(z, 1));
        __m256i nl = _mm256_sub_epi32(_mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(zl)), 23), bias);
        __m256i nh = _mm256_sub_epi32(_mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(zh)), 23), bias);
        __m256i nr = _mm256_permute4x64_epi64(_mm256_packus_epi32(nl, nh), 0xD8);
        __m256i e = _mm256_and_si256(_mm256_srl_epi16(bv, sh), em);
        __m256i k = _mm256_or_si256(_mm256_slli_epi16(e, 5),
                                    _mm256_or_si256(_mm256_slli_epi16(nr, 1),
                                                    _mm256_srli_epi16(_mm256_xor_si256(tv, bv), 15)));
        vlo = _mm256_min_epu16(vlo, e);
        vhi = _mm256_max_epu16(vhi, e);
        vbits = _mm256_add_epi32(vbits, _mm256_madd_epi16(nr, one));
        _mm256_storeu_si256((__m256i *)(void *)(zb + i), z);
        _mm256_storeu_si256((__m256i *)(void *)(key + i), k);
    }
    uint16_t l[16], h[16];
    uint32_t bs[8];
    _mm256_storeu_si256((__m256i *)(void *)l, vlo);
    _mm256_storeu_si256((__m256i *)(void *)h, vhi);
    _mm256_storeu_si256((__m256i *)(void *)bs, vbits);
    uint64_t bits = 0;
    for (unsigned k = 0; k < 8; k++) bits += bs[k];
    for (unsigned k = 0; k < 16 && i > 0; k++) {
        *elo = l[k] < *elo ? l[k] : *elo;
        *ehi = h[k] > *ehi ? h[k] : *ehi;
    }
    return bits + enc_keys_scalar(t + 2 * i, b + 2 * i, ne - i, esh, emask, zb + i, key + i, elo, ehi);
}
#endif

size_t hma__pc16_encode(int diff, unsigned ebits, const uint8_t *t, const uint8_t *b, size_t n, uint8_t *dst,
                        hma__pc16_scratch *sc, int isa) {
    const size_t ne = n / 2;
    uint8_t *sym = sc->sym;
    uint8_t len[256];
    size_t blk;
    if (!diff) {
        uint32_t hs[256] = {0};
        for (size_t i = 0; i < ne; i++) {
            unsigned v = hma__ld16(t + 2 * i);
            sym[i] = (uint8_t)(((v << 1) | (v >> 15)) >> 8);
            hs[sym[i]]++;
        }
        blk = hma__huf8_plan(hs, ne, len);
        if (4 + blk + ne >= n) return 0;
        hma__st32(dst, (uint32_t)ne);
        blk = hma__huf8_encode(sym, ne, len, dst + 4);
        uint8_t *low = dst + 4 + blk;
        for (size_t i = 0; i < ne; i++) {
            unsigned v = hma__ld16(t + 2 * i);
            low[i] = (uint8_t)((v << 1) | (v >> 15));
        }
        return 4 + blk + ne;
    }
    const unsigned esh = 15 - ebits, emask = (1u << ebits) - 1;
    uint32_t *h2 = sc->h2;
    uint16_t *zb = sc->z, *key = sc->key;
    unsigned elo = emask, ehi = 0;
    /* per stream: keys, and the raw bits (which fix where each stream starts) */
    uint64_t rb[NS];
    size_t rawsize = 0;
    for (unsigned s = 0; s < NS; s++) {
        size_t lo, hi;
        hma__huf_quarter(ne, s, &lo, &hi);
#if PC16_X86
        if (isa >= 2)
            rb[s] = enc_keys_avx2(t + 2 * lo, b + 2 * lo, hi - lo, esh, emask, zb + lo, key + lo, &elo, &ehi);
        else
#endif
#if PC16_VEC
            rb[s] = enc_keys_vec(t + 2 * lo, b + 2 * lo, hi - lo, esh, emask, zb + lo, key + lo, &elo, &ehi);
#else
            rb[s] = enc_keys_scalar(t + 2 * lo, b + 2 * lo, hi - lo, esh, emask, zb + lo, key + lo, &elo, &ehi);
#endif
        rawsize += (size_t)((rb[s] + 7) / 8);
    }
    memset(h2 + elo * 32, 0, sizeof *h2 * 32 * (ehi - elo + 1));
    for (size_t i = 0; i < ne; i++) h2[key[i]]++;
    uint32_t hs[256];
    unsigned K = choose_k(h2, elo, ehi, ne, hs);
    /* symbol of every (exponent, nraw, flip) key */
    uint8_t *symtab = sc->symtab;
    for (unsigned e = elo; e <= ehi; e++) {
        unsigned o = offset_of(K, e);
        for (unsigned c = 0; c < 32; c++) symtab[e * 32 + c] = (uint8_t)sym_of(c, o);
    }
    /* one symbol for more than half the elements (a light fine-tune leaves
     * most weights unchanged): try codes for its runs, since otherwise
     * every element costs at least a bit; keep them when they are smaller */
    unsigned s0 = 0;
    for (unsigned k = 1; k < 62; k++)
        if (hs[k] > hs[s0]) s0 = k;
    size_t cut[NS + 1], nc = 0, blk_runs = SIZE_MAX;
    uint8_t len_runs[256];
    if (2 * (uint64_t)hs[s0] > ne) {
        uint32_t hc[256] = {0};
        for (unsigned s = 0; s < NS; s++) {
            size_t lo, hi;
            hma__huf_quarter(ne, s, &lo, &hi);
            cut[s] = nc;
            for (size_t i = lo; i < hi;) {
                unsigned y = symtab[key[i]], c = y;
                if (y == s0 && i + 2 <= hi && symtab[key[i + 1]] == s0) {
                    if (i + 4 <= hi && symtab[key[i + 2]] == s0 && symtab[key[i + 3]] == s0) {
                        c = RUN_SYM + 1;
                        i += 4;
                    } else {
                        c = RUN_SYM;
                        i += 2;
                    }
                } else {
                    i++;
                }
                sym[nc++] = (uint8_t)c;
                hc[c]++;
            }
        }
        cut[NS] = nc;
        blk_runs = hma__huf8_plan(hc, nc, len_runs);
    }
    blk = hma__huf8_plan(hs, ne, len);
    const int runs = blk_runs < blk;
    if (runs) blk = blk_runs;
    if (HEAD_DIFF + blk + 4 * NS + rawsize >= n) return 0;
    hma__st32(dst, (uint32_t)ne);
    dst[4] = (uint8_t)K;
    dst[5] = runs ? (uint8_t)s0 : NO_RUNS;
    if (runs) {
        blk = hma__huf8_encode_parts(sym, cut, len_runs, dst + HEAD_DIFF);
    } else {
        /* h2 is free again: it maps keys to codes */
        blk = hma__huf8_encode_keys(key, ne, symtab, elo * 32, (ehi + 1) * 32, len, h2, dst + HEAD_DIFF);
    }
    uint8_t *lens = dst + HEAD_DIFF + blk, *o = lens + 4 * NS;
    /* the 4 raw streams written side by side (their chains of shifts
     * overlap), each with 8 bytes of slack for the 8-byte stores, then
     * moved together; plain locals, so that they stay in registers */
    uint8_t *p[NS];
    size_t at = 0;
    for (unsigned s = 0; s < NS; s++) {
        p[s] = o + at;
        hma__st32(lens + 4 * s, (uint32_t)((rb[s] + 7) / 8));
        at += (size_t)((rb[s] + 7) / 8) + 8;
    }
    const size_t q = ne / NS;
    uint8_t *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    unsigned n0 = 0, n1 = 0, n2 = 0, n3 = 0;
#define RAW_BITS(I, V, K)                                                                                              \
    do {                                                                                                           \
        unsigned z_ = zb[I];                                                                                       \
        K = (key[I] >> 1) & 15u;                                                                                   \
        V = z_ ^ (1u << K);                                                                                        \
    } while (0)
/* two elements (at most 30 bits) per store */
#define RAW_PUT2(P, A, N, I)                                                                                           \
    do {                                                                                                           \
        unsigned v1_, k1_, v2_, k2_;                                                                               \
        RAW_BITS(I, v1_, k1_);                                                                                     \
        RAW_BITS((I) + 1, v2_, k2_);                                                                               \
        A |= (uint64_t)(v1_ | v2_ << k1_) << N;                                                                    \
        N += k1_ + k2_;                                                                                            \
        hma__st64(P, A);                                                                                                \
        P += N >> 3;                                                                                               \
        A >>= N & ~7u;                                                                                             \
        N &= 7;                                                                                                    \
    } while (0)
#define RAW_PUT(P, A, N, I)                                                                                            \
    do {                                                                                                           \
        unsigned v_, k_;                                                                                           \
        RAW_BITS(I, v_, k_);                                                                                       \
        A |= (uint64_t)v_ << N;                                                                                    \
        N += k_;                                                                                                   \
        hma__st64(P, A);                                                                                                \
        P += N >> 3;                                                                                               \
        A >>= N & ~7u;                                                                                             \
        N &= 7;                                                                                                    \
    } while (0)
    size_t i = 0;
    for (; i + 2 <= q; i += 2) {
        RAW_PUT2(p0, a0, n0, i);
        RAW_PUT2(p1, a1, n1, q + i);
        RAW_PUT2(p2, a2, n2, 2 * q + i);
        RAW_PUT2(p3, a3, n3, 3 * q + i);
    }
    for (; i < q; i++) {
        RAW_PUT(p0, a0, n0, i);
        RAW_PUT(p1, a1, n1, q + i);
        RAW_PUT(p2, a2, n2, 2 * q + i);
        RAW_PUT(p3, a3, n3, 3 * q + i);
    }
    for (i = NS * q; i < ne; i++) RAW_PUT(p3, a3, n3, i);
#undef RAW_PUT2
#undef RAW_BITS
#undef RAW_PUT
    for (unsigned s = 0; s < NS; s++) {
        size_t bytes = (size_t)((rb[s] + 7) / 8);
        if (s) memmove(o, p[s], bytes);
        o += bytes;
    }
    return (size_t)(o - dst);
}

/* ======================================================================= */
/* Decoding                                                                */
/* ======================================================================= */
/*
 * DIFF16 decodes in passes over the chunk, each simple enough for SIMD:
 *   A  Huffman: the symbols (huffman.c)
 *   B  per element nraw from its symbol and the base's exponent; per group
 *      of 8 elements the bit position of its raw bits (a running sum)
 *   C  per group: one 16-byte window of the raw stream holds all 8 values;
 *      shuffle, shift and mask them out: z
 *   D  z, the base and the flip bit give the element
 * Pass B checks every nraw and every stream's total length before C reads,
 * so C needs no bounds checks but the window slack at the payload's end.
 */

/* Pass B for stream elements [lo, hi) (hi - lo = m): nraw into nr[], group
 * positions (bits from the stream start) into gp[]; returns the stream's
 * total bits, or UINT64_MAX when a symbol gives nraw outside 0..15. */
static uint64_t pass_b_scalar(const uint8_t *sym, const uint8_t *b, size_t m, unsigned K, unsigned esh,
                              unsigned emask, uint8_t *nr, uint32_t *gp) {
    uint64_t pos = 0;
    for (size_t i = 0; i < m; i++) {
        if (i % GROUP == 0) gp[i / GROUP] = (uint32_t)pos;
        int v = (int)(sym[i] >> 1) - 15 + (int)offset_of(K, (hma__ld16(b + 2 * i) >> esh) & emask);
        if (v < 0 || v > 15) return UINT64_MAX;
        nr[i] = (uint8_t)v;
        pos += (unsigned)v;
    }
    return pos;
}

/* Pass C, portable: z of elements [0, m) (little-endian u16 at z, which
 * need not be aligned: it is the caller's buffer) whose raw bits start at
 * bit pos of the stream at src (slen bytes: the checked stream length). */
static void pass_c_scalar(const uint8_t *src, size_t slen, uint64_t pos, const uint8_t *nr, size_t m,
                          uint8_t *z) {
    for (size_t i = 0; i < m; i++) {
        unsigned k = nr[i];
        uint32_t w = 0;
        size_t at = (size_t)(pos >> 3);
        if (at + 4 <= slen) {
            w = hma__ld32(src + at); /* one load where 4 bytes remain */
        } else {
            for (unsigned j = 0; j < 3; j++)
                if (at + j < slen) w |= (uint32_t)src[at + j] << (8 * j);
        }
        w >>= pos & 7;
        hma__st16(z + 2 * i, (w & ((1u << k) - 1)) | (1u << k));
        pos += k;
    }
}

/* Pass D, portable: elements from z (in dst), flip bits and the base;
 * returns nonzero when a magnitude leaves 15 bits (not a valid payload). */
static unsigned pass_d_scalar(uint8_t *dst, const uint8_t *sym, const uint8_t *b, size_t m) {
    unsigned bad = 0;
    for (size_t i = 0; i < m; i++) {
        unsigned z = hma__ld16(dst + 2 * i) - 1u, bv = hma__ld16(b + 2 * i);
        unsigned d = (z >> 1) ^ (0u - (z & 1u));
        unsigned mag = ((bv & 0x7FFF) + d) & 0xFFFF;
        bad |= mag & 0x8000;
        hma__st16(dst + 2 * i, mag | ((bv ^ (unsigned)(sym[i] & 1) << 15) & 0x8000));
    }
    return bad;
}

/* Passes B and D with the portable vectors (see PC16_VEC). */
#if PC16_VEC

static uint64_t pass_b_vec(const uint8_t *sym, const uint8_t *b, size_t m, unsigned K, unsigned esh, unsigned emask,
                           uint8_t *nr, uint32_t *gp) {
    const v8s k = (v8s){0, 0, 0, 0, 0, 0, 0, 0} + (int16_t)K;
    v8s bad = {0, 0, 0, 0, 0, 0, 0, 0};
    uint64_t pos = 0;
    size_t i = 0;
    for (; i + GROUP <= m; i += GROUP) {
        v8u bv;
        v8b sb;
        memcpy(&bv, b + 2 * i, 16);
        memcpy(&sb, sym + i, 8);
        v8s e = (v8s)((bv >> (uint16_t)esh) & (uint16_t)emask);
        v8s o = k - e;
        o &= ~(o >> 15);       /* max(o, 0) */
        v8s over = o > 15;     /* -1 where above 15 */
        o = (o & ~over) | (15 & over);
        v8s v = (v8s)(__builtin_convertvector(sb, v8u) >> 1) - 15 + o;
        bad |= (v < 0) | (v > 15);
        v8b p = __builtin_convertvector(v, v8b);
        memcpy(nr + i, &p, 8);
        uint64_t w;
        memcpy(&w, &p, 8);
        gp[i / GROUP] = (uint32_t)pos;
        pos += (w * 0x0101010101010101ull) >> 56; /* the 8 lengths' sum (<= 120) */
    }
    for (unsigned j = 0; j < 8; j++)
        if (bad[j]) return UINT64_MAX;
    if (i < m) {
        uint64_t rest = pass_b_scalar(sym + i, b + 2 * i, m - i, K, esh, emask, nr + i, gp + i / GROUP);
        if (rest == UINT64_MAX) return rest;
        gp[i / GROUP] += (uint32_t)pos;
        pos += rest;
    }
    return pos;
}

static unsigned pass_d_vec(uint8_t *dst, const uint8_t *sym, const uint8_t *b, size_t m) {
    v8u bad = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= m; i += 8) {
        v8u z, bv;
        v8b sb;
        memcpy(&z, dst + 2 * i, 16);
        memcpy(&bv, b + 2 * i, 16);
        memcpy(&sb, sym + i, 8);
        z -= 1;
        v8u d = (z >> 1) ^ (0 - (z & 1));
        v8u mag = (bv & 0x7FFF) + d;
        bad |= mag;
        v8u x = mag | ((bv ^ (__builtin_convertvector(sb, v8u) << 15)) & 0x8000);
        memcpy(dst + 2 * i, &x, 16);
    }
    unsigned r = 0;
    for (unsigned j = 0; j < 8; j++) r |= bad[j] & 0x8000u;
    return r | pass_d_scalar(dst + 2 * i, sym + i, b + 2 * i, m - i);
}
#endif

static void float16_merge_scalar(uint8_t *dst, const uint8_t *top, const uint8_t *low, size_t ne) {
    for (size_t i = 0; i < ne; i++) {
        unsigned v = (unsigned)top[i] << 8 | low[i];
        hma__st16(dst + 2 * i, (v >> 1) | ((v & 1) << 15));
    }
}

#if PC16_X86
AVX2 static uint64_t pass_b_avx2(const uint8_t *sym, const uint8_t *b, size_t m, unsigned K, unsigned esh,
                                 unsigned emask, uint8_t *nr, uint32_t *gp) {
    const __m256i vk = _mm256_set1_epi16((short)K), vmask = _mm256_set1_epi16((short)emask);
    const __m256i v15 = _mm256_set1_epi16(15), zero = _mm256_setzero_si256();
    const __m128i sh = _mm_cvtsi32_si128((int)esh);
    __m256i bad = zero;
    uint64_t pos = 0;
    size_t i = 0;
    for (; i + 16 <= m; i += 16) {
        __m256i bv = _mm256_loadu_si256((const __m256i *)(const void *)(b + 2 * i));
        __m256i e = _mm256_and_si256(_mm256_srl_epi16(bv, sh), vmask);
        __m256i o = _mm256_min_epi16(_mm256_max_epi16(_mm256_sub_epi16(vk, e), zero), v15);
        __m256i s = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(sym + i)));
        __m256i v = _mm256_add_epi16(_mm256_sub_epi16(_mm256_srli_epi16(s, 1), v15), o);
        /* outside 0..15 (negative ones wrap to large): v - 15 > 0, saturating */
        bad = _mm256_or_si256(bad, _mm256_subs_epu16(v, v15));
        __m128i p = _mm_packus_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        _mm_storeu_si128((__m128i *)(void *)(nr + i), p);
        /* sums of each 8 bytes: the two groups' bit counts */
        __m128i sums = _mm_sad_epu8(p, _mm_setzero_si128());
        gp[i / GROUP] = (uint32_t)pos;
        pos += (uint64_t)_mm_cvtsi128_si32(sums);
        gp[i / GROUP + 1] = (uint32_t)pos;
        pos += (uint64_t)_mm_extract_epi16(sums, 4);
    }
    if (!_mm256_testz_si256(bad, bad)) return UINT64_MAX;
    if (i < m) {
        uint64_t rest = pass_b_scalar(sym + i, b + 2 * i, m - i, K, esh, emask, nr + i, gp + i / GROUP);
        if (rest == UINT64_MAX) return rest;
        for (size_t g = i / GROUP; g < (m + GROUP - 1) / GROUP; g++) gp[g] += (uint32_t)pos;
        pos += rest;
    }
    return pos;
}

/* Pass C: groups of 8 whose 16-byte window lies inside `avail` bytes. */
AVX2 static size_t pass_c_avx2(const uint8_t *src, size_t avail, const uint8_t *nr, const uint32_t *gp, size_t m,
                               uint8_t *z) {
    const __m256i rep = _mm256_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12, 0, 0, 0, 0, 4, 4,
                                         4, 4, 8, 8, 8, 8, 12, 12, 12, 12);
    const __m256i inc = _mm256_set1_epi32(0x03020100), one = _mm256_set1_epi32(1);
    const __m256i seven = _mm256_set1_epi32(7);
    size_t g = 0, ng = m / GROUP;
    for (; g < ng; g++) {
        uint32_t p0 = gp[g];
        size_t at = p0 >> 3;
        if (at + 16 > avail) break;
        __m256i win = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(src + at)));
        __m256i k = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(nr + g * GROUP)));
        /* exclusive prefix sum of the 8 lengths, plus the bit offset */
        __m256i x = _mm256_add_epi32(k, _mm256_slli_si256(k, 4));
        x = _mm256_add_epi32(x, _mm256_slli_si256(x, 8));
        x = _mm256_add_epi32(x, _mm256_shuffle_epi32(_mm256_permute2x128_si256(x, x, 0x08), 0xFF));
        x = _mm256_add_epi32(_mm256_sub_epi32(x, k), _mm256_set1_epi32((int)(p0 & 7)));
        __m256i idx = _mm256_add_epi32(_mm256_shuffle_epi8(_mm256_srli_epi32(x, 3), rep), inc);
        __m256i w = _mm256_srlv_epi32(_mm256_shuffle_epi8(win, idx), _mm256_and_si256(x, seven));
        __m256i lead = _mm256_sllv_epi32(one, k);
        __m256i v = _mm256_or_si256(_mm256_and_si256(w, _mm256_sub_epi32(lead, one)), lead);
        v = _mm256_permutevar8x32_epi32(_mm256_packus_epi32(v, v), _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
        _mm_storeu_si128((__m128i *)(void *)(z + 2 * g * GROUP), _mm256_castsi256_si128(v));
    }
    return g * GROUP;
}

AVX2 static unsigned pass_d_avx2(uint8_t *dst, const uint8_t *sym, const uint8_t *b, size_t m) {
    const __m256i one = _mm256_set1_epi16(1), lo15 = _mm256_set1_epi16(0x7FFF);
    const __m256i hi = _mm256_set1_epi16((short)0x8000);
    __m256i bad = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= m; i += 16) {
        __m256i z = _mm256_sub_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(dst + 2 * i)), one);
        __m256i bv = _mm256_loadu_si256((const __m256i *)(const void *)(b + 2 * i));
        __m256i s = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(sym + i)));
        __m256i d = _mm256_xor_si256(_mm256_srli_epi16(z, 1), _mm256_sub_epi16(_mm256_setzero_si256(),
                                                                                _mm256_and_si256(z, one)));
        __m256i mag = _mm256_add_epi16(_mm256_and_si256(bv, lo15), d);
        bad = _mm256_or_si256(bad, mag);
        __m256i sign = _mm256_and_si256(_mm256_xor_si256(bv, _mm256_slli_epi16(s, 15)), hi);
        _mm256_storeu_si256((__m256i *)(void *)(dst + 2 * i), _mm256_or_si256(mag, sign));
    }
    unsigned r = (unsigned)_mm256_movemask_epi8(bad) & 0xAAAAAAAAu;
    return r | pass_d_scalar(dst + 2 * i, sym + i, b + 2 * i, m - i);
}

AVX2 static void float16_merge_avx2(uint8_t *dst, const uint8_t *top, const uint8_t *low, size_t ne) {
    size_t i = 0;
    for (; i + 32 <= ne; i += 32) {
        __m256i t = _mm256_permute4x64_epi64(_mm256_loadu_si256((const __m256i *)(const void *)(top + i)), 0xD8);
        __m256i l = _mm256_permute4x64_epi64(_mm256_loadu_si256((const __m256i *)(const void *)(low + i)), 0xD8);
        __m256i a = _mm256_unpacklo_epi8(l, t), c = _mm256_unpackhi_epi8(l, t);
        a = _mm256_or_si256(_mm256_srli_epi16(a, 1), _mm256_slli_epi16(a, 15));
        c = _mm256_or_si256(_mm256_srli_epi16(c, 1), _mm256_slli_epi16(c, 15));
        _mm256_storeu_si256((__m256i *)(void *)(dst + 2 * i), a);
        _mm256_storeu_si256((__m256i *)(void *)(dst + 2 * i + 32), c);
    }
    float16_merge_scalar(dst + 2 * i, top + i, low + i, ne - i);
}
#endif

int hma__pc16_decode(int diff, unsigned ebits, const uint8_t *src, size_t len, const uint8_t *b, uint8_t *dst,
                     size_t n, hma__pc16_scratch *sc, int isa, const char **why) {
    const size_t ne = n / 2;
    const size_t head = diff ? HEAD_DIFF : 4;
    if (len < head) {
        *why = "16-bit chunk header cut short";
        return HMA_ERR_CORRUPT;
    }
    if (hma__ld32(src) != ne) {
        *why = "payload codes another element count";
        return HMA_ERR_CORRUPT;
    }
    uint8_t *sym = sc->sym;
    size_t blk;
    hma__huf8_runs runs = {RUN_SYM, diff ? src[5] : 0};
    if (diff && runs.byte != NO_RUNS && runs.byte >= RUN_SYM) {
        *why = "run symbol out of range";
        return HMA_ERR_CORRUPT;
    }
    const hma__huf8_runs *rp = diff && runs.byte != NO_RUNS ? &runs : NULL;
    if (hma__huf8_decode(src + head, len - head, sym, ne, &sc->tab, isa, rp, &blk, why)) return HMA_ERR_CORRUPT;
    size_t at = head + blk;
    if (!diff) {
        if (len - at != ne) {
            *why = "low-byte plane size differs from the element count";
            return HMA_ERR_CORRUPT;
        }
#if PC16_X86
        if (isa >= 2) float16_merge_avx2(dst, sym, src + at, ne);
        else
#endif
            float16_merge_scalar(dst, sym, src + at, ne);
        return 0;
    }
    const unsigned K = src[4], esh = 15 - ebits, emask = (1u << ebits) - 1;
    size_t start[NS], slen[NS], lo[NS], hi[NS];
    if (!(at = hma__huf_streams(src, len, at, start, slen, why))) return HMA_ERR_CORRUPT;
    if (at != len) {
        *why = "bytes left over after the last raw bit stream";
        return HMA_ERR_CORRUPT;
    }
    uint8_t *nr = sc->nr;
    uint32_t *gp = sc->gp;
    /* stream s keeps its group positions from gp + lo / GROUP + s: room for
     * ceil(m / GROUP) each, ne / GROUP + NS in all */
    for (unsigned s = 0; s < NS; s++) {
        hma__huf_quarter(ne, s, &lo[s], &hi[s]);
        size_t m = hi[s] - lo[s];
        uint64_t bits;
#if PC16_X86
        if (isa >= 2)
            bits = pass_b_avx2(sym + lo[s], b + 2 * lo[s], m, K, esh, emask, nr + lo[s], gp + lo[s] / GROUP + s);
        else
#endif
#if PC16_VEC
            bits = pass_b_vec(sym + lo[s], b + 2 * lo[s], m, K, esh, emask, nr + lo[s], gp + lo[s] / GROUP + s);
#else
            bits = pass_b_scalar(sym + lo[s], b + 2 * lo[s], m, K, esh, emask, nr + lo[s], gp + lo[s] / GROUP + s);
#endif
        if (bits == UINT64_MAX) {
            *why = "symbol gives a raw bit count outside 0..15";
            return HMA_ERR_CORRUPT;
        }
        if ((bits + 7) / 8 != slen[s]) {
            *why = "raw bit stream length differs from the bits its elements use";
            return HMA_ERR_CORRUPT;
        }
    }
    for (unsigned s = 0; s < NS; s++) {
        size_t m = hi[s] - lo[s], done = 0;
        uint8_t *z = dst + 2 * lo[s];
        const uint32_t *g = gp + lo[s] / GROUP + s;
#if PC16_X86
        if (isa >= 2) done = pass_c_avx2(src + start[s], len - start[s], nr + lo[s], g, m, z);
#endif
        /* the rest, byte-checked, from the next group's position */
        if (done < m)
            pass_c_scalar(src + start[s], slen[s], g[done / GROUP], nr + lo[s] + done, m - done, z + 2 * done);
    }
    unsigned bad;
#if PC16_X86
    if (isa >= 2) bad = pass_d_avx2(dst, sym, b, ne);
    else
#endif
#if PC16_VEC
        bad = pass_d_vec(dst, sym, b, ne);
#else
        bad = pass_d_scalar(dst, sym, b, ne);
#endif
    if (bad) {
        *why = "difference takes the magnitude outside 15 bits";
        return HMA_ERR_CORRUPT;
    }
    return 0;
}
