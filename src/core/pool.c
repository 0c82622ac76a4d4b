/* pool.c - the one worker pool (lowest failing job wins, progress, cancel),
 * and tasks: one function on a thread beside the caller. The library's
 * threads all start here. */
#include "core/pool.h"
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct pool {
    hma__job_fn fn;
    void *arg;
    uint64_t n;
    atomic_uint_fast64_t next, done;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned running;
    int changed;
    int err;           /* code of the failing job with the smallest index */
    uint64_t err_job;
    char msg[1024];
} pool;

typedef struct pool_worker {
    pool *p;
    unsigned id;
} pool_worker;

static void record(pool *p, uint64_t job, int rc) {
    pthread_mutex_lock(&p->mu);
    if (!p->err || job < p->err_job) {
        p->err = rc;
        p->err_job = job;
        snprintf(p->msg, sizeof p->msg, "%s", hma_last_error());
    }
    atomic_store(&p->stop, 1);
    pthread_mutex_unlock(&p->mu);
}

static void wake(pool *p, int finished) {
    pthread_mutex_lock(&p->mu);
    if (finished) p->running--;
    p->changed = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void work(pool *p, unsigned id, int report) {
    while (!atomic_load(&p->stop)) {
        uint64_t j = atomic_fetch_add(&p->next, 1);
        if (j >= p->n) break;
        int rc = p->fn(p->arg, j, id);
        if (rc) {
            record(p, j, rc);
            break;
        }
        atomic_fetch_add(&p->done, 1);
        if (report) wake(p, 0);
    }
}

static void *worker_main(void *a) {
    pool_worker *w = a;
    work(w->p, w->id, 1);
    wake(w->p, 1);
    return NULL;
}

unsigned hma__pool_threads(unsigned threads, uint64_t njobs) {
    unsigned nt = threads;
    if (nt == 0) { /* the online CPUs */
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nt = n < 1 ? 1 : (unsigned long)n > HMA__MAX_THREADS ? HMA__MAX_THREADS : (unsigned)n;
    }
    if (nt > HMA__MAX_THREADS) nt = HMA__MAX_THREADS;
    if (njobs < nt) nt = njobs ? (unsigned)njobs : 1;
    return nt;
}

int hma__pool_run(uint64_t njobs, unsigned threads, hma__job_fn fn, void *arg,
                  hma__progress_cb progress, void *progress_user) {
    if (njobs == 0) {
        return progress ? progress(progress_user, 0, 0) : HMA_OK;
    }
    unsigned nt = hma__pool_threads(threads, njobs);
    pool p;
    memset(&p, 0, sizeof p);
    p.fn = fn;
    p.arg = arg;
    p.n = njobs;
    atomic_init(&p.next, 0);
    atomic_init(&p.done, 0);
    atomic_init(&p.stop, 0);
    if (pthread_mutex_init(&p.mu, NULL) != 0) return hma__fail(HMA_ERR_THREAD, "pthread_mutex_init failed");
    if (pthread_cond_init(&p.cv, NULL) != 0) {
        pthread_mutex_destroy(&p.mu);
        return hma__fail(HMA_ERR_THREAD, "pthread_cond_init failed");
    }
    /* Without progress the calling thread is worker 0 and nt - 1 threads start. */
    unsigned first = progress ? 0 : 1;
    unsigned nstart = nt - first;
    pthread_t *tid = NULL;
    pool_worker *w = NULL;
    int rc = HMA_OK;
    if (nstart) {
        tid = hma__malloc(nstart * sizeof *tid);
        w = hma__malloc(nstart * sizeof *w);
        if (!tid || !w) rc = hma__fail(HMA_ERR_NO_MEMORY, "out of memory for %u worker threads", nt);
    }
    unsigned started = 0;
    for (; !rc && started < nstart; started++) {
        w[started].p = &p;
        w[started].id = first + started;
        pthread_mutex_lock(&p.mu);
        p.running++;
        pthread_mutex_unlock(&p.mu);
        if (pthread_create(&tid[started], NULL, worker_main, &w[started]) != 0) {
            pthread_mutex_lock(&p.mu);
            p.running--;
            pthread_mutex_unlock(&p.mu);
            rc = hma__fail(HMA_ERR_THREAD, "could not start worker thread %u of %u", first + started + 1, nt);
            atomic_store(&p.stop, 1);
            break;
        }
    }
    int cancelled = 0; /* the progress callback's error code */
    if (!progress) {
        if (!rc) work(&p, 0, 0);
    } else {
        for (;;) {
            pthread_mutex_lock(&p.mu);
            while (p.running > 0 && !p.changed) pthread_cond_wait(&p.cv, &p.mu);
            p.changed = 0;
            unsigned running = p.running;
            pthread_mutex_unlock(&p.mu);
            if (!rc && !cancelled && !atomic_load(&p.stop)) {
                cancelled = progress(progress_user, atomic_load(&p.done), njobs);
                if (cancelled) atomic_store(&p.stop, 1);
            }
            if (running == 0) break;
        }
    }
    for (unsigned t = 0; t < started; t++) pthread_join(tid[t], NULL);
    hma__free(tid);
    hma__free(w);
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);
    if (rc) return rc;
    if (p.err) return hma__fail(p.err, "%s", p.msg);
    if (cancelled) return cancelled; /* its message was set on this thread by the callback */
    return HMA_OK;
}

/* ---- tasks ------------------------------------------------------------- */

static void task_set(hma__task *t, int rc) {
    pthread_mutex_lock(&t->mu);
    t->rc = rc;
    if (rc) snprintf(t->msg, sizeof t->msg, "%s", hma_last_error());
    t->done = 1;
    __atomic_store_n(&t->ready, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

static void *task_main(void *a) {
    hma__task *t = a;
    task_set(t, t->fn(t->arg));
    return NULL;
}

void hma__task_start(hma__task *t, hma__task_fn fn, void *arg) {
    memset(t, 0, sizeof *t);
    t->fn = fn;
    t->arg = arg;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    t->thread = pthread_create(&t->th, NULL, task_main, t) == 0;
    if (!t->thread) task_set(t, fn(arg)); /* no thread: here and now */
}

int hma__task_done(hma__task *t) { return __atomic_load_n(&t->ready, __ATOMIC_ACQUIRE); }

int hma__task_wait(hma__task *t) {
    if (!hma__task_done(t)) {
        pthread_mutex_lock(&t->mu);
        while (!t->done) pthread_cond_wait(&t->cv, &t->mu);
        pthread_mutex_unlock(&t->mu);
    }
    return t->rc ? hma__fail(t->rc, "%s", t->msg) : HMA_OK;
}

int hma__task_finish(hma__task *t) {
    if (t->thread) pthread_join(t->th, NULL);
    t->thread = 0;
    int rc = hma__task_wait(t);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    return rc;
}
