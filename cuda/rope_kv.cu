// rope_kv.cu: RoPE of q and k in place, fused with the write of k and v into the paged KV cache
// (and their int8/int4 quantization for policies 8 and 4), plus the pool-size functions of attention.h.
//
// One warp per (token, head) of qkv. Lane l holds the E = hd/32 consecutive elements [l E, l E + E), so the
// rotate-half partner of an element (i +- hd/2) sits in lane l ^ 16: one shuffle, no shared memory, and
// the per-head min/max that quantization needs is a warp reduction. Angles are pos * inv_freq[i] in float
// and sincosf at full accuracy (positions reach tens of thousands of radians), as transformers does in
// float32. The rotated values are rounded to the activation type once, written back, and those rounded
// values are what the cache stores or quantizes (K after RoPE, as LMDeploy).
#include "config.h"
#include "attention.h"
#include "kv_layout.cuh"
#include "attn_common.cuh"

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

// E consecutive elements of T as one vector load/store
template <typename T, int E> struct vec_io {
	static __device__ __forceinline__ void load(float *v, const T *p)
	{
		if constexpr (E == 4) {
			uint2 u = *(const uint2 *)p;
			const T *h = (const T *)&u;
#pragma unroll
			for (int e = 0; e < 4; e++) v[e] = act<T>::to_f(h[e]);
		} else {
			uint32_t u = *(const uint32_t *)p;
			const T *h = (const T *)&u;
#pragma unroll
			for (int e = 0; e < 2; e++) v[e] = act<T>::to_f(h[e]);
		}
	}
	static __device__ __forceinline__ void store(T *p, const float *v)
	{
		if constexpr (E == 4) {
			uint2 u;
			u.x = act<T>::pack(v[0], v[1]);
			u.y = act<T>::pack(v[2], v[3]);
			*(uint2 *)p = u;
		} else {
			*(uint32_t *)p = act<T>::pack(v[0], v[1]);
		}
	}
};

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
		const int i0 = (lane & 15) * E;
		float r[E];
#pragma unroll
		for (int e = 0; e < E; e++) {
			float o = __shfl_xor_sync(0xffffffffu, v[e], 16);
			float sn, cs;
			sincosf((float)pos * inv_freq[i0 + e], &sn, &cs);
			cs *= mscale;
			sn *= mscale;
			r[e] = lane < 16 ? v[e] * cs - o * sn : v[e] * cs + o * sn;
		}
		vec_io<T, E>::store(x, r);
		vec_io<T, E>::load(v, x); // the rounded values are what the cache keeps
	}
	if (h < nh) return;

	const int kvi = h < nh + nkv ? 0 : 1, head = h - nh - kvi * nkv;
	const int blk = blocks[pos / g.block_len], off = pos % g.block_len;
	uint8_t *slab = pool + kv_slab_offset(&g, layer, blk, head, kvi);
	if constexpr (POLICY == 0) {
		vec_io<T, E>::store((T *)(slab + kv_row_offset(&g, off)) + lane * E, v);
	} else {
		constexpr float qmax = POLICY == 8 ? 255.f : 15.f;
		float mn = v[0], mx = v[0];
#pragma unroll
		for (int e = 1; e < E; e++) {
			mn = fminf(mn, v[e]);
			mx = fmaxf(mx, v[e]);
		}
		mn = warp_min(mn);
		mx = warp_max(mx);
		const half sh = __float2half_rn((mx - mn) / qmax), zh = __float2half_rn(mn);
		const float s = __half2float(sh), z = __half2float(zh);
		uint32_t q[E];
#pragma unroll
		for (int e = 0; e < E; e++)
			q[e] = s > 0.f ? (uint32_t)fminf(fmaxf(rintf((v[e] - z) / s), 0.f), qmax) : 0u;
		uint8_t *row = slab + kv_row_offset(&g, off);
		if constexpr (POLICY == 8) {
			if constexpr (E == 4)
				*(uint32_t *)(row + lane * 4) = q[0] | q[1] << 8 | q[2] << 16 | q[3] << 24;
			else
				*(uint16_t *)(row + lane * 2) = (uint16_t)(q[0] | q[1] << 8);
		} else {
			if constexpr (E == 4)
				*(uint16_t *)(row + lane * 2) = (uint16_t)(q[0] | q[1] << 4 | q[2] << 8 | q[3] << 12);
			else
				row[lane] = (uint8_t)(q[0] | q[1] << 4);
		}
		if (lane == 0) *(half2 *)(slab + kv_param_offset(&g, off)) = __halves2half2(sh, zh);
	}
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
