/* test_pack_codec.c - the pack's per-chunk coding: xxhash64 against the
 * published test vectors (one-shot and streaming), the ordered-integer and
 * zig-zag maps (bijective, monotone), every chunk method round-tripping every
 * bit pattern (the 16-bit methods with their portable and SIMD loops, the
 * generic ones with shifted elements and one-symbol contexts), compression where there is something to gain, and malformed
 * payloads (truncated, damaged headers, random bytes) rejected or decoded
 * within bounds, never crashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pack/codec.h"
#include "internal.h"

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_xxh64_vectors(void **state) {
    (void)state;
    /* Published XXH64 values (seed 0). */
    assert_true(hma__xxh64("", 0, 0) == 0xEF46DB3751D8E999ull);
    assert_true(hma__xxh64("a", 1, 0) == 0xD24EC4F1A98C6E5Bull);
    assert_true(hma__xxh64("abc", 3, 0) == 0x44BC2CF5AD770999ull);
    assert_true(hma__xxh64("foo", 3, 0) == 0x33BF00A859C4BA3Full);
    assert_true(hma__xxh64("abcdefghijklmnopqrstuvwxyz12345", 31, 0) == 0x467605901B01D6F6ull);
    assert_true(hma__xxh64("0123456789abcdefghijklmnopqrstuvwxyz", 36, 0) == 0x69196C1B3AF0BFF9ull);
    assert_true(hma__xxh64("", 0, 668718853) == 0x04E830582A31A119ull);
    assert_true(hma__xxh64("a", 1, 191961062) == 0x6E05BA2887C97977ull);
    /* streaming in random pieces gives the one-shot value */
    unsigned char buf[1000];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)rnd();
    for (size_t len = 0; len <= sizeof buf; len += 37) {
        for (int trial = 0; trial < 4; trial++) {
            hma__xxh64_state st;
            hma__xxh64_init(&st, 7);
            size_t pos = 0;
            while (pos < len) {
                size_t take = 1 + rnd() % 70;
                if (take > len - pos) take = len - pos;
                hma__xxh64_update(&st, buf + pos, take);
                pos += take;
            }
            assert_true(hma__xxh64_digest(&st) == hma__xxh64(buf, len, 7));
        }
    }
}

static void test_ord_zigzag(void **state) {
    (void)state;
    static const unsigned widths[] = {16, 32, 64};
    for (int w = 0; w < 3; w++) {
        unsigned bits = widths[w];
        uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
        for (int i = 0; i < 20000; i++) {
            uint64_t u = rnd() & mask;
            assert_true(hma__pc_unord(hma__pc_ord(u, bits), bits) == u);
            assert_true(hma__pc_unzigzag(hma__pc_zigzag(u, bits), bits) == u);
        }
        /* zigzag: 0, -1, 1, -2 -> 0, 1, 2, 3 */
        assert_true(hma__pc_zigzag(0, bits) == 0);
        assert_true(hma__pc_zigzag(mask, bits) == 1);
        assert_true(hma__pc_zigzag(1, bits) == 2);
        assert_true(hma__pc_zigzag(mask - 1, bits) == 3);
    }
    /* ord is monotone in float order (F32, non-NaN): -inf < -1 < -0 < +0 < 1 < inf */
    static const uint32_t inc[] = {0xFF800000u, 0xBF800000u, 0x80000001u, 0x80000000u,
                                   0x00000000u, 0x00000001u, 0x3F800000u, 0x7F800000u};
    for (int i = 0; i + 1 < 8; i++) assert_true(hma__pc_ord(inc[i], 32) < hma__pc_ord(inc[i + 1], 32));
}

/* Fill n elements of esize bytes: special values, values near the base, noise. */
static void fill(uint8_t *t, const uint8_t *base, size_t nb, unsigned esize, int mode) {
    for (size_t i = 0; i < nb; i += esize) {
        uint64_t v = 0;
        if (base)
            for (unsigned k = 0; k < esize; k++) v |= (uint64_t)base[i + k] << (8 * k);
        switch (mode) {
        case 0: v = rnd(); break;              /* every bit pattern */
        case 1: v += rnd() % 7 - 3; break;     /* a few ulps from the base */
        case 2: v = (rnd() % 4) ? v : rnd(); break;
        case 4: v += rnd() % 8 ? 0 : 1; break; /* mostly unchanged: DIFF16's run codes */
        default: v = 0; break;                 /* all zero */
        }
        if (i / esize % 11 == 0) v = ~0ull;   /* NaN with every payload bit set */
        if (i / esize % 13 == 0) v = 1;       /* smallest subnormal */
        for (unsigned k = 0; k < esize; k++) t[i + k] = (uint8_t)(v >> (8 * k));
    }
}

/* The base a method takes (DIFF, DIFF16), else NULL; whether it applies. */
static const uint8_t *base_for(int m, const uint8_t *b) {
    return m == HMA__PC_DIFF || m == HMA__PC_DIFF16 ? b : NULL;
}
static int applies(int m, hma__pc_fmt f) {
    if (m >= HMA__PC_FLOAT && f.esize == 1) return 0;
    if ((m == HMA__PC_DIFF16 || m == HMA__PC_FLOAT16) && f.esize != 2) return 0;
    return 1;
}
static int is_diff(int m) { return m == HMA__PC_DIFF || m == HMA__PC_DIFF16; }

static void test_chunk_round_trips(void **state) {
    (void)state;
    static const hma__pc_fmt fmts[] = {{1, 0}, {2, 8}, {2, 5}, {4, 8}, {8, 11}, {2, 0}, {8, 0}};
    static const size_t sizes[] = {0, 8, 24, 1000, 65536};
    hma__pc_ctx *c = NULL;
    assert_int_equal(hma__pc_ctx_new(&c, 65536), 0);
    size_t cap = hma__pc_bound(65536);
    uint8_t *src = malloc(65536), *base = malloc(65536), *dst = malloc(cap), *out = malloc(65536);
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t n = sizes[s] - sizes[s] % fmts[f].esize;
            for (int mode = 0; mode < 5; mode++) {
                fill(base, NULL, n, fmts[f].esize, 0);
                fill(src, base, n, fmts[f].esize, mode);
                for (int m = 0; m < HMA__PC_METHOD_COUNT; m++) {
                    if (!applies(m, fmts[f])) continue;
                    const uint8_t *bp = base_for(m, base);
                    size_t len = 0;
                    int used = -1;
                    assert_int_equal(hma__pc_encode(c, m, fmts[f], src, bp, n, 3, dst, cap, &len, &used), 0);
                    assert_true(used == m || used == HMA__PC_STORE);
                    /* values near the base must take the entropy path */
                    if (is_diff(m) && (mode == 1 || mode == 2 || mode == 4) && n >= 1000 && used != m)
                        fail_msg("fmt %zu size %zu mode %d: stored", f, n, mode);
                    /* no symbol covers half of these elements: no run codes (byte 5) */
                    if (m == HMA__PC_DIFF16 && used == m && mode == 1) assert_true(dst[5] == 0xFF);
                    assert_true(len <= n || used != HMA__PC_STORE);
                    const char *why = NULL;
                    memset(out, 0x5A, 65536);
                    assert_int_equal(hma__pc_decode(c, used, fmts[f], dst, len, bp, out, n, &why), 0);
                    if (n) assert_memory_equal(src, out, n);
                    /* every truncation of a coded payload is refused */
                    if (used != HMA__PC_STORE && n <= 1000)
                        for (size_t l = 0; l < len; l++)
                            assert_int_equal(hma__pc_decode(c, used, fmts[f], dst, l, bp, out, n, &why),
                                             HMA_ERR_CORRUPT);
                }
            }
        }
    }
    /* the same payload may not claim another size, method or a missing base */
    fill(base, NULL, 1000, 2, 0);
    fill(src, base, 1000, 2, 1);
    size_t len;
    int used;
    const char *why;
    assert_int_equal(hma__pc_encode(c, HMA__PC_DIFF, (hma__pc_fmt){2, 8}, src, base, 1000, 3, dst, cap,
                                    &len, &used), 0);
    assert_int_equal(used, HMA__PC_DIFF);
    assert_int_equal(hma__pc_decode(c, used, (hma__pc_fmt){2, 8}, dst, len, base, out, 998, &why), HMA_ERR_CORRUPT);
    assert_int_equal(hma__pc_decode(c, used, (hma__pc_fmt){2, 8}, dst, len, NULL, out, 1000, &why), HMA_ERR_CORRUPT);
    assert_int_equal(hma__pc_decode(c, 99, (hma__pc_fmt){2, 8}, dst, len, base, out, 1000, &why), HMA_ERR_CORRUPT);
    assert_int_equal(hma__pc_decode(c, HMA__PC_STORE, (hma__pc_fmt){2, 8}, dst, len, base, out, 1000, &why),
                     HMA_ERR_CORRUPT);
    /* close values against the base compress well below the raw size */
    assert_true(len < 1000);
    hma__pc_ctx_free(c);
    free(src);
    free(base);
    free(dst);
    free(out);
}


/* Exact-size copies so that ASan / valgrind see any access outside them. */
static int decode_exact(hma__pc_ctx *c, int m, hma__pc_fmt f, const uint8_t *p, size_t len, const uint8_t *base,
                        size_t n, uint8_t *expect) {
    uint8_t *src = malloc(len ? len : 1), *out = malloc(n ? n : 1);
    assert_non_null(src);
    assert_non_null(out);
    if (len) memcpy(src, p, len);
    const char *why = NULL;
    int rc = hma__pc_decode(c, m, f, src, len, base, out, n, &why);
    assert_non_null(why);
    if (rc) {
        assert_int_equal(rc, HMA_ERR_CORRUPT);
        assert_true(why[0] != 0);
    } else if (expect) {
        memcpy(expect, out, n);
    }
    free(src);
    free(out);
    return rc;
}

/* BF16 weights near a base: one chunk for each path and element layout. */
static void near_weights(uint8_t *t, uint8_t *b, size_t nelem, unsigned esize) {
    for (size_t i = 0; i < nelem; i++) {
        float x = (float)((double)(rnd() % 20001) - 10000.0) / 200000.0f, y = x + (float)((double)(rnd() % 201) - 100.0) / 1e6f;
        uint32_t ux, uy;
        memcpy(&ux, &x, 4);
        memcpy(&uy, &y, 4);
        if (esize == 2) {
            ux >>= 16;
            uy >>= 16;
        } else {
            ux &= 0xFFFF0000u; /* BF16 weights stored as F32 */
            uy &= 0xFFFF0000u;
        }
        for (unsigned k = 0; k < esize; k++) {
            b[i * esize + k] = (uint8_t)(ux >> (8 * k));
            t[i * esize + k] = (uint8_t)(uy >> (8 * k));
        }
    }
}

static void test_paths_and_ratios(void **state) {
    (void)state;
    enum { NE = 16384 };
    hma__pc_ctx *c = NULL, *c2 = NULL;
    assert_int_equal(hma__pc_ctx_new(&c, NE * 4), 0);
    assert_int_equal(hma__pc_ctx_new(&c2, NE * 4), 0);
    size_t cap = hma__pc_bound(NE * 4), len[2][2], len16[2] = {0, 0};
    uint8_t *t = malloc(NE * 4), *b = malloc(NE * 4), *d = malloc(cap), *d2 = malloc(cap), *out = malloc(NE * 4);
    for (unsigned e = 0; e < 2; e++) {
        unsigned es = e ? 4 : 2;
        hma__pc_fmt f = {es, 8};
        rng = 0x9E3779B97F4A7C15ull; /* the same weights as BF16 and as F32 */
        near_weights(t, b, NE, es);
        for (int m = HMA__PC_FLOAT; m <= HMA__PC_DIFF; m++) {
            const uint8_t *bp = m == HMA__PC_DIFF ? b : NULL;
            size_t l = 0, l2 = 0;
            int used = -1, used2 = -1;
            assert_int_equal(hma__pc_encode(c, m, f, t, bp, NE * es, 1, d, cap, &l, &used), 0);
            assert_int_equal(used, m);
            /* deterministic: another context gives the same bytes */
            assert_int_equal(hma__pc_encode(c2, m, f, t, bp, NE * es, 1, d2, cap, &l2, &used2), 0);
            assert_int_equal(l, l2);
            assert_memory_equal(d, d2, l);
            /* payload byte 0 is the shift: 16 for BF16 values stored as F32 */
            assert_int_equal(d[0], es == 4 ? 16 : 0);
            assert_int_equal(decode_exact(c, m, f, d, l, bp, NE * es, out), 0);
            assert_memory_equal(out, t, NE * es);
            len[e][m - HMA__PC_FLOAT] = l;
        }
        /* the 16-bit methods: the same bytes from the portable and the
         * SIMD code; either decoder reads them */
        for (int m = HMA__PC_DIFF16; m <= HMA__PC_FLOAT16 && es == 2; m++) {
            const uint8_t *bp = base_for(m, b);
            size_t l = 0, l2 = 0;
            int used = -1, used2 = -1;
            hma__pc_ctx_set_isa(c2, 0);
            assert_int_equal(hma__pc_encode(c, m, f, t, bp, NE * es, 1, d, cap, &l, &used), 0);
            assert_int_equal(hma__pc_encode(c2, m, f, t, bp, NE * es, 1, d2, cap, &l2, &used2), 0);
            assert_int_equal(used, m);
            assert_int_equal(l, l2);
            assert_memory_equal(d, d2, l);
            assert_int_equal(decode_exact(c, m, f, d, l, bp, NE * es, out), 0);
            assert_memory_equal(out, t, NE * es);
            assert_int_equal(decode_exact(c2, m, f, d, l, bp, NE * es, out), 0);
            assert_memory_equal(out, t, NE * es);
            len16[m - HMA__PC_DIFF16] = l;
        }
    }
    /* a light fine-tune: 7 in 8 weights unchanged. DIFF16 takes its run
     * codes (byte 5 names the run symbol), and both decoders read them back */
    {
        hma__pc_fmt f = {2, 8};
        near_weights(t, b, NE, 2);
        memcpy(t, b, NE * 2);
        for (size_t i = 0; i < NE; i++)
            if (rnd() % 8 == 0) t[2 * i] ^= 1;
        size_t l = 0;
        int used = -1;
        assert_int_equal(hma__pc_encode(c, HMA__PC_DIFF16, f, t, b, NE * 2, 1, d, cap, &l, &used), 0);
        assert_int_equal(used, HMA__PC_DIFF16);
        assert_true(d[5] != 0xFF);
        /* under a bit a weight (0.95 here), which one code per weight cannot reach */
        assert_true(l * 8 < NE);
        assert_int_equal(decode_exact(c, used, f, d, l, b, NE * 2, out), 0);
        assert_memory_equal(out, t, NE * 2);
        assert_int_equal(decode_exact(c2, used, f, d, l, b, NE * 2, out), 0);
        assert_memory_equal(out, t, NE * 2);
        /* a run symbol out of range, and one that is valid but wrong */
        d[5] = 62;
        assert_int_equal(decode_exact(c, used, f, d, l, b, NE * 2, NULL), HMA_ERR_CORRUPT);
        d[5] = 0xFF; /* no runs: codes 62/63 are then symbols no element can have */
        assert_int_equal(decode_exact(c, used, f, d, l, b, NE * 2, NULL), HMA_ERR_CORRUPT);
    }
    /* DIFF16 gains from the base as DIFF does: on these 1-2 ulp differences
     * it is 7-11 % larger than DIFF, depending on the draw (one Huffman code
     * for every exponent instead of 16; on the toy pair 1.4 %; the table in
     * docs/performance.md), FLOAT16 costs what FLOAT does */
    assert_true(len16[0] < len[0][0] / 2);
    assert_true(len16[0] < len[0][1] * 115 / 100);
    assert_true(len16[1] <= len[0][0] + 64);
    /* the base helps; the F32 copies cost about what the BF16 ones do */
    assert_true(len[0][1] < len[0][0]);
    assert_true(len[0][0] < NE * 2 * 3 / 4);
    assert_true(len[1][0] < len[0][0] + 64);
    assert_true(len[1][1] < len[0][1] + 64);
    /* a constant tensor: one symbol, no bits per element */
    for (size_t i = 0; i < NE; i++) t[2 * i] = 0x80, t[2 * i + 1] = 0x3F;
    size_t l;
    int used;
    assert_int_equal(hma__pc_encode(c, HMA__PC_FLOAT, (hma__pc_fmt){2, 8}, t, NULL, NE * 2, 1, d, cap, &l, &used), 0);
    assert_int_equal(used, HMA__PC_FLOAT);
    assert_true(l < NE / 6); /* 0x3F80: shift 7, one raw bit each */
    assert_int_equal(decode_exact(c, used, (hma__pc_fmt){2, 8}, d, l, NULL, NE * 2, out), 0);
    assert_memory_equal(out, t, NE * 2);
    hma__pc_ctx_free(c);
    hma__pc_ctx_free(c2);
    free(t);
    free(b);
    free(d);
    free(d2);
    free(out);
}

static void test_malformed_payloads(void **state) {
    (void)state;
    enum { NE = 2000 };
    hma__pc_ctx *c = NULL;
    assert_int_equal(hma__pc_ctx_new(&c, NE * 8), 0);
    size_t cap = hma__pc_bound(NE * 8);
    uint8_t *t = malloc(NE * 8), *b = malloc(NE * 8), *d = malloc(cap), *x = malloc(cap);
    static const hma__pc_fmt fmts[] = {{2, 8}, {2, 5}, {4, 8}, {8, 11}};
    for (size_t fi = 0; fi < 4; fi++) {
        hma__pc_fmt f = fmts[fi];
        size_t n = NE * f.esize;
        fill(b, NULL, n, f.esize, 0);
        fill(t, b, n, f.esize, 2);
        for (int m = HMA__PC_FLOAT; m < HMA__PC_METHOD_COUNT; m++) {
            if (!applies(m, f)) continue;
            const uint8_t *bp = base_for(m, b);
            size_t l;
            int used;
            assert_int_equal(hma__pc_encode(c, m, f, t, bp, n, 1, d, cap, &l, &used), 0);
            if (used == HMA__PC_STORE) continue;
            /* every byte damaged in turn: an error or n bytes, nothing else */
            for (size_t i = 0; i < l; i++) {
                memcpy(x, d, l);
                x[i] ^= (uint8_t)(1u << (i % 8));
                decode_exact(c, m, f, x, l, bp, n, NULL);
                x[i] = (uint8_t)rnd();
                decode_exact(c, m, f, x, l, bp, n, NULL);
            }
            if (m == HMA__PC_DIFF16 || m == HMA__PC_FLOAT16) {
                /* the element count, a symbol table with a gap, one byte more or less */
                memcpy(x, d, l);
                x[0] ^= 1;
                assert_int_equal(decode_exact(c, m, f, x, l, bp, n, NULL), HMA_ERR_CORRUPT);
                memcpy(x, d, l);
                x[l] = 0;
                assert_int_equal(decode_exact(c, m, f, x, l + 1, bp, n, NULL), HMA_ERR_CORRUPT);
                assert_int_equal(decode_exact(c, m, f, x, l - 1, bp, n, NULL), HMA_ERR_CORRUPT);
                assert_int_equal(decode_exact(c, m, f, d, l, bp, n - 4 * f.esize, NULL), HMA_ERR_CORRUPT);
                continue;
            }
            /* header fields out of range */
            memcpy(x, d, l);
            x[0] = (uint8_t)(8 * f.esize - 8); /* shift leaving fewer than 9 bits */
            assert_int_equal(decode_exact(c, m, f, x, l, bp, n, NULL), HMA_ERR_CORRUPT);
            memcpy(x, d, l);
            x[1] = 0; /* no context */
            assert_int_equal(decode_exact(c, m, f, x, l, bp, n, NULL), HMA_ERR_CORRUPT);
            x[1] = 17; /* too many */
            assert_int_equal(decode_exact(c, m, f, x, l, bp, n, NULL), HMA_ERR_CORRUPT);
            /* one byte more or less than the streams use */
            memcpy(x, d, l);
            x[l] = 0;
            assert_int_equal(decode_exact(c, m, f, x, l + 1, bp, n, NULL), HMA_ERR_CORRUPT);
            assert_int_equal(decode_exact(c, m, f, x, l - 1, bp, n, NULL), HMA_ERR_CORRUPT);
            /* a payload for more or fewer elements */
            assert_int_equal(decode_exact(c, m, f, d, l, bp, n - 4 * f.esize, NULL), HMA_ERR_CORRUPT);
        }
        /* random payloads */
        for (int r = 0; r < 300; r++) {
            size_t l = rnd() % 600;
            for (size_t i = 0; i < l; i++) x[i] = (uint8_t)rnd();
            size_t ne = 1 + rnd() % 64;
            if (l > 6) { /* a plausible start, so that decoding gets further */
                x[0] = (uint8_t)(rnd() % 8), x[1] = (uint8_t)(1 + rnd() % 3);
                x[2] = (uint8_t)ne, x[3] = x[4] = x[5] = 0;
            }
            decode_exact(c, HMA__PC_FLOAT, f, x, l, NULL, ne * f.esize, NULL);
            decode_exact(c, HMA__PC_DIFF, f, x, l, b, ne * f.esize, NULL);
            if (f.esize == 2 && l > 6) { /* the 16-bit layouts start with the element count */
                x[0] = (uint8_t)ne, x[1] = x[2] = x[3] = 0;
                x[5] = (uint8_t)(rnd() % 64);
                x[6] = (uint8_t)(rnd() % 64);
                decode_exact(c, HMA__PC_FLOAT16, f, x, l, NULL, ne * f.esize, NULL);
                decode_exact(c, HMA__PC_DIFF16, f, x, l, b, ne * f.esize, NULL);
            }
        }
    }
    hma__pc_ctx_free(c);
    free(t);
    free(b);
    free(d);
    free(x);
}

/* 16-bit chunks of every small element count, and some larger ones: the
 * decoder's fast rounds hand over to its careful tail at every point. */
static void test_fast_path_handover(void **state) {
    (void)state;
    enum { MAXNE = 5000 };
    static const hma__pc_fmt fmts[] = {{2, 8}, {2, 5}};
    hma__pc_ctx *c = NULL, *c0 = NULL;
    assert_int_equal(hma__pc_ctx_new(&c, MAXNE * 2), 0);
    assert_int_equal(hma__pc_ctx_new(&c0, MAXNE * 2), 0);
    hma__pc_ctx_set_isa(c0, 0); /* the portable loops */
    size_t cap = hma__pc_bound(MAXNE * 2);
    uint8_t *t = malloc(MAXNE * 2), *b = malloc(MAXNE * 2), *d = malloc(cap), *out = malloc(MAXNE * 2);
    for (size_t fi = 0; fi < 2; fi++)
        for (size_t ne = 1; ne <= MAXNE; ne = ne < 260 ? ne + 1 : ne * 3 / 2 + 7)
            for (int mode = 1; mode <= 4; mode += mode == 2 ? 2 : 1) {
                size_t n = 2 * ne;
                fill(b, NULL, n, 2, 0);
                fill(t, b, n, 2, mode);
                for (int m = HMA__PC_FLOAT; m < HMA__PC_METHOD_COUNT; m++) {
                    const uint8_t *bp = base_for(m, b);
                    size_t l;
                    int used;
                    assert_int_equal(hma__pc_encode(c, m, fmts[fi], t, bp, n, 1, d, cap, &l, &used), 0);
                    memset(out, 0xA5, n);
                    assert_int_equal(decode_exact(c, used, fmts[fi], d, l, bp, n, out), 0);
                    assert_memory_equal(t, out, n);
                    memset(out, 0xA5, n);
                    assert_int_equal(decode_exact(c0, used, fmts[fi], d, l, bp, n, out), 0);
                    assert_memory_equal(t, out, n);
                }
            }
    hma__pc_ctx_free(c);
    hma__pc_ctx_free(c0);
    free(t);
    free(b);
    free(d);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xxh64_vectors),
        cmocka_unit_test(test_ord_zigzag),
        cmocka_unit_test(test_chunk_round_trips),
        cmocka_unit_test(test_paths_and_ratios),
        cmocka_unit_test(test_malformed_payloads),
        cmocka_unit_test(test_fast_path_handover),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
