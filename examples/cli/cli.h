/*
 * cli/cli.h - shared declarations of the `hma` command-line program.
 *
 * cli/hma.c holds main(): it looks the first argument up in a table of
 * commands and calls  int cli_cmd_<name>(int argc, char **argv)  with
 * argv[0] = the command name; the return value is the exit status
 * (0 success, 1 the library reported an error, 2 bad usage). Arguments are
 * read with cli/args.h.
 *
 * Each command lives in its own file under examples/cli/ (the Makefile
 * builds every .c file of examples/cli/ and examples/experiment/ into one
 * program); `hma eval` and `hma search` run the experiment of
 * examples/experiment/. To add a command, write cli/<name>.c, declare its
 * function here and add one row to the table in cli/hma.c.
 */
#ifndef CLI_H
#define CLI_H

#include <stdio.h>

int cli_cmd_inspect(int argc, char **argv); /* cli/hma.c */
int cli_cmd_merge(int argc, char **argv);   /* cli/merge.c */
int cli_cmd_diff(int argc, char **argv);    /* cli/diff.c */
int cli_cmd_eval(int argc, char **argv);    /* cli/eval.c */
int cli_cmd_search(int argc, char **argv);  /* cli/search.c */
int cli_cmd_pack(int argc, char **argv);    /* cli/pack.c */
int cli_cmd_unpack(int argc, char **argv);  /* cli/pack.c */

/* cli/merge.c: `hma merge ARGS` as one part of a partitioned merge (part
 * `rank` of `world`), or, with `finalize`, its finalize step; for programs
 * that know the partition themselves (examples/mpi/). ARGS must not hold
 * --rank, --world or --finalize. `quiet` adds -q. Exit status as commands. */
int cli_merge_partition(int argc, char **argv, long rank, long world, int finalize, int quiet);

struct exp_search_config;
/* `hma search`'s options (argv[0] = the command name) into *c, checked
 * (experiment/search.h). Returns -1 when *c is ready to run; else the exit
 * status to return at once: 0 after --help (printed), 2 after a usage error
 * (printed). Also for programs that run the same search elsewhere. */
int cli_search_parse(int argc, char **argv, struct exp_search_config *c);

/* Print ONE line "hma CMD: <hma_strerror(code)>: <hma_last_error()>" to
 * stderr (control characters escaped so the line stays one line) and return
 * 1, the exit status for library errors. */
int cli_fail(const char *cmd, int code);

/* Print a usage error "hma CMD: MESSAGE" plus a hint to stderr; returns 2. */
int cli_usage(const char *cmd, const char *message);

/* Write s to f with control bytes escaped (\xNN), so it stays one line. */
void cli_put_one_line(FILE *f, const char *s);

/* cli/report.c holds these helpers. Write s as a JSON string literal (quotes included) to f. */
void cli_json_string(FILE *f, const char *s);

#endif /* CLI_H */
