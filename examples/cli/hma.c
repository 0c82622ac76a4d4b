/*
 * cli/hma.c - the `hma` command-line program: main() with subcommand dispatch
 * (see cli.h for how subcommands in other files plug in) and `hma inspect`.
 *
 *   hma inspect PATH [--json] [--pread]
 *       PATH is a .safetensors file, a model.safetensors.index.json, or a
 *       model folder. Validates it completely, then lists the metadata and
 *       every tensor (name, dtype, shape, bytes) and a summary (tensor
 *       count, parameter count, bytes per dtype). --json prints the same as
 *       one JSON object. Exit 0 when valid; otherwise 1 and one line on
 *       stderr naming the error.
 */
#include "args.h"
#include "cli.h"

#include <hma.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"inspect", cli_cmd_inspect, "validate a checkpoint and list its tensors and metadata"},
    {"merge", cli_cmd_merge, "average checkpoints (MA, HMA, soups, task arithmetic, SLERP)"},
    {"diff", cli_cmd_diff, "compare two checkpoints tensor by tensor"},
    {"eval", cli_cmd_eval, "score a toy-llama checkpoint"},
    {"search", cli_cmd_search, "search per-group ratios / Pareto front"},
    {"pack", cli_cmd_pack, "encode a checkpoint as a delta pack against a base"},
    {"unpack", cli_cmd_unpack, "decode a delta pack back to safetensors"},
};

static void print_help(FILE *f) {
    fprintf(f, "usage: hma COMMAND [ARGS...]   (libhma %s)\n\ncommands:\n", hma_version_string());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'hma COMMAND --help' for a command's options.\n");
}

/* ---- inspect ------------------------------------------------------------- */

/* A GGUF tensor's type as llama.cpp prints it ("Q8_0", "Q4_K", "BF16"). */
static const char *type_name(const hma_tensor *t) {
    static _Thread_local char buf[16];
    const char *n = hma_gguf_type_name(hma_tensor_gguf_type(t));
    size_t i = 0;
    for (; n && n[i] && i + 1 < sizeof buf; i++) buf[i] = (char)(n[i] >= 'a' && n[i] <= 'z' ? n[i] - 32 : n[i]);
    buf[i] = 0;
    return n ? buf : "?";
}

static void inspect_usage(FILE *f) {
    fprintf(f,
            "usage: hma inspect PATH [--json] [--pread]\n"
            "  PATH     a .safetensors file, a model.safetensors.index.json, or a model folder\n"
            "  --json   print one JSON object instead of text\n"
            "  --pread  read without memory-mapping (same output)\n");
}

int cli_cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    unsigned flags = 0;
    cli_args a;
    cli_args_init(&a, argc, argv);
    while (cli_args_next(&a)) {
        if (cli_args_flag(&a, "--json")) json = 1;
        else if (cli_args_flag(&a, "--pread")) flags |= HMA_OPEN_PREAD;
        else if (cli_args_help(&a)) {
            inspect_usage(stdout);
            return 0;
        } else if (cli_args_is_option(&a)) return cli_usage("inspect", "unknown option");
        else if (path) return cli_usage("inspect", "more than one PATH");
        else path = a.arg;
    }
    if (!path) return cli_usage("inspect", "missing PATH");

    hma_store *st = NULL;
    int rc = hma_store_open(&st, path, flags);
    if (rc) return cli_fail("inspect", rc);

    size_t n = hma_store_count(st);
    uint64_t params = 0, bytes = 0;
    uint64_t dt_count[HMA_DTYPE_COUNT] = {0}, dt_params[HMA_DTYPE_COUNT] = {0}, dt_bytes[HMA_DTYPE_COUNT] = {0};
    for (size_t i = 0; i < n; i++) {
        const hma_tensor *t = hma_store_tensor(st, i);
        hma_dtype d = hma_tensor_dtype(t);
        params += hma_tensor_nelements(t);
        bytes += hma_tensor_nbytes(t);
        dt_count[d]++;
        dt_params[d] += hma_tensor_nelements(t);
        dt_bytes[d] += hma_tensor_nbytes(t);
    }
    FILE *o = stdout;
    size_t nf = hma_store_file_count(st), nm = hma_store_metadata_count(st);
    if (json) {
        fputs("{\"path\":", o);
        cli_json_string(o, path);
        fputs(",\"files\":[", o);
        for (size_t i = 0; i < nf; i++) {
            if (i) fputc(',', o);
            cli_json_string(o, hma_store_file_path(st, i));
        }
        fputs("],\"metadata\":{", o);
        for (size_t i = 0; i < nm; i++) {
            const char *k, *v;
            hma_store_metadata_at(st, i, &k, &v);
            if (i) fputc(',', o);
            cli_json_string(o, k);
            fputc(':', o);
            cli_json_string(o, v);
        }
        fputs("},\"tensors\":[", o);
        for (size_t i = 0; i < n; i++) {
            const hma_tensor *t = hma_store_tensor(st, i);
            fputs(i ? ",\n{\"name\":" : "\n{\"name\":", o);
            cli_json_string(o, hma_tensor_name(t));
            fprintf(o, ",\"dtype\":\"%s\",", hma_dtype_name(hma_tensor_dtype(t)));
            if (hma_tensor_gguf_type(t) >= 0) fprintf(o, "\"gguf_type\":\"%s\",", type_name(t));
            fputs("\"shape\":[", o);
            const uint64_t *sh = hma_tensor_shape(t);
            for (unsigned k = 0; k < hma_tensor_ndim(t); k++) fprintf(o, k ? ",%" PRIu64 : "%" PRIu64, sh[k]);
            fprintf(o, "],\"parameters\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"file\":%zu}", hma_tensor_nelements(t),
                    hma_tensor_nbytes(t), hma_tensor_file(t));
        }
        fprintf(o, "],\n\"summary\":{\"tensors\":%zu,\"parameters\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"dtypes\":{", n,
                params, bytes);
        int first = 1;
        for (int d = 0; d < HMA_DTYPE_COUNT; d++) {
            if (!dt_count[d]) continue;
            fprintf(o, "%s\"%s\":{\"tensors\":%" PRIu64 ",\"parameters\":%" PRIu64 ",\"bytes\":%" PRIu64 "}",
                    first ? "" : ",", hma_dtype_name(d), dt_count[d], dt_params[d], dt_bytes[d]);
            first = 0;
        }
        fputs("}}}\n", o);
    } else {
        fprintf(o, "%s: %zu file%s\n", path, nf, nf == 1 ? "" : "s");
        for (size_t i = 0; i < nf; i++) {
            fputs("  ", o);
            cli_put_one_line(o, hma_store_file_path(st, i));
            fputc('\n', o);
        }
        fprintf(o, "metadata (%zu):\n", nm);
        for (size_t i = 0; i < nm; i++) {
            const char *k, *v;
            hma_store_metadata_at(st, i, &k, &v);
            fputs("  ", o);
            cli_put_one_line(o, k);
            fputs(" = ", o);
            cli_put_one_line(o, v);
            fputc('\n', o);
        }
        fprintf(o, "tensors (%zu):\n", n);
        for (size_t i = 0; i < n; i++) {
            const hma_tensor *t = hma_store_tensor(st, i);
            fputs("  ", o);
            cli_put_one_line(o, hma_tensor_name(t));
            if (hma_tensor_gguf_type(t) >= 0 && hma_tensor_gguf_type(t) != HMA_GGUF_F32 &&
                hma_tensor_gguf_type(t) != HMA_GGUF_F16 && hma_tensor_gguf_type(t) != HMA_GGUF_BF16)
                fprintf(o, "  %s (as %s)  [", type_name(t), hma_dtype_name(hma_tensor_dtype(t)));
            else
                fprintf(o, "  %s  [", hma_dtype_name(hma_tensor_dtype(t)));
            const uint64_t *sh = hma_tensor_shape(t);
            for (unsigned k = 0; k < hma_tensor_ndim(t); k++) fprintf(o, k ? ", %" PRIu64 : "%" PRIu64, sh[k]);
            fprintf(o, "]  %" PRIu64 " bytes\n", hma_tensor_nbytes(t));
        }
        fprintf(o, "summary: %zu tensors, %" PRIu64 " parameters, %" PRIu64 " bytes\n", n, params, bytes);
        for (int d = 0; d < HMA_DTYPE_COUNT; d++)
            if (dt_count[d])
                fprintf(o, "  %-12s %" PRIu64 " tensors, %" PRIu64 " parameters, %" PRIu64 " bytes\n", hma_dtype_name(d),
                        dt_count[d], dt_params[d], dt_bytes[d]);
    }
    hma_store_close(st);
    if (fflush(o) != 0 || ferror(o)) {
        fprintf(stderr, "hma inspect: cannot write output\n");
        return 1;
    }
    return 0;
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv) {
    /* Past RLIMIT_FSIZE a write must fail with EFBIG (reported as an error,
     * the temporary removed), not kill the program with SIGXFSZ. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        print_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("hma (libhma %s)\n", hma_version_string());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "hma: unknown command '");
    cli_put_one_line(stderr, argv[1]);
    fprintf(stderr, "' (try 'hma --help')\n");
    return 2;
}
