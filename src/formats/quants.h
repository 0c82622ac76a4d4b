/*
 * quants.h - ggml's tensor types as GGUF files name them, their block sizes,
 * and exact dequantizers of the block-quantized ones into float32.
 * Sources: ggml-org/ggml src/ggml.c (type_traits: blck_size, type_size),
 * src/ggml-common.h (block_q4_0 ... block_q6_K layouts) and
 * src/ggml-quants.c (dequantize_row_* and get_scale_min_k4).
 */
#ifndef HMA_FORMATS_QUANTS_H
#define HMA_FORMATS_QUANTS_H

#include <stddef.h>
#include <stdint.h>

/* ggml_type values (ggml.h enum ggml_type). */
enum {
    HMA__GGML_F32 = 0,
    HMA__GGML_F16 = 1,
    HMA__GGML_Q4_0 = 2,
    HMA__GGML_Q4_1 = 3,
    HMA__GGML_Q5_0 = 6,
    HMA__GGML_Q5_1 = 7,
    HMA__GGML_Q8_0 = 8,
    HMA__GGML_Q4_K = 12,
    HMA__GGML_Q5_K = 13,
    HMA__GGML_Q6_K = 14,
    HMA__GGML_BF16 = 30,
    HMA__GGML_TYPE_LIMIT = 41 /* ids >= this are unknown (GGML_TYPE_COUNT of current ggml: 40) */
};

/* Block size (elements) and bytes per block of a type this library reads;
 * 0 for a type it does not read (known to ggml or not). */
unsigned hma__ggml_blck_size(int type);
unsigned hma__ggml_type_size(int type);
/* ggml's name of the type ("q8_0"), or NULL if unknown to this table. */
const char *hma__ggml_type_name(int type);
/* 1 for the block-quantized types this library dequantizes. */
int hma__ggml_is_quant(int type);

/* Dequantize nblocks consecutive blocks of `type` (a quantized type) from
 * src into dst (nblocks * blck_size floats), with ggml's exact formulas and
 * float32 arithmetic in its order. src need not be aligned. */
void hma__dequant_blocks(int type, const unsigned char *src, size_t nblocks, float *dst);

#endif
