/*
 * fuzz_pack.c - libFuzzer target: the delta-pack reader. The input is a
 * whole pack file; it is opened with hma_pack_open() against a fixed small
 * base (fz_write_checkpoint(.., 0), the base the seed packs were made
 * against), every tensor is read, and the pack is verified and, when it
 * opened, unpacked and compared with what the pack store served.
 *
 * Before use the input's checksums are recomputed ("resealed"): the fixed
 * header's, the index's and every chunk payload's (walking the index as
 * docs/pack-format.md lays it out). Otherwise nearly every mutation would
 * stop at a checksum, and the fuzzer would never reach the index parser or
 * the chunk decoder. The checksum checks themselves are covered by
 * tests/test_pack.c (every byte flipped). If the layout changes, resealing
 * degrades to fixing less, never to a false finding.
 */
#include "fuzz_common.h"

#include "internal.h"
#include "pack/codec.h"

static hma_store *g_base;
static fz_memfd g_pack;
static char g_out[600];

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void reseal(uint8_t *p, size_t n) {
    if (n < 72) return;
    uint64_t ioff = get64(p + 40), ilen = get64(p + 48);
    if (ioff <= n && ilen <= n - ioff) {
        uint8_t *ix = p + ioff;
        uint64_t pos = 8;
        if (ilen >= 8 && get64(ix) <= ilen - 8) {
            pos += get64(ix);
            if (ilen - pos >= 8) {
                uint64_t nt = get64(ix + pos);
                pos += 8;
                for (uint64_t t = 0; t < nt && ilen - pos >= 16; t++) {
                    uint64_t nc = get64(ix + pos + 8);
                    pos += 16;
                    for (uint64_t c = 0; c < nc && ilen - pos >= 32; c++, pos += 32) {
                        uint8_t *e = ix + pos;
                        uint64_t off = get64(e);
                        uint32_t len = get32(e + 8);
                        if (off <= n && len <= n - off) put64(e + 16, hma__xxh64(p + off, len, 0));
                    }
                }
            }
        }
        put64(p + 56, hma__xxh64(ix, (size_t)ilen, 0));
    }
    put64(p + 64, hma__xxh64(p, 64, 0));
}

static void init(void) {
    if (g_base) return;
    char path[600];
    fz_path(path, sizeof path, "base.safetensors");
    FZ_CHECK(fz_write_checkpoint(path, 0) == HMA_OK);
    FZ_CHECK(hma_store_open(&g_base, path, 0) == HMA_OK); /* open for the whole run */
    fz_path(g_out, sizeof g_out, "unpacked.safetensors");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init();
    uint8_t *buf = malloc(size ? size : 1);
    FZ_CHECK(buf != NULL);
    if (size) memcpy(buf, data, size);
    reseal(buf, size);
    fz_memfd_set(&g_pack, buf, size);
    free(buf);

    int needs = -1;
    int rn = hma_pack_needs_base(g_pack.path, &needs);
    FZ_CHECK(rn != HMA_OK || needs == 0 || needs == 1);

    hma_store *st = NULL;
    int rc = hma_pack_open(&st, g_pack.path, g_base, 0, 1);
    if (rc) {
        FZ_CHECK(st == NULL && hma_last_error()[0] && !strchr(hma_last_error(), '\n'));
        return 0;
    }
    fz_touch_store(st, 1);
    hma_pack_options opt;
    hma_pack_options_init(&opt);
    opt.threads = 1;
    int rv = hma_pack_verify(g_pack.path, g_base, NULL, &opt, NULL);
    int ru = hma_pack_unpack(g_pack.path, g_base, g_out, &opt, NULL);
    FZ_CHECK(rv == ru); /* verify decodes exactly what unpack writes */
    if (ru == HMA_OK) {
        /* the restored file is a valid checkpoint with the same tensors */
        hma_store *u = NULL;
        FZ_CHECK(hma_store_open(&u, g_out, 0) == HMA_OK);
        FZ_CHECK(hma_store_count(u) == hma_store_count(st));
        for (size_t i = 0; i < hma_store_count(u); i++) {
            const hma_tensor *a = hma_store_tensor(u, i), *b = hma_store_tensor(st, i);
            FZ_CHECK(!strcmp(hma_tensor_name(a), hma_tensor_name(b)));
            uint64_t nb = hma_tensor_nbytes(a);
            FZ_CHECK(nb == hma_tensor_nbytes(b));
            const void *pb = hma_tensor_data(b);
            FZ_CHECK(nb == 0 || (pb && !memcmp(hma_tensor_data(a), pb, (size_t)nb)));
        }
        hma_store_close(u);
        unlink(g_out);
    } else {
        FZ_CHECK(access(g_out, F_OK) != 0); /* nothing under the output name */
    }
    hma_store_close(st);
    return 0;
}
