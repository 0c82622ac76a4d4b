/* cli/args.c - the `hma` program's one argument reader and number parsers (see args.h). */
#include "args.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void cli_args_init(cli_args *a, int argc, char **argv) {
    a->argc = argc;
    a->argv = argv;
    a->i = 0;
    a->arg = NULL;
}

const char *cli_args_next(cli_args *a) {
    if (a->i < a->argc) a->i++;
    a->arg = a->i < a->argc ? a->argv[a->i] : NULL;
    return a->arg;
}

int cli_args_help(const cli_args *a) { return cli_args_flag(a, "-h") || cli_args_flag(a, "--help"); }

int cli_args_flag(const cli_args *a, const char *flag) { return a->arg && !strcmp(a->arg, flag); }

int cli_args_value(cli_args *a, const char *name, const char **value) {
    size_t n = strlen(name);
    if (!a->arg || strncmp(a->arg, name, n) != 0) return 0;
    if (a->arg[n] == '=') {
        *value = a->arg + n + 1;
        return 1;
    }
    if (a->arg[n]) return 0;
    if (a->i + 1 < a->argc) {
        a->i++;
        *value = a->argv[a->i];
    } else *value = NULL;
    return 1;
}

int cli_args_is_option(const cli_args *a) { return a->arg && a->arg[0] == '-' && a->arg[1]; }

static int all_digits(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

int cli_parse_long(const char *s, long lo, long hi, long *out) {
    if (!s || !all_digits(s[0] == '-' ? s + 1 : s)) return -1;
    errno = 0;
    long v = strtol(s, NULL, 10);
    if (errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_parse_ull(const char *s, unsigned long long max, unsigned long long *out) {
    if (!s || !all_digits(s)) return -1;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno || v > max) return -1;
    *out = v;
    return 0;
}

/* One number at s ending at a ',' or the end; *end set past it. */
static int parse_item(const char *s, double *out, const char **end) {
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (isspace((unsigned char)*s) || e == s || (*e && *e != ',') || errno == ERANGE || !isfinite(v)) return -1;
    *out = v;
    *end = e;
    return 0;
}

int cli_parse_double(const char *s, double *out) {
    const char *end;
    double v;
    if (!s || parse_item(s, &v, &end) || *end) return -1;
    *out = v;
    return 0;
}

size_t cli_parse_list(const char *s, double *v, size_t max) {
    if (!s) return 0;
    size_t n = 0;
    for (;;) {
        const char *end;
        if (n == max || parse_item(s, &v[n], &end)) return 0;
        n++;
        if (!*end) return n;
        s = end + 1; /* past the comma: an empty item after it fails above */
    }
}
