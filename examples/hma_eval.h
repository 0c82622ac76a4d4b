/*
 * hma_eval.h - the toy-llama scoring helpers shared by `hma eval`
 * (hma_eval.c) and `hma search` (hma_search.c): load a toyllm model from a
 * checkpoint or from a merge plan in memory, pick an evenly spaced subset of
 * eval.bin, and score it in bits per byte.
 */
#ifndef HMA_EVAL_H
#define HMA_EVAL_H

#include <hma.h>

#include "toyllm.h"

/* Rows of eval.bin chosen for scoring: `rows` rows of each set, copied one
 * after the other (code and prose, L bytes a row). */
typedef struct hma_toy_rows {
    unsigned rows, L;
    unsigned char *code, *prose;
} hma_toy_rows;

/* Choose `rows` rows of each set of `es` (0 or more than es->n: all), evenly
 * spaced: row j is es row floor(j * n / rows). The same `rows` always gives
 * the same rows. */
int hma_toy_rows_pick(hma_toy_rows *out, const toyllm_evalset *es, unsigned rows);
/* Free the copied rows and zero *r; NULL is fine. */
void hma_toy_rows_free(hma_toy_rows *r);

/* Every function below returns 0 on success; on failure a nonzero code and
 * a one-line message that hma_toy_error() returns (valid until the next
 * failing call; these helpers are meant for one thread at a time). */
const char *hma_toy_error(void);

/* Print "hma CMD: MESSAGE" to stderr and return 1 (the exit status). */
int hma_toy_fail(const char *cmd);

/* Load the model from a checkpoint (F32, F16 or BF16 tensors). */
int hma_toy_load_store(toyllm **out, const hma_store *st);

/* Load the model merged in memory by `plan` with its current weights: each
 * tensor is merged by hma_plan_merge_tensor() into the plan's output dtype
 * (set BF16 to score exactly what a saved merge would hold) and converted to
 * float32. No file is written. */
int hma_toy_load_plan(toyllm **out, hma_plan *plan);

/* Score `r` with `threads` workers: s[0] = code bits/byte (forgetting),
 * s[1] = prose bits/byte (alignment). */
int hma_toy_score(const toyllm *m, const hma_toy_rows *r, int threads, double s[2]);

/* The eval.bin beside `model_path` (its folder, or the folder itself when
 * model_path is a folder); malloc'd, NULL on allocation failure. */
char *hma_toy_default_eval(const char *model_path);

/* Parse "a" or "a1,a2,...": up to `max` finite doubles; returns the count,
 * 0 on a syntax error (no message set). */
size_t hma_toy_parse_list(const char *s, double *v, size_t max);

/* Seconds on a monotonic clock. */
double hma_toy_now(void);

#endif /* HMA_EVAL_H */
