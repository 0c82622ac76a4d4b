/* test_merge.c - merge methods against independent references, dtypes,
 * thread counts and SIMD paths, error paths, progress and cancel, one-tensor
 * merges (byte ranges, concurrency with weight changes). */
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "plan_fixture.h"

static const hma_dtype k_fdt[4] = {HMA_DTYPE_F32, HMA_DTYPE_F16, HMA_DTYPE_BF16, HMA_DTYPE_F64};

/* ---- helpers ------------------------------------------------------------------ */

/* n random values stored as dt (values exact in dt). */
static void *rand_data(hma_dtype dt, size_t n, uint64_t seed) {
    void *p = malloc(n * fx_size(dt) + 1);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        double v = fx_rand(&s, 1);
        if (dt == HMA_DTYPE_BF16) v = fx_bf16_to_f32(fx_f64_to_bf16(v));
        if (dt == HMA_DTYPE_F16) v = fx_f16_to_f32(fx_f64_to_f16(v));
        if (dt == HMA_DTYPE_F32) v = (float)v;
        fx_put(dt, p, i, v);
    }
    return p;
}

static hma_store *open_st(const char *path, unsigned flags) {
    hma_store *s = NULL;
    int rc = hma_store_open(&s, path, flags);
    if (rc) fail_msg("open %s: %s", path, hma_last_error());
    return s;
}

/* Bytes of tensor `name` in the checkpoint at path (malloc'd). */
static unsigned char *read_tensor(const char *path, const char *name, size_t *len, hma_dtype *dt) {
    hma_store *s = open_st(path, 0);
    const hma_tensor *t = hma_store_find(s, name);
    if (!t) fail_msg("%s: no tensor %s", path, name);
    *len = (size_t)hma_tensor_nbytes(t);
    if (dt) *dt = hma_tensor_dtype(t);
    unsigned char *b = malloc(*len + 1);
    assert_int_equal(hma_store_read(s, t, 0, b, *len), HMA_OK);
    hma_store_close(s);
    return b;
}

/* The contract, emulated with explicit roundings (doubles hold float
 * products and sums exactly enough: one rounding to float per step). */
static double ref_elem(size_t N, const hma_dtype *dt, const void *const *in, size_t e, const double *w, int base) {
    int wide = 0;
    for (size_t j = 0; j < N; j++) wide |= dt[j] == HMA_DTYPE_F64;
    if (base < 0) {
        if (wide) {
            double acc = w[0] * fx_get(dt[0], in[0], e);
            for (size_t j = 1; j < N; j++) acc = acc + w[j] * fx_get(dt[j], in[j], e);
            return acc;
        }
        float acc = (float)((double)(float)w[0] * fx_get(dt[0], in[0], e));
        for (size_t j = 1; j < N; j++)
            acc = (float)((double)acc + (double)(float)((double)(float)w[j] * fx_get(dt[j], in[j], e)));
        return acc;
    }
    double xb = fx_get(dt[base], in[base], e);
    int first = 1;
    if (wide) {
        double acc = 0;
        for (size_t j = 0; j < N; j++) {
            if ((int)j == base) continue;
            double d = fx_get(dt[j], in[j], e) - xb;
            acc = first ? w[j] * d : acc + w[j] * d;
            first = 0;
        }
        return xb + acc;
    }
    float acc = 0;
    for (size_t j = 0; j < N; j++) {
        if ((int)j == base) continue;
        float d = (float)(fx_get(dt[j], in[j], e) - xb);
        float p = (float)((double)(float)w[j] * (double)d);
        acc = first ? p : (float)((double)acc + (double)p);
        first = 0;
    }
    return (float)(xb + (double)acc);
}

typedef struct env {
    char *dir;
    char *in[4];
    hma_store *s[4];
    size_t n;
} env;

static void env_init(env *E, size_t n) {
    memset(E, 0, sizeof *E);
    E->dir = tu_mkdtemp();
    E->n = n;
    for (size_t j = 0; j < n; j++) {
        char nm[32];
        snprintf(nm, sizeof nm, "in%zu.safetensors", j);
        E->in[j] = tu_join(E->dir, nm);
    }
}
static void env_open(env *E, unsigned flags) {
    for (size_t j = 0; j < E->n; j++) E->s[j] = open_st(E->in[j], flags);
}
static void env_free(env *E) {
    for (size_t j = 0; j < E->n; j++) {
        hma_store_close(E->s[j]);
        free(E->in[j]);
    }
    tu_rmtree(E->dir);
    free(E->dir);
}

static hma_plan *mkplan(env *E) {
    hma_plan *p = NULL;
    if (hma_plan_create(&p, E->s, E->n)) fail_msg("plan: %s", hma_last_error());
    return p;
}

static void merge_ok(hma_plan *p, const char *out) {
    int rc = hma_plan_merge_to(p, out, 0);
    if (rc) fail_msg("merge: %d %s", rc, hma_last_error());
}

/* ---- methods x dtypes -------------------------------------------------------------- */

#define NEL 1000

/* Merge through a file (to_file) or in memory, and compare with the reference. */
static void check_one_ex(env *E, hma_plan *p, const char *name, size_t n, const void *const *in, const hma_dtype *dt,
                         const double *w, int base, hma_dtype odt, int to_file) {
    char *out = tu_join(E->dir, "out.safetensors");
    size_t len;
    hma_dtype got_dt;
    unsigned char *got;
    if (to_file) {
        merge_ok(p, out);
        got = read_tensor(out, name, &len, &got_dt);
    } else {
        size_t row = hma_plan_find(p, name);
        got_dt = hma_plan_tensor_dtype(p, row);
        len = (size_t)hma_plan_tensor_nbytes(p, row);
        got = malloc(len + 1);
        assert_int_equal(hma_plan_merge_tensor_at(p, row, 0, got, len, NULL), HMA_OK);
    }
    assert_int_equal(got_dt, odt);
    assert_int_equal(len, n * fx_size(odt));
    unsigned char *exp = malloc(len + 1);
    for (size_t e = 0; e < n; e++) fx_put(odt, exp, e, ref_elem(E->n, dt, in, e, w, base));
    for (size_t b = 0; b < len; b++)
        if (got[b] != exp[b])
            fail_msg("%s -> %s: byte %zu differs (element %zu): got %02x expected %02x", hma_dtype_name(dt[0]),
                     hma_dtype_name(odt), b, b / fx_size(odt), got[b], exp[b]);
    free(got);
    free(exp);
    unlink(out);
    free(out);
}

static void check_one(env *E, hma_plan *p, const char *name, size_t n, const void *const *in, const hma_dtype *dt,
                      const double *w, int base, hma_dtype odt) {
    check_one_ex(E, p, name, n, in, dt, w, base, odt, 1);
}

static void test_linear_every_dtype_pair(void **state) {
    (void)state;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            env E;
            env_init(&E, 2);
            hma_dtype dt[2] = {k_fdt[a], k_fdt[b]};
            void *d[2] = {rand_data(dt[0], NEL, 1), rand_data(dt[1], NEL, 2)};
            for (int j = 0; j < 2; j++) {
                fx_tensor t = {"w", dt[j], 2, {25, 40, 0, 0}, d[j]};
                assert_int_equal(fx_write(E.in[j], &t, 1), HMA_OK);
            }
            env_open(&E, 0);
            hma_plan *p = mkplan(&E);
            assert_int_equal(hma_plan_set_ratio(p, 0.3), HMA_OK);
            double w[2] = {1.0 - 0.3, 0.3};
            const void *in[2] = {d[0], d[1]};
            check_one(&E, p, "w", NEL, in, dt, w, -1, dt[0]); /* default: input 0's dtype */
            for (int o = 0; o < 4; o++) {
                assert_int_equal(hma_plan_set_output_dtype(p, k_fdt[o]), HMA_OK);
                check_one_ex(&E, p, "w", NEL, in, dt, w, -1, k_fdt[o], 0);
            }
            hma_plan_free(p);
            free(d[0]);
            free(d[1]);
            env_free(&E);
        }
}

/* MA as PyTorch computes it in float32, rounded to BF16 once. */
static void test_ma_matches_pytorch_float32(void **state) {
    (void)state;
    env E;
    env_init(&E, 2);
    void *d[2] = {rand_data(HMA_DTYPE_BF16, NEL, 11), rand_data(HMA_DTYPE_BF16, NEL, 12)};
    for (int j = 0; j < 2; j++) {
        fx_tensor t = {"x", HMA_DTYPE_BF16, 1, {NEL, 0, 0, 0}, d[j]};
        assert_int_equal(fx_write(E.in[j], &t, 1), HMA_OK);
    }
    env_open(&E, 0);
    hma_plan *p = mkplan(&E);
    const double alphas[] = {0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 1.0, 1.3, -0.2};
    char *out = tu_join(E.dir, "ma.safetensors");
    for (size_t k = 0; k < sizeof alphas / sizeof alphas[0]; k++) {
        double a = alphas[k];
        assert_int_equal(hma_plan_set_ratio(p, a), HMA_OK);
        merge_ok(p, out);
        size_t len;
        uint16_t *got = (uint16_t *)read_tensor(out, "x", &len, NULL);
        float w0 = (float)(1.0 - a), w1 = (float)a;
        for (size_t e = 0; e < NEL; e++) {
            float x = (float)fx_get(HMA_DTYPE_BF16, d[0], e), y = (float)fx_get(HMA_DTYPE_BF16, d[1], e);
            volatile float p0 = w0 * x, p1 = w1 * y;
            volatile float s = p0 + p1;
            uint16_t want = fx_f32_to_bf16(s);
            if (got[e] != want) fail_msg("a=%g element %zu: got %04x expected %04x", a, e, got[e], want);
        }
        free(got);
        unlink(out);
    }
    free(out);
    hma_plan_free(p);
    free(d[0]);
    free(d[1]);
    env_free(&E);
}

static void make_n_inputs(env *E, size_t N, const hma_dtype *dt, void **d) {
    env_init(E, N);
    for (size_t j = 0; j < N; j++) {
        d[j] = rand_data(dt[j], NEL, 100 + j);
        fx_tensor t = {"model.layers.0.w", dt[j], 1, {NEL, 0, 0, 0}, d[j]};
        assert_int_equal(fx_write(E->in[j], &t, 1), HMA_OK);
    }
    env_open(E, 0);
}

static void test_linear_three_inputs_normalize(void **state) {
    (void)state;
    hma_dtype dts[2][3] = {{HMA_DTYPE_BF16, HMA_DTYPE_F16, HMA_DTYPE_F32},
                           {HMA_DTYPE_BF16, HMA_DTYPE_F64, HMA_DTYPE_F32}};
    for (int v = 0; v < 2; v++) {
        env E;
        void *d[3];
        make_n_inputs(&E, 3, dts[v], d);
        hma_plan *p = mkplan(&E);
        const double w[3] = {0.7, -0.45, 1.1};
        assert_int_equal(hma_plan_set_weights(p, w, 3), HMA_OK);
        const void *in[3] = {d[0], d[1], d[2]};
        check_one(&E, p, "model.layers.0.w", NEL, in, dts[v], w, -1, HMA_DTYPE_BF16);
        assert_int_equal(hma_plan_set_normalize(p, 1), HMA_OK);
        double s = 0.7 + -0.45 + 1.1, wn[3] = {0.7 / s, -0.45 / s, 1.1 / s};
        double got[3];
        assert_int_equal(hma_plan_tensor_weights(p, 0, got, 3, NULL), HMA_OK);
        for (int j = 0; j < 3; j++) assert_true(got[j] == wn[j]);
        check_one(&E, p, "model.layers.0.w", NEL, in, dts[v], wn, -1, HMA_DTYPE_BF16);
        assert_int_equal(hma_plan_set_output_dtype(p, HMA_DTYPE_F32), HMA_OK);
        check_one(&E, p, "model.layers.0.w", NEL, in, dts[v], wn, -1, HMA_DTYPE_F32);
        hma_plan_free(p);
        for (int j = 0; j < 3; j++) free(d[j]);
        env_free(&E);
    }
}

static void test_task_arithmetic(void **state) {
    (void)state;
    hma_dtype dts[2][3] = {{HMA_DTYPE_BF16, HMA_DTYPE_BF16, HMA_DTYPE_F16},
                           {HMA_DTYPE_F32, HMA_DTYPE_F64, HMA_DTYPE_BF16}};
    for (int v = 0; v < 2; v++) {
        env E;
        void *d[3];
        make_n_inputs(&E, 3, dts[v], d);
        hma_plan *p = mkplan(&E);
        assert_int_equal(hma_plan_set_method(p, HMA_METHOD_TASK_ARITHMETIC), HMA_OK);
        assert_int_equal(hma_plan_set_base(p, 1), HMA_OK);
        const double w[3] = {0.6, 123.0 /* ignored: base */, -0.35};
        assert_int_equal(hma_plan_set_weights(p, w, 3), HMA_OK);
        assert_int_equal(hma_plan_set_normalize(p, 1), HMA_OK); /* no effect on task arithmetic */
        const void *in[3] = {d[0], d[1], d[2]};
        check_one(&E, p, "model.layers.0.w", NEL, in, dts[v], w, 1, dts[v][0]);
        check_one(&E, p, "model.layers.0.w", NEL, in, dts[v], w, 1, dts[v][0]);
        hma_plan_free(p);
        for (int j = 0; j < 3; j++) free(d[j]);
        env_free(&E);
    }
}

/* SLERP: coefficients from the whole-tensor cosine, computed here in double. */
static void slerp_ref_weights(const void *x, const void *y, hma_dtype dx, hma_dtype dy, size_t n, double t,
                              double w[2]) {
    double xy = 0, xx = 0, yy = 0;
    for (size_t e = 0; e < n; e++) {
        double a = fx_get(dx, x, e), b = fx_get(dy, y, e);
        xy += a * b;
        xx += a * a;
        yy += b * b;
    }
    double c = xy / sqrt(xx) / sqrt(yy);
    if (fabs(c) > 0.9995) {
        w[0] = 1 - t;
        w[1] = t;
        return;
    }
    double om = acos(c), s = sin(om);
    w[0] = sin((1 - t) * om) / s;
    w[1] = sin(t * om) / s;
}

static void test_slerp(void **state) {
    (void)state;
    for (int v = 0; v < 3; v++) {
        env E;
        env_init(&E, 2);
        hma_dtype dt[2] = {v == 2 ? HMA_DTYPE_F64 : HMA_DTYPE_F32, HMA_DTYPE_BF16};
        size_t n = 70000; /* two statistics chunks */
        void *d[2] = {rand_data(dt[0], n, 5), rand_data(dt[1], n, 6)};
        if (v == 1) /* nearly parallel: the linear fallback */
            for (size_t e = 0; e < n; e++) fx_put(dt[1], d[1], e, fx_get(dt[0], d[0], e) * 1.5);
        for (int j = 0; j < 2; j++) {
            fx_tensor t = {"model.layers.0.w", dt[j], 1, {n, 0, 0, 0}, d[j]};
            assert_int_equal(fx_write(E.in[j], &t, 1), HMA_OK);
        }
        env_open(&E, 0);
        hma_plan *p = mkplan(&E);
        assert_int_equal(hma_plan_set_method(p, HMA_METHOD_SLERP), HMA_OK);
        assert_int_equal(hma_plan_set_ratio(p, 0.3), HMA_OK);
        assert_int_equal(hma_plan_set_output_dtype(p, HMA_DTYPE_F32), HMA_OK);
        double w[2];
        slerp_ref_weights(d[0], d[1], dt[0], dt[1], n, 0.3, w);
        if (v == 1) assert_true(w[0] == 0.7 && w[1] == 0.3);
        if (v != 1) assert_true(fabs(w[0] + w[1] - 1.0) > 1e-3); /* really spherical */
        const void *in[2] = {d[0], d[1]};
        check_one(&E, p, "model.layers.0.w", n, in, dt, w, -1, HMA_DTYPE_F32);
        /* the statistics are also exposed for `hma diff` */
        double st[4];
        assert_int_equal(hma_plan_tensor_stats(p, 0, 0, 1, st), HMA_OK);
        assert_true(fabs(st[1] - n * 4.0 / 3.0) < n * 0.1);
        hma_plan_free(p);
        free(d[0]);
        free(d[1]);
        env_free(&E);
    }
}

/* ---- bit-identical output for any thread count and SIMD path -------------------------- */

static void build_model(env *E, size_t n_layers, hma_dtype dt) {
    env_init(E, 2);
    char names[64][64];
    fx_tensor ts[64];
    void *d[64];
    size_t nt = 0;
    for (int j = 0; j < 2; j++) {
        nt = 0;
        snprintf(names[nt], 64, "model.embed_tokens.weight");
        ts[nt] = (fx_tensor){names[nt], dt, 2, {256, 300, 0, 0}, NULL}, nt++;
        for (size_t l = 0; l < n_layers; l++) {
            snprintf(names[nt], 64, "model.layers.%zu.mlp.up_proj.weight", l);
            ts[nt] = (fx_tensor){names[nt], dt, 2, {600, 1000 + 7 * l, 0, 0}, NULL}, nt++;
            snprintf(names[nt], 64, "model.layers.%zu.input_layernorm.weight", l);
            ts[nt] = (fx_tensor){names[nt], HMA_DTYPE_F32, 1, {600, 0, 0, 0}, NULL}, nt++;
        }
        snprintf(names[nt], 64, "model.norm.weight");
        ts[nt] = (fx_tensor){names[nt], dt, 1, {600, 0, 0, 0}, NULL}, nt++;
        snprintf(names[nt], 64, "step");
        ts[nt] = (fx_tensor){names[nt], HMA_DTYPE_I64, 1, {3, 0, 0, 0}, NULL}, nt++;
        for (size_t i = 0; i < nt; i++) {
            d[i] = ts[i].dt == HMA_DTYPE_I64 ? calloc(3, 8) : rand_data(ts[i].dt, (size_t)fx_nelem(&ts[i]), 1000 * i + j);
            ts[i].data = d[i];
        }
        assert_int_equal(fx_write(E->in[j], ts, nt), HMA_OK);
        for (size_t i = 0; i < nt; i++) free(d[i]);
    }
    env_open(E, 0);
}

static unsigned char *merge_bytes(hma_plan *p, const char *dir, const char *name, size_t *len) {
    char *out = tu_join(dir, name);
    merge_ok(p, out);
    unsigned char *b = tu_read_file(out, len);
    unlink(out);
    free(out);
    return b;
}

static void test_threads_and_simd_identical(void **state) {
    (void)state;
    env E;
    build_model(&E, 6, HMA_DTYPE_BF16);
    hma_plan *p = mkplan(&E);
    assert_int_equal(hma_plan_set_groups(p, "blocks:3"), HMA_OK);
    const double a[3] = {0.2, 0.55, 0.9};
    for (int m = 0; m < 2; m++) {
        assert_int_equal(hma_plan_set_method(p, m ? HMA_METHOD_SLERP : HMA_METHOD_LINEAR), HMA_OK);
        assert_int_equal(hma_plan_set_ratios(p, a, 3), HMA_OK);
        size_t l1, l;
        assert_int_equal(hma_plan_set_threads(p, 1), HMA_OK);
        unsigned char *ref = merge_bytes(p, E.dir, "t1.safetensors", &l1);
        assert_non_null(ref);
        const unsigned th[] = {2, 7, 0};
        for (size_t k = 0; k < 3; k++) {
            assert_int_equal(hma_plan_set_threads(p, th[k]), HMA_OK);
            unsigned char *b = merge_bytes(p, E.dir, "tn.safetensors", &l);
            assert_int_equal(l, l1);
            assert_memory_equal(b, ref, l);
            free(b);
        }
        assert_int_equal(hma_plan_set_threads(p, 3), HMA_OK);
        int tested = 0;
        for (int s = 0; s < 3; s++) {
            if (!hma_simd_available(s)) continue;
            assert_int_equal(hma_plan_set_simd(p, s), HMA_OK);
            unsigned char *b = merge_bytes(p, E.dir, "ts.safetensors", &l);
            assert_int_equal(l, l1);
            assert_memory_equal(b, ref, l);
            free(b);
            tested++;
        }
        assert_true(tested >= 1);
        assert_int_equal(hma_plan_set_simd(p, HMA_SIMD_AUTO), HMA_OK);
        /* inputs read with pread instead of mmap: same bytes */
        env E2 = E;
        hma_store *ps[2] = {open_st(E.in[0], HMA_OPEN_PREAD), open_st(E.in[1], HMA_OPEN_PREAD)};
        hma_plan *q = NULL;
        assert_int_equal(hma_plan_create(&q, ps, 2), HMA_OK);
        assert_int_equal(hma_plan_set_groups(q, "blocks:3"), HMA_OK);
        assert_int_equal(hma_plan_set_method(q, m ? HMA_METHOD_SLERP : HMA_METHOD_LINEAR), HMA_OK);
        assert_int_equal(hma_plan_set_ratios(q, a, 3), HMA_OK);
        char *o1 = tu_join(E2.dir, "tp1.safetensors"), *o2 = tu_join(E2.dir, "tp2.safetensors");
        merge_ok(p, o1);
        merge_ok(q, o2);
        /* the recipes differ (weight generations); the tensors must not */
        hma_store *r1 = open_st(o1, 0), *r2 = open_st(o2, 0);
        assert_int_equal(hma_store_count(r1), hma_store_count(r2));
        for (size_t i = 0; i < hma_store_count(r1); i++) {
            const hma_tensor *t1 = hma_store_tensor(r1, i), *t2 = hma_store_tensor(r2, i);
            assert_string_equal(hma_tensor_name(t1), hma_tensor_name(t2));
            assert_int_equal(hma_tensor_nbytes(t1), hma_tensor_nbytes(t2));
            assert_memory_equal(hma_tensor_data(t1), hma_tensor_data(t2), (size_t)hma_tensor_nbytes(t1));
        }
        hma_store_close(r1);
        hma_store_close(r2);
        unlink(o1);
        unlink(o2);
        free(o1);
        free(o2);
        hma_plan_free(q);
        hma_store_close(ps[0]);
        hma_store_close(ps[1]);
        free(ref);
    }
    hma_plan_free(p);
    env_free(&E);
}

/* ---- metadata, sharded output ---------------------------------------------------- */

static void test_recipe_and_shards(void **state) {
    (void)state;
    env E;
    build_model(&E, 2, HMA_DTYPE_F16);
    hma_plan *p = mkplan(&E);
    assert_int_equal(hma_plan_set_groups(p, "split:0"), HMA_OK);
    assert_int_equal(hma_plan_add_rule(p, "norm", 1), HMA_OK);
    const double a[2] = {0.25, 0.75};
    assert_int_equal(hma_plan_set_ratios(p, a, 2), HMA_OK);
    char *one = tu_join(E.dir, "one.safetensors"), *folder = tu_join(E.dir, "sharded");
    merge_ok(p, one);
    assert_int_equal(hma_plan_merge_to(p, folder, 1u << 20), HMA_OK);
    hma_store *s1 = open_st(one, 0), *s2 = open_st(folder, 0);
    assert_true(hma_store_file_count(s2) > 1);
    assert_int_equal(hma_store_count(s1), hma_store_count(s2));
    for (size_t i = 0; i < hma_store_count(s1); i++) {
        const hma_tensor *t1 = hma_store_tensor(s1, i), *t2 = hma_store_find(s2, hma_tensor_name(t1));
        assert_non_null(t2);
        assert_int_equal(hma_tensor_nbytes(t1), hma_tensor_nbytes(t2));
        assert_memory_equal(hma_tensor_data(t1), hma_tensor_data(t2), (size_t)hma_tensor_nbytes(t1));
    }
    assert_string_equal(hma_store_metadata(s1, "format"), "pt");
    const char *r = hma_store_metadata(s1, "hma_recipe");
    assert_non_null(r);
    assert_non_null(strstr(r, "\"method\":\"linear\""));
    assert_non_null(strstr(r, "\"groups\":\"split:0\""));
    assert_non_null(strstr(r, "\"ratios\":[0.25,0.75]"));
    assert_non_null(strstr(r, "{\"pattern\":\"norm\",\"group\":1}"));
    assert_non_null(strstr(r, "in1.safetensors"));
    /* integer tensor copied */
    const hma_tensor *st = hma_store_find(s1, "step");
    assert_non_null(st);
    assert_int_equal(hma_tensor_dtype(st), HMA_DTYPE_I64);
    hma_store_close(s1);
    hma_store_close(s2);
    free(one);
    free(folder);
    hma_plan_free(p);
    env_free(&E);
}

/* ---- error paths ---------------------------------------------------------------------- */

static void expect_fail(hma_plan *p, const char *dir, int code, const char *needle1, const char *needle2) {
    char *out = tu_join(dir, "bad.safetensors");
    int rc = hma_plan_merge_to(p, out, 0);
    if (rc != code) fail_msg("got %d (%s), expected %d", rc, hma_last_error(), code);
    if (needle1 && !strstr(hma_last_error(), needle1)) fail_msg("message '%s' lacks '%s'", hma_last_error(), needle1);
    if (needle2 && !strstr(hma_last_error(), needle2)) fail_msg("message '%s' lacks '%s'", hma_last_error(), needle2);
    struct stat sb;
    assert_int_not_equal(stat(out, &sb), 0);
    assert_int_equal(tu_has_entry_prefix(dir, ".hma-tmp"), 0);
    free(out);
}

static void two_inputs(env *E, const fx_tensor *a, size_t na, const fx_tensor *b, size_t nb) {
    env_init(E, 2);
    assert_int_equal(fx_write(E->in[0], a, na), HMA_OK);
    assert_int_equal(fx_write(E->in[1], b, nb), HMA_OK);
    env_open(E, 0);
}

static void test_mismatch_errors(void **state) {
    (void)state;
    float f4[4] = {1, 2, 3, 4}, g4[4] = {5, 6, 7, 8};
    int32_t i4[4] = {1, 2, 3, 4}, j4[4] = {1, 2, 3, 5};
    /* a missing tensor */
    {
        fx_tensor a[2] = {{"w", HMA_DTYPE_F32, 1, {4}, f4}, {"extra.bias", HMA_DTYPE_F32, 1, {4}, f4}};
        fx_tensor b[1] = {{"w", HMA_DTYPE_F32, 1, {4}, g4}};
        env E;
        two_inputs(&E, a, 2, b, 1);
        hma_plan *p = mkplan(&E);
        size_t r = hma_plan_find(p, "extra.bias");
        assert_int_equal(hma_plan_tensor_action(p, r), HMA_ACTION_MISMATCH);
        assert_int_equal(hma_plan_tensor_group(p, r), HMA_GROUP_NONE);
        assert_non_null(strstr(hma_plan_tensor_reason(p, r), "missing from input 1"));
        expect_fail(p, E.dir, HMA_ERR_MISMATCH, "extra.bias", "missing from input 1");
        /* copy unmatched from input 0: copied; from input 1: left out */
        assert_int_equal(hma_plan_copy_unmatched(p, 0), HMA_OK);
        assert_int_equal(hma_plan_tensor_action(p, r), HMA_ACTION_COPY_FROM);
        char *out = tu_join(E.dir, "o.safetensors");
        merge_ok(p, out);
        size_t len;
        float *got = (float *)read_tensor(out, "extra.bias", &len, NULL);
        assert_memory_equal(got, f4, 16);
        free(got);
        assert_int_equal(hma_plan_copy_unmatched(p, 1), HMA_OK);
        assert_int_equal(hma_plan_tensor_action(p, r), HMA_ACTION_SKIP);
        merge_ok(p, out);
        hma_store *o = open_st(out, 0);
        assert_int_equal(hma_store_count(o), 1);
        hma_store_close(o);
        char buf[16];
        assert_int_equal(hma_plan_merge_tensor(p, "extra.bias", 0, buf, 16, NULL), HMA_ERR_STATE);
        free(out);
        hma_plan_free(p);
        env_free(&E);
    }
    /* a different shape */
    {
        fx_tensor a[1] = {{"model.layers.0.w", HMA_DTYPE_F32, 2, {2, 2}, f4}};
        fx_tensor b[1] = {{"model.layers.0.w", HMA_DTYPE_F32, 1, {4}, g4}};
        env E;
        two_inputs(&E, a, 1, b, 1);
        hma_plan *p = mkplan(&E);
        expect_fail(p, E.dir, HMA_ERR_MISMATCH, "model.layers.0.w", "shape [4] in input 1");
        char buf[16];
        assert_int_equal(hma_plan_merge_tensor(p, "model.layers.0.w", 0, buf, 16, NULL), HMA_ERR_MISMATCH);
        hma_plan_free(p);
        env_free(&E);
    }
    /* incompatible dtypes (float and integer) */
    {
        fx_tensor a[1] = {{"w", HMA_DTYPE_F32, 1, {4}, f4}};
        fx_tensor b[1] = {{"w", HMA_DTYPE_I32, 1, {4}, i4}};
        env E;
        two_inputs(&E, a, 1, b, 1);
        hma_plan *p = mkplan(&E);
        expect_fail(p, E.dir, HMA_ERR_MISMATCH, "'w'", "dtype I32 in input 1");
        hma_plan_free(p);
        env_free(&E);
    }
    /* integer tensors: identical copied, different refused */
    {
        fx_tensor a[2] = {{"w", HMA_DTYPE_F32, 1, {4}, f4}, {"ids", HMA_DTYPE_I32, 1, {4}, i4}};
        fx_tensor b[2] = {{"w", HMA_DTYPE_F32, 1, {4}, g4}, {"ids", HMA_DTYPE_I32, 1, {4}, j4}};
        fx_tensor c[2] = {{"w", HMA_DTYPE_F32, 1, {4}, g4}, {"ids", HMA_DTYPE_I32, 1, {4}, i4}};
        env E;
        two_inputs(&E, a, 2, b, 2);
        hma_plan *p = mkplan(&E);
        assert_int_equal(hma_plan_tensor_action(p, hma_plan_find(p, "ids")), HMA_ACTION_COPY_IDENTICAL);
        expect_fail(p, E.dir, HMA_ERR_MISMATCH, "'ids'", "byte 12");
        hma_plan_free(p);
        env_free(&E);
        two_inputs(&E, a, 2, c, 2);
        p = mkplan(&E);
        char *out = tu_join(E.dir, "o.safetensors");
        merge_ok(p, out);
        size_t len;
        hma_dtype dt;
        int32_t *got = (int32_t *)read_tensor(out, "ids", &len, &dt);
        assert_int_equal(dt, HMA_DTYPE_I32);
        assert_memory_equal(got, i4, 16);
        free(got);
        free(out);
        hma_plan_free(p);
        env_free(&E);
    }
    /* bool tensors that differ */
    {
        uint8_t b0[3] = {1, 0, 1}, b1[3] = {1, 1, 1};
        fx_tensor a[1] = {{"mask", HMA_DTYPE_BOOL, 1, {3}, b0}};
        fx_tensor b[1] = {{"mask", HMA_DTYPE_BOOL, 1, {3}, b1}};
        env E;
        two_inputs(&E, a, 1, b, 1);
        hma_plan *p = mkplan(&E);
        expect_fail(p, E.dir, HMA_ERR_MISMATCH, "'mask'", "byte 1");
        hma_plan_free(p);
        env_free(&E);
    }
}

static void test_nonfinite(void **state) {
    (void)state;
    float f[64], g[64];
    for (int i = 0; i < 64; i++) f[i] = g[i] = (float)i;
    g[37] = NAN;
    g[50] = INFINITY;
    fx_tensor a[1] = {{"model.layers.3.w", HMA_DTYPE_F32, 1, {64}, f}};
    fx_tensor b[1] = {{"model.layers.3.w", HMA_DTYPE_F32, 1, {64}, g}};
    env E;
    two_inputs(&E, a, 1, b, 1);
    hma_plan *p = mkplan(&E);
    expect_fail(p, E.dir, HMA_ERR_NONFINITE, "model.layers.3.w", "input 1 has a non-finite value (nan) at element 37");
    float out[64];
    assert_int_equal(hma_plan_merge_tensor_at(p, 0, 0, out, sizeof out, NULL), HMA_ERR_NONFINITE);
    assert_int_equal(hma_plan_merge_tensor_at(p, 0, 0, out, 37 * 4, NULL), HMA_OK); /* range before the NaN */
    assert_int_equal(hma_plan_set_flags(p, HMA_MERGE_ALLOW_NONFINITE), HMA_OK);
    assert_int_equal(hma_plan_merge_tensor_at(p, 0, 0, out, sizeof out, NULL), HMA_OK);
    assert_true(isnan(out[37]));
    assert_true(isinf(out[50]));
    assert_true(out[10] == 10.0f);
    hma_plan_free(p);
    env_free(&E);
}

/* ---- progress and cancel ---------------------------------------------------------------- */

typedef struct prog {
    int calls, cancel_at;
    uint64_t last, total;
    int monotone;
    int stop; /* what to return to stop: HMA_CANCEL or another nonzero value */
} prog;

static int on_progress(void *user, uint64_t done, uint64_t total) {
    prog *g = user;
    g->calls++;
    if (done < g->last || done > total) g->monotone = 0;
    g->last = done;
    g->total = total;
    if (g->cancel_at < 0) return done == total ? g->stop : 0; /* stop at the very end */
    return g->cancel_at && g->calls >= g->cancel_at ? g->stop : 0;
}

static void test_progress_and_cancel(void **state) {
    (void)state;
    env E;
    build_model(&E, 4, HMA_DTYPE_BF16);
    hma_plan *p = mkplan(&E);
    prog g = {0, 0, 0, 0, 1, HMA_CANCEL};
    assert_int_equal(hma_plan_set_progress(p, on_progress, &g), HMA_OK);
    char *out = tu_join(E.dir, "p.safetensors");
    merge_ok(p, out);
    assert_true(g.calls >= 1);
    assert_true(g.monotone);
    assert_true(g.last == g.total && g.total > 0);
    uint64_t want = 0;
    for (size_t i = 0; i < hma_plan_tensor_count(p); i++) want += hma_plan_tensor_nbytes(p, i);
    assert_true(g.total == want);
    unlink(out);
    /* stop at the first report, and at the very last one: HMA_CANCEL cancels,
     * any other nonzero value is a callback failure; nothing is written */
    for (int at = 1; at <= 2; at++) {
        prog c = {0, at == 1 ? 1 : -1, 0, 0, 1, HMA_CANCEL};
        assert_int_equal(hma_plan_set_progress(p, on_progress, &c), HMA_OK);
        assert_int_equal(hma_plan_set_threads(p, 2), HMA_OK);
        expect_fail(p, E.dir, HMA_ERR_CANCELLED, "cancelled", NULL);
        assert_int_equal(tu_count_entries(E.dir), 2);
        prog d = {0, at == 1 ? 1 : -1, 0, 0, 1, 7};
        assert_int_equal(hma_plan_set_progress(p, on_progress, &d), HMA_OK);
        expect_fail(p, E.dir, HMA_ERR_CALLBACK, "returned 7", NULL);
        assert_int_equal(tu_count_entries(E.dir), 2);
        /* the same through hma_plan_merge_into(): the writer is only freed */
        char *o2 = tu_join(E.dir, "into.safetensors");
        hma_writer *w = NULL;
        prog e = {0, at == 1 ? 1 : -1, 0, 0, 1, HMA_CANCEL};
        assert_int_equal(hma_plan_set_progress(p, on_progress, &e), HMA_OK);
        assert_int_equal(hma_writer_create(&w, o2, 0), HMA_OK);
        assert_int_equal(hma_plan_merge_into(p, w), HMA_ERR_CANCELLED);
        hma_writer_free(w);
        assert_int_equal(tu_count_entries(E.dir), 2);
        free(o2);
    }
    free(out);
    hma_plan_free(p);
    env_free(&E);
}

/* ---- merge into a caller's writer, plan metadata, plan inputs ------------------------------------ */

static char *meta_of(const char *path, const char *key) {
    hma_store *s = open_st(path, 0);
    const char *v = hma_store_metadata(s, key);
    char *r = v ? strdup(v) : NULL;
    hma_store_close(s);
    return r;
}

static void test_merge_into_and_metadata(void **state) {
    (void)state;
    env E;
    build_model(&E, 3, HMA_DTYPE_BF16);
    hma_plan *p = mkplan(&E);
    assert_ptr_equal(hma_plan_input(p, 0), E.s[0]);
    assert_ptr_equal(hma_plan_input(p, 1), E.s[1]);
    assert_null(hma_plan_input(p, 2));
    assert_int_equal(hma_plan_set_ratio(p, 0.3), HMA_OK);
    char *ref = tu_join(E.dir, "ref.safetensors");
    merge_ok(p, ref);
    /* a fresh writer gives the very same file as hma_plan_merge_to() */
    char *o1 = tu_join(E.dir, "into.safetensors");
    hma_writer *w = NULL;
    assert_int_equal(hma_writer_create(&w, o1, 0), HMA_OK);
    assert_int_equal(hma_plan_merge_into(p, w), HMA_OK);
    assert_int_equal(hma_writer_commit(w), HMA_OK);
    hma_writer_free(w);
    size_t n1, n2;
    unsigned char *b1 = tu_read_file(ref, &n1), *b2 = tu_read_file(o1, &n2);
    assert_non_null(b1);
    assert_non_null(b2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    free(b2);
    /* plan metadata is added; the caller's keys win over the plan's and the built-in ones */
    assert_int_equal(hma_plan_set_metadata(p, "run", "plan"), HMA_OK);
    assert_int_equal(hma_plan_set_metadata(p, "note", "first"), HMA_OK);
    assert_int_equal(hma_plan_set_metadata(p, "note", "from the plan"), HMA_OK); /* replaced */
    assert_int_equal(hma_plan_set_metadata(p, "", "x"), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_set_metadata(p, "k", NULL), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_set_metadata(NULL, "k", "v"), HMA_ERR_INVALID_ARGUMENT);
    char *o2 = tu_join(E.dir, "meta.safetensors");
    assert_int_equal(hma_writer_create(&w, o2, 0), HMA_OK);
    assert_int_equal(hma_writer_set_metadata(w, "run", "caller"), HMA_OK);
    assert_int_equal(hma_writer_set_metadata(w, "format", "np"), HMA_OK);
    assert_int_equal(hma_writer_set_metadata(w, "owner", "me"), HMA_OK);
    assert_int_equal(hma_plan_merge_into(p, w), HMA_OK);
    assert_int_equal(hma_writer_commit(w), HMA_OK);
    hma_writer_free(w);
    char *v;
    assert_string_equal(v = meta_of(o2, "run"), "caller"); free(v);
    assert_string_equal(v = meta_of(o2, "format"), "np"); free(v);
    assert_string_equal(v = meta_of(o2, "owner"), "me"); free(v);
    assert_string_equal(v = meta_of(o2, "note"), "from the plan"); free(v);
    char *recipe = meta_of(o2, "hma_recipe"), *recipe_ref = meta_of(ref, "hma_recipe");
    assert_non_null(recipe);
    assert_string_equal(recipe, recipe_ref);
    free(recipe);
    free(recipe_ref);
    /* the tensors are the reference's, byte for byte */
    hma_store *a = open_st(ref, 0), *b = open_st(o2, 0);
    assert_int_equal(hma_store_count(a), hma_store_count(b));
    for (size_t i = 0; i < hma_store_count(a); i++) {
        const hma_tensor *ta = hma_store_tensor(a, i);
        const hma_tensor *tb = hma_store_find(b, hma_tensor_name(ta));
        assert_non_null(tb);
        assert_int_equal(hma_tensor_nbytes(ta), hma_tensor_nbytes(tb));
        assert_memory_equal(hma_tensor_data(ta), hma_tensor_data(tb), (size_t)hma_tensor_nbytes(ta));
    }
    hma_store_close(a);
    hma_store_close(b);
    /* hma_plan_merge_to() writes the plan's metadata too, after format and hma_recipe */
    char *o3 = tu_join(E.dir, "to.safetensors");
    merge_ok(p, o3);
    assert_string_equal(v = meta_of(o3, "run"), "plan"); free(v);
    assert_string_equal(v = meta_of(o3, "format"), "pt"); free(v);
    /* a writer that already has tensors is refused; so is a NULL writer */
    char *o4 = tu_join(E.dir, "used.safetensors");
    uint64_t shape[1] = {1};
    assert_int_equal(hma_writer_create(&w, o4, 0), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "x", HMA_DTYPE_F32, 1, shape), HMA_OK);
    assert_int_equal(hma_plan_merge_into(p, w), HMA_ERR_STATE);
    hma_writer_free(w);
    assert_int_equal(hma_plan_merge_into(p, NULL), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_merge_into(NULL, NULL), HMA_ERR_INVALID_ARGUMENT);
    free(b1);
    free(ref);
    free(o1);
    free(o2);
    free(o3);
    free(o4);
    hma_plan_free(p);
    env_free(&E);
}

/* ---- one-tensor merges ----------------------------------------------------------------------- */

static void test_merge_tensor_ranges(void **state) {
    (void)state;
    env E;
    build_model(&E, 3, HMA_DTYPE_BF16);
    hma_plan *p = mkplan(&E);
    assert_int_equal(hma_plan_set_groups(p, "layers"), HMA_OK);
    const double a[3] = {0.1, 0.6, 1.2};
    for (int m = 0; m < 3; m++) {
        assert_int_equal(hma_plan_set_method(p, (hma_method)m), HMA_OK);
        assert_int_equal(hma_plan_set_ratios(p, a, 3), HMA_OK);
        assert_int_equal(hma_plan_set_output_dtype(p, m == 1 ? HMA_DTYPE_F32 : HMA_DTYPE_COUNT), HMA_OK);
        char *out = tu_join(E.dir, "full.safetensors");
        merge_ok(p, out);
        hma_store *o = open_st(out, 0);
        uint64_t seed = 99;
        for (size_t i = 0; i < hma_plan_tensor_count(p); i++) {
            const hma_tensor *t = hma_store_find(o, hma_plan_tensor_name(p, i));
            assert_non_null(t);
            const unsigned char *full = hma_tensor_data(t);
            size_t nb = (size_t)hma_plan_tensor_nbytes(p, i);
            assert_int_equal(nb, hma_tensor_nbytes(t));
            size_t es = hma_dtype_bits(hma_plan_tensor_dtype(p, i)) / 8;
            unsigned char *buf = malloc(nb + 1);
            assert_int_equal(hma_plan_merge_tensor_at(p, i, 0, buf, nb, NULL), HMA_OK);
            assert_memory_equal(buf, full, nb);
            for (int k = 0; k < 4; k++) {
                size_t ne = nb / es;
                size_t e0 = (size_t)((fx_rand(&seed, 1) + 2) / 4 * (double)ne);
                size_t e1 = e0 + (size_t)((fx_rand(&seed, 1) + 2) / 4 * (double)(ne - e0));
                memset(buf, 0xEE, nb);
                uint64_t gen = 0;
                assert_int_equal(hma_plan_merge_tensor(p, hma_plan_tensor_name(p, i), e0 * es, buf, (e1 - e0) * es, &gen), HMA_OK);
                assert_int_equal(gen, hma_plan_generation(p));
                assert_memory_equal(buf, full + e0 * es, (e1 - e0) * es);
            }
            if (es > 1) {
                assert_int_equal(hma_plan_merge_tensor_at(p, i, 1, buf, es, NULL), HMA_ERR_INVALID_ARGUMENT);
                assert_int_equal(hma_plan_merge_tensor_at(p, i, 0, buf, es + 1, NULL), HMA_ERR_INVALID_ARGUMENT);
            }
            assert_int_equal(hma_plan_merge_tensor_at(p, i, nb - es, buf, 2 * es, NULL), HMA_ERR_INVALID_ARGUMENT);
            free(buf);
        }
        hma_store_close(o);
        unlink(out);
        free(out);
    }
    char b[4];
    assert_int_equal(hma_plan_merge_tensor(p, "no.such", 0, b, 4, NULL), HMA_ERR_NOT_FOUND);
    assert_int_equal(hma_plan_merge_tensor_at(p, 9999, 0, b, 4, NULL), HMA_ERR_INVALID_ARGUMENT);
    hma_plan_free(p);
    env_free(&E);
}

/* 8 threads merge one tensor while the main thread alternates between two
 * weight sets; the generation each call reports says which set it used. */
typedef struct conc {
    hma_plan *p;
    size_t row, nb;
    const unsigned char *ref[2];
    uint64_t g0;
    atomic_int stop;
    int bad, calls;
} conc;

static void *conc_worker(void *arg) {
    conc *c = arg;
    unsigned char *buf = malloc(c->nb);
    int calls = 0, bad = 0;
    while (!atomic_load(&c->stop) || calls < 3) {
        uint64_t gen = 0;
        if (hma_plan_merge_tensor_at(c->p, c->row, 0, buf, c->nb, &gen) != HMA_OK) { bad++; break; }
        int which = gen <= c->g0 ? 0 : (int)((gen - c->g0) % 2 == 1); /* odd steps: set B */
        if (memcmp(buf, c->ref[which], c->nb) != 0) bad++;
        calls++;
    }
    free(buf);
    __atomic_add_fetch(&c->bad, bad, __ATOMIC_RELAXED);
    __atomic_add_fetch(&c->calls, calls, __ATOMIC_RELAXED);
    return NULL;
}

static void test_concurrent_merge_tensor(void **state) {
    (void)state;
    env E;
    build_model(&E, 2, HMA_DTYPE_BF16);
    hma_plan *p = mkplan(&E);
    assert_int_equal(hma_plan_set_groups(p, "blocks:2"), HMA_OK);
    assert_int_equal(hma_plan_set_method(p, HMA_METHOD_SLERP), HMA_OK);
    const double A[2] = {0.3, 0.7}, B[2] = {0.9, -0.1};
    conc c;
    memset(&c, 0, sizeof c);
    c.p = p;
    c.row = hma_plan_find(p, "model.layers.1.mlp.up_proj.weight");
    c.nb = (size_t)hma_plan_tensor_nbytes(p, c.row);
    unsigned char *ref[2];
    for (int k = 0; k < 2; k++) {
        assert_int_equal(hma_plan_set_ratios(p, k ? B : A, 2), HMA_OK);
        ref[k] = malloc(c.nb);
        assert_int_equal(hma_plan_merge_tensor_at(p, c.row, 0, ref[k], c.nb, NULL), HMA_OK);
        c.ref[k] = ref[k];
    }
    assert_memory_not_equal(ref[0], ref[1], c.nb);
    /* a fresh plan, so that the threads also race to fill the SLERP cache */
    hma_plan *q = mkplan(&E);
    assert_int_equal(hma_plan_set_groups(q, "blocks:2"), HMA_OK);
    assert_int_equal(hma_plan_set_method(q, HMA_METHOD_SLERP), HMA_OK);
    assert_int_equal(hma_plan_set_ratios(q, A, 2), HMA_OK);
    c.p = q;
    c.g0 = hma_plan_generation(q); /* set A; A at even steps after, B at odd */
    pthread_t th[8];
    for (int t = 0; t < 8; t++) assert_int_equal(pthread_create(&th[t], NULL, conc_worker, &c), 0);
    for (int k = 1; k <= 200; k++) {
        assert_int_equal(hma_plan_set_ratios(q, k % 2 ? B : A, 2), HMA_OK);
        assert_int_equal(hma_plan_generation(q), c.g0 + (uint64_t)k);
        usleep(200);
    }
    atomic_store(&c.stop, 1);
    for (int t = 0; t < 8; t++) pthread_join(th[t], NULL);
    assert_int_equal(c.bad, 0);
    assert_true(c.calls >= 24);
    free(ref[0]);
    free(ref[1]);
    hma_plan_free(q);
    hma_plan_free(p);
    env_free(&E);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_every_dtype_pair),
        cmocka_unit_test(test_ma_matches_pytorch_float32),
        cmocka_unit_test(test_linear_three_inputs_normalize),
        cmocka_unit_test(test_task_arithmetic),
        cmocka_unit_test(test_slerp),
        cmocka_unit_test(test_threads_and_simd_identical),
        cmocka_unit_test(test_recipe_and_shards),
        cmocka_unit_test(test_mismatch_errors),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_progress_and_cancel),
        cmocka_unit_test(test_merge_into_and_metadata),
        cmocka_unit_test(test_merge_tensor_ranges),
        cmocka_unit_test(test_concurrent_merge_tensor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
