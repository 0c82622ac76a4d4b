/* pack_codec.c - per-chunk transforms and zstd coding of delta packs (see pack_codec.h). */
#include "internal.h"
#include "pack_codec.h"

#include <string.h>
#include <zstd.h>

/* ======================================================================= */
/* xxhash64                                                                */
/* ======================================================================= */

#define XP1 0x9E3779B185EBCA87ull
#define XP2 0xC2B2AE3D27D4EB4Full
#define XP3 0x165667B19E3779F9ull
#define XP4 0x85EBCA77C2B2AE63ull
#define XP5 0x27D4EB2F165667C5ull

static inline uint64_t rotl64(uint64_t x, unsigned r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t le64(const unsigned char *p) {
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}
static inline uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t xround(uint64_t acc, uint64_t in) {
    acc += in * XP2;
    acc = rotl64(acc, 31);
    return acc * XP1;
}
static inline uint64_t xmerge(uint64_t acc, uint64_t v) {
    acc ^= xround(0, v);
    return acc * XP1 + XP4;
}

void hma__xxh64_init(hma__xxh64_state *st, uint64_t seed) {
    memset(st, 0, sizeof *st);
    st->seed = seed;
    st->v[0] = seed + XP1 + XP2;
    st->v[1] = seed + XP2;
    st->v[2] = seed;
    st->v[3] = seed - XP1;
}

static const unsigned char *xstripes(uint64_t v[4], const unsigned char *p, const unsigned char *end) {
    while ((size_t)(end - p) >= 32) {
        v[0] = xround(v[0], le64(p));
        v[1] = xround(v[1], le64(p + 8));
        v[2] = xround(v[2], le64(p + 16));
        v[3] = xround(v[3], le64(p + 24));
        p += 32;
    }
    return p;
}

void hma__xxh64_update(hma__xxh64_state *st, const void *data, size_t len) {
    const unsigned char *p = data, *end = p + len;
    if (len == 0) return;
    st->total += len;
    if (st->nbuf + len < 32) {
        memcpy(st->buf + st->nbuf, p, len);
        st->nbuf += len;
        return;
    }
    if (st->nbuf) {
        size_t take = 32 - st->nbuf;
        memcpy(st->buf + st->nbuf, p, take);
        xstripes(st->v, st->buf, st->buf + 32);
        p += take;
        st->nbuf = 0;
    }
    p = xstripes(st->v, p, end);
    st->nbuf = (size_t)(end - p);
    if (st->nbuf) memcpy(st->buf, p, st->nbuf);
}

static uint64_t xfinish(uint64_t h, const unsigned char *p, size_t len) {
    while (len >= 8) {
        h ^= xround(0, le64(p));
        h = rotl64(h, 27) * XP1 + XP4;
        p += 8;
        len -= 8;
    }
    if (len >= 4) {
        h ^= (uint64_t)le32(p) * XP1;
        h = rotl64(h, 23) * XP2 + XP3;
        p += 4;
        len -= 4;
    }
    while (len--) {
        h ^= (uint64_t)(*p++) * XP5;
        h = rotl64(h, 11) * XP1;
    }
    h ^= h >> 33;
    h *= XP2;
    h ^= h >> 29;
    h *= XP3;
    h ^= h >> 32;
    return h;
}

uint64_t hma__xxh64_digest(const hma__xxh64_state *st) {
    uint64_t h;
    if (st->total >= 32) {
        const uint64_t *v = st->v;
        h = rotl64(v[0], 1) + rotl64(v[1], 7) + rotl64(v[2], 12) + rotl64(v[3], 18);
        h = xmerge(h, v[0]);
        h = xmerge(h, v[1]);
        h = xmerge(h, v[2]);
        h = xmerge(h, v[3]);
    } else {
        h = st->seed + XP5;
    }
    h += st->total;
    return xfinish(h, st->buf, st->nbuf);
}

uint64_t hma__xxh64(const void *data, size_t len, uint64_t seed) {
    const unsigned char *p = data, *end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v[4] = {seed + XP1 + XP2, seed + XP2, seed, seed - XP1};
        p = xstripes(v, p, end);
        h = rotl64(v[0], 1) + rotl64(v[1], 7) + rotl64(v[2], 12) + rotl64(v[3], 18);
        h = xmerge(h, v[0]);
        h = xmerge(h, v[1]);
        h = xmerge(h, v[2]);
        h = xmerge(h, v[3]);
    } else {
        h = seed + XP5;
    }
    h += (uint64_t)len;
    return xfinish(h, p, (size_t)(end - p));
}

/* ======================================================================= */
/* Scalar maps                                                             */
/* ======================================================================= */

static inline uint64_t mask_of(unsigned bits) { return bits >= 64 ? ~0ull : ((1ull << bits) - 1); }

/* Sign-magnitude to monotone: negative values flip all bits, positive ones
 * set the sign bit, so that integer order follows float order. */
uint64_t hma__pc_ord(uint64_t u, unsigned bits) {
    uint64_t sign = 1ull << (bits - 1), m = mask_of(bits);
    u &= m;
    return (u & sign) ? (~u & m) : (u | sign);
}
uint64_t hma__pc_unord(uint64_t v, unsigned bits) {
    uint64_t sign = 1ull << (bits - 1), m = mask_of(bits);
    v &= m;
    return (v & sign) ? (v & ~sign) : (~v & m);
}
uint64_t hma__pc_zigzag(uint64_t d, unsigned bits) {
    uint64_t m = mask_of(bits), sign = 1ull << (bits - 1);
    d &= m;
    return ((d << 1) ^ ((d & sign) ? m : 0)) & m;
}
uint64_t hma__pc_unzigzag(uint64_t z, unsigned bits) {
    uint64_t m = mask_of(bits);
    z &= m;
    return ((z >> 1) ^ ((z & 1) ? m : 0)) & m;
}

/* ======================================================================= */
/* Element transforms                                                      */
/* ======================================================================= */

static inline uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t ld32(const uint8_t *p) { return le32(p); }
static inline uint64_t ld64(const uint8_t *p) { return le64(p); }

void hma__pc_planes_split(const uint8_t *src, size_t nelem, unsigned esize, uint8_t *dst) {
    if (esize == 2) {
        uint8_t *p0 = dst, *p1 = dst + nelem;
        for (size_t i = 0; i < nelem; i++) {
            p0[i] = src[2 * i];
            p1[i] = src[2 * i + 1];
        }
        return;
    }
    for (size_t i = 0; i < nelem; i++)
        for (unsigned k = 0; k < esize; k++) dst[k * nelem + i] = src[i * esize + k];
}

void hma__pc_planes_join(const uint8_t *src, size_t nelem, unsigned esize, uint8_t *dst) {
    if (esize == 2) {
        const uint8_t *p0 = src, *p1 = src + nelem;
        for (size_t i = 0; i < nelem; i++) {
            dst[2 * i] = p0[i];
            dst[2 * i + 1] = p1[i];
        }
        return;
    }
    for (size_t i = 0; i < nelem; i++)
        for (unsigned k = 0; k < esize; k++) dst[i * esize + k] = src[k * nelem + i];
}

void hma__pc_rotl1(uint8_t *buf, size_t nelem, unsigned esize) {
    for (size_t i = 0; i < nelem; i++) {
        uint8_t *p = buf + i * esize;
        unsigned carry = p[esize - 1] >> 7;
        for (unsigned k = esize; k-- > 1;) p[k] = (uint8_t)(p[k] << 1 | p[k - 1] >> 7);
        p[0] = (uint8_t)(p[0] << 1 | carry);
    }
}

void hma__pc_rotr1(uint8_t *buf, size_t nelem, unsigned esize) {
    for (size_t i = 0; i < nelem; i++) {
        uint8_t *p = buf + i * esize;
        unsigned carry = p[0] & 1u;
        for (unsigned k = 0; k + 1 < esize; k++) p[k] = (uint8_t)(p[k] >> 1 | p[k + 1] << 7);
        p[esize - 1] = (uint8_t)(p[esize - 1] >> 1 | carry << 7);
    }
}

void hma__pc_xor(const uint8_t *a, const uint8_t *b, size_t n, uint8_t *dst) {
    for (size_t i = 0; i < n; i++) dst[i] = (uint8_t)(a[i] ^ b[i]);
}

void hma__pc_odiff_encode(const uint8_t *t, const uint8_t *b, size_t nelem, unsigned esize,
                          uint8_t *dst) {
    unsigned bits = esize * 8;
    for (size_t i = 0; i < nelem; i++) {
        uint64_t x = 0, y = 0;
        for (unsigned k = 0; k < esize; k++) {
            x |= (uint64_t)t[i * esize + k] << (8 * k);
            y |= (uint64_t)b[i * esize + k] << (8 * k);
        }
        uint64_t z = hma__pc_zigzag(hma__pc_ord(x, bits) - hma__pc_ord(y, bits), bits);
        for (unsigned k = 0; k < esize; k++) dst[i * esize + k] = (uint8_t)(z >> (8 * k));
    }
}

void hma__pc_odiff_decode(const uint8_t *d, const uint8_t *b, size_t nelem, unsigned esize,
                          uint8_t *dst) {
    unsigned bits = esize * 8;
    for (size_t i = 0; i < nelem; i++) {
        uint64_t z = 0, y = 0;
        for (unsigned k = 0; k < esize; k++) {
            z |= (uint64_t)d[i * esize + k] << (8 * k);
            y |= (uint64_t)b[i * esize + k] << (8 * k);
        }
        uint64_t x = hma__pc_unord(hma__pc_ord(y, bits) + hma__pc_unzigzag(z, bits), bits);
        for (unsigned k = 0; k < esize; k++) dst[i * esize + k] = (uint8_t)(x >> (8 * k));
    }
}

/* ---- fused fast paths: transform + plane split in one pass ------------- */
/* The generic functions above define the transforms; these do the same
 * thing faster for the common widths (checked against each other in tests). */

#define ORD(u, T, S) ((T)(((u) & (S)) ? (T)~(u) : (T)((u) | (S))))
#define UNORD(v, T, S) ((T)(((v) & (S)) ? (T)((v) & (T)~(S)) : (T)~(v)))
#define ZZ(d, T, B) ((T)((T)((d) << 1) ^ (T)(0 - (T)((d) >> ((B) - 1)))))
#define UNZZ(z, T) ((T)(((z) >> 1) ^ (T)(0 - (T)((z) & 1))))
#define ROTL1(u, T, B) ((T)((T)((u) << 1) | (T)((u) >> ((B) - 1))))
#define ROTR1(u, T, B) ((T)((T)((u) >> 1) | (T)((u) << ((B) - 1))))

/*
 * Sorted methods: the elements are put in stable order of the base's
 * exponent field (the `kbits` bits below the sign). The decoder has the base
 * too, so the order costs nothing to transmit, and grouping elements whose
 * ulp has the same size makes the difference statistics locally stationary
 * for zstd's per-block entropy tables. The chunk is cut into SORT_LANES
 * contiguous lanes processed interleaved, with one counter per (key, lane),
 * so that the scatter has independent dependency chains; the prefix sums in
 * (key, lane) order make this exactly the stable counting sort.
 */
#define SORT_KEY_BITS 11u
#define SORT_LANES 4u
typedef struct slotter {
    uint32_t cnt[(1u << SORT_KEY_BITS) * SORT_LANES];
    unsigned shift;
    uint32_t kmask;
} slotter;

static inline uint64_t ldw(const uint8_t *p, unsigned esize) {
    return esize == 2 ? ld16(p) : esize == 4 ? ld32(p) : ld64(p);
}

static void slotter_init(slotter *st, const uint8_t *b, size_t n, unsigned esize, unsigned kbits) {
    const unsigned L = SORT_LANES;
    size_t lane = n / L;
    st->shift = esize * 8 - 1 - kbits;
    st->kmask = (1u << kbits) - 1;
    memset(st->cnt, 0, sizeof(uint32_t) * L << kbits);
    /* lanes interleaved: runs of equal keys would otherwise serialise on
     * one counter */
    for (size_t r = 0; r < lane; r++)
        for (unsigned l = 0; l < L; l++)
            st->cnt[((uint32_t)(ldw(b + (l * lane + r) * esize, esize) >> st->shift) & st->kmask) *
                        L + l]++;
    for (size_t i = lane * L; i < n; i++)
        st->cnt[((uint32_t)(ldw(b + i * esize, esize) >> st->shift) & st->kmask) * L + L - 1]++;
    uint32_t sum = 0;
    for (uint32_t k = 0; k < (L << kbits); k++) {
        uint32_t c = st->cnt[k];
        st->cnt[k] = sum;
        sum += c;
    }
}

/* kind: 0 rotl1(t), 1 rotl1(t ^ b), 2 zigzag(ord(t) - ord(b)). Element i goes
 * to plane slot i, or to its sorted slot when st is set. */
#define TRANSFORM_LOOP(ONE)                                                       \
    do {                                                                          \
        const unsigned L_ = SORT_LANES;                                           \
        size_t lane_ = n / L_;                                                    \
        for (size_t r_ = 0; r_ < lane_; r_++)                                     \
            for (unsigned l_ = 0; l_ < L_; l_++) ONE(l_ * lane_ + r_, l_);         \
        for (size_t i_ = lane_ * L_; i_ < n; i_++) ONE(i_, L_ - 1);               \
    } while (0)
#define SLOT(i, l, T)                                                             \
    (st ? st->cnt[((uint32_t)(LDB(b + sizeof(T) * (i)) >> st->shift) & st->kmask) * \
                      SORT_LANES + (l)]++                                         \
        : (uint32_t)(i))

#define FWD_ONE(i, l, T, B, LD, S)                                                \
    {                                                                             \
        size_t ii = (i);                                                          \
        T x = LD(t + sizeof(T) * ii), v;                                          \
        if (kind == 0) {                                                          \
            v = ROTL1(x, T, B);                                                   \
        } else if (kind == 1) {                                                   \
            T y = (T)(x ^ LD(b + sizeof(T) * ii));                                \
            v = ROTL1(y, T, B);                                                   \
        } else {                                                                  \
            T y = LD(b + sizeof(T) * ii);                                         \
            T d = (T)(ORD(x, T, S) - ORD(y, T, S));                               \
            v = ZZ(d, T, B);                                                      \
        }                                                                         \
        size_t j = SLOT(ii, (l), T);                                              \
        for (unsigned k = 0; k < sizeof(T); k++) pl[k * n + j] = (uint8_t)(v >> (8 * k)); \
    }
#define INV_ONE(i, l, T, B, LD, S)                                                \
    {                                                                             \
        size_t ii = (i);                                                          \
        size_t j = SLOT(ii, (l), T);                                              \
        T v = 0, x;                                                               \
        for (unsigned k = 0; k < sizeof(T); k++) v = (T)(v | (T)pl[k * n + j] << (8 * k)); \
        if (kind == 0) {                                                          \
            x = ROTR1(v, T, B);                                                   \
        } else if (kind == 1) {                                                   \
            x = (T)(ROTR1(v, T, B) ^ LD(b + sizeof(T) * ii));                     \
        } else {                                                                  \
            T y = LD(b + sizeof(T) * ii);                                         \
            T o = (T)(ORD(y, T, S) + UNZZ(v, T));                                 \
            x = UNORD(o, T, S);                                                   \
        }                                                                         \
        for (unsigned k = 0; k < sizeof(T); k++) t[sizeof(T) * ii + k] = (uint8_t)(x >> (8 * k)); \
    }

#define LDB ld16
#define fwd16_one(i, l) FWD_ONE(i, l, uint16_t, 16, ld16, (uint16_t)0x8000u)
#define inv16_one(i, l) INV_ONE(i, l, uint16_t, 16, ld16, (uint16_t)0x8000u)
static void fwd16(int kind, const uint8_t *t, const uint8_t *b, size_t n, uint8_t *pl,
                  slotter *st) {
    TRANSFORM_LOOP(fwd16_one);
}
static void inv16(int kind, const uint8_t *pl, const uint8_t *b, size_t n, uint8_t *t,
                  slotter *st) {
    TRANSFORM_LOOP(inv16_one);
}
#undef LDB
#define LDB ld32
#define fwd32_one(i, l) FWD_ONE(i, l, uint32_t, 32, ld32, 0x80000000u)
#define inv32_one(i, l) INV_ONE(i, l, uint32_t, 32, ld32, 0x80000000u)
static void fwd32(int kind, const uint8_t *t, const uint8_t *b, size_t n, uint8_t *pl,
                  slotter *st) {
    TRANSFORM_LOOP(fwd32_one);
}
static void inv32(int kind, const uint8_t *pl, const uint8_t *b, size_t n, uint8_t *t,
                  slotter *st) {
    TRANSFORM_LOOP(inv32_one);
}
#undef LDB
#define LDB ld64
#define fwd64_one(i, l) FWD_ONE(i, l, uint64_t, 64, ld64, 0x8000000000000000ull)
#define inv64_one(i, l) INV_ONE(i, l, uint64_t, 64, ld64, 0x8000000000000000ull)
static void fwd64(int kind, const uint8_t *t, const uint8_t *b, size_t n, uint8_t *pl,
                  slotter *st) {
    TRANSFORM_LOOP(fwd64_one);
}
static void inv64(int kind, const uint8_t *pl, const uint8_t *b, size_t n, uint8_t *t,
                  slotter *st) {
    TRANSFORM_LOOP(inv64_one);
}
#undef LDB

static void fwd(int kind, unsigned esize, const uint8_t *t, const uint8_t *b, size_t n,
                uint8_t *pl, slotter *st) {
    if (esize == 2) fwd16(kind, t, b, n, pl, st);
    else if (esize == 4) fwd32(kind, t, b, n, pl, st);
    else fwd64(kind, t, b, n, pl, st);
}
static void inv(int kind, unsigned esize, const uint8_t *pl, const uint8_t *b, size_t n,
                uint8_t *t, slotter *st) {
    if (esize == 2) inv16(kind, pl, b, n, t, st);
    else if (esize == 4) inv32(kind, pl, b, n, t, st);
    else inv64(kind, pl, b, n, t, st);
}

/* ======================================================================= */
/* Chunk coding                                                            */
/* ======================================================================= */

struct hma__pc_ctx {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    uint8_t *planes; /* max_chunk bytes */
    slotter st;      /* sorted methods */
    size_t max_chunk;
    int level; /* level the cctx is set to; INT32_MIN when unset */
};

size_t hma__pc_bound(size_t n) {
    /* planes: 8 directory entries of 5 bytes + one zstd bound per plane;
     * ZSTD_compressBound is monotone and sub-additive enough for this. */
    return 64 + ZSTD_compressBound(n) + 8 * 64;
}

int hma__pc_ctx_new(hma__pc_ctx **out, size_t max_chunk) {
    hma__pc_ctx *c = hma__calloc(1, sizeof *c);
    if (!c) return HMA_ERR_NO_MEMORY;
    c->cctx = ZSTD_createCCtx();
    c->dctx = ZSTD_createDCtx();
    c->planes = hma__malloc(max_chunk ? max_chunk : 1);
    c->max_chunk = max_chunk;
    c->level = INT32_MIN;
    if (!c->cctx || !c->dctx || !c->planes) {
        hma__pc_ctx_free(c);
        return HMA_ERR_NO_MEMORY;
    }
    *out = c;
    return 0;
}

void hma__pc_ctx_free(hma__pc_ctx *c) {
    if (!c) return;
    ZSTD_freeCCtx(c->cctx);
    ZSTD_freeDCtx(c->dctx);
    hma__free(c->planes);
    hma__free(c);
}

static int set_level(hma__pc_ctx *c, int level) {
    if (c->level == level) return 0;
    ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_and_parameters);
    if (ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_checksumFlag, 0)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_contentSizeFlag, 1)))
        return HMA_ERR_INVALID_ARGUMENT;
    c->level = level;
    return 0;
}

/* One zstd frame of src into dst; returns its size or 0 when not smaller.
 * Byte planes are mostly entropy-coded literals: a minimum match length of
 * 7 keeps zstd from spending bits and time on short matches there (measured
 * on the toy pair: smaller and faster; see docs/performance.md). */
static size_t zframe(hma__pc_ctx *c, const uint8_t *src, size_t n, uint8_t *dst, size_t cap,
                     int plane) {
    if (ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_minMatch, plane ? 7 : 0))) return 0;
    size_t r = ZSTD_compress2(c->cctx, dst, cap, src, n);
    if (ZSTD_isError(r) || r >= n) return 0;
    return r;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static int method_ok(int method, unsigned esize, unsigned ebits, const uint8_t *base) {
    if (esize != 1 && esize != 2 && esize != 4 && esize != 8) return 0;
    switch (method) {
    case HMA__PC_STORE:
    case HMA__PC_ZSTD: return 1;
    case HMA__PC_PLANES: return esize >= 2;
    case HMA__PC_XOR:
    case HMA__PC_DIFF: return esize >= 2 && base != NULL;
    case HMA__PC_XOR_SORTED:
    case HMA__PC_DIFF_SORTED:
        return esize >= 2 && base != NULL && ebits >= 1 && ebits <= SORT_KEY_BITS &&
               ebits < esize * 8;
    default: return 0;
    }
}

/* transform kind of a plane method (see FWD_BODY) */
static int kind_of(int method) {
    return method == HMA__PC_PLANES ? 0
           : (method == HMA__PC_XOR || method == HMA__PC_XOR_SORTED) ? 1
                                                                      : 2;
}

int hma__pc_encode(hma__pc_ctx *c, int method, hma__pc_fmt fmt, const uint8_t *src,
                   const uint8_t *base, size_t n, int level, uint8_t *dst, size_t cap,
                   size_t *out_len, int *method_used) {
    unsigned esize = fmt.esize;
    if (!method_ok(method, esize, fmt.ebits, base) || n % esize || n > c->max_chunk ||
        cap < hma__pc_bound(n) || n > UINT32_MAX)
        return HMA_ERR_INVALID_ARGUMENT;
    int rc = set_level(c, level);
    if (rc) return rc;
    size_t len = 0;
    if (method == HMA__PC_ZSTD) {
        len = zframe(c, src, n, dst, cap, 0);
    } else if (method != HMA__PC_STORE) {
        size_t ne = n / esize, pos = 5u * esize;
        slotter *slots = NULL;
        if (method >= HMA__PC_XOR_SORTED) {
            slotter_init(&c->st, base, ne, esize, fmt.ebits);
            slots = &c->st;
        }
        fwd(kind_of(method), esize, src, base, ne, c->planes, slots);
        for (unsigned k = 0; k < esize; k++) {
            const uint8_t *pl = c->planes + k * ne;
            size_t z = zframe(c, pl, ne, dst + pos, cap - pos, 1);
            dst[5 * k] = z ? 1 : 0;
            if (!z) {
                memcpy(dst + pos, pl, ne);
                z = ne;
            }
            put32(dst + 5 * k + 1, (uint32_t)z);
            pos += z;
        }
        len = pos < n ? pos : 0;
    }
    if (len == 0) {
        if (n) memcpy(dst, src, n);
        *out_len = n;
        *method_used = HMA__PC_STORE;
    } else {
        *out_len = len;
        *method_used = method;
    }
    return 0;
}

static int zdecode(hma__pc_ctx *c, const uint8_t *src, size_t len, uint8_t *dst, size_t n) {
    /* The frame must declare exactly n bytes and decode to exactly n. */
    unsigned long long fc = ZSTD_getFrameContentSize(src, len);
    if (fc != n) return -1;
    size_t r = ZSTD_decompressDCtx(c->dctx, dst, n, src, len);
    if (ZSTD_isError(r) || r != n) return -1;
    return 0;
}

int hma__pc_decode(hma__pc_ctx *c, int method, hma__pc_fmt fmt, const uint8_t *src,
                   size_t src_len, const uint8_t *base, uint8_t *dst, size_t n,
                   const char **why) {
    static const char *const bad_method = "unknown coding method or method not valid here";
    unsigned esize = fmt.esize;
    *why = "";
    if (!method_ok(method, esize, fmt.ebits, base) || n % esize) {
        *why = bad_method;
        return HMA_ERR_CORRUPT;
    }
    if (method == HMA__PC_STORE) {
        if (src_len != n) {
            *why = "stored chunk size differs from its raw size";
            return HMA_ERR_CORRUPT;
        }
        if (n) memcpy(dst, src, n);
        return 0;
    }
    if (method == HMA__PC_ZSTD) {
        if (zdecode(c, src, src_len, dst, n)) {
            *why = "zstd frame does not decode to the chunk's raw size";
            return HMA_ERR_CORRUPT;
        }
        return 0;
    }
    if (n > c->max_chunk) {
        *why = "chunk larger than the pack's chunk size";
        return HMA_ERR_CORRUPT;
    }
    size_t ne = n / esize, pos = 5u * esize;
    if (src_len < pos) {
        *why = "plane directory cut short";
        return HMA_ERR_CORRUPT;
    }
    for (unsigned k = 0; k < esize; k++) {
        unsigned mode = src[5 * k];
        size_t len = le32(src + 5 * k + 1);
        if (len > src_len - pos) {
            *why = "plane extends past the chunk payload";
            return HMA_ERR_CORRUPT;
        }
        uint8_t *pl = c->planes + k * ne;
        if (mode == 0) {
            if (len != ne) {
                *why = "raw plane size differs from the element count";
                return HMA_ERR_CORRUPT;
            }
            memcpy(pl, src + pos, ne);
        } else if (mode == 1) {
            if (zdecode(c, src + pos, len, pl, ne)) {
                *why = "zstd plane does not decode to the element count";
                return HMA_ERR_CORRUPT;
            }
        } else {
            *why = "unknown plane mode";
            return HMA_ERR_CORRUPT;
        }
        pos += len;
    }
    if (pos != src_len) {
        *why = "bytes left over after the last plane";
        return HMA_ERR_CORRUPT;
    }
    slotter *slots = NULL;
    if (method >= HMA__PC_XOR_SORTED) {
        slotter_init(&c->st, base, ne, esize, fmt.ebits);
        slots = &c->st;
    }
    inv(kind_of(method), esize, c->planes, base, ne, dst, slots);
    return 0;
}
