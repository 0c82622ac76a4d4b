/*
 * hma_progress.h - the `hma` program's progress display for long merges:
 * a bar with percent, GB/s and ETA on stderr when stderr is a terminal,
 * otherwise nothing until the caller prints its one-line summary.
 */
#ifndef HMA_PROGRESS_H
#define HMA_PROGRESS_H

#include <stdint.h>

typedef struct hma_progress {
    int tty;           /* stderr is a terminal: draw the bar */
    int drawn;         /* a bar line is on screen (needs a newline at the end) */
    double start;      /* monotonic seconds at hma_progress_init() */
    double last_draw;  /* when the bar was last redrawn */
    uint64_t total;    /* last total seen */
} hma_progress;

/* Monotonic clock in seconds. */
double hma_progress_now(void);

/* Start timing; `force_off` disables the bar even on a terminal. */
void hma_progress_init(hma_progress *p, int force_off);

/* An hma_progress_fn: redraws the bar at most 10 times a second (and at the
 * end). `user` is the hma_progress. Always returns 0 (never cancels). */
int hma_progress_cb(void *user, uint64_t done, uint64_t total);

/* End the bar line (if one was drawn); returns the seconds since init. */
double hma_progress_finish(hma_progress *p);

#endif /* HMA_PROGRESS_H */
