/*
 * bench_merge.c - the merge benchmark run by `make bench` (bench/run.sh):
 * in one run it generates a synthetic TinyLlama-shaped BF16 pair (gen_pair),
 * then measures, best of HMA_BENCH_REPS (default 3) runs each:
 *   - the floor of any two-input file-to-file merge here (map both inputs,
 *     XOR, pwrite the output; bench/floor.c) with 1 and 2 threads;
 *   - libhma's MA merge end to end (open both, plan, ratio 0.5, merge_to a
 *     file, close) with 1 and 2 threads, and its peak RssAnon;
 *   - the `hma merge` program doing the same (when its path is given);
 *   - PyTorch loading, averaging in float32 and saving (bench/torch_merge.py),
 *     only when `import torch` works (safetensors is used when importable,
 *     else the script's own equivalent reader/writer); it also checks libhma's
 *     output bit for bit against torch's.
 * Prints a table (time, GB/s counting 2 inputs read + 1 output written,
 * ratio to the floor, peak RssAnon, PASS/FAIL per goal) and deletes the files.
 *
 *   bench_merge GEN_PAIR [HMA_BIN]     (env: HMA_BENCH_DIR, HMA_BENCH_LAYERS,
 *                                       HMA_BENCH_REPS, PYTHON)
 * Exit status 0 when every goal is met, 1 when one is missed, 2 on errors.
 */
#include "bench.h"

#include <hma.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB 1048576.0

static char dir[4096], base_p[4200], aligned_p[4200], out_p[4200], torch_p[4200];
static int reps = 3;

typedef bench_result result;

static int run_floor(int threads, result *r) {
    const char *in[2] = {base_p, aligned_p};
    return bench_floor_row(in, 2, out_p, threads, reps, "floor (XOR, pwrite)", "bench_merge", r);
}

static int hma_once(int threads, double *secs) {
    double t0 = bench_now();
    hma_store *st[2] = {NULL, NULL};
    hma_plan *plan = NULL;
    int rc = hma_store_open(&st[0], base_p, 0);
    if (!rc) rc = hma_store_open(&st[1], aligned_p, 0);
    if (!rc) rc = hma_plan_create(&plan, st, 2);
    if (!rc) rc = hma_plan_set_ratio(plan, 0.5);
    if (!rc) rc = hma_plan_set_threads(plan, (unsigned)threads);
    if (!rc) rc = hma_plan_merge_to(plan, out_p, 0);
    if (rc) fprintf(stderr, "bench_merge: libhma: %s: %s\n", hma_strerror(rc), hma_last_error());
    hma_plan_free(plan);
    hma_store_close(st[0]);
    hma_store_close(st[1]);
    *secs = bench_now() - t0;
    return rc;
}

static int run_hma(int threads, result *r) {
    double t[16];
    r->what = "libhma MA merge";
    r->threads = threads;
    r->rss_base_kb = bench_rss_anon_now();
    bench_rss_start();
    for (int k = 0; k < reps; k++) {
        unlink(out_p);
        if (hma_once(threads, &t[k])) {
            bench_rss_stop();
            return 1;
        }
    }
    r->rss_kb = bench_rss_stop();
    bench_summarize(r, t, reps);
    return 0;
}

static int run_cli(const char *hma_bin, int threads, result *r) {
    double t[16];
    char cmd[20000];
    r->what = "hma merge (CLI)";
    r->threads = threads;
    r->rss_kb = r->rss_base_kb = -1;
    snprintf(cmd, sizeof cmd, "'%s' merge -q --base '%s' --model '%s' --alpha 0.5 --threads %d -o '%s'", hma_bin,
             base_p, aligned_p, threads, out_p);
    for (int k = 0; k < reps; k++) {
        unlink(out_p);
        double t0 = bench_now();
        if (system(cmd) != 0) {
            fprintf(stderr, "bench_merge: failed: %s\n", cmd);
            return 1;
        }
        t[k] = bench_now() - t0;
    }
    bench_summarize(r, t, reps);
    return 0;
}

static void cleanup(void) {
    if (!dir[0]) return;
    unlink(base_p);
    unlink(aligned_p);
    unlink(out_p);
    unlink(torch_p);
    rmdir(dir);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_merge GEN_PAIR [HMA_BIN]\n");
        return 2;
    }
    const char *gen = argv[1], *hma_bin = argc > 2 ? argv[2] : NULL;
    int layers = getenv("HMA_BENCH_LAYERS") ? atoi(getenv("HMA_BENCH_LAYERS")) : 22;
    if (getenv("HMA_BENCH_REPS")) reps = atoi(getenv("HMA_BENCH_REPS"));
    if (reps < 1) reps = 1;
    if (reps > 16) reps = 16;
    if (layers < 1) layers = 1;
    const char *py = getenv("PYTHON") ? getenv("PYTHON") : "python3";
    char cmd[20000];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import torch' >/dev/null 2>&1", py);
    int have_torch = system(cmd) == 0;

    bench_machine();
    /* 2 inputs + libhma output (+ torch output), 2.2 GB each at 22 layers */
    uint64_t est = (uint64_t)(262144000.0 + (double)layers * 88080384.0) * 1u;
    uint64_t need = est * (have_torch ? 4 : 3) + (est / 10);
    if (bench_pick_dir(dir, sizeof dir, need, NULL)) {
        fprintf(stderr, "bench_merge: no folder with %.1f GB free (set HMA_BENCH_DIR)\n", (double)need / 1e9);
        return 2;
    }
    snprintf(base_p, sizeof base_p, "%s/base.safetensors", dir);
    snprintf(aligned_p, sizeof aligned_p, "%s/aligned.safetensors", dir);
    snprintf(out_p, sizeof out_p, "%s/merged.safetensors", dir);
    snprintf(torch_p, sizeof torch_p, "%s/torch.safetensors", dir);
    printf("folder: %s, %d layers, best of %d runs\n", dir, layers, reps);
    fflush(stdout);

    double t0 = bench_now();
    snprintf(cmd, sizeof cmd, "'%s' '%s' %d", gen, dir, layers);
    if (system(cmd) != 0) {
        fprintf(stderr, "bench_merge: generating the pair failed: %s\n", cmd);
        cleanup();
        return 2;
    }
    uint64_t fsz = bench_file_size(base_p);
    if (!fsz || fsz != bench_file_size(aligned_p)) {
        fprintf(stderr, "bench_merge: generated files missing or of different sizes\n");
        cleanup();
        return 2;
    }
    double traffic = 3.0 * (double)fsz;
    printf("pair: 2 x %.3f GB BF16 (generated in %.1f s); traffic per merge %.3f GB (2 read + 1 written)\n\n",
           (double)fsz / 1e9, bench_now() - t0, traffic / 1e9);
    fflush(stdout);

    result fl[2], hm[2], cli[2];
    int have_cli = hma_bin && access(hma_bin, X_OK) == 0;
    int err = 0;
    for (int k = 0; k < 2 && !err; k++) {
        int th = k + 1;
        err |= run_floor(th, &fl[k]);
        if (!err) err |= run_hma(th, &hm[k]);
        if (!err && have_cli) err |= run_cli(hma_bin, th, &cli[k]);
    }
    if (err) {
        cleanup();
        return 2;
    }

    printf("%-22s %3s %8s %8s %8s %8s %9s %11s %8s\n", "what", "thr", "best s", "median", "worst", "GB/s",
           "vs floor", "RssAnon MiB", "budget");
    int pass = 1;
    for (int k = 0; k < 2; k++) {
        result *rs[3] = {&fl[k], &hm[k], have_cli ? &cli[k] : NULL};
        for (int q = 0; q < 3; q++) {
            result *r = rs[q];
            if (!r) continue;
            double budget = 64.0 + 8.0 * r->threads;
            char rss[32] = "-", bud[16] = "-";
            if (r->rss_kb >= 0) snprintf(rss, sizeof rss, "%.1f", (double)r->rss_kb / 1024.0);
            if (q == 1) snprintf(bud, sizeof bud, "%.0f", budget);
            printf("%-22s %3d %8.3f %8.3f %8.3f %8.2f %8.3fx %11s %8s\n", r->what, r->threads, r->best, r->median,
                   r->worst, traffic / r->best / 1e9, fl[k].best / r->best, rss, bud);
        }
    }
    printf("\n(vs floor = floor time / this time, same thread count; RssAnon = peak of this process,\n"
           " baseline before the libhma runs %.1f MiB)\n\n",
           (double)hm[0].rss_base_kb / 1024.0);
    double ratio2 = fl[1].best / hm[1].best;
    int ok_ratio = ratio2 >= 0.8;
    pass &= ok_ratio;
    printf("goal: libhma >= 0.8 x floor with 2 threads: %.3f  %s\n", ratio2, ok_ratio ? "PASS" : "FAIL");
    for (int k = 0; k < 2; k++) {
        double budget = (64.0 + 8.0 * hm[k].threads) * 1024.0;
        int ok = hm[k].rss_kb >= 0 && (double)hm[k].rss_kb < budget;
        pass &= ok;
        printf("goal: peak RssAnon < 64 MiB + 8 MiB x %d threads: %.1f MiB  %s\n", hm[k].threads,
               (double)hm[k].rss_kb / 1024.0, ok ? "PASS" : "FAIL");
    }

    if (have_torch) {
        /* libhma's output stays for the bit-exact check; torch writes beside it.
         * Torch runs twice: with 2 threads (as libhma's 2-thread run; the goal)
         * and with its own default thread count. */
        unlink(out_p);
        double s;
        if (hma_once(2, &s) == 0) {
            for (int run = 0; run < 2; run++) {
                unlink(torch_p);
                snprintf(cmd, sizeof cmd, "'%s' bench/torch_merge.py '%s' '%s' '%s' --alpha 0.5 --threads %d %s%s%s", py,
                         base_p, aligned_p, torch_p, run == 0 ? 2 : 0, run == 0 ? "--verify '" : "",
                         run == 0 ? out_p : "", run == 0 ? "'" : "");
                FILE *p = popen(cmd, "r");
                char line[512];
                double tt = -1;
                long ndiff = -1;
                while (p && fgets(line, sizeof line, p)) {
                    fputs(line, stdout);
                    sscanf(line, "torch_seconds %lf", &tt);
                    sscanf(line, "differing_elements %ld", &ndiff);
                }
                if (p) pclose(p);
                if (tt <= 0) {
                    printf("PyTorch run failed (see above)\n");
                    pass = 0;
                    break;
                }
                double sp = tt / hm[1].best;
                if (run == 0) {
                    int ok = sp >= 20.0;
                    pass &= ok;
                    printf("PyTorch, 2 threads: %.3f s, %.2f GB/s; libhma (2 threads) is %.1fx faster  goal >= 20x: %s\n",
                           tt, traffic / tt / 1e9, sp, ok ? "PASS" : "FAIL");
                    printf("bit-exact vs PyTorch: %ld differing elements  %s\n", ndiff, ndiff == 0 ? "PASS" : "FAIL");
                    pass &= ndiff == 0;
                } else {
                    printf("PyTorch, its default threads: %.3f s, %.2f GB/s; libhma (2 threads) is %.1fx faster\n", tt,
                           traffic / tt / 1e9, sp);
                }
            }
        }
    } else {
        printf("PyTorch: not measured (`%s -c \"import torch\"` fails here)\n", py);
    }
    cleanup();
    printf("\n%s\n", pass ? "bench: all measured goals met" : "bench: some goals missed");
    return pass ? 0 : 1;
}
