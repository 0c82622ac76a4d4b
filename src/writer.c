/*
 * writer.c - safetensors output: declare tensors, fill byte ranges from any
 * number of threads into preallocated temporary files, shard, and commit
 * atomically (fsync, rename, index last, fsync the folder).
 *
 * Life cycle: DECLARING (set_metadata, add_tensor) -> begin -> WRITING
 * (write, from many threads) -> commit -> DONE. An I/O error while writing
 * moves the writer to FAILED; commit and free then only clean up.
 */
#include "internal.h"
#include "strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define TMP_PREFIX ".hma-tmp-"
#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

enum { W_DECLARING, W_WRITING, W_FAILED, W_DONE };

/* A half-open byte range [b, e) of a tensor known to be written. */
typedef struct wrange {
    uint64_t b, e;
} wrange;

typedef struct wtensor {
    char *name;
    size_t name_len;
    hma_dtype dtype;
    unsigned ndim;
    uint64_t shape[HMA_MAX_DIMS];
    uint64_t nbytes;
    size_t shard;
    uint64_t begin; /* data offset inside its shard's data buffer */
    /* Coverage, guarded by the writer's lock: sorted, disjoint, never
     * touching ranges, and the sum of their lengths. */
    wrange *cov;
    size_t ncov, capcov;
    uint64_t covered;
} wtensor;

/* One output file being produced: a shard, or the index. */
typedef struct wfile {
    char *final_path;
    char *tmp_path; /* NULL when no temporary exists */
    int fd;         /* -1 when closed */
    uint64_t data_off; /* where tensor data starts: 8 + header length */
    uint64_t size;     /* final file size */
    size_t first, count; /* tensors (shards only) */
    uint64_t data_size;
} wfile;

struct hma_writer {
    char *path;  /* as given (trailing slashes removed in folder mode) */
    char *dir;   /* destination folder */
    int folder;  /* 1: path is a folder of shards; 0: path is the one file */
    uint64_t shard_size;

    char **mkeys, **mvals;
    size_t nmeta, capmeta;

    wtensor *t;
    size_t nt, capt;
    size_t *hash; /* open addressing: tensor index + 1, 0 = empty */
    size_t hcap;
    uint64_t total;

    int state;
    pthread_mutex_t lock; /* guards state, fail_msg and coverage */
    char fail_msg[768];

    wfile *files; /* shards, then the index if sharded */
    size_t nshards, nfiles;
    char **made_dirs; /* folders begin created, outermost first */
    size_t nmade;
};

/* ---- small helpers ------------------------------------------------------ */

static const char *errstr(int e, char *buf, size_t n) {
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(e, buf, n);
#else
    if (strerror_r(e, buf, n) != 0) snprintf(buf, n, "errno %d", e);
    return buf;
#endif
}

static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = hma__malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

/* Write all of buf at off, retrying short writes and EINTR. 0 or an errno. */
static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off) {
    const char *p = buf;
    while (len) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        ssize_t n = pwrite(fd, p, chunk, (off_t)off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) return EIO; /* a regular file never accepts 0 bytes */
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int fsync_retry(int fd) {
    while (fsync(fd) != 0) {
        if (errno != EINTR) return errno;
    }
    return 0;
}

/* fsync a folder so renames and creations in it are durable. Filesystems
 * that cannot sync folders report EINVAL; that is not a failure. */
static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    int e = fsync_retry(fd);
    close(fd);
    return (e == EINVAL || e == ENOTSUP) ? 0 : e;
}

static uint64_t mix64(uint64_t x) { /* splitmix64 finaliser */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* ---- name hash ---------------------------------------------------------- */

static uint64_t name_hash(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static size_t hash_lookup(const hma_writer *w, const char *name, size_t len) {
    if (!w->hcap) return (size_t)-1;
    size_t mask = w->hcap - 1;
    for (size_t i = (size_t)name_hash(name, len) & mask;; i = (i + 1) & mask) {
        size_t v = w->hash[i];
        if (!v) return (size_t)-1;
        const wtensor *t = &w->t[v - 1];
        if (t->name_len == len && memcmp(t->name, name, len) == 0) return v - 1;
    }
}

static void hash_insert(size_t *table, size_t cap, const wtensor *t, size_t idx) {
    size_t mask = cap - 1;
    size_t i = (size_t)name_hash(t->name, t->name_len) & mask;
    while (table[i]) i = (i + 1) & mask;
    table[i] = idx + 1;
}

/* Keep the table at most half full. */
static int hash_reserve(hma_writer *w, size_t n) {
    if (n <= w->hcap / 2) return HMA_OK;
    size_t cap = w->hcap ? w->hcap : 64;
    while (cap / 2 < n) {
        if (cap > SIZE_MAX / (2 * sizeof(size_t))) return HMA_ERR_NO_MEMORY;
        cap *= 2;
    }
    size_t *table = hma__calloc(cap, sizeof *table);
    if (!table) return HMA_ERR_NO_MEMORY;
    for (size_t i = 0; i < w->nt; i++) hash_insert(table, cap, &w->t[i], i);
    hma__free(w->hash);
    w->hash = table;
    w->hcap = cap;
    return HMA_OK;
}

/* ---- coverage ----------------------------------------------------------- */

/* Record that [b, e) of t was written. Caller holds the writer's lock. */
static int cov_add(wtensor *t, uint64_t b, uint64_t e) {
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
            wrange *n = hma__realloc(t->cov, ncap * sizeof *n);
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
static uint64_t cov_first_missing(const wtensor *t) {
    if (t->ncov == 0 || t->cov[0].b > 0) return 0;
    return t->cov[0].e;
}

/* ---- create / declare ---------------------------------------------------- */

int hma_writer_create(hma_writer **out, const char *path, uint64_t shard_size) {
    if (!out || !path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_create: NULL %s", out ? "path" : "out");
    if (!*path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_create: empty output path");
    if (shard_size != 0 && ends_with(path, ".safetensors"))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "%s: a sharded output needs a folder path (a name ending in .safetensors is one file; "
                         "use shard_size 0 or name a folder)", path);
    hma_writer *w = hma__calloc(1, sizeof *w);
    if (!w) return hma__fail(HMA_ERR_NO_MEMORY, "%s: cannot allocate a writer", path);
    w->shard_size = shard_size;
    w->folder = !(shard_size == 0 && ends_with(path, ".safetensors"));
    w->path = hma__strdup(path);
    if (!w->path) goto oom;
    if (w->folder) {
        size_t n = strlen(w->path);
        while (n > 1 && w->path[n - 1] == '/') w->path[--n] = '\0';
        w->dir = hma__strdup(w->path);
    } else {
        const char *slash = strrchr(w->path, '/');
        if (!slash) w->dir = hma__strdup(".");
        else if (slash == w->path) w->dir = hma__strdup("/");
        else w->dir = hma__strndup(w->path, (size_t)(slash - w->path));
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
    if (hash_lookup(w, name, len) != (size_t)-1)
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
        wtensor *n = hma__realloc(w->t, ncap * sizeof *n);
        if (!n) return hma__fail(HMA_ERR_NO_MEMORY, "%s: tensor '%.200s': out of memory", w->path, name);
        w->t = n;
        w->capt = ncap;
    }
    if (hash_reserve(w, w->nt + 1) != HMA_OK)
        return hma__fail(HMA_ERR_NO_MEMORY, "%s: tensor '%.200s': out of memory", w->path, name);
    wtensor *t = &w->t[w->nt];
    memset(t, 0, sizeof *t);
    t->name = hma__strndup(name, len);
    if (!t->name) return hma__fail(HMA_ERR_NO_MEMORY, "%s: tensor '%.200s': out of memory", w->path, name);
    t->name_len = len;
    t->dtype = dtype;
    t->ndim = ndim;
    for (unsigned i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    hash_insert(w->hash, w->hcap, t, w->nt);
    w->nt++;
    w->total = total;
    return HMA_OK;
}

size_t hma_writer_count(const hma_writer *w) { return w ? w->nt : 0; }

size_t hma_writer_find(const hma_writer *w, const char *name) {
    if (!w || !name) return (size_t)-1;
    return hash_lookup(w, name, strlen(name));
}

/* ---- begin --------------------------------------------------------------- */

/* Close and delete every temporary, and remove the folders begin created
 * (only if they are empty: rmdir never deletes anything else). */
static void discard_outputs(hma_writer *w) {
    for (size_t i = 0; i < w->nfiles; i++) {
        wfile *f = &w->files[i];
        if (f->fd >= 0) close(f->fd);
        f->fd = -1;
        if (f->tmp_path) unlink(f->tmp_path);
        hma__free(f->tmp_path);
        f->tmp_path = NULL;
    }
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
            char eb[128];
            rc = hma__fail(HMA_ERR_IO, "%s: cannot create folder %s: %s", w->dir, p, errstr(errno, eb, sizeof eb));
        } else if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
            rc = hma__fail(HMA_ERR_EXISTS, "%s: %s exists and is not a folder", w->dir, p);
        }
        p[i] = save;
    }
    hma__free(p);
    return rc;
}

/* The safetensors header of shard s, padded with spaces to a multiple of 8,
 * exactly as the reference writer (serde_json, compact) produces it. */
static int build_header(const hma_writer *w, const wfile *s, hma__strbuf *sb) {
    hma__sb_putc(sb, '{');
    if (w->nmeta) {
        hma__sb_puts(sb, "\"__metadata__\":{");
        for (size_t i = 0; i < w->nmeta; i++) {
            if (i) hma__sb_putc(sb, ',');
            hma__sb_json_string(sb, w->mkeys[i], strlen(w->mkeys[i]));
            hma__sb_putc(sb, ':');
            hma__sb_json_string(sb, w->mvals[i], strlen(w->mvals[i]));
        }
        hma__sb_putc(sb, '}');
    }
    for (size_t i = 0; i < s->count; i++) {
        const wtensor *t = &w->t[s->first + i];
        if (i || w->nmeta) hma__sb_putc(sb, ',');
        hma__sb_json_string(sb, t->name, t->name_len);
        hma__sb_puts(sb, ":{\"dtype\":\"");
        hma__sb_puts(sb, hma_dtype_name(t->dtype));
        hma__sb_puts(sb, "\",\"shape\":[");
        for (unsigned d = 0; d < t->ndim; d++) {
            if (d) hma__sb_putc(sb, ',');
            hma__sb_u64(sb, t->shape[d]);
        }
        hma__sb_puts(sb, "],\"data_offsets\":[");
        hma__sb_u64(sb, t->begin);
        hma__sb_putc(sb, ',');
        hma__sb_u64(sb, t->begin + t->nbytes);
        hma__sb_puts(sb, "]}");
    }
    hma__sb_putc(sb, '}');
    /* sb holds the 8 length bytes too, so this makes the header length a
     * multiple of 8 and the data 8-aligned. */
    return hma__sb_fill(sb, ' ', (8 - sb->len % 8) % 8);
}

static int cmp_names(const void *a, const void *b) {
    const wtensor *x = *(const wtensor *const *)a, *y = *(const wtensor *const *)b;
    return strcmp(x->name, y->name); /* byte order = code point order for UTF-8 */
}

/* model.safetensors.index.json as transformers writes it:
 * json.dumps(index, indent=2, sort_keys=True) + "\n". */
static int build_index(const hma_writer *w, hma__strbuf *sb) {
    const wtensor **sorted = hma__malloc((w->nt ? w->nt : 1) * sizeof *sorted);
    if (!sorted) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory building the index", w->path);
    for (size_t i = 0; i < w->nt; i++) sorted[i] = &w->t[i];
    qsort(sorted, w->nt, sizeof *sorted, cmp_names);
    hma__sb_puts(sb, "{\n  \"metadata\": {\n    \"total_size\": ");
    hma__sb_u64(sb, w->total);
    hma__sb_puts(sb, "\n  },\n  \"weight_map\": {");
    for (size_t i = 0; i < w->nt; i++) {
        hma__sb_puts(sb, i ? ",\n    " : "\n    ");
        hma__sb_json_string_ascii(sb, sorted[i]->name, sorted[i]->name_len);
        hma__sb_puts(sb, ": ");
        const char *fp = w->files[sorted[i]->shard].final_path;
        const char *base = strrchr(fp, '/');
        base = base ? base + 1 : fp;
        hma__sb_json_string_ascii(sb, base, strlen(base));
    }
    int rc = hma__sb_puts(sb, w->nt ? "\n  }\n}\n" : "}\n}\n");
    hma__free(sorted);
    return rc;
}

/* Assign tensors to shards in declaration order and name the files. */
static int layout(hma_writer *w) {
    size_t n = 1;
    uint64_t cur = 0; /* data bytes in the current shard */
    for (size_t i = 0; i < w->nt; i++) {
        uint64_t sz = w->t[i].nbytes;
        /* Zero-size tensors never open a shard; a tensor over the limit
         * opens one and the next non-empty tensor opens another. */
        if (w->shard_size && sz > 0 && cur > 0 && (cur > w->shard_size || sz > w->shard_size - cur)) {
            n++;
            cur = 0;
        }
        w->t[i].shard = n - 1;
        w->t[i].begin = cur;
        cur += sz;
    }
    int sharded = w->folder && n > 1;
    w->nshards = n;
    w->nfiles = n + (sharded ? 1 : 0);
    w->files = hma__calloc(w->nfiles, sizeof *w->files);
    if (!w->files) {
        w->nfiles = w->nshards = 0;
        return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", w->path);
    }
    for (size_t i = 0; i < w->nfiles; i++) w->files[i].fd = -1;
    for (size_t i = 0; i < w->nt; i++) {
        wfile *f = &w->files[w->t[i].shard];
        if (f->count == 0) f->first = i;
        f->count++;
        f->data_size = w->t[i].begin + w->t[i].nbytes;
    }
    for (size_t i = 0; i < w->nfiles; i++) {
        char name[64];
        if (!w->folder) {
            w->files[i].final_path = hma__strdup(w->path);
        } else {
            if (!sharded) snprintf(name, sizeof name, SINGLE_NAME);
            else if (i == n) snprintf(name, sizeof name, INDEX_NAME);
            else snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, n);
            w->files[i].final_path = join_path(w->dir, name);
        }
        if (!w->files[i].final_path) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", w->path);
    }
    return HMA_OK;
}

/* Refuse final paths that are folders or files open as inputs. */
static int check_finals(const hma_writer *w) {
    for (size_t i = 0; i < w->nfiles; i++) {
        const char *p = w->files[i].final_path;
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            return hma__fail(HMA_ERR_EXISTS, "%s: is a folder (expected a file or nothing at this path)", p);
        if (hma__registry_contains_path(p))
            return hma__fail(HMA_ERR_OVERWRITES_INPUT,
                             "%s: is open as an input in this process; writing here would replace it "
                             "(close the store first or choose another output)", p);
    }
    return HMA_OK;
}

/* Create an exclusive hidden temporary in the destination folder. */
static int create_temp(hma_writer *w, wfile *f, size_t which) {
    uint64_t seed = mix64((uint64_t)getpid() ^ ((uint64_t)(uintptr_t)w << 16) ^ which);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    seed = mix64(seed ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32));
    char name[64];
    for (int attempt = 0; attempt < 100; attempt++) {
        seed = mix64(seed + (uint64_t)attempt);
        snprintf(name, sizeof name, TMP_PREFIX "%ld-%016llx", (long)getpid(), (unsigned long long)seed);
        char *tp = join_path(w->dir, name);
        if (!tp) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", f->final_path);
        int fd = open(tp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) {
            f->tmp_path = tp;
            f->fd = fd;
            return HMA_OK;
        }
        int e = errno;
        hma__free(tp);
        if (e == EEXIST || e == EINTR) continue;
        char eb[128];
        return hma__fail(HMA_ERR_IO, "%s: cannot create a temporary file in %s: %s", f->final_path, w->dir,
                         errstr(e, eb, sizeof eb));
    }
    return hma__fail(HMA_ERR_IO, "%s: cannot find a free temporary name in %s", f->final_path, w->dir);
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

static int write_file_start(hma_writer *w, wfile *f, size_t which, const char *bytes, size_t len) {
    int rc = create_temp(w, f, which);
    if (rc) return rc;
    int e = preallocate(f->fd, f->size);
    if (!e) e = pwrite_all(f->fd, bytes, len, 0);
    if (e) {
        char eb[128];
        return hma__fail(HMA_ERR_IO, "%s: cannot write %llu bytes to temporary %s: %s", f->final_path,
                         (unsigned long long)f->size, f->tmp_path, errstr(e, eb, sizeof eb));
    }
    return HMA_OK;
}

int hma_writer_begin(hma_writer *w) {
    if (!w) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_begin: NULL writer");
    if (w->state != W_DECLARING)
        return hma__fail(HMA_ERR_STATE, "%s: hma_writer_begin() called again (expected once, after the declarations)", w->path);
    int rc = layout(w);
    if (!rc && w->folder) rc = make_folder(w);
    if (!rc) rc = check_finals(w);
    hma__strbuf sb = HMA__STRBUF_INIT;
    for (size_t i = 0; i < w->nshards && !rc; i++) {
        wfile *f = &w->files[i];
        hma__sb_fill(&sb, 0, 8);
        rc = build_header(w, f, &sb);
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
        rc = write_file_start(w, f, i, sb.data, sb.len);
        sb.len = 0;
    }
    if (!rc && w->nfiles > w->nshards) {
        wfile *f = &w->files[w->nshards];
        rc = build_index(w, &sb);
        if (!rc) {
            f->size = sb.len;
            rc = write_file_start(w, f, w->nshards, sb.data, sb.len);
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
    if (state == W_FAILED)
        return hma__fail(HMA_ERR_STATE, "%s: %s after a failed write (%s)", w->path, what, w->fail_msg);
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
    wtensor *t = &w->t[index];
    wfile *f = &w->files[t->shard];
    if (offset > t->nbytes || len > t->nbytes - offset)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: tensor '%.200s': range [%llu, +%zu) past its %llu bytes",
                         f->final_path, t->name, (unsigned long long)offset, len, (unsigned long long)t->nbytes);
    if (len && !data)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: tensor '%.200s': NULL data for %zu bytes", f->final_path, t->name, len);
    if (len == 0) return HMA_OK;
    uint64_t at = f->data_off + t->begin + offset;
    int e = pwrite_all(f->fd, data, len, at); /* outside the lock: writes run in parallel */
    pthread_mutex_lock(&w->lock);
    if (e) {
        char eb[128];
        rc = hma__fail(HMA_ERR_IO, "%s: tensor '%.200s': writing %zu bytes at file offset %llu (temporary %s) failed: %s",
                       f->final_path, t->name, len, (unsigned long long)at, f->tmp_path, errstr(e, eb, sizeof eb));
        if (w->state == W_WRITING) {
            w->state = W_FAILED;
            snprintf(w->fail_msg, sizeof w->fail_msg, "%s", hma_last_error());
        }
    } else if (w->state == W_WRITING && cov_add(t, offset, offset + len) != HMA_OK) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "%s: tensor '%.200s': out of memory recording a written range", f->final_path, t->name);
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

/* ---- commit -------------------------------------------------------------- */

/* One step of the commit: put tmp at final (or, tmp == NULL, remove final),
 * keeping a hard link to what was there so the step can be undone. */
typedef struct wstep {
    const char *final_path, *tmp_path;
    char *backup; /* hard link to the previous file, or NULL */
    int done;
} wstep;

static void undo_steps(wstep *s, size_t n) {
    for (size_t i = n; i-- > 0;) {
        if (!s[i].done) continue;
        if (s[i].backup) {
            if (rename(s[i].backup, s[i].final_path) == 0) {
                hma__free(s[i].backup);
                s[i].backup = NULL;
            }
        } else if (s[i].tmp_path) {
            unlink(s[i].final_path);
        }
        s[i].done = 0;
    }
}

static int run_steps(hma_writer *w, wstep *s, size_t n) {
    char eb[128];
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (lstat(s[i].final_path, &st) == 0) {
            /* Back up the old file under a temporary name; without hard links
             * (some filesystems) the replacement simply cannot be undone. */
            char name[64];
            for (int attempt = 0; attempt < 100 && !s[i].backup; attempt++) {
                snprintf(name, sizeof name, TMP_PREFIX "%ld-old-%zu-%d", (long)getpid(), i, attempt);
                char *bp = join_path(w->dir, name);
                if (!bp) {
                    undo_steps(s, i);
                    return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", s[i].final_path);
                }
                if (link(s[i].final_path, bp) == 0) {
                    s[i].backup = bp;
                } else {
                    int e = errno;
                    hma__free(bp);
                    if (e != EEXIST) break;
                }
            }
        } else if (!s[i].tmp_path) {
            continue; /* nothing to remove */
        }
        int r = s[i].tmp_path ? rename(s[i].tmp_path, s[i].final_path) : unlink(s[i].final_path);
        if (r != 0 && !(s[i].tmp_path == NULL && errno == ENOENT)) {
            int e = errno;
            if (s[i].backup) { /* the old file is still in place */
                unlink(s[i].backup);
                hma__free(s[i].backup);
                s[i].backup = NULL;
            }
            undo_steps(s, i);
            return hma__fail(HMA_ERR_IO, "%s: cannot %s: %s (earlier renames undone)", s[i].final_path,
                             s[i].tmp_path ? "rename the temporary into place" : "remove the stale index",
                             errstr(e, eb, sizeof eb));
        }
        s[i].done = 1;
    }
    return HMA_OK;
}

static int commit_files(hma_writer *w) {
    char eb[128];
    for (size_t i = 0; i < w->nfiles; i++) {
        wfile *f = &w->files[i];
        int e = fsync_retry(f->fd);
        int c = close(f->fd);
        f->fd = -1;
        if (!e && c != 0 && errno != EINTR) e = errno;
        if (e) return hma__fail(HMA_ERR_IO, "%s: cannot flush temporary %s to disk: %s", f->final_path, f->tmp_path, errstr(e, eb, sizeof eb));
    }
    /* Shards first, the index last: a reader that finds the new index finds
     * every shard it names. A single model.safetensors written into a folder
     * also removes an index left there by an earlier sharded output, which
     * readers would otherwise prefer over the new file. */
    size_t n = w->nfiles + (w->folder && w->nfiles == 1 ? 1 : 0);
    wstep *s = hma__calloc(n, sizeof *s);
    char *stale = NULL;
    if (!s) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", w->path);
    for (size_t i = 0; i < w->nfiles; i++) {
        s[i].final_path = w->files[i].final_path;
        s[i].tmp_path = w->files[i].tmp_path;
    }
    if (n > w->nfiles) {
        stale = join_path(w->dir, INDEX_NAME);
        if (!stale) {
            hma__free(s);
            return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", w->path);
        }
        s[n - 1].final_path = stale;
    }
    int rc = run_steps(w, s, n);
    if (!rc) {
        int e = fsync_dir(w->dir);
        for (size_t i = 0; i < w->nmade && !e; i++) {
            /* A folder we created must itself be recorded in its parent. */
            char *parent = hma__strdup(w->made_dirs[i]);
            char *slash = parent ? strrchr(parent, '/') : NULL;
            if (parent) {
                if (!slash) e = fsync_dir(".");
                else if (slash == parent) e = fsync_dir("/");
                else {
                    *slash = '\0';
                    e = fsync_dir(parent);
                }
            }
            hma__free(parent);
        }
        if (e) {
            undo_steps(s, n);
            fsync_dir(w->dir);
            rc = hma__fail(HMA_ERR_IO, "%s: cannot flush folder %s to disk: %s (renames undone)", w->path, w->dir,
                           errstr(e, eb, sizeof eb));
        }
    }
    if (!rc) {
        for (size_t i = 0; i < w->nfiles; i++) {
            hma__free(w->files[i].tmp_path); /* now the final file */
            w->files[i].tmp_path = NULL;
        }
    }
    for (size_t i = 0; i < n; i++) {
        /* After a failed commit a backup is left only if it could not be put
         * back; it then is the sole copy of the old file: keep it. */
        if (s[i].backup && !rc) unlink(s[i].backup);
        hma__free(s[i].backup);
    }
    hma__free(stale);
    hma__free(s);
    return rc;
}

int hma_writer_commit(hma_writer *w) {
    if (!w) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_writer_commit: NULL writer");
    int rc = HMA_OK;
    if (w->state == W_DECLARING || w->state == W_DONE) return state_error(w, w->state, "commit");
    if (w->state == W_FAILED) {
        rc = hma__fail(HMA_ERR_IO, "%s: not committed because a write failed: %s", w->path, w->fail_msg);
    }
    for (size_t i = 0; i < w->nt && !rc; i++) {
        const wtensor *t = &w->t[i];
        if (t->covered != t->nbytes)
            rc = hma__fail(HMA_ERR_INCOMPLETE, "%s: tensor '%.200s': byte %llu of %llu never written (expected every byte before commit)",
                           w->files[t->shard].final_path, t->name, (unsigned long long)cov_first_missing(t),
                           (unsigned long long)t->nbytes);
    }
    if (!rc) rc = check_finals(w);
    if (!rc) rc = commit_files(w);
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
    hma__free(w->t);
    hma__free(w->hash);
    hma__free(w->dir);
    hma__free(w->path);
    pthread_mutex_destroy(&w->lock);
    hma__free(w);
}

int hma__writer_has_metadata(const hma_writer *w, const char *key) {
    for (size_t i = 0; w && key && i < w->nmeta; i++)
        if (strcmp(w->mkeys[i], key) == 0) return 1;
    return 0;
}
