/* test_backend_ops: every op and fused op of the cuda backend against the cpu backend (the reference), as
 * ggml's test-backend-ops does, for F16 and BF16 activations:
 *   allocator (exact bytes and peaks per category), embed (alone and with the first norm: embed_norm),
 *   add_rmsnorm (with and without the residual),
 *   qk_norm (Qwen3's per-head q/k RMSNorm, in place on the qkv rows),
 *   matmul (GEMV batch 1..8, cuBLAS beyond, K not a multiple of 8, bias, F32 weights converted),
 *   W4A16 matmul (AWQ layout repacked; GEMV and dequant + cuBLAS), the norms folded into it, matmul + swiglu fused, swiglu, rope_kv + attention over a
 *   paged cache (policies 0/8/4, prefill then decode then a chunk), logits (float), argmax, and a decode
 *   step captured as a CUDA graph and replayed at new positions.
 * Inputs are fresh random values every run (seed printed; LMTERM_TEST_SEED repeats a run), rounded to the
 * activation type before both backends see them. Each output: normalized error ||gpu - cpu|| / ||cpu||
 * under a bound per op; poisoned with NaN bytes first so an unwritten element fails; guard bytes after it
 * must survive. Exits 77 without a GPU or a CUDA build. */
#include "config.h"
#include "backend.h"
#include "common.h"
#include "sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if HAVE_CUDA
enum { GUARD = 256 };
#define GUARD_BYTE 0xA5

static int fails, checks;
static uint64_t rng;
static enum dtype act;
static struct backend *gpu, *cpu;

static uint64_t rnext(void)
{
	uint64_t x = rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}
static float frand(void) { return (float)((rnext() >> 40) * (1.0 / 16777216.0)) * 2.f - 1.f; }
static int irand(int n) { return (int)((rnext() >> 33) % (uint64_t)n); }

static uint16_t to_act(float f) { return act == DT_BF16 ? f32_to_bf16(f) : f32_to_f16(f); }
static float from_act(uint16_t h) { return act == DT_BF16 ? bf16_to_f32(h) : f16_to_f32(h); }
static float round_act(float f) { return from_act(to_act(f)); }

#define DIE(...)                                                                                                 \
	do {                                                                                                     \
		printf("FAIL: " __VA_ARGS__);                                                                    \
		printf(" (%s)\n", lm_errmsg());                                                                  \
		exit(1);                                                                                         \
	} while (0)

/* random values rounded to the activation type, scaled */
static float *rand_vec(size_t n, float scale)
{
	float *v = malloc(n * sizeof(float));
	if (!v) DIE("out of memory");
	for (size_t i = 0; i < n; i++) v[i] = round_act(scale * frand());
	return v;
}

/* an activation buffer on both backends: cpu float, gpu act + guard bytes */
struct buf {
	size_t n;
	void *c, *g;
};

static struct buf buf_new(size_t n)
{
	struct buf b = { .n = n };
	b.c = cpu->i->alloc(cpu, n * sizeof(float), MEM_ACT);
	b.g = gpu->i->alloc(gpu, n * 2 + GUARD, MEM_ACT);
	if (!b.c || !b.g) DIE("alloc");
	uint8_t guard[GUARD];
	memset(guard, GUARD_BYTE, GUARD);
	if (gpu->i->upload(gpu, (char *)b.g + n * 2, guard, GUARD)) DIE("upload guard");
	return b;
}

static void buf_free(struct buf *b)
{
	cpu->i->free(cpu, b->c);
	gpu->i->free(gpu, b->g);
	memset(b, 0, sizeof *b);
}

static void buf_put(struct buf *b, const float *v)
{
	uint16_t *h = malloc(b->n * 2);
	if (!h) DIE("out of memory");
	for (size_t i = 0; i < b->n; i++) h[i] = to_act(v[i]);
	if (cpu->i->upload(cpu, b->c, v, b->n * sizeof(float)) || gpu->i->upload(gpu, b->g, h, b->n * 2)) DIE("upload");
	free(h);
}

/* NaN bytes in the gpu buffer (0xffff is a NaN in fp16 and bf16) */
static void buf_poison(struct buf *b)
{
	uint16_t *h = malloc(b->n * 2);
	if (!h) DIE("out of memory");
	memset(h, 0xff, b->n * 2);
	if (gpu->i->upload(gpu, b->g, h, b->n * 2)) DIE("upload");
	free(h);
}

static void check_guard(const char *what, void *g, size_t bytes)
{
	uint8_t guard[GUARD];
	if (gpu->i->download(gpu, guard, (char *)g + bytes, GUARD)) DIE("%s: download guard", what);
	for (int i = 0; i < GUARD; i++)
		if (guard[i] != GUARD_BYTE) {
			printf("FAIL: %s: guard byte %d after the output was overwritten (0x%02x)\n", what, i, guard[i]);
			fails++;
			return;
		}
}

/* compare gpu (act) to cpu (float) outputs of n elements; cols for the worst-row report */
static double compare(const char *what, const float *gv, const float *cv, size_t n, double bound)
{
	double num = 0, den = 0;
	size_t nan = 0, worst = 0;
	double wd = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(gv[i])) {
			nan++;
			continue;
		}
		double d = (double)gv[i] - cv[i];
		num += d * d;
		den += (double)cv[i] * cv[i];
		if (fabs(d) > wd) {
			wd = fabs(d);
			worst = i;
		}
	}
	double err = den > 0 ? sqrt(num / den) : sqrt(num);
	checks++;
	bool ok = !nan && err <= bound;
	printf("%-4s %-52s err %.2e (bound %.0e)%s", ok ? "ok" : "FAIL", what, err, bound, nan ? "" : "\n");
	if (nan) printf(", %zu NaN/Inf or unwritten elements\n", nan);
	if (!ok) {
		printf("     worst at %zu: gpu %g cpu %g\n", worst, gv[worst], cv[worst]);
		fails++;
	}
	return err;
}

static void compare_buf(const char *what, struct buf *b, double bound)
{
	float *cv = malloc(b->n * sizeof(float)), *gv = malloc(b->n * sizeof(float));
	uint16_t *h = malloc(b->n * 2);
	if (!cv || !gv || !h) DIE("out of memory");
	if (cpu->i->download(cpu, cv, b->c, b->n * sizeof(float)) || gpu->i->download(gpu, h, b->g, b->n * 2))
		DIE("%s: download", what);
	for (size_t i = 0; i < b->n; i++) gv[i] = from_act(h[i]);
	compare(what, gv, cv, b->n, bound);
	check_guard(what, b->g, b->n * 2);
	free(cv);
	free(gv);
	free(h);
}

/* bounds: outputs rounded once to the activation type differ from float by half an ulp at most */
static double b_round(void) { return act == DT_BF16 ? 6e-3 : 8e-4; }

/* ---------------------------------------------------------------------------------------------------- */

static void load_both(struct weight *wc, struct weight *wg, const struct host_weight *hw, const char *what)
{
	if (cpu->i->weight_load(cpu, wc, hw)) DIE("%s: cpu weight_load", what);
	if (gpu->i->weight_load(gpu, wg, hw)) DIE("%s: cuda weight_load", what);
}

static void free_both(struct weight *wc, struct weight *wg)
{
	cpu->i->weight_free(cpu, wc);
	gpu->i->weight_free(gpu, wg);
}

/* a dense host weight [rows][cols] of dt with values scale * U(-1, 1) */
static void *host_dense(enum dtype dt, int rows, int cols, float scale)
{
	size_t n = (size_t)rows * cols;
	void *p = malloc(n * dtype_size(dt));
	if (!p) DIE("out of memory");
	for (size_t i = 0; i < n; i++) {
		float v = scale * frand();
		if (dt == DT_F32) ((float *)p)[i] = v;
		else if (dt == DT_F16) ((uint16_t *)p)[i] = f32_to_f16(v);
		else ((uint16_t *)p)[i] = f32_to_bf16(v);
	}
	return p;
}

static void test_alloc(void)
{
	struct mem_stats m0, m1, m2;
	if (gpu->i->mem_stats(gpu, &m0)) DIE("mem_stats");
	const size_t sz[3] = { 1000 + (size_t)irand(1000), 3u << 20, 17 };
	const enum mem_cat cat[3] = { MEM_WEIGHTS, MEM_KV, MEM_OTHER };
	void *p[3];
	for (int i = 0; i < 3; i++)
		if (!(p[i] = gpu->i->alloc(gpu, sz[i], cat[i]))) DIE("alloc");
	gpu->i->mem_stats(gpu, &m1);
	for (int i = 0; i < 3; i++) gpu->i->free(gpu, p[i]);
	gpu->i->mem_stats(gpu, &m2);
	bool ok = m1.cat[MEM_WEIGHTS] - m0.cat[MEM_WEIGHTS] == sz[0] && m1.cat[MEM_KV] - m0.cat[MEM_KV] == sz[1] &&
		  m1.cat[MEM_OTHER] - m0.cat[MEM_OTHER] == sz[2] && m1.cat[MEM_ACT] == m0.cat[MEM_ACT];
	for (int i = 0; i < MEM_NCAT; i++) ok = ok && m2.cat[i] == m0.cat[i] && m2.peak[i] >= m1.cat[i];
	ok = ok && m1.total_valid && m1.free_valid && m1.total > 0 && m1.device_name[0];
	checks++;
	printf("%-4s allocator: exact bytes per category, peaks, free/total (%s, %.1f of %.1f GiB free, process %s)\n",
	       ok ? "ok" : "FAIL", m1.device_name, m1.free / 1073741824.0, m1.total / 1073741824.0,
	       m1.used_valid ? "used known" : "used N/A");
	if (!ok) fails++;
}

/* the step state of both backends (a cache must exist: the gpu takes the RoPE length from it) */
static float inv_freq[128];
static void set_step_both(const int32_t *ids, int n, int pos0, const int32_t *blocks, int nb)
{
	struct step st = { .ids = ids, .n = n, .pos0 = pos0, .blocks = blocks, .n_blocks = nb, .inv_freq = inv_freq,
			   .rope_mscale = 1.0f };
	if (cpu->i->set_step(cpu, &st) || gpu->i->set_step(gpu, &st)) DIE("set_step");
}

static void test_embed(int vocab, int dim, int n, const int32_t *blocks, int nb)
{
	char what[96];
	void *tab = host_dense(act, vocab, dim, 1.0f);
	struct host_weight hw = { .dt = act, .rows = vocab, .cols = dim, .data = tab };
	struct weight wc, wg;
	load_both(&wc, &wg, &hw, "embed");
	int32_t ids[64];
	for (int i = 0; i < n; i++) ids[i] = irand(vocab);
	set_step_both(ids, n, 0, blocks, nb);
	struct buf x = buf_new((size_t)n * dim);
	buf_poison(&x);
	if (cpu->i->embed(cpu, x.c, &wc) || gpu->i->embed(gpu, x.g, &wg)) DIE("embed");
	snprintf(what, sizeof what, "embed vocab %d dim %d n %d", vocab, dim, n);
	compare_buf(what, &x, 0.0); /* a copy: exact */
	/* an id outside the vocabulary is an error, not a read out of bounds */
	ids[0] = vocab;
	set_step_both(ids, n, 0, blocks, nb);
	checks++;
	if (gpu->i->embed(gpu, x.g, &wg) == LM_OK) {
		printf("FAIL: embed accepted token id %d of a %d-token vocabulary\n", vocab, vocab);
		fails++;
	}
	buf_free(&x);
	free_both(&wc, &wg);
	free(tab);
}

/* the gpu's embed_norm (the lookup and the first norm in one kernel) against the cpu's embed, add_rmsnorm */
static void test_embed_norm(int vocab, int dim, int n, const int32_t *blocks, int nb)
{
	char what[96];
	void *tab = host_dense(act, vocab, dim, 1.0f);
	float *w = host_dense(DT_F32, 1, dim, 1.0f);
	struct host_weight ht = { .dt = act, .rows = vocab, .cols = dim, .data = tab };
	struct host_weight hn = { .dt = DT_F32, .rows = 1, .cols = dim, .data = w };
	struct weight tc, tg, nc, ng;
	load_both(&tc, &tg, &ht, "embed");
	load_both(&nc, &ng, &hn, "rmsnorm");
	int32_t ids[64];
	for (int i = 0; i < n; i++) ids[i] = irand(vocab);
	set_step_both(ids, n, 0, blocks, nb);
	struct buf x = buf_new((size_t)n * dim), h = buf_new((size_t)n * dim);
	buf_poison(&x);
	buf_poison(&h);
	const float eps = 1e-5f;
	int rc = gpu->i->embed_norm ? gpu->i->embed_norm(gpu, x.g, h.g, &tg, &ng, n, eps) : 1;
	if (rc < 0 || cpu->i->embed(cpu, x.c, &tc) || cpu->i->add_rmsnorm(cpu, h.c, x.c, NULL, &nc, n, eps))
		DIE("embed_norm");
	if (rc == 0) {
		snprintf(what, sizeof what, "embed_norm vocab %d dim %d n %d: x", vocab, dim, n);
		compare_buf(what, &x, 0.0);
		snprintf(what, sizeof what, "embed_norm vocab %d dim %d n %d: h", vocab, dim, n);
		compare_buf(what, &h, 2.5 * b_round());
		/* an id outside the vocabulary is an error */
		ids[n - 1] = vocab;
		set_step_both(ids, n, 0, blocks, nb);
		checks++;
		if (gpu->i->embed_norm(gpu, x.g, h.g, &tg, &ng, n, eps) == LM_OK) {
			printf("FAIL: embed_norm accepted token id %d of a %d-token vocabulary\n", vocab, vocab);
			fails++;
		}
	} else if (dim % 8 == 0 && dim <= 8192) {
		printf("FAIL: embed_norm refused dim %d\n", dim);
		fails++;
	}
	buf_free(&x);
	buf_free(&h);
	free_both(&tc, &tg);
	free_both(&nc, &ng);
	free(tab);
	free(w);
}

static void test_rmsnorm(int dim, int n, bool with_dx)
{
	char what[96];
	float *w = host_dense(DT_F32, 1, dim, 1.0f);
	for (int i = 0; i < dim; i++) w[i] += 1.0f;
	struct host_weight hw = { .dt = DT_F32, .rows = 1, .cols = dim, .data = w };
	struct weight wc, wg;
	load_both(&wc, &wg, &hw, "rmsnorm");
	struct buf x = buf_new((size_t)n * dim), dx = buf_new((size_t)n * dim), h = buf_new((size_t)n * dim);
	float *xv = rand_vec(x.n, 3.0f), *dv = rand_vec(x.n, 3.0f);
	buf_put(&x, xv);
	buf_put(&dx, dv);
	buf_poison(&h);
	const float eps = 1e-5f;
	if (cpu->i->add_rmsnorm(cpu, h.c, x.c, with_dx ? dx.c : NULL, &wc, n, eps) ||
	    gpu->i->add_rmsnorm(gpu, h.g, x.g, with_dx ? dx.g : NULL, &wg, n, eps))
		DIE("add_rmsnorm");
	snprintf(what, sizeof what, "add_rmsnorm dim %d n %d%s: h", dim, n, with_dx ? " +dx" : "");
	/* h is rounded twice on the gpu (as transformers: norm, then weight) */
	compare_buf(what, &h, 2.5 * b_round());
	snprintf(what, sizeof what, "add_rmsnorm dim %d n %d%s: x", dim, n, with_dx ? " +dx" : "");
	compare_buf(what, &x, with_dx ? b_round() : 0.0);
	buf_free(&x);
	buf_free(&dx);
	buf_free(&h);
	free_both(&wc, &wg);
	free(w);
	free(xv);
	free(dv);
}

/* Qwen3's q_norm/k_norm on qkv rows of nh q, nkv k and nkv v heads of hd: q and k heads normed in place, v
 * left exactly as it was */
static void test_qk_norm(int nh, int nkv, int hd, int n)
{
	char what[96];
	float *wq = host_dense(DT_F32, 1, hd, 0.5f), *wk = host_dense(DT_F32, 1, hd, 0.5f);
	for (int i = 0; i < hd; i++) {
		wq[i] += 1.0f;
		wk[i] += 1.0f;
	}
	struct host_weight hq = { .dt = DT_F32, .rows = 1, .cols = hd, .data = wq },
			   hk = { .dt = DT_F32, .rows = 1, .cols = hd, .data = wk };
	struct weight cq, gq, ck, gk;
	load_both(&cq, &gq, &hq, "qk_norm");
	load_both(&ck, &gk, &hk, "qk_norm");
	struct buf qkv = buf_new((size_t)n * (nh + 2 * nkv) * hd);
	float *v = rand_vec(qkv.n, 4.0f);
	buf_put(&qkv, v);
	const float eps = 1e-6f;
	if (cpu->i->qk_norm(cpu, qkv.c, &cq, &ck, n, nh, nkv, eps) || gpu->i->qk_norm(gpu, qkv.g, &gq, &gk, n, nh, nkv, eps))
		DIE("qk_norm");
	snprintf(what, sizeof what, "qk_norm nh %d nkv %d hd %d n %d", nh, nkv, hd, n);
	/* rounded twice on the gpu (the norm, then the weight), as add_rmsnorm */
	compare_buf(what, &qkv, 2.5 * b_round());
	/* the v heads: untouched, bit for bit */
	uint16_t *h = malloc(qkv.n * 2);
	if (!h || gpu->i->download(gpu, h, qkv.g, qkv.n * 2)) DIE("download");
	size_t changed = 0;
	for (int i = 0; i < n; i++)
		for (int k = (nh + nkv) * hd; k < (nh + 2 * nkv) * hd; k++) {
			size_t at = (size_t)i * (nh + 2 * nkv) * hd + k;
			changed += h[at] != to_act(v[at]);
		}
	checks++;
	printf("%-4s qk_norm nh %d nkv %d hd %d n %d: v heads untouched (%zu changed)\n", changed ? "FAIL" : "ok", nh,
	       nkv, hd, n, changed);
	if (changed) fails++;
	free(h);
	buf_free(&qkv);
	free_both(&cq, &gq);
	free_both(&ck, &gk);
	free(wq);
	free(wk);
	free(v);
}

static void test_matmul(int N, int K, int n, enum dtype wdt, bool bias)
{
	char what[96];
	void *w = host_dense(wdt, N, K, 1.0f / sqrtf((float)K));
	float *bv = bias ? host_dense(DT_F32, 1, N, 0.5f) : NULL;
	struct host_weight hw = { .dt = wdt, .rows = N, .cols = K, .data = w, .bias = bv, .bias_dt = DT_F32 };
	struct weight wc, wg;
	load_both(&wc, &wg, &hw, "matmul");
	struct buf x = buf_new((size_t)n * K), y = buf_new((size_t)n * N);
	float *xv = rand_vec(x.n, 1.0f);
	buf_put(&x, xv);
	buf_poison(&y);
	if (cpu->i->matmul(cpu, y.c, x.c, &wc, n) || gpu->i->matmul(gpu, y.g, x.g, &wg, n)) DIE("matmul");
	snprintf(what, sizeof what, "matmul %s [%d x %d] n %d%s", dtype_name(wdt), N, K, n, bias ? " +bias" : "");
	/* F32 weights are rounded to the activation type on the gpu */
	compare_buf(what, &y, (wdt == DT_F32 ? 3 : 1.5) * b_round());
	buf_free(&x);
	buf_free(&y);
	free_both(&wc, &wg);
	free(w);
	free(bv);
	free(xv);
}

/* a random AutoAWQ host weight [N x K] (codes, zeros, scales near 1 / (8 sqrt(K))); awq_host_free frees it */
static struct host_weight awq_host_new(int N, int K, int group)
{
	const int G = K / group;
	int32_t *qw = malloc((size_t)K * N / 8 * 4), *qz = malloc((size_t)G * N / 8 * 4);
	uint16_t *sc = malloc((size_t)G * N * 2);
	if (!qw || !qz || !sc) DIE("out of memory");
	for (size_t i = 0; i < (size_t)K * N / 8; i++) qw[i] = (int32_t)rnext();
	for (size_t i = 0; i < (size_t)G * N / 8; i++) qz[i] = (int32_t)rnext();
	for (size_t i = 0; i < (size_t)G * N; i++) sc[i] = f32_to_f16((0.5f + 0.5f * fabsf(frand())) / (8 * sqrtf((float)K)));
	return (struct host_weight){ .dt = DT_Q4, .rows = N, .cols = K, .qweight = qw, .qzeros = qz, .scales = sc,
				     .group = group, .bias_dt = DT_F32 };
}

static void awq_host_free(struct host_weight *hw)
{
	free((void *)hw->qweight);
	free((void *)hw->qzeros);
	free((void *)hw->scales);
}

/* W4A16 from AutoAWQ's layout (random codes, zeros and scales); swiglu: the matmul_swiglu op (N = 2 ffn)
 * against the cpu's matmul then swiglu; gate_up: the weight loaded as a w13 (rows interleaved for the folded
 * SwiGLU where the layout allows, so matmul_swiglu's GEMV and GEMM paths run the interleaved swiglu) */
static void test_awq_op_gu(int N, int K, int group, int n, bool bias, bool swiglu, bool gate_up)
{
	char what[120];
	if (swiglu && !gpu->i->matmul_swiglu) return;
	const int F = N / 2;
	float *bv = bias ? host_dense(DT_F32, 1, N, 0.5f) : NULL;
	struct host_weight hw = awq_host_new(N, K, group);
	hw.bias = bv;
	hw.gate_up = gate_up;
	struct weight wc, wg;
	load_both(&wc, &wg, &hw, "awq");
	struct buf x = buf_new((size_t)n * K), y = buf_new((size_t)n * N), o = buf_new((size_t)n * (swiglu ? F : 1));
	float *xv = rand_vec(x.n, swiglu ? 2.0f : 1.0f);
	buf_put(&x, xv);
	buf_poison(&y);
	buf_poison(&o);
	if (swiglu) {
		if (cpu->i->matmul(cpu, y.c, x.c, &wc, n) || cpu->i->swiglu(cpu, o.c, y.c, n, F) ||
		    gpu->i->matmul_swiglu(gpu, o.g, y.g, x.g, &wg, n))
			DIE("awq matmul_swiglu");
		snprintf(what, sizeof what, "matmul_swiglu W4A16 [%d x %d] g%d n %d%s%s", N, K, group, n, bias ? " +bias" : "",
			 wg.gu_interleaved ? " (rows interleaved)" : "");
		compare_buf(what, &o, 3 * b_round());
	} else {
		if (cpu->i->matmul(cpu, y.c, x.c, &wc, n) || gpu->i->matmul(gpu, y.g, x.g, &wg, n)) DIE("awq matmul");
		snprintf(what, sizeof what, "matmul W4A16 [%d x %d] g%d n %d%s", N, K, group, n, bias ? " +bias" : "");
		/* (q - z) and x exact, fp32 sums; the dequant path rounds each weight to the activation type */
		compare_buf(what, &y, 3 * b_round());
	}
	buf_free(&x);
	buf_free(&y);
	buf_free(&o);
	free_both(&wc, &wg);
	awq_host_free(&hw);
	free(bv);
	free(xv);
}

static void test_awq_op(int N, int K, int group, int n, bool bias, bool swiglu)
{
	test_awq_op_gu(N, K, group, n, bias, swiglu, false);
}

/* The norms folded into the GEMVs (backend.h: matmul_residual, then norm_matmul; the cuda backend with
 * LMTERM_FOLD=1, set by main): x += a . Wr^T with xw = x * nw, then y = rmsnorm(x) . Wn^T (+ bias), or its SwiGLU
 * with Wn a w13, against the cpu's matmul, add_rmsnorm and matmul (and swiglu). fold: whether the residual
 * GEMV is expected to take the fold (tiled layout, n <= 8); where it declines it must leave x as it was. A
 * next weight the epilogue cannot take (row layout) goes through the norm's own kernel, then the plain op. */
static void test_fold(int dim, int ka, int nn, int group, int n, bool bias, bool swiglu, bool fold)
{
	char what[120];
	if (!gpu->i->matmul_residual || !gpu->i->norm_matmul) return;
	const float eps = 1e-5f;
	struct host_weight hr = awq_host_new(dim, ka, group), hn = awq_host_new(nn, dim, group);
	float *bv = bias ? host_dense(DT_F32, 1, nn, 0.5f) : NULL;
	hn.bias = bv;
	hn.gate_up = swiglu;
	float *nwv = host_dense(DT_F32, 1, dim, 0.5f);
	for (int i = 0; i < dim; i++) nwv[i] += 1.0f;
	struct host_weight hnw = { .dt = DT_F32, .rows = 1, .cols = dim, .data = nwv };
	struct weight rc, rg, nc, ng, wc, wg;
	load_both(&rc, &rg, &hr, "fold: the residual GEMV's weight");
	load_both(&nc, &ng, &hn, "fold: the next GEMV's weight");
	load_both(&wc, &wg, &hnw, "fold: the norm weight");
	const int ny = swiglu ? nn / 2 : nn;
	struct buf x = buf_new((size_t)n * dim), a = buf_new((size_t)n * ka), dx = buf_new((size_t)n * dim),
		   h = buf_new((size_t)n * dim), gu = buf_new((size_t)n * nn), y = buf_new((size_t)n * ny);
	float *xv = rand_vec(x.n, 3.0f), *av = rand_vec(a.n, 1.0f);
	buf_put(&x, xv);
	buf_put(&a, av);
	buf_poison(&h);
	buf_poison(&y);
	const int r = gpu->i->matmul_residual(gpu, x.g, h.g, a.g, &rg, &wg, n);
	if (r < 0) DIE("matmul_residual");
	snprintf(what, sizeof what, "matmul_residual [%d x %d] g%d n %d: %s", dim, ka, group, n,
		 fold ? "folds" : "declines");
	checks++;
	if (r != (fold ? 0 : 1)) {
		printf("FAIL %s: returned %d\n", what, r);
		fails++;
	} else {
		printf("ok   %s\n", what);
	}
	if (r == 1) { /* declined: x untouched */
		float *cv = malloc(x.n * sizeof(float));
		if (!cv) DIE("out of memory");
		for (size_t i = 0; i < x.n; i++) cv[i] = xv[i];
		if (cpu->i->upload(cpu, x.c, cv, x.n * sizeof(float))) DIE("upload");
		snprintf(what, sizeof what, "matmul_residual n %d declined: x as it was", n);
		compare_buf(what, &x, 0.0);
		free(cv);
	} else if (r == 0) {
		if (cpu->i->matmul(cpu, dx.c, a.c, &rc, n) || cpu->i->add_rmsnorm(cpu, h.c, x.c, dx.c, &wc, n, eps) ||
		    gpu->i->norm_matmul(gpu, y.g, swiglu ? gu.g : NULL, h.g, &ng, n, eps))
			DIE("fold");
		if (swiglu ? cpu->i->matmul(cpu, gu.c, h.c, &nc, n) || cpu->i->swiglu(cpu, y.c, gu.c, n, ny)
			   : cpu->i->matmul(cpu, y.c, h.c, &nc, n))
			DIE("fold: cpu");
		snprintf(what, sizeof what, "matmul_residual [%d x %d] g%d n %d: x", dim, ka, group, n);
		compare_buf(what, &x, b_round());
		snprintf(what, sizeof what, "norm_matmul%s [%d x %d] n %d%s%s", swiglu ? "+swiglu" : "", nn, dim, n,
			 bias ? " +bias" : "", ng.gu_interleaved ? " (epilogue)" : "");
		/* xw rounded where the cpu's h is not, then the GEMV's sums */
		compare_buf(what, &y, 3 * b_round());
	}
	buf_free(&x);
	buf_free(&a);
	buf_free(&dx);
	buf_free(&h);
	buf_free(&gu);
	buf_free(&y);
	free_both(&rc, &rg);
	free_both(&nc, &ng);
	free_both(&wc, &wg);
	awq_host_free(&hr);
	awq_host_free(&hn);
	free(bv);
	free(nwv);
	free(xv);
	free(av);
}

static void test_awq(int N, int K, int group, int n, bool bias) { test_awq_op(N, K, group, n, bias, false); }

/* the fused w13 + SwiGLU against the cpu's matmul then swiglu */
static void test_matmul_swiglu(int ffn, int K, int n, bool bias)
{
	char what[96];
	if (!gpu->i->matmul_swiglu) return;
	void *w = host_dense(act, 2 * ffn, K, 1.0f / sqrtf((float)K));
	float *bv = bias ? host_dense(DT_F32, 1, 2 * ffn, 0.5f) : NULL;
	struct host_weight hw = { .dt = act, .rows = 2 * ffn, .cols = K, .data = w, .bias = bv, .bias_dt = DT_F32 };
	struct weight wc, wg;
	load_both(&wc, &wg, &hw, "matmul_swiglu");
	struct buf x = buf_new((size_t)n * K), gu = buf_new((size_t)n * 2 * ffn), o = buf_new((size_t)n * ffn);
	float *xv = rand_vec(x.n, 2.0f);
	buf_put(&x, xv);
	buf_poison(&o);
	if (cpu->i->matmul(cpu, gu.c, x.c, &wc, n) || cpu->i->swiglu(cpu, o.c, gu.c, n, ffn) ||
	    gpu->i->matmul_swiglu(gpu, o.g, gu.g, x.g, &wg, n))
		DIE("matmul_swiglu");
	snprintf(what, sizeof what, "matmul_swiglu ffn %d K %d n %d%s", ffn, K, n, bias ? " +bias" : "");
	/* the fused path rounds once (the product), the cpu path never: within the GEMV's bound */
	compare_buf(what, &o, 2 * b_round());
	buf_free(&x);
	buf_free(&gu);
	buf_free(&o);
	free_both(&wc, &wg);
	free(w);
	free(bv);
	free(xv);
}

static void test_swiglu(int ffn, int n)
{
	char what[96];
	struct buf gu = buf_new((size_t)n * 2 * ffn), o = buf_new((size_t)n * ffn);
	float *v = rand_vec(gu.n, 4.0f);
	buf_put(&gu, v);
	buf_poison(&o);
	if (cpu->i->swiglu(cpu, o.c, gu.c, n, ffn) || gpu->i->swiglu(gpu, o.g, gu.g, n, ffn)) DIE("swiglu");
	snprintf(what, sizeof what, "swiglu ffn %d n %d", ffn, n);
	compare_buf(what, &o, 1.5 * b_round());
	buf_free(&gu);
	buf_free(&o);
	free(v);
}

static void test_logits(int V, int dim, int n)
{
	char what[96];
	void *w = host_dense(act, V, dim, 1.0f / sqrtf((float)dim));
	struct host_weight hw = { .dt = act, .rows = V, .cols = dim, .data = w };
	struct weight wc, wg;
	load_both(&wc, &wg, &hw, "logits");
	struct buf h = buf_new((size_t)n * dim);
	float *hv = rand_vec(h.n, 2.0f);
	buf_put(&h, hv);
	float *lc = malloc(sizeof(float) * V * n), *lg = malloc(sizeof(float) * V * n);
	if (!lc || !lg) DIE("out of memory");
	for (size_t i = 0; i < (size_t)V * n; i++) lg[i] = NAN;
	if (cpu->i->logits(cpu, lc, h.c, &wc, n) || gpu->i->logits(gpu, lg, h.g, &wg, n)) DIE("logits");
	snprintf(what, sizeof what, "logits (float) vocab %d dim %d n %d", V, dim, n);
	/* same rounded inputs, float accumulation on both sides: only the order of the sums differs */
	compare(what, lg, lc, (size_t)V * n, 1e-4);
	if (n == 1) {
		int32_t tok = -1;
		if (gpu->i->argmax(gpu, &tok, h.g, &wg)) DIE("argmax");
		int32_t best = 0;
		for (int i = 1; i < V; i++)
			if (lg[i] > lg[best]) best = i;
		int32_t cbest = 0;
		for (int i = 1; i < V; i++)
			if (lc[i] > lc[cbest]) cbest = i;
		checks++;
		/* exactly the argmax of the gpu's own logits; the cpu's unless the two are within rounding */
		bool ok = tok == best && (tok == cbest || fabsf(lc[tok] - lc[cbest]) <= 1e-4f * fabsf(lc[cbest]));
		printf("%-4s argmax vocab %d: %d (gpu logits %d, cpu logits %d)\n", ok ? "ok" : "FAIL", V, tok, best, cbest);
		if (!ok) fails++;
		/* started twice (the second on other logits), then taken in order; a third take has nothing */
		if (gpu->i->argmax_start) {
			struct buf h2 = buf_new((size_t)dim);
			float *hv2 = rand_vec(h2.n, 2.0f);
			buf_put(&h2, hv2);
			int32_t tok2 = -1, t1 = -1, t2 = -1;
			if (gpu->i->argmax(gpu, &tok2, h2.g, &wg) || gpu->i->argmax_start(gpu, h.g, &wg) ||
			    gpu->i->argmax_start(gpu, h2.g, &wg))
				DIE("argmax_start");
			checks++;
			const bool third = gpu->i->argmax_start(gpu, h.g, &wg) != LM_OK; /* two pending at most */
			if (gpu->i->argmax_take(gpu, &t1) || gpu->i->argmax_take(gpu, &t2)) DIE("argmax_take");
			ok = t1 == tok && t2 == tok2 && third && gpu->i->argmax_take(gpu, &t1) != LM_OK;
			printf("%-4s argmax_start, argmax_take: %d %d (argmax %d %d)%s\n", ok ? "ok" : "FAIL", t1, t2, tok,
			       tok2, third ? "" : ", a third start accepted");
			if (!ok) fails++;
			buf_free(&h2);
			free(hv2);
		}
	}
	buf_free(&h);
	free_both(&wc, &wg);
	free(w);
	free(hv);
	free(lc);
	free(lg);
}

/* rope_kv + attention: a prefill of n0 tokens, three decode steps, then a chunk of 5, over a shuffled
 * block table; q/k rotated in qkv and the attention output compared at every step.
 * fused: the gpu runs rope_attention (RoPE and the cache write folded into the decode kernel) on the
 * unrotated qkv instead, on every step (1) or every other step (2: the cache one op wrote is read by the
 * other); the cpu runs the two ops. Its k and v in the cache are checked by the later steps' outputs. */
static void test_attention(int nh, int nkv, int hd, int policy, int fused)
{
	if (fused && !gpu->i->rope_attention) return;
	const int bl = 16, n0 = 37, total = n0 + 3 + 5;
	struct kv_cache kc = { .n_layers = 2, .n_kv_heads = nkv, .head_dim = hd, .block_len = bl, .policy = policy };
	kc.n_blocks = (total + bl - 1) / bl + 2;
	struct kv_cache kg = kc;
	if (cpu->i->kv_alloc(cpu, &kc) || gpu->i->kv_alloc(gpu, &kg)) DIE("kv_alloc");
	int32_t blocks[16];
	for (int b = 0; b < kc.n_blocks; b++) blocks[b] = b;
	for (int b = kc.n_blocks - 1; b > 0; b--) {
		int j = irand(b + 1), t = blocks[b];
		blocks[b] = blocks[j];
		blocks[j] = t;
	}
	for (int d = 0; d < hd / 2; d++) inv_freq[d] = powf(10000.f, -2.f * d / hd);
	const int layer = 1, qw = (nh + 2 * nkv) * hd;
	int32_t ids[64] = { 0 };
	struct { int n, pos0; } steps[] = { { n0, 0 }, { 1, n0 }, { 1, n0 + 1 }, { 1, n0 + 2 }, { 5, n0 + 3 } };
	for (size_t si = 0; si < ARRAY_SIZE(steps); si++) {
		const int n = steps[si].n, pos0 = steps[si].pos0;
		char what[128];
		set_step_both(ids, n, pos0, blocks, kc.n_blocks);
		struct buf qkv = buf_new((size_t)n * qw), out = buf_new((size_t)n * nh * hd);
		float *v = rand_vec(qkv.n, 2.0f);
		buf_put(&qkv, v);
		buf_poison(&out);
		const bool fuse = fused == 1 || (fused == 2 && si % 2 == 1);
		if (cpu->i->rope_kv(cpu, qkv.c, &kc, layer, nh) || (!fuse && gpu->i->rope_kv(gpu, qkv.g, &kg, layer, nh)))
			DIE("rope_kv");
		snprintf(what, sizeof what, "rope_kv nh %d nkv %d hd %d policy %d n %d pos %d", nh, nkv, hd, policy, n,
			 pos0);
		if (!fuse) compare_buf(what, &qkv, 1.5 * b_round());
		/* both attend from the same rotated q: the cpu's, rounded (fused: the gpu rotates its own) */
		float *rq = malloc(qkv.n * sizeof(float));
		if (!rq || cpu->i->download(cpu, rq, qkv.c, qkv.n * sizeof(float))) DIE("download");
		for (size_t i = 0; i < qkv.n; i++) rq[i] = round_act(rq[i]);
		if (fuse) {
			if (cpu->i->upload(cpu, qkv.c, rq, qkv.n * sizeof(float))) DIE("upload");
		} else {
			buf_put(&qkv, rq);
		}
		if (cpu->i->attention(cpu, out.c, qkv.c, &kc, layer, nh) ||
		    (fuse ? gpu->i->rope_attention(gpu, out.g, qkv.g, &kg, layer, nh)
			  : gpu->i->attention(gpu, out.g, qkv.g, &kg, layer, nh)))
			DIE("attention");
		snprintf(what, sizeof what, "%s nh %d nkv %d hd %d policy %d n %d pos %d",
			 fuse ? "rope_attention" : "attention", nh, nkv, hd, policy, n, pos0);
		/* policy 0: the cache holds act-rounded k/v (cpu: float); int8/int4: a code may flip where the
		 * gpu's rounded k sits on a rounding boundary */
		double bound = policy == 0 ? 4 * b_round() : policy == 8 ? 3e-2 : 1e-1;
		compare_buf(what, &out, bound);
		buf_free(&qkv);
		buf_free(&out);
		free(v);
		free(rq);
	}
	cpu->i->kv_free(cpu, &kc);
	gpu->i->kv_free(gpu, &kg);
}

/* a decode step (embed, norm, qkv, rope_kv, attention, wo) as forward.c runs it: in a graph on the gpu,
 * replayed at new positions with new ids (rope_attention where the backend has it, as forward.c); plain on the
 * cpu. qk: with Qwen3's qk_norm between the qkv projection and RoPE. */
static void test_graph(bool qk)
{
	const int vocab = 500, dim = 256, nh = 4, nkv = 2, hd = 64, qw = (nh + 2 * nkv) * hd, bl = 16;
	struct kv_cache kc = { .n_layers = 1, .n_kv_heads = nkv, .head_dim = hd, .block_len = bl, .n_blocks = 8 };
	struct kv_cache kg = kc;
	if (cpu->i->kv_alloc(cpu, &kc) || gpu->i->kv_alloc(gpu, &kg)) DIE("kv_alloc");
	for (int d = 0; d < hd / 2; d++) inv_freq[d] = powf(10000.f, -2.f * d / hd);
	int32_t blocks[8] = { 3, 7, 1, 0, 5, 2, 6, 4 };
	void *tab = host_dense(act, vocab, dim, 1.0f), *wqkv = host_dense(act, qw, dim, 0.1f),
	     *wo = host_dense(act, dim, nh * hd, 0.1f);
	float *nw = host_dense(DT_F32, 1, dim, 0.2f), *qn = host_dense(DT_F32, 1, hd, 0.2f),
	      *kn = host_dense(DT_F32, 1, hd, 0.2f);
	for (int i = 0; i < dim; i++) nw[i] += 1.f;
	for (int i = 0; i < hd; i++) {
		qn[i] += 1.f;
		kn[i] += 1.f;
	}
	struct host_weight h_tab = { .dt = act, .rows = vocab, .cols = dim, .data = tab },
			   h_qkv = { .dt = act, .rows = qw, .cols = dim, .data = wqkv },
			   h_wo = { .dt = act, .rows = dim, .cols = nh * hd, .data = wo },
			   h_nw = { .dt = DT_F32, .rows = 1, .cols = dim, .data = nw },
			   h_qn = { .dt = DT_F32, .rows = 1, .cols = hd, .data = qn },
			   h_kn = { .dt = DT_F32, .rows = 1, .cols = hd, .data = kn };
	struct weight c_tab, g_tab, c_qkv, g_qkv, c_wo, g_wo, c_nw, g_nw, c_qn, g_qn, c_kn, g_kn;
	load_both(&c_tab, &g_tab, &h_tab, "graph");
	load_both(&c_qkv, &g_qkv, &h_qkv, "graph");
	load_both(&c_wo, &g_wo, &h_wo, "graph");
	load_both(&c_nw, &g_nw, &h_nw, "graph");
	load_both(&c_qn, &g_qn, &h_qn, "graph");
	load_both(&c_kn, &g_kn, &h_kn, "graph");
	/* buffers for 20 tokens (the prefill), then decode steps use row 0 */
	const int T = 20;
	struct buf x = buf_new((size_t)T * dim), h = buf_new((size_t)T * dim), q = buf_new((size_t)T * qw),
		   a = buf_new((size_t)T * nh * hd), o = buf_new((size_t)T * dim);
	int32_t ids[20];
	int replays = 0;
	for (int step = 0; step < 6; step++) {
		const int n = step == 0 ? T : 1, pos0 = step == 0 ? 0 : T + step - 1;
		for (int i = 0; i < n; i++) ids[i] = irand(vocab);
		set_step_both(ids, n, pos0, blocks, 8);
		struct backend *bes[2] = { cpu, gpu };
		for (int bi = 0; bi < 2; bi++) {
			struct backend *be = bes[bi];
			bool g = bi == 1 && n == 1;
			const struct weight *tb = bi ? &g_tab : &c_tab, *wq = bi ? &g_qkv : &c_qkv, *wot = bi ? &g_wo : &c_wo,
					    *wn = bi ? &g_nw : &c_nw, *wqn = bi ? &g_qn : &c_qn, *wkn = bi ? &g_kn : &c_kn;
			struct kv_cache *kv = bi ? &kg : &kc;
			void *X = bi ? x.g : x.c, *H = bi ? h.g : h.c, *Q = bi ? q.g : q.c, *A = bi ? a.g : a.c,
			     *O = bi ? o.g : o.c;
			int rc = g ? be->i->graph_begin(be, 1) : 0;
			if (rc < 0) DIE("graph_begin");
			if (rc == 1) replays++;
			if (rc == 0 && (be->i->embed(be, X, tb) || be->i->add_rmsnorm(be, H, X, NULL, wn, n, 1e-5f) ||
					be->i->matmul(be, Q, H, wq, n) ||
					(qk && be->i->qk_norm(be, Q, wqn, wkn, n, nh, nkv, 1e-6f)) ||
					(be->i->rope_attention ? be->i->rope_attention(be, A, Q, kv, 0, nh)
							       : be->i->rope_kv(be, Q, kv, 0, nh) ||
								 be->i->attention(be, A, Q, kv, 0, nh)) ||
					be->i->matmul(be, O, A, wot, n)))
				DIE("graph step %d ops", step);
			if (g && be->i->graph_end(be, 1)) DIE("graph_end");
		}
		if (gpu->i->sync(gpu)) DIE("sync");
		char what[96];
		snprintf(what, sizeof what, "decode step %d (pos %d)%s through %s", step, pos0, qk ? " +qk_norm" : "",
			 step == 0 ? "plain ops" : "a CUDA graph");
		/* compare only the rows this step wrote */
		struct buf view = o;
		view.n = (size_t)n * dim;
		float *cv = malloc(view.n * sizeof(float)), *gv = malloc(view.n * sizeof(float));
		uint16_t *hh = malloc(view.n * 2);
		if (!cv || !gv || !hh || cpu->i->download(cpu, cv, o.c, view.n * sizeof(float)) ||
		    gpu->i->download(gpu, hh, o.g, view.n * 2))
			DIE("download");
		for (size_t i = 0; i < view.n; i++) gv[i] = from_act(hh[i]);
		/* several roundings in a row (x, h, qkv, rotated k in the cache, attention, out) */
		compare(what, gv, cv, view.n, 10 * b_round());
		free(cv);
		free(gv);
		free(hh);
	}
	checks++;
	printf("%-4s graph replays: %d of 5 decode steps (the first captures)\n", replays >= 3 ? "ok" : "FAIL", replays);
	if (replays < 3) fails++;
	buf_free(&x);
	buf_free(&h);
	buf_free(&q);
	buf_free(&a);
	buf_free(&o);
	free_both(&c_tab, &g_tab);
	free_both(&c_qkv, &g_qkv);
	free_both(&c_wo, &g_wo);
	free_both(&c_nw, &g_nw);
	free_both(&c_qn, &g_qn);
	free_both(&c_kn, &g_kn);
	cpu->i->kv_free(cpu, &kc);
	gpu->i->kv_free(gpu, &kg);
	free(tab);
	free(wqkv);
	free(wo);
	free(nw);
	free(qn);
	free(kn);
}

/* ---- sampling on the device (backend op sample) against the host sampler (src/sampler.c) ---- */

static double now_sec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* logits of one of three kinds: 0 real-valued spread like a model's (a few large ones), 1 many exact ties
 * (a handful of distinct values), 2 flat (all within a few units: long nuclei) */
static void sample_logits(float *l, int V, int kind)
{
	for (int i = 0; i < V; i++) {
		if (kind == 0) {
			float z = frand();
			l[i] = 4.0f * z + (irand(1000) == 0 ? 8.0f + 4.0f * frand() : 0.0f);
		} else if (kind == 1) {
			l[i] = (float)(irand(12) - 6) * 0.75f;
		} else {
			l[i] = 0.5f * frand();
		}
	}
}

/* The host's probabilities of every token for one step, written independently of sampler.c (a second
 * implementation of the same rules): sort by (logit / T desc, id asc), top-k, softmax, top-p, min-p. */
struct ref_c {
	float s;
	int id;
};
static int ref_cmp(const void *a, const void *b)
{
	const struct ref_c *x = a, *y = b;
	if (x->s != y->s) return x->s > y->s ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}
static int ref_probs(const float *logits_pen, int V, const struct sampling *p, double *prob /* [V] */)
{
	struct ref_c *c = malloc(sizeof *c * V);
	double *pr = malloc(sizeof *pr * V);
	if (!c || !pr) DIE("out of memory");
	float mx = -INFINITY;
	for (int i = 0; i < V; i++) mx = fmaxf(mx, logits_pen[i]);
	float inv_t = 1.0f / p->temperature, fl = mx - 40.0f * p->temperature;
	int n = 0;
	for (int i = 0; i < V; i++)
		if (logits_pen[i] >= fl) c[n++] = (struct ref_c){ logits_pen[i] * inv_t, i };
	qsort(c, n, sizeof *c, ref_cmp);
	if (p->top_k > 0 && p->top_k < n) n = p->top_k;
	double sum = 0;
	for (int i = 0; i < n; i++) sum += pr[i] = exp((double)c[i].s - c[0].s);
	for (int i = 0; i < n; i++) pr[i] /= sum;
	if (p->top_p > 0 && p->top_p < 1) {
		double acc = 0;
		for (int i = 0; i < n; i++)
			if ((acc += pr[i]) >= p->top_p) {
				n = i + 1;
				break;
			}
	}
	if (p->min_p > 0) {
		int keep = 1;
		while (keep < n && pr[keep] >= p->min_p * pr[0]) keep++;
		n = keep;
	}
	double mass = 0;
	for (int i = 0; i < n; i++) mass += pr[i];
	for (int i = 0; i < V; i++) prob[i] = 0;
	for (int i = 0; i < n; i++) prob[c[i].id] = pr[i] / mass;
	free(c);
	free(pr);
	return n;
}

static void penalize(float *l, int V, const int32_t *hist, int nh, float rep)
{
	if (rep <= 0 || rep == 1.0f) return;
	char *seen = calloc(V, 1);
	if (!seen) DIE("out of memory");
	for (int i = 0; i < nh; i++) {
		int id = hist[i];
		if (id < 0 || id >= V || seen[id]) continue;
		seen[id] = 1;
		l[id] = l[id] > 0 ? l[id] / rep : l[id] * rep;
	}
	free(seen);
}

/* a mismatch is excused only where the host itself would pick the device's token for a uniform within
 * 1e-9 of the one drawn, or a top_p within 1e-9: the cut then lies within rounding of the sums */
static bool near_boundary(const float *l0, int V, const struct sampling *p, const int32_t *hist, int nh, double u,
			  int32_t tok)
{
	float *l = malloc(sizeof(float) * V);
	if (!l) DIE("out of memory");
	bool hit = false;
	for (int k = 0; k < 6 && !hit; k++) {
		struct sampling q = *p;
		double uu = u;
		if (k == 0) uu = u - 1e-9;
		if (k == 1) uu = u + 1e-9;
		if (k >= 2) q.top_p = p->top_p + (k & 1 ? 1e-9f : -1e-9f) * (k >= 4 ? 100 : 1);
		if (uu < 0 || uu >= 1) continue;
		struct sampler *s;
		if (sampler_init(&s, V, &q)) DIE("sampler_init");
		memcpy(l, l0, sizeof(float) * V);
		hit = sampler_sample_u(s, l, hist, nh, uu) == tok;
		sampler_free(s);
	}
	free(l);
	return hit;
}

/* draws: device tokens against sampler_sample_u with the same uniforms (from sampler_args, the engine's
 * path); then, if stat > 0, that many device draws against the reference probabilities (chi-square) */
static void test_sample_case(int V, int kind, struct sampling sp, int nh, int draws, int stat, bool via_lm_head)
{
	char what[200];
	snprintf(what, sizeof what, "sample V %d %s T %g top_k %d top_p %g min_p %g rep %g hist %d%s", V,
		 kind == 0 ? "spread" : kind == 1 ? "ties" : "flat", sp.temperature, sp.top_k, sp.top_p, sp.min_p,
		 sp.repetition_penalty, nh, via_lm_head ? " (lm_head)" : "");
	float *l0 = malloc(sizeof(float) * V), *l = malloc(sizeof(float) * V);
	int32_t *hist = malloc(sizeof(int32_t) * (nh + 1));
	if (!l0 || !l || !hist) DIE("out of memory");
	for (int i = 0; i < nh; i++) hist[i] = irand(4) ? irand(V) : irand(64); /* repeats, and ids near 0 */
	/* the logits in device memory: given directly, or as h . lm_head^T with lm_head = [V][8] holding the
	 * logit in column 0 and h = e0 (so the logits are exact, rounded to the activation type) */
	void *g = NULL, *hg = NULL, *wdata = NULL;
	struct weight wg = { 0 };
	sample_logits(l0, V, kind);
	if (via_lm_head) {
		const int D = 64;
		uint16_t *w = calloc((size_t)V * D, 2), hv[64] = { 0 };
		if (!w) DIE("out of memory");
		for (int i = 0; i < V; i++) {
			w[(size_t)i * D] = to_act(l0[i]);
			l0[i] = from_act(w[(size_t)i * D]);
		}
		hv[0] = to_act(1.0f);
		struct host_weight hw = { .dt = act, .rows = V, .cols = D, .data = w };
		if (gpu->i->weight_load(gpu, &wg, &hw)) DIE("weight_load");
		hg = gpu->i->alloc(gpu, (size_t)D * 2, MEM_ACT);
		if (!hg || gpu->i->upload(gpu, hg, hv, (size_t)D * 2)) DIE("upload h");
		wdata = w;
	} else {
		g = gpu->i->alloc(gpu, sizeof(float) * V, MEM_ACT);
		if (!g || gpu->i->upload(gpu, g, l0, sizeof(float) * V)) DIE("upload logits");
	}
	struct sampler *s, *sh;
	if (sampler_init(&s, V, &sp) || sampler_init(&sh, V, &sp)) DIE("sampler_init");
	int bad = 0, excused = 0, first_bad = -1;
	int32_t bad_dev = 0, bad_host = 0;
	double t_dev = 0, t_host = 0;
	for (int d = 0; d < draws; d++) {
		struct sample_args a;
		sampler_args(s, hist, nh, &a);
		int32_t tok = -1;
		double t0 = now_sec();
		if (gpu->i->sample(gpu, &tok, via_lm_head ? hg : g, via_lm_head ? &wg : NULL, &a)) DIE("%s", what);
		double t1 = now_sec();
		memcpy(l, l0, sizeof(float) * V);
		int32_t ref = sampler_sample_u(sh, l, hist, nh, a.u);
		t_host += now_sec() - t1;
		t_dev += t1 - t0;
		if (tok != ref) {
			if (tok >= 0 && tok < V && near_boundary(l0, V, &sp, hist, nh, a.u, tok)) {
				excused++;
			} else {
				if (!bad++) {
					first_bad = d;
					bad_dev = tok;
					bad_host = ref;
				}
			}
		}
	}
	if (via_lm_head) { /* the greedy op on the same logits: the first largest (many ties with kind 1) */
		int32_t tok = -1, best = 0;
		if (gpu->i->argmax(gpu, &tok, hg, &wg)) DIE("argmax");
		double t0 = now_sec();
		for (int r = 0; r < 50; r++)
			if (gpu->i->argmax(gpu, &tok, hg, &wg)) DIE("argmax");
		double per = (now_sec() - t0) / 50;
		for (int i = 1; i < V; i++)
			if (l0[i] > l0[best]) best = i;
		checks++;
		printf("%-4s argmax V %d %s: %d (host %d); %.1f us per call with the lm_head [V][64] GEMV\n",
		       tok == best ? "ok" : "FAIL", V, kind == 1 ? "ties" : "spread", tok, best, 1e6 * per);
		if (tok != best) fails++;
	}
	/* the device must not have changed the logits it was given */
	if (!via_lm_head) {
		if (gpu->i->download(gpu, l, g, sizeof(float) * V)) DIE("download");
		if (memcmp(l, l0, sizeof(float) * V)) {
			printf("FAIL %s: the op changed its input logits\n", what);
			fails++;
		}
		checks++;
	}
	checks++;
	bool ok = !bad && excused <= draws / 50;
	printf("%-4s %s: %d draws, %d differ (%d within 1e-9 of a boundary); device %.1f us, host %.1f us per draw", ok ? "ok" : "FAIL",
	       what, draws, bad + excused, excused, 1e6 * t_dev / draws, 1e6 * t_host / draws);
	if (bad) printf("; first at draw %d: device %d, host %d", first_bad, bad_dev, bad_host);
	printf("\n");
	if (!ok) fails++;

	if (stat > 0) { /* the empirical distribution of device draws against the reference probabilities */
		double *prob = malloc(sizeof(double) * V);
		int *cnt = calloc(V, sizeof(int));
		if (!prob || !cnt) DIE("out of memory");
		memcpy(l, l0, sizeof(float) * V);
		penalize(l, V, hist, nh, sp.repetition_penalty);
		int kept = ref_probs(l, V, &sp, prob);
		int outside = 0;
		for (int d = 0; d < stat; d++) {
			struct sample_args a;
			sampler_args(s, hist, nh, &a);
			int32_t tok = -1;
			if (gpu->i->sample(gpu, &tok, via_lm_head ? hg : g, via_lm_head ? &wg : NULL, &a)) DIE("%s", what);
			if (tok < 0 || tok >= V || prob[tok] == 0) outside++;
			else cnt[tok]++;
		}
		/* chi-square over bins of kept tokens: a token expected 20 times or more is a bin of its own, the
		 * others are pooled in id order into bins expected at least 20 times (so that a flat nucleus of
		 * thousands of tokens still has hundreds of bins: a missing or extra slice of it shows) */
		double chi = 0, pool_e = 0, pool_o = 0;
		int df = -1;
		for (int i = 0; i < V; i++) {
			if (prob[i] == 0) continue;
			double e = prob[i] * stat;
			if (e >= 20) {
				chi += (cnt[i] - e) * (cnt[i] - e) / e;
				df++;
				continue;
			}
			pool_e += e;
			pool_o += cnt[i];
			if (pool_e >= 20) {
				chi += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
				df++;
				pool_e = pool_o = 0;
			}
		}
		if (pool_e > 0) { /* the last partial pool */
			chi += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
			df++;
		}
		/* a correct sampler exceeds df + 8 sqrt(2 df) + 16 with probability below 1e-9 or so */
		double bound = df + 8 * sqrt(2.0 * (df > 0 ? df : 1)) + 16;
		checks++;
		bool sok = outside == 0 && chi <= bound;
		printf("%-4s %s: %d draws over %d kept tokens: chi-square %.1f (df %d, bound %.1f), %d outside the kept set\n",
		       sok ? "ok" : "FAIL", what, stat, kept, chi, df, bound, outside);
		if (!sok) fails++;
		free(prob);
		free(cnt);
	}
	sampler_free(s);
	sampler_free(sh);
	if (g) gpu->i->free(gpu, g);
	if (hg) gpu->i->free(gpu, hg);
	if (via_lm_head) gpu->i->weight_free(gpu, &wg);
	free(wdata);
	free(l0);
	free(l);
	free(hist);
}

static void test_sample(bool quick)
{
	if (!gpu->i->sample) {
		printf("FAIL: the cuda backend has no sample op\n");
		fails++;
		return;
	}
	const struct sampling base = { .temperature = 1, .top_p = 1, .top_k = 0, .min_p = 0, .repetition_penalty = 1,
				       .seed = rnext() };
	const int vocabs[] = { 92544, 151936 };
	const int top_ks[] = { 1, 40, 0, 151936 };
	const float top_ps[] = { 0.1f, 0.9f, 1.0f };
	for (int vi = quick; vi < 2; vi++)
		for (int kind = 0; kind < 3; kind++)
			for (int ki = 0; ki < 4; ki++)
				for (int pi = 0; pi < 3; pi++) {
					if (quick && (ki + pi + kind) % 3) continue;
					struct sampling sp = base;
					sp.seed = rnext();
					sp.top_k = top_ks[ki];
					sp.top_p = top_ps[pi];
					sp.temperature = (kind == 2 ? 0.3f : 0.7f) + 0.1f * (float)pi;
					/* draws: the host sorts every candidate when nothing bounds them: fewer there */
					int draws = sp.top_k > 0 && sp.top_k <= 40 ? 60 : 12;
					test_sample_case(vocabs[vi], kind, sp, (ki + pi) % 2 ? 300 : 0, draws, 0, false);
				}
	/* min-p, repetition penalty, greedy with a penalty, temperature extremes */
	struct sampling sp = base;
	if (quick) {
		sp.top_k = 40;
		sp.top_p = 0.8f;
		sp.repetition_penalty = 1.1f;
		test_sample_case(92544, 0, sp, 300, 40, 0, true);
		return;
	}
	sp.min_p = 0.05f;
	sp.top_p = 0.95f;
	test_sample_case(151936, 0, sp, 500, 30, 0, false);
	sp.min_p = 0.3f;
	sp.top_k = 0;
	test_sample_case(92544, 1, sp, 0, 30, 0, false);
	sp = base;
	sp.repetition_penalty = 1.3f;
	sp.top_k = 50;
	test_sample_case(92544, 0, sp, 2000, 60, 0, false);
	sp.temperature = 0; /* greedy after the penalty */
	test_sample_case(151936, 0, sp, 2000, 5, 0, false);
	sp = base;
	sp.temperature = 5.0f;
	sp.top_k = 200;
	sp.top_p = 0.8f;
	test_sample_case(92544, 2, sp, 100, 40, 0, false);
	sp.temperature = 0.05f;
	test_sample_case(92544, 0, sp, 100, 40, 0, false);
	/* small vocabularies (one block's worth, id digits below 256) */
	sp = base;
	sp.top_p = 0.9f;
	test_sample_case(200, 1, sp, 50, 100, 0, false);
	test_sample_case(5000, 0, sp, 50, 100, 0, false);
	/* through the lm_head GEMV, as the engine calls it */
	sp = base;
	sp.top_k = 40;
	sp.top_p = 0.8f;
	sp.repetition_penalty = 1.1f;
	test_sample_case(92544, 0, sp, 300, 40, 0, true);
	test_sample_case(151936, 1, sp, 0, 20, 0, true);
	test_sample_case(2000, 1, sp, 0, 20, 0, true);
	/* the distribution of many draws */
	sp = base;
	sp.top_k = 40;
	sp.top_p = 0.9f;
	sp.temperature = 0.8f;
	test_sample_case(151936, 0, sp, 0, 10, 20000, false);
	sp.top_k = 0;
	sp.top_p = 0.5f;
	test_sample_case(92544, 1, sp, 200, 10, 20000, false);
	sp.top_p = 1.0f;
	sp.min_p = 0.1f;
	sp.repetition_penalty = 1.2f;
	test_sample_case(92544, 0, sp, 200, 10, 20000, false);
	sp = base; /* a nucleus of thousands of near-equal tokens, cut by top-p within them */
	sp.temperature = 0.5f;
	sp.top_p = 0.3f;
	test_sample_case(92544, 2, sp, 0, 5, 20000, false);
}

/* all cases once (F16 run), a part with BF16; then a part with LMTERM_SAMPLE_BLOCKS=1: the kernel as one
 * block without the cooperative grid */
static void test_sample_all(void)
{
	test_sample(act != DT_F16);
	const char *old = getenv("LMTERM_SAMPLE_BLOCKS");
	if (old) return;
	setenv("LMTERM_SAMPLE_BLOCKS", "1", 1);
	struct backend *g0 = gpu;
	gpu = backend_cuda_create(act);
	if (!gpu) DIE("backend");
	printf("-- sample: one block (LMTERM_SAMPLE_BLOCKS=1) --\n");
	test_sample(true);
	backend_destroy(gpu);
	gpu = g0;
	unsetenv("LMTERM_SAMPLE_BLOCKS");
}

static void run_all(void)
{
	const char *only = getenv("LMTERM_TEST_ONLY");
	if (only && strcmp(only, "sample") == 0) {
		test_sample_all();
		return;
	}
	if (only && strcmp(only, "sample-quick") == 0) { /* a few cases (under compute-sanitizer) */
		if (act == DT_F16) test_sample(true);
		return;
	}
	test_alloc();
	/* a cache so that set_step knows the RoPE length */
	struct kv_cache kc = { .n_layers = 1, .n_kv_heads = 2, .head_dim = 64, .block_len = 16, .n_blocks = 4 };
	struct kv_cache kg = kc;
	if (cpu->i->kv_alloc(cpu, &kc) || gpu->i->kv_alloc(gpu, &kg)) DIE("kv_alloc");
	int32_t blocks[4] = { 0, 1, 2, 3 };
	for (int d = 0; d < 32; d++) inv_freq[d] = powf(10000.f, -2.f * d / 64);
	test_embed(1000, 256, 7, blocks, 4);
	test_embed(300, 100, 3, blocks, 4);
	test_embed_norm(1000, 4096, 1, blocks, 4);
	test_embed_norm(1000, 256, 7, blocks, 4);
	test_embed_norm(300, 100, 3, blocks, 4);
	cpu->i->kv_free(cpu, &kc);
	gpu->i->kv_free(gpu, &kg);

	test_rmsnorm(4096, 3, true);
	test_rmsnorm(4096, 2, false);
	test_rmsnorm(100, 5, true);
	test_rmsnorm(3584, 1, true);  /* the row in registers, the last chunk partial */
	test_rmsnorm(8192, 2, true);  /* 4 chunks per thread */
	test_rmsnorm(16384, 1, true); /* beyond the registers: the loop */
	test_rmsnorm(1000, 2, false);

	/* Qwen3's q/k norms: Qwen3-0.6B..8B's heads (16/8, 32/8 of 128), one token and a prefill; head sizes
	 * of 64 and 256, one not a multiple of 32 (a partial warp pass), and a head beyond 8 chunks per lane */
	test_qk_norm(16, 8, 128, 1);
	test_qk_norm(32, 8, 128, 37);
	test_qk_norm(4, 2, 64, 5);
	test_qk_norm(8, 1, 256, 3);
	test_qk_norm(3, 3, 40, 2);
	test_qk_norm(2, 1, 512, 2);

	const int ns[] = { 1, 2, 3, 4, 5, 7, 8, 9, 40 };
	for (size_t i = 0; i < ARRAY_SIZE(ns); i++) test_matmul(384, 256, ns[i], act, i % 3 == 0);
	test_matmul(1000, 4096, 1, act, false);
	test_matmul(100, 96, 3, act, true);
	test_matmul(64, 100, 2, act, false); /* K % 8 != 0: cuBLAS at batch 2 */
	test_matmul(64, 100, 17, act, true);
	test_matmul(256, 128, 1, DT_F32, false);
	test_matmul(256, 128, 12, DT_F32, true);

	/* LMTERM_TEST_ONLY=awq: the W4A16 checks alone (the GPU rounds of the AWQ kernels) */
	const bool awq_only = only && !strcmp(only, "awq");
	/* W4A16: the tiled layout (tensor-core GEMV at batch 1..8, tile dequant + cuBLAS beyond) at group 128
	 * and 64, on a real K (4096) and a K of 14336 (w2); the row layout where the shape or group does not
	 * allow tiles (N % 16 != 0, K % 64 != 0, group 32 or 16) */
	for (int n = 1; n <= 8; n++) test_awq(256, 4096, 128, n, n == 3);
	test_awq(256, 4096, 128, 12, false);
	test_awq(512, 1024, 128, 300, true); /* prefill */
	for (int n = 1; n <= 8; n += 7) test_awq(64, 14336, 128, n, false);
	const int an[] = { 1, 2, 5, 8, 40 };
	for (size_t i = 0; i < ARRAY_SIZE(an); i++) test_awq(528, 512, 64, an[i], i == 1);
	test_awq(264, 512, 128, 1, false);  /* N % 16 != 0: row layout */
	test_awq(264, 512, 128, 7, true);
	test_awq(264, 512, 128, 33, false);
	test_awq(128, 256, 32, 3, true);    /* group 32: row layout */
	test_awq(64, 96, 16, 1, false);     /* group 16: dequant + cuBLAS even at batch 1 */
	/* the matmul_swiglu op on AWQ weights (the backend's matmul then swiglu) */
	for (int n = 1; n <= 8; n += 3) test_awq_op(512, 4096, 128, n, n == 4, true);
	test_awq_op(1024, 512, 64, 8, false, true);
	test_awq_op(528, 512, 128, 2, true, true); /* N % 32 != 0 */
	test_awq_op(512, 1024, 128, 40, false, true); /* prefill */
	/* the real InternLM2.5-7B shapes (wqkv, wo, w2): the whole grid, every kernel variant's work split */
	test_awq(6144, 4096, 128, 1, false);
	test_awq(4096, 4096, 128, 2, true);
	test_awq(4096, 14336, 128, 1, false);
	test_awq(4096, 14336, 128, 8, false);
	test_awq(1552, 14336, 64, 3, true); /* an odd tile count, group 64 */
	test_awq_op(28672, 4096, 128, 1, false, true); /* w13 + SwiGLU, InternLM2.5-7B */
	test_awq_op(28672, 4096, 128, 8, true, true);
	/* a w13 with its rows interleaved for the folded SwiGLU, through matmul_swiglu: GEMV and GEMM paths */
	test_awq_op_gu(512, 1024, 128, 3, false, true, true);
	test_awq_op_gu(512, 1024, 128, 40, false, true, true);
	test_awq_op_gu(1056, 512, 64, 8, false, true, true);
	/* the folded norms: wo -> wqkv (+bias as Qwen2's), w2 -> w13 + SwiGLU at InternLM2.5-7B's shapes, every
	 * batch; a next weight in the row layout (the norm's own kernel); n 12: declined */
	for (int n = 1; n <= 8; n++) test_fold(512, 512, 768, 128, n, n == 2, false, true);
	for (int n = 1; n <= 8; n += 7) test_fold(512, 1024, 2048, 64, n, false, true, true);
	test_fold(4096, 4096, 6144, 128, 1, true, false, true);
	test_fold(4096, 14336, 28672, 128, 1, false, true, true);
	test_fold(4096, 14336, 28672, 128, 8, false, true, true);
	test_fold(512, 512, 264, 128, 3, true, false, true);  /* next: N % 16 != 0, row layout */
	test_fold(512, 512, 264, 128, 2, false, true, true);  /* next w13 of ffn 132: not interleaved */
	test_fold(512, 512, 768, 128, 12, false, false, false);
	if (awq_only) return;

	test_matmul(130, 4104, 1, act, true); /* K / 8 not a multiple of 32: the partial last iteration */
	test_matmul(4100, 2048, 1, act, false);
	test_matmul(131, 14336, 1, act, true); /* w2's K (7B), an odd N: the batch-1 shapes with R = 2 */
	const int gn[] = { 1, 2, 3, 5, 8, 12 };
	for (size_t i = 0; i < ARRAY_SIZE(gn); i++) test_matmul_swiglu(1000, 256, gn[i], i % 2 == 1);
	test_matmul_swiglu(1792, 4096, 1, false);
	test_matmul_swiglu(100, 96, 1, true); /* 100 x 96: odd group counts */

	test_swiglu(1000, 3);
	test_swiglu(100, 2);
	test_swiglu(11008, 1);

	test_logits(1000, 256, 1);
	test_logits(32003, 512, 1);
	test_logits(1000, 256, 3);
	test_logits(777, 96, 12);

	const int pol[] = { 0, 8, 4 };
	for (int p = 0; p < 3; p++) {
		for (int fused = 0; fused < 3; fused++) {
			test_attention(8, 2, 64, pol[p], fused);
			test_attention(4, 4, 128, pol[p], fused);
		}
		test_attention(28, 4, 128, pol[p], 1); /* Qwen2-7B's group of 7 */
	}
	test_graph(false);
	test_graph(true);
	test_sample_all();

	/* everything given back */
	struct mem_stats m;
	gpu->i->mem_stats(gpu, &m);
	checks++;
	if (m.cat[MEM_WEIGHTS] || m.cat[MEM_KV]) {
		printf("FAIL: after freeing: weights %zu, kv %zu bytes still counted\n", m.cat[MEM_WEIGHTS], m.cat[MEM_KV]);
		fails++;
	}
}
#endif

int main(void)
{
#if !HAVE_CUDA
	printf("SKIP: built without CUDA\n");
	return 77;
#else
	if (!backend_cuda_available()) {
		printf("SKIP: no usable CUDA GPU\n");
		return 77;
	}
	const char *e = getenv("LMTERM_TEST_SEED");
	uint64_t seed = e && *e ? strtoull(e, NULL, 10) : (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)clock();
	if (!seed) seed = 1;
	printf("seed %llu (LMTERM_TEST_SEED repeats it)\n", (unsigned long long)seed);
	/* the folded norms' ops (test_fold) and w13 layout; nothing else the tests load is a w13 */
	setenv("LMTERM_FOLD", "1", 1);
	const enum dtype acts[2] = { DT_F16, DT_BF16 };
	for (int ai = 0; ai < 2; ai++) {
		rng = seed + (uint64_t)ai * 0x9E3779B97F4A7C15ull;
		rnext();
		act = acts[ai];
		printf("== activations %s ==\n", dtype_name(act));
		cpu = backend_cpu_create();
		gpu = backend_cuda_create(act);
		if (!cpu || !gpu) {
			printf("FAIL: backend: %s\n", lm_errmsg());
			return 1;
		}
		if (gpu->act_dt != act) {
			printf("FAIL: cuda backend chose %s activations for a %s model\n", dtype_name(gpu->act_dt),
			       dtype_name(act));
			fails++;
		}
		run_all();
		backend_destroy(gpu);
		backend_destroy(cpu);
	}
	printf("%d checks, %d failure(s)\n", checks, fails);
	return fails ? 1 : 0;
#endif
}
