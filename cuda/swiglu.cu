// swiglu.cu: the MLP gate, out = silu(gate) * up, with gate and up the two halves of the fused w13
// GEMM's output row: gu[i] = [gate (ffn) | up (ffn)]. Elementwise, 16-byte loads when ffn % 8 == 0;
// silu in float (x / (1 + exp(-x))), the product rounded once to the activation type. torch rounds
// silu(gate) to fp16/bf16 before the product; we round once (closer to the float reference).
#define PDL_FAMILY "swiglu" // LMTERM_PDL=swiglu,... (cuda/pdl.cuh)
#include "config.h"
#include "kernels.h"
#include "ops_common.cuh"

// INTER: gu's rows from an interleaved w13 (awq_repack_tiled, gate_up): 8 of gate, then the same 8 of up
template <typename T, bool INTER>
__global__ void swiglu_vec(uint16_t *out, const uint16_t *gu, int n, int ffn)
{
	pdl_wait_trigger();
	const int nv = ffn / 8;
	const size_t total = (size_t)n * nv;
	for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
		const size_t i = t / nv, c = t % nv;
		vec8 g, u, o;
		g.u = __ldg((const uint4 *)(gu + i * 2 * ffn) + (INTER ? 2 * c : c));
		u.u = __ldg((const uint4 *)(gu + i * 2 * ffn + (INTER ? 0 : ffn)) + (INTER ? 2 * c + 1 : c));
#pragma unroll
		for (int k = 0; k < 8; k++) set_elem<T>(o, k, silu_f(elem<T>(g, k)) * elem<T>(u, k));
		((uint4 *)(out + i * ffn))[c] = o.u;
	}
}

template <typename T>
__global__ void swiglu_scalar(T *out, const T *gu, int n, int ffn)
{
	pdl_wait_trigger();
	const size_t total = (size_t)n * ffn;
	for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
		const size_t i = t / ffn, j = t % ffn;
		out[t] = from_f<T>(silu_f(to_f(gu[i * 2 * ffn + j])) * to_f(gu[i * 2 * ffn + ffn + j]));
	}
}

extern "C" int k_swiglu(void *out, const void *gu, int n, int ffn, bool interleaved, enum dtype act, cudaStream_t s)
{
	if (n <= 0) return LM_OK;
	if (interleaved && ffn % 8) return lm_err("swiglu: interleaved rows need ffn %% 8 == 0 (ffn %d)", ffn);
	const size_t work = (size_t)n * (ffn % 8 == 0 ? ffn / 8 : ffn);
	int blocks = (int)((work + 255) / 256);
	if (blocks > 65535) blocks = 65535;
	if (interleaved) {
		if (act == DT_BF16) klaunch(swiglu_vec<bf16_t, true>, blocks, 256, 0, s, (uint16_t *)out, (const uint16_t *)gu, n, ffn);
		else klaunch(swiglu_vec<half, true>, blocks, 256, 0, s, (uint16_t *)out, (const uint16_t *)gu, n, ffn);
	} else if (ffn % 8 == 0) {
		if (act == DT_BF16) klaunch(swiglu_vec<bf16_t, false>, blocks, 256, 0, s, (uint16_t *)out, (const uint16_t *)gu, n, ffn);
		else klaunch(swiglu_vec<half, false>, blocks, 256, 0, s, (uint16_t *)out, (const uint16_t *)gu, n, ffn);
	} else {
		if (act == DT_BF16) klaunch(swiglu_scalar<bf16_t>, blocks, 256, 0, s, (bf16_t *)out, (const bf16_t *)gu, n, ffn);
		else klaunch(swiglu_scalar<half>, blocks, 256, 0, s, (half *)out, (const half *)gu, n, ffn);
	}
	LAUNCHED("swiglu");
}
