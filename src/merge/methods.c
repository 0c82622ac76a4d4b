/*
 * methods.c - what each merge method computes for one tensor: the weights
 * handed to the kernels (linear, task arithmetic, SLERP coefficients), and
 * the per-chunk call into hma__kernel_combine. docs/merging.md is the spec.
 */
#include "merge/methods.h"

#include <math.h>
#include <string.h>

static void mop_round(hma__mop *op) {
    for (size_t i = 0; i < op->n_in; i++) op->wf[i] = (float)op->wd[i];
}

int hma__mop_linear(hma__mop *op, const double *row, size_t n, int normalize, const char *what) {
    memset(op, 0, sizeof *op);
    op->n_in = n;
    op->base = -1;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += row[i];
    if (normalize && sum == 0.0)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "%s: weights sum to 0, cannot normalize (turn normalize off or change "
                         "the weights)",
                         what);
    for (size_t i = 0; i < n; i++) op->wd[i] = normalize ? row[i] / sum : row[i];
    mop_round(op);
    return HMA_OK;
}

int hma__mop_task(hma__mop *op, const double *row, size_t n, size_t base) {
    memset(op, 0, sizeof *op);
    op->n_in = n;
    op->base = (int)base;
    for (size_t i = 0; i < n; i++) op->wd[i] = i == base ? 0.0 : row[i];
    mop_round(op);
    return HMA_OK;
}

void hma__mop_slerp(hma__mop *op, double t, const double stats[3], double *cos_out) {
    memset(op, 0, sizeof *op);
    op->n_in = 2;
    op->base = -1;
    /* mergekit: normalise copies (only when the norm exceeds eps), dot them. */
    double c = stats[0];
    double n0 = sqrt(stats[1]), n1 = sqrt(stats[2]);
    if (n0 > HMA__SLERP_EPS) c /= n0;
    if (n1 > HMA__SLERP_EPS) c /= n1;
    if (cos_out) *cos_out = c;
    if (fabs(c) > HMA__SLERP_DOT_THRESHOLD) {
        op->wd[0] = 1.0 - t;
        op->wd[1] = t;
    } else {
        double omega = acos(c), s = sin(omega);
        op->wd[0] = sin(omega - omega * t) / s;
        op->wd[1] = sin(omega * t) / s;
    }
    mop_round(op);
}

int hma__mop_run(int path, const hma__mop *op, const hma_dtype *in_dt, const void *const *in,
                 hma_dtype out_dt, void *out, size_t n, int check_finite, size_t *bad_input,
                 size_t *bad_elem) {
    int wide = 0;
    for (size_t i = 0; i < op->n_in; i++) wide |= in_dt[i] == HMA_DTYPE_F64;
    hma__combine c;
    c.n_in = op->n_in;
    c.in_dtype = in_dt;
    c.in = in;
    c.wf = op->wf;
    c.wd = op->wd;
    c.base = op->base;
    c.wide = wide;
    c.out_dtype = out_dt;
    c.out = out;
    return hma__kernel_combine(path, &c, n, check_finite, bad_input, bad_elem);
}
