/*
 * run.c - the full merge: every row of the plan cut into chunks, merged or
 * copied on the worker pool (core/pool.h) and streamed into a writer, with
 * byte progress and cancel. hma_plan_merge_into() fills a caller's writer;
 * hma_plan_merge_to() creates, fills and commits one.
 */
#include "merge/plan.h"

#include "core/pool.h"

#include <string.h>

/* One output tensor's run of jobs. */
typedef struct mrow {
    size_t row;
    size_t widx;    /* writer index */
    uint64_t first; /* first job number */
    uint64_t njobs;
} mrow;

typedef struct mctx {
    hma_plan *p;
    hma_writer *w;
    int path, check;
    uint64_t ch;    /* elements per merge chunk (bytes per copy chunk: ch * 8) */
    double *W;      /* weight snapshot, K x N */
    double mean[HMA_KMAX_INPUTS];
    int ratio_mode; /* the snapshot came from ratios */
    const mrow *jr; /* job ranges of the current phase */
    size_t n_jr;
    double *part;   /* stats phase: 4 doubles per stats chunk */
    int phase;      /* 0 = SLERP statistics, 1 = merge */
    hma__tbuf *tb;  /* one per pool worker */
    uint64_t total; /* output bytes */
    atomic_uint_fast64_t done; /* output bytes written so far */
} mctx;

static const mrow *job_range(const mctx *c, uint64_t j) {
    size_t lo = 0, hi = c->n_jr; /* last range with first <= j */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->jr[mid].first <= j) lo = mid; else hi = mid;
    }
    return &c->jr[lo];
}

/* hma__job_fn: one chunk of the current phase. */
static int run_job(void *arg, uint64_t j, unsigned worker) {
    mctx *c = arg;
    hma_plan *p = c->p;
    hma__tbuf *tb = &c->tb[worker];
    const mrow *m = job_range(c, j);
    uint64_t k = j - m->first;
    const hma__prow *row = &p->rows[m->row];
    if (c->phase == 0) return hma__plan_stats_chunk(p, m->row, 0, 1, k, tb, c->part + 4 * j);
    if (!tb->out && !(tb->out = hma__malloc((size_t)c->ch * 8)))
        return hma__fail(HMA_ERR_NO_MEMORY, "merge: out of memory for a chunk buffer");
    int rc;
    size_t n;
    uint64_t off;
    if (row->action == HMA_ACTION_MERGE) {
        uint64_t e0 = k * c->ch;
        n = (size_t)(row->nelem - e0 < c->ch ? row->nelem - e0 : c->ch);
        const double *raw = row->group >= 0 ? c->W + (size_t)row->group * p->n_in : c->mean;
        hma__mop op;
        rc = hma__plan_row_op(p, m->row, raw, c->ratio_mode, &op);
        if (!rc) rc = hma__plan_chunk_merge(p, c->path, c->check, m->row, &op, e0, n, tb, tb->out);
        off = e0 * hma__kdtype_size(row->out_dtype);
        n *= hma__kdtype_size(row->out_dtype);
    } else {
        uint64_t cb = c->ch * 8;
        off = k * cb;
        n = (size_t)(row->out_nbytes - off < cb ? row->out_nbytes - off : cb);
        rc = hma__plan_chunk_copy(p, m->row, off, n, tb, tb->out);
    }
    if (!rc) rc = hma_writer_write(c->w, m->widx, off, tb->out, n);
    if (!rc) atomic_fetch_add(&c->done, (uint_fast64_t)n);
    return rc;
}

/* hma__progress_cb: the user's callback sees output bytes, not jobs. The
 * pool calls it on this thread after jobs finish and once at the end, when
 * every byte is written (done == total). */
static int report(void *arg, uint64_t jobs_done, uint64_t njobs) {
    (void)jobs_done;
    (void)njobs;
    mctx *c = arg;
    int ret = c->p->progress(c->p->progress_user, atomic_load(&c->done), c->total);
    return hma__callback_result(ret, "merge: progress callback");
}

/* Run the current phase's jobs on the pool; per-worker buffers live for the phase. */
static int run_phase(mctx *c, uint64_t njobs) {
    hma_plan *p = c->p;
    unsigned nt = hma__pool_threads(p->threads, njobs);
    c->tb = hma__calloc(nt, sizeof *c->tb);
    if (!c->tb) return hma__fail(HMA_ERR_NO_MEMORY, "merge: out of memory for %u threads", nt);
    int rc = hma__pool_run(njobs, p->threads, run_job, c, p->progress ? report : NULL, c);
    for (unsigned t = 0; t < nt; t++) hma__tbuf_free(&c->tb[t]);
    hma__free(c->tb);
    c->tb = NULL;
    return rc;
}

/* Phase 0: the SLERP statistics of the merged rows not cached yet. */
static int slerp_stats(mctx *c, const mrow *rows, size_t nw) {
    hma_plan *p = c->p;
    mrow *sr = hma__calloc(nw ? nw : 1, sizeof *sr);
    if (!sr) return hma__fail(HMA_ERR_NO_MEMORY, "merge: out of memory");
    size_t ns = 0;
    uint64_t nsj = 0;
    for (size_t k = 0; k < nw; k++) {
        const hma__prow *row = &p->rows[rows[k].row];
        if (row->action != HMA_ACTION_MERGE || atomic_load(&row->stats_ready)) continue;
        sr[ns].row = rows[k].row;
        sr[ns].first = nsj;
        sr[ns].njobs = hma__plan_stats_chunks(row->nelem);
        nsj += sr[ns].njobs;
        ns++;
    }
    int rc = HMA_OK;
    if (nsj) {
        c->part = nsj <= SIZE_MAX / (4 * sizeof(double)) ? hma__malloc(nsj * 4 * sizeof(double)) : NULL;
        if (!c->part) {
            hma__free(sr);
            return hma__fail(HMA_ERR_NO_MEMORY, "merge: out of memory for statistics");
        }
        c->phase = 0;
        c->jr = sr;
        c->n_jr = ns;
        rc = run_phase(c, nsj);
        for (size_t k = 0; k < ns && !rc; k++) {
            double acc[4] = {0, 0, 0, 0};
            for (uint64_t q = 0; q < sr[k].njobs; q++)
                for (int e = 0; e < 4; e++) acc[e] += c->part[4 * (sr[k].first + q) + e];
            hma__plan_stats_publish(p, sr[k].row, acc);
        }
        hma__free(c->part);
        c->part = NULL;
    }
    hma__free(sr);
    return rc;
}

/* Set `key` on the writer unless the caller already did (the caller's keys win). */
static int meta_default(hma_writer *w, const char *key, const char *value) {
    if (hma__writer_has_metadata(w, key)) return HMA_OK;
    return hma_writer_set_metadata(w, key, value);
}

/* The plan's value for `key` (hma_plan_set_metadata), or NULL. */
static const char *plan_meta(const hma_plan *p, const char *key) {
    for (size_t k = 0; k < p->nmeta; k++)
        if (strcmp(p->mkeys[k], key) == 0) return p->mvals[k];
    return NULL;
}

/* Metadata in this order (the writer keeps the order of first setting):
 * format, hma_recipe, then the plan's other entries in the order set.
 * Precedence: the caller's writer keys, then the plan's entries, then the
 * built-in format/hma_recipe values. */
static int set_metadata(const hma_plan *p, hma_writer *w, const char *recipe) {
    if (hma__writer_is_gguf(w)) {
        /* GGUF: the plan's keys, "hma.recipe", then every key of input 0
         * (a GGUF file: typed, byte for byte) not set already. */
        int rc = HMA_OK;
        for (size_t k = 0; k < p->nmeta && !rc; k++) rc = meta_default(w, p->mkeys[k], p->mvals[k]);
        if (!rc) rc = meta_default(w, "hma.recipe", recipe);
        if (!rc) rc = hma_writer_copy_metadata(w, p->in[0]);
        return rc;
    }
    const char *f = plan_meta(p, "format"), *r = plan_meta(p, "hma_recipe");
    int rc = meta_default(w, "format", f ? f : "pt");
    if (!rc) rc = meta_default(w, "hma_recipe", r ? r : recipe);
    for (size_t k = 0; k < p->nmeta && !rc; k++) {
        if (strcmp(p->mkeys[k], "format") == 0 || strcmp(p->mkeys[k], "hma_recipe") == 0) continue;
        rc = meta_default(w, p->mkeys[k], p->mvals[k]);
    }
    return rc;
}

/* GGUF outputs: the ggml type of row i (writer tensor widx), declared F32
 * when it is a quantized type (hma_plan_set_output_gguf_type()). */
static int gguf_type(const hma_plan *p, size_t i, hma_writer *w, size_t widx) {
    const hma__prow *row = &p->rows[i];
    const hma_tensor *t = p->rt[i * p->n_in + (row->action == HMA_ACTION_MERGE ? 0 : row->src)];
    if (row->out_dtype != HMA_DTYPE_F32) return HMA_OK;
    unsigned nd = hma_tensor_ndim(t);
    const uint64_t *sh = hma_tensor_shape(t);
    if (p->gguf_q8) {
        if (nd >= 2 && sh[nd - 1] % 32 == 0) return hma_writer_set_gguf_type(w, widx, HMA_GGUF_Q8_0);
        return HMA_OK;
    }
    hma_gguf_type gt = hma_tensor_gguf_type(t);
    if (p->out_dtype != HMA_DTYPE_COUNT || gt < 0 || gt == HMA_GGUF_F32) return HMA_OK;
    /* A quantized tensor of input 0: Q8_0 again, other types (which libhma
     * cannot write exactly) as F16. */
    return hma_writer_set_gguf_type(w, widx, gt == HMA_GGUF_Q8_0 ? HMA_GGUF_Q8_0 : HMA_GGUF_F16);
}

int hma_plan_merge_into(hma_plan *p, hma_writer *w) {
    HMA__CHECK_PLAN(p, "hma_plan_merge_into");
    if (!w) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_merge_into: NULL writer");
    if (hma_writer_count(w) != 0)
        return hma__fail(HMA_ERR_STATE, "hma_plan_merge_into: the writer already has %zu tensors declared "
                                        "(expected a new writer from hma_writer_create())",
                         hma_writer_count(w));
    int rc;
    for (size_t i = 0; i < p->n_rows; i++)
        if (p->rows[i].action == HMA_ACTION_MISMATCH) return hma__plan_row_unusable(p, i);

    mctx c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.done, 0);
    c.p = p;
    c.w = w;
    c.path = hma__plan_path(p);
    c.check = !(p->flags & HMA_MERGE_ALLOW_NONFINITE);
    /* Chunk size: (N inputs + output) x 8-byte elements fit a thread's budget. */
    c.ch = HMA__THREAD_BUF_BYTES / ((p->n_in + 1) * 8);
    if (c.ch > ((uint64_t)1 << 18)) c.ch = (uint64_t)1 << 18;
    c.ch -= c.ch % 4096;
    char *recipe = NULL;
    mrow *rows = hma__calloc(p->n_rows ? p->n_rows : 1, sizeof *rows);
    c.W = hma__malloc(p->K * p->n_in * sizeof *c.W);
    double *ratios = hma__malloc(p->K * sizeof *ratios);
    if (!rows || !c.W || !ratios) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_merge_into: out of memory");
        goto done;
    }
    /* One consistent weight snapshot for the whole merge. */
    pthread_mutex_lock(&p->ws->mu);
    memcpy(c.W, p->ws->W, p->K * p->n_in * sizeof *c.W);
    memcpy(ratios, p->ws->ratios, p->K * sizeof *ratios);
    c.ratio_mode = p->ws->ratio_mode;
    uint64_t gen = p->ws->gen;
    hma__plan_mean_row_locked(p, c.mean);
    pthread_mutex_unlock(&p->ws->mu);

    /* Validate the weights of every merged row before declaring anything. */
    if (p->method != HMA_METHOD_SLERP)
        for (size_t i = 0; i < p->n_rows; i++) {
            if (p->rows[i].action != HMA_ACTION_MERGE) continue;
            hma__mop op;
            const double *raw = p->rows[i].group >= 0 ? c.W + (size_t)p->rows[i].group * p->n_in : c.mean;
            if ((rc = hma__plan_row_op(p, i, raw, c.ratio_mode, &op)) != HMA_OK) goto done;
        }

    recipe = hma__plan_recipe(p, c.W, c.mean, c.ratio_mode, ratios, gen);
    if (!recipe) {
        rc = hma__fail(HMA_ERR_NO_MEMORY, "hma_plan_merge_into: out of memory for the recipe");
        goto done;
    }
    if ((rc = set_metadata(p, w, recipe)) != HMA_OK) goto done;
    size_t nw = 0;
    for (size_t i = 0; i < p->n_rows; i++) {
        const hma__prow *row = &p->rows[i];
        if (row->action == HMA_ACTION_SKIP) continue;
        const hma_tensor *t = p->rt[i * p->n_in + row->src];
        if ((rc = hma_writer_add_tensor(w, row->name, row->out_dtype, hma_tensor_ndim(t), hma_tensor_shape(t))) !=
            HMA_OK)
            goto done;
        if (hma__writer_is_gguf(w) && (rc = gguf_type(p, i, w, nw)) != HMA_OK) goto done;
        rows[nw].row = i;
        rows[nw].widx = nw;
        nw++;
    }
    if ((rc = hma_writer_begin(w)) != HMA_OK) goto done;
    /* The jobs: every row this writer writes (a part of a partitioned
     * output writes only the rows in its own shards; finalize none). */
    size_t nown = 0;
    uint64_t njobs = 0;
    for (size_t k = 0; k < nw; k++) {
        if (!hma__writer_tensor_owned(w, rows[k].widx)) continue;
        const hma__prow *row = &p->rows[rows[k].row];
        uint64_t units = row->action == HMA_ACTION_MERGE ? row->nelem : row->out_nbytes;
        uint64_t per = row->action == HMA_ACTION_MERGE ? c.ch : c.ch * 8;
        rows[nown] = rows[k];
        rows[nown].first = njobs;
        rows[nown].njobs = (units + per - 1) / per;
        njobs += rows[nown].njobs;
        c.total += row->out_nbytes;
        nown++;
    }
    nw = nown;

    if (p->method == HMA_METHOD_SLERP && (rc = slerp_stats(&c, rows, nw)) != HMA_OK) goto done;
    /* Phase 1: merge and copy chunks into the writer. */
    c.phase = 1;
    c.jr = rows;
    c.n_jr = nw;
    rc = run_phase(&c, njobs);
done:
    hma__free(c.W);
    hma__free(ratios);
    hma__free(recipe);
    hma__free(rows);
    return rc;
}

int hma_plan_merge_to(hma_plan *p, const char *path, uint64_t shard_size) {
    HMA__CHECK_PLAN(p, "hma_plan_merge_to");
    if (!path || !*path) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_plan_merge_to: empty output path");
    for (size_t i = 0; i < p->n_rows; i++)
        if (p->rows[i].action == HMA_ACTION_MISMATCH) return hma__plan_row_unusable(p, i);
    hma_writer *w = NULL;
    int rc = hma_writer_create(&w, path, shard_size);
    if (!rc) rc = hma_plan_merge_into(p, w);
    if (!rc) rc = hma_writer_commit(w);
    hma_writer_free(w);
    return rc;
}
