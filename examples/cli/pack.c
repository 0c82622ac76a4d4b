/* cli/pack.c - `hma pack` and `hma unpack`: lossless delta packs of a checkpoint. */
#include "hma.h"
#include "args.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pack_usage(FILE *f) {
    fprintf(f,
            "usage: hma pack [--base BASE] MODEL.safetensors -o OUT.hmapack [--level N] [--threads N]\n"
            "                [--chunk BYTES]\n"
            "  --base BASE    code the float tensors as differences from this checkpoint\n"
            "                 (a file, index or folder); without it the pack stands alone\n"
            "  -o OUT         the pack to write (atomically)\n"
            "  --level N      zstd level (default %d; higher is smaller and slower)\n"
            "  --threads N    worker threads (default: one per CPU); output is the same for any N\n"
            "  --chunk BYTES  raw bytes per chunk (default %u)\n"
            "A sharded model: pack each shard on its own, with the same base.\n",
            HMA_PACK_DEFAULT_LEVEL, HMA_PACK_DEFAULT_CHUNK);
}

static void unpack_usage(FILE *f) {
    fprintf(f,
            "usage: hma unpack [--base BASE] PACK -o MODEL.safetensors [--verify] [--threads N]\n"
            "  --base BASE    the checkpoint the pack was made against (required if it has one)\n"
            "  -o OUT         the safetensors file to restore (atomically), byte for byte\n"
            "  --verify       read OUT back and compare it with the pack's checksums and bytes\n"
            "  --threads N    worker threads (default: one per CPU)\n");
}

static void print_stats(const char *what, const hma_pack_stats *s) {
    double ratio = s->packed_bytes ? (double)s->raw_bytes / (double)s->packed_bytes : 0.0;
    double mbs = s->seconds > 0 ? (double)s->raw_bytes / s->seconds / 1e6 : 0.0;
    printf("%s: %llu bytes <-> %llu bytes packed, ratio %.3f, %llu tensors (%llu against the base), "
           "%llu chunks, %.3f s, %.1f MB/s of raw bytes\n",
           what, (unsigned long long)s->raw_bytes, (unsigned long long)s->packed_bytes, ratio,
           (unsigned long long)s->tensors, (unsigned long long)s->tensors_on_base,
           (unsigned long long)s->chunks, s->seconds, mbs);
}

int cli_cmd_pack(int argc, char **argv) {
    const char *base_path = NULL, *model = NULL, *out = NULL;
    hma_pack_options opt;
    hma_pack_options_init(&opt);
    cli_args a;
    cli_args_init(&a, argc, argv);
    while (cli_args_next(&a)) {
        const char *s;
        unsigned long long v;
        long l;
        if (cli_args_help(&a)) {
            pack_usage(stdout);
            return 0;
        } else if (cli_args_value(&a, "--base", &s)) {
            if (!s) return cli_usage("pack", "--base needs a path");
            base_path = s;
        } else if (cli_args_value(&a, "-o", &s) || cli_args_value(&a, "--output", &s)) {
            if (!s) return cli_usage("pack", "-o needs a path");
            out = s;
        } else if (cli_args_value(&a, "--level", &s)) {
            if (!s) return cli_usage("pack", "--level needs a number");
            if (cli_parse_long(s, -100, 22, &l)) return cli_usage("pack", "--level must be -100..22");
            opt.level = (int)l;
        } else if (cli_args_value(&a, "--threads", &s)) {
            if (cli_parse_ull(s, 1024, &v) || v == 0) return cli_usage("pack", "--threads must be 1..1024");
            opt.threads = (unsigned)v;
        } else if (cli_args_value(&a, "--chunk", &s)) {
            if (cli_parse_ull(s, HMA_PACK_MAX_CHUNK, &v)) return cli_usage("pack", "--chunk must be a byte count");
            opt.chunk_size = v;
        } else if (cli_args_is_option(&a)) {
            return cli_usage("pack", "unknown option");
        } else if (model) {
            return cli_usage("pack", "more than one MODEL");
        } else {
            model = a.arg;
        }
    }
    if (!model) return cli_usage("pack", "missing MODEL");
    if (!out) return cli_usage("pack", "missing -o OUT");
    hma_store *base = NULL;
    int rc;
    if (base_path && (rc = hma_store_open(&base, base_path, 0))) return cli_fail("pack", rc);
    hma_pack_stats st;
    hma_pack_stats_init(&st);
    rc = hma_pack_create(model, base, out, &opt, &st);
    hma_store_close(base);
    if (rc) return cli_fail("pack", rc);
    print_stats("pack", &st);
    return 0;
}

int cli_cmd_unpack(int argc, char **argv) {
    const char *base_path = NULL, *pack = NULL, *out = NULL;
    int verify = 0;
    hma_pack_options opt;
    hma_pack_options_init(&opt);
    cli_args a;
    cli_args_init(&a, argc, argv);
    while (cli_args_next(&a)) {
        const char *s;
        unsigned long long v;
        if (cli_args_help(&a)) {
            unpack_usage(stdout);
            return 0;
        } else if (cli_args_value(&a, "--base", &s)) {
            if (!s) return cli_usage("unpack", "--base needs a path");
            base_path = s;
        } else if (cli_args_value(&a, "-o", &s) || cli_args_value(&a, "--output", &s)) {
            if (!s) return cli_usage("unpack", "-o needs a path");
            out = s;
        } else if (cli_args_flag(&a, "--verify")) {
            verify = 1;
        } else if (cli_args_value(&a, "--threads", &s)) {
            if (cli_parse_ull(s, 1024, &v) || v == 0) return cli_usage("unpack", "--threads must be 1..1024");
            opt.threads = (unsigned)v;
        } else if (cli_args_is_option(&a)) {
            return cli_usage("unpack", "unknown option");
        } else if (pack) {
            return cli_usage("unpack", "more than one PACK");
        } else {
            pack = a.arg;
        }
    }
    if (!pack) return cli_usage("unpack", "missing PACK");
    if (!out) return cli_usage("unpack", "missing -o OUT");
    hma_store *base = NULL;
    int rc;
    if (base_path && (rc = hma_store_open(&base, base_path, 0))) return cli_fail("unpack", rc);
    hma_pack_stats st;
    hma_pack_stats_init(&st);
    rc = hma_pack_unpack(pack, base, out, &opt, &st);
    if (!rc) {
        print_stats("unpack", &st);
        if (verify) {
            hma_pack_stats vs;
            hma_pack_stats_init(&vs);
            rc = hma_pack_verify(pack, base, out, &opt, &vs);
            if (!rc) printf("verify: %s matches the pack byte for byte (%.3f s)\n", out, vs.seconds);
        }
    }
    hma_store_close(base);
    if (rc) return cli_fail("unpack", rc);
    return 0;
}
