/* awq.c: `lmterm lite auto_awq`, see awq.h for the algorithm.
 *
 * Memory: the residual stream of all calibration tokens X [N][dim] (float32), one decoder layer's weights
 * (float32) and scratch for one chunk of --batch-size windows; the searches score on a subset of the windows
 * (search_tokens) whose intermediate activations are kept. Each layer's quantized tensors are written to
 * their own safetensors shard as soon as the layer is done.
 *
 * Where the arithmetic runs: every activation and weight buffer belongs to an awq_dev (awq_dev.h), the host
 * for the cpu implementation, the GPU for the cuda one; this file orchestrates (reads the checkpoint's
 * mapped tensors, computes the scales from the statistics, writes the shards) and does all arithmetic on
 * those buffers through the table, so both implementations run the one algorithm written here. The host
 * keeps no float32 copy of the model: a layer's tensors go from the mapping straight to the device. */
#include "config.h"
#include "awq.h"
#include "awq_dev.h"
#include "awq_ops.h"
#include "backend.h"
#include "calib.h"
#include "i18n.h"
#include "model.h"
#include "safetensors.h"
#include "tok.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const int awq_order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };

/* ---------------------------------------------------------------- the gemm layout */

void awq_pack(const uint8_t *codes, const uint8_t *zeros, int out, int in, int group, int32_t *qweight,
	      int32_t *qzeros)
{
	int ng = in / group, oc = out / 8;
	for (int k = 0; k < in; k++)
		for (int c = 0; c < oc; c++) {
			uint32_t v = 0;
			for (int i = 0; i < 8; i++) v |= (uint32_t)(codes[(size_t)(8 * c + awq_order[i]) * in + k] & 15) << (4 * i);
			qweight[(size_t)k * oc + c] = (int32_t)v;
		}
	for (int gi = 0; gi < ng; gi++)
		for (int c = 0; c < oc; c++) {
			uint32_t v = 0;
			for (int i = 0; i < 8; i++) v |= (uint32_t)(zeros[(size_t)(8 * c + awq_order[i]) * ng + gi] & 15) << (4 * i);
			qzeros[(size_t)gi * oc + c] = (int32_t)v;
		}
}

void awq_unpack(const int32_t *qweight, const int32_t *qzeros, int out, int in, int group, uint8_t *codes,
		uint8_t *zeros)
{
	int ng = in / group, oc = out / 8;
	for (int k = 0; k < in; k++)
		for (int c = 0; c < oc; c++) {
			uint32_t v = (uint32_t)qweight[(size_t)k * oc + c];
			for (int i = 0; i < 8; i++) codes[(size_t)(8 * c + awq_order[i]) * in + k] = (v >> (4 * i)) & 15;
		}
	for (int gi = 0; gi < ng; gi++)
		for (int c = 0; c < oc; c++) {
			uint32_t v = (uint32_t)qzeros[(size_t)gi * oc + c];
			for (int i = 0; i < 8; i++) zeros[(size_t)(8 * c + awq_order[i]) * ng + gi] = (v >> (4 * i)) & 15;
		}
}

/* One group of n weights, AutoAWQ's pseudo_quantize_tensor with a zero point, but with the scale rounded to
 * fp16 first: codes are chosen for the scale a reader will actually use. clip: |w| limit (INFINITY: none). */
static inline void quant_group(const float *w, int n, float clip, uint8_t *codes, uint8_t *zero, uint16_t *s16,
			       float *deq)
{
	float mx = -INFINITY, mn = INFINITY;
	for (int i = 0; i < n; i++) {
		float v = fminf(fmaxf(w[i], -clip), clip);
		mx = fmaxf(mx, v);
		mn = fminf(mn, v);
	}
	float s = fmaxf(mx - mn, 1e-5f) / 15.0f;
	uint16_t h = f32_to_f16(s);
	s = f16_to_f32(h);
	float z = fminf(fmaxf(-nearbyintf(mn / s), 0.0f), 15.0f);
	for (int i = 0; i < n; i++) {
		float v = fminf(fmaxf(w[i], -clip), clip);
		float q = fminf(fmaxf(nearbyintf(v / s) + z, 0.0f), 15.0f);
		if (codes) codes[i] = (uint8_t)q;
		if (deq) deq[i] = (q - z) * s;
	}
	*zero = (uint8_t)z;
	*s16 = h;
}

void awq_quantize_rows(const float *w, int out, int in, int group, uint8_t *codes, uint8_t *zeros,
		       uint16_t *scales16, float *deq)
{
	int ng = in / group;
	for (int o = 0; o < out; o++)
		for (int gi = 0; gi < ng; gi++) {
			size_t off = (size_t)o * in + (size_t)gi * group;
			uint8_t z;
			uint16_t h;
			quant_group(w + off, group, INFINITY, codes ? codes + off : NULL, &z, &h, deq ? deq + off : NULL);
			if (zeros) zeros[(size_t)o * ng + gi] = z;
			if (scales16) scales16[(size_t)gi * out + o] = h;
		}
}

/* ---------------------------------------------------------------- the model's layout */

enum { L_Q, L_K, L_V, L_O, L_G, L_U, L_D, L_N };

struct lw {                      /* one decoder layer, float32, logical (unfused) layout, buffers of ctx.d */
	float *w[L_N];           /* [out][in]: q [qd][dim], k,v [kvd][dim], o [dim][qd], g,u [ffn][dim], d [dim][ffn] */
	float *b[L_N];           /* biases or NULL */
	float *ln1, *ln2;        /* [dim] */
	float *qn, *kn;          /* [hd] Qwen3's q_norm and k_norm (not quantized, not scaled), or NULL */
};

struct ctx {
	const struct awq_opts *o;
	struct progress_sink *sink;
	struct model_config c;
	cJSON *config;           /* config.json as read */
	struct st_set *set;
	struct awq_dev *d;       /* where the arithmetic runs */
	bool timing;             /* LMTERM_AWQ_TIMING: per-stage seconds to stderr (syncs the device per stage) */
	double tm[8];            /* the current layer's stage seconds, see enum tstage */
	double t_last;           /* now_s() at the end of the last timed stage */
	int dim, qd, kvd, ffn, nh, nkv, hd, nl;
	int rows[L_N], cols[L_N];
	int nt;                  /* threads */
	char dir[4096];          /* the directory renamed into place: work_dir, or the directory a link there names */
	char tmpdir[4096];
	int n_shards;
	cJSON *weight_map;
	uint64_t total_bytes;
	float *inv_freq;         /* [hd/2], a buffer of d */
	float *rope_ms;          /* [hd] of RoPE's cos/sin scale (longrope's attention factor), or NULL where it is 1 */
	int layer;               /* for progress */
	double last_err;
	double last_report;      /* now_s() of the last report */
};

/* LMTERM_AWQ_TIMING: seconds per stage of each layer (the device is synchronized at each stage's end). */
enum tstage { T_LOAD, T_FORWARD, T_STATS, T_SEARCH, T_QUANT, T_WRITE, T_ERR, T_N };
static void tstage(struct ctx *x, int stage);

static bool is_internlm2(const struct ctx *x) { return x->c.arch == ARCH_INTERNLM2; }
static bool is_phi3(const struct ctx *x) { return x->c.arch == ARCH_PHI3; }

static void tensor_name(const struct ctx *x, char *buf, size_t n, int layer, int lin, const char *suffix)
{
	static const char *llama[L_N] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
					  "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
					  "mlp.down_proj" };
	static const char *intern[L_N] = { "attention.wqkv", "attention.wqkv", "attention.wqkv", "attention.wo",
					   "feed_forward.w1", "feed_forward.w3", "feed_forward.w2" };
	static const char *phi3[L_N] = { "self_attn.qkv_proj", "self_attn.qkv_proj", "self_attn.qkv_proj",
					 "self_attn.o_proj",   "mlp.gate_up_proj",   "mlp.gate_up_proj",
					 "mlp.down_proj" };
	snprintf(buf, n, "model.layers.%d.%s.%s", layer, (is_internlm2(x) ? intern : is_phi3(x) ? phi3 : llama)[lin],
		 suffix);
}

/* A checkpoint's fused linears: InternLM2's wqkv and Phi-3's qkv_proj hold q, k and v, Phi-3's gate_up_proj gate
 * and up. The search and the scaling work on the logical linears (the smoothing pairs are AutoAWQ's: a fused
 * tensor is scaled as the linears it holds), so a fused tensor is split as it is read and packed again, in its
 * own order and under its own name, as it is written (AutoAWQ quantizes it as one linear, which is the same: the
 * groups run along the inputs, which the parts share). fused_first: the first logical linear of the tensor lin
 * is stored in (the one whose name it has), or -1 where lin is a tensor of its own. */
static int fused_first(const struct ctx *x, int lin)
{
	if ((is_internlm2(x) || is_phi3(x)) && lin >= L_Q && lin <= L_V) return L_Q;
	if (is_phi3(x) && (lin == L_G || lin == L_U)) return L_G;
	return -1;
}

static int fused_last(int first) { return first == L_Q ? L_V : L_U; }

/* Rows of lin that stay together in the fused tensor: InternLM2 interleaves heads, Phi-3 keeps each part whole */
static int fused_chunk(const struct ctx *x, int lin) { return is_internlm2(x) ? x->hd : x->rows[lin]; }

static bool is_float(enum dtype dt) { return dt == DT_F32 || dt == DT_F16 || dt == DT_BF16; }

/* Read a float tensor of the expected shape (rows == 0: a vector of cols) into a new float32 buffer of x->d. */
static int read_f32(struct ctx *x, const char *name, int rows, int cols, bool optional, float **out)
{
	*out = NULL;
	const struct st_tensor *t = st_set_find(x->set, name);
	char full[512];
	if (!t)
		return optional ? LM_OK
				: lm_err(_("%s: tensor '%s' is missing"), x->o->model_dir,
					 st_set_full(x->set, name, full, sizeof full));
	bool ok = is_float(t->dt) &&
		  (rows ? t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols : t->ndim == 1 && t->shape[0] == cols);
	if (!ok)
		return lm_err(_("%s: tensor '%s' has dtype %s and %d dims, expected a float %s of [%d%s%d]"), t->file, t->name,
			      dtype_name(t->dt), t->ndim, rows ? "matrix" : "vector", rows ? rows : cols, rows ? ", " : "",
			      rows ? cols : 0);
	size_t n = (size_t)(rows ? rows : 1) * cols;
	float *f = x->d->alloc(x->d, n * sizeof *f);
	if (!f) return lm_err_prefix(_("reading '%s': "), name);
	x->d->load(x->d, f, t->data, t->dt, n);
	*out = f;
	return LM_OK;
}

static void lw_free(struct awq_dev *d, struct lw *w)
{
	for (int i = 0; i < L_N; i++) { d->free(d, w->w[i]); d->free(d, w->b[i]); }
	d->free(d, w->ln1);
	d->free(d, w->ln2);
	d->free(d, w->qn);
	d->free(d, w->kn);
	memset(w, 0, sizeof *w);
}

/* InternLM2's wqkv rows: per kv head, its (nh/nkv) q heads, then its k head, then its v head (so the hd rows of
 * one head stay together: callers move whole heads). */
static size_t intern_row(const struct ctx *x, int lin, int r)
{
	int g = x->nh / x->nkv, hd = x->hd, head = r / hd, off = r % hd, kvh, slot;
	if (lin == L_Q) { kvh = head / g; slot = head % g; }
	else { kvh = head; slot = lin == L_K ? g : g + 1; }
	return ((size_t)kvh * (g + 2) + slot) * hd + off;
}

/* Where row r (a multiple of fused_chunk) of the logical linear lin lies in its fused tensor */
static size_t fused_row(const struct ctx *x, int lin, int r)
{
	if (is_internlm2(x)) return intern_row(x, lin, r);
	size_t at = 0;
	for (int j = fused_first(x, lin); j < lin; j++) at += x->rows[j];
	return at + r;
}

static int lw_load(struct ctx *x, int l, struct lw *w)
{
	char name[256];
	memset(w, 0, sizeof *w);
	const char *n1 = is_internlm2(x) ? "attention_norm" : "input_layernorm";
	const char *n2 = is_internlm2(x) ? "ffn_norm" : "post_attention_layernorm";
	snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, n1);
	if (read_f32(x, name, 0, x->dim, false, &w->ln1)) goto fail;
	snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, n2);
	if (read_f32(x, name, 0, x->dim, false, &w->ln2)) goto fail;
	if (x->c.qk_norm) { /* the calibration forward must normalize q and k as the model does */
		snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", l);
		if (read_f32(x, name, 0, x->hd, false, &w->qn)) goto fail;
		snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", l);
		if (read_f32(x, name, 0, x->hd, false, &w->kn)) goto fail;
	}
	for (int i = 0; i < L_N; i++) {
		const int first = fused_first(x, i);
		if (first >= 0 && i != first) continue;
		if (first >= 0) { /* split the fused tensor into its logical linears (all of the same inputs) */
			float *p, *pb;
			const int last = fused_last(first), in = x->cols[first];
			int rows = 0;
			for (int lin = first; lin <= last; lin++) rows += x->rows[lin];
			tensor_name(x, name, sizeof name, l, first, "weight");
			if (read_f32(x, name, rows, in, false, &p)) goto fail;
			tensor_name(x, name, sizeof name, l, first, "bias");
			if (read_f32(x, name, 0, rows, true, &pb)) { x->d->free(x->d, p); goto fail; }
			struct awq_dev *d = x->d;
			for (int lin = first; lin <= last; lin++) {
				const int ch = fused_chunk(x, lin);
				w->w[lin] = d->alloc(d, sizeof(float) * x->rows[lin] * in);
				if (pb) w->b[lin] = d->alloc(d, sizeof(float) * x->rows[lin]);
				if (!w->w[lin] || (pb && !w->b[lin])) { d->free(d, p); d->free(d, pb); goto fail; }
				for (int r = 0; r < x->rows[lin]; r += ch) {
					size_t src = fused_row(x, lin, r);
					d->copy(d, w->w[lin] + (size_t)r * in, p + src * in, sizeof(float) * ch * in);
					if (pb) d->copy(d, w->b[lin] + r, pb + src, sizeof(float) * ch);
				}
			}
			d->free(d, p);
			d->free(d, pb);
			continue;
		}
		tensor_name(x, name, sizeof name, l, i, "weight");
		if (read_f32(x, name, x->rows[i], x->cols[i], false, &w->w[i])) goto fail;
		tensor_name(x, name, sizeof name, l, i, "bias");
		if (read_f32(x, name, 0, x->rows[i], true, &w->b[i])) goto fail;
	}
	return LM_OK;
fail:
	lw_free(x->d, w);
	return LM_ERR;
}

/* ---------------------------------------------------------------- one layer's forward pieces */

struct scratch {
	int cap;                 /* tokens */
	float *q, *k, *v, *g, *u;
};

static int scratch_init(struct scratch *s, const struct ctx *x, int tokens)
{
	struct awq_dev *d = x->d;
	s->cap = tokens;
	s->q = d->alloc(d, sizeof(float) * tokens * x->qd);
	s->k = s->q ? d->alloc(d, sizeof(float) * tokens * x->kvd) : NULL;
	s->v = s->k ? d->alloc(d, sizeof(float) * tokens * x->kvd) : NULL;
	s->g = s->v ? d->alloc(d, sizeof(float) * tokens * x->ffn) : NULL;
	s->u = s->g ? d->alloc(d, sizeof(float) * tokens * x->ffn) : NULL;
	if (!s->u) return lm_err_prefix(_("activations of %d tokens: "), tokens);
	return LM_OK;
}

static void scratch_free(struct awq_dev *d, struct scratch *s)
{
	d->free(d, s->q); d->free(d, s->k); d->free(d, s->v); d->free(d, s->g); d->free(d, s->u);
	memset(s, 0, sizeof *s);
}

/* attention block: h [m][dim] (normed) -> att [m][qd] (o's input), ao [m][dim] (o's output); lw: the layer
 * (its q/k norms; w and b may be other versions of its linears) */
static void attn_block(const struct ctx *x, const struct lw *lw, float *const *w, float *const *b, const float *h,
		       int m, float *att, float *ao, struct scratch *s)
{
	int T = x->o->seqlen;
	struct awq_dev *d = x->d;
	d->matmul(d, s->q, h, w[L_Q], b[L_Q], m, x->qd, x->dim);
	d->matmul(d, s->k, h, w[L_K], b[L_K], m, x->kvd, x->dim);
	d->matmul(d, s->v, h, w[L_V], b[L_V], m, x->kvd, x->dim);
	if (lw->qn) { /* Qwen3: each head RMS-normed before RoPE; q [m][nh][hd] is m nh rows of hd (in place) */
		d->rmsnorm(d, s->q, s->q, lw->qn, m * x->nh, x->hd, x->c.norm_eps);
		d->rmsnorm(d, s->k, s->k, lw->kn, m * x->nkv, x->hd, x->c.norm_eps);
	}
	d->rope(d, s->q, m, x->nh, x->hd, T, x->inv_freq);
	d->rope(d, s->k, m, x->nkv, x->hd, T, x->inv_freq);
	if (x->rope_ms) { /* cos and sin times the scale is the rotation times it (each head a row of hd) */
		d->scale_cols(d, s->q, m * x->nh, x->hd, x->rope_ms);
		d->scale_cols(d, s->k, m * x->nkv, x->hd, x->rope_ms);
	}
	d->attention(d, att, s->q, s->k, s->v, m, T, x->nh, x->nkv, x->hd);
	d->matmul(d, ao, att, w[L_O], b[L_O], m, x->dim, x->qd);
}

/* MLP block: h2 [m][dim] -> a [m][ffn] (down's input), mo [m][dim] */
static void mlp_block(const struct ctx *x, float *const *w, float *const *b, const float *h2, int m, float *a,
		      float *mo, struct scratch *s)
{
	struct awq_dev *d = x->d;
	d->matmul(d, s->g, h2, w[L_G], b[L_G], m, x->ffn, x->dim);
	d->matmul(d, s->u, h2, w[L_U], b[L_U], m, x->ffn, x->dim);
	d->swiglu(d, a, s->g, s->u, (size_t)m * x->ffn);
	d->matmul(d, mo, a, w[L_D], b[L_D], m, x->dim, x->ffn);
}

static double mse(const float *a, const float *b, size_t n)
{
	double e = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - b[i];
		e += d * d;
	}
	return e / n;
}

/* ---------------------------------------------------------------- scales */

/* The activation-aware scales for channel means xm[n] at ratio: s = xm^ratio, clamped at 1e-4, divided by
 * sqrt(max * min) so they centre on 1 (AutoAWQ / LMDeploy). */
static void make_scales(const double *xm, int n, double ratio, float *s)
{
	float mx = 0, mn = INFINITY;
	for (int i = 0; i < n; i++) {
		s[i] = fmaxf((float)pow(xm[i], ratio), 1e-4f);
		mx = fmaxf(mx, s[i]);
		mn = fminf(mn, s[i]);
	}
	float c = sqrtf(mx * mn);
	for (int i = 0; i < n; i++) s[i] /= c;
}

/* dst [out][in] = Q(w * s) / s: the weight as it behaves after scaling and quantization */
static void fake_quant(const float *w, const float *s, int out, int in, int group, float *dst, float *tmp_row)
{
	for (int o = 0; o < out; o++) {
		const float *wr = w + (size_t)o * in;
		for (int k = 0; k < in; k++) tmp_row[k] = wr[k] * s[k];
		for (int gi = 0; gi < in / group; gi++) {
			uint8_t z;
			uint16_t h;
			quant_group(tmp_row + gi * group, group, INFINITY, NULL, &z, &h, dst + (size_t)o * in + gi * group);
		}
		for (int k = 0; k < in; k++) dst[(size_t)o * in + k] /= s[k];
	}
}

/* Scale the columns of w [out][in] by s (multiply) */
static void scale_cols(float *w, int out, int in, const float *s)
{
	for (int o = 0; o < out; o++)
		for (int k = 0; k < in; k++) w[(size_t)o * in + k] *= s[k];
}
/* Divide the rows of w [out][in] (and bias) by s */
static void unscale_rows(float *w, float *b, int out, int in, const float *s)
{
	for (int o = 0; o < out; o++) {
		for (int k = 0; k < in; k++) w[(size_t)o * in + k] /= s[o];
		if (b) b[o] /= s[o];
	}
}

/* The groups of linears that share an input and the op before them that absorbs 1/s. */
enum { G_QKV, G_GU, G_D, G_O, G_N };

struct subset {                  /* the first windows, kept for the searches and the error figure */
	int m;                   /* tokens */
	float *x;                /* [m][dim] layer input */
	float *h, *att, *h2, *a; /* inputs of the linears */
	float *ao, *mo;          /* block outputs (full precision) */
};

static bool cancelled(struct ctx *x)
{
	return x->sink && x->sink->cancelled && x->sink->cancelled(x->sink);
}

static void report(struct ctx *x, const char *what)
{
	if (!x->sink || !x->sink->report) return;
	char stage[96];
	x->last_report = now_s();
	snprintf(stage, sizeof stage, _("layer %d/%d: %s"), x->layer + 1, x->nl, what);
	x->sink->report(x->sink, stage, x->layer, x->nl, x->last_err);
}

/* Grid search of the ratio for one group (the block's output MSE on the subset); returns the best ratio. */
static int search_ratio(struct ctx *x, int g, const struct lw *w, const double *xm, const struct subset *sub,
			struct scratch *s, double *ratio_out, double *loss_out)
{
	const int n_grid = 20, m = sub->m;
	int in = g == G_D ? x->ffn : g == G_O ? x->qd : x->dim;
	static const int lins[G_N][3] = { { L_Q, L_K, L_V }, { L_G, L_U, -1 }, { L_D, -1, -1 }, { L_O, -1, -1 } };
	struct awq_dev *d = x->d;
	float *sc = malloc(sizeof(float) * in), *sc_d = d->alloc(d, sizeof(float) * in);
	float *fq[3] = { NULL, NULL, NULL };
	float *out = sc_d ? d->alloc(d, sizeof(float) * m * x->dim) : NULL;
	float *t1 = out ? d->alloc(d, sizeof(float) * m * (size_t)MAX(x->qd, x->ffn)) : NULL;
	int rc = sc && t1 ? LM_OK : LM_ERR;
	for (int j = 0; j < 3 && lins[g][j] >= 0 && rc == LM_OK; j++)
		if (!(fq[j] = d->alloc(d, sizeof(float) * x->rows[lins[g][j]] * in))) rc = LM_ERR;
	if (rc != LM_OK) lm_err_prefix(_("the scale search: "));
	double best = INFINITY, best_r = 0;
	for (int i = 0; i < n_grid && rc == LM_OK; i++) {
		if (cancelled(x)) { rc = lm_err(_("interrupted")); break; }
		double r = (double)i / n_grid;
		make_scales(xm, in, r, sc);
		d->upload(d, sc_d, sc, sizeof(float) * in);
		float *ww[L_N], *bb[L_N];
		memcpy(ww, w->w, sizeof ww);
		memcpy(bb, w->b, sizeof bb);
		for (int j = 0; j < 3 && lins[g][j] >= 0; j++) {
			int lin = lins[g][j];
			d->fake_quant(d, fq[j], w->w[lin], sc_d, x->rows[lin], in, x->o->group);
			ww[lin] = fq[j];
		}
		const float *ref;
		if (g == G_QKV) { attn_block(x, w, ww, bb, sub->h, m, t1, out, s); ref = sub->ao; }
		else if (g == G_GU) { mlp_block(x, ww, bb, sub->h2, m, t1, out, s); ref = sub->mo; }
		else if (g == G_D) { d->matmul(d, out, sub->a, ww[L_D], bb[L_D], m, x->dim, x->ffn); ref = sub->mo; }
		else { d->matmul(d, out, sub->att, ww[L_O], bb[L_O], m, x->dim, x->qd); ref = sub->ao; }
		double e = d->mse(d, out, ref, (size_t)m * x->dim);
		if (getenv("LMTERM_AWQ_DEBUG")) fprintf(stderr, " %.2f:%.4g", r, e);
		if (e < best) { best = e; best_r = r; }
	}
	for (int j = 0; j < 3; j++) d->free(d, fq[j]);
	free(sc); d->free(d, sc_d); d->free(d, out); d->free(d, t1);
	*ratio_out = best_r;
	*loss_out = best;
	return rc;
}

/* ---------------------------------------------------------------- clipping search
 * AutoAWQ's auto_clip: per output row and input group, shrink the clipping range max|w| in 20 steps down to
 * half and keep the one whose output error on the calibration inputs is smallest. The error of a weight
 * difference d over the tokens is sum_t (x_t . d)^2 = d^T G d with G = sum_t x_t x_t^T the group's Gram
 * matrix, so each candidate costs g^2, independent of the token count. q and k are left alone (their error
 * goes through the softmax), as AutoAWQ does. */
struct clip_job {
	float *w;                /* [out][in], scaled, clipped in place */
	const double *gram;      /* [in/g][g][g] */
	int out, in, group;
};

static void clip_rows(void *ud, int b, int e)
{
	const struct clip_job *j = ud;
	int g = j->group, ng = j->in / g;
	float *dq = malloc(sizeof(float) * g), *d = malloc(sizeof(float) * g);
	for (int o = b; o < e; o++)
		for (int gi = 0; gi < ng; gi++) {
			float *w = j->w + (size_t)o * j->in + (size_t)gi * g;
			const double *G = j->gram + (size_t)gi * g * g;
			float amax = 0;
			for (int i = 0; i < g; i++) amax = fmaxf(amax, fabsf(w[i]));
			double best = INFINITY;
			float best_c = amax;
			for (int step = 0; step < 10; step++) { /* AutoAWQ: max_shrink 0.5, n_grid 20 -> 10 candidates */
				float c = amax * (1.0f - step / 20.0f);
				uint8_t z;
				uint16_t h;
				quant_group(w, g, c, NULL, &z, &h, dq);
				for (int i = 0; i < g; i++) d[i] = dq[i] - w[i];
				double err = 0;
				for (int r = 0; r < g; r++) {
					double acc = 0;
					const double *Gr = G + (size_t)r * g;
					for (int t = 0; t < g; t++) acc += Gr[t] * d[t];
					err += acc * d[r];
				}
				if (err < best) { best = err; best_c = c; }
			}
			for (int i = 0; i < g; i++) w[i] = fminf(fmaxf(w[i], -best_c), best_c);
		}
	free(dq);
	free(d);
}

/* Gram matrices of the groups of x [m][in] / s */
static double *gram_groups(const float *xin, const float *s, int m, int in, int g)
{
	int ng = in / g;
	double *G = calloc((size_t)ng * g * g, sizeof *G);
	float *v = malloc(sizeof(float) * in);
	if (!G || !v) { free(G); free(v); return NULL; }
	for (int t = 0; t < m; t++) {
		for (int k = 0; k < in; k++) v[k] = xin[(size_t)t * in + k] / (s ? s[k] : 1.0f);
		for (int gi = 0; gi < ng; gi++) {
			const float *vg = v + gi * g;
			double *Gg = G + (size_t)gi * g * g;
			for (int r = 0; r < g; r++)
				for (int c = 0; c < g; c++) Gg[(size_t)r * g + c] += (double)vg[r] * vg[c];
		}
	}
	free(v);
	return G;
}

/* ---------------------------------------------------------------- writing */

static void rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) return;
	struct dirent *e;
	char p[4600];
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static uint16_t *to_f16_buf(const float *f, size_t n)
{
	uint16_t *h = malloc(n * sizeof *h);
	if (h) for (size_t i = 0; i < n; i++) h[i] = f32_to_f16(f[i]);
	return h;
}

/* Output tensors of one shard; data owned by the list when own is set. */
struct olist {
	struct st_out t[64];
	void *own[64];
	int n;
};

static int olist_add(struct olist *l, const char *name, enum dtype dt, int ndim, int64_t d0, int64_t d1,
		     const void *data, void *own)
{
	if (l->n >= (int)ARRAY_SIZE(l->t) || !data) { free(own); return lm_err(_("out of memory writing '%s'"), name); }
	struct st_out *t = &l->t[l->n];
	t->name = strdup(name);
	t->dt = dt;
	t->ndim = ndim;
	t->shape[0] = d0;
	t->shape[1] = d1;
	t->data = data;
	l->own[l->n++] = own;
	return LM_OK;
}

static void olist_free(struct olist *l)
{
	for (int i = 0; i < l->n; i++) { free((void *)l->t[i].name); free(l->own[i]); }
	l->n = 0;
}

struct f16_job {
	uint16_t *dst;
	const void *src;
	enum dtype dt;
	size_t n;
};

static void f16_part(void *ud, int b, int e)
{
	const struct f16_job *j = ud;
	float buf[4096];
	for (size_t i = (size_t)b * 4096; i < MIN(j->n, (size_t)e * 4096); i += 4096) {
		size_t k = MIN(4096, j->n - i);
		to_f32(buf, (const char *)j->src + i * dtype_size(j->dt), j->dt, k);
		for (size_t q = 0; q < k; q++) j->dst[i + q] = f32_to_f16(buf[q]);
	}
}

/* A tensor copied from the checkpoint: floats become fp16 (AutoAWQ's checkpoints are fp16 throughout),
 * except RoPE's inv_freq buffers, whose precision matters; others are copied as they are. The conversion
 * runs on nt threads (the embeddings and lm_head of a 7B model are 0.8 G values). */
static int olist_copy(struct olist *l, const struct st_tensor *t, int nt)
{
	size_t n = 1;
	for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
	if (l->n >= (int)ARRAY_SIZE(l->t)) return lm_err(_("too many tensors in one shard"));
	struct st_out *o = &l->t[l->n];
	o->name = strdup(t->name);
	o->ndim = t->ndim;
	memcpy(o->shape, t->shape, sizeof o->shape);
	if (is_float(t->dt) && t->dt != DT_F16 && !strstr(t->name, "inv_freq")) {
		uint16_t *h = malloc(n * sizeof *h);
		if (!h) { free((void *)o->name); return lm_err(_("out of memory copying '%s'"), t->name); }
		struct f16_job j = { h, t->data, t->dt, n };
		lm_parallel(nt, (int)((n + 4095) / 4096), f16_part, &j);
		o->dt = DT_F16;
		o->data = h;
		l->own[l->n++] = h;
	} else {
		o->dt = t->dt;
		o->data = t->data;
		l->own[l->n++] = NULL;
	}
	return LM_OK;
}

/* A file of the result could not be written, most often because the disk is full. It is named in the work
 * dir the user gave: the temporary directory it was written to is gone by the time the message is read.
 * e = 0 (no system error): the writer's own message stands. */
static int write_failed(struct ctx *x, const char *file, int e)
{
	if (!e) return LM_ERR;
	return lm_err(_("--work-dir %s: cannot write %s: %s; nothing was left behind"), x->o->work_dir, file,
		      strerror(e));
}

static int write_shard(struct ctx *x, int idx, struct olist *l)
{
	char file[64], path[4200];
	snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", idx + 1, x->n_shards);
	path_join(path, sizeof path, x->tmpdir, file);
	static const char *const meta[] = { "format", "pt", NULL };
	if (st_write(path, l->t, l->n, meta) != LM_OK) return write_failed(x, file, errno);
	for (int i = 0; i < l->n; i++) {
		size_t n = 1;
		for (int d = 0; d < l->t[i].ndim; d++) n *= l->t[i].shape[d];
		x->total_bytes += n * dtype_size(l->t[i].dt);
		cJSON_AddStringToObject(x->weight_map, l->t[i].name, file);
	}
	return LM_OK;
}

/* Quantize w [out][in] (already scaled, a buffer of x->d) and add its qweight/qzeros/scales; deq (optional,
 * a buffer) gets Q(w). */
static int add_quantized(struct ctx *x, struct olist *l, const char *base, const float *w, int out, int in,
			 float *deq)
{
	int g = x->o->group, ng = in / g;
	int32_t *qw = malloc(sizeof(int32_t) * in * (out / 8)), *qz = malloc(sizeof(int32_t) * ng * (out / 8));
	uint16_t *sc = malloc(sizeof(uint16_t) * ng * out);
	char name[300];
	int rc = LM_ERR;
	if (!qw || !qz || !sc) { lm_err(_("out of memory quantizing '%s'"), base); goto out; }
	x->d->quantize(x->d, w, out, in, g, qw, qz, sc, deq);
	if (x->d->sync(x->d)) goto out;
	snprintf(name, sizeof name, "%s.qweight", base);
	if (olist_add(l, name, DT_I32, 2, in, out / 8, qw, qw)) { qw = NULL; goto out; }
	qw = NULL;
	snprintf(name, sizeof name, "%s.qzeros", base);
	if (olist_add(l, name, DT_I32, 2, ng, out / 8, qz, qz)) { qz = NULL; goto out; }
	qz = NULL;
	snprintf(name, sizeof name, "%s.scales", base);
	if (olist_add(l, name, DT_F16, 2, ng, out, sc, sc)) { sc = NULL; goto out; }
	sc = NULL;
	rc = LM_OK;
out:
	free(qw); free(qz); free(sc);
	return rc;
}

/* A vector of x->d (a norm or a bias) as fp16 */
static int add_f16(struct ctx *x, struct olist *l, const char *name, const float *v, int n)
{
	float *f = malloc(sizeof(float) * n);
	uint16_t *h = NULL;
	if (f) {
		x->d->download(x->d, f, v, sizeof(float) * n);
		h = to_f16_buf(f, n);
		free(f);
	}
	return olist_add(l, name, DT_F16, 1, n, 0, h, h);
}

/* Quantize layer l's (scaled) weights and write its shard: the linears, the norms (with 1/s folded in),
 * biases, and any other tensor of the layer copied. deq[L_N] (optional) get the dequantized weights. */
static int write_layer(struct ctx *x, int l, const struct lw *w, float **deq)
{
	struct olist ol = { .n = 0 };
	char base[256], name[300];
	int rc = LM_ERR;
	const char *n1 = is_internlm2(x) ? "attention_norm" : "input_layernorm";
	const char *n2 = is_internlm2(x) ? "ffn_norm" : "post_attention_layernorm";
	char local[200];
	/* the names written are the checkpoint's own (st_set_full: a wrapper's prefix included) */
	snprintf(local, sizeof local, "model.layers.%d.%s.weight", l, n1);
	if (add_f16(x, &ol, st_set_full(x->set, local, name, sizeof name), w->ln1, x->dim)) goto out;
	snprintf(local, sizeof local, "model.layers.%d.%s.weight", l, n2);
	if (add_f16(x, &ol, st_set_full(x->set, local, name, sizeof name), w->ln2, x->dim)) goto out;
	for (int i = 0; i < L_N; i++) {
		const int first = fused_first(x, i);
		if (first >= 0 && i != first) continue;
		tensor_name(x, local, sizeof local, l, i, "");
		local[strlen(local) - 1] = 0; /* drop the trailing '.' */
		st_set_full(x->set, local, base, sizeof base);
		if (first >= 0) { /* pack the logical linears into the fused tensor's row order, quantized as one */
			const int last = fused_last(first), in = x->cols[first];
			int rows = 0;
			for (int lin = first; lin <= last; lin++) rows += x->rows[lin];
			struct awq_dev *d = x->d;
			float *p = d->alloc(d, sizeof(float) * rows * in);
			float *pb = p && w->b[first] ? d->alloc(d, sizeof(float) * rows) : NULL;
			float *pd = p && deq ? d->alloc(d, sizeof(float) * rows * in) : NULL;
			if (!p || (w->b[first] && !pb) || (deq && !pd)) { d->free(d, p); d->free(d, pb); goto out; }
			for (int lin = first; lin <= last; lin++)
				for (int r = 0, ch = fused_chunk(x, lin); r < x->rows[lin]; r += ch) {
					size_t dst = fused_row(x, lin, r);
					d->copy(d, p + dst * in, w->w[lin] + (size_t)r * in, sizeof(float) * ch * in);
					if (pb) d->copy(d, pb + dst, w->b[lin] + r, sizeof(float) * ch);
				}
			int e = add_quantized(x, &ol, base, p, rows, in, pd);
			if (!e && pb) {
				snprintf(name, sizeof name, "%s.bias", base);
				e = add_f16(x, &ol, name, pb, rows);
			}
			if (!e && pd)
				for (int lin = first; lin <= last; lin++)
					for (int r = 0, ch = fused_chunk(x, lin); r < x->rows[lin]; r += ch)
						d->copy(d, deq[lin] + (size_t)r * in, pd + fused_row(x, lin, r) * in,
							sizeof(float) * ch * in);
			d->free(d, p); d->free(d, pb); d->free(d, pd);
			if (e) goto out;
			continue;
		}
		if (add_quantized(x, &ol, base, w->w[i], x->rows[i], x->cols[i], deq ? deq[i] : NULL)) goto out;
		if (w->b[i]) {
			snprintf(name, sizeof name, "%s.bias", base);
			if (add_f16(x, &ol, name, w->b[i], x->rows[i])) goto out;
		}
	}
	/* anything else under this layer's prefix (e.g. rotary_emb.inv_freq in old checkpoints) */
	char prefix[128];
	snprintf(local, sizeof local, "model.layers.%d.", l);
	st_set_full(x->set, local, prefix, sizeof prefix);
	for (int i = 0; i < st_set_count(x->set); i++) {
		const struct st_tensor *t = st_set_get(x->set, i);
		if (strncmp(t->name, prefix, strlen(prefix)) != 0) continue;
		bool have = false;
		for (int j = 0; j < ol.n && !have; j++) {
			size_t bl = strlen(ol.t[j].name);
			const char *dot = strrchr(ol.t[j].name, '.');
			size_t stem = dot ? (size_t)(dot - ol.t[j].name) : bl;
			have = !strcmp(ol.t[j].name, t->name) ||
			       (!strncmp(ol.t[j].name, t->name, stem) && !strcmp(t->name + stem, ".weight"));
		}
		if (!have && olist_copy(&ol, t, x->nt)) goto out;
	}
	tstage(x, T_QUANT);
	rc = write_shard(x, l, &ol);
	tstage(x, T_WRITE);
out:
	olist_free(&ol);
	return rc;
}

/* A tensor of the decoder layers (those go into the layer shards), prefix or not */
static bool in_layers(const struct ctx *x, const struct st_tensor *t)
{
	char buf[512];
	const char *local = st_set_local(x->set, t->name, buf, sizeof buf);
	return local && strncmp(local, "model.layers.", 13) == 0;
}

/* The last shards: everything outside the decoder layers (embeddings, final norm, lm_head; a vision-language
 * model's vision tower and projector), floats as fp16. A shard takes up to 64 tensors and 2 GiB, so a vision
 * tower of hundreds of tensors (InternViT-6B: 11 GiB) is neither held in memory at once nor one file.
 * write false: only count the shards (x->n_shards is needed for the file names before any is written). */
static int write_rest(struct ctx *x, bool write, int *n_out)
{
	struct olist ol = { .n = 0 };
	const int cap = (int)ARRAY_SIZE(ol.t);
	const size_t max_bytes = (size_t)2 << 30;
	size_t bytes = 0;
	int rc = LM_OK, n = 0, pending = 0;
	for (int i = 0; i < st_set_count(x->set) && rc == LM_OK; i++) {
		const struct st_tensor *t = st_set_get(x->set, i);
		if (in_layers(x, t)) continue;
		if (pending && (pending == cap || bytes + t->bytes > max_bytes)) {
			if (write) {
				rc = write_shard(x, x->nl + n, &ol);
				olist_free(&ol);
				ol.n = 0;
			}
			n++;
			pending = 0;
			bytes = 0;
			if (rc != LM_OK) break;
		}
		if (write) rc = olist_copy(&ol, t, x->nt);
		pending++;
		bytes += t->bytes;
	}
	if (rc == LM_OK && (pending || n == 0)) {
		if (write) rc = write_shard(x, x->nl + n, &ol);
		n++;
	}
	olist_free(&ol);
	if (n_out) *n_out = n;
	return rc;
}

static int write_json(struct ctx *x, const char *file, cJSON *j)
{
	char path[4200];
	path_join(path, sizeof path, x->tmpdir, file);
	char *s = cJSON_Print(j);
	if (!s) return lm_err(_("out of memory"));
	FILE *f = fopen(path, "w");
	int e = 0;
	if (!f || fputs(s, f) < 0 || fputc('\n', f) < 0) e = errno;
	if (f && fclose(f) != 0 && !e) e = errno;
	free(s);
	return e ? write_failed(x, file, e) : LM_OK;
}

/* quantization_config (AutoAWQ's gemm) and the fp16 dtype into a config object; keep (NULL-terminated, or NULL):
 * the modules_to_not_convert, the modules whose linears stay dense */
static void mark_quantized(struct ctx *x, cJSON *c, const char *const *keep)
{
	cJSON_DeleteItemFromObjectCaseSensitive(c, "quantization_config");
	cJSON *q = cJSON_AddObjectToObject(c, "quantization_config");
	cJSON_AddStringToObject(q, "quant_method", "awq");
	cJSON_AddStringToObject(q, "version", "gemm");
	cJSON_AddNumberToObject(q, "bits", x->o->bits);
	cJSON_AddNumberToObject(q, "group_size", x->o->group);
	cJSON_AddBoolToObject(q, "zero_point", 1);
	if (keep) {
		cJSON *k = cJSON_AddArrayToObject(q, "modules_to_not_convert");
		for (; *keep; keep++) cJSON_AddItemToArray(k, cJSON_CreateString(*keep));
	}
	cJSON_DeleteItemFromObjectCaseSensitive(c, "torch_dtype");
	cJSON_AddStringToObject(c, "torch_dtype", "float16");
	if (cJSON_GetObjectItemCaseSensitive(c, "dtype")) {
		cJSON_DeleteItemFromObjectCaseSensitive(c, "dtype");
		cJSON_AddStringToObject(c, "dtype", "float16");
	}
}

static int write_config_and_index(struct ctx *x)
{
	cJSON *c = x->config;
	/* a vision-language model: in the language model's config (InternVL's llm_config, LLaVA's text_config),
	 * where LMDeploy's auto_awq puts it, and at the top, where vLLM, transformers and AutoAWQ look */
	const bool llava = !strncmp(x->c.wrapper, "Llava", 5);
	cJSON *llm = x->c.wrapper[0] ? cJSON_GetObjectItemCaseSensitive(c, llava ? "text_config" : "llm_config") : NULL;
	/* LLaVA: vLLM and transformers build the vision tower and the projector with the quantization_config
	 * too, so it names them as dense. vLLM matches a name anywhere in a module's path; transformers 5
	 * from the start of it, where 4.52 and later put them under "model." (whichever layout was loaded) */
	static const char *const llava_keep[] = { "vision_tower", "multi_modal_projector", "model.vision_tower",
						  "model.multi_modal_projector", NULL };
	const char *const *keep = llava ? llava_keep : NULL;
	if (cJSON_IsObject(llm)) mark_quantized(x, llm, keep);
	mark_quantized(x, c, keep);
	if (write_json(x, "config.json", c)) return LM_ERR;

	cJSON *idx = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(idx, "metadata");
	cJSON_AddNumberToObject(meta, "total_size", (double)x->total_bytes);
	cJSON_AddItemReferenceToObject(idx, "weight_map", x->weight_map);
	int rc = write_json(x, "model.safetensors.index.json", idx);
	cJSON_Delete(idx);
	return rc;
}

/* Copy the tokenizer, generation config, chat template and remote code: every plain file of the model
 * directory but the weights, their index and config.json. */
static int copy_side_files(struct ctx *x)
{
	DIR *d = opendir(x->o->model_dir);
	if (!d) return lm_err(_("%s: cannot list: %s"), x->o->model_dir, strerror(errno));
	struct dirent *e;
	int rc = LM_OK;
	while (rc == LM_OK && (e = readdir(d))) {
		const char *n = e->d_name;
		if (n[0] == '.' || !strcmp(n, "config.json") || ends_with(n, ".safetensors") || ends_with(n, ".bin") ||
		    ends_with(n, ".pt") || ends_with(n, ".pth") || ends_with(n, ".gguf") || ends_with(n, ".index.json"))
			continue;
		char src[4200], dst[4200];
		struct stat st;
		path_join(src, sizeof src, x->o->model_dir, n);
		if (stat(src, &st) != 0 || !S_ISREG(st.st_mode)) continue;
		char *buf;
		size_t len;
		if (read_file(src, &buf, &len)) { rc = LM_ERR; break; }
		path_join(dst, sizeof dst, x->tmpdir, n);
		FILE *f = fopen(dst, "wb");
		int err = 0;
		if (!f || fwrite(buf, 1, len, f) != len) err = errno;
		if (f && fclose(f) != 0 && !err) err = errno;
		if (err) rc = write_failed(x, n, err);
		free(buf);
	}
	closedir(d);
	return rc;
}

/* ---------------------------------------------------------------- checks and setup */

static int read_config_json(const char *model_dir, cJSON **out)
{
	char path[4200], *buf;
	size_t len;
	path_join(path, sizeof path, model_dir, "config.json");
	if (read_file(path, &buf, &len)) return LM_ERR;
	cJSON *j = cJSON_Parse(buf);
	free(buf);
	if (!cJSON_IsObject(j)) { cJSON_Delete(j); return lm_err(_("%s: not a JSON object"), path); }
	if (cJSON_GetObjectItemCaseSensitive(j, "quantization_config")) {
		cJSON_Delete(j);
		return lm_err(_("%s: the model is already quantized (config.json has quantization_config); quantize "
				"the original fp16/bf16 model"),
			      model_dir);
	}
	*out = j;
	return LM_OK;
}

static int setup(struct ctx *x, const char *model_dir, int group)
{
	char path[4200];
	/* config_load first: it says where a config.json that is not valid JSON breaks ("not a JSON object" did not) */
	path_join(path, sizeof path, model_dir, "config.json");
	if (config_load(&x->c, path)) return LM_ERR;
	if (read_config_json(model_dir, &x->config)) return LM_ERR;
	if (x->c.quant_bits) /* a quantization_config in text_config, or GPTQ's quantize_config.json */
		return lm_err(_("%s: the model is already quantized (%d-bit %s); quantize the original fp16/bf16 model"),
			      model_dir, x->c.quant_bits, x->c.quant == QUANT_GPTQ ? "GPTQ" : "AWQ");
	const enum arch a = x->c.arch;
	if (a != ARCH_LLAMA && a != ARCH_QWEN2 && a != ARCH_QWEN3 && a != ARCH_INTERNLM2 && a != ARCH_PHI3)
		return lm_err(_("%s: architecture %s is not supported by auto_awq (Llama, Mistral, Qwen2, Qwen3, Phi-3, InternLM2 are)"),
			      model_dir, x->c.arch_name);
	x->dim = x->c.dim;
	x->nh = x->c.n_heads;
	x->nkv = x->c.n_kv_heads;
	x->hd = x->c.head_dim;
	x->qd = x->nh * x->hd;
	x->kvd = x->nkv * x->hd;
	x->ffn = x->c.ffn;
	x->nl = x->c.n_layers;
	int rows[L_N] = { x->qd, x->kvd, x->kvd, x->dim, x->ffn, x->ffn, x->dim };
	int cols[L_N] = { x->dim, x->dim, x->dim, x->qd, x->dim, x->dim, x->ffn };
	memcpy(x->rows, rows, sizeof rows);
	memcpy(x->cols, cols, sizeof cols);
	static const char *what[L_N] = { "q", "k", "v", "o", "gate", "up", "down" };
	for (int i = 0; i < L_N; i++) {
		if (cols[i] % group)
			return lm_err(_("--w-group-size %d does not divide the %d input features of the %s projection"), group,
				      cols[i], what[i]);
		if (rows[i] % 8)
			return lm_err(_("%s: the %s projection has %d output features, not a multiple of 8 (gemm packing)"),
				      model_dir, what[i], rows[i]);
	}
	if (x->nh % x->nkv) return lm_err(_("%s: %d heads is not a multiple of %d KV heads"), model_dir, x->nh, x->nkv);
	if (model_open_tensors(&x->c, model_dir, &x->set)) return LM_ERR;
	for (int i = 0; i < st_set_count(x->set); i++) {
		const struct st_tensor *t = st_set_get(x->set, i);
		if (ends_with(t->name, ".qweight"))
			return lm_err(_("%s: the model is already quantized (tensor '%s')"), model_dir, t->name);
	}
	/* the tensors outside the layers are copied as they are: checked here, or a wrong one (a vocab_size that
	 * disagrees with the embeddings, an int8 lm_head) would pass into a result that no loader accepts */
	const bool il = x->c.arch == ARCH_INTERNLM2;
	const struct { const char *name; int rows, cols; bool optional; } plain[] = {
		{ il ? "model.tok_embeddings.weight" : "model.embed_tokens.weight", x->c.vocab, x->dim, false },
		{ "model.norm.weight", 0, x->dim, false },
		{ il ? "output.weight" : "lm_head.weight", x->c.vocab, x->dim, true }, /* absent: tied */
	};
	for (size_t i = 0; i < ARRAY_SIZE(plain); i++) {
		const struct st_tensor *t = st_set_find(x->set, plain[i].name);
		int r = plain[i].rows, c = plain[i].cols;
		if (!t) {
			if (plain[i].optional) continue;
			char full[512];
			return lm_err(_("%s: tensor '%s' is missing"), model_dir,
				      st_set_full(x->set, plain[i].name, full, sizeof full));
		}
		if (!is_float(t->dt) || (r ? t->ndim != 2 || t->shape[0] != r || t->shape[1] != c : t->ndim != 1 || t->shape[0] != c))
			return lm_err(_("%s: tensor '%s' has dtype %s and %d dims, expected a float %s of [%d%s%d]"), t->file,
				      t->name, dtype_name(t->dt), t->ndim, r ? "matrix" : "vector", r ? r : c, r ? ", " : "",
				      r ? c : 0);
	}
	return LM_OK;
}

static void ctx_free(struct ctx *x)
{
	cJSON_Delete(x->config);
	cJSON_Delete(x->weight_map);
	if (x->set) st_set_close(x->set);
}

int awq_check_model(const char *model_dir, int group)
{
	struct ctx x;
	memset(&x, 0, sizeof x);
	int rc = setup(&x, model_dir, group);
	ctx_free(&x);
	return rc;
}

/* ---------------------------------------------------------------- the layer loop */

static void tstage(struct ctx *x, int stage)
{
	if (!x->timing) return;
	x->d->sync(x->d); /* an error is reported by the next checked sync */
	double t = now_s();
	x->tm[stage] += t - x->t_last;
	x->t_last = t;
}

/* Tokens per forward chunk: --batch-size windows, or more whole windows where the implementation prefers
 * bigger matrices (the chunk changes only the order in which the statistics are summed). */
static int chunk_tokens(const struct ctx *x)
{
	return MAX(MAX(1, x->o->batch), x->d->chunk_tokens / x->o->seqlen) * x->o->seqlen;
}

static int embed(struct ctx *x, const int32_t *ids, size_t n, float *X)
{
	const char *name = is_internlm2(x) ? "model.tok_embeddings.weight" : "model.embed_tokens.weight";
	const struct st_tensor *t = st_set_find(x->set, name);
	char full[512];
	if (!t) return lm_err(_("%s: tensor '%s' is missing"), x->o->model_dir, st_set_full(x->set, name, full, sizeof full));
	if (!is_float(t->dt) || t->ndim != 2 || t->shape[1] != x->dim)
		return lm_err(_("%s: tensor '%s' is not a float [vocab, %d] matrix"), t->file, t->name, x->dim);
	size_t es = dtype_size(t->dt), row = es * x->dim;
	/* the rows as they are stored, gathered into a staging buffer; converted to float32 by d->load */
	const size_t step = 4096;
	char *stage = malloc(step * row);
	if (!stage) return lm_err(_("out of memory"));
	for (size_t i0 = 0; i0 < n; i0 += step) {
		size_t k = MIN(step, n - i0);
		for (size_t i = i0; i < i0 + k; i++) {
			if (ids[i] < 0 || ids[i] >= t->shape[0]) {
				free(stage);
				return lm_err(_("token id %d is outside the embedding table (%lld rows)"), ids[i],
					      (long long)t->shape[0]);
			}
			memcpy(stage + (i - i0) * row, (const char *)t->data + (size_t)ids[i] * row, row);
		}
		x->d->load(x->d, X + i0 * x->dim, stage, t->dt, k * x->dim);
	}
	free(stage);
	return x->d->sync(x->d);
}

struct stats {
	double *m[G_N];          /* per-channel sums of |x| (buffers of ctx.d) */
};

/* Calibrate one layer: run every window through it (X becomes the next layer's input), gather the means,
 * keep the subset's activations. */
static int calibrate_layer(struct ctx *x, const struct lw *w, float *X, size_t N, struct stats *st,
			   struct subset *sub, struct scratch *s, float *h, float *att, float *h2, float *a, float *ao,
			   float *mo)
{
	const int chunk = chunk_tokens(x);
	const float eps = x->c.norm_eps;
	struct awq_dev *d = x->d;
	for (size_t t0 = 0; t0 < N; t0 += chunk) {
		if (cancelled(x)) return lm_err(_("interrupted"));
		int m = (int)MIN((size_t)chunk, N - t0);
		float *xc = X + t0 * x->dim;
		int keep = t0 < (size_t)sub->m ? (int)MIN((size_t)m, sub->m - t0) : 0;
		if (keep) d->copy(d, sub->x + t0 * x->dim, xc, sizeof(float) * keep * x->dim);
		d->rmsnorm(d, h, xc, w->ln1, m, x->dim, eps);
		attn_block(x, w, w->w, w->b, h, m, att, ao, s);
		d->add(d, xc, ao, (size_t)m * x->dim);
		d->rmsnorm(d, h2, xc, w->ln2, m, x->dim, eps);
		mlp_block(x, w->w, w->b, h2, m, a, mo, s);
		d->add(d, xc, mo, (size_t)m * x->dim);
		tstage(x, T_FORWARD);
		d->absmean_acc(d, st->m[G_QKV], h, m, x->dim);
		d->absmean_acc(d, st->m[G_O], att, m, x->qd);
		d->absmean_acc(d, st->m[G_GU], h2, m, x->dim);
		d->absmean_acc(d, st->m[G_D], a, m, x->ffn);
		tstage(x, T_STATS);
		if (keep) {
#define KEEP(dst, src, wd) d->copy(d, sub->dst + t0 * (wd), src, sizeof(float) * keep * (wd))
			KEEP(h, h, x->dim); KEEP(att, att, x->qd); KEEP(h2, h2, x->dim); KEEP(a, a, x->ffn);
			KEEP(ao, ao, x->dim); KEEP(mo, mo, x->dim);
#undef KEEP
		}
		if (now_s() - x->last_report > 2) report(x, _("calibrate"));
	}
	return d->sync(d);
}

/* The relative error of the quantized layer on the subset: |y_q - y|^2 / |y - x|^2 where y is the layer's
 * full-precision output and x its input (so the figure is relative to what the layer adds). */
static double layer_error(struct ctx *x, float *const *deq, const struct lw *w, const struct subset *sub,
			  struct scratch *s)
{
	struct awq_dev *d = x->d;
	int m = sub->m;
	size_t nd = (size_t)m * x->dim;
	float *xc = d->alloc(d, sizeof(float) * nd), *h = xc ? d->alloc(d, sizeof(float) * nd) : NULL;
	float *t = h ? d->alloc(d, sizeof(float) * nd) : NULL;
	float *big = t ? d->alloc(d, sizeof(float) * m * (size_t)MAX(x->qd, x->ffn)) : NULL;
	double e = NAN;
	if (big) {
		d->copy(d, xc, sub->x, sizeof(float) * nd);
		d->rmsnorm(d, h, xc, w->ln1, m, x->dim, x->c.norm_eps);
		attn_block(x, w, deq, w->b, h, m, big, t, s);
		d->add(d, xc, t, nd);
		d->rmsnorm(d, h, xc, w->ln2, m, x->dim, x->c.norm_eps);
		mlp_block(x, deq, w->b, h, m, big, t, s);
		d->add(d, xc, t, nd);
		double num, den;
		d->layer_err(d, sub->x, sub->ao, sub->mo, xc, nd, &num, &den);
		e = den > 0 ? num / den : 0;
	}
	d->free(d, xc); d->free(d, h); d->free(d, t); d->free(d, big);
	return e;
}

static int make_tmpdir(struct ctx *x)
{
	const char *dir = x->o->work_dir;
	/* the result is renamed into place at the end: a name that cannot be renamed onto would cost the whole run */
	size_t l = strlen(dir);
	while (l > 1 && dir[l - 1] == '/') l--;
	const char *base = dir + l;
	while (base > dir && base[-1] != '/') base--;
	size_t bl = (size_t)(dir + l - base);
	if (!l || (l == 1 && dir[0] == '/') || (bl == 1 && base[0] == '.') || (bl == 2 && !strncmp(base, "..", 2)))
		return lm_err(_("--work-dir '%s': name the directory to create (not '.', '..' or '/')"), dir);
	/* a symbolic link (to an empty directory): the result replaces the directory it names; renaming onto the
	 * link itself failed (ENOTDIR), and only after the whole run */
	struct stat st;
	snprintf(x->dir, sizeof x->dir, "%.*s", (int)l, dir);
	if (lstat(x->dir, &st) == 0 && S_ISLNK(st.st_mode)) {
		char *r = realpath(x->dir, NULL);
		if (!r) return lm_err(_("--work-dir %s is a symbolic link that cannot be followed: %s"), dir, strerror(errno));
		snprintf(x->dir, sizeof x->dir, "%s", r);
		free(r);
	}
	if (stat(x->dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) return lm_err(_("--work-dir %s exists and is not a directory"), dir);
		DIR *d = opendir(x->dir);
		struct dirent *e;
		bool empty = true;
		while (d && (e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = false;
		if (d) closedir(d);
		if (!empty)
			return lm_err(_("--work-dir %s exists and is not empty; remove it or choose another directory"), dir);
	}
	/* x->dir has no trailing '/' */
	if (snprintf(x->tmpdir, sizeof x->tmpdir, "%.*s.tmp-XXXXXX", (int)(sizeof x->tmpdir - 12), x->dir) >=
		    (int)sizeof x->tmpdir ||
	    strlen(x->dir) > sizeof x->tmpdir - 12) {
		x->tmpdir[0] = 0;
		return lm_err(_("--work-dir %s: the path is too long"), dir);
	}
	if (!mkdtemp(x->tmpdir)) {
		int e = errno;
		x->tmpdir[0] = 0;
		return lm_err(_("--work-dir %s: cannot create a directory beside it: %s"), dir, strerror(e));
	}
	mode_t um = umask(0); /* mkdtemp makes it 0700; the result should look like any other directory */
	umask(um);
	chmod(x->tmpdir, 0777 & ~um);
	return LM_OK;
}

static int finish_dir(struct ctx *x)
{
	const char *dir = x->o->work_dir;
	rmdir(x->dir); /* an empty work dir that already existed */
	if (rename(x->tmpdir, x->dir) != 0)
		return lm_err(_("--work-dir %s: cannot rename %s to it: %s"), dir, x->tmpdir, strerror(errno));
	x->tmpdir[0] = 0;
	return LM_OK;
}

/* A host view of n floats of a buffer of x->d: the buffer itself on the cpu, else a downloaded copy
 * (release with host_view_free; NULL when out of memory). */
static float *host_view(struct ctx *x, const float *buf, size_t n)
{
	if (x->d->host) return (float *)buf;
	float *h = malloc(sizeof(float) * n);
	if (h) x->d->download(x->d, h, buf, sizeof(float) * n);
	return h;
}

static void host_view_free(struct ctx *x, float *h)
{
	if (!x->d->host) free(h);
}

static int quantize_all(struct ctx *x)
{
	const struct awq_opts *o = x->o;
	struct awq_dev *d = x->d;
	const bool calib = o->samples > 0;
	const int T = o->seqlen;
	const size_t N = calib ? (size_t)o->samples * T : 0;
	int rc = LM_ERR;
	float *X = NULL, *h = NULL, *att = NULL, *h2 = NULL, *a = NULL, *ao = NULL, *mo = NULL;
	float *deq[L_N] = { 0 };
	struct scratch s = { 0 };
	struct subset sub = { 0 };
	struct stats st = { { 0 } };
	double *xm[G_N] = { 0 };         /* the layer's channel means, on the host */
	float *sc[G_N] = { 0 }, *sc_d[G_N] = { 0 };
	struct tokenizer *tok = NULL;
	struct lw w;
	int32_t *ids = NULL;
	double t_start = now_s(), t_tok = 0, t_embed = 0;

	memset(&w, 0, sizeof w);
	x->last_err = NAN;
	int n_rest;
	write_rest(x, false, &n_rest);
	x->n_shards = x->nl + n_rest;
	x->weight_map = cJSON_CreateObject();
	if (calib) {
		char *text;
		size_t len;
		x->layer = 0;
		if (x->sink && x->sink->report) x->sink->report(x->sink, _("tokenize calibration text"), 0, x->nl, NAN);
		if (calib_read_text(o->dataset, 64u << 20, &text, &len)) goto out;
		if (tok_load_dir(&tok, o->model_dir)) { free(text); goto out; }
		rc = calib_windows(tok, text, len, o->dataset, o->samples, T, o->seed, &ids);
		free(text);
		if (rc) goto out;
		rc = LM_ERR;
		t_tok = now_s() - t_start;
		int chunk = chunk_tokens(x);
		/* The searches score on the first windows: all of them by default, as AutoAWQ does (fewer make the
		 * chosen ratios noisy: measured in docs/QUANTIZATION.md), up to 16384 tokens to bound memory. */
		int budget = o->search_tokens > 0 ? o->search_tokens : 16384;
		sub.m = (int)MIN(N, (size_t)MAX(T, budget / T * T));
		const size_t f = sizeof(float);
		bool ok = (X = d->alloc(d, f * N * x->dim)) && (h = d->alloc(d, f * chunk * x->dim)) &&
			  (h2 = d->alloc(d, f * chunk * x->dim)) && (ao = d->alloc(d, f * chunk * x->dim)) &&
			  (mo = d->alloc(d, f * chunk * x->dim)) && (att = d->alloc(d, f * chunk * x->qd)) &&
			  (a = d->alloc(d, f * chunk * x->ffn)) && (sub.x = d->alloc(d, f * sub.m * x->dim)) &&
			  (sub.h = d->alloc(d, f * sub.m * x->dim)) && (sub.h2 = d->alloc(d, f * sub.m * x->dim)) &&
			  (sub.ao = d->alloc(d, f * sub.m * x->dim)) && (sub.mo = d->alloc(d, f * sub.m * x->dim)) &&
			  (sub.att = d->alloc(d, f * sub.m * x->qd)) && (sub.a = d->alloc(d, f * sub.m * x->ffn)) &&
			  (x->inv_freq = d->alloc(d, f * x->hd));
		for (int g = 0; g < G_N && ok; g++)
			ok = (st.m[g] = d->alloc(d, sizeof(double) * MAX(x->ffn, x->qd))) &&
			     (xm[g] = malloc(sizeof(double) * MAX(x->ffn, x->qd)));
		for (int i = 0; i < L_N && ok; i++) ok = (deq[i] = d->alloc(d, f * x->rows[i] * x->cols[i])) != NULL;
		if (!ok) {
			lm_err(_("out of memory for %zu calibration tokens (try fewer --calib-samples)"), N);
			goto out;
		}
		if (scratch_init(&s, x, MAX(chunk, sub.m))) goto out;
		float *inv = malloc(f * x->hd);
		if (!inv) { lm_err(_("out of memory")); goto out; }
		float ms;
		rope_inv_freq(&x->c, T, inv, &ms);
		d->upload(d, x->inv_freq, inv, f * x->hd);
		if (ms != 1.0f) { /* the calibration windows' own regime, as the model runs them */
			for (int i = 0; i < x->hd; i++) inv[i] = ms;
			if (!(x->rope_ms = d->alloc(d, f * x->hd))) { free(inv); goto out; }
			d->upload(d, x->rope_ms, inv, f * x->hd);
		}
		free(inv);
		if (embed(x, ids, N, X)) goto out;
		t_embed = now_s() - t_start - t_tok;
		if (x->timing)
			fprintf(stderr, "awq timing: %s backend, tokenize %.2f s, embed %.2f s, %zu tokens, chunk %d\n", d->name,
				t_tok, t_embed, N, chunk);
	}

	for (int l = 0; l < x->nl; l++) {
		x->layer = l;
		memset(x->tm, 0, sizeof x->tm);
		x->t_last = now_s();
		if (cancelled(x)) { lm_err(_("interrupted")); goto out; }
		report(x, _("load"));
		if (lw_load(x, l, &w)) goto out;
		tstage(x, T_LOAD);
		if (calib) {
			for (int g = 0; g < G_N; g++) d->zero(d, st.m[g], sizeof(double) * MAX(x->ffn, x->qd));
			if (calibrate_layer(x, &w, X, N, &st, &sub, &s, h, att, h2, a, ao, mo)) goto out;
			int in[G_N] = { x->dim, x->dim, x->ffn, x->qd };
			for (int g = 0; g < G_N; g++) {
				d->download(d, xm[g], st.m[g], sizeof(double) * in[g]);
				for (int i = 0; i < in[g]; i++) xm[g][i] /= (double)N;
			}
			/* v -> o only when v's rows map one to one onto o's input channels (no GQA) */
			int ng = x->nkv == x->nh && !is_internlm2(x) ? G_N : G_O;
			for (int g = 0; g < ng; g++) {
				double ratio = 0.5, loss;
				if (o->search_scale) {
					report(x, _("search scales"));
					if (search_ratio(x, g, &w, xm[g], &sub, &s, &ratio, &loss)) goto out;
					if (getenv("LMTERM_AWQ_DEBUG"))
						fprintf(stderr, "\nlayer %d group %d: ratio %.2f loss %.4g\n", l, g, ratio, loss);
				}
				sc[g] = malloc(sizeof(float) * in[g]);
				sc_d[g] = d->alloc(d, sizeof(float) * in[g]);
				if (!sc[g] || !sc_d[g]) { lm_err(_("out of memory")); goto out; }
				make_scales(xm[g], in[g], ratio, sc[g]);
				d->upload(d, sc_d[g], sc[g], sizeof(float) * in[g]);
			}
			/* fold: norms and preceding linears take 1/s, the linears' input columns s */
			d->div(d, w.ln1, sc_d[G_QKV], x->dim);
			d->div(d, w.ln2, sc_d[G_GU], x->dim);
			for (int lin = L_Q; lin <= L_V; lin++) d->scale_cols(d, w.w[lin], x->rows[lin], x->dim, sc_d[G_QKV]);
			d->scale_cols(d, w.w[L_G], x->ffn, x->dim, sc_d[G_GU]);
			d->scale_cols(d, w.w[L_U], x->ffn, x->dim, sc_d[G_GU]);
			d->unscale_rows(d, w.w[L_U], w.b[L_U], x->ffn, x->dim, sc_d[G_D]);
			d->scale_cols(d, w.w[L_D], x->dim, x->ffn, sc_d[G_D]);
			if (sc[G_O]) {
				d->unscale_rows(d, w.w[L_V], w.b[L_V], x->kvd, x->dim, sc_d[G_O]);
				d->scale_cols(d, w.w[L_O], x->dim, x->qd, sc_d[G_O]);
			}
			/* the clipping search runs on the host (on a device: on downloaded copies of the weight and
			 * of its inputs' first 2048 tokens) */
			if (o->search_clip) {
				report(x, _("search clipping"));
				static const int clip_lins[] = { L_V, L_O, L_G, L_U, L_D };
				for (size_t c = 0; c < ARRAY_SIZE(clip_lins); c++) {
					int lin = clip_lins[c], mt = MIN(sub.m, 2048);
					const float *xin = lin == L_V ? sub.h : lin == L_O ? sub.att : lin == L_D ? sub.a : sub.h2;
					const float *sv = lin == L_V ? sc[G_QKV] : lin == L_O ? sc[G_O] : lin == L_D ? sc[G_D] : sc[G_GU];
					if (cancelled(x)) { lm_err(_("interrupted")); goto out; }
					float *xh = host_view(x, xin, (size_t)mt * x->cols[lin]);
					float *wh = xh ? host_view(x, w.w[lin], (size_t)x->rows[lin] * x->cols[lin]) : NULL;
					double *G = wh ? gram_groups(xh, sv, mt, x->cols[lin], o->group) : NULL;
					if (!G) { host_view_free(x, xh); host_view_free(x, wh); lm_err(_("out of memory")); goto out; }
					struct clip_job j = { wh, G, x->rows[lin], x->cols[lin], o->group };
					lm_parallel(x->nt, x->rows[lin], clip_rows, &j);
					free(G);
					if (!d->host) d->upload(d, w.w[lin], wh, sizeof(float) * x->rows[lin] * x->cols[lin]);
					host_view_free(x, xh);
					host_view_free(x, wh);
				}
			}
			for (int g = 0; g < G_N; g++) { free(sc[g]); d->free(d, sc_d[g]); sc[g] = sc_d[g] = NULL; }
			tstage(x, T_SEARCH);
		}
		report(x, _("quantize"));
		if (write_layer(x, l, &w, calib ? deq : NULL)) goto out;
		if (calib) x->last_err = layer_error(x, deq, &w, &sub, &s);
		tstage(x, T_ERR);
		if (d->sync(d)) goto out;
		lw_free(d, &w);
		x->layer = l + 1;
		if (x->timing)
			fprintf(stderr,
				"awq timing: layer %d load %.3f forward %.3f stats %.3f search %.3f quantize %.3f write %.3f "
				"error %.3f s\n",
				l, x->tm[T_LOAD], x->tm[T_FORWARD], x->tm[T_STATS], x->tm[T_SEARCH], x->tm[T_QUANT],
				x->tm[T_WRITE], x->tm[T_ERR]);
		if (x->sink && x->sink->report) {
			char stage[96];
			snprintf(stage, sizeof stage, _("layer %d/%d: done"), l + 1, x->nl);
			x->sink->report(x->sink, stage, l + 1, x->nl, x->last_err);
		}
	}
	double t_rest = now_s();
	if (write_rest(x, true, NULL) || write_config_and_index(x) || copy_side_files(x)) goto out;
	if (x->timing)
		fprintf(stderr, "awq timing: rest (embeddings, lm_head, config, side files) %.2f s, total %.2f s\n",
			now_s() - t_rest, now_s() - t_start);
	rc = LM_OK;
out:
	lw_free(d, &w);
	d->free(d, X); d->free(d, h); d->free(d, att); d->free(d, h2); d->free(d, a); d->free(d, ao); d->free(d, mo);
	free(ids);
	d->free(d, sub.x); d->free(d, sub.h); d->free(d, sub.att); d->free(d, sub.h2); d->free(d, sub.a);
	d->free(d, sub.ao); d->free(d, sub.mo);
	for (int g = 0; g < G_N; g++) { d->free(d, st.m[g]); free(xm[g]); free(sc[g]); d->free(d, sc_d[g]); }
	for (int i = 0; i < L_N; i++) d->free(d, deq[i]);
	d->free(d, x->inv_freq);
	x->inv_freq = NULL;
	d->free(d, x->rope_ms);
	x->rope_ms = NULL;
	scratch_free(d, &s);
	if (tok) tok_free(tok);
	return rc;
}

/* The implementation --backend names: auto = cuda where this build has it and a GPU is usable. */
static int dev_create(struct ctx *x)
{
	const char *b = x->o->backend ? x->o->backend : "auto";
#if HAVE_CUDA
	const char *tf = getenv("LMTERM_AWQ_TF32");
	bool tf32 = tf && strcmp(tf, "0") != 0;
	if (!strcmp(b, "cuda") || (!strcmp(b, "auto") && backend_auto_uses_cuda())) return awq_dev_cuda_create(&x->d, tf32);
#else
	if (!strcmp(b, "cuda")) return lm_err(_("--backend cuda: this lmterm was built without CUDA (configure --with-cuda)"));
	if (!strcmp(b, "auto")) backend_auto_uses_cuda(); /* for its note */
#endif
	return awq_dev_cpu_create(&x->d, x->nt);
}

int awq_quantize(const struct awq_opts *o, struct progress_sink *sink)
{
	struct ctx x;
	memset(&x, 0, sizeof x);
	x.o = o;
	x.sink = sink;
	x.nt = o->n_threads > 0 ? o->n_threads : lm_cpu_count();
	int rc = LM_ERR;
	if (o->bits != 4) { lm_err(_("--w-bits %d: only 4-bit weights are supported"), o->bits); goto out; }
	if (setup(&x, o->model_dir, o->group)) goto out;
	if (dev_create(&x)) goto out;
	x.timing = getenv("LMTERM_AWQ_TIMING") && strcmp(getenv("LMTERM_AWQ_TIMING"), "0") != 0;
	if (make_tmpdir(&x)) goto out;
	if (quantize_all(&x)) goto out;
	rc = finish_dir(&x);
out:
	if (x.tmpdir[0]) rm_tree(x.tmpdir);
	ctx_free(&x);
	awq_dev_destroy(x.d);
	return rc;
}

/* ---------------------------------------------------------------- the cpu implementation of awq_dev.h
 * Host memory; the kernels of awq_ops.c and the quantizer above. The reference for the cuda one. */

static void *cpu_alloc(struct awq_dev *d, size_t bytes)
{
	void *p = malloc(bytes ? bytes : 1);
	if (!p) lm_err(_("out of memory"));
	return p;
}
static void cpu_free(struct awq_dev *d, void *p) { free(p); }
static void cpu_copy(struct awq_dev *d, void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void cpu_zero(struct awq_dev *d, void *dst, size_t bytes) { memset(dst, 0, bytes); }
static void cpu_load(struct awq_dev *d, float *dst, const void *src, enum dtype dt, size_t n) { to_f32(dst, src, dt, n); }

static void cpu_matmul(struct awq_dev *d, float *y, const float *x, const float *w, const float *bias, int m, int n,
		       int k)
{
	awq_matmul(d->n_threads, y, x, w, bias, m, n, k);
}
static void cpu_rmsnorm(struct awq_dev *d, float *h, const float *x, const float *w, int m, int dim, float eps)
{
	awq_rmsnorm(h, x, w, m, dim, eps);
}
static void cpu_rope(struct awq_dev *d, float *x, int m, int n_heads, int hd, int seqlen, const float *inv_freq)
{
	if (awq_rope(x, m, n_heads, hd, seqlen, inv_freq)) *(bool *)d->impl = true; /* the next sync says so */
}
static void cpu_attention(struct awq_dev *d, float *out, const float *q, const float *k, const float *v, int m,
			  int seqlen, int nh, int nkv, int hd)
{
	if (awq_attention(d->n_threads, out, q, k, v, m, seqlen, nh, nkv, hd)) *(bool *)d->impl = true;
}
static void cpu_swiglu(struct awq_dev *d, float *out, const float *g, const float *u, size_t n) { awq_swiglu(out, g, u, n); }
static void cpu_add(struct awq_dev *d, float *x, const float *y, size_t n)
{
	for (size_t i = 0; i < n; i++) x[i] += y[i];
}
static void cpu_absmean_acc(struct awq_dev *d, double *acc, const float *x, int m, int dim)
{
	awq_absmean_acc(acc, x, m, dim);
}
static double cpu_mse(struct awq_dev *d, const float *a, const float *b, size_t n) { return mse(a, b, n); }
static void cpu_layer_err(struct awq_dev *d, const float *x, const float *ao, const float *mo, const float *yq,
			  size_t n, double *num_out, double *den_out)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double y = (double)x[i] + ao[i] + mo[i], e = yq[i] - y, dd = y - x[i];
		num += e * e;
		den += dd * dd;
	}
	*num_out = num;
	*den_out = den;
}
static void cpu_scale_cols(struct awq_dev *d, float *w, int out, int in, const float *s) { scale_cols(w, out, in, s); }
static void cpu_unscale_rows(struct awq_dev *d, float *w, float *b, int out, int in, const float *s)
{
	unscale_rows(w, b, out, in, s);
}
static void cpu_div(struct awq_dev *d, float *x, const float *s, int n)
{
	for (int i = 0; i < n; i++) x[i] /= s[i];
}

struct fq_job {
	float *dst;
	const float *w, *s;
	int in, group;
};

static void fq_rows(void *ud, int b, int e)
{
	const struct fq_job *j = ud;
	float *row = malloc(sizeof(float) * j->in);
	if (!row) return;
	fake_quant(j->w + (size_t)b * j->in, j->s, e - b, j->in, j->group, j->dst + (size_t)b * j->in, row);
	free(row);
}

static void cpu_fake_quant(struct awq_dev *d, float *dst, const float *w, const float *s, int out, int in, int group)
{
	struct fq_job j = { dst, w, s, in, group };
	lm_parallel(d->n_threads, out, fq_rows, &j);
}

static void cpu_quantize(struct awq_dev *d, const float *w, int out, int in, int group, int32_t *qweight,
			 int32_t *qzeros, uint16_t *scales16, float *deq)
{
	uint8_t *codes = malloc((size_t)out * in), *zeros = malloc((size_t)out * (in / group));
	if (codes && zeros) {
		awq_quantize_rows(w, out, in, group, codes, zeros, scales16, deq);
		awq_pack(codes, zeros, out, in, group, qweight, qzeros);
	} else {
		*(bool *)d->impl = true; /* reported by sync */
	}
	free(codes);
	free(zeros);
}

static int cpu_sync(struct awq_dev *d)
{
	bool *failed = d->impl;
	if (*failed) {
		*failed = false;
		return lm_err(_("out of memory"));
	}
	return LM_OK;
}

static void cpu_destroy(struct awq_dev *d)
{
	free(d->impl);
	free(d);
}

int awq_dev_cpu_create(struct awq_dev **out, int n_threads)
{
	struct awq_dev *d = calloc(1, sizeof *d);
	bool *failed = calloc(1, sizeof *failed);
	if (!d || !failed) { free(d); free(failed); return lm_err(_("out of memory")); }
	*d = (struct awq_dev){
		.name = "cpu", .host = true, .chunk_tokens = 0, .n_threads = MAX(1, n_threads), .impl = failed,
		.alloc = cpu_alloc, .free = cpu_free, .upload = cpu_copy, .download = cpu_copy, .copy = cpu_copy,
		.zero = cpu_zero, .load = cpu_load, .matmul = cpu_matmul, .rmsnorm = cpu_rmsnorm, .rope = cpu_rope,
		.attention = cpu_attention, .swiglu = cpu_swiglu, .add = cpu_add, .absmean_acc = cpu_absmean_acc,
		.mse = cpu_mse, .layer_err = cpu_layer_err, .scale_cols = cpu_scale_cols, .unscale_rows = cpu_unscale_rows,
		.div = cpu_div, .fake_quant = cpu_fake_quant, .quantize = cpu_quantize, .sync = cpu_sync,
		.destroy = cpu_destroy,
	};
	*out = d;
	return LM_OK;
}

void awq_dev_destroy(struct awq_dev *d)
{
	if (d) d->destroy(d);
}
