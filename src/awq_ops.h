/* awq_ops.h: the float32 CPU arithmetic that AWQ calibration needs (one decoder layer at a time):
 * a multithreaded Y = X W^T, RMSNorm, RoPE (rotate-half, as the Hugging Face checkpoints expect), causal
 * attention with grouped KV heads, SwiGLU. Internal to the quantizer (src/awq.c). */
#ifndef LMTERM_AWQ_OPS_H
#define LMTERM_AWQ_OPS_H

#include "common.h"

/* y[m][n] = x[m][k] . w[n][k]^T (+ bias[n] if non-NULL) */
void awq_matmul(int n_threads, float *y, const float *x, const float *w, const float *bias, int m, int n, int k);

/* h[m][d] = x / rms(x) * w */
void awq_rmsnorm(float *h, const float *x, const float *w, int m, int d, float eps);

/* Rotate-half RoPE in place on x[m][n_heads][hd], token t of each sequence of seqlen at position t % seqlen.
 * LM_ERR (no message) when its scratch cannot be allocated, as for awq_attention. */
int awq_rope(float *x, int m, int n_heads, int hd, int seqlen, const float *inv_freq);

/* out[m][nh*hd] = causal attention within each sequence of seqlen tokens; q [m][nh*hd], k/v [m][nkv*hd] */
int awq_attention(int n_threads, float *out, const float *q, const float *k, const float *v, int m, int seqlen,
		  int nh, int nkv, int hd);

/* out[m][f] = silu(g) * u */
void awq_swiglu(float *out, const float *g, const float *u, size_t n);

/* acc[d] += sum over rows of |x[m][d]| (float64 accumulators) */
void awq_absmean_acc(double *acc, const float *x, int m, int d);

#endif
