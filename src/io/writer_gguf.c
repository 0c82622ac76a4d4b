/*
 * writer_gguf.c - the writer's GGUF v3 output: typed key/value metadata
 * (copied byte for byte from a GGUF store, or strings), the header and the
 * aligned tensor layout of ggml-org/ggml src/gguf.cpp (gguf_write_to_buf:
 * KVs, tensor infos, zero padding to general.alignment, then each tensor's
 * data followed by zero padding to the alignment), and the conversion of
 * float32 writes into F16, BF16 or Q8_0 blocks (ggml's
 * quantize_row_q8_0_ref, src/ggml-quants.c). Life cycle: writer.c.
 */
#include "io/writer_impl.h"

#include "formats/gguf.h"
#include "formats/quants.h"
#include "io/store.h"
#include "merge/kernels.h"

#include <math.h>
#include <string.h>

enum { GT_U32 = 4, GT_STRING = 8 }; /* gguf_type (ggml gguf.h) */

static void put_le(unsigned char *p, uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

int hma__writer_gguf_set_kv(hma_writer *w, const char *key, uint32_t type, const void *val, uint64_t len) {
    if (strcmp(key, "general.alignment") == 0) {
        uint64_t a = 0;
        if (type == GT_U32 && len == 4) a = ((const unsigned char *)val)[0] | (uint64_t)((const unsigned char *)val)[1] << 8 |
                                            (uint64_t)((const unsigned char *)val)[2] << 16 |
                                            (uint64_t)((const unsigned char *)val)[3] << 24;
        if (a == 0 || (a & (a - 1)) || a > ((uint64_t)1 << 30))
            return hma__fail(HMA_ERR_BAD_METADATA, "%s: general.alignment must be a power of 2 of type uint32 (up to 2^30)",
                             w->path);
        w->galign = a;
    }
    unsigned char *v = hma__malloc(len ? (size_t)len : 1);
    if (!v) return hma__fail(HMA_ERR_NO_MEMORY, "%s: metadata \"%.200s\": out of memory", w->path, key);
    if (len) memcpy(v, val, (size_t)len);
    for (size_t i = 0; i < w->ngkv; i++) {
        if (strcmp(w->gkeys[i], key) == 0) {
            hma__free(w->gvals[i]);
            w->gvals[i] = v;
            w->gtypes[i] = type;
            w->glens[i] = len;
            return HMA_OK;
        }
    }
    if (w->ngkv == w->capgkv) {
        size_t ncap = w->capgkv ? w->capgkv * 2 : 16;
        char **nk = hma__realloc(w->gkeys, ncap * sizeof *nk);
        if (nk) w->gkeys = nk;
        uint32_t *nt = nk ? hma__realloc(w->gtypes, ncap * sizeof *nt) : NULL;
        if (nt) w->gtypes = nt;
        unsigned char **nv = nt ? hma__realloc(w->gvals, ncap * sizeof *nv) : NULL;
        if (nv) w->gvals = nv;
        uint64_t *nl = nv ? hma__realloc(w->glens, ncap * sizeof *nl) : NULL;
        if (nl) w->glens = nl;
        if (!nl) {
            hma__free(v);
            return hma__fail(HMA_ERR_NO_MEMORY, "%s: metadata \"%.200s\": out of memory", w->path, key);
        }
        w->capgkv = ncap;
    }
    char *k = hma__strdup(key);
    if (!k) {
        hma__free(v);
        return hma__fail(HMA_ERR_NO_MEMORY, "%s: metadata \"%.200s\": out of memory", w->path, key);
    }
    w->gkeys[w->ngkv] = k;
    w->gtypes[w->ngkv] = type;
    w->gvals[w->ngkv] = v;
    w->glens[w->ngkv] = len;
    w->ngkv++;
    return HMA_OK;
}

void hma__writer_gguf_free(hma_writer *w) {
    for (size_t i = 0; i < w->ngkv; i++) {
        hma__free(w->gkeys[i]);
        hma__free(w->gvals[i]);
    }
    hma__free(w->gkeys);
    hma__free(w->gtypes);
    hma__free(w->gvals);
    hma__free(w->glens);
}

static int has_key(const hma_writer *w, const char *key) {
    for (size_t i = 0; i < w->ngkv; i++)
        if (strcmp(w->gkeys[i], key) == 0) return 1;
    return 0;
}

int hma_writer_copy_metadata(hma_writer *w, const hma_store *src) {
    if (!w || !src) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_copy_metadata: NULL argument");
    if (!w->gguf)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: hma_writer_copy_metadata() needs a GGUF output (a path ending in .gguf)",
                         w->path);
    if (w->state != W_DECLARING)
        return hma__fail(HMA_ERR_STATE, "%s: metadata copied after hma_writer_begin() (expected before)", w->path);
    size_t n = hma__store_gguf_kv_count(src);
    int rc = HMA_OK;
    if (n) {
        for (size_t i = 0; i < n && !rc; i++) {
            const char *key;
            uint32_t type;
            const unsigned char *val;
            uint64_t len;
            hma__store_gguf_kv(src, i, &key, &type, &val, &len); /* i < n: cannot fail */
            if (!has_key(w, key)) rc = hma__writer_gguf_set_kv(w, key, type, val, len);
        }
        return rc;
    }
    n = hma_store_metadata_count(src);
    for (size_t i = 0; i < n && !rc; i++) {
        const char *key, *value;
        if (hma_store_metadata_at(src, i, &key, &value) != HMA_OK || has_key(w, key)) continue;
        rc = hma_writer_set_metadata(w, key, value);
    }
    return rc;
}

int hma_writer_set_gguf_type(hma_writer *w, size_t index, hma_gguf_type type) {
    if (!w) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_set_gguf_type: NULL writer");
    if (!w->gguf)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: hma_writer_set_gguf_type() needs a GGUF output (a path ending in .gguf)",
                         w->path);
    if (w->state != W_DECLARING)
        return hma__fail(HMA_ERR_STATE, "%s: hma_writer_set_gguf_type() after hma_writer_begin() (expected before)", w->path);
    if (index >= w->nt)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: tensor index %zu out of range (expected < %zu)", w->path, index, w->nt);
    hma__wtensor *t = &w->t[index];
    if (type != HMA_GGUF_F32 && type != HMA_GGUF_F16 && type != HMA_GGUF_BF16 && type != HMA_GGUF_Q8_0)
        return hma__fail(HMA_ERR_UNSUPPORTED_DTYPE, "%s: tensor '%.200s': ggml type %d cannot be written (expected F32, F16, BF16 or Q8_0)",
                         w->path, t->name, (int)type);
    if (t->dtype != HMA_DTYPE_F32)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: tensor '%.200s': declared %s (expected F32 to be stored as %s)", w->path,
                         t->name, hma_dtype_name(t->dtype), hma__ggml_type_name((int)type));
    if (type == HMA_GGUF_Q8_0 && (t->ndim == 0 || t->shape[t->ndim - 1] % 32))
        return hma__fail(HMA_ERR_BAD_SHAPE, "%s: tensor '%.200s': rows of %llu elements are not whole Q8_0 blocks of 32", w->path,
                         t->name, (unsigned long long)(t->ndim ? t->shape[t->ndim - 1] : 1));
    t->gtype = (int)type;
    return HMA_OK;
}

/* The ggml type tensor t is stored as, or -1 for a dtype GGUF cannot hold. */
static int stored_type(const hma__wtensor *t) {
    if (t->gtype >= 0) return t->gtype;
    switch (t->dtype) {
    case HMA_DTYPE_F32: return HMA__GGML_F32;
    case HMA_DTYPE_F16: return HMA__GGML_F16;
    case HMA_DTYPE_BF16: return HMA__GGML_BF16;
    default: return -1;
    }
}

static void sb_str(hma__strbuf *sb, const char *s, size_t n) {
    unsigned char b[8];
    put_le(b, n, 8);
    hma__sb_append(sb, b, 8);
    hma__sb_append(sb, s, n);
}
static void sb_le(hma__strbuf *sb, uint64_t v, unsigned n) {
    unsigned char b[8];
    put_le(b, v, n);
    hma__sb_append(sb, b, n);
}

int hma__writer_gguf_layout(hma_writer *w, hma__strbuf *sb) {
    uint64_t a = w->galign ? w->galign : 32; /* GGUF_DEFAULT_ALIGNMENT */
    uint64_t running = 0;
    for (size_t i = 0; i < w->nt; i++) {
        hma__wtensor *t = &w->t[i];
        int type = stored_type(t);
        if (type < 0)
            return hma__fail(HMA_ERR_UNSUPPORTED_DTYPE, "%s: tensor '%.200s': %s cannot be stored in GGUF (expected F32, F16 or BF16)",
                             w->path, t->name, hma_dtype_name(t->dtype));
        if (t->ndim > HMA__GGUF_MAX_DIMS)
            return hma__fail(HMA_ERR_BAD_SHAPE, "%s: tensor '%.200s': %u dimensions (GGUF holds at most %u)", w->path, t->name,
                             t->ndim, HMA__GGUF_MAX_DIMS);
        uint64_t nelem = 1;
        for (unsigned d = 0; d < t->ndim; d++) nelem *= t->shape[d]; /* checked by add_tensor */
        t->fbytes = nelem / hma__ggml_blck_size(type) * hma__ggml_type_size(type);
        t->shard = 0;
        t->begin = running;
        /* gguf.cpp: each tensor's offset is the previous one plus its size
         * padded to the alignment (GGML_PAD). */
        uint64_t pad = (t->fbytes + a - 1) / a * a;
        if (hma__add_overflows(running, pad, &running) || running > (uint64_t)INT64_MAX / 2)
            return hma__fail(HMA_ERR_OVERFLOW, "%s: tensor '%.200s': data section size overflows", w->path, t->name);
    }
    w->nshards = 1;
    w->nfiles = 1;
    w->sharded = 0;
    w->files = hma__calloc(1, sizeof *w->files);
    if (!w->files) {
        w->nfiles = w->nshards = 0;
        return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", w->path);
    }
    w->files[0].af.fd = -1;
    w->files[0].first = 0;
    w->files[0].count = w->nt;
    w->files[0].final_path = hma__strdup(w->path);
    if (!w->files[0].final_path) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", w->path);

    hma__sb_append(sb, "GGUF", 4);
    sb_le(sb, 3, 4); /* GGUF_VERSION */
    sb_le(sb, w->nt, 8);
    sb_le(sb, w->ngkv, 8);
    for (size_t i = 0; i < w->ngkv; i++) {
        sb_str(sb, w->gkeys[i], strlen(w->gkeys[i]));
        sb_le(sb, w->gtypes[i], 4);
        hma__sb_append(sb, w->gvals[i], (size_t)w->glens[i]);
    }
    for (size_t i = 0; i < w->nt; i++) {
        const hma__wtensor *t = &w->t[i];
        sb_str(sb, t->name, t->name_len);
        /* n_dims >= 1 (a scalar is one element of shape [1]); ne[0] is the
         * innermost dimension (docs/gguf.md). */
        sb_le(sb, t->ndim ? t->ndim : 1, 4);
        if (t->ndim == 0) sb_le(sb, 1, 8);
        for (unsigned d = t->ndim; d-- > 0;) sb_le(sb, t->shape[d], 8);
        sb_le(sb, (uint64_t)stored_type(t), 4);
        sb_le(sb, t->begin, 8);
    }
    /* The data section starts at the next multiple of the alignment (no
     * padding without tensors, as our reader and gguf.cpp's expect). */
    if (w->nt) hma__sb_fill(sb, 0, (size_t)((a - sb->len % a) % a));
    if (hma__sb_error(sb)) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory building the GGUF header", w->path);
    if (sb->len > HMA_MAX_HEADER_SIZE)
        return hma__fail(HMA_ERR_HEADER_SIZE, "%s: header would be %zu bytes (readers accept at most %u)", w->path, sb->len,
                         HMA_MAX_HEADER_SIZE);
    w->files[0].data_off = sb->len;
    w->files[0].data_size = running;
    w->files[0].size = sb->len + running; /* zero padding after the last tensor too, as gguf.cpp */
    return HMA_OK;
}

/* ggml's quantize_row_q8_0_ref (src/ggml-quants.c) for nb blocks of x into
 * y (34 bytes each: fp16 d little-endian, then 32 int8): d = amax / 127 in
 * float32, stored as fp16 (RNE, as GGML_FP32_TO_FP16); q = roundf(x * id)
 * with id = 1/d in float32 (0 when d is 0), halves away from zero. */
static void quantize_q8_0(const float *x, size_t nb, unsigned char *y) {
    for (size_t i = 0; i < nb; i++, x += 32, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            float v = fabsf(x[j]);
            amax = amax > v ? amax : v; /* MAX(amax, v) */
        }
        const float d = amax / ((1 << 7) - 1);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_le(y, hma__f32_to_f16(d), 2);
        for (int j = 0; j < 32; j++) y[2 + j] = (unsigned char)(int8_t)roundf(x[j] * id);
    }
}

#define CONV_FLOATS 4096u /* converted per step: a multiple of 32 */

int hma__writer_gguf_check(const hma_writer *w, const hma__wtensor *t, uint64_t offset, size_t len) {
    int type = stored_type(t);
    if (t->dtype != HMA_DTYPE_F32 || type == HMA__GGML_F32) return HMA_OK;
    unsigned unit = type == HMA__GGML_Q8_0 ? 128u : 4u; /* declared bytes per stored unit */
    if (offset % unit || len % unit) /* the tensor's size is a multiple of unit */
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "%s: tensor '%.200s': write [%llu, +%zu) does not cover whole %s (expected multiples of %u bytes)", w->path,
                         t->name, (unsigned long long)offset, len, type == HMA__GGML_Q8_0 ? "Q8_0 blocks of 32 floats" : "floats",
                         unit);
    return HMA_OK;
}

int hma__writer_gguf_write(hma_writer *w, const hma__wtensor *t, uint64_t offset, const void *data, size_t len) {
    const hma__wfile *f = &w->files[0];
    uint64_t base = f->data_off + t->begin;
    int type = stored_type(t);
    if (t->dtype != HMA_DTYPE_F32 || type == HMA__GGML_F32)
        return hma__pwrite_full(f->af.fd, f->af.tmp, data, len, base + offset);
    float x[CONV_FLOATS];
    unsigned char y[CONV_FLOATS / 32 * 34 > CONV_FLOATS * 2 ? CONV_FLOATS / 32 * 34 : CONV_FLOATS * 2];
    const unsigned char *src = data;
    for (size_t done = 0; done < len;) {
        size_t nf = (len - done) / 4 < CONV_FLOATS ? (len - done) / 4 : CONV_FLOATS;
        memcpy(x, src + done, nf * 4);
        uint64_t e0 = (offset + done) / 4; /* first element */
        size_t nb;
        uint64_t at;
        if (type == HMA__GGML_Q8_0) {
            quantize_q8_0(x, nf / 32, y);
            nb = nf / 32 * 34;
            at = e0 / 32 * 34;
        } else {
            for (size_t k = 0; k < nf; k++)
                put_le(y + 2 * k, type == HMA__GGML_F16 ? hma__f32_to_f16(x[k]) : hma__f32_to_bf16(x[k]), 2);
            nb = nf * 2;
            at = e0 * 2;
        }
        int rc = hma__pwrite_full(f->af.fd, f->af.tmp, y, nb, base + at);
        if (rc) return rc;
        done += nf * 4;
    }
    return HMA_OK;
}
