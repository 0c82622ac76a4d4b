/* Concurrency: 8 threads make 10,000 one-tensor merges (whole tensors by
 * index or by name, and byte ranges) from one plan over the toy pair while
 * another thread keeps switching the plan's ratios among three known sets.
 * Every result must equal the serial merge for the weight generation the
 * call reports. Run under TSan by `make SAN=tsan test-concurrency`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "hma.h"
#include "testutil.h"

enum { THREADS = 8, OPS_PER_THREAD = 1250, SETS = 3, K = 3 };

static const double ratio_sets[SETS][K] = {{0.5, 0.5, 0.5}, {0.1, 0.6, 0.9}, {1.25, -0.2, 0.35}};

typedef struct shared {
    hma_plan *p;
    size_t rows;
    unsigned char **ref[SETS]; /* ref[s][row]: the serial merge with set s */
    uint64_t g0;               /* generation of set 0 at the start; set(g) = (g - g0) % SETS */
    atomic_int workers_left;
    atomic_int bad, errors, ops;
    atomic_int seen[SETS];
    char first_bad[256];
    atomic_flag bad_msg;
} shared;

typedef struct worker_arg {
    shared *s;
    unsigned id;
} worker_arg;

static uint64_t rnd(uint64_t *x) { /* xorshift64* */
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 0x2545F4914F6CDD1Dull;
}

static void report_bad(shared *s, const char *fmt, size_t row, uint64_t gen) {
    if (!atomic_flag_test_and_set(&s->bad_msg))
        snprintf(s->first_bad, sizeof s->first_bad, fmt, row, (unsigned long long)gen);
}

static void *worker(void *arg) {
    worker_arg *a = arg;
    shared *s = a->s;
    uint64_t x = 0x9E3779B97F4A7C15ull * (a->id + 1);
    size_t cap = 0;
    for (size_t i = 0; i < s->rows; i++) {
        size_t nb = (size_t)hma_plan_tensor_nbytes(s->p, i);
        if (nb > cap) cap = nb;
    }
    unsigned char *buf = malloc(cap);
    for (int op = 0; op < OPS_PER_THREAD; op++) {
        size_t row = (size_t)(rnd(&x) % s->rows);
        size_t nb = (size_t)hma_plan_tensor_nbytes(s->p, row);
        size_t es = hma_dtype_bits(hma_plan_tensor_dtype(s->p, row)) / 8;
        uint64_t off = 0, gen = 0;
        size_t len = nb;
        int kind = (int)(rnd(&x) % 3), rc;
        if (kind == 2) { /* an element-aligned byte range */
            size_t n = nb / es;
            size_t e0 = (size_t)(rnd(&x) % n), e1 = e0 + 1 + (size_t)(rnd(&x) % (n - e0));
            off = (uint64_t)e0 * es;
            len = (e1 - e0) * es;
        }
        if (kind == 1) rc = hma_plan_merge_tensor(s->p, hma_plan_tensor_name(s->p, row), off, buf, len, &gen);
        else rc = hma_plan_merge_tensor_at(s->p, row, off, buf, len, &gen);
        atomic_fetch_add(&s->ops, 1);
        if (rc != HMA_OK) {
            atomic_fetch_add(&s->errors, 1);
            report_bad(s, "row %zu: merge failed (generation %llu)", row, gen);
            continue;
        }
        if (gen < s->g0) {
            atomic_fetch_add(&s->bad, 1);
            report_bad(s, "row %zu: generation %llu older than the start", row, gen);
            continue;
        }
        int set = (int)((gen - s->g0) % SETS);
        atomic_fetch_add(&s->seen[set], 1);
        if (memcmp(buf, s->ref[set][row] + off, len) != 0) {
            atomic_fetch_add(&s->bad, 1);
            report_bad(s, "row %zu: bytes differ from the serial merge of generation %llu", row, gen);
        }
    }
    free(buf);
    atomic_fetch_sub(&s->workers_left, 1);
    return NULL;
}

static void concurrent_merges_equal_serial(void **state) {
    (void)state;
    char *pa = tu_toy_path("base.safetensors"), *pb = tu_toy_path("aligned.safetensors");
    hma_store *in[2];
    assert_int_equal(hma_store_open(&in[0], pa, 0), HMA_OK);
    assert_int_equal(hma_store_open(&in[1], pb, 0), HMA_OK);
    shared s;
    memset(&s, 0, sizeof s);
    atomic_flag_clear(&s.bad_msg);
    assert_int_equal(hma_plan_create(&s.p, in, 2), HMA_OK);
    assert_int_equal(hma_plan_set_groups(s.p, "blocks:3"), HMA_OK);
    assert_int_equal(hma_plan_group_count(s.p), K);
    s.rows = hma_plan_tensor_count(s.p);
    assert_true(s.rows > 10);
    /* Serial results, one set at a time. */
    for (int k = 0; k < SETS; k++) {
        assert_int_equal(hma_plan_set_ratios(s.p, ratio_sets[k], K), HMA_OK);
        s.ref[k] = calloc(s.rows, sizeof *s.ref[k]);
        for (size_t i = 0; i < s.rows; i++) {
            assert_int_equal(hma_plan_tensor_action(s.p, i), HMA_ACTION_MERGE);
            size_t nb = (size_t)hma_plan_tensor_nbytes(s.p, i);
            s.ref[k][i] = malloc(nb);
            assert_int_equal(hma_plan_merge_tensor_at(s.p, i, 0, s.ref[k][i], nb, NULL), HMA_OK);
        }
    }
    /* The sets really differ (on the middle block's tensors at least). */
    size_t probe = hma_plan_find(s.p, "model.layers.4.mlp.up_proj.weight");
    assert_true(probe != (size_t)-1);
    size_t pnb = (size_t)hma_plan_tensor_nbytes(s.p, probe);
    assert_memory_not_equal(s.ref[0][probe], s.ref[1][probe], pnb);
    assert_memory_not_equal(s.ref[1][probe], s.ref[2][probe], pnb);
    assert_int_equal(hma_plan_set_ratios(s.p, ratio_sets[0], K), HMA_OK);
    s.g0 = hma_plan_generation(s.p);
    atomic_store(&s.workers_left, THREADS);

    pthread_t th[THREADS];
    worker_arg args[THREADS];
    for (unsigned t = 0; t < THREADS; t++) {
        args[t].s = &s;
        args[t].id = t;
        assert_int_equal(pthread_create(&th[t], NULL, worker, &args[t]), 0);
    }
    /* This thread changes the weights: generation g0 + k holds set k % SETS. */
    uint64_t k = 0;
    while (atomic_load(&s.workers_left) > 0) {
        k++;
        assert_int_equal(hma_plan_set_ratios(s.p, ratio_sets[k % SETS], K), HMA_OK);
        assert_int_equal(hma_plan_generation(s.p), s.g0 + k);
        nanosleep(&(struct timespec){0, 100000}, NULL);
    }
    for (unsigned t = 0; t < THREADS; t++) pthread_join(th[t], NULL);

    if (atomic_load(&s.bad) || atomic_load(&s.errors))
        fail_msg("%d wrong result(s), %d error(s); first: %s", atomic_load(&s.bad), atomic_load(&s.errors), s.first_bad);
    assert_int_equal(atomic_load(&s.ops), THREADS * OPS_PER_THREAD);
    int sets_seen = 0;
    for (int i = 0; i < SETS; i++) sets_seen += atomic_load(&s.seen[i]) > 0;
    assert_true(k >= SETS);       /* the weights changed during the run */
    assert_int_equal(sets_seen, SETS); /* and the merges saw every set */
    print_message("%d merges on %d threads during %llu weight changes: all equal to the serial merges\n",
                  atomic_load(&s.ops), THREADS, (unsigned long long)k);

    for (int i = 0; i < SETS; i++) {
        for (size_t r = 0; r < s.rows; r++) free(s.ref[i][r]);
        free(s.ref[i]);
    }
    hma_plan_free(s.p);
    hma_store_close(in[0]);
    hma_store_close(in[1]);
    free(pa);
    free(pb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(concurrent_merges_equal_serial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
