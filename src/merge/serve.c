/*
 * serve.c - one-tensor merges (servers, evaluators): a byte range of one
 * output tensor merged into a caller buffer on the calling thread, the
 * chunk merge and copy helpers the full merge shares, and the SLERP
 * statistics (computed once per row, cached in the plan).
 */
#include "merge/plan.h"

#include <stdio.h>
#include <string.h>

void hma__tbuf_free(hma__tbuf *tb) {
    for (size_t j = 0; j < HMA_KMAX_INPUTS; j++) hma__free(tb->in[j]);
    hma__free(tb->out);
    memset(tb, 0, sizeof *tb);
}

/* `len` bytes of input j of row i from byte `off`: zero-copy when the store
 * gives a pointer, else read into the thread's buffer j. */
static int in_range(const hma_plan *p, size_t i, size_t j, uint64_t off, size_t len, hma__tbuf *tb,
                    const void **ptr) {
    const hma_tensor *t = p->rt[i * p->n_in + j];
    const unsigned char *d = hma_tensor_data(t);
    if (d) {
        *ptr = d + off;
        return HMA_OK;
    }
    if (tb->in_cap[j] < len) {
        hma__free(tb->in[j]);
        tb->in_cap[j] = 0;
        tb->in[j] = hma__malloc(len ? len : 1);
        if (!tb->in[j]) return hma__fail(HMA_ERR_NO_MEMORY, "merge: out of memory for a %zu-byte buffer", len);
        tb->in_cap[j] = len;
    }
    int rc = hma_store_read(p->in[j], t, off, tb->in[j], len);
    if (rc) return rc;
    *ptr = tb->in[j];
    return HMA_OK;
}

/* Statistics of stats chunk `sc` of row i between inputs a and b. */
int hma__plan_stats_chunk(const hma_plan *p, size_t i, size_t a, size_t b, uint64_t sc, hma__tbuf *tb, double out[4]) {
    const hma_tensor *ta = p->rt[i * p->n_in + a], *tbt = p->rt[i * p->n_in + b];
    hma_dtype da = hma_tensor_dtype(ta), db = hma_tensor_dtype(tbt);
    uint64_t e0 = sc * HMA__STATS_CHUNK, nel = p->rows[i].nelem;
    size_t n = (size_t)(nel - e0 < HMA__STATS_CHUNK ? nel - e0 : HMA__STATS_CHUNK);
    const void *x, *y;
    int rc = in_range(p, i, a, e0 * hma__kdtype_size(da), n * hma__kdtype_size(da), tb, &x);
    if (!rc) rc = in_range(p, i, b, e0 * hma__kdtype_size(db), n * hma__kdtype_size(db), tb, &y);
    if (rc) return rc;
    hma__kernel_stats(da, x, db, y, n, out);
    return HMA_OK;
}

uint64_t hma__plan_stats_chunks(uint64_t nelem) { return (nelem + HMA__STATS_CHUNK - 1) / HMA__STATS_CHUNK; }

/* Whole-tensor statistics: chunk sums added in order (the same order the
 * parallel merge uses). */
static int stats_seq(const hma_plan *p, size_t i, size_t a, size_t b, hma__tbuf *tb, double acc[4]) {
    acc[0] = acc[1] = acc[2] = acc[3] = 0.0;
    uint64_t nc = hma__plan_stats_chunks(p->rows[i].nelem);
    for (uint64_t sc = 0; sc < nc; sc++) {
        double part[4];
        int rc = hma__plan_stats_chunk(p, i, a, b, sc, tb, part);
        if (rc) return rc;
        for (int k = 0; k < 4; k++) acc[k] += part[k];
    }
    return HMA_OK;
}

void hma__plan_stats_publish(hma_plan *p, size_t i, const double s[4]) {
    hma__prow *row = &p->rows[i];
    pthread_mutex_lock(&p->smu);
    if (!atomic_load_explicit(&row->stats_ready, memory_order_relaxed)) {
        memcpy(row->stats, s, sizeof row->stats);
        atomic_store_explicit(&row->stats_ready, 1, memory_order_release);
    }
    pthread_mutex_unlock(&p->smu);
}

static int ensure_stats(hma_plan *p, size_t i, hma__tbuf *tb) {
    if (atomic_load_explicit(&p->rows[i].stats_ready, memory_order_acquire)) return HMA_OK;
    double s[4];
    int rc = stats_seq(p, i, 0, 1, tb, s);
    if (rc) return rc;
    hma__plan_stats_publish(p, i, s);
    return HMA_OK;
}

int hma_plan_tensor_stats(const hma_plan *p, size_t i, size_t a, size_t b, double out[4]) {
    HMA__CHECK_PLAN(p, "hma_plan_tensor_stats");
    if (i >= p->n_rows || a >= p->n_in || b >= p->n_in || !out)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_tensor_stats: bad row %zu or inputs %zu, %zu", i, a, b);
    const hma_tensor *ta = p->rt[i * p->n_in + a], *tbt = p->rt[i * p->n_in + b];
    if (!ta || !tbt || !hma__kdtype_ok(hma_tensor_dtype(ta)) || !hma__kdtype_ok(hma_tensor_dtype(tbt)) ||
        hma_tensor_nelements(ta) != hma_tensor_nelements(tbt))
        return hma__fail(HMA_ERR_MISMATCH,
                         "tensor '%s': inputs %zu and %zu are not float tensors of the same size",
                         p->rows[i].name, a, b);
    hma__tbuf tb;
    memset(&tb, 0, sizeof tb);
    int rc = stats_seq(p, i, a, b, &tb, out);
    hma__tbuf_free(&tb);
    return rc;
}

/* Merge elements [e0, e0 + n) of MERGE row i with op into out. */
int hma__plan_chunk_merge(const hma_plan *p, int path, int check, size_t i, const hma__mop *op, uint64_t e0,
                       size_t n, hma__tbuf *tb, void *out) {
    const hma__prow *row = &p->rows[i];
    const void *in[HMA_KMAX_INPUTS];
    hma_dtype dt[HMA_KMAX_INPUTS];
    if (n == 0) return HMA_OK;
    for (size_t j = 0; j < p->n_in; j++) {
        dt[j] = hma_tensor_dtype(p->rt[i * p->n_in + j]);
        size_t isz = hma__kdtype_size(dt[j]);
        int rc = in_range(p, i, j, e0 * isz, n * isz, tb, &in[j]);
        if (rc) return rc;
    }
    size_t bi = 0, be = 0;
    if (hma__mop_run(path, op, dt, in, row->out_dtype, out, n, check, &bi, &be)) {
        double v = hma__ld1_f64(dt[bi], in[bi], be);
        return hma__fail(HMA_ERR_NONFINITE,
                         "%s: tensor '%s': input %zu has a non-finite value (%g) at element %llu "
                         "(expected finite inputs; HMA_MERGE_ALLOW_NONFINITE allows them)",
                         hma__plan_input_path(p, bi), row->name, bi, v, (unsigned long long)(e0 + be));
    }
    return HMA_OK;
}

/* Copy bytes [b0, b0 + n) of a COPY_* row into out, checking identity. */
int hma__plan_chunk_copy(const hma_plan *p, size_t i, uint64_t b0, size_t n, hma__tbuf *tb, void *out) {
    const hma__prow *row = &p->rows[i];
    if (n == 0) return HMA_OK;
    int rc = hma_store_read(p->in[row->src], p->rt[i * p->n_in + row->src], b0, out, n);
    if (rc || row->action != HMA_ACTION_COPY_IDENTICAL) return rc;
    for (size_t j = 1; j < p->n_in; j++) {
        const void *q;
        if ((rc = in_range(p, i, j, b0, n, tb, &q)) != HMA_OK) return rc;
        if (memcmp(out, q, n) == 0) continue;
        size_t k = 0;
        while (((const unsigned char *)out)[k] == ((const unsigned char *)q)[k]) k++;
        hma_dtype dt = hma_tensor_dtype(p->rt[i * p->n_in]);
        int is_int = dt <= HMA_DTYPE_U64;
        return hma__fail(is_int ? HMA_ERR_MISMATCH : HMA_ERR_UNSUPPORTED_DTYPE,
                         "%s: tensor '%s' (%s, cannot be averaged): differs from input 0 (%s) at byte %llu "
                         "(expected identical bytes in every input)",
                         hma__plan_input_path(p, j), row->name, hma_dtype_name(dt), hma__plan_input_path(p, 0),
                         (unsigned long long)(b0 + k));
    }
    return HMA_OK;
}

int hma__plan_row_unusable(const hma_plan *p, size_t i) {
    const hma__prow *row = &p->rows[i];
    if (row->action == HMA_ACTION_MISMATCH)
        return hma__fail(HMA_ERR_MISMATCH,
                         "tensor '%s': %s (expected the same tensor in every input; "
                         "hma_plan_copy_unmatched() copies such tensors from one input)",
                         row->name, row->reason ? row->reason : "inputs disagree");
    if (row->action == HMA_ACTION_SKIP)
        return hma__fail(HMA_ERR_STATE, "tensor '%s': left out of the output (%s)", row->name,
                         row->reason ? row->reason : "unmatched");
    return HMA_OK;
}

/* ---- one-tensor merges (servers, evaluators) -------------------------------------------------- */

int hma_plan_merge_tensor_at(hma_plan *p, size_t i, uint64_t offset, void *buf, size_t len,
                             uint64_t *generation) {
    HMA__CHECK_PLAN(p, "hma_plan_merge_tensor_at");
    if (i >= p->n_rows)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_merge_tensor_at: row %zu out of range (%zu rows)", i,
                         p->n_rows);
    const hma__prow *row = &p->rows[i];
    int rc = hma__plan_row_unusable(p, i);
    if (rc) return rc;
    uint64_t end;
    if (!buf && len) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_merge_tensor_at: NULL buffer");
    if (hma__add_overflows(offset, len, &end) || end > row->out_nbytes)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "tensor '%s': byte range [%llu, +%zu) past its %llu output bytes", row->name,
                         (unsigned long long)offset, len, (unsigned long long)row->out_nbytes);
    unsigned bits = hma_dtype_bits(row->out_dtype);
    size_t osz = bits >= 8 && bits % 8 == 0 ? bits / 8 : 1;
    if (offset % osz || len % osz)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "tensor '%s': byte range [%llu, +%zu) not aligned to its %zu-byte elements (%s)",
                         row->name, (unsigned long long)offset, len, osz, hma_dtype_name(row->out_dtype));
    hma__tbuf tb;
    memset(&tb, 0, sizeof tb);
    if (row->action != HMA_ACTION_MERGE) {
        rc = hma__plan_chunk_copy(p, i, offset, len, &tb, buf);
        if (!rc && generation) *generation = hma_plan_generation(p);
        hma__tbuf_free(&tb);
        return rc;
    }
    double raw[HMA_KMAX_INPUTS];
    uint64_t gen;
    int rmode;
    hma__plan_group_row(p, row->group, raw, &gen, &rmode);
    if (p->method == HMA_METHOD_SLERP) rc = ensure_stats(p, i, &tb);
    hma__mop op;
    if (!rc) rc = hma__plan_row_op(p, i, raw, rmode, &op);
    int path = hma__plan_path(p), check = !(p->flags & HMA_MERGE_ALLOW_NONFINITE);
    uint64_t e0 = offset / osz, n = len / osz;
    for (uint64_t k = 0; !rc && k < n; k += HMA__SERVE_CHUNK) {
        size_t m = (size_t)(n - k < HMA__SERVE_CHUNK ? n - k : HMA__SERVE_CHUNK);
        rc = hma__plan_chunk_merge(p, path, check, i, &op, e0 + k, m, &tb, (unsigned char *)buf + k * osz);
    }
    hma__tbuf_free(&tb);
    if (!rc && generation) *generation = gen;
    return rc;
}

int hma_plan_merge_tensor(hma_plan *p, const char *name, uint64_t offset, void *buf, size_t len,
                          uint64_t *generation) {
    HMA__CHECK_PLAN(p, "hma_plan_merge_tensor");
    if (!name) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_merge_tensor: NULL name");
    size_t i = hma_plan_find(p, name);
    if (i == HMA_NPOS) return hma__fail(HMA_ERR_NOT_FOUND, "tensor '%s': not in any input of the plan", name);
    return hma_plan_merge_tensor_at(p, i, offset, buf, len, generation);
}

