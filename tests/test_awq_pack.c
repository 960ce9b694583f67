/* test_awq_pack: the AutoAWQ gemm layout against an independent writer.
 * $TESTDATA/fixtures/llama3-rand-awq is llama3-rand quantized (RTN, group 128, zero point) by an independent
 * implementation. For every linear:
 *  1. unpack its qweight/qzeros, dequantize (q - z) * s, take the codes back from the dequantized values
 *     (round(w / s) + z) and pack them again: the int32s must equal the file's;
 *  2. the dequantized weights must lie within half a step of llama3-rand's original weights (a wrong
 *     nibble order or transposition breaks this by far);
 *  3. awq_quantize_rows on the original weights must reproduce the file's codes, zeros and scales (allowing
 *     the rare element where fp16 rounding of the scale tips a tie). */
#include "config.h"
#include "awq.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL: " __VA_ARGS__); printf("\n"); fails++; } } while (0)

int main(void)
{
	const char *td = getenv("TESTDATA");
	if (!td) { printf("TESTDATA not set\n"); return 77; }
	char pq[1024], po[1024];
	snprintf(pq, sizeof pq, "%s/fixtures/llama3-rand-awq/model.safetensors", td);
	snprintf(po, sizeof po, "%s/fixtures/llama3-rand/model.safetensors", td);
	struct st_file *fq, *fo;
	if (st_open(&fq, pq) || st_open(&fo, po)) { printf("FAIL: %s\n", lm_errmsg()); return 1; }
	int n_lin = 0;
	long tot = 0, code_diff = 0, zero_diff = 0, scale_diff = 0;
	for (int i = 0; i < st_count(fq); i++) {
		const struct st_tensor *qw = st_get(fq, i);
		size_t nl = strlen(qw->name);
		if (nl < 8 || strcmp(qw->name + nl - 8, ".qweight")) continue;
		char base[256], name[300];
		snprintf(base, sizeof base, "%.*s", (int)(nl - 8), qw->name);
		snprintf(name, sizeof name, "%s.qzeros", base);
		const struct st_tensor *qz = st_find(fq, name);
		snprintf(name, sizeof name, "%s.scales", base);
		const struct st_tensor *sc = st_find(fq, name);
		snprintf(name, sizeof name, "%s.weight", base);
		const struct st_tensor *ow = st_find(fo, name);
		CHECK(qz && sc && ow, "%s: qzeros/scales/original weight missing", base);
		if (!qz || !sc || !ow) continue;
		int in = (int)qw->shape[0], out = (int)qw->shape[1] * 8, ng = (int)sc->shape[0], g = in / ng;
		CHECK(qw->dt == DT_I32 && qz->dt == DT_I32 && sc->dt == DT_F16 && sc->shape[1] == out && qz->shape[0] == ng &&
			      ow->shape[0] == out && ow->shape[1] == in,
		      "%s: shapes/dtypes", base);
		uint8_t *codes = malloc((size_t)out * in), *zeros = malloc((size_t)out * ng);
		uint8_t *codes2 = malloc((size_t)out * in), *zeros2 = malloc((size_t)out * ng);
		float *deq = malloc(sizeof(float) * out * in), *orig = malloc(sizeof(float) * out * in);
		int32_t *qw2 = malloc(sizeof(int32_t) * in * (out / 8)), *qz2 = malloc(sizeof(int32_t) * ng * (out / 8));
		uint16_t *sc2 = malloc(sizeof(uint16_t) * ng * out);
		const uint16_t *s16 = sc->data;
		awq_unpack(qw->data, qz->data, out, in, g, codes, zeros);
		for (int o = 0; o < out; o++)
			for (int k = 0; k < in; k++) {
				float s = f16_to_f32(s16[(size_t)(k / g) * out + o]);
				deq[(size_t)o * in + k] = ((int)codes[(size_t)o * in + k] - zeros[(size_t)o * ng + k / g]) * s;
			}
		/* 1. codes back from the dequantized values */
		for (int o = 0; o < out; o++)
			for (int k = 0; k < in; k++) {
				float s = f16_to_f32(s16[(size_t)(k / g) * out + o]);
				codes2[(size_t)o * in + k] = (uint8_t)(lrintf(deq[(size_t)o * in + k] / s) + zeros[(size_t)o * ng + k / g]);
			}
		awq_pack(codes2, zeros, out, in, g, qw2, qz2);
		CHECK(!memcmp(qw2, qw->data, qw->bytes), "%s: repacked qweight differs", base);
		CHECK(!memcmp(qz2, qz->data, qz->bytes), "%s: repacked qzeros differs", base);
		/* 2. within half a step of the original */
		to_f32(orig, ow->data, ow->dt, (size_t)out * in);
		double worst = 0;
		for (int o = 0; o < out; o++)
			for (int k = 0; k < in; k++) {
				float s = f16_to_f32(s16[(size_t)(k / g) * out + o]);
				double r = fabs(deq[(size_t)o * in + k] - orig[(size_t)o * in + k]) / s;
				if (r > worst) worst = r;
			}
		CHECK(worst <= 0.51, "%s: dequantized weight off the original by %.2f steps", base, worst);
		/* 3. our quantizer on the original */
		awq_quantize_rows(orig, out, in, g, codes2, zeros2, sc2, NULL);
		for (size_t j = 0; j < (size_t)out * in; j++) code_diff += codes2[j] != codes[j];
		for (size_t j = 0; j < (size_t)out * ng; j++) zero_diff += zeros2[j] != zeros[j];
		for (size_t j = 0; j < (size_t)out * ng; j++) scale_diff += sc2[j] != s16[j];
		tot += (long)out * in;
		printf("%s: [%d x %d] g%d repack ok, max |deq - orig| = %.3f steps\n", base, out, in, g, worst);
		n_lin++;
		free(codes); free(zeros); free(codes2); free(zeros2); free(deq); free(orig); free(qw2); free(qz2); free(sc2);
	}
	printf("quantize_rows vs file: %ld of %ld codes, %ld zeros, %ld scales differ\n", code_diff, tot, zero_diff,
	       scale_diff);
	CHECK(n_lin == 14, "expected 14 quantized linears, found %d", n_lin);
	CHECK(code_diff <= tot / 1000 && zero_diff <= tot / 128 / 100, "our RTN disagrees with the file too often");
	st_close(fq);
	st_close(fo);
	if (fails) { printf("%d failure(s)\n", fails); return 1; }
	printf("ok\n");
	return 0;
}
