/* strbuf.c - growable byte buffer and exact JSON string escaping. */
#include "text/strbuf.h"

#include <stdio.h>
#include <string.h>

static const char hex_digits[] = "0123456789abcdef";

void hma__sb_init(hma__strbuf *sb) {
    sb->data = NULL;
    sb->len = 0;
    sb->cap = 0;
    sb->err = HMA_OK;
}

void hma__sb_free(hma__strbuf *sb) {
    hma__free(sb->data);
    hma__sb_init(sb);
}

char *hma__sb_detach(hma__strbuf *sb, size_t *len) {
    if (sb->err || hma__sb_reserve(sb, 0) != HMA_OK) {
        hma__sb_free(sb);
        return NULL;
    }
    char *p = sb->data;
    if (len) *len = sb->len;
    hma__sb_init(sb);
    return p;
}

int hma__sb_reserve(hma__strbuf *sb, size_t extra) {
    if (sb->err) return sb->err;
    size_t need;
    /* +1 keeps room for the terminating NUL. */
    if (__builtin_add_overflow(sb->len, extra, &need) || __builtin_add_overflow(need, 1, &need)) {
        sb->err = HMA_ERR_OVERFLOW;
        return hma__fail(HMA_ERR_OVERFLOW, "string buffer: growing by %zu bytes overflows", extra);
    }
    if (need <= sb->cap) return HMA_OK;
    size_t ncap = sb->cap ? sb->cap : 64;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            ncap = need;
            break;
        }
        ncap *= 2;
    }
    char *n = hma__realloc(sb->data, ncap);
    if (!n) {
        sb->err = HMA_ERR_NO_MEMORY;
        return hma__fail(HMA_ERR_NO_MEMORY, "string buffer: cannot allocate %zu bytes", ncap);
    }
    sb->data = n;
    sb->cap = ncap;
    sb->data[sb->len] = '\0';
    return HMA_OK;
}

int hma__sb_append(hma__strbuf *sb, const void *bytes, size_t n) {
    int rc = hma__sb_reserve(sb, n);
    if (rc) return rc;
    if (n) memcpy(sb->data + sb->len, bytes, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
    return HMA_OK;
}

int hma__sb_putc(hma__strbuf *sb, char c) { return hma__sb_append(sb, &c, 1); }

int hma__sb_puts(hma__strbuf *sb, const char *s) { return hma__sb_append(sb, s, strlen(s)); }

int hma__sb_fill(hma__strbuf *sb, char c, size_t n) {
    int rc = hma__sb_reserve(sb, n);
    if (rc) return rc;
    memset(sb->data + sb->len, c, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
    return HMA_OK;
}

int hma__sb_printf(hma__strbuf *sb, const char *fmt, ...) {
    if (sb->err) return sb->err;
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        sb->err = HMA_ERR_INVALID_ARGUMENT;
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "string buffer: bad format \"%s\"", fmt);
    }
    if ((size_t)n < sizeof small) return hma__sb_append(sb, small, (size_t)n);
    int rc = hma__sb_reserve(sb, (size_t)n);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
    return HMA_OK;
}

int hma__sb_u64(hma__strbuf *sb, uint64_t v) {
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return hma__sb_append(sb, tmp + i, sizeof tmp - i);
}

/* The short escapes both serde_json and Python use; 0 when there is none. */
static char short_escape(unsigned char c) {
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

static void put_u4(char *out, unsigned v) {
    out[0] = '\\';
    out[1] = 'u';
    out[2] = hex_digits[(v >> 12) & 15];
    out[3] = hex_digits[(v >> 8) & 15];
    out[4] = hex_digits[(v >> 4) & 15];
    out[5] = hex_digits[v & 15];
}

int hma__sb_json_string(hma__strbuf *sb, const char *s, size_t n) {
    int rc = hma__sb_putc(sb, '"');
    size_t run = 0; /* start of the pending verbatim run */
    for (size_t i = 0; i < n && !rc; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        rc = hma__sb_append(sb, s + run, i - run);
        run = i + 1;
        char e = short_escape(c);
        if (e) {
            char two[2] = {'\\', e};
            if (!rc) rc = hma__sb_append(sb, two, 2);
        } else {
            char six[6];
            put_u4(six, c);
            if (!rc) rc = hma__sb_append(sb, six, 6);
        }
    }
    if (!rc) rc = hma__sb_append(sb, s + run, n - run);
    if (!rc) rc = hma__sb_putc(sb, '"');
    return rc;
}

/* Decode one UTF-8 sequence at s[i..n); returns its length (0 if invalid). */
static size_t utf8_decode(const unsigned char *s, size_t i, size_t n, uint32_t *cp) {
    unsigned char c = s[i];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        len = 2, v = c & 0x1fu, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, v = c & 0x0fu, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, v = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n - i < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (s[i + k] & 0x3fu);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return len;
}

int hma__utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        if (u[i] == 0) return 0;
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = utf8_decode(u, i, n, &cp);
        if (!l) return 0;
        i += l;
    }
    return 1;
}

int hma__sb_json_string_ascii(hma__strbuf *sb, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    int rc = hma__sb_putc(sb, '"');
    size_t run = 0;
    for (size_t i = 0; i < n && !rc;) {
        unsigned char c = u[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            i++;
            continue;
        }
        rc = hma__sb_append(sb, s + run, i - run);
        if (rc) break;
        char e = short_escape(c);
        uint32_t cp = c;
        size_t l = 1;
        if (c >= 0x80) l = utf8_decode(u, i, n, &cp);
        if (!l) {
            sb->err = HMA_ERR_INVALID_ARGUMENT;
            return hma__fail(HMA_ERR_INVALID_ARGUMENT, "JSON string: invalid UTF-8 at byte %zu", i);
        }
        if (e) {
            char two[2] = {'\\', e};
            rc = hma__sb_append(sb, two, 2);
        } else if (cp >= 0x10000) {
            char twelve[12];
            uint32_t v = cp - 0x10000;
            put_u4(twelve, 0xd800u | (v >> 10));
            put_u4(twelve + 6, 0xdc00u | (v & 0x3ffu));
            rc = hma__sb_append(sb, twelve, 12);
        } else {
            char six[6];
            put_u4(six, cp);
            rc = hma__sb_append(sb, six, 6);
        }
        i += l;
        run = i;
    }
    if (!rc) rc = hma__sb_append(sb, s + run, n - run);
    if (!rc) rc = hma__sb_putc(sb, '"');
    return rc;
}
