/*
 * experiment/plot.c - SVG writer of plot.h: linear axes with 1-2-5 "nice"
 * ticks, markers, polylines, point labels and a legend box.
 */
#include "plot.h"

#include <math.h>
#include <stdio.h>

#define W 760.0
#define H 560.0
#define ML 80.0  /* left margin: y tick labels and axis title */
#define MR 30.0
#define MT 50.0  /* title */
#define MB 70.0  /* x tick labels and axis title */
#define PLOT_PI 3.14159265358979323846

static void put_escaped(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* Tick step: 1, 2 or 5 times a power of ten, giving about 6 ticks over span. */
static double nice_step(double span) {
    double raw = span / 6.0, p = pow(10.0, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1.0 : m < 3.5 ? 2.0 : m < 7.5 ? 5.0 : 10.0) * p;
}

typedef struct {
    double lo, hi, step;
} axis;

static axis make_axis(double lo, double hi) {
    axis a;
    if (!(hi > lo)) { /* one value or none: open a small window around it */
        double c = isfinite(lo) ? lo : 0.0, d = fabs(c) > 0 ? fabs(c) * 0.01 : 1.0;
        lo = c - d;
        hi = c + d;
    }
    double pad = (hi - lo) * 0.06;
    lo -= pad;
    hi += pad;
    a.step = nice_step(hi - lo);
    a.lo = floor(lo / a.step) * a.step;
    a.hi = ceil(hi / a.step) * a.step;
    return a;
}

/* Decimals needed to print multiples of step exactly enough. */
static int tick_decimals(double step) {
    int d = (int)ceil(-log10(step) - 1e-9);
    return d < 0 ? 0 : d > 8 ? 8 : d;
}

static void marker(FILE *f, exp_mark m, double x, double y, const char *color) {
    const double r = 4.5;
    switch (m) {
    case EXP_MARK_SQUARE:
        fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\" stroke=\"black\" stroke-width=\"0.8\"/>\n",
                x - r, y - r, 2 * r, 2 * r, color);
        break;
    case EXP_MARK_DIAMOND:
        fprintf(f, "<polygon points=\"%.2f,%.2f %.2f,%.2f %.2f,%.2f %.2f,%.2f\" fill=\"%s\" stroke=\"black\" stroke-width=\"0.8\"/>\n",
                x, y - 1.4 * r, x + 1.4 * r, y, x, y + 1.4 * r, x - 1.4 * r, y, color);
        break;
    case EXP_MARK_TRIANGLE:
        fprintf(f, "<polygon points=\"%.2f,%.2f %.2f,%.2f %.2f,%.2f\" fill=\"%s\" stroke=\"black\" stroke-width=\"0.8\"/>\n",
                x, y - 1.5 * r, x + 1.3 * r, y + r, x - 1.3 * r, y + r, color);
        break;
    case EXP_MARK_STAR: {
        fprintf(f, "<polygon points=\"");
        for (int i = 0; i < 10; i++) {
            double ang = -PLOT_PI / 2 + i * PLOT_PI / 5, rr = i % 2 ? 0.45 * 1.8 * r : 1.8 * r;
            fprintf(f, "%s%.2f,%.2f", i ? " " : "", x + rr * cos(ang), y + rr * sin(ang));
        }
        fprintf(f, "\" fill=\"%s\" stroke=\"black\" stroke-width=\"0.8\"/>\n", color);
        break;
    }
    default:
        fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\" fill=\"%s\" stroke=\"black\" stroke-width=\"0.8\"/>\n", x, y, r,
                color);
    }
}

int exp_plot_svg(const char *path, const char *title, const char *xlabel, const char *ylabel,
                 const exp_plot_series *series, size_t n_series) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (size_t s = 0; s < n_series; s++)
        for (size_t i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            xmin = fmin(xmin, x), xmax = fmax(xmax, x), ymin = fmin(ymin, y), ymax = fmax(ymax, y);
        }
    axis ax = make_axis(xmin, xmax), ay = make_axis(ymin, ymax);
    const double pw = W - ML - MR, ph = H - MT - MB;
#define PX(v) (ML + ((v) - ax.lo) / (ax.hi - ax.lo) * pw)
#define PY(v) (MT + ph - ((v) - ay.lo) / (ay.hi - ay.lo) * ph)

    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n",
            W, H, W, H, W, H);
    fprintf(f, "<text x=\"%.1f\" y=\"28\" text-anchor=\"middle\" font-size=\"15\">", W / 2);
    put_escaped(f, title);
    fputs("</text>\n", f);

    /* grid, ticks and tick labels */
    int dx = tick_decimals(ax.step), dy = tick_decimals(ay.step);
    for (int i = 0;; i++) {
        double v = ax.lo + i * ax.step;
        if (v > ax.hi + ax.step * 1e-6) break;
        double px = PX(v);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#e4e4e4\"/>\n", px, MT, px, MT + ph);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"black\"/>\n", px, MT + ph, px, MT + ph + 5);
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%.*f</text>\n", px, MT + ph + 19, dx, v);
    }
    for (int i = 0;; i++) {
        double v = ay.lo + i * ay.step;
        if (v > ay.hi + ay.step * 1e-6) break;
        double py = PY(v);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#e4e4e4\"/>\n", ML, py, ML + pw, py);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"black\"/>\n", ML - 5, py, ML, py);
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">%.*f</text>\n", ML - 8, py + 4, dy, v);
    }
    fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" stroke=\"black\"/>\n", ML, MT, pw, ph);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" font-size=\"13\">", ML + pw / 2, H - 22);
    put_escaped(f, xlabel);
    fprintf(f, "</text>\n<text x=\"18\" y=\"%.2f\" text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 18 %.2f)\">",
            MT + ph / 2, MT + ph / 2);
    put_escaped(f, ylabel);
    fputs("</text>\n", f);

    /* series: lines first, then markers and labels on top */
    for (size_t s = 0; s < n_series; s++) {
        const exp_plot_series *sr = &series[s];
        if (!sr->line || sr->n < 2) continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" points=\"", sr->color);
        int first = 1;
        for (size_t i = 0; i < sr->n; i++) {
            if (!isfinite(sr->x[i]) || !isfinite(sr->y[i])) continue;
            fprintf(f, "%s%.2f,%.2f", first ? "" : " ", PX(sr->x[i]), PY(sr->y[i]));
            first = 0;
        }
        fputs("\"/>\n", f);
    }
    for (size_t s = 0; s < n_series; s++) {
        const exp_plot_series *sr = &series[s];
        for (size_t i = 0; i < sr->n; i++) {
            if (!isfinite(sr->x[i]) || !isfinite(sr->y[i])) continue;
            double px = PX(sr->x[i]), py = PY(sr->y[i]);
            marker(f, sr->mark, px, py, sr->color);
            if (sr->labels && sr->labels[i]) {
                fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"10\" fill=\"%s\">", px + 7,
                        sr->label_below ? py + 15 : py - 6, sr->label_below ? sr->color : "#333");
                put_escaped(f, sr->labels[i]);
                fputs("</text>\n", f);
            }
        }
    }

    /* legend, top right inside the plot */
    double lw = 0;
    size_t n_leg = 0; /* series with points get a legend entry */
    for (size_t s = 0; s < n_series; s++) n_leg += series[s].n > 0;
    for (size_t s = 0; s < n_series; s++) {
        size_t len = 0;
        for (const char *c = series[s].name; c && *c; c++) len++;
        lw = fmax(lw, 7.0 * (double)len);
    }
    /* the corner whose box covers the fewest points and line samples */
    double bw = lw + 36, bh = 20.0 * (double)n_leg + 8, lx = 0, ly = 0;
    long best = -1;
    for (int corner = 0; corner < 4; corner++) {
        double cx = corner & 1 ? ML + 10 : ML + pw - bw - 10, cy = corner & 2 ? MT + ph - bh - 10 : MT + 10;
        long hits = 0;
        for (size_t s = 0; s < n_series; s++) {
            const exp_plot_series *sr = &series[s];
            for (size_t i = 0; i < sr->n; i++) {
                int steps = sr->line && i + 1 < sr->n ? 20 : 1;
                for (int j = 0; j < steps; j++) {
                    double t = (double)j / steps, x0 = sr->x[i], y0 = sr->y[i];
                    double x = j ? x0 + t * (sr->x[i + 1] - x0) : x0, y = j ? y0 + t * (sr->y[i + 1] - y0) : y0;
                    if (!isfinite(x) || !isfinite(y)) continue;
                    double px = PX(x), py = PY(y);
                    if (px > cx - 8 && px < cx + bw + 8 && py > cy - 8 && py < cy + bh + 8) hits += j ? 1 : 20;
                }
            }
        }
        if (best < 0 || hits < best) best = hits, lx = cx, ly = cy;
    }
    fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"white\" fill-opacity=\"0.9\" stroke=\"#999\"/>\n",
            lx, ly, bw, bh);
    for (size_t s = 0, e = 0; s < n_series; s++) {
        if (!series[s].n) continue;
        double yy = ly + 16 + 20.0 * (double)e++;
        if (series[s].line)
            fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" stroke-width=\"1.8\"/>\n", lx + 6,
                    yy, lx + 26, yy, series[s].color);
        marker(f, series[s].mark, lx + 16, yy, series[s].color);
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\">", lx + 32, yy + 4);
        put_escaped(f, series[s].name);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
#undef PX
#undef PY
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return -1;
    return 0;
}
