/* kernels.h: host launchers of the backend's own kernel families (cuda/embed.cu, rmsnorm.cu, swiglu.cu,
 * gemv.cu, awq_gemm.cu, sample.cu, fill.cu). The KV-touching ones are in attention.h.
 *
 * Activations are act = DT_F16 or DT_BF16, row-major. Norm weights and biases are float on the device.
 * Every launcher is asynchronous on stream s, may be called during stream capture, and returns LM_OK or
 * LM_ERR with a message (a launch error or an unsupported shape). */
#ifndef LMTERM_CUDA_KERNELS_H
#define LMTERM_CUDA_KERNELS_H

#include <cuda_runtime_api.h>
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* x[i][dim] = table[ids[i]][dim] (ids on the device; an id outside [0, vocab) gives a zero row); where *chain
 * is non-zero (read on the device: the step state says so), x[0] = table[*tok] instead (a chained step) */
int k_embed(void *x, const void *table, const int32_t *ids, const int32_t *chain, const int32_t *tok, int n, int dim,
	    int vocab, enum dtype act, cudaStream_t s);

/* if dx: x += dx (rounded to act); h = act(w * act(x * rsqrt(mean(x^2) + eps))), as transformers */
/* k_embed, then k_add_rmsnorm of x (no dx) in the same kernel, where k_embed_rmsnorm_supported(dim) */
bool k_embed_rmsnorm_supported(int dim);
int k_embed_rmsnorm(void *h, void *x, const void *table, const int32_t *ids, const int32_t *chain, const int32_t *tok,
		    int vocab, const float *w, int n, int dim, float eps, enum dtype act, cudaStream_t s);
int k_add_rmsnorm(void *h, void *x, const void *dx, const float *w, int n, int dim, float eps, enum dtype act,
		  cudaStream_t s);
/* the folded norm (k_awq_gemv_residual) finished where its GEMV cannot: xw[i][:] *= rsqrt(sum(part[i][0 .. dim/16))
 * / dim + eps), in place, rounded to act, which makes xw the norm's output h */
int k_norm_apply(void *xw, const float *part, int n, int dim, float eps, enum dtype act, cudaStream_t s);

/* Qwen3's q/k norms, in place on qkv[n][(nh + 2 nkv) hd]: each of the nh q heads of a row
 * h = act(wq * act(h * rsqrt(mean(h^2) + eps))), each of the nkv k heads with wk (float [hd]); v untouched */
int k_qk_norm(void *qkv, const float *wq, const float *wk, int n, int nh, int nkv, int hd, float eps, enum dtype act,
	      cudaStream_t s);

/* out[n][ffn] = silu(gu[:, :ffn]) * gu[:, ffn:]; interleaved: gu's rows come from an interleaved w13
 * (awq_repack_tiled, gate_up): per 16, 8 of gate then the same 8 of up (ffn % 8 == 0) */
int k_swiglu(void *out, const void *gu, int n, int ffn, bool interleaved, enum dtype act, cudaStream_t s);

/* y[n][N] = x[n][K] . W[N][K]^T (+ bias[N], float), W in act, n in 1..8, K % 8 == 0.
 * y_f32: y is float (logits) instead of act. */
int k_gemv(void *y, const void *x, const void *w, const float *bias, int n, int N, int K, enum dtype act,
	   bool y_f32, cudaStream_t s);
/* the MLP's w13 and SwiGLU in one: y[n][N/2] = silu(x.W[0:N/2]^T + b) * (x.W[N/2:N]^T + b), n in 1..8 */
int k_gemv_swiglu(void *y, const void *x, const void *w, const float *bias, int n, int N, int K, enum dtype act,
		  cudaStream_t s);
bool k_gemv_supported(int n, int K);
/* the kernels launched after this prefer the largest shared-memory carveout when the decode attention's CTA
 * needs more than 100 KB (cuda/fill.cu) */
void k_carveout_need(size_t attn_cta_smem);
#ifdef LMTERM_TRACE
void k_trace_start(void); /* measurement builds (cuda/pdl.cuh): the kernels' wait times into $LMTERM_TRACE */
void k_trace_dump(void);
#endif

/* y[:, c] += bias[c] for a row-major y[n][N] of act */
int k_add_bias(void *y, const float *bias, int n, int N, enum dtype act, cudaStream_t s);

/* W4A16 (AWQ, repacked at load). Two layouts; which one a weight has follows from its shape and group
 * (awq_tiled_layout), so the launchers below take N to tell:
 * - tiled (N % 16 == 0, K % 64 == 0, group 64 or 128): mma fragments of 16-row tiles, see
 *   cuda/awq_gemm.cu; sz half2 [N/16][K/group][8][2] = (scale, zero). Repacked by awq_repack_tiled.
 * - row (anything else): qw uint32 [N][K/8], nibble i of a word holds k = 8c + order[i],
 *   order = {0,2,4,6,1,3,5,7} (so a 0x000f000f mask pulls the pair (2j, 2j+1)); sz half2 [N][K/group]
 *   = (scale, zero). Repacked by awq_repack.
 * w = (q - zero) * scale. LMTERM_AWQ_LAYOUT=row forces the row layout (read once per process). */
bool awq_tiled_layout(int N, int K, int group);
/* decode: y[n][N] = x[n][K] . W^T (+ bias), n in 1..8 (see k_awq_gemv_supported) */
int k_awq_gemv(void *y, const void *x, const uint32_t *qw, const void *sz, const float *bias, int n, int N,
	       int K, int group, enum dtype act, cudaStream_t s);
bool k_awq_gemv_supported(int n, int N, int K, int group);
/* the decode step's norms folded into the tiled GEMV (backend.h, matmul_residual and norm_matmul), n in 1..8:
 * residual: x += a . W^T (+ bias) rounded as matmul then add_rmsnorm would, xw = x * nw, part[n][N/16] = the
 *   sums of x^2 per 16 rows;
 * norm: y = rsqrt(sum(part[b]) / K + eps) (xw . W^T) (+ bias); with swiglu, W's rows interleaved by
 *   awq_repack_tiled(gate_up) and y[n][N/2] = silu(gate) * up of that. */
bool k_awq_fold_supported(int n, int N, int K, int group);
int k_awq_gemv_residual(void *x, void *xw, float *part, const void *a, const uint32_t *qw, const void *sz,
			const float *bias, const float *nw, int n, int N, int K, int group, enum dtype act,
			cudaStream_t s);
int k_awq_gemv_norm(void *y, const void *xw, const float *part, float eps, bool swiglu, const uint32_t *qw,
		    const void *sz, const float *bias, int n, int N, int K, int group, enum dtype act, cudaStream_t s);
/* dequantize rows [r0, r0 + rows) of the N into dst[rows][K] of act (for prefill through cuBLAS);
 * tiled layout: r0 and rows multiples of 16 */
int k_awq_dequant(void *dst, const uint32_t *qw, const void *sz, int r0, int rows, int N, int K, int group,
		  enum dtype act, cudaStream_t s);
/* host: AutoAWQ gemm layout (qweight int32 [K][N/8], qzeros int32 [K/g][N/8], scales fp16 [K/g][N])
 * -> the row layout, or the tiled one (same sizes: N K / 2 bytes of codes, N K / g half2) */
void awq_repack(uint32_t *qw, uint16_t *sz, const int32_t *qweight, const int32_t *qzeros,
		const uint16_t *scales, int N, int K, int group);
/* gate_up (w13: rows gate, then up): tile rt holds gate rows 8 rt .. 8 rt + 7, then the same rows of up, so that
 * a tile's GEMV epilogue has both halves of its SwiGLU (k_awq_gemv_norm with swiglu; other GEMVs then give
 * rows in that order: k_swiglu's interleaved) */
void awq_repack_tiled(uint32_t *qw, uint16_t *sz, const int32_t *qweight, const int32_t *qzeros,
		      const uint16_t *scales, int N, int K, int group, bool gate_up);

/* The step state advanced on the device by the argmax that ends a chained decode step, so that the next step
 * (the next position, the same block table and frequencies) needs no copy from the host: state [pos0, chain,
 * slot], inv [inv_freq nf][cos nf][sin nf] as the backend's arena holds them; state NULL: none */
typedef struct k_step_adv {
	int32_t *state;
	float *inv;
	int nf, slots;
} k_step_adv;
/* *out = first index of the largest of v[n] (float, as torch.argmax); the same into out2[*slot] (out2[0] with
 * slot NULL) unless out2 is NULL (mapped host memory: the id for the host without a copy in the stream; slot
 * on the device, so that a graph writes where the step says); then the state advanced (adv) */
int k_argmax(int32_t *out, int32_t *out2, const int32_t *slot, k_step_adv adv, const float *v, int n, cudaStream_t s);

/* sampling on the device with src/sampler.c's semantics (cuda/sample.cu) */
typedef struct k_sample_params {
	float temperature, inv_t; /* inv_t = 1.0f / temperature, as the host computes it */
	float top_p, min_p, rep;
	int top_k;
	int greedy;               /* temperature <= 0 or top_k == 1: the argmax after the penalty */
	double u;                 /* the host sampler's uniform in [0, 1) */
	int sort_few;             /* finish by sorting when at most 2048 candidates are left after top-k */
} k_sample_params;
size_t k_sample_ws_bytes(void);
/* k_argmax over many blocks; ws of k_sample_ws_bytes(), zeroed once when allocated */
int k_argmax_multi(int32_t *out, int32_t *out2, const int32_t *slot, k_step_adv adv, const float *v, int n, void *ws,
		   cudaStream_t s);
/* the blocks k_sample may run as one cooperative grid here (1 = no cooperative launch) */
int k_sample_max_blocks(void);
/* *out = the token; logits[n] (float) get the repetition penalty in place; hist[n_hist] device ids;
 * seen[n] stamps (ids already penalized this call: == stamp); ws of k_sample_ws_bytes() */
int k_sample(int32_t *out, float *logits, int n, const k_sample_params *p, const int32_t *hist, int n_hist,
	     uint32_t *seen, uint32_t stamp, void *ws, int blocks, cudaStream_t s);

/* programmatic dependent launch of the decode kernels (cuda/pdl.cuh): whether launches of a kernel family
 * (the PDL_FAMILY of its file: "gemv", "awq", "norm", "attn", "rope", "swiglu", "embed") carry the attribute */
bool k_pdl_for(const char *family);
/* the PDL default when LMTERM_PDL is unset: on after a 4-bit weight has been loaded */
void k_pdl_prefer(bool on);

/* fill: dst[n] (act, or float when f32) = scale * uniform[-1, 1) from a hash of (seed, i) */
int k_fill_random(void *dst, size_t n, float scale, uint64_t seed, enum dtype dt, cudaStream_t s);
/* bytes: uniform random bytes */
int k_fill_bytes(void *dst, size_t n, uint64_t seed, cudaStream_t s);
/* dst[n] (act dtype) = src[n] float */
int k_f32_to_act(void *dst, const float *src, size_t n, enum dtype act, cudaStream_t s);
/* half2 (scale, zero) pairs: all = (scale, zero) */
int k_fill_half2(void *dst, size_t n, float a, float b, cudaStream_t s);

/* measurement (tests/bench_handoff, cuda/handoff.cu): microseconds per stage of a graph of `steps` stages that
 * hand one word per block to the next stage, the best of `reps` replays */
enum { HANDOFF_PLAIN, HANDOFF_PDL, HANDOFF_FLAG, HANDOFF_BARRIER };
int k_handoff_bench(int mode, int blocks, int steps, int reps, float *us_per_stage);

#ifdef __cplusplus
}
#endif
#endif
