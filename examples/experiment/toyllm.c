/*
 * toyllm.c: fp32 forward pass and bits-per-byte scorer for the toy Llama
 * model (see toyllm.h and examples/data/toy-llama/README.md).
 *
 * Layout of the work: rows are scored in fixed batches of TL_BATCH rows; each
 * batch runs all linear layers as one cblas_sgemm over its TL_BATCH*(L-1)
 * positions ([M, in] x W^T), and attention row by row with small AVX2
 * kernels (causal, grouped-query, tiles of 3 positions x 2 query heads).
 * Worker threads (the examples' pool, common/pool.h) take batches in order;
 * per-row losses are summed in row order, so the result does not depend on
 * the thread count.
 * Layer 0's q|k|v depend only on the input byte and are tabulated at load.
 *
 * Threading: workers run OpenBLAS single-threaded (rows in parallel). This
 * was measured faster than one worker with threaded BLAS, because attention
 * and the pointwise work are then serial; build with -DTOYLLM_BLAS_THREADS to
 * get the latter (one worker, openblas_set_num_threads(threads)) for
 * comparison.
 *
 * On x86 the pointwise and attention kernels use AVX2+FMA (selected at run
 * time with __builtin_cpu_supports, compiled with target attributes, so no
 * -mavx2 is needed); elsewhere, or without AVX2, plain C versions are used.
 * Define TOYLLM_NO_SIMD to force the plain C versions.
 */
#include "toyllm.h"
#include "pool.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(TOYLLM_NO_SIMD) && (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__GNUC__) || defined(__clang__))
#define TL_X86 1
#include <immintrin.h>
#define TL_AVX2 __attribute__((target("avx2,fma")))
#endif

/* Model shape. */
#define TL_V 256u   /* vocabulary (bytes) */
#define TL_D 256u   /* hidden size */
#define TL_NL 8u    /* layers */
#define TL_FF 512u  /* MLP intermediate size */
#define TL_NH 8u    /* query heads */
#define TL_NKV 4u   /* key/value heads */
#define TL_HD 32u   /* head size */
#define TL_QKV (TL_D + 2u * TL_NKV * TL_HD) /* 512: q | k | v per position */
#define TL_KOFF TL_D                        /* k offset inside a qkv row */
#define TL_VOFF (TL_D + TL_NKV * TL_HD)     /* v offset inside a qkv row */
#define TL_EPS 1e-5f
#define TL_THETA 10000.0f
#define TL_MAXL 65537u

/* Rows per batch (the M of the GEMMs is TL_BATCH * (L-1)). */
#ifndef TL_BATCH
#define TL_BATCH 2u
#endif

typedef struct {
    float *ln1;  /* [D] */
    float *wqkv; /* [QKV][D]: q_proj, k_proj, v_proj rows */
    float *wo;   /* [D][D] */
    float *ln2;  /* [D] */
    float *wgu;  /* [2FF][D]: gate_proj rows, then up_proj rows */
    float *wd;   /* [D][FF] */
} tl_layer;

struct toyllm {
    float *mem;   /* one allocation holding everything below */
    float *embed; /* [V][D] */
    float *qkv0;  /* [V][QKV]: layer-0 q|k|v (before RoPE) of each byte */
    tl_layer layer[TL_NL];
    float *norm;    /* [D] */
    float *lm_head; /* [V][D] */
    int avx2;       /* use the AVX2 kernels */
};

/* ------------------------------------------------------------------------ */
/* small helpers */

static void *tl_alloc(size_t nfloats)
{
    size_t bytes = nfloats * sizeof(float);
    bytes = (bytes + 63u) & ~(size_t)63u;
    if (bytes == 0)
        bytes = 64;
    return aligned_alloc(64, bytes);
}

static int tl_cpu_avx2(void)
{
#ifdef TL_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* C[M][N] = A[M][K] (row stride lda) x W[N][K]^T + beta*C (row stride ldc) */
static void tl_gemm(size_t M, size_t N, size_t K, const float *A, size_t lda,
                    const float *W, float beta, float *C, size_t ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)M, (blasint)N,
                (blasint)K, 1.0f, A, (blasint)lda, W, (blasint)K, beta, C,
                (blasint)ldc);
}

/* ------------------------------------------------------------------------ */
/* plain C kernels */

/* y[r] = w * (x[r] * 1/sqrt(mean(x[r]^2) + eps)) for n rows of D */
static void rmsnorm_c(const float *x, const float *w, float *y, size_t n)
{
    for (size_t r = 0; r < n; r++) {
        const float *xr = x + r * TL_D;
        float *yr = y + r * TL_D;
        float ss = 0.0f;
        for (unsigned j = 0; j < TL_D; j++)
            ss += xr[j] * xr[j];
        float inv = 1.0f / sqrtf(ss / (float)TL_D + TL_EPS);
        for (unsigned j = 0; j < TL_D; j++)
            yr[j] = w[j] * (xr[j] * inv);
    }
}

/* gu rows are [gate(FF) | up(FF)]; gate half := silu(gate) * up */
static void silu_mul_c(float *gu, size_t n)
{
    for (size_t r = 0; r < n; r++) {
        float *g = gu + r * 2u * TL_FF;
        const float *u = g + TL_FF;
        for (unsigned j = 0; j < TL_FF; j++)
            g[j] = g[j] / (1.0f + expf(-g[j])) * u[j];
    }
}

/* -log_softmax(l)[y] over V logits, in float */
static float token_loss_c(const float *l, unsigned y)
{
    float mx = l[0];
    for (unsigned j = 1; j < TL_V; j++)
        mx = l[j] > mx ? l[j] : mx;
    float s = 0.0f;
    for (unsigned j = 0; j < TL_V; j++)
        s += expf(l[j] - mx);
    return -((l[y] - mx) - logf(s));
}

/* S[r][kb..kb+16) = q[r] . k[t] for 6 query rows and keys t < nk (nk a
 * multiple of 16); kt is blocked: [nk/16][HD][16] */
static void qk_tile6_c(const float *const q[6], const float *kt, size_t nk,
                       float *S, size_t lds)
{
    for (size_t kb = 0; kb < nk; kb += 16) {
        const float *b = kt + kb * TL_HD;
        for (unsigned r = 0; r < 6; r++) {
            float acc[16] = {0};
            for (unsigned d = 0; d < TL_HD; d++) {
                float a = q[r][d];
                for (unsigned c = 0; c < 16; c++)
                    acc[c] += a * b[d * 16u + c];
            }
            memcpy(S + r * lds + kb, acc, sizeof acc);
        }
    }
}

/* In place: p[t] = exp(scale*s[t] - max) for t <= i, 0 for i < t < nk;
 * returns 1/sum(p). */
static float softmax_row_c(float *s, size_t i, size_t nk, float scale)
{
    float mx = s[0] * scale;
    for (size_t t = 1; t <= i; t++) {
        float v = s[t] * scale;
        mx = v > mx ? v : mx;
    }
    float sum = 0.0f;
    for (size_t t = 0; t <= i; t++) {
        float e = expf(s[t] * scale - mx);
        s[t] = e;
        sum += e;
    }
    for (size_t t = i + 1; t < nk; t++)
        s[t] = 0.0f;
    return 1.0f / sum;
}

/* out[r][0..HD) = inv[r] * sum_{t<nt} P[r][t] v[t] for 3 rows */
static void pv_tile3_c(const float *P, size_t ldp, const float *v, size_t ldv,
                       size_t nt, float *const out[3], const float inv[3])
{
    for (unsigned r = 0; r < 3; r++) {
        float acc[TL_HD] = {0};
        const float *p = P + r * ldp;
        for (size_t t = 0; t < nt; t++) {
            const float *vt = v + t * ldv;
            for (unsigned d = 0; d < TL_HD; d++)
                acc[d] += p[t] * vt[d];
        }
        for (unsigned d = 0; d < TL_HD; d++)
            out[r][d] = acc[d] * inv[r];
    }
}

/* ------------------------------------------------------------------------ */
/* AVX2 + FMA kernels */
#ifdef TL_X86

/* 2^x for float lanes, x clamped to [-126, 127]: round-to-nearest split
 * x = n + f, |f| <= 1/2, degree-6 Taylor polynomial for 2^f (relative error
 * about 1.5e-7), then 2^n added into the exponent. Never inf or NaN for
 * finite x. */
TL_AVX2 static inline __m256 exp2_avx2(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-126.0f)), _mm256_set1_ps(127.0f));
    __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_sub_ps(x, n);
    __m256 y = _mm256_set1_ps(1.5403530393381608e-4f);
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(1.3333558146428443e-3f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(9.6181291076284772e-3f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(5.5504108664821580e-2f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(2.4022650695910071e-1f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(6.9314718055994531e-1f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(y), e));
}

#define TL_LOG2E 1.44269504088896341f

TL_AVX2 static inline float hsum_avx2(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

TL_AVX2 static inline float hmax_avx2(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

TL_AVX2 static void rmsnorm_avx2(const float *x, const float *w, float *y, size_t n)
{
    for (size_t r = 0; r < n; r++) {
        const float *xr = x + r * TL_D;
        float *yr = y + r * TL_D;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (unsigned j = 0; j < TL_D; j += 16) {
            __m256 v0 = _mm256_loadu_ps(xr + j), v1 = _mm256_loadu_ps(xr + j + 8);
            a0 = _mm256_fmadd_ps(v0, v0, a0);
            a1 = _mm256_fmadd_ps(v1, v1, a1);
        }
        float ss = hsum_avx2(_mm256_add_ps(a0, a1));
        __m256 inv = _mm256_set1_ps(1.0f / sqrtf(ss / (float)TL_D + TL_EPS));
        for (unsigned j = 0; j < TL_D; j += 8)
            _mm256_storeu_ps(yr + j, _mm256_mul_ps(_mm256_loadu_ps(w + j),
                                                   _mm256_mul_ps(_mm256_loadu_ps(xr + j), inv)));
    }
}

TL_AVX2 static void silu_mul_avx2(float *gu, size_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 nl2e = _mm256_set1_ps(-TL_LOG2E);
    for (size_t r = 0; r < n; r++) {
        float *g = gu + r * 2u * TL_FF;
        const float *u = g + TL_FF;
        for (unsigned j = 0; j < TL_FF; j += 8) {
            __m256 gv = _mm256_loadu_ps(g + j);
            __m256 e = exp2_avx2(_mm256_mul_ps(gv, nl2e)); /* exp(-g) */
            __m256 h = _mm256_div_ps(gv, _mm256_add_ps(one, e));
            _mm256_storeu_ps(g + j, _mm256_mul_ps(h, _mm256_loadu_ps(u + j)));
        }
    }
}

TL_AVX2 static float token_loss_avx2(const float *l, unsigned y)
{
    __m256 m0 = _mm256_loadu_ps(l), m1 = _mm256_loadu_ps(l + 8);
    for (unsigned j = 16; j < TL_V; j += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(l + j));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(l + j + 8));
    }
    float mx = hmax_avx2(_mm256_max_ps(m0, m1));
    __m256 vm = _mm256_set1_ps(mx), l2e = _mm256_set1_ps(TL_LOG2E);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (unsigned j = 0; j < TL_V; j += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(l + j), vm);
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(l + j + 8), vm);
        s0 = _mm256_add_ps(s0, exp2_avx2(_mm256_mul_ps(d0, l2e)));
        s1 = _mm256_add_ps(s1, exp2_avx2(_mm256_mul_ps(d1, l2e)));
    }
    float s = hsum_avx2(_mm256_add_ps(s0, s1));
    return -((l[y] - mx) - logf(s));
}

TL_AVX2 static void qk_tile6_avx2(const float *const q[6], const float *kt, size_t nk,
                                  float *S, size_t lds)
{
    const float *q0 = q[0], *q1 = q[1], *q2 = q[2], *q3 = q[3], *q4 = q[4], *q5 = q[5];
    for (size_t kb = 0; kb < nk; kb += 16) {
        const float *b = kt + kb * TL_HD;
        __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
        __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
        __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
        __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
        __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
        __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
        for (unsigned d = 0; d < TL_HD; d++) {
            __m256 b0 = _mm256_loadu_ps(b + d * 16u);
            __m256 b1 = _mm256_loadu_ps(b + d * 16u + 8u);
            __m256 a;
            a = _mm256_broadcast_ss(q0 + d);
            c00 = _mm256_fmadd_ps(a, b0, c00);
            c01 = _mm256_fmadd_ps(a, b1, c01);
            a = _mm256_broadcast_ss(q1 + d);
            c10 = _mm256_fmadd_ps(a, b0, c10);
            c11 = _mm256_fmadd_ps(a, b1, c11);
            a = _mm256_broadcast_ss(q2 + d);
            c20 = _mm256_fmadd_ps(a, b0, c20);
            c21 = _mm256_fmadd_ps(a, b1, c21);
            a = _mm256_broadcast_ss(q3 + d);
            c30 = _mm256_fmadd_ps(a, b0, c30);
            c31 = _mm256_fmadd_ps(a, b1, c31);
            a = _mm256_broadcast_ss(q4 + d);
            c40 = _mm256_fmadd_ps(a, b0, c40);
            c41 = _mm256_fmadd_ps(a, b1, c41);
            a = _mm256_broadcast_ss(q5 + d);
            c50 = _mm256_fmadd_ps(a, b0, c50);
            c51 = _mm256_fmadd_ps(a, b1, c51);
        }
        float *s = S + kb;
        _mm256_storeu_ps(s, c00);
        _mm256_storeu_ps(s + 8, c01);
        s += lds;
        _mm256_storeu_ps(s, c10);
        _mm256_storeu_ps(s + 8, c11);
        s += lds;
        _mm256_storeu_ps(s, c20);
        _mm256_storeu_ps(s + 8, c21);
        s += lds;
        _mm256_storeu_ps(s, c30);
        _mm256_storeu_ps(s + 8, c31);
        s += lds;
        _mm256_storeu_ps(s, c40);
        _mm256_storeu_ps(s + 8, c41);
        s += lds;
        _mm256_storeu_ps(s, c50);
        _mm256_storeu_ps(s + 8, c51);
    }
}

/* As softmax_row_c, with exp(scale*s - max) computed as
 * 2^(s*c - max(s)*c), c = scale*log2(e). nk must be a multiple of 8, > i. */
TL_AVX2 static float softmax_row_avx2(float *s, size_t i, size_t nk, float scale)
{
    const float c = scale * TL_LOG2E;
    const __m256 vc = _mm256_set1_ps(c);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    const __m256i lim = _mm256_set1_epi32((int)i + 1);
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    size_t n8 = (i + 8u) & ~(size_t)7u; /* covers 0..i */
    size_t full = (i + 1u) & ~(size_t)7u; /* blocks with no masked lane */
    __m256 vmax = ninf;
    size_t t = 0;
    for (; t < full; t += 8)
        vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + t));
    __m256 keep = ninf;
    if (full < n8) {
        __m256i ix = _mm256_add_epi32(idx, _mm256_set1_epi32((int)full));
        keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(lim, ix));
        vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(ninf, _mm256_loadu_ps(s + full), keep));
    }
    __m256 mx = _mm256_set1_ps(hmax_avx2(vmax) * c);
    __m256 vsum = _mm256_setzero_ps();
    for (t = 0; t < full; t += 8) {
        __m256 e = exp2_avx2(_mm256_fmsub_ps(_mm256_loadu_ps(s + t), vc, mx));
        _mm256_storeu_ps(s + t, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    if (full < n8) {
        __m256 e = exp2_avx2(_mm256_fmsub_ps(_mm256_loadu_ps(s + full), vc, mx));
        e = _mm256_and_ps(e, keep);
        _mm256_storeu_ps(s + full, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    for (t = n8; t < nk; t += 8)
        _mm256_storeu_ps(s + t, _mm256_setzero_ps());
    return 1.0f / hsum_avx2(vsum);
}

TL_AVX2 static void pv_tile3_avx2(const float *P, size_t ldp, const float *v, size_t ldv,
                                  size_t nt, float *const out[3], const float inv[3])
{
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c02 = _mm256_setzero_ps(), c03 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c12 = _mm256_setzero_ps(), c13 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c22 = _mm256_setzero_ps(), c23 = _mm256_setzero_ps();
    const float *p0 = P, *p1 = P + ldp, *p2 = P + 2u * ldp;
    for (size_t t = 0; t < nt; t++) {
        const float *vt = v + t * ldv;
        __m256 v0 = _mm256_loadu_ps(vt), v1 = _mm256_loadu_ps(vt + 8);
        __m256 v2 = _mm256_loadu_ps(vt + 16), v3 = _mm256_loadu_ps(vt + 24);
        __m256 a = _mm256_broadcast_ss(p0 + t);
        c00 = _mm256_fmadd_ps(a, v0, c00);
        c01 = _mm256_fmadd_ps(a, v1, c01);
        c02 = _mm256_fmadd_ps(a, v2, c02);
        c03 = _mm256_fmadd_ps(a, v3, c03);
        a = _mm256_broadcast_ss(p1 + t);
        c10 = _mm256_fmadd_ps(a, v0, c10);
        c11 = _mm256_fmadd_ps(a, v1, c11);
        c12 = _mm256_fmadd_ps(a, v2, c12);
        c13 = _mm256_fmadd_ps(a, v3, c13);
        a = _mm256_broadcast_ss(p2 + t);
        c20 = _mm256_fmadd_ps(a, v0, c20);
        c21 = _mm256_fmadd_ps(a, v1, c21);
        c22 = _mm256_fmadd_ps(a, v2, c22);
        c23 = _mm256_fmadd_ps(a, v3, c23);
    }
    __m256 s = _mm256_set1_ps(inv[0]);
    _mm256_storeu_ps(out[0], _mm256_mul_ps(c00, s));
    _mm256_storeu_ps(out[0] + 8, _mm256_mul_ps(c01, s));
    _mm256_storeu_ps(out[0] + 16, _mm256_mul_ps(c02, s));
    _mm256_storeu_ps(out[0] + 24, _mm256_mul_ps(c03, s));
    s = _mm256_set1_ps(inv[1]);
    _mm256_storeu_ps(out[1], _mm256_mul_ps(c10, s));
    _mm256_storeu_ps(out[1] + 8, _mm256_mul_ps(c11, s));
    _mm256_storeu_ps(out[1] + 16, _mm256_mul_ps(c12, s));
    _mm256_storeu_ps(out[1] + 24, _mm256_mul_ps(c13, s));
    s = _mm256_set1_ps(inv[2]);
    _mm256_storeu_ps(out[2], _mm256_mul_ps(c20, s));
    _mm256_storeu_ps(out[2] + 8, _mm256_mul_ps(c21, s));
    _mm256_storeu_ps(out[2] + 16, _mm256_mul_ps(c22, s));
    _mm256_storeu_ps(out[2] + 24, _mm256_mul_ps(c23, s));
}

#endif /* TL_X86 */

/* dispatch */
static void rmsnorm(int avx2, const float *x, const float *w, float *y, size_t n)
{
#ifdef TL_X86
    if (avx2) {
        rmsnorm_avx2(x, w, y, n);
        return;
    }
#endif
    (void)avx2;
    rmsnorm_c(x, w, y, n);
}

static void silu_mul(int avx2, float *gu, size_t n)
{
#ifdef TL_X86
    if (avx2) {
        silu_mul_avx2(gu, n);
        return;
    }
#endif
    (void)avx2;
    silu_mul_c(gu, n);
}

static float token_loss(int avx2, const float *l, unsigned y)
{
#ifdef TL_X86
    if (avx2)
        return token_loss_avx2(l, y);
#endif
    (void)avx2;
    return token_loss_c(l, y);
}

/* ------------------------------------------------------------------------ */
/* attention */

/* RoPE (rotate-half) on the q and k heads of T positions of a qkv buffer,
 * in place; cs/sn are [T][HD/2]. */
static void rope_row(float *qkv, size_t T, const float *cs, const float *sn)
{
    const unsigned h2 = TL_HD / 2u;
    for (size_t t = 0; t < T; t++) {
        const float *c = cs + t * h2, *s = sn + t * h2;
        float *row = qkv + t * TL_QKV;
        for (unsigned h = 0; h < TL_NH + TL_NKV; h++) { /* q heads then k heads */
            float *x = row + h * TL_HD;
            for (unsigned i = 0; i < h2; i++) {
                float a = x[i], b = x[i + h2];
                x[i] = a * c[i] - b * s[i];
                x[i + h2] = b * c[i] + a * s[i];
            }
        }
    }
}

/* Causal grouped-query attention for one row of T positions.
 * qkv: [T][QKV] after RoPE; att: [T][D] output (heads concatenated);
 * kt: scratch [NKV][T16*HD]; S: scratch [6][T16]. */
static void attention_row(int avx2, const float *qkv, float *att, size_t T,
                          float *kt, float *S)
{
    const size_t T16 = (T + 15u) & ~(size_t)15u;
    const float scale = 1.0f / sqrtf((float)TL_HD);
    float dummy[TL_HD];

    /* K transposed into blocks of 16 positions: [T16/16][HD][16], zero padded */
    for (unsigned j = 0; j < TL_NKV; j++) {
        float *ktj = kt + j * T16 * TL_HD;
        for (size_t t = 0; t < T16; t++) {
            float *dst = ktj + (t >> 4) * TL_HD * 16u + (t & 15u);
            if (t < T) {
                const float *k = qkv + t * TL_QKV + TL_KOFF + j * TL_HD;
                for (unsigned d = 0; d < TL_HD; d++)
                    dst[d * 16u] = k[d];
            } else {
                for (unsigned d = 0; d < TL_HD; d++)
                    dst[d * 16u] = 0.0f;
            }
        }
    }

    for (unsigned j = 0; j < TL_NKV; j++) {
        const float *ktj = kt + j * T16 * TL_HD;
        const float *v = qkv + TL_VOFF + j * TL_HD;
        /* tiles: positions i0..i0+2 x query heads 2j, 2j+1 */
        for (size_t i0 = 0; i0 < T; i0 += 3) {
            const float *q[6];
            float *out[6];
            size_t pos[6];
            float inv[6];
            for (unsigned r = 0; r < 6; r++) {
                size_t p = i0 + r / 2u;
                unsigned h = 2u * j + (r & 1u);
                if (p < T) {
                    out[r] = att + p * TL_D + h * TL_HD;
                } else { /* padding row: recompute the last position, discard */
                    p = T - 1;
                    out[r] = dummy;
                }
                pos[r] = p;
                q[r] = qkv + p * TL_QKV + h * TL_HD;
            }
            size_t tmax = i0 + 2u < T ? i0 + 2u : T - 1u;
            size_t nk = (tmax + 16u) & ~(size_t)15u;
#ifdef TL_X86
            if (avx2) {
                qk_tile6_avx2(q, ktj, nk, S, T16);
                for (unsigned r = 0; r < 6; r++)
                    inv[r] = softmax_row_avx2(S + r * T16, pos[r], nk, scale);
                pv_tile3_avx2(S, T16, v, TL_QKV, tmax + 1u, out, inv);
                pv_tile3_avx2(S + 3u * T16, T16, v, TL_QKV, tmax + 1u, out + 3, inv + 3);
                continue;
            }
#endif
            (void)avx2;
            qk_tile6_c(q, ktj, nk, S, T16);
            for (unsigned r = 0; r < 6; r++)
                inv[r] = softmax_row_c(S + r * T16, pos[r], nk, scale);
            pv_tile3_c(S, T16, v, TL_QKV, tmax + 1u, out, inv);
            pv_tile3_c(S + 3u * T16, T16, v, TL_QKV, tmax + 1u, out + 3, inv + 3);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* loading */

int toyllm_load(toyllm **out, toyllm_get_fn get, void *ctx)
{
    if (!out)
        return TOYLLM_EINVAL;
    *out = NULL;
    if (!get)
        return TOYLLM_EINVAL;

    const size_t per_layer = TL_D + TL_QKV * TL_D + TL_D * TL_D + TL_D +
                             2u * TL_FF * TL_D + TL_D * TL_FF;
    const size_t total = TL_V * TL_D + TL_V * TL_QKV + TL_NL * per_layer + TL_D +
                         TL_V * TL_D;
    toyllm *m = calloc(1, sizeof *m);
    if (!m)
        return TOYLLM_ENOMEM;
    m->mem = tl_alloc(total);
    float *xn = tl_alloc(TL_V * TL_D);
    if (!m->mem || !xn) {
        free(xn);
        toyllm_free(m);
        return TOYLLM_ENOMEM;
    }
    m->avx2 = tl_cpu_avx2();

    float *p = m->mem;
    m->embed = p, p += TL_V * TL_D;
    m->qkv0 = p, p += TL_V * TL_QKV;
    for (unsigned l = 0; l < TL_NL; l++) {
        tl_layer *ly = &m->layer[l];
        ly->ln1 = p, p += TL_D;
        ly->wqkv = p, p += TL_QKV * TL_D;
        ly->wo = p, p += TL_D * TL_D;
        ly->ln2 = p, p += TL_D;
        ly->wgu = p, p += 2u * TL_FF * TL_D;
        ly->wd = p, p += TL_D * TL_FF;
    }
    m->norm = p, p += TL_D;
    m->lm_head = p, p += TL_V * TL_D;

    int rc = 0;
    char name[96];
#define TL_GET(nm, dst, n)                                \
    do {                                                  \
        if (rc == 0 && get(ctx, (nm), (dst), (n)) != 0)   \
            rc = TOYLLM_EGET;                             \
    } while (0)
    TL_GET("model.embed_tokens.weight", m->embed, (size_t)TL_V * TL_D);
    for (unsigned l = 0; l < TL_NL && rc == 0; l++) {
        tl_layer *ly = &m->layer[l];
        static const char *const fmt[9] = {
            "model.layers.%u.input_layernorm.weight",
            "model.layers.%u.self_attn.q_proj.weight",
            "model.layers.%u.self_attn.k_proj.weight",
            "model.layers.%u.self_attn.v_proj.weight",
            "model.layers.%u.self_attn.o_proj.weight",
            "model.layers.%u.post_attention_layernorm.weight",
            "model.layers.%u.mlp.gate_proj.weight",
            "model.layers.%u.mlp.up_proj.weight",
            "model.layers.%u.mlp.down_proj.weight",
        };
        float *dst[9] = {ly->ln1,
                         ly->wqkv,
                         ly->wqkv + TL_D * TL_D,
                         ly->wqkv + (TL_D + TL_NKV * TL_HD) * TL_D,
                         ly->wo,
                         ly->ln2,
                         ly->wgu,
                         ly->wgu + TL_FF * TL_D,
                         ly->wd};
        const size_t n[9] = {TL_D,
                             TL_D * TL_D,
                             TL_NKV * TL_HD * TL_D,
                             TL_NKV * TL_HD * TL_D,
                             TL_D * TL_D,
                             TL_D,
                             TL_FF * TL_D,
                             TL_FF * TL_D,
                             TL_D * TL_FF};
        for (unsigned k = 0; k < 9; k++) {
            snprintf(name, sizeof name, fmt[k], l);
            TL_GET(name, dst[k], n[k]);
        }
    }
    TL_GET("model.norm.weight", m->norm, (size_t)TL_D);
    TL_GET("lm_head.weight", m->lm_head, (size_t)TL_V * TL_D);
#undef TL_GET
    if (rc != 0) {
        free(xn);
        toyllm_free(m);
        return rc;
    }

    /* Layer 0 input depends only on the byte: precompute its q|k|v. */
    rmsnorm(m->avx2, m->embed, m->layer[0].ln1, xn, TL_V);
    /* small: run it single-threaded rather than waking OpenBLAS's pool */
    int blas_prev = openblas_get_num_threads();
    if (blas_prev != 1)
        openblas_set_num_threads(1);
    tl_gemm(TL_V, TL_QKV, TL_D, xn, TL_D, m->layer[0].wqkv, 0.0f, m->qkv0, TL_QKV);
    if (blas_prev != 1)
        openblas_set_num_threads(blas_prev);
    free(xn);
    *out = m;
    return 0;
}

void toyllm_free(toyllm *m)
{
    if (!m)
        return;
    free(m->mem);
    free(m);
}

/* ------------------------------------------------------------------------ */
/* eval set */

int toyllm_evalset_load(toyllm_evalset *es, const char *path)
{
    if (!es)
        return TOYLLM_EINVAL;
    memset(es, 0, sizeof *es);
    if (!path)
        return TOYLLM_EINVAL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return TOYLLM_EIO;
    unsigned char h[8];
    int rc = 0;
    if (fread(h, 1, 8, f) != 8) {
        fclose(f);
        return TOYLLM_EFORMAT;
    }
    uint32_t n = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 |
                 (uint32_t)h[3] << 24;
    uint32_t L = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 |
                 (uint32_t)h[7] << 24;
    if (n < 1 || L < 2 || (uint64_t)n * L > (uint64_t)(SIZE_MAX / 2u)) {
        fclose(f);
        return TOYLLM_EFORMAT;
    }
    size_t sz = (size_t)n * L;
    unsigned char *code = malloc(sz), *prose = malloc(sz);
    if (!code || !prose) {
        rc = TOYLLM_ENOMEM;
    } else if (fread(code, 1, sz, f) != sz || fread(prose, 1, sz, f) != sz) {
        rc = ferror(f) ? TOYLLM_EIO : TOYLLM_EFORMAT;
    } else if (fgetc(f) != EOF) {
        rc = TOYLLM_EFORMAT; /* trailing bytes */
    } else if (ferror(f)) {
        rc = TOYLLM_EIO;
    }
    fclose(f);
    if (rc != 0) {
        free(code);
        free(prose);
        return rc;
    }
    es->n = n;
    es->L = L;
    es->code = code;
    es->prose = prose;
    return 0;
}

void toyllm_evalset_free(toyllm_evalset *es)
{
    if (!es)
        return;
    free(es->code);
    free(es->prose);
    memset(es, 0, sizeof *es);
}

/* ------------------------------------------------------------------------ */
/* scoring */

typedef struct {
    const toyllm *m;
    const unsigned char *rows;
    unsigned nrows, L;
    const float *cs, *sn; /* RoPE tables [L-1][HD/2] */
    double *rowloss;      /* [nrows]: summed natural-log loss of each row */
} tl_job;

/* Scores rows [r0, r0+nr) into job->rowloss using workspace w. */
static void score_batch(tl_job *job, unsigned r0, unsigned nr, float *w)
{
    const toyllm *m = job->m;
    const int avx2 = m->avx2;
    const size_t L = job->L, T = L - 1u, T16 = (T + 15u) & ~(size_t)15u;
    const size_t M = (size_t)nr * T;
    const size_t Mmax = (size_t)TL_BATCH * T;
    float *x = w;                       /* [M][D] residual stream */
    float *xn = x + Mmax * TL_D;        /* [M][D] normed */
    float *qkv = xn + Mmax * TL_D;      /* [M][QKV]; logits at the end */
    float *att = qkv + Mmax * TL_QKV;   /* [M][D] */
    float *gu = att + Mmax * TL_D;      /* [M][2FF] */
    float *kt = gu + Mmax * 2u * TL_FF; /* [NKV][T16*HD] */
    float *S = kt + TL_NKV * T16 * TL_HD; /* [6][T16] */

    for (unsigned r = 0; r < nr; r++) {
        const unsigned char *row = job->rows + (size_t)(r0 + r) * L;
        for (size_t t = 0; t < T; t++) {
            memcpy(x + ((size_t)r * T + t) * TL_D, m->embed + (size_t)row[t] * TL_D,
                   TL_D * sizeof(float));
            memcpy(qkv + ((size_t)r * T + t) * TL_QKV, m->qkv0 + (size_t)row[t] * TL_QKV,
                   TL_QKV * sizeof(float));
        }
    }
    for (unsigned l = 0; l < TL_NL; l++) {
        const tl_layer *ly = &m->layer[l];
        if (l > 0) {
            rmsnorm(avx2, x, ly->ln1, xn, M);
            tl_gemm(M, TL_QKV, TL_D, xn, TL_D, ly->wqkv, 0.0f, qkv, TL_QKV);
        }
        for (unsigned r = 0; r < nr; r++) {
            float *q = qkv + (size_t)r * T * TL_QKV;
            rope_row(q, T, job->cs, job->sn);
            attention_row(avx2, q, att + (size_t)r * T * TL_D, T, kt, S);
        }
        tl_gemm(M, TL_D, TL_D, att, TL_D, ly->wo, 1.0f, x, TL_D); /* x += o_proj */
        rmsnorm(avx2, x, ly->ln2, xn, M);
        tl_gemm(M, 2u * TL_FF, TL_D, xn, TL_D, ly->wgu, 0.0f, gu, 2u * TL_FF);
        silu_mul(avx2, gu, M);
        tl_gemm(M, TL_D, TL_FF, gu, 2u * TL_FF, ly->wd, 1.0f, x, TL_D); /* x += mlp */
    }
    rmsnorm(avx2, x, m->norm, xn, M);
    float *logits = qkv;
    tl_gemm(M, TL_V, TL_D, xn, TL_D, m->lm_head, 0.0f, logits, TL_V);
    for (unsigned r = 0; r < nr; r++) {
        const unsigned char *row = job->rows + (size_t)(r0 + r) * L;
        double sum = 0.0;
        for (size_t t = 0; t < T; t++)
            sum += (double)token_loss(avx2, logits + ((size_t)r * T + t) * TL_V, row[t + 1]);
        job->rowloss[r0 + r] = sum;
    }
}

/* Pool jobs (common/pool.h): one batch of rows each, on a per-thread workspace. */
static int score_scratch_new(void *ctx, void **scratch)
{
    const tl_job *job = ctx;
    const size_t T = job->L - 1u, T16 = (T + 15u) & ~(size_t)15u;
    const size_t Mmax = (size_t)TL_BATCH * T;
    *scratch = tl_alloc(Mmax * (TL_D + TL_D + TL_QKV + TL_D + 2u * TL_FF) +
                        TL_NKV * T16 * TL_HD + 6u * T16);
    return *scratch ? 0 : TOYLLM_ENOMEM;
}

static void score_scratch_free(void *ctx, void *scratch)
{
    (void)ctx;
    free(scratch);
}

static int score_job(void *ctx, void *scratch, size_t b)
{
    tl_job *job = ctx;
    unsigned r0 = (unsigned)b * TL_BATCH;
    unsigned nr = job->nrows - r0 < TL_BATCH ? job->nrows - r0 : TL_BATCH;
    score_batch(job, r0, nr, scratch);
    return 0;
}

int toyllm_score(const toyllm *m, const unsigned char *rows, unsigned nrows,
                 unsigned L, int threads, double *bits_per_byte)
{
    if (!m || !rows || !bits_per_byte || nrows == 0 || L < 2 || L > TL_MAXL ||
        threads < 1)
        return TOYLLM_EINVAL;
    const size_t T = L - 1u;
    const unsigned h2 = TL_HD / 2u;
    tl_job job;
    memset(&job, 0, sizeof job);
    float *cs = tl_alloc(T * h2), *sn = tl_alloc(T * h2);
    double *rowloss = malloc((size_t)nrows * sizeof(double));
    if (!cs || !sn || !rowloss) {
        free(cs);
        free(sn);
        free(rowloss);
        return TOYLLM_ENOMEM;
    }
    /* RoPE tables computed as Hugging Face does, in float:
     * inv_freq[i] = 1 / theta^(2i/HD), angle = pos * inv_freq[i]. */
    for (unsigned i = 0; i < h2; i++) {
        float inv_freq = 1.0f / powf(TL_THETA, (float)(2u * i) / (float)TL_HD);
        for (size_t t = 0; t < T; t++) {
            float a = (float)t * inv_freq;
            cs[t * h2 + i] = cosf(a);
            sn[t * h2 + i] = sinf(a);
        }
    }
    job.m = m;
    job.rows = rows;
    job.nrows = nrows;
    job.L = L;
    job.cs = cs;
    job.sn = sn;
    job.rowloss = rowloss;
    const unsigned nbatch = (nrows + TL_BATCH - 1u) / TL_BATCH;
    unsigned nth = (unsigned)threads < nbatch ? (unsigned)threads : nbatch;
#ifdef TOYLLM_BLAS_THREADS
    /* experiment: one worker, threaded BLAS */
    int blas_prev = openblas_get_num_threads();
    openblas_set_num_threads(threads);
    nth = 1;
#else
    /* Each worker calls BLAS single-threaded (rows in parallel is faster than
     * BLAS threads here); process-wide OpenBLAS setting, restored below. */
    int blas_prev = openblas_get_num_threads();
    if (blas_prev != 1)
        openblas_set_num_threads(1);
#endif
    ex_pool_job pj = {.count = nbatch,
                      .run = score_job,
                      .ctx = &job,
                      .scratch_new = score_scratch_new,
                      .scratch_free = score_scratch_free};
    int rc = ex_pool_run(&pj, nth); /* the calling thread works too */
    if (blas_prev != openblas_get_num_threads())
        openblas_set_num_threads(blas_prev);

    if (rc == 0) {
        double total = 0.0;
        for (unsigned r = 0; r < nrows; r++)
            total += rowloss[r];
        *bits_per_byte = total / ((double)nrows * (double)T) / log(2.0);
    }
    free(cs);
    free(sn);
    free(rowloss);
    return rc;
}
