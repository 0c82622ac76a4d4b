/*
 * common/pool.c - the example programs' worker pool (see pool.h): threads
 * take jobs in order from an atomic counter; the first failure stops the
 * handing out, the lowest failing job's error is returned.
 */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct pool_state {
    const ex_pool_job *job;
    atomic_size_t next; /* next job to hand out */
    atomic_int stop;    /* a job failed: hand out no more */
    pthread_mutex_t mu; /* guards err, err_job */
    int err;
    size_t err_job;
} pool_state;

static void pool_fail(pool_state *s, size_t i, int rc) {
    pthread_mutex_lock(&s->mu);
    if (!s->err || i < s->err_job) {
        s->err = rc;
        s->err_job = i;
        if (s->job->on_error) s->job->on_error(s->job->ctx, i, rc);
    }
    pthread_mutex_unlock(&s->mu);
    atomic_store(&s->stop, 1);
}

static void *pool_worker(void *arg) {
    pool_state *s = arg;
    const ex_pool_job *job = s->job;
    void *scratch = NULL;
    if (job->scratch_new) {
        int rc = job->scratch_new(job->ctx, &scratch);
        if (rc) {
            pool_fail(s, EX_POOL_NO_JOB, rc);
            return NULL;
        }
    }
    while (!atomic_load(&s->stop)) {
        size_t i = atomic_fetch_add(&s->next, 1);
        if (i >= job->count) break;
        int rc = job->run(job->ctx, scratch, i);
        if (rc) {
            pool_fail(s, i, rc);
            break;
        }
    }
    if (job->scratch_free) job->scratch_free(job->ctx, scratch);
    return NULL;
}

int ex_pool_run(const ex_pool_job *job, unsigned threads) {
    if (job->count == 0) return 0;
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1u;
    }
    if (threads > job->count) threads = (unsigned)job->count;
    pool_state s = {.job = job, .mu = PTHREAD_MUTEX_INITIALIZER};
    atomic_init(&s.next, 0);
    atomic_init(&s.stop, 0);
    pthread_t *tid = threads > 1 ? malloc((threads - 1u) * sizeof *tid) : NULL;
    unsigned started = 0;
    if (tid)
        while (started + 1u < threads && pthread_create(&tid[started], NULL, pool_worker, &s) == 0) started++;
    pool_worker(&s); /* the calling thread works too */
    for (unsigned t = 0; t < started; t++) pthread_join(tid[t], NULL);
    free(tid);
    pthread_mutex_destroy(&s.mu);
    return s.err;
}
