/* test_awq_quality_kl: how closely quantized models follow their original, for tests/test_awq_quality.sh.
 * Usage: test_awq_quality_kl REF FILE CTX MAX_CHARS MODEL...
 * Runs REF and every MODEL through the engine (cpu backend) on the text in `lmterm ppl`'s protocol (the first
 * MAX_CHARS code points, added tokens matched, windows of CTX-1 tokens each after BOS) and prints, per MODEL,
 * "kl: K ppl: P top1: A MODEL": K the mean over the predicted positions of KL(p_REF || p_MODEL) in nats, P its
 * perplexity, A the fraction of positions whose most likely token is REF's; then "ref ppl: P".
 * KL to the original is what quantization should keep small whatever the original's own quality on the text;
 * docs/QUANTIZATION.md says why perplexity alone cannot rank AWQ variants of small-en-zh. */
#include "config.h"
#include "backend.h"
#include "common.h"
#include "forward.h"
#include "kvmgr.h"
#include "model.h"
#include "tok.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct run {
	const char *dir;
	struct backend *be;
	struct model m;
	struct fwd f;
	struct kvmgr kv;
	struct kv_seq seq;
	bool m_ok, f_ok;
	double nll, kl;
	long agree;
};

static int run_open(struct run *r, const char *dir, int ctx)
{
	char path[4200];
	struct model_config cfg;
	r->dir = dir;
	path_join(path, sizeof path, dir, "config.json");
	if (config_load(&cfg, path) || backend_create(&r->be, "cpu", cfg.dtype)) return LM_ERR;
	if (model_load(&r->m, dir, r->be, FMT_AUTO, NULL, NULL)) return LM_ERR;
	r->m_ok = true;
	if (fwd_init(&r->f, &r->m, ctx)) return LM_ERR;
	r->f_ok = true;
	struct kv_capacity cap = { .kind = KVCAP_TOKENS, .tokens = (uint64_t)ctx };
	struct kv_plan plan;
	if (kvmgr_plan(r->be, &r->m.cfg, &cap, 0, 64, 0, &plan) || kvmgr_alloc(&r->kv, r->be, &r->m.cfg, &plan))
		return LM_ERR;
	return kvmgr_seq_fit(&r->kv, &r->seq, ctx);
}

static void run_close(struct run *r)
{
	kvmgr_seq_free(&r->kv, &r->seq);
	kvmgr_free(&r->kv);
	if (r->f_ok) fwd_free(&r->f);
	if (r->m_ok) model_free(&r->m);
	backend_destroy(r->be);
}

/* log-softmax of each of the n rows of V logits, in place (double sums) */
static void log_softmax(float *l, int n, int V)
{
	for (int i = 0; i < n; i++) {
		float *r = l + (size_t)i * V;
		double mx = -INFINITY, z = 0;
		for (int v = 0; v < V; v++) mx = fmax(mx, r[v]);
		for (int v = 0; v < V; v++) z += exp((double)r[v] - mx);
		double lz = mx + log(z);
		for (int v = 0; v < V; v++) r[v] = (float)(r[v] - lz);
	}
}

static int argmax(const float *r, int V)
{
	int b = 0;
	for (int v = 1; v < V; v++)
		if (r[v] > r[b]) b = v;
	return b;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: test_awq_quality_kl REF FILE CTX MAX_CHARS MODEL...\n");
		return 2;
	}
	int ctx = atoi(argv[3]), nq = argc - 5, rc = 1;
	long max_chars = atol(argv[4]);
	if (ctx < 2) { fprintf(stderr, "test_awq_quality_kl: bad CTX %s\n", argv[3]); return 2; }
	struct run *r = calloc(nq + 1, sizeof *r);
	struct tokenizer *tok = NULL;
	char *text = NULL;
	int32_t *ids = NULL, *win = malloc(sizeof *win * ctx);
	float *lref = NULL, *lq = NULL;
	int n_ids = 0;
	size_t len;
	if (read_file(argv[2], &text, &len)) goto out;
	size_t b = 0; /* bytes of the first max_chars code points */
	for (long k = 0; k < max_chars && b < len; k++)
		for (b++; b < len && ((unsigned char)text[b] & 0xc0) == 0x80; b++) {}
	for (int i = 0; i <= nq; i++)
		if (run_open(&r[i], i ? argv[4 + i] : argv[1], ctx)) goto out;
	if (tok_load_dir(&tok, argv[1]) || tok_encode(tok, text, b, true, &ids, &n_ids)) goto out;
	const int V = r[0].m.cfg.vocab, bos = r[0].m.cfg.bos_id >= 0 ? r[0].m.cfg.bos_id : tok_bos_id(tok);
	for (int i = 1; i <= nq; i++)
		if (r[i].m.cfg.vocab != V) { lm_err("%s: vocabulary %d, not %d", r[i].dir, r[i].m.cfg.vocab, V); goto out; }
	lref = malloc(sizeof *lref * (size_t)ctx * V);
	lq = malloc(sizeof *lq * (size_t)ctx * V);
	if (!lref || !lq || !win || n_ids < 1) { lm_err("out of memory or no tokens"); goto out; }
	const int per_win = bos >= 0 ? ctx - 1 : ctx;
	long count = 0;
	for (int s = 0; s < n_ids; s += per_win) {
		int nt = MIN(per_win, n_ids - s), L = 0;
		if (bos >= 0) win[L++] = bos;
		memcpy(win + L, ids + s, sizeof *win * nt);
		L += nt;
		for (int i = 0; i <= nq; i++) {
			float *lg = i ? lq : lref;
			if (forward(&r[i].f, &r[i].kv.kv, win, L, 0, r[i].seq.blocks, r[i].seq.n_blocks, L, lg, NULL))
				goto out;
			log_softmax(lg, L - 1, V);
			for (int j = 0; j + 1 < L; j++) {
				const float *p = lref + (size_t)j * V, *q = lg + (size_t)j * V;
				r[i].nll -= q[win[j + 1]];
				if (!i) continue;
				double k = 0;
				for (int v = 0; v < V; v++) k += exp((double)p[v]) * ((double)p[v] - q[v]);
				r[i].kl += k;
				r[i].agree += argmax(p, V) == argmax(q, V);
			}
		}
		count += L - 1;
	}
	for (int i = 1; i <= nq; i++)
		printf("kl: %.6f ppl: %.4f top1: %.4f %s\n", r[i].kl / count, exp(r[i].nll / count),
		       (double)r[i].agree / count, r[i].dir);
	printf("ref ppl: %.4f (%ld tokens) %s\n", exp(r[0].nll / count), count, r[0].dir);
	rc = 0;
out:
	if (rc) fprintf(stderr, "test_awq_quality_kl: %s\n", lm_errmsg());
	for (int i = 0; i <= nq; i++) run_close(&r[i]);
	if (tok) tok_free(tok);
	free(r); free(text); free(ids); free(win); free(lref); free(lq);
	return rc;
}
