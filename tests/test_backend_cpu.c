/* test_backend_cpu: the cpu backend's ops against naive double-precision loops, on shapes the goldens do
 * not reach (inputs not a multiple of 8, outputs not a multiple of 4, more tokens than a tile), and its
 * memory accounting (exact bytes per category, peaks, host figures from /proc).
 *  - matmul with F32, F16, BF16 and AWQ weights (the AWQ one built in AutoAWQ's gemm layout here), with bias
 *  - embed, add_rmsnorm, swiglu, logits; qk_norm (Qwen3's per-head q/k RMSNorm, head_dim 6, v untouched)
 *  - alloc/free per category; weight bytes; mem_stats valid flags */
#include "config.h"
#include "backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef TEST_CPU_ONLY /* the sanitizer build links the cpu backend's sources alone, without backend.c */
#define backend_destroy(be) ((be)->i->destroy(be))
#endif

static uint64_t rng = 88172645463325252ull;
static float frand(void) /* [-1, 1) */
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((rng >> 40) * (1.0 / 8388608.0) - 1.0);
}

static int fails;
static void check(bool ok, const char *what, double err, double bound)
{
	printf("%-48s error %.3g (bound %g)%s\n", what, err, bound, ok ? "" : "  FAIL");
	if (!ok) fails++;
}

static double rel(const float *a, const double *b, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(a[i])) return INFINITY;
		num += (a[i] - b[i]) * (a[i] - b[i]);
		den += b[i] * b[i];
	}
	return sqrt(num / (den > 0 ? den : 1));
}

/* y = x W^T + b in double, W given as float [N][K] */
static void ref_mm(double *y, const float *x, const float *w, const float *b, int n, int N, int K)
{
	for (int i = 0; i < n; i++)
		for (int j = 0; j < N; j++) {
			double s = b ? b[j] : 0;
			for (int k = 0; k < K; k++) s += (double)x[i * K + k] * w[(size_t)j * K + k];
			y[i * N + j] = s;
		}
}

static void test_matmul(struct backend *be, enum dtype dt, int n, int N, int K, bool bias)
{
	float *w = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * n * K), *b = malloc(sizeof(float) * N);
	float *y = malloc(sizeof(float) * n * N);
	double *yr = malloc(sizeof(double) * n * N);
	uint16_t *h = malloc(2 * (size_t)N * K);
	for (int i = 0; i < n * K; i++) x[i] = frand();
	for (int j = 0; j < N; j++) b[j] = frand();
	struct host_weight hw = { .dt = dt, .rows = N, .cols = K, .bias = bias ? b : NULL, .bias_dt = DT_F32 };
	int32_t *qw = NULL, *qz = NULL;
	uint16_t *sc = NULL;
	const int g = 32;
	if (dt == DT_Q4) {
		/* AutoAWQ gemm layout: nibble i of int32 c holds output column 8c + order[i] */
		static const int order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };
		qw = calloc((size_t)K * N / 8, 4);
		qz = calloc((size_t)K / g * N / 8, 4);
		sc = malloc(2 * (size_t)K / g * N);
		for (int k = 0; k < K; k++)
			for (int j = 0; j < N; j++) {
				int q = (int)((frand() + 1) * 8) & 15;
				int c = j / 8, i = 0;
				while (order[i] != j % 8) i++;
				qw[(size_t)k * N / 8 + c] |= (int32_t)((uint32_t)q << (4 * i));
				if (k % g == 0) {
					int z = (int)((frand() + 1) * 8) & 15;
					qz[(size_t)k / g * N / 8 + c] |= (int32_t)((uint32_t)z << (4 * i));
					sc[(size_t)k / g * N + j] = f32_to_f16(0.01f + 0.05f * (frand() + 1));
				}
			}
		for (int k = 0; k < K; k++)
			for (int j = 0; j < N; j++) {
				int c = j / 8, i = 0;
				while (order[i] != j % 8) i++;
				int q = (qw[(size_t)k * N / 8 + c] >> (4 * i)) & 15;
				int z = (qz[(size_t)k / g * N / 8 + c] >> (4 * i)) & 15;
				w[(size_t)j * K + k] = (float)(q - z) * f16_to_f32(sc[(size_t)k / g * N + j]);
			}
		hw.qweight = qw;
		hw.qzeros = qz;
		hw.scales = sc;
		hw.group = g;
	} else {
		for (size_t i = 0; i < (size_t)N * K; i++) {
			float v = frand();
			if (dt == DT_F16) h[i] = f32_to_f16(v), w[i] = f16_to_f32(h[i]);
			else if (dt == DT_BF16) h[i] = f32_to_bf16(v), w[i] = bf16_to_f32(h[i]);
			else w[i] = v;
		}
		hw.data = dt == DT_F32 ? (const void *)w : (const void *)h;
	}
	struct weight wt;
	char what[96];
	snprintf(what, sizeof what, "matmul %s n=%d N=%d K=%d%s", dtype_name(dt), n, N, K, bias ? " +bias" : "");
	if (be->i->weight_load(be, &wt, &hw) || be->i->matmul(be, y, x, &wt, n)) {
		printf("FAIL: %s: %s\n", what, lm_errmsg());
		fails++;
	} else {
		ref_mm(yr, x, w, bias ? b : NULL, n, N, K);
		double e = rel(y, yr, (size_t)n * N);
		check(e <= 1e-6, what, e, 1e-6);
	}
	be->i->weight_free(be, &wt);
	free(w), free(x), free(b), free(y), free(yr), free(h), free(qw), free(qz), free(sc);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0); /* lines reach the log even if the test crashes */
	struct backend *be = backend_cpu_create();
	if (!be) {
		printf("FAIL: %s\n", lm_errmsg());
		return 1;
	}
	printf("threads: %d\n", be->n_threads);

	/* matmul */
	test_matmul(be, DT_F32, 3, 37, 29, true);
	test_matmul(be, DT_F16, 45, 18, 100, false);
	test_matmul(be, DT_BF16, 70, 66, 64, true);
	test_matmul(be, DT_BF16, 1, 7, 9, false);
	test_matmul(be, DT_Q4, 5, 48, 96, true);
	test_matmul(be, DT_Q4, 33, 16, 64, false);

	/* embed, add_rmsnorm, swiglu, logits on a small model-like set */
	enum { V = 50, D = 24, NT = 5, FF = 13 };
	float tab[V * D], nw[D], x[NT * D], dx[NT * D], h[NT * D], gu[NT * 2 * FF], ff[NT * FF], lg[NT * V];
	double r[NT * V];
	for (int i = 0; i < V * D; i++) tab[i] = frand();
	for (int i = 0; i < D; i++) nw[i] = 1 + 0.5f * frand();
	for (int i = 0; i < NT * D; i++) dx[i] = frand();
	for (int i = 0; i < NT * 2 * FF; i++) gu[i] = 4 * frand();
	struct host_weight ht = { .dt = DT_F32, .rows = V, .cols = D, .data = tab };
	struct host_weight hn = { .dt = DT_F32, .rows = 1, .cols = D, .data = nw };
	struct weight wtab, wn;
	int32_t ids[NT] = { 3, 0, 49, 7, 3 }, blocks[1] = { 0 };
	float inv_freq[1] = { 1 };
	struct step st = { .ids = ids, .n = NT, .pos0 = 0, .blocks = blocks, .n_blocks = 1, .inv_freq = inv_freq,
			   .rope_mscale = 1 };
	if (be->i->weight_load(be, &wtab, &ht) || be->i->weight_load(be, &wn, &hn) || be->i->set_step(be, &st) ||
	    be->i->embed(be, x, &wtab)) {
		printf("FAIL: %s\n", lm_errmsg());
		return 1;
	}
	double e = 0;
	int rc;
	for (int i = 0; i < NT; i++)
		for (int k = 0; k < D; k++) e = fmax(e, fabs(x[i * D + k] - tab[ids[i] * D + k]));
	check(e == 0, "embed", e, 0);
	double xr[NT * D], hr[NT * D];
	for (int i = 0; i < NT * D; i++) xr[i] = (double)x[i] + dx[i];
	for (int i = 0; i < NT; i++) {
		double ss = 0;
		for (int k = 0; k < D; k++) ss += xr[i * D + k] * xr[i * D + k];
		for (int k = 0; k < D; k++) hr[i * D + k] = nw[k] * xr[i * D + k] / sqrt(ss / D + 1e-5);
	}
	be->i->add_rmsnorm(be, h, x, dx, &wn, NT, 1e-5f);
	check(rel(x, xr, NT * D) <= 1e-6, "add_rmsnorm: residual", rel(x, xr, NT * D), 1e-6);
	check(rel(h, hr, NT * D) <= 1e-6, "add_rmsnorm: normed", rel(h, hr, NT * D), 1e-6);
	double fr[NT * FF];
	for (int i = 0; i < NT; i++)
		for (int j = 0; j < FF; j++) {
			double g = gu[i * 2 * FF + j], u = gu[i * 2 * FF + FF + j];
			fr[i * FF + j] = g / (1 + exp(-g)) * u;
		}
	be->i->swiglu(be, ff, gu, NT, FF);
	check(rel(ff, fr, NT * FF) <= 1e-6, "swiglu", rel(ff, fr, NT * FF), 1e-6);
	be->i->logits(be, lg, h, &wtab, NT);
	ref_mm(r, h, tab, NULL, NT, V, D);
	check(rel(lg, r, NT * V) <= 1e-6, "logits", rel(lg, r, NT * V), 1e-6);

	/* qk_norm: 3 q heads, 1 k head and 1 v head of 6 per token, in place; the weights differ per head kind */
	enum { QH = 3, KH = 1, HD = 6, QW = (QH + 2 * KH) * HD };
	float qkv[NT * QW], qn[HD], kn[HD];
	double qr[NT * QW];
	for (int i = 0; i < NT * QW; i++) qr[i] = qkv[i] = 3 * frand();
	uint16_t qn16[HD]; /* q_norm as a bf16 checkpoint holds it (float in the backend), k_norm as F32 */
	for (int i = 0; i < HD; i++) {
		qn16[i] = f32_to_bf16(1 + 0.5f * frand());
		qn[i] = bf16_to_f32(qn16[i]);
		kn[i] = 0.5f + frand();
	}
	for (int i = 0; i < NT; i++)
		for (int hh = 0; hh < QH + KH; hh++) {
			double *v = qr + i * QW + hh * HD, ss = 0;
			for (int k = 0; k < HD; k++) ss += v[k] * v[k];
			for (int k = 0; k < HD; k++) v[k] = (hh < QH ? qn[k] : kn[k]) * v[k] / sqrt(ss / HD + 1e-6);
		}
	struct host_weight hq = { .dt = DT_BF16, .rows = 1, .cols = HD, .data = qn16 },
			   hk = { .dt = DT_F32, .rows = 1, .cols = HD, .data = kn };
	struct weight wq, wk;
	if (be->i->weight_load(be, &wq, &hq) || be->i->weight_load(be, &wk, &hk) ||
	    be->i->qk_norm(be, qkv, &wq, &wk, NT, QH, KH, 1e-6f)) {
		printf("FAIL: qk_norm: %s\n", lm_errmsg());
		return 1;
	}
	check(rel(qkv, qr, NT * QW) <= 1e-6, "qk_norm: q, k normed per head, v as it was", rel(qkv, qr, NT * QW), 1e-6);
	e = 0;
	for (int i = 0; i < NT; i++)
		for (int k = (QH + KH) * HD; k < QW; k++) e = fmax(e, fabs(qkv[i * QW + k] - qr[i * QW + k]));
	check(e == 0, "qk_norm: v heads untouched", e, 0);
	rc = be->i->qk_norm(be, qkv, &wq, &wn, NT, QH, KH, 1e-6f); /* a k_norm of another size */
	printf("qk_norm with norms of %d and %d: %s\n", wq.cols, wn.cols, rc ? lm_errmsg() : "accepted");
	if (!rc) fails++;
	be->i->weight_free(be, &wq);
	be->i->weight_free(be, &wk);

	ids[2] = V; /* out of the vocabulary: an error, not a read past the table */
	rc = be->i->embed(be, x, &wtab);
	printf("embed of id %d: %s\n", V, rc ? lm_errmsg() : "accepted");
	if (!rc) fails++;

	/* memory accounting */
	struct mem_stats ms;
	be->i->mem_stats(be, &ms);
	size_t wbytes = ms.cat[MEM_WEIGHTS];
	bool ok = wbytes == wtab.bytes + wn.bytes && wtab.bytes == sizeof tab && wn.bytes == sizeof nw;
	printf("weights: %zu bytes accounted, %zu + %zu held%s\n", wbytes, wtab.bytes, wn.bytes, ok ? "" : "  FAIL");
	fails += !ok;
	size_t act0 = ms.cat[MEM_ACT];
	void *a = be->i->alloc(be, 1000, MEM_ACT), *b = be->i->alloc(be, 24, MEM_ACT);
	be->i->mem_stats(be, &ms);
	ok = ms.cat[MEM_ACT] == act0 + 1024 && ms.peak[MEM_ACT] >= act0 + 1024;
	be->i->free(be, a);
	be->i->free(be, b);
	struct mem_stats ms2;
	be->i->mem_stats(be, &ms2);
	ok = ok && ms2.cat[MEM_ACT] == act0 && ms2.peak[MEM_ACT] == ms.peak[MEM_ACT];
	printf("activations: +1024 bytes then freed, peak kept%s\n", ok ? "" : "  FAIL");
	fails += !ok;
	be->i->weight_free(be, &wtab);
	be->i->weight_free(be, &wn);
	be->i->mem_stats(be, &ms);
	ok = ms.cat[MEM_WEIGHTS] == 0 && ms.is_host && ms.total_valid && ms.free_valid && ms.used_valid &&
	     ms.total >= ms.free && ms.used_by_process > 0 && ms.device_name[0];
	printf("after freeing: weights %zu; host total %zu MiB, available %zu MiB, RSS %zu MiB, '%s'%s\n",
	       ms.cat[MEM_WEIGHTS], ms.total >> 20, ms.free >> 20, ms.used_by_process >> 20, ms.device_name,
	       ok ? "" : "  FAIL");
	fails += !ok;
	backend_destroy(be);
	if (fails) printf("%d failure(s)\n", fails);
	return fails ? 1 : 0;
}
