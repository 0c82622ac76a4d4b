/*
 * test_mk_methods.c - mergekit's non-sparsifying methods (src/mergekit/
 * mk_linear.c, mk_sphere.c, mk_stock.c, mk_fusion.c), the dispatch and the
 * checks of mk_merge.c, and the chunked reductions of mk_reduce.c.
 *
 * Expected values come from mergekit itself: the function and class bodies
 * of mergekit a6e4028 (slerp.py, nuslerp.py, multislerp.py, karcher.py,
 * nearswap.py, ram.py, model_stock.py, linear.py, arcee_fusion.py), pulled
 * out of the mirror with Python's ast module and run on torch 1.13 (CPU,
 * float32). The snippet that printed them:
 *
 *   # extract: ast.parse(git show HEAD:mergekit/merge_methods/NAME.py), keep the
 *   # FunctionDef/ClassDef nodes named below without decorators, exec them with
 *   # Task/MergeTensorInput/ImmutableMap as dummy generic bases and
 *   # rectify_embed_sizes as a no-op; Task objects made with object.__new__.
 *   T = lambda a: torch.tensor(a, dtype=torch.float32).view(2, 3)
 *   LinearMergeTask(normalize=True, weights 0.3/0.5/0.2).execute({a: BASE, b: M1, c: M2})
 *   LinearMergeTask(normalize=False, weights 1/-0.5).execute({a: M1, b: M3})
 *   slerp(0.3, BASE, M1); slerp(0.3, M1, 2 * M1)
 *   nuslerp(0.6, M1, M2, dim=-1 or 0, flatten=...); BASE + nuslerp(0.6, M1 - BASE, M2 - BASE, ...)
 *   multislerp([M1, M2, M3], [0.2, 0.3, 0.5], base_tensor=BASE or None)
 *   karcher_merge_tensors([BASE, M1, M2], [1/3] * 3, max_iter=10, tol=1e-5)
 *   nearswap_merge([M1], BASE, 0.1)
 *   ram_merge([M1, M3], BASE); ramplus_tl_merge([M1, M3], BASE, r=0.5, alpha=0.8)
 *   ModelStockMergeTask(filter_wise=False/True).execute({base: BASE, a: M1, b: M2, c: M3})
 *   rng = np.random.RandomState(7); fb = round(rng.randn(4, 8) * 8) / 8
 *   fx = fb + round(rng.randn(4, 8) * 4) / 16; ArceeFusionMergeTask().execute({base: fb, x: fx})
 *   print each result's float32 values with float.hex()
 *   # libhma's own rule for nuslerp (double cos/theta, coefficients rounded
 *   # once, float32 elements), bit for bit:
 *   d0, d1 = v0.double(), v1.double(); n = norm(dim=-1).clamp(min=1e-7)
 *   th = acos(((d0 * d1).sum(-1) / (n0 * n1)).clamp(-1, 1))
 *   (sin((1 - t) th).float() * v0 + sin(t th).float() * v1) / sin(th).float()
 *
 * Element-wise methods must match mergekit bit for bit. Where mergekit
 * reduces in float32 (norms, dots, softmax sums) and libhma in double, the
 * per-tensor factors may differ in their last float32 bit: those results are
 * compared within MAX_ULPS units in the last place.
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

#include "mergekit/mk.h"

#define MAX_ULPS 4

static const float BASE[6] = {0.5f, -1.25f, 2.0f, 0.75f, -0.5f, 1.5f};
static const float M1[6] = {0.75f, -1.0f, 1.5f, 1.0f, -0.25f, 1.25f};
static const float M2[6] = {0.125f, -1.5f, 2.5f, 1.25f, -0.625f, 1.0f};
static const float M3[6] = {0.5f, -0.75f, 2.25f, 0.5f, 0.0f, 1.75f};
static const uint64_t SHAPE23[2] = {2, 3};

/* ---- expected values (mergekit, see the top) ---- */
static const float EXP_LINEAR_NORM[6] = {
    0x1.199998p-1, -0x1.2cccccp+0, 0x1.d9999ap+0, 0x1.f33334p-1, -0x1.99999ap-2, 0x1.466668p+0,
};
static const float EXP_LINEAR_RAW[6] = {0x1p-1, -0x1.4p-1, 0x1.8p-2, 0x1.8p-1, -0x1p-2, 0x1.8p-2};
static const float EXP_SLERP[6] = {
    0x1.2800e8p-1, -0x1.2e4dfp+0, 0x1.dbf332p+0, 0x1.a8a994p-1, -0x1.b543a8p-2, 0x1.6ea248p+0,
};
static const float EXP_SLERP_LERP[6] = {
    0x1.f33334p-1, -0x1.4cccccp+0, 0x1.f33334p+0, 0x1.4cccccp+0, -0x1.4cccccp-2, 0x1.ap+0,
};
static const float EXP_NUSLERP_FLAT[6] = {
    0x1.874056p-2, -0x1.524ebp+0, 0x1.113864p+1, 0x1.2b53f6p+0, -0x1.ee39ap-2, 0x1.1e74ccp+0,
};
static const float EXP_NUSLERP_BASE_FLAT[6] = {
    0x1.4f8184p-2, -0x1.4eb088p+0, 0x1.0eb088p+1, 0x1.61e9fep+0, -0x1.c505c8p-2, 0x1.bc2c04p-1,
};
static const float EXP_NUSLERP_ROWS[6] = {
    0x1.8684d6p-2, -0x1.51c06p+0, 0x1.10c62ap+1, 0x1.29a81ap+0, -0x1.eb9252p-2, 0x1.1ccf1ep+0,
};
static const float EXP_NUSLERP_BASE_ROWS[6] = {
    -0x1.2d6a1p-2, -0x1.52ce3cp+0, 0x1.12ce3cp+1, 0x1.2e41c2p+0, -0x1.e23f74p-2, 0x1.11be3ep+0,
};
static const float EXP_NUSLERP_COLS[6] = {
    0x1.8fa31ap-2, -0x1.4dace4p+0, 0x1.0fea52p+1, 0x1.310508p+0, -0x1.e7a4d4p-2, 0x1.1d05b8p+0,
};
static const float EXP_NUSLERP_BASE_COLS[6] = {
    0x1.669894p-2, -0x1.520aaep+0, 0x1.0ed772p+1, 0x1.44bc6p+0, -0x1.6cb87p-3, 0x1.aea75ep-1,
};
static const float EXP_MULTISLERP_BASE[6] = {
    0x1.a96accp-2, -0x1.76a32ep-1, 0x1.2695e8p+1, 0x1.be159p-1, 0x1.5feaap-4, 0x1.60f538p+0,
};
static const float EXP_MULTISLERP[6] = {
    0x1.e82bc6p-2, -0x1.0c216ap+0, 0x1.1c1f76p+1, 0x1.b2ec2p-1, -0x1.e017c6p-3, 0x1.7c5726p+0,
};
static const float EXP_KARCHER[6] = {
    0x1.0120c4p-1, -0x1.430e44p+0, 0x1.012e18p+1, 0x1.050272p+0, -0x1.cfaccap-2, 0x1.4bdf1ep+0,
};
static const float EXP_NEARSWAP[6] = {
    0x1.333334p-1, -0x1.266666p+0, 0x1.e66668p+0, 0x1.b33334p-1, -0x1.99999ap-2, 0x1.666668p+0,
};
static const float EXP_RAM[6] = {0x1.8p-1, -0x1.cp-1, 0x1.ep+0, 0x1.8p-1, -0x1p-3, 0x1.8p+0};
static const float EXP_RAMPLUS[6] = {0x1.b33334p-1, -0x1.cp-1, 0x1.ep+0, 0x1.8p-1, -0x1p-3, 0x1.8p+0};
static const float EXP_STOCK[6] = {
    0x1.179d6p-1, -0x1.6f3ac4p+0, 0x1.e8629cp+0, 0x1.218a74p-1, -0x1.7612e8p-1, 0x1.af3acp+0,
};
static const float EXP_STOCK_FW[6] = {
    0x1.3d4ca8p-1, -0x1.ba994cp+0, 0x1.c2b36p+0, 0x1.7f6338p-1, -0x1.00c3fap-1, 0x1.804e64p+0,
};
static const float FUSION_BASE[32] = {
    0x1.cp+0, -0x1p-1, 0x0p+0, 0x1.8p-2, -0x1.8p-1, 0x0p+0, -0x0p+0, -0x1.cp+0, 0x1p+0, 0x1.4p-1,
    -0x1.4p-1, -0x1p-3, 0x1p-1, -0x1p-2, -0x1p-2, -0x1.8p+0, 0x1p-1, 0x1p-3, 0x1p-2, -0x1.8p+0, 0x1.ap+0,
    0x1p-3, -0x1.8p-2, 0x1p+1, -0x0p+0, -0x1.8p+0, -0x1.8p-2, -0x1.2p+1, 0x1p+0, -0x1.8p-2, -0x1.8p-1,
    0x1.2p+0,
};
static const float FUSION_X[32] = {
    0x1.5p+0, -0x1.8p-2, -0x1p-1, 0x1.8p-3, -0x1.1p+0, 0x1.8p-2, 0x1.cp-2, -0x1.dp+0, 0x1.3p+0, 0x1.2p-1,
    -0x1p-1, -0x1.4p-2, 0x1p-4, -0x1.6p-1, -0x1p-3, -0x1.ep-1, 0x1.2p-1, 0x0p+0, 0x1.8p-1, -0x1.7p+0,
    0x1.ap+0, 0x1.8p-3, -0x1.cp-2, 0x1.fp+0, -0x1.8p-2, -0x1.6p+0, -0x1.8p-2, -0x1.fp+0, 0x1.ep-1,
    -0x1.cp-1, -0x1.8p-1, 0x1.9p+0,
};
static const float EXP_FUSION[32] = {
    0x1.cp+0, -0x1p-1, -0x1p-1, 0x1.8p-2, -0x1.8p-1, 0x0p+0, 0x0p+0, -0x1.cp+0, 0x1p+0, 0x1.4p-1,
    -0x1.4p-1, -0x1p-3, 0x1p-1, -0x1p-2, -0x1p-2, -0x1.8p+0, 0x1p-1, 0x1p-3, 0x1p-2, -0x1.8p+0, 0x1.ap+0,
    0x1p-3, -0x1.8p-2, 0x1p+1, -0x0p+0, -0x1.8p+0, -0x1.8p-2, -0x1.2p+1, 0x1p+0, -0x1.8p-2, -0x1.8p-1,
    0x1.2p+0,
};
static const float EXP_NUSLERP_BASE_ROWS_D[6] = {
    -0x1.2d6a7cp-2, -0x1.52ce3cp+0, 0x1.12ce3cp+1, 0x1.2e41c2p+0, -0x1.e23f72p-2, 0x1.11be3ep+0,
};

/* ---- a job over copies of the sources ---- */

#define TJ_MAX 8

typedef struct tjob {
    hma__mk_job job;
    hma__mk_pv model[TJ_MAX];
    hma__mk_pv global;
    float *x[TJ_MAX];
    uint64_t shape[4];
} tjob;

static void tj_init(tjob *t, hma__mk_method m, const float *const *src, size_t n_in, long base, unsigned ndim,
                    const uint64_t *shape) {
    memset(t, 0, sizeof *t);
    uint64_t n = 1;
    for (unsigned d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        n *= shape[d];
    }
    for (size_t i = 0; i < n_in; i++) {
        t->x[i] = malloc(n * sizeof(float));
        assert_non_null(t->x[i]);
        if (src) memcpy(t->x[i], src[i], n * sizeof(float));
    }
    t->job.method = m;
    t->job.name = "model.layers.0.mlp.up_proj.weight";
    t->job.ndim = ndim;
    t->job.shape = t->shape;
    t->job.n = n;
    t->job.n_in = n_in;
    t->job.x = t->x;
    t->job.base = base;
    t->job.model = t->model;
    t->job.global = &t->global;
    t->job.seed = 0;
    t->job.out = malloc(n * sizeof(float));
    t->job.scratch = malloc(n * sizeof(float));
    assert_non_null(t->job.out);
    assert_non_null(t->job.scratch);
    t->job.threads = 1;
}

static void tj_free(tjob *t) {
    for (size_t i = 0; i < t->job.n_in; i++) free(t->x[i]);
    free(t->job.out);
    free(t->job.scratch);
}

static void pv_set(hma__mk_pv *pv, hma__mk_param p, double v) {
    pv->v[p] = v;
    pv->set[p] = 1;
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Distance in float32 steps (same sign assumed for nonzero values). */
static uint64_t ulps(float a, float b) {
    int64_t ia = (int32_t)bits(a), ib = (int32_t)bits(b);
    if (ia < 0) ia = INT32_MIN - ia;
    if (ib < 0) ib = INT32_MIN - ib;
    return (uint64_t)(ia > ib ? ia - ib : ib - ia);
}

static void expect_exact(const float *got, const float *want, uint64_t n) {
    for (uint64_t e = 0; e < n; e++) {
        if (bits(got[e]) != bits(want[e]))
            fail_msg("element %llu: got %a, want %a", (unsigned long long)e, (double)got[e], (double)want[e]);
    }
}

static void expect_ulps(const float *got, const float *want, uint64_t n, uint64_t max) {
    for (uint64_t e = 0; e < n; e++) {
        if (ulps(got[e], want[e]) > max)
            fail_msg("element %llu: got %a, want %a (%llu ulps)", (unsigned long long)e, (double)got[e],
                     (double)want[e], (unsigned long long)ulps(got[e], want[e]));
    }
}

/* Methods with reductions: mergekit's float32 norms and dots against
 * libhma's double ones move the per-vector factors by an ulp or so, which a
 * division by a small sin(theta) can amplify: within MAX_ULPS, or within
 * 4e-6 absolute (inputs are of order 1; a wrong formula is off by 1e-2 or
 * more). */
static void expect_close(const float *got, const float *want, uint64_t n) {
    for (uint64_t e = 0; e < n; e++) {
        if (ulps(got[e], want[e]) > MAX_ULPS && fabsf(got[e] - want[e]) > 4e-6f)
            fail_msg("element %llu: got %a, want %a (%llu ulps)", (unsigned long long)e, (double)got[e],
                     (double)want[e], (unsigned long long)ulps(got[e], want[e]));
    }
}

static void run_ok(tjob *t) {
    int rc = hma__mk_merge(&t->job);
    if (rc != HMA_OK) fail_msg("hma__mk_merge: %d %s", rc, hma_last_error());
}

/* ---- each method on small cases against mergekit ---- */

static void test_linear(void **state) {
    (void)state;
    tjob t;
    const float *s3[3] = {BASE, M1, M2};
    tj_init(&t, HMA__MK_LINEAR, s3, 3, 0, 2, SHAPE23);
    /* a base_model given to linear is a source like the others */
    pv_set(&t.model[0], HMA__P_WEIGHT, 0.3);
    pv_set(&t.model[1], HMA__P_WEIGHT, 0.5);
    pv_set(&t.model[2], HMA__P_WEIGHT, 0.2);
    run_ok(&t);
    expect_exact(t.job.out, EXP_LINEAR_NORM, 6);
    tj_free(&t);

    const float *s2[2] = {M1, M3};
    tj_init(&t, HMA__MK_LINEAR, s2, 2, -1, 2, SHAPE23);
    pv_set(&t.model[0], HMA__P_WEIGHT, 1.0);
    pv_set(&t.model[1], HMA__P_WEIGHT, -0.5);
    pv_set(&t.global, HMA__P_NORMALIZE, 0.0);
    run_ok(&t);
    expect_exact(t.job.out, EXP_LINEAR_RAW, 6);
    tj_free(&t);
}

static void test_passthrough(void **state) {
    (void)state;
    tjob t;
    const float *s1[1] = {M1};
    tj_init(&t, HMA__MK_PASSTHROUGH, s1, 1, -1, 2, SHAPE23);
    run_ok(&t);
    expect_exact(t.job.out, M1, 6); /* no scale: the tensor as it is */
    pv_set(&t.model[0], HMA__P_SCALE, 0.1);
    run_ok(&t);
    for (int e = 0; e < 6; e++) assert_int_equal(bits(t.job.out[e]), bits(M1[e] * 0.1f));
    tj_free(&t);
}

static void test_slerp(void **state) {
    (void)state;
    tjob t;
    /* the base second in the sources: slerp still starts from it */
    const float *s2[2] = {M1, BASE};
    tj_init(&t, HMA__MK_SLERP, s2, 2, 1, 2, SHAPE23);
    pv_set(&t.global, HMA__P_T, 0.3);
    run_ok(&t);
    expect_close(t.job.out, EXP_SLERP, 6);
    tj_free(&t);

    /* nearly parallel: the lerp fallback, exact */
    float m1x2[6];
    for (int e = 0; e < 6; e++) m1x2[e] = 2 * M1[e];
    const float *sp[2] = {M1, m1x2};
    tj_init(&t, HMA__MK_SLERP, sp, 2, 0, 2, SHAPE23);
    pv_set(&t.global, HMA__P_T, 0.3);
    run_ok(&t);
    expect_exact(t.job.out, EXP_SLERP_LERP, 6);
    tj_free(&t);

    /* t = 0 is the base, t = 1 the other model */
    tj_init(&t, HMA__MK_SLERP, s2, 2, 1, 2, SHAPE23);
    pv_set(&t.global, HMA__P_T, 0.0);
    run_ok(&t);
    expect_ulps(t.job.out, BASE, 6, 1);
    pv_set(&t.global, HMA__P_T, 1.0);
    run_ok(&t);
    expect_ulps(t.job.out, M1, 6, 1);
    tj_free(&t);
}

static void nuslerp_case(int with_base, int flatten, int row_wise, const float *want) {
    tjob t;
    const float *sb[3] = {M1, BASE, M2};
    const float *s2[2] = {M1, M2};
    tj_init(&t, HMA__MK_NUSLERP, with_base ? sb : s2, with_base ? 3 : 2, with_base ? 1 : -1, 2, SHAPE23);
    pv_set(&t.model[0], HMA__P_WEIGHT, 0.4);
    pv_set(&t.model[with_base ? 2 : 1], HMA__P_WEIGHT, 0.6);
    pv_set(&t.global, HMA__P_NUSLERP_FLATTEN, flatten);
    pv_set(&t.global, HMA__P_NUSLERP_ROW_WISE, row_wise);
    run_ok(&t);
    expect_close(t.job.out, want, 6);
    tj_free(&t);
}

static void test_nuslerp(void **state) {
    (void)state;
    nuslerp_case(0, 1, 0, EXP_NUSLERP_FLAT);
    nuslerp_case(0, 1, 1, EXP_NUSLERP_FLAT); /* flatten wins over row_wise */
    nuslerp_case(0, 0, 0, EXP_NUSLERP_ROWS);
    nuslerp_case(0, 0, 1, EXP_NUSLERP_COLS);
    nuslerp_case(1, 1, 0, EXP_NUSLERP_BASE_FLAT);
    nuslerp_case(1, 0, 0, EXP_NUSLERP_BASE_ROWS);
    nuslerp_case(1, 0, 1, EXP_NUSLERP_BASE_COLS);
    /* and exactly libhma's rule (see EXP_NUSLERP_BASE_ROWS_D) */
    tjob t;
    const float *sb[3] = {M1, BASE, M2};
    tj_init(&t, HMA__MK_NUSLERP, sb, 3, 1, 2, SHAPE23);
    pv_set(&t.model[0], HMA__P_WEIGHT, 0.4);
    pv_set(&t.model[2], HMA__P_WEIGHT, 0.6);
    pv_set(&t.global, HMA__P_NUSLERP_FLATTEN, 0);
    run_ok(&t);
    expect_exact(t.job.out, EXP_NUSLERP_BASE_ROWS_D, 6);
    tj_free(&t);
}

/* Colinear vectors: (1 - t) v0 + t v1 exactly; weights summing to ~0: t = 0.5. */
static void test_nuslerp_lerp(void **state) {
    (void)state;
    float a[6], b[6], want[6];
    for (int e = 0; e < 6; e++) {
        a[e] = M1[e];
        b[e] = 3.0f * M1[e];
    }
    const float *s2[2] = {a, b};
    tjob t;
    tj_init(&t, HMA__MK_NUSLERP, s2, 2, -1, 2, SHAPE23);
    pv_set(&t.model[0], HMA__P_WEIGHT, 1.0);
    pv_set(&t.model[1], HMA__P_WEIGHT, 3.0); /* t = 0.75 */
    run_ok(&t);
    for (int e = 0; e < 6; e++) want[e] = 0.25f * a[e] + 0.75f * b[e];
    expect_exact(t.job.out, want, 6);
    pv_set(&t.model[0], HMA__P_WEIGHT, 1.0);
    pv_set(&t.model[1], HMA__P_WEIGHT, -1.0); /* |sum| < 1e-6: t = 0.5 */
    run_ok(&t);
    for (int e = 0; e < 6; e++) want[e] = 0.5f * a[e] + 0.5f * b[e];
    expect_exact(t.job.out, want, 6);
    tj_free(&t);

    /* Antipodal (cos = -1): sin(acos(-1)) is 1.2e-16 in double, so libhma
     * lerps. DIFFERENCE: mergekit's float32 sin(float32(pi)) is -8.7e-8,
     * above its 1e-8, and it divides sin((1-t) theta) v0 + sin(t theta) v1 by
     * that: noise of float32 rounding. */
    for (int e = 0; e < 6; e++) b[e] = -2.0f * a[e];
    tj_init(&t, HMA__MK_NUSLERP, s2, 2, -1, 2, SHAPE23);
    pv_set(&t.model[0], HMA__P_WEIGHT, 1.0);
    pv_set(&t.model[1], HMA__P_WEIGHT, 1.0);
    run_ok(&t);
    for (int e = 0; e < 6; e++) want[e] = 0.5f * a[e] + 0.5f * b[e];
    expect_exact(t.job.out, want, 6);
    tj_free(&t);
}

static void test_multislerp(void **state) {
    (void)state;
    tjob t;
    const float *sb[4] = {M1, M2, BASE, M3};
    tj_init(&t, HMA__MK_MULTISLERP, sb, 4, 2, 2, SHAPE23);
    pv_set(&t.model[0], HMA__P_WEIGHT, 0.2);
    pv_set(&t.model[1], HMA__P_WEIGHT, 0.3);
    pv_set(&t.model[3], HMA__P_WEIGHT, 0.5);
    run_ok(&t);
    expect_close(t.job.out, EXP_MULTISLERP_BASE, 6);
    tj_free(&t);

    const float *s3[3] = {M1, M2, M3};
    tj_init(&t, HMA__MK_MULTISLERP, s3, 3, -1, 2, SHAPE23);
    pv_set(&t.model[0], HMA__P_WEIGHT, 0.2);
    pv_set(&t.model[1], HMA__P_WEIGHT, 0.3);
    pv_set(&t.model[2], HMA__P_WEIGHT, 0.5);
    run_ok(&t);
    expect_close(t.job.out, EXP_MULTISLERP, 6);
    tj_free(&t);
}

/* Antipodal directions with equal weights: two tensors fall back to
 * v0 w0 + v1 w1; three are an error. */
static void test_multislerp_antipodal(void **state) {
    (void)state;
    float neg[6], want[6];
    for (int e = 0; e < 6; e++) neg[e] = -2.0f * M1[e];
    const float *s2[2] = {M1, neg};
    tjob t;
    tj_init(&t, HMA__MK_MULTISLERP, s2, 2, -1, 2, SHAPE23);
    pv_set(&t.model[0], HMA__P_WEIGHT, 1.0);
    pv_set(&t.model[1], HMA__P_WEIGHT, 1.0);
    run_ok(&t);
    for (int e = 0; e < 6; e++) want[e] = M1[e] * 0.5f + neg[e] * 0.5f;
    expect_exact(t.job.out, want, 6);
    tj_free(&t);

    const float *s3[3] = {M1, neg, M1};
    tj_init(&t, HMA__MK_MULTISLERP, s3, 3, -1, 2, SHAPE23);
    pv_set(&t.model[0], HMA__P_WEIGHT, 1.0);
    pv_set(&t.model[1], HMA__P_WEIGHT, 2.0);
    pv_set(&t.model[2], HMA__P_WEIGHT, 1.0);
    assert_int_equal(hma__mk_merge(&t.job), HMA_ERR_RECIPE);
    assert_non_null(strstr(hma_last_error(), "multislerp"));
    tj_free(&t);
}

static void test_karcher(void **state) {
    (void)state;
    tjob t;
    const float *s3[3] = {BASE, M1, M2};
    tj_init(&t, HMA__MK_KARCHER, s3, 3, -1, 2, SHAPE23);
    run_ok(&t);
    expect_close(t.job.out, EXP_KARCHER, 6);
    tj_free(&t);

    /* max_iter 0: the normalised mean direction times the mean norm */
    tj_init(&t, HMA__MK_KARCHER, s3, 3, -1, 2, SHAPE23);
    pv_set(&t.global, HMA__P_MAX_ITER, 0);
    run_ok(&t);
    double nrm[3] = {0, 0, 0}, u[6], un = 0, s = 0;
    for (int i = 0; i < 3; i++) {
        for (int e = 0; e < 6; e++) nrm[i] += (double)s3[i][e] * s3[i][e];
        nrm[i] = sqrt(nrm[i]);
        s += nrm[i] / 3;
    }
    for (int e = 0; e < 6; e++) {
        u[e] = 0;
        for (int i = 0; i < 3; i++) u[e] += s3[i][e] / nrm[i] / 3;
        un += u[e] * u[e];
    }
    for (int e = 0; e < 6; e++) assert_true(fabs(t.job.out[e] - s * u[e] / sqrt(un)) < 1e-6);
    tj_free(&t);
}

static void test_nearswap(void **state) {
    (void)state;
    tjob t;
    const float *s2[2] = {BASE, M1};
    tj_init(&t, HMA__MK_NEARSWAP, s2, 2, 0, 2, SHAPE23);
    pv_set(&t.global, HMA__P_T, 0.1);
    run_ok(&t);
    expect_exact(t.job.out, EXP_NEARSWAP, 6);
    tj_free(&t);
}

/* torch's `t / absdiff` is reciprocal(absdiff) * t: a value where that and
 * a true division differ (found by a scan over multiples of 1/8).
 * mergekit: nearswap_merge([tensor([1.125])], tensor([0.0]), 0.7) is
 * 0x1.666668p-1; float32(0.7) / 1.125 * 1.125 would give 0x1.666664p-1. */
static void test_nearswap_reciprocal(void **state) {
    (void)state;
    tjob t;
    float a[1] = {0.0f}, b[1] = {1.125f};
    const float *s2[2] = {a, b};
    const uint64_t one = 1;
    tj_init(&t, HMA__MK_NEARSWAP, s2, 2, 0, 1, &one);
    pv_set(&t.global, HMA__P_T, 0.7);
    run_ok(&t);
    assert_int_equal(bits(t.job.out[0]), bits(0x1.666668p-1f));
    tj_free(&t);
}

static void test_ram(void **state) {
    (void)state;
    tjob t;
    const float *s3[3] = {M1, BASE, M3};
    tj_init(&t, HMA__MK_RAM, s3, 3, 1, 2, SHAPE23);
    run_ok(&t);
    expect_exact(t.job.out, EXP_RAM, 6);
    tj_free(&t);

    tj_init(&t, HMA__MK_RAMPLUS_TL, s3, 3, 1, 2, SHAPE23);
    pv_set(&t.global, HMA__P_R, 0.5);
    pv_set(&t.global, HMA__P_ALPHA, 0.8);
    run_ok(&t);
    expect_exact(t.job.out, EXP_RAMPLUS, 6);
    tj_free(&t);
}

static void test_model_stock(void **state) {
    (void)state;
    tjob t;
    const float *s4[4] = {M1, BASE, M2, M3};
    tj_init(&t, HMA__MK_MODEL_STOCK, s4, 4, 1, 2, SHAPE23);
    run_ok(&t);
    expect_close(t.job.out, EXP_STOCK, 6);
    pv_set(&t.global, HMA__P_FILTER_WISE, 1);
    run_ok(&t);
    expect_close(t.job.out, EXP_STOCK_FW, 6);
    tj_free(&t);

    /* only the base: the base */
    const float *s1[1] = {BASE};
    tj_init(&t, HMA__MK_MODEL_STOCK, s1, 1, 0, 2, SHAPE23);
    run_ok(&t);
    expect_exact(t.job.out, BASE, 6);
    tj_free(&t);
}

static void test_arcee_fusion(void **state) {
    (void)state;
    tjob t;
    const float *s2[2] = {FUSION_X, FUSION_BASE};
    const uint64_t shape[2] = {4, 8};
    tj_init(&t, HMA__MK_ARCEE_FUSION, s2, 2, 1, 2, shape);
    run_ok(&t);
    expect_exact(t.job.out, EXP_FUSION, 32);
    tj_free(&t);
}

/* One source: slerp, nuslerp, karcher, multislerp, arcee_fusion return it. */
static void test_one_source(void **state) {
    (void)state;
    const hma__mk_method ms[] = {HMA__MK_SLERP, HMA__MK_NUSLERP, HMA__MK_KARCHER, HMA__MK_MULTISLERP,
                                 HMA__MK_ARCEE_FUSION};
    for (size_t k = 0; k < sizeof ms / sizeof ms[0]; k++) {
        tjob t;
        const float *s1[1] = {M2};
        tj_init(&t, ms[k], s1, 1, ms[k] == HMA__MK_KARCHER ? -1 : 0, 2, SHAPE23);
        pv_set(&t.global, HMA__P_T, 0.5);
        pv_set(&t.model[0], HMA__P_WEIGHT, 1.0);
        run_ok(&t);
        expect_exact(t.job.out, M2, 6);
        tj_free(&t);
    }
    /* multislerp with a base and one model: that model (easy_define gives
     * `tensors` without the base) */
    tjob t;
    const float *s2[2] = {BASE, M3};
    tj_init(&t, HMA__MK_MULTISLERP, s2, 2, 0, 2, SHAPE23);
    pv_set(&t.model[1], HMA__P_WEIGHT, 1.0);
    run_ok(&t);
    expect_exact(t.job.out, M3, 6);
    tj_free(&t);
}

/* ---- the reductions of mk_reduce.c against a naive sum ---- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float rndf(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static float *rnd_tensor(uint64_t n) {
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (uint64_t e = 0; e < n; e++) v[e] = rndf();
    return v;
}

/* Shapes with more than two chunks: short rows, rows longer than a chunk,
 * and columns (dim 0) longer than a chunk. */
static const uint64_t BIG_SHAPES[3][2] = {{391, 503}, {2, 100000}, {70000, 3}};

static void test_gram_layouts(void **state) {
    (void)state;
    for (int s = 0; s < 3; s++) {
        uint64_t n = BIG_SHAPES[s][0] * BIG_SHAPES[s][1];
        float *src[3], *sub = rnd_tensor(n);
        for (int i = 0; i < 3; i++) src[i] = rnd_tensor(n);
        hma__mk_job job;
        memset(&job, 0, sizeof job);
        job.ndim = 2;
        job.shape = BIG_SHAPES[s];
        job.n = n;
        hma__mk_vecs lay[3] = {hma__mk_vecs_flat(n), hma__mk_vecs_rows(&job), hma__mk_vecs_dim0(&job)};
        for (int l = 0; l < 3; l++) {
            const hma__mk_vecs *vs = &lay[l];
            double *g = malloc(vs->m * 6 * sizeof *g);
            assert_non_null(g);
            assert_int_equal(hma__mk_gram(3, vs, (const float *const *)src, 3, sub, g), HMA_OK);
            for (uint64_t v = 0; v < vs->m; v++) {
                for (size_t i = 0; i < 3; i++)
                    for (size_t j = i; j < 3; j++) {
                        long double sum = 0, mag = 0;
                        for (uint64_t k = 0; k < vs->len; k++) {
                            uint64_t e = v * vs->vstride + k * vs->estride;
                            float a = src[i][e] - sub[e], b = src[j][e] - sub[e];
                            sum += (long double)a * b;
                            mag += fabsl((long double)a * b);
                        }
                        double got = g[v * 6 + hma__mk_tri(i, j, 3)];
                        if (fabsl((long double)got - sum) > 1e-11L * mag)
                            fail_msg("shape %d layout %d vector %llu pair %zu,%zu: %.17g vs %.17Lg", s, l,
                                     (unsigned long long)v, i, j, got, sum);
                    }
            }
            free(g);
        }
        for (int i = 0; i < 3; i++) free(src[i]);
        free(sub);
    }
}

/* ---- thread-count independence ---- */

typedef struct mcase {
    hma__mk_method m;
    size_t n_in;
    long base;
    int variant;
} mcase;

static void setup_case(tjob *t, const mcase *c, float *const *src, const uint64_t *shape, unsigned threads) {
    tj_init(t, c->m, (const float *const *)src, c->n_in, c->base, 2, shape);
    t->job.threads = threads;
    for (size_t i = 0; i < c->n_in; i++) pv_set(&t->model[i], HMA__P_WEIGHT, 0.25 + 0.5 * (double)i);
    pv_set(&t->global, HMA__P_T, 0.35);
    pv_set(&t->model[0], HMA__P_SCALE, 1.5);
    pv_set(&t->global, HMA__P_NUSLERP_FLATTEN, c->variant == 0);
    pv_set(&t->global, HMA__P_NUSLERP_ROW_WISE, c->variant == 2);
    pv_set(&t->global, HMA__P_FILTER_WISE, c->variant == 1);
    pv_set(&t->global, HMA__P_EPSILON, 0.05);
}

static void test_threads(void **state) {
    (void)state;
    const mcase cases[] = {
        {HMA__MK_LINEAR, 3, -1, 0},      {HMA__MK_PASSTHROUGH, 1, -1, 0}, {HMA__MK_SLERP, 2, 1, 0},
        {HMA__MK_NUSLERP, 3, 0, 0},      {HMA__MK_NUSLERP, 3, 0, 1},      {HMA__MK_NUSLERP, 2, -1, 2},
        {HMA__MK_MULTISLERP, 4, 1, 0},   {HMA__MK_MULTISLERP, 3, -1, 0},  {HMA__MK_KARCHER, 3, -1, 0},
        {HMA__MK_MODEL_STOCK, 4, 0, 0},  {HMA__MK_MODEL_STOCK, 4, 0, 1},  {HMA__MK_NEARSWAP, 2, 0, 0},
        {HMA__MK_RAM, 4, 0, 0},          {HMA__MK_RAMPLUS_TL, 4, 0, 0},   {HMA__MK_ARCEE_FUSION, 2, 1, 0},
    };
    for (int s = 0; s < 3; s++) {
        uint64_t n = BIG_SHAPES[s][0] * BIG_SHAPES[s][1];
        float *src[4];
        for (int i = 0; i < 4; i++) src[i] = rnd_tensor(n);
        /* near-base entries, so that ram's masks and nearswap's clamp vary */
        for (uint64_t e = 0; e < n; e += 3) src[2][e] = src[0][e] + 0.01f * src[2][e];
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            tjob t1, t3;
            setup_case(&t1, &cases[k], src, BIG_SHAPES[s], 1);
            setup_case(&t3, &cases[k], src, BIG_SHAPES[s], 3);
            run_ok(&t1);
            run_ok(&t3);
            if (memcmp(t1.job.out, t3.job.out, n * sizeof(float)) != 0)
                fail_msg("shape %d case %zu (%s): threads 1 and 3 differ", s, k,
                         hma__mk_info_of(cases[k].m)->name);
            /* and the result is not trivially the same input */
            int finite = 1;
            for (uint64_t e = 0; e < n; e++) finite &= isfinite(t1.job.out[e]) != 0;
            if (!finite) fail_msg("shape %d case %zu: non-finite output", s, k);
            tj_free(&t1);
            tj_free(&t3);
        }
        for (int i = 0; i < 4; i++) free(src[i]);
    }
}

/* ---- validation ---- */

static void expect_invalid(tjob *t, const char *s1, const char *s2) {
    int rc = hma__mk_validate(&t->job, "recipe.yml: tensor 'w'");
    if (rc != HMA_ERR_RECIPE) fail_msg("validate returned %d, want HMA_ERR_RECIPE (%s)", rc, s1);
    const char *msg = hma_last_error();
    if (strncmp(msg, "recipe.yml: tensor 'w': ", 24) != 0) fail_msg("no prefix: %s", msg);
    if (!strstr(msg, s1) || (s2 && !strstr(msg, s2))) fail_msg("message '%s' lacks '%s' / '%s'", msg, s1, s2);
    tj_free(t);
}

static void expect_valid(tjob *t) {
    int rc = hma__mk_validate(&t->job, "w");
    if (rc != HMA_OK) fail_msg("validate: %d %s", rc, hma_last_error());
    tj_free(t);
}

static void test_validate(void **state) {
    (void)state;
    tjob t;
    /* slerp: t required; base + exactly one other */
    tj_init(&t, HMA__MK_SLERP, NULL, 2, 0, 2, SHAPE23);
    expect_invalid(&t, "'t'", NULL);
    tj_init(&t, HMA__MK_SLERP, NULL, 3, 0, 2, SHAPE23);
    pv_set(&t.global, HMA__P_T, 0.5);
    expect_invalid(&t, "slerp", "exactly one other");
    tj_init(&t, HMA__MK_SLERP, NULL, 2, -1, 2, SHAPE23);
    pv_set(&t.global, HMA__P_T, 0.5);
    expect_invalid(&t, "slerp", "no base");
    tj_init(&t, HMA__MK_SLERP, NULL, 2, 1, 2, SHAPE23);
    pv_set(&t.global, HMA__P_T, 0.5);
    expect_valid(&t);

    /* linear: every weight, the base's too; normalize with a zero sum */
    tj_init(&t, HMA__MK_LINEAR, NULL, 3, -1, 2, SHAPE23);
    pv_set(&t.model[0], HMA__P_WEIGHT, 1);
    pv_set(&t.model[2], HMA__P_WEIGHT, 1);
    expect_invalid(&t, "model 2", "'weight'");
    tj_init(&t, HMA__MK_LINEAR, NULL, 2, 1, 2, SHAPE23);
    pv_set(&t.model[0], HMA__P_WEIGHT, 1);
    expect_invalid(&t, "linear has no base model: give base_model a weight or remove it", NULL);
    tj_init(&t, HMA__MK_LINEAR, NULL, 2, -1, 2, SHAPE23);
    pv_set(&t.model[0], HMA__P_WEIGHT, 0.5);
    pv_set(&t.model[1], HMA__P_WEIGHT, -0.5);
    expect_invalid(&t, "sum to 0", "normalize");
    tj_init(&t, HMA__MK_LINEAR, NULL, 2, -1, 2, SHAPE23);
    pv_set(&t.model[0], HMA__P_WEIGHT, 0.5);
    pv_set(&t.model[1], HMA__P_WEIGHT, -0.5);
    pv_set(&t.global, HMA__P_NORMALIZE, 0);
    expect_valid(&t);

    /* nuslerp: two models besides the optional base, each with a weight */
    tj_init(&t, HMA__MK_NUSLERP, NULL, 3, -1, 2, SHAPE23);
    for (int i = 0; i < 3; i++) pv_set(&t.model[i], HMA__P_WEIGHT, 1);
    expect_invalid(&t, "nuslerp", "exactly two");
    tj_init(&t, HMA__MK_NUSLERP, NULL, 3, 1, 2, SHAPE23);
    pv_set(&t.model[0], HMA__P_WEIGHT, 1);
    expect_invalid(&t, "model 3", "'weight'");
    tj_init(&t, HMA__MK_NUSLERP, NULL, 3, 1, 2, SHAPE23);
    pv_set(&t.model[0], HMA__P_WEIGHT, 1);
    pv_set(&t.model[2], HMA__P_WEIGHT, 1);
    expect_valid(&t); /* the base needs no weight */

    /* nearswap: base + one, t required */
    tj_init(&t, HMA__MK_NEARSWAP, NULL, 2, -1, 2, SHAPE23);
    pv_set(&t.global, HMA__P_T, 0.5);
    expect_invalid(&t, "nearswap", "base_model");
    tj_init(&t, HMA__MK_NEARSWAP, NULL, 3, 0, 2, SHAPE23);
    pv_set(&t.global, HMA__P_T, 0.5);
    expect_invalid(&t, "nearswap", "exactly one other");
    tj_init(&t, HMA__MK_NEARSWAP, NULL, 2, 0, 2, SHAPE23);
    expect_invalid(&t, "nearswap", "'t'");

    /* passthrough: exactly one */
    tj_init(&t, HMA__MK_PASSTHROUGH, NULL, 2, -1, 2, SHAPE23);
    expect_invalid(&t, "passthrough", "exactly one");

    /* model_stock: base + at least two */
    tj_init(&t, HMA__MK_MODEL_STOCK, NULL, 2, 0, 2, SHAPE23);
    expect_invalid(&t, "model_stock", "at least two");
    tj_init(&t, HMA__MK_MODEL_STOCK, NULL, 3, -1, 2, SHAPE23);
    expect_invalid(&t, "model_stock", "base_model");
    tj_init(&t, HMA__MK_MODEL_STOCK, NULL, 3, 2, 2, SHAPE23);
    expect_valid(&t);

    /* arcee_fusion: base + one */
    tj_init(&t, HMA__MK_ARCEE_FUSION, NULL, 3, 0, 2, SHAPE23);
    expect_invalid(&t, "arcee_fusion", "exactly one other");

    /* multislerp: weights of the non-base models, not summing to 0 */
    tj_init(&t, HMA__MK_MULTISLERP, NULL, 3, 0, 2, SHAPE23);
    pv_set(&t.model[1], HMA__P_WEIGHT, 1);
    pv_set(&t.model[2], HMA__P_WEIGHT, -1);
    expect_invalid(&t, "multislerp", "sum to 0");
    tj_init(&t, HMA__MK_MULTISLERP, NULL, 3, 0, 2, SHAPE23);
    pv_set(&t.model[1], HMA__P_WEIGHT, 1);
    pv_set(&t.model[2], HMA__P_WEIGHT, -1);
    pv_set(&t.global, HMA__P_NORMALIZE_WEIGHTS, 0);
    expect_valid(&t);
    tj_init(&t, HMA__MK_MULTISLERP, NULL, 3, 0, 2, SHAPE23);
    pv_set(&t.model[1], HMA__P_WEIGHT, 1);
    expect_invalid(&t, "model 3", "'weight'");

    /* karcher: max_iter a whole number >= 0 */
    tj_init(&t, HMA__MK_KARCHER, NULL, 2, -1, 2, SHAPE23);
    pv_set(&t.global, HMA__P_MAX_ITER, -1);
    expect_invalid(&t, "karcher", "'max_iter'");
    tj_init(&t, HMA__MK_KARCHER, NULL, 2, -1, 2, SHAPE23);
    pv_set(&t.global, HMA__P_MAX_ITER, 2.5);
    expect_invalid(&t, "karcher", "'max_iter'");
    tj_init(&t, HMA__MK_KARCHER, NULL, 2, -1, 2, SHAPE23);
    pv_set(&t.global, HMA__P_MAX_ITER, 0);
    expect_valid(&t);

    /* ram needs a base */
    tj_init(&t, HMA__MK_RAM, NULL, 2, -1, 2, SHAPE23);
    expect_invalid(&t, "ram", "base_model");

    /* hma__mk_merge refuses what validation refuses, naming the tensor */
    tj_init(&t, HMA__MK_PASSTHROUGH, NULL, 2, -1, 2, SHAPE23);
    assert_int_equal(hma__mk_merge(&t.job), HMA_ERR_RECIPE);
    assert_non_null(strstr(hma_last_error(), "tensor 'model.layers.0.mlp.up_proj.weight'"));
    tj_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_passthrough),
        cmocka_unit_test(test_slerp),
        cmocka_unit_test(test_nuslerp),
        cmocka_unit_test(test_nuslerp_lerp),
        cmocka_unit_test(test_multislerp),
        cmocka_unit_test(test_multislerp_antipodal),
        cmocka_unit_test(test_karcher),
        cmocka_unit_test(test_nearswap),
        cmocka_unit_test(test_nearswap_reciprocal),
        cmocka_unit_test(test_ram),
        cmocka_unit_test(test_model_stock),
        cmocka_unit_test(test_arcee_fusion),
        cmocka_unit_test(test_one_source),
        cmocka_unit_test(test_gram_layouts),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_validate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
