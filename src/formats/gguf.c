/* gguf.c - parse and validate one GGUF header (v2/v3, little-endian):
 * every count, length, type, dimension, offset and the alignment is checked
 * against the file size before it is used. The layout is that of
 * ggml-org/ggml docs/gguf.md; the checks follow src/gguf.cpp
 * (gguf_init_from_file_impl) and are listed in docs/format.md. */
#include "formats/gguf.h"

#include "core/fileio.h"
#include "core/hash.h"
#include "formats/quants.h"
#include "formats/safetensors.h"
#include "text/strbuf.h"

#include <stdio.h>
#include <string.h>

/* gguf_type (gguf.h) */
enum { T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64, T_I64, T_F64, T_COUNT };
static const unsigned type_size[T_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 8 /* minimum: the length */, 0, 8, 8, 8};

#define BUFSZ 65536u

typedef struct cur {
    int fd;
    const char *path;
    uint64_t size, pos;
    unsigned char *buf;
    uint64_t bstart;
    size_t blen;
} cur;

int hma__gguf_magic(const unsigned char *b) { return b[0] == 'G' && b[1] == 'G' && b[2] == 'U' && b[3] == 'F'; }

/* n bytes at the cursor, or HMA_ERR_TRUNCATED / HMA_ERR_HEADER_SIZE. */
static int get(cur *c, void *dst, uint64_t n, const char *what) {
    if (n > c->size - c->pos)
        return hma__fail(HMA_ERR_TRUNCATED, "%.300s: file byte %llu: %s needs %llu bytes but the %llu-byte file ends first",
                         c->path, (unsigned long long)c->pos, what, (unsigned long long)n, (unsigned long long)c->size);
    if (c->pos + n > HMA_MAX_HEADER_SIZE)
        return hma__fail(HMA_ERR_HEADER_SIZE, "%.300s: file byte %llu: %s: header longer than %u bytes (expected at most that)",
                         c->path, (unsigned long long)c->pos, what, HMA_MAX_HEADER_SIZE);
    unsigned char *d = dst;
    while (n) {
        if (c->pos < c->bstart || c->pos >= c->bstart + c->blen) {
            uint64_t want = c->size - c->pos < BUFSZ ? c->size - c->pos : BUFSZ;
            int rc = hma__pread_full(c->fd, c->path, c->buf, (size_t)want, c->pos);
            if (rc) return rc;
            c->bstart = c->pos;
            c->blen = (size_t)want;
        }
        size_t at = (size_t)(c->pos - c->bstart), k = c->blen - at;
        if (k > n) k = (size_t)n;
        memcpy(d, c->buf + at, k);
        d += k;
        c->pos += k;
        n -= k;
    }
    return HMA_OK;
}

static uint64_t le(const unsigned char *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;) v = v << 8 | p[i];
    return v;
}

static int get_u32(cur *c, uint32_t *v, const char *what) {
    unsigned char b[4];
    int rc = get(c, b, 4, what);
    if (!rc) *v = (uint32_t)le(b, 4);
    return rc;
}
static int get_u64(cur *c, uint64_t *v, const char *what) {
    unsigned char b[8];
    int rc = get(c, b, 8, what);
    if (!rc) *v = le(b, 8);
    return rc;
}

/* A GGUF string (u64 length + bytes), malloc'd and NUL-terminated. */
static int get_str(cur *c, char **s, uint64_t *len, const char *what) {
    uint64_t n;
    int rc = get_u64(c, &n, what);
    if (rc) return rc;
    if (n > c->size - c->pos)
        return hma__fail(HMA_ERR_TRUNCATED, "%.300s: file byte %llu: %s of %llu bytes runs past the end of the %llu-byte file",
                         c->path, (unsigned long long)(c->pos - 8), what, (unsigned long long)n, (unsigned long long)c->size);
    if (n > HMA_MAX_HEADER_SIZE)
        return hma__fail(HMA_ERR_HEADER_SIZE, "%.300s: file byte %llu: %s of %llu bytes (expected at most %u)", c->path,
                         (unsigned long long)(c->pos - 8), what, (unsigned long long)n, HMA_MAX_HEADER_SIZE);
    *s = hma__malloc((size_t)n + 1);
    if (!*s) return hma__fail(HMA_ERR_NO_MEMORY, "%.300s: out of memory for a %llu-byte string", c->path, (unsigned long long)n);
    if ((rc = get(c, *s, n, what))) {
        hma__free(*s);
        *s = NULL;
        return rc;
    }
    (*s)[n] = 0;
    *len = n;
    return HMA_OK;
}

void hma__gguf_free(hma__gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n; i++) hma__free(g->tensors[i].name);
    hma__free(g->tensors);
    for (size_t i = 0; i < 2 * g->n_meta; i++) hma__free(g->meta[i]);
    hma__free(g->meta);
    for (size_t i = 0; g->kv_raw && i < g->n_meta; i++) hma__free(g->kv_raw[i]);
    hma__free(g->kv_raw);
    hma__free(g->kv_type);
    hma__free(g->kv_len);
    memset(g, 0, sizeof *g);
}

/* One scalar of type t rendered into sb (strings: JSON-quoted when in_array). */
static int render_scalar(cur *c, hma__strbuf *sb, unsigned t, int in_array, const char *key) {
    unsigned char b[8];
    int rc;
    if (t == T_STRING) {
        char *s;
        uint64_t n;
        if ((rc = get_str(c, &s, &n, "string value"))) return rc;
        if (!in_array && memchr(s, 0, (size_t)n)) {
            hma__free(s);
            return hma__fail(HMA_ERR_BAD_METADATA, "%.300s: key '%.200s': string value contains a NUL byte (expected none)",
                             c->path, key);
        }
        if (in_array) hma__sb_json_string(sb, s, (size_t)n);
        else hma__sb_append(sb, s, (size_t)n);
        hma__free(s);
        return HMA_OK;
    }
    if ((rc = get(c, b, type_size[t], "value"))) return rc;
    uint64_t v = le(b, type_size[t]);
    switch (t) {
    case T_U8: case T_U16: case T_U32: case T_U64: hma__sb_u64(sb, v); break;
    case T_I8: hma__sb_printf(sb, "%d", (int)(int8_t)v); break;
    case T_I16: hma__sb_printf(sb, "%d", (int)(int16_t)v); break;
    case T_I32: hma__sb_printf(sb, "%ld", (long)(int32_t)v); break;
    case T_I64: hma__sb_printf(sb, "%lld", (long long)(int64_t)v); break;
    case T_F32: {
        float f;
        uint32_t u = (uint32_t)v;
        memcpy(&f, &u, 4);
        hma__sb_printf(sb, "%.9g", (double)f);
        break;
    }
    case T_F64: {
        double d;
        memcpy(&d, &v, 8);
        hma__sb_printf(sb, "%.17g", d);
        break;
    }
    case T_BOOL:
        if (v > 1)
            return hma__fail(HMA_ERR_BAD_METADATA, "%.300s: file byte %llu: key '%.200s': bool byte is %u (expected 0 or 1)",
                             c->path, (unsigned long long)(c->pos - 1), key, (unsigned)v);
        hma__sb_puts(sb, v ? "true" : "false");
        break;
    }
    return HMA_OK;
}

static int read_kv(cur *c, hma__gguf *g, size_t i) {
    char *key = NULL;
    uint64_t klen;
    uint32_t t;
    hma__strbuf sb = HMA__STRBUF_INIT;
    uint64_t at = c->pos;
    int rc = get_str(c, &key, &klen, "metadata key");
    if (rc) return rc;
    g->meta[2 * i] = key;
    g->n_meta = i + 1;
    char q[200];
    hma__quote_name(q, sizeof q, key, (size_t)klen);
    if (klen == 0 || klen > HMA_MAX_NAME || memchr(key, 0, (size_t)klen))
        return hma__fail(HMA_ERR_BAD_METADATA, "%.300s: file byte %llu: metadata key '%s' is %s (expected 1 to %u bytes, no NUL)",
                         c->path, (unsigned long long)at, q, klen == 0 ? "empty" : klen > HMA_MAX_NAME ? "too long" : "holding a NUL",
                         HMA_MAX_NAME);
    if ((rc = get_u32(c, &t, "value type"))) return rc;
    if (t >= T_COUNT)
        return hma__fail(HMA_ERR_BAD_METADATA, "%.300s: key '%s': value type %u (expected 0 to 12)", c->path, q, t);
    uint64_t vstart = c->pos;
    if (t == T_ARRAY) {
        uint32_t et;
        uint64_t n;
        if ((rc = get_u32(c, &et, "array type")) || (rc = get_u64(c, &n, "array length"))) return rc;
        if (et >= T_COUNT || et == T_ARRAY)
            return hma__fail(HMA_ERR_BAD_METADATA, "%.300s: key '%s': array of type %u (expected 0 to 12, not an array)", c->path,
                             q, et);
        if (n > (c->size - c->pos) / type_size[et])
            return hma__fail(HMA_ERR_TRUNCATED, "%.300s: key '%s': array of %llu elements cannot fit in the rest of the %llu-byte file",
                             c->path, q, (unsigned long long)n, (unsigned long long)c->size);
        hma__sb_putc(&sb, '[');
        for (uint64_t k = 0; k < n && !rc; k++) {
            if (k) hma__sb_putc(&sb, ',');
            rc = render_scalar(c, &sb, et, 1, q);
        }
        hma__sb_putc(&sb, ']');
    } else {
        rc = render_scalar(c, &sb, t, 0, q);
        if (!rc && strcmp(key, "general.alignment") == 0) {
            uint64_t a = 0;
            const char *s = sb.data ? sb.data : "";
            for (; *s >= '0' && *s <= '9'; s++) a = a * 10 + (uint64_t)(*s - '0');
            if (t != T_U32 || a == 0 || (a & (a - 1)))
                rc = hma__fail(HMA_ERR_BAD_METADATA, "%.300s: general.alignment is %s of type %u (expected a power of 2 of type uint32)",
                               c->path, sb.data ? sb.data : "", t);
            g->alignment = a;
        }
    }
    if (!rc && hma__sb_error(&sb)) rc = hma__fail(hma__sb_error(&sb), "%.300s: key '%s': out of memory rendering the value", c->path, q);
    if (rc) {
        hma__sb_free(&sb);
        return rc;
    }
    /* Keep the value's bytes too (read again: they are validated now). */
    uint64_t vend = c->pos, vlen = vend - vstart;
    g->kv_type[i] = t;
    g->kv_len[i] = vlen;
    g->kv_raw[i] = hma__malloc(vlen ? (size_t)vlen : 1);
    if (!g->kv_raw[i]) rc = hma__fail(HMA_ERR_NO_MEMORY, "%.300s: key '%s': out of memory", c->path, q);
    c->pos = vstart;
    if (!rc) rc = get(c, g->kv_raw[i], vlen, "value");
    c->pos = vend;
    if (rc) {
        hma__sb_free(&sb);
        return rc;
    }
    g->meta[2 * i + 1] = hma__sb_detach(&sb, NULL);
    if (!g->meta[2 * i + 1]) return hma__fail(HMA_ERR_NO_MEMORY, "%.300s: out of memory", c->path);
    return HMA_OK;
}

static const char *meta_key_at(const void *owner, size_t idx, size_t *len) {
    const char *k = ((const hma__gguf *)owner)->meta[2 * idx];
    *len = strlen(k);
    return k;
}
static const char *tensor_at(const void *owner, size_t idx, size_t *len) {
    const char *k = ((const hma__gguf *)owner)->tensors[idx].name;
    *len = strlen(k);
    return k;
}

static int read_info(cur *c, hma__gguf *g, size_t i, uint64_t *running) {
    hma__gguf_tensor *t = &g->tensors[i];
    uint64_t len, at = c->pos;
    int rc = get_str(c, &t->name, &len, "tensor name");
    if (rc) return rc;
    g->n = i + 1;
    char q[200];
    hma__quote_name(q, sizeof q, t->name, (size_t)len);
    if (len == 0 || len > HMA_MAX_NAME || memchr(t->name, 0, (size_t)len))
        return hma__fail(HMA_ERR_BAD_NAME, "%.300s: file byte %llu: tensor name '%s' is %s (expected 1 to %u bytes, no NUL)", c->path,
                         (unsigned long long)at, q, len == 0 ? "empty" : len > HMA_MAX_NAME ? "too long" : "holding a NUL",
                         HMA_MAX_NAME);
    uint32_t nd, type;
    if ((rc = get_u32(c, &nd, "dimension count"))) return rc;
    if (nd == 0 || nd > HMA__GGUF_MAX_DIMS)
        return hma__fail(HMA_ERR_BAD_SHAPE, "%.300s: tensor '%s': %u dimensions (expected 1 to %u)", c->path, q, nd, HMA__GGUF_MAX_DIMS);
    uint64_t ne[HMA__GGUF_MAX_DIMS], nelem = 1;
    for (uint32_t k = 0; k < nd; k++) {
        if ((rc = get_u64(c, &ne[k], "dimension"))) return rc;
        if (ne[k] > (uint64_t)INT64_MAX)
            return hma__fail(HMA_ERR_BAD_SHAPE, "%.300s: tensor '%s': dimension %u is negative (expected 0 to 2^63-1)", c->path, q, k);
    }
    for (uint32_t k = 0; k < nd; k++)
        if (hma__mul_overflows(nelem, ne[k], &nelem) || nelem > (uint64_t)INT64_MAX)
            return hma__fail(HMA_ERR_BAD_SHAPE, "%.300s: tensor '%s': element count overflows 63 bits", c->path, q);
    if ((rc = get_u32(c, &type, "tensor type"))) return rc;
    if (type >= HMA__GGML_TYPE_LIMIT)
        return hma__fail(HMA_ERR_BAD_DTYPE, "%.300s: tensor '%s': ggml type %u is unknown (expected one below %d)", c->path, q,
                         type, HMA__GGML_TYPE_LIMIT);
    unsigned bs = hma__ggml_blck_size((int)type), ts = hma__ggml_type_size((int)type);
    if (!bs)
        return hma__fail(HMA_ERR_UNSUPPORTED_DTYPE,
                         "%.300s: tensor '%s': ggml type %u is not read by this library (expected f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_K, q5_K or q6_K)",
                         c->path, q, type);
    if (ne[0] % bs)
        return hma__fail(HMA_ERR_BAD_SHAPE, "%.300s: tensor '%s': row of %llu elements is not a whole number of %s blocks of %u",
                         c->path, q, (unsigned long long)ne[0], hma__ggml_type_name((int)type), bs);
    uint64_t off, f32bytes;
    if (hma__mul_overflows(nelem / bs, ts, &t->nbytes) || hma__mul_overflows(nelem, 4, &f32bytes))
        return hma__fail(HMA_ERR_OVERFLOW, "%.300s: tensor '%s': byte count overflows 64 bits", c->path, q);
    if ((rc = get_u64(c, &off, "tensor offset"))) return rc;
    t->type = (int)type;
    t->ndim = nd;
    for (uint32_t k = 0; k < nd; k++) t->shape[k] = ne[nd - 1 - k];
    t->nelem = nelem;
    if (off != *running)
        return hma__fail(HMA_ERR_BAD_OFFSETS,
                         "%.300s: tensor '%s': data offset %llu (expected %llu: tensors packed in info order, each padded to the alignment)",
                         c->path, q, (unsigned long long)off, (unsigned long long)*running);
    t->offset = off; /* made absolute once the data section is known */
    return HMA_OK;
}

int hma__gguf_read(int fd, const char *path, uint64_t file_size, hma__gguf *g) {
    memset(g, 0, sizeof *g);
    cur c = {fd, path, file_size, 0, NULL, 0, 0};
    hma__names keys, names;
    hma__names_init(&keys);
    hma__names_init(&names);
    unsigned char h[24];
    int rc;
    c.buf = hma__malloc(BUFSZ);
    if (!c.buf) return hma__fail(HMA_ERR_NO_MEMORY, "%.300s: out of memory", path);
    if ((rc = get(&c, h, 24, "GGUF header (magic, version, counts)"))) goto out;
    if (!hma__gguf_magic(h)) {
        rc = hma__fail(HMA_ERR_UNSUPPORTED, "%.300s: no GGUF magic", path);
        goto out;
    }
    g->version = (uint32_t)le(h + 4, 4);
    if (g->version != 2 && g->version != 3) {
        rc = hma__fail(HMA_ERR_UNSUPPORTED, "%.300s: GGUF version %u%s (expected 2 or 3)", path, g->version,
                       (g->version & 0xFFFF) == 0 ? ", a big-endian file" : "");
        goto out;
    }
    uint64_t nt = le(h + 8, 8), nkv = le(h + 16, 8);
    /* The smallest key/value pair is 14 bytes, the smallest tensor info 33. */
    if (nkv > (file_size - c.pos) / 14 || nt > (file_size - c.pos) / 33) {
        rc = hma__fail(HMA_ERR_TRUNCATED, "%.300s: %llu tensors and %llu key/value pairs cannot fit in the %llu-byte file", path,
                       (unsigned long long)nt, (unsigned long long)nkv, (unsigned long long)file_size);
        goto out;
    }
    g->alignment = 32; /* GGUF_DEFAULT_ALIGNMENT */
    g->meta = hma__calloc(nkv ? 2 * (size_t)nkv : 1, sizeof *g->meta);
    g->tensors = hma__calloc(nt ? (size_t)nt : 1, sizeof *g->tensors);
    g->kv_type = hma__calloc(nkv ? (size_t)nkv : 1, sizeof *g->kv_type);
    g->kv_raw = hma__calloc(nkv ? (size_t)nkv : 1, sizeof *g->kv_raw);
    g->kv_len = hma__calloc(nkv ? (size_t)nkv : 1, sizeof *g->kv_len);
    if (!g->meta || !g->tensors || !g->kv_type || !g->kv_raw || !g->kv_len || hma__names_reserve(&keys, (size_t)nkv) || hma__names_reserve(&names, (size_t)nt)) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "%.300s: out of memory for %llu tensors", path, (unsigned long long)nt);
        goto out;
    }
    for (size_t i = 0; i < (size_t)nkv; i++) {
        if ((rc = read_kv(&c, g, i))) goto out;
        const char *k = g->meta[2 * i];
        if (hma__names_find(&keys, k, strlen(k), meta_key_at, g) != HMA_NPOS) {
            rc = hma__fail(HMA_ERR_DUPLICATE_KEY, "%.300s: metadata key '%.200s' appears twice (expected unique keys)", path, k);
            goto out;
        }
        if (hma__names_add(&keys, k, strlen(k), i)) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "%.300s: out of memory", path);
            goto out;
        }
    }
    uint64_t running = 0;
    for (size_t i = 0; i < (size_t)nt; i++) {
        if ((rc = read_info(&c, g, i, &running))) goto out;
        hma__gguf_tensor *t = &g->tensors[i];
        size_t len = strlen(t->name);
        if (hma__names_find(&names, t->name, len, tensor_at, g) != HMA_NPOS) {
            rc = hma__fail(HMA_ERR_BAD_NAME, "%.300s: tensor '%.200s' appears twice (expected unique names)", path, t->name);
            goto out;
        }
        if (hma__names_add(&names, t->name, len, i)) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "%.300s: out of memory", path);
            goto out;
        }
        uint64_t pad = (t->nbytes + g->alignment - 1) / g->alignment * g->alignment; /* alignment <= 2^31 */
        if (t->nbytes > UINT64_MAX - g->alignment || hma__add_overflows(running, pad, &running)) {
            rc = hma__fail(HMA_ERR_OVERFLOW, "%.300s: tensor '%.200s': data section size overflows 64 bits", path, t->name);
            goto out;
        }
    }
    uint64_t ds = c.pos;
    if (nt) ds = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    uint64_t end = ds;
    int ovf = 0;
    if (nt) ovf = hma__add_overflows(ds, g->tensors[nt - 1].offset, &end) || hma__add_overflows(end, g->tensors[nt - 1].nbytes, &end);
    if (ovf || ds > file_size || end > file_size) {
        rc = hma__fail(HMA_ERR_TRUNCATED, "%.300s: the data section ends at byte %llu, past the end of the %llu-byte file", path,
                       (unsigned long long)end, (unsigned long long)file_size);
        goto out;
    }
    uint64_t padded = ds;
    if (nt && hma__add_overflows(ds, running, &padded)) padded = UINT64_MAX;
    if (file_size > padded) {
        rc = hma__fail(HMA_ERR_TRAILING_DATA, "%.300s: %llu bytes after the data section, which ends at byte %llu (expected none but padding)",
                       path, (unsigned long long)(file_size - padded), (unsigned long long)padded);
        goto out;
    }
    g->data_start = ds;
    for (size_t i = 0; i < g->n; i++) g->tensors[i].offset += ds;
out:
    hma__names_free(&keys);
    hma__names_free(&names);
    hma__free(c.buf);
    if (rc) hma__gguf_free(g);
    return rc;
}
