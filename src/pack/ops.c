/*
 * ops.c - the calls that run over a whole pack: hma_pack_unpack (restore
 * the original file), hma_pack_verify (decode and check every chunk) and
 * hma_pack_needs_base.
 */
#include "pack/pack.h"
#include "core/fileio.h"
#include "core/pool.h"
#include "pack/bytes.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct dec_job {
    const hma__pk_file *p;
    const hma__pk_ref *refs;
    hma__pk_scratch *ws;
    int out_fd; /* unpack: write here */
    const char *out_path;
    int orig_fd; /* verify: compare with this file, or -1 */
    const char *orig_path;
    uint8_t **cmp; /* verify: per worker chunk buffer */
} dec_job;

static int dec_one(void *arg, uint64_t j, unsigned worker) {
    dec_job *d = arg;
    const hma__pk_file *p = d->p;
    const hma__pk_ref *r = &d->refs[j];
    const hma__st_tensor *st = &p->hdr.tensors[r->tensor];
    hma__pk_scratch *s = &d->ws[worker];
    uint64_t start = (uint64_t)r->chunk * p->fx.chunk_size;
    size_t raw = hma__pk_chunk_raw(st->nbytes, p->fx.chunk_size, r->chunk);
    int rc = hma__pk_decode_chunk(p, r->tensor, r->chunk, s, s->raw);
    if (rc) return rc;
    uint64_t at = p->hdr.data_start + st->begin + start;
    if (d->out_fd >= 0) return hma__pwrite_full(d->out_fd, d->out_path, s->raw, raw, at);
    if (d->orig_fd >= 0) {
        if ((rc = hma__pread_full(d->orig_fd, d->orig_path, d->cmp[worker], raw, at))) return rc;
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
static int dec_all(const hma__pk_file *p, unsigned threads, int out_fd, const char *out_path, int orig_fd,
                   const char *orig_path) {
    dec_job d = {p, NULL, NULL, out_fd, out_path, orig_fd, orig_path, NULL};
    int rc = HMA_OK;
    const size_t n = p->ix.nchunks;
    const size_t cs = (size_t)p->fx.chunk_size;
    const unsigned nws = hma__pool_threads(threads, n);
    d.refs = hma__pk_refs(&p->hdr, cs, n);
    d.ws = hma__calloc(nws, sizeof *d.ws);
    d.cmp = hma__calloc(nws, sizeof *d.cmp);
    if (!d.refs || !d.ws || !d.cmp) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", p->path);
        goto done;
    }
    for (unsigned w = 0; w < nws; w++) {
        if ((rc = hma__pk_scratch_init(&d.ws[w], cs))) goto done;
        if (orig_fd >= 0 && !(d.cmp[w] = hma__malloc(cs))) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", p->path);
            goto done;
        }
    }
    rc = hma__pool_run(n, nws, dec_one, &d, NULL, NULL);
done:
    if (d.ws)
        for (unsigned w = 0; w < nws; w++) hma__pk_scratch_free(&d.ws[w]);
    if (d.cmp)
        for (unsigned w = 0; w < nws; w++) hma__free(d.cmp[w]);
    hma__free(d.ws);
    hma__free(d.cmp);
    hma__free((void *)d.refs);
    return rc;
}

static void put_stats(hma_pack_stats *stats, const hma__pk_file *p, double t0, const char *fn) {
    if (!stats) return;
    hma_pack_stats s;
    hma_pack_stats_init(&s);
    s.raw_bytes = p->fx.orig_size;
    s.packed_bytes = p->file_size;
    s.tensors = p->hdr.n;
    for (size_t i = 0; i < p->hdr.n; i++) s.tensors_on_base += p->ix.t[i].coding == HMA__PK_CODING_BASE;
    s.chunks = p->ix.nchunks;
    s.seconds = hma__pk_now() - t0;
    hma__pk_stats_put(stats, &s, fn);
}

/* The original file's first bytes: its 8-byte header length and header. */
static int write_header(const hma__pk_file *p, int fd, const char *path) {
    unsigned char prefix[8];
    uint64_t n = p->ix.json_len;
    hma__st64(prefix, n);
    int rc = hma__pwrite_full(fd, path, prefix, 8, 0);
    if (!rc) rc = hma__pwrite_full(fd, path, p->ix.json, (size_t)n, 8);
    return rc;
}

int hma_pack_unpack(const char *pack_path, const hma_store *base, const char *out_path,
                    const hma_pack_options *opt_in, hma_pack_stats *stats) {
    if (!pack_path || !out_path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_pack_unpack: NULL path");
    hma_pack_options opt;
    int rc = hma__pk_options(opt_in, &opt, stats, "hma_pack_unpack");
    if (rc) return rc;
    double t0 = hma__pk_now();
    hma__pk_file p;
    hma__afile of;
    memset(&of, 0, sizeof of);
    of.fd = -1;
    const char *inputs[1] = {pack_path};
    if ((rc = hma__pk_open(&p, pack_path, base, opt.threads))) goto done;
    if ((rc = hma__afile_open(&of, out_path, inputs, 1))) goto done;
    if (p.fx.orig_size > (uint64_t)INT64_MAX || ftruncate(of.fd, (off_t)p.fx.orig_size) != 0) {
        rc = hma__fail_errno(HMA_ERR_IO, errno, of.tmp, "set size");
        goto done;
    }
    if ((rc = write_header(&p, of.fd, of.tmp))) goto done;
    if ((rc = dec_all(&p, opt.threads, of.fd, of.tmp, -1, NULL))) goto done;
    if ((rc = hma__afile_commit(&of))) goto done;
    put_stats(stats, &p, t0, "hma_pack_unpack");
done:
    hma__afile_discard(&of);
    hma__pk_close(&p);
    return rc;
}

int hma_pack_verify(const char *pack_path, const hma_store *base, const char *original_path,
                    const hma_pack_options *opt_in, hma_pack_stats *stats) {
    if (!pack_path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_pack_verify: NULL path");
    hma_pack_options opt;
    int rc = hma__pk_options(opt_in, &opt, stats, "hma_pack_verify");
    if (rc) return rc;
    double t0 = hma__pk_now();
    hma__pk_file p;
    int ofd = -1;
    unsigned char *head = NULL;
    if ((rc = hma__pk_open(&p, pack_path, base, opt.threads))) goto done;
    if (original_path) {
        struct stat sb;
        if ((rc = hma__open_read(original_path, &ofd, &sb))) goto done;
        if ((uint64_t)sb.st_size != p.fx.orig_size) {
            rc = hma__fail(HMA_ERR_MISMATCH, "%.400s: %llu bytes, the pack %.400s restores %llu", original_path,
                           (unsigned long long)sb.st_size, pack_path, (unsigned long long)p.fx.orig_size);
            goto done;
        }
        size_t hl = (size_t)p.hdr.data_start;
        if (!(head = hma__malloc(hl))) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "out of memory");
            goto done;
        }
        if ((rc = hma__pread_full(ofd, original_path, head, hl, 0))) goto done;
        unsigned char prefix[8];
        hma__st64(prefix, p.ix.json_len);
        if (memcmp(head, prefix, 8) || memcmp(head + 8, p.ix.json, hl - 8)) {
            rc = hma__fail(HMA_ERR_MISMATCH, "%.400s: header differs from the one stored in %.400s", original_path,
                           pack_path);
            goto done;
        }
    }
    if ((rc = dec_all(&p, opt.threads, -1, NULL, ofd, original_path))) goto done;
    put_stats(stats, &p, t0, "hma_pack_verify");
done:
    hma__free(head);
    if (ofd >= 0) close(ofd);
    hma__pk_close(&p);
    return rc;
}

int hma_pack_needs_base(const char *path, int *needs_base) {
    if (!path || !needs_base) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_pack_needs_base: NULL argument");
    hma__pk_file p;
    int rc = hma__pk_open_fixed(&p, path);
    if (!rc) *needs_base = (p.fx.flags & HMA__PK_FLAG_BASE) != 0;
    hma__pk_close(&p);
    return rc;
}
