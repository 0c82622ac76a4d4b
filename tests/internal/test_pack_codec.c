/* test_pack_codec.c - the pack's per-chunk transforms: xxhash64 against the
 * published test vectors (one-shot and streaming), the ordered-integer and
 * zig-zag maps (bijective, monotone), byte planes and rotations, and every
 * chunk method round-tripping every bit pattern, with malformed payloads
 * rejected rather than decoded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pack_codec.h"
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

static void test_planes_and_rotations(void **state) {
    (void)state;
    static const unsigned es[] = {2, 4, 8};
    for (int e = 0; e < 3; e++) {
        size_t n = 33, nb = n * es[e];
        uint8_t *a = malloc(nb), *b = malloc(nb), *c = malloc(nb);
        for (size_t i = 0; i < nb; i++) a[i] = (uint8_t)rnd();
        hma__pc_planes_split(a, n, es[e], b);
        for (size_t i = 0; i < n; i++)
            for (unsigned k = 0; k < es[e]; k++) assert_int_equal(b[k * n + i], a[i * es[e] + k]);
        hma__pc_planes_join(b, n, es[e], c);
        assert_memory_equal(a, c, nb);
        memcpy(c, a, nb);
        hma__pc_rotl1(c, n, es[e]);
        hma__pc_rotr1(c, n, es[e]);
        assert_memory_equal(a, c, nb);
        free(a);
        free(b);
        free(c);
    }
    /* BF16 1.0 = 0x3F80: rotated left, its exponent 0x7F fills the high byte */
    uint8_t one[2] = {0x80, 0x3F};
    hma__pc_rotl1(one, 1, 2);
    assert_int_equal(one[1], 0x7F);
    assert_int_equal(one[0], 0x00);
    /* sign moves to bit 0 */
    uint8_t neg[2] = {0x80, 0xBF};
    hma__pc_rotl1(neg, 1, 2);
    assert_int_equal(neg[0], 0x01);
}

static void test_odiff_generic(void **state) {
    (void)state;
    static const unsigned es[] = {2, 4, 8};
    for (int e = 0; e < 3; e++) {
        size_t n = 257, nb = n * es[e];
        uint8_t *t = malloc(nb), *b = malloc(nb), *d = malloc(nb), *r = malloc(nb);
        for (size_t i = 0; i < nb; i++) t[i] = (uint8_t)rnd(), b[i] = (uint8_t)rnd();
        hma__pc_odiff_encode(t, b, n, es[e], d);
        hma__pc_odiff_decode(d, b, n, es[e], r);
        assert_memory_equal(t, r, nb);
        /* equal inputs give zero differences */
        hma__pc_odiff_encode(b, b, n, es[e], d);
        for (size_t i = 0; i < nb; i++) assert_int_equal(d[i], 0);
        free(t);
        free(b);
        free(d);
        free(r);
    }
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
        default: v = 0; break;                 /* all zero */
        }
        if (i / esize % 11 == 0) v = ~0ull;   /* NaN with every payload bit set */
        if (i / esize % 13 == 0) v = 1;       /* smallest subnormal */
        for (unsigned k = 0; k < esize; k++) t[i + k] = (uint8_t)(v >> (8 * k));
    }
}

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
            for (int mode = 0; mode < 4; mode++) {
                fill(base, NULL, n, fmts[f].esize, 0);
                fill(src, base, n, fmts[f].esize, mode);
                for (int m = 0; m < HMA__PC_METHOD_COUNT; m++) {
                    int sorted = m == HMA__PC_XOR_SORTED || m == HMA__PC_DIFF_SORTED;
                    int planes = m >= HMA__PC_PLANES;
                    if (planes && fmts[f].esize == 1) continue;
                    if (sorted && fmts[f].ebits == 0) continue;
                    const uint8_t *bp = m >= HMA__PC_XOR ? base : NULL;
                    size_t len = 0;
                    int used = -1;
                    assert_int_equal(hma__pc_encode(c, m, fmts[f], src, bp, n, 3, dst, cap, &len, &used), 0);
                    assert_true(used == m || used == HMA__PC_STORE);
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
    assert_int_equal(hma__pc_encode(c, HMA__PC_DIFF_SORTED, (hma__pc_fmt){2, 8}, src, base, 1000, 3, dst, cap,
                                    &len, &used), 0);
    assert_int_equal(used, HMA__PC_DIFF_SORTED);
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xxh64_vectors),
        cmocka_unit_test(test_ord_zigzag),
        cmocka_unit_test(test_planes_and_rotations),
        cmocka_unit_test(test_odiff_generic),
        cmocka_unit_test(test_chunk_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
