/* test_store.c - the tensor store through the public API: the toy pair,
 * ordering and lookup, mmap vs pread equality, hma_store_read ranges,
 * metadata, folders / index files / shards (every index error), a file
 * shrinking under a pread store, and many threads reading one store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hma.h"
#include "testutil.h"


/* ---- building test files --------------------------------------------------- */

typedef struct spec {
    const char *name;  /* JSON-escaped as written into the header */
    const char *dtype;
    const char *shape; /* JSON list text */
    size_t nbytes;
} spec;

static unsigned char pattern(size_t t, size_t j) { return (unsigned char)(t * 31u + j * 7u + 1u); }

/* Writes the tensors laid out in `specs` order (offsets ascending), but the
 * header lists them in reverse, so that header order != data order. Data
 * bytes of tensor t are pattern(t, j). `meta` is JSON object text or NULL;
 * `pad` spaces are appended to the header. */
static void build_file(const char *path, const char *meta, const spec *specs, size_t n, size_t pad) {
    char hdr[8192];
    size_t h = (size_t)snprintf(hdr, sizeof hdr, "{");
    size_t total = 0;
    size_t *off = calloc(n + 1, sizeof *off);
    assert_non_null(off);
    for (size_t i = 0; i < n; i++) {
        off[i] = total;
        total += specs[i].nbytes;
    }
    if (meta) h += (size_t)snprintf(hdr + h, sizeof hdr - h, "\"__metadata__\":%s%s", meta, n ? "," : "");
    for (size_t k = 0; k < n; k++) {
        size_t i = n - 1 - k;
        h += (size_t)snprintf(hdr + h, sizeof hdr - h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                              k ? "," : "", specs[i].name, specs[i].dtype, specs[i].shape, off[i],
                              off[i] + specs[i].nbytes);
    }
    h += (size_t)snprintf(hdr + h, sizeof hdr - h, "}");
    for (size_t i = 0; i < pad; i++) hdr[h++] = ' ';
    assert_true(h < sizeof hdr);
    unsigned char *data = malloc(total ? total : 1);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < specs[i].nbytes; j++) data[off[i] + j] = pattern(i, j);
    assert_int_equal(tu_write_safetensors_raw(path, hdr, h, data, total), 0);
    free(data);
    free(off);
}

static char *dir_file(const char *dir, const char *name) {
    char *p = tu_join(dir, name);
    assert_non_null(p);
    return p;
}

static char *make_subdir(const char *name) {
    char *d = dir_file(tu_dir, name);
    assert_int_equal(mkdir(d, 0700), 0);
    return d;
}

static void write_text(const char *dir, const char *name, const char *text) {
    char *p = dir_file(dir, name);
    assert_int_equal(tu_write_file(p, text, strlen(text)), 0);
    free(p);
}

/* ---- the toy pair ------------------------------------------------------------- */

static void check_toy(const char *file, unsigned flags) {
    char *path = tu_toy_path(file);
    hma_store *st = NULL;
    int rc = hma_store_open(&st, path, flags);
    if (rc) print_error("%s\n", hma_last_error());
    assert_int_equal(rc, HMA_OK);
    assert_int_equal(hma_store_count(st), 75);
    assert_int_equal(hma_store_file_count(st), 1);
    assert_string_equal(hma_store_file_path(st, 0), path);
    assert_null(hma_store_file_path(st, 1));
    uint64_t params = 0, bytes = 0;
    for (size_t i = 0; i < hma_store_count(st); i++) {
        const hma_tensor *t = hma_store_tensor(st, i);
        assert_non_null(t);
        assert_int_equal(hma_tensor_dtype(t), HMA_DTYPE_BF16);
        assert_int_equal(hma_tensor_index(t), i);
        assert_int_equal(hma_tensor_file(t), 0);
        assert_ptr_equal(hma_store_find(st, hma_tensor_name(t)), t);
        uint64_t ne = 1;
        for (unsigned k = 0; k < hma_tensor_ndim(t); k++) ne *= hma_tensor_shape(t)[k];
        assert_int_equal(hma_tensor_nelements(t), ne);
        assert_int_equal(hma_tensor_nbytes(t), 2 * ne);
        params += ne;
        bytes += hma_tensor_nbytes(t);
    }
    assert_null(hma_store_tensor(st, 75));
    assert_int_equal(params, 4854016);
    assert_int_equal(bytes, 2 * 4854016);
    assert_string_equal(hma_store_metadata(st, "format"), "pt");
    assert_int_equal(hma_store_metadata_count(st), 1);

    /* names and shapes from the README */
    struct { const char *name; unsigned ndim; uint64_t d0, d1; } want[] = {
        {"model.embed_tokens.weight", 2, 256, 256}, {"lm_head.weight", 2, 256, 256}, {"model.norm.weight", 1, 256, 0},
    };
    for (size_t i = 0; i < 3; i++) {
        const hma_tensor *t = hma_store_find(st, want[i].name);
        assert_non_null(t);
        assert_int_equal(hma_tensor_ndim(t), want[i].ndim);
        assert_int_equal(hma_tensor_shape(t)[0], want[i].d0);
        if (want[i].ndim == 2) assert_int_equal(hma_tensor_shape(t)[1], want[i].d1);
    }
    static const char *const proj[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                       "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    static const uint64_t rows[] = {256, 128, 128, 256, 512, 512, 256};
    static const uint64_t cols[] = {256, 256, 256, 256, 256, 256, 512};
    for (int l = 0; l < 8; l++) {
        char name[128];
        for (int p = 0; p < 7; p++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, proj[p]);
            const hma_tensor *t = hma_store_find(st, name);
            assert_non_null(t);
            assert_int_equal(hma_tensor_ndim(t), 2);
            assert_int_equal(hma_tensor_shape(t)[0], rows[p]);
            assert_int_equal(hma_tensor_shape(t)[1], cols[p]);
        }
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        assert_non_null(hma_store_find(st, name));
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        assert_non_null(hma_store_find(st, name));
    }
    assert_null(hma_store_find(st, "model.layers.8.mlp.up_proj.weight"));
    assert_null(hma_store_find(st, ""));
    assert_null(hma_store_find(st, NULL));
    hma_store_close(st);
    free(path);
}

static void test_toy_pair(void **state) {
    (void)state;
    check_toy("base.safetensors", 0);
    check_toy("aligned.safetensors", 0);
    check_toy("base.safetensors", HMA_OPEN_PREAD);
    check_toy("aligned.safetensors", HMA_OPEN_PREAD);
}

/* Tensors come in data-offset order and their bytes are the file's bytes:
 * checked against the raw file, independently of the store's offsets. */
static void test_toy_bytes_mmap_vs_pread(void **state) {
    (void)state;
    char *path = tu_toy_path("aligned.safetensors");
    size_t len = 0;
    unsigned char *raw = tu_read_file(path, &len);
    assert_non_null(raw);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | raw[i];
    hma_store *m = NULL, *p = NULL;
    assert_int_equal(hma_store_open(&m, path, 0), HMA_OK);
    assert_int_equal(hma_store_open(&p, path, HMA_OPEN_PREAD), HMA_OK);
    assert_int_equal(hma_store_count(m), hma_store_count(p));
    size_t pos = (size_t)(8 + hl);
    const unsigned char *prev = NULL;
    unsigned char *buf = malloc(1 << 20);
    assert_non_null(buf);
    for (size_t i = 0; i < hma_store_count(m); i++) {
        const hma_tensor *tm = hma_store_tensor(m, i), *tp = hma_store_tensor(p, i);
        assert_string_equal(hma_tensor_name(tm), hma_tensor_name(tp));
        size_t nb = (size_t)hma_tensor_nbytes(tm);
        const unsigned char *d = hma_tensor_data(tm);
        assert_non_null(d);
        assert_true(prev == NULL || d > prev);
        prev = d;
        assert_null(hma_tensor_data(tp)); /* pread mode: no pointer */
        const void *dg = NULL;
        assert_int_equal(hma_tensor_data_get(tm, &dg), HMA_OK);
        assert_ptr_equal(dg, d);
        dg = buf;
        assert_int_equal(hma_tensor_data_get(tp, &dg), HMA_OK); /* no pointer, and not an error */
        assert_null(dg);
        assert_true(pos + nb <= len);
        assert_memory_equal(d, raw + pos, nb);
        memset(buf, 0, nb);
        assert_int_equal(hma_store_read(p, tp, 0, buf, nb), HMA_OK);
        assert_memory_equal(buf, raw + pos, nb);
        memset(buf, 0, nb);
        assert_int_equal(hma_store_read(m, tm, 0, buf, nb), HMA_OK);
        assert_memory_equal(buf, raw + pos, nb);
        pos += nb;
    }
    assert_int_equal(pos, len);
    free(buf);
    hma_store_close(m);
    hma_store_close(p);
    free(raw);
    free(path);
}

/* ---- hma_store_read ranges and bounds --------------------------------------------- */

static void test_read_ranges(void **state) {
    (void)state;
    char *path = dir_file(tu_dir, "ranges.safetensors");
    const spec specs[] = {{"a", "U8", "[100]", 100}, {"b", "F32", "[3,5]", 60}, {"e", "F16", "[0,4]", 0}};
    build_file(path, NULL, specs, 3, 0);
    for (int mode = 0; mode < 2; mode++) {
        hma_store *st = NULL, *other = NULL;
        assert_int_equal(hma_store_open(&st, path, mode ? HMA_OPEN_PREAD : 0), HMA_OK);
        assert_int_equal(hma_store_open(&other, path, 0), HMA_OK);
        const hma_tensor *a = hma_store_find(st, "a"), *b = hma_store_find(st, "b"), *e = hma_store_find(st, "e");
        assert_non_null(a);
        assert_non_null(b);
        assert_non_null(e);
        unsigned char buf[128];
        for (size_t off = 0; off <= 60; off += 7) {
            for (size_t n = 0; off + n <= 60; n += 13) {
                memset(buf, 0xEE, sizeof buf);
                assert_int_equal(hma_store_read(st, b, off, buf, n), HMA_OK);
                for (size_t j = 0; j < n; j++) assert_int_equal(buf[j], pattern(1, off + j));
                assert_int_equal(buf[n], 0xEE); /* nothing written past len */
            }
        }
        assert_int_equal(hma_store_read(st, a, 0, buf, 100), HMA_OK);
        for (size_t j = 0; j < 100; j++) assert_int_equal(buf[j], pattern(0, j));
        /* bounds */
        assert_int_equal(hma_store_read(st, b, 0, buf, 61), HMA_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(hma_last_error(), "'b'"));
        assert_int_equal(hma_store_read(st, b, 60, buf, 1), HMA_ERR_INVALID_ARGUMENT);
        assert_int_equal(hma_store_read(st, b, 61, buf, 0), HMA_ERR_INVALID_ARGUMENT);
        assert_int_equal(hma_store_read(st, b, UINT64_MAX, buf, 2), HMA_ERR_INVALID_ARGUMENT);
        assert_int_equal(hma_store_read(st, b, 60, buf, 0), HMA_OK);
        assert_int_equal(hma_store_read(st, b, 0, NULL, 0), HMA_OK);
        assert_int_equal(hma_store_read(st, b, 0, NULL, 4), HMA_ERR_INVALID_ARGUMENT);
        assert_int_equal(hma_store_read(NULL, b, 0, buf, 4), HMA_ERR_INVALID_ARGUMENT);
        assert_int_equal(hma_store_read(st, NULL, 0, buf, 4), HMA_ERR_INVALID_ARGUMENT);
        assert_int_equal(hma_store_read(other, b, 0, buf, 4), HMA_ERR_INVALID_ARGUMENT); /* foreign tensor */
        /* zero-size tensor */
        assert_int_equal(hma_tensor_nbytes(e), 0);
        assert_int_equal(hma_tensor_nelements(e), 0);
        assert_int_equal(hma_store_read(st, e, 0, buf, 0), HMA_OK);
        assert_int_equal(hma_store_read(st, e, 0, buf, 1), HMA_ERR_INVALID_ARGUMENT);
        if (mode == 0) assert_non_null(hma_tensor_data(e));
        const void *dg = buf;
        assert_int_equal(hma_tensor_data_get(e, &dg), HMA_OK);
        if (mode == 0) assert_non_null(dg);
        else assert_null(dg);
        assert_int_equal(hma_tensor_data_get(NULL, &dg), HMA_ERR_INVALID_ARGUMENT);
        assert_null(dg);
        assert_int_equal(hma_tensor_data_get(b, NULL), HMA_ERR_INVALID_ARGUMENT);
        hma_store_close(other);
        hma_store_close(st);
    }
    free(path);
}

/* ---- metadata ---------------------------------------------------------------------- */

static void test_metadata(void **state) {
    (void)state;
    char *path = dir_file(tu_dir, "meta.safetensors");
    const spec specs[] = {{"w", "BF16", "[2]", 4}};
    build_file(path, "{\"zeta\":\"1\",\"alpha\":\"\\u00e9t\\u00e9\",\"empty\":\"\",\"mid\":\"x\\ny\"}", specs, 1, 5);
    hma_store *st = NULL;
    assert_int_equal(hma_store_open(&st, path, 0), HMA_OK);
    assert_int_equal(hma_store_metadata_count(st), 4);
    const char *k = NULL, *v = NULL;
    const char *keys[] = {"zeta", "alpha", "empty", "mid"};
    const char *vals[] = {"1", "\xc3\xa9t\xc3\xa9", "", "x\ny"};
    for (size_t i = 0; i < 4; i++) { /* file order, not sorted */
        assert_int_equal(hma_store_metadata_at(st, i, &k, &v), HMA_OK);
        assert_string_equal(k, keys[i]);
        assert_string_equal(v, vals[i]);
        assert_string_equal(hma_store_metadata(st, keys[i]), vals[i]);
    }
    k = v = NULL;
    assert_int_equal(hma_store_metadata_at(st, 4, &k, &v), HMA_ERR_INVALID_ARGUMENT);
    assert_null(k);
    assert_null(v);
    assert_null(hma_store_metadata(st, "missing"));
    assert_null(hma_store_metadata(st, NULL));
    hma_store_close(st);
    /* NULL store */
    assert_int_equal(hma_store_metadata_count(NULL), 0);
    assert_null(hma_store_metadata(NULL, "format"));
    assert_int_equal(hma_store_count(NULL), 0);
    assert_null(hma_store_tensor(NULL, 0));
    assert_int_equal(hma_store_file_count(NULL), 0);
    hma_store_close(NULL);
    free(path);
}

/* ---- edge cases that must be accepted ------------------------------------------------ */

static void test_valid_edges(void **state) {
    (void)state;
    char *path = dir_file(tu_dir, "edge.safetensors");
    hma_store *st = NULL;

    /* zero tensors, with and without metadata / padding */
    build_file(path, NULL, NULL, 0, 0);
    assert_int_equal(hma_store_open(&st, path, 0), HMA_OK);
    assert_int_equal(hma_store_count(st), 0);
    assert_null(hma_store_find(st, "x"));
    hma_store_close(st);
    build_file(path, "{\"format\":\"pt\"}", NULL, 0, 7);
    assert_int_equal(hma_store_open(&st, path, HMA_OPEN_PREAD), HMA_OK);
    assert_int_equal(hma_store_count(st), 0);
    assert_string_equal(hma_store_metadata(st, "format"), "pt");
    hma_store_close(st);

    /* whitespace of every JSON kind after the header */
    const char *h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}\n\t\r  ";
    assert_int_equal(tu_write_safetensors_raw(path, h, strlen(h), "x", 1), 0);
    assert_int_equal(hma_store_open(&st, path, 0), HMA_OK);
    hma_store_close(st);

    /* zero-size tensors sharing offsets (start, middle, end), a scalar,
     * sub-byte dtypes filling whole bytes, and UTF-8 / escaped names */
    const spec specs[] = {
        {"z0", "F32", "[0]", 0},
        {"scalar", "F64", "[]", 8},
        {"z1", "BF16", "[4,0,2]", 0},
        {"z2", "I8", "[0]", 0},
        {"f4", "F4", "[2,3]", 3},
        {"f6", "F6_E3M2", "[4]", 3},
        {"caf\\u00e9 \\ud83d\\ude00", "U8", "[2]", 2},
        {"quote\\\"slash\\\\", "BOOL", "[1]", 1},
        {"zend", "C64", "[0]", 0},
    };
    build_file(path, NULL, specs, sizeof specs / sizeof specs[0], 3);
    for (int mode = 0; mode < 2; mode++) {
        assert_int_equal(hma_store_open(&st, path, mode ? HMA_OPEN_PREAD : 0), HMA_OK);
        assert_int_equal(hma_store_count(st), 9);
        /* ties between empty tensors at one offset are broken by name,
         * and empty tensors come before the non-empty one there */
        const char *order[] = {"z0", "scalar", "z1", "z2", "f4", "f6", "caf\xc3\xa9 \xf0\x9f\x98\x80", "quote\"slash\\", "zend"};
        for (size_t i = 0; i < 9; i++) assert_string_equal(hma_tensor_name(hma_store_tensor(st, i)), order[i]);
        const hma_tensor *s = hma_store_find(st, "scalar");
        assert_int_equal(hma_tensor_ndim(s), 0);
        assert_non_null(hma_tensor_shape(s));
        assert_int_equal(hma_tensor_nelements(s), 1);
        assert_int_equal(hma_tensor_nbytes(s), 8);
        const hma_tensor *z1 = hma_store_find(st, "z1");
        assert_int_equal(hma_tensor_ndim(z1), 3);
        assert_int_equal(hma_tensor_shape(z1)[2], 2);
        assert_int_equal(hma_tensor_nelements(z1), 0);
        assert_int_equal(hma_tensor_nbytes(hma_store_find(st, "f4")), 3);
        assert_int_equal(hma_tensor_nelements(hma_store_find(st, "f6")), 4);
        assert_non_null(hma_store_find(st, "caf\xc3\xa9 \xf0\x9f\x98\x80"));
        assert_int_equal(hma_tensor_dtype(hma_store_find(st, "zend")), HMA_DTYPE_C64);
        if (mode == 0) assert_non_null(hma_tensor_data(hma_store_find(st, "zend")));
        hma_store_close(st);
    }

    /* all 22 dtypes */
    spec all[HMA_DTYPE_COUNT];
    char shapes[HMA_DTYPE_COUNT][16], names[HMA_DTYPE_COUNT][16];
    for (int d = 0; d < HMA_DTYPE_COUNT; d++) {
        snprintf(names[d], sizeof names[d], "t%d", d);
        strcpy(shapes[d], "[8]"); /* 8 elements: whole bytes for 4- and 6-bit types */
        all[d].name = names[d];
        all[d].dtype = hma_dtype_name(d);
        all[d].shape = shapes[d];
        all[d].nbytes = hma_dtype_bits(d); /* 8 elements x bits / 8 */
    }
    build_file(path, NULL, all, HMA_DTYPE_COUNT, 0);
    assert_int_equal(hma_store_open(&st, path, 0), HMA_OK);
    assert_int_equal(hma_store_count(st), HMA_DTYPE_COUNT);
    for (int d = 0; d < HMA_DTYPE_COUNT; d++) {
        const hma_tensor *t = hma_store_tensor(st, (size_t)d);
        assert_string_equal(hma_tensor_name(t), names[d]);
        assert_int_equal(hma_tensor_dtype(t), d);
        assert_int_equal(hma_tensor_nbytes(t), hma_dtype_bits(d));
    }
    hma_store_close(st);
    free(path);
}

/* Many tensors: the hash table finds every one (and no impostor). */
static void test_many_tensors_lookup(void **state) {
    (void)state;
    enum { N = 3000 };
    size_t cap = (size_t)N * 96 + 64, h = 0;
    char *hdr = malloc(cap);
    assert_non_null(hdr);
    h += (size_t)snprintf(hdr + h, cap - h, "{");
    for (int i = 0; i < N; i++)
        h += (size_t)snprintf(hdr + h, cap - h, "%s\"model.layers.%d.w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                              i ? "," : "", i, N - 1 - i, N - i);
    h += (size_t)snprintf(hdr + h, cap - h, "}");
    unsigned char *data = malloc(N);
    assert_non_null(data);
    for (int i = 0; i < N; i++) data[N - 1 - i] = (unsigned char)i;
    char *path = dir_file(tu_dir, "many.safetensors");
    assert_int_equal(tu_write_safetensors_raw(path, hdr, h, data, N), 0);
    hma_store *st = NULL;
    assert_int_equal(hma_store_open(&st, path, 0), HMA_OK);
    assert_int_equal(hma_store_count(st), N);
    char name[64];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "model.layers.%d.w", i);
        const hma_tensor *t = hma_store_find(st, name);
        assert_non_null(t);
        assert_string_equal(hma_tensor_name(t), name);
        assert_int_equal(hma_tensor_index(t), (size_t)(N - 1 - i)); /* offset order */
        assert_int_equal(*(const unsigned char *)hma_tensor_data(t), (unsigned char)i);
        snprintf(name, sizeof name, "model.layers.%d.w ", i);
        assert_null(hma_store_find(st, name));
    }
    hma_store_close(st);
    free(path);
    free(data);
    free(hdr);
}

/* ---- folders, index files, shards ---------------------------------------------------- */

static const spec shard_a[] = {{"x.1", "F32", "[2]", 8}, {"x.0", "U8", "[3]", 3}};
static const spec shard_b[] = {{"y", "I16", "[2,2]", 8}};

static void make_sharded(const char *dir, const char *index_text) {
    char *a = dir_file(dir, "model-00001-of-00002.safetensors");
    char *b = dir_file(dir, "model-00002-of-00002.safetensors");
    build_file(a, "{\"format\":\"pt\",\"shard\":\"1\"}", shard_a, 2, 0);
    build_file(b, "{\"format\":\"pt\",\"shard\":\"2\"}", shard_b, 1, 0);
    write_text(dir, "model.safetensors.index.json", index_text);
    free(a);
    free(b);
}

#define GOOD_INDEX                                                                                        \
    "{\"metadata\":{\"total_size\":12345},\"weight_map\":{\"y\":\"model-00002-of-00002.safetensors\","   \
    "\"x.0\":\"model-00001-of-00002.safetensors\",\"x.1\":\"model-00001-of-00002.safetensors\"}}"

static void test_folder_single(void **state) {
    (void)state;
    char *d = make_subdir("single");
    char *p = dir_file(d, "model.safetensors");
    build_file(p, "{\"format\":\"pt\"}", shard_a, 2, 0);
    hma_store *st = NULL;
    assert_int_equal(hma_store_open(&st, d, 0), HMA_OK);
    assert_int_equal(hma_store_count(st), 2);
    assert_string_equal(hma_store_file_path(st, 0), p);
    hma_store_close(st);
    /* a trailing slash on the folder gives the same path */
    char *ds = malloc(strlen(d) + 2);
    assert_non_null(ds);
    sprintf(ds, "%s/", d);
    assert_int_equal(hma_store_open(&st, ds, HMA_OPEN_PREAD), HMA_OK);
    assert_string_equal(hma_store_file_path(st, 0), p);
    hma_store_close(st);
    /* an empty folder */
    unlink(p);
    assert_int_equal(hma_store_open(&st, d, 0), HMA_ERR_NOT_FOUND);
    assert_non_null(strstr(hma_last_error(), d));
    free(ds);
    free(p);
    free(d);
}

static void test_sharded(void **state) {
    (void)state;
    char *d = make_subdir("sharded");
    make_sharded(d, GOOD_INDEX);
    /* model.safetensors next to the index: the index is preferred */
    char *single = dir_file(d, "model.safetensors");
    build_file(single, NULL, shard_b, 1, 0);
    char *idx = dir_file(d, "model.safetensors.index.json");
    for (int how = 0; how < 3; how++) {
        hma_store *st = NULL;
        const char *open_path = how == 0 ? d : idx;
        int rc = hma_store_open(&st, open_path, how == 2 ? HMA_OPEN_PREAD : 0);
        if (rc) print_error("%s\n", hma_last_error());
        assert_int_equal(rc, HMA_OK);
        assert_int_equal(hma_store_file_count(st), 2);
        char *pa = dir_file(d, "model-00001-of-00002.safetensors");
        char *pb = dir_file(d, "model-00002-of-00002.safetensors");
        assert_string_equal(hma_store_file_path(st, 0), pa);
        assert_string_equal(hma_store_file_path(st, 1), pb);
        free(pa);
        free(pb);
        /* shards by name, then data offset */
        assert_int_equal(hma_store_count(st), 3);
        const char *order[] = {"x.1", "x.0", "y"};
        const size_t files[] = {0, 0, 1};
        for (size_t i = 0; i < 3; i++) {
            const hma_tensor *t = hma_store_tensor(st, i);
            assert_string_equal(hma_tensor_name(t), order[i]);
            assert_int_equal(hma_tensor_file(t), files[i]);
            assert_ptr_equal(hma_store_find(st, order[i]), t);
        }
        unsigned char buf[8];
        assert_int_equal(hma_store_read(st, hma_store_find(st, "y"), 0, buf, 8), HMA_OK);
        for (size_t j = 0; j < 8; j++) assert_int_equal(buf[j], pattern(0, j));
        assert_int_equal(hma_store_read(st, hma_store_find(st, "x.0"), 1, buf, 2), HMA_OK);
        assert_int_equal(buf[0], pattern(1, 1));
        /* metadata comes from the first shard; total_size (wrong here) is ignored */
        assert_string_equal(hma_store_metadata(st, "shard"), "1");
        assert_int_equal(hma_store_metadata_count(st), 2);
        hma_store_close(st);
    }
    free(idx);
    free(single);
    free(d);
}

typedef struct icase {
    const char *label;
    const char *index;
    int code;
} icase;

#define S1 "\"model-00001-of-00002.safetensors\""
#define S2 "\"model-00002-of-00002.safetensors\""

static const icase index_cases[] = {
    {"index not JSON", "{\"weight_map\":", HMA_ERR_JSON_SYNTAX},
    {"index is a list", "[]", HMA_ERR_BAD_INDEX},
    {"no weight_map", "{\"metadata\":{}}", HMA_ERR_BAD_INDEX},
    {"weight_map a list", "{\"weight_map\":[]}", HMA_ERR_BAD_INDEX},
    {"weight_map empty", "{\"weight_map\":{}}", HMA_ERR_BAD_INDEX},
    {"shard not a string", "{\"weight_map\":{\"y\":2}}", HMA_ERR_BAD_INDEX},
    {"metadata not an object", "{\"metadata\":1,\"weight_map\":{\"y\":" S2 "}}", HMA_ERR_BAD_INDEX},
    {"duplicate tensor in weight_map", "{\"weight_map\":{\"y\":" S2 ",\"y\":" S2 "}}", HMA_ERR_DUPLICATE_KEY},
    {"empty tensor name", "{\"weight_map\":{\"\":" S2 "}}", HMA_ERR_BAD_NAME},
    {"absolute shard", "{\"weight_map\":{\"y\":\"/etc/passwd\"}}", HMA_ERR_BAD_SHARD_PATH},
    {"dot-dot shard", "{\"weight_map\":{\"y\":\"../sharded/model-00002-of-00002.safetensors\"}}", HMA_ERR_BAD_SHARD_PATH},
    {"bare dot-dot", "{\"weight_map\":{\"y\":\"..\"}}", HMA_ERR_BAD_SHARD_PATH},
    {"subfolder shard", "{\"weight_map\":{\"y\":\"sub/model.safetensors\"}}", HMA_ERR_BAD_SHARD_PATH},
    {"empty shard", "{\"weight_map\":{\"y\":\"\"}}", HMA_ERR_BAD_SHARD_PATH},
    {"NUL in shard", "{\"weight_map\":{\"y\":\"a\\u0000b\"}}", HMA_ERR_BAD_SHARD_PATH},
    {"missing shard file", "{\"weight_map\":{\"y\":\"model-00003-of-00003.safetensors\"}}", HMA_ERR_NOT_FOUND},
    {"index lists a tensor the shard lacks",
     "{\"weight_map\":{\"y\":" S2 ",\"x.0\":" S1 ",\"x.1\":" S1 ",\"ghost\":" S2 "}}", HMA_ERR_INDEX_MISMATCH},
    {"shard has a tensor not in the index", "{\"weight_map\":{\"y\":" S2 ",\"x.0\":" S1 "}}", HMA_ERR_INDEX_MISMATCH},
    {"tensor mapped to the wrong shard", "{\"weight_map\":{\"y\":" S1 ",\"x.0\":" S1 ",\"x.1\":" S1 "}}",
     HMA_ERR_INDEX_MISMATCH},
    {"index omits a shard", "{\"weight_map\":{\"x.0\":" S1 ",\"x.1\":" S1 "}}", HMA_OK},
};

static void test_index_errors(void **state) {
    (void)state;
    char *d = make_subdir("badindex");
    for (size_t i = 0; i < sizeof index_cases / sizeof index_cases[0]; i++) {
        const icase *c = &index_cases[i];
        make_sharded(d, c->index);
        for (int mode = 0; mode < 2; mode++) {
            hma_store *st = NULL;
            int rc = hma_store_open(&st, d, mode ? HMA_OPEN_PREAD : 0);
            if (rc != c->code) print_error("case '%s': got %d: %s\n", c->label, rc, hma_last_error());
            assert_int_equal(rc, c->code);
            if (rc) {
                assert_null(st);
                assert_non_null(strstr(hma_last_error(), d)); /* names the index or the shard */
            } else {
                assert_int_equal(hma_store_count(st), 2);
                assert_int_equal(hma_store_file_count(st), 1);
                hma_store_close(st);
            }
        }
    }
    /* a tensor present in two shards */
    char *b = dir_file(d, "model-00002-of-00002.safetensors");
    const spec dup[] = {{"y", "I16", "[2,2]", 8}, {"x.0", "U8", "[3]", 3}};
    make_sharded(d, GOOD_INDEX);
    build_file(b, NULL, dup, 2, 0);
    hma_store *st = NULL;
    assert_int_equal(hma_store_open(&st, d, 0), HMA_ERR_INDEX_MISMATCH);
    assert_non_null(strstr(hma_last_error(), "x.0"));
    /* a malformed shard reports its own code and path */
    const char *bad = "{\"y\":{\"dtype\":\"I16\",\"shape\":[2,2],\"data_offsets\":[0,4]}}";
    assert_int_equal(tu_write_safetensors_raw(b, bad, strlen(bad), "1234", 4), 0);
    assert_int_equal(hma_store_open(&st, d, 0), HMA_ERR_SIZE_MISMATCH);
    assert_non_null(strstr(hma_last_error(), b));
    free(b);
    free(d);
}

/* ---- a pread store whose file shrinks ------------------------------------------------- */

static void test_pread_truncated_after_open(void **state) {
    (void)state;
    char *path = dir_file(tu_dir, "shrink.safetensors");
    const spec specs[] = {{"a", "U8", "[64]", 64}, {"b", "U8", "[64]", 64}};
    build_file(path, NULL, specs, 2, 0);
    hma_store *st = NULL;
    assert_int_equal(hma_store_open(&st, path, HMA_OPEN_PREAD), HMA_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size - 32), 0);
    unsigned char buf[64];
    const hma_tensor *a = hma_store_find(st, "a"), *b = hma_store_find(st, "b");
    assert_int_equal(hma_store_read(st, a, 0, buf, 64), HMA_OK); /* still all there */
    assert_int_equal(hma_store_read(st, b, 0, buf, 32), HMA_OK);
    assert_int_equal(hma_store_read(st, b, 0, buf, 64), HMA_ERR_TRUNCATED);
    assert_non_null(strstr(hma_last_error(), path));
    assert_non_null(strstr(hma_last_error(), "'b'"));
    assert_int_equal(hma_store_read(st, b, 40, buf, 8), HMA_ERR_TRUNCATED);
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(hma_store_read(st, a, 0, buf, 1), HMA_ERR_TRUNCATED);
    hma_store_close(st);
    free(path);
}

/* ---- the open-input registry, seen through the writer --------------------------------- */

static void test_open_input_protected(void **state) {
    (void)state;
    char *path = dir_file(tu_dir, "input.safetensors");
    const spec specs[] = {{"a", "U8", "[4]", 4}};
    build_file(path, NULL, specs, 1, 0);
    hma_store *st = NULL, *st2 = NULL;
    assert_int_equal(hma_store_open(&st, path, 0), HMA_OK);
    assert_int_equal(hma_store_open(&st2, path, HMA_OPEN_PREAD), HMA_OK);
    uint64_t shape[1] = {4};
    for (int round = 0; round < 3; round++) {
        hma_writer *w = NULL;
        assert_int_equal(hma_writer_create(&w, path, 0), HMA_OK);
        assert_int_equal(hma_writer_add_tensor(w, "a", HMA_DTYPE_U8, 1, shape), HMA_OK);
        int rc = hma_writer_begin(w);
        /* round 0: two stores hold it; round 1: one still does; round 2: none */
        assert_int_equal(rc, round < 2 ? HMA_ERR_OVERWRITES_INPUT : HMA_OK);
        hma_writer_free(w);
        if (round == 0) hma_store_close(st);
        if (round == 1) hma_store_close(st2);
    }
    free(path);
}

/* ---- many threads on one store ----------------------------------------------------------- */

typedef struct worker {
    const hma_store *st;
    const uint64_t *expect; /* per-tensor checksum */
    int seed;
    int errors;
} worker;

static uint64_t fnv(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void *work(void *arg) {
    worker *w = arg;
    size_t n = hma_store_count(w->st);
    unsigned char *buf = malloc(1 << 18);
    if (!buf) {
        w->errors++;
        return NULL;
    }
    for (int rep = 0; rep < 2; rep++) {
        for (size_t k = 0; k < n; k++) {
            size_t i = (k * 7 + (size_t)w->seed * 13) % n; /* each thread its own order */
            const hma_tensor *t = hma_store_tensor(w->st, i);
            if (hma_store_find(w->st, hma_tensor_name(t)) != t) w->errors++;
            size_t nb = (size_t)hma_tensor_nbytes(t);
            if (nb > (1 << 18)) { w->errors++; continue; }
            /* read in two pieces to exercise offsets */
            size_t half = nb / 2;
            if (hma_store_read(w->st, t, 0, buf, half) || hma_store_read(w->st, t, half, buf + half, nb - half))
                w->errors++;
            if (fnv(buf, nb) != w->expect[i]) w->errors++;
            const unsigned char *d = hma_tensor_data(t);
            if (d && fnv(d, nb) != w->expect[i]) w->errors++;
        }
    }
    free(buf);
    return NULL;
}

static void test_concurrent_readers(void **state) {
    (void)state;
    char *path = tu_toy_path("base.safetensors");
    for (int mode = 0; mode < 2; mode++) {
        hma_store *st = NULL;
        assert_int_equal(hma_store_open(&st, path, mode ? HMA_OPEN_PREAD : 0), HMA_OK);
        size_t n = hma_store_count(st);
        uint64_t *expect = calloc(n, sizeof *expect);
        unsigned char *buf = malloc(1 << 18);
        assert_non_null(expect);
        assert_non_null(buf);
        for (size_t i = 0; i < n; i++) {
            const hma_tensor *t = hma_store_tensor(st, i);
            assert_int_equal(hma_store_read(st, t, 0, buf, (size_t)hma_tensor_nbytes(t)), HMA_OK);
            expect[i] = fnv(buf, (size_t)hma_tensor_nbytes(t));
        }
        enum { NT = 8 };
        pthread_t th[NT];
        worker w[NT];
        for (int i = 0; i < NT; i++) {
            w[i] = (worker){st, expect, i, 0};
            assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
        }
        for (int i = 0; i < NT; i++) {
            pthread_join(th[i], NULL);
            assert_int_equal(w[i].errors, 0);
        }
        free(buf);
        free(expect);
        hma_store_close(st);
    }
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_toy_pair),
        cmocka_unit_test(test_toy_bytes_mmap_vs_pread),
        cmocka_unit_test(test_read_ranges),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_valid_edges),
        cmocka_unit_test(test_many_tensors_lookup),
        cmocka_unit_test(test_folder_single),
        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_index_errors),
        cmocka_unit_test(test_pread_truncated_after_open),
        cmocka_unit_test(test_open_input_protected),
        cmocka_unit_test(test_concurrent_readers),
    };
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
