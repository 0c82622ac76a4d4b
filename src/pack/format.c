/*
 * format.c - the bytes of a pack file: encode and decode (with every check)
 * the fixed header and the index. See format.h and docs/pack-format.md.
 */
#include "pack/format.h"
#include "pack/bytes.h"

#include <stdio.h>
#include <string.h>

/* ======================================================================= */
/* Fixed header                                                            */
/* ======================================================================= */

void hma__pk_fixed_encode(const hma__pk_fixed *f, unsigned char out[HMA__PK_FIXED_SIZE]) {
    memset(out, 0, HMA__PK_FIXED_SIZE);
    memcpy(out, HMA__PK_MAGIC, 8);
    hma__st32(out + 8, f->version);
    hma__st32(out + 12, f->flags);
    hma__st64(out + 16, f->base_sum);
    hma__st64(out + 24, f->chunk_size);
    hma__st64(out + 32, f->orig_size);
    hma__st64(out + 40, f->index_off);
    hma__st64(out + 48, f->index_len);
    hma__st64(out + 56, f->index_sum);
    hma__st64(out + 64, hma__xxh64(out, 64, 0));
}

int hma__pk_fixed_decode(const char *path, const unsigned char h[HMA__PK_FIXED_SIZE], uint64_t file_size,
                         hma__pk_fixed *f) {
    if (memcmp(h, HMA__PK_MAGIC, 8) != 0)
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: byte 0: not a libhma pack (expected the magic \"HMAPACK\\0\")", path);
    if (hma__xxh64(h, 64, 0) != hma__ld64(h + 64))
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: bytes [0, 64): fixed header checksum mismatch (the header is damaged)", path);
    f->version = hma__ld32(h + 8);
    if (f->version < HMA__PK_VERSION_MIN || f->version > HMA__PK_VERSION)
        return hma__fail(HMA_ERR_UNSUPPORTED, "%.400s: pack format version %u (this build reads versions %u to %u)",
                         path, f->version, HMA__PK_VERSION_MIN, HMA__PK_VERSION);
    f->flags = hma__ld32(h + 12);
    if (f->flags & ~HMA__PK_FLAG_BASE)
        return hma__fail(HMA_ERR_UNSUPPORTED, "%.400s: unknown pack flags 0x%x (this build knows 0x%x)", path,
                         f->flags, HMA__PK_FLAG_BASE);
    f->base_sum = hma__ld64(h + 16);
    f->chunk_size = hma__ld64(h + 24);
    f->orig_size = hma__ld64(h + 32);
    f->index_off = hma__ld64(h + 40);
    f->index_len = hma__ld64(h + 48);
    f->index_sum = hma__ld64(h + 56);
    if (f->chunk_size < HMA_PACK_MIN_CHUNK || f->chunk_size > HMA_PACK_MAX_CHUNK || f->chunk_size % 8)
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: byte 24: chunk size %llu (expected a multiple of 8 in [%u, %u])", path,
                         (unsigned long long)f->chunk_size, HMA_PACK_MIN_CHUNK, HMA_PACK_MAX_CHUNK);
    uint64_t end;
    if (f->index_off < HMA__PK_FIXED_SIZE || hma__add_overflows(f->index_off, f->index_len, &end))
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: byte 40: index [%llu, +%llu) is out of bounds", path,
                         (unsigned long long)f->index_off, (unsigned long long)f->index_len);
    if (end > file_size)
        return hma__fail(HMA_ERR_TRUNCATED, "%.400s: file has %llu bytes, its header says %llu", path,
                         (unsigned long long)file_size, (unsigned long long)end);
    if (end < file_size)
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: %llu bytes after the index (expected the file to end at byte %llu)",
                         path, (unsigned long long)(file_size - end), (unsigned long long)end);
    return HMA_OK;
}

/* ======================================================================= */
/* Index                                                                   */
/* ======================================================================= */

int hma__pk_index_encode(const hma__pk_index *ix, unsigned char **out, uint64_t *len, uint64_t *sum) {
    *out = NULL;
    uint64_t n = 8 + ix->json_len + 8 + (uint64_t)ix->ntensors * HMA__PK_TENSOR_HEAD +
                 (uint64_t)ix->nchunks * HMA__PK_CHUNK_ENTRY;
    if (n > SIZE_MAX) return hma__fail(HMA_ERR_OVERFLOW, "pack index of %llu bytes", (unsigned long long)n);
    unsigned char *b = hma__calloc(1, (size_t)n); /* reserved bytes stay zero */
    if (!b) return hma__fail(HMA_ERR_NO_MEMORY, "out of memory for the pack index");
    hma__st64(b, ix->json_len);
    memcpy(b + 8, ix->json, (size_t)ix->json_len);
    uint64_t pos = 8 + ix->json_len;
    hma__st64(b + pos, ix->ntensors);
    pos += 8;
    for (size_t i = 0; i < ix->ntensors; i++) {
        const hma__pk_tensor *t = &ix->t[i];
        b[pos] = (unsigned char)t->coding;
        hma__st64(b + pos + 8, t->nchunks);
        pos += HMA__PK_TENSOR_HEAD;
        for (size_t c = 0; c < t->nchunks; c++) {
            const hma__pk_chunk *ch = &ix->chunks[t->first + c];
            hma__st64(b + pos, ch->off);
            hma__st32(b + pos + 8, ch->len);
            b[pos + 12] = ch->method;
            hma__st64(b + pos + 16, ch->psum);
            hma__st64(b + pos + 24, ch->sum);
            pos += HMA__PK_CHUNK_ENTRY;
        }
    }
    if (pos != n) {
        hma__free(b);
        return hma__fail(HMA_ERR_STATE, "pack index: internal error: %llu bytes written, expected %llu",
                         (unsigned long long)pos, (unsigned long long)n);
    }
    *out = b;
    *len = n;
    *sum = hma__xxh64(b, (size_t)n, 0);
    return HMA_OK;
}

void hma__pk_index_free(hma__pk_index *ix) {
    if (!ix) return;
    hma__free(ix->t);
    hma__free(ix->chunks);
    memset(ix, 0, sizeof *ix);
}

static int index_decode(const char *path, const hma__pk_fixed *f, const unsigned char *ix_bytes, hma__pk_index *ix,
                        hma__st_header *hdr) {
    const unsigned char *ib = ix_bytes;
    const uint64_t len = f->index_len, cs = f->chunk_size;
    uint64_t pos = 0;
    int rc;
#define NEED(nb, what)                                                                            \
    do {                                                                                          \
        if ((uint64_t)(nb) > len - pos)                                                           \
            return hma__fail(HMA_ERR_CORRUPT, "%.400s: index byte %llu: %s cut short", path,       \
                             (unsigned long long)pos, what);                                      \
    } while (0)
    NEED(8, "header length");
    uint64_t hlen = hma__ld64(ib);
    pos = 8;
    NEED(hlen, "safetensors header");
    if (f->orig_size < 8 || hlen > f->orig_size - 8)
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: header length %llu does not fit the original size %llu", path,
                         (unsigned long long)hlen, (unsigned long long)f->orig_size);
    char what[480];
    snprintf(what, sizeof what, "%.400s (stored header)", path);
    rc = hma__st_parse(what, (const char *)ib + pos, hlen, f->orig_size, hdr);
    if (rc) return rc;
    ix->json = (const char *)ib + pos;
    ix->json_len = hlen;
    pos += hlen;
    NEED(8, "tensor count");
    uint64_t nt = hma__ld64(ib + pos);
    pos += 8;
    if (nt != hdr->n)
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: index lists %llu tensors, the header %zu", path,
                         (unsigned long long)nt, hdr->n);
    ix->ntensors = hdr->n;
    ix->t = hma__calloc(hdr->n ? hdr->n : 1, sizeof *ix->t);
    if (!ix->t) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
    /* The chunk count is bounded by the index size, so this allocation is too. */
    size_t maxc = (size_t)(len / HMA__PK_CHUNK_ENTRY) + 1;
    ix->chunks = hma__calloc(maxc, sizeof *ix->chunks);
    if (!ix->chunks) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
    uint64_t next_off = HMA__PK_FIXED_SIZE;
    for (size_t i = 0; i < hdr->n; i++) {
        const hma__st_tensor *st = &hdr->tensors[i];
        hma__pk_tensor *t = &ix->t[i];
        NEED(HMA__PK_TENSOR_HEAD, "tensor record");
        t->coding = ib[pos];
        for (int k = 1; k < 8; k++)
            if (ib[pos + (uint64_t)k])
                return hma__fail(HMA_ERR_CORRUPT, "%.400s: tensor '%.200s': reserved bytes not zero", path, st->name);
        if (t->coding > HMA__PK_CODING_BASE || (t->coding == HMA__PK_CODING_BASE && !(f->flags & HMA__PK_FLAG_BASE)))
            return hma__fail(HMA_ERR_CORRUPT, "%.400s: tensor '%.200s': coding %u (expected 0%s)", path, st->name,
                             t->coding, (f->flags & HMA__PK_FLAG_BASE) ? " or 1" : ", the pack has no base");
        uint64_t nc = hma__ld64(ib + pos + 8);
        pos += HMA__PK_TENSOR_HEAD;
        uint64_t want = st->nbytes / cs + (st->nbytes % cs != 0);
        if (nc != want)
            return hma__fail(HMA_ERR_CORRUPT, "%.400s: tensor '%.200s': %llu chunks (expected %llu for %llu bytes)", path,
                             st->name, (unsigned long long)nc, (unsigned long long)want,
                             (unsigned long long)st->nbytes);
        if (nc > (len - pos) / HMA__PK_CHUNK_ENTRY) NEED(nc * HMA__PK_CHUNK_ENTRY, "chunk table");
        hma__pc_fmt fmt;
        int isfloat = hma__pk_dtype_fmt(st->dtype, &fmt);
        int f16 = isfloat && fmt.esize == 2 && f->version >= 3;
        t->first = ix->nchunks;
        t->nchunks = (size_t)nc;
        for (uint64_t c = 0; c < nc; c++) {
            const unsigned char *e = ib + pos;
            hma__pk_chunk *ch = &ix->chunks[ix->nchunks++];
            ch->off = hma__ld64(e);
            ch->len = hma__ld32(e + 8);
            ch->method = e[12];
            ch->psum = hma__ld64(e + 16);
            ch->sum = hma__ld64(e + 24);
            uint64_t raw = (c + 1 < nc) ? cs : st->nbytes - c * cs;
            int mok = ch->method == HMA__PC_STORE || ch->method == HMA__PC_ZSTD ||
                      (isfloat && ch->method == HMA__PC_FLOAT) ||
                      (isfloat && t->coding == HMA__PK_CODING_BASE && ch->method == HMA__PC_DIFF) ||
                      (f16 && ch->method == HMA__PC_FLOAT16) ||
                      (f16 && t->coding == HMA__PK_CODING_BASE && ch->method == HMA__PC_DIFF16);
            if (!mok || e[13] || e[14] || e[15])
                return hma__fail(HMA_ERR_CORRUPT, "%.400s: tensor '%.200s': chunk %llu: coding method %u not valid here",
                                 path, st->name, (unsigned long long)c, ch->method);
            if (ch->off != next_off || ch->len == 0 || ch->len > hma__pc_bound((size_t)raw) ||
                ch->len > f->index_off - next_off)
                return hma__fail(HMA_ERR_CORRUPT,
                                 "%.400s: tensor '%.200s': chunk %llu: payload [%llu, +%u) out of place (expected to start at %llu and end by %llu)",
                                 path, st->name, (unsigned long long)c, (unsigned long long)ch->off, ch->len,
                                 (unsigned long long)next_off, (unsigned long long)f->index_off);
            next_off += ch->len;
            pos += HMA__PK_CHUNK_ENTRY;
        }
    }
    if (next_off != f->index_off)
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: chunk payloads end at byte %llu, the index starts at %llu", path,
                         (unsigned long long)next_off, (unsigned long long)f->index_off);
    if (pos != len)
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: %llu unexpected bytes at the end of the index", path,
                         (unsigned long long)(len - pos));
#undef NEED
    return HMA_OK;
}

int hma__pk_index_decode(const char *path, const hma__pk_fixed *f, const unsigned char *bytes, hma__pk_index *ix,
                         hma__st_header *hdr) {
    memset(ix, 0, sizeof *ix);
    memset(hdr, 0, sizeof *hdr);
    if (hma__xxh64(bytes, (size_t)f->index_len, 0) != f->index_sum)
        return hma__fail(HMA_ERR_CORRUPT, "%.400s: index (bytes [%llu, %llu)) checksum mismatch (the index is damaged)",
                         path, (unsigned long long)f->index_off, (unsigned long long)(f->index_off + f->index_len));
    int rc = index_decode(path, f, bytes, ix, hdr);
    if (rc) {
        hma__pk_index_free(ix);
        hma__st_header_free(hdr);
    }
    return rc;
}

/* ======================================================================= */
/* Dtypes                                                                  */
/* ======================================================================= */

int hma__pk_dtype_fmt(hma_dtype dt, hma__pc_fmt *f) {
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
