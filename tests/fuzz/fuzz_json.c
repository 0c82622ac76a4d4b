/*
 * fuzz_json.c - libFuzzer target: the internal strict JSON reader
 * (src/text/json.c) on raw bytes. On success the whole DOM is walked (every
 * string and key read to its stated length, offsets checked against the
 * input); on failure the error offset must lie within the input.
 */
#include "fuzz_common.h"

#include "internal.h"
#include "text/json.h"

static uint64_t walk(const hma__json *v, size_t size, unsigned depth) {
    FZ_CHECK(depth <= HMA_MAX_JSON_DEPTH + 1);
    FZ_CHECK(v->offset < size);
    uint64_t h = (uint64_t)v->type;
    switch (v->type) {
    case HMA__JSON_STRING:
        for (size_t i = 0; i < v->len; i++) h = h * 31 + (unsigned char)v->v.str[i];
        FZ_CHECK(v->v.str[v->len] == 0);
        break;
    case HMA__JSON_NUMBER:
        FZ_CHECK(v->len > 0 && v->offset + v->len <= size);
        for (size_t i = 0; i < v->len; i++) h = h * 31 + (unsigned char)v->v.str[i];
        if (v->is_uint) h ^= v->u;
        break;
    case HMA__JSON_ARRAY:
        for (size_t i = 0; i < v->len; i++) h ^= walk(&v->v.items[i], size, depth + 1);
        break;
    case HMA__JSON_OBJECT:
        for (size_t i = 0; i < v->len; i++) {
            const hma__json_member *m = &v->v.members[i];
            FZ_CHECK(m->key_offset < size);
            for (size_t k = 0; k < m->key_len; k++) h = h * 31 + (unsigned char)m->key[k];
            FZ_CHECK(m->key[m->key_len] == 0);
            /* keys are unique, and the lookup finds the first of equal C strings */
            if (!memchr(m->key, 0, m->key_len)) FZ_CHECK(hma__json_get(v, m->key) != NULL);
            h ^= walk(&m->value, size, depth + 1);
        }
        break;
    default: break;
    }
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* an exact-size copy, so a read past the end is an ASan report */
    char *text = malloc(size ? size : 1);
    FZ_CHECK(text != NULL);
    if (size) memcpy(text, data, size);
    hma__json_doc *doc = NULL;
    size_t off = (size_t)-1;
    int rc = hma__json_parse(text, size, "fuzz", &doc, &off);
    if (rc == HMA_OK) {
        FZ_CHECK(doc != NULL);
        volatile uint64_t h = walk(hma__json_root(doc), size, 0);
        (void)h;
        hma__json_free(doc);
    } else {
        FZ_CHECK(off <= size);
        FZ_CHECK(hma_last_error_code() == rc);
        FZ_CHECK(rc == HMA_ERR_JSON_SYNTAX || rc == HMA_ERR_JSON_UTF8 || rc == HMA_ERR_JSON_DEPTH ||
                 rc == HMA_ERR_DUPLICATE_KEY || rc == HMA_ERR_NO_MEMORY);
    }
    free(text);
    return 0;
}
