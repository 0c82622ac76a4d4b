/*
 * hash.h - the one name table: FNV-1a hashes of byte strings, open
 * addressing, mapping a name to the caller's index. The table holds no
 * names: a lookup asks the caller for the name at an index to compare.
 */
#ifndef HMA_CORE_HASH_H
#define HMA_CORE_HASH_H

#include "hma.h" /* HMA_NPOS: "not found" */

#include <stddef.h>
#include <stdint.h>


typedef struct hma__nslot {
    uint64_t hash;
    size_t idx1; /* caller's index + 1; 0 = empty */
} hma__nslot;

/* Zero-initialise (or hma__names_init()) before use. */
typedef struct hma__names {
    hma__nslot *slot;
    size_t cap; /* power of two, or 0 */
    size_t count;
} hma__names;

/* The name stored at `idx` by the owner of the table, and its length. */
typedef const char *(*hma__name_at)(const void *owner, size_t idx, size_t *len);

uint64_t hma__hash_bytes(const char *s, size_t n);

void hma__names_init(hma__names *t);
void hma__names_free(hma__names *t);

/* Room for `n` entries without growing (kept at most half full).
 * HMA_OK or HMA_ERR_NO_MEMORY (no message set). */
int hma__names_reserve(hma__names *t, size_t n);

/* Add `idx` under `name` (the caller has checked it is absent). Grows as
 * needed. HMA_OK or HMA_ERR_NO_MEMORY (no message set). */
int hma__names_add(hma__names *t, const char *name, size_t len, size_t idx);

/* The index stored under `name`, or HMA_NPOS. Thread-safe (read-only). */
size_t hma__names_find(const hma__names *t, const char *name, size_t len, hma__name_at at,
                       const void *owner);

#endif
