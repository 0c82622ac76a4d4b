/* test_merge_exact.c - the shipped toy pair merged with HMA (blocks:3,
 * ratios 0.2 / 0.5 / 0.8) and with plain MA, compared bit for bit with an
 * independent float32 computation (PyTorch's (1-a)*x + a*y, rounded to BF16). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>
#include <cmocka.h>

#include "plan_fixture.h"

/* The ratio the paper's code gives a tensor under blocks:3 of L = 8 layers. */
static double toy_ratio(const char *name, const double a[3]) {
    const char *p = strstr(name, "model.layers.");
    if (p) {
        long l = strtol(p + 13, NULL, 10);
        return a[l * 3 / 8];
    }
    if (strcmp(name, "model.embed_tokens.weight") == 0) return a[0];
    return (a[0] + a[1] + a[2]) / 3; /* model.norm, lm_head: the mean ratio */
}

static void check_merge(const char *out, hma_store *base, hma_store *aligned, const double a[3]) {
    hma_store *o = NULL;
    assert_int_equal(hma_store_open(&o, out, 0), HMA_OK);
    assert_int_equal(hma_store_count(o), hma_store_count(base));
    for (size_t i = 0; i < hma_store_count(base); i++) {
        const hma_tensor *tb = hma_store_tensor(base, i);
        const char *name = hma_tensor_name(tb);
        const hma_tensor *ta = hma_store_find(aligned, name), *to = hma_store_find(o, name);
        assert_non_null(ta);
        assert_non_null(to);
        assert_int_equal(hma_tensor_dtype(to), HMA_DTYPE_BF16);
        size_t n = (size_t)hma_tensor_nelements(tb);
        assert_int_equal(hma_tensor_nelements(to), n);
        const uint16_t *x = hma_tensor_data(tb), *y = hma_tensor_data(ta), *z = hma_tensor_data(to);
        double r = toy_ratio(name, a);
        float w0 = (float)(1.0 - r), w1 = (float)r;
        for (size_t e = 0; e < n; e++) {
            volatile float p0 = w0 * fx_bf16_to_f32(x[e]), p1 = w1 * fx_bf16_to_f32(y[e]);
            volatile float s = p0 + p1;
            uint16_t want = fx_f32_to_bf16(s);
            if (z[e] != want) fail_msg("%s[%zu]: got %04x expected %04x (ratio %g)", name, e, z[e], want, r);
        }
    }
    hma_store_close(o);
}

static void test_toy_hma_and_ma(void **state) {
    (void)state;
    char *pb = tu_toy_path("base.safetensors"), *pa = tu_toy_path("aligned.safetensors");
    hma_store *s[2] = {NULL, NULL};
    assert_int_equal(hma_store_open(&s[0], pb, 0), HMA_OK);
    assert_int_equal(hma_store_open(&s[1], pa, 0), HMA_OK);
    hma_plan *p = NULL;
    assert_int_equal(hma_plan_create(&p, s, 2), HMA_OK);
    char *dir = tu_mkdtemp(), *out = tu_join(dir, "hma.safetensors");
    assert_int_equal(hma_plan_set_groups(p, "blocks:3"), HMA_OK);
    const double a[3] = {0.2, 0.5, 0.8};
    assert_int_equal(hma_plan_set_ratios(p, a, 3), HMA_OK);
    assert_int_equal(hma_plan_merge_to(p, out, 0), HMA_OK);
    check_merge(out, s[0], s[1], a);
    unlink(out);
    /* plain MA, a = 0.35 */
    assert_int_equal(hma_plan_set_groups(p, "all"), HMA_OK);
    assert_int_equal(hma_plan_set_ratio(p, 0.35), HMA_OK);
    assert_int_equal(hma_plan_merge_to(p, out, 0), HMA_OK);
    const double m[3] = {0.35, 0.35, 0.35};
    check_merge(out, s[0], s[1], m);
    unlink(out);
    tu_rmtree(dir);
    free(dir);
    free(out);
    hma_plan_free(p);
    hma_store_close(s[0]);
    hma_store_close(s[1]);
    free(pb);
    free(pa);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_toy_hma_and_ma),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
