/* test_store_custom.c - internals of the store module: stores built on a
 * custom backend (hma__store_create_custom, used by delta packs) and the
 * open-input registry (src/registry.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "io/store.h"
#include "testutil.h"

typedef struct mem_ctx {
    unsigned char data[3][64];
    int *close_counter;
    int reads, datas;
} mem_ctx;

static int mem_read(void *ctx, size_t i, uint64_t off, void *buf, size_t len) {
    mem_ctx *m = ctx;
    m->reads++;
    memcpy(buf, m->data[i] + off, len);
    return HMA_OK;
}
static const void *mem_data(void *ctx, size_t i) {
    mem_ctx *m = ctx;
    m->datas++;
    return m->data[i];
}
static void mem_close(void *ctx) {
    mem_ctx *m = ctx;
    (*m->close_counter)++;
    free(m);
}

static mem_ctx *new_ctx(int *counter) {
    mem_ctx *m = calloc(1, sizeof *m);
    assert_non_null(m);
    m->close_counter = counter;
    for (int t = 0; t < 3; t++)
        for (int j = 0; j < 64; j++) m->data[t][j] = (unsigned char)(t * 100 + j);
    return m;
}

static const hma__store_backend be = {mem_read, mem_data, mem_close, NULL};

/* A backend whose decoding fails, as a corrupt pack's does. */
static const void *bad_data(void *ctx, size_t i) {
    (void)ctx;
    hma__fail(HMA_ERR_CORRUPT, "x.hmapack: tensor %zu: bad stream", i);
    return NULL;
}

static void test_custom_store(void **state) {
    (void)state;
    int closes = 0;
    uint64_t s0[2] = {4, 4}, s2[1] = {0};
    hma__tensor_decl decls[3] = {
        {"w.bf16", HMA_DTYPE_BF16, 2, s0}, {"scalar", HMA_DTYPE_F32, 0, NULL}, {"empty", HMA_DTYPE_U8, 1, s2}};
    const char *meta[] = {"format", "pt", "origin", "pack"};
    hma_store *st = NULL;
    mem_ctx *m = new_ctx(&closes);
    assert_int_equal(hma__store_create_custom(&st, "x.hmapack", decls, 3, meta, 2, &be, m), HMA_OK);
    assert_int_equal(hma_store_count(st), 3);
    assert_int_equal(hma_store_file_count(st), 1);
    assert_string_equal(hma_store_file_path(st, 0), "x.hmapack");
    assert_string_equal(hma_store_metadata(st, "origin"), "pack");
    assert_int_equal(hma_store_metadata_count(st), 2);
    for (size_t i = 0; i < 3; i++) {
        const hma_tensor *t = hma_store_tensor(st, i);
        assert_string_equal(hma_tensor_name(t), decls[i].name); /* decl order */
        assert_ptr_equal(hma_store_find(st, decls[i].name), t);
        assert_int_equal(hma_tensor_file(t), 0);
    }
    const hma_tensor *w = hma_store_find(st, "w.bf16");
    assert_int_equal(hma_tensor_nbytes(w), 32);
    assert_int_equal(hma_tensor_nelements(hma_store_find(st, "scalar")), 1);
    unsigned char buf[32];
    assert_int_equal(hma_store_read(st, w, 4, buf, 8), HMA_OK);
    for (int j = 0; j < 8; j++) assert_int_equal(buf[j], 4 + j);
    assert_int_equal(hma_store_read(st, w, 30, buf, 4), HMA_ERR_INVALID_ARGUMENT); /* checked before the backend */
    assert_int_equal(m->reads, 1);
    assert_ptr_equal(hma_tensor_data(w), m->data[0]);
    const hma_tensor *e = hma_store_find(st, "empty");
    assert_non_null(hma_tensor_data(e)); /* zero-size: non-NULL, backend not asked */
    assert_int_equal(m->datas, 1);
    hma_store_close(st);
    assert_int_equal(closes, 1);
}

static void test_custom_store_errors(void **state) {
    (void)state;
    int closes = 0;
    uint64_t sh[17] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    uint64_t big[2] = {UINT64_MAX / 2, 4};
    uint64_t odd[1] = {3};
    struct {
        hma__tensor_decl d[2];
        size_t n;
        int code;
    } cases[] = {
        {{{"a", HMA_DTYPE_U8, 1, sh}, {"a", HMA_DTYPE_U8, 1, sh}}, 2, HMA_ERR_BAD_NAME},
        {{{"", HMA_DTYPE_U8, 1, sh}}, 1, HMA_ERR_BAD_NAME},
        {{{NULL, HMA_DTYPE_U8, 1, sh}}, 1, HMA_ERR_BAD_NAME},
        {{{"a", (hma_dtype)99, 1, sh}}, 1, HMA_ERR_BAD_DTYPE},
        {{{"a", HMA_DTYPE_U8, 17, sh}}, 1, HMA_ERR_BAD_SHAPE},
        {{{"a", HMA_DTYPE_U8, 2, NULL}}, 1, HMA_ERR_BAD_SHAPE},
        {{{"a", HMA_DTYPE_U8, 2, big}}, 1, HMA_ERR_BAD_SHAPE},
        {{{"a", HMA_DTYPE_U64, 1, big}}, 1, HMA_ERR_OVERFLOW},
        {{{"a", HMA_DTYPE_F4, 1, odd}}, 1, HMA_ERR_SIZE_MISMATCH},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hma_store *st = (hma_store *)0x1;
        int before = closes;
        assert_int_equal(hma__store_create_custom(&st, "p", cases[i].d, cases[i].n, NULL, 0, &be, new_ctx(&closes)),
                         cases[i].code);
        assert_ptr_equal(st, (hma_store *)0x1);
        assert_int_equal(closes, before + 1); /* ctx closed on failure */
    }
    const char *badmeta[] = {"k", NULL};
    hma__tensor_decl one = {"a", HMA_DTYPE_U8, 1, odd};
    hma_store *st = NULL;
    assert_int_equal(hma__store_create_custom(&st, "p", &one, 1, badmeta, 1, &be, new_ctx(&closes)),
                     HMA_ERR_INVALID_ARGUMENT);
    hma__store_backend nob = {NULL, NULL, mem_close, NULL};
    int before = closes;
    assert_int_equal(hma__store_create_custom(&st, "p", &one, 1, NULL, 0, &nob, new_ctx(&closes)),
                     HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(closes, before + 1);
    /* no data callback: no zero-copy bytes (not an error, as in pread
     * mode), hma_store_read works */
    hma__store_backend readonly = {mem_read, NULL, mem_close, NULL};
    assert_int_equal(hma__store_create_custom(&st, NULL, &one, 1, NULL, 0, &readonly, new_ctx(&closes)), HMA_OK);
    assert_string_equal(hma_store_file_path(st, 0), "");
    assert_null(hma_tensor_data(hma_store_tensor(st, 0)));
    const void *dp = (const void *)&closes;
    assert_int_equal(hma_tensor_data_get(hma_store_tensor(st, 0), &dp), HMA_OK);
    assert_null(dp);
    hma_store_close(st);
    /* a failing data callback: the error is told apart from "no pointer" */
    hma__store_backend failing = {mem_read, bad_data, mem_close, NULL};
    assert_int_equal(hma__store_create_custom(&st, "x.hmapack", &one, 1, NULL, 0, &failing, new_ctx(&closes)), HMA_OK);
    dp = (const void *)&closes;
    assert_int_equal(hma_tensor_data_get(hma_store_tensor(st, 0), &dp), HMA_ERR_CORRUPT);
    assert_null(dp);
    assert_non_null(strstr(hma_last_error(), "bad stream"));
    assert_null(hma_tensor_data(hma_store_tensor(st, 0)));
    assert_int_equal(hma_last_error_code(), HMA_ERR_CORRUPT);
    hma_store_close(st);
    /* zero tensors */
    assert_int_equal(hma__store_create_custom(&st, "p", NULL, 0, NULL, 0, &be, new_ctx(&closes)), HMA_OK);
    assert_int_equal(hma_store_count(st), 0);
    assert_null(hma_store_find(st, "a"));
    hma_store_close(st);
}

/* A backend whose bytes are the caller's memory (g_big). */
static unsigned char *g_big;
static int big_read(void *ctx, size_t i, uint64_t off, void *buf, size_t len) {
    (void)ctx, (void)i;
    memcpy(buf, g_big + off, len);
    return HMA_OK;
}
static const void *big_data(void *ctx, size_t i) {
    (void)ctx, (void)i;
    return g_big;
}
static void big_close(void *ctx) { (void)ctx; }
static const hma__store_backend big_be = {big_read, big_data, big_close, NULL};

/* Is the page holding p mapped in this process (/proc/self/pagemap bit 63)? */
static int page_mapped(const void *p) {
    FILE *f = fopen("/proc/self/pagemap", "rb");
    if (!f) return -1;
    long ps = sysconf(_SC_PAGESIZE);
    uint64_t ent = 0;
    int ok = fseeko(f, (off_t)((uintptr_t)p / (uintptr_t)ps * 8u), SEEK_SET) == 0 && fread(&ent, 8, 1, f) == 1;
    fclose(f);
    return ok ? (int)(ent >> 63) : -1;
}

/* hma__tensor_release drops the page mappings of the whole pages inside a
 * mapped file tensor's range (the bytes read back the same), leaves the
 * pages at the range's ends, and touches nothing of a custom store (whose
 * bytes may be the caller's own memory) or of a store in pread mode. */
static void test_tensor_release(void **state) {
    (void)state;
    long ps = sysconf(_SC_PAGESIZE);
    enum { N = 65536 };
    unsigned char *data = malloc(N);
    assert_non_null(data);
    for (size_t j = 0; j < N; j++) data[j] = (unsigned char)(j * 7 + 3);
    char hdr[128];
    int hl = snprintf(hdr, sizeof hdr, "{\"t\":{\"dtype\":\"U8\",\"shape\":[%d],\"data_offsets\":[0,%d]}}", N, N);
    char *dir = tu_mkdtemp(), *path = tu_join(dir, "r.safetensors");
    assert_int_equal(tu_write_safetensors_raw(path, hdr, (size_t)hl, data, N), 0);
    hma_store *st;
    assert_int_equal(hma_store_open(&st, path, 0), HMA_OK);
    const hma_tensor *t = hma_store_find(st, "t");
    const unsigned char *p = hma_tensor_data(t);
    assert_non_null(p);
    assert_memory_equal(p, data, N); /* maps every page */
    if (page_mapped(p + N / 2) != 1) { /* no pagemap here: nothing to see */
        hma_store_close(st);
        tu_rmtree(dir);
        free(dir), free(path), free(data);
        skip();
    }
    const size_t off = 1000, len = 40000;
    hma__tensor_release(t, off, len);
    uintptr_t b = ((uintptr_t)(p + off) + (uintptr_t)ps - 1) / (uintptr_t)ps * (uintptr_t)ps;
    uintptr_t e = (uintptr_t)(p + off + len) / (uintptr_t)ps * (uintptr_t)ps;
    assert_true(e > b + (uintptr_t)ps);
    for (uintptr_t q = b; q < e; q += (uintptr_t)ps) assert_int_equal(page_mapped((const void *)q), 0);
    assert_int_equal(page_mapped((const void *)(b - 1)), 1); /* the partial pages at the ends stay */
    assert_int_equal(page_mapped((const void *)e), 1);
    assert_int_equal(page_mapped(p + N - 1), 1);
    assert_memory_equal(p, data, N); /* and everything reads back */
    hma__tensor_release(t, N - 10, 20);  /* past the end: ignored */
    hma__tensor_release(NULL, 0, 1);
    hma_store_close(st);
    /* pread mode: no mapping, nothing to do */
    assert_int_equal(hma_store_open(&st, path, HMA_OPEN_PREAD), HMA_OK);
    hma__tensor_release(hma_store_find(st, "t"), 0, N);
    hma_store_close(st);
    /* a custom store over the caller's memory (whole anonymous pages, which
     * MADV_DONTNEED would zero): untouched */
    unsigned char *mine = NULL;
    assert_int_equal(posix_memalign((void **)&mine, (size_t)ps, 4 * (size_t)ps), 0);
    for (size_t j = 0; j < 4 * (size_t)ps; j++) mine[j] = (unsigned char)(j % 251 + 1);
    g_big = mine;
    uint64_t s0[1] = {(uint64_t)(4 * ps)};
    hma__tensor_decl d[1] = {{"w", HMA_DTYPE_U8, 1, s0}};
    assert_int_equal(hma__store_create_custom(&st, "x.hmapack", d, 1, NULL, 0, &big_be, NULL), HMA_OK);
    assert_ptr_equal(hma_tensor_data(hma_store_find(st, "w")), mine);
    hma__tensor_release(hma_store_find(st, "w"), 0, 4 * (uint64_t)ps);
    for (size_t j = 0; j < 4 * (size_t)ps; j++) assert_int_equal(mine[j], j % 251 + 1);
    hma_store_close(st);
    free(mine);
    tu_rmtree(dir);
    free(dir), free(path), free(data);
}

static void test_registry(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    assert_non_null(dir);
    char *a = tu_join(dir, "a"), *b = tu_join(dir, "b"), *link = tu_join(dir, "link");
    assert_int_equal(tu_write_file(a, "x", 1), 0);
    assert_int_equal(tu_write_file(b, "y", 1), 0);
    assert_int_equal(symlink(a, link), 0);
    struct stat sa;
    assert_int_equal(stat(a, &sa), 0);
    unsigned long long dev = (unsigned long long)sa.st_dev, ino = (unsigned long long)sa.st_ino;
    assert_false(hma__registry_contains_path(a));
    assert_int_equal(hma__registry_add(a, dev, ino), HMA_OK);
    assert_int_equal(hma__registry_add(a, dev, ino), HMA_OK); /* second store on the same file */
    assert_true(hma__registry_contains_path(a));
    assert_true(hma__registry_contains_path(link)); /* same file, other name */
    assert_false(hma__registry_contains_path(b));
    assert_false(hma__registry_contains_path(NULL));
    char *missing = tu_join(dir, "missing");
    assert_false(hma__registry_contains_path(missing));
    hma__registry_remove(dev, ino);
    assert_true(hma__registry_contains_path(a)); /* one holder left */
    hma__registry_remove(dev, ino);
    assert_false(hma__registry_contains_path(a));
    hma__registry_remove(dev, ino); /* removing an absent entry is harmless */
    tu_rmtree(dir);
    free(missing);
    free(a);
    free(b);
    free(link);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_custom_store),
        cmocka_unit_test(test_custom_store_errors),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_tensor_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
