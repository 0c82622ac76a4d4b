/*
 * recipe.c - the "hma_recipe" __metadata__ entry of a merged checkpoint: a
 * JSON object saying what was merged, how, and with which weights.
 */
#include "merge/plan.h"

#include "text/strbuf.h"

#include <string.h>

static const char *method_name(hma_method m) {
    return m == HMA_METHOD_TASK_ARITHMETIC ? "task_arithmetic" : m == HMA_METHOD_SLERP ? "slerp" : "linear";
}

static void sb_doubles(hma__strbuf *sb, const double *v, size_t n) {
    hma__sb_putc(sb, '[');
    for (size_t i = 0; i < n; i++) hma__sb_printf(sb, "%s%.17g", i ? "," : "", v[i]);
    hma__sb_putc(sb, ']');
}

char *hma__plan_recipe(const hma_plan *p, const double *W, const double *mean, int ratio_mode,
                       const double *ratios, uint64_t gen) {
    hma__strbuf sb;
    hma__sb_init(&sb);
    hma__sb_printf(&sb, "{\"libhma\":\"%s\",\"method\":\"%s\",\"normalize\":%s,\"base\":%zu,\"inputs\":[",
                   hma_version_string(), method_name(p->method), p->normalize ? "true" : "false", p->base);
    for (size_t j = 0; j < p->n_in; j++) {
        if (j) hma__sb_putc(&sb, ',');
        const char *s = hma__plan_input_path(p, j);
        hma__sb_json_string(&sb, s, strlen(s));
    }
    hma__sb_printf(&sb, "],\"layers\":%ld,\"groups\":", p->L);
    hma__sb_json_string(&sb, p->gs.text, strlen(p->gs.text));
    hma__sb_printf(&sb, ",\"group_count\":%zu,\"rules\":[", p->K);
    for (size_t k = 0; k < p->n_rules; k++) {
        hma__sb_puts(&sb, k ? ",{\"pattern\":" : "{\"pattern\":");
        hma__sb_json_string(&sb, p->rules[k].pattern, strlen(p->rules[k].pattern));
        if (p->rules[k].group == HMA_GROUP_MEAN)
            hma__sb_puts(&sb, ",\"group\":\"mean\"}");
        else
            hma__sb_printf(&sb, ",\"group\":%d}", p->rules[k].group);
    }
    hma__sb_puts(&sb, "],\"weights\":[");
    for (size_t k = 0; k < p->K; k++) {
        if (k) hma__sb_putc(&sb, ',');
        sb_doubles(&sb, W + k * p->n_in, p->n_in);
    }
    hma__sb_putc(&sb, ']');
    if (ratio_mode) {
        hma__sb_puts(&sb, ",\"ratios\":");
        sb_doubles(&sb, ratios, p->K);
    }
    hma__sb_puts(&sb, ",\"mean_weights\":");
    sb_doubles(&sb, mean, p->n_in);
    hma__sb_printf(&sb, ",\"generation\":%llu,\"output_dtype\":\"%s\",\"copy_unmatched\":%ld,\"allow_nonfinite\":%s}",
                   (unsigned long long)gen,
                   p->out_dtype == HMA_DTYPE_COUNT ? "input0" : hma_dtype_name(p->out_dtype),
                   p->copy_from == HMA_NPOS ? -1L : (long)p->copy_from, /* -1 = off, as before 1.0 */
                   (p->flags & HMA_MERGE_ALLOW_NONFINITE) ? "true" : "false");
    return hma__sb_detach(&sb, NULL);
}

