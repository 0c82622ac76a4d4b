/*
 * mk_rng.c - the counter-based generator of DARE and DELLA: one uniform
 * number per (seed, tensor name, source position, element index), so a
 * result never depends on the thread count or on the order tensors are
 * merged in, and --seed changes it (issue 12, item 6).
 *
 * The construction (docs/merging.md copies it; a NumPy reference
 * reimplements it, all arithmetic modulo 2^64):
 *
 *   G         = 0x9E3779B97F4A7C15
 *   fmix(z)   : z ^= z >> 30; z *= 0xBF58476D1CE4E5B9;
 *               z ^= z >> 27; z *= 0x94D049BB133111EB;
 *               z ^= z >> 31                       (splitmix64's finaliser)
 *   fnv(name) = 64-bit FNV-1a of the name's bytes (no terminator):
 *               h = 0xCBF29CE484222325; for each byte c: h ^= c; h *= 0x100000001B3
 *   key(seed, name, source) = fmix(fmix(seed ^ fnv(name)) + G * (source + 1))
 *   uniform(key, i) = (fmix(key + G * (i + 1)) >> 40) * 2^-24
 *
 * so uniform(key, i) is the i-th output (from 0) of splitmix64 seeded with
 * `key`, cut to its top 24 bits: a float in [0, 1), a multiple of 2^-24,
 * exact in float32. `source` is the source's position in the merge's input
 * list (the base counts), `i` the element's flat index in the tensor.
 * An element survives a draw with probability p iff uniform < (float)p.
 */
#include "mergekit/mk_sparse.h"

#define MK_GOLDEN 0x9E3779B97F4A7C15ull

uint64_t hma__mk_rng_key(uint64_t seed, const char *name, size_t source) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (const unsigned char *p = (const unsigned char *)(name ? name : ""); *p; p++) {
        h ^= *p;
        h *= 0x100000001B3ull;
    }
    return hma__mk_fmix64(hma__mk_fmix64(seed ^ h) + MK_GOLDEN * ((uint64_t)source + 1));
}

/* fmix is hma__mk_fmix64 and the body hma__mk_uniform (mk_sparse.h), which
 * the per-element loops inline. */
float hma__mk_rng_uniform(uint64_t key, uint64_t index) { return hma__mk_uniform(key, index); }
