/*
 * mk_sparsify.c - mergekit's sparsification of one task vector
 * (mergekit/sparsify.py): magnitude (TIES), magnitude_outliers
 * (breadcrumbs), bernoulli (DARE), della_magprune (DELLA), and the L1
 * rescale of rescaled_masked_tensor.
 *
 * The plan_* functions only decide (a mask and a rescale factor) so that
 * mk_gta.c can apply them on the fly in its one combining pass; the
 * hma__mk_<method> functions of mk.h apply them in place.
 *
 * Rescale (RescaleNorm.l1): before = sum |d|, after = sum |kept d|, both in
 * double per fixed chunk added in chunk order; no rescale when either is
 * below 1e-7, else kept elements are multiplied by (float)(before / after).
 */
#include "mergekit/mk_sparse.h"

#include "core/pool.h"

#include <math.h>

float hma__mk_rescale_factor(double before, double after) {
    if (before < 1e-7 || after < 1e-7) return 1.0f;
    return (float)(before / after);
}

void hma__mk_mask_free(hma__mk_mask *m) {
    hma__mk_cut_free(&m->a);
    hma__mk_cut_free(&m->b);
    m->kind = HMA__MK_KEEP_ALL;
}

/* int(x * n) of Python for x >= 0 (x <= 0 gives 0). */
static uint64_t mk_count_of(double x, uint64_t n) {
    double v = x * (double)n;
    if (!(v > 0.0)) return 0;
    if (v >= (double)n) return n;
    return (uint64_t)v;
}

/* ---- masks applied or summed over parts ------------------------------- */

typedef struct mask_pass_arg {
    const hma__mk_parts *pt;
    float *a;                  /* apply: the delta, masked in place */
    const hma__mk_keys *keys;  /* sum: keys |a - b| or |a| */
    const hma__mk_mask *mask;
    float factor;
    double *chunk_sum;
} mask_pass_arg;

/* After-sum of the L1 rescale: sum |d| of the kept elements, per chunk. */
static int kept_l1_part(void *arg, unsigned p, unsigned worker) {
    (void)worker;
    const mask_pass_arg *a = arg;
    hma__mk_mask_cur cur = hma__mk_mask_start(a->mask, p);
    uint64_t c0, c1;
    hma__mk_part_chunks(a->pt, p, &c0, &c1);
    float buf[2 * HMA__MK_BLK];
    int delta = hma__mk_keys_delta(a->keys);
    for (uint64_t c = c0; c < c1; c++) {
        uint64_t e0, e1;
        hma__mk_chunk_range(a->pt->n, c, &e0, &e1);
        double s = 0.0;
        for (uint64_t e = e0; e < e1; e += HMA__MK_BLK) {
            size_t len = e1 - e < HMA__MK_BLK ? (size_t)(e1 - e) : HMA__MK_BLK;
            const float *x = hma__mk_in_block(&a->keys->a, e, len, buf);
            const float *b = delta ? hma__mk_in_block(&a->keys->b, e, len, buf + HMA__MK_BLK) : NULL;
            for (size_t j = 0; j < len; j++) {
                float d = b ? x[j] - b[j] : x[j];
                if (hma__mk_mask_keep(a->mask, hma__mk_key_bits(d), &cur)) s += fabs((double)d);
            }
        }
        a->chunk_sum[c] = s;
    }
    return HMA_OK;
}

static int apply_part(void *arg, unsigned p, unsigned worker) {
    (void)worker;
    const mask_pass_arg *a = arg;
    hma__mk_mask_cur cur = hma__mk_mask_start(a->mask, p);
    uint64_t c0, c1, e0, e1, tmp;
    hma__mk_part_chunks(a->pt, p, &c0, &c1);
    hma__mk_chunk_range(a->pt->n, c0, &e0, &tmp);
    hma__mk_chunk_range(a->pt->n, c1 - 1, &tmp, &e1);
    for (uint64_t e = e0; e < e1; e++)
        a->a[e] = hma__mk_mask_keep(a->mask, hma__mk_key_bits(a->a[e]), &cur) ? a->a[e] * a->factor : 0.0f;
    return HMA_OK;
}

/* Factor of a planned mask: `before` per chunk is given, `after` summed here. */
static int mask_factor(const hma__mk_parts *pt, const hma__mk_keys *keys, const hma__mk_mask *mask,
                       double *chunk, float *factor) {
    double before = hma__mk_sum_parts(chunk, pt->nchunks);
    mask_pass_arg a = {pt, NULL, keys, mask, 1.0f, chunk};
    int rc = hma__mk_parts_run(pt, kept_l1_part, &a);
    if (rc != HMA_OK) return rc;
    double after = hma__mk_sum_parts(chunk, pt->nchunks);
    *factor = hma__mk_rescale_factor(before, after);
    return HMA_OK;
}

/* ---- magnitude and breadcrumbs ---------------------------------------- */

int hma__mk_plan_magnitude(const hma__mk_parts *pt, const hma__mk_keys *keys, double density, int rescale,
                           hma__mk_mask *mask, float *factor) {
    memset(mask, 0, sizeof *mask);
    *factor = 1.0f;
    /* sparsify.magnitude: density >= 1 returns the tensor, unrescaled. */
    if (density >= 1.0) return HMA_OK;
    uint64_t k = mk_count_of(density, pt->n);
    if (k == 0) {
        /* mergekit asserts k > 0 (validation refuses it); nothing survives. */
        mask->kind = HMA__MK_KEEP_NONE;
        return HMA_OK;
    }
    double *chunk = NULL;
    if (rescale && !(chunk = hma__malloc(pt->nchunks * sizeof *chunk)))
        return hma__fail(HMA_ERR_NO_MEMORY, "out of memory (rescale sums)");
    hma__mk_sel s;
    int rc = hma__mk_sel_init(&s, pt);
    s.one_cut = 1;
    if (rc == HMA_OK) {
        rc = hma__mk_sel_count(&s, keys, chunk, k, 1);
        if (rc == HMA_OK) rc = hma__mk_sel_cut(&s, keys, k, 1, &mask->a);
        hma__mk_sel_free(&s);
    }
    mask->kind = HMA__MK_KEEP_TOP;
    if (rc == HMA_OK && rescale) rc = mask_factor(pt, keys, mask, chunk, factor);
    hma__free(chunk);
    if (rc != HMA_OK) hma__mk_mask_free(mask);
    return rc;
}

/*
 * sparsify.magnitude_outliers: target = int(density n), n_top = int(gamma n),
 * n_bot = n - target - n_top, negative n_bot pulls n_top down; keep the
 * ascending positions [n_bot, n - n_top). mergekit's slice indices[n_bot:-n_top]
 * is empty when n_top == 0 and drops the whole delta: libhma keeps
 * [n_bot, n) then (a deliberate difference, issue 12).
 */
int hma__mk_plan_breadcrumbs(const hma__mk_parts *pt, const hma__mk_keys *keys, double density, double gamma,
                             int rescale, hma__mk_mask *mask, float *factor) {
    memset(mask, 0, sizeof *mask);
    *factor = 1.0f;
    if (density >= 1.0) return HMA_OK;
    uint64_t n = pt->n;
    int64_t target = (int64_t)mk_count_of(density, n);
    int64_t n_top = (int64_t)mk_count_of(gamma, n);
    int64_t n_bot = (int64_t)n - target - n_top;
    if (n_bot < 0) {
        n_top += n_bot;
        n_bot = 0;
    }
    uint64_t lo = (uint64_t)n_bot, hi = n - (uint64_t)n_top;
    if (hi <= lo) {
        mask->kind = HMA__MK_KEEP_NONE;
        return HMA_OK;
    }
    if (lo == 0 && hi >= n) return HMA_OK; /* everything kept: before == after, factor 1 */
    double *chunk = NULL;
    if (rescale && !(chunk = hma__malloc(pt->nchunks * sizeof *chunk)))
        return hma__fail(HMA_ERR_NO_MEMORY, "out of memory (rescale sums)");
    hma__mk_sel s;
    int rc = hma__mk_sel_init(&s, pt);
    if (rc == HMA_OK) {
        rc = hma__mk_sel_count(&s, keys, chunk, lo ? lo : hi, 0);
        if (rc == HMA_OK) rc = hma__mk_sel_cut(&s, keys, lo, 0, &mask->a);
        if (rc == HMA_OK) rc = hma__mk_sel_cut(&s, keys, hi, 0, &mask->b);
        hma__mk_sel_free(&s);
    }
    mask->kind = HMA__MK_KEEP_BAND;
    if (rc == HMA_OK && rescale) rc = mask_factor(pt, keys, mask, chunk, factor);
    hma__free(chunk);
    if (rc != HMA_OK) hma__mk_mask_free(mask);
    return rc;
}

static int apply_mask(const hma__mk_parts *pt, float *d, const hma__mk_mask *mask, float factor) {
    if (mask->kind == HMA__MK_KEEP_ALL) return factor == 1.0f ? HMA_OK : hma__mk_scale(pt->threads, d, pt->n, factor);
    if (mask->kind == HMA__MK_KEEP_NONE) {
        memset(d, 0, pt->n * sizeof *d);
        return HMA_OK;
    }
    mask_pass_arg a = {pt, d, NULL, mask, factor, NULL};
    return hma__mk_parts_run(pt, apply_part, &a);
}

int hma__mk_magnitude(unsigned threads, float *d, uint64_t n, double density, int rescale) {
    hma__mk_parts pt;
    hma__mk_parts_init(&pt, n, threads, NULL);
    hma__mk_keys keys = hma__mk_keys_f(d, NULL);
    hma__mk_mask mask;
    float f;
    int rc = hma__mk_plan_magnitude(&pt, &keys, density, rescale, &mask, &f);
    if (rc != HMA_OK) return rc;
    rc = apply_mask(&pt, d, &mask, f);
    hma__mk_mask_free(&mask);
    return rc;
}

int hma__mk_breadcrumbs(unsigned threads, float *d, uint64_t n, double density, double gamma, int rescale) {
    hma__mk_parts pt;
    hma__mk_parts_init(&pt, n, threads, NULL);
    hma__mk_keys keys = hma__mk_keys_f(d, NULL);
    hma__mk_mask mask;
    float f;
    int rc = hma__mk_plan_breadcrumbs(&pt, &keys, density, gamma, rescale, &mask, &f);
    if (rc != HMA_OK) return rc;
    rc = apply_mask(&pt, d, &mask, f);
    hma__mk_mask_free(&mask);
    return rc;
}

/* ---- element-wise chunk loops ----------------------------------------- */

typedef struct chunk_arg {
    float *a;
    const float *b;
    float f;
    float p;       /* DARE: keep probability as float */
    uint64_t key;
    double *before, *after;
} chunk_arg;

static int scale_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const chunk_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++) a->a[e] *= a->f;
    return HMA_OK;
}

int hma__mk_scale(unsigned threads, float *d, uint64_t n, float f) {
    chunk_arg a = {.a = d, .f = f};
    return hma__mk_for(threads, n, scale_chunk, &a);
}

static int delta_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const chunk_arg *a = arg;
    for (uint64_t e = e0; e < e1; e++) a->a[e] -= a->b[e];
    return HMA_OK;
}

static int l1_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    const chunk_arg *a = arg;
    double s = 0.0;
    for (uint64_t e = e0; e < e1; e++) s += fabs((double)a->a[e]);
    a->before[c] = s;
    return HMA_OK;
}

/* sparsify.bernoulli: torch.bernoulli(full(density)) as the counter-based
 * draw uniform < (float)density (mk_rng.c). */
static int dare_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    const chunk_arg *a = arg;
    float *x = a->a;
    const float *b = a->b;
    const float p = a->p;
    const uint64_t key = a->key;
    double sb = 0.0, sa = 0.0;
    for (uint64_t e = e0; e < e1; e++) {
        float d = b ? x[e] - b[e] : x[e];
        double m = fabs((double)d);
        /* tensor * mask as mergekit: a product, not a branch (the draw is
         * unpredictable, and compilers turn a select back into a jump) */
        float keep = (float)(hma__mk_uniform(key, e) < p);
        sb += m;
        sa += m * (double)keep;
        x[e] = d * keep;
    }
    if (a->before) {
        a->before[c] = sb;
        a->after[c] = sa;
    }
    return HMA_OK;
}

int hma__mk_dare_core(unsigned threads, float *a, const float *b, uint64_t n, double density, int rescale,
                      uint64_t key, float *factor) {
    *factor = 1.0f;
    if (density >= 1.0) {
        chunk_arg da = {.a = a, .b = b};
        return b ? hma__mk_for(threads, n, delta_chunk, &da) : HMA_OK;
    }
    uint64_t nc = hma__mk_chunks(n);
    double *sums = NULL;
    if (rescale && nc && !(sums = hma__malloc(2 * nc * sizeof *sums)))
        return hma__fail(HMA_ERR_NO_MEMORY, "out of memory (rescale sums)");
    chunk_arg ca = {.a = a, .b = b, .p = (float)density, .key = key,
                    .before = sums, .after = sums ? sums + nc : NULL};
    int rc = hma__mk_for(threads, n, dare_chunk, &ca);
    if (rc == HMA_OK && sums)
        *factor = hma__mk_rescale_factor(hma__mk_sum_parts(sums, nc), hma__mk_sum_parts(sums + nc, nc));
    hma__free(sums);
    return rc;
}

int hma__mk_dare(unsigned threads, float *d, uint64_t n, double density, int rescale, uint64_t key) {
    float f;
    int rc = hma__mk_dare_core(threads, d, NULL, n, density, rescale, key, &f);
    if (rc == HMA_OK && f != 1.0f) rc = hma__mk_scale(threads, d, n, f);
    return rc;
}

/* ---- DELLA ------------------------------------------------------------ */

/*
 * sparsify.della_magprune, per row of the rows x cols view: rank r in
 * 1..cols with the largest |d| ranked cols (order |d| descending, equal
 * |d| by ascending index, r = cols - position); in float32 as torch does:
 * rank_norm = (float)(r - 1) / (float)(cols - 1) (0 when cols == 1, where
 * mergekit divides 0 by 0 and torch.bernoulli refuses the NaN),
 * p = (float)(density - epsilon) + rank_norm * 2.0f * (float)epsilon;
 * keep iff uniform(key, flat index) < p.
 */
typedef struct della_arg {
    float *d;
    uint64_t rows, cols, rows_per_job;
    float base_p, eps;
    uint64_t key;
    uint32_t *scratch; /* per worker: 4 * cols + 2048 */
} della_arg;

/* Stable LSD radix sort of idx by key ascending (keys < 2^31): digits of
 * 11, 11 and 9 bits; equal keys keep their (ascending index) order. */
static void della_sort(uint32_t *key, uint32_t *idx, uint32_t *k2, uint32_t *i2, uint32_t *cnt, uint64_t n) {
    static const unsigned shift[3] = {0, 11, 22};
    for (int pass = 0; pass < 3; pass++) {
        unsigned sh = shift[pass];
        memset(cnt, 0, 2048 * sizeof *cnt);
        for (uint64_t i = 0; i < n; i++) cnt[(key[i] >> sh) & 2047u]++;
        if (cnt[(key[0] >> sh) & 2047u] == n) continue; /* one digit value: nothing moves */
        uint32_t sum = 0;
        for (unsigned b = 0; b < 2048; b++) {
            uint32_t t = cnt[b];
            cnt[b] = sum;
            sum += t;
        }
        for (uint64_t i = 0; i < n; i++) {
            uint32_t pos = cnt[(key[i] >> sh) & 2047u]++;
            k2[pos] = key[i];
            i2[pos] = idx[i];
        }
        memcpy(key, k2, n * sizeof *key);
        memcpy(idx, i2, n * sizeof *idx);
    }
}

static int della_job(void *arg, uint64_t job, unsigned worker) {
    const della_arg *a = arg;
    uint64_t cols = a->cols;
    uint32_t *key = a->scratch + (size_t)worker * (4 * cols + 2048);
    uint32_t *idx = key + cols, *k2 = idx + cols, *i2 = k2 + cols, *cnt = i2 + cols;
    uint64_t r0 = job * a->rows_per_job;
    uint64_t r1 = r0 + a->rows_per_job < a->rows ? r0 + a->rows_per_job : a->rows;
    float denom = cols > 1 ? (float)(cols - 1) : 1.0f;
    for (uint64_t r = r0; r < r1; r++) {
        float *row = a->d + r * cols;
        /* ascending key = |d| descending */
        for (uint64_t j = 0; j < cols; j++) {
            key[j] = 0x7fffffffu - hma__mk_key_bits(row[j]);
            idx[j] = (uint32_t)j;
        }
        della_sort(key, idx, k2, i2, cnt, cols);
        for (uint64_t pos = 0; pos < cols; pos++) {
            uint64_t j = idx[pos];
            uint64_t rank = cols - pos;
            float rank_norm = cols > 1 ? (float)(rank - 1) / denom : 0.0f;
            if (rank_norm < 0.0f) rank_norm = 0.0f;
            if (rank_norm > 1.0f) rank_norm = 1.0f;
            float p = a->base_p + rank_norm * 2.0f * a->eps;
            if (!(hma__mk_uniform(a->key, r * cols + j) < p)) row[j] = 0.0f;
        }
    }
    return HMA_OK;
}

int hma__mk_della_core(unsigned threads, float *d, uint64_t rows, uint64_t cols, double density,
                       double epsilon, int rescale, uint64_t key, float *factor) {
    *factor = 1.0f;
    uint64_t n = rows * cols;
    if (density >= 1.0 || n == 0) return HMA_OK;
    if (density <= 0.0) { /* mergekit: zeros_like, no rescale */
        memset(d, 0, n * sizeof *d);
        return HMA_OK;
    }
    if (cols > UINT32_MAX) return hma__fail(HMA_ERR_UNSUPPORTED, "della: rows of more than 2^32 elements");
    uint64_t nc = hma__mk_chunks(n);
    double *sums = NULL;
    if (rescale && !(sums = hma__malloc(2 * nc * sizeof *sums)))
        return hma__fail(HMA_ERR_NO_MEMORY, "out of memory (rescale sums)");
    int rc = HMA_OK;
    chunk_arg la = {.a = d, .before = sums};
    if (sums) rc = hma__mk_for(threads, n, l1_chunk, &la);
    uint64_t rpj = cols >= HMA__MK_CHUNK ? 1 : HMA__MK_CHUNK / cols;
    uint64_t njobs = (rows + rpj - 1) / rpj;
    unsigned workers = hma__pool_threads(threads, njobs);
    uint32_t *scratch = NULL;
    if (rc == HMA_OK && !(scratch = hma__malloc((size_t)workers * (4 * cols + 2048) * sizeof *scratch)))
        rc = hma__fail(HMA_ERR_NO_MEMORY, "out of memory (della ranks)");
    if (rc == HMA_OK) {
        della_arg a = {d, rows, cols, rpj, (float)(density - epsilon), (float)epsilon, key, scratch};
        rc = njobs == 1 ? della_job(&a, 0, 0) : hma__pool_run(njobs, threads, della_job, &a, NULL, NULL);
    }
    hma__free(scratch);
    if (rc == HMA_OK && sums) {
        chunk_arg aa = {.a = d, .before = sums + nc};
        rc = hma__mk_for(threads, n, l1_chunk, &aa);
        if (rc == HMA_OK)
            *factor = hma__mk_rescale_factor(hma__mk_sum_parts(sums, nc), hma__mk_sum_parts(sums + nc, nc));
    }
    hma__free(sums);
    return rc;
}

int hma__mk_della(unsigned threads, float *d, uint64_t rows, uint64_t cols, double density, double epsilon,
                  int rescale, uint64_t key) {
    float f;
    int rc = hma__mk_della_core(threads, d, rows, cols, density, epsilon, rescale, key, &f);
    if (rc == HMA_OK && f != 1.0f) rc = hma__mk_scale(threads, d, rows * cols, f);
    return rc;
}
