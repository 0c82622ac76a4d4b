/* test_gguf.c - GGUF files as tensor stores (public API): the shipped toy
 * GGUF copies against their safetensors originals (names, shapes, bytes, the
 * Q/K row permutation), Q8_0 values, merges of GGUF inputs, layers and
 * groups on GGUF names, synthetic files of every quantized type read at odd
 * offsets, and malformed headers (each a clean error, never a crash). */
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

static hma_store *open_toy(const char *f, unsigned flags) {
    char *p = tu_toy_path(f);
    hma_store *s = NULL;
    int rc = hma_store_open(&s, p, flags);
    if (rc) fail_msg("%s: %s", p, hma_last_error());
    free(p);
    return s;
}

/* GGUF name of a Hugging Face name (data README); static buffer. */
static const char *gguf_name(const char *hf) {
    static char b[256];
    int n;
    char what[128];
    if (!strcmp(hf, "model.embed_tokens.weight")) return "token_embd.weight";
    if (!strcmp(hf, "model.norm.weight")) return "output_norm.weight";
    if (!strcmp(hf, "lm_head.weight")) return "output.weight";
    assert_int_equal(sscanf(hf, "model.layers.%d.%127s", &n, what), 2);
    static const char *map[][2] = {{"input_layernorm.weight", "attn_norm"}, {"self_attn.q_proj.weight", "attn_q"},
                                   {"self_attn.k_proj.weight", "attn_k"}, {"self_attn.v_proj.weight", "attn_v"},
                                   {"self_attn.o_proj.weight", "attn_output"}, {"post_attention_layernorm.weight", "ffn_norm"},
                                   {"mlp.gate_proj.weight", "ffn_gate"}, {"mlp.up_proj.weight", "ffn_up"},
                                   {"mlp.down_proj.weight", "ffn_down"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(what, map[i][0])) {
            snprintf(b, sizeof b, "blk.%d.%s.weight", n, map[i][1]);
            return b;
        }
    fail_msg("unmapped name %s", hf);
    return NULL;
}

/* Row of the HF tensor that GGUF row r holds (q/k: permuted in each head of 32). */
static uint64_t hf_row(const char *gname, uint64_t r) {
    if (!strstr(gname, "attn_q") && !strstr(gname, "attn_k")) return r;
    uint64_t h = r / 32, k = r % 32, i = k / 2, j = k % 2;
    return h * 32 + 16 * j + i;
}

static void *read_all(hma_store *s, const hma_tensor *t) {
    void *b = malloc(hma_tensor_nbytes(t) + 1);
    assert_non_null(b);
    if (hma_store_read(s, t, 0, b, hma_tensor_nbytes(t))) fail_msg("%s", hma_last_error());
    return b;
}

static float bf16f(const unsigned char *p) {
    uint32_t u = (uint32_t)(p[0] | p[1] << 8) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint16_t f2bf16(float f) { /* RNE, finite inputs */
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

/* The BF16 GGUF pair against the safetensors originals, both open modes. */
static void test_toy_bf16(void **state) {
    (void)state;
    for (unsigned mode = 0; mode < 2; mode++) {
        unsigned fl = mode ? HMA_OPEN_PREAD : 0;
        hma_store *st = open_toy("base.safetensors", 0), *g = open_toy("base.gguf", fl);
        assert_int_equal(hma_store_count(g), 75);
        assert_int_equal(hma_store_count(st), 75);
        assert_string_equal(hma_store_metadata(g, "general.architecture"), "llama");
        assert_string_equal(hma_store_metadata(g, "general.alignment"), "32");
        assert_string_equal(hma_store_metadata(g, "llama.block_count"), "8");
        assert_string_equal(hma_store_metadata(g, "llama.rope.freq_base"), "10000");
        assert_string_equal(hma_store_metadata(g, "llama.attention.layer_norm_rms_epsilon"), "9.99999975e-06");
        assert_string_equal(hma_store_metadata(g, "tokenizer.ggml.merges"), "[]");
        const char *tok = hma_store_metadata(g, "tokenizer.ggml.tokens");
        assert_non_null(tok);
        assert_memory_equal(tok, "[\"\xc4\x80\",", 5); /* byte 0 is GPT-2's U+0100 */
        assert_string_equal(hma_store_metadata(g, "tokenizer.ggml.add_bos_token"), "false");
        assert_string_equal(hma_tensor_name(hma_store_tensor(g, 0)), "token_embd.weight");
        for (size_t i = 0; i < hma_store_count(st); i++) {
            const hma_tensor *a = hma_store_tensor(st, i);
            const char *gn = gguf_name(hma_tensor_name(a));
            const hma_tensor *b = hma_store_find(g, gn);
            if (!b) fail_msg("%s missing", gn);
            assert_int_equal(hma_tensor_ndim(a), hma_tensor_ndim(b));
            for (unsigned k = 0; k < hma_tensor_ndim(a); k++) assert_int_equal(hma_tensor_shape(a)[k], hma_tensor_shape(b)[k]);
            const void *z = NULL;
            assert_int_equal(hma_tensor_data_get(b, &z), HMA_OK);
            assert_true(mode ? z == NULL : z != NULL);
            unsigned char *x = read_all(st, a), *y = read_all(g, b);
            if (hma_tensor_ndim(a) == 2) {
                assert_int_equal(hma_tensor_dtype(b), HMA_DTYPE_BF16);
                uint64_t rows = hma_tensor_shape(a)[0], rb = hma_tensor_shape(a)[1] * 2;
                for (uint64_t r = 0; r < rows; r++) assert_memory_equal(y + r * rb, x + hf_row(gn, r) * rb, rb);
                if (z) assert_memory_equal(z, y, hma_tensor_nbytes(b));
            } else { /* norms: F32, the BF16 values widened */
                assert_int_equal(hma_tensor_dtype(b), HMA_DTYPE_F32);
                for (uint64_t e = 0; e < hma_tensor_nelements(a); e++) {
                    float f;
                    memcpy(&f, y + 4 * e, 4);
                    assert_true(f == bf16f(x + 2 * e));
                }
            }
            free(x);
            free(y);
        }
        hma_store_close(st);
        hma_store_close(g);
    }
}

/* Q8_0 values against the BF16 file: within ggml's reference quantizer's
 * error (|x - q d16| <= d/2 + 127 |d16 - d|, d = amax/127, d16 = fp16(d)),
 * and every block's values are integer multiples of one scale. */
static void test_toy_q8_0(void **state) {
    (void)state;
    hma_store *b = open_toy("base.gguf", 0), *q = open_toy("base-q8_0.gguf", HMA_OPEN_PREAD);
    assert_int_equal(hma_store_count(q), 75);
    size_t nq = 0;
    for (size_t i = 0; i < hma_store_count(b); i++) {
        const hma_tensor *tb = hma_store_tensor(b, i), *tq = hma_store_find(q, hma_tensor_name(tb));
        assert_non_null(tq);
        assert_int_equal(hma_tensor_dtype(tq), HMA_DTYPE_F32);
        assert_int_equal(hma_tensor_nbytes(tq), hma_tensor_nelements(tb) * 4);
        if (hma_tensor_ndim(tb) != 2) continue;
        nq++;
        const void *z = (const void *)1;
        assert_int_equal(hma_tensor_data_get(tq, &z), HMA_OK);
        assert_null(z); /* no zero-copy for quantized tensors */
        unsigned char *x = read_all(b, tb);
        float *y = read_all(q, tq);
        for (uint64_t e = 0; e < hma_tensor_nelements(tb); e += 32) {
            float amax = 0, ymax = 0;
            for (int k = 0; k < 32; k++) {
                amax = fmaxf(amax, fabsf(bf16f(x + 2 * (e + k))));
                ymax = fmaxf(ymax, fabsf(y[e + k]));
            }
            double d = amax / 127.0;
            for (int k = 0; k < 32; k++) {
                double err = fabs((double)bf16f(x + 2 * (e + k)) - (double)y[e + k]);
                if (err > d * (0.5 + 127.0 / 2048) + 1e-12) fail_msg("%s[%llu]: error %g > bound (d %g)", hma_tensor_name(tb), (unsigned long long)(e + k), err, d);
                if (ymax > 0) { /* q = y / d16 is an integer within [-127, 127] */
                    double r = (double)y[e + k] / ((double)ymax / 127.0);
                    assert_true(fabs(r - nearbyint(r)) < 1e-3 && fabs(r) <= 127.0 + 1e-6);
                }
            }
        }
        /* odd-offset partial reads equal the full read */
        uint64_t nb = hma_tensor_nbytes(tq);
        unsigned char part[1000];
        for (uint64_t off = 0; off + sizeof part <= nb; off += nb / 7 + 13) {
            assert_int_equal(hma_store_read(q, tq, off, part, sizeof part), HMA_OK);
            assert_memory_equal(part, (unsigned char *)y + off, sizeof part);
        }
        assert_int_equal(hma_store_read(q, tq, nb - 3, part, 3), HMA_OK);
        assert_memory_equal(part, (unsigned char *)y + nb - 3, 3);
        assert_int_equal(hma_store_read(q, tq, nb - 3, part, 4), HMA_ERR_INVALID_ARGUMENT);
        free(x);
        free(y);
    }
    assert_int_equal(nq, 58); /* 8 x 7 + token_embd + output */
    hma_store_close(b);
    hma_store_close(q);
}

/* MA 0.5 over the GGUF pair into a .safetensors file equals the same merge
 * of the safetensors pair (rows of q/k permuted; norms rounded to BF16). */
static void test_merge(void **state) {
    (void)state;
    hma_store *g[2] = {open_toy("base.gguf", 0), open_toy("aligned.gguf", HMA_OPEN_PREAD)};
    hma_store *s[2] = {open_toy("base.safetensors", 0), open_toy("aligned.safetensors", 0)};
    char *og = tu_join(tu_dir, "g.safetensors"), *os = tu_join(tu_dir, "s.safetensors");
    for (int k = 0; k < 2; k++) {
        hma_plan *p = NULL;
        assert_int_equal(hma_plan_create(&p, k ? s : g, 2), 0);
        assert_int_equal(hma_plan_set_ratio(p, 0.5), 0);
        if (hma_plan_merge_to(p, k ? os : og, 0)) fail_msg("%s", hma_last_error());
        hma_plan_free(p);
    }
    hma_store *mg = NULL, *ms = NULL;
    assert_int_equal(hma_store_open(&mg, og, 0), 0);
    assert_int_equal(hma_store_open(&ms, os, 0), 0);
    assert_int_equal(hma_store_count(mg), 75);
    for (size_t i = 0; i < hma_store_count(ms); i++) {
        const hma_tensor *a = hma_store_tensor(ms, i);
        const char *gn = gguf_name(hma_tensor_name(a));
        const hma_tensor *b = hma_store_find(mg, gn);
        assert_non_null(b);
        const unsigned char *x = hma_tensor_data(a), *y = hma_tensor_data(b);
        if (hma_tensor_ndim(a) == 2) {
            assert_int_equal(hma_tensor_dtype(b), HMA_DTYPE_BF16);
            uint64_t rows = hma_tensor_shape(a)[0], rb = hma_tensor_shape(a)[1] * 2;
            for (uint64_t r = 0; r < rows; r++) assert_memory_equal(y + r * rb, x + hf_row(gn, r) * rb, rb);
        } else {
            assert_int_equal(hma_tensor_dtype(b), HMA_DTYPE_F32);
            for (uint64_t e = 0; e < hma_tensor_nelements(a); e++) {
                float f;
                memcpy(&f, y + 4 * e, 4);
                assert_int_equal(f2bf16(f), x[2 * e] | x[2 * e + 1] << 8);
            }
        }
    }
    hma_store_close(mg);
    hma_store_close(ms);
    /* quantized inputs merge too (read dequantized): equal to the mean in fp32 */
    hma_store *q[2] = {open_toy("base-q8_0.gguf", 0), open_toy("aligned-q8_0.gguf", 0)};
    hma_plan *p = NULL;
    assert_int_equal(hma_plan_create(&p, q, 2), 0);
    assert_int_equal(hma_plan_set_ratio(p, 0.5), 0);
    const hma_tensor *t0 = hma_store_find(q[0], "blk.3.ffn_down.weight"), *t1 = hma_store_find(q[1], "blk.3.ffn_down.weight");
    float *x0 = read_all(q[0], t0), *x1 = read_all(q[1], t1), *m = malloc(hma_tensor_nbytes(t0));
    assert_int_equal(hma_plan_merge_tensor(p, "blk.3.ffn_down.weight", 0, m, hma_tensor_nbytes(t0), NULL), 0);
    for (uint64_t e = 0; e < hma_tensor_nelements(t0); e++) {
        float want = 0.5f * x0[e] + 0.5f * x1[e];
        if (fabsf(m[e] - want) > 1e-6f * fabsf(want) + 1e-30f) fail_msg("merge[%llu] %g vs %g", (unsigned long long)e, m[e], want);
    }
    free(x0);
    free(x1);
    free(m);
    hma_plan_free(p);
    for (int k = 0; k < 2; k++) {
        hma_store_close(g[k]);
        hma_store_close(s[k]);
        hma_store_close(q[k]);
    }
    free(og);
    free(os);
}

/* Layers and groups on GGUF names equal those of the safetensors names. */
static void test_groups(void **state) {
    (void)state;
    assert_int_equal(hma_layer_from_name("blk.7.attn_q.weight"), 7);
    assert_int_equal(hma_layer_from_name("output_norm.weight"), -1);
    assert_true(hma_is_embedding_name("token_embd.weight"));
    hma_store *g[2] = {open_toy("base.gguf", 0), open_toy("aligned-q8_0.gguf", 0)};
    hma_store *s[2] = {open_toy("base.safetensors", 0), open_toy("aligned.safetensors", 0)};
    hma_plan *pg = NULL, *ps = NULL;
    double r[3] = {0.2, 0.5, 0.9};
    assert_int_equal(hma_plan_create(&pg, g, 2), 0);
    assert_int_equal(hma_plan_create(&ps, s, 2), 0);
    assert_int_equal(hma_plan_layer_count(pg), 8);
    for (int k = 0; k < 2; k++) {
        hma_plan *p = k ? ps : pg;
        assert_int_equal(hma_plan_set_groups(p, "blocks:3"), 0);
        assert_int_equal(hma_plan_set_ratios(p, r, 3), 0);
    }
    for (size_t i = 0; i < hma_plan_tensor_count(ps); i++) {
        const char *gn = gguf_name(hma_plan_tensor_name(ps, i));
        size_t j = hma_plan_find(pg, gn);
        assert_true(j != HMA_NPOS);
        assert_int_equal(hma_plan_tensor_layer(pg, j), hma_plan_tensor_layer(ps, i));
        assert_int_equal(hma_plan_tensor_group(pg, j), hma_plan_tensor_group(ps, i));
        double wg[2], ws[2];
        assert_int_equal(hma_plan_tensor_weights(pg, j, wg, 2, NULL), 0);
        assert_int_equal(hma_plan_tensor_weights(ps, i, ws, 2, NULL), 0);
        assert_true(wg[0] == ws[0] && wg[1] == ws[1]);
        if (!strcmp(gn, "token_embd.weight")) assert_int_equal(hma_plan_tensor_group(pg, j), 0);
        if (!strncmp(gn, "output", 6)) {
            assert_int_equal(hma_plan_tensor_group(pg, j), HMA_GROUP_MEAN);
            assert_true(fabs(wg[1] - (0.2 + 0.5 + 0.9) / 3) < 1e-15);
        }
    }
    hma_plan_free(pg);
    hma_plan_free(ps);
    for (int k = 0; k < 2; k++) {
        hma_store_close(g[k]);
        hma_store_close(s[k]);
    }
}

/* ---- synthetic and malformed files ---------------------------------------- */

typedef struct gb {
    unsigned char b[4096];
    size_t n;
} gb;
static void put(gb *g, const void *p, size_t n) {
    memcpy(g->b + g->n, p, n);
    g->n += n;
}
static void u32(gb *g, uint32_t v) {
    for (int i = 0; i < 4; i++) g->b[g->n++] = (unsigned char)(v >> 8 * i);
}
static void u64(gb *g, uint64_t v) {
    for (int i = 0; i < 8; i++) g->b[g->n++] = (unsigned char)(v >> 8 * i);
}
static void str(gb *g, const char *s) {
    u64(g, strlen(s));
    put(g, s, strlen(s));
}

/* A valid file: 2 kv, one q8_0 tensor "w" of ne [64, 2] (4 blocks of 34 bytes). */
static void build(gb *g, size_t *p_ver, size_t *p_nt, size_t *p_kv2, size_t *p_dims, size_t *p_type, size_t *p_off) {
    memset(g, 0, sizeof *g);
    put(g, "GGUF", 4);
    *p_ver = g->n;
    u32(g, 3);
    *p_nt = g->n;
    u64(g, 1);
    u64(g, 2);
    str(g, "general.alignment");
    u32(g, 4);
    u32(g, 32);
    *p_kv2 = g->n;
    str(g, "a");
    u32(g, 9); /* array */
    u32(g, 5); /* of int32 */
    u64(g, 2);
    u32(g, (uint32_t)-3);
    u32(g, 7);
    str(g, "w");
    *p_dims = g->n;
    u32(g, 2);
    u64(g, 64);
    u64(g, 2);
    *p_type = g->n;
    u32(g, 8);
    *p_off = g->n;
    u64(g, 0);
    g->n = (g->n + 31) / 32 * 32;
    for (int k = 0; k < 4; k++) {
        g->b[g->n] = 0x00;
        g->b[g->n + 1] = 0x3c; /* d = 1.0 */
        for (int j = 0; j < 32; j++) g->b[g->n + 2 + j] = (unsigned char)(j - 16 + k);
        g->n += 34;
    }
    g->n = (g->n + 31) / 32 * 32;
}

static void expect(const char *label, const gb *g, size_t len, int code) {
    char *p = tu_join(tu_dir, "bad.gguf");
    assert_int_equal(tu_write_file(p, g->b, len), 0);
    for (int mode = 0; mode < 2; mode++) {
        hma_store *s = (hma_store *)0x1;
        int rc = hma_store_open(&s, p, mode ? HMA_OPEN_PREAD : 0);
        if (code >= 0 && rc != code) fail_msg("%s: expected %d, got %d: %s", label, code, rc, hma_last_error());
        if (rc) {
            assert_ptr_equal(s, (hma_store *)0x1);
            assert_non_null(strstr(hma_last_error(), p));
            assert_null(strchr(hma_last_error(), '\n'));
        } else {
            for (size_t i = 0; i < hma_store_count(s); i++) { /* whatever opened reads cleanly */
                const hma_tensor *t = hma_store_tensor(s, i);
                void *b = read_all(s, t);
                free(b);
            }
            hma_store_close(s);
        }
    }
    free(p);
}

static void test_synthetic(void **state) {
    (void)state;
    gb g;
    size_t ver, nt, kv2, dims, type, off;
    build(&g, &ver, &nt, &kv2, &dims, &type, &off);
    char *p = tu_join(tu_dir, "ok.gguf");
    assert_int_equal(tu_write_file(p, g.b, g.n), 0);
    hma_store *s = NULL;
    if (hma_store_open(&s, p, 0)) fail_msg("%s", hma_last_error());
    assert_string_equal(hma_store_metadata(s, "a"), "[-3,7]");
    const hma_tensor *t = hma_store_find(s, "w");
    assert_non_null(t);
    assert_int_equal(hma_tensor_shape(t)[0], 2);
    assert_int_equal(hma_tensor_shape(t)[1], 64);
    float *y = read_all(s, t);
    for (int e = 0; e < 128; e++) assert_true(y[e] == (float)(e % 32 - 16 + e / 32));
    free(y);
    hma_store_close(s);
    free(p);
    expect("valid", &g, g.n, HMA_OK);
    gb b;
#define CASE(label, edit, code)                          \
    do {                                                 \
        b = g;                                           \
        edit;                                            \
        expect(label, &b, b.n, code);                    \
    } while (0)
#define W32(at, v) (b.b[(at)] = (unsigned char)(v), b.b[(at) + 1] = (unsigned char)((v) >> 8), b.b[(at) + 2] = (unsigned char)((v) >> 16), b.b[(at) + 3] = (unsigned char)((uint32_t)(v) >> 24))
    CASE("version 1", W32(ver, 1), HMA_ERR_UNSUPPORTED);
    CASE("version 4", W32(ver, 4), HMA_ERR_UNSUPPORTED);
    CASE("big-endian", W32(ver, 0x03000000u), HMA_ERR_UNSUPPORTED);
    CASE("huge tensor count", b.b[nt + 7] = 0x7f, HMA_ERR_TRUNCATED);
    CASE("huge kv count", b.b[nt + 15] = 0xff, HMA_ERR_TRUNCATED);
    CASE("huge key length", b.b[nt + 16 + 6] = 0x01, HMA_ERR_TRUNCATED);
    CASE("alignment 3", b.b[nt + 16 + 8 + 17 + 4] = 3, HMA_ERR_BAD_METADATA);
    CASE("alignment not u32", b.b[nt + 16 + 8 + 17] = 5, HMA_ERR_BAD_METADATA);
    CASE("value type 13", b.b[kv2 + 9] = 13, HMA_ERR_BAD_METADATA);
    CASE("nested array", b.b[kv2 + 13] = 9, HMA_ERR_BAD_METADATA);
    CASE("array too long", b.b[kv2 + 17 + 7] = 0x10, HMA_ERR_TRUNCATED);
    CASE("duplicate key", b.b[kv2 + 8] = 'g'; memcpy(b.b + nt + 16 + 8, "g", 1); b.b[nt + 16] = 1; memmove(b.b + nt + 16 + 9, b.b + nt + 16 + 8 + 17, b.n - (nt + 16 + 8 + 17)); b.n -= 16, -1);
    CASE("5 dimensions", W32(dims, 5), HMA_ERR_BAD_SHAPE);
    CASE("0 dimensions", W32(dims, 0), HMA_ERR_BAD_SHAPE);
    CASE("negative dim", b.b[dims + 4 + 7] = 0x80, HMA_ERR_BAD_SHAPE);
    CASE("dim overflow", (b.b[dims + 4 + 7] = 0x40, b.b[dims + 12 + 7] = 0x40), HMA_ERR_BAD_SHAPE);
    CASE("partial block", b.b[dims + 4] = 63, HMA_ERR_BAD_SHAPE);
    CASE("type 99", W32(type, 99), HMA_ERR_BAD_DTYPE);
    CASE("type q2_K", W32(type, 10), HMA_ERR_UNSUPPORTED_DTYPE);
    CASE("type f32 (data too short)", W32(type, 0), HMA_ERR_TRUNCATED);
    CASE("offset 32", b.b[off] = 32, HMA_ERR_BAD_OFFSETS);
    CASE("trailing data", b.n += 32, HMA_ERR_TRAILING_DATA);
    CASE("empty name", b.b[dims - 9] = 0, -1);
    /* every truncation and every single-byte flip of the header: a clean result */
    for (size_t n = 0; n < g.n; n++) /* the last tensor's padding (24 bytes) may be missing */
        expect("truncated", &g, n, n < 24 ? -1 : n >= g.n - 24 ? HMA_OK : HMA_ERR_TRUNCATED);
    for (size_t i = 4; i < off + 8; i++)
        for (int v = 0; v < 3; v++) {
            b = g;
            b.b[i] = (unsigned char)(v == 0 ? 0xff : v == 1 ? b.b[i] ^ 0x01 : 0x80);
            expect("flip", &b, b.n, -1);
        }
}

/* Truncations of the real toy file: each a clean error. */
static void test_toy_truncated(void **state) {
    (void)state;
    char *src = tu_toy_path("base-q8_0.gguf");
    size_t len;
    unsigned char *all = tu_read_file(src, &len);
    assert_non_null(all);
    char *p = tu_join(tu_dir, "cut.gguf");
    size_t cuts[] = {4, 8, 23, 24, 100, 1000, 5000, 9000, 20000, len / 2, len - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        assert_int_equal(tu_write_file(p, all, cuts[k]), 0);
        hma_store *s = NULL;
        int rc = hma_store_open(&s, p, 0);
        assert_int_not_equal(rc, HMA_OK);
        assert_non_null(strstr(hma_last_error(), p));
    }
    free(all);
    free(src);
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_toy_bf16),  cmocka_unit_test(test_toy_q8_0),     cmocka_unit_test(test_merge),
        cmocka_unit_test(test_groups),    cmocka_unit_test(test_synthetic),    cmocka_unit_test(test_toy_truncated),
    };
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
