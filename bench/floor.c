/*
 * floor.c - the floor of any file-to-file merge of N inputs on this machine:
 * map every input, combine them with a trivial operation (XOR), and write the
 * output the way libhma's writer does (per-thread chunk buffer + pwrite into a
 * file preallocated with fallocate), or straight into a shared output mapping.
 * bench_floor() is the two-input case of bench_floor_n().
 */
#include "bench.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* 512 KiB: the output bytes of one libhma chunk (256K BF16 elements), small
 * enough that the buffer is still in L2 when pwrite copies it out. */
#define CHUNK (512u << 10)
#define MAX_IN 16

typedef struct {
    const unsigned char *in[MAX_IN];
    int n_in;
    unsigned char *out_map;
    int out_fd;
    size_t size;
    atomic_size_t next;
    int failed;
} job;

static void *worker(void *arg) {
    job *j = arg;
    unsigned char *buf = j->out_map ? NULL : malloc(CHUNK);
    for (;;) {
        size_t off = atomic_fetch_add(&j->next, CHUNK);
        if (off >= j->size) break;
        size_t n = j->size - off < CHUNK ? j->size - off : CHUNK;
        const uint64_t *a = (const uint64_t *)(j->in[0] + off), *b = (const uint64_t *)(j->in[1] + off);
        uint64_t *o = (uint64_t *)(j->out_map ? j->out_map + off : buf);
        size_t w = n / 8;
        /* Three inputs in one pass (the mergekit benchmark's case), so that
         * each input byte is read once, as a merge reads it; more inputs
         * fold into the chunk buffer, which is still in L2. */
        if (j->n_in == 3) {
            const uint64_t *c = (const uint64_t *)(j->in[2] + off);
            for (size_t i = 0; i < w; i++) o[i] = a[i] ^ b[i] ^ c[i];
        } else {
            for (size_t i = 0; i < w; i++) o[i] = a[i] ^ b[i];
            for (int q = 3; q < j->n_in; q++) {
                const uint64_t *c = (const uint64_t *)(j->in[q] + off);
                for (size_t i = 0; i < w; i++) o[i] ^= c[i];
            }
        }
        for (size_t i = w * 8; i < n; i++) {
            unsigned char x = 0;
            for (int q = 0; q < j->n_in; q++) x ^= j->in[q][off + i];
            ((unsigned char *)o)[i] = x;
        }
        if (!j->out_map) {
            size_t done = 0;
            while (done < n) {
                ssize_t r = pwrite(j->out_fd, buf + done, n - done, (off_t)(off + done));
                if (r <= 0) { j->failed = 1; break; }
                done += (size_t)r;
            }
        }
    }
    free(buf);
    return NULL;
}

static const unsigned char *map_file(const char *path, size_t *size) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) { perror(path); if (fd >= 0) close(fd); return NULL; }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) { perror(path); return NULL; }
    *size = (size_t)st.st_size;
    return p;
}

int bench_floor_n(const char *const *paths, int n_in, const char *out_path, int threads, int use_mmap,
                  double *seconds) {
    double t0 = bench_now();
    if (n_in < 2 || n_in > MAX_IN || threads < 1 || threads > 64) return 1;
    job j = {.n_in = n_in};
    size_t sizes[MAX_IN] = {0};
    int bad = 0;
    for (int q = 0; q < n_in; q++) {
        j.in[q] = map_file(paths[q], &sizes[q]);
        bad |= !j.in[q] || sizes[q] != sizes[0];
    }
    size_t sa = sizes[0];
    if (bad) {
        for (int q = 0; q < n_in; q++)
            if (j.in[q]) munmap((void *)j.in[q], sizes[q]);
        return 1;
    }
    int fd = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    /* Reserve the space as libhma's writer does (fallocate, else a sparse file):
     * on tmpfs this moves page allocation out of the parallel writes. */
    if (fd < 0 || (fallocate(fd, 0, 0, (off_t)sa) != 0 && ftruncate(fd, (off_t)sa) != 0)) {
        perror(out_path);
        return 1;
    }
    j.out_fd = fd;
    j.size = sa;
    atomic_init(&j.next, 0);
    if (use_mmap) {
        j.out_map = mmap(NULL, sa, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (j.out_map == MAP_FAILED) { perror("mmap"); return 1; }
    }
    pthread_t th[64];
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, worker, &j);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    if (use_mmap) munmap(j.out_map, sa);
    if (fsync(fd) != 0) j.failed = 1;
    close(fd);
    for (int q = 0; q < n_in; q++) munmap((void *)j.in[q], sizes[q]);
    *seconds = bench_now() - t0;
    return j.failed;
}

int bench_floor(const char *a_path, const char *b_path, const char *out_path, int threads, int use_mmap,
                double *seconds) {
    const char *paths[2] = {a_path, b_path};
    return bench_floor_n(paths, 2, out_path, threads, use_mmap, seconds);
}
