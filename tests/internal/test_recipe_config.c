/* test_recipe_config.c - the mergekit recipe reader (src/mergekit/yaml_tree.c,
 * recipe_config.c, recipe_params.c): mergekit's six examples, JSON = YAML,
 * malformed recipes (code, line and word of each message), the YAML typing of
 * scalars, notes, and parameter evaluation against hand-computed values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mergekit/recipe_config.h"
#include "mergekit_examples.h"
#include "testutil.h"

static hma__rcfg *parse_ok(const char *text) {
    hma__rcfg *c = NULL;
    int rc = hma__rcfg_parse(text, strlen(text), "r.yml", &c);
    if (rc) print_error("unexpected failure: %s\n--- recipe:\n%s\n", hma_last_error(), text);
    assert_int_equal(rc, HMA_OK);
    assert_non_null(c);
    return c;
}

static const hma__rsetting *param(const hma__rparams *ps, const char *name) {
    for (size_t i = 0; i < ps->n; i++)
        if (strcmp(ps->p[i].name, name) == 0) return &ps->p[i].s;
    return NULL;
}

static void assert_number(const hma__rparams *ps, const char *name, double v) {
    const hma__rsetting *s = param(ps, name);
    if (!s) print_error("parameter %s missing\n", name);
    assert_non_null(s);
    assert_int_equal(s->kind, HMA__RS_NUMBER);
    assert_true(s->num == v);
}

/* ---- mergekit's examples ---------------------------------------------------- */

static void test_examples_all_parse(void **state) {
    (void)state;
    for (size_t i = 0; i < MK_N_EXAMPLES; i++) {
        hma__rcfg *c = NULL;
        int rc = hma__rcfg_parse(mk_examples[i].text, strlen(mk_examples[i].text), mk_examples[i].name, &c);
        if (rc) print_error("%s: %s\n", mk_examples[i].name, hma_last_error());
        assert_int_equal(rc, HMA_OK);
        for (size_t k = 0; k < c->n_notes; k++) print_error("%s: note: %s\n", mk_examples[i].name, c->notes[k]);
        assert_int_equal(c->n_notes, 0);
        assert_string_equal(c->source_name, mk_examples[i].name);
        assert_int_equal(c->text_len, strlen(mk_examples[i].text));
        assert_string_equal(c->text, mk_examples[i].text);
        hma__rcfg_free(c);
    }
}

static void test_example_arcee_fusion(void **state) {
    (void)state;
    hma__rcfg *c = parse_ok(MK_EX_ARCEE_FUSION);
    assert_string_equal(c->method, "arcee_fusion");
    assert_int_equal(c->method_line, 4);
    assert_string_equal(c->base_model, "model_a");
    assert_int_equal(c->base_line, 5);
    assert_int_equal(c->use_slices, 0);
    assert_int_equal(c->n_slices, 1);
    /* the base is listed: not appended again */
    assert_int_equal(c->slices[0].n_src, 2);
    assert_string_equal(c->slices[0].src[0].model, "model_a");
    assert_string_equal(c->slices[0].src[1].model, "model_b");
    assert_int_equal(c->slices[0].src[1].line, 3);
    assert_int_equal(c->slices[0].src[0].has_range, 0);
    assert_int_equal(c->dtype, HMA_DTYPE_BF16);
    assert_int_equal(c->dtype_line, 6);
    assert_int_equal(c->out_dtype, HMA_DTYPE_COUNT);
    assert_int_equal(c->has_tokenizer, 0);
    assert_null(c->chat_template);
    hma__rcfg_free(c);
}

static void test_example_bio_merge(void **state) {
    (void)state;
    hma__rcfg *c = parse_ok(MK_EX_BIO_MERGE);
    assert_string_equal(c->method, "ties");
    assert_int_equal(c->slices[0].n_src, 3);
    const hma__rsource *s = c->slices[0].src;
    assert_string_equal(s[0].model, "mistralai/Mistral-7B-Instruct-v0.2");
    assert_string_equal(s[1].model, "BioMistral/BioMistral-7B");
    /* normalize_config: the base appended last, without parameters */
    assert_string_equal(s[2].model, "mistralai/Mistral-7B-v0.1");
    assert_int_equal(s[2].params.n, 0);
    assert_int_equal(s[2].line, 11);
    assert_number(&s[0].params, "density", 0.5);
    assert_number(&s[0].params, "weight", 0.5);
    assert_number(&s[1].params, "weight", 0.5);
    assert_int_equal(s[1].params.p[0].line, 8);
    assert_number(&c->params, "normalize", 0.0);
    assert_number(&c->params, "int8_mask", 1.0);
    assert_int_equal(c->dtype, HMA_DTYPE_F16);
    hma__rcfg_free(c);
}

static void test_example_gradient_slerp(void **state) {
    (void)state;
    hma__rcfg *c = parse_ok(MK_EX_GRADIENT_SLERP);
    assert_string_equal(c->method, "slerp");
    assert_int_equal(c->use_slices, 1);
    assert_int_equal(c->n_slices, 1);
    const hma__rslice *sl = &c->slices[0];
    assert_int_equal(sl->n_src, 2); /* slices: the base is not appended */
    assert_int_equal(sl->line, 2);
    assert_null(sl->base_model);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sl->src[i].has_range, 1);
        assert_int_equal(sl->src[i].lr0, 0);
        assert_int_equal(sl->src[i].lr1, 40);
    }
    assert_string_equal(sl->src[1].model, "garage-bAInd/Platypus2-13B");
    const hma__rsetting *t = param(&c->params, "t");
    assert_non_null(t);
    assert_int_equal(t->kind, HMA__RS_FILTERS);
    assert_int_equal(t->n_filters, 3);
    assert_string_equal(t->filters[0].filter, "self_attn");
    assert_int_equal(t->filters[0].line, 15);
    assert_int_equal(t->filters[0].value->kind, HMA__RS_GRADIENT);
    assert_int_equal(t->filters[0].value->n_anchors, 5);
    assert_true(t->filters[0].value->anchors[3] == 0.7);
    assert_string_equal(t->filters[1].filter, "mlp");
    assert_true(t->filters[1].value->anchors[0] == 1.0);
    assert_null(t->filters[2].filter);
    assert_int_equal(t->filters[2].value->kind, HMA__RS_NUMBER);
    assert_true(t->filters[2].value->num == 0.5);
    hma__rcfg_free(c);
}

static void test_example_linear(void **state) {
    (void)state;
    hma__rcfg *c = parse_ok(MK_EX_LINEAR);
    assert_string_equal(c->method, "linear");
    assert_null(c->base_model);
    assert_int_equal(c->slices[0].n_src, 3);
    assert_number(&c->slices[0].src[0].params, "weight", 1.0);
    assert_number(&c->slices[0].src[1].params, "weight", 0.3);
    assert_number(&c->slices[0].src[2].params, "weight", 0.5);
    assert_string_equal(c->slices[0].src[2].model, "garage-bAInd/Platypus2-13B");
    hma__rcfg_free(c);
}

static void test_example_passthrough(void **state) {
    (void)state;
    hma__rcfg *c = parse_ok(MK_EX_ORCAMINI_PLATY_44LAYER);
    assert_string_equal(c->method, "passthrough");
    assert_int_equal(c->n_slices, 2);
    assert_int_equal(c->slices[0].n_src, 1);
    assert_int_equal(c->slices[0].src[0].lr0, 0);
    assert_int_equal(c->slices[0].src[0].lr1, 24);
    assert_string_equal(c->slices[1].src[0].model, "garage-bAInd/Platypus2-13B");
    assert_int_equal(c->slices[1].src[0].lr0, 20);
    assert_int_equal(c->slices[1].src[0].lr1, 40);
    assert_int_equal(c->slices[1].line, 5);
    hma__rcfg_free(c);
}

static void test_example_ties(void **state) {
    (void)state;
    hma__rcfg *c = parse_ok(MK_EX_TIES);
    const hma__rslice *sl = &c->slices[0];
    assert_int_equal(sl->n_src, 4);
    assert_string_equal(sl->src[3].model, "TheBloke/Llama-2-13B-fp16");
    const hma__rsetting *d = param(&sl->src[0].params, "density");
    assert_int_equal(d->kind, HMA__RS_GRADIENT);
    assert_int_equal(d->n_anchors, 3);
    assert_true(d->anchors[1] == 0.7);
    const hma__rsetting *w = param(&sl->src[2].params, "weight");
    assert_int_equal(w->kind, HMA__RS_FILTERS);
    assert_int_equal(w->n_filters, 2);
    assert_int_equal(w->line, 14); /* the list's first '-' */
    assert_number(&c->params, "normalize", 1.0);
    hma__rcfg_free(c);
}

/* ---- JSON is the same configuration --------------------------------------------- */

static void assert_setting_equal(const hma__rsetting *a, const hma__rsetting *b) {
    assert_int_equal(a->kind, b->kind);
    assert_true(a->num == b->num);
    assert_int_equal(a->n_anchors, b->n_anchors);
    for (size_t i = 0; i < a->n_anchors; i++) assert_true(a->anchors[i] == b->anchors[i]);
    assert_int_equal(a->n_filters, b->n_filters);
    for (size_t i = 0; i < a->n_filters; i++) {
        assert_int_equal(!a->filters[i].filter, !b->filters[i].filter);
        if (a->filters[i].filter) assert_string_equal(a->filters[i].filter, b->filters[i].filter);
        assert_setting_equal(a->filters[i].value, b->filters[i].value);
    }
}

static void assert_params_equal(const hma__rparams *a, const hma__rparams *b) {
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_string_equal(a->p[i].name, b->p[i].name);
        assert_setting_equal(&a->p[i].s, &b->p[i].s);
    }
}

static void assert_cfg_equal(const hma__rcfg *a, const hma__rcfg *b) {
    assert_string_equal(a->method, b->method);
    assert_int_equal(!a->base_model, !b->base_model);
    if (a->base_model) assert_string_equal(a->base_model, b->base_model);
    assert_int_equal(a->use_slices, b->use_slices);
    assert_int_equal(a->dtype, b->dtype);
    assert_int_equal(a->out_dtype, b->out_dtype);
    assert_int_equal(a->n_slices, b->n_slices);
    for (size_t i = 0; i < a->n_slices; i++) {
        const hma__rslice *x = &a->slices[i], *y = &b->slices[i];
        assert_int_equal(x->n_src, y->n_src);
        for (size_t j = 0; j < x->n_src; j++) {
            assert_string_equal(x->src[j].model, y->src[j].model);
            assert_int_equal(x->src[j].has_range, y->src[j].has_range);
            assert_int_equal(x->src[j].lr0, y->src[j].lr0);
            assert_int_equal(x->src[j].lr1, y->src[j].lr1);
            assert_params_equal(&x->src[j].params, &y->src[j].params);
        }
        assert_params_equal(&x->params, &y->params);
    }
    assert_params_equal(&a->params, &b->params);
    assert_int_equal(a->n_notes, b->n_notes);
}

static void test_json_same_as_yaml(void **state) {
    (void)state;
    static const char ties_json[] =
        "{\n"
        "  \"models\": [\n"
        "    {\"model\": \"psmathur/orca_mini_v3_13b\",\n"
        "     \"parameters\": {\"density\": [1, 0.7, 0.1], \"weight\": 1.0}},\n"
        "    {\"model\": \"garage-bAInd/Platypus2-13B\",\n"
        "     \"parameters\": {\"density\": 0.5, \"weight\": [0, 0.3, 0.7, 1]}},\n"
        "    {\"model\": \"WizardLM/WizardMath-13B-V1.0\",\n"
        "     \"parameters\": {\"density\": 0.33,\n"
        "                    \"weight\": [{\"filter\": \"mlp\", \"value\": 0.5}, {\"value\": 0}]}}\n"
        "  ],\n"
        "  \"merge_method\": \"ties\",\n"
        "  \"base_model\": \"TheBloke/Llama-2-13B-fp16\",\n"
        "  \"parameters\": {\"normalize\": true, \"int8_mask\": true},\n"
        "  \"dtype\": \"float16\"\n"
        "}\n";
    hma__rcfg *y = parse_ok(MK_EX_TIES), *j = parse_ok(ties_json);
    assert_cfg_equal(y, j);
    assert_int_equal(j->method_line, 11);
    hma__rcfg_free(y);
    hma__rcfg_free(j);
    /* compact JSON without spaces, and the slices example */
    static const char slerp_json[] =
        "{\"slices\":[{\"sources\":[{\"model\":\"psmathur/orca_mini_v3_13b\",\"layer_range\":[0,40]},"
        "{\"model\":\"garage-bAInd/Platypus2-13B\",\"layer_range\":[0,40]}]}],"
        "\"merge_method\":\"slerp\",\"base_model\":\"psmathur/orca_mini_v3_13b\","
        "\"parameters\":{\"t\":[{\"filter\":\"self_attn\",\"value\":[0,0.5,0.3,0.7,1]},"
        "{\"filter\":\"mlp\",\"value\":[1,0.5,0.7,0.3,0]},{\"value\":0.5}]},\"dtype\":\"float16\"}";
    y = parse_ok(MK_EX_GRADIENT_SLERP);
    j = parse_ok(slerp_json);
    assert_cfg_equal(y, j);
    hma__rcfg_free(y);
    hma__rcfg_free(j);
}

/* ---- malformed recipes -------------------------------------------------------------- */

typedef struct bad_case {
    const char *text;
    size_t len; /* 0: strlen */
    int code;
    int line;
    const char *word; /* must appear in the message */
} bad_case;

#define HEAD "merge_method: linear\n"
#define BAD(t, l, w) {t, 0, HMA_ERR_RECIPE, l, w}
#define BADN(t, l, w) {t, sizeof(t) - 1, HMA_ERR_RECIPE, l, w}

static void test_malformed(void **state) {
    (void)state;
    static char deep[400];
    size_t dl = 0;
    dl += (size_t)snprintf(deep + dl, sizeof deep - dl, "merge_method: linear\nmodels: ");
    for (int i = 0; i < 70; i++) deep[dl++] = '[';
    for (int i = 0; i < 70; i++) deep[dl++] = ']';
    deep[dl++] = '\n';
    deep[dl] = 0;
    const bad_case cases[] = {
        /* YAML itself */
        BAD(HEAD "models:\n  - model: a\n   weight: 1\n", 4, "YAML syntax error"),
        BAD(HEAD "models: [a, b\n", 3, "YAML syntax error"),
        BAD(HEAD "models:\n\t- model: a\n", 3, "tab"),
        BAD(HEAD "models:\n  - model: a\nmerge_method: ties\n", 4, "duplicate key 'merge_method' (first on line 1)"),
        BAD(HEAD "base_model: &b a\nmodels:\n  - model: a\n", 2, "anchors"),
        BAD(HEAD "models:\n  - model: *b\n", 3, "aliases"),
        BAD(HEAD "models:\n  - model: a\n---\nmerge_method: ties\n", 4, "second YAML document"),
        BAD(deep, 2, "deeper than 64"),
        BAD("", 1, "no YAML document"),
        BAD("# only a comment\n\n", 1, "no YAML document"),
        BADN(HEAD "models:\n  - model: a\0\n", 3, "not valid YAML text"),
        BAD(HEAD "models:\n  - model: a\xff\n", 3, "not valid YAML text"),
        BAD(HEAD "models:\n  - model: \"a\\0b\"\n", 3, "NUL"),
        BAD(HEAD "? [a, b]\n: 1\nmodels:\n  - model: a\n", 2, "map key must be a plain string"),
        BAD(HEAD "base_model: !!binary aGVsbG8=\nmodels:\n  - model: a\n", 2, "tag"),
        BAD(HEAD "<<: {base_model: a}\nmodels:\n  - model: a\n", 2, "merge keys"),
        /* shape of the recipe */
        BAD("- merge_method: linear\n", 1, "a recipe is a map"),
        BAD("models:\n  - model: a\n", 1, "merge_method is missing"),
        BAD(HEAD "models:\n  - model: a\nmodel_stock: 1\n", 4, "unknown key 'model_stock'"),
        BAD(HEAD "models:\n  - model: a\nmodules:\n  text_decoder: {}\n", 4, "not supported by libhma"),
        BAD("merge_method: linaer\nmodels:\n  - model: a\n", 1, "unknown method 'linaer'"),
        BAD("merge_method: 5\nmodels:\n  - model: a\n", 1, "expected a string"),
        BAD(HEAD "models:\n  - model: a\nslices:\n  - sources:\n      - model: a\n        layer_range: [0, 2]\n", 4,
            "both models (line 2) and slices (line 4)"),
        BAD(HEAD "base_model: a\n", 1, "neither models nor slices"),
        BAD(HEAD "models: []\n", 2, "empty list"),
        BAD(HEAD "models: {model: a}\n", 2, "expected a list"),
        /* models and sources */
        BAD(HEAD "models:\n  - model: a\n    weight: 1\n", 4, "unknown key 'weight' (allowed: model, parameters)"),
        BAD(HEAD "models:\n  - parameters: {weight: 1}\n", 3, "'model' is missing"),
        BAD(HEAD "models:\n  - model: 1.5\n", 3, "expected a string"),
        BAD(HEAD "models:\n  - a\n", 3, "expected a map {model, parameters}"),
        BAD(HEAD "slices:\n  - sources:\n      - model: a\n        layer_ranges: [0, 2]\n", 5,
            "unknown key 'layer_ranges' (allowed: model, layer_range, parameters)"),
        BAD(HEAD "slices:\n  - sources:\n      - model: a\n", 4, "'layer_range' is missing"),
        BAD(HEAD "slices:\n  - sources:\n      - model: a\n        layer_range: [3]\n", 5, "2 integers"),
        BAD(HEAD "slices:\n  - sources:\n      - model: a\n        layer_range: [0, 2, 4]\n", 5, "a list of 3"),
        BAD(HEAD "slices:\n  - sources:\n      - model: a\n        layer_range: [5, 2]\n", 5, "holds no layer"),
        BAD(HEAD "slices:\n  - sources:\n      - model: a\n        layer_range: [2, 2]\n", 5, "holds no layer"),
        BAD(HEAD "slices:\n  - sources:\n      - model: a\n        layer_range: [-1, 2]\n", 5, "negative"),
        BAD(HEAD "slices:\n  - sources:\n      - model: a\n        layer_range: [0, 1.5]\n", 5, "expected an integer"),
        BAD(HEAD "slices:\n  - sources:\n      - model: a\n        layer_range: 0-4\n", 5, "2 integers"),
        BAD(HEAD "slices:\n  - sources:\n      - model: a\n        layer_range: [0, 4]\n"
                 "      - model: b\n        layer_range: [0, 5]\n",
            6, "same number of layers"),
        BAD(HEAD "slices:\n  - sources: []\n", 3, "a slice needs a source"),
        BAD(HEAD "slices:\n  - base_model: a\n", 3, "'sources' is missing"),
        BAD(HEAD "slices:\n  - sources:\n      - model: a\n        layer_range: [0, 4]\n    residual_weight: 0.5\n", 6,
            "never uses it"),
        BAD(HEAD "slices:\n  - sources:\n      - model: a\n        layer_range: [0, 4]\n    weights: 0.5\n", 6,
            "unknown key 'weights' (allowed: sources, base_model, parameters)"),
        /* parameters */
        BAD(HEAD "models:\n  - model: a\n    parameters:\n      wieght: 1\n", 5, "unknown parameter 'wieght'"),
        BAD(HEAD "models:\n  - model: a\n    parameters:\n      weight: abc\n", 5, "expected a number"),
        BAD(HEAD "models:\n  - model: a\n    parameters:\n      weight: \"0.5\"\n", 5, "quoted string '0.5' (write numbers without quotes)"),
        BAD(HEAD "models:\n  - model: a\n    parameters:\n      weight: .nan\n", 5, "finite"),
        BAD(HEAD "models:\n  - model: a\n    parameters:\n      weight:\n", 5, "null"),
        BAD(HEAD "models:\n  - model: a\n    parameters:\n      weight: []\n", 5, "empty list"),
        BAD(HEAD "models:\n  - model: a\n    parameters:\n      weight: [[1, 2]]\n", 5, "a list inside a list"),
        BAD(HEAD "models:\n  - model: a\n    parameters:\n      weight: [1, x]\n", 5, "weight[1]: expected a number"),
        BAD(HEAD "models:\n  - model: a\n    parameters:\n      weight:\n        - 0.5\n        - filter: mlp\n"
                 "          value: 1\n",
            6, "mixes numbers (line 6) and {filter, value} maps (line 7)"),
        BAD(HEAD "models:\n  - model: a\n    parameters:\n      weight: {filter: mlp, value: 1}\n", 5,
            "must be an entry of a list"),
        BAD(HEAD "models:\n  - model: a\n    parameters:\n      weight:\n        - filter: mlp\n", 6,
            "'value' is missing"),
        BAD(HEAD "models:\n  - model: a\n    parameters:\n      weight:\n        - filter: mlp\n          valeu: 1\n", 7,
            "unknown key 'valeu' (allowed: filter, value)"),
        BAD(HEAD "models:\n  - model: a\n    parameters:\n      weight:\n        - filter: 3\n          value: 1\n", 6,
            "filter: expected a string"),
        BAD(HEAD "models:\n  - model: a\n    parameters:\n      weight:\n        - value:\n            - filter: x\n"
                 "              value: 1\n",
            7, "filter lists do not nest"),
        BAD(HEAD "models:\n  - model: a\n    parameters: [1, 2]\n", 4, "expected a map of parameter names"),
        BAD(HEAD "models:\n  - model: a\nparameters:\n  normalise: true\n", 5, "unknown parameter 'normalise'"),
        /* other top-level values */
        BAD(HEAD "models:\n  - model: a\ndtype: float8\n", 4, "not a dtype"),
        BAD(HEAD "models:\n  - model: a\nout_dtype: int64\n", 4, "not a dtype"),
        BAD(HEAD "models:\n  - model: a\ntokenizer_source: base\ntokenizer:\n  source: union\n", 5,
            "cannot be given with tokenizer_source"),
        BAD(HEAD "models:\n  - model: a\ntokenizer:\n  source: union\n  pad: 8\n", 6, "unknown key 'pad'"),
        BAD(HEAD "models:\n  - model: a\ntokenizer:\n  pad_to_multiple_of: 0.5\n", 5, "expected an integer"),
        BAD(HEAD "models:\n  - model: a\nchat_template: [a]\n", 4, "expected a string"),
    };
    size_t n = sizeof cases / sizeof cases[0];
    assert_true(n >= 30);
    for (size_t i = 0; i < n; i++) {
        const bad_case *b = &cases[i];
        size_t len = b->len ? b->len : strlen(b->text);
        hma__rcfg *c = (hma__rcfg *)(uintptr_t)1;
        int rc = hma__rcfg_parse(b->text, len, "bad.yml", &c);
        char want[32];
        snprintf(want, sizeof want, "bad.yml:%d: ", b->line);
        const char *msg = hma_last_error();
        int ok = rc == b->code && c == NULL && hma_last_error_code() == rc && strncmp(msg, want, strlen(want)) == 0 &&
                 strstr(msg, b->word) != NULL && strchr(msg, '\n') == NULL;
        if (getenv("HMA_TEST_SHOW_MESSAGES")) print_message("case %zu: %s\n", i, msg);
        if (!ok)
            print_error("case %zu: got %d (%s), want %d at '%s' with '%s'\n--- recipe:\n%s\n", i, rc, msg, b->code,
                        want, b->word, b->text);
        assert_true(ok);
    }
}

/* ---- YAML typing of plain scalars ------------------------------------------------------------ */

static void scalar(const char *text, int quoted, hma__yscalar *v) {
    hma__ynode n;
    memset(&n, 0, sizeof n);
    n.kind = HMA__Y_SCALAR;
    n.str = (char *)(uintptr_t)text;
    n.quoted = quoted;
    hma__yscalar_type(&n, v);
}

static void test_scalar_types(void **state) {
    (void)state;
    static const struct {
        const char *text;
        hma__ytype type;
        double num;
        int numeric;
    } k[] = {
        {"", HMA__YT_NULL, 0, 0},          {"~", HMA__YT_NULL, 0, 0},        {"null", HMA__YT_NULL, 0, 0},
        {"NULL", HMA__YT_NULL, 0, 0},      {"nul", HMA__YT_STR, 0, 0},       {"true", HMA__YT_BOOL, 1, 0},
        {"True", HMA__YT_BOOL, 1, 0},      {"yes", HMA__YT_BOOL, 1, 0},      {"ON", HMA__YT_BOOL, 1, 0},
        {"off", HMA__YT_BOOL, 0, 0},       {"No", HMA__YT_BOOL, 0, 0},       {"FALSE", HMA__YT_BOOL, 0, 0},
        {"tRUE", HMA__YT_STR, 0, 0},       {"y", HMA__YT_STR, 0, 0},         {"0", HMA__YT_INT, 0, 0},
        {"-12", HMA__YT_INT, -12, 0},      {"+1_000", HMA__YT_INT, 1000, 0}, {"0b101", HMA__YT_INT, 5, 0},
        {"0x1F", HMA__YT_INT, 31, 0},      {"017", HMA__YT_INT, 15, 0},      {"1:30", HMA__YT_INT, 90, 0},
        {"0.5", HMA__YT_FLOAT, 0.5, 0},    {"-1.", HMA__YT_FLOAT, -1, 0},    {".5", HMA__YT_FLOAT, 0.5, 0},
        {"+1.0", HMA__YT_FLOAT, 1, 0},     {"1.0e+3", HMA__YT_FLOAT, 1000, 0}, {"1:30.5", HMA__YT_FLOAT, 90.5, 0},
        {"1_0.2_5", HMA__YT_FLOAT, 10.25, 0},
        /* strings to PyYAML (its floats need a dot and a signed exponent),
         * numbers to mergekit's pydantic float fields */
        {"1e-5", HMA__YT_STR, 1e-5, 1},    {"1.0e5", HMA__YT_STR, 1e5, 1},   {"-.5", HMA__YT_STR, -0.5, 1},
        {"09", HMA__YT_STR, 9, 1},         {"1E+2", HMA__YT_STR, 100, 1},
        {"1e", HMA__YT_STR, 0, 0},         {"0.5x", HMA__YT_STR, 0, 0},      {"1:60", HMA__YT_STR, 0, 0},
        {"0b", HMA__YT_STR, 0, 0},         {"0x", HMA__YT_STR, 0, 0},        {"model_a", HMA__YT_STR, 0, 0},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        hma__yscalar v;
        scalar(k[i].text, 0, &v);
        if (v.type != k[i].type || v.numeric != k[i].numeric || v.num != k[i].num)
            print_error("'%s': type %d numeric %d num %.17g\n", k[i].text, v.type, v.numeric, v.num);
        assert_int_equal(v.type, k[i].type);
        assert_int_equal(v.numeric, k[i].numeric);
        assert_true(v.num == k[i].num);
    }
    hma__yscalar v;
    scalar(".inf", 0, &v);
    assert_true(v.type == HMA__YT_FLOAT && isinf(v.num) && v.num > 0);
    scalar("-.Inf", 0, &v);
    assert_true(v.type == HMA__YT_FLOAT && isinf(v.num) && v.num < 0);
    scalar(".NaN", 0, &v);
    assert_true(v.type == HMA__YT_FLOAT && isnan(v.num));
    scalar("0.5", 1, &v); /* quoted: a string */
    assert_int_equal(v.type, HMA__YT_STR);
    assert_int_equal(v.numeric, 0);
    scalar("true", 1, &v);
    assert_int_equal(v.type, HMA__YT_STR);
    scalar("9223372036854775807", 0, &v);
    assert_true(v.type == HMA__YT_INT && v.int_ok && v.ival == 9223372036854775807LL);
    scalar("9223372036854775808", 0, &v);
    assert_true(v.type == HMA__YT_INT && !v.int_ok && v.num == 9223372036854775808.0);
}

static void test_scalar_values_in_recipes(void **state) {
    (void)state;
    /* yes/on are numbers (1) where a number goes; 1e-5 too; a model called
     * 1e5 is a string (PyYAML: str) */
    hma__rcfg *c = parse_ok("merge_method: ties\nbase_model: 1e5\nmodels:\n  - model: m\n    parameters:\n"
                            "      weight: 1e-5\n      density: .5\nparameters:\n  normalize: yes\n  int8_mask: Off\n"
                            "  lambda: 0x10\n");
    assert_string_equal(c->base_model, "1e5");
    assert_number(&c->slices[0].src[0].params, "weight", 1e-5);
    assert_number(&c->slices[0].src[0].params, "density", 0.5);
    assert_number(&c->params, "normalize", 1.0);
    assert_number(&c->params, "int8_mask", 0.0);
    assert_number(&c->params, "lambda", 16.0);
    hma__rcfg_free(c);
    /* core tags: !!str makes a string, !!float a number */
    c = parse_ok("merge_method: linear\nmodels:\n  - model: !!str 12\n    parameters:\n      weight: !!float \"2\"\n");
    assert_string_equal(c->slices[0].src[0].model, "12");
    assert_number(&c->slices[0].src[0].params, "weight", 2.0);
    hma__rcfg_free(c);
    /* null optional values are absent, block scalars are strings */
    c = parse_ok("merge_method: linear\nbase_model: ~\ndtype:\nchat_template: |\n  {{ messages }}\n"
                 "models:\n  - model: a\n    parameters: null\n");
    assert_null(c->base_model);
    assert_int_equal(c->dtype, HMA_DTYPE_COUNT);
    assert_string_equal(c->chat_template, "{{ messages }}\n");
    assert_int_equal(c->slices[0].n_src, 1);
    assert_int_equal(c->slices[0].src[0].params.n, 0);
    hma__rcfg_free(c);
    /* mergekit's dtype names, with the torch. prefix */
    c = parse_ok("merge_method: linear\ndtype: torch.float32\nout_dtype: bfloat16\nmodels:\n  - model: a\n");
    assert_int_equal(c->dtype, HMA_DTYPE_F32);
    assert_int_equal(c->out_dtype, HMA_DTYPE_BF16);
    assert_int_equal(c->out_dtype_line, 3);
    hma__rcfg_free(c);
    /* a locale with a decimal comma does not change how numbers read */
    const char *old = setlocale(LC_NUMERIC, NULL);
    char saved[64];
    snprintf(saved, sizeof saved, "%s", old ? old : "C");
    if (setlocale(LC_NUMERIC, "de_DE.UTF-8")) {
        c = parse_ok("merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      weight: 0.25\n");
        assert_number(&c->slices[0].src[0].params, "weight", 0.25);
        hma__rcfg_free(c);
        setlocale(LC_NUMERIC, saved);
    }
}

/* ---- notes ------------------------------------------------------------------------------------ */

static void test_notes(void **state) {
    (void)state;
    hma__rcfg *c = parse_ok("merge_method: slerp\nbase_model: a\nmodels:\n  - model: a\n  - model: b\n"
                            "    parameters:\n      weight: 0.5\nparameters:\n  t: 0.5\n  density: 0.3\n");
    assert_int_equal(c->n_notes, 2);
    assert_string_equal(c->notes[0], "r.yml:7: models[1].parameters: parameter 'weight' is not used by slerp; ignored, "
                                     "as mergekit does");
    assert_non_null(strstr(c->notes[1], "r.yml:10: parameters: parameter 'density' is not used by slerp"));
    /* ignored parameters are not kept */
    assert_int_equal(c->slices[0].src[1].params.n, 0);
    assert_int_equal(c->params.n, 1);
    assert_string_equal(c->params.p[0].name, "t");
    hma__rcfg_free(c);

    /* a global parameter of ties under a model: mergekit never reads it there */
    c = parse_ok("merge_method: ties\nbase_model: a\nmodels:\n  - model: b\n    parameters:\n      weight: 1\n"
                 "      normalize: false\n");
    assert_int_equal(c->n_notes, 1);
    assert_non_null(strstr(c->notes[0], "r.yml:7: models[0].parameters: 'normalize' is a global parameter of ties"));
    assert_int_equal(c->slices[0].src[0].params.n, 1);
    hma__rcfg_free(c);

    /* a per-model parameter at slice level is read there (no note) */
    c = parse_ok("merge_method: ties\nslices:\n  - sources:\n      - model: a\n        layer_range: [0, 2]\n"
                 "    base_model: a\n    parameters:\n      weight: 0.5\n");
    assert_int_equal(c->n_notes, 0);
    assert_string_equal(c->slices[0].base_model, "a");
    assert_number(&c->slices[0].params, "weight", 0.5);
    hma__rcfg_free(c);

    /* tokenizer: read, tokens and padding not applied */
    c = parse_ok("merge_method: linear\nmodels:\n  - model: a\ntokenizer:\n  source: base\n  tokens:\n"
                 "    <|im_start|>:\n      source: a\n      force: true\n  pad_to_multiple_of: 64\n");
    assert_int_equal(c->has_tokenizer, 1);
    assert_string_equal(c->tokenizer_source, "base");
    assert_int_equal(c->n_notes, 2);
    assert_non_null(strstr(c->notes[0], "r.yml:6: tokenizer.tokens: read but not applied"));
    assert_non_null(strstr(c->notes[1], "r.yml:10: tokenizer.pad_to_multiple_of"));
    hma__rcfg_free(c);
    c = parse_ok("merge_method: linear\nmodels:\n  - model: a\ntokenizer: {}\n");
    assert_string_equal(c->tokenizer_source, "union"); /* TokenizerConfig's default */
    hma__rcfg_free(c);
    c = parse_ok("merge_method: linear\nmodels:\n  - model: a\ntokenizer_source: union\n");
    assert_int_equal(c->has_tokenizer, 1);
    assert_string_equal(c->tokenizer_source, "union");
    hma__rcfg_free(c);
}

/* ---- parameter evaluation (hand-computed) -------------------------------------------------------- */

static double ev(const hma__rsetting *s, const char *name, double t) {
    double v = -99.0;
    int got = hma__rsetting_eval(s, name, t, &v);
    assert_int_equal(got, 1);
    return v;
}

static void test_eval_gradient(void **state) {
    (void)state;
    hma__rcfg *c = parse_ok(MK_EX_GRADIENT_SLERP);
    const hma__rsetting *t = param(&c->params, "t");
    const char *attn = "model.layers.7.self_attn.q_proj.weight";
    /* anchors [0, 0.5, 0.3, 0.7, 1]: x = 4t */
    assert_true(ev(t, attn, 0.0) == 0.0);
    assert_true(ev(t, attn, 1.0) == 1.0);
    assert_true(ev(t, attn, 0.25) == 0.5);  /* x = 1: an anchor */
    assert_true(ev(t, attn, 0.5) == 0.3);   /* x = 2 */
    assert_true(ev(t, attn, 0.125) == 0.25); /* x = 0.5: 0.5 * 0 + 0.5 * 0.5 */
    assert_true(fabs(ev(t, attn, 0.375) - 0.4) < 1e-15); /* x = 1.5: 0.5 * 0.5 + 0.5 * 0.3 */
    assert_true(fabs(ev(t, attn, 0.875) - 0.85) < 1e-15); /* x = 3.5: 0.5 * 0.7 + 0.5 * 1 */
    /* 40 layers: layer 13 has t = 13/39, x = 4/3: (2/3) 0.5 + (1/3) 0.3 */
    assert_true(fabs(ev(t, attn, 13.0 / 39.0) - (2.0 / 3.0 * 0.5 + 1.0 / 3.0 * 0.3)) < 1e-15);
    /* the same formula, bit for bit, as mergekit's double arithmetic */
    double x = (13.0 / 39.0) * 4.0, f = x - 1.0;
    assert_true(ev(t, attn, 13.0 / 39.0) == (1.0 - f) * 0.5 + f * 0.3);
    /* mlp: [1, 0.5, 0.7, 0.3, 0] */
    assert_true(ev(t, "model.layers.0.mlp.up_proj.weight", 0.0) == 1.0);
    assert_true(ev(t, "model.layers.0.mlp.up_proj.weight", 0.75) == 0.3);
    /* neither: the fallback (no filter) */
    assert_true(ev(t, "model.norm.weight", 0.3) == 0.5);
    assert_true(ev(t, "lm_head.weight", 0.0) == 0.5);
    /* first match wins: a name with both */
    assert_true(ev(t, "x.self_attn.mlp", 0.0) == 0.0);
    assert_true(ev(t, "x.mlp.self_attn", 0.0) == 0.0);
    hma__rcfg_free(c);

    /* one anchor: that value at every t; ties' density [1, 0.7, 0.1] at t = 0.25 */
    c = parse_ok("merge_method: ties\nmodels:\n  - model: a\n    parameters:\n      weight: [0.7]\n"
                 "      density: [1, 0.7, 0.1]\n");
    const hma__rsetting *w = param(&c->slices[0].src[0].params, "weight");
    assert_true(ev(w, "a", 0.0) == 0.7);
    assert_true(ev(w, "a", 0.6) == 0.7);
    assert_true(ev(w, "a", 1.0) == 0.7);
    const hma__rsetting *d = param(&c->slices[0].src[0].params, "density");
    assert_true(ev(d, "a", 0.25) == 0.5 * 1.0 + 0.5 * 0.7);
    assert_true(ev(d, "a", 0.5) == 0.7);
    assert_true(fabs(ev(d, "a", 0.75) - 0.4) < 1e-15);
    assert_true(ev(d, "a", 1.0) == 0.1);
    hma__rcfg_free(c);
}

static void test_eval_filters(void **state) {
    (void)state;
    hma__rcfg *c = parse_ok("merge_method: linear\nmodels:\n  - model: a\nparameters:\n  weight:\n"
                            "    - filter: mlp\n      value: 1\n    - filter: \"*\"\n      value: 2\n"
                            "    - value: 3\n  normalize:\n    - filter: attn\n      value: 0\n"
                            "    - filter: \"\"\n      value: 1\n");
    const hma__rsetting *w = param(&c->params, "weight");
    assert_true(ev(w, "layers.0.mlp.down", 0) == 1.0);
    assert_true(ev(w, "layers.0.attn.q", 0) == 2.0); /* "*" before the unfiltered entry */
    assert_true(ev(w, NULL, 0) == 2.0);              /* "*" matches even without a name */
    const hma__rsetting *nz = param(&c->params, "normalize");
    assert_true(ev(nz, "attn", 0) == 0.0);
    assert_true(ev(nz, "mlp", 0) == 1.0); /* "" is in every non-empty name (Python `"" in s`) */
    double v = -1;
    assert_int_equal(hma__rsetting_eval(nz, "", 0, &v), 0); /* mergekit: `tensor_name and ...` */
    assert_int_equal(hma__rsetting_eval(nz, NULL, 0, &v), 0);
    assert_true(v == -1);
    hma__rcfg_free(c);
}

static double get(const hma__rcfg *c, size_t slice, const char *model, const char *name, const char *tensor, double t,
                  int want_line) {
    double v = -99.0;
    int line = -1;
    int got = hma__rcfg_param(c, slice, model, name, tensor, t, &v, &line);
    if (!got) print_error("no value for %s of %s on %s\n", name, model ? model : "(global)", tensor);
    assert_int_equal(got, 1);
    if (line != want_line) print_error("%s of %s on %s: line %d, want %d\n", name, model, tensor, line, want_line);
    assert_int_equal(line, want_line);
    return v;
}

static void test_precedence(void **state) {
    (void)state;
    static const char r[] =
        "merge_method: ties\n"                     /* 1 */
        "base_model: base\n"                       /* 2 */
        "parameters:\n"                            /* 3 */
        "  weight: 0.1\n"                          /* 4 */
        "  density:\n"                             /* 5 */
        "    - filter: norm\n"                     /* 6 */
        "      value: 0.11\n"                      /* 7 */
        "  lambda: [1, 3]\n"                       /* 8 */
        "slices:\n"                                /* 9 */
        "  - sources:\n"                           /* 10 */
        "      - model: a\n"                       /* 11 */
        "        layer_range: [0, 2]\n"            /* 12 */
        "        parameters:\n"                    /* 13 */
        "          weight:\n"                      /* 14 */
        "            - filter: mlp\n"              /* 15 */
        "              value: 0.3\n"               /* 16 */
        "      - model: a\n"                       /* 17 */
        "        layer_range: [2, 4]\n"            /* 18 */
        "        parameters:\n"                    /* 19 */
        "          weight: 0.4\n"                  /* 20 */
        "          density: 0.44\n"                /* 21 */
        "      - model: b\n"                       /* 22 */
        "        layer_range: [4, 6]\n"            /* 23 */
        "    parameters:\n"                        /* 24 */
        "      weight:\n"                          /* 25 */
        "        - filter: attn\n"                 /* 26 */
        "          value: 0.2\n"                   /* 27 */
        "      density: 0.22\n"                    /* 28 */
        "  - sources:\n"                           /* 29 */
        "      - model: b\n"                       /* 30 */
        "        layer_range: [0, 1]\n"            /* 31 */
        "        parameters:\n"                    /* 32 */
        "          weight: 0.5\n";                 /* 33 */
    hma__rcfg *c = parse_ok(r);
    assert_int_equal(c->n_notes, 0);
    const char *mlp = "model.layers.0.mlp.up_proj.weight", *attn = "model.layers.0.self_attn.o_proj.weight",
               *norm = "model.layers.0.input_layernorm.weight";
    /* model a: the first source of a matches mlp (source level) */
    assert_true(get(c, 0, "a", "weight", mlp, 0, 15) == 0.3);
    /* attn: a's first source gives nothing, its second source (same model) gives 0.4 */
    assert_true(get(c, 0, "a", "weight", attn, 0, 20) == 0.4);
    /* model b has no source-level weight: the slice's filter for attn */
    assert_true(get(c, 0, "b", "weight", attn, 0, 26) == 0.2);
    /* the slice's filter does not match norm: falls through to the global */
    assert_true(get(c, 0, "b", "weight", norm, 0, 4) == 0.1);
    /* density: source > slice > global */
    assert_true(get(c, 0, "a", "density", norm, 0, 21) == 0.44);
    assert_true(get(c, 0, "b", "density", norm, 0, 28) == 0.22);
    /* slice 1: its own source, then (no slice parameters) the global */
    assert_true(get(c, 1, "b", "weight", attn, 0, 33) == 0.5);
    assert_true(get(c, 1, "a", "weight", attn, 0, 4) == 0.1); /* a is not a source of slice 1 */
    assert_true(get(c, 1, "b", "density", norm, 0, 6) == 0.11);
    double v = -1;
    int line = -7;
    assert_int_equal(hma__rcfg_param(c, 1, "b", "density", mlp, 0, &v, &line), 0); /* nothing anywhere */
    assert_true(v == -1 && line == -7);
    /* a global query (model NULL) skips the sources */
    assert_true(get(c, 0, NULL, "weight", attn, 0, 26) == 0.2);
    assert_true(get(c, 0, NULL, "weight", mlp, 0, 4) == 0.1);
    /* global gradient: lambda [1, 3] at t = 0.5 */
    assert_true(get(c, 0, NULL, "lambda", mlp, 0.5, 8) == 2.0);
    assert_true(get(c, 0, "a", "lambda", mlp, 1.0, 8) == 3.0);
    /* a slice index out of range reads only the globals */
    assert_true(get(c, 9, "a", "weight", mlp, 0, 4) == 0.1);
    assert_int_equal(hma__rcfg_param(c, 0, "a", "gamma", mlp, 0, &v, NULL), 0);
    hma__rcfg_free(c);
}

static void test_models_form_precedence(void **state) {
    (void)state;
    /* models: the model's parameters are the source level of the one slice */
    hma__rcfg *c = parse_ok(MK_EX_TIES);
    const char *mlp = "model.layers.3.mlp.gate_proj.weight", *attn = "model.layers.3.self_attn.k_proj.weight";
    assert_true(get(c, 0, "WizardLM/WizardMath-13B-V1.0", "weight", mlp, 0.5, 14) == 0.5);
    assert_true(get(c, 0, "WizardLM/WizardMath-13B-V1.0", "weight", attn, 0.5, 14) == 0.0);
    assert_true(get(c, 0, "garage-bAInd/Platypus2-13B", "weight", attn, 0.5, 9) == 0.5 * 0.3 + 0.5 * 0.7);
    assert_true(get(c, 0, NULL, "normalize", attn, 0.5, 20) == 1.0);
    double v;
    /* the appended base has no parameters and there are no global weights */
    assert_int_equal(hma__rcfg_param(c, 0, "TheBloke/Llama-2-13B-fp16", "weight", attn, 0, &v, NULL), 0);
    hma__rcfg_free(c);
}

static void test_null_and_odd_inputs(void **state) {
    (void)state;
    hma__rcfg *c = (hma__rcfg *)(uintptr_t)1;
    assert_int_equal(hma__rcfg_parse(NULL, 0, NULL, &c), HMA_ERR_RECIPE);
    assert_null(c);
    assert_non_null(strstr(hma_last_error(), "recipe:1:"));
    hma__rcfg_free(NULL);
    hma__ynode_free(NULL);
    double v = 5;
    assert_int_equal(hma__rsetting_eval(NULL, "x", 0, &v), 0);
    assert_int_equal(hma__rcfg_param(NULL, 0, "a", "weight", "x", 0, &v, NULL), 0);
    /* a long map: the duplicate check still finds a repeat (hash path) */
    char text[4096];
    size_t n = (size_t)snprintf(text, sizeof text, "merge_method: linear\nmodels:\n  - model: a\n    parameters:\n");
    for (int i = 0; i < 40; i++) n += (size_t)snprintf(text + n, sizeof text - n, "      k%d: 1\n", i);
    n += (size_t)snprintf(text + n, sizeof text - n, "      k17: 2\n");
    assert_int_equal(hma__rcfg_parse(text, n, "long.yml", &c), HMA_ERR_RECIPE);
    assert_non_null(strstr(hma_last_error(), "long.yml:45: duplicate key 'k17' (first on line 22)"));
    /* the tree keeps lines, keys and quoting */
    hma__ynode *root = NULL;
    const char *y = "a: 'x'\nb:\n  - 1\n  - [2, 3]\n";
    assert_int_equal(hma__yaml_parse(y, strlen(y), "t", &root), HMA_OK);
    assert_int_equal(root->kind, HMA__Y_MAP);
    assert_int_equal(root->n, 2);
    assert_string_equal(root->keys[1], "b");
    assert_int_equal(root->key_lines[1], 2);
    assert_int_equal(root->items[0]->quoted, 1);
    assert_int_equal(root->items[1]->kind, HMA__Y_SEQ);
    assert_int_equal(root->items[1]->line, 3);
    assert_int_equal(root->items[1]->items[1]->line, 4);
    assert_int_equal(root->items[1]->items[1]->n, 2);
    hma__ynode_free(root);
    /* 64 levels are fine, 65 are not */
    char deep[200];
    for (int lv = 64; lv <= 65; lv++) {
        size_t k = 0;
        for (int i = 0; i < lv; i++) deep[k++] = '[';
        for (int i = 0; i < lv; i++) deep[k++] = ']';
        int rc = hma__yaml_parse(deep, k, "t", &root);
        assert_int_equal(rc, lv == 64 ? HMA_OK : HMA_ERR_RECIPE);
        hma__ynode_free(root);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples_all_parse),
        cmocka_unit_test(test_example_arcee_fusion),
        cmocka_unit_test(test_example_bio_merge),
        cmocka_unit_test(test_example_gradient_slerp),
        cmocka_unit_test(test_example_linear),
        cmocka_unit_test(test_example_passthrough),
        cmocka_unit_test(test_example_ties),
        cmocka_unit_test(test_json_same_as_yaml),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_scalar_types),
        cmocka_unit_test(test_scalar_values_in_recipes),
        cmocka_unit_test(test_notes),
        cmocka_unit_test(test_eval_gradient),
        cmocka_unit_test(test_eval_filters),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_models_form_precedence),
        cmocka_unit_test(test_null_and_odd_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
