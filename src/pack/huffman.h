/*
 * huffman.h - length-limited canonical Huffman codes (shared by the pack's
 * chunk methods), and a coder of byte symbols in four interleaved streams:
 * the entropy stage of the 16-bit methods (codec16.c).
 *
 * Codes are canonical (by length, then symbol, as in deflate) and written
 * LSB first, so codes are stored bit-reversed; lengths are at most
 * HMA__HUF_MAXLEN, so one 2^11-entry table lookup decodes a symbol.
 */
#ifndef HMA_PACK_HUFFMAN_H
#define HMA_PACK_HUFFMAN_H

#include <stddef.h>
#include <stdint.h>

#define HMA__HUF_MAXLEN 11u
#define HMA__HUF_TSIZE (1u << HMA__HUF_MAXLEN)
#define HMA__HUF_SOLE 15u  /* code-length nibble: the only symbol, 0 bits */
#define HMA__HUF_MAXSYM 512u

/* Optimal code lengths limited to HMA__HUF_MAXLEN (0 = absent, HMA__HUF_SOLE
 * = the only symbol present) of nsym <= HMA__HUF_MAXSYM symbols with counts
 * h; the code is complete. Ties go by symbol, so the result is a function of
 * the counts alone. */
void hma__huf_lengths(const uint32_t *h, unsigned nsym, uint8_t *len);

/* Canonical codes, bit-reversed for LSB-first streams; 0 for absent and sole
 * symbols. Lengths above HMA__HUF_MAXLEN count as absent. */
void hma__huf_codes(const uint8_t *len, unsigned nsym, uint16_t *code);

/* ---- four streams --------------------------------------------------------- */
/* Every entropy-coded payload of a pack cuts its n elements into 4 streams
 * (independent bit chains the decoder interleaves). */
#define HMA__HUF_NSTREAM 4u

/* Elements [lo, hi) of stream s: quarters of floor(n / 4), the rest to the last. */
static inline void hma__huf_quarter(size_t n, unsigned s, size_t *lo, size_t *hi) {
    size_t q = n / HMA__HUF_NSTREAM;
    *lo = s * q;
    *hi = s + 1 < HMA__HUF_NSTREAM ? *lo + q : n;
}

/* A stream table: 4 u32 byte lengths at src + at, then the streams back to
 * back, all inside src[0, len). Fills start[] (offsets) and slen[]; returns
 * the offset after the last stream, or 0 with *why set (static text). */
size_t hma__huf_streams(const uint8_t *src, size_t len, size_t at, size_t start[HMA__HUF_NSTREAM],
                        size_t slen[HMA__HUF_NSTREAM], const char **why);

/* ---- byte symbols in four streams --------------------------------------- */
/*
 * A block codes n byte symbols:
 *   u8 first, u8 count - 1      symbols first .. first+count-1 (<= 255) have lengths
 *   ceil(count / 2) bytes       4-bit code lengths, low nibble first, padding 0
 *   4 x u32                     byte length of each stream
 *   the 4 streams               symbols [s*q, (s+1)*q) in stream s < 3, the
 *                               rest in stream 3, q = floor(n / 4)
 * A block is self-delimiting; its size is returned by both sides.
 */

/* Code lengths (hma__huf_lengths) for the counts hist[] of n symbols;
 * returns the size of the block that hma__huf8_encode will write, or up to
 * 4 bytes more (each stream's last byte counted whole). The encoders write
 * 8 bytes past the block's end at most: callers leave that much room. */
size_t hma__huf8_plan(const uint32_t hist[256], size_t n, uint8_t len[256]);

/* Codes the n symbols sym[] with the lengths from hma__huf8_plan into dst;
 * returns the block size. */
size_t hma__huf8_encode(const uint8_t *sym, size_t n, const uint8_t len[256], uint8_t *dst);

/* The same for the symbols map[keys[i]] (every key in [klo, khi)), without
 * writing them out first: ec_keys (khi entries of scratch) maps keys to
 * codes. */
size_t hma__huf8_encode_keys(const uint16_t *keys, size_t n, const uint8_t *map, unsigned klo, unsigned khi,
                             const uint8_t len[256], uint32_t *ec_keys, uint8_t *dst);

/* Codes the symbols in 4 explicit parts: stream s holds codes [cut[s],
 * cut[s+1]) (cut[0] = 0, cut[4] = the count). With run codes the parts are
 * not equal quarters of the codes, only of the bytes they stand for. */
size_t hma__huf8_encode_parts(const uint8_t *codes, const size_t cut[5], const uint8_t len[256], uint8_t *dst);

/* Run codes (optional): code `sym` stands for 2 copies of `byte`, code
 * `sym` + 1 for 4 copies (sym <= 254). Each stream still yields exactly its
 * quarter of the n bytes; a run that would cross it is an error. */
typedef struct hma__huf8_runs {
    unsigned sym;
    uint8_t byte;
} hma__huf8_runs;

/* Decoding tables (28 KiB): one symbol per lookup, up to three, and up to
 * seven bytes with run codes. */
typedef struct hma__huf8_tables {
    uint16_t one[HMA__HUF_TSIZE + 2]; /* + slack for 4-byte gathers */
    uint32_t multi[HMA__HUF_TSIZE];
    uint64_t multi7[HMA__HUF_TSIZE];
} hma__huf8_tables;

/* Decodes a block of n symbols at src into out[0, n). `avail` >= the block's
 * bytes may be read from src (a larger value lets the fast loop run longer;
 * nothing past the block changes the result). t: scratch tables.
 * isa: 0 portable, 1 BMI2, 2 AVX2 + BMI2 (x86-64: faster loops). runs:
 * the block's run codes, or NULL. Returns 0 and the block size in *used, or -1 with *why set (static text):
 * never reads outside src[0, avail) nor writes outside out[0, n). */
int hma__huf8_decode(const uint8_t *src, size_t avail, uint8_t *out, size_t n, hma__huf8_tables *t,
                     int isa, const hma__huf8_runs *runs, size_t *used, const char **why);

#endif /* HMA_PACK_HUFFMAN_H */
