/*
 * fuzz_safetensors.c - libFuzzer target: the input is a whole .safetensors
 * file. It is opened with hma_store_open() in mmap and in pread mode; both
 * must agree (same result code, same tensors), and every byte the store
 * hands out is read. Any crash, sanitizer report, leak or broken invariant
 * is a finding.
 */
#include "fuzz_common.h"

static fz_memfd g_file;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_memfd_set(&g_file, data, size);
    hma_store *a, *b;
    fz_open_both_modes(g_file.path, 1, &a, &b);
    hma_store_close(a);
    hma_store_close(b);
    return 0;
}
