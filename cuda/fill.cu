// fill.cu: device-side weight making: random weights for bench --dummy (a counter-based hash, so 7B
// parameters take well under a second and no host memory), float -> activation type conversion, and
// constant (scale, zero) pairs for random AWQ weights.
#include "config.h"
#include "kernels.h"
#include "ops_common.cuh"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static __device__ __forceinline__ uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

// uniform in [-1, 1) from (seed, i)
static __device__ __forceinline__ float hash_unit(uint64_t seed, uint64_t i)
{
	uint64_t z = mix64(seed + 0x9e3779b97f4a7c15ull * (i + 1));
	return (float)((z >> 40) * (1.0 / 8388608.0) - 1.0);
}

template <typename T>
__global__ void fill_random_kernel(T *dst, size_t n, float scale, uint64_t seed)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		dst[i] = from_f<T>(scale * hash_unit(seed, i));
}

__global__ void fill_bytes_kernel(uint32_t *dst, size_t nwords, uint64_t seed)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < nwords; i += (size_t)gridDim.x * blockDim.x)
		dst[i] = (uint32_t)mix64(seed + 0x9e3779b97f4a7c15ull * (i + 1));
}

template <typename T>
__global__ void f32_to_act_kernel(T *dst, const float *src, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		dst[i] = from_f<T>(src[i]);
}

__global__ void fill_half2_kernel(half2 *dst, size_t n, float a, float b)
{
	const half2 v = __halves2half2(__float2half_rn(a), __float2half_rn(b));
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		dst[i] = v;
}

// programmatic dependent launch of the decode kernels (pdl.cuh): LMTERM_PDL=1 or 0 decides for every
// kernel; a list of families separated by commas or '+' (LMTERM_PDL=attn,gemv; '+' where a comma would
// split a list of variables, as in gpu-round.sh's ROUND_PROFILES) turns it on for those alone. Unset, it is
// on for every kernel once a 4-bit (AWQ) weight has been loaded (k_pdl_prefer), and for the dense GEMVs
// alone otherwise. Measured on the H200 (docs/PERFORMANCE.md): +4 to +7% decode for the AWQ 7B model; for
// the fp16 model all kernels gained nothing or lost (the attention's early launch costs what it saves),
// the GEMVs alone gained 0.8-1.6% (one round, against two runs of the default of then, which was off).
static int pdl_mode = -2, pdl_pref = 0; // pdl_mode: -1 unset, 0 none, 1 all, 2 the families in pdl_list
static char pdl_list[128];
extern "C" bool k_pdl_for(const char *family)
{
	if (pdl_mode == -2) {
		const char *e = getenv("LMTERM_PDL");
		if (!e || !*e) pdl_mode = -1;
		else if (!strcmp(e, "0") || !strcmp(e, "1")) pdl_mode = *e - '0';
		else {
			snprintf(pdl_list, sizeof pdl_list, ",%s,", e);
			for (char *c = pdl_list; *c; c++)
				if (*c == '+') *c = ',';
			pdl_mode = 2;
		}
	}
	if (pdl_mode == 2) {
		char key[32];
		snprintf(key, sizeof key, ",%s,", family);
		return strstr(pdl_list, key) != NULL;
	}
	if (pdl_mode >= 0) return pdl_mode == 1;
	return pdl_pref == 1 || !strcmp(family, "gemv");
}
extern "C" void k_pdl_prefer(bool on) { pdl_pref = on; }

static int grid_for(size_t n)
{
	size_t b = (n + 255) / 256;
	return (int)(b < 1 ? 1 : b > 65535 * 4 ? 65535 * 4 : b);
}

extern "C" int k_fill_random(void *dst, size_t n, float scale, uint64_t seed, enum dtype dt, cudaStream_t s)
{
	if (!n) return LM_OK;
	if (dt == DT_F32) fill_random_kernel<float><<<grid_for(n), 256, 0, s>>>((float *)dst, n, scale, seed);
	else if (dt == DT_BF16) fill_random_kernel<bf16_t><<<grid_for(n), 256, 0, s>>>((bf16_t *)dst, n, scale, seed);
	else if (dt == DT_F16) fill_random_kernel<half><<<grid_for(n), 256, 0, s>>>((half *)dst, n, scale, seed);
	else return lm_err("fill_random: dtype %s", dtype_name(dt));
	LAUNCHED("fill_random");
}

extern "C" int k_fill_bytes(void *dst, size_t n, uint64_t seed, cudaStream_t s)
{
	if (n % 4) return lm_err("fill_bytes: %zu bytes is not a whole number of words", n);
	if (!n) return LM_OK;
	fill_bytes_kernel<<<grid_for(n / 4), 256, 0, s>>>((uint32_t *)dst, n / 4, seed);
	LAUNCHED("fill_bytes");
}

extern "C" int k_f32_to_act(void *dst, const float *src, size_t n, enum dtype act, cudaStream_t s)
{
	if (!n) return LM_OK;
	if (act == DT_BF16) f32_to_act_kernel<bf16_t><<<grid_for(n), 256, 0, s>>>((bf16_t *)dst, src, n);
	else f32_to_act_kernel<half><<<grid_for(n), 256, 0, s>>>((half *)dst, src, n);
	LAUNCHED("f32_to_act");
}

extern "C" int k_fill_half2(void *dst, size_t n, float a, float b, cudaStream_t s)
{
	if (!n) return LM_OK;
	fill_half2_kernel<<<grid_for(n), 256, 0, s>>>((half2 *)dst, n, a, b);
	LAUNCHED("fill_half2");
}
