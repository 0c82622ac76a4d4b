/*
 * strbuf.h - a growable byte buffer for building JSON text (safetensors
 * headers, index files): checked growth, printf-style appends, and JSON
 * string escaping byte-identical to serde_json (what the safetensors
 * reference writes) and to Python's json.dumps (what transformers writes).
 *
 * Errors are sticky: after the first failure every later append is a no-op
 * that returns the same code, so a caller may append many pieces and check
 * once (hma__sb_error() or the return of the last call). Not thread-safe;
 * one buffer belongs to one thread at a time.
 */
#ifndef HMA_STRBUF_H
#define HMA_STRBUF_H

#include "internal.h"

typedef struct hma__strbuf {
    char *data; /* always NUL-terminated once anything was appended */
    size_t len; /* bytes used, excluding the terminating NUL */
    size_t cap; /* bytes allocated */
    int err;    /* first error (HMA_ERR_NO_MEMORY or HMA_ERR_OVERFLOW), else HMA_OK */
} hma__strbuf;

#define HMA__STRBUF_INIT {NULL, 0, 0, HMA_OK}

void hma__sb_init(hma__strbuf *sb);
/* Release the memory; the buffer is reusable (as after hma__sb_init). */
void hma__sb_free(hma__strbuf *sb);
/* Hand the NUL-terminated bytes to the caller (free with hma__free) and
 * reset the buffer. Returns NULL if the buffer is in error; an empty buffer
 * gives "" (allocated). *len (may be NULL) receives the length. */
char *hma__sb_detach(hma__strbuf *sb, size_t *len);
/* The sticky error, HMA_OK if none. */
static inline int hma__sb_error(const hma__strbuf *sb) { return sb->err; }

/* Make room for `extra` more bytes (plus the NUL). */
int hma__sb_reserve(hma__strbuf *sb, size_t extra);
int hma__sb_append(hma__strbuf *sb, const void *bytes, size_t n);
int hma__sb_putc(hma__strbuf *sb, char c);
int hma__sb_puts(hma__strbuf *sb, const char *s);
/* Append `n` copies of byte c. */
int hma__sb_fill(hma__strbuf *sb, char c, size_t n);
int hma__sb_printf(hma__strbuf *sb, const char *fmt, ...) HMA_PRINTF(2, 3);
int hma__sb_u64(hma__strbuf *sb, uint64_t v);

/*
 * Append s[0..n) as a quoted JSON string the way serde_json writes it:
 * `"` and `\` are backslash-escaped, control bytes < 0x20 become \b \f \n
 * \r \t or \u00XX (lowercase hex); every other byte, including non-ASCII
 * UTF-8, '/' and 0x7f, is copied verbatim. The bytes are not validated.
 */
int hma__sb_json_string(hma__strbuf *sb, const char *s, size_t n);

/*
 * Append s[0..n) as a quoted JSON string the way Python's json.dumps writes
 * it with ensure_ascii=True (transformers' index files): as above, but every
 * code point outside 0x20..0x7e becomes \uXXXX (lowercase hex), code points
 * above U+FFFF as a surrogate pair. s must be valid UTF-8; otherwise the
 * buffer fails with HMA_ERR_INVALID_ARGUMENT.
 */
int hma__sb_json_string_ascii(hma__strbuf *sb, const char *s, size_t n);

/* 1 if s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF)
 * and contains no NUL byte; else 0. */
int hma__utf8_valid(const char *s, size_t n);

#endif /* HMA_STRBUF_H */
