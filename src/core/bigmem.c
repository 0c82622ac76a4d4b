/*
 * bigmem.c - large scratch buffers (a whole tensor in float32) backed by
 * transparent huge pages where the kernel offers them: the first touch of a
 * 4 KiB page costs a fault (and on a virtual machine an expensive one), a
 * 2 MiB page costs one fault for 512 of them. Most systems run THP in
 * "madvise" mode, so without MADV_HUGEPAGE every merge of a large tensor
 * would pay hundreds of thousands of faults.
 */
#include "internal.h"

#include <stdint.h>
#include <sys/mman.h>

#define HMA__HUGE ((size_t)2 << 20)

void *hma__big_alloc(size_t n, void **base) {
    *base = NULL;
    if (n < HMA__HUGE) return *base = hma__malloc(n ? n : 1);
    if (n > SIZE_MAX - HMA__HUGE) return NULL;
    unsigned char *raw = hma__malloc(n + HMA__HUGE);
    if (!raw) return NULL;
    *base = raw;
    uintptr_t p = ((uintptr_t)raw + HMA__HUGE - 1) & ~(uintptr_t)(HMA__HUGE - 1);
#ifdef MADV_HUGEPAGE
    /* advice only: failure (no THP in this kernel) changes nothing */
    (void)madvise((void *)p, n & ~(HMA__HUGE - 1), MADV_HUGEPAGE);
#endif
    return (void *)p;
}
