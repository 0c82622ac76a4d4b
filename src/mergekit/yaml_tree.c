/*
 * yaml_tree.c - YAML 1.1 text (JSON included) into a small node tree with
 * 1-based line numbers, through libyaml's event API; and the typing of
 * plain scalars the way PyYAML's safe_load does it (mergekit reads recipes
 * with yaml.safe_load, so "0.5" is a number and "'0.5'" a string).
 *
 * Refused with HMA_ERR_RECIPE and "WHAT:LINE: problem": YAML syntax errors
 * (libyaml's own problem text), anchors and aliases, tags other than the
 * core ones, merge keys (<<), non-scalar and duplicate map keys, NUL
 * characters in strings, more than one document, none at all, and nesting
 * deeper than HMA__Y_MAX_DEPTH.
 */
#include "mergekit/recipe_config.h"

#include "core/hash.h"

#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#define HMA__Y_MAX_DEPTH 64
/* Maps with more keys than this get a hash table for the duplicate check,
 * so that a long (fuzzed) map costs O(n), not O(n^2). */
#define HMA__Y_HASH_FROM 16

/* At most 60 bytes of user text with control bytes replaced: a message
 * stays one short line whatever the text holds ("a\nb" keys, %0A in tags). */
const char *hma__yclean(const char *s, char buf[72]) {
    size_t j = 0;
    for (; s && *s && j < 60; s++) buf[j++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
    if (s && *s) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j] = 0;
    return buf;
}

/* ---- nodes -------------------------------------------------------------- */

void hma__ynode_free(hma__ynode *n) {
    if (!n) return;
    for (size_t i = 0; i < n->n; i++) {
        hma__ynode_free(n->items[i]);
        if (n->keys) hma__free(n->keys[i]);
    }
    hma__free(n->items);
    hma__free(n->keys);
    hma__free(n->key_lines);
    hma__free(n->str);
    hma__free(n);
}

static hma__ynode *ynode_new(hma__ynode_kind kind, int line) {
    hma__ynode *n = hma__calloc(1, sizeof *n);
    if (n) {
        n->kind = kind;
        n->line = line;
    }
    return n;
}

typedef struct yframe {
    hma__ynode *node;
    size_t cap;
    char *key;      /* MAP: the key read, waiting for its value (NULL: expecting a key) */
    int key_line;
    hma__names names; /* MAP with many keys: key -> index */
} yframe;

typedef struct yctx {
    const char *what;
    hma__ynode *root;
    yframe st[HMA__Y_MAX_DEPTH];
    int depth;
    int docs;
} yctx;

static const char *key_at(const void *owner, size_t idx, size_t *len) {
    const hma__ynode *m = owner;
    *len = strlen(m->keys[idx]);
    return m->keys[idx];
}

/* Append child to the open container on top of the stack (or make it the
 * root). Takes ownership of child (freed on failure). */
static int attach(yctx *c, hma__ynode *child) {
    if (c->depth == 0) {
        c->root = child;
        return HMA_OK;
    }
    yframe *f = &c->st[c->depth - 1];
    hma__ynode *p = f->node;
    if (p->n == f->cap) {
        size_t nc = f->cap ? 2 * f->cap : 4;
        hma__ynode **ni = hma__realloc(p->items, nc * sizeof *ni);
        if (!ni) goto oom;
        p->items = ni;
        if (p->kind == HMA__Y_MAP) {
            char **nk = hma__realloc(p->keys, nc * sizeof *nk);
            if (!nk) goto oom;
            p->keys = nk;
            int *nl = hma__realloc(p->key_lines, nc * sizeof *nl);
            if (!nl) goto oom;
            p->key_lines = nl;
        }
        f->cap = nc;
    }
    if (p->kind == HMA__Y_MAP) {
        p->keys[p->n] = f->key;
        p->key_lines[p->n] = f->key_line;
        f->key = NULL;
        if (p->n + 1 > HMA__Y_HASH_FROM) {
            if (p->n + 1 == HMA__Y_HASH_FROM + 1)
                for (size_t i = 0; i < p->n; i++)
                    if (hma__names_add(&f->names, p->keys[i], strlen(p->keys[i]), i)) goto oom_key;
            if (hma__names_add(&f->names, p->keys[p->n], strlen(p->keys[p->n]), p->n)) goto oom_key;
        }
    }
    p->items[p->n++] = child;
    return HMA_OK;
oom_key:
    /* the key is stored in p->keys[p->n] but not counted: free it here */
    hma__free(p->keys[p->n]);
oom:
    hma__ynode_free(child);
    return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory reading the YAML text", c->what);
}

/* A key is about to be stored in the map on top: refuse a repeat. */
static int check_key(yctx *c, const char *key, int line) {
    yframe *f = &c->st[c->depth - 1];
    const hma__ynode *m = f->node;
    size_t at = HMA_NPOS;
    if (m->n > HMA__Y_HASH_FROM) {
        at = hma__names_find(&f->names, key, strlen(key), key_at, m);
    } else {
        for (size_t i = 0; i < m->n; i++)
            if (strcmp(m->keys[i], key) == 0) {
                at = i;
                break;
            }
    }
    char b[72];
    if (at != HMA_NPOS)
        return hma__fail(HMA_ERR_RECIPE, "%s:%d: duplicate key '%s' (first on line %d)", c->what, line, hma__yclean(key, b),
                         m->key_lines[at]);
    if (strcmp(key, "<<") == 0)
        return hma__fail(HMA_ERR_RECIPE, "%s:%d: YAML merge keys (<<) are not supported in a recipe", c->what,
                         line);
    return HMA_OK;
}

/* ---- tags --------------------------------------------------------------- */

#define CORE_TAG "tag:yaml.org,2002:"

/* The core scalar tags force a type: !!str (or the non-specific "!") makes
 * a string; !!int, !!float, !!bool and !!null require the text to be one. */
static int apply_scalar_tag(yctx *c, hma__ynode *n, const char *tag) {
    if (!tag) return HMA_OK;
    if (strcmp(tag, "!") == 0 || strcmp(tag, CORE_TAG "str") == 0) {
        n->quoted = 1;
        return HMA_OK;
    }
    static const struct {
        const char *name;
        hma__ytype type;
    } k_tags[] = {{"int", HMA__YT_INT}, {"float", HMA__YT_FLOAT}, {"bool", HMA__YT_BOOL}, {"null", HMA__YT_NULL}};
    if (strncmp(tag, CORE_TAG, strlen(CORE_TAG)) == 0) {
        const char *t = tag + strlen(CORE_TAG);
        for (size_t i = 0; i < sizeof k_tags / sizeof k_tags[0]; i++) {
            if (strcmp(t, k_tags[i].name) != 0) continue;
            n->quoted = 0;
            hma__yscalar v;
            hma__yscalar_type(n, &v);
            /* an int is also a valid !!float */
            if (v.type == k_tags[i].type || (k_tags[i].type == HMA__YT_FLOAT && v.type == HMA__YT_INT))
                return HMA_OK;
            char b[72];
            return hma__fail(HMA_ERR_RECIPE, "%s:%d: '%s' is not a valid !!%s", c->what, n->line, hma__yclean(n->str, b), t);
        }
    }
    char b[72];
    return hma__fail(HMA_ERR_RECIPE, "%s:%d: YAML tag '%s' is not supported in a recipe", c->what, n->line,
                     hma__yclean(tag, b));
}

static int check_container_tag(yctx *c, const char *tag, int line, const char *want) {
    if (!tag || strcmp(tag, "!") == 0) return HMA_OK;
    if (strncmp(tag, CORE_TAG, strlen(CORE_TAG)) == 0 && strcmp(tag + strlen(CORE_TAG), want) == 0) return HMA_OK;
    char b[72];
    return hma__fail(HMA_ERR_RECIPE, "%s:%d: YAML tag '%s' is not supported here (a %s)", c->what, line, hma__yclean(tag, b),
                     strcmp(want, "seq") == 0 ? "list" : "map");
}

/* ---- events ------------------------------------------------------------- */

static int on_scalar(yctx *c, const yaml_event_t *e, int line) {
    char b[72];
    if (e->data.scalar.anchor)
        return hma__fail(HMA_ERR_RECIPE, "%s:%d: YAML anchors (&%s) are not supported in a recipe", c->what, line,
                         hma__yclean((const char *)e->data.scalar.anchor, b));
    size_t len = e->data.scalar.length;
    const char *s = (const char *)e->data.scalar.value;
    if (memchr(s, 0, len))
        return hma__fail(HMA_ERR_RECIPE, "%s:%d: a string holds a NUL character (\\0)", c->what, line);
    if (c->depth > 0 && c->st[c->depth - 1].node->kind == HMA__Y_MAP && !c->st[c->depth - 1].key) {
        int rc = check_key(c, s, line);
        if (rc) return rc;
        char *k = hma__strndup(s, len);
        if (!k) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory reading the YAML text", c->what);
        c->st[c->depth - 1].key = k;
        c->st[c->depth - 1].key_line = line;
        return HMA_OK;
    }
    if (c->depth == 0 && c->root)
        return hma__fail(HMA_ERR_RECIPE, "%s:%d: more than one YAML document", c->what, line);
    hma__ynode *n = ynode_new(HMA__Y_SCALAR, line);
    if (!n || !(n->str = hma__strndup(s, len))) {
        hma__ynode_free(n);
        return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory reading the YAML text", c->what);
    }
    n->quoted = e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    int rc = apply_scalar_tag(c, n, (const char *)e->data.scalar.tag);
    if (rc) {
        hma__ynode_free(n);
        return rc;
    }
    return attach(c, n);
}

static int on_start(yctx *c, hma__ynode_kind kind, const yaml_char_t *anchor, const yaml_char_t *tag, int line) {
    char b[72];
    if (anchor)
        return hma__fail(HMA_ERR_RECIPE, "%s:%d: YAML anchors (&%s) are not supported in a recipe", c->what, line,
                         hma__yclean((const char *)anchor, b));
    int rc = check_container_tag(c, (const char *)tag, line, kind == HMA__Y_SEQ ? "seq" : "map");
    if (rc) return rc;
    if (c->depth > 0 && c->st[c->depth - 1].node->kind == HMA__Y_MAP && !c->st[c->depth - 1].key)
        return hma__fail(HMA_ERR_RECIPE, "%s:%d: a map key must be a plain string, not a %s", c->what, line,
                         kind == HMA__Y_SEQ ? "list" : "map");
    if (c->depth == HMA__Y_MAX_DEPTH)
        return hma__fail(HMA_ERR_RECIPE, "%s:%d: lists and maps nested deeper than %d levels", c->what, line,
                         HMA__Y_MAX_DEPTH);
    hma__ynode *n = ynode_new(kind, line);
    if (!n) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory reading the YAML text", c->what);
    rc = attach(c, n);
    if (rc) return rc;
    yframe *f = &c->st[c->depth++];
    memset(f, 0, sizeof *f);
    f->node = n;
    return HMA_OK;
}

static void pop(yctx *c) {
    yframe *f = &c->st[--c->depth];
    hma__free(f->key);
    hma__names_free(&f->names);
    memset(f, 0, sizeof *f);
}

/* libyaml's error as "WHAT:LINE: problem". */
static int syntax_error(yctx *c, const yaml_parser_t *p, const char *text, size_t len) {
    if (p->error == YAML_MEMORY_ERROR)
        return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory reading the YAML text", c->what);
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->error == YAML_READER_ERROR) {
        /* reader errors carry a byte offset, not a mark */
        size_t off = p->problem_offset < len ? p->problem_offset : len;
        int line = 1;
        for (size_t i = 0; i < off; i++) line += text[i] == '\n';
        if (p->problem_value >= 0)
            return hma__fail(HMA_ERR_RECIPE, "%s:%d: not valid YAML text: %s (byte %zu: #%X)", c->what, line, problem,
                             off, (unsigned)p->problem_value);
        return hma__fail(HMA_ERR_RECIPE, "%s:%d: not valid YAML text: %s (byte %zu)", c->what, line, problem, off);
    }
    int line = (int)p->problem_mark.line + 1;
    size_t at = p->problem_mark.index;
    /* the commonest mistake gets a hint: YAML never indents with tabs */
    const char *hint = at < len && text[at] == '\t' ? " (a tab: YAML indents with spaces only)" : "";
    if (p->context)
        return hma__fail(HMA_ERR_RECIPE, "%s:%d: YAML syntax error: %s, %s (line %d)%s", c->what, line, problem,
                         p->context, (int)p->context_mark.line + 1, hint);
    return hma__fail(HMA_ERR_RECIPE, "%s:%d: YAML syntax error: %s%s", c->what, line, problem, hint);
}

int hma__yaml_parse(const char *text, size_t len, const char *what, hma__ynode **out) {
    *out = NULL;
    if (!what) what = "recipe";
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory (libyaml)", what);
    yaml_parser_set_input_string(&p, (const unsigned char *)(text ? text : ""), text ? len : 0);
    yctx c;
    memset(&c, 0, sizeof c);
    c.what = what;
    int rc = HMA_OK, done = 0;
    while (!rc && !done) {
        yaml_event_t e;
        if (!yaml_parser_parse(&p, &e)) {
            rc = syntax_error(&c, &p, text ? text : "", text ? len : 0);
            break;
        }
        int line = (int)e.start_mark.line + 1;
        switch (e.type) {
        case YAML_STREAM_END_EVENT: done = 1; break;
        case YAML_DOCUMENT_START_EVENT:
            if (++c.docs > 1)
                rc = hma__fail(HMA_ERR_RECIPE, "%s:%d: a second YAML document (---): a recipe is one document", what,
                               line);
            break;
        case YAML_ALIAS_EVENT: {
            char b[72];
            rc = hma__fail(HMA_ERR_RECIPE, "%s:%d: YAML aliases (*%s) are not supported in a recipe", what, line,
                           hma__yclean((const char *)e.data.alias.anchor, b));
            break;
        }
        case YAML_SCALAR_EVENT: rc = on_scalar(&c, &e, line); break;
        case YAML_SEQUENCE_START_EVENT:
            rc = on_start(&c, HMA__Y_SEQ, e.data.sequence_start.anchor, e.data.sequence_start.tag, line);
            break;
        case YAML_MAPPING_START_EVENT:
            rc = on_start(&c, HMA__Y_MAP, e.data.mapping_start.anchor, e.data.mapping_start.tag, line);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (c.depth > 0) pop(&c);
            break;
        default: break;
        }
        yaml_event_delete(&e);
    }
    while (c.depth > 0) pop(&c);
    yaml_parser_delete(&p);
    if (!rc && !c.root)
        rc = hma__fail(HMA_ERR_RECIPE, "%s:1: the text holds no YAML document (an empty recipe)", what);
    if (rc) {
        hma__ynode_free(c.root);
        return rc;
    }
    *out = c.root;
    return HMA_OK;
}

/* ---- typing of plain scalars (PyYAML's YAML 1.1 resolver) ---------------- */

static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* Python-like float() of a validated decimal text (no '_'), independent of
 * the caller's locale (a program may have set LC_NUMERIC to "de_DE"). */
static double c_strtod(const char *s) {
    locale_t cl = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    double v;
    if (cl) {
        v = strtod_l(s, NULL, cl);
        freelocale(cl);
    } else {
        v = strtod(s, NULL);
    }
    return v;
}

/* s without '_' into buf (cap bytes); 0 if it does not fit. */
static int strip_us(const char *s, char *buf, size_t cap) {
    size_t j = 0;
    for (; *s; s++) {
        if (*s == '_') continue;
        if (j + 1 >= cap) return 0;
        buf[j++] = *s;
    }
    buf[j] = 0;
    return 1;
}

static int match_any(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return 1;
    return 0;
}

/* [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+ at s; returns the end or NULL. */
static const char *sexa_int_part(const char *s) {
    if (*s == '-' || *s == '+') s++;
    if (!is_digit(*s)) return NULL;
    while (is_digit(*s) || *s == '_') s++;
    int parts = 0;
    while (*s == ':') {
        s++;
        if (!is_digit(*s)) return NULL;
        if (is_digit(s[1])) {
            if (*s > '5') return NULL;
            s++;
        }
        s++;
        parts++;
    }
    return parts ? s : NULL;
}

/* PyYAML: base-60 value of "a:b:c" (digits stripped of '_'), last part may
 * carry a fraction. */
static double sexa_value(const char *s) {
    double sign = 1.0;
    if (*s == '-' || *s == '+') sign = *s++ == '-' ? -1.0 : 1.0;
    double v = 0.0;
    char buf[128];
    while (*s) {
        size_t k = 0;
        while (*s && *s != ':' && k + 1 < sizeof buf) {
            if (*s != '_') buf[k++] = *s;
            s++;
        }
        buf[k] = 0;
        v = v * 60.0 + c_strtod(buf);
        if (*s == ':') s++;
    }
    return sign * v;
}

/* Integer text of `base` digits (underscores skipped): value as double and,
 * when it fits, as long long. */
static void int_value(const char *d, int base, int neg, hma__yscalar *out) {
    unsigned long long u = 0;
    int fits = 1;
    double v = 0.0;
    for (; *d; d++) {
        if (*d == '_') continue;
        int dv = is_digit(*d) ? *d - '0' : (*d | 0x20) - 'a' + 10;
        v = v * base + dv;
        if (u > (ULLONG_MAX - (unsigned)dv) / (unsigned)base) fits = 0;
        else u = u * (unsigned)base + (unsigned)dv;
    }
    out->num = neg ? -v : v;
    if (fits && u <= (unsigned long long)LLONG_MAX) {
        out->int_ok = 1;
        out->ival = neg ? -(long long)u : (long long)u;
    }
}

/* Python's float() grammar without '_', inf or nan: [-+]?(D+(.D*)?|.D+)([eE][-+]?D+)? */
static int decimal_float_text(const char *s) {
    if (*s == '-' || *s == '+') s++;
    int digits = 0;
    while (is_digit(*s)) s++, digits++;
    if (*s == '.') {
        s++;
        while (is_digit(*s)) s++, digits++;
    }
    if (!digits) return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+') s++;
        if (!is_digit(*s)) return 0;
        while (is_digit(*s)) s++;
    }
    return *s == 0;
}

/* PyYAML's float: [-+]?[0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)? | \.[0-9][0-9_]*([eE][-+][0-9]+)? */
static int pyyaml_float_text(const char *s) {
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    if (is_digit(*p)) {
        while (is_digit(*p) || *p == '_') p++;
        if (*p != '.') return 0;
        p++;
        while (is_digit(*p) || *p == '_') p++;
    } else if (p == s && *p == '.' && is_digit(p[1])) {
        p++;
        while (is_digit(*p) || *p == '_') p++;
    } else {
        return 0;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p != '-' && *p != '+') return 0;
        p++;
        if (!is_digit(*p)) return 0;
        while (is_digit(*p)) p++;
    }
    return *p == 0;
}

void hma__yscalar_type(const hma__ynode *n, hma__yscalar *out) {
    memset(out, 0, sizeof *out);
    out->type = HMA__YT_STR;
    if (!n || n->kind != HMA__Y_SCALAR || !n->str) return;
    const char *s = n->str;
    if (!n->quoted) {
        static const char *const k_null[] = {"", "~", "null", "Null", "NULL", NULL};
        static const char *const k_true[] = {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", NULL};
        static const char *const k_false[] = {"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", NULL};
        static const char *const k_inf[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", NULL};
        static const char *const k_ninf[] = {"-.inf", "-.Inf", "-.INF", NULL};
        static const char *const k_nan[] = {".nan", ".NaN", ".NAN", NULL};
        if (match_any(s, k_null)) {
            out->type = HMA__YT_NULL;
            return;
        }
        if (match_any(s, k_true) || match_any(s, k_false)) {
            out->type = HMA__YT_BOOL;
            out->num = match_any(s, k_true) ? 1.0 : 0.0;
            return;
        }
        if (match_any(s, k_inf) || match_any(s, k_ninf) || match_any(s, k_nan)) {
            out->type = HMA__YT_FLOAT;
            out->num = match_any(s, k_nan) ? NAN : match_any(s, k_ninf) ? -INFINITY : INFINITY;
            return;
        }
        /* int: 0b.., 0x.., 0[0-7_]+ (octal), 0 | [1-9][0-9_]*, sexagesimal */
        const char *d = s;
        int neg = *d == '-';
        if (*d == '-' || *d == '+') d++;
        size_t dl = strlen(d);
        int is_int = 0, base = 10;
        const char *digits = d;
        if (dl > 2 && d[0] == '0' && d[1] == 'b' && strspn(d + 2, "01_") == dl - 2) {
            is_int = 1, base = 2, digits = d + 2;
        } else if (dl > 2 && d[0] == '0' && d[1] == 'x' && strspn(d + 2, "0123456789abcdefABCDEF_") == dl - 2) {
            is_int = 1, base = 16, digits = d + 2;
        } else if (dl > 1 && d[0] == '0' && strspn(d + 1, "01234567_") == dl - 1) {
            is_int = 1, base = 8, digits = d + 1;
        } else if (dl == 1 && d[0] == '0') {
            is_int = 1;
        } else if (dl > 0 && d[0] >= '1' && d[0] <= '9' && strspn(d, "0123456789_") == dl) {
            is_int = 1;
        }
        /* "0b_" has no digit: PyYAML's int("", 2) would fail; keep it a string */
        if (is_int && base != 10 && base != 8 && strspn(digits, "_") == strlen(digits)) is_int = 0;
        if (is_int) {
            out->type = HMA__YT_INT;
            int_value(digits, base, neg, out);
            if (base == 10) {
                char buf[512];
                if (strip_us(s, buf, sizeof buf)) out->num = c_strtod(buf); /* correctly rounded */
            }
            return;
        }
        const char *e = sexa_int_part(s);
        if (e && *e == 0 && s[neg || *s == '+'] != '0') {
            out->type = HMA__YT_INT;
            out->num = sexa_value(s);
            if (fabs(out->num) < 9e15) {
                out->int_ok = 1;
                out->ival = (long long)out->num;
            }
            return;
        }
        if (e && *e == '.') {
            const char *f = e + 1;
            while (is_digit(*f) || *f == '_') f++;
            if (*f == 0) {
                out->type = HMA__YT_FLOAT;
                out->num = sexa_value(s);
                return;
            }
        }
        char buf[512];
        if (pyyaml_float_text(s) && strip_us(s, buf, sizeof buf)) {
            out->type = HMA__YT_FLOAT;
            out->num = c_strtod(buf);
            return;
        }
        /* PyYAML leaves 1e-5, 1.0e5, -.5 strings; pydantic then reads them
         * as floats where a number goes (mergekit's float fields). */
        if (decimal_float_text(s)) {
            out->numeric = 1;
            out->num = c_strtod(s);
        }
    }
}
