/*
 * fuzz_groups.c - libFuzzer target: the group-spec parser, name rules and
 * layer detection, alone and inside a merge plan ("the recipe": groups,
 * rules, ratios). Input: newline-separated lines.
 *   line 1          a group spec (as `hma merge --groups`)
 *   "R<pat>=<grp>"  a name rule (as `hma merge --rule`; <grp> an index or "mean")
 *   "G<spec>"       a second hma_plan_set_groups() after the rules
 *   anything else   a tensor name
 * The names become two small F32 checkpoints (in memfds); the plan's row
 * groups are checked against an independent recomputation from the spec,
 * the rules and hma_layer_from_name(), and every row is merged.
 */
#include "fuzz_common.h"

#include "merge/groups.h"
#include "internal.h"

#define MAX_LINES 48
#define MAX_LINE 256

typedef struct rule {
    char pat[MAX_LINE + 1];
    int group;
    int added;
} rule;

static fz_memfd g_f0, g_f1;

static void json_str(char *out, size_t *o, size_t cap, const char *s) {
    out[(*o)++] = '"';
    for (; *s && *o + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[(*o)++] = '\\';
            out[(*o)++] = (char)c;
        } else if (c < 0x20) {
            *o += (size_t)snprintf(out + *o, cap - *o, "\\u%04x", c);
        } else {
            out[(*o)++] = (char)c;
        }
    }
    out[(*o)++] = '"';
}

/* A safetensors file with one F32 [2] tensor per name. */
static size_t make_file(unsigned char *buf, size_t cap, char names[][MAX_LINE + 1], size_t n, float v0,
                        float v1) {
    char *h = (char *)buf + 8;
    size_t o = 0, hcap = cap - 8 - 8 * MAX_LINES;
    h[o++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (i) h[o++] = ',';
        json_str(h, &o, hcap - 80, names[i]);
        o += (size_t)snprintf(h + o, hcap - o, ":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[%zu,%zu]}",
                              8 * i, 8 * i + 8);
    }
    h[o++] = '}';
    for (int k = 0; k < 8; k++) buf[k] = (unsigned char)((uint64_t)o >> (8 * k));
    unsigned char *d = buf + 8 + o;
    for (size_t i = 0; i < n; i++) {
        memcpy(d + 8 * i, &v0, 4);
        memcpy(d + 8 * i + 4, &v1, 4);
    }
    return 8 + o + 8 * n;
}

static int parse_group(const char *s, int *g) {
    if (!strcmp(s, "mean")) {
        *g = HMA_GROUP_MEAN;
        return 1;
    }
    if (!*s || strlen(s) > 9) return 0;
    long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return 0;
        v = v * 10 + (*s - '0');
    }
    *g = (int)v;
    return 1;
}

static void check_plan(hma_plan *plan, const char *spec, rule *rules, size_t nr) {
    hma__groupspec gs;
    FZ_CHECK(hma__groupspec_parse(spec, &gs) == HMA_OK); /* the plan accepted it */
    long L = hma_plan_layer_count(plan);
    size_t K = hma_plan_group_count(plan);
    FZ_CHECK(K == hma__groupspec_count(&gs, L));
    FZ_CHECK(!strcmp(hma_plan_groups_spec(plan), spec));
    for (size_t i = 0; i < hma_plan_tensor_count(plan); i++) {
        const char *name = hma_plan_tensor_name(plan, i);
        long layer = hma_plan_tensor_layer(plan, i);
        FZ_CHECK(layer == hma_layer_from_name(name));
        FZ_CHECK(layer < L);
        if (hma_plan_tensor_action(plan, i) != HMA_ACTION_MERGE) continue;
        int want = -100;
        for (size_t r = 0; r < nr && want == -100; r++)
            if (rules[r].added && hma__rule_match(rules[r].pat, name)) want = rules[r].group;
        if (want == -100) {
            if (layer >= 0) want = (int)hma__groupspec_group(&gs, L, layer);
            else want = hma_is_embedding_name(name) ? 0 : HMA_GROUP_MEAN;
        }
        int got = hma_plan_tensor_group(plan, i);
        if (got != want) {
            fprintf(stderr, "row %zu '%s': group %d, expected %d\n", i, name, got, want);
            abort();
        }
    }
    hma__groupspec_free(&gs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char lines[MAX_LINES][MAX_LINE + 1];
    static char names[MAX_LINES][MAX_LINE + 1];
    static char specs2[MAX_LINES][MAX_LINE + 1];
    static rule rules[MAX_LINES];
    size_t nl = 0;
    for (size_t pos = 0; pos <= size && nl < MAX_LINES;) {
        size_t e = pos;
        while (e < size && data[e] != '\n') e++;
        size_t len = e - pos < MAX_LINE ? e - pos : MAX_LINE;
        memcpy(lines[nl], data + pos, len);
        lines[nl][len] = 0; /* an embedded NUL simply ends the C string */
        nl++;
        pos = e + 1;
    }
    const char *spec = lines[0];
    size_t nn = 0, nr = 0, ns2 = 0;
    for (size_t i = 1; i < nl; i++) {
        if (lines[i][0] == 'R') {
            char *eq = strrchr(lines[i] + 1, '=');
            rule *r = &rules[nr];
            r->added = 0;
            if (!eq || !parse_group(eq + 1, &r->group)) continue;
            *eq = 0;
            snprintf(r->pat, sizeof r->pat, "%s", lines[i] + 1);
            nr++;
        } else if (lines[i][0] == 'G') {
            snprintf(specs2[ns2++], MAX_LINE + 1, "%s", lines[i] + 1);
        } else if (lines[i][0]) {
            snprintf(names[nn++], MAX_LINE + 1, "%s", lines[i]);
        }
    }

    /* the parsers alone */
    hma__groupspec gs;
    if (hma__groupspec_parse(spec, &gs) == HMA_OK) {
        static const long Ls[] = {0, 1, 2, 7, 33, 1000000};
        for (size_t j = 0; j < sizeof Ls / sizeof Ls[0]; j++) {
            size_t K = hma__groupspec_count(&gs, Ls[j]);
            FZ_CHECK(K >= 1);
            for (long l = 0; l < Ls[j] && l < 64; l++) FZ_CHECK(hma__groupspec_group(&gs, Ls[j], l) < K);
            if (Ls[j] > 0) FZ_CHECK(hma__groupspec_group(&gs, Ls[j], Ls[j] - 1) < K);
        }
        hma__groupspec_free(&gs);
    } else {
        FZ_CHECK(hma_last_error_code() == HMA_ERR_INVALID_ARGUMENT || hma_last_error_code() == HMA_ERR_NO_MEMORY);
    }
    for (size_t i = 0; i < nn; i++) {
        long l = hma_layer_from_name(names[i]);
        FZ_CHECK(l >= -1 && l <= 999999999L);
        (void)hma_is_embedding_name(names[i]);
        for (size_t r = 0; r < nr; r++)
            if (rules[r].pat[0]) (void)hma__rule_match(rules[r].pat, names[i]);
    }

    /* ... and inside a plan */
    if (nn == 0) return 0;
    static unsigned char f0[MAX_LINES * (MAX_LINE * 6 + 128) + 1024], f1[sizeof f0];
    size_t n0 = make_file(f0, sizeof f0, names, nn, 1.0f, -2.0f);
    size_t n1 = make_file(f1, sizeof f1, names, nn, 3.0f, 0.5f);
    fz_memfd_set(&g_f0, f0, n0);
    fz_memfd_set(&g_f1, f1, n1);
    hma_store *st[2] = {NULL, NULL};
    hma_plan *plan = NULL;
    if (hma_store_open(&st[0], g_f0.path, 0) || hma_store_open(&st[1], g_f1.path, 0)) goto out;
    FZ_CHECK(hma_plan_create(&plan, st, 2) == HMA_OK);
    FZ_CHECK(hma_plan_set_threads(plan, 1) == HMA_OK);
    const char *cur = "all";
    int rc = hma_plan_set_groups(plan, spec);
    if (rc == HMA_OK) cur = spec;
    else FZ_CHECK(rc == HMA_ERR_INVALID_ARGUMENT && !strcmp(hma_plan_groups_spec(plan), "all"));
    for (size_t r = 0; r < nr; r++) {
        rc = hma_plan_add_rule(plan, rules[r].pat, rules[r].group);
        rules[r].added = rc == HMA_OK;
        if (rc) FZ_CHECK(rc == HMA_ERR_INVALID_ARGUMENT);
        else FZ_CHECK(rules[r].pat[0] && (rules[r].group == HMA_GROUP_MEAN ||
                                          (size_t)rules[r].group < hma_plan_group_count(plan)));
    }
    for (size_t j = 0; j < ns2; j++) {
        size_t k_before = hma_plan_group_count(plan);
        rc = hma_plan_set_groups(plan, specs2[j]);
        if (rc == HMA_OK) cur = hma_plan_groups_spec(plan);
        else FZ_CHECK(rc == HMA_ERR_INVALID_ARGUMENT && hma_plan_group_count(plan) == k_before);
    }
    check_plan(plan, cur, rules, nr);
    /* ratios k / K per group, then merge every row */
    size_t K = hma_plan_group_count(plan);
    double *a = malloc(K * sizeof *a);
    FZ_CHECK(a != NULL);
    for (size_t k = 0; k < K; k++) a[k] = (double)k / (double)K;
    FZ_CHECK(hma_plan_set_ratios(plan, a, K) == HMA_OK);
    free(a);
    for (size_t i = 0; i < hma_plan_tensor_count(plan); i++) {
        float out[2];
        rc = hma_plan_merge_tensor_at(plan, i, 0, out, sizeof out, NULL);
        FZ_CHECK(rc == HMA_OK);
        /* a convex mix of {1, 3} and {-2, 0.5} stays inside them */
        FZ_CHECK(out[0] >= 1.0f && out[0] <= 3.0f && out[1] >= -2.0f && out[1] <= 0.5f);
    }
out:
    hma_plan_free(plan);
    hma_store_close(st[0]);
    hma_store_close(st[1]);
    return 0;
}
