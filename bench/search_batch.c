/*
 * search_batch.c - what batching costs the ratio search at a fixed number of
 * evaluations (docs/search.md, "Batches"): for K = 3, 5, 8, 40 random
 * problems each (convex quadratics, then the same plus quartic and sine
 * terms), budgets 10, 20, 40 and batches 1, 2, 4, 8, prints the mean of
 * log10(best found - reference), the reference being the best of a serial
 * search of 300 evaluations (gaps below 1e-13 count as 1e-13). Not part of
 * make bench (a few minutes on one core); build and run by hand:
 *   cc -O2 -ffp-contract=off -Iinclude -o build/search_batch bench/search_batch.c \
 *      -Llib -Wl,-rpath,$PWD/lib -lhma -lm && build/search_batch
 */
#include "hma.h"
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
typedef struct { size_t k; double t[8], w[8]; int nonquad; } Q;
static uint64_t st = 777;
static double ur(void) { st = st * 6364136223846793005ull + 1442695040888963407ull; return (double)(st >> 11) * 0x1.0p-53; }
static double f(const Q *q, const double *r) {
    double s = 0;
    for (size_t i = 0; i < q->k; i++) {
        double d = r[i] - q->t[i];
        s += q->w[i] * d * d;
        if (q->nonquad) s += 3 * d * d * d * d + 0.05 * sin(9 * r[i]);
    }
    return s;
}
static int ev(void *u, size_t k, const double *r, size_t ns, double *sc) { (void)k; (void)ns; sc[0] = f(u, r); return 0; }
int main(void) {
    size_t ks[] = {3, 5, 8}, budgets[] = {10, 20, 40}, bs[] = {1, 2, 4, 8};
    for (int nq = 0; nq < 2; nq++)
    for (size_t ki = 0; ki < 3; ki++) {
        size_t k = ks[ki];
        for (size_t bi = 0; bi < 4; bi++) {
            printf("%s K=%zu B=%zu:", nq ? "nonquad" : "quad", k, bs[bi]);
            for (size_t gi = 0; gi < 3; gi++) {
                st = 777 + k;
                double acc = 0;
                for (int rep = 0; rep < 40; rep++) {
                    Q q; memset(&q, 0, sizeof q); q.k = k; q.nonquad = nq;
                    for (size_t i = 0; i < k; i++) { q.t[i] = ur(); q.w[i] = 0.2 + 2 * ur(); }
                    hma_search_options o; hma_search_options_init(&o);
                    o.k = k; o.budget = budgets[gi]; o.batch = bs[bi]; o.seed = (uint64_t)rep;
                    hma_points *p = NULL;
                    if (hma_search(&o, ev, &q, &p)) return 1;
                    double best = hma_points_scores(p, hma_points_best(p))[0];
                    hma_points_free(p);
                    /* reference optimum: long serial search */
                    o.budget = 300; o.batch = 1;
                    if (hma_search(&o, ev, &q, &p)) return 1;
                    double opt = hma_points_scores(p, hma_points_best(p))[0];
                    hma_points_free(p);
                    double g = best - opt; if (g < 1e-13) g = 1e-13;
                    acc += log10(g);
                }
                printf("  N=%zu %.1f", budgets[gi], acc / 40);
            }
            printf("\n");
            fflush(stdout);
        }
    }
    return 0;
}
