/* The version the library reports, and the header's macros, against the
 * Makefile's VERSION (passed as HMA_TEST_VERSION "M.m.p" and
 * HMA_TEST_VERSION_NUMBER, computed by make), which also names the shared
 * library file and the pkg-config version; and hma_strerror() over every
 * error code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "hma.h"

#if !defined(HMA_TEST_VERSION) || !defined(HMA_TEST_VERSION_NUMBER)
#error "build with make: it passes -DHMA_TEST_VERSION and -DHMA_TEST_VERSION_NUMBER"
#endif

static void version_matches_makefile(void **state) {
    (void)state;
    /* the header */
    assert_string_equal(HMA_VERSION_STRING, HMA_TEST_VERSION);
    assert_int_equal(HMA_VERSION_NUMBER, HMA_TEST_VERSION_NUMBER);
    int major, minor, patch, end = 0;
    assert_int_equal(sscanf(HMA_VERSION_STRING, "%d.%d.%d%n", &major, &minor, &patch, &end), 3);
    assert_int_equal(end, (int)strlen(HMA_VERSION_STRING));
    assert_int_equal(major, HMA_VERSION_MAJOR);
    assert_int_equal(minor, HMA_VERSION_MINOR);
    assert_int_equal(patch, HMA_VERSION_PATCH);
    /* the library linked */
    assert_string_equal(hma_version_string(), HMA_TEST_VERSION);
    assert_int_equal(hma_version_number(), HMA_TEST_VERSION_NUMBER);
    assert_int_equal(hma_max_dims(), HMA_MAX_DIMS);
}

static void strerror_is_total(void **state) {
    (void)state;
    assert_string_equal(hma_strerror(HMA_OK), "success");
    for (int c = 0; c < HMA_ERR_COUNT; c++) {
        const char *s = hma_strerror(c);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown error");
        for (int d = 0; d < c; d++) assert_string_not_equal(s, hma_strerror(d)); /* one message per code */
    }
    assert_string_equal(hma_strerror(HMA_ERR_COUNT), "unknown error");
    assert_string_equal(hma_strerror(-1), "unknown error");
    assert_string_equal(hma_strerror(100000), "unknown error");
}

static void dtype_table(void **state) {
    (void)state;
    static const char *names[] = {"BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F16", "BF16",
                                  "F32", "F64", "C64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ",
                                  "F8_E5M2FNUZ", "F4", "F6_E2M3", "F6_E3M2"};
    static const unsigned bits[] = {8, 8, 8, 16, 16, 32, 32, 64, 64, 16, 16, 32, 64, 64, 8, 8, 8, 8, 8, 4, 6, 6};
    assert_int_equal(HMA_DTYPE_COUNT, 22);
    for (int i = 0; i < HMA_DTYPE_COUNT; i++) {
        hma_dtype d;
        assert_string_equal(hma_dtype_name(i), names[i]);
        assert_int_equal(hma_dtype_from_name(names[i], &d), HMA_OK);
        assert_int_equal(d, i);
        assert_int_equal(hma_dtype_bits(i), bits[i]);
    }
    hma_dtype d;
    assert_int_equal(hma_dtype_from_name("bf16", &d), HMA_ERR_BAD_DTYPE);
    assert_non_null(strstr(hma_last_error(), "bf16"));
    assert_int_equal(hma_last_error_code(), HMA_ERR_BAD_DTYPE);
    assert_int_equal(hma_dtype_from_name("F32 ", &d), HMA_ERR_BAD_DTYPE);
    assert_null(hma_dtype_name(HMA_DTYPE_COUNT));
    assert_null(hma_dtype_name(-1));
    assert_int_equal(hma_dtype_bits(99), 0);
    assert_true(hma_dtype_is_float(HMA_DTYPE_BF16));
    assert_false(hma_dtype_is_float(HMA_DTYPE_I32));
    assert_false(hma_dtype_is_float(HMA_DTYPE_F8_E4M3));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_matches_makefile),
        cmocka_unit_test(strerror_is_total),
        cmocka_unit_test(dtype_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
