/*
 * kernels_simd.h - the SIMD kernels written once for both vector widths:
 * kernels_avx2.c and kernels_avx512.c define the vector primitives below and
 * then include this file, which builds their hma__kops table (named by
 * KS_OPS). Tails shorter than a vector use the scalar helpers of kernels.h,
 * which round identically.
 *
 * The including file defines:
 *   KS_W, KS_WD           float / double lanes
 *   ks_vf, ks_vd          vector types
 *   KS(name)              prefixes a function name
 *   KS_OPS                name of the hma__kops table to define
 *   ks_vf ks_ld_bf16(p), ks_ld_f16(p), ks_ld_f32(p)       unaligned loads
 *   void ks_st_bf16(p, v, canon), ks_st_f16(p, v), ks_st_f32(p, v)
 *   ks_vf ks_canon(v)     NaN lanes -> +qNaN
 *   ks_vf ks_set1/ks_add/ks_sub/ks_mul; int ks_bad(v): any lane NaN/Inf
 *   ks_vd ks_ld_pd(p); void ks_st_pd(p, v); ks_vd ks_set1d/ks_addd/ks_subd/ks_muld;
 *   ks_vd ks_canond(v); int ks_badd(v)
 *   void ks_cvt_pd_ps(float *dst, v)   KS_WD floats, RNE
 *   void ks_odd_pd_ps(float *dst, v)   KS_WD floats, rounded to odd
 *   void ks_st_ps_pd(double *dst, ks_vf v)   KS_W doubles (exact widening)
 *   void ks_ld2_bf16(p, ks_vf *a, ks_vf *b), ks_st2_bf16(p, a, b)   2*KS_W BF16
 *                         elements, lane-permuted (see KS(vld2))
 */
#ifndef KS_OPS
#error "kernels_simd.h is included by kernels_avx2.c / kernels_avx512.c only"
#endif

#define KS_INLINE static inline __attribute__((always_inline))

/* ---- block primitives ---------------------------------------------------- */

static void KS(ld32)(hma_dtype dt, const void *src, float *dst, size_t n) {
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0;
    switch (dt) {
    case HMA_DTYPE_F32:
        memcpy(dst, src, n * 4);
        return;
    case HMA_DTYPE_BF16:
        for (; i + KS_W <= n; i += KS_W) ks_st_f32(dst + i, ks_ld_bf16(s + 2 * i));
        break;
    case HMA_DTYPE_F16:
        for (; i + KS_W <= n; i += KS_W) ks_st_f32(dst + i, ks_ld_f16(s + 2 * i));
        break;
    default:
        break;
    }
    for (; i < n; i++) dst[i] = hma__ld1_f32(dt, src, i);
}

static void KS(ld64)(hma_dtype dt, const void *src, double *dst, size_t n) {
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0;
    switch (dt) {
    case HMA_DTYPE_F64:
        memcpy(dst, src, n * 8);
        return;
    case HMA_DTYPE_F32:
        for (; i + KS_W <= n; i += KS_W) ks_st_ps_pd(dst + i, ks_ld_f32(s + 4 * i));
        break;
    case HMA_DTYPE_BF16:
        for (; i + KS_W <= n; i += KS_W) ks_st_ps_pd(dst + i, ks_ld_bf16(s + 2 * i));
        break;
    case HMA_DTYPE_F16:
        for (; i + KS_W <= n; i += KS_W) ks_st_ps_pd(dst + i, ks_ld_f16(s + 2 * i));
        break;
    default:
        break;
    }
    for (; i < n; i++) dst[i] = hma__ld1_f64(dt, src, i);
}

static void KS(st32)(hma_dtype dt, const float *src, void *dst, size_t n, int canon) {
    unsigned char *d = (unsigned char *)dst;
    size_t i = 0;
    switch (dt) {
    case HMA_DTYPE_BF16:
        if (canon)
            for (; i + KS_W <= n; i += KS_W) ks_st_bf16(d + 2 * i, ks_ld_f32(src + i), 1);
        else
            for (; i + KS_W <= n; i += KS_W) ks_st_bf16(d + 2 * i, ks_ld_f32(src + i), 0);
        break;
    case HMA_DTYPE_F16:
        if (canon)
            for (; i + KS_W <= n; i += KS_W) ks_st_f16(d + 2 * i, ks_canon(ks_ld_f32(src + i)));
        else
            for (; i + KS_W <= n; i += KS_W) ks_st_f16(d + 2 * i, ks_ld_f32(src + i));
        break;
    case HMA_DTYPE_F32:
        if (canon)
            for (; i + KS_W <= n; i += KS_W) ks_st_f32(d + 4 * i, ks_canon(ks_ld_f32(src + i)));
        else
            for (; i + KS_W <= n; i += KS_W) ks_st_f32(d + 4 * i, ks_ld_f32(src + i));
        break;
    default:
        break;
    }
    const float qnan = hma__f32_from_bits(0x7fc00000u);
    for (; i < n; i++) {
        float v = src[i];
        if (canon && v != v) v = qnan;
        hma__st1_f32(dt, dst, i, v);
    }
}

static void KS(st64)(hma_dtype dt, const double *src, void *dst, size_t n, int canon) {
    unsigned char *d = (unsigned char *)dst;
    size_t i = 0;
    if (dt == HMA_DTYPE_F64) {
        for (; i + KS_WD <= n; i += KS_WD) {
            ks_vd v = ks_ld_pd(src + i);
            ks_st_pd(d + 8 * i, canon ? ks_canond(v) : v);
        }
    } else if (dt == HMA_DTYPE_F32) {
        for (; i + KS_WD <= n; i += KS_WD) {
            ks_vd v = ks_ld_pd(src + i);
            float tmp[KS_WD];
            ks_cvt_pd_ps(tmp, canon ? ks_canond(v) : v);
            memcpy(d + 4 * i, tmp, sizeof tmp);
        }
    } else {
        /* Round to odd into float32, then the float32 store rounds once more
         * (correct, see hma__f64_to_f32_odd). A NaN converts like (float)d. */
        float tmp[HMA_KBLOCK];
        size_t m = n / KS_WD * KS_WD;
        for (; i < m; i += KS_WD) {
            ks_vd v = ks_ld_pd(src + i);
            ks_odd_pd_ps(tmp + i, canon ? ks_canond(v) : v);
        }
        KS(st32)(dt, tmp, dst, m, 0);
    }
    const double qnan = hma__f64_from_bits(0x7ff8000000000000ull);
    for (; i < n; i++) {
        double v = src[i];
        if (canon && v != v) v = qnan;
        hma__st1_f64(dt, dst, i, v);
    }
}

static void KS(mul32)(float *acc, float w, const float *x, size_t n) {
    ks_vf vw = ks_set1(w);
    size_t i = 0;
    for (; i + KS_W <= n; i += KS_W) ks_st_f32(acc + i, ks_mul(vw, ks_ld_f32(x + i)));
    for (; i < n; i++) acc[i] = w * x[i];
}
static void KS(muladd32)(float *acc, float w, const float *x, size_t n) {
    ks_vf vw = ks_set1(w);
    size_t i = 0;
    for (; i + KS_W <= n; i += KS_W)
        ks_st_f32(acc + i, ks_add(ks_ld_f32(acc + i), ks_mul(vw, ks_ld_f32(x + i))));
    for (; i < n; i++) {
        float t = w * x[i];
        acc[i] = acc[i] + t;
    }
}
static void KS(sub32)(float *x, const float *b, size_t n) {
    size_t i = 0;
    for (; i + KS_W <= n; i += KS_W) ks_st_f32(x + i, ks_sub(ks_ld_f32(x + i), ks_ld_f32(b + i)));
    for (; i < n; i++) x[i] = x[i] - b[i];
}
static void KS(add32)(float *acc, const float *b, size_t n) {
    size_t i = 0;
    for (; i + KS_W <= n; i += KS_W) ks_st_f32(acc + i, ks_add(ks_ld_f32(b + i), ks_ld_f32(acc + i)));
    for (; i < n; i++) acc[i] = b[i] + acc[i];
}
static void KS(mul64)(double *acc, double w, const double *x, size_t n) {
    ks_vd vw = ks_set1d(w);
    size_t i = 0;
    for (; i + KS_WD <= n; i += KS_WD) ks_st_pd(acc + i, ks_muld(vw, ks_ld_pd(x + i)));
    for (; i < n; i++) acc[i] = w * x[i];
}
static void KS(muladd64)(double *acc, double w, const double *x, size_t n) {
    ks_vd vw = ks_set1d(w);
    size_t i = 0;
    for (; i + KS_WD <= n; i += KS_WD)
        ks_st_pd(acc + i, ks_addd(ks_ld_pd(acc + i), ks_muld(vw, ks_ld_pd(x + i))));
    for (; i < n; i++) {
        double t = w * x[i];
        acc[i] = acc[i] + t;
    }
}
static void KS(sub64)(double *x, const double *b, size_t n) {
    size_t i = 0;
    for (; i + KS_WD <= n; i += KS_WD) ks_st_pd(x + i, ks_subd(ks_ld_pd(x + i), ks_ld_pd(b + i)));
    for (; i < n; i++) x[i] = x[i] - b[i];
}
static void KS(add64)(double *acc, const double *b, size_t n) {
    size_t i = 0;
    for (; i + KS_WD <= n; i += KS_WD) ks_st_pd(acc + i, ks_addd(ks_ld_pd(b + i), ks_ld_pd(acc + i)));
    for (; i < n; i++) acc[i] = b[i] + acc[i];
}
static size_t KS(nonfinite32)(const float *x, size_t n) {
    size_t i = 0;
    for (; i + KS_W <= n; i += KS_W)
        if (ks_bad(ks_ld_f32(x + i))) break;
    for (; i < n; i++)
        if ((hma__f32_bits(x[i]) & 0x7f800000u) == 0x7f800000u) return i;
    return n;
}
static size_t KS(nonfinite64)(const double *x, size_t n) {
    size_t i = 0;
    for (; i + KS_WD <= n; i += KS_WD)
        if (ks_badd(ks_ld_pd(x + i))) break;
    for (; i < n; i++)
        if ((hma__f64_bits(x[i]) & 0x7ff0000000000000ull) == 0x7ff0000000000000ull) return i;
    return n;
}

/* ---- fused 2-input kernel ----------------------------------------------------
 * mode 0: w0*x0 + w1*x1; mode 1: x0 + w1*(x1 - x0) (base 0); mode 2: x1 + w0*(x0 - x1).
 * Instantiated with constant dtypes so each case compiles to a straight loop. */

KS_INLINE ks_vf KS(vld)(hma_dtype dt, const unsigned char *p) {
    return dt == HMA_DTYPE_BF16 ? ks_ld_bf16(p) : dt == HMA_DTYPE_F16 ? ks_ld_f16(p) : ks_ld_f32(p);
}
KS_INLINE void KS(vst)(hma_dtype dt, unsigned char *p, ks_vf v) {
    if (dt == HMA_DTYPE_BF16)
        ks_st_bf16(p, v, 1);
    else if (dt == HMA_DTYPE_F16)
        ks_st_f16(p, ks_canon(v));
    else
        ks_st_f32(p, ks_canon(v));
}
KS_INLINE ks_vf KS(vop)(int mode, ks_vf w0, ks_vf w1, ks_vf x0, ks_vf x1) {
    if (mode == 0) return ks_add(ks_mul(w0, x0), ks_mul(w1, x1));
    if (mode == 1) return ks_add(x0, ks_mul(w1, ks_sub(x1, x0)));
    return ks_add(x1, ks_mul(w0, ks_sub(x0, x1)));
}

/* Loads / stores of 2*KS_W elements. For BF16 the pair is built by 16-bit
 * interleaves inside 128-bit lanes, so a and b hold a permutation of the
 * elements; the pack in ks_st2_bf16 undoes exactly that permutation. Only
 * element-wise arithmetic may happen in between. */
KS_INLINE void KS(vld2)(hma_dtype dt, const unsigned char *p, ks_vf *a, ks_vf *b) {
    if (dt == HMA_DTYPE_BF16) {
        ks_ld2_bf16(p, a, b);
    } else {
        size_t sz = dt == HMA_DTYPE_F16 ? 2 : 4;
        *a = KS(vld)(dt, p);
        *b = KS(vld)(dt, p + KS_W * sz);
    }
}
KS_INLINE void KS(vst2)(hma_dtype dt, unsigned char *p, ks_vf a, ks_vf b) {
    if (dt == HMA_DTYPE_BF16) {
        ks_st2_bf16(p, a, b);
    } else {
        size_t sz = dt == HMA_DTYPE_F16 ? 2 : 4;
        KS(vst)(dt, p, a);
        KS(vst)(dt, p + KS_W * sz, b);
    }
}

/* Scalar tail of the fused kernels: the same operations in the same order. */
static int KS(tail)(const hma__combine *op, size_t i, size_t n, int check, size_t *bad_input,
                    size_t *bad_elem) {
    const float qnan = hma__f32_from_bits(0x7fc00000u);
    const int base = op->base;
    if (check && hma__kfind_bad(op, i, n, bad_input, bad_elem)) return 1;
    for (; i < n; i++) {
        float xb = base >= 0 ? hma__ld1_f32(op->in_dtype[base], op->in[base], i) : 0.0f, acc = 0.0f;
        int first = 1;
        for (size_t j = 0; j < op->n_in; j++) {
            if ((int)j == base) continue;
            float x = hma__ld1_f32(op->in_dtype[j], op->in[j], i);
            if (base >= 0) x = x - xb;
            float t = op->wf[j] * x;
            acc = first ? t : acc + t;
            first = 0;
        }
        float r = base < 0 ? acc : first ? xb : xb + acc;
        if (r != r) r = qnan;
        hma__st1_f32(op->out_dtype, op->out, i, r);
    }
    return 0;
}

/*
 * Finite checks look at the result only: with finite weights a NaN/Inf input
 * always gives a NaN/Inf result (inf*0 and inf-inf are NaN, NaN propagates),
 * so only vectors with a non-finite result are searched exactly, and a
 * search that finds no bad input (an overflow) just goes on.
 */
KS_INLINE int KS(fused2_t)(hma_dtype dt, int mode, const hma__combine *op, size_t n, int check,
                           size_t *bad_input, size_t *bad_elem) {
    const unsigned char *p0 = (const unsigned char *)op->in[0];
    const unsigned char *p1 = (const unsigned char *)op->in[1];
    unsigned char *po = (unsigned char *)op->out;
    const size_t sz = hma__kdtype_size(dt);
    const ks_vf vw0 = ks_set1(op->wf[0]), vw1 = ks_set1(op->wf[1]);
    size_t i = 0;
    for (; i + 2 * KS_W <= n; i += 2 * KS_W) {
        ks_vf a0, b0, a1, b1;
        KS(vld2)(dt, p0 + i * sz, &a0, &b0);
        KS(vld2)(dt, p1 + i * sz, &a1, &b1);
        ks_vf ra = KS(vop)(mode, vw0, vw1, a0, a1), rb = KS(vop)(mode, vw0, vw1, b0, b1);
        KS(vst2)(dt, po + i * sz, ra, rb);
        if (check && HMA_UNLIKELY(ks_bad(ra) | ks_bad(rb)) &&
            hma__kfind_bad(op, i, i + 2 * KS_W, bad_input, bad_elem))
            return 1;
    }
    return KS(tail)(op, i, n, check, bad_input, bad_elem);
}

/* Any number of inputs of one dtype, any F16/BF16/F32 output, either form. */
KS_INLINE int KS(fusedn_t)(hma_dtype dt, hma_dtype dto, const hma__combine *op, size_t n, int check,
                           size_t *bad_input, size_t *bad_elem) {
    const unsigned char *const *p = (const unsigned char *const *)op->in;
    unsigned char *po = (unsigned char *)op->out;
    const size_t sz = hma__kdtype_size(dt), so = hma__kdtype_size(dto), n_in = op->n_in;
    const int base = op->base;
    ks_vf w[HMA_KMAX_INPUTS];
    for (size_t j = 0; j < n_in; j++) w[j] = ks_set1(op->wf[j]);
    size_t i = 0;
    for (; i + KS_W <= n; i += KS_W) {
        ks_vf xb = ks_set1(0.0f), acc = xb;
        int first = 1;
        if (base >= 0) xb = KS(vld)(dt, p[base] + i * sz);
        for (size_t j = 0; j < n_in; j++) {
            if ((int)j == base) continue;
            ks_vf x = KS(vld)(dt, p[j] + i * sz);
            if (base >= 0) x = ks_sub(x, xb);
            ks_vf t = ks_mul(w[j], x);
            acc = first ? t : ks_add(acc, t);
            first = 0;
        }
        ks_vf r = base < 0 ? acc : first ? xb : ks_add(xb, acc);
        KS(vst)(dto, po + i * so, r);
        if (check && HMA_UNLIKELY(ks_bad(r)) && hma__kfind_bad(op, i, i + KS_W, bad_input, bad_elem))
            return 1;
    }
    return KS(tail)(op, i, n, check, bad_input, bad_elem);
}

#define KS_FUSED2_MODES(DT)                                                                      \
    switch (mode) {                                                                              \
    case 0: return KS(fused2_t)(DT, 0, op, n, check, bad_input, bad_elem);                       \
    case 1: return KS(fused2_t)(DT, 1, op, n, check, bad_input, bad_elem);                       \
    default: return KS(fused2_t)(DT, 2, op, n, check, bad_input, bad_elem);                      \
    }
#define KS_FUSEDN_OUT(DT)                                                                        \
    switch (dto) {                                                                               \
    case HMA_DTYPE_BF16: return KS(fusedn_t)(DT, HMA_DTYPE_BF16, op, n, check, bad_input, bad_elem); \
    case HMA_DTYPE_F16: return KS(fusedn_t)(DT, HMA_DTYPE_F16, op, n, check, bad_input, bad_elem); \
    default: return KS(fusedn_t)(DT, HMA_DTYPE_F32, op, n, check, bad_input, bad_elem);         \
    }

static int KS(fused)(const hma__combine *op, size_t n, int check, size_t *bad_input,
                     size_t *bad_elem) {
    if (op->wide || op->n_in < 1 || op->n_in > HMA_KMAX_INPUTS) return -1;
    const hma_dtype dt = op->in_dtype[0], dto = op->out_dtype;
    if (dt == HMA_DTYPE_F64 || dto == HMA_DTYPE_F64) return -1;
    for (size_t j = 1; j < op->n_in; j++)
        if (op->in_dtype[j] != dt) return -1;
    if (op->n_in == 2 && dto == dt) {
        int mode = op->base < 0 ? 0 : op->base == 0 ? 1 : 2;
        switch (dt) {
        case HMA_DTYPE_BF16: KS_FUSED2_MODES(HMA_DTYPE_BF16)
        case HMA_DTYPE_F16: KS_FUSED2_MODES(HMA_DTYPE_F16)
        default: KS_FUSED2_MODES(HMA_DTYPE_F32)
        }
    }
    switch (dt) {
    case HMA_DTYPE_BF16: KS_FUSEDN_OUT(HMA_DTYPE_BF16)
    case HMA_DTYPE_F16: KS_FUSEDN_OUT(HMA_DTYPE_F16)
    default: KS_FUSEDN_OUT(HMA_DTYPE_F32)
    }
}

const hma__kops KS_OPS = {
    KS(ld32),     KS(ld64),    KS(st32),  KS(st64),  KS(mul32),       KS(muladd32),
    KS(sub32),    KS(add32),   KS(mul64), KS(muladd64), KS(sub64),    KS(add64),
    KS(nonfinite32), KS(nonfinite64), KS(fused),
};
