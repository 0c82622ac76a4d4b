/*
 * methods.h - per-tensor method logic (internal): from a group's weight row
 * to the weights the kernels use (linear, task arithmetic, SLERP), and the
 * call into hma__kernel_combine for one chunk. No I/O here: serve.c and
 * run.c feed the chunks.
 */
#ifndef HMA_METHODS_H
#define HMA_METHODS_H

#include "internal.h"

#include "merge/kernels.h"

/* mergekit's threshold: |cos| above it makes SLERP fall back to linear. */
#define HMA__SLERP_DOT_THRESHOLD 0.9995
/* mergekit normalises a vector only when its norm exceeds this. */
#define HMA__SLERP_EPS 1e-8
/* Elements per statistics chunk: fixed, so SLERP's cosine (a sum of chunk
 * sums in order) never depends on the thread count. */
#define HMA__STATS_CHUNK ((uint64_t)1 << 20)

/* What one tensor is merged with, once weights (and SLERP stats) are known. */
typedef struct hma__mop {
    size_t n_in;
    int base;                    /* -1 weighted sum, else base input (task arithmetic) */
    double wd[HMA_KMAX_INPUTS];  /* effective weights */
    float wf[HMA_KMAX_INPUTS];   /* the same, rounded once to float32 */
} hma__mop;

/* Build the effective weights of a linear / task-arithmetic tensor from a
 * weight row. normalize: divide by the row sum (double, input order);
 * fails with HMA_ERR_INVALID_ARGUMENT naming `what` when the sum is 0. */
int hma__mop_linear(hma__mop *op, const double *row, size_t n, int normalize, const char *what);
int hma__mop_task(hma__mop *op, const double *row, size_t n, size_t base);
/* SLERP of 2 inputs at t with stats = {x.y, x.x, y.y} of the whole tensor:
 * weights (sin((1-t)W)/sin W, sin(tW)/sin W), or (1-t, t) when |cos| > the
 * threshold. *cos_out (may be NULL) gets the cosine used. */
void hma__mop_slerp(hma__mop *op, double t, const double stats[3], double *cos_out);

/* Combine n elements: in[j] points at this chunk's first element of input j
 * (dtype in_dt[j]); out gets n elements of out_dt. wide = any input F64.
 * Returns 0, or 1 with *bad_input and *bad_elem set when check_finite found a
 * non-finite input element. */
int hma__mop_run(int path, const hma__mop *op, const hma_dtype *in_dt, const void *const *in,
                 hma_dtype out_dt, void *out, size_t n, int check_finite, size_t *bad_input,
                 size_t *bad_elem);

#endif /* HMA_METHODS_H */
