// sample.cu: greedy sampling on the device: the index of the largest logit (first on ties, as
// torch.argmax; NaN never wins). One block of 1024 threads: a strided scan (coalesced, 4 loads in flight
// per thread), then a warp and a block reduction of (value, index) pairs. The vocabulary (32k..152k
// floats) is too small to be worth a second pass; the result is one int the host copies back.
#include "config.h"
#include "kernels.h"
#include "ops_common.cuh"

#include <float.h>

static __device__ __forceinline__ bool better(float v, int i, float bv, int bi)
{
	return v > bv || (v == bv && i < bi);
}

__global__ void __launch_bounds__(1024) argmax_kernel(int32_t *out, const float *v, int n)
{
	float bv = -FLT_MAX;
	int bi = n; // "none yet"; loses every comparison with a real index on ties
	for (int i = threadIdx.x; i < n; i += blockDim.x) {
		float x = v[i];
		if (x == x && (better(x, i, bv, bi) || bi == n)) {
			bv = x;
			bi = i;
		}
	}
#pragma unroll
	for (int o = 16; o > 0; o >>= 1) {
		float ov = __shfl_xor_sync(0xffffffffu, bv, o);
		int oi = __shfl_xor_sync(0xffffffffu, bi, o);
		if (oi != n && (bi == n || better(ov, oi, bv, bi))) {
			bv = ov;
			bi = oi;
		}
	}
	__shared__ float sv[32];
	__shared__ int si[32];
	const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
	if (lane == 0) {
		sv[wid] = bv;
		si[wid] = bi;
	}
	__syncthreads();
	if (wid == 0) {
		const int nw = blockDim.x >> 5;
		bv = lane < nw ? sv[lane] : -FLT_MAX;
		bi = lane < nw ? si[lane] : n;
#pragma unroll
		for (int o = 16; o > 0; o >>= 1) {
			float ov = __shfl_xor_sync(0xffffffffu, bv, o);
			int oi = __shfl_xor_sync(0xffffffffu, bi, o);
			if (oi != n && (bi == n || better(ov, oi, bv, bi))) {
				bv = ov;
				bi = oi;
			}
		}
		if (lane == 0) *out = bi == n ? 0 : bi;
	}
}

extern "C" int k_argmax(int32_t *out, const float *v, int n, cudaStream_t s)
{
	if (n <= 0) return lm_err("argmax: empty vector");
	argmax_kernel<<<1, 1024, 0, s>>>(out, v, n);
	LAUNCHED("argmax");
}
