/*
 * json.h - strict JSON reader (RFC 8259) for safetensors headers and index
 * files. Builds an immutable DOM in one arena; objects keep their key order.
 * Stricter than most readers on purpose, because every byte of a header is
 * untrusted: duplicate keys are an error (HMA_ERR_DUPLICATE_KEY), nesting is
 * bounded (HMA_ERR_JSON_DEPTH), strings must be valid UTF-8 with valid
 * escapes and paired surrogates (HMA_ERR_JSON_UTF8), and nothing but
 * whitespace may follow the value (HMA_ERR_JSON_SYNTAX).
 */
#ifndef HMA_JSON_H
#define HMA_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum hma__json_type {
    HMA__JSON_NULL,
    HMA__JSON_FALSE,
    HMA__JSON_TRUE,
    HMA__JSON_NUMBER,
    HMA__JSON_STRING,
    HMA__JSON_ARRAY,
    HMA__JSON_OBJECT
} hma__json_type;

typedef struct hma__json_member hma__json_member;

typedef struct hma__json {
    hma__json_type type;
    /* NUMBER: 1 when written as a plain non-negative integer (no '-', '.',
     * exponent) whose value fits uint64_t; the value is then in `u`. */
    int is_uint;
    uint64_t u;
    size_t offset; /* byte of the input where the value starts */
    /* STRING: decoded bytes (may contain NUL from \u0000; NUL-terminated
     * too); NUMBER: length of its text; ARRAY/OBJECT: element count. */
    size_t len;
    union {
        const char *str;               /* STRING (decoded) or NUMBER (source text) */
        const struct hma__json *items; /* ARRAY */
        const hma__json_member *members; /* OBJECT, in input order */
    } v;
} hma__json;

struct hma__json_member {
    const char *key; /* decoded, NUL-terminated (may also contain NUL) */
    size_t key_len;
    size_t key_offset; /* byte of the input where the key's quote is */
    hma__json value;
};

typedef struct hma__json_doc hma__json_doc;

/*
 * Parse `len` bytes of `text` (need not be NUL-terminated). On success sets
 * *out (free with hma__json_free) and returns HMA_OK. On failure returns the
 * code and sets the thread message "<what> byte N: problem (expected ...)",
 * N counted from the start of `text`; *err_offset (if not NULL) gets N.
 * Leading and trailing JSON whitespace is allowed.
 */
int hma__json_parse(const char *text, size_t len, const char *what, hma__json_doc **out,
                    size_t *err_offset);
void hma__json_free(hma__json_doc *doc);
const hma__json *hma__json_root(const hma__json_doc *doc);

/* Member of an object by exact key (linear scan), or NULL. */
const hma__json *hma__json_get(const hma__json *obj, const char *key);

#endif /* HMA_JSON_H */
