// ops_common.cuh: device helpers shared by the backend's own kernel families (embed, rmsnorm, swiglu,
// gemv, awq_gemm, sample, fill): the activation element traits, 16-byte vectors, block reductions.
#ifndef LMTERM_CUDA_OPS_COMMON_CUH
#define LMTERM_CUDA_OPS_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include <type_traits>

#include "pdl.cuh"

typedef __nv_bfloat16 bf16_t;

// conversions for the two activation types (and float, for the logits outputs)
static __device__ __forceinline__ float to_f(half x) { return __half2float(x); }
static __device__ __forceinline__ float to_f(bf16_t x) { return __bfloat162float(x); }
static __device__ __forceinline__ float to_f(float x) { return x; }
template <typename T> static __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ half from_f<half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ bf16_t from_f<bf16_t>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }

// 8 activations in one 16-byte word
union vec8 {
	uint4 u;
	uint16_t h[8];
};
template <typename T> static __device__ __forceinline__ float elem(const vec8 &v, int i)
{
	uint16_t b = v.h[i];
	return to_f(*(const T *)&b);
}
template <typename T> static __device__ __forceinline__ void set_elem(vec8 &v, int i, float x)
{
	T t = from_f<T>(x);
	v.h[i] = *(const uint16_t *)&t;
}
// all 8 as floats: bf16 is a shift, fp16 a conversion per pair
template <typename T> static __device__ __forceinline__ void unpack8(const vec8 &v, float f[8])
{
#pragma unroll
	for (int i = 0; i < 8; i++) f[i] = elem<T>(v, i);
}

// SiLU in float, as the swiglu kernel and the folded w13 GEMV's epilogue take it: x / (1 + exp(-x))
// token i of a step (k_embed, k_embed_rmsnorm): ids[i] from the step state, or in a chained step (the state's
// flag *chain) the id the previous step's argmax left on the device (*tok), which the host has not seen yet
static __device__ __forceinline__ int step_token(const int32_t *ids, const int32_t *chain, const int32_t *tok, int i)
{
	return chain && *chain ? *tok : ids[i];
}

static __device__ __forceinline__ float silu_f(float g) { return g / (1.f + __expf(-g)); }

static __device__ __forceinline__ float warp_sum_f(float v)
{
#pragma unroll
	for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

// sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result
static __device__ __forceinline__ float block_sum_f(float v)
{
	__shared__ float part[32];
	const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
	v = warp_sum_f(v);
	__syncthreads(); // part[] may still be read by a previous call
	if (lane == 0) part[wid] = v;
	__syncthreads();
	float s = lane < nw ? part[lane] : 0.f;
	return warp_sum_f(s);
}

// The decode kernels take the batch (1..8 rows of x) as a template argument so that their accumulators stay
// in registers: for_batch(n, f) calls f(std::integral_constant<int, NB>()) with NB = n (8 for n >= 8).
template <typename F> static inline void for_batch(int n, F &&f)
{
	switch (n) {
	case 1: f(std::integral_constant<int, 1>()); break;
	case 2: f(std::integral_constant<int, 2>()); break;
	case 3: f(std::integral_constant<int, 3>()); break;
	case 4: f(std::integral_constant<int, 4>()); break;
	case 5: f(std::integral_constant<int, 5>()); break;
	case 6: f(std::integral_constant<int, 6>()); break;
	case 7: f(std::integral_constant<int, 7>()); break;
	default: f(std::integral_constant<int, 8>()); break;
	}
}

// the launch status of the kernel just queued, as an lm_err message naming it
#define LAUNCHED(what)                                                                                         \
	do {                                                                                                   \
		cudaError_t e_ = cudaGetLastError();                                                           \
		if (e_ != cudaSuccess) return lm_err("%s: kernel launch failed: %s", what, cudaGetErrorString(e_)); \
		return LM_OK;                                                                                  \
	} while (0)

#endif
