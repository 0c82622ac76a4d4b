/*
 * gen_pair.c - writes a synthetic Llama-shaped BF16 checkpoint pair for the
 * benchmarks: TinyLlama-1.1B layer shapes (hidden 2048, MLP 5632, 32 query /
 * 4 key-value heads of 64, vocab 32000), `base` with N(0, 0.02)-like values
 * and `aligned` = base + a small perturbation, as fine-tuning leaves it.
 * Deterministic (fixed seed); no libhma dependency so that the benchmark's
 * inputs do not depend on the code under test. With --third it also writes
 * `third` = base + a perturbation of the same size from another seed: a
 * second fine-tune for the 3-model mergekit benchmark (bench_mergekit.c).
 *
 *   gen_pair OUTDIR [LAYERS] [--third]
 *       -> OUTDIR/base.safetensors OUTDIR/aligned.safetensors
 *          [OUTDIR/third.safetensors]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char name[96]; uint64_t rows, cols; } spec;

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static inline uint64_t next(void) { /* splitmix64 */
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline uint16_t bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}
/* Sum of 4 uniforms: cheap, roughly normal. */
static inline float gauss(void) {
    uint64_t r = next();
    float s = 0;
    for (int i = 0; i < 4; i++) s += (float)((r >> (16 * i)) & 0xffff) / 65536.0f;
    return (s - 2.0f) * 1.732f;
}

/* pseed: seed of the perturbation added to the base values; 0 = none (base). */
static int write_file(const char *path, const spec *t, size_t n, uint64_t pseed) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); return 1; }
    size_t cap = 1 << 20, len = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t bytes = t[i].rows * (t[i].cols ? t[i].cols : 1) * 2;
        if (t[i].cols)
            len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%llu,%llu],\"data_offsets\":[%llu,%llu]}",
                                    t[i].name, (unsigned long long)t[i].rows, (unsigned long long)t[i].cols,
                                    (unsigned long long)off, (unsigned long long)(off + bytes));
        else
            len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%llu],\"data_offsets\":[%llu,%llu]}",
                                    t[i].name, (unsigned long long)t[i].rows, (unsigned long long)off,
                                    (unsigned long long)(off + bytes));
        off += bytes;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while ((8 + len) % 8) h[len++] = ' ';
    uint64_t hl = len;
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(hl >> (8 * i));
    fwrite(lb, 1, 8, f);
    fwrite(h, 1, len, f);
    free(h);
    size_t bufn = 1 << 20;
    uint16_t *buf = malloc(bufn * 2);
    rng = 12345; /* same base values in both files */
    uint64_t rng2 = pseed;
    for (size_t i = 0; i < n; i++) {
        uint64_t count = t[i].rows * (t[i].cols ? t[i].cols : 1);
        int is_norm = t[i].cols == 0;
        while (count) {
            size_t k = count < bufn ? (size_t)count : bufn;
            for (size_t j = 0; j < k; j++) {
                float v = is_norm ? 1.0f + 0.05f * gauss() : 0.02f * gauss();
                if (pseed) {
                    uint64_t save = rng;
                    rng = rng2;
                    v += (is_norm ? 0.01f : 0.0008f) * gauss();
                    rng2 = rng;
                    rng = save;
                }
                buf[j] = bf16(v);
            }
            if (fwrite(buf, 2, k, f) != k) { perror(path); fclose(f); free(buf); return 1; }
            count -= k;
        }
    }
    free(buf);
    if (fclose(f) != 0) { perror(path); return 1; }
    return 0;
}

int main(int argc, char **argv) {
    int third = argc > 1 && !strcmp(argv[argc - 1], "--third");
    if (third) argc--;
    if (argc < 2 || argc > 3) { fprintf(stderr, "usage: gen_pair OUTDIR [LAYERS] [--third]\n"); return 2; }
    int layers = argc > 2 ? atoi(argv[2]) : 22;
    const uint64_t H = 2048, I = 5632, KV = 256, V = 32000;
    spec *t = calloc((size_t)layers * 9 + 3, sizeof *t);
    size_t n = 0;
    snprintf(t[n].name, sizeof t[n].name, "model.embed_tokens.weight"); t[n].rows = V; t[n++].cols = H;
    for (int l = 0; l < layers; l++) {
        const struct { const char *s; uint64_t r, c; } L[] = {
            {"input_layernorm.weight", H, 0}, {"self_attn.q_proj.weight", H, H}, {"self_attn.k_proj.weight", KV, H},
            {"self_attn.v_proj.weight", KV, H}, {"self_attn.o_proj.weight", H, H},
            {"post_attention_layernorm.weight", H, 0}, {"mlp.gate_proj.weight", I, H},
            {"mlp.up_proj.weight", I, H}, {"mlp.down_proj.weight", H, I}};
        for (size_t j = 0; j < sizeof L / sizeof L[0]; j++) {
            snprintf(t[n].name, sizeof t[n].name, "model.layers.%d.%s", l, L[j].s);
            t[n].rows = L[j].r; t[n++].cols = L[j].c;
        }
    }
    snprintf(t[n].name, sizeof t[n].name, "model.norm.weight"); t[n].rows = H; t[n++].cols = 0;
    snprintf(t[n].name, sizeof t[n].name, "lm_head.weight"); t[n].rows = V; t[n++].cols = H;
    char p[4096];
    snprintf(p, sizeof p, "%s/base.safetensors", argv[1]);
    if (write_file(p, t, n, 0)) return 1;
    snprintf(p, sizeof p, "%s/aligned.safetensors", argv[1]);
    if (write_file(p, t, n, 777)) return 1;
    snprintf(p, sizeof p, "%s/third.safetensors", argv[1]);
    if (third && write_file(p, t, n, 4242)) return 1;
    free(t);
    return 0;
}
