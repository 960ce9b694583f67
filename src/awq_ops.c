/* awq_ops.c: float32 CPU arithmetic for AWQ calibration (see awq_ops.h).
 * The matmul is a 4x4 register-blocked dot-product kernel on GCC vector types; on x86-64 it is also built
 * for Haswell (AVX2+FMA) and picked at run time, which is 3-4x faster than baseline SSE2. */
#include "config.h"
#include "awq_ops.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FAST_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FAST_CLONES
#endif

typedef float v8 __attribute__((vector_size(32)));

/* macros, not functions: a function taking or returning a 32-byte vector has a different ABI with AVX */
#define ld8(p) ({ v8 v_; memcpy(&v_, (p), sizeof v_); v_; })
#define hsum8(v) ({ v8 h_ = (v); (h_[0] + h_[4]) + (h_[1] + h_[5]) + (h_[2] + h_[6]) + (h_[3] + h_[7]); })

/* ---- matmul */

struct mm {
	float *y;
	const float *x, *w, *bias;
	int m, n, k;
	bool split_n; /* threads share out columns (few rows) instead of rows */
};

/* y rows [m0, m1) x columns [n0, n1). Micro-kernel: 2 rows of x times 4 rows of w, 8 vector accumulators
 * (with 6 operand registers this fits the 16 vector registers of AVX2 without spilling). */
FAST_CLONES
static void mm_block(const struct mm *a, int m0, int m1, int n0, int n1)
{
	const int k = a->k, k8 = k & ~7;
	enum { NT = 64 };
	for (int nt = n0; nt < n1; nt += NT) {
		int ne = nt + NT < n1 ? nt + NT : n1;
		int i = m0;
		for (; i + 2 <= m1; i += 2) {
			const float *x0 = a->x + (size_t)i * k, *x1 = x0 + k;
			int j = nt;
			for (; j + 4 <= ne; j += 4) {
				const float *w0 = a->w + (size_t)j * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
				v8 c00 = { 0 }, c01 = { 0 }, c02 = { 0 }, c03 = { 0 }, c10 = { 0 }, c11 = { 0 }, c12 = { 0 }, c13 = { 0 };
				for (int p = 0; p < k8; p += 8) {
					v8 a0 = ld8(x0 + p), a1 = ld8(x1 + p), b;
					b = ld8(w0 + p); c00 += a0 * b; c10 += a1 * b;
					b = ld8(w1 + p); c01 += a0 * b; c11 += a1 * b;
					b = ld8(w2 + p); c02 += a0 * b; c12 += a1 * b;
					b = ld8(w3 + p); c03 += a0 * b; c13 += a1 * b;
				}
				float r[2][4] = { { hsum8(c00), hsum8(c01), hsum8(c02), hsum8(c03) },
						  { hsum8(c10), hsum8(c11), hsum8(c12), hsum8(c13) } };
				const float *xs[2] = { x0, x1 }, *ws[4] = { w0, w1, w2, w3 };
				for (int rr = 0; rr < 2; rr++)
					for (int s = 0; s < 4; s++) {
						float v = r[rr][s];
						for (int p = k8; p < k; p++) v += xs[rr][p] * ws[s][p];
						a->y[(size_t)(i + rr) * a->n + j + s] = v + (a->bias ? a->bias[j + s] : 0);
					}
			}
			for (; j < ne; j++)
				for (int rr = 0; rr < 2; rr++) {
					const float *xr = a->x + (size_t)(i + rr) * k, *wr = a->w + (size_t)j * k;
					v8 c = { 0 };
					for (int p = 0; p < k8; p += 8) c += ld8(xr + p) * ld8(wr + p);
					float v = hsum8(c);
					for (int p = k8; p < k; p++) v += xr[p] * wr[p];
					a->y[(size_t)(i + rr) * a->n + j] = v + (a->bias ? a->bias[j] : 0);
				}
		}
		for (; i < m1; i++)
			for (int j = nt; j < ne; j++) {
				const float *xr = a->x + (size_t)i * k, *wr = a->w + (size_t)j * k;
				v8 c = { 0 };
				for (int p = 0; p < k8; p += 8) c += ld8(xr + p) * ld8(wr + p);
				float v = hsum8(c);
				for (int p = k8; p < k; p++) v += xr[p] * wr[p];
				a->y[(size_t)i * a->n + j] = v + (a->bias ? a->bias[j] : 0);
			}
	}
}

static void mm_part(void *ud, int b, int e)
{
	const struct mm *a = ud;
	if (a->split_n) mm_block(a, 0, a->m, b * 4, MIN(e * 4, a->n));
	else mm_block(a, b * 4, MIN(e * 4, a->m), 0, a->n);
}

void awq_matmul(int n_threads, float *y, const float *x, const float *w, const float *bias, int m, int n, int k)
{
	struct mm a = { y, x, w, bias, m, n, k, m < 16 * n_threads };
	int units = a.split_n ? (n + 3) / 4 : (m + 3) / 4;
	lm_parallel(n_threads, units, mm_part, &a);
}

/* ---- the rest */

void awq_rmsnorm(float *h, const float *x, const float *w, int m, int d, float eps)
{
	for (int i = 0; i < m; i++) {
		const float *xr = x + (size_t)i * d;
		double ss = 0;
		for (int j = 0; j < d; j++) ss += (double)xr[j] * xr[j];
		float r = 1.0f / sqrtf((float)(ss / d) + eps);
		for (int j = 0; j < d; j++) h[(size_t)i * d + j] = xr[j] * r * w[j];
	}
}

int awq_rope(float *x, int m, int n_heads, int hd, int seqlen, const float *inv_freq)
{
	int half = hd / 2;
	float *cs = malloc(sizeof(float) * hd);
	if (!cs) return LM_ERR;
	for (int i = 0; i < m; i++) {
		int pos = i % seqlen;
		for (int j = 0; j < half; j++) {
			float a = pos * inv_freq[j];
			cs[j] = cosf(a);
			cs[half + j] = sinf(a);
		}
		for (int h = 0; h < n_heads; h++) {
			float *v = x + ((size_t)i * n_heads + h) * hd;
			for (int j = 0; j < half; j++) {
				float a = v[j], b = v[j + half];
				v[j] = a * cs[j] - b * cs[half + j];
				v[j + half] = b * cs[j] + a * cs[half + j];
			}
		}
	}
	free(cs);
	return LM_OK;
}

struct att {
	float *out;
	const float *q, *k, *v;
	int seqlen, nh, nkv, hd;
	int failed; /* a worker's scratch could not be allocated (set atomically: the workers are threads) */
};

/* One unit = (sequence, head): S = q k^T with the matmul kernel (the masked upper half is computed and
 * ignored: simpler, and still much faster than per-pair dot products), causal softmax, then o = P v as
 * vector axpys. */
FAST_CLONES
static void att_part(void *ud, int b, int e)
{
	struct att *a = ud;
	const int hd = a->hd, qw = a->nh * hd, kw = a->nkv * hd, T = a->seqlen, hd8 = hd & ~7;
	const float scale = 1.0f / sqrtf((float)hd);
	float *S = malloc(sizeof(float) * T * T), *qh = malloc(sizeof(float) * T * hd);
	float *kh = malloc(sizeof(float) * T * hd), *vh = malloc(sizeof(float) * T * hd);
	if (!S || !qh || !kh || !vh) {
		__atomic_store_n(&a->failed, 1, __ATOMIC_RELAXED);
		e = b; /* nothing done; the caller reports it */
	}
	for (int u = b; u < e; u++) {
		int s = u / a->nh, h = u % a->nh, kvh = h / (a->nh / a->nkv);
		size_t r0 = (size_t)s * T;
		for (int t = 0; t < T; t++) {
			memcpy(qh + (size_t)t * hd, a->q + (r0 + t) * qw + (size_t)h * hd, sizeof(float) * hd);
			memcpy(kh + (size_t)t * hd, a->k + (r0 + t) * kw + (size_t)kvh * hd, sizeof(float) * hd);
			memcpy(vh + (size_t)t * hd, a->v + (r0 + t) * kw + (size_t)kvh * hd, sizeof(float) * hd);
		}
		struct mm m = { S, qh, kh, NULL, T, T, hd, false };
		mm_block(&m, 0, T, 0, T);
		for (int t = 0; t < T; t++) {
			float *p = S + (size_t)t * T, mx = -INFINITY, sum = 0;
			for (int j = 0; j <= t; j++) mx = fmaxf(mx, p[j] *= scale);
			for (int j = 0; j <= t; j++) sum += p[j] = expf(p[j] - mx);
			float inv = 1.0f / sum;
			float *o = a->out + (r0 + t) * qw + (size_t)h * hd;
			memset(o, 0, sizeof(float) * hd);
			for (int j = 0; j <= t; j++) {
				const float *vv = vh + (size_t)j * hd;
				float w = p[j] * inv;
				v8 wv = { w, w, w, w, w, w, w, w };
				int d = 0;
				for (; d < hd8; d += 8) {
					v8 ov = ld8(o + d) + wv * ld8(vv + d);
					memcpy(o + d, &ov, sizeof ov);
				}
				for (; d < hd; d++) o[d] += w * vv[d];
			}
		}
	}
	free(S); free(qh); free(kh); free(vh);
}

int awq_attention(int n_threads, float *out, const float *q, const float *k, const float *v, int m, int seqlen,
		  int nh, int nkv, int hd)
{
	struct att a = { out, q, k, v, seqlen, nh, nkv, hd, 0 };
	lm_parallel(n_threads, m / seqlen * nh, att_part, &a);
	return a.failed ? LM_ERR : LM_OK;
}

void awq_swiglu(float *out, const float *g, const float *u, size_t n)
{
	for (size_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void awq_absmean_acc(double *acc, const float *x, int m, int d)
{
	for (int i = 0; i < m; i++)
		for (int j = 0; j < d; j++) acc[j] += fabsf(x[(size_t)i * d + j]);
}
