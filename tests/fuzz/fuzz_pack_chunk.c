/*
 * fuzz_pack_chunk.c - libFuzzer target: the delta-pack chunk decoder
 * (hma__pc_decode in src/pack/codec.c) on raw payloads, below the pack's
 * checksums (which otherwise stop almost every mutated payload before it is
 * decoded). Input: u8 method, u8 layout (index into fz_chunk_layouts), u8
 * flags (bit 0: give a base), u16 LE raw size n, then the payload.
 * Decoding must either fail with HMA_ERR_CORRUPT or succeed; then encoding
 * the result with the same method must decode back to it. Every buffer is
 * allocated to its exact size so ASan sees any access outside it.
 */
#include "fuzz_common.h"

#include "internal.h"
#include "pack/codec.h"

#define MAX_RAW 65536u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static hma__pc_ctx *ctx;
    if (!ctx) FZ_CHECK(hma__pc_ctx_new(&ctx, MAX_RAW) == HMA_OK); /* kept for the run */
    if (size < 5) return 0;
    int method = data[0];
    size_t lay = data[1] % FZ_N_LAYOUTS;
    hma__pc_fmt fmt = {fz_chunk_layouts[lay][0], fz_chunk_layouts[lay][1]};
    int with_base = data[2] & 1;
    size_t n = (size_t)data[3] | (size_t)data[4] << 8;
    n -= n % fmt.esize; /* the pack reader only asks for whole elements */
    const uint8_t *payload = data + 5;
    size_t plen = size - 5;

    uint8_t *src = malloc(plen ? plen : 1);
    uint8_t *base = malloc(n ? n : 1);
    uint8_t *dst = malloc(n ? n : 1);
    FZ_CHECK(src && base && dst);
    if (plen) memcpy(src, payload, plen);
    fz_chunk_bytes(base, n, lay, 0.0);
    const char *why = NULL;
    int rc = hma__pc_decode(ctx, method, fmt, src, plen, with_base ? base : NULL, dst, n, &why);
    FZ_CHECK(why != NULL);
    if (rc) {
        FZ_CHECK(rc == HMA_ERR_CORRUPT && why[0]);
    } else {
        /* round trip: encoding the decoded bytes the same way decodes back to them */
        size_t cap = hma__pc_bound(n), elen = 0;
        uint8_t *enc = malloc(cap ? cap : 1), *back = malloc(n ? n : 1);
        FZ_CHECK(enc && back);
        int used = -1;
        FZ_CHECK(hma__pc_encode(ctx, method, fmt, dst, with_base ? base : NULL, n, 1, enc, cap, &elen, &used) ==
                 HMA_OK);
        FZ_CHECK(hma__pc_decode(ctx, used, fmt, enc, elen, with_base ? base : NULL, back, n, &why) == HMA_OK);
        FZ_CHECK(n == 0 || memcmp(back, dst, n) == 0);
        free(enc);
        free(back);
    }
    free(src);
    free(base);
    free(dst);
    return 0;
}
