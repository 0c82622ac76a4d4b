/*
 * writer_impl.h - the safetensors writer's private types, shared by
 * writer.c (life cycle: declare, begin, write, commit), writer_layout.c
 * (shards, headers and the index as bytes) and writer_commit.c (putting the
 * finished files in place, undoably). Not used outside src/io/writer*.c.
 *
 * Life cycle: DECLARING (set_metadata, add_tensor, add_file) -> begin ->
 * WRITING (write, from many threads) -> commit -> DONE. An I/O error while
 * writing moves the writer to FAILED; commit and free then only clean up.
 */
#ifndef HMA_IO_WRITER_IMPL_H
#define HMA_IO_WRITER_IMPL_H

#include "core/fileio.h"
#include "core/hash.h"
#include "internal.h"
#include "text/strbuf.h"

#include <pthread.h>

#define HMA__INDEX_NAME "model.safetensors.index.json"
#define HMA__SINGLE_NAME "model.safetensors"
/* A part's record of one committed shard (writer_part.c): hidden, next to it. */
#define HMA__PART_PREFIX ".hma-part-"

/* What the writer produces (hma_writer_set_part / hma_writer_set_finalize). */
enum { W_WHOLE = 0, W_PART = 1, W_FINALIZE = 2 };

enum { W_DECLARING, W_WRITING, W_FAILED, W_DONE };

/* A half-open byte range [b, e) of a tensor known to be written. */
typedef struct hma__wrange {
    uint64_t b, e;
} hma__wrange;

typedef struct hma__wtensor {
    char *name;
    size_t name_len;
    hma_dtype dtype;
    unsigned ndim;
    uint64_t shape[HMA_MAX_DIMS];
    uint64_t nbytes;
    size_t shard;
    uint64_t begin; /* data offset inside its shard's data buffer */
    /* Coverage, guarded by the writer's lock: sorted, disjoint, never
     * touching ranges, and the sum of their lengths. */
    hma__wrange *cov;
    size_t ncov, capcov;
    uint64_t covered;
    /* GGUF outputs: the ggml type stored (-1: as declared) and the bytes
     * the tensor takes in the file (nbytes above stays the declared size
     * that writes and coverage count in). */
    int gtype;
    uint64_t fbytes;
} hma__wtensor;

/* One output file being produced: a shard, a copied file, or the index. */
typedef struct hma__wfile {
    char *final_path;
    hma__afile af;       /* its temporary, from begin until commit */
    const char *src;     /* copied files: the source (owned by the writer), or NULL: */
    const char *mem;     /* the bytes given in memory (hma__writer_add_file_data) */
    size_t mem_len;
    uint64_t data_off;   /* where tensor data starts: 8 + header length */
    uint64_t size;       /* final file size */
    size_t first, count; /* tensors (shards only) */
    uint64_t data_size;
} hma__wfile;

struct hma_writer {
    char *path; /* as given (trailing slashes removed in folder mode) */
    char *dir;  /* destination folder */
    int folder; /* 1: path is a folder of shards; 0: path is the one file */
    uint64_t shard_size;

    char **mkeys, **mvals;
    size_t nmeta, capmeta;

    char **xnames, **xsrcs; /* files to copy (hma_writer_add_file); xsrcs[i] NULL: */
    char **xdata;           /* the file's bytes, xdlen[i] of them (hma__writer_add_file_data) */
    size_t *xdlen;
    size_t nx, capx;

    hma__wtensor *t;
    size_t nt, capt;
    hma__names names; /* tensor name -> index */
    uint64_t total;

    int state;
    pthread_mutex_t lock; /* guards state, fail_msg and coverage */
    char fail_msg[768];
    int fail_code; /* code of the first failed write (W_FAILED) */

    /* shards [0, nshards), copied files [nshards, nshards + nx), then the
     * index when sharded */
    hma__wfile *files;
    size_t nshards, nfiles;
    int sharded;
    char **made_dirs; /* folders begin created, outermost first */
    size_t nmade;

    /* GGUF output (path ends in ".gguf"): typed key/value pairs in order,
     * each value as its bytes in the file (writer_gguf.c). */
    int gguf;
    uint64_t galign;
    char **gkeys;
    uint32_t *gtypes;
    unsigned char **gvals;
    uint64_t *glens;
    size_t ngkv, capgkv;

    int mode;             /* W_WHOLE, W_PART or W_FINALIZE */
    size_t part, nparts;  /* W_PART: this part; both modes: the number of parts */
};

/* writer.c: 1 if this writer produces files[i] (W_WHOLE: all; W_PART: its
 * own shards; W_FINALIZE: the copied files and the index). */
int hma__writer_file_active(const hma_writer *w, size_t i);
/* The part that writes shard i: i mod nparts. */
size_t hma__writer_part_of(const hma_writer *w, size_t shard);

/* writer_layout.c: assign tensors to shards and name every file. */
int hma__writer_layout(hma_writer *w);
/* The safetensors header of shard f (8 length bytes already in sb),
 * padded with spaces to a multiple of 8. */
int hma__writer_build_header(const hma_writer *w, const hma__wfile *f, hma__strbuf *sb);
/* model.safetensors.index.json, as transformers writes it. */
int hma__writer_build_index(const hma_writer *w, hma__strbuf *sb);

/* writer_commit.c: fsync every temporary, rename them into place (index
 * last; a stale index removed), fsync the folders; undone on failure. */
int hma__writer_commit_files(hma_writer *w);
/* fsync the destination folder and the parents of the folders begin made. */
int hma__writer_sync_folders(const hma_writer *w);

/* writer_part.c: a part's commit (fsync and checksum its shards, remove a
 * stale index, rename each shard then its record) and finalize's check of
 * every shard against the layout and its record; then, after finalize's
 * commit, the records' removal. */
int hma__writer_part_commit(hma_writer *w);
int hma__writer_finalize_check(hma_writer *w);
void hma__writer_finalize_cleanup(hma_writer *w);

/* writer_gguf.c: GGUF outputs. Set key (replacing a value of the same key;
 * takes nothing over: copies val). */
int hma__writer_gguf_set_kv(hma_writer *w, const char *key, uint32_t type, const void *val, uint64_t len);
/* Lay the tensors out and build the header (up to the data section, padded
 * with zeros); sets files[0] (data_off, data_size, size). */
int hma__writer_gguf_layout(hma_writer *w, hma__strbuf *sb);
/* Write [offset, offset + len) of tensor t (declared bytes) converted to its
 * stored type at file byte `at` of the data section's tensor start. */
int hma__writer_gguf_check(const hma_writer *w, const hma__wtensor *t, uint64_t offset, size_t len);
int hma__writer_gguf_write(hma_writer *w, const hma__wtensor *t, uint64_t offset, const void *data, size_t len);
void hma__writer_gguf_free(hma_writer *w);

#endif /* HMA_IO_WRITER_IMPL_H */
