/* kvquant.c: reference KV row quantization (see kvquant.h). */
#include "config.h"
#include "kvquant.h"
#include "backend.h"

#include <math.h>

size_t kvq_data_bytes(int bits, int hd)
{
	return bits == 4 ? (size_t)(hd + 1) / 2 : (size_t)hd;
}

size_t kvq_row_bytes(int policy, int hd, size_t elem_bytes)
{
	if (policy == KV_POLICY_INT8 || policy == KV_POLICY_INT4)
		return kvq_data_bytes(policy, hd) + 2 * sizeof(uint16_t);
	return (size_t)hd * elem_bytes;
}

void kvq_quantize(int bits, const float *x, int hd, uint8_t *q, uint16_t *scale, uint16_t *zero)
{
	float lo = x[0], hi = x[0];
	for (int i = 1; i < hd; i++) {
		lo = fminf(lo, x[i]);
		hi = fmaxf(hi, x[i]);
	}
	const int qmax = (1 << bits) - 1;
	*scale = f32_to_f16((hi - lo) / (float)qmax);
	*zero = f32_to_f16(lo);
	/* quantize against the stored (fp16) parameters, so that dequantization error is at most scale/2 */
	const float s = f16_to_f32(*scale), z = f16_to_f32(*zero);
	if (bits == 4) memset(q, 0, kvq_data_bytes(4, hd));
	for (int i = 0; i < hd; i++) {
		float v = s > 0 ? rintf((x[i] - z) / s) : 0.0f; /* round half to even, as torch.round */
		int qi = v < 0 ? 0 : v > qmax ? qmax : (int)v;
		if (bits == 8)
			q[i] = (uint8_t)qi;
		else
			q[i >> 1] |= (uint8_t)(qi << ((i & 1) * 4));
	}
}

void kvq_dequantize(int bits, const uint8_t *q, int hd, uint16_t scale, uint16_t zero, float *out)
{
	const float s = f16_to_f32(scale), z = f16_to_f32(zero);
	if (bits == 8) {
		for (int i = 0; i < hd; i++) out[i] = (float)q[i] * s + z;
	} else {
		for (int i = 0; i < hd; i++) out[i] = (float)((q[i >> 1] >> ((i & 1) * 4)) & 15) * s + z;
	}
}
