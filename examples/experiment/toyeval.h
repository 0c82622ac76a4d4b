/*
 * experiment/toyeval.h - the toy-llama evaluator shared by `hma eval`
 * (cli/eval.c) and the search driver (search.c): load a toyllm model from a
 * checkpoint or from a merge plan in memory, pick an evenly spaced subset of
 * eval.bin, and score it in bits per byte.
 */
#ifndef EXP_TOYEVAL_H
#define EXP_TOYEVAL_H

#include <hma.h>

#include "toyllm.h"

/* Rows of eval.bin chosen for scoring: `rows` rows of each set, copied one
 * after the other (code and prose, L bytes a row). */
typedef struct exp_rows {
    unsigned rows, L;
    unsigned char *code, *prose;
} exp_rows;

/* Choose `rows` rows of each set of `es` (0 or more than es->n: all), evenly
 * spaced: row j is es row floor(j * n / rows). The same `rows` always gives
 * the same rows. */
int exp_rows_pick(exp_rows *out, const toyllm_evalset *es, unsigned rows);
/* Free the copied rows and zero *r; NULL is fine. */
void exp_rows_free(exp_rows *r);

/* Every function below returns 0 on success; on failure a nonzero code and
 * a one-line message that exp_error() returns (valid until the next
 * failing call; these helpers are meant for one thread at a time). */
const char *exp_error(void);

/* Print "hma CMD: MESSAGE" to stderr and return 1 (the exit status). */
int exp_fail(const char *cmd);

/* Load the model from a checkpoint (F32, F16 or BF16 tensors). */
int exp_load_store(toyllm **out, const hma_store *st);

/* Load the model merged in memory by `plan` with its current weights: each
 * tensor is merged by hma_plan_merge_tensor() into the plan's output dtype
 * (set BF16 to score exactly what a saved merge would hold) and converted to
 * float32. No file is written. */
int exp_load_plan(toyllm **out, hma_plan *plan);

/* Score `r` with `threads` workers: s[0] = code bits/byte (forgetting),
 * s[1] = prose bits/byte (alignment). */
int exp_score(const toyllm *m, const exp_rows *r, int threads, double s[2]);

/* The eval.bin beside `model_path` (its folder, or the folder itself when
 * model_path is a folder); malloc'd, NULL on allocation failure. */
char *exp_default_eval(const char *model_path);

/* Seconds on a monotonic clock. */
double exp_now(void);

#endif /* EXP_TOYEVAL_H */
