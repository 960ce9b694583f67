// kv_layout.cuh: the device layout of the paged KV pool, shared by rope_kv.cu, attention.cu and the tests.
//
// The pool is one allocation of n_layers * n_blocks * n_kv_heads * 2 "slabs". A slab holds one kv head's
// K (or V) for the block_len tokens of one block:
//
//   pool [layer][block][kv_head][K=0,V=1] slab
//   slab policy 0: data  [block_len][head_dim]  act dtype (fp16 or bf16)
//        policy 8: data  [block_len][head_dim]  uint8 q, x = q * scale + zero
//                  param [block_len] half2 (scale, zero)
//        policy 4: data  [block_len][head_dim/2] uint8, dim 2i in the low nibble, 2i+1 in the high nibble
//                  param [block_len] half2 (scale, zero)
//
// The C tests include this file too (it is plain C outside nvcc).
//
// Quantization (LMDeploy semantics), per token and per head, over the head_dim values x (K after RoPE,
// rounded to the activation dtype first): scale = (max - min) / (2^b - 1), zero = min,
// q = clamp(round((x - zero) / scale), 0, 2^b - 1) with scale and zero as stored in fp16 (q = 0 when
// scale is 0); x' = q * scale + zero.
//
// One head's K and V of a block are adjacent, so a kernel that works on one kv head reads one contiguous
// 2 * slab run per block. Slabs are 16-byte multiples (block_len % 16 == 0), so 16-byte loads stay aligned.
#ifndef LMTERM_CUDA_KV_LAYOUT_CUH
#define LMTERM_CUDA_KV_LAYOUT_CUH

#include <stddef.h>
#include <stdint.h>

// plain C (the tests) includes this too
#ifndef __CUDACC__
#ifndef __host__
#define __host__
#endif
#ifndef __device__
#define __device__
#endif
#endif

struct kv_geom {
	int n_layers, n_kv_heads, head_dim, block_len, n_blocks;
	int policy;        // 0, 8, 4
	int elem_bits;     // 16 (act dtype), 8 or 4
	size_t data_bytes;  // per slab
	size_t param_bytes; // per slab: block_len * 4 for policies 8/4, else 0
	size_t slab_bytes;
};

static inline __host__ __device__ struct kv_geom kv_geom_make(int n_layers, int n_kv_heads, int head_dim,
								  int block_len, int n_blocks, int policy)
{
	struct kv_geom g;
	g.n_layers = n_layers;
	g.n_kv_heads = n_kv_heads;
	g.head_dim = head_dim;
	g.block_len = block_len;
	g.n_blocks = n_blocks;
	g.policy = policy;
	g.elem_bits = policy == 8 ? 8 : policy == 4 ? 4 : 16;
	g.data_bytes = (size_t)block_len * head_dim * g.elem_bits / 8;
	g.param_bytes = policy ? (size_t)block_len * 4 : 0;
	g.slab_bytes = g.data_bytes + g.param_bytes;
	return g;
}

static inline __host__ __device__ size_t kv_pool_size(const struct kv_geom *g)
{
	return (size_t)g->n_layers * g->n_blocks * g->n_kv_heads * 2 * g->slab_bytes;
}

// bytes per token, all layers, K and V, data and params
static inline __host__ __device__ size_t kv_token_size(const struct kv_geom *g)
{
	return (size_t)g->n_layers * g->n_kv_heads * 2 * ((size_t)g->head_dim * g->elem_bits / 8 +
							    (g->policy ? 4 : 0));
}

// start of the slab of (layer, block, head, kv), kv 0 = K, 1 = V
static inline __host__ __device__ size_t kv_slab_offset(const struct kv_geom *g, int layer, int block, int head,
							int kv)
{
	return ((((size_t)layer * g->n_blocks + block) * g->n_kv_heads + head) * 2 + kv) * g->slab_bytes;
}

// token t of a slab: its data (row of head_dim elements) and its (scale, zero) pair
static inline __host__ __device__ size_t kv_row_offset(const struct kv_geom *g, int t)
{
	return (size_t)t * g->head_dim * g->elem_bits / 8;
}
static inline __host__ __device__ size_t kv_param_offset(const struct kv_geom *g, int t)
{
	return g->data_bytes + (size_t)t * 4;
}

#endif
