/* test_groups.c - layer detection, group specs, name rules, gradients and
 * the weights each tensor gets (public API of the merge plan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include "plan_fixture.h"

static void test_layer_families(void **state) {
    (void)state;
    struct { const char *name; long layer; } cases[] = {
        {"model.layers.12.mlp.up_proj.weight", 12},
        {"transformer.h.3.attn.c_attn.weight", 3},
        {"gpt_neox.layers.7.attention.dense.weight", 7},
        {"model.decoder.layers.5.fc1.weight", 5},
        {"transformer.blocks.0.ffn.weight", 0},
        {"bert.encoder.layer.11.output.dense.weight", 11},
        {"encoder.layer.4.attention.self.query.bias", 4},
        {"blk.31.attn_q.weight", 31},
        {"base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight", 2},
        {"model.layers.3", 3},
        {"model.layers.05.x", 5},
        {"model.embed_tokens.weight", -1},
        {"lm_head.weight", -1},
        {"model.norm.weight", -1},
        {"transformer.wte.weight", -1},
        {"xmodel.layers.3.w", -1},
        {"model.layers.x.w", -1},
        {"model.layers.3x.w", -1},
        {"model.layers.1234567890.w", -1},
        {"model.layers..w", -1},
        {"", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long got = hma_layer_from_name(cases[i].name);
        if (got != cases[i].layer) fail_msg("%s: got %ld, expected %ld", cases[i].name, got, cases[i].layer);
    }
    assert_int_equal(hma_layer_from_name(NULL), -1);
}

static void test_embedding_names(void **state) {
    (void)state;
    const char *yes[] = {"model.embed_tokens.weight", "transformer.wte.weight", "bert.embeddings.word_embeddings.weight",
                         "tok_embeddings.weight", "token_embd.weight", "gpt_neox.embed_in.weight"};
    const char *no[] = {"lm_head.weight", "model.norm.weight", "model.layers.0.mlp.up_proj.weight",
                        "transformer.wpe.weight"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) assert_int_equal(hma_is_embedding_name(yes[i]), 1);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) assert_int_equal(hma_is_embedding_name(no[i]), 0);
}

/* mergekit's formula, written out here independently. */
static double ref_gradient(const double *a, size_t n, double t) {
    if (n == 1) return a[0];
    if (t < 0) t = 0;
    if (t > 1) t = 1;
    double s = t * (double)(n - 1);
    size_t j = (size_t)s;
    if (j >= n - 1) return a[n - 1];
    return a[j] + (s - (double)j) * (a[j + 1] - a[j]);
}

static void test_gradient_eval(void **state) {
    (void)state;
    const double a2[] = {0.0, 1.0}, a3[] = {0.2, 0.8, 0.4}, a1[] = {0.7};
    assert_true(hma_gradient_eval(a2, 2, 0.25) == 0.25);
    assert_true(fabs(hma_gradient_eval(a3, 3, 0.75) - 0.6) < 1e-15);
    assert_true(hma_gradient_eval(a3, 3, 0.0) == 0.2);
    assert_true(hma_gradient_eval(a3, 3, 1.0) == 0.4);
    assert_true(hma_gradient_eval(a3, 3, 0.5) == 0.8);
    assert_true(hma_gradient_eval(a3, 3, -3.0) == 0.2);
    assert_true(hma_gradient_eval(a3, 3, 7.0) == 0.4);
    assert_true(hma_gradient_eval(a1, 1, 0.3) == 0.7);
    assert_true(isnan(hma_gradient_eval(NULL, 3, 0.5)));
    assert_true(isnan(hma_gradient_eval(a3, 0, 0.5)));
    for (int k = 0; k <= 20; k++) {
        double t = k / 20.0;
        assert_true(hma_gradient_eval(a3, 3, t) == ref_gradient(a3, 3, t));
    }
}

/* ---- a synthetic Llama-like pair with L = 8 ------------------------------- */

typedef struct fx {
    char *dir;
    hma_store *s[2];
    hma_plan *plan;
} fx;

static const char *k_names[] = {
    "model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weight",
    "model.layers.2.self_attn.q_proj.weight", "model.layers.3.mlp.up_proj.weight",
    "model.layers.4.input_layernorm.weight", "model.layers.5.mlp.down_proj.weight",
    "model.layers.6.mlp.up_proj.weight", "model.layers.7.mlp.gate_proj.weight", "model.norm.weight",
    "lm_head.weight", "rotary.inv_freq",
};
#define NNAMES (sizeof k_names / sizeof k_names[0])

static int fx_setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp();
    fx_tensor ts[NNAMES];
    for (size_t i = 0; i < NNAMES; i++) {
        ts[i] = (fx_tensor){k_names[i], HMA_DTYPE_F32, 1, {2, 0, 0, 0}, NULL};
    }
    for (int j = 0; j < 2; j++) {
        char *p = tu_join(f->dir, j ? "b.safetensors" : "a.safetensors");
        assert_int_equal(fx_write(p, ts, NNAMES), HMA_OK);
        assert_int_equal(hma_store_open(&f->s[j], p, 0), HMA_OK);
        free(p);
    }
    assert_int_equal(hma_plan_create(&f->plan, f->s, 2), HMA_OK);
    *state = f;
    return 0;
}

static int fx_teardown(void **state) {
    fx *f = *state;
    hma_plan_free(f->plan);
    hma_store_close(f->s[0]);
    hma_store_close(f->s[1]);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static int group_of(hma_plan *p, const char *name) {
    size_t i = hma_plan_find(p, name);
    if (i == (size_t)-1) fail_msg("no row %s", name);
    return hma_plan_tensor_group(p, i);
}

static void test_defaults(void **state) {
    fx *f = *state;
    hma_plan *p = f->plan;
    assert_int_equal(hma_plan_layer_count(p), 8);
    assert_int_equal(hma_plan_group_count(p), 1);
    assert_string_equal(hma_plan_groups_spec(p), "all");
    assert_int_equal(hma_plan_tensor_count(p), NNAMES);
    assert_int_equal(hma_plan_input_count(p), 2);
    assert_int_equal(group_of(p, "model.embed_tokens.weight"), 0);
    assert_int_equal(group_of(p, "model.layers.7.mlp.gate_proj.weight"), 0);
    assert_int_equal(group_of(p, "lm_head.weight"), HMA_GROUP_MEAN);
    assert_int_equal(group_of(p, "rotary.inv_freq"), HMA_GROUP_MEAN);
    for (size_t i = 0; i < NNAMES; i++) {
        assert_string_equal(hma_plan_tensor_name(p, i), k_names[i]);
        assert_int_equal(hma_plan_tensor_layer(p, i), hma_layer_from_name(k_names[i]));
        assert_int_equal(hma_plan_tensor_action(p, i), HMA_ACTION_MERGE);
        assert_int_equal(hma_plan_tensor_dtype(p, i), HMA_DTYPE_F32);
        assert_int_equal(hma_plan_tensor_nbytes(p, i), 8);
    }
    assert_int_equal(hma_plan_find(p, "nope"), HMA_NPOS);
    assert_null(hma_plan_tensor_name(p, NNAMES));
    /* default weights: ratio 0.5 */
    double w[2];
    uint64_t g0 = 0;
    assert_int_equal(hma_plan_tensor_weights(p, 0, w, 2, &g0), HMA_OK);
    assert_true(w[0] == 0.5 && w[1] == 0.5);
    assert_true(g0 >= 1);
}

static void test_blocks(void **state) {
    fx *f = *state;
    hma_plan *p = f->plan;
    assert_int_equal(hma_plan_set_groups(p, "blocks:3"), HMA_OK);
    assert_int_equal(hma_plan_group_count(p), 3);
    for (size_t i = 0; i < NNAMES; i++) {
        long l = hma_layer_from_name(k_names[i]);
        if (l < 0) continue;
        assert_int_equal(hma_plan_tensor_group(p, i), (int)(l * 3 / 8));
    }
    /* the toy layout: 0-2 / 3-5 / 6-7 */
    assert_int_equal(group_of(p, "model.layers.2.self_attn.q_proj.weight"), 0);
    assert_int_equal(group_of(p, "model.layers.3.mlp.up_proj.weight"), 1);
    assert_int_equal(group_of(p, "model.layers.5.mlp.down_proj.weight"), 1);
    assert_int_equal(group_of(p, "model.layers.6.mlp.up_proj.weight"), 2);
    assert_int_equal(group_of(p, "model.embed_tokens.weight"), 0);
    assert_int_equal(group_of(p, "model.norm.weight"), HMA_GROUP_MEAN);
    assert_int_equal(hma_plan_set_groups(p, "blocks:8"), HMA_OK);
    assert_int_equal(group_of(p, "model.layers.5.mlp.down_proj.weight"), 5);
    assert_int_equal(hma_plan_set_groups(p, "blocks:1"), HMA_OK);
    assert_int_equal(group_of(p, "model.layers.7.mlp.gate_proj.weight"), 0);
}

static void test_split_layers_all(void **state) {
    fx *f = *state;
    hma_plan *p = f->plan;
    assert_int_equal(hma_plan_set_groups(p, "split:2,5"), HMA_OK);
    assert_int_equal(hma_plan_group_count(p), 3);
    for (size_t i = 0; i < NNAMES; i++) {
        long l = hma_layer_from_name(k_names[i]);
        if (l < 0) continue;
        int want = l <= 2 ? 0 : l <= 5 ? 1 : 2;
        assert_int_equal(hma_plan_tensor_group(p, i), want);
    }
    assert_int_equal(hma_plan_set_groups(p, "split:10,20"), HMA_OK); /* all layers in group 0 */
    assert_int_equal(group_of(p, "model.layers.7.mlp.gate_proj.weight"), 0);
    assert_int_equal(hma_plan_set_groups(p, "layers"), HMA_OK);
    assert_int_equal(hma_plan_group_count(p), 8);
    assert_int_equal(group_of(p, "model.layers.6.mlp.up_proj.weight"), 6);
    assert_int_equal(hma_plan_set_groups(p, "none"), HMA_OK);
    assert_int_equal(hma_plan_group_count(p), 1);
    assert_string_equal(hma_plan_groups_spec(p), "none");
}

static void test_bad_specs(void **state) {
    fx *f = *state;
    hma_plan *p = f->plan;
    assert_int_equal(hma_plan_set_groups(p, "blocks:3"), HMA_OK);
    const char *bad[] = {"blocks:0", "blocks:", "blocks:x", "blocks:-1", "blocks:65537", "split:",
                         "split:5,2", "split:3,3", "split:a", "split:1,,2", "split:1,", "foo", "",
                         "Blocks:3", "layers:2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (hma_plan_set_groups(p, bad[i]) != HMA_ERR_INVALID_ARGUMENT) fail_msg("spec '%s' accepted", bad[i]);
        assert_true(strstr(hma_last_error(), bad[i]) != NULL || bad[i][0] == 0);
    }
    assert_int_equal(hma_plan_set_groups(p, NULL), HMA_ERR_INVALID_ARGUMENT);
    assert_string_equal(hma_plan_groups_spec(p), "blocks:3"); /* unchanged */
    assert_int_equal(hma_plan_group_count(p), 3);
}

static void test_rules(void **state) {
    fx *f = *state;
    hma_plan *p = f->plan;
    assert_int_equal(hma_plan_set_groups(p, "blocks:3"), HMA_OK);
    assert_int_equal(hma_plan_add_rule(p, "lm_head", 2), HMA_OK);
    assert_int_equal(hma_plan_add_rule(p, "model.layers.?.mlp.*", HMA_GROUP_MEAN), HMA_OK);
    assert_int_equal(hma_plan_add_rule(p, "mlp", 1), HMA_OK); /* shadowed by the glob */
    assert_int_equal(hma_plan_add_rule(p, "embed", 2), HMA_OK);
    assert_int_equal(group_of(p, "lm_head.weight"), 2);
    assert_int_equal(group_of(p, "model.layers.0.mlp.up_proj.weight"), HMA_GROUP_MEAN);
    assert_int_equal(group_of(p, "model.layers.2.self_attn.q_proj.weight"), 0); /* no rule: layer */
    assert_int_equal(group_of(p, "model.embed_tokens.weight"), 2);
    assert_int_equal(group_of(p, "model.norm.weight"), HMA_GROUP_MEAN);
    /* glob is anchored: a glob without leading * does not match mid-name */
    hma_plan_clear_rules(p);
    assert_int_equal(hma_plan_add_rule(p, "layers.?.mlp*", 2), HMA_OK);
    assert_int_equal(group_of(p, "model.layers.0.mlp.up_proj.weight"), 0);
    assert_int_equal(hma_plan_add_rule(p, "*norm*", 1), HMA_OK);
    assert_int_equal(group_of(p, "model.norm.weight"), 1);
    assert_int_equal(group_of(p, "model.layers.4.input_layernorm.weight"), 1);
    /* errors */
    assert_int_equal(hma_plan_add_rule(p, "x", 3), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_add_rule(p, "x", -3), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_add_rule(p, "", 0), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_add_rule(p, NULL, 0), HMA_ERR_INVALID_ARGUMENT);
    /* a rule naming group 2 blocks a spec with fewer groups */
    hma_plan_clear_rules(p);
    assert_int_equal(hma_plan_add_rule(p, "lm_head", 2), HMA_OK);
    assert_int_equal(hma_plan_set_groups(p, "blocks:2"), HMA_ERR_INVALID_ARGUMENT);
    assert_string_equal(hma_plan_groups_spec(p), "blocks:3");
    hma_plan_clear_rules(p);
    assert_int_equal(group_of(p, "lm_head.weight"), HMA_GROUP_MEAN);
}

static void test_weights_per_tensor(void **state) {
    fx *f = *state;
    hma_plan *p = f->plan;
    assert_int_equal(hma_plan_set_groups(p, "blocks:3"), HMA_OK);
    const double a[3] = {0.2, 0.5, 0.8};
    uint64_t g1 = hma_plan_generation(p);
    assert_int_equal(hma_plan_set_ratios(p, a, 3), HMA_OK);
    assert_int_equal(hma_plan_generation(p), g1 + 1);
    double abar = (0.2 + 0.5 + 0.8) / 3;
    for (size_t i = 0; i < NNAMES; i++) {
        double w[2];
        uint64_t g;
        assert_int_equal(hma_plan_tensor_weights(p, i, w, 2, &g), HMA_OK);
        assert_int_equal(g, g1 + 1);
        int grp = hma_plan_tensor_group(p, i);
        double r = grp >= 0 ? a[grp] : abar;
        assert_true(w[1] == r);
        assert_true(w[0] == 1.0 - r);
    }
    double m[2];
    assert_int_equal(hma_plan_mean_weights(p, m, 2), HMA_OK);
    assert_true(m[1] == abar && m[0] == 1.0 - abar);
    double all[6];
    assert_int_equal(hma_plan_get_weights(p, all, 6, NULL), HMA_OK);
    for (int k = 0; k < 3; k++) assert_true(all[2 * k] == 1.0 - a[k] && all[2 * k + 1] == a[k]);
    /* ratios are never normalized */
    assert_int_equal(hma_plan_set_normalize(p, 1), HMA_OK);
    for (size_t i = 0; i < NNAMES; i++) {
        double w[2];
        assert_int_equal(hma_plan_tensor_weights(p, i, w, 2, NULL), HMA_OK);
        int grp = hma_plan_tensor_group(p, i);
        assert_true(w[1] == (grp >= 0 ? a[grp] : abar));
    }
    assert_int_equal(hma_plan_set_normalize(p, 0), HMA_OK);
    /* explicit weights, mean = column means; normalize divides by the row sum */
    const double W[6] = {1, 3, 2, 2, -1, 5};
    assert_int_equal(hma_plan_set_weights(p, W, 6), HMA_OK);
    assert_int_equal(hma_plan_mean_weights(p, m, 2), HMA_OK);
    assert_true(m[0] == (1.0 + 2.0 - 1.0) / 3 && m[1] == (3.0 + 2.0 + 5.0) / 3);
    size_t up6 = hma_plan_find(p, "model.layers.6.mlp.up_proj.weight");
    double w[2];
    assert_int_equal(hma_plan_tensor_weights(p, up6, w, 2, NULL), HMA_OK);
    assert_true(w[0] == -1 && w[1] == 5);
    assert_int_equal(hma_plan_set_normalize(p, 1), HMA_OK);
    assert_int_equal(hma_plan_tensor_weights(p, up6, w, 2, NULL), HMA_OK);
    assert_true(w[0] == -1.0 / 4.0 && w[1] == 5.0 / 4.0);
    const double Z[6] = {1, -1, 1, 1, 1, 1};
    assert_int_equal(hma_plan_set_weights(p, Z, 6), HMA_OK);
    size_t up0 = hma_plan_find(p, "model.layers.0.mlp.up_proj.weight");
    assert_int_equal(hma_plan_tensor_weights(p, up0, w, 2, NULL), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_set_normalize(p, 0), HMA_OK);
    /* errors */
    assert_int_equal(hma_plan_set_weights(p, W, 5), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_set_ratios(p, a, 2), HMA_ERR_INVALID_ARGUMENT);
    const double bad[3] = {0.1, NAN, 0.3};
    assert_int_equal(hma_plan_set_ratios(p, bad, 3), HMA_ERR_INVALID_ARGUMENT);
    const double inf[6] = {1, 1, 1, 1, 1, INFINITY};
    assert_int_equal(hma_plan_set_weights(p, inf, 6), HMA_ERR_INVALID_ARGUMENT);
    /* a changed grouping resets the weights to 0.5 */
    assert_int_equal(hma_plan_set_groups(p, "blocks:2"), HMA_OK);
    assert_int_equal(hma_plan_tensor_weights(p, up6, w, 2, NULL), HMA_OK);
    assert_true(w[0] == 0.5 && w[1] == 0.5);
}

static void test_gradients(void **state) {
    fx *f = *state;
    hma_plan *p = f->plan;
    assert_int_equal(hma_plan_set_groups(p, "layers"), HMA_OK);
    const double anchors[3] = {0.1, 0.9, 0.3};
    assert_int_equal(hma_plan_set_ratio_gradient(p, anchors, 3), HMA_OK);
    double w[16];
    assert_int_equal(hma_plan_get_weights(p, w, 16, NULL), HMA_OK);
    for (int k = 0; k < 8; k++) {
        double r = ref_gradient(anchors, 3, k / 7.0);
        assert_true(w[2 * k + 1] == r);
        assert_true(w[2 * k] == 1.0 - r);
    }
    const double wa[4] = {1.0, 0.0, 0.0, 2.0}; /* 2 anchors x 2 inputs */
    assert_int_equal(hma_plan_set_weight_gradient(p, wa, 2), HMA_OK);
    assert_int_equal(hma_plan_get_weights(p, w, 16, NULL), HMA_OK);
    for (int k = 0; k < 8; k++) {
        const double c0[2] = {1.0, 0.0}, c1[2] = {0.0, 2.0};
        assert_true(w[2 * k] == ref_gradient(c0, 2, k / 7.0));
        assert_true(w[2 * k + 1] == ref_gradient(c1, 2, k / 7.0));
    }
    /* one group: t = 0 */
    assert_int_equal(hma_plan_set_groups(p, "all"), HMA_OK);
    assert_int_equal(hma_plan_set_ratio_gradient(p, anchors, 3), HMA_OK);
    assert_int_equal(hma_plan_get_weights(p, w, 2, NULL), HMA_OK);
    assert_true(w[1] == 0.1);
    assert_int_equal(hma_plan_set_ratio_gradient(p, anchors, 0), HMA_ERR_INVALID_ARGUMENT);
}

static void test_setters_errors(void **state) {
    fx *f = *state;
    hma_plan *p = f->plan;
    assert_int_equal(hma_plan_set_method(p, (hma_method)7), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_set_method(p, HMA_METHOD_SLERP), HMA_OK);
    assert_int_equal(hma_plan_set_method(p, HMA_METHOD_LINEAR), HMA_OK);
    assert_int_equal(hma_plan_set_base(p, 2), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_set_base(p, 1), HMA_OK);
    assert_int_equal(hma_plan_set_output_dtype(p, HMA_DTYPE_I32), HMA_ERR_UNSUPPORTED_DTYPE);
    assert_int_equal(hma_plan_set_output_dtype(p, 99), HMA_ERR_UNSUPPORTED_DTYPE);
    assert_int_equal(hma_plan_set_output_dtype(p, HMA_DTYPE_BF16), HMA_OK);
    assert_int_equal(hma_plan_tensor_dtype(p, 0), HMA_DTYPE_BF16);
    assert_int_equal(hma_plan_tensor_nbytes(p, 0), 4);
    assert_int_equal(hma_plan_set_output_dtype(p, HMA_DTYPE_COUNT), HMA_OK);
    assert_int_equal(hma_plan_tensor_dtype(p, 0), HMA_DTYPE_F32);
    assert_int_equal(hma_plan_copy_unmatched(p, 2), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_copy_unmatched(p, HMA_NPOS - 1), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_copy_unmatched(p, 1), HMA_OK);
    assert_int_equal(hma_plan_copy_unmatched(p, HMA_NPOS), HMA_OK); /* off again */
    assert_int_equal(hma_plan_copy_unmatched(p, 1), HMA_OK);
    assert_int_equal(hma_plan_set_flags(p, 2), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_set_flags(p, HMA_MERGE_ALLOW_NONFINITE), HMA_OK);
    assert_int_equal(hma_plan_set_simd(p, 9), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_set_simd(p, HMA_SIMD_SCALAR), HMA_OK);
    assert_int_equal(hma_plan_set_simd(p, HMA_SIMD_AUTO), HMA_OK);
    for (int l = 0; l < 3; l++)
        assert_int_equal(hma_plan_set_simd(p, l), hma_simd_available(l) ? HMA_OK : HMA_ERR_UNSUPPORTED);
    assert_int_equal(hma_simd_available(hma_simd_best()), 1);
    assert_string_equal(hma_simd_name(HMA_SIMD_SCALAR), "scalar");
    assert_string_equal(hma_simd_name(HMA_SIMD_AUTO), "auto");
    assert_null(hma_simd_name(5));
    hma_plan *q = NULL;
    assert_int_equal(hma_plan_create(&q, f->s, 1), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_create(NULL, f->s, 2), HMA_ERR_INVALID_ARGUMENT);
    hma_store *three[3] = {f->s[0], f->s[1], f->s[0]};
    assert_int_equal(hma_plan_create(&q, three, 3), HMA_OK);
    assert_int_equal(hma_plan_set_method(q, HMA_METHOD_SLERP), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_plan_set_ratio(q, 0.3), HMA_ERR_INVALID_ARGUMENT);
    double w[3];
    assert_int_equal(hma_plan_tensor_weights(q, 1, w, 3, NULL), HMA_OK);
    assert_true(w[0] == 1.0 / 3 && w[2] == 1.0 / 3);
    hma_plan_free(q);
    hma_plan_free(NULL);
}

/* The shipped toy pair: HMA with blocks:3 and ratios 0.2, 0.5, 0.8. */
static void test_toy_plan(void **state) {
    (void)state;
    char *pb = tu_toy_path("base.safetensors"), *pa = tu_toy_path("aligned.safetensors");
    hma_store *s[2] = {NULL, NULL};
    assert_int_equal(hma_store_open(&s[0], pb, 0), HMA_OK);
    assert_int_equal(hma_store_open(&s[1], pa, 0), HMA_OK);
    hma_plan *p = NULL;
    assert_int_equal(hma_plan_create(&p, s, 2), HMA_OK);
    assert_int_equal(hma_plan_layer_count(p), 8);
    assert_int_equal(hma_plan_tensor_count(p), 75);
    assert_int_equal(hma_plan_set_groups(p, "blocks:3"), HMA_OK);
    const double a[3] = {0.2, 0.5, 0.8};
    assert_int_equal(hma_plan_set_ratios(p, a, 3), HMA_OK);
    int seen[3] = {0, 0, 0};
    for (size_t i = 0; i < hma_plan_tensor_count(p); i++) {
        const char *n = hma_plan_tensor_name(p, i);
        double w[2];
        assert_int_equal(hma_plan_tensor_weights(p, i, w, 2, NULL), HMA_OK);
        long l = hma_plan_tensor_layer(p, i);
        if (l >= 0) {
            int g = (int)(l * 3 / 8);
            assert_int_equal(hma_plan_tensor_group(p, i), g);
            assert_true(w[1] == a[g]);
            seen[g]++;
        } else if (strcmp(n, "model.embed_tokens.weight") == 0) {
            assert_int_equal(hma_plan_tensor_group(p, i), 0);
            assert_true(w[1] == 0.2);
        } else {
            assert_true(strcmp(n, "model.norm.weight") == 0 || strcmp(n, "lm_head.weight") == 0);
            assert_int_equal(hma_plan_tensor_group(p, i), HMA_GROUP_MEAN);
            assert_true(fabs(w[1] - 0.5) < 1e-15);
        }
    }
    assert_int_equal(seen[0], 27); /* 3 layers x 9 tensors */
    assert_int_equal(seen[1], 27);
    assert_int_equal(seen[2], 18);
    hma_plan_free(p);
    hma_store_close(s[0]);
    hma_store_close(s[1]);
    free(pb);
    free(pa);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_families),
        cmocka_unit_test(test_embedding_names),
        cmocka_unit_test(test_gradient_eval),
        cmocka_unit_test_setup_teardown(test_defaults, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_blocks, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_split_layers_all, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_specs, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rules, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_weights_per_tensor, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_gradients, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_setters_errors, fx_setup, fx_teardown),
        cmocka_unit_test(test_toy_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
