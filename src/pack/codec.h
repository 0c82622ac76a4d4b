/*
 * codec.h - the per-chunk coding of delta packs: xxhash64, the
 * ordered-integer and zig-zag maps, and the chunk methods. Pure functions on
 * buffers: they know nothing of files, tensors or threads (pack.c does).
 *
 * A chunk is `n` raw bytes of one tensor, a whole number of `esize`-byte
 * elements (esize 1, 2, 4 or 8). The chunk coding methods (stored as one byte
 * in the pack's chunk table; every byte of a payload is documented in
 * docs/pack-format.md):
 *   STORE  payload = the raw bytes
 *   ZSTD   payload = one zstd frame of the raw bytes (integers, F8, ...)
 *   FLOAT  float, alone: each element rotated left by one bit (the sign
 *          moves to bit 0), its top byte (the exponent for BF16/F32)
 *          Huffman-coded, the bits below it stored as they are
 *   DIFF   float, with base: zigzag(ord(t) - ord(b)) per element, coded as
 *          a Huffman symbol (bit length and 3 leading bits) plus raw low
 *          bits, with one Huffman table per base-exponent context
 *   DIFF16  16-bit float with base (pack version 3): a Huffman-coded byte
 *          (length of the magnitude difference, offset by the base's
 *          exponent, and the sign flip) plus raw bits in separate streams
 *   FLOAT16 16-bit float alone (pack version 3): rotl1, the top byte
 *          Huffman-coded, the low bytes as a plane
 * FLOAT and DIFF share one layout: a small header (shift, contexts, code
 * lengths), then 4 interleaved bit streams over 4 quarters of the chunk,
 * decoded with one table lookup per element. codec16.c describes the
 * 16-bit methods, which are laid out for SIMD decoding.
 *
 * Every transform is a bijection on bit patterns, so NaN payloads, infinities,
 * subnormals and negative zero round-trip exactly.
 */
#ifndef HMA_PACK_CODEC_H
#define HMA_PACK_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "pack/huffman.h"

/* ---- xxhash64 (the public XXH64 algorithm, written here because zstd's
 * bundled copy is not part of its public API) ---------------------------- */
typedef struct hma__xxh64_state {
    uint64_t v[4];
    uint64_t total;
    uint64_t seed;
    unsigned char buf[32];
    size_t nbuf;
} hma__xxh64_state;

uint64_t hma__xxh64(const void *data, size_t len, uint64_t seed);
void hma__xxh64_init(hma__xxh64_state *st, uint64_t seed);
void hma__xxh64_update(hma__xxh64_state *st, const void *data, size_t len);
uint64_t hma__xxh64_digest(const hma__xxh64_state *st);

/* ---- scalar maps (the definitions the chunk methods use) ---------------- */
/* ord: sign-magnitude bits -> integer in float order; zigzag: two's
 * complement difference -> small unsigned; both on `bits`-bit values. */
uint64_t hma__pc_ord(uint64_t u, unsigned bits);
uint64_t hma__pc_unord(uint64_t m, unsigned bits);
uint64_t hma__pc_zigzag(uint64_t d, unsigned bits);
uint64_t hma__pc_unzigzag(uint64_t z, unsigned bits);

/* ---- one chunk ----------------------------------------------------------- */
enum hma__pc_method {
    HMA__PC_STORE = 0,
    HMA__PC_ZSTD = 1,
    HMA__PC_FLOAT = 2, /* float alone: Huffman-coded top byte + raw low bits */
    HMA__PC_DIFF = 3,  /* float with base: Huffman-coded ordered difference */
    HMA__PC_DIFF16 = 4,  /* 16-bit float with base (codec16.c) */
    HMA__PC_FLOAT16 = 5, /* 16-bit float alone (codec16.c) */
    HMA__PC_METHOD_COUNT = 6
};

/* Element layout of a chunk: esize bytes an element (1, 2, 4, 8) and, for
 * floats, the exponent width (BF16 8, F16 5, F32 8, F64 11; 0 otherwise),
 * which DIFF uses to pick a context from the base element (0: one context). */
typedef struct hma__pc_fmt {
    unsigned esize;
    unsigned ebits;
} hma__pc_fmt;

/* Worst-case payload size for n raw bytes with any method. */
size_t hma__pc_bound(size_t n);

/* Per-thread coding context for chunks of at most max_chunk bytes: zstd
 * contexts, Huffman tables (about 270 KiB) and 3.25 x max_chunk bytes of
 * buffers. Not thread-safe; one per worker thread. */
typedef struct hma__pc_ctx hma__pc_ctx;
/* Returns 0, or HMA_ERR_NO_MEMORY (no message set). */
int hma__pc_ctx_new(hma__pc_ctx **out, size_t max_chunk);
void hma__pc_ctx_free(hma__pc_ctx *ctx);
/* Tests: use at most this SIMD level for the 16-bit methods (0 portable,
 * 1 BMI2, 2 AVX2); the bytes written do not depend on it. */
void hma__pc_ctx_set_isa(hma__pc_ctx *ctx, int isa);

/*
 * Encode n raw bytes of src (with base bytes `base` of the same length for
 * DIFF, else NULL) with `method` (zstd `level` for ZSTD only) into dst (capacity cap,
 * at least hma__pc_bound(n)). Sets *out_len. When the coded form would not
 * be smaller than the raw bytes, *method_used is HMA__PC_STORE and dst holds
 * the raw bytes. Returns 0 or an hma_error code (no message set):
 * HMA_ERR_INVALID_ARGUMENT (method/esize/n mismatch), HMA_ERR_NO_MEMORY.
 */
int hma__pc_encode(hma__pc_ctx *ctx, int method, hma__pc_fmt fmt, const uint8_t *src,
                   const uint8_t *base, size_t n, int level, uint8_t *dst, size_t cap,
                   size_t *out_len, int *method_used);

/*
 * Decode a payload of src_len bytes coded with `method` into exactly n bytes
 * at dst (base: the same n bytes of the base for DIFF). Every length is
 * checked: a payload that is malformed or decodes to another size returns
 * HMA_ERR_CORRUPT and *why points to a static reason. Never reads outside
 * src[0, src_len) or base[0, n), never writes outside dst[0, n).
 */
int hma__pc_decode(hma__pc_ctx *ctx, int method, hma__pc_fmt fmt, const uint8_t *src,
                   size_t src_len, const uint8_t *base, uint8_t *dst, size_t n,
                   const char **why);

/* ---- the 16-bit methods (codec16.c), called by the two above ------ */
typedef struct hma__pc16_scratch {
    uint32_t h2[256 * 32]; /* encoder: counts per (base exponent, nraw, flip) */
    hma__huf8_tables tab;  /* decoder: Huffman tables */
    uint8_t *sym;          /* max_chunk / 2 + 1 bytes: symbols */
    uint8_t *nr;           /* the same: raw-bit counts */
    uint16_t *z;           /* the same x 2 bytes: encoder values */
    uint16_t *key;         /* the same x 2 bytes: encoder (exponent, nraw, flip) */
    uint8_t symtab[256 * 32]; /* encoder: symbol of each key */
    uint32_t *gp;          /* (max_chunk / 2 + 1) / 8 + 8: group bit positions */
} hma__pc16_scratch;
/* Returns the payload size, or 0 when it would not be smaller than n. */
size_t hma__pc16_encode(int diff, unsigned ebits, const uint8_t *t, const uint8_t *b, size_t n, uint8_t *dst,
                        hma__pc16_scratch *sc, int isa);
int hma__pc16_decode(int diff, unsigned ebits, const uint8_t *src, size_t len, const uint8_t *b, uint8_t *dst,
                     size_t n, hma__pc16_scratch *sc, int isa, const char **why);

#endif /* HMA_PACK_CODEC_H */
