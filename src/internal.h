/*
 * internal.h - types and helpers shared by libhma's modules. Nothing here is
 * exported: every symbol is hidden by -fvisibility=hidden and the version
 * script, and this header never reaches include/.
 */
#ifndef HMA_INTERNAL_H
#define HMA_INTERNAL_H

#ifndef HMA_BUILDING_LIBRARY
#define HMA_BUILDING_LIBRARY 1
#endif
#include "hma.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__GNUC__)
#define HMA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define HMA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define HMA_PRINTF(a, b)
#define HMA_UNLIKELY(x) (x)
#endif

/* ---- errors (error.c) ------------------------------------------------- */

/*
 * Record `code` and a printf-style detail message as the calling thread's
 * last error and return `code`, so that failures read `return hma__fail(...)`.
 * Messages should name the file, then the tensor or byte offset, then what
 * was expected: "PATH: tensor 'NAME': WHAT (expected ...)".
 */
int hma__fail(int code, const char *fmt, ...) HMA_PRINTF(2, 3);
int hma__failv(int code, const char *fmt, va_list ap);
/* Prefix the current thread message with "prefix: " and return code (keeps the code). */
int hma__fail_prefix(int code, const char *fmt, ...) HMA_PRINTF(2, 3);

/* ---- allocation ------------------------------------------------------- */
/* All library allocations go through these so that tests can inject
 * failures with a malloc wrapper; they are plain libc calls. */
#define hma__malloc(n) malloc(n)
#define hma__calloc(n, s) calloc((n), (s))
#define hma__realloc(p, n) realloc((p), (n))
#define hma__free(p) free(p)
char *hma__strdup(const char *s);               /* NULL on OOM */
char *hma__strndup(const char *s, size_t n);    /* NULL on OOM */

/* ---- checked arithmetic ----------------------------------------------- */
static inline int hma__add_overflows(uint64_t a, uint64_t b, uint64_t *r) {
    return __builtin_add_overflow(a, b, r);
}
static inline int hma__mul_overflows(uint64_t a, uint64_t b, uint64_t *r) {
    return __builtin_mul_overflow(a, b, r);
}

/* ---- dtypes (dtype.c) ------------------------------------------------- */
/* Bytes taken by n elements of dtype. Returns 0 and sets *nbytes; 1 on
 * overflow; 2 when sub-byte elements do not fill whole bytes. */
int hma__dtype_nbytes(hma_dtype dt, uint64_t nelem, uint64_t *nbytes);

/* ---- threads (threads.c) ---------------------------------------------- */
/* Worker threads to use when the caller asked for 0: the online CPUs, at
 * least 1 and at most `cap` (each module's fixed thread table size). */
unsigned hma__default_threads(unsigned cap);

/* ---- open-input registry (registry.c) ---------------------------------- */
/* Stores register every file they keep open so that a writer can refuse to
 * replace one. Thread-safe (one mutex). */
int hma__registry_add(const char *path, unsigned long long dev, unsigned long long ino);
void hma__registry_remove(unsigned long long dev, unsigned long long ino);
/* 1 if `path` exists and is the same file (device, inode) as an open input. */
int hma__registry_contains_path(const char *path);

#endif /* HMA_INTERNAL_H */
