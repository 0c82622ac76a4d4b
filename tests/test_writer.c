/* The safetensors writer: exact bytes, sharding, streaming from many
 * threads, state rules and names; output read back with the store API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hma.h"
#include "testutil.h"

/* ---- helpers -------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) { /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

static unsigned char *random_bytes(size_t n, uint64_t seed) {
    unsigned char *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(rng_next(&seed) >> 56);
    return p;
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A tensor as the tests describe it, independent of the writer. */
typedef struct spec {
    const char *name;
    hma_dtype dtype;
    unsigned ndim;
    uint64_t shape[4];
    size_t nbytes;
    unsigned char *data;
} spec;

/* Expected header text built from the format description, not by libhma. */
static char *expected_header(const char *meta_json, const spec *t, size_t n, size_t *len) {
    size_t cap = 4096 + n * 256, pos = 0;
    char *h = malloc(cap);
    assert_non_null(h);
    pos += (size_t)snprintf(h + pos, cap - pos, "{");
    if (meta_json) pos += (size_t)snprintf(h + pos, cap - pos, "\"__metadata__\":%s", meta_json);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        pos += (size_t)snprintf(h + pos, cap - pos, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", (i || meta_json) ? "," : "",
                                t[i].name, hma_dtype_name(t[i].dtype));
        for (unsigned d = 0; d < t[i].ndim; d++)
            pos += (size_t)snprintf(h + pos, cap - pos, "%s%llu", d ? "," : "", (unsigned long long)t[i].shape[d]);
        pos += (size_t)snprintf(h + pos, cap - pos, "],\"data_offsets\":[%zu,%zu]}", off, off + t[i].nbytes);
        off += t[i].nbytes;
    }
    pos += (size_t)snprintf(h + pos, cap - pos, "}");
    while (pos % 8) h[pos++] = ' ';
    h[pos] = '\0';
    *len = pos;
    return h;
}

/* Declare every spec, begin, write each tensor in two halves (second half
 * first), commit. */
static int write_all(const char *path, uint64_t shard_size, const char *const *meta, size_t nmeta, const spec *t,
                     size_t n) {
    hma_writer *w = NULL;
    int rc = hma_writer_create(&w, path, shard_size);
    if (rc) return rc;
    for (size_t i = 0; i < nmeta && !rc; i++) rc = hma_writer_set_metadata(w, meta[2 * i], meta[2 * i + 1]);
    for (size_t i = 0; i < n && !rc; i++) rc = hma_writer_add_tensor(w, t[i].name, t[i].dtype, t[i].ndim, t[i].shape);
    if (!rc) rc = hma_writer_begin(w);
    for (size_t i = 0; i < n && !rc; i++) {
        size_t half = t[i].nbytes / 2;
        rc = hma_writer_write(w, i, half, t[i].data + half, t[i].nbytes - half);
        if (!rc) rc = hma_writer_write(w, i, 0, t[i].data, half);
    }
    if (!rc) rc = hma_writer_commit(w);
    hma_writer_free(w);
    return rc;
}

/* Compare the whole file with the expected header and data. */
static void check_file_bytes(const char *path, const char *meta_json, const spec *t, size_t n) {
    size_t hl, fl;
    char *h = expected_header(meta_json, t, n, &hl);
    unsigned char *f = tu_read_file(path, &fl);
    assert_non_null(f);
    size_t data = 0;
    for (size_t i = 0; i < n; i++) data += t[i].nbytes;
    assert_int_equal(fl, 8 + hl + data);
    assert_int_equal(le64(f), hl);
    assert_int_equal(hl % 8, 0);
    assert_memory_equal(f + 8, h, hl);
    size_t off = 8 + hl;
    for (size_t i = 0; i < n; i++) {
        if (t[i].nbytes) assert_memory_equal(f + off, t[i].data, t[i].nbytes);
        off += t[i].nbytes;
    }
    free(f);
    free(h);
}

/* Read every spec back through the public store API. */
static void check_store(const char *path, const spec *t, size_t n) {
    hma_store *s = NULL;
    int rc = hma_store_open(&s, path, 0);
    if (rc) fail_msg("hma_store_open(%s): %s", path, hma_last_error());
    assert_int_equal(hma_store_count(s), n);
    for (size_t i = 0; i < n; i++) {
        const hma_tensor *x = hma_store_find(s, t[i].name);
        assert_non_null(x);
        assert_int_equal(hma_tensor_dtype(x), t[i].dtype);
        assert_int_equal(hma_tensor_ndim(x), t[i].ndim);
        for (unsigned d = 0; d < t[i].ndim; d++) assert_int_equal(hma_tensor_shape(x)[d], t[i].shape[d]);
        assert_int_equal(hma_tensor_nbytes(x), t[i].nbytes);
        if (t[i].nbytes) {
            unsigned char *buf = malloc(t[i].nbytes);
            assert_non_null(buf);
            assert_int_equal(hma_store_read(s, x, 0, buf, t[i].nbytes), HMA_OK);
            assert_memory_equal(buf, t[i].data, t[i].nbytes);
            free(buf);
        }
    }
    hma_store_close(s);
}

static void free_specs(spec *t, size_t n) {
    for (size_t i = 0; i < n; i++) free(t[i].data);
}

/* ---- round trips ------------------------------------------------------------ */

static void every_dtype_round_trips(void **state) {
    (void)state;
    static const char *names[HMA_DTYPE_COUNT] = {
        "t.bool", "t.u8", "t.i8", "t.i16", "t.u16", "t.i32", "t.u32", "t.i64", "t.u64", "t.f16", "t.bf16",
        "t.f32", "t.f64", "t.c64", "t.f8e4m3", "t.f8e5m2", "t.f8e8m0", "t.f8e4m3fnuz", "t.f8e5m2fnuz", "t.f4",
        "t.f6e2m3", "t.f6e3m2"};
    spec t[HMA_DTYPE_COUNT];
    for (int d = 0; d < HMA_DTYPE_COUNT; d++) {
        spec *s = &t[d];
        memset(s, 0, sizeof *s);
        s->name = names[d];
        s->dtype = (hma_dtype)d;
        unsigned bits = hma_dtype_bits(d);
        if (bits == 4) { /* 2 x 3 = 6 nibbles: 3 bytes */
            s->ndim = 2, s->shape[0] = 2, s->shape[1] = 3;
        } else if (bits == 6) { /* 4 x 6 bits = 3 bytes */
            s->ndim = 1, s->shape[0] = 4;
        } else {
            s->ndim = 3, s->shape[0] = 3, s->shape[1] = 1, s->shape[2] = 5;
        }
        uint64_t bitsz = bits;
        for (unsigned k = 0; k < s->ndim; k++) bitsz *= s->shape[k];
        s->nbytes = (size_t)(bitsz / 8);
        s->data = random_bytes(s->nbytes, 1000u + (unsigned)d);
    }
    char *dir = tu_mkdtemp();
    char *path = tu_join(dir, "all.safetensors");
    assert_int_equal(write_all(path, 0, NULL, 0, t, HMA_DTYPE_COUNT), HMA_OK);
    check_file_bytes(path, NULL, t, HMA_DTYPE_COUNT);
    check_store(path, t, HMA_DTYPE_COUNT);
    assert_int_equal(tu_count_entries(dir), 1); /* no temporaries left */
    /* Files are created 0644 less the umask. */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    mode_t um = umask(0);
    umask(um);
    assert_int_equal(st.st_mode & 0777, 0644 & ~um);
    free_specs(t, HMA_DTYPE_COUNT);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

static void scalars_and_zero_size(void **state) {
    (void)state;
    spec t[4] = {
        {"scalar", HMA_DTYPE_F32, 0, {0}, 4, NULL},
        {"empty.a", HMA_DTYPE_BF16, 2, {0, 4}, 0, NULL},
        {"w", HMA_DTYPE_F16, 1, {3}, 6, NULL},
        {"empty.b", HMA_DTYPE_F4, 1, {0}, 0, NULL},
    };
    for (int i = 0; i < 4; i++) t[i].data = random_bytes(t[i].nbytes, 7u + (unsigned)i);
    char *dir = tu_mkdtemp();
    char *path = tu_join(dir, "s.safetensors");
    /* Scalars may pass a NULL shape. */
    hma_writer *w = NULL;
    assert_int_equal(hma_writer_create(&w, path, 0), HMA_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(hma_writer_add_tensor(w, t[i].name, t[i].dtype, t[i].ndim, t[i].ndim ? t[i].shape : NULL), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    assert_int_equal(hma_writer_write(w, 0, 0, t[0].data, 4), HMA_OK);
    assert_int_equal(hma_writer_write(w, 2, 0, t[2].data, 6), HMA_OK);
    assert_int_equal(hma_writer_write(w, 1, 0, NULL, 0), HMA_OK); /* empty write of an empty tensor */
    assert_int_equal(hma_writer_commit(w), HMA_OK);
    hma_writer_free(w);
    check_file_bytes(path, NULL, t, 4);
    /* The literal header, for an eye check of the exact form. */
    size_t fl;
    unsigned char *f = tu_read_file(path, &fl);
    const char *lit = "{\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                      "\"empty.a\":{\"dtype\":\"BF16\",\"shape\":[0,4],\"data_offsets\":[4,4]},";
    assert_memory_equal(f + 8, lit, strlen(lit));
    free(f);
    check_store(path, t, 4);
    free_specs(t, 4);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

static void metadata_order_replace_and_escaping(void **state) {
    (void)state;
    spec t[1] = {{"x", HMA_DTYPE_U8, 1, {5}, 5, NULL}};
    t[0].data = random_bytes(5, 3);
    const char *meta[] = {"format", "pt", "q\"k\\", "a\nb\tc\x01\x1f\x7f", "path", "a/b \xc3\xa9 \xf0\x9f\x98\x80",
                          "format", "np" /* replaces, keeps first position */};
    char *dir = tu_mkdtemp();
    char *path = tu_join(dir, "m.safetensors");
    assert_int_equal(write_all(path, 0, meta, 4, t, 1), HMA_OK);
    /* serde_json's escaping: short escapes, \u00XX lowercase, the rest verbatim. */
    check_file_bytes(path,
                     "{\"format\":\"np\",\"q\\\"k\\\\\":\"a\\nb\\tc\\u0001\\u001f\x7f\","
                     "\"path\":\"a/b \xc3\xa9 \xf0\x9f\x98\x80\"}",
                     t, 1);
    hma_store *s = NULL;
    if (hma_store_open(&s, path, 0) != HMA_OK) fail_msg("%s", hma_last_error());
    assert_int_equal(hma_store_metadata_count(s), 3);
    assert_string_equal(hma_store_metadata(s, "format"), "np");
    assert_string_equal(hma_store_metadata(s, "q\"k\\"), "a\nb\tc\x01\x1f\x7f");
    hma_store_close(s);
    /* No metadata: no __metadata__ key at all. */
    assert_int_equal(write_all(path, 0, NULL, 0, t, 1), HMA_OK);
    check_file_bytes(path, NULL, t, 1);
    free_specs(t, 1);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

static void names_are_escaped_like_serde(void **state) {
    (void)state;
    spec t[2] = {{"a\"b\\c\td\x02/\xc3\xa9", HMA_DTYPE_U8, 1, {1}, 1, NULL},
                 {"e\x7f\xf0\x9f\x98\x80", HMA_DTYPE_U8, 1, {1}, 1, NULL}};
    for (int i = 0; i < 2; i++) t[i].data = random_bytes(1, 9u + (unsigned)i);
    char *dir = tu_mkdtemp();
    char *path = tu_join(dir, "n.safetensors");
    assert_int_equal(write_all(path, 0, NULL, 0, t, 2), HMA_OK);
    size_t fl;
    unsigned char *f = tu_read_file(path, &fl);
    const char *lit = "{\"a\\\"b\\\\c\\td\\u0002/\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                      "\"e\x7f\xf0\x9f\x98\x80\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}";
    assert_int_equal(le64(f), (strlen(lit) + 7) / 8 * 8);
    assert_memory_equal(f + 8, lit, strlen(lit));
    free(f);
    check_store(path, t, 2);
    /* The index uses Python's json.dumps (ensure_ascii) escaping. */
    char *folder = tu_join(dir, "sharded");
    assert_int_equal(write_all(folder, 1, NULL, 0, t, 2), HMA_OK);
    char *ip = tu_join(folder, "model.safetensors.index.json");
    unsigned char *idx = tu_read_file(ip, &fl);
    assert_non_null(idx);
    const char *want = "{\n  \"metadata\": {\n    \"total_size\": 2\n  },\n  \"weight_map\": {\n"
                       "    \"a\\\"b\\\\c\\td\\u0002/\\u00e9\": \"model-00001-of-00002.safetensors\",\n"
                       "    \"e\\u007f\\ud83d\\ude00\": \"model-00002-of-00002.safetensors\"\n  }\n}\n";
    assert_int_equal(fl, strlen(want));
    assert_memory_equal(idx, want, fl);
    free(idx);
    check_store(folder, t, 2);
    free(ip);
    free(folder);
    free_specs(t, 2);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

/* ---- sharding ------------------------------------------------------------------ */

static void sharding_names_index_and_sizes(void **state) {
    (void)state;
    enum { N = 7 };
    /* Byte sizes 40, 400, 8, 0, 120, 1000, 16 (F32 vectors, one empty). */
    static const uint64_t len[N] = {10, 100, 2, 0, 30, 250, 4};
    static const char *names[N] = {"z.last", "b.big", "c", "d.empty", "a.first", "h.huge", "e"};
    spec t[N];
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        t[i] = (spec){names[i], HMA_DTYPE_F32, 1, {len[i]}, (size_t)len[i] * 4, NULL};
        t[i].data = random_bytes(t[i].nbytes, 50u + (unsigned)i);
        total += t[i].nbytes;
    }
    /* Expected shard of each tensor for each limit, worked out by hand from
     * the rule: declaration order, start a new shard when the next non-empty
     * tensor would overflow a non-empty shard. */
    static const struct {
        uint64_t limit;
        int nshards;
        int shard[N];
    } cases[] = {
        {1, 6, {1, 2, 3, 3, 4, 5, 6}},          /* every non-empty tensor alone */
        {448, 4, {1, 1, 1, 1, 2, 3, 4}},        /* 40+400+8 fills shard 1 exactly */
        {1200, 2, {1, 1, 1, 1, 1, 2, 2}},
        {1 << 20, 1, {1, 1, 1, 1, 1, 1, 1}},    /* one shard: plain model.safetensors */
    };
    char *dir = tu_mkdtemp();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int nshards = cases[c].nshards;
        char sub[32];
        snprintf(sub, sizeof sub, "out%zu", c);
        char *folder = tu_join(dir, sub);
        assert_int_equal(write_all(folder, cases[c].limit, (const char *const[]){"format", "pt"}, 1, t, N), HMA_OK);
        if (nshards == 1) {
            assert_int_equal(tu_count_entries(folder), 1);
            char *p = tu_join(folder, "model.safetensors");
            check_file_bytes(p, "{\"format\":\"pt\"}", t, N);
            free(p);
        } else {
            assert_int_equal(tu_count_entries(folder), nshards + 1);
            char *ip = tu_join(folder, "model.safetensors.index.json");
            size_t il;
            char *idx = (char *)tu_read_file(ip, &il);
            assert_non_null(idx);
            char *z = realloc(idx, il + 1);
            assert_non_null(z);
            idx = z;
            idx[il] = '\0';
            char want[128];
            snprintf(want, sizeof want, "{\n  \"metadata\": {\n    \"total_size\": %zu\n  },\n  \"weight_map\": {\n", total);
            assert_memory_equal(idx, want, strlen(want));
            /* Every tensor maps to its shard; keys appear in sorted order. */
            const char *prev = NULL;
            for (int k = 0; k < N; k++) {
                int s = cases[c].shard[k];
                snprintf(want, sizeof want, "\"%s\": \"model-%05d-of-%05d.safetensors\"", names[k], s, nshards);
                assert_non_null(strstr(idx, want));
            }
            static const char *sorted[N] = {"a.first", "b.big", "c", "d.empty", "e", "h.huge", "z.last"};
            for (int k = 0; k < N; k++) {
                snprintf(want, sizeof want, "    \"%s\": ", sorted[k]);
                const char *at = strstr(idx, want);
                assert_non_null(at);
                if (prev) assert_true(at > prev);
                prev = at;
            }
            assert_int_equal(idx[il - 1], '\n');
            free(idx);
            /* Each shard holds its tensors with offsets from 0, and the
             * metadata. */
            for (int s = 1; s <= nshards; s++) {
                spec part[N];
                size_t np = 0;
                for (int k = 0; k < N; k++) {
                    int ks = cases[c].shard[k];
                    if (ks == s) part[np++] = t[k];
                }
                char fn[64];
                snprintf(fn, sizeof fn, "model-%05d-of-%05d.safetensors", s, nshards);
                char *p = tu_join(folder, fn);
                check_file_bytes(p, "{\"format\":\"pt\"}", part, np);
                free(p);
            }
            free(ip);
        }
        check_store(folder, t, N);
        free(folder);
    }
    free_specs(t, N);
    tu_rmtree(dir);
    free(dir);
}

static void folder_mode_rules(void **state) {
    (void)state;
    spec t[2] = {{"a", HMA_DTYPE_U8, 1, {8}, 8, NULL}, {"b", HMA_DTYPE_U8, 1, {8}, 8, NULL}};
    for (int i = 0; i < 2; i++) t[i].data = random_bytes(8, 77u + (unsigned)i);
    char *dir = tu_mkdtemp();
    /* A missing folder (two levels) is created; a sharded write leaves an
     * index; a later single-shard write into the same folder removes that
     * index (readers would prefer it over the new model.safetensors). */
    char *folder = tu_join(dir, "x/y");
    char *keep = tu_join(dir, "x/y/config.json");
    assert_int_equal(write_all(folder, 8, NULL, 0, t, 2), HMA_OK);
    assert_int_equal(tu_count_entries(folder), 3);
    assert_int_equal(tu_write_file(keep, "{}", 2), 0);
    assert_int_equal(write_all(folder, 0, NULL, 0, t, 2), HMA_OK);
    char *idx = tu_join(folder, "model.safetensors.index.json");
    char *single = tu_join(folder, "model.safetensors");
    assert_int_not_equal(access(idx, F_OK), 0);
    assert_int_equal(access(single, F_OK), 0);
    assert_int_equal(access(keep, F_OK), 0); /* other files are left alone */
    check_store(folder, t, 2);
    /* A ".safetensors" path names one file: a shard limit there is refused. */
    char *dotted = tu_join(dir, "z.safetensors");
    {
        hma_writer *zw = NULL;
        assert_int_equal(hma_writer_create(&zw, dotted, 1 << 20), HMA_ERR_INVALID_ARGUMENT);
        assert_null(zw);
        assert_non_null(strstr(hma_last_error(), "z.safetensors"));
        struct stat zst;
        assert_int_not_equal(stat(dotted, &zst), 0);
    }
    /* A file where the folder should be, and a folder where the file should be. */
    char *file = tu_join(dir, "plain");
    assert_int_equal(tu_write_file(file, "x", 1), 0);
    hma_writer *w = NULL;
    assert_int_equal(hma_writer_create(&w, file, 0), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "a", HMA_DTYPE_U8, 1, (uint64_t[]){1}), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_ERR_EXISTS);
    hma_writer_free(w);
    char *asdir = tu_join(dir, "d.safetensors");
    assert_int_equal(mkdir(asdir, 0755), 0);
    assert_int_equal(hma_writer_create(&w, asdir, 0), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "a", HMA_DTYPE_U8, 1, (uint64_t[]){1}), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_ERR_EXISTS);
    hma_writer_free(w);
    /* Abandoning removes the folders begin created. */
    char *fresh = tu_join(dir, "new/deeper");
    assert_int_equal(hma_writer_create(&w, fresh, 0), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "a", HMA_DTYPE_U8, 1, (uint64_t[]){1}), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    assert_true(tu_has_entry_prefix(fresh, ".hma-tmp-"));
    hma_writer_free(w);
    char *fresh_parent = tu_join(dir, "new");
    assert_int_not_equal(access(fresh_parent, F_OK), 0);
    free(fresh_parent);
    free(fresh);
    free(asdir);
    free(file);
    free(dotted);
    free(single);
    free(idx);
    free(keep);
    free(folder);
    free_specs(t, 2);
    tu_rmtree(dir);
    free(dir);
}

/* ---- the toy checkpoint, byte for byte, from 8 threads ---------------------- */

typedef struct toy_tensor {
    char name[128];
    hma_dtype dtype;
    unsigned ndim;
    uint64_t shape[4];
    uint64_t begin, end;
} toy_tensor;

/* Tiny reader for the toy header's regular form (no escapes in its names),
 * independent of libhma's own parser. Returns the tensor count. */
static size_t parse_toy(const unsigned char *file, size_t flen, toy_tensor *out, size_t max, uint64_t *hlen) {
    assert_true(flen >= 8);
    *hlen = le64(file);
    assert_true(8 + *hlen <= flen);
    char *h = malloc(*hlen + 1);
    assert_non_null(h);
    memcpy(h, file + 8, *hlen);
    h[*hlen] = '\0';
    size_t n = 0;
    for (char *p = h; (p = strstr(p, "\":{\"dtype\":\"")) != NULL; p++) {
        assert_true(n < max);
        toy_tensor *t = &out[n++];
        char *q = p;
        while (q > h && q[-1] != '"') q--;
        size_t nl = (size_t)(p - q);
        assert_true(nl < sizeof t->name);
        memcpy(t->name, q, nl);
        t->name[nl] = '\0';
        char *d = p + strlen("\":{\"dtype\":\"");
        char *de = strchr(d, '"');
        *de = '\0';
        assert_int_equal(hma_dtype_from_name(d, &t->dtype), HMA_OK);
        char *s = strstr(de + 1, "\"shape\":[") + strlen("\"shape\":[");
        t->ndim = 0;
        while (*s != ']') {
            t->shape[t->ndim++] = strtoull(s, &s, 10);
            if (*s == ',') s++;
        }
        char *o = strstr(s, "\"data_offsets\":[") + strlen("\"data_offsets\":[");
        t->begin = strtoull(o, &o, 10);
        t->end = strtoull(o + 1, &o, 10);
        p = o;
    }
    free(h);
    return n;
}

typedef struct job {
    size_t tensor;
    uint64_t off;
    size_t len;
} job;

typedef struct toy_ctx {
    hma_writer *w;
    const unsigned char *data; /* the toy file's data buffer */
    const toy_tensor *t;
    const job *jobs;
    size_t njobs;
    int thread, nthreads;
    int rc;
} toy_ctx;

static void *toy_worker(void *arg) {
    toy_ctx *c = arg;
    for (size_t j = (size_t)c->thread; j < c->njobs && !c->rc; j += (size_t)c->nthreads) {
        const job *b = &c->jobs[j];
        c->rc = hma_writer_write(c->w, b->tensor, b->off, c->data + c->t[b->tensor].begin + b->off, b->len);
    }
    return NULL;
}

static void toy_file_is_reproduced_byte_for_byte(void **state) {
    (void)state;
    char *src = tu_toy_path("base.safetensors");
    size_t flen;
    unsigned char *file = tu_read_file(src, &flen);
    assert_non_null(file);
    static toy_tensor t[256];
    uint64_t hlen;
    size_t n = parse_toy(file, flen, t, 256, &hlen);
    assert_int_equal(n, 75);
    assert_int_equal(hlen, 8040);
    /* Declaration order = the order the data lies in the file. */
    for (size_t i = 1; i < n; i++) assert_int_equal(t[i].begin, t[i - 1].end);

    /* Cut every tensor into random ranges, add some overlapping repeats,
     * shuffle, and hand them to 8 threads. */
    uint64_t seed = 12345;
    size_t cap = 16, njobs = 0;
    job *jobs = malloc(cap * sizeof *jobs);
    for (size_t i = 0; i < n; i++) {
        uint64_t size = t[i].end - t[i].begin;
        for (uint64_t off = 0; off < size;) {
            size_t len = 1 + (size_t)(rng_next(&seed) % 40000);
            if (len > size - off) len = (size_t)(size - off);
            for (int rep = 0; rep < ((rng_next(&seed) % 8) == 0 ? 2 : 1); rep++) {
                if (njobs == cap) jobs = realloc(jobs, (cap *= 2) * sizeof *jobs);
                assert_non_null(jobs);
                uint64_t back = rep && off > 100 ? 100 : 0; /* a repeat overlaps its neighbour */
                jobs[njobs++] = (job){i, off - back, len + (size_t)back};
            }
            off += len;
        }
    }
    for (size_t i = njobs; i > 1; i--) {
        size_t k = (size_t)(rng_next(&seed) % i);
        job tmp = jobs[i - 1];
        jobs[i - 1] = jobs[k];
        jobs[k] = tmp;
    }
    char *dir = tu_mkdtemp();
    char *out = tu_join(dir, "copy.safetensors");
    hma_writer *w = NULL;
    assert_int_equal(hma_writer_create(&w, out, 0), HMA_OK);
    assert_int_equal(hma_writer_set_metadata(w, "format", "pt"), HMA_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(hma_writer_add_tensor(w, t[i].name, t[i].dtype, t[i].ndim, t[i].shape), HMA_OK);
    assert_int_equal(hma_writer_count(w), n);
    assert_int_equal(hma_writer_find(w, "lm_head.weight"), 0);
    assert_int_equal(hma_writer_find(w, "no.such"), HMA_NPOS);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    enum { T = 8 };
    pthread_t th[T];
    toy_ctx ctx[T];
    for (int k = 0; k < T; k++) {
        ctx[k] = (toy_ctx){w, file + 8 + hlen, t, jobs, njobs, k, T, HMA_OK};
        assert_int_equal(pthread_create(&th[k], NULL, toy_worker, &ctx[k]), 0);
    }
    for (int k = 0; k < T; k++) {
        pthread_join(th[k], NULL);
        assert_int_equal(ctx[k].rc, HMA_OK);
    }
    assert_false(tu_has_entry_prefix(dir, "copy")); /* nothing final before commit */
    assert_int_equal(hma_writer_commit(w), HMA_OK);
    hma_writer_free(w);
    size_t olen;
    unsigned char *copy = tu_read_file(out, &olen);
    assert_non_null(copy);
    assert_int_equal(olen, flen);
    assert_memory_equal(copy, file, flen);
    assert_int_equal(tu_count_entries(dir), 1);
    free(copy);
    free(out);
    tu_rmtree(dir);
    free(dir);
    free(jobs);
    free(file);
    free(src);
}

/* ---- states, names, arguments ------------------------------------------------ */

static void state_rules(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *path = tu_join(dir, "s.safetensors");
    unsigned char buf[40] = {0};
    hma_writer *w = NULL;
    assert_int_equal(hma_writer_create(&w, path, 0), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "a", HMA_DTYPE_U8, 1, (uint64_t[]){40}), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "b", HMA_DTYPE_U8, 1, (uint64_t[]){4}), HMA_OK);
    assert_int_equal(hma_writer_write(w, 0, 0, buf, 1), HMA_ERR_STATE);
    assert_int_equal(hma_writer_commit(w), HMA_ERR_STATE);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_ERR_STATE);
    assert_int_equal(hma_writer_add_tensor(w, "c", HMA_DTYPE_U8, 1, (uint64_t[]){4}), HMA_ERR_STATE);
    assert_int_equal(hma_writer_set_metadata(w, "k", "v"), HMA_ERR_STATE);
    /* Range checks. */
    assert_int_equal(hma_writer_write(w, 2, 0, buf, 1), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_write(w, 1, 4, buf, 1), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_write(w, 1, 2, buf, 3), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_write(w, 1, UINT64_MAX, buf, 2), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_write(w, 1, 0, NULL, 2), HMA_ERR_INVALID_ARGUMENT);
    /* Bytes 10..19 of "a" missing: commit names the tensor and byte 10. */
    assert_int_equal(hma_writer_write(w, 0, 20, buf, 20), HMA_OK);
    assert_int_equal(hma_writer_write(w, 0, 0, buf, 5), HMA_OK);
    assert_int_equal(hma_writer_write(w, 0, 3, buf, 7), HMA_OK);
    assert_int_equal(hma_writer_write(w, 1, 0, buf, 4), HMA_OK);
    assert_int_equal(hma_writer_commit(w), HMA_ERR_INCOMPLETE);
    assert_non_null(strstr(hma_last_error(), "'a'"));
    assert_non_null(strstr(hma_last_error(), "byte 10 "));
    assert_int_equal(hma_last_error_code(), HMA_ERR_INCOMPLETE);
    assert_int_equal(tu_count_entries(dir), 0); /* nothing final, temporaries removed */
    assert_int_equal(hma_writer_commit(w), HMA_ERR_STATE);
    assert_int_equal(hma_writer_write(w, 0, 0, buf, 1), HMA_ERR_STATE);
    hma_writer_free(w);

    /* A complete write commits once; a second commit is a state error. */
    assert_int_equal(hma_writer_create(&w, path, 0), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "a", HMA_DTYPE_U8, 1, (uint64_t[]){40}), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    assert_int_equal(hma_writer_write(w, 0, 0, buf, 40), HMA_OK);
    assert_int_equal(hma_writer_commit(w), HMA_OK);
    assert_int_equal(hma_writer_commit(w), HMA_ERR_STATE);
    assert_int_equal(hma_writer_write(w, 0, 0, buf, 1), HMA_ERR_STATE);
    hma_writer_free(w);
    assert_int_equal(access(path, F_OK), 0);

    /* NULL handling. */
    hma_writer_free(NULL);
    assert_int_equal(hma_writer_create(NULL, path, 0), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_create(&w, NULL, 0), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_create(&w, "", 0), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_begin(NULL), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_commit(NULL), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_write(NULL, 0, 0, buf, 1), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_count(NULL), 0);
    assert_int_equal(hma_writer_find(NULL, "a"), HMA_NPOS);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

static void bad_names_dtypes_shapes(void **state) {
    (void)state;
    hma_writer *w = NULL;
    assert_int_equal(hma_writer_create(&w, "/nonexistent-hma-dir/x.safetensors", 0), HMA_OK);
    uint64_t one = 1;
    assert_int_equal(hma_writer_add_tensor(w, "", HMA_DTYPE_U8, 1, &one), HMA_ERR_BAD_NAME);
    assert_int_equal(hma_writer_add_tensor(w, "__metadata__", HMA_DTYPE_U8, 1, &one), HMA_ERR_BAD_NAME);
    assert_int_equal(hma_writer_add_tensor(w, "dup", HMA_DTYPE_U8, 1, &one), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "dup", HMA_DTYPE_F32, 1, &one), HMA_ERR_BAD_NAME);
    assert_non_null(strstr(hma_last_error(), "dup"));
    assert_int_equal(hma_writer_add_tensor(w, "bad\xc3(", HMA_DTYPE_U8, 1, &one), HMA_ERR_BAD_NAME);
    char *longname = malloc(HMA_MAX_NAME + 2);
    memset(longname, 'n', HMA_MAX_NAME + 1);
    longname[HMA_MAX_NAME + 1] = '\0';
    assert_int_equal(hma_writer_add_tensor(w, longname, HMA_DTYPE_U8, 1, &one), HMA_ERR_BAD_NAME);
    longname[HMA_MAX_NAME] = '\0'; /* exactly the limit is fine */
    assert_int_equal(hma_writer_add_tensor(w, longname, HMA_DTYPE_U8, 1, &one), HMA_OK);
    free(longname);
    assert_int_equal(hma_writer_add_tensor(w, "dt", (hma_dtype)HMA_DTYPE_COUNT, 1, &one), HMA_ERR_BAD_DTYPE);
    assert_int_equal(hma_writer_add_tensor(w, "dt", (hma_dtype)-1, 1, &one), HMA_ERR_BAD_DTYPE);
    uint64_t dims[HMA_MAX_DIMS + 1];
    for (unsigned i = 0; i <= HMA_MAX_DIMS; i++) dims[i] = 1;
    assert_int_equal(hma_writer_add_tensor(w, "deep", HMA_DTYPE_U8, HMA_MAX_DIMS + 1, dims), HMA_ERR_BAD_SHAPE);
    assert_int_equal(hma_writer_add_tensor(w, "deep", HMA_DTYPE_U8, HMA_MAX_DIMS, dims), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "nullshape", HMA_DTYPE_U8, 2, NULL), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_add_tensor(w, "odd", HMA_DTYPE_F4, 1, (uint64_t[]){3}), HMA_ERR_BAD_SHAPE);
    assert_int_equal(hma_writer_add_tensor(w, "odd6", HMA_DTYPE_F6_E2M3, 1, (uint64_t[]){2}), HMA_ERR_BAD_SHAPE);
    assert_int_equal(hma_writer_add_tensor(w, "big", HMA_DTYPE_U8, 2, (uint64_t[]){1ull << 32, 1ull << 32}),
                     HMA_ERR_OVERFLOW);
    assert_int_equal(hma_writer_add_tensor(w, "big", HMA_DTYPE_F64, 1, (uint64_t[]){1ull << 62}), HMA_ERR_OVERFLOW);
    assert_int_equal(hma_writer_add_tensor(w, "big", HMA_DTYPE_U8, 1, (uint64_t[]){1ull << 63}), HMA_ERR_OVERFLOW);
    assert_int_equal(hma_writer_add_tensor(w, NULL, HMA_DTYPE_U8, 1, &one), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_count(w), 3);
    assert_int_equal(hma_writer_find(w, "deep"), 2);
    assert_int_equal(hma_writer_set_metadata(w, "k", "\xff"), HMA_ERR_BAD_NAME);
    assert_int_equal(hma_writer_set_metadata(w, NULL, "v"), HMA_ERR_INVALID_ARGUMENT);
    /* The parent folder does not exist: begin fails with an I/O error. */
    assert_int_equal(hma_writer_begin(w), HMA_ERR_IO);
    assert_non_null(strstr(hma_last_error(), "nonexistent-hma-dir"));
    hma_writer_free(w);
}

static void refuses_to_overwrite_an_open_input(void **state) {
    (void)state;
    spec t[1] = {{"a", HMA_DTYPE_U8, 1, {16}, 16, NULL}};
    t[0].data = random_bytes(16, 5);
    char *dir = tu_mkdtemp();
    char *path = tu_join(dir, "in.safetensors");
    assert_int_equal(write_all(path, 0, NULL, 0, t, 1), HMA_OK);
    size_t l1;
    unsigned char *before = tu_read_file(path, &l1);
    hma_store *s = NULL;
    if (hma_store_open(&s, path, 0) != HMA_OK) fail_msg("%s", hma_last_error());
    /* Refused at begin ... */
    hma_writer *w = NULL;
    assert_int_equal(hma_writer_create(&w, path, 0), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "a", HMA_DTYPE_U8, 1, (uint64_t[]){16}), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_ERR_OVERWRITES_INPUT);
    assert_non_null(strstr(hma_last_error(), "in.safetensors"));
    assert_false(tu_has_entry_prefix(dir, ".hma-tmp-"));
    /* ... and may be retried once the store is closed. */
    hma_store_close(s);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    unsigned char zeros[16] = {0};
    assert_int_equal(hma_writer_write(w, 0, 0, zeros, 16), HMA_OK);
    /* Opened again between begin and commit: refused at commit, old file intact. */
    assert_int_equal(hma_store_open(&s, path, 0), HMA_OK);
    assert_int_equal(hma_writer_commit(w), HMA_ERR_OVERWRITES_INPUT);
    hma_writer_free(w);
    hma_store_close(s);
    size_t l2;
    unsigned char *after = tu_read_file(path, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(before, after, l1);
    assert_int_equal(tu_count_entries(dir), 1);
    /* The same file reached through a sharded folder's shard is refused too. */
    char *folder = tu_join(dir, "f");
    spec two[2] = {t[0], {"b", HMA_DTYPE_U8, 1, {16}, 16, t[0].data}};
    assert_int_equal(write_all(folder, 16, NULL, 0, two, 2), HMA_OK);
    assert_int_equal(hma_store_open(&s, folder, 0), HMA_OK);
    assert_int_equal(write_all(folder, 16, NULL, 0, two, 2), HMA_ERR_OVERWRITES_INPUT);
    hma_store_close(s);
    free(folder);
    free(before);
    free(after);
    free_specs(t, 1);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

/* ---- hma_writer_add_file ---------------------------------------------------- */

static int file_has(const char *path, const char *text) {
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    int ok = b && n == strlen(text) && memcmp(b, text, n) == 0;
    free(b);
    return ok;
}

/* A writer of one 16-byte tensor "a" at path, begun; its data not written. */
static hma_writer *begun_with_file(const char *path, uint64_t shard_size, const char *name, const char *src) {
    hma_writer *w = NULL;
    assert_int_equal(hma_writer_create(&w, path, shard_size), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "a", HMA_DTYPE_U8, 1, (uint64_t[]){16}), HMA_OK);
    if (shard_size) assert_int_equal(hma_writer_add_tensor(w, "b", HMA_DTYPE_U8, 1, (uint64_t[]){16}), HMA_OK);
    assert_int_equal(hma_writer_add_file(w, name, src), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    return w;
}

static void write_ab_data(hma_writer *w) {
    unsigned char d[16] = {1, 2, 3};
    for (size_t i = 0; i < hma_writer_count(w); i++) assert_int_equal(hma_writer_write(w, i, 0, d, 16), HMA_OK);
}

static void add_file_copies_with_the_commit(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *src = tu_join(dir, "src-config.json"), *out = tu_join(dir, "out");
    char *dst = tu_join(out, "config.json");
    assert_int_equal(tu_write_file(src, "{\"v\": 1}", 8), 0);
    /* Copied at begin: the name appears only at commit, with the content of
     * the source at begin. */
    hma_writer *w = begun_with_file(out, 0, "config.json", src);
    assert_int_not_equal(access(dst, F_OK), 0);
    assert_true(tu_has_entry_prefix(out, ".hma-tmp-"));
    assert_int_equal(tu_write_file(src, "{\"v\": 2}", 8), 0);
    write_ab_data(w);
    assert_int_equal(hma_writer_commit(w), HMA_OK);
    hma_writer_free(w);
    assert_true(file_has(dst, "{\"v\": 1}"));
    assert_false(tu_has_entry_prefix(out, ".hma-tmp-"));
    assert_int_equal(tu_count_entries(out), 2); /* model.safetensors, config.json */
    /* Atomic: a commit that fails (a tensor never written) or an abandoned
     * writer leave the old copy as it was, and no temporary. */
    w = begun_with_file(out, 0, "config.json", src);
    assert_int_equal(hma_writer_commit(w), HMA_ERR_INCOMPLETE);
    hma_writer_free(w);
    assert_true(file_has(dst, "{\"v\": 1}"));
    w = begun_with_file(out, 0, "config.json", src);
    hma_writer_free(w);
    assert_true(file_has(dst, "{\"v\": 1}"));
    assert_int_equal(tu_count_entries(out), 2);
    /* A sharded output: copied next to the shards, the index still valid. */
    w = begun_with_file(out, 16, "config.json", src);
    write_ab_data(w);
    assert_int_equal(hma_writer_commit(w), HMA_OK);
    hma_writer_free(w);
    assert_true(file_has(dst, "{\"v\": 2}"));
    hma_store *st = NULL;
    assert_int_equal(hma_store_open(&st, out, 0), HMA_OK);
    assert_int_equal(hma_store_file_count(st), 2);
    hma_store_close(st);
    /* The source itself as the destination is refused at begin. */
    hma_writer *w2 = NULL;
    assert_int_equal(hma_writer_create(&w2, out, 0), HMA_OK);
    assert_int_equal(hma_writer_add_file(w2, "config.json", dst), HMA_OK);
    assert_int_equal(hma_writer_begin(w2), HMA_ERR_OVERWRITES_INPUT);
    hma_writer_free(w2);
    assert_false(tu_has_entry_prefix(out, ".hma-tmp-"));
    free(dst);
    free(out);
    free(src);
    tu_rmtree(dir);
    free(dir);
}

static void add_file_rules(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *src = tu_join(dir, "tok.json"), *one = tu_join(dir, "one.safetensors"), *out = tu_join(dir, "out");
    char *missing = tu_join(dir, "missing.json");
    assert_int_equal(tu_write_file(src, "{}", 2), 0);
    hma_writer *w = NULL;
    /* Single-file mode: no folder to copy into. */
    assert_int_equal(hma_writer_create(&w, one, 0), HMA_OK);
    assert_int_equal(hma_writer_add_file(w, "tok.json", src), HMA_ERR_INVALID_ARGUMENT);
    hma_writer_free(w);
    assert_int_equal(hma_writer_create(&w, out, 0), HMA_OK);
    const char *bad[] = {"", "a/b.json", "/abs.json", ".", "..", ".hma-tmp-x", "model.safetensors",
                         "model-00001-of-00002.safetensors", "model.safetensors.index.json", "new\nline"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (hma_writer_add_file(w, bad[i], src) != HMA_ERR_BAD_NAME) fail_msg("name \"%s\" accepted", bad[i]);
    }
    assert_int_equal(hma_writer_add_file(w, NULL, src), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_add_file(w, "x.json", NULL), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_add_file(NULL, "x.json", src), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_add_file(w, "x.json", missing), HMA_ERR_NOT_FOUND);
    assert_int_equal(hma_writer_add_file(w, "x.json", dir), HMA_ERR_IO); /* a folder */
    assert_int_equal(hma_writer_add_file(w, "tokenizer.json", src), HMA_OK);
    assert_int_equal(hma_writer_add_file(w, "tokenizer.json", src), HMA_ERR_BAD_NAME); /* twice */
    assert_int_equal(hma_writer_add_tensor(w, "a", HMA_DTYPE_U8, 1, (uint64_t[]){16}), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    assert_int_equal(hma_writer_add_file(w, "late.json", src), HMA_ERR_STATE);
    hma_writer_free(w);
    assert_int_not_equal(access(out, F_OK), 0); /* abandoned: the folder begin made is gone */
    free(missing);
    free(out);
    free(one);
    free(src);
    tu_rmtree(dir);
    free(dir);
}

/* ---- stale temporaries ------------------------------------------------------ */

/* The "h<8 hex>" host tag of this machine's temporaries, read from the name
 * of a real one (so the test does not re-implement the library's hash). */
static void host_tag_of(const char *folder, char tag[10]) {
    DIR *d = opendir(folder);
    assert_non_null(d);
    struct dirent *e;
    tag[0] = '\0';
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, ".hma-tmp-h", 10) == 0 && strlen(e->d_name) > 19 && e->d_name[18] == '-') {
            memcpy(tag, e->d_name + 9, 9);
            tag[9] = '\0';
        }
    closedir(d);
    assert_int_equal(strlen(tag), 9);
}

static char *plant(const char *folder, const char *tag, long pid, const char *rest) {
    char name[128];
    snprintf(name, sizeof name, ".hma-tmp-%s-%ld-%s", tag, pid, rest);
    char *p = tu_join(folder, name);
    assert_int_equal(tu_write_file(p, "stale", 5), 0);
    return p;
}

static void begin_sweeps_temporaries_of_dead_processes(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *out = tu_join(dir, "out");
    char tag[10];
    hma_writer *w = NULL;
    assert_int_equal(hma_writer_create(&w, out, 0), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "a", HMA_DTYPE_U8, 1, (uint64_t[]){16}), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    host_tag_of(out, tag);
    hma_writer_free(w);
    assert_int_equal(mkdir(out, 0755), 0);
    /* A process that has exited (and been reaped): its pid names no process. */
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0) _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    assert_int_equal(kill(dead, 0), -1);
    /* A process still running. */
    pid_t live = fork();
    assert_true(live >= 0);
    if (live == 0) {
        pause();
        _exit(0);
    }
    char *p_dead = plant(out, tag, (long)dead, "0123456789abcdef");
    char *p_dead_old = plant(out, tag, (long)dead, "0123456789abcdef-old-0-0"); /* a commit's backup */
    char *p_live = plant(out, tag, (long)live, "0123456789abcdef");
    char *p_self = plant(out, tag, (long)getpid(), "fedcba9876543210");
    char *p_other = plant(out, "h00000000", (long)dead, "0123456789abcdef"); /* another machine */
    if (strcmp(tag, "h00000000") == 0) p_other[strlen(p_other) - 10] = 'x'; /* keep it foreign */
    assert_int_equal(tu_count_entries(out), 5);
    assert_int_equal(hma_writer_create(&w, out, 0), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "a", HMA_DTYPE_U8, 1, (uint64_t[]){16}), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    write_ab_data(w);
    assert_int_equal(hma_writer_commit(w), HMA_OK);
    hma_writer_free(w);
    kill(live, SIGKILL);
    waitpid(live, NULL, 0);
    assert_int_not_equal(access(p_dead, F_OK), 0);
    assert_int_not_equal(access(p_dead_old, F_OK), 0);
    assert_int_equal(access(p_live, F_OK), 0);
    assert_int_equal(access(p_self, F_OK), 0);
    assert_int_equal(access(p_other, F_OK), 0);
    assert_int_equal(tu_count_entries(out), 4); /* model.safetensors + the three kept */
    free(p_dead);
    free(p_dead_old);
    free(p_live);
    free(p_self);
    free(p_other);
    free(out);
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_dtype_round_trips),
        cmocka_unit_test(scalars_and_zero_size),
        cmocka_unit_test(metadata_order_replace_and_escaping),
        cmocka_unit_test(names_are_escaped_like_serde),
        cmocka_unit_test(sharding_names_index_and_sizes),
        cmocka_unit_test(folder_mode_rules),
        cmocka_unit_test(toy_file_is_reproduced_byte_for_byte),
        cmocka_unit_test(state_rules),
        cmocka_unit_test(bad_names_dtypes_shapes),
        cmocka_unit_test(refuses_to_overwrite_an_open_input),
        cmocka_unit_test(add_file_copies_with_the_commit),
        cmocka_unit_test(add_file_rules),
        cmocka_unit_test(begin_sweeps_temporaries_of_dead_processes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
