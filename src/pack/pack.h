/*
 * pack.h - what the files of the pack module share (nothing here is public):
 * an open pack file and the decoding of one chunk (read.c), per-worker
 * chunk buffers, the base checksum (base.c), options and stats (options.c).
 *
 * Everything read from a pack is untrusted: the fixed header and the index
 * carry xxhash64 checksums (format.c checks them and every offset and
 * length), and every decoded chunk is checked against its own checksum
 * before a byte of it is handed out.
 */
#ifndef HMA_PACK_PACK_H
#define HMA_PACK_PACK_H

#include "internal.h"
#include "pack/codec.h"
#include "pack/format.h"
#include "formats/safetensors.h"

/* ---- per-worker chunk buffers (read.c) --------------------------------- */
typedef struct hma__pk_scratch {
    hma__pc_ctx *cc;
    uint8_t *raw;     /* chunk_size */
    uint8_t *basebuf; /* chunk_size */
    uint8_t *payload; /* hma__pc_bound(chunk_size) */
} hma__pk_scratch;

/* HMA_ERR_NO_MEMORY (message set) or HMA_OK; on failure *s is empty. */
int hma__pk_scratch_init(hma__pk_scratch *s, size_t chunk_size);
/* Safe on a zeroed or freed scratch. */
void hma__pk_scratch_free(hma__pk_scratch *s);

/* ---- an open pack file (read.c) ---------------------------------------- */
typedef struct hma__pk_file {
    char *path;
    int fd; /* read with pread(2) only */
    int registered;
    unsigned long long dev, ino;
    uint64_t file_size;
    hma__pk_fixed fx;
    unsigned char *index; /* index bytes; ix.json points into them */
    hma__pk_index ix;
    hma__st_header hdr;   /* the original file's header, from the index */
    const hma_tensor **bt; /* per tensor: its base tensor when coded against the base */
    const hma_store *base;
} hma__pk_file;

/* Open `path`, check its fixed header, read and check its index, register
 * it as an open input, and check `base` against the pack (checksum computed
 * in `threads` threads; 0 = online CPUs). On failure *p is closed. */
int hma__pk_open(hma__pk_file *p, const char *path, const hma_store *base, unsigned threads);
/* Only the fixed header (p->fx): for hma_pack_needs_base(). */
int hma__pk_open_fixed(hma__pk_file *p, const char *path);
/* Safe on a zeroed file and after a failed open. */
void hma__pk_close(hma__pk_file *p);

/* Decode chunk c of tensor ti into dst (the chunk's raw size), checking the
 * payload's and the decoded bytes' checksums. Thread-safe given distinct s. */
int hma__pk_decode_chunk(const hma__pk_file *p, size_t ti, size_t c, hma__pk_scratch *s, uint8_t *dst);

/* Raw bytes of chunk c of a tensor of nbytes bytes. */
static inline size_t hma__pk_chunk_raw(uint64_t nbytes, uint64_t chunk_size, size_t c) {
    uint64_t start = (uint64_t)c * chunk_size;
    return (size_t)(nbytes - start < chunk_size ? nbytes - start : chunk_size);
}

/* A flat job list over every chunk of a file: (tensor, chunk) pairs. */
typedef struct hma__pk_ref {
    size_t tensor, chunk;
} hma__pk_ref;
/* The nchunks refs of the tensors of hdr cut into chunk_size chunks; NULL
 * on out of memory (no message). */
hma__pk_ref *hma__pk_refs(const hma__st_header *hdr, uint64_t chunk_size, size_t nchunks);

/* ---- base (base.c) ----------------------------------------------------- */
/* The checksum a pack records of its base (docs/pack-format.md): tensors in
 * name order, layout-independent. Reads the whole base in `threads` threads. */
int hma__pk_base_checksum(const hma_store *base, unsigned threads, uint64_t *out);
/* 1 if base tensor b has the dtype and shape of t. */
int hma__pk_same_shape(const hma__st_tensor *t, const hma_tensor *b);

/* ---- options and stats (options.c) ------------------------------------- */
/* Defaults, then `in` (NULL, or any struct_size from an older hma.h), then
 * checks (level, chunk size); also checks the caller's stats struct_size,
 * so that a call fails before it does any work. */
int hma__pk_options(const hma_pack_options *in, hma_pack_options *o, const hma_pack_stats *stats, const char *fn);
/* Copy src into the caller's stats (NULL is fine), as far as its struct_size. */
void hma__pk_stats_put(hma_pack_stats *dst, const hma_pack_stats *src, const char *fn);
/* Monotonic seconds. */
double hma__pk_now(void);

#endif /* HMA_PACK_PACK_H */
