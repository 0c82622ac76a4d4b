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
    hma_store *a = NULL, *b = NULL;
    int ra = hma_store_open(&a, g_file.path, 0);
    if (ra) {
        FZ_CHECK(a == NULL);
        FZ_CHECK(hma_last_error_code() == ra);
        FZ_CHECK(hma_last_error()[0] != 0);
        FZ_CHECK(strchr(hma_last_error(), '\n') == NULL); /* one error = one line */
    } else {
        fz_touch_store(a, 1);
    }
    int rb = hma_store_open(&b, g_file.path, HMA_OPEN_PREAD);
    FZ_CHECK(ra == rb); /* the two modes validate identically */
    if (!rb) {
        fz_touch_store(b, 0);
        FZ_CHECK(hma_store_count(a) == hma_store_count(b));
        for (size_t i = 0; i < hma_store_count(a); i++)
            FZ_CHECK(!strcmp(hma_tensor_name(hma_store_tensor(a, i)), hma_tensor_name(hma_store_tensor(b, i))));
    }
    hma_store_close(a);
    hma_store_close(b);
    return 0;
}
