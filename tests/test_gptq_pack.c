/* test_gptq_pack: GPTQ's layout, hand-packed here by AutoGPTQ's rule, against the weights lmterm runs.
 *
 * A 16 x 32 linear (16 outputs, 32 inputs, group 16: two groups) with known codes, zeros and fp16 scales is
 * packed as AutoGPTQ's QuantLinear.pack writes it (qweight [in/8][out]: input 8r + i in bits 4i of word (r, c);
 * qzeros [in/g][out/8]: output 8c + j in bits 4j, holding z - 1, or z in gptq_v2), then
 *  (a) gptq_to_awq's result is decoded by DESIGN.md's AutoAWQ rule (nibble n of qweight[k][c] = output
 *      8c + [0,2,4,6,1,3,5,7][n]) and every code and zero compared;
 *  (b) the CPU backend loads it and multiplies by the identity: every weight it computes with must be
 *      (q - z) * s exactly, element by element;
 *  (c) a v1 zero nibble of 15 (zero 16) is refused with a message, not wrapped to 0;
 * for the v1 and v2 zero conventions. A wrong nibble order, a missing or doubled "+ 1", or a transposed
 * packing changes some of the 512 weights. */
#include "config.h"
#include "backend.h"
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 16, K = 32, G = 16, NG = K / G };

static int fails, checks;
#define CHECK(c, ...)                                                                                   \
	do {                                                                                            \
		checks++;                                                                               \
		if (!(c)) {                                                                             \
			fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #c);           \
			fprintf(stderr, __VA_ARGS__);                                                   \
			fprintf(stderr, "\n");                                                          \
			fails++;                                                                        \
		}                                                                                       \
	} while (0)

static int code(int k, int n) { return (k * 7 + n * 3 + (k * n) % 5) & 15; }
static int zero(int g, int n) { return 1 + (g * 5 + n * 7) % 15; } /* 1..15: every value v1 can hold */
static float scale(int g, int n) { return 0.0078125f * (1 + n) + 0.25f * g; } /* exact in fp16 */

static void run(bool v2)
{
	const char *fmt = v2 ? "gptq_v2" : "gptq";
	uint32_t gq[K / 8][N] = { { 0 } }, gz[NG][N / 8] = { { 0 } };
	uint16_t sc[NG][N];
	for (int r = 0; r < K / 8; r++)
		for (int c = 0; c < N; c++)
			for (int i = 0; i < 8; i++) gq[r][c] |= (uint32_t)code(8 * r + i, c) << (4 * i);
	for (int g = 0; g < NG; g++) {
		for (int c = 0; c < N / 8; c++)
			for (int j = 0; j < 8; j++) gz[g][c] |= (uint32_t)(zero(g, 8 * c + j) - (v2 ? 0 : 1)) << (4 * j);
		for (int n = 0; n < N; n++) sc[g][n] = f32_to_f16(scale(g, n));
	}

	/* (a) the AutoAWQ words, decoded by the rule in DESIGN.md */
	static const int order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };
	int32_t aq[K][N / 8], az[NG][N / 8];
	int rc = gptq_to_awq(gq, gz, K, N, G, v2, &aq[0][0], &az[0][0]);
	CHECK(rc == LM_OK, "%s: gptq_to_awq: %s", fmt, lm_errmsg());
	int bad_q = 0, bad_z = 0;
	for (int k = 0; k < K; k++)
		for (int c = 0; c < N / 8; c++)
			for (int n = 0; n < 8; n++)
				bad_q += (int)(((uint32_t)aq[k][c] >> (4 * n)) & 15) != code(k, 8 * c + order[n]);
	for (int g = 0; g < NG; g++)
		for (int c = 0; c < N / 8; c++)
			for (int n = 0; n < 8; n++) bad_z += (int)(((uint32_t)az[g][c] >> (4 * n)) & 15) != zero(g, 8 * c + order[n]);
	CHECK(bad_q == 0 && bad_z == 0, "%s: %d of %d codes and %d of %d zeros differ", fmt, bad_q, K * N, bad_z, NG * N);

	/* (b) what the CPU backend computes with: y = e_k W^T = column k of W */
	struct backend *be = backend_cpu_create();
	if (!be) {
		CHECK(0, "cpu backend: %s", lm_errmsg());
		return;
	}
	struct host_weight hw = { .dt = DT_Q4, .rows = N, .cols = K, .qweight = &aq[0][0], .qzeros = &az[0][0],
				  .scales = &sc[0][0], .group = G };
	struct weight w;
	float x[K][K] = { { 0 } }, y[K][N];
	for (int k = 0; k < K; k++) x[k][k] = 1;
	rc = be->i->weight_load(be, &w, &hw);
	if (rc == LM_OK) rc = be->i->matmul(be, y, x, &w, K);
	CHECK(rc == LM_OK, "%s: cpu load/matmul: %s", fmt, lm_errmsg());
	int bad = 0;
	for (int k = 0; k < K && rc == LM_OK; k++)
		for (int n = 0; n < N; n++) {
			float want = (float)(code(k, n) - zero(k / G, n)) * f16_to_f32(sc[k / G][n]);
			if (y[k][n] != want && bad++ < 5)
				fprintf(stderr, "%s: W[%d][%d] = %g, want (%d - %d) * %g = %g\n", fmt, n, k, y[k][n], code(k, n),
					zero(k / G, n), f16_to_f32(sc[k / G][n]), want);
		}
	CHECK(bad == 0, "%s: %d of %d weights differ", fmt, bad, N * K);
	if (rc == LM_OK || w.qweight) be->i->weight_free(be, &w);
	be->i->destroy(be);
	if (!bad && !bad_q && !bad_z && rc == LM_OK)
		printf("ok: %s: %d codes, %d zeros and every dequantized weight as AutoGPTQ packed them\n", fmt, K * N, NG * N);

	/* (c) v1's zero 16 (a stored 15) cannot be held in 4 bits: refused, naming group and output */
	if (!v2) {
		gz[1][1] |= 15u << 8; /* group 1, output 8 + 2 */
		lm_err_clear();
		rc = gptq_to_awq(gq, gz, K, N, G, false, &aq[0][0], &az[0][0]);
		CHECK(rc == LM_ERR && strstr(lm_errmsg(), "zero point 16") && strstr(lm_errmsg(), "group 1, output 10"),
		      "v1 zero 16: rc %d '%s'", rc, lm_errmsg());
		if (rc == LM_ERR) printf("ok: %s\n", lm_errmsg());
	}
}

int main(void)
{
	run(false);
	run(true);
	printf("%d checks, %d failed\n", checks, fails);
	return fails ? 1 : 0;
}
