/* test_awq_layouts: the quantizer on each architecture's layout.
 * internlm2-rand holds exactly llama-dynrope-rand's weights in InternLM2's layout (packed wqkv, w1/w3/w2).
 * Quantized with the same calibration (4 x 64 tokens of WikiText-2, --search-scale), the two results must
 * agree bit for bit once wqkv's rows are mapped back to q, k, v: this checks the split, the smoothing
 * groups and the re-packing of the InternLM2 path against the Llama one. qwen2-rand (q/k/v biases, tied
 * embeddings) must quantize with its biases kept and no lm_head invented. */
#include "config.h"
#include "awq.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fails;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL: " __VA_ARGS__); printf("\n"); fails++; } } while (0)

static int quantize(const char *td, const char *model, const char *out)
{
	char m[1024], ds[1024];
	snprintf(m, sizeof m, "%s/fixtures/%s", td, model);
	snprintf(ds, sizeof ds, "%s/text/wiki.test.raw", td);
	struct awq_opts o = { .model_dir = m, .work_dir = out, .dataset = ds, .samples = 4, .seqlen = 64, .batch = 2,
			      .bits = 4, .group = 128, .search_scale = true, .n_threads = 2 };
	if (awq_quantize(&o, NULL) != LM_OK) { printf("FAIL: %s: %s\n", model, lm_errmsg()); return LM_ERR; }
	return LM_OK;
}

struct q { uint8_t *codes, *zeros; float *s; int out, in, g; };

static bool get_q(struct st_set *s, const char *base, struct q *q)
{
	char n[300];
	snprintf(n, sizeof n, "%s.qweight", base);
	const struct st_tensor *qw = st_set_find(s, n);
	snprintf(n, sizeof n, "%s.qzeros", base);
	const struct st_tensor *qz = st_set_find(s, n);
	snprintf(n, sizeof n, "%s.scales", base);
	const struct st_tensor *sc = st_set_find(s, n);
	if (!qw || !qz || !sc) { printf("FAIL: %s: qweight/qzeros/scales missing\n", base); fails++; return false; }
	q->in = (int)qw->shape[0];
	q->out = (int)qw->shape[1] * 8;
	q->g = q->in / (int)sc->shape[0];
	int ng = q->in / q->g;
	q->codes = malloc((size_t)q->out * q->in);
	q->zeros = malloc((size_t)q->out * ng);
	q->s = malloc(sizeof(float) * q->out * ng); /* [out][ng] */
	awq_unpack(qw->data, qz->data, q->out, q->in, q->g, q->codes, q->zeros);
	const uint16_t *h = sc->data;
	for (int gi = 0; gi < ng; gi++)
		for (int o = 0; o < q->out; o++) q->s[(size_t)o * ng + gi] = f16_to_f32(h[(size_t)gi * q->out + o]);
	return true;
}

static void free_q(struct q *q) { free(q->codes); free(q->zeros); free(q->s); }

/* row ra of a equals row rb of b */
static bool same_row(const struct q *a, int ra, const struct q *b, int rb)
{
	int ng = a->in / a->g;
	return !memcmp(a->codes + (size_t)ra * a->in, b->codes + (size_t)rb * b->in, a->in) &&
	       !memcmp(a->zeros + (size_t)ra * ng, b->zeros + (size_t)rb * ng, ng) &&
	       !memcmp(a->s + (size_t)ra * ng, b->s + (size_t)rb * ng, sizeof(float) * ng);
}

static bool same_tensor(struct st_set *a, const char *na, struct st_set *b, const char *nb)
{
	const struct st_tensor *x = st_set_find(a, na), *y = st_set_find(b, nb);
	return x && y && x->bytes == y->bytes && x->dt == y->dt && !memcmp(x->data, y->data, x->bytes);
}

int main(void)
{
	const char *td = getenv("TESTDATA");
	if (!td) return 77;
	char tmp[] = "/tmp/test_awq_layouts.XXXXXX", a[1100], b[1100], c[1100];
	if (!mkdtemp(tmp)) return 1;
	snprintf(a, sizeof a, "%s/llama", tmp);
	snprintf(b, sizeof b, "%s/internlm2", tmp);
	snprintf(c, sizeof c, "%s/qwen2", tmp);
	if (quantize(td, "llama-dynrope-rand", a) || quantize(td, "internlm2-rand", b) || quantize(td, "qwen2-rand", c)) {
		fails++;
		goto out;
	}
	struct st_set *sa, *sb, *sc;
	if (st_set_open(&sa, a) || st_set_open(&sb, b) || st_set_open(&sc, c)) {
		printf("FAIL: %s\n", lm_errmsg());
		fails++;
		goto out;
	}
	const int nh = 2, nkv = 1, hd = 64, grp = nh / nkv;
	for (int l = 0; l < 2; l++) {
		char n1[200], n2[200];
		struct q q, k, v, wqkv;
		snprintf(n1, sizeof n1, "model.layers.%d.self_attn.q_proj", l); get_q(sa, n1, &q);
		snprintf(n1, sizeof n1, "model.layers.%d.self_attn.k_proj", l); get_q(sa, n1, &k);
		snprintf(n1, sizeof n1, "model.layers.%d.self_attn.v_proj", l); get_q(sa, n1, &v);
		snprintf(n1, sizeof n1, "model.layers.%d.attention.wqkv", l);
		if (!get_q(sb, n1, &wqkv)) continue;
		int bad = 0;
		for (int kvh = 0; kvh < nkv; kvh++)
			for (int r = 0; r < hd; r++) {
				int base = kvh * (grp + 2) * hd;
				for (int j = 0; j < grp; j++) bad += !same_row(&q, (kvh * grp + j) * hd + r, &wqkv, base + j * hd + r);
				bad += !same_row(&k, kvh * hd + r, &wqkv, base + grp * hd + r);
				bad += !same_row(&v, kvh * hd + r, &wqkv, base + (grp + 1) * hd + r);
			}
		CHECK(!bad, "layer %d: %d rows of wqkv differ from q/k/v", l, bad);
		free_q(&q); free_q(&k); free_q(&v); free_q(&wqkv);
		static const char *pairs[][2] = { { "self_attn.o_proj", "attention.wo" }, { "mlp.gate_proj", "feed_forward.w1" },
						  { "mlp.up_proj", "feed_forward.w3" }, { "mlp.down_proj", "feed_forward.w2" } };
		for (int p = 0; p < 4; p++)
			for (int s = 0; s < 3; s++) {
				static const char *suf[] = { "qweight", "qzeros", "scales" };
				snprintf(n1, sizeof n1, "model.layers.%d.%s.%s", l, pairs[p][0], suf[s]);
				snprintf(n2, sizeof n2, "model.layers.%d.%s.%s", l, pairs[p][1], suf[s]);
				CHECK(same_tensor(sa, n1, sb, n2), "%s differs from %s", n1, n2);
			}
		snprintf(n1, sizeof n1, "model.layers.%d.input_layernorm.weight", l);
		snprintf(n2, sizeof n2, "model.layers.%d.attention_norm.weight", l);
		CHECK(same_tensor(sa, n1, sb, n2), "%s differs from %s", n1, n2);
		snprintf(n1, sizeof n1, "model.layers.%d.post_attention_layernorm.weight", l);
		snprintf(n2, sizeof n2, "model.layers.%d.ffn_norm.weight", l);
		CHECK(same_tensor(sa, n1, sb, n2), "%s differs from %s", n1, n2);
		CHECK(!st_set_find(sb, "model.layers.0.attention.wqkv.weight"), "internlm2: dense wqkv left in the output");
	}
	printf("internlm2 vs llama layout: compared 2 layers\n");
	/* qwen2: biases kept (fp16), tied embeddings: no lm_head */
	const struct st_tensor *bq = st_set_find(sc, "model.layers.0.self_attn.q_proj.bias");
	CHECK(bq && bq->dt == DT_F16, "qwen2: q_proj.bias missing or not fp16");
	CHECK(st_set_find(sc, "model.layers.1.self_attn.v_proj.bias") != NULL, "qwen2: v_proj.bias missing");
	CHECK(!st_set_find(sc, "lm_head.weight") && !st_set_find(sc, "lm_head.qweight"), "qwen2: lm_head invented");
	CHECK(!st_set_find(sc, "model.layers.0.self_attn.q_proj.weight"), "qwen2: dense q_proj left");
	const struct st_tensor *e = st_set_find(sc, "model.embed_tokens.weight");
	CHECK(e && e->dt == DT_F16, "qwen2: embed_tokens missing or not fp16");
	printf("qwen2: biases kept, tied lm_head not written\n");
	st_set_close(sa);
	st_set_close(sb);
	st_set_close(sc);
out:;
	char cmd[1200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
	if (system(cmd)) {}
	if (fails) { printf("%d failure(s)\n", fails); return 1; }
	printf("ok\n");
	return 0;
}
