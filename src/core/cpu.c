/* cpu.c - the one CPU dispatch (cpuid once, HMA_SIMD cap) for kernels and codecs. */
#include "core/cpu.h"
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

static unsigned detect(void) {
    unsigned r = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return r;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (__get_cpuid_max(0, NULL) < 7) return r;
    unsigned a7, b7, c7, d7;
    __cpuid_count(7, 0, a7, b7, c7, d7);
    if ((b7 >> 8) & 1) r |= HMA__CPU_BMI2; /* scalar instructions: no OS state needed */
    if (!osxsave || !avx) return r;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return r;
    int avx2 = (b7 >> 5) & 1;
    int f512 = (b7 >> 16) & 1, dq = (b7 >> 17) & 1, bw = (b7 >> 30) & 1, vl = (b7 >> 31) & 1;
    if (avx2 && fma && f16c) r |= HMA__CPU_AVX2;
    if ((r & HMA__CPU_AVX2) && f512 && dq && bw && vl && (xcr0 & 0xe0) == 0xe0) r |= HMA__CPU_AVX512;
#endif
    return r;
}

/* Computed once; racing first calls compute and store the same value. */
static atomic_int g_features = -1;
static atomic_int g_level = -1;

unsigned hma__cpu_features(void) {
    int f = atomic_load_explicit(&g_features, memory_order_relaxed);
    if (f < 0) {
        f = (int)detect();
        atomic_store_explicit(&g_features, f, memory_order_relaxed);
    }
    return (unsigned)f;
}

int hma__cpu_level_available(int level) {
    unsigned f = hma__cpu_features();
    switch (level) {
    case HMA_SIMD_SCALAR: return 1;
#ifdef HMA_HAVE_AVX2_KERNELS
    case HMA_SIMD_AVX2: return (f & HMA__CPU_AVX2) != 0;
#endif
#ifdef HMA_HAVE_AVX512_KERNELS
    case HMA_SIMD_AVX512: return (f & HMA__CPU_AVX512) != 0;
#endif
    default: return 0;
    }
}

const char *hma__cpu_level_name(int level) {
    switch (level) {
    case HMA_SIMD_SCALAR: return "scalar";
    case HMA_SIMD_AVX2: return "avx2";
    case HMA_SIMD_AVX512: return "avx512";
    default: return NULL;
    }
}

int hma__cpu_level(void) {
    int b = atomic_load_explicit(&g_level, memory_order_relaxed);
    if (b >= 0) return b;
    int cap = HMA_SIMD_AVX512;
    const char *env = getenv("HMA_SIMD");
    if (env) {
        for (int l = HMA_SIMD_SCALAR; l <= HMA_SIMD_AVX512; l++)
            if (strcmp(env, hma__cpu_level_name(l)) == 0) cap = l;
    }
    b = HMA_SIMD_SCALAR;
    for (int l = cap; l > HMA_SIMD_SCALAR; l--)
        if (hma__cpu_level_available(l)) {
            b = l;
            break;
        }
    atomic_store_explicit(&g_level, b, memory_order_relaxed);
    return b;
}

int hma__cpu_codec_isa(int level) {
    unsigned f = hma__cpu_features();
    if (level <= HMA_SIMD_SCALAR || !(f & HMA__CPU_BMI2)) return 0;
    return (f & HMA__CPU_AVX2) ? 2 : 1;
}
