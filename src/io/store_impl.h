/*
 * store_impl.h - the tensor store's private types, shared by store.c (the
 * store object and its lookups) and store_index.c (opening a sharded
 * checkpoint through its index). Not used outside src/io/store*.c.
 */
#ifndef HMA_IO_STORE_IMPL_H
#define HMA_IO_STORE_IMPL_H

#include "core/hash.h"
#include "formats/safetensors.h"
#include "io/store.h"

struct hma_tensor {
    char *name; /* owned */
    size_t name_len;
    hma_dtype dtype;
    unsigned ndim;
    uint64_t shape[HMA_MAX_DIMS]; /* inline: non-NULL even for scalars */
    uint64_t nelem, nbytes;
    uint64_t offset; /* file byte where the data begins (file stores) */
    size_t index, file;
    const hma_store *store;
};

typedef struct hma__store_file {
    char *path;
    int fd;                   /* open in pread mode, else -1 */
    const unsigned char *map; /* whole file, in mmap mode */
    size_t map_len;
    uint64_t size;
    unsigned long long dev, ino;
    int registered;
} hma__store_file;

struct hma_store {
    hma_tensor *tensors;
    size_t n;
    hma__names names; /* tensor name -> index */
    char **meta;      /* 2 * n_meta */
    size_t n_meta;
    hma__store_file *files;
    size_t n_files;
    unsigned flags;
    int custom;
    hma__store_backend be;
    void *ctx;
};

/* Open, validate and (in mmap mode) map one safetensors file into f; on
 * success *hdr holds its parsed header (free with hma__st_header_free). */
int hma__store_open_file(const char *path, unsigned flags, hma__store_file *f, hma__st_header *hdr);

/* Append a file entry named `path` to s->files (room must exist). */
int hma__store_add_file(hma_store *s, const char *path);

/* Record f in the open-input registry (undone by hma_store_close). */
int hma__store_register_file(hma__store_file *f);

/* Move the header's tensors (in offset order) into s->tensors (room must
 * exist), as file number `file`; and its metadata into the store. */
void hma__store_take_tensors(hma_store *s, hma__st_header *h, size_t file);
void hma__store_take_meta(hma_store *s, hma__st_header *h);

/* Open a GGUF file as a store (store_gguf.c); *out set on success only. */
int hma__store_open_gguf(hma_store **out, const char *path, unsigned flags);

/* Open a sharded checkpoint through its index file (store_index.c). */
int hma__store_open_index(hma_store *s, const char *index);

#endif /* HMA_IO_STORE_IMPL_H */
