/*
 * pool.h - the one worker pool: jobs 0..n-1 spread over threads, the error
 * of the lowest failing job wins, a progress callback may cancel.
 * Used by merges, packs and group gradients.
 */
#ifndef HMA_CORE_POOL_H
#define HMA_CORE_POOL_H

#include <pthread.h>
#include <stdint.h>

/* Upper bound on worker threads of any library call (more is clamped). */
#define HMA__MAX_THREADS 1024u

/*
 * One job. `worker` is in [0, threads) and unique among the threads running
 * at once, so callers keep per-worker scratch in an array indexed by it.
 * Return HMA_OK, or an error code after setting the thread's message with
 * hma__fail(): that message travels back to the calling thread.
 */
typedef int (*hma__job_fn)(void *arg, uint64_t job, unsigned worker);

/*
 * Progress, on the calling thread only: called after jobs finish (at least
 * once, at the end, when every job succeeded). `jobs_done` counts finished
 * jobs. Return HMA_OK to go on, or an error code (normally from
 * hma__callback_result(), which also sets the message): no further job
 * starts, and hma__pool_run() returns that code once the running jobs end.
 */
typedef int (*hma__progress_cb)(void *user, uint64_t jobs_done, uint64_t njobs);

/* Threads a run of `njobs` jobs will use when `threads` were asked for
 * (0 = the online CPUs): at least 1, at most njobs and HMA__MAX_THREADS. */
unsigned hma__pool_threads(unsigned threads, uint64_t njobs);

/*
 * Run jobs [0, njobs) on hma__pool_threads(threads, njobs) threads. Jobs are
 * handed out in increasing order. When a job fails, jobs not yet started
 * are not started; every job already started finishes. The result is the
 * error (code and message) of the failing job with the smallest index, so
 * it does not depend on timing as long as each job's outcome does not.
 * Without a progress callback the calling thread runs jobs as worker 0;
 * with one, the calling thread only reports progress.
 * Returns HMA_OK, the job's error, HMA_ERR_CANCELLED, HMA_ERR_THREAD or
 * HMA_ERR_NO_MEMORY. Thread-safe (runs share nothing).
 */
int hma__pool_run(uint64_t njobs, unsigned threads, hma__job_fn fn, void *arg,
                  hma__progress_cb progress, void *progress_user);

/*
 * A task: one function run on a thread of its own beside the caller's own
 * work (the recipe layer begins its writer, which reserves the output, while
 * its selection passes run on the pool). Like a pool job, its error code and
 * message travel back to whoever waits for it.
 */
typedef int (*hma__task_fn)(void *arg);
typedef struct hma__task {
    hma__task_fn fn;
    void *arg;
    pthread_t th;
    int thread; /* th was started (to join) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;   /* fn returned (under mu) */
    int ready;  /* done, for a look without the lock (release/acquire) */
    int rc;
    char msg[1024];
} hma__task;

/* Start fn(arg) on a new thread; where none can start, fn runs here and
 * now. Either way the task is then waited for and finished as below. */
void hma__task_start(hma__task *t, hma__task_fn fn, void *arg);
/* 1 once fn has returned; never waits. Thread-safe. */
int hma__task_done(hma__task *t);
/* Wait until fn has returned: its result, with its message set on the
 * calling thread when it failed. Thread-safe: any number of threads may
 * wait at once. */
int hma__task_wait(hma__task *t);
/* Wait, join the thread and release what start made; fn's result as
 * hma__task_wait. Once, by the thread that started it, after every other
 * waiter is done. */
int hma__task_finish(hma__task *t);

#endif
