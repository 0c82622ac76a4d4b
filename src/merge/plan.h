/*
 * plan.h - the merge plan's internal model (rows, groups, weights) shared by
 * the files of src/merge/:
 *   plan.c     plan model: creation, rows, groups, rules, structure setters, row queries
 *   weights.c  weights, generations and their getters
 *   serve.c    one-tensor merges and the SLERP statistics cache
 *   run.c      the full merge: chunks on the worker pool into a writer
 *   recipe.c   the "hma_recipe" metadata JSON
 * The per-tensor arithmetic is in methods.c, layer grouping in groups.c.
 */
#ifndef HMA_MERGE_PLAN_H
#define HMA_MERGE_PLAN_H

#include "internal.h"

#include "core/hash.h"
#include "merge/groups.h"
#include "merge/kernels.h"
#include "merge/methods.h"

#include <pthread.h>
#include <stdatomic.h>

/* Row kinds, fixed at creation. */
enum { HMA__ROW_FLOAT = 0, HMA__ROW_RAW = 1, HMA__ROW_UNMATCHED = 2 };

/* Anonymous memory a worker may use for its buffers (inputs + output). */
#define HMA__THREAD_BUF_BYTES ((size_t)6 << 20)
/* Elements per sub-chunk in one-tensor merges (bounds their buffers). */
#define HMA__SERVE_CHUNK ((size_t)16384)

typedef struct hma__prule {
    char *pattern;
    int group;
} hma__prule;

typedef struct hma__prow {
    const char *name; /* borrowed from the first input holding it */
    long layer;
    int is_emb;
    int kind;          /* HMA__ROW_* */
    char *reason;      /* why unmatched, NULL otherwise */
    int group;         /* >= 0, HMA_GROUP_MEAN or HMA_GROUP_NONE */
    hma_action action;
    size_t src;        /* input copied from (COPY_*), else 0 */
    hma_dtype out_dtype;
    uint64_t nelem;
    uint64_t out_nbytes;
    atomic_int stats_ready; /* SLERP statistics cached in stats[] */
    double stats[4];
} hma__prow;

/*
 * The weight state. It lives in its own allocation, apart from the plan, so
 * that the read-only getters can take `const hma_plan *` and still lock:
 * a const plan holds a pointer to a non-const hma__wstate.
 */
typedef struct hma__wstate {
    pthread_mutex_t mu;
    double *W;      /* K x n_in */
    double *ratios; /* K, meaningful when ratio_mode */
    int ratio_mode;
    uint64_t gen;
} hma__wstate;

struct hma_plan {
    size_t n_in;
    hma_store **in;
    size_t n_rows;
    hma__prow *rows;
    const hma_tensor **rt; /* n_rows x n_in, NULL where absent */
    hma__names names;      /* row name -> row index */
    long L;
    hma__groupspec gs;
    size_t K; /* groups; changed only by structural setters (with the weights, under ws->mu) */
    hma__prule *rules;
    size_t n_rules, cap_rules;
    hma_method method;
    size_t base;
    int normalize;
    hma_dtype out_dtype; /* HMA_DTYPE_COUNT = as input 0 */
    int gguf_q8;         /* hma_plan_set_output_gguf_type(): 1 = Q8_0, 0 = auto */
    size_t copy_from;    /* HMA_NPOS = off */
    unsigned flags;
    unsigned threads;
    int simd; /* an hma_simd value or HMA_SIMD_AUTO */
    hma_progress_fn progress;
    void *progress_user;
    char **mkeys, **mvals; /* extra __metadata__ entries (hma_plan_set_metadata) */
    size_t nmeta;
    hma__wstate *ws;
    pthread_mutex_t smu; /* writes of the SLERP statistics cache */
};

#define HMA__CHECK_PLAN(p, fn) \
    if (!(p)) return hma__fail(HMA_ERR_INVALID_ARGUMENT, fn ": NULL plan")

/* ---- plan.c ---- */
const char *hma__plan_input_path(const hma_plan *p, size_t j);
/* The kernel path merges use: the forced level, else hma__cpu_level(). */
int hma__plan_path(const hma_plan *p);

/* ---- weights.c ---- */
/* Uniform weights 1/N (ratio 0.5 for 2 inputs) for K groups; bumps the generation. */
int hma__plan_reset_weights(hma_plan *p, size_t K);
/* Mean placement weights; the caller holds ws->mu. */
void hma__plan_mean_row_locked(const hma_plan *p, double *w);
/* The raw weight row of `group` (or the mean), its generation, and whether
 * it came from ratios (rows (1 - a, a) are never normalized). */
void hma__plan_group_row(const hma_plan *p, int group, double *w, uint64_t *gen, int *ratio_mode);
/* The operation of MERGE row i from its raw weight row (stats ready for SLERP). */
int hma__plan_row_op(const hma_plan *p, size_t i, const double *raw, int ratio_mode, hma__mop *op);

/* ---- serve.c ---- */
/* Per-thread scratch: input buffers (only used when an input is not
 * memory-mapped) and an output buffer. */
typedef struct hma__tbuf {
    void *in[HMA_KMAX_INPUTS];
    size_t in_cap[HMA_KMAX_INPUTS];
    void *out;
} hma__tbuf;

void hma__tbuf_free(hma__tbuf *tb);
/* Statistics of stats chunk `sc` of row i between inputs a and b. */
int hma__plan_stats_chunk(const hma_plan *p, size_t i, size_t a, size_t b, uint64_t sc, hma__tbuf *tb,
                          double out[4]);
uint64_t hma__plan_stats_chunks(uint64_t nelem);
/* Cache row i's SLERP statistics (first writer wins). */
void hma__plan_stats_publish(hma_plan *p, size_t i, const double s[4]);
/* Merge elements [e0, e0 + n) of MERGE row i with op into out. */
int hma__plan_chunk_merge(const hma_plan *p, int path, int check, size_t i, const hma__mop *op, uint64_t e0,
                          size_t n, hma__tbuf *tb, void *out);
/* Copy bytes [b0, b0 + n) of a COPY_* row into out, checking identity. */
int hma__plan_chunk_copy(const hma_plan *p, size_t i, uint64_t b0, size_t n, hma__tbuf *tb, void *out);
/* HMA_ERR_MISMATCH / HMA_ERR_STATE for a row that cannot be produced, else HMA_OK. */
int hma__plan_row_unusable(const hma_plan *p, size_t i);

/* ---- recipe.c ---- */
/* The "hma_recipe" metadata (malloc'd, NULL on OOM): what was merged, how,
 * with which weights (W: K x N snapshot, mean: N, ratios: K when ratio_mode). */
char *hma__plan_recipe(const hma_plan *p, const double *W, const double *mean, int ratio_mode,
                       const double *ratios, uint64_t gen);

#endif /* HMA_MERGE_PLAN_H */
