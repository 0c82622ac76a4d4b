/*
 * test_mk_raw.c - the fast paths of the raw-reading methods (mk.h:
 * hma__mk_job.raw and .sink; mk_select.c: the range mode of the
 * selection): raw BF16 / unaligned F32 sources give the same bits as the
 * float32 sources, the sink gets every element once with the same values,
 * for 1, 2 and 3 threads; a selection whose predicted range misses falls
 * back to the histograms and still gives the brute-force cut.
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

#include "core/cpu.h"
#include "mergekit/mk_sparse.h"
#include "mergekit/recipe_impl.h"
#include "testutil.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) { return hma__mk_fmix64(g_rng += 0x9e3779b97f4a7c15ull); }
static double rnd_unit(void) { return (double)(rnd() >> 11) * 0x1p-53; }

static uint16_t bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16); /* truncation: any bf16 value will do */
}
static float bf16_val(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#define NSRC 3

typedef struct rjob {
    hma__mk_job job;
    hma__mk_pv model[NSRC], global;
    float *xs[NSRC];
    const void *raw[NSRC];
    hma_dtype dt[NSRC];
    uint64_t shape[2];
} rjob;

static void rjob_init(rjob *t, hma__mk_method m, uint64_t rows, uint64_t cols, unsigned threads) {
    memset(t, 0, sizeof *t);
    uint64_t n = rows * cols;
    t->job.method = m;
    t->job.name = "model.layers.1.mlp.up_proj.weight";
    t->job.ndim = 2;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->job.shape = t->shape;
    t->job.n = n;
    t->job.n_in = NSRC;
    t->job.x = t->xs;
    t->job.base = 0;
    t->job.model = t->model;
    t->job.global = &t->global;
    t->job.threads = threads;
    t->job.out = malloc(n * sizeof(float));
    t->job.scratch = malloc(n * sizeof(float));
    assert_non_null(t->job.out);
    assert_non_null(t->job.scratch);
    for (int i = 0; i < NSRC; i++) {
        t->xs[i] = malloc(n * sizeof(float));
        assert_non_null(t->xs[i]);
    }
    t->model[1].v[HMA__P_WEIGHT] = 0.7, t->model[1].set[HMA__P_WEIGHT] = 1;
    t->model[2].v[HMA__P_WEIGHT] = 0.4, t->model[2].set[HMA__P_WEIGHT] = 1;
    t->model[1].v[HMA__P_DENSITY] = 0.5, t->model[1].set[HMA__P_DENSITY] = 1;
    t->model[2].v[HMA__P_DENSITY] = 0.7, t->model[2].set[HMA__P_DENSITY] = 1;
    t->model[1].v[HMA__P_GAMMA] = 0.01, t->model[1].set[HMA__P_GAMMA] = 1;
    t->model[2].v[HMA__P_GAMMA] = 0.02, t->model[2].set[HMA__P_GAMMA] = 1;
    t->global.v[HMA__P_RESCALE] = 1, t->global.set[HMA__P_RESCALE] = 1;
}
static void rjob_free(rjob *t) {
    for (int i = 0; i < NSRC; i++) free(t->xs[i]);
    free(t->job.out);
    free(t->job.scratch);
}

/* The sink's record: every element once. */
typedef struct sink_rec {
    float *v;
    unsigned char *seen;
    uint64_t n;
    int dup;
} sink_rec;
static int sink_fn(void *user, unsigned worker, uint64_t e0, const float *v, size_t len) {
    sink_rec *r = user;
    (void)worker;
    /* called from several workers at once: the shared flags are atomic */
    int bad = e0 % HMA__MK_CHUNK != 0 || len > HMA__MK_CHUNK || e0 + len > r->n;
    for (size_t j = 0; j < len && e0 + j < r->n; j++) {
        bad |= __atomic_exchange_n(&r->seen[e0 + j], 1, __ATOMIC_RELAXED);
        r->v[e0 + j] = v[j];
    }
    if (bad) __atomic_store_n(&r->dup, 1, __ATOMIC_RELAXED);
    return HMA_OK;
}

/* The release callback's record: elements released per source. */
typedef struct rel_rec {
    uint64_t done[NSRC], n;
    int bad;
} rel_rec;
static void rel_fn(void *user, size_t src, uint64_t e0, uint64_t e1) {
    rel_rec *r = user;
    if (src >= NSRC || e0 >= e1 || e1 > r->n) {
        __atomic_store_n(&r->bad, 1, __ATOMIC_RELAXED);
        return;
    }
    __atomic_fetch_add(&r->done[src], e1 - e0, __ATOMIC_RELAXED);
}

static void assert_same_bits(const float *a, const float *b, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], 4) != 0) {
            fprintf(stderr, "element %llu: %.9g vs %.9g\n", (unsigned long long)i, (double)a[i], (double)b[i]);
            fail();
        }
}

/* Sources as bf16 (like fine-tunes of one base); f32: the same values,
 * stored 2 bytes off 4-byte alignment (raw F32 that cannot be a float *). */
static void run_case(hma__mk_method m, uint64_t rows, uint64_t cols) {
    uint64_t n = rows * cols;
    uint16_t *b16[NSRC];
    unsigned char *f32buf[NSRC];
    for (int i = 0; i < NSRC; i++) {
        b16[i] = malloc(n * 2 + 2);
        f32buf[i] = malloc(n * 4 + 2);
        assert_non_null(b16[i]);
        assert_non_null(f32buf[i]);
    }
    for (uint64_t e = 0; e < n; e++) {
        float w = (float)(rnd_unit() - 0.5) * 0.1f;
        b16[0][e] = bf16_bits(w);
        for (int i = 1; i < NSRC; i++) b16[i][e] = bf16_bits(bf16_val(b16[0][e]) + (float)(rnd_unit() - 0.5) * 0.002f);
    }
    float *ref = malloc(n * sizeof *ref);
    assert_non_null(ref);
    static const unsigned th[3] = {1, 2, 3};
    for (int ti = 0; ti < 3; ti++) {
        /* 1: float32 sources */
        rjob t;
        rjob_init(&t, m, rows, cols, th[ti]);
        for (int i = 0; i < NSRC; i++)
            for (uint64_t e = 0; e < n; e++) t.xs[i][e] = bf16_val(b16[i][e]);
        assert_int_equal(hma__mk_merge(&t.job), HMA_OK);
        if (ti == 0) {
            memcpy(ref, t.job.out, n * sizeof *ref);
            uint64_t changed = 0;
            for (uint64_t e = 0; e < n; e++) changed += ref[e] != t.xs[0][e];
            assert_true(changed > n / 4); /* a real merge happened */
        } else {
            assert_same_bits(ref, t.job.out, n);
        }
        assert_int_equal(hma__mk_reads_raw(&t.job), 1);
        /* 2: raw BF16 (x poisoned: never read), then raw unaligned F32 */
        for (int kind = 0; kind < 2; kind++) {
            for (int i = 0; i < NSRC; i++) {
                for (uint64_t e = 0; e < n; e++) t.xs[i][e] = NAN;
                if (kind == 0) {
                    t.raw[i] = b16[i];
                    t.dt[i] = HMA_DTYPE_BF16;
                } else {
                    for (uint64_t e = 0; e < n; e++) {
                        float v = bf16_val(b16[i][e]);
                        memcpy(f32buf[i] + 2 + e * 4, &v, 4);
                    }
                    t.raw[i] = f32buf[i] + 2;
                    t.dt[i] = HMA_DTYPE_F32;
                }
            }
            t.job.raw = t.raw;
            t.job.raw_dtype = t.dt;
            memset(t.job.out, 0xff, n * sizeof(float));
            assert_int_equal(hma__mk_merge(&t.job), HMA_OK);
            assert_same_bits(ref, t.job.out, n);
            /* 3: the same through the sink (out untouched) */
            sink_rec r = {malloc(n * sizeof(float)), calloc(n, 1), n, 0};
            assert_non_null(r.v);
            assert_non_null(r.seen);
            memset(t.job.out, 0, n * sizeof(float));
            t.job.sink = sink_fn;
            t.job.sink_user = &r;
            assert_int_equal(hma__mk_merge(&t.job), HMA_OK);
            assert_false(r.dup);
            for (uint64_t e = 0; e < n; e++) assert_true(r.seen[e]);
            assert_same_bits(ref, r.v, n);
            for (uint64_t e = 0; e < n; e++) assert_true(t.job.out[e] == 0.0f);
            t.job.sink = NULL;
            t.job.sink_user = NULL;
            free(r.v);
            free(r.seen);
            /* 4: prepared ahead twice with one workspace (as the recipe
             * layer's lookahead does), then each merged through the sink,
             * with every source's elements released exactly once */
            hma__mk_ws ws;
            memset(&ws, 0, sizeof ws);
            t.job.ws = &ws;
            hma__mk_prep *pp[2] = {NULL, NULL};
            assert_int_equal(hma__mk_prepare(&t.job, &pp[0]), HMA_OK);
            assert_int_equal(hma__mk_prepare(&t.job, &pp[1]), HMA_OK);
            assert_non_null(pp[0]);
            assert_non_null(pp[1]);
            for (int q = 0; q < 2; q++) {
                sink_rec r2 = {malloc(n * sizeof(float)), calloc(n, 1), n, 0};
                assert_non_null(r2.v);
                assert_non_null(r2.seen);
                rel_rec rr;
                memset(&rr, 0, sizeof rr);
                rr.n = n;
                t.job.sink = sink_fn;
                t.job.sink_user = &r2;
                t.job.release = rel_fn;
                t.job.release_user = &rr;
                assert_int_equal(hma__mk_merge_prepared(&t.job, pp[q]), HMA_OK);
                assert_false(r2.dup);
                for (uint64_t e = 0; e < n; e++) assert_true(r2.seen[e]);
                assert_same_bits(ref, r2.v, n);
                assert_false(rr.bad);
                for (int i = 0; i < NSRC; i++) assert_int_equal(rr.done[i], n);
                free(r2.v);
                free(r2.seen);
            }
            hma__mk_prep_free(pp[0]);
            hma__mk_prep_free(pp[1]);
            hma__mk_prep_free(NULL);
            hma__mk_ws_free(&ws);
            t.job.ws = NULL;
            t.job.sink = NULL;
            t.job.sink_user = NULL;
            t.job.release = NULL;
            t.job.release_user = NULL;
        }
        rjob_free(&t);
    }
    free(ref);
    for (int i = 0; i < NSRC; i++) {
        free(b16[i]);
        free(f32buf[i]);
    }
}

static void test_raw_same_bits(void **state) {
    (void)state;
    static const hma__mk_method ms[] = {HMA__MK_TASK_ARITHMETIC, HMA__MK_TIES, HMA__MK_BREADCRUMBS,
                                        HMA__MK_BREADCRUMBS_TIES};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        run_case(ms[i], 40, 25);   /* small: no sample, in-cache paths */
        run_case(ms[i], 300, 700); /* 210000: the sampled range mode of TIES */
    }
}

/* The recipe layer's lookahead (every tensor's selection prepared before
 * the first merge) gives the same file as merging tensor after tensor, for
 * the methods it prepares and for one it does not (dare_ties loads float32
 * copies), on the toy pair. */
static void test_recipe_lookahead(void **state) {
    (void)state;
    char *base = tu_toy_path("base.safetensors"), *al = tu_toy_path("aligned.safetensors");
    char *dir = tu_mkdtemp();
    static const char *methods[] = {"ties", "breadcrumbs_ties", "task_arithmetic", "dare_ties"};
    for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++) {
        char text[2048];
        snprintf(text, sizeof text,
                 "merge_method: %s\nbase_model: %s\nmodels:\n  - model: %s\n    parameters: {weight: 0.8, "
                 "density: 0.4, gamma: 0.01}\n  - model: %s\n    parameters: {weight: 0.5, density: 0.6, gamma: "
                 "0.02}\nparameters: {normalize: true}\ndtype: float32\nout_dtype: bfloat16\n",
                 methods[k], base, al, base);
        size_t len[2] = {0, 0};
        unsigned char *bytes[2] = {NULL, NULL};
        for (int ahead = 0; ahead < 2; ahead++) {
            hma_recipe *r = NULL;
            assert_int_equal(hma_recipe_parse(&r, text, strlen(text), "r.yml"), HMA_OK);
            assert_int_equal(hma_recipe_resolve(r), HMA_OK);
            r->lookahead_all = ahead;
            char name[64];
            snprintf(name, sizeof name, "out-%zu-%d.safetensors", k, ahead);
            char *out = tu_join(dir, name);
            hma_recipe_options o;
            hma_recipe_options_init(&o);
            o.threads = 2;
            if (hma_recipe_merge_to(r, out, &o) != HMA_OK) fail_msg("%s: %s", methods[k], hma_last_error());
            bytes[ahead] = tu_read_file(out, &len[ahead]);
            assert_non_null(bytes[ahead]);
            hma_recipe_free(r);
            free(out);
        }
        assert_int_equal(len[0], len[1]);
        /* the header differs in the recipe's command line only if at all: compare the data */
        uint64_t hl = 0;
        for (int b = 0; b < 8; b++) hl |= (uint64_t)bytes[0][b] << (8 * b);
        assert_memory_equal(bytes[0] + 8 + hl, bytes[1] + 8 + hl, len[0] - 8 - hl);
        free(bytes[0]);
        free(bytes[1]);
    }
    tu_rmtree(dir);
    free(dir), free(base), free(al);
}

/* Methods that write their sources never take raw bytes. */
static void test_raw_predicate(void **state) {
    (void)state;
    hma__mk_job j;
    memset(&j, 0, sizeof j);
    static const hma__mk_method no[] = {HMA__MK_DARE_LINEAR, HMA__MK_DARE_TIES, HMA__MK_DELLA,
                                        HMA__MK_DELLA_LINEAR, HMA__MK_LINEAR,    HMA__MK_SCE,
                                        HMA__MK_SLERP,        HMA__MK_MODEL_STOCK};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        j.method = no[i];
        assert_int_equal(hma__mk_reads_raw(&j), 0);
    }
}

/* The brute-force cut of the first m by |x| (desc) or ascending. */
static void brute_cut(const float *x, uint64_t n, uint64_t m, int desc, uint32_t *thr, uint64_t *above,
                      uint64_t *eq) {
    uint32_t *k = malloc(n * sizeof *k);
    assert_non_null(k);
    for (uint64_t e = 0; e < n; e++) k[e] = hma__mk_key_bits(x[e]);
    /* the boundary key: smallest t with #(k > t) < m <= #(k >= t) (desc) */
    uint32_t lo = 0, hi = 0x7fffffffu;
    uint64_t r = desc ? m - 1 : n - m; /* rank from the top */
    while (lo < hi) { /* largest t with #(k >= t) > r */
        uint32_t mid = lo + (hi - lo + 1) / 2;
        uint64_t ge = 0;
        for (uint64_t e = 0; e < n; e++) ge += k[e] >= mid;
        if (ge > r) lo = mid;
        else hi = mid - 1;
    }
    *thr = lo;
    *above = *eq = 0;
    for (uint64_t e = 0; e < n; e++) {
        *above += k[e] > lo;
        *eq += k[e] == lo;
    }
    free(k);
}

static void check_cut(const hma__mk_cut *c, const float *x, uint64_t n, uint64_t m, int desc) {
    uint32_t thr;
    uint64_t above, eq;
    brute_cut(x, n, m, desc, &thr, &above, &eq);
    assert_int_equal(c->thr, thr);
    assert_int_equal(c->n_first, desc ? m - above : m - (n - above - eq));
}

/* A cut far from the one the range was predicted for misses the range:
 * the histograms give it all the same. */
static void test_range_fallback(void **state) {
    (void)state;
    uint64_t n = 300001;
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    for (uint64_t e = 0; e < n; e++) {
        float w = bf16_val(bf16_bits((float)(rnd_unit() - 0.5) * 0.1f));
        x[e] = bf16_val(bf16_bits(w + (float)(rnd_unit() - 0.5) * 0.002f)) - w;
    }
    static const unsigned th[3] = {1, 2, 3};
    for (int ti = 0; ti < 3; ti++) {
        hma__mk_parts pt;
        hma__mk_parts_init(&pt, n, th[ti], NULL);
        hma__mk_keys keys = hma__mk_keys_f(x, NULL);
        for (int miss = 0; miss < 2; miss++) {
            hma__mk_sel s;
            assert_int_equal(hma__mk_sel_init(&s, &pt), HMA_OK);
            s.one_cut = 1;
            assert_int_equal(hma__mk_sel_count(&s, &keys, NULL, n / 2, 1), HMA_OK);
            assert_true(s.ranged);
            uint64_t m = miss ? n / 50 : n / 2;
            hma__mk_cut c;
            assert_int_equal(hma__mk_sel_cut(&s, &keys, m, 1, &c), HMA_OK);
            assert_int_equal(s.ranged, !miss); /* the miss took the fallback */
            check_cut(&c, x, n, m, 1);
            /* the split of the ties over the parts adds up */
            uint64_t eqs = 0;
            for (unsigned p = 0; p < pt.count; p++) assert_true(c.eq_before[p] >= eqs), eqs = c.eq_before[p];
            hma__mk_cut_free(&c);
            hma__mk_sel_free(&s);
        }
    }
    free(x);
}

/* Keys that lump on one value at the boundary: the range's ends are that
 * value (counted, not collected), and the cut is the lump's key from the
 * counts alone (rhi, rlo, or both when rlo == rhi), with the ties split
 * over the parts as the brute force has them. */
static void test_range_lumps(void **state) {
    (void)state;
    uint64_t n = 300001;
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    /* fractions of keys above 0.5, at 0.5 and below, and the cut's rank */
    static const double shape[3][4] = {{0.2, 0.6, 0.2, 0.5}, {0.4, 0.2, 0.4, 0.595}, {0.4, 0.2, 0.4, 0.405}};
    for (int c = 0; c < 3; c++) {
        for (uint64_t e = 0; e < n; e++) {
            double u = rnd_unit(), v = rnd_unit();
            float k = u < shape[c][0] ? 0.5f + 0.5f * (float)v : u < shape[c][0] + shape[c][1] ? 0.5f : 0.5f * (float)v;
            x[e] = rnd() & 1 ? -k : k;
        }
        uint64_t m = (uint64_t)(shape[c][3] * (double)n);
        for (unsigned th = 1; th <= 3; th++) {
            hma__mk_parts pt;
            hma__mk_parts_init(&pt, n, th, NULL);
            hma__mk_keys keys = hma__mk_keys_f(x, NULL);
            hma__mk_sel s;
            assert_int_equal(hma__mk_sel_init(&s, &pt), HMA_OK);
            s.one_cut = 1;
            assert_int_equal(hma__mk_sel_count(&s, &keys, NULL, m, 1), HMA_OK);
            assert_true(s.ranged);
            assert_true(c == 0 ? s.rlo == s.rhi : c == 1 ? s.rhi == hma__mk_key_bits(0.5f) : s.rlo == hma__mk_key_bits(0.5f));
            hma__mk_cut cut;
            assert_int_equal(hma__mk_sel_cut(&s, &keys, m, 1, &cut), HMA_OK);
            assert_true(s.ranged); /* no fallback */
            assert_int_equal(cut.thr, hma__mk_key_bits(0.5f));
            check_cut(&cut, x, n, m, 1);
            /* per-part equal counts against a direct count */
            for (unsigned p = 0; p < pt.count; p++) {
                uint64_t c0, c1, e0, e1, tmp, eq = 0;
                hma__mk_part_chunks(&pt, p, &c0, &c1);
                hma__mk_chunk_range(n, c0, &e0, &tmp);
                hma__mk_chunk_range(n, c1 - 1, &tmp, &e1);
                for (uint64_t e = e0; e < e1; e++) eq += hma__mk_key_bits(x[e]) == cut.thr;
                assert_int_equal(hma__mk_cut_eq_in(&cut, p), eq);
            }
            hma__mk_cut_free(&cut);
            hma__mk_sel_free(&s);
        }
    }
    free(x);
}

/* The AVX-512 loops against plain scalar code (the same keys, counts,
 * collected keys in index order, and combined bits), on BF16 values that
 * come in lumps of equal keys; skipped where the CPU has no AVX-512. */
static uint32_t key_of(float a, float b) { return hma__mk_key_bits(a - b); }

static void test_avx512_kernels(void **state) {
    (void)state;
#ifdef HMA_HAVE_AVX512_KERNELS
    if (hma__cpu_level() < HMA_SIMD_AVX512) skip();
    enum { N = 5003 };
    uint16_t *ra = malloc(N * 2), *rb = malloc(N * 2);
    float *fa = malloc(N * 4), *fb = malloc(N * 4), *o = malloc(N * 4), *ref = malloc(N * 4);
    uint32_t *col = malloc((N + 1) * 4), *want = malloc((N + 1) * 4);
    assert_non_null(ra);
    assert_non_null(rb);
    assert_non_null(fa);
    assert_non_null(fb);
    assert_non_null(o);
    assert_non_null(ref);
    assert_non_null(col);
    assert_non_null(want);
    for (size_t i = 0; i < N; i++) {
        ra[i] = bf16_bits((float)(rnd() % 17) * 0.125f - 1.0f);
        rb[i] = bf16_bits((float)(rnd() % 5) * 0.25f - 0.5f);
        fa[i] = bf16_val(ra[i]);
        fb[i] = bf16_val(rb[i]);
    }
    hma__mk_in in_a = {NULL, ra, HMA_DTYPE_BF16}, in_b = {NULL, rb, HMA_DTYPE_BF16};
    hma__mk_keys kd = {in_a, in_b}, kf = hma__mk_keys_f(fa, fb), k1 = {in_a, {NULL, NULL, HMA_DTYPE_F32}};
    const hma__mk_keys *ks[3] = {&kd, &kf, &k1};
    for (int which = 0; which < 3; which++) {
        int delta = which < 2;
        /* a wide range, an empty inside (hi == lo + 1) and one key (lo == hi) */
        static const float ends[3][2] = {{0.25f, 0.75f}, {0.25f, 0.0f}, {0.5f, 0.5f}};
        for (int r = 0; r < 3; r++) {
            uint32_t lo = key_of(ends[r][0], 0.0f), hi = r == 1 ? lo + 1 : key_of(ends[r][1], 0.0f);
            for (int small = 0; small < 2; small++) {
                uint64_t cap = small ? 50 : N + 1;
                hma__mk_rcount c = {11, 13, 7, 17}, w = c;
                for (uint64_t e = 3; e < N; e++) {
                    uint32_t u = delta ? key_of(fa[e], fb[e]) : hma__mk_key_bits(fa[e]);
                    w.above += u > hi;
                    w.eq_hi += u == hi;
                    w.eq_lo += lo != hi && u == lo;
                    if (u > lo && u < hi) {
                        if (w.in < cap) want[w.in] = u;
                        w.in++;
                    }
                }
                hma__mk_range_avx512(ks[which], 3, N, lo, hi, col, cap, &c);
                assert_int_equal(c.above, w.above);
                assert_int_equal(c.eq_hi, w.eq_hi);
                assert_int_equal(c.eq_lo, w.eq_lo);
                assert_int_equal(c.in, w.in);
                if (r == 0) assert_true(w.eq_lo > 17 && w.eq_hi > 13 && w.in > 7 + 100); /* the data lumps */
                for (uint64_t q = 7; q < (c.in < cap ? c.in : cap - 16); q++) assert_int_equal(col[q], want[q]);
            }
        }
    }
    /* count of equal keys, and the combining loop for 2 sources */
    uint32_t thr = key_of(0.5f, 0.0f);
    uint64_t neq = 0;
    for (size_t j = 0; j < 1024; j++) neq += key_of(fa[16 + j], fb[16 + j]) == thr;
    assert_int_equal(hma__mk_count_eq_avx512(&in_a, &in_b, 16, 1024, thr), neq);
    for (int cons = 0; cons < 2; cons++) {
        hma__mk_gta_k k;
        memset(&k, 0, sizeof k);
        k.T = 2;
        k.base = hma__mk_in_f(fb);
        k.x[0] = in_a;
        k.x[1] = hma__mk_in_f(fa + 1);
        k.lim[0] = thr;
        k.lim[1] = 0;
        k.f[0] = 1.25f;
        k.f[1] = 1.0f;
        k.w[0] = 0.7f;
        k.w[1] = -0.3f;
        k.consensus = cons;
        k.normalize = 1;
        k.apply_lambda = 1;
        k.lambda = 0.9f;
        k.divisor = 0.4f;
        hma__mk_gta_avx512(&k, 32, 1024, o);
        for (size_t j = 0; j < 1024; j++) {
            float b = fb[32 + j], wd[2];
            float d0 = fa[32 + j] - b, d1 = fa[33 + j] - b;
            wd[0] = (hma__mk_key_bits(d0) >= thr ? d0 : 0.0f) * k.f[0] * k.w[0];
            wd[1] = d1 * k.f[1] * k.w[1];
            float mixed = 0.0f;
            if (cons) {
                float acc = 0.0f, div = 0.0f;
                for (int s = 0; s < 2; s++) acc += wd[s];
                int pos = acc >= 0.0f;
                for (int s = 0; s < 2; s++) {
                    int counted = pos ? wd[s] > 0.0f : wd[s] < 0.0f;
                    mixed += counted ? wd[s] : 0.0f;
                    div += counted ? k.w[s] : 0.0f;
                }
                mixed /= div == 0.0f ? 1.0f : div;
            } else {
                mixed = 0.0f + wd[0] + wd[1];
                mixed /= k.divisor;
            }
            mixed *= k.lambda;
            ref[j] = b + mixed;
        }
        assert_same_bits(o, ref, 1024);
    }
    free(ra);
    free(rb);
    free(fa);
    free(fb);
    free(o);
    free(ref);
    free(col);
    free(want);
#else
    skip();
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_same_bits),
        cmocka_unit_test(test_raw_predicate),
        cmocka_unit_test(test_range_fallback),
        cmocka_unit_test(test_range_lumps),
        cmocka_unit_test(test_recipe_lookahead),
        cmocka_unit_test(test_avx512_kernels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
