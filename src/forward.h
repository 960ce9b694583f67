/* forward.h: the one forward pass (src/forward.c), in model order, against struct backend_i. */
#ifndef LMTERM_FORWARD_H
#define LMTERM_FORWARD_H

#include "backend.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Activation workspace for up to max_tokens tokens per call (category MEM_ACT). */
struct fwd {
	struct model *m;
	struct backend *be;
	int max_tokens;
	void *x;      /* [max_tokens][dim] residual stream */
	void *h;      /* [max_tokens][dim] normed */
	void *qkv;    /* [max_tokens][(nh + 2 nkv) hd] */
	void *att;    /* [max_tokens][nh hd] */
	void *gu;     /* [max_tokens][2 ffn] */
	void *ff;     /* [max_tokens][ffn] */
	void *dx;     /* [max_tokens][dim] block output added to x */
	float *inv_freq; /* host [hd/2] */
	size_t bytes; /* activation bytes allocated */
	/* Optional tap, called (after the backend has finished writing x) with the input of every linear:
	 * point FWD_TAP_QKV (attn-normed x, width dim), FWD_TAP_O (attention output, width nh*hd),
	 * FWD_TAP_W13 (ffn-normed x, width dim), FWD_TAP_W2 (swiglu output, width ffn). x is backend memory
	 * of n rows of act_dt. Used by AWQ calibration to gather activation statistics. */
	void (*tap)(void *ud, int layer, int point, const void *x, int n, int width);
	void *tap_ud;
	bool eager;   /* decode steps run op by op, never as a graph (--eager-mode) */
	/* > pos0 + n: the length of the sequence a run of calls is feeding (a prompt in chunks), whose RoPE is
	 * computed for all of it, as transformers computes it in one call (dynamic NTK, longrope); 0 otherwise */
	int rope_len;
	bool kv_long; /* the last call rotated K with LongRoPE's long factors (what the cache holds: fwd_rope_refeed) */
	/* greedy decoding one step ahead (n_logits -3, fwd_take): ids started and not taken (on the host where
	 * the backend has no argmax_start), and whether the last call left a greedy id a chained step may feed */
	int32_t pend[BACKEND_MAX_PENDING];
	int n_pend;
	bool have_last;
	bool argmax_made; /* an argmax_start has run outside a graph (its buffers exist) */
	int32_t last_id; /* that id, where the backend has no argmax_start */
};
enum { FWD_TAP_QKV, FWD_TAP_O, FWD_TAP_W13, FWD_TAP_W2 };

int fwd_init(struct fwd *f, struct model *m, int max_tokens);
void fwd_free(struct fwd *f);
/* Bytes fwd_init would allocate, without allocating (for KV sizing before the workspace exists). */
size_t fwd_workspace_bytes(const struct model *m, struct backend *be, int max_tokens);

/* Run n tokens (n <= max_tokens) at positions pos0.. through the model, reading and extending kv.
 * blocks/n_blocks: the sequence's block table, covering pos0 + n positions.
 * n_logits: how many of the last positions to compute logits for (0..n), written to logits[n_logits][vocab].
 * If n_logits == -1, only the greedy next token of the last position is computed, into *argmax_out
 * (on the device where the backend can). If n_logits == -2, nothing is computed after the final norm and
 * nothing is waited for: the caller samples from row n-1 of f->h itself (backend_i.sample).
 * If n_logits == -3, the greedy next token is started and not waited for: fwd_take hands it over later, so
 * that the caller can enqueue the next step first (greedy decoding one step ahead of the host). ids == NULL
 * (n == 1): the token is the greedy id of the call before (n_logits -1 or -3), which may still be on the
 * device: a chained step. */
int forward(struct fwd *f, struct kv_cache *kv, const int32_t *ids, int n, int pos0, const int32_t *blocks,
	    int n_blocks, int n_logits, float *logits, int32_t *argmax_out);
/* the oldest greedy id started by forward(n_logits -3) and not yet taken, waiting for it */
int fwd_take(struct fwd *f, int32_t *id);
/* Greedy decoding one step ahead of the host, one token: feeds id at pos and starts its successor, unless the
 * chained step before has fed it already (*ahead); with then, enqueues the step at pos + 1 too, fed that
 * successor on the device (*ahead says whether it was); then waits for the successor into *next. So the GPU
 * has the next step queued while the host handles this token. blocks cover pos + 1 (pos + 2 with then). */
int fwd_greedy_ahead(struct fwd *f, struct kv_cache *kv, int32_t id, int pos, bool then, const int32_t *blocks,
		     int n_blocks, bool *ahead, int32_t *next);
/* takes and drops the greedy ids still started (those of steps after the last token wanted) */
int fwd_drop(struct fwd *f);

/* LongRoPE switches from the short to the long factors once a sequence outgrows
 * original_max_position_embeddings, but K already in the cache keeps the rotation of the short ones; there
 * transformers' Phi3ForCausalLM drops its cache and recomputes the whole sequence (prepare_inputs_for_generation),
 * and so must a caller about to feed n tokens after pos0 cached ones (with f->rope_len as it will be set): how
 * many cached positions to feed again, from position 0, in the same run (0: none). The same holds the other way,
 * for a conversation cut back below the switch whose cache was written with the long factors. */
int fwd_rope_refeed(const struct fwd *f, int pos0, int n);
/* Feeds ids[0..n) again at positions 0.., chunk tokens a call, no logits: the cached positions fwd_rope_refeed
 * asks for, rotated as f->rope_len says */
int fwd_feed_again(struct fwd *f, struct kv_cache *kv, const int32_t *ids, int n, int chunk, const int32_t *blocks,
		   int n_blocks);

#ifdef __cplusplus
}
#endif
#endif
