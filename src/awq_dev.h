/* awq_dev.h: where the arithmetic of AWQ calibration runs.
 *
 * src/awq.c (the algorithm) is written once against this small table of ops; two implementations fill it:
 * - cpu: host memory, the float32 kernels of src/awq_ops.c and the quantizer of src/awq.c (the reference);
 * - cuda (cuda/awq_calib.cu, built only when configure found CUDA): device memory, cuBLAS for the linears
 *   and the attention's two products, kernels for the rest.
 * Buffers are plain pointers into the implementation's memory (host or device): awq.c offsets them but never
 * reads or writes through them; data crosses only through upload/download/copy and the few ops that return
 * host results (mse, layer_err, quantize). Ops may run asynchronously on a device; download, mse, layer_err,
 * quantize and sync wait. A device error is kept and reported (lm_err) by the next sync(). */
#ifndef LMTERM_AWQ_DEV_H
#define LMTERM_AWQ_DEV_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct awq_dev {
	const char *name;        /* "cpu", "cuda" */
	bool host;               /* buffers are host memory */
	int chunk_tokens;        /* tokens per forward chunk the implementation prefers (0: --batch-size windows) */
	bool tf32;               /* cuda: linears as TF32 tensor-core GEMMs (else exact fp32 SGEMM) */
	int n_threads;           /* cpu */
	void *impl;

	void *(*alloc)(struct awq_dev *d, size_t bytes); /* NULL with a message when out of memory */
	void (*free)(struct awq_dev *d, void *p);        /* p may be NULL */
	void (*upload)(struct awq_dev *d, void *dst, const void *src, size_t bytes);   /* src on the host */
	void (*download)(struct awq_dev *d, void *dst, const void *src, size_t bytes); /* dst on the host */
	void (*copy)(struct awq_dev *d, void *dst, const void *src, size_t bytes);
	void (*zero)(struct awq_dev *d, void *dst, size_t bytes);
	/* dst[n] = float(src[n]); src on the host (e.g. inside a safetensors mapping), F32/F16/BF16 */
	void (*load)(struct awq_dev *d, float *dst, const void *src, enum dtype dt, size_t n);

	/* the forward pieces, as in awq_ops.h */
	void (*matmul)(struct awq_dev *d, float *y, const float *x, const float *w, const float *bias, int m, int n,
		       int k);
	void (*rmsnorm)(struct awq_dev *d, float *h, const float *x, const float *w, int m, int dim, float eps);
	void (*rope)(struct awq_dev *d, float *x, int m, int n_heads, int hd, int seqlen, const float *inv_freq);
	void (*attention)(struct awq_dev *d, float *out, const float *q, const float *k, const float *v, int m,
			  int seqlen, int nh, int nkv, int hd);
	void (*swiglu)(struct awq_dev *d, float *out, const float *g, const float *u, size_t n);
	void (*add)(struct awq_dev *d, float *x, const float *y, size_t n); /* x += y */

	/* statistics and errors */
	void (*absmean_acc)(struct awq_dev *d, double *acc, const float *x, int m, int dim); /* acc[j] += sum_i |x[i][j]| */
	double (*mse)(struct awq_dev *d, const float *a, const float *b, size_t n);
	/* num = sum (yq - y)^2, den = sum (y - x)^2 with y = x + ao + mo (in double) */
	void (*layer_err)(struct awq_dev *d, const float *x, const float *ao, const float *mo, const float *yq,
			  size_t n, double *num, double *den);

	/* scaling and quantization; s is a buffer of the implementation */
	void (*scale_cols)(struct awq_dev *d, float *w, int out, int in, const float *s);             /* w[o][k] *= s[k] */
	void (*unscale_rows)(struct awq_dev *d, float *w, float *b, int out, int in, const float *s); /* w[o][k] /= s[o] */
	void (*div)(struct awq_dev *d, float *x, const float *s, int n);                               /* x[i] /= s[i] */
	/* dst [out][in] = Q(w * s) / s, Q = round-to-nearest per group of the input (awq.c quant_group) */
	void (*fake_quant)(struct awq_dev *d, float *dst, const float *w, const float *s, int out, int in, int group);
	/* Quantize w [out][in] into the gemm layout (host buffers qweight [in][out/8], qzeros [in/g][out/8],
	 * scales16 [in/g][out]); deq (a buffer, may be NULL) gets the dequantized weights. */
	void (*quantize)(struct awq_dev *d, const float *w, int out, int in, int group, int32_t *qweight,
			 int32_t *qzeros, uint16_t *scales16, float *deq);

	int (*sync)(struct awq_dev *d);   /* wait for everything queued; LM_ERR with a message on a device error */
	void (*destroy)(struct awq_dev *d);
};

/* The cpu implementation (src/awq.c); n_threads >= 1. */
int awq_dev_cpu_create(struct awq_dev **out, int n_threads);

#if HAVE_CUDA
/* The cuda implementation (cuda/awq_calib.cu) on the current device; LM_ERR with a message when no GPU is
 * usable. tf32: the linears as TF32 tensor-core GEMMs. */
int awq_dev_cuda_create(struct awq_dev **out, bool tf32);
#endif

void awq_dev_destroy(struct awq_dev *d);

#ifdef __cplusplus
}
#endif
#endif
