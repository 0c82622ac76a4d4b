/* Fault injection around whole merges: writes failing with ENOSPC / EIO,
 * fsync failing, the real `hma` program hitting RLIMIT_FSIZE (EFBIG), inputs
 * truncated or rewritten during a pread-mode merge, and every allocation the
 * library makes failing in turn. The rules under test: the exact error code,
 * a message naming the file (and tensor), nothing under the final name, no
 * temporaries, nothing leaked, never a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hma.h"
#include "plan_fixture.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HMA_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define HMA_TEST_SANITIZED 1
#endif
#endif

/* ---- interposed I/O: this executable's pwrite/fsync/pread take the place of
 * libc's for libhma (the dynamic linker binds the library's calls to the
 * executable's definitions first). Counters count calls since the last
 * io_reset(). ------------------------------------------------------------ */

static atomic_int pwrite_calls, pwrite_fail_at, pwrite_errno;
static atomic_int fsync_fail, fsync_noop;
static atomic_int pread_calls;
/* pread gate: once `gate_after_pwrites` data writes happened, the next pread
 * waits until gate_open (set by the progress callback), at most 10 s. */
static atomic_int gate_after_pwrites, gate_open, gate_waited;

static void io_reset(void) {
    atomic_store(&pwrite_calls, 0);
    atomic_store(&pwrite_fail_at, 0);
    atomic_store(&pwrite_errno, 0);
    atomic_store(&fsync_fail, 0);
    atomic_store(&fsync_noop, 0);
    atomic_store(&pread_calls, 0);
    atomic_store(&gate_after_pwrites, 0);
    atomic_store(&gate_open, 0);
    atomic_store(&gate_waited, 0);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    int k = atomic_fetch_add(&pwrite_calls, 1) + 1;
    int at = atomic_load(&pwrite_fail_at);
    if (at && k >= at) { /* the disk stays full once it is full */
        errno = atomic_load(&pwrite_errno);
        return -1;
    }
    return (ssize_t)syscall(SYS_pwrite64, fd, buf, n, off);
}

int fsync(int fd) {
    if (atomic_load(&fsync_fail)) {
        errno = EIO;
        return -1;
    }
    if (atomic_load(&fsync_noop)) return 0; /* speed: the OOM loop writes hundreds of files */
    return (int)syscall(SYS_fsync, fd);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off) {
    atomic_fetch_add(&pread_calls, 1);
    int g = atomic_load(&gate_after_pwrites);
    if (g && atomic_load(&pwrite_calls) >= g && !atomic_load(&gate_open) && !atomic_exchange(&gate_waited, 1)) {
        for (int i = 0; i < 10000 && !atomic_load(&gate_open); i++) nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    return (ssize_t)syscall(SYS_pread64, fd, buf, n, off);
}

/* ---- interposed allocation (not under sanitizers, which own malloc) ------
 * Counts only calls made from inside libhma (by return address) while armed;
 * fails the Nth; remembers the library's live blocks to find leaks. */

#ifndef HMA_TEST_SANITIZED
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

/* Mapped text of libhma and of libzstd (whose allocations libhma asks for). */
static uintptr_t lib_lo[2], lib_hi[2];
static atomic_int oom_armed, oom_calls, oom_fail_at, oom_hit;
static void *_Atomic oom_hit_from; /* return address of the failed call */
enum { LIVE_CAP = 1 << 16 };
static void *live[LIVE_CAP]; /* open addressing; (void *)1 = deleted */
static size_t live_n;
static int live_overflow;
static atomic_flag live_lock = ATOMIC_FLAG_INIT;

static void lk(void) { while (atomic_flag_test_and_set_explicit(&live_lock, memory_order_acquire)) {} }
static void unlk(void) { atomic_flag_clear_explicit(&live_lock, memory_order_release); }
static size_t slot(void *p) { return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull) & (LIVE_CAP - 1); }

static void live_add(void *p) {
    lk();
    if (live_n >= LIVE_CAP / 2) live_overflow = 1;
    else {
        size_t s = slot(p);
        while (live[s] && live[s] != (void *)1) s = (s + 1) & (LIVE_CAP - 1);
        live[s] = p;
        live_n++;
    }
    unlk();
}

static void live_del(void *p) {
    lk();
    if (live_n) {
        size_t s = slot(p);
        while (live[s]) {
            if (live[s] == p) {
                live[s] = (void *)1;
                live_n--;
                break;
            }
            s = (s + 1) & (LIVE_CAP - 1);
        }
    }
    unlk();
}

static void live_clear(void) {
    lk();
    memset(live, 0, sizeof live);
    live_n = 0;
    live_overflow = 0;
    unlk();
}

/* 1: this call comes from libhma while armed and is the one to fail. */
static int oom_check(void *ret, int *from_lib) {
    uintptr_t r = (uintptr_t)ret;
    *from_lib = atomic_load_explicit(&oom_armed, memory_order_relaxed) &&
                ((r >= lib_lo[0] && r < lib_hi[0]) || (r >= lib_lo[1] && r < lib_hi[1]));
    if (!*from_lib) return 0;
    int k = atomic_fetch_add(&oom_calls, 1) + 1;
    if (k == atomic_load(&oom_fail_at)) {
        atomic_store(&oom_hit, 1);
        atomic_store(&oom_hit_from, ret);
        return 1;
    }
    return 0;
}

void *malloc(size_t n) {
    int lib;
    if (oom_check(__builtin_return_address(0), &lib)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __libc_malloc(n);
    if (lib && p) live_add(p);
    return p;
}

void *calloc(size_t a, size_t b) {
    int lib;
    if (oom_check(__builtin_return_address(0), &lib)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __libc_calloc(a, b);
    if (lib && p) live_add(p);
    return p;
}

void *realloc(void *old, size_t n) {
    int lib;
    if (oom_check(__builtin_return_address(0), &lib)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __libc_realloc(old, n);
    if (p || n == 0) {
        if (old) live_del(old);
        if (lib && p) live_add(p);
    }
    return p;
}

void free(void *p) {
    if (p) live_del(p);
    __libc_free(p);
}

static int find_lib(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    (void)data;
    int k = !info->dlpi_name ? -1 : strstr(info->dlpi_name, "libhma.so") ? 0 : strstr(info->dlpi_name, "libzstd.so") ? 1 : -1;
    if (k < 0) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            lib_lo[k] = info->dlpi_addr + ph->p_vaddr;
            lib_hi[k] = lib_lo[k] + ph->p_memsz;
        }
    }
    return 0;
}
#endif /* !HMA_TEST_SANITIZED */

/* ---- helpers -------------------------------------------------------------- */

/* Entries of a folder whose name starts with ".hma-tmp-" or equals `name`. */
static void assert_nothing_left(const char *dir, const char *name) {
    char *p = tu_join(dir, name);
    if (access(p, F_OK) == 0) fail_msg("%s exists after a failed merge", p);
    free(p);
    if (tu_has_entry_prefix(dir, ".hma-tmp-")) fail_msg("a temporary is left in %s", dir);
}

/* The tensor named in a message ("... tensor 'NAME' ..."), copied into buf. */
static const char *named_tensor(const char *msg, char *buf, size_t cap) {
    const char *s = strstr(msg, "tensor '");
    if (!s) return NULL;
    s += 8;
    const char *e = strchr(s, '\'');
    if (!e || (size_t)(e - s) >= cap) return NULL;
    memcpy(buf, s, (size_t)(e - s));
    buf[e - s] = '\0';
    return buf;
}

typedef struct toy {
    hma_store *in[2];
    hma_plan *p;
} toy;

/* Open two files of the toy folder and plan their MA 0.375. */
static void toy_open_files(toy *t, const char *base, const char *aligned, unsigned flags) {
    char *a = tu_toy_path(base), *b = tu_toy_path(aligned);
    assert_int_equal(hma_store_open(&t->in[0], a, flags), HMA_OK);
    assert_int_equal(hma_store_open(&t->in[1], b, flags), HMA_OK);
    assert_int_equal(hma_plan_create(&t->p, t->in, 2), HMA_OK);
    assert_int_equal(hma_plan_set_ratio(t->p, 0.375), HMA_OK);
    free(a);
    free(b);
}

static void toy_open(toy *t, unsigned flags) { toy_open_files(t, "base.safetensors", "aligned.safetensors", flags); }

static void toy_close(toy *t) {
    hma_plan_free(t->p);
    hma_store_close(t->in[0]);
    hma_store_close(t->in[1]);
}

/* ---- writes failing: ENOSPC and EIO from pwrite, EIO from fsync ---------- */

/*
 * A clean merge of p into out counts its writes (1 header write, then data
 * writes); then pwrite fails with ENOSPC and with EIO at the first, second,
 * middle and last write: each run is HMA_ERR_IO naming `leaf` and the
 * errno's text (and, when name_tensor, the tensor of a data write), and
 * leaves nothing in dir. Returns the count of writes of a clean run.
 */
static int sweep_failing_pwrites(hma_plan *p, const char *dir, const char *out, const char *leaf, int name_tensor) {
    io_reset();
    assert_int_equal(hma_plan_merge_to(p, out, 0), HMA_OK);
    int total = atomic_load(&pwrite_calls);
    assert_true(total >= 3);
    assert_int_equal(unlink(out), 0);
    const int errs[2] = {ENOSPC, EIO};
    const char *texts[2] = {"No space left on device", "Input/output error"};
    const int ats[4] = {1, 2, total / 2, total};
    for (int e = 0; e < 2; e++) {
        for (int k = 0; k < 4; k++) {
            io_reset();
            atomic_store(&pwrite_errno, errs[e]);
            atomic_store(&pwrite_fail_at, ats[k]);
            int rc = hma_plan_merge_to(p, out, 0);
            io_reset();
            if (rc != HMA_ERR_IO)
                fail_msg("%s: write %d of %d failing with %s: rc %d (%s)", leaf, ats[k], total, texts[e], rc,
                         hma_last_error());
            const char *msg = hma_last_error();
            assert_non_null(strstr(msg, leaf));
            assert_non_null(strstr(msg, texts[e]));
            if (name_tensor && ats[k] > 1) { /* a data write: the message names the tensor */
                char name[256];
                if (!named_tensor(msg, name, sizeof name)) fail_msg("no tensor named in: %s", msg);
                assert_true(hma_plan_find(p, name) != HMA_NPOS);
            }
            assert_nothing_left(dir, leaf);
            assert_int_equal(tu_count_entries(dir), 0);
        }
    }
    return total;
}

static void failing_writes_leave_nothing(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *out = tu_join(dir, "out.safetensors");
    toy t;
    toy_open(&t, 0);
    assert_int_equal(hma_plan_set_threads(t.p, 2), HMA_OK);
    int total = sweep_failing_pwrites(t.p, dir, out, "out.safetensors", 1);
    /* Sharded folder output: a failure in a later shard removes every shard,
     * the index and the folder begin created. */
    char *folder = tu_join(dir, "sharded");
    io_reset();
    atomic_store(&pwrite_errno, ENOSPC);
    atomic_store(&pwrite_fail_at, total / 2);
    assert_int_equal(hma_plan_merge_to(t.p, folder, 2u << 20), HMA_ERR_IO);
    io_reset();
    assert_int_not_equal(access(folder, F_OK), 0);
    assert_int_equal(tu_count_entries(dir), 0);
    /* fsync failing (EIO) at commit: HMA_ERR_IO naming the file, nothing left. */
    atomic_store(&fsync_fail, 1);
    assert_int_equal(hma_plan_merge_to(t.p, out, 0), HMA_ERR_IO);
    io_reset();
    assert_non_null(strstr(hma_last_error(), "out.safetensors"));
    assert_non_null(strstr(hma_last_error(), "Input/output error"));
    assert_int_equal(tu_count_entries(dir), 0);
    /* And without faults it goes through. */
    assert_int_equal(hma_plan_merge_to(t.p, out, 0), HMA_OK);
    assert_int_equal(tu_count_entries(dir), 1);
    toy_close(&t);
    free(folder);
    free(out);
    tu_rmtree(dir);
    free(dir);
}


/* The same for a GGUF output (issue 13): a merge of the toy GGUF pair whose
 * writes fail (ENOSPC, EIO) at the header, in the middle and at the end, or
 * whose fsync fails, leaves no out.gguf and no temporary. */
static void failing_gguf_writes_leave_nothing(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *out = tu_join(dir, "out.gguf");
    toy t;
    toy_open_files(&t, "base-q8_0.gguf", "aligned.gguf", 0);
    hma_plan *p = t.p;
    assert_int_equal(hma_plan_set_threads(p, 2), HMA_OK);
    sweep_failing_pwrites(p, dir, out, "out.gguf", 0);
    atomic_store(&fsync_fail, 1);
    assert_int_equal(hma_plan_merge_to(p, out, 0), HMA_ERR_IO);
    io_reset();
    assert_int_equal(tu_count_entries(dir), 0);
    assert_int_equal(hma_plan_merge_to(p, out, 0), HMA_OK);
    assert_int_equal(tu_count_entries(dir), 1);
    toy_close(&t);
    free(out);
    tu_rmtree(dir);
    free(dir);
}

/* ---- a full disk for the real program: EFBIG under RLIMIT_FSIZE ----------- */

static const char *hma_bin(void) {
    const char *b = getenv("HMA_BIN");
    return b && *b ? b : "examples/hma";
}

static void efbig_hma_merge_reports_an_error(void **state) {
    (void)state;
    const char *bin = hma_bin();
    if (access(bin, X_OK) != 0) fail_msg("%s not built (set HMA_BIN)", bin);
    char *dir = tu_mkdtemp();
    char *out = tu_join(dir, "out.safetensors"), *err = tu_join(dir, "stderr.txt");
    char *a = tu_toy_path("base.safetensors"), *b = tu_toy_path("aligned.safetensors");
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The default action of SIGXFSZ kills; the program itself must ignore it. */
        signal(SIGXFSZ, SIG_DFL);
        struct rlimit rl = {1 << 20, 1 << 20}; /* the toy merge is ~9 MiB */
        int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 2) < 0 || setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(120);
        execl(bin, bin, "merge", "--base", a, "--model", b, "--alpha", "0.5", "-q", "-o", out, (char *)NULL);
        _exit(121);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    size_t n = 0;
    char *text = (char *)tu_read_file(err, &n);
    assert_non_null(text);
    text = realloc(text, n + 1);
    text[n] = '\0';
    if (WIFSIGNALED(st)) fail_msg("hma was killed by signal %d (SIGXFSZ not ignored?)", WTERMSIG(st));
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) >= 120) fail_msg("hma exit status %d: %s", WEXITSTATUS(st), text);
    if (!strstr(text, "File too large") || !strstr(text, "out.safetensors")) fail_msg("stderr: %s", text);
    assert_nothing_left(dir, "out.safetensors");
    assert_int_equal(tu_count_entries(dir), 1); /* stderr.txt only */
    free(text);
    free(a);
    free(b);
    free(out);
    free(err);
    tu_rmtree(dir);
    free(dir);
}

/* ---- inputs changed under a pread-mode merge ------------------------------ */

typedef struct change {
    const char *path; /* the input to change */
    int mode;         /* 0: truncate to its header, 1: overwrite its data with 0xff */
    int calls;
    int changed; /* the change was made while bytes were left to merge */
} change;

static uint64_t data_start(const char *path) {
    size_t n = 0;
    unsigned char *f = tu_read_file(path, &n);
    assert_non_null(f);
    assert_true(n >= 8);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = h << 8 | f[i];
    free(f);
    return 8 + h;
}

/* Progress callback: the first time it runs, change the input under the
 * merge; then let the worker go on. The worker is held at its first read
 * after the first data write until then, so every read from there on sees
 * the change, whichever thread gets there first. */
static int change_input(void *user, uint64_t done, uint64_t total) {
    change *c = user;
    if (c->calls++ == 0 && done < total) {
        c->changed = 1;
        uint64_t at = data_start(c->path);
        if (c->mode == 0) {
            assert_int_equal(truncate(c->path, (off_t)at), 0);
        } else {
            struct stat st;
            assert_int_equal(stat(c->path, &st), 0);
            size_t n = (size_t)((uint64_t)st.st_size - at);
            unsigned char *junk = malloc(n);
            memset(junk, 0xff, n); /* 0xffff is a NaN in BF16 and F32 alike */
            int fd = open(c->path, O_WRONLY);
            assert_true(fd >= 0);
            assert_int_equal(syscall(SYS_pwrite64, fd, junk, n, (off_t)at), (long)n);
            close(fd);
            free(junk);
        }
    }
    atomic_store(&gate_open, 1);
    return 0;
}

static void inputs_changed_during_pread_merge(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *out = tu_join(dir, "out.safetensors");
    for (int mode = 0; mode < 2; mode++) {
        /* a private copy of the toy pair, so that it can be damaged */
        char *src[2] = {tu_toy_path("base.safetensors"), tu_toy_path("aligned.safetensors")};
        char *cp[2] = {tu_join(dir, "a.safetensors"), tu_join(dir, "b.safetensors")};
        hma_store *in[2];
        for (int i = 0; i < 2; i++) {
            size_t n;
            unsigned char *bytes = tu_read_file(src[i], &n);
            assert_non_null(bytes);
            assert_int_equal(tu_write_file(cp[i], bytes, n), 0);
            free(bytes);
            assert_int_equal(hma_store_open(&in[i], cp[i], HMA_OPEN_PREAD), HMA_OK);
        }
        hma_plan *p = NULL;
        assert_int_equal(hma_plan_create(&p, in, 2), HMA_OK);
        assert_int_equal(hma_plan_set_threads(p, 1), HMA_OK);
        change c = {cp[1], mode, 0, 0};
        assert_int_equal(hma_plan_set_progress(p, change_input, &c), HMA_OK);
        io_reset();
        atomic_store(&gate_after_pwrites, 2); /* after the header and one data write */
        int rc = hma_plan_merge_to(p, out, 0);
        io_reset();
        assert_true(c.changed); /* really mid-merge */
        if (mode == 0) {
            if (rc != HMA_ERR_TRUNCATED) fail_msg("truncated input: rc %d (%s)", rc, hma_last_error());
        } else if (rc != HMA_ERR_NONFINITE) {
            fail_msg("rewritten input: rc %d (%s)", rc, hma_last_error());
        }
        assert_non_null(strstr(hma_last_error(), "b.safetensors"));
        assert_nothing_left(dir, "out.safetensors");
        /* The one-tensor merge sees the same damage, as an error. */
        uint64_t gen;
        size_t row = hma_plan_tensor_count(p) - 1;
        size_t nb = (size_t)hma_plan_tensor_nbytes(p, row);
        void *buf = malloc(nb ? nb : 1);
        rc = hma_plan_merge_tensor_at(p, row, 0, buf, nb, &gen);
        assert_int_equal(rc, mode == 0 ? HMA_ERR_TRUNCATED : HMA_ERR_NONFINITE);
        free(buf);
        hma_plan_free(p);
        for (int i = 0; i < 2; i++) {
            hma_store_close(in[i]);
            unlink(cp[i]);
            free(cp[i]);
            free(src[i]);
        }
    }
    assert_int_equal(tu_count_entries(dir), 0);
    free(out);
    tu_rmtree(dir);
    free(dir);
}

/* ---- allocation failures -------------------------------------------------- */

#ifndef HMA_TEST_SANITIZED
/* A small open / merge / shard / reopen / write / pack / unpack round. Returns
 * the first failing call's code (HMA_OK when all went through); frees all. */
static int oom_scenario(const char *dir) {
    char *pa = tu_join(dir, "a.safetensors"), *pb = tu_join(dir, "b.safetensors");
    char *m = tu_join(dir, "m.safetensors"), *sh = tu_join(dir, "sharded");
    char *w = tu_join(dir, "w.safetensors"), *pk = tu_join(dir, "b.hmapack"), *un = tu_join(dir, "u.safetensors");
    hma_store *in[2] = {NULL, NULL}, *rd = NULL, *ps = NULL, *pr = NULL;
    hma_plan *p = NULL;
    hma_writer *wr = NULL;
    unsigned char buf[512];
    hma_pack_options opt;
    hma_pack_options_init(&opt);
    opt.threads = 2;
    opt.chunk_size = HMA_PACK_MIN_CHUNK;
    int rc = hma_store_open(&in[0], pa, 0);
    if (!rc) rc = hma_store_open(&in[1], pb, 0);
    if (!rc) rc = hma_store_open(&pr, pb, HMA_OPEN_PREAD);
    if (!rc) rc = hma_plan_create(&p, in, 2);
    if (!rc) rc = hma_plan_set_groups(p, "blocks:2");
    if (!rc) rc = hma_plan_add_rule(p, "*norm*", HMA_GROUP_MEAN);
    if (!rc) rc = hma_plan_set_ratios(p, (const double[]){0.25, 0.75}, 2);
    if (!rc) rc = hma_plan_set_threads(p, 2);
    if (!rc) rc = hma_plan_merge_to(p, m, 0);
    if (!rc) rc = hma_plan_merge_to(p, sh, 4096);
    if (!rc) rc = hma_plan_merge_tensor(p, "model.layers.1.w", 0, buf, 256, NULL);
    if (!rc) rc = hma_plan_set_method(p, HMA_METHOD_SLERP);
    if (!rc) rc = hma_plan_merge_tensor(p, "model.layers.0.w", 0, buf, 256, NULL);
    if (!rc) rc = hma_store_open(&rd, sh, 0);
    if (!rc) rc = hma_store_read(pr, hma_store_tensor(pr, 0), 0, buf, 16);
    if (!rc) rc = hma_writer_create(&wr, w, 0);
    if (!rc) rc = hma_writer_set_metadata(wr, "format", "pt");
    if (!rc) rc = hma_writer_add_tensor(wr, "x", HMA_DTYPE_U8, 1, (uint64_t[]){64});
    if (!rc) rc = hma_writer_begin(wr);
    if (!rc) rc = hma_writer_write(wr, 0, 0, buf, 64);
    if (!rc) rc = hma_writer_commit(wr);
    if (!rc) rc = hma_pack_create(pb, in[0], pk, &opt, NULL);
    if (!rc) rc = hma_pack_open(&ps, pk, in[0], 0, 2);
    if (!rc) rc = hma_store_read(ps, hma_store_tensor(ps, 1), 0, buf, 64);
    if (!rc) rc = hma_pack_unpack(pk, in[0], un, &opt, NULL);
    if (!rc) rc = hma_pack_verify(pk, in[0], pb, &opt, NULL);
    hma_writer_free(wr);
    hma_store_close(ps);
    hma_store_close(rd);
    hma_plan_free(p);
    hma_store_close(pr);
    hma_store_close(in[0]);
    hma_store_close(in[1]);
    unlink(m);
    unlink(w);
    unlink(pk);
    unlink(un);
    tu_rmtree(sh);
    free(pa);
    free(pb);
    free(m);
    free(sh);
    free(w);
    free(pk);
    free(un);
    return rc;
}
#endif

static void allocation_failures_give_no_memory(void **state) {
    (void)state;
#ifdef HMA_TEST_SANITIZED
    skip(); /* the sanitizers own malloc; valgrind runs this one (make valgrind) */
#else
    dl_iterate_phdr(find_lib, NULL);
    assert_true(lib_hi[0] > lib_lo[0] && lib_hi[1] > lib_lo[1]);
    char *dir = tu_mkdtemp();
    /* Two small inputs: 2 layers, BF16 and F32, a norm and an integer tensor. */
    enum { R = 16, C = 24 };
    static uint16_t wa[2][R * C], wb[2][R * C];
    static float na[C], nb[C];
    static int32_t ids[8];
    uint64_t s = 7;
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < R * C; i++) {
            wa[l][i] = fx_f32_to_bf16((float)fx_rand(&s, 0));
            wb[l][i] = fx_f32_to_bf16((float)fx_rand(&s, 0));
        }
    for (int i = 0; i < C; i++) na[i] = 1.0f + (float)i / 64, nb[i] = 1.0f - (float)i / 64;
    for (int i = 0; i < 8; i++) ids[i] = i * 3;
    for (int k = 0; k < 2; k++) {
        fx_tensor ts[] = {
            {"model.embed_tokens.weight", HMA_DTYPE_BF16, 2, {R, C}, k ? wb[1] : wa[1]},
            {"model.layers.0.w", HMA_DTYPE_BF16, 2, {R, C}, k ? wb[0] : wa[0]},
            {"model.layers.1.w", HMA_DTYPE_BF16, 2, {R, C}, k ? wb[1] : wa[1]},
            {"model.norm.weight", HMA_DTYPE_F32, 1, {C}, k ? nb : na},
            {"ids", HMA_DTYPE_I32, 1, {8}, ids},
        };
        char *pth = tu_join(dir, k ? "b.safetensors" : "a.safetensors");
        assert_int_equal(fx_write(pth, ts, sizeof ts / sizeof ts[0]), HMA_OK);
        free(pth);
    }
    atomic_store(&fsync_noop, 1);
    /* A clean counted round first: every later round fails one allocation. */
    live_clear();
    atomic_store(&oom_calls, 0);
    atomic_store(&oom_fail_at, 0);
    atomic_store(&oom_armed, 1);
    int rc = oom_scenario(dir);
    atomic_store(&oom_armed, 0);
    if (rc) fail_msg("clean round failed: %d %s", rc, hma_last_error());
    int total = atomic_load(&oom_calls);
    assert_true(total > 50);
    assert_int_equal(live_n, 0);
    int failures = 0, cap = total * 2 + 100;
    for (int n = 1; n <= cap; n++) {
        live_clear();
        atomic_store(&oom_calls, 0);
        atomic_store(&oom_hit, 0);
        atomic_store(&oom_fail_at, n);
        atomic_store(&oom_armed, 1);
        rc = oom_scenario(dir);
        atomic_store(&oom_armed, 0);
        atomic_store(&oom_fail_at, 0);
        int hit = atomic_load(&oom_hit);
        if (rc != HMA_OK && rc != HMA_ERR_NO_MEMORY)
            fail_msg("allocation %d of %d failed: rc %d, expected HMA_ERR_NO_MEMORY (%s)", n, total, rc, hma_last_error());
        if (rc == HMA_ERR_NO_MEMORY && !hit) fail_msg("allocation %d: NO_MEMORY without a failed allocation", n);
        if (!live_overflow && live_n != 0)
            fail_msg("allocation %d of %d failed (rc %d): %zu block(s) leaked", n, total, rc, live_n);
        if (tu_count_entries(dir) != 2) fail_msg("allocation %d: files left behind in %s", n, dir);
        if (rc == HMA_OK && hit) { /* an optional allocation: say which */
            Dl_info di;
            void *from = atomic_load(&oom_hit_from);
            int ok = dladdr(from, &di) && di.dli_fname;
            const char *so = ok ? strrchr(di.dli_fname, '/') : NULL;
            print_message("allocation %d (called from %s+0x%lx, see addr2line): the library went on without it\n", n,
                          so ? so + 1 : "?", ok ? (unsigned long)((uintptr_t)from - (uintptr_t)di.dli_fbase) : 0ul);
        }
        failures += rc == HMA_ERR_NO_MEMORY;
        if (!hit) break; /* every allocation has had its turn */
        if (n == cap) fail_msg("allocation count does not settle (%d rounds)", cap);
    }
    assert_true(failures > 0);
    print_message("allocation failures: %d library allocations per round, %d gave HMA_ERR_NO_MEMORY\n", total, failures);
    io_reset();
    tu_rmtree(dir);
    free(dir);
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(failing_writes_leave_nothing),
        cmocka_unit_test(failing_gguf_writes_leave_nothing),
        cmocka_unit_test(efbig_hma_merge_reports_an_error),
        cmocka_unit_test(inputs_changed_during_pread_merge),
        cmocka_unit_test(allocation_failures_give_no_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
