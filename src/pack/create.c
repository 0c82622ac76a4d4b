/*
 * create.c - hma_pack_create: code a safetensors file (against a base, or
 * alone) chunk by chunk in parallel and write the pack atomically.
 */
#include "pack/pack.h"
#include "core/fileio.h"
#include "core/pool.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    const hma__pk_ref *refs;
    size_t first; /* first chunk of the batch */
    enc_slot *slots;
    hma__pk_scratch *ws; /* per worker */
} enc_job;

static int enc_one(void *arg, uint64_t j, unsigned worker) {
    enc_job *e = arg;
    const hma__pk_ref *r = &e->refs[e->first + j];
    const hma__st_tensor *st = &e->hdr->tensors[r->tensor];
    hma__pk_scratch *s = &e->ws[worker];
    enc_slot *slot = &e->slots[j];
    uint64_t start = (uint64_t)r->chunk * e->cs;
    size_t raw = hma__pk_chunk_raw(st->nbytes, e->cs, r->chunk);
    int rc = hma__pread_full(e->fd, e->path, s->raw, raw, e->hdr->data_start + st->begin + start);
    if (rc) return rc;
    hma__pc_fmt fmt;
    int isfloat = hma__pk_dtype_fmt(st->dtype, &fmt);
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
    int rc = hma__pk_options(opt_in, &opt, stats, "hma_pack_create");
    if (rc) return rc;
    double t0 = hma__pk_now();
    int fd = -1;
    char *json = NULL;
    hma__st_header hdr;
    memset(&hdr, 0, sizeof hdr);
    hma__afile of;
    memset(&of, 0, sizeof of);
    of.fd = -1;
    const hma_tensor **bt = NULL;
    hma__pk_ref *refs = NULL;
    hma__pk_scratch *ws = NULL;
    enc_slot *slots = NULL;
    hma__pk_index ix;
    memset(&ix, 0, sizeof ix);
    unsigned char *index = NULL;
    unsigned nslots = 0, nws = 0;
    uint64_t base_sum = 0, on_base = 0;
    const size_t cs = (size_t)opt.chunk_size;

    struct stat sb;
    if (stat(model_path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        rc = hma__fail(HMA_ERR_UNSUPPORTED, "%.400s: is a folder; pack each .safetensors shard on its own", model_path);
        goto done;
    }
    if (hma__ends_with(model_path, ".json")) {
        rc = hma__fail(HMA_ERR_UNSUPPORTED, "%.400s: is an index file; pack each .safetensors shard on its own", model_path);
        goto done;
    }
    if ((rc = hma__open_read(model_path, &fd, &sb))) goto done;
    const uint64_t fsize = (uint64_t)sb.st_size;
    /* The raw header bytes are kept: the pack restores them byte for byte. */
    if ((rc = hma__st_read_header(fd, model_path, fsize, &hdr, &json))) goto done;

    if (base && (rc = hma__pk_base_checksum(base, opt.threads, &base_sum))) goto done;
    bt = hma__calloc(hdr.n ? hdr.n : 1, sizeof *bt);
    ix.t = hma__calloc(hdr.n ? hdr.n : 1, sizeof *ix.t);
    if (!bt || !ix.t) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    ix.json = json;
    ix.json_len = hdr.header_len;
    ix.ntensors = hdr.n;
    for (size_t i = 0; i < hdr.n; i++) {
        const hma__st_tensor *st = &hdr.tensors[i];
        hma__pc_fmt fmt;
        if (base && hma__pk_dtype_fmt(st->dtype, &fmt)) {
            const hma_tensor *b = hma_store_find(base, st->name);
            if (b && hma__pk_same_shape(st, b)) {
                bt[i] = b;
                on_base++;
            }
        }
        ix.t[i].coding = bt[i] ? HMA__PK_CODING_BASE : HMA__PK_CODING_ALONE;
        ix.t[i].first = ix.nchunks;
        ix.t[i].nchunks = (size_t)(st->nbytes / cs + (st->nbytes % cs != 0));
        ix.nchunks += ix.t[i].nchunks;
    }
    const size_t nchunks = ix.nchunks;
    refs = hma__pk_refs(&hdr, cs, nchunks);
    ix.chunks = hma__calloc(nchunks ? nchunks : 1, sizeof *ix.chunks);
    if (!refs || !ix.chunks) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "out of memory");
        goto done;
    }

    /* Two payload slots per thread: a batch is coded in parallel, then
     * written in order, so the bytes do not depend on the thread count. */
    nws = hma__pool_threads(opt.threads, nchunks);
    nslots = 2 * nws;
    ws = hma__calloc(nws, sizeof *ws);
    slots = hma__calloc(nslots, sizeof *slots);
    if (!ws || !slots) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    for (unsigned w = 0; w < nws; w++)
        if ((rc = hma__pk_scratch_init(&ws[w], cs))) goto done;
    for (unsigned k = 0; k < nslots; k++)
        if (!(slots[k].payload = hma__malloc(hma__pc_bound(cs)))) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "out of memory");
            goto done;
        }

    const char *inputs[1] = {model_path};
    if ((rc = hma__afile_open(&of, out_path, inputs, 1))) goto done;

    uint64_t woff = HMA__PK_FIXED_SIZE;
    enc_job ej = {model_path, fd, &hdr, base, bt, cs, opt.level, refs, 0, slots, ws};
    for (size_t first = 0; first < nchunks;) {
        size_t nb = nchunks - first < nslots ? nchunks - first : nslots;
        ej.first = first;
        if ((rc = hma__pool_run(nb, nws, enc_one, &ej, NULL, NULL))) goto done;
        for (size_t k = 0; k < nb; k++) {
            const hma__pk_ref *r = &refs[first + k];
            if ((rc = hma__pwrite_full(of.fd, of.tmp, slots[k].payload, slots[k].len, woff))) goto done;
            ix.chunks[ix.t[r->tensor].first + r->chunk] =
                (hma__pk_chunk){woff, slots[k].len, slots[k].method, slots[k].psum, slots[k].sum};
            woff += slots[k].len;
        }
        first += nb;
    }
    hma__pk_fixed fx = {HMA__PK_VERSION, base ? HMA__PK_FLAG_BASE : 0, base_sum, cs, fsize, woff, 0, 0};
    if ((rc = hma__pk_index_encode(&ix, &index, &fx.index_len, &fx.index_sum))) goto done;
    if ((rc = hma__pwrite_full(of.fd, of.tmp, index, (size_t)fx.index_len, woff))) goto done;
    unsigned char fixed[HMA__PK_FIXED_SIZE];
    hma__pk_fixed_encode(&fx, fixed);
    if ((rc = hma__pwrite_full(of.fd, of.tmp, fixed, HMA__PK_FIXED_SIZE, 0))) goto done;
    if ((rc = hma__afile_commit(&of))) goto done;
    hma_pack_stats out;
    hma_pack_stats_init(&out);
    out.raw_bytes = fsize;
    out.packed_bytes = woff + fx.index_len;
    out.tensors = hdr.n;
    out.tensors_on_base = on_base;
    out.chunks = nchunks;
    out.seconds = hma__pk_now() - t0;
    hma__pk_stats_put(stats, &out, "hma_pack_create");
done:
    hma__afile_discard(&of);
    if (ws)
        for (unsigned w = 0; w < nws; w++) hma__pk_scratch_free(&ws[w]);
    if (slots)
        for (unsigned k = 0; k < nslots; k++) hma__free(slots[k].payload);
    hma__free(ws);
    hma__free(slots);
    hma__free(index);
    hma__free(refs);
    hma__free(bt);
    hma__pk_index_free(&ix);
    hma__free(json);
    hma__st_header_free(&hdr);
    if (fd >= 0) close(fd);
    return rc;
}
