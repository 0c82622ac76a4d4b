/*
 * toyllm: standalone fp32 forward pass of the tiny byte-level Llama model in
 * examples/data/toy-llama (vocab 256, hidden 256, 8 layers, MLP 512, 8 query
 * heads / 4 key-value heads of size 32, RoPE theta 10000, RMSNorm eps 1e-5,
 * untied lm_head), used to score checkpoints in bits per byte.
 *
 * C11, no dependency on libhma. Implementation (toyllm.c) needs OpenBLAS,
 * pthreads and libm: link with -lopenblas -lpthread -lm.
 *
 * All functions return 0 on success and one of the positive TOYLLM_E* codes
 * on failure; none of them prints, exits or aborts.
 */
#ifndef TOYLLM_H
#define TOYLLM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes (0 is success). */
enum {
    TOYLLM_EINVAL = 1, /* bad argument */
    TOYLLM_ENOMEM = 2, /* allocation failed */
    TOYLLM_EGET = 3,   /* the tensor getter failed */
    TOYLLM_EIO = 4,    /* file could not be opened or read */
    TOYLLM_EFORMAT = 5 /* file contents have the wrong size or header */
};

/* Opaque model: float32 copies of the weights (plus derived tables). */
typedef struct toyllm toyllm;

/* Fills dst (nelem float32 values) with tensor `name` (Hugging Face Llama
 * name, e.g. "model.layers.3.mlp.up_proj.weight", row-major as stored)
 * converted to float32; returns 0 on success, nonzero on error. */
typedef int (*toyllm_get_fn)(void *ctx, const char *name, float *dst, size_t nelem);

/* Loads all 75 tensors through `get`. On success *out owns the model (free it
 * with toyllm_free) and 0 is returned; on failure *out is set to NULL and
 * TOYLLM_EGET (a tensor failed), TOYLLM_ENOMEM or TOYLLM_EINVAL is returned.
 * The getter is only called from the calling thread. */
int toyllm_load(toyllm **out, toyllm_get_fn get, void *ctx);

/* Frees a model; NULL is fine. */
void toyllm_free(toyllm *m);

/* Evaluation set (eval.bin): n rows of L bytes of code, then n rows of L
 * bytes of prose. */
typedef struct toyllm_evalset {
    unsigned n, L;
    unsigned char *code, *prose; /* n * L bytes each */
} toyllm_evalset;

/* Reads eval.bin: little-endian u32 n, u32 L, then n*L code bytes and n*L
 * prose bytes. Requires n >= 1, L >= 2 and the file size to be exactly
 * 8 + 2*n*L. Returns 0, TOYLLM_EIO, TOYLLM_EFORMAT, TOYLLM_ENOMEM or
 * TOYLLM_EINVAL; on failure *es is zeroed. */
int toyllm_evalset_load(toyllm_evalset *es, const char *path);

/* Frees the buffers and zeroes *es; NULL is fine. */
void toyllm_evalset_free(toyllm_evalset *es);

/* Mean cross-entropy in bits per byte over rows [0, nrows) of `rows` (each
 * row L bytes, consecutive) and positions t = 0..L-2 (logits after bytes
 * 0..t predict byte t+1), computed in fp32 (loss accumulated in double).
 * To score rows [row0, row0+nrows) of a set, pass rows = set + row0*L.
 *
 * threads >= 1 worker threads score batches of rows in parallel. The result
 * does not depend on `threads`: rows are grouped into fixed batches and the
 * per-row losses are summed in row order.
 *
 * NOTE: this calls openblas_set_num_threads(1) (process-wide OpenBLAS
 * setting) so that each worker runs its BLAS calls single-threaded, which is
 * faster here than threaded BLAS; the previous setting is restored before
 * returning. Do not run other OpenBLAS work concurrently that depends on the
 * thread count.
 *
 * If a worker thread cannot be started, the remaining workers (at least the
 * calling thread) do its share; the result is the same.
 *
 * Returns 0, TOYLLM_EINVAL (NULL pointer, nrows == 0, L < 2 or
 * L > 65537, threads < 1) or TOYLLM_ENOMEM. */
int toyllm_score(const toyllm *m, const unsigned char *rows, unsigned nrows,
                 unsigned L, int threads, double *bits_per_byte);

#ifdef __cplusplus
}
#endif

#endif /* TOYLLM_H */
