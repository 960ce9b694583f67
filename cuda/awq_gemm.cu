// awq_gemm.cu: W4A16 (AWQ, 4-bit weights with an fp16 scale and zero per group of `group` inputs).
//
// Layout (made once at load by awq_repack, from AutoAWQ's gemm layout): qw uint32 [N][K/8], each output
// row's K inputs contiguous, so a decode GEMV streams one row with 16-byte loads (32 weights per lane);
// nibble i of a word holds input 8c + {0,2,4,6,1,3,5,7}[i], so (word >> 4j) & 0x000f000f is the pair of
// inputs (2j, 2j+1) in the two halves of a 32-bit register. OR-ing in the exponent of 1024 (fp16,
// 0x6400) or 128 (bf16, 0x4300) turns each half into 1024 + q (128 + q) exactly: one LOP3 dequantizes two
// weights, no integer-to-float conversion. sz half2 [N][K/group] = (scale, zero).
//
// Decode (batch 1..8): like gemv.cu, a warp per R rows, weights bypassing L1. fp16 activations: (q - z)
// (exact in fp16) times x by HFMA2 for the 8 weights of one word, then summed into float and scaled once
// per 32 weights (group % 32 == 0). bf16 activations: the same in float (bf16 -> float is a shift).
// At batch 1 the kernel must decode 2 weights per byte read, so the per-weight instruction count matters
// as much as the loads: about 2 instructions per weight on the fp16 path.
//
// Prefill: dequantize a slab of rows to fp16/bf16 (k_awq_dequant) and let cuBLAS multiply it; the backend
// works through the rows slab by slab so that the scratch stays small.
#include "config.h"
#include "kernels.h"
#include "ops_common.cuh"

static __device__ __forceinline__ uint4 ld_stream4(const uint4 *p)
{
	uint4 v;
	asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
		     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
		     : "l"(p));
	return v;
}

static __device__ __forceinline__ uint32_t lop_or(uint32_t w, int sh, uint32_t magic)
{
	return ((w >> sh) & 0x000f000fu) | magic;
}

enum { AWQ_WARPS = 4 };

// partial dot product of one 32-bit word (8 weights, minus zero) with 8 activations, in float, unscaled
template <typename T> struct awq_dot;
template <> struct awq_dot<half> {
	static __device__ __forceinline__ float word(uint32_t w, uint32_t zz, const uint4 &xv)
	{
		const uint32_t xs[4] = { xv.x, xv.y, xv.z, xv.w };
		half2 acc = __float2half2_rn(0.f);
#pragma unroll
		for (int j = 0; j < 4; j++) {
			uint32_t q = lop_or(w, 4 * j, 0x64006400u);
			half2 d = __hsub2(*(half2 *)&q, *(const half2 *)&zz);
			acc = __hfma2(d, *(const half2 *)&xs[j], acc);
		}
		float2 f = __half22float2(acc);
		return f.x + f.y;
	}
	static __device__ __forceinline__ uint32_t zero_pair(half2 sz)
	{
		half z = __high2half(sz);
		half2 zz = __halves2half2(__hadd(z, __float2half(1024.f)), __hadd(z, __float2half(1024.f)));
		return *(uint32_t *)&zz;
	}
};
template <> struct awq_dot<bf16_t> {
	static __device__ __forceinline__ float word(uint32_t w, uint32_t zz, const uint4 &xv)
	{
		const uint32_t xs[4] = { xv.x, xv.y, xv.z, xv.w };
		const float zf = __uint_as_float(zz << 16); // 128 + z, as float
		float acc = 0.f;
#pragma unroll
		for (int j = 0; j < 4; j++) {
			uint32_t q = lop_or(w, 4 * j, 0x43004300u);
			float q0 = __uint_as_float(q << 16) - zf, q1 = __uint_as_float(q & 0xffff0000u) - zf;
			float x0 = __uint_as_float(xs[j] << 16), x1 = __uint_as_float(xs[j] & 0xffff0000u);
			acc = fmaf(q0, x0, fmaf(q1, x1, acc));
		}
		return acc;
	}
	static __device__ __forceinline__ uint32_t zero_pair(half2 sz)
	{
		// 128 + z as a bf16 in the low half (z is an integer 0..15: exact)
		bf16_t b = __float2bfloat16_rn(128.f + __high2float(sz));
		return (uint32_t) * (uint16_t *)&b;
	}
};

template <typename T, int NB, int R, int U>
__global__ void __launch_bounds__(AWQ_WARPS * 32)
	awq_gemv_kernel(T *__restrict__ y, const uint16_t *__restrict__ x, const uint32_t *__restrict__ qw,
			const half2 *__restrict__ sz, const float *__restrict__ bias, int N, int K, int group)
{
	pdl_wait_trigger();
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int row0 = (blockIdx.x * AWQ_WARPS + warp) * R;
	if (row0 >= N) return;
	const int kv = K / 32; // 16-byte chunks (32 weights) per row
	const int G = K / group, cpg = group / 32;
	int rows[R];
#pragma unroll
	for (int r = 0; r < R; r++) rows[r] = min(row0 + r, N - 1);
	float acc[NB][R];
#pragma unroll
	for (int b = 0; b < NB; b++)
#pragma unroll
		for (int r = 0; r < R; r++) acc[b][r] = 0.f;

	for (int c0 = lane; c0 < kv; c0 += 32 * U) {
		uint4 wv[U][R];
		half2 s2[U][R];
#pragma unroll
		for (int u = 0; u < U; u++)
#pragma unroll
			for (int r = 0; r < R; r++) {
				const int c = c0 + 32 * u;
				if (c < kv) {
					wv[u][r] = ld_stream4((const uint4 *)(qw + (size_t)rows[r] * (K / 8)) + c);
					s2[u][r] = __ldg(sz + (size_t)rows[r] * G + c / cpg);
				} else {
					wv[u][r] = make_uint4(0, 0, 0, 0);
					s2[u][r] = __float2half2_rn(0.f);
				}
			}
#pragma unroll
		for (int u = 0; u < U; u++) {
			const int c = c0 + 32 * u;
			if (c >= kv) break;
			uint32_t zz[R];
			float sc[R];
#pragma unroll
			for (int r = 0; r < R; r++) {
				zz[r] = awq_dot<T>::zero_pair(s2[u][r]);
				sc[r] = __low2float(s2[u][r]);
			}
#pragma unroll
			for (int b = 0; b < NB; b++) {
				const uint4 *xp = (const uint4 *)(x + (size_t)b * K) + 4 * c;
				const uint4 x0 = __ldg(xp), x1 = __ldg(xp + 1), x2 = __ldg(xp + 2), x3 = __ldg(xp + 3);
#pragma unroll
				for (int r = 0; r < R; r++) {
					float p = awq_dot<T>::word(wv[u][r].x, zz[r], x0) +
						  awq_dot<T>::word(wv[u][r].y, zz[r], x1) +
						  awq_dot<T>::word(wv[u][r].z, zz[r], x2) +
						  awq_dot<T>::word(wv[u][r].w, zz[r], x3);
					acc[b][r] = fmaf(p, sc[r], acc[b][r]);
				}
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
			for (int b = 0; b < NB; b++) y[(size_t)b * N + row] = from_f<T>(acc[b][r] + bv);
		}
	}
}

template <typename T, int NB>
static void awq_launch_nb(void *y, const void *x, const uint32_t *qw, const void *sz, const float *bias, int N, int K,
			  int group, cudaStream_t s)
{
	constexpr int R = NB <= 2 ? 1 : NB <= 4 ? 2 : 4;
	constexpr int U = NB <= 2 ? 2 : 1;
	const int rows_per_block = AWQ_WARPS * R;
	klaunch(awq_gemv_kernel<T, NB, R, U>, (N + rows_per_block - 1) / rows_per_block, AWQ_WARPS * 32, 0, s, (T *)y,
		(const uint16_t *)x, qw, (const half2 *)sz, bias, N, K, group);
}

template <typename T>
static void awq_launch_t(void *y, const void *x, const uint32_t *qw, const void *sz, const float *bias, int n, int N,
			 int K, int group, cudaStream_t s)
{
	switch (n) {
	case 1: awq_launch_nb<T, 1>(y, x, qw, sz, bias, N, K, group, s); break;
	case 2: awq_launch_nb<T, 2>(y, x, qw, sz, bias, N, K, group, s); break;
	case 3: awq_launch_nb<T, 3>(y, x, qw, sz, bias, N, K, group, s); break;
	case 4: awq_launch_nb<T, 4>(y, x, qw, sz, bias, N, K, group, s); break;
	case 5: awq_launch_nb<T, 5>(y, x, qw, sz, bias, N, K, group, s); break;
	case 6: awq_launch_nb<T, 6>(y, x, qw, sz, bias, N, K, group, s); break;
	case 7: awq_launch_nb<T, 7>(y, x, qw, sz, bias, N, K, group, s); break;
	default: awq_launch_nb<T, 8>(y, x, qw, sz, bias, N, K, group, s); break;
	}
}

extern "C" bool k_awq_gemv_supported(int n, int K, int group)
{
	return n >= 1 && n <= 8 && group > 0 && group % 32 == 0 && K % group == 0;
}

extern "C" int k_awq_gemv(void *y, const void *x, const uint32_t *qw, const void *sz, const float *bias, int n, int N,
			  int K, int group, enum dtype act, cudaStream_t s)
{
	if (!k_awq_gemv_supported(n, K, group))
		return lm_err("AWQ gemv: unsupported shape (batch %d, K %d, group %d)", n, K, group);
	if (N <= 0) return LM_OK;
	if (act == DT_BF16) awq_launch_t<bf16_t>(y, x, qw, sz, bias, n, N, K, group, s);
	else awq_launch_t<half>(y, x, qw, sz, bias, n, N, K, group, s);
	LAUNCHED("AWQ gemv");
}

// one thread per word: 8 weights of row r, inputs 8c..8c+7, written as one 16-byte vector
template <typename T>
__global__ void awq_dequant_kernel(uint16_t *dst, const uint32_t *qw, const half2 *sz, int r0, int rows, int K,
				   int group)
{
	const int kw = K / 8, G = K / group;
	const size_t total = (size_t)rows * kw;
	for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
		const size_t r = t / kw;
		const int c = (int)(t % kw);
		const uint32_t w = qw[(r0 + r) * kw + c];
		const half2 p = sz[(r0 + r) * G + (size_t)c * 8 / group];
		const float s = __low2float(p), z = __high2float(p);
		vec8 o;
#pragma unroll
		for (int j = 0; j < 4; j++) {
			set_elem<T>(o, 2 * j, ((float)((w >> (4 * j)) & 15u) - z) * s);
			set_elem<T>(o, 2 * j + 1, ((float)((w >> (4 * j + 16)) & 15u) - z) * s);
		}
		((uint4 *)dst)[t] = o.u;
	}
}

extern "C" int k_awq_dequant(void *dst, const uint32_t *qw, const void *sz, int r0, int rows, int K, int group,
			     enum dtype act, cudaStream_t s)
{
	if (K % 8 || group <= 0 || group % 8 || K % group) return lm_err("AWQ dequant: K %d, group %d", K, group);
	const size_t total = (size_t)rows * (K / 8);
	if (!total) return LM_OK;
	const int blocks = (int)MIN((total + 255) / 256, (size_t)65535);
	if (act == DT_BF16)
		awq_dequant_kernel<bf16_t><<<blocks, 256, 0, s>>>((uint16_t *)dst, qw, (const half2 *)sz, r0, rows, K, group);
	else
		awq_dequant_kernel<half><<<blocks, 256, 0, s>>>((uint16_t *)dst, qw, (const half2 *)sz, r0, rows, K, group);
	LAUNCHED("AWQ dequant");
}

// AutoAWQ packs output columns 8c..8c+7 of one int32 in this nibble order; ours packs inputs the same way
static const int awq_order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };

extern "C" void awq_repack(uint32_t *qw, uint16_t *sz, const int32_t *qweight, const int32_t *qzeros,
			   const uint16_t *scales, int N, int K, int group)
{
	const int N8 = N / 8, K8 = K / 8, G = K / group;
	int nib_of_col[8]; // AutoAWQ: which nibble holds column 8c + j
	for (int i = 0; i < 8; i++) nib_of_col[awq_order[i]] = i;
	// 8 input rows at a time: each AutoAWQ word (k, c) feeds 8 output rows' words (n = 8c + j, kw)
	for (int kw = 0; kw < K8; kw++)
		for (int c = 0; c < N8; c++) {
			uint32_t in[8], out[8] = { 0 };
			for (int i = 0; i < 8; i++) in[i] = (uint32_t)qweight[(size_t)(8 * kw + i) * N8 + c];
			for (int j = 0; j < 8; j++)
				for (int i = 0; i < 8; i++) { // our nibble i holds input 8kw + awq_order[i]
					uint32_t q = (in[awq_order[i]] >> (4 * nib_of_col[j])) & 15u;
					out[j] |= q << (4 * i);
				}
			for (int j = 0; j < 8; j++) qw[(size_t)(8 * c + j) * K8 + kw] = out[j];
		}
	for (int g = 0; g < G; g++)
		for (int n = 0; n < N; n++) {
			uint32_t zw = (uint32_t)qzeros[(size_t)g * N8 + n / 8];
			float z = (float)((zw >> (4 * nib_of_col[n % 8])) & 15u);
			sz[((size_t)n * G + g) * 2] = scales[(size_t)g * N + n];
			sz[((size_t)n * G + g) * 2 + 1] = f32_to_f16(z);
		}
}
