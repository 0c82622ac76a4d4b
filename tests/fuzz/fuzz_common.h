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
 * out. In mmap mode (mapped 1; 2 for a GGUF store, whose quantized tensors
 * have no zero-copy bytes) the zero-copy pointer must agree with
 * hma_store_read(). */
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
            /* mapped == 2 (GGUF): a quantized tensor, served as F32 and
             * decoded on read, has no zero-copy bytes */
            FZ_CHECK(p != NULL || (mapped == 2 && hma_tensor_dtype(t) == HMA_DTYPE_F32));
            if (p) FZ_CHECK(memcmp(p, buf, (size_t)nb) == 0);
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

/* Open `path` memory-mapped (checked with fz_touch_store(., mapped)) and in
 * pread mode; both must validate identically (same code, one-line message)
 * and, when they open, list the same tensors. The caller closes *a and *b
 * (NULL on failure) and returns the shared result code. */
FZ_FN int fz_open_both_modes(const char *path, int mapped, hma_store **a, hma_store **b) {
    *a = *b = NULL;
    int ra = hma_store_open(a, path, 0);
    if (ra) {
        FZ_CHECK(*a == NULL);
        FZ_CHECK(hma_last_error_code() == ra);
        FZ_CHECK(hma_last_error()[0] != 0);
        FZ_CHECK(strchr(hma_last_error(), '\n') == NULL); /* one error = one line */
    } else {
        fz_touch_store(*a, mapped);
    }
    int rb = hma_store_open(b, path, HMA_OPEN_PREAD);
    FZ_CHECK(ra == rb); /* the two modes validate identically */
    if (!rb) {
        fz_touch_store(*b, 0);
        FZ_CHECK(hma_store_count(*a) == hma_store_count(*b));
        for (size_t i = 0; i < hma_store_count(*a); i++)
            FZ_CHECK(!strcmp(hma_tensor_name(hma_store_tensor(*a, i)), hma_tensor_name(hma_store_tensor(*b, i))));
    }
    return ra;
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

/* ---- a small GGUF file ------------------------------------------------------- */

/* A little-endian byte builder for GGUF files (the library has no GGUF
 * writer the tests could use, and the layout is simple). */
typedef struct fz_buf {
    uint8_t *p;
    size_t n, cap;
    int bad; /* 1 once a write did not fit */
} fz_buf;

FZ_FN void fz_put(fz_buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->bad = 1;
        return;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
FZ_FN void fz_le(fz_buf *b, uint64_t v, unsigned n) {
    uint8_t t[8];
    for (unsigned i = 0; i < n; i++) t[i] = (uint8_t)(v >> (8 * i));
    fz_put(b, t, n);
}
FZ_FN void fz_gstr(fz_buf *b, const char *s) {
    fz_le(b, strlen(s), 8);
    fz_put(b, s, strlen(s));
}
/* key + scalar type + value bytes (little-endian, n of them) */
FZ_FN void fz_gkv(fz_buf *b, const char *key, unsigned type, uint64_t v, unsigned n) {
    fz_gstr(b, key);
    fz_le(b, type, 4);
    fz_le(b, v, n);
}

/* The tensors of fz_gguf(): ggml type, ne[0], ne[1] (0: 1-D), llama.cpp names. */
typedef struct fz_gtensor {
    const char *name;
    unsigned type;
    uint64_t ne0, ne1;
} fz_gtensor;
static const fz_gtensor fz_gguf_tensors[] = {
    {"token_embd.weight", 30, 8, 4},  /* BF16 */
    {"blk.0.attn_norm.weight", 0, 8, 0}, /* F32 */
    {"blk.0.attn_q.weight", 8, 32, 2}, /* Q8_0: 2 blocks */
    {"blk.0.ffn_down.weight", 1, 4, 2}, /* F16 */
    {"output.weight", 12, 256, 1},     /* Q4_K: 1 super-block (extended only) */
};

/* A small valid GGUF v3 in the toy-llama layout (general.alignment 32, data
 * packed in info order, each tensor padded to 32): metadata of every scalar
 * type, a string array and an int array; BF16, F32, Q8_0 and F16 tensors
 * (and a Q4_K one when `extended`). `which` 0 = base, 1 = a fine-tuned
 * variant (slightly different values). Returns the length, 0 if cap is too
 * small. */
FZ_FN size_t fz_gguf(uint8_t *out, size_t cap, int which, int extended) {
    fz_buf b = {out, 0, cap, 0};
    size_t nt = extended ? 5 : 4;
    fz_put(&b, "GGUF", 4);
    fz_le(&b, 3, 4);
    fz_le(&b, nt, 8);
    fz_le(&b, 10, 8); /* key/value pairs */
    fz_gstr(&b, "general.architecture");
    fz_le(&b, 8, 4);
    fz_gstr(&b, "llama");
    fz_gkv(&b, "general.alignment", 4, 32, 4);
    fz_gkv(&b, "llama.block_count", 4, 1, 4);
    fz_gkv(&b, "llama.rope.freq_base", 6, 0x461C4000u /* 10000.0f */, 4);
    fz_gkv(&b, "tokenizer.ggml.add_bos_token", 7, 0, 1);
    fz_gkv(&b, "general.quantization_version", 10, 2, 8);
    fz_gkv(&b, "x.i8", 1, 0xfe, 1);
    fz_gkv(&b, "x.f64", 12, 0x3FF8000000000000ull /* 1.5 */, 8);
    fz_gstr(&b, "tokenizer.ggml.tokens"); /* array of 3 strings */
    fz_le(&b, 9, 4);
    fz_le(&b, 8, 4);
    fz_le(&b, 3, 8);
    fz_gstr(&b, "a");
    fz_gstr(&b, "\xc4\xa0");
    fz_gstr(&b, "\"q\"");
    fz_gstr(&b, "tokenizer.ggml.token_type"); /* array of 3 i32 */
    fz_le(&b, 9, 4);
    fz_le(&b, 5, 4);
    fz_le(&b, 3, 8);
    for (int i = 0; i < 3; i++) fz_le(&b, (uint64_t)(i + 1), 4);
    uint64_t off = 0, sizes[5];
    for (size_t i = 0; i < nt; i++) {
        const fz_gtensor *t = &fz_gguf_tensors[i];
        uint64_t ne = t->ne0 * (t->ne1 ? t->ne1 : 1);
        sizes[i] = t->type == 0 ? 4 * ne : t->type == 8 ? ne / 32 * 34 : t->type == 12 ? ne / 256 * 144 : 2 * ne;
        fz_gstr(&b, t->name);
        fz_le(&b, t->ne1 ? 2 : 1, 4);
        fz_le(&b, t->ne0, 8);
        if (t->ne1) fz_le(&b, t->ne1, 8);
        fz_le(&b, t->type, 4);
        fz_le(&b, off, 8);
        off += (sizes[i] + 31) / 32 * 32;
    }
    while (b.n % 32) fz_le(&b, 0, 1);
    for (size_t i = 0; i < nt; i++) {
        const fz_gtensor *t = &fz_gguf_tensors[i];
        uint64_t ne = t->ne0 * (t->ne1 ? t->ne1 : 1);
        size_t at = b.n;
        if (t->type == 8 || t->type == 12) {
            uint64_t s = 99 + i + (uint64_t)which;
            for (uint64_t k = 0; k < sizes[i]; k++) fz_le(&b, fz_rng_next(&s) % 7, 1);
            /* fp16 scales: 0.01 (0x211F) at the start of each Q8_0 block; Q4_K: d and dmin */
            for (uint64_t k = 0; k < sizes[i] && !b.bad; k += t->type == 8 ? 34 : 144) {
                b.p[at + k] = 0x1F;
                b.p[at + k + 1] = 0x21;
                if (t->type == 12) {
                    b.p[at + k + 2] = 0x1F;
                    b.p[at + k + 3] = 0x11;
                }
            }
        } else {
            uint8_t tmp[256];
            fz_fill(tmp, t->type == 0 ? HMA_DTYPE_F32 : t->type == 1 ? HMA_DTYPE_F16 : HMA_DTYPE_BF16, ne, i + 1,
                    which ? 0.001 : 0.0);
            fz_put(&b, tmp, (size_t)sizes[i]);
        }
        while ((b.n - at) % 32 && i + 1 < nt) fz_le(&b, 0, 1);
    }
    return b.bad ? 0 : b.n;
}

#endif /* HMA_FUZZ_COMMON_H */
