/* cli/progress.c - progress bar of `hma merge` (see progress.h). */
#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double cli_progress_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_progress_init(cli_progress *p, int force_off) {
    p->tty = !force_off && isatty(2);
    p->drawn = 0;
    p->start = cli_progress_now();
    p->last_draw = 0;
    p->total = 0;
}

int cli_progress_cb(void *user, uint64_t done, uint64_t total) {
    cli_progress *p = user;
    p->total = total;
    if (!p->tty) return 0;
    double now = cli_progress_now();
    if (done < total && now - p->last_draw < 0.1) return 0;
    p->last_draw = now;
    double el = now - p->start;
    double frac = total ? (double)done / (double)total : 1.0;
    double gbs = el > 0 ? (double)done / el / 1e9 : 0.0;
    enum { W = 30 };
    char bar[W + 1];
    int fill = (int)(frac * W);
    for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
    bar[W] = 0;
    if (done > 0 && done < total && gbs > 0) {
        double eta = (double)(total - done) / 1e9 / gbs;
        fprintf(stderr, "\r[%s] %5.1f%%  %6.2f GB/s  ETA %4.0fs ", bar, 100.0 * frac, gbs, eta);
    } else {
        fprintf(stderr, "\r[%s] %5.1f%%  %6.2f GB/s  ETA    -  ", bar, 100.0 * frac, gbs);
    }
    fflush(stderr);
    p->drawn = 1;
    return 0;
}

double cli_progress_finish(cli_progress *p) {
    if (p->drawn) fputc('\n', stderr);
    p->drawn = 0;
    return cli_progress_now() - p->start;
}
