/* api.c - the API's shared conventions: struct_size versioning (_init_size, reading
 * options, writing stats), callback returns. */
#include "internal.h"

#include <string.h>

static int check_size(size_t given, size_t min_size, size_t max_size, const char *fn, const char *type) {
    if (given < min_size)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "%s: %s.struct_size is %zu, smaller than any version of the struct (%zu): "
                         "initialise it with its _init() function",
                         fn, type, given, min_size);
    if (given > max_size)
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "%s: %s.struct_size is %zu, larger than this library's (%zu): "
                         "the caller was built against a newer libhma",
                         fn, type, given, max_size);
    return HMA_OK;
}

int hma__opts_in(void *dst, size_t dst_size, const void *src, size_t min_size, const char *fn,
                 const char *type) {
    if (!src) return HMA_OK;
    size_t given;
    memcpy(&given, src, sizeof given);
    int rc = check_size(given, min_size, dst_size, fn, type);
    if (rc) return rc;
    memcpy((char *)dst + sizeof(size_t), (const char *)src + sizeof(size_t), given - sizeof(size_t));
    return HMA_OK;
}

int hma__stats_out(void *dst, const void *src, size_t src_size, size_t min_size, const char *fn,
                   const char *type) {
    if (!dst) return HMA_OK;
    size_t given;
    memcpy(&given, dst, sizeof given);
    int rc = check_size(given, min_size, src_size, fn, type);
    if (rc) return rc;
    memcpy((char *)dst + sizeof(size_t), (const char *)src + sizeof(size_t), given - sizeof(size_t));
    return HMA_OK;
}

size_t hma__init_size(void *dst, size_t size, const void *defaults, size_t lib_size) {
    if (!dst || size < sizeof(size_t)) return 0;
    size_t n = size < lib_size ? size : lib_size;
    memcpy(dst, defaults, n);
    memcpy(dst, &n, sizeof n); /* struct_size */
    return n;
}

int hma__callback_result(int ret, const char *who) {
    if (ret == 0) return HMA_OK;
    if (ret == HMA_CANCEL) return hma__fail(HMA_ERR_CANCELLED, "%s: cancelled (the callback returned HMA_CANCEL)", who);
    return hma__fail(HMA_ERR_CALLBACK, "%s: the callback reported failure (returned %d)", who, ret);
}
