/*
 * cpu.h - the one CPU dispatch: which SIMD level this process may use, for
 * the arithmetic kernels and the pack codecs alike.
 */
#ifndef HMA_CORE_CPU_H
#define HMA_CORE_CPU_H

/* The x86-64 SIMD code (kernels, codec passes) is built only with GCC/Clang on x86-64. */
#if defined(__x86_64__) && defined(__GNUC__)
#define HMA_HAVE_AVX2_KERNELS 1
#define HMA_HAVE_AVX512_KERNELS 1
#endif

/* CPU features the library's SIMD code needs (bit mask). */
enum {
    HMA__CPU_AVX2 = 1u << 0,   /* AVX2 + FMA + F16C, OS saves YMM */
    HMA__CPU_AVX512 = 1u << 1, /* AVX-512 F/BW/VL/DQ, OS saves ZMM */
    HMA__CPU_BMI2 = 1u << 2    /* BMI2 (pack codec bit extraction) */
};

/* Features of this CPU (cpuid, computed once). Thread-safe. */
unsigned hma__cpu_features(void);

/* 1 if SIMD level `level` (an hma_simd value) can run on this CPU and build. */
int hma__cpu_level_available(int level);

/*
 * The SIMD level to use: the best this CPU runs, capped by the environment
 * variable HMA_SIMD=scalar|avx2|avx512 (read once; documented in hma.h).
 * Governs the kernels (unless a plan forces a level) and the pack codecs.
 * Thread-safe.
 */
int hma__cpu_level(void);

/* "scalar", "avx2", "avx512", or NULL for another value. */
const char *hma__cpu_level_name(int level);

/* Pack codec ISA for a SIMD level: 0 portable, 1 BMI2, 2 AVX2 + BMI2. */
int hma__cpu_codec_isa(int level);

#endif
