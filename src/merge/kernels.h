/*
 * kernels.h - libhma's arithmetic kernels (internal): weighted sums of
 * F16/BF16/F32/F64 chunks, dtype conversion, and dot-product statistics.
 *
 * Every kernel exists as a scalar reference (kernels.c) and as AVX2 and
 * AVX-512 versions (kernels_avx2.c, kernels_avx512.c, generated from the
 * shared template kernels_simd.h); all paths give identical bits. The
 * contract each path follows:
 *   - not wide, base = -1: acc = fl32(w0*x0); acc = fl32(acc + fl32(wi*xi)), i = 1..;
 *   - not wide, base = b:  d_i = fl32(xi - xb); the same sum over i != b of
 *     wi*d_i; result fl32(xb + acc) (just xb when there is no other input);
 *   - wide: the same in double;
 *   - then one round-to-nearest-even to the output dtype (double -> F16/BF16
 *     through round-to-odd float, see hma__f64_to_f32_odd);
 *   - a NaN result is stored as the output dtype's positive quiet NaN
 *     (0x7FC0, 0x7E00, 0x7FC00000, 0x7FF8000000000000): which NaN operand
 *     x86 propagates depends on the operand order, and compilers may commute
 *     additions, so payload and sign of a NaN result are not reproducible.
 * hma__kernel_convert (no arithmetic) keeps NaN signs and payloads the way
 * the hardware conversions do (see the scalar helpers).
 * The kernels assume the default MXCSR (round to nearest, no FTZ/DAZ).
 */
#ifndef HMA_KERNELS_H
#define HMA_KERNELS_H

#include "internal.h"

#include "core/cpu.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A kernel "path" is an hma_simd level (HMA_SIMD_SCALAR, _AVX2, _AVX512).
 * The CPU dispatch is core/cpu.h: hma__cpu_level() is the default path
 * (capped by the environment variable HMA_SIMD), hma__cpu_level_available()
 * says whether a path can run here. */
#define HMA__KPATH_COUNT 3 /* scalar, avx2, avx512 */

#define HMA_KMAX_INPUTS 64

typedef struct hma__combine {
    size_t n_in;                 /* 1..HMA_KMAX_INPUTS */
    const hma_dtype *in_dtype;   /* each F16, BF16, F32 or F64 */
    const void *const *in;       /* pointers to the first element of this chunk, one per input */
    const float *wf;             /* weights as float32 (used when !wide) */
    const double *wd;            /* weights as double (used when wide) */
    int base;                    /* -1: weighted sum; else index of the base input: delta form */
    int wide;                    /* 1: arithmetic in double (the caller sets it when any input is F64) */
    hma_dtype out_dtype;         /* F16, BF16, F32 or F64 */
    void *out;                   /* first output element of this chunk */
} hma__combine;

/* Combine n elements of op with `path` (which must be available). Returns 0,
 * or when check_finite and some input element is NaN/Inf, returns 1 and sets
 * *bad_input and *bad_elem to the first such (input index, element index) in
 * (element, input) order; outputs are then unspecified. Pointers may be
 * unaligned; the output must not overlap an input unless it is identical to
 * it (same pointer and dtype). Thread-safe (no shared state). */
int hma__kernel_combine(int path, const hma__combine *op, size_t n, int check_finite,
                        size_t *bad_input, size_t *bad_elem);

/* Convert n elements between any two of F16/BF16/F32/F64 with one correct
 * RNE rounding. Thread-safe. */
void hma__kernel_convert(int path, hma_dtype src_t, const void *src, hma_dtype dst_t, void *dst,
                         size_t n);

/* Statistics of a chunk for SLERP and diff: out[0] = sum x*y, out[1] = sum x*x,
 * out[2] = sum y*y, out[3] = sum (y-x)^2 (y-x taken in double), with x, y
 * converted exactly to double and products and sums in double via OpenBLAS
 * cblas_ddot over fixed sub-blocks of HMA_KSTATS_BLOCK elements added in order: deterministic for a
 * given chunk on a given machine (OpenBLAS picks its kernel per CPU).
 * y may be NULL: then only out[1] is computed, the others are 0.
 * Uses about 64 KiB of stack. Thread-safe. */
#define HMA_KSTATS_BLOCK 4096
void hma__kernel_stats(hma_dtype tx, const void *x, hma_dtype ty, const void *y, size_t n,
                       double out[4]);

/* ---- scalar conversions (usable everywhere) ----------------------------- */

static inline uint32_t hma__f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float hma__f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint64_t hma__f64_bits(double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}
static inline double hma__f64_from_bits(uint64_t u) {
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* BF16 -> float32: exact, NaN payloads (signalling ones included) kept. */
static inline float hma__bf16_to_f32(uint16_t h) { return hma__f32_from_bits((uint32_t)h << 16); }
/* float32 -> BF16, RNE; subnormals kept; NaN -> sign | 0x7FC0. */
uint16_t hma__f32_to_bf16(float f);
/* F16 -> float32: exact; NaN -> sign | quiet bit | payload << 13, as F16C's vcvtph2ps. */
float hma__f16_to_f32(uint16_t h);
/* float32 -> F16, RNE with subnormals and overflow to infinity;
 * NaN -> sign | 0x7E00 | (mantissa >> 13), as F16C's vcvtps2ph. */
uint16_t hma__f32_to_f16(float f);
/* double -> float32 rounded to odd (truncate, then set the last bit if
 * inexact); NaN as (float)d. Rounding this once more to a format with at
 * least 2 fewer significand bits gives the correctly rounded result. */
float hma__f64_to_f32_odd(double d);
/* double -> BF16 / F16 with one correct RNE rounding (via round-to-odd float). */
uint16_t hma__f64_to_bf16(double d);
uint16_t hma__f64_to_f16(double d);

/* One element of a F16/BF16/F32/F64 array at index i, as float / double
 * (F64 -> float is a plain RNE conversion). */
static inline float hma__ld1_f32(hma_dtype dt, const void *p, size_t i) {
    const unsigned char *b = (const unsigned char *)p;
    switch (dt) {
    case HMA_DTYPE_BF16: {
        uint16_t h;
        memcpy(&h, b + 2 * i, 2);
        return hma__bf16_to_f32(h);
    }
    case HMA_DTYPE_F16: {
        uint16_t h;
        memcpy(&h, b + 2 * i, 2);
        return hma__f16_to_f32(h);
    }
    case HMA_DTYPE_F64: {
        double d;
        memcpy(&d, b + 8 * i, 8);
        return (float)d;
    }
    default: {
        float f;
        memcpy(&f, b + 4 * i, 4);
        return f;
    }
    }
}
static inline double hma__ld1_f64(hma_dtype dt, const void *p, size_t i) {
    if (dt == HMA_DTYPE_F64) {
        double d;
        memcpy(&d, (const unsigned char *)p + 8 * i, 8);
        return d;
    }
    return (double)hma__ld1_f32(dt, p, i);
}
/* Store v at index i as dt (one RNE rounding). */
static inline void hma__st1_f32(hma_dtype dt, void *p, size_t i, float v) {
    unsigned char *b = (unsigned char *)p;
    switch (dt) {
    case HMA_DTYPE_BF16: {
        uint16_t h = hma__f32_to_bf16(v);
        memcpy(b + 2 * i, &h, 2);
        break;
    }
    case HMA_DTYPE_F16: {
        uint16_t h = hma__f32_to_f16(v);
        memcpy(b + 2 * i, &h, 2);
        break;
    }
    case HMA_DTYPE_F64: {
        double d = (double)v;
        memcpy(b + 8 * i, &d, 8);
        break;
    }
    default:
        memcpy(b + 4 * i, &v, 4);
        break;
    }
}
static inline void hma__st1_f64(hma_dtype dt, void *p, size_t i, double v) {
    unsigned char *b = (unsigned char *)p;
    switch (dt) {
    case HMA_DTYPE_BF16: {
        uint16_t h = hma__f64_to_bf16(v);
        memcpy(b + 2 * i, &h, 2);
        break;
    }
    case HMA_DTYPE_F16: {
        uint16_t h = hma__f64_to_f16(v);
        memcpy(b + 2 * i, &h, 2);
        break;
    }
    case HMA_DTYPE_F32: {
        float f = (float)v;
        memcpy(b + 4 * i, &f, 4);
        break;
    }
    default:
        memcpy(b + 8 * i, &v, 8);
        break;
    }
}
static inline int hma__kdtype_ok(hma_dtype dt) {
    return dt == HMA_DTYPE_F16 || dt == HMA_DTYPE_BF16 || dt == HMA_DTYPE_F32 || dt == HMA_DTYPE_F64;
}
static inline size_t hma__kdtype_size(hma_dtype dt) {
    return dt == HMA_DTYPE_F64 ? 8 : dt == HMA_DTYPE_F32 ? 4 : 2;
}

/* ---- per-path block primitives (used by kernels.c's driver) -------------
 * Each path provides these over blocks of at most HMA_KBLOCK elements;
 * the driver in kernels.c strings them together. `canon` replaces NaN with
 * the positive quiet NaN before storing. */
#define HMA_KBLOCK 512
typedef struct hma__kops {
    void (*ld32)(hma_dtype dt, const void *src, float *dst, size_t n);
    void (*ld64)(hma_dtype dt, const void *src, double *dst, size_t n);
    void (*st32)(hma_dtype dt, const float *src, void *dst, size_t n, int canon);
    void (*st64)(hma_dtype dt, const double *src, void *dst, size_t n, int canon);
    void (*mul32)(float *acc, float w, const float *x, size_t n);    /* acc = w*x */
    void (*muladd32)(float *acc, float w, const float *x, size_t n); /* acc = acc + w*x */
    void (*sub32)(float *x, const float *b, size_t n);               /* x = x - b */
    void (*add32)(float *acc, const float *b, size_t n);             /* acc = b + acc */
    void (*mul64)(double *acc, double w, const double *x, size_t n);
    void (*muladd64)(double *acc, double w, const double *x, size_t n);
    void (*sub64)(double *x, const double *b, size_t n);
    void (*add64)(double *acc, const double *b, size_t n);
    /* index of the first NaN/Inf in x[0..n), or n */
    size_t (*nonfinite32)(const float *x, size_t n);
    size_t (*nonfinite64)(const double *x, size_t n);
    /* Optional fused whole-chunk kernel for common cases; returns -1 when it
     * does not handle op, else hma__kernel_combine's result. */
    int (*fused)(const hma__combine *op, size_t n, int check_finite, size_t *bad_input,
                 size_t *bad_elem);
} hma__kops;

extern const hma__kops hma__kops_scalar;
extern const hma__kops hma__kops_avx2;   /* only when HMA_HAVE_AVX2_KERNELS */
extern const hma__kops hma__kops_avx512; /* only when HMA_HAVE_AVX512_KERNELS */

/* Scalar search for the first non-finite (element, input) of a 2-input op in
 * elements [e0, e1) (SIMD fused loops call it once they saw one). */
int hma__kfind_bad(const hma__combine *op, size_t e0, size_t e1, size_t *bad_input,
                   size_t *bad_elem);

#endif /* HMA_KERNELS_H */
