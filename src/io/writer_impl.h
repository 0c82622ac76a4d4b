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
} hma__wtensor;

/* One output file being produced: a shard, a copied file, or the index. */
typedef struct hma__wfile {
    char *final_path;
    hma__afile af;       /* its temporary, from begin until commit */
    const char *src;     /* copied files: the source (owned by the writer) */
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

    char **xnames, **xsrcs; /* files to copy (hma_writer_add_file) */
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
};

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

#endif /* HMA_IO_WRITER_IMPL_H */
