/* quant_meta.h - quantized tensors inside an ordinary safetensors file.
 * A quantized matrix is stored as a U8 tensor of shape [rows, row_bytes] (the rows of core/quant.h),
 * and the file's __metadata__ carries one string entry "moe_quant" holding JSON:
 *     {"version": 1, "tensors": {"NAME": ["q8_0" | "q4", rows, cols], ...}}
 * so the file stays valid safetensors for every other tool, while libmoe sees each listed tensor with
 * its quantized dtype and logical shape [rows, cols]. Validation is strict: the JSON must have exactly
 * these keys, every listed tensor must exist in the same file, be U8 and 2-D, and its byte shape must
 * be exactly what the type and logical shape require. Anything else is an error naming the file and
 * the tensor. */
#ifndef MOE_IO_QUANT_META_H
#define MOE_IO_QUANT_META_H
#include "io/safetensors.h"

#define MOE_QUANT_META_KEY "moe_quant"

/* Retype f's tensors from the metadata in the file image buf[0..size) that f was parsed from.
 * A file without the key is left alone. */
moe_status moe_quant_meta_apply(moe_st_file *f, const uint8_t *buf, size_t size);
#endif
