/*
 * common/pool.h - the one worker pool of the example programs (`hma diff`
 * in examples/cli/ and the toy model scorer in examples/experiment/).
 * libhma's own pool is internal to the library, so the examples have this
 * small one: jobs 0..count-1 are taken in order from a shared counter by up
 * to `threads` threads, the calling thread being one of them.
 *
 *   static int one(void *ctx, void *scratch, size_t i) { ... return 0; }
 *   ex_pool_job job = {.count = n, .run = one, .ctx = &my_state};
 *   int rc = ex_pool_run(&job, threads);
 *
 * Results that each job writes into its own slot do not depend on the
 * thread count. The prefix is ex_ (hma.h reserves hma_ for the library).
 */
#ifndef EX_POOL_H
#define EX_POOL_H

#include <stddef.h>

typedef struct ex_pool_job {
    size_t count; /* jobs 0 .. count-1 */
    /* Runs job i; any thread may call it, for distinct i at once. A nonzero
     * return is that job's error: no further job is started. */
    int (*run)(void *ctx, void *scratch, size_t i);
    void *ctx;
    /* Optional per-thread workspace, made before a thread's first job and
     * freed after its last (both on that thread): scratch_new sets *scratch
     * (passed to run) or returns nonzero, an error as a job's that stops the
     * pool. scratch_free gets what scratch_new set. Either may be NULL. */
    int (*scratch_new)(void *ctx, void **scratch);
    void (*scratch_free)(void *ctx, void *scratch);
    /* Optional: called on the failing thread, under the pool's lock, each
     * time a failure becomes the one ex_pool_run() will return, with its job
     * (EX_POOL_NO_JOB for a scratch_new failure) and code. Read per-thread
     * error state here, e.g. hma_last_error(). */
    void (*on_error)(void *ctx, size_t i, int rc);
} ex_pool_job;

/* The job of a scratch_new failure in on_error(). */
#define EX_POOL_NO_JOB ((size_t)-1)

/* Run job->run for every job on min(threads, job->count) threads (0 = the
 * online cores; threads that cannot be created are left out, the calling
 * thread always works). Returns 0 when every job returned 0, else the error
 * of the lowest-numbered failing job (a scratch_new failure ranks after
 * every job's), so which error is returned does not depend on the timing.
 * Jobs below a failing one have all been run when this returns. */
int ex_pool_run(const ex_pool_job *job, unsigned threads);

#endif /* EX_POOL_H */
