/*
 * groups.h - layer grouping (internal): layer detection by name family,
 * group specs ("all", "blocks:K", "split:..", "layers"), name-rule matching
 * and gradients. The public wrappers live in groups.c too (declared in include/hma.h).
 */
#ifndef HMA_GROUPS_H
#define HMA_GROUPS_H

#include "internal.h"


typedef enum hma__gkind { HMA__G_ALL = 0, HMA__G_BLOCKS = 1, HMA__G_SPLIT = 2, HMA__G_LAYERS = 3 } hma__gkind;

#define HMA__MAX_GROUPS 65536u

typedef struct hma__groupspec {
    hma__gkind kind;
    size_t k;       /* blocks:K */
    size_t nsplit;  /* split: number of split points */
    long *splits;   /* split points, strictly increasing */
    char *text;     /* the spec as given */
} hma__groupspec;

/* Parse `spec`; on success *gs owns new memory (free with hma__groupspec_free).
 * Returns HMA_ERR_INVALID_ARGUMENT with a message naming the spec. */
/* hma_layer_from_name(), and where the number is: name[*pos, *pos + *len)
 * holds its digits (pos, len may be NULL; set only when the result is >= 0).
 * The recipe layer renumbers output layers with it. */
long hma__layer_span(const char *name, size_t *pos, size_t *len);
int hma__groupspec_parse(const char *spec, hma__groupspec *gs);
void hma__groupspec_free(hma__groupspec *gs);
/* Number of groups for L layers (>= 1). */
size_t hma__groupspec_count(const hma__groupspec *gs, long L);
/* Group of layer `layer` (0 <= layer < L). */
size_t hma__groupspec_group(const hma__groupspec *gs, long L, long layer);

/* 1 if rule `pattern` matches `name`: glob ('*', '?') over the whole name
 * when the pattern contains either, else substring. */
int hma__rule_match(const char *pattern, const char *name);

#endif /* HMA_GROUPS_H */
