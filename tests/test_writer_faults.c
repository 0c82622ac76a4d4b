/* The writer under faults: a full disk (EFBIG via RLIMIT_FSIZE), a process
 * killed mid-write, abandoned writers, failing rename/fsync. The rule under
 * test: nothing ever appears under a final name unless commit succeeded,
 * an old file stays intact until then, and temporaries are cleaned up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hma.h"
#include "testutil.h"

/* ---- fault injection: this executable's rename() and fsync() take the
 * place of libc's for libhma (the dynamic linker binds the library's calls
 * to the executable's definitions first). ------------------------------- */

static int rename_fail_at;   /* fail the Nth rename from now (0 = never) */
static int rename_calls;
static int fsync_fail_files; /* fail fsync of regular files */
static int fsync_fail_dirs;  /* fail fsync of folders */

int rename(const char *from, const char *to) {
    if (rename_fail_at && ++rename_calls == rename_fail_at) {
        errno = EIO;
        return -1;
    }
    return renameat(AT_FDCWD, from, AT_FDCWD, to);
}

int fsync(int fd) {
    struct stat st;
    if (fstat(fd, &st) == 0 &&
        ((S_ISDIR(st.st_mode) && fsync_fail_dirs) || (S_ISREG(st.st_mode) && fsync_fail_files))) {
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_fsync, fd);
}

static void reset_faults(void) {
    rename_fail_at = rename_calls = 0;
    fsync_fail_files = fsync_fail_dirs = 0;
}

/* ---- helpers ------------------------------------------------------------- */

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)((i * 131u + seed * 7u + (i >> 8)) & 0xff);
}

/* Write tensors "a" and "b" (U8, n bytes each, contents from seed) to path. */
static int write_ab(const char *path, uint64_t shard, size_t n, unsigned seed) {
    unsigned char *buf = malloc(n);
    assert_non_null(buf);
    hma_writer *w = NULL;
    int rc = hma_writer_create(&w, path, shard);
    uint64_t shape[1] = {n};
    if (!rc) rc = hma_writer_add_tensor(w, "a", HMA_DTYPE_U8, 1, shape);
    if (!rc) rc = hma_writer_add_tensor(w, "b", HMA_DTYPE_U8, 1, shape);
    if (!rc) rc = hma_writer_begin(w);
    for (size_t i = 0; i < 2 && !rc; i++) {
        fill(buf, n, seed + (unsigned)i);
        rc = hma_writer_write(w, i, 0, buf, n);
    }
    if (!rc) rc = hma_writer_commit(w);
    hma_writer_free(w);
    free(buf);
    return rc;
}

/* 1 if the file holds exactly `want`. */
static int file_equals(const char *path, const unsigned char *want, size_t n) {
    size_t l;
    unsigned char *f = tu_read_file(path, &l);
    int ok = f && l == n && memcmp(f, want, n) == 0;
    free(f);
    return ok;
}

static unsigned char *slurp(const char *path, size_t *n) {
    unsigned char *f = tu_read_file(path, n);
    assert_non_null(f);
    return f;
}

/* ---- a full disk ------------------------------------------------------------ */

/* In a child (the file size limit cannot be raised again): a write that
 * crosses RLIMIT_FSIZE fails with EFBIG -> HMA_ERR_IO, the writer is failed,
 * and neither a final file nor a temporary remains. Exit code 0 = as
 * expected, otherwise the number of the failed check. */
static int efbig_child(const char *dir) {
    char *path = tu_join(dir, "out.safetensors");
    enum { N = 1 << 20, CHUNK = 16384 };
    unsigned char *buf = calloc(1, CHUNK);
    hma_writer *w = NULL;
    int code = 0;
    signal(SIGXFSZ, SIG_IGN);
    if (hma_writer_create(&w, path, 0) || hma_writer_add_tensor(w, "big.weight", HMA_DTYPE_U8, 1, (uint64_t[]){N}) ||
        hma_writer_begin(w)) {
        code = 1;
        goto out;
    }
    struct rlimit rl = {65536, 65536};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) {
        code = 2;
        goto out;
    }
    int rc = HMA_OK;
    size_t ok_chunks = 0;
    for (size_t off = 0; off < N && rc == HMA_OK; off += CHUNK) {
        rc = hma_writer_write(w, 0, off, buf, CHUNK);
        if (rc == HMA_OK) ok_chunks++;
    }
    if (rc != HMA_ERR_IO || ok_chunks == 0) code = 3; /* fails mid-way, not at once */
    else if (!strstr(hma_last_error(), "File too large") || !strstr(hma_last_error(), "big.weight") ||
             !strstr(hma_last_error(), "out.safetensors"))
        code = 4;
    /* a later write reports the first failure again (its code and cause) */
    else if (hma_writer_write(w, 0, 0, buf, 1) != HMA_ERR_IO || !strstr(hma_last_error(), "File too large")) code = 5;
    else if (hma_writer_commit(w) != HMA_ERR_IO) code = 6;
    else if (access(path, F_OK) == 0) code = 7;
    else if (tu_has_entry_prefix(dir, ".hma-tmp-")) code = 8;
    hma_writer_free(w);
    w = NULL;
    /* Over the limit already at begin: the preallocation fails there. */
    if (!code) {
        if (hma_writer_create(&w, path, 0) || hma_writer_add_tensor(w, "big.weight", HMA_DTYPE_U8, 1, (uint64_t[]){N}))
            code = 9;
        else if (hma_writer_begin(w) != HMA_ERR_IO) code = 10;
        else if (tu_has_entry_prefix(dir, ".hma-tmp-") || access(path, F_OK) == 0) code = 11;
    }
out:
    hma_writer_free(w);
    free(buf);
    free(path);
    return code;
}

static void efbig_mid_write_leaves_nothing(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(efbig_child(dir));
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(tu_count_entries(dir), 0);
    tu_rmtree(dir);
    free(dir);
}

/* ---- a crash mid-write -------------------------------------------------------- */

static void killed_mid_write_leaves_nothing_final(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *path = tu_join(dir, "model.safetensors");
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        static unsigned char buf[4096];
        hma_writer *w = NULL;
        if (hma_writer_create(&w, path, 0) || hma_writer_add_tensor(w, "w", HMA_DTYPE_U8, 1, (uint64_t[]){8192}) ||
            hma_writer_begin(w) || hma_writer_write(w, 0, 0, buf, sizeof buf))
            _exit(1);
        if (write(fds[1], "r", 1) != 1) _exit(2);
        for (;;) pause(); /* half written: wait to be killed */
    }
    close(fds[1]);
    char c = 0;
    assert_int_equal(read(fds[0], &c, 1), 1);
    close(fds[0]);
    assert_true(tu_has_entry_prefix(dir, ".hma-tmp-")); /* the work in progress */
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    /* The final name never appeared; only the hidden temporary is left. */
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(tu_count_entries(dir), 1);
    assert_true(tu_has_entry_prefix(dir, ".hma-tmp-"));
    free(path);
    tu_rmtree(dir);
    free(dir);
}

/* ---- abandon and replace ------------------------------------------------------ */

static void abandon_removes_temporaries_and_keeps_old_file(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *path = tu_join(dir, "m.safetensors");
    /* Nothing there before: abandoning leaves the folder empty. */
    hma_writer *w = NULL;
    unsigned char buf[64] = {1};
    assert_int_equal(hma_writer_create(&w, path, 0), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "a", HMA_DTYPE_U8, 1, (uint64_t[]){64}), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    assert_int_equal(tu_count_entries(dir), 1);
    assert_int_equal(hma_writer_write(w, 0, 0, buf, 64), HMA_OK);
    hma_writer_free(w);
    assert_int_equal(tu_count_entries(dir), 0);

    /* An old file stays byte-identical through begin, writes and abandon,
     * and is replaced only by commit. */
    assert_int_equal(write_ab(path, 0, 100, 1), HMA_OK);
    size_t n_old;
    unsigned char *old = slurp(path, &n_old);
    unsigned char v2[100];
    for (int round = 0; round < 2; round++) {
        assert_int_equal(hma_writer_create(&w, path, 0), HMA_OK);
        assert_int_equal(hma_writer_add_tensor(w, "a", HMA_DTYPE_U8, 1, (uint64_t[]){100}), HMA_OK);
        assert_int_equal(hma_writer_add_tensor(w, "b", HMA_DTYPE_U8, 1, (uint64_t[]){100}), HMA_OK);
        assert_int_equal(hma_writer_begin(w), HMA_OK);
        assert_true(file_equals(path, old, n_old));
        for (size_t i = 0; i < 2; i++) {
            fill(v2, sizeof v2, 50u + (unsigned)i);
            assert_int_equal(hma_writer_write(w, i, 0, v2, sizeof v2), HMA_OK);
        }
        assert_true(file_equals(path, old, n_old));
        if (round == 0) {
            hma_writer_free(w); /* abandoned */
            assert_true(file_equals(path, old, n_old));
            assert_int_equal(tu_count_entries(dir), 1);
        } else {
            assert_int_equal(hma_writer_commit(w), HMA_OK);
            hma_writer_free(w);
            assert_false(file_equals(path, old, n_old));
            size_t n_new;
            unsigned char *now = slurp(path, &n_new);
            assert_int_equal(n_new, n_old);
            fill(v2, sizeof v2, 51);
            assert_memory_equal(now + n_new - 100, v2, 100);
            free(now);
            assert_int_equal(tu_count_entries(dir), 1);
        }
    }
    free(old);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

/* ---- failing rename and fsync -------------------------------------------------- */

typedef struct snapshot {
    const char *name;
    unsigned char *bytes;
    size_t n;
} snapshot;

static void take(const char *dir, snapshot *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char *p = tu_join(dir, s[i].name);
        s[i].bytes = slurp(p, &s[i].n);
        free(p);
    }
}

static void check_unchanged(const char *dir, snapshot *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char *p = tu_join(dir, s[i].name);
        if (!file_equals(p, s[i].bytes, s[i].n)) fail_msg("%s changed by a failed commit", s[i].name);
        free(p);
    }
    assert_int_equal(tu_count_entries(dir), (int)n);
}

static void release(snapshot *s, size_t n) {
    for (size_t i = 0; i < n; i++) free(s[i].bytes);
}

static void failed_renames_are_undone(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *folder = tu_join(dir, "ckpt");
    /* v1: two shards and an index. */
    assert_int_equal(write_ab(folder, 100, 100, 1), HMA_OK);
    snapshot s[3] = {{"model-00001-of-00002.safetensors", NULL, 0},
                     {"model-00002-of-00002.safetensors", NULL, 0},
                     {"model.safetensors.index.json", NULL, 0}};
    take(folder, s, 3);
    /* A v2 commit whose 2nd, then 3rd (the index) rename fails: the shards
     * already renamed are put back, nothing else is left behind. */
    for (int at = 1; at <= 3; at++) {
        reset_faults();
        rename_fail_at = at;
        assert_int_equal(write_ab(folder, 100, 100, 2), HMA_ERR_IO);
        reset_faults();
        check_unchanged(folder, s, 3);
    }
    /* With no old output, a failed rename leaves no shard and removes the
     * folder begin created. */
    char *fresh = tu_join(dir, "fresh");
    rename_fail_at = 3;
    assert_int_equal(write_ab(fresh, 100, 100, 2), HMA_ERR_IO);
    assert_non_null(strstr(hma_last_error(), "model.safetensors.index.json"));
    reset_faults();
    assert_int_not_equal(access(fresh, F_OK), 0);
    /* Without faults the same commit goes through. */
    assert_int_equal(write_ab(folder, 100, 100, 2), HMA_OK);
    assert_int_equal(tu_count_entries(folder), 3);
    char *p = tu_join(folder, s[0].name);
    assert_false(file_equals(p, s[0].bytes, s[0].n));
    free(p);
    release(s, 3);
    free(fresh);
    free(folder);
    tu_rmtree(dir);
    free(dir);
}

static void failed_fsyncs_change_nothing(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *path = tu_join(dir, "m.safetensors");
    assert_int_equal(write_ab(path, 0, 64, 1), HMA_OK);
    snapshot s[1] = {{"m.safetensors", NULL, 0}};
    take(dir, s, 1);
    fsync_fail_files = 1;
    assert_int_equal(write_ab(path, 0, 64, 2), HMA_ERR_IO);
    assert_non_null(strstr(hma_last_error(), "m.safetensors"));
    reset_faults();
    check_unchanged(dir, s, 1);
    /* The folder fsync comes after the rename: the rename is undone. */
    fsync_fail_dirs = 1;
    assert_int_equal(write_ab(path, 0, 64, 2), HMA_ERR_IO);
    reset_faults();
    check_unchanged(dir, s, 1);
    release(s, 1);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(efbig_mid_write_leaves_nothing),
        cmocka_unit_test(killed_mid_write_leaves_nothing_final),
        cmocka_unit_test(abandon_removes_temporaries_and_keeps_old_file),
        cmocka_unit_test(failed_renames_are_undone),
        cmocka_unit_test(failed_fsyncs_change_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
