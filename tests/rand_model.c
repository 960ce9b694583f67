/* rand_model: write a model of a given config with random weights, as a Hugging Face directory that lmterm
 * (and transformers) load: config.json (copied), one safetensors shard per decoder layer plus one for the
 * embeddings, final norm and lm_head, model.safetensors.index.json, and the tokenizer files of --tokenizer
 * DIR (whose vocabulary must fit the config's). For speed work on real shapes without the real weights,
 * e.g. `lmterm lite auto_awq` on InternLM2.5-7B's shapes (configs/internlm2_5-7b-chat.json).
 *
 *   rand_model CONFIG.json OUTDIR [--tokenizer DIR] [--seed N] [--dtype bf16|f16|f32] [--std S] [--threads N]
 *
 * Weights: uniform with standard deviation S (default: the config's initializer_range, else 0.02), the
 * norms 1 + uniform(+-0.25) so the channels differ, biases uniform(+-S). Deterministic for a seed whatever
 * the thread count (each block of 64Ki values has its own stream). The dtype defaults to the config's
 * torch_dtype. One layer's shard is built in memory at a time. */
#include "config.h"
#include "awq_ops.h"
#include "model.h"
#include "safetensors.h"
#include "tok.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

struct fill {
	void *dst;
	enum dtype dt;
	size_t n;
	uint64_t seed;
	float centre, half; /* uniform in centre +- half */
};

enum { BLOCK = 1 << 16 };

static void fill_blocks(void *ud, int b, int e)
{
	const struct fill *f = ud;
	for (int blk = b; blk < e; blk++) {
		uint64_t s = f->seed ^ ((uint64_t)blk * 0xd1b54a32d192ed03ull);
		size_t i0 = (size_t)blk * BLOCK, i1 = MIN(f->n, i0 + BLOCK);
		for (size_t i = i0; i < i1; i++) {
			float u = (float)(splitmix64(&s) >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
			float v = f->centre + (2.0f * u - 1.0f) * f->half;
			if (f->dt == DT_F32) ((float *)f->dst)[i] = v;
			else if (f->dt == DT_BF16) ((uint16_t *)f->dst)[i] = f32_to_bf16(v);
			else ((uint16_t *)f->dst)[i] = f32_to_f16(v);
		}
	}
}

struct shard {
	struct st_out t[32];
	void *data[32];
	int n;
};

static int nth;
static uint64_t seed0;
static int tensor_no;

static int add(struct shard *sh, const char *name, enum dtype dt, int64_t d0, int64_t d1, float centre, float half)
{
	size_t n = (size_t)d0 * (d1 ? d1 : 1);
	void *p = malloc(n * dtype_size(dt));
	if (!p) { fprintf(stderr, "rand_model: out of memory for %s\n", name); return -1; }
	uint64_t s = seed0 + (uint64_t)tensor_no++ * 0x9e3779b97f4a7c15ull;
	struct fill f = { p, dt, n, splitmix64(&s), centre, half };
	lm_parallel(nth, (int)((n + BLOCK - 1) / BLOCK), fill_blocks, &f);
	struct st_out *t = &sh->t[sh->n];
	t->name = strdup(name);
	t->dt = dt;
	t->ndim = d1 ? 2 : 1;
	t->shape[0] = d0;
	t->shape[1] = d1;
	t->data = p;
	sh->data[sh->n++] = p;
	return 0;
}

static void shard_free(struct shard *sh)
{
	for (int i = 0; i < sh->n; i++) { free((void *)sh->t[i].name); free(sh->data[i]); }
	sh->n = 0;
}

static int write_shard(const char *dir, int idx, int total, struct shard *sh, cJSON *map, double *bytes)
{
	char file[64], path[4200];
	snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", idx + 1, total);
	snprintf(path, sizeof path, "%s/%s", dir, file);
	static const char *const meta[] = { "format", "pt", NULL };
	if (st_write(path, sh->t, sh->n, meta) != LM_OK) {
		fprintf(stderr, "rand_model: %s\n", lm_errmsg());
		return -1;
	}
	for (int i = 0; i < sh->n; i++) {
		cJSON_AddStringToObject(map, sh->t[i].name, file);
		*bytes += (double)dtype_size(sh->t[i].dt) * sh->t[i].shape[0] * (sh->t[i].ndim > 1 ? sh->t[i].shape[1] : 1);
	}
	shard_free(sh);
	return 0;
}

static int copy_file(const char *src, const char *dst)
{
	char *buf;
	size_t len;
	if (read_file(src, &buf, &len)) return -1;
	FILE *f = fopen(dst, "wb");
	int rc = f && fwrite(buf, 1, len, f) == len ? 0 : -1;
	if (f && fclose(f) != 0) rc = -1;
	if (rc) fprintf(stderr, "rand_model: cannot write %s: %s\n", dst, strerror(errno));
	free(buf);
	return rc;
}

int main(int argc, char **argv)
{
	const char *cfg_path = NULL, *out = NULL, *tokdir = NULL, *dtype = NULL;
	double std = -1;
	seed0 = 1;
	nth = (int)sysconf(_SC_NPROCESSORS_ONLN);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--tokenizer") && v) { tokdir = v; i++; }
		else if (!strcmp(a, "--seed") && v) { seed0 = strtoull(v, NULL, 10); i++; }
		else if (!strcmp(a, "--dtype") && v) { dtype = v; i++; }
		else if (!strcmp(a, "--std") && v) { std = atof(v); i++; }
		else if (!strcmp(a, "--threads") && v) { nth = atoi(v); i++; }
		else if (a[0] != '-' && !cfg_path) cfg_path = a;
		else if (a[0] != '-' && !out) out = a;
		else {
			fprintf(stderr, "usage: rand_model CONFIG.json OUTDIR [--tokenizer DIR] [--seed N] [--dtype bf16|f16|f32] "
					"[--std S] [--threads N]\n");
			return 2;
		}
	}
	if (!cfg_path || !out) {
		fprintf(stderr, "usage: rand_model CONFIG.json OUTDIR [--tokenizer DIR] [--seed N] [--dtype bf16|f16|f32] "
				"[--std S] [--threads N]\n");
		return 2;
	}
	if (nth < 1) nth = 1;
	struct model_config c;
	if (config_load(&c, cfg_path)) { fprintf(stderr, "rand_model: %s\n", lm_errmsg()); return 1; }
	enum dtype dt = c.dtype == DT_F32 ? DT_F32 : c.dtype == DT_F16 ? DT_F16 : DT_BF16;
	if (dtype) {
		if (!strcmp(dtype, "bf16")) dt = DT_BF16;
		else if (!strcmp(dtype, "f16")) dt = DT_F16;
		else if (!strcmp(dtype, "f32")) dt = DT_F32;
		else { fprintf(stderr, "rand_model: --dtype %s: use bf16, f16 or f32\n", dtype); return 2; }
	}
	if (std < 0) {
		char *buf;
		size_t len;
		std = 0.02;
		if (read_file(cfg_path, &buf, &len) == LM_OK) {
			cJSON *j = cJSON_Parse(buf);
			cJSON *ir = j ? cJSON_GetObjectItemCaseSensitive(j, "initializer_range") : NULL;
			if (cJSON_IsNumber(ir) && ir->valuedouble > 0) std = ir->valuedouble;
			cJSON_Delete(j);
			free(buf);
		}
	}
	const float half = (float)(std * sqrt(3.0)); /* uniform(+-half) has standard deviation std */
	if (mkdir(out, 0777) != 0 && errno != EEXIST) {
		fprintf(stderr, "rand_model: cannot create %s: %s\n", out, strerror(errno));
		return 1;
	}
	char path[4200], src[4200];
	snprintf(path, sizeof path, "%s/config.json", out);
	if (copy_file(cfg_path, path)) return 1;
	if (tokdir) {
		struct tokenizer *tok;
		if (tok_load_dir(&tok, tokdir)) { fprintf(stderr, "rand_model: %s\n", lm_errmsg()); return 1; }
		int nv = tok_vocab_size(tok);
		tok_free(tok);
		if (nv > c.vocab) {
			fprintf(stderr, "rand_model: the tokenizer of %s has %d tokens, more than the config's vocab_size %d\n",
				tokdir, nv, c.vocab);
			return 1;
		}
		static const char *files[] = { "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
					       "special_tokens_map.json", "generation_config.json" };
		for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
			snprintf(src, sizeof src, "%s/%s", tokdir, files[i]);
			snprintf(path, sizeof path, "%s/%s", out, files[i]);
			if (file_exists(src) && copy_file(src, path)) return 1;
		}
	}

	const bool intern = c.arch == ARCH_INTERNLM2;
	const int dim = c.dim, qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim, ffn = c.ffn;
	const int total = c.n_layers + 1;
	cJSON *idx = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(idx, "metadata");
	cJSON *map = cJSON_AddObjectToObject(idx, "weight_map");
	double bytes = 0, t0 = now_s();
	struct shard sh = { .n = 0 };
	char name[256];
#define ADD(fmt, d0, d1, centre, hw)                                                                                  \
	do {                                                                                                           \
		snprintf(name, sizeof name, fmt, l);                                                                   \
		if (add(&sh, name, dt, d0, d1, centre, hw)) return 1;                                                  \
	} while (0)
	for (int l = 0; l < c.n_layers; l++) {
		if (intern) {
			ADD("model.layers.%d.attention_norm.weight", dim, 0, 1.0f, 0.25f);
			ADD("model.layers.%d.attention.wqkv.weight", qd + 2 * kvd, dim, 0.0f, half);
			if (c.qkv_bias) ADD("model.layers.%d.attention.wqkv.bias", qd + 2 * kvd, 0, 0.0f, half);
			ADD("model.layers.%d.attention.wo.weight", dim, qd, 0.0f, half);
			ADD("model.layers.%d.ffn_norm.weight", dim, 0, 1.0f, 0.25f);
			ADD("model.layers.%d.feed_forward.w1.weight", ffn, dim, 0.0f, half);
			ADD("model.layers.%d.feed_forward.w3.weight", ffn, dim, 0.0f, half);
			ADD("model.layers.%d.feed_forward.w2.weight", dim, ffn, 0.0f, half);
		} else {
			ADD("model.layers.%d.input_layernorm.weight", dim, 0, 1.0f, 0.25f);
			ADD("model.layers.%d.self_attn.q_proj.weight", qd, dim, 0.0f, half);
			ADD("model.layers.%d.self_attn.k_proj.weight", kvd, dim, 0.0f, half);
			ADD("model.layers.%d.self_attn.v_proj.weight", kvd, dim, 0.0f, half);
			if (c.qkv_bias) {
				ADD("model.layers.%d.self_attn.q_proj.bias", qd, 0, 0.0f, half);
				ADD("model.layers.%d.self_attn.k_proj.bias", kvd, 0, 0.0f, half);
				ADD("model.layers.%d.self_attn.v_proj.bias", kvd, 0, 0.0f, half);
			}
			if (c.qkv_bias && c.arch == ARCH_QWEN3) ADD("model.layers.%d.self_attn.o_proj.bias", dim, 0, 0.0f, half);
			if (c.qk_norm) { /* Qwen3 */
				ADD("model.layers.%d.self_attn.q_norm.weight", c.head_dim, 0, 1.0f, 0.25f);
				ADD("model.layers.%d.self_attn.k_norm.weight", c.head_dim, 0, 1.0f, 0.25f);
			}
			ADD("model.layers.%d.self_attn.o_proj.weight", dim, qd, 0.0f, half);
			ADD("model.layers.%d.post_attention_layernorm.weight", dim, 0, 1.0f, 0.25f);
			ADD("model.layers.%d.mlp.gate_proj.weight", ffn, dim, 0.0f, half);
			ADD("model.layers.%d.mlp.up_proj.weight", ffn, dim, 0.0f, half);
			ADD("model.layers.%d.mlp.down_proj.weight", dim, ffn, 0.0f, half);
		}
		if (write_shard(out, l, total, &sh, map, &bytes)) return 1;
	}
	int l = 0;
	ADD(intern ? "model.tok_embeddings.weight%.0d" : "model.embed_tokens.weight%.0d", c.vocab, dim, 0.0f, half);
	ADD("model.norm.weight%.0d", dim, 0, 1.0f, 0.25f);
	if (!c.tie_embed) ADD(intern ? "output.weight%.0d" : "lm_head.weight%.0d", c.vocab, dim, 0.0f, half);
#undef ADD
	if (write_shard(out, c.n_layers, total, &sh, map, &bytes)) return 1;
	cJSON_AddNumberToObject(meta, "total_size", bytes);
	char *s = cJSON_Print(idx);
	snprintf(path, sizeof path, "%s/model.safetensors.index.json", out);
	FILE *f = fopen(path, "w");
	if (!f || fputs(s, f) < 0 || fclose(f) != 0) {
		fprintf(stderr, "rand_model: cannot write %s: %s\n", path, strerror(errno));
		return 1;
	}
	free(s);
	cJSON_Delete(idx);
	fprintf(stderr, "rand_model: wrote %s: %d layers, %.2f GB of %s in %.1f s\n", out, c.n_layers, bytes / 1e9,
		dtype_name(dt), now_s() - t0);
	return 0;
}
