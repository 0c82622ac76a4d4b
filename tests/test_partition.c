/* Partitioned outputs (hma_writer_set_part / hma_writer_set_finalize): the
 * union of N parts plus finalize is byte-identical to one writer's output
 * for N = 1, 2, 3 and shards + 2 (idle parts), sharded and single-shard;
 * each part writes exactly its own shards; finalize refuses a missing,
 * truncated or corrupted shard (naming it and its part) and then writes
 * nothing: no index, no copied file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hma.h"
#include "testutil.h"

#define NT 12
#define SHARD 4096 /* bytes of data per shard: the tensors below make 8 shards */
enum { WHOLE, PART, FINALIZE };

static size_t tensor_bytes(size_t i) { return i == 5 ? 0 : 1024 + 256 * (i % 4) * 4; } /* one empty tensor */

static unsigned char *tensor_data(size_t i) {
    size_t n = tensor_bytes(i);
    unsigned char *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t k = 0; k < n; k++) p[k] = (unsigned char)(k * 31 + i * 7 + 1);
    return p;
}

/* Write `dir` as a whole output, as part `part` of `nparts`, or as finalize.
 * Returns the commit's code; *written counts the tensors this writer wrote. */
static int write_output(const char *dir, uint64_t shard, int mode, size_t part, size_t nparts, size_t *written) {
    hma_writer *w = NULL;
    assert_int_equal(hma_writer_create(&w, dir, shard), HMA_OK);
    assert_int_equal(hma_writer_set_metadata(w, "format", "pt"), HMA_OK);
    char *cfg = tu_join(tu_dir, "config-src.json");
    assert_int_equal(tu_write_file(cfg, "{\"a\": 1}\n", 9), 0);
    assert_int_equal(hma_writer_add_file(w, "config.json", cfg), HMA_OK);
    free(cfg);
    for (size_t i = 0; i < NT; i++) {
        char name[32];
        snprintf(name, sizeof name, "layers.%zu.weight", i);
        uint64_t shape[1] = {tensor_bytes(i) / 4};
        assert_int_equal(hma_writer_add_tensor(w, name, HMA_DTYPE_F32, 1, shape), HMA_OK);
    }
    if (mode == PART) assert_int_equal(hma_writer_set_part(w, part, nparts), HMA_OK);
    if (mode == FINALIZE) assert_int_equal(hma_writer_set_finalize(w, nparts), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    assert_int_equal(hma_writer_set_part(w, 0, 1), HMA_ERR_STATE);
    *written = 0;
    for (size_t i = 0; i < NT; i++) {
        unsigned char *d = tensor_data(i);
        size_t n = tensor_bytes(i);
        int rc = hma_writer_write(w, i, 0, d, n ? n : 0);
        free(d);
        if (rc == HMA_OK && n) ++*written;
        else if (n) assert_int_equal(rc, mode == WHOLE ? HMA_OK : HMA_ERR_INVALID_ARGUMENT);
    }
    int rc = hma_writer_commit(w);
    hma_writer_free(w);
    return rc;
}

/* Both folders hold the same names (hidden files included) with the same bytes. */
static void assert_same_folders(const char *a, const char *b) {
    assert_int_equal(tu_count_entries(a), tu_count_entries(b));
    DIR *d = opendir(a);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *pa = tu_join(a, e->d_name), *pb = tu_join(b, e->d_name);
        size_t la = 0, lb = 0;
        unsigned char *ba = tu_read_file(pa, &la), *bb = tu_read_file(pb, &lb);
        if (!bb) fail_msg("%s: missing in %s", e->d_name, b);
        assert_non_null(ba);
        assert_int_equal(la, lb);
        assert_memory_equal(ba, bb, la);
        free(ba), free(bb), free(pa), free(pb);
    }
    closedir(d);
}

static char *fresh(const char *name) {
    char *p = tu_join(tu_dir, name);
    tu_rmtree(p);
    return p;
}

/* Parts 0..nparts-1 except `skip` (nparts: none skipped); returns the tensors written in all. */
static size_t run_parts(const char *dir, uint64_t shard, size_t nparts, size_t skip) {
    size_t total = 0;
    for (size_t r = 0; r < nparts; r++) {
        if (r == skip) continue;
        size_t n = 0;
        assert_int_equal(write_output(dir, shard, PART, r, nparts, &n), HMA_OK);
        total += n;
    }
    return total;
}

static void union_equals_whole(uint64_t shard, size_t nshards_expected) {
    char *single = fresh("single");
    size_t n = 0;
    assert_int_equal(write_output(single, shard, WHOLE, 0, 1, &n), HMA_OK);
    assert_int_equal(n, NT - 1);
    /* the layout: model-0000K-of-0000S.safetensors (+ index), or one model.safetensors */
    assert_int_equal(tu_count_entries(single), (int)nshards_expected + 1 + (nshards_expected > 1));
    size_t worlds[4] = {1, 2, 3, nshards_expected + 2};
    for (size_t k = 0; k < 4; k++) {
        char *parts = fresh("parts");
        /* every non-empty tensor is written by exactly one part */
        assert_int_equal(run_parts(parts, shard, worlds[k], worlds[k]), NT - 1);
        char *idx = tu_join(parts, "model.safetensors.index.json"), *cfg = tu_join(parts, "config.json");
        assert_int_equal(access(idx, F_OK), -1);
        assert_int_equal(access(cfg, F_OK), -1); /* copied files are finalize's */
        assert_int_equal(write_output(parts, shard, FINALIZE, 0, worlds[k], &n), HMA_OK);
        assert_int_equal(n, 0);
        assert_same_folders(single, parts); /* records removed, index and config written */
        assert_int_equal(access(cfg, F_OK), 0);
        free(idx), free(cfg);
        tu_rmtree(parts);
        free(parts);
    }
    tu_rmtree(single);
    free(single);
}

static void union_of_parts_is_the_whole_output(void **state) {
    (void)state;
    union_equals_whole(SHARD, 8);
}

static void single_shard_output(void **state) {
    (void)state;
    /* a stale index must not survive: readers would prefer it */
    char *parts = fresh("parts");
    assert_int_equal(mkdir(parts, 0777), 0);
    char *idx = tu_join(parts, "model.safetensors.index.json");
    assert_int_equal(tu_write_file(idx, "{}", 2), 0);
    size_t n;
    assert_int_equal(run_parts(parts, 0, 3, 3), NT - 1);
    assert_int_equal(access(idx, F_OK), -1); /* part 0 removed it with its commit */
    assert_int_equal(write_output(parts, 0, FINALIZE, 0, 3, &n), HMA_OK);
    tu_rmtree(parts);
    free(parts);
    free(idx);
    union_equals_whole(0, 1);
}

/* Parts of 3 with `damage` applied to shard 3 (part 2), then finalize must
 * fail with `code` and `text`, writing no index and no copied file. */
static void refused(void (*damage)(const char *shard, const char *dir), int code, const char *text) {
    char *parts = fresh("parts");
    run_parts(parts, SHARD, 3, 3);
    char *s3 = tu_join(parts, "model-00003-of-00008.safetensors");
    damage(s3, parts);
    size_t n;
    assert_int_equal(write_output(parts, SHARD, FINALIZE, 0, 3, &n), code);
    const char *msg = hma_last_error();
    if (!strstr(msg, text)) fail_msg("message \"%s\" lacks \"%s\"", msg, text);
    assert_non_null(strstr(msg, "model-00003-of-00008.safetensors (part 2 of 3)"));
    char *idx = tu_join(parts, "model.safetensors.index.json"), *cfg = tu_join(parts, "config.json");
    assert_int_equal(access(idx, F_OK), -1);
    assert_int_equal(access(cfg, F_OK), -1);
    assert_int_equal(tu_has_entry_prefix(parts, ".hma-tmp-"), 0);
    free(idx), free(cfg), free(s3);
    tu_rmtree(parts);
    free(parts);
}

static void remove_it(const char *shard, const char *dir) {
    (void)dir;
    assert_int_equal(unlink(shard), 0);
}
static void truncate_it(const char *shard, const char *dir) {
    (void)dir;
    struct stat st;
    assert_int_equal(stat(shard, &st), 0);
    assert_int_equal(truncate(shard, st.st_size - 1), 0);
}
static void flip_a_byte(const char *shard, const char *dir) {
    (void)dir;
    size_t len;
    unsigned char *b = tu_read_file(shard, &len);
    assert_non_null(b);
    b[len - 100] ^= 1; /* tensor data: size and header unchanged */
    assert_int_equal(tu_write_file(shard, b, len), 0);
    free(b);
}
static void drop_record(const char *shard, const char *dir) {
    (void)shard;
    char *r = tu_join(dir, ".hma-part-model-00003-of-00008.safetensors");
    assert_int_equal(unlink(r), 0);
    free(r);
}

static void finalize_refuses_a_missing_shard(void **state) {
    (void)state;
    refused(remove_it, HMA_ERR_INCOMPLETE, "is missing");
}
static void finalize_refuses_a_truncated_shard(void **state) {
    (void)state;
    refused(truncate_it, HMA_ERR_INCOMPLETE, "bytes, expected");
}
static void finalize_refuses_a_corrupted_byte(void **state) {
    (void)state;
    refused(flip_a_byte, HMA_ERR_CORRUPT, "checksum");
}
static void finalize_refuses_a_shard_without_record(void **state) {
    (void)state;
    refused(drop_record, HMA_ERR_INCOMPLETE, "has no record");
}

static void finalize_refuses_a_missing_part_then_resumes(void **state) {
    (void)state;
    char *single = fresh("single"), *parts = fresh("parts");
    size_t n;
    assert_int_equal(write_output(single, SHARD, WHOLE, 0, 1, &n), HMA_OK);
    run_parts(parts, SHARD, 4, 1); /* part 1 of 4 never ran: shards 2 and 6 */
    assert_int_equal(write_output(parts, SHARD, FINALIZE, 0, 4, &n), HMA_ERR_INCOMPLETE);
    assert_non_null(strstr(hma_last_error(), "model-00002-of-00008.safetensors (part 1 of 4) is missing"));
    assert_int_equal(write_output(parts, SHARD, PART, 1, 4, &n), HMA_OK);
    assert_int_equal(write_output(parts, SHARD, FINALIZE, 0, 4, &n), HMA_OK);
    assert_same_folders(single, parts);
    /* finalize again: the records are gone, so it refuses and changes nothing */
    assert_int_equal(write_output(parts, SHARD, FINALIZE, 0, 4, &n), HMA_ERR_INCOMPLETE);
    assert_same_folders(single, parts);
    tu_rmtree(single), tu_rmtree(parts);
    free(single), free(parts);
}

static void argument_errors(void **state) {
    (void)state;
    hma_writer *w = NULL;
    char *p = fresh("args");
    assert_int_equal(hma_writer_create(&w, p, SHARD), HMA_OK);
    assert_int_equal(hma_writer_set_part(w, 3, 3), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_set_part(w, 0, 0), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_set_finalize(w, 0), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_set_part(NULL, 0, 1), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_set_finalize(NULL, 1), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_writer_add_file(w, ".hma-part-x", p), HMA_ERR_BAD_NAME);
    hma_writer_free(w);
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(union_of_parts_is_the_whole_output),
        cmocka_unit_test(single_shard_output),
        cmocka_unit_test(finalize_refuses_a_missing_shard),
        cmocka_unit_test(finalize_refuses_a_truncated_shard),
        cmocka_unit_test(finalize_refuses_a_corrupted_byte),
        cmocka_unit_test(finalize_refuses_a_shard_without_record),
        cmocka_unit_test(finalize_refuses_a_missing_part_then_resumes),
        cmocka_unit_test(argument_errors),
    };
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
