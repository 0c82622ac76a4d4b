/*
 * groups.c - layer grouping: which layer a tensor name belongs to, how
 * layers fall into groups ("blocks:K", "split:...", "layers", "all"), name
 * rules (substring or glob) and mergekit-style gradients.
 */
#include "merge/groups.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Name families that carry a layer number right after them. */
static const char *const k_layer_families[] = {
    "model.layers.",  "transformer.h.",      "gpt_neox.layers.", "model.decoder.layers.",
    "transformer.blocks.", "encoder.layer.", "blk.",
};

/* Parse "N." or "N<end>" at p (1..9 decimal digits); -1 if not there. */
static long parse_layer_number(const char *p) {
    long v = 0;
    int nd = 0;
    while (p[nd] >= '0' && p[nd] <= '9') {
        if (nd == 9) return -1;
        v = v * 10 + (p[nd] - '0');
        nd++;
    }
    if (nd == 0 || (p[nd] != '.' && p[nd] != '\0')) return -1;
    return v;
}

long hma_layer_from_name(const char *name) { return hma__layer_span(name, NULL, NULL); }

long hma__layer_span(const char *name, size_t *pos, size_t *len) {
    if (!name) return -1;
    long best = -1;
    size_t best_pos = (size_t)-1, best_len = 0;
    /* The leftmost family occurrence that starts the name or follows a '.'
     * wins, so "model.decoder.layers.3." is never read as something else. */
    for (size_t f = 0; f < sizeof k_layer_families / sizeof k_layer_families[0]; f++) {
        const char *fam = k_layer_families[f];
        size_t fl = strlen(fam);
        for (const char *p = strstr(name, fam); p; p = strstr(p + 1, fam)) {
            if (p != name && p[-1] != '.') continue;
            long v = parse_layer_number(p + fl);
            if (v < 0) continue;
            size_t at = (size_t)(p - name);
            if (at < best_pos) {
                best_pos = at;
                best = v;
                best_len = fl;
            }
            break;
        }
    }
    if (best >= 0) {
        /* the digits start right after the family; parse_layer_number
         * accepted 1..9 of them */
        size_t d = best_pos + best_len, nd = 0;
        while (name[d + nd] >= '0' && name[d + nd] <= '9') nd++;
        if (pos) *pos = d;
        if (len) *len = nd;
    }
    return best;
}

int hma_is_embedding_name(const char *name) {
    static const char *const emb[] = {"embed_tokens", "wte", "word_embeddings",
                                      "tok_embeddings", "token_embd", "embed_in"};
    if (!name) return 0;
    for (size_t i = 0; i < sizeof emb / sizeof emb[0]; i++)
        if (strstr(name, emb[i])) return 1;
    return 0;
}

double hma_gradient_eval(const double *anchors, size_t n, double t) {
    if (!anchors || n == 0) return NAN;
    if (n == 1) return anchors[0];
    if (!(t > 0.0)) t = 0.0; /* also maps NaN to 0 */
    if (t > 1.0) t = 1.0;
    double s = t * (double)(n - 1);
    size_t j = (size_t)floor(s);
    if (j >= n - 1) return anchors[n - 1];
    double f = s - (double)j;
    return anchors[j] + f * (anchors[j + 1] - anchors[j]);
}

/* ---- group specs ---------------------------------------------------------- */

void hma__groupspec_free(hma__groupspec *gs) {
    if (!gs) return;
    hma__free(gs->splits);
    hma__free(gs->text);
    memset(gs, 0, sizeof *gs);
}

/* Strict decimal integer in [lo, hi] from s[0..n). */
static int parse_num(const char *s, size_t n, long lo, long hi, long *out) {
    if (n == 0 || n > 10) return 0;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

int hma__groupspec_parse(const char *spec, hma__groupspec *gs) {
    if (!spec || !gs) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "group spec: NULL argument");
    hma__groupspec g;
    memset(&g, 0, sizeof g);
    if (strcmp(spec, "all") == 0 || strcmp(spec, "none") == 0) {
        g.kind = HMA__G_ALL;
    } else if (strcmp(spec, "layers") == 0) {
        g.kind = HMA__G_LAYERS;
    } else if (strncmp(spec, "blocks:", 7) == 0) {
        long k;
        if (!parse_num(spec + 7, strlen(spec + 7), 1, (long)HMA__MAX_GROUPS, &k))
            return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                             "group spec '%s': expected blocks:K with K in 1..%u", spec,
                             HMA__MAX_GROUPS);
        g.kind = HMA__G_BLOCKS;
        g.k = (size_t)k;
    } else if (strncmp(spec, "split:", 6) == 0) {
        const char *p = spec + 6;
        size_t cnt = 1;
        for (const char *q = p; *q; q++) cnt += (*q == ',');
        if (cnt >= HMA__MAX_GROUPS)
            return hma__fail(HMA_ERR_INVALID_ARGUMENT, "group spec '%s': too many split points", spec);
        g.splits = hma__malloc(cnt * sizeof *g.splits);
        if (!g.splits) return hma__fail(HMA_ERR_NO_MEMORY, "group spec '%s': out of memory", spec);
        for (size_t i = 0; i < cnt; i++) {
            const char *e = strchr(p, ',');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            long v;
            if (!parse_num(p, n, 0, 999999999L, &v) || (i > 0 && v <= g.splits[i - 1])) {
                hma__free(g.splits);
                return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                                 "group spec '%s': expected split:S1,S2,... with strictly "
                                 "increasing layer numbers",
                                 spec);
            }
            g.splits[i] = v;
            p = e ? e + 1 : p + n;
        }
        g.kind = HMA__G_SPLIT;
        g.nsplit = cnt;
    } else {
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "group spec '%s': expected all, none, layers, blocks:K or split:S1,S2,...",
                         spec);
    }
    g.text = hma__strdup(spec);
    if (!g.text) {
        hma__free(g.splits);
        return hma__fail(HMA_ERR_NO_MEMORY, "group spec '%s': out of memory", spec);
    }
    *gs = g;
    return HMA_OK;
}

size_t hma__groupspec_count(const hma__groupspec *gs, long L) {
    switch (gs->kind) {
    case HMA__G_BLOCKS: return gs->k;
    case HMA__G_SPLIT: return gs->nsplit + 1;
    case HMA__G_LAYERS: return L > 0 ? (size_t)L : 1;
    default: return 1;
    }
}

size_t hma__groupspec_group(const hma__groupspec *gs, long L, long layer) {
    if (layer < 0 || L <= 0) return 0;
    switch (gs->kind) {
    case HMA__G_BLOCKS: {
        /* floor(i*K/L) in 64 bits: i < 1e9, K <= 65536 */
        uint64_t g = (uint64_t)layer * gs->k / (uint64_t)L;
        return g < gs->k ? (size_t)g : gs->k - 1;
    }
    case HMA__G_SPLIT:
        for (size_t i = 0; i < gs->nsplit; i++)
            if (layer <= gs->splits[i]) return i;
        return gs->nsplit;
    case HMA__G_LAYERS: return (size_t)layer;
    default: return 0;
    }
}

/* ---- name rules ------------------------------------------------------------ */

static int glob_match(const char *p, const char *s) {
    const char *star_p = NULL, *star_s = NULL;
    while (*s) {
        if (*p == '*') {
            star_p = ++p;
            star_s = s;
        } else if (*p == '?' || *p == *s) {
            p++;
            s++;
        } else if (star_p) {
            p = star_p;
            s = ++star_s;
        } else {
            return 0;
        }
    }
    while (*p == '*') p++;
    return *p == '\0';
}

int hma__rule_match(const char *pattern, const char *name) {
    if (strpbrk(pattern, "*?")) return glob_match(pattern, name);
    return strstr(name, pattern) != NULL;
}
