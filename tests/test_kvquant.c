/* test_kvquant: the KV cache quantization reference and the cpu backend's cached attention.
 *  1. int8/int4 row round trip: every element within scale/2 of its value (plus the fp16 rounding of the
 *     stored scale and zero), for rows of several shapes and ranges, including constant rows.
 *  2. rope_kv + attention over a paged float cache (blocks in a scrambled order) against a direct double
 *     precision computation of RoPE and causal attention.
 *  3. prefill then one token at a time gives the same outputs as one call over all tokens.
 *  4. attention over int8 and int4 caches against the float cache: bounded relative error. */
#include "config.h"
#include "backend.h"
#include "kvquant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef TEST_CPU_ONLY /* the sanitizer build links the cpu backend's sources alone, without backend.c */
#define backend_destroy(be) ((be)->i->destroy(be))
#endif

static uint64_t rng = 0x1234567887654321ull;
static double urand(void) /* [0, 1) */
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (rng >> 11) * (1.0 / 9007199254740992.0);
}
static float nrand(void)
{
	double u = urand() + 1e-12, v = urand();
	return (float)(sqrt(-2 * log(u)) * cos(2 * M_PI * v));
}

static int fails;
#define CHECK(cond, ...)                                    \
	do {                                                \
		if (!(cond)) {                              \
			printf("FAIL: " __VA_ARGS__);       \
			printf("\n");                       \
			fails++;                            \
		}                                           \
	} while (0)

static void test_roundtrip(int bits, int hd, float amp, float offset, int constant)
{
	float x[256], y[256];
	uint8_t q[256];
	double worst = 0; /* error / (scale/2) */
	for (int trial = 0; trial < 200; trial++) {
		for (int i = 0; i < hd; i++) x[i] = constant ? offset : offset + amp * nrand();
		if (trial % 7 == 3) x[trial % hd] *= 20; /* an outlier stretches the range */
		uint16_t s, z;
		kvq_quantize(bits, x, hd, q, &s, &z);
		kvq_dequantize(bits, q, hd, s, z, y);
		float lo = x[0], hi = x[0];
		for (int i = 1; i < hd; i++) {
			lo = fminf(lo, x[i]);
			hi = fmaxf(hi, x[i]);
		}
		const int qmax = (1 << bits) - 1;
		const double sh = f16_to_f32(s), zh = f16_to_f32(z), st = ((double)hi - lo) / qmax;
		/* scale/2, plus what the fp16 rounding of zero and scale can push the ends out of reach */
		double param = fmax(0, fmax(zh - lo, qmax * (st - sh) + (lo - zh)));
		double bound = sh / 2 + param + 1e-6 * (fabs(lo) + fabs(hi));
		for (int i = 0; i < hd; i++) {
			double e = fabs((double)y[i] - x[i]);
			CHECK(e <= bound, "int%d hd %d: element %d error %g > bound %g (scale %g)", bits, hd, i, e, bound, sh);
			if (sh > 0) worst = fmax(worst, e / (sh / 2));
		}
	}
	printf("round trip int%d hd %3d amp %-6g offset %-5g%s: max error %.4f x scale/2\n", bits, hd, amp, offset,
	       constant ? " constant" : "", worst);
}

/* Geometry of the attention tests */
enum { NH = 4, NKV = 2, HD = 64, BL = 16, NB = 5, T = 70, L = 2 };
#define W ((NH + 2 * NKV) * HD)

static float inv_freq[HD / 2];

/* attention of layer `layer` for qkv0[T][W] (unrotated), computed directly in double */
static void reference(const float *qkv0, double *out)
{
	static double rot[T][W];
	for (int i = 0; i < T; i++)
		for (int h = 0; h < NH + 2 * NKV; h++)
			for (int d = 0; d < HD; d++) {
				double v = qkv0[i * W + h * HD + d];
				if (h < NH + NKV) { /* q and k heads rotate */
					int dd = d % (HD / 2);
					float a = (float)i * inv_freq[dd];
					double c = cosf(a), s = sinf(a);
					double other = qkv0[i * W + h * HD + (d < HD / 2 ? d + HD / 2 : d - HD / 2)];
					v = d < HD / 2 ? v * c - other * s : v * c + other * s;
				}
				rot[i][h * HD + d] = v;
			}
	for (int i = 0; i < T; i++)
		for (int h = 0; h < NH; h++) {
			int kh = h / (NH / NKV);
			double sc[T], mx = -1e300, sum = 0;
			for (int p = 0; p <= i; p++) {
				double s = 0;
				for (int d = 0; d < HD; d++) s += rot[i][h * HD + d] * rot[p][(NH + kh) * HD + d];
				sc[p] = s / sqrt(HD);
				mx = fmax(mx, sc[p]);
			}
			for (int p = 0; p <= i; p++) sum += (sc[p] = exp(sc[p] - mx));
			for (int d = 0; d < HD; d++) {
				double a = 0;
				for (int p = 0; p <= i; p++) a += sc[p] / sum * rot[p][(NH + NKV + kh) * HD + d];
				out[(i * NH + h) * HD + d] = a;
			}
		}
}

static double rel_err(const float *a, const double *b, int n)
{
	double num = 0, den = 0;
	for (int i = 0; i < n; i++) {
		num += (a[i] - b[i]) * (a[i] - b[i]);
		den += b[i] * b[i];
	}
	return sqrt(num / den);
}

/* run the T tokens through rope_kv + attention of layer 1, in chunks (prefill then single tokens) */
static int run(struct backend *be, struct kv_cache *kv, const float *qkv0, float *out, int prefill)
{
	static const int32_t blocks[NB] = { 3, 0, 4, 2, 1 }; /* scrambled, to exercise the block table */
	static int32_t ids[T];
	float *qkv = malloc(sizeof(float) * T * W);
	memcpy(qkv, qkv0, sizeof(float) * T * W);
	for (int p0 = 0; p0 < T;) {
		int n = p0 == 0 ? prefill : 1;
		struct step st = { .ids = ids, .n = n, .pos0 = p0, .blocks = blocks, .n_blocks = NB,
				   .inv_freq = inv_freq, .rope_mscale = 1 };
		if (be->i->set_step(be, &st) || be->i->rope_kv(be, qkv + p0 * W, kv, 1, NH) ||
		    be->i->attention(be, out + p0 * NH * HD, qkv + p0 * W, kv, 1, NH)) {
			printf("FAIL: %s\n", lm_errmsg());
			free(qkv);
			return -1;
		}
		p0 += n;
	}
	free(qkv);
	return 0;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0); /* lines reach the log even if the test crashes */
	/* 1. round trips */
	const int hds[] = { 64, 128, 6 };
	for (int b = 8; b >= 4; b -= 4)
		for (size_t h = 0; h < 3; h++) {
			test_roundtrip(b, hds[h], 1, 0, 0);
			test_roundtrip(b, hds[h], 30, 5, 0);
			test_roundtrip(b, hds[h], 0.01f, -2, 0);
			test_roundtrip(b, hds[h], 0, 1.5f, 1);
		}
	CHECK(kvq_row_bytes(KV_POLICY_INT8, 128, 4) == 132 && kvq_row_bytes(KV_POLICY_INT4, 128, 4) == 68 &&
		      kvq_row_bytes(KV_POLICY_NONE, 128, 4) == 512,
	      "row bytes");

	/* 2-4. attention over the paged cache */
	struct backend *be = backend_cpu_create();
	if (!be) {
		printf("FAIL: %s\n", lm_errmsg());
		return 1;
	}
	for (int d = 0; d < HD / 2; d++) inv_freq[d] = powf(10000.0f, -2.0f * d / HD);
	float *qkv0 = malloc(sizeof(float) * T * W);
	for (int i = 0; i < T * W; i++) qkv0[i] = 1.5f * nrand();
	double *ref = malloc(sizeof(double) * T * NH * HD);
	reference(qkv0, ref);
	const int policies[] = { KV_POLICY_NONE, KV_POLICY_INT8, KV_POLICY_INT4 };
	/* bounds for the quantized caches: these inputs give about 0.8% (int8) and 15% (int4) */
	const double bounds[] = { 1e-5, 0.015, 0.25 };
	for (int pi = 0; pi < 3; pi++) {
		struct kv_cache kv = { .n_layers = L, .n_kv_heads = NKV, .head_dim = HD, .block_len = BL, .n_blocks = NB,
				       .policy = policies[pi] };
		if (be->i->kv_alloc(be, &kv)) {
			printf("FAIL: kv_alloc: %s\n", lm_errmsg());
			return 1;
		}
		size_t row = policies[pi] ? (policies[pi] == 8 ? HD + 4 : HD / 2 + 4) : HD * 4;
		CHECK(kv.bytes_per_token == 2 * L * NKV * row, "policy %d: bytes per token %zu", policies[pi],
		      kv.bytes_per_token);
		struct mem_stats ms;
		be->i->mem_stats(be, &ms);
		CHECK(ms.cat[MEM_KV] == kv.bytes, "policy %d: MEM_KV %zu != %zu", policies[pi], ms.cat[MEM_KV], kv.bytes);
		float *a = malloc(sizeof(float) * T * NH * HD), *b = malloc(sizeof(float) * T * NH * HD);
		if (run(be, &kv, qkv0, a, T) || run(be, &kv, qkv0, b, 23)) return 1;
		double e = rel_err(a, ref, T * NH * HD);
		double eb = 0;
		for (int i = 0; i < T * NH * HD; i++) eb = fmax(eb, fabs(a[i] - b[i]));
		printf("attention, kv policy %d: rel error vs double reference %.3g (bound %g); "
		       "prefill 23 + decode vs one call: max diff %.3g\n",
		       policies[pi], e, bounds[pi], eb);
		CHECK(e <= bounds[pi], "policy %d: attention error %g > %g", policies[pi], e, bounds[pi]);
		CHECK(eb <= 1e-5, "policy %d: incremental differs from one call by %g", policies[pi], eb);
		if (pi) CHECK(e > 1e-7, "policy %d: quantized cache exactly equal to float: not quantized?", policies[pi]);
		be->i->kv_free(be, &kv);
		free(a);
		free(b);
	}
	/* an uncovered position is an error, not a crash */
	{
		struct kv_cache kv = { .n_layers = L, .n_kv_heads = NKV, .head_dim = HD, .block_len = BL, .n_blocks = 1 };
		int32_t blocks[1] = { 0 }, ids[2] = { 0 };
		be->i->kv_alloc(be, &kv);
		struct step st = { .ids = ids, .n = 2, .pos0 = BL - 1, .blocks = blocks, .n_blocks = 1,
				   .inv_freq = inv_freq, .rope_mscale = 1 };
		int rc = be->i->set_step(be, &st) || be->i->rope_kv(be, qkv0, &kv, 0, NH);
		CHECK(rc != 0, "rope_kv past the block table succeeded");
		printf("past the block table: %s\n", lm_errmsg());
		be->i->kv_free(be, &kv);
	}
	free(qkv0);
	free(ref);
	backend_destroy(be);
	if (fails) printf("%d failure(s)\n", fails);
	return fails ? 1 : 0;
}
