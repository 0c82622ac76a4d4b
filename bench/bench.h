/* bench.h - shared helpers of the benchmark programs. */
#ifndef HMA_BENCH_H
#define HMA_BENCH_H
#include <stddef.h>
#include <stdint.h>
double bench_now(void);
/* Peak RssAnon (kB) seen by the sampler since the last reset. */
void bench_rss_start(void);
long bench_rss_stop(void);
long bench_rss_anon_now(void);
int bench_floor(const char *a, const char *b, const char *out, int threads, int use_mmap, double *seconds);
#endif
