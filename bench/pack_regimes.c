/*
 * pack_regimes.c - DIFF16 against DIFF on light fine-tunes: the toy pair's
 * base plus Gaussian steps of a fraction of each tensor's RMS, rounded to
 * BF16 (the toy pair's own differences are large; a fine-tune with small
 * steps leaves most weights unchanged). Prints, per step size, the share of
 * unchanged weights, bits per weight and one-core decode speed of DIFF (pack
 * format 2) and DIFF16 (format 3), and zstd of t xor b for reference. Sizes
 * are exact; speeds are the best of 7 per tensor, CPU time. Not a goal: the
 * table in docs/performance.md. Run by `make bench` after pack_bench.
 *
 *   build/bench/pack_regimes [BASE]
 */
#include "hma.h"
#include "pack/codec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}
static double gauss(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFF + ((u >> 16) & 1); /* round to nearest even (weights are finite) */
    return (uint16_t)(u >> 16);
}
static float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Encode with method m, decode (best of 7), return the payload size. */
static size_t run(hma__pc_ctx *c, int m, const uint16_t *t, const uint16_t *b, size_t n, uint8_t *enc, size_t cap,
                  uint8_t *out, double *secs) {
    size_t len = 0;
    int used = -1;
    const char *why = NULL;
    hma__pc_fmt f = {2, 8};
    if (hma__pc_encode(c, m, f, (const uint8_t *)t, (const uint8_t *)b, n, 1, enc, cap, &len, &used)) exit(1);
    double best = 1e30;
    for (int r = 0; r < 7; r++) {
        double t0 = cpu_now();
        if (hma__pc_decode(c, used, f, enc, len, (const uint8_t *)b, out, n, &why) || memcmp(out, t, n)) {
            fprintf(stderr, "pack_regimes: round trip failed (%s)\n", why);
            exit(1);
        }
        double t1 = cpu_now();
        if (t1 - t0 < best) best = t1 - t0;
    }
    *secs += best;
    return len;
}

int main(int argc, char **argv) {
    const char *bpath = argc > 1 ? argv[1] : "examples/data/toy-llama/base.safetensors";
    hma_store *bs = NULL;
    if (hma_store_open(&bs, bpath, 0)) {
        fprintf(stderr, "pack_regimes: %s\n", hma_last_error());
        return 1;
    }
    const size_t cs = HMA_PACK_DEFAULT_CHUNK;
    hma__pc_ctx *c = NULL;
    if (hma__pc_ctx_new(&c, cs)) return 1;
    size_t cap = hma__pc_bound(cs);
    uint8_t *enc = malloc(cap), *out = malloc(cs);
    uint16_t *b = malloc(cs), *t = malloc(cs);
    static const double steps[] = {3e-4, 1e-3, 3e-3, 1e-2, 3e-2};
    printf("pack_regimes: base %s, BF16 tensors (first chunk of each), one core\n", bpath);
    printf("  step/RMS  unchanged   DIFF bits/w (MB/s)   DIFF16 bits/w (MB/s)   DIFF16 vs DIFF   zstd(t^b) bits/w\n");
    for (size_t r = 0; r < sizeof steps / sizeof steps[0]; r++) {
        size_t nd = 0, n16 = 0, nz = 0, same = 0, ne_all = 0, raw = 0;
        double sd = 0, s16 = 0;
        for (size_t i = 0; i < hma_store_count(bs); i++) {
            const hma_tensor *x = hma_store_tensor(bs, i);
            if (hma_tensor_dtype(x) != HMA_DTYPE_BF16) continue;
            size_t n = (size_t)hma_tensor_nbytes(x), ne;
            if (n > cs) n = cs;
            ne = n / 2;
            if (hma_store_read(bs, x, 0, b, n)) return 1;
            double ms = 0;
            for (size_t k = 0; k < ne; k++) ms += (double)from_bf16(b[k]) * from_bf16(b[k]);
            double scale = sqrt(ms / (double)ne);
            for (size_t k = 0; k < ne; k++) {
                t[k] = to_bf16(from_bf16(b[k]) + (float)(steps[r] * scale * gauss()));
                same += t[k] == b[k];
            }
            nd += run(c, HMA__PC_DIFF, t, b, n, enc, cap, out, &sd);
            n16 += run(c, HMA__PC_DIFF16, t, b, n, enc, cap, out, &s16);
            for (size_t k = 0; k < ne; k++) t[k] ^= b[k];
            size_t len = 0;
            int used;
            if (hma__pc_encode(c, HMA__PC_ZSTD, (hma__pc_fmt){2, 8}, (const uint8_t *)t, NULL, n, 3, enc, cap, &len,
                               &used))
                return 1;
            nz += len;
            ne_all += ne;
            raw += n;
        }
        double ne_d = (double)ne_all;
        printf("  %8.0e  %8.0f %%   %6.3f (%5.0f)         %6.3f (%5.0f)          %+5.1f %%          %6.3f\n", steps[r],
               100.0 * (double)same / ne_d, 8.0 * (double)nd / ne_d, (double)raw / sd / 1e6, 8.0 * (double)n16 / ne_d,
               (double)raw / s16 / 1e6, 100.0 * ((double)n16 / (double)nd - 1), 8.0 * (double)nz / ne_d);
    }
    hma__pc_ctx_free(c);
    free(enc);
    free(out);
    free(b);
    free(t);
    hma_store_close(bs);
    return 0;
}
