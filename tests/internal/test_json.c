/* test_json.c - the strict JSON reader (src/text/json.c): DOM shape, key order,
 * numbers, string decoding, and every rejection with its code and offset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "text/json.h"
#include "testutil.h"

static hma__json_doc *parse_ok(const char *s, size_t len) {
    hma__json_doc *d = NULL;
    int rc = hma__json_parse(s, len, "t", &d, NULL);
    if (rc) print_error("unexpected failure: %s\n", hma_last_error());
    assert_int_equal(rc, HMA_OK);
    assert_non_null(d);
    return d;
}

/* Parse must fail with `code` at byte `off`; the message names the byte. */
static void expect_fail(const char *s, size_t len, int code, size_t off) {
    hma__json_doc *d = NULL;
    size_t eo = (size_t)-1;
    int rc = hma__json_parse(s, len, "doc.json: header", &d, &eo);
    if (rc != code) print_error("input <%.*s>: got %d (%s)\n", (int)len, s, rc, hma_last_error());
    assert_int_equal(rc, code);
    assert_null(d);
    assert_int_equal(eo, off);
    assert_int_equal(hma_last_error_code(), code);
    char want[64];
    snprintf(want, sizeof want, "doc.json: header byte %zu: ", off);
    if (strncmp(hma_last_error(), want, strlen(want)) != 0) print_error("message: %s\n", hma_last_error());
    assert_true(strncmp(hma_last_error(), want, strlen(want)) == 0);
}
#define FAIL(lit, code, off) expect_fail(lit, sizeof(lit) - 1, code, off)

static void test_object_order_and_values(void **state) {
    (void)state;
    const char *s = " {\"z\": [1, 2.5, -3, true, false, null], \"a\": {\"k\": \"v\"}, \"m\": 0}\n\t ";
    hma__json_doc *d = parse_ok(s, strlen(s));
    const hma__json *r = hma__json_root(d);
    assert_int_equal(r->type, HMA__JSON_OBJECT);
    assert_int_equal(r->len, 3);
    assert_int_equal(r->offset, 1);
    assert_string_equal(r->v.members[0].key, "z");
    assert_string_equal(r->v.members[1].key, "a");
    assert_string_equal(r->v.members[2].key, "m");
    assert_int_equal(r->v.members[1].key_offset, 40);
    const hma__json *z = hma__json_get(r, "z");
    assert_non_null(z);
    assert_int_equal(z->type, HMA__JSON_ARRAY);
    assert_int_equal(z->len, 6);
    assert_true(z->v.items[0].is_uint);
    assert_int_equal(z->v.items[0].u, 1);
    assert_false(z->v.items[1].is_uint);
    assert_int_equal(z->v.items[1].len, 3);
    assert_memory_equal(z->v.items[1].v.str, "2.5", 3);
    assert_false(z->v.items[2].is_uint);
    assert_int_equal(z->v.items[3].type, HMA__JSON_TRUE);
    assert_int_equal(z->v.items[4].type, HMA__JSON_FALSE);
    assert_int_equal(z->v.items[5].type, HMA__JSON_NULL);
    const hma__json *a = hma__json_get(r, "a");
    assert_string_equal(hma__json_get(a, "k")->v.str, "v");
    assert_null(hma__json_get(r, "nope"));
    assert_null(hma__json_get(z, "z")); /* not an object */
    const hma__json *m = hma__json_get(r, "m");
    assert_true(m->is_uint);
    assert_int_equal(m->u, 0);
    hma__json_free(d);
}

static void test_numbers(void **state) {
    (void)state;
    struct { const char *s; int is_uint; uint64_t u; } cases[] = {
        {"0", 1, 0},
        {"18446744073709551615", 1, UINT64_MAX},
        {"18446744073709551616", 0, 0}, /* valid JSON, too big for uint64 */
        {"4.0", 0, 0},
        {"4e0", 0, 0},
        {"4E+2", 0, 0},
        {"-0", 0, 0},
        {"-1", 0, 0},
        {"123456789", 1, 123456789},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hma__json_doc *d = parse_ok(cases[i].s, strlen(cases[i].s));
        const hma__json *r = hma__json_root(d);
        assert_int_equal(r->type, HMA__JSON_NUMBER);
        assert_int_equal(r->is_uint, cases[i].is_uint);
        if (cases[i].is_uint) assert_true(r->u == cases[i].u);
        assert_int_equal(r->len, strlen(cases[i].s));
        hma__json_free(d);
    }
}

static void test_strings(void **state) {
    (void)state;
    /* escapes, a BMP escape, a surrogate pair, raw multi-byte UTF-8, \u0000 */
    const char s[] = "[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\", \"\\ud83d\\ude00\", \"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\", \"x\\u0000y\"]";
    hma__json_doc *d = parse_ok(s, sizeof s - 1);
    const hma__json *r = hma__json_root(d);
    assert_int_equal(r->len, 5);
    assert_int_equal(r->v.items[0].len, 12);
    assert_memory_equal(r->v.items[0].v.str, "a\"b\\c/d\b\f\n\r\t", 12);
    assert_string_equal(r->v.items[1].v.str, "\xc3\xa9\xe2\x82\xac");
    assert_string_equal(r->v.items[2].v.str, "\xf0\x9f\x98\x80");
    assert_string_equal(r->v.items[3].v.str, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    assert_int_equal(r->v.items[4].len, 3);
    assert_memory_equal(r->v.items[4].v.str, "x\0y", 3);
    hma__json_free(d);
}

static void test_depth_limit(void **state) {
    (void)state;
    char buf[2 * HMA_MAX_JSON_DEPTH + 4];
    size_t n = 0;
    for (unsigned i = 0; i < HMA_MAX_JSON_DEPTH; i++) buf[n++] = '[';
    for (unsigned i = 0; i < HMA_MAX_JSON_DEPTH; i++) buf[n++] = ']';
    hma__json_doc *d = parse_ok(buf, n); /* exactly the limit: fine */
    hma__json_free(d);
    n = 0;
    for (unsigned i = 0; i < HMA_MAX_JSON_DEPTH + 1; i++) buf[n++] = '[';
    for (unsigned i = 0; i < HMA_MAX_JSON_DEPTH + 1; i++) buf[n++] = ']';
    expect_fail(buf, n, HMA_ERR_JSON_DEPTH, HMA_MAX_JSON_DEPTH);
    /* objects count too */
    char obj[1024];
    n = 0;
    for (unsigned i = 0; i < HMA_MAX_JSON_DEPTH + 1; i++) n += (size_t)sprintf(obj + n, "{\"k\":");
    expect_fail(obj, n, HMA_ERR_JSON_DEPTH, 5 * HMA_MAX_JSON_DEPTH);
}

static void test_duplicates(void **state) {
    (void)state;
    FAIL("{\"a\":1,\"a\":2}", HMA_ERR_DUPLICATE_KEY, 7);
    FAIL("{\"a\":{\"b\":1,\"c\":2,\"b\":3}}", HMA_ERR_DUPLICATE_KEY, 18);
    /* an escaped spelling is the same key */
    FAIL("{\"ab\":1,\"a\\u0062\":2}", HMA_ERR_DUPLICATE_KEY, 8);
    /* large object: hashed path; duplicate of key 3 at the end */
    char buf[2048];
    size_t n = (size_t)sprintf(buf, "{");
    size_t off = 0;
    for (int i = 0; i < 40; i++) n += (size_t)sprintf(buf + n, "\"key%d\":%d,", i, i);
    off = n;
    n += (size_t)sprintf(buf + n, "\"key3\":0}");
    expect_fail(buf, n, HMA_ERR_DUPLICATE_KEY, off);
    /* same keys in different objects are fine */
    hma__json_doc *d = parse_ok("[{\"a\":1},{\"a\":2}]", 17);
    hma__json_free(d);
    /* keys differing only after a NUL are distinct */
    d = parse_ok("{\"a\\u0000b\":1,\"a\\u0000c\":2}", 27);
    hma__json_free(d);
}

static void test_utf8_errors(void **state) {
    (void)state;
    FAIL("\"\xff\"", HMA_ERR_JSON_UTF8, 1);
    FAIL("\"ab\xc0\xaf\"", HMA_ERR_JSON_UTF8, 3);          /* overlong '/' */
    FAIL("\"\xe0\x80\xaf\"", HMA_ERR_JSON_UTF8, 1);        /* overlong 3-byte */
    FAIL("\"\xed\xa0\x80\"", HMA_ERR_JSON_UTF8, 1);        /* UTF-8-encoded surrogate */
    FAIL("\"\xf4\x90\x80\x80\"", HMA_ERR_JSON_UTF8, 1);    /* above U+10FFFF */
    FAIL("\"\xe2\x82\"", HMA_ERR_JSON_UTF8, 1);            /* cut short by the quote */
    FAIL("\"\x80\"", HMA_ERR_JSON_UTF8, 1);                /* lone continuation */
    FAIL("\"\\x\"", HMA_ERR_JSON_UTF8, 1);                 /* bad escape */
    FAIL("\"\\ud800\"", HMA_ERR_JSON_UTF8, 1);             /* lone high surrogate */
    FAIL("\"\\udc00\"", HMA_ERR_JSON_UTF8, 1);             /* lone low surrogate */
    FAIL("\"\\ud800\\u0041\"", HMA_ERR_JSON_UTF8, 1);      /* high + non-low */
    FAIL("\"ab\\u12g4\"", HMA_ERR_JSON_UTF8, 3);           /* bad hex */
    FAIL("{\"\xfe\":1}", HMA_ERR_JSON_UTF8, 2);            /* keys too */
}

static void test_syntax_errors(void **state) {
    (void)state;
    FAIL("", HMA_ERR_JSON_SYNTAX, 0);
    FAIL("   ", HMA_ERR_JSON_SYNTAX, 3);
    FAIL("{\"a\":1,}", HMA_ERR_JSON_SYNTAX, 7);
    FAIL("[1,]", HMA_ERR_JSON_SYNTAX, 3);
    FAIL("[01]", HMA_ERR_JSON_SYNTAX, 1);
    FAIL("[1.]", HMA_ERR_JSON_SYNTAX, 1);
    FAIL("[-]", HMA_ERR_JSON_SYNTAX, 1);
    FAIL("[1e]", HMA_ERR_JSON_SYNTAX, 1);
    FAIL("[+1]", HMA_ERR_JSON_SYNTAX, 1);
    FAIL("[.5]", HMA_ERR_JSON_SYNTAX, 1);
    FAIL("[tru]", HMA_ERR_JSON_SYNTAX, 1);
    FAIL("[NaN]", HMA_ERR_JSON_SYNTAX, 1);
    FAIL("{} x", HMA_ERR_JSON_SYNTAX, 3);
    FAIL("{}\0", HMA_ERR_JSON_SYNTAX, 2);
    FAIL("{'a':1}", HMA_ERR_JSON_SYNTAX, 1);
    FAIL("{\"a\" 1}", HMA_ERR_JSON_SYNTAX, 5);
    FAIL("{\"a\":1 \"b\":2}", HMA_ERR_JSON_SYNTAX, 7);
    FAIL("{\"a\":1", HMA_ERR_JSON_SYNTAX, 6);
    FAIL("\"abc", HMA_ERR_JSON_SYNTAX, 0);
    FAIL("\"a\tb\"", HMA_ERR_JSON_SYNTAX, 2);              /* raw control character */
    FAIL("{1:2}", HMA_ERR_JSON_SYNTAX, 1);
    FAIL("\xef\xbb\xbf{}", HMA_ERR_JSON_SYNTAX, 0);        /* BOM */
    FAIL("[1]]", HMA_ERR_JSON_SYNTAX, 3);
    FAIL("\v{}", HMA_ERR_JSON_SYNTAX, 0);                  /* not JSON whitespace */
}

static void test_big_document(void **state) {
    (void)state;
    /* Many members and long strings: exercises arena growth and hashing. */
    size_t cap = 4u << 20, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    buf[n++] = '{';
    for (int i = 0; i < 20000; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\"model.layers.%d.weight\":[%d,%d]", i ? "," : "", i, i, i + 1);
    buf[n++] = '}';
    hma__json_doc *d = parse_ok(buf, n);
    const hma__json *r = hma__json_root(d);
    assert_int_equal(r->len, 20000);
    assert_string_equal(r->v.members[19999].key, "model.layers.19999.weight");
    assert_int_equal(r->v.members[19999].value.v.items[1].u, 20000);
    hma__json_free(d);
    free(buf);
}

static void test_null_arguments(void **state) {
    (void)state;
    hma__json_doc *d = NULL;
    assert_int_equal(hma__json_parse("{}", 2, "x", NULL, NULL), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma__json_parse(NULL, 2, "x", &d, NULL), HMA_ERR_INVALID_ARGUMENT);
    hma__json_free(NULL);
    assert_null(hma__json_root(NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_object_order_and_values),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_utf8_errors),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_big_document),
        cmocka_unit_test(test_null_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
