/*
 * gguf.h - parse and validate the header of one GGUF file (v2 or v3,
 * little-endian): key/value metadata, tensor infos, alignment and data
 * offsets. Every rule and its error code is listed in docs/format.md
 * ("Reading GGUF"). Format: ggml-org/ggml docs/gguf.md and src/gguf.cpp.
 */
#ifndef HMA_FORMATS_GGUF_H
#define HMA_FORMATS_GGUF_H

#include "internal.h"

#define HMA__GGUF_MAX_DIMS 4u /* GGML_MAX_DIMS */

typedef struct hma__gguf_tensor {
    char *name;       /* malloc'd, 1..HMA_MAX_NAME bytes, no NUL */
    int type;         /* ggml type (formats/quants.h) */
    unsigned ndim;    /* n_dims of the file, 1..4 */
    uint64_t shape[HMA__GGUF_MAX_DIMS]; /* ne reversed: shape[0] = ne[ndim-1] (outermost first) */
    uint64_t nelem;
    uint64_t nbytes;  /* bytes in the file: nelem / blck * type_size */
    uint64_t offset;  /* absolute file offset of the data */
} hma__gguf_tensor;

typedef struct hma__gguf {
    uint32_t version;     /* 2 or 3 */
    uint64_t alignment;   /* general.alignment or 32 */
    uint64_t data_start;  /* file offset of the data section */
    hma__gguf_tensor *tensors; /* in file (info) order */
    size_t n;
    char **meta; /* 2 * n_meta strings: key, rendered value (docs/format.md) */
    size_t n_meta;
    /* The typed values, for copying them into a GGUF output: per key its
     * gguf_type (0..12) and the value's bytes exactly as in the file (for an
     * array: element type, count, elements). */
    uint32_t *kv_type;
    unsigned char **kv_raw;
    uint64_t *kv_len;
} hma__gguf;

/* 1 if the 4 bytes are GGUF's magic "GGUF". */
int hma__gguf_magic(const unsigned char *b4);

/* Read and validate the header of the open file (pread; the file must stay
 * file_size bytes long). On success fills *out (free with hma__gguf_free);
 * on failure *out is empty and the error names path. */
int hma__gguf_read(int fd, const char *path, uint64_t file_size, hma__gguf *out);

void hma__gguf_free(hma__gguf *g);

#endif
