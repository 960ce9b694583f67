/* backend.h: what the forward pass and the engine may ask of a compute backend.
 *
 * A backend owns device memory (every allocation tagged with a category, so exact bytes per category are
 * known for the memory panel) and runs ops on opaque pointers into that memory. Activations are kept in the
 * backend's act_dt (the cpu backend: F32; cuda: the model's F16/BF16). Ops are asynchronous on a device;
 * download() and sync() are the points where the host waits. Ops return LM_OK or LM_ERR (message set).
 *
 * One forward step: set_step() first (token ids, positions, the sequence's KV block table, RoPE
 * frequencies), then the ops, which read those from the backend's step state. Because no op takes a
 * position or an id directly, a decode step's op sequence is identical from token to token, which is what
 * lets the CUDA backend capture it once as a graph and replay it (graph_begin/graph_end, optional).
 *
 * Registration is explicit: backend_create("cpu"|"cuda"|"auto"). */
#ifndef LMTERM_BACKEND_H
#define LMTERM_BACKEND_H

#include "common.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

enum mem_cat { MEM_WEIGHTS, MEM_KV, MEM_ACT, MEM_OTHER, MEM_NCAT };

struct mem_stats {
	size_t cat[MEM_NCAT];      /* exact bytes this process allocated through the backend, per category */
	size_t peak[MEM_NCAT];     /* high-water marks */
	size_t total, free;        /* device (or host: MemTotal/MemAvailable) memory */
	size_t used_by_process;    /* as the driver reports it (NVML), or RSS on the cpu backend */
	bool total_valid, free_valid, used_valid;
	bool is_host;              /* cpu backend: figures are host memory */
	char device_name[64];
	/* added by the cuda backend: device memory the driver gave this process that no allocation of ours
	 * explains (CUDA context, cuBLAS), measured once when the backend started; not in cat[] */
	size_t runtime;
	bool runtime_valid;
};

/* KV cache policies (LMDeploy's --quant-policy) */
enum { KV_POLICY_NONE = 0, KV_POLICY_INT4 = 4, KV_POLICY_INT8 = 8 };

/* A paged KV cache: n_blocks blocks of block_len tokens, for all layers. The pool's layout is the
 * backend's own; the forward pass only names blocks by index (the block table in struct step). */
enum { BACKEND_GRAPH_PROFILE = 4, BACKEND_MAX_GRAPHS = 20 };
/* greedy ids started on the device and not yet taken (backend_i.argmax_start): the step being taken and
 * the one enqueued after it */
enum { BACKEND_MAX_PENDING = 2 };

struct kv_cache {
	int n_layers, n_kv_heads, head_dim;
	int block_len;            /* tokens per block (--cache-block-seq-len, default 64) */
	int n_blocks;
	int policy;               /* KV_POLICY_* */
	void *pool;               /* backend memory, category MEM_KV */
	size_t bytes;             /* bytes allocated */
	size_t bytes_per_token;   /* all layers, K and V, data + scale/zero */
};

struct step {
	const int32_t *ids;       /* [n] token ids */
	int n;                    /* tokens in this step */
	int pos0;                 /* position of ids[0]; tokens attend to positions [0, pos0 + i] */
	const int32_t *blocks;    /* block table of the sequence: block index for positions [b*block_len, ...) */
	int n_blocks;             /* entries in blocks (covers pos0 + n) */
	const float *inv_freq;    /* [head_dim/2] RoPE inverse frequencies for this step */
	float rope_mscale;        /* scale of cos/sin: longrope's attention factor (1 for the other types) */
	bool chain;               /* n == 1 and ids unused: the token is the one the previous step's argmax_start
	                           * (or argmax, sample) left on the device, not yet known to the host */
};

/* One sampling step as the host sampler would take it (sampler_args() in src/sampler.h fills it): the
 * repetition penalty over the history ids (once per id), temperature, top-k, top-p, min-p, then a draw. */
struct sample_args {
	float temperature;        /* <= 0, or top_k == 1: greedy (the first largest logit after the penalty) */
	float top_p;              /* off unless in (0, 1) */
	int top_k;                /* 0 = off */
	float min_p;              /* 0 = off */
	float repetition_penalty; /* 1 (or <= 0) = off */
	const int32_t *history;   /* host ids in the context, for the penalty */
	int n_history;
	double u;                 /* the sampler's uniform in [0, 1), drawn from its seeded generator */
	int vocab;                /* length of the logits when the op is given logits instead of h */
};

struct backend;

struct backend_i {
	const char *name;
	void (*destroy)(struct backend *be);

	/* memory */
	void *(*alloc)(struct backend *be, size_t bytes, enum mem_cat cat); /* NULL + message on failure */
	void (*free)(struct backend *be, void *p);
	int (*upload)(struct backend *be, void *dst, const void *src, size_t bytes);
	int (*download)(struct backend *be, void *dst, const void *src, size_t bytes);
	int (*sync)(struct backend *be);
	int (*mem_stats)(struct backend *be, struct mem_stats *out);

	/* weights: take a host weight into backend memory (convert, concatenate or repack as it likes) */
	int (*weight_load)(struct backend *be, struct weight *w, const struct host_weight *src);
	/* random weights of the given shape (bench --dummy); optional, NULL = not supported */
	int (*weight_random)(struct backend *be, struct weight *w, enum dtype dt, int rows, int cols, float scale,
			     uint64_t seed);
	void (*weight_free)(struct backend *be, struct weight *w);

	/* KV cache: allocate kv->n_blocks blocks for kv->policy (fills pool, bytes, bytes_per_token) */
	int (*kv_alloc)(struct backend *be, struct kv_cache *kv);
	void (*kv_free)(struct backend *be, struct kv_cache *kv);
	size_t (*kv_bytes_per_token)(struct backend *be, const struct kv_cache *kv); /* kv's fields but pool */

	/* the step state read by the ops below */
	int (*set_step)(struct backend *be, const struct step *s);

	/* ops; n = tokens in this step (== step.n); all buffers are [n][...] in act_dt unless said */
	/* x[n][dim] = tok_embed[ids[i]] */
	int (*embed)(struct backend *be, void *x, const struct weight *table);
	/* optional: embed, then add_rmsnorm(h, x, NULL, w, n, eps), as one op (the first layer's norm); returns 1,
	 * having done nothing, where it cannot (the caller then takes the two) */
	int (*embed_norm)(struct backend *be, void *x, void *h, const struct weight *table, const struct weight *w,
			  int n, float eps);
	/* if dx: x += dx; then h = rmsnorm(x) * w (eps) */
	int (*add_rmsnorm)(struct backend *be, void *h, void *x, const void *dx, const struct weight *w, int n,
			   float eps);
	/* y[n][w.rows] = x[n][w.cols] . W^T (+ bias) */
	int (*matmul)(struct backend *be, void *y, const void *x, const struct weight *w, int n);
	/* Qwen3's q/k norms, in place on qkv[n][(nh + 2 nkv) hd], hd = q_norm->cols = k_norm->cols (float vectors):
	 * each of the nh q heads of a row becomes rmsnorm(head) * q_norm, each of the nkv k heads
	 * rmsnorm(head) * k_norm, the v heads are left alone; as add_rmsnorm on rows of hd
	 * (normalized in float, rounded to act_dt, then the weight). Before rope_kv: the cache gets normed k. */
	int (*qk_norm)(struct backend *be, void *qkv, const struct weight *q_norm, const struct weight *k_norm, int n,
		       int n_heads, int n_kv_heads, float eps);
	/* qkv[n][(nh + 2 nkv) hd]: rotate q and k (positions pos0+i, step's inv_freq), then store k and v of
	 * the n tokens into the cache (quantized per kv->policy) */
	int (*rope_kv)(struct backend *be, void *qkv, struct kv_cache *kv, int layer, int n_heads);
	/* out[n][nh hd] = causal softmax(q k^T / sqrt(hd)) v over positions [0, pos0 + i], from the cache;
	 * q is read from qkv (rotated) */
	int (*attention)(struct backend *be, void *out, const void *qkv, const struct kv_cache *kv, int layer,
			 int n_heads);
	/* optional: rope_kv then attention as one op, where the backend can fold them into one kernel; qkv's q
	 * and k are afterwards either rotated (as after rope_kv) or left as they were. NULL = the two ops. */
	int (*rope_attention)(struct backend *be, void *out, void *qkv, struct kv_cache *kv, int layer, int n_heads);
	/* out[n][ffn] = silu(gu[:, :ffn]) * gu[:, ffn:] */
	int (*swiglu)(struct backend *be, void *out, const void *gu, int n, int ffn);
	/* optional: out[n][ffn] = swiglu(x[n][dim] . w13^T) in one op where the backend can fuse them; gu is the
	 * [n][2 ffn] buffer matmul + swiglu would use (the backend may use it as scratch). NULL = those two. */
	int (*matmul_swiglu)(struct backend *be, void *out, void *gu, const void *x, const struct weight *w13, int n);
	/* optional, the decode step's norms folded into its GEMVs (NULL = not offered). Since rmsnorm(x) . W^T =
	 * rstd * ((x * nw) . W^T) with one scalar rstd per token, a norm needs no kernel of its own: the GEMV that
	 * ends the residual branch adds to x, writes x * nw and the partial sums of x^2, and the GEMV that follows
	 * the norm applies rstd in its epilogue.
	 * matmul_residual: x += a . W^T (rounded as matmul then add_rmsnorm's add would round it), then
	 *   xw = x * nw (nw: the next norm's weight) and the sums of squares of x, kept by the backend for the next
	 *   norm_matmul. Returns 1, having done nothing, where it cannot fuse this weight at this n (the caller
	 *   then takes matmul and add_rmsnorm).
	 * norm_matmul: only right after a matmul_residual that returned 0, on its xw: y = rmsnorm(x) . W^T (+ bias)
	 *   (eps: the norm's); with gu non-NULL, y = swiglu of that as matmul_swiglu gives it (gu its scratch). Any
	 *   weight; xw may be overwritten. */
	int (*matmul_residual)(struct backend *be, void *x, void *xw, const void *a, const struct weight *w,
			       const struct weight *nw, int n);
	int (*norm_matmul)(struct backend *be, void *y, void *gu, void *xw, const struct weight *w, int n, float eps);
	/* logits_host[n][vocab] (float) = h[n][dim] . lm_head^T; waits for the result */
	int (*logits)(struct backend *be, float *logits_host, const void *h, const struct weight *lm_head, int n);
	/* optional: argmax of h[dim] . lm_head^T on the device; NULL = use logits() */
	int (*argmax)(struct backend *be, int32_t *token_host, const void *h, const struct weight *lm_head);
	/* optional, both or neither: greedy decoding one step ahead of the host. argmax_start enqueues the argmax
	 * of h[dim] . lm_head^T and returns at once; the id stays on the device for the next step (struct step
	 * chain) and is handed to the host by argmax_take, oldest first, waiting for it. At most
	 * BACKEND_MAX_PENDING started and not taken. NULL = forward() takes the argmax at once */
	int (*argmax_start)(struct backend *be, const void *h, const struct weight *lm_head);
	int (*argmax_take)(struct backend *be, int32_t *token_host);
	/* optional: the next token sampled from h[dim] . lm_head^T on the device with src/sampler.c's semantics
	 * and the host sampler's uniform (struct sample_args); waits for the token. With lm_head NULL, h is
	 * instead float logits[a->vocab] in backend memory (left unchanged). NULL = logits() and the host sampler */
	int (*sample)(struct backend *be, int32_t *token_host, const void *h, const struct weight *lm_head,
		      const struct sample_args *a);

	/* optional: capture the ops between begin and end as a replayable graph keyed by key (decode steps);
	 * graph_begin returns 1 if a graph for key exists and was replayed (the caller then skips the ops
	 * and calls graph_end anyway), 0 if capturing. NULL = no graphs. Keys: 1 the decode step (forward.c),
	 * BACKEND_GRAPH_PROFILE + k the ops `lmterm bench --profile` times; below BACKEND_MAX_GRAPHS. */
	int (*graph_begin)(struct backend *be, int key);
	int (*graph_end)(struct backend *be, int key);

	/* optional (bench): device copy bandwidth in bytes/s, bytes read + written by one large device-to-device
	 * copy, measured once and remembered; 0 with a message on failure. NULL = not a device. */
	double (*copy_bandwidth)(struct backend *be);
};

struct backend {
	const struct backend_i *i;
	enum dtype act_dt;        /* activation element type */
	size_t act_size;          /* bytes per activation element */
	int n_threads;            /* cpu backend threads */
	void *ctx;                /* the backend's own state */
};

/* "auto" = cuda where a GPU is usable, else cpu. model_dtype: the weights' dtype (cuda picks F16/BF16 acts). */
int backend_create(struct backend **out, const char *name, enum dtype model_dtype);
void backend_destroy(struct backend *be);
bool backend_cuda_built(void);
/* What "auto" chooses: true for cuda. When it falls back to the cpu while the machine has an NVIDIA driver (a
 * GPU this lmterm cannot use: built without CUDA, or CUDA fails on it), backend_fallback_note() says why, and
 * the commands show it, since a model on the CPU is many times slower; else the note is "". */
bool backend_auto_uses_cuda(void);
const char *backend_fallback_note(void);
/* the note for: a build with CUDA or not, an NVIDIA driver present or not, CUDA's error (or NULL); "" for none */
void backend_fallback_text(char *buf, size_t n, bool built_cuda, bool nvidia_driver, const char *cuda_error);

/* For backends' weight_load/weight_free: allocate one part of w (data, qweight, scales, ...) as MEM_WEIGHTS
 * and count its bytes in w->bytes; free every part of w (unless it is shared) through be->i->free. */
int weight_alloc_part(struct backend *be, struct weight *w, void **p, size_t bytes);
void weight_free_parts(struct backend *be, struct weight *w);

struct backend *backend_cpu_create(void);
/* the CUDA backend (cuda/backend_cuda.cu, built when configure found CUDA): NULL + message when no GPU */
struct backend *backend_cuda_create(enum dtype model_dtype);
int backend_cuda_available(void); /* 1 if a usable GPU is present */
const char *backend_cuda_why_not(void); /* after backend_cuda_available() returned 0: CUDA's reason */
/* one line for --version: CUDA's runtime and driver versions, and the first GPU or why there is none */
void backend_cuda_describe(char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
