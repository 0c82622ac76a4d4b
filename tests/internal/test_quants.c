/* test_quants.c - each ggml dequantizer (formats/quants.c) against a
 * straightforward per-element reimplementation of ggml's formula
 * (ggml-org/ggml src/ggml-quants.c), on random hand-made blocks: bit-exact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "formats/quants.h"
#include "merge/kernels.h"

static uint32_t rng = 12345;
static unsigned rnd(void) {
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}
static float h(const unsigned char *p) { return hma__f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }
static void put_half(unsigned char *p) { /* a finite half in about [2^-10, 2) */
    uint16_t v = (uint16_t)(0x1400 + rnd() % 0x2800);
    if (rnd() & 1) v |= 0x8000;
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static int bit(const unsigned char *q, int i) { return q[i / 8] >> (i % 8) & 1; }
/* get_scale_min_k4: 6-bit scale and min of sub-block j (0..7) */
static void sm(const unsigned char *q, int j, int *s, int *m) {
    if (j < 4) {
        *s = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *s = (q[j + 4] & 15) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

/* Element e of one block, by the formula. */
static float ref(int type, const unsigned char *b, int e) {
    int s, m;
    switch (type) {
    case HMA__GGML_Q4_0: return (float)(((e < 16 ? b[2 + e] : b[2 + e - 16] >> 4) & 15) - 8) * h(b);
    case HMA__GGML_Q4_1: return (float)((e < 16 ? b[4 + e] : b[4 + e - 16] >> 4) & 15) * h(b) + h(b + 2);
    case HMA__GGML_Q5_0: return (float)((((e < 16 ? b[6 + e] : b[6 + e - 16] >> 4) & 15) | bit(b + 2, e) << 4) - 16) * h(b);
    case HMA__GGML_Q5_1: return (float)(((e < 16 ? b[8 + e] : b[8 + e - 16] >> 4) & 15) | bit(b + 4, e) << 4) * h(b) + h(b + 2);
    case HMA__GGML_Q8_0: return (float)(int8_t)b[2 + e] * h(b);
    case HMA__GGML_Q4_K: {
        int sub = e / 32, l = e % 32, q = b[16 + (sub / 2) * 32 + l] >> (4 * (sub % 2)) & 15;
        sm(b + 4, sub, &s, &m);
        return h(b) * (float)s * (float)q - h(b + 2) * (float)m;
    }
    case HMA__GGML_Q5_K: {
        int sub = e / 32, l = e % 32, q = (b[48 + (sub / 2) * 32 + l] >> (4 * (sub % 2)) & 15) + 16 * (b[16 + l] >> sub & 1);
        sm(b + 4, sub, &s, &m);
        return h(b) * (float)s * (float)q - h(b + 2) * (float)m;
    }
    case HMA__GGML_Q6_K: {
        int n = e / 128, r = e % 128, l = r % 32, qu = r / 32;
        int lo = b[n * 64 + l + (qu & 1) * 32] >> (qu >= 2 ? 4 : 0) & 15;
        int hi = b[128 + n * 32 + l] >> (2 * qu) & 3;
        int sc = (int8_t)b[192 + n * 8 + l / 16 + 2 * qu];
        return h(b + 208) * (float)sc * (float)((lo | hi << 4) - 32);
    }
    }
    return 0;
}

static void check(int type) {
    unsigned bs = hma__ggml_blck_size(type), ts = hma__ggml_type_size(type);
    enum { NB = 40 };
    unsigned char *blk = malloc(NB * ts);
    float *y = malloc(NB * bs * sizeof *y);
    for (int rep = 0; rep < 20; rep++) {
        for (unsigned i = 0; i < NB * ts; i++) blk[i] = (unsigned char)rnd();
        for (unsigned i = 0; i < NB; i++) {
            unsigned char *b = blk + i * ts;
            if (type == HMA__GGML_Q6_K) put_half(b + 208);
            else put_half(b);
            if (type == HMA__GGML_Q4_1 || type == HMA__GGML_Q5_1 || type == HMA__GGML_Q4_K || type == HMA__GGML_Q5_K) put_half(b + 2);
        }
        hma__dequant_blocks(type, blk, NB, y);
        for (unsigned i = 0; i < NB; i++)
            for (unsigned e = 0; e < bs; e++) {
                float want = ref(type, blk + i * ts, (int)e);
                if (memcmp(&want, &y[i * bs + e], 4))
                    fail_msg("%s block %u element %u: %.9g, expected %.9g", hma__ggml_type_name(type), i, e, (double)y[i * bs + e], (double)want);
            }
    }
    free(blk);
    free(y);
}

static void test_sizes(void **state) {
    (void)state; /* ggml-common.h static_asserts */
    assert_int_equal(hma__ggml_type_size(HMA__GGML_Q4_0), 18);
    assert_int_equal(hma__ggml_type_size(HMA__GGML_Q4_1), 20);
    assert_int_equal(hma__ggml_type_size(HMA__GGML_Q5_0), 22);
    assert_int_equal(hma__ggml_type_size(HMA__GGML_Q5_1), 24);
    assert_int_equal(hma__ggml_type_size(HMA__GGML_Q8_0), 34);
    assert_int_equal(hma__ggml_type_size(HMA__GGML_Q4_K), 144);
    assert_int_equal(hma__ggml_type_size(HMA__GGML_Q5_K), 176);
    assert_int_equal(hma__ggml_type_size(HMA__GGML_Q6_K), 210);
    assert_int_equal(hma__ggml_blck_size(HMA__GGML_Q6_K), 256);
    assert_int_equal(hma__ggml_blck_size(10), 0); /* q2_K: not read */
}
static void test_q4_0(void **s) { (void)s; check(HMA__GGML_Q4_0); }
static void test_q4_1(void **s) { (void)s; check(HMA__GGML_Q4_1); }
static void test_q5_0(void **s) { (void)s; check(HMA__GGML_Q5_0); }
static void test_q5_1(void **s) { (void)s; check(HMA__GGML_Q5_1); }
static void test_q8_0(void **s) { (void)s; check(HMA__GGML_Q8_0); }
static void test_q4_k(void **s) { (void)s; check(HMA__GGML_Q4_K); }
static void test_q5_k(void **s) { (void)s; check(HMA__GGML_Q5_K); }
static void test_q6_k(void **s) { (void)s; check(HMA__GGML_Q6_K); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes), cmocka_unit_test(test_q4_0), cmocka_unit_test(test_q4_1),
        cmocka_unit_test(test_q5_0),  cmocka_unit_test(test_q5_1), cmocka_unit_test(test_q8_0),
        cmocka_unit_test(test_q4_k),  cmocka_unit_test(test_q5_k), cmocka_unit_test(test_q6_k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
