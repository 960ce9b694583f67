/* model.h: model configuration (config.json), weights as the forward pass sees them, and model loading.
 *
 * Whatever the checkpoint's layout, the loader hands the forward pass one shape per layer:
 *   wqkv   [ (n_heads + 2*n_kv_heads) * head_dim ][ dim ]  rows: all q heads, then all k heads, then all v heads
 *   wo     [ dim ][ n_heads * head_dim ]
 *   w13    [ 2 * ffn ][ dim ]                              rows: gate (w1) then up (w3)
 *   w2     [ dim ][ ffn ]
 * Llama/Qwen2's separate q,k,v (and gate,up) are concatenated at load; InternLM2's packed wqkv
 * (per kv head: its q heads, then k, then v) is reordered. One fused GEMM each saves launches and re-reads.
 * Qwen3 adds q_norm and k_norm [head_dim]: an RMSNorm of each q head and each k head, between the
 * projection and RoPE. Phi-3 stores wqkv (qkv_proj) and w13 (gate_up_proj) already fused in this order. */
#ifndef LMTERM_MODEL_H
#define LMTERM_MODEL_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct backend;
struct st_set;

enum arch { ARCH_LLAMA, ARCH_QWEN2, ARCH_INTERNLM2, ARCH_QWEN3, ARCH_PHI3 };
enum quant_method { QUANT_NONE, QUANT_AWQ, QUANT_GPTQ };
enum rope_type { ROPE_DEFAULT, ROPE_LINEAR, ROPE_LLAMA3, ROPE_DYNAMIC, ROPE_LONGROPE };

#define MAX_ROPE_HALF 256 /* longrope's factor lists: head_dim / 2 entries, head_dim up to 512 */

struct rope_cfg {
	enum rope_type type;
	float theta;            /* base */
	float factor;           /* linear / llama3 / dynamic factor */
	float low_freq_factor;  /* llama3 */
	float high_freq_factor; /* llama3 */
	int orig_max_pos;       /* llama3, longrope: original_max_position_embeddings; dynamic: max_position_embeddings */
	/* longrope (Phi-3 128k, Phi-3.5): inv_freq[i] divided by long_factor[i] once the sequence is longer than
	 * orig_max_pos, else by short_factor[i]; cos and sin times attn_factor */
	float short_factor[MAX_ROPE_HALF], long_factor[MAX_ROPE_HALF];
	float attn_factor;
};

#define MAX_EOS 8
struct model_config {
	enum arch arch;
	char arch_name[64];   /* "LlamaForCausalLM", ... as in config.json */
	char model_type[32];  /* "llama", "qwen2", "internlm2", "qwen3", "phi3" */
	int vocab, dim, n_layers, n_heads, n_kv_heads, head_dim, ffn, max_pos;
	float norm_eps;
	struct rope_cfg rope;
	bool tie_embed;       /* lm_head shares tok_embed */
	bool qkv_bias;        /* qwen2, internlm2 with bias=true, llama and qwen3 with attention_bias=true */
	bool qk_norm;         /* qwen3: q and k RMS-normed per head (q_norm, k_norm) before RoPE */
	enum dtype dtype;     /* torch_dtype / dtype: DT_F32, DT_F16 or DT_BF16 */
	int bos_id;           /* -1 if none */
	int eos_ids[MAX_EOS]; /* config.json, then generation_config.json adds its own */
	int n_eos;
	int quant_bits;       /* 0: dense; 4: AWQ or GPTQ (quantization_config) */
	enum quant_method quant;
	int group_size;       /* inputs per scale and zero; GPTQ's -1: one group of all the inputs of a linear */
	bool gptq_v2;         /* GPTQ checkpoint_format "gptq_v2": qzeros hold z; else ("gptq", v1) z - 1 */
	bool quant_sym;       /* GPTQ sym (zero 8 everywhere); informative: the zeros are read either way */
	int sliding_window;   /* Mistral's and Phi-3's sliding-window attention span (0: none); not implemented: a
			       * note says so */
	char wrapper[40];       /* "" or the vision-language model this language model is part of: "InternVLChatModel",
				 * "Qwen2VLForConditionalGeneration", "LlavaForConditionalGeneration", ... */
	char tensor_prefix[32]; /* what the language model's tensor names start with there ("language_model."); LLaVA
				 * has two layouts, and model_open_tensors finds which one a checkpoint has */
};

/* Parse config.json (old or new keys) and, if present beside it, generation_config.json.
 * Errors name the file and the key. */
int config_load(struct model_config *c, const char *config_json_path);
/* Compute RoPE inverse frequencies [head_dim/2] for a sequence of seq_len tokens, as transformers does
 * (dynamic NTK rescales the base once seq_len exceeds max_pos; longrope takes its long factors once seq_len
 * exceeds original_max_position_embeddings). Also returns the scale of cos and sin (longrope's attention
 * factor; 1.0 for the other types) in *mscale if non-NULL. */
void rope_inv_freq(const struct model_config *c, int seq_len, float *inv_freq, float *mscale);
/* --rope-scaling-factor F (F >= 1): dynamic NTK RoPE with factor F against max_position_embeddings, as TurboMind
 * makes it, whatever the model's own scaling was */
void config_rope_dynamic(struct model_config *c, double factor);

/* A weight as a backend holds it. dense: data [rows][cols] of dt.
 * AWQ (dt == DT_Q4): qweight/qzeros/scales in the backend's own layout (it may repack at load);
 * group = group size along cols. bias: [rows] or NULL, in the backend's activation-friendly dtype. */
struct weight {
	enum dtype dt;
	int rows, cols;
	void *data;
	void *qweight, *qzeros, *scales;
	int group;
	void *bias;
	size_t bytes;         /* device/host bytes this weight holds (for the memory panel) */
	bool shared;          /* aliases another weight (tied lm_head): not freed, not counted twice */
	/* w13 (rows: gate, then up): a backend may keep the rows interleaved for a SwiGLU fused into its GEMV's
	 * epilogue; it says so in gu_interleaved, and then only matmul_swiglu and norm_matmul may use the weight
	 * (a plain matmul's rows would come out in its order). gate_up is the loader's hint to weight_random. */
	bool gate_up, gu_interleaved;
};

/* A weight as the loader has it on the host, before the backend takes it. */
struct host_weight {
	enum dtype dt;        /* F32/F16/BF16 dense, or DT_Q4 */
	int rows, cols;       /* out, in features; vectors (norms): rows = 1 */
	const void *data;     /* dense [rows][cols] */
	/* DT_Q4, AutoAWQ gemm layout, already concatenated along the output dimension:
	 * qweight int32 [cols][rows/8], qzeros int32 [cols/group][rows/8], scales fp16 [cols/group][rows] */
	const int32_t *qweight, *qzeros;
	const uint16_t *scales;
	int group;
	const void *bias;     /* [rows] of bias_dt, or NULL */
	enum dtype bias_dt;
	bool gate_up;         /* w13: rows gate (first half), then up (second half); see struct weight */
};

struct layer_weights {
	struct weight attn_norm; /* [dim] */
	struct weight wqkv;      /* see top of file */
	struct weight q_norm;    /* [head_dim], with cfg.qk_norm (else empty) */
	struct weight k_norm;    /* [head_dim], with cfg.qk_norm (else empty) */
	struct weight wo;
	struct weight ffn_norm;  /* [dim] */
	struct weight w13;
	struct weight w2;
};

struct model {
	struct model_config cfg;
	char dir[4096];
	struct weight tok_embed;   /* [vocab][dim], always dense */
	struct weight final_norm;  /* [dim] */
	struct weight lm_head;     /* [vocab][dim]; shared with tok_embed when tied */
	struct layer_weights *layers;
	struct backend *be;
	size_t weight_bytes;
};

enum model_format { FMT_AUTO, FMT_HF, FMT_AWQ, FMT_GPTQ };

/* Load config, safetensors (single or sharded) and hand every weight to the backend.
 * progress (may be NULL) is called after each layer: done of total; it returns false to stop the load, which
 * then fails with "interrupted" (the chat quit while loading). */
int model_load(struct model *m, const char *dir, struct backend *be, enum model_format fmt,
	       bool (*progress)(void *ud, int done, int total), void *ud);
/* The checkpoint's tensors (st_set_open), named as the language model's own ("model.layers.0...", "lm_head.weight")
 * whatever the wrapper: st_set_prefix with c's tensor prefix, or for LLaVA the layout its tensors have
 * (language_model.model.* and language_model.lm_head as transformers saved them before 4.52,
 * model.language_model.* and lm_head from 4.52 on). Errors name the directory. */
int model_open_tensors(const struct model_config *c, const char *dir, struct st_set **set);
/* A model of the config's shapes with random weights made by the backend itself (bench --dummy). */
/* GPTQ (AutoGPTQ's layout, desc_act false) to AutoAWQ's gemm layout, for one linear of in x out features
 * (in % 8 == 0, out % 8 == 0, group dividing in): qweight int32 [in/8][out] (nibble i of word (r, c) = input
 * 8r + i, output c) -> aw_qweight int32 [in][out/8]; qzeros int32 [in/group][out/8] (nibble j = output 8c + j,
 * holding z - 1, or z with v2) -> aw_qzeros int32 [in/group][out/8] holding z; the scales are the same in both.
 * The inputs may be unaligned (they come from the file's mapping). Fails, naming the group and output, where a
 * v1 zero is 16 (stored 15), which 4 bits cannot hold. */
int gptq_to_awq(const void *qweight, const void *qzeros, int in, int out, int group, bool v2, int32_t *aw_qweight,
		int32_t *aw_qzeros);
int model_init_dummy(struct model *m, const struct model_config *c, struct backend *be, uint64_t seed);
void model_free(struct model *m);

#ifdef __cplusplus
}
#endif
#endif
