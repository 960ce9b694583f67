// gemv.cu: y[n][N] = x[n][K] . W[N][K]^T (+ bias) for fp16/bf16 weights at batch n = 1..8 (decode).
//
// Decode is memory-bound: a step reads every weight once, and the batch is too small to feed the tensor
// cores, so the kernel's only job is to stream W at the copy bandwidth. Each warp owns R consecutive rows
// and walks K with 16-byte loads (8 elements per lane, 512 bytes per warp per row per iteration), U loads
// in flight per row per lane; the weights bypass L1 (ld.global.nc.L1::no_allocate) so that x, which every
// warp re-reads, stays there. Products in float, a warp reduction at the end, the bias added once.
// R grows with the batch so that each x vector taken from L1 serves several rows (L1 bandwidth, not
// DRAM, would bound batch 8 otherwise). The logits use the same kernel with a float output.
// Under PDL (pdl.cuh) the first loads of W are issued before waiting for the kernel that writes x.
#define PDL_FAMILY "gemv" // LMTERM_PDL=gemv,... (cuda/pdl.cuh)
#include "config.h"
#include "kernels.h"
#include "ops_common.cuh"

#include <stdlib.h>

static __device__ __forceinline__ uint4 ld_stream(const uint4 *p)
{
	uint4 v;
	asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
		     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
		     : "l"(p));
	return v;
}

// One kernel, shaped by its template: W warps per block; KS warps share one row group (split K, their
// partial sums added through shared memory), so a block owns (W / KS) * R rows; U 16-byte loads in flight
// per row per lane; PRE: under PDL, the first loads are issued before waiting for x.
// GLU (the MLP's fused w13 with SwiGLU, R == 2): a row group owns output j of F = N / 2, computing the gate
// row j and the up row F + j together, and stores silu(gate) * up: y[n][F] (the swiglu kernel and the
// round trip of gate and up through memory disappear).
template <typename T, typename TO, int NB, int R, int U, int W, int KS, bool PRE, bool GLU = false>
__global__ void __launch_bounds__(W * 32) gemv_kernel(TO *__restrict__ y, const uint16_t *__restrict__ x,
						     const uint16_t *__restrict__ w, const float *__restrict__ bias,
						     int N, int K)
{
	TRACE_SCOPE;
	static_assert(!GLU || R == 2, "GLU computes one gate and one up row");
	pdl_launch_dependents();
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int grp = warp / KS, ks = warp % KS;
	const int F = N / 2;
	const int row0 = GLU ? blockIdx.x * (W / KS) + grp : (blockIdx.x * (W / KS) + grp) * R;
	const int kv = K / 8;
	const uint4 *wr[R];
#pragma unroll
	for (int r = 0; r < R; r++) {
		const int row = GLU ? min(row0, F - 1) + r * F : min(row0 + r, N - 1);
		wr[r] = (const uint4 *)(w + (size_t)row * K);
	}
	float acc[NB][R];
#pragma unroll
	for (int b = 0; b < NB; b++)
#pragma unroll
		for (int r = 0; r < R; r++) acc[b][r] = 0.f;

	// the KS warps of a row group read adjacent 512-byte segments of each row
	constexpr int STRIDE = 32 * KS;
	const int first = ks * 32 + lane;
	vec8 wv[U][R];
	if (PRE) {
#pragma unroll
		for (int u = 0; u < U; u++)
#pragma unroll
			for (int r = 0; r < R; r++)
				wv[u][r].u = first + STRIDE * u < kv ? ld_stream(wr[r] + first + STRIDE * u) : make_uint4(0, 0, 0, 0);
	}
	pdl_wait();
	for (int c0 = first; c0 < kv; c0 += STRIDE * U) {
		if (!PRE || c0 != first) {
#pragma unroll
			for (int u = 0; u < U; u++)
#pragma unroll
				for (int r = 0; r < R; r++)
					wv[u][r].u = c0 + STRIDE * u < kv ? ld_stream(wr[r] + c0 + STRIDE * u) : make_uint4(0, 0, 0, 0);
		}
#pragma unroll
		for (int u = 0; u < U; u++) {
			const int c = c0 + STRIDE * u;
			if (c >= kv) break;
			float wf[R][8];
#pragma unroll
			for (int r = 0; r < R; r++) unpack8<T>(wv[u][r], wf[r]);
#pragma unroll
			for (int b = 0; b < NB; b++) {
				vec8 xv;
				xv.u = __ldg((const uint4 *)(x + (size_t)b * K) + c);
				float xf[8];
				unpack8<T>(xv, xf);
#pragma unroll
				for (int r = 0; r < R; r++)
#pragma unroll
					for (int i = 0; i < 8; i++) acc[b][r] = fmaf(xf[i], wf[r][i], acc[b][r]);
			}
		}
	}
#pragma unroll
	for (int b = 0; b < NB; b++)
#pragma unroll
		for (int r = 0; r < R; r++) acc[b][r] = warp_sum_f(acc[b][r]);
	if (KS > 1) {
		__shared__ float part[W][NB * R];
		if (lane == 0)
#pragma unroll
			for (int b = 0; b < NB; b++)
#pragma unroll
				for (int r = 0; r < R; r++) part[warp][b * R + r] = acc[b][r];
		__syncthreads();
		if (!ks)
#pragma unroll
			for (int b = 0; b < NB; b++)
#pragma unroll
				for (int r = 0; r < R; r++)
#pragma unroll
					for (int j = 1; j < KS; j++) acc[b][r] += part[warp + j][b * R + r];
	}
	const bool owner = ks == 0 && lane == 0; // holds the row group's sums
	if (GLU) {
		if (owner && row0 < F) {
			const float bg = bias ? bias[row0] : 0.f, bu = bias ? bias[F + row0] : 0.f;
#pragma unroll
			for (int b = 0; b < NB; b++) {
				const float g = acc[b][0] + bg;
				y[(size_t)b * F + row0] = from_f<TO>(silu_f(g) * (acc[b][1] + bu));
			}
		}
		return;
	}
	if (owner) {
#pragma unroll
		for (int r = 0; r < R; r++) {
			const int row = row0 + r;
			if (row >= N) break;
			const float bv = bias ? bias[row] : 0.f;
#pragma unroll
			for (int b = 0; b < NB; b++) y[(size_t)b * N + row] = from_f<TO>(acc[b][r] + bv);
		}
	}
}

template <typename T, typename TO, int NB, int R, int U, int W, int KS, bool PRE, bool GLU = false>
static cudaError_t launch_v(void *y, const void *x, const void *w, const float *bias, int N, int K, cudaStream_t s)
{
	const int rows_per_block = GLU ? W / KS : W / KS * R;
	const int out_rows = GLU ? N / 2 : N;
	const int blocks = (out_rows + rows_per_block - 1) / rows_per_block;
	return klaunch(gemv_kernel<T, TO, NB, R, U, W, KS, PRE, GLU>, blocks, W * 32, 0, s, (TO *)y,
		       (const uint16_t *)x, (const uint16_t *)w, bias, N, K);
}

// batch 1's shape: LMTERM_GEMV=V picks one of these (measurement). The default, 9 (8 warps per block, all on
// one row, 2 loads in flight per lane), was the fastest per op on the H200 (2026-12-04, bench --profile:
// wqkv 13.7 us, wo 9.9, w13 53.6, w2 28.6; shape 5 (4 warps per row, U = 4) 14.2, 10.5, 53.5, 30.4; shape
// 0, the first one (a warp per row, U = 4), 14.6, 10.8, 56.0, 30.8). LMTERM_GEMV=8 is 0 for the GLU too.
static int gemv_variant()
{
	static int v = -1;
	if (v < 0) {
		const char *e = getenv("LMTERM_GEMV");
		v = e && *e >= '0' && *e <= '9' ? *e - '0' : 9;
	}
	return v;
}

template <typename T, typename TO, int NB>
static void launch_nb(void *y, const void *x, const void *w, const float *bias, int N, int K, cudaStream_t s)
{
	if (NB == 1) {
		switch (gemv_variant()) {
		case 1: launch_v<T, TO, 1, 1, 8, 4, 1, true>(y, x, w, bias, N, K, s); return;
		case 2: launch_v<T, TO, 1, 1, 8, 8, 1, true>(y, x, w, bias, N, K, s); return;
		case 3: launch_v<T, TO, 1, 1, 4, 8, 2, true>(y, x, w, bias, N, K, s); return;
		case 4: launch_v<T, TO, 1, 1, 8, 8, 2, true>(y, x, w, bias, N, K, s); return;
		case 6: launch_v<T, TO, 1, 2, 4, 8, 2, true>(y, x, w, bias, N, K, s); return;
		case 7: launch_v<T, TO, 1, 1, 4, 4, 1, true>(y, x, w, bias, N, K, s); return;
		case 0: case 8: launch_v<T, TO, 1, 1, 4, 4, 1, false>(y, x, w, bias, N, K, s); return;
		case 5: launch_v<T, TO, 1, 1, 4, 8, 4, true>(y, x, w, bias, N, K, s); return;
		default: launch_v<T, TO, 1, 1, 2, 8, 8, true>(y, x, w, bias, N, K, s); return;
		}
	}
	constexpr int R = NB <= 2 ? 1 : 2;
	constexpr int U = NB <= 2 ? 4 : NB <= 4 ? 2 : 1;
	launch_v<T, TO, NB, R, U, 4, 1, false>(y, x, w, bias, N, K, s);
}

template <typename T, typename TO>
static void launch_t(void *y, const void *x, const void *w, const float *bias, int n, int N, int K, cudaStream_t s)
{
	for_batch(n, [&](auto nb) { launch_nb<T, TO, decltype(nb)::value>(y, x, w, bias, N, K, s); });
}

// the fused w13 + SwiGLU at batch n: two rows per warp (gate and up) like the batch-3/4 shape
template <typename T, int NB>
static void launch_glu_nb(void *y, const void *x, const void *w, const float *bias, int N, int K, cudaStream_t s)
{
	constexpr int U = NB <= 2 ? 4 : NB <= 4 ? 2 : 1;
	if (NB == 1 && gemv_variant() == 5) // batch 1: 8 warps, 4 of them splitting K per row pair
		launch_v<T, T, NB, 2, U, 8, 4, true, true>(y, x, w, bias, N, K, s);
	else if (NB == 1 && gemv_variant() != 8) // all 8 on one row pair, 2 loads per row in flight
		launch_v<T, T, NB, 2, 2, 8, 8, true, true>(y, x, w, bias, N, K, s);
	else
		launch_v<T, T, NB, 2, U, 4, 1, true, true>(y, x, w, bias, N, K, s);
}

template <typename T>
static void launch_glu(void *y, const void *x, const void *w, const float *bias, int n, int N, int K, cudaStream_t s)
{
	for_batch(n, [&](auto nb) { launch_glu_nb<T, decltype(nb)::value>(y, x, w, bias, N, K, s); });
}

extern "C" int k_gemv_swiglu(void *y, const void *x, const void *w, const float *bias, int n, int N, int K,
			     enum dtype act, cudaStream_t s)
{
	if (!k_gemv_supported(n, K) || N % 2) return lm_err("gemv_swiglu: unsupported shape (batch %d, N %d, K %d)", n, N, K);
	if (N <= 0) return LM_OK;
	if (act == DT_BF16) launch_glu<bf16_t>(y, x, w, bias, n, N, K, s);
	else launch_glu<half>(y, x, w, bias, n, N, K, s);
	LAUNCHED("gemv_swiglu");
}

extern "C" bool k_gemv_supported(int n, int K) { return n >= 1 && n <= 8 && K > 0 && K % 8 == 0; }

extern "C" int k_gemv(void *y, const void *x, const void *w, const float *bias, int n, int N, int K, enum dtype act,
		      bool y_f32, cudaStream_t s)
{
	if (!k_gemv_supported(n, K)) return lm_err("gemv: unsupported shape (batch %d, K %d)", n, K);
	if (N <= 0) return LM_OK;
	if (act == DT_BF16) {
		if (y_f32) launch_t<bf16_t, float>(y, x, w, bias, n, N, K, s);
		else launch_t<bf16_t, bf16_t>(y, x, w, bias, n, N, K, s);
	} else {
		if (y_f32) launch_t<half, float>(y, x, w, bias, n, N, K, s);
		else launch_t<half, half>(y, x, w, bias, n, N, K, s);
	}
	LAUNCHED("gemv");
}

// bias after a cuBLAS GEMM (prefill): y[i][c] += bias[c]
template <typename T>
__global__ void add_bias_kernel(T *y, const float *bias, size_t total, int N)
{
	for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x)
		y[t] = from_f<T>(to_f(y[t]) + bias[t % N]);
}

extern "C" int k_add_bias(void *y, const float *bias, int n, int N, enum dtype act, cudaStream_t s)
{
	const size_t total = (size_t)n * N;
	if (!total) return LM_OK;
	int blocks = (int)MIN((total + 255) / 256, (size_t)65535);
	if (act == DT_BF16) add_bias_kernel<bf16_t><<<blocks, 256, 0, s>>>((bf16_t *)y, bias, total, N);
	else add_bias_kernel<half><<<blocks, 256, 0, s>>>((half *)y, bias, total, N);
	LAUNCHED("add_bias");
}
