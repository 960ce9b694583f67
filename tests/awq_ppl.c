/* awq_ppl: perplexity of a Llama/Qwen2 checkpoint, dense or AWQ gemm, computed in float32 with the
 * quantizer's own CPU arithmetic (src/awq_ops.h) from the files on disk: AWQ weights are unpacked and
 * dequantized as (q - z) * s. A check tool for the AWQ tests, independent of the model loader and the
 * backends (they are checked by `lmterm ppl` where it is built); its bf16 figure for small-en-zh equals
 * the transformers golden (676.5349 on ptb.valid.txt[:50000], ctx 512).
 * Protocol: the first CHARS code points of FILE, windows of ctx-1 tokens each after BOS, no overlap.
 * Usage: awq_ppl MODEL_DIR FILE [CHARS [CTX]]; prints "perplexity: P (N tokens)". */
#include "config.h"
#include "awq.h"
#include "awq_ops.h"
#include "model.h"
#include "safetensors.h"
#include "tok.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct st_set *S;

static float *tensor(const char *base, int rows, int cols, bool optional)
{
	char n[300];
	snprintf(n, sizeof n, "%s.weight", base);
	const struct st_tensor *t = st_set_find(S, n);
	float *f = malloc(sizeof(float) * rows * cols);
	if (t) {
		to_f32(f, t->data, t->dt, (size_t)rows * cols);
		return f;
	}
	snprintf(n, sizeof n, "%s.qweight", base);
	const struct st_tensor *qw = st_set_find(S, n);
	snprintf(n, sizeof n, "%s.qzeros", base);
	const struct st_tensor *qz = st_set_find(S, n);
	snprintf(n, sizeof n, "%s.scales", base);
	const struct st_tensor *sc = st_set_find(S, n);
	if (!qw || !qz || !sc) {
		if (optional) { free(f); return NULL; }
		fprintf(stderr, "awq_ppl: no %s.weight or .qweight/.qzeros/.scales\n", base);
		exit(1);
	}
	int g = cols / (int)sc->shape[0], ng = cols / g;
	uint8_t *codes = malloc((size_t)rows * cols), *z = malloc((size_t)rows * ng);
	awq_unpack(qw->data, qz->data, rows, cols, g, codes, z);
	const uint16_t *s16 = sc->data;
	for (int o = 0; o < rows; o++)
		for (int k = 0; k < cols; k++)
			f[(size_t)o * cols + k] = ((int)codes[(size_t)o * cols + k] - z[(size_t)o * ng + k / g]) *
						  f16_to_f32(s16[(size_t)(k / g) * rows + o]);
	free(codes);
	free(z);
	return f;
}

static float *vec(const char *name, int n)
{
	const struct st_tensor *t = st_set_find(S, name);
	if (!t) return NULL;
	float *f = malloc(sizeof(float) * n);
	to_f32(f, t->data, t->dt, n);
	return f;
}

int main(int argc, char **argv)
{
	if (argc < 3) { fprintf(stderr, "usage: awq_ppl MODEL_DIR FILE [CHARS [CTX]]\n"); return 2; }
	const char *dir = argv[1];
	long chars = argc > 3 ? atol(argv[3]) : 50000;
	int T = argc > 4 ? atoi(argv[4]) : 512, nt = (int)sysconf(_SC_NPROCESSORS_ONLN);
	struct model_config C;
	struct tokenizer *tk;
	char p[4096], *text;
	size_t len;
	path_join(p, sizeof p, dir, "config.json");
	if (config_load(&C, p) || st_set_open(&S, dir) || tok_load_dir(&tk, dir) || read_file(argv[2], &text, &len)) {
		fprintf(stderr, "awq_ppl: %s\n", lm_errmsg());
		return 1;
	}
	size_t b = 0;
	for (long cp = 0; b < len && cp < chars; cp++)
		for (b++; b < len && (text[b] & 0xc0) == 0x80; b++) {}
	int32_t *ids;
	int n;
	if (tok_encode(tk, text, b, false, &ids, &n)) { fprintf(stderr, "awq_ppl: %s\n", lm_errmsg()); return 1; }
	const int D = C.dim, H = C.n_heads, KV = C.n_kv_heads, HD = C.head_dim, F = C.ffn, V = C.vocab, L = C.n_layers;
	const int QD = H * HD, KD = KV * HD;
	struct lw { float *w[7], *b[3], *n1, *n2; } *lw = calloc(L, sizeof *lw);
	static const char *names[7] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
					"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" };
	const int rows[7] = { QD, KD, KD, D, F, F, D }, cols[7] = { D, D, D, QD, D, D, F };
	for (int l = 0; l < L; l++) {
		char bn[300];
		for (int i = 0; i < 7; i++) {
			snprintf(bn, sizeof bn, "model.layers.%d.%s", l, names[i]);
			lw[l].w[i] = tensor(bn, rows[i], cols[i], false);
			if (i < 3) {
				snprintf(bn, sizeof bn, "model.layers.%d.%s.bias", l, names[i]);
				lw[l].b[i] = vec(bn, rows[i]);
			}
		}
		snprintf(bn, sizeof bn, "model.layers.%d.input_layernorm.weight", l);
		lw[l].n1 = vec(bn, D);
		snprintf(bn, sizeof bn, "model.layers.%d.post_attention_layernorm.weight", l);
		lw[l].n2 = vec(bn, D);
	}
	float *fnorm = vec("model.norm.weight", D), *head = tensor("lm_head", V, D, true);
	const struct st_tensor *E = st_set_find(S, "model.embed_tokens.weight");
	if (!head) head = tensor("model.embed_tokens", V, D, false); /* tied */
	float *inv = malloc(sizeof(float) * HD);
	rope_inv_freq(&C, T, inv, NULL);
	float *x = malloc(sizeof(float) * T * D), *h = malloc(sizeof(float) * T * D), *o = malloc(sizeof(float) * T * D);
	float *q = malloc(sizeof(float) * T * QD), *k = malloc(sizeof(float) * T * KD), *v = malloc(sizeof(float) * T * KD);
	float *att = malloc(sizeof(float) * T * QD), *g = malloc(sizeof(float) * T * F), *u = malloc(sizeof(float) * T * F);
	float *lg = malloc(sizeof(float) * T * V);
	int32_t *win = malloc(sizeof(int32_t) * T);
	double nll = 0;
	long cnt = 0;
	for (int s0 = 0; s0 < n; s0 += T - 1) {
		int m = MIN(T - 1, n - s0), tt = m + 1;
		win[0] = C.bos_id >= 0 ? C.bos_id : 1;
		memcpy(win + 1, ids + s0, sizeof(int32_t) * m);
		for (int i = 0; i < tt; i++)
			to_f32(x + (size_t)i * D, (const char *)E->data + (size_t)win[i] * D * dtype_size(E->dt), E->dt, D);
		for (int l = 0; l < L; l++) {
			struct lw *w = &lw[l];
			awq_rmsnorm(h, x, w->n1, tt, D, C.norm_eps);
			awq_matmul(nt, q, h, w->w[0], w->b[0], tt, QD, D);
			awq_matmul(nt, k, h, w->w[1], w->b[1], tt, KD, D);
			awq_matmul(nt, v, h, w->w[2], w->b[2], tt, KD, D);
			if (awq_rope(q, tt, H, HD, tt, inv) || awq_rope(k, tt, KV, HD, tt, inv) ||
			    awq_attention(nt, att, q, k, v, tt, tt, H, KV, HD)) {
				fprintf(stderr, "awq_ppl: out of memory\n");
				return 1;
			}
			awq_matmul(nt, o, att, w->w[3], NULL, tt, D, QD);
			for (size_t i = 0; i < (size_t)tt * D; i++) x[i] += o[i];
			awq_rmsnorm(h, x, w->n2, tt, D, C.norm_eps);
			awq_matmul(nt, g, h, w->w[4], NULL, tt, F, D);
			awq_matmul(nt, u, h, w->w[5], NULL, tt, F, D);
			awq_swiglu(g, g, u, (size_t)tt * F);
			awq_matmul(nt, o, g, w->w[6], NULL, tt, D, F);
			for (size_t i = 0; i < (size_t)tt * D; i++) x[i] += o[i];
		}
		awq_rmsnorm(h, x, fnorm, tt, D, C.norm_eps);
		awq_matmul(nt, lg, h, head, NULL, tt, V, D);
		for (int i = 0; i < m; i++) {
			const float *r = lg + (size_t)i * V;
			float mx = -INFINITY;
			for (int j = 0; j < V; j++) mx = fmaxf(mx, r[j]);
			double se = 0;
			for (int j = 0; j < V; j++) se += exp(r[j] - mx);
			nll += log(se) + mx - r[win[i + 1]];
			cnt++;
		}
	}
	printf("perplexity: %.4f (%ld tokens)\n", exp(nll / cnt), cnt);
	return 0;
}
