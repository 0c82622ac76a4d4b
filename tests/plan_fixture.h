/* plan_fixture.h - helpers for the merge-plan tests: small synthetic
 * checkpoints written with the public writer, float conversions done
 * independently of the library (so expected values never come from the
 * code under test), and a store/plan bundle. Header-only (static). */
#ifndef HMA_PLAN_FIXTURE_H
#define HMA_PLAN_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hma.h"
#include "testutil.h"

typedef struct fx_tensor {
    const char *name;
    hma_dtype dt;
    unsigned ndim;
    uint64_t shape[4];
    const void *data; /* NULL: zeros */
} fx_tensor;

static inline uint64_t fx_nelem(const fx_tensor *t) {
    uint64_t n = 1;
    for (unsigned d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* Write a .safetensors file with the public writer; 0 on success. */
static inline int fx_write(const char *path, const fx_tensor *ts, size_t n) {
    hma_writer *w = NULL;
    int rc = hma_writer_create(&w, path, 0);
    for (size_t i = 0; !rc && i < n; i++) rc = hma_writer_add_tensor(w, ts[i].name, ts[i].dt, ts[i].ndim, ts[i].shape);
    if (!rc) rc = hma_writer_begin(w);
    for (size_t i = 0; !rc && i < n; i++) {
        size_t bytes = (size_t)(fx_nelem(&ts[i]) * hma_dtype_bits(ts[i].dt) / 8);
        if (!bytes) continue;
        void *z = NULL;
        const void *src = ts[i].data;
        if (!src) src = z = calloc(1, bytes);
        rc = hma_writer_write(w, i, 0, src, bytes);
        free(z);
    }
    if (!rc) rc = hma_writer_commit(w);
    hma_writer_free(w);
    return rc;
}

/* ---- independent float conversions ---------------------------------------- */
static inline uint32_t fx_f32bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float fx_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline float fx_bf16_to_f32(uint16_t h) { return fx_f32((uint32_t)h << 16); }
static inline uint16_t fx_f32_to_bf16(float f) {
    uint32_t u = fx_f32bits(f);
    if (isnan(f)) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float fx_f16_to_f32(uint16_t h) {
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v;
    if (e == 0) v = ldexpf((float)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexpf((float)(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}
/* double -> F16 with one RNE rounding (exact search over the grid). */
static inline uint16_t fx_f64_to_f16(double d) {
    uint16_t sign = d < 0 ? 0x8000 : 0;
    double a = fabs(d);
    if (isnan(d)) return 0x7e00;
    if (a >= 65520.0) return (uint16_t)(sign | 0x7c00);
    int e;
    frexp(a, &e); /* a = f * 2^e, f in [0.5, 1) */
    int ulp_e = e - 11;
    if (ulp_e < -24) ulp_e = -24;
    double q = a / ldexp(1.0, ulp_e); /* exact */
    double r = nearbyint(q);          /* RNE (default mode) */
    double v = r * ldexp(1.0, ulp_e);
    /* encode v */
    if (v == 0) return sign;
    int ve;
    double vf = frexp(v, &ve);
    if (ve - 1 < -14) return (uint16_t)(sign | (uint16_t)(v / ldexp(1.0, -24)));
    if (ve - 1 > 15) return (uint16_t)(sign | 0x7c00);
    uint16_t mant = (uint16_t)((vf * 2 - 1) * 1024);
    return (uint16_t)(sign | (uint16_t)((ve - 1 + 15) << 10) | mant);
}
static inline uint16_t fx_f32_to_f16(float f) { return fx_f64_to_f16((double)f); }
/* double -> BF16 with one RNE rounding. */
static inline uint16_t fx_f64_to_bf16(double d) {
    if (isnan(d)) return 0x7fc0;
    float f = (float)d; /* may double-round: fix with an exact check */
    uint16_t h = fx_f32_to_bf16(f);
    /* candidates h-1, h, h+1 (same sign): pick the nearest, ties to even */
    uint16_t best = h;
    double bestd = fabs(d - (double)fx_bf16_to_f32(h));
    for (int k = -1; k <= 1; k += 2) {
        uint16_t c = (uint16_t)(h + k);
        if ((c & 0x8000) != (h & 0x8000)) continue;
        double v = (double)fx_bf16_to_f32(c);
        if (isnan(v)) continue;
        double dd = fabs(d - v);
        if (dd < bestd || (dd == bestd && (c & 1) == 0)) { best = c; bestd = dd; }
    }
    return best;
}

/* Read element i of a float array of dtype dt as double. */
static inline double fx_get(hma_dtype dt, const void *p, size_t i) {
    const unsigned char *b = (const unsigned char *)p;
    uint16_t h;
    float f;
    double d;
    switch (dt) {
    case HMA_DTYPE_BF16: memcpy(&h, b + 2 * i, 2); return fx_bf16_to_f32(h);
    case HMA_DTYPE_F16: memcpy(&h, b + 2 * i, 2); return fx_f16_to_f32(h);
    case HMA_DTYPE_F32: memcpy(&f, b + 4 * i, 4); return f;
    default: memcpy(&d, b + 8 * i, 8); return d;
    }
}
/* Store v (already rounded to float when the path is float32) as dt. */
static inline void fx_put(hma_dtype dt, void *p, size_t i, double v) {
    unsigned char *b = (unsigned char *)p;
    uint16_t h;
    float f;
    switch (dt) {
    case HMA_DTYPE_BF16: h = fx_f64_to_bf16(v); memcpy(b + 2 * i, &h, 2); break;
    case HMA_DTYPE_F16: h = fx_f64_to_f16(v); memcpy(b + 2 * i, &h, 2); break;
    case HMA_DTYPE_F32: f = (float)v; memcpy(b + 4 * i, &f, 4); break;
    default: memcpy(b + 8 * i, &v, 8); break;
    }
}
static inline size_t fx_size(hma_dtype dt) { return hma_dtype_bits(dt) / 8; }

/* Deterministic pseudo-random values in [-2, 2), representable in BF16
 * (so every dtype holds them exactly) unless `fine`. */
static inline double fx_rand(uint64_t *s, int fine) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    double v = ((double)(*s >> 11) / 9007199254740992.0) * 4.0 - 2.0;
    return fine ? v : (double)fx_bf16_to_f32(fx_f32_to_bf16((float)v));
}

#endif
