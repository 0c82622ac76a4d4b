/*
 * gen_seeds.c - writes the seed corpora of the fuzz targets with the current
 * library, so that no binary seed is committed (the pack format may still
 * change). Usage: gen_seeds OUTDIR; creates OUTDIR/<target>/ for each target
 * (safetensors, gguf, index, json, groups, pack, pack_chunk, recipe). Exit 0 on success.
 */
#include "fuzz_common.h"

#include "internal.h"
#include "formats/gguf.h"
#include "pack/codec.h"

#include <errno.h>

#include "../mergekit_examples.h"

static const char *g_out;
static int g_fail;
static unsigned g_count;

static void die(const char *what) {
    fprintf(stderr, "gen_seeds: %s: %s\n", what, hma_last_error());
    g_fail = 1;
}

static void seed(const char *target, const char *name, const void *data, size_t len) {
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/%s", g_out, target);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (fz_write_file(path, data, len) != 0) {
        fprintf(stderr, "gen_seeds: cannot write %s: %s\n", path, strerror(errno));
        g_fail = 1;
    }
    g_count++;
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* A safetensors file from a header string and `data_len` patterned bytes. */
static size_t raw_st(unsigned char *buf, size_t cap, const char *header, size_t data_len) {
    size_t h = strlen(header);
    if (8 + h + data_len > cap) return 0;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    for (size_t i = 0; i < data_len; i++) buf[8 + h + i] = (unsigned char)(i * 37 + 11);
    return 8 + h + data_len;
}

typedef struct rawcase {
    const char *name;
    const char *header;
    size_t data;
} rawcase;

static const rawcase k_raw[] = {
    {"one_f32", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8},
    {"meta_padded",
     "{\"__metadata__\":{\"format\":\"pt\",\"k\\u00e9y\":\"v\\n\\\"q\\\"\"},"
     "\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}        ",
     8},
    {"scalar_and_empty",
     "{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]},"
     "\"e\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[8,8]}}",
     8},
    {"all_ints",
     "{\"b\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]},"
     "\"u8\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[3,4]},"
     "\"i8\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[4,5]},"
     "\"i16\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[5,7]},"
     "\"u16\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[7,9]},"
     "\"i32\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[9,13]},"
     "\"u32\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[13,17]},"
     "\"i64\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[17,25]},"
     "\"u64\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[25,33]}}",
     33},
    {"small_floats",
     "{\"c\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]},"
     "\"e4\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[8,10]},"
     "\"e5\":{\"dtype\":\"F8_E5M2\",\"shape\":[1],\"data_offsets\":[10,11]},"
     "\"e8\":{\"dtype\":\"F8_E8M0\",\"shape\":[1],\"data_offsets\":[11,12]},"
     "\"fz\":{\"dtype\":\"F8_E4M3FNUZ\",\"shape\":[1],\"data_offsets\":[12,13]},"
     "\"fy\":{\"dtype\":\"F8_E5M2FNUZ\",\"shape\":[1],\"data_offsets\":[13,14]},"
     "\"f4\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[14,15]},"
     "\"f6\":{\"dtype\":\"F6_E2M3\",\"shape\":[4],\"data_offsets\":[15,18]},"
     "\"f7\":{\"dtype\":\"F6_E3M2\",\"shape\":[4],\"data_offsets\":[18,21]}}",
     21},
    {"unordered_offsets",
     "{\"z\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
     "\"a\":{\"dtype\":\"U8\",\"shape\":[1,2],\"data_offsets\":[0,2]}}",
     4},
    {"unicode_names",
     "{\"model.layers.3.\\u00fc\\ud83d\\ude00\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]},"
     "\"caf\xc3\xa9\":{\"dtype\":\"I8\",\"shape\":[1,1,1,1],\"data_offsets\":[1,2]}}",
     2},
};

static void gen_safetensors_and_json(const char *tmp) {
    unsigned char buf[4096];
    for (size_t i = 0; i < sizeof k_raw / sizeof k_raw[0]; i++) {
        size_t n = raw_st(buf, sizeof buf, k_raw[i].header, k_raw[i].data);
        if (!n) die("raw seed too large");
        seed("safetensors", k_raw[i].name, buf, n);
        seed("json", k_raw[i].name, k_raw[i].header, strlen(k_raw[i].header));
    }
    for (int which = 0; which < 3; which++) {
        char path[700], name[32];
        snprintf(path, sizeof path, "%s/ck%d.safetensors", tmp, which);
        if (fz_write_checkpoint(path, which)) die("fz_write_checkpoint");
        size_t len = 0;
        unsigned char *b = read_all(path, &len);
        if (!b) {
            die("read checkpoint");
            continue;
        }
        snprintf(name, sizeof name, "checkpoint%d", which);
        if (which != 1) seed("safetensors", name, b, len); /* ~7 KB each: keep two */
        uint64_t hl = 0;
        for (int k = 7; k >= 0; k--) hl = hl << 8 | b[k];
        if (hl <= len - 8) seed("json", name, b + 8, (size_t)hl);
        free(b);
    }
    static const char *const snippets[] = {
        "[1,-2.5e+3,0.125,1E-7,18446744073709551615,18446744073709551616,-0]",
        "{\"a\":[true,false,null,{}],\"b\":\"\\u0000\\/\\b\\f\\n\\r\\t\\\\\"}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "\"\\ud834\\udd1e \xf0\x9d\x84\x9e \xe2\x82\xac\"",
        " \t\r\n{ \"k\" : \"v\" , \"k2\" : [ ] } \n",
    };
    for (size_t i = 0; i < sizeof snippets / sizeof snippets[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "snippet%zu", i);
        seed("json", name, snippets[i], strlen(snippets[i]));
    }
}


/* fuzz_gguf seeds: the small GGUFs of fz_gguf() (base and variant, with and
 * without the Q4_K tensor), and the header of each toy-llama GGUF (metadata
 * and 75 tensor infos, about 8 KB) followed by 64 bytes of its data: the
 * real files are 5-10 MB, far too big for a seed, and the parse of every
 * field is what the fuzzer should mutate. */
static void gen_gguf(void) {
    static uint8_t buf[8192];
    for (int ext = 0; ext < 2; ext++)
        for (int which = 0; which < 2; which++) {
            size_t n = fz_gguf(buf, sizeof buf, which, ext);
            if (!n) die("fz_gguf: buffer too small");
            char name[32];
            snprintf(name, sizeof name, "small%d%s", which, ext ? "_q4k" : "");
            seed("gguf", name, buf, n);
        }
    static const char *const toys[] = {"base.gguf", "base-q8_0.gguf"};
    for (size_t i = 0; i < sizeof toys / sizeof toys[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "examples/data/toy-llama/%s", toys[i]);
        /* the data section starts after the header and tensor infos */
        uint64_t ds = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        hma__gguf g;
        if (fd < 0 || fstat(fd, &sb) || hma__gguf_read(fd, path, (uint64_t)sb.st_size, &g)) {
            die(path);
            if (fd >= 0) close(fd);
            continue;
        }
        ds = g.data_start;
        hma__gguf_free(&g);
        close(fd);
        FILE *f = fopen(path, "rb");
        unsigned char *b = malloc((size_t)ds + 64);
        if (!f || !b || fread(b, 1, (size_t)ds + 64, f) != (size_t)ds + 64) die(path);
        else seed("gguf", toys[i], b, (size_t)ds + 64);
        if (f) fclose(f);
        free(b);
    }
}

/* fuzz_index input: u16 LE length, index JSON, shard "a.safetensors". */
static void index_seed(const char *name, const char *json, const char *shard_header, size_t shard_data) {
    unsigned char buf[4096], shard[2048];
    size_t sl = shard_header ? raw_st(shard, sizeof shard, shard_header, shard_data) : 0;
    size_t jl = strlen(json);
    buf[0] = (unsigned char)(jl & 0xff);
    buf[1] = (unsigned char)(jl >> 8);
    memcpy(buf + 2, json, jl);
    memcpy(buf + 2 + jl, shard, sl);
    seed("index", name, buf, 2 + jl + sl);
    seed("json", name, json, jl);
}

static void gen_index(void) {
    static const char a1[] = "{\"x.a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    static const char a2[] =
        "{\"__metadata__\":{\"format\":\"pt\"},\"model.layers.0.q\":{\"dtype\":\"BF16\",\"shape\":[2,2],"
        "\"data_offsets\":[0,8]},\"model.layers.0.k\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]}}";
    index_seed("one_shard", "{\"weight_map\":{\"x.a\":\"a.safetensors\"}}", a1, 4);
    index_seed("two_shards",
               "{\"metadata\":{\"total_size\":12},\"weight_map\":{\"x.a\":\"a.safetensors\",\"x.b\":\"b.safetensors\"}}",
               a1, 4);
    index_seed("shard_b_only", "{\"weight_map\":{\"x.b\":\"b.safetensors\"}}", NULL, 0);
    index_seed("layers",
               "{\"metadata\":{\"total_size\":20},\"weight_map\":{\"model.layers.0.k\":\"a.safetensors\","
               "\"x.b\":\"b.safetensors\",\"model.layers.0.q\":\"a.safetensors\"}}",
               a2, 12);
}

static void gen_groups(void) {
    static const char *const g[] = {
        "all\nmodel.embed_tokens.weight\nmodel.layers.0.self_attn.q_proj.weight\nmodel.layers.1.mlp.up_proj.weight\n"
        "model.norm.weight\nlm_head.weight",
        "blocks:3\nmodel.layers.0.a\nmodel.layers.5.b\nmodel.layers.11.c\nRlayers.1?.*=2\nR*norm*=mean\nmodel.norm.w",
        "split:2,5,9\ntransformer.h.0.attn\ntransformer.h.7.mlp\ntransformer.wte.weight\nRattn=1\nGblocks:2",
        "layers\ngpt_neox.layers.4.x\nbase_model.model.model.layers.2.lora_A\nblk.9.ffn\nencoder.layer.1.y\n"
        "model.decoder.layers.3.fc1\ntransformer.blocks.6.z\nRffn=0\nGall",
        "none\nx\nR=0\nR*=mean\nRx=5",
        "blocks:65536\nmodel.layers.999999999.w\nmodel.layers.0000000001.w\nmodel.layers..w\nmodel.layers.12",
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "groups%zu", i);
        seed("groups", name, g[i], strlen(g[i]));
    }
}

static void gen_packs(const char *tmp) {
    char bpath[700], t1[700], t2[700], out[800];
    snprintf(bpath, sizeof bpath, "%s/ck0.safetensors", tmp);
    snprintf(t1, sizeof t1, "%s/ck1.safetensors", tmp);
    snprintf(t2, sizeof t2, "%s/ck2.safetensors", tmp);
    hma_store *base = NULL;
    if (hma_store_open(&base, bpath, 0)) {
        die("open base");
        return;
    }
    struct {
        const char *name, *model;
        int with_base, level;
    } packs[] = {
        {"delta_variant", t1, 1, 1},
        {"delta_missing_tensor", t2, 1, 3},
        {"standalone_base", bpath, 0, 1},
        {"standalone_variant", t1, 0, 19},
    };
    for (size_t i = 0; i < sizeof packs / sizeof packs[0]; i++) {
        hma_pack_options opt;
        hma_pack_options_init(&opt);
        opt.threads = 1;
        opt.chunk_size = HMA_PACK_MIN_CHUNK; /* several chunks in a small tensor */
        opt.level = packs[i].level;
        snprintf(out, sizeof out, "%s/%s.hmapack", tmp, packs[i].name);
        if (hma_pack_create(packs[i].model, packs[i].with_base ? base : NULL, out, &opt, NULL)) {
            die("hma_pack_create");
            continue;
        }
        size_t len = 0;
        unsigned char *b = read_all(out, &len);
        if (!b) die("read pack");
        else seed("pack", packs[i].name, b, len);
        free(b);
        unlink(out);
    }

    /* chunk payloads for fuzz_pack_chunk: every method on every layout */
    hma__pc_ctx *ctx = NULL;
    if (hma__pc_ctx_new(&ctx, 65536)) {
        die("hma__pc_ctx_new");
        hma_store_close(base);
        return;
    }
    const size_t n = 256;
    for (size_t f = 0; f < FZ_N_LAYOUTS; f++) {
        unsigned char raw[256], b[256];
        hma__pc_fmt fmt = {fz_chunk_layouts[f][0], fz_chunk_layouts[f][1]};
        fz_chunk_bytes(b, n, f, 0.0); /* the fuzzer's fixed base */
        fz_chunk_bytes(raw, n, f, 0.001);
        for (int m = 0; m < HMA__PC_METHOD_COUNT; m++) {
            size_t cap = hma__pc_bound(n), len = 0;
            unsigned char *enc = malloc(cap + 5);
            if (!enc) continue;
            /* with the base where the method takes one, else without (the
             * method list belongs to pack/codec.c and may change) */
            for (int wb = 1; wb >= 0; wb--) {
                int used = -1;
                if (hma__pc_encode(ctx, m, fmt, raw, wb ? b : NULL, n, 1, enc + 5, cap, &len, &used)) continue;
                enc[0] = (unsigned char)used;
                enc[1] = (unsigned char)f;
                enc[2] = (unsigned char)wb;
                enc[3] = (unsigned char)(n & 0xff);
                enc[4] = (unsigned char)(n >> 8);
                char name[32];
                snprintf(name, sizeof name, "m%d_f%zu_b%d", m, f, wb);
                seed("pack_chunk", name, enc, len + 5);
            }
            free(enc);
        }
    }
    hma__pc_ctx_free(ctx);
    hma_store_close(base);
}

/* fuzz_recipe seeds: mergekit's six examples, the same as JSON, and small
 * recipes that reach the rarer paths (filters, tags, tokenizer, notes,
 * errors the fuzzer can mutate into successes and back). */
static void gen_recipe(void) {
    for (size_t i = 0; i < MK_N_EXAMPLES; i++)
        seed("recipe", mk_examples[i].name, mk_examples[i].text, strlen(mk_examples[i].text));
    static const char *const extra[] = {
        "{\"models\":[{\"model\":\"a\",\"parameters\":{\"weight\":[0,0.5,1],\"density\":0.5}},"
        "{\"model\":\"b\",\"parameters\":{\"weight\":[{\"filter\":\"mlp\",\"value\":0.5},{\"value\":1e-5}]}}],"
        "\"merge_method\":\"dare_ties\",\"base_model\":\"c\",\"parameters\":{\"lambda\":true},\"dtype\":\"float32\","
        "\"out_dtype\":\"bfloat16\"}",
        "merge_method: della\nbase_model: b\nslices:\n  - sources:\n      - model: a\n        layer_range: [0, 0x10]\n"
        "        parameters: {weight: !!float 1, epsilon: .05}\n      - model: b\n        layer_range: [1:00, 76]\n"
        "    base_model: b\n    parameters:\n      density:\n        - filter: \"*\"\n          value: [yes, off]\n"
        "parameters:\n  normalize: On\n  weight: 0.3\n",
        "merge_method: slerp\nbase_model: a\nmodels:\n  - model: a\n  - model: 'b'\n    parameters:\n      weight: 1\n"
        "parameters:\n  t: [0, 1]\ntokenizer:\n  source: base\n  tokens:\n    <x>: {source: a, force: true}\n"
        "  pad_to_multiple_of: 64\nchat_template: |\n  {{ bos }}\n",
        "merge_method: model_stock\nbase_model: a\nmodels:\n  - model: b\n    parameters:\n      filter_wise: true\n"
        "tokenizer_source: union\n",
        "merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      weight: [1, {filter: x, value: 2}]\n",
        "merge_method: linear\nmodels:\n  - &m {model: a}\n  - *m\n",
        "---\nmerge_method: nuslerp\nmodels: [{model: a, parameters: {weight: 1}}, {model: b, parameters: {weight: 2}}]\n"
        "parameters: {nuslerp_flatten: false}\n...\n",
    };
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "extra%zu", i);
        seed("recipe", name, extra[i], strlen(extra[i]));
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds OUTDIR\n");
        return 2;
    }
    g_out = argv[1];
    mkdir(g_out, 0755);
    const char *tmp = fz_tmpdir();
    gen_safetensors_and_json(tmp);
    gen_gguf();
    gen_index();
    gen_groups();
    gen_packs(tmp);
    gen_recipe();
    if (!g_fail) printf("gen_seeds: %u seeds in %s\n", g_count, g_out);
    return g_fail;
}
