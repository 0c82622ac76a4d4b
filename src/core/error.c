/* error.c - stable error strings and the per-thread detail message. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* One buffer per thread: messages never race and never need freeing. */
static _Thread_local char tls_message[1024];
static _Thread_local int tls_code;

static const char *const messages[] = {
    [HMA_OK] = "success",
    [HMA_ERR_INVALID_ARGUMENT] = "invalid argument",
    [HMA_ERR_NO_MEMORY] = "out of memory",
    [HMA_ERR_IO] = "input/output error",
    [HMA_ERR_NOT_FOUND] = "not found",
    [HMA_ERR_HEADER_SIZE] = "invalid header size",
    [HMA_ERR_TRUNCATED] = "file truncated",
    [HMA_ERR_JSON_SYNTAX] = "invalid JSON",
    [HMA_ERR_JSON_UTF8] = "invalid UTF-8 or escape in JSON string",
    [HMA_ERR_JSON_DEPTH] = "JSON nested too deeply",
    [HMA_ERR_DUPLICATE_KEY] = "duplicate JSON key",
    [HMA_ERR_BAD_DTYPE] = "invalid dtype",
    [HMA_ERR_BAD_SHAPE] = "invalid shape",
    [HMA_ERR_BAD_OFFSETS] = "invalid data offsets",
    [HMA_ERR_SIZE_MISMATCH] = "tensor size does not match its shape and dtype",
    [HMA_ERR_TRAILING_DATA] = "data after the last tensor",
    [HMA_ERR_BAD_NAME] = "invalid tensor name",
    [HMA_ERR_BAD_METADATA] = "invalid __metadata__",
    [HMA_ERR_BAD_INDEX] = "invalid sharded checkpoint index",
    [HMA_ERR_BAD_SHARD_PATH] = "invalid shard path",
    [HMA_ERR_INDEX_MISMATCH] = "index and shards disagree",
    [HMA_ERR_OVERFLOW] = "size or offset overflow",
    [HMA_ERR_STATE] = "call not valid in this state",
    [HMA_ERR_OVERWRITES_INPUT] = "output would overwrite an open input",
    [HMA_ERR_CANCELLED] = "cancelled",
    [HMA_ERR_MISMATCH] = "inputs do not match",
    [HMA_ERR_UNSUPPORTED_DTYPE] = "unsupported dtype for this operation",
    [HMA_ERR_NONFINITE] = "non-finite value in input",
    [HMA_ERR_CORRUPT] = "corrupt data",
    [HMA_ERR_WRONG_BASE] = "wrong base model",
    [HMA_ERR_UNSUPPORTED] = "unsupported format or feature",
    [HMA_ERR_THREAD] = "thread creation failed",
    [HMA_ERR_INCOMPLETE] = "output incomplete",
    [HMA_ERR_CALLBACK] = "callback failed",
    [HMA_ERR_EXISTS] = "output path exists with the wrong kind",
    [HMA_ERR_RECIPE] = "malformed or impossible merge recipe",
};

const char *hma_strerror(int code) {
    if (code < 0 || (size_t)code >= sizeof messages / sizeof messages[0] || !messages[code])
        return "unknown error";
    return messages[code];
}

const char *hma_last_error(void) { return tls_message; }

int hma_last_error_code(void) { return tls_code; }

/* One error, one line: a name or path from a file can hold any byte, and
 * every message that quotes one would otherwise have to escape it (some
 * did not: the fuzzers found a tensor name with a newline in a pack's
 * message). Control bytes become \xNN, as hma__quote_name writes them; the
 * message is cut at the buffer's end. */
static void one_line(char *msg, size_t cap) {
    size_t n = strnlen(msg, cap - 1), i = 0;
    while (i < n && (unsigned char)msg[i] >= 0x20 && (unsigned char)msg[i] != 0x7f) i++;
    if (i == n) return;
    char tmp[sizeof tls_message];
    size_t o = 0;
    for (size_t k = 0; k < n && o < sizeof tmp - 1; k++) {
        unsigned char c = (unsigned char)msg[k];
        if (c >= 0x20 && c != 0x7f) {
            tmp[o++] = (char)c;
        } else {
            if (o + 4 > sizeof tmp - 1) break;
            snprintf(tmp + o, 5, "\\x%02x", c);
            o += 4;
        }
    }
    tmp[o] = '\0';
    snprintf(msg, cap, "%s", tmp);
}

int hma__failv(int code, const char *fmt, va_list ap) {
    tls_code = code;
    if (!fmt) {
        snprintf(tls_message, sizeof tls_message, "%s", hma_strerror(code));
        return code;
    }
    char tmp[sizeof tls_message];
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    memcpy(tls_message, tmp, sizeof tls_message);
    one_line(tls_message, sizeof tls_message);
    return code;
}

int hma__fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    hma__failv(code, fmt, ap);
    va_end(ap);
    return code;
}

int hma__fail_prefix(int code, const char *fmt, ...) {
    char prefix[512], old[sizeof tls_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, tls_message, sizeof old);
    /* Assembled by hand: the message is cut at the buffer end on purpose. */
    size_t pl = strnlen(prefix, sizeof prefix), ol = strnlen(old, sizeof old - 1);
    size_t cap = sizeof tls_message - 1, n = 0;
    for (size_t i = 0; i < pl && n < cap; i++) tls_message[n++] = prefix[i];
    for (const char *sep = ": "; *sep && n < cap; sep++) tls_message[n++] = *sep;
    for (size_t i = 0; i < ol && n < cap; i++) tls_message[n++] = old[i];
    tls_message[n] = '\0';
    one_line(tls_message, sizeof tls_message);
    tls_code = code;
    return code;
}

char *hma__strndup(const char *s, size_t n) {
    char *p = hma__malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *hma__strdup(const char *s) { return hma__strndup(s, strlen(s)); }
