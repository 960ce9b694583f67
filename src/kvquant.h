/* kvquant.h: the reference quantization of KV cache rows (LMDeploy's --quant-policy 8 and 4).
 *
 * One row = one token of one KV head (head_dim values). Per row, asymmetric:
 *   scale = (max - min) / (2^bits - 1), zero = min   (both kept as fp16)
 *   q = round((x - zero) / scale) clamped to [0, 2^bits - 1]; x' = q * scale + zero
 * q is computed with the fp16-rounded scale and zero, the values dequantization will use.
 * int8: one byte per element. int4: two per byte, element 2i in the low nibble of byte i, 2i+1 in the high.
 * K is quantized after RoPE. The cpu backend stores each row as [q bytes][scale fp16][zero fp16]; the CUDA
 * backend may lay its pool out as it likes but must dequantize to the same values. */
#ifndef LMTERM_KVQUANT_H
#define LMTERM_KVQUANT_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of quantized data for one row of hd elements: hd (int8) or hd/2 (int4). bits: 8 or 4. */
size_t kvq_data_bytes(int bits, int hd);
/* Quantize x[hd] into q (kvq_data_bytes), *scale and *zero (fp16 bits). */
void kvq_quantize(int bits, const float *x, int hd, uint8_t *q, uint16_t *scale, uint16_t *zero);
/* out[hd] = q * scale + zero, in float. */
void kvq_dequantize(int bits, const uint8_t *q, int hd, uint16_t scale, uint16_t zero, float *out);

/* Bytes of one stored row under a KV policy: hd * elem_bytes (policy 0; elem_bytes is the backend's
 * float element size), or kvq_data_bytes + 4 (fp16 scale and zero). */
size_t kvq_row_bytes(int policy, int hd, size_t elem_bytes);

#ifdef __cplusplus
}
#endif
#endif
