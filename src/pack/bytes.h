/*
 * bytes.h - little-endian loads and stores at any address, for the file
 * formats and bit streams (packs, their codecs). memcpy compiles to one
 * move and says nothing about alignment; big-endian hosts swap the bytes.
 */
#ifndef HMA_PACK_BYTES_H
#define HMA_PACK_BYTES_H

#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define HMA__LE16(v) __builtin_bswap16(v)
#define HMA__LE32(v) __builtin_bswap32(v)
#define HMA__LE64(v) __builtin_bswap64(v)
#else
#define HMA__LE16(v) (v)
#define HMA__LE32(v) (v)
#define HMA__LE64(v) (v)
#endif

static inline uint16_t hma__ld16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return HMA__LE16(v);
}
static inline uint32_t hma__ld32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return HMA__LE32(v);
}
static inline uint64_t hma__ld64(const void *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return HMA__LE64(v);
}
/* The low 16 bits of v. */
static inline void hma__st16(void *p, unsigned v) {
    uint16_t x = (uint16_t)v;
    x = HMA__LE16(x);
    memcpy(p, &x, 2);
}
static inline void hma__st32(void *p, uint32_t v) {
    v = HMA__LE32(v);
    memcpy(p, &v, 4);
}
static inline void hma__st64(void *p, uint64_t v) {
    v = HMA__LE64(v);
    memcpy(p, &v, 8);
}

#endif /* HMA_PACK_BYTES_H */
