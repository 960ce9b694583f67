/* KV cache manager against a fake backend (known free memory, bytes per token by the formula): capacity from
 * a fraction of free memory, from bytes and from tokens; the fractional cap at the session length; the error
 * with numbers when no block fits; block tables that grow, trim and return blocks. */
#include "config.h"
#include "kvmgr.h"

#include <stdio.h>
#include <stdlib.h>

static int fails;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); fails++; } } while (0)

static size_t fake_free = 1000u << 20;

static int fake_mem_stats(struct backend *be, struct mem_stats *o)
{
	memset(o, 0, sizeof *o);
	o->free = fake_free;
	o->free_valid = true;
	o->is_host = true;
	return LM_OK;
}
static size_t fake_bpt(struct backend *be, const struct kv_cache *kv)
{
	return kv_formula_bytes_per_token(kv->n_layers, kv->n_kv_heads, kv->head_dim, kv->policy, 2);
}
static int fake_kv_alloc(struct backend *be, struct kv_cache *kv)
{
	kv->bytes_per_token = fake_bpt(be, kv);
	kv->bytes = kv->bytes_per_token * kv->block_len * kv->n_blocks;
	kv->pool = malloc(1);
	return LM_OK;
}
static void fake_kv_free(struct backend *be, struct kv_cache *kv) { free(kv->pool); kv->pool = NULL; }

static const struct backend_i fake_i = {
	.name = "fake", .mem_stats = fake_mem_stats, .kv_bytes_per_token = fake_bpt,
	.kv_alloc = fake_kv_alloc, .kv_free = fake_kv_free,
};

int main(void)
{
	struct backend be = { .i = &fake_i };
	struct model_config c = { .n_layers = 6, .n_kv_heads = 2, .head_dim = 64, .dtype = DT_BF16 };
	/* formula: 2 x 6 x 2 x (64 x 2) = 3072; int8 2 x 6 x 2 x (64 + 4) = 1632; int4 2 x 6 x 2 x (32 + 4) = 864 */
	CHECK(kv_formula_bytes_per_token(6, 2, 64, 0, 2) == 3072, "policy 0 formula");
	CHECK(kv_formula_bytes_per_token(6, 2, 64, 8, 2) == 1632, "policy 8 formula");
	CHECK(kv_formula_bytes_per_token(6, 2, 64, 4, 2) == 864, "policy 4 formula");

	struct kv_plan p;
	struct kv_capacity cap = { .kind = KVCAP_FRACTION, .fraction = 0.5 };
	CHECK(kvmgr_plan(&be, &c, &cap, 0, 64, 0, &p) == LM_OK, "%s", lm_errmsg());
	size_t want_blocks = (size_t)(0.5 * fake_free) / (3072 * 64);
	CHECK(p.n_blocks == (int)want_blocks && p.capacity_tokens == p.n_blocks * 64 && p.bytes <= 0.5 * fake_free,
	      "fraction 0.5 of %zu: %d blocks, want %zu", fake_free, p.n_blocks, want_blocks);
	printf("fraction 0.5 of 1000 MiB, policy 0: %d blocks, %d tokens, %zu bytes\n", p.n_blocks, p.capacity_tokens,
	       p.bytes);
	CHECK(kvmgr_plan(&be, &c, &cap, 0, 64, 2048, &p) == LM_OK && p.capacity_tokens == 2048,
	      "capped at the session length: %d tokens", p.capacity_tokens);
	CHECK(kvmgr_plan(&be, &c, &cap, 4, 64, 0, &p) == LM_OK && p.bytes_per_token == 864, "int4 plan");

	cap = (struct kv_capacity){ .kind = KVCAP_TOKENS, .tokens = 1000 };
	CHECK(kvmgr_plan(&be, &c, &cap, 8, 64, 0, &p) == LM_OK && p.n_blocks == 16 && p.capacity_tokens == 1024,
	      "1000tok: %d blocks", p.n_blocks);
	cap = (struct kv_capacity){ .kind = KVCAP_BYTES, .bytes = 1u << 20 };
	CHECK(kvmgr_plan(&be, &c, &cap, 0, 64, 0, &p) == LM_OK && p.n_blocks == (1 << 20) / (3072 * 64),
	      "1MiB: %d blocks", p.n_blocks);
	cap = (struct kv_capacity){ .kind = KVCAP_BYTES, .bytes = 1000 };
	CHECK(kvmgr_plan(&be, &c, &cap, 0, 64, 0, &p) == LM_ERR && strstr(lm_errmsg(), "3072"),
	      "too small: '%s'", lm_errmsg());
	cap = (struct kv_capacity){ .kind = KVCAP_BYTES, .bytes = 2000ull << 20 };
	CHECK(kvmgr_plan(&be, &c, &cap, 0, 64, 0, &p) == LM_ERR && strstr(lm_errmsg(), "free"),
	      "more than free: '%s'", lm_errmsg());

	/* block tables */
	cap = (struct kv_capacity){ .kind = KVCAP_TOKENS, .tokens = 256 };
	kvmgr_plan(&be, &c, &cap, 0, 64, 0, &p);
	struct kvmgr m;
	CHECK(kvmgr_alloc(&m, &be, &c, &p) == LM_OK && m.n_free == 4, "alloc 4 blocks");
	struct kv_seq s = { 0 }, s2 = { 0 };
	CHECK(kvmgr_seq_fit(&m, &s, 1) == LM_OK && s.n_blocks == 1 && s.blocks[0] == 0, "1 token, 1 block");
	CHECK(kvmgr_seq_fit(&m, &s, 129) == LM_OK && s.n_blocks == 3 && m.n_free == 1, "129 tokens, 3 blocks");
	CHECK(kvmgr_seq_fit(&m, &s2, 65) == LM_ERR && strstr(lm_errmsg(), "full"), "second sequence overflows");
	CHECK(kvmgr_used_bytes(&m, &s) == 3 * 64 * 3072, "used bytes");
	kvmgr_seq_trim(&m, &s, 64);
	CHECK(s.n_blocks == 1 && m.n_free == 3, "trim to 64 tokens: %d blocks, %d free", s.n_blocks, m.n_free);
	CHECK(kvmgr_seq_fit(&m, &s2, 192) == LM_OK && s2.n_blocks == 3 && m.n_free == 0, "second sequence fits now");
	for (int i = 0; i < s2.n_blocks; i++) CHECK(s2.blocks[i] != s.blocks[0], "block %d handed out twice", s.blocks[0]);
	kvmgr_seq_free(&m, &s);
	kvmgr_seq_free(&m, &s2);
	CHECK(m.n_free == 4, "all blocks back: %d", m.n_free);
	kvmgr_free(&m);
	if (fails) return 1;
	printf("kvmgr: all checks passed\n");
	return 0;
}
