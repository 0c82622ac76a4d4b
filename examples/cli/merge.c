/*
 * cli/merge.c - `hma merge`: average checkpoints with a merge plan (MA, HMA,
 * model soups, task arithmetic, SLERP) and write the result to a
 * .safetensors file or a Hugging Face style folder. Run `hma merge --help`.
 */
#include "args.h"
#include "cli.h"
#include "progress.h"

#include <hma.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define CMD "merge"
#define MAX_INPUTS 64
#define MAX_LIST 65536

static void merge_usage(FILE *f) {
    fprintf(f,
            "usage: hma merge [--base B] --model M [--model M2 ...] [WEIGHTS] [OPTIONS] -o OUT\n"
            "       hma merge --config RECIPE.yml -o OUT [--seed N] [--threads T] [--shard-size S] [--dry-run]\n"
            "Recipes (mergekit YAML or JSON: merge_method, base_model, models or slices,\n"
            "parameters, dtype, out_dtype; every method of docs/merging.md):\n"
            "  --config RECIPE    run the recipe; models are local paths (relative to the\n"
            "                     current folder); notes go to stderr\n"
            "  --seed N           key of DARE's and DELLA's random draws (default 0)\n"
            "  --dry-run          with --config: one line per output tensor (name, shape,\n"
            "                     dtype, t, sources model:input, parameters); writes nothing\n"
            "Inputs (files, model.safetensors.index.json, or model folders), in order:\n"
            "  --base B           input 0: the base (pre-RLHF) model; the base of --method task\n"
            "  --model M, M       further inputs (repeatable; bare paths are models too)\n"
            "Weights (alpha = weight of the ALIGNED model: (1-a)*base + a*aligned):\n"
            "  --alpha A[,A2,..]  2 inputs: one ratio, or one per group (HMA); a list of K\n"
            "                     values without --groups means --groups blocks:K\n"
            "  --gradient A0,A1.. 2 inputs: mergekit-style anchors over the groups\n"
            "                     (default --groups layers)\n"
            "  --weight W         weight of the preceding --base/--model (soups, task)\n"
            "  --weights W0,W1,.. one weight per input (N values; N-1 for task: base\n"
            "                     omitted; or K*N values: one row per group)\n"
            "Options:\n"
            "  --method M         linear (default), task (task arithmetic), slerp\n"
            "  --groups SPEC      all | blocks:K | split:S1,S2,.. | layers\n"
            "  --rule PAT=GROUP   put tensors matching PAT (substring, or glob with * ?)\n"
            "                     into GROUP (an index or 'mean'); repeatable, first wins\n"
            "  --normalize / --no-normalize   divide soup weights by their sum\n"
            "                     (default on for linear, as mergekit; ratios never are)\n"
            "  --dtype T          output dtype of averaged tensors: F32, F16, BF16, F64,\n"
            "                     or Q8_0 for a GGUF output (-o FILE.gguf; 2-D tensors)\n"
            "                     (default: each tensor's dtype in input 0; GGUF: its\n"
            "                     ggml type, types libhma cannot write become F16)\n"
            "  --copy-unmatched I copy tensors not present/compatible everywhere from\n"
            "                     input I (an index or one of the input paths)\n"
            "  --allow-nonfinite  let NaN/Inf in inputs propagate instead of failing\n"
            "  --simd P           scalar | avx2 | avx512 | auto (same bits either way)\n"
            "  --threads N        worker threads (0 = all cores, the default)\n"
            "  --shard-size S     folder output: max shard size, e.g. 5GB, 500MiB\n"
            "  --dry-run          print the plan (tensors, groups, weights) and write nothing\n"
            "Partitioned merges (one output written by N processes; docs/scale-out.md):\n"
            "  --rank R --world N write part R of N: shards i with i mod N = R, each with a\n"
            "                     checksum record; no index, no config files\n"
            "  --rank auto        rank and world from the launcher: OMPI_COMM_WORLD_RANK/SIZE,\n"
            "                     PMI_RANK/PMI_SIZE, SLURM_PROCID/SLURM_NTASKS, RANK/WORLD_SIZE\n"
            "  --finalize --world N  check every shard of the N parts (size, header,\n"
            "                     checksum), then write the index and config files\n"
            "                     (give the parts' inputs, weights, options and -o)\n"
            "  -q, --quiet        no progress bar and no summary line\n"
            "  -o OUT             a .safetensors file, or a folder (config.json, tokenizer\n"
            "                     and generation files are copied from the first input\n"
            "                     folder, committed together with the weights)\n"
            "The output's __metadata__ holds \"format\", \"hma_recipe\" (the plan as JSON) and\n"
            "\"hma_command\": this command line, each argument shell-quoted when needed.\n"
            "Exit status: 0 success, 1 error reported by libhma, 2 bad usage.\n");
}

/* ---- small parsers ------------------------------------------------------- */

/* Comma-separated finite doubles (cli_parse_list); *out is malloc'ed. Returns count, -1 on error. */
static long parse_list(const char *s, double **out) {
    size_t n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    if (n > MAX_LIST) return -1;
    double *v = malloc(n * sizeof *v);
    if (!v || cli_parse_list(s, v, n) != n) {
        free(v);
        return -1;
    }
    *out = v;
    return (long)n;
}

/* "5GB" (powers of 1000), "500MiB" (powers of 1024), "123" bytes. */
static int parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno == ERANGE || !isfinite(v) || v < 0) return -1;
    double mul = 1;
    static const struct { const char *u; double m; } units[] = {
        {"", 1},         {"b", 1},           {"k", 1e3},         {"kb", 1e3},
        {"m", 1e6},      {"mb", 1e6},        {"g", 1e9},         {"gb", 1e9},
        {"t", 1e12},     {"tb", 1e12},       {"kib", 1024.0},    {"mib", 1048576.0},
        {"gib", 1073741824.0}, {"tib", 1099511627776.0}};
    size_t i;
    for (i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcasecmp(end, units[i].u)) {
            mul = units[i].m;
            break;
        }
    if (i == sizeof units / sizeof units[0]) return -1;
    double b = v * mul;
    if (b >= 9.2e18 || b != floor(b)) return -1;
    *out = (uint64_t)b;
    return 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The Hugging Face folder an input stands for: the folder itself, or the
 * folder of a model.safetensors.index.json; NULL for a plain file. malloc'ed. */
static char *input_folder(const char *path) {
    if (is_dir(path)) return strdup(path);
    if (ends_with(path, ".index.json")) {
        const char *slash = strrchr(path, '/');
        if (!slash) return strdup(".");
        if (slash == path) return strdup("/");
        return strndup(path, (size_t)(slash - path));
    }
    return NULL;
}

/* ---- copying the config and tokenizer files ------------------------------ */

/* Declare the side files of folder `from` (hma_side_file_name(), the one
 * list, shared with recipes) to the writer: each is copied by
 * the library into a temporary at begin and renamed into place by
 * hma_writer_commit() together with the shards, so it appears whole, with
 * the weights, or not at all. *count receives the number declared.
 * Returns HMA_OK or the library's error code. */
static int add_side_files(hma_writer *w, const char *from, int *count) {
    *count = 0;
    const char *name;
    for (size_t i = 0; (name = hma_side_file_name(i)) != NULL; i++) {
        char src[PATH_MAX];
        struct stat st;
        if (snprintf(src, sizeof src, "%s/%s", from, name) >= (int)sizeof src) continue;
        if (stat(src, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        int rc = hma_writer_add_file(w, name, src);
        if (rc) return rc;
        ++*count;
    }
    return HMA_OK;
}

/* ---- the command line recorded in the output ------------------------------ */

/* Metadata key of the command line that made the output (docs/merging.md). */
#define COMMAND_KEY "hma_command"
#define GGUF_COMMAND_KEY "hma.command" /* in a GGUF output (GGUF keys are dotted) */

/* A GGUF output keeps input 0's tensor types, except the quantized types
 * libhma cannot write exactly (Q4_0, the K-quants, ...): those became F16. */
static void note_gguf_fallback(const hma_plan *plan, const hma_store *base) {
    size_t n = 0;
    const char *example = NULL;
    for (size_t i = 0; i < hma_plan_tensor_count(plan); i++) {
        if (hma_plan_tensor_action(plan, i) == HMA_ACTION_SKIP) continue;
        hma_gguf_type gt = hma_tensor_gguf_type(hma_store_find(base, hma_plan_tensor_name(plan, i)));
        if (gt < 0 || gt == HMA_GGUF_F32 || gt == HMA_GGUF_F16 || gt == HMA_GGUF_BF16 || gt == HMA_GGUF_Q8_0) continue;
        if (!n++) example = hma_gguf_type_name(gt);
    }
    if (n)
        fprintf(stderr, "note: %zu tensor%s of types libhma cannot write exactly (e.g. %s) written as F16\n", n,
                n == 1 ? "" : "s", example ? example : "?");
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s) {
    if (s[0] < 0x80) return 1;
    size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    if (!n) return 0;
    for (size_t k = 1; k < n; k++)
        if ((s[k] & 0xc0) != 0x80) return 0;
    unsigned cp = s[0] & (0x7fu >> n);
    for (size_t k = 1; k < n; k++) cp = cp << 6 | (s[k] & 0x3fu);
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* Append `a` to the growing string *buf (length *len, capacity *cap), quoted
 * for a POSIX shell when it needs it: as is when made only of
 * [A-Za-z0-9_@%+=:,./-] (and not empty); in '...' (a ' written '\'') when it
 * is printable UTF-8; else in bash's $'...' with \xNN for control bytes and
 * bytes that are not UTF-8, so that the value stays valid UTF-8 (metadata
 * must be) and still names the exact bytes. Returns 0, or -1 out of memory. */
static int append_quoted(char **buf, size_t *len, size_t *cap, const char *a) {
    size_t alen = strlen(a);
    if (*len + 4 * alen + 4 > *cap) {
        size_t c = (*cap ? *cap : 256);
        while (c < *len + 4 * alen + 4) c *= 2;
        char *b = realloc(*buf, c);
        if (!b) return -1;
        *buf = b, *cap = c;
    }
    char *o = *buf + *len;
    int plain = alen > 0, printable = 1;
    for (const unsigned char *p = (const unsigned char *)a; *p;) {
        size_t n = utf8_len(p);
        if (n == 0 || *p < 0x20 || *p == 0x7f) printable = 0, n = 1;
        if (!(isalnum(*p) || strchr("_@%+=:,./-", *p))) plain = 0;
        p += n;
    }
    if (plain) {
        memcpy(o, a, alen);
        o += alen;
    } else if (printable) {
        *o++ = '\'';
        for (const char *p = a; *p; p++)
            if (*p == '\'') memcpy(o, "'\\''", 4), o += 4;
            else *o++ = *p;
        *o++ = '\'';
    } else {
        *o++ = '$', *o++ = '\'';
        for (const unsigned char *p = (const unsigned char *)a; *p;) {
            size_t n = utf8_len(p);
            if (n == 0 || *p < 0x20 || *p == 0x7f) {
                o += sprintf(o, "\\x%02x", *p);
                p++;
                continue;
            }
            if (*p == '\'' || *p == '\\') *o++ = '\\';
            memcpy(o, p, n);
            o += n, p += n;
        }
        *o++ = '\'';
    }
    *len = (size_t)(o - *buf);
    (*buf)[*len] = 0;
    return 0;
}

/* "hma merge ARG..." with each argument shell-quoted as needed (argv[0] is
 * the command name "merge"), leaving out the positions in skip (the
 * partition options: every part, finalize and a single-process merge then
 * record the same line, so their shards are byte-identical); malloc'ed,
 * NULL when out of memory. */
static char *command_line(int argc, char **argv, const int *skip, int nskip) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (append_quoted(&buf, &len, &cap, "hma")) return NULL;
    for (int i = 0; i < argc; i++) {
        int skipped = 0;
        for (int k = 0; k < nskip; k++) skipped |= skip[k] == i;
        if (skipped) continue;
        buf[len++] = ' ';
        if (append_quoted(&buf, &len, &cap, argv[i])) {
            free(buf);
            return NULL;
        }
    }
    return buf;
}

/* ---- dry run ------------------------------------------------------------- */

static void print_weights(FILE *o, const double *w, size_t n) {
    for (size_t j = 0; j < n; j++) fprintf(o, "%s%.6g", j ? " " : "", w[j]);
}

static const char *action_name(int a) {
    switch (a) {
    case HMA_ACTION_MERGE: return "merge";
    case HMA_ACTION_COPY_IDENTICAL: return "copy-identical";
    case HMA_ACTION_COPY_FROM: return "copy";
    case HMA_ACTION_SKIP: return "skip";
    default: return "MISMATCH";
    }
}

static int print_plan(hma_plan *plan, const char *const *paths, const char *method) {
    FILE *o = stdout;
    size_t N = hma_plan_input_count(plan), K = hma_plan_group_count(plan), R = hma_plan_tensor_count(plan);
    fprintf(o, "plan: %zu inputs, method %s, groups %s (%zu group%s), %ld layers, %zu tensors\n", N, method,
            hma_plan_groups_spec(plan), K, K == 1 ? "" : "s", hma_plan_layer_count(plan), R);
    for (size_t j = 0; j < N; j++) fprintf(o, "  input %zu: %s\n", j, paths[j]);
    double *w = malloc(N * sizeof *w);
    double *W = malloc(K * N * sizeof *W);
    long *lmin = malloc(K * sizeof *lmin), *lmax = malloc(K * sizeof *lmax);
    size_t *cnt = calloc(K + 1, sizeof *cnt);
    uint64_t *bytes = calloc(K + 1, sizeof *bytes);
    if (!w || !W || !lmin || !lmax || !cnt || !bytes) {
        free(w), free(W), free(lmin), free(lmax), free(cnt), free(bytes);
        fprintf(stderr, "hma merge: out of memory\n");
        return 1;
    }
    for (size_t k = 0; k < K; k++) lmin[k] = LONG_MAX, lmax[k] = -1;
    size_t mismatches = 0;
    int rc = 0;
    fprintf(o, "%-56s %5s %5s %-14s %-5s %s\n", "tensor", "layer", "group", "action", "dtype", "weights");
    for (size_t i = 0; i < R; i++) {
        int g = hma_plan_tensor_group(plan, i), a = hma_plan_tensor_action(plan, i);
        long l = hma_plan_tensor_layer(plan, i);
        char lb[24], gb[24];
        if (l >= 0) snprintf(lb, sizeof lb, "%ld", l);
        else snprintf(lb, sizeof lb, "-");
        if (g >= 0) snprintf(gb, sizeof gb, "%d", g);
        else snprintf(gb, sizeof gb, "%s", g == HMA_GROUP_MEAN ? "mean" : "-");
        hma_dtype dt = hma_plan_tensor_dtype(plan, i);
        fprintf(o, "%-56s %5s %5s %-14s %-5s ", hma_plan_tensor_name(plan, i), lb, gb, action_name(a),
                dt < HMA_DTYPE_COUNT ? hma_dtype_name(dt) : "-");
        if (a == HMA_ACTION_MERGE) {
            int r = hma_plan_tensor_weights(plan, i, w, N, NULL);
            if (r) {
                fputc('\n', o);
                rc = cli_fail(CMD, r);
                goto out;
            }
            print_weights(o, w, N);
            size_t slot = g >= 0 ? (size_t)g : K;
            cnt[slot]++;
            bytes[slot] += hma_plan_tensor_nbytes(plan, i);
            if (g >= 0 && l >= 0) {
                if (l < lmin[g]) lmin[g] = l;
                if (l > lmax[g]) lmax[g] = l;
            }
        } else {
            const char *why = hma_plan_tensor_reason(plan, i);
            fprintf(o, "- %s", why ? why : "");
            if (a == HMA_ACTION_MISMATCH) mismatches++;
        }
        fputc('\n', o);
    }
    int r = hma_plan_get_weights(plan, W, K * N, NULL);
    if (!r) r = hma_plan_mean_weights(plan, w, N);
    if (r) {
        rc = cli_fail(CMD, r);
        goto out;
    }
    fprintf(o, "groups:\n%-6s %-9s %8s %14s  %s\n", "group", "layers", "tensors", "bytes", "weights (input 0..N-1)");
    for (size_t k = 0; k <= K; k++) {
        char lb[48];
        if (k < K && lmax[k] >= 0) snprintf(lb, sizeof lb, "%ld-%ld", lmin[k], lmax[k]);
        else snprintf(lb, sizeof lb, "-");
        if (k < K) fprintf(o, "%-6zu ", k);
        else fprintf(o, "%-6s ", "mean");
        fprintf(o, "%-9s %8zu %14" PRIu64 "  ", lb, cnt[k], bytes[k]);
        print_weights(o, k < K ? W + k * N : w, N);
        fputc('\n', o);
    }
    if (N == 2) fprintf(o, "mean ratio (weight of input 1): %.17g\n", w[1]);
    else {
        fprintf(o, "mean weights: ");
        print_weights(o, w, N);
        fputc('\n', o);
    }
    if (mismatches) {
        fprintf(stderr,
                "hma merge: inputs disagree: %zu tensor%s unmatched (see MISMATCH rows; --copy-unmatched I copies them)\n",
                mismatches, mismatches == 1 ? "" : "s");
        rc = 1;
    }
out:
    free(w), free(W), free(lmin), free(lmax), free(cnt), free(bytes);
    if (fflush(o) != 0 && !rc) {
        fprintf(stderr, "hma merge: cannot write output\n");
        rc = 1;
    }
    return rc;
}

/* ---- main --------------------------------------------------------------- */

typedef struct opts {
    const char *paths[MAX_INPUTS];
    double weight[MAX_INPUTS];
    int has_weight[MAX_INPUTS];
    size_t n;
    int has_base;
    const char *out, *method, *groups, *dtype, *copy_unmatched, *simd, *shard;
    const char *config, *seed; /* --config RECIPE, --seed N */
    const char *alpha, *gradient, *weights;
    const char *rules[256];
    size_t n_rules;
    int normalize; /* -1 unset */
    int allow_nonfinite, dry_run, quiet;
    long threads;
    const char *rank, *world; /* --rank, --world as given */
    int finalize;
    int pmode;          /* 0 a whole merge, 1 a part, 2 finalize (resolved) */
    long prank, pworld;
    int skip[6]; /* argv positions of --rank/--world/--finalize and their values */
    int nskip;   /* (left out of the command line recorded in the output) */
} opts;

/* Leave argv[from..to] out of the recorded command line. */
static void skip_args(opts *o, int from, int to) {
    for (int i = from; i <= to && o->nskip < (int)(sizeof o->skip / sizeof o->skip[0]); i++) o->skip[o->nskip++] = i;
}

static int parse_args(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->normalize = -1;
    o->threads = 0;
    int last = -1; /* input the next --weight applies to */
    cli_args args;
    cli_args_init(&args, argc, argv);
    cli_args *A = &args;
    while (cli_args_next(A)) {
        const char *a = A->arg, *v = a; /* an option's value; NULL when it has none */
        if (cli_args_help(A)) {
            merge_usage(stdout);
            return -1;
        }
        if (cli_args_flag(A, "--dry-run")) o->dry_run = 1;
        else if (cli_args_flag(A, "-q") || cli_args_flag(A, "--quiet")) o->quiet = 1;
        else if (cli_args_flag(A, "--normalize")) o->normalize = 1;
        else if (cli_args_flag(A, "--no-normalize")) o->normalize = 0;
        else if (cli_args_flag(A, "--allow-nonfinite")) o->allow_nonfinite = 1;
        else if (cli_args_flag(A, "--finalize")) {
            if (o->finalize) return cli_usage(CMD, "--finalize given twice");
            o->finalize = 1;
            skip_args(o, A->i, A->i);
        } else if (cli_args_value(A, "--rank", &v) || cli_args_value(A, "--world", &v)) {
            int is_rank = !strncmp(a, "--rank", 6);
            if (!v) return cli_usage(CMD, is_rank ? "--rank needs a number or auto" : "--world needs a number");
            if (is_rank ? o->rank != NULL : o->world != NULL)
                return cli_usage(CMD, is_rank ? "--rank given twice" : "--world given twice");
            if (is_rank) o->rank = v;
            else o->world = v;
            skip_args(o, strchr(a, '=') ? A->i : A->i - 1, A->i);
        }
        else if (cli_args_value(A, "--base", &v)) {
            if (!v) return cli_usage(CMD, "--base needs a path");
            if (o->has_base) return cli_usage(CMD, "--base given twice");
            if (o->n >= MAX_INPUTS) return cli_usage(CMD, "too many inputs (at most 64)");
            /* the base is input 0: shift the models given so far */
            memmove(o->paths + 1, o->paths, o->n * sizeof o->paths[0]);
            memmove(o->weight + 1, o->weight, o->n * sizeof o->weight[0]);
            memmove(o->has_weight + 1, o->has_weight, o->n * sizeof o->has_weight[0]);
            o->paths[0] = v;
            o->has_weight[0] = 0;
            o->n++;
            o->has_base = 1;
            last = 0;
        } else if (cli_args_value(A, "--model", &v) || !cli_args_is_option(A)) {
            if (!v) return cli_usage(CMD, "--model needs a path");
            if (o->n >= MAX_INPUTS) return cli_usage(CMD, "too many inputs (at most 64)");
            o->paths[o->n] = v;
            o->has_weight[o->n] = 0;
            last = (int)o->n++;
        } else if (cli_args_value(A, "--weight", &v)) {
            if (!v) return cli_usage(CMD, "--weight needs a number");
            if (last < 0) return cli_usage(CMD, "--weight must follow --base or --model");
            if (o->has_weight[last]) return cli_usage(CMD, "two --weight for one input");
            if (cli_parse_double(v, &o->weight[last])) return cli_usage(CMD, "--weight needs a finite number");
            o->has_weight[last] = 1;
        } else if (cli_args_value(A, "-o", &v) || cli_args_value(A, "--output", &v)) {
            if (!v) return cli_usage(CMD, "-o needs a path");
            if (o->out) return cli_usage(CMD, "-o given twice");
            o->out = v;
        } else if (cli_args_value(A, "--config", &v)) {
            if (v && o->config) return cli_usage(CMD, "--config given twice");
            o->config = v;
        } else if (cli_args_value(A, "--seed", &v)) o->seed = v;
        else if (cli_args_value(A, "--method", &v)) o->method = v;
        else if (cli_args_value(A, "--groups", &v)) o->groups = v;
        else if (cli_args_value(A, "--dtype", &v)) o->dtype = v;
        else if (cli_args_value(A, "--copy-unmatched", &v)) o->copy_unmatched = v;
        else if (cli_args_value(A, "--simd", &v)) o->simd = v;
        else if (cli_args_value(A, "--shard-size", &v)) o->shard = v;
        else if (cli_args_value(A, "--alpha", &v)) o->alpha = v;
        else if (cli_args_value(A, "--gradient", &v)) o->gradient = v;
        else if (cli_args_value(A, "--weights", &v)) o->weights = v;
        else if (cli_args_value(A, "--threads", &v)) {
            if (v && cli_parse_long(v, 0, 4096, &o->threads)) return cli_usage(CMD, "--threads needs an integer 0..4096");
        } else if (cli_args_value(A, "--rule", &v)) {
            if (v) {
                if (o->n_rules >= sizeof o->rules / sizeof o->rules[0]) return cli_usage(CMD, "too many --rule");
                o->rules[o->n_rules++] = v;
            }
        } else return cli_usage(CMD, "unknown option");
        if (!v) return cli_usage(CMD, "option needs a value");
    }
    return 0;
}

static int find_input(const opts *o, const char *s, long *idx) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end != s && !*end && !errno) {
        if (v < 0 || (size_t)v >= o->n) return -1;
        *idx = v;
        return 0;
    }
    for (size_t j = 0; j < o->n; j++)
        if (!strcmp(o->paths[j], s)) {
            *idx = (long)j;
            return 0;
        }
    return -1;
}

/* ---- partitioned merges -------------------------------------------------- */

/* The launchers' rank and size variables, in the order they are tried. */
static const char *const launcher_env[][2] = {{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                              {"PMI_RANK", "PMI_SIZE"},
                                              {"SLURM_PROCID", "SLURM_NTASKS"},
                                              {"RANK", "WORLD_SIZE"}};

/* --rank/--world/--finalize into o->pmode, o->prank, o->pworld. 0 or a usage error (2). */
static int resolve_partition(opts *o) {
    if (o->finalize && o->rank) return cli_usage(CMD, "give --rank (a part) or --finalize, not both");
    if (!o->rank && !o->finalize) {
        if (o->world) return cli_usage(CMD, "--world needs --rank R or --finalize");
        return 0;
    }
    long world = 0, rank = 0;
    if (o->world && cli_parse_long(o->world, 1, 1000000, &world))
        return cli_usage(CMD, "--world needs an integer 1..1000000");
    if (o->rank && !strcmp(o->rank, "auto")) {
        size_t k;
        for (k = 0; k < sizeof launcher_env / sizeof launcher_env[0]; k++)
            if (getenv(launcher_env[k][0])) break;
        if (k == sizeof launcher_env / sizeof launcher_env[0])
            return cli_usage(CMD, "--rank auto: no launcher rank in the environment (OMPI_COMM_WORLD_RANK, PMI_RANK, "
                                  "SLURM_PROCID or RANK); run under mpirun, srun or torchrun, or give --rank R --world N");
        long w2;
        char msg[200];
        if (cli_parse_long(getenv(launcher_env[k][0]), 0, 999999, &rank) || !getenv(launcher_env[k][1]) ||
            cli_parse_long(getenv(launcher_env[k][1]), 1, 1000000, &w2) || rank >= w2) {
            snprintf(msg, sizeof msg, "--rank auto: %s and %s must be a rank below a size", launcher_env[k][0],
                     launcher_env[k][1]);
            return cli_usage(CMD, msg);
        }
        if (o->world && world != w2) {
            snprintf(msg, sizeof msg, "--rank auto: --world %ld differs from %s=%ld", world, launcher_env[k][1], w2);
            return cli_usage(CMD, msg);
        }
        world = w2;
    } else if (!o->world) {
        return cli_usage(CMD, o->finalize ? "--finalize needs --world N (the number of parts)"
                                          : "--rank R needs --world N (or use --rank auto)");
    } else if (o->rank && cli_parse_long(o->rank, 0, world - 1, &rank)) {
        return cli_usage(CMD, "--rank needs auto or an integer 0..N-1 (N from --world)");
    }
    o->pmode = o->finalize ? 2 : 1;
    o->prank = rank;
    o->pworld = world;
    return 0;
}

static int run_merge(int argc, char **argv, opts *op);
static int run_recipe(int argc, char **argv, const opts *o);

int cli_cmd_merge(int argc, char **argv) {
    opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc < 0) return 0; /* --help */
    if (rc) return rc;
    if ((rc = resolve_partition(&o))) return rc;
    return run_merge(argc, argv, &o);
}

int cli_merge_partition(int argc, char **argv, long rank, long world, int finalize, int quiet) {
    opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc < 0) return 0; /* --help */
    if (rc) return rc;
    if (o.rank || o.world || o.finalize)
        return cli_usage(CMD, "--rank, --world and --finalize are set by the launcher here; leave them out");
    o.pmode = finalize ? 2 : 1;
    o.prank = finalize ? 0 : rank;
    o.pworld = world;
    o.quiet |= quiet;
    return run_merge(argc, argv, &o);
}

static int run_merge(int argc, char **argv, opts *op) {
    opts o = *op;
    int rc = 0;
    if (o.config) return run_recipe(argc, argv, &o);
    if (o.seed) return cli_usage(CMD, "--seed applies to --config recipes");

    /* ---- check the combination before opening anything ---- */
    hma_method method = HMA_METHOD_LINEAR;
    const char *mname = o.method ? o.method : "linear";
    if (!strcmp(mname, "linear")) method = HMA_METHOD_LINEAR;
    else if (!strcmp(mname, "task") || !strcmp(mname, "task_arithmetic")) method = HMA_METHOD_TASK_ARITHMETIC, mname = "task";
    else if (!strcmp(mname, "slerp")) method = HMA_METHOD_SLERP;
    else return cli_usage(CMD, "--method must be linear, task or slerp");
    if (o.n < 2) return cli_usage(CMD, "need at least 2 inputs (--base and --model, or two --model)");
    if (!o.out && !o.dry_run) return cli_usage(CMD, "missing -o OUT (or --dry-run)");
    int n_kinds = !!o.alpha + !!o.gradient + !!o.weights;
    int any_weight = 0, all_weight = 1;
    for (size_t j = 0; j < o.n; j++) {
        any_weight |= o.has_weight[j];
        if (!o.has_weight[j] && !(method == HMA_METHOD_TASK_ARITHMETIC && j == 0)) all_weight = 0;
    }
    if (any_weight) n_kinds++;
    if (n_kinds > 1) return cli_usage(CMD, "give only one of --alpha, --gradient, --weights, --weight");
    if (any_weight && !all_weight) return cli_usage(CMD, "give --weight for every input or for none");
    if ((o.alpha || o.gradient) && o.n != 2) return cli_usage(CMD, "--alpha and --gradient need exactly 2 inputs");
    if ((o.alpha || o.gradient) && method == HMA_METHOD_TASK_ARITHMETIC)
        return cli_usage(CMD, "--method task takes --weight/--weights, not --alpha");
    if (method == HMA_METHOD_SLERP && o.n != 2) return cli_usage(CMD, "--method slerp needs exactly 2 inputs");
    if (o.normalize >= 0 && method != HMA_METHOD_LINEAR)
        return cli_usage(CMD, "--normalize applies to --method linear only");
    int dtype = HMA_DTYPE_COUNT, gguf_out = o.out && ends_with(o.out, ".gguf"), q8 = 0;
    if (o.dtype && !strcmp(o.dtype, "Q8_0")) {
        if (!gguf_out) return cli_usage(CMD, "--dtype Q8_0 needs a GGUF output (-o FILE.gguf)");
        q8 = 1;
        dtype = HMA_DTYPE_F32; /* merged in float32, quantized by the GGUF writer */
    } else if (o.dtype) {
        hma_dtype d;
        if (hma_dtype_from_name(o.dtype, &d) != HMA_OK || !hma_dtype_is_float(d))
            return cli_usage(CMD, "--dtype must be F32, F16, BF16, F64 or (GGUF output) Q8_0");
        dtype = (int)d;
    }
    int simd = HMA_SIMD_AUTO;
    if (o.simd) {
        if (!strcmp(o.simd, "auto")) simd = HMA_SIMD_AUTO;
        else if (!strcmp(o.simd, "scalar")) simd = HMA_SIMD_SCALAR;
        else if (!strcmp(o.simd, "avx2")) simd = HMA_SIMD_AVX2;
        else if (!strcmp(o.simd, "avx512")) simd = HMA_SIMD_AVX512;
        else return cli_usage(CMD, "--simd must be scalar, avx2, avx512 or auto");
    }
    uint64_t shard = 0;
    int folder_out = o.out && !ends_with(o.out, ".safetensors") && !gguf_out;
    if (o.shard) {
        if (parse_size(o.shard, &shard)) return cli_usage(CMD, "--shard-size needs a size such as 5GB or 500MiB");
        if (o.out && !folder_out) return cli_usage(CMD, "--shard-size needs a folder output (-o DIR)");
    }
    long copy_from = -1;
    if (o.copy_unmatched && find_input(&o, o.copy_unmatched, &copy_from))
        return cli_usage(CMD, "--copy-unmatched needs an input index or one of the input paths");
    char *side_from = NULL; /* first input that is a model folder */
    for (size_t j = 0; j < o.n && !side_from; j++) side_from = input_folder(o.paths[j]);
    if (folder_out && is_dir(o.out)) {
        char *ro = realpath(o.out, NULL);
        for (size_t j = 0; j < o.n && ro; j++) {
            char *f = input_folder(o.paths[j]);
            char *rf = f ? realpath(f, NULL) : NULL;
            int same = rf && !strcmp(rf, ro);
            free(f);
            free(rf);
            if (same) {
                free(ro);
                free(side_from);
                return cli_usage(CMD, "the output folder is an input's folder; choose another -o");
            }
        }
        free(ro);
    }
    double *alpha = NULL, *list = NULL;
    long n_alpha = 0, n_list = 0;
    if (o.alpha && (n_alpha = parse_list(o.alpha, &alpha)) < 0) {
        free(side_from);
        return cli_usage(CMD, "--alpha needs finite numbers separated by commas");
    }
    const char *lst = o.gradient ? o.gradient : o.weights;
    if (lst && (n_list = parse_list(lst, &list)) < 0) {
        free(side_from);
        free(alpha);
        return cli_usage(CMD, "--gradient/--weights need finite numbers separated by commas");
    }

    /* ---- open and plan ---- */
    hma_store *st[MAX_INPUTS] = {0};
    hma_plan *plan = NULL;
    hma_writer *w = NULL;
    double *W = NULL;
    int lib = 0; /* rc is a library error code to report */
    char gspec[64];
    const char *groups = o.groups;
    if (!groups && n_alpha > 1) {
        snprintf(gspec, sizeof gspec, "blocks:%ld", n_alpha);
        groups = gspec;
    }
    if (!groups && o.gradient) groups = "layers";
    for (size_t j = 0; j < o.n; j++)
        if ((rc = hma_store_open(&st[j], o.paths[j], 0)) != HMA_OK) {
            lib = 1;
            goto done;
        }
    size_t n_gguf = 0;
    for (size_t j = 0; j < o.n; j++)
        n_gguf += hma_store_count(st[j]) && hma_tensor_gguf_type(hma_store_tensor(st[j], 0)) >= 0;
    if (n_gguf && n_gguf < o.n) {
        rc = cli_usage(CMD, "GGUF and safetensors inputs cannot be merged together: their tensor names differ "
                            "(blk.0.attn_q.weight vs model.layers.0.self_attn.q_proj.weight); use inputs of one format");
        goto done;
    }
    lib = 1;
    if ((rc = hma_plan_create(&plan, st, o.n)) != HMA_OK) goto done;
    if ((rc = hma_plan_set_method(plan, method)) != HMA_OK) goto done;
    if (groups && (rc = hma_plan_set_groups(plan, groups)) != HMA_OK) goto done;
    size_t K = hma_plan_group_count(plan), N = o.n;
    for (size_t r = 0; r < o.n_rules; r++) {
        const char *eq = strrchr(o.rules[r], '=');
        if (!eq || eq == o.rules[r] || !eq[1]) {
            rc = cli_usage(CMD, "--rule needs PATTERN=GROUP (GROUP an index or 'mean')");
            lib = 0;
            goto done;
        }
        int g;
        if (!strcmp(eq + 1, "mean")) g = HMA_GROUP_MEAN;
        else {
            char *end;
            errno = 0;
            long v = strtol(eq + 1, &end, 10);
            if (*end || errno || v < 0 || (size_t)v >= K) {
                rc = cli_usage(CMD, "--rule group must be 'mean' or an index below the group count");
                lib = 0;
                goto done;
            }
            g = (int)v;
        }
        char *pat = strndup(o.rules[r], (size_t)(eq - o.rules[r]));
        rc = pat ? hma_plan_add_rule(plan, pat, g) : HMA_ERR_NO_MEMORY;
        free(pat);
        if (rc) goto done;
    }
    /* mergekit normalizes soup weights by default; ratio rows never are, so
     * leave it off for them to keep the recipe honest. */
    int normalize = o.normalize >= 0 ? o.normalize : (o.weights != NULL || any_weight);
    if (method == HMA_METHOD_LINEAR && (rc = hma_plan_set_normalize(plan, normalize)) != HMA_OK) goto done;
    if (dtype != HMA_DTYPE_COUNT && (rc = hma_plan_set_output_dtype(plan, dtype)) != HMA_OK) goto done;
    if (q8 && (rc = hma_plan_set_output_gguf_type(plan, HMA_GGUF_Q8_0)) != HMA_OK) goto done;
    if (copy_from >= 0 && (rc = hma_plan_copy_unmatched(plan, copy_from)) != HMA_OK) goto done;
    if (o.allow_nonfinite && (rc = hma_plan_set_flags(plan, HMA_MERGE_ALLOW_NONFINITE)) != HMA_OK) goto done;
    if ((rc = hma_plan_set_threads(plan, (unsigned)o.threads)) != HMA_OK) goto done;
    if (simd != HMA_SIMD_AUTO && (rc = hma_plan_set_simd(plan, simd)) != HMA_OK) goto done;

    /* ---- weights ---- */
    if (o.alpha) {
        if (n_alpha == 1) rc = hma_plan_set_ratio(plan, alpha[0]);
        else if ((size_t)n_alpha != K) {
            char msg[160];
            snprintf(msg, sizeof msg, "--alpha has %ld values but the groups '%s' make %zu", n_alpha,
                     hma_plan_groups_spec(plan), K);
            rc = cli_usage(CMD, msg);
            lib = 0;
            goto done;
        } else rc = hma_plan_set_ratios(plan, alpha, (size_t)n_alpha);
    } else if (o.gradient) {
        rc = hma_plan_set_ratio_gradient(plan, list, (size_t)n_list);
    } else if (o.weights || any_weight || method == HMA_METHOD_TASK_ARITHMETIC) {
        W = calloc(K * N, sizeof *W);
        if (!W) {
            rc = cli_usage(CMD, "out of memory");
            lib = 0;
            goto done;
        }
        if (o.weights) {
            int task = method == HMA_METHOD_TASK_ARITHMETIC;
            if ((size_t)n_list == N || (task && (size_t)n_list == N - 1)) {
                size_t off = (size_t)n_list == N ? 0 : 1;
                for (size_t k = 0; k < K; k++)
                    for (size_t j = 0; j < (size_t)n_list; j++) W[k * N + j + off] = list[j];
            } else if (K > 1 && (size_t)n_list == K * N) {
                memcpy(W, list, K * N * sizeof *W);
            } else {
                char msg[200];
                snprintf(msg, sizeof msg, "--weights has %ld values; expected %zu (one per input)%s", n_list, N,
                         task ? " or one per model" : (K > 1 ? " or groups x inputs" : ""));
                rc = cli_usage(CMD, msg);
                lib = 0;
                goto done;
            }
        } else {
            /* --weight per input; task arithmetic without weights: 1 per model */
            for (size_t k = 0; k < K; k++)
                for (size_t j = 0; j < N; j++) W[k * N + j] = any_weight ? (o.has_weight[j] ? o.weight[j] : 0) : 1.0;
        }
        rc = hma_plan_set_weights(plan, W, K * N);
    }
    if (rc) goto done;

    if (o.dry_run) {
        rc = print_plan(plan, o.paths, mname);
        lib = 0;
        goto done;
    }

    /* ---- merge ---- */
    /* the command line goes into __metadata__, after "format" and "hma_recipe" */
    char *cmdline = command_line(argc, argv, o.skip, o.nskip);
    rc = cmdline ? hma_plan_set_metadata(plan, gguf_out ? GGUF_COMMAND_KEY : COMMAND_KEY, cmdline) : HMA_ERR_NO_MEMORY;
    free(cmdline);
    if (rc) goto done;
    /* our own writer, so that the side files are committed with the shards:
     * each appears whole, together with the weights, or not at all */
    if ((rc = hma_writer_create(&w, o.out, shard)) != HMA_OK) goto done;
    if (o.pmode == 1 && (rc = hma_writer_set_part(w, (size_t)o.prank, (size_t)o.pworld)) != HMA_OK) goto done;
    if (o.pmode == 2 && (rc = hma_writer_set_finalize(w, (size_t)o.pworld)) != HMA_OK) goto done;
    int copied = 0;
    if (folder_out && side_from && (rc = add_side_files(w, side_from, &copied)) != HMA_OK) goto done;
    cli_progress pr;
    cli_progress_init(&pr, o.quiet);
    if ((rc = hma_plan_set_progress(plan, cli_progress_cb, &pr)) != HMA_OK) goto done;
    rc = hma_plan_merge_into(plan, w);
    if (!rc) rc = hma_writer_commit(w);
    double secs = cli_progress_finish(&pr);
    if (rc) goto done;
    lib = 0;
    size_t written = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < hma_plan_tensor_count(plan); i++)
        if (hma_plan_tensor_action(plan, i) != HMA_ACTION_SKIP) {
            written++;
            total += hma_plan_tensor_nbytes(plan, i);
        }
    if (!o.quiet && o.pmode == 1) {
        /* pr.total: the bytes of this part's rows (the progress callback's total) */
        fprintf(stderr, "part %ld of %ld: wrote %.3f GB in %.2f s (%.2f GB/s)\n", o.prank, o.pworld,
                (double)pr.total / 1e9, secs, secs > 0 ? (double)pr.total / 1e9 / secs : 0.0);
    } else if (!o.quiet && o.pmode == 2) {
        fprintf(stderr, "finalized %ld part%s: every shard checked, %.3f GB in %.2f s\n", o.pworld,
                o.pworld == 1 ? "" : "s", (double)total / 1e9, secs);
        if (copied)
            fprintf(stderr, "copied %d config/tokenizer file%s from %s\n", copied, copied == 1 ? "" : "s", side_from);
    } else if (!o.quiet) {
        fprintf(stderr, "merged %zu tensors, %.3f GB in %.2f s (%.2f GB/s)\n", written, (double)total / 1e9, secs,
                secs > 0 ? (double)total / 1e9 / secs : 0.0);
        if (copied)
            fprintf(stderr, "copied %d config/tokenizer file%s from %s\n", copied, copied == 1 ? "" : "s", side_from);
    }
    if (gguf_out && !o.quiet && dtype == HMA_DTYPE_COUNT) note_gguf_fallback(plan, st[0]);
done:
    if (rc && lib) rc = cli_fail(CMD, rc);
    hma_writer_free(w); /* not committed: nothing appears under -o */
    hma_plan_free(plan);
    for (size_t j = 0; j < o.n; j++) hma_store_close(st[j]);
    free(W);
    free(alpha);
    free(list);
    free(side_from);
    return rc;
}

/* ---- recipes (--config) ----------------------------------------------------- */

/* Every parameter name a method may take (hma_recipe_tensor_param() says
 * which ones this recipe's method takes). */
static const char *const recipe_params[] = {"weight",    "density",          "gamma",    "epsilon",
                                            "scale",     "normalize",        "rescale",  "lambda",
                                            "int8_mask", "t",                "filter_wise", "nuslerp_flatten",
                                            "nuslerp_row_wise", "max_iter",  "tol",      "normalize_weights",
                                            "eps",       "select_topk",      "r",        "alpha"};

/* One line per output tensor: name, shape, dtype, t, sources model:input
 * (with their per-model values), then the global values. */
static int print_recipe(const hma_recipe *r) {
    FILE *o = stdout;
    size_t R = hma_recipe_tensor_count(r), M = hma_recipe_model_count(r);
    fprintf(o, "recipe: method %s, %zu models, %zu tensors\n", hma_recipe_method(r), M, R);
    for (size_t m = 0; m < M; m++) fprintf(o, "  model %zu: %s\n", m, hma_recipe_model_path(r, m));
    for (size_t i = 0; i < R; i++) {
        unsigned nd = 0;
        const uint64_t *sh = hma_recipe_tensor_shape(r, i, &nd);
        fprintf(o, "%s [", hma_recipe_tensor_name(r, i));
        for (unsigned d = 0; d < nd; d++) fprintf(o, "%s%" PRIu64, d ? "," : "", sh[d]);
        fprintf(o, "] %s t=%.6g", hma_dtype_name(hma_recipe_tensor_dtype(r, i)), hma_recipe_tensor_t(r, i));
        for (size_t j = 0; j < hma_recipe_tensor_source_count(r, i); j++) {
            size_t m;
            const char *in;
            int rc = hma_recipe_tensor_source(r, i, j, &m, &in);
            if (rc != HMA_OK) return cli_fail(CMD, rc);
            fprintf(o, " %zu:%s", m, in);
            const char *sep = "(";
            for (size_t p = 0; p < sizeof recipe_params / sizeof recipe_params[0]; p++) {
                double v;
                if (hma_recipe_tensor_param(r, i, j, recipe_params[p], &v) != HMA_OK) continue;
                fprintf(o, "%s%s=%.6g", sep, recipe_params[p], v);
                sep = ",";
            }
            if (*sep == ',') fputc(')', o);
        }
        for (size_t p = 0; p < sizeof recipe_params / sizeof recipe_params[0]; p++) {
            double v;
            if (hma_recipe_tensor_param(r, i, HMA_NPOS, recipe_params[p], &v) == HMA_OK)
                fprintf(o, " %s=%.6g", recipe_params[p], v);
        }
        fputc('\n', o);
    }
    if (fflush(o) != 0) {
        fprintf(stderr, "hma merge: cannot write output\n");
        return 1;
    }
    return 0;
}

static int run_recipe(int argc, char **argv, const opts *o) {
    if (o->n || o->method || o->groups || o->dtype || o->alpha || o->gradient || o->weights || o->n_rules ||
        o->copy_unmatched || o->simd || o->normalize >= 0 || o->allow_nonfinite || o->pmode)
        return cli_usage(CMD, "--config takes models, method and weights from the recipe: give only -o, --seed, "
                              "--threads, --shard-size, --dry-run and -q");
    if (!o->out && !o->dry_run) return cli_usage(CMD, "missing -o OUT (or --dry-run)");
    uint64_t seed = 0, shard = 0;
    if (o->seed) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(o->seed, &end, 10);
        if (end == o->seed || *end || errno || o->seed[0] == '-') return cli_usage(CMD, "--seed needs an integer 0..2^64-1");
        seed = v;
    }
    if (o->shard) {
        if (parse_size(o->shard, &shard)) return cli_usage(CMD, "--shard-size needs a size such as 5GB or 500MiB");
        if (o->out && (ends_with(o->out, ".safetensors") || ends_with(o->out, ".gguf")))
            return cli_usage(CMD, "--shard-size needs a folder output (-o DIR)");
    }
    hma_recipe *r = NULL;
    int rc = hma_recipe_load(&r, o->config);
    if (!rc) rc = hma_recipe_resolve(r);
    for (size_t k = 0; r && k < hma_recipe_note_count(r); k++) {
        fputs("note: ", stderr);
        cli_put_one_line(stderr, hma_recipe_note(r, k));
        fputc('\n', stderr);
    }
    if (rc) {
        rc = cli_fail(CMD, rc);
        hma_recipe_free(r);
        return rc;
    }
    if (o->dry_run) {
        rc = print_recipe(r);
        hma_recipe_free(r);
        return rc;
    }
    char *cmdline = command_line(argc, argv, o->skip, o->nskip);
    rc = cmdline ? hma_recipe_set_metadata(r, COMMAND_KEY, cmdline) : HMA_ERR_NO_MEMORY;
    free(cmdline);
    cli_progress pr;
    cli_progress_init(&pr, o->quiet);
    hma_recipe_options opt;
    hma_recipe_options_init(&opt);
    opt.seed = seed;
    opt.threads = (unsigned)o->threads;
    opt.shard_size = shard;
    opt.progress = cli_progress_cb;
    opt.progress_user = &pr;
    if (!rc) rc = hma_recipe_merge_to(r, o->out, &opt);
    double secs = cli_progress_finish(&pr);
    if (rc) rc = cli_fail(CMD, rc);
    else if (!o->quiet)
        fprintf(stderr, "merged %zu tensors (%s, %zu models), %.3f GB in %.2f s\n", hma_recipe_tensor_count(r),
                hma_recipe_method(r), hma_recipe_model_count(r), (double)pr.total / 1e9, secs);
    hma_recipe_free(r);
    return rc;
}
