/*
 * mk_stock.c - mergekit's model_stock (mergekit/merge_methods/
 * model_stock.py): the interpolation factor t from the mean pairwise cosine
 * of the models' offsets from the base, per tensor or (filter_wise) per row,
 * then t * mean(models) + (1 - t) * base.
 */
#include "mergekit/mk.h"

#include <math.h>

typedef struct stock_arg {
    const hma__mk_job *job;
    const float *w0;
    hma__mk_vecs vs;
    const float *t; /* per vector: t, then 1 - t (float32, as torch) */
    float n;        /* len(ws) */
} stock_arg;

static int stock_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const stock_arg *a = arg;
    const hma__mk_job *job = a->job;
    hma__mk_vit it = hma__mk_vit_at(&a->vs, e0);
    for (uint64_t e = e0; e < e1; e++, hma__mk_vit_next(&it, a->vs.len)) {
        /* w_avg = sum(ws) / len(ws): Python's sum starts at 0 (so -0 becomes
         * +0) and adds in order. */
        float s = 0.0f;
        for (size_t i = 0; i < job->n_in; i++)
            if ((long)i != job->base) s += job->x[i][e];
        float avg = s / a->n;
        job->out[e] = a->t[2 * it.v] * avg + a->t[2 * it.v + 1] * a->w0[e];
    }
    return HMA_OK;
}

int hma__mk_run_model_stock(const hma__mk_job *job) {
    size_t N = job->n_in - 1;
    int filter_wise = hma__mk_get(job, job->global, HMA__P_FILTER_WISE) != 0.0;
    stock_arg a;
    a.job = job;
    a.w0 = job->x[job->base];
    /* filter_wise: rows of the last dimension (a 1-D tensor is one row, as
     * mergekit's unsqueeze(0)); else the flattened tensor. */
    a.vs = filter_wise ? hma__mk_vecs_rows(job) : hma__mk_vecs_flat(job->n);
    a.n = (float)N;
    uint64_t m = a.vs.m;
    size_t P = N * (N + 1) / 2;
    const float **src = hma__malloc(N * sizeof *src);
    double *g = hma__malloc(m * P * sizeof *g);
    float *t = hma__malloc(m * 2 * sizeof *t);
    int rc = HMA_OK;
    if (!src || !g || !t) rc = hma__fail(HMA_ERR_NO_MEMORY, "tensor '%s': out of memory", job->name);
    if (rc == HMA_OK) {
        size_t k = 0;
        for (size_t i = 0; i < job->n_in; i++)
            if ((long)i != job->base) src[k++] = job->x[i];
        /* offsets = w - w_0 (float32), then their Gram sums */
        rc = hma__mk_gram(job->threads, &a.vs, src, N, a.w0, g);
    }
    if (rc == HMA_OK) {
        double npairs = (double)(N * (N - 1) / 2);
        for (uint64_t v = 0; v < m; v++) {
            const double *gv = g + v * P;
            double cs = 0.0;
            for (size_t i = 0; i < N; i++)
                for (size_t j = i + 1; j < N; j++) {
                    double np = sqrt(gv[hma__mk_tri(i, i, N)]) * sqrt(gv[hma__mk_tri(j, j, N)]);
                    double c = gv[hma__mk_tri(i, j, N)] / (np > 1e-6 ? np : 1e-6);
                    if (c < -1.0) c = -1.0; /* clamp(-1, 1); NaN stays NaN */
                    if (c > 1.0) c = 1.0;
                    cs += c;
                }
            cs /= npairs;
            float tf = (float)((double)N * cs / (1.0 + (double)(N - 1) * cs));
            t[2 * v] = tf;
            t[2 * v + 1] = 1.0f - tf; /* (1 - t) on the float32 tensor t */
        }
        a.t = t;
        rc = hma__mk_for(job->threads, job->n, stock_chunk, &a);
    }
    hma__free(src);
    hma__free(g);
    hma__free(t);
    return rc;
}
