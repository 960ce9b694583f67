// rope_kv.cu: RoPE of q and k in place, fused with the write of k and v into the paged KV cache
// (and their int8/int4 quantization for policies 8 and 4), plus the pool-size functions of attention.h.
//
// One warp per (token, head) of qkv, the work of each in rope_row.cuh (shared with the decode attention
// kernel, which folds this op in): rotate q and k, write them back rounded, store k and v into the cache.
#define PDL_FAMILY "rope" // LMTERM_PDL=rope,... (cuda/pdl.cuh)
#include "config.h"
#include "attention.h"
#include "kv_layout.cuh"
#include "attn_common.cuh"
#include "rope_row.cuh"

extern "C" int attn_kv_check(const struct kv_cache *kv, enum dtype act_dt)
{
	if (act_dt != DT_F16 && act_dt != DT_BF16)
		return lm_err("attention: activations must be F16 or BF16, not %s", dtype_name(act_dt));
	if (kv->head_dim != 64 && kv->head_dim != 128)
		return lm_err("attention: head_dim %d is not supported by the CUDA kernels (64 or 128)", kv->head_dim);
	if (kv->block_len <= 0 || kv->block_len % 16)
		return lm_err("attention: KV block length %d is not a positive multiple of 16", kv->block_len);
	if (kv->policy != KV_POLICY_NONE && kv->policy != KV_POLICY_INT8 && kv->policy != KV_POLICY_INT4)
		return lm_err("attention: unknown KV quant policy %d (0, 4 or 8)", kv->policy);
	if (kv->n_layers <= 0 || kv->n_kv_heads <= 0 || kv->n_blocks < 0)
		return lm_err("attention: bad KV cache shape (%d layers, %d kv heads, %d blocks)", kv->n_layers,
			      kv->n_kv_heads, kv->n_blocks);
	return LM_OK;
}

static struct kv_geom geom_of(const struct kv_cache *kv)
{
	return kv_geom_make(kv->n_layers, kv->n_kv_heads, kv->head_dim, kv->block_len, kv->n_blocks, kv->policy);
}

extern "C" size_t attn_kv_pool_bytes(const struct kv_cache *kv, enum dtype act_dt)
{
	(void)act_dt; // policy 0 stores 2-byte elements for both F16 and BF16
	struct kv_geom g = geom_of(kv);
	return kv_pool_size(&g);
}

extern "C" size_t attn_kv_bytes_per_token(const struct kv_cache *kv, enum dtype act_dt)
{
	(void)act_dt;
	struct kv_geom g = geom_of(kv);
	return kv_token_size(&g);
}

// qkv [n][(nh + 2 nkv) HD]; pool per kv_layout.cuh
template <typename T, int HD, int POLICY>
__global__ void __launch_bounds__(128) rope_kv_kernel(T *__restrict__ qkv, uint8_t *__restrict__ pool,
						      struct kv_geom g, int layer, int nh, int n,
						      const int32_t *__restrict__ pos0p,
						      const int32_t *__restrict__ blocks,
						      const float *__restrict__ inv_freq, float mscale)
{
	pdl_wait_trigger();
	constexpr int E = HD / 32;
	const int nkv = g.n_kv_heads, H = nh + 2 * nkv;
	const int w = blockIdx.x * 4 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
	if (w >= n * H) return;
	const int t = w / H, h = w % H;
	const int pos = *pos0p + t;
	T *x = qkv + ((size_t)t * H + h) * HD + lane * E;

	float v[E];
	vec_io<T, E>::load(v, x);
	if (h < nh + nkv) { // q or k: rotate half
		rope_rotate<T, HD>(v, pos, inv_freq, mscale, lane);
		vec_io<T, E>::store(x, v);
	}
	if (h < nh) return;
	const int kvi = h < nh + nkv ? 0 : 1;
	kv_store_row<T, HD, POLICY>(v, pool, g, layer, blocks, pos, h - nh - kvi * nkv, kvi, lane);
}

template <typename T, int HD, int P>
static void launch_rope(void *qkv, uint8_t *pool, const struct kv_geom &g, int layer, int nh,
			const struct attn_step *st, cudaStream_t s)
{
	const int warps = st->n * (nh + 2 * g.n_kv_heads);
	klaunch(rope_kv_kernel<T, HD, P>, (warps + 3) / 4, 128, 0, s, (T *)qkv, pool, g, layer, nh, st->n, st->pos0,
		st->blocks, st->inv_freq, st->rope_mscale);
}

template <typename T, int HD>
static void launch_rope_p(void *qkv, uint8_t *pool, const struct kv_geom &g, int layer, int nh,
			  const struct attn_step *st, cudaStream_t s)
{
	if (g.policy == 8) launch_rope<T, HD, 8>(qkv, pool, g, layer, nh, st, s);
	else if (g.policy == 4) launch_rope<T, HD, 4>(qkv, pool, g, layer, nh, st, s);
	else launch_rope<T, HD, 0>(qkv, pool, g, layer, nh, st, s);
}

extern "C" int attn_launch_rope_kv(void *qkv, enum dtype act_dt, const struct kv_cache *kv, int layer, int n_heads,
				   const struct attn_step *st, cudaStream_t s)
{
	if (attn_kv_check(kv, act_dt)) return LM_ERR;
	if (layer < 0 || layer >= kv->n_layers || n_heads <= 0 || n_heads % kv->n_kv_heads)
		return lm_err("rope_kv: bad layer %d or head count %d (kv heads %d)", layer, n_heads, kv->n_kv_heads);
	if (st->n <= 0) return LM_OK;
	struct kv_geom g = geom_of(kv);
	uint8_t *pool = (uint8_t *)kv->pool;
	if (act_dt == DT_F16) {
		if (kv->head_dim == 64) launch_rope_p<half, 64>(qkv, pool, g, layer, n_heads, st, s);
		else launch_rope_p<half, 128>(qkv, pool, g, layer, n_heads, st, s);
	} else {
		if (kv->head_dim == 64) launch_rope_p<bf16, 64>(qkv, pool, g, layer, n_heads, st, s);
		else launch_rope_p<bf16, 128>(qkv, pool, g, layer, n_heads, st, s);
	}
	cudaError_t e = cudaGetLastError();
	if (e != cudaSuccess) return lm_err("rope_kv: kernel launch failed: %s", cudaGetErrorString(e));
	return LM_OK;
}
