/*
 * cli/args.h - the one argument reader of the `hma` program: every command
 * walks its argv with a cli_args and reads numbers with the cli_parse_*
 * functions, so that options are spelled and checked the same way in every
 * command:
 *
 *   --flag            cli_args_flag()
 *   --opt VALUE       cli_args_value() (also --opt=VALUE)
 *   -h, --help        cli_args_help()
 *   OPERAND           anything not starting with '-', and a lone "-"
 *
 * Each command keeps its own messages: the helpers only answer what the
 * current argument is, the command decides what to say.
 *
 *   cli_args a;
 *   cli_args_init(&a, argc, argv);
 *   while (cli_args_next(&a)) {
 *       const char *v;
 *       if (cli_args_help(&a)) ...
 *       else if (cli_args_flag(&a, "--json")) json = 1;
 *       else if (cli_args_value(&a, "--base", &v)) { if (!v) return cli_usage(...); base = v; }
 *       else if (cli_args_is_option(&a)) return cli_usage(CMD, "unknown option");
 *       else path = a.arg;
 *   }
 */
#ifndef CLI_ARGS_H
#define CLI_ARGS_H

#include <stddef.h>

typedef struct cli_args {
    int argc;
    char **argv;
    int i;           /* index of the current argument in argv */
    const char *arg; /* the current argument (NULL before the first and after the last) */
} cli_args;

/* Start reading argv[1..argc-1] (argv[0] is the command's name). */
void cli_args_init(cli_args *a, int argc, char **argv);

/* Step to the next argument and return it; NULL after the last one. */
const char *cli_args_next(cli_args *a);

/* 1 when the current argument is "-h" or "--help". */
int cli_args_help(const cli_args *a);

/* 1 when the current argument is exactly `flag`. */
int cli_args_flag(const cli_args *a, const char *flag);

/* When the current argument is `name` or `name=VALUE`, return 1 and set
 * *value to VALUE or, for a bare `name`, to the next argument (which is
 * consumed); *value is NULL when `name` is the last argument. Otherwise
 * return 0 and leave *value alone. */
int cli_args_value(cli_args *a, const char *name, const char **value);

/* 1 when the current argument looks like an option ("-x...", "--x...");
 * a lone "-" is an operand. */
int cli_args_is_option(const cli_args *a);

/* Numbers: the whole string must be the number (no spaces, no trailing
 * characters). Each returns 0, or -1 on a syntax error or a value outside
 * the range; s may be NULL (an error). */

/* A decimal integer, optionally negative, in [lo, hi]. */
int cli_parse_long(const char *s, long lo, long hi, long *out);
/* A non-negative decimal integer not above max. */
int cli_parse_ull(const char *s, unsigned long long max, unsigned long long *out);
/* A finite floating-point number. */
int cli_parse_double(const char *s, double *out);
/* "x" or "x1,x2,...": finite numbers separated by single commas, at most
 * `max` of them, into v. Returns the count, or 0 on any error. */
size_t cli_parse_list(const char *s, double *v, size_t max);

#endif /* CLI_ARGS_H */
