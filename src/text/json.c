/* json.c - strict JSON reader: DOM in an arena, ordered objects, duplicate
 * keys / depth / UTF-8 checked, byte offset of every error reported. */
#include "text/json.h"

#include "core/hash.h"
#include "internal.h"

#include <string.h>

/* ---- arena: every node and string of a document lives in a few blocks, so
 * freeing a document is a short walk and parsing does few mallocs. ---- */
typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(max_align_t) unsigned char data[];
} arena_block;

struct hma__json_doc {
    arena_block *blocks;
    hma__json root;
};

static void *arena_alloc(hma__json_doc *doc, size_t n) {
    n = (n + 15u) & ~(size_t)15u;
    arena_block *b = doc->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = b ? b->cap * 2 : 4096;
        if (cap > ((size_t)1 << 22)) cap = (size_t)1 << 22;
        if (cap < n) cap = n;
        if (cap > SIZE_MAX - sizeof(arena_block)) return NULL;
        arena_block *nb = hma__malloc(sizeof(arena_block) + cap);
        if (!nb) return NULL;
        nb->cap = cap;
        nb->used = 0;
        /* An oversized block goes behind the current one so that the
         * current block's free space is not wasted. */
        if (b && n == cap) {
            nb->next = b->next;
            b->next = nb;
            nb->used = n;
            return nb->data;
        }
        nb->next = b;
        doc->blocks = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

void hma__json_free(hma__json_doc *doc) {
    if (!doc) return;
    arena_block *b = doc->blocks;
    while (b) {
        arena_block *n = b->next;
        hma__free(b);
        b = n;
    }
    hma__free(doc);
}

const hma__json *hma__json_root(const hma__json_doc *doc) { return doc ? &doc->root : NULL; }

const hma__json *hma__json_get(const hma__json *obj, const char *key) {
    if (!obj || obj->type != HMA__JSON_OBJECT || !key) return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < obj->len; i++) {
        const hma__json_member *m = &obj->v.members[i];
        if (m->key_len == kl && memcmp(m->key, key, kl) == 0) return &m->value;
    }
    return NULL;
}

/* ---- parser ---- */
typedef struct parser {
    const unsigned char *s;
    size_t len, pos;
    const char *what;
    hma__json_doc *doc;
    size_t err_off;
    /* Children of the containers being parsed, kept on two stacks and
     * copied into the arena when their container closes. */
    hma__json *vals;
    size_t nvals, capvals;
    hma__json_member *mems;
    size_t nmems, capmems;
} parser;

static int perr(parser *p, int code, size_t off, const char *msg) {
    p->err_off = off;
    return hma__fail(code, "%s byte %zu: %s", p->what, off, msg);
}

static int perr_char(parser *p, size_t off, const char *expected) {
    p->err_off = off;
    if (off >= p->len)
        return hma__fail(HMA_ERR_JSON_SYNTAX, "%s byte %zu: unexpected end of JSON (expected %s)",
                         p->what, off, expected);
    unsigned c = p->s[off];
    if (c >= 0x21 && c < 0x7f)
        return hma__fail(HMA_ERR_JSON_SYNTAX, "%s byte %zu: unexpected character '%c' (expected %s)",
                         p->what, off, (int)c, expected);
    return hma__fail(HMA_ERR_JSON_SYNTAX, "%s byte %zu: unexpected byte 0x%02x (expected %s)", p->what,
                     off, c, expected);
}

static int oom(parser *p) {
    return hma__fail(HMA_ERR_NO_MEMORY, "%s byte %zu: out of memory while parsing JSON", p->what, p->pos);
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits at p->pos (after "\u"). */
static int read_u4(parser *p, size_t esc_off, unsigned *out) {
    if (p->len - p->pos < 4)
        return perr(p, HMA_ERR_JSON_UTF8, esc_off, "truncated \\u escape (expected 4 hex digits)");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->s[p->pos + (size_t)i]);
        if (h < 0) return perr(p, HMA_ERR_JSON_UTF8, esc_off, "bad \\u escape (expected 4 hex digits)");
        v = v * 16u + (unsigned)h;
    }
    p->pos += 4;
    *out = v;
    return HMA_OK;
}

/* Length of a valid UTF-8 sequence starting at s[0] (n bytes available), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c == 0xE0) { need = 3; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) need = 3;
    else if (c == 0xED) { need = 3; hi = 0x9F; } /* no UTF-8-encoded surrogates */
    else if (c >= 0xEE && c <= 0xEF) need = 3;
    else if (c == 0xF0) { need = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 4;
    else if (c == 0xF4) { need = 4; hi = 0x8F; } /* nothing above U+10FFFF */
    else return 0;
    if (n < need) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < need; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return need;
}

static size_t put_utf8(unsigned char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* p->pos is at the opening quote. Decodes into the arena. */
static int parse_string(parser *p, const char **out, size_t *out_len) {
    size_t start = p->pos;
    size_t i = start + 1;
    /* First pass: find the closing quote; the decoded string is never longer. */
    while (i < p->len && p->s[i] != '"') i += (p->s[i] == '\\') ? 2 : 1;
    if (i >= p->len) return perr(p, HMA_ERR_JSON_SYNTAX, start, "unterminated string (expected closing '\"')");
    size_t raw = i - start - 1;
    unsigned char *o = arena_alloc(p->doc, raw + 1);
    if (!o) return oom(p);
    size_t n = 0;
    p->pos = start + 1;
    for (;;) {
        /* fast path: a run of plain printable ASCII is copied as is */
        size_t run = p->pos;
        while (run < i && p->s[run] >= 0x20 && p->s[run] < 0x80 && p->s[run] != '\\') run++;
        if (run > p->pos) {
            memcpy(o + n, p->s + p->pos, run - p->pos);
            n += run - p->pos;
            p->pos = run;
        }
        unsigned char c = p->s[p->pos];
        if (c == '"') break;
        if (c < 0x20)
            return perr(p, HMA_ERR_JSON_SYNTAX, p->pos,
                        "control character inside a string (expected it escaped as \\uXXXX)");
        if (c == '\\') {
            size_t esc = p->pos;
            unsigned char e = p->s[p->pos + 1];
            p->pos += 2;
            switch (e) {
            case '"': o[n++] = '"'; break;
            case '\\': o[n++] = '\\'; break;
            case '/': o[n++] = '/'; break;
            case 'b': o[n++] = '\b'; break;
            case 'f': o[n++] = '\f'; break;
            case 'n': o[n++] = '\n'; break;
            case 'r': o[n++] = '\r'; break;
            case 't': o[n++] = '\t'; break;
            case 'u': {
                unsigned cp;
                int rc = read_u4(p, esc, &cp);
                if (rc) return rc;
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return perr(p, HMA_ERR_JSON_UTF8, esc, "lone low surrogate escape (expected a high surrogate first)");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                        return perr(p, HMA_ERR_JSON_UTF8, esc,
                                    "lone high surrogate escape (expected \\uDC00-\\uDFFF next)");
                    p->pos += 2;
                    rc = read_u4(p, esc, &lo);
                    if (rc) return rc;
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return perr(p, HMA_ERR_JSON_UTF8, esc,
                                    "high surrogate not followed by a low surrogate (expected \\uDC00-\\uDFFF)");
                    cp = 0x10000u + ((cp - 0xD800u) << 10) + (lo - 0xDC00u);
                }
                n += put_utf8(o + n, cp);
                break;
            }
            default:
                return perr(p, HMA_ERR_JSON_UTF8, esc,
                            "invalid escape (expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
            }
            continue;
        }
        size_t k = utf8_seq(p->s + p->pos, i - p->pos);
        if (!k) return perr(p, HMA_ERR_JSON_UTF8, p->pos, "invalid UTF-8 in string");
        memcpy(o + n, p->s + p->pos, k);
        n += k;
        p->pos += k;
    }
    o[n] = 0;
    p->pos = i + 1;
    *out = (const char *)o;
    *out_len = n;
    return HMA_OK;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int parse_number(parser *p, hma__json *v) {
    size_t start = p->pos;
    int neg = 0, plain = 1, overflow = 0;
    uint64_t u = 0;
    if (p->s[p->pos] == '-') { neg = 1; p->pos++; }
    if (p->pos >= p->len || !is_digit(p->s[p->pos]))
        return perr(p, HMA_ERR_JSON_SYNTAX, start, "bad number (expected a digit after '-')");
    if (p->s[p->pos] == '0') {
        p->pos++;
        if (p->pos < p->len && is_digit(p->s[p->pos]))
            return perr(p, HMA_ERR_JSON_SYNTAX, start, "number with a leading zero (expected no leading zeros)");
    } else {
        while (p->pos < p->len && is_digit(p->s[p->pos])) {
            unsigned d = (unsigned)(p->s[p->pos] - '0');
            if (hma__mul_overflows(u, 10, &u) || hma__add_overflows(u, d, &u)) overflow = 1;
            p->pos++;
        }
    }
    if (p->pos < p->len && p->s[p->pos] == '.') {
        plain = 0;
        p->pos++;
        if (p->pos >= p->len || !is_digit(p->s[p->pos]))
            return perr(p, HMA_ERR_JSON_SYNTAX, start, "bad number (expected digits after '.')");
        while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        plain = 0;
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->len || !is_digit(p->s[p->pos]))
            return perr(p, HMA_ERR_JSON_SYNTAX, start, "bad number (expected digits in the exponent)");
        while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
    }
    v->type = HMA__JSON_NUMBER;
    v->is_uint = plain && !neg && !overflow;
    v->u = v->is_uint ? u : 0;
    v->v.str = (const char *)p->s + start;
    v->len = p->pos - start;
    return HMA_OK;
}

static const char *member_key(const void *owner, size_t idx, size_t *len) {
    const hma__json_member *m = owner;
    *len = m[idx].key_len;
    return m[idx].key;
}

static int dup_error(parser *p, const hma__json_member *dup, const hma__json_member *first) {
    p->err_off = dup->key_offset;
    return hma__fail(HMA_ERR_DUPLICATE_KEY,
                     "%s byte %zu: duplicate key \"%.200s\" (first at byte %zu; expected each key once)",
                     p->what, dup->key_offset, dup->key, first->key_offset);
}

/* Members m[0..n): the second occurrence of a key is an error. */
static int check_duplicates(parser *p, const hma__json_member *m, size_t n) {
    if (n < 2) return HMA_OK;
    if (n <= 8) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (m[i].key_len == m[j].key_len && memcmp(m[i].key, m[j].key, m[i].key_len) == 0)
                    return dup_error(p, &m[i], &m[j]);
        return HMA_OK;
    }
    hma__names t;
    hma__names_init(&t);
    int rc = hma__names_reserve(&t, n);
    for (size_t i = 0; i < n && !rc; i++) {
        size_t j = hma__names_find(&t, m[i].key, m[i].key_len, member_key, m);
        if (j != HMA_NPOS) rc = dup_error(p, &m[i], &m[j]);
        else rc = hma__names_add(&t, m[i].key, m[i].key_len, i);
    }
    hma__names_free(&t);
    if (rc == HMA_ERR_NO_MEMORY) return oom(p);
    return rc;
}

static int parse_value(parser *p, unsigned depth, hma__json *v);

static int push_val(parser *p, const hma__json *v) {
    if (p->nvals == p->capvals) {
        size_t nc = p->capvals ? p->capvals * 2 : 64;
        hma__json *n = hma__realloc(p->vals, nc * sizeof *n);
        if (!n) return oom(p);
        p->vals = n;
        p->capvals = nc;
    }
    p->vals[p->nvals++] = *v;
    return HMA_OK;
}

static int push_mem(parser *p, const hma__json_member *m) {
    if (p->nmems == p->capmems) {
        size_t nc = p->capmems ? p->capmems * 2 : 64;
        hma__json_member *n = hma__realloc(p->mems, nc * sizeof *n);
        if (!n) return oom(p);
        p->mems = n;
        p->capmems = nc;
    }
    p->mems[p->nmems++] = *m;
    return HMA_OK;
}

static int parse_array(parser *p, unsigned depth, hma__json *v) {
    size_t mark = p->nvals;
    int rc;
    p->pos++; /* '[' */
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') {
        p->pos++;
    } else {
        for (;;) {
            hma__json item;
            if ((rc = parse_value(p, depth, &item))) return rc;
            if ((rc = push_val(p, &item))) return rc;
            skip_ws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->len && p->s[p->pos] == ']') {
                p->pos++;
                break;
            }
            return perr_char(p, p->pos, "',' or ']'");
        }
    }
    size_t n = p->nvals - mark;
    hma__json *items = NULL;
    if (n) {
        items = arena_alloc(p->doc, n * sizeof *items);
        if (!items) return oom(p);
        memcpy(items, p->vals + mark, n * sizeof *items);
    }
    p->nvals = mark;
    v->type = HMA__JSON_ARRAY;
    v->len = n;
    v->v.items = items;
    return HMA_OK;
}

static int parse_object(parser *p, unsigned depth, hma__json *v) {
    size_t mark = p->nmems;
    int rc;
    p->pos++; /* '{' */
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') {
        p->pos++;
    } else {
        for (;;) {
            hma__json_member m;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != '"') return perr_char(p, p->pos, "a string key");
            m.key_offset = p->pos;
            if ((rc = parse_string(p, &m.key, &m.key_len))) return rc;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') return perr_char(p, p->pos, "':'");
            p->pos++;
            if ((rc = parse_value(p, depth, &m.value))) return rc;
            if ((rc = push_mem(p, &m))) return rc;
            skip_ws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->len && p->s[p->pos] == '}') {
                p->pos++;
                break;
            }
            return perr_char(p, p->pos, "',' or '}'");
        }
    }
    size_t n = p->nmems - mark;
    /* n == 0 may leave p->mems NULL: NULL + 0 is undefined (found by fuzz_json) */
    if (n && (rc = check_duplicates(p, p->mems + mark, n))) return rc;
    hma__json_member *mem = NULL;
    if (n) {
        mem = arena_alloc(p->doc, n * sizeof *mem);
        if (!mem) return oom(p);
        memcpy(mem, p->mems + mark, n * sizeof *mem);
    }
    p->nmems = mark;
    v->type = HMA__JSON_OBJECT;
    v->len = n;
    v->v.members = mem;
    return HMA_OK;
}

static int literal(parser *p, const char *word, hma__json_type t, hma__json *v) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return perr_char(p, p->pos, "a JSON value");
    p->pos += n;
    v->type = t;
    return HMA_OK;
}

/* depth = number of containers around this value. */
static int parse_value(parser *p, unsigned depth, hma__json *v) {
    skip_ws(p);
    memset(v, 0, sizeof *v);
    v->offset = p->pos;
    if (p->pos >= p->len) return perr_char(p, p->pos, "a JSON value");
    unsigned char c = p->s[p->pos];
    switch (c) {
    case '{':
    case '[':
        if (depth + 1 > HMA_MAX_JSON_DEPTH)
            return hma__fail((p->err_off = p->pos, HMA_ERR_JSON_DEPTH),
                             "%s byte %zu: JSON nested deeper than %u levels (expected at most %u)", p->what,
                             p->pos, HMA_MAX_JSON_DEPTH, HMA_MAX_JSON_DEPTH);
        return c == '{' ? parse_object(p, depth + 1, v) : parse_array(p, depth + 1, v);
    case '"':
        v->type = HMA__JSON_STRING;
        return parse_string(p, &v->v.str, &v->len);
    case 't': return literal(p, "true", HMA__JSON_TRUE, v);
    case 'f': return literal(p, "false", HMA__JSON_FALSE, v);
    case 'n': return literal(p, "null", HMA__JSON_NULL, v);
    default:
        if (c == '-' || is_digit(c)) return parse_number(p, v);
        return perr_char(p, p->pos, "a JSON value");
    }
}

int hma__json_parse(const char *text, size_t len, const char *what, hma__json_doc **out,
                    size_t *err_offset) {
    if (!out || (!text && len))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma__json_parse: NULL argument");
    parser p;
    memset(&p, 0, sizeof p);
    p.s = (const unsigned char *)(text ? text : "");
    p.len = len;
    p.what = what ? what : "JSON";
    p.doc = hma__calloc(1, sizeof *p.doc);
    if (!p.doc) return oom(&p);
    int rc = parse_value(&p, 0, &p.doc->root);
    if (!rc) {
        skip_ws(&p);
        if (p.pos != p.len) rc = perr_char(&p, p.pos, "only whitespace after the JSON value");
    }
    hma__free(p.vals);
    hma__free(p.mems);
    if (rc) {
        if (err_offset) *err_offset = p.err_off;
        hma__json_free(p.doc);
        return rc;
    }
    *out = p.doc;
    return HMA_OK;
}
