/* lmterm generate MODEL (-p TEXT | --ids "1 2 3") [-n N] [--greedy] [--print-ids] [--dump-logits FILE]
 *                 [--backend auto|cuda|cpu] [--quant-policy 0|4|8] [--seed S] [--temperature T]
 *
 * Continues a prompt: the prompt runs through the model in chunks of up to PREFILL_CHUNK tokens, then one
 * token at a time until -n tokens or an end-of-sequence id (which is printed with --print-ids, as the
 * goldens hold it). Text prompts are encoded as transformers' tokenizer(text) would: special tokens in the
 * text are matched, and BOS is prepended where tokenizer_config.json says add_bos_token (absent: for the
 * Llama family, whose tokenizers add it by default). */
#include "config.h"
#include "backend.h"
#include "cmds.h"
#include "common.h"
#include "forward.h"
#include "i18n.h"
#include "model.h"
#include "opts.h"
#include "safetensors.h"
#include "sampler.h"
#include "tok.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define PREFILL_CHUNK 512

struct gen_opts {
	const char *model, *prompt, *ids, *dump, *backend;
	int n, policy;
	bool greedy, print_ids;
	uint64_t seed;
	bool seed_given;
	double temperature; /* < 0: not given */
	struct engine_extra x; /* --dtype, --rope-scaling-factor, --eager-mode, ... */
};

static void usage(FILE *f)
{
	fprintf(f, _("Usage: lmterm generate MODEL (-p TEXT | --ids \"1 2 3\") [-n N] [--greedy] [--print-ids]\n"
		     "                       [--dump-logits FILE] [--backend auto|cuda|cpu] [--quant-policy 0|4|8]\n"
		     "                       [--seed S] [--temperature T] [--dtype auto|float16|bfloat16]\n"
		     "                       [--rope-scaling-factor F] [--eager-mode]\n"));
}

/* 2 for usage errors: print the message and the usage */
static int usage_err(void)
{
	fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
	usage(stderr);
	return 2;
}

static int parse(struct gen_opts *o, int argc, char **argv)
{
	memset(o, 0, sizeof *o);
	o->n = 64;
	o->backend = "auto";
	o->temperature = -1; /* not given */
	struct opt_iter it;
	opt_iter_init(&it, argc, argv);
	while (opt_next(&it)) {
		const char *v = NULL, *nm = it.name;
		if (!nm) {
			if (o->model) return lm_err(_("generate: more than one model given ('%s' and '%s')"), o->model, it.arg);
			o->model = it.arg;
		} else if (strcmp(nm, "help") == 0 || strcmp(nm, "h") == 0) {
			return 1;
		} else if (strcmp(nm, "greedy") == 0 || strcmp(nm, "print-ids") == 0) {
			if (it.value) return lm_err(_("option '--%s' takes no value"), nm);
			if (nm[0] == 'g') o->greedy = true;
			else o->print_ids = true;
		} else if (strcmp(nm, "p") == 0 || strcmp(nm, "prompt") == 0) {
			if (opt_value(&it, &o->prompt)) return LM_ERR;
		} else if (strcmp(nm, "ids") == 0) {
			if (opt_value(&it, &o->ids)) return LM_ERR;
		} else if (strcmp(nm, "n") == 0) {
			if (opt_value(&it, &v) || opt_int("-n", v, 0, 1000000, &o->n)) return LM_ERR;
		} else if (strcmp(nm, "dump-logits") == 0) {
			if (opt_value(&it, &o->dump)) return LM_ERR;
		} else if (strcmp(nm, "backend") == 0) {
			if (opt_value(&it, &o->backend) || opt_backend(&o->backend)) return LM_ERR;
		} else if (strcmp(nm, "quant-policy") == 0) {
			if (opt_value(&it, &v) || opt_quant_policy("--quant-policy", v, &o->policy)) return LM_ERR;
		} else if (strcmp(nm, "seed") == 0) {
			if (opt_value(&it, &v) || opt_u64("--seed", v, &o->seed)) return LM_ERR;
			o->seed_given = true;
		} else if (strcmp(nm, "temperature") == 0) {
			if (opt_value(&it, &v) || opt_float("--temperature", v, 0, 100, &o->temperature)) return LM_ERR;
		} else {
			int r = opt_engine_extra(&it, &o->x);
			if (r < 0) return LM_ERR;
			if (r == 0) return lm_err(_("generate: unknown option '%s'"), it.arg);
		}
	}
	if (!o->model) return lm_err(_("generate: no MODEL given"));
	if (!o->prompt == !o->ids) return lm_err(_("generate: give exactly one of -p TEXT and --ids \"1 2 3\""));
	if (o->greedy && o->temperature > 0) /* greedy won silently */
		return lm_err(_("generate: --greedy and --temperature %g contradict each other (greedy is temperature 0)"),
			      o->temperature);
	return LM_OK;
}

/* --ids "1 2 3" (spaces or commas), each id in [0, vocab) */
static int parse_ids(const char *s, int vocab, int32_t **out, int *n)
{
	int cap = 16, k = 0;
	int32_t *ids = malloc(sizeof(int32_t) * cap);
	if (!ids) return lm_err(_("out of memory"));
	for (const char *p = s;;) {
		while (*p == ' ' || *p == '\t' || *p == ',' || *p == '\n') p++;
		if (!*p) break;
		char *end;
		errno = 0;
		long v = strtol(p, &end, 10);
		if (end == p || errno || (*end && *end != ' ' && *end != '\t' && *end != ',' && *end != '\n')) {
			free(ids);
			return lm_err(_("--ids: '%s' is not a list of token ids (such as \"1 2 3\")"), s);
		}
		if (v < 0 || v >= vocab) {
			free(ids);
			return lm_err(_("--ids: token id %ld is outside the vocabulary (0..%d)"), v, vocab - 1);
		}
		if (k == cap) {
			int32_t *t = realloc(ids, sizeof(int32_t) * (cap *= 2));
			if (!t) {
				free(ids);
				return lm_err(_("out of memory"));
			}
			ids = t;
		}
		ids[k++] = (int32_t)v;
		p = end;
	}
	if (!k) {
		free(ids);
		return lm_err(_("--ids: no token ids given"));
	}
	*out = ids;
	*n = k;
	return LM_OK;
}

/* Whether encoding a text prompt prepends BOS: tokenizer_config.json's add_bos_token where it is set;
 * absent, the Llama family's tokenizers add it (LlamaTokenizer's default) and Qwen2's (Qwen3's too) do not, nor do
 * Phi-3's (its LlamaTokenizer says add_bos_token false) and Phi-4's (GPT2Tokenizer). */
static int want_bos(const char *dir, const struct model_config *c, bool *add)
{
	char path[4200];
	path_join(path, sizeof path, dir, "tokenizer_config.json");
	char *buf;
	size_t len;
	*add = c->arch != ARCH_QWEN2 && c->arch != ARCH_QWEN3 && c->arch != ARCH_PHI3;
	if (!file_exists(path)) return LM_OK;
	if (read_file(path, &buf, &len)) return LM_ERR;
	cJSON *j = cJSON_ParseWithLength(buf, len);
	free(buf);
	if (!cJSON_IsObject(j)) { /* the default was taken without a word, as transformers would not */
		cJSON_Delete(j);
		return lm_err(_("%s: not a valid JSON object"), path);
	}
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "add_bos_token");
	if (cJSON_IsBool(v)) *add = cJSON_IsTrue(v);
	cJSON_Delete(j);
	return LM_OK;
}

static int32_t argmax_f(const float *v, int n)
{
	int32_t b = 0;
	for (int i = 1; i < n; i++)
		if (v[i] > v[b]) b = i;
	return b;
}

static bool is_eos(const struct model_config *c, int32_t id)
{
	for (int i = 0; i < c->n_eos; i++)
		if (c->eos_ids[i] == id) return true;
	return false;
}

struct run {
	struct gen_opts o;
	struct model_config cfg;
	struct backend *be;
	struct model m;
	bool model_loaded;
	struct tokenizer *tok;
	int32_t *ids;       /* prompt, then the continuation: [T + n] */
	int T;
	struct kv_cache kv;
	int32_t *blocks;
	struct fwd fw;
	bool fw_ready;
	float *logits;      /* [T][vocab] with --dump-logits, else [vocab] */
	struct sampler *sampler; /* NULL: greedy */
};

static void run_free(struct run *r)
{
	if (r->fw_ready) fwd_free(&r->fw);
	if (r->kv.pool) r->be->i->kv_free(r->be, &r->kv);
	if (r->model_loaded) model_free(&r->m);
	if (r->be) backend_destroy(r->be);
	if (r->tok) tok_free(r->tok);
	if (r->sampler) sampler_free(r->sampler);
	free(r->ids);
	free(r->blocks);
	free(r->logits);
}

static int prepare_prompt(struct run *r)
{
	struct gen_opts *o = &r->o;
	int32_t *p = NULL;
	int n = 0;
	if (o->ids) {
		if (parse_ids(o->ids, r->cfg.vocab, &p, &n)) return LM_ERR;
	} else {
		int32_t *enc;
		int ne;
		if (tok_encode(r->tok, o->prompt, strlen(o->prompt), true, &enc, &ne)) return LM_ERR;
		int bos = r->cfg.bos_id >= 0 ? r->cfg.bos_id : tok_bos_id(r->tok);
		bool add = false;
		if (bos >= 0 && want_bos(o->model, &r->cfg, &add)) {
			free(enc);
			return LM_ERR;
		}
		if (add && bos >= r->cfg.vocab) { /* not the tokenizer's doing, as the message below would say */
			free(enc);
			return lm_err(_("%s: BOS token id %d is outside the model's vocabulary (%d)"), o->model, bos,
				      r->cfg.vocab);
		}
		p = malloc(sizeof(int32_t) * (size_t)(ne + 1));
		if (!p) {
			free(enc);
			return lm_err(_("out of memory"));
		}
		if (add) p[n++] = bos;
		memcpy(p + n, enc, sizeof(int32_t) * (size_t)ne);
		n += ne;
		free(enc);
		if (!n) {
			free(p);
			return lm_err(_("-p: the prompt is empty"));
		}
		for (int i = 0; i < n; i++)
			if (p[i] < 0 || p[i] >= r->cfg.vocab) {
				lm_err(_("-p: the tokenizer gave id %d, outside the model's vocabulary (%d)"), p[i], r->cfg.vocab);
				free(p);
				return LM_ERR;
			}
	}
	r->ids = realloc(p, sizeof(int32_t) * ((size_t)n + o->n + 1));
	if (!r->ids) {
		free(p);
		return lm_err(_("out of memory"));
	}
	r->T = n;
	return LM_OK;
}

/* the next token from logits[vocab] of the last position; ids[0..n_ctx) is the context so far */
static int32_t pick(struct run *r, float *logits, int n_ctx)
{
	if (!r->sampler) return argmax_f(logits, r->cfg.vocab);
	return sampler_sample(r->sampler, logits, r->ids, n_ctx);
}

static int generate(struct run *r)
{
	struct gen_opts *o = &r->o;
	char path[4200];
	if (check_model_dir(o->model)) return LM_ERR;
	path_join(path, sizeof path, o->model, "config.json");
	if (config_load(&r->cfg, path)) return LM_ERR;
	if (backend_create(&r->be, o->backend, o->x.dtype ? (enum dtype)o->x.dtype : r->cfg.dtype)) return LM_ERR;
	if (*backend_fallback_note()) fprintf(stderr, _("lmterm: note: %s\n"), backend_fallback_note());
	/* the tokenizer: for a text prompt, and to print text */
	if (o->prompt || !o->print_ids)
		if (tok_load_dir(&r->tok, o->model)) return LM_ERR;
	if (prepare_prompt(r)) return LM_ERR;
	if (model_load(&r->m, o->model, r->be, FMT_AUTO, NULL, NULL)) return LM_ERR;
	r->model_loaded = true;
	if (o->x.rope_scaling_factor > 0) config_rope_dynamic(&r->m.cfg, o->x.rope_scaling_factor);

	const int T = r->T, V = r->cfg.vocab;
	note_sliding_window(&r->cfg, T + o->n);
	/* KV cache: blocks of 64 tokens for the prompt and the continuation */
	r->kv = (struct kv_cache){ .n_layers = r->cfg.n_layers, .n_kv_heads = r->cfg.n_kv_heads,
				   .head_dim = r->cfg.head_dim, .block_len = 64, .policy = o->policy };
	r->kv.n_blocks = (T + o->n + r->kv.block_len - 1) / r->kv.block_len;
	r->blocks = malloc(sizeof(int32_t) * r->kv.n_blocks);
	if (!r->blocks) return lm_err(_("out of memory"));
	for (int b = 0; b < r->kv.n_blocks; b++) r->blocks[b] = b;
	if (r->be->i->kv_alloc(r->be, &r->kv)) return LM_ERR;
	if (fwd_init(&r->fw, &r->m, MIN(T, PREFILL_CHUNK))) return LM_ERR;
	r->fw_ready = true;
	r->fw.eager = o->x.eager;
	r->logits = malloc(sizeof(float) * V * (size_t)(o->dump ? T : 1));
	if (!r->logits) return lm_err(_("out of memory allocating logits"));

	/* Sampling: generation_config.json's settings, then the command line's; --greedy or temperature 0 is
	 * greedy (the argmax, on the device where the backend can). */
	struct sampling sp = { .temperature = 1, .top_p = 1, .top_k = 0, .min_p = 0, .repetition_penalty = 1 };
	char warn[1024];
	if (sampling_from_generation_config(&sp, o->model, warn, sizeof warn)) return LM_ERR;
	if (o->temperature >= 0) sp.temperature = (float)o->temperature;
	if (warn[0] && !o->greedy && sp.temperature > 0) fprintf(stderr, _("lmterm: %s\n"), warn); /* greedy reads none */
	sp.seed = o->seed_given ? o->seed : seed_from_clock(); /* time(NULL) repeated a sample within a second */
	if (!o->greedy && sp.temperature > 0 && sampler_init(&r->sampler, V, &sp)) return LM_ERR;

	/* sampling on the device where the backend can: the logits stay there, the token comes back */
	const bool dev = r->sampler && sampler_on_device(r->be);
	const size_t row = (size_t)r->cfg.dim * r->be->act_size;

	/* prefill in chunks (RoPE for the whole prompt, as one call computes it); logits of every prompt position
	 * with --dump-logits, else of the last one */
	int32_t next = -1;
	int n_last = 1;
	r->fw.rope_len = T;
	for (int p0 = 0; p0 < T; p0 += PREFILL_CHUNK) {
		int n = MIN(PREFILL_CHUNK, T - p0);
		bool last = p0 + n == T;
		float *lg = o->dump ? r->logits + (size_t)p0 * V : r->logits;
		int nl = o->dump ? n : last ? (dev ? -2 : 1) : 0;
		if (forward(&r->fw, &r->kv, r->ids + p0, n, p0, r->blocks, r->kv.n_blocks, nl, lg, NULL)) return LM_ERR;
		n_last = n;
	}
	r->fw.rope_len = 0;
	if (o->dump) {
		struct st_out t = { .name = "logits", .dt = DT_F32, .ndim = 2, .shape = { T, V }, .data = r->logits };
		if (st_write(o->dump, &t, 1, NULL)) return LM_ERR;
	}
	if (o->n > 0) {
		if (dev && !o->dump) {
			if (sampler_sample_device(r->sampler, r->be, (const char *)r->fw.h + (size_t)(n_last - 1) * row,
						  &r->m.lm_head, r->ids, T, &next))
				return LM_ERR;
		} else {
			next = pick(r, o->dump ? r->logits + (size_t)(T - 1) * V : r->logits, T);
		}
	}

	/* decode: emit next, stop at -n tokens or an end-of-sequence id, else run it through the model */
	struct tok_stream ts;
	if (r->tok) tok_stream_init(&ts, r->tok, true);
	char buf[1024]; /* one token's text; longer pieces are cut by tok_stream_next */
	/* greedy: one step ahead of the host. Step j + 1, fed step j's id on the device, is enqueued before that id
	 * is taken, so the GPU never waits for the host's round trip; if the id is an end of sequence, the step
	 * after it was for nothing (it wrote the cache one position past the end). Not with LongRoPE, whose
	 * switch of factors may feed the cache again between two steps. LMTERM_CHAIN=0: one step at a time */
	const bool chain = !r->sampler && r->cfg.rope.type != ROPE_LONGROPE && !env_is("LMTERM_CHAIN", "0");
	bool ahead = false; /* step j, fed next at T + j, is already enqueued */
	for (int j = 0; j < o->n; j++) {
		r->ids[T + j] = next;
		if (o->print_ids) {
			printf(j ? " %d" : "%d", next);
		} else {
			int k = tok_stream_next(&ts, next, buf, sizeof buf);
			fwrite(buf, 1, (size_t)k, stdout);
		}
		/* a reader that has gone (SIGPIPE ignored) or a full disk: stop now, not after -n tokens */
		if (fflush(stdout) != 0) return lm_err(_("writing the output: %s"), strerror(errno));
		if (is_eos(&r->cfg, next) || j + 1 == o->n) break;
		if (chain) { /* the step after this id's, unless this id is the last one wanted */
			if (fwd_greedy_ahead(&r->fw, &r->kv, next, T + j, j + 2 < o->n, r->blocks, r->kv.n_blocks, &ahead,
					     &next))
				return LM_ERR;
			continue;
		}
		/* LongRoPE's switch to the long factors: the cached positions again first, rotated as the new one
		 * (fwd_rope_refeed reads rope_len, 0 here) */
		const int again = fwd_rope_refeed(&r->fw, T + j, 1);
		r->fw.rope_len = again ? T + j + 1 : 0;
		if (fwd_feed_again(&r->fw, &r->kv, r->ids, again, r->fw.max_tokens, r->blocks, r->kv.n_blocks))
			return LM_ERR;
		r->fw.rope_len = 0;
		if (dev) {
			if (forward(&r->fw, &r->kv, &r->ids[T + j], 1, T + j, r->blocks, r->kv.n_blocks, -2, NULL, NULL) ||
			    sampler_sample_device(r->sampler, r->be, r->fw.h, &r->m.lm_head, r->ids, T + j + 1, &next))
				return LM_ERR;
		} else if (r->sampler) {
			if (forward(&r->fw, &r->kv, &r->ids[T + j], 1, T + j, r->blocks, r->kv.n_blocks, 1, r->logits, NULL))
				return LM_ERR;
			next = pick(r, r->logits, T + j + 1);
		} else if (forward(&r->fw, &r->kv, &r->ids[T + j], 1, T + j, r->blocks, r->kv.n_blocks, -1, NULL, &next)) {
			return LM_ERR;
		}
	}
	if (fwd_drop(&r->fw)) return LM_ERR; /* the step after an end of sequence */
	if (!o->print_ids && r->tok) {
		int k = tok_stream_flush(&ts, buf, sizeof buf);
		fwrite(buf, 1, (size_t)k, stdout);
	}
	if (o->n > 0) printf("\n");
	return fflush(stdout) == 0 ? LM_OK : lm_err(_("writing the output: %s"), strerror(errno));
}

int cmd_generate(int argc, char **argv)
{
	struct run r;
	memset(&r, 0, sizeof r);
	int rc = parse(&r.o, argc, argv);
	if (rc == 1) {
		usage(stdout);
		return 0;
	}
	if (rc) return usage_err();
	rc = generate(&r);
	if (rc) fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
	run_free(&r);
	return rc ? 1 : 0;
}
