/* hash.c - the one name table (FNV-1a, open addressing, caller-held names). */
#include "core/hash.h"
#include "internal.h"

#include <string.h>

uint64_t hma__hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

void hma__names_init(hma__names *t) { memset(t, 0, sizeof *t); }

void hma__names_free(hma__names *t) {
    hma__free(t->slot);
    memset(t, 0, sizeof *t);
}

static void put(hma__nslot *slot, size_t cap, uint64_t h, size_t idx1) {
    size_t mask = cap - 1;
    size_t i = (size_t)h & mask;
    while (slot[i].idx1) i = (i + 1) & mask;
    slot[i].hash = h;
    slot[i].idx1 = idx1;
}

int hma__names_reserve(hma__names *t, size_t n) {
    if (n <= t->cap / 2) return HMA_OK;
    size_t cap = t->cap ? t->cap : 16;
    while (cap / 2 < n) {
        if (cap > SIZE_MAX / (2 * sizeof(hma__nslot))) return HMA_ERR_NO_MEMORY;
        cap *= 2;
    }
    hma__nslot *slot = hma__calloc(cap, sizeof *slot);
    if (!slot) return HMA_ERR_NO_MEMORY;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slot[i].idx1) put(slot, cap, t->slot[i].hash, t->slot[i].idx1);
    hma__free(t->slot);
    t->slot = slot;
    t->cap = cap;
    return HMA_OK;
}

int hma__names_add(hma__names *t, const char *name, size_t len, size_t idx) {
    if (idx == HMA_NPOS) return HMA_ERR_NO_MEMORY;
    int rc = hma__names_reserve(t, t->count + 1);
    if (rc) return rc;
    put(t->slot, t->cap, hma__hash_bytes(name, len), idx + 1);
    t->count++;
    return HMA_OK;
}

size_t hma__names_find(const hma__names *t, const char *name, size_t len, hma__name_at at,
                       const void *owner) {
    if (!t->cap) return HMA_NPOS;
    uint64_t h = hma__hash_bytes(name, len);
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        const hma__nslot *s = &t->slot[i];
        if (!s->idx1) return HMA_NPOS;
        if (s->hash != h) continue;
        size_t n;
        const char *k = at(owner, s->idx1 - 1, &n);
        if (n == len && memcmp(k, name, len) == 0) return s->idx1 - 1;
    }
}
