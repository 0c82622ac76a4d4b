/* bench_util.c - clock and an RssAnon sampler thread (peak anonymous memory). */
#include "bench.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

long bench_rss_anon_now(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "RssAnon:", 8) == 0) sscanf(line + 8, "%ld", &kb);
    if (f) fclose(f);
    return kb;
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
