/*
 * fuzz_common.h - helpers shared by the libFuzzer targets (tests/fuzz/fuzz_*.c)
 * and the seed generator (tests/fuzz/gen_seeds.c): a per-process temp folder,
 * a reusable memfd that stands for "a file with these bytes", a walk that
 * touches every byte a store hands out, and the fixed synthetic checkpoints
 * the pack target uses as its base (the seed packs are made against the very
 * same bytes, so the base checksum matches).
 *
 * Everything is `static` so that each target stays one translation unit.
 */
#ifndef HMA_FUZZ_COMMON_H
#define HMA_FUZZ_COMMON_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hma.h"

/* Each target uses only some helpers. */
#define FZ_FN static __attribute__((unused))

/* Crash on a broken invariant: libFuzzer records abort() as a finding. */
#define FZ_CHECK(cond)                                                                    \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,       \
                    __LINE__, #cond, hma_last_error());                                   \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

/* ---- files ---------------------------------------------------------------- */

FZ_FN int fz_write_file(const char *path, const void *data, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    const unsigned char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return close(fd);
}

FZ_FN void fz_rmtree(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) fz_rmtree(p);
            else unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* One temp folder per process, removed at exit (libFuzzer exits through
 * exit(), so atexit runs on every normal end; a crash leaves it behind). */
static char fz_dir_buf[512];
FZ_FN void fz_tmpdir_cleanup(void) {
    if (fz_dir_buf[0]) fz_rmtree(fz_dir_buf);
}
static const char *fz_tmpdir(void) {
    if (!fz_dir_buf[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fz_dir_buf, sizeof fz_dir_buf, "%s/hma-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fz_dir_buf)) {
            perror("mkdtemp");
            abort();
        }
        atexit(fz_tmpdir_cleanup);
    }
    return fz_dir_buf;
}
FZ_FN void fz_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", fz_tmpdir(), name);
}

/* A memfd reused for every input: the store opens it through /proc/self/fd/N
 * like any file (no disk, no leftover files, one descriptor for the run). */
typedef struct fz_memfd {
    int fd;
    char path[64];
} fz_memfd;

FZ_FN void fz_memfd_set(fz_memfd *m, const uint8_t *data, size_t size) {
    if (m->fd <= 0) {
        m->fd = memfd_create("hma-fuzz", MFD_CLOEXEC);
        if (m->fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(m->path, sizeof m->path, "/proc/self/fd/%d", m->fd);
    }
    FZ_CHECK(ftruncate(m->fd, 0) == 0);
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(m->fd, data + done, size - done, (off_t)done);
        FZ_CHECK(w > 0);
        done += (size_t)w;
    }
}

/* ---- touching a store ------------------------------------------------------ */

/* Read every tensor (all bytes, and a range at each end), every metadata
 * entry, and look every name up: ASan then sees each byte the store hands
 * out. In mmap mode the zero-copy pointer must agree with hma_store_read(). */
FZ_FN void fz_touch_store(const hma_store *st, int mapped) {
    size_t n = hma_store_count(st);
    for (size_t i = 0; i < hma_store_metadata_count(st); i++) {
        const char *k = NULL, *v = NULL;
        FZ_CHECK(hma_store_metadata_at(st, i, &k, &v) == HMA_OK);
        FZ_CHECK(k && v);
        FZ_CHECK(hma_store_metadata(st, k) != NULL);
        (void)strlen(v);
    }
    for (size_t f = 0; f < hma_store_file_count(st); f++) FZ_CHECK(hma_store_file_path(st, f) != NULL);
    for (size_t i = 0; i < n; i++) {
        const hma_tensor *t = hma_store_tensor(st, i);
        FZ_CHECK(t != NULL);
        const char *name = hma_tensor_name(t);
        FZ_CHECK(name && *name);
        FZ_CHECK(hma_store_find(st, name) == t);
        FZ_CHECK(hma_tensor_index(t) == i);
        FZ_CHECK(hma_tensor_file(t) < hma_store_file_count(st));
        FZ_CHECK((unsigned)hma_tensor_dtype(t) < HMA_DTYPE_COUNT);
        unsigned nd = hma_tensor_ndim(t);
        FZ_CHECK(nd <= HMA_MAX_DIMS);
        const uint64_t *sh = hma_tensor_shape(t);
        FZ_CHECK(sh != NULL);
        uint64_t ne = 1;
        for (unsigned d = 0; d < nd; d++) ne *= sh[d];
        FZ_CHECK(ne == hma_tensor_nelements(t));
        uint64_t nb = hma_tensor_nbytes(t);
        if (nb > (64u << 20)) continue; /* cannot happen for a fuzz-sized file */
        unsigned char *buf = malloc(nb ? (size_t)nb : 1);
        FZ_CHECK(buf != NULL);
        int rc = hma_store_read(st, t, 0, buf, (size_t)nb);
        if (rc == HMA_OK && mapped && nb) {
            const void *p = hma_tensor_data(t);
            FZ_CHECK(p != NULL);
            FZ_CHECK(memcmp(p, buf, (size_t)nb) == 0);
        }
        if (rc == HMA_OK && nb > 1) {
            unsigned char b2[1];
            FZ_CHECK(hma_store_read(st, t, nb - 1, b2, 1) == HMA_OK && b2[0] == buf[nb - 1]);
        }
        /* one byte past the end must be refused */
        unsigned char b3[2];
        FZ_CHECK(hma_store_read(st, t, nb, b3, 1) == HMA_ERR_INVALID_ARGUMENT);
        free(buf);
    }
    FZ_CHECK(hma_store_tensor(st, n) == NULL);
}

/* ---- fixed synthetic checkpoints ---------------------------------------------- */

/* Deterministic bytes (xorshift) so the base and the seeds never change
 * between runs unless this file does. */
FZ_FN uint64_t fz_rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* BF16 / F16 / F32 bits of a small smooth value plus noise. */
FZ_FN void fz_fill(unsigned char *p, hma_dtype dt, uint64_t n, uint64_t seed, double noise) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1, s2 = seed * 0xD1B54A32D192ED03ull + 7;
    for (uint64_t i = 0; i < n; i++) {
        double v = 0.02 * (double)((int64_t)(fz_rng_next(&s) % 2001) - 1000) / 1000.0;
        /* separate stream: the variant is the base plus a small update */
        if (noise != 0.0) v += noise * (double)((int64_t)(fz_rng_next(&s2) % 201) - 100) / 100.0;
        float f = (float)v;
        uint32_t u;
        memcpy(&u, &f, 4);
        if (dt == HMA_DTYPE_F32) {
            memcpy(p + 4 * i, &u, 4);
        } else if (dt == HMA_DTYPE_BF16) {
            uint16_t h = (uint16_t)(u >> 16);
            memcpy(p + 2 * i, &h, 2);
        } else if (dt == HMA_DTYPE_F16) {
            /* crude but valid: small normal halves from the float's top bits */
            uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
            int e = (int)((u >> 23) & 0xff) - 127 + 15;
            uint16_t h = e <= 0 ? sign : (uint16_t)(sign | (uint16_t)(e << 10) | (uint16_t)((u >> 13) & 0x3ff));
            memcpy(p + 2 * i, &h, 2);
        } else {
            p[i * (hma_dtype_bits(dt) / 8)] = (unsigned char)fz_rng_next(&s);
        }
    }
}

/* Chunk layouts the pack reader uses (pack/format.c: hma__pk_dtype_fmt): U8-like, BF16,
 * F16, F32, F64, then 2/4/8-byte integers. fuzz_pack_chunk picks one by
 * index; gen_seeds makes its chunk seeds with the same table. */
static const unsigned fz_chunk_layouts[][2] = {
    {1, 0}, {2, 8}, {2, 5}, {4, 8}, {8, 11}, {2, 0}, {4, 0}, {8, 0},
};
#define FZ_N_LAYOUTS (sizeof fz_chunk_layouts / sizeof fz_chunk_layouts[0])

/* n bytes of weight-like elements of layout `lay` (the fixed base of
 * fuzz_pack_chunk when noise is 0; a fine-tuned variant of it otherwise). */
FZ_FN void fz_chunk_bytes(uint8_t *p, size_t n, size_t lay, double noise) {
    unsigned es = fz_chunk_layouts[lay][0], eb = fz_chunk_layouts[lay][1];
    size_t ne = n / es;
    memset(p, 0, n);
    if (es == 8 && eb) {
        uint64_t s = 5, s2 = 6;
        for (size_t i = 0; i < ne; i++) {
            double v = 0.02 * (double)((int64_t)(fz_rng_next(&s) % 2001) - 1000) / 1000.0;
            if (noise != 0.0) v += noise * (double)((int64_t)(fz_rng_next(&s2) % 201) - 100) / 100.0;
            memcpy(p + 8 * i, &v, 8);
        }
    } else if (eb) {
        fz_fill(p, es == 4 ? HMA_DTYPE_F32 : eb == 8 ? HMA_DTYPE_BF16 : HMA_DTYPE_F16, ne, 3, noise);
    } else {
        uint64_t s = 12345;
        for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(fz_rng_next(&s) % 7);
        if (noise != 0.0)
            for (size_t i = 0; i < n; i += 5) p[i] ^= 1;
    }
}

typedef struct fz_tdef {
    const char *name;
    hma_dtype dtype;
    unsigned ndim;
    uint64_t shape[2];
} fz_tdef;

/* The pack base / target layout: a multi-chunk F32 tensor (chunk size 4096
 * in the seeds), BF16, F16, an integer tensor and a scalar. */
static const fz_tdef fz_pack_tensors[] = {
    {"model.embed_tokens.weight", HMA_DTYPE_BF16, 2, {16, 8}},
    {"model.layers.0.mlp.weight", HMA_DTYPE_F32, 2, {40, 30}}, /* 4800 bytes: 2 chunks */
    {"model.layers.1.attn.weight", HMA_DTYPE_F16, 1, {24, 0}},
    {"model.layers.1.step", HMA_DTYPE_I32, 1, {3, 0}},
    {"lm_head.scale", HMA_DTYPE_F32, 0, {0, 0}},
};

/* Write the fixed synthetic checkpoint `which` (0 = base, 1 = a fine-tuned
 * variant: base + small noise, 2 = variant with one tensor missing and one
 * extra) to path with the library's writer. Returns an hma_error code. */
FZ_FN int fz_write_checkpoint(const char *path, int which) {
    hma_writer *w = NULL;
    int rc = hma_writer_create(&w, path, 0);
    if (rc) return rc;
    size_t nt = sizeof fz_pack_tensors / sizeof fz_pack_tensors[0];
    if (!rc) rc = hma_writer_set_metadata(w, "format", "pt");
    for (size_t i = 0; i < nt && !rc; i++) {
        const fz_tdef *d = &fz_pack_tensors[i];
        const char *name = d->name;
        if (which == 2 && i == 2) name = "model.layers.1.extra";
        rc = hma_writer_add_tensor(w, name, d->dtype, d->ndim, d->shape);
    }
    if (!rc) rc = hma_writer_begin(w);
    for (size_t i = 0; i < nt && !rc; i++) {
        const fz_tdef *d = &fz_pack_tensors[i];
        uint64_t ne = 1;
        for (unsigned k = 0; k < d->ndim; k++) ne *= d->shape[k];
        size_t nb = (size_t)(ne * (hma_dtype_bits(d->dtype) / 8));
        unsigned char *buf = calloc(nb ? nb : 1, 1);
        if (!buf) {
            rc = HMA_ERR_NO_MEMORY;
            break;
        }
        fz_fill(buf, d->dtype, ne, i + 1, which ? 0.001 : 0.0);
        rc = hma_writer_write(w, i, 0, buf, nb);
        free(buf);
    }
    if (!rc) rc = hma_writer_commit(w);
    hma_writer_free(w);
    return rc;
}

#endif /* HMA_FUZZ_COMMON_H */
