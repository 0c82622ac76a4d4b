/*
 * hma_cli.h - shared declarations of the `hma` command-line program.
 *
 * examples/hma.c holds main(): it looks the first argument up in a table of
 * subcommands and calls  int hma_cmd_<name>(int argc, char **argv)  with
 * argv[0] = the subcommand name; the return value is the exit status
 * (0 success, 1 the library reported an error, 2 bad usage).
 *
 * Each subcommand lives in its own file examples/hma_<name>.c (the Makefile
 * builds every examples/hma*.c). The ones below are declared weak so that
 * the program links while a file is still missing: main() lists only the
 * subcommands actually present. To add a command with a new name, declare
 * it here and add one row to the table in hma.c.
 */
#ifndef HMA_CLI_H
#define HMA_CLI_H

#include <stdio.h>

#if defined(__GNUC__)
#define HMA_CLI_OPTIONAL __attribute__((weak))
#else
#define HMA_CLI_OPTIONAL
#endif

/* examples/hma.c */
int hma_cmd_inspect(int argc, char **argv);

/* Other files; absent ones are NULL at run time. */
HMA_CLI_OPTIONAL int hma_cmd_merge(int argc, char **argv);
HMA_CLI_OPTIONAL int hma_cmd_diff(int argc, char **argv);
HMA_CLI_OPTIONAL int hma_cmd_eval(int argc, char **argv);
HMA_CLI_OPTIONAL int hma_cmd_search(int argc, char **argv);
HMA_CLI_OPTIONAL int hma_cmd_groups(int argc, char **argv);
HMA_CLI_OPTIONAL int hma_cmd_pack(int argc, char **argv);
HMA_CLI_OPTIONAL int hma_cmd_unpack(int argc, char **argv);

/* Print ONE line "hma CMD: <hma_strerror(code)>: <hma_last_error()>" to
 * stderr (control characters escaped so the line stays one line) and return
 * 1, the exit status for library errors. */
int hma_cli_fail(const char *cmd, int code);

/* Print a usage error "hma CMD: MESSAGE" plus a hint to stderr; returns 2. */
int hma_cli_usage(const char *cmd, const char *message);

/* Write s as a JSON string literal (quotes included) to f. */
void hma_cli_json_string(FILE *f, const char *s);

#endif /* HMA_CLI_H */
