// rope_row.cuh: one warp's share of RoPE and the KV-cache write, shared by rope_kv.cu (the rope_kv op: a warp
// per (token, head) of qkv) and attention.cu (the decode kernel with RoPE folded in: each CTA rotates its own
// q rows and writes the k and v of the step's tokens that fall in its share of the keys).
//
// A warp holds one head's row of hd elements, lane l the E = hd/32 consecutive elements [l E, l E + E), so the
// rotate-half partner of an element (i +- hd/2) sits in lane l ^ 16: one shuffle, no shared memory, and the
// per-head min/max that quantization needs is a warp reduction. Angles are pos * inv_freq[i] in float and
// sincosf at full accuracy (positions reach tens of thousands of radians), as transformers does in float32.
// The rotated values are rounded to the activation type once; those rounded values are what the cache stores
// or quantizes (K after RoPE, as LMDeploy). Both users run the same code, so a row rotated by either is the
// same bits.
#ifndef LMTERM_CUDA_ROPE_ROW_CUH
#define LMTERM_CUDA_ROPE_ROW_CUH

#include "attn_common.cuh"
#include "kv_layout.cuh"

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

// v[E] (lane's elements of one q or k head) rotated by the angles whose cosines and sines (times mscale) are
// cs[E], sn[E], then rounded to T (and kept as float). Explicit roundings: the same bits whichever kernel
// inlines this, and the same as rope_q_frag (attention.cu) gives.
template <typename T, int HD>
static __device__ __forceinline__ void rope_apply(float *v, const float *cs, const float *sn, int lane)
{
	constexpr int E = HD / 32;
	float r[E];
#pragma unroll
	for (int e = 0; e < E; e++) {
		float o = __shfl_xor_sync(0xffffffffu, v[e], 16);
		r[e] = lane < 16 ? __fsub_rn(__fmul_rn(v[e], cs[e]), __fmul_rn(o, sn[e]))
				 : __fadd_rn(__fmul_rn(v[e], cs[e]), __fmul_rn(o, sn[e]));
	}
#pragma unroll
	for (int e = 0; e < E; e++) v[e] = act<T>::to_f(act<T>::from_f(r[e]));
}

// v[E] rotated at position pos (angles pos * inv_freq[i], sincosf at full accuracy)
template <typename T, int HD>
static __device__ __forceinline__ void rope_rotate(float *v, int pos, const float *__restrict__ inv_freq,
						   float mscale, int lane)
{
	constexpr int E = HD / 32;
	const int i0 = (lane & 15) * E;
	float cs[E], sn[E];
#pragma unroll
	for (int e = 0; e < E; e++) {
		sincosf((float)pos * inv_freq[i0 + e], &sn[e], &cs[e]);
		cs[e] *= mscale;
		sn[e] *= mscale;
	}
	rope_apply<T, HD>(v, cs, sn, lane);
}

// v[E] rotated by a table of the step's first position: cos at tab[i], sin at tab[HD/2 + i] (struct
// attn_step's rope_cs, computed by the host; no sincosf on the device)
template <typename T, int HD>
static __device__ __forceinline__ void rope_rotate_tab(float *v, const float *__restrict__ tab, float mscale, int lane)
{
	constexpr int E = HD / 32;
	const int i0 = (lane & 15) * E;
	float cs[E], sn[E];
#pragma unroll
	for (int e = 0; e < E; e++) {
		cs[e] = tab[i0 + e] * mscale;
		sn[e] = tab[HD / 2 + i0 + e] * mscale;
	}
	rope_apply<T, HD>(v, cs, sn, lane);
}

// the lane's v[E] (already rounded to T) as one row of a slab (kv_layout.cuh): the data at row (the row's
// first byte) and, for POLICY 8/4, its fp16 (scale, zero) at *param, quantized per POLICY
template <typename T, int HD, int POLICY>
static __device__ __forceinline__ void store_row(const float *v, uint8_t *row, half2 *param, int lane)
{
	constexpr int E = HD / 32;
	if constexpr (POLICY == 0) {
		vec_io<T, E>::store((T *)row + lane * E, v);
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
		if (lane == 0) *param = __halves2half2(sh, zh);
	}
}

// store the lane's v[E] (already rounded to T) as token pos of kv head `head` (kvi 0 = K, 1 = V) of layer
// `layer` of the cache
template <typename T, int HD, int POLICY>
static __device__ __forceinline__ void kv_store_row(const float *v, uint8_t *__restrict__ pool,
						    const struct kv_geom &g, int layer, const int32_t *__restrict__ blocks,
						    int pos, int head, int kvi, int lane)
{
	const int blk = blocks[pos / g.block_len], off = pos % g.block_len;
	uint8_t *slab = pool + kv_slab_offset(&g, layer, blk, head, kvi);
	store_row<T, HD, POLICY>(v, slab + kv_row_offset(&g, off), (half2 *)(slab + kv_param_offset(&g, off)), lane);
}

#endif
