/*
 * hma_plot.h - a tiny SVG scatter/line plot writer for `hma search`
 * (examples only; no dependency beyond stdio).
 */
#ifndef HMA_PLOT_H
#define HMA_PLOT_H

#include <stddef.h>

typedef enum { HMA_MARK_CIRCLE, HMA_MARK_SQUARE, HMA_MARK_DIAMOND, HMA_MARK_TRIANGLE, HMA_MARK_STAR } hma_mark;

/* One series: n points, drawn as markers, joined by a line when `line`. */
typedef struct hma_plot_series {
    const char *name;          /* legend text (XML-escaped on output) */
    const char *color;         /* an SVG colour, e.g. "#1f77b4" */
    hma_mark mark;
    int line;                  /* 1: join the points in order */
    size_t n;
    const double *x, *y;
    const char *const *labels; /* optional: a short text beside each point (NULL or entries NULL: none) */
    int label_below;           /* 1: labels below-right of the point, 0: above-right */
} hma_plot_series;

/* Write an SVG plot of the series to `path`: axes with "nice" ticks that
 * cover every finite point plus a margin, axis labels, a title and a
 * legend. Non-finite points are skipped. Returns 0, or -1 when the file
 * cannot be written (errno set). */
int hma_plot_svg(const char *path, const char *title, const char *xlabel, const char *ylabel,
                 const hma_plot_series *series, size_t n_series);

#endif /* HMA_PLOT_H */
