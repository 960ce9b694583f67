/* forward.c: the one forward pass, in model order, against struct backend_i.
 *
 * A Llama-family decoder (Llama, Mistral, Qwen2, Qwen3, InternLM2 after the loader's reordering):
 *   x = embed(ids)
 *   per layer:  x += attention(rmsnorm(x)) ; x += mlp(rmsnorm(x))
 *   (Qwen3's attention RMS-normalizes each q and k head after the projection, before RoPE)
 *   logits = lm_head(rmsnorm(x))
 * The residual add is fused into the next norm: add_rmsnorm(h, x, dx) does x += dx, h = rmsnorm(x). (Fusing
 * the output projection into that norm as well, a last-block epilogue, was measured slower on the H200: the
 * serial tail cost more than the launch it saved; docs/PERFORMANCE.md.)
 *
 * RoPE frequencies are computed on the host per call for the sequence length pos0 + n (or f->rope_len, the
 * length of a prompt fed in chunks), as transformers does per forward (dynamic NTK rescales once the sequence
 * outgrows max_position_embeddings; K already in the cache keeps the rotation of its own step, as in
 * transformers' incremental generation, except for LongRoPE's switch: fwd_rope_refeed).
 *
 * Decode steps (n == 1) run between graph_begin and graph_end where the backend has them: the op sequence
 * from embed to the final norm is the same for every token (ids, positions and the block table are step
 * state, not op arguments), so it can be captured once and replayed. The logits or argmax, which wait for
 * their result on the host, stay outside the graph. With a tap hook set, or eager set, no graph is used. */
#include "config.h"
#include "forward.h"
#include "i18n.h"

#include <stdlib.h>

/* a decode step's graph key */
#define GRAPH_DECODE 1
#define GRAPH_DECODE_ARGMAX 2 /* the same, then the lm_head and the greedy argmax started (n_logits -3) */

struct ws_sizes {
	size_t x, qkv, att, gu, ff; /* elements per token */
};

static struct ws_sizes ws_sizes(const struct model_config *c)
{
	struct ws_sizes s;
	s.x = (size_t)c->dim;
	s.qkv = (size_t)(c->n_heads + 2 * c->n_kv_heads) * c->head_dim;
	s.att = (size_t)c->n_heads * c->head_dim;
	s.gu = 2 * (size_t)c->ffn;
	s.ff = (size_t)c->ffn;
	return s;
}

size_t fwd_workspace_bytes(const struct model *m, struct backend *be, int max_tokens)
{
	struct ws_sizes s = ws_sizes(&m->cfg);
	/* x, h, dx, qkv, att, gu, ff */
	return (size_t)max_tokens * be->act_size * (3 * s.x + s.qkv + s.att + s.gu + s.ff);
}

int fwd_init(struct fwd *f, struct model *m, int max_tokens)
{
	memset(f, 0, sizeof *f);
	if (max_tokens <= 0) return lm_err(_("forward: workspace for %d tokens"), max_tokens);
	f->m = m;
	f->be = m->be;
	f->max_tokens = max_tokens;
	struct backend *be = m->be;
	struct ws_sizes s = ws_sizes(&m->cfg);
	struct { void **p; size_t el; } bufs[] = {
		{ &f->x, s.x }, { &f->h, s.x }, { &f->dx, s.x }, { &f->qkv, s.qkv },
		{ &f->att, s.att }, { &f->gu, s.gu }, { &f->ff, s.ff },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bufs); i++) {
		size_t bytes = (size_t)max_tokens * bufs[i].el * be->act_size;
		*bufs[i].p = be->i->alloc(be, bytes, MEM_ACT);
		if (!*bufs[i].p) {
			lm_err_prefix(_("activation workspace: "));
			fwd_free(f);
			return LM_ERR;
		}
		f->bytes += bytes;
	}
	f->inv_freq = malloc(sizeof(float) * (size_t)(m->cfg.head_dim / 2 + 1));
	if (!f->inv_freq) {
		fwd_free(f);
		return lm_err(_("out of memory"));
	}
	return LM_OK;
}

void fwd_free(struct fwd *f)
{
	if (!f->be) return;
	void *bufs[] = { f->x, f->h, f->dx, f->qkv, f->att, f->gu, f->ff };
	for (size_t i = 0; i < ARRAY_SIZE(bufs); i++)
		if (bufs[i]) f->be->i->free(f->be, bufs[i]);
	free(f->inv_freq);
	memset(f, 0, sizeof *f);
}

/* rows [row0, ...) of an activation buffer of the given width */
static void *rows_at(const struct fwd *f, void *buf, int row0, size_t width)
{
	return (char *)buf + (size_t)row0 * width * f->be->act_size;
}

static int tap(struct fwd *f, int layer, int point, const void *x, int n, int width)
{
	if (!f->tap) return LM_OK;
	if (f->be->i->sync(f->be)) return LM_ERR;
	f->tap(f->tap_ud, layer, point, x, n, width);
	return LM_OK;
}

/* first index of the largest value, as torch.argmax */
static int32_t argmax_host(const float *v, int n)
{
	int32_t best = 0;
	for (int i = 1; i < n; i++)
		if (v[i] > v[best]) best = i;
	return best;
}

/* embed .. final norm: the part of a step that may run as a graph; leaves the normed output in f->h.
 *
 * Where the backend folds the norms into its GEMVs (matmul_residual, norm_matmul: backend.h), the output
 * projection and the down projection each end their residual branch with x += dx and the next norm's x * w
 * in f->h (`folded`), and the GEMV after the norm applies its scale: a layer is then its four GEMVs and
 * the attention, with no norm or SwiGLU kernel between. Taps see each linear's true input, so they take
 * the unfolded ops; so does the last layer's down projection, which the final norm follows. */
static int body(struct fwd *f, struct kv_cache *kv, int n)
{
	struct backend *be = f->be;
	const struct backend_i *b = be->i;
	const struct model *m = f->m;
	const struct model_config *c = &m->cfg;
	const int dim = c->dim, nh = c->n_heads, hd = c->head_dim, ffn = c->ffn;
	const bool fold = b->matmul_residual && b->norm_matmul && !f->tap;
	bool folded = false; /* f->h holds x * norm weight, the norm's scale still to apply */
	int rc;

	/* token embeddings: x = tok_embed[ids], with the first layer's norm where the backend does both at once */
	rc = b->embed_norm && c->n_layers && !f->tap
		     ? b->embed_norm(be, f->x, f->h, &m->tok_embed, &m->layers[0].attn_norm, n, c->norm_eps)
		     : 1;
	if (rc < 0 || (rc && b->embed(be, f->x, &m->tok_embed))) return LM_ERR;
	bool normed = rc == 0; /* f->h already holds the first layer's attention norm */
	for (int l = 0; l < c->n_layers; l++) {
		const struct layer_weights *L = &m->layers[l];
		/* attention norm; the previous layer's MLP output is added to the residual first */
		if (!folded && !normed && b->add_rmsnorm(be, f->h, f->x, l ? f->dx : NULL, &L->attn_norm, n, c->norm_eps))
			return LM_ERR;
		normed = false;
		/* q, k, v projections in one GEMM: qkv = h . Wqkv^T (+ bias) */
		if (tap(f, l, FWD_TAP_QKV, f->h, n, dim)) return LM_ERR;
		if (folded ? b->norm_matmul(be, f->qkv, NULL, f->h, &L->wqkv, n, c->norm_eps)
			   : b->matmul(be, f->qkv, f->h, &L->wqkv, n))
			return LM_ERR;
		/* Qwen3: RMSNorm of each q head and each k head (before RoPE, so the cache holds normed k) */
		if (c->qk_norm && b->qk_norm(be, f->qkv, &L->q_norm, &L->k_norm, n, nh, c->n_kv_heads, c->norm_eps))
			return LM_ERR;
		/* RoPE on q and k, then k and v of these tokens into the cache; causal attention of q over the
		 * cache: att = softmax(q k^T / sqrt(hd)) v (one op where the backend folds them together) */
		if (b->rope_attention) {
			if (b->rope_attention(be, f->att, f->qkv, kv, l, nh)) return LM_ERR;
		} else if (b->rope_kv(be, f->qkv, kv, l, nh) || b->attention(be, f->att, f->qkv, kv, l, nh)) {
			return LM_ERR;
		}
		/* output projection: dx = att . Wo^T; the residual x += dx, then the FFN norm */
		if (tap(f, l, FWD_TAP_O, f->att, n, nh * hd)) return LM_ERR;
		rc = fold ? b->matmul_residual(be, f->x, f->h, f->att, &L->wo, &L->ffn_norm, n) : 1;
		if (rc < 0) return LM_ERR;
		folded = rc == 0;
		if (!folded && (b->matmul(be, f->dx, f->att, &L->wo, n) ||
				b->add_rmsnorm(be, f->h, f->x, f->dx, &L->ffn_norm, n, c->norm_eps)))
			return LM_ERR;
		/* gate and up projections in one GEMM: gu = h . [W1; W3]^T; SwiGLU: ff = silu(gate) * up (fused with
		 * the GEMM where the backend can) */
		if (tap(f, l, FWD_TAP_W13, f->h, n, dim)) return LM_ERR;
		if (folded) {
			if (b->norm_matmul(be, f->ff, f->gu, f->h, &L->w13, n, c->norm_eps)) return LM_ERR;
		} else if (b->matmul_swiglu) {
			if (b->matmul_swiglu(be, f->ff, f->gu, f->h, &L->w13, n)) return LM_ERR;
		} else if (b->matmul(be, f->gu, f->h, &L->w13, n) || b->swiglu(be, f->ff, f->gu, n, ffn)) {
			return LM_ERR;
		}
		/* down projection: dx = ff . W2^T, added to x by the next norm (or here, with the next norm's
		 * x * w, where folded) */
		if (tap(f, l, FWD_TAP_W2, f->ff, n, ffn)) return LM_ERR;
		rc = fold && l + 1 < c->n_layers
			     ? b->matmul_residual(be, f->x, f->h, f->ff, &L->w2, &m->layers[l + 1].attn_norm, n)
			     : 1;
		if (rc < 0) return LM_ERR;
		folded = rc == 0;
		if (!folded && b->matmul(be, f->dx, f->ff, &L->w2, n)) return LM_ERR;
	}
	/* last residual add and the final norm (the last down projection is never folded) */
	return b->add_rmsnorm(be, f->h, f->x, c->n_layers ? f->dx : NULL, &m->final_norm, n, c->norm_eps);
}

int fwd_rope_refeed(const struct fwd *f, int pos0, int n)
{
	const struct rope_cfg *r = &f->m->cfg.rope;
	if (r->type != ROPE_LONGROPE || pos0 <= 0) return 0;
	return (MAX(pos0 + n, f->rope_len) > r->orig_max_pos) != f->kv_long ? pos0 : 0;
}

int fwd_feed_again(struct fwd *f, struct kv_cache *kv, const int32_t *ids, int n, int chunk, const int32_t *blocks,
		   int n_blocks)
{
	for (int p0 = 0; p0 < n; p0 += chunk)
		if (forward(f, kv, ids + p0, MIN(chunk, n - p0), p0, blocks, n_blocks, 0, NULL, NULL)) return LM_ERR;
	return LM_OK;
}

int forward(struct fwd *f, struct kv_cache *kv, const int32_t *ids, int n, int pos0, const int32_t *blocks,
	    int n_blocks, int n_logits, float *logits, int32_t *argmax_out)
{
	struct backend *be = f->be;
	const struct backend_i *b = be->i;
	const struct model_config *c = &f->m->cfg;
	if (n <= 0 || n > f->max_tokens)
		return lm_err(_("forward: %d tokens in one call (the workspace holds %d)"), n, f->max_tokens);
	if (pos0 < 0 || (int64_t)n_blocks * kv->block_len < (int64_t)pos0 + n)
		return lm_err(_("forward: the block table (%d blocks of %d) does not cover positions up to %d"), n_blocks,
			      kv->block_len, pos0 + n);
	if (n_logits < -3 || n_logits > n) return lm_err(_("forward: %d logits rows for %d tokens"), n_logits, n);
	if ((n_logits > 0 && !logits) || (n_logits == -1 && !argmax_out))
		return lm_err(_("forward: no output buffer"));
	const bool dev_chain = b->argmax_start && b->argmax_take;
	if (!ids && (n != 1 || !f->have_last))
		return lm_err(_("forward: a chained step takes one token, after a greedy step"));
	if (n_logits == -3 && f->n_pend >= BACKEND_MAX_PENDING)
		return lm_err(_("forward: %d greedy ids started and not taken"), f->n_pend);

	/* the step state: ids, positions, block table, RoPE frequencies for sequence length pos0 + n */
	struct step st = { .ids = ids ? ids : &f->last_id, .n = n, .pos0 = pos0, .blocks = blocks, .n_blocks = n_blocks,
			   .inv_freq = f->inv_freq, .rope_mscale = 1.0f, .chain = !ids && dev_chain };
	f->have_last = false;
	const int seq_len = MAX(pos0 + n, f->rope_len);
	rope_inv_freq(c, seq_len, f->inv_freq, &st.rope_mscale);
	f->kv_long = c->rope.type == ROPE_LONGROPE && seq_len > c->rope.orig_max_pos;
	if (b->set_step(be, &st)) return LM_ERR;

	bool graph = n == 1 && !f->tap && !f->eager && b->graph_begin && b->graph_end;
	/* greedy one step ahead: the lm_head and the argmax in the step's graph too, so that they follow the final
	 * norm under PDL instead of a launch after the graph (once a step outside has made their buffers: no
	 * allocation may happen in a capture). LMTERM_CHAIN=1: outside (measurement) */
	static int outside = -1; /* read once: this runs every step */
	if (outside < 0) outside = env_is("LMTERM_CHAIN", "1");
	const bool in_graph = graph && n_logits == -3 && dev_chain && f->argmax_made && !outside;
	const void *last = rows_at(f, f->h, n - 1, (size_t)c->dim);
	int rc;
	if (graph) {
		const int key = in_graph ? GRAPH_DECODE_ARGMAX : GRAPH_DECODE;
		rc = b->graph_begin(be, key);
		if (rc < 0) return LM_ERR;
		if (rc == 0 && (body(f, kv, n) || (in_graph && b->argmax_start(be, last, &f->m->lm_head)))) {
			b->graph_end(be, key);
			return LM_ERR;
		}
		if (b->graph_end(be, key)) return LM_ERR;
	} else if (body(f, kv, n)) {
		return LM_ERR;
	}

	const int vocab = f->m->lm_head.rows;
	if (n_logits > 0) /* logits of the last n_logits positions */
		return b->logits(be, logits, rows_at(f, f->h, n - n_logits, (size_t)c->dim), &f->m->lm_head, n_logits);
	if (n_logits == 0) return b->sync(be);
	if (n_logits == -2) return LM_OK; /* the caller takes f->h's last row (device sampling), no wait */
	/* greedy next token of the last position: on the device where the backend can */
	int32_t id = 0;
	if (in_graph) {
		rc = LM_OK; /* started by the graph */
	} else if (n_logits == -3 && dev_chain) {
		rc = b->argmax_start(be, last, &f->m->lm_head);
		f->argmax_made = !rc;
	} else if (b->argmax) {
		rc = b->argmax(be, &id, last, &f->m->lm_head);
	} else {
		float *tmp = malloc(sizeof(float) * (size_t)vocab);
		if (!tmp) return lm_err(_("out of memory"));
		rc = b->logits(be, tmp, last, &f->m->lm_head, 1);
		if (!rc) id = argmax_host(tmp, vocab);
		free(tmp);
	}
	if (rc) return rc;
	if (n_logits == -1) *argmax_out = id;
	if (n_logits == -3) f->pend[f->n_pend] = id; /* what fwd_take hands over without argmax_take */
	f->n_pend += n_logits == -3;
	f->last_id = id;
	f->have_last = true;
	return LM_OK;
}

int fwd_take(struct fwd *f, int32_t *id)
{
	const struct backend_i *b = f->be->i;
	if (f->n_pend <= 0) return lm_err(_("forward: no greedy id started"));
	int rc = LM_OK;
	if (b->argmax_start && b->argmax_take) {
		rc = b->argmax_take(f->be, id);
	} else {
		*id = f->pend[0];
		memmove(f->pend, f->pend + 1, sizeof f->pend[0] * (size_t)(f->n_pend - 1));
	}
	f->n_pend--;
	return rc;
}

int fwd_greedy_ahead(struct fwd *f, struct kv_cache *kv, int32_t id, int pos, bool then, const int32_t *blocks,
		     int n_blocks, bool *ahead, int32_t *next)
{
	if (!*ahead && forward(f, kv, &id, 1, pos, blocks, n_blocks, -3, NULL, NULL)) return LM_ERR;
	*ahead = then && !forward(f, kv, NULL, 1, pos + 1, blocks, n_blocks, -3, NULL, NULL);
	if (then && !*ahead) return LM_ERR;
	return fwd_take(f, next);
}

int fwd_drop(struct fwd *f)
{
	int rc = LM_OK;
	while (f->n_pend > 0) {
		int32_t unused;
		if (fwd_take(f, &unused)) rc = LM_ERR;
	}
	return rc;
}
