/* test_store_malformed.c - hma_store_open() on malformed safetensors files,
 * each built here from a string: every rejection must give its exact error
 * code (docs/format.md, "Reading safetensors") and a message naming the
 * file, in mmap and in pread mode alike; nothing may crash or leak. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hma.h"
#include "testutil.h"


/* Opens path in both modes; both must fail with `code`, naming the file. */
static void expect_open_fails(const char *label, const char *path, int code) {
    for (int mode = 0; mode < 2; mode++) {
        hma_store *st = (hma_store *)0x1;
        int rc = hma_store_open(&st, path, mode ? HMA_OPEN_PREAD : 0);
        if (rc != code)
            print_error("case '%s' (mode %d): expected %d (%s), got %d (%s): %s\n", label, mode, code,
                        hma_strerror(code), rc, hma_strerror(rc), hma_last_error());
        assert_int_equal(rc, code);
        assert_ptr_equal(st, (hma_store *)0x1); /* untouched on failure */
        assert_int_equal(hma_last_error_code(), code);
        if (!strstr(hma_last_error(), path)) print_error("case '%s': message lacks path: %s\n", label, hma_last_error());
        assert_non_null(strstr(hma_last_error(), path));
        assert_null(strchr(hma_last_error(), '\n'));
    }
}

typedef struct hcase {
    const char *label;
    const char *header;
    size_t header_len; /* 0: strlen(header) */
    size_t data_len;   /* zero bytes after the header */
    int code;
} hcase;

#define T(label, hdr, data, code) {label, hdr, 0, data, code}
#define TN(label, hdr, data, code) {label, hdr, sizeof(hdr) - 1, data, code}
#define F32A(off) "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":" off "}"

static const hcase header_cases[] = {
    /* header text and JSON */
    T("header starts with space", " {}", 0, HMA_ERR_JSON_SYNTAX),
    T("header is an array", "[]", 0, HMA_ERR_JSON_SYNTAX),
    T("header unterminated", "{\"a\":", 0, HMA_ERR_JSON_SYNTAX),
    T("trailing garbage", "{}x", 0, HMA_ERR_JSON_SYNTAX),
    TN("trailing NUL padding", "{}\0\0\0\0\0\0", 0, HMA_ERR_JSON_SYNTAX),
    T("trailing comma", "{\"a\":" F32A("[0,4]") ",}", 4, HMA_ERR_JSON_SYNTAX),
    T("leading zero number", "{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, HMA_ERR_JSON_SYNTAX),
    T("raw control char in name", "{\"a\tb\":" F32A("[0,4]") "}", 4, HMA_ERR_JSON_SYNTAX),
    T("tensor entry not an object", "{\"a\":[1,2]}", 0, HMA_ERR_JSON_SYNTAX),
    T("unknown key in entry", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"offsets\":1}}", 4, HMA_ERR_JSON_SYNTAX),
    T("invalid UTF-8 in name", "{\"a\xff\":" F32A("[0,4]") "}", 4, HMA_ERR_JSON_UTF8),
    T("overlong UTF-8 in name", "{\"\xc0\xae\":" F32A("[0,4]") "}", 4, HMA_ERR_JSON_UTF8),
    T("bad escape in name", "{\"a\\q\":" F32A("[0,4]") "}", 4, HMA_ERR_JSON_UTF8),
    T("lone surrogate in name", "{\"a\\ud800\":" F32A("[0,4]") "}", 4, HMA_ERR_JSON_UTF8),
    T("invalid UTF-8 in metadata", "{\"__metadata__\":{\"k\":\"\xed\xa0\x80\"}}", 0, HMA_ERR_JSON_UTF8),
    T("duplicate tensor name", "{\"a\":" F32A("[0,4]") ",\"a\":" F32A("[4,8]") "}", 8, HMA_ERR_DUPLICATE_KEY),
    T("duplicate name via escape", "{\"ab\":" F32A("[0,4]") ",\"a\\u0062\":" F32A("[4,8]") "}", 8, HMA_ERR_DUPLICATE_KEY),
    T("duplicate key in entry", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, HMA_ERR_DUPLICATE_KEY),
    T("duplicate __metadata__", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, HMA_ERR_DUPLICATE_KEY),
    T("duplicate metadata key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, HMA_ERR_DUPLICATE_KEY),
    T("deep nesting", "{\"__metadata__\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", 0, HMA_ERR_JSON_DEPTH),
    /* dtype */
    T("unknown dtype", "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, HMA_ERR_BAD_DTYPE),
    T("lowercase dtype", "{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, HMA_ERR_BAD_DTYPE),
    T("missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, HMA_ERR_BAD_DTYPE),
    T("dtype not a string", "{\"a\":{\"dtype\":11,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, HMA_ERR_BAD_DTYPE),
    T("dtype with NUL", "{\"a\":{\"dtype\":\"F32\\u0000\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, HMA_ERR_BAD_DTYPE),
    /* shape */
    T("missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, HMA_ERR_BAD_SHAPE),
    T("shape not a list", "{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4, HMA_ERR_BAD_SHAPE),
    T("negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, HMA_ERR_BAD_SHAPE),
    T("float dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, HMA_ERR_BAD_SHAPE),
    T("exponent dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", 4, HMA_ERR_BAD_SHAPE),
    T("string dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, HMA_ERR_BAD_SHAPE),
    T("dim above 2^64", "{\"a\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],\"data_offsets\":[0,4]}}", 4, HMA_ERR_BAD_SHAPE),
    T("17 dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, HMA_ERR_BAD_SHAPE),
    T("shape product overflow", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0, HMA_ERR_BAD_SHAPE),
    T("byte count overflow", "{\"a\":{\"dtype\":\"U64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0, HMA_ERR_OVERFLOW),
    /* data_offsets */
    T("missing data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, HMA_ERR_BAD_OFFSETS),
    T("three offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}", 4, HMA_ERR_BAD_OFFSETS),
    T("offsets not a list", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":4}}", 4, HMA_ERR_BAD_OFFSETS),
    T("negative offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[-1,-1]}}", 0, HMA_ERR_BAD_OFFSETS),
    T("float offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4, HMA_ERR_BAD_OFFSETS),
    T("begin after end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, HMA_ERR_BAD_OFFSETS),
    T("hole between tensors", "{\"a\":" F32A("[0,4]") ",\"b\":" F32A("[8,12]") "}", 12, HMA_ERR_BAD_OFFSETS),
    T("hole at start", "{\"a\":" F32A("[4,8]") "}", 8, HMA_ERR_BAD_OFFSETS),
    T("overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, HMA_ERR_BAD_OFFSETS),
    T("same range twice", "{\"a\":" F32A("[0,4]") ",\"b\":" F32A("[0,4]") "}", 4, HMA_ERR_BAD_OFFSETS),
    T("empty tensor inside another", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8, HMA_ERR_BAD_OFFSETS),
    T("offset near 2^64", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551612,18446744073709551615]}}", 4, HMA_ERR_SIZE_MISMATCH),
    T("huge aligned offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551611,18446744073709551615]}}", 4, HMA_ERR_BAD_OFFSETS),
    /* sizes */
    T("span too small", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, HMA_ERR_SIZE_MISMATCH),
    T("span too large", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, HMA_ERR_SIZE_MISMATCH),
    T("F4 odd count", "{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, HMA_ERR_SIZE_MISMATCH),
    T("F6 partial byte", "{\"a\":{\"dtype\":\"F6_E2M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, HMA_ERR_SIZE_MISMATCH),
    T("file shorter than data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, HMA_ERR_TRUNCATED),
    T("file longer than data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 20, HMA_ERR_TRAILING_DATA),
    T("no tensors but data", "{}", 1, HMA_ERR_TRAILING_DATA),
    T("metadata only but data", "{\"__metadata__\":{\"format\":\"pt\"}}", 3, HMA_ERR_TRAILING_DATA),
    /* names */
    T("empty name", "{\"\":" F32A("[0,4]") "}", 4, HMA_ERR_BAD_NAME),
    T("NUL in name", "{\"a\\u0000b\":" F32A("[0,4]") "}", 4, HMA_ERR_BAD_NAME),
    /* metadata */
    T("metadata as tensor", "{\"__metadata__\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, HMA_ERR_BAD_METADATA),
    T("metadata a string", "{\"__metadata__\":\"pt\"}", 0, HMA_ERR_BAD_METADATA),
    T("metadata value a number", "{\"__metadata__\":{\"k\":1}}", 0, HMA_ERR_BAD_METADATA),
    T("metadata value null", "{\"__metadata__\":{\"k\":null}}", 0, HMA_ERR_BAD_METADATA),
    T("metadata nested object", "{\"__metadata__\":{\"k\":{}}}", 0, HMA_ERR_BAD_METADATA),
    T("metadata value with NUL", "{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0, HMA_ERR_BAD_METADATA),
    T("metadata key with NUL", "{\"__metadata__\":{\"k\\u0000\":\"v\"}}", 0, HMA_ERR_BAD_METADATA),
};

static void test_header_cases(void **state) {
    (void)state;
    char *path = tu_join(tu_dir, "bad.safetensors");
    unsigned char zeros[64] = {0};
    size_t n = sizeof header_cases / sizeof header_cases[0];
    assert_true(n >= 40);
    for (size_t i = 0; i < n; i++) {
        const hcase *c = &header_cases[i];
        size_t hl = c->header_len ? c->header_len : strlen(c->header);
        assert_true(c->data_len <= sizeof zeros);
        assert_int_equal(tu_write_safetensors_raw(path, c->header, hl, zeros, c->data_len), 0);
        expect_open_fails(c->label, path, c->code);
    }
    free(path);
}

/* Files whose 8-byte prefix is wrong. */
static void write_prefixed(const char *path, uint64_t n, const char *rest, size_t rest_len) {
    unsigned char buf[256];
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + 8, rest, rest_len);
    assert_int_equal(tu_write_file(path, buf, 8 + rest_len), 0);
}

static void test_prefix_cases(void **state) {
    (void)state;
    char *path = tu_join(tu_dir, "short.safetensors");
    assert_int_equal(tu_write_file(path, "", 0), 0); /* empty file: mmap would fail */
    expect_open_fails("empty file", path, HMA_ERR_HEADER_SIZE);
    assert_int_equal(tu_write_file(path, "\x02\0\0\0\0", 5), 0);
    expect_open_fails("5-byte file", path, HMA_ERR_HEADER_SIZE);
    write_prefixed(path, 0, "{}", 2);
    expect_open_fails("header length 0", path, HMA_ERR_HEADER_SIZE);
    write_prefixed(path, 0, "", 0);
    expect_open_fails("only a zero prefix", path, HMA_ERR_HEADER_SIZE);
    write_prefixed(path, 100000001ull, "{}", 2);
    expect_open_fails("header length above limit", path, HMA_ERR_HEADER_SIZE);
    write_prefixed(path, UINT64_MAX, "{}", 2);
    expect_open_fails("header length 2^64-1", path, HMA_ERR_HEADER_SIZE);
    write_prefixed(path, 3, "{}", 2);
    expect_open_fails("header past the end", path, HMA_ERR_HEADER_SIZE);
    write_prefixed(path, 1, "{}", 2);
    expect_open_fails("header cut inside JSON", path, HMA_ERR_JSON_SYNTAX);
    free(path);
}

static void test_long_name(void **state) {
    (void)state;
    char *path = tu_join(tu_dir, "long.safetensors");
    size_t nl = HMA_MAX_NAME + 1;
    char *hdr = malloc(nl + 128);
    assert_non_null(hdr);
    hdr[0] = '{';
    hdr[1] = '"';
    memset(hdr + 2, 'x', nl);
    strcpy(hdr + 2 + nl, "\":" F32A("[0,4]") "}");
    assert_int_equal(tu_write_safetensors_raw(path, hdr, strlen(hdr), "\0\0\0\0", 4), 0);
    expect_open_fails("name one byte too long", path, HMA_ERR_BAD_NAME);
    /* exactly HMA_MAX_NAME is fine */
    memmove(hdr + 2 + nl - 1, hdr + 2 + nl, strlen(hdr + 2 + nl) + 1);
    assert_int_equal(tu_write_safetensors_raw(path, hdr, strlen(hdr), "\0\0\0\0", 4), 0);
    hma_store *st = NULL;
    assert_int_equal(hma_store_open(&st, path, 0), HMA_OK);
    assert_int_equal(strlen(hma_tensor_name(hma_store_tensor(st, 0))), HMA_MAX_NAME);
    hma_store_close(st);
    free(hdr);
    free(path);
}

/* The message format: "PATH: tensor 'NAME': ..." and "PATH: header byte N: ...". */
static void test_message_format(void **state) {
    (void)state;
    char *path = tu_join(tu_dir, "msg.safetensors");
    const char *h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}";
    assert_int_equal(tu_write_safetensors_raw(path, h, strlen(h), "\0\0\0\0", 4), 0);
    hma_store *st = NULL;
    assert_int_equal(hma_store_open(&st, path, 0), HMA_ERR_SIZE_MISMATCH);
    char want[512];
    snprintf(want, sizeof want, "%s: tensor 'w': ", path);
    assert_true(strncmp(hma_last_error(), want, strlen(want)) == 0);
    assert_non_null(strstr(hma_last_error(), "expected 8"));

    h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}";
    assert_int_equal(tu_write_safetensors_raw(path, h, strlen(h), "\0\0\0\0\0\0\0\0", 8), 0);
    assert_int_equal(hma_store_open(&st, path, 0), HMA_ERR_JSON_SYNTAX);
    snprintf(want, sizeof want, "%s: header byte %zu: ", path, strlen(h) - 1);
    if (strncmp(hma_last_error(), want, strlen(want))) print_error("%s\n", hma_last_error());
    assert_true(strncmp(hma_last_error(), want, strlen(want)) == 0);

    /* a name with a newline stays one line in the message */
    h = "{\"a\\nb\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}";
    assert_int_equal(tu_write_safetensors_raw(path, h, strlen(h), "\0\0\0\0", 4), 0);
    assert_int_equal(hma_store_open(&st, path, 0), HMA_ERR_SIZE_MISMATCH);
    assert_null(strchr(hma_last_error(), '\n'));
    assert_non_null(strstr(hma_last_error(), "a\\x0ab"));
    free(path);
}

/* Not regular files / missing paths. */
static void test_not_files(void **state) {
    (void)state;
    hma_store *st = NULL;
    char *missing = tu_join(tu_dir, "missing.safetensors");
    assert_int_equal(hma_store_open(&st, missing, 0), HMA_ERR_NOT_FOUND);
    assert_non_null(strstr(hma_last_error(), missing));
    char *sub = tu_join(tu_dir, "emptydir");
    assert_int_equal(tu_write_file(missing, "", 0), 0);
    unlink(missing);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(hma_store_open(&st, sub, 0), HMA_ERR_NOT_FOUND);
    assert_int_equal(hma_store_open(&st, "/dev/null", 0), HMA_ERR_IO);
    assert_int_equal(hma_store_open(&st, NULL, 0), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_store_open(NULL, sub, 0), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_store_open(&st, sub, 0x80), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_store_open(&st, "", 0), HMA_ERR_INVALID_ARGUMENT);
    rmdir(sub);
    free(sub);
    free(missing);
}

/* Bit flips and truncations of the real toy file never crash: each open
 * either succeeds or fails with a format code. */
static void test_mutations_of_toy(void **state) {
    (void)state;
    char *toy = tu_toy_path("base.safetensors");
    size_t len = 0;
    unsigned char *orig = tu_read_file(toy, &len);
    assert_non_null(orig);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | orig[i];
    size_t keep = (size_t)(8 + hl + 64); /* header plus a little data */
    char *path = tu_join(tu_dir, "mut.safetensors");
    assert_int_equal(tu_write_file(path, orig, len), 0);
    unsigned seed = 12345;
    for (int iter = 0; iter < 300; iter++) {
        seed = seed * 1103515245u + 12345u;
        size_t pos = (seed >> 8) % keep;
        seed = seed * 1103515245u + 12345u;
        /* Flip one bit or set one byte in place (restored after); every
         * 10th case truncates instead (then the file is rewritten). */
        int truncating = iter % 10 == 9;
        unsigned char b = orig[pos];
        if (iter % 2) b ^= (unsigned char)(1u << ((seed >> 16) % 8));
        else b = (unsigned char)(seed >> 16);
        FILE *f = fopen(path, "r+b");
        assert_non_null(f);
        if (truncating) {
            assert_int_equal(ftruncate(fileno(f), (off_t)pos), 0);
        } else {
            assert_int_equal(fseek(f, (long)pos, SEEK_SET), 0);
            assert_int_equal(fwrite(&b, 1, 1, f), 1);
        }
        assert_int_equal(fclose(f), 0);
        hma_store *st = NULL;
        int rc = hma_store_open(&st, path, iter % 4 < 2 ? HMA_OPEN_PREAD : 0);
        if (rc == HMA_OK) {
            assert_int_equal(hma_store_count(st), 75);
            hma_store_close(st);
        } else {
            assert_true(rc >= HMA_ERR_HEADER_SIZE && rc <= HMA_ERR_OVERFLOW);
            assert_non_null(strstr(hma_last_error(), path));
        }
        if (truncating) {
            assert_int_equal(tu_write_file(path, orig, len), 0);
        } else {
            f = fopen(path, "r+b");
            assert_non_null(f);
            assert_int_equal(fseek(f, (long)pos, SEEK_SET), 0);
            assert_int_equal(fwrite(&orig[pos], 1, 1, f), 1);
            assert_int_equal(fclose(f), 0);
        }
    }
    free(path);
    free(orig);
    free(toy);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_cases),
        cmocka_unit_test(test_prefix_cases),
        cmocka_unit_test(test_long_name),
        cmocka_unit_test(test_message_format),
        cmocka_unit_test(test_not_files),
        cmocka_unit_test(test_mutations_of_toy),
    };
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
