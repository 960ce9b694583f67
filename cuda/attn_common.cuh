// attn_common.cuh: small device helpers shared by rope_kv.cu and attention.cu (types, conversions,
// warp reductions, cp.async, ldmatrix and mma.sync wrappers).
#ifndef LMTERM_CUDA_ATTN_COMMON_CUH
#define LMTERM_CUDA_ATTN_COMMON_CUH

#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>

#include "cp_async.cuh"
#include "pdl.cuh"

typedef __nv_bfloat16 bf16;

// element <-> float for the two activation types
template <typename T> struct act;
template <> struct act<half> {
	static __device__ __forceinline__ float to_f(half x) { return __half2float(x); }
	static __device__ __forceinline__ half from_f(float x) { return __float2half_rn(x); }
	static __device__ __forceinline__ uint32_t pack(float a, float b)
	{
		half2 h = __floats2half2_rn(a, b);
		return *(uint32_t *)&h;
	}
};
template <> struct act<bf16> {
	static __device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
	static __device__ __forceinline__ bf16 from_f(float x) { return __float2bfloat16_rn(x); }
	static __device__ __forceinline__ uint32_t pack(float a, float b)
	{
		__nv_bfloat162 h = __floats2bfloat162_rn(a, b);
		return *(uint32_t *)&h;
	}
};

static __device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
	for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}
static __device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
	for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}
static __device__ __forceinline__ float warp_min(float v)
{
#pragma unroll
	for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}


static __device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(smem_addr(p)));
}
static __device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(smem_addr(p)));
}

// D = A (16x16, row) * B (16x8, col) + D, fp32 accumulators
template <typename MT> struct mma;
template <> struct mma<half> {
	static __device__ __forceinline__ void run(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
	{
		asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
			     "{%8,%9}, {%0,%1,%2,%3};\n"
			     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
			     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
	}
};
template <> struct mma<bf16> {
	static __device__ __forceinline__ void run(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
	{
		asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
			     "{%8,%9}, {%0,%1,%2,%3};\n"
			     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
			     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
	}
};

#endif
