// rmsnorm.cu: RMSNorm fused with the residual add that precedes it; and Qwen3's per-head q/k norm.
//
//   x += dx (rounded to the activation type, as torch adds two fp16/bf16 tensors);
//   h = act(w * act(x * rsqrt(mean(x^2) + eps)))
// which is transformers' LlamaRMSNorm on fp16/bf16 inputs (the normalization in float, rounded to the
// input type, then the weight). One block per row: the add and the sum of squares in one pass (x written
// back), a block reduction, then a second pass that reads x again (the row is in L1/L2). Fusing the add
// saves a kernel and a round trip of x through memory per norm: two norms per layer.
#define PDL_FAMILY "norm" // LMTERM_PDL=norm,... (cuda/pdl.cuh)
#include "config.h"
#include "kernels.h"
#include "ops_common.cuh"

template <typename T>
__global__ void __launch_bounds__(256) add_rmsnorm_vec(uint16_t *h, uint16_t *x, const uint16_t *dx,
						       const float *w, int dim, float eps)
{
	pdl_wait_trigger();
	const size_t row = (size_t)blockIdx.x * dim;
	uint4 *xr = (uint4 *)(x + row);
	const uint4 *dr = dx ? (const uint4 *)(dx + row) : nullptr;
	uint4 *hr = (uint4 *)(h + row);
	const int nv = dim / 8;
	float ss = 0.f;
	for (int c = threadIdx.x; c < nv; c += blockDim.x) {
		vec8 v;
		v.u = xr[c];
		if (dr) {
			vec8 d;
			d.u = dr[c];
#pragma unroll
			for (int i = 0; i < 8; i++) set_elem<T>(v, i, elem<T>(v, i) + elem<T>(d, i));
			xr[c] = v.u;
		}
#pragma unroll
		for (int i = 0; i < 8; i++) {
			float f = elem<T>(v, i);
			ss += f * f;
		}
	}
	const float inv = rsqrtf(block_sum_f(ss) / dim + eps);
	for (int c = threadIdx.x; c < nv; c += blockDim.x) {
		vec8 v, o;
		v.u = xr[c]; // this thread's own write above
		const float4 w0 = __ldg((const float4 *)w + 2 * c), w1 = __ldg((const float4 *)w + 2 * c + 1);
		const float ww[8] = { w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w };
#pragma unroll
		for (int i = 0; i < 8; i++) {
			float nrm = to_f(from_f<T>(elem<T>(v, i) * inv));
			set_elem<T>(o, i, ww[i] * nrm);
		}
		hr[c] = o.u;
	}
}

// The same with the row in registers (C 16-byte chunks per thread, dim <= 8 C blockDim): the norm weight is
// loaded before waiting for the previous kernel (PDL) and x is not read twice, so a decode step's norm (one
// block, a chain of dependent loads) costs fewer round trips.
// With e.table, the row is the token's embedding instead of x (written to x; dx unused): the first layer's
// norm done by the embedding lookup, one kernel and one wait fewer per step. The ids as k_embed reads them.
struct emb_src {
	const uint16_t *table;
	const int32_t *ids, *chain, *tok;
	int vocab;
};
template <typename T, int C>
__global__ void __launch_bounds__(256) add_rmsnorm_reg(uint16_t *h, uint16_t *x, const uint16_t *dx,
						       const float *w, int dim, float eps, emb_src e)
{
	TRACE_SCOPE;
	pdl_launch_dependents();
	const size_t row = (size_t)blockIdx.x * dim;
	uint4 *xr = (uint4 *)(x + row);
	const uint4 *dr = dx ? (const uint4 *)(dx + row) : nullptr;
	uint4 *hr = (uint4 *)(h + row);
	const int nv = dim / 8;
	const uint4 *src = xr;
	float4 w0[C], w1[C];
#pragma unroll
	for (int k = 0; k < C; k++) {
		const int c = threadIdx.x + k * blockDim.x;
		if (c < nv) {
			w0[k] = __ldg((const float4 *)w + 2 * c);
			w1[k] = __ldg((const float4 *)w + 2 * c + 1);
		}
	}
	pdl_wait();
	if (e.table) { // an id outside the vocabulary (only a bug gets here: the host checks them) gives zeros
		const int id = step_token(e.ids, e.chain, e.tok, blockIdx.x);
		src = id >= 0 && id < e.vocab ? (const uint4 *)(e.table + (size_t)id * dim) : nullptr;
	}
	vec8 v[C], d[C];
#pragma unroll
	for (int k = 0; k < C; k++) {
		const int c = threadIdx.x + k * blockDim.x;
		if (c < nv) {
			v[k].u = src ? src[c] : make_uint4(0, 0, 0, 0);
			if (e.table) xr[c] = v[k].u;
			else if (dr) d[k].u = dr[c];
		}
	}
	float ss = 0.f;
#pragma unroll
	for (int k = 0; k < C; k++) {
		const int c = threadIdx.x + k * blockDim.x;
		if (c >= nv) break;
		if (dr && !e.table) {
#pragma unroll
			for (int i = 0; i < 8; i++) set_elem<T>(v[k], i, elem<T>(v[k], i) + elem<T>(d[k], i));
			xr[c] = v[k].u;
		}
#pragma unroll
		for (int i = 0; i < 8; i++) {
			float f = elem<T>(v[k], i);
			ss += f * f;
		}
	}
	const float inv = rsqrtf(block_sum_f(ss) / dim + eps);
#pragma unroll
	for (int k = 0; k < C; k++) {
		const int c = threadIdx.x + k * blockDim.x;
		if (c >= nv) break;
		const float ww[8] = { w0[k].x, w0[k].y, w0[k].z, w0[k].w, w1[k].x, w1[k].y, w1[k].z, w1[k].w };
		vec8 o;
#pragma unroll
		for (int i = 0; i < 8; i++) set_elem<T>(o, i, ww[i] * to_f(from_f<T>(elem<T>(v[k], i) * inv)));
		hr[c] = o.u;
	}
}

template <typename T>
__global__ void __launch_bounds__(256) add_rmsnorm_scalar(T *h, T *x, const T *dx, const float *w, int dim,
							  float eps)
{
	pdl_wait_trigger();
	const size_t row = (size_t)blockIdx.x * dim;
	float ss = 0.f;
	for (int c = threadIdx.x; c < dim; c += blockDim.x) {
		float f = to_f(x[row + c]);
		if (dx) {
			T t = from_f<T>(f + to_f(dx[row + c]));
			x[row + c] = t;
			f = to_f(t);
		}
		ss += f * f;
	}
	const float inv = rsqrtf(block_sum_f(ss) / dim + eps);
	for (int c = threadIdx.x; c < dim; c += blockDim.x)
		h[row + c] = from_f<T>(w[c] * to_f(from_f<T>(to_f(x[row + c]) * inv)));
}

static bool norm_in_regs(int dim)
{
	return dim % 8 == 0 && dim <= 8 * 4 * (dim >= 2048 ? 256 : 128);
}

static int add_rmsnorm(void *h, void *x, const void *dx, const float *w, int n, int dim, float eps, enum dtype act,
		       cudaStream_t s, emb_src e)
{
	if (n <= 0) return LM_OK;
	const int threads = dim >= 2048 ? 256 : 128;
	if (norm_in_regs(dim)) { // the row in registers: up to 4 chunks per thread
		const int C = (dim / 8 + threads - 1) / threads;
		if (act == DT_BF16) {
			if (C == 1) klaunch(add_rmsnorm_reg<bf16_t, 1>, n, threads, 0, s, (uint16_t *)h, (uint16_t *)x, (const uint16_t *)dx, w, dim, eps, e);
			else if (C == 2) klaunch(add_rmsnorm_reg<bf16_t, 2>, n, threads, 0, s, (uint16_t *)h, (uint16_t *)x, (const uint16_t *)dx, w, dim, eps, e);
			else klaunch(add_rmsnorm_reg<bf16_t, 4>, n, threads, 0, s, (uint16_t *)h, (uint16_t *)x, (const uint16_t *)dx, w, dim, eps, e);
		} else {
			if (C == 1) klaunch(add_rmsnorm_reg<half, 1>, n, threads, 0, s, (uint16_t *)h, (uint16_t *)x, (const uint16_t *)dx, w, dim, eps, e);
			else if (C == 2) klaunch(add_rmsnorm_reg<half, 2>, n, threads, 0, s, (uint16_t *)h, (uint16_t *)x, (const uint16_t *)dx, w, dim, eps, e);
			else klaunch(add_rmsnorm_reg<half, 4>, n, threads, 0, s, (uint16_t *)h, (uint16_t *)x, (const uint16_t *)dx, w, dim, eps, e);
		}
	} else if (dim % 8 == 0) {
		if (act == DT_BF16)
			klaunch(add_rmsnorm_vec<bf16_t>, n, threads, 0, s, (uint16_t *)h, (uint16_t *)x,
				(const uint16_t *)dx, w, dim, eps);
		else
			klaunch(add_rmsnorm_vec<half>, n, threads, 0, s, (uint16_t *)h, (uint16_t *)x,
				(const uint16_t *)dx, w, dim, eps);
	} else if (act == DT_BF16) {
		klaunch(add_rmsnorm_scalar<bf16_t>, n, threads, 0, s, (bf16_t *)h, (bf16_t *)x, (const bf16_t *)dx, w,
			dim, eps);
	} else {
		klaunch(add_rmsnorm_scalar<half>, n, threads, 0, s, (half *)h, (half *)x, (const half *)dx, w, dim, eps);
	}
	LAUNCHED("add_rmsnorm");
}

extern "C" int k_add_rmsnorm(void *h, void *x, const void *dx, const float *w, int n, int dim, float eps,
			     enum dtype act, cudaStream_t s)
{
	return add_rmsnorm(h, x, dx, w, n, dim, eps, act, s, emb_src{});
}

extern "C" bool k_embed_rmsnorm_supported(int dim)
{
	return norm_in_regs(dim);
}

extern "C" int k_embed_rmsnorm(void *h, void *x, const void *table, const int32_t *ids, const int32_t *chain,
			       const int32_t *tok, int vocab, const float *w, int n, int dim, float eps, enum dtype act,
			       cudaStream_t s)
{
	if (!norm_in_regs(dim)) return lm_err("embedding + norm: dim %d", dim);
	return add_rmsnorm(h, x, nullptr, w, n, dim, eps, act, s, emb_src{ (const uint16_t *)table, ids, chain, tok, vocab });
}

// k_norm_apply: one block per row; the sums of squares in the order the GEMV epilogue (cuda/awq_gemm.cu,
// EPI_NORM) adds them, so that both paths scale a token alike
template <typename T>
__global__ void __launch_bounds__(256) norm_apply_kernel(T *xw, const float *part, int dim, float eps)
{
	pdl_wait_trigger();
	const int P = dim / 16;
	const float *pr = part + (size_t)blockIdx.x * P;
	T *row = xw + (size_t)blockIdx.x * dim;
	__shared__ float inv_s;
	if (threadIdx.x < 32) {
		float v = 0.f;
		for (int i = threadIdx.x; i < P; i += 32) v += pr[i];
		v = warp_sum_f(v);
		if (threadIdx.x == 0) inv_s = rsqrtf(v / dim + eps);
	}
	__syncthreads();
	const float inv = inv_s;
	for (int c = threadIdx.x; c < dim; c += blockDim.x) row[c] = from_f<T>(to_f(row[c]) * inv);
}

extern "C" int k_norm_apply(void *xw, const float *part, int n, int dim, float eps, enum dtype act, cudaStream_t s)
{
	if (n <= 0) return LM_OK;
	if (dim % 16) return lm_err("norm_apply: dim %d is not a multiple of 16", dim);
	if (act == DT_BF16) klaunch(norm_apply_kernel<bf16_t>, n, 256, 0, s, (bf16_t *)xw, part, dim, eps);
	else klaunch(norm_apply_kernel<half>, n, 256, 0, s, (half *)xw, part, dim, eps);
	LAUNCHED("norm_apply");
}

// Qwen3's q_norm and k_norm: the same normalization (float, rounded to the activation type, then the weight) on
// each head of hd elements of the fused qkv rows, in place: the nh q heads of a row with wq, its nkv k heads with
// wk, the v heads untouched. One warp per head: a head is 64..256 elements in every Qwen3, too short for a
// block, and a warp reduces without shared memory or a barrier. The weights are read before the wait (PDL).
template <typename T>
__global__ void __launch_bounds__(256) qk_norm_heads(T *qkv, const float *wq, const float *wk, int n, int nh,
						     int nkv, int hd, float eps)
{
	pdl_launch_dependents();
	const int heads = nh + nkv;
	const int head = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
	const bool live = head < n * heads; // the whole warp agrees: no lane may leave before the others reduce
	const int tok = live ? head / heads : 0, h = live ? head % heads : 0;
	const float *w = h < nh ? wq : wk;
	float wr[8];
#pragma unroll
	for (int k = 0; k < 8; k++) wr[k] = live && lane + 32 * k < hd ? __ldg(w + lane + 32 * k) : 0.f;
	pdl_wait();
	if (!live) return;
	T *x = qkv + (size_t)tok * (nh + 2 * nkv) * hd + (size_t)h * hd;
	float ss = 0.f;
	for (int c = lane; c < hd; c += 32) {
		const float f = to_f(x[c]);
		ss += f * f;
	}
	const float inv = rsqrtf(warp_sum_f(ss) / hd + eps);
	// the first 8 chunks with the weights held in registers (unrolled: no local-memory array), the rest of a
	// head longer than 256 with the weights read again
#pragma unroll
	for (int k = 0; k < 8; k++) {
		const int c = lane + 32 * k;
		if (c < hd) x[c] = from_f<T>(wr[k] * to_f(from_f<T>(to_f(x[c]) * inv)));
	}
	for (int c = lane + 256; c < hd; c += 32) x[c] = from_f<T>(w[c] * to_f(from_f<T>(to_f(x[c]) * inv)));
}

extern "C" int k_qk_norm(void *qkv, const float *wq, const float *wk, int n, int nh, int nkv, int hd, float eps,
			 enum dtype act, cudaStream_t s)
{
	if (n <= 0 || nh + nkv <= 0) return LM_OK;
	const int per_block = 8; // heads (warps) per block
	const long long heads = (long long)n * (nh + nkv);
	const unsigned blocks = (unsigned)((heads + per_block - 1) / per_block);
	if (act == DT_BF16)
		klaunch(qk_norm_heads<bf16_t>, blocks, 32 * per_block, 0, s, (bf16_t *)qkv, wq, wk, n, nh, nkv, hd, eps);
	else
		klaunch(qk_norm_heads<half>, blocks, 32 * per_block, 0, s, (half *)qkv, wq, wk, n, nh, nkv, hd, eps);
	LAUNCHED("qk_norm");
}
