/*
 * test_recipe.c - mergekit recipes through the public C API: the plan of
 * output tensors (slices, layer renumbering, t per tensor, the sources of
 * embeddings and of the final norm / lm_head), parameter lookup (gradients,
 * filters on the input or output name, precedence), merged bytes against
 * float32 math done here, vocabulary mismatches, errors that name the key,
 * model and line and leave no output, seeds and thread counts.
 *
 * The checkpoints are small synthetic llama-style folders made with
 * hma_writer; every value is chosen so that the expected results are
 * computed by hand below.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hma.h>

#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define H 4 /* hidden size */

/* Tensor kinds: the value of element e of kind k, layer l, model m. */
enum { K_EMBED = 0, K_Q = 1, K_LN = 2, K_NORM = 3, K_HEAD = 4 };
static float val(int m, int k, int l, uint64_t e) { return (float)(m * 1000 + k * 100 + l * 10) + (float)(e % 16) * 0.25f; }

/* A llama-style folder dir/name: `layers` layers, `vocab` rows, F32, with
 * config.json and tokenizer.json. Returns the folder (malloc'ed). */
static char *make_model(const char *name, int m, int layers, uint64_t vocab) {
    char *dir = tu_join(tu_dir, name);
    assert_non_null(dir);
    mkdir(dir, 0755);
    char cfg[256];
    int n = snprintf(cfg, sizeof cfg, "{\n  \"num_hidden_layers\": %d,\n  \"hidden_size\": %d,\n  \"vocab_size\": %llu\n}\n",
                     layers, H, (unsigned long long)vocab);
    char *p = tu_join(dir, "config.json");
    assert_int_equal(tu_write_file(p, cfg, (size_t)n), 0);
    free(p);
    p = tu_join(dir, "tokenizer.json");
    assert_int_equal(tu_write_file(p, "{\"model\":\"toy\"}", 15), 0);
    free(p);
    hma_writer *w;
    assert_int_equal(hma_writer_create(&w, dir, 0), HMA_OK);
    uint64_t emb[2] = {vocab, H}, sq[2] = {H, H}, vec[1] = {H};
    assert_int_equal(hma_writer_add_tensor(w, "model.embed_tokens.weight", HMA_DTYPE_F32, 2, emb), HMA_OK);
    for (int l = 0; l < layers; l++) {
        char nm[128];
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.q_proj.weight", l);
        assert_int_equal(hma_writer_add_tensor(w, nm, HMA_DTYPE_F32, 2, sq), HMA_OK);
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        assert_int_equal(hma_writer_add_tensor(w, nm, HMA_DTYPE_F32, 1, vec), HMA_OK);
    }
    assert_int_equal(hma_writer_add_tensor(w, "model.norm.weight", HMA_DTYPE_F32, 1, vec), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "lm_head.weight", HMA_DTYPE_F32, 2, emb), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    for (size_t i = 0; i < hma_writer_count(w); i++) {
        int k, l = 0;
        uint64_t ne;
        if (i == 0) k = K_EMBED, ne = vocab * H;
        else if (i == hma_writer_count(w) - 1) k = K_HEAD, ne = vocab * H;
        else if (i == hma_writer_count(w) - 2) k = K_NORM, ne = H;
        else k = (i - 1) % 2 ? K_LN : K_Q, l = (int)(i - 1) / 2, ne = k == K_Q ? H * H : H;
        float *buf = malloc(ne * sizeof *buf);
        for (uint64_t e = 0; e < ne; e++) buf[e] = val(m, k, l, e);
        assert_int_equal(hma_writer_write(w, i, 0, buf, ne * sizeof *buf), HMA_OK);
        free(buf);
    }
    assert_int_equal(hma_writer_commit(w), HMA_OK);
    hma_writer_free(w);
    return dir;
}

static char *A, *B, *C, *V10, *L3; /* models: 4 layers (A B C), 10 rows, 3 layers */

static int setup(void **state) {
    if (tu_group_setup(state)) return -1;
    A = make_model("A", 1, 4, 8);
    B = make_model("B", 2, 4, 8);
    C = make_model("C", 3, 4, 8);
    V10 = make_model("V10", 4, 4, 10);
    L3 = make_model("L3", 5, 3, 8);
    return 0;
}

static int teardown(void **state) {
    free(A), free(B), free(C), free(V10), free(L3);
    return tu_group_teardown(state);
}

/* printf into a recipe text and parse it. */
static int parse(hma_recipe **r, const char *fmt, ...) {
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return hma_recipe_parse(r, text, strlen(text), "t.yml");
}

static size_t find(const hma_recipe *r, const char *name) {
    for (size_t i = 0; i < hma_recipe_tensor_count(r); i++)
        if (!strcmp(hma_recipe_tensor_name(r, i), name)) return i;
    fail_msg("no output tensor %s", name);
    return HMA_NPOS;
}

static double param(const hma_recipe *r, size_t i, size_t j, const char *name) {
    double v = NAN;
    int rc = hma_recipe_tensor_param(r, i, j, name, &v);
    if (rc) fail_msg("%s of %s (source %zu): %s", name, hma_recipe_tensor_name(r, i), j, hma_last_error());
    return v;
}

static const char *src_model(const hma_recipe *r, size_t i, size_t j, const char **input) {
    size_t m = 99;
    assert_int_equal(hma_recipe_tensor_source(r, i, j, &m, input), HMA_OK);
    return hma_recipe_model_path(r, m);
}

/* Read a whole output tensor as float32 (F32 or BF16 outputs). */
static float *read_out(const char *path, const char *name, uint64_t *n, hma_dtype *dt) {
    hma_store *s;
    assert_int_equal(hma_store_open(&s, path, 0), HMA_OK);
    const hma_tensor *t = hma_store_find(s, name);
    assert_non_null(t);
    *n = hma_tensor_nelements(t);
    *dt = hma_tensor_dtype(t);
    float *v = malloc((*n ? *n : 1) * sizeof *v);
    const unsigned char *d = hma_tensor_data(t);
    for (uint64_t e = 0; e < *n; e++) {
        if (*dt == HMA_DTYPE_F32) memcpy(&v[e], d + 4 * e, 4);
        else {
            uint32_t u = (uint32_t)(d[2 * e] | d[2 * e + 1] << 8) << 16;
            memcpy(&v[e], &u, 4);
        }
    }
    hma_store_close(s);
    return v;
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* ---- the plan -------------------------------------------------------------- */

/* models: one slice over all layers: t = l / 3 for the 4 layers, 0 for the
 * embedding, the final norm and lm_head; a gradient of weights follows t. */
static void gradient_anchors(void **state) {
    (void)state;
    hma_recipe *r;
    assert_int_equal(parse(&r,
                           "merge_method: linear\n"
                           "models:\n"
                           "  - model: %s\n"
                           "    parameters: {weight: [0.0, 0.3, 0.9]}\n"
                           "  - model: %s\n"
                           "    parameters: {weight: 1.0}\n",
                           A, B),
                     HMA_OK);
    assert_string_equal(hma_recipe_method(r), "linear");
    assert_int_equal(hma_recipe_tensor_count(r), 0); /* not resolved yet */
    assert_int_equal(hma_recipe_resolve(r), HMA_OK);
    assert_int_equal(hma_recipe_resolve(r), HMA_OK); /* again: nothing */
    assert_int_equal(hma_recipe_model_count(r), 2);
    assert_int_equal(hma_recipe_tensor_count(r), 1 + 4 * 2 + 2);
    assert_string_equal(hma_recipe_tensor_name(r, 0), "model.embed_tokens.weight");
    assert_string_equal(hma_recipe_tensor_name(r, 9), "model.norm.weight");
    assert_string_equal(hma_recipe_tensor_name(r, 10), "lm_head.weight");
    const double anchors[3] = {0.0, 0.3, 0.9};
    for (int l = 0; l < 4; l++) {
        char nm[96];
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.q_proj.weight", l);
        size_t i = find(r, nm);
        double t = l / 3.0;
        assert_true(hma_recipe_tensor_t(r, i) == t);
        double x = t * 2, f = x - (int)x;
        int i0 = (int)x, i1 = i0 + 1 < 3 ? i0 + 1 : 2;
        assert_true(fabs(param(r, i, 0, "weight") - ((1 - f) * anchors[i0] + f * anchors[i1])) < 1e-15);
        assert_true(param(r, i, 1, "weight") == 1.0);
        assert_true(param(r, i, HMA_NPOS, "normalize") == 1.0); /* the method's default */
    }
    size_t ends[3] = {0, 9, 10};
    for (int k = 0; k < 3; k++) {
        assert_true(hma_recipe_tensor_t(r, ends[k]) == 0.0);
        assert_true(param(r, ends[k], 0, "weight") == 0.0); /* first anchor: mergekit's t = 0 */
    }
    double v;
    assert_int_equal(hma_recipe_tensor_param(r, 0, 0, "density", &v), HMA_ERR_NOT_FOUND); /* linear has none */
    assert_int_equal(hma_recipe_tensor_param(r, 0, 0, "nonsense", &v), HMA_ERR_NOT_FOUND);
    assert_int_equal(hma_recipe_tensor_param(r, 0, 2, "weight", &v), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_recipe_tensor_param(r, 0, 0, "normalize", &v), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_recipe_tensor_param(r, 99, 0, "weight", &v), HMA_ERR_INVALID_ARGUMENT);
    assert_true(isnan(hma_recipe_tensor_t(r, 99)));
    assert_null(hma_recipe_tensor_name(r, 99));
    unsigned nd;
    const uint64_t *sh = hma_recipe_tensor_shape(r, 0, &nd);
    assert_int_equal(nd, 2);
    assert_int_equal(sh[0], 8);
    assert_int_equal(hma_recipe_tensor_dtype(r, 0), HMA_DTYPE_F32);
    hma_recipe_free(r);
}

/* Two slices: the gradient restarts in each; the embedding takes slice 0's
 * sources, the final norm and lm_head the last slice's. */
static void slices_restart(void **state) {
    (void)state;
    hma_recipe *r;
    assert_int_equal(parse(&r,
                           "{\"merge_method\": \"linear\",\n"
                           " \"parameters\": {\"weight\": [1.0, 3.0]},\n"
                           " \"slices\": [\n"
                           "  {\"sources\": [{\"model\": \"%s\", \"layer_range\": [0, 2]},\n"
                           "               {\"model\": \"%s\", \"layer_range\": [0, 2]}]},\n"
                           "  {\"sources\": [{\"model\": \"%s\", \"layer_range\": [1, 4]},\n"
                           "               {\"model\": \"%s\", \"layer_range\": [1, 4]}]}]}\n",
                           A, B, B, C),
                     HMA_OK);
    assert_int_equal(hma_recipe_resolve(r), HMA_OK);
    assert_int_equal(hma_recipe_model_count(r), 3);
    /* 2 + 3 layers */
    assert_int_equal(hma_recipe_tensor_count(r), 1 + 5 * 2 + 2);
    const double t[5] = {0, 1, 0, 0.5, 1};
    const long in_layer[5] = {0, 1, 1, 2, 3};
    for (int l = 0; l < 5; l++) {
        char nm[96], want[96];
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        size_t i = find(r, nm);
        assert_true(hma_recipe_tensor_t(r, i) == t[l]);
        assert_true(param(r, i, 0, "weight") == 1.0 + 2.0 * t[l]);
        const char *input;
        const char *m0 = src_model(r, i, 0, &input);
        snprintf(want, sizeof want, "model.layers.%ld.input_layernorm.weight", in_layer[l]);
        assert_string_equal(input, want);
        assert_string_equal(m0, l < 2 ? A : B);
    }
    size_t e = find(r, "model.embed_tokens.weight"), n = find(r, "model.norm.weight"), h = find(r, "lm_head.weight");
    assert_string_equal(src_model(r, e, 0, NULL), A);
    assert_string_equal(src_model(r, e, 1, NULL), B);
    assert_string_equal(src_model(r, n, 0, NULL), B);
    assert_string_equal(src_model(r, n, 1, NULL), C);
    assert_string_equal(src_model(r, h, 1, NULL), C);
    assert_true(param(r, h, 0, "weight") == 1.0 && hma_recipe_tensor_t(r, h) == 0.0);
    hma_recipe_free(r);
}

/* Per-model filters match the INPUT name, global ones the OUTPUT name;
 * precedence: source > slice > global. */
static void filters_and_precedence(void **state) {
    (void)state;
    hma_recipe *r;
    assert_int_equal(parse(&r,
                           "{\"merge_method\": \"linear\",\n"
                           " \"parameters\": {\"weight\": 1.0,\n"
                           "   \"normalize\": [{\"filter\": \"layers.0.\", \"value\": 0}, {\"value\": 1}]},\n"
                           " \"slices\": [\n"
                           "  {\"parameters\": {\"weight\": 2.0},\n"
                           "   \"sources\": [{\"model\": \"%s\", \"layer_range\": [2, 4],\n"
                           "                \"parameters\": {\"weight\": [{\"filter\": \"layers.2.\", \"value\": 5},\n"
                           "                                             {\"filter\": \"q_proj\", \"value\": 3}]}},\n"
                           "               {\"model\": \"%s\", \"layer_range\": [2, 4]}]},\n"
                           "  {\"sources\": [{\"model\": \"%s\", \"layer_range\": [0, 1]},\n"
                           "               {\"model\": \"%s\", \"layer_range\": [0, 1]}]}]}\n",
                           A, B, A, B),
                     HMA_OK);
    assert_int_equal(hma_recipe_resolve(r), HMA_OK);
    size_t q0 = find(r, "model.layers.0.self_attn.q_proj.weight"); /* input layer 2 */
    size_t n0 = find(r, "model.layers.0.input_layernorm.weight");
    size_t q1 = find(r, "model.layers.1.self_attn.q_proj.weight"); /* input layer 3 */
    size_t n1 = find(r, "model.layers.1.input_layernorm.weight");
    size_t q2 = find(r, "model.layers.2.self_attn.q_proj.weight"); /* slice 2 */
    assert_true(param(r, q0, 0, "weight") == 5.0); /* source filter on input "layers.2." */
    assert_true(param(r, n0, 0, "weight") == 5.0);
    assert_true(param(r, q1, 0, "weight") == 3.0); /* second filter */
    assert_true(param(r, n1, 0, "weight") == 2.0); /* no filter matches: the slice's */
    assert_true(param(r, q0, 1, "weight") == 2.0); /* B: the slice's */
    assert_true(param(r, q2, 0, "weight") == 1.0); /* slice 2: the global */
    assert_true(param(r, q0, HMA_NPOS, "normalize") == 0.0); /* output name layers.0. */
    assert_true(param(r, q1, HMA_NPOS, "normalize") == 1.0);
    hma_recipe_free(r);
}

/* ---- merged bytes ------------------------------------------------------------ */

/* passthrough of [0, 3) + [1, 4): 6 layers renumbered, bytes of the inputs;
 * config.json's num_hidden_layers becomes 6; the recipe text is kept. */
static void passthrough_renumbers(void **state) {
    (void)state;
    char text[1024];
    snprintf(text, sizeof text,
             "{\"merge_method\": \"passthrough\", \"dtype\": \"float32\",\n"
             " \"slices\": [{\"sources\": [{\"model\": \"%s\", \"layer_range\": [0, 3]}]},\n"
             "            {\"sources\": [{\"model\": \"%s\", \"layer_range\": [1, 4]}]}]}\n",
             A, A);
    hma_recipe *r;
    assert_int_equal(hma_recipe_parse(&r, text, strlen(text), "pt.yml"), HMA_OK);
    char *out = tu_join(tu_dir, "out-pt");
    assert_int_equal(hma_recipe_merge_to(r, out, NULL), HMA_OK);
    assert_int_equal(hma_recipe_tensor_count(r), 1 + 6 * 2 + 2);
    const int from[6] = {0, 1, 2, 1, 2, 3};
    for (int l = 0; l < 6; l++) {
        char nm[96];
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.q_proj.weight", l);
        uint64_t n;
        hma_dtype dt;
        float *v = read_out(out, nm, &n, &dt);
        assert_int_equal(n, H * H);
        for (uint64_t e = 0; e < n; e++) assert_true(v[e] == val(1, K_Q, from[l], e));
        free(v);
    }
    hma_store *s;
    assert_int_equal(hma_store_open(&s, out, 0), HMA_OK);
    assert_int_equal(hma_store_count(s), 15);
    assert_string_equal(hma_store_metadata(s, "hma_recipe_text"), text);
    assert_string_equal(hma_store_metadata(s, "format"), "pt");
    assert_non_null(strstr(hma_store_metadata(s, "hma_recipe"), "\"method\":\"passthrough\""));
    hma_store_close(s);
    char *cfg = tu_join(out, "config.json");
    size_t len;
    unsigned char *c = tu_read_file(cfg, &len);
    assert_non_null(c);
    assert_non_null(strstr((char *)c, "\"num_hidden_layers\": 6,"));
    assert_non_null(strstr((char *)c, "\"vocab_size\": 8\n"));
    free(c);
    free(cfg);
    cfg = tu_join(out, "tokenizer.json");
    assert_true(exists(cfg));
    free(cfg);
    free(out);
    hma_recipe_free(r);
}

/* linear 0.3 / 0.7, normalized: the bytes of float32 math done here, in
 * mergekit's order (sum of w_i x_i, then / sum w_i); out_dtype bfloat16
 * rounds that once. */
static void linear_bytes(void **state) {
    (void)state;
    for (int bf = 0; bf < 2; bf++) {
        hma_recipe *r;
        assert_int_equal(parse(&r,
                               "merge_method: linear\n"
                               "%s"
                               "models:\n"
                               "  - model: %s\n"
                               "    parameters: {weight: 0.3}\n"
                               "  - model: %s\n"
                               "    parameters: {weight: 0.7}\n",
                               bf ? "out_dtype: bfloat16\n" : "", A, B),
                         HMA_OK);
        char *out = tu_join(tu_dir, bf ? "lin-bf16.safetensors" : "lin.safetensors");
        assert_int_equal(hma_recipe_merge_to(r, out, NULL), HMA_OK);
        uint64_t n;
        hma_dtype dt;
        float *v = read_out(out, "model.layers.2.self_attn.q_proj.weight", &n, &dt);
        assert_int_equal(dt, bf ? HMA_DTYPE_BF16 : HMA_DTYPE_F32);
        float w0 = 0.3f, w1 = 0.7f;
        for (uint64_t e = 0; e < n; e++) {
            float x = (w0 * val(1, K_Q, 2, e) + w1 * val(2, K_Q, 2, e)) / (w0 + w1);
            if (bf) { /* one round to nearest even */
                uint32_t u;
                memcpy(&u, &x, 4);
                u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
                memcpy(&x, &u, 4);
            }
            assert_true(v[e] == x);
        }
        free(v);
        free(out);
        hma_recipe_free(r);
    }
}

/* Vocabulary mismatch: rows [0, 8) merged, rows 8 and 9 from the model
 * that has them (V10; the base A has 8 rows), a note saying so and that
 * nothing is truncated; config.json's vocab_size becomes 10. */
static void vocab_rows(void **state) {
    (void)state;
    hma_recipe *r;
    assert_int_equal(parse(&r,
                           "merge_method: task_arithmetic\n"
                           "base_model: %s\n"
                           "models:\n"
                           "  - model: %s\n"
                           "    parameters: {weight: 1.0}\n",
                           A, V10),
                     HMA_OK);
    char *out = tu_join(tu_dir, "out-vocab");
    assert_int_equal(hma_recipe_merge_to(r, out, NULL), HMA_OK);
    int said = 0;
    for (size_t k = 0; k < hma_recipe_note_count(r); k++) {
        const char *note = hma_recipe_note(r, k);
        said |= strstr(note, "model.embed_tokens.weight") && strstr(note, "never truncates") &&
                strstr(note, "rows 8..9 copied from");
    }
    assert_true(said);
    const char *names[2] = {"model.embed_tokens.weight", "lm_head.weight"};
    const int kind[2] = {K_EMBED, K_HEAD};
    for (int t = 0; t < 2; t++) {
        uint64_t n;
        hma_dtype dt;
        float *v = read_out(out, names[t], &n, &dt);
        assert_int_equal(n, 10 * H);
        for (uint64_t e = 0; e < n; e++) {
            float b = val(1, kind[t], 0, e), x = val(4, kind[t], 0, e);
            float want = e < 8 * H ? b + (x - b) : x; /* task arithmetic, weight 1; extra rows copied */
            assert_true(v[e] == want);
        }
        free(v);
    }
    char *cfg = tu_join(out, "config.json");
    size_t len;
    unsigned char *c = tu_read_file(cfg, &len);
    assert_non_null(strstr((char *)c, "\"vocab_size\": 10\n"));
    assert_non_null(strstr((char *)c, "\"num_hidden_layers\": 4,"));
    free(c);
    free(cfg);
    free(out);
    hma_recipe_free(r);
}

/* The seed changes DARE's draws; the thread count changes nothing. */
static void seed_and_threads(void **state) {
    (void)state;
    unsigned char *bytes[3];
    size_t len[3];
    const uint64_t seed[3] = {1, 1, 2};
    const unsigned threads[3] = {1, 2, 2};
    for (int k = 0; k < 3; k++) {
        hma_recipe *r;
        assert_int_equal(parse(&r,
                               "merge_method: dare_linear\n"
                               "base_model: %s\n"
                               "models:\n"
                               "  - model: %s\n"
                               "    parameters: {weight: 0.5, density: 0.5}\n"
                               "  - model: %s\n"
                               "    parameters: {weight: 0.5, density: 0.5}\n",
                               A, B, C),
                         HMA_OK);
        hma_recipe_options o;
        hma_recipe_options_init(&o);
        o.seed = seed[k];
        o.threads = threads[k];
        char nm[64];
        snprintf(nm, sizeof nm, "dare%d.safetensors", k);
        char *out = tu_join(tu_dir, nm);
        assert_int_equal(hma_recipe_merge_to(r, out, &o), HMA_OK);
        bytes[k] = tu_read_file(out, &len[k]);
        assert_non_null(bytes[k]);
        free(out);
        hma_recipe_free(r);
    }
    assert_int_equal(len[0], len[1]);
    assert_memory_equal(bytes[0], bytes[1], len[0]);
    /* the metadata records the seed, so compare the tensor bytes only: the
     * last layer's q_proj, at the same offset in both files */
    hma_store *s1, *s2;
    char *p1 = tu_join(tu_dir, "dare1.safetensors"), *p2 = tu_join(tu_dir, "dare2.safetensors");
    assert_int_equal(hma_store_open(&s1, p1, 0), HMA_OK);
    assert_int_equal(hma_store_open(&s2, p2, 0), HMA_OK);
    const hma_tensor *t1 = hma_store_find(s1, "model.layers.3.self_attn.q_proj.weight");
    const hma_tensor *t2 = hma_store_find(s2, "model.layers.3.self_attn.q_proj.weight");
    assert_true(memcmp(hma_tensor_data(t1), hma_tensor_data(t2), hma_tensor_nbytes(t1)) != 0);
    hma_store_close(s1);
    hma_store_close(s2);
    free(p1), free(p2);
    for (int k = 0; k < 3; k++) free(bytes[k]);
}

/* ---- errors: named key, model and line; nothing written ------------------------ */

static void expect_error(const char *text, int code, const char *const *must) {
    hma_recipe *r;
    int rc = hma_recipe_parse(&r, text, strlen(text), "bad.yml");
    if (rc == HMA_OK) {
        char *out = tu_join(tu_dir, "never");
        rc = hma_recipe_merge_to(r, out, NULL);
        assert_false(exists(out));
        free(out);
        hma_recipe_free(r);
    }
    if (rc != code) fail_msg("expected code %d, got %d: %s", code, rc, hma_last_error());
    for (; *must; must++)
        if (!strstr(hma_last_error(), *must)) fail_msg("'%s' not in: %s", *must, hma_last_error());
}

/* A one-layer file: k = 0 without layer 0's input_layernorm, k = 1 with
 * a q_proj of shape [2, 8]. */
static char *odd_model(int k) {
    char *p = tu_join(tu_dir, k ? "shape.safetensors" : "missing.safetensors");
    hma_writer *w;
    assert_int_equal(hma_writer_create(&w, p, 0), HMA_OK);
    uint64_t emb[2] = {8, H}, q[2] = {k ? 2 : H, k ? 8 : H}, vec[1] = {H};
    assert_int_equal(hma_writer_add_tensor(w, "model.embed_tokens.weight", HMA_DTYPE_F32, 2, emb), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "model.layers.0.self_attn.q_proj.weight", HMA_DTYPE_F32, 2, q), HMA_OK);
    if (k) assert_int_equal(hma_writer_add_tensor(w, "model.layers.0.input_layernorm.weight", HMA_DTYPE_F32, 1, vec), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "model.norm.weight", HMA_DTYPE_F32, 1, vec), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "lm_head.weight", HMA_DTYPE_F32, 2, emb), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    float zero[64] = {0};
    for (size_t i = 0; i < hma_writer_count(w); i++)
        assert_int_equal(hma_writer_write(w, i, 0, zero, i == 0 || i + 1 == hma_writer_count(w) ? 32 * 4 : i == 1 ? 16 * 4 : H * 4), HMA_OK);
    assert_int_equal(hma_writer_commit(w), HMA_OK);
    hma_writer_free(w);
    return p;
}

/* A one-layer file like A's layer 0, with +inf at element 5 of its q_proj. */
static char *inf_model(void) {
    char *p = tu_join(tu_dir, "inf.safetensors");
    hma_writer *w;
    assert_int_equal(hma_writer_create(&w, p, 0), HMA_OK);
    uint64_t emb[2] = {8, H}, sq[2] = {H, H}, vec[1] = {H};
    assert_int_equal(hma_writer_add_tensor(w, "model.embed_tokens.weight", HMA_DTYPE_F32, 2, emb), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "model.layers.0.self_attn.q_proj.weight", HMA_DTYPE_F32, 2, sq), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "model.layers.0.input_layernorm.weight", HMA_DTYPE_F32, 1, vec), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "model.norm.weight", HMA_DTYPE_F32, 1, vec), HMA_OK);
    assert_int_equal(hma_writer_add_tensor(w, "lm_head.weight", HMA_DTYPE_F32, 2, emb), HMA_OK);
    assert_int_equal(hma_writer_begin(w), HMA_OK);
    float v[32] = {0};
    for (size_t i = 0; i < hma_writer_count(w); i++) {
        size_t ne = i == 0 || i + 1 == hma_writer_count(w) ? 32 : i == 1 ? 16 : H;
        for (size_t e = 0; e < ne; e++) v[e] = i == 1 && e == 5 ? INFINITY : 0.5f;
        assert_int_equal(hma_writer_write(w, i, 0, v, ne * 4), HMA_OK);
    }
    assert_int_equal(hma_writer_commit(w), HMA_OK);
    hma_writer_free(w);
    return p;
}

/* `method` over layer 0 of A (the base) and of `other`, weight 0.5 and
 * density 0.5 for both. */
static int parse_layer0(hma_recipe **r, const char *method, const char *other) {
    return parse(r,
                 "{\"merge_method\": \"%s\", \"base_model\": \"%s\",\n"
                 " \"parameters\": {\"weight\": 0.5, \"density\": 0.5},\n"
                 " \"slices\": [{\"sources\": [\n  {\"model\": \"%s\", \"layer_range\": [0, 1]},\n"
                 "  {\"model\": \"%s\", \"layer_range\": [0, 1]}]}]}\n",
                 method, A, A, other);
}

/* A non-finite result is an error naming the tensor, and nothing is written:
 * through the methods that read mapped sources (task_arithmetic, ties) and
 * through those that load float32 copies (linear, dare_linear). */
static void nonfinite_no_output(void **state) {
    (void)state;
    char *inf = inf_model(), *out = tu_join(tu_dir, "nonfinite.safetensors");
    const char *methods[] = {"task_arithmetic", "ties", "linear", "dare_linear"};
    for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++) {
        hma_recipe *r;
        assert_int_equal(parse_layer0(&r, methods[k], inf), HMA_OK);
        int rc = hma_recipe_merge_to(r, out, NULL);
        if (rc != HMA_ERR_NONFINITE) fail_msg("%s: %d %s", methods[k], rc, hma_last_error());
        if (!strstr(hma_last_error(), "model.layers.0.self_attn.q_proj.weight"))
            fail_msg("%s: tensor not named: %s", methods[k], hma_last_error());
        assert_false(exists(out));
        hma_recipe_free(r);
    }
    free(inf), free(out);
}

/* The writer begins (reserves its output) as a task beside the merge while
 * the selections run: its errors are still the merge's, come
 * before any error of the merge itself (as a begin up front would), and
 * nothing is written. For a method that streams its result (ties) and one
 * that does not (linear). */
static void writer_errors(void **state) {
    (void)state;
    char *inf = inf_model(), *dir = tu_join(tu_dir, "taken.safetensors");
    assert_int_equal(mkdir(dir, 0755), 0);
    struct stat a0, a1;
    assert_int_equal(stat(A, &a0), 0);
    const char *methods[] = {"ties", "linear"};
    for (size_t k = 0; k < 2; k++) {
        for (int bad = 0; bad < 2; bad++) {
            hma_recipe *r;
            assert_int_equal(parse_layer0(&r, methods[k], bad ? inf : B), HMA_OK);
            /* an existing folder where the file should go; with a non-finite
             * input too, the folder is still the error */
            int rc = hma_recipe_merge_to(r, dir, NULL);
            if (rc != HMA_ERR_EXISTS || !strstr(hma_last_error(), "taken.safetensors"))
                fail_msg("%s: %d %s", methods[k], rc, hma_last_error());
            struct stat st;
            assert_int_equal(stat(dir, &st), 0);
            assert_true(S_ISDIR(st.st_mode));
            /* an input as the output */
            rc = hma_recipe_merge_to(r, A, NULL);
            if (rc != HMA_ERR_OVERWRITES_INPUT) fail_msg("%s: %d %s", methods[k], rc, hma_last_error());
            assert_int_equal(stat(A, &a1), 0);
            assert_true(a1.st_size == a0.st_size && a1.st_ino == a0.st_ino);
            hma_recipe_free(r);
        }
    }
    assert_int_equal(rmdir(dir), 0);
    assert_false(tu_has_entry_prefix(tu_dir, ".hma-tmp")); /* no temporary left */
    free(inf), free(dir);
}

static int cancel_cb(void *user, uint64_t done, uint64_t total) {
    (void)user, (void)done, (void)total;
    return HMA_CANCEL;
}

static void errors_name_line(void **state) {
    (void)state;
    char text[2048], missing[600];
    snprintf(missing, sizeof missing, "%s/nope", tu_dir);
    snprintf(text, sizeof text, "merge_method: linear\nmodels:\n  - model: %s\n    parameters: {weight: 1}\n  - model: %s\n    parameters: {weight: 1}\n", A, missing);
    expect_error(text, HMA_ERR_NOT_FOUND, (const char *const[]){"bad.yml:5:", missing, NULL});
    snprintf(text, sizeof text, "merge_method: linear\nmodels:\n  - model: %s\n    parameters: {weight: 1}\n  - model: %s+lora\n    parameters: {weight: 1}\n", A, B);
    expect_error(text, HMA_ERR_RECIPE, (const char *const[]){"bad.yml:5:", "LORA", NULL});
    /* a required weight missing for B (not the base) */
    snprintf(text, sizeof text, "merge_method: linear\nmodels:\n  - model: %s\n    parameters: {weight: 1}\n  - model: %s\n", A, B);
    expect_error(text, HMA_ERR_RECIPE,
                 (const char *const[]){"bad.yml:5:", "model.embed_tokens.weight", B, "'weight'", NULL});
    /* a layer range beyond the model */
    snprintf(text, sizeof text,
             "{\"merge_method\": \"passthrough\",\n \"slices\": [{\"sources\": [\n  {\"model\": \"%s\", \"layer_range\": [2, 6]}]}]}\n",
             A);
    expect_error(text, HMA_ERR_RECIPE, (const char *const[]){"bad.yml:3:", "layer_range", A, NULL});
    /* layer counts differ in a models: recipe */
    snprintf(text, sizeof text, "merge_method: linear\nmodels:\n  - model: %s\n    parameters: {weight: 1}\n  - model: %s\n    parameters: {weight: 1}\n", A, L3);
    expect_error(text, HMA_ERR_MISMATCH, (const char *const[]){"bad.yml:5:", L3, NULL});
    /* a tensor missing from a source, then a shape that differs */
    for (int k = 0; k < 2; k++) {
        char *odd = odd_model(k);
        snprintf(text, sizeof text,
                 "{\"merge_method\": \"linear\", \"parameters\": {\"weight\": 1},\n \"slices\": [{\"sources\": [\n"
                 "  {\"model\": \"%s\", \"layer_range\": [0, 1]},\n  {\"model\": \"%s\", \"layer_range\": [0, 1]}]}]}\n",
                 A, odd);
        if (k == 0)
            expect_error(text, HMA_ERR_MISMATCH,
                         (const char *const[]){"bad.yml:4:", "model.layers.0.input_layernorm.weight", odd, NULL});
        else
            expect_error(text, HMA_ERR_MISMATCH,
                         (const char *const[]){"model.layers.0.self_attn.q_proj.weight", odd, "[2, 8]", NULL});
        free(odd);
    }
}

static void errors_no_output(void **state) {
    (void)state;
    /* the base of a slice that is not among its sources, for ties */
    char text[2048];
    snprintf(text, sizeof text,
             "{\"merge_method\": \"task_arithmetic\", \"base_model\": \"%s\", \"parameters\": {\"weight\": 1},\n"
             " \"slices\": [{\"sources\": [\n  {\"model\": \"%s\", \"layer_range\": [0, 4]}]}]}\n",
             A, B);
    expect_error(text, HMA_ERR_RECIPE, (const char *const[]){"bad.yml:2:", "base_model", NULL});
    /* a progress callback that cancels: no output */
    hma_recipe *r;
    assert_int_equal(parse(&r, "merge_method: passthrough\nslices:\n  - sources:\n      - model: %s\n        layer_range: [0, 4]\n", A), HMA_OK);
    hma_recipe_options o;
    hma_recipe_options_init(&o);
    o.progress = cancel_cb;
    char *out = tu_join(tu_dir, "cancelled");
    assert_int_equal(hma_recipe_merge_to(r, out, &o), HMA_ERR_CANCELLED);
    assert_false(exists(out));
    assert_int_equal(hma_recipe_set_metadata(r, "hma_recipe", "x"), HMA_ERR_INVALID_ARGUMENT);
    assert_int_equal(hma_recipe_set_metadata(r, "who", "me"), HMA_OK);
    o.progress = NULL;
    assert_int_equal(hma_recipe_merge_to(r, out, &o), HMA_OK);
    hma_store *s;
    assert_int_equal(hma_store_open(&s, out, 0), HMA_OK);
    assert_string_equal(hma_store_metadata(s, "who"), "me");
    hma_store_close(s);
    free(out);
    hma_recipe_free(r);
}

/* `hma merge --config R --dry-run` prints one line per output tensor and
 * writes nothing; the real run writes the output (needs HMA_BIN). */
static void cli_dry_run(void **state) {
    (void)state;
    const char *bin = getenv("HMA_BIN");
    if (!bin || !*bin) skip();
    char *rp = tu_join(tu_dir, "cli.yml"), *out = tu_join(tu_dir, "cli-out"), *lst = tu_join(tu_dir, "cli.txt");
    char text[1024], cmd[4096];
    int n = snprintf(text, sizeof text,
                     "merge_method: passthrough\nslices:\n  - sources:\n      - model: %s\n        layer_range: [0, 2]\n"
                     "        parameters: {scale: 0.5}\n",
                     A);
    assert_int_equal(tu_write_file(rp, text, (size_t)n), 0);
    snprintf(cmd, sizeof cmd, "%s merge --config %s -o %s --dry-run > %s", bin, rp, out, lst);
    assert_int_equal(system(cmd), 0);
    assert_false(exists(out));
    size_t len;
    char *txt = (char *)tu_read_file(lst, &len);
    assert_non_null(txt);
    assert_non_null(strstr(txt, "model.layers.1.self_attn.q_proj.weight [4,4] F32 t=1 0:model.layers.1.self_attn.q_proj.weight(scale=0.5)"));
    free(txt);
    snprintf(cmd, sizeof cmd, "%s merge --config %s -o %s -q --threads 2", bin, rp, out);
    assert_int_equal(system(cmd), 0);
    assert_true(exists(out));
    free(rp), free(out), free(lst);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gradient_anchors),   cmocka_unit_test(slices_restart),
        cmocka_unit_test(filters_and_precedence), cmocka_unit_test(passthrough_renumbers),
        cmocka_unit_test(linear_bytes),       cmocka_unit_test(vocab_rows),
        cmocka_unit_test(seed_and_threads),   cmocka_unit_test(errors_name_line),
        cmocka_unit_test(errors_no_output),   cmocka_unit_test(nonfinite_no_output),
        cmocka_unit_test(cli_dry_run),        cmocka_unit_test(writer_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
