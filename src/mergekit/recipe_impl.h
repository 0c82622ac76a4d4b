/*
 * recipe_impl.h - struct hma_recipe (internal): a parsed recipe and, once
 * resolved, its open models and its output tensors with every source and
 * every evaluated parameter. Shared by recipe_api.c (public functions),
 * recipe_layout.c (resolve: open, plan, evaluate, validate) and
 * recipe_run.c (the merge).
 */
#ifndef HMA_MERGEKIT_RECIPE_IMPL_H
#define HMA_MERGEKIT_RECIPE_IMPL_H

#include "internal.h"
#include "mergekit/mk.h"
#include "mergekit/recipe_config.h"

/* One source of an output tensor: an input tensor of one model. */
typedef struct hma__rsrc {
    size_t model;        /* index into hma_recipe.models */
    const hma_tensor *t; /* the input tensor (owned by the model's store) */
} hma__rsrc;

/* One output tensor. */
typedef struct hma__rout {
    char *name;      /* output name (layer renumbered) */
    hma_dtype dtype; /* output dtype */
    unsigned ndim;
    uint64_t shape[HMA_MAX_DIMS];
    uint64_t n;        /* elements of the output */
    uint64_t rows_all; /* rows merged by the method: shape[0], or the common
                        * rows of a vocabulary mismatch (the rest copied) */
    int vocab;         /* 1: sources differ in dim 0 (issue item 4) */
    double t;          /* position in the slice's gradient */
    long layer;        /* output layer, -1 outside the layers */
    size_t slice;      /* the slice whose parameters and sources it uses */
    size_t n_src;
    hma__rsrc *src;     /* n_src, mergekit's order (the base among them) */
    long base;          /* index of the base in src, or -1 */
    hma__mk_pv *pv;     /* n_src per-model values */
    hma__mk_pv global;  /* global values */
} hma__rout;

/* One distinct model string of the recipe. */
typedef struct hma__rmodel {
    char *path;      /* as written */
    int line;        /* recipe line of its first mention */
    hma_store *store;
    long layers;     /* 1 + largest layer number of its tensors (0: none) */
} hma__rmodel;

struct hma_recipe {
    hma__rcfg *cfg;
    const hma__mk_info *mi;
    int resolved;

    hma__rmodel *models;
    size_t n_models;

    hma__rout *out;
    size_t n_out;
    uint64_t max_n;   /* elements of the largest output tensor */
    long out_layers;  /* layers of the output */
    size_t cfg_model; /* model whose config.json and tokenizer go with a folder output */

    char **notes; /* notes of resolve (the parser's are cfg->notes) */
    size_t n_notes, cap_notes;

    char **mkeys, **mvals; /* hma_recipe_set_metadata */
    size_t nmeta;

    /* Tests only (tests/internal): prepare every tensor ahead before the
     * first merge, as if the output's reservation never ended (recipe_run.c
     * runs the lookahead only while it lasts, which a small test output
     * does not make long). */
    int lookahead_all;
};

/* recipe_layout.c */
int hma__recipe_resolve(hma_recipe *r);
/* Drop what resolve made (models, outputs, its notes): back to parsed. */
void hma__recipe_unresolve(hma_recipe *r);
/* Append a note (printf-style). HMA_OK or HMA_ERR_NO_MEMORY. */
int hma__recipe_note(hma_recipe *r, const char *fmt, ...) HMA_PRINTF(2, 3);
/* A vocabulary mismatch: rows [row, hma__rout_extra_end(o, row)) of the
 * output (row >= o->rows_all) are copied from source
 * hma__rout_extra_source(o, row): the base when it has them, else the
 * first source in order that has them. */
size_t hma__rout_extra_source(const hma__rout *o, uint64_t row);
uint64_t hma__rout_extra_end(const hma__rout *o, uint64_t row);
/* The recipe's name in messages ("recipe.yml"). */
const char *hma__recipe_src(const hma_recipe *r);

/* recipe_run.c */
int hma__recipe_run(hma_recipe *r, const char *out_path, const hma_recipe_options *o);

#endif /* HMA_MERGEKIT_RECIPE_IMPL_H */
