/*
 * mk_parallel.c - the chunked loops of mergekit's methods: [0, n) cut into
 * fixed chunks of HMA__MK_CHUNK elements, run on the one worker pool.
 * Chunk boundaries never depend on the thread count, so per-chunk partial
 * sums added in chunk order give the same double for any thread count.
 */
#include "mergekit/mk.h"

#include "core/pool.h"

typedef struct mk_for_arg {
    uint64_t n;
    hma__mk_chunk_fn fn;
    void *arg;
} mk_for_arg;

static int mk_for_job(void *arg, uint64_t job, unsigned worker) {
    (void)worker;
    const mk_for_arg *a = arg;
    uint64_t e0, e1;
    hma__mk_chunk_range(a->n, job, &e0, &e1);
    return a->fn(a->arg, job, e0, e1);
}

uint64_t hma__mk_chunks(uint64_t n) { return (n + HMA__MK_CHUNK - 1) / HMA__MK_CHUNK; }

int hma__mk_for(unsigned threads, uint64_t n, hma__mk_chunk_fn fn, void *arg) {
    if (n == 0) return HMA_OK;
    mk_for_arg a = {n, fn, arg};
    uint64_t nc = hma__mk_chunks(n);
    if (nc == 1) return fn(arg, 0, 0, n); /* no thread start for small tensors */
    return hma__pool_run(nc, threads, mk_for_job, &a, NULL, NULL);
}

double hma__mk_sum_parts(const double *part, uint64_t nchunks) {
    double s = 0.0;
    for (uint64_t c = 0; c < nchunks; c++) s += part[c];
    return s;
}

/* ---- the workspace ---------------------------------------------------- */

void *hma__mk_ws_take_n(hma__mk_ws *ws, unsigned slot, size_t bytes, size_t *got) {
    if (!bytes) bytes = 1;
    if (!ws) {
        *got = bytes;
        return hma__malloc(bytes);
    }
    if (ws->cap[slot] < bytes) {
        size_t want = ws->cap[slot] && ws->cap[slot] <= SIZE_MAX / 2 && 2 * ws->cap[slot] > bytes ? 2 * ws->cap[slot]
                                                                                                   : bytes;
        hma__free(ws->p[slot]);
        ws->p[slot] = hma__malloc(want);
        ws->cap[slot] = ws->p[slot] ? want : 0;
    }
    *got = ws->cap[slot];
    return ws->p[slot];
}

void *hma__mk_ws_take(hma__mk_ws *ws, unsigned slot, size_t bytes) {
    size_t got;
    return hma__mk_ws_take_n(ws, slot, bytes, &got);
}

void hma__mk_ws_give(hma__mk_ws *ws, void *p) {
    if (!ws) hma__free(p);
}

void hma__mk_ws_free(hma__mk_ws *ws) {
    for (unsigned s = 0; s < HMA__MK_WS_SLOTS; s++) {
        hma__free(ws->p[s]);
        ws->p[s] = NULL;
        ws->cap[s] = 0;
    }
}
