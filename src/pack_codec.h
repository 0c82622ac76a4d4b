/*
 * pack_codec.h - the per-chunk transforms and coding of delta packs: xxhash64,
 * byte planes, exponent separation, XOR / ordered-integer difference against a
 * base, zig-zag, and the zstd wrapping of one chunk. Pure functions on
 * buffers: they know nothing of files, tensors or threads (pack.c does).
 *
 * A chunk is `n` raw bytes of one tensor, a whole number of `esize`-byte
 * elements (esize 1, 2, 4 or 8). The chunk coding methods (stored as one byte
 * in the pack's chunk table, see docs/pack-format.md):
 *   STORE  payload = the raw bytes
 *   ZSTD   payload = one zstd frame of the raw bytes
 *   PLANES float, alone: each element rotated left by one bit (the sign moves
 *          to bit 0, so the exponent fills the top byte of BF16/F32), then
 *          split into esize byte planes, each plane coded on its own
 *   XOR    float, with base: (t XOR b) rotated left by one bit, then planes
 *   DIFF   float, with base: zigzag(ord(t) - ord(b)) then planes, where
 *          ord() maps sign-magnitude float bits to a monotone integer
 * Plane payload: a directory of esize entries {u8 mode, u32le length}, then
 * the planes' bytes in order; mode 0 = raw (length = elements), mode 1 = a
 * zstd frame that decodes to exactly `elements` bytes.
 *
 * Every transform is a bijection on bit patterns, so NaN payloads, infinities,
 * subnormals and negative zero round-trip exactly.
 */
#ifndef HMA_PACK_CODEC_H
#define HMA_PACK_CODEC_H

#include <stddef.h>
#include <stdint.h>

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

/* ---- element transforms (dst and src never overlap) -------------------- */

/* Byte plane k of dst (nelem bytes at dst + k * nelem) = byte k (little
 * endian) of every element of src. */
void hma__pc_planes_split(const uint8_t *src, size_t nelem, unsigned esize, uint8_t *dst);
/* Inverse of hma__pc_planes_split. */
void hma__pc_planes_join(const uint8_t *src, size_t nelem, unsigned esize, uint8_t *dst);
/* In place: rotate every element left (right) by one bit. esize 2, 4 or 8. */
void hma__pc_rotl1(uint8_t *buf, size_t nelem, unsigned esize);
void hma__pc_rotr1(uint8_t *buf, size_t nelem, unsigned esize);
/* dst[i] = a[i] ^ b[i] for n bytes (dst may equal a). */
void hma__pc_xor(const uint8_t *a, const uint8_t *b, size_t n, uint8_t *dst);
/* Ordered-integer difference: dst = zigzag(ord(t) - ord(b)) (mod 2^bits),
 * element by element; decode inverts it given b. esize 2, 4 or 8. */
void hma__pc_odiff_encode(const uint8_t *t, const uint8_t *b, size_t nelem, unsigned esize,
                          uint8_t *dst);
void hma__pc_odiff_decode(const uint8_t *d, const uint8_t *b, size_t nelem, unsigned esize,
                          uint8_t *dst);
/* The scalar helpers behind them, exposed for tests. */
uint64_t hma__pc_ord(uint64_t u, unsigned bits);
uint64_t hma__pc_unord(uint64_t m, unsigned bits);
uint64_t hma__pc_zigzag(uint64_t d, unsigned bits);
uint64_t hma__pc_unzigzag(uint64_t z, unsigned bits);

/* ---- one chunk ----------------------------------------------------------- */
enum hma__pc_method {
    HMA__PC_STORE = 0,
    HMA__PC_ZSTD = 1,
    HMA__PC_PLANES = 2,
    HMA__PC_XOR = 3,
    HMA__PC_DIFF = 4,
    HMA__PC_XOR_SORTED = 5,  /* XOR with planes in base-exponent order */
    HMA__PC_DIFF_SORTED = 6, /* DIFF with planes in base-exponent order */
    HMA__PC_METHOD_COUNT = 7
};

/* Element layout of a chunk: esize bytes an element (1, 2, 4, 8) and, for
 * floats, the exponent width (BF16 8, F16 5, F32 8, F64 11; 0 otherwise),
 * which the sorted methods use as their key. */
typedef struct hma__pc_fmt {
    unsigned esize;
    unsigned ebits;
} hma__pc_fmt;

/* Worst-case payload size for n raw bytes with any method. */
size_t hma__pc_bound(size_t n);

/* Per-thread coding context: zstd contexts and scratch for chunks of at
 * most max_chunk bytes. Not thread-safe; one per worker thread. */
typedef struct hma__pc_ctx hma__pc_ctx;
/* Returns 0, or HMA_ERR_NO_MEMORY (no message set). */
int hma__pc_ctx_new(hma__pc_ctx **out, size_t max_chunk);
void hma__pc_ctx_free(hma__pc_ctx *ctx);

/*
 * Encode n raw bytes of src (with base bytes `base` of the same length for
 * XOR/DIFF, else NULL) with `method` at zstd `level` into dst (capacity cap,
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
 * at dst (base: the same n bytes of the base for XOR/DIFF). Every length is
 * checked: a payload that is malformed or decodes to another size returns
 * HMA_ERR_CORRUPT and *why points to a static reason. Never reads outside
 * src[0, src_len) or base[0, n), never writes outside dst[0, n).
 */
int hma__pc_decode(hma__pc_ctx *ctx, int method, hma__pc_fmt fmt, const uint8_t *src,
                   size_t src_len, const uint8_t *base, uint8_t *dst, size_t n,
                   const char **why);

#endif /* HMA_PACK_CODEC_H */
