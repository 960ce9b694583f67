// awq_calib.cu: the cuda implementation of src/awq_dev.h, AWQ calibration on the GPU.
//
// One stream; all buffers float32 in device memory from the stream-ordered allocator (the pool keeps what a
// layer freed for the next one). The linears and the attention's two products are cuBLAS GEMMs: exact fp32
// (CUBLAS_COMPUTE_32F) by default, TF32 tensor cores when asked (LMTERM_AWQ_TF32). Attention per head,
// batched over the windows of a chunk: S = Q K^T, a masked softmax in place (the causal upper triangle set
// to 0, so the full product P V is exact), O = P V written straight into the head's columns.
// The quantizer is the cpu one (src/awq.c quant_group) written for a warp per group, with the same float
// operations in the same order (scale rounded to fp16 first, rintf = nearbyintf): codes agree with the
// cpu's for the same input. Sums (statistics, errors) are deterministic: fixed partial sums in double,
// added in a fixed order.
// Errors: the first CUDA/cuBLAS error is kept and reported by sync(); nothing exits.
#include "config.h"
#include "awq_dev.h"
#include "i18n.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <new>

namespace {

struct cimpl {
	cudaStream_t s = nullptr;
	cublasHandle_t blas = nullptr;
	cudaError_t err = cudaSuccess;      // the first error
	const char *err_what = nullptr;
	cublasStatus_t berr = CUBLAS_STATUS_SUCCESS;
	bool tf32 = false;
	// scratch, grown on demand
	float *S = nullptr;                 // attention scores
	size_t S_cap = 0;                   // floats
	double *red = nullptr;              // reduction partials
	size_t red_cap = 0;                 // doubles
	void *stage = nullptr;              // raw half/bf16 uploads; quantizer codes
	size_t stage_cap = 0;               // bytes
	void *stage2 = nullptr;             // quantizer: packed outputs
	size_t stage2_cap = 0;
};

cimpl *C(struct awq_dev *d) { return (cimpl *)d->impl; }

void ck(cimpl *c, cudaError_t e, const char *what)
{
	if (e != cudaSuccess && c->err == cudaSuccess && c->berr == CUBLAS_STATUS_SUCCESS) {
		c->err = e;
		c->err_what = what;
	}
}
void ckb(cimpl *c, cublasStatus_t e, const char *what)
{
	if (e != CUBLAS_STATUS_SUCCESS && c->err == cudaSuccess && c->berr == CUBLAS_STATUS_SUCCESS) {
		c->berr = e;
		c->err_what = what;
	}
}
#define LAUNCHED(c, what) ck((c), cudaGetLastError(), (what))

unsigned blocks_for(size_t n, unsigned per = 256)
{
	size_t b = (n + per - 1) / per;
	return (unsigned)(b > 65535u * 16 ? 65535u * 16 : b);
}

// a scratch buffer of at least bytes (the old contents are not kept)
bool grow(struct awq_dev *d, void **p, size_t *cap, size_t bytes)
{
	cimpl *c = C(d);
	if (*cap >= bytes) return true;
	if (*p) cudaFreeAsync(*p, c->s);
	*p = nullptr;
	*cap = 0;
	cudaError_t e = cudaMallocAsync(p, bytes, c->s);
	if (e != cudaSuccess) {
		cudaGetLastError();
		ck(c, e, "scratch");
		*p = nullptr;
		return false;
	}
	*cap = bytes;
	return true;
}

// ---------------------------------------------------------------------------------------------- kernels

__global__ void k_load_half(float *dst, const __half *src, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		dst[i] = __half2float(src[i]);
}
__global__ void k_load_bf16(float *dst, const __nv_bfloat16 *src, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		dst[i] = __bfloat162float(src[i]);
}

__global__ void k_bias(float *y, const float *b, size_t m, int n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < m * n; i += (size_t)gridDim.x * blockDim.x)
		y[i] += b[i % n];
}

// block-wide sum of a double (blockDim.x a multiple of 32, at most 1024); every thread gets the total
__device__ double block_sum(double v)
{
	__shared__ double sh[32];
	for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
	int w = threadIdx.x / 32, l = threadIdx.x % 32;
	__syncthreads();
	if (l == 0) sh[w] = v;
	__syncthreads();
	int nw = blockDim.x / 32;
	v = l < nw ? sh[l] : 0;
	for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

// h = x / rms(x) * w, one block per row; the sum of squares in double as on the cpu
__global__ void k_rmsnorm(float *h, const float *x, const float *w, int dim, float eps)
{
	const float *xr = x + (size_t)blockIdx.x * dim;
	float *hr = h + (size_t)blockIdx.x * dim;
	double ss = 0;
	for (int j = threadIdx.x; j < dim; j += blockDim.x) ss += (double)xr[j] * xr[j];
	ss = block_sum(ss);
	float r = 1.0f / sqrtf((float)(ss / dim) + eps);
	for (int j = threadIdx.x; j < dim; j += blockDim.x) hr[j] = xr[j] * r * w[j];
}

// rotate-half RoPE in place; one thread per (token, head, j < hd/2)
__global__ void k_rope(float *x, size_t m, int n_heads, int hd, int seqlen, const float *inv_freq)
{
	int half = hd / 2;
	size_t n = m * n_heads * half;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		int j = (int)(i % half);
		size_t th = i / half;            // token * n_heads + head
		int pos = (int)((th / n_heads) % seqlen);
		float a = pos * inv_freq[j];
		float c = cosf(a), s = sinf(a);
		float *v = x + th * hd;
		float p = v[j], q = v[j + half];
		v[j] = p * c - q * s;
		v[j + half] = q * c + p * s;
	}
}

// causal softmax in place on rows of T scores (row t of each window keeps columns 0..t, the rest become 0)
__global__ void k_softmax_causal(float *S, int T, float scale)
{
	size_t row = blockIdx.x;
	int t = (int)(row % T);
	float *p = S + row * T;
	__shared__ float sh[32];
	float mx = -INFINITY;
	for (int j = threadIdx.x; j <= t; j += blockDim.x) mx = fmaxf(mx, p[j] * scale);
	for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
	int w = threadIdx.x / 32, l = threadIdx.x % 32, nw = blockDim.x / 32;
	if (l == 0) sh[w] = mx;
	__syncthreads();
	mx = l < nw ? sh[l] : -INFINITY;
	for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
	__syncthreads();
	float sum = 0;
	for (int j = threadIdx.x; j <= t; j += blockDim.x) {
		float e = expf(p[j] * scale - mx);
		p[j] = e;
		sum += e;
	}
	for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
	if (l == 0) sh[w] = sum;
	__syncthreads();
	sum = l < nw ? sh[l] : 0;
	for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
	float inv = 1.0f / sum;
	for (int j = threadIdx.x; j < T; j += blockDim.x) p[j] = j <= t ? p[j] * inv : 0.0f;
}

__global__ void k_swiglu(float *out, const float *g, const float *u, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

__global__ void k_add(float *x, const float *y, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		x[i] += y[i];
}

// column sums of |x| over a slice of rows: part[slice][j]; then acc[j] += sum over slices in order
__global__ void k_absmean_part(double *part, const float *x, int m, int dim, int rows_per)
{
	int j = blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= dim) return;
	int r0 = blockIdx.y * rows_per, r1 = min(m, r0 + rows_per);
	double s = 0;
	for (int r = r0; r < r1; r++) s += fabsf(x[(size_t)r * dim + j]);
	part[(size_t)blockIdx.y * dim + j] = s;
}
__global__ void k_absmean_fold(double *acc, const double *part, int slices, int dim)
{
	int j = blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= dim) return;
	double s = 0;
	for (int i = 0; i < slices; i++) s += part[(size_t)i * dim + j];
	acc[j] += s;
}

// sums for mse and layer_err: per block partials (fixed grid), then one block adds them in order
enum { RED_BLOCKS = 1024, RED_THREADS = 256 };
__global__ void k_sqdiff_part(double *part, const float *a, const float *b, size_t n)
{
	double s = 0;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		double d = (double)a[i] - b[i];
		s += d * d;
	}
	s = block_sum(s);
	if (threadIdx.x == 0) part[blockIdx.x] = s;
}
__global__ void k_layer_err_part(double *part, const float *x, const float *ao, const float *mo, const float *yq,
				 size_t n)
{
	double num = 0, den = 0;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		double y = (double)x[i] + ao[i] + mo[i], e = yq[i] - y, dd = y - x[i];
		num += e * e;
		den += dd * dd;
	}
	num = block_sum(num);
	den = block_sum(den);
	if (threadIdx.x == 0) {
		part[blockIdx.x] = num;
		part[RED_BLOCKS + blockIdx.x] = den;
	}
}
// out[k] = sum of part[k * n_part .. + n_part) for k < n_out, one block
__global__ void k_fold(double *out, const double *part, int n_part, int n_out)
{
	for (int k = 0; k < n_out; k++) {
		double s = 0;
		for (int i = threadIdx.x; i < n_part; i += blockDim.x) s += part[(size_t)k * n_part + i];
		s = block_sum(s);
		if (threadIdx.x == 0) out[k] = s;
		__syncthreads();
	}
}

__global__ void k_scale_cols(float *w, size_t out, int in, const float *s)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < out * in; i += (size_t)gridDim.x * blockDim.x)
		w[i] *= s[i % in];
}
__global__ void k_unscale_rows(float *w, float *b, size_t out, int in, const float *s)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < out * in; i += (size_t)gridDim.x * blockDim.x) {
		size_t o = i / in;
		w[i] /= s[o];
		if (b && i % in == 0) b[o] /= s[o];
	}
}
__global__ void k_div(float *x, const float *s, int n)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) x[i] /= s[i];
}

// One warp per group of `group` weights of row o: src values v = w * s (s == NULL: 1), then awq.c's
// quant_group with no clipping: scale = max(max - min, 1e-5) / 15 rounded to fp16, zero, codes, deq.
// fq: dst = deq / s (fake quant); else codes/zeros/scales16 (and deq when non-NULL).
__global__ void k_quant_groups(const float *w, const float *s, int out, int in, int group, float *deq,
			       uint8_t *codes, uint8_t *zeros, uint16_t *scales16, bool fq)
{
	int ng = in / group;
	size_t gid = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
	int lane = threadIdx.x % 32;
	if (gid >= (size_t)out * ng) return;
	int o = (int)(gid / ng), gi = (int)(gid % ng);
	size_t base = (size_t)o * in + (size_t)gi * group;
	float mx = -INFINITY, mn = INFINITY;
	for (int i = lane; i < group; i += 32) {
		int k = gi * group + i;
		float v = s ? w[base + i] * s[k] : w[base + i];
		mx = fmaxf(mx, v);
		mn = fminf(mn, v);
	}
	for (int sh = 16; sh > 0; sh >>= 1) {
		mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, sh));
		mn = fminf(mn, __shfl_xor_sync(0xffffffffu, mn, sh));
	}
	float sc = fmaxf(mx - mn, 1e-5f) / 15.0f;
	__half h = __float2half_rn(sc);
	sc = __half2float(h);
	float z = fminf(fmaxf(-rintf(mn / sc), 0.0f), 15.0f);
	for (int i = lane; i < group; i += 32) {
		int k = gi * group + i;
		float v = s ? w[base + i] * s[k] : w[base + i];
		float q = fminf(fmaxf(rintf(v / sc) + z, 0.0f), 15.0f);
		float dq = (q - z) * sc;
		if (fq) {
			deq[base + i] = dq / s[k];
		} else {
			codes[base + i] = (uint8_t)q;
			if (deq) deq[base + i] = dq;
		}
	}
	if (!fq && lane == 0) {
		zeros[(size_t)o * ng + gi] = (uint8_t)z;
		scales16[(size_t)gi * out + o] = __half_as_ushort(h);
	}
}

// the gemm packing (awq.c awq_pack): dst [rows][out/8] from src [out][rows] nibbles, column 8c + order[i]
__global__ void k_pack(int32_t *dst, const uint8_t *src, int out, int rows)
{
	const int order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };
	int oc = out / 8;
	size_t n = (size_t)rows * oc;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		int k = (int)(i % rows), c = (int)(i / rows);
		uint32_t v = 0;
#pragma unroll
		for (int j = 0; j < 8; j++) v |= (uint32_t)(src[(size_t)(8 * c + order[j]) * rows + k] & 15) << (4 * j);
		dst[(size_t)k * oc + c] = (int32_t)v;
	}
}

// ---------------------------------------------------------------------------------------------- the ops

void *c_alloc(struct awq_dev *d, size_t bytes)
{
	cimpl *c = C(d);
	void *p = nullptr;
	cudaError_t e = cudaMallocAsync(&p, bytes ? bytes : 1, c->s);
	if (e != cudaSuccess) {
		cudaGetLastError();
		size_t fr = 0, tot = 0;
		cudaMemGetInfo(&fr, &tot);
		lm_err(_("CUDA: cannot allocate %.1f MiB of device memory (%.1f MiB free of %.1f MiB): %s"),
		       bytes / 1048576.0, fr / 1048576.0, tot / 1048576.0, cudaGetErrorString(e));
		return nullptr;
	}
	return p;
}
void c_free(struct awq_dev *d, void *p)
{
	if (p) ck(C(d), cudaFreeAsync(p, C(d)->s), "free");
}
void c_upload(struct awq_dev *d, void *dst, const void *src, size_t bytes)
{
	ck(C(d), cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, C(d)->s), "upload");
}
void c_download(struct awq_dev *d, void *dst, const void *src, size_t bytes)
{
	ck(C(d), cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, C(d)->s), "download");
	ck(C(d), cudaStreamSynchronize(C(d)->s), "download");
}
void c_copy(struct awq_dev *d, void *dst, const void *src, size_t bytes)
{
	ck(C(d), cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, C(d)->s), "copy");
}
void c_zero(struct awq_dev *d, void *dst, size_t bytes)
{
	ck(C(d), cudaMemsetAsync(dst, 0, bytes, C(d)->s), "memset");
}

void c_load(struct awq_dev *d, float *dst, const void *src, enum dtype dt, size_t n)
{
	cimpl *c = C(d);
	if (dt == DT_F32) { c_upload(d, dst, src, n * sizeof(float)); return; }
	if (dt != DT_F16 && dt != DT_BF16) { ck(c, cudaErrorInvalidValue, "load: dtype"); return; }
	// in pieces of at most 64 MiB through the staging buffer
	const size_t piece = 32u << 20;
	if (!grow(d, &c->stage, &c->stage_cap, MIN(n, piece) * 2)) return;
	for (size_t i = 0; i < n; i += piece) {
		size_t k = MIN(piece, n - i);
		c_upload(d, c->stage, (const uint16_t *)src + i, k * 2);
		if (dt == DT_F16) k_load_half<<<blocks_for(k), 256, 0, c->s>>>(dst + i, (const __half *)c->stage, k);
		else k_load_bf16<<<blocks_for(k), 256, 0, c->s>>>(dst + i, (const __nv_bfloat16 *)c->stage, k);
		LAUNCHED(c, "load");
	}
}

cublasComputeType_t compute(cimpl *c) { return c->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F; }

// y[m][n] = x[m][k] w[n][k]^T (+ bias): column-major y^T = w x^T
void c_matmul(struct awq_dev *d, float *y, const float *x, const float *w, const float *bias, int m, int n, int k)
{
	cimpl *c = C(d);
	const float one = 1, zero = 0;
	ckb(c, cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w, CUDA_R_32F, k, x, CUDA_R_32F, k, &zero, y,
			    CUDA_R_32F, n, compute(c), CUBLAS_GEMM_DEFAULT),
	    "matmul");
	if (bias) {
		k_bias<<<blocks_for((size_t)m * n), 256, 0, c->s>>>(y, bias, (size_t)m, n);
		LAUNCHED(c, "bias");
	}
}

void c_rmsnorm(struct awq_dev *d, float *h, const float *x, const float *w, int m, int dim, float eps)
{
	k_rmsnorm<<<m, 256, 0, C(d)->s>>>(h, x, w, dim, eps);
	LAUNCHED(C(d), "rmsnorm");
}

void c_rope(struct awq_dev *d, float *x, int m, int n_heads, int hd, int seqlen, const float *inv_freq)
{
	k_rope<<<blocks_for((size_t)m * n_heads * (hd / 2)), 256, 0, C(d)->s>>>(x, (size_t)m, n_heads, hd, seqlen, inv_freq);
	LAUNCHED(C(d), "rope");
}

// causal attention per window and head: S = Q K^T (batched over windows), masked softmax, O = P V
void c_attention(struct awq_dev *d, float *out, const float *q, const float *k, const float *v, int m, int T,
		 int nh, int nkv, int hd)
{
	cimpl *c = C(d);
	const int W = m / T, qw = nh * hd, kw = nkv * hd, g = nh / nkv;
	const size_t TT = (size_t)T * T;
	// windows per batched product: the scores of at most 256 MiB at a time
	int wb = (int)MAX((size_t)1, MIN((size_t)W, ((size_t)64 << 20) / TT));
	if (!grow(d, (void **)&c->S, &c->S_cap, wb * TT * sizeof(float))) return;
	const float one = 1, zero = 0, scale = 1.0f / sqrtf((float)hd);
	for (int w0 = 0; w0 < W; w0 += wb) {
		int nb = MIN(wb, W - w0);
		for (int h = 0; h < nh; h++) {
			int kvh = h / g;
			const float *qh = q + (size_t)w0 * T * qw + (size_t)h * hd;
			const float *kh = k + (size_t)w0 * T * kw + (size_t)kvh * hd;
			const float *vh = v + (size_t)w0 * T * kw + (size_t)kvh * hd;
			float *oh = out + (size_t)w0 * T * qw + (size_t)h * hd;
			ckb(c, cublasGemmStridedBatchedEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, T, T, hd, &one, kh, CUDA_R_32F, kw,
							  (long long)T * kw, qh, CUDA_R_32F, qw, (long long)T * qw, &zero, c->S,
							  CUDA_R_32F, T, (long long)TT, nb, compute(c), CUBLAS_GEMM_DEFAULT),
			    "attention QK");
			k_softmax_causal<<<(unsigned)(nb * (size_t)T), 256, 0, c->s>>>(c->S, T, scale);
			LAUNCHED(c, "softmax");
			ckb(c, cublasGemmStridedBatchedEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, hd, T, T, &one, vh, CUDA_R_32F, kw,
							  (long long)T * kw, c->S, CUDA_R_32F, T, (long long)TT, &zero, oh,
							  CUDA_R_32F, qw, (long long)T * qw, nb, compute(c), CUBLAS_GEMM_DEFAULT),
			    "attention PV");
		}
	}
}

void c_swiglu(struct awq_dev *d, float *out, const float *g, const float *u, size_t n)
{
	k_swiglu<<<blocks_for(n), 256, 0, C(d)->s>>>(out, g, u, n);
	LAUNCHED(C(d), "swiglu");
}

void c_add(struct awq_dev *d, float *x, const float *y, size_t n)
{
	k_add<<<blocks_for(n), 256, 0, C(d)->s>>>(x, y, n);
	LAUNCHED(C(d), "add");
}

void c_absmean_acc(struct awq_dev *d, double *acc, const float *x, int m, int dim)
{
	cimpl *c = C(d);
	const int rows_per = 128, slices = (m + rows_per - 1) / rows_per;
	if (!grow(d, (void **)&c->red, &c->red_cap, (size_t)slices * dim * sizeof(double))) return;
	dim3 grid((dim + 127) / 128, slices);
	k_absmean_part<<<grid, 128, 0, c->s>>>(c->red, x, m, dim, rows_per);
	k_absmean_fold<<<(dim + 127) / 128, 128, 0, c->s>>>(acc, c->red, slices, dim);
	LAUNCHED(c, "absmean");
}

// the two-stage sums: partials in red[0 .. n_out*RED_BLOCKS), folded into red[n_out*RED_BLOCKS ..]
bool red_ready(struct awq_dev *d, int n_out)
{
	cimpl *c = C(d);
	size_t need = (size_t)n_out * (RED_BLOCKS + 1) * sizeof(double);
	// the absmean partials may have made it bigger; never smaller than what the sums need
	return grow(d, (void **)&c->red, &c->red_cap, MAX(need, c->red_cap));
}

double c_mse(struct awq_dev *d, const float *a, const float *b, size_t n)
{
	cimpl *c = C(d);
	double r = NAN;
	if (!red_ready(d, 1)) return r;
	k_sqdiff_part<<<RED_BLOCKS, RED_THREADS, 0, c->s>>>(c->red, a, b, n);
	k_fold<<<1, 1024, 0, c->s>>>(c->red + RED_BLOCKS, c->red, RED_BLOCKS, 1);
	LAUNCHED(c, "mse");
	c_download(d, &r, c->red + RED_BLOCKS, sizeof r);
	return r / n;
}

void c_layer_err(struct awq_dev *d, const float *x, const float *ao, const float *mo, const float *yq, size_t n,
		 double *num, double *den)
{
	cimpl *c = C(d);
	double r[2] = { NAN, NAN };
	if (red_ready(d, 2)) {
		k_layer_err_part<<<RED_BLOCKS, RED_THREADS, 0, c->s>>>(c->red, x, ao, mo, yq, n);
		k_fold<<<1, 1024, 0, c->s>>>(c->red + 2 * RED_BLOCKS, c->red, RED_BLOCKS, 2);
		LAUNCHED(c, "layer_err");
		c_download(d, r, c->red + 2 * RED_BLOCKS, sizeof r);
	}
	*num = r[0];
	*den = r[1];
}

void c_scale_cols(struct awq_dev *d, float *w, int out, int in, const float *s)
{
	k_scale_cols<<<blocks_for((size_t)out * in), 256, 0, C(d)->s>>>(w, (size_t)out, in, s);
	LAUNCHED(C(d), "scale_cols");
}
void c_unscale_rows(struct awq_dev *d, float *w, float *b, int out, int in, const float *s)
{
	k_unscale_rows<<<blocks_for((size_t)out * in), 256, 0, C(d)->s>>>(w, b, (size_t)out, in, s);
	LAUNCHED(C(d), "unscale_rows");
}
void c_div(struct awq_dev *d, float *x, const float *s, int n)
{
	k_div<<<(n + 255) / 256, 256, 0, C(d)->s>>>(x, s, n);
	LAUNCHED(C(d), "div");
}

unsigned group_blocks(int out, int in, int group)
{
	size_t warps = (size_t)out * (in / group);
	return (unsigned)((warps + 7) / 8); // 8 warps of 256 threads
}

void c_fake_quant(struct awq_dev *d, float *dst, const float *w, const float *s, int out, int in, int group)
{
	k_quant_groups<<<group_blocks(out, in, group), 256, 0, C(d)->s>>>(w, s, out, in, group, dst, nullptr, nullptr,
									  nullptr, true);
	LAUNCHED(C(d), "fake_quant");
}

void c_quantize(struct awq_dev *d, const float *w, int out, int in, int group, int32_t *qweight, int32_t *qzeros,
		uint16_t *scales16, float *deq)
{
	cimpl *c = C(d);
	int ng = in / group;
	size_t n_codes = (size_t)out * in, n_zeros = (size_t)out * ng;
	size_t b_qw = (size_t)in * (out / 8) * 4, b_qz = (size_t)ng * (out / 8) * 4, b_sc = (size_t)ng * out * 2;
	if (!grow(d, &c->stage, &c->stage_cap, n_codes + n_zeros)) return;
	if (!grow(d, &c->stage2, &c->stage2_cap, b_qw + b_qz + b_sc)) return;
	uint8_t *codes = (uint8_t *)c->stage, *zeros = codes + n_codes;
	int32_t *qw = (int32_t *)c->stage2, *qz = (int32_t *)((char *)c->stage2 + b_qw);
	uint16_t *sc = (uint16_t *)((char *)c->stage2 + b_qw + b_qz);
	k_quant_groups<<<group_blocks(out, in, group), 256, 0, c->s>>>(w, nullptr, out, in, group, deq, codes, zeros, sc,
									false);
	k_pack<<<blocks_for((size_t)in * (out / 8)), 256, 0, c->s>>>(qw, codes, out, in);
	k_pack<<<blocks_for((size_t)ng * (out / 8)), 256, 0, c->s>>>(qz, zeros, out, ng);
	LAUNCHED(c, "quantize");
	ck(c, cudaMemcpyAsync(qweight, qw, b_qw, cudaMemcpyDeviceToHost, c->s), "quantize: download");
	ck(c, cudaMemcpyAsync(qzeros, qz, b_qz, cudaMemcpyDeviceToHost, c->s), "quantize: download");
	ck(c, cudaMemcpyAsync(scales16, sc, b_sc, cudaMemcpyDeviceToHost, c->s), "quantize: download");
	ck(c, cudaStreamSynchronize(c->s), "quantize");
}

int c_sync(struct awq_dev *d)
{
	cimpl *c = C(d);
	ck(c, cudaStreamSynchronize(c->s), "sync");
	if (c->err != cudaSuccess) {
		cudaError_t e = c->err;
		c->err = cudaSuccess;
		return lm_err(_("CUDA: %s: %s"), c->err_what, cudaGetErrorString(e));
	}
	if (c->berr != CUBLAS_STATUS_SUCCESS) {
		cublasStatus_t e = c->berr;
		c->berr = CUBLAS_STATUS_SUCCESS;
		return lm_err(_("CUDA: %s: %s"), c->err_what, cublasGetStatusString(e));
	}
	return LM_OK;
}

void c_destroy(struct awq_dev *d)
{
	cimpl *c = C(d);
	if (c) {
		if (c->s) {
			cudaStreamSynchronize(c->s);
			if (c->S) cudaFreeAsync(c->S, c->s);
			if (c->red) cudaFreeAsync(c->red, c->s);
			if (c->stage) cudaFreeAsync(c->stage, c->s);
			if (c->stage2) cudaFreeAsync(c->stage2, c->s);
			cudaStreamSynchronize(c->s);
		}
		if (c->blas) cublasDestroy(c->blas);
		if (c->s) cudaStreamDestroy(c->s);
		cudaGetLastError();
		delete c;
	}
	free(d);
}

} // namespace

extern "C" int awq_dev_cuda_create(struct awq_dev **out, bool tf32)
{
	int ndev = 0;
	cudaError_t e = cudaGetDeviceCount(&ndev);
	if (e != cudaSuccess || ndev <= 0) {
		cudaGetLastError();
		return lm_err(_("CUDA: no usable GPU (%s)"), e != cudaSuccess ? cudaGetErrorString(e) : "no devices");
	}
	struct awq_dev *d = (struct awq_dev *)calloc(1, sizeof *d);
	cimpl *c = new (std::nothrow) cimpl();
	if (!d || !c) {
		free(d);
		delete c;
		return lm_err(_("out of memory"));
	}
	*d = awq_dev{};
	d->name = "cuda";
	d->host = false;
	d->chunk_tokens = 16384;
	d->tf32 = tf32;
	d->n_threads = 1;
	d->impl = c;
	d->alloc = c_alloc;
	d->free = c_free;
	d->upload = c_upload;
	d->download = c_download;
	d->copy = c_copy;
	d->zero = c_zero;
	d->load = c_load;
	d->matmul = c_matmul;
	d->rmsnorm = c_rmsnorm;
	d->rope = c_rope;
	d->attention = c_attention;
	d->swiglu = c_swiglu;
	d->add = c_add;
	d->absmean_acc = c_absmean_acc;
	d->mse = c_mse;
	d->layer_err = c_layer_err;
	d->scale_cols = c_scale_cols;
	d->unscale_rows = c_unscale_rows;
	d->div = c_div;
	d->fake_quant = c_fake_quant;
	d->quantize = c_quantize;
	d->sync = c_sync;
	d->destroy = c_destroy;
	c->tf32 = tf32;
	if ((e = cudaStreamCreateWithFlags(&c->s, cudaStreamNonBlocking)) != cudaSuccess) {
		cudaGetLastError();
		c_destroy(d);
		return lm_err(_("CUDA: %s: %s"), "stream", cudaGetErrorString(e));
	}
	cublasStatus_t bs = cublasCreate(&c->blas);
	if (bs != CUBLAS_STATUS_SUCCESS || cublasSetStream(c->blas, c->s) != CUBLAS_STATUS_SUCCESS) {
		c_destroy(d);
		return lm_err(_("CUDA: %s: %s"), "cuBLAS", cublasGetStatusString(bs));
	}
	cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH); // the compute type of each call says fp32 or TF32
	// keep what the pool holds between layers (each layer frees and allocates the same sizes again)
	cudaMemPool_t pool;
	int dev = 0;
	cudaGetDevice(&dev);
	if (cudaDeviceGetDefaultMemPool(&pool, dev) == cudaSuccess) {
		uint64_t keep = UINT64_MAX;
		cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
	}
	cudaGetLastError();
	*out = d;
	return LM_OK;
}
