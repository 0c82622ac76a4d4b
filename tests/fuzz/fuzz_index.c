/*
 * fuzz_index.c - libFuzzer target: a sharded checkpoint whose index comes
 * from the input. Input layout: u16 little-endian L, then L bytes written as
 * model.safetensors.index.json, then the rest written as shard
 * "a.safetensors". The folder also holds a fixed valid shard "b.safetensors"
 * (tensor "x.b"), so an index may name one shard, both, or files that are
 * not there. Opened through the index path (mmap and pread, which must
 * agree) and through the folder.
 */
#include "fuzz_common.h"

static char g_index[600], g_shard_a[600], g_dir[600];

static void init_folder(void) {
    if (g_index[0]) return;
    snprintf(g_dir, sizeof g_dir, "%s", fz_tmpdir());
    fz_path(g_index, sizeof g_index, "model.safetensors.index.json");
    fz_path(g_shard_a, sizeof g_shard_a, "a.safetensors");
    char b[600];
    fz_path(b, sizeof b, "b.safetensors");
    static const char hdr[] = "{\"x.b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    unsigned char file[8 + sizeof hdr - 1 + 8];
    uint64_t n = sizeof hdr - 1;
    for (int i = 0; i < 8; i++) file[i] = (unsigned char)(n >> (8 * i));
    memcpy(file + 8, hdr, n);
    memset(file + 8 + n, 0x3f, 8);
    FZ_CHECK(fz_write_file(b, file, sizeof file) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init_folder();
    size_t jl = 0;
    if (size >= 2) jl = (size_t)data[0] | (size_t)data[1] << 8;
    size_t rest = size >= 2 ? size - 2 : 0;
    if (jl > rest) jl = rest;
    const uint8_t *json = size >= 2 ? data + 2 : data;
    FZ_CHECK(fz_write_file(g_index, json, jl) == 0);
    FZ_CHECK(fz_write_file(g_shard_a, json + jl, rest - jl) == 0);

    hma_store *a = NULL, *b = NULL, *c = NULL;
    int ra = hma_store_open(&a, g_index, 0);
    if (!ra) fz_touch_store(a, 1);
    else FZ_CHECK(a == NULL && hma_last_error()[0] && !strchr(hma_last_error(), '\n'));
    int rb = hma_store_open(&b, g_index, HMA_OPEN_PREAD);
    FZ_CHECK(ra == rb);
    if (!rb) fz_touch_store(b, 0);
    int rc = hma_store_open(&c, g_dir, HMA_OPEN_PREAD);
    FZ_CHECK(rc == ra); /* the folder resolves to the same index */
    if (!rc) FZ_CHECK(hma_store_count(c) == hma_store_count(b));
    hma_store_close(a);
    hma_store_close(b);
    hma_store_close(c);
    return 0;
}
