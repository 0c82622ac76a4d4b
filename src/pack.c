/*
 * pack.c - delta packs: write a pack from a safetensors file (and a base),
 * read one back as a store, unpack it byte for byte, verify it. The format
 * is in docs/pack-format.md; the per-chunk transforms in pack_codec.c.
 *
 * Everything read from a pack is untrusted: the fixed header and the index
 * carry xxhash64 checksums, every offset and length is bounds-checked before
 * use, and every decoded chunk is checked against its own checksum before a
 * byte of it is handed out.
 */
#include "internal.h"
#include "bytes.h"
#include "pack_codec.h"
#include "formats/safetensors.h"
#include "io/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PACK_MAGIC "HMAPACK"   /* 7 bytes + NUL = 8 */
#define PACK_VERSION 3u /* written; 3 adds the 16-bit methods DIFF16 and FLOAT16 */
#define PACK_VERSION_MIN 2u /* read back to 2; 1 (zstd byte planes) is not read any more */
#define PACK_FLAG_BASE 1u
#define FIXED_SIZE 72u
#define TENSOR_HEAD 16u /* u8 coding, 7 zero bytes, u64 chunk count */
#define CHUNK_ENTRY 32u /* u64 offset, u32 length, u8 method, 3 zero, u64 xxh64 of payload, u64 xxh64 of raw */
#define CODING_ALONE 0u
#define CODING_BASE 1u

/* ======================================================================= */
/* Small helpers                                                           */
/* ======================================================================= */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int fail_errno(int code, const char *path, const char *what) {
    int e = errno;
    char buf[128];
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    const char *msg = strerror_r(e, buf, sizeof buf);
#else
    const char *msg = strerror_r(e, buf, sizeof buf) ? "error" : buf;
#endif
    return hma__fail(code, "%.400s: %s: %s", path, what, msg);
}

/* pread exactly len bytes; HMA_ERR_TRUNCATED if the file ends first. */
static int pread_all(int fd, const char *path, void *buf, size_t len, uint64_t off) {
    unsigned char *p = buf;
    while (len) {
        if (off > (uint64_t)INT64_MAX) return hma__fail(HMA_ERR_OVERFLOW, "%.400s: offset overflow", path);
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return fail_errno(HMA_ERR_IO, path, "read");
        }
        if (r == 0)
            return hma__fail(HMA_ERR_TRUNCATED, "%.400s: file ends at byte %llu (expected %zu more bytes)",
                             path, (unsigned long long)off, len);
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return HMA_OK;
}

static int pwrite_all(int fd, const char *path, const void *buf, size_t len, uint64_t off) {
    const unsigned char *p = buf;
    while (len) {
        ssize_t r = pwrite(fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return fail_errno(HMA_ERR_IO, path, "write");
        }
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return HMA_OK;
}

/* Codec layout of a dtype; returns 1 for the float dtypes whose bytes the
 * plane transforms understand (C64 = pairs of F32). */
static int dtype_fmt(hma_dtype dt, hma__pc_fmt *f) {
    switch (dt) {
    case HMA_DTYPE_BF16: *f = (hma__pc_fmt){2, 8}; return 1;
    case HMA_DTYPE_F16: *f = (hma__pc_fmt){2, 5}; return 1;
    case HMA_DTYPE_F32:
    case HMA_DTYPE_C64: *f = (hma__pc_fmt){4, 8}; return 1;
    case HMA_DTYPE_F64: *f = (hma__pc_fmt){8, 11}; return 1;
    default: {
        unsigned bits = hma_dtype_bits(dt);
        f->esize = (bits == 16 || bits == 32 || bits == 64) ? bits / 8 : 1;
        f->ebits = 0;
        return 0;
    }
    }
}

static int same_shape(const hma__st_tensor *t, const hma_tensor *b) {
    if (hma_tensor_dtype(b) != t->dtype || hma_tensor_ndim(b) != t->ndim) return 0;
    const uint64_t *s = hma_tensor_shape(b);
    for (unsigned d = 0; d < t->ndim; d++)
        if (s[d] != t->shape[d]) return 0;
    return 1;
}

static unsigned default_threads(unsigned t) { return t ? t : hma__default_threads(256); }

/* ======================================================================= */
/* Parallel for: jobs [0, n) over `threads` threads (the caller is one).   */
/* The error message of the failing job with the smallest index is carried */
/* back to the calling thread.                                             */
/* ======================================================================= */

typedef int (*job_fn)(void *arg, size_t job, unsigned worker);

typedef struct pfor {
    job_fn fn;
    void *arg;
    size_t n;
    atomic_size_t next;
    atomic_int failed;
    pthread_mutex_t lock;
    size_t err_job;
    int err_code;
    char err_msg[1024];
} pfor;

typedef struct pfor_worker {
    pfor *p;
    unsigned id;
} pfor_worker;

static void *pfor_run(void *a) {
    pfor_worker *w = a;
    pfor *p = w->p;
    for (;;) {
        if (atomic_load(&p->failed)) break;
        size_t j = atomic_fetch_add(&p->next, 1);
        if (j >= p->n) break;
        int rc = p->fn(p->arg, j, w->id);
        if (rc) {
            pthread_mutex_lock(&p->lock);
            if (!p->err_code || j < p->err_job) {
                p->err_code = rc;
                p->err_job = j;
                snprintf(p->err_msg, sizeof p->err_msg, "%s", hma_last_error());
            }
            pthread_mutex_unlock(&p->lock);
            atomic_store(&p->failed, 1);
        }
    }
    return NULL;
}

static int parallel_for(size_t n, unsigned threads, job_fn fn, void *arg) {
    if (n == 0) return HMA_OK;
    if (threads > n) threads = (unsigned)n;
    if (threads == 0) threads = 1;
    pfor p;
    memset(&p, 0, sizeof p);
    p.fn = fn;
    p.arg = arg;
    p.n = n;
    atomic_init(&p.next, 0);
    atomic_init(&p.failed, 0);
    pthread_mutex_init(&p.lock, NULL);
    pthread_t tid[256];
    pfor_worker w[256];
    unsigned started = 0;
    int rc = HMA_OK;
    if (threads > 256) threads = 256;
    for (unsigned i = 1; i < threads; i++) {
        w[i].p = &p;
        w[i].id = i;
        if (pthread_create(&tid[i - 1], NULL, pfor_run, &w[i]) != 0) {
            rc = hma__fail(HMA_ERR_THREAD, "cannot create worker thread %u of %u", i, threads);
            atomic_store(&p.failed, 1);
            break;
        }
        started++;
    }
    w[0].p = &p;
    w[0].id = 0;
    if (!rc) pfor_run(&w[0]);
    for (unsigned i = 0; i < started; i++) pthread_join(tid[i], NULL);
    pthread_mutex_destroy(&p.lock);
    if (rc) return rc;
    if (p.err_code) return hma__fail(p.err_code, "%s", p.err_msg);
    return HMA_OK;
}

/* ======================================================================= */
/* Base checksum: xxh64 over, for each base tensor in name order (bytewise), */
/* u32 name length, name, u32 dtype, u32 ndim, u64 shape[ndim],             */
/* u64 xxh64(tensor bytes). Independent of the base's file layout.          */
/* ======================================================================= */

typedef struct base_hash_job {
    const hma_store *base;
    uint64_t *sums;
    unsigned char **bufs; /* one 1 MiB buffer per worker */
} base_hash_job;

#define HASH_BUF (1u << 20)

static int base_hash_one(void *arg, size_t i, unsigned worker) {
    base_hash_job *j = arg;
    const hma_tensor *t = hma_store_tensor(j->base, i);
    uint64_t n = hma_tensor_nbytes(t);
    hma__xxh64_state st;
    hma__xxh64_init(&st, 0);
    for (uint64_t off = 0; off < n; off += HASH_BUF) {
        size_t len = (size_t)(n - off < HASH_BUF ? n - off : HASH_BUF);
        int rc = hma_store_read(j->base, t, off, j->bufs[worker], len);
        if (rc) return hma__fail_prefix(rc, "base tensor '%.200s'", hma_tensor_name(t));
        hma__xxh64_update(&st, j->bufs[worker], len);
    }
    j->sums[i] = hma__xxh64_digest(&st);
    return HMA_OK;
}

typedef struct name_idx {
    const char *name;
    size_t i;
} name_idx;
static int cmp_name(const void *a, const void *b) {
    return strcmp(((const name_idx *)a)->name, ((const name_idx *)b)->name);
}

static int base_checksum(const hma_store *base, unsigned threads, uint64_t *out) {
    size_t n = hma_store_count(base);
    int rc = HMA_OK;
    base_hash_job j = {base, NULL, NULL};
    name_idx *order = hma__calloc(n ? n : 1, sizeof *order);
    j.sums = hma__calloc(n ? n : 1, sizeof *j.sums);
    threads = default_threads(threads);
    if (threads > n) threads = n ? (unsigned)n : 1;
    j.bufs = hma__calloc(threads, sizeof *j.bufs);
    if (!order || !j.sums || !j.bufs) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "base checksum: out of memory");
        goto done;
    }
    for (unsigned w = 0; w < threads; w++)
        if (!(j.bufs[w] = hma__malloc(HASH_BUF))) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "base checksum: out of memory");
            goto done;
        }
    rc = parallel_for(n, threads, base_hash_one, &j);
    if (rc) goto done;
    for (size_t i = 0; i < n; i++) {
        order[i].name = hma_tensor_name(hma_store_tensor(base, i));
        order[i].i = i;
    }
    qsort(order, n, sizeof *order, cmp_name);
    hma__xxh64_state st;
    hma__xxh64_init(&st, 0);
    for (size_t k = 0; k < n; k++) {
        const hma_tensor *t = hma_store_tensor(base, order[k].i);
        unsigned char b[16];
        size_t len = strlen(order[k].name);
        hma__st32(b, (uint32_t)len);
        hma__xxh64_update(&st, b, 4);
        hma__xxh64_update(&st, order[k].name, len);
        hma__st32(b, (uint32_t)hma_tensor_dtype(t));
        hma__st32(b + 4, hma_tensor_ndim(t));
        hma__xxh64_update(&st, b, 8);
        for (unsigned d = 0; d < hma_tensor_ndim(t); d++) {
            hma__st64(b, hma_tensor_shape(t)[d]);
            hma__xxh64_update(&st, b, 8);
        }
        hma__st64(b, j.sums[order[k].i]);
        hma__xxh64_update(&st, b, 8);
    }
    *out = hma__xxh64_digest(&st);
done:
    if (j.bufs)
        for (unsigned w = 0; w < threads; w++) hma__free(j.bufs[w]);
    hma__free(j.bufs);
    hma__free(j.sums);
    hma__free(order);
    return rc;
}

/* ======================================================================= */
/* Per-worker scratch                                                      */
/* ======================================================================= */

typedef struct scratch {
    hma__pc_ctx *cc;
    uint8_t *raw;     /* chunk_size */
    uint8_t *basebuf; /* chunk_size */
    uint8_t *payload; /* hma__pc_bound(chunk_size) */
} scratch;

static void scratch_free(scratch *s) {
    if (!s) return;
    hma__pc_ctx_free(s->cc);
    hma__free(s->raw);
    hma__free(s->basebuf);
    hma__free(s->payload);
    memset(s, 0, sizeof *s);
}

static int scratch_init(scratch *s, size_t cs) {
    memset(s, 0, sizeof *s);
    int rc = hma__pc_ctx_new(&s->cc, cs);
    s->raw = hma__malloc(cs);
    s->basebuf = hma__malloc(cs);
    s->payload = hma__malloc(hma__pc_bound(cs));
    if (rc || !s->raw || !s->basebuf || !s->payload) {
        scratch_free(s);
        return hma__fail(HMA_ERR_NO_MEMORY, "pack: out of memory for chunk buffers (%zu bytes)", cs);
    }
    return HMA_OK;
}

/* ======================================================================= */
/* Reading a pack                                                          */
/* ======================================================================= */

typedef struct pk_chunk {
    uint64_t off;
    uint32_t len;
    uint8_t method;
    uint64_t psum; /* xxh64 of the payload as stored */
    uint64_t sum;  /* xxh64 of the decoded bytes */
} pk_chunk;

typedef struct pk_tensor {
    unsigned coding;
    size_t first; /* index of its first chunk in pk_file.chunks */
    size_t nchunks;
    const hma_tensor *bt; /* base tensor when coding == CODING_BASE */
} pk_tensor;

typedef struct pk_file {
    char *path;
    int fd;
    int registered;
    unsigned long long dev, ino;
    uint64_t file_size;
    uint32_t version; /* 2 or 3 */
    uint32_t flags;
    uint64_t base_sum, cs, orig_size, index_off, index_len;
    unsigned char *index;
    hma__st_header hdr;
    pk_tensor *t;
    pk_chunk *chunks;
    size_t nchunks;
    const hma_store *base;
} pk_file;

static void pk_close(pk_file *p) {
    if (!p) return;
    if (p->registered) hma__registry_remove(p->dev, p->ino);
    if (p->fd >= 0) close(p->fd);
    hma__st_header_free(&p->hdr);
    hma__free(p->index);
    hma__free(p->t);
    hma__free(p->chunks);
    hma__free(p->path);
    memset(p, 0, sizeof *p);
    p->fd = -1;
}

/* Check the fixed header (72 bytes). */
static int pk_check_fixed(pk_file *p, const unsigned char *h) {
    const char *path = p->path;
    if (memcmp(h, PACK_MAGIC, 8) != 0)
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: byte 0: not a libhma pack (expected the magic \"HMAPACK\\0\")", path);
    if (hma__xxh64(h, 64, 0) != hma__ld64(h + 64))
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: bytes [0, 64): fixed header checksum mismatch (the header is damaged)", path);
    uint32_t version = hma__ld32(h + 8);
    if (version < PACK_VERSION_MIN || version > PACK_VERSION)
        return hma__fail(HMA_ERR_UNSUPPORTED, "%.400s: pack format version %u (this build reads versions %u to %u)",
                         path, version, PACK_VERSION_MIN, PACK_VERSION);
    p->version = version;
    p->flags = hma__ld32(h + 12);
    if (p->flags & ~PACK_FLAG_BASE)
        return hma__fail(HMA_ERR_UNSUPPORTED, "%.400s: unknown pack flags 0x%x (this build knows 0x%x)", path,
                         p->flags, PACK_FLAG_BASE);
    p->base_sum = hma__ld64(h + 16);
    p->cs = hma__ld64(h + 24);
    p->orig_size = hma__ld64(h + 32);
    p->index_off = hma__ld64(h + 40);
    p->index_len = hma__ld64(h + 48);
    if (p->cs < HMA_PACK_MIN_CHUNK || p->cs > HMA_PACK_MAX_CHUNK || p->cs % 8)
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: byte 24: chunk size %llu (expected a multiple of 8 in [%u, %u])", path,
                         (unsigned long long)p->cs, HMA_PACK_MIN_CHUNK, HMA_PACK_MAX_CHUNK);
    uint64_t end;
    if (p->index_off < FIXED_SIZE || hma__add_overflows(p->index_off, p->index_len, &end))
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: byte 40: index [%llu, +%llu) is out of bounds", path,
                         (unsigned long long)p->index_off, (unsigned long long)p->index_len);
    if (end > p->file_size)
        return hma__fail(HMA_ERR_TRUNCATED, "%.400s: file has %llu bytes, its header says %llu", path,
                         (unsigned long long)p->file_size, (unsigned long long)end);
    if (end < p->file_size)
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: %llu bytes after the index (expected the file to end at byte %llu)",
                         path, (unsigned long long)(p->file_size - end), (unsigned long long)end);
    return HMA_OK;
}

/* Parse the index (checksum already verified). */
static int pk_parse_index(pk_file *p) {
    const char *path = p->path;
    const unsigned char *ix = p->index;
    uint64_t len = p->index_len, pos = 0;
    int rc;
#define NEED(nb, what)                                                                            \
    do {                                                                                          \
        if ((uint64_t)(nb) > len - pos)                                                           \
            return hma__fail(HMA_ERR_CORRUPT, "%.400s: index byte %llu: %s cut short", path,       \
                             (unsigned long long)pos, what);                                      \
    } while (0)
    NEED(8, "header length");
    uint64_t hlen = hma__ld64(ix);
    pos = 8;
    NEED(hlen, "safetensors header");
    if (p->orig_size < 8 || hlen > p->orig_size - 8)
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: header length %llu does not fit the original size %llu", path,
                         (unsigned long long)hlen, (unsigned long long)p->orig_size);
    char what[480];
    snprintf(what, sizeof what, "%.400s (stored header)", path);
    rc = hma__st_parse(what, (const char *)ix + pos, hlen, p->orig_size, &p->hdr);
    if (rc) return rc;
    pos += hlen;
    NEED(8, "tensor count");
    uint64_t nt = hma__ld64(ix + pos);
    pos += 8;
    if (nt != p->hdr.n)
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: index lists %llu tensors, the header %zu", path,
                         (unsigned long long)nt, p->hdr.n);
    p->t = hma__calloc(p->hdr.n ? p->hdr.n : 1, sizeof *p->t);
    if (!p->t) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
    /* The chunk count is bounded by the index size, so this allocation is too. */
    size_t maxc = (size_t)(len / CHUNK_ENTRY) + 1;
    p->chunks = hma__calloc(maxc, sizeof *p->chunks);
    if (!p->chunks) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
    uint64_t next_off = FIXED_SIZE;
    for (size_t i = 0; i < p->hdr.n; i++) {
        const hma__st_tensor *st = &p->hdr.tensors[i];
        pk_tensor *t = &p->t[i];
        NEED(TENSOR_HEAD, "tensor record");
        t->coding = ix[pos];
        for (int k = 1; k < 8; k++)
            if (ix[pos + (uint64_t)k])
                return hma__fail(HMA_ERR_CORRUPT, "%.400s: tensor '%.200s': reserved bytes not zero", path, st->name);
        if (t->coding > CODING_BASE || (t->coding == CODING_BASE && !(p->flags & PACK_FLAG_BASE)))
            return hma__fail(HMA_ERR_CORRUPT, "%.400s: tensor '%.200s': coding %u (expected 0%s)", path, st->name,
                             t->coding, (p->flags & PACK_FLAG_BASE) ? " or 1" : ", the pack has no base");
        uint64_t nc = hma__ld64(ix + pos + 8);
        pos += TENSOR_HEAD;
        uint64_t want = st->nbytes / p->cs + (st->nbytes % p->cs != 0);
        if (nc != want)
            return hma__fail(HMA_ERR_CORRUPT, "%.400s: tensor '%.200s': %llu chunks (expected %llu for %llu bytes)", path,
                             st->name, (unsigned long long)nc, (unsigned long long)want,
                             (unsigned long long)st->nbytes);
        if (nc > (len - pos) / CHUNK_ENTRY) NEED(nc * CHUNK_ENTRY, "chunk table");
        hma__pc_fmt fmt;
        int isfloat = dtype_fmt(st->dtype, &fmt);
        t->first = p->nchunks;
        t->nchunks = (size_t)nc;
        for (uint64_t c = 0; c < nc; c++) {
            const unsigned char *e = ix + pos;
            pk_chunk *ch = &p->chunks[p->nchunks++];
            ch->off = hma__ld64(e);
            ch->len = hma__ld32(e + 8);
            ch->method = e[12];
            ch->psum = hma__ld64(e + 16);
            ch->sum = hma__ld64(e + 24);
            uint64_t raw = (c + 1 < nc) ? p->cs : st->nbytes - c * p->cs;
            int f16 = isfloat && fmt.esize == 2 && p->version >= 3;
            int mok = ch->method == HMA__PC_STORE || ch->method == HMA__PC_ZSTD ||
                      (isfloat && ch->method == HMA__PC_FLOAT) ||
                      (isfloat && t->coding == CODING_BASE && ch->method == HMA__PC_DIFF) ||
                      (f16 && ch->method == HMA__PC_FLOAT16) ||
                      (f16 && t->coding == CODING_BASE && ch->method == HMA__PC_DIFF16);
            if (!mok || e[13] || e[14] || e[15])
                return hma__fail(HMA_ERR_CORRUPT, "%.400s: tensor '%.200s': chunk %llu: coding method %u not valid here",
                                 path, st->name, (unsigned long long)c, ch->method);
            if (ch->off != next_off || ch->len == 0 || ch->len > hma__pc_bound((size_t)raw) ||
                ch->len > p->index_off - next_off)
                return hma__fail(HMA_ERR_CORRUPT,
                                 "%.400s: tensor '%.200s': chunk %llu: payload [%llu, +%u) out of place (expected to start at %llu and end by %llu)",
                                 path, st->name, (unsigned long long)c, (unsigned long long)ch->off, ch->len,
                                 (unsigned long long)next_off, (unsigned long long)p->index_off);
            next_off += ch->len;
            pos += CHUNK_ENTRY;
        }
    }
    if (next_off != p->index_off)
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: chunk payloads end at byte %llu, the index starts at %llu", path,
                         (unsigned long long)next_off, (unsigned long long)p->index_off);
    if (pos != len)
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: %llu unexpected bytes at the end of the index", path,
                         (unsigned long long)(len - pos));
#undef NEED
    return HMA_OK;
}

static int pk_read_fixed(const char *path, int fd, uint64_t *size, unsigned char h[FIXED_SIZE]) {
    struct stat sb;
    if (fstat(fd, &sb) != 0) return fail_errno(HMA_ERR_IO, path, "stat");
    if (!S_ISREG(sb.st_mode)) return hma__fail(HMA_ERR_IO, "%.400s: not a regular file", path);
    *size = (uint64_t)sb.st_size;
    if (*size < FIXED_SIZE)
        return hma__fail(HMA_ERR_TRUNCATED, "%.400s: %llu bytes, shorter than a pack header (%u bytes)", path,
                         (unsigned long long)*size, FIXED_SIZE);
    return pread_all(fd, path, h, FIXED_SIZE, 0);
}

static int open_ro(const char *path, int *fd) {
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0) return fail_errno(errno == ENOENT ? HMA_ERR_NOT_FOUND : HMA_ERR_IO, path, "open");
    return HMA_OK;
}

static int pk_open(pk_file *p, const char *path, const hma_store *base, unsigned threads) {
    memset(p, 0, sizeof *p);
    p->fd = -1;
    unsigned char h[FIXED_SIZE];
    int rc;
    if (!(p->path = hma__strdup(path))) return hma__fail(HMA_ERR_NO_MEMORY, "out of memory");
    if ((rc = open_ro(path, &p->fd))) return rc;
    if ((rc = pk_read_fixed(path, p->fd, &p->file_size, h))) return rc;
    if ((rc = pk_check_fixed(p, h))) return rc;
    if (p->index_len > SIZE_MAX) return hma__fail(HMA_ERR_OVERFLOW, "%.400s: index too large", path);
    p->index = hma__malloc(p->index_len ? (size_t)p->index_len : 1);
    if (!p->index) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory for a %llu-byte index", path,
                                    (unsigned long long)p->index_len);
    if ((rc = pread_all(p->fd, path, p->index, (size_t)p->index_len, p->index_off))) return rc;
    if (hma__xxh64(p->index, (size_t)p->index_len, 0) != hma__ld64(h + 56))
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: index (bytes [%llu, %llu)) checksum mismatch (the index is damaged)",
                         path, (unsigned long long)p->index_off, (unsigned long long)(p->index_off + p->index_len));
    if ((rc = pk_parse_index(p))) return rc;
    struct stat sb;
    if (fstat(p->fd, &sb) == 0) {
        p->dev = (unsigned long long)sb.st_dev;
        p->ino = (unsigned long long)sb.st_ino;
        if ((rc = hma__registry_add(path, p->dev, p->ino))) return rc;
        p->registered = 1;
    }
    if (p->flags & PACK_FLAG_BASE) {
        if (!base)
            return hma__fail(HMA_ERR_WRONG_BASE,
                             "%.400s: this pack was made against a base (checksum %016llx); open it with that base", path,
                             (unsigned long long)p->base_sum);
        uint64_t sum;
        if ((rc = base_checksum(base, threads, &sum))) return hma__fail_prefix(rc, "%.400s: checking the base", path);
        if (sum != p->base_sum)
            return hma__fail(HMA_ERR_WRONG_BASE,
                             "%.400s: wrong base: the pack was made against a base with checksum %016llx, the base given (%.300s) has %016llx",
                             path, (unsigned long long)p->base_sum,
                             hma_store_file_count(base) ? hma_store_file_path(base, 0) : "?", (unsigned long long)sum);
        p->base = base;
        for (size_t i = 0; i < p->hdr.n; i++) {
            if (p->t[i].coding != CODING_BASE) continue;
            const hma__st_tensor *st = &p->hdr.tensors[i];
            const hma_tensor *bt = hma_store_find(base, st->name);
            if (!bt || !same_shape(st, bt))
                return hma__fail(HMA_ERR_WRONG_BASE, "%.400s: tensor '%.200s' is coded against a base tensor the base lacks",
                                 path, st->name);
            p->t[i].bt = bt;
        }
    }
    return HMA_OK;
}

/* Decode chunk c (index within tensor ti) into dst, checking its checksum. */
static int pk_decode_chunk(const pk_file *p, size_t ti, size_t c, scratch *s, uint8_t *dst) {
    const hma__st_tensor *st = &p->hdr.tensors[ti];
    const pk_tensor *t = &p->t[ti];
    const pk_chunk *ch = &p->chunks[t->first + c];
    uint64_t start = (uint64_t)c * p->cs;
    size_t raw = (size_t)(st->nbytes - start < p->cs ? st->nbytes - start : p->cs);
    int rc = pread_all(p->fd, p->path, s->payload, ch->len, ch->off);
    if (rc) return rc;
    /* The payload is checked before it is decoded: a damaged byte that
     * would happen to decode to the same data is still reported. */
    if (hma__xxh64(s->payload, ch->len, 0) != ch->psum)
        return hma__fail(HMA_ERR_CORRUPT,
                         "%.400s: tensor '%.200s': chunk %zu (pack bytes [%llu, +%u)): payload checksum mismatch (the pack is damaged)",
                         p->path, st->name, c, (unsigned long long)ch->off, ch->len);
    const uint8_t *basep = NULL;
    if (t->coding == CODING_BASE) {
        rc = hma_store_read(p->base, t->bt, start, s->basebuf, raw);
        if (rc) return hma__fail_prefix(rc, "%.400s: tensor '%.200s': reading the base", p->path, st->name);
        basep = s->basebuf;
    }
    hma__pc_fmt fmt;
    dtype_fmt(st->dtype, &fmt);
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

/* Flat job list over every chunk of a pack. */
typedef struct chunk_ref {
    size_t tensor, chunk;
} chunk_ref;

static chunk_ref *pk_chunk_refs(const pk_file *p) {
    chunk_ref *r = hma__malloc((p->nchunks ? p->nchunks : 1) * sizeof *r);
    if (!r) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < p->hdr.n; i++)
        for (size_t c = 0; c < p->t[i].nchunks; c++) r[k++] = (chunk_ref){i, c};
    return r;
}

/* ======================================================================= */
/* Pack as a store                                                         */
/* ======================================================================= */

typedef struct pk_store {
    pk_file f;
    pthread_mutex_t pool_lock;
    scratch **pool;
    size_t npool, cap_pool;
    pthread_mutex_t *tlock; /* one per tensor */
    uint8_t **data;         /* decoded tensors, NULL until first hma_tensor_data() */
} pk_store;

static scratch *pool_get(pk_store *s) {
    scratch *x = NULL;
    pthread_mutex_lock(&s->pool_lock);
    if (s->npool) x = s->pool[--s->npool];
    pthread_mutex_unlock(&s->pool_lock);
    if (x) return x;
    x = hma__calloc(1, sizeof *x);
    if (!x) {
        hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", s->f.path);
        return NULL;
    }
    if (scratch_init(x, (size_t)s->f.cs)) {
        hma__free(x);
        return NULL;
    }
    return x;
}

static void pool_put(pk_store *s, scratch *x) {
    pthread_mutex_lock(&s->pool_lock);
    if (s->npool == s->cap_pool) {
        size_t nc = s->cap_pool ? 2 * s->cap_pool : 4;
        scratch **np = hma__realloc(s->pool, nc * sizeof *np);
        if (!np) {
            pthread_mutex_unlock(&s->pool_lock);
            scratch_free(x);
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
    pthread_mutex_lock(&s->tlock[i]);
    const uint8_t *d = s->data[i];
    pthread_mutex_unlock(&s->tlock[i]);
    if (d) {
        if (len) memcpy(buf, d + offset, len);
        return HMA_OK;
    }
    if (len == 0) return HMA_OK;
    scratch *x = pool_get(s);
    if (!x) return hma_last_error_code();
    const uint64_t cs = s->f.cs, nbytes = s->f.hdr.tensors[i].nbytes;
    uint64_t end = offset + len;
    int rc = HMA_OK;
    for (uint64_t c = offset / cs; c * cs < end; c++) {
        uint64_t cstart = c * cs, cend = cstart + cs < nbytes ? cstart + cs : nbytes;
        uint64_t a = offset > cstart ? offset : cstart, b = end < cend ? end : cend;
        uint8_t *out = (uint8_t *)buf + (a - offset);
        if (a == cstart && b == cend) { /* whole chunk: decode in place */
            if ((rc = pk_decode_chunk(&s->f, i, (size_t)c, x, out))) break;
        } else {
            if ((rc = pk_decode_chunk(&s->f, i, (size_t)c, x, x->raw))) break;
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
            scratch *x = pool_get(s);
            int rc = x ? HMA_OK : HMA_ERR_NO_MEMORY;
            for (size_t c = 0; !rc && c < s->f.t[i].nchunks; c++)
                rc = pk_decode_chunk(&s->f, i, c, x, d + (uint64_t)c * s->f.cs);
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
        scratch_free(s->pool[i]);
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
    pk_close(&s->f);
    hma__free(s);
}

int hma_pack_open(hma_store **out, const char *pack_path, const hma_store *base, unsigned threads) {
    if (!out || !pack_path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_pack_open: NULL argument");
    pk_store *s = hma__calloc(1, sizeof *s);
    if (!s) return hma__fail(HMA_ERR_NO_MEMORY, "hma_pack_open: out of memory");
    pthread_mutex_init(&s->pool_lock, NULL);
    int rc = pk_open(&s->f, pack_path, base, threads);
    size_t n = s->f.hdr.n;
    hma__tensor_decl *decls = NULL;
    if (!rc) {
        s->tlock = hma__calloc(n ? n : 1, sizeof *s->tlock);
        s->data = hma__calloc(n ? n : 1, sizeof *s->data);
        decls = hma__calloc(n ? n : 1, sizeof *decls);
        if (!s->tlock || !s->data || !decls) {
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
        pthread_mutex_init(&s->tlock[i], NULL);
        const hma__st_tensor *st = &s->f.hdr.tensors[i];
        decls[i] = (hma__tensor_decl){st->name, st->dtype, st->ndim, st->shape};
    }
    static const hma__store_backend be = {ps_read, ps_data, ps_close};
    rc = hma__store_create_custom(out, pack_path, decls, n, (const char *const *)s->f.hdr.meta, s->f.hdr.n_meta,
                                  &be, s);
    hma__free(decls);
    return rc; /* on failure the store closed ctx */
}

int hma_pack_needs_base(const char *path, int *needs_base) {
    if (!path || !needs_base) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_pack_needs_base: NULL argument");
    pk_file p;
    memset(&p, 0, sizeof p);
    p.fd = -1;
    unsigned char h[FIXED_SIZE];
    int rc;
    if (!(p.path = hma__strdup(path))) return hma__fail(HMA_ERR_NO_MEMORY, "out of memory");
    if (!(rc = open_ro(path, &p.fd)) && !(rc = pk_read_fixed(path, p.fd, &p.file_size, h)) &&
        !(rc = pk_check_fixed(&p, h)))
        *needs_base = (p.flags & PACK_FLAG_BASE) != 0;
    pk_close(&p);
    return rc;
}

/* ======================================================================= */
/* Atomic output: temporary file in the destination folder, then rename.   */
/* ======================================================================= */

typedef struct outfile {
    char *final, *tmp, *dir;
    int fd;
} outfile;

static int out_begin(outfile *o, const char *path, const char *const *inputs, size_t n_inputs) {
    memset(o, 0, sizeof *o);
    o->fd = -1;
    struct stat sb, ib;
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return hma__fail(HMA_ERR_EXISTS, "%.400s: is a folder (expected a file name)", path);
        for (size_t i = 0; i < n_inputs; i++)
            if (inputs[i] && stat(inputs[i], &ib) == 0 && ib.st_dev == sb.st_dev && ib.st_ino == sb.st_ino)
                return hma__fail(HMA_ERR_OVERWRITES_INPUT, "%.400s: is the input %.400s (write elsewhere)", path, inputs[i]);
        if (hma__registry_contains_path(path))
            return hma__fail(HMA_ERR_OVERWRITES_INPUT, "%.400s: is open as an input (close it or write elsewhere)", path);
    }
    size_t len = strlen(path);
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    o->final = hma__strdup(path);
    o->dir = slash ? hma__strndup(path, dlen ? dlen : 1) : hma__strdup(".");
    o->tmp = hma__malloc(len + 32);
    if (!o->final || !o->dir || !o->tmp) {
        /* o->tmp holds no name yet: out_free() must not unlink it. */
        hma__free(o->tmp);
        o->tmp = NULL;
        return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
    }
    if (slash) snprintf(o->tmp, len + 32, "%.*s/.hma-tmp-XXXXXX", (int)dlen, path);
    else snprintf(o->tmp, len + 32, ".hma-tmp-XXXXXX");
    o->fd = mkstemp(o->tmp);
    if (o->fd < 0) {
        int rc = fail_errno(HMA_ERR_IO, o->tmp, "create temporary file");
        hma__free(o->tmp);
        o->tmp = NULL;
        return rc;
    }
    if (fchmod(o->fd, 0644) != 0) return fail_errno(HMA_ERR_IO, o->tmp, "chmod");
    return HMA_OK;
}

static int out_commit(outfile *o) {
    if (fsync(o->fd) != 0) return fail_errno(HMA_ERR_IO, o->tmp, "fsync");
    int fd = o->fd;
    o->fd = -1;
    if (close(fd) != 0) return fail_errno(HMA_ERR_IO, o->tmp, "close");
    if (hma__registry_contains_path(o->final))
        return hma__fail(HMA_ERR_OVERWRITES_INPUT, "%.400s: is open as an input (close it or write elsewhere)", o->final);
    if (rename(o->tmp, o->final) != 0) return fail_errno(HMA_ERR_IO, o->final, "rename");
    hma__free(o->tmp);
    o->tmp = NULL;
    int dfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        int r = fsync(dfd);
        close(dfd);
        if (r != 0) return fail_errno(HMA_ERR_IO, o->dir, "fsync folder");
    }
    return HMA_OK;
}

static void out_free(outfile *o) {
    if (o->fd >= 0) close(o->fd);
    if (o->tmp) unlink(o->tmp);
    hma__free(o->tmp);
    hma__free(o->final);
    hma__free(o->dir);
    memset(o, 0, sizeof *o);
    o->fd = -1;
}

/* ======================================================================= */
/* Options                                                                 */
/* ======================================================================= */

void hma_pack_options_init(hma_pack_options *opt) {
    if (!opt) return;
    memset(opt, 0, sizeof *opt);
    opt->size = sizeof *opt;
}

static int get_options(const hma_pack_options *in, hma_pack_options *o, const char *fn) {
    hma_pack_options_init(o);
    if (in) {
        if (in->size < sizeof *o)
            return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: options.size %zu (initialise with hma_pack_options_init)",
                             fn, in->size);
        *o = *in;
        o->size = sizeof *o;
    }
    if (o->level == 0) o->level = HMA_PACK_DEFAULT_LEVEL;
    if (o->level < -131072 || o->level > 22)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: level %d (expected -131072..22, 0 for the default)", fn, o->level);
    if (o->chunk_size == 0) o->chunk_size = HMA_PACK_DEFAULT_CHUNK;
    if (o->chunk_size < HMA_PACK_MIN_CHUNK || o->chunk_size > HMA_PACK_MAX_CHUNK || o->chunk_size % 8)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: chunk_size %llu (expected a multiple of 8 in [%u, %u])", fn,
                         (unsigned long long)o->chunk_size, HMA_PACK_MIN_CHUNK, HMA_PACK_MAX_CHUNK);
    o->threads = default_threads(o->threads);
    return HMA_OK;
}

/* ======================================================================= */
/* Create                                                                  */
/* ======================================================================= */

typedef struct enc_slot {
    uint8_t *payload;
    uint32_t len;
    uint8_t method;
    uint64_t psum, sum;
} enc_slot;

typedef struct enc_job {
    const char *path;
    int fd;
    const hma__st_header *hdr;
    const hma_store *base;
    const hma_tensor **bt; /* per tensor: base tensor or NULL */
    uint64_t cs;
    int level;
    const chunk_ref *refs;
    size_t first; /* first chunk of the batch */
    enc_slot *slots;
    scratch *ws; /* per worker */
} enc_job;

static int enc_one(void *arg, size_t j, unsigned worker) {
    enc_job *e = arg;
    const chunk_ref *r = &e->refs[e->first + j];
    const hma__st_tensor *st = &e->hdr->tensors[r->tensor];
    scratch *s = &e->ws[worker];
    enc_slot *slot = &e->slots[j];
    uint64_t start = (uint64_t)r->chunk * e->cs;
    size_t raw = (size_t)(st->nbytes - start < e->cs ? st->nbytes - start : e->cs);
    int rc = pread_all(e->fd, e->path, s->raw, raw, e->hdr->data_start + st->begin + start);
    if (rc) return rc;
    hma__pc_fmt fmt;
    int isfloat = dtype_fmt(st->dtype, &fmt);
    const hma_tensor *bt = e->bt[r->tensor];
    int method = HMA__PC_ZSTD;
    if (bt) {
        rc = hma_store_read(e->base, bt, start, s->basebuf, raw);
        if (rc) return hma__fail_prefix(rc, "base tensor '%.200s'", st->name);
        method = fmt.esize == 2 ? HMA__PC_DIFF16 : HMA__PC_DIFF;
    } else if (isfloat) {
        method = fmt.esize == 2 ? HMA__PC_FLOAT16 : HMA__PC_FLOAT;
    }
    int used;
    size_t len;
    rc = hma__pc_encode(s->cc, method, fmt, s->raw, bt ? s->basebuf : NULL, raw, e->level, slot->payload,
                        hma__pc_bound((size_t)e->cs), &len, &used);
    if (rc) return hma__fail(rc, "%.400s: tensor '%.200s': chunk %zu: cannot encode", e->path, st->name, r->chunk);
    slot->len = (uint32_t)len;
    slot->method = (uint8_t)used;
    slot->sum = hma__xxh64(s->raw, raw, 0);
    slot->psum = hma__xxh64(slot->payload, len, 0);
    return HMA_OK;
}

int hma_pack_create(const char *model_path, const hma_store *base, const char *out_path,
                    const hma_pack_options *opt_in, hma_pack_stats *stats) {
    if (!model_path || !out_path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_pack_create: NULL path");
    hma_pack_options opt;
    int rc = get_options(opt_in, &opt, "hma_pack_create");
    if (rc) return rc;
    double t0 = now_s();
    int fd = -1;
    char *json = NULL;
    hma__st_header hdr;
    memset(&hdr, 0, sizeof hdr);
    outfile of;
    memset(&of, 0, sizeof of);
    of.fd = -1;
    const hma_tensor **bt = NULL;
    uint64_t *rec_pos = NULL;
    chunk_ref *refs = NULL;
    scratch *ws = NULL;
    enc_slot *slots = NULL;
    unsigned char *index = NULL;
    unsigned nslots = 0, nws = 0;
    uint64_t base_sum = 0, on_base = 0;
    const size_t cs = (size_t)opt.chunk_size;

    struct stat sb;
    if (stat(model_path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        rc = hma__fail(HMA_ERR_UNSUPPORTED, "%.400s: is a folder; pack each .safetensors shard on its own", model_path);
        goto done;
    }
    size_t plen = strlen(model_path);
    if (plen >= 5 && !strcmp(model_path + plen - 5, ".json")) {
        rc = hma__fail(HMA_ERR_UNSUPPORTED, "%.400s: is an index file; pack each .safetensors shard on its own", model_path);
        goto done;
    }
    if ((rc = open_ro(model_path, &fd))) goto done;
    if (fstat(fd, &sb) != 0) {
        rc = fail_errno(HMA_ERR_IO, model_path, "stat");
        goto done;
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    unsigned char prefix[8];
    if (fsize < 8) {
        rc = hma__fail(HMA_ERR_HEADER_SIZE, "%.400s: %llu bytes, too short for a safetensors file", model_path,
                       (unsigned long long)fsize);
        goto done;
    }
    if ((rc = pread_all(fd, model_path, prefix, 8, 0))) goto done;
    uint64_t hlen;
    if ((rc = hma__st_header_len(model_path, prefix, fsize, &hlen))) goto done;
    if (!(json = hma__malloc((size_t)hlen))) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", model_path);
        goto done;
    }
    if ((rc = pread_all(fd, model_path, json, (size_t)hlen, 8))) goto done;
    if ((rc = hma__st_parse(model_path, json, hlen, fsize, &hdr))) goto done;

    if (base && (rc = base_checksum(base, opt.threads, &base_sum))) goto done;
    bt = hma__calloc(hdr.n ? hdr.n : 1, sizeof *bt);
    rec_pos = hma__calloc(hdr.n ? hdr.n : 1, sizeof *rec_pos);
    size_t nchunks = 0;
    if (!bt || !rec_pos) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < hdr.n; i++) {
        const hma__st_tensor *st = &hdr.tensors[i];
        hma__pc_fmt fmt;
        if (base && dtype_fmt(st->dtype, &fmt)) {
            const hma_tensor *b = hma_store_find(base, st->name);
            if (b && same_shape(st, b)) {
                bt[i] = b;
                on_base++;
            }
        }
        nchunks += (size_t)(st->nbytes / cs + (st->nbytes % cs != 0));
    }
    refs = hma__malloc((nchunks ? nchunks : 1) * sizeof *refs);
    if (!refs) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    {
        size_t k = 0;
        for (size_t i = 0; i < hdr.n; i++) {
            uint64_t nb = hdr.tensors[i].nbytes;
            for (size_t c = 0; (uint64_t)c * cs < nb; c++) refs[k++] = (chunk_ref){i, c};
        }
    }

    /* Two payload slots per thread: a batch is coded in parallel, then
     * written in order, so the bytes do not depend on the thread count. */
    nws = opt.threads;
    nslots = 2 * nws;
    ws = hma__calloc(nws, sizeof *ws);
    slots = hma__calloc(nslots, sizeof *slots);
    if (!ws || !slots) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    for (unsigned w = 0; w < nws; w++)
        if ((rc = scratch_init(&ws[w], cs))) goto done;
    for (unsigned k = 0; k < nslots; k++)
        if (!(slots[k].payload = hma__malloc(hma__pc_bound(cs)))) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "out of memory");
            goto done;
        }

    const char *inputs[1] = {model_path};
    if ((rc = out_begin(&of, out_path, inputs, 1))) goto done;

    /* index: u64 N, header JSON, u64 tensor count, tensor records */
    uint64_t ilen = 8 + hlen + 8 + (uint64_t)hdr.n * TENSOR_HEAD + (uint64_t)nchunks * CHUNK_ENTRY;
    if (ilen > SIZE_MAX || !(index = hma__calloc(1, (size_t)ilen))) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "out of memory for the pack index");
        goto done;
    }
    hma__st64(index, hlen);
    memcpy(index + 8, json, (size_t)hlen);
    uint64_t ipos = 8 + hlen;
    hma__st64(index + ipos, hdr.n);
    ipos += 8;
    /* Tensor records first; chunk entries are filled in as batches finish. */
    for (size_t i = 0; i < hdr.n; i++) {
        const hma__st_tensor *st = &hdr.tensors[i];
        index[ipos] = bt[i] ? CODING_BASE : CODING_ALONE;
        uint64_t nc = st->nbytes / cs + (st->nbytes % cs != 0);
        hma__st64(index + ipos + 8, nc);
        rec_pos[i] = ipos;
        ipos += TENSOR_HEAD + nc * CHUNK_ENTRY;
    }
    uint64_t woff = FIXED_SIZE;
    enc_job ej = {model_path, fd, &hdr, base, bt, cs, opt.level, refs, 0, slots, ws};
    for (size_t first = 0; first < nchunks;) {
        size_t nb = nchunks - first < nslots ? nchunks - first : nslots;
        ej.first = first;
        if ((rc = parallel_for(nb, opt.threads, enc_one, &ej))) goto done;
        for (size_t k = 0; k < nb; k++) {
            const chunk_ref *r = &refs[first + k];
            if ((rc = pwrite_all(of.fd, of.tmp, slots[k].payload, slots[k].len, woff))) goto done;
            unsigned char *e = index + rec_pos[r->tensor] + TENSOR_HEAD + (uint64_t)r->chunk * CHUNK_ENTRY;
            hma__st64(e, woff);
            hma__st32(e + 8, slots[k].len);
            e[12] = slots[k].method;
            hma__st64(e + 16, slots[k].psum);
            hma__st64(e + 24, slots[k].sum);
            woff += slots[k].len;
        }
        first += nb;
    }
    if (ipos != ilen) {
        rc = hma__fail(HMA_ERR_STATE, "hma_pack_create: internal error: index size %llu, expected %llu",
                       (unsigned long long)ipos, (unsigned long long)ilen);
        goto done;
    }
    if ((rc = pwrite_all(of.fd, of.tmp, index, (size_t)ilen, woff))) goto done;
    unsigned char fixed[FIXED_SIZE];
    memset(fixed, 0, sizeof fixed);
    memcpy(fixed, PACK_MAGIC, 8);
    hma__st32(fixed + 8, PACK_VERSION);
    hma__st32(fixed + 12, base ? PACK_FLAG_BASE : 0);
    hma__st64(fixed + 16, base_sum);
    hma__st64(fixed + 24, cs);
    hma__st64(fixed + 32, fsize);
    hma__st64(fixed + 40, woff);
    hma__st64(fixed + 48, ilen);
    hma__st64(fixed + 56, hma__xxh64(index, (size_t)ilen, 0));
    hma__st64(fixed + 64, hma__xxh64(fixed, 64, 0));
    if ((rc = pwrite_all(of.fd, of.tmp, fixed, FIXED_SIZE, 0))) goto done;
    if ((rc = out_commit(&of))) goto done;
    if (stats) {
        stats->raw_bytes = fsize;
        stats->packed_bytes = woff + ilen;
        stats->tensors = hdr.n;
        stats->tensors_on_base = on_base;
        stats->chunks = nchunks;
        stats->seconds = now_s() - t0;
    }
done:
    out_free(&of);
    if (ws)
        for (unsigned w = 0; w < nws; w++) scratch_free(&ws[w]);
    if (slots)
        for (unsigned k = 0; k < nslots; k++) hma__free(slots[k].payload);
    hma__free(ws);
    hma__free(slots);
    hma__free(index);
    hma__free(refs);
    hma__free(bt);
    hma__free(rec_pos);
    hma__free(json);
    hma__st_header_free(&hdr);
    if (fd >= 0) close(fd);
    return rc;
}

/* ======================================================================= */
/* Unpack and verify                                                       */
/* ======================================================================= */

typedef struct dec_job {
    const pk_file *p;
    const chunk_ref *refs;
    scratch *ws;
    int out_fd; /* unpack: write here */
    const char *out_path;
    int orig_fd; /* verify: compare with this file, or -1 */
    const char *orig_path;
    uint8_t **cmp; /* verify: per worker chunk buffer */
} dec_job;

static int dec_one(void *arg, size_t j, unsigned worker) {
    dec_job *d = arg;
    const pk_file *p = d->p;
    const chunk_ref *r = &d->refs[j];
    const hma__st_tensor *st = &p->hdr.tensors[r->tensor];
    scratch *s = &d->ws[worker];
    uint64_t start = (uint64_t)r->chunk * p->cs;
    size_t raw = (size_t)(st->nbytes - start < p->cs ? st->nbytes - start : p->cs);
    int rc = pk_decode_chunk(p, r->tensor, r->chunk, s, s->raw);
    if (rc) return rc;
    uint64_t at = p->hdr.data_start + st->begin + start;
    if (d->out_fd >= 0) return pwrite_all(d->out_fd, d->out_path, s->raw, raw, at);
    if (d->orig_fd >= 0) {
        if ((rc = pread_all(d->orig_fd, d->orig_path, d->cmp[worker], raw, at))) return rc;
        if (memcmp(d->cmp[worker], s->raw, raw) != 0) {
            size_t k = 0;
            while (d->cmp[worker][k] == s->raw[k]) k++;
            return hma__fail(HMA_ERR_MISMATCH, "%.400s: tensor '%.200s': byte %llu of the file differs from the pack %.400s",
                             d->orig_path, st->name, (unsigned long long)(at + k), p->path);
        }
    }
    return HMA_OK;
}

/* Decode every chunk of an open pack, writing or comparing each. */
static int dec_all(pk_file *p, unsigned threads, int out_fd, const char *out_path, int orig_fd,
                   const char *orig_path) {
    dec_job d = {p, NULL, NULL, out_fd, out_path, orig_fd, orig_path, NULL};
    int rc = HMA_OK;
    unsigned nws = threads;
    if (nws > p->nchunks) nws = p->nchunks ? (unsigned)p->nchunks : 1;
    d.refs = pk_chunk_refs(p);
    d.ws = hma__calloc(nws, sizeof *d.ws);
    d.cmp = hma__calloc(nws, sizeof *d.cmp);
    if (!d.refs || !d.ws || !d.cmp) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", p->path);
        goto done;
    }
    for (unsigned w = 0; w < nws; w++) {
        if ((rc = scratch_init(&d.ws[w], (size_t)p->cs))) goto done;
        if (orig_fd >= 0 && !(d.cmp[w] = hma__malloc((size_t)p->cs))) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", p->path);
            goto done;
        }
    }
    rc = parallel_for(p->nchunks, nws, dec_one, &d);
done:
    if (d.ws)
        for (unsigned w = 0; w < nws; w++) scratch_free(&d.ws[w]);
    if (d.cmp)
        for (unsigned w = 0; w < nws; w++) hma__free(d.cmp[w]);
    hma__free(d.ws);
    hma__free(d.cmp);
    hma__free((void *)d.refs);
    return rc;
}

static void fill_stats(hma_pack_stats *stats, const pk_file *p, double t0) {
    if (!stats) return;
    stats->raw_bytes = p->orig_size;
    stats->packed_bytes = p->file_size;
    stats->tensors = p->hdr.n;
    stats->tensors_on_base = 0;
    for (size_t i = 0; i < p->hdr.n; i++) stats->tensors_on_base += p->t[i].coding == CODING_BASE;
    stats->chunks = p->nchunks;
    stats->seconds = now_s() - t0;
}

static int write_header(pk_file *p, int fd, const char *path) {
    unsigned char prefix[8];
    hma__st64(prefix, p->hdr.header_len);
    int rc = pwrite_all(fd, path, prefix, 8, 0);
    if (!rc) rc = pwrite_all(fd, path, p->index + 8, (size_t)p->hdr.header_len, 8);
    return rc;
}

int hma_pack_unpack(const char *pack_path, const hma_store *base, const char *out_path,
                    const hma_pack_options *opt_in, hma_pack_stats *stats) {
    if (!pack_path || !out_path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_pack_unpack: NULL path");
    hma_pack_options opt;
    int rc = get_options(opt_in, &opt, "hma_pack_unpack");
    if (rc) return rc;
    double t0 = now_s();
    pk_file p;
    outfile of;
    memset(&of, 0, sizeof of);
    of.fd = -1;
    const char *inputs[1] = {pack_path};
    if ((rc = pk_open(&p, pack_path, base, opt.threads))) goto done;
    if ((rc = out_begin(&of, out_path, inputs, 1))) goto done;
    if (p.orig_size > (uint64_t)INT64_MAX || ftruncate(of.fd, (off_t)p.orig_size) != 0) {
        rc = fail_errno(HMA_ERR_IO, of.tmp, "set size");
        goto done;
    }
    if ((rc = write_header(&p, of.fd, of.tmp))) goto done;
    if ((rc = dec_all(&p, opt.threads, of.fd, of.tmp, -1, NULL))) goto done;
    if ((rc = out_commit(&of))) goto done;
    fill_stats(stats, &p, t0);
done:
    out_free(&of);
    pk_close(&p);
    return rc;
}

int hma_pack_verify(const char *pack_path, const hma_store *base, const char *original_path,
                    const hma_pack_options *opt_in, hma_pack_stats *stats) {
    if (!pack_path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_pack_verify: NULL path");
    hma_pack_options opt;
    int rc = get_options(opt_in, &opt, "hma_pack_verify");
    if (rc) return rc;
    double t0 = now_s();
    pk_file p;
    int ofd = -1;
    unsigned char *head = NULL;
    if ((rc = pk_open(&p, pack_path, base, opt.threads))) goto done;
    if (original_path) {
        if ((rc = open_ro(original_path, &ofd))) goto done;
        struct stat sb;
        if (fstat(ofd, &sb) != 0) {
            rc = fail_errno(HMA_ERR_IO, original_path, "stat");
            goto done;
        }
        if ((uint64_t)sb.st_size != p.orig_size) {
            rc = hma__fail(HMA_ERR_MISMATCH, "%.400s: %llu bytes, the pack %.400s restores %llu", original_path,
                           (unsigned long long)sb.st_size, pack_path, (unsigned long long)p.orig_size);
            goto done;
        }
        size_t hl = (size_t)p.hdr.data_start;
        if (!(head = hma__malloc(hl))) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "out of memory");
            goto done;
        }
        if ((rc = pread_all(ofd, original_path, head, hl, 0))) goto done;
        unsigned char prefix[8];
        hma__st64(prefix, p.hdr.header_len);
        if (memcmp(head, prefix, 8) || memcmp(head + 8, p.index + 8, hl - 8)) {
            rc = hma__fail(HMA_ERR_MISMATCH, "%.400s: header differs from the one stored in %.400s", original_path,
                           pack_path);
            goto done;
        }
    }
    if ((rc = dec_all(&p, opt.threads, -1, NULL, ofd, original_path))) goto done;
    fill_stats(stats, &p, t0);
done:
    hma__free(head);
    if (ofd >= 0) close(ofd);
    pk_close(&p);
    return rc;
}
