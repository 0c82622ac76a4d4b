/*
 * read.c - the pack reader: open a pack file (fixed header, index, base
 * check), decode one chunk with every checksum checked, and serve a pack as
 * a store (hma_pack_open), decoding only the chunks a read covers.
 */
#include "pack/pack.h"
#include "core/fileio.h"
#include "io/store.h"

#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ======================================================================= */
/* Per-worker scratch                                                      */
/* ======================================================================= */

void hma__pk_scratch_free(hma__pk_scratch *s) {
    if (!s) return;
    hma__pc_ctx_free(s->cc);
    hma__free(s->raw);
    hma__free(s->basebuf);
    hma__free(s->payload);
    memset(s, 0, sizeof *s);
}

int hma__pk_scratch_init(hma__pk_scratch *s, size_t cs) {
    memset(s, 0, sizeof *s);
    int rc = hma__pc_ctx_new(&s->cc, cs);
    s->raw = hma__malloc(cs);
    s->basebuf = hma__malloc(cs);
    s->payload = hma__malloc(hma__pc_bound(cs));
    if (rc || !s->raw || !s->basebuf || !s->payload) {
        hma__pk_scratch_free(s);
        return hma__fail(HMA_ERR_NO_MEMORY, "pack: out of memory for chunk buffers (%zu bytes)", cs);
    }
    return HMA_OK;
}

hma__pk_ref *hma__pk_refs(const hma__st_header *hdr, uint64_t cs, size_t nchunks) {
    hma__pk_ref *r = hma__malloc((nchunks ? nchunks : 1) * sizeof *r);
    if (!r) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < hdr->n; i++)
        for (size_t c = 0; (uint64_t)c * cs < hdr->tensors[i].nbytes && k < nchunks; c++) r[k++] = (hma__pk_ref){i, c};
    return r;
}

/* ======================================================================= */
/* Opening a pack file                                                     */
/* ======================================================================= */

void hma__pk_close(hma__pk_file *p) {
    if (!p) return;
    if (p->registered) hma__registry_remove(p->dev, p->ino);
    if (p->fd >= 0) close(p->fd);
    hma__st_header_free(&p->hdr);
    hma__pk_index_free(&p->ix);
    hma__free(p->index);
    hma__free(p->bt);
    hma__free(p->path);
    memset(p, 0, sizeof *p);
    p->fd = -1;
}

int hma__pk_open_fixed(hma__pk_file *p, const char *path) {
    memset(p, 0, sizeof *p);
    p->fd = -1;
    unsigned char h[HMA__PK_FIXED_SIZE];
    struct stat sb;
    int rc;
    if (!(p->path = hma__strdup(path))) return hma__fail(HMA_ERR_NO_MEMORY, "out of memory");
    if ((rc = hma__open_read(path, &p->fd, &sb))) return rc;
    p->file_size = (uint64_t)sb.st_size;
    p->dev = (unsigned long long)sb.st_dev;
    p->ino = (unsigned long long)sb.st_ino;
    if (p->file_size < HMA__PK_FIXED_SIZE)
        return hma__fail(HMA_ERR_TRUNCATED, "%.400s: %llu bytes, shorter than a pack header (%u bytes)", path,
                         (unsigned long long)p->file_size, HMA__PK_FIXED_SIZE);
    if ((rc = hma__pread_full(p->fd, path, h, HMA__PK_FIXED_SIZE, 0))) return rc;
    return hma__pk_fixed_decode(path, h, p->file_size, &p->fx);
}

static int pk_open(hma__pk_file *p, const char *path, const hma_store *base, unsigned threads) {
    int rc;
    if ((rc = hma__pk_open_fixed(p, path))) return rc;
    const hma__pk_fixed *f = &p->fx;
    if (f->index_len > SIZE_MAX) return hma__fail(HMA_ERR_OVERFLOW, "%.400s: index too large", path);
    p->index = hma__malloc(f->index_len ? (size_t)f->index_len : 1);
    if (!p->index)
        return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory for a %llu-byte index", path,
                         (unsigned long long)f->index_len);
    if ((rc = hma__pread_full(p->fd, path, p->index, (size_t)f->index_len, f->index_off))) return rc;
    if ((rc = hma__pk_index_decode(path, f, p->index, &p->ix, &p->hdr))) return rc;
    if ((rc = hma__registry_add(path, p->dev, p->ino))) return rc;
    p->registered = 1;
    if (!(f->flags & HMA__PK_FLAG_BASE)) return HMA_OK;
    if (!base)
        return hma__fail(HMA_ERR_WRONG_BASE,
                         "%.400s: this pack was made against a base (checksum %016llx); open it with that base", path,
                         (unsigned long long)f->base_sum);
    uint64_t sum;
    if ((rc = hma__pk_base_checksum(base, threads, &sum)))
        return hma__fail_prefix(rc, "%.400s: checking the base", path);
    if (sum != f->base_sum)
        return hma__fail(HMA_ERR_WRONG_BASE,
                         "%.400s: wrong base: the pack was made against a base with checksum %016llx, the base given (%.300s) has %016llx",
                         path, (unsigned long long)f->base_sum,
                         hma_store_file_count(base) ? hma_store_file_path(base, 0) : "?", (unsigned long long)sum);
    p->base = base;
    if (!(p->bt = hma__calloc(p->hdr.n ? p->hdr.n : 1, sizeof *p->bt)))
        return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
    for (size_t i = 0; i < p->hdr.n; i++) {
        if (p->ix.t[i].coding != HMA__PK_CODING_BASE) continue;
        const hma__st_tensor *st = &p->hdr.tensors[i];
        const hma_tensor *bt = hma_store_find(base, st->name);
        if (!bt || !hma__pk_same_shape(st, bt))
            return hma__fail(HMA_ERR_WRONG_BASE, "%.400s: tensor '%.200s' is coded against a base tensor the base lacks",
                             path, st->name);
        p->bt[i] = bt;
    }
    return HMA_OK;
}

int hma__pk_open(hma__pk_file *p, const char *path, const hma_store *base, unsigned threads) {
    int rc = pk_open(p, path, base, threads);
    if (rc) hma__pk_close(p);
    return rc;
}

int hma__pk_decode_chunk(const hma__pk_file *p, size_t ti, size_t c, hma__pk_scratch *s, uint8_t *dst) {
    const hma__st_tensor *st = &p->hdr.tensors[ti];
    const hma__pk_tensor *t = &p->ix.t[ti];
    const hma__pk_chunk *ch = &p->ix.chunks[t->first + c];
    const uint64_t cs = p->fx.chunk_size;
    uint64_t start = (uint64_t)c * cs;
    size_t raw = hma__pk_chunk_raw(st->nbytes, cs, c);
    int rc = hma__pread_full(p->fd, p->path, s->payload, ch->len, ch->off);
    if (rc) return rc;
    /* The payload is checked before it is decoded: a damaged byte that
     * would happen to decode to the same data is still reported. */
    if (hma__xxh64(s->payload, ch->len, 0) != ch->psum)
        return hma__fail(HMA_ERR_CORRUPT,
                         "%.400s: tensor '%.200s': chunk %zu (pack bytes [%llu, +%u)): payload checksum mismatch (the pack is damaged)",
                         p->path, st->name, c, (unsigned long long)ch->off, ch->len);
    const uint8_t *basep = NULL;
    if (t->coding == HMA__PK_CODING_BASE) {
        rc = hma_store_read(p->base, p->bt[ti], start, s->basebuf, raw);
        if (rc) return hma__fail_prefix(rc, "%.400s: tensor '%.200s': reading the base", p->path, st->name);
        basep = s->basebuf;
    }
    hma__pc_fmt fmt;
    hma__pk_dtype_fmt(st->dtype, &fmt);
    const char *why = "";
    rc = hma__pc_decode(s->cc, ch->method, fmt, s->payload, ch->len, basep, dst, raw, &why);
    if (rc)
        return hma__fail(rc, "%.400s: tensor '%.200s': chunk %zu (bytes [%llu, %llu) of the tensor, pack bytes [%llu, +%u)): %s",
                         p->path, st->name, c, (unsigned long long)start, (unsigned long long)(start + raw),
                         (unsigned long long)ch->off, ch->len, why);
    if (hma__xxh64(dst, raw, 0) != ch->sum)
        return hma__fail(HMA_ERR_CORRUPT,
                         "%.400s: tensor '%.200s': chunk %zu (bytes [%llu, %llu) of the tensor): checksum of the decoded bytes does not match",
                         p->path, st->name, c, (unsigned long long)start, (unsigned long long)(start + raw));
    return HMA_OK;
}

/* ======================================================================= */
/* Pack as a store                                                         */
/* ======================================================================= */

typedef struct pk_store {
    hma__pk_file f;
    pthread_mutex_t pool_lock;
    hma__pk_scratch **pool; /* idle scratch, reused across reads */
    size_t npool, cap_pool;
    pthread_mutex_t *tlock; /* one per tensor; NULL in pread mode */
    uint8_t **data;         /* decoded tensors, NULL until first hma_tensor_data(); NULL in pread mode */
} pk_store;

static hma__pk_scratch *pool_get(pk_store *s) {
    hma__pk_scratch *x = NULL;
    pthread_mutex_lock(&s->pool_lock);
    if (s->npool) x = s->pool[--s->npool];
    pthread_mutex_unlock(&s->pool_lock);
    if (x) return x;
    x = hma__calloc(1, sizeof *x);
    if (!x) {
        hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", s->f.path);
        return NULL;
    }
    if (hma__pk_scratch_init(x, (size_t)s->f.fx.chunk_size)) {
        hma__free(x);
        return NULL;
    }
    return x;
}

static void pool_put(pk_store *s, hma__pk_scratch *x) {
    pthread_mutex_lock(&s->pool_lock);
    if (s->npool == s->cap_pool) {
        size_t nc = s->cap_pool ? 2 * s->cap_pool : 4;
        hma__pk_scratch **np = hma__realloc(s->pool, nc * sizeof *np);
        if (!np) {
            pthread_mutex_unlock(&s->pool_lock);
            hma__pk_scratch_free(x);
            hma__free(x);
            return;
        }
        s->pool = np;
        s->cap_pool = nc;
    }
    s->pool[s->npool++] = x;
    pthread_mutex_unlock(&s->pool_lock);
}

static int ps_read(void *ctx, size_t i, uint64_t offset, void *buf, size_t len) {
    pk_store *s = ctx;
    if (s->data) {
        pthread_mutex_lock(&s->tlock[i]);
        const uint8_t *d = s->data[i];
        pthread_mutex_unlock(&s->tlock[i]);
        if (d) {
            if (len) memcpy(buf, d + offset, len);
            return HMA_OK;
        }
    }
    if (len == 0) return HMA_OK;
    hma__pk_scratch *x = pool_get(s);
    if (!x) return hma_last_error_code();
    const uint64_t cs = s->f.fx.chunk_size, nbytes = s->f.hdr.tensors[i].nbytes;
    uint64_t end = offset + len;
    int rc = HMA_OK;
    for (uint64_t c = offset / cs; c * cs < end; c++) {
        uint64_t cstart = c * cs, cend = cstart + cs < nbytes ? cstart + cs : nbytes;
        uint64_t a = offset > cstart ? offset : cstart, b = end < cend ? end : cend;
        uint8_t *out = (uint8_t *)buf + (a - offset);
        if (a == cstart && b == cend) { /* whole chunk: decode in place */
            if ((rc = hma__pk_decode_chunk(&s->f, i, (size_t)c, x, out))) break;
        } else {
            if ((rc = hma__pk_decode_chunk(&s->f, i, (size_t)c, x, x->raw))) break;
            memcpy(out, x->raw + (a - cstart), (size_t)(b - a));
        }
    }
    pool_put(s, x);
    return rc;
}

static const void *ps_data(void *ctx, size_t i) {
    pk_store *s = ctx;
    pthread_mutex_lock(&s->tlock[i]);
    uint8_t *d = s->data[i];
    if (!d) {
        const hma__st_tensor *st = &s->f.hdr.tensors[i];
        if (st->nbytes > SIZE_MAX || !(d = hma__malloc((size_t)st->nbytes))) {
            hma__fail(HMA_ERR_NO_MEMORY, "%.400s: tensor '%.200s': out of memory for %llu bytes", s->f.path, st->name,
                      (unsigned long long)st->nbytes);
        } else {
            hma__pk_scratch *x = pool_get(s);
            int rc = x ? HMA_OK : HMA_ERR_NO_MEMORY;
            for (size_t c = 0; !rc && c < s->f.ix.t[i].nchunks; c++)
                rc = hma__pk_decode_chunk(&s->f, i, c, x, d + (uint64_t)c * s->f.fx.chunk_size);
            if (x) pool_put(s, x);
            if (rc) {
                hma__free(d);
                d = NULL;
            } else {
                s->data[i] = d;
            }
        }
    }
    pthread_mutex_unlock(&s->tlock[i]);
    return d;
}

static void ps_close(void *ctx) {
    pk_store *s = ctx;
    if (!s) return;
    for (size_t i = 0; i < s->npool; i++) {
        hma__pk_scratch_free(s->pool[i]);
        hma__free(s->pool[i]);
    }
    hma__free(s->pool);
    if (s->tlock) {
        for (size_t i = 0; i < s->f.hdr.n; i++) pthread_mutex_destroy(&s->tlock[i]);
        hma__free(s->tlock);
    }
    if (s->data)
        for (size_t i = 0; i < s->f.hdr.n; i++) hma__free(s->data[i]);
    hma__free(s->data);
    pthread_mutex_destroy(&s->pool_lock);
    hma__pk_close(&s->f);
    hma__free(s);
}

int hma_pack_open(hma_store **out, const char *pack_path, const hma_store *base, unsigned flags, unsigned threads) {
    if (!out || !pack_path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_pack_open: NULL argument");
    if (flags & ~(unsigned)HMA_OPEN_PREAD)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_pack_open: unknown flags 0x%x (expected HMA_OPEN_PREAD or 0)",
                         flags & ~(unsigned)HMA_OPEN_PREAD);
    const int pread_only = (flags & HMA_OPEN_PREAD) != 0;
    pk_store *s = hma__calloc(1, sizeof *s);
    if (!s) return hma__fail(HMA_ERR_NO_MEMORY, "hma_pack_open: out of memory");
    s->f.fd = -1;
    pthread_mutex_init(&s->pool_lock, NULL);
    int rc = hma__pk_open(&s->f, pack_path, base, threads);
    size_t n = s->f.hdr.n;
    hma__tensor_decl *decls = NULL;
    if (!rc) {
        decls = hma__calloc(n ? n : 1, sizeof *decls);
        if (!pread_only) {
            s->tlock = hma__calloc(n ? n : 1, sizeof *s->tlock);
            s->data = hma__calloc(n ? n : 1, sizeof *s->data);
        }
        if (!decls || (!pread_only && (!s->tlock || !s->data))) {
            hma__free(s->tlock);
            s->tlock = NULL;
            rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", pack_path);
        }
    }
    if (rc) {
        hma__free(decls);
        ps_close(s);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (s->tlock) pthread_mutex_init(&s->tlock[i], NULL);
        const hma__st_tensor *st = &s->f.hdr.tensors[i];
        decls[i] = (hma__tensor_decl){st->name, st->dtype, st->ndim, st->shape};
    }
    /* HMA_OPEN_PREAD: no whole-tensor decoding (hma_tensor_data() gives NULL). */
    static const hma__store_backend be = {ps_read, ps_data, ps_close, NULL};
    static const hma__store_backend be_pread = {ps_read, NULL, ps_close, NULL};
    rc = hma__store_create_custom(out, pack_path, decls, n, (const char *const *)s->f.hdr.meta, s->f.hdr.n_meta,
                                  pread_only ? &be_pread : &be, s);
    hma__free(decls);
    return rc; /* on failure the store closed ctx */
}
