/*
 * base.c - the base checksum a pack records and checks: xxh64 over, for
 * each base tensor in name order (bytewise), u32 name length, name, u32
 * dtype, u32 ndim, u64 shape[ndim], u64 xxh64(tensor bytes). Independent of
 * the base's file layout, so a resharded copy of a base is the same base.
 */
#include "pack/pack.h"
#include "pack/bytes.h"
#include "core/pool.h"

#include <string.h>

#define HASH_BUF (1u << 20)

typedef struct base_hash_job {
    const hma_store *base;
    uint64_t *sums;
    unsigned char **bufs; /* one 1 MiB buffer per worker */
} base_hash_job;

static int base_hash_one(void *arg, uint64_t job, unsigned worker) {
    base_hash_job *j = arg;
    const hma_tensor *t = hma_store_tensor(j->base, (size_t)job);
    uint64_t n = hma_tensor_nbytes(t);
    hma__xxh64_state st;
    hma__xxh64_init(&st, 0);
    for (uint64_t off = 0; off < n; off += HASH_BUF) {
        size_t len = (size_t)(n - off < HASH_BUF ? n - off : HASH_BUF);
        int rc = hma_store_read(j->base, t, off, j->bufs[worker], len);
        if (rc) return hma__fail_prefix(rc, "base tensor '%.200s'", hma_tensor_name(t));
        hma__xxh64_update(&st, j->bufs[worker], len);
    }
    j->sums[job] = hma__xxh64_digest(&st);
    return HMA_OK;
}

typedef struct name_idx {
    const char *name;
    size_t i;
} name_idx;
static int cmp_name(const void *a, const void *b) {
    return strcmp(((const name_idx *)a)->name, ((const name_idx *)b)->name);
}

int hma__pk_base_checksum(const hma_store *base, unsigned threads, uint64_t *out) {
    size_t n = hma_store_count(base);
    int rc = HMA_OK;
    base_hash_job j = {base, NULL, NULL};
    name_idx *order = hma__calloc(n ? n : 1, sizeof *order);
    j.sums = hma__calloc(n ? n : 1, sizeof *j.sums);
    const unsigned nt = hma__pool_threads(threads, n);
    j.bufs = hma__calloc(nt, sizeof *j.bufs);
    if (!order || !j.sums || !j.bufs) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "base checksum: out of memory");
        goto done;
    }
    for (unsigned w = 0; w < nt; w++)
        if (!(j.bufs[w] = hma__malloc(HASH_BUF))) {
            rc = hma__fail(HMA_ERR_NO_MEMORY, "base checksum: out of memory");
            goto done;
        }
    rc = hma__pool_run(n, nt, base_hash_one, &j, NULL, NULL);
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
        for (unsigned w = 0; w < nt; w++) hma__free(j.bufs[w]);
    hma__free(j.bufs);
    hma__free(j.sums);
    hma__free(order);
    return rc;
}

int hma__pk_same_shape(const hma__st_tensor *t, const hma_tensor *b) {
    if (hma_tensor_dtype(b) != t->dtype || hma_tensor_ndim(b) != t->ndim) return 0;
    const uint64_t *s = hma_tensor_shape(b);
    for (unsigned d = 0; d < t->ndim; d++)
        if (s[d] != t->shape[d]) return 0;
    return 1;
}
