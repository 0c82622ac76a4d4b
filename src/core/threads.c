/* threads.c - the default worker count shared by merges, packs and gradients. */
#include "internal.h"

#include <unistd.h>

unsigned hma__default_threads(unsigned cap) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) return 1;
    return (unsigned long)n > cap ? cap : (unsigned)n;
}
