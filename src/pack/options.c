/*
 * options.c - the options and stats structs of the pack calls: their
 * _init() functions, struct_size versioning (hma__opts_in/hma__stats_out)
 * and the checks of every option.
 */
#include "pack/pack.h"

#include <string.h>
#include <time.h>

/* Every field after struct_size defaults to 0, so any older (shorter)
 * struct is meaningful: the smallest accepted holds struct_size alone. */
#define PACK_OPTIONS_MIN sizeof(size_t)
#define PACK_STATS_MIN sizeof(size_t)

void hma_pack_options_init_size(hma_pack_options *opt, size_t size) {
    hma_pack_options d;
    memset(&d, 0, sizeof d);
    hma__init_size(opt, size, &d, sizeof d);
}

void hma_pack_stats_init_size(hma_pack_stats *stats, size_t size) {
    hma_pack_stats d;
    memset(&d, 0, sizeof d);
    hma__init_size(stats, size, &d, sizeof d);
}

int hma__pk_options(const hma_pack_options *in, hma_pack_options *o, const hma_pack_stats *stats, const char *fn) {
    hma_pack_options_init(o);
    int rc = hma__opts_in(o, sizeof *o, in, PACK_OPTIONS_MIN, fn, "hma_pack_options");
    if (rc) return rc;
    if (stats) {
        /* Check the caller's stats struct now (into a probe, not the
         * caller's struct), so that a bad one fails before any work. */
        hma_pack_stats probe, zero;
        hma_pack_stats_init(&zero);
        memset(&probe, 0, sizeof probe);
        probe.struct_size = stats->struct_size;
        rc = hma__stats_out(&probe, &zero, sizeof zero, PACK_STATS_MIN, fn, "hma_pack_stats");
        if (rc) return rc;
    }
    if (o->level == 0) o->level = HMA_PACK_DEFAULT_LEVEL;
    if (o->level < -131072 || o->level > 22)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: level %d (expected -131072..22, 0 for the default)", fn, o->level);
    if (o->chunk_size == 0) o->chunk_size = HMA_PACK_DEFAULT_CHUNK;
    if (o->chunk_size < HMA_PACK_MIN_CHUNK || o->chunk_size > HMA_PACK_MAX_CHUNK || o->chunk_size % 8)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT, "%s: chunk_size %llu (expected a multiple of 8 in [%u, %u])", fn,
                         (unsigned long long)o->chunk_size, HMA_PACK_MIN_CHUNK, HMA_PACK_MAX_CHUNK);
    return HMA_OK;
}

void hma__pk_stats_put(hma_pack_stats *dst, const hma_pack_stats *src, const char *fn) {
    /* Cannot fail: hma__pk_options() checked dst's struct_size. */
    (void)hma__stats_out(dst, src, sizeof *src, PACK_STATS_MIN, fn, "hma_pack_stats");
}

double hma__pk_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
