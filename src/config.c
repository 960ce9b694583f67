/* config.c: config.json (and generation_config.json beside it) into struct model_config, and the RoPE
 * inverse frequencies that transformers computes from it.
 *
 * Two generations of keys exist in the wild and both are read: transformers 4 writes rope_theta,
 * rope_scaling {type|rope_type, factor, ...} and torch_dtype; transformers 5 writes rope_parameters
 * {rope_type, rope_theta, factor, ...} and dtype. InternLM2's remote code keeps the classic form and calls
 * the q/k/v/o bias "bias". */
#include "config.h"
#include "model.h"
#include "i18n.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What transformers' config class of a model_type gives the keys that a LLaVA text_config leaves out.
 * save_pretrained writes a sub-config as its difference from the defaults, so llava-1.5-7b-hf's text_config
 * has no hidden_size at all; LlamaConfig, MistralConfig and Qwen2Config fill in these (rms_norm_eps 1e-6,
 * rope_theta 10000, tie_word_embeddings false and no biases beyond Qwen2's are lmterm's defaults anyway). */
struct text_defaults {
	const char *type;
	int vocab, dim, ffn, layers, heads;
	int kv_heads;      /* 0: as many as heads */
	int max_pos;
	int bos, eos;      /* -1: none */
	int sliding;       /* sliding_window (MistralConfig: 4096); 0: none */
};

static const struct text_defaults text_defaults[] = {
	{ "llama", 32000, 4096, 11008, 32, 32, 0, 2048, 1, 2, 0 },
	{ "mistral", 32000, 4096, 14336, 32, 32, 8, 4096 * 32, 1, 2, 4096 },
	{ "qwen2", 151936, 4096, 22016, 32, 32, 32, 32768, -1, -1, 0 },
};

struct cfg_ctx {
	const char *path;
	const cJSON *root;
	const char *scope; /* "" or "rope_parameters." etc.: how messages name a nested key */
	/* a LLaVA text_config: its model_type's class defaults for the keys it lacks, and the architecture comes
	 * from model_type (as transformers builds it); NULL: a config read as it is, whose size keys are required */
	const struct text_defaults *dflt;
};

/* An integer key: absent -> def (or an error when required, def < 0 meaning required). */
static int get_int(const struct cfg_ctx *x, const cJSON *obj, const char *key, long long def, long long lo,
		   long long hi, int *out)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!j || cJSON_IsNull(j)) {
		if (def == LLONG_MIN) return lm_err(_("%s: key \"%s%s\" is missing"), x->path, x->scope, key);
		*out = (int)def;
		return LM_OK;
	}
	if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble))
		return lm_err(_("%s: key \"%s%s\" is not an integer"), x->path, x->scope, key);
	if (j->valuedouble < (double)lo || j->valuedouble > (double)hi)
		return lm_err(_("%s: key \"%s%s\" = %.0f is out of range [%lld, %lld]"), x->path, x->scope, key, j->valuedouble, lo,
			      hi);
	*out = (int)j->valuedouble;
	return LM_OK;
}

static int get_float(const struct cfg_ctx *x, const cJSON *obj, const char *key, double def, bool *present,
		     float *out)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (present) *present = j && !cJSON_IsNull(j);
	if (!j || cJSON_IsNull(j)) {
		if (isnan(def)) return lm_err(_("%s: key \"%s%s\" is missing"), x->path, x->scope, key);
		*out = (float)def;
		return LM_OK;
	}
	if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble))
		return lm_err(_("%s: key \"%s%s\" is not a number"), x->path, x->scope, key);
	if (fabs(j->valuedouble) > FLT_MAX) /* it would be an infinity as a float (rms_norm_eps 1e300) */
		return lm_err(_("%s: key \"%s%s\" = %g is out of range"), x->path, x->scope, key, j->valuedouble);
	*out = (float)j->valuedouble;
	return LM_OK;
}

static int get_bool(const struct cfg_ctx *x, const cJSON *obj, const char *key, bool def, bool *out)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!j || cJSON_IsNull(j)) {
		*out = def;
		return LM_OK;
	}
	if (!cJSON_IsBool(j)) return lm_err(_("%s: key \"%s%s\" is not true or false"), x->path, x->scope, key);
	*out = cJSON_IsTrue(j);
	return LM_OK;
}

#define REQUIRED LLONG_MIN

static bool has_key(const cJSON *o, const char *key)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
	return j && !cJSON_IsNull(j);
}

/* eos_token_id: an integer, a list of them, or null. Adds ids not already present. */
static int add_eos(struct model_config *c, const char *path, const cJSON *j)
{
	if (!j || cJSON_IsNull(j)) return LM_OK;
	const cJSON *one = j, *next = NULL;
	if (cJSON_IsArray(j)) {
		one = j->child;
		if (!one) return LM_OK;
	}
	for (; one; one = next) {
		next = cJSON_IsArray(j) ? one->next : NULL;
		if (!cJSON_IsNumber(one) || one->valuedouble != floor(one->valuedouble) || one->valuedouble < 0 ||
		    one->valuedouble > INT32_MAX)
			return lm_err(_("%s: key \"eos_token_id\" is not a token id or a list of them"), path);
		int id = (int)one->valuedouble;
		bool have = false;
		for (int i = 0; i < c->n_eos; i++) have |= c->eos_ids[i] == id;
		if (!have && c->n_eos < MAX_EOS) c->eos_ids[c->n_eos++] = id;
	}
	return LM_OK;
}

static int parse_dtype(const struct cfg_ctx *x, struct model_config *c)
{
	const char *key = "dtype";
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(x->root, key);
	if (!j || cJSON_IsNull(j)) {
		key = "torch_dtype";
		j = cJSON_GetObjectItemCaseSensitive(x->root, key);
	}
	c->dtype = DT_F32; /* transformers' default when the config says nothing */
	if (!j || cJSON_IsNull(j)) return LM_OK;
	if (!cJSON_IsString(j)) return lm_err(_("%s: key \"%s\" is not a string"), x->path, key);
	const char *s = j->valuestring;
	if (strncmp(s, "torch.", 6) == 0) s += 6;
	if (!strcmp(s, "float16") || !strcmp(s, "half")) c->dtype = DT_F16;
	else if (!strcmp(s, "bfloat16")) c->dtype = DT_BF16;
	else if (!strcmp(s, "float32") || !strcmp(s, "float")) c->dtype = DT_F32;
	else return lm_err(_("%s: key \"%s\": unsupported dtype \"%s\" (expected float16, bfloat16 or float32)"), x->path,
			   key, j->valuestring);
	return LM_OK;
}

/* A list of n positive numbers: a longrope factor list (one per rotated pair of a head). */
static int get_factors(const struct cfg_ctx *x, const cJSON *obj, const char *key, int n, float *out)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!a || cJSON_IsNull(a)) return lm_err(_("%s: key \"%s%s\" is missing"), x->path, x->scope, key);
	if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
		return lm_err(_("%s: key \"%s%s\" must be a list of %d numbers (head_dim / 2)"), x->path, x->scope, key, n);
	int i = 0;
	for (const cJSON *e = a->child; e; e = e->next, i++) {
		if (!cJSON_IsNumber(e) || !(e->valuedouble > 0) || e->valuedouble > FLT_MAX)
			return lm_err(_("%s: key \"%s%s\": entry %d is not a positive number"), x->path, x->scope, key, i);
		out[i] = (float)e->valuedouble;
	}
	return LM_OK;
}

/* LongRoPE (transformers' _compute_longrope_parameters): per-frequency divisors, short_factor up to
 * original_max_position_embeddings tokens and long_factor beyond, and cos/sin scaled by attention_factor, by
 * default sqrt(1 + ln(factor) / ln(original)) with factor = max_position_embeddings / original (Phi-3 keeps
 * original_max_position_embeddings at the top level; newer configs may keep it in the RoPE object, and without
 * it the original is max_position_embeddings and the factor the object's own). */
static int parse_longrope(const struct cfg_ctx *x, struct model_config *c, const cJSON *rp, const char *obj_key)
{
	struct rope_cfg *r = &c->rope;
	char scope[32];
	snprintf(scope, sizeof scope, "%s.", obj_key);
	struct cfg_ctx sx = { x->path, x->root, scope, x->dflt };
	r->type = ROPE_LONGROPE;
	int half = c->head_dim / 2;
	if (half > MAX_ROPE_HALF)
		return lm_err(_("%s: longrope with head_dim %d: at most %d is supported"), x->path, c->head_dim,
			      2 * MAX_ROPE_HALF);
	if (get_factors(&sx, rp, "short_factor", half, r->short_factor) != LM_OK ||
	    get_factors(&sx, rp, "long_factor", half, r->long_factor) != LM_OK)
		return LM_ERR;
	const bool in_obj = has_key(rp, "original_max_position_embeddings");
	if (in_obj || has_key(x->root, "original_max_position_embeddings")) {
		if (get_int(in_obj ? &sx : x, in_obj ? rp : x->root, "original_max_position_embeddings", REQUIRED, 1,
			    INT32_MAX, &r->orig_max_pos) != LM_OK)
			return LM_ERR;
		r->factor = (float)((double)c->max_pos / r->orig_max_pos);
	} else {
		r->orig_max_pos = c->max_pos;
		if (get_float(&sx, rp, "factor", 1.0, NULL, &r->factor) != LM_OK) return LM_ERR;
	}
	bool have_af = false;
	if (get_float(&sx, rp, "attention_factor", 1.0, &have_af, &r->attn_factor) != LM_OK) return LM_ERR;
	if (have_af && !(r->attn_factor > 0))
		return lm_err(_("%s: key \"%sattention_factor\" = %g must be positive"), x->path, scope, r->attn_factor);
	if (!have_af)
		r->attn_factor = r->factor <= 1.0f || r->orig_max_pos <= 1
					 ? 1.0f
					 : (float)sqrt(1.0 + log((double)r->factor) / log((double)r->orig_max_pos));
	return LM_OK;
}

/* rope_parameters (new) or rope_theta + rope_scaling (old). */
static int parse_rope(const struct cfg_ctx *x, struct model_config *c)
{
	struct rope_cfg *r = &c->rope;
	memset(r, 0, sizeof *r);
	r->type = ROPE_DEFAULT;
	r->factor = 1;
	const cJSON *rp = cJSON_GetObjectItemCaseSensitive(x->root, "rope_parameters");
	const char *obj_key = "rope_parameters";
	if (rp && !cJSON_IsNull(rp) && !cJSON_IsObject(rp))
		return lm_err(_("%s: key \"rope_parameters\" is not an object"), x->path);
	if (!rp || cJSON_IsNull(rp)) {
		rp = cJSON_GetObjectItemCaseSensitive(x->root, "rope_scaling");
		obj_key = "rope_scaling";
		if (rp && !cJSON_IsNull(rp) && !cJSON_IsObject(rp))
			return lm_err(_("%s: key \"rope_scaling\" is not an object"), x->path);
		if (rp && cJSON_IsNull(rp)) rp = NULL;
	}
	/* theta: inside rope_parameters in the new style, top level in the old */
	char scope[32];
	snprintf(scope, sizeof scope, "%s.", obj_key);
	struct cfg_ctx sx = { x->path, x->root, scope, x->dflt };
	bool have_theta = false;
	if (rp && get_float(&sx, rp, "rope_theta", 10000.0, &have_theta, &r->theta) != LM_OK) return LM_ERR;
	if (!have_theta && get_float(x, x->root, "rope_theta", 10000.0, NULL, &r->theta) != LM_OK) return LM_ERR;
	if (!(r->theta > 0)) return lm_err(_("%s: key \"rope_theta\" must be positive"), x->path);
	if (!rp) return LM_OK;
	float prf;
	if (get_float(&sx, rp, "partial_rotary_factor", 1.0, NULL, &prf) != LM_OK) return LM_ERR;
	if (prf != 1.0f)
		return lm_err(_("%s: key \"%spartial_rotary_factor\" = %g: only full rotary embeddings are supported"),
			      x->path, scope, prf);

	const cJSON *t = cJSON_GetObjectItemCaseSensitive(rp, "rope_type");
	if (!t || cJSON_IsNull(t)) t = cJSON_GetObjectItemCaseSensitive(rp, "type");
	if (t && !cJSON_IsNull(t) && !cJSON_IsString(t))
		return lm_err(_("%s: key \"%s.rope_type\" is not a string"), x->path, obj_key);
	const char *type = t && cJSON_IsString(t) ? t->valuestring : "default";
	/* Qwen2-VL's multimodal RoPE ("mrope", with an mrope_section): transformers turns it into "default", and
	 * for text, whose temporal, height and width positions are the same, it is exactly the default RoPE */
	if (!strcmp(type, "default") || !strcmp(type, "mrope")) {
		r->type = ROPE_DEFAULT;
		return LM_OK;
	}
	/* "su" is what the first Phi-3 128k configs called longrope (transformers renames it) */
	if (!strcmp(type, "longrope") || !strcmp(type, "su")) return parse_longrope(x, c, rp, obj_key);
	if (!strcmp(type, "linear")) r->type = ROPE_LINEAR;
	else if (!strcmp(type, "llama3")) r->type = ROPE_LLAMA3;
	else if (!strcmp(type, "dynamic")) r->type = ROPE_DYNAMIC;
	else return lm_err(_("%s: key \"%s.rope_type\": unsupported RoPE type \"%s\" (supported: default, linear, llama3, dynamic, longrope)"),
			   x->path, obj_key, type);
	char k[64];
	snprintf(k, sizeof k, "%s.factor", obj_key);
	if (get_float(&sx, rp, "factor", NAN, NULL, &r->factor) != LM_OK) return LM_ERR;
	if (!(r->factor >= 1.0f) && r->type != ROPE_LINEAR)
		return lm_err(_("%s: key \"%s\" = %g must be at least 1"), x->path, k, r->factor);
	if (!(r->factor > 0)) return lm_err(_("%s: key \"%s\" = %g must be positive"), x->path, k, r->factor);
	if (r->type == ROPE_LLAMA3) {
		if (get_float(&sx, rp, "low_freq_factor", NAN, NULL, &r->low_freq_factor) != LM_OK ||
		    get_float(&sx, rp, "high_freq_factor", NAN, NULL, &r->high_freq_factor) != LM_OK ||
		    get_int(&sx, rp, "original_max_position_embeddings", REQUIRED, 1, INT32_MAX, &r->orig_max_pos) != LM_OK)
			return LM_ERR;
		if (!(r->high_freq_factor > r->low_freq_factor) || !(r->low_freq_factor > 0))
			return lm_err(_("%s: keys \"%s.low_freq_factor\" and \"high_freq_factor\" must satisfy 0 < low < high"),
				      x->path, obj_key);
	} else if (r->type == ROPE_DYNAMIC) {
		r->orig_max_pos = c->max_pos; /* transformers scales against max_position_embeddings */
	}
	return LM_OK;
}

/* GPTQ, 4-bit, without act-order, as AutoGPTQ, GPTQModel and optimum write it. What is read was checked against
 * AutoGPTQ's QuantLinear (qlinear_cuda_old.py: pack() and the torch forward), GPTQModel's quantize config
 * (checkpoint_format / format, is_marlin_format, pack_dtype) and convert_gptq_v1_to_v2_format_module, and LMDeploy's
 * TurboMind converter (it asserts desc_act false and sym true, and reads qzeros + 1):
 * - bits 4; group_size > 0, or -1 for one group of all the inputs (AutoGPTQ: group_size = infeatures);
 * - desc_act true (act-order) permutes the inputs' groups through g_idx: refused, as LMDeploy refuses it;
 * - sym true or false: the zeros are read from qzeros either way (sym writes 8 everywhere), so asymmetric
 *   checkpoints run too, though LMDeploy takes only sym;
 * - checkpoint_format (GPTQModel's newer key: format) "gptq" (v1: qzeros hold z - 1) or "gptq_v2" (z);
 *   marlin, bitblas and other repacked formats are refused, as is a pack_dtype other than int32.
 * qx names the keys: "quantization_config." in config.json, "" in AutoGPTQ's quantize_config.json. */
static int parse_gptq(const struct cfg_ctx *qx, const cJSON *q, struct model_config *c)
{
	int group;
	if (get_int(qx, q, "bits", REQUIRED, 1, 64, &c->quant_bits) != LM_OK ||
	    get_int(qx, q, "group_size", REQUIRED, -1, INT32_MAX, &group) != LM_OK)
		return LM_ERR;
	if (c->quant_bits != 4)
		return lm_err(_("%s: key \"%sbits\" = %d: only 4-bit GPTQ is supported"), qx->path, qx->scope,
			      c->quant_bits);
	if (group != -1 && (group <= 0 || group % 8))
		return lm_err(_("%s: key \"%sgroup_size\" = %d: expected -1 or a positive multiple of 8"), qx->path,
			      qx->scope, group);
	c->group_size = group;
	bool desc_act, marlin;
	if (get_bool(qx, q, "desc_act", false, &desc_act) != LM_OK || get_bool(qx, q, "sym", true, &c->quant_sym) != LM_OK ||
	    get_bool(qx, q, "is_marlin_format", false, &marlin) != LM_OK)
		return LM_ERR;
	if (desc_act)
		return lm_err(_("%s: key \"%sdesc_act\" = true: GPTQ with act-order is not supported (as in LMDeploy); use a checkpoint quantized with desc_act false"),
			      qx->path, qx->scope);
	if (marlin)
		return lm_err(_("%s: key \"%sis_marlin_format\" = true: Marlin-packed GPTQ is not supported (only the gptq and gptq_v2 layouts)"),
			      qx->path, qx->scope);
	const char *fk = "checkpoint_format";
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(q, fk);
	if (!f || cJSON_IsNull(f)) f = cJSON_GetObjectItemCaseSensitive(q, fk = "format");
	c->gptq_v2 = false;
	if (f && !cJSON_IsNull(f)) {
		if (!cJSON_IsString(f) || (strcmp(f->valuestring, "gptq") && strcmp(f->valuestring, "gptq_v2")))
			return lm_err(_("%s: key \"%s%s\": \"%s\" is not supported (gptq or gptq_v2)"), qx->path, qx->scope,
				      fk, cJSON_IsString(f) ? f->valuestring : "?");
		c->gptq_v2 = !strcmp(f->valuestring, "gptq_v2");
	}
	const cJSON *pd = cJSON_GetObjectItemCaseSensitive(q, "pack_dtype");
	if (pd && !cJSON_IsNull(pd) && (!cJSON_IsString(pd) || strcmp(pd->valuestring, "int32")))
		return lm_err(_("%s: key \"%spack_dtype\": \"%s\" is not supported (int32)"), qx->path, qx->scope,
			      cJSON_IsString(pd) ? pd->valuestring : "?");
	c->quant = QUANT_GPTQ;
	return LM_OK;
}

/* quantization_config: AutoAWQ's 4-bit gemm layout, or GPTQ (parse_gptq). */
static int parse_quant(const struct cfg_ctx *x, struct model_config *c)
{
	const cJSON *q = cJSON_GetObjectItemCaseSensitive(x->root, "quantization_config");
	c->quant_bits = 0;
	c->group_size = 0;
	c->quant = QUANT_NONE;
	if (!q || cJSON_IsNull(q)) return LM_OK;
	if (!cJSON_IsObject(q)) return lm_err(_("%s: key \"quantization_config\" is not an object"), x->path);
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
	if (!cJSON_IsString(m))
		return lm_err(_("%s: key \"quantization_config.quant_method\" is missing or not a string"), x->path);
	struct cfg_ctx qx = { x->path, x->root, "quantization_config.", NULL };
	if (!strcasecmp(m->valuestring, "gptq")) return parse_gptq(&qx, q, c);
	if (strcasecmp(m->valuestring, "awq") != 0)
		return lm_err(_("%s: key \"quantization_config.quant_method\": \"%s\" is not supported (awq or gptq)"),
			      x->path, m->valuestring);
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(q, "version");
	if (v && !cJSON_IsNull(v) && (!cJSON_IsString(v) || strcasecmp(v->valuestring, "gemm") != 0))
		return lm_err(_("%s: key \"quantization_config.version\": \"%s\" is not supported (only gemm)"), x->path,
			      cJSON_IsString(v) ? v->valuestring : "?");
	/* AutoAWQ's own quant_config.json spells them w_bit and q_group_size */
	const char *bk = cJSON_GetObjectItemCaseSensitive(q, "w_bit") ? "w_bit" : "bits";
	const char *gk = cJSON_GetObjectItemCaseSensitive(q, "q_group_size") ? "q_group_size" : "group_size";
	if (get_int(&qx, q, bk, REQUIRED, 1, 64, &c->quant_bits) != LM_OK ||
	    get_int(&qx, q, gk, REQUIRED, -1, INT32_MAX, &c->group_size) != LM_OK)
		return LM_ERR;
	if (c->quant_bits != 4)
		return lm_err(_("%s: key \"quantization_config.%s\" = %d: only 4-bit AWQ is supported"), x->path, bk,
			      c->quant_bits);
	if (c->group_size <= 0 || c->group_size % 8)
		return lm_err(_("%s: key \"quantization_config.%s\" = %d: expected a positive multiple of 8"), x->path,
			      gk, c->group_size);
	bool zp;
	if (get_bool(&qx, q, "zero_point", true, &zp) != LM_OK) return LM_ERR;
	if (!zp)
		return lm_err(_("%s: key \"quantization_config.zero_point\" = false: only AWQ with zero points is supported"),
			      x->path);
	c->quant = QUANT_AWQ;
	return LM_OK;
}

/* A JSON file whose top level is an object (a file beside config.json), parsed; NULL with the message set */
static cJSON *read_json_object(const char *path)
{
	char *buf;
	size_t len;
	if (read_file(path, &buf, &len) != LM_OK) return NULL;
	cJSON *root = cJSON_ParseWithLength(buf, len);
	free(buf);
	if (!root || !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		lm_err(_("%s: not a valid JSON object"), path);
		return NULL;
	}
	return root;
}

/* AutoGPTQ's quantize_config.json beside config.json (bits, group_size, desc_act, sym; no quant_method: it is
 * GPTQ's own file). transformers and LMDeploy read only config.json's quantization_config, which checkpoints
 * written through transformers/optimum carry as well; AutoGPTQ's from_quantized reads this file, and older
 * checkpoints (AutoGPTQ before optimum) have only it. So: without a quantization_config it says the model is
 * GPTQ; beside a GPTQ quantization_config the two must agree (else which one describes the tensors?); beside
 * an AWQ one it is not read. */
static int read_quantize_config(struct model_config *c, const char *path)
{
	cJSON *root = read_json_object(path);
	if (!root) return LM_ERR;
	struct cfg_ctx x = { path, root, "", NULL };
	struct model_config g = *c;
	int rc = LM_OK;
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "quant_method");
	if (m && !cJSON_IsNull(m) && (!cJSON_IsString(m) || strcasecmp(m->valuestring, "gptq")))
		rc = lm_err(_("%s: key \"quant_method\": \"%s\" is not supported (gptq)"), path,
			    cJSON_IsString(m) ? m->valuestring : "?");
	if (rc == LM_OK) rc = parse_gptq(&x, root, &g);
	cJSON_Delete(root);
	if (rc != LM_OK) return rc;
	if (c->quant == QUANT_NONE) {
		*c = g;
		return LM_OK;
	}
	if (g.group_size != c->group_size || g.quant_sym != c->quant_sym || g.gptq_v2 != c->gptq_v2)
		return lm_err(_("%s: group_size %d, sym %s, format %s, but config.json's quantization_config says group_size %d, sym %s, format %s"),
			      path, g.group_size, g.quant_sym ? "true" : "false", g.gptq_v2 ? "gptq_v2" : "gptq",
			      c->group_size, c->quant_sym ? "true" : "false", c->gptq_v2 ? "gptq_v2" : "gptq");
	return LM_OK;
}

static int parse_arch(const struct cfg_ctx *x, struct model_config *c)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(x->root, "architectures");
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(x->root, "model_type");
	const char *name = NULL;
	if (a && !cJSON_IsNull(a)) {
		if (!cJSON_IsArray(a) || !cJSON_IsString(a->child))
			return lm_err(_("%s: key \"%sarchitectures\" is not a list of names"), x->path, x->scope);
		name = a->child->valuestring;
	}
	if (mt && !cJSON_IsNull(mt) && !cJSON_IsString(mt))
		return lm_err(_("%s: key \"%smodel_type\" is not a string"), x->path, x->scope);
	const char *type = cJSON_IsString(mt) ? mt->valuestring : NULL;
	if (x->dflt) { /* a LLaVA text_config: transformers builds the model its model_type names */
		name = NULL;
		type = x->dflt->type;
	}
	/* vl: a vision-language model whose language model this is (its arch name becomes c->wrapper) */
	static const struct { const char *arch, *type; enum arch a; bool vl; } known[] = {
		{ "LlamaForCausalLM", "llama", ARCH_LLAMA, false },
		{ "MistralForCausalLM", "mistral", ARCH_LLAMA, false },
		{ "Qwen2ForCausalLM", "qwen2", ARCH_QWEN2, false },
		{ "InternLM2ForCausalLM", "internlm2", ARCH_INTERNLM2, false },
		{ "Qwen3ForCausalLM", "qwen3", ARCH_QWEN3, false },
		{ "Phi3ForCausalLM", "phi3", ARCH_PHI3, false },
		/* vision-language models whose language model is a Qwen2 at the top of the checkpoint (vision tower
		 * under "visual."); their M-RoPE is plain RoPE for text, whose three position ids are equal */
		{ "Qwen2VLForConditionalGeneration", "qwen2_vl", ARCH_QWEN2, true },
		{ "Qwen2_5_VLForConditionalGeneration", "qwen2_5_vl", ARCH_QWEN2, true },
	};
	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		if (name ? !strcmp(name, known[i].arch) : type && !strcmp(type, known[i].type)) {
			c->arch = known[i].a;
			snprintf(c->arch_name, sizeof c->arch_name, "%s", known[i].arch);
			snprintf(c->model_type, sizeof c->model_type, "%s", type ? type : known[i].type);
			if (known[i].vl) snprintf(c->wrapper, sizeof c->wrapper, "%s", known[i].arch);
			return LM_OK;
		}
	if (!name && !type) return lm_err(_("%s: key \"%sarchitectures\" is missing"), x->path, x->scope);
	return lm_err(_("%s: key \"%s%s\": unsupported architecture \"%s\" (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, InternLM2ForCausalLM; InternVLChatModel around one of them; Qwen2-VL and Qwen2.5-VL; LLaVA and LLaVA-NeXT around Llama, Mistral or Qwen2)"),
		      x->path, x->scope, name ? "architectures" : "model_type", name ? name : type);
}

static int parse_config(const struct cfg_ctx *x, struct model_config *c)
{
	if (parse_arch(x, c) != LM_OK) return LM_ERR;
	const cJSON *r = x->root;
	const struct text_defaults *d = x->dflt;
	if (get_int(x, r, "vocab_size", d ? d->vocab : REQUIRED, 1, INT32_MAX, &c->vocab) != LM_OK ||
	    get_int(x, r, "hidden_size", d ? d->dim : REQUIRED, 1, 1 << 20, &c->dim) != LM_OK ||
	    get_int(x, r, "num_hidden_layers", d ? d->layers : REQUIRED, 1, 1 << 16, &c->n_layers) != LM_OK ||
	    get_int(x, r, "num_attention_heads", d ? d->heads : REQUIRED, 1, 1 << 16, &c->n_heads) != LM_OK ||
	    get_int(x, r, "intermediate_size", d ? d->ffn : REQUIRED, 1, 1 << 24, &c->ffn) != LM_OK ||
	    get_int(x, r, "num_key_value_heads", d && d->kv_heads ? d->kv_heads : c->n_heads, 1, 1 << 16,
		    &c->n_kv_heads) != LM_OK ||
	    get_int(x, r, "max_position_embeddings", d ? d->max_pos : 2048, 1, INT32_MAX, &c->max_pos) != LM_OK)
		return LM_ERR;
	if (c->n_heads % c->n_kv_heads)
		return lm_err(_("%s: key \"num_key_value_heads\" = %d does not divide num_attention_heads = %d"), x->path,
			      c->n_kv_heads, c->n_heads);
	const cJSON *hd = cJSON_GetObjectItemCaseSensitive(r, "head_dim");
	if ((!hd || cJSON_IsNull(hd)) && c->arch == ARCH_QWEN3) {
		c->head_dim = 128; /* Qwen3Config's default, not hidden_size / heads (Qwen3-0.6B: 1024 / 16 = 64) */
	} else if (!hd || cJSON_IsNull(hd)) {
		if (c->dim % c->n_heads)
			return lm_err(_("%s: key \"hidden_size\" = %d is not a multiple of num_attention_heads = %d (and no head_dim)"),
				      x->path, c->dim, c->n_heads);
		c->head_dim = c->dim / c->n_heads;
	} else if (get_int(x, r, "head_dim", REQUIRED, 2, 1 << 16, &c->head_dim) != LM_OK) {
		return LM_ERR;
	}
	if (c->head_dim % 2) return lm_err(_("%s: key \"head_dim\" = %d must be even for RoPE"), x->path, c->head_dim);
	/* keep every weight dimension far inside int (rows and cols are ints downstream) */
	if ((int64_t)(c->n_heads + 2 * c->n_kv_heads) * c->head_dim > (1 << 22))
		return lm_err(_("%s: keys \"num_attention_heads\" x \"head_dim\" = %lld: implausibly large"), x->path,
			      (long long)c->n_heads * c->head_dim);
	float prf;
	if (get_float(x, r, "partial_rotary_factor", 1.0, NULL, &prf) != LM_OK) return LM_ERR;
	if (prf != 1.0f)
		return lm_err(_("%s: key \"partial_rotary_factor\" = %g: only full rotary embeddings are supported"),
			      x->path, prf);
	if (get_float(x, r, "rms_norm_eps", 1e-6, NULL, &c->norm_eps) != LM_OK) return LM_ERR;
	if (!(c->norm_eps >= 0)) return lm_err(_("%s: key \"rms_norm_eps\" must not be negative"), x->path);
	if (get_bool(x, r, "tie_word_embeddings", false, &c->tie_embed) != LM_OK) return LM_ERR;

	/* biases */
	bool b = false;
	switch (c->arch) {
	case ARCH_QWEN2:
	case ARCH_QWEN3:
		/* Qwen3 is Qwen2 with q_norm and k_norm, and q/k/v/o biases only with attention_bias (false in every
		 * Qwen3) */
		if (c->arch == ARCH_QWEN3) {
			c->qk_norm = true;
			if (get_bool(x, r, "attention_bias", false, &c->qkv_bias) != LM_OK) return LM_ERR;
		} else {
			c->qkv_bias = true;
		}
		if (get_bool(x, r, "use_sliding_window", false, &b) != LM_OK) return LM_ERR;
		if (b)
			return lm_err(_("%s: key \"use_sliding_window\" = true: sliding-window attention is not supported"),
				      x->path);
		break;
	case ARCH_INTERNLM2:
		if (get_bool(x, r, "bias", false, &c->qkv_bias) != LM_OK) return LM_ERR;
		break;
	case ARCH_PHI3:
		/* Mistral's decoder with fused qkv_proj and gate_up_proj, no biases; Phi-3-mini-4k attends to its last
		 * sliding_window (2047) tokens, which, as for Mistral, is not implemented: a note says so */
		c->sliding_window = 0;
		if (get_int(x, r, "sliding_window", 0, 1, INT32_MAX, &c->sliding_window) != LM_OK) return LM_ERR;
		break;
	case ARCH_LLAMA:
		/* transformers' Mistral attends to the last sliding_window tokens only (Mistral 7B v0.1: 4096; null
		 * from v0.2 on); Llama has no such key */
		c->sliding_window = 0;
		if (!strcmp(c->model_type, "mistral")) {
			const cJSON *sw = cJSON_GetObjectItemCaseSensitive(r, "sliding_window");
			if (!sw) c->sliding_window = d ? d->sliding : 0;
			else if (!cJSON_IsNull(sw) &&
				 get_int(x, r, "sliding_window", 0, 1, INT32_MAX, &c->sliding_window) != LM_OK)
				return LM_ERR;
		}
		if (get_bool(x, r, "attention_bias", false, &c->qkv_bias) != LM_OK) return LM_ERR;
		if (get_bool(x, r, "mlp_bias", false, &b) != LM_OK) return LM_ERR;
		if (b) return lm_err(_("%s: key \"mlp_bias\" = true is not supported"), x->path);
		break;
	}
	const cJSON *act = cJSON_GetObjectItemCaseSensitive(r, "hidden_act");
	if (act && cJSON_IsString(act) && strcmp(act->valuestring, "silu") != 0)
		return lm_err(_("%s: key \"hidden_act\" = \"%s\": only silu is supported"), x->path, act->valuestring);

	if (parse_dtype(x, c) != LM_OK || parse_rope(x, c) != LM_OK || parse_quant(x, c) != LM_OK) return LM_ERR;

	/* a text_config without the keys has its class's ids (null, written out, is none) */
	c->bos_id = -1;
	const cJSON *bos = cJSON_GetObjectItemCaseSensitive(r, "bos_token_id");
	if (d && !bos) c->bos_id = d->bos;
	else if (get_int(x, r, "bos_token_id", -1, -1, INT32_MAX, &c->bos_id) != LM_OK) return LM_ERR;
	c->n_eos = 0;
	const cJSON *eos = cJSON_GetObjectItemCaseSensitive(r, "eos_token_id");
	if (d && !eos) {
		if (d->eos >= 0) c->eos_ids[c->n_eos++] = d->eos;
	} else if (add_eos(c, x->path, eos) != LM_OK) {
		return LM_ERR;
	}
	return LM_OK;
}

/* LLaVA as llava-hf publishes it (LlavaForConditionalGeneration: LLaVA 1.5, llava-interleave-qwen;
 * LlavaNextForConditionalGeneration: LLaVA 1.6): the language model's config under "text_config", often only
 * its differences from its model_type's defaults (struct text_defaults). Its dtype, when it has none, is the
 * top level's. The tensors are in one of two layouts (model_open_tensors). */
static int parse_llava(const struct cfg_ctx *x, struct model_config *c, const char *arch)
{
	const cJSON *tc = cJSON_GetObjectItemCaseSensitive(x->root, "text_config");
	if (!tc || cJSON_IsNull(tc))
		return lm_err(_("%s: key \"text_config\" is missing (%s keeps its language model's config there)"), x->path,
			      arch);
	if (!cJSON_IsObject(tc)) return lm_err(_("%s: key \"%s\" is not an object"), x->path, "text_config");
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(tc, "model_type");
	/* transformers takes llama for a text_config without model_type; every text_config it writes has one, so
	 * one without is not guessed at here */
	if (!mt || cJSON_IsNull(mt))
		return lm_err(_("%s: key \"text_config.model_type\" is missing (llama, mistral or qwen2)"), x->path);
	if (!cJSON_IsString(mt)) return lm_err(_("%s: key \"%smodel_type\" is not a string"), x->path, "text_config.");
	struct cfg_ctx tx = { x->path, tc, "text_config.", NULL };
	for (size_t i = 0; i < ARRAY_SIZE(text_defaults); i++)
		if (!strcmp(mt->valuestring, text_defaults[i].type)) tx.dflt = &text_defaults[i];
	if (!tx.dflt)
		return lm_err(_("%s: key \"text_config.model_type\": unsupported language model \"%s\" in %s (supported: llama, mistral, qwen2)"),
			      x->path, mt->valuestring, arch);
	if (parse_config(&tx, c) != LM_OK) return LM_ERR;
	if (!has_key(tc, "dtype") && !has_key(tc, "torch_dtype") && parse_dtype(x, c) != LM_OK) return LM_ERR;
	/* LMDeploy's auto_awq writes quantization_config into text_config (the language model's config);
	 * AutoAWQ, vLLM and transformers use the top level's */
	if (!c->quant_bits && parse_quant(x, c) != LM_OK) return LM_ERR;
	snprintf(c->wrapper, sizeof c->wrapper, "%s", arch);
	snprintf(c->tensor_prefix, sizeof c->tensor_prefix, "language_model.");
	return LM_OK;
}

/* A vision-language checkpoint that wraps one of the language models above: InternVL (1.5, 2, 2.5;
 * InternVLChatModel) keeps the language model's whole config under "llm_config" and its tensors under
 * "language_model.", beside the vision tower ("vision_model.") and the projector ("mlp1."). lmterm runs and
 * quantizes the language model; the rest is carried along untouched (lite auto_awq copies it). */
static bool is_arch(const cJSON *root, const char *arch, const char *type)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "architectures");
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
	return (cJSON_IsArray(a) && cJSON_IsString(a->child) && !strcmp(a->child->valuestring, arch)) ||
	       (!cJSON_IsArray(a) && cJSON_IsString(mt) && !strcmp(mt->valuestring, type));
}

static int parse_wrapped(const struct cfg_ctx *x, struct model_config *c)
{
	if (is_arch(x->root, "LlavaForConditionalGeneration", "llava"))
		return parse_llava(x, c, "LlavaForConditionalGeneration");
	if (is_arch(x->root, "LlavaNextForConditionalGeneration", "llava_next"))
		return parse_llava(x, c, "LlavaNextForConditionalGeneration");
	if (!is_arch(x->root, "InternVLChatModel", "internvl_chat")) return parse_config(x, c);
	const cJSON *llm = cJSON_GetObjectItemCaseSensitive(x->root, "llm_config");
	if (!cJSON_IsObject(llm))
		return lm_err(_("%s: an InternVL model without an \"llm_config\" object"), x->path);
	struct cfg_ctx lx = { x->path, llm, "llm_config.", NULL };
	if (parse_config(&lx, c) != LM_OK) return LM_ERR; /* the messages name "llm_config.<key>" */
	/* LMDeploy writes the quantization_config into llm_config; other tools put it at the top */
	if (!c->quant_bits && parse_quant(x, c) != LM_OK) return LM_ERR;
	snprintf(c->wrapper, sizeof c->wrapper, "InternVLChatModel");
	snprintf(c->tensor_prefix, sizeof c->tensor_prefix, "language_model.");
	return LM_OK;
}

static int parse_generation_config(struct model_config *c, const char *path)
{
	cJSON *root = read_json_object(path);
	if (!root) return LM_ERR;
	struct cfg_ctx x = { path, root, "", NULL };
	int rc = add_eos(c, path, cJSON_GetObjectItemCaseSensitive(root, "eos_token_id"));
	if (rc == LM_OK && c->bos_id < 0) rc = get_int(&x, root, "bos_token_id", -1, -1, INT32_MAX, &c->bos_id);
	cJSON_Delete(root);
	return rc;
}

int config_load(struct model_config *c, const char *path)
{
	memset(c, 0, sizeof *c);
	char *buf;
	size_t len;
	if (read_file(path, &buf, &len) != LM_OK) return LM_ERR;
	if (len == 0) { /* "not valid JSON (near byte 0)" */
		free(buf);
		return lm_err(_("%s: the file is empty"), path);
	}
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, false);
	if (!root) {
		size_t at = end && end >= buf && end <= buf + len ? (size_t)(end - buf) : 0;
		free(buf);
		return lm_err(_("%s: not valid JSON (near byte %zu)"), path, at);
	}
	free(buf);
	struct cfg_ctx x = { path, root, "", NULL };
	int rc = cJSON_IsObject(root) ? parse_wrapped(&x, c) : lm_err(_("%s: not a JSON object"), path);
	cJSON_Delete(root);
	if (rc != LM_OK) return rc;

	/* generation_config.json beside it may add eos ids (chat models list their end-of-turn token there) */
	char gpath[4096];
	snprintf(gpath, sizeof gpath, "%s", path);
	char *slash = strrchr(gpath, '/');
	if (slash) slash[1] = 0;
	else gpath[0] = 0;
	size_t dl = strlen(gpath);
	if (dl + sizeof "generation_config.json" <= sizeof gpath) {
		strcat(gpath, "generation_config.json");
		if (file_exists(gpath)) rc = parse_generation_config(c, gpath);
	}
	if (rc == LM_OK && c->quant != QUANT_AWQ && dl + sizeof "quantize_config.json" <= sizeof gpath) {
		strcpy(gpath + dl, "quantize_config.json");
		if (file_exists(gpath)) rc = read_quantize_config(c, gpath);
	}
	return rc;
}

/* inv_freq[i] = 1 / theta^(2i/dim), in double then rounded, then scaled per type as transformers'
 * modeling_rope_utils does. */
void rope_inv_freq(const struct model_config *c, int seq_len, float *inv_freq, float *mscale)
{
	const struct rope_cfg *r = &c->rope;
	int dim = c->head_dim, half = dim / 2;
	double base = r->theta;
	if (r->type == ROPE_DYNAMIC && r->orig_max_pos > 0 && seq_len > r->orig_max_pos && dim > 2) {
		/* _compute_dynamic_ntk_parameters: NTK-aware base growth once past the trained length */
		double ratio = (double)r->factor * seq_len / r->orig_max_pos - (r->factor - 1.0);
		base = base * pow(ratio, (double)dim / (dim - 2));
	}
	for (int i = 0; i < half; i++) {
		double f = 1.0 / pow(base, (double)(2 * i) / dim);
		if (r->type == ROPE_LINEAR) {
			f /= r->factor;
		} else if (r->type == ROPE_LLAMA3) {
			/* _compute_llama3_parameters: long wavelengths divided by factor, short kept, a smooth blend
			 * in between */
			double old = r->orig_max_pos;
			double low_wl = old / r->low_freq_factor, high_wl = old / r->high_freq_factor;
			double wl = 2 * M_PI / f;
			if (wl > low_wl) {
				f = f / r->factor;
			} else if (wl >= high_wl) {
				double s = (old / wl - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
				f = (1 - s) * f / r->factor + s * f;
			}
		} else if (r->type == ROPE_LONGROPE) {
			/* _compute_longrope_parameters: the long factors once the sequence outgrows the trained length
			 * (decided per forward call, as transformers does; K cached with the other factors is fed
			 * again: fwd_rope_refeed) */
			f /= seq_len > r->orig_max_pos ? r->long_factor[i] : r->short_factor[i];
		}
		inv_freq[i] = (float)f;
	}
	if (mscale) *mscale = r->type == ROPE_LONGROPE ? r->attn_factor : 1.0f;
}

void config_rope_dynamic(struct model_config *c, double factor)
{
	c->rope.type = ROPE_DYNAMIC;
	c->rope.factor = (float)factor;
	c->rope.orig_max_pos = c->max_pos;
}
