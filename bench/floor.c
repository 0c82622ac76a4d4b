/*
 * floor.c - the floor of any file-to-file two-input merge on this machine:
 * map both inputs, combine them with a trivial operation (XOR), and write the
 * output the way libhma's writer does (per-thread chunk buffer + pwrite into a
 * file preallocated with fallocate), or straight into a shared output mapping.
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

typedef struct {
    const unsigned char *a, *b;
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
        const uint64_t *a = (const uint64_t *)(j->a + off), *b = (const uint64_t *)(j->b + off);
        uint64_t *o = (uint64_t *)(j->out_map ? j->out_map + off : buf);
        size_t w = n / 8;
        for (size_t i = 0; i < w; i++) o[i] = a[i] ^ b[i];
        for (size_t i = w * 8; i < n; i++) ((unsigned char *)o)[i] = j->a[off + i] ^ j->b[off + i];
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

int bench_floor(const char *a_path, const char *b_path, const char *out_path, int threads, int use_mmap,
                double *seconds) {
    double t0 = bench_now();
    size_t sa = 0, sb = 0;
    const unsigned char *a = map_file(a_path, &sa), *b = map_file(b_path, &sb);
    if (!a || !b || sa != sb) return 1;
    int fd = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    /* Reserve the space as libhma's writer does (fallocate, else a sparse file):
     * on tmpfs this moves page allocation out of the parallel writes. */
    if (fd < 0 || (fallocate(fd, 0, 0, (off_t)sa) != 0 && ftruncate(fd, (off_t)sa) != 0)) {
        perror(out_path);
        return 1;
    }
    job j = {.a = a, .b = b, .out_fd = fd, .size = sa};
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
    munmap((void *)a, sa);
    munmap((void *)b, sb);
    *seconds = bench_now() - t0;
    return j.failed;
}
