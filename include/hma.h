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
 * - Options and stats structs: the first member is `size_t struct_size`,
 *   set by the struct's `hma_X_init(o)`; call it, then change the fields
 *   you need. Fields are only ever added at the end. `hma_X_init(o)` is a
 *   static inline function of this header that calls the exported
 *   `hma_X_init_size(o, sizeof *o)`, so the size is the one the caller was
 *   compiled with. hma_X_init_size(o, size) writes the library's defaults
 *   into the first n = min(size, sizeof(hma_X) of this library) bytes of
 *   `o` and sets struct_size = n; it never writes past those n bytes, so a
 *   program built against an older, smaller hma.h is safe with a newer
 *   libhma (bindings pass their own struct's size). With `o` NULL or
 *   size < sizeof(size_t) it writes nothing. A size below the struct's
 *   first version is filled as far as it goes, and calls then refuse the
 *   struct as below. The library accepts a struct from a caller built
 *   against an older hma.h (a smaller struct_size: the fields it does not
 *   know take their defaults, and a stats struct is filled only as far as
 *   the caller's struct_size), and refuses with HMA_ERR_INVALID_ARGUMENT a
 *   struct_size below the struct's first version or above this library's
 *   (a caller built against a newer libhma). Passing NULL for an options
 *   struct means all defaults. The _init_size() functions are thread-safe.
 * - Callbacks: every callback returns an int. 0 means go on; HMA_CANCEL
 *   stops the call with HMA_ERR_CANCELLED; any other value stops it with
 *   HMA_ERR_CALLBACK. Each callback's documentation says on which thread it
 *   runs.
 * - Indices: functions that return a position return HMA_NPOS when there
 *   is none. Enum types (hma_dtype, hma_method, hma_action, ...) are used
 *   wherever such a value is passed or returned.
 * - The SIMD path of the kernels and of the pack codecs is chosen once per
 *   process from the CPU; the environment variable HMA_SIMD=scalar|avx2|
 *   avx512 caps it (for tests and benchmarks; every path gives the same
 *   bytes). See "Testing knobs".
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
    HMA_ERR_CORRUPT = 28,          /* a pack file or a part's shard failed its checks (checksum, bounds, format) */
    HMA_ERR_WRONG_BASE = 29,       /* a pack was opened with a base it was not made against */
    HMA_ERR_UNSUPPORTED = 30,      /* format version or feature this build does not support */
    HMA_ERR_THREAD = 31,           /* a thread could not be created */
    HMA_ERR_INCOMPLETE = 32,       /* writer commit with bytes never written; finalize: a part's shard missing */
    HMA_ERR_CALLBACK = 33,         /* a user callback reported failure */
    HMA_ERR_EXISTS = 34,           /* the output exists and is not the kind we may replace */
    HMA_ERR_RECIPE = 35,           /* a merge recipe is malformed or asks for something impossible */
    HMA_ERR_COUNT                  /* number of codes (not an error); grows when codes are added */
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
 * Never NULL ("" when no call has failed yet on this thread). Always one
 * line: control bytes (below 0x20, and 0x7f) that names or paths bring
 * into it are written as \xNN; at most 1023 bytes. Successful
 * calls do not clear it. The string is owned by the library and stays valid
 * until the next failing libhma call on the same thread, or thread exit.
 * Thread-safe (each thread has its own message).
 */
HMA_API const char *hma_last_error(void);

/** The code of the last failing libhma call on this thread (HMA_OK if none). Thread-safe. */
HMA_API int hma_last_error_code(void);

/** Return value of a callback that asks to stop: the call fails with HMA_ERR_CANCELLED. */
#define HMA_CANCEL (-1)
/** "No such position": returned by the functions that look an index up. */
#define HMA_NPOS ((size_t)-1)

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
HMA_API const char *hma_dtype_name(hma_dtype dtype);

/**
 * Parse an exact (case-sensitive) safetensors dtype string.
 * Returns HMA_OK and sets *dtype, or HMA_ERR_BAD_DTYPE. Thread-safe.
 */
HMA_API int hma_dtype_from_name(const char *name, hma_dtype *dtype);

/** Bits per element: 8 for BOOL, 4 for F4, 6 for F6_*, 64 for C64; 0 if invalid. Thread-safe. */
HMA_API unsigned hma_dtype_bits(hma_dtype dtype);

/** 1 if libhma can average tensors of this dtype (F16, BF16, F32, F64), else 0. Thread-safe. */
HMA_API int hma_dtype_is_float(hma_dtype dtype);

/**
 * ggml tensor types, with ggml's numbers (enum ggml_type in ggml.h): every
 * type libhma reads from a GGUF file (hma_tensor_gguf_type()). A GGUF output
 * holds F32, F16, BF16 or Q8_0 only: other types of a base input are written
 * as F16 (see hma_plan_set_output_gguf_type()). Values are stable (ABI);
 * types are added as libhma learns them.
 */
typedef enum hma_gguf_type {
    HMA_GGUF_NONE = -2, /* not a tensor of a GGUF file (hma_tensor_gguf_type()) */
    HMA_GGUF_AUTO = -1, /* as the base input (hma_plan_set_output_gguf_type()) */
    HMA_GGUF_F32 = 0,
    HMA_GGUF_F16 = 1,
    HMA_GGUF_Q4_0 = 2,
    HMA_GGUF_Q4_1 = 3,
    HMA_GGUF_Q5_0 = 6,
    HMA_GGUF_Q5_1 = 7,
    HMA_GGUF_Q8_0 = 8, /* blocks of 32: fp16 scale + 32 int8 (ggml-common.h block_q8_0) */
    HMA_GGUF_Q4_K = 12,
    HMA_GGUF_Q5_K = 13,
    HMA_GGUF_Q6_K = 14,
    HMA_GGUF_BF16 = 30
} hma_gguf_type;

/** ggml's name of a ggml type ("q8_0", "q4_K"), NULL for a value libhma does not know. Thread-safe. */
HMA_API const char *hma_gguf_type_name(hma_gguf_type type);

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
 *     `model.safetensors.index.json` (preferred) or `model.safetensors`;
 *   - a GGUF file (llama.cpp's format, v2 or v3): any file whose name does
 *     not end in `.json` and whose first bytes are the magic "GGUF".
 *     Tensor names are as in the file, shapes in safetensors order (GGUF
 *     lists them innermost first), metadata values as strings (numbers
 *     exactly, arrays as JSON). F32, F16 and BF16 tensors are zero-copy;
 *     quantized ones (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K; see
 *     hma_tensor_gguf_type()) are presented as F32 and dequantized with
 *     ggml's formulas by hma_store_read() and the merge engine, in bounded
 *     memory (hma_tensor_data_get() gives HMA_OK and NULL for them).
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
 * until the store is closed; hma_tensor_data_get() without the status.
 * NULL means either "no pointer in this mode" (pread mode, for every tensor)
 * or a failure (a pack tensor that cannot be decoded; hma_last_error() says
 * why): use hma_tensor_data_get() to tell the two apart. Thread-safe.
 */
HMA_API const void *hma_tensor_data(const hma_tensor *t);

/**
 * Zero-copy access to the tensor's bytes (little-endian, row-major), valid
 * until the store is closed. Returns HMA_OK and sets *data to:
 *   - the bytes, for a memory-mapped store; for a pack store, after
 *     decoding the tensor on first access into memory the store owns;
 *   - a non-NULL pointer that must not be dereferenced, for a zero-size
 *     tensor of a mapped or pack store;
 *   - NULL when the store has no zero-copy bytes (HMA_OPEN_PREAD mode):
 *     read with hma_store_read() instead. This NULL is not an error.
 * On failure returns the code and sets *data to NULL: HMA_ERR_INVALID_ARGUMENT
 * (NULL t or data), and for a pack store the decoding errors
 * (HMA_ERR_CORRUPT, HMA_ERR_IO, HMA_ERR_TRUNCATED, HMA_ERR_NO_MEMORY, ...).
 * Thread-safe.
 */
HMA_API int hma_tensor_data_get(const hma_tensor *t, const void **data);
/** Position of the tensor in its store's order (as hma_store_tensor()). Thread-safe. */
HMA_API size_t hma_tensor_index(const hma_tensor *t);
/** Index of the file holding the tensor (see hma_store_file_path()). Thread-safe. */
HMA_API size_t hma_tensor_file(const hma_tensor *t);
/**
 * The ggml type the tensor has in its GGUF file (HMA_GGUF_Q8_0 for a Q8_0
 * tensor that hma_tensor_dtype() presents as F32, HMA_GGUF_Q4_0, ...), or
 * HMA_GGUF_NONE when its store is not a GGUF file (or t is NULL): every
 * other value is >= 0. Thread-safe.
 */
HMA_API hma_gguf_type hma_tensor_gguf_type(const hma_tensor *t);

/* ======================================================================= */
/* Writer                                                                  */
/* ======================================================================= */

/** A safetensors (or GGUF) output being written: declared, filled, then committed atomically. */
typedef struct hma_writer hma_writer;

/**
 * Start a new output at `path`.
 *   - If `path` ends in ".safetensors", one file is written at exactly that
 *     path; shard_size must then be 0 (else HMA_ERR_INVALID_ARGUMENT).
 *   - If `path` ends in ".gguf", one GGUF v3 file is written at that path
 *     (shard_size must be 0): metadata set with hma_writer_set_metadata()
 *     become string keys, hma_writer_copy_metadata() copies typed keys,
 *     tensors are stored as declared or as hma_writer_set_gguf_type() says,
 *     aligned to general.alignment (default 32). hma_writer_add_file(),
 *     hma_writer_set_part() and hma_writer_set_finalize() are refused
 *     (HMA_ERR_INVALID_ARGUMENT). Layout: docs/format.md "Writing GGUF".
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
 * GGUF outputs: store tensor `index` (declared as HMA_DTYPE_F32, whose
 * float32 bytes hma_writer_write() keeps receiving) as `type` in the file:
 * HMA_GGUF_Q8_0 (ggml's quantize_row_q8_0_ref, bit for bit; the innermost
 * dimension must be a multiple of 32 and every write must cover whole
 * 32-element blocks: offset a multiple of 128 bytes, length too or reaching
 * the tensor's end), HMA_GGUF_F16 or HMA_GGUF_BF16 (each float rounded once,
 * to nearest even), or HMA_GGUF_F32 (as declared). A tensor declared with
 * another dtype is stored as that dtype (F16, BF16, F32; others refused at
 * hma_writer_begin()). Only before hma_writer_begin().
 * Errors: HMA_ERR_INVALID_ARGUMENT (not a GGUF writer, bad index, tensor
 * not declared F32), HMA_ERR_UNSUPPORTED_DTYPE (another type),
 * HMA_ERR_BAD_SHAPE (Q8_0 rows not a multiple of 32), HMA_ERR_STATE.
 */
HMA_API int hma_writer_set_gguf_type(hma_writer *w, size_t index, hma_gguf_type type);

/**
 * GGUF outputs: copy every metadata key of `src` that the writer does not
 * have yet, in src's order. From a GGUF store the keys keep their GGUF
 * types and values byte for byte (arrays included; a general.alignment key
 * sets the output's alignment); from any other store they are strings. The
 * store may be closed afterwards. Only before hma_writer_begin().
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL, not a GGUF writer),
 * HMA_ERR_STATE, HMA_ERR_NO_MEMORY.
 */
HMA_API int hma_writer_copy_metadata(hma_writer *w, const hma_store *src);

/**
 * Copy the file `src_path` into the output folder as `name` (e.g.
 * "config.json", "tokenizer.json"), as part of the commit: the copy is made
 * into a temporary at hma_writer_begin() (so the source is read then, and
 * must stay readable until begin), fsync'd, and renamed into place at
 * hma_writer_commit() after the shards and before the index. On any failure
 * nothing appears under `name`, and a file already there keeps its content.
 * Only in folder mode and only before hma_writer_begin(); the source is
 * checked (opened) now.
 *
 * `name` is a plain file name: not empty, at most 255 bytes, no '/', no
 * control characters, not "." or "..", not starting with ".hma-tmp-", not
 * "model.safetensors.index.json" and not ending in ".safetensors" (those
 * belong to the writer), and not added twice. Begin refuses a destination
 * that is `src_path` itself or an input open in this process.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL, or a single-file output),
 * HMA_ERR_BAD_NAME, HMA_ERR_STATE, HMA_ERR_NOT_FOUND and HMA_ERR_IO (the
 * source), HMA_ERR_NO_MEMORY. Not thread-safe (declaration phase).
 */
HMA_API int hma_writer_add_file(hma_writer *w, const char *name, const char *src_path);

/**
 * Name `i` of the files a merge into a folder copies from a model folder
 * (config.json, generation_config.json, tokenizer.json,
 * tokenizer_config.json, special_tokens_map.json, tokenizer.model, ...;
 * `hma merge` and hma_recipe_merge_to() copy those that exist), or NULL
 * for i past the last. Static strings. Thread-safe.
 */
HMA_API const char *hma_side_file_name(size_t i);

/**
 * Make this writer part `part` of `nparts` of a partitioned output: several
 * processes (or machines, over a shared filesystem) each write a share of
 * one output, and a last step (hma_writer_set_finalize()) checks them and
 * publishes the whole. Every part and finalize declare the same tensors,
 * metadata and shard size; the layout (which tensor goes into which shard,
 * the file names, every header byte) depends only on those declarations,
 * so all agree on it. Shard i (0-based, in declaration order) belongs to
 * part i mod nparts; with more parts than shards, the extra parts are idle
 * (they write nothing and succeed). A single-shard output (one
 * model.safetensors, or a path ending in ".safetensors") is written by
 * part 0.
 *
 * A part's hma_writer_begin() creates temporaries for its own shards only;
 * hma_writer_write() accepts only tensors in them (others:
 * HMA_ERR_INVALID_ARGUMENT; hma_plan_merge_into() merges only those rows);
 * files of hma_writer_add_file() are not read (finalize copies them).
 * hma_writer_commit() checks that every byte of its own tensors was
 * written, computes the xxhash64 of each of its shards, removes a
 * model.safetensors.index.json left in the folder by an earlier output (its
 * shards are being replaced), then renames each shard into place followed
 * by its record, a small hidden file ".hma-part-<shard name>" holding the
 * shard's name, size and checksum. Each shard and each record appears
 * atomically; a part that fails or is killed leaves the shards and records
 * it had already committed (all complete) and no temporaries once the next
 * begin in that folder sweeps them. Rerunning a part rewrites its shards.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL, part >= nparts, nparts 0),
 * HMA_ERR_STATE (after begin). Not thread-safe (declaration phase).
 */
HMA_API int hma_writer_set_part(hma_writer *w, size_t part, size_t nparts);

/**
 * Make this writer the finalize step of a partitioned output written by
 * `nparts` parts (hma_writer_set_part(); nparts is used to name the part
 * that owes a shard in messages). Declare the same tensors, metadata and
 * shard size as the parts, and the files to copy (hma_writer_add_file()).
 * begin creates temporaries only for the copied files and the index;
 * hma_writer_write() accepts nothing (hma_plan_merge_into() writes no row).
 * hma_writer_commit() first checks every shard of the layout: present, of
 * the expected size, its header byte-for-byte the expected one (names,
 * dtypes, shapes, offsets, metadata), its record present and its xxhash64
 * equal to the recorded one (the shards are read once, in parallel). Only
 * then does it commit the copied files and, for a sharded output, the index
 * model.safetensors.index.json, last (as hma_writer_commit(); a single
 * model.safetensors in a folder gets no index and a stale one is removed),
 * and then removes the records: the folder then holds exactly the files a
 * single-process hma_writer_commit() writes, byte for byte.
 * When a check fails, commit returns its error naming the first bad shard
 * and its part ("model-00003-of-00008.safetensors (part 2 of 7) is
 * missing", "... is N bytes, expected M", "... checksum differs") and
 * writes nothing: no index, no copied file; rerun the parts named, then
 * finalize again. Rerunning finalize after it succeeded fails (the records
 * are gone) and changes nothing.
 * Errors (here): HMA_ERR_INVALID_ARGUMENT (NULL, nparts 0), HMA_ERR_STATE
 * (after begin); at commit: HMA_ERR_INCOMPLETE (a shard or its record is
 * missing, or a shard has the wrong size), HMA_ERR_CORRUPT (a header or a
 * checksum differs, a record is malformed), HMA_ERR_IO, and the commit's
 * errors. Not thread-safe (declaration phase).
 */
HMA_API int hma_writer_set_finalize(hma_writer *w, size_t nparts);

/**
 * Freeze the declarations: lay out shards, refuse to overwrite an input that
 * is open in this process (HMA_ERR_OVERWRITES_INPUT), create the temporary
 * files (hidden names ".hma-tmp-h<host>-<pid>-<random>" in the destination
 * folder) at their final size, write their headers and copy the files of
 * hma_writer_add_file().
 * Stale temporaries: before creating its own, begin removes from the
 * destination folder the ".hma-tmp-*" files left by processes of this
 * machine that no longer exist (e.g. a merge killed with SIGKILL); those of
 * live processes and of other machines (another host hash, on a shared
 * filesystem) are left alone.
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

/** Index of the declared tensor `name` (declaration order), or HMA_NPOS. Thread-safe after begin. */
HMA_API size_t hma_writer_find(const hma_writer *w, const char *name);

/**
 * Write `len` bytes of tensor number `index` (declaration order) at byte
 * `offset` within that tensor. Ranges may come in any order and from any
 * number of threads at once (this function is thread-safe after begin);
 * a range may be written more than once (last write wins).
 * Errors: HMA_ERR_STATE (before begin, after commit),
 * HMA_ERR_INVALID_ARGUMENT (range past the tensor), HMA_ERR_IO (the writer
 * is then failed: commit will refuse). Once a write has failed, every later
 * write returns that first failure's code (HMA_ERR_IO) with its message, so
 * the threads of one merge all report the same cause.
 */
HMA_API int hma_writer_write(hma_writer *w, size_t index, uint64_t offset,
                             const void *data, size_t len);

/**
 * Check every byte of every tensor was written, fsync each file, rename the
 * temporaries to their final names (shards, copied files, index last), and
 * fsync the folder.
 * After this the writer is finished (only hma_writer_free() remains).
 * On any error nothing appears under the final names (files already there
 * keep their old content) and the temporaries are removed: the writer is
 * finished either way. A writer whose earlier write failed returns that
 * first error (HMA_ERR_IO) again. When a single `model.safetensors` is
 * committed into a folder holding a stale `model.safetensors.index.json`,
 * that index is removed in the same commit (readers prefer the index).
 * Replacing a sharded output is atomic file by file, not as a set: each
 * file replaced is first kept as a hard link named ".hma-tmp-...-old-..."
 * so that a failed commit can put it back (a process killed during the
 * commit may leave such a link; the next begin in that folder removes it).
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
/*
 * A plan says how N >= 2 input stores are combined into one checkpoint:
 *   - rows: one per output tensor (input 0's tensors in its store order, then
 *     names found only in later inputs); each row has a layer index found
 *     from its name (hma_layer_from_name()), a group and an action;
 *   - groups: set from a spec string (hma_plan_set_groups()) plus name
 *     rules that override it (hma_plan_add_rule());
 *   - weights: one row of N weights per group (hma_plan_set_weights()), or,
 *     for 2 inputs, one ratio per group (hma_plan_set_ratios(): weight a_k on
 *     input 1, the aligned model, and 1 - a_k on input 0, the base);
 *   - a method: linear (default), task arithmetic, or SLERP.
 * The plan then writes the whole result to a file or folder
 * (hma_plan_merge_to()) or into a writer the caller made
 * (hma_plan_merge_into()), or merges one tensor or byte range of it into a
 * caller buffer (hma_plan_merge_tensor()), as often as wanted, with weights
 * changed in between.
 *
 * Thread-safety: the weight setters (hma_plan_set_ratio(),
 * hma_plan_set_ratios(), hma_plan_set_weights(), the gradient setters), all
 * getters, hma_plan_merge_tensor*() and hma_plan_tensor_stats() are
 * thread-safe: any number of threads may merge tensors while another changes
 * the weights; each merge uses one consistent snapshot of the weights,
 * identified by a generation number. Every other setter changes the
 * plan's structure and must not run concurrently with any other call on the
 * same plan. hma_plan_merge_to() and hma_plan_merge_into() may run
 * concurrently with the thread-safe calls (they take their weight snapshot
 * when they start).
 *
 * Ownership: the plan borrows its input stores; they must stay open until
 * hma_plan_free().
 */

/** A merge plan (opaque). */
typedef struct hma_plan hma_plan;

/** Merge methods. Values are stable (ABI); new methods are added at the end. */
typedef enum hma_method {
    /** sum_i w_i * theta_i (weights divided by their sum when normalize is on). */
    HMA_METHOD_LINEAR = 0,
    /** theta_b + sum_{i != b} w_i * (theta_i - theta_b), b = the base input; w_b is ignored. */
    HMA_METHOD_TASK_ARITHMETIC = 1,
    /** Spherical interpolation of exactly 2 inputs, t = the group's weight on input 1. */
    HMA_METHOD_SLERP = 2
} hma_method;

/** Special group values (returned by hma_plan_tensor_group(), accepted by hma_plan_add_rule()). */
enum hma_group_special {
    /** The tensor takes the mean of the groups' weights (default for non-layer tensors other than the embedding). */
    HMA_GROUP_MEAN = -1,
    /** The tensor is not averaged (copied, skipped or mismatched: see hma_plan_tensor_action()). */
    HMA_GROUP_NONE = -2
};

/** What hma_plan_merge_to() does with a row. Values are stable (ABI). */
typedef enum hma_action {
    /** Averaged with the row's group weights (float dtypes). */
    HMA_ACTION_MERGE = 0,
    /** Not averageable (integer, bool, FP8, ...): copied when byte-identical in every input, else HMA_ERR_MISMATCH. */
    HMA_ACTION_COPY_IDENTICAL = 1,
    /** Unmatched across inputs, copied as is from the input chosen by hma_plan_copy_unmatched(). */
    HMA_ACTION_COPY_FROM = 2,
    /** Unmatched and absent from the chosen copy input: left out of the output. */
    HMA_ACTION_SKIP = 3,
    /** Unmatched (missing, other shape, incompatible dtype): merging fails with HMA_ERR_MISMATCH. */
    HMA_ACTION_MISMATCH = 4
} hma_action;

/** Flags for hma_plan_set_flags(). */
enum hma_merge_flags {
    /** Allow NaN and infinity in inputs (they propagate as IEEE arithmetic says) instead of HMA_ERR_NONFINITE. */
    HMA_MERGE_ALLOW_NONFINITE = 1u << 0
};

/**
 * Progress callback: `done` of `total` output bytes processed. It follows
 * the callback rule of the Conventions: 0 goes on, HMA_CANCEL stops with
 * HMA_ERR_CANCELLED, any other value stops with HMA_ERR_CALLBACK.
 */
typedef int (*hma_progress_fn)(void *user, uint64_t done, uint64_t total);

/**
 * The layer index in a tensor name, or -1 if it has none. Recognised
 * families: "model.layers.N." (Llama, Mistral, Qwen, Gemma),
 * "transformer.h.N." (GPT-2), "gpt_neox.layers.N.", "model.decoder.layers.N."
 * (OPT), "transformer.blocks.N.", "encoder.layer.N." (BERT), "blk.N." (GGUF).
 * The family may be preceded by any prefix (e.g. "base_model.model."); the
 * number is decimal, at most 9 digits, followed by '.' or the end of the name.
 * Thread-safe.
 */
HMA_API long hma_layer_from_name(const char *name);

/**
 * 1 if `name` is a token embedding (contains "embed_tokens", "wte",
 * "word_embeddings", "tok_embeddings", "token_embd" or "embed_in"), else 0.
 * By default such tensors join group 0. Thread-safe.
 */
HMA_API int hma_is_embedding_name(const char *name);

/**
 * mergekit-style gradient: the value at position t in [0, 1] of `n` >= 1
 * anchors spread evenly over [0, 1]: s = t * (n - 1), linear between
 * anchors floor(s) and floor(s) + 1 (a[j] + (s - j) * (a[j+1] - a[j]), in
 * double). t is clamped to [0, 1]; n == 1 gives a[0]. Returns NaN when
 * anchors is NULL or n is 0. Thread-safe.
 */
HMA_API double hma_gradient_eval(const double *anchors, size_t n, double t);

/**
 * Create a plan over `n_inputs` (2 .. 64) open stores. Scans names, shapes
 * and dtypes of every input and detects layers; nothing is read from tensor
 * data. Defaults: method linear, normalize off, groups "all", weights 1/N
 * each (ratio 0.5 for 2 inputs), output dtype = each tensor's dtype in input
 * 0, no copying of unmatched tensors, non-finite inputs refused, threads =
 * all online cores, SIMD auto. Mismatched tensors do not fail here; they
 * show as HMA_ACTION_MISMATCH rows and fail hma_plan_merge_to().
 *
 * Ownership: *out must be freed with hma_plan_free(); the stores are
 * borrowed (the plan keeps the pointers) and must outlive the plan. The same
 * store may be passed more than once.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL, n_inputs out of range),
 * HMA_ERR_NO_MEMORY. Thread-safe call.
 */
HMA_API int hma_plan_create(hma_plan **out, hma_store *const *inputs, size_t n_inputs);

/** Free a plan (not its stores). NULL is a no-op. Not thread-safe with other uses of the plan. */
HMA_API void hma_plan_free(hma_plan *plan);

/** Number of inputs. Thread-safe. */
HMA_API size_t hma_plan_input_count(const hma_plan *plan);

/**
 * Input store `i` (0 .. hma_plan_input_count() - 1) as given to
 * hma_plan_create(), or NULL when i is out of range (or plan NULL). The plan
 * only borrows it: it stays owned by the caller. Thread-safe.
 */
HMA_API hma_store *hma_plan_input(const hma_plan *plan, size_t i);

/** L = 1 + the largest layer index found in any input's names (0 when none). Thread-safe. */
HMA_API long hma_plan_layer_count(const hma_plan *plan);

/* ---- structure (not thread-safe; see above) ---------------------------- */

/**
 * Set the method. HMA_METHOD_SLERP needs exactly 2 inputs.
 * Errors: HMA_ERR_INVALID_ARGUMENT (unknown method, SLERP with N != 2).
 */
HMA_API int hma_plan_set_method(hma_plan *plan, hma_method method);

/** Base input for HMA_METHOD_TASK_ARITHMETIC (default 0). Errors: HMA_ERR_INVALID_ARGUMENT (out of range). */
HMA_API int hma_plan_set_base(hma_plan *plan, size_t base_input);

/**
 * Normalize (linear only): when on, each weight row is divided by its sum
 * (computed in double, in input order) before use; a row summing to 0 makes
 * merging fail with HMA_ERR_INVALID_ARGUMENT. Default off: weights are used
 * exactly as given. Weights set from ratios (hma_plan_set_ratios() and
 * friends) are never normalized: (1 - a, a) sums to 1 by construction, and
 * dividing by a sum that rounded to 1 +- 1 ulp would break the MA contract.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL plan).
 */
HMA_API int hma_plan_set_normalize(hma_plan *plan, int on);

/**
 * Set the layer grouping from a spec (L = hma_plan_layer_count()):
 *   "all" or "none"  one group;
 *   "blocks:K"       K >= 1 contiguous blocks, layer i in group floor(i*K/L);
 *   "split:S1,S2,.." the paper's form: group 0 = layers <= S1, group 1 =
 *                    layers <= S2 (and > S1), ..., last group = the rest;
 *                    split points strictly increasing, >= 0;
 *   "layers"         one group per layer (L groups; 1 when L = 0).
 * Tensors without a layer: the embedding (hma_is_embedding_name()) joins
 * group 0, every other one takes HMA_GROUP_MEAN - unless a rule says
 * otherwise. Changing the groups resets the weights to 1/N each (ratio 0.5
 * for 2 inputs) and bumps the weight generation.
 * Errors: HMA_ERR_INVALID_ARGUMENT (bad spec, more than 65536 groups, or an
 * existing rule naming a group that would no longer exist); the plan is
 * unchanged on error.
 */
HMA_API int hma_plan_set_groups(hma_plan *plan, const char *spec);

/** The current group spec as set (e.g. "blocks:3"); owned by the plan, valid until the next hma_plan_set_groups(). */
HMA_API const char *hma_plan_groups_spec(const hma_plan *plan);

/** Number of groups K (>= 1). Thread-safe. */
HMA_API size_t hma_plan_group_count(const hma_plan *plan);

/**
 * Add a name rule, checked before layer grouping in the order added (first
 * match wins). `pattern` is a glob when it contains '*' or '?' (matched
 * against the whole name; '*' matches any run of bytes, '?' one byte), else
 * a substring. `group` is a group index (< hma_plan_group_count()) or
 * HMA_GROUP_MEAN. The pattern is copied.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL or empty pattern, group out of
 * range), HMA_ERR_NO_MEMORY.
 */
HMA_API int hma_plan_add_rule(hma_plan *plan, const char *pattern, int group);

/** Remove every name rule. */
HMA_API void hma_plan_clear_rules(hma_plan *plan);

/**
 * Output dtype for averaged tensors: HMA_DTYPE_F16, BF16, F32 or F64, or
 * HMA_DTYPE_COUNT for "each tensor's dtype in input 0" (the default).
 * Copied tensors keep their dtype. Errors: HMA_ERR_UNSUPPORTED_DTYPE.
 */
HMA_API int hma_plan_set_output_dtype(hma_plan *plan, hma_dtype dtype);

/**
 * The ggml type of averaged and copied float tensors in a GGUF output
 * (a writer at a ".gguf" path); no effect on other outputs.
 * HMA_GGUF_AUTO (the default): each tensor keeps its type in input 0;
 * a Q8_0 tensor is merged in float32 and quantized again (ggml's
 * quantize_row_q8_0_ref); other quantized types, which libhma cannot write
 * exactly (Q4_0, Q4_1, Q5_0, Q5_1, the K-quants), are written as F16
 * (merged in float32, then rounded once). HMA_GGUF_Q8_0: every tensor of 2
 * or more dimensions whose rows are a multiple of 32 elements is Q8_0
 * (merged in float32), other tensors keep their float dtype. For F32, F16
 * and BF16 outputs use hma_plan_set_output_dtype().
 * Errors: HMA_ERR_UNSUPPORTED_DTYPE (another value).
 */
HMA_API int hma_plan_set_output_gguf_type(hma_plan *plan, hma_gguf_type type);

/**
 * Copy unmatched tensors (missing from some input, different shapes, or
 * dtypes that cannot be averaged together) as they are in input `input`
 * instead of failing; those absent from `input` are left out. Pass
 * HMA_NPOS to turn it off (the default). The index type is that of
 * hma_plan_set_base(). Errors: HMA_ERR_INVALID_ARGUMENT (input out of range).
 */
HMA_API int hma_plan_copy_unmatched(hma_plan *plan, size_t input);

/** Set hma_merge_flags (replaces the previous flags). Errors: HMA_ERR_INVALID_ARGUMENT (unknown bit). */
HMA_API int hma_plan_set_flags(hma_plan *plan, unsigned flags);

/** Worker threads for hma_plan_merge_to(); 0 = all online cores (the default). Results do not depend on it. */
HMA_API int hma_plan_set_threads(hma_plan *plan, unsigned threads);

/**
 * Progress callback for hma_plan_merge_to() and hma_plan_merge_into(), or
 * NULL. It is called on the thread that called the merge (never from a
 * worker), after chunks finish and at least once at the end with done ==
 * total. Its return value follows the callback rule of the Conventions:
 * HMA_CANCEL stops the merge with HMA_ERR_CANCELLED, any other nonzero
 * value with HMA_ERR_CALLBACK; either way nothing is written.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL plan).
 */
HMA_API int hma_plan_set_progress(hma_plan *plan, hma_progress_fn fn, void *user);

/**
 * Add an entry to the `__metadata__` that hma_plan_merge_to() and
 * hma_plan_merge_into() write, besides "format" ("pt") and "hma_recipe".
 * Setting a key again replaces its value; entries keep the order in which
 * they were first set, after "format" and "hma_recipe". Setting "format" or
 * "hma_recipe" replaces the built-in value. Key and value are copied; both
 * must be valid UTF-8 (checked by the writer when merging).
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL plan, NULL or empty key, NULL
 * value), HMA_ERR_NO_MEMORY. Not thread-safe (a structure setter).
 */
HMA_API int hma_plan_set_metadata(hma_plan *plan, const char *key, const char *value);

/* ---- weights (thread-safe) -------------------------------------------- */

/**
 * Set every group's weights: `w` holds K rows of N weights (row-major,
 * K = hma_plan_group_count(), N = hma_plan_input_count()), `n` must be K*N.
 * Negative weights and weights above 1 are allowed; all must be finite.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL, wrong n, non-finite).
 * Thread-safe; bumps the generation.
 */
HMA_API int hma_plan_set_weights(hma_plan *plan, const double *w, size_t n);

/**
 * 2 inputs only: group k gets weight a[k] on input 1 (aligned) and
 * 1 - a[k] on input 0 (base), so a plain MA of ratio a is
 * hma_plan_set_ratios(plan, &a, 1) with groups "all". `n` must be K.
 * a > 1 or < 0 extrapolates (ExPO). The mean placement uses
 * (1 - abar, abar), abar = sum a_k / K. Errors: HMA_ERR_INVALID_ARGUMENT
 * (N != 2, wrong n, non-finite). Thread-safe; bumps the generation.
 */
HMA_API int hma_plan_set_ratios(hma_plan *plan, const double *a, size_t n);

/** hma_plan_set_ratios() with the same ratio `a` for every group. Thread-safe. */
HMA_API int hma_plan_set_ratio(hma_plan *plan, double a);

/**
 * Ratios from a gradient: group k gets hma_gradient_eval(anchors, n,
 * k / (K - 1)) (t = 0 when K = 1). With groups "layers" this is mergekit's
 * per-layer gradient. 2 inputs only. Errors as hma_plan_set_ratios().
 */
HMA_API int hma_plan_set_ratio_gradient(hma_plan *plan, const double *anchors, size_t n);

/**
 * Weights from a gradient: `anchors` holds n_anchors rows of N weights;
 * column i is interpolated as in hma_plan_set_ratio_gradient().
 * Errors: HMA_ERR_INVALID_ARGUMENT. Thread-safe.
 */
HMA_API int hma_plan_set_weight_gradient(hma_plan *plan, const double *anchors, size_t n_anchors);

/**
 * The current weights: copies K rows of N (row-major) into w (n >= K*N) and
 * returns HMA_OK; *generation (may be NULL) receives their generation.
 * Errors: HMA_ERR_INVALID_ARGUMENT. Thread-safe.
 */
HMA_API int hma_plan_get_weights(const hma_plan *plan, double *w, size_t n, uint64_t *generation);

/**
 * The mean placement's weights (N values into w, n >= N): the mean ratio
 * (1 - abar, abar) after hma_plan_set_ratios(), else the column means of the
 * weight rows. For 2 inputs w[1] is the reported mean ratio.
 * Errors: HMA_ERR_INVALID_ARGUMENT. Thread-safe.
 */
HMA_API int hma_plan_mean_weights(const hma_plan *plan, double *w, size_t n);

/** Generation of the current weights: starts at 1, +1 at every successful weight change. Thread-safe. */
HMA_API uint64_t hma_plan_generation(const hma_plan *plan);

/* ---- rows (thread-safe) ------------------------------------------------ */

/** Number of rows (output tensor candidates, any action). Thread-safe. */
HMA_API size_t hma_plan_tensor_count(const hma_plan *plan);
/** Row of this tensor name, or HMA_NPOS. O(1). Thread-safe. */
HMA_API size_t hma_plan_find(const hma_plan *plan, const char *name);
/** Name of row i (owned by the plan), NULL if out of range. Thread-safe. */
HMA_API const char *hma_plan_tensor_name(const hma_plan *plan, size_t i);
/** Layer of row i from its name (-1 if none or out of range). Thread-safe. */
HMA_API long hma_plan_tensor_layer(const hma_plan *plan, size_t i);
/** Group of row i: >= 0, HMA_GROUP_MEAN, or HMA_GROUP_NONE (not averaged, or i out of range). Thread-safe. */
HMA_API int hma_plan_tensor_group(const hma_plan *plan, size_t i);
/** Action of row i (HMA_ACTION_MISMATCH if out of range). Thread-safe. */
HMA_API hma_action hma_plan_tensor_action(const hma_plan *plan, size_t i);
/**
 * Why row i is not merged ("missing from input 1 (b.safetensors)",
 * "shape [4,8] in input 1 differs from [4,4] in input 0", ...), or "" for
 * a row merged normally. Owned by the plan. Thread-safe.
 */
HMA_API const char *hma_plan_tensor_reason(const hma_plan *plan, size_t i);
/** The tensor of row i in input `input`, or NULL where absent. Thread-safe. */
HMA_API const hma_tensor *hma_plan_tensor_input(const hma_plan *plan, size_t i, size_t input);
/** Output dtype of row i (HMA_DTYPE_COUNT if out of range or skipped). Thread-safe. */
HMA_API hma_dtype hma_plan_tensor_dtype(const hma_plan *plan, size_t i);
/** Output size of row i in bytes (0 if out of range or skipped). Thread-safe. */
HMA_API uint64_t hma_plan_tensor_nbytes(const hma_plan *plan, size_t i);

/**
 * The weights row i is merged with now (N values into w, n >= N): its
 * group's row, or the mean weights, normalized if normalize is on (task
 * arithmetic: the base input's entry is 0); for SLERP the group's row as
 * stored (t = w[1]), since the SLERP coefficients depend on the data.
 * *generation (may be NULL) receives the
 * generation. Errors: HMA_ERR_INVALID_ARGUMENT (bad i, NULL, n < N),
 * HMA_ERR_STATE (row not averaged). Thread-safe.
 */
HMA_API int hma_plan_tensor_weights(const hma_plan *plan, size_t i, double *w, size_t n,
                                    uint64_t *generation);

/* ---- merging ------------------------------------------------------------ */

/**
 * Merge every row and write the result through an hma_writer at `path`
 * (a ".safetensors" file, or a folder; `shard_size` as hma_writer_create()).
 * Rows are written in row order (skipped rows left out). `__metadata__`
 * gets "format": "pt", "hma_recipe": a JSON object naming the inputs,
 * method, groups, rules and weights used, and the entries of
 * hma_plan_set_metadata(). This is hma_writer_create(), hma_plan_merge_into()
 * and hma_writer_commit(); the bytes are the same. Before anything is created every
 * row is checked: HMA_ACTION_MISMATCH rows fail with HMA_ERR_MISMATCH
 * naming the tensor and inputs. The work is split into chunks processed by
 * the plan's threads; the output bytes do not depend on the thread count or
 * SIMD path. Anonymous memory stays below 64 MiB + 8 MiB per thread.
 * On any error (including a cancel from the progress callback) nothing
 * appears under `path`, and the first error's code and message are
 * returned to the calling thread.
 *
 * Errors: HMA_ERR_MISMATCH (unmatched rows; integer/bool tensors that
 * differ), HMA_ERR_NONFINITE (names tensor, input and element),
 * HMA_ERR_UNSUPPORTED_DTYPE (non-averageable dtypes that differ),
 * HMA_ERR_CANCELLED, HMA_ERR_THREAD, HMA_ERR_NO_MEMORY, HMA_ERR_INVALID_ARGUMENT,
 * and the store's and writer's errors. Thread-safe with respect to the
 * weight setters and merge_tensor calls; not with structural setters.
 */
HMA_API int hma_plan_merge_to(hma_plan *plan, const char *path, uint64_t shard_size);

/**
 * hma_plan_merge_to() into a writer the caller made, so that it can add its
 * own `__metadata__` first. `w` comes from hma_writer_create(), may have
 * metadata set, and must have no tensors declared and not be begun. The
 * plan sets "format", "hma_recipe" and its hma_plan_set_metadata() entries
 * on it, except keys the caller already set: precedence is the caller's
 * writer metadata, then the plan's metadata, then the built-in values. Then
 * it declares its rows, calls hma_writer_begin() and writes every row (same
 * checks, threads, progress and bytes as hma_plan_merge_to()).
 * Ownership: the caller owns `w` throughout. On success the writer is begun
 * and fully written, and the caller commits it (hma_writer_commit()) and
 * frees it; hma_plan_merge_into() never commits. On error the writer may
 * have been partly declared or written: it can only be freed
 * (hma_writer_free(), which leaves nothing under its path).
 * Errors: as hma_plan_merge_to(), plus HMA_ERR_STATE (the writer already
 * has tensors declared or was begun) and the writer's metadata errors
 * (HMA_ERR_BAD_NAME for a plan entry that is not valid UTF-8).
 * Thread-safety: as hma_plan_merge_to().
 */
HMA_API int hma_plan_merge_into(hma_plan *plan, hma_writer *w);

/**
 * Merge `len` bytes of row `i`'s output, starting `offset` bytes into it,
 * into `buf` (output dtype, little-endian), with the current weights; no
 * file is written. offset and len must be multiples of the output element
 * size; SLERP needs whole-tensor statistics, computed on first use and
 * cached. The bytes equal the same range of hma_plan_merge_to()'s output.
 * Runs on the calling thread only. *generation (may be NULL) receives the
 * generation of the weights used.
 * Errors: HMA_ERR_INVALID_ARGUMENT (bad i, range past the tensor or not
 * element-aligned), HMA_ERR_MISMATCH / HMA_ERR_UNSUPPORTED_DTYPE /
 * HMA_ERR_NONFINITE as hma_plan_merge_to() (for the bytes in range),
 * HMA_ERR_STATE (a skipped row), HMA_ERR_NO_MEMORY, store errors.
 * Thread-safe.
 */
HMA_API int hma_plan_merge_tensor_at(hma_plan *plan, size_t i, uint64_t offset, void *buf,
                                     size_t len, uint64_t *generation);

/** hma_plan_merge_tensor_at() by name; HMA_ERR_NOT_FOUND for an unknown name. Thread-safe. */
HMA_API int hma_plan_merge_tensor(hma_plan *plan, const char *name, uint64_t offset, void *buf,
                                  size_t len, uint64_t *generation);

/**
 * Statistics between inputs `a` and `b` of row i, as for SLERP and `hma
 * diff`: out[0] = sum x*y, out[1] = sum x*x, out[2] = sum y*y, out[3] =
 * sum (y - x)^2, with x from input a and y from input b, in double over fixed
 * chunks added in order (deterministic). Both must be float tensors of the
 * same element count. Errors: HMA_ERR_INVALID_ARGUMENT, HMA_ERR_MISMATCH,
 * store errors. Thread-safe.
 */
HMA_API int hma_plan_tensor_stats(const hma_plan *plan, size_t i, size_t a, size_t b,
                                  double out[4]);

/* ======================================================================= */
/* Testing knobs                                                           */
/* ======================================================================= */
/*
 * These exist for tests and benchmarks: results never depend on them (every
 * SIMD path gives the same bits). The SIMD path of the arithmetic kernels
 * and of the pack codecs is chosen once per process: the best this CPU and
 * build run, capped by the environment variable
 *   HMA_SIMD=scalar|avx2|avx512
 * read once, at the first call that needs it (another value is ignored).
 * Running a test suite under HMA_SIMD=scalar, avx2 and avx512 checks every
 * path; hma_plan_set_simd() forces one path for one plan's merges.
 */

/** SIMD paths of the arithmetic kernels. Values are stable (ABI). */
typedef enum hma_simd {
    HMA_SIMD_AUTO = -1,  /* for hma_plan_set_simd(): the process's path (the default) */
    HMA_SIMD_SCALAR = 0, /* portable C */
    HMA_SIMD_AVX2 = 1,   /* AVX2 + F16C */
    HMA_SIMD_AVX512 = 2  /* AVX-512 F/BW/VL/DQ (+BF16 where present) */
} hma_simd;

/** The path this process uses: the fastest this CPU supports, capped by HMA_SIMD. Thread-safe. */
HMA_API hma_simd hma_simd_best(void);
/** 1 if this CPU and build can run `level`, else 0 (also for HMA_SIMD_AUTO and unknown values). Thread-safe. */
HMA_API int hma_simd_available(hma_simd level);
/** "scalar", "avx2", "avx512"; "auto" for HMA_SIMD_AUTO; NULL for anything else. Static string. Thread-safe. */
HMA_API const char *hma_simd_name(hma_simd level);

/**
 * Force the SIMD path of this plan's merges (hma_plan_merge_to(),
 * hma_plan_merge_into(), hma_plan_merge_tensor*()), or HMA_SIMD_AUTO (the
 * default) for the process's path. A path is not capped by HMA_SIMD.
 * Errors: HMA_ERR_UNSUPPORTED (path not available here),
 * HMA_ERR_INVALID_ARGUMENT (unknown value, NULL plan). Not thread-safe (a
 * structure setter).
 */
HMA_API int hma_plan_set_simd(hma_plan *plan, hma_simd level);

/* ======================================================================= */
/* mergekit recipes                                                        */
/* ======================================================================= */
/*
 * A recipe is a mergekit YAML (or JSON) merge configuration: merge_method,
 * base_model, models or slices, parameters, dtype, out_dtype. libhma runs
 * mergekit's methods with mergekit's semantics (docs/merging.md, "mergekit
 * recipes", lists every method, formula and deliberate difference):
 *   linear, task_arithmetic, ties, dare_linear, dare_ties, breadcrumbs,
 *   breadcrumbs_ties, della, della_linear, passthrough, slerp, nuslerp,
 *   multislerp, karcher, model_stock, sce, nearswap, ram, ramplus_tl,
 *   arcee_fusion.
 * Models are local paths: a .safetensors file, a sharded index, or a
 * Hugging Face folder; relative paths are relative to the current
 * directory (as in mergekit).
 *
 *   hma_recipe *r;
 *   if (hma_recipe_load(&r, "recipe.yml") == HMA_OK &&
 *       hma_recipe_merge_to(r, "out-folder", NULL) == HMA_OK) ...
 *   hma_recipe_free(r);
 *
 * A recipe handle is not thread-safe: use it from one thread at a time
 * (hma_recipe_merge_to() runs its own worker threads inside).
 */

/** A parsed recipe and, once resolved, its models and output tensors. */
typedef struct hma_recipe hma_recipe;

/**
 * Parse the recipe file at `path` (YAML 1.1, of which JSON is a subset).
 * Checks the recipe's own structure and values only: keys, types, method
 * name, parameter names and ranges, layer ranges; models are not opened
 * (hma_recipe_resolve() does that). *out gets a handle to free with
 * hma_recipe_free(), or NULL on error.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL), HMA_ERR_IO, HMA_ERR_NOT_FOUND
 * (no such file), HMA_ERR_NO_MEMORY, HMA_ERR_RECIPE (the message names the
 * file, line and key: YAML syntax, an unknown key, a wrong type, an unknown
 * method or parameter, an impossible value).
 */
HMA_API int hma_recipe_load(hma_recipe **out, const char *path);

/**
 * As hma_recipe_load(), from `len` bytes of text (need not be
 * NUL-terminated; copied). `source_name` (may be NULL) names the text in
 * error messages. Errors: as hma_recipe_load(), without HMA_ERR_IO.
 */
HMA_API int hma_recipe_parse(hma_recipe **out, const char *text, size_t len,
                             const char *source_name);

/** Free a recipe and close the models it opened. NULL is a no-op. */
HMA_API void hma_recipe_free(hma_recipe *r);

/** The recipe's merge_method as written ("ties", ...). Owned by r. */
HMA_API const char *hma_recipe_method(const hma_recipe *r);

/**
 * Open every model and plan the output: which input tensors make each
 * output tensor (slices, layer renumbering), every parameter's value for
 * every tensor and model, output dtypes and shapes. Checks everything a
 * merge needs (missing models or tensors, shapes, required parameters,
 * ranges such as DELLA's density +/- epsilon), so that
 * hma_recipe_merge_to() fails only on I/O, memory or non-finite values.
 * Called by hma_recipe_merge_to() when needed; calling it again does
 * nothing. Errors: HMA_ERR_NOT_FOUND (model path), the store's open
 * errors (the message names the model), HMA_ERR_UNSUPPORTED (a GGUF
 * model: recipes need Hugging Face tensor names), HMA_ERR_MISMATCH (a
 * tensor missing from a model, shapes that differ, models of a `models:`
 * recipe with different layer counts), HMA_ERR_UNSUPPORTED_DTYPE (an input
 * tensor that is not F16, BF16, F32 or F64), HMA_ERR_RECIPE (a parameter
 * missing or impossible for a tensor, a layer_range beyond a model, a
 * slice's base_model not among its sources, mergekit's MODEL+LORA syntax:
 * the message names the tensor, the model and the recipe line),
 * HMA_ERR_NO_MEMORY. On error the recipe stays unresolved.
 */
HMA_API int hma_recipe_resolve(hma_recipe *r);

/** Distinct models of a resolved recipe (0 before). */
HMA_API size_t hma_recipe_model_count(const hma_recipe *r);
/** Path of model `m` as written in the recipe; NULL out of range. Owned by r. */
HMA_API const char *hma_recipe_model_path(const hma_recipe *r, size_t m);
/** The opened store of model `m` (owned by r; valid until hma_recipe_free()); NULL out of range. */
HMA_API const hma_store *hma_recipe_model_store(const hma_recipe *r, size_t m);

/** Output tensors of a resolved recipe (0 before), in output order. */
HMA_API size_t hma_recipe_tensor_count(const hma_recipe *r);
/** Name of output tensor `i`; NULL out of range. Owned by r. */
HMA_API const char *hma_recipe_tensor_name(const hma_recipe *r, size_t i);
/** Output dtype of tensor `i`; HMA_DTYPE_COUNT out of range. */
HMA_API hma_dtype hma_recipe_tensor_dtype(const hma_recipe *r, size_t i);
/**
 * Shape of output tensor `i`: *ndim gets the dimension count and the
 * returned pointer (owned by r) the sizes; NULL out of range.
 */
HMA_API const uint64_t *hma_recipe_tensor_shape(const hma_recipe *r, size_t i, unsigned *ndim);
/**
 * Position of output tensor `i` in its slice's gradient: t = j / (n - 1)
 * for layer j of a slice of n layers (1 when n = 1), 0 for the tensors
 * outside the layers (embeddings, final norm, lm_head: mergekit's rule).
 * NaN out of range.
 */
HMA_API double hma_recipe_tensor_t(const hma_recipe *r, size_t i);
/** Number of sources (input tensors) of output tensor `i`, in mergekit's order; 0 out of range. */
HMA_API size_t hma_recipe_tensor_source_count(const hma_recipe *r, size_t i);
/**
 * Source `j` of output tensor `i`: *model (may be NULL) gets the model
 * index (see hma_recipe_model_path()), *input (may be NULL) the input
 * tensor's name in that model (owned by r). Errors:
 * HMA_ERR_INVALID_ARGUMENT (out of range, unresolved recipe).
 */
HMA_API int hma_recipe_tensor_source(const hma_recipe *r, size_t i, size_t j, size_t *model,
                                     const char **input);
/**
 * The value parameter `name` takes for output tensor `i`: source `j`'s
 * value for a per-model parameter (weight, density, gamma, epsilon of
 * DELLA, scale), or the tensor's value for a global one (j = HMA_NPOS:
 * normalize, lambda, t, ...), after mergekit's lookup (source > slice >
 * global > the method's default; gradients evaluated at the tensor's t,
 * filters against the tensor's name). Booleans read as 1 or 0.
 * Errors: HMA_ERR_NOT_FOUND (the method has no such parameter, or it has
 * no value here: an optional parameter left unset, or a base model's
 * weight), HMA_ERR_INVALID_ARGUMENT (NULL, out of range, unresolved).
 */
HMA_API int hma_recipe_tensor_param(const hma_recipe *r, size_t i, size_t j, const char *name,
                                    double *value);

/** Warnings of a resolved or merged recipe (vocabulary rows, tokenizer, dtype notes). */
HMA_API size_t hma_recipe_note_count(const hma_recipe *r);
/** Warning `k` (owned by r), or NULL out of range. */
HMA_API const char *hma_recipe_note(const hma_recipe *r, size_t k);

/**
 * Merge options. Initialise with hma_recipe_options_init(); struct_size
 * follows the rule of the conventions.
 */
typedef struct hma_recipe_options {
    size_t struct_size;       /* sizeof(hma_recipe_options) as compiled by the caller */
    uint64_t seed;            /* key of DARE's and DELLA's random draws; default 0 */
    unsigned threads;         /* worker threads, 0 = online CPUs (default); results never depend on it */
    uint64_t shard_size;      /* bytes per shard of a folder output; 0 = one file (default) */
    hma_progress_fn progress; /* optional: called with output bytes done and total */
    void *progress_user;
} hma_recipe_options;

/** The defaults above into the first min(size, sizeof) bytes of `o`; NULL is a no-op. Thread-safe. */
HMA_API void hma_recipe_options_init_size(hma_recipe_options *o, size_t size);
/** For C and C++ callers: hma_recipe_options_init_size(o, sizeof *o). */
static inline void hma_recipe_options_init(hma_recipe_options *o) {
    hma_recipe_options_init_size(o, sizeof *o);
}

/**
 * Add a string to the output's __metadata__ (the CLI records its command
 * line as "hma_command"). Keys "hma_recipe" and "hma_recipe_text" are the
 * library's. Errors: HMA_ERR_INVALID_ARGUMENT (NULL, reserved key),
 * HMA_ERR_NO_MEMORY.
 */
HMA_API int hma_recipe_set_metadata(hma_recipe *r, const char *key, const char *value);

/**
 * Resolve (if needed) and run the merge into `out_path`: a .safetensors
 * file, or a folder (model.safetensors, or shards and an index when
 * opts->shard_size > 0) with the base model's config.json (its
 * num_hidden_layers and vocab_size updated when the merge changes them)
 * and tokenizer files. __metadata__ holds "hma_recipe" (a JSON summary:
 * libhma version, method, seed, models) and "hma_recipe_text" (the recipe
 * as given). One output tensor is merged at a time, spread over the
 * threads; the output appears complete or not at all. opts NULL = the
 * defaults. A path ending in ".gguf" is refused (HMA_ERR_INVALID_ARGUMENT:
 * recipe outputs keep Hugging Face names). Errors: those of
 * hma_recipe_resolve(), hma_writer_create()
 * and hma_writer_commit(), HMA_ERR_NONFINITE (a merged tensor holds a
 * NaN or infinity: from an input, or an overflow; named by tensor),
 * HMA_ERR_CANCELLED / HMA_ERR_CALLBACK
 * (progress), HMA_ERR_NO_MEMORY.
 */
HMA_API int hma_recipe_merge_to(hma_recipe *r, const char *out_path,
                                const hma_recipe_options *opts);

/* ======================================================================= */
/* Ratio search and Pareto fronts                                          */
/* ======================================================================= */
/*
 * What this section gives:
 *   1. The paper's parametrisation of K per-block ratios by K logits with a
 *      fixed mean, its Jacobian and (up to its invariance) its inverse.
 *   2. Group gradients dL/da_k from dL/dtheta, and one step of the authors'
 *      gradient method (SGD or Adam on the logits, optional |a_k - a| penalty).
 *   3. A derivative-free search over ratio vectors with a fixed mean and
 *      bounds, for scores that have no gradient (a reward model, a judge).
 *   4. Pareto fronts of (alignment, forgetting) points and a sweep helper.
 * See docs/search.md for the maths and the choice of search method.
 *
 * Conventions of this section: ratios are weights of the ALIGNED model
 * (theta = (1 - a_k) theta_base + a_k theta_aligned, as everywhere in
 * libhma); every score is LOWER-IS-BETTER unless a flag says otherwise;
 * vectors are plain `double` arrays of K entries owned by the caller.
 */

/* ----------------------------------------------------------------------- */
/* 1. Parametrisation: logits -> ratios with a fixed mean                  */
/* ----------------------------------------------------------------------- */

/** The paper's eps in the normalised sigmoid (0.2 in the authors' script). */
#define HMA_RATIO_EPS_DEFAULT 0.2

/**
 * Map K logits to K ratios with mean exactly `mean` (up to rounding):
 *   s_k = sigmoid(l_k),  u_k = s_k + eps,  S = sum_j u_j,
 *   a_k = mean * K * u_k / S.
 * Invariance: logits whose u vectors are proportional give the same ratios
 * (a one-parameter family; adding a constant to the logits is NOT one).
 * Reach: a_k / a_j < (1 + eps) / eps (6 for eps = 0.2), so eps bounds how
 * unequal the ratios can be, and all ratios have the sign of the mean.
 * `logits` and `ratios` may be the same array.
 * Errors: HMA_ERR_INVALID_ARGUMENT (k == 0, NULL, eps <= 0 or not finite,
 * mean not finite, a logit NaN). Thread-safe.
 */
HMA_API int hma_ratios_from_logits(size_t k, const double *logits, double mean, double eps,
                                   double *ratios);

/**
 * The analytic K x K Jacobian of hma_ratios_from_logits(), row-major:
 *   jac[i * k + j] = d a_i / d l_j = g_j * (mean * K * [i == j] - a_i) / S,
 * with g_j = s_j (1 - s_j). Every column sums to 0 (the mean is fixed).
 * `jac` holds k * k doubles (k * k must not overflow).
 * Errors: as hma_ratios_from_logits(), plus HMA_ERR_OVERFLOW. Thread-safe.
 */
HMA_API int hma_ratios_jacobian(size_t k, const double *logits, double mean, double eps,
                                double *jac);

/**
 * Chain rule through the Jacobian without forming it:
 *   grad_logits[j] = sum_i grad_ratios[i] * d a_i / d l_j
 *                  = g_j / S * (mean * K * grad_ratios[j] - sum_i a_i grad_ratios[i]).
 * Errors: as hma_ratios_from_logits(). Thread-safe.
 */
HMA_API int hma_logits_gradient(size_t k, const double *logits, double mean, double eps,
                                const double *grad_ratios, double *grad_logits);

/**
 * Inverse map, up to the invariance: logits that hma_ratios_from_logits()
 * maps back to `ratios` (to rounding), with mean = (1/K) sum ratios.
 * The logits are not unique: any u = c * (ratios / mean) with every u_k in
 * (eps, 1 + eps) works. We take c = 0.5 + eps (so equal ratios give all-zero
 * logits) when that is allowed, else the middle of the allowed range of c.
 * Requires mean != 0, every ratios[k] / mean > 0, and
 * max(ratios) / min(ratios) < (1 + eps) / eps (for mean > 0; |.| otherwise):
 * ratios outside that set cannot be reached by any logits.
 * If `mean_out` is not NULL it receives the mean.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL, k == 0, bad eps, non-finite
 * ratio, or ratios that no logits reach). Thread-safe.
 */
HMA_API int hma_logits_from_ratios(size_t k, const double *ratios, double eps, double *logits,
                                   double *mean_out);

/* ----------------------------------------------------------------------- */
/* 2. Group gradients and one step of the authors' gradient method         */
/* ----------------------------------------------------------------------- */

/**
 * Inner product <grad, aligned - base> over n elements, the building block
 * of dL/da_k (d theta / d a = theta_aligned - theta_base). Each of the three
 * arrays may be F16, BF16, F32 or F64 (little-endian, any alignment).
 * Arithmetic: values are converted exactly to float32, the difference
 * aligned - base is rounded once to float32 (kept in double when any input
 * is F64), and the products are summed in double by cblas_ddot (float32
 * products are exact in double; OpenBLAS's cblas_dsdot is not used because
 * its x86-64 kernel forms the products in float32). The sum runs over fixed
 * blocks of HMA_GRAD_CHUNK elements whose partial sums are added in order,
 * so the result does not depend on the thread count (OpenBLAS picks its
 * kernel per CPU model, so another CPU may differ in the last bits).
 * NaN or infinity in any input gives a non-finite result.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL with n > 0, out NULL),
 * HMA_ERR_UNSUPPORTED_DTYPE. Thread-safe.
 */
#define HMA_GRAD_CHUNK 4096
HMA_API int hma_delta_dot(uint64_t n, const void *grad, hma_dtype grad_dtype, const void *aligned,
                          hma_dtype aligned_dtype, const void *base, hma_dtype base_dtype,
                          double *out);

/**
 * Gradient source for hma_plan_group_gradients(): give dL/dtheta for the
 * tensor `name` (the plan's row name). Set *data to the gradient's first
 * element (F16, BF16, F32 or F64 in *dtype, little-endian, row-major like
 * the weights, any alignment) and *nelements to its element count, and
 * return 0. Leave *data NULL (and return 0) when the tensor has no gradient
 * (frozen): that is an error unless HMA_GRAD_ALLOW_MISSING is set, then it
 * contributes 0. The return value follows the callback rule of the
 * Conventions (0 goes on, HMA_CANCEL stops with HMA_ERR_CANCELLED, any other
 * value with HMA_ERR_CALLBACK). The buffer must stay valid and
 * unchanged until hma_plan_group_gradients() returns. Called on the calling
 * thread, once per averaged row, in row order, before any arithmetic.
 */
typedef int (*hma_grad_fn)(void *user, const char *name, const void **data, hma_dtype *dtype,
                           uint64_t *nelements);

/** Flags of hma_group_grad_options. */
enum hma_grad_flags {
    /** A tensor without a gradient (callback leaves *data NULL, or absent from the gradient store) contributes 0. */
    HMA_GRAD_ALLOW_MISSING = 1u << 0
};

/** Options of the group-gradient calls; initialise with hma_group_grad_options_init(). */
typedef struct hma_group_grad_options {
    size_t struct_size; /* sizeof(hma_group_grad_options) as compiled by the caller */
    unsigned flags;     /* hma_grad_flags */
    unsigned threads;   /* worker threads; 0 = all online cores. Results do not depend on it */
} hma_group_grad_options;

/**
 * Defaults (no flags, threads 0) into the first min(size, sizeof) bytes of
 * `o`, struct_size set to that many (see "Options and stats structs" at the
 * top). NULL is a no-op. Thread-safe.
 */
HMA_API void hma_group_grad_options_init_size(hma_group_grad_options *o, size_t size);
/**
 * For C and C++ callers: initialise `o` (defaults, struct_size) at the
 * size this program was compiled with:
 *   hma_group_grad_options_init_size(o, sizeof *o).
 */
static inline void hma_group_grad_options_init(hma_group_grad_options *o) {
    hma_group_grad_options_init_size(o, sizeof *o);
}

/**
 * dL/da_k for every group k of a 2-input plan whose input 0
 * (hma_plan_input(plan, 0)) is the base and input 1 the aligned model:
 *   grad[k] = sum over averaged rows r of group k of <dL/dtheta_r, theta_aligned_r - theta_base_r>
 *           + (1/K) * sum over rows with HMA_GROUP_MEAN placement of the same inner product,
 * because a mean-placed tensor's ratio is (1/K) sum a_k. Rows with
 * HMA_GROUP_NONE (copied, skipped) are ignored. Each inner product is
 * hma_delta_dot() (fixed HMA_GRAD_CHUNK blocks, OpenBLAS); the per-row
 * results are added in row order, so the result does not depend on the
 * thread count. `k` must equal hma_plan_group_count(plan); grad holds k doubles.
 * The tensors are streamed (memory-mapped, or read in blocks in pread
 * mode); nothing proportional to the model is allocated.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL, k wrong, a plan without exactly
 * 2 inputs, bad options), HMA_ERR_NOT_FOUND (no gradient for a row and
 * HMA_GRAD_ALLOW_MISSING not set), HMA_ERR_MISMATCH (gradient element count
 * or shape differs from the weights), HMA_ERR_UNSUPPORTED_DTYPE (a gradient
 * that is not F16/BF16/F32/F64), HMA_ERR_CALLBACK, HMA_ERR_CANCELLED,
 * HMA_ERR_THREAD, HMA_ERR_NO_MEMORY, and store read errors. On error grad is
 * untouched. Thread-safe with respect to the plan's thread-safe calls.
 */
HMA_API int hma_plan_group_gradients(const hma_plan *plan, hma_grad_fn fn, void *user,
                                     const hma_group_grad_options *opts, double *grad, size_t k);

/**
 * As hma_plan_group_gradients(), with the gradients read from a checkpoint
 * `grads` (e.g. a safetensors file of dL/dtheta saved by a training step):
 * the tensor of the same name as each row, same shape, float dtype.
 */
HMA_API int hma_plan_group_gradients_store(const hma_plan *plan, const hma_store *grads,
                                           const hma_group_grad_options *opts, double *grad,
                                           size_t k);

/** Optimizers for hma_ratio_opt. Values are stable (ABI). */
typedef enum hma_opt_method {
    HMA_OPT_SGD = 0, /* l -= lr * v, v = momentum * v + g (PyTorch SGD, no dampening) */
    HMA_OPT_ADAM = 1 /* PyTorch Adam with bias correction, no weight decay */
} hma_opt_method;

/**
 * Options of a ratio optimizer. Initialise with hma_ratio_opt_options_init()
 * (which sets struct_size), then change fields. struct_size follows the
 * rule of the conventions (an older, smaller struct is accepted).
 */
typedef struct hma_ratio_opt_options {
    size_t struct_size; /* sizeof(hma_ratio_opt_options) as compiled by the caller */
    hma_opt_method method; /* default HMA_OPT_ADAM */
    double lr;          /* learning rate; default 2e-5 (the paper's) */
    double mean;        /* the fixed mean a of the ratios; default 0.5 */
    double eps;         /* sigmoid eps; default HMA_RATIO_EPS_DEFAULT */
    double penalty;     /* lambda of lambda * sum_k |a_k - mean|; default 0 */
    double momentum;    /* SGD momentum; default 0 */
    double beta1;       /* Adam; default 0.9 */
    double beta2;       /* Adam; default 0.999 */
    double adam_eps;    /* Adam; default 1e-8 */
} hma_ratio_opt_options;

/**
 * The defaults above into the first min(size, sizeof) bytes of `o`,
 * struct_size set to that many (see "Options and stats structs" at the
 * top). NULL is a no-op. Thread-safe.
 */
HMA_API void hma_ratio_opt_options_init_size(hma_ratio_opt_options *o, size_t size);
/**
 * For C and C++ callers: initialise `o` (defaults, struct_size) at the
 * size this program was compiled with:
 *   hma_ratio_opt_options_init_size(o, sizeof *o).
 */
static inline void hma_ratio_opt_options_init(hma_ratio_opt_options *o) {
    hma_ratio_opt_options_init_size(o, sizeof *o);
}

/** Optimizer state for K logits (opaque). */
typedef struct hma_ratio_opt hma_ratio_opt;

/**
 * Create an optimizer for `k` logits starting at `logits0` (NULL = all zero,
 * i.e. all ratios equal to the mean). `opts` NULL = defaults. The options
 * are copied.
 * Ownership: *out is freed with hma_ratio_opt_free().
 * Errors: HMA_ERR_INVALID_ARGUMENT (k == 0, out NULL, struct_size below the
 * first version's or above this library's, unknown method,
 * lr/mean/penalty/betas/eps out of range or not finite, a non-finite
 * logit), HMA_ERR_NO_MEMORY. Thread-safe call; the handle is not
 * (one thread at a time per handle).
 */
HMA_API int hma_ratio_opt_create(hma_ratio_opt **out, size_t k, const double *logits0,
                                 const hma_ratio_opt_options *opts);

/** Free an optimizer; NULL is a no-op. */
HMA_API void hma_ratio_opt_free(hma_ratio_opt *opt);

/** Number of logits K of the optimizer (0 for NULL). */
HMA_API size_t hma_ratio_opt_k(const hma_ratio_opt *opt);

/** Number of steps taken so far (0 for NULL). */
HMA_API uint64_t hma_ratio_opt_steps(const hma_ratio_opt *opt);

/**
 * Current logits and/or ratios (either pointer may be NULL; each k doubles).
 * Errors: HMA_ERR_INVALID_ARGUMENT (opt NULL).
 */
HMA_API int hma_ratio_opt_get(const hma_ratio_opt *opt, double *logits, double *ratios);

/**
 * One step of the authors' method. `grad_ratios` holds dL/da_k for the
 * current ratios (e.g. from hma_group_gradients_*()). The step:
 *   1. g_a[k] = grad_ratios[k] + penalty * sign(a_k - mean)   (subgradient; 0 at a_k == mean)
 *   2. g_l = J^T g_a                                          (hma_logits_gradient())
 *   3. SGD:  v = momentum * v + g_l;  l -= lr * v    (v = g_l on the first step)
 *      Adam: m = b1 m + (1-b1) g_l;  v = b2 v + (1-b2) g_l^2;
 *            l -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + adam_eps)
 *   4. the new ratios from the new logits.
 * The new logits and ratios are written to `logits_out` / `ratios_out`
 * when not NULL. On error the state is unchanged.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL opt/grad),
 * HMA_ERR_NONFINITE (a gradient entry is NaN or infinite). Not thread-safe
 * on the same handle.
 */
HMA_API int hma_ratio_opt_step(hma_ratio_opt *opt, const double *grad_ratios, double *logits_out,
                               double *ratios_out);

/* ----------------------------------------------------------------------- */
/* 3. Derivative-free search over ratio vectors                            */
/* ----------------------------------------------------------------------- */

/**
 * Evaluation callback: score the ratio vector `ratios` (k entries, mean
 * and bounds already satisfied) and write `n_scores` scores to `scores`
 * (lower is better for the search; non-finite scores are recorded and
 * treated as the worst possible). Returns follow the callback rule of the
 * conventions: 0 goes on, HMA_CANCEL stops the search or sweep with
 * HMA_ERR_CANCELLED, any other value stops it with HMA_ERR_CALLBACK.
 * Called from the thread that called hma_search() / hma_sweep() only, one
 * call at a time.
 */
typedef int (*hma_eval_fn)(void *user, size_t k, const double *ratios, size_t n_scores,
                           double *scores);
/** Former name of HMA_CANCEL (same value). */
#define HMA_EVAL_CANCEL HMA_CANCEL

/** A list of evaluated points (ratios + scores), in evaluation order (opaque). */
typedef struct hma_points hma_points;

/** Where a point came from (see hma_points_info()). Values are stable. */
typedef enum hma_point_kind {
    HMA_POINT_SEARCH = 0, /* proposed by hma_search() */
    HMA_POINT_MA = 1,     /* plain MA (all ratios equal), from hma_sweep()'s ratio list */
    HMA_POINT_PRIOR = 2   /* copied from hma_search_options.prior, not evaluated again */
} hma_point_kind;

/**
 * Search options. Initialise with hma_search_options_init(), then set at
 * least `k` and `budget`. struct_size follows the rule of the conventions
 * (an older, smaller struct is accepted; fields added later go at the end).
 */
typedef struct hma_search_options {
    size_t struct_size;    /* sizeof(hma_search_options) as compiled by the caller */
    size_t k;              /* number of ratios K >= 1 */
    double mean;           /* required mean of the ratios; default 0.5 */
    double lo, hi;         /* bounds of every ratio; default 0 and 1 */
    const double *lo_each; /* optional: K lower bounds, override lo */
    const double *hi_each; /* optional: K upper bounds, override hi */
    size_t budget;         /* number of evaluations (callback calls); default 20 */
    uint64_t seed;         /* PRNG seed; default 0 */
    size_t n_scores;       /* scores per evaluation, >= 1; default 1 */
    const double *weights; /* n_scores weights of the minimised sum; NULL = all 1 */
    double tolerance;      /* two vectors within this (max norm) are the same; default 1e-6 */
    const double *start;   /* optional first vector to evaluate (projected onto the set); NULL = all `mean` */
    const hma_points *prior; /* optional points already evaluated (same k and n_scores):
                                those inside this search's set are used as if evaluated
                                (never re-evaluated, not counted in budget); others are ignored */
    /* -- added in version 2 of this struct (a caller's struct without it means batch 1) -- */
    size_t batch;          /* candidates proposed together, >= 1; default 1 (see hma_searcher_ask()) */
} hma_search_options;

/**
 * The defaults above into the first min(size, sizeof) bytes of `o`,
 * struct_size set to that many (see "Options and stats structs" at the
 * top). NULL is a no-op. Thread-safe.
 */
HMA_API void hma_search_options_init_size(hma_search_options *o, size_t size);
/**
 * For C and C++ callers: initialise `o` (defaults, struct_size) at the
 * size this program was compiled with:
 *   hma_search_options_init_size(o, sizeof *o).
 */
static inline void hma_search_options_init(hma_search_options *o) {
    hma_search_options_init_size(o, sizeof *o);
}

/**
 * Derivative-free minimisation of sum_s weights[s] * score_s over
 *   { a in R^K : (1/K) sum_k a_k = mean, lo_k <= a_k <= hi_k }
 * with at most `budget` evaluations. Method (docs/search.md): the centre
 * (or `start`), a maximin space-filling design, then trust-region steps on a
 * quadratic surrogate fitted by ridge-regularised least squares in the
 * (K-1)-dimensional subspace, every proposal projected exactly onto the set.
 * Every evaluated vector has |mean(a) - mean| <= 1e-12 * max(1, |mean|) and
 * respects the bounds exactly; no two evaluated vectors (prior points
 * included) are within `tolerance` of each other in max norm; the same
 * options, seed and scores give bit-identical proposals (own PRNG,
 * xoshiro256** seeded by splitmix64; only + - * / and sqrt, no FMA
 * contraction: gcc and clang builds agree bit for bit).
 * Exactly `budget` evaluations are made unless the set holds fewer distinct
 * vectors (e.g. lo == hi, or K == 1): then every distinct vector found is
 * evaluated once and the search ends early.
 * With `batch` B > 1 the candidates are proposed B at a time as by
 * hma_searcher_ask() and `fn` scores each batch's candidates one after the
 * other, in order: the points are those of the ask/tell handle with the same
 * options, however its batches are scored. batch 1 (the default) is the
 * serial search.
 *
 * Ownership: on HMA_OK, HMA_ERR_CANCELLED and HMA_ERR_CALLBACK, *out is a
 * new point list (prior points first, with kind HMA_POINT_PRIOR, then every
 * evaluation in order; on a callback stop the failed evaluation is not in
 * it) to free with hma_points_free(); on other errors *out is NULL.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL, k == 0, budget == 0, n_scores == 0,
 * struct_size below the first version's or above this library's, lo > hi,
 * sum of bounds excluding K*mean, bad tolerance, prior with another k or n_scores, non-finite value),
 * HMA_ERR_CANCELLED, HMA_ERR_CALLBACK, HMA_ERR_NO_MEMORY, HMA_ERR_OVERFLOW.
 * Thread-safe call (no shared state); `fn` is called on this thread.
 */
HMA_API int hma_search(const hma_search_options *opts, hma_eval_fn fn, void *user,
                       hma_points **out);

/**
 * The same search as an ask/tell handle, for callers that score candidates
 * elsewhere (other processes, MPI ranks, GPUs of a training stack) or
 * several at a time. hma_search() is a loop over this handle that scores
 * each batch's candidates in order with its callback, so for the same
 * options (seed and `batch` included) and the same scores both give
 * bit-identical points, whatever order or place the scores are computed in.
 *
 * Batches (docs/search.md): a batch is up to `batch` candidates proposed
 * from the same state, before any of their scores is known. The centre and
 * the space-filling design (which use no scores) are handed out `batch` at a
 * time; each trust-region step proposes the surrogate's minimiser plus up to
 * batch - 1 maximin space-filling points of the same trust region (of the
 * whole set if the region has no room left), and the step counts as a
 * success when any of them beats the best point. A batch never mixes the
 * design and the trust-region phase, so a batch may hold fewer candidates.
 * batch = 1 is exactly the serial search.
 *
 * Use: create; then repeat ask (n candidates), score them, tell (n score
 * rows) until ask gives n = 0; take the points; free.
 */
typedef struct hma_searcher hma_searcher;

/**
 * A searcher for `opts` (read as by hma_search(), struct_size rule included;
 * the options and the arrays they point to - bounds, weights, start, prior -
 * are read during this call only and need not outlive it; prior points
 * inside the set are copied into the point list first).
 * Ownership: *out is freed with hma_searcher_free().
 * Errors: as hma_search() (HMA_ERR_INVALID_ARGUMENT also for out NULL or
 * batch == 0), HMA_ERR_NO_MEMORY, HMA_ERR_OVERFLOW; *out NULL on error.
 * Thread-safe call; the handle is used by one thread at a time.
 */
HMA_API int hma_searcher_create(hma_searcher **out, const hma_search_options *opts);

/**
 * The next batch: writes n <= min(batch, budget) candidates, K ratios each
 * (row-major, n * K doubles), to `ratios` and n to *n. `max` is the room of
 * `ratios` in candidates and must be at least min(batch, budget). Every
 * candidate satisfies the mean, bounds and tolerance contract of
 * hma_search(), also against the other candidates of the batch.
 * *n = 0 (HMA_OK) when the search has ended: budget spent, or no distinct
 * vector left in the set; hma_searcher_done() is then nonzero.
 * After an ask that gave n > 0, hma_searcher_tell() must come before the
 * next ask.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL, max too small), HMA_ERR_STATE
 * (a batch is waiting for its scores), HMA_ERR_NO_MEMORY (the searcher has
 * then ended). Not thread-safe on the same handle.
 */
HMA_API int hma_searcher_ask(hma_searcher *s, double *ratios, size_t max, size_t *n);

/**
 * The scores of the last batch: `scores` holds n rows of n_scores scores,
 * row i for candidate i of the batch, in the order ask gave them (as
 * hma_eval_fn writes them: lower is better for the weighted sum, non-finite
 * scores are recorded and count as the worst). `n` must equal the batch's
 * size. The candidates join the point list in batch order.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL, n not the batch's size; the batch
 * still waits), HMA_ERR_STATE (no batch waiting), HMA_ERR_NO_MEMORY (the
 * batch still waits). Not thread-safe on the same handle.
 */
HMA_API int hma_searcher_tell(hma_searcher *s, const double *scores, size_t n);

/**
 * Nonzero once the search has ended (budget spent, or an ask found no
 * distinct vector left, or an ask failed with HMA_ERR_NO_MEMORY); 0 while
 * it goes on; 1 for NULL. Not thread-safe on the same handle.
 */
HMA_API int hma_searcher_done(const hma_searcher *s);

/**
 * A copy of the point list so far (prior points first, then every told
 * candidate in order; a batch still waiting for scores is not in it), as
 * hma_search() returns it. Ownership: *out is freed with hma_points_free().
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL), HMA_ERR_NO_MEMORY.
 */
HMA_API int hma_searcher_points(const hma_searcher *s, hma_points **out);

/** Free a searcher; NULL is a no-op. */
HMA_API void hma_searcher_free(hma_searcher *s);

/**
 * Exact Euclidean projection of y onto { sum a = k * mean, lo_k <= a_k <= hi_k }
 * (sort-based; lo/hi arrays of k). `out` may equal `y`. The result's mean
 * matches to 1e-12 * max(1, |mean|) (a final correction moves the rounding
 * residual onto coordinates strictly inside their bounds).
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL, k == 0, non-finite input,
 * lo_k > hi_k, or sum lo > k * mean or sum hi < k * mean), HMA_ERR_NO_MEMORY.
 * Thread-safe.
 */
HMA_API int hma_project_ratios(size_t k, const double *y, double mean, const double *lo,
                               const double *hi, double *out);

/** Number of points (0 for NULL). Thread-safe. */
HMA_API size_t hma_points_count(const hma_points *p);
/** Ratios per point K (0 for NULL). Thread-safe. */
HMA_API size_t hma_points_k(const hma_points *p);
/** Scores per point (0 for NULL). Thread-safe. */
HMA_API size_t hma_points_n_scores(const hma_points *p);
/** The K ratios of point i (owned by p), NULL if out of range. Thread-safe. */
HMA_API const double *hma_points_ratios(const hma_points *p, size_t i);
/** The n_scores scores of point i (owned by p), NULL if out of range. Thread-safe. */
HMA_API const double *hma_points_scores(const hma_points *p, size_t i);
/**
 * Where point i came from: *kind and *run (for hma_sweep():
 * the index into the MA ratio list or into the mean list; 0 for hma_search()).
 * Either pointer may be NULL. Errors: HMA_ERR_INVALID_ARGUMENT. Thread-safe.
 */
HMA_API int hma_points_info(const hma_points *p, size_t i, hma_point_kind *kind, size_t *run);
/**
 * Index of the best point: lowest weighted sum (the search's objective;
 * non-finite sums never win; ties go to the earliest point). Returns
 * HMA_NPOS when p is NULL, empty or no sum is finite. Thread-safe.
 */
HMA_API size_t hma_points_best(const hma_points *p);
/** Free a point list; NULL is a no-op. */
HMA_API void hma_points_free(hma_points *p);

/* ----------------------------------------------------------------------- */
/* 4. Pareto fronts and sweeps                                             */
/* ----------------------------------------------------------------------- */

/** Flags of hma_pareto_front(): by default both scores are lower-is-better. */
enum hma_pareto_flags {
    HMA_PARETO_MAX_X = 1u << 0, /* the first score is higher-is-better */
    HMA_PARETO_MAX_Y = 1u << 1  /* the second score is higher-is-better */
};

/**
 * The non-dominated points of n points (x[i], y[i]) (e.g. x = alignment
 * loss, y = forgetting). Point p dominates q when p is at least as good on
 * both scores and strictly better on one. Points with a NaN or infinite
 * score are never on the front. Exact duplicates (same x and y) are
 * listed once: the one with the lowest index. Writes the indices of the
 * front to idx (room for n) sorted by increasing x (the raw value, whatever
 * the flags), and their number to *n_front. Deterministic.
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL with n > 0, unknown flag),
 * HMA_ERR_NO_MEMORY. Thread-safe.
 */
HMA_API int hma_pareto_front(size_t n, const double *x, const double *y, unsigned flags,
                             size_t *idx, size_t *n_front);

/**
 * hma_pareto_front() over a point list, using scores number sx and sy of
 * each point (e.g. 0 and 1). idx needs room for hma_points_count(p).
 * Errors: HMA_ERR_INVALID_ARGUMENT (also sx or sy >= n_scores), HMA_ERR_NO_MEMORY.
 * Thread-safe.
 */
HMA_API int hma_points_pareto(const hma_points *p, size_t sx, size_t sy, unsigned flags,
                              size_t *idx, size_t *n_front);

/**
 * Options of hma_sweep(). Initialise with hma_sweep_options_init(), which
 * also initialises the embedded `search`. struct_size follows the rule of
 * the conventions; the embedded `search` is read by the same rule with its
 * own struct_size (fields it lacks take hma_search_options_init()'s
 * defaults), which must fit inside the caller's struct:
 *   offsetof(hma_sweep_options, search) + search.struct_size <= struct_size,
 * else HMA_ERR_INVALID_ARGUMENT. `search` stays the last member: this
 * struct grows only when hma_search_options does.
 */
typedef struct hma_sweep_options {
    size_t struct_size;         /* sizeof(hma_sweep_options) as compiled by the caller */
    const double *ma_ratios;    /* plain MA: each value a gives the vector (a, ..., a) */
    size_t n_ma;
    const double *hma_means;    /* one hma_search() per mean */
    size_t n_means;
    hma_search_options search;  /* template for every search: k, bounds, budget (per
                                   search), n_scores, weights, tolerance; mean, start
                                   and prior are ignored; run i uses seed + i */
} hma_sweep_options;

/**
 * Defaults (no ratios, no means, hma_search_options_init()'s for `search`)
 * into the first n = min(size, sizeof) bytes of `o`, struct_size set to n
 * (see "Options and stats structs" at the top) and search.struct_size to
 * the part of those n bytes that `search` covers,
 * n - offsetof(hma_sweep_options, search). NULL is a no-op. Thread-safe.
 */
HMA_API void hma_sweep_options_init_size(hma_sweep_options *o, size_t size);
/**
 * For C and C++ callers: initialise `o` (defaults, struct_size) at the
 * size this program was compiled with:
 *   hma_sweep_options_init_size(o, sizeof *o).
 */
static inline void hma_sweep_options_init(hma_sweep_options *o) {
    hma_sweep_options_init_size(o, sizeof *o);
}

/**
 * The alignment-forgetting sweep: evaluate plain MA at every ratio of
 * `ma_ratios` (kind HMA_POINT_MA, run = its index; a ratio outside the
 * bounds is still evaluated), then run hma_search() at every mean of
 * `hma_means` (kind HMA_POINT_SEARCH, run = its index). An MA ratio that
 * repeats an earlier one (within the tolerance) is not evaluated again and
 * leaves no point. Every point already
 * evaluated in this sweep that lies in a search's set is given to that
 * search as prior and not evaluated again (so the MA point at the same mean
 * is reused). All points come back in evaluation order in one list; take the
 * front with hma_points_pareto(*out, 0, 1, 0, ...).
 * Ownership, stops and errors: as hma_search() (on a callback stop *out
 * holds everything evaluated so far), the embedded search.struct_size
 * checked as described at hma_sweep_options. Thread-safe call.
 */
HMA_API int hma_sweep(const hma_sweep_options *opts, hma_eval_fn fn, void *user,
                      hma_points **out);

/* ======================================================================= */
/* Delta packs                                                             */
/* ======================================================================= */
/*
 * A pack is a lossless compressed copy of one safetensors file (the
 * "target"), optionally coded against a "base" checkpoint: typically the
 * model before RLHF, with the target one of its fine-tuned variants. Float
 * tensors are coded against the base tensor of the same name, dtype and
 * shape: BF16 and F16 (nearly all weights) as the difference of their
 * magnitudes, the length of each difference and the sign change
 * Huffman-coded (one code per chunk, offset by the base element's exponent)
 * and the remaining bits stored as they are, a layout that SIMD code decodes
 * at over 1 GB/s on one core; F32, F64 and C64 as the ordered-integer
 * difference with one Huffman code per exponent of the base element. When
 * the base has no such tensor, or there is no base, a float tensor's
 * exponent byte is Huffman-coded and the other bytes stored; other tensors
 * are zstd-compressed as they are. This build writes pack format version 3
 * and reads versions 2 and 3. Tensors are cut into chunks
 * (1 MiB by default) that decode in parallel, and any byte range decodes
 * alone. Every chunk carries an xxhash64 of its decoded bytes, and the pack
 * records an xxhash64 of the base it was made against, so wrong data is never
 * returned: a damaged pack gives HMA_ERR_CORRUPT (or HMA_ERR_TRUNCATED), and a
 * different base HMA_ERR_WRONG_BASE. The byte-level format is in
 * docs/pack-format.md.
 *
 * Lossless means byte for byte: unpacking gives back the original file,
 * header (JSON, padding, key order, metadata) included.
 *
 * Sharded checkpoints: a pack holds exactly one safetensors file. Pack each
 * shard on its own (with the same base) and copy model.safetensors.index.json
 * as it is; hma_pack_create() refuses an index file or a folder with
 * HMA_ERR_UNSUPPORTED.
 *
 * The base, where given, is any open store: a single file, a sharded
 * checkpoint or even another pack. Its checksum does not depend on its
 * layout (tensors are taken in name order), so a resharded copy of the same
 * weights is accepted as the same base.
 */

/** zstd level used when hma_pack_options.level is 0 (it applies to the zstd-coded, non-float chunks). */
#define HMA_PACK_DEFAULT_LEVEL 1
/** Raw bytes per chunk when hma_pack_options.chunk_size is 0 (1 MiB). */
#define HMA_PACK_DEFAULT_CHUNK (1u << 20)
/** Bounds of hma_pack_options.chunk_size (a multiple of 8 in between). */
#define HMA_PACK_MIN_CHUNK 4096u
#define HMA_PACK_MAX_CHUNK (64u << 20)

/**
 * Options of the pack functions. Initialise with hma_pack_options_init()
 * (which sets struct_size), then change the fields you need; fields may be
 * added at the end in later versions, and struct_size tells the library
 * which ones the caller knows (see "Options and stats structs" at the top).
 * Every field takes its default when 0, so any older, shorter struct is
 * accepted (the smallest holds struct_size alone).
 */
typedef struct hma_pack_options {
    size_t struct_size;  /* sizeof(hma_pack_options) as compiled by the caller, set by hma_pack_options_init() */
    int level;           /* zstd level of non-float chunks, ZSTD_minCLevel()..22; 0 = HMA_PACK_DEFAULT_LEVEL */
    unsigned threads;    /* worker threads; 0 = one per online CPU */
    uint64_t chunk_size; /* raw bytes per chunk (create only); 0 = HMA_PACK_DEFAULT_CHUNK */
} hma_pack_options;

/**
 * What a pack operation did (all fields filled on success, as far as the
 * caller's struct_size reaches). Initialise with hma_pack_stats_init().
 */
typedef struct hma_pack_stats {
    size_t struct_size;       /* sizeof(hma_pack_stats) as compiled by the caller, set by hma_pack_stats_init() */
    uint64_t raw_bytes;       /* size of the safetensors file (packed or restored) */
    uint64_t packed_bytes;    /* size of the pack file */
    uint64_t tensors;         /* tensors in the file */
    uint64_t tensors_on_base; /* tensors coded against the base */
    uint64_t chunks;          /* chunks coded or decoded */
    double seconds;           /* wall-clock time of the call */
} hma_pack_stats;

/**
 * Every option to its default (0) in the first min(size, sizeof) bytes of
 * `opt`, struct_size set to that many (see "Options and stats structs" at
 * the top). NULL is a no-op. Thread-safe.
 */
HMA_API void hma_pack_options_init_size(hma_pack_options *opt, size_t size);
/**
 * For C and C++ callers: initialise `opt` (defaults, struct_size) at the
 * size this program was compiled with:
 *   hma_pack_options_init_size(opt, sizeof *opt).
 */
static inline void hma_pack_options_init(hma_pack_options *opt) {
    hma_pack_options_init_size(opt, sizeof *opt);
}

/**
 * Zero the first min(size, sizeof) bytes of `stats`, struct_size set to
 * that many (see "Options and stats structs" at the top). NULL is a no-op.
 * Thread-safe.
 */
HMA_API void hma_pack_stats_init_size(hma_pack_stats *stats, size_t size);
/**
 * For C and C++ callers: initialise `stats` (defaults, struct_size) at the
 * size this program was compiled with:
 *   hma_pack_stats_init_size(stats, sizeof *stats).
 */
static inline void hma_pack_stats_init(hma_pack_stats *stats) {
    hma_pack_stats_init_size(stats, sizeof *stats);
}

/**
 * Pack the safetensors file `model_path` into a new pack file `out_path`,
 * coded against `base` when it is non-NULL (else standalone).
 *
 * A target tensor is coded against the base tensor of the same name when
 * both have the same dtype and shape and the dtype is a float one; otherwise
 * it is coded alone. The output is written atomically (a temporary file in
 * the destination folder, fsync, rename): on failure nothing appears under
 * `out_path`. The output bytes are the same whatever the thread count.
 * Memory: about 4 x chunk_size per thread, whatever the model size.
 *
 * Ownership: nothing is kept; `base` stays the caller's. `opt` may be NULL
 * (defaults); `stats` may be NULL (else initialised with
 * hma_pack_stats_init()).
 * Thread-safety: thread-safe (distinct calls share nothing; `base` is only
 * read).
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL path, bad level or chunk size,
 * opt->struct_size or stats->struct_size out of range), HMA_ERR_UNSUPPORTED (`model_path` is a folder or an
 * index file), every error of reading a safetensors file (HMA_ERR_NOT_FOUND,
 * HMA_ERR_IO, HMA_ERR_HEADER_SIZE ... HMA_ERR_OVERFLOW), errors of reading
 * `base` (HMA_ERR_IO, HMA_ERR_TRUNCATED, HMA_ERR_CORRUPT),
 * HMA_ERR_OVERWRITES_INPUT (`out_path` is a file open as an input, or
 * `model_path` itself), HMA_ERR_EXISTS (`out_path` is a folder),
 * HMA_ERR_THREAD, HMA_ERR_NO_MEMORY.
 */
HMA_API int hma_pack_create(const char *model_path, const hma_store *base, const char *out_path,
                            const hma_pack_options *opt, hma_pack_stats *stats);

/**
 * Open a pack as a store with the same API as hma_store_open()'s: names,
 * dtypes, shapes and metadata of the original file, in its data order.
 * hma_store_read() decodes only the chunks that cover the range asked for,
 * into the caller's buffer. By default (`flags` 0) hma_tensor_data()
 * decodes a tensor on first access into memory the store owns (kept until
 * hma_store_close()). The pack's index and the base's checksum are checked
 * before this returns (reading the whole base once, in `threads` threads;
 * 0 = one per online CPU); each chunk's checksum is checked whenever it is
 * decoded. The pack file itself is never memory-mapped: it is always read
 * with pread(2), so a pack truncated or rewritten under an open store gives
 * HMA_ERR_TRUNCATED, HMA_ERR_IO or HMA_ERR_CORRUPT, never a signal.
 *
 * `flags` are hma_open_flags. HMA_OPEN_PREAD means for a pack what it means
 * for hma_store_open(): tensor bytes are only read with hma_store_read(),
 * and hma_tensor_data() returns NULL for every tensor (not an error: see
 * hma_tensor_data_get()), so
 * the store never holds a decoded tensor and its memory stays a few chunk
 * buffers per reading thread whatever the model size.
 *
 * `base` must be the store the pack was made against when the pack has one
 * (else HMA_ERR_WRONG_BASE, with both checksums in the message); it is
 * ignored for a standalone pack and may be NULL. The caller must keep `base`
 * open until the pack store is closed.
 *
 * Ownership: on success *out is a new store; close it with hma_store_close().
 * Thread-safety: as any store (immutable; every read function may be called
 * from many threads at once, including the first hma_tensor_data() of a
 * tensor).
 * Errors: HMA_ERR_INVALID_ARGUMENT (NULL argument, unknown flag),
 * HMA_ERR_NOT_FOUND, HMA_ERR_IO, HMA_ERR_TRUNCATED (file shorter than its
 * header says), HMA_ERR_CORRUPT (bad magic, checksum, bounds or table),
 * HMA_ERR_UNSUPPORTED (a newer format version or flag), HMA_ERR_WRONG_BASE
 * (base missing or different), the safetensors header errors (the stored
 * header is re-validated), HMA_ERR_THREAD, HMA_ERR_NO_MEMORY.
 */
HMA_API int hma_pack_open(hma_store **out, const char *pack_path, const hma_store *base,
                          unsigned flags, unsigned threads);

/**
 * Restore the original safetensors file from a pack into `out_path`, byte
 * for byte, atomically (temporary file, fsync, rename; nothing under
 * `out_path` on failure). Chunks are decoded in parallel, and every chunk's
 * checksum is checked before its bytes are written. `opt` may be NULL
 * (only `threads` is used), `stats` may be NULL. Thread-safe (distinct
 * calls share nothing).
 * Errors: those of hma_pack_open(), plus HMA_ERR_OVERWRITES_INPUT
 * (`out_path` is open as an input, or is the pack itself), HMA_ERR_EXISTS
 * (`out_path` is a folder), HMA_ERR_IO.
 */
HMA_API int hma_pack_unpack(const char *pack_path, const hma_store *base, const char *out_path,
                            const hma_pack_options *opt, hma_pack_stats *stats);

/**
 * Check a pack: decode every chunk and check every checksum; when
 * `original_path` is non-NULL, also compare the restored bytes with that
 * file, byte for byte (HMA_ERR_MISMATCH with the first differing offset).
 * Writes nothing. `opt` may be NULL (only `threads` is used), `stats` may
 * be NULL. Thread-safe.
 * Errors: those of hma_pack_open(), plus HMA_ERR_MISMATCH, and HMA_ERR_IO /
 * HMA_ERR_NOT_FOUND for `original_path`.
 */
HMA_API int hma_pack_verify(const char *pack_path, const hma_store *base,
                            const char *original_path, const hma_pack_options *opt,
                            hma_pack_stats *stats);

/**
 * Whether the pack at `path` was made against a base (1) or standalone (0),
 * from its fixed header alone (checked: magic, header checksum, version).
 * Lets a program ask for a base only when one is needed. Thread-safe.
 * Errors: HMA_ERR_INVALID_ARGUMENT, HMA_ERR_NOT_FOUND, HMA_ERR_IO,
 * HMA_ERR_TRUNCATED, HMA_ERR_CORRUPT, HMA_ERR_UNSUPPORTED.
 */
HMA_API int hma_pack_needs_base(const char *path, int *needs_base);

#ifdef __cplusplus
}
#endif

#endif /* HMA_H */
