/* store.c - the tensor store: open one .safetensors file or a model folder
 * (sharded indexes: store_index.c), map it or keep it for pread, and answer
 * lookups: tensor by position or name, metadata, byte reads, zero-copy data. */
#include "io/store_impl.h"

#include "core/fileio.h"
#include "formats/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Returned by hma_tensor_data() for zero-size tensors of a custom store. */
static const unsigned char empty_tensor_byte;

static const char *tensor_name_at(const void *owner, size_t idx, size_t *len) {
    const hma_tensor *t = &((const hma_store *)owner)->tensors[idx];
    *len = t->name_len;
    return t->name;
}

/* ---- opening files ------------------------------------------------------- */

/* Open, validate and (in mmap mode) map one safetensors file into f. */
int hma__store_open_file(const char *path, unsigned flags, hma__store_file *f, hma__st_header *hdr) {
    struct stat st;
    int fd = -1, rc;
    memset(hdr, 0, sizeof *hdr);
    f->fd = -1;
    if ((rc = hma__open_read(path, &fd, &st))) return rc;
    f->size = (uint64_t)st.st_size;
    f->dev = (unsigned long long)st.st_dev;
    f->ino = (unsigned long long)st.st_ino;
    /* The header is read with pread even in mmap mode: a file truncated
     * while we validate then gives an error, not SIGBUS. */
    if ((rc = hma__st_read_header(fd, path, f->size, hdr, NULL))) goto fail;
    if (!(flags & HMA_OPEN_PREAD)) {
        if (f->size > SIZE_MAX) {
            rc = hma__fail(HMA_ERR_OVERFLOW, "%.400s: file too large to map", path);
            goto fail;
        }
        /* size >= 8 here, so the mapping is never empty */
        void *m = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            rc = hma__fail_errno(HMA_ERR_IO, errno, path, "cannot mmap");
            goto fail;
        }
        f->map = m;
        f->map_len = (size_t)f->size;
        close(fd);
        fd = -1;
    }
    f->fd = fd;
    return HMA_OK;
fail:
    if (fd >= 0) close(fd);
    f->fd = -1;
    hma__st_header_free(hdr);
    return rc;
}

int hma__store_add_file(hma_store *s, const char *path) {
    hma__store_file *f = &s->files[s->n_files];
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->path = hma__strdup(path ? path : "");
    if (!f->path) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path ? path : "");
    s->n_files++;
    return HMA_OK;
}

int hma__store_register_file(hma__store_file *f) {
    int rc = hma__registry_add(f->path, f->dev, f->ino);
    if (!rc) f->registered = 1;
    return rc;
}

void hma__store_take_tensors(hma_store *s, hma__st_header *h, size_t file) {
    for (size_t i = 0; i < h->n; i++) {
        hma__st_tensor *src = &h->tensors[i];
        hma_tensor *t = &s->tensors[s->n];
        memset(t, 0, sizeof *t);
        t->name = src->name;
        src->name = NULL;
        t->name_len = strlen(t->name);
        t->dtype = src->dtype;
        t->ndim = src->ndim;
        memcpy(t->shape, src->shape, sizeof t->shape);
        t->nelem = src->nelem;
        t->nbytes = src->nbytes;
        t->offset = h->data_start + src->begin;
        t->index = s->n;
        t->file = file;
        t->store = s;
        s->n++;
    }
}

void hma__store_take_meta(hma_store *s, hma__st_header *h) {
    s->meta = h->meta;
    s->n_meta = h->n_meta;
    h->meta = NULL;
    h->n_meta = 0;
}

static int open_single(hma_store *s, const char *path) {
    hma__st_header h;
    s->files = hma__calloc(1, sizeof *s->files);
    if (!s->files) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
    int rc = hma__store_add_file(s, path);
    if (rc) return rc;
    if ((rc = hma__store_open_file(path, s->flags, &s->files[0], &h))) return rc;
    if ((rc = hma__store_register_file(&s->files[0]))) goto out;
    s->tensors = hma__calloc(h.n ? h.n : 1, sizeof *s->tensors);
    if (!s->tensors) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory for %zu tensors", path, h.n);
        goto out;
    }
    hma__store_take_tensors(s, &h, 0);
    hma__store_take_meta(s, &h);
out:
    hma__st_header_free(&h);
    return rc;
}

/* ---- public API ------------------------------------------------------------- */

void hma_store_close(hma_store *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_files; i++) {
        hma__store_file *f = &s->files[i];
        if (f->map) munmap((void *)f->map, f->map_len);
        if (f->fd >= 0) close(f->fd);
        if (f->registered) hma__registry_remove(f->dev, f->ino);
        hma__free(f->path);
    }
    hma__free(s->files);
    for (size_t i = 0; i < s->n; i++) hma__free(s->tensors[i].name);
    hma__free(s->tensors);
    hma__names_free(&s->names);
    for (size_t i = 0; i < 2 * s->n_meta; i++) hma__free(s->meta[i]);
    hma__free(s->meta);
    if (s->custom && s->be.close) s->be.close(s->ctx);
    hma__free(s);
}

/* The name table; a duplicate name is an error. */
static int finish(hma_store *s, const char *what) {
    if (hma__names_reserve(&s->names, s->n)) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", what);
    for (size_t i = 0; i < s->n; i++) {
        const hma_tensor *t = &s->tensors[i];
        if (hma__names_find(&s->names, t->name, t->name_len, tensor_name_at, s) != HMA_NPOS) {
            char q[200];
            hma__quote_name(q, sizeof q, t->name, t->name_len);
            return hma__fail(s->custom ? HMA_ERR_BAD_NAME : HMA_ERR_INDEX_MISMATCH,
                             "%.400s: tensor '%s' appears twice (expected unique names)", what, q);
        }
        if (hma__names_add(&s->names, t->name, t->name_len, i))
            return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", what);
    }
    return HMA_OK;
}

/* 1 if the file starts with GGUF's magic (a safetensors file cannot: its
 * first 8 bytes are a header length, and "GGUF" there would exceed
 * HMA_MAX_HEADER_SIZE). Errors are left to the real open. */
static int is_gguf(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return 0;
    unsigned char b[4];
    size_t got = 0;
    int ok = hma__pread_upto(fd, path, b, 4, 0, &got) == HMA_OK && got == 4 && hma__gguf_magic(b);
    close(fd);
    return ok;
}

int hma_store_open(hma_store **out, const char *path, unsigned flags) {
    if (!out || !path)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_store_open: %s is NULL", !out ? "out" : "path");
    if (flags & ~(unsigned)HMA_OPEN_PREAD)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_store_open: unknown flags 0x%x (expected HMA_OPEN_PREAD or 0)",
                         flags & ~(unsigned)HMA_OPEN_PREAD);
    if (!*path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_store_open: empty path");
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        return hma__fail_errno(e == ENOENT || e == ENOTDIR ? HMA_ERR_NOT_FOUND : HMA_ERR_IO, e, path, "cannot open");
    }
    /* A ".json" path is an index whatever its bytes (as when a folder names
     * it); any other file is GGUF when it starts with GGUF's magic. */
    if (!S_ISDIR(st.st_mode) && !hma__ends_with(path, ".json") && is_gguf(path))
        return hma__store_open_gguf(out, path, flags);
    hma_store *s = hma__calloc(1, sizeof *s);
    if (!s) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
    s->flags = flags;
    int rc;
    char *p1 = NULL, *p2 = NULL;
    if (S_ISDIR(st.st_mode)) {
        p1 = hma__path_join(path, "model.safetensors.index.json");
        p2 = hma__path_join(path, "model.safetensors");
        if (!p1 || !p2) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
        } else if (stat(p1, &st) == 0) {
            rc = hma__store_open_index(s, p1);
        } else if (stat(p2, &st) == 0) {
            rc = open_single(s, p2);
        } else {
            rc = hma__fail(HMA_ERR_NOT_FOUND,
                           "%.400s: folder holds neither model.safetensors.index.json nor model.safetensors (expected one of them)",
                           path);
        }
    } else if (hma__ends_with(path, ".json")) {
        rc = hma__store_open_index(s, path);
    } else {
        rc = open_single(s, path);
    }
    if (!rc) rc = finish(s, path);
    hma__free(p1);
    hma__free(p2);
    if (rc) {
        hma_store_close(s);
        return rc;
    }
    *out = s;
    return HMA_OK;
}

int hma__store_create_custom(hma_store **out, const char *path, const hma__tensor_decl *decls, size_t n,
                             const char *const *meta, size_t n_meta, const hma__store_backend *be,
                             void *ctx) {
    if (!out || !be || !be->read || !be->close || (n && !decls) || (n_meta && !meta)) {
        if (be && be->close) be->close(ctx);
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma__store_create_custom: NULL argument");
    }
    hma_store *s = hma__calloc(1, sizeof *s);
    if (!s) {
        be->close(ctx);
        return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path ? path : "");
    }
    s->custom = 1;
    s->be = *be;
    s->ctx = ctx;
    const char *p = path ? path : "";
    int rc;
    s->files = hma__calloc(1, sizeof *s->files);
    s->tensors = hma__calloc(n ? n : 1, sizeof *s->tensors);
    s->meta = hma__calloc(n_meta ? 2 * n_meta : 1, sizeof *s->meta);
    if (!s->files || !s->tensors || !s->meta) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", p);
        goto fail;
    }
    if ((rc = hma__store_add_file(s, p))) goto fail;
    for (size_t i = 0; i < n; i++) {
        const hma__tensor_decl *d = &decls[i];
        hma_tensor *t = &s->tensors[i];
        char q[200];
        if (!d->name || !*d->name || strlen(d->name) > HMA_MAX_NAME) {
            rc = hma__fail(HMA_ERR_BAD_NAME, "%.400s: tensor %zu: name is %s (expected 1 to %u bytes)", p, i,
                           !d->name ? "NULL" : !*d->name ? "empty" : "too long", HMA_MAX_NAME);
            goto fail;
        }
        hma__quote_name(q, sizeof q, d->name, strlen(d->name));
        if (!hma_dtype_name((int)d->dtype)) {
            rc = hma__fail(HMA_ERR_BAD_DTYPE, "%.400s: tensor '%s': invalid dtype %d", p, q, (int)d->dtype);
            goto fail;
        }
        if (d->ndim > HMA_MAX_DIMS || (d->ndim && !d->shape)) {
            rc = hma__fail(HMA_ERR_BAD_SHAPE, "%.400s: tensor '%s': %u dimensions%s (expected at most %u)", p, q,
                           d->ndim, d->ndim && !d->shape ? " but no shape" : "", HMA_MAX_DIMS);
            goto fail;
        }
        t->name = hma__strdup(d->name);
        if (!t->name) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", p);
            goto fail;
        }
        s->n = i + 1;
        t->name_len = strlen(t->name);
        t->dtype = d->dtype;
        t->ndim = d->ndim;
        t->nelem = 1;
        int zero = 0;
        for (unsigned k = 0; k < d->ndim; k++) {
            t->shape[k] = d->shape[k];
            zero |= d->shape[k] == 0;
        }
        if (zero) {
            t->nelem = 0;
        } else {
            for (unsigned k = 0; k < d->ndim; k++)
                if (hma__mul_overflows(t->nelem, t->shape[k], &t->nelem)) {
                    rc = hma__fail(HMA_ERR_BAD_SHAPE, "%.400s: tensor '%s': the product of the shape overflows 64 bits", p, q);
                    goto fail;
                }
        }
        int r = hma__dtype_nbytes(t->dtype, t->nelem, &t->nbytes);
        if (r) {
            rc = hma__fail(r == 1 ? HMA_ERR_OVERFLOW : HMA_ERR_SIZE_MISMATCH,
                           "%.400s: tensor '%s': %llu elements of %s %s", p, q, (unsigned long long)t->nelem,
                           hma_dtype_name(t->dtype), r == 1 ? "overflow a 64-bit byte count" : "are not whole bytes");
            goto fail;
        }
        t->index = i;
        t->file = 0;
        t->store = s;
    }
    for (size_t i = 0; i < 2 * n_meta; i++) {
        if (!meta[i]) {
            rc = hma__fail(HMA_ERR_INVALID_ARGUMENT, "%.400s: metadata entry %zu is NULL", p, i / 2);
            goto fail;
        }
        s->meta[i] = hma__strdup(meta[i]);
        s->n_meta = i / 2 + 1; /* so that close frees what was copied */
        if (!s->meta[i]) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", p);
            goto fail;
        }
    }
    if ((rc = finish(s, p))) goto fail;
    *out = s;
    return HMA_OK;
fail:
    hma_store_close(s); /* closes ctx */
    return rc;
}

size_t hma_store_count(const hma_store *s) { return s ? s->n : 0; }

const hma_tensor *hma_store_tensor(const hma_store *s, size_t i) {
    return s && i < s->n ? &s->tensors[i] : NULL;
}

const hma_tensor *hma_store_find(const hma_store *s, const char *name) {
    if (!s || !name) return NULL;
    size_t i = hma__names_find(&s->names, name, strlen(name), tensor_name_at, s);
    return i == HMA_NPOS ? NULL : &s->tensors[i];
}

size_t hma_store_metadata_count(const hma_store *s) { return s ? s->n_meta : 0; }

int hma_store_metadata_at(const hma_store *s, size_t i, const char **key, const char **value) {
    if (!s || i >= s->n_meta)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_store_metadata_at: index %zu out of range (expected < %zu)", i,
                         s ? s->n_meta : 0);
    if (key) *key = s->meta[2 * i];
    if (value) *value = s->meta[2 * i + 1];
    return HMA_OK;
}

const char *hma_store_metadata(const hma_store *s, const char *key) {
    if (!s || !key) return NULL;
    for (size_t i = 0; i < s->n_meta; i++)
        if (strcmp(s->meta[2 * i], key) == 0) return s->meta[2 * i + 1];
    return NULL;
}

size_t hma_store_file_count(const hma_store *s) { return s ? s->n_files : 0; }

const char *hma_store_file_path(const hma_store *s, size_t i) {
    return s && i < s->n_files ? s->files[i].path : NULL;
}

int hma_store_read(const hma_store *s, const hma_tensor *t, uint64_t offset, void *buf, size_t len) {
    if (!s || !t || (!buf && len))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_store_read: NULL %s", !s ? "store" : !t ? "tensor" : "buffer");
    if (t->store != s)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_store_read: tensor '%.200s' belongs to another store", t->name);
    uint64_t end;
    if (hma__add_overflows(offset, (uint64_t)len, &end) || end > t->nbytes) {
        char q[200];
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "%.400s: tensor '%s': read of %zu bytes at offset %llu is past its %llu bytes", s->files[t->file].path,
                         hma__quote_name(q, sizeof q, t->name, t->name_len), len, (unsigned long long)offset,
                         (unsigned long long)t->nbytes);
    }
    if (len == 0) return HMA_OK;
    if (s->custom) return s->be.read(s->ctx, t->index, offset, buf, len);
    const hma__store_file *f = &s->files[t->file];
    if (f->map) {
        memcpy(buf, f->map + t->offset + offset, len);
        return HMA_OK;
    }
    uint64_t at = t->offset + offset;
    size_t got;
    char q[200];
    hma__quote_name(q, sizeof q, t->name, t->name_len);
    int rc = hma__pread_upto(f->fd, f->path, buf, len, at, &got);
    if (rc) return hma__fail_prefix(rc, "tensor '%s' (%zu bytes at file byte %llu)", q, len, (unsigned long long)at);
    if (got != len)
        return hma__fail(HMA_ERR_TRUNCATED,
                         "%.400s: tensor '%s': file ends at byte %llu, inside the tensor (expected at least %llu bytes; the file shrank after it was opened)",
                         f->path, q, (unsigned long long)(at + (uint64_t)got), (unsigned long long)f->size);
    return HMA_OK;
}

const char *hma_tensor_name(const hma_tensor *t) { return t ? t->name : NULL; }
hma_dtype hma_tensor_dtype(const hma_tensor *t) { return t ? t->dtype : HMA_DTYPE_COUNT; }
unsigned hma_tensor_ndim(const hma_tensor *t) { return t ? t->ndim : 0; }
const uint64_t *hma_tensor_shape(const hma_tensor *t) { return t ? t->shape : NULL; }
uint64_t hma_tensor_nelements(const hma_tensor *t) { return t ? t->nelem : 0; }
uint64_t hma_tensor_nbytes(const hma_tensor *t) { return t ? t->nbytes : 0; }
size_t hma_tensor_index(const hma_tensor *t) { return t ? t->index : 0; }
size_t hma_tensor_file(const hma_tensor *t) { return t ? t->file : 0; }

void hma__tensor_release(const hma_tensor *t, uint64_t off, uint64_t len) {
    if (!t || t->store->custom || off > t->nbytes || len > t->nbytes - off) return;
    const hma__store_file *f = &t->store->files[t->file];
    if (!f->map) return;
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t pg = ps > 0 ? (uintptr_t)ps : 4096u;
    uintptr_t b = (uintptr_t)(f->map + t->offset + off), e = b + (uintptr_t)len;
    b = (b + pg - 1) & ~(pg - 1);
    e &= ~(pg - 1);
    if (e > b) (void)madvise((void *)b, e - b, MADV_DONTNEED);
}

int hma_tensor_data_get(const hma_tensor *t, const void **data) {
    if (data) *data = NULL;
    if (!t || !data)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_tensor_data_get: NULL %s", !t ? "tensor" : "data");
    const hma_store *s = t->store;
    if (!s->custom) {
        const hma__store_file *f = &s->files[t->file];
        *data = f->map ? f->map + t->offset : NULL; /* pread mode: no pointer, not an error */
        return HMA_OK;
    }
    if (s->be.no_data && s->be.no_data(s->ctx, t->index)) return HMA_OK; /* e.g. GGUF quantized: read instead */
    if (!s->be.data) return HMA_OK; /* a backend without zero-copy bytes (pread mode): read them instead */
    if (t->nbytes == 0) {
        *data = &empty_tensor_byte;
        return HMA_OK;
    }
    const void *p = s->be.data(s->ctx, t->index);
    if (!p) {
        /* The backend has set the thread's error (see store.h). */
        int code = hma_last_error_code();
        if (code == HMA_OK)
            code = hma__fail(HMA_ERR_CORRUPT, "%.400s: tensor '%.200s': cannot be decoded", s->files[0].path, t->name);
        return code;
    }
    *data = p;
    return HMA_OK;
}

const void *hma_tensor_data(const hma_tensor *t) {
    const void *p;
    hma_tensor_data_get(t, &p);
    return p;
}

void hma__shape_str(const hma_tensor *t, const char *sep, char *buf, size_t cap) {
    size_t n = 0;
    unsigned nd = hma_tensor_ndim(t);
    const uint64_t *sh = hma_tensor_shape(t);
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (unsigned d = 0; d < nd && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%llu", d ? sep : "", (unsigned long long)sh[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}
