/* test_awq_ops: every op of awq_dev.h, the cuda implementation against the cpu one, on random inputs:
 * normalized max error with a bound per op, NaN/Inf counts, the first mismatching index, sentinel floats
 * after every device output (out-of-bounds writes). The quantizer must agree bit for bit (same float
 * operations on the same input). Exits 77 without a GPU (or without CUDA in this build).
 * LMTERM_AWQ_TF32=1 runs the GEMM-based ops (matmul, attention) with TF32 and their looser bounds. */
#include "config.h"
#include "awq_dev.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if HAVE_CUDA

enum { GUARD = 64 };
static const float SENTINEL = -12345.678f;
static struct awq_dev *cpu, *gpu;
static int fails, checks;
static uint64_t rng = 42;

static float frand(void) /* uniform in [-1, 1) */
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
static float *rnd(size_t n, float lo, float hi)
{
	float *p = malloc(sizeof(float) * n);
	for (size_t i = 0; i < n; i++) p[i] = lo + (frand() + 1.0f) * 0.5f * (hi - lo);
	return p;
}
/* a device copy of h with GUARD sentinel floats after it */
static float *up(const void *h, size_t bytes)
{
	size_t n = (bytes + 3) / 4;
	float *d = gpu->alloc(gpu, sizeof(float) * (n + GUARD));
	if (!d) { fprintf(stderr, "alloc: %s\n", lm_errmsg()); exit(1); }
	gpu->upload(gpu, d, h, bytes);
	float g[GUARD];
	for (int i = 0; i < GUARD; i++) g[i] = SENTINEL;
	gpu->upload(gpu, d + n, g, sizeof g);
	return d;
}
static float *upf(const float *h, size_t n) { return up(h, sizeof(float) * n); }
/* download n floats and check the guard */
static float *down(const char *what, const float *d, size_t n)
{
	float *h = malloc(sizeof(float) * (n + GUARD));
	if (gpu->sync(gpu)) { printf("FAIL %s: %s\n", what, lm_errmsg()); fails++; }
	gpu->download(gpu, h, d, sizeof(float) * (n + GUARD));
	for (int i = 0; i < GUARD; i++)
		if (memcmp(&h[n + i], &SENTINEL, 4) != 0) {
			printf("FAIL %s: sentinel %d after the output overwritten\n", what, i);
			fails++;
			break;
		}
	return h;
}

/* max |got - ref| / max |ref|, NaNs, first index beyond tol */
static void cmp(const char *what, const float *ref, const float *got, size_t n, double tol)
{
	double mref = 0, merr = 0;
	size_t nan = 0, first = (size_t)-1, worst = 0;
	for (size_t i = 0; i < n; i++) mref = fmax(mref, fabs(ref[i]));
	if (mref == 0) mref = 1;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(got[i]) != !isfinite(ref[i])) { nan++; continue; }
		double e = fabs((double)got[i] - ref[i]) / mref;
		if (e > merr) { merr = e; worst = i; }
		if (e > tol && first == (size_t)-1) first = i;
	}
	checks++;
	bool ok = nan == 0 && merr <= tol;
	printf("%-4s %-34s n %-9zu max err %.3g (bound %.3g) at %zu (ref %.6g got %.6g), non-finite %zu", ok ? "ok" : "FAIL",
	       what, n, merr, tol, worst, ref[worst], got[worst], nan);
	if (first != (size_t)-1) printf(", first beyond bound at %zu", first);
	printf("\n");
	if (!ok) fails++;
}
static void cmp_bytes(const char *what, const void *ref, const void *got, size_t n, size_t elem)
{
	size_t bad = 0, first = (size_t)-1;
	for (size_t i = 0; i < n; i++)
		if (memcmp((const char *)ref + i * elem, (const char *)got + i * elem, elem)) {
			if (!bad) first = i;
			bad++;
		}
	checks++;
	printf("%-4s %-34s n %-9zu %zu differ", bad ? "FAIL" : "ok", what, n, bad);
	if (bad) printf(" (first at %zu)", first);
	printf("\n");
	if (bad) fails++;
}

static void t_load(void)
{
	size_t n = 100003;
	uint16_t *h = malloc(2 * n);
	for (int dt = DT_F16; dt <= DT_BF16; dt++) {
		for (size_t i = 0; i < n; i++) h[i] = dt == DT_F16 ? f32_to_f16(frand() * 3) : f32_to_bf16(frand() * 3);
		float *ref = malloc(sizeof(float) * n), *d = upf(ref, n);
		cpu->load(cpu, ref, h, (enum dtype)dt, n);
		gpu->load(gpu, d, h, (enum dtype)dt, n);
		float *got = down("load", d, n);
		cmp_bytes(dt == DT_F16 ? "load f16" : "load bf16", ref, got, n, 4);
		free(ref); free(got); gpu->free(gpu, d);
	}
	free(h);
}

static void t_matmul(int m, int n, int k, bool bias)
{
	float *x = rnd((size_t)m * k, -1, 1), *w = rnd((size_t)n * k, -0.1f, 0.1f), *b = bias ? rnd(n, -1, 1) : NULL;
	float *y = malloc(sizeof(float) * m * n);
	cpu->matmul(cpu, y, x, w, b, m, n, k);
	float *dx = upf(x, (size_t)m * k), *dw = upf(w, (size_t)n * k), *db = b ? upf(b, n) : NULL;
	float *dy = upf(y, (size_t)m * n);
	gpu->zero(gpu, dy, sizeof(float) * m * n);
	gpu->matmul(gpu, dy, dx, dw, db, m, n, k);
	float *got = down("matmul", dy, (size_t)m * n);
	char what[96];
	snprintf(what, sizeof what, "matmul %dx%dx%d%s", m, n, k, bias ? " +bias" : "");
	cmp(what, y, got, (size_t)m * n, gpu->tf32 ? 3e-3 : 1e-5);
	free(x); free(w); free(b); free(y); free(got);
	gpu->free(gpu, dx); gpu->free(gpu, dw); gpu->free(gpu, db); gpu->free(gpu, dy);
}

static void t_rmsnorm(void)
{
	int m = 37, d = 1000;
	float *x = rnd((size_t)m * d, -2, 2), *w = rnd(d, 0.5f, 1.5f), *h = malloc(sizeof(float) * m * d);
	cpu->rmsnorm(cpu, h, x, w, m, d, 1e-5f);
	float *dx = upf(x, (size_t)m * d), *dw = upf(w, d), *dh = upf(h, (size_t)m * d);
	gpu->rmsnorm(gpu, dh, dx, dw, m, d, 1e-5f);
	float *got = down("rmsnorm", dh, (size_t)m * d);
	cmp("rmsnorm 37x1000", h, got, (size_t)m * d, 1e-6);
	free(x); free(w); free(h); free(got);
	gpu->free(gpu, dx); gpu->free(gpu, dw); gpu->free(gpu, dh);
}

static void t_rope(int T, int hd)
{
	int m = 3 * T, nh = 4;
	float *x = rnd((size_t)m * nh * hd, -1, 1), *inv = malloc(sizeof(float) * hd / 2);
	for (int j = 0; j < hd / 2; j++) inv[j] = powf(10000.0f, -2.0f * j / hd);
	float *dx = upf(x, (size_t)m * nh * hd), *dinv = upf(inv, hd / 2);
	cpu->rope(cpu, x, m, nh, hd, T, inv);
	gpu->rope(gpu, dx, m, nh, hd, T, dinv);
	float *got = down("rope", dx, (size_t)m * nh * hd);
	char what[96];
	snprintf(what, sizeof what, "rope seqlen %d hd %d", T, hd);
	cmp(what, x, got, (size_t)m * nh * hd, 2e-6 * (T > 512 ? 10 : 1)); /* cosf/sinf of large angles: ulps */
	free(x); free(inv); free(got);
	gpu->free(gpu, dx); gpu->free(gpu, dinv);
}

static void t_attention(int W, int T, int nh, int nkv, int hd)
{
	int m = W * T;
	size_t nq = (size_t)m * nh * hd, nk = (size_t)m * nkv * hd;
	float *q = rnd(nq, -1, 1), *k = rnd(nk, -1, 1), *v = rnd(nk, -1, 1), *o = malloc(sizeof(float) * nq);
	/* sharper attention than uniform noise gives: scale q */
	for (size_t i = 0; i < nq; i++) q[i] *= 3;
	cpu->attention(cpu, o, q, k, v, m, T, nh, nkv, hd);
	float *dq = upf(q, nq), *dk = upf(k, nk), *dv = upf(v, nk), *d_o = upf(o, nq);
	gpu->zero(gpu, d_o, sizeof(float) * nq);
	gpu->attention(gpu, d_o, dq, dk, dv, m, T, nh, nkv, hd);
	float *got = down("attention", d_o, nq);
	char what[96];
	snprintf(what, sizeof what, "attention %dx%d h%d/%d hd%d", W, T, nh, nkv, hd);
	cmp(what, o, got, nq, gpu->tf32 ? 5e-3 : 1e-5);
	free(q); free(k); free(v); free(o); free(got);
	gpu->free(gpu, dq); gpu->free(gpu, dk); gpu->free(gpu, dv); gpu->free(gpu, d_o);
}

static void t_elementwise(void)
{
	size_t n = 300007;
	float *g = rnd(n, -6, 6), *u = rnd(n, -2, 2), *o = malloc(sizeof(float) * n);
	float *dg = upf(g, n), *du = upf(u, n), *d_o = upf(o, n);
	cpu->swiglu(cpu, o, g, u, n);
	gpu->swiglu(gpu, d_o, dg, du, n);
	float *got = down("swiglu", d_o, n);
	cmp("swiglu", o, got, n, 1e-6);
	free(got);
	cpu->add(cpu, g, u, n);
	gpu->add(gpu, dg, du, n);
	got = down("add", dg, n);
	cmp_bytes("add", g, got, n, 4);
	free(got);
	/* scale_cols, unscale_rows (+ bias), div: one IEEE operation each, exact */
	int out = 96, in = 640;
	float *w = rnd((size_t)out * in, -1, 1), *s = rnd(in, 0.2f, 3), *b = rnd(out, -1, 1);
	float *dw = upf(w, (size_t)out * in), *ds = upf(s, in), *db = upf(b, out);
	cpu->scale_cols(cpu, w, out, in, s);
	gpu->scale_cols(gpu, dw, out, in, ds);
	got = down("scale_cols", dw, (size_t)out * in);
	cmp_bytes("scale_cols", w, got, (size_t)out * in, 4);
	free(got);
	cpu->unscale_rows(cpu, w, b, out, in, s);
	gpu->unscale_rows(gpu, dw, db, out, in, ds);
	got = down("unscale_rows", dw, (size_t)out * in);
	cmp_bytes("unscale_rows", w, got, (size_t)out * in, 4);
	free(got);
	got = down("unscale_rows bias", db, out);
	cmp_bytes("unscale_rows bias", b, got, out, 4);
	free(got);
	cpu->div(cpu, b, s, out);
	gpu->div(gpu, db, ds, out);
	got = down("div", db, out);
	cmp_bytes("div", b, got, out, 4);
	free(got);
	free(g); free(u); free(o); free(w); free(s); free(b);
	gpu->free(gpu, dg); gpu->free(gpu, du); gpu->free(gpu, d_o); gpu->free(gpu, dw); gpu->free(gpu, ds);
	gpu->free(gpu, db);
}

static void t_sums(void)
{
	int m = 1000, d = 777;
	float *x = rnd((size_t)m * d, -3, 3);
	double *acc = malloc(sizeof(double) * d), *got = malloc(sizeof(double) * d);
	for (int j = 0; j < d; j++) acc[j] = j;
	double *dacc = (double *)up(acc, sizeof(double) * d);
	float *dx = upf(x, (size_t)m * d);
	cpu->absmean_acc(cpu, acc, x, m, d);
	gpu->absmean_acc(gpu, dacc, dx, m, d);
	gpu->absmean_acc(gpu, dacc, dx, 0, d); /* no rows: unchanged */
	cpu->absmean_acc(cpu, acc, x, 100, d);
	gpu->absmean_acc(gpu, dacc, dx, 100, d);
	gpu->sync(gpu);
	gpu->download(gpu, got, dacc, sizeof(double) * d);
	double e = 0;
	for (int j = 0; j < d; j++) e = fmax(e, fabs(got[j] - acc[j]) / fabs(acc[j]));
	checks++;
	printf("%-4s %-34s max rel err %.3g (bound 1e-12)\n", e <= 1e-12 ? "ok" : "FAIL", "absmean_acc 1000x777", e);
	if (!(e <= 1e-12)) fails++;

	size_t n = 1234567;
	float *a = rnd(n, -1, 1), *b = rnd(n, -1, 1), *c = rnd(n, -0.1f, 0.1f), *yq = rnd(n, -1, 1);
	float *da = upf(a, n), *dbb = upf(b, n), *dc = upf(c, n), *dyq = upf(yq, n);
	double r1 = cpu->mse(cpu, a, b, n), r2 = gpu->mse(gpu, da, dbb, n);
	double e2 = fabs(r2 - r1) / r1, r2b = gpu->mse(gpu, da, dbb, n);
	checks++;
	printf("%-4s %-34s cpu %.17g cuda %.17g rel %.3g (bound 1e-12), repeat %s\n",
	       e2 <= 1e-12 && r2 == r2b ? "ok" : "FAIL", "mse", r1, r2, e2, r2 == r2b ? "identical" : "DIFFERS");
	if (!(e2 <= 1e-12 && r2 == r2b)) fails++;
	double n1, d1, n2, d2;
	cpu->layer_err(cpu, a, b, c, yq, n, &n1, &d1);
	gpu->layer_err(gpu, da, dbb, dc, dyq, n, &n2, &d2);
	double e3 = fmax(fabs(n2 - n1) / n1, fabs(d2 - d1) / d1);
	checks++;
	printf("%-4s %-34s num %.10g/%.10g den %.10g/%.10g rel %.3g (bound 1e-12)\n", e3 <= 1e-12 ? "ok" : "FAIL",
	       "layer_err", n1, n2, d1, d2, e3);
	if (!(e3 <= 1e-12)) fails++;
	free(x); free(acc); free(got); free(a); free(b); free(c); free(yq);
	gpu->free(gpu, dacc); gpu->free(gpu, dx); gpu->free(gpu, da); gpu->free(gpu, dbb); gpu->free(gpu, dc);
	gpu->free(gpu, dyq);
}

static void t_quant(int out, int in, int group)
{
	size_t n = (size_t)out * in;
	float *w = rnd(n, -0.05f, 0.05f), *s = rnd(in, 0.3f, 3.0f);
	/* a few outliers and a constant group, as real weights have */
	for (int o = 0; o < out; o += 7) w[(size_t)o * in + (o * 13) % in] = 0.7f;
	for (int i = 0; i < group; i++) w[i] = 0.01f;
	char what[96];
	float *fq = malloc(sizeof(float) * n);
	cpu->fake_quant(cpu, fq, w, s, out, in, group);
	float *dw = upf(w, n), *ds = upf(s, in), *dfq = upf(fq, n);
	gpu->fake_quant(gpu, dfq, dw, ds, out, in, group);
	float *got = down("fake_quant", dfq, n);
	snprintf(what, sizeof what, "fake_quant %dx%d g%d", out, in, group);
	cmp_bytes(what, fq, got, n, 4);
	free(got);

	int ng = in / group;
	int32_t *qw1 = malloc(4 * (size_t)in * (out / 8)), *qw2 = malloc(4 * (size_t)in * (out / 8));
	int32_t *qz1 = malloc(4 * (size_t)ng * (out / 8)), *qz2 = malloc(4 * (size_t)ng * (out / 8));
	uint16_t *s1 = malloc(2 * (size_t)ng * out), *s2 = malloc(2 * (size_t)ng * out);
	float *deq = malloc(sizeof(float) * n), *ddeq = upf(deq, n);
	cpu->quantize(cpu, w, out, in, group, qw1, qz1, s1, deq);
	gpu->quantize(gpu, dw, out, in, group, qw2, qz2, s2, ddeq);
	got = down("quantize deq", ddeq, n);
	snprintf(what, sizeof what, "quantize qweight %dx%d g%d", out, in, group);
	cmp_bytes(what, qw1, qw2, (size_t)in * (out / 8), 4);
	cmp_bytes("quantize qzeros", qz1, qz2, (size_t)ng * (out / 8), 4);
	cmp_bytes("quantize scales", s1, s2, (size_t)ng * out, 2);
	cmp_bytes("quantize deq", deq, got, n, 4);
	free(got);
	free(w); free(s); free(fq); free(qw1); free(qw2); free(qz1); free(qz2); free(s1); free(s2); free(deq);
	gpu->free(gpu, dw); gpu->free(gpu, ds); gpu->free(gpu, dfq); gpu->free(gpu, ddeq);
}

int main(void)
{
	const char *tf = getenv("LMTERM_AWQ_TF32");
	if (awq_dev_cuda_create(&gpu, tf && strcmp(tf, "0") != 0)) {
		printf("SKIP: %s\n", lm_errmsg());
		return 77;
	}
	awq_dev_cpu_create(&cpu, 4);
	printf("awq ops, cuda (%s GEMMs) against cpu\n", gpu->tf32 ? "TF32" : "fp32");
	t_load();
	t_matmul(300, 264, 520, true);
	t_matmul(2048, 512, 4096, false);
	t_matmul(7, 16, 9, true);
	t_rmsnorm();
	t_rope(64, 128);
	t_rope(2048, 128);
	t_attention(2, 96, 8, 2, 64);
	t_attention(1, 2048, 2, 1, 128);
	t_attention(3, 17, 4, 4, 32);
	t_elementwise();
	t_sums();
	t_quant(64, 512, 128);
	t_quant(256, 1024, 128);
	t_quant(48, 96, 32);
	t_quant(24, 40, 8);
	if (gpu->sync(gpu)) { printf("FAIL: %s\n", lm_errmsg()); fails++; }
	printf("%d checks, %d failed\n", checks, fails);
	awq_dev_destroy(gpu);
	awq_dev_destroy(cpu);
	return fails ? 1 : 0;
}

#else
int main(void)
{
	printf("SKIP: built without CUDA\n");
	return 77;
}
#endif
