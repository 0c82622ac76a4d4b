/*
 * kernels_avx2.c - the AVX2 (+F16C) kernels: 8 floats / 4 doubles a vector.
 * Compiled with -mavx2 -mf16c -mfma and entered only after kernels.c saw
 * these features at run time. FMA is never used for arithmetic (products are
 * rounded before they are added, as the contract says).
 */
#include "merge/kernels.h"

#ifdef HMA_HAVE_AVX2_KERNELS
#include <immintrin.h>

#define KS_W 8
#define KS_WD 4
#define KS(name) hma__avx2_##name
#define KS_OPS hma__kops_avx2
typedef __m256 ks_vf;
typedef __m256d ks_vd;

static inline ks_vf ks_ld_f32(const void *p) { return _mm256_loadu_ps((const float *)p); }
static inline void ks_st_f32(void *p, ks_vf v) { _mm256_storeu_ps((float *)p, v); }
static inline ks_vf ks_ld_bf16(const void *p) {
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}
static inline ks_vf ks_ld_f16(const void *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
/* float32 -> BF16 by integer RNE (vcvtneps2bf16 would flush subnormals);
 * NaN -> 0x7FC0 (canon) or sign | 0x7FC0. */
static inline void ks_st_bf16(void *p, ks_vf v, int canon) {
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    __m256i nanv = _mm256_set1_epi32(0x7fc0);
    if (!canon) nanv = _mm256_or_si256(nanv, _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x8000)));
    __m256 isnan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    r = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(nanv), isnan));
    __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storeu_si128((__m128i *)p, h);
}
static inline void ks_st_f16(void *p, ks_vf v) {
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
static inline ks_vf ks_canon(ks_vf v) {
    return _mm256_blendv_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000)),
                            _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}
static inline ks_vf ks_set1(float w) { return _mm256_set1_ps(w); }
static inline ks_vf ks_add(ks_vf a, ks_vf b) { return _mm256_add_ps(a, b); }
static inline ks_vf ks_sub(ks_vf a, ks_vf b) { return _mm256_sub_ps(a, b); }
static inline ks_vf ks_mul(ks_vf a, ks_vf b) { return _mm256_mul_ps(a, b); }
static inline int ks_bad(ks_vf v) {
    __m256i e = _mm256_set1_epi32(0x7f800000);
    __m256i x = _mm256_and_si256(_mm256_castps_si256(v), e);
    return !_mm256_testz_si256(_mm256_cmpeq_epi32(x, e), _mm256_cmpeq_epi32(x, e));
}

static inline ks_vd ks_ld_pd(const void *p) { return _mm256_loadu_pd((const double *)p); }
static inline void ks_st_pd(void *p, ks_vd v) { _mm256_storeu_pd((double *)p, v); }
static inline ks_vd ks_set1d(double w) { return _mm256_set1_pd(w); }
static inline ks_vd ks_addd(ks_vd a, ks_vd b) { return _mm256_add_pd(a, b); }
static inline ks_vd ks_subd(ks_vd a, ks_vd b) { return _mm256_sub_pd(a, b); }
static inline ks_vd ks_muld(ks_vd a, ks_vd b) { return _mm256_mul_pd(a, b); }
static inline ks_vd ks_canond(ks_vd v) {
    return _mm256_blendv_pd(v, _mm256_castsi256_pd(_mm256_set1_epi64x(0x7ff8000000000000ll)),
                            _mm256_cmp_pd(v, v, _CMP_UNORD_Q));
}
static inline int ks_badd(ks_vd v) {
    __m256i e = _mm256_set1_epi64x(0x7ff0000000000000ll);
    __m256i x = _mm256_and_si256(_mm256_castpd_si256(v), e);
    __m256i eq = _mm256_cmpeq_epi64(x, e);
    return !_mm256_testz_si256(eq, eq);
}
static inline void ks_cvt_pd_ps(float *dst, ks_vd v) { _mm_storeu_ps(dst, _mm256_cvtpd_ps(v)); }
/* Round to odd, as hma__f64_to_f32_odd: RNE, then step back towards zero
 * when RNE rounded away from zero, then set the last bit when inexact. */
static inline void ks_odd_pd_ps(float *dst, ks_vd v) {
    __m128 f = _mm256_cvtpd_ps(v);
    __m256d back = _mm256_cvtps_pd(f);
    __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffll));
    __m256d inexact = _mm256_cmp_pd(back, v, _CMP_NEQ_OQ); /* false for NaN */
    __m256d away = _mm256_cmp_pd(_mm256_and_pd(back, absmask), _mm256_and_pd(v, absmask), _CMP_GT_OQ);
    /* the low 32 bits of each all-ones/zero 64-bit mask, packed to 4 lanes */
    const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    __m128i inx = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_castpd_si256(inexact), pick));
    __m128i awy = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_castpd_si256(away), pick));
    __m128i u = _mm_add_epi32(_mm_castps_si128(f), awy); /* -1 where away */
    u = _mm_or_si128(u, _mm_and_si128(inx, _mm_set1_epi32(1)));
    _mm_storeu_si128((__m128i *)dst, u);
}
static inline void ks_st_ps_pd(double *dst, ks_vf v) {
    _mm256_storeu_pd(dst, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    _mm256_storeu_pd(dst + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}
/* 16 BF16: the 16-bit interleave with zero puts each value in the high half
 * of a 32-bit lane (a = elements 0-3, 8-11; b = 4-7, 12-15) ... */
static inline void ks_ld2_bf16(const void *p, ks_vf *a, ks_vf *b) {
    __m256i v = _mm256_loadu_si256((const __m256i *)p), z = _mm256_setzero_si256();
    *a = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, v));
    *b = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, v));
}
static inline __m256i ks_bf16_bits(ks_vf v) { /* RNE to BF16 in the low half, +qNaN for NaN */
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r),
                                                _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc0)),
                                                _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
}
/* ... and the in-lane pack puts them back in order. */
static inline void ks_st2_bf16(void *p, ks_vf a, ks_vf b) {
    _mm256_storeu_si256((__m256i *)p, _mm256_packus_epi32(ks_bf16_bits(a), ks_bf16_bits(b)));
}

#include "merge/kernels_simd.h"

#endif
