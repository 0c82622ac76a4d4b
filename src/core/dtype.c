/* dtype.c - the safetensors dtype table: names, element sizes, which average. */
#include "internal.h"

#include <string.h>

static const struct {
    const char *name;
    unsigned bits;
} table[HMA_DTYPE_COUNT] = {
    [HMA_DTYPE_BOOL] = {"BOOL", 8},         [HMA_DTYPE_U8] = {"U8", 8},
    [HMA_DTYPE_I8] = {"I8", 8},             [HMA_DTYPE_I16] = {"I16", 16},
    [HMA_DTYPE_U16] = {"U16", 16},          [HMA_DTYPE_I32] = {"I32", 32},
    [HMA_DTYPE_U32] = {"U32", 32},          [HMA_DTYPE_I64] = {"I64", 64},
    [HMA_DTYPE_U64] = {"U64", 64},          [HMA_DTYPE_F16] = {"F16", 16},
    [HMA_DTYPE_BF16] = {"BF16", 16},        [HMA_DTYPE_F32] = {"F32", 32},
    [HMA_DTYPE_F64] = {"F64", 64},          [HMA_DTYPE_C64] = {"C64", 64},
    [HMA_DTYPE_F8_E4M3] = {"F8_E4M3", 8},   [HMA_DTYPE_F8_E5M2] = {"F8_E5M2", 8},
    [HMA_DTYPE_F8_E8M0] = {"F8_E8M0", 8},   [HMA_DTYPE_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [HMA_DTYPE_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8}, [HMA_DTYPE_F4] = {"F4", 4},
    [HMA_DTYPE_F6_E2M3] = {"F6_E2M3", 6},   [HMA_DTYPE_F6_E3M2] = {"F6_E3M2", 6},
};

const char *hma_dtype_name(hma_dtype dtype) {
    if ((int)dtype < 0 || dtype >= HMA_DTYPE_COUNT) return NULL;
    return table[dtype].name;
}

int hma_dtype_from_name(const char *name, hma_dtype *dtype) {
    if (!name || !dtype) return hma__fail(HMA_ERR_INVALID_ARGUMENT, "hma_dtype_from_name: NULL argument");
    for (int i = 0; i < HMA_DTYPE_COUNT; i++) {
        if (strcmp(table[i].name, name) == 0) {
            *dtype = (hma_dtype)i;
            return HMA_OK;
        }
    }
    return hma__fail(HMA_ERR_BAD_DTYPE, "unknown dtype \"%.64s\" (expected one of the 22 safetensors dtype strings, exact case)", name);
}

unsigned hma_dtype_bits(hma_dtype dtype) {
    if ((int)dtype < 0 || dtype >= HMA_DTYPE_COUNT) return 0;
    return table[dtype].bits;
}

int hma_dtype_is_float(hma_dtype dtype) {
    return dtype == HMA_DTYPE_F16 || dtype == HMA_DTYPE_BF16 || dtype == HMA_DTYPE_F32 ||
           dtype == HMA_DTYPE_F64;
}

int hma__dtype_nbytes(hma_dtype dt, uint64_t nelem, uint64_t *nbytes) {
    uint64_t bits;
    if (hma__mul_overflows(nelem, hma_dtype_bits(dt), &bits)) return 1;
    /* Sub-byte dtypes pack elements; like the reference reader we require
     * the total to be whole bytes rather than guess at padding. */
    if (bits % 8 != 0) return 2;
    *nbytes = bits / 8;
    return 0;
}
