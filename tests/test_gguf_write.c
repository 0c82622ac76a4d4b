/* test_gguf_write.c - GGUF outputs (public API): MA 0.5 of the toy GGUF
 * pair re-read (names, types, shapes, every metadata key with its typed
 * bytes, alignment and packed offsets checked on the bytes), BF16 tensors
 * bit-equal to the same merge written as safetensors, Q8_0 blocks equal to an
 * independent quantize_row_q8_0_ref applied to the float32 merge, a Q8_0 base
 * with a BF16 model, thread-count independence, and atomicity. */
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

static hma_store *open_path(const char *p) {
    hma_store *s = NULL;
    if (hma_store_open(&s, p, 0)) fail_msg("%s: %s", p, hma_last_error());
    return s;
}
static hma_store *open_toy(const char *f) {
    char *p = tu_toy_path(f);
    hma_store *s = open_path(p);
    free(p);
    return s;
}

/* MA `a` of base and model (toy files) into out with the given threads. */
static void merge(const char *base, const char *model, const char *out, unsigned threads, int q8, hma_dtype dt) {
    hma_store *st[2] = {open_toy(base), open_toy(model)};
    hma_plan *p = NULL;
    assert_int_equal(hma_plan_create(&p, st, 2), HMA_OK);
    assert_int_equal(hma_plan_set_ratio(p, 0.5), HMA_OK);
    assert_int_equal(hma_plan_set_threads(p, threads), HMA_OK);
    if (q8) assert_int_equal(hma_plan_set_output_gguf_type(p, HMA_GGUF_Q8_0), HMA_OK);
    if (dt != HMA_DTYPE_COUNT) assert_int_equal(hma_plan_set_output_dtype(p, dt), HMA_OK);
    int rc = hma_plan_merge_to(p, out, 0);
    if (rc) fail_msg("%s: %s", out, hma_last_error());
    hma_plan_free(p);
    hma_store_close(st[0]);
    hma_store_close(st[1]);
}

static uint64_t le(const unsigned char *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;) v = v << 8 | p[i];
    return v;
}

/* Walk the header bytes: every KV of the base must be present with the same
 * type and value bytes; tensor offsets packed, data offset aligned. */
static void check_layout(const unsigned char *b, size_t len, const unsigned char *base) {
    assert_memory_equal(b, "GGUF", 4);
    assert_int_equal(le(b + 4, 4), 3);
    uint64_t nt = le(b + 8, 8), nkv = le(b + 16, 8), pos = 24;
    /* base KVs as [start, end) byte ranges of key..value */
    uint64_t bnkv = le(base + 16, 8), bpos = 24;
    static const unsigned tsz[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
#define SKIPVAL(buf, p)                                                                             \
    do {                                                                                           \
        uint32_t t_ = (uint32_t)le(buf + p, 4);                                                    \
        p += 4;                                                                                    \
        uint64_t cnt_ = 1;                                                                         \
        if (t_ == 9) {                                                                             \
            t_ = (uint32_t)le(buf + p, 4);                                                         \
            cnt_ = le(buf + p + 4, 8);                                                             \
            p += 12;                                                                               \
        }                                                                                          \
        for (uint64_t k_ = 0; k_ < cnt_; k_++) p += t_ == 8 ? 8 + le(buf + p, 8) : tsz[t_];         \
    } while (0)
    uint64_t align = 32;
    size_t found = 0;
    uint64_t *ks = calloc(nkv, sizeof *ks), *ke = calloc(nkv, sizeof *ke);
    for (uint64_t i = 0; i < nkv; i++) {
        ks[i] = pos;
        uint64_t kl = le(b + pos, 8);
        if (kl == 17 && !memcmp(b + pos + 8, "general.alignment", 17)) align = le(b + pos + 8 + kl + 4, 4);
        pos += 8 + kl;
        SKIPVAL(b, pos);
        ke[i] = pos;
    }
    for (uint64_t j = 0; j < bnkv; j++) {
        uint64_t s = bpos;
        bpos += 8 + le(base + bpos, 8);
        SKIPVAL(base, bpos);
        int ok = 0;
        for (uint64_t i = 0; i < nkv && !ok; i++)
            ok = ke[i] - ks[i] == bpos - s && !memcmp(b + ks[i], base + s, (size_t)(bpos - s));
        if (!ok) fail_msg("base key %.*s missing or changed", (int)le(base + s, 8), (const char *)base + s + 8);
        found++;
    }
    assert_int_equal(found, bnkv);
    free(ks);
    free(ke);
    uint64_t expect = 0;
    for (uint64_t i = 0; i < nt; i++) {
        pos += 8 + le(b + pos, 8);
        uint32_t nd = (uint32_t)le(b + pos, 4);
        uint64_t nel = 1;
        for (uint32_t d = 0; d < nd; d++) nel *= le(b + pos + 4 + 8 * d, 8);
        pos += 4 + 8 * nd;
        uint32_t type = (uint32_t)le(b + pos, 4);
        uint64_t off = le(b + pos + 4, 8);
        pos += 12;
        assert_int_equal(off, expect);
        uint64_t nb = type == 8 ? nel / 32 * 34 : type == 0 ? nel * 4 : nel * 2;
        expect = off + (nb + align - 1) / align * align;
    }
    uint64_t ds = (pos + align - 1) / align * align;
    for (uint64_t k = pos; k < ds; k++) assert_int_equal(b[k], 0);
    assert_int_equal(ds % align, 0);
    assert_int_equal(len, ds + expect);
}

static void test_bf16_pair(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *out = tu_join(dir, "out.gguf"), *out2 = tu_join(dir, "out2.gguf"), *st = tu_join(dir, "out.safetensors");
    merge("base.gguf", "aligned.gguf", out, 1, 0, HMA_DTYPE_COUNT);
    merge("base.gguf", "aligned.gguf", out2, 2, 0, HMA_DTYPE_COUNT);
    merge("base.gguf", "aligned.gguf", st, 2, 0, HMA_DTYPE_COUNT);
    size_t n1, n2, nb;
    unsigned char *b1 = tu_read_file(out, &n1), *b2 = tu_read_file(out2, &n2);
    char *bp = tu_toy_path("base.gguf");
    unsigned char *bb = tu_read_file(bp, &nb);
    assert_non_null(b1);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1); /* 1 and 2 threads: same bytes */
    check_layout(b1, n1, bb);
    hma_store *o = open_path(out), *s = open_path(st), *base = open_path(bp);
    assert_int_equal(hma_store_count(o), hma_store_count(base));
    for (size_t i = 0; i < hma_store_count(base); i++) {
        const hma_tensor *a = hma_store_tensor(base, i), *t = hma_store_tensor(o, i), *u = hma_store_find(s, hma_tensor_name(a));
        assert_string_equal(hma_tensor_name(a), hma_tensor_name(t));
        assert_int_equal(hma_tensor_gguf_type(a), hma_tensor_gguf_type(t));
        assert_int_equal(hma_tensor_ndim(a), hma_tensor_ndim(t));
        assert_memory_equal(hma_tensor_shape(a), hma_tensor_shape(t), 8 * hma_tensor_ndim(a));
        assert_non_null(u);
        assert_int_equal(hma_tensor_nbytes(t), hma_tensor_nbytes(u));
        size_t n = (size_t)hma_tensor_nbytes(t);
        void *x = malloc(n), *y = malloc(n);
        assert_int_equal(hma_store_read(o, t, 0, x, n), HMA_OK);
        assert_int_equal(hma_store_read(s, u, 0, y, n), HMA_OK);
        assert_memory_equal(x, y, n);
        free(x);
        free(y);
    }
    /* every base key, rendered the same; provenance present */
    for (size_t i = 0; i < hma_store_metadata_count(base); i++) {
        const char *k, *v;
        hma_store_metadata_at(base, i, &k, &v);
        assert_non_null(hma_store_metadata(o, k));
        assert_string_equal(hma_store_metadata(o, k), v);
    }
    assert_non_null(hma_store_metadata(o, "hma.recipe"));
    assert_string_equal(hma_store_metadata(o, "hma.recipe"), hma_store_metadata(s, "hma_recipe"));
    hma_store_close(o);
    hma_store_close(s);
    hma_store_close(base);
    free(b1);
    free(b2);
    free(bb);
    free(bp);
    free(out);
    free(out2);
    free(st);
    tu_rmtree(dir);
    free(dir);
}

/* Independent quantize_row_q8_0_ref (ggml src/ggml-quants.c): d = amax/127,
 * stored fp16 (RNE), q = roundf(x * (1/d)). */
static uint16_t f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a >= 0x47800000u) return (uint16_t)(sign | 0x7c00u); /* finite inputs only: overflow */
    if (a < 0x38800000u) {                                   /* subnormal half: exact via scaling */
        float m = fabsf(f) * 16777216.0f;                     /* 2^24: units of the smallest subnormal */
        uint32_t q = (uint32_t)nearbyintf(m);
        return (uint16_t)(sign | q);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u); /* RNE on the 13 dropped bits */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

static void q8_ref(const float *x, unsigned char *y) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    uint16_t h = f16(d);
    y[0] = (unsigned char)h;
    y[1] = (unsigned char)(h >> 8);
    for (int j = 0; j < 32; j++) y[2 + j] = (unsigned char)(signed char)roundf(x[j] * id);
}

/* Q8_0 output (q8: by option on a BF16 pair; else by a Q8_0 base): each
 * quantized tensor equals q8_ref of the float32 merge. */
static void check_q8(const char *base, const char *model, int q8) {
    char *dir = tu_mkdtemp();
    char *out = tu_join(dir, "q.gguf"), *out2 = tu_join(dir, "q2.gguf"), *f32 = tu_join(dir, "f.safetensors");
    merge(base, model, out, 1, q8, q8 ? HMA_DTYPE_F32 : HMA_DTYPE_COUNT);
    merge(base, model, out2, 2, q8, q8 ? HMA_DTYPE_F32 : HMA_DTYPE_COUNT);
    merge(base, model, f32, 2, 0, HMA_DTYPE_F32);
    size_t n1, n2, nb;
    unsigned char *b1 = tu_read_file(out, &n1), *b2 = tu_read_file(out2, &n2);
    char *bp = tu_toy_path(base);
    unsigned char *bb = tu_read_file(bp, &nb);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    check_layout(b1, n1, bb);
    /* find each tensor's data in the bytes through a store over the file: the
     * Q8_0 blocks are compared on the raw bytes */
    hma_store *o = open_path(out), *f = open_path(f32);
    size_t nq = 0;
    uint64_t pos = 24, nkv = le(b1 + 16, 8), nt = le(b1 + 8, 8);
    static const unsigned tsz[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    for (uint64_t i = 0; i < nkv; i++) {
        pos += 8 + le(b1 + pos, 8);
        SKIPVAL(b1, pos);
    }
    uint64_t *offs = calloc(nt, 8);
    uint32_t *types = calloc(nt, 4);
    for (uint64_t i = 0; i < nt; i++) {
        pos += 8 + le(b1 + pos, 8);
        uint32_t nd = (uint32_t)le(b1 + pos, 4);
        pos += 4 + 8 * nd;
        types[i] = (uint32_t)le(b1 + pos, 4);
        offs[i] = le(b1 + pos + 4, 8);
        pos += 12;
    }
    uint64_t ds = (pos + 31) / 32 * 32;
    for (uint64_t i = 0; i < nt; i++) {
        const hma_tensor *t = hma_store_tensor(o, i), *u = hma_store_find(f, hma_tensor_name(t));
        assert_non_null(u);
        size_t n = (size_t)hma_tensor_nelements(u);
        float *x = malloc(n * 4);
        assert_int_equal(hma_store_read(f, u, 0, x, n * 4), HMA_OK);
        if (types[i] == 8) {
            nq++;
            unsigned char y[34];
            for (size_t bk = 0; bk < n / 32; bk++) {
                q8_ref(x + 32 * bk, y);
                if (memcmp(b1 + ds + offs[i] + 34 * bk, y, 34)) fail_msg("%s block %zu differs", hma_tensor_name(t), bk);
            }
        } else {
            assert_int_equal(types[i], 0); /* norms: F32, equal to the merge */
            assert_memory_equal(b1 + ds + offs[i], x, n * 4);
        }
        free(x);
    }
    assert_true(nq >= 50);
    free(offs);
    free(types);
    hma_store_close(o);
    hma_store_close(f);
    free(b1);
    free(b2);
    free(bb);
    free(bp);
    free(out);
    free(out2);
    free(f32);
    tu_rmtree(dir);
    free(dir);
}

static void test_q8_option(void **state) {
    (void)state;
    check_q8("base.gguf", "aligned.gguf", 1);
}
static void test_q8_base_bf16_model(void **state) {
    (void)state;
    check_q8("base-q8_0.gguf", "aligned.gguf", 0);
}

/* A failing write (a merge refused at begin) leaves nothing: no output, no
 * temporary; and the writer refuses misaligned Q8_0 writes. */
static void test_atomic(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *out = tu_join(dir, "bad.gguf");
    hma_store *st[2] = {open_toy("base.gguf"), open_toy("aligned.gguf")};
    hma_plan *p = NULL;
    assert_int_equal(hma_plan_create(&p, st, 2), HMA_OK);
    assert_int_equal(hma_plan_set_output_dtype(p, HMA_DTYPE_F64), HMA_OK); /* GGUF has no F64 */
    assert_int_equal(hma_plan_merge_to(p, out, 0), HMA_ERR_UNSUPPORTED_DTYPE);
    assert_int_equal(tu_count_entries(dir), 0);
    hma_plan_free(p);
    hma_store_close(st[0]);
    hma_store_close(st[1]);

    hma_writer *w = NULL;
    uint64_t shape[2] = {2, 64};
    assert_int_equal(hma_writer_create(&w, out, 1000), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_create(&w, out, 0), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "x", HMA_DTYPE_F32, 2, shape), HMA_OK);
    assert_int_equal(hma_writer_set_gguf_type(w, 0, HMA_GGUF_Q8_0), HMA_OK);
    assert_int_equal(hma_writer_set_gguf_type(w, 0, (hma_gguf_type)2), HMA_ERR_UNSUPPORTED_DTYPE);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    float v[128];
    for (int i = 0; i < 128; i++) v[i] = (float)i - 60.5f;
    assert_int_equal(hma_writer_write(w, 0, 4, v, 128), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_write(w, 0, 0, v, 256), HMA_OK);
    assert_int_equal(hma_writer_commit(w), HMA_ERR_INCOMPLETE); /* half written: nothing appears */
    hma_writer_free(w);
    assert_int_equal(tu_count_entries(dir), 0);
    free(out);
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_pair),
        cmocka_unit_test(test_q8_option),
        cmocka_unit_test(test_q8_base_bf16_model),
        cmocka_unit_test(test_atomic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
