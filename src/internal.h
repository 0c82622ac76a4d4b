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
/* A buffer of n bytes for a whole tensor, on transparent huge pages where
 * the kernel allows it (core/bigmem.c). Returns the usable pointer (NULL on
 * OOM); *base gets what to pass to hma__free() afterwards. */
void *hma__big_alloc(size_t n, void **base);
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


/* ---- tensors (io/store.c) --------------------------------------------- */
/* "[d0<sep>d1...]" of t's shape into buf (cut at cap), for messages. */
void hma__shape_str(const hma_tensor *t, const char *sep, char *buf, size_t cap);
/* ---- API conventions (core/api.c) -------------------------------------- */
/*
 * The one versioning rule of options and stats structs (hma.h, "Conventions"):
 * the first member is `size_t struct_size`, set by the struct's _init()
 * (an inline wrapper in hma.h of the exported _init_size(o, sizeof *o)).
 *
 * hma__opts_in: `dst` (size dst_size) already holds the library's defaults;
 * it takes the first min(src->struct_size, dst_size) bytes of `src`, so the
 * fields an older caller does not know keep their defaults. src NULL = all
 * defaults. HMA_ERR_INVALID_ARGUMENT (message names `fn` and `type`) when
 * struct_size is below `min_size` (the size of the struct's first version)
 * or above dst_size (a caller built against a newer libhma).
 *
 * hma__stats_out: writes the first min(dst->struct_size, src_size) bytes of
 * `src` into `dst`, keeping dst's struct_size; same checks. dst NULL is fine.
 *
 * hma__init_size: the body of every hma_X_init_size(dst, size): `defaults`
 * is the library's struct (lib_size bytes) holding the defaults; copies its
 * first n = min(size, lib_size) bytes into `dst` and sets dst's struct_size
 * to n. Never writes past n bytes. dst NULL or size < sizeof(size_t) (no
 * room for struct_size): writes nothing, returns 0; else returns n.
 */
int hma__opts_in(void *dst, size_t dst_size, const void *src, size_t min_size, const char *fn,
                 const char *type);
int hma__stats_out(void *dst, const void *src, size_t src_size, size_t min_size, const char *fn,
                   const char *type);
size_t hma__init_size(void *dst, size_t size, const void *defaults, size_t lib_size);

/*
 * The one rule for what a user callback's return means (hma.h, "Callbacks"):
 * 0 goes on; HMA_CANCEL stops with HMA_ERR_CANCELLED; any other value stops
 * with HMA_ERR_CALLBACK. Returns HMA_OK or that code, with a message naming
 * `who` (e.g. "hma_plan_merge_to: progress callback").
 */
int hma__callback_result(int ret, const char *who);

/* ---- open-input registry (registry.c) ---------------------------------- */
/* Stores register every file they keep open so that a writer can refuse to
 * replace one. Thread-safe (one mutex). */
int hma__registry_add(const char *path, unsigned long long dev, unsigned long long ino);
void hma__registry_remove(unsigned long long dev, unsigned long long ino);
/* 1 if `path` exists and is the same file (device, inode) as an open input. */
int hma__registry_contains_path(const char *path);

/* ---- writer (io/writer.c) ------------------------------------------------ */
/* 1 if `key` was set with hma_writer_set_metadata() on w (the plan's merge
 * into a caller's writer keeps the caller's keys). */
int hma__writer_has_metadata(const hma_writer *w, const char *key);
/* 1 if tensor `index` of a begun writer is written by it: always for a
 * whole output, only in its own shards for a part, never for finalize. */
int hma__writer_tensor_owned(const hma_writer *w, size_t index);
/* 1 if w writes a GGUF file (its path ends in ".gguf"). */
int hma__writer_is_gguf(const hma_writer *w);
/* As hma_writer_add_file(), with the file's bytes given in memory (copied
 * now): the recipe layer writes an edited config.json this way. */
int hma__writer_add_file_data(hma_writer *w, const char *name, const void *data, size_t len);

#endif /* HMA_INTERNAL_H */
