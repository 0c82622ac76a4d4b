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
/* RssAnon (kB) of process `pid` now, -1 when it cannot be read (gone). */
long bench_rss_anon_of(long pid);
int bench_floor(const char *a, const char *b, const char *out, int threads, int use_mmap, double *seconds);
/* The floor of an n-input merge (2 <= n <= 16): XOR of all inputs. */
int bench_floor_n(const char *const *paths, int n, const char *out, int threads, int use_mmap, double *seconds);

/* One row of a timing table: best/median/worst of the runs. */
typedef struct bench_result {
    const char *what;
    int threads;
    double best, median, worst;
    long rss_kb;     /* peak RssAnon during the runs, kB (-1 unknown) */
    long rss_base_kb;
} bench_result;
/* Sort t[0..n) and set r's best, median and worst. */
void bench_summarize(bench_result *r, double *t, int n);
/* The floor row: `reps` (<= 16) runs of bench_floor_n over the n inputs into
 * `out` (removed before each run and at the end), best/median/worst and the
 * peak RssAnon into r. `prog` prefixes the error message. 0 or 1. */
int bench_floor_row(const char *const *in, int n, const char *out, int threads, int reps, const char *what,
                    const char *prog, bench_result *r);
uint64_t bench_file_size(const char *path);
/* Make a fresh folder hma-bench-PID (or hma-bench-TAG-PID when tag is set)
 * in $HMA_BENCH_DIR (which must fit), else /dev/shm, else $TMPDIR or /tmp,
 * the first with `need` bytes free; its path into dir. 0 or -1. */
int bench_pick_dir(char *dir, size_t cap, uint64_t need, const char *tag);
/* Print the "machine: ..." line (CPU, cores, kernel, libhma, SIMD). */
void bench_machine(void);
#endif
