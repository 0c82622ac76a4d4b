/*
 * safetensors.h - parse and validate the header of one safetensors file.
 * Every rule and its error code is listed in docs/format.md ("Reading
 * safetensors"). Knows nothing of mmap, shards or stores: it is given bytes
 * and the file size, and either returns a fully checked table of tensors
 * or an error naming the file and the tensor / header byte at fault.
 */
#ifndef HMA_SAFETENSORS_H
#define HMA_SAFETENSORS_H

#include "internal.h"

typedef struct hma__st_tensor {
    char *name; /* malloc'd, NUL-terminated, non-empty, no interior NUL */
    hma_dtype dtype;
    unsigned ndim;
    uint64_t shape[HMA_MAX_DIMS];
    uint64_t nelem, nbytes;
    uint64_t begin, end; /* data_offsets, relative to the data section */
} hma__st_tensor;

typedef struct hma__st_header {
    uint64_t header_len; /* N: bytes of JSON (including padding) */
    uint64_t data_start; /* 8 + N: file offset of the data section */
    hma__st_tensor *tensors; /* sorted by data offset (ties: header order) */
    size_t n;
    char **meta; /* 2 * n_meta strings (key, value, ...) in file order */
    size_t n_meta;
} hma__st_header;

/* Check the 8-byte length prefix against the file size; sets *header_len.
 * HMA_ERR_HEADER_SIZE if the file has no room for it, N is 0, above
 * HMA_MAX_HEADER_SIZE, or past the end of the file. */
int hma__st_header_len(const char *path, const unsigned char *prefix, uint64_t file_size,
                       uint64_t *header_len);

/* Parse and validate `header_len` bytes of header JSON (the bytes after the
 * prefix) of a file of `file_size` bytes. On success fills *out (free with
 * hma__st_header_free); on failure *out is left empty. */
int hma__st_parse(const char *path, const char *json, uint64_t header_len, uint64_t file_size,
                  hma__st_header *out);

void hma__st_header_free(hma__st_header *h);

/* The one reader of a safetensors header from an open file (stores and packs
 * both use it): pread the 8-byte prefix and the JSON, check and parse them.
 * The file must stay `file_size` bytes long meanwhile (a file that shrinks
 * gives HMA_ERR_TRUNCATED, not a signal). When json_out is not NULL it
 * receives the raw header bytes (malloc'd, header_len of them; the caller
 * frees). On failure *hdr is empty and *json_out NULL. */
int hma__st_read_header(int fd, const char *path, uint64_t file_size, hma__st_header *hdr,
                        char **json_out);

/* Copy `s` (n bytes) into buf for an error message: control bytes become
 * \xNN (so one error stays one line) and long names are cut with "...". */
const char *hma__quote_name(char *buf, size_t cap, const char *s, size_t n);

#endif /* HMA_SAFETENSORS_H */
