/*
 * kernels.c - the arithmetic kernels' scalar reference path, the block
 * driver shared by all paths (choosing a path's table; which paths the CPU
 * runs is core/cpu.c), and the statistics kernel (OpenBLAS). The contract
 * is described in kernels.h.
 */
#include "merge/kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>


/* ======================================================================= */
/* Scalar conversions                                                      */
/* ======================================================================= */

uint16_t hma__f32_to_bf16(float f) {
    uint32_t u = hma__f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(((u >> 16) & 0x8000u) | 0x7fc0u);
    /* Adding 0x7fff (+1 when the kept part is odd) carries into bit 16 exactly
     * when the dropped half is above one half ulp (or equal and odd); an
     * exponent carry gives the next binade or infinity, as RNE must. */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float hma__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0x1f) {
        u = sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u); /* NaN quietened like F16C */
    } else if (e != 0) {
        u = sign | ((e + 112u) << 23) | (m << 13);
    } else if (m == 0) {
        u = sign;
    } else { /* subnormal: normalise (value m * 2^-24) */
        uint32_t ex = 113;
        while (!(m & 0x400u)) {
            m <<= 1;
            ex--;
        }
        u = sign | (ex << 23) | ((m & 0x3ffu) << 13);
    }
    return hma__f32_from_bits(u);
}

uint16_t hma__f32_to_f16(float f) {
    uint32_t u = hma__f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520: rounds to inf */
    if (a >= 0x38800000u) {                                    /* normal F16 (>= 2^-14) */
        uint32_t r = a - 0x38000000u;                          /* rebias exponent 127 -> 15 */
        r += 0xfffu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    if (a <= 0x33000000u) return sign; /* <= 2^-25: half of the least subnormal, ties to 0 */
    /* F16 subnormal: value = m * 2^(e-150), in units of 2^-24 that is m >> (126 - e) */
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    uint32_t s = 126u - e; /* 14..24 */
    uint32_t r = m >> s, rem = m & ((1u << s) - 1u), half = 1u << (s - 1u);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

/*
 * Round to odd: the result is the truncation of d, with its last bit set when
 * the truncation was inexact. Why a second rounding of it is correct (Boldo &
 * Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms
 * using rounding to odd", 2008): let the target format (BF16: 8 significand
 * bits, F16: 11) have quantum q at d's magnitude; float32 has quantum at most
 * q/4 there (24 >= 8+2 and 24 >= 11+2 significand bits; in the subnormal
 * ranges float32's quantum 2^-149 is far below BF16's 2^-133 and F16's
 * 2^-24, and float32's range covers both formats' overflow thresholds).
 * So every target number and every midpoint between two of them is a float32
 * number with a zero last bit. If d is exactly one of them, the float is d
 * itself. Otherwise the odd float lies strictly between the same two
 * neighbouring floats with even last bit as d does, hence strictly on the
 * same side of every target number and midpoint as d: RNE of it equals RNE of
 * d. Overflow: d >= FLT_MAX truncates to FLT_MAX (odd), which rounds to
 * infinity in both formats, as d does.
 */
float hma__f64_to_f32_odd(double d) {
    float f = (float)d;
    if (d != d || (double)f == d) return f;
    uint32_t u = hma__f32_bits(f);
    if (fabs((double)f) > fabs(d)) u -= 1; /* RNE went away from zero: step back (inf -> FLT_MAX) */
    return hma__f32_from_bits(u | 1u);
}

uint16_t hma__f64_to_bf16(double d) { return hma__f32_to_bf16(hma__f64_to_f32_odd(d)); }
uint16_t hma__f64_to_f16(double d) { return hma__f32_to_f16(hma__f64_to_f32_odd(d)); }

/* ======================================================================= */
/* Scalar block primitives                                                 */
/* ======================================================================= */

static void sc_ld32(hma_dtype dt, const void *src, float *dst, size_t n) {
    if (dt == HMA_DTYPE_F32) {
        memcpy(dst, src, n * 4);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = hma__ld1_f32(dt, src, i);
}
static void sc_ld64(hma_dtype dt, const void *src, double *dst, size_t n) {
    if (dt == HMA_DTYPE_F64) {
        memcpy(dst, src, n * 8);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = hma__ld1_f64(dt, src, i);
}
static void sc_st32(hma_dtype dt, const float *src, void *dst, size_t n, int canon) {
    const float qnan = hma__f32_from_bits(0x7fc00000u);
    for (size_t i = 0; i < n; i++) {
        float v = src[i];
        if (canon && v != v) v = qnan;
        hma__st1_f32(dt, dst, i, v);
    }
}
static void sc_st64(hma_dtype dt, const double *src, void *dst, size_t n, int canon) {
    const double qnan = hma__f64_from_bits(0x7ff8000000000000ull);
    for (size_t i = 0; i < n; i++) {
        double v = src[i];
        if (canon && v != v) v = qnan;
        hma__st1_f64(dt, dst, i, v);
    }
}
static void sc_mul32(float *acc, float w, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) acc[i] = w * x[i];
}
static void sc_muladd32(float *acc, float w, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float t = w * x[i];
        acc[i] = acc[i] + t;
    }
}
static void sc_sub32(float *x, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] - b[i];
}
static void sc_add32(float *acc, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) acc[i] = b[i] + acc[i];
}
static void sc_mul64(double *acc, double w, const double *x, size_t n) {
    for (size_t i = 0; i < n; i++) acc[i] = w * x[i];
}
static void sc_muladd64(double *acc, double w, const double *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double t = w * x[i];
        acc[i] = acc[i] + t;
    }
}
static void sc_sub64(double *x, const double *b, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] - b[i];
}
static void sc_add64(double *acc, const double *b, size_t n) {
    for (size_t i = 0; i < n; i++) acc[i] = b[i] + acc[i];
}
static size_t sc_nonfinite32(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((hma__f32_bits(x[i]) & 0x7f800000u) == 0x7f800000u) return i;
    return n;
}
static size_t sc_nonfinite64(const double *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((hma__f64_bits(x[i]) & 0x7ff0000000000000ull) == 0x7ff0000000000000ull) return i;
    return n;
}

const hma__kops hma__kops_scalar = {
    sc_ld32,     sc_ld64,   sc_st32,   sc_st64,   sc_mul32,        sc_muladd32,     sc_sub32,
    sc_add32,    sc_mul64,  sc_muladd64, sc_sub64, sc_add64,       sc_nonfinite32,  sc_nonfinite64,
    NULL,
};

/* ======================================================================= */
/* Dispatch                                                                */
/* ======================================================================= */

static const hma__kops *ops_for(int path) {
#ifdef HMA_HAVE_AVX512_KERNELS
    if (path == HMA_SIMD_AVX512 && hma__cpu_level_available(path)) return &hma__kops_avx512;
#endif
#ifdef HMA_HAVE_AVX2_KERNELS
    if (path == HMA_SIMD_AVX2 && hma__cpu_level_available(path)) return &hma__kops_avx2;
#endif
    return &hma__kops_scalar;
}

/* ======================================================================= */
/* Block driver                                                            */
/* ======================================================================= */

static const void *in_at(const hma__combine *op, size_t i, size_t e) {
    return (const unsigned char *)op->in[i] + e * hma__kdtype_size(op->in_dtype[i]);
}

int hma__kfind_bad(const hma__combine *op, size_t e0, size_t e1, size_t *bad_input,
                   size_t *bad_elem) {
    for (size_t e = e0; e < e1; e++) {
        for (size_t i = 0; i < op->n_in; i++) {
            double v = hma__ld1_f64(op->in_dtype[i], op->in[i], e);
            if (!isfinite(v)) {
                *bad_input = i;
                *bad_elem = e;
                return 1;
            }
        }
    }
    return 0;
}

/* Keeps the first non-finite (element, input) seen within one block. */
static void note_bad(size_t j, size_t i, size_t m, size_t *best_e, size_t *best_i) {
    if (j < m && (j < *best_e || (j == *best_e && i < *best_i))) {
        *best_e = j;
        *best_i = i;
    }
}

static int combine32(const hma__kops *k, const hma__combine *op, size_t n, int check,
                     size_t *bad_input, size_t *bad_elem) {
    float acc[HMA_KBLOCK], tmp[HMA_KBLOCK], xb[HMA_KBLOCK];
    const int base = op->base;
    for (size_t e0 = 0; e0 < n; e0 += HMA_KBLOCK) {
        size_t m = n - e0 < HMA_KBLOCK ? n - e0 : HMA_KBLOCK;
        size_t best_e = m, best_i = 0;
        int first = 1;
        if (base >= 0) {
            k->ld32(op->in_dtype[base], in_at(op, (size_t)base, e0), xb, m);
            if (check) note_bad(k->nonfinite32(xb, m), (size_t)base, m, &best_e, &best_i);
        }
        for (size_t i = 0; i < op->n_in; i++) {
            if ((int)i == base) continue;
            k->ld32(op->in_dtype[i], in_at(op, i, e0), tmp, m);
            if (check) note_bad(k->nonfinite32(tmp, m), i, m, &best_e, &best_i);
            if (base >= 0) k->sub32(tmp, xb, m);
            if (first)
                k->mul32(acc, op->wf[i], tmp, m);
            else
                k->muladd32(acc, op->wf[i], tmp, m);
            first = 0;
        }
        if (best_e < m) {
            *bad_input = best_i;
            *bad_elem = e0 + best_e;
            return 1;
        }
        unsigned char *out = (unsigned char *)op->out + e0 * hma__kdtype_size(op->out_dtype);
        if (base >= 0 && first)
            k->st32(op->out_dtype, xb, out, m, 1);
        else {
            if (base >= 0) k->add32(acc, xb, m);
            k->st32(op->out_dtype, acc, out, m, 1);
        }
    }
    return 0;
}

static int combine64(const hma__kops *k, const hma__combine *op, size_t n, int check,
                     size_t *bad_input, size_t *bad_elem) {
    double acc[HMA_KBLOCK], tmp[HMA_KBLOCK], xb[HMA_KBLOCK];
    const int base = op->base;
    for (size_t e0 = 0; e0 < n; e0 += HMA_KBLOCK) {
        size_t m = n - e0 < HMA_KBLOCK ? n - e0 : HMA_KBLOCK;
        size_t best_e = m, best_i = 0;
        int first = 1;
        if (base >= 0) {
            k->ld64(op->in_dtype[base], in_at(op, (size_t)base, e0), xb, m);
            if (check) note_bad(k->nonfinite64(xb, m), (size_t)base, m, &best_e, &best_i);
        }
        for (size_t i = 0; i < op->n_in; i++) {
            if ((int)i == base) continue;
            k->ld64(op->in_dtype[i], in_at(op, i, e0), tmp, m);
            if (check) note_bad(k->nonfinite64(tmp, m), i, m, &best_e, &best_i);
            if (base >= 0) k->sub64(tmp, xb, m);
            if (first)
                k->mul64(acc, op->wd[i], tmp, m);
            else
                k->muladd64(acc, op->wd[i], tmp, m);
            first = 0;
        }
        if (best_e < m) {
            *bad_input = best_i;
            *bad_elem = e0 + best_e;
            return 1;
        }
        unsigned char *out = (unsigned char *)op->out + e0 * hma__kdtype_size(op->out_dtype);
        if (base >= 0 && first)
            k->st64(op->out_dtype, xb, out, m, 1);
        else {
            if (base >= 0) k->add64(acc, xb, m);
            k->st64(op->out_dtype, acc, out, m, 1);
        }
    }
    return 0;
}

int hma__kernel_combine(int path, const hma__combine *op, size_t n, int check_finite,
                        size_t *bad_input, size_t *bad_elem) {
    const hma__kops *k = ops_for(path);
    if (n == 0) return 0;
    if (k->fused) {
        int r = k->fused(op, n, check_finite, bad_input, bad_elem);
        if (r >= 0) return r;
    }
    return op->wide ? combine64(k, op, n, check_finite, bad_input, bad_elem)
                    : combine32(k, op, n, check_finite, bad_input, bad_elem);
}

void hma__kernel_convert(int path, hma_dtype src_t, const void *src, hma_dtype dst_t, void *dst,
                         size_t n) {
    const hma__kops *k = ops_for(path);
    const unsigned char *s = (const unsigned char *)src;
    unsigned char *d = (unsigned char *)dst;
    size_t ss = hma__kdtype_size(src_t), ds = hma__kdtype_size(dst_t);
    if (src_t == dst_t) {
        memmove(dst, src, n * ss);
        return;
    }
    if (src_t == HMA_DTYPE_F64) { /* F64 -> narrower: straight from memory */
        double tmp[HMA_KBLOCK];
        for (size_t e0 = 0; e0 < n; e0 += HMA_KBLOCK) {
            size_t m = n - e0 < HMA_KBLOCK ? n - e0 : HMA_KBLOCK;
            memcpy(tmp, s + e0 * 8, m * 8);
            k->st64(dst_t, tmp, d + e0 * ds, m, 0);
        }
        return;
    }
    float tmp[HMA_KBLOCK];
    for (size_t e0 = 0; e0 < n; e0 += HMA_KBLOCK) {
        size_t m = n - e0 < HMA_KBLOCK ? n - e0 : HMA_KBLOCK;
        k->ld32(src_t, s + e0 * ss, tmp, m);
        k->st32(dst_t, tmp, d + e0 * ds, m, 0);
    }
}

/* ======================================================================= */
/* Statistics (OpenBLAS)                                                   */
/* ======================================================================= */

/* cblas_dsdot is not used although it promises double accumulation: the
 * OpenBLAS 0.3.21 Haswell kernel gives float32-accurate sums (relative error
 * ~1e-8 measured for n >= 32); converting to double and using cblas_ddot
 * costs little in this memory-bound loop. */
void hma__kernel_stats(hma_dtype tx, const void *x, hma_dtype ty, const void *y, size_t n,
                       double out[4]) {
    const hma__kops *k = ops_for(hma__cpu_level()); /* conversions are exact on every path */
    const size_t B = HMA_KSTATS_BLOCK;
    double dx[HMA_KSTATS_BLOCK], dy[HMA_KSTATS_BLOCK];
    size_t sx = hma__kdtype_size(tx), sy = y ? hma__kdtype_size(ty) : 0;
    out[0] = out[1] = out[2] = out[3] = 0.0;
    for (size_t e0 = 0; e0 < n; e0 += B) {
        size_t m = n - e0 < B ? n - e0 : B;
        blasint bm = (blasint)m;
        k->ld64(tx, (const unsigned char *)x + e0 * sx, dx, m);
        out[1] += cblas_ddot(bm, dx, 1, dx, 1);
        if (!y) continue;
        k->ld64(ty, (const unsigned char *)y + e0 * sy, dy, m);
        out[0] += cblas_ddot(bm, dx, 1, dy, 1);
        out[2] += cblas_ddot(bm, dy, 1, dy, 1);
        for (size_t i = 0; i < m; i++) dy[i] = dy[i] - dx[i];
        out[3] += cblas_ddot(bm, dy, 1, dy, 1);
    }
}
