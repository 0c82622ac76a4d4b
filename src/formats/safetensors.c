/* safetensors.c - parse and validate one safetensors header: every tensor's
 * dtype, shape, offsets and size, and that the tensors tile the data section
 * exactly (no hole, no overlap, nothing before or after). */
#include "formats/safetensors.h"
#include "core/fileio.h"

#include "text/json.h"

#include <stdio.h>
#include <string.h>

const char *hma__quote_name(char *buf, size_t cap, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap < 8) {
        if (cap) buf[0] = 0;
        return buf;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o + 8 >= cap) { /* room for "\xNN" or "..." and the NUL */
            /* do not leave half a UTF-8 sequence before the "..." */
            while (o > 0 && ((unsigned char)buf[o - 1] & 0xC0) == 0x80) o--;
            if (o > 0 && (unsigned char)buf[o - 1] >= 0xC0) o--;
            memcpy(buf + o, "...", 4);
            return buf;
        }
        if (c < 0x20 || c == 0x7f) {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o] = 0;
    return buf;
}

int hma__st_header_len(const char *path, const unsigned char *prefix, uint64_t file_size,
                       uint64_t *header_len) {
    if (file_size < 8)
        return hma__fail(HMA_ERR_HEADER_SIZE,
                         "%.300s: file is %llu bytes (expected at least 8 for the header length)", path,
                         (unsigned long long)file_size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | prefix[i];
    if (n == 0)
        return hma__fail(HMA_ERR_HEADER_SIZE, "%.300s: header length is 0 (expected a JSON header)", path);
    if (n > HMA_MAX_HEADER_SIZE)
        return hma__fail(HMA_ERR_HEADER_SIZE, "%.300s: header length %llu (expected at most %u)", path,
                         (unsigned long long)n, HMA_MAX_HEADER_SIZE);
    if (n > file_size - 8)
        return hma__fail(HMA_ERR_HEADER_SIZE,
                         "%.300s: header length %llu runs past the end of the %llu-byte file (expected at most %llu)",
                         path, (unsigned long long)n, (unsigned long long)file_size,
                         (unsigned long long)(file_size - 8));
    *header_len = n;
    return HMA_OK;
}

void hma__st_header_free(hma__st_header *h) {
    if (!h) return;
    for (size_t i = 0; i < h->n; i++) hma__free(h->tensors[i].name);
    hma__free(h->tensors);
    for (size_t i = 0; i < 2 * h->n_meta; i++) hma__free(h->meta[i]);
    hma__free(h->meta);
    memset(h, 0, sizeof *h);
}

#define QN(buf, m) hma__quote_name((buf), sizeof(buf), (m)->key, (m)->key_len)

static int parse_metadata(const char *path, const hma__json_member *m, hma__st_header *h) {
    const hma__json *v = &m->value;
    if (v->type != HMA__JSON_OBJECT)
        return hma__fail(HMA_ERR_BAD_METADATA,
                         "%.300s: header byte %zu: __metadata__ is not an object (expected an object of strings)",
                         path, v->offset);
    h->meta = hma__calloc(v->len ? 2 * v->len : 1, sizeof *h->meta);
    if (!h->meta) return hma__fail(HMA_ERR_NO_MEMORY, "%.300s: out of memory reading __metadata__", path);
    for (size_t i = 0; i < v->len; i++) {
        const hma__json_member *e = &v->v.members[i];
        char q[200];
        if (e->value.type != HMA__JSON_STRING)
            return hma__fail(HMA_ERR_BAD_METADATA,
                             "%.300s: header byte %zu: __metadata__ entry '%s' is not a string (expected string values only)",
                             path, e->value.offset, QN(q, e));
        if (memchr(e->key, 0, e->key_len) || memchr(e->value.v.str, 0, e->value.len))
            return hma__fail(HMA_ERR_BAD_METADATA,
                             "%.300s: header byte %zu: __metadata__ entry '%s' contains a NUL character (expected none)",
                             path, e->key_offset, QN(q, e));
        h->meta[2 * i] = hma__strndup(e->key, e->key_len);
        h->meta[2 * i + 1] = hma__strndup(e->value.v.str, e->value.len);
        h->n_meta = i + 1; /* freed by hma__st_header_free even if one strdup failed */
        if (!h->meta[2 * i] || !h->meta[2 * i + 1])
            return hma__fail(HMA_ERR_NO_MEMORY, "%.300s: out of memory reading __metadata__", path);
    }
    return HMA_OK;
}

/* The quoted name is only built when a message needs it. */
#define TFAIL(...) (QN(q, m), hma__fail(__VA_ARGS__))

static int parse_tensor(const char *path, const hma__json_member *m, hma__st_tensor *t) {
    char q[200] = "";
    if (m->key_len == 0)
        return TFAIL(HMA_ERR_BAD_NAME, "%.300s: header byte %zu: empty tensor name (expected a non-empty name)",
                         path, m->key_offset);
    if (memchr(m->key, 0, m->key_len))
        return TFAIL(HMA_ERR_BAD_NAME,
                         "%.300s: tensor '%s': name contains a NUL character (expected none; it would hide the tensor from C strings)",
                         path, q);
    if (m->key_len > HMA_MAX_NAME)
        return TFAIL(HMA_ERR_BAD_NAME, "%.300s: tensor '%s': name is %zu bytes (expected at most %u)", path,
                         q, m->key_len, HMA_MAX_NAME);
    const hma__json *e = &m->value;
    if (e->type != HMA__JSON_OBJECT)
        return TFAIL(HMA_ERR_JSON_SYNTAX,
                         "%.300s: tensor '%s': entry is not an object (expected {\"dtype\", \"shape\", \"data_offsets\"})",
                         path, q);
    const hma__json *dt = NULL, *sh = NULL, *off = NULL;
    for (size_t i = 0; i < e->len; i++) {
        const hma__json_member *k = &e->v.members[i];
        if (k->key_len == 5 && !memcmp(k->key, "dtype", 5)) dt = &k->value;
        else if (k->key_len == 5 && !memcmp(k->key, "shape", 5)) sh = &k->value;
        else if (k->key_len == 12 && !memcmp(k->key, "data_offsets", 12)) off = &k->value;
        else {
            char qk[100];
            return TFAIL(HMA_ERR_JSON_SYNTAX,
                             "%.300s: tensor '%s': unknown key '%s' at header byte %zu (expected only dtype, shape, data_offsets)",
                             path, q, QN(qk, k), k->key_offset);
        }
    }
    /* dtype */
    if (!dt || dt->type != HMA__JSON_STRING)
        return TFAIL(HMA_ERR_BAD_DTYPE, "%.300s: tensor '%s': %s (expected a dtype string such as \"BF16\")",
                         path, q, dt ? "dtype is not a string" : "no dtype");
    int found = 0;
    for (int d = 0; d < HMA_DTYPE_COUNT; d++) {
        const char *nm = hma_dtype_name(d);
        if (strlen(nm) == dt->len && memcmp(nm, dt->v.str, dt->len) == 0) {
            t->dtype = (hma_dtype)d;
            found = 1;
            break;
        }
    }
    if (!found) {
        char qd[64];
        return TFAIL(HMA_ERR_BAD_DTYPE,
                         "%.300s: tensor '%s': unknown dtype \"%s\" (expected one of the 22 safetensors dtypes, exact case)",
                         path, q, hma__quote_name(qd, sizeof qd, dt->v.str, dt->len));
    }
    /* shape */
    if (!sh || sh->type != HMA__JSON_ARRAY)
        return TFAIL(HMA_ERR_BAD_SHAPE, "%.300s: tensor '%s': %s (expected a list of non-negative integers)",
                         path, q, sh ? "shape is not a list" : "no shape");
    if (sh->len > HMA_MAX_DIMS)
        return TFAIL(HMA_ERR_BAD_SHAPE, "%.300s: tensor '%s': shape has %zu dimensions (expected at most %u)",
                         path, q, sh->len, HMA_MAX_DIMS);
    t->ndim = (unsigned)sh->len;
    t->nelem = 1;
    for (size_t i = 0; i < sh->len; i++) {
        const hma__json *d = &sh->v.items[i];
        if (d->type != HMA__JSON_NUMBER || !d->is_uint)
            return TFAIL(HMA_ERR_BAD_SHAPE,
                             "%.300s: tensor '%s': shape[%zu] at header byte %zu is not a plain non-negative integer below 2^64 (expected e.g. 4096)",
                             path, q, i, d->offset);
        t->shape[i] = d->u;
    }
    /* Product computed after reading all dims: a 0 anywhere makes it 0
     * whatever the others are, so overflow only matters without a 0. */
    int zero = 0;
    for (size_t i = 0; i < sh->len; i++) zero |= t->shape[i] == 0;
    if (zero) {
        t->nelem = 0;
    } else {
        for (size_t i = 0; i < sh->len; i++)
            if (hma__mul_overflows(t->nelem, t->shape[i], &t->nelem))
                return TFAIL(HMA_ERR_BAD_SHAPE,
                                 "%.300s: tensor '%s': the product of the shape overflows 64 bits (expected fewer elements)",
                                 path, q);
    }
    /* data_offsets */
    if (!off || off->type != HMA__JSON_ARRAY || off->len != 2 || off->v.items[0].type != HMA__JSON_NUMBER ||
        !off->v.items[0].is_uint || off->v.items[1].type != HMA__JSON_NUMBER || !off->v.items[1].is_uint)
        return TFAIL(HMA_ERR_BAD_OFFSETS,
                         "%.300s: tensor '%s': %s (expected data_offsets as [begin, end], two non-negative integers)",
                         path, q, off ? "malformed data_offsets" : "no data_offsets");
    t->begin = off->v.items[0].u;
    t->end = off->v.items[1].u;
    if (t->begin > t->end)
        return TFAIL(HMA_ERR_BAD_OFFSETS, "%.300s: tensor '%s': data_offsets [%llu, %llu) end before they begin (expected begin <= end)",
                         path, q, (unsigned long long)t->begin, (unsigned long long)t->end);
    int r = hma__dtype_nbytes(t->dtype, t->nelem, &t->nbytes);
    if (r == 1)
        return TFAIL(HMA_ERR_OVERFLOW, "%.300s: tensor '%s': %llu elements of %s overflow a 64-bit byte count",
                         path, q, (unsigned long long)t->nelem, hma_dtype_name(t->dtype));
    if (r == 2)
        return TFAIL(HMA_ERR_SIZE_MISMATCH,
                         "%.300s: tensor '%s': %llu elements of %s are %llu bits, not whole bytes (expected a multiple of 8 bits)",
                         path, q, (unsigned long long)t->nelem, hma_dtype_name(t->dtype),
                         (unsigned long long)(t->nelem * hma_dtype_bits(t->dtype)));
    if (t->end - t->begin != t->nbytes)
        return TFAIL(HMA_ERR_SIZE_MISMATCH,
                         "%.300s: tensor '%s': data_offsets [%llu, %llu) span %llu bytes (expected %llu = %llu x %s)", path,
                         q, (unsigned long long)t->begin, (unsigned long long)t->end,
                         (unsigned long long)(t->end - t->begin), (unsigned long long)t->nbytes,
                         (unsigned long long)t->nelem, hma_dtype_name(t->dtype));
    t->name = hma__strndup(m->key, m->key_len);
    if (!t->name) return hma__fail(HMA_ERR_NO_MEMORY, "%.300s: out of memory", path);
    return HMA_OK;
}

#undef TFAIL

/* Order: (begin, end), then name. Zero-size tensors sort before a
 * non-empty tensor at the same offset, so "may share an offset" tiles; the
 * name breaks ties between empty tensors deterministically (names are unique). */
static int cmp_tensor(const void *a, const void *b) {
    const hma__st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

int hma__st_parse(const char *path, const char *json, uint64_t header_len, uint64_t file_size,
                  hma__st_header *out) {
    hma__st_header h;
    memset(&h, 0, sizeof h);
    memset(out, 0, sizeof *out);
    if (header_len == 0 || header_len > HMA_MAX_HEADER_SIZE || file_size < 8 || header_len > file_size - 8)
        return hma__fail(HMA_ERR_HEADER_SIZE, "%.300s: header length %llu does not fit the file", path,
                         (unsigned long long)header_len);
    h.header_len = header_len;
    h.data_start = 8 + header_len;
    if (json[0] != '{')
        return hma__fail(HMA_ERR_JSON_SYNTAX, "%.300s: header byte 0: header does not start with '{' (expected a JSON object)",
                         path);
    char what[340];
    snprintf(what, sizeof what, "%.300s: header", path);
    hma__json_doc *doc = NULL;
    int rc = hma__json_parse(json, (size_t)header_len, what, &doc, NULL);
    if (rc) return rc;
    const hma__json *root = hma__json_root(doc);
    /* root is an object: it starts with '{' and parsed completely */
    size_t ntensors = root->len;
    const hma__json_member *meta = NULL;
    for (size_t i = 0; i < root->len; i++)
        if (root->v.members[i].key_len == 12 && !memcmp(root->v.members[i].key, "__metadata__", 12)) {
            meta = &root->v.members[i];
            ntensors--;
        }
    if (meta && (rc = parse_metadata(path, meta, &h))) goto fail;
    h.tensors = hma__calloc(ntensors ? ntensors : 1, sizeof *h.tensors);
    if (!h.tensors) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "%.300s: out of memory for %zu tensors", path, ntensors);
        goto fail;
    }
    for (size_t i = 0; i < root->len; i++) {
        const hma__json_member *m = &root->v.members[i];
        if (m == meta) continue;
        if ((rc = parse_tensor(path, m, &h.tensors[h.n]))) {
            hma__free(h.tensors[h.n].name);
            goto fail;
        }
        h.n++;
    }
    hma__json_free(doc);
    doc = NULL;

    qsort(h.tensors, h.n, sizeof *h.tensors, cmp_tensor);
    uint64_t expect = 0;
    for (size_t i = 0; i < h.n; i++) {
        const hma__st_tensor *t = &h.tensors[i];
        char q[200];
        if (t->begin != expect) {
            hma__quote_name(q, sizeof q, t->name, strlen(t->name));
            if (t->begin > expect)
                rc = hma__fail(HMA_ERR_BAD_OFFSETS,
                               "%.300s: tensor '%s': data_offsets [%llu, %llu) leave a hole of %llu bytes before it (expected it to begin at %llu)",
                               path, q, (unsigned long long)t->begin, (unsigned long long)t->end,
                               (unsigned long long)(t->begin - expect), (unsigned long long)expect);
            else
                rc = hma__fail(HMA_ERR_BAD_OFFSETS,
                               "%.300s: tensor '%s': data_offsets [%llu, %llu) overlap the previous tensor, which ends at %llu (expected it to begin at %llu)",
                               path, q, (unsigned long long)t->begin, (unsigned long long)t->end,
                               (unsigned long long)expect, (unsigned long long)expect);
            goto fail;
        }
        expect = t->end;
    }
    uint64_t data_size = file_size - h.data_start;
    if (expect > data_size) {
        rc = hma__fail(HMA_ERR_TRUNCATED,
                       "%.300s: file is %llu bytes but its tensors end at byte %llu (expected %llu more bytes)", path,
                       (unsigned long long)file_size, (unsigned long long)(h.data_start + expect),
                       (unsigned long long)(expect - data_size));
        goto fail;
    }
    if (expect < data_size) {
        rc = hma__fail(HMA_ERR_TRAILING_DATA,
                       "%.300s: %llu bytes after the last tensor, which ends at file byte %llu (expected the file to end there)",
                       path, (unsigned long long)(data_size - expect), (unsigned long long)(h.data_start + expect));
        goto fail;
    }
    *out = h;
    return HMA_OK;
fail:
    hma__json_free(doc);
    hma__st_header_free(&h);
    return rc;
}

int hma__st_read_header(int fd, const char *path, uint64_t file_size, hma__st_header *hdr,
                        char **json_out) {
    memset(hdr, 0, sizeof *hdr);
    if (json_out) *json_out = NULL;
    unsigned char prefix[8] = {0};
    size_t got;
    int rc = hma__pread_upto(fd, path, prefix, file_size < 8 ? (size_t)file_size : 8, 0, &got);
    if (rc) return rc;
    uint64_t n;
    if ((rc = hma__st_header_len(path, prefix, file_size, &n))) return rc;
    char *json = hma__malloc((size_t)n);
    if (!json)
        return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory for a %llu-byte header", path,
                         (unsigned long long)n);
    if ((rc = hma__pread_upto(fd, path, json, (size_t)n, 8, &got))) goto fail;
    if ((uint64_t)got != n) {
        rc = hma__fail(HMA_ERR_TRUNCATED, "%.400s: file shrank while reading its header (expected %llu bytes)",
                       path, (unsigned long long)(8 + n));
        goto fail;
    }
    if ((rc = hma__st_parse(path, json, n, file_size, hdr))) goto fail;
    if (json_out) *json_out = json;
    else hma__free(json);
    return HMA_OK;
fail:
    hma__free(json);
    return rc;
}
