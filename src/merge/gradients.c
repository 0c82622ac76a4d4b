/*
 * gradients.c - group gradients dL/da_k = sum over a group's tensors of
 * <dL/dtheta, theta_aligned - theta_base>, streamed in fixed blocks through
 * OpenBLAS so that the result is the same for any thread count.
 * The ratio parametrisation and the optimizer step are in search/ratios.c and search/optimizer.c.
 * It lives in src/merge/ because it walks a merge plan's rows and uses the merge kernels.
 */
#include "internal.h"

#include "core/pool.h"
#include "merge/kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define CH HMA_GRAD_CHUNK

static int grad_dtype_ok(hma_dtype d) {
    return d == HMA_DTYPE_F16 || d == HMA_DTYPE_BF16 || d == HMA_DTYPE_F32 || d == HMA_DTYPE_F64;
}

static size_t esize(hma_dtype d) { return d == HMA_DTYPE_F64 ? 8 : (d == HMA_DTYPE_F32 ? 4 : 2); }

/* Scratch for one block: the operands converted to float32 and to double. */
typedef struct dblock {
    float fg[CH], fa[CH], fb[CH];
    double g[CH], a[CH], b[CH];
} dblock;

/* <g, a - b> over m <= CH elements (pointers to the block's first element).
 * The difference is rounded once to float32 (to double when an input is
 * F64); products and sums are in double with cblas_ddot. Not cblas_dsdot:
 * OpenBLAS 0.3.21's x86-64 dsdot forms the products in float32 (relative
 * error ~1e-9 of sum |g (a - b)| measured), while float32 x float32 is exact
 * in double. */
static double block_dot(int path, int wide, const void *g, hma_dtype gt, const void *a, hma_dtype at,
                        const void *b, hma_dtype bt, size_t m, dblock *s) {
    if (wide) {
        hma__kernel_convert(path, gt, g, HMA_DTYPE_F64, s->g, m);
        hma__kernel_convert(path, at, a, HMA_DTYPE_F64, s->a, m);
        hma__kernel_convert(path, bt, b, HMA_DTYPE_F64, s->b, m);
        for (size_t i = 0; i < m; i++) s->a[i] = s->a[i] - s->b[i];
    } else {
        hma__kernel_convert(path, gt, g, HMA_DTYPE_F32, s->fg, m);
        hma__kernel_convert(path, at, a, HMA_DTYPE_F32, s->fa, m);
        hma__kernel_convert(path, bt, b, HMA_DTYPE_F32, s->fb, m);
        for (size_t i = 0; i < m; i++) {
            s->g[i] = (double)s->fg[i];
            s->a[i] = (double)(s->fa[i] - s->fb[i]);
        }
    }
    return cblas_ddot((blasint)m, s->g, 1, s->a, 1);
}

int hma_delta_dot(uint64_t n, const void *grad, hma_dtype grad_dtype, const void *aligned,
                  hma_dtype aligned_dtype, const void *base, hma_dtype base_dtype, double *out) {
    if (!out || (n > 0 && (!grad || !aligned || !base)))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_delta_dot: NULL argument");
    if (!grad_dtype_ok(grad_dtype) || !grad_dtype_ok(aligned_dtype) || !grad_dtype_ok(base_dtype))
        return hma__fail(HMA_ERR_UNSUPPORTED_DTYPE, "hma_delta_dot: dtypes %s, %s, %s (expected F16, BF16, F32 or F64)",
                         hma_dtype_name(grad_dtype) ? hma_dtype_name(grad_dtype) : "?",
                         hma_dtype_name(aligned_dtype) ? hma_dtype_name(aligned_dtype) : "?",
                         hma_dtype_name(base_dtype) ? hma_dtype_name(base_dtype) : "?");
    dblock *s = hma__malloc(sizeof *s);
    if (!s) return hma__fail(HMA_ERR_NO_MEMORY, "hma_delta_dot: out of memory for a %d-element block", CH);
    int path = hma__cpu_level();
    int wide = grad_dtype == HMA_DTYPE_F64 || aligned_dtype == HMA_DTYPE_F64 || base_dtype == HMA_DTYPE_F64;
    size_t gs = esize(grad_dtype), as = esize(aligned_dtype), bs = esize(base_dtype);
    double acc = 0;
    for (uint64_t e0 = 0; e0 < n; e0 += CH) {
        size_t m = n - e0 < CH ? (size_t)(n - e0) : CH;
        acc += block_dot(path, wide, (const unsigned char *)grad + e0 * gs, grad_dtype,
                         (const unsigned char *)aligned + e0 * as, aligned_dtype,
                         (const unsigned char *)base + e0 * bs, base_dtype, m, s);
    }
    hma__free(s);
    *out = acc;
    return HMA_OK;
}

/* ---- plan-level group gradients ------------------------------------------ */

void hma_group_grad_options_init_size(hma_group_grad_options *o, size_t size) {
    hma_group_grad_options d;
    memset(&d, 0, sizeof d);
    hma__init_size(o, size, &d, sizeof d);
}

/* One averaged row: where its three operands come from. */
typedef struct grow {
    size_t row;
    int group;                  /* >= 0 or HMA_GROUP_MEAN */
    uint64_t n;                 /* elements */
    const hma_tensor *tb, *ta;  /* base, aligned */
    const void *gptr;           /* caller's gradient buffer, or NULL */
    const hma_tensor *tg;       /* gradient tensor of a store, or NULL */
    hma_dtype gdt;
    int missing;                /* no gradient: contributes 0 */
    double dot;
} grow;

typedef struct gjob {
    const hma_store *base, *aligned, *grads;
    grow *rows;
    dblock **s;          /* per pool worker, allocated on its first job */
    unsigned char **raw; /* per pool worker: 3 operand blocks of up to 8 bytes an element */
} gjob;

/* Operand block pointer: zero-copy when the store maps it, else read into buf. */
static int operand(const hma_store *st, const hma_tensor *t, const void *ptr, size_t es, uint64_t e0, size_t m,
                   void *buf, const void **out) {
    if (ptr) {
        *out = (const unsigned char *)ptr + e0 * es;
        return HMA_OK;
    }
    int rc = hma_store_read(st, t, e0 * es, buf, m * es);
    if (rc) return rc;
    *out = buf;
    return HMA_OK;
}

static int row_dot(const gjob *j, grow *r, dblock *s, unsigned char *raw) {
    if (r->missing) {
        r->dot = 0;
        return HMA_OK;
    }
    hma_dtype bt = hma_tensor_dtype(r->tb), at = hma_tensor_dtype(r->ta), gt = r->gdt;
    size_t bs = esize(bt), as = esize(at), gs = esize(gt);
    /* hma_tensor_data() is NULL in pread mode: then read block by block. */
    const void *pb = hma_tensor_data(r->tb), *pa = hma_tensor_data(r->ta);
    const void *pg = r->gptr ? r->gptr : hma_tensor_data(r->tg);
    int path = hma__cpu_level();
    int wide = bt == HMA_DTYPE_F64 || at == HMA_DTYPE_F64 || gt == HMA_DTYPE_F64;
    double acc = 0;
    for (uint64_t e0 = 0; e0 < r->n; e0 += CH) {
        size_t m = r->n - e0 < CH ? (size_t)(r->n - e0) : CH;
        const void *xb, *xa, *xg;
        int rc;
        if ((rc = operand(j->base, r->tb, pb, bs, e0, m, raw, &xb)) ||
            (rc = operand(j->aligned, r->ta, pa, as, e0, m, raw + 8 * CH, &xa)) ||
            (rc = operand(j->grads, r->tg, pg, gs, e0, m, raw + 16 * CH, &xg)))
            return rc;
        acc += block_dot(path, wide, xg, gt, xa, at, xb, bt, m, s);
    }
    r->dot = acc;
    return HMA_OK;
}

/* hma__job_fn: the inner product of one row. */
static int row_job(void *arg, uint64_t i, unsigned worker) {
    gjob *j = arg;
    if (!j->s[worker]) j->s[worker] = hma__malloc(sizeof *j->s[worker]);
    if (!j->raw[worker]) j->raw[worker] = hma__malloc(24 * CH);
    if (!j->s[worker] || !j->raw[worker])
        return hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_group_gradients: out of memory for block buffers");
    return row_dot(j, &j->rows[i], j->s[worker], j->raw[worker]);
}

static int run_rows(gjob *j, size_t nrows, unsigned threads) {
    unsigned nt = hma__pool_threads(threads, nrows);
    j->s = hma__calloc(nt, sizeof *j->s);
    j->raw = hma__calloc(nt, sizeof *j->raw);
    int rc = j->s && j->raw ? hma__pool_run(nrows, threads, row_job, j, NULL, NULL)
                            : hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_group_gradients: out of memory for %u threads", nt);
    for (unsigned t = 0; j->s && j->raw && t < nt; t++) {
        hma__free(j->s[t]);
        hma__free(j->raw[t]);
    }
    hma__free(j->s);
    hma__free(j->raw);
    return rc;
}

static int same_shape(const hma_tensor *x, const hma_tensor *y) {
    unsigned nd = hma_tensor_ndim(x);
    if (nd != hma_tensor_ndim(y)) return 0;
    return nd == 0 || memcmp(hma_tensor_shape(x), hma_tensor_shape(y), nd * sizeof(uint64_t)) == 0;
}

static int group_gradients(const hma_plan *plan, hma_grad_fn fn, void *user, const hma_store *grads,
                           const hma_group_grad_options *opts, double *grad, size_t k, const char *fname) {
    if (!plan || !grad || (!fn && !grads))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: NULL argument", fname);
    hma_group_grad_options o;
    hma_group_grad_options_init(&o);
    /* the first version of the struct is the current one */
    int rc = hma__opts_in(&o, sizeof o, opts, sizeof o, fname, "hma_group_grad_options");
    if (rc) return rc;
    if (o.flags & ~(unsigned)HMA_GRAD_ALLOW_MISSING)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: unknown flags 0x%x", fname, o.flags);
    if (hma_plan_input_count(plan) != 2)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: the plan has %zu inputs (expected 2: base, aligned)", fname,
                         hma_plan_input_count(plan));
    const hma_store *base = hma_plan_input(plan, 0), *aligned = hma_plan_input(plan, 1);
    size_t K = hma_plan_group_count(plan);
    if (k != K) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: k = %zu but the plan has %zu groups", fname, k, K);
    size_t nrows = hma_plan_tensor_count(plan);
    grow *rows = hma__calloc(nrows ? nrows : 1, sizeof *rows);
    if (!rows) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory for %zu rows", fname, nrows);
    size_t m = 0;
    for (size_t i = 0; i < nrows && !rc; i++) {
        int g = hma_plan_tensor_group(plan, i);
        if (g == HMA_GROUP_NONE || hma_plan_tensor_action(plan, i) != HMA_ACTION_MERGE) continue;
        const char *name = hma_plan_tensor_name(plan, i);
        grow *r = &rows[m];
        r->row = i;
        r->group = g;
        r->tb = hma_plan_tensor_input(plan, i, 0);
        r->ta = hma_plan_tensor_input(plan, i, 1);
        r->n = hma_tensor_nelements(r->tb);
        if (hma_tensor_nelements(r->ta) != r->n) {
            rc = hma__fail(HMA_ERR_MISMATCH, "%s: tensor '%.200s': %llu elements in base, %llu in aligned", fname, name,
                           (unsigned long long)r->n, (unsigned long long)hma_tensor_nelements(r->ta));
            break;
        }
        if (fn) {
            const void *p = NULL;
            hma_dtype dt = HMA_DTYPE_COUNT;
            uint64_t ne = 0;
            int cr = fn(user, name, &p, &dt, &ne);
            if (cr) {
                rc = hma__callback_result(cr, "gradient callback");
                hma__fail_prefix(rc, "%s: tensor '%.200s'", fname, name);
                break;
            }
            if (!p && ne == 0 && r->n == 0) r->missing = 1;
            else if (!p) r->missing = 2;
            else if (!grad_dtype_ok(dt)) {
                rc = hma__fail(HMA_ERR_UNSUPPORTED_DTYPE, "%s: tensor '%.200s': gradient dtype %s (expected F16, BF16, F32 or F64)",
                               fname, name, hma_dtype_name(dt) ? hma_dtype_name(dt) : "invalid");
                break;
            } else if (ne != r->n) {
                rc = hma__fail(HMA_ERR_MISMATCH, "%s: tensor '%.200s': gradient has %llu elements (expected %llu)", fname, name,
                               (unsigned long long)ne, (unsigned long long)r->n);
                break;
            }
            r->gptr = p;
            r->gdt = dt;
        } else {
            const hma_tensor *t = hma_store_find(grads, name);
            if (!t) r->missing = 2;
            else if (!grad_dtype_ok(hma_tensor_dtype(t))) {
                rc = hma__fail(HMA_ERR_UNSUPPORTED_DTYPE, "%s: %.300s: tensor '%.200s': gradient dtype %s (expected F16, BF16, F32 or F64)",
                               fname, hma_store_file_path(grads, hma_tensor_file(t)), name, hma_dtype_name(hma_tensor_dtype(t)));
                break;
            } else if (!same_shape(t, r->tb)) {
                rc = hma__fail(HMA_ERR_MISMATCH, "%s: %.300s: tensor '%.200s': gradient shape differs from the weights' (expected %u dims, %llu elements)",
                               fname, hma_store_file_path(grads, hma_tensor_file(t)), name, hma_tensor_ndim(r->tb),
                               (unsigned long long)r->n);
                break;
            }
            r->tg = t;
            r->gdt = t ? hma_tensor_dtype(t) : HMA_DTYPE_F32;
        }
        if (r->missing == 2) {
            if (!(o.flags & HMA_GRAD_ALLOW_MISSING)) {
                rc = hma__fail(HMA_ERR_NOT_FOUND, "%s: tensor '%.200s': no gradient given (set HMA_GRAD_ALLOW_MISSING to count it as 0)",
                               fname, name);
                break;
            }
            r->missing = 1;
        }
        m++;
    }
    if (!rc) {
        gjob j;
        memset(&j, 0, sizeof j);
        j.base = base;
        j.aligned = aligned;
        j.grads = grads;
        j.rows = rows;
        rc = run_rows(&j, m, o.threads);
    }
    if (!rc) {
        for (size_t g = 0; g < K; g++) grad[g] = 0;
        /* Row order, then one (1/K) share per group for the mean placement. */
        double mean_sum = 0;
        for (size_t i = 0; i < m; i++) {
            if (rows[i].group == HMA_GROUP_MEAN) mean_sum += rows[i].dot;
            else grad[rows[i].group] += rows[i].dot;
        }
        for (size_t g = 0; g < K; g++) grad[g] += mean_sum / (double)K;
    }
    hma__free(rows);
    return rc;
}

int hma_plan_group_gradients(const hma_plan *plan, hma_grad_fn fn, void *user, const hma_group_grad_options *opts,
                             double *grad, size_t k) {
    if (!fn) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_group_gradients: fn is NULL");
    return group_gradients(plan, fn, user, NULL, opts, grad, k, "hma_plan_group_gradients");
}

int hma_plan_group_gradients_store(const hma_plan *plan, const hma_store *grads, const hma_group_grad_options *opts,
                                   double *grad, size_t k) {
    if (!grads) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_group_gradients_store: grads is NULL");
    return group_gradients(plan, NULL, NULL, grads, opts, grad, k, "hma_plan_group_gradients_store");
}
