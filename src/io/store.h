/*
 * store.h - internal side of the tensor store (src/io/store.c): a constructor
 * that lets another module (the delta-pack reader) serve a store's tensors
 * from its own backend instead of from safetensors files.
 */
#ifndef HMA_STORE_H
#define HMA_STORE_H

#include "internal.h"

typedef struct hma__tensor_decl {
    const char *name;
    hma_dtype dtype;
    unsigned ndim;
    const uint64_t *shape; /* ndim entries; may be NULL when ndim is 0 */
} hma__tensor_decl;

typedef struct hma__store_backend {
    /* Copy len bytes of tensor i from byte `offset` of its data into buf
     * (the store has checked the range). Returns HMA_OK or an error code
     * after setting the thread message. Called from many threads at once. */
    int (*read)(void *ctx, size_t i, uint64_t offset, void *buf, size_t len);
    /* Stable pointer to all bytes of tensor i (decode on first use,
     * thread-safe), NULL + error (hma__fail: the code is what
     * hma_tensor_data_get() returns) on failure. May be NULL: the store then
     * has no zero-copy bytes (hma_tensor_data_get() gives HMA_OK and NULL,
     * like pread mode). Not called for zero-size tensors. */
    const void *(*data)(void *ctx, size_t i);
    /* Release ctx; called exactly once (by hma_store_close, or on failure). */
    void (*close)(void *ctx);
    /* May be NULL. Nonzero when tensor i has no zero-copy bytes (a GGUF
     * quantized tensor, served dequantized by read): hma_tensor_data_get()
     * then gives HMA_OK and NULL without calling data. */
    int (*no_data)(void *ctx, size_t i);
} hma__store_backend;

/*
 * Build a store whose tensors (in decl order) are served by the backend.
 * Copies names, shapes, metadata and path; takes ownership of ctx (closes it
 * on failure too). meta is n_meta key/value pairs (meta[2i], meta[2i+1]).
 * `path` is what hma_store_file_path(store, 0) reports (the store has one
 * file; every tensor's hma_tensor_file() is 0). The store registers no file
 * in the open-input registry: the backend registers what it keeps open.
 * Errors: HMA_ERR_INVALID_ARGUMENT, HMA_ERR_BAD_NAME (empty, too long,
 * duplicate), HMA_ERR_BAD_DTYPE, HMA_ERR_BAD_SHAPE, HMA_ERR_OVERFLOW,
 * HMA_ERR_SIZE_MISMATCH (sub-byte dtype not filling whole bytes),
 * HMA_ERR_NO_MEMORY.
 */
int hma__store_create_custom(hma_store **out, const char *path, const hma__tensor_decl *decls, size_t n,
                             const char *const *meta, size_t n_meta, const hma__store_backend *be,
                             void *ctx);

/*
 * Drop this process's page mappings of tensor t's bytes [off, off + len)
 * (the whole pages inside the range): the bytes stay where they are (page
 * cache, file) and a later read maps them again. For a reader that is done
 * with a range of a large mapped input: the teardown of its page tables is
 * then spread over the threads that read it instead of falling on the one
 * that closes the store (tmpfs inputs: about a seventh of a TIES merge's
 * time). Only for safetensors file stores in mmap mode (read-only private
 * mappings: nothing of theirs is ever written); a no-op for any other
 * store. Thread-safe; never fails (an madvise error only means the
 * mappings stay until the store is closed).
 */
void hma__tensor_release(const hma_tensor *t, uint64_t off, uint64_t len);

/* The typed metadata of a GGUF store (store_gguf.c), for the GGUF writer:
 * 0 keys for any other store. Key i's name, gguf_type (0..12) and value
 * bytes as in the file (arrays: element type, count, elements); the
 * pointers live as long as the store. HMA_ERR_INVALID_ARGUMENT (no error
 * message) for a bad i or a store that is not GGUF. */
size_t hma__store_gguf_kv_count(const hma_store *s);
int hma__store_gguf_kv(const hma_store *s, size_t i, const char **key, uint32_t *type, const unsigned char **val,
                       uint64_t *len);
/* ggml type of tensor i of a GGUF store as stored in the file, else -1. */
int hma__store_gguf_tensor_type(const hma_store *s, size_t i);

#endif /* HMA_STORE_H */
