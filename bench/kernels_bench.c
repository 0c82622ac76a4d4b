/*
 * kernels_bench.c - micro-benchmark of the combine kernels (src/merge/kernels.h),
 * one thread, buffers of 64 MiB per input (far outside the caches).
 * Prints GB/s of memory traffic (bytes read + bytes written) per path.
 *
 * Build and run from the repository root after `make lib`:
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/kernels_bench.c lib/libhma.a \
 *      -lopenblas -lzstd -lpthread -lm -o /tmp/kernels_bench && /tmp/kernels_bench
 * Optional argument: MiB per input (default 64).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "merge/kernels.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fill(hma_dtype dt, void *p, size_t n, unsigned seed) {
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        float v = (float)(s >> 8) * (1.0f / 16777216.0f) - 0.5f;
        hma__st1_f32(dt, p, i, v);
    }
}

typedef struct bcase {
    const char *name;
    size_t n_in;
    hma_dtype dt;
    int base, check;
} bcase;

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 64;
    const size_t bytes = mib << 20;
    const bcase cases[] = {
        {"2-input BF16 -> BF16 (MA)", 2, HMA_DTYPE_BF16, -1, 0},
        {"2-input BF16, check_finite", 2, HMA_DTYPE_BF16, -1, 1},
        {"2-input BF16 delta form", 2, HMA_DTYPE_BF16, 0, 0},
        {"2-input F16 -> F16", 2, HMA_DTYPE_F16, -1, 0},
        {"2-input F32 -> F32", 2, HMA_DTYPE_F32, -1, 0},
        {"4-input BF16 -> BF16 (generic)", 4, HMA_DTYPE_BF16, -1, 0},
    };
    void *in[4], *out = malloc(bytes);
    for (int i = 0; i < 4; i++) in[i] = malloc(bytes);
    if (!out || !in[0] || !in[1] || !in[2] || !in[3]) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    memset(out, 0, bytes);
    /* memcpy speed as the memory yardstick (read + write) */
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        double t = now();
        memcpy(out, in[0], bytes);
        t = now() - t;
        if (t < best) best = t;
    }
    printf("memcpy %zu MiB: %.2f GB/s of traffic\n", mib, 2.0 * (double)bytes / best / 1e9);
    printf("%-34s", "case \\ path");
    for (int p = 0; p < HMA__KPATH_COUNT; p++) printf(" %10s", hma__cpu_level_name(p));
    printf("   (GB/s of traffic, best of 5)\n");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const bcase *bc = &cases[c];
        size_t n = bytes / hma__kdtype_size(bc->dt);
        hma_dtype dts[4] = {bc->dt, bc->dt, bc->dt, bc->dt};
        float wf[4] = {0.5f, 0.5f, 0.25f, 0.25f};
        double wd[4] = {0.5, 0.5, 0.25, 0.25};
        for (size_t i = 0; i < bc->n_in; i++) fill(bc->dt, in[i], n, (unsigned)(i + 1));
        hma__combine op = {bc->n_in, dts, (const void *const *)in, wf, wd, bc->base, 0, bc->dt, out};
        printf("%-34s", bc->name);
        for (int p = 0; p < HMA__KPATH_COUNT; p++) {
            if (!hma__cpu_level_available(p)) {
                printf(" %10s", "n/a");
                continue;
            }
            best = 1e9;
            for (int r = 0; r < 5; r++) {
                size_t bi, be;
                double t = now();
                hma__kernel_combine(p, &op, n, bc->check, &bi, &be);
                t = now() - t;
                if (t < best) best = t;
            }
            printf(" %10.2f", (double)(bc->n_in + 1) * (double)bytes / best / 1e9);
            fflush(stdout);
        }
        printf("\n");
    }
    for (int i = 0; i < 4; i++) free(in[i]);
    free(out);
    return 0;
}
