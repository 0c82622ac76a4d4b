/*
 * fuzz_gguf.c - libFuzzer target: the input is a whole GGUF file (seeds: the
 * small GGUFs of fz_gguf() and the toy-llama headers with their data cut
 * off). It is opened with hma_store_open() in mmap and in pread mode; both
 * must agree (same result code, same tensors, same bytes), every byte the
 * store hands out is read, and quantized tensors (served as F32, decoded on
 * read) are also read in odd-sized pieces that start and end inside a
 * block, which must equal the same bytes of a whole read. Any crash,
 * sanitizer report, leak or broken invariant is a finding.
 */
#include "fuzz_common.h"

static fz_memfd g_file;

/* Tensor i read in pieces of 7, 33 and 1031 bytes agrees with one read. */
static void pieces(const hma_store *a, const hma_store *b, size_t i) {
    const hma_tensor *t = hma_store_tensor(a, i);
    uint64_t nb = hma_tensor_nbytes(t);
    if (nb == 0 || nb > (1u << 20)) return;
    unsigned char *whole = malloc((size_t)nb), *part = malloc((size_t)nb);
    FZ_CHECK(whole && part);
    int rc = hma_store_read(a, t, 0, whole, (size_t)nb);
    static const size_t steps[3] = {7, 33, 1031};
    for (int s = 0; s < 3 && rc == HMA_OK; s++) {
        for (uint64_t at = 0; at < nb; at += steps[s]) {
            size_t n = nb - at < steps[s] ? (size_t)(nb - at) : steps[s];
            FZ_CHECK(hma_store_read(b, hma_store_tensor(b, i), at, part + at, n) == HMA_OK);
        }
        FZ_CHECK(memcmp(whole, part, (size_t)nb) == 0);
    }
    free(whole);
    free(part);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_memfd_set(&g_file, data, size);
    hma_store *a, *b;
    if (!fz_open_both_modes(g_file.path, 2, &a, &b)) {
        FZ_CHECK(hma_store_metadata_count(a) == hma_store_metadata_count(b));
        for (size_t i = 0; i < hma_store_count(a); i++) {
            FZ_CHECK(hma_tensor_nbytes(hma_store_tensor(a, i)) == hma_tensor_nbytes(hma_store_tensor(b, i)));
            pieces(a, b, i);
        }
    }
    hma_store_close(a);
    hma_store_close(b);
    return 0;
}
