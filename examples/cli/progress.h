/*
 * cli/progress.h - the `hma` program's progress display for long merges:
 * a bar with percent, GB/s and ETA on stderr when stderr is a terminal,
 * otherwise nothing until the caller prints its one-line summary.
 */
#ifndef CLI_PROGRESS_H
#define CLI_PROGRESS_H

#include <stdint.h>

typedef struct cli_progress {
    int tty;           /* stderr is a terminal: draw the bar */
    int drawn;         /* a bar line is on screen (needs a newline at the end) */
    double start;      /* monotonic seconds at cli_progress_init() */
    double last_draw;  /* when the bar was last redrawn */
    uint64_t total;    /* last total seen */
} cli_progress;

/* Monotonic clock in seconds. */
double cli_progress_now(void);

/* Start timing; `force_off` disables the bar even on a terminal. */
void cli_progress_init(cli_progress *p, int force_off);

/* An hma_progress_fn: redraws the bar at most 10 times a second (and at the
 * end). `user` is the cli_progress. Always returns 0 (never cancels). */
int cli_progress_cb(void *user, uint64_t done, uint64_t total);

/* End the bar line (if one was drawn); returns the seconds since init. */
double cli_progress_finish(cli_progress *p);

#endif /* CLI_PROGRESS_H */
