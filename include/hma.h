/*
 * hma.h - libhma: fast, exact, embeddable averaging of model checkpoints.
 *
 * libhma averages the weights of language-model checkpoints stored as
 * safetensors files: plain model averaging (MA) of a model before and after
 * RLHF, heterogeneous model averaging (HMA) with one ratio per block of
 * layers (Lin et al., "Mitigating the Alignment Tax of RLHF", EMNLP 2024),
 * model soups, task arithmetic and SLERP. It reads memory-mapped inputs,
 * streams the result into an atomic writer, and does the arithmetic in
 * float32 (float64 for F64 inputs) with one round-to-nearest-even at the end,
 * so results are identical whatever the thread count or SIMD path.
 *
 * This header is the whole public API and its manual: every function is
 * documented where it is declared (what it does, who owns what, whether it is
 * thread-safe, which errors it returns).
 *
 * Conventions used throughout
 * ---------------------------
 * - Functions that can fail return an `int` error code: HMA_OK (0) on
 *   success, one of the positive `hma_error` codes otherwise. On failure the
 *   calling thread's detail message (hma_last_error()) names the file, the
 *   tensor or byte offset, and what was expected. Output parameters are left
 *   untouched on failure unless stated otherwise.
 * - Objects are opaque. Each `hma_X_open` / `hma_X_create` has a matching
 *   `hma_X_close` / `hma_X_free`; passing NULL to those is a no-op.
 * - Strings passed in are copied when the library keeps them. Strings and
 *   pointers returned by a handle stay valid until that handle is closed.
 * - "Thread-safe" means any number of threads may call the function at once
 *   on the same handle. Functions not marked so need external locking when
 *   they share a handle; distinct handles never share state.
 * - The library never prints, never exits, never aborts, and never raises a
 *   signal on bad input. Its only global state is the per-thread error
 *   message and a registry of open input files (used to refuse writing over
 *   an open input); both are thread-safe.
 * - The mixing ratio `alpha` (a) is always the weight of the *aligned*
 *   (post-RLHF) model: theta = (1 - a) * theta_base + a * theta_aligned.
 *   (The paper's scripts use the opposite letter; we do not.)
 *
 * ABI: enums only grow at the end, codes never change meaning, a changed
 * signature becomes a new `_v2` function. Everything exported is named hma_*.
 */
#ifndef HMA_H
#define HMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(HMA_BUILDING_LIBRARY) && defined(__GNUC__)
#define HMA_API __attribute__((visibility("default")))
#else
#define HMA_API
#endif

/* ======================================================================= */
/* Version                                                                 */
/* ======================================================================= */

#define HMA_VERSION_MAJOR 1
#define HMA_VERSION_MINOR 0
#define HMA_VERSION_PATCH 0
/** MAJOR * 10000 + MINOR * 100 + PATCH, e.g. 10000 for 1.0.0. */
#define HMA_VERSION_NUMBER \
    (HMA_VERSION_MAJOR * 10000 + HMA_VERSION_MINOR * 100 + HMA_VERSION_PATCH)
#define HMA_STRINGIFY_(x) #x
#define HMA_STRINGIFY(x) HMA_STRINGIFY_(x)
#define HMA_VERSION_STRING                                          \
    HMA_STRINGIFY(HMA_VERSION_MAJOR) "." HMA_STRINGIFY(HMA_VERSION_MINOR) \
    "." HMA_STRINGIFY(HMA_VERSION_PATCH)

/** Version of the library actually linked, as HMA_VERSION_NUMBER. Thread-safe. */
HMA_API unsigned hma_version_number(void);
/** Version of the library actually linked, e.g. "1.0.0"; static string. Thread-safe. */
HMA_API const char *hma_version_string(void);

/* ======================================================================= */
/* Errors                                                                  */
/* ======================================================================= */

/**
 * Error codes. Stable: a code never changes its number or meaning; new codes
 * are only added at the end. Every failing call also sets the calling
 * thread's detail message (see hma_last_error()).
 */
typedef enum hma_error {
    HMA_OK = 0,
    HMA_ERR_INVALID_ARGUMENT = 1,  /* NULL pointer, bad flag, value out of range */
    HMA_ERR_NO_MEMORY = 2,         /* an allocation failed */
    HMA_ERR_IO = 3,                /* open/read/write/mmap/fsync/rename failed (errno in message) */
    HMA_ERR_NOT_FOUND = 4,         /* no such file, tensor, metadata key or index entry */
    HMA_ERR_HEADER_SIZE = 5,       /* header length 0, > HMA_MAX_HEADER_SIZE, or past the file end */
    HMA_ERR_TRUNCATED = 6,         /* file shorter than its header says (or shrank under us) */
    HMA_ERR_JSON_SYNTAX = 7,       /* malformed JSON, bad number form, trailing garbage */
    HMA_ERR_JSON_UTF8 = 8,         /* invalid UTF-8 or bad escape in a JSON string */
    HMA_ERR_JSON_DEPTH = 9,        /* nesting deeper than HMA_MAX_JSON_DEPTH */
    HMA_ERR_DUPLICATE_KEY = 10,    /* the same key twice in one JSON object */
    HMA_ERR_BAD_DTYPE = 11,        /* unknown or missing dtype string */
    HMA_ERR_BAD_SHAPE = 12,        /* shape not a list of integers, too many dims, or overflows */
    HMA_ERR_BAD_OFFSETS = 13,      /* data_offsets malformed, or tensors overlap / leave a hole */
    HMA_ERR_SIZE_MISMATCH = 14,    /* end - begin differs from elements x dtype size */
    HMA_ERR_TRAILING_DATA = 15,    /* file longer than the end of the last tensor */
    HMA_ERR_BAD_NAME = 16,         /* empty name, NUL byte in a name, "__metadata__" as tensor */
    HMA_ERR_BAD_METADATA = 17,     /* __metadata__ not an object of strings */
    HMA_ERR_BAD_INDEX = 18,        /* model.safetensors.index.json malformed */
    HMA_ERR_BAD_SHARD_PATH = 19,   /* shard path absolute, containing "..", or with a '/' */
    HMA_ERR_INDEX_MISMATCH = 20,   /* index and shards disagree (missing, extra, in two shards) */
    HMA_ERR_OVERFLOW = 21,         /* a size or offset computation overflowed */
    HMA_ERR_STATE = 22,            /* call not valid in the handle's current state */
    HMA_ERR_OVERWRITES_INPUT = 23, /* output would replace a file that is open as an input */
    HMA_ERR_CANCELLED = 24,        /* a progress callback asked to stop */
    HMA_ERR_MISMATCH = 25,         /* inputs disagree: missing tensor, different shape */
    HMA_ERR_UNSUPPORTED_DTYPE = 26,/* this operation cannot handle this dtype */
    HMA_ERR_NONFINITE = 27,        /* NaN or infinity in an input (see HMA_MERGE_ALLOW_NONFINITE) */
    HMA_ERR_CORRUPT = 28,          /* a pack file failed its checks (checksum, bounds, format) */
    HMA_ERR_WRONG_BASE = 29,       /* a pack was opened with a base it was not made against */
    HMA_ERR_UNSUPPORTED = 30,      /* format version or feature this build does not support */
    HMA_ERR_THREAD = 31,           /* a thread could not be created */
    HMA_ERR_INCOMPLETE = 32,       /* writer commit with bytes of some tensor never written */
    HMA_ERR_CALLBACK = 33,         /* a user callback reported failure */
    HMA_ERR_EXISTS = 34            /* the output exists and is not the kind we may replace */
} hma_error;

/**
 * Static, never-NULL description of an error code ("invalid argument", ...).
 * Unknown codes give "unknown error". Thread-safe; the string is never freed.
 */
HMA_API const char *hma_strerror(int code);

/**
 * The calling thread's detail message for the last failing libhma call made
 * on this thread, e.g. "model.safetensors: tensor 'lm_head.weight':
 * data_offsets [0, 10) span 10 bytes, expected 131072 (65536 x BF16)".
 * Never NULL ("" when no call has failed yet on this thread). Successful
 * calls do not clear it. The string is owned by the library and stays valid
 * until the next failing libhma call on the same thread, or thread exit.
 * Thread-safe (each thread has its own message).
 */
HMA_API const char *hma_last_error(void);

/** The code of the last failing libhma call on this thread (HMA_OK if none). Thread-safe. */
HMA_API int hma_last_error_code(void);

/* ======================================================================= */
/* Limits (also available as functions, for bindings that cannot read macros) */
/* ======================================================================= */

#define HMA_MAX_HEADER_SIZE 100000000u /* safetensors JSON header bytes */
#define HMA_MAX_JSON_DEPTH 64u         /* nesting of any JSON we parse */
#define HMA_MAX_DIMS 16u               /* tensor rank */
#define HMA_MAX_NAME 4096u             /* bytes in a tensor name */

/** HMA_MAX_DIMS as a function. Thread-safe. */
HMA_API unsigned hma_max_dims(void);

/* ======================================================================= */
/* Data types                                                              */
/* ======================================================================= */

/** The safetensors dtypes, all 22. Values are stable (ABI). */
typedef enum hma_dtype {
    HMA_DTYPE_BOOL = 0,
    HMA_DTYPE_U8 = 1,
    HMA_DTYPE_I8 = 2,
    HMA_DTYPE_I16 = 3,
    HMA_DTYPE_U16 = 4,
    HMA_DTYPE_I32 = 5,
    HMA_DTYPE_U32 = 6,
    HMA_DTYPE_I64 = 7,
    HMA_DTYPE_U64 = 8,
    HMA_DTYPE_F16 = 9,
    HMA_DTYPE_BF16 = 10,
    HMA_DTYPE_F32 = 11,
    HMA_DTYPE_F64 = 12,
    HMA_DTYPE_C64 = 13,
    HMA_DTYPE_F8_E4M3 = 14,
    HMA_DTYPE_F8_E5M2 = 15,
    HMA_DTYPE_F8_E8M0 = 16,
    HMA_DTYPE_F8_E4M3FNUZ = 17,
    HMA_DTYPE_F8_E5M2FNUZ = 18,
    HMA_DTYPE_F4 = 19,
    HMA_DTYPE_F6_E2M3 = 20,
    HMA_DTYPE_F6_E3M2 = 21,
    HMA_DTYPE_COUNT = 22 /* number of dtypes; grows if the format grows */
} hma_dtype;

/** The exact safetensors string ("BF16", ...); NULL for an invalid value. Thread-safe. */
HMA_API const char *hma_dtype_name(int dtype);

/**
 * Parse an exact (case-sensitive) safetensors dtype string.
 * Returns HMA_OK and sets *dtype, or HMA_ERR_BAD_DTYPE. Thread-safe.
 */
HMA_API int hma_dtype_from_name(const char *name, hma_dtype *dtype);

/** Bits per element: 8 for BOOL, 4 for F4, 6 for F6_*, 64 for C64; 0 if invalid. Thread-safe. */
HMA_API unsigned hma_dtype_bits(int dtype);

/** 1 if libhma can average tensors of this dtype (F16, BF16, F32, F64), else 0. Thread-safe. */
HMA_API int hma_dtype_is_float(int dtype);

/* ======================================================================= */
/* Tensor store (read side)                                                */
/* ======================================================================= */

/** An open, validated, immutable checkpoint: one file, a sharded set, or a pack. */
typedef struct hma_store hma_store;
/** One tensor of a store; owned by the store, valid until hma_store_close(). */
typedef struct hma_tensor hma_tensor;

/** Flags for hma_store_open(). */
enum hma_open_flags {
    /**
     * Do not memory-map: tensor bytes are only read with hma_store_read(),
     * by pread(2). A file truncated or rewritten under the store then gives
     * HMA_ERR_TRUNCATED or HMA_ERR_IO instead of a SIGBUS. In this mode
     * hma_tensor_data() returns NULL.
     */
    HMA_OPEN_PREAD = 1u << 0
};

/**
 * Open a checkpoint for reading. `path` may be
 *   - a single `.safetensors` file;
 *   - a sharded checkpoint's index, any file whose name ends in `.json`
 *     (normally `model.safetensors.index.json`; shards are resolved
 *     relative to the index's folder and must be plain file names);
 *   - a folder (e.g. a Hugging Face model folder) holding either
 *     `model.safetensors.index.json` (preferred) or `model.safetensors`.
 * Every file is validated completely before this returns (see
 * docs/format.md for each rule and the error it maps to); nothing in the
 * file is trusted. By default each file is memory-mapped read-only and
 * hma_tensor_data() gives a zero-copy pointer.
 *
 * Ownership: on success *out is a new store; close it with hma_store_close().
 * Thread-safety: the call itself is thread-safe; the returned store is
 * immutable and every function taking a `const hma_store *` may be called
 * from any number of threads at once.
 *
 * Errors: HMA_ERR_INVALID_ARGUMENT, HMA_ERR_NOT_FOUND, HMA_ERR_IO,
 * HMA_ERR_NO_MEMORY, and every format error (HMA_ERR_HEADER_SIZE ...
 * HMA_ERR_OVERFLOW).
 */
HMA_API int hma_store_open(hma_store **out, const char *path, unsigned flags);

/** Close a store, unmapping its files. NULL is a no-op. Not thread-safe with other uses of the same store. */
HMA_API void hma_store_close(hma_store *store);

/** Number of tensors. Thread-safe. */
HMA_API size_t hma_store_count(const hma_store *store);

/**
 * The i-th tensor, 0 <= i < hma_store_count(); NULL if out of range.
 * Order is stable: shards in the order of their names, then tensors in
 * order of their data offset (the order they lie on disk). Thread-safe.
 */
HMA_API const hma_tensor *hma_store_tensor(const hma_store *store, size_t i);

/** The tensor of this exact name, or NULL. O(1) (hash). Thread-safe. */
HMA_API const hma_tensor *hma_store_find(const hma_store *store, const char *name);

/** Number of `__metadata__` entries (from the first file for sharded checkpoints). Thread-safe. */
HMA_API size_t hma_store_metadata_count(const hma_store *store);

/**
 * The i-th `__metadata__` entry, in file order. Sets *key and *value (owned
 * by the store) and returns HMA_OK, or HMA_ERR_INVALID_ARGUMENT if out of
 * range. Thread-safe.
 */
HMA_API int hma_store_metadata_at(const hma_store *store, size_t i,
                                  const char **key, const char **value);

/** The `__metadata__` value for `key`, or NULL when absent. Thread-safe. */
HMA_API const char *hma_store_metadata(const hma_store *store, const char *key);

/** Number of files behind the store (1 for a single file, N shards). Thread-safe. */
HMA_API size_t hma_store_file_count(const hma_store *store);

/** Path of the i-th file (as opened, shards joined to the index folder); NULL if out of range. Thread-safe. */
HMA_API const char *hma_store_file_path(const hma_store *store, size_t i);

/**
 * Copy `len` bytes of tensor `t`, starting `offset` bytes into its data,
 * into `buf`. Works in every mode (mapped, pread, pack). In pread mode a
 * file that shrank gives HMA_ERR_TRUNCATED, not a signal.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL, or offset + len past the tensor),
 * HMA_ERR_IO, HMA_ERR_TRUNCATED, HMA_ERR_CORRUPT (packs). Thread-safe.
 */
HMA_API int hma_store_read(const hma_store *store, const hma_tensor *t,
                           uint64_t offset, void *buf, size_t len);

/*
 * Tensor accessors. All are thread-safe and cost O(1). Passing NULL gives 0,
 * NULL, or HMA_DTYPE_COUNT for the dtype.
 */

/** Tensor name (NUL-terminated, no interior NUL). Thread-safe. */
HMA_API const char *hma_tensor_name(const hma_tensor *t);
/** Tensor dtype. Thread-safe. */
HMA_API hma_dtype hma_tensor_dtype(const hma_tensor *t);
/** Number of dimensions, 0 for a scalar. Thread-safe. */
HMA_API unsigned hma_tensor_ndim(const hma_tensor *t);
/** Shape array of hma_tensor_ndim() entries (owned by the store; non-NULL even for scalars). Thread-safe. */
HMA_API const uint64_t *hma_tensor_shape(const hma_tensor *t);
/** Number of elements (1 for a scalar, 0 if any dimension is 0). Thread-safe. */
HMA_API uint64_t hma_tensor_nelements(const hma_tensor *t);
/** Size of the tensor's data in bytes. Thread-safe. */
HMA_API uint64_t hma_tensor_nbytes(const hma_tensor *t);
/**
 * Zero-copy pointer to the tensor's bytes (little-endian, row-major), valid
 * until the store is closed. NULL in pread mode (for every tensor). For a
 * pack store, the tensor is decoded on first access into memory the store
 * owns (NULL if decoding fails; hma_last_error() says why). For a zero-size
 * tensor of a mapped store, a non-NULL pointer that must not be
 * dereferenced. Thread-safe.
 */
HMA_API const void *hma_tensor_data(const hma_tensor *t);
/** Position of the tensor in its store's order (as hma_store_tensor()). Thread-safe. */
HMA_API size_t hma_tensor_index(const hma_tensor *t);
/** Index of the file holding the tensor (see hma_store_file_path()). Thread-safe. */
HMA_API size_t hma_tensor_file(const hma_tensor *t);

/* ======================================================================= */
/* Writer                                                                  */
/* ======================================================================= */

/** A safetensors output being written: declared, filled, then committed atomically. */
typedef struct hma_writer hma_writer;

/**
 * Start a new output at `path`.
 *   - If `path` ends in ".safetensors", one file is written at exactly that
 *     path; shard_size must then be 0 (else HMA_ERR_INVALID_ARGUMENT).
 *   - Otherwise `path` is a folder (created if missing; existing files in it
 *     other than the ones we write are left alone). The tensors are split
 *     into shards of at most `shard_size` bytes of data each (0 = no limit;
 *     a tensor larger than the limit gets a shard of its own), in declaration
 *     order. One shard is written as `model.safetensors`; several as
 *     `model-00001-of-0000N.safetensors` plus `model.safetensors.index.json`
 *     ({"metadata":{"total_size":BYTES},"weight_map":{...}}).
 * Nothing is created until hma_writer_begin().
 *
 * Ownership: *out must be released with hma_writer_free(), committed or not.
 * Errors: HMA_ERR_INVALID_ARGUMENT, HMA_ERR_NO_MEMORY. Thread-safe call;
 * the writer itself is not, except hma_writer_write(), hma_writer_count()
 * and hma_writer_find() after hma_writer_begin().
 */
HMA_API int hma_writer_create(hma_writer **out, const char *path, uint64_t shard_size);

/**
 * Set a `__metadata__` entry (written into every shard). A second call with
 * the same key replaces the value; entries keep the order of first setting.
 * Only before hma_writer_begin(). Errors: HMA_ERR_INVALID_ARGUMENT,
 * HMA_ERR_BAD_NAME (NUL-free UTF-8 required), HMA_ERR_STATE, HMA_ERR_NO_MEMORY.
 */
HMA_API int hma_writer_set_metadata(hma_writer *w, const char *key, const char *value);

/**
 * Declare the next tensor. Tensors are laid out in declaration order (use
 * that order to reproduce another file byte for byte). `shape` has `ndim`
 * entries (may be NULL when ndim is 0). Only before hma_writer_begin().
 * Errors: HMA_ERR_INVALID_ARGUMENT, HMA_ERR_BAD_NAME (empty, not valid
 * UTF-8, longer than HMA_MAX_NAME bytes, "__metadata__", or a duplicate),
 * HMA_ERR_BAD_DTYPE, HMA_ERR_BAD_SHAPE,
 * HMA_ERR_OVERFLOW, HMA_ERR_STATE, HMA_ERR_NO_MEMORY.
 */
HMA_API int hma_writer_add_tensor(hma_writer *w, const char *name, hma_dtype dtype,
                                  unsigned ndim, const uint64_t *shape);

/**
 * Freeze the declarations: lay out shards, refuse to overwrite an input that
 * is open in this process (HMA_ERR_OVERWRITES_INPUT), create the temporary
 * files (hidden names starting with ".hma-tmp-" in the destination folder)
 * at their final size, and write their headers.
 * Missing parent folders are created. Space is reserved with fallocate
 * where the file system supports it, so a full disk shows up here.
 * Errors: HMA_ERR_STATE, HMA_ERR_IO, HMA_ERR_OVERWRITES_INPUT,
 * HMA_ERR_EXISTS (a folder where a file is expected or the reverse),
 * HMA_ERR_HEADER_SIZE (the header would exceed HMA_MAX_HEADER_SIZE),
 * HMA_ERR_NO_MEMORY.
 */
HMA_API int hma_writer_begin(hma_writer *w);

/** Number of declared tensors. */
HMA_API size_t hma_writer_count(const hma_writer *w);

/** Index of the declared tensor `name` (declaration order), or (size_t)-1. Thread-safe after begin. */
HMA_API size_t hma_writer_find(const hma_writer *w, const char *name);

/**
 * Write `len` bytes of tensor number `index` (declaration order) at byte
 * `offset` within that tensor. Ranges may come in any order and from any
 * number of threads at once (this function is thread-safe after begin);
 * a range may be written more than once (last write wins).
 * Errors: HMA_ERR_STATE (before begin, after commit/failure),
 * HMA_ERR_INVALID_ARGUMENT (range past the tensor), HMA_ERR_IO (the writer
 * is then failed: commit will refuse).
 */
HMA_API int hma_writer_write(hma_writer *w, size_t index, uint64_t offset,
                             const void *data, size_t len);

/**
 * Check every byte of every tensor was written, fsync each file, rename the
 * temporaries to their final names (index last), and fsync the folder.
 * After this the writer is finished (only hma_writer_free() remains).
 * On any error nothing appears under the final names (files already there
 * keep their old content) and the temporaries are removed: the writer is
 * finished either way. A writer whose earlier write failed returns that
 * first error (HMA_ERR_IO) again. When a single `model.safetensors` is
 * committed into a folder holding a stale `model.safetensors.index.json`,
 * that index is removed in the same commit (readers prefer the index).
 * Replacing a sharded output is atomic file by file, not as a set.
 * Errors: HMA_ERR_STATE, HMA_ERR_INCOMPLETE, HMA_ERR_IO,
 * HMA_ERR_OVERWRITES_INPUT.
 */
HMA_API int hma_writer_commit(hma_writer *w);

/**
 * Free a writer. If it was not committed, the output is abandoned: the
 * temporary files are removed and nothing appears under the final names.
 * NULL is a no-op.
 */
HMA_API void hma_writer_free(hma_writer *w);

/* ======================================================================= */
/* Merge plans: layer grouping and weighted averaging                      */
/* ======================================================================= */
/* HMA_SECTION_PLAN (filled by the averaging work) */

/* ======================================================================= */
/* Ratio search and Pareto fronts                                          */
/* ======================================================================= */
/* HMA_SECTION_SEARCH (filled by the search work) */

/* ======================================================================= */
/* Delta packs                                                             */
/* ======================================================================= */
/* HMA_SECTION_PACK (filled by the pack work) */

#ifdef __cplusplus
}
#endif

#endif /* HMA_H */
