/* lmterm bench MODEL|CONFIG.json [--dummy] [--prompt-len N] [-n N] [--quant-policy P] [--backend B]
 *              [--dtype auto|float16|bfloat16] [--model-format hf|awq|gptq] [--json]
 *              [--temperature T] [--top-k K] [--top-p P] [--min-p M] [--repetition-penalty R]
 *
 * Speed and memory of one model on one backend:
 *   prefill   a prompt of N random token ids in one forward call (the KV cache starts empty), timed after one
 *             untimed warm-up; tokens/s, and the time to first token (prefill + the greedy next token);
 *   decode    -n greedy steps of one token after that prompt (context = prompt length), batch 1; the first
 *             two steps are warm-up (the second captures the CUDA graph); the median step time is reported;
 *             with --temperature > 0 the steps sample instead (top-k, top-p, min-p, repetition penalty over
 *             the prompt and the tokens so far, seed --seed), on the device where the backend can, as chat
 *             and generate do;
 *   roofline  the bytes a decode step must read (every weight the step multiplies with, i.e. all weights
 *             but the embedding table, of which one row is read, plus the K and V of the whole context) over
 *             the step time, as a fraction of the device copy bandwidth that the backend measures (one large
 *             device-to-device copy, bytes read + written);
 *   memory    bytes per category (now and peak) as the backend's allocator counts them, against what the
 *             driver says the process uses.
 * --profile then times each op of a decode step alone (see profile()).
 * --dummy builds the model of the config's shapes with random weights (no weight files), as vLLM's dummy
 * load format does. --dtype overrides the config's torch_dtype (the activation type on the cuda backend). */
#include "config.h"
#include "backend.h"
#include "cmds.h"
#include "common.h"
#include "forward.h"
#include "i18n.h"
#include "model.h"
#include "opts.h"
#include "sampler.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct bench_opts {
	const char *model;
	bool dummy, json, profile;
	int prompt_len, n, policy;
	const char *backend;
	const char *dtype;
	enum model_format fmt;
	uint64_t seed;
	struct sampling sp; /* temperature 0: greedy */
};

static void usage(FILE *f)
{
	fprintf(f, _("Usage: lmterm bench MODEL|CONFIG.json [--dummy] [--prompt-len N] [-n N] [--quant-policy 0|4|8]\n"
		     "                    [--backend auto|cuda|cpu] [--dtype auto|float16|bfloat16]\n"
		     "                    [--model-format hf|awq|gptq] [--seed S] [--json] [--profile]\n"
		     "                    [--temperature T] [--top-k K] [--top-p P] [--min-p M] [--repetition-penalty R]\n"));
}

static int parse(struct bench_opts *o, int argc, char **argv)
{
	memset(o, 0, sizeof *o);
	o->prompt_len = 512;
	o->n = 64;
	o->backend = "auto";
	o->dtype = "auto";
	o->fmt = FMT_AUTO;
	o->seed = 1;
	o->sp = (struct sampling){ .temperature = 0, .top_p = 1, .top_k = 0, .min_p = 0, .repetition_penalty = 1 };
	struct opt_iter it;
	opt_iter_init(&it, argc, argv);
	while (opt_next(&it)) {
		const char *v = NULL, *nm = it.name;
		double d;
		if (!nm) {
			if (o->model) return lm_err(_("bench: more than one model given ('%s' and '%s')"), o->model, it.arg);
			o->model = it.arg;
		} else if (strcmp(nm, "help") == 0 || strcmp(nm, "h") == 0) {
			return 1;
		} else if (strcmp(nm, "dummy") == 0 || strcmp(nm, "json") == 0 || strcmp(nm, "profile") == 0) {
			if (it.value) return lm_err(_("option '--%s' takes no value"), nm);
			if (nm[0] == 'd') o->dummy = true;
			else if (nm[0] == 'j') o->json = true;
			else o->profile = true;
		} else if (strcmp(nm, "prompt-len") == 0) {
			if (opt_value(&it, &v) || opt_int("--prompt-len", v, 1, 1 << 20, &o->prompt_len)) return LM_ERR;
		} else if (strcmp(nm, "n") == 0) {
			if (opt_value(&it, &v) || opt_int("-n", v, 3, 100000, &o->n)) return LM_ERR;
		} else if (strcmp(nm, "quant-policy") == 0) {
			if (opt_value(&it, &v) || opt_quant_policy("--quant-policy", v, &o->policy)) return LM_ERR;
		} else if (strcmp(nm, "backend") == 0) {
			if (opt_value(&it, &o->backend) || opt_backend(&o->backend)) return LM_ERR;
		} else if (strcmp(nm, "dtype") == 0) {
			if (opt_value(&it, &o->dtype)) return LM_ERR;
			if (strcmp(o->dtype, "auto") && strcmp(o->dtype, "float16") && strcmp(o->dtype, "bfloat16"))
				return lm_err(_("--dtype: '%s' is not auto, float16 or bfloat16"), o->dtype);
		} else if (strcmp(nm, "model-format") == 0) {
			if (opt_value(&it, &v)) return LM_ERR;
			if (strcmp(v, "hf") == 0) o->fmt = FMT_HF;
			else if (strcmp(v, "awq") == 0) o->fmt = FMT_AWQ;
			else if (strcmp(v, "gptq") == 0) o->fmt = FMT_GPTQ;
			else return lm_err(_("--model-format: '%s' is not hf, awq or gptq"), v);
		} else if (strcmp(nm, "seed") == 0) {
			if (opt_value(&it, &v) || opt_u64("--seed", v, &o->seed)) return LM_ERR;
		} else if (strcmp(nm, "temperature") == 0) {
			if (opt_value(&it, &v) || opt_float("--temperature", v, 0, 100, &d)) return LM_ERR;
			o->sp.temperature = (float)d;
		} else if (strcmp(nm, "top-p") == 0) {
			if (opt_value(&it, &v) || opt_float("--top-p", v, 1e-6, 1, &d)) return LM_ERR;
			o->sp.top_p = (float)d;
		} else if (strcmp(nm, "min-p") == 0) {
			if (opt_value(&it, &v) || opt_float("--min-p", v, 0, 1, &d)) return LM_ERR;
			o->sp.min_p = (float)d;
		} else if (strcmp(nm, "repetition-penalty") == 0) {
			if (opt_value(&it, &v) || opt_float("--repetition-penalty", v, 0.01, 100, &d)) return LM_ERR;
			o->sp.repetition_penalty = (float)d;
		} else if (strcmp(nm, "top-k") == 0) {
			if (opt_value(&it, &v) || opt_int("--top-k", v, 0, 1 << 30, &o->sp.top_k)) return LM_ERR;
		} else {
			return lm_err(_("bench: unknown option '%s'"), it.arg);
		}
	}
	if (!o->model) return lm_err(_("bench: no MODEL or CONFIG.json given"));
	return LM_OK;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static bool is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* bytes a batch-1 decode step reads from the weights: everything but the embedding table (one row) */
static size_t decode_weight_bytes(const struct model *m)
{
	size_t b = 0;
	for (int l = 0; l < m->cfg.n_layers; l++) {
		const struct layer_weights *L = &m->layers[l];
		b += L->attn_norm.bytes + L->wqkv.bytes + L->q_norm.bytes + L->k_norm.bytes + L->wo.bytes +
		     L->ffn_norm.bytes + L->w13.bytes + L->w2.bytes;
	}
	b += m->final_norm.bytes;
	b += m->lm_head.shared ? m->tok_embed.bytes : m->lm_head.bytes;
	if (m->cfg.vocab > 0) b += m->tok_embed.bytes / (size_t)m->cfg.vocab;
	return b;
}

struct result {
	double prefill_s, ttft_s, step_s, bw, roof;
	size_t wbytes, kvbytes;
	struct mem_stats ms;
	bool ms_ok;
	bool dev_sampling; /* the decode steps sampled with the backend's sample op (on the GPU for cuda) */
};

static const char *cat_name[MEM_NCAT] = { "weights", "kv", "activations", "other" };

static void print_text(const struct bench_opts *o, const struct model *m, const struct backend *be,
		       const struct result *r)
{
	const double GB = 1e9, MiB = 1048576.0;
	printf(P_("model      %s: %s, %d layer, dim %d, %s weights, %s activations%s\n",
		  "model      %s: %s, %d layers, dim %d, %s weights, %s activations%s\n", m->cfg.n_layers),
	       o->model, m->cfg.arch_name, m->cfg.n_layers, m->cfg.dim,
	       m->cfg.quant_bits ? "W4A16" : dtype_name(m->cfg.dtype),
	       dtype_name(be->act_dt), o->dummy ? _(" (random)") : "");
	printf(_("device     %s (%s backend)\n"), r->ms_ok ? r->ms.device_name : "?", be->i->name);
	printf(P_("prefill    %d token in %.2f ms: %.0f tokens/s\n", "prefill    %d tokens in %.2f ms: %.0f tokens/s\n",
		  o->prompt_len),
	       o->prompt_len, r->prefill_s * 1e3, o->prompt_len / r->prefill_s);
	printf(_("first tok  %.2f ms (prefill + greedy next token)\n"), r->ttft_s * 1e3);
	printf(_("decode     batch 1 at context %d, KV policy %d: %.3f ms/token, %.1f tokens/s (median of %d)\n"),
	       o->prompt_len, o->policy, r->step_s * 1e3, 1.0 / r->step_s, o->n - 2);
	if (o->sp.temperature > 0)
		printf(_("sampling   temperature %g, top-k %d, top-p %g, min-p %g, repetition penalty %g (%s)\n"),
		       o->sp.temperature, o->sp.top_k, o->sp.top_p, o->sp.min_p, o->sp.repetition_penalty,
		       r->dev_sampling ? _("the backend's sample op") : _("the host sampler"));
	printf(_("bytes      %.3f GB per step: weights %.3f GB + KV %.3f GB\n"), (r->wbytes + r->kvbytes) / GB,
	       r->wbytes / GB, r->kvbytes / GB);
	if (r->bw > 0)
		printf(_("roofline   copy bandwidth %.0f GB/s -> at most %.1f tokens/s; ratio %.1f%%\n"), r->bw / GB,
		       r->bw / (r->wbytes + r->kvbytes), 100 * r->roof);
	else
		printf(_("roofline   N/A (the backend cannot measure a copy bandwidth)\n"));
	if (r->ms_ok) {
		size_t sum = 0;
		printf(_("memory    "));
		for (int i = 0; i < MEM_NCAT; i++) {
			printf(" %s %.1f MiB (peak %.1f)", cat_name[i], r->ms.cat[i] / MiB, r->ms.peak[i] / MiB);
			sum += r->ms.cat[i];
		}
		printf("\n");
		if (r->ms.used_valid) {
			size_t acc = sum + (r->ms.runtime_valid ? r->ms.runtime : 0);
			printf(_("accounted  %.1f MiB (allocations %.1f + runtime %s) vs %.1f MiB used by the process "
				 "(%s): %+.2f%%\n"),
			       acc / MiB, sum / MiB, r->ms.runtime_valid ? "measured" : "N/A", r->ms.used_by_process / MiB,
			       r->ms.is_host ? "resident set" : "driver",
			       100.0 * ((double)r->ms.used_by_process - (double)acc) / (double)r->ms.used_by_process);
		} else {
			printf(_("accounted  %.1f MiB; used by the process: N/A\n"), sum / MiB);
		}
	}
}

/* s as a JSON string, escaped (a model path may hold '"' or '\\') */
static void put_json_string(const char *s)
{
	cJSON *j = cJSON_CreateString(s);
	char *t = j ? cJSON_PrintUnformatted(j) : NULL;
	fputs(t ? t : "null", stdout);
	free(t);
	cJSON_Delete(j);
}

static void print_json(const struct bench_opts *o, const struct model *m, const struct backend *be,
		       const struct result *r)
{
	printf("{\"model\": ");
	put_json_string(o->model);
	printf(", \"arch\": \"%s\", \"dummy\": %s, \"backend\": \"%s\", \"device\": ", m->cfg.arch_name,
	       o->dummy ? "true" : "false", be->i->name);
	put_json_string(r->ms_ok ? r->ms.device_name : "");
	printf(", \"act_dtype\": \"%s\", \"quant_policy\": %d, \"prompt_len\": %d, \"decode_steps\": %d, ",
	       dtype_name(be->act_dt), o->policy, o->prompt_len, o->n);
	if (o->sp.temperature > 0)
		printf("\"sampling\": {\"temperature\": %g, \"top_k\": %d, \"top_p\": %g, \"min_p\": %g, "
		       "\"repetition_penalty\": %g, \"backend_op\": %s}, ",
		       o->sp.temperature, o->sp.top_k, o->sp.top_p, o->sp.min_p, o->sp.repetition_penalty,
		       r->dev_sampling ? "true" : "false");
	else
		printf("\"sampling\": null, ");
	printf("\"prefill_s\": %.6f, \"prefill_tok_s\": %.1f, \"ttft_s\": %.6f, \"decode_step_s\": %.7f, "
	       "\"decode_tok_s\": %.2f, \"step_weight_bytes\": %zu, \"step_kv_bytes\": %zu, ",
	       r->prefill_s, o->prompt_len / r->prefill_s, r->ttft_s, r->step_s, 1.0 / r->step_s, r->wbytes, r->kvbytes);
	if (r->bw > 0) printf("\"copy_bw\": %.0f, \"roofline\": %.4f, ", r->bw, r->roof);
	else printf("\"copy_bw\": null, \"roofline\": null, ");
	printf("\"mem\": {");
	for (int i = 0; r->ms_ok && i < MEM_NCAT; i++)
		printf("\"%s\": %zu, \"%s_peak\": %zu, ", cat_name[i], r->ms.cat[i], cat_name[i], r->ms.peak[i]);
	if (r->ms_ok && r->ms.runtime_valid) printf("\"runtime\": %zu, ", r->ms.runtime);
	if (r->ms_ok && r->ms.used_valid) printf("\"used_by_process\": %zu, ", r->ms.used_by_process);
	printf("\"valid\": %s}}\n", r->ms_ok ? "true" : "false");
}

/* --profile: each op of a decode step alone, issued for every layer back to back (one graph of n_layers
 * launches where the backend has graphs, replayed), so a launch's time includes the gap the GPU leaves
 * between two kernels; the lm_head with the argmax is timed as the step does it (synchronously). The sum
 * against the measured step shows what the ops cost and what is left (gaps between different kernels in
 * the step's graph, the host's share of a step). */
enum {
	P_NORM, P_QKV, P_QK_NORM, P_ROPE, P_ATTN, P_ROPE_ATTN, P_O, P_W13, P_SWIGLU, P_W13_SWIGLU, P_W2,
	P_QKV_NORM, P_O_RES, P_W13_NORM, P_W2_RES, P_N /* the last four: the norms folded into the GEMVs */
};
static const char *const p_name[P_N] = { "add_rmsnorm", "matmul wqkv", "qk_norm", "rope_kv", "attention",
					  "rope_attention", "matmul wo", "matmul w13", "swiglu", "matmul_swiglu w13",
					  "matmul w2", "norm_matmul wqkv", "matmul_residual wo", "norm_matmul w13+swiglu",
					  "matmul_residual w2" };

static int p_op(int k, struct fwd *f, struct kv_cache *kv, int l)
{
	struct backend *be = f->be;
	const struct backend_i *b = be->i;
	const struct model *m = f->m;
	const struct layer_weights *L = &m->layers[l];
	const struct model_config *c = &m->cfg;
	switch (k) {
	case P_NORM: return b->add_rmsnorm(be, f->h, f->x, f->dx, &L->attn_norm, 1, c->norm_eps);
	case P_QKV: return b->matmul(be, f->qkv, f->h, &L->wqkv, 1);
	case P_QK_NORM: return b->qk_norm(be, f->qkv, &L->q_norm, &L->k_norm, 1, c->n_heads, c->n_kv_heads, c->norm_eps);
	case P_ROPE: return b->rope_kv(be, f->qkv, kv, l, c->n_heads);
	case P_ATTN: return b->attention(be, f->att, f->qkv, kv, l, c->n_heads);
	case P_ROPE_ATTN: return b->rope_attention(be, f->att, f->qkv, kv, l, c->n_heads);
	case P_O: return b->matmul(be, f->dx, f->att, &L->wo, 1);
	case P_W13: return b->matmul(be, f->gu, f->h, &L->w13, 1);
	case P_SWIGLU: return b->swiglu(be, f->ff, f->gu, 1, c->ffn);
	case P_W13_SWIGLU: return b->matmul_swiglu(be, f->ff, f->gu, f->h, &L->w13, 1);
	case P_QKV_NORM: return b->norm_matmul(be, f->qkv, NULL, f->h, &L->wqkv, 1, c->norm_eps);
	case P_O_RES: return b->matmul_residual(be, f->x, f->h, f->att, &L->wo, &L->ffn_norm, 1);
	case P_W13_NORM: return b->norm_matmul(be, f->ff, f->gu, f->h, &L->w13, 1, c->norm_eps);
	case P_W2_RES: return b->matmul_residual(be, f->x, f->h, f->ff, &L->w2, &L->attn_norm, 1);
	default: return b->matmul(be, f->dx, f->ff, &L->w2, 1);
	}
}

static size_t p_bytes(int k, const struct model *m, const struct kv_cache *kv, int ctx)
{
	const struct layer_weights *L = &m->layers[0];
	switch (k) {
	case P_QKV: case P_QKV_NORM: return L->wqkv.bytes;
	case P_O: case P_O_RES: return L->wo.bytes;
	case P_W13: case P_W13_SWIGLU: case P_W13_NORM: return L->w13.bytes;
	case P_W2: case P_W2_RES: return L->w2.bytes;
	case P_ATTN: case P_ROPE_ATTN: return kv->bytes_per_token / (size_t)MAX(m->cfg.n_layers, 1) * (size_t)ctx;
	default: return 0;
	}
}

static int profile(FILE *out, struct fwd *f, struct kv_cache *kv, int32_t tok, int pos, const int32_t *blocks,
		   double step_s)
{
	struct backend *be = f->be;
	const struct backend_i *b = be->i;
	const struct model *m = f->m;
	const int nl = m->cfg.n_layers, R = 20;
	struct step st = { .ids = &tok, .n = 1, .pos0 = pos, .blocks = blocks, .n_blocks = kv->n_blocks,
			   .inv_freq = f->inv_freq, .rope_mscale = 1.0f };
	rope_inv_freq(&m->cfg, pos + 1, f->inv_freq, &st.rope_mscale);
	double sum = 0;
	/* whether the step folds its norms into the GEMVs (forward.c): a matmul_residual that does not decline */
	int fold = 1;
	if (b->matmul_residual && nl > 0) {
		if (b->set_step(be, &st)) return LM_ERR;
		if ((fold = p_op(P_O_RES, f, kv, 0)) < 0) return LM_ERR;
	}
	fprintf(out, _("profile    each op alone, %d launches per replay (%s); context %d\n"), nl,
		b->graph_begin ? _("graph") : _("no graph"), pos + 1);
	fprintf(out, "           %-24s %9s %9s %10s %7s\n", "op", "us/call", "GB/s", "ms/step", "share");
	for (int k = 0; k < P_N; k++) {
		/* the step runs either w13 then swiglu, or the fused op, and either rope_kv then attention or the
		 * fused op: only those count in the sum; a step has two norms per layer */
		const bool glu = b->matmul_swiglu != NULL, ra = b->rope_attention != NULL;
		const bool folded_op = k >= P_QKV_NORM;
		bool in_step = (glu ? k != P_W13 && k != P_SWIGLU : k != P_W13_SWIGLU) &&
			       (ra ? k != P_ROPE && k != P_ATTN : k != P_ROPE_ATTN);
		/* folded, the step runs the four folded GEMVs and the attention (and two norms in all) */
		if (fold == 0)
			in_step = in_step && (folded_op || k == P_NORM || k == P_QK_NORM || k == P_ROPE || k == P_ATTN ||
					      k == P_ROPE_ATTN);
		else in_step = in_step && !folded_op;
		if ((k == P_W13_SWIGLU && !glu) || (k == P_ROPE_ATTN && !ra) || (k == P_QK_NORM && !m->cfg.qk_norm) ||
		    (folded_op && fold != 0))
			continue;
		const double count = k != P_NORM ? 1.0 : fold == 0 ? 2.0 / MAX(nl, 1) : 2.0;
		double t0 = 0;
		for (int rep = -2; rep < R; rep++) {
			if (rep == 0) {
				if (b->sync(be)) return LM_ERR;
				t0 = now_s();
			}
			if (b->set_step(be, &st)) return LM_ERR;
			int g = b->graph_begin ? b->graph_begin(be, BACKEND_GRAPH_PROFILE + k) : 0;
			if (g < 0) return LM_ERR;
			for (int l = 0; g == 0 && l < nl; l++)
				if (p_op(k, f, kv, l)) return LM_ERR;
			if (b->graph_end && b->graph_end(be, BACKEND_GRAPH_PROFILE + k)) return LM_ERR;
		}
		if (b->sync(be)) return LM_ERR;
		double per = (now_s() - t0) / ((double)R * nl);
		size_t by = p_bytes(k, m, kv, pos + 1);
		if (in_step) sum += per * nl * count;
		fprintf(out, "         %c %-24s %9.2f ", in_step ? ' ' : '(', p_name[k], 1e6 * per);
		if (by) fprintf(out, "%9.0f ", (double)by / per / 1e9);
		else fprintf(out, "%9s ", "-");
		fprintf(out, "%10.3f %6.1f%%\n", 1e3 * per * nl * count, 100.0 * per * nl * count / step_s);
	}
	/* the lm_head and the argmax, as a step runs them (they wait for the token on the host) */
	if (b->set_step(be, &st)) return LM_ERR;
	float *lg = b->argmax ? NULL : malloc(sizeof(float) * (size_t)m->lm_head.rows);
	if (!b->argmax && !lg) return lm_err(_("out of memory"));
	double t0 = now_s();
	int32_t next;
	for (int rep = 0; rep < R; rep++)
		if (b->argmax ? b->argmax(be, &next, f->h, &m->lm_head) : b->logits(be, lg, f->h, &m->lm_head, 1)) {
			free(lg);
			return LM_ERR;
		}
	double per = (now_s() - t0) / R;
	free(lg);
	sum += per;
	fprintf(out, "           %-24s %9.2f %9.0f %10.3f %6.1f%%\n", "lm_head + argmax", 1e6 * per,
		(double)(m->lm_head.shared ? m->tok_embed.bytes : m->lm_head.bytes) / per / 1e9, 1e3 * per,
		100.0 * per / step_s);
	fprintf(out, _("           sum %.3f ms of a %.3f ms step (ops marked '(' are not part of it); the rest (%.3f ms) is gaps between different kernels and "
		       "the host\n"),
		1e3 * sum, 1e3 * step_s, 1e3 * (step_s - sum));
	return LM_OK;
}

/* LMTERM_BENCH_SKIP=OP[,OP...]: a measurement for developers, not an option. The decode steps run without those
 * ops of every layer (norm: the RMSNorms; wqkv, attn: RoPE and attention, wo, w13, swiglu, w2), so that the
 * step's time with and without an op is what the op costs inside the step, with the overlaps and the gaps
 * between kernels that --profile, timing each op alone, does not see. The tokens are then meaningless; the
 * prefill and --profile run every op. */
enum { S_NORM = 1, S_QKV = 2, S_ATTN = 4, S_O = 8, S_W13 = 16, S_SWIGLU = 32, S_W2 = 64 };
static struct {
	unsigned mask;
	const struct backend_i *orig_i;
	struct backend_i orig, patched;
	const struct model *m;
} skip;

static unsigned skip_parse(const char *e)
{
	static const char *const names[] = { "norm", "wqkv", "attn", "wo", "w13", "swiglu", "w2" };
	unsigned mask = 0;
	char buf[128];
	snprintf(buf, sizeof buf, "%s", e);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		size_t i = 0;
		while (i < ARRAY_SIZE(names) && strcmp(t, names[i])) i++;
		if (i == ARRAY_SIZE(names)) {
			lm_err("LMTERM_BENCH_SKIP: unknown op '%s' (norm, wqkv, attn, wo, w13, swiglu, w2)", t);
			return ~0u;
		}
		mask |= 1u << i;
	}
	return mask;
}

static unsigned skip_which(const struct weight *w)
{
	for (int l = 0; l < skip.m->cfg.n_layers; l++) {
		const struct layer_weights *L = &skip.m->layers[l];
		if (w == &L->wqkv) return S_QKV;
		if (w == &L->wo) return S_O;
		if (w == &L->w13) return S_W13;
		if (w == &L->w2) return S_W2;
	}
	return 0;
}

static int skip_norm(struct backend *be, void *h, void *x, const void *dx, const struct weight *w, int n, float eps)
{
	return skip.mask & S_NORM ? LM_OK : skip.orig.add_rmsnorm(be, h, x, dx, w, n, eps);
}

static int skip_matmul(struct backend *be, void *y, const void *x, const struct weight *w, int n)
{
	return skip.mask & skip_which(w) ? LM_OK : skip.orig.matmul(be, y, x, w, n);
}

static int skip_rope_attention(struct backend *be, void *out, void *qkv, struct kv_cache *kv, int layer, int n_heads)
{
	return skip.mask & S_ATTN ? LM_OK : skip.orig.rope_attention(be, out, qkv, kv, layer, n_heads);
}

static int skip_rope_kv(struct backend *be, void *qkv, struct kv_cache *kv, int layer, int n_heads)
{
	return skip.mask & S_ATTN ? LM_OK : skip.orig.rope_kv(be, qkv, kv, layer, n_heads);
}

static int skip_attention(struct backend *be, void *out, const void *qkv, const struct kv_cache *kv, int layer,
			  int n_heads)
{
	return skip.mask & S_ATTN ? LM_OK : skip.orig.attention(be, out, qkv, kv, layer, n_heads);
}

static int skip_swiglu(struct backend *be, void *out, const void *gu, int n, int ffn)
{
	return skip.mask & S_SWIGLU ? LM_OK : skip.orig.swiglu(be, out, gu, n, ffn);
}

static int skip_matmul_swiglu(struct backend *be, void *out, void *gu, const void *x, const struct weight *w13, int n)
{
	switch (skip.mask & (S_W13 | S_SWIGLU)) {
	case 0: return skip.orig.matmul_swiglu(be, out, gu, x, w13, n);
	case S_SWIGLU: return skip.orig.matmul(be, gu, x, w13, n); /* the matmul alone */
	case S_W13: return skip.orig.swiglu(be, out, gu, n, w13->rows / 2);
	default: return LM_OK;
	}
}

/* folded norms (forward.c): a skipped GEMV leaves x and the norm's sums as they were (timing only) */
static int skip_matmul_residual(struct backend *be, void *x, void *xw, const void *a, const struct weight *w,
				const struct weight *nw, int n)
{
	return skip.mask & skip_which(w) ? 0 : skip.orig.matmul_residual(be, x, xw, a, w, nw, n);
}

static int skip_norm_matmul(struct backend *be, void *y, void *gu, void *xw, const struct weight *w, int n, float eps)
{
	return skip.mask & skip_which(w) ? LM_OK : skip.orig.norm_matmul(be, y, gu, xw, w, n, eps);
}

/* be->i becomes a copy whose ops skip what LMTERM_BENCH_SKIP names (NULL: back to the original) */
static int skip_install(struct backend *be, const struct model *m, bool on)
{
	if (!on) {
		if (skip.orig_i) be->i = skip.orig_i;
		skip.orig_i = NULL;
		return LM_OK;
	}
	const char *e = getenv("LMTERM_BENCH_SKIP");
	if (!e || !*e) return LM_OK;
	if ((skip.mask = skip_parse(e)) == ~0u) return LM_ERR;
	skip.orig_i = be->i;
	skip.orig = skip.patched = *be->i;
	skip.m = m;
	skip.patched.add_rmsnorm = skip_norm;
	skip.patched.matmul = skip_matmul;
	if (skip.orig.rope_attention) skip.patched.rope_attention = skip_rope_attention;
	if (skip.orig.rope_kv) skip.patched.rope_kv = skip_rope_kv;
	if (skip.orig.attention) skip.patched.attention = skip_attention;
	if (skip.orig.swiglu) skip.patched.swiglu = skip_swiglu;
	if (skip.orig.matmul_swiglu) skip.patched.matmul_swiglu = skip_matmul_swiglu;
	if (skip.orig.matmul_residual) skip.patched.matmul_residual = skip_matmul_residual;
	if (skip.orig.norm_matmul) skip.patched.norm_matmul = skip_norm_matmul;
	be->i = &skip.patched;
	fprintf(stderr, "lmterm: bench: LMTERM_BENCH_SKIP=%s: the decode steps leave those ops out (timing only)\n", e);
	return LM_OK;
}

static int run(const struct bench_opts *o)
{
	char cfgpath[4200];
	struct model_config cfg;
	bool dir = is_dir(o->model);
	if (dir) snprintf(cfgpath, sizeof cfgpath, "%s/config.json", o->model);
	else snprintf(cfgpath, sizeof cfgpath, "%s", o->model);
	/* its messages: missing, a model id, a directory without config.json */
	if ((dir || !file_exists(o->model)) && check_model_dir(o->model)) return LM_ERR;
	if (!dir && !o->dummy)
		return lm_err(_("bench: %s is a config file: add --dummy to run it with random weights"), o->model);
	if (config_load(&cfg, cfgpath)) return LM_ERR;
	if (strcmp(o->dtype, "float16") == 0) cfg.dtype = DT_F16;
	else if (strcmp(o->dtype, "bfloat16") == 0) cfg.dtype = DT_BF16;
	if (o->dummy && (o->fmt == FMT_AWQ || o->fmt == FMT_GPTQ) && !cfg.quant_bits) {
		/* GPTQ runs as AWQ once loaded (model.c converts it), so their dummy weights are the same */
		cfg.quant_bits = 4;
		cfg.group_size = 128;
		cfg.quant = o->fmt == FMT_AWQ ? QUANT_AWQ : QUANT_GPTQ;
	}

	struct backend *be = NULL;
	struct model m;
	struct kv_cache kv = { 0 };
	struct fwd fw;
	bool have_m = false, have_fw = false;
	int32_t *ids = NULL, *blocks = NULL;
	double *steps = NULL;
	struct sampler *smp = NULL;
	float *logits = NULL;
	struct result r = { 0 };
	int rc = LM_ERR;
	const int P = o->prompt_len, total = P + o->n + 1;

	if (backend_create(&be, o->backend, cfg.dtype)) goto out;
	if (*backend_fallback_note()) fprintf(stderr, _("lmterm: note: %s\n"), backend_fallback_note());
	if (o->dummy) {
		if (model_init_dummy(&m, &cfg, be, o->seed)) goto out;
	} else if (model_load(&m, o->model, be, o->fmt, NULL, NULL)) {
		goto out;
	}
	have_m = true;
	kv = (struct kv_cache){ .n_layers = m.cfg.n_layers, .n_kv_heads = m.cfg.n_kv_heads, .head_dim = m.cfg.head_dim,
				.block_len = 64, .policy = o->policy };
	kv.n_blocks = (total + kv.block_len - 1) / kv.block_len;
	if (be->i->kv_alloc(be, &kv)) goto out;
	if (fwd_init(&fw, &m, P)) goto out;
	have_fw = true;
	ids = malloc(sizeof(int32_t) * (size_t)total);
	blocks = malloc(sizeof(int32_t) * (size_t)kv.n_blocks);
	steps = malloc(sizeof(double) * (size_t)o->n);
	if (!ids || !blocks || !steps) {
		lm_err(_("out of memory"));
		goto out;
	}
	uint64_t s = o->seed * 0x9E3779B97F4A7C15ull + 1;
	for (int i = 0; i < total; i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		ids[i] = (int32_t)(s % (uint64_t)m.cfg.vocab);
	}
	for (int b = 0; b < kv.n_blocks; b++) blocks[b] = b;

	/* prefill: one warm-up, then the median of three (each starts from an empty cache: positions 0..P-1) */
	double pt[3], tt[3];
	int32_t next = 0;
	if (forward(&fw, &kv, ids, P, 0, blocks, kv.n_blocks, 0, NULL, NULL)) goto out;
	for (int k = 0; k < 3; k++) {
		double t0 = now_s();
		if (forward(&fw, &kv, ids, P, 0, blocks, kv.n_blocks, 0, NULL, NULL)) goto out;
		pt[k] = now_s() - t0;
		t0 = now_s();
		if (forward(&fw, &kv, ids, P, 0, blocks, kv.n_blocks, -1, NULL, &next)) goto out;
		tt[k] = now_s() - t0;
	}
	r.prefill_s = median(pt, 3);
	r.ttft_s = median(tt, 3);

	/* decode: one token at a time after the prompt (greedy, or sampled, so the ids are the model's own); the
	 * tokens fed are kept after the prompt in ids[], the repetition penalty's history */
	if (o->sp.temperature > 0) {
		struct sampling sp = o->sp;
		sp.seed = o->seed;
		if (sampler_init(&smp, m.cfg.vocab, &sp)) goto out;
		r.dev_sampling = sampler_on_device(be);
		if (!r.dev_sampling && !(logits = malloc(sizeof(float) * (size_t)m.cfg.vocab))) {
			lm_err(_("out of memory"));
			goto out;
		}
	}
	if (skip_install(be, &m, true)) goto out;
	/* greedy: one step ahead, as generate and chat decode (step k + 1 is enqueued, fed on the device with
	 * step k's id, before that id is taken), so a step's time is the interval between two ids; LMTERM_CHAIN=0
	 * waits for each id before the next step (measurement). Only where the backend starts ids on the device:
	 * elsewhere forward() computes each id when the step is enqueued, and the intervals would be shifted */
	const bool chain = !smp && be->i->argmax_start && !env_is("LMTERM_CHAIN", "0");
	if (chain) {
		double t0 = now_s();
		bool ahead = false;
		for (int k = 0; k < o->n; k++) {
			ids[P + k] = next;
			if (fwd_greedy_ahead(&fw, &kv, next, P + k, k + 1 < o->n, blocks, kv.n_blocks, &ahead, &next))
				goto out;
			const double t1 = now_s();
			steps[k] = t1 - t0;
			t0 = t1;
		}
	}
	for (int k = 0; k < o->n && !chain; k++) {
		double t0 = now_s();
		int32_t tok = next;
		ids[P + k] = tok;
		if (!smp) {
			if (forward(&fw, &kv, &tok, 1, P + k, blocks, kv.n_blocks, -1, NULL, &next)) goto out;
		} else if (r.dev_sampling) {
			if (forward(&fw, &kv, &tok, 1, P + k, blocks, kv.n_blocks, -2, NULL, NULL) ||
			    sampler_sample_device(smp, be, fw.h, &m.lm_head, ids, P + k + 1, &next))
				goto out;
		} else {
			if (forward(&fw, &kv, &tok, 1, P + k, blocks, kv.n_blocks, 1, logits, NULL)) goto out;
			next = sampler_sample(smp, logits, ids, P + k + 1);
		}
		steps[k] = now_s() - t0;
	}
	skip_install(be, &m, false);
	r.step_s = median(steps + 2, o->n - 2);

	/* the limit: bytes a step reads at the mean context of the timed steps */
	r.wbytes = decode_weight_bytes(&m);
	r.kvbytes = kv.bytes_per_token * (size_t)(P + o->n / 2);
	if (be->i->copy_bandwidth) {
		r.bw = be->i->copy_bandwidth(be);
		if (r.bw <= 0) fprintf(stderr, "lmterm: bench: %s\n", lm_errmsg());
	}
	if (r.bw > 0) r.roof = (double)(r.wbytes + r.kvbytes) / r.step_s / r.bw;
	r.ms_ok = be->i->mem_stats && be->i->mem_stats(be, &r.ms) == LM_OK;

	if (o->json) print_json(o, &m, be, &r);
	else print_text(o, &m, be, &r);
	/* with --json the table goes to stderr: stdout stays one JSON object (the table after it broke every parser) */
	if (o->profile && profile(o->json ? stderr : stdout, &fw, &kv, next, P + o->n, blocks, r.step_s)) goto out;
	rc = LM_OK;
out:
	if (be) skip_install(be, &m, false);
	sampler_free(smp);
	free(logits);
	free(ids);
	free(blocks);
	free(steps);
	if (have_fw) fwd_free(&fw);
	if (kv.pool) be->i->kv_free(be, &kv);
	if (have_m) model_free(&m);
	if (be) backend_destroy(be);
	return rc;
}

int cmd_bench(int argc, char **argv)
{
	struct bench_opts o;
	int rc = parse(&o, argc, argv);
	if (rc == 1) {
		usage(stdout);
		return 0;
	}
	if (rc) {
		fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
		usage(stderr);
		return 2;
	}
	if (run(&o)) {
		fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
		return 1;
	}
	return 0;
}
