/*
 * test_kernels.c - the arithmetic kernels (src/merge/kernels.h): scalar path
 * against independent references, every SIMD path this CPU has against the
 * scalar path bit for bit.
 *
 * HMA_SIMD=scalar|avx2|avx512 restricts the SIMD comparisons to that one
 * path (the scalar reference checks always run); a path the CPU lacks is
 * reported as skipped. The program prints which paths it exercised.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "merge/kernels.h"

/* ---- paths under test ---------------------------------------------------- */

static int g_paths[HMA__KPATH_COUNT];
static int g_npaths;
static int g_exercised[HMA__KPATH_COUNT];

static int setup_paths(void) {
    const char *env = getenv("HMA_SIMD");
    int want = -1;
    if (env && *env) {
        for (int p = 0; p < HMA__KPATH_COUNT; p++)
            if (strcmp(env, hma__cpu_level_name(p)) == 0) want = p;
        if (want < 0) {
            fprintf(stderr, "test_kernels: HMA_SIMD=%s is not scalar, avx2 or avx512\n", env);
            return -1;
        }
    }
    printf("test_kernels: CPU paths:");
    for (int p = 0; p < HMA__KPATH_COUNT; p++)
        printf(" %s=%s", hma__cpu_level_name(p), hma__cpu_level_available(p) ? "yes" : "no");
    printf("; best=%s\n", hma__cpu_level_name(hma__cpu_level()));
    g_npaths = 0;
    for (int p = 0; p < HMA__KPATH_COUNT; p++) {
        if (want >= 0 && p != want) continue;
        if (!hma__cpu_level_available(p)) {
            printf("test_kernels: path %s not available on this CPU: SKIPPED\n", hma__cpu_level_name(p));
            continue;
        }
        g_paths[g_npaths++] = p;
    }
    return 0;
}

/* ---- random numbers -------------------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static size_t rndn(size_t n) { return (size_t)(rnd() % n); }

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint64_t dbits(double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}
static double bitsd(uint64_t u) {
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* ---- independent reference conversions -------------------------------------
 * Rounding by scaling to an integer grid and rint() (RNE), in double: a
 * method unrelated to the bit tricks in kernels.c. */

typedef struct fmt {
    int p, emin, emax;
} fmt;
static const fmt FMT_BF16 = {8, -126, 127}, FMT_F16 = {11, -14, 15}, FMT_F32 = {24, -126, 127};

/* d (finite) correctly rounded to the format; +-inf on overflow. */
static double ref_round(double d, fmt f) {
    if (d == 0) return d;
    int ex;
    frexp(fabs(d), &ex);
    int e = ex - 1;
    if (e < f.emin) e = f.emin;
    double q = ldexp(1.0, e - (f.p - 1));
    double r = rint(d / q) * q;
    if (fabs(r) >= ldexp(1.0, f.emax + 1)) return copysign(INFINITY, d);
    return r;
}
/* Encode an exactly representable F16 value (or inf). */
static uint16_t ref_f16_encode(double r) {
    uint16_t s = signbit(r) ? 0x8000 : 0;
    double a = fabs(r);
    if (isinf(a)) return s | 0x7c00;
    if (a < ldexp(1.0, -14)) return s | (uint16_t)(a / ldexp(1.0, -24));
    int ex;
    double m = frexp(a, &ex); /* a = m 2^ex, m in [0.5, 1) */
    return s | (uint16_t)((ex - 1 + 15) << 10) | (uint16_t)((m * 2 - 1) * 1024);
}
static double ref_f16_decode(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double s = (h & 0x8000) ? -1 : 1;
    if (e == 31) return m ? NAN : s * INFINITY;
    if (e == 0) return s * ldexp(m, -24);
    return s * ldexp(1024 + m, e - 25);
}
/* Reference double -> 16-bit format, NaN by the documented rules. */
static uint16_t ref_to_bf16(double d) {
    if (isnan(d)) {
        float f = (float)d; /* the documented path for F64 NaNs: through float */
        return (uint16_t)(((fbits(f) >> 16) & 0x8000) | 0x7fc0);
    }
    return (uint16_t)(fbits((float)ref_round(d, FMT_BF16)) >> 16);
}
static uint16_t ref_to_f16(double d) {
    if (isnan(d)) {
        uint32_t u = fbits((float)d);
        return (uint16_t)(((u >> 16) & 0x8000) | 0x7e00 | ((u >> 13) & 0x3ff));
    }
    return ref_f16_encode(ref_round(d, FMT_F16));
}

/* ---- element access for the references ---------------------------------- */

static double ref_ld(hma_dtype dt, const void *p, size_t i) {
    const unsigned char *b = p;
    uint16_t h;
    float f;
    double d;
    switch (dt) {
    case HMA_DTYPE_BF16:
        memcpy(&h, b + 2 * i, 2);
        return bitsf((uint32_t)h << 16);
    case HMA_DTYPE_F16:
        memcpy(&h, b + 2 * i, 2);
        return ref_f16_decode(h);
    case HMA_DTYPE_F32:
        memcpy(&f, b + 4 * i, 4);
        return f;
    default:
        memcpy(&d, b + 8 * i, 8);
        return d;
    }
}
static size_t dsize(hma_dtype dt) { return dt == HMA_DTYPE_F64 ? 8 : dt == HMA_DTYPE_F32 ? 4 : 2; }
static const hma_dtype DTS[4] = {HMA_DTYPE_F16, HMA_DTYPE_BF16, HMA_DTYPE_F32, HMA_DTYPE_F64};

/* Store the canonical-NaN-or-rounded result of a combine. */
static void ref_store(hma_dtype dt, void *p, size_t i, double v) {
    unsigned char *b = p;
    if (isnan(v)) {
        uint16_t h = dt == HMA_DTYPE_BF16 ? 0x7fc0 : 0x7e00;
        uint32_t u = 0x7fc00000u;
        uint64_t q = 0x7ff8000000000000ull;
        if (dt == HMA_DTYPE_F32) memcpy(b + 4 * i, &u, 4);
        else if (dt == HMA_DTYPE_F64) memcpy(b + 8 * i, &q, 8);
        else memcpy(b + 2 * i, &h, 2);
        return;
    }
    if (dt == HMA_DTYPE_BF16) {
        uint16_t h = ref_to_bf16(v);
        memcpy(b + 2 * i, &h, 2);
    } else if (dt == HMA_DTYPE_F16) {
        uint16_t h = ref_to_f16(v);
        memcpy(b + 2 * i, &h, 2);
    } else if (dt == HMA_DTYPE_F32) {
        float f = isinf(v) ? (float)v : (float)ref_round(v, FMT_F32);
        memcpy(b + 4 * i, &f, 4);
    } else {
        memcpy(b + 8 * i, &v, 8);
    }
}

/* ---- data -------------------------------------------------------------------- */

static const uint16_t SPEC_BF16[] = {0x7fc0, 0xffc1, 0x7f81, 0x7f80, 0xff80, 0x0000, 0x8000,
                                     0x0001, 0x8001, 0x007f, 0x0080, 0x7f7f, 0xff7f, 0x3f80};
static const uint16_t SPEC_F16[] = {0x7e00, 0xfe01, 0x7c01, 0x7c00, 0xfc00, 0x0000, 0x8000,
                                    0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x3c00};
static const uint32_t SPEC_F32[] = {0x7fc00000u, 0xffc00123u, 0x7f800001u, 0x7f800000u, 0xff800000u,
                                    0x00000000u, 0x80000000u, 0x00000001u, 0x80000001u, 0x007fffffu,
                                    0x00800000u, 0x7f7fffffu, 0xff7fffffu, 0x477ff000u, 0x33000000u,
                                    0x3f808000u, 0x3f818000u, 0x477fe000u};
static const uint64_t SPEC_F64[] = {0x7ff8000000000000ull, 0xfff0000000000123ull, 0x7ff0000000000001ull,
                                    0x7ff0000000000000ull, 0xfff0000000000000ull, 0, 0x8000000000000000ull,
                                    1, 0x800fffffffffffffull, 0x7fefffffffffffffull, 0x47efffffe0000000ull,
                                    0x47effffff0000000ull, 0x3ff0100000000000ull, 0x3ff0100000000001ull,
                                    0x36a0000000000000ull, 0x40effe0000000000ull};

/* Fill n elements of dt. special: percentage of special values (incl. NaN/Inf). */
static void fill(hma_dtype dt, void *p, size_t n, int special) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        int r = (int)rndn(100);
        double v = ldexp((double)(rnd() >> 11) / 9007199254740992.0 + 1.0, (int)rndn(41) - 20);
        if (rnd() & 1) v = -v;
        if (dt == HMA_DTYPE_BF16) {
            uint16_t h = (uint16_t)(fbits((float)v) >> 16);
            if (r < special) h = SPEC_BF16[rndn(sizeof SPEC_BF16 / 2)];
            else if (r < 2 * special) h = (uint16_t)rnd();
            memcpy(b + 2 * i, &h, 2);
        } else if (dt == HMA_DTYPE_F16) {
            uint16_t h = ref_to_f16(ldexp(v, -6));
            if (r < special) h = SPEC_F16[rndn(sizeof SPEC_F16 / 2)];
            else if (r < 2 * special) h = (uint16_t)rnd();
            memcpy(b + 2 * i, &h, 2);
        } else if (dt == HMA_DTYPE_F32) {
            uint32_t u = fbits((float)v) ^ (uint32_t)(rnd() & 0xff);
            if (r < special) u = SPEC_F32[rndn(sizeof SPEC_F32 / 4)];
            else if (r < 2 * special) u = (uint32_t)rnd();
            memcpy(b + 4 * i, &u, 4);
        } else {
            uint64_t u = dbits(v) ^ (rnd() & 0xffffff);
            if (r < special) u = SPEC_F64[rndn(sizeof SPEC_F64 / 8)];
            else if (r < 2 * special) u = rnd();
            memcpy(b + 8 * i, &u, 8);
        }
    }
}

/* A buffer whose data pointer is deliberately misaligned by `off` bytes. */
typedef struct buf {
    unsigned char *mem, *p;
} buf;
static buf buf_new(size_t bytes, size_t off) {
    buf b;
    b.mem = malloc(bytes + 16);
    assert_non_null(b.mem);
    memset(b.mem, 0xa5, bytes + 16);
    b.p = b.mem + off;
    return b;
}

/* ---- scalar conversions against the references ------------------------------ */

static uint16_t ref_f32_to_bf16(float f) {
    if (isnan(f)) return (uint16_t)(((fbits(f) >> 16) & 0x8000) | 0x7fc0);
    return ref_to_bf16(f);
}

static void test_bf16_rne(void **state) {
    (void)state;
    /* every high half with the low halves around the rounding boundary */
    static const uint32_t lows[] = {0, 1, 0x7fff, 0x8000, 0x8001, 0xffff, 0x1234};
    for (uint32_t hi = 0; hi < 65536; hi++)
        for (size_t k = 0; k < sizeof lows / sizeof lows[0]; k++) {
            float f = bitsf((hi << 16) | lows[k]);
            uint16_t got = hma__f32_to_bf16(f), want = ref_f32_to_bf16(f);
            if (got != want) fail_msg("bf16(%08x) = %04x, want %04x", fbits(f), got, want);
        }
    for (int i = 0; i < 1000000; i++) {
        float f = bitsf((uint32_t)rnd());
        uint16_t got = hma__f32_to_bf16(f), want = ref_f32_to_bf16(f);
        if (got != want) fail_msg("bf16(%08x) = %04x, want %04x", fbits(f), got, want);
    }
}

static void test_f16_rne(void **state) {
    (void)state;
    for (int i = 0; i < 1500000; i++) {
        uint32_t u = (uint32_t)rnd();
        if (i & 1) u = (u & 0x8fffffffu) | 0x30000000u; /* bias towards the F16 range */
        float f = bitsf(u);
        uint16_t got = hma__f32_to_f16(f), want = ref_to_f16(f);
        if (got != want) fail_msg("f16(%08x) = %04x, want %04x", u, got, want);
    }
    for (size_t k = 0; k < sizeof SPEC_F32 / 4; k++) {
        float f = bitsf(SPEC_F32[k]);
        assert_int_equal(hma__f32_to_f16(f), ref_to_f16(f));
    }
}

/* The scalar F16 conversions must equal the F16C instructions bit for bit
 * (the AVX paths use them); checked when this CPU has them. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx,f16c"))) static void f16c_cvt(const float *in, uint16_t *out) {
    _mm_storeu_si128((__m128i *)out, _mm256_cvtps_ph(_mm256_loadu_ps(in), _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("avx,f16c"))) static void f16c_cvt_back(const uint16_t *in, float *out) {
    _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)in)));
}
#endif
static void test_f16_vs_f16c(void **state) {
    (void)state;
#if defined(__x86_64__) && defined(__GNUC__)
    if (!hma__cpu_level_available(HMA_SIMD_AVX2)) {
        skip(); /* no F16C on this CPU: reported as skipped, not passed */
    }
    float in[8];
    uint16_t out[8];
    for (int i = 0; i < 400000; i++) {
        for (int j = 0; j < 8; j++) {
            uint32_t u = (uint32_t)rnd();
            if (j & 1) u = (u & 0x8fffffffu) | 0x30000000u;
            if (j == 7) u = (u & 0x807fffffu) | 0x7f800000u; /* Inf/NaN payloads */
            in[j] = bitsf(u);
        }
        f16c_cvt(in, out);
        for (int j = 0; j < 8; j++)
            if (hma__f32_to_f16(in[j]) != out[j])
                fail_msg("f16(%08x): scalar %04x, F16C %04x", fbits(in[j]), hma__f32_to_f16(in[j]), out[j]);
    }
    for (uint32_t h = 0; h < 65536; h += 8) {
        uint16_t hin[8];
        float f[8];
        for (int j = 0; j < 8; j++) hin[j] = (uint16_t)(h + (uint32_t)j);
        f16c_cvt_back(hin, f);
        for (int j = 0; j < 8; j++) assert_int_equal(fbits(hma__f16_to_f32(hin[j])), fbits(f[j]));
    }
#endif
}

static void test_round_trips(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t b = (uint16_t)h;
        int nan_bf = (b & 0x7f80) == 0x7f80 && (b & 0x7f);
        float f = hma__bf16_to_f32(b);
        assert_int_equal(hma__f32_to_bf16(f), nan_bf ? ((b & 0x8000) | 0x7fc0) : b);
        int nan_h = (b & 0x7c00) == 0x7c00 && (b & 0x3ff);
        float g = hma__f16_to_f32(b);
        if (!nan_h) assert_true(g == (float)ref_f16_decode(b) && !signbit(g) == !signbit(ref_f16_decode(b)));
        else assert_true(isnan(g));
        assert_int_equal(hma__f32_to_f16(g), nan_h ? (b | 0x0200) : b);
        /* via double as well */
        assert_int_equal(hma__f64_to_bf16((double)f), nan_bf ? ((b & 0x8000) | 0x7fc0) : b);
        assert_int_equal(hma__f64_to_f16((double)g), nan_h ? (b | 0x0200) : b);
    }
}

static void test_f64_conversions(void **state) {
    (void)state;
    for (int i = 0; i < 600000; i++) {
        uint64_t u = rnd();
        switch (i % 4) {
        case 0: u = (u & 0x800fffffffffffffull) | ((uint64_t)(896 + rndn(260)) << 52); break;   /* near float/bf16 range */
        case 1: u = (u & 0x800fffffffffffffull) | ((uint64_t)(1000 + rndn(40)) << 52); break;  /* F16 range */
        case 2: u = (u & 0xffffffffe0000000ull) | (rnd() & 1 ? 0x10000000ull : 0); break;       /* ties at float */
        default: break;
        }
        double d = bitsd(u);
        assert_int_equal(hma__f64_to_bf16(d), ref_to_bf16(d));
        assert_int_equal(hma__f64_to_f16(d), ref_to_f16(d));
    }
    for (size_t k = 0; k < sizeof SPEC_F64 / 8; k++) {
        double d = bitsd(SPEC_F64[k]);
        assert_int_equal(hma__f64_to_bf16(d), ref_to_bf16(d));
        assert_int_equal(hma__f64_to_f16(d), ref_to_f16(d));
    }
    /* exact midpoints of BF16 just above 1 with a sticky bit far below float precision */
    double tie = 1.0 + ldexp(1.0, -8); /* halfway between 1 and 1+2^-7 */
    assert_int_equal(hma__f64_to_bf16(tie), 0x3f80);
    assert_int_equal(hma__f64_to_bf16(tie + ldexp(1.0, -50)), 0x3f81);
    assert_int_equal(hma__f64_to_bf16(-(tie + ldexp(1.0, -50))), 0xbf81);
    assert_int_equal(hma__f64_to_f16(1.0 + ldexp(1.0, -11) + ldexp(1.0, -45)), 0x3c01);
    assert_int_equal(hma__f64_to_f16(1.0 + ldexp(1.0, -11)), 0x3c00);
}

/* ---- convert -------------------------------------------------------------------- */

/* float32 bits a NaN element becomes when loaded as float (F16C quietens
 * F16 NaNs; F64 goes through (float)). */
static uint32_t nan_as_f32_bits(hma_dtype st, const void *s, size_t i) {
    const unsigned char *b = s;
    uint16_t h;
    uint32_t u;
    double d;
    switch (st) {
    case HMA_DTYPE_BF16: memcpy(&h, b + 2 * i, 2); return (uint32_t)h << 16;
    case HMA_DTYPE_F16:
        memcpy(&h, b + 2 * i, 2);
        return ((uint32_t)(h & 0x8000) << 16) | 0x7fc00000u | ((uint32_t)(h & 0x3ff) << 13);
    case HMA_DTYPE_F32: memcpy(&u, b + 4 * i, 4); return u;
    default: memcpy(&d, b + 8 * i, 8); return fbits((float)d);
    }
}

static void ref_convert_elem(hma_dtype st, const void *s, hma_dtype dt, void *d, size_t i) {
    double v = ref_ld(st, s, i);
    unsigned char *b = d;
    if (isnan(v)) {
        uint32_t u = nan_as_f32_bits(st, s, i);
        uint16_t h;
        if (dt == HMA_DTYPE_BF16) {
            h = (uint16_t)(((u >> 16) & 0x8000) | 0x7fc0);
            memcpy(b + 2 * i, &h, 2);
        } else if (dt == HMA_DTYPE_F16) {
            h = (uint16_t)(((u >> 16) & 0x8000) | 0x7e00 | ((u >> 13) & 0x3ff));
            memcpy(b + 2 * i, &h, 2);
        } else if (dt == HMA_DTYPE_F32) {
            memcpy(b + 4 * i, &u, 4);
        } else if (st != HMA_DTYPE_F64) {
            double w = (double)bitsf(u);
            memcpy(b + 8 * i, &w, 8);
        }
        return;
    }
    if (dt == HMA_DTYPE_F64) memcpy(b + 8 * i, &v, 8);
    else ref_store(dt, d, i, v);
}

static void test_convert(void **state) {
    (void)state;
    for (int si = 0; si < 4; si++)
        for (int di = 0; di < 4; di++) {
            hma_dtype st = DTS[si], dt = DTS[di];
            for (int rep = 0; rep < 6; rep++) {
                size_t n = rep == 0 ? 1 : rep == 1 ? 37 : 1 + rndn(1300);
                size_t so = rndn(8), dof = rndn(8);
                buf src = buf_new(n * dsize(st), so);
                fill(st, src.p, n, 10);
                buf ref = buf_new(n * dsize(dt), dof), scal = buf_new(n * dsize(dt), dof);
                hma__kernel_convert(HMA_SIMD_SCALAR, st, src.p, dt, scal.p, n);
                memset(ref.p, 0, n * dsize(dt));
                if (st == dt) memcpy(ref.p, src.p, n * dsize(dt)); /* same dtype: a copy */
                else for (size_t i = 0; i < n; i++) ref_convert_elem(st, src.p, dt, ref.p, i);
                if (memcmp(ref.p, scal.p, n * dsize(dt)) != 0)
                    fail_msg("convert %s->%s scalar differs from reference", hma_dtype_name(st), hma_dtype_name(dt));
                for (int k = 0; k < g_npaths; k++) {
                    buf o = buf_new(n * dsize(dt), dof);
                    hma__kernel_convert(g_paths[k], st, src.p, dt, o.p, n);
                    if (memcmp(o.p, scal.p, n * dsize(dt)) != 0)
                        fail_msg("convert %s->%s path %s differs from scalar (n=%zu)", hma_dtype_name(st),
                                 hma_dtype_name(dt), hma__cpu_level_name(g_paths[k]), n);
                    g_exercised[g_paths[k]] = 1;
                    free(o.mem);
                }
                free(src.mem);
                free(ref.mem);
                free(scal.mem);
            }
        }
}

/* ---- combine --------------------------------------------------------------------- */

typedef struct rop {
    hma__combine op;
    hma_dtype dt[HMA_KMAX_INPUTS];
    const void *in[HMA_KMAX_INPUTS];
    buf inb[HMA_KMAX_INPUTS];
    float wf[HMA_KMAX_INPUTS];
    double wd[HMA_KMAX_INPUTS];
    size_t n, out_off;
} rop;

static const double WEIGHTS[] = {1, 0, -1, 0.5, 0.25, 0.3, 1.0 / 3, 1e30, 1e-30, 2.5, -0.7, 0.9};

static void rop_make(rop *r, size_t n_in, int same_dtype, hma_dtype dt0, hma_dtype out, int base, int wide,
                     size_t n, int special) {
    memset(r, 0, sizeof *r);
    r->n = n;
    int any64 = 0;
    for (size_t i = 0; i < n_in; i++) {
        r->dt[i] = same_dtype ? dt0 : DTS[rndn(4)];
        if (r->dt[i] == HMA_DTYPE_F64) any64 = 1;
        r->inb[i] = buf_new(n * dsize(r->dt[i]), rndn(8));
        fill(r->dt[i], r->inb[i].p, n, special);
        r->in[i] = r->inb[i].p;
        double w = rnd() & 1 ? WEIGHTS[rndn(sizeof WEIGHTS / sizeof WEIGHTS[0])]
                             : (double)(rnd() >> 11) / 4503599627370496.0 - 1.0;
        r->wd[i] = w;
        r->wf[i] = (float)w;
    }
    r->op.n_in = n_in;
    r->op.in_dtype = r->dt;
    r->op.in = r->in;
    r->op.wf = r->wf;
    r->op.wd = r->wd;
    r->op.base = base;
    r->op.wide = wide || any64;
    r->op.out_dtype = out;
    r->out_off = rndn(8);
}
static void rop_free(rop *r) {
    for (size_t i = 0; i < r->op.n_in; i++) free(r->inb[i].mem);
}

/* Independent reference: fl32 operations as double operations rounded to
 * float (exact products, innocuous double rounding), output rounding by
 * ref_round. */
static void ref_combine(const rop *r, void *out) {
    const hma__combine *op = &r->op;
    for (size_t e = 0; e < r->n; e++) {
        double acc = 0, xb = 0;
        int first = 1;
        if (op->base >= 0) {
            xb = ref_ld(op->in_dtype[op->base], op->in[op->base], e);
            if (!op->wide) xb = (float)xb;
        }
        for (size_t i = 0; i < op->n_in; i++) {
            if ((int)i == op->base) continue;
            double x = ref_ld(op->in_dtype[i], op->in[i], e), t;
            if (!op->wide) {
                x = (float)x;
                if (op->base >= 0) x = (float)(x - xb);
                t = (float)((double)op->wf[i] * x);
                acc = first ? t : (float)(acc + t);
            } else {
                if (op->base >= 0) x = x - xb;
                t = op->wd[i] * x;
                acc = first ? t : acc + t;
            }
            first = 0;
        }
        double res;
        if (op->base >= 0) res = first ? xb : op->wide ? xb + acc : (float)(xb + acc);
        else res = acc;
        ref_store(op->out_dtype, out, e, res);
    }
}
/* first (element, input) whose value is NaN/Inf, in element-major order */
static int ref_first_bad(const rop *r, size_t *bi, size_t *be) {
    for (size_t e = 0; e < r->n; e++)
        for (size_t i = 0; i < r->op.n_in; i++)
            if (!isfinite(ref_ld(r->op.in_dtype[i], r->op.in[i], e))) {
                *bi = i;
                *be = e;
                return 1;
            }
    return 0;
}

static const char *rop_desc(const rop *r) {
    static char s[512];
    int k = snprintf(s, sizeof s, "n=%zu n_in=%zu base=%d wide=%d out=%s in=", r->n, r->op.n_in, r->op.base,
                     r->op.wide, hma_dtype_name(r->op.out_dtype));
    for (size_t i = 0; i < r->op.n_in && k < 400; i++)
        k += snprintf(s + k, sizeof s - (size_t)k, "%s(w=%g) ", hma_dtype_name(r->dt[i]), r->wd[i]);
    return s;
}

/* Runs r on the scalar path (checked against the reference) and on every
 * path under test (checked against scalar), with and without check_finite. */
static void run_rop(rop *r) {
    hma__combine *op = &r->op;
    size_t osz = r->n * dsize(op->out_dtype);
    buf ref = buf_new(osz, r->out_off), scal = buf_new(osz, r->out_off);
    ref_combine(r, ref.p);
    op->out = scal.p;
    size_t bi = 99, be = 99;
    assert_int_equal(hma__kernel_combine(HMA_SIMD_SCALAR, op, r->n, 0, &bi, &be), 0);
    if (memcmp(ref.p, scal.p, osz) != 0) {
        for (size_t e = 0; e < r->n; e++)
            if (memcmp(ref.p + e * dsize(op->out_dtype), scal.p + e * dsize(op->out_dtype), dsize(op->out_dtype)))
                fail_msg("scalar combine differs from reference at %zu: %s", e, rop_desc(r));
    }
    size_t wbi = 0, wbe = 0;
    int want_bad = ref_first_bad(r, &wbi, &wbe);
    for (int k = -1; k < g_npaths; k++) {
        int path = k < 0 ? HMA_SIMD_SCALAR : g_paths[k];
        buf o = buf_new(osz, r->out_off);
        op->out = o.p;
        if (k >= 0) {
            assert_int_equal(hma__kernel_combine(path, op, r->n, 0, &bi, &be), 0);
            if (memcmp(o.p, scal.p, osz) != 0)
                fail_msg("path %s differs from scalar: %s", hma__cpu_level_name(path), rop_desc(r));
            g_exercised[path] = 1;
        }
        bi = be = 12345;
        int rc = hma__kernel_combine(path, op, r->n, 1, &bi, &be);
        assert_int_equal(rc, want_bad);
        if (want_bad) {
            if (bi != wbi || be != wbe)
                fail_msg("path %s: first bad (%zu,%zu), want (%zu,%zu): %s", hma__cpu_level_name(path), bi, be, wbi,
                         wbe, rop_desc(r));
        } else {
            assert_int_equal(memcmp(o.p, scal.p, osz), 0);
        }
        free(o.mem);
    }
    free(ref.mem);
    free(scal.mem);
}

static void test_combine_random(void **state) {
    (void)state;
    for (int t = 0; t < 700; t++) {
        rop r;
        size_t n_in = 1 + rndn(5);
        int base = rnd() % 3 == 0 ? (int)rndn(n_in) : -1;
        size_t n = t % 7 == 0 ? rndn(40) : 1 + rndn(1200);
        int special = t % 4 == 0 ? 0 : t % 4 == 1 ? 1 : 8;
        rop_make(&r, n_in, (int)(rnd() & 1), DTS[rndn(3)], DTS[rndn(4)], base, rnd() % 5 == 0, n, special);
        run_rop(&r);
        rop_free(&r);
    }
}

/* Every (input dtype, output dtype) pair, 2 inputs, every form: hits the
 * fused kernels, with lengths around vector multiples. */
static void test_combine_pairs(void **state) {
    (void)state;
    static const size_t lens[] = {0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 511, 512, 513, 1029};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            for (int base = -1; base <= 1; base++)
                for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
                    rop r;
                    rop_make(&r, 2, 1, DTS[a], DTS[b], base, 0, lens[l], l % 3 == 0 ? 0 : 2);
                    run_rop(&r);
                    rop_free(&r);
                }
}

/* A single bad value at every position of a fused-kernel-sized chunk. */
static void test_check_finite_positions(void **state) {
    (void)state;
    for (int d = 0; d < 3; d++)
        for (size_t pos = 0; pos < 70; pos++)
            for (size_t which = 0; which < 2; which++) {
                rop r;
                rop_make(&r, 2, 1, DTS[d], DTS[d], -1, 0, 70, 0);
                size_t sz = dsize(DTS[d]);
                unsigned char bad[4];
                if (DTS[d] == HMA_DTYPE_F32) memcpy(bad, &(uint32_t){0xff800000u}, 4);
                else memcpy(bad, &(uint16_t){DTS[d] == HMA_DTYPE_BF16 ? 0x7fc1 : 0x7c00}, 2);
                memcpy(r.inb[which].p + sz * pos, bad, sz);
                if (which == 1 && pos + 3 < 70) /* a later one in input 0 must not win */
                    memcpy(r.inb[0].p + sz * (pos + 3), bad, sz);
                run_rop(&r);
                size_t bi, be;
                assert_int_equal(ref_first_bad(&r, &bi, &be), 1);
                assert_int_equal(bi, which);
                assert_int_equal(be, pos);
                rop_free(&r);
            }
}

/* Model averaging equals PyTorch's float32 (1-a)*x + a*y then RNE to BF16. */
static void test_ma_pytorch_formula(void **state) {
    (void)state;
    static const double alphas[] = {0.0, 0.1, 0.2, 0.25, 0.3, 0.5, 0.7, 0.9, 1.0};
    for (size_t ai = 0; ai < sizeof alphas / sizeof alphas[0]; ai++) {
        rop r;
        size_t n = 4099;
        rop_make(&r, 2, 1, HMA_DTYPE_BF16, HMA_DTYPE_BF16, -1, 0, n, 1);
        float a = (float)alphas[ai];
        r.wf[0] = 1.0f - a;
        r.wf[1] = a;
        for (int k = -1; k < g_npaths; k++) {
            int path = k < 0 ? HMA_SIMD_SCALAR : g_paths[k];
            buf o = buf_new(2 * n, 1);
            r.op.out = o.p;
            size_t bi, be;
            assert_int_equal(hma__kernel_combine(path, &r.op, n, 0, &bi, &be), 0);
            for (size_t e = 0; e < n; e++) {
                float x = (float)ref_ld(HMA_DTYPE_BF16, r.in[0], e), y = (float)ref_ld(HMA_DTYPE_BF16, r.in[1], e);
                volatile float t0 = r.wf[0] * x, t1 = r.wf[1] * y; /* torch: mul, mul, add in float32 */
                float s = t0 + t1;
                uint16_t want = isnan(s) ? 0x7fc0 : ref_to_bf16(s), got;
                memcpy(&got, o.p + 2 * e, 2);
                if (got != want) fail_msg("MA a=%g path %s elem %zu: %04x want %04x", (double)a, hma__cpu_level_name(path), e, got, want);
            }
            free(o.mem);
        }
        rop_free(&r);
    }
}

/* Output identical to an input (in place). */
static void test_in_place(void **state) {
    (void)state;
    for (int d = 0; d < 3; d++)
        for (int k = -1; k < g_npaths; k++) {
            int path = k < 0 ? HMA_SIMD_SCALAR : g_paths[k];
            rop r;
            rop_make(&r, 2, 1, DTS[d], DTS[d], -1, 0, 300, 1);
            size_t osz = 300 * dsize(DTS[d]);
            buf want = buf_new(osz, 0);
            size_t bi, be;
            r.op.out = want.p;
            hma__kernel_combine(HMA_SIMD_SCALAR, &r.op, 300, 0, &bi, &be);
            r.op.out = r.inb[0].p;
            hma__kernel_combine(path, &r.op, 300, 0, &bi, &be);
            assert_int_equal(memcmp(want.p, r.inb[0].p, osz), 0);
            free(want.mem);
            rop_free(&r);
        }
}

/* ---- stats ------------------------------------------------------------------------- */

static void test_stats(void **state) {
    (void)state;
    static const size_t lens[] = {0, 1, 100, 4095, 4096, 4097, 10000, 20001};
    for (int a = 0; a < 4; a++)
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            hma_dtype tx = DTS[a], ty = DTS[rndn(4)];
            size_t n = lens[l];
            buf x = buf_new(n * dsize(tx), rndn(8)), y = buf_new(n * dsize(ty), rndn(8));
            fill(tx, x.p, n, 0);
            fill(ty, y.p, n, 0);
            double out[4], out2[4], ref[4] = {0, 0, 0, 0};
            for (size_t e = 0; e < n; e++) {
                long double xv = ref_ld(tx, x.p, e), yv = ref_ld(ty, y.p, e);
                ref[0] += xv * yv;
                ref[1] += xv * xv;
                ref[2] += yv * yv;
                ref[3] += (yv - xv) * (yv - xv);
            }
            hma__kernel_stats(tx, x.p, ty, y.p, n, out);
            hma__kernel_stats(tx, x.p, ty, y.p, n, out2);
            assert_int_equal(memcmp(out, out2, sizeof out), 0); /* deterministic */
            double scale = ref[1] + ref[2] + 1e-300;
            for (int k = 0; k < 4; k++)
                if (fabs(out[k] - ref[k]) > 1e-12 * scale)
                    fail_msg("stats %s/%s n=%zu out[%d]=%.17g ref %.17g", hma_dtype_name(tx), hma_dtype_name(ty), n,
                             k, out[k], ref[k]);
            hma__kernel_stats(tx, x.p, ty, NULL, n, out2);
            assert_true(out2[0] == 0 && out2[2] == 0 && out2[3] == 0);
            assert_int_equal(dbits(out2[1]), dbits(out[1]));
            free(x.mem);
            free(y.mem);
        }
}

int main(void) {
    if (setup_paths() != 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_rne),
        cmocka_unit_test(test_f16_rne),
        cmocka_unit_test(test_f16_vs_f16c),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_f64_conversions),
        cmocka_unit_test(test_convert),
        cmocka_unit_test(test_combine_random),
        cmocka_unit_test(test_combine_pairs),
        cmocka_unit_test(test_check_finite_positions),
        cmocka_unit_test(test_ma_pytorch_formula),
        cmocka_unit_test(test_in_place),
        cmocka_unit_test(test_stats),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    printf("test_kernels: paths compared against scalar:");
    int any = 0;
    for (int p = 1; p < HMA__KPATH_COUNT; p++)
        if (g_exercised[p]) {
            printf(" %s", hma__cpu_level_name(p));
            any = 1;
        }
    printf("%s\n", any ? "" : " none");
    return rc;
}
