/* test_loader: safetensors, config.json, RoPE and model loading.
 *
 * (a) every fixture and trained model loads into a recording backend, and each fused weight equals the raw
 *     tensors (read again with st_set_find) put together by an independent per-row mapping;
 * (b) tiny-en-zh (Llama layout) and tiny-en-zh-internlm2 (packed wqkv) load to byte-identical weights;
 * (c) rope_inv_freq against the formulas computed here;
 * (d) corrupted files and configs fail with a message naming the file and the tensor or key;
 * (e) st_write round trip. */
#include "config.h"
#include "backend.h"
#include "model.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* paths are built in fixed buffers sized far beyond any test path */
#pragma GCC diagnostic ignored "-Wformat-truncation"

static int fails, checks;
#define CHECK(c, ...)                                                                                   \
	do {                                                                                            \
		checks++;                                                                               \
		if (!(c)) {                                                                             \
			fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #c);           \
			fprintf(stderr, __VA_ARGS__);                                                   \
			fprintf(stderr, "\n");                                                          \
			fails++;                                                                        \
		}                                                                                       \
	} while (0)

/* ---- a backend that only records: weight_load copies the host weight, so the test can inspect it ---- */

static int live_allocs;

static void *xdup(const void *p, size_t n)
{
	void *q = malloc(n ? n : 1);
	if (q && n) memcpy(q, p, n);
	live_allocs++;
	return q;
}

static int misaligned_inputs;
#define ALIGNED(p, n) (((uintptr_t)(p) & ((n) - 1)) == 0)

static int rec_weight_load(struct backend *be, struct weight *w, const struct host_weight *h)
{
	memset(w, 0, sizeof *w);
	/* the loader promises typed data at its natural alignment, whatever the file's header length */
	if (h->dt == DT_Q4) misaligned_inputs += !ALIGNED(h->qweight, 4) + !ALIGNED(h->qzeros, 4) + !ALIGNED(h->scales, 2);
	else misaligned_inputs += !ALIGNED(h->data, dtype_size(h->dt));
	if (h->bias) misaligned_inputs += !ALIGNED(h->bias, dtype_size(h->bias_dt));
	w->dt = h->dt;
	w->rows = h->rows;
	w->cols = h->cols;
	if (h->dt == DT_Q4) {
		size_t nq = (size_t)h->cols * h->rows / 8, ng = (size_t)h->cols / h->group;
		w->qweight = xdup(h->qweight, nq * 4);
		w->qzeros = xdup(h->qzeros, ng * h->rows / 8 * 4);
		w->scales = xdup(h->scales, ng * h->rows * 2);
		w->group = h->group;
		w->bytes = nq * 4 + ng * h->rows / 8 * 4 + ng * h->rows * 2;
	} else {
		size_t n = (size_t)h->rows * h->cols * dtype_size(h->dt);
		w->data = xdup(h->data, n);
		w->bytes = n;
	}
	if (h->bias) { /* biases as float, the way a backend keeps them for its activations */
		float *b = malloc((size_t)h->rows * sizeof *b);
		live_allocs++;
		to_f32(b, h->bias, h->bias_dt, h->rows);
		w->bias = b;
		w->bytes += (size_t)h->rows * 4;
	}
	return LM_OK;
}

static void rec_free1(void *p)
{
	if (p) {
		free(p);
		live_allocs--;
	}
}

static void rec_weight_free(struct backend *be, struct weight *w)
{
	rec_free1(w->data);
	rec_free1(w->qweight);
	rec_free1(w->qzeros);
	rec_free1(w->scales);
	rec_free1(w->bias);
}

static const struct backend_i rec_i = {
	.name = "record",
	.weight_load = rec_weight_load,
	.weight_free = rec_weight_free,
};
static struct backend rec_be = { .i = &rec_i, .act_dt = DT_F32, .act_size = 4 };

static int progress_calls, progress_last;
static int progress_stop_at; /* > 0: the callback asks the load to stop after that layer */
static bool on_progress(void *ud, int done, int total)
{
	progress_calls++;
	progress_last = done;
	(void)ud;
	(void)total;
	return progress_stop_at <= 0 || done < progress_stop_at;
}

/* a progress callback that returns false stops the load: "interrupted", nothing left allocated (the chat quit
 * while loading waited for the whole load before) */
static void check_stop(const char *dir)
{
	struct model m;
	progress_calls = 0;
	progress_stop_at = 2;
	int rc = model_load(&m, dir, &rec_be, FMT_AUTO, on_progress, NULL);
	progress_stop_at = 0;
	CHECK(rc == LM_ERR && strstr(lm_errmsg(), "interrupted") && progress_calls == 2,
	      "a load asked to stop after layer 2: rc %d, '%s', %d progress calls", rc, lm_errmsg(), progress_calls);
	if (rc == LM_OK) model_free(&m);
}

/* ---- (a) fused weights against the raw tensors ---- */

static const struct st_tensor *raw(const struct st_set *s, const char *fmt, int l, const char *sfx)
{
	char name[256], pre[256];
	snprintf(pre, sizeof pre, fmt, l);
	snprintf(name, sizeof name, "%s.%s", pre, sfx);
	const struct st_tensor *t = st_set_find(s, name);
	CHECK(t != NULL, "raw tensor %s missing", name);
	return t;
}

/* Where output row r of the fused wqkv comes from: (source index among q,k,v or the packed tensor, row). */
static void qkv_source(const struct model_config *c, int r, int *which, int *row)
{
	int hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads, g = nh / nkv;
	int h = r / hd, i = r % hd;
	if (c->arch != ARCH_INTERNLM2) {
		if (h < nh) *which = 0, *row = r;
		else if (h < nh + nkv) *which = 1, *row = r - nh * hd;
		else *which = 2, *row = r - (nh + nkv) * hd;
		return;
	}
	*which = 0;
	int j, slot;
	if (h < nh) j = h / g, slot = h % g;          /* q head h belongs to kv head h/g */
	else if (h < nh + nkv) j = h - nh, slot = g;  /* k_j */
	else j = h - nh - nkv, slot = g + 1;          /* v_j */
	*row = (j * (g + 2) + slot) * hd + i;
}

/* Compare a fused dense/AWQ weight against its sources. srcs: base names (printf with layer) of the parts,
 * in order; rows_of: each part's output rows. For wqkv, qkv=true uses qkv_source instead. */
static void check_linear(const char *model, const struct model_config *c, const struct st_set *s, int l,
			 const struct weight *w, const char *what, const char *const *srcs, const int *rows_of, int nsrc,
			 bool qkv)
{
	bool awq = c->quant_bits != 0;
	int out = w->rows, in = w->cols;
	const struct st_tensor *t[3][3] = { { 0 } }; /* [part][weight|qweight, qzeros, scales] */
	for (int p = 0; p < nsrc; p++) {
		if (!awq) t[p][0] = raw(s, srcs[p], l, "weight");
		else {
			t[p][0] = raw(s, srcs[p], l, "qweight");
			t[p][1] = raw(s, srcs[p], l, "qzeros");
			t[p][2] = raw(s, srcs[p], l, "scales");
		}
		for (int k = 0; k < 3; k++)
			if ((k == 0 || awq) && !t[p][k]) return;
	}
	int bad = 0;
	for (int r = 0; r < out && bad < 3; r++) {
		int which = 0, row = r;
		if (qkv) qkv_source(c, r, &which, &row);
		else
			for (int acc = 0; which < nsrc; acc += rows_of[which++])
				if (r < acc + rows_of[which]) {
					row = r - acc;
					break;
				}
		if (!awq) {
			size_t es = dtype_size(w->dt);
			const uint8_t *src = (const uint8_t *)t[which][0]->data + (size_t)row * in * es;
			if (w->dt != t[which][0]->dt || memcmp((uint8_t *)w->data + (size_t)r * in * es, src, in * es)) {
				CHECK(0, "%s layer %d %s: row %d differs from %s row %d", model, l, what, r,
				      t[which][0]->name, row);
				bad++;
			}
			continue;
		}
		/* AWQ: output column r is nibble slot of int32 column r/8 in qweight and qzeros: compare the
		 * word only once per 8 rows, and every scale */
		int src_cols = (int)t[which][2]->shape[1], ng = in / w->group;
		for (int gi = 0; gi < ng; gi++) {
			uint16_t a = ((const uint16_t *)w->scales)[(size_t)gi * out + r];
			uint16_t b = ((const uint16_t *)t[which][2]->data)[(size_t)gi * src_cols + row];
			if (a != b) bad++;
		}
		if (r % 8 == 0) {
			for (int ci = 0; ci < in; ci++)
				if (((const int32_t *)w->qweight)[(size_t)ci * out / 8 + r / 8] !=
				    ((const int32_t *)t[which][0]->data)[(size_t)ci * src_cols / 8 + row / 8])
					bad++;
			for (int gi = 0; gi < ng; gi++)
				if (((const int32_t *)w->qzeros)[(size_t)gi * out / 8 + r / 8] !=
				    ((const int32_t *)t[which][1]->data)[(size_t)gi * src_cols / 8 + row / 8])
					bad++;
		}
		CHECK(bad == 0, "%s layer %d %s: AWQ output row %d differs from %s row %d", model, l, what, r,
		      t[which][0]->name, row);
	}
	if (bad == 0) checks++;
	/* biases */
	if (w->bias || (c->qkv_bias && qkv)) {
		CHECK(w->bias != NULL, "%s layer %d %s: bias missing", model, l, what);
		if (!w->bias) return;
		for (int r = 0; r < out; r++) {
			int which = 0, row = r;
			if (qkv) qkv_source(c, r, &which, &row);
			const struct st_tensor *b = raw(s, srcs[which], l, "bias");
			if (!b) return;
			float v;
			to_f32(&v, (const uint8_t *)b->data + (size_t)row * dtype_size(b->dt), b->dt, 1);
			if (((const float *)w->bias)[r] != v) {
				CHECK(0, "%s layer %d %s: bias %d differs", model, l, what, r);
				return;
			}
		}
	}
}

static void check_plain(const char *model, const struct st_set *s, const struct weight *w, const char *name)
{
	const struct st_tensor *t = st_set_find(s, name);
	CHECK(t != NULL, "%s: %s missing", model, name);
	if (!t) return;
	CHECK(w->dt == t->dt && (size_t)w->rows * w->cols * dtype_size(w->dt) == t->bytes &&
		      memcmp(w->data, t->data, t->bytes) == 0,
	      "%s: weight %s differs from the file", model, name);
}

static void check_model(const char *dir, const char *label)
{
	struct model m;
	progress_calls = 0;
	int rc = model_load(&m, dir, &rec_be, FMT_AUTO, on_progress, NULL);
	CHECK(rc == LM_OK, "%s: model_load: %s", label, lm_errmsg());
	if (rc != LM_OK) return;
	const struct model_config *c = &m.cfg;
	CHECK(progress_calls == c->n_layers && progress_last == c->n_layers, "%s: progress %d calls", label,
	      progress_calls);
	struct st_set *s;
	if (st_set_open(&s, dir) != LM_OK) {
		CHECK(0, "%s: st_set_open: %s", label, lm_errmsg());
		model_free(&m);
		return;
	}
	bool il = c->arch == ARCH_INTERNLM2;
	int hd = c->head_dim, q_rows = c->n_heads * hd, kv_rows = c->n_kv_heads * hd;
	check_plain(label, s, &m.tok_embed, il ? "model.tok_embeddings.weight" : "model.embed_tokens.weight");
	check_plain(label, s, &m.final_norm, "model.norm.weight");
	if (c->tie_embed) {
		CHECK(m.lm_head.shared && m.lm_head.data == m.tok_embed.data, "%s: tied lm_head not shared", label);
	} else {
		CHECK(!m.lm_head.shared, "%s: lm_head shared but not tied", label);
		check_plain(label, s, &m.lm_head, il ? "output.weight" : "lm_head.weight");
	}
	for (int l = 0; l < c->n_layers; l++) {
		struct layer_weights *lw = &m.layers[l];
		char name[128];
		snprintf(name, sizeof name, il ? "model.layers.%d.attention_norm.weight" : "model.layers.%d.input_layernorm.weight", l);
		check_plain(label, s, &lw->attn_norm, name);
		snprintf(name, sizeof name, il ? "model.layers.%d.ffn_norm.weight" : "model.layers.%d.post_attention_layernorm.weight", l);
		check_plain(label, s, &lw->ffn_norm, name);
		CHECK(lw->wqkv.rows == q_rows + 2 * kv_rows && lw->wqkv.cols == c->dim, "%s: wqkv shape", label);
		CHECK(lw->w13.rows == 2 * c->ffn && lw->w13.cols == c->dim, "%s: w13 shape", label);
		CHECK(lw->wo.rows == c->dim && lw->wo.cols == q_rows, "%s: wo shape", label);
		CHECK(lw->w2.rows == c->dim && lw->w2.cols == c->ffn, "%s: w2 shape", label);
		CHECK((lw->wqkv.dt == DT_Q4) == (c->quant_bits == 4), "%s: wqkv dtype %d", label, lw->wqkv.dt);
		if (il) {
			static const char *const qkv[] = { "model.layers.%d.attention.wqkv" };
			static const char *const o[] = { "model.layers.%d.attention.wo" };
			static const char *const w13[] = { "model.layers.%d.feed_forward.w1", "model.layers.%d.feed_forward.w3" };
			static const char *const w2[] = { "model.layers.%d.feed_forward.w2" };
			int r13[2] = { c->ffn, c->ffn }, rd[1] = { c->dim };
			check_linear(label, c, s, l, &lw->wqkv, "wqkv", qkv, NULL, 1, true);
			check_linear(label, c, s, l, &lw->wo, "wo", o, rd, 1, false);
			check_linear(label, c, s, l, &lw->w13, "w13", w13, r13, 2, false);
			check_linear(label, c, s, l, &lw->w2, "w2", w2, rd, 1, false);
		} else {
			static const char *const qkv[] = { "model.layers.%d.self_attn.q_proj", "model.layers.%d.self_attn.k_proj",
							   "model.layers.%d.self_attn.v_proj" };
			static const char *const o[] = { "model.layers.%d.self_attn.o_proj" };
			static const char *const w13[] = { "model.layers.%d.mlp.gate_proj", "model.layers.%d.mlp.up_proj" };
			static const char *const w2[] = { "model.layers.%d.mlp.down_proj" };
			int r13[2] = { c->ffn, c->ffn }, rd[1] = { c->dim };
			check_linear(label, c, s, l, &lw->wqkv, "wqkv", qkv, NULL, 3, true);
			check_linear(label, c, s, l, &lw->wo, "wo", o, rd, 1, false);
			check_linear(label, c, s, l, &lw->w13, "w13", w13, r13, 2, false);
			check_linear(label, c, s, l, &lw->w2, "w2", w2, rd, 1, false);
		}
		CHECK(!c->qkv_bias == !lw->wqkv.bias, "%s: wqkv bias presence", label);
	}
	size_t sum = m.tok_embed.bytes + m.final_norm.bytes + (m.lm_head.shared ? 0 : m.lm_head.bytes);
	for (int l = 0; l < c->n_layers; l++) {
		struct layer_weights *lw = &m.layers[l];
		sum += lw->attn_norm.bytes + lw->wqkv.bytes + lw->wo.bytes + lw->ffn_norm.bytes + lw->w13.bytes + lw->w2.bytes;
	}
	CHECK(m.weight_bytes == sum, "%s: weight_bytes %zu, sum %zu", label, m.weight_bytes, sum);
	st_set_close(s);
	model_free(&m);
	CHECK(live_allocs == 0, "%s: %d backend allocations left after model_free", label, live_allocs);
	printf("ok: %s (%s, %d layers, %s%s) loaded and matches its raw tensors\n", label, c->arch_name, c->n_layers,
	       c->quant_bits ? "AWQ" : dtype_name(c->dtype), c->tie_embed ? ", tied" : "");
}

/* ---- (b) the two layouts of tiny-en-zh load to the same bytes ---- */

static bool same_weight(const struct weight *a, const struct weight *b)
{
	if (a->dt != b->dt || a->rows != b->rows || a->cols != b->cols || a->bytes != b->bytes) return false;
	if (!a->bias != !b->bias || (a->bias && memcmp(a->bias, b->bias, (size_t)a->rows * 4))) return false;
	if (a->dt == DT_Q4) {
		size_t nq = (size_t)a->cols * a->rows / 8, ng = (size_t)a->cols / a->group;
		return a->group == b->group && !memcmp(a->qweight, b->qweight, nq * 4) &&
		       !memcmp(a->qzeros, b->qzeros, ng * a->rows / 8 * 4) && !memcmp(a->scales, b->scales, ng * a->rows * 2);
	}
	return memcmp(a->data, b->data, (size_t)a->rows * a->cols * dtype_size(a->dt)) == 0;
}

static bool same_model(const char *label, const struct model *a, const struct model *b)
{
	int bad = 0;
	bad += !same_weight(&a->tok_embed, &b->tok_embed) + !same_weight(&a->final_norm, &b->final_norm) +
	       !same_weight(&a->lm_head, &b->lm_head);
	for (int l = 0; l < a->cfg.n_layers && l < b->cfg.n_layers; l++) {
		const struct layer_weights *x = &a->layers[l], *y = &b->layers[l];
		CHECK(same_weight(&x->wqkv, &y->wqkv), "%s: layer %d wqkv differs (InternLM2 reorder)", label, l);
		CHECK(same_weight(&x->wo, &y->wo), "%s: layer %d wo differs", label, l);
		CHECK(same_weight(&x->w13, &y->w13), "%s: layer %d w13 differs", label, l);
		CHECK(same_weight(&x->w2, &y->w2), "%s: layer %d w2 differs", label, l);
		bad += !same_weight(&x->wqkv, &y->wqkv) + !same_weight(&x->wo, &y->wo) + !same_weight(&x->w13, &y->w13) +
		       !same_weight(&x->w2, &y->w2) + !same_weight(&x->attn_norm, &y->attn_norm) +
		       !same_weight(&x->ffn_norm, &y->ffn_norm);
	}
	CHECK(bad == 0, "%s: %d weights differ", label, bad);
	return bad == 0;
}

static void check_twins(const char *llama_dir, const char *il_dir)
{
	struct model a, b;
	if (model_load(&a, llama_dir, &rec_be, FMT_HF, NULL, NULL) != LM_OK) {
		CHECK(0, "twins: %s", lm_errmsg());
		return;
	}
	if (model_load(&b, il_dir, &rec_be, FMT_AUTO, NULL, NULL) != LM_OK) {
		CHECK(0, "twins: %s", lm_errmsg());
		model_free(&a);
		return;
	}
	CHECK(a.cfg.arch == ARCH_LLAMA && b.cfg.arch == ARCH_INTERNLM2, "twins: architectures");
	same_model("twins", &a, &b);
	/* and the reorder is not the identity (else the comparison above proves nothing about it) */
	struct st_set *s;
	if (st_set_open(&s, il_dir) == LM_OK) {
		const struct st_tensor *t = st_set_find(s, "model.layers.0.attention.wqkv.weight");
		CHECK(t && t->bytes == (size_t)b.layers[0].wqkv.rows * b.layers[0].wqkv.cols * 2 &&
			      memcmp(t->data, b.layers[0].wqkv.data, t->bytes) != 0,
		      "twins: packed wqkv equal to the reordered one: the test would not see a missing reorder");
		st_set_close(s);
	}
	model_free(&a);
	model_free(&b);
	printf("ok: tiny-en-zh and tiny-en-zh-internlm2 load to byte-identical weights\n");
}

/* ---- (c) RoPE ---- */

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-30); }

static void check_rope(const char *fixtures)
{
	char path[4096];
	struct model_config c;
	float f[512];

	/* llama3: theta 500000, factor 8, low 1, high 4, original 8192; dim 64 */
	snprintf(path, sizeof path, "%s/llama3-rand/config.json", fixtures);
	if (config_load(&c, path) != LM_OK) {
		CHECK(0, "llama3-rand config: %s", lm_errmsg());
	} else {
		CHECK(c.rope.type == ROPE_LLAMA3 && c.rope.theta == 500000 && c.rope.factor == 8 &&
			      c.rope.low_freq_factor == 1 && c.rope.high_freq_factor == 4 && c.rope.orig_max_pos == 8192,
		      "llama3 rope config");
		int dim = c.head_dim, bad = 0, n_lo = 0, n_mid = 0, n_hi = 0;
		float ms = 0;
		for (int seq = 1; seq <= 1 << 20; seq *= 64) {
			rope_inv_freq(&c, seq, f, &ms);
			for (int i = 0; i < dim / 2; i++) {
				double base = pow(500000.0, -2.0 * i / dim), wl = 2 * M_PI / base, want;
				if (wl < 8192.0 / 4) want = base, n_hi++;          /* short wavelengths kept */
				else if (wl > 8192.0 / 1) want = base / 8, n_lo++; /* long ones slowed 8x */
				else {
					double sm = (8192.0 / wl - 1) / (4 - 1);
					want = (1 - sm) * base / 8 + sm * base, n_mid++;
				}
				if (rel(f[i], want) > 1e-6) bad++;
			}
		}
		CHECK(bad == 0 && n_lo && n_mid && n_hi && ms == 1.0f, "llama3 inv_freq: %d bad (lo %d mid %d hi %d)", bad,
		      n_lo, n_mid, n_hi);
		printf("ok: llama3 RoPE (%d high, %d medium, %d low frequencies)\n", n_hi / 4, n_mid / 4, n_lo / 4);
	}

	/* dynamic NTK: theta 1e6, factor 2, max_pos 32768, dim 64 */
	snprintf(path, sizeof path, "%s/llama-dynrope-rand/config.json", fixtures);
	if (config_load(&c, path) != LM_OK) {
		CHECK(0, "llama-dynrope-rand config: %s", lm_errmsg());
	} else {
		CHECK(c.rope.type == ROPE_DYNAMIC && c.rope.factor == 2 && c.rope.orig_max_pos == 32768, "dynamic config");
		static const int seqs[] = { 1, 100, 32768, 32769, 65536, 100000 };
		int dim = c.head_dim, bad = 0;
		for (size_t k = 0; k < sizeof seqs / sizeof *seqs; k++) {
			rope_inv_freq(&c, seqs[k], f, NULL);
			/* at or below max_pos the base is theta; 65536 = 2 x max_pos gives (2*2 - 1)^(64/62) */
			double base = 1e6;
			if (seqs[k] == 65536) base = 1e6 * pow(3.0, 64.0 / 62.0);
			else if (seqs[k] > 32768) base = 1e6 * pow(2.0 * seqs[k] / 32768 - 1, (double)dim / (dim - 2));
			for (int i = 0; i < dim / 2; i++)
				if (rel(f[i], pow(base, -2.0 * i / dim)) > 1e-6) bad++;
		}
		CHECK(bad == 0, "dynamic inv_freq: %d bad", bad);
		/* it must actually grow the base past max_pos (lowest frequency falls) */
		float a[64], b[64];
		rope_inv_freq(&c, 32768, a, NULL);
		rope_inv_freq(&c, 65536, b, NULL);
		CHECK(b[dim / 2 - 1] < a[dim / 2 - 1] * 0.9f && a[0] == 1.0f && b[0] == 1.0f, "dynamic base growth");
		printf("ok: dynamic NTK RoPE at %zu sequence lengths\n", sizeof seqs / sizeof *seqs);
	}

	/* internlm2-rand: the same rope written with classic keys */
	snprintf(path, sizeof path, "%s/internlm2-rand/config.json", fixtures);
	if (config_load(&c, path) == LM_OK) {
		CHECK(c.rope.type == ROPE_DYNAMIC && c.rope.theta == 1e6f && c.rope.factor == 2 && c.arch == ARCH_INTERNLM2 &&
			      c.dtype == DT_F16 && !c.qkv_bias,
		      "internlm2 classic rope keys");
	} else {
		CHECK(0, "internlm2-rand config: %s", lm_errmsg());
	}
}

/* ---- (d) bad input ---- */

static char tmpdir[4096];

static void write_bytes(const char *path, const void *p, size_t n)
{
	FILE *fp = fopen(path, "wb");
	if (!fp || fwrite(p, 1, n, fp) != n) {
		fprintf(stderr, "cannot write %s\n", path);
		exit(99);
	}
	fclose(fp);
}

/* A safetensors file with this header text and data_len zero bytes of data. */
static void write_st(const char *path, const char *header, size_t data_len)
{
	size_t hl = strlen(header);
	size_t n = 8 + hl + data_len;
	uint8_t *b = calloc(1, n);
	for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
	memcpy(b + 8, header, hl);
	write_bytes(path, b, n);
	free(b);
}

static void expect_st_fail(const char *desc, const char *path, const char *want)
{
	struct st_file *f = NULL;
	lm_err_clear();
	int rc = st_open(&f, path);
	const char *msg = lm_errmsg();
	CHECK(rc == LM_ERR && f == NULL, "%s: st_open succeeded", desc);
	CHECK(strstr(msg, path) != NULL, "%s: message '%s' does not name the file", desc, msg);
	CHECK(!want || strstr(msg, want) != NULL, "%s: message '%s' lacks '%s'", desc, msg, want);
	if (rc == LM_ERR) printf("ok: %s: %s\n", desc, msg);
	if (f) st_close(f);
}

static void check_bad_safetensors(void)
{
	char p[4200];
	snprintf(p, sizeof p, "%s/bad.safetensors", tmpdir);

	write_bytes(p, "\x10\0\0", 3);
	expect_st_fail("truncated to 3 bytes", p, NULL);
	write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
	{ /* valid, then truncated inside the data */
		struct st_file *f;
		CHECK(st_open(&f, p) == LM_OK, "hand-written file: %s", lm_errmsg());
		if (f) {
			CHECK(st_count(f) == 1 && st_find(f, "a") && st_find(f, "a")->bytes == 8, "hand-written file content");
			st_close(f);
		}
		if (truncate(p, 8 + 52 + 4) != 0) perror("truncate");
		expect_st_fail("truncated data", p, "'a'");
	}
	{ /* header length past the end */
		uint8_t b[16] = { 0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}' };
		write_bytes(p, b, sizeof b);
		expect_st_fail("header length past the end", p, "header length");
		uint8_t c[16] = { 0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}' };
		write_bytes(p, c, sizeof c);
		expect_st_fail("huge header length", p, "header length");
	}
	write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 16);
	expect_st_fail("offset past the end", p, "'w'");
	write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
		    "\"v\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[12,16]}}", 16);
	expect_st_fail("overlapping tensors", p, "overlaps");
	write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,16]}}", 16);
	expect_st_fail("byte count not matching shape", p, "'w'");
	write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}", 16);
	expect_st_fail("begin after end", p, "'w'");
	write_st(p, "{\"w\":{\"dtype\":\"Q7\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16);
	expect_st_fail("unknown dtype", p, "Q7");
	write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}", 16);
	expect_st_fail("malformed header JSON", p, "JSON");
	write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", 16);
	expect_st_fail("negative dimension", p, "'w'");
	write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,16]}}", 16);
	expect_st_fail("shape overflowing 64 bits", p, "'w'");
	write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
		    "\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}", 32);
	expect_st_fail("duplicate tensor", p, "'w'");
	write_st(p, "[1,2]", 0);
	expect_st_fail("header not an object", p, NULL);
	write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4);
	expect_st_fail("data_offsets with one entry", p, "'w'");
	write_st(p, "{\"__metadata__\":{\"k\":3}}", 0);
	expect_st_fail("metadata value not a string", p, "__metadata__");
	snprintf(p, sizeof p, "%s/does-not-exist.safetensors", tmpdir);
	expect_st_fail("missing file", p, NULL);
}

/* A model directory in tmpdir/name made from a source model: config edited by edit(), tensors copied except
 * skip (may be NULL), and with tensor reshape renamed to a smaller shape if given. */
static void make_model(const char *name, const char *src, void (*edit)(cJSON *), const char *skip, char *out,
		       size_t outn)
{
	snprintf(out, outn, "%s/%s", tmpdir, name);
	mkdir(out, 0755);
	char path[4300];
	snprintf(path, sizeof path, "%s/config.json", src);
	FILE *fp = fopen(path, "rb");
	static char buf[1 << 16];
	size_t n = fp ? fread(buf, 1, sizeof buf - 1, fp) : 0;
	if (fp) fclose(fp);
	buf[n] = 0;
	cJSON *cfg = cJSON_Parse(buf);
	if (edit) edit(cfg);
	char *txt = cJSON_Print(cfg);
	snprintf(path, sizeof path, "%s/config.json", out);
	write_bytes(path, txt, strlen(txt));
	free(txt);
	cJSON_Delete(cfg);

	struct st_set *s;
	if (st_set_open(&s, src) != LM_OK) {
		fprintf(stderr, "%s\n", lm_errmsg());
		exit(99);
	}
	int cnt = st_set_count(s), k = 0;
	struct st_out *o = calloc((size_t)cnt, sizeof *o);
	for (int i = 0; i < cnt; i++) {
		const struct st_tensor *t = st_set_get(s, i);
		if (skip && strcmp(t->name, skip) == 0) continue;
		o[k] = (struct st_out){ .name = t->name, .dt = t->dt, .ndim = t->ndim, .data = t->data };
		memcpy(o[k].shape, t->shape, sizeof t->shape);
		k++;
	}
	snprintf(path, sizeof path, "%s/model.safetensors", out);
	if (st_write(path, o, k, NULL) != LM_OK) {
		fprintf(stderr, "%s\n", lm_errmsg());
		exit(99);
	}
	free(o);
	st_set_close(s);
}

static void expect_load_fail(const char *desc, const char *dir, enum model_format fmt, const char *file,
			     const char *what)
{
	struct model m;
	lm_err_clear();
	int rc = model_load(&m, dir, &rec_be, fmt, NULL, NULL);
	const char *msg = lm_errmsg();
	CHECK(rc == LM_ERR, "%s: model_load succeeded", desc);
	if (rc == LM_OK) {
		model_free(&m);
		return;
	}
	CHECK(strstr(msg, file) != NULL, "%s: message '%s' does not name '%s'", desc, msg, file);
	CHECK(!what || strstr(msg, what) != NULL, "%s: message '%s' lacks '%s'", desc, msg, what);
	CHECK(live_allocs == 0, "%s: %d backend allocations leaked", desc, live_allocs);
	printf("ok: %s: %s\n", desc, msg);
}

static void edit_arch(cJSON *c) { cJSON_ReplaceItemInObject(c, "architectures", cJSON_CreateStringArray((const char *[]){ "GPT9ForCausalLM" }, 1)); }
static void edit_ffn(cJSON *c) { cJSON_ReplaceItemInObject(c, "intermediate_size", cJSON_CreateNumber(320)); }
static void edit_nohidden(cJSON *c) { cJSON_DeleteItemFromObject(c, "hidden_size"); }
static void edit_heads(cJSON *c) { cJSON_ReplaceItemInObject(c, "num_key_value_heads", cJSON_CreateNumber(3)); }
static void edit_rope(cJSON *c)
{
	cJSON *r = cJSON_GetObjectItem(c, "rope_parameters");
	cJSON_ReplaceItemInObject(r, "rope_type", cJSON_CreateString("yarn"));
}
static void edit_quant(cJSON *c)
{
	cJSON *q = cJSON_GetObjectItem(c, "quantization_config");
	cJSON_ReplaceItemInObject(q, "version", cJSON_CreateString("gemv"));
}
static void edit_gptq(cJSON *c)
{
	cJSON *q = cJSON_GetObjectItem(c, "quantization_config");
	cJSON_ReplaceItemInObject(q, "quant_method", cJSON_CreateString("gptq"));
}
static void edit_add_awq(cJSON *c)
{
	cJSON *q = cJSON_AddObjectToObject(c, "quantization_config");
	cJSON_AddStringToObject(q, "quant_method", "awq");
	cJSON_AddNumberToObject(q, "bits", 4);
	cJSON_AddNumberToObject(q, "group_size", 128);
}
static void edit_vocab(cJSON *c) { cJSON_ReplaceItemInObject(c, "vocab_size", cJSON_CreateString("8192")); }

static void check_bad_models(const char *fixtures)
{
	char src[4096], d[4096], p[4300];
	snprintf(src, sizeof src, "%s/llama3-rand", fixtures);

	make_model("ok", src, NULL, NULL, d, sizeof d);
	{
		struct model m;
		int rc = model_load(&m, d, &rec_be, FMT_AUTO, NULL, NULL);
		CHECK(rc == LM_OK, "rewritten llama3-rand: %s", lm_errmsg());
		if (rc == LM_OK) model_free(&m);
	}
	snprintf(p, sizeof p, "%s/config.json", d);
	write_bytes(p, "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 128,,}", 62);
	expect_load_fail("malformed config.json", d, FMT_AUTO, p, "JSON");
	write_bytes(p, "", 0);
	expect_load_fail("empty config.json", d, FMT_AUTO, p, NULL);
	unlink(p);
	expect_load_fail("missing config.json", d, FMT_AUTO, p, NULL);

	make_model("arch", src, edit_arch, NULL, d, sizeof d);
	expect_load_fail("unknown architecture", d, FMT_AUTO, "config.json", "GPT9ForCausalLM");
	make_model("nohidden", src, edit_nohidden, NULL, d, sizeof d);
	expect_load_fail("config without hidden_size", d, FMT_AUTO, "config.json", "hidden_size");
	make_model("heads", src, edit_heads, NULL, d, sizeof d);
	expect_load_fail("kv heads not dividing heads", d, FMT_AUTO, "config.json", "num_key_value_heads");
	make_model("yarn", src, edit_rope, NULL, d, sizeof d);
	expect_load_fail("unsupported rope type", d, FMT_AUTO, "config.json", "yarn");
	make_model("vocab", src, edit_vocab, NULL, d, sizeof d);
	expect_load_fail("vocab_size a string", d, FMT_AUTO, "config.json", "vocab_size");
	make_model("missing", src, NULL, "model.layers.1.mlp.up_proj.weight", d, sizeof d);
	snprintf(p, sizeof p, "%s/model.safetensors", d);
	expect_load_fail("missing tensor", d, FMT_AUTO, p, "model.layers.1.mlp.up_proj.weight");
	make_model("shape", src, edit_ffn, NULL, d, sizeof d);
	expect_load_fail("shape disagreeing with config", d, FMT_AUTO, "model.safetensors", "[320, 128]");
	make_model("fmt", src, NULL, NULL, d, sizeof d);
	expect_load_fail("--model-format awq on a dense model", d, FMT_AWQ, d, "awq");

	/* truncated weights through model_load */
	snprintf(p, sizeof p, "%s/model.safetensors", d);
	struct stat st;
	if (stat(p, &st) == 0 && truncate(p, st.st_size / 2) == 0)
		expect_load_fail("truncated model.safetensors", d, FMT_AUTO, p, "past the end");

	/* an index naming a shard that is not there, and a tensor its shard lacks */
	make_model("index", src, NULL, NULL, d, sizeof d);
	snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
	const char *idx1 = "{\"weight_map\": {\"lm_head.weight\": \"model.safetensors\", "
			   "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"}}";
	write_bytes(p, idx1, strlen(idx1));
	expect_load_fail("index naming a missing shard", d, FMT_AUTO, "model-00002-of-00002.safetensors", "model.norm.weight");
	const char *idx2 = "{\"weight_map\": {\"lm_head.weight\": \"model.safetensors\", \"model.extra.weight\": \"model.safetensors\"}}";
	write_bytes(p, idx2, strlen(idx2));
	expect_load_fail("index naming a tensor its shard lacks", d, FMT_AUTO, "model.safetensors.index.json", "model.extra.weight");
	const char *idx3 = "{\"weight_map\": {\"lm_head.weight\": \"../../etc/passwd\"}}";
	write_bytes(p, idx3, strlen(idx3));
	expect_load_fail("index naming a shard outside the directory", d, FMT_AUTO, "model.safetensors.index.json", "lm_head.weight");
	write_bytes(p, "{\"weight_map\": [", 16);
	expect_load_fail("malformed index", d, FMT_AUTO, "model.safetensors.index.json", "JSON");

	/* an lm_head alone in the last shard, which the index leaves out: the model tied its embeddings without a
	 * word; now the shard the index does not name is refused. Named, the same shards load with their lm_head. */
	make_model("unnamed", src, NULL, "lm_head.weight", d, sizeof d);
	{
		char a[4200], b[4200];
		snprintf(a, sizeof a, "%s/model.safetensors", d);
		snprintf(b, sizeof b, "%s/model-00001-of-00002.safetensors", d);
		CHECK(rename(a, b) == 0, "rename %s", a);
		struct st_set *ss;
		CHECK(st_set_open(&ss, src) == LM_OK, "%s: %s", src, lm_errmsg());
		const struct st_tensor *t = st_set_find(ss, "lm_head.weight");
		struct st_out head = { .name = t->name, .dt = t->dt, .ndim = t->ndim, .data = t->data };
		memcpy(head.shape, t->shape, sizeof t->shape);
		snprintf(b, sizeof b, "%s/model-00002-of-00002.safetensors", d);
		CHECK(st_write(b, &head, 1, NULL) == LM_OK, "%s: %s", b, lm_errmsg());
		st_set_close(ss);
		snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
		const char *idx4 = "{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00002.safetensors\"}}";
		write_bytes(p, idx4, strlen(idx4));
		expect_load_fail("an index leaving out the shard of lm_head", d, FMT_AUTO, "model-00002-of-00002.safetensors",
				 "lm_head.weight");
		const char *idx5 = "{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00002.safetensors\", "
				   "\"lm_head.weight\": \"model-00002-of-00002.safetensors\"}}";
		write_bytes(p, idx5, strlen(idx5));
		struct model m;
		int rc = model_load(&m, d, &rec_be, FMT_AUTO, NULL, NULL);
		CHECK(rc == LM_OK && !m.lm_head.shared, "lm_head in a shard of its own, named: %s",
		      rc == LM_OK ? "tied" : lm_errmsg());
		if (rc == LM_OK) model_free(&m);
	}

	/* AWQ: the wrong --model-format, and unsupported quantization configs */
	snprintf(src, sizeof src, "%s/llama3-rand-awq", fixtures);
	expect_load_fail("--model-format hf on an AWQ model", src, FMT_HF, src, "awq");
	make_model("gemv", src, edit_quant, NULL, d, sizeof d);
	expect_load_fail("AWQ gemv version", d, FMT_AUTO, "config.json", "quantization_config.version");
	/* AutoAWQ's tensors under a GPTQ config: GPTQ's qweight is [in/8][out], not AutoAWQ's [in][out/8] */
	make_model("gptq", src, edit_gptq, NULL, d, sizeof d);
	expect_load_fail("AWQ tensors, GPTQ config", d, FMT_AUTO, "model.safetensors", "qweight' has shape [128, 16], but config.json implies [16, 128]");
	expect_load_fail("--model-format awq on a GPTQ config", d, FMT_AWQ, d, "use --model-format gptq");
	make_model("awqmissing", src, NULL, "model.layers.0.self_attn.k_proj.scales", d, sizeof d);
	expect_load_fail("AWQ scales missing", d, FMT_AUTO, "model.safetensors", "model.layers.0.self_attn.k_proj.scales");
	/* a dense checkpoint whose config.json claims AWQ */
	snprintf(src, sizeof src, "%s/llama3-rand", fixtures);
	make_model("dense-as-awq", src, edit_add_awq, NULL, d, sizeof d);
	expect_load_fail("dense weights, AWQ config", d, FMT_AUTO, "model.safetensors", "dense");
}

/* ---- (e) st_write round trip ---- */

/* ---- mutated headers: whatever st_open accepts must be self-consistent, and nothing may crash ---- */

static uint64_t mut_rng = 0x243f6a8885a308d3ull;
static uint32_t mut_next(void)
{
	mut_rng ^= mut_rng << 13;
	mut_rng ^= mut_rng >> 7;
	mut_rng ^= mut_rng << 17;
	return (uint32_t)(mut_rng >> 11);
}

static int cmp_ptr(const void *a, const void *b)
{
	const struct st_tensor *x = *(const struct st_tensor *const *)a, *y = *(const struct st_tensor *const *)b;
	return x->data < y->data ? -1 : x->data > y->data;
}

static void check_mutations(void)
{
	char p[4200];
	snprintf(p, sizeof p, "%s/m.safetensors", tmpdir);
	float a[12] = { 0 };
	uint16_t b[6] = { 0 };
	struct st_out o[3] = {
		{ .name = "a", .dt = DT_F32, .ndim = 2, .shape = { 3, 4 }, .data = a },
		{ .name = "b", .dt = DT_BF16, .ndim = 1, .shape = { 6 }, .data = b },
		{ .name = "c", .dt = DT_I8, .ndim = 3, .shape = { 1, 2, 3 }, .data = b },
	};
	const char *meta[] = { "format", "pt", NULL };
	if (st_write(p, o, 3, meta) != LM_OK) {
		CHECK(0, "st_write: %s", lm_errmsg());
		return;
	}
	FILE *fp = fopen(p, "rb");
	static uint8_t orig[4096], buf[4096];
	size_t n = fread(orig, 1, sizeof orig, fp);
	fclose(fp);
	static const char alphabet[] = "{}[]\":,0123456789-e. FIBU";
	int accepted = 0, rejected = 0, bad = 0;
	for (int it = 0; it < 3000; it++) {
		memcpy(buf, orig, n);
		size_t len = n;
		int edits = 1 + mut_next() % 3;
		for (int e = 0; e < edits; e++) {
			size_t at = mut_next() % len;
			switch (mut_next() % 4) {
			case 0: buf[at] = (uint8_t)mut_next(); break;                          /* any byte */
			case 1: buf[at] = (uint8_t)alphabet[mut_next() % (sizeof alphabet - 1)]; break; /* JSON-ish */
			case 2: len = 1 + mut_next() % len; break;                              /* truncate */
			case 3: buf[mut_next() % 8] = (uint8_t)mut_next(); break;               /* header length */
			}
		}
		write_bytes(p, buf, len);
		struct st_file *f;
		if (st_open(&f, p) != LM_OK) {
			rejected++;
			if (!strstr(lm_errmsg(), p)) bad++;
			continue;
		}
		accepted++;
		/* what was accepted: sizes match shapes, data inside the file, no overlaps */
		int cnt = st_count(f);
		const struct st_tensor **v = calloc((size_t)cnt + 1, sizeof *v);
		const uint8_t *lo = NULL;
		for (int i = 0; i < cnt; i++) {
			const struct st_tensor *t = st_get(f, i);
			size_t want = dtype_size(t->dt);
			for (int d = 0; d < t->ndim; d++) want *= (size_t)t->shape[d];
			if (want != t->bytes) bad++;
			v[i] = t;
			if (!lo || (const uint8_t *)t->data < lo) lo = t->data;
		}
		qsort(v, cnt, sizeof *v, cmp_ptr);
		for (int i = 0; i < cnt; i++) {
			const uint8_t *d = v[i]->data;
			if (i + 1 < cnt && v[i]->bytes && v[i + 1]->bytes && d + v[i]->bytes > (const uint8_t *)v[i + 1]->data)
				bad++;
			/* the data must lie within the file: its end at most len bytes after the header start */
			if (lo && d + v[i]->bytes > lo + len) bad++;
			volatile uint8_t sum = 0;
			for (size_t k = 0; k < v[i]->bytes; k++) sum += d[k];
		}
		free(v);
		st_close(f);
	}
	CHECK(bad == 0 && accepted > 0 && rejected > 0, "mutations: %d inconsistent (accepted %d, rejected %d)", bad,
	      accepted, rejected);
	printf("ok: 3000 mutated headers: %d accepted and consistent, %d rejected with a message naming the file\n",
	       accepted, rejected);
}

/* ---- an AWQ InternLM2 and its Llama twin, made here: the reorder must move AWQ's packed columns too ---- */

static void rand_fill(void *p, size_t bytes)
{
	for (size_t i = 0; i < bytes; i++) ((uint8_t *)p)[i] = (uint8_t)mut_next();
}

/* Output columns [c0, c0 + n) of an AWQ tensor [rows][cols] of unit-byte elements, appended to dst [rows][dcols]
 * at column d0. */
static void copy_cols(uint8_t *dst, int dcols, int d0, const uint8_t *src, int cols, int c0, int n, int rows, int unit)
{
	for (int r = 0; r < rows; r++)
		memcpy(dst + ((size_t)r * dcols + d0) * unit, src + ((size_t)r * cols + c0) * unit, (size_t)n * unit);
}

static void check_awq_twins(void)
{
	enum { DIM = 128, NH = 4, NKV = 2, HD = 32, FFN = 256, G = 64, VOCAB = 64, L = 2, G2 = NH / NKV };
	const int QKV = (NH + 2 * NKV) * HD;
	char dl[4200], di[4200], p[4300];
	snprintf(dl, sizeof dl, "%s/awq-llama", tmpdir);
	snprintf(di, sizeof di, "%s/awq-internlm2", tmpdir);
	mkdir(dl, 0755);
	mkdir(di, 0755);
	const char *cfg_fmt = "{\"architectures\": [\"%s\"], \"hidden_size\": %d, \"num_attention_heads\": %d, "
			      "\"num_key_value_heads\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, "
			      "\"vocab_size\": %d, \"%s\": true, \"torch_dtype\": \"float16\", \"rms_norm_eps\": 1e-6, "
			      "\"quantization_config\": {\"quant_method\": \"awq\", \"version\": \"GEMM\", \"bits\": 4, "
			      "\"group_size\": %d, \"zero_point\": true}}";
	char cfg[1024];
	snprintf(p, sizeof p, "%s/config.json", dl);
	snprintf(cfg, sizeof cfg, cfg_fmt, "LlamaForCausalLM", DIM, NH, NKV, FFN, L, VOCAB, "attention_bias", G);
	write_bytes(p, cfg, strlen(cfg));
	snprintf(p, sizeof p, "%s/config.json", di);
	snprintf(cfg, sizeof cfg, cfg_fmt, "InternLM2ForCausalLM", DIM, NH, NKV, FFN, L, VOCAB, "bias", G);
	write_bytes(p, cfg, strlen(cfg));

	/* Llama side: every tensor random; InternLM2 side: the same bytes, q/k/v packed per kv head */
	struct st_out lo[128], io[128];
	void *mem[256];
	int nl = 0, ni = 0, nm = 0;
#define T(arr, n, nm_, dt_, d0, d1, nd)                                                                       \
	(arr[n] = (struct st_out){ .name = strdup(nm_), .dt = dt_, .ndim = nd, .shape = { d0, d1 } }, &arr[n++])
	char name[160];
	struct st_out *t;
	t = T(lo, nl, "model.embed_tokens.weight", DT_F16, VOCAB, DIM, 2);
	t->data = mem[nm++] = malloc(VOCAB * DIM * 2);
	rand_fill((void *)t->data, VOCAB * DIM * 2);
	T(io, ni, "model.tok_embeddings.weight", DT_F16, VOCAB, DIM, 2)->data = t->data;
	t = T(lo, nl, "lm_head.weight", DT_F16, VOCAB, DIM, 2);
	t->data = mem[nm++] = malloc(VOCAB * DIM * 2);
	rand_fill((void *)t->data, VOCAB * DIM * 2);
	T(io, ni, "output.weight", DT_F16, VOCAB, DIM, 2)->data = t->data;
	t = T(lo, nl, "model.norm.weight", DT_F16, DIM, 0, 1);
	t->data = mem[nm++] = malloc(DIM * 2);
	rand_fill((void *)t->data, DIM * 2);
	T(io, ni, "model.norm.weight", DT_F16, DIM, 0, 1)->data = t->data;
	for (int l = 0; l < L; l++) {
		static const char *const ln[] = { "input_layernorm", "post_attention_layernorm" };
		static const char *const in_[] = { "attention_norm", "ffn_norm" };
		for (int k = 0; k < 2; k++) {
			snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, ln[k]);
			t = T(lo, nl, name, DT_F16, DIM, 0, 1);
			t->data = mem[nm++] = malloc(DIM * 2);
			rand_fill((void *)t->data, DIM * 2);
			snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, in_[k]);
			T(io, ni, name, DT_F16, DIM, 0, 1)->data = t->data;
		}
		/* linears: (llama name, internlm2 name, in, out); q,k,v are packed below */
		static const char *const lin[][2] = { { "self_attn.o_proj", "attention.wo" }, { "mlp.gate_proj", "feed_forward.w1" },
						      { "mlp.up_proj", "feed_forward.w3" }, { "mlp.down_proj", "feed_forward.w2" },
						      { "self_attn.q_proj", NULL }, { "self_attn.k_proj", NULL },
						      { "self_attn.v_proj", NULL } };
		const int lin_in[] = { NH * HD, DIM, DIM, FFN, DIM, DIM, DIM };
		const int lin_out[] = { DIM, FFN, FFN, DIM, NH * HD, NKV * HD, NKV * HD };
		const uint8_t *qkv_src[3][4]; /* [q,k,v][qweight, qzeros, scales, bias] */
		static const char *const sfx[] = { "qweight", "qzeros", "scales", "bias" };
		for (int k = 0; k < 7; k++) {
			int in = lin_in[k], out = lin_out[k];
			const int rows[4] = { in, in / G, in / G, out }, cols[4] = { out / 8, out / 8, out, 0 };
			const enum dtype dts[4] = { DT_I32, DT_I32, DT_F16, DT_F16 };
			for (int s = 0; s < 4; s++) {
				bool bias = s == 3;
				if (bias && k != 0 && k < 4) continue; /* biases: q, k, v and o */
				size_t bytes = (size_t)rows[s] * (bias ? 1 : cols[s]) * dtype_size(dts[s]);
				snprintf(name, sizeof name, "model.layers.%d.%s.%s", l, lin[k][0], sfx[s]);
				t = T(lo, nl, name, dts[s], rows[s], cols[s], bias ? 1 : 2);
				t->data = mem[nm++] = malloc(bytes);
				rand_fill((void *)t->data, bytes);
				if (k >= 4) qkv_src[k - 4][s] = t->data;
				else {
					snprintf(name, sizeof name, "model.layers.%d.%s.%s", l, lin[k][1], sfx[s]);
					T(io, ni, name, dts[s], rows[s], cols[s], bias ? 1 : 2)->data = t->data;
				}
			}
		}
		/* packed wqkv: for kv head j: q heads j*G2.., k_j, v_j, as column blocks */
		const int rows[4] = { DIM, DIM / G, DIM / G, 1 }, unit[4] = { 4, 4, 2, 2 }, per[4] = { HD / 8, HD / 8, HD, HD };
		const int width[3] = { NH, NKV, NKV };
		for (int s = 0; s < 4; s++) {
			int dcols = QKV / (s < 2 ? 8 : 1);
			uint8_t *dst = mem[nm++] = malloc((size_t)rows[s] * dcols * unit[s]);
			int at = 0;
			for (int j = 0; j < NKV; j++) {
				for (int i = 0; i < G2; i++, at += per[s])
					copy_cols(dst, dcols, at, qkv_src[0][s], width[0] * per[s], (j * G2 + i) * per[s], per[s], rows[s], unit[s]);
				copy_cols(dst, dcols, at, qkv_src[1][s], width[1] * per[s], j * per[s], per[s], rows[s], unit[s]);
				at += per[s];
				copy_cols(dst, dcols, at, qkv_src[2][s], width[2] * per[s], j * per[s], per[s], rows[s], unit[s]);
				at += per[s];
			}
			snprintf(name, sizeof name, "model.layers.%d.attention.wqkv.%s", l, sfx[s]);
			if (s == 3) T(io, ni, name, DT_F16, QKV, 0, 1)->data = dst;
			else T(io, ni, name, s < 2 ? DT_I32 : DT_F16, rows[s], dcols, 2)->data = dst;
		}
	}
#undef T
	snprintf(p, sizeof p, "%s/model.safetensors", dl);
	CHECK(st_write(p, lo, nl, NULL) == LM_OK, "awq twins: %s", lm_errmsg());
	snprintf(p, sizeof p, "%s/model.safetensors", di);
	CHECK(st_write(p, io, ni, NULL) == LM_OK, "awq twins: %s", lm_errmsg());
	for (int i = 0; i < nl; i++) free((char *)lo[i].name);
	for (int i = 0; i < ni; i++) free((char *)io[i].name);
	for (int i = 0; i < nm; i++) free(mem[i]);

	struct model a, b;
	if (model_load(&a, dl, &rec_be, FMT_AWQ, NULL, NULL) != LM_OK) {
		CHECK(0, "awq llama: %s", lm_errmsg());
		return;
	}
	if (model_load(&b, di, &rec_be, FMT_AWQ, NULL, NULL) != LM_OK) {
		CHECK(0, "awq internlm2: %s", lm_errmsg());
		model_free(&a);
		return;
	}
	CHECK(a.layers[0].wqkv.dt == DT_Q4 && a.layers[0].wqkv.bias && a.layers[0].wo.bias && !a.layers[0].w13.bias,
	      "awq twins: Q4 with q/k/v/o biases");
	if (same_model("awq twins", &a, &b))
		printf("ok: AWQ InternLM2 (4 heads, 2 KV heads, biases) and its Llama twin load to identical weights\n");
	model_free(&a);
	model_free(&b);
	CHECK(live_allocs == 0, "awq twins: leaked %d", live_allocs);
}

/* ---- config.json: key variants and defaults ---- */

static int load_cfg_text(const char *sub, const char *text, const char *gen, struct model_config *c, char *path,
			 size_t n)
{
	char d[4200], g[4300];
	snprintf(d, sizeof d, "%s/%s", tmpdir, sub);
	mkdir(d, 0755);
	snprintf(path, n, "%s/config.json", d);
	write_bytes(path, text, strlen(text));
	snprintf(g, sizeof g, "%s/generation_config.json", d);
	if (gen) write_bytes(g, gen, strlen(gen));
	else unlink(g);
	lm_err_clear();
	return config_load(c, path);
}

/* Phi-3: Phi-3-mini-128k-instruct's config.json as published, but for its factor lists (48 values each, made
 * here): longrope ("su" in the first configs), original_max_position_embeddings 4096 at the top level, so the
 * attention factor is sqrt(1 + ln(131072 / 4096) / ln 4096); short factors up to 4096 tokens, long ones beyond.
 * Phi-3-mini-4k's: default RoPE, its sliding_window 2047 kept for the note. */
static void check_phi3_config(void)
{
	struct model_config c;
	char path[4300], text[8192], sf[1024] = "", lf[1024] = "";
	for (int i = 0; i < 48; i++) {
		snprintf(sf + strlen(sf), sizeof sf - strlen(sf), "%s%g", i ? ", " : "", 1.0 + 0.02 * i);
		snprintf(lf + strlen(lf), sizeof lf - strlen(lf), "%s%g", i ? ", " : "", 1.0 + 0.5 * i);
	}
	static const char *const types[] = { "\"type\": \"longrope\"", "\"type\": \"su\"" };
	for (int k = 0; k < 2; k++) {
		snprintf(text, sizeof text,
			 "{\"architectures\": [\"Phi3ForCausalLM\"], \"attention_bias\": false, \"bos_token_id\": 1,"
			 " \"eos_token_id\": 32000, \"hidden_act\": \"silu\", \"hidden_size\": 3072,"
			 " \"intermediate_size\": 8192, \"max_position_embeddings\": 131072, \"model_type\": \"phi3\","
			 " \"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"num_key_value_heads\": 32,"
			 " \"original_max_position_embeddings\": 4096, \"rms_norm_eps\": 1e-05, \"rope_scaling\": {%s,"
			 " \"short_factor\": [%s], \"long_factor\": [%s]}, \"rope_theta\": 10000.0,"
			 " \"sliding_window\": 262144, \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\","
			 " \"vocab_size\": 32064}",
			 types[k], sf, lf);
		int rc = load_cfg_text("phi3-128k", text, NULL, &c, path, sizeof path);
		CHECK(rc == LM_OK, "phi-3-mini-128k config (%s): %s", types[k], lm_errmsg());
		if (rc != LM_OK) continue;
		CHECK(c.arch == ARCH_PHI3 && !strcmp(c.model_type, "phi3") && c.head_dim == 96 && c.n_kv_heads == 32 &&
			      !c.tie_embed && !c.qkv_bias && c.sliding_window == 262144 && c.rope.type == ROPE_LONGROPE &&
			      c.rope.orig_max_pos == 4096 && c.rope.factor == 32,
		      "phi-3-mini-128k fields");
		float a[48], b[48], ma, mb;
		rope_inv_freq(&c, 4096, a, &ma);
		rope_inv_freq(&c, 4097, b, &mb);
		int bad = 0;
		for (int i = 0; i < 48; i++) {
			double f = pow(10000.0, -2.0 * i / 96);
			bad += rel(a[i], f / (1.0 + 0.02 * i)) > 1e-6;
			bad += rel(b[i], f / (1.0 + 0.5 * i)) > 1e-6;
		}
		double af = sqrt(1 + log(32.0) / log(4096.0));
		CHECK(bad == 0 && fabs(ma - af) < 1e-6 && ma == mb, "longrope: %d bad, attention factor %g (want %g)", bad,
		      ma, af);
	}
	int rc = load_cfg_text("phi3-4k",
			       "{\"architectures\": [\"Phi3ForCausalLM\"], \"hidden_size\": 3072, \"intermediate_size\": 8192,"
			       " \"max_position_embeddings\": 4096, \"model_type\": \"phi3\", \"num_attention_heads\": 32,"
			       " \"num_hidden_layers\": 32, \"num_key_value_heads\": 32, \"original_max_position_embeddings\": 4096,"
			       " \"rope_scaling\": null, \"sliding_window\": 2047, \"vocab_size\": 32064}",
			       NULL, &c, path, sizeof path);
	float a[48], ms;
	if (rc == LM_OK) rope_inv_freq(&c, 5000, a, &ms);
	CHECK(rc == LM_OK && c.sliding_window == 2047 && c.rope.type == ROPE_DEFAULT && ms == 1.0f &&
		      rel(a[47], pow(10000.0, -94.0 / 96)) < 1e-6,
	      "phi-3-mini-4k config: %s", lm_errmsg());
}

/* Qwen3: Qwen3-0.6B's config.json as published (head_dim 128 while hidden / heads is 64); head_dim absent is
 * Qwen3Config's 128; model_type alone names it; attention_bias gives the q/k/v/o biases; InternVL around it */
static void check_qwen3_config(void)
{
	struct model_config c;
	char path[4300];
	int rc = load_cfg_text("qwen3-06b",
			       "{\"architectures\": [\"Qwen3ForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0,"
			       " \"bos_token_id\": 151643, \"eos_token_id\": 151645, \"head_dim\": 128, \"hidden_act\": \"silu\","
			       " \"hidden_size\": 1024, \"initializer_range\": 0.02, \"intermediate_size\": 3072,"
			       " \"max_position_embeddings\": 40960, \"max_window_layers\": 28, \"model_type\": \"qwen3\","
			       " \"num_attention_heads\": 16, \"num_hidden_layers\": 28, \"num_key_value_heads\": 8,"
			       " \"rms_norm_eps\": 1e-06, \"rope_scaling\": null, \"rope_theta\": 1000000, \"sliding_window\": null,"
			       " \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.51.0\","
			       " \"use_cache\": true, \"use_sliding_window\": false, \"vocab_size\": 151936}",
			       NULL, &c, path, sizeof path);
	CHECK(rc == LM_OK && c.arch == ARCH_QWEN3 && !strcmp(c.arch_name, "Qwen3ForCausalLM") &&
		      !strcmp(c.model_type, "qwen3") && c.dim == 1024 && c.n_heads == 16 && c.n_kv_heads == 8 &&
		      c.head_dim == 128 && c.qk_norm && !c.qkv_bias && c.tie_embed && c.rope.theta == 1e6f &&
		      fabsf(c.norm_eps - 1e-6f) < 1e-12f && c.dtype == DT_BF16 && c.n_eos == 1 && c.eos_ids[0] == 151645 &&
		      c.sliding_window == 0,
	      "Qwen3-0.6B: rc %d '%s' arch %d head_dim %d qk_norm %d", rc, lm_errmsg(), c.arch, c.head_dim, c.qk_norm);
	rc = load_cfg_text("qwen3-nohd",
			   "{\"model_type\": \"qwen3\", \"hidden_size\": 1024, \"num_attention_heads\": 16,"
			   " \"num_hidden_layers\": 2, \"intermediate_size\": 3072, \"vocab_size\": 1000, \"attention_bias\": true}",
			   NULL, &c, path, sizeof path);
	CHECK(rc == LM_OK && c.arch == ARCH_QWEN3 && c.head_dim == 128 && c.qkv_bias && c.qk_norm && c.n_kv_heads == 16,
	      "Qwen3 without head_dim or architectures: rc %d '%s' head_dim %d", rc, lm_errmsg(), c.head_dim);
	/* a Qwen2 is unchanged: hidden / heads, no q/k norms */
	rc = load_cfg_text("qwen2-nohd",
			   "{\"model_type\": \"qwen2\", \"hidden_size\": 1024, \"num_attention_heads\": 16,"
			   " \"num_hidden_layers\": 2, \"intermediate_size\": 3072, \"vocab_size\": 1000}",
			   NULL, &c, path, sizeof path);
	CHECK(rc == LM_OK && c.arch == ARCH_QWEN2 && c.head_dim == 64 && !c.qk_norm && c.qkv_bias,
	      "Qwen2: rc %d '%s' head_dim %d", rc, lm_errmsg(), c.head_dim);
	rc = load_cfg_text("qwen3-sw",
			   "{\"model_type\": \"qwen3\", \"hidden_size\": 64, \"num_attention_heads\": 4, \"num_hidden_layers\": 2,"
			   " \"intermediate_size\": 128, \"vocab_size\": 100, \"use_sliding_window\": true}",
			   NULL, &c, path, sizeof path);
	CHECK(rc == LM_ERR && strstr(lm_errmsg(), "use_sliding_window\" = true"), "Qwen3 sliding window: '%s'", lm_errmsg());
	/* InternVL 3.5's layout: the language model's config under llm_config */
	rc = load_cfg_text("ivl-qwen3",
			   "{\"architectures\": [\"InternVLChatModel\"], \"llm_config\": {\"architectures\": [\"Qwen3ForCausalLM\"],"
			   " \"model_type\": \"qwen3\", \"hidden_size\": 64, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
			   " \"head_dim\": 32, \"num_hidden_layers\": 2, \"intermediate_size\": 128, \"vocab_size\": 100}}",
			   NULL, &c, path, sizeof path);
	CHECK(rc == LM_OK && c.arch == ARCH_QWEN3 && c.qk_norm && c.head_dim == 32 && !strcmp(c.wrapper, "InternVLChatModel"),
	      "InternVL around Qwen3: rc %d '%s'", rc, lm_errmsg());
}

/* LLaVA's text_config as llava-hf publishes it: only what differs from the model_type's transformers defaults
 * (LlamaConfig, MistralConfig, Qwen2Config), which fill in the rest; the dtype from the top where it has none. */
static void check_llava_config(void)
{
	struct model_config c;
	char path[4300];
	/* llava-hf/llava-1.5-7b-hf's config.json (the vision_config shortened) */
	int rc = load_cfg_text("llava15",
			       "{\"architectures\": [\"LlavaForConditionalGeneration\"], \"ignore_index\": -100, \"image_token_index\": 32000,"
			       " \"model_type\": \"llava\", \"pad_token_id\": 32001, \"projector_hidden_act\": \"gelu\","
			       " \"text_config\": {\"_name_or_path\": \"lmsys/vicuna-7b-v1.5\", \"architectures\": [\"LlamaForCausalLM\"],"
			       " \"max_position_embeddings\": 4096, \"model_type\": \"llama\", \"rms_norm_eps\": 1e-05,"
			       " \"torch_dtype\": \"float16\", \"vocab_size\": 32064}, \"tie_word_embeddings\": false,"
			       " \"torch_dtype\": \"float16\", \"transformers_version\": \"4.36.0.dev0\","
			       " \"vision_config\": {\"hidden_size\": 1024, \"model_type\": \"clip_vision_model\"},"
			       " \"vision_feature_layer\": -2, \"vision_feature_select_strategy\": \"default\", \"vocab_size\": 32064}",
			       NULL, &c, path, sizeof path);
	CHECK(rc == LM_OK, "llava-1.5 config: %s", lm_errmsg());
	if (rc == LM_OK)
		CHECK(c.arch == ARCH_LLAMA && !strcmp(c.arch_name, "LlamaForCausalLM") && !strcmp(c.model_type, "llama") &&
			      !strcmp(c.wrapper, "LlavaForConditionalGeneration") &&
			      !strcmp(c.tensor_prefix, "language_model.") && c.vocab == 32064 && c.dim == 4096 &&
			      c.ffn == 11008 && c.n_layers == 32 && c.n_heads == 32 && c.n_kv_heads == 32 && c.head_dim == 128 &&
			      c.max_pos == 4096 && fabsf(c.norm_eps - 1e-5f) < 1e-12f && c.rope.type == ROPE_DEFAULT &&
			      c.rope.theta == 10000 && !c.tie_embed && !c.qkv_bias && c.dtype == DT_F16 && c.bos_id == 1 &&
			      c.n_eos == 1 && c.eos_ids[0] == 2 && c.quant_bits == 0,
		      "llava-1.5 fields: dim %d ffn %d layers %d heads %d/%d max_pos %d bos %d eos %d", c.dim, c.ffn,
		      c.n_layers, c.n_heads, c.n_kv_heads, c.max_pos, c.bos_id, c.n_eos ? c.eos_ids[0] : -1);

	/* llava-hf/llava-v1.6-mistral-7b-hf's text_config: its own dtype (bfloat16) over the top level's */
	rc = load_cfg_text("llava16",
			   "{\"architectures\": [\"LlavaNextForConditionalGeneration\"], \"model_type\": \"llava_next\","
			   " \"text_config\": {\"_name_or_path\": \"mistralai/Mistral-7B-Instruct-v0.2\", \"architectures\":"
			   " [\"MistralForCausalLM\"], \"intermediate_size\": 14336, \"max_position_embeddings\": 32768,"
			   " \"model_type\": \"mistral\", \"num_key_value_heads\": 8, \"rms_norm_eps\": 1e-05, \"rope_theta\": 1000000.0,"
			   " \"sliding_window\": null, \"torch_dtype\": \"bfloat16\", \"vocab_size\": 32064},"
			   " \"torch_dtype\": \"float16\", \"use_image_newline_parameter\": true}",
			   NULL, &c, path, sizeof path);
	CHECK(rc == LM_OK, "llava-1.6-mistral config: %s", lm_errmsg());
	if (rc == LM_OK)
		CHECK(c.arch == ARCH_LLAMA && !strcmp(c.arch_name, "MistralForCausalLM") &&
			      !strcmp(c.wrapper, "LlavaNextForConditionalGeneration") && c.vocab == 32064 && c.dim == 4096 &&
			      c.ffn == 14336 && c.n_layers == 32 && c.n_heads == 32 && c.n_kv_heads == 8 && c.max_pos == 32768 &&
			      c.rope.theta == 1000000 && c.dtype == DT_BF16 && c.bos_id == 1 && c.n_eos == 1 && c.eos_ids[0] == 2 &&
			      c.sliding_window == 0 /* null: none */,
		      "llava-1.6-mistral fields");

	/* nothing but model_type: the class defaults whole; the dtype from the top (the new "dtype" key);
	 * the architecture is the model_type's whatever text_config's architectures say, as transformers builds it */
	rc = load_cfg_text("mistral-min",
			   "{\"model_type\": \"llava\", \"dtype\": \"bfloat16\", \"text_config\": {\"model_type\": \"mistral\","
			   " \"architectures\": [\"LlamaForCausalLM\"]}}",
			   NULL, &c, path, sizeof path);
	CHECK(rc == LM_OK && !strcmp(c.arch_name, "MistralForCausalLM") && c.vocab == 32000 && c.ffn == 14336 &&
		      c.n_kv_heads == 8 && c.max_pos == 131072 && fabsf(c.norm_eps - 1e-6f) < 1e-12f && c.dtype == DT_BF16 &&
		      !strcmp(c.wrapper, "LlavaForConditionalGeneration") && c.sliding_window == 4096 /* MistralConfig's */,
	      "mistral defaults: rc %d '%s' kv %d max_pos %d", rc, lm_errmsg(), c.n_kv_heads, c.max_pos);
	rc = load_cfg_text("qwen2-min", "{\"model_type\": \"llava\", \"text_config\": {\"model_type\": \"qwen2\"}}", NULL,
			   &c, path, sizeof path);
	CHECK(rc == LM_OK && c.arch == ARCH_QWEN2 && c.vocab == 151936 && c.dim == 4096 && c.ffn == 22016 &&
		      c.n_kv_heads == 32 && c.max_pos == 32768 && c.qkv_bias && !c.tie_embed && c.bos_id == -1 &&
		      c.n_eos == 0 && c.dtype == DT_F32,
	      "qwen2 defaults: rc %d '%s'", rc, lm_errmsg());
	/* llava-interleave-qwen-0.5b-like: tied, its own ids; an explicit null eos is none, the bos default stays */
	rc = load_cfg_text("qwen2-05",
			   "{\"architectures\": [\"LlavaForConditionalGeneration\"], \"text_config\": {\"model_type\": \"qwen2\","
			   " \"hidden_size\": 896, \"num_attention_heads\": 14, \"num_key_value_heads\": 2, \"intermediate_size\": 4864,"
			   " \"num_hidden_layers\": 24, \"tie_word_embeddings\": true, \"rope_theta\": 1000000.0,"
			   " \"bos_token_id\": 151643, \"eos_token_id\": 151645, \"torch_dtype\": \"bfloat16\"}}",
			   NULL, &c, path, sizeof path);
	CHECK(rc == LM_OK && c.dim == 896 && c.head_dim == 64 && c.n_kv_heads == 2 && c.tie_embed && c.bos_id == 151643 &&
		      c.n_eos == 1 && c.eos_ids[0] == 151645 && c.vocab == 151936,
	      "llava-interleave-qwen: rc %d '%s'", rc, lm_errmsg());
	rc = load_cfg_text("llama-null", "{\"model_type\": \"llava\", \"text_config\": {\"model_type\": \"llama\", \"eos_token_id\": null}}",
			   NULL, &c, path, sizeof path);
	CHECK(rc == LM_OK && c.bos_id == 1 && c.n_eos == 0, "null eos: rc %d, bos %d, %d eos", rc, c.bos_id, c.n_eos);
	/* AWQ: quantization_config in text_config (LMDeploy's auto_awq) or at the top (AutoAWQ, vLLM) */
	static const char *const awq[] = {
		"{\"model_type\": \"llava\", \"text_config\": {\"model_type\": \"llama\", \"quantization_config\":"
		" {\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 64}}}",
		"{\"model_type\": \"llava\", \"quantization_config\": {\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 64,"
		" \"modules_to_not_convert\": [\"vision_tower\"]}, \"text_config\": {\"model_type\": \"llama\"}}",
	};
	for (int i = 0; i < 2; i++) {
		rc = load_cfg_text("llava-awq", awq[i], NULL, &c, path, sizeof path);
		CHECK(rc == LM_OK && c.quant_bits == 4 && c.group_size == 64, "llava AWQ %d: rc %d '%s'", i, rc, lm_errmsg());
	}
	/* the defaults are a text_config's only: a plain config without hidden_size is still refused */
	rc = load_cfg_text("llama-nohidden", "{\"model_type\": \"llama\", \"vocab_size\": 10}", NULL, &c, path, sizeof path);
	CHECK(rc == LM_ERR && strstr(lm_errmsg(), "\"hidden_size\" is missing"), "plain config without hidden_size: '%s'",
	      lm_errmsg());
	/* bad text_configs: one message naming the file and the key */
	static const struct { const char *text, *want; } bad[] = {
		{ "{\"model_type\": \"llava_next\"}", "key \"text_config\" is missing" },
		{ "{\"model_type\": \"llava\", \"text_config\": \"llama\"}", "key \"text_config\" is not an object" },
		{ "{\"model_type\": \"llava\", \"text_config\": {\"hidden_size\": 64}}", "key \"text_config.model_type\" is missing" },
		{ "{\"model_type\": \"llava\", \"text_config\": {\"model_type\": \"internlm2\"}}", "unsupported language model \"internlm2\"" },
		{ "{\"model_type\": \"llava\", \"text_config\": {\"model_type\": \"llama\", \"num_hidden_layers\": 0}}",
		  "\"text_config.num_hidden_layers\" = 0 is out of range" },
		{ "{\"model_type\": \"llava\", \"torch_dtype\": \"int8\", \"text_config\": {\"model_type\": \"llama\"}}", "int8" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		rc = load_cfg_text("llava-bad", bad[i].text, NULL, &c, path, sizeof path);
		CHECK(rc == LM_ERR && strstr(lm_errmsg(), path) && strstr(lm_errmsg(), bad[i].want), "bad text_config %zu: rc %d '%s'",
		      i, rc, lm_errmsg());
	}
	printf("ok: LLaVA text_config: llava-1.5 and 1.6 as published, the llama/mistral/qwen2 defaults, AWQ in either place, bad ones\n");
}

static void check_config(const char *demo, const char *fixtures)
{
	struct model_config c, ref;
	char path[4300];
	float a[64], b[64];

	snprintf(path, sizeof path, "%s/config.json", demo);
	CHECK(config_load(&c, path) == LM_OK, "demo config: %s", lm_errmsg());
	CHECK(c.arch == ARCH_LLAMA && c.vocab == 8192 && c.dim == 256 && c.n_layers == 6 && c.n_heads == 4 &&
		      c.n_kv_heads == 2 && c.head_dim == 64 && c.ffn == 768 && c.max_pos == 2048 && c.dtype == DT_BF16 &&
		      c.rope.type == ROPE_DEFAULT && c.rope.theta == 10000 && fabsf(c.norm_eps - 1e-5f) < 1e-12f &&
		      !c.tie_embed && !c.qkv_bias && c.quant_bits == 0,
	      "demo config fields");
	/* eos 2 from config.json, then 4 added by generation_config.json's list */
	CHECK(c.bos_id == 1 && c.n_eos == 2 && c.eos_ids[0] == 2 && c.eos_ids[1] == 4, "demo eos ids (%d: %d %d)", c.n_eos,
	      c.eos_ids[0], c.eos_ids[1]);

	/* Mistral, old keys, linear scaling, defaults for head_dim, kv heads, dtype, bos */
	int rc = load_cfg_text("mistral",
			       "{\"architectures\": [\"MistralForCausalLM\"], \"hidden_size\": 256, \"num_attention_heads\": 8,"
			       " \"intermediate_size\": 512, \"num_hidden_layers\": 1, \"vocab_size\": 100,"
			       " \"rope_theta\": 10000.0, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0},"
			       " \"eos_token_id\": [5, 6], \"sliding_window\": null}",
			       "{\"eos_token_id\": 6, \"bos_token_id\": 9}", &c, path, sizeof path);
	CHECK(rc == LM_OK, "mistral config: %s", lm_errmsg());
	if (rc == LM_OK) {
		CHECK(c.arch == ARCH_LLAMA && !strcmp(c.arch_name, "MistralForCausalLM") && c.head_dim == 32 &&
			      c.n_kv_heads == 8 && c.dtype == DT_F32 && c.bos_id == 9 && c.n_eos == 2 && c.eos_ids[1] == 6 &&
			      c.rope.type == ROPE_LINEAR && c.rope.factor == 4 && c.max_pos == 2048,
		      "mistral fields");
		rope_inv_freq(&c, 10, a, NULL);
		int bad = 0;
		for (int i = 0; i < 16; i++) bad += rel(a[i], pow(10000.0, -2.0 * i / 32) / 4) > 1e-6;
		CHECK(bad == 0, "linear rope: %d bad", bad);
	}

	/* llama3 scaling written the transformers-4 way gives the same frequencies as the fixture's new keys */
	snprintf(path, sizeof path, "%s/llama3-rand/config.json", fixtures);
	if (config_load(&ref, path) == LM_OK &&
	    load_cfg_text("llama3-old",
			  "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 128, \"num_attention_heads\": 2,"
			  " \"num_key_value_heads\": 1, \"head_dim\": 64, \"intermediate_size\": 384, \"num_hidden_layers\": 2,"
			  " \"vocab_size\": 8192, \"rope_theta\": 500000.0, \"torch_dtype\": \"bfloat16\", \"rope_scaling\":"
			  " {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
			  " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}, \"eos_token_id\": null}",
			  NULL, &c, path, sizeof path) == LM_OK) {
		rope_inv_freq(&ref, 100, a, NULL);
		rope_inv_freq(&c, 100, b, NULL);
		CHECK(!memcmp(a, b, 32 * sizeof *a) && c.dtype == DT_BF16 && c.n_eos == 0 && c.bos_id == -1,
		      "llama3 old vs new keys");
	} else {
		CHECK(0, "llama3 old keys: %s", lm_errmsg());
	}

	check_llava_config();
	check_qwen3_config();
	check_phi3_config();

	/* errors name the file and key */
	static const struct { const char *desc, *text, *gen, *want; } bad[] = {
		{ "AWQ without group_size",
		  "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"num_attention_heads\": 2, \"intermediate_size\": 64,"
		  " \"num_hidden_layers\": 1, \"vocab_size\": 10, \"quantization_config\": {\"quant_method\": \"awq\", \"bits\": 4}}",
		  NULL, "group_size" },
		{ "AWQ 8-bit",
		  "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"num_attention_heads\": 2, \"intermediate_size\": 64,"
		  " \"num_hidden_layers\": 1, \"vocab_size\": 10, \"quantization_config\": {\"quant_method\": \"awq\", \"bits\": 8, \"group_size\": 64}}",
		  NULL, "bits" },
		{ "unknown dtype",
		  "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"num_attention_heads\": 2, \"intermediate_size\": 64,"
		  " \"num_hidden_layers\": 1, \"vocab_size\": 10, \"dtype\": \"float8\"}",
		  NULL, "dtype" },
		{ "llama3 without original_max_position_embeddings",
		  "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"num_attention_heads\": 2, \"intermediate_size\": 64,"
		  " \"num_hidden_layers\": 1, \"vocab_size\": 10, \"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": 8,"
		  " \"low_freq_factor\": 1, \"high_freq_factor\": 4}}",
		  NULL, "original_max_position_embeddings" },
		{ "eos a string",
		  "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"num_attention_heads\": 2, \"intermediate_size\": 64,"
		  " \"num_hidden_layers\": 1, \"vocab_size\": 10, \"eos_token_id\": \"</s>\"}",
		  NULL, "eos_token_id" },
		{ "malformed generation_config.json",
		  "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"num_attention_heads\": 2, \"intermediate_size\": 64,"
		  " \"num_hidden_layers\": 1, \"vocab_size\": 10}",
		  "{\"eos_token_id\": [2,", "generation_config.json" },
		{ "not an object", "[1, 2, 3]", NULL, "config.json" },
		{ "negative layers",
		  "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"num_attention_heads\": 2, \"intermediate_size\": 64,"
		  " \"num_hidden_layers\": -1, \"vocab_size\": 10}",
		  NULL, "num_hidden_layers" },
		{ "rms_norm_eps beyond float",
		  "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"num_attention_heads\": 2, \"intermediate_size\": 64,"
		  " \"num_hidden_layers\": 1, \"vocab_size\": 10, \"rms_norm_eps\": 1e300}",
		  NULL, "rms_norm_eps" },
		{ "rope_theta beyond float",
		  "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"num_attention_heads\": 2, \"intermediate_size\": 64,"
		  " \"num_hidden_layers\": 1, \"vocab_size\": 10, \"rope_theta\": -1e39}",
		  NULL, "rope_theta" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		rc = load_cfg_text("bad", bad[i].text, bad[i].gen, &c, path, sizeof path);
		const char *msg = lm_errmsg();
		const char *file = bad[i].gen && strstr(bad[i].want, "generation") ? "generation_config.json" : path;
		CHECK(rc == LM_ERR && strstr(msg, file) && strstr(msg, bad[i].want), "%s: rc %d, message '%s'", bad[i].desc, rc,
		      msg);
		if (rc == LM_ERR) printf("ok: %s: %s\n", bad[i].desc, msg);
	}
	printf("ok: config.json key variants (Mistral, linear, old llama3 keys, eos from generation_config.json)\n");
}

/* ---- a file whose header length is odd: every tensor is misaligned in the mapping ---- */

static void check_misaligned(const char *fixtures)
{
	static const char *const names[] = { "llama3-rand", "llama3-rand-awq", "qwen2-rand" };
	for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
		char src[4200], d[4200], p[4300];
		snprintf(src, sizeof src, "%s/%s", fixtures, names[k]);
		char sub[64];
		snprintf(sub, sizeof sub, "odd-%s", names[k]);
		make_model(sub, src, NULL, NULL, d, sizeof d);
		snprintf(p, sizeof p, "%s/model.safetensors", d);
		FILE *fp = fopen(p, "rb");
		struct stat st;
		if (!fp || fstat(fileno(fp), &st) != 0) {
			CHECK(0, "%s: cannot read", p);
			if (fp) fclose(fp);
			continue;
		}
		uint8_t *b = malloc((size_t)st.st_size + 1);
		size_t n = fread(b, 1, (size_t)st.st_size, fp);
		fclose(fp);
		uint64_t hl = 0;
		for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
		/* one more space in the header: the data section starts one byte later */
		uint8_t *o = malloc(n + 1);
		uint64_t hl1 = hl + 1;
		for (int i = 0; i < 8; i++) o[i] = (uint8_t)(hl1 >> (8 * i));
		memcpy(o + 8, b + 8, hl);
		o[8 + hl] = ' ';
		memcpy(o + 9 + hl, b + 8 + hl, n - 8 - hl);
		write_bytes(p, o, n + 1);
		free(b);
		free(o);
		struct model a, m;
		misaligned_inputs = 0;
		if (model_load(&a, src, &rec_be, FMT_AUTO, NULL, NULL) != LM_OK) {
			CHECK(0, "%s: %s", src, lm_errmsg());
			continue;
		}
		if (model_load(&m, d, &rec_be, FMT_AUTO, NULL, NULL) != LM_OK) {
			CHECK(0, "odd header: %s", lm_errmsg());
			model_free(&a);
			continue;
		}
		CHECK(misaligned_inputs == 0, "%s: %d host weights handed over misaligned", sub, misaligned_inputs);
		if (same_model(sub, &a, &m) && misaligned_inputs == 0)
			printf("ok: %s with an odd header length loads to the same, aligned weights\n", names[k]);
		model_free(&a);
		model_free(&m);
	}
}

static void check_write(void)
{
	char p[4200];
	snprintf(p, sizeof p, "%s/w.safetensors", tmpdir);
	float a[6] = { 1, -2, 3.5f, 0, 1e-3f, 7 };
	uint16_t b[3] = { 0x3c00, 0xc000, 0x7bff };
	int32_t ids[5] = { 1, 2, 3, 4, 8191 };
	struct st_out o[4] = {
		{ .name = "logits", .dt = DT_F32, .ndim = 2, .shape = { 2, 3 }, .data = a },
		{ .name = "h \"quoted\"", .dt = DT_F16, .ndim = 1, .shape = { 3 }, .data = b },
		{ .name = "empty", .dt = DT_F32, .ndim = 2, .shape = { 0, 4 }, .data = NULL },
		{ .name = "ids", .dt = DT_I32, .ndim = 1, .shape = { 5 }, .data = ids },
	};
	const char *meta[] = { "format", "pt", "producer", "lmterm", NULL };
	CHECK(st_write(p, o, 4, meta) == LM_OK, "st_write: %s", lm_errmsg());
	char tmp[4300];
	snprintf(tmp, sizeof tmp, "%s.tmp", p);
	CHECK(access(tmp, F_OK) != 0, "st_write left %s", tmp);
	struct st_file *f;
	if (st_open(&f, p) != LM_OK) {
		CHECK(0, "reopen: %s", lm_errmsg());
		return;
	}
	CHECK(st_count(f) == 4 && strcmp(st_get(f, 0)->name, "logits") == 0 && strcmp(st_get(f, 3)->name, "ids") == 0,
	      "written order");
	const struct st_tensor *t = st_find(f, "logits");
	CHECK(t && t->dt == DT_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && !memcmp(t->data, a, sizeof a),
	      "logits round trip");
	t = st_find(f, "h \"quoted\"");
	CHECK(t && t->dt == DT_F16 && !memcmp(t->data, b, sizeof b), "escaped name round trip");
	t = st_find(f, "ids");
	CHECK(t && t->dt == DT_I32 && !memcmp(t->data, ids, sizeof ids), "ids round trip");
	t = st_find(f, "empty");
	CHECK(t && t->bytes == 0 && t->shape[1] == 4, "empty tensor");
	CHECK(st_find(f, "nope") == NULL, "absent tensor found");
	CHECK(st_metadata(f, "producer") && !strcmp(st_metadata(f, "producer"), "lmterm") && !st_metadata(f, "x"), "metadata");
	/* the data section is 8-byte aligned and the header padded with spaces */
	uint64_t hl = 0;
	FILE *fp = fopen(p, "rb");
	uint8_t hdr[8];
	if (fp && fread(hdr, 1, 8, fp) == 8) {
		for (int i = 7; i >= 0; i--) hl = hl << 8 | hdr[i];
		char *h = malloc(hl);
		CHECK(fread(h, 1, hl, fp) == hl && hl % 8 == 0 && (h[hl - 1] == '}' || h[hl - 1] == ' '), "header padding");
		free(h);
	}
	if (fp) fclose(fp);
	st_close(f);
	/* a bad request fails cleanly */
	struct st_out bad = { .name = "q", .dt = DT_Q4, .ndim = 1, .shape = { 8 }, .data = a };
	CHECK(st_write(p, &bad, 1, NULL) == LM_ERR && strstr(lm_errmsg(), "'q'"), "st_write of Q4 refused");
	snprintf(p, sizeof p, "%s/no-such-dir/w.safetensors", tmpdir);
	CHECK(st_write(p, o, 1, NULL) == LM_ERR && strstr(lm_errmsg(), "no-such-dir"), "st_write to a missing dir");
	printf("ok: st_write round trip (order, dtypes, escaped names, empty tensor, metadata, alignment)\n");
}

/* ---- model_init_dummy ---- */

static void check_dummy(const char *fixtures)
{
	char path[4096];
	struct model_config c;
	snprintf(path, sizeof path, "%s/qwen2-rand/config.json", fixtures);
	if (config_load(&c, path) != LM_OK) {
		CHECK(0, "%s", lm_errmsg());
		return;
	}
	struct model m;
	CHECK(model_init_dummy(&m, &c, &rec_be, 7) == LM_OK, "dummy: %s", lm_errmsg());
	CHECK(m.layers && m.layers[1].wqkv.rows == (c.n_heads + 2 * c.n_kv_heads) * c.head_dim && m.layers[1].wqkv.bias &&
		      m.lm_head.shared && m.weight_bytes > 0,
	      "dummy shapes");
	model_free(&m);
	snprintf(path, sizeof path, "%s/llama3-rand-awq/config.json", fixtures);
	if (config_load(&c, path) == LM_OK) {
		CHECK(model_init_dummy(&m, &c, &rec_be, 7) == LM_OK, "dummy awq: %s", lm_errmsg());
		CHECK(m.layers[0].w13.dt == DT_Q4 && m.layers[0].w13.group == 128 && m.tok_embed.dt == DT_F16, "dummy awq");
		model_free(&m);
	}
	CHECK(live_allocs == 0, "dummy: leaked %d", live_allocs);
	printf("ok: model_init_dummy (dense with biases and tied head; AWQ)\n");
}

static void rm_rf(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) return;
	struct dirent *e;
	char p[4600];
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		struct stat st;
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) rm_rf(p);
		else unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

int main(void)
{
	const char *td = getenv("TESTDATA"), *top = getenv("top_srcdir");
	if (!td || !top) {
		fprintf(stderr, "TESTDATA and top_srcdir must be set (run through make check)\n");
		return 77;
	}
	char fixtures[4096], p[4200], demo[4096];
	snprintf(fixtures, sizeof fixtures, "%s/fixtures", td);
	snprintf(demo, sizeof demo, "%s/models/tiny-en-zh", top);
	const char *tmp = getenv("TMPDIR");
	snprintf(tmpdir, sizeof tmpdir, "%s/test_loader.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 99;
	}

	static const char *const fx[] = { "llama3-rand", "llama3-rand-awq", "qwen2-rand", "llama-dynrope-rand",
					  "internlm2-rand" };
	for (size_t i = 0; i < sizeof fx / sizeof *fx; i++) {
		snprintf(p, sizeof p, "%s/%s", fixtures, fx[i]);
		check_model(p, fx[i]);
	}
	static const char *const models[] = { "tiny-en-zh-internlm2", "small-en-zh" };
	for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
		snprintf(p, sizeof p, "%s/models/%s", td, models[i]);
		check_model(p, models[i]);
	}
	check_model(demo, "tiny-en-zh (demo)");
	check_stop(demo);
	CHECK(misaligned_inputs == 0, "%d host weights handed over misaligned", misaligned_inputs);
	snprintf(p, sizeof p, "%s/models/tiny-en-zh-internlm2", td);
	check_twins(demo, p);
	check_rope(fixtures);
	check_bad_safetensors();
	check_bad_models(fixtures);
	check_write();
	check_dummy(fixtures);
	check_config(demo, fixtures);
	check_mutations();
	check_awq_twins();
	check_misaligned(fixtures);

	rm_rf(tmpdir);
	printf("%d checks, %d failed\n", checks, fails);
	return fails ? 1 : 0;
}
