/* Backend-ops test of the KV-touching CUDA kernels (cuda/rope_kv.cu, cuda/attention.cu) against float
 * references written here:
 *   rope_kv:   q and k rotated in place (vs RoPE in float, rounded once), v untouched; the cache rows
 *              (read back through kv_layout.cuh) equal the rotated k / v (policy 0) or their per-token,
 *              per-head asymmetric quantization (policies 8/4, LMDeploy semantics, fp16 scale and zero).
 *   attention: prefill (n = 1..300 over an existing cache) and decode (1..5000 cached tokens), policies
 *              0/8/4, head_dim 64/128, GQA 1/4/8, F16/BF16, paged with shuffled block tables; the reference
 *              is softmax in double over the dequantized cache the GPU wrote.
 * Every check uses fresh random inputs (seed printed; LMTERM_TEST_SEED reproduces a run), a normalized error
 * bound (whole output and worst row), NaN checks (outputs and the unwritten pool are poisoned with NaN
 * bytes first), and guard bytes after every output. Then it times decode at a 4096-token context per
 * policy (a CUDA graph over 8 layers, events, median) against the device's copy bandwidth.
 * Exits 77 where there is no GPU (or no CUDA build). */
#include "config.h"
#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if HAVE_CUDA
#include <cuda_runtime_api.h>
#include "attention.h"
#include "kv_layout.cuh"

static int fails;
static uint64_t rng_state;

static uint64_t rng_next(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545F4914F6CDD1DULL;
}
static float frand(void) { return (float)((rng_next() >> 40) * (1.0 / 16777216.0)) * 2.f - 1.f; } /* [-1, 1) */
static int irand(int n) { return (int)((rng_next() >> 33) % (uint64_t)n); }

#define CK(call)                                                                                                 \
	do {                                                                                                     \
		cudaError_t e_ = (call);                                                                         \
		if (e_ != cudaSuccess) {                                                                         \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));    \
			exit(1);                                                                                 \
		}                                                                                                \
	} while (0)
#define LMOK(call)                                                                                               \
	do {                                                                                                     \
		if ((call) != LM_OK) {                                                                           \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, lm_errmsg());               \
			exit(1);                                                                                 \
		}                                                                                                \
	} while (0)

enum { GUARD = 256 };
#define GUARD_BYTE 0xA5

/* device buffer of n bytes followed by GUARD guard bytes */
static void *dalloc(size_t n)
{
	void *p;
	CK(cudaMalloc(&p, n + GUARD));
	CK(cudaMemset((char *)p + n, GUARD_BYTE, GUARD));
	return p;
}
static int guard_ok(const void *p, size_t n)
{
	unsigned char g[GUARD];
	CK(cudaMemcpy(g, (const char *)p + n, GUARD, cudaMemcpyDeviceToHost));
	for (int i = 0; i < GUARD; i++)
		if (g[i] != GUARD_BYTE) return 0;
	return 1;
}

static float ld(const uint16_t *p, size_t i, enum dtype dt) { return dt == DT_F16 ? f16_to_f32(p[i]) : bf16_to_f32(p[i]); }
static uint16_t st(float x, enum dtype dt) { return dt == DT_F16 ? f32_to_f16(x) : f32_to_bf16(x); }
static float rnd(float x, enum dtype dt) { return ld((uint16_t[]){st(x, dt)}, 0, dt); }

struct cfg {
	enum dtype dt;
	int hd, policy, nkv, group, block_len;
	int n_past, n;      /* cached tokens before the step, tokens in the step */
	int mode;           /* 0 prefill, 1 decode with workspace, 2 decode without (one split), 3 auto */
	float theta, mscale, qscale;
};

static const char *mode_name[] = {"prefill", "decode", "decode-1split", "auto"};

/* normalized error accumulators */
struct err {
	double d2, r2, worst_row;
	long nan;
};
static void err_row(struct err *e, const float *out, const double *ref, int n)
{
	double d2 = 0, r2 = 0;
	for (int i = 0; i < n; i++) {
		if (isnan(out[i]) || isinf(out[i])) e->nan++;
		d2 += (out[i] - ref[i]) * (out[i] - ref[i]);
		r2 += ref[i] * ref[i];
	}
	e->d2 += d2;
	e->r2 += r2;
	double rel = sqrt(d2 / (r2 > 1e-30 ? r2 : 1e-30));
	if (rel > e->worst_row) e->worst_row = rel;
}
static double err_rel(const struct err *e) { return sqrt(e->d2 / (e->r2 > 1e-30 ? e->r2 : 1e-30)); }

/* Read token p (layer, kv head h, K or V) from a host copy of the pool: dequantized values, and for
 * policies 8/4 the codes and (scale, zero) too. */
static void cache_row(const uint8_t *pool, const struct kv_geom *g, enum dtype dt, const int32_t *blocks, int layer,
		      int p, int h, int kv, float *x, uint8_t *codes, uint16_t *sz)
{
	const uint8_t *slab = pool + kv_slab_offset(g, layer, blocks[p / g->block_len], h, kv);
	const int t = p % g->block_len;
	const uint8_t *row = slab + kv_row_offset(g, t);
	if (g->policy == 0) {
		for (int d = 0; d < g->head_dim; d++) x[d] = ld((const uint16_t *)row, d, dt);
		return;
	}
	uint16_t par[2];
	memcpy(par, slab + kv_param_offset(g, t), 4);
	const float s = f16_to_f32(par[0]), z = f16_to_f32(par[1]);
	for (int d = 0; d < g->head_dim; d++) {
		int q = g->policy == 8 ? row[d] : (row[d / 2] >> (4 * (d & 1))) & 15;
		if (codes) codes[d] = (uint8_t)q;
		x[d] = q * s + z;
	}
	if (sz) sz[0] = par[0], sz[1] = par[1];
}

/* The reference quantization of one head vector (already rounded to the activation type). */
static void quant_ref(const float *x, int hd, int bits, uint8_t *q, uint16_t *sz)
{
	float mn = x[0], mx = x[0];
	for (int d = 1; d < hd; d++) {
		mn = fminf(mn, x[d]);
		mx = fmaxf(mx, x[d]);
	}
	const float qmax = (float)((1 << bits) - 1);
	sz[0] = f32_to_f16((mx - mn) / qmax);
	sz[1] = f32_to_f16(mn);
	const float s = f16_to_f32(sz[0]), z = f16_to_f32(sz[1]);
	for (int d = 0; d < hd; d++) q[d] = s > 0 ? (uint8_t)fminf(fmaxf(rintf((x[d] - z) / s), 0.f), qmax) : 0;
}

static void fill_qkv(uint16_t *h, size_t n, enum dtype dt, float scale)
{
	for (size_t i = 0; i < n; i++) h[i] = st(frand() * scale, dt);
}

static int run_case(const struct cfg *c, int verbose)
{
	const int hd = c->hd, nkv = c->nkv, nh = nkv * c->group, H = nh + 2 * nkv;
	const int T = c->n_past + c->n, n_layers = 2, layer = 1;
	const int need = (T + c->block_len - 1) / c->block_len;
	struct kv_cache kv = {.n_layers = n_layers, .n_kv_heads = nkv, .head_dim = hd, .block_len = c->block_len,
			      .n_blocks = need + 3, .policy = c->policy};
	const enum dtype dt = c->dt;
	LMOK(attn_kv_check(&kv, dt));
	const size_t pool_bytes = attn_kv_pool_bytes(&kv, dt);
	struct kv_geom g = kv_geom_make(n_layers, nkv, hd, c->block_len, kv.n_blocks, c->policy);
	if (pool_bytes != kv_pool_size(&g) || attn_kv_bytes_per_token(&kv, dt) * kv.n_blocks * c->block_len != pool_bytes) {
		fprintf(stderr, "pool size mismatch\n");
		return 1;
	}

	/* a shuffled block table, so paging bugs show */
	int32_t *blocks = malloc(sizeof(int32_t) * kv.n_blocks);
	for (int i = 0; i < kv.n_blocks; i++) blocks[i] = i;
	for (int i = kv.n_blocks - 1; i > 0; i--) {
		int j = irand(i + 1), t = blocks[i];
		blocks[i] = blocks[j];
		blocks[j] = t;
	}
	float *inv_freq = malloc(sizeof(float) * hd / 2);
	for (int i = 0; i < hd / 2; i++) inv_freq[i] = (float)(1.0 / pow(c->theta, 2.0 * i / hd));

	const size_t row_elems = (size_t)H * hd;
	uint16_t *qkv0 = malloc(sizeof(uint16_t) * T * row_elems); /* inputs: past tokens, then the step */
	fill_qkv(qkv0, (size_t)T * row_elems, dt, c->qscale);
	uint16_t *qkv1 = malloc(sizeof(uint16_t) * T * row_elems); /* after rope_kv */

	void *d_pool = dalloc(pool_bytes);
	CK(cudaMemset(d_pool, 0xff, pool_bytes)); /* NaN everywhere nothing wrote */
	kv.pool = d_pool;
	kv.bytes = pool_bytes;
	void *d_qkv = dalloc(sizeof(uint16_t) * T * row_elems);
	CK(cudaMemcpy(d_qkv, qkv0, sizeof(uint16_t) * T * row_elems, cudaMemcpyHostToDevice));
	int32_t *d_blocks, *d_pos;
	float *d_freq;
	CK(cudaMalloc((void **)&d_blocks, sizeof(int32_t) * kv.n_blocks));
	CK(cudaMalloc((void **)&d_pos, sizeof(int32_t) * 2));
	CK(cudaMalloc((void **)&d_freq, sizeof(float) * hd / 2));
	CK(cudaMemcpy(d_blocks, blocks, sizeof(int32_t) * kv.n_blocks, cudaMemcpyHostToDevice));
	CK(cudaMemcpy(d_freq, inv_freq, sizeof(float) * hd / 2, cudaMemcpyHostToDevice));
	int32_t pos_h[2] = {0, c->n_past};
	CK(cudaMemcpy(d_pos, pos_h, sizeof pos_h, cudaMemcpyHostToDevice));

	/* earlier turns: rope_kv over the past tokens (the other layer too, so layer offsets are exercised) */
	struct attn_step s0 = {.pos0 = d_pos, .blocks = d_blocks, .inv_freq = d_freq, .rope_mscale = c->mscale,
			       .n = c->n_past, .max_ctx = T};
	if (c->n_past) {
		LMOK(attn_launch_rope_kv(d_qkv, dt, &kv, layer, nh, &s0, 0));
	}
	struct attn_step s1 = s0;
	s1.pos0 = d_pos + 1;
	s1.n = c->n;
	s1.max_ctx = c->mode == 1 ? T + 3000 : T; /* as a captured graph would: more than the context */
	void *d_step = (char *)d_qkv + sizeof(uint16_t) * c->n_past * row_elems;
	LMOK(attn_launch_rope_kv(d_step, dt, &kv, layer, nh, &s1, 0));

	const size_t out_bytes = sizeof(uint16_t) * c->n * nh * hd;
	void *d_out = dalloc(out_bytes);
	CK(cudaMemset(d_out, 0xff, out_bytes));
	size_t ws_bytes = attn_workspace_bytes(nh, hd, c->n, s1.max_ctx);
	void *d_ws = dalloc(ws_bytes);
	CK(cudaMemset(d_ws, 0xff, ws_bytes));
	if (c->mode == 0) LMOK(attn_launch_prefill(d_out, d_step, dt, &kv, layer, nh, &s1, 0));
	else if (c->mode == 1) LMOK(attn_launch_decode(d_out, d_step, dt, &kv, layer, nh, &s1, d_ws, ws_bytes, 0));
	else if (c->mode == 2) LMOK(attn_launch_decode(d_out, d_step, dt, &kv, layer, nh, &s1, NULL, 0, 0));
	else LMOK(attn_launch_attention(d_out, d_step, dt, &kv, layer, nh, &s1, d_ws, ws_bytes, 0));
	CK(cudaDeviceSynchronize());

	int bad = 0;
	if (!guard_ok(d_out, out_bytes) || !guard_ok(d_pool, pool_bytes) || !guard_ok(d_ws, ws_bytes) ||
	    !guard_ok(d_qkv, sizeof(uint16_t) * T * row_elems)) {
		fprintf(stderr, "  guard bytes overwritten\n");
		bad = 1;
	}
	CK(cudaMemcpy(qkv1, d_qkv, sizeof(uint16_t) * T * row_elems, cudaMemcpyDeviceToHost));
	uint8_t *pool = malloc(pool_bytes);
	CK(cudaMemcpy(pool, d_pool, pool_bytes, cudaMemcpyDeviceToHost));
	uint16_t *out = malloc(out_bytes);
	CK(cudaMemcpy(out, d_out, out_bytes, cudaMemcpyDeviceToHost));

	/* 1. RoPE: q and k heads vs float RoPE rounded once; v heads untouched */
	struct err er = {0};
	long v_changed = 0;
	float *xr = malloc(sizeof(float) * hd), *xg = malloc(sizeof(float) * hd);
	double *xd = malloc(sizeof(double) * hd);
	for (int t = 0; t < T; t++) {
		for (int h = 0; h < H; h++) {
			const size_t o = (size_t)t * row_elems + (size_t)h * hd;
			if (h >= nh + nkv) {
				v_changed += memcmp(qkv0 + o, qkv1 + o, sizeof(uint16_t) * hd) != 0;
				continue;
			}
			for (int i = 0; i < hd / 2; i++) {
				float a = ld(qkv0, o + i, dt), b = ld(qkv0, o + i + hd / 2, dt);
				float ang = (float)t * inv_freq[i];
				float cs = cosf(ang) * c->mscale, sn = sinf(ang) * c->mscale;
				xd[i] = rnd(a * cs - b * sn, dt);
				xd[i + hd / 2] = rnd(b * cs + a * sn, dt);
			}
			for (int d = 0; d < hd; d++) xg[d] = ld(qkv1, o + d, dt);
			err_row(&er, xg, xd, hd);
		}
	}
	const double rope_bound = dt == DT_F16 ? 1e-3 : 6e-3;
	if (err_rel(&er) > rope_bound || er.worst_row > 4 * rope_bound || er.nan || v_changed) {
		fprintf(stderr, "  rope: rel err %.3g (worst row %.3g, bound %.3g), %ld NaN, %ld v heads changed\n",
			err_rel(&er), er.worst_row, rope_bound, er.nan, v_changed);
		bad = 1;
	}
	const double rope_err = err_rel(&er);

	/* 2. the cache: every position of layer `layer` against the rotated k / v; gather the dequantized cache */
	float *kc = malloc(sizeof(float) * T * nkv * hd), *vc = malloc(sizeof(float) * T * nkv * hd);
	uint8_t *codes = malloc(hd), *qref = malloc(hd);
	long code_diff = 0, code_far = 0, par_diff = 0, cache_nan = 0, exact_diff = 0;
	for (int t = 0; t < T; t++) {
		for (int h = 0; h < nkv; h++) {
			for (int kvi = 0; kvi < 2; kvi++) {
				float *dst = (kvi ? vc : kc) + ((size_t)t * nkv + h) * hd;
				uint16_t sz[2] = {0, 0}, szr[2];
				cache_row(pool, &g, dt, blocks, layer, t, h, kvi, dst, codes, sz);
				const size_t o = (size_t)t * row_elems + (size_t)(nh + kvi * nkv + h) * hd;
				for (int d = 0; d < hd; d++) {
					xr[d] = ld(qkv1, o + d, dt);
					if (isnan(dst[d])) cache_nan++;
				}
				if (c->policy == 0) {
					for (int d = 0; d < hd; d++) exact_diff += dst[d] != xr[d];
					continue;
				}
				quant_ref(xr, hd, c->policy, qref, szr);
				par_diff += sz[0] != szr[0] || sz[1] != szr[1];
				for (int d = 0; d < hd; d++) {
					int dq = (int)codes[d] - (int)qref[d];
					code_diff += dq != 0;
					code_far += dq > 1 || dq < -1;
				}
			}
		}
	}
	const long cache_vals = (long)T * nkv * 2 * hd;
	if (cache_nan || exact_diff || par_diff || code_far || code_diff * 1000 > cache_vals) {
		fprintf(stderr, "  cache: %ld NaN, %ld values differ (policy 0), %ld scale/zero differ, %ld codes off by 1, "
			"%ld by more (of %ld)\n", cache_nan, exact_diff, par_diff, code_diff, code_far, cache_vals);
		bad = 1;
	}

	/* 3. attention: softmax in double over the dequantized cache, q as the GPU rotated it */
	struct err ea = {0};
	double *sc = malloc(sizeof(double) * T), *ref = malloc(sizeof(double) * hd);
	float *og = malloc(sizeof(float) * hd);
	const double scale = 1.0 / sqrt((double)hd);
	for (int i = 0; i < c->n; i++) {
		const int p = c->n_past + i;
		for (int h = 0; h < nh; h++) {
			const int kvh = h / c->group;
			const size_t qo = (size_t)(c->n_past + i) * row_elems + (size_t)h * hd;
			for (int d = 0; d < hd; d++) xr[d] = ld(qkv1, qo + d, dt);
			double mx = -1e300;
			for (int j = 0; j <= p; j++) {
				const float *k = kc + ((size_t)j * nkv + kvh) * hd;
				double s = 0;
				for (int d = 0; d < hd; d++) s += (double)xr[d] * k[d];
				sc[j] = s * scale;
				if (sc[j] > mx) mx = sc[j];
			}
			double sum = 0;
			for (int d = 0; d < hd; d++) ref[d] = 0;
			for (int j = 0; j <= p; j++) {
				const double w = exp(sc[j] - mx);
				const float *v = vc + ((size_t)j * nkv + kvh) * hd;
				sum += w;
				for (int d = 0; d < hd; d++) ref[d] += w * v[d];
			}
			for (int d = 0; d < hd; d++) {
				ref[d] /= sum;
				og[d] = ld(out, ((size_t)i * nh + h) * hd + d, dt);
			}
			err_row(&ea, og, ref, hd);
		}
	}
	/* bf16 P and outputs carry 8 significant bits; quantized caches run the tensor cores in fp16 */
	const double att_bound = dt == DT_F16 ? 2e-3 : 1e-2;
	if (err_rel(&ea) > att_bound || ea.worst_row > 4 * att_bound || ea.nan) {
		fprintf(stderr, "  attention: rel err %.3g (worst row %.3g, bound %.3g), %ld NaN/Inf\n", err_rel(&ea),
			ea.worst_row, att_bound, ea.nan);
		bad = 1;
	}
	if (verbose || bad)
		printf("%s %-4s hd %3d policy %d group %d kv %d block %3d past %4d n %3d %-13s  rope %.2e  "
		       "codes+-1 %ld/%ld  attn %.2e (worst row %.2e)\n",
		       bad ? "FAIL" : "ok  ", dtype_name(dt), hd, c->policy, c->group, nkv, c->block_len, c->n_past, c->n,
		       mode_name[c->mode], rope_err, code_diff, cache_vals, err_rel(&ea), ea.worst_row);

	free(sc), free(ref), free(og), free(codes), free(qref), free(kc), free(vc), free(xr), free(xg), free(xd);
	free(out), free(pool), free(qkv0), free(qkv1), free(blocks), free(inv_freq);
	cudaFree(d_pool), cudaFree(d_qkv), cudaFree(d_blocks), cudaFree(d_pos), cudaFree(d_freq), cudaFree(d_out);
	cudaFree(d_ws);
	return bad;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

/* Device-to-device copy bandwidth, bytes read plus written, median of 10. */
static float copy_bw_gbs(void)
{
	const size_t n = (size_t)1 << 30;
	void *a, *b;
	CK(cudaMalloc(&a, n));
	CK(cudaMalloc(&b, n));
	CK(cudaMemset(a, 1, n));
	cudaEvent_t e0, e1;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	float ms[10];
	for (int r = -2; r < 10; r++) {
		CK(cudaEventRecord(e0, 0));
		CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, 0));
		CK(cudaEventRecord(e1, 0));
		CK(cudaEventSynchronize(e1));
		if (r >= 0) CK(cudaEventElapsedTime(&ms[r], e0, e1));
	}
	qsort(ms, 10, sizeof(float), cmp_float);
	cudaFree(a), cudaFree(b), cudaEventDestroy(e0), cudaEventDestroy(e1);
	return (float)(2.0 * n / (ms[5] * 1e-3) / 1e9);
}

/* Decode at a ctx-token context: a graph of one decode launch per layer (8 layers, so the cache is well
 * beyond L2), replayed; returns the median time per launch in microseconds and the bytes it must read. */
static double time_decode(int policy, int ctx, int splits, double *bytes_out)
{
	const int hd = 128, nkv = 8, nh = 32, H = nh + 2 * nkv, L = 8, bl = 64;
	const enum dtype dt = DT_F16;
	const int nb = (ctx + bl - 1) / bl;
	struct kv_cache kv = {.n_layers = L, .n_kv_heads = nkv, .head_dim = hd, .block_len = bl, .n_blocks = nb,
			      .policy = policy};
	const size_t pool_bytes = attn_kv_pool_bytes(&kv, dt);
	CK(cudaMalloc(&kv.pool, pool_bytes));
	int32_t *blocks = malloc(sizeof(int32_t) * nb);
	for (int i = 0; i < nb; i++) blocks[i] = i;
	float *freq = malloc(sizeof(float) * hd / 2);
	for (int i = 0; i < hd / 2; i++) freq[i] = (float)(1.0 / pow(10000.0, 2.0 * i / hd));
	int32_t *d_blocks, *d_pos;
	float *d_freq;
	CK(cudaMalloc((void **)&d_blocks, sizeof(int32_t) * nb));
	CK(cudaMalloc((void **)&d_pos, sizeof(int32_t) * 2));
	CK(cudaMalloc((void **)&d_freq, sizeof(float) * hd / 2));
	CK(cudaMemcpy(d_blocks, blocks, sizeof(int32_t) * nb, cudaMemcpyHostToDevice));
	CK(cudaMemcpy(d_freq, freq, sizeof(float) * hd / 2, cudaMemcpyHostToDevice));
	int32_t pos_h[2] = {0, ctx - 1};
	CK(cudaMemcpy(d_pos, pos_h, sizeof pos_h, cudaMemcpyHostToDevice));

	/* fill every layer's cache with ctx random tokens */
	const size_t row = (size_t)H * hd;
	uint16_t *h = malloc(sizeof(uint16_t) * ctx * row);
	fill_qkv(h, (size_t)ctx * row, dt, 1.f);
	void *d_qkv;
	CK(cudaMalloc(&d_qkv, sizeof(uint16_t) * ctx * row));
	CK(cudaMemcpy(d_qkv, h, sizeof(uint16_t) * ctx * row, cudaMemcpyHostToDevice));
	struct attn_step s = {.pos0 = d_pos, .blocks = d_blocks, .inv_freq = d_freq, .rope_mscale = 1, .n = ctx,
			      .max_ctx = ctx};
	for (int l = 0; l < L; l++) LMOK(attn_launch_rope_kv(d_qkv, dt, &kv, l, nh, &s, 0));
	CK(cudaDeviceSynchronize());

	/* the step: one token at position ctx - 1 (its q is the last row) */
	struct attn_step d = s;
	d.pos0 = d_pos + 1;
	d.n = 1;
	const void *q = (const char *)d_qkv + sizeof(uint16_t) * (ctx - 1) * row;
	void *d_out;
	CK(cudaMalloc(&d_out, sizeof(uint16_t) * nh * hd));
	const size_t wsb = attn_workspace_bytes(nh, hd, 1, ctx);
	void *ws;
	CK(cudaMalloc(&ws, wsb));
	char sbuf[16];
	if (splits > 0) {
		snprintf(sbuf, sizeof sbuf, "%d", splits);
		setenv("LMTERM_ATTN_SPLITS", sbuf, 1);
	} else {
		unsetenv("LMTERM_ATTN_SPLITS");
	}
	cudaStream_t st;
	CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
	for (int l = 0; l < L; l++) LMOK(attn_launch_decode(d_out, q, dt, &kv, l, nh, &d, ws, wsb, st)); /* warm */
	cudaGraph_t graph;
	cudaGraphExec_t exec;
	CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
	for (int l = 0; l < L; l++) LMOK(attn_launch_decode(d_out, q, dt, &kv, l, nh, &d, ws, wsb, st));
	CK(cudaStreamEndCapture(st, &graph));
	CK(cudaGraphInstantiate(&exec, graph, 0));
	unsetenv("LMTERM_ATTN_SPLITS");
	cudaEvent_t e0, e1;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	enum { REPS = 50 };
	float ms[REPS];
	for (int r = -5; r < REPS; r++) {
		CK(cudaEventRecord(e0, st));
		CK(cudaGraphLaunch(exec, st));
		CK(cudaEventRecord(e1, st));
		CK(cudaEventSynchronize(e1));
		if (r >= 0) CK(cudaEventElapsedTime(&ms[r], e0, e1));
	}
	qsort(ms, REPS, sizeof(float), cmp_float);
	const double bytes_per_tok = (double)attn_kv_bytes_per_token(&kv, dt) / L;
	*bytes_out = bytes_per_tok * ctx + 2.0 * nh * hd * 2; /* K and V of every position, q in, out */
	cudaGraphExecDestroy(exec), cudaGraphDestroy(graph), cudaStreamDestroy(st);
	cudaEventDestroy(e0), cudaEventDestroy(e1);
	cudaFree(kv.pool), cudaFree(d_blocks), cudaFree(d_pos), cudaFree(d_freq), cudaFree(d_qkv), cudaFree(d_out);
	cudaFree(ws);
	free(h), free(blocks), free(freq);
	return ms[REPS / 2] * 1e3 / L;
}

/* Prefill of n tokens from an empty cache at InternLM2.5-7B shapes; returns microseconds per launch. */
static double time_prefill(int policy, int n, double *tflops)
{
	const int hd = 128, nkv = 8, nh = 32, H = nh + 2 * nkv, bl = 64;
	const enum dtype dt = DT_F16;
	const int nb = (n + bl - 1) / bl;
	struct kv_cache kv = {.n_layers = 1, .n_kv_heads = nkv, .head_dim = hd, .block_len = bl, .n_blocks = nb,
			      .policy = policy};
	CK(cudaMalloc(&kv.pool, attn_kv_pool_bytes(&kv, dt)));
	int32_t *blocks = malloc(sizeof(int32_t) * nb);
	for (int i = 0; i < nb; i++) blocks[i] = i;
	float *freq = malloc(sizeof(float) * hd / 2);
	for (int i = 0; i < hd / 2; i++) freq[i] = (float)(1.0 / pow(10000.0, 2.0 * i / hd));
	int32_t *d_blocks, *d_pos;
	float *d_freq;
	CK(cudaMalloc((void **)&d_blocks, sizeof(int32_t) * nb));
	CK(cudaMalloc((void **)&d_pos, sizeof(int32_t)));
	CK(cudaMalloc((void **)&d_freq, sizeof(float) * hd / 2));
	CK(cudaMemcpy(d_blocks, blocks, sizeof(int32_t) * nb, cudaMemcpyHostToDevice));
	CK(cudaMemcpy(d_freq, freq, sizeof(float) * hd / 2, cudaMemcpyHostToDevice));
	CK(cudaMemset(d_pos, 0, sizeof(int32_t)));
	const size_t row = (size_t)H * hd;
	uint16_t *h = malloc(sizeof(uint16_t) * n * row);
	fill_qkv(h, (size_t)n * row, dt, 1.f);
	void *d_qkv, *d_out;
	CK(cudaMalloc(&d_qkv, sizeof(uint16_t) * n * row));
	CK(cudaMalloc(&d_out, sizeof(uint16_t) * n * nh * hd));
	CK(cudaMemcpy(d_qkv, h, sizeof(uint16_t) * n * row, cudaMemcpyHostToDevice));
	struct attn_step s = {.pos0 = d_pos, .blocks = d_blocks, .inv_freq = d_freq, .rope_mscale = 1, .n = n,
			      .max_ctx = n};
	LMOK(attn_launch_rope_kv(d_qkv, dt, &kv, 0, nh, &s, 0));
	cudaEvent_t e0, e1;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	enum { REPS = 20 };
	float ms[REPS];
	for (int r = -3; r < REPS; r++) {
		CK(cudaEventRecord(e0, 0));
		LMOK(attn_launch_prefill(d_out, d_qkv, dt, &kv, 0, nh, &s, 0));
		CK(cudaEventRecord(e1, 0));
		CK(cudaEventSynchronize(e1));
		if (r >= 0) CK(cudaEventElapsedTime(&ms[r], e0, e1));
	}
	qsort(ms, REPS, sizeof(float), cmp_float);
	/* causal: about n^2/2 query-key pairs per head, 2 matrix products of 2 hd flops each */
	*tflops = 4.0 * hd * nh * ((double)n * (n + 1) / 2) / (ms[REPS / 2] * 1e-3) / 1e12;
	cudaEventDestroy(e0), cudaEventDestroy(e1);
	cudaFree(kv.pool), cudaFree(d_blocks), cudaFree(d_pos), cudaFree(d_freq), cudaFree(d_qkv), cudaFree(d_out);
	free(h), free(blocks), free(freq);
	return ms[REPS / 2] * 1e3;
}

/* Host-only checks (they run without a GPU too): argument checks name what is wrong, the pool size is the
 * layout's, slabs lie inside the pool without overlapping, and every 16-byte access stays aligned. */
static int host_checks(void)
{
	int bad = 0;
	struct kv_cache kv = {.n_layers = 3, .n_kv_heads = 2, .head_dim = 128, .block_len = 64, .n_blocks = 5};
	static const int policies[] = {0, 8, 4};
	static const int row_bytes[] = {256, 128, 64}; /* per token per head, data only */
	for (int pi = 0; pi < 3; pi++) {
		kv.policy = policies[pi];
		const size_t per_tok = (size_t)kv.n_layers * kv.n_kv_heads * 2 * (row_bytes[pi] + (pi ? 4 : 0));
		if (attn_kv_check(&kv, DT_F16) != LM_OK || attn_kv_bytes_per_token(&kv, DT_BF16) != per_tok ||
		    attn_kv_pool_bytes(&kv, DT_F16) != per_tok * kv.n_blocks * kv.block_len) {
			printf("FAIL pool size, policy %d: %zu bytes per token (want %zu), %zu pool bytes\n", kv.policy,
			       attn_kv_bytes_per_token(&kv, DT_BF16), per_tok, attn_kv_pool_bytes(&kv, DT_F16));
			bad = 1;
		}
		struct kv_geom g = kv_geom_make(kv.n_layers, kv.n_kv_heads, kv.head_dim, kv.block_len, kv.n_blocks,
						kv.policy);
		size_t expect = 0;
		for (int l = 0; l < kv.n_layers; l++)
			for (int b = 0; b < kv.n_blocks; b++)
				for (int h = 0; h < kv.n_kv_heads; h++)
					for (int k = 0; k < 2; k++) {
						size_t o = kv_slab_offset(&g, l, b, h, k);
						if (o != expect || o % 16 || kv_param_offset(&g, 0) % 16) bad = 1;
						expect = o + g.slab_bytes;
					}
		if (expect != kv_pool_size(&g) || kv_row_offset(&g, kv.block_len) != g.data_bytes) {
			printf("FAIL layout, policy %d: slabs end at %zu of %zu\n", kv.policy, expect, kv_pool_size(&g));
			bad = 1;
		}
	}
	struct {
		int hd, bl, policy;
		enum dtype dt;
		const char *word;
	} rej[] = {{96, 64, 0, DT_F16, "head_dim"}, {128, 24, 0, DT_F16, "block length"},
		   {64, 64, 3, DT_BF16, "policy"}, {64, 64, 0, DT_F32, "F32"}};
	for (size_t i = 0; i < ARRAY_SIZE(rej); i++) {
		struct kv_cache k = kv;
		k.head_dim = rej[i].hd, k.block_len = rej[i].bl, k.policy = rej[i].policy;
		if (attn_kv_check(&k, rej[i].dt) != LM_ERR || !strstr(lm_errmsg(), rej[i].word)) {
			printf("FAIL attn_kv_check accepted or misnamed case %zu: '%s'\n", i, lm_errmsg());
			bad = 1;
		}
	}
	/* the workspace holds every split the launcher may pick: <= 128 splits of >= 64 keys */
	if (attn_workspace_bytes(32, 128, 1, 4096) != (size_t)64 * 32 * (128 * 4 + 8) ||
	    attn_workspace_bytes(32, 128, 2, 1 << 20) != (size_t)128 * 64 * (128 * 4 + 8) ||
	    attn_workspace_bytes(8, 64, 1, 1) != (size_t)8 * (64 * 4 + 8)) {
		printf("FAIL attn_workspace_bytes\n");
		bad = 1;
	}
	printf("host checks (pool size, layout, argument checks, workspace): %s\n", bad ? "FAIL" : "ok");
	return bad;
}
#endif

int main(void)
{
#if !HAVE_CUDA
	printf("SKIP: built without CUDA\n");
	return 77;
#else
	if (host_checks()) return 1;
	int ndev = 0;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
		printf("SKIP: no CUDA device\n");
		return 77;
	}
	struct cudaDeviceProp prop;
	CK(cudaGetDeviceProperties(&prop, 0));
	const char *seed_env = getenv("LMTERM_TEST_SEED");
	uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
	rng_state = seed | 1;
	printf("test_attn_ops on %s (%d SMs), seed %llu\n", prop.name, prop.multiProcessorCount,
	       (unsigned long long)seed);

	/* every dtype x head_dim x policy x GQA ratio, one prefill and one decode case each with random sizes */
	static const int prefill_n[] = {1, 2, 7, 16, 33, 64, 100, 129, 300};
	static const int prefill_past[] = {0, 1, 37, 64, 200, 500};
	static const int decode_past[] = {0, 1, 15, 16, 17, 63, 64, 65, 127, 1000, 2047, 3001, 4999};
	static const int block_lens[] = {64, 64, 16, 48, 128};
	static const int groups[] = {1, 4, 8};
	static const int policies[] = {0, 8, 4};
	/* LMTERM_TEST_MAX_CASES: run only the first N random cases (for the slow compute-sanitizer tools) */
	const int max_cases = getenv("LMTERM_TEST_MAX_CASES") ? atoi(getenv("LMTERM_TEST_MAX_CASES")) : 1 << 30;
	int ncase = 0;
	for (int dti = 0; dti < 2; dti++)
		for (int hdi = 0; hdi < 2; hdi++)
			for (int pi = 0; pi < 3; pi++)
				for (int gi = 0; gi < 3; gi++)
					for (int mode = 0; mode < 2; mode++) {
						struct cfg c = {
							.dt = dti ? DT_BF16 : DT_F16, .hd = hdi ? 128 : 64,
							.policy = policies[pi], .group = groups[gi],
							.nkv = groups[gi] == 1 ? 4 : 2,
							.block_len = block_lens[irand(ARRAY_SIZE(block_lens))],
							.theta = irand(2) ? 10000.f : 500000.f, .mscale = 1.f,
							.qscale = 0.5f + 2.f * fabsf(frand()),
						};
						if (mode == 0) {
							c.mode = 0;
							c.n = prefill_n[irand(ARRAY_SIZE(prefill_n))];
							c.n_past = prefill_past[irand(ARRAY_SIZE(prefill_past))];
						} else {
							c.mode = 1 + irand(3);
							c.n = irand(4) ? 1 : 1 + irand(5);
							c.n_past = decode_past[irand(ARRAY_SIZE(decode_past))];
						}
						if (ncase >= max_cases) continue;
						fails += run_case(&c, 1);
						ncase++;
					}
	/* fixed edge cases: the extremes the brief names, and RoPE with an attention factor */
	const struct cfg fixed[] = {
		{DT_F16, 128, 0, 2, 4, 64, 4999, 1, 1, 10000.f, 1.f, 1.f},
		{DT_BF16, 64, 4, 1, 8, 16, 4999, 1, 1, 10000.f, 1.f, 1.f},
		{DT_F16, 128, 8, 2, 8, 64, 0, 300, 0, 10000.f, 1.f, 1.f},
		{DT_BF16, 128, 8, 2, 4, 48, 700, 300, 0, 1000000.f, 1.2f, 2.f},
		{DT_F16, 64, 4, 4, 1, 64, 333, 300, 3, 10000.f, 1.f, 1.f},
		{DT_F16, 128, 0, 2, 8, 64, 0, 1, 1, 10000.f, 1.f, 1.f},
	};
	for (size_t i = 0; i < ARRAY_SIZE(fixed) && ncase < max_cases; i++, ncase++) fails += run_case(&fixed[i], 1);
	printf("%d of %d cases passed\n", ncase - fails, ncase);

	/* timing (informative; speed is reported by lmterm bench) */
	if (!getenv("LMTERM_TEST_NO_TIMING")) {
		const double bw = copy_bw_gbs();
		printf("\ndevice copy bandwidth (read + write): %.0f GB/s\n", bw);
		printf("decode at 4096 context, F16 activations, 32 q / 8 kv heads, hd 128, graph of 8 layers:\n");
		printf("%-8s %-7s %10s %10s %9s %8s\n", "policy", "splits", "us/layer", "MB read", "GB/s", "of copy");
		static const int sweep[] = {0, 16, 32, 64};
		double t0 = 0;
		for (int pi = 0; pi < 3; pi++) {
			double best = 1e30;
			for (size_t si = 0; si < ARRAY_SIZE(sweep); si++) {
				double bytes;
				const double us = time_decode(policies[pi], 4096, sweep[si], &bytes);
				char sp[16];
				snprintf(sp, sizeof sp, sweep[si] ? "%d" : "auto", sweep[si]);
				printf("%-8d %-7s %10.2f %10.2f %9.0f %7.1f%%\n", policies[pi], sp, us, bytes / 1e6,
				       bytes / (us * 1e-6) / 1e9, 100.0 * bytes / (us * 1e-6) / 1e9 / bw);
				if (sweep[si] == 0) best = us;
			}
			if (pi == 0) t0 = best;
			else if (best > t0 * 1.05)
				printf("NOTE: policy %d decode (auto splits) is slower than policy 0 (%.2f vs %.2f us)\n",
				       policies[pi], best, t0);
		}
		printf("prefill from an empty cache, same shapes:\n");
		for (int pi = 0; pi < 3; pi++) {
			double tf;
			const double us = time_prefill(policies[pi], 2048, &tf);
			printf("policy %d n 2048: %.1f us, %.0f TFLOP/s (causal flops)\n", policies[pi], us, tf);
		}
	}
	return fails ? 1 : 0;
#endif
}
