/*
 * bench_mergekit.c - the mergekit rows of `make bench` (issue 12, item 7):
 * 3-model TIES and DARE through `hma merge --config RECIPE.yml`, against the
 * 3-input floor and against mergekit's math run with PyTorch on the same
 * inputs and the same recipe (bench/torch_mergekit.py).
 *
 * On a generated TinyLlama-shaped BF16 set (gen_pair --third: base, aligned,
 * third; HMA_BENCH_LAYERS layers), best of HMA_BENCH_REPS runs, 1 and 2
 * threads:
 *   - floor: map the 3 inputs, XOR, pwrite (bench/floor.c);
 *   - ties.yml: base + aligned (weight 1.0, density 0.5) + third (0.5, 0.7),
 *     normalize true, dtype float32, out_dtype bfloat16;
 *   - dare.yml: the same models and parameters with dare_ties, --seed 42;
 * each CLI run timed from spawn to exit, its peak RssAnon sampled from
 * /proc/PID/status every 2 ms. Then, when `import torch` works, PyTorch with
 * 2 threads on both recipes, and the count of elements where libhma's TIES
 * output differs from torch's (reported, not judged: see torch_mergekit.py).
 *
 * Goals (2 threads): TIES >= 0.5 x the floor; TIES >= 10 x PyTorch. Memory
 * bound of the issue, checked on every hma run: peak RssAnon <= 64 MiB +
 * L x (models + 2), where L is the largest tensor of the inputs counted in
 * float32 bytes (4 per element whatever its stored dtype) and models counts
 * every input model of the recipe, the base included (3 here).
 *
 *   bench_mergekit GEN_PAIR HMA_BIN    (env: HMA_BENCH_DIR, HMA_BENCH_LAYERS,
 *                                       HMA_BENCH_REPS, PYTHON)
 * Exit status 0 when every goal is met, 1 when one is missed, 2 on errors
 * (among them an hma program without `merge --config`).
 */
#include "bench.h"

#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define MODELS 3

static char dir[4096], in_p[MODELS][4200], floor_p[4200], ties_p[4200], dare_p[4200], torch_p[4200];
static char ties_yml[4200], dare_yml[4200], log_p[4200];
static int reps = 3;

static void cleanup(void) {
    if (!dir[0]) return;
    const char *f[] = {in_p[0], in_p[1], in_p[2], floor_p, ties_p, dare_p, torch_p, ties_yml, dare_yml, log_p};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) unlink(f[i]);
    rmdir(dir);
}

static int write_recipe(const char *path, const char *method) {
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); return 1; }
    fprintf(f,
            "# bench_mergekit.c: 3-model %s over the generated set\n"
            "merge_method: %s\n"
            "base_model: %s\n"
            "models:\n"
            "  - model: %s\n    parameters:\n      weight: 1.0\n      density: 0.5\n"
            "  - model: %s\n    parameters:\n      weight: 0.5\n      density: 0.7\n"
            "parameters:\n  normalize: true\n"
            "dtype: float32\n"
            "out_dtype: bfloat16\n",
            method, method, in_p[0], in_p[1], in_p[2]);
    return fclose(f) != 0;
}

/* Elements of the largest tensor in a safetensors file (its header's shapes), 0 on error. */
static uint64_t largest_tensor(const char *path) {
    FILE *f = fopen(path, "rb");
    unsigned char lb[8];
    uint64_t hl = 0, best = 0;
    if (!f || fread(lb, 1, 8, f) != 8) { if (f) fclose(f); return 0; }
    for (int i = 0; i < 8; i++) hl |= (uint64_t)lb[i] << (8 * i);
    char *h = hl < (100u << 20) ? malloc(hl + 1) : NULL;
    if (h && fread(h, 1, hl, f) == hl) {
        h[hl] = 0;
        for (char *p = strstr(h, "\"shape\":["); p; p = strstr(p, "\"shape\":[")) {
            p += 9;
            uint64_t n = 1;
            while (*p && *p != ']') {
                char *e;
                unsigned long long v = strtoull(p, &e, 10);
                if (e == p) break;
                n *= v;
                p = *e == ',' ? e + 1 : e;
            }
            if (n > best) best = n;
        }
    }
    free(h);
    fclose(f);
    return best;
}

/* Run argv with stdout/stderr into log_p; time it and sample its peak RssAnon.
 * posix_spawn returns after the exec (glibc uses vfork semantics), so the
 * samples never see a forked copy of this process. */
static int run_child(char *const *argv, double *secs, long *peak_kb) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    double t0 = bench_now();
    pid_t pid;
    int e = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e) {
        fprintf(stderr, "bench_mergekit: cannot run %s: %s\n", argv[0], strerror(e));
        return -1;
    }
    long peak = -1;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0) { perror("waitpid"); return -1; }
        long v = bench_rss_anon_of((long)pid);
        if (v > peak) peak = v;
        usleep(2000);
    }
    *secs = bench_now() - t0;
    *peak_kb = peak;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static void show_log(void) {
    FILE *f = fopen(log_p, "r");
    char line[1024];
    int n = 0, no_config = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (n++ < 40) fputs(line, stderr);
        if (strstr(line, "unknown option")) no_config = 1;
    }
    if (f) fclose(f);
    if (no_config) fprintf(stderr, "bench_mergekit: this hma program has no `merge --config` (mergekit recipes)\n");
}

static int run_floor3(int threads, bench_result *r) {
    const char *in[MODELS] = {in_p[0], in_p[1], in_p[2]};
    return bench_floor_row(in, MODELS, floor_p, threads, reps, "floor (3 in, XOR)", "bench_mergekit", r);
}

/* seed: "42" for DARE (its draws), NULL for TIES (the CLI's --seed is optional). */
static int run_hma(const char *hma_bin, const char *what, const char *yml, const char *out, int threads,
                   const char *seed, bench_result *r) {
    double t[16];
    char th[16];
    snprintf(th, sizeof th, "%d", threads);
    char *argv[] = {(char *)hma_bin, "merge", "--config", (char *)yml, "-o", (char *)out, "--threads", th,
                    seed ? "--seed" : NULL, (char *)seed, NULL};
    r->what = what;
    r->threads = threads;
    r->rss_kb = r->rss_base_kb = -1;
    for (int k = 0; k < reps; k++) {
        long peak = -1;
        unlink(out);
        int rc = run_child(argv, &t[k], &peak);
        if (rc != 0) {
            fprintf(stderr, "bench_mergekit: failed (exit %d): %s merge --config %s -o %s --threads %s%s%s\n", rc,
                    hma_bin, yml, out, th, seed ? " --seed " : "", seed ? seed : "");
            show_log();
            return 1;
        }
        if (peak > r->rss_kb) r->rss_kb = peak;
    }
    bench_summarize(r, t, reps);
    return 0;
}

/* Run the torch transcription; its time (-1 on failure) and, with verify, the differing count. */
static double run_torch(const char *py, const char *yml, const char *verify, long *ndiff) {
    char cmd[20000], line[512];
    double tt = -1;
    unlink(torch_p);
    snprintf(cmd, sizeof cmd, "'%s' bench/torch_mergekit.py '%s' '%s' --threads 2 --seed 42%s%s%s", py, yml,
             torch_p, verify ? " --verify '" : "", verify ? verify : "", verify ? "'" : "");
    FILE *p = popen(cmd, "r");
    while (p && fgets(line, sizeof line, p)) {
        fputs(line, stdout);
        sscanf(line, "torch_seconds %lf", &tt);
        if (ndiff) sscanf(line, "differing_elements %ld", ndiff);
    }
    if (p) pclose(p);
    unlink(torch_p);
    fflush(stdout);
    return tt;
}

int main(int argc, char **argv) {
    if (argc < 3 || !*argv[2]) {
        fprintf(stderr, "usage: bench_mergekit GEN_PAIR HMA_BIN (the mergekit rows need the hma program)\n");
        return 2;
    }
    const char *gen = argv[1], *hma_bin = argv[2];
    if (access(hma_bin, X_OK) != 0) {
        fprintf(stderr, "bench_mergekit: %s is not an executable\n", hma_bin);
        return 2;
    }
    int layers = getenv("HMA_BENCH_LAYERS") ? atoi(getenv("HMA_BENCH_LAYERS")) : 22;
    if (getenv("HMA_BENCH_REPS")) reps = atoi(getenv("HMA_BENCH_REPS"));
    reps = reps < 1 ? 1 : reps > 16 ? 16 : reps;
    if (layers < 1) layers = 1;
    const char *py = getenv("PYTHON") ? getenv("PYTHON") : "python3";
    char cmd[20000];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import torch' >/dev/null 2>&1", py);
    int have_torch = system(cmd) == 0;

    bench_machine();
    /* At most 5 files at once: 3 inputs, the TIES output (kept for the
     * comparison with torch) and one of floor/DARE/torch output. */
    uint64_t est = (uint64_t)(262144000.0 + (double)layers * 88080384.0);
    uint64_t need = est * 5 + est / 10;
    if (bench_pick_dir(dir, sizeof dir, need, "mk")) {
        fprintf(stderr, "bench_mergekit: no folder with %.1f GB free (set HMA_BENCH_DIR)\n", (double)need / 1e9);
        return 2;
    }
    const char *names[MODELS] = {"base", "aligned", "third"};
    for (int i = 0; i < MODELS; i++) snprintf(in_p[i], sizeof in_p[i], "%s/%s.safetensors", dir, names[i]);
    snprintf(floor_p, sizeof floor_p, "%s/floor.out", dir);
    snprintf(ties_p, sizeof ties_p, "%s/ties.safetensors", dir);
    snprintf(dare_p, sizeof dare_p, "%s/dare.safetensors", dir);
    snprintf(torch_p, sizeof torch_p, "%s/torch.safetensors", dir);
    snprintf(ties_yml, sizeof ties_yml, "%s/ties.yml", dir);
    snprintf(dare_yml, sizeof dare_yml, "%s/dare.yml", dir);
    snprintf(log_p, sizeof log_p, "%s/hma.log", dir);
    printf("folder: %s, %d layers, best of %d runs\n", dir, layers, reps);
    fflush(stdout);

    double t0 = bench_now();
    snprintf(cmd, sizeof cmd, "'%s' '%s' %d --third", gen, dir, layers);
    if (system(cmd) != 0 || write_recipe(ties_yml, "ties") || write_recipe(dare_yml, "dare_ties")) {
        fprintf(stderr, "bench_mergekit: generating the inputs failed: %s\n", cmd);
        cleanup();
        return 2;
    }
    uint64_t fsz = bench_file_size(in_p[0]);
    if (!fsz || fsz != bench_file_size(in_p[1]) || fsz != bench_file_size(in_p[2])) {
        fprintf(stderr, "bench_mergekit: generated files missing or of different sizes\n");
        cleanup();
        return 2;
    }
    uint64_t big = largest_tensor(in_p[0]);
    double bound_mib = 64.0 + (double)big * 4.0 * (MODELS + 2) / 1048576.0;
    double traffic = (MODELS + 1.0) * (double)fsz;
    printf("inputs: 3 x %.3f GB BF16 (generated in %.1f s); traffic per merge %.3f GB (3 read + 1 written)\n",
           (double)fsz / 1e9, bench_now() - t0, traffic / 1e9);
    printf("recipes: %s (ties), %s (dare_ties, --seed 42)\n\n", ties_yml, dare_yml);
    fflush(stdout);

    bench_result fl[2], ti[2], da[2];
    int err = 0;
    for (int k = 0; k < 2 && !err; k++) {
        err |= run_floor3(k + 1, &fl[k]);
        if (!err) err |= run_hma(hma_bin, "hma merge ties", ties_yml, ties_p, k + 1, NULL, &ti[k]);
        if (!err) err |= run_hma(hma_bin, "hma merge dare_ties", dare_yml, dare_p, k + 1, "42", &da[k]);
        unlink(dare_p);
    }
    if (err) {
        cleanup();
        return 2;
    }

    printf("%-22s %3s %8s %8s %8s %8s %9s %11s %9s\n", "what", "thr", "best s", "median", "worst", "GB/s",
           "vs floor", "RssAnon MiB", "bound MiB");
    for (int k = 0; k < 2; k++) {
        bench_result *rs[3] = {&fl[k], &ti[k], &da[k]};
        for (int q = 0; q < 3; q++) {
            bench_result *r = rs[q];
            char rss[32] = "-", bnd[16] = "-";
            if (r->rss_kb >= 0) snprintf(rss, sizeof rss, "%.1f", (double)r->rss_kb / 1024.0);
            if (q) snprintf(bnd, sizeof bnd, "%.0f", bound_mib);
            printf("%-22s %3d %8.3f %8.3f %8.3f %8.2f %8.3fx %11s %9s\n", r->what, r->threads, r->best, r->median,
                   r->worst, traffic / r->best / 1e9, fl[k].best / r->best, rss, bnd);
        }
    }
    printf("\n(vs floor = 3-input floor time / this time, same thread count; RssAnon = peak of the hma\n"
           " process, sampled every 2 ms; floor rows: this process. bound = 64 MiB + largest tensor\n"
           " (%llu elements) x 4 bytes x (3 models + 2))\n\n",
           (unsigned long long)big);

    int pass = 1;
    double ratio = fl[1].best / ti[1].best;
    pass &= ratio >= 0.5;
    printf("goal: TIES >= 0.5 x floor with 2 threads: %.3f  %s\n", ratio, ratio >= 0.5 ? "PASS" : "FAIL");
    printf("(no goal) DARE vs floor with 2 threads: %.3f\n", fl[1].best / da[1].best);
    for (int k = 0; k < 2; k++) {
        bench_result *rs[2] = {&ti[k], &da[k]};
        for (int q = 0; q < 2; q++) {
            int ok = rs[q]->rss_kb >= 0 && (double)rs[q]->rss_kb / 1024.0 <= bound_mib;
            pass &= ok;
            printf("goal: %s, %d thread%s: peak RssAnon %.1f MiB <= %.0f MiB  %s\n", rs[q]->what, k + 1,
                   k ? "s" : "", (double)rs[q]->rss_kb / 1024.0, bound_mib, ok ? "PASS" : "FAIL");
        }
    }

    if (have_torch) {
        printf("\nPyTorch (mergekit's math, bench/torch_mergekit.py), 2 threads:\n");
        fflush(stdout);
        long ndiff = -1;
        double tt = run_torch(py, ties_yml, ties_p, &ndiff); /* ties_p: libhma's 2-thread TIES output */
        if (tt <= 0) {
            printf("PyTorch TIES run failed (see above)\n");
            pass = 0;
        } else {
            double sp = tt / ti[1].best;
            pass &= sp >= 10.0;
            printf("goal: TIES >= 10x PyTorch, 2 threads: PyTorch %.3f s (%.2f GB/s), libhma %.1fx faster  %s\n", tt,
                   traffic / tt / 1e9, sp, sp >= 10.0 ? "PASS" : "FAIL");
            printf("(no goal) TIES elements differing from mergekit's math: %ld (expected: a small fraction, "
                   "the ties at the top-k threshold that torch's unstable argsort orders differently)\n",
                   ndiff);
        }
        unlink(ties_p);
        tt = run_torch(py, dare_yml, NULL, NULL);
        if (tt <= 0) {
            printf("PyTorch DARE run failed (see above)\n");
            pass = 0;
        } else {
            printf("(no goal) DARE vs PyTorch, 2 threads: PyTorch %.3f s (%.2f GB/s), libhma %.1fx faster "
                   "(random draws differ: not compared)\n",
                   tt, traffic / tt / 1e9, tt / da[1].best);
        }
    } else {
        printf("\nPyTorch: not measured (`%s -c \"import torch\"` fails here)\n", py);
    }
    cleanup();
    printf("\n%s\n", pass ? "bench_mergekit: all measured goals met" : "bench_mergekit: some goals missed");
    return pass ? 0 : 1;
}
