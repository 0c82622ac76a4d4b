/* codec.c - per-chunk coding of delta packs: xxhash64, the scalar maps,
 * the Huffman-coded FLOAT and DIFF methods (any float width), zstd, and the
 * dispatch to the 16-bit methods of codec16.c (see codec.h). */
#include "internal.h"
#include "pack/bytes.h"
#include "pack/huffman.h"
#include "pack/codec.h"
#include "core/cpu.h"

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
        v[0] = xround(v[0], hma__ld64(p));
        v[1] = xround(v[1], hma__ld64(p + 8));
        v[2] = xround(v[2], hma__ld64(p + 16));
        v[3] = xround(v[3], hma__ld64(p + 24));
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
        h ^= xround(0, hma__ld64(p));
        h = rotl64(h, 27) * XP1 + XP4;
        p += 8;
        len -= 8;
    }
    if (len >= 4) {
        h ^= (uint64_t)hma__ld32(p) * XP1;
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
/* Entropy-coded float methods (FLOAT, DIFF)                               */
/* ======================================================================= */
/*
 * Every element becomes one value v of B bits (B = element bits - shift):
 *   FLOAT: v = rotl1(t >> shift); symbol = top 8 bits of v, the B-8 bits
 *          below it follow raw.
 *   DIFF:  v = zigzag(ord(t >> shift) - ord(b >> shift)); values below 16
 *          are their own symbol, a larger one is coded by its bit length
 *          and the 3 bits after its leading 1 (8 symbols per octave), the
 *          rest of its bits raw. The context (one Huffman table each) is
 *          chosen by the base element's exponent: the size of its ulp, which
 *          sets the scale of the difference.
 * `shift` = trailing zero bits common to every element (of t, and of b for
 * DIFF): BF16 weights stored as F32 lose 16 raw bits per element.
 * Symbol s stands for the value (m << nx) | extra, with nx raw extra bits.
 * A decode-table entry holds (code length, code length + nx, m), so one
 * lookup decodes an element. Since pack version 3, 16-bit floats use the
 * faster DIFF16 and FLOAT16 (codec16.c); these two serve F32, F64 and
 * version-2 packs.
 */
#define HUF_MAXLEN HMA__HUF_MAXLEN
#define HUF_TSIZE HMA__HUF_TSIZE
#define HUF_SOLE HMA__HUF_SOLE /* code-length nibble: the context's only symbol, 0 bits */
#define huf_lengths hma__huf_lengths
#define huf_codes hma__huf_codes
#ifndef MAX_CTX
#define MAX_CTX 16u
#endif
#define MAX_SYM 496u /* DIFF with B = 64: 16 + 60 * 8 */
#define NSTREAM HMA__HUF_NSTREAM

#define HOT static inline __attribute__((always_inline))

struct hma__pc_ctx {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    size_t max_chunk;
    int level;                          /* level the cctx is set to; INT32_MIN when unset */
    uint32_t hist[MAX_CTX * MAX_SYM];   /* encoder: symbol counts per context */
    uint32_t ecode[MAX_CTX * MAX_SYM];  /* encoder: code | length << 16 | nx << 24 */
    uint8_t len[MAX_CTX * MAX_SYM];     /* code lengths (both sides) */
    uint32_t dtab[MAX_CTX * HUF_TSIZE]; /* decoder tables */
    int isa;                            /* 16-bit methods: 0 portable, 1 BMI2, 2 AVX2 + BMI2 */
    hma__pc16_scratch pc16;             /* their buffers */
};

/* Parameters of one entropy-coded chunk. */
typedef struct ent_plan {
    unsigned esize, bits, shift, B, ebits, diff, nsym, nctx;
    uint64_t mask, sign; /* of B bits */
    uint8_t map[256];    /* context key -> context */
    uint8_t keys[MAX_CTX];
} ent_plan;

HOT uint64_t ldE(const uint8_t *p, unsigned E) {
    return E == 2 ? hma__ld16(p) : E == 4 ? hma__ld32(p) : hma__ld64(p);
}
HOT void stE(uint8_t *p, uint64_t v, unsigned E) {
    if (E == 2) hma__st16(p, (uint16_t)v);
    else if (E == 4) hma__st32(p, (uint32_t)v);
    else hma__st64(p, v);
}

/* Context key of a base element: its exponent field, top 8 bits of it. */
HOT unsigned ctx_key(uint64_t b, unsigned bits, unsigned ebits) {
    if (!ebits) return 0;
    unsigned k = (unsigned)(b >> (bits - 1 - ebits)) & ((1u << ebits) - 1);
    return ebits > 8 ? k >> (ebits - 8) : k;
}

/* The scalars of a plan that the per-element code uses, passed by value so
 * that they stay in registers (a byte store may alias any memory). */
typedef struct ent_k {
    unsigned B, shift, ebits, bits;
    uint64_t mask, sign;
} ent_k;
static ent_k plan_k(const ent_plan *p) {
    return (ent_k){p->B, p->shift, p->ebits, p->bits, p->mask, p->sign};
}

/* Branch-free B-bit maps (same as hma__pc_ord & co.). */
HOT uint64_t b_ord(uint64_t u, ent_k k) { return u ^ (((0 - (u >> (k.B - 1))) & k.mask) | k.sign); }
HOT uint64_t b_unord(uint64_t v, ent_k k) {
    return v ^ ((((v >> (k.B - 1)) - 1) & k.mask) | k.sign);
}
HOT uint64_t b_zz(uint64_t d, ent_k k) { return ((d << 1) ^ (0 - (d >> (k.B - 1)))) & k.mask; }
HOT uint64_t b_unzz(uint64_t z, ent_k k) { return (z >> 1) ^ ((0 - (z & 1)) & k.mask); }

/* Forward map of element t (base b) to its B-bit value, and back. */
HOT uint64_t fwd_val(uint64_t t, uint64_t b, ent_k k, const int diff) {
    uint64_t x = t >> k.shift;
    if (!diff) return ((x << 1) | (x >> (k.B - 1))) & k.mask;
    return b_zz((b_ord(x, k) - b_ord(b >> k.shift, k)) & k.mask, k);
}
HOT uint64_t inv_val(uint64_t v, uint64_t b, ent_k k, const int diff) {
    uint64_t x;
    if (!diff) x = (v >> 1) | ((v & 1) << (k.B - 1));
    else x = b_unord((b_ord(b >> k.shift, k) + b_unzz(v, k)) & k.mask, k);
    return x << k.shift;
}

/* Symbol of a value. */
HOT unsigned val_sym(uint64_t v, ent_k k, const int diff) {
    if (!diff) return (unsigned)(v >> (k.B - 8));
    if (v < 16) return (unsigned)v;
    unsigned nb = 64u - (unsigned)__builtin_clzll(v);
    return 16 + (nb - 5) * 8 + (unsigned)((v >> (nb - 4)) & 7);
}
/* Inverse: the value of symbol s is (m << nx) | extra. */
static void sym_parts(unsigned s, const ent_plan *p, unsigned *m, unsigned *nx) {
    if (!p->diff) {
        *m = s;
        *nx = p->B - 8;
    } else if (s < 16) {
        *m = s;
        *nx = 0;
    } else {
        *m = 8 | ((s - 16) & 7);
        *nx = (s - 16) / 8 + 1;
    }
}

static void plan_init(ent_plan *p, int diff, hma__pc_fmt fmt, unsigned shift) {
    memset(p, 0, sizeof *p);
    p->esize = fmt.esize;
    p->bits = 8 * fmt.esize;
    p->shift = shift;
    p->B = p->bits - shift;
    p->ebits = diff ? fmt.ebits : 0;
    p->diff = diff ? 1u : 0u;
    p->nsym = diff ? 16 + (p->B - 4) * 8 : 256;
    p->mask = p->B >= 64 ? ~0ull : (1ull << p->B) - 1;
    p->sign = 1ull << (p->B - 1);
    p->nctx = 1;
}

/* ---- encoder --------------------------------------------------------------- */

typedef struct bitw {
    uint8_t *p;
    uint64_t acc;
    unsigned n; /* bits in acc, < 8 between calls */
} bitw;

/* Append k <= 56 bits (v < 2^k). Writes 8 bytes at p: callers leave slack. */
HOT void bw_put(bitw *w, uint64_t v, unsigned k) {
    w->acc |= v << w->n;
    w->n += k;
    hma__st64(w->p, w->acc);
    w->p += w->n >> 3;
    w->acc >>= w->n & ~7u; /* n <= 63 */
    w->n &= 7;
}

/* Choose the contexts of a DIFF chunk from the keys of its base elements:
 * the most common keys with enough elements to pay for a table get their
 * own, the rest share the last one. No context is left empty. */
static void plan_contexts(ent_plan *p, const uint8_t *b, size_t ne) {
    uint32_t kc[4][256];
    memset(kc, 0, sizeof kc);
    const unsigned E = p->esize;
    size_t i = 0;
    /* four counters per key: runs of equal keys would serialise on one */
    for (; i + 4 <= ne; i += 4)
        for (unsigned j = 0; j < 4; j++) kc[j][ctx_key(ldE(b + (i + j) * E, E), p->bits, p->ebits)]++;
    for (; i < ne; i++) kc[0][ctx_key(ldE(b + i * E, E), p->bits, p->ebits)]++;
    for (unsigned k = 0; k < 256; k++) kc[0][k] += kc[1][k] + kc[2][k] + kc[3][k];
    uint32_t minc = (uint32_t)(ne / 64 > 2048 ? ne / 64 : 2048);
    unsigned nz = 0, nsel = 0;
    for (unsigned k = 0; k < 256; k++) nz += kc[0][k] != 0;
    while (nsel < MAX_CTX) {
        unsigned best = 256;
        for (unsigned k = 0; k < 256; k++)
            if (kc[0][k] >= minc && (best == 256 || kc[0][k] > kc[0][best])) best = k;
        if (best == 256) break;
        p->keys[nsel++] = (uint8_t)best;
        kc[0][best] = 0;
    }
    /* every key chosen: the last one is the shared context itself */
    if (nsel == nz && nsel > 0) {
        p->nctx = nsel;
    } else {
        if (nsel == MAX_CTX) nsel--;
        p->nctx = nsel + 1;
    }
    memset(p->map, (int)(p->nctx - 1), sizeof p->map);
    for (unsigned c = 0; c + 1 < p->nctx; c++) p->map[p->keys[c]] = (uint8_t)c;
}


/* From the histograms: code lengths and codes of every context, and the
 * chunk header. Returns the header size, or 0 when the payload would not
 * be smaller than n raw bytes. */
static size_t ent_header(hma__pc_ctx *c, const ent_plan *P, size_t n, uint8_t *dst) {
    const unsigned nsym = P->nsym, nctx = P->nctx;
    size_t head = 6 + (nctx - 1) + 4 * NSTREAM, nbits = 0;
    unsigned first[MAX_CTX], count[MAX_CTX];
    for (unsigned cx = 0; cx < nctx; cx++) {
        const uint32_t *h = c->hist + cx * nsym;
        uint8_t *l = c->len + cx * nsym;
        uint16_t code[MAX_SYM];
        huf_lengths(h, nsym, l);
        huf_codes(l, nsym, code);
        unsigned f = nsym, last = 0;
        for (unsigned s = 0; s < nsym; s++) {
            unsigned m, nx, ln = l[s] == HUF_SOLE ? 0 : l[s];
            sym_parts(s, P, &m, &nx);
            c->ecode[cx * nsym + s] = code[s] | ln << 16 | nx << 24;
            if (!l[s]) continue;
            if (f == nsym) f = s;
            last = s;
            nbits += (size_t)h[s] * (ln + nx);
        }
        first[cx] = f == nsym ? 0 : f;
        count[cx] = f == nsym ? 0 : last - f + 1;
        head += 4 + (count[cx] + 1) / 2;
    }
    if (head + nbits / 8 + NSTREAM >= n) return 0;
    uint8_t *o = dst;
    *o++ = (uint8_t)P->shift;
    *o++ = (uint8_t)nctx;
    hma__st32(o, (uint32_t)(n / P->esize));
    o += 4;
    for (unsigned cx = 0; cx + 1 < nctx; cx++) *o++ = P->keys[cx];
    for (unsigned cx = 0; cx < nctx; cx++) {
        const uint8_t *l = c->len + cx * nsym + first[cx];
        o[0] = (uint8_t)first[cx];
        o[1] = (uint8_t)(first[cx] >> 8);
        o[2] = (uint8_t)count[cx];
        o[3] = (uint8_t)(count[cx] >> 8);
        o += 4;
        for (unsigned k = 0; k < count[cx]; k += 2)
            *o++ = (uint8_t)(l[k] | (k + 1 < count[cx] ? l[k + 1] << 4 : 0));
    }
    return (size_t)(o - dst) + 4 * NSTREAM;
}

/* Generic path: any width and shift. */
HOT size_t enc_gen(hma__pc_ctx *c, const ent_plan *P, const uint8_t *t, const uint8_t *b, size_t n,
                   uint8_t *dst, const unsigned E, const int diff) {
    const size_t ne = n / E;
    const unsigned bits = 8 * E, nsym = P->nsym;
    const ent_k K = plan_k(P);
    uint8_t map[256];
    memcpy(map, P->map, sizeof map);
    uint32_t *hist = c->hist;
    memset(hist, 0, sizeof(uint32_t) * nsym * P->nctx);
    for (size_t i = 0; i < ne; i++) {
        uint64_t tv = ldE(t + i * E, E), bv = diff ? ldE(b + i * E, E) : 0;
        unsigned sy = val_sym(fwd_val(tv, bv, K, diff), K, diff);
        hist[(diff ? map[ctx_key(bv, bits, K.ebits)] : 0) * nsym + sy]++;
    }
    size_t head = ent_header(c, P, n, dst);
    if (!head) return 0;
    uint8_t *o = dst + head;
    const uint32_t *ecode = c->ecode;
    for (unsigned s = 0; s < NSTREAM; s++) {
        size_t lo, hi;
        hma__huf_quarter(ne, s, &lo, &hi);
        bitw w = {o, 0, 0};
        for (size_t i = lo; i < hi; i++) {
            uint64_t tv = ldE(t + i * E, E), bv = diff ? ldE(b + i * E, E) : 0;
            uint64_t v = fwd_val(tv, bv, K, diff);
            unsigned sy = val_sym(v, K, diff);
            uint32_t ec = ecode[(diff ? map[ctx_key(bv, bits, K.ebits)] : 0) * nsym + sy];
            unsigned l = (ec >> 16) & 0xFF, nx = ec >> 24;
            uint64_t code = ec & 0xFFFF, extra = v & ((1ull << nx) - 1); /* nx <= 60 */
            if (l + nx <= 56) {
                bw_put(&w, code | extra << l, l + nx);
            } else {
                bw_put(&w, code, l);
                bw_put(&w, extra & 0xFFFFFFFFu, 32);
                bw_put(&w, extra >> 32, nx - 32);
            }
        }
        size_t slen = (size_t)(w.p - o) + (w.n ? 1 : 0);
        hma__st32(dst + head - 4 * NSTREAM + 4 * s, (uint32_t)slen);
        o += slen;
    }
    return (size_t)(o - dst);
}

/* Trailing zero bits common to every element (of the base too for DIFF),
 * leaving at least 9 bits. */
static unsigned common_shift(const uint8_t *t, const uint8_t *b, size_t ne, unsigned E) {
    uint64_t orv = 0;
    /* in blocks, stopping once bit 0 is seen: most chunks have shift 0 */
    for (size_t i0 = 0; i0 < ne && !(orv & 1); i0 += 256) {
        size_t i1 = ne - i0 < 256 ? ne : i0 + 256;
        if (E == 2)
            for (size_t i = i0; i < i1; i++) orv |= (uint64_t)(hma__ld16(t + 2 * i) | (b ? hma__ld16(b + 2 * i) : 0));
        else if (E == 4)
            for (size_t i = i0; i < i1; i++) orv |= (uint64_t)(hma__ld32(t + 4 * i) | (b ? hma__ld32(b + 4 * i) : 0));
        else
            for (size_t i = i0; i < i1; i++) orv |= hma__ld64(t + 8 * i) | (b ? hma__ld64(b + 8 * i) : 0);
    }
    unsigned shift = orv ? (unsigned)__builtin_ctzll(orv) : 64;
    return shift > 8 * E - 9 ? 8 * E - 9 : shift;
}

static size_t ent_encode(hma__pc_ctx *c, int diff, hma__pc_fmt fmt, const uint8_t *t,
                         const uint8_t *b, size_t n, uint8_t *dst) {
    const unsigned E = fmt.esize;
    const size_t ne = n / E;
    ent_plan P;
    plan_init(&P, diff, fmt, common_shift(t, diff ? b : NULL, ne, E));
    if (diff && P.ebits) plan_contexts(&P, b, ne);
    switch (E * 2 + (diff != 0)) {
    case 4: return enc_gen(c, &P, t, b, n, dst, 2, 0);
    case 5: return enc_gen(c, &P, t, b, n, dst, 2, 1);
    case 8: return enc_gen(c, &P, t, b, n, dst, 4, 0);
    case 9: return enc_gen(c, &P, t, b, n, dst, 4, 1);
    case 16: return enc_gen(c, &P, t, b, n, dst, 8, 0);
    default: return enc_gen(c, &P, t, b, n, dst, 8, 1);
    }
}

/* ---- decoder --------------------------------------------------------------- */
/*
 * A stream is read at a bit position: the 8 bytes from pos / 8 hold at least
 * 57 bits from pos. `fast` loads need pos / 8 + 8 <= payload length (the
 * caller checks how many elements keep it so); the safe load reads zeros
 * past the end of the payload. A stream that reads past its own end is
 * caught afterwards (its bit count must match its length).
 */
HOT uint64_t win_fast(const uint8_t *src, size_t pos) { return hma__ld64(src + (pos >> 3)) >> (pos & 7); }
static inline uint64_t win_safe(const uint8_t *src, size_t len, size_t pos) {
    uint64_t w = 0;
    size_t at = pos >> 3;
    for (unsigned k = 0; k < 8; k++)
        if (at + k < len) w |= (uint64_t)src[at + k] << (8 * k);
    return w >> (pos & 7);
}

/* Table entry: code length | (length + nx) << 8 | m << 16. */
static int dtab_build(uint32_t *tab, const uint8_t *len, unsigned nsym, const ent_plan *p) {
    unsigned cnt[HUF_MAXLEN + 1] = {0}, nz = 0, sole = nsym;
    for (unsigned s = 0; s < nsym; s++) {
        if (!len[s]) continue;
        nz++;
        if (len[s] == HUF_SOLE) sole = s;
        else if (len[s] > HUF_MAXLEN) return -1;
        else cnt[len[s]]++;
    }
    unsigned m, nx;
    if (sole < nsym) {
        if (nz != 1) return -1;
        sym_parts(sole, p, &m, &nx);
        uint32_t e = nx << 8 | m << 16;
        for (unsigned k = 0; k < HUF_TSIZE; k++) tab[k] = e;
        return 0;
    }
    /* the encoder writes complete codes only: every table entry is set */
    uint32_t kraft = 0;
    for (unsigned l = 1; l <= HUF_MAXLEN; l++) kraft += cnt[l] << (HUF_MAXLEN - l);
    if (kraft != HUF_TSIZE) return -1;
    uint16_t code[MAX_SYM];
    huf_codes(len, nsym, code);
    for (unsigned s = 0; s < nsym; s++) {
        unsigned l = len[s];
        if (!l) continue;
        sym_parts(s, p, &m, &nx);
        uint32_t e = l | (l + nx) << 8 | m << 16;
        for (unsigned k = code[s]; k < HUF_TSIZE; k += 1u << l) tab[k] = e;
    }
    return 0;
}

/* Generic path: one element of one stream into dst[i]. */
HOT void decg_one(const uint8_t *src, size_t len, size_t *pos, const uint32_t *tabs, const uint8_t *map,
                  ent_k k, const uint8_t *b, uint8_t *dst, size_t i, const unsigned E, const int diff,
                  const int fast) {
    uint64_t bv = diff ? ldE(b + i * E, E) : 0;
    const uint32_t *tab = diff ? tabs + (size_t)map[ctx_key(bv, 8 * E, k.ebits)] * HUF_TSIZE : tabs;
    uint64_t w = fast ? win_fast(src, *pos) : win_safe(src, len, *pos);
    uint32_t e = tab[w & (HUF_TSIZE - 1)];
    unsigned l = e & 0xFF, nx = ((e >> 8) & 0xFF) - l;
    uint64_t v = (uint64_t)(e >> 16) << nx;
    *pos += l;
    if (nx > 56) { /* more than one window holds */
        w = fast ? win_fast(src, *pos) : win_safe(src, len, *pos);
        v |= w & 0xFFFFFFFFu;
        *pos += 32;
        nx -= 32;
        w = fast ? win_fast(src, *pos) : win_safe(src, len, *pos);
        v |= (w & ((1ull << nx) - 1)) << 32;
    } else if (nx) {
        w = fast ? win_fast(src, *pos) : win_safe(src, len, *pos);
        v |= w & ((1ull << nx) - 1);
    }
    *pos += nx;
    stE(dst + i * E, inv_val(v, bv, k, diff), E);
}

HOT void dec_gen(const uint32_t *tabs, const ent_plan *P, const uint8_t *src, size_t len,
                 const size_t start[NSTREAM], uint64_t used[NSTREAM], const uint8_t *b, uint8_t *dst,
                 size_t ne, const unsigned E, const int diff) {
    const ent_k K = plan_k(P);
    uint8_t map[256];
    memcpy(map, P->map, sizeof map);
    const uint64_t maxbits = HUF_MAXLEN + (diff ? K.B - 4 : K.B - 8);
    size_t p0 = 8 * start[0], p1 = 8 * start[1], p2 = 8 * start[2], p3 = 8 * start[3];
    const size_t q = ne / NSTREAM;
    size_t k = 0;
    while (k < q && len >= 16) {
        const size_t lim = 8 * (len - 8);
        size_t pmax = p0 > p1 ? p0 : p1, pm2 = p2 > p3 ? p2 : p3;
        if (pm2 > pmax) pmax = pm2;
        uint64_t safe = pmax < lim ? (lim - pmax) / maxbits : 0;
        if (safe > q - k) safe = q - k;
        if (safe < 4) break;
        for (size_t end = k + safe; k < end; k++) {
            decg_one(src, len, &p0, tabs, map, K, b, dst, k, E, diff, 1);
            decg_one(src, len, &p1, tabs, map, K, b, dst, q + k, E, diff, 1);
            decg_one(src, len, &p2, tabs, map, K, b, dst, 2 * q + k, E, diff, 1);
            decg_one(src, len, &p3, tabs, map, K, b, dst, 3 * q + k, E, diff, 1);
        }
    }
    for (; k < q; k++) {
        decg_one(src, len, &p0, tabs, map, K, b, dst, k, E, diff, 0);
        decg_one(src, len, &p1, tabs, map, K, b, dst, q + k, E, diff, 0);
        decg_one(src, len, &p2, tabs, map, K, b, dst, 2 * q + k, E, diff, 0);
        decg_one(src, len, &p3, tabs, map, K, b, dst, 3 * q + k, E, diff, 0);
    }
    for (size_t i = NSTREAM * q; i < ne; i++) decg_one(src, len, &p3, tabs, map, K, b, dst, i, E, diff, 0);
    used[0] = p0 - 8 * start[0];
    used[1] = p1 - 8 * start[1];
    used[2] = p2 - 8 * start[2];
    used[3] = p3 - 8 * start[3];
}

static int ent_decode(hma__pc_ctx *c, int diff, hma__pc_fmt fmt, const uint8_t *src, size_t len,
                      const uint8_t *b, uint8_t *dst, size_t n, const char **why) {
    const unsigned E = fmt.esize, bits = 8 * E;
    const size_t ne = n / E;
    size_t pos = 6;
    if (len < 6) {
        *why = "entropy-coded chunk header cut short";
        return HMA_ERR_CORRUPT;
    }
    unsigned shift = src[0], nctx = src[1];
    if (hma__ld32(src + 2) != ne) {
        *why = "payload codes another element count";
        return HMA_ERR_CORRUPT;
    }
    if (shift > bits - 9) {
        *why = "shift larger than the element allows";
        return HMA_ERR_CORRUPT;
    }
    if (nctx < 1 || nctx > MAX_CTX || (nctx > 1 && (!diff || !fmt.ebits))) {
        *why = "context count out of range";
        return HMA_ERR_CORRUPT;
    }
    ent_plan P;
    plan_init(&P, diff, fmt, shift);
    P.nctx = nctx;
    if (len - pos < nctx - 1) {
        *why = "context keys cut short";
        return HMA_ERR_CORRUPT;
    }
    memset(P.map, (int)(nctx - 1), sizeof P.map);
    for (unsigned cx = 0; cx + 1 < nctx; cx++) {
        unsigned key = src[pos++];
        if (P.map[key] != nctx - 1 || (fmt.ebits <= 8 && key >> fmt.ebits)) {
            *why = "context key repeated or out of range";
            return HMA_ERR_CORRUPT;
        }
        P.map[key] = (uint8_t)cx;
    }
    const unsigned nsym = P.nsym;
    for (unsigned cx = 0; cx < nctx; cx++) {
        if (len - pos < 4) {
            *why = "code length table cut short";
            return HMA_ERR_CORRUPT;
        }
        unsigned first = src[pos] | src[pos + 1] << 8, count = src[pos + 2] | src[pos + 3] << 8;
        pos += 4;
        if (first > nsym || count > nsym - first || len - pos < (count + 1) / 2) {
            *why = "code length table out of range or cut short";
            return HMA_ERR_CORRUPT;
        }
        uint8_t *l = c->len + cx * nsym;
        memset(l, 0, nsym);
        for (unsigned k = 0; k < count; k++) l[first + k] = (uint8_t)(src[pos + k / 2] >> (4 * (k & 1)) & 15);
        if ((count & 1) && src[pos + count / 2] >> 4) {
            *why = "code length padding not zero";
            return HMA_ERR_CORRUPT;
        }
        pos += (count + 1) / 2;
        if (dtab_build(c->dtab + cx * HUF_TSIZE, l, nsym, &P)) {
            *why = "code lengths do not form one complete Huffman code";
            return HMA_ERR_CORRUPT;
        }
    }
    size_t start[NSTREAM], slen[NSTREAM], at = hma__huf_streams(src, len, pos, start, slen, why);
    if (!at) return HMA_ERR_CORRUPT;
    if (at != len) {
        *why = "bytes left over after the last bit stream";
        return HMA_ERR_CORRUPT;
    }
    uint64_t used[NSTREAM];
    switch (E * 2 + (diff != 0)) {
    case 4: dec_gen(c->dtab, &P, src, len, start, used, b, dst, ne, 2, 0); break;
    case 5: dec_gen(c->dtab, &P, src, len, start, used, b, dst, ne, 2, 1); break;
    case 8: dec_gen(c->dtab, &P, src, len, start, used, b, dst, ne, 4, 0); break;
    case 9: dec_gen(c->dtab, &P, src, len, start, used, b, dst, ne, 4, 1); break;
    case 16: dec_gen(c->dtab, &P, src, len, start, used, b, dst, ne, 8, 0); break;
    default: dec_gen(c->dtab, &P, src, len, start, used, b, dst, ne, 8, 1); break;
    }
    for (unsigned s = 0; s < NSTREAM; s++)
        if ((used[s] + 7) / 8 != slen[s]) {
            *why = "bit stream length differs from the bits its elements use";
            return HMA_ERR_CORRUPT;
        }
    return 0;
}

/* ======================================================================= */
/* Chunk coding                                                            */
/* ======================================================================= */

size_t hma__pc_bound(size_t n) {
    /* zstd's bound covers the raw size; the rest is slack for the bit
     * writer's 8-byte stores. */
    return 64 + ZSTD_compressBound(n) + 8 * 64;
}

int hma__pc_ctx_new(hma__pc_ctx **out, size_t max_chunk) {
    hma__pc_ctx *c = hma__calloc(1, sizeof *c);
    if (!c) return HMA_ERR_NO_MEMORY;
    c->cctx = ZSTD_createCCtx();
    c->dctx = ZSTD_createDCtx();
    c->max_chunk = max_chunk;
    c->level = INT32_MIN;
    /* The one CPU dispatch: HMA_SIMD caps the codecs as it caps the kernels. */
    c->isa = hma__cpu_codec_isa(hma__cpu_level());
    /* 16-bit methods, per element: symbol and raw-bit count (1 byte each),
     * z (2 bytes); per group of 8, one u32 position */
    size_t ne = max_chunk / 2 + 1;
    c->pc16.sym = hma__malloc(ne);
    c->pc16.nr = hma__malloc(ne);
    c->pc16.z = hma__malloc(2 * ne);
    c->pc16.key = hma__malloc(2 * ne);
    c->pc16.gp = hma__malloc(sizeof(uint32_t) * (ne / 8 + 8));
    if (!c->cctx || !c->dctx || !c->pc16.sym || !c->pc16.nr || !c->pc16.z || !c->pc16.key || !c->pc16.gp) {
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
    hma__free(c->pc16.sym);
    hma__free(c->pc16.nr);
    hma__free(c->pc16.z);
    hma__free(c->pc16.key);
    hma__free(c->pc16.gp);
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

static int method_ok(int method, unsigned esize, const uint8_t *base) {
    if (esize != 1 && esize != 2 && esize != 4 && esize != 8) return 0;
    switch (method) {
    case HMA__PC_STORE:
    case HMA__PC_ZSTD: return 1;
    case HMA__PC_FLOAT: return esize >= 2;
    case HMA__PC_DIFF: return esize >= 2 && base != NULL;
    case HMA__PC_FLOAT16: return esize == 2;
    case HMA__PC_DIFF16: return esize == 2 && base != NULL;
    default: return 0;
    }
}

int hma__pc_encode(hma__pc_ctx *c, int method, hma__pc_fmt fmt, const uint8_t *src,
                   const uint8_t *base, size_t n, int level, uint8_t *dst, size_t cap,
                   size_t *out_len, int *method_used) {
    unsigned esize = fmt.esize;
    if (!method_ok(method, esize, base) || n % esize || n > c->max_chunk ||
        cap < hma__pc_bound(n) || n > UINT32_MAX ||
        (method == HMA__PC_DIFF && fmt.ebits > 11) || (method == HMA__PC_DIFF16 && fmt.ebits > 8))
        return HMA_ERR_INVALID_ARGUMENT;
    size_t len = 0;
    if (method == HMA__PC_ZSTD) {
        int rc = set_level(c, level);
        if (rc) return rc;
        size_t r = ZSTD_compress2(c->cctx, dst, cap, src, n);
        len = ZSTD_isError(r) || r >= n ? 0 : r;
    } else if ((method == HMA__PC_FLOAT16 || method == HMA__PC_DIFF16) && n > 0) {
        len = hma__pc16_encode(method == HMA__PC_DIFF16, fmt.ebits, src, base, n, dst, &c->pc16, c->isa);
    } else if (method != HMA__PC_STORE && n > 0) {
        len = ent_encode(c, method == HMA__PC_DIFF, fmt, src, base, n, dst);
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

int hma__pc_decode(hma__pc_ctx *c, int method, hma__pc_fmt fmt, const uint8_t *src,
                   size_t src_len, const uint8_t *base, uint8_t *dst, size_t n,
                   const char **why) {
    unsigned esize = fmt.esize;
    *why = "";
    if (!method_ok(method, esize, base) || n % esize || (method == HMA__PC_DIFF && fmt.ebits > 11) ||
        (method == HMA__PC_DIFF16 && fmt.ebits > 8)) {
        *why = "unknown coding method or method not valid here";
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
        /* The frame must declare exactly n bytes and decode to exactly n. */
        unsigned long long fc = ZSTD_getFrameContentSize(src, src_len);
        size_t r = fc == n ? ZSTD_decompressDCtx(c->dctx, dst, n, src, src_len) : 0;
        if (fc != n || ZSTD_isError(r) || r != n) {
            *why = "zstd frame does not decode to the chunk's raw size";
            return HMA_ERR_CORRUPT;
        }
        return 0;
    }
    if (n == 0) {
        *why = "empty chunk with an entropy-coded payload";
        return HMA_ERR_CORRUPT;
    }
    if (method == HMA__PC_FLOAT16 || method == HMA__PC_DIFF16)
        return hma__pc16_decode(method == HMA__PC_DIFF16, fmt.ebits, src, src_len, base, dst, n, &c->pc16, c->isa,
                                why);
    return ent_decode(c, method == HMA__PC_DIFF, fmt, src, src_len, base, dst, n, why);
}

void hma__pc_ctx_set_isa(hma__pc_ctx *c, int isa) {
    if (isa < c->isa) c->isa = isa;
}
