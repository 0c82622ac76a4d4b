/*
 * recipe_config.h - a mergekit recipe as written (internal): the YAML/JSON
 * text parsed into a checked configuration, and mergekit's parameter lookup
 * over it. No model is opened here (recipe_layout.c does that).
 *
 *   yaml_tree.c       libyaml events -> a small node tree with line numbers
 *   recipe_config.c   node tree -> hma__rcfg (keys, types, values checked)
 *   recipe_params.c   settings: numbers, gradients, filter lists; lookup
 *
 * mergekit's rules: mergekit/config.py (evaluate_setting, ConfigReader.parameter).
 */
#ifndef HMA_MERGEKIT_RECIPE_CONFIG_H
#define HMA_MERGEKIT_RECIPE_CONFIG_H

#include "internal.h"

/* ---- yaml_tree.c ---- */
typedef enum hma__ynode_kind { HMA__Y_SCALAR = 0, HMA__Y_SEQ = 1, HMA__Y_MAP = 2 } hma__ynode_kind;

typedef struct hma__ynode {
    hma__ynode_kind kind;
    int line;                  /* 1-based line of the node's first character */
    char *str;                 /* scalar text (NUL-terminated), NULL otherwise */
    int quoted;                /* scalar was quoted ('x' or "x"): never a number/bool/null */
    struct hma__ynode **items; /* SEQ: items; MAP: values */
    char **keys;               /* MAP: keys (scalars only; duplicates are refused) */
    int *key_lines;            /* MAP: the line of each key */
    size_t n;
} hma__ynode;

/*
 * Parse YAML 1.1 text (JSON is accepted: it is YAML) with libyaml into a
 * tree. One document; anchors/aliases and tags other than the core ones are
 * refused; map keys must be scalars and unique. Depth is capped at 64.
 * `what` names the text in messages ("recipe.yml:LINE: ...").
 * Returns HMA_OK, HMA_ERR_RECIPE or HMA_ERR_NO_MEMORY.
 */
int hma__yaml_parse(const char *text, size_t len, const char *what, hma__ynode **out);
void hma__ynode_free(hma__ynode *n);
/* At most 60 bytes of user text, control bytes replaced by '?' (and "..."
 * when cut), in buf: recipe messages stay one short line. Returns buf. */
const char *hma__yclean(const char *s, char buf[72]);

/* How PyYAML's safe_load (YAML 1.1, what mergekit reads recipes with) types
 * a scalar. A quoted scalar (or one tagged !!str) is always a string. */
typedef enum hma__ytype {
    HMA__YT_STR = 0, /* a string */
    HMA__YT_NULL,    /* ~ null Null NULL, or nothing */
    HMA__YT_BOOL,    /* true/false, yes/no, on/off (lower, Capitalised, UPPER) */
    HMA__YT_INT,     /* 12, +1_000, 0b101, 0x1F, 017 (octal), 1:30 (base 60) */
    HMA__YT_FLOAT    /* 0.5, 1.e+3, .5, 1:30.5, .inf, -.Inf, .nan */
} hma__ytype;

typedef struct hma__yscalar {
    hma__ytype type;
    double num;     /* BOOL (0 or 1), INT, FLOAT; a STR with numeric = 1 */
    long long ival; /* INT, when int_ok (it fits) */
    int int_ok;
    /* A plain STR that Python's float() reads (1e-5, 1.0e5, -.5: strings to
     * PyYAML, whose floats need a dot and a signed exponent); mergekit's
     * pydantic fields turn them into floats where a number goes. */
    int numeric;
} hma__yscalar;

/* The type and value of scalar n (a non-scalar gives STR). */
void hma__yscalar_type(const hma__ynode *n, hma__yscalar *out);

/* ---- recipe_config.c ---- */

/* A parameter setting (mergekit's ParameterSetting). */
typedef enum hma__rs_kind {
    HMA__RS_NUMBER = 0,   /* a number or a boolean (true = 1) */
    HMA__RS_GRADIENT = 1, /* a list of numbers: anchors */
    HMA__RS_FILTERS = 2   /* a list of {filter, value}; value a number or gradient */
} hma__rs_kind;

typedef struct hma__rsetting hma__rsetting;
typedef struct hma__rfilter {
    char *filter; /* NULL (absent) or "*" match every tensor */
    hma__rsetting *value;
    int line;
} hma__rfilter;

struct hma__rsetting {
    hma__rs_kind kind;
    int line;
    double num;          /* NUMBER */
    double *anchors;     /* GRADIENT */
    size_t n_anchors;
    hma__rfilter *filters; /* FILTERS, in order */
    size_t n_filters;
};

typedef struct hma__rparam {
    char *name; /* a name the method takes (checked at parse time) */
    int line;
    hma__rsetting s;
} hma__rparam;

typedef struct hma__rparams {
    hma__rparam *p;
    size_t n;
} hma__rparams;

typedef struct hma__rsource {
    char *model; /* as written */
    int line;
    int has_range;  /* slices: layer_range given (always, for slices) */
    long lr0, lr1;  /* [lr0, lr1) */
    hma__rparams params;
} hma__rsource;

typedef struct hma__rslice {
    hma__rsource *src;
    size_t n_src;
    char *base_model; /* slice's own base_model, or NULL */
    int line;
    hma__rparams params;
} hma__rslice;

typedef struct hma__rcfg {
    char *source_name; /* for messages: the file path or the caller's name */
    char *text;        /* the recipe as given (NUL-terminated copy) */
    size_t text_len;
    char *method;      /* merge_method (a known method) */
    int method_line;
    char *base_model;  /* NULL if absent */
    int base_line;
    int use_slices;    /* 0: written as `models:`, 1: as `slices:` */
    /* Always slices: a `models:` recipe becomes one slice whose sources are
     * the models (has_range 0: all layers) followed, when base_model is not
     * among them, by base_model without parameters (mergekit's
     * normalize_config in mergekit/plan.py). */
    hma__rslice *slices;
    size_t n_slices;
    hma__rparams params; /* global `parameters:` */
    hma_dtype dtype;     /* `dtype:` or HMA_DTYPE_COUNT when absent */
    hma_dtype out_dtype; /* `out_dtype:` or HMA_DTYPE_COUNT */
    int dtype_line, out_dtype_line;
    int has_tokenizer;   /* tokenizer_source or tokenizer given */
    char *tokenizer_source; /* "base", "union" or a model, NULL */
    char *chat_template;    /* NULL if absent */
    /* Warnings found while parsing, e.g. "recipe.yml:7: parameter 'weight'
     * is not used by slerp; ignored, as mergekit does". A name that no
     * method takes is an error instead (a typo). */
    char **notes;
    size_t n_notes;
} hma__rcfg;

/*
 * Parse and check a recipe: the keys of mergekit's MergeConfiguration
 * (merge_method, base_model, models, slices, parameters, dtype, out_dtype,
 * tokenizer_source, tokenizer, chat_template; `modules` is refused as
 * unsupported), exactly one of models/slices, a known merge_method,
 * parameter names the method takes, numbers where numbers go, layer_range
 * [a, b] with 0 <= a < b, dtype names of mergekit (float32, float16,
 * bfloat16, float64 also accepted as F32 F16 BF16 F64). Every error names
 * "SOURCE:LINE: key: problem". Returns HMA_OK, HMA_ERR_RECIPE,
 * HMA_ERR_NO_MEMORY.
 */
int hma__rcfg_parse(const char *text, size_t len, const char *source_name, hma__rcfg **out);
void hma__rcfg_free(hma__rcfg *c);

/* ---- recipe_params.c ---- */
/*
 * mergekit's evaluate_setting: a number is itself; a gradient is
 * interpolated at t (x = t (len - 1), i0 = (int)x, i1 = min(len - 1, i0 + 1),
 * f = x - i0, (1 - f) g[i0] + f g[i1], in double); a filter list takes the
 * first entry whose filter is absent, "*", or a substring of tensor_name.
 * Returns 1 with *v set, 0 when a filter list matches nothing.
 */
int hma__rsetting_eval(const hma__rsetting *s, const char *tensor_name, double t, double *v);

/*
 * mergekit's ConfigReader.parameter without the default: the value of
 * parameter `name` for `model` (NULL for a global parameter) in slice
 * `slice` (an index into cfg->slices), looking at: the slice's
 * sources whose model string equals `model` (in order), the slice's
 * parameters, the global parameters; each level is skipped when it has no
 * entry or its entry evaluates to nothing. Returns 1 with *v (and *line,
 * may be NULL, the line of the setting used) set, 0 when no level gives a
 * value.
 */
int hma__rcfg_param(const hma__rcfg *cfg, size_t slice, const char *model, const char *name,
                    const char *tensor_name, double t, double *v, int *line);

#endif /* HMA_MERGEKIT_RECIPE_CONFIG_H */
