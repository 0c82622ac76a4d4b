/*
 * experiment/search.c - the search driver of the alignment-tax experiment
 * (`hma search`, cli/search.c, reads its options): the paper's experiment
 * on a toy-llama pair.
 *
 * Scores plain model averaging (MA) along a = 0 (base) ... 1 (aligned) on the
 * full eval set, then at each HMA mean runs a derivative-free search
 * (hma_search()) over K per-group ratios with the mean fixed, scoring the
 * candidates on a subset of eval.bin; the best candidate of each mean is then
 * scored on the full set. Prints one markdown table (method, ratios, code
 * bits/byte = forgetting, prose bits/byte = alignment, Pareto front) and
 * writes two SVG plots (all points; a zoom on the Pareto front) and two CSV
 * files.
 *
 * The search minimises  w_code * code + w_prose * prose  with the weights
 * taken from the slope of the full-set MA curve around the mean (tangent
 * weights): MA's own points are then (locally) optimal, and any candidate
 * that scores lower lies beyond the MA curve, i.e. improves alignment for its
 * forgetting or the reverse.
 *
 * Every model is merged in memory (hma_plan_merge_tensor(), BF16 output, as
 * a saved merge would be) and every score is cached: nothing is scored twice.
 */
#define _POSIX_C_SOURCE 200809L
#include "search.h"

#include "cli.h"
#include "plot.h"
#include "toyeval.h"

#include "hma.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAXK 16
#define MAXLIST EXP_SEARCH_MAX_LIST

/* ---- the toy evaluator (one per process; every MPI rank can open one) ---- */

struct exp_scorer {
    hma_store *st[2];
    hma_plan *plan;
    size_t k;
    toyllm_evalset es;
    exp_rows rows[2]; /* [0] subset, [1] full */
    int threads;
    char *evdefault;
    const char *evpath;
};

void exp_scorer_free(exp_scorer *s) {
    if (!s) return;
    exp_rows_free(&s->rows[0]);
    exp_rows_free(&s->rows[1]);
    toyllm_evalset_free(&s->es);
    hma_plan_free(s->plan);
    hma_store_close(s->st[1]);
    hma_store_close(s->st[0]);
    free(s->evdefault);
    free(s);
}

int exp_scorer_open(exp_scorer **out, const exp_search_config *cfg) {
    *out = NULL;
    exp_scorer *s = calloc(1, sizeof *s);
    if (!s) {
        fprintf(stderr, "hma search: out of memory\n");
        return 1;
    }
    s->threads = (int)cfg->threads;
    s->evdefault = cfg->eval_path ? NULL : exp_default_eval(cfg->base);
    s->evpath = cfg->eval_path ? cfg->eval_path : s->evdefault;
    int rc, status = 1;
    if (!s->evpath) {
        fprintf(stderr, "hma search: out of memory\n");
        goto fail;
    }
    if ((rc = hma_store_open(&s->st[0], cfg->base, 0)) || (rc = hma_store_open(&s->st[1], cfg->model, 0)) ||
        (rc = hma_plan_create(&s->plan, s->st, 2)) || (rc = hma_plan_set_groups(s->plan, cfg->groups)) ||
        (rc = hma_plan_set_output_dtype(s->plan, HMA_DTYPE_BF16))) {
        status = cli_fail("search", rc);
        goto fail;
    }
    s->k = hma_plan_group_count(s->plan);
    if (s->k > MAXK) {
        fprintf(stderr, "hma search: --groups %s makes %zu groups (at most %d here)\n", cfg->groups, s->k, MAXK);
        status = 2;
        goto fail;
    }
    rc = toyllm_evalset_load(&s->es, s->evpath);
    if (rc) {
        fprintf(stderr, "hma search: %s: %s\n", s->evpath,
                rc == TOYLLM_EIO ? "cannot read" : rc == TOYLLM_EFORMAT ? "not an eval.bin (bad size or header)" : "cannot load");
        goto fail;
    }
    if (exp_rows_pick(&s->rows[1], &s->es, (unsigned)cfg->rows) ||
        exp_rows_pick(&s->rows[0], &s->es, (unsigned)cfg->search_rows)) {
        status = exp_fail("search");
        goto fail;
    }
    *out = s;
    return 0;
fail:
    exp_scorer_free(s);
    return status;
}

size_t exp_scorer_k(const exp_scorer *s) { return s->k; }

int exp_scorer_score(void *user, int set, size_t n, size_t k, const double *ratios, double *scores) {
    exp_scorer *s = user;
    for (size_t i = 0; i < n; i++) {
        int rc = hma_plan_set_ratios(s->plan, ratios + i * k, k);
        if (rc) return cli_fail("search", rc);
        toyllm *m = NULL;
        if (exp_load_plan(&m, s->plan)) return exp_fail("search");
        rc = exp_score(m, &s->rows[set], s->threads, scores + 2 * i);
        toyllm_free(m);
        if (rc) return exp_fail("search");
    }
    return 0;
}

/* ---- the driver: a score cache in front of the caller's scorer ----------- */

typedef struct {
    double r[MAXK];
    int has[2];     /* [0] subset, [1] full set: 0 no, 1 yes, -1 in the batch being scored */
    double s[2][2]; /* [set][code, prose] */
} cached;

typedef struct {
    size_t k;
    exp_score_fn fn;
    void *user;
    cached *c;
    size_t n, cap;
    size_t *todo;   /* cache entries of the batch being scored */
    double *buf;    /* their ratios, then their scores */
    double t0;
    size_t evals[2];
    double secs[2];
} ctx;

static int same_vec(const double *a, const double *b, size_t k) {
    for (size_t i = 0; i < k; i++)
        if (fabs(a[i] - b[i]) > 1e-12) return 0;
    return 1;
}

static void fmt_ratios(char *buf, size_t cap, const double *r, size_t k) {
    size_t o = 0;
    int all_same = 1;
    for (size_t i = 1; i < k; i++) all_same &= r[i] == r[0];
    if (all_same) {
        snprintf(buf, cap, "%.3f", r[0]);
        return;
    }
    for (size_t i = 0; i < k && o < cap; i++) o += (size_t)snprintf(buf + o, cap - o, i ? ", %.3f" : "(%.3f", r[i]);
    if (o < cap) snprintf(buf + o, cap - o, ")");
}

/* The cache entry of r (a new one if none). NULL when out of memory. */
static cached *cache_entry(ctx *c, const double *r) {
    for (size_t i = 0; i < c->n; i++)
        if (same_vec(c->c[i].r, r, c->k)) return &c->c[i];
    if (c->n == c->cap) {
        size_t nc = c->cap ? 2 * c->cap : 32;
        cached *p = realloc(c->c, nc * sizeof *p);
        size_t *t = realloc(c->todo, nc * sizeof *t);
        if (t) c->todo = t;
        double *b = realloc(c->buf, nc * (MAXK + 2) * sizeof *b);
        if (b) c->buf = b;
        if (p) c->c = p;
        if (!p || !t || !b) {
            fprintf(stderr, "hma search: out of memory\n");
            return NULL;
        }
        c->cap = nc;
    }
    cached *e = &c->c[c->n++];
    memset(e, 0, sizeof *e);
    memcpy(e->r, r, c->k * sizeof *r);
    return e;
}

/* Score the n ratio vectors r (n x K) on the subset (set 0) or the full set
 * (set 1) into out (n x 2): the ones not scored yet go to the caller's
 * scorer in one call, in order, each once. */
static int score_many(ctx *c, int set, size_t n, const double *r, double *out) {
    size_t nt = 0;
    for (size_t i = 0; i < n; i++) {
        cached *e = cache_entry(c, r + i * c->k);
        if (!e) return 1;
        if (!e->has[set]) {
            e->has[set] = -1;
            c->todo[nt++] = (size_t)(e - c->c);
        }
    }
    if (nt) {
        double *x = c->buf, *sc = c->buf + nt * MAXK;
        for (size_t j = 0; j < nt; j++) memcpy(x + j * c->k, c->c[c->todo[j]].r, c->k * sizeof *x);
        double t = exp_now();
        int rc = c->fn(c->user, set, nt, c->k, x, sc);
        t = exp_now() - t;
        for (size_t j = 0; j < nt; j++) {
            cached *e = &c->c[c->todo[j]];
            e->has[set] = rc ? 0 : 1;
            if (rc) continue;
            e->s[set][0] = sc[2 * j];
            e->s[set][1] = sc[2 * j + 1];
            char rb[160];
            fmt_ratios(rb, sizeof rb, e->r, c->k);
            fprintf(stderr, "[%6.1f s] %-6s a = %-28s code %.4f  prose %.4f  (%.1f s%s)\n", exp_now() - c->t0,
                    set ? "full" : "subset", rb, e->s[set][0], e->s[set][1], t / (double)nt,
                    nt > 1 ? " each, scored together" : "");
        }
        if (rc) return 1;
        c->evals[set] += nt;
        c->secs[set] += t;
    }
    for (size_t i = 0; i < n; i++) {
        cached *e = cache_entry(c, r + i * c->k);
        out[2 * i] = e->s[set][0];
        out[2 * i + 1] = e->s[set][1];
    }
    return 0;
}

static int score(ctx *c, const double *r, int set, double out[2]) { return score_many(c, set, 1, r, out); }

/* One HMA search through the ask/tell handle: each batch's candidates not
 * scored yet go to the scorer together. */
static int run_search(ctx *c, const hma_search_options *so, hma_points **pts) {
    hma_searcher *s = NULL;
    int rc = hma_searcher_create(&s, so);
    if (rc) return cli_fail("search", rc);
    size_t b = so->batch < so->budget ? so->batch : so->budget, n = 0;
    double *x = malloc(b * c->k * sizeof *x), *sc = malloc(b * 2 * sizeof *sc);
    int status = 0;
    if (!x || !sc) {
        fprintf(stderr, "hma search: out of memory\n");
        status = 1;
    }
    while (!status && !(rc = hma_searcher_ask(s, x, b, &n)) && n) {
        if (score_many(c, 0, n, x, sc)) status = 1;
        else if ((rc = hma_searcher_tell(s, sc, n))) break;
    }
    if (!status && rc) status = cli_fail("search", rc);
    if (!status && (rc = hma_searcher_points(s, pts))) status = cli_fail("search", rc);
    free(x);
    free(sc);
    hma_searcher_free(s);
    return status;
}

typedef struct {
    const char *method;
    char label[32];
    double r[MAXK];
    double s[2];
    double mean;
    int is_hma;
} row;

void exp_search_config_init(exp_search_config *c) {
    static const double ma[] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}, means[] = {0.3, 0.5, 0.7};
    memset(c, 0, sizeof *c);
    c->groups = "blocks:3";
    c->outdir = ".";
    memcpy(c->ma, ma, sizeof ma);
    c->n_ma = sizeof ma / sizeof ma[0];
    memcpy(c->means, means, sizeof means);
    c->n_means = sizeof means / sizeof means[0];
    c->budget = 10;
    c->search_rows = 32;
    c->threads = 2;
    c->lo = 0.0;
    c->hi = 1.0;
    c->batch = 1;
}

int exp_search_run(const exp_search_config *cfg) {
    exp_scorer *s = NULL;
    int status = exp_scorer_open(&s, cfg);
    if (status) return status;
    status = exp_search_drive(cfg, s, exp_scorer_score, s);
    exp_scorer_free(s);
    return status;
}

int exp_search_drive(const exp_search_config *cfg, const exp_scorer *local, exp_score_fn fn, void *user) {
    const char *base = cfg->base, *model = cfg->model, *groups = cfg->groups, *evpath = local->evpath;
    const char *outdir = cfg->outdir;
    const double *ma = cfg->ma, *means = cfg->means;
    size_t n_ma = cfg->n_ma, n_means = cfg->n_means;
    long budget = cfg->budget;
    unsigned long long seed = cfg->seed;
    double lo = cfg->lo, hi = cfg->hi;
    const hma_plan *plan = local->plan;
    const exp_rows *sub = &local->rows[0], *full = &local->rows[1];
    int status = 1, rc;
    ctx c;
    memset(&c, 0, sizeof c);
    c.k = local->k;
    c.fn = fn;
    c.user = user;
    row *tab = NULL;
    double *vecs = NULL;
    FILE *cand = NULL;
    char *path_svg = NULL, *path_zoom = NULL, *path_csv = NULL, *path_cand = NULL;
    c.t0 = exp_now();

    /* output paths */
    if (mkdir(outdir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "hma search: cannot create %s: %s\n", outdir, strerror(errno));
        goto done;
    }
    size_t ol = strlen(outdir) + 32;
    path_svg = malloc(ol), path_zoom = malloc(ol), path_csv = malloc(ol), path_cand = malloc(ol);
    if (!path_svg || !path_zoom || !path_csv || !path_cand) goto oom;
    snprintf(path_svg, ol, "%s/experiment.svg", outdir);
    snprintf(path_zoom, ol, "%s/experiment-front.svg", outdir);
    snprintf(path_csv, ol, "%s/results.csv", outdir);
    snprintf(path_cand, ol, "%s/candidates.csv", outdir);

    printf("hma search: base %s, aligned %s, eval %s\n", base, model, evpath);
    printf("groups %s (K = %zu):", groups, c.k);
    for (size_t g = 0; g < c.k; g++) {
        long l0 = -1, l1 = -1;
        for (size_t i = 0; i < hma_plan_tensor_count(plan); i++)
            if (hma_plan_tensor_group(plan, i) == (int)g && hma_plan_tensor_layer(plan, i) >= 0) {
                long l = hma_plan_tensor_layer(plan, i);
                if (l0 < 0 || l < l0) l0 = l;
                if (l > l1) l1 = l;
            }
        if (l0 >= 0) printf(" a_%zu = layers %ld-%ld%s", g + 1, l0, l1, g == 0 ? " + embedding" : "");
        else printf(" a_%zu = (no layers)", g + 1);
        printf(g + 1 < c.k ? "," : "; final norm and lm_head take the mean\n");
    }
    printf("final table on %u rows of each set, search candidates on %u rows; budget %ld a mean, seed %llu",
           full->rows, sub->rows, budget, seed);
    if (cfg->batch > 1) printf(", batches of %ld", cfg->batch);
    printf("\n\n");
    fflush(stdout);

    /* 1. MA on the full set, endpoints included (a = 0 is base, a = 1 aligned) */
    size_t n_curve = 0;
    double curve_a[MAXLIST + 2];
    curve_a[n_curve++] = 0.0;
    for (size_t i = 0; i < n_ma; i++)
        if (ma[i] > 0.0 && ma[i] < 1.0) curve_a[n_curve++] = ma[i];
    curve_a[n_curve++] = 1.0;
    for (size_t i = 1; i < n_curve; i++) /* sort (insertion; tiny) */
        for (size_t j = i; j > 0 && curve_a[j] < curve_a[j - 1]; j--) {
            double t = curve_a[j];
            curve_a[j] = curve_a[j - 1];
            curve_a[j - 1] = t;
        }
    size_t max_rows = n_curve + n_means * 2;
    tab = calloc(max_rows, sizeof *tab);
    if (!tab) goto oom;
    size_t nt = 0;
    for (size_t i = 0; i < n_curve; i++) {
        if (i && curve_a[i] == curve_a[i - 1]) continue;
        row *t = &tab[nt++];
        for (size_t g = 0; g < c.k; g++) t->r[g] = curve_a[i];
        t->mean = curve_a[i];
        t->method = curve_a[i] == 0.0 ? "base" : curve_a[i] == 1.0 ? "aligned" : "MA";
        snprintf(t->label, sizeof t->label, "%g", curve_a[i]);
    }
    size_t n_ma_rows = nt;
    vecs = malloc((nt + 2 * n_means) * (MAXK + 2) * sizeof *vecs);
    if (!vecs) goto oom;
    double *vsc = vecs + (nt + 2 * n_means) * MAXK;
    for (size_t i = 0; i < nt; i++) memcpy(vecs + i * c.k, tab[i].r, c.k * sizeof *vecs);
    if (score_many(&c, 1, nt, vecs, vsc)) goto done;
    for (size_t i = 0; i < nt; i++) tab[i].s[0] = vsc[2 * i], tab[i].s[1] = vsc[2 * i + 1];

    /* 2. HMA searches on the subset, one per mean */
    cand = fopen(path_cand, "w");
    if (!cand) {
        fprintf(stderr, "hma search: cannot write %s: %s\n", path_cand, strerror(errno));
        goto done;
    }
    fprintf(cand, "mean,index,w_code,w_prose");
    for (size_t g = 0; g < c.k; g++) fprintf(cand, ",a_%zu", g + 1);
    fprintf(cand, ",subset_code_bpb,subset_prose_bpb,objective\n");
    double wts[MAXLIST][2], obj_ma[MAXLIST], obj_best[MAXLIST];
    size_t n_cand[MAXLIST];
    for (size_t m = 0; m < n_means; m++) {
        /* tangent weights from the full-set MA neighbours of the mean: the
         * central difference, else a one-sided one (left, then right), where
         * MA trades code for prose; else (MA improves or worsens both
         * scores there) equal weights, i.e. total bits. */
        const row *left = NULL, *mid = NULL, *right = NULL;
        for (size_t i = 0; i < n_ma_rows; i++) {
            if (tab[i].mean < means[m] - 1e-9) left = &tab[i];
            else if (tab[i].mean <= means[m] + 1e-9) mid = &tab[i];
            else if (!right) right = &tab[i];
        }
        const row *pairs[3][2] = {{left, right}, {left, mid}, {mid, right}};
        double lam = 1.0;
        for (int q = 0; q < 3; q++) {
            const row *p0 = pairs[q][0], *p1 = pairs[q][1];
            if (!p0 || !p1) continue;
            double dc = p1->s[0] - p0->s[0], dp = p1->s[1] - p0->s[1];
            if (dc > 0 && dp < 0) {
                lam = -dp / dc;
                break;
            }
        }
        wts[m][0] = lam / (1.0 + lam);
        wts[m][1] = 1.0 / (1.0 + lam);
        hma_search_options so;
        hma_search_options_init(&so);
        so.k = c.k;
        so.mean = means[m];
        so.lo = lo;
        so.hi = hi;
        so.budget = (size_t)budget;
        so.seed = seed + m;
        so.n_scores = 2;
        so.weights = wts[m];
        so.batch = (size_t)cfg->batch;
        hma_points *pts = NULL;
        fprintf(stderr, "search at mean %g: minimise %.3f * code + %.3f * prose\n", means[m], wts[m][0], wts[m][1]);
        if ((status = run_search(&c, &so, &pts))) goto done; /* run_search or the scorer printed why */
        status = 1;
        /* the chosen HMA point: the best candidate that is not MA itself */
        size_t np = hma_points_count(pts), best = HMA_NPOS;
        double bobj = INFINITY;
        obj_ma[m] = NAN;
        n_cand[m] = np;
        for (size_t i = 0; i < np; i++) {
            const double *r = hma_points_ratios(pts, i), *s = hma_points_scores(pts, i);
            double o = wts[m][0] * s[0] + wts[m][1] * s[1];
            int is_ma = 1;
            for (size_t g = 0; g < c.k; g++) is_ma &= fabs(r[g] - means[m]) <= 1e-9;
            fprintf(cand, "%g,%zu,%.6f,%.6f", means[m], i, wts[m][0], wts[m][1]);
            for (size_t g = 0; g < c.k; g++) fprintf(cand, ",%.6f", r[g]);
            fprintf(cand, ",%.6f,%.6f,%.6f\n", s[0], s[1], o);
            if (is_ma) obj_ma[m] = o;
            else if (isfinite(o) && o < bobj) bobj = o, best = i;
        }
        obj_best[m] = bobj;
        if (best != HMA_NPOS) {
            row *t = &tab[nt++];
            memcpy(t->r, hma_points_ratios(pts, best), c.k * sizeof(double));
            t->mean = means[m];
            t->method = "HMA";
            t->is_hma = 1;
            snprintf(t->label, sizeof t->label, "%g", means[m]);
        }
        hma_points_free(pts);
    }
    if (fclose(cand) != 0) {
        cand = NULL;
        fprintf(stderr, "hma search: cannot write %s\n", path_cand);
        goto done;
    }
    cand = NULL;

    /* 3. the chosen HMA points (and MA at each mean, if not scored yet) on the full set, together */
    size_t nv = 0;
    for (size_t i = n_ma_rows; i < nt; i++) {
        for (size_t g = 0; g < c.k; g++) vecs[nv * c.k + g] = tab[i].mean;
        memcpy(vecs + (nv + 1) * c.k, tab[i].r, c.k * sizeof *vecs);
        nv += 2;
    }
    if (score_many(&c, 1, nv, vecs, vsc)) goto done;
    for (size_t i = n_ma_rows; i < nt; i++) {
        size_t j = 2 * (i - n_ma_rows) + 1;
        tab[i].s[0] = vsc[2 * j], tab[i].s[1] = vsc[2 * j + 1];
    }

    /* 4. Pareto front of the table (both scores lower-is-better) */
    double xs[MAXLIST * 3], ys[MAXLIST * 3];
    size_t idx[MAXLIST * 3], nf = 0;
    int on_front[MAXLIST * 3] = {0};
    for (size_t i = 0; i < nt; i++) xs[i] = tab[i].s[0], ys[i] = tab[i].s[1];
    if ((rc = hma_pareto_front(nt, xs, ys, 0, idx, &nf))) {
        status = cli_fail("search", rc);
        goto done;
    }
    for (size_t i = 0; i < nf; i++) on_front[idx[i]] = 1;

    /* 5. the table */
    printf("| method | a (aligned weight; a_1..a_%zu for HMA) | code bits/byte (forgetting) | prose bits/byte "
           "(alignment) | vs MA at the same mean (code, prose) | Pareto front |\n",
           c.k);
    printf("| --- | --- | ---: | ---: | --- | :---: |\n");
    for (size_t i = 0; i < nt; i++) {
        char rb[160], vs[96] = "";
        fmt_ratios(rb, sizeof rb, tab[i].r, c.k);
        if (tab[i].is_hma) {
            double r[MAXK], s[2];
            for (size_t g = 0; g < c.k; g++) r[g] = tab[i].mean;
            if (score(&c, r, 1, s)) goto done;
            snprintf(vs, sizeof vs, "%+.4f, %+.4f", tab[i].s[0] - s[0], tab[i].s[1] - s[1]);
        }
        char name[48];
        if (!strcmp(tab[i].method, "MA") || tab[i].is_hma) snprintf(name, sizeof name, "%s %s", tab[i].method, tab[i].label);
        else snprintf(name, sizeof name, "%s", tab[i].method);
        printf("| %s | %s | %.4f | %.4f | %s | %s |\n", name, rb, tab[i].s[0], tab[i].s[1], vs, on_front[i] ? "yes" : "no");
    }
    printf("\nHMA search on the %u-row subset (objective = w_code * code + w_prose * prose, tangent weights):\n",
           sub->rows);
    for (size_t m = 0; m < n_means; m++)
        printf("  mean %g: w = (%.3f, %.3f), %zu candidates, MA objective %.5f, best HMA objective %.5f (%s)\n", means[m],
               wts[m][0], wts[m][1], n_cand[m], obj_ma[m], obj_best[m],
               obj_best[m] < obj_ma[m] ? "HMA better on the subset" : "MA better on the subset");
    printf("\nscored: %zu models on the full set (%.1f s), %zu on the subset (%.1f s); total %.1f s, %d threads\n",
           c.evals[1], c.secs[1], c.evals[0], c.secs[0], exp_now() - c.t0, local->threads);

    /* 6. CSV and SVG */
    FILE *f = fopen(path_csv, "w");
    if (!f) {
        fprintf(stderr, "hma search: cannot write %s: %s\n", path_csv, strerror(errno));
        goto done;
    }
    fprintf(f, "method,mean");
    for (size_t g = 0; g < c.k; g++) fprintf(f, ",a_%zu", g + 1);
    fprintf(f, ",code_bpb,prose_bpb,pareto\n");
    for (size_t i = 0; i < nt; i++) {
        fprintf(f, "%s,%g", tab[i].method, tab[i].mean);
        for (size_t g = 0; g < c.k; g++) fprintf(f, ",%.6f", tab[i].r[g]);
        fprintf(f, ",%.6f,%.6f,%d\n", tab[i].s[0], tab[i].s[1], on_front[i]);
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "hma search: cannot write %s\n", path_csv);
        goto done;
    }

    /* two plots: everything, and a zoom on the Pareto front of the table */
    double fx0 = INFINITY, fx1 = -INFINITY, fy0 = INFINITY, fy1 = -INFINITY;
    for (size_t i = 0; i < nf; i++) {
        fx0 = fmin(fx0, xs[idx[i]]), fx1 = fmax(fx1, xs[idx[i]]);
        fy0 = fmin(fy0, ys[idx[i]]), fy1 = fmax(fy1, ys[idx[i]]);
    }
    double mx_ = fmax(0.5 * (fx1 - fx0), 0.004), my_ = fmax(0.5 * (fy1 - fy0), 0.004);
    fx0 -= mx_, fx1 += mx_, fy0 -= my_, fy1 += my_;
    char hname[96], title[160];
    snprintf(hname, sizeof hname, "HMA (K = %zu, label = mean a)", c.k);
    for (int zoom = 0; zoom < 2; zoom++) {
        double mx[MAXLIST + 2], my[MAXLIST + 2], hx[MAXLIST], hy[MAXLIST], bx[1], by[1], ax[1], ay[1];
        const char *ml[MAXLIST + 2], *hl[MAXLIST];
        size_t nm = 0, nh = 0, nb = 0, na = 0;
        for (size_t i = 0; i < nt; i++) {
            double x = tab[i].s[0], y = tab[i].s[1];
            if (zoom && !(x >= fx0 && x <= fx1 && y >= fy0 && y <= fy1)) continue;
            if (tab[i].is_hma) hx[nh] = x, hy[nh] = y, hl[nh++] = tab[i].label;
            else if (tab[i].mean == 0.0) bx[nb] = x, by[nb++] = y;
            else if (tab[i].mean == 1.0) ax[na] = x, ay[na++] = y;
            if (!tab[i].is_hma) /* the MA curve, endpoints included */
                mx[nm] = x, my[nm] = y, ml[nm++] = (tab[i].mean == 0.0 || tab[i].mean == 1.0) ? NULL : tab[i].label;
        }
        exp_plot_series ser[4] = {
            {"MA, theta = (1-a) base + a aligned (label = a)", "#1f77b4", EXP_MARK_CIRCLE, 1, nm, mx, my, ml, 0},
            {hname, "#d62728", EXP_MARK_STAR, 0, nh, hx, hy, hl, 1},
            {"base (a = 0)", "#2ca02c", EXP_MARK_SQUARE, 0, nb, bx, by, NULL, 0},
            {"aligned (a = 1)", "#ff7f0e", EXP_MARK_DIAMOND, 0, na, ax, ay, NULL, 0},
        };
        snprintf(title, sizeof title, "%s, toy-llama (%u rows per set; lower-left is better)",
                 zoom ? "Zoom on the Pareto front" : "Alignment vs forgetting", full->rows);
        const char *path = zoom ? path_zoom : path_svg;
        if (exp_plot_svg(path, title, "code bits/byte (forgetting)", "prose bits/byte (alignment)", ser, 4)) {
            fprintf(stderr, "hma search: cannot write %s: %s\n", path, strerror(errno));
            goto done;
        }
    }
    printf("\nplot:       %s\nzoomed:     %s\ntable:      %s\ncandidates: %s\n", path_svg, path_zoom, path_csv,
           path_cand);
    status = fflush(stdout) ? 1 : 0;
    goto done;
oom:
    fprintf(stderr, "hma search: out of memory\n");
done:
    if (cand) fclose(cand);
    free(tab);
    free(vecs);
    free(c.c);
    free(c.todo);
    free(c.buf);
    free(path_svg);
    free(path_zoom);
    free(path_csv);
    free(path_cand);
    return status;
}
