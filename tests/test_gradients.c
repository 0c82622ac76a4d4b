/* test_gradients.c - group gradients dL/da_k: hma_delta_dot against a naive
 * double reference, and the plan-level calls on small synthetic stores
 * (callback buffers, a gradient checkpoint, pread mode, thread counts). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hma.h"
#include "testutil.h"

static uint64_t tstate = 777;
static double trand(void) {
    tstate = tstate * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(tstate >> 11) * 0x1.0p-53;
}

/* Test-side conversions (independent of the library). */
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}
static float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* float -> F16 for values in the normal range (test data only), truncating. */
static uint16_t to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    int e = (int)((u >> 23) & 0xff) - 127 + 15;
    if (f == 0 || e <= 0) return (uint16_t)sign;
    return (uint16_t)(sign | ((uint32_t)e << 10) | ((u >> 13) & 0x3ff));
}
static float from_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    uint32_t u = e == 0 ? sign : sign | ((e - 15 + 127) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

typedef struct buf {
    hma_dtype dt;
    size_t n;
    void *p;
    double *v; /* the exact values stored (as double) */
} buf;

static void buf_fill(buf *b, hma_dtype dt, size_t n, double scale) {
    b->dt = dt;
    b->n = n;
    b->p = malloc(n * 8 + 8);
    b->v = malloc(n * sizeof(double) + 8);
    for (size_t i = 0; i < n; i++) {
        double x = (2 * trand() - 1) * scale;
        switch (dt) {
        case HMA_DTYPE_F64: ((double *)b->p)[i] = x; b->v[i] = x; break;
        case HMA_DTYPE_F32: ((float *)b->p)[i] = (float)x; b->v[i] = (float)x; break;
        case HMA_DTYPE_BF16: ((uint16_t *)b->p)[i] = to_bf16((float)x); b->v[i] = from_bf16(to_bf16((float)x)); break;
        default: ((uint16_t *)b->p)[i] = to_f16((float)x); b->v[i] = from_f16(to_f16((float)x)); break;
        }
    }
}
static void buf_free(buf *b) {
    free(b->p);
    free(b->v);
}

/* Naive reference: the float path rounds a - b to float32 once; F64 inputs stay double. */
static double ref_dot(const buf *g, const buf *a, const buf *b, double *abs_sum) {
    int wide = g->dt == HMA_DTYPE_F64 || a->dt == HMA_DTYPE_F64 || b->dt == HMA_DTYPE_F64;
    double s = 0, as = 0;
    for (size_t i = 0; i < g->n; i++) {
        double d = wide ? a->v[i] - b->v[i] : (double)((float)a->v[i] - (float)b->v[i]);
        s += g->v[i] * d;
        as += fabs(g->v[i] * d);
    }
    *abs_sum = as;
    return s;
}

static void test_delta_dot_against_naive(void **st) {
    (void)st;
    hma_dtype dts[] = {HMA_DTYPE_F32, HMA_DTYPE_BF16, HMA_DTYPE_F16, HMA_DTYPE_F64};
    size_t ns[] = {0, 1, 7, 4096, 4097, 10000};
    for (size_t gi = 0; gi < 4; gi++)
        for (size_t wi = 0; wi < 4; wi++)
            for (size_t ni = 0; ni < 6; ni++) {
                buf g, a, b;
                buf_fill(&g, dts[gi], ns[ni], 1e-3);
                buf_fill(&a, dts[wi], ns[ni], 0.5);
                buf_fill(&b, dts[wi], ns[ni], 0.5);
                double abs_sum, ref = ref_dot(&g, &a, &b, &abs_sum), got = -1;
                assert_int_equal(hma_delta_dot(ns[ni], g.p, g.dt, a.p, a.dt, b.p, b.dt, &got), HMA_OK);
                /* only the summation order differs from the reference */
                assert_true(fabs(got - ref) <= 1e-13 * abs_sum + 1e-300);
                if (ns[ni] == 0) assert_true(got == 0);
                buf_free(&g);
                buf_free(&a);
                buf_free(&b);
            }
    /* mixed weight dtypes: BF16 aligned, F32 base */
    buf g, a, b;
    buf_fill(&g, HMA_DTYPE_F16, 5000, 1e-2);
    buf_fill(&a, HMA_DTYPE_BF16, 5000, 1);
    buf_fill(&b, HMA_DTYPE_F32, 5000, 1);
    double abs_sum, ref = ref_dot(&g, &a, &b, &abs_sum), got;
    assert_int_equal(hma_delta_dot(5000, g.p, g.dt, a.p, a.dt, b.p, b.dt, &got), HMA_OK);
    assert_true(fabs(got - ref) <= 1e-13 * abs_sum);
    assert_int_equal(hma_delta_dot(5000, g.p, HMA_DTYPE_I32, a.p, a.dt, b.p, b.dt, &got), HMA_ERR_UNSUPPORTED_DTYPE);
    assert_int_equal(hma_delta_dot(5000, NULL, g.dt, a.p, a.dt, b.p, b.dt, &got), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_delta_dot(5000, g.p, g.dt, a.p, a.dt, b.p, b.dt, NULL), HMA_ERR_INVALID_ARGUMENT);
    buf_free(&g);
    buf_free(&a);
    buf_free(&b);
}

/* ---- synthetic checkpoints --------------------------------------------------- */

#define NT 8
static const char *names[NT] = {"model.embed_tokens.weight", "model.layers.0.mlp.weight",
                                "model.layers.1.mlp.weight", "model.layers.2.mlp.weight",
                                "model.layers.3.mlp.weight", "model.norm.weight",
                                "lm_head.weight", "model.layers.1.counter"};
static const size_t sizes[NT] = {6000, 4500, 300, 5000, 257, 64, 6000, 3};
static const hma_dtype wdt[NT] = {HMA_DTYPE_BF16, HMA_DTYPE_BF16, HMA_DTYPE_F32, HMA_DTYPE_BF16,
                                  HMA_DTYPE_F16, HMA_DTYPE_F32, HMA_DTYPE_BF16, HMA_DTYPE_I32};
/* Hand mapping for "blocks:2" over 4 layers: embedding -> 0, layers 0-1 -> 0,
 * layers 2-3 -> 1, norm and lm_head -> the mean; the I32 tensor is not averaged. */
static const int hand_group[NT] = {0, 0, 0, 1, 1, -1, -1, -2};

typedef struct fixture {
    char *dir, *pbase, *paligned, *pgrad;
    buf base[NT], aligned[NT], grad[NT];
} fixture;

static void write_store(const char *path, buf *bufs, int with_int) {
    hma_writer *w = NULL;
    assert_int_equal(hma_writer_create(&w, path, 0), HMA_OK);
    for (int i = 0; i < NT; i++) {
        if (i == NT - 1 && !with_int) continue;
        uint64_t shape[2] = {1, sizes[i]};
        assert_int_equal(hma_writer_add_tensor(w, names[i], bufs[i].dt, 2, shape), HMA_OK);
    }
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    for (int i = 0; i < NT; i++) {
        if (i == NT - 1 && !with_int) continue;
        size_t es = bufs[i].dt == HMA_DTYPE_F64 ? 8 : (bufs[i].dt == HMA_DTYPE_F32 || bufs[i].dt == HMA_DTYPE_I32 ? 4 : 2);
        size_t idx = hma_writer_find(w, names[i]);
        assert_int_equal(hma_writer_write(w, idx, 0, bufs[i].p, sizes[i] * es), HMA_OK);
    }
    assert_int_equal(hma_writer_commit(w), HMA_OK);
    hma_writer_free(w);
}

static int setup(void **st) {
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp();
    f->pbase = tu_join(f->dir, "base.safetensors");
    f->paligned = tu_join(f->dir, "aligned.safetensors");
    f->pgrad = tu_join(f->dir, "grad.safetensors");
    hma_dtype gdt[NT] = {HMA_DTYPE_F32, HMA_DTYPE_F16, HMA_DTYPE_BF16, HMA_DTYPE_F32,
                         HMA_DTYPE_F64, HMA_DTYPE_F32, HMA_DTYPE_BF16, HMA_DTYPE_F32};
    for (int i = 0; i < NT; i++) {
        if (wdt[i] == HMA_DTYPE_I32) {
            f->base[i].dt = f->aligned[i].dt = HMA_DTYPE_I32;
            f->base[i].n = f->aligned[i].n = sizes[i];
            f->base[i].p = calloc(sizes[i], 4);
            f->aligned[i].p = calloc(sizes[i], 4);
            f->base[i].v = calloc(sizes[i], 8);
            f->aligned[i].v = calloc(sizes[i], 8);
        } else {
            buf_fill(&f->base[i], wdt[i], sizes[i], 0.5);
            buf_fill(&f->aligned[i], wdt[i], sizes[i], 0.5);
        }
        buf_fill(&f->grad[i], gdt[i], sizes[i], 1e-2);
    }
    write_store(f->pbase, f->base, 1);
    write_store(f->paligned, f->aligned, 1);
    write_store(f->pgrad, f->grad, 0);
    *st = f;
    return 0;
}

static int teardown(void **st) {
    fixture *f = *st;
    for (int i = 0; i < NT; i++) {
        buf_free(&f->base[i]);
        buf_free(&f->aligned[i]);
        buf_free(&f->grad[i]);
    }
    tu_rmtree(f->dir);
    free(f->dir);
    free(f->pbase);
    free(f->paligned);
    free(f->pgrad);
    free(f);
    return 0;
}

typedef struct gsrc {
    fixture *f;
    int mode; /* 0 normal, 1 drop lm_head, 2 wrong count, 3 fail, 4 cancel, 5 int dtype */
    size_t calls;
} gsrc;

static int gcb(void *user, const char *name, const void **data, hma_dtype *dtype, uint64_t *n) {
    gsrc *s = user;
    s->calls++;
    for (int i = 0; i < NT; i++)
        if (strcmp(name, names[i]) == 0) {
            if (s->mode == 1 && i == 6) return 0;
            if (s->mode == 3 && i == 3) return 5;
            if (s->mode == 4 && i == 3) return HMA_CANCEL;
            *data = s->f->grad[i].p;
            *dtype = s->mode == 5 && i == 2 ? HMA_DTYPE_I16 : s->f->grad[i].dt;
            *n = sizes[i] + (s->mode == 2 && i == 4);
            return 0;
        }
    return 99; /* never asked for a tensor that is not averaged */
}

static void open_all(fixture *f, unsigned flags, hma_store **b, hma_store **a, hma_plan **plan) {
    assert_int_equal(hma_store_open(b, f->pbase, flags), HMA_OK);
    assert_int_equal(hma_store_open(a, f->paligned, flags), HMA_OK);
    hma_store *in[2] = {*b, *a};
    assert_int_equal(hma_plan_create(plan, in, 2), HMA_OK);
    assert_int_equal(hma_plan_set_groups(*plan, "blocks:2"), HMA_OK);
    assert_int_equal(hma_plan_group_count(*plan), 2);
}

static void hand_reference(fixture *f, int drop_lm_head, double out[2], double *abs_sum) {
    double mean = 0;
    out[0] = out[1] = 0;
    *abs_sum = 0;
    for (int i = 0; i < NT; i++) {
        if (hand_group[i] == -2 || (drop_lm_head && i == 6)) continue;
        double as, d = ref_dot(&f->grad[i], &f->aligned[i], &f->base[i], &as);
        *abs_sum += as;
        if (hand_group[i] == -1) mean += d;
        else out[hand_group[i]] += d;
    }
    out[0] += mean / 2;
    out[1] += mean / 2;
}

static void test_plan_gradients_callback(void **st) {
    fixture *f = *st;
    hma_store *b, *a;
    hma_plan *plan;
    open_all(f, 0, &b, &a, &plan);
    /* the plan agrees with the hand mapping */
    for (int i = 0; i < NT; i++) {
        size_t row = hma_plan_find(plan, names[i]);
        assert_true(row != HMA_NPOS);
        int g = hma_plan_tensor_group(plan, row);
        assert_int_equal(g, hand_group[i] == -1 ? HMA_GROUP_MEAN : (hand_group[i] == -2 ? HMA_GROUP_NONE : hand_group[i]));
    }
    double ref[2], abs_sum, g1[2] = {-7, -7}, g2[2], g3[2];
    hand_reference(f, 0, ref, &abs_sum);
    gsrc s = {f, 0, 0};
    hma_group_grad_options o;
    hma_group_grad_options_init(&o);
    o.threads = 1;
    assert_int_equal(hma_plan_group_gradients(plan, gcb, &s, &o, g1, 2), HMA_OK);
    assert_int_equal(s.calls, 7);
    for (int k = 0; k < 2; k++) assert_true(fabs(g1[k] - ref[k]) <= 1e-13 * abs_sum);
    /* bit-identical for any thread count */
    o.threads = 2;
    assert_int_equal(hma_plan_group_gradients(plan, gcb, &s, &o, g2, 2), HMA_OK);
    o.threads = 5;
    assert_int_equal(hma_plan_group_gradients(plan, gcb, &s, &o, g3, 2), HMA_OK);
    assert_memory_equal(g1, g2, sizeof g1);
    assert_memory_equal(g1, g3, sizeof g1);
    /* from a gradient checkpoint: the same bits */
    hma_store *gs;
    assert_int_equal(hma_store_open(&gs, f->pgrad, 0), HMA_OK);
    assert_int_equal(hma_plan_group_gradients_store(plan, gs, &o, g2, 2), HMA_OK);
    assert_memory_equal(g1, g2, sizeof g1);
    hma_store_close(gs);
    hma_plan_free(plan);
    hma_store_close(a);
    hma_store_close(b);
    /* pread mode (blocks read, not mapped): the same bits */
    open_all(f, HMA_OPEN_PREAD, &b, &a, &plan);
    assert_int_equal(hma_store_open(&gs, f->pgrad, HMA_OPEN_PREAD), HMA_OK);
    o.threads = 2;
    assert_int_equal(hma_plan_group_gradients_store(plan, gs, &o, g2, 2), HMA_OK);
    assert_memory_equal(g1, g2, sizeof g1);
    assert_int_equal(hma_plan_group_gradients(plan, gcb, &s, &o, g3, 2), HMA_OK);
    assert_memory_equal(g1, g3, sizeof g1);
    hma_store_close(gs);
    hma_plan_free(plan);
    hma_store_close(a);
    hma_store_close(b);
}

static void test_plan_gradients_errors(void **st) {
    fixture *f = *st;
    hma_store *b, *a;
    hma_plan *plan;
    open_all(f, 0, &b, &a, &plan);
    double g[2] = {-7, -7}, ref[2], abs_sum;
    gsrc s = {f, 1, 0};
    assert_int_equal(hma_plan_group_gradients(plan, gcb, &s, NULL, g, 2), HMA_ERR_NOT_FOUND);
    assert_true(g[0] == -7 && g[1] == -7);
    assert_non_null(strstr(hma_last_error(), "lm_head.weight"));
    hma_group_grad_options o;
    hma_group_grad_options_init(&o);
    o.flags = HMA_GRAD_ALLOW_MISSING;
    assert_int_equal(hma_plan_group_gradients(plan, gcb, &s, &o, g, 2), HMA_OK);
    hand_reference(f, 1, ref, &abs_sum);
    for (int k = 0; k < 2; k++) assert_true(fabs(g[k] - ref[k]) <= 1e-13 * abs_sum);
    s.mode = 2;
    assert_int_equal(hma_plan_group_gradients(plan, gcb, &s, NULL, g, 2), HMA_ERR_MISMATCH);
    s.mode = 3;
    assert_int_equal(hma_plan_group_gradients(plan, gcb, &s, NULL, g, 2), HMA_ERR_CALLBACK);
    s.mode = 4;
    assert_int_equal(hma_plan_group_gradients(plan, gcb, &s, NULL, g, 2), HMA_ERR_CANCELLED);
    s.mode = 5;
    assert_int_equal(hma_plan_group_gradients(plan, gcb, &s, NULL, g, 2), HMA_ERR_UNSUPPORTED_DTYPE);
    s.mode = 0;
    assert_int_equal(hma_plan_group_gradients(plan, gcb, &s, NULL, g, 3), HMA_ERR_INVALID_ARGUMENT);
    /* base and aligned are the plan's inputs 0 and 1 */
    assert_ptr_equal(hma_plan_input(plan, 0), b);
    assert_ptr_equal(hma_plan_input(plan, 1), a);
    assert_null(hma_plan_input(plan, 2));
    assert_null(hma_plan_input(NULL, 0));
    assert_int_equal(hma_plan_group_gradients(plan, NULL, &s, NULL, g, 2), HMA_ERR_INVALID_ARGUMENT);
    o.flags = 0x80;
    assert_int_equal(hma_plan_group_gradients(plan, gcb, &s, &o, g, 2), HMA_ERR_INVALID_ARGUMENT);
    /* a gradient checkpoint lacking a tensor, and one with the wrong shape */
    hma_store *gs;
    assert_int_equal(hma_store_open(&gs, f->pbase, 0), HMA_OK); /* has the I32 tensor, fine: not averaged */
    assert_int_equal(hma_plan_group_gradients_store(plan, gs, NULL, g, 2), HMA_OK);
    hma_store_close(gs);
    char *p = tu_join(f->dir, "short.safetensors");
    hma_writer *w;
    assert_int_equal(hma_writer_create(&w, p, 0), HMA_OK);
    uint64_t shape[1] = {sizes[1]};
    assert_int_equal(hma_writer_add_tensor(w, names[1], HMA_DTYPE_F16, 1, shape), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    assert_int_equal(hma_writer_write(w, 0, 0, f->grad[1].p, sizes[1] * 2), HMA_OK);
    assert_int_equal(hma_writer_commit(w), HMA_OK);
    hma_writer_free(w);
    assert_int_equal(hma_store_open(&gs, p, 0), HMA_OK);
    assert_int_equal(hma_plan_group_gradients_store(plan, gs, NULL, g, 2), HMA_ERR_NOT_FOUND);
    o.flags = HMA_GRAD_ALLOW_MISSING;
    /* names[1] has shape [4500] here but [1, 4500] in the weights */
    assert_int_equal(hma_plan_group_gradients_store(plan, gs, &o, g, 2), HMA_ERR_MISMATCH);
    hma_store_close(gs);
    free(p);
    hma_plan_free(plan);
    hma_store_close(a);
    hma_store_close(b);
}

/* Group gradients feed one step of the authors' method; the ratios move against the gradient. */
static void test_gradient_step_moves_ratios(void **st) {
    fixture *f = *st;
    hma_store *b, *a;
    hma_plan *plan;
    open_all(f, 0, &b, &a, &plan);
    double g[2], r0[2], r1[2];
    gsrc s = {f, 0, 0};
    assert_int_equal(hma_plan_group_gradients(plan, gcb, &s, NULL, g, 2), HMA_OK);
    hma_ratio_opt_options o;
    hma_ratio_opt_options_init(&o);
    o.method = HMA_OPT_SGD;
    o.lr = 1e-3 / (fabs(g[0] - g[1]) + 1e-30);
    hma_ratio_opt *opt;
    assert_int_equal(hma_ratio_opt_create(&opt, 2, NULL, &o), HMA_OK);
    assert_int_equal(hma_ratio_opt_get(opt, NULL, r0), HMA_OK);
    assert_int_equal(hma_ratio_opt_step(opt, g, NULL, r1), HMA_OK);
    /* the mean is kept; the group with the larger dL/da loses ratio */
    assert_true(fabs(r1[0] + r1[1] - 1.0) < 1e-15);
    int hi = g[0] > g[1] ? 0 : 1;
    assert_true(r1[hi] < r0[hi]);
    hma_ratio_opt_free(opt);
    hma_plan_free(plan);
    hma_store_close(a);
    hma_store_close(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delta_dot_against_naive),
        cmocka_unit_test_setup_teardown(test_plan_gradients_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan_gradients_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gradient_step_moves_ratios, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
