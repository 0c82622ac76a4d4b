/*
 * mpi/main.c - `hma-mpi`: main() of the MPI program: MPI_Init, dispatch of
 * the subcommand (hmampi.h says how commands plug in), MPI_Finalize, and the
 * command's status as the exit status of every rank.
 */
#include "hmampi.h"

#include <hma.h>
#include <mpi.h>

#include <stdio.h>
#include <string.h>

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv, int rank, int world);
    const char *summary;
} command;

static const command commands[] = {
    {"merge", hmampi_cmd_merge, "one merge split over the ranks (the arguments of 'hma merge')"},
    {"search", hmampi_cmd_search, "hma search, each batch's candidates scored on different ranks"},
};

static void print_help(FILE *f) {
    fprintf(f, "usage: mpirun -np N hma-mpi COMMAND [ARGS...]   (libhma %s)\n\ncommands:\n", hma_version_string());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nSee docs/scale-out.md.\n");
}

int main(int argc, char **argv) {
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
        fprintf(stderr, "hma-mpi: MPI_Init failed\n");
        return 1;
    }
    int rank = 0, world = 1, rc = 2;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    const command *cmd = NULL;
    for (size_t i = 0; argc >= 2 && i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) cmd = &commands[i];
    if (cmd) {
        rc = cmd->fn(argc - 1, argv + 1, rank, world);
    } else if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        if (rank == 0) print_help(stdout);
        rc = 0;
    } else if (rank == 0) {
        if (argc >= 2) fprintf(stderr, "hma-mpi: unknown command '%s'\n", argv[1]);
        print_help(stderr);
    }
    MPI_Finalize();
    return rc;
}
