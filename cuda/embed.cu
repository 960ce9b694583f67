// embed.cu: token embedding lookup, x[i] = table[ids[i]].
//
// One block per token; the ids come from the backend's device step state, so a captured decode graph
// reads the current step's token (or, in a chained step, the previous step's id on the device: step_token).
// A row is copied with 16-byte loads when dim % 8 == 0. An id outside the vocabulary (the host checks ids
// before a step, so only a bug gets here) gives a zero row.
#define PDL_FAMILY "embed" // LMTERM_PDL=embed,... (cuda/pdl.cuh)
#include "config.h"
#include "kernels.h"
#include "ops_common.cuh"

template <bool VEC>
__global__ void embed_kernel(uint16_t *x, const uint16_t *table, const int32_t *ids, const int32_t *chain,
			     const int32_t *tok, int dim, int vocab)
{
	pdl_wait_trigger();
	const int i = blockIdx.x;
	const int id = step_token(ids, chain, tok, i);
	const bool ok = id >= 0 && id < vocab;
	uint16_t *dst = x + (size_t)i * dim;
	const uint16_t *src = table + (size_t)(ok ? id : 0) * dim;
	if (VEC) {
		for (int c = threadIdx.x; c < dim / 8; c += blockDim.x) {
			uint4 v = ok ? __ldg((const uint4 *)src + c) : make_uint4(0, 0, 0, 0);
			((uint4 *)dst)[c] = v;
		}
	} else {
		for (int c = threadIdx.x; c < dim; c += blockDim.x) dst[c] = ok ? src[c] : 0;
	}
}

extern "C" int k_embed(void *x, const void *table, const int32_t *ids, const int32_t *chain, const int32_t *tok, int n,
		       int dim, int vocab, enum dtype act, cudaStream_t s)
{
	(void)act; // a copy: the table is stored in the activation type
	if (n <= 0) return LM_OK;
	if (dim % 8 == 0)
		klaunch(embed_kernel<true>, n, 128, 0, s, (uint16_t *)x, (const uint16_t *)table, ids, chain, tok, dim,
			vocab);
	else
		klaunch(embed_kernel<false>, n, 128, 0, s, (uint16_t *)x, (const uint16_t *)table, ids, chain, tok, dim,
			vocab);
	LAUNCHED("embed");
}
