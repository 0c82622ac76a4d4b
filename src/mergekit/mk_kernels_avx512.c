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
                          uint64_t cap, uint64_t *cnt_io, uint64_t *above_io) {
    const __m512i vabs = _mm512_set1_epi32(0x7fffffff), vlo = _mm512_set1_epi32((int)lo);
    const __m512i vhi = _mm512_set1_epi32((int)hi), vwid = _mm512_set1_epi32((int)(hi - lo));
    const int delta = hma__mk_keys_delta(k);
    uint64_t cnt = *cnt_io, above = *above_io, e = e0;
    for (; e + 16 <= e1; e += 16) {
        __m512i u = mk_ld16(&k->a, e);
        if (delta)
            u = _mm512_castps_si512(
                _mm512_sub_ps(_mm512_castsi512_ps(u), _mm512_castsi512_ps(mk_ld16(&k->b, e))));
        u = _mm512_and_si512(u, vabs);
        above += (uint64_t)__builtin_popcount(_mm512_cmpgt_epu32_mask(u, vhi));
        __mmask16 in = _mm512_cmple_epu32_mask(_mm512_sub_epi32(u, vlo), vwid);
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
        if (u - lo <= hi - lo) {
            if (cnt < cap) col[cnt] = u;
            cnt++;
        }
    }
    *cnt_io = cnt;
    *above_io = above;
}
#endif
