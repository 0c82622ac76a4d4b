/*
 * badinput_sweep.c - the in-process half of tests/test_badinput.sh: every
 * truncation and every single-byte change of a small valid checkpoint goes
 * through what `hma inspect` and `hma merge` do (hma_store_open in both
 * modes, reading every byte handed out; a 2-input plan merged to a file),
 * thousands of variants in one process instead of thousands of spawns.
 * Built by the script against the library under test (ASan under SAN=asan).
 *
 *   badinput_sweep write DIR          write DIR/base.safetensors, DIR/model.safetensors
 *                                     and DIR/base.gguf, DIR/model.gguf (fz_gguf():
 *                                     BF16, F32, Q8_0, F16 in the toy-llama layout)
 *   badinput_sweep count FILE         print the number of variants of FILE
 *   badinput_sweep variant FILE K OUT write variant K of FILE to OUT
 *   badinput_sweep sweep DIR [full] [gguf]
 *                                     run the sweep on DIR/model.safetensors
 *                                     (DIR/model.gguf with "gguf"); the merge
 *                                     output is a .safetensors file either way
 *
 * Variant K: K < len: the first K bytes (truncation); else byte
 * (K - len) / 5 replaced by 0x00, 0xff, itself ^ 0x01, '"' or '{'
 * ((K - len) % 5). Without "full" the sweep takes every truncation and
 * one replacement per byte (rotating through the five).
 */
#include "fuzz_common.h"

#include <errno.h>

#define N_REPL 5

static unsigned char repl(unsigned char orig, unsigned v) {
    static const unsigned char fixed[N_REPL] = {0x00, 0xff, 0, '"', '{'};
    return v == 2 ? (unsigned char)(orig ^ 0x01) : fixed[v];
}

static size_t n_variants(size_t len) { return len + N_REPL * len; }

/* Variant k of src (len bytes) into dst; returns its length. */
static size_t make_variant(const unsigned char *src, size_t len, size_t k, unsigned char *dst) {
    if (k < len) {
        memcpy(dst, src, k);
        return k;
    }
    size_t pos = (k - len) / N_REPL;
    memcpy(dst, src, len);
    dst[pos] = repl(src[pos], (unsigned)((k - len) % N_REPL));
    return len;
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *b = malloc(1 << 16);
    *len = b ? fread(b, 1, 1 << 16, f) : 0;
    fclose(f);
    return b;
}

static const char *g_ext = "safetensors"; /* of the inputs being swept */

static int write_gguf_pair(const char *dir) {
    uint8_t buf[4096];
    for (int which = 0; which < 2; which++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.gguf", dir, which ? "model" : "base");
        size_t n = fz_gguf(buf, sizeof buf, which, 0);
        if (!n || fz_write_file(path, buf, n) != 0) {
            fprintf(stderr, "badinput_sweep: cannot write %s\n", path);
            return 1;
        }
    }
    return 0;
}

static int write_pair(const char *dir) {
    if (write_gguf_pair(dir)) return 1;
    static const char *const names[3] = {"model.embed_tokens.weight", "model.layers.0.mlp.weight",
                                         "model.layers.1.norm.weight"};
    static const hma_dtype dts[3] = {HMA_DTYPE_BF16, HMA_DTYPE_F32, HMA_DTYPE_F16};
    static const uint64_t shapes[3][2] = {{2, 4}, {3, 2}, {6, 0}};
    static const unsigned nds[3] = {2, 2, 1};
    for (int which = 0; which < 2; which++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, which ? "model" : "base");
        hma_writer *w = NULL;
        int rc = hma_writer_create(&w, path, 0);
        if (!rc) rc = hma_writer_set_metadata(w, "format", "pt");
        for (int i = 0; i < 3 && !rc; i++) rc = hma_writer_add_tensor(w, names[i], dts[i], nds[i], shapes[i]);
        if (!rc) rc = hma_writer_begin(w);
        for (int i = 0; i < 3 && !rc; i++) {
            unsigned char buf[64];
            uint64_t ne = shapes[i][0] * (nds[i] == 2 ? shapes[i][1] : 1);
            fz_fill(buf, dts[i], ne, (uint64_t)i + 1, which ? 0.001 : 0.0);
            rc = hma_writer_write(w, (size_t)i, 0, buf, (size_t)(ne * (hma_dtype_bits(dts[i]) / 8)));
        }
        if (!rc) rc = hma_writer_commit(w);
        hma_writer_free(w);
        if (rc) {
            fprintf(stderr, "badinput_sweep: cannot write %s: %s\n", path, hma_last_error());
            return 1;
        }
    }
    return 0;
}

/* Nothing but the inputs may remain in dir after a failed merge. */
static int dir_has_strays(const char *dir) {
    DIR *d = opendir(dir);
    int bad = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' ? strcmp(e->d_name, "base.safetensors") && strcmp(e->d_name, "model.safetensors") &&
                                      strcmp(e->d_name, "v.safetensors") && strcmp(e->d_name, "base.gguf") &&
                                      strcmp(e->d_name, "model.gguf") && strcmp(e->d_name, "v.gguf")
                                : strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            bad = 1;
    if (d) closedir(d);
    return bad;
}

typedef struct tally {
    unsigned long variants, open_ok, open_fail, merge_ok, merge_fail;
    unsigned long by_code[64];
} tally;

static int one_line_message(int rc) {
    const char *m = hma_last_error();
    return hma_last_error_code() == rc && m[0] && !strchr(m, '\n');
}

/* An error from opening (or merging from) the variant names its file. */
static int names_file(const char *vpath) { return strstr(hma_last_error(), vpath) != NULL; }

static int check_variant(const char *dir, const char *vpath, size_t k, tally *t) {
    char out[1024], other[1024];
    /* inspect: both modes agree; every byte served is readable */
    hma_store *a = NULL, *b = NULL;
    int ra = hma_store_open(&a, vpath, 0);
    if (ra && !one_line_message(ra)) goto bad_msg;
    int rb = hma_store_open(&b, vpath, HMA_OPEN_PREAD);
    if (rb && !one_line_message(rb)) goto bad_msg;
    if (ra != rb) {
        fprintf(stderr, "variant %zu: mmap open gives %d, pread open %d\n", k, ra, rb);
        return 1;
    }
    t->variants++;
    if (ra) {
        if (!names_file(vpath)) {
            fprintf(stderr, "variant %zu: open error does not name %s: '%s'\n", k, vpath, hma_last_error());
            return 1;
        }
        t->open_fail++;
        t->by_code[ra & 63]++;
        return 0; /* merge would fail the same way at open: nothing more to see */
    }
    t->open_ok++;
    fz_touch_store(a, strcmp(g_ext, "gguf") ? 1 : 2);
    fz_touch_store(b, 0);
    hma_store_close(b);

    /* merge: the variant as the model (even k) or as the base (odd k) */
    snprintf(other, sizeof other, "%s/%s.%s", dir, k % 2 ? "model" : "base", g_ext);
    snprintf(out, sizeof out, "%s/out/merged.safetensors", dir);
    hma_store *o = NULL, *st[2];
    int rc = hma_store_open(&o, other, 0);
    if (rc) {
        fprintf(stderr, "cannot open %s: %s\n", other, hma_last_error());
        return 1;
    }
    st[0] = k % 2 ? a : o;
    st[1] = k % 2 ? o : a;
    hma_plan *plan = NULL;
    rc = hma_plan_create(&plan, st, 2);
    if (!rc) rc = hma_plan_set_ratio(plan, 0.5);
    if (!rc) rc = hma_plan_merge_to(plan, out, 0);
    hma_plan_free(plan);
    hma_store_close(a);
    hma_store_close(o);
    char outdir[1024];
    snprintf(outdir, sizeof outdir, "%s/out", dir);
    if (rc == HMA_OK) {
        hma_store *m = NULL;
        if (hma_store_open(&m, out, 0) != HMA_OK) {
            fprintf(stderr, "variant %zu: merged output does not open: %s\n", k, hma_last_error());
            return 1;
        }
        fz_touch_store(m, 1);
        hma_store_close(m);
        unlink(out);
        t->merge_ok++;
    } else {
        if (!one_line_message(rc)) goto bad_msg;
        if (access(out, F_OK) == 0) {
            fprintf(stderr, "variant %zu: failed merge (%s) left %s behind\n", k, hma_last_error(), out);
            return 1;
        }
        t->merge_fail++;
        t->by_code[rc & 63]++;
    }
    if (dir_has_strays(outdir)) {
        fprintf(stderr, "variant %zu: temporary files left in %s\n", k, outdir);
        return 1;
    }
    return 0;
bad_msg:
    fprintf(stderr, "variant %zu: error without a proper one-line message (code %d): '%s'\n", k,
            hma_last_error_code(), hma_last_error());
    return 1;
}

static int sweep(const char *dir, int full) {
    char src[1024], vpath[1024], outdir[1024];
    snprintf(src, sizeof src, "%s/model.%s", dir, g_ext);
    snprintf(vpath, sizeof vpath, "%s/v.%s", dir, g_ext);
    snprintf(outdir, sizeof outdir, "%s/out", dir);
    mkdir(outdir, 0755);
    size_t len = 0;
    unsigned char *orig = slurp(src, &len), *v = malloc(len ? len : 1);
    if (!orig || !v || len == 0) {
        fprintf(stderr, "badinput_sweep: cannot read %s\n", src);
        return 1;
    }
    tally t;
    memset(&t, 0, sizeof t);
    int bad = 0;
    for (size_t k = 0; k < n_variants(len) && !bad; k++) {
        if (!full && k >= len && (k - len) % N_REPL != ((k - len) / N_REPL) % N_REPL) continue;
        size_t n = make_variant(orig, len, k, v);
        if (fz_write_file(vpath, v, n) != 0) {
            fprintf(stderr, "badinput_sweep: cannot write %s: %s\n", vpath, strerror(errno));
            bad = 1;
            break;
        }
        bad = check_variant(dir, vpath, k, &t);
    }
    unlink(vpath);
    rmdir(outdir);
    printf("badinput_sweep: %zu-byte %s checkpoint, %lu variants (%s): %lu open (%lu merged, %lu refused by merge), "
           "%lu refused at open; codes:",
           len, g_ext, t.variants, full ? "full" : "reduced", t.open_ok, t.merge_ok, t.merge_fail, t.open_fail);
    for (int c = 1; c < 64; c++)
        if (t.by_code[c]) printf(" %s=%lu", hma_strerror(c), t.by_code[c]);
    printf("\n");
    free(orig);
    free(v);
    return bad;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "write")) return write_pair(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "sweep")) {
        int full = 0;
        for (int i = 3; i < argc; i++) {
            if (!strcmp(argv[i], "full")) full = 1;
            else if (!strcmp(argv[i], "gguf")) g_ext = "gguf";
        }
        return sweep(argv[2], full);
    }
    if (argc >= 3 && !strcmp(argv[1], "count")) {
        size_t len = 0;
        unsigned char *b = slurp(argv[2], &len);
        if (!b) return 1;
        printf("%zu %zu\n", n_variants(len), len);
        free(b);
        return 0;
    }
    if (argc >= 5 && !strcmp(argv[1], "variant")) {
        size_t len = 0;
        unsigned char *b = slurp(argv[2], &len), *v = malloc(len ? len : 1);
        size_t k = (size_t)strtoull(argv[3], NULL, 10);
        if (!b || !v || k >= n_variants(len)) return 1;
        size_t n = make_variant(b, len, k, v);
        int rc = fz_write_file(argv[4], v, n) != 0;
        free(b);
        free(v);
        return rc;
    }
    fprintf(stderr, "usage: badinput_sweep write DIR | count FILE | variant FILE K OUT | sweep DIR [full] [gguf]\n");
    return 2;
}
