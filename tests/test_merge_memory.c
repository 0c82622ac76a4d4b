/* test_merge_memory.c - a merge whose tensors are larger than the memory
 * budget keeps anonymous resident memory (RssAnon) under 64 MiB + 8 MiB
 * per thread: inputs are mapped, outputs streamed chunk by chunk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>
#include <cmocka.h>

#include "plan_fixture.h"

#define BIG ((uint64_t)48 << 20) /* elements: 96 MiB of BF16 per tensor */

static long rss_anon_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %ld kB", &v) == 1) break;
    if (f) fclose(f);
    return v;
}

static int write_big(const char *path, uint64_t seed) {
    hma_writer *w = NULL;
    const uint64_t shape[1] = {BIG}, small[1] = {1000};
    int rc = hma_writer_create(&w, path, 0);
    if (!rc) rc = hma_writer_add_tensor(w, "model.layers.0.mlp.up_proj.weight", HMA_DTYPE_BF16, 1, shape);
    if (!rc) rc = hma_writer_add_tensor(w, "model.norm.weight", HMA_DTYPE_F32, 1, small);
    if (!rc) rc = hma_writer_begin(w);
    size_t n = 1 << 19;
    uint16_t *buf = malloc(n * 2);
    uint64_t s = seed;
    for (uint64_t e = 0; !rc && e < BIG; e += n) {
        for (size_t i = 0; i < n; i++) buf[i] = fx_f32_to_bf16((float)fx_rand(&s, 0));
        rc = hma_writer_write(w, 0, e * 2, buf, n * 2);
    }
    float f[1000] = {0};
    if (!rc) rc = hma_writer_write(w, 1, 0, f, sizeof f);
    if (!rc) rc = hma_writer_commit(w);
    free(buf);
    hma_writer_free(w);
    return rc;
}

typedef struct peak {
    long max_kib;
    int calls;
} peak;

static int sample(void *user, uint64_t done, uint64_t total) {
    (void)done;
    (void)total;
    peak *p = user;
    long v = rss_anon_kib();
    if (v > p->max_kib) p->max_kib = v;
    p->calls++;
    return 0;
}

static void test_rss_anon_bounded(void **state) {
    (void)state;
    if (rss_anon_kib() < 0) skip();
    char *dir = tu_mkdtemp(), *a = tu_join(dir, "a.safetensors"), *b = tu_join(dir, "b.safetensors");
    char *out = tu_join(dir, "out.safetensors");
    assert_int_equal(write_big(a, 1), HMA_OK);
    assert_int_equal(write_big(b, 2), HMA_OK);
    hma_store *s[2] = {NULL, NULL};
    assert_int_equal(hma_store_open(&s[0], a, 0), HMA_OK);
    assert_int_equal(hma_store_open(&s[1], b, 0), HMA_OK);
    for (unsigned threads = 1; threads <= 2; threads++) {
        hma_plan *p = NULL;
        assert_int_equal(hma_plan_create(&p, s, 2), HMA_OK);
        assert_int_equal(hma_plan_set_threads(p, threads), HMA_OK);
        assert_int_equal(hma_plan_set_ratio(p, 0.4), HMA_OK);
        if (threads == 2) assert_int_equal(hma_plan_set_method(p, HMA_METHOD_SLERP), HMA_OK);
        peak pk = {rss_anon_kib(), 0};
        assert_int_equal(hma_plan_set_progress(p, sample, &pk), HMA_OK);
        assert_int_equal(hma_plan_merge_to(p, out, 0), HMA_OK);
        long limit = (64 + 8 * (long)threads) * 1024;
        printf("threads %u: peak RssAnon %ld KiB (limit %ld KiB), %d samples\n", threads, pk.max_kib, limit,
               pk.calls);
        assert_true(pk.calls > 10);
        assert_true(pk.max_kib < limit);
        unlink(out);
        hma_plan_free(p);
    }
    hma_store_close(s[0]);
    hma_store_close(s[1]);
    tu_rmtree(dir);
    free(dir);
    free(a);
    free(b);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rss_anon_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
