/*
 * format.h - the bytes of a pack file (docs/pack-format.md): the fixed
 * header and the index, each with THE one encoder (hma_pack_create) and THE
 * one decoder (every reader), so that both sides cannot drift apart.
 *
 * File layout: fixed header (72 bytes) | chunk payloads | index.
 * Everything decoded here is untrusted: every field is checked before use.
 */
#ifndef HMA_PACK_FORMAT_H
#define HMA_PACK_FORMAT_H

#include "internal.h"
#include "pack/codec.h"
#include "formats/safetensors.h"

#define HMA__PK_MAGIC "HMAPACK" /* 7 bytes + NUL = 8 */
#define HMA__PK_VERSION 3u      /* written; 3 adds the 16-bit methods DIFF16 and FLOAT16 */
#define HMA__PK_VERSION_MIN 2u  /* read back to 2; 1 (zstd byte planes) is not read any more */
#define HMA__PK_FLAG_BASE 1u
#define HMA__PK_FIXED_SIZE 72u
#define HMA__PK_TENSOR_HEAD 16u /* u8 coding, 7 zero bytes, u64 chunk count */
#define HMA__PK_CHUNK_ENTRY 32u /* u64 offset, u32 length, u8 method, 3 zero, u64 xxh64 of payload, u64 xxh64 of raw */
#define HMA__PK_CODING_ALONE 0u
#define HMA__PK_CODING_BASE 1u

/* The fixed header: magic, then these fields, then the xxh64 of bytes [0, 64). */
typedef struct hma__pk_fixed {
    uint32_t version;    /* HMA__PK_VERSION_MIN..HMA__PK_VERSION */
    uint32_t flags;      /* HMA__PK_FLAG_BASE or 0 */
    uint64_t base_sum;   /* checksum of the base (0 without one) */
    uint64_t chunk_size; /* raw bytes per chunk */
    uint64_t orig_size;  /* size of the original safetensors file */
    uint64_t index_off;  /* the index: [index_off, index_off + index_len), the end of the file */
    uint64_t index_len;
    uint64_t index_sum;  /* xxh64 of the index bytes */
} hma__pk_fixed;

/* Write the 72 bytes of `f` (magic and header checksum included). */
void hma__pk_fixed_encode(const hma__pk_fixed *f, unsigned char out[HMA__PK_FIXED_SIZE]);

/* Check and decode 72 bytes read from the start of `path` (a file of
 * file_size bytes): magic, checksum, version, flags, chunk size, index
 * bounds. HMA_ERR_CORRUPT, HMA_ERR_UNSUPPORTED, HMA_ERR_TRUNCATED. */
int hma__pk_fixed_decode(const char *path, const unsigned char in[HMA__PK_FIXED_SIZE], uint64_t file_size,
                         hma__pk_fixed *f);

/* One chunk entry of the index. */
typedef struct hma__pk_chunk {
    uint64_t off;   /* payload position in the file */
    uint32_t len;   /* payload bytes */
    uint8_t method; /* hma__pc_method */
    uint64_t psum;  /* xxh64 of the payload as stored */
    uint64_t sum;   /* xxh64 of the decoded bytes */
} hma__pk_chunk;

/* One tensor record of the index. */
typedef struct hma__pk_tensor {
    unsigned coding; /* HMA__PK_CODING_ALONE or _BASE */
    size_t first;    /* index of its first chunk in hma__pk_index.chunks */
    size_t nchunks;
} hma__pk_tensor;

/*
 * The index: u64 N, the original file's header JSON (N bytes), u64 tensor
 * count, then per tensor (in the header's data order) its record and its
 * chunk entries.
 */
typedef struct hma__pk_index {
    const char *json; /* header JSON (decode: points into the index bytes) */
    uint64_t json_len;
    size_t ntensors;
    hma__pk_tensor *t;     /* ntensors records */
    hma__pk_chunk *chunks; /* every chunk, tensor after tensor */
    size_t nchunks;
} hma__pk_index;

/* Encode `ix` into a new buffer (*out, malloc'd, *len bytes) and its
 * checksum (*sum, for hma__pk_fixed.index_sum). HMA_ERR_NO_MEMORY,
 * HMA_ERR_OVERFLOW. */
int hma__pk_index_encode(const hma__pk_index *ix, unsigned char **out, uint64_t *len, uint64_t *sum);

/*
 * Check and decode the index bytes `bytes` (f->index_len of them) of the
 * pack `path` whose fixed header is `f`: checksum, the stored header
 * (parsed into *hdr, which the caller frees with hma__st_header_free), every
 * record and chunk entry (methods valid for the dtype and version, payloads
 * back to back from the end of the fixed header to the index). On success
 * ix->t and ix->chunks are allocated (hma__pk_index_free); ix->json points
 * into `bytes`. HMA_ERR_CORRUPT, the safetensors header errors,
 * HMA_ERR_NO_MEMORY.
 */
int hma__pk_index_decode(const char *path, const hma__pk_fixed *f, const unsigned char *bytes,
                         hma__pk_index *ix, hma__st_header *hdr);

/* Free what hma__pk_index_decode allocated (t, chunks); safe on a zeroed index. */
void hma__pk_index_free(hma__pk_index *ix);

/* Codec layout of a dtype; returns 1 for the float dtypes whose bytes the
 * float methods understand (C64 = pairs of F32). */
int hma__pk_dtype_fmt(hma_dtype dt, hma__pc_fmt *f);

#endif /* HMA_PACK_FORMAT_H */
