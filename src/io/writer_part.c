/*
 * writer_part.c - partitioned outputs (hma_writer_set_part/_set_finalize):
 * a part's commit puts its own shards in place, each followed by a hidden
 * record of its size and xxhash64; finalize checks every shard against the
 * layout and its record before the index and copied files are committed,
 * then removes the records.
 */
#include "io/writer_impl.h"

#include "core/pool.h"
#include "pack/codec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REC_MAGIC "hma-part 1"
#define HASH_CHUNK ((size_t)4 << 20)

/* dir/.hma-part-<shard name>: the record of shard f. malloc'ed or NULL. */
static char *record_path(const hma_writer *w, const hma__wfile *f) {
    const char *base = hma__path_base(f->final_path);
    size_t n = strlen(HMA__PART_PREFIX) + strlen(base) + 1;
    char *name = hma__malloc(n);
    if (!name) return NULL;
    snprintf(name, n, "%s%s", HMA__PART_PREFIX, base);
    char *p = hma__path_join(w->dir, name);
    hma__free(name);
    return p;
}

/* xxhash64 (seed 0) of the first `size` bytes of fd. */
static int hash_fd(int fd, const char *path, uint64_t size, uint64_t *out) {
    unsigned char *buf = hma__malloc(HASH_CHUNK);
    if (!buf) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory for its checksum", path);
    hma__xxh64_state st;
    hma__xxh64_init(&st, 0);
    int rc = HMA_OK;
    for (uint64_t off = 0; off < size && !rc;) {
        size_t n = size - off < HASH_CHUNK ? (size_t)(size - off) : HASH_CHUNK;
        rc = hma__pread_full(fd, path, buf, n, off);
        if (!rc) hma__xxh64_update(&st, buf, n);
        off += n;
    }
    hma__free(buf);
    if (!rc) *out = hma__xxh64_digest(&st);
    return rc;
}

/* ---- a part's commit ----------------------------------------------------- */

typedef struct pctx {
    hma_writer *w;
    size_t *own; /* shard numbers of this part */
    uint64_t *sum;
} pctx;

static int hash_own_job(void *arg, uint64_t j, unsigned worker) {
    (void)worker;
    pctx *c = arg;
    hma__wfile *f = &c->w->files[c->own[j]];
    int rc = hash_fd(f->af.fd, f->af.tmp, f->size, &c->sum[j]);
    return rc ? hma__fail_prefix(rc, "%s: checksum of the temporary", f->final_path) : HMA_OK;
}

/* Write the record of shard f (checksum sum) into a new temporary rec. */
static int record_start(hma_writer *w, const hma__wfile *f, uint64_t sum, hma__afile *rec) {
    char *path = record_path(w, f);
    if (!path) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", f->final_path);
    char text[512];
    int n = snprintf(text, sizeof text, REC_MAGIC "\nfile %s\nsize %" PRIu64 "\nxxh64 %016" PRIx64 "\n",
                     hma__path_base(f->final_path), f->size, sum);
    int rc = HMA_OK;
    if (n < 0 || (size_t)n >= sizeof text) rc = hma__fail(HMA_ERR_OVERFLOW, "%s: record too long", f->final_path);
    if (!rc) rc = hma__afile_open(rec, path, NULL, 0);
    if (!rc) rc = hma__pwrite_full(rec->fd, rec->tmp, text, (size_t)n, 0);
    if (!rc) rc = hma__afile_sync(rec);
    hma__free(path);
    return rc;
}

int hma__writer_part_commit(hma_writer *w) {
    size_t nown = 0;
    for (size_t i = 0; i < w->nshards; i++) nown += hma__writer_file_active(w, i) != 0;
    if (nown == 0) return HMA_OK; /* an idle part: more parts than shards */
    pctx c = {w, hma__calloc(nown, sizeof(size_t)), hma__calloc(nown, sizeof(uint64_t))};
    hma__afile *rec = hma__calloc(nown, sizeof *rec);
    int rc = HMA_OK;
    if (!c.own || !c.sum || !rec) rc = hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", w->path);
    for (size_t i = 0, k = 0; !rc && i < w->nshards; i++)
        if (hma__writer_file_active(w, i)) c.own[k++] = i;
    for (size_t k = 0; rec && k < nown; k++) rec[k].fd = -1;
    /* The checksums read the temporaries back (from the page cache, mostly). */
    if (!rc) rc = hma__pool_run(nown, 0, hash_own_job, &c, NULL, NULL);
    for (size_t k = 0; k < nown && !rc; k++) {
        hma__wfile *f = &w->files[c.own[k]];
        rc = hma__afile_sync(&f->af);
        if (rc) rc = hma__fail_prefix(rc, "%s: cannot flush to disk", f->final_path);
        if (!rc) rc = record_start(w, f, c.sum[k], &rec[k]);
    }
    /* An index left by an earlier output would name shards that are being
     * replaced: it goes first; finalize writes the new one. */
    if (!rc && w->folder) {
        char *idx = hma__path_join(w->dir, HMA__INDEX_NAME);
        if (!idx) rc = hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", w->path);
        else if (unlink(idx) != 0 && errno != ENOENT)
            rc = hma__fail_errno(HMA_ERR_IO, errno, idx, "cannot remove the stale index");
        hma__free(idx);
    }
    /* Each shard, then its record: a record always describes a shard in place. */
    for (size_t k = 0; k < nown && !rc; k++) {
        rc = hma__afile_publish(&w->files[c.own[k]].af);
        if (!rc) rc = hma__afile_publish(&rec[k]);
    }
    if (!rc) rc = hma__writer_sync_folders(w);
    for (size_t k = 0; rec && k < nown; k++) hma__afile_discard(&rec[k]);
    hma__free(rec);
    hma__free(c.own);
    hma__free(c.sum);
    return rc;
}

/* ---- finalize -------------------------------------------------------------- */

typedef struct fctx {
    hma_writer *w;
} fctx;

/* "<shard> (part P of N)" for messages. */
static void shard_label(const hma_writer *w, size_t i, char *buf, size_t cap) {
    snprintf(buf, cap, "%s (part %zu of %zu)", hma__path_base(w->files[i].final_path), hma__writer_part_of(w, i),
             w->nparts);
}

/* Parse a record; HMA_OK with *size and *sum set, or HMA_ERR_CORRUPT. */
static int parse_record(const char *text, const char *name, uint64_t *size, uint64_t *sum) {
    char want[400];
    snprintf(want, sizeof want, REC_MAGIC "\nfile %s\nsize ", name);
    size_t wl = strlen(want);
    if (strncmp(text, want, wl) != 0) return HMA_ERR_CORRUPT;
    char *end;
    errno = 0;
    unsigned long long s = strtoull(text + wl, &end, 10);
    if (errno || end == text + wl || strncmp(end, "\nxxh64 ", 7) != 0) return HMA_ERR_CORRUPT;
    const char *h = end + 7;
    unsigned long long x = strtoull(h, &end, 16);
    if (errno || end != h + 16 || strcmp(end, "\n") != 0) return HMA_ERR_CORRUPT;
    *size = s;
    *sum = x;
    return HMA_OK;
}

/* Check shard j: present, its size and header those of the layout, its
 * record present and its checksum the record's. */
static int check_job(void *arg, uint64_t j, unsigned worker) {
    (void)worker;
    hma_writer *w = ((fctx *)arg)->w;
    const hma__wfile *f = &w->files[j];
    char label[400];
    shard_label(w, (size_t)j, label, sizeof label);
    const char *again = "run that part again, then finalize";
    char *rp = record_path(w, f);
    if (!rp) return hma__fail(HMA_ERR_NO_MEMORY, "%s: %s: out of memory", w->path, label);
    int fd = -1, rfd = -1, rc = HMA_OK;
    struct stat st;
    char *hdr = NULL;
    hma__strbuf sb = HMA__STRBUF_INIT;
    char text[512];
    uint64_t rsize = 0, rsum = 0, sum = 0;
    if (hma__open_read(f->final_path, &fd, &st) != HMA_OK) {
        rc = hma__fail(HMA_ERR_INCOMPLETE, "%s: %s is missing: %s", w->path, label, again);
        goto out;
    }
    if ((uint64_t)st.st_size != f->size) {
        rc = hma__fail(HMA_ERR_INCOMPLETE, "%s: %s is %llu bytes, expected %llu (truncated, or from another merge): %s",
                       w->path, label, (unsigned long long)st.st_size, (unsigned long long)f->size, again);
        goto out;
    }
    hma__sb_fill(&sb, 0, 8);
    if ((rc = hma__writer_build_header(w, f, &sb)) != HMA_OK) goto out;
    uint64_t hn = sb.len - 8;
    for (int b = 0; b < 8; b++) sb.data[b] = (char)(unsigned char)(hn >> (8 * b));
    hdr = hma__malloc(sb.len);
    if (!hdr) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "%s: %s: out of memory", w->path, label);
        goto out;
    }
    if ((rc = hma__pread_full(fd, f->final_path, hdr, sb.len, 0)) != HMA_OK) goto out;
    if (memcmp(hdr, sb.data, sb.len) != 0) {
        rc = hma__fail(HMA_ERR_CORRUPT, "%s: %s: header differs from this merge's layout (another merge's shard, "
                                        "or other inputs, weights or options): %s", w->path, label, again);
        goto out;
    }
    if (hma__open_read(rp, &rfd, &st) != HMA_OK) {
        rc = hma__fail(HMA_ERR_INCOMPLETE, "%s: %s has no record %s (its part did not finish): %s", w->path, label,
                       hma__path_base(rp), again);
        goto out;
    }
    size_t got = 0;
    if (st.st_size >= (off_t)sizeof text || hma__pread_upto(rfd, rp, text, sizeof text - 1, 0, &got) != HMA_OK ||
        (text[got] = '\0', parse_record(text, hma__path_base(f->final_path), &rsize, &rsum)) != HMA_OK ||
        rsize != f->size) {
        rc = hma__fail(HMA_ERR_CORRUPT, "%s: %s: record %s is malformed or names another size: %s", w->path, label,
                       hma__path_base(rp), again);
        goto out;
    }
    if ((rc = hash_fd(fd, f->final_path, f->size, &sum)) != HMA_OK) goto out;
    if (sum != rsum)
        rc = hma__fail(HMA_ERR_CORRUPT, "%s: %s: checksum %016" PRIx64 " differs from the %016" PRIx64
                                        " its part recorded (the file changed after the part wrote it): %s",
                       w->path, label, sum, rsum, again);
out:
    if (fd >= 0) close(fd);
    if (rfd >= 0) close(rfd);
    hma__sb_free(&sb);
    hma__free(hdr);
    hma__free(rp);
    return rc;
}

int hma__writer_finalize_check(hma_writer *w) {
    fctx c = {w};
    /* One job per shard; the first bad shard (lowest number) is reported. */
    return hma__pool_run(w->nshards, 0, check_job, &c, NULL, NULL);
}

void hma__writer_finalize_cleanup(hma_writer *w) {
    for (size_t i = 0; i < w->nshards; i++) {
        char *rp = record_path(w, &w->files[i]);
        if (rp) unlink(rp);
        hma__free(rp);
    }
    hma__fsync_dir(w->dir); /* best effort: the output is complete either way */
}
