/* test_fuzz_regressions.c - one case per bug the fuzz targets (tests/fuzz/)
 * found, each rebuilt from the crashing input through the public API, so a
 * fix that comes undone fails `make test` (and, for the undefined-behaviour
 * cases, `make SAN=asan test`). Each case names the target and the fix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hma.h"
#include "testutil.h"


/* Open `path` in both modes; expect `code` (HMA_OK: then `ntensors` tensors). */
static void expect_open(const char *path, int code, size_t ntensors) {
    for (int mode = 0; mode < 2; mode++) {
        hma_store *st = NULL;
        int rc = hma_store_open(&st, path, mode ? HMA_OPEN_PREAD : 0);
        if (rc != code)
            print_error("%s (mode %d): expected %d, got %d: %s\n", path, mode, code, rc, hma_last_error());
        assert_int_equal(rc, code);
        if (rc == HMA_OK) {
            assert_int_equal(hma_store_count(st), ntensors);
            hma_store_close(st);
        } else {
            assert_null(st);
            assert_true(hma_last_error()[0] != 0);
            assert_null(strchr(hma_last_error(), '\n')); /* one error, one line */
        }
    }
}

/* fuzz_json, src/text/json.c parse_object(): an empty object computed
 * `p->mems + 0` while p->mems was still NULL (undefined behaviour, reported
 * by clang's UBSan). Fixed by skipping the duplicate check when n == 0. */
static void test_json_empty_object_first(void **state) {
    (void)state;
    static const char *const headers[] = {
        "{}",                                  /* the empty checkpoint */
        "{\"__metadata__\":{}}",               /* an empty object nested first */
        "{\"a\":[true,false,null,{}],\"b\":1}", /* the fuzzer's input (then refused) */
    };
    static const int codes[] = {HMA_OK, HMA_OK, HMA_ERR_JSON_SYNTAX};
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *p = tu_join(tu_dir, "empty.safetensors");
        assert_int_equal(tu_write_safetensors_raw(p, headers[i], strlen(headers[i]), NULL, 0), 0);
        hma_store *st = NULL;
        int rc = hma_store_open(&st, p, 0);
        if (codes[i] == HMA_OK) {
            assert_int_equal(rc, HMA_OK);
            assert_int_equal(hma_store_count(st), 0);
            assert_int_equal(hma_store_metadata_count(st), 0);
            hma_store_close(st);
        } else {
            assert_int_not_equal(rc, HMA_OK); /* the exact code belongs to test_store_malformed */
        }
        free(p);
    }
}

/* fuzz_index, src/io/store_index.c check_shard_path(): a shard path with a control
 * character ("a.safet\nsors") was accepted, and the "cannot open" message
 * then carried a raw newline. Fixed: such a path is HMA_ERR_BAD_SHARD_PATH. */
static void test_index_shard_path_control_char(void **state) {
    (void)state;
    static const char *const indexes[] = {
        "{\"weight_map\":{\"x.a\":\"a.safet\\nsors\"}}", /* the fuzzer's input */
        "{\"weight_map\":{\"x.a\":\"a\\u001b[31m.safetensors\"}}",
        "{\"weight_map\":{\"x.a\":\"a\\u007f.safetensors\"}}",
        "{\"weight_map\":{\"x.a\":\"\\t\"}}",
    };
    char *ix = tu_join(tu_dir, "model.safetensors.index.json");
    for (size_t i = 0; i < sizeof indexes / sizeof indexes[0]; i++) {
        assert_int_equal(tu_write_file(ix, indexes[i], strlen(indexes[i])), 0);
        expect_open(ix, HMA_ERR_BAD_SHARD_PATH, 0);
        assert_non_null(strstr(hma_last_error(), "control character"));
        expect_open(tu_dir, HMA_ERR_BAD_SHARD_PATH, 0); /* through the folder too */
    }
    /* a plain name with UTF-8 (no control byte) is still a name like any other */
    static const char ok_index[] = "{\"weight_map\":{\"x.a\":\"caf\xc3\xa9.safetensors\"}}";
    static const char shard_hdr[] = "{\"x.a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    char *sh = tu_join(tu_dir, "caf\xc3\xa9.safetensors");
    const float one = 1.0f;
    assert_int_equal(tu_write_safetensors_raw(sh, shard_hdr, strlen(shard_hdr), &one, 4), 0);
    assert_int_equal(tu_write_file(ix, ok_index, strlen(ok_index)), 0);
    expect_open(ix, HMA_OK, 1);
    free(sh);
    free(ix);
}

/* fuzz_index, src/io/store.c hma_store_open(): an index file whose bytes start
 * with GGUF's magic ("GGUF32(") was opened as GGUF when named directly but
 * parsed as an index through its folder, so the two gave different errors.
 * Fixed: a ".json" path is always an index; only other files are sniffed. */
static void test_index_with_gguf_magic(void **state) {
    (void)state;
    char *ix = tu_join(tu_dir, "model.safetensors.index.json");
    static const char bytes[] = "GGUF32(";
    assert_int_equal(tu_write_file(ix, bytes, strlen(bytes)), 0);
    expect_open(ix, HMA_ERR_JSON_SYNTAX, 0);
    expect_open(tu_dir, HMA_ERR_JSON_SYNTAX, 0); /* the folder resolves to the same index */
    free(ix);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_empty_object_first),
        cmocka_unit_test(test_index_shard_path_control_char),
        cmocka_unit_test(test_index_with_gguf_magic),
    };
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
