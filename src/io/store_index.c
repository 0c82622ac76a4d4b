/* store_index.c - open a sharded checkpoint through its index file: check
 * the weight_map, open every shard it names, and check that each tensor lies
 * in exactly the shard the index maps it to. */
#include "io/store_impl.h"

#include "core/fileio.h"
#include "text/json.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct shard_name {
    const char *name;
    size_t len;
} shard_name;

/* Everything one opening of an index holds; freed by index_free(). */
typedef struct index_ctx {
    const char *index; /* path of the index file */
    char *text;
    size_t text_len;
    hma__json_doc *doc;
    const hma__json *wm; /* the weight_map object */
    size_t nw;           /* its entries */
    shard_name *shards;  /* distinct shard names, sorted */
    size_t ns;
    size_t *shard_of;       /* per weight_map entry: its shard */
    unsigned char *matched; /* per weight_map entry: found in its shard */
    hma__names names;       /* weight_map by tensor name */
    hma__st_header h;       /* the shard being opened */
} index_ctx;

static void index_free(index_ctx *c) {
    hma__st_header_free(&c->h);
    hma__names_free(&c->names);
    hma__free(c->matched);
    hma__free(c->shard_of);
    hma__free(c->shards);
    hma__json_free(c->doc);
    hma__free(c->text);
}

static int oom(const index_ctx *c) { return hma__fail(HMA_ERR_NO_MEMORY, "%.400s: out of memory", c->index); }

static int cmp_shard(const void *a, const void *b) {
    const shard_name *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* 1 if s[0..n) holds a byte < 0x20 or 0x7f. */
static int has_control(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 1;
    return 0;
}

/* The whole index file, at most HMA_MAX_HEADER_SIZE bytes. */
static int read_index_text(index_ctx *c) {
    int fd, rc;
    struct stat st;
    if ((rc = hma__open_read(c->index, &fd, &st))) return rc;
    if ((uint64_t)st.st_size > HMA_MAX_HEADER_SIZE) {
        close(fd);
        return hma__fail(HMA_ERR_BAD_INDEX, "%.400s: index is %lld bytes (expected at most %u)", c->index,
                         (long long)st.st_size, HMA_MAX_HEADER_SIZE);
    }
    size_t n = (size_t)st.st_size;
    c->text = hma__malloc(n ? n : 1);
    if (!c->text) {
        close(fd);
        return oom(c);
    }
    rc = hma__pread_upto(fd, c->index, c->text, n, 0, &c->text_len);
    close(fd);
    return rc;
}

/* Parse the JSON and find the weight_map: {"metadata": {...}?, "weight_map": {...}}. */
static int parse_index(index_ctx *c) {
    char what[420];
    snprintf(what, sizeof what, "%.400s:", c->index);
    int rc = hma__json_parse(c->text, c->text_len, what, &c->doc, NULL);
    if (rc) return rc;
    const hma__json *root = hma__json_root(c->doc);
    if (root->type != HMA__JSON_OBJECT)
        return hma__fail(HMA_ERR_BAD_INDEX, "%.400s: byte %zu: index is not a JSON object (expected {\"weight_map\": {...}})",
                         c->index, root->offset);
    const hma__json *md = hma__json_get(root, "metadata");
    if (md && md->type != HMA__JSON_OBJECT)
        return hma__fail(HMA_ERR_BAD_INDEX, "%.400s: byte %zu: \"metadata\" is not an object (expected an object)",
                         c->index, md->offset);
    const hma__json *wm = hma__json_get(root, "weight_map");
    if (!wm || wm->type != HMA__JSON_OBJECT || wm->len == 0)
        return hma__fail(HMA_ERR_BAD_INDEX,
                         "%.400s: %s (expected \"weight_map\": an object mapping each tensor name to its shard file)",
                         c->index,
                         !wm                              ? "no \"weight_map\""
                         : wm->type != HMA__JSON_OBJECT ? "\"weight_map\" is not an object"
                                                          : "\"weight_map\" is empty");
    c->wm = wm;
    c->nw = wm->len;
    return HMA_OK;
}

static int check_shard_path(const char *index, const hma__json_member *m) {
    const char *p = m->value.v.str;
    size_t n = m->value.len;
    char q[200], qs[200];
    hma__quote_name(q, sizeof q, m->key, m->key_len);
    hma__quote_name(qs, sizeof qs, p, n);
    const char *why = NULL;
    if (n == 0) why = "is empty";
    else if (memchr(p, 0, n)) why = "contains a NUL character";
    else if (has_control(p, n)) why = "contains a control character"; /* would break one-line messages (fuzz_index) */
    else if (p[0] == '/') why = "is absolute";
    else if (strstr(p, "..")) why = "contains \"..\"";
    else if (memchr(p, '/', n)) why = "contains '/'";
    if (why)
        return hma__fail(HMA_ERR_BAD_SHARD_PATH,
                         "%.400s: tensor '%s': shard path \"%s\" %s (expected a plain file name in the index's folder)",
                         index, q, qs, why);
    return HMA_OK;
}

/* Every weight_map entry: a valid tensor name mapped to a plain file name. */
static int check_weight_map(const index_ctx *c) {
    for (size_t i = 0; i < c->nw; i++) {
        const hma__json_member *m = &c->wm->v.members[i];
        char q[200];
        hma__quote_name(q, sizeof q, m->key, m->key_len);
        if (m->value.type != HMA__JSON_STRING)
            return hma__fail(HMA_ERR_BAD_INDEX,
                             "%.400s: byte %zu: tensor '%s': shard is not a string (expected a file name)", c->index,
                             m->value.offset, q);
        if (m->key_len == 0 || memchr(m->key, 0, m->key_len) || m->key_len > HMA_MAX_NAME)
            return hma__fail(HMA_ERR_BAD_NAME,
                             "%.400s: byte %zu: tensor name '%s' is empty, too long or contains NUL (expected a valid name)",
                             c->index, m->key_offset, q);
        int rc = check_shard_path(c->index, m);
        if (rc) return rc;
    }
    return HMA_OK;
}

/* The distinct shards in name order, and each entry's shard. */
static int list_shards(index_ctx *c) {
    size_t nw = c->nw;
    c->shards = hma__malloc(nw * sizeof *c->shards);
    c->shard_of = hma__malloc(nw * sizeof *c->shard_of);
    c->matched = hma__calloc(nw, 1);
    if (!c->shards || !c->shard_of || !c->matched) return oom(c);
    for (size_t i = 0; i < nw; i++) {
        c->shards[i].name = c->wm->v.members[i].value.v.str;
        c->shards[i].len = c->wm->v.members[i].value.len;
    }
    qsort(c->shards, nw, sizeof *c->shards, cmp_shard);
    size_t ns = 0;
    for (size_t i = 0; i < nw; i++)
        if (ns == 0 || cmp_shard(&c->shards[ns - 1], &c->shards[i]) != 0) c->shards[ns++] = c->shards[i];
    c->ns = ns;
    for (size_t i = 0; i < nw; i++) {
        shard_name key = {c->wm->v.members[i].value.v.str, c->wm->v.members[i].value.len};
        const shard_name *f = bsearch(&key, c->shards, ns, sizeof *c->shards, cmp_shard);
        c->shard_of[i] = (size_t)(f - c->shards);
    }
    return HMA_OK;
}

static const char *wm_name_at(const void *owner, size_t idx, size_t *len) {
    const hma__json_member *m = &((const index_ctx *)owner)->wm->v.members[idx];
    *len = m->key_len;
    return m->key;
}

/* The weight_map by tensor name (keys are unique: the JSON reader rejects duplicates). */
static int index_names(index_ctx *c) {
    if (hma__names_reserve(&c->names, c->nw)) return oom(c);
    for (size_t i = 0; i < c->nw; i++)
        if (hma__names_add(&c->names, c->wm->v.members[i].key, c->wm->v.members[i].key_len, i)) return oom(c);
    return HMA_OK;
}

/* Each tensor of shard k (header in c->h) is listed in the index, for shard k. */
static int match_shard(index_ctx *c, size_t k, const char *shard_path) {
    for (size_t i = 0; i < c->h.n; i++) {
        const char *nm = c->h.tensors[i].name;
        size_t nl = strlen(nm);
        size_t e = hma__names_find(&c->names, nm, nl, wm_name_at, c);
        char q[200], qs[200];
        hma__quote_name(q, sizeof q, nm, nl);
        if (e == HMA_NPOS)
            return hma__fail(HMA_ERR_INDEX_MISMATCH,
                             "%.400s: tensor '%s' is in this shard but not in the index %.300s (expected every tensor listed in weight_map)",
                             shard_path, q, c->index);
        if (c->shard_of[e] != k) {
            const shard_name *sn = &c->shards[c->shard_of[e]];
            hma__quote_name(qs, sizeof qs, sn->name, sn->len);
            return hma__fail(HMA_ERR_INDEX_MISMATCH,
                             "%.400s: tensor '%s' is in this shard but the index maps it to \"%s\" (expected each tensor in exactly its one shard)",
                             shard_path, q, qs);
        }
        c->matched[e] = 1;
    }
    return HMA_OK;
}

/* Open shard k (a plain name, checked) next to the index, check it against
 * the index and append its tensors to the store. */
static int open_shard(index_ctx *c, hma_store *s, const char *dir, size_t k) {
    /* shard names hold no NUL (checked), so the decoded string is exact */
    char *name = hma__strndup(c->shards[k].name, c->shards[k].len);
    char *path = name ? hma__path_join(dir, name) : NULL;
    hma__free(name);
    if (!path) return oom(c);
    int rc = hma__store_add_file(s, path);
    hma__free(path);
    if (rc) return rc;
    hma__store_file *f = &s->files[k];
    if ((rc = hma__store_open_file(f->path, s->flags, f, &c->h))) return rc;
    if ((rc = hma__store_register_file(f))) return rc;
    if ((rc = match_shard(c, k, f->path))) return rc;
    if (c->h.n > SIZE_MAX / sizeof(hma_tensor) - s->n)
        return hma__fail(HMA_ERR_OVERFLOW, "%.400s: too many tensors", c->index);
    size_t total = s->n + c->h.n;
    /* hma_tensor.store pointers stay valid across realloc: they point at the
     * store, not the array. */
    hma_tensor *grown = hma__realloc(s->tensors, (total ? total : 1) * sizeof *grown);
    if (!grown) return oom(c);
    s->tensors = grown;
    hma__store_take_tensors(s, &c->h, k);
    if (k == 0) hma__store_take_meta(s, &c->h);
    hma__st_header_free(&c->h);
    return HMA_OK;
}

/* Every weight_map entry was found in its shard. */
static int check_all_matched(const index_ctx *c) {
    for (size_t i = 0; i < c->nw; i++) {
        if (c->matched[i]) continue;
        const hma__json_member *m = &c->wm->v.members[i];
        char q[200], qs[200];
        hma__quote_name(q, sizeof q, m->key, m->key_len);
        hma__quote_name(qs, sizeof qs, m->value.v.str, m->value.len);
        return hma__fail(HMA_ERR_INDEX_MISMATCH,
                         "%.400s: tensor '%s': the index maps it to shard \"%s\", which does not contain it (expected it there)",
                         c->index, q, qs);
    }
    return HMA_OK;
}

int hma__store_open_index(hma_store *s, const char *index) {
    index_ctx c;
    memset(&c, 0, sizeof c);
    c.index = index;
    /* Shards are named relative to the index's folder; an index given
     * without a folder keeps its shards' paths bare too. */
    char *dir = strchr(index, '/') ? hma__path_dir(index) : hma__strdup("");
    int rc = dir ? HMA_OK : oom(&c);
    if (!rc) rc = read_index_text(&c);
    if (!rc) rc = parse_index(&c);
    if (!rc) rc = check_weight_map(&c);
    if (!rc) rc = list_shards(&c);
    if (!rc) rc = index_names(&c);
    if (!rc && !(s->files = hma__calloc(c.ns, sizeof *s->files))) rc = oom(&c);
    for (size_t k = 0; k < c.ns && !rc; k++) rc = open_shard(&c, s, dir, k);
    if (!rc) rc = check_all_matched(&c);
    hma__free(dir);
    index_free(&c);
    return rc;
}
