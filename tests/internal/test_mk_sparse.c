/*
 * test_mk_sparse.c - mergekit's sparsifying methods (src/mergekit/mk_select.c,
 * mk_rng.c, mk_sparsify.c, mk_gta.c, mk_sce.c): the stable selection
 * against a brute-force stable sort on data with many ties, thread-count
 * independence, the generator against values computed independently (in
 * Python) from its documented formula, and hand-computed cases of
 * breadcrumbs, DARE, DELLA, TIES, the L1 rescale and SCE.
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

#include "mergekit/mk_sparse.h"

/* ---- helpers ------------------------------------------------------------- */

static uint64_t g_rng = 0x243F6A8885A308D3ull;
static uint64_t rnd(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rnd_unit(void) { return (double)(rnd() >> 11) * 0x1p-53; }

static float bf16_trunc(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

/* Signed data with many ties: a few dozen distinct magnitudes (mode 0) or
 * bf16-quantised differences of bf16 "weights" (mode 1, like real deltas). */
static void fill(float *x, uint64_t n, int mode) {
    for (uint64_t i = 0; i < n; i++) {
        if (mode == 0) {
            x[i] = (float)((int)(rnd() % 64) - 32) * 0.015625f;
        } else {
            float w = bf16_trunc((float)(rnd_unit() - 0.5) * 0.1f);
            float v = bf16_trunc(w + (float)(rnd_unit() - 0.5) * 0.002f);
            x[i] = v - w;
        }
    }
}

static const float *g_keys;
static int cmp_desc(const void *pa, const void *pb) {
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    float ka = g_keys[a], kb = g_keys[b];
    if (ka > kb) return -1;
    if (ka < kb) return 1;
    return a < b ? -1 : (a > b);
}
static int cmp_asc(const void *pa, const void *pb) {
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    float ka = g_keys[a], kb = g_keys[b];
    if (ka < kb) return -1;
    if (ka > kb) return 1;
    return a < b ? -1 : (a > b);
}
/* Stable order of keys (desc or asc, ties by index), by qsort on (key, index). */
static uint64_t *order_of(const float *keys, uint64_t n, int desc) {
    uint64_t *o = malloc(n * sizeof *o);
    assert_non_null(o);
    for (uint64_t i = 0; i < n; i++) o[i] = i;
    g_keys = keys;
    qsort(o, n, sizeof *o, desc ? cmp_desc : cmp_asc);
    return o;
}
static float *abs_of(const float *x, uint64_t n) {
    float *a = malloc(n * sizeof *a);
    assert_non_null(a);
    for (uint64_t i = 0; i < n; i++) a[i] = fabsf(x[i]);
    return a;
}
static void assert_same_bits(const float *a, const float *b, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], 4) != 0) {
            fprintf(stderr, "element %llu: %.9g vs %.9g\n", (unsigned long long)i, (double)a[i], (double)b[i]);
            fail();
        }
    }
}

/* ---- selection ------------------------------------------------------------ */

static void check_select(const float *x, uint64_t n, uint64_t k, unsigned threads) {
    float *key = abs_of(x, n);
    uint64_t *o = order_of(key, n, 1);
    float thr;
    uint64_t neq;
    /* keys given as |x| (abs_of = 0) and as x (abs_of = 1) */
    assert_int_equal(hma__mk_select(threads, key, n, k, 0, &thr, &neq), HMA_OK);
    uint64_t kk = k > n ? n : k;
    float want = key[o[kk - 1]];
    uint64_t want_eq = 0;
    for (uint64_t i = 0; i < kk; i++) want_eq += key[o[i]] == want;
    assert_true(thr == want);
    assert_int_equal(neq, want_eq);
    float thr2;
    uint64_t neq2;
    assert_int_equal(hma__mk_select(threads, x, n, k, 1, &thr2, &neq2), HMA_OK);
    assert_true(thr2 == want);
    assert_int_equal(neq2, want_eq);
    /* keep_topk_abs against the brute-force set */
    float *y = malloc(n * sizeof *y), *z = calloc(n, sizeof *z);
    assert_non_null(y);
    assert_non_null(z);
    memcpy(y, x, n * sizeof *y);
    for (uint64_t i = 0; i < kk; i++) z[o[i]] = x[o[i]];
    assert_int_equal(hma__mk_keep_topk_abs(threads, y, n, k), HMA_OK);
    for (uint64_t i = 0; i < n; i++) assert_true(y[i] == z[i]);
    free(y);
    free(z);
    free(o);
    free(key);
}

static void test_select_bruteforce(void **state) {
    (void)state;
    static const uint64_t sizes[] = {1, 2, 7, 1000, 70001, 200003};
    static const unsigned threads[] = {1, 2, 7};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        uint64_t n = sizes[si];
        float *x = malloc(n * sizeof *x);
        assert_non_null(x);
        for (int mode = 0; mode < 2; mode++) {
            fill(x, n, mode);
            uint64_t ks[] = {1, n > 1 ? n - 1 : 1, n, n / 3 + 1, n / 2 + 1, 1 + rnd() % n};
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
                for (size_t ti = 0; ti < 3; ti++) check_select(x, n, ks[ki], threads[ti]);
        }
        free(x);
    }
}

/* The thresholds of the mode-0 data really are ties: many elements equal
 * the k-th key, and the tie is split inside a part other than the first. */
static void test_select_ties_split(void **state) {
    (void)state;
    uint64_t n = 300000;
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    fill(x, n, 0);
    float thr;
    uint64_t neq, k = n / 2;
    assert_int_equal(hma__mk_select(7, x, n, k, 1, &thr, &neq), HMA_OK);
    uint64_t eq = 0;
    for (uint64_t i = 0; i < n; i++) eq += fabsf(x[i]) == thr;
    assert_true(eq > 1000);                 /* a big tie ... */
    assert_true(neq > 0 && neq < eq);       /* ... split by the cut */
    check_select(x, n, k, 7);
    free(x);
}

static void test_select_edges(void **state) {
    (void)state;
    /* k = 0: nothing, k >= n: everything */
    float x[5] = {3, -1, 2, 0, -2};
    float y[5];
    memcpy(y, x, sizeof y);
    assert_int_equal(hma__mk_keep_topk_abs(2, y, 5, 0), HMA_OK);
    for (int i = 0; i < 5; i++) assert_true(y[i] == 0.0f);
    memcpy(y, x, sizeof y);
    assert_int_equal(hma__mk_keep_topk_abs(2, y, 5, 5), HMA_OK);
    assert_memory_equal(x, y, sizeof y);
    assert_int_equal(hma__mk_keep_topk_abs(2, y, 5, 9), HMA_OK);
    assert_memory_equal(x, y, sizeof y);
    float thr;
    uint64_t neq;
    assert_int_equal(hma__mk_select(1, x, 5, 0, 1, &thr, &neq), HMA_OK);
    assert_int_equal(neq, 0);
    /* all keys equal: the first k by index */
    uint64_t n = 150000;
    float *a = malloc(n * sizeof *a);
    assert_non_null(a);
    for (uint64_t i = 0; i < n; i++) a[i] = (i & 1) ? 0.5f : -0.5f;
    assert_int_equal(hma__mk_select(7, a, n, 100001, 1, &thr, &neq), HMA_OK);
    assert_true(thr == 0.5f);
    assert_int_equal(neq, 100001);
    assert_int_equal(hma__mk_keep_topk_abs(7, a, n, 100001), HMA_OK);
    for (uint64_t i = 0; i < n; i++) assert_true(fabsf(a[i]) == (i < 100001 ? 0.5f : 0.0f));
    free(a);
    /* negative zero ties with positive zero (by index), under both key modes */
    float z[6] = {-0.0f, 0.0f, 1.0f, -0.0f, 0.0f, -2.0f};
    assert_int_equal(hma__mk_select(1, z, 6, 4, 0, &thr, &neq), HMA_OK);
    assert_true(thr == 0.0f);
    assert_int_equal(neq, 2);
    float w[6];
    memcpy(w, z, sizeof w);
    assert_int_equal(hma__mk_keep_topk_abs(1, w, 6, 4), HMA_OK);
    /* kept: 5 (-2), 2 (1), then the zeros at 0 and 1; 3 and 4 zeroed (to +0) */
    assert_true(w[5] == -2.0f && w[2] == 1.0f);
    assert_true(signbit(w[0]) && !signbit(w[1])); /* kept as they were */
    assert_true(!signbit(w[3]));                  /* dropped: +0 */
}

/* ---- the generator ------------------------------------------------------- */

static void test_rng_formula(void **state) {
    (void)state;
    /* Computed in Python from the formula in mk_rng.c's comment. */
    uint64_t k = hma__mk_rng_key(42, "model.layers.0.mlp.up_proj.weight", 1);
    assert_true(k == 0xe8282ef96696cfaeull);
    static const uint32_t want[4] = {1212228, 9779252, 8432121, 2273793};
    for (uint64_t i = 0; i < 4; i++) assert_true(hma__mk_rng_uniform(k, i) == (float)want[i] * 0x1p-24f);
    assert_true(hma__mk_rng_uniform(k, 1000000) == (float)254232 * 0x1p-24f);
    uint64_t k0 = hma__mk_rng_key(0, "", 0);
    assert_true(k0 == 0xe587d3dff9e92ed0ull);
    assert_true(hma__mk_rng_uniform(k0, 1) == (float)14926752 * 0x1p-24f);
    /* the inputs all matter */
    assert_true(hma__mk_rng_key(43, "model.layers.0.mlp.up_proj.weight", 1) != k);
    assert_true(hma__mk_rng_key(42, "model.layers.1.mlp.up_proj.weight", 1) != k);
    assert_true(hma__mk_rng_key(42, "model.layers.0.mlp.up_proj.weight", 2) != k);
    for (uint64_t i = 0; i < 10000; i++) {
        float u = hma__mk_rng_uniform(k, i);
        assert_true(u >= 0.0f && u < 1.0f);
        assert_true(u * 0x1p24f == floorf(u * 0x1p24f));
    }
}

/* ---- DARE --------------------------------------------------------------- */

static void test_dare(void **state) {
    (void)state;
    uint64_t n = 200000;
    float *d = malloc(n * sizeof *d), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    assert_non_null(d);
    assert_non_null(a);
    assert_non_null(b);
    for (uint64_t i = 0; i < n; i++) d[i] = (float)(rnd_unit() + 0.25); /* no zeros */
    uint64_t key = hma__mk_rng_key(1, "t", 1);
    memcpy(a, d, n * sizeof *a);
    assert_int_equal(hma__mk_dare(1, a, n, 0.3, 0, key), HMA_OK);
    uint64_t kept = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (a[i] != 0.0f) {
            kept++;
            assert_true(a[i] == d[i]); /* no rescale */
        }
        /* the documented draw, element by element */
        assert_true((a[i] != 0.0f) == (hma__mk_rng_uniform(key, i) < 0.3f));
    }
    /* Binomial(200000, 0.3): sd 205; 8 sd (fails with probability ~1e-15) */
    assert_true(kept > 60000 - 1640 && kept < 60000 + 1640);
    /* thread count changes nothing; the seed changes the draw */
    memcpy(b, d, n * sizeof *b);
    assert_int_equal(hma__mk_dare(7, b, n, 0.3, 0, key), HMA_OK);
    assert_same_bits(a, b, n);
    memcpy(b, d, n * sizeof *b);
    assert_int_equal(hma__mk_dare(7, b, n, 0.3, 0, hma__mk_rng_key(2, "t", 1)), HMA_OK);
    uint64_t diff = 0;
    for (uint64_t i = 0; i < n; i++) diff += (a[i] != 0.0f) != (b[i] != 0.0f);
    assert_true(diff > n / 10); /* independent draws differ in 42% of places */
    /* rescale: the L1 norm comes back */
    memcpy(b, d, n * sizeof *b);
    assert_int_equal(hma__mk_dare(2, b, n, 0.3, 1, key), HMA_OK);
    double before = 0, after = 0, kept_l1 = 0;
    for (uint64_t i = 0; i < n; i++) {
        before += fabs((double)d[i]);
        after += fabs((double)b[i]);
        kept_l1 += a[i] != 0.0f ? fabs((double)d[i]) : 0.0;
    }
    assert_true(fabs(after / before - 1.0) < 1e-5);
    float f = (float)(before / kept_l1);
    for (uint64_t i = 0; i < n; i += 997) assert_true(b[i] == (a[i] != 0.0f ? d[i] * f : 0.0f));
    /* density >= 1: untouched */
    memcpy(b, d, n * sizeof *b);
    assert_int_equal(hma__mk_dare(2, b, n, 1.0, 1, key), HMA_OK);
    assert_same_bits(b, d, n);
    free(d);
    free(a);
    free(b);
}

/* ---- rescale ------------------------------------------------------------- */

static void test_rescale_hand(void **state) {
    (void)state;
    float d[4] = {4, -3, 2, 1};
    assert_int_equal(hma__mk_magnitude(1, d, 4, 0.5, 1), HMA_OK);
    float f = (float)(10.0 / 7.0);
    assert_true(d[0] == 4.0f * f && d[1] == -3.0f * f && d[2] == 0.0f && d[3] == 0.0f);
    float e[4] = {4, -3, 2, 1};
    assert_int_equal(hma__mk_magnitude(1, e, 4, 0.5, 0), HMA_OK);
    assert_true(e[0] == 4.0f && e[1] == -3.0f && e[2] == 0.0f && e[3] == 0.0f);
    assert_true(hma__mk_rescale_factor(9e-8, 1.0) == 1.0f);
    assert_true(hma__mk_rescale_factor(1.0, 9e-8) == 1.0f);
    assert_true(hma__mk_rescale_factor(3.0, 2.0) == 1.5f);
    /* magnitude keeps exactly int(density n), ties by index: |d| 1,1,1,1 */
    float t[4] = {1, -1, 1, -1};
    assert_int_equal(hma__mk_magnitude(1, t, 4, 0.5, 0), HMA_OK);
    assert_true(t[0] == 1.0f && t[1] == -1.0f && t[2] == 0.0f && t[3] == 0.0f);
}

/* ---- breadcrumbs --------------------------------------------------------- */

static void test_breadcrumbs(void **state) {
    (void)state;
    /* n_top = int(0.001 * 100) = 0: mergekit's slice [50:-0] would drop all;
     * libhma keeps ascending positions [50, 100): the 50 largest |d|. */
    float d[100], orig[100];
    for (int i = 0; i < 100; i++) orig[i] = d[i] = (float)((i * 37) % 100 + 1) * (i % 3 ? 1.0f : -1.0f);
    assert_int_equal(hma__mk_breadcrumbs(1, d, 100, 0.5, 0.001, 0), HMA_OK);
    int kept = 0;
    for (int i = 0; i < 100; i++) {
        int big = fabsf(orig[i]) > 50.0f;
        assert_true(d[i] == (big ? orig[i] : 0.0f));
        kept += big;
    }
    assert_int_equal(kept, 50);
    /* gamma 0.05 on data with ties against a brute-force ascending stable sort */
    uint64_t n = 150001;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    fill(x, n, 0);
    float *key = abs_of(x, n);
    uint64_t *o = order_of(key, n, 0);
    double density = 0.3, gamma = 0.05;
    int64_t target = (int64_t)(density * (double)n), n_top = (int64_t)(gamma * (double)n);
    int64_t n_bot = (int64_t)n - target - n_top;
    for (unsigned th = 1; th <= 7; th += 3) {
        memcpy(y, x, n * sizeof *y);
        assert_int_equal(hma__mk_breadcrumbs(th, y, n, density, gamma, 0), HMA_OK);
        float *want = calloc(n, sizeof *want);
        assert_non_null(want);
        for (uint64_t p = (uint64_t)n_bot; p < n - (uint64_t)n_top; p++) want[o[p]] = x[o[p]];
        for (uint64_t i = 0; i < n; i++) assert_true(y[i] == want[i]);
        free(want);
    }
    /* n_bot < 0 pulls n_top down: density 0.98, gamma 0.05 on 100 -> keep [0, 98) */
    for (int i = 0; i < 100; i++) d[i] = orig[i];
    assert_int_equal(hma__mk_breadcrumbs(1, d, 100, 0.98, 0.05, 0), HMA_OK);
    for (int i = 0; i < 100; i++) assert_true(d[i] == (fabsf(orig[i]) <= 98.0f ? orig[i] : 0.0f));
    free(o);
    free(key);
    free(x);
    free(y);
}

/* ---- DELLA --------------------------------------------------------------- */

static void test_della_hand(void **state) {
    (void)state;
    /* |d| descending, ties by index: 0 (0.3), 2 (0.3), 4, 1, 3 -> ranks 5,4,3,2,1 */
    static const float d0[5] = {0.3f, -0.1f, 0.3f, 0.05f, -0.2f};
    static const int rank[5] = {5, 2, 4, 1, 3};
    int saw_keep = 0, saw_drop = 0, saw_differ = 0;
    for (uint64_t seed = 0; seed < 400; seed++) {
        uint64_t key = hma__mk_rng_key(seed, "della", 1);
        float d[5];
        memcpy(d, d0, sizeof d);
        assert_int_equal(hma__mk_della(1, d, 1, 5, 0.5, 0.1, 0, key), HMA_OK);
        for (int j = 0; j < 5; j++) {
            /* p = (density - eps) + rank_norm * 2 * eps in float32:
             * 0.4, 0.45, 0.5, 0.55, 0.6 for ranks 1..5 */
            float p = (float)(0.5 - 0.1) + (float)(rank[j] - 1) / 4.0f * 2.0f * (float)0.1;
            int keep = hma__mk_rng_uniform(key, (uint64_t)j) < p;
            assert_true(d[j] == (keep ? d0[j] : 0.0f));
            saw_keep += keep;
            saw_drop += !keep;
            /* a draw that separates rank 5 (p 0.6) from rank 1 (p 0.4) */
            float u = hma__mk_rng_uniform(key, (uint64_t)j);
            saw_differ += u >= 0.4f && u < 0.6f;
        }
    }
    assert_true(saw_keep > 0 && saw_drop > 0 && saw_differ > 50);
    /* 2-D: ranks per row, draws by flat index */
    static const float m0[6] = {1, 2, 3, /* row 1 */ -3, -2, -1};
    static const int mrank[6] = {1, 2, 3, 3, 2, 1};
    for (uint64_t seed = 0; seed < 100; seed++) {
        uint64_t key = hma__mk_rng_key(seed, "della2", 2);
        float m[6];
        memcpy(m, m0, sizeof m);
        assert_int_equal(hma__mk_della(2, m, 2, 3, 0.5, 0.2, 0, key), HMA_OK);
        for (int j = 0; j < 6; j++) {
            float p = (float)(0.5 - 0.2) + (float)(mrank[j] - 1) / 2.0f * 2.0f * (float)0.2;
            assert_true(m[j] == (hma__mk_rng_uniform(key, (uint64_t)j) < p ? m0[j] : 0.0f));
        }
    }
    /* one column: rank_norm = 0, p = density - epsilon */
    for (uint64_t seed = 0; seed < 50; seed++) {
        uint64_t key = hma__mk_rng_key(seed, "col", 1);
        float c[3] = {1, 2, 3};
        assert_int_equal(hma__mk_della(1, c, 3, 1, 0.5, 0.1, 0, key), HMA_OK);
        for (int j = 0; j < 3; j++)
            assert_true(c[j] == (hma__mk_rng_uniform(key, (uint64_t)j) < 0.4f ? (float)(j + 1) : 0.0f));
    }
    /* density <= 0 zeroes (mergekit's zeros_like), >= 1 keeps */
    float z[3] = {1, 2, 3};
    assert_int_equal(hma__mk_della(1, z, 1, 3, 0.0, 0.1, 1, 7), HMA_OK);
    assert_true(z[0] == 0.0f && z[1] == 0.0f && z[2] == 0.0f);
    float k1[3] = {1, 2, 3};
    assert_int_equal(hma__mk_della(1, k1, 1, 3, 1.0, 0.1, 1, 7), HMA_OK);
    assert_true(k1[0] == 1.0f && k1[1] == 2.0f && k1[2] == 3.0f);
}

/* ---- jobs --------------------------------------------------------------- */

typedef struct tjob {
    hma__mk_job job;
    hma__mk_pv model[8];
    hma__mk_pv global;
    float *xs[8];
    uint64_t shape[2];
} tjob;

static void tjob_init(tjob *t, hma__mk_method m, const char *name, size_t n_in, uint64_t n, long base) {
    memset(t, 0, sizeof *t);
    t->job.method = m;
    t->job.name = name;
    t->job.ndim = 1;
    t->shape[0] = n;
    t->job.shape = t->shape;
    t->job.n = n;
    t->job.n_in = n_in;
    t->job.x = t->xs;
    t->job.base = base;
    t->job.model = t->model;
    t->job.global = &t->global;
    t->job.seed = 5;
    t->job.threads = 1;
    for (size_t i = 0; i < n_in; i++) {
        t->xs[i] = calloc(n ? n : 1, sizeof(float));
        assert_non_null(t->xs[i]);
    }
    t->job.out = calloc(n ? n : 1, sizeof(float));
    t->job.scratch = calloc(n ? n : 1, sizeof(float));
    assert_non_null(t->job.out);
    assert_non_null(t->job.scratch);
}
static void tjob_free(tjob *t) {
    for (size_t i = 0; i < t->job.n_in; i++) free(t->xs[i]);
    free(t->job.out);
    free(t->job.scratch);
}
static void setp(hma__mk_pv *pv, hma__mk_param p, double v) {
    pv->v[p] = v;
    pv->set[p] = 1;
}

/* base + 3 models; weights 1, 0.5, 2 */
static void ties_hand_job(tjob *t, int normalize, double lambda) {
    static const float base[6] = {10, 20, 30, 40, 50, 60};
    static const float d[3][6] = {
        {1, -1, 0, 0, 3, 1},   /* model 1 */
        {2, -2, 0, -1, 0, -1}, /* model 2 */
        {-1, 0.5f, 0, 0, 0, 0.25f},
    };
    tjob_init(t, HMA__MK_TIES, "ties.hand", 4, 6, 0);
    memcpy(t->xs[0], base, sizeof base);
    for (int m = 0; m < 3; m++)
        for (int j = 0; j < 6; j++) t->xs[m + 1][j] = base[j] + d[m][j];
    setp(&t->model[1], HMA__P_WEIGHT, 1.0);
    setp(&t->model[2], HMA__P_WEIGHT, 0.5);
    setp(&t->model[3], HMA__P_WEIGHT, 2.0);
    setp(&t->global, HMA__P_NORMALIZE, normalize);
    setp(&t->global, HMA__P_LAMBDA, lambda);
}

static void test_ties_hand(void **state) {
    (void)state;
    tjob t;
    ties_hand_job(&t, 1, 1.0);
    assert_int_equal(hma__mk_validate_gta(&t.job, "hand"), HMA_OK);
    assert_int_equal(hma__mk_run_gta(&t.job), HMA_OK);
    /* wd = d * w:
     * e0: 1, 1, -2: sum 0 counts as +: mixed 2, divisor 1.5
     * e1: -1, -1, 1: sum -1: mixed -2, divisor 1.5
     * e2: all 0: nothing counts, divisor 0 -> 1: + 0
     * e3: 0, -0.5, 0: -: mixed -0.5, divisor 0.5
     * e4: 3, 0, 0: +: 3 / 1
     * e5: 1, -0.5, 0.5: sum 1: mixed 1.5, divisor 3 */
    float *o = t.job.out;
    assert_true(o[0] == 10.0f + 2.0f / 1.5f);
    assert_true(o[1] == 20.0f + -2.0f / 1.5f);
    assert_true(o[2] == 30.0f);
    assert_true(o[3] == 40.0f + -0.5f / 0.5f);
    assert_true(o[4] == 53.0f);
    assert_true(o[5] == 60.0f + 1.5f / 3.0f);
    tjob_free(&t);

    /* normalize off, lambda 0.5 */
    ties_hand_job(&t, 0, 0.5);
    assert_int_equal(hma__mk_run_gta(&t.job), HMA_OK);
    o = t.job.out;
    assert_true(o[0] == 10.0f + 2.0f * 0.5f);
    assert_true(o[1] == 20.0f + -2.0f * 0.5f);
    assert_true(o[2] == 30.0f);
    assert_true(o[3] == 40.0f + -0.5f * 0.5f);
    assert_true(o[5] == 60.0f + 1.5f * 0.5f);
    tjob_free(&t);

    /* counted weights summing to zero: divisor 0 -> 1 (weights 1 and -1) */
    tjob_init(&t, HMA__MK_TIES, "ties.zero", 3, 2, 0);
    t.xs[0][0] = 1;
    t.xs[0][1] = 1;
    t.xs[1][0] = 2;  /* d 1, w 1: wd 1 */
    t.xs[2][0] = 0;  /* d -1, w -1: wd 1 */
    t.xs[1][1] = 1;
    t.xs[2][1] = 1;
    setp(&t.model[1], HMA__P_WEIGHT, 1.0);
    setp(&t.model[2], HMA__P_WEIGHT, -1.0);
    assert_int_equal(hma__mk_run_gta(&t.job), HMA_OK); /* normalize: the default of ties (true) */
    assert_true(t.job.out[0] == 1.0f + 2.0f);
    assert_true(t.job.out[1] == 1.0f);
    tjob_free(&t);

    /* trimming with a tie at the threshold: density 0.5 of 4 keeps 2, by index */
    tjob_init(&t, HMA__MK_TIES, "ties.trim", 2, 4, 1);
    static const float dd[4] = {1, -1, 1, 0.5f};
    for (int j = 0; j < 4; j++) t.xs[0][j] = 100.0f + dd[j];
    for (int j = 0; j < 4; j++) t.xs[1][j] = 100.0f;
    setp(&t.model[0], HMA__P_WEIGHT, 1.0);
    setp(&t.model[0], HMA__P_DENSITY, 0.5);
    assert_int_equal(hma__mk_run_gta(&t.job), HMA_OK);
    assert_true(t.job.out[0] == 101.0f && t.job.out[1] == 99.0f && t.job.out[2] == 100.0f &&
                t.job.out[3] == 100.0f);
    tjob_free(&t);

    /* task_arithmetic: sum w d, divisor sum w only with normalize; no sources: base */
    tjob_init(&t, HMA__MK_TASK_ARITHMETIC, "ta", 3, 1, 1);
    t.xs[0][0] = 3;
    t.xs[1][0] = 1;
    t.xs[2][0] = -1;
    setp(&t.model[0], HMA__P_WEIGHT, 0.5);
    setp(&t.model[2], HMA__P_WEIGHT, 2.0);
    assert_int_equal(hma__mk_run_gta(&t.job), HMA_OK);
    assert_true(t.job.out[0] == 1.0f + (2.0f * 0.5f + -2.0f * 2.0f));
    setp(&t.global, HMA__P_NORMALIZE, 1);
    assert_int_equal(hma__mk_run_gta(&t.job), HMA_OK);
    assert_true(t.job.out[0] == 1.0f + (2.0f * 0.5f + -2.0f * 2.0f) / 2.5f);
    tjob_free(&t);
    tjob_init(&t, HMA__MK_TIES, "alone", 1, 3, 0);
    t.xs[0][1] = 7;
    assert_int_equal(hma__mk_run_gta(&t.job), HMA_OK);
    assert_true(t.job.out[0] == 0.0f && t.job.out[1] == 7.0f);
    tjob_free(&t);
}

/* Every GTA method gives the same bits for 1, 2 and 7 threads. */
static void test_gta_threads(void **state) {
    (void)state;
    static const hma__mk_method ms[] = {HMA__MK_TASK_ARITHMETIC, HMA__MK_TIES, HMA__MK_DARE_LINEAR,
                                        HMA__MK_DARE_TIES, HMA__MK_BREADCRUMBS, HMA__MK_BREADCRUMBS_TIES,
                                        HMA__MK_DELLA, HMA__MK_DELLA_LINEAR};
    uint64_t rows = 300, cols = 700, n = rows * cols;
    float *src[3], *ref = malloc(n * sizeof *ref);
    assert_non_null(ref);
    for (int i = 0; i < 3; i++) {
        src[i] = malloc(n * sizeof(float));
        assert_non_null(src[i]);
        fill(src[i], n, 1);
    }
    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
        for (int ti = 0; ti < 3; ti++) {
            static const unsigned th[3] = {1, 2, 7};
            tjob t;
            tjob_init(&t, ms[mi], "model.layers.3.self_attn.o_proj.weight", 3, n, 0);
            t.job.ndim = 2;
            t.shape[0] = rows;
            t.shape[1] = cols;
            t.job.threads = th[ti];
            for (int i = 0; i < 3; i++) memcpy(t.xs[i], src[i], n * sizeof(float));
            setp(&t.model[1], HMA__P_WEIGHT, 0.7);
            setp(&t.model[2], HMA__P_WEIGHT, 0.4);
            setp(&t.model[1], HMA__P_DENSITY, 0.4);
            setp(&t.model[2], HMA__P_DENSITY, 0.6);
            setp(&t.global, HMA__P_RESCALE, 1);
            assert_int_equal(hma__mk_validate_gta(&t.job, "threads"), HMA_OK);
            assert_int_equal(hma__mk_run_gta(&t.job), HMA_OK);
            if (ti == 0) {
                memcpy(ref, t.job.out, n * sizeof *ref);
                uint64_t changed = 0;
                for (uint64_t e = 0; e < n; e++) changed += ref[e] != src[0][e];
                assert_true(changed > n / 10); /* a real merge happened */
            } else {
                assert_same_bits(ref, t.job.out, n);
            }
            tjob_free(&t);
        }
    }
    for (int i = 0; i < 3; i++) free(src[i]);
    free(ref);
}

/* TIES on bf16-like data against an element-by-element reference built on
 * the brute-force stable order. */
static void test_ties_reference(void **state) {
    (void)state;
    uint64_t n = 140000;
    float *b = malloc(n * sizeof *b), *x1 = malloc(n * sizeof *x1), *x2 = malloc(n * sizeof *x2);
    float *want = malloc(n * sizeof *want);
    assert_true(b && x1 && x2 && want);
    for (uint64_t e = 0; e < n; e++) {
        b[e] = bf16_trunc((float)(rnd_unit() - 0.5));
        x1[e] = bf16_trunc(b[e] + (float)(rnd_unit() - 0.5) * 0.01f);
        x2[e] = bf16_trunc(b[e] + (float)(rnd_unit() - 0.5) * 0.01f);
    }
    float *d[2] = {malloc(n * sizeof(float)), malloc(n * sizeof(float))};
    assert_true(d[0] && d[1]);
    const float *xs[2] = {x1, x2};
    double dens[2] = {0.3, 0.55};
    float w[2] = {0.6f, 1.3f};
    for (int i = 0; i < 2; i++) {
        for (uint64_t e = 0; e < n; e++) d[i][e] = xs[i][e] - b[e];
        float *key = abs_of(d[i], n);
        uint64_t *o = order_of(key, n, 1);
        uint64_t k = (uint64_t)(dens[i] * (double)n);
        for (uint64_t p = k; p < n; p++) d[i][o[p]] = 0.0f;
        free(o);
        free(key);
    }
    for (uint64_t e = 0; e < n; e++) {
        float wd0 = d[0][e] * w[0], wd1 = d[1][e] * w[1];
        float s = 0.0f + wd0 + wd1;
        int pos = s >= 0.0f;
        int c0 = pos ? wd0 > 0 : wd0 < 0, c1 = pos ? wd1 > 0 : wd1 < 0;
        float mixed = 0.0f + (c0 ? wd0 : 0.0f) + (c1 ? wd1 : 0.0f);
        float div = 0.0f + (c0 ? w[0] : 0.0f) + (c1 ? w[1] : 0.0f);
        if (div == 0.0f) div = 1.0f;
        want[e] = b[e] + mixed / div;
    }
    for (unsigned th = 1; th <= 4; th += 3) {
        tjob t;
        tjob_init(&t, HMA__MK_TIES, "ref", 3, n, 0);
        t.job.threads = th;
        memcpy(t.xs[0], b, n * sizeof *b);
        memcpy(t.xs[1], x1, n * sizeof *b);
        memcpy(t.xs[2], x2, n * sizeof *b);
        for (int i = 0; i < 2; i++) {
            setp(&t.model[i + 1], HMA__P_WEIGHT, (double)w[i]);
            setp(&t.model[i + 1], HMA__P_DENSITY, dens[i]);
        }
        assert_int_equal(hma__mk_run_gta(&t.job), HMA_OK);
        assert_same_bits(want, t.job.out, n);
        tjob_free(&t);
    }
    free(d[0]);
    free(d[1]);
    free(b);
    free(x1);
    free(x2);
    free(want);
}

/* ---- validation --------------------------------------------------------- */

static void expect_recipe_error(tjob *t, const char *needle) {
    assert_int_equal(hma__mk_validate_gta(&t->job, "r.yml: tensor 'w'"), HMA_ERR_RECIPE);
    const char *msg = hma_last_error();
    if (!strstr(msg, needle)) {
        fprintf(stderr, "message '%s' lacks '%s'\n", msg, needle);
        fail();
    }
    assert_non_null(strstr(msg, "r.yml: tensor 'w'"));
}

static void test_validate(void **state) {
    (void)state;
    tjob t;
    tjob_init(&t, HMA__MK_TIES, "w", 2, 256, 0);
    setp(&t.model[1], HMA__P_WEIGHT, 1);
    setp(&t.model[1], HMA__P_DENSITY, 0.001);
    expect_recipe_error(&t, "model #1: density 0.001 keeps no element of 256");
    setp(&t.model[1], HMA__P_DENSITY, 0.004); /* int(1.024) = 1 */
    assert_int_equal(hma__mk_validate_gta(&t.job, "x"), HMA_OK);
    setp(&t.model[1], HMA__P_DENSITY, -0.5);
    expect_recipe_error(&t, "density -0.5");
    t.model[1].set[HMA__P_WEIGHT] = 0;
    setp(&t.model[1], HMA__P_DENSITY, 0.5);
    expect_recipe_error(&t, "needs a 'weight'");
    setp(&t.model[1], HMA__P_WEIGHT, 1);
    t.job.base = -1;
    expect_recipe_error(&t, "needs a base_model");
    t.job.base = 0;
    t.job.method = HMA__MK_BREADCRUMBS;
    setp(&t.model[1], HMA__P_GAMMA, 1.5);
    expect_recipe_error(&t, "gamma 1.5");
    t.job.method = HMA__MK_DELLA;
    setp(&t.model[1], HMA__P_DENSITY, 0.9); /* default epsilon 0.15: 1.05 >= 1 */
    expect_recipe_error(&t, "density + epsilon < 1");
    setp(&t.model[1], HMA__P_EPSILON, 0.05);
    assert_int_equal(hma__mk_validate_gta(&t.job, "x"), HMA_OK);
    setp(&t.model[1], HMA__P_DENSITY, 0.1);
    setp(&t.model[1], HMA__P_EPSILON, 0.1);
    expect_recipe_error(&t, "0 < density - epsilon");
    setp(&t.model[1], HMA__P_DENSITY, 0.0); /* della returns zeros: allowed */
    assert_int_equal(hma__mk_validate_gta(&t.job, "x"), HMA_OK);
    setp(&t.model[1], HMA__P_DENSITY, 0.5);
    uint64_t shape3[3] = {4, 8, 8};
    t.job.ndim = 3;
    t.job.shape = shape3;
    expect_recipe_error(&t, "1-D and 2-D tensors only");
    /* dare: density 0 is allowed (all dropped, as torch.bernoulli(0)) */
    t.job.method = HMA__MK_DARE_TIES;
    setp(&t.model[1], HMA__P_DENSITY, 0.0);
    assert_int_equal(hma__mk_validate_gta(&t.job, "x"), HMA_OK);
    t.job.shape = t.shape;
    t.job.ndim = 1;
    t.job.base = -1;
    assert_int_equal(hma__mk_validate_sce(&t.job, "x"), HMA_ERR_RECIPE);
    t.job.base = 0;
    assert_int_equal(hma__mk_validate_sce(&t.job, "x"), HMA_OK);
    tjob_free(&t);
}

/* ---- SCE ---------------------------------------------------------------- */

static void test_sce_hand(void **state) {
    (void)state;
    tjob t;
    /* base 1; tv1 = 1 2 0 -1, tv2 = 3 2 0 1; select_topk 0.5.
     * variance: 1 0 0 1 -> nonzero 2, k = int(2 * 0.5) = 1: element 0
     * (tie with element 3, broken by index). Masked: tv1 = 1 0 0 0, tv2 = 3 0 0 0.
     * Sign: + at 0, both count. Weights mean(tv^2): 1/4, 9/4 -> 0.1, 0.9. */
    tjob_init(&t, HMA__MK_SCE, "sce", 3, 4, 0);
    static const float tv1[4] = {1, 2, 0, -1}, tv2[4] = {3, 2, 0, 1};
    for (int j = 0; j < 4; j++) {
        t.xs[0][j] = 1.0f;
        t.xs[1][j] = 1.0f + tv1[j];
        t.xs[2][j] = 1.0f + tv2[j];
    }
    setp(&t.global, HMA__P_SELECT_TOPK, 0.5);
    assert_int_equal(hma__mk_run_sce(&t.job), HMA_OK);
    float w1 = (float)(0.25 / 2.5), w2 = (float)(2.25 / 2.5);
    float e0 = (1.0f * w1 + 3.0f * w2) / (w1 + w2);
    assert_true(t.job.out[0] == 1.0f + e0);
    assert_true(t.job.out[1] == 1.0f && t.job.out[2] == 1.0f && t.job.out[3] == 1.0f);
    tjob_free(&t);

    /* no selection (select_topk 1): sign election on the raw task vectors.
     * tv1 = 1 -2, tv2 = -3 1: e0 sum -2 -> only tv2 counts; e1 sum -1 -> only tv1.
     * weights: mean(tv1^2) 2.5, mean(tv2^2) 5 -> 1/3, 2/3 */
    tjob_init(&t, HMA__MK_SCE, "sce2", 3, 2, 2);
    t.xs[0][0] = 1;
    t.xs[0][1] = -2;
    t.xs[1][0] = -3;
    t.xs[1][1] = 1;
    assert_int_equal(hma__mk_run_sce(&t.job), HMA_OK);
    float v1 = (float)(2.5 / 7.5), v2 = (float)(5.0 / 7.5);
    assert_true(t.job.out[0] == (-3.0f * v2) / v2);
    assert_true(t.job.out[1] == (-2.0f * v1) / v1);
    tjob_free(&t);

    /* select_topk 0: everything masked, the base comes back */
    tjob_init(&t, HMA__MK_SCE, "sce3", 2, 3, 0);
    t.xs[0][0] = 5;
    t.xs[1][0] = 9;
    t.xs[1][2] = -1;
    setp(&t.global, HMA__P_SELECT_TOPK, 0.0);
    assert_int_equal(hma__mk_run_sce(&t.job), HMA_OK);
    assert_true(t.job.out[0] == 5.0f && t.job.out[1] == 0.0f && t.job.out[2] == 0.0f);
    tjob_free(&t);
}

static void test_sce_threads(void **state) {
    (void)state;
    uint64_t n = 200000;
    float *src[3], *ref = malloc(n * sizeof *ref);
    assert_non_null(ref);
    for (int i = 0; i < 3; i++) {
        src[i] = malloc(n * sizeof(float));
        assert_non_null(src[i]);
        fill(src[i], n, 0);
    }
    for (int ti = 0; ti < 3; ti++) {
        static const unsigned th[3] = {1, 2, 7};
        tjob t;
        tjob_init(&t, HMA__MK_SCE, "sce.t", 3, n, 1);
        t.job.threads = th[ti];
        for (int i = 0; i < 3; i++) memcpy(t.xs[i], src[i], n * sizeof(float));
        setp(&t.global, HMA__P_SELECT_TOPK, 0.3);
        assert_int_equal(hma__mk_run_sce(&t.job), HMA_OK);
        if (ti == 0) {
            memcpy(ref, t.job.out, n * sizeof *ref);
            /* about 30% of the nonzero-variance elements move away from the base */
            uint64_t moved = 0;
            for (uint64_t e = 0; e < n; e++) moved += ref[e] != src[1][e];
            assert_true(moved > n / 5 && moved < n * 2 / 5);
        } else {
            assert_same_bits(ref, t.job.out, n);
        }
        tjob_free(&t);
    }
    for (int i = 0; i < 3; i++) free(src[i]);
    free(ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select_bruteforce), cmocka_unit_test(test_select_ties_split),
        cmocka_unit_test(test_select_edges),      cmocka_unit_test(test_rng_formula),
        cmocka_unit_test(test_dare),              cmocka_unit_test(test_rescale_hand),
        cmocka_unit_test(test_breadcrumbs),       cmocka_unit_test(test_della_hand),
        cmocka_unit_test(test_ties_hand),         cmocka_unit_test(test_gta_threads),
        cmocka_unit_test(test_ties_reference),    cmocka_unit_test(test_validate),
        cmocka_unit_test(test_sce_hand),          cmocka_unit_test(test_sce_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
