/*
 * mpi/hmampi.h - the `hma-mpi` program: hma commands run as one MPI job
 * (mpirun -np N hma-mpi COMMAND ARGS, or srun). main.c initializes MPI and
 * calls  int hmampi_cmd_<name>(int argc, char **argv, int rank, int world)
 * with argv[0] = the command name, on every rank; each rank returns its
 * exit status (0 success, 1 error, 2 bad usage), and every rank must return
 * nonzero when the command failed anywhere. To add a command, write mpi/<name>.c, declare its function here and add one row
 * to the table in mpi/main.c. The library itself never links MPI: only
 * this program does.
 */
#ifndef HMAMPI_H
#define HMAMPI_H

int hmampi_cmd_merge(int argc, char **argv, int rank, int world);  /* mpi/merge.c */
int hmampi_cmd_search(int argc, char **argv, int rank, int world); /* mpi/search.c */

#endif
