/* store.c - open a checkpoint (one .safetensors file, a sharded index, or a
 * model folder), validate it completely, map it (or keep it for pread), and
 * answer lookups: tensor by position or name, metadata, and byte reads. */
#include "io/store.h"

#include "json.h"
#include "formats/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct hma_tensor {
    char *name; /* owned */
    size_t name_len;
    hma_dtype dtype;
    unsigned ndim;
    uint64_t shape[HMA_MAX_DIMS]; /* inline: non-NULL even for scalars */
    uint64_t nelem, nbytes;
    uint64_t offset; /* file byte where the data begins (file stores) */
    size_t index, file;
    const hma_store *store;
};

typedef struct store_file {
    char *path;
    int fd;                   /* open in pread mode, else -1 */
    const unsigned char *map; /* whole file, in mmap mode */
    size_t map_len;
    uint64_t size;
    unsigned long long dev, ino;
    int registered;
} store_file;

struct hma_store {
    hma_tensor *tensors;
    size_t n;
    size_t *slots; /* open addressing over tensor indices; SIZE_MAX = empty */
    size_t mask;
    char **meta; /* 2 * n_meta */
    size_t n_meta;
    store_file *files;
    size_t n_files;
    unsigned flags;
    int custom;
    hma__store_backend be;
    void *ctx;
};

/* Returned by hma_tensor_data() for zero-size tensors of a custom store. */
static const unsigned char empty_tensor_byte;

/* ---- small helpers ------------------------------------------------------ */

static const char *errstr(int e, char *buf, size_t cap) {
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(e, buf, cap);
#else
    if (strerror_r(e, buf, cap) != 0) snprintf(buf, cap, "errno %d", e);
    return buf;
#endif
}

static int fail_errno(int code, const char *path, const char *what, int e) {
    char eb[128];
    return hma__fail(code, "%.400s: %s: %s", path, what, errstr(e, eb, sizeof eb));
}

static uint64_t hash_name(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a, then a final mix */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    while (a > 1 && dir[a - 1] == '/') a--;
    int sep = !(a == 1 && dir[0] == '/');
    if (a > SIZE_MAX - b - 2) return NULL;
    char *p = hma__malloc(a + (size_t)sep + b + 1);
    if (!p) return NULL;
    memcpy(p, dir, a);
    if (sep) p[a] = '/';
    memcpy(p + a + (size_t)sep, name, b + 1);
    return p;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

/* Reads until len bytes or end of file; returns bytes read or -1 (errno). */
static int64_t pread_full(int fd, void *buf, size_t len, uint64_t off) {
    size_t done = 0;
    while (done < len) {
        if (off + done > (uint64_t)INT64_MAX) break;
        ssize_t r = pread(fd, (unsigned char *)buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        done += (size_t)r;
    }
    return (int64_t)done;
}

/* Open a regular file for reading without blocking on FIFOs. */
static int open_regular(const char *path, int *fd_out, struct stat *st) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        return fail_errno(e == ENOENT || e == ENOTDIR ? HMA_ERR_NOT_FOUND : HMA_ERR_IO, path, "cannot open", e);
    }
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        return fail_errno(HMA_ERR_IO, path, "cannot stat", e);
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return hma__fail(HMA_ERR_IO, "%.400s: not a regular file (expected a .safetensors or index file)", path);
    }
    *fd_out = fd;
    return HMA_OK;
}

/* ---- hash table --------------------------------------------------------- */

static size_t find_slot(const hma_store *s, const char *name, size_t len) {
    size_t h = (size_t)hash_name(name, len) & s->mask;
    for (;;) {
        size_t i = s->slots[h];
        if (i == SIZE_MAX) return h;
        const hma_tensor *t = &s->tensors[i];
        if (t->name_len == len && memcmp(t->name, name, len) == 0) return h;
        h = (h + 1) & s->mask;
    }
}

/* Builds the name index; returns the index of a duplicate name, or SIZE_MAX
 * (and sets *oom on allocation failure). */
static size_t build_hash(hma_store *s, int *oom) {
    size_t cap = 8;
    while (cap < s->n * 2) cap *= 2;
    s->slots = hma__malloc(cap * sizeof *s->slots);
    *oom = s->slots == NULL;
    if (!s->slots) return SIZE_MAX;
    memset(s->slots, 0xff, cap * sizeof *s->slots);
    s->mask = cap - 1;
    for (size_t i = 0; i < s->n; i++) {
        size_t h = find_slot(s, s->tensors[i].name, s->tensors[i].name_len);
        if (s->slots[h] != SIZE_MAX) return i;
        s->slots[h] = i;
    }
    return SIZE_MAX;
}

/* ---- opening files ------------------------------------------------------- */

/* Open, validate and (in mmap mode) map one safetensors file into f. */
static int open_safetensors(const char *path, unsigned flags, store_file *f, hma__st_header *hdr) {
    struct stat st;
    int fd = -1, rc;
    char *json = NULL;
    memset(hdr, 0, sizeof *hdr);
    f->fd = -1;
    if ((rc = open_regular(path, &fd, &st))) return rc;
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
            rc = fail_errno(HMA_ERR_IO, path, "cannot mmap", errno);
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
    hma__free(json);
    if (fd >= 0) close(fd);
    f->fd = -1;
    hma__st_header_free(hdr);
    return rc;
}

static int add_file(hma_store *s, const char *path) {
    store_file *f = &s->files[s->n_files];
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->path = hma__strdup(path ? path : "");
    if (!f->path) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path ? path : "");
    s->n_files++;
    return HMA_OK;
}

static int register_file(store_file *f) {
    int rc = hma__registry_add(f->path, f->dev, f->ino);
    if (!rc) f->registered = 1;
    return rc;
}

/* Moves the header's tensors (in offset order) into the store. */
static void take_tensors(hma_store *s, hma__st_header *h, size_t file) {
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

static void take_meta(hma_store *s, hma__st_header *h) {
    s->meta = h->meta;
    s->n_meta = h->n_meta;
    h->meta = NULL;
    h->n_meta = 0;
}

static int open_single(hma_store *s, const char *path) {
    hma__st_header h;
    s->files = hma__calloc(1, sizeof *s->files);
    if (!s->files) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
    int rc = add_file(s, path);
    if (rc) return rc;
    if ((rc = open_safetensors(path, s->flags, &s->files[0], &h))) return rc;
    if ((rc = register_file(&s->files[0]))) goto out;
    s->tensors = hma__calloc(h.n ? h.n : 1, sizeof *s->tensors);
    if (!s->tensors) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory for %zu tensors", path, h.n);
        goto out;
    }
    take_tensors(s, &h, 0);
    take_meta(s, &h);
out:
    hma__st_header_free(&h);
    return rc;
}

/* ---- sharded checkpoints ------------------------------------------------- */

typedef struct shard_name {
    const char *name;
    size_t len;
} shard_name;

static int cmp_shard(const void *a, const void *b) {
    const shard_name *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* 1 if s[0..n) holds a byte < 0x20 or 0x7f. */
static int has_control(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 1;
    return 0;
}

static int check_shard_path(const char *index, const hma__json_member *m) {
    const char *p = m->value.v.str;
    size_t n = m->value.len;
    char q[200], qs[200];
    hma__quote_name(q, sizeof q, m->key, m->key_len);
    hma__quote_name(qs, sizeof qs, p, n);
    const char *why = NULL;
    if (n == 0) why = "is empty";
    else if (memchr(p, 0, n)) why = "contains a NUL character";
    else if (has_control(p, n)) why = "contains a control character"; /* would break one-line messages (fuzz_index) */
    else if (p[0] == '/') why = "is absolute";
    else if (strstr(p, "..")) why = "contains \"..\"";
    else if (memchr(p, '/', n)) why = "contains '/'";
    if (why)
        return hma__fail(HMA_ERR_BAD_SHARD_PATH,
                         "%.400s: tensor '%s': shard path \"%s\" %s (expected a plain file name in the index's folder)",
                         index, q, qs, why);
    return HMA_OK;
}

static int read_small_file(const char *path, char **out, size_t *len) {
    int fd, rc;
    struct stat st;
    if ((rc = open_regular(path, &fd, &st))) return rc;
    if ((uint64_t)st.st_size > HMA_MAX_HEADER_SIZE) {
        close(fd);
        return hma__fail(HMA_ERR_BAD_INDEX, "%.400s: index is %lld bytes (expected at most %u)", path,
                         (long long)st.st_size, HMA_MAX_HEADER_SIZE);
    }
    size_t n = (size_t)st.st_size;
    char *buf = hma__malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
    }
    int64_t got = pread_full(fd, buf, n, 0);
    int e = errno;
    close(fd);
    if (got < 0) {
        hma__free(buf);
        return fail_errno(HMA_ERR_IO, path, "cannot read", e);
    }
    *out = buf;
    *len = (size_t)got;
    return HMA_OK;
}

static int open_index(hma_store *s, const char *index) {
    char *text = NULL;
    size_t text_len = 0;
    hma__json_doc *doc = NULL;
    shard_name *shards = NULL;
    size_t *shard_of = NULL; /* per weight_map entry: its shard */
    unsigned char *matched = NULL;
    size_t *wslots = NULL;
    char *dir = NULL, *shard_path = NULL;
    hma__st_header h;
    memset(&h, 0, sizeof h);
    int rc;

    if ((rc = read_small_file(index, &text, &text_len))) return rc;
    char what[420];
    snprintf(what, sizeof what, "%.400s:", index);
    if ((rc = hma__json_parse(text, text_len, what, &doc, NULL))) goto out;
    const hma__json *root = hma__json_root(doc);
    if (root->type != HMA__JSON_OBJECT) {
        rc = hma__fail(HMA_ERR_BAD_INDEX, "%.400s: byte %zu: index is not a JSON object (expected {\"weight_map\": {...}})",
                       index, root->offset);
        goto out;
    }
    const hma__json *md = hma__json_get(root, "metadata");
    if (md && md->type != HMA__JSON_OBJECT) {
        rc = hma__fail(HMA_ERR_BAD_INDEX, "%.400s: byte %zu: \"metadata\" is not an object (expected an object)", index,
                       md->offset);
        goto out;
    }
    const hma__json *wm = hma__json_get(root, "weight_map");
    if (!wm || wm->type != HMA__JSON_OBJECT || wm->len == 0) {
        rc = hma__fail(HMA_ERR_BAD_INDEX,
                       "%.400s: %s (expected \"weight_map\": an object mapping each tensor name to its shard file)",
                       index, !wm ? "no \"weight_map\"" : wm->type != HMA__JSON_OBJECT ? "\"weight_map\" is not an object" : "\"weight_map\" is empty");
        goto out;
    }
    size_t nw = wm->len;
    shards = hma__malloc(nw * sizeof *shards);
    shard_of = hma__malloc(nw * sizeof *shard_of);
    matched = hma__calloc(nw, 1);
    if (!shards || !shard_of || !matched) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", index);
        goto out;
    }
    for (size_t i = 0; i < nw; i++) {
        const hma__json_member *m = &wm->v.members[i];
        char q[200];
        hma__quote_name(q, sizeof q, m->key, m->key_len);
        if (m->value.type != HMA__JSON_STRING) {
            rc = hma__fail(HMA_ERR_BAD_INDEX, "%.400s: byte %zu: tensor '%s': shard is not a string (expected a file name)",
                           index, m->value.offset, q);
            goto out;
        }
        if (m->key_len == 0 || memchr(m->key, 0, m->key_len) || m->key_len > HMA_MAX_NAME) {
            rc = hma__fail(HMA_ERR_BAD_NAME, "%.400s: byte %zu: tensor name '%s' is empty, too long or contains NUL (expected a valid name)",
                           index, m->key_offset, q);
            goto out;
        }
        if ((rc = check_shard_path(index, m))) goto out;
        shards[i].name = m->value.v.str;
        shards[i].len = m->value.len;
    }
    /* Distinct shards, in name order. */
    qsort(shards, nw, sizeof *shards, cmp_shard);
    size_t ns = 0;
    for (size_t i = 0; i < nw; i++)
        if (ns == 0 || cmp_shard(&shards[ns - 1], &shards[i]) != 0) shards[ns++] = shards[i];
    for (size_t i = 0; i < nw; i++) {
        shard_name key = {wm->v.members[i].value.v.str, wm->v.members[i].value.len};
        const shard_name *f = bsearch(&key, shards, ns, sizeof *shards, cmp_shard);
        shard_of[i] = (size_t)(f - shards);
    }
    /* weight_map by tensor name */
    size_t cap = 8;
    while (cap < 2 * nw) cap *= 2;
    wslots = hma__malloc(cap * sizeof *wslots);
    if (!wslots) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", index);
        goto out;
    }
    memset(wslots, 0xff, cap * sizeof *wslots);
    for (size_t i = 0; i < nw; i++) { /* keys are unique: the JSON reader rejects duplicates */
        size_t hh = (size_t)hash_name(wm->v.members[i].key, wm->v.members[i].key_len) & (cap - 1);
        while (wslots[hh] != SIZE_MAX) hh = (hh + 1) & (cap - 1);
        wslots[hh] = i;
    }

    const char *slash = strrchr(index, '/');
    if (slash) {
        dir = hma__strndup(index, slash == index ? 1 : (size_t)(slash - index));
    } else {
        dir = hma__strdup(".");
    }
    s->files = hma__calloc(ns, sizeof *s->files);
    if (!dir || !s->files) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", index);
        goto out;
    }
    size_t total = 0;
    for (size_t k = 0; k < ns; k++) {
        /* shard names hold no NUL (checked), so the decoded string is exact */
        shard_path = slash ? join_path(dir, shards[k].name) : hma__strdup(shards[k].name);
        if (!shard_path) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", index);
            goto out;
        }
        if ((rc = add_file(s, shard_path))) goto out;
        hma__free(shard_path);
        shard_path = NULL;
        store_file *f = &s->files[k];
        if ((rc = open_safetensors(f->path, s->flags, f, &h))) goto out;
        if ((rc = register_file(f))) goto out;
        for (size_t i = 0; i < h.n; i++) {
            const char *nm = h.tensors[i].name;
            size_t nl = strlen(nm);
            size_t hh = (size_t)hash_name(nm, nl) & (cap - 1);
            size_t e = SIZE_MAX;
            while (wslots[hh] != SIZE_MAX) {
                const hma__json_member *m = &wm->v.members[wslots[hh]];
                if (m->key_len == nl && memcmp(m->key, nm, nl) == 0) {
                    e = wslots[hh];
                    break;
                }
                hh = (hh + 1) & (cap - 1);
            }
            char q[200], qs[200];
            hma__quote_name(q, sizeof q, nm, nl);
            if (e == SIZE_MAX) {
                rc = hma__fail(HMA_ERR_INDEX_MISMATCH,
                               "%.400s: tensor '%s' is in this shard but not in the index %.300s (expected every tensor listed in weight_map)",
                               f->path, q, index);
                goto out;
            }
            if (shard_of[e] != k) {
                hma__quote_name(qs, sizeof qs, shards[shard_of[e]].name, shards[shard_of[e]].len);
                rc = hma__fail(HMA_ERR_INDEX_MISMATCH,
                               "%.400s: tensor '%s' is in this shard but the index maps it to \"%s\" (expected each tensor in exactly its one shard)",
                               f->path, q, qs);
                goto out;
            }
            matched[e] = 1;
        }
        if (h.n > SIZE_MAX / sizeof(hma_tensor) - total) {
            rc = hma__fail(HMA_ERR_OVERFLOW, "%.400s: too many tensors", index);
            goto out;
        }
        total += h.n;
        /* Tensors are moved into the store after all shards are checked;
         * keep each shard's header until then by appending to a list. */
        hma_tensor *grown = hma__realloc(s->tensors, (total ? total : 1) * sizeof *grown);
        if (!grown) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", index);
            goto out;
        }
        s->tensors = grown;
        take_tensors(s, &h, k);
        if (k == 0) take_meta(s, &h);
        hma__st_header_free(&h);
    }
    for (size_t i = 0; i < nw; i++) {
        if (!matched[i]) {
            const hma__json_member *m = &wm->v.members[i];
            char q[200], qs[200];
            hma__quote_name(q, sizeof q, m->key, m->key_len);
            hma__quote_name(qs, sizeof qs, m->value.v.str, m->value.len);
            rc = hma__fail(HMA_ERR_INDEX_MISMATCH,
                           "%.400s: tensor '%s': the index maps it to shard \"%s\", which does not contain it (expected it there)",
                           index, q, qs);
            goto out;
        }
    }
    /* hma_tensor.store pointers stay valid: realloc moved the array, but
     * they point at the store, not the array. */
out:
    hma__st_header_free(&h);
    hma__free(shard_path);
    hma__free(dir);
    hma__free(wslots);
    hma__free(matched);
    hma__free(shard_of);
    hma__free(shards);
    hma__json_free(doc);
    hma__free(text);
    return rc;
}

/* ---- public API ------------------------------------------------------------- */

void hma_store_close(hma_store *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_files; i++) {
        store_file *f = &s->files[i];
        if (f->map) munmap((void *)f->map, f->map_len);
        if (f->fd >= 0) close(f->fd);
        if (f->registered) hma__registry_remove(f->dev, f->ino);
        hma__free(f->path);
    }
    hma__free(s->files);
    for (size_t i = 0; i < s->n; i++) hma__free(s->tensors[i].name);
    hma__free(s->tensors);
    hma__free(s->slots);
    for (size_t i = 0; i < 2 * s->n_meta; i++) hma__free(s->meta[i]);
    hma__free(s->meta);
    if (s->custom && s->be.close) s->be.close(s->ctx);
    hma__free(s);
}

static int finish(hma_store *s, const char *what) {
    int oom;
    size_t dup = build_hash(s, &oom);
    if (oom) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", what);
    if (dup != SIZE_MAX) {
        char q[200];
        hma__quote_name(q, sizeof q, s->tensors[dup].name, s->tensors[dup].name_len);
        return hma__fail(s->custom ? HMA_ERR_BAD_NAME : HMA_ERR_INDEX_MISMATCH,
                         "%.400s: tensor '%s' appears twice (expected unique names)", what, q);
    }
    return HMA_OK;
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
        return fail_errno(e == ENOENT || e == ENOTDIR ? HMA_ERR_NOT_FOUND : HMA_ERR_IO, path, "cannot open", e);
    }
    hma_store *s = hma__calloc(1, sizeof *s);
    if (!s) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
    s->flags = flags;
    int rc;
    char *p1 = NULL, *p2 = NULL;
    if (S_ISDIR(st.st_mode)) {
        p1 = join_path(path, "model.safetensors.index.json");
        p2 = join_path(path, "model.safetensors");
        if (!p1 || !p2) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
        } else if (stat(p1, &st) == 0) {
            rc = open_index(s, p1);
        } else if (stat(p2, &st) == 0) {
            rc = open_single(s, p2);
        } else {
            rc = hma__fail(HMA_ERR_NOT_FOUND,
                           "%.400s: folder holds neither model.safetensors.index.json nor model.safetensors (expected one of them)",
                           path);
        }
    } else if (ends_with(path, ".json")) {
        rc = open_index(s, path);
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
    if ((rc = add_file(s, p))) goto fail;
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
    if (!s || !name || !s->slots) return NULL;
    size_t h = find_slot(s, name, strlen(name));
    return s->slots[h] == SIZE_MAX ? NULL : &s->tensors[s->slots[h]];
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
    const store_file *f = &s->files[t->file];
    if (f->map) {
        memcpy(buf, f->map + t->offset + offset, len);
        return HMA_OK;
    }
    uint64_t at = t->offset + offset;
    int64_t got = pread_full(f->fd, buf, len, at);
    if (got < 0) {
        char q[200];
        char eb[128];
        int e = errno;
        return hma__fail(HMA_ERR_IO, "%.400s: tensor '%s': cannot read %zu bytes at file byte %llu: %s", f->path,
                         hma__quote_name(q, sizeof q, t->name, t->name_len), len, (unsigned long long)at,
                         errstr(e, eb, sizeof eb));
    }
    if ((uint64_t)got != len) {
        char q[200];
        return hma__fail(HMA_ERR_TRUNCATED,
                         "%.400s: tensor '%s': file ends at byte %llu, inside the tensor (expected at least %llu bytes; the file shrank after it was opened)",
                         f->path, hma__quote_name(q, sizeof q, t->name, t->name_len),
                         (unsigned long long)(at + (uint64_t)got), (unsigned long long)f->size);
    }
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

const void *hma_tensor_data(const hma_tensor *t) {
    if (!t) return NULL;
    const hma_store *s = t->store;
    if (s->custom) {
        if (t->nbytes == 0) return &empty_tensor_byte;
        if (!s->be.data) {
            hma__fail(HMA_ERR_UNSUPPORTED, "%.400s: tensor '%.200s': this store has no zero-copy data (use hma_store_read)",
                      s->files[0].path, t->name);
            return NULL;
        }
        return s->be.data(s->ctx, t->index);
    }
    const store_file *f = &s->files[t->file];
    return f->map ? f->map + t->offset : NULL;
}
