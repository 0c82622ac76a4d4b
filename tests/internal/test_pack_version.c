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

static uint64_t get64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Found by fuzz_pack (CI, 2026-12-03): a tensor named
 * "model.embed_tok\ns.weight" (valid JSON, so a valid name) whose index
 * record has a non-zero reserved byte; the message quoted the name raw,
 * newline and all. Several dozen messages name tensors without escaping
 * them, so the fix is in one place: hma__fail and hma__fail_prefix write
 * control bytes as \xNN (as hma__quote_name does). Rebuilt here: a real
 * pack, the byte set, both checksums resealed (with a wrong checksum the
 * reader stops before the record). */
static void test_damaged_record_name_one_line(void **state) {
    (void)state;
    static const char hdr[] =
        "{\"model.embed_tok\\ns.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    const float v[2] = {1.0f, 2.0f};
    char *src = tu_join(tu_dir, "nl.safetensors"), *pk = tu_join(tu_dir, "nl.hmapack");
    assert_int_equal(tu_write_safetensors_raw(src, hdr, strlen(hdr), v, sizeof v), 0);
    hma_pack_options o;
    hma_pack_options_init(&o);
    o.threads = 1;
    assert_int_equal(hma_pack_create(src, NULL, pk, &o, NULL), HMA_OK);
    size_t len = 0;
    unsigned char *b = tu_read_file(pk, &len);
    assert_non_null(b);
    uint64_t ioff = get64(b + 40), ilen = get64(b + 48);
    assert_true(ioff < len && ilen <= len - ioff && ilen > 8);
    uint64_t rec = ioff + 8 + get64(b + ioff) + 8; /* the first tensor record */
    assert_true(rec + 8 <= ioff + ilen);
    b[rec + 1] = 1; /* a reserved byte */
    put64(b + 56, hma__xxh64(b + ioff, (size_t)ilen, 0));
    put64(b + 64, hma__xxh64(b, 64, 0));
    assert_int_equal(tu_write_file(pk, b, len), 0);
    free(b);
    hma_store *s = NULL;
    assert_int_equal(hma_pack_open(&s, pk, NULL, 0, 1), HMA_ERR_CORRUPT);
    assert_null(s);
    assert_non_null(strstr(hma_last_error(), "reserved bytes not zero"));
    assert_null(strchr(hma_last_error(), '\n'));
    assert_non_null(strstr(hma_last_error(), "model.embed_tok\\x0as.weight"));
    unlink(src);
    unlink(pk);
    free(src);
    free(pk);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_damaged_record_name_one_line),
    };
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
