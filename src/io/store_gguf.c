/* store_gguf.c - a GGUF file as a tensor store: F32/F16/BF16 tensors served
 * as they lie in the file (zero-copy in mmap mode), block-quantized ones
 * (formats/quants.h) presented as F32 tensors whose reads dequantize only the
 * blocks covering the requested bytes (bounded memory). Header parsing and
 * validation: formats/gguf.c. */
#include "io/store_impl.h"

#include "core/fileio.h"
#include "formats/gguf.h"
#include "formats/quants.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The public enum names ggml's numbers (ggml.h enum ggml_type) for every type the reader admits. */
_Static_assert((int)HMA_GGUF_F32 == (int)HMA__GGML_F32 && (int)HMA_GGUF_F16 == (int)HMA__GGML_F16 && (int)HMA_GGUF_BF16 == (int)HMA__GGML_BF16 &&
                   (int)HMA_GGUF_Q4_0 == (int)HMA__GGML_Q4_0 && (int)HMA_GGUF_Q4_1 == (int)HMA__GGML_Q4_1 &&
                   (int)HMA_GGUF_Q5_0 == (int)HMA__GGML_Q5_0 && (int)HMA_GGUF_Q5_1 == (int)HMA__GGML_Q5_1 &&
                   (int)HMA_GGUF_Q8_0 == (int)HMA__GGML_Q8_0 && (int)HMA_GGUF_Q4_K == (int)HMA__GGML_Q4_K &&
                   (int)HMA_GGUF_Q5_K == (int)HMA__GGML_Q5_K && (int)HMA_GGUF_Q6_K == (int)HMA__GGML_Q6_K,
               "hma_gguf_type and the reader's ggml type numbers disagree");

typedef struct gctx {
    char *path;
    int fd;                   /* pread mode, else -1 */
    const unsigned char *map; /* mmap mode */
    size_t map_len;
    unsigned long long dev, ino;
    int registered;
    hma__gguf g;
} gctx;

static void g_close(void *p) {
    gctx *c = p;
    if (!c) return;
    if (c->map) munmap((void *)c->map, c->map_len);
    if (c->fd >= 0) close(c->fd);
    if (c->registered) hma__registry_remove(c->dev, c->ino);
    hma__gguf_free(&c->g);
    hma__free(c->path);
    hma__free(c);
}

/* len raw bytes at file byte `at` (inside the validated data section). */
static int raw(const gctx *c, const hma__gguf_tensor *t, uint64_t at, void *buf, size_t len) {
    if (c->map) {
        memcpy(buf, c->map + at, len);
        return HMA_OK;
    }
    size_t got;
    int rc = hma__pread_upto(c->fd, c->path, buf, len, at, &got);
    if (rc) return hma__fail_prefix(rc, "tensor '%.200s' (%zu bytes at file byte %llu)", t->name, len, (unsigned long long)at);
    if (got != len)
        return hma__fail(HMA_ERR_TRUNCATED, "%.400s: tensor '%.200s': file ends at byte %llu, inside the tensor (the file shrank after it was opened)",
                         c->path, t->name, (unsigned long long)(at + got));
    return HMA_OK;
}

#define CHUNK 2048u /* floats decoded at a time: a multiple of every block size (32, 256) */

static int g_read(void *p, size_t i, uint64_t offset, void *buf, size_t len) {
    const gctx *c = p;
    const hma__gguf_tensor *t = &c->g.tensors[i];
    if (!hma__ggml_is_quant(t->type)) return raw(c, t, t->offset + offset, buf, len);
    /* Presented as F32: decode the blocks that hold bytes [offset, offset + len). */
    const unsigned bs = hma__ggml_blck_size(t->type), ts = hma__ggml_type_size(t->type);
    float y[CHUNK];
    unsigned char q[CHUNK / 32 * 34]; /* the most raw bytes CHUNK floats take (q8_0: 34 per 32) */
    uint64_t end = offset + len, e = offset / 4 / CHUNK * CHUNK; /* first element of the chunk */
    unsigned char *out = buf;
    while (e * 4 < end) {
        uint64_t n = t->nelem - e < CHUNK ? t->nelem - e : CHUNK; /* a multiple of bs: rows are whole blocks */
        uint64_t nb = n / bs;
        int rc = raw(c, t, t->offset + e / bs * ts, q, (size_t)(nb * ts));
        if (rc) return rc;
        hma__dequant_blocks(t->type, q, (size_t)nb, y);
        uint64_t lo = e * 4 > offset ? e * 4 : offset, hi = (e + n) * 4 < end ? (e + n) * 4 : end;
        memcpy(out + (lo - offset), (const unsigned char *)y + (lo - e * 4), (size_t)(hi - lo));
        e += n;
    }
    return HMA_OK;
}

static const void *g_data(void *p, size_t i) {
    const gctx *c = p;
    return c->map + c->g.tensors[i].offset;
}

static int g_no_data(void *p, size_t i) {
    const gctx *c = p;
    return !c->map || hma__ggml_is_quant(c->g.tensors[i].type);
}

int hma__store_open_gguf(hma_store **out, const char *path, unsigned flags) {
    struct stat st;
    int fd = -1, rc;
    gctx *c = hma__calloc(1, sizeof *c);
    if (!c) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
    c->fd = -1;
    if (!(c->path = hma__strdup(path))) {
        g_close(c);
        return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
    }
    if ((rc = hma__open_read(path, &fd, &st))) goto fail;
    uint64_t size = (uint64_t)st.st_size;
    c->dev = (unsigned long long)st.st_dev;
    c->ino = (unsigned long long)st.st_ino;
    if ((rc = hma__gguf_read(fd, path, size, &c->g))) goto fail; /* pread even in mmap mode: no SIGBUS */
    if (!(flags & HMA_OPEN_PREAD)) {
        if (size > SIZE_MAX) {
            rc = hma__fail(HMA_ERR_OVERFLOW, "%.400s: file too large to map", path);
            goto fail;
        }
        void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0); /* size >= 24: never empty */
        if (m == MAP_FAILED) {
            rc = hma__fail_errno(HMA_ERR_IO, errno, path, "cannot mmap");
            goto fail;
        }
        c->map = m;
        c->map_len = (size_t)size;
        close(fd);
        fd = -1;
    }
    c->fd = fd;
    fd = -1;
    if ((rc = hma__registry_add(path, c->dev, c->ino))) goto fail;
    c->registered = 1;
    hma__tensor_decl *d = hma__calloc(c->g.n ? c->g.n : 1, sizeof *d);
    if (!d) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
        goto fail;
    }
    for (size_t i = 0; i < c->g.n; i++) {
        const hma__gguf_tensor *t = &c->g.tensors[i];
        d[i].name = t->name;
        d[i].dtype = t->type == HMA__GGML_F16    ? HMA_DTYPE_F16
                     : t->type == HMA__GGML_BF16 ? HMA_DTYPE_BF16
                                                 : HMA_DTYPE_F32; /* f32, and every quantized type */
        d[i].ndim = t->ndim;
        d[i].shape = t->shape;
    }
    static const hma__store_backend be = {g_read, g_data, g_close, g_no_data};
    rc = hma__store_create_custom(out, path, d, c->g.n, (const char *const *)c->g.meta, c->g.n_meta, &be, c);
    hma__free(d);
    return rc; /* the store owns c from here, also on failure */
fail:
    if (fd >= 0) close(fd);
    g_close(c);
    return rc;
}

/* ---- typed access for the GGUF writer (io/store.h) ----------------------- */

static const gctx *gguf_ctx(const hma_store *s) {
    return s && s->custom && s->be.close == g_close ? (const gctx *)s->ctx : NULL;
}

size_t hma__store_gguf_kv_count(const hma_store *s) {
    const gctx *c = gguf_ctx(s);
    return c ? c->g.n_meta : 0;
}

int hma__store_gguf_kv(const hma_store *s, size_t i, const char **key, uint32_t *type, const unsigned char **val,
                       uint64_t *len) {
    const gctx *c = gguf_ctx(s);
    if (!c || i >= c->g.n_meta) return HMA_ERR_INVALID_ARGUMENT;
    *key = c->g.meta[2 * i];
    *type = c->g.kv_type[i];
    *val = c->g.kv_raw[i];
    *len = c->g.kv_len[i];
    return HMA_OK;
}

int hma__store_gguf_tensor_type(const hma_store *s, size_t i) {
    const gctx *c = gguf_ctx(s);
    return c && i < c->g.n ? c->g.tensors[i].type : -1;
}

hma_gguf_type hma_tensor_gguf_type(const hma_tensor *t) {
    int ty = t ? hma__store_gguf_tensor_type(t->store, t->index) : -1;
    return ty < 0 ? HMA_GGUF_NONE : (hma_gguf_type)ty; /* the reader admits only types libhma knows */
}

const char *hma_gguf_type_name(hma_gguf_type type) { return (int)type >= 0 ? hma__ggml_type_name((int)type) : NULL; }
