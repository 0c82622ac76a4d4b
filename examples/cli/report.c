/*
 * cli/report.c - the `hma` commands' shared output helpers: one-line error
 * and usage messages and JSON strings (cli.h). A file of its own so that
 * other programs built from the commands (examples/mpi/) link them without
 * the `hma` main().
 */
#include "cli.h"

#include <hma.h>

#include <stdio.h>

/* Escape control bytes so that a message stays on one line. */
void cli_put_one_line(FILE *f, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
}

int cli_fail(const char *cmd, int code) {
    fprintf(stderr, "hma %s: %s: ", cmd, hma_strerror(code));
    cli_put_one_line(stderr, hma_last_error());
    fputc('\n', stderr);
    return 1;
}

int cli_usage(const char *cmd, const char *message) {
    fprintf(stderr, "hma %s: %s (try 'hma %s --help')\n", cmd, message, cmd);
    return 2;
}

void cli_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
            else fputc(c, f); /* names are valid UTF-8: the library checked */
        }
    }
    fputc('"', f);
}
