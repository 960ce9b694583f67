/* cmd_ppl.c: `lmterm ppl MODEL --file F [--ctx N] [--quant-policy P] [--backend B] [--max-chars N]`.
 *
 * Protocol (the chat engine issue's, which the goldens follow): tokens = encode(text) without BOS; consecutive
 * non-overlapping windows of ctx-1 text tokens, each preceded by BOS; every next-token prediction inside a
 * window counts (so each text token is predicted once); the last, partial window counts too;
 * ppl = exp(mean negative log-likelihood). The KV cache is the engine's paged cache with the chosen policy,
 * so this also measures what int8/int4 KV does to quality. */
#include "config.h"
#include "cmds.h"
#include "forward.h"
#include "i18n.h"
#include "kvmgr.h"
#include "opts.h"
#include "tok.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CHUNK 512

static void ppl_usage(FILE *f)
{
	fprintf(f, _("Usage: lmterm ppl MODEL --file TEXT [--ctx N] [--quant-policy 0|4|8] [--backend auto|cuda|cpu]\n"
		     "         [--max-chars N] [--tokenizer tokenizer.json|tokenizer.model|DIR]\n"
		     "         [--dtype auto|float16|bfloat16] [--rope-scaling-factor F] [--eager-mode]\n"
		     "Perplexity of the text: windows of N-1 tokens (default 2048), each after BOS; ends with a line\n"
		     "'perplexity: P (T tokens)'.\n"));
}

/* bytes of the first n code points of s[0..len) */
static size_t utf8_prefix(const char *s, size_t len, long n)
{
	size_t i = 0;
	for (long k = 0; k < n && i < len; k++) {
		i++;
		while (i < len && ((unsigned char)s[i] & 0xc0) == 0x80) i++;
	}
	return i;
}

static int ppl_run(const char *model_dir, const char *file, int ctx, int policy, const char *backend, long max_chars,
		   const char *tok_file, const struct engine_extra *x)
{
	int rc = 1;
	struct backend *be = NULL;
	struct model m;
	bool m_ok = false, f_ok = false;
	struct tokenizer *tok = NULL;
	struct fwd f;
	struct kvmgr kv = { 0 };
	struct kv_seq seq = { 0 };
	char *text = NULL;
	int32_t *ids = NULL, *win = NULL;
	float *logits = NULL;
	int n_ids = 0;

	size_t len;
	if (read_file(file, &text, &len) != LM_OK) goto fail;
	if (max_chars > 0) len = utf8_prefix(text, len, max_chars);

	char path[4200];
	struct model_config cfg;
	if (check_model_dir(model_dir) != LM_OK) goto fail;
	path_join(path, sizeof path, model_dir, "config.json");
	if (config_load(&cfg, path) != LM_OK) goto fail;
	if (backend_create(&be, backend, x->dtype ? (enum dtype)x->dtype : cfg.dtype) != LM_OK) goto fail;
	if (*backend_fallback_note()) fprintf(stderr, _("lmterm: note: %s\n"), backend_fallback_note());
	/* the text is encoded before the weights are read, so that a wrong tokenizer costs seconds */
	if ((tok_file ? tok_load(&tok, tok_file) : tok_load_dir(&tok, model_dir)) != LM_OK) goto fail;
	/* encode as the tokenizer library does by default (added tokens written in the text are matched) */
	if (tok_encode(tok, text, len, true, &ids, &n_ids) != LM_OK) goto fail;
	if (n_ids < 1) {
		lm_err(_("%s: no tokens to score"), file);
		goto fail;
	}
	for (int i = 0; i < n_ids; i++)
		if (ids[i] < 0 || ids[i] >= cfg.vocab) { /* another model's tokenizer (--tokenizer) */
			lm_err(_("%s: the tokenizer gave id %d, outside the model's vocabulary (%d): is it this model's "
				 "tokenizer?"), tok_file ? tok_file : model_dir, ids[i], cfg.vocab);
			goto fail;
		}
	/* before the weights are read too: the embedding lookup found it, naming no file */
	int bos = cfg.bos_id >= 0 ? cfg.bos_id : tok_bos_id(tok);
	if (bos >= cfg.vocab) {
		lm_err(_("%s: BOS token id %d is outside the model's vocabulary (%d)"), model_dir, bos, cfg.vocab);
		goto fail;
	}
	if (model_load(&m, model_dir, be, FMT_AUTO, NULL, NULL) != LM_OK) goto fail;
	m_ok = true;
	if (x->rope_scaling_factor > 0) config_rope_dynamic(&m.cfg, x->rope_scaling_factor);

	note_sliding_window(&m.cfg, ctx);
	/* as chat says of --session-len (engine.c): windows longer than the model was trained for score positions
	 * it never saw, and without a word the perplexity looked like any other */
	if (m.cfg.max_pos > 0 && ctx > m.cfg.max_pos && m.cfg.rope.type != ROPE_DYNAMIC)
		fprintf(stderr, _("lmterm: note: --ctx %d is longer than the model's context of %d tokens "
				  "(max_position_embeddings in config.json); predictions past %d tokens may degrade\n"),
			ctx, m.cfg.max_pos, m.cfg.max_pos);
	int chunk = MIN(CHUNK, ctx);
	if (fwd_init(&f, &m, chunk) != LM_OK) goto fail;
	f_ok = true;
	f.eager = x->eager;
	struct kv_capacity cap = { .kind = KVCAP_TOKENS, .tokens = (uint64_t)ctx };
	struct kv_plan plan;
	if (kvmgr_plan(be, &m.cfg, &cap, policy, 64, 0, &plan) != LM_OK || kvmgr_alloc(&kv, be, &m.cfg, &plan) != LM_OK)
		goto fail;
	if (kvmgr_seq_fit(&kv, &seq, ctx) != LM_OK) goto fail;
	int V = m.cfg.vocab;
	logits = malloc(sizeof *logits * (size_t)chunk * V);
	win = malloc(sizeof *win * ctx);
	if (!logits || !win) {
		lm_err(_("out of memory"));
		goto fail;
	}

	/* with a BOS each window holds ctx-1 text tokens after it; without one, ctx tokens whose first is only
	 * context */
	int per_win = bos >= 0 ? ctx - 1 : ctx;
	int n_win = (n_ids + per_win - 1) / per_win;
	double nll = 0, t0 = now_s();
	long count = 0;
	bool tty = term_erases_line(2); /* the progress line rewrites itself with ESC [ K */
	for (int w = 0; w < n_win; w++) {
		int s = w * per_win, nt = MIN(per_win, n_ids - s), L = 0;
		if (bos >= 0) win[L++] = bos;
		memcpy(win + L, ids + s, sizeof *win * nt);
		L += nt;
		f.rope_len = L; /* one window is one call of transformers' */
		for (int p = 0; p < L - 1; p += chunk) { /* positions p.. predict win[p+1..] */
			int c = MIN(chunk, L - p);
			if (forward(&f, &kv.kv, win + p, c, p, seq.blocks, seq.n_blocks, c, logits, NULL) != LM_OK)
				goto fail;
			for (int j = 0; j < c && p + j + 1 < L; j++) {
				const float *lj = logits + (size_t)j * V;
				double mx = -INFINITY, z = 0;
				for (int v = 0; v < V; v++) mx = fmax(mx, lj[v]);
				for (int v = 0; v < V; v++) z += exp((double)lj[v] - mx);
				nll += mx + log(z) - (double)lj[win[p + j + 1]];
				count++;
			}
		}
		if (!isfinite(nll)) { /* NaN or infinite logits: a broken model (or weights), not a perplexity */
			if (tty) fprintf(stderr, "\r\033[K");
			lm_err(_("%s: the model's logits are not finite (NaN or infinity) in window %d: its weights are "
				 "probably damaged"), file, w + 1);
			goto fail;
		}
		if (tty) { /* the escapes stay out of the translated text */
			fputc('\r', stderr);
			fprintf(stderr, _("window %d/%d  ppl %.4f  %.1f s"), w + 1, n_win, exp(nll / count), now_s() - t0);
			fputs("\033[K", stderr);
		}
	}
	if (tty) fprintf(stderr, "\r\033[K");
	if (count == 0) { /* one token and no BOS before it: nothing is predicted, and 0/0 printed "-nan" */
		lm_err(_("%s: a single token and no BOS: nothing to predict (the text needs at least two tokens)"), file);
		goto fail;
	}
	printf("perplexity: %.4f (%ld tokens)\n", exp(nll / count), count);
	rc = 0;
fail:
	if (rc) fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
	free(logits);
	free(win);
	free(ids);
	free(text);
	kvmgr_seq_free(&kv, &seq);
	kvmgr_free(&kv);
	if (f_ok) fwd_free(&f);
	if (m_ok) model_free(&m);
	if (tok) tok_free(tok);
	backend_destroy(be);
	return rc;
}

int cmd_ppl(int argc, char **argv)
{
	struct opt_iter it;
	opt_iter_init(&it, argc, argv);
	const char *model = NULL, *file = NULL, *backend = "auto", *tok_file = NULL, *val;
	int ctx = 2048, policy = 0, r;
	long max_chars = 0;
	struct engine_extra x = { 0 };
	while (opt_next(&it)) {
		const char *n = it.name;
		if (!n) {
			if (model) {
				fprintf(stderr, _("lmterm: ppl: unexpected argument '%s'\n"), it.arg);
				return 2;
			}
			model = it.arg;
			continue;
		}
		if (strcmp(n, "help") == 0 || strcmp(n, "h") == 0) {
			ppl_usage(stdout);
			return 0;
		}
		/* each option reads its value in its own branch ("option '--ctx' needs a value"), so an unknown
		 * option reaches the last branch whether or not an argument follows it */
		if (strcmp(n, "file") == 0) {
			if (opt_value(&it, &file)) goto bad;
		} else if (strcmp(n, "ctx") == 0) {
			if (opt_value(&it, &val) || opt_int("--ctx", val, 2, 1 << 20, &ctx)) goto bad;
		} else if (strcmp(n, "quant-policy") == 0) {
			if (opt_value(&it, &val) || opt_quant_policy("--quant-policy", val, &policy)) goto bad;
		} else if (strcmp(n, "tokenizer") == 0) {
			if (opt_value(&it, &tok_file)) goto bad;
		} else if (strcmp(n, "backend") == 0) {
			if (opt_value(&it, &backend) || opt_backend(&backend)) goto bad;
		} else if (strcmp(n, "max-chars") == 0) {
			uint64_t v;
			if (opt_value(&it, &val) || opt_u64("--max-chars", val, &v)) goto bad;
			if (v == 0) { /* it scored the whole file, the opposite of what it says */
				lm_err(_("--max-chars: 0 characters leave nothing to score (leave the option out for the "
					 "whole file)"));
				goto bad;
			}
			max_chars = v > LONG_MAX ? LONG_MAX : (long)v; /* (long)2^63 was negative: no limit at all */
		} else if ((r = opt_engine_extra(&it, &x)) != 0) { /* --dtype, --rope-scaling-factor, ... */
			if (r < 0) goto bad;
		} else {
			fprintf(stderr, _("lmterm: ppl: unknown option '%s'\n"), it.arg);
			ppl_usage(stderr);
			return 2;
		}
	}
	if (!model || !file) {
		fprintf(stderr, _("lmterm: ppl: %s is required\n"), !model ? "MODEL" : "--file");
		ppl_usage(stderr);
		return 2;
	}
	return ppl_run(model, file, ctx, policy, backend, max_chars, tok_file, &x);
bad:
	fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
	return 2;
}
