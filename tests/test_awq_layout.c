/* test_awq_layout: the CUDA backend's W4A16 repacking (awq_repack and awq_repack_tiled, host code in
 * cuda/awq_gemm.cu) against the AutoAWQ gemm layout as DESIGN.md defines it, with no GPU: every weight,
 * dequantized the way the kernels read the repacked words (row layout: input pair (2j, 2j+1) in the two
 * 16-bit halves of (word >> 4j) & 0x000f000f; tiled layout: the mma fragment positions, see
 * tiled_weight), must equal (q - z) * s read straight from qweight/qzeros/scales. Random shapes and codes. */
#include "config.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if HAVE_CUDA
void awq_repack(uint32_t *qw, uint16_t *sz, const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales,
		int N, int K, int group);
void awq_repack_tiled(uint32_t *qw, uint16_t *sz, const int32_t *qweight, const int32_t *qzeros,
		      const uint16_t *scales, int N, int K, int group, bool gate_up);

static uint64_t rng;
static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

/* AutoAWQ: nibble i of an int32 holds output column 8c + order[i] */
static const int order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };

/* weight (n, k) of the tiled layout, read as the tensor-core kernel reads it: lane 4 gr + t of row tile
 * n / 16, chunk k / 64, word s holds the mma A registers a[j] = (a_2j, a_2j+1) = (w >> 4j) & 0x000f000f,
 * register j covering row gr + 8 (j & 1) and, in the permuted k order, inputs 16 t + 4 s + 2 (j >> 1) + {0, 1} */
static float tiled_weight(const uint32_t *qw, const uint16_t *sz, int K, int g, int n, int k)
{
	const int KC = K / 64, G = K / g, rt = n / 16, gr = n % 8, hrow = (n % 16) / 8;
	const int kr = k % 64, t = kr / 16, s = (kr % 16) / 4, j = 2 * ((kr % 4) / 2) + hrow, h = kr % 2;
	const uint32_t w = qw[(((size_t)rt * KC + k / 64) * 32 + 4 * gr + t) * 4 + s];
	const uint32_t pair = (w >> (4 * j)) & 0x000f000fu;
	const int q = (int)(h ? pair >> 16 : pair & 0xffff);
	const size_t o = (((size_t)rt * G + k / g) * 8 + gr) * 2 + hrow;
	return ((float)q - f16_to_f32(sz[2 * o + 1])) * f16_to_f32(sz[2 * o]);
}

static int check_gu(int N, int K, int g, bool tiled, bool gate_up)
{
	const int G = K / g;
	int32_t *qweight = malloc((size_t)K * N / 8 * 4), *qzeros = malloc((size_t)G * N / 8 * 4);
	uint16_t *scales = malloc((size_t)G * N * 2), *sz = malloc((size_t)N * G * 4);
	uint32_t *qw = malloc((size_t)N * K / 8 * 4);
	if (!qweight || !qzeros || !scales || !sz || !qw) return 1;
	for (size_t i = 0; i < (size_t)K * N / 8; i++) qweight[i] = (int32_t)rnd();
	for (size_t i = 0; i < (size_t)G * N / 8; i++) qzeros[i] = (int32_t)rnd();
	for (size_t i = 0; i < (size_t)G * N; i++) scales[i] = f32_to_f16((float)(rnd() % 1000 + 1) * 1e-4f);
	if (tiled) awq_repack_tiled(qw, sz, qweight, qzeros, scales, N, K, g, gate_up);
	else awq_repack(qw, sz, qweight, qzeros, scales, N, K, g);
	int bad = 0;
	for (int p = 0; p < N && bad < 5; p++)
		for (int k = 0; k < K && bad < 5; k++) {
			/* p: the row as the kernels hold it; n: its AutoAWQ row */
			const int n = !gate_up ? p : p % 16 < 8 ? 8 * (p / 16) + p % 16 : N / 2 + 8 * (p / 16) + p % 16 - 8;
			int nib = -1;
			for (int i = 0; i < 8; i++)
				if (order[i] == n % 8) nib = i;
			int q = ((uint32_t)qweight[(size_t)k * (N / 8) + n / 8] >> (4 * nib)) & 15;
			int z = ((uint32_t)qzeros[(size_t)(k / g) * (N / 8) + n / 8] >> (4 * nib)) & 15;
			float want = (float)(q - z) * f16_to_f32(scales[(size_t)(k / g) * N + n]);
			/* as the kernels read it */
			uint32_t w = qw[(size_t)p * (K / 8) + k / 8];
			int t = k % 8, j = t / 2;
			uint32_t pair = (w >> (4 * j)) & 0x000f000fu;
			int gq = (int)(t % 2 ? pair >> 16 : pair & 0xffff);
			float s = f16_to_f32(sz[((size_t)p * G + k / g) * 2]), gz = f16_to_f32(sz[((size_t)p * G + k / g) * 2 + 1]);
			float got = tiled ? tiled_weight(qw, sz, K, g, p, k) : ((float)gq - gz) * s;
			if (got != want) {
				printf("FAIL: [%d x %d] g%d%s: w[%d][%d] = %g from the repacked layout (row %d), %g from AutoAWQ's\n",
				       N, K, g, gate_up ? " gate_up" : "", n, k, got, p, want);
				bad++;
			}
		}
	printf("%s [%d x %d] group %d, %s layout%s: %s\n", bad ? "FAIL" : "ok", N, K, g, tiled ? "tiled" : "row",
	       gate_up ? " (gate_up rows)" : "", bad ? "mismatch" : "every weight equal");
	free(qweight);
	free(qzeros);
	free(scales);
	free(sz);
	free(qw);
	return bad != 0;
}

static int check(int N, int K, int g, bool tiled) { return check_gu(N, K, g, tiled, false); }
#endif

int main(void)
{
#if !HAVE_CUDA
	printf("SKIP: built without CUDA\n");
	return 77;
#else
	const char *e = getenv("LMTERM_TEST_SEED");
	rng = e && *e ? strtoull(e, NULL, 10) : (uint64_t)time(NULL) | 1;
	printf("seed %llu\n", (unsigned long long)rng);
	int fails = 0;
	fails += check(64, 256, 128, false);
	fails += check(136, 512, 64, false);
	fails += check(8, 96, 32, false);
	fails += check(256, 128, 128, false);
	fails += check(8 * (1 + (int)(rnd() % 20)), 128 * (1 + (int)(rnd() % 4)), 128, false);
	fails += check(64, 256, 128, true);
	fails += check(144, 512, 64, true);
	fails += check(16, 128, 128, true);
	fails += check(16 * (1 + (int)(rnd() % 20)), 128 * (1 + (int)(rnd() % 4)), 128, true);
	fails += check(16 * (1 + (int)(rnd() % 20)), 64 * (1 + (int)(rnd() % 8)), 64, true);
	/* 64 row tiles and more are repacked by several threads (ranges of tiles): uneven counts */
	fails += check(16 * 65, 256, 128, true);
	fails += check(16 * (64 + (int)(rnd() % 200)), 128, 64, true);
	/* w13 interleaved for the folded SwiGLU: gate and up halves of N / 2 rows each */
	fails += check_gu(64, 256, 128, true, true);
	fails += check_gu(32 * (1 + (int)(rnd() % 20)), 64 * (1 + (int)(rnd() % 8)), 64, true, true);
	fails += check_gu(16 * 66, 256, 128, true, true); /* odd tile count, several threads */
	return fails ? 1 : 0;
#endif
}
