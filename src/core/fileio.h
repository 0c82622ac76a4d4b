/*
 * fileio.h - the platform layer for files: error strings, full pread/pwrite
 * loops, path helpers, temporary names and the one atomic-file object that
 * every writer of the library (safetensors writer, packs, ...) goes through.
 */
#ifndef HMA_CORE_FILEIO_H
#define HMA_CORE_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* Every temporary the library creates starts with this (hidden) prefix. */
#define HMA__TMP_PREFIX ".hma-tmp-"

/* strerror_r into buf (never NULL, never fails). */
const char *hma__errstr(int e, char *buf, size_t cap);

/* hma__fail(code, "PATH: WHAT: strerror(e)"); returns code. */
int hma__fail_errno(int code, int e, const char *path, const char *what);

/* Open a regular file read-only (O_CLOEXEC, no blocking on FIFOs) and fstat
 * it. HMA_ERR_NOT_FOUND (ENOENT/ENOTDIR), HMA_ERR_IO (other errors or not a
 * regular file), with the path in the message. */
int hma__open_read(const char *path, int *fd, struct stat *st);

/* Read exactly len bytes at off (EINTR and short reads retried).
 * HMA_ERR_TRUNCATED when the file ends first, HMA_ERR_IO, HMA_ERR_OVERFLOW. */
int hma__pread_full(int fd, const char *path, void *buf, size_t len, uint64_t off);

/* Read up to len bytes at off, stopping at end of file; *got = bytes read.
 * HMA_OK or HMA_ERR_IO / HMA_ERR_OVERFLOW. */
int hma__pread_upto(int fd, const char *path, void *buf, size_t len, uint64_t off, size_t *got);

/* Write all len bytes at off (EINTR and short writes retried; a write that
 * accepts 0 bytes is an error). HMA_OK or HMA_ERR_IO / HMA_ERR_OVERFLOW. */
int hma__pwrite_full(int fd, const char *path, const void *buf, size_t len, uint64_t off);

/* fsync, retried on EINTR: 0 or an errno. */
int hma__fsync_fd(int fd);

/* fsync a folder so creations and renames in it are durable. Filesystems
 * that cannot sync folders (EINVAL, ENOTSUP) are not an error. */
int hma__fsync_dir(const char *dir);

/* dir + "/" + name with dir's trailing slashes dropped ("/" stays "/"; an
 * empty dir gives name). NULL on overflow or out of memory (no message). */
char *hma__path_join(const char *dir, const char *name);

/* The folder part of path ("." when there is none, "/" for "/x"). NULL on OOM. */
char *hma__path_dir(const char *path);

/* The last component of path (a pointer into it). */
const char *hma__path_base(const char *path);

int hma__ends_with(const char *s, const char *suffix);

/*
 * Create a new temporary file in `dir`, named
 * ".hma-tmp-h<host hash>-<pid>-<random>", mode 0644, opened read-write.
 * It does not sweep: hma__afile_open() sweeps the folder before it creates one.
 * On success *path (malloc'd) and *fd are set. HMA_ERR_IO, HMA_ERR_NO_MEMORY.
 */
int hma__tmp_create(const char *dir, char **path, int *fd);

/*
 * Remove the temporaries in `dir` left by dead processes of this machine
 * (pid no longer exists; host hash equal to ours, so on a shared filesystem
 * another machine's temporaries are never touched). Best effort: errors are
 * ignored. Returns the number removed.
 */
size_t hma__tmp_sweep(const char *dir);

/*
 * The atomic file: the bytes go to a temporary in the target's folder, which
 * replaces the target only when complete and durable.
 *   hma__afile_open    refuse a folder (HMA_ERR_EXISTS) and a target that is
 *                      one of `inputs` or open as an input anywhere in this
 *                      process (HMA_ERR_OVERWRITES_INPUT); sweep stale
 *                      temporaries; create the temporary (f->fd, f->tmp).
 *   hma__afile_sync    fsync and close the temporary.
 *   hma__afile_publish re-check the target against open inputs, rename.
 *   hma__afile_commit  sync + publish + fsync the folder (one file).
 *   hma__afile_discard remove the temporary if it still exists, free all;
 *                      safe on a zeroed object and after commit.
 * A set of files (shards + index) calls sync on each, publish on each (index
 * last), then hma__fsync_dir() once.
 */
typedef struct hma__afile {
    char *final; /* target path */
    char *tmp;   /* temporary path; NULL once renamed */
    char *dir;   /* target's folder */
    int fd;      /* -1 when closed */
} hma__afile;

/*
 * Undo support for a set of renames (the writer's commit): before a file at
 * `path` is replaced or removed, hma__backup_link() hard-links it under a
 * temporary name "<stem>-old-<i>-<n>" in `dir` (stem: the base name of one
 * of our own temporaries, so the backup is unique to this process and swept
 * like a temporary if the process dies). *backup is NULL when the filesystem
 * has no hard links (the step then cannot be undone; not an error).
 * hma__backup_restore() puts the backup back at `path` (0, or an errno) and
 * frees *backup on success. Every rename into place of the library is
 * hma__afile_publish() or hma__backup_restore(), both here.
 */
int hma__backup_link(const char *path, const char *dir, const char *stem, size_t i, char **backup);
int hma__backup_restore(char **backup, const char *path);

/* Checks of hma__afile_open alone (no file created). */
int hma__afile_check_target(const char *path, const char *const *inputs, size_t n_inputs);
int hma__afile_open(hma__afile *f, const char *path, const char *const *inputs, size_t n_inputs);
int hma__afile_sync(hma__afile *f);
int hma__afile_publish(hma__afile *f);
int hma__afile_commit(hma__afile *f);
void hma__afile_discard(hma__afile *f);

#endif
