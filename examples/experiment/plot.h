/*
 * experiment/plot.h - a tiny SVG scatter/line plot writer for `hma search`
 * (examples only; no dependency beyond stdio).
 */
#ifndef EXP_PLOT_H
#define EXP_PLOT_H

#include <stddef.h>

typedef enum { EXP_MARK_CIRCLE, EXP_MARK_SQUARE, EXP_MARK_DIAMOND, EXP_MARK_TRIANGLE, EXP_MARK_STAR } exp_mark;

/* One series: n points, drawn as markers, joined by a line when `line`. */
typedef struct exp_plot_series {
    const char *name;          /* legend text (XML-escaped on output) */
    const char *color;         /* an SVG colour, e.g. "#1f77b4" */
    exp_mark mark;
    int line;                  /* 1: join the points in order */
    size_t n;
    const double *x, *y;
    const char *const *labels; /* optional: a short text beside each point (NULL or entries NULL: none) */
    int label_below;           /* 1: labels below-right of the point, 0: above-right */
} exp_plot_series;

/* Write an SVG plot of the series to `path`: axes with "nice" ticks that
 * cover every finite point plus a margin, axis labels, a title and a
 * legend. Non-finite points are skipped. Returns 0, or -1 when the file
 * cannot be written (errno set). */
int exp_plot_svg(const char *path, const char *title, const char *xlabel, const char *ylabel,
                 const exp_plot_series *series, size_t n_series);

#endif /* EXP_PLOT_H */
