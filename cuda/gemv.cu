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
#include "config.h"
#include "kernels.h"
#include "ops_common.cuh"

static __device__ __forceinline__ uint4 ld_stream(const uint4 *p)
{
	uint4 v;
	asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
		     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
		     : "l"(p));
	return v;
}

enum { GEMV_WARPS = 4 };

template <typename T, typename TO, int NB, int R, int U>
__global__ void __launch_bounds__(GEMV_WARPS * 32) gemv_kernel(TO *__restrict__ y, const uint16_t *__restrict__ x,
							      const uint16_t *__restrict__ w,
							      const float *__restrict__ bias, int N, int K)
{
	pdl_launch_dependents();
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int row0 = (blockIdx.x * GEMV_WARPS + warp) * R;
	if (row0 >= N) return; // other blocks wait (pdl.cuh)
	const int kv = K / 8;
	const uint4 *wr[R];
#pragma unroll
	for (int r = 0; r < R; r++) wr[r] = (const uint4 *)(w + (size_t)min(row0 + r, N - 1) * K);
	float acc[NB][R];
#pragma unroll
	for (int b = 0; b < NB; b++)
#pragma unroll
		for (int r = 0; r < R; r++) acc[b][r] = 0.f;

	// the weights of the first iteration are loaded before waiting for x (the previous kernel's output);
	// then each iteration issues the next one's loads before its arithmetic (two register stages)
	vec8 wv[U][R];
#pragma unroll
	for (int u = 0; u < U; u++)
#pragma unroll
		for (int r = 0; r < R; r++)
			wv[u][r].u = lane + 32 * u < kv ? ld_stream(wr[r] + lane + 32 * u) : make_uint4(0, 0, 0, 0);
	pdl_wait();
	for (int c0 = lane; c0 < kv; c0 += 32 * U) {
		vec8 cur[U][R];
#pragma unroll
		for (int u = 0; u < U; u++)
#pragma unroll
			for (int r = 0; r < R; r++) cur[u][r] = wv[u][r];
		const int c1 = c0 + 32 * U;
		if (c1 < kv) {
#pragma unroll
			for (int u = 0; u < U; u++)
#pragma unroll
				for (int r = 0; r < R; r++)
					wv[u][r].u = c1 + 32 * u < kv ? ld_stream(wr[r] + c1 + 32 * u) : make_uint4(0, 0, 0, 0);
		}
#pragma unroll
		for (int u = 0; u < U; u++) {
			const int c = c0 + 32 * u;
			if (c >= kv) break;
			float wf[R][8];
#pragma unroll
			for (int r = 0; r < R; r++) unpack8<T>(cur[u][r], wf[r]);
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
	if (lane == 0) {
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

template <typename T, typename TO, int NB>
static void launch_nb(void *y, const void *x, const void *w, const float *bias, int N, int K, cudaStream_t s)
{
	constexpr int R = NB <= 2 ? 1 : 2;
	constexpr int U = NB <= 2 ? 4 : NB <= 4 ? 2 : 1;
	const int rows_per_block = GEMV_WARPS * R;
	const int blocks = (N + rows_per_block - 1) / rows_per_block;
	klaunch(gemv_kernel<T, TO, NB, R, U>, blocks, GEMV_WARPS * 32, 0, s, (TO *)y, (const uint16_t *)x,
		(const uint16_t *)w, bias, N, K);
}

template <typename T, typename TO>
static void launch_t(void *y, const void *x, const void *w, const float *bias, int n, int N, int K, cudaStream_t s)
{
	switch (n) {
	case 1: launch_nb<T, TO, 1>(y, x, w, bias, N, K, s); break;
	case 2: launch_nb<T, TO, 2>(y, x, w, bias, N, K, s); break;
	case 3: launch_nb<T, TO, 3>(y, x, w, bias, N, K, s); break;
	case 4: launch_nb<T, TO, 4>(y, x, w, bias, N, K, s); break;
	case 5: launch_nb<T, TO, 5>(y, x, w, bias, N, K, s); break;
	case 6: launch_nb<T, TO, 6>(y, x, w, bias, N, K, s); break;
	case 7: launch_nb<T, TO, 7>(y, x, w, bias, N, K, s); break;
	default: launch_nb<T, TO, 8>(y, x, w, bias, N, K, s); break;
	}
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
