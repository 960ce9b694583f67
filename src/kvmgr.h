/* kvmgr.h: sizing the paged KV cache and handing out its blocks.
 *
 * Capacity (--cache-max-entry-count): a fraction in (0,1) of the memory free after the weights and the
 * activation workspace are allocated (LMDeploy's meaning; the cpu backend reports MemAvailable as free), or an
 * absolute size in bytes, or a token count. The cache is n_blocks blocks of block_len tokens; the backend's
 * kv_alloc lays out the storage for the policy (0 = model dtype, 8 = int8, 4 = int4, each int with an fp16
 * scale and zero per token and head). A sequence owns a block table: block indices covering its positions. */
#ifndef LMTERM_KVMGR_H
#define LMTERM_KVMGR_H

#include "backend.h"
#include "engine.h"

struct kv_plan {
	int policy, block_len, n_blocks;
	int capacity_tokens;      /* n_blocks * block_len */
	size_t bytes_per_token;   /* all layers, K and V, data + scale/zero, as the backend stores them */
	size_t bytes;             /* n_blocks * block_len * bytes_per_token */
	size_t budget;            /* what the capacity option allowed, bytes */
	size_t free_bytes;        /* memory free when planned */
	bool free_valid;
};

/* Bytes per token by the formula: 2 (K, V) x layers x kv heads x (head_dim x elem | head_dim bytes (int8) |
 * head_dim/2 bytes (int4)) + for int policies 2 x 2 bytes of fp16 scale and zero per head. */
size_t kv_formula_bytes_per_token(int n_layers, int n_kv_heads, int head_dim, int policy, size_t elem_size);

/* Plan a cache. max_tokens > 0 caps a fractional capacity (one session never holds more than its length, so a
 * fraction of a large device is not taken for nothing); absolute sizes are taken as given.
 * LM_ERR with the numbers when not even one block fits. */
int kvmgr_plan(struct backend *be, const struct model_config *c, const struct kv_capacity *cap, int policy,
	       int block_len, int max_tokens, struct kv_plan *out);

struct kvmgr {
	struct backend *be;
	struct kv_cache kv;       /* the backend's cache (pool etc.) */
	int32_t *free_blocks;     /* stack of free block indices */
	int n_free;
	bool allocated;
};

/* Allocate the planned cache through the backend (category MEM_KV). */
int kvmgr_alloc(struct kvmgr *m, struct backend *be, const struct model_config *c, const struct kv_plan *p);
void kvmgr_free(struct kvmgr *m);

/* A sequence's block table. */
struct kv_seq {
	int32_t *blocks;
	int n_blocks, cap;
};
/* Make s's block table cover positions [0, n_tokens); LM_ERR (message with the numbers) if the cache has no
 * free block left. */
int kvmgr_seq_fit(struct kvmgr *m, struct kv_seq *s, int n_tokens);
/* Give back the blocks beyond what n_tokens positions need (n_tokens 0: all). */
void kvmgr_seq_trim(struct kvmgr *m, struct kv_seq *s, int n_tokens);
void kvmgr_seq_free(struct kvmgr *m, struct kv_seq *s);
/* Bytes of cache holding n_tokens positions (whole blocks, as allocated) */
size_t kvmgr_used_bytes(const struct kvmgr *m, const struct kv_seq *s);

#endif
