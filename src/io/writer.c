/*
 * writer.c - the safetensors writer's life cycle: declare tensors, metadata
 * and files to copy; begin (temporaries at their final size, headers
 * written); fill byte ranges from any number of threads; commit atomically
 * (writer_commit.c) or abandon. Layout and header bytes: writer_layout.c.
 */
#include "io/writer_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *wname_at(const void *owner, size_t idx, size_t *len) {
    const hma__wtensor *t = &((const hma_writer *)owner)->t[idx];
    *len = t->name_len;
    return t->name;
}

static size_t find_name(const hma_writer *w, const char *name, size_t len) {
    return hma__names_find(&w->names, name, len, wname_at, w);
}

/* ---- coverage ----------------------------------------------------------- */

/* Record that [b, e) of t was written. Caller holds the writer's lock. */
static int cov_add(hma__wtensor *t, uint64_t b, uint64_t e) {
    /* lo: first range ending at or after b; hi: first range starting after
     * e. Ranges in [lo, hi) overlap or touch [b, e) and merge with it. */
    size_t lo = 0, hi = t->ncov;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->cov[mid].e < b) lo = mid + 1;
        else hi = mid;
    }
    size_t a = lo;
    hi = t->ncov;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->cov[mid].b <= e) lo = mid + 1;
        else hi = mid;
    }
    size_t z = lo;
    if (a == z) { /* no neighbour: insert a new range at a */
        if (t->ncov == t->capcov) {
            size_t ncap = t->capcov ? t->capcov * 2 : 4;
            hma__wrange *n = hma__realloc(t->cov, ncap * sizeof *n);
            if (!n) return HMA_ERR_NO_MEMORY;
            t->cov = n;
            t->capcov = ncap;
        }
        memmove(t->cov + a + 1, t->cov + a, (t->ncov - a) * sizeof *t->cov);
        t->cov[a].b = b;
        t->cov[a].e = e;
        t->ncov++;
        t->covered += e - b;
        return HMA_OK;
    }
    uint64_t nb = t->cov[a].b < b ? t->cov[a].b : b;
    uint64_t ne = t->cov[z - 1].e > e ? t->cov[z - 1].e : e;
    for (size_t i = a; i < z; i++) t->covered -= t->cov[i].e - t->cov[i].b;
    t->cov[a].b = nb;
    t->cov[a].e = ne;
    t->covered += ne - nb;
    memmove(t->cov + a + 1, t->cov + z, (t->ncov - z) * sizeof *t->cov);
    t->ncov -= z - a - 1;
    return HMA_OK;
}

/* First byte of t not yet written (meaningful only when incomplete). */
static uint64_t cov_first_missing(const hma__wtensor *t) {
    if (t->ncov == 0 || t->cov[0].b > 0) return 0;
    return t->cov[0].e;
}

/* ---- create / declare ---------------------------------------------------- */

int hma_writer_create(hma_writer **out, const char *path, uint64_t shard_size) {
    if (!out || !path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_create: NULL %s", out ? "path" : "out");
    if (!*path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_create: empty output path");
    if (shard_size != 0 && hma__ends_with(path, ".gguf"))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: a GGUF output is one file (expected shard_size 0)", path);
    if (shard_size != 0 && hma__ends_with(path, ".safetensors"))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "%s: a sharded output needs a folder path (a name ending in .safetensors is one file; "
                         "use shard_size 0 or name a folder)", path);
    hma_writer *w = hma__calloc(1, sizeof *w);
    if (!w) return hma__fail(HMA_ERR_NO_MEMORY, "%s: cannot allocate a writer", path);
    w->shard_size = shard_size;
    w->gguf = hma__ends_with(path, ".gguf");
    w->folder = !(shard_size == 0 && (w->gguf || hma__ends_with(path, ".safetensors")));
    w->path = hma__strdup(path);
    if (!w->path) goto oom;
    if (w->folder) {
        size_t n = strlen(w->path);
        while (n > 1 && w->path[n - 1] == '/') w->path[--n] = '\0';
        w->dir = hma__strdup(w->path);
    } else {
        w->dir = hma__path_dir(w->path);
    }
    if (!w->dir) goto oom;
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        hma__free(w->dir);
        hma__free(w->path);
        hma__free(w);
        return hma__fail(HMA_ERR_NO_MEMORY, "%s: cannot create the writer's lock", path);
    }
    w->state = W_DECLARING;
    *out = w;
    return HMA_OK;
oom:
    hma__free(w->dir);
    hma__free(w->path);
    hma__free(w);
    return hma__fail(HMA_ERR_NO_MEMORY, "%s: cannot allocate a writer", path);
}

int hma_writer_set_metadata(hma_writer *w, const char *key, const char *value) {
    if (!w || !key || !value) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_set_metadata: NULL argument");
    if (w->state != W_DECLARING)
        return hma__fail(HMA_ERR_STATE, "%s: metadata \"%.200s\" set after hma_writer_begin() (expected before)", w->path, key);
    size_t kl = strlen(key), vl = strlen(value);
    if (!hma__utf8_valid(key, kl))
        return hma__fail(HMA_ERR_BAD_NAME, "%s: metadata key is not valid UTF-8 (expected a UTF-8 string)", w->path);
    if (!hma__utf8_valid(value, vl))
        return hma__fail(HMA_ERR_BAD_NAME, "%s: metadata \"%.200s\": value is not valid UTF-8 (expected a UTF-8 string)", w->path, key);
    if (w->gguf) { /* a GGUF string: u64 length, bytes */
        if (strcmp(key, "general.alignment") == 0)
            return hma__fail(HMA_ERR_BAD_METADATA, "%s: general.alignment must be a uint32 (copy it with hma_writer_copy_metadata())",
                             w->path);
        unsigned char *b = hma__malloc(vl + 8);
        if (!b) return hma__fail(HMA_ERR_NO_MEMORY, "%s: metadata \"%.200s\": out of memory", w->path, key);
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)vl >> (8 * i));
        memcpy(b + 8, value, vl);
        int rc = hma__writer_gguf_set_kv(w, key, 8 /* GGUF_TYPE_STRING */, b, vl + 8);
        hma__free(b);
        return rc;
    }
    char *v = hma__strndup(value, vl);
    if (!v) return hma__fail(HMA_ERR_NO_MEMORY, "%s: metadata \"%.200s\": out of memory", w->path, key);
    for (size_t i = 0; i < w->nmeta; i++) {
        if (strcmp(w->mkeys[i], key) == 0) {
            hma__free(w->mvals[i]);
            w->mvals[i] = v;
            return HMA_OK;
        }
    }
    if (w->nmeta == w->capmeta) {
        size_t ncap = w->capmeta ? w->capmeta * 2 : 8;
        char **nk = hma__realloc(w->mkeys, ncap * sizeof *nk);
        if (nk) w->mkeys = nk;
        char **nv = nk ? hma__realloc(w->mvals, ncap * sizeof *nv) : NULL;
        if (nv) w->mvals = nv;
        if (!nk || !nv) {
            hma__free(v);
            return hma__fail(HMA_ERR_NO_MEMORY, "%s: metadata \"%.200s\": out of memory", w->path, key);
        }
        w->capmeta = ncap;
    }
    char *k = hma__strndup(key, kl);
    if (!k) {
        hma__free(v);
        return hma__fail(HMA_ERR_NO_MEMORY, "%s: metadata \"%.200s\": out of memory", w->path, key);
    }
    w->mkeys[w->nmeta] = k;
    w->mvals[w->nmeta] = v;
    w->nmeta++;
    return HMA_OK;
}

int hma_writer_add_tensor(hma_writer *w, const char *name, hma_dtype dtype, unsigned ndim,
                          const uint64_t *shape) {
    if (!w || !name) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_add_tensor: NULL argument");
    if (w->state != W_DECLARING)
        return hma__fail(HMA_ERR_STATE, "%s: tensor '%.200s' added after hma_writer_begin() (expected before)", w->path, name);
    size_t len = strnlen(name, (size_t)HMA_MAX_NAME + 1);
    if (len == 0) return hma__fail(HMA_ERR_BAD_NAME, "%s: tensor %zu: empty name (expected 1 to %u bytes)", w->path, w->nt, HMA_MAX_NAME);
    if (len > HMA_MAX_NAME)
        return hma__fail(HMA_ERR_BAD_NAME, "%s: tensor '%.64s...': name longer than %u bytes", w->path, name, HMA_MAX_NAME);
    if (strcmp(name, "__metadata__") == 0)
        return hma__fail(HMA_ERR_BAD_NAME, "%s: \"__metadata__\" is reserved and cannot name a tensor", w->path);
    if (!hma__utf8_valid(name, len))
        return hma__fail(HMA_ERR_BAD_NAME, "%s: tensor %zu: name is not valid UTF-8", w->path, w->nt);
    if (find_name(w, name, len) != HMA_NPOS)
        return hma__fail(HMA_ERR_BAD_NAME, "%s: tensor '%.200s' declared twice (expected unique names)", w->path, name);
    if (dtype < 0 || dtype >= HMA_DTYPE_COUNT)
        return hma__fail(HMA_ERR_BAD_DTYPE, "%s: tensor '%.200s': dtype %d out of range (expected 0..%d)", w->path, name, (int)dtype, HMA_DTYPE_COUNT - 1);
    if (ndim > HMA_MAX_DIMS)
        return hma__fail(HMA_ERR_BAD_SHAPE, "%s: tensor '%.200s': %u dimensions (expected at most %u)", w->path, name, ndim, HMA_MAX_DIMS);
    if (ndim && !shape) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: tensor '%.200s': NULL shape with %u dimensions", w->path, name, ndim);
    uint64_t nelem = 1, nbytes;
    for (unsigned i = 0; i < ndim; i++)
        if (hma__mul_overflows(nelem, shape[i], &nelem))
            return hma__fail(HMA_ERR_OVERFLOW, "%s: tensor '%.200s': element count overflows 64 bits", w->path, name);
    int r = hma__dtype_nbytes(dtype, nelem, &nbytes);
    if (r == 1) return hma__fail(HMA_ERR_OVERFLOW, "%s: tensor '%.200s': byte size overflows 64 bits", w->path, name);
    if (r == 2)
        return hma__fail(HMA_ERR_BAD_SHAPE, "%s: tensor '%.200s': %llu elements of %s do not fill whole bytes", w->path, name,
                         (unsigned long long)nelem, hma_dtype_name(dtype));
    /* Keep every file offset representable as off_t, with room for a header. */
    uint64_t total;
    if (hma__add_overflows(w->total, nbytes, &total) || total > (uint64_t)INT64_MAX - 2u * HMA_MAX_HEADER_SIZE)
        return hma__fail(HMA_ERR_OVERFLOW, "%s: tensor '%.200s': total output size overflows", w->path, name);

    if (w->nt == w->capt) {
        size_t ncap = w->capt ? w->capt * 2 : 16;
        hma__wtensor *n = hma__realloc(w->t, ncap * sizeof *n);
        if (!n) return hma__fail(HMA_ERR_NO_MEMORY, "%s: tensor '%.200s': out of memory", w->path, name);
        w->t = n;
        w->capt = ncap;
    }
    if (hma__names_reserve(&w->names, w->nt + 1) != HMA_OK)
        return hma__fail(HMA_ERR_NO_MEMORY, "%s: tensor '%.200s': out of memory", w->path, name);
    hma__wtensor *t = &w->t[w->nt];
    memset(t, 0, sizeof *t);
    t->name = hma__strndup(name, len);
    if (!t->name) return hma__fail(HMA_ERR_NO_MEMORY, "%s: tensor '%.200s': out of memory", w->path, name);
    t->name_len = len;
    t->dtype = dtype;
    t->ndim = ndim;
    for (unsigned i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    t->gtype = -1;
    hma__names_add(&w->names, t->name, t->name_len, w->nt); /* room reserved above: cannot fail */
    w->nt++;
    w->total = total;
    return HMA_OK;
}

size_t hma_writer_count(const hma_writer *w) { return w ? w->nt : 0; }

/* ---- partitioned outputs -------------------------------------------------- */

int hma_writer_set_part(hma_writer *w, size_t part, size_t nparts) {
    if (!w) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_set_part: NULL writer");
    if (w->gguf) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: a GGUF output is one file and cannot be split into parts", w->path);
    if (w->state != W_DECLARING)
        return hma__fail(HMA_ERR_STATE, "%s: hma_writer_set_part() after hma_writer_begin() (expected before)", w->path);
    if (nparts == 0 || part >= nparts)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: part %zu of %zu (expected 0 <= part < nparts)", w->path, part,
                         nparts);
    w->mode = W_PART;
    w->part = part;
    w->nparts = nparts;
    return HMA_OK;
}

int hma_writer_set_finalize(hma_writer *w, size_t nparts) {
    if (!w) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_set_finalize: NULL writer");
    if (w->gguf) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: a GGUF output is one file and cannot be split into parts", w->path);
    if (w->state != W_DECLARING)
        return hma__fail(HMA_ERR_STATE, "%s: hma_writer_set_finalize() after hma_writer_begin() (expected before)", w->path);
    if (nparts == 0) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: finalize of 0 parts (expected at least 1)", w->path);
    w->mode = W_FINALIZE;
    w->part = 0;
    w->nparts = nparts;
    return HMA_OK;
}

size_t hma__writer_part_of(const hma_writer *w, size_t shard) { return w->nparts ? shard % w->nparts : 0; }

int hma__writer_file_active(const hma_writer *w, size_t i) {
    if (w->mode == W_PART) return i < w->nshards && hma__writer_part_of(w, i) == w->part;
    if (w->mode == W_FINALIZE) return i >= w->nshards;
    return 1;
}

int hma__writer_tensor_owned(const hma_writer *w, size_t index) {
    if (!w || index >= w->nt || w->state == W_DECLARING) return 0;
    return hma__writer_file_active(w, w->t[index].shard);
}

size_t hma_writer_find(const hma_writer *w, const char *name) {
    if (!w || !name) return HMA_NPOS;
    return find_name(w, name, strlen(name));
}

/* ---- files to copy ------------------------------------------------------ */

/* Why `name` cannot be a copied file's name, or NULL when it can. */
static const char *bad_file_name(const char *name) {
    size_t n = strlen(name);
    if (n == 0) return "is empty";
    if (n > 255) return "is longer than 255 bytes";
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return "is not a file name";
    if (strchr(name, '/')) return "contains '/' (expected a plain file name)";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) return "contains a control character";
    if (strncmp(name, HMA__TMP_PREFIX, strlen(HMA__TMP_PREFIX)) == 0) return "is a temporary's name";
    if (strncmp(name, HMA__PART_PREFIX, strlen(HMA__PART_PREFIX)) == 0) return "is a part record's name";
    if (strcmp(name, HMA__INDEX_NAME) == 0 || hma__ends_with(name, ".safetensors"))
        return "could be one of the writer's own outputs (a .safetensors file or the index)";
    return NULL;
}

/* Declare copied file `name`: from the file src_path, or (src_path NULL)
 * the bytes data[0..len), copied now. */
static int add_file_entry(hma_writer *w, const char *name, const char *src_path, const char *data, size_t len) {
    if (w->state != W_DECLARING)
        return hma__fail(HMA_ERR_STATE, "%s: file \"%.200s\" added after hma_writer_begin() (expected before)", w->path,
                         name);
    if (!w->folder || w->gguf)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "%s: file \"%.200s\": a single-file output has no folder to copy files into (name a folder)",
                         w->path, name);
    const char *why = bad_file_name(name);
    if (why) return hma__fail(HMA_ERR_BAD_NAME, "%s: file name \"%.200s\" %s", w->path, name, why);
    for (size_t i = 0; i < w->nx; i++)
        if (strcmp(w->xnames[i], name) == 0)
            return hma__fail(HMA_ERR_BAD_NAME, "%s: file \"%.200s\" added twice (expected unique names)", w->path, name);
    if (src_path) {
        int fd;
        struct stat st;
        int rc = hma__open_read(src_path, &fd, &st); /* fail now rather than at begin */
        if (rc) return rc;
        close(fd);
    }
    if (w->nx == w->capx) {
        size_t ncap = w->capx ? w->capx * 2 : 4;
        char **nn = hma__realloc(w->xnames, ncap * sizeof *nn);
        if (nn) w->xnames = nn;
        char **ns = nn ? hma__realloc(w->xsrcs, ncap * sizeof *ns) : NULL;
        if (ns) w->xsrcs = ns;
        char **nd = ns ? hma__realloc(w->xdata, ncap * sizeof *nd) : NULL;
        if (nd) w->xdata = nd;
        size_t *nl = nd ? hma__realloc(w->xdlen, ncap * sizeof *nl) : NULL;
        if (nl) w->xdlen = nl;
        if (!nl) return hma__fail(HMA_ERR_NO_MEMORY, "%s: file \"%.200s\": out of memory", w->path, name);
        w->capx = ncap;
    }
    char *n = hma__strdup(name), *src = src_path ? hma__strdup(src_path) : NULL;
    char *d = src_path ? NULL : hma__malloc(len ? len : 1);
    if (!n || (src_path ? !src : !d)) {
        hma__free(n);
        hma__free(src);
        hma__free(d);
        return hma__fail(HMA_ERR_NO_MEMORY, "%s: file \"%.200s\": out of memory", w->path, name);
    }
    if (d && len) memcpy(d, data, len);
    w->xnames[w->nx] = n;
    w->xsrcs[w->nx] = src;
    w->xdata[w->nx] = d;
    w->xdlen[w->nx] = src_path ? 0 : len;
    w->nx++;
    return HMA_OK;
}

int hma_writer_add_file(hma_writer *w, const char *name, const char *src_path) {
    if (!w || !name || !src_path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_add_file: NULL argument");
    return add_file_entry(w, name, src_path, NULL, 0);
}

int hma__writer_add_file_data(hma_writer *w, const char *name, const void *data, size_t len) {
    if (!w || !name || (!data && len))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma__writer_add_file_data: NULL argument");
    return add_file_entry(w, name, NULL, data, len);
}

/* The config and tokenizer files of a Hugging Face folder that a merge
 * copies: one list for `hma merge` and for recipes. */
static const char *const k_side_files[] = {
    "config.json",          "generation_config.json", "tokenizer.json",     "tokenizer_config.json",
    "special_tokens_map.json", "tokenizer.model",     "added_tokens.json",  "vocab.json",
    "vocab.txt",            "merges.txt",             "spiece.model",       "chat_template.jinja"};

const char *hma_side_file_name(size_t i) {
    return i < sizeof k_side_files / sizeof k_side_files[0] ? k_side_files[i] : NULL;
}

/* ---- begin --------------------------------------------------------------- */

/* Close and delete every temporary, and remove the folders begin created
 * (only if they are empty: rmdir never deletes anything else). */
static void discard_outputs(hma_writer *w) {
    for (size_t i = 0; i < w->nfiles; i++) hma__afile_discard(&w->files[i].af);
    for (size_t i = w->nmade; i-- > 0;) {
        rmdir(w->made_dirs[i]);
        hma__free(w->made_dirs[i]);
    }
    hma__free(w->made_dirs);
    w->made_dirs = NULL;
    w->nmade = 0;
}

static void free_files(hma_writer *w) {
    discard_outputs(w);
    for (size_t i = 0; i < w->nfiles; i++) hma__free(w->files[i].final_path);
    hma__free(w->files);
    w->files = NULL;
    w->nfiles = w->nshards = 0;
}

/* mkdir -p of w->dir, remembering what we created. */
static int make_folder(hma_writer *w) {
    struct stat st;
    if (stat(w->dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return hma__fail(HMA_ERR_EXISTS, "%s: exists and is not a folder (expected a folder for the shards)", w->dir);
        return HMA_OK;
    }
    size_t n = strlen(w->dir);
    char *p = hma__strdup(w->dir);
    w->made_dirs = hma__calloc(n + 1, sizeof *w->made_dirs);
    if (!p || !w->made_dirs) {
        hma__free(p);
        return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", w->dir);
    }
    int rc = HMA_OK;
    for (size_t i = 1; i <= n && !rc; i++) {
        if (i < n && p[i] != '/') continue;
        char save = p[i];
        p[i] = '\0';
        if (i < n && p[i - 1] == '/') { /* doubled slash */
            p[i] = save;
            continue;
        }
        if (mkdir(p, 0777) == 0) {
            w->made_dirs[w->nmade] = hma__strdup(p);
            if (!w->made_dirs[w->nmade]) rc = hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", w->dir);
            else w->nmade++;
        } else if (errno != EEXIST) {
            rc = hma__fail_errno(HMA_ERR_IO, errno, p, "cannot create folder");
        } else if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
            rc = hma__fail(HMA_ERR_EXISTS, "%s: %s exists and is not a folder", w->dir, p);
        }
        p[i] = save;
    }
    hma__free(p);
    return rc;
}

/* The final paths are not folders nor files open as inputs (checked again
 * at commit: a store may have been opened meanwhile). */
static int check_finals(const hma_writer *w) {
    for (size_t i = 0; i < w->nfiles; i++) {
        if (!hma__writer_file_active(w, i)) continue;
        int rc = hma__afile_check_target(w->files[i].final_path, NULL, 0);
        if (rc) return rc;
    }
    return HMA_OK;
}

/* Give the file its final size up front: running out of space shows here
 * rather than half-way through the data. */
static int preallocate(int fd, uint64_t size) {
    if (size == 0) return 0;
    if (fallocate(fd, 0, 0, (off_t)size) == 0) return 0;
    int e = errno;
    if (e != EOPNOTSUPP && e != ENOSYS && e != EINVAL && e != EINTR) return e;
    while (ftruncate(fd, (off_t)size) != 0) {
        if (errno != EINTR) return errno;
    }
    return 0;
}

/* Create f's temporary (sweeping stale ones of dead processes from the
 * folder first) at its final size and write its first bytes. */
static int write_file_start(hma__wfile *f, const char *bytes, size_t len) {
    int rc = hma__afile_open(&f->af, f->final_path, NULL, 0);
    if (rc) return rc;
    int e = preallocate(f->af.fd, f->size);
    if (e) {
        char eb[128];
        return hma__fail(HMA_ERR_IO, "%s: cannot reserve %llu bytes for temporary %s: %s", f->final_path,
                         (unsigned long long)f->size, f->af.tmp, hma__errstr(e, eb, sizeof eb));
    }
    rc = hma__pwrite_full(f->af.fd, f->af.tmp, bytes, len, 0);
    return rc ? hma__fail_prefix(rc, "%s", f->final_path) : HMA_OK;
}

/* Copy f->src into f's temporary. The destination must not be the source
 * itself nor an input open in this process. */
static int copy_file_start(hma__wfile *f) {
    const char *inputs[1] = {f->src};
    int rc = hma__afile_open(&f->af, f->final_path, inputs, f->src ? 1 : 0);
    if (rc) return rc;
    if (!f->src) { /* bytes given in memory */
        f->size = f->mem_len;
        return f->mem_len ? hma__pwrite_full(f->af.fd, f->af.tmp, f->mem, f->mem_len, 0) : HMA_OK;
    }
    int fd;
    struct stat st;
    if ((rc = hma__open_read(f->src, &fd, &st))) return rc;
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = hma__malloc(CHUNK);
    uint64_t off = 0;
    if (!buf) rc = hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory copying %s", f->final_path, f->src);
    while (!rc) {
        size_t got;
        rc = hma__pread_upto(fd, f->src, buf, CHUNK, off, &got);
        if (rc || got == 0) break;
        rc = hma__pwrite_full(f->af.fd, f->af.tmp, buf, got, off);
        if (rc) rc = hma__fail_prefix(rc, "%s: copying %s", f->final_path, f->src);
        off += got;
    }
    hma__free(buf);
    close(fd);
    f->size = off;
    return rc;
}

int hma_writer_begin(hma_writer *w) {
    if (!w) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_begin: NULL writer");
    if (w->state != W_DECLARING)
        return hma__fail(HMA_ERR_STATE, "%s: hma_writer_begin() called again (expected once, after the declarations)", w->path);
    hma__strbuf sb = HMA__STRBUF_INIT;
    int rc;
    if (w->gguf) {
        rc = hma__writer_gguf_layout(w, &sb);
        if (!rc) rc = check_finals(w);
        if (!rc) rc = write_file_start(&w->files[0], sb.data, sb.len);
        hma__sb_free(&sb);
        if (rc) {
            free_files(w);
            return rc;
        }
        w->state = W_WRITING;
        return HMA_OK;
    }
    rc = hma__writer_layout(w);
    if (!rc && w->folder) rc = make_folder(w);
    if (!rc) rc = check_finals(w);
    for (size_t i = 0; i < w->nshards && !rc; i++) {
        hma__wfile *f = &w->files[i];
        hma__sb_fill(&sb, 0, 8);
        rc = hma__writer_build_header(w, f, &sb);
        if (rc) break;
        uint64_t n = sb.len - 8;
        if (n > HMA_MAX_HEADER_SIZE) {
            rc = hma__fail(HMA_ERR_HEADER_SIZE, "%s: header would be %llu bytes (readers accept at most %u)",
                           f->final_path, (unsigned long long)n, HMA_MAX_HEADER_SIZE);
            break;
        }
        for (int b = 0; b < 8; b++) sb.data[b] = (char)(unsigned char)(n >> (8 * b));
        f->data_off = 8 + n;
        f->size = f->data_off + f->data_size; /* bounded by add_tensor's checks */
        if (hma__writer_file_active(w, i)) rc = write_file_start(f, sb.data, sb.len);
        sb.len = 0;
    }
    for (size_t i = w->nshards; i < w->nshards + w->nx && !rc; i++)
        if (hma__writer_file_active(w, i)) rc = copy_file_start(&w->files[i]);
    if (!rc && w->sharded && hma__writer_file_active(w, w->nfiles - 1)) {
        hma__wfile *f = &w->files[w->nfiles - 1];
        rc = hma__writer_build_index(w, &sb);
        if (!rc) {
            f->size = sb.len;
            rc = write_file_start(f, sb.data, sb.len);
        }
    }
    hma__sb_free(&sb);
    if (rc) {
        free_files(w); /* back to DECLARING: begin may be retried */
        return rc;
    }
    w->state = W_WRITING;
    return HMA_OK;
}

/* ---- write --------------------------------------------------------------- */

static int state_error(hma_writer *w, int state, const char *what) {
    if (state == W_DECLARING)
        return hma__fail(HMA_ERR_STATE, "%s: %s before hma_writer_begin()", w->path, what);
    if (state == W_FAILED) /* the first failure's code: the caller sees one cause, whichever write it made */
        return hma__fail(w->fail_code, "%s: %s after a failed write (%s)", w->path, what, w->fail_msg);
    return hma__fail(HMA_ERR_STATE, "%s: %s after hma_writer_commit()", w->path, what);
}

int hma_writer_write(hma_writer *w, size_t index, uint64_t offset, const void *data, size_t len) {
    if (!w) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_write: NULL writer");
    pthread_mutex_lock(&w->lock);
    int state = w->state;
    int rc = state == W_WRITING ? HMA_OK : state_error(w, state, "write");
    pthread_mutex_unlock(&w->lock);
    if (rc) return rc;
    if (index >= w->nt)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: tensor index %zu out of range (expected < %zu)", w->path, index, w->nt);
    hma__wtensor *t = &w->t[index];
    hma__wfile *f = &w->files[t->shard];
    if (!hma__writer_file_active(w, t->shard))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: tensor '%.200s' is in %s, which %s", w->path, t->name,
                         hma__path_base(f->final_path),
                         w->mode == W_FINALIZE ? "finalize never writes (the parts do)" : "another part writes");
    if (offset > t->nbytes || len > t->nbytes - offset)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: tensor '%.200s': range [%llu, +%zu) past its %llu bytes",
                         f->final_path, t->name, (unsigned long long)offset, len, (unsigned long long)t->nbytes);
    if (len && !data)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: tensor '%.200s': NULL data for %zu bytes", f->final_path, t->name, len);
    if (len == 0) return HMA_OK;
    if (w->gguf && (rc = hma__writer_gguf_check(w, t, offset, len))) return rc;
    uint64_t at = f->data_off + t->begin + offset;
    /* outside the lock: writes run in parallel */
    int e = w->gguf ? hma__writer_gguf_write(w, t, offset, data, len) : hma__pwrite_full(f->af.fd, f->af.tmp, data, len, at);
    pthread_mutex_lock(&w->lock);
    if (e) {
        rc = hma__fail_prefix(e, "%s: tensor '%.200s': writing %zu bytes at file offset %llu failed", f->final_path,
                              t->name, len, (unsigned long long)at);
        if (w->state == W_WRITING) {
            w->state = W_FAILED;
            w->fail_code = rc;
            snprintf(w->fail_msg, sizeof w->fail_msg, "%s", hma_last_error());
        }
    } else if (w->state == W_WRITING && cov_add(t, offset, offset + len) != HMA_OK) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "%s: tensor '%.200s': out of memory recording a written range", f->final_path, t->name);
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

/* ---- commit -------------------------------------------------------------- */

int hma_writer_commit(hma_writer *w) {
    if (!w) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_commit: NULL writer");
    int rc = HMA_OK;
    if (w->state == W_DECLARING || w->state == W_DONE) return state_error(w, w->state, "commit");
    if (w->state == W_FAILED) {
        rc = hma__fail(w->fail_code, "%s: not committed because a write failed: %s", w->path, w->fail_msg);
    }
    for (size_t i = 0; i < w->nt && !rc; i++) {
        const hma__wtensor *t = &w->t[i];
        if (!hma__writer_file_active(w, t->shard)) continue; /* another part's, or finalize */
        if (t->covered != t->nbytes)
            rc = hma__fail(HMA_ERR_INCOMPLETE, "%s: tensor '%.200s': byte %llu of %llu never written (expected every byte before commit)",
                           w->files[t->shard].final_path, t->name, (unsigned long long)cov_first_missing(t),
                           (unsigned long long)t->nbytes);
    }
    if (!rc && w->mode == W_FINALIZE) rc = hma__writer_finalize_check(w);
    if (!rc) rc = check_finals(w);
    if (!rc) rc = w->mode == W_PART ? hma__writer_part_commit(w) : hma__writer_commit_files(w);
    if (!rc && w->mode == W_FINALIZE) hma__writer_finalize_cleanup(w);
    if (rc) discard_outputs(w);
    else {
        for (size_t i = 0; i < w->nmade; i++) hma__free(w->made_dirs[i]);
        hma__free(w->made_dirs);
        w->made_dirs = NULL;
        w->nmade = 0;
    }
    w->state = W_DONE;
    return rc;
}

void hma_writer_free(hma_writer *w) {
    if (!w) return;
    free_files(w); /* after a commit only names remain; otherwise this abandons */
    for (size_t i = 0; i < w->nt; i++) {
        hma__free(w->t[i].name);
        hma__free(w->t[i].cov);
    }
    for (size_t i = 0; i < w->nmeta; i++) {
        hma__free(w->mkeys[i]);
        hma__free(w->mvals[i]);
    }
    hma__free(w->mkeys);
    hma__free(w->mvals);
    hma__writer_gguf_free(w);
    hma__free(w->t);
    hma__names_free(&w->names);
    for (size_t i = 0; i < w->nx; i++) {
        hma__free(w->xnames[i]);
        hma__free(w->xsrcs[i]);
        hma__free(w->xdata[i]);
    }
    hma__free(w->xnames);
    hma__free(w->xsrcs);
    hma__free(w->xdata);
    hma__free(w->xdlen);
    hma__free(w->dir);
    hma__free(w->path);
    pthread_mutex_destroy(&w->lock);
    hma__free(w);
}

int hma__writer_is_gguf(const hma_writer *w) { return w && w->gguf; }

int hma__writer_has_metadata(const hma_writer *w, const char *key) {
    for (size_t i = 0; w && key && i < w->nmeta; i++)
        if (strcmp(w->mkeys[i], key) == 0) return 1;
    for (size_t i = 0; w && key && i < w->ngkv; i++)
        if (strcmp(w->gkeys[i], key) == 0) return 1;
    return 0;
}
