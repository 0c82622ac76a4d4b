/* test_pack_version.c - pack format versions: this build writes version 3,
 * reads versions 2 and 3, refuses the 16-bit methods (DIFF16, FLOAT16) in a
 * pack that says version 2, and refuses versions it does not know. The
 * fixed header is rewritten with a valid checksum, so that the version is
 * what is refused, not the damage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hma.h"
#include "pack/codec.h"
#include "testutil.h"

static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A copy of the pack at `from` saying version v, header checksum updated. */
static void with_version(const char *from, const char *to, uint32_t v) {
    size_t len = 0;
    unsigned char *b = tu_read_file(from, &len);
    assert_non_null(b);
    assert_true(len > 72);
    for (int k = 0; k < 4; k++) b[8 + k] = (unsigned char)(v >> (8 * k));
    uint64_t sum = hma__xxh64(b, 64, 0);
    for (int k = 0; k < 8; k++) b[64 + k] = (unsigned char)(sum >> (8 * k));
    assert_int_equal(tu_write_file(to, b, len), 0);
    free(b);
}

static void test_versions(void **state) {
    (void)state;
    char *bp = tu_toy_path("base.safetensors"), *ap = tu_toy_path("aligned.safetensors");
    char *pk = tu_join(tu_dir, "v.hmapack"), *alone = tu_join(tu_dir, "a.hmapack");
    char *other = tu_join(tu_dir, "x.hmapack");
    hma_store *base = NULL, *s = NULL;
    assert_int_equal(hma_store_open(&base, bp, 0), HMA_OK);
    hma_pack_options o;
    hma_pack_options_init(&o);
    o.threads = 1;
    assert_int_equal(hma_pack_create(ap, base, pk, &o, NULL), HMA_OK);
    assert_int_equal(hma_pack_create(ap, NULL, alone, &o, NULL), HMA_OK);

    size_t len = 0;
    unsigned char *b = tu_read_file(pk, &len);
    assert_non_null(b);
    assert_int_equal(get32(b + 8), 3);
    free(b);

    /* the same bytes as version 3 still open: the rewrite itself is sound */
    with_version(pk, other, 3);
    assert_int_equal(hma_pack_open(&s, other, base, 0, 1), HMA_OK);
    hma_store_close(s);
    /* version 2 knows no DIFF16 / FLOAT16 chunks: corrupt, naming the method */
    with_version(pk, other, 2);
    assert_int_equal(hma_pack_open(&s, other, base, 0, 1), HMA_ERR_CORRUPT);
    assert_non_null(strstr(hma_last_error(), "coding method 4 not valid here"));
    with_version(alone, other, 2);
    assert_int_equal(hma_pack_open(&s, other, NULL, 0, 1), HMA_ERR_CORRUPT);
    assert_non_null(strstr(hma_last_error(), "coding method 5 not valid here"));
    /* versions this build does not read */
    static const uint32_t unknown[] = {0, 1, 4, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        with_version(pk, other, unknown[i]);
        assert_int_equal(hma_pack_open(&s, other, base, 0, 1), HMA_ERR_UNSUPPORTED);
        assert_non_null(strstr(hma_last_error(), "reads versions 2 to 3"));
    }
    hma_store_close(base);
    unlink(pk);
    unlink(alone);
    unlink(other);
    free(bp);
    free(ap);
    free(pk);
    free(alone);
    free(other);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions),
    };
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
