// cp_async.cuh: 16-byte global -> shared copies that need no registers while in flight (cp.async, sm_80+),
// shared by the attention kernels and the AWQ GEMV's folded-norm epilogues.
#ifndef LMTERM_CUDA_CP_ASYNC_CUH
#define LMTERM_CUDA_CP_ASYNC_CUH

#include <stdint.h>

static __device__ __forceinline__ uint32_t smem_addr(const void *p)
{
	return (uint32_t)__cvta_generic_to_shared(p);
}

// 16-byte global -> shared copy; src_bytes 0 fills the destination with zeros (rows past the context)
static __device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
		     "r"(src_bytes));
}
static __device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> static __device__ __forceinline__ void cp_async_wait()
{
	asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

#endif
