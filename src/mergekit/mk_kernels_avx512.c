/*
 * mk_kernels_avx512.c - the AVX-512 inner loop of the range-mode selection
 * pass (mk_select.c, range_part): keys |a - b| (or |a|) of raw BF16 or
 * float32 sources, the count of keys above the range and the in-range keys
 * collected in index order. Compiled with AVX-512 flags (the Makefile's
 * %kernels_avx512.o pattern) and entered only when hma__cpu_level() says
 * AVX-512. The keys are the scalar loop's bit for bit (one float32
 * subtraction per element, the sign bit cleared) and vpcompressd keeps
 * index order, so the collected keys and counts are the scalar ones.
 */
#include "mergekit/mk_sparse.h"

#include "core/cpu.h"

#ifdef HMA_HAVE_AVX512_KERNELS
#include <immintrin.h>

/* 16 elements of a source as float32 bits (BF16: bits << 16, exact). */
static inline __m512i mk_ld16(const hma__mk_in *s, uint64_t e) {
    if (s->f) return _mm512_loadu_si512((const void *)(s->f + e));
    const unsigned char *r = (const unsigned char *)s->raw + e * 2;
    return _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)r)), 16);
}

int hma__mk_range_avx512_ok(const hma__mk_in *s) { return s->f != NULL || s->dt == HMA_DTYPE_BF16; }

void hma__mk_range_avx512(const hma__mk_keys *k, uint64_t e0, uint64_t e1, uint32_t lo, uint32_t hi, uint32_t *col,
                          uint64_t cap, hma__mk_rcount *c) {
    /* (lo, hi) as u - (lo + 1) <= hi - lo - 2, unsigned; empty when hi < lo + 2 */
    const int open = hi - lo >= 2;
    const __m512i vabs = _mm512_set1_epi32(0x7fffffff), vlo1 = _mm512_set1_epi32((int)(lo + 1));
    const __m512i vlo = _mm512_set1_epi32((int)lo), vhi = _mm512_set1_epi32((int)hi);
    const __m512i vwid = _mm512_set1_epi32(open ? (int)(hi - lo - 2) : 0);
    const __mmask16 lo_ok = lo != hi ? 0xffff : 0, in_ok = open ? 0xffff : 0;
    const int delta = hma__mk_keys_delta(k);
    uint64_t cnt = c->in, above = c->above, eqhi = c->eq_hi, eqlo = c->eq_lo, e = e0;
    for (; e + 16 <= e1; e += 16) {
        __m512i u = mk_ld16(&k->a, e);
        if (delta)
            u = _mm512_castps_si512(
                _mm512_sub_ps(_mm512_castsi512_ps(u), _mm512_castsi512_ps(mk_ld16(&k->b, e))));
        u = _mm512_and_si512(u, vabs);
        above += (uint64_t)__builtin_popcount(_mm512_cmpgt_epu32_mask(u, vhi));
        eqhi += (uint64_t)__builtin_popcount(_mm512_cmpeq_epu32_mask(u, vhi));
        eqlo += (uint64_t)__builtin_popcount(_mm512_mask_cmpeq_epu32_mask(lo_ok, u, vlo));
        __mmask16 in = _mm512_mask_cmple_epu32_mask(in_ok, _mm512_sub_epi32(u, vlo1), vwid);
        unsigned pc = (unsigned)__builtin_popcount(in);
        /* register compress + masked store: the memory form of vpcompressd
         * is very slow on some cores; past cap only the count matters (the
         * caller then falls back) */
        if (pc && cnt + pc <= cap)
            _mm512_mask_storeu_epi32(col + cnt, (__mmask16)((1u << pc) - 1u), _mm512_maskz_compress_epi32(in, u));
        cnt += pc;
    }
    for (; e < e1; e++) {
        float a = hma__mk_in_at(&k->a, e);
        if (delta) a -= hma__mk_in_at(&k->b, e);
        uint32_t u = hma__mk_key_bits(a);
        above += u > hi;
        eqhi += u == hi;
        eqlo += lo != hi && u == lo;
        if (open && u - (lo + 1) <= hi - lo - 2) {
            if (cnt < cap) col[cnt] = u;
            cnt++;
        }
    }
    c->in = cnt;
    c->above = above;
    c->eq_hi = eqhi;
    c->eq_lo = eqlo;
}
#endif

#ifdef HMA_HAVE_AVX512_KERNELS
/*
 * The combining pass of mk_gta.c for one block whose masks are all "keep
 * keys >= lim" (ALL: lim 0; TOP once the block's budget is settled), 16
 * elements at a time, sources read raw: the operations of gta_weighted and
 * gta_consensus / gta_plain in the same order on the same float32 values
 * (no FMA: -ffp-contract=off), so the same bits.
 */
void hma__mk_gta_avx512(const hma__mk_gta_k *k, uint64_t e, size_t len, float *o) {
    const __m512i vabs = _mm512_set1_epi32(0x7fffffff);
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    size_t T = k->T;
    for (size_t j = 0; j + 16 <= len; j += 16) {
        __m512 b = _mm512_castsi512_ps(mk_ld16(&k->base, e + j));
        __m512 wd[HMA__MK_GTA_MAXT];
        for (size_t s = 0; s < T; s++) {
            __m512 d = _mm512_sub_ps(_mm512_castsi512_ps(mk_ld16(&k->x[s], e + j)), b);
            __mmask16 keep = _mm512_cmpge_epu32_mask(_mm512_and_si512(_mm512_castps_si512(d), vabs),
                                                     _mm512_set1_epi32((int)k->lim[s]));
            __m512 v = _mm512_maskz_mov_ps(keep, d);
            wd[s] = _mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(k->f[s])), _mm512_set1_ps(k->w[s]));
        }
        __m512 mixed = zero;
        if (k->consensus) {
            __m512 acc = zero, div = zero;
            for (size_t s = 0; s < T; s++) acc = _mm512_add_ps(acc, wd[s]);
            __mmask16 pos = _mm512_cmp_ps_mask(acc, zero, _CMP_GE_OQ);
            for (size_t s = 0; s < T; s++) {
                __mmask16 counted = (__mmask16)((pos & _mm512_cmp_ps_mask(wd[s], zero, _CMP_GT_OQ)) |
                                                (~pos & _mm512_cmp_ps_mask(wd[s], zero, _CMP_LT_OQ)));
                mixed = _mm512_add_ps(mixed, _mm512_maskz_mov_ps(counted, wd[s]));
                div = _mm512_add_ps(div, _mm512_maskz_mov_ps(counted, _mm512_set1_ps(k->w[s])));
            }
            if (k->normalize)
                mixed = _mm512_div_ps(mixed, _mm512_mask_mov_ps(div, _mm512_cmp_ps_mask(div, zero, _CMP_EQ_OQ), one));
        } else {
            for (size_t s = 0; s < T; s++) mixed = _mm512_add_ps(mixed, wd[s]);
            if (k->normalize) mixed = _mm512_div_ps(mixed, _mm512_set1_ps(k->divisor));
        }
        if (k->apply_lambda) mixed = _mm512_mul_ps(mixed, _mm512_set1_ps(k->lambda));
        _mm512_storeu_ps(o + j, _mm512_add_ps(b, mixed));
    }
}
#endif

#ifdef HMA_HAVE_AVX512_KERNELS
uint64_t hma__mk_count_eq_avx512(const hma__mk_in *x, const hma__mk_in *b, uint64_t e, size_t len, uint32_t thr) {
    const __m512i vabs = _mm512_set1_epi32(0x7fffffff), vt = _mm512_set1_epi32((int)thr);
    uint64_t n = 0;
    for (size_t j = 0; j + 16 <= len; j += 16) {
        __m512 d = _mm512_sub_ps(_mm512_castsi512_ps(mk_ld16(x, e + j)), _mm512_castsi512_ps(mk_ld16(b, e + j)));
        n += (uint64_t)__builtin_popcount(_mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(d), vabs), vt));
    }
    return n;
}
#endif
