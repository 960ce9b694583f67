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

#ifdef LMTERM_TRACE
// the files' g_trace symbols (pdl.cuh), set when tracing starts
static const void *trace_syms[64];
static int trace_nsyms;
static unsigned long long *trace_buf;

extern "C" int k_trace_register(const void *symbol)
{
	if (trace_nsyms < 64) trace_syms[trace_nsyms++] = symbol;
	return 0;
}

extern "C" void k_trace_start(void)
{
	if (!getenv("LMTERM_TRACE") || trace_buf) return;
	const size_t bytes = (TRACE_BLK + 3 + 8 * (size_t)TRACE_BLK_CAP) * 8;
	if (cudaMalloc((void **)&trace_buf, bytes) != cudaSuccess || cudaMemset(trace_buf, 0, bytes) != cudaSuccess) {
		fprintf(stderr, "trace: no buffer\n");
		trace_buf = NULL;
		return;
	}
	unsigned long long lohi[2] = { 0, 0 };
	const char *e = getenv("LMTERM_TRACE_BLOCKS");
	if (e) sscanf(e, "%llu:%llu", &lohi[0], &lohi[1]);
	cudaMemcpy(trace_buf + TRACE_BLK + 1, lohi, sizeof lohi, cudaMemcpyHostToDevice);
	for (int i = 0; i < trace_nsyms; i++)
		if (cudaMemcpyToSymbol(trace_syms[i], &trace_buf, sizeof trace_buf) != cudaSuccess)
			fprintf(stderr, "trace: symbol %d not set\n", i);
}

// the records into $LMTERM_TRACE: the kernels' count, their (time ns, shape) pairs, then the blocks' count and
// their records of 8 u64 (pdl.cuh; scripts/trace-step.py reads them)
extern "C" void k_trace_dump(void)
{
	if (!trace_buf) return;
	cudaDeviceSynchronize();
	unsigned long long n = 0;
	cudaMemcpy(&n, trace_buf, 8, cudaMemcpyDeviceToHost);
	if (n > TRACE_CAP) n = TRACE_CAP;
	unsigned long long *h = (unsigned long long *)malloc((1 + 2 * n) * 8);
	FILE *f = fopen(getenv("LMTERM_TRACE"), "wb");
	if (h && f && cudaMemcpy(h, trace_buf, (1 + 2 * n) * 8, cudaMemcpyDeviceToHost) == cudaSuccess) {
		h[0] = n;
		fwrite(h, 8, 1 + 2 * n, f);
	}
	unsigned long long nb = 0;
	cudaMemcpy(&nb, trace_buf + TRACE_BLK, 8, cudaMemcpyDeviceToHost);
	if (nb > TRACE_BLK_CAP) nb = TRACE_BLK_CAP;
	unsigned long long *hb = (unsigned long long *)malloc((1 + 8 * nb) * 8);
	if (hb && f && cudaMemcpy(hb + 1, trace_buf + TRACE_BLK + 3, 8 * nb * 8, cudaMemcpyDeviceToHost) == cudaSuccess) {
		hb[0] = nb;
		fwrite(hb, 8, 1 + 8 * nb, f);
	}
	free(hb);
	if (f) fclose(f);
	free(h);
	fprintf(stderr, "trace: %llu records\n", n);
}
#endif

// The shared-memory carveout of the kernels launched through klaunch (cudaFuncAttributePreferredShared-
// MemoryCarveout). A multiprocessor changes its split of the unified L1 / shared memory only when it is
// idle, and the driver gives a kernel with little shared memory (the GEMVs, the norms) a split with little
// of it. Under PDL the next kernel's blocks are placed beside the running ones, so the decode attention's
// CTAs (114 KB each with a 16-bit cache, in clusters of 8 on one GPC) found no multiprocessor with room
// until the projection before them had drained whole ones: most of them started only as it ended, and the
// step waited for their first loads. k_carveout_need (the KV cache's allocation) asks for the largest split
// when the attention's CTA needs more than 100 KB: 7B AWQ decode on the H100 496.7-497.0 -> 505.8-509.5
// tokens/s. Not otherwise: an int8 cache's CTA (95 KB) fits anyway, and the smaller L1 then cost 1.2%
// (491.1 -> 485.4); nor for the fp16 GEMV (family "gemv"), whose x is read through L1 by every warp
// (fp16 decode 193.8 -> 190.7). All 2026-12-05, docs/PERFORMANCE.md. LMTERM_SMEM_CARVEOUT=P prefers P%
// for every family, -1 the driver's choice (measurement).
static int carve_want = -1; // the percentage the families that follow the KV cache's need prefer; -1 none

extern "C" void k_carveout_need(size_t attn_cta_smem)
{
	carve_want = attn_cta_smem > 100 * 1024 ? 100 : -1;
}

extern "C" void k_carveout_apply(const void *kern, const char *family)
{
	static int env = -2;
	static const void *fn[512];
	static int val[512], nfn;
	if (env == -2) {
		const char *e = getenv("LMTERM_SMEM_CARVEOUT");
		env = e && *e ? MAX(-1, MIN(100, atoi(e))) : -3; // -3: not set
	}
	const int want = env != -3 ? env : strcmp(family, "gemv") ? carve_want : -1;
	int i = 0;
	while (i < nfn && fn[i] != kern) i++;
	if (i == nfn) { // first launch: the driver's choice is in place
		if (nfn == 512) return;
		fn[nfn] = kern;
		val[nfn++] = -1;
	}
	if (val[i] == want) return;
	val[i] = want;
	if (cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout, want) != cudaSuccess)
		cudaGetLastError();
}
