/* fileio.c - the platform layer for files (errors, I/O loops, paths, temporaries, atomic file). */
#include "core/fileio.h"
#include "core/hash.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *hma__errstr(int e, char *buf, size_t cap) {
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(e, buf, cap);
#else
    if (strerror_r(e, buf, cap) != 0) snprintf(buf, cap, "errno %d", e);
    return buf;
#endif
}

int hma__fail_errno(int code, int e, const char *path, const char *what) {
    char eb[128];
    return hma__fail(code, "%.400s: %s: %s", path, what, hma__errstr(e, eb, sizeof eb));
}

int hma__open_read(const char *path, int *fd_out, struct stat *st) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        return hma__fail_errno(e == ENOENT || e == ENOTDIR ? HMA_ERR_NOT_FOUND : HMA_ERR_IO, e, path,
                               "cannot open");
    }
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        return hma__fail_errno(HMA_ERR_IO, e, path, "cannot stat");
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return hma__fail(HMA_ERR_IO, "%.400s: not a regular file", path);
    }
    *fd_out = fd;
    return HMA_OK;
}

int hma__pread_upto(int fd, const char *path, void *buf, size_t len, uint64_t off, size_t *got) {
    size_t done = 0;
    while (done < len) {
        if (off + done > (uint64_t)INT64_MAX) return hma__fail(HMA_ERR_OVERFLOW, "%.400s: offset overflow", path);
        ssize_t r = pread(fd, (unsigned char *)buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return hma__fail_errno(HMA_ERR_IO, errno, path, "read");
        }
        if (r == 0) break;
        done += (size_t)r;
    }
    *got = done;
    return HMA_OK;
}

int hma__pread_full(int fd, const char *path, void *buf, size_t len, uint64_t off) {
    size_t got;
    int rc = hma__pread_upto(fd, path, buf, len, off, &got);
    if (rc) return rc;
    if (got < len)
        return hma__fail(HMA_ERR_TRUNCATED, "%.400s: file ends at byte %llu (expected %zu more bytes)", path,
                         (unsigned long long)(off + got), len - got);
    return HMA_OK;
}

int hma__pwrite_full(int fd, const char *path, const void *buf, size_t len, uint64_t off) {
    const unsigned char *p = buf;
    while (len) {
        if (off > (uint64_t)INT64_MAX) return hma__fail(HMA_ERR_OVERFLOW, "%.400s: offset overflow", path);
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        ssize_t n = pwrite(fd, p, chunk, (off_t)off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return hma__fail_errno(HMA_ERR_IO, errno, path, "write");
        }
        if (n == 0) return hma__fail_errno(HMA_ERR_IO, EIO, path, "write accepted 0 bytes");
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return HMA_OK;
}

int hma__fsync_fd(int fd) {
    while (fsync(fd) != 0) {
        if (errno != EINTR) return errno;
    }
    return 0;
}

int hma__fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return hma__fail_errno(HMA_ERR_IO, errno, dir, "open folder to fsync");
    int e = hma__fsync_fd(fd);
    close(fd);
    if (e && e != EINVAL && e != ENOTSUP) return hma__fail_errno(HMA_ERR_IO, e, dir, "fsync folder");
    return HMA_OK;
}

char *hma__path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    while (a > 1 && dir[a - 1] == '/') a--;
    if (a == 0) return hma__strdup(name);
    int sep = !(a == 1 && dir[0] == '/');
    if (a > SIZE_MAX - b - 2) return NULL;
    char *p = hma__malloc(a + (size_t)sep + b + 1);
    if (!p) return NULL;
    memcpy(p, dir, a);
    if (sep) p[a] = '/';
    memcpy(p + a + (size_t)sep, name, b + 1);
    return p;
}

char *hma__path_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return hma__strdup(".");
    size_t n = (size_t)(slash - path);
    return hma__strndup(path, n ? n : 1);
}

const char *hma__path_base(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int hma__ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

/* ---- temporaries -------------------------------------------------------- */

/* 8 hex digits naming this machine, so that a sweep never touches another
 * machine's temporaries on a shared filesystem (their pids mean nothing here). */
static void host_tag(char out[9]) {
    char host[256];
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = 0;
    snprintf(out, 9, "%08x", (unsigned)(hma__hash_bytes(host, strlen(host)) & 0xffffffffu));
}

size_t hma__tmp_sweep(const char *dir) {
    char tag[9], prefix[64];
    host_tag(tag);
    int plen = snprintf(prefix, sizeof prefix, HMA__TMP_PREFIX "h%s-", tag);
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t removed = 0;
    pid_t self = getpid();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, (size_t)plen) != 0) continue;
        const char *p = e->d_name + plen;
        long pid = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 10) pid = pid * 10 + (*p++ - '0'), digits++;
        if (!digits || *p != '-' || pid <= 0 || (pid_t)pid == self) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0) removed++;
    }
    closedir(d);
    return removed;
}

static atomic_uint_fast64_t g_tmp_counter;

int hma__tmp_create(const char *dir, char **path_out, int *fd_out) {
    char tag[9];
    host_tag(tag);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)&ts;
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t x = seed + 0x9e3779b97f4a7c15ull * (atomic_fetch_add(&g_tmp_counter, 1) + 1);
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        x ^= x >> 31;
        char name[96];
        snprintf(name, sizeof name, HMA__TMP_PREFIX "h%s-%ld-%016llx", tag, (long)getpid(), (unsigned long long)x);
        char *p = hma__path_join(dir, name);
        if (!p) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory for a temporary name", dir);
        int fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd >= 0) {
            *path_out = p;
            *fd_out = fd;
            return HMA_OK;
        }
        int e = errno;
        if (e != EEXIST) {
            int rc = hma__fail_errno(HMA_ERR_IO, e, p, "create temporary file");
            hma__free(p);
            return rc;
        }
        hma__free(p);
    }
    return hma__fail(HMA_ERR_IO, "%.400s: could not find a free temporary name", dir);
}

/* ---- atomic file ---------------------------------------------------------- */

int hma__afile_check_target(const char *path, const char *const *inputs, size_t n_inputs) {
    struct stat sb, ib;
    if (stat(path, &sb) != 0) return HMA_OK;
    if (S_ISDIR(sb.st_mode)) return hma__fail(HMA_ERR_EXISTS, "%.400s: is a folder (expected a file name)", path);
    for (size_t i = 0; i < n_inputs; i++)
        if (inputs[i] && stat(inputs[i], &ib) == 0 && ib.st_dev == sb.st_dev && ib.st_ino == sb.st_ino)
            return hma__fail(HMA_ERR_OVERWRITES_INPUT, "%.400s: is the input %.400s (write elsewhere)", path,
                             inputs[i]);
    if (hma__registry_contains_path(path))
        return hma__fail(HMA_ERR_OVERWRITES_INPUT, "%.400s: is open as an input (close it or write elsewhere)",
                         path);
    return HMA_OK;
}

int hma__afile_open(hma__afile *f, const char *path, const char *const *inputs, size_t n_inputs) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    int rc = hma__afile_check_target(path, inputs, n_inputs);
    if (rc) return rc;
    f->final = hma__strdup(path);
    f->dir = hma__path_dir(path);
    if (!f->final || !f->dir) {
        hma__afile_discard(f);
        return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
    }
    hma__tmp_sweep(f->dir);
    rc = hma__tmp_create(f->dir, &f->tmp, &f->fd);
    if (rc) hma__afile_discard(f);
    return rc;
}

int hma__afile_sync(hma__afile *f) {
    if (f->fd < 0) return HMA_OK;
    int e = hma__fsync_fd(f->fd);
    if (e) return hma__fail_errno(HMA_ERR_IO, e, f->tmp, "fsync");
    int fd = f->fd;
    f->fd = -1;
    if (close(fd) != 0) return hma__fail_errno(HMA_ERR_IO, errno, f->tmp, "close");
    return HMA_OK;
}

int hma__afile_publish(hma__afile *f) {
    if (hma__registry_contains_path(f->final))
        return hma__fail(HMA_ERR_OVERWRITES_INPUT, "%.400s: is open as an input (close it or write elsewhere)",
                         f->final);
    if (rename(f->tmp, f->final) != 0) return hma__fail_errno(HMA_ERR_IO, errno, f->final, "rename");
    hma__free(f->tmp);
    f->tmp = NULL;
    return HMA_OK;
}

int hma__backup_link(const char *path, const char *dir, const char *stem, size_t i, char **backup) {
    *backup = NULL;
    char name[160];
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(name, sizeof name, "%s-old-%zu-%d", stem, i, attempt);
        char *bp = hma__path_join(dir, name);
        if (!bp) return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", path);
        if (link(path, bp) == 0) {
            *backup = bp;
            return HMA_OK;
        }
        int e = errno;
        hma__free(bp);
        if (e != EEXIST) break;
    }
    return HMA_OK;
}

int hma__backup_restore(char **backup, const char *path) {
    if (rename(*backup, path) != 0) return errno;
    hma__free(*backup);
    *backup = NULL;
    return 0;
}

int hma__afile_commit(hma__afile *f) {
    int rc = hma__afile_sync(f);
    if (!rc) rc = hma__afile_publish(f);
    if (!rc) rc = hma__fsync_dir(f->dir);
    return rc;
}

void hma__afile_discard(hma__afile *f) {
    if (f->fd >= 0) close(f->fd);
    if (f->tmp) unlink(f->tmp);
    hma__free(f->tmp);
    hma__free(f->final);
    hma__free(f->dir);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}
