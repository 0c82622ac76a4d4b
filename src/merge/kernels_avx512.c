/*
 * kernels_avx512.c - the AVX-512 kernels: 16 floats / 8 doubles a vector.
 * Compiled with AVX-512 flags and entered only after kernels.c saw AVX512F,
 * BW, VL and DQ at run time. The AVX512-BF16 conversion (vcvtneps2bf16) is
 * deliberately not used: it flushes subnormal inputs and results to zero,
 * which the contract forbids; BF16 rounding is the integer RNE as in AVX2.
 */
#include "merge/kernels.h"

#ifdef HMA_HAVE_AVX512_KERNELS
#include <immintrin.h>

#define KS_W 16
#define KS_WD 8
#define KS(name) hma__avx512_##name
#define KS_OPS hma__kops_avx512
typedef __m512 ks_vf;
typedef __m512d ks_vd;

static inline ks_vf ks_ld_f32(const void *p) { return _mm512_loadu_ps(p); }
static inline void ks_st_f32(void *p, ks_vf v) { _mm512_storeu_ps(p, v); }
static inline ks_vf ks_ld_bf16(const void *p) {
    __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}
static inline ks_vf ks_ld_f16(const void *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline void ks_st_bf16(void *p, ks_vf v, int canon) {
    __m512i u = _mm512_castps_si512(v);
    __m512i hi = _mm512_srli_epi32(u, 16);
    __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    __m512i nanv = _mm512_set1_epi32(0x7fc0);
    if (!canon) nanv = _mm512_or_si512(nanv, _mm512_and_si512(hi, _mm512_set1_epi32(0x8000)));
    __mmask16 isnan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_blend_epi32(isnan, r, nanv);
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(r));
}
static inline void ks_st_f16(void *p, ks_vf v) {
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
static inline ks_vf ks_canon(ks_vf v) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v,
                                _mm512_castsi512_ps(_mm512_set1_epi32(0x7fc00000)));
}
static inline ks_vf ks_set1(float w) { return _mm512_set1_ps(w); }
static inline ks_vf ks_add(ks_vf a, ks_vf b) { return _mm512_add_ps(a, b); }
static inline ks_vf ks_sub(ks_vf a, ks_vf b) { return _mm512_sub_ps(a, b); }
static inline ks_vf ks_mul(ks_vf a, ks_vf b) { return _mm512_mul_ps(a, b); }
static inline int ks_bad(ks_vf v) {
    __m512i e = _mm512_set1_epi32(0x7f800000);
    return _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(v), e), e) != 0;
}

static inline ks_vd ks_ld_pd(const void *p) { return _mm512_loadu_pd(p); }
static inline void ks_st_pd(void *p, ks_vd v) { _mm512_storeu_pd(p, v); }
static inline ks_vd ks_set1d(double w) { return _mm512_set1_pd(w); }
static inline ks_vd ks_addd(ks_vd a, ks_vd b) { return _mm512_add_pd(a, b); }
static inline ks_vd ks_subd(ks_vd a, ks_vd b) { return _mm512_sub_pd(a, b); }
static inline ks_vd ks_muld(ks_vd a, ks_vd b) { return _mm512_mul_pd(a, b); }
static inline ks_vd ks_canond(ks_vd v) {
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q), v,
                                _mm512_castsi512_pd(_mm512_set1_epi64(0x7ff8000000000000ll)));
}
static inline int ks_badd(ks_vd v) {
    __m512i e = _mm512_set1_epi64(0x7ff0000000000000ll);
    return _mm512_cmpeq_epi64_mask(_mm512_and_si512(_mm512_castpd_si512(v), e), e) != 0;
}
static inline void ks_cvt_pd_ps(float *dst, ks_vd v) { _mm256_storeu_ps(dst, _mm512_cvtpd_ps(v)); }
/* Round to odd: truncate (embedded rounding), set the last bit when inexact. */
static inline void ks_odd_pd_ps(float *dst, ks_vd v) {
    __m256 f = _mm512_cvt_roundpd_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __mmask8 inexact = _mm512_cmp_pd_mask(_mm512_cvtps_pd(f), v, _CMP_NEQ_OQ); /* false for NaN */
    __m256i u = _mm256_castps_si256(f);
    u = _mm256_mask_or_epi32(u, inexact, u, _mm256_set1_epi32(1));
    _mm256_storeu_si256((__m256i *)dst, u);
}
static inline void ks_st_ps_pd(double *dst, ks_vf v) {
    _mm512_storeu_pd(dst, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    _mm512_storeu_pd(dst + 8, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
}
/* 32 BF16: the 16-bit interleave with zero works inside 128-bit lanes, and so
 * does the pack in ks_st2_bf16, which restores the order. */
static inline void ks_ld2_bf16(const void *p, ks_vf *a, ks_vf *b) {
    __m512i v = _mm512_loadu_si512(p), z = _mm512_setzero_si512();
    *a = _mm512_castsi512_ps(_mm512_unpacklo_epi16(z, v));
    *b = _mm512_castsi512_ps(_mm512_unpackhi_epi16(z, v));
}
static inline __m512i ks_bf16_bits(ks_vf v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    return _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), r, _mm512_set1_epi32(0x7fc0));
}
static inline void ks_st2_bf16(void *p, ks_vf a, ks_vf b) {
    _mm512_storeu_si512(p, _mm512_packus_epi32(ks_bf16_bits(a), ks_bf16_bits(b)));
}

#include "merge/kernels_simd.h"

#endif
