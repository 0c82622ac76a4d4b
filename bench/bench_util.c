/*
 * bench_util.c - what the benchmark programs share: clock, RssAnon of this
 * process (sampler thread) or of another, summary of repeated timings, the
 * scratch folder, the machine line.
 */
#include "bench.h"

#include <hma.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long rss_anon_in(const char *status_path) {
    FILE *f = fopen(status_path, "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "RssAnon:", 8) == 0) sscanf(line + 8, "%ld", &kb);
    if (f) fclose(f);
    return kb;
}

long bench_rss_anon_now(void) { return rss_anon_in("/proc/self/status"); }

long bench_rss_anon_of(long pid) {
    char p[64];
    snprintf(p, sizeof p, "/proc/%ld/status", pid);
    return rss_anon_in(p);
}

static atomic_int running;
static atomic_long peak;
static pthread_t sampler;

static void *sample(void *arg) {
    (void)arg;
    while (atomic_load(&running)) {
        long v = bench_rss_anon_now();
        if (v > atomic_load(&peak)) atomic_store(&peak, v);
        usleep(2000);
    }
    return NULL;
}

void bench_rss_start(void) {
    atomic_store(&peak, bench_rss_anon_now());
    atomic_store(&running, 1);
    pthread_create(&sampler, NULL, sample, NULL);
}

long bench_rss_stop(void) {
    atomic_store(&running, 0);
    pthread_join(sampler, NULL);
    long v = bench_rss_anon_now();
    if (v > atomic_load(&peak)) atomic_store(&peak, v);
    return atomic_load(&peak);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void bench_summarize(bench_result *r, double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    r->best = t[0];
    r->median = t[n / 2];
    r->worst = t[n - 1];
}

uint64_t bench_file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

int bench_pick_dir(char *dir, size_t cap, uint64_t need, const char *tag) {
    const char *env = getenv("HMA_BENCH_DIR");
    const char *cands[3] = {env, "/dev/shm", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp"};
    for (int i = 0; i < 3; i++) {
        if (!cands[i] || !*cands[i]) continue;
        struct statvfs vs;
        if (statvfs(cands[i], &vs) != 0) continue;
        uint64_t avail = (uint64_t)vs.f_bavail * vs.f_frsize;
        if (avail < need) {
            printf("note: %s has %.1f GB free, need %.1f GB\n", cands[i], (double)avail / 1e9, (double)need / 1e9);
            if (i == 0) return -1; /* an explicit folder must fit */
            continue;
        }
        if (tag)
            snprintf(dir, cap, "%s/hma-bench-%s-%ld", cands[i], tag, (long)getpid());
        else
            snprintf(dir, cap, "%s/hma-bench-%ld", cands[i], (long)getpid());
        if (mkdir(dir, 0700) != 0) {
            perror(dir);
            return -1;
        }
        return 0;
    }
    return -1;
}

void bench_machine(void) {
    struct utsname u;
    char model[256] = "?", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) snprintf(model, sizeof model, "%s", c + 2);
            model[strcspn(model, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
    uname(&u);
    printf("machine: %s, %ld online cores, %s %s, libhma %s, SIMD %s\n", model, sysconf(_SC_NPROCESSORS_ONLN),
           u.sysname, u.release, hma_version_string(), hma_simd_name(hma_simd_best()));
}

int bench_floor_row(const char *const *in, int n, const char *out, int threads, int reps, const char *what,
                    const char *prog, bench_result *r) {
    double t[16];
    if (reps > 16) reps = 16;
    r->what = what;
    r->threads = threads;
    r->rss_base_kb = bench_rss_anon_now();
    bench_rss_start();
    for (int k = 0; k < reps; k++) {
        unlink(out);
        if (bench_floor_n(in, n, out, threads, 0, &t[k])) {
            bench_rss_stop();
            fprintf(stderr, "%s: floor run failed\n", prog);
            return 1;
        }
    }
    r->rss_kb = bench_rss_stop();
    unlink(out);
    bench_summarize(r, t, reps);
    return 0;
}
