/* version.c - the version of the library actually linked. */
#include "internal.h"

unsigned hma_version_number(void) { return HMA_VERSION_NUMBER; }
const char *hma_version_string(void) { return HMA_VERSION_STRING; }
unsigned hma_max_dims(void) { return HMA_MAX_DIMS; }
