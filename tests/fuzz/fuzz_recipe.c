/*
 * fuzz_recipe.c - libFuzzer target: the mergekit recipe reader
 * (src/mergekit/yaml_tree.c, recipe_config.c, recipe_params.c) on raw
 * bytes. On success the whole configuration is walked and checked (every
 * slice has sources, ranges are non-empty and of one length per slice, a
 * `models:` recipe is one slice without ranges, notes carry the source
 * name) and every parameter is evaluated at several t and tensor names
 * through hma__rcfg_param; on failure the code is HMA_ERR_RECIPE (or out
 * of memory) with a one-line message naming the source and a line.
 * ASan/LSan see every byte read and every block left behind.
 */
#include "fuzz_common.h"

#include "internal.h"
#include "mergekit/recipe_config.h"

#include <math.h>

static const char *const k_tensors[] = {
    "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight",
    "model.norm.weight", "", NULL,
};
static const double k_t[] = {0.0, 0.25, 1.0 / 3.0, 0.5, 1.0};

static void check_setting(const hma__rsetting *s, int depth) {
    FZ_CHECK(depth <= 1);
    switch (s->kind) {
    case HMA__RS_NUMBER: FZ_CHECK(isfinite(s->num)); break;
    case HMA__RS_GRADIENT:
        FZ_CHECK(s->n_anchors >= 1 && s->anchors != NULL);
        for (size_t i = 0; i < s->n_anchors; i++) FZ_CHECK(isfinite(s->anchors[i]));
        break;
    case HMA__RS_FILTERS:
        FZ_CHECK(depth == 0 && s->n_filters >= 1);
        for (size_t i = 0; i < s->n_filters; i++) {
            if (s->filters[i].filter) (void)strlen(s->filters[i].filter);
            FZ_CHECK(s->filters[i].value != NULL);
            FZ_CHECK(s->filters[i].value->kind != HMA__RS_FILTERS);
            check_setting(s->filters[i].value, depth + 1);
        }
        break;
    default: FZ_CHECK(0);
    }
    for (size_t n = 0; n < sizeof k_tensors / sizeof k_tensors[0]; n++) {
        for (size_t k = 0; k < sizeof k_t / sizeof k_t[0]; k++) {
            double v = NAN;
            int got = hma__rsetting_eval(s, k_tensors[n], k_t[k], &v);
            FZ_CHECK(got == 0 || got == 1);
            if (got) FZ_CHECK(isfinite(v));
            if (s->kind != HMA__RS_FILTERS) FZ_CHECK(got == 1);
        }
    }
}

static void check_params(const hma__rcfg *c, const hma__rparams *ps) {
    for (size_t i = 0; i < ps->n; i++) {
        FZ_CHECK(ps->p[i].name && ps->p[i].name[0]);
        FZ_CHECK(ps->p[i].line >= 1);
        check_setting(&ps->p[i].s, 0);
        /* the lookup of every name, for every model and globally */
        for (size_t sl = 0; sl <= c->n_slices; sl++) {
            const char *model = sl < c->n_slices ? c->slices[sl].src[0].model : NULL;
            double v = NAN;
            int line = -1;
            int got = hma__rcfg_param(c, sl, model, ps->p[i].name, k_tensors[1], 0.5, &v, &line);
            if (got) FZ_CHECK(isfinite(v) && line >= 1);
            else FZ_CHECK(line == -1);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* an exact-size copy, so a read past the end is an ASan report */
    char *text = malloc(size ? size : 1);
    FZ_CHECK(text != NULL);
    if (size) memcpy(text, data, size);
    hma__rcfg *c = NULL;
    int rc = hma__rcfg_parse(text, size, "fz.yml", &c);
    if (rc == HMA_OK) {
        FZ_CHECK(c != NULL);
        FZ_CHECK(c->text_len == size && memcmp(c->text, data, size) == 0 && c->text[size] == 0);
        FZ_CHECK(strcmp(c->source_name, "fz.yml") == 0);
        FZ_CHECK(c->method && c->method[0] && c->method_line >= 1);
        FZ_CHECK(c->n_slices >= 1 && c->slices != NULL);
        FZ_CHECK(c->use_slices || c->n_slices == 1);
        FZ_CHECK(c->dtype == HMA_DTYPE_COUNT || c->dtype == HMA_DTYPE_F32 || c->dtype == HMA_DTYPE_F16 ||
                 c->dtype == HMA_DTYPE_BF16 || c->dtype == HMA_DTYPE_F64);
        FZ_CHECK(!c->has_tokenizer || (c->tokenizer_source && c->tokenizer_source[0]));
        for (size_t i = 0; i < c->n_slices; i++) {
            const hma__rslice *sl = &c->slices[i];
            FZ_CHECK(sl->n_src >= 1 && sl->src != NULL);
            for (size_t j = 0; j < sl->n_src; j++) {
                const hma__rsource *s = &sl->src[j];
                FZ_CHECK(s->model && s->model[0]);
                FZ_CHECK(s->has_range == c->use_slices);
                if (s->has_range) {
                    FZ_CHECK(s->lr0 >= 0 && s->lr0 < s->lr1);
                    FZ_CHECK(s->lr1 - s->lr0 == sl->src[0].lr1 - sl->src[0].lr0);
                }
                check_params(c, &s->params);
            }
            check_params(c, &sl->params);
        }
        check_params(c, &c->params);
        for (size_t i = 0; i < c->n_notes; i++) {
            FZ_CHECK(strncmp(c->notes[i], "fz.yml:", 7) == 0);
            FZ_CHECK(strchr(c->notes[i], '\n') == NULL);
        }
        hma__rcfg_free(c);
    } else {
        FZ_CHECK(c == NULL);
        FZ_CHECK(rc == HMA_ERR_RECIPE || rc == HMA_ERR_NO_MEMORY);
        FZ_CHECK(hma_last_error_code() == rc);
        const char *msg = hma_last_error();
        FZ_CHECK(strncmp(msg, "fz.yml", 6) == 0);
        if (rc == HMA_ERR_RECIPE) FZ_CHECK(strncmp(msg, "fz.yml:", 7) == 0 && msg[7] >= '1' && msg[7] <= '9');
        FZ_CHECK(strchr(msg, '\n') == NULL); /* one error = one line */
    }
    free(text);
    return 0;
}
