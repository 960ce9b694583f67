/* kvmgr.c: KV cache capacity and block tables; see kvmgr.h. */
#include "config.h"
#include "kvmgr.h"
#include "i18n.h"

#include <stdlib.h>

#define MiB (1024.0 * 1024.0)

size_t kv_formula_bytes_per_token(int n_layers, int n_kv_heads, int head_dim, int policy, size_t elem_size)
{
	size_t per_head;
	switch (policy) {
	case KV_POLICY_INT8: per_head = (size_t)head_dim + 2 * 2; break;
	case KV_POLICY_INT4: per_head = (size_t)head_dim / 2 + 2 * 2; break;
	default: per_head = (size_t)head_dim * elem_size; break;
	}
	return 2 * (size_t)n_layers * n_kv_heads * per_head;
}

static void kv_shape(struct kv_cache *kv, const struct model_config *c, int policy, int block_len, int n_blocks)
{
	memset(kv, 0, sizeof *kv);
	kv->n_layers = c->n_layers;
	kv->n_kv_heads = c->n_kv_heads;
	kv->head_dim = c->head_dim;
	kv->block_len = block_len;
	kv->n_blocks = n_blocks;
	kv->policy = policy;
}

int kvmgr_plan(struct backend *be, const struct model_config *c, const struct kv_capacity *cap, int policy,
	       int block_len, int max_tokens, struct kv_plan *out)
{
	memset(out, 0, sizeof *out);
	if (block_len <= 0) return lm_err(_("--cache-block-seq-len: %d is not a positive block length"), block_len);
	out->policy = policy;
	out->block_len = block_len;
	struct kv_cache kv;
	kv_shape(&kv, c, policy, block_len, 1);
	out->bytes_per_token = be->i->kv_bytes_per_token ? be->i->kv_bytes_per_token(be, &kv)
							 : kv_formula_bytes_per_token(c->n_layers, c->n_kv_heads, c->head_dim, policy,
										      dtype_size(c->dtype));
	if (out->bytes_per_token == 0) return lm_err(_("KV cache: the backend stores no bytes per token"));
	size_t block_bytes = out->bytes_per_token * block_len;

	struct mem_stats ms;
	memset(&ms, 0, sizeof ms);
	if (be->i->mem_stats && be->i->mem_stats(be, &ms) == LM_OK && ms.free_valid) {
		out->free_bytes = ms.free;
		out->free_valid = true;
	}
	long long n_blocks;
	switch (cap->kind) {
	case KVCAP_FRACTION:
		if (!out->free_valid)
			return lm_err(_("--cache-max-entry-count %g: free memory cannot be read on this backend; give a size "
					"(e.g. 2GiB) or a token count (e.g. 8192tok)"), cap->fraction);
		out->budget = (size_t)(cap->fraction * (double)out->free_bytes);
		n_blocks = (long long)(out->budget / block_bytes);
		if (max_tokens > 0 && n_blocks > (max_tokens + block_len - 1) / block_len)
			n_blocks = (max_tokens + block_len - 1) / block_len;
		break;
	case KVCAP_BYTES:
		out->budget = cap->bytes;
		n_blocks = (long long)(out->budget / block_bytes);
		break;
	default:
		n_blocks = (long long)((cap->tokens + block_len - 1) / block_len);
		out->budget = (size_t)n_blocks * block_bytes;
		break;
	}
	if (n_blocks < 1)
		return lm_err(P_("--cache-max-entry-count: %.1f MiB of KV cache holds no block of %d token "
				 "(%zu bytes per token, %.2f MiB per block)",
				 "--cache-max-entry-count: %.1f MiB of KV cache holds no block of %d tokens "
				 "(%zu bytes per token, %.2f MiB per block)",
				 block_len),
			      out->budget / MiB, block_len, out->bytes_per_token, block_bytes / MiB);
	if (n_blocks > INT32_MAX / block_len) n_blocks = INT32_MAX / block_len;
	out->n_blocks = (int)n_blocks;
	out->capacity_tokens = out->n_blocks * block_len;
	out->bytes = (size_t)out->n_blocks * block_bytes;
	if (cap->kind != KVCAP_FRACTION && out->free_valid && out->bytes > out->free_bytes)
		return lm_err(_("--cache-max-entry-count: a KV cache of %.1f MiB (%d tokens) does not fit in the %.1f MiB "
				"of %s memory free"),
			      out->bytes / MiB, out->capacity_tokens, out->free_bytes / MiB, ms.is_host ? "host" : "device");
	return LM_OK;
}

int kvmgr_alloc(struct kvmgr *m, struct backend *be, const struct model_config *c, const struct kv_plan *p)
{
	memset(m, 0, sizeof *m);
	m->be = be;
	kv_shape(&m->kv, c, p->policy, p->block_len, p->n_blocks);
	m->free_blocks = malloc(sizeof *m->free_blocks * p->n_blocks);
	if (!m->free_blocks) return lm_err(_("KV cache: out of memory for a table of %d blocks"), p->n_blocks);
	if (be->i->kv_alloc(be, &m->kv) != LM_OK) {
		free(m->free_blocks);
		m->free_blocks = NULL;
		return lm_err_prefix(_("KV cache (%d tokens, %.1f MiB): "), p->capacity_tokens, p->bytes / MiB);
	}
	/* a stack handing out low indices first keeps a sequence's blocks in order (nicer to debug) */
	for (int i = 0; i < p->n_blocks; i++) m->free_blocks[i] = p->n_blocks - 1 - i;
	m->n_free = p->n_blocks;
	m->allocated = true;
	return LM_OK;
}

void kvmgr_free(struct kvmgr *m)
{
	if (m->allocated) m->be->i->kv_free(m->be, &m->kv);
	free(m->free_blocks);
	m->free_blocks = NULL;
	m->allocated = false;
	m->n_free = 0;
}

int kvmgr_seq_fit(struct kvmgr *m, struct kv_seq *s, int n_tokens)
{
	int need = (n_tokens + m->kv.block_len - 1) / m->kv.block_len;
	if (need <= s->n_blocks) return LM_OK;
	if (need - s->n_blocks > m->n_free)
		return lm_err(_("KV cache full: %d tokens need %d blocks of %d, the cache has %d"), n_tokens, need,
			      m->kv.block_len, m->kv.n_blocks);
	if (need > s->cap) {
		int32_t *b = realloc(s->blocks, sizeof *b * need);
		if (!b) return lm_err(_("KV cache: out of memory for a block table"));
		s->blocks = b;
		s->cap = need;
	}
	while (s->n_blocks < need) s->blocks[s->n_blocks++] = m->free_blocks[--m->n_free];
	return LM_OK;
}

void kvmgr_seq_trim(struct kvmgr *m, struct kv_seq *s, int n_tokens)
{
	int keep = (n_tokens + m->kv.block_len - 1) / m->kv.block_len;
	while (s->n_blocks > keep) m->free_blocks[m->n_free++] = s->blocks[--s->n_blocks];
}

void kvmgr_seq_free(struct kvmgr *m, struct kv_seq *s)
{
	if (m && m->free_blocks) kvmgr_seq_trim(m, s, 0);
	free(s->blocks);
	memset(s, 0, sizeof *s);
}

size_t kvmgr_used_bytes(const struct kvmgr *m, const struct kv_seq *s)
{
	return (size_t)s->n_blocks * m->kv.block_len * m->kv.bytes_per_token;
}
