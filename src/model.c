/* model.c: from a Hugging Face directory to backend weights in the one layout model.h describes.
 *
 * Each architecture is a table of tensor names. A fused weight (wqkv, w13) is described as a list of row
 * segments taken from source tensors, in output order; the same description drives dense rows, AWQ's packed
 * columns (the output dimension is the inner one there) and the biases. That one mechanism covers Llama's
 * q;k;v concatenation and InternLM2's head-by-head reorder alike.
 *
 * Host memory: an unfused weight is handed to the backend straight from the mapping; a fused one is
 * assembled in a temporary buffer that is freed as soon as the backend has taken it, so the peak is one
 * fused weight. Backends must copy in weight_load: the mapping is closed when model_load returns. */
#include "config.h"
#include "model.h"
#include "backend.h"
#include "safetensors.h"
#include "i18n.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct names {
	const char *embed, *norm, *lm_head;
	const char *attn_norm, *ffn_norm;           /* per layer, without ".weight" */
	const char *q_norm, *k_norm;                /* per layer: Qwen3's per-head norms (cfg.qk_norm) */
	const char *q, *k, *v, *wqkv;               /* wqkv: packed (InternLM2), else q, k, v */
	const char *qkv;                            /* q, k, v rows one after the other (Phi-3), else NULL */
	const char *o, *gate, *up, *down;
	const char *gate_up;                        /* gate rows, then up rows (Phi-3), else NULL */
};

static const struct names llama_names = {
	.embed = "model.embed_tokens", .norm = "model.norm", .lm_head = "lm_head",
	.attn_norm = "input_layernorm", .ffn_norm = "post_attention_layernorm",
	.q_norm = "self_attn.q_norm", .k_norm = "self_attn.k_norm",
	.q = "self_attn.q_proj", .k = "self_attn.k_proj", .v = "self_attn.v_proj",
	.o = "self_attn.o_proj", .gate = "mlp.gate_proj", .up = "mlp.up_proj", .down = "mlp.down_proj",
};

/* Phi-3, Phi-3.5, Phi-4: Mistral's names, but fused already in the order model.h wants, so each is one segment */
static const struct names phi3_names = {
	.embed = "model.embed_tokens", .norm = "model.norm", .lm_head = "lm_head",
	.attn_norm = "input_layernorm", .ffn_norm = "post_attention_layernorm",
	.qkv = "self_attn.qkv_proj", .o = "self_attn.o_proj", .gate_up = "mlp.gate_up_proj", .down = "mlp.down_proj",
};

static const struct names internlm2_names = {
	.embed = "model.tok_embeddings", .norm = "model.norm", .lm_head = "output",
	.attn_norm = "attention_norm", .ffn_norm = "ffn_norm",
	.wqkv = "attention.wqkv",
	.o = "attention.wo", .gate = "feed_forward.w1", .up = "feed_forward.w3", .down = "feed_forward.w2",
};

struct loader {
	struct model *m;
	struct st_set *set;
	const char *dir;
	char where[4096]; /* what holds the tensors: model.safetensors or the shard index, for messages */
	enum quant_method quant;
};

/* rows [row0, row0 + nrows) of the linear named base (out features src_rows) */
struct seg {
	char base[160];
	int src_rows, row0, nrows;
};

enum bias_mode { BIAS_NONE, BIAS_REQUIRED, BIAS_IF_PRESENT };

static bool is_dense(enum dtype dt) { return dt == DT_F32 || dt == DT_F16 || dt == DT_BF16; }

static void shape_str(char *out, size_t n, const int64_t *shape, int ndim)
{
	int p = snprintf(out, n, "[");
	for (int i = 0; i < ndim && p < (int)n; i++) p += snprintf(out + p, n - p, "%s%lld", i ? ", " : "", (long long)shape[i]);
	if (p < (int)n) snprintf(out + p, n - p, "]");
}

/* A tensor that must exist with the given shape (ndim 1 or 2) and a dtype from the class asked for. */
enum dt_class { DTC_DENSE, DTC_I32, DTC_F16 };

static const struct st_tensor *need(struct loader *L, const char *name, int ndim, int64_t d0, int64_t d1,
				    enum dt_class cls)
{
	const struct st_tensor *t = st_set_find(L->set, name);
	if (!t) {
		char full[512];
		lm_err(_("%s: tensor '%s' is missing (needed by %s)"), L->where, st_set_full(L->set, name, full, sizeof full),
		       L->m->cfg.arch_name);
		return NULL;
	}
	int64_t want[2] = { d0, d1 };
	if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
		char a[128], b[128];
		shape_str(a, sizeof a, t->shape, t->ndim);
		shape_str(b, sizeof b, want, ndim);
		lm_err(_("%s: tensor '%s' has shape %s, but config.json implies %s"), t->file, t->name, a, b);
		return NULL;
	}
	bool ok = cls == DTC_DENSE ? is_dense(t->dt) : cls == DTC_I32 ? t->dt == DT_I32 : t->dt == DT_F16;
	if (!ok) {
		lm_err(_("%s: tensor '%s' has dtype %s, expected %s"), t->file, t->name, dtype_name(t->dt),
		       cls == DTC_DENSE ? "F32, F16 or BF16" : cls == DTC_I32 ? "I32 (AWQ, GPTQ)" : "F16 (AWQ, GPTQ scales)");
		return NULL;
	}
	return t;
}

static int hand_over(struct loader *L, struct weight *w, const struct host_weight *hw, const char *what)
{
	struct backend *be = L->m->be;
	memset(w, 0, sizeof *w);
	if (be->i->weight_load(be, w, hw) != LM_OK) return lm_err_prefix("%s: %s: ", L->dir, what);
	L->m->weight_bytes += w->bytes;
	return LM_OK;
}

/* A vector or a table that is used as is: embeddings, norms, lm_head. */
/* A file whose header length is not a multiple of 8 leaves its tensors unaligned in the mapping: such data is
 * copied before a backend reads it as typed elements. */
static bool aligned(const void *p, size_t unit) { return ((uintptr_t)p & (unit - 1)) == 0; }

static int load_plain(struct loader *L, struct weight *w, const char *base, int rows, int cols)
{
	char name[256];
	snprintf(name, sizeof name, "%s.weight", base);
	const struct st_tensor *t = rows == 1 ? need(L, name, 1, cols, 0, DTC_DENSE) : need(L, name, 2, rows, cols, DTC_DENSE);
	if (!t) return LM_ERR;
	struct host_weight hw = { .dt = t->dt, .rows = rows, .cols = cols, .data = t->data };
	void *copy = NULL;
	if (!aligned(t->data, dtype_size(t->dt))) {
		if (!(copy = malloc(t->bytes))) return lm_err(_("%s: out of memory assembling %s"), L->dir, name);
		memcpy(copy, t->data, t->bytes);
		hw.data = copy;
	}
	int rc = hand_over(L, w, &hw, name);
	free(copy);
	return rc;
}

/* Copy nrep repetitions of the segments: unit-sized elements, each source row src_w units wide, taking
 * [off, off + len) of each, into dst rows dst_w wide. Dense weights are one repetition of whole rows;
 * AWQ's [in][out] tensors are in repetitions of the out-dimension pieces. */
struct piece { const uint8_t *src; size_t src_w, off, len; };

static void gather(uint8_t *dst, size_t dst_w, size_t nrep, size_t unit, const struct piece *p, int np)
{
	for (size_t r = 0; r < nrep; r++) {
		size_t at = 0;
		for (int i = 0; i < np; i++) {
			memcpy(dst + (r * dst_w + at) * unit, p[i].src + (r * p[i].src_w + p[i].off) * unit, p[i].len * unit);
			at += p[i].len;
		}
	}
}

/* ---- GPTQ ----
 * GPTQ (AutoGPTQ's QuantLinear, desc_act false) is turned into AutoAWQ's gemm layout here, on the host, so that
 * every backend's AWQ path (CPU reference, CUDA tiled GEMV and dequant + cuBLAS) runs it unchanged. Checked
 * against AutoGPTQ's qlinear_cuda_old.py (pack: input row 8r + i in bits 4i of qweight[r][c]; output 8c + j in
 * bits 4j of qzeros[g][c], written as z - 1; forward: w = s * (q - (z_stored + 1)), no mask after the + 1),
 * GPTQModel's convert_gptq_v1_to_v2_format_module (v2 stores z: v1 words + 0x11111111) and LMDeploy's
 * process_gptq (qzeros unpacked, + 1). The result is exact: the same codes, zeros and fp16 scales. */

static const int awq_order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 }; /* AutoAWQ: nibble n holds output 8c + awq_order[n] */

static uint32_t ld32(const void *p, size_t i) /* the mapping may leave int32 tensors unaligned */
{
	uint32_t v;
	memcpy(&v, (const uint8_t *)p + 4 * i, 4);
	return v;
}

int gptq_to_awq(const void *qweight, const void *qzeros, int in, int out, int group, bool v2, int32_t *aw_qweight,
		int32_t *aw_qzeros)
{
	const size_t n8 = (size_t)out / 8;
	/* codes: 8 inputs per GPTQ word become one nibble in each of 8 AutoAWQ words (one per input row) */
	for (size_t r = 0; r < (size_t)in / 8; r++)
		for (size_t c8 = 0; c8 < n8; c8++) {
			uint32_t w[8]; /* GPTQ words of outputs 8c8 .. 8c8 + 7, inputs 8r .. 8r + 7 */
			for (int j = 0; j < 8; j++) w[j] = ld32(qweight, r * out + 8 * c8 + j);
			for (int i = 0; i < 8; i++) {
				uint32_t o = 0;
				for (int n = 0; n < 8; n++) o |= ((w[awq_order[n]] >> (4 * i)) & 15u) << (4 * n);
				aw_qweight[(8 * r + i) * n8 + c8] = (int32_t)o;
			}
		}
	/* zeros: the same words along the output, nibbles reordered, and v1's "minus one" undone */
	for (size_t gi = 0; gi < (size_t)(in / group); gi++)
		for (size_t c8 = 0; c8 < n8; c8++) {
			uint32_t word = ld32(qzeros, gi * n8 + c8), o = 0;
			for (int n = 0; n < 8; n++) {
				uint32_t z = (word >> (4 * awq_order[n])) & 15u;
				if (!v2 && z == 15)
					return lm_err(_("GPTQ zero point 16 (qzeros holds 15, the zero minus one) in group %zu, output %zu: 4 bits cannot hold it (an asymmetric checkpoint in the old gptq format; gptq_v2 stores zeros as they are)"),
						      gi, 8 * c8 + awq_order[n]);
				o |= (v2 ? z : z + 1) << (4 * n);
			}
			aw_qzeros[gi * n8 + c8] = (int32_t)o;
		}
	return LM_OK;
}

/* One GPTQ linear (out x in features, group g) read, checked and converted: *qw [in][out/8], *qz [in/g][out/8]
 * in AutoAWQ's layout, malloc'ed. g_idx, where present, must be the plain i / g of desc_act false. */
static int gptq_linear(struct loader *L, const char *base, int out, int in, int g, int32_t **qw, int32_t **qz)
{
	char name[256];
	*qw = *qz = NULL;
	if (in % 8)
		return lm_err(_("%s: %s: GPTQ needs input features in multiples of 8 (%d)"), L->dir, base, in);
	snprintf(name, sizeof name, "%s.g_idx", base);
	const struct st_tensor *gt = st_set_find(L->set, name);
	if (gt) {
		if (!(gt = need(L, name, 1, in, 0, DTC_I32))) return LM_ERR;
		for (int i = 0; i < in; i++) {
			int32_t v = (int32_t)ld32(gt->data, i);
			if (v == i / g) continue;
			/* in order, only in groups of another size: the quantization config's group_size is wrong */
			int k = 1, n0 = 0;
			while (k < in && (int32_t)ld32(gt->data, k) >= (int32_t)ld32(gt->data, k - 1)) k++;
			while (n0 < in && (int32_t)ld32(gt->data, n0) == 0) n0++;
			if (k == in && n0 > 0 && n0 < in)
				return lm_err(_("%s: tensor '%s': g_idx holds groups of %d inputs, but the quantization config says group_size %d"),
					      gt->file, gt->name, n0, L->m->cfg.group_size);
			return lm_err(_("%s: tensor '%s': g_idx[%d] = %d, not %d: the inputs are permuted (act-order, desc_act), which is not supported"),
				      gt->file, gt->name, i, v, i / g);
		}
	}
	snprintf(name, sizeof name, "%s.qweight", base);
	const struct st_tensor *tw = need(L, name, 2, in / 8, out, DTC_I32);
	snprintf(name, sizeof name, "%s.qzeros", base);
	const struct st_tensor *tz = tw ? need(L, name, 2, in / g, out / 8, DTC_I32) : NULL;
	if (!tz) return LM_ERR;
	*qw = malloc((size_t)in * out / 2);
	*qz = malloc((size_t)(in / g) * out / 2);
	if (!*qw || !*qz) return lm_err(_("%s: out of memory assembling %s"), L->dir, base);
	if (gptq_to_awq(tw->data, tz->data, in, out, g, L->m->cfg.gptq_v2, *qw, *qz) != LM_OK)
		return lm_err_prefix("%s: %s: ", tz->file, tz->name);
	return LM_OK;
}

/* A linear layer [out_rows][in_cols] made of segments of source linears (see struct seg). */
static int load_linear(struct loader *L, struct weight *w, const char *what, const struct seg *s, int ns, int in_cols,
		       enum bias_mode bm, bool gate_up)
{
	int out_rows = 0;
	for (int i = 0; i < ns; i++) out_rows += s[i].nrows;
	/* one whole source tensor: no copy needed */
	bool whole = ns == 1 && s[0].row0 == 0 && s[0].nrows == s[0].src_rows;
	struct piece *pc = calloc((size_t)ns, sizeof *pc);
	void *buf[4] = { 0 };
	int rc = LM_ERR;
	struct host_weight hw = { .rows = out_rows, .cols = in_cols, .gate_up = gate_up };
	char name[256];
	/* GPTQ: each source linear converted to AutoAWQ's layout (conv), and which one each segment reads (cv_of) */
	struct { const char *base; int32_t *qw, *qz; } *conv = calloc((size_t)ns, sizeof *conv);
	int *cv_of = calloc((size_t)ns, sizeof *cv_of), nconv = 0;
	if (!pc || !conv || !cv_of) {
		free(pc);
		free(conv);
		free(cv_of);
		return lm_err(_("out of memory"));
	}

	if (L->quant == QUANT_NONE) {
		enum dtype dt = DT_COUNT;
		for (int i = 0; i < ns; i++) {
			snprintf(name, sizeof name, "%s.weight", s[i].base);
			const struct st_tensor *t = need(L, name, 2, s[i].src_rows, in_cols, DTC_DENSE);
			if (!t) goto out;
			if (dt != DT_COUNT && t->dt != dt) {
				lm_err(_("%s: tensor '%s' is %s but the other parts of %s are %s"), t->file, t->name,
				       dtype_name(t->dt), what, dtype_name(dt));
				goto out;
			}
			dt = t->dt;
			pc[i] = (struct piece){ t->data, 0, (size_t)s[i].row0 * in_cols, (size_t)s[i].nrows * in_cols };
		}
		hw.dt = dt;
		if (whole && aligned(pc[0].src, dtype_size(dt))) {
			hw.data = pc[0].src;
		} else {
			size_t es = dtype_size(dt);
			if (!(buf[0] = malloc((size_t)out_rows * in_cols * es))) {
				lm_err(_("%s: out of memory assembling %s"), L->dir, what);
				goto out;
			}
			gather(buf[0], 0, 1, es, pc, ns);
			hw.data = buf[0];
		}
	} else {
		/* AutoAWQ gemm: qweight [in][out/8] I32, qzeros [in/g][out/8] I32, scales [in/g][out] F16; the output
		 * dimension is inner, so a row segment is a column range (of out/8 words for the packed ones). GPTQ's
		 * qweight and qzeros are converted to it first, once per source linear (InternLM2's wqkv is one source of
		 * many segments); its scales are AutoAWQ's already. GPTQ's group -1 is one group of all the inputs. */
		int g = L->m->cfg.group_size > 0 ? L->m->cfg.group_size : in_cols;
		const char *fmt_name = L->quant == QUANT_GPTQ ? "GPTQ" : "AWQ";
		if (in_cols % g) {
			lm_err(_("%s: %s: input features %d are not a multiple of the %s group size %d"), L->dir, what,
			       in_cols, fmt_name, g);
			goto out;
		}
		static const char *const sfx[3] = { "qweight", "qzeros", "scales" };
		const int nrep[3] = { in_cols, in_cols / g, in_cols / g };
		for (int i = 0; i < ns; i++) {
			if (s[i].row0 % 8 || s[i].nrows % 8 || s[i].src_rows % 8) {
				lm_err(_("%s: %s: %s needs output features in multiples of 8 (%s has %d)"), L->dir, what,
				       fmt_name, s[i].base, s[i].src_rows);
				goto out;
			}
			snprintf(name, sizeof name, "%s.qweight", s[i].base);
			if (!st_set_find(L->set, name)) {
				char dense[256];
				snprintf(dense, sizeof dense, "%s.weight", s[i].base);
				if (st_set_find(L->set, dense)) {
					char fa[512], fb[512];
					lm_err(_("%s: tensor '%s' is missing: '%s' is there, dense, but config.json declares %s weights"),
					       L->where, st_set_full(L->set, name, fa, sizeof fa),
					       st_set_full(L->set, dense, fb, sizeof fb), fmt_name);
					goto out;
				}
			}
			if (L->quant == QUANT_GPTQ) {
				int j = 0;
				while (j < nconv && strcmp(conv[j].base, s[i].base)) j++;
				if (j == nconv) {
					conv[nconv].base = s[i].base;
					if (gptq_linear(L, s[i].base, s[i].src_rows, in_cols, g, &conv[nconv].qw, &conv[nconv].qz) != LM_OK) {
						nconv++;
						goto out;
					}
					nconv++;
				}
				cv_of[i] = j;
			}
		}
		for (int k = 0; k < 3; k++) {
			int div = k < 2 ? 8 : 1; /* 8 nibbles per int32 */
			for (int i = 0; i < ns; i++) {
				const void *src;
				if (L->quant == QUANT_GPTQ && k < 2) {
					src = k == 0 ? (const void *)conv[cv_of[i]].qw : (const void *)conv[cv_of[i]].qz;
				} else {
					snprintf(name, sizeof name, "%s.%s", s[i].base, sfx[k]);
					const struct st_tensor *t = need(L, name, 2, nrep[k], s[i].src_rows / div, k < 2 ? DTC_I32 : DTC_F16);
					if (!t) goto out;
					src = t->data;
				}
				pc[i] = (struct piece){ src, (size_t)s[i].src_rows / div, (size_t)s[i].row0 / div,
							(size_t)s[i].nrows / div };
			}
			const void *p = pc[0].src;
			size_t unit = k < 2 ? 4 : 2;
			if (!whole || !aligned(p, unit)) {
				if (!(buf[k] = malloc((size_t)nrep[k] * out_rows / div * unit))) {
					lm_err(_("%s: out of memory assembling %s"), L->dir, what);
					goto out;
				}
				gather(buf[k], (size_t)out_rows / div, nrep[k], unit, pc, ns);
				p = buf[k];
			}
			if (k == 0) hw.qweight = p;
			else if (k == 1) hw.qzeros = p;
			else hw.scales = p;
		}
		hw.dt = DT_Q4;
		hw.group = g;
	}

	if (bm != BIAS_NONE) {
		int have = 0;
		enum dtype bdt = DT_COUNT;
		for (int i = 0; i < ns; i++) {
			snprintf(name, sizeof name, "%s.bias", s[i].base);
			const struct st_tensor *t = st_set_find(L->set, name);
			if (!t && bm == BIAS_IF_PRESENT) continue;
			if (!(t = need(L, name, 1, s[i].src_rows, 0, DTC_DENSE))) goto out;
			if (bdt != DT_COUNT && t->dt != bdt) {
				lm_err(_("%s: tensor '%s' is %s but the other biases of %s are %s"), t->file, t->name,
				       dtype_name(t->dt), what, dtype_name(bdt));
				goto out;
			}
			bdt = t->dt;
			pc[i] = (struct piece){ t->data, 0, (size_t)s[i].row0, (size_t)s[i].nrows };
			have++;
		}
		if (have && have != ns) {
			lm_err(_("%s: %s: some parts have a bias and others do not"), L->dir, what);
			goto out;
		}
		if (have) {
			hw.bias_dt = bdt;
			if (whole && aligned(pc[0].src, dtype_size(bdt))) {
				hw.bias = pc[0].src;
			} else {
				if (!(buf[3] = malloc((size_t)out_rows * dtype_size(bdt)))) {
					lm_err(_("%s: out of memory assembling %s"), L->dir, what);
					goto out;
				}
				gather(buf[3], 0, 1, dtype_size(bdt), pc, ns);
				hw.bias = buf[3];
			}
		}
	}
	rc = hand_over(L, w, &hw, what);
out:
	for (int k = 0; k < 4; k++) free(buf[k]);
	for (int j = 0; j < nconv; j++) {
		free(conv[j].qw);
		free(conv[j].qz);
	}
	free(conv);
	free(cv_of);
	free(pc);
	return rc;
}

static void seg_set(struct seg *s, const char *prefix, const char *base, int src_rows, int row0, int nrows)
{
	snprintf(s->base, sizeof s->base, "%s%s", prefix, base);
	s->src_rows = src_rows;
	s->row0 = row0;
	s->nrows = nrows;
}

static int load_layer(struct loader *L, int l, const struct names *nm)
{
	const struct model_config *c = &L->m->cfg;
	struct layer_weights *lw = &L->m->layers[l];
	char pre[64], base[160], what[96];
	snprintf(pre, sizeof pre, "model.layers.%d.", l);
	int hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads;
	int qkv_rows = (nh + 2 * nkv) * hd;
	enum bias_mode qkv_bm = c->qkv_bias ? BIAS_REQUIRED : BIAS_NONE;
	/* Llama with attention_bias and InternLM2 with bias have an output-projection bias too; Qwen2 has not */
	enum bias_mode o_bm = c->qkv_bias && c->arch != ARCH_QWEN2 ? BIAS_IF_PRESENT : BIAS_NONE;

	snprintf(base, sizeof base, "%s%s", pre, nm->attn_norm);
	if (load_plain(L, &lw->attn_norm, base, 1, c->dim) != LM_OK) return LM_ERR;

	/* wqkv: all q heads, then all k heads, then all v heads */
	struct seg *s = calloc((size_t)(nh + 2 * nkv), sizeof *s);
	if (!s) return lm_err(_("out of memory"));
	int ns;
	if (nm->qkv) {
		seg_set(&s[0], pre, nm->qkv, qkv_rows, 0, qkv_rows);
		ns = 1;
	} else if (!nm->wqkv) {
		seg_set(&s[0], pre, nm->q, nh * hd, 0, nh * hd);
		seg_set(&s[1], pre, nm->k, nkv * hd, 0, nkv * hd);
		seg_set(&s[2], pre, nm->v, nkv * hd, 0, nkv * hd);
		ns = 3;
	} else {
		/* InternLM2 packs per kv head j: its g = nh/nkv q heads, then k_j, then v_j */
		int g = nh / nkv;
		ns = 0;
		for (int h = 0; h < nh; h++)
			seg_set(&s[ns++], pre, nm->wqkv, qkv_rows, ((h / g) * (g + 2) + h % g) * hd, hd);
		for (int j = 0; j < nkv; j++) seg_set(&s[ns++], pre, nm->wqkv, qkv_rows, (j * (g + 2) + g) * hd, hd);
		for (int j = 0; j < nkv; j++) seg_set(&s[ns++], pre, nm->wqkv, qkv_rows, (j * (g + 2) + g + 1) * hd, hd);
	}
	snprintf(what, sizeof what, "layer %d wqkv", l);
	int rc = load_linear(L, &lw->wqkv, what, s, ns, c->dim, qkv_bm, false);
	if (rc != LM_OK) goto out;
	if (c->qk_norm) { /* [head_dim] each, dense in every format (AWQ and GPTQ leave norms alone) */
		snprintf(base, sizeof base, "%s%s", pre, nm->q_norm);
		if ((rc = load_plain(L, &lw->q_norm, base, 1, hd)) != LM_OK) goto out;
		snprintf(base, sizeof base, "%s%s", pre, nm->k_norm);
		if ((rc = load_plain(L, &lw->k_norm, base, 1, hd)) != LM_OK) goto out;
	}

	seg_set(&s[0], pre, nm->o, c->dim, 0, c->dim);
	snprintf(what, sizeof what, "layer %d wo", l);
	if ((rc = load_linear(L, &lw->wo, what, s, 1, nh * hd, o_bm, false)) != LM_OK) goto out;

	snprintf(base, sizeof base, "%s%s", pre, nm->ffn_norm);
	if ((rc = load_plain(L, &lw->ffn_norm, base, 1, c->dim)) != LM_OK) goto out;

	/* w13: gate (w1) rows, then up (w3) rows */
	if (nm->gate_up) {
		seg_set(&s[0], pre, nm->gate_up, 2 * c->ffn, 0, 2 * c->ffn);
	} else {
		seg_set(&s[0], pre, nm->gate, c->ffn, 0, c->ffn);
		seg_set(&s[1], pre, nm->up, c->ffn, 0, c->ffn);
	}
	snprintf(what, sizeof what, "layer %d w13", l);
	if ((rc = load_linear(L, &lw->w13, what, s, nm->gate_up ? 1 : 2, c->dim, BIAS_NONE, true)) != LM_OK) goto out;

	seg_set(&s[0], pre, nm->down, c->dim, 0, c->dim);
	snprintf(what, sizeof what, "layer %d w2", l);
	rc = load_linear(L, &lw->w2, what, s, 1, c->ffn, BIAS_NONE, false);
out:
	free(s);
	return rc;
}

int model_open_tensors(const struct model_config *c, const char *dir, struct st_set **set)
{
	if (st_set_open(set, dir) != LM_OK) return LM_ERR;
	const char *local = "", *prefix = c->tensor_prefix;
	if (!strncmp(c->wrapper, "Llava", 5)) {
		/* LlavaForConditionalGeneration and LlavaNext...: transformers 4.52 moved the language model's
		 * decoder from language_model.model.* to model.language_model.* and its head from
		 * language_model.lm_head to lm_head; checkpoints of both ages are about */
		static const char old[] = "language_model.model.embed_tokens.weight",
				  new[] = "model.language_model.embed_tokens.weight";
		if (!st_set_find(*set, old) && st_set_find(*set, new)) {
			local = "model.";
			prefix = "model.language_model.";
		} else if (!st_set_find(*set, old)) {
			st_set_close(*set);
			*set = NULL;
			return lm_err(_("%s: neither '%s' (LLaVA as transformers before 4.52 saves it) nor '%s' (4.52 and later) is there"),
				      dir, old, new);
		}
	}
	if ((local[0] || prefix[0]) && st_set_prefix(*set, local, prefix) != LM_OK) {
		st_set_close(*set);
		*set = NULL;
		return LM_ERR;
	}
	return LM_OK;
}

int model_load(struct model *m, const char *dir, struct backend *be, enum model_format fmt,
	       bool (*progress)(void *ud, int done, int total), void *ud)
{
	memset(m, 0, sizeof *m);
	snprintf(m->dir, sizeof m->dir, "%s", dir);
	m->be = be;
	char path[4096];
	path_join(path, sizeof path, dir, "config.json");
	if (config_load(&m->cfg, path) != LM_OK) return LM_ERR;
	const struct model_config *c = &m->cfg;
	/* --model-format must agree with what config.json (or quantize_config.json) says, as in LMDeploy */
	static const char *const qname[] = { [QUANT_NONE] = "hf", [QUANT_AWQ] = "awq", [QUANT_GPTQ] = "gptq" };
	if (fmt == FMT_AWQ && c->quant == QUANT_NONE)
		return lm_err(_("%s: --model-format awq, but config.json has no AWQ quantization_config (is this an fp16/bf16 model? use --model-format hf)"),
			      dir);
	if (fmt == FMT_GPTQ && c->quant == QUANT_NONE)
		return lm_err(_("%s: --model-format gptq, but config.json has no GPTQ quantization_config (and there is no quantize_config.json; is this an fp16/bf16 model? use --model-format hf)"),
			      dir);
	if (fmt == FMT_HF && c->quant != QUANT_NONE)
		return lm_err(_("%s: --model-format hf, but the quantization config says the weights are %d-bit %s (use --model-format %s)"),
			      dir, c->quant_bits, c->quant == QUANT_GPTQ ? "GPTQ" : "AWQ", qname[c->quant]);
	if ((fmt == FMT_AWQ && c->quant == QUANT_GPTQ) || (fmt == FMT_GPTQ && c->quant == QUANT_AWQ))
		return lm_err(_("%s: --model-format %s, but the quantization config says %s (use --model-format %s)"), dir,
			      qname[fmt == FMT_AWQ ? QUANT_AWQ : QUANT_GPTQ], qname[c->quant], qname[c->quant]);
	if (c->arch == ARCH_INTERNLM2 && c->quant_bits && c->head_dim % 8)
		return lm_err(_("%s: %s InternLM2 needs head_dim a multiple of 8 (config.json: head_dim %d)"), dir,
			      c->quant == QUANT_GPTQ ? "GPTQ" : "AWQ", c->head_dim);

	struct loader L = { .m = m, .dir = dir, .quant = c->quant };
	path_join(L.where, sizeof L.where, dir, "model.safetensors.index.json");
	if (!file_exists(L.where)) path_join(L.where, sizeof L.where, dir, "model.safetensors");
	if (model_open_tensors(c, dir, &L.set) != LM_OK) return LM_ERR;
	const struct names *nm = &llama_names;
	if (c->arch == ARCH_INTERNLM2) nm = &internlm2_names;
	else if (c->arch == ARCH_PHI3) nm = &phi3_names;
	int rc = LM_ERR;
	if (!(m->layers = calloc((size_t)c->n_layers, sizeof *m->layers))) {
		lm_err(_("out of memory"));
		goto fail;
	}
	if (load_plain(&L, &m->tok_embed, nm->embed, c->vocab, c->dim) != LM_OK) goto fail;
	for (int l = 0; l < c->n_layers; l++) {
		if (load_layer(&L, l, nm) != LM_OK) goto fail;
		if (progress && !progress(ud, l + 1, c->n_layers)) {
			lm_err("%s", _("interrupted"));
			goto fail;
		}
	}
	if (load_plain(&L, &m->final_norm, nm->norm, 1, c->dim) != LM_OK) goto fail;
	/* tied: the flag, or a checkpoint without an lm_head (transformers then ties too) */
	snprintf(path, sizeof path, "%s.weight", nm->lm_head);
	if (c->tie_embed || !st_set_find(L.set, path)) {
		m->cfg.tie_embed = true;
		m->lm_head = m->tok_embed;
		m->lm_head.shared = true;
	} else if (load_plain(&L, &m->lm_head, nm->lm_head, c->vocab, c->dim) != LM_OK) {
		goto fail;
	}
	rc = LM_OK;
fail:
	st_set_close(L.set);
	if (rc != LM_OK) model_free(m);
	return rc;
}

/* ---- dummy weights (bench --dummy) ---- */

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static float rng_uniform(uint64_t *s) { return (float)((rng_next(s) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

static void fill_dense(void *p, enum dtype dt, size_t n, float scale, float offset, uint64_t *rng)
{
	for (size_t i = 0; i < n; i++) {
		float v = offset + scale * rng_uniform(rng);
		if (dt == DT_F32) ((float *)p)[i] = v;
		else if (dt == DT_F16) ((uint16_t *)p)[i] = f32_to_f16(v);
		else ((uint16_t *)p)[i] = f32_to_bf16(v);
	}
}

/* One random weight: by the backend where it can, else made here and loaded. Norm weights (rows == 1)
 * stay near 1 so activations keep a sane scale. */
static int dummy_weight(struct model *m, struct weight *w, bool quant, int rows, int cols, bool bias, uint64_t seed,
			bool gate_up)
{
	struct backend *be = m->be;
	const struct model_config *c = &m->cfg;
	enum dtype dt = quant ? DT_Q4 : c->dtype;
	float scale = rows == 1 ? 0.1f : 0.02f;
	memset(w, 0, sizeof *w);
	if (be->i->weight_random) {
		w->group = quant ? c->group_size : 0; /* read by the backend for DT_Q4 */
		w->gate_up = gate_up;
		if (be->i->weight_random(be, w, dt, rows, cols, scale, seed) != LM_OK) return LM_ERR;
		m->weight_bytes += w->bytes;
		return LM_OK;
	}
	uint64_t rng = seed;
	struct host_weight hw = { .dt = dt, .rows = rows, .cols = cols, .gate_up = gate_up };
	void *buf[4] = { 0 };
	int rc = LM_ERR;
	if (!quant) {
		if (!(buf[0] = malloc((size_t)rows * cols * dtype_size(dt)))) goto oom;
		fill_dense(buf[0], dt, (size_t)rows * cols, scale, rows == 1 ? 1.0f : 0.0f, &rng);
		hw.data = buf[0];
	} else {
		int g = c->group_size;
		size_t nq = (size_t)cols * rows / 8, nz = (size_t)cols / g * rows / 8, ns = (size_t)cols / g * rows;
		if (!(buf[0] = malloc(nq * 4)) || !(buf[1] = malloc(nz * 4)) || !(buf[2] = malloc(ns * 2))) goto oom;
		for (size_t i = 0; i < nq; i++) ((uint32_t *)buf[0])[i] = (uint32_t)rng_next(&rng);
		for (size_t i = 0; i < nz; i++) ((uint32_t *)buf[1])[i] = 0x88888888u; /* zero point 8: centred */
		for (size_t i = 0; i < ns; i++) ((uint16_t *)buf[2])[i] = f32_to_f16(scale / 8);
		hw.qweight = buf[0];
		hw.qzeros = buf[1];
		hw.scales = buf[2];
		hw.group = g;
	}
	if (bias) {
		if (!(buf[3] = malloc((size_t)rows * dtype_size(c->dtype)))) goto oom;
		fill_dense(buf[3], c->dtype, rows, scale, 0, &rng);
		hw.bias = buf[3];
		hw.bias_dt = c->dtype;
	}
	if (be->i->weight_load(be, w, &hw) == LM_OK) {
		m->weight_bytes += w->bytes;
		rc = LM_OK;
	}
	goto out;
oom:
	lm_err(_("out of memory making dummy weights"));
out:
	for (int k = 0; k < 4; k++) free(buf[k]);
	return rc;
}

int model_init_dummy(struct model *m, const struct model_config *c, struct backend *be, uint64_t seed)
{
	memset(m, 0, sizeof *m);
	m->cfg = *c;
	m->be = be;
	snprintf(m->dir, sizeof m->dir, "(dummy %s)", c->arch_name);
	if (c->n_layers <= 0 || c->dim <= 0 || c->vocab <= 0 || c->ffn <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
	    c->head_dim <= 0 || c->n_heads % c->n_kv_heads)
		return lm_err(_("dummy model: the configuration has an empty or inconsistent shape"));
	if (c->dtype != DT_F32 && c->dtype != DT_F16 && c->dtype != DT_BF16) m->cfg.dtype = DT_F16;
	if (c->quant_bits && (c->group_size <= 0 || c->dim % c->group_size || c->ffn % c->group_size ||
			      (c->n_heads * c->head_dim) % c->group_size))
		return lm_err(_("dummy model: AWQ group size %d does not divide the layer widths"), c->group_size);
	if (!(m->layers = calloc((size_t)c->n_layers, sizeof *m->layers))) return lm_err(_("out of memory"));
	bool q = c->quant_bits != 0;
	int hd = c->head_dim, qkv = (c->n_heads + 2 * c->n_kv_heads) * hd;
	uint64_t s = seed * 1000003u;
	int rc = dummy_weight(m, &m->tok_embed, false, c->vocab, c->dim, false, s++, false);
	for (int l = 0; rc == LM_OK && l < c->n_layers; l++) {
		struct layer_weights *lw = &m->layers[l];
		if ((rc = dummy_weight(m, &lw->attn_norm, false, 1, c->dim, false, s++, false)) != LM_OK ||
		    (rc = dummy_weight(m, &lw->wqkv, q, qkv, c->dim, c->qkv_bias, s++, false)) != LM_OK ||
		    (c->qk_norm && (rc = dummy_weight(m, &lw->q_norm, false, 1, hd, false, s++, false)) != LM_OK) ||
		    (c->qk_norm && (rc = dummy_weight(m, &lw->k_norm, false, 1, hd, false, s++, false)) != LM_OK) ||
		    (rc = dummy_weight(m, &lw->wo, q, c->dim, c->n_heads * hd, false, s++, false)) != LM_OK ||
		    (rc = dummy_weight(m, &lw->ffn_norm, false, 1, c->dim, false, s++, false)) != LM_OK ||
		    (rc = dummy_weight(m, &lw->w13, q, 2 * c->ffn, c->dim, false, s++, true)) != LM_OK)
			break;
		rc = dummy_weight(m, &lw->w2, q, c->dim, c->ffn, false, s++, false);
	}
	if (rc == LM_OK) rc = dummy_weight(m, &m->final_norm, false, 1, c->dim, false, s++, false);
	if (rc == LM_OK) {
		if (c->tie_embed) {
			m->lm_head = m->tok_embed;
			m->lm_head.shared = true;
		} else {
			rc = dummy_weight(m, &m->lm_head, false, c->vocab, c->dim, false, s++, false);
		}
	}
	if (rc != LM_OK) {
		lm_err_prefix("%s", _("dummy model: "));
		model_free(m);
	}
	return rc;
}

static void weight_release(struct backend *be, struct weight *w)
{
	bool held = w->data || w->qweight || w->qzeros || w->scales || w->bias || w->bytes;
	if (be && held && !w->shared) be->i->weight_free(be, w);
	memset(w, 0, sizeof *w);
}

void model_free(struct model *m)
{
	if (!m) return;
	struct backend *be = m->be;
	if (m->layers)
		for (int l = 0; l < m->cfg.n_layers; l++) {
			struct layer_weights *lw = &m->layers[l];
			weight_release(be, &lw->attn_norm);
			weight_release(be, &lw->wqkv);
			weight_release(be, &lw->q_norm);
			weight_release(be, &lw->k_norm);
			weight_release(be, &lw->wo);
			weight_release(be, &lw->ffn_norm);
			weight_release(be, &lw->w13);
			weight_release(be, &lw->w2);
		}
	free(m->layers);
	m->layers = NULL;
	weight_release(be, &m->lm_head);
	weight_release(be, &m->final_norm);
	weight_release(be, &m->tok_embed);
	m->weight_bytes = 0;
}
