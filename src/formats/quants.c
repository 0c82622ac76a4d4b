/* quants.c - exact dequantization of ggml's block-quantized tensor types
 * (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) into float32. Each
 * function follows dequantize_row_* of ggml-org/ggml src/ggml-quants.c
 * operation for operation (compiled with -ffp-contract=off, as the whole
 * library is, so no fused multiply-add changes a rounding); block layouts are
 * those of src/ggml-common.h; sizes those of src/ggml.c's type_traits. */
#include "formats/quants.h"

#include "merge/kernels.h"

#include <string.h>

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK_K 256
#define K_SCALE_SIZE 12

static const struct {
    int type;
    const char *name;
    unsigned blck, size;
} types[] = {
    {HMA__GGML_F32, "f32", 1, 4},
    {HMA__GGML_F16, "f16", 1, 2},
    {HMA__GGML_BF16, "bf16", 1, 2},
    {HMA__GGML_Q4_0, "q4_0", QK4_0, 2 + QK4_0 / 2},                         /* d, qs[16] */
    {HMA__GGML_Q4_1, "q4_1", QK4_1, 4 + QK4_1 / 2},                         /* d, m, qs[16] */
    {HMA__GGML_Q5_0, "q5_0", QK5_0, 2 + 4 + QK5_0 / 2},                     /* d, qh[4], qs[16] */
    {HMA__GGML_Q5_1, "q5_1", QK5_1, 4 + 4 + QK5_1 / 2},                     /* d, m, qh[4], qs[16] */
    {HMA__GGML_Q8_0, "q8_0", QK8_0, 2 + QK8_0},                             /* d, qs[32] */
    {HMA__GGML_Q4_K, "q4_K", QK_K, 4 + K_SCALE_SIZE + QK_K / 2},            /* d, dmin, scales, qs */
    {HMA__GGML_Q5_K, "q5_K", QK_K, 4 + K_SCALE_SIZE + QK_K / 8 + QK_K / 2}, /* d, dmin, scales, qh, qs */
    {HMA__GGML_Q6_K, "q6_K", QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2},    /* ql, qh, scales, d */
};

static int find(int type) {
    for (int i = 0; i < (int)(sizeof types / sizeof types[0]); i++)
        if (types[i].type == type) return i;
    return -1;
}
unsigned hma__ggml_blck_size(int type) {
    int i = find(type);
    return i < 0 ? 0 : types[i].blck;
}
unsigned hma__ggml_type_size(int type) {
    int i = find(type);
    return i < 0 ? 0 : types[i].size;
}
const char *hma__ggml_type_name(int type) {
    int i = find(type);
    return i < 0 ? NULL : types[i].name;
}
int hma__ggml_is_quant(int type) { return hma__ggml_blck_size(type) > 1; }

static float h2f(const unsigned char *p) { /* GGML_FP16_TO_FP32 of a little-endian half */
    return hma__f16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

/* ggml-quants.c get_scale_min_k4 */
static void get_scale_min_k4(int j, const unsigned char *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = (uint8_t)(q[j] & 63);
        *m = (uint8_t)(q[j + 4] & 63);
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

static void q4_0(const unsigned char *b, float *y) { /* dequantize_row_q4_0, one block */
    const float d = h2f(b);
    const unsigned char *qs = b + 2;
    for (int j = 0; j < QK4_0 / 2; ++j) {
        const int x0 = (qs[j] & 0x0F) - 8;
        const int x1 = (qs[j] >> 4) - 8;
        y[j] = (float)x0 * d;
        y[j + QK4_0 / 2] = (float)x1 * d;
    }
}

static void q4_1(const unsigned char *b, float *y) { /* dequantize_row_q4_1 */
    const float d = h2f(b), m = h2f(b + 2);
    const unsigned char *qs = b + 4;
    for (int j = 0; j < QK4_1 / 2; ++j) {
        const int x0 = qs[j] & 0x0F;
        const int x1 = qs[j] >> 4;
        y[j] = (float)x0 * d + m;
        y[j + QK4_1 / 2] = (float)x1 * d + m;
    }
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void q5_0(const unsigned char *b, float *y) { /* dequantize_row_q5_0 */
    const float d = h2f(b);
    const uint32_t qh = le32(b + 2); /* memcpy of qh[4] on a little-endian host */
    const unsigned char *qs = b + 6;
    for (int j = 0; j < QK5_0 / 2; ++j) {
        const uint8_t xh_0 = (uint8_t)(((qh >> (j + 0)) << 4) & 0x10);
        const uint8_t xh_1 = (uint8_t)(((qh >> (j + 12))) & 0x10);
        const int32_t x0 = ((qs[j] & 0x0F) | xh_0) - 16;
        const int32_t x1 = ((qs[j] >> 4) | xh_1) - 16;
        y[j] = (float)x0 * d;
        y[j + QK5_0 / 2] = (float)x1 * d;
    }
}

static void q5_1(const unsigned char *b, float *y) { /* dequantize_row_q5_1 */
    const float d = h2f(b), m = h2f(b + 2);
    const uint32_t qh = le32(b + 4);
    const unsigned char *qs = b + 8;
    for (int j = 0; j < QK5_1 / 2; ++j) {
        const uint8_t xh_0 = (uint8_t)(((qh >> (j + 0)) << 4) & 0x10);
        const uint8_t xh_1 = (uint8_t)(((qh >> (j + 12))) & 0x10);
        const int x0 = (qs[j] & 0x0F) | xh_0;
        const int x1 = (qs[j] >> 4) | xh_1;
        y[j] = (float)x0 * d + m;
        y[j + QK5_1 / 2] = (float)x1 * d + m;
    }
}

static void q8_0(const unsigned char *b, float *y) { /* dequantize_row_q8_0 */
    const float d = h2f(b);
    for (int j = 0; j < QK8_0; ++j) y[j] = (float)(int8_t)b[2 + j] * d;
}

static void q4_k(const unsigned char *b, float *y) { /* dequantize_row_q4_K */
    const float d = h2f(b), min = h2f(b + 2);
    const unsigned char *scales = b + 4, *q = b + 4 + K_SCALE_SIZE;
    int is = 0;
    uint8_t sc, m;
    for (int j = 0; j < QK_K; j += 64) {
        get_scale_min_k4(is + 0, scales, &sc, &m);
        const float d1 = d * (float)sc, m1 = min * (float)m;
        get_scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * (float)sc, m2 = min * (float)m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * (float)(q[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * (float)(q[l] >> 4) - m2;
        q += 32;
        is += 2;
    }
}

static void q5_k(const unsigned char *b, float *y) { /* dequantize_row_q5_K */
    const float d = h2f(b), min = h2f(b + 2);
    const unsigned char *scales = b + 4, *qh = b + 4 + K_SCALE_SIZE, *ql = qh + QK_K / 8;
    int is = 0;
    uint8_t sc, m;
    unsigned u1 = 1, u2 = 2;
    for (int j = 0; j < QK_K; j += 64) {
        get_scale_min_k4(is + 0, scales, &sc, &m);
        const float d1 = d * (float)sc, m1 = min * (float)m;
        get_scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * (float)sc, m2 = min * (float)m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        ql += 32;
        is += 2;
        u1 <<= 2;
        u2 <<= 2;
    }
}

static void q6_k(const unsigned char *b, float *y) { /* dequantize_row_q6_K */
    const unsigned char *ql = b, *qh = b + QK_K / 2;
    const unsigned char *scb = b + QK_K / 2 + QK_K / 4;
    const float d = h2f(scb + QK_K / 16);
    for (int n = 0; n < QK_K; n += 128) {
        for (int l = 0; l < 32; ++l) {
            int is = l / 16;
            const int8_t q1 = (int8_t)(((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
            const int8_t q2 = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            const int8_t q3 = (int8_t)(((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            const int8_t q4 = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            y[l + 0] = d * (float)(int8_t)scb[is + 0] * (float)q1;
            y[l + 32] = d * (float)(int8_t)scb[is + 2] * (float)q2;
            y[l + 64] = d * (float)(int8_t)scb[is + 4] * (float)q3;
            y[l + 96] = d * (float)(int8_t)scb[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        scb += 8;
    }
}

void hma__dequant_blocks(int type, const unsigned char *src, size_t nblocks, float *dst) {
    void (*f)(const unsigned char *, float *);
    switch (type) {
    case HMA__GGML_Q4_0: f = q4_0; break;
    case HMA__GGML_Q4_1: f = q4_1; break;
    case HMA__GGML_Q5_0: f = q5_0; break;
    case HMA__GGML_Q5_1: f = q5_1; break;
    case HMA__GGML_Q8_0: f = q8_0; break;
    case HMA__GGML_Q4_K: f = q4_k; break;
    case HMA__GGML_Q5_K: f = q5_k; break;
    case HMA__GGML_Q6_K: f = q6_k; break;
    default: return;
    }
    const unsigned bs = hma__ggml_blck_size(type), ts = hma__ggml_type_size(type);
    for (size_t i = 0; i < nblocks; i++) f(src + i * ts, dst + i * bs);
}
