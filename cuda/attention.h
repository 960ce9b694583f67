/* attention.h: host launchers of the KV-touching CUDA kernels (cuda/rope_kv.cu, cuda/attention.cu).
 *
 * The KV pool layout is cuda/kv_layout.cuh's (paged blocks, per layer, per block, per kv head, K then V;
 * policies 8/4 add an fp16 (scale, zero) pair per token per head). The backend sizes the pool with
 * attn_kv_pool_bytes() and hands kv->pool to the launchers.
 *
 * Step state that changes from one decode step to the next (the position of the first token, the block
 * table, the RoPE frequencies) is passed as DEVICE pointers (struct attn_step), so a CUDA graph captured
 * once replays correctly after the backend has copied each step's values into those buffers. Host integers
 * (n, max_ctx) are baked into a captured graph: keep them fixed for a graph key.
 *
 * Activations (qkv, out) are act_dt = DT_F16 or DT_BF16, row-major:
 *   qkv [n][(nh + 2 nkv) hd]   per token: nh q heads, then nkv k heads, then nkv v heads
 *   out [n][nh hd]
 * Policy 0 caches hold act_dt values; policies 8 and 4 hold int8/int4 with fp16 scale and zero.
 * Supported: head_dim 64 or 128; n_heads a multiple of n_kv_heads; block_len a multiple of 16.
 *
 * All launchers are asynchronous on stream s, return LM_OK or LM_ERR (message set with lm_err()), and
 * may be called during stream capture. */
#ifndef LMTERM_CUDA_ATTENTION_H
#define LMTERM_CUDA_ATTENTION_H

#include <cuda_runtime_api.h>
#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

struct attn_step {
	const int32_t *pos0;     /* device, 1 value: position of token 0; token i is at pos0 + i and attends to
	                          * cache positions [0, pos0 + i] */
	const int32_t *blocks;   /* device: the sequence's block table (covers pos0 + n positions) */
	const float *inv_freq;   /* device [hd/2]: RoPE inverse frequencies */
	const float *rope_cs;    /* device [hd]: cos then sin of pos0 * inv_freq[i] (float product), i < hd/2, or NULL;
	                          * the fused decode kernel (attn_launch_rope_attention) rotates by it */
	float rope_mscale;       /* cos and sin are multiplied by it (1 for default RoPE) */
	int n;                   /* tokens in this step (host; fixed for a captured graph) */
	int max_ctx;             /* host: upper bound on pos0 + n over every replay (sizes the decode split
	                          * grid); the exact pos0 + n is fine when not capturing */
};

/* Check that the launchers support kv's shape and policy; LM_ERR with a message naming what is not. */
int attn_kv_check(const struct kv_cache *kv, enum dtype act_dt);
/* Bytes of the pool for kv->n_blocks blocks (all layers), and per token (all layers, K and V, data plus
 * scale/zero). The fields used: n_layers, n_kv_heads, head_dim, block_len, n_blocks, policy. */
size_t attn_kv_pool_bytes(const struct kv_cache *kv, enum dtype act_dt);
size_t attn_kv_bytes_per_token(const struct kv_cache *kv, enum dtype act_dt);

/* RoPE (rotate-half, as transformers) of the q and k heads of qkv in place, at positions pos0 + i, then
 * store k and v of the n tokens into layer `layer` of the cache (quantized per kv->policy). */
int attn_launch_rope_kv(void *qkv, enum dtype act_dt, const struct kv_cache *kv, int layer, int n_heads,
			const struct attn_step *st, cudaStream_t s);

/* shared memory of one CTA of the decode attention over this cache (bytes) */
size_t attn_decode_cta_smem(const struct kv_cache *kv, enum dtype act_dt);

/* Workspace (device bytes) that attn_launch_attention / attn_launch_decode need for split-K partials;
 * allocate it once for the largest n and max_ctx the backend will use (MEM_ACT or MEM_OTHER). */
size_t attn_workspace_bytes(int n_heads, int head_dim, int n, int max_ctx);

/* out[n][nh hd] = causal softmax(q k^T / sqrt(hd)) v over cache positions [0, pos0 + i] of layer `layer`
 * (the k and v of this step must already be in the cache: call attn_launch_rope_kv first).
 * Prefill: tensor cores, flash-attention online softmax, one pass over the cache per GQA group.
 * Decode: split-K over the cache (flash-decoding), then a combine kernel; any n, meant for small n.
 * attn_launch_attention picks one of the two by n; workspace may be NULL only for the prefill path
 * (then attn_launch_attention always takes it). */
int attn_launch_prefill(void *out, const void *qkv, enum dtype act_dt, const struct kv_cache *kv, int layer,
			int n_heads, const struct attn_step *st, cudaStream_t s);
int attn_launch_decode(void *out, const void *qkv, enum dtype act_dt, const struct kv_cache *kv, int layer,
		       int n_heads, const struct attn_step *st, void *workspace, size_t workspace_bytes,
		       cudaStream_t s);
int attn_launch_attention(void *out, const void *qkv, enum dtype act_dt, const struct kv_cache *kv, int layer,
			  int n_heads, const struct attn_step *st, void *workspace, size_t workspace_bytes,
			  cudaStream_t s);
/* attn_launch_rope_kv then attn_launch_attention, with the RoPE and the cache write folded into the decode
 * kernel for a step of one token (one kernel instead of two; qkv is then left as it was, unrotated);
 * otherwise the two launches, and qkv holds the rotated q and k as after rope_kv. */
int attn_launch_rope_attention(void *out, void *qkv, enum dtype act_dt, const struct kv_cache *kv, int layer,
			       int n_heads, const struct attn_step *st, void *workspace, size_t workspace_bytes,
			       cudaStream_t s);

#ifdef __cplusplus
}
#endif
#endif
