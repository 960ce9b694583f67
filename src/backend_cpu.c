/* backend_cpu.c: the reference backend. Plain C, float32 activations and accumulation, pthreads.
 *
 * Every other backend is tested against this one, so each op is written the simple way and in the order
 * transformers computes it; speed comes from threads (matmul rows and attention heads are split over a
 * small pool) and from inner loops written on GCC vector types, which compile to SIMD on any target.
 *
 * Memory: all allocations carry a small header with their size and category, so the per-category byte
 * counts (and peaks) are exact. "Device" memory is host memory here; mem_stats reports /proc figures.
 *
 * Weights, as weight_load keeps them:
 *  - dense matrices keep the checkpoint's dtype (F32, F16 or BF16: a bf16 7B model takes 14 GB, not 28);
 *    matmul converts one weight row at a time to float into a per-thread scratch row and reuses it for
 *    every token of the step.
 *  - vectors (norm weights, rows == 1) and biases are converted to F32.
 *  - AWQ (DT_Q4) is repacked from AutoAWQ's gemm layout (input-major, interleaved nibbles) to an
 *    output-row-major layout, so that one output row dequantizes from contiguous memory:
 *      qweight uint8 [rows][cols/2]   in chunks of 16 elements (8 bytes): element k of row j is in byte
 *                                     j*cols/2 + (k/16)*8 + k%8, low nibble if k%16 < 8, else high; so
 *                                     8 bytes widen to 16 floats with plain vector ops
 *      scales  float [rows][cols/group]
 *      qzeros  float [rows][cols/group]  the zero point as a float
 *    w[j][k] = (q - z) * s, computed in float (exact: a 5-bit integer times an fp16 value).
 *
 * KV cache (struct kv_cache.pool), block-major so that a block holds every layer of its tokens:
 *    [n_blocks][n_layers][2 (K, V)][n_kv_heads][block_len] rows; one row = one token of one head:
 *    policy 0: head_dim floats; policy 8/4: kvquant.h's quantized bytes, then fp16 scale, fp16 zero.
 *
 * The step state (struct step) is kept by value, its arrays by pointer: the backend is synchronous, and
 * forward() keeps them alive until its ops have returned.
 *
 * Threads: LMTERM_THREADS, else every CPU this process may run on. One backend serves one caller thread at
 * a time (the engine thread); its pool's workers sleep on a condition variable between ops. */
#include "config.h"
#include "backend.h"
#include "i18n.h"
#include "kvquant.h"
#include "sampler.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------------
 * Thread pool: run fn(arg, tid, nt) on nt threads (the caller is thread 0) and wait for all. */

typedef void (*pool_fn)(void *arg, int tid, int nt);

struct pool {
	int n;                 /* threads, including the caller */
	pthread_t *th;
	pthread_mutex_t mu;
	pthread_cond_t start, done;
	pool_fn fn;
	void *arg;
	unsigned gen;          /* bumped for each job; workers run when it changes */
	int pending;           /* workers still running the current job */
	bool quit;
};

struct worker_arg {
	struct pool *p;
	int tid;
};

static void *pool_worker(void *a)
{
	struct worker_arg *wa = a;
	struct pool *p = wa->p;
	int tid = wa->tid;
	free(wa);
	unsigned seen = 0;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->gen == seen && !p->quit) pthread_cond_wait(&p->start, &p->mu);
		if (p->quit) break;
		seen = p->gen;
		pool_fn fn = p->fn;
		void *arg = p->arg;
		pthread_mutex_unlock(&p->mu);
		fn(arg, tid, p->n);
		pthread_mutex_lock(&p->mu);
		if (--p->pending == 0) pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int pool_init(struct pool *p, int n)
{
	memset(p, 0, sizeof *p);
	p->n = n;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->start, NULL);
	pthread_cond_init(&p->done, NULL);
	p->th = calloc((size_t)n, sizeof *p->th);
	if (!p->th) {
		p->n = 1;
		return lm_err(_("cpu backend: out of memory"));
	}
	for (int t = 1; t < n; t++) {
		struct worker_arg *wa = malloc(sizeof *wa);
		if (wa) {
			wa->p = p;
			wa->tid = t;
		}
		if (!wa || pthread_create(&p->th[t], NULL, pool_worker, wa) != 0) {
			free(wa);
			p->n = t; /* run with the threads we have */
			break;
		}
	}
	return LM_OK;
}

static void pool_run(struct pool *p, pool_fn fn, void *arg)
{
	if (p->n <= 1) {
		fn(arg, 0, 1);
		return;
	}
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->arg = arg;
	p->pending = p->n - 1;
	p->gen++;
	pthread_cond_broadcast(&p->start);
	pthread_mutex_unlock(&p->mu);
	fn(arg, 0, p->n);
	pthread_mutex_lock(&p->mu);
	while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

static void pool_destroy(struct pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->quit = true;
	pthread_cond_broadcast(&p->start);
	pthread_mutex_unlock(&p->mu);
	for (int t = 1; t < p->n; t++) pthread_join(p->th[t], NULL);
	free(p->th);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->start);
	pthread_cond_destroy(&p->done);
}

/* the share [*lo, *hi) of n items that thread tid of nt takes */
static void split(int n, int tid, int nt, int *lo, int *hi)
{
	*lo = (int)((int64_t)n * tid / nt);
	*hi = (int)((int64_t)n * (tid + 1) / nt);
}

/* ---------------------------------------------------------------------------------------------------
 * Backend state and the categorized allocator */

struct cpu {
	struct backend be;
	struct pool pool;
	pthread_mutex_t mem_mu;
	size_t cat[MEM_NCAT], peak[MEM_NCAT];
	struct step st;          /* current step (arrays by pointer, see top of file) */
	bool have_step;
	float **scratch;         /* [n_threads] per-thread float scratch (MEM_OTHER) */
	size_t scratch_floats;   /* floats in each */
	char name[64];
	/* the folded norms (matmul_residual, norm_matmul) with LMTERM_FOLD=1, as the cuda backend offers them:
	 * here the same arithmetic in another order, so that the forward pass's folded path is checked against
	 * the goldens without a GPU; the sums of squares of x per token between the two ops */
	bool fold;
	double *fold_ss;
	int fold_n;
};

static struct cpu *cpu_of(struct backend *be) { return be->ctx; }

/* Every allocation is preceded by this header (64 bytes keeps the payload 64-byte aligned). */
#define HDR 64
struct hdr {
	size_t bytes;
	int cat;
	uint32_t magic;
};
#define HDR_MAGIC 0x6c6d6370u /* "lmcp" */

static void *cpu_alloc(struct backend *be, size_t bytes, enum mem_cat cat)
{
	struct cpu *c = cpu_of(be);
	if (cat < 0 || cat >= MEM_NCAT) {
		lm_err(_("cpu backend: bad memory category %d"), (int)cat);
		return NULL;
	}
	void *p = NULL;
	if (bytes > SIZE_MAX - HDR || posix_memalign(&p, HDR, HDR + (bytes ? bytes : 1)) != 0) {
		lm_err(_("cpu backend: out of memory allocating %zu bytes"), bytes);
		return NULL;
	}
	struct hdr *h = p;
	h->bytes = bytes;
	h->cat = cat;
	h->magic = HDR_MAGIC;
	pthread_mutex_lock(&c->mem_mu);
	c->cat[cat] += bytes;
	if (c->cat[cat] > c->peak[cat]) c->peak[cat] = c->cat[cat];
	pthread_mutex_unlock(&c->mem_mu);
	return (char *)p + HDR;
}

static void cpu_free(struct backend *be, void *p)
{
	if (!p) return;
	struct cpu *c = cpu_of(be);
	struct hdr *h = (struct hdr *)((char *)p - HDR);
	if (h->magic != HDR_MAGIC) return; /* not ours: leaking beats corrupting the heap */
	h->magic = 0;
	pthread_mutex_lock(&c->mem_mu);
	c->cat[h->cat] -= h->bytes;
	pthread_mutex_unlock(&c->mem_mu);
	free(h);
}

static int cpu_upload(struct backend *be, void *dst, const void *src, size_t bytes)
{
	memcpy(dst, src, bytes);
	return LM_OK;
}

static int cpu_download(struct backend *be, void *dst, const void *src, size_t bytes)
{
	memcpy(dst, src, bytes);
	return LM_OK;
}

static int cpu_sync(struct backend *be) { return LM_OK; }

/* Per-thread scratch of at least `floats` floats. Grown here, on the calling thread, before a job. */
static int scratch_reserve(struct cpu *c, size_t floats)
{
	if (floats <= c->scratch_floats) return LM_OK;
	for (int t = 0; t < c->pool.n; t++) {
		cpu_free(&c->be, c->scratch[t]);
		c->scratch[t] = cpu_alloc(&c->be, floats * sizeof(float), MEM_OTHER);
		if (!c->scratch[t]) {
			c->scratch_floats = 0;
			for (int u = 0; u < c->pool.n; u++) {
				cpu_free(&c->be, c->scratch[u]);
				c->scratch[u] = NULL;
			}
			return LM_ERR;
		}
	}
	c->scratch_floats = floats;
	return LM_OK;
}

/* kB value of a /proc/meminfo key, or -1 */
static long long meminfo_kb(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "r");
	if (!f) return -1;
	char line[256];
	long long v = -1;
	size_t kl = strlen(key);
	while (fgets(line, sizeof line, f))
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			v = strtoll(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static int cpu_mem_stats(struct backend *be, struct mem_stats *out)
{
	struct cpu *c = cpu_of(be);
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&c->mem_mu);
	for (int i = 0; i < MEM_NCAT; i++) {
		out->cat[i] = c->cat[i];
		out->peak[i] = c->peak[i];
	}
	pthread_mutex_unlock(&c->mem_mu);
	out->is_host = true;
	long long total = meminfo_kb("MemTotal"), avail = meminfo_kb("MemAvailable");
	if (total >= 0) {
		out->total = (size_t)total * 1024;
		out->total_valid = true;
	}
	if (avail >= 0) {
		out->free = (size_t)avail * 1024;
		out->free_valid = true;
	}
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		unsigned long long size, resident;
		if (fscanf(f, "%llu %llu", &size, &resident) == 2) {
			out->used_by_process = (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
			out->used_valid = true;
		}
		fclose(f);
	}
	snprintf(out->device_name, sizeof out->device_name, "%s", c->name);
	return LM_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Weights */

/* fp16 -> float: the F16C instruction where the CPU has it, else a table of all 65536 values */
static float f16_table[65536];
static bool have_f16c;
static pthread_once_t f16_once = PTHREAD_ONCE_INIT;
static void f16_table_init(void)
{
	for (uint32_t i = 0; i < 65536; i++) f16_table[i] = f16_to_f32((uint16_t)i);
#if defined(__x86_64__) && defined(__GNUC__)
	have_f16c = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
#endif
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx,f16c"))) static void f16_row_f16c(float *dst, const uint16_t *src, size_t n)
{
	size_t k = 0;
	for (; k + 8 <= n; k += 8) _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + k))));
	for (; k < n; k++) dst[k] = f16_table[src[k]];
}
#endif

/* AutoAWQ packs output columns 8c..8c+7 of one int32 in this nibble order */
static const int awq_order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };

static int load_q4(struct backend *be, struct weight *w, const struct host_weight *src)
{
	const int N = src->rows, K = src->cols, g = src->group;
	if (g <= 0 || g % 16 != 0 || K % g != 0 || N % 8 != 0 || !src->qweight || !src->qzeros || !src->scales)
		return lm_err(_("AWQ weight [%d x %d]: unsupported shape or group size %d"), N, K, g);
	const int G = K / g, N8 = N / 8;
	uint8_t *qw;
	float *sc, *zr;
	if (weight_alloc_part(be, w, &w->qweight, (size_t)N * K / 2) ||
	    weight_alloc_part(be, w, &w->scales, (size_t)N * G * sizeof(float)) ||
	    weight_alloc_part(be, w, &w->qzeros, (size_t)N * G * sizeof(float)))
		return LM_ERR;
	qw = w->qweight;
	sc = w->scales;
	zr = w->qzeros;
	memset(qw, 0, (size_t)N * K / 2);
	/* qweight int32 [K][N/8] -> nibbles of [N][K] */
	for (int k = 0; k < K; k++)
		for (int c8 = 0; c8 < N8; c8++) {
			uint32_t word = (uint32_t)src->qweight[(size_t)k * N8 + c8];
			for (int i = 0; i < 8; i++) {
				int j = 8 * c8 + awq_order[i];
				uint8_t q = (word >> (4 * i)) & 15;
				qw[(size_t)j * (K / 2) + (k / 16) * 8 + k % 8] |= (uint8_t)(q << (k % 16 < 8 ? 0 : 4));
			}
		}
	/* qzeros int32 [G][N/8], scales fp16 [G][N] -> float [N][G] */
	for (int gi = 0; gi < G; gi++) {
		for (int c8 = 0; c8 < N8; c8++) {
			uint32_t word = (uint32_t)src->qzeros[(size_t)gi * N8 + c8];
			for (int i = 0; i < 8; i++) zr[(size_t)(8 * c8 + awq_order[i]) * G + gi] = (float)((word >> (4 * i)) & 15);
		}
		for (int j = 0; j < N; j++) sc[(size_t)j * G + gi] = f16_to_f32(src->scales[(size_t)gi * N + j]);
	}
	w->dt = DT_Q4;
	w->group = g;
	return LM_OK;
}

static int cpu_weight_load(struct backend *be, struct weight *w, const struct host_weight *src)
{
	memset(w, 0, sizeof *w);
	w->rows = src->rows;
	w->cols = src->cols;
	if (src->rows <= 0 || src->cols <= 0) return lm_err(_("weight of shape [%d x %d]"), src->rows, src->cols);
	int rc;
	if (src->dt == DT_Q4) {
		rc = load_q4(be, w, src);
	} else if (src->dt == DT_F32 || src->dt == DT_F16 || src->dt == DT_BF16) {
		size_t nel = (size_t)src->rows * src->cols;
		if (src->rows == 1) { /* a vector (norm weight): float, read directly by the ops */
			rc = weight_alloc_part(be, w, &w->data, nel * sizeof(float));
			if (!rc) to_f32(w->data, src->data, src->dt, nel);
			w->dt = DT_F32;
		} else {
			rc = weight_alloc_part(be, w, &w->data, nel * dtype_size(src->dt));
			if (!rc) memcpy(w->data, src->data, nel * dtype_size(src->dt));
			w->dt = src->dt;
		}
	} else {
		rc = lm_err(_("cpu backend: weights of dtype %s are not supported"), dtype_name(src->dt));
	}
	if (!rc && src->bias) {
		if (src->bias_dt != DT_F32 && src->bias_dt != DT_F16 && src->bias_dt != DT_BF16)
			rc = lm_err(_("cpu backend: bias of dtype %s is not supported"), dtype_name(src->bias_dt));
		else if (!(rc = weight_alloc_part(be, w, &w->bias, (size_t)src->rows * sizeof(float))))
			to_f32(w->bias, src->bias, src->bias_dt, (size_t)src->rows);
	}
	if (rc) weight_free_parts(be, w);
	return rc;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* uniform in [-1, 1) */
static float rand_unit(uint64_t *s)
{
	return (float)((splitmix64(s) >> 40) * (1.0 / 8388608.0) - 1.0);
}

static int cpu_weight_random(struct backend *be, struct weight *w, enum dtype dt, int rows, int cols, float scale,
			     uint64_t seed)
{
	memset(w, 0, sizeof *w);
	w->rows = rows;
	w->cols = cols;
	if (rows <= 0 || cols <= 0) return lm_err(_("weight of shape [%d x %d]"), rows, cols);
	uint64_t s = seed;
	size_t nel = (size_t)rows * cols;
	if (dt == DT_Q4) {
		int g = cols % 128 == 0 ? 128 : cols;
		if (cols % 16) return lm_err(_("AWQ weight [%d x %d]: the input size must be a multiple of 16"), rows, cols);
		size_t G = (size_t)cols / g;
		if (weight_alloc_part(be, w, &w->qweight, nel / 2) ||
		    weight_alloc_part(be, w, &w->scales, (size_t)rows * G * sizeof(float)) ||
		    weight_alloc_part(be, w, &w->qzeros, (size_t)rows * G * sizeof(float))) {
			weight_free_parts(be, w);
			return LM_ERR;
		}
		uint8_t *q = w->qweight;
		for (size_t i = 0; i < nel / 2; i++) q[i] = (uint8_t)splitmix64(&s);
		for (size_t i = 0; i < (size_t)rows * G; i++) {
			((float *)w->scales)[i] = scale / 8;
			((float *)w->qzeros)[i] = 8;
		}
		w->dt = DT_Q4;
		w->group = g;
		return LM_OK;
	}
	if (dt != DT_F32 && dt != DT_F16 && dt != DT_BF16)
		return lm_err(_("cpu backend: weights of dtype %s are not supported"), dtype_name(dt));
	bool vec = rows == 1;
	enum dtype sdt = vec ? DT_F32 : dt;
	if (weight_alloc_part(be, w, &w->data, nel * dtype_size(sdt))) return LM_ERR;
	for (size_t i = 0; i < nel; i++) {
		float v = scale * rand_unit(&s);
		if (sdt == DT_F32) ((float *)w->data)[i] = v;
		else if (sdt == DT_F16) ((uint16_t *)w->data)[i] = f32_to_f16(v);
		else ((uint16_t *)w->data)[i] = f32_to_bf16(v);
	}
	w->dt = sdt;
	return LM_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Vector kernels, on GCC vector types: 8 floats are two SSE registers or one AVX register. The helpers
 * are static and inlined, so GCC's note that passing them by value changes the ABI without AVX is moot. */
#pragma GCC diagnostic ignored "-Wpsabi"
/* always inlined: each is then compiled for the clone (AVX2 or not) that calls it */
#define KERNEL static inline __attribute__((always_inline))
typedef float v8sf __attribute__((vector_size(32)));
typedef uint8_t v8qu __attribute__((vector_size(8)));
typedef uint16_t v8hu __attribute__((vector_size(16)));
typedef uint32_t v8su __attribute__((vector_size(32)));

KERNEL v8sf load8(const float *p)
{
	v8sf v;
	memcpy(&v, p, sizeof v);
	return v;
}

KERNEL float hsum8(v8sf v)
{
	return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

KERNEL float dot(const float *a, const float *b, int n)
{
	v8sf acc = { 0 };
	int k = 0;
	for (; k + 8 <= n; k += 8) acc += load8(a + k) * load8(b + k);
	float s = hsum8(acc);
	for (; k < n; k++) s += a[k] * b[k];
	return s;
}

/* y += a * x */
KERNEL void axpy(float *y, float a, const float *x, int n)
{
	int k = 0;
	for (; k + 8 <= n; k += 8) {
		v8sf v = load8(y + k) + a * load8(x + k);
		memcpy(y + k, &v, sizeof v);
	}
	for (; k < n; k++) y[k] += a * x[k];
}

/* out[r] = x . w[r] for four weight rows at once: x is read once for four rows */
KERNEL void dot4(const float *x, const float *const w[4], int n, float out[4])
{
	v8sf a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 };
	int k = 0;
	for (; k + 8 <= n; k += 8) {
		v8sf xv = load8(x + k);
		a0 += xv * load8(w[0] + k);
		a1 += xv * load8(w[1] + k);
		a2 += xv * load8(w[2] + k);
		a3 += xv * load8(w[3] + k);
	}
	out[0] = hsum8(a0);
	out[1] = hsum8(a1);
	out[2] = hsum8(a2);
	out[3] = hsum8(a3);
	for (; k < n; k++)
		for (int r = 0; r < 4; r++) out[r] += x[k] * w[r][k];
}

/* dot4 for two tokens at once: eight independent sums keep the multiply-add units busy, and each weight
 * load serves two tokens */
KERNEL void dot4x2(const float *x0, const float *x1, const float *const w[4], int n, float o0[4], float o1[4])
{
	v8sf a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 }, b0 = { 0 }, b1 = { 0 }, b2 = { 0 }, b3 = { 0 };
	int k = 0;
	for (; k + 8 <= n; k += 8) {
		v8sf u = load8(x0 + k), v = load8(x1 + k), wv;
		wv = load8(w[0] + k);
		a0 += u * wv;
		b0 += v * wv;
		wv = load8(w[1] + k);
		a1 += u * wv;
		b1 += v * wv;
		wv = load8(w[2] + k);
		a2 += u * wv;
		b2 += v * wv;
		wv = load8(w[3] + k);
		a3 += u * wv;
		b3 += v * wv;
	}
	o0[0] = hsum8(a0), o0[1] = hsum8(a1), o0[2] = hsum8(a2), o0[3] = hsum8(a3);
	o1[0] = hsum8(b0), o1[1] = hsum8(b1), o1[2] = hsum8(b2), o1[3] = hsum8(b3);
	for (; k < n; k++)
		for (int r = 0; r < 4; r++) {
			o0[r] += x0[k] * w[r][k];
			o1[r] += x1[k] * w[r][k];
		}
}

/* As dot4 with bf16 weight rows, widened in registers: decode steps (one token) read each weight once,
 * so converting a row into scratch first would cost more than the dot itself. */
KERNEL v8sf load8_bf16(const uint16_t *p)
{
	v8hu h;
	memcpy(&h, p, sizeof h);
	v8su u = __builtin_convertvector(h, v8su) << 16;
	v8sf f;
	memcpy(&f, &u, sizeof f);
	return f;
}

KERNEL void dot4_bf16(const float *x, const uint16_t *const w[4], int n, float out[4])
{
	v8sf a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 };
	int k = 0;
	for (; k + 8 <= n; k += 8) {
		v8sf xv = load8(x + k);
		a0 += xv * load8_bf16(w[0] + k);
		a1 += xv * load8_bf16(w[1] + k);
		a2 += xv * load8_bf16(w[2] + k);
		a3 += xv * load8_bf16(w[3] + k);
	}
	out[0] = hsum8(a0);
	out[1] = hsum8(a1);
	out[2] = hsum8(a2);
	out[3] = hsum8(a3);
	for (; k < n; k++)
		for (int r = 0; r < 4; r++) out[r] += x[k] * bf16_to_f32(w[r][k]);
}

/* Row j of a weight as floats: a pointer into the weight (F32) or into buf (converted). */
/* Inlined so that it is compiled for each matmul clone (AVX2 conversions where the CPU has them). */
KERNEL const float *weight_row(const struct weight *w, int j, float *buf)
{
	const size_t K = (size_t)w->cols;
	switch (w->dt) {
	case DT_F32:
		return (const float *)w->data + (size_t)j * K;
	case DT_BF16: {
		const uint16_t *s = (const uint16_t *)w->data + (size_t)j * K;
		for (size_t k = 0; k < K; k++) buf[k] = bf16_to_f32(s[k]);
		return buf;
	}
	case DT_F16: {
		const uint16_t *s = (const uint16_t *)w->data + (size_t)j * K;
#if defined(__x86_64__) && defined(__GNUC__)
		if (have_f16c) {
			f16_row_f16c(buf, s, K);
			return buf;
		}
#endif
		for (size_t k = 0; k < K; k++) buf[k] = f16_table[s[k]];
		return buf;
	}
	case DT_Q4: {
		const int g = w->group, G = w->cols / g;
		const uint8_t *q = (const uint8_t *)w->qweight + (size_t)j * (K / 2);
		const float *sc = (const float *)w->scales + (size_t)j * G, *zr = (const float *)w->qzeros + (size_t)j * G;
		for (int gi = 0; gi < G; gi++) {
			const float s = sc[gi], z = zr[gi];
			for (int k = gi * g; k < (gi + 1) * g; k += 16) {
				v8qu b;
				memcpy(&b, q + k / 2, sizeof b);
				v8sf lo = __builtin_convertvector(b & 15, v8sf), hi = __builtin_convertvector(b >> 4, v8sf);
				lo = (lo - z) * s;
				hi = (hi - z) * s;
				memcpy(buf + k, &lo, sizeof lo);
				memcpy(buf + k + 8, &hi, sizeof hi);
			}
		}
		return buf;
	}
	default:
		return NULL;
	}
}

/* ---------------------------------------------------------------------------------------------------
 * matmul: y[n][N] = x[n][K] . W[N][K]^T (+ bias). Threads split the output rows; each converts four
 * weight rows to float and takes them across a tile of tokens, so a converted row is reused. */

#define TOK_TILE 32

struct mm_job {
	struct cpu *c;
	float *y;
	const float *x;
	const struct weight *w;
	int n;
};

/* On x86-64, a second copy for AVX2 + FMA CPUs is picked at load time (the binary still runs anywhere). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SIMD_CLONES __attribute__((target_clones("default", "arch=x86-64-v3")))
#else
#define SIMD_CLONES
#endif

SIMD_CLONES static void mm_worker(void *arg, int tid, int nt)
{
	struct mm_job *jb = arg;
	const struct weight *w = jb->w;
	const int K = w->cols, N = w->rows;
	const float *bias = w->bias;
	float *buf = jb->c->scratch[tid];
	int r0, r1;
	split(N, tid, nt, &r0, &r1);
	if (w->dt == DT_BF16 && jb->n <= 2) { /* decode: bf16 rows straight from the weight */
		for (int j = r0; j < r1; j += 4) {
			int nr = MIN(4, r1 - j);
			const uint16_t *wr[4];
			for (int r = 0; r < 4; r++) wr[r] = (const uint16_t *)w->data + (size_t)(j + (r < nr ? r : 0)) * K;
			for (int i = 0; i < jb->n; i++) {
				float o[4];
				dot4_bf16(jb->x + (size_t)i * K, wr, K, o);
				float *yi = jb->y + (size_t)i * N + j;
				for (int r = 0; r < nr; r++) yi[r] = bias ? o[r] + bias[j + r] : o[r];
			}
		}
		return;
	}
	for (int t0 = 0; t0 < jb->n; t0 += TOK_TILE) {
		int t1 = MIN(jb->n, t0 + TOK_TILE);
		for (int j = r0; j < r1; j += 4) {
			int nr = MIN(4, r1 - j);
			const float *wr[4];
			for (int r = 0; r < 4; r++) wr[r] = r < nr ? weight_row(w, j + r, buf + (size_t)r * K) : wr[0];
			for (int i = t0; i < t1; i += 2) {
				float o[2][4];
				if (i + 1 < t1)
					dot4x2(jb->x + (size_t)i * K, jb->x + (size_t)(i + 1) * K, wr, K, o[0], o[1]);
				else
					dot4(jb->x + (size_t)i * K, wr, K, o[0]);
				for (int t = 0; t < 2 && i + t < t1; t++) {
					float *yi = jb->y + (size_t)(i + t) * N + j;
					for (int r = 0; r < nr; r++) yi[r] = bias ? o[t][r] + bias[j + r] : o[t][r];
				}
			}
		}
	}
}

static int matmul_f32(struct cpu *c, float *y, const float *x, const struct weight *w, int n)
{
	if (n <= 0) return lm_err(_("matmul: %d tokens"), n);
	if (w->dt != DT_F32 && w->dt != DT_F16 && w->dt != DT_BF16 && w->dt != DT_Q4)
		return lm_err(_("matmul: unsupported weight dtype %s"), dtype_name(w->dt));
	pthread_once(&f16_once, f16_table_init);
	if (scratch_reserve(c, (size_t)4 * w->cols)) return LM_ERR;
	struct mm_job jb = { .c = c, .y = y, .x = x, .w = w, .n = n };
	pool_run(&c->pool, mm_worker, &jb);
	return LM_OK;
}

static int cpu_matmul(struct backend *be, void *y, const void *x, const struct weight *w, int n)
{
	return matmul_f32(cpu_of(be), y, x, w, n);
}

static int cpu_logits(struct backend *be, float *logits_host, const void *h, const struct weight *lm_head, int n)
{
	return matmul_f32(cpu_of(be), logits_host, h, lm_head, n);
}

/* the backend's sample op on the host: the logits of h, then the host sampler with the uniform given */
static int cpu_sample(struct backend *be, int32_t *token_host, const void *h, const struct weight *lm_head,
		      const struct sample_args *a)
{
	const int V = lm_head ? lm_head->rows : a->vocab;
	float *l = malloc(sizeof(float) * (size_t)V);
	if (!l) return lm_err(_("out of memory"));
	int rc = LM_OK;
	if (lm_head) rc = matmul_f32(cpu_of(be), l, h, lm_head, 1);
	else memcpy(l, h, sizeof(float) * (size_t)V);
	if (!rc) rc = sampler_pick(a, l, V, token_host);
	free(l);
	return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * Elementwise ops */

static int cpu_set_step(struct backend *be, const struct step *s)
{
	struct cpu *c = cpu_of(be);
	if (s->n <= 0 || s->pos0 < 0 || !s->ids || !s->inv_freq)
		return lm_err(_("set_step: bad step (n %d, pos0 %d)"), s->n, s->pos0);
	c->st = *s;
	c->have_step = true;
	return LM_OK;
}

static int cpu_embed(struct backend *be, void *x, const struct weight *table)
{
	struct cpu *c = cpu_of(be);
	if (!c->have_step) return lm_err(_("embed: no step set"));
	if (table->dt == DT_Q4 || !table->data) return lm_err(_("embed: the embedding table must be dense"));
	const int dim = table->cols;
	for (int i = 0; i < c->st.n; i++) {
		int id = c->st.ids[i];
		if (id < 0 || id >= table->rows)
			return lm_err(_("token id %d is outside the vocabulary (0..%d)"), id, table->rows - 1);
		to_f32((float *)x + (size_t)i * dim, (const char *)table->data + (size_t)id * dim * dtype_size(table->dt),
		       table->dt, (size_t)dim);
	}
	return LM_OK;
}

/* As transformers' RMSNorm in float32: h = w * (x * rsqrt(mean(x^2) + eps)) for one row of n (h may be x). The
 * sum of squares is taken in double, which is nearer to torch's blocked float reduction than a running float sum. */
static void rmsnorm_row(float *h, const float *x, const float *w, int n, float eps)
{
	double ss = 0;
	for (int k = 0; k < n; k++) ss += (double)x[k] * x[k];
	float inv = 1.0f / sqrtf((float)(ss / n) + eps);
	for (int k = 0; k < n; k++) h[k] = w[k] * (x[k] * inv);
}

static int cpu_add_rmsnorm(struct backend *be, void *hv, void *xv, const void *dxv, const struct weight *w, int n,
			   float eps)
{
	if (w->dt != DT_F32) return lm_err(_("rmsnorm: weight must be F32 on the cpu backend"));
	const int dim = w->cols;
	for (int i = 0; i < n; i++) {
		float *x = (float *)xv + (size_t)i * dim;
		if (dxv) {
			const float *dx = (const float *)dxv + (size_t)i * dim;
			for (int k = 0; k < dim; k++) x[k] += dx[k];
		}
		rmsnorm_row((float *)hv + (size_t)i * dim, x, w->data, dim, eps);
	}
	return LM_OK;
}

/* x += a . W^T; xw = x * nw; the sums of x^2 kept for cpu_norm_matmul (backend.h) */
static int cpu_matmul_residual(struct backend *be, void *xv, void *xwv, const void *a, const struct weight *w,
			       const struct weight *nw, int n)
{
	struct cpu *c = cpu_of(be);
	const int dim = w->rows;
	if (!c->fold || n <= 0 || nw->dt != DT_F32 || nw->cols != dim) return 1;
	float *dx = malloc(sizeof(float) * (size_t)n * dim);
	double *ss = realloc(c->fold_ss, sizeof(double) * (size_t)n);
	if (!dx || !ss) {
		free(dx);
		return lm_err(_("out of memory"));
	}
	c->fold_ss = ss;
	c->fold_n = n;
	if (matmul_f32(c, dx, a, w, n)) {
		free(dx);
		return LM_ERR;
	}
	const float *wt = nw->data;
	for (int i = 0; i < n; i++) {
		float *x = (float *)xv + (size_t)i * dim, *xw = (float *)xwv + (size_t)i * dim;
		const float *d = dx + (size_t)i * dim;
		ss[i] = 0;
		for (int k = 0; k < dim; k++) {
			x[k] += d[k];
			ss[i] += (double)x[k] * x[k];
			xw[k] = x[k] * wt[k];
		}
	}
	free(dx);
	return LM_OK;
}

static int cpu_swiglu(struct backend *be, void *outv, const void *guv, int n, int ffn);

/* y = (xw * rstd) . W^T, or its SwiGLU: the norm finished in place, then the plain ops */
static int cpu_norm_matmul(struct backend *be, void *y, void *gu, void *xwv, const struct weight *w, int n, float eps)
{
	struct cpu *c = cpu_of(be);
	const int dim = w->cols;
	if (!c->fold_ss || n > c->fold_n) return lm_err(_("norm_matmul: no matmul_residual before it"));
	for (int i = 0; i < n; i++) {
		float *xw = (float *)xwv + (size_t)i * dim;
		const float inv = 1.0f / sqrtf((float)(c->fold_ss[i] / dim) + eps);
		for (int k = 0; k < dim; k++) xw[k] *= inv;
	}
	if (!gu) return matmul_f32(c, y, xwv, w, n);
	return matmul_f32(c, gu, xwv, w, n) ? LM_ERR : cpu_swiglu(be, y, gu, n, w->rows / 2);
}

/* Qwen3RMSNorm on each q head (q_norm) and each k head (k_norm) of every token's qkv row */
static int cpu_qk_norm(struct backend *be, void *qkvv, const struct weight *qn, const struct weight *kn, int n,
		       int n_heads, int n_kv_heads, float eps)
{
	if (qn->dt != DT_F32 || kn->dt != DT_F32 || qn->rows != 1 || kn->rows != 1 || qn->cols != kn->cols)
		return lm_err(_("qk_norm: the norm weights must be F32 vectors of head_dim on the cpu backend"));
	const int hd = qn->cols, width = (n_heads + 2 * n_kv_heads) * hd;
	for (int i = 0; i < n; i++) {
		float *row = (float *)qkvv + (size_t)i * width;
		for (int h = 0; h < n_heads + n_kv_heads; h++) { /* in place: the q heads, then the k heads */
			float *head = row + (size_t)h * hd;
			rmsnorm_row(head, head, h < n_heads ? qn->data : kn->data, hd, eps);
		}
	}
	return LM_OK;
}

static int cpu_swiglu(struct backend *be, void *outv, const void *guv, int n, int ffn)
{
	for (int i = 0; i < n; i++) {
		const float *g = (const float *)guv + (size_t)i * 2 * ffn, *u = g + ffn;
		float *o = (float *)outv + (size_t)i * ffn;
		for (int j = 0; j < ffn; j++) o[j] = g[j] / (1.0f + expf(-g[j])) * u[j];
	}
	return LM_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * KV cache */

static size_t kv_row_bytes(const struct kv_cache *kv)
{
	return kvq_row_bytes(kv->policy, kv->head_dim, sizeof(float));
}

static size_t cpu_kv_bytes_per_token(struct backend *be, const struct kv_cache *kv)
{
	return 2 * (size_t)kv->n_layers * kv->n_kv_heads * kv_row_bytes(kv);
}

static int cpu_kv_alloc(struct backend *be, struct kv_cache *kv)
{
	if (kv->policy != KV_POLICY_NONE && kv->policy != KV_POLICY_INT8 && kv->policy != KV_POLICY_INT4)
		return lm_err(_("KV cache: unknown quant policy %d (expected 0, 4 or 8)"), kv->policy);
	if (kv->n_layers <= 0 || kv->n_kv_heads <= 0 || kv->head_dim <= 0 || kv->block_len <= 0 || kv->n_blocks <= 0)
		return lm_err(_("KV cache: bad geometry (%d layers, %d heads of %d, %d blocks of %d)"), kv->n_layers,
			      kv->n_kv_heads, kv->head_dim, kv->n_blocks, kv->block_len);
	if (kv->policy == KV_POLICY_INT4 && kv->head_dim % 2)
		return lm_err(_("KV cache: int4 needs an even head_dim (%d)"), kv->head_dim);
	kv->bytes_per_token = cpu_kv_bytes_per_token(be, kv);
	kv->bytes = kv->bytes_per_token * kv->block_len * (size_t)kv->n_blocks;
	kv->pool = cpu_alloc(be, kv->bytes, MEM_KV);
	if (!kv->pool) {
		lm_err_prefix(_("KV cache: "));
		kv->bytes = 0;
		return LM_ERR;
	}
	return LM_OK;
}

static void cpu_kv_free(struct backend *be, struct kv_cache *kv)
{
	cpu_free(be, kv->pool);
	kv->pool = NULL;
	kv->bytes = 0;
}

/* the row of (block, layer, K=0/V=1, head, token in block) */
static uint8_t *kv_row(const struct kv_cache *kv, int block, int layer, int kind, int head, int t)
{
	size_t idx = ((((size_t)block * kv->n_layers + layer) * 2 + kind) * kv->n_kv_heads + head) * kv->block_len + t;
	return (uint8_t *)kv->pool + idx * kv_row_bytes(kv);
}

/* block index holding absolute position pos, or -1 */
static int kv_block_of(const struct cpu *c, const struct kv_cache *kv, int pos)
{
	int b = pos / kv->block_len;
	if (!c->st.blocks || b >= c->st.n_blocks) return -1;
	int blk = c->st.blocks[b];
	return blk >= 0 && blk < kv->n_blocks ? blk : -1;
}

static void kv_store(const struct kv_cache *kv, uint8_t *row, const float *x)
{
	const int hd = kv->head_dim;
	if (kv->policy == KV_POLICY_NONE) {
		memcpy(row, x, (size_t)hd * sizeof(float));
	} else {
		uint16_t s, z;
		size_t db = kvq_data_bytes(kv->policy, hd);
		kvq_quantize(kv->policy, x, hd, row, &s, &z);
		memcpy(row + db, &s, 2);
		memcpy(row + db + 2, &z, 2);
	}
}

/* the row as floats: a pointer into the cache (policy 0) or into buf (dequantized) */
static inline const float *kv_load(const struct kv_cache *kv, const uint8_t *row, float *buf)
{
	const int hd = kv->head_dim;
	if (kv->policy == KV_POLICY_NONE) return (const float *)row;
	uint16_t s, z;
	size_t db = kvq_data_bytes(kv->policy, hd);
	memcpy(&s, row + db, 2);
	memcpy(&z, row + db + 2, 2);
	kvq_dequantize(kv->policy, row, hd, s, z, buf);
	return buf;
}

/* RoPE, rotate-half convention (transformers): for d < hd/2, with a = pos * inv_freq[d] in float,
 *   x'[d] = x[d] cos a - x[d + hd/2] sin a,   x'[d + hd/2] = x[d + hd/2] cos a + x[d] sin a */
static void rope_row(float *x, int hd, const float *cs, const float *sn)
{
	const int half = hd / 2;
	for (int d = 0; d < half; d++) {
		float x1 = x[d], x2 = x[d + half];
		x[d] = x1 * cs[d] - x2 * sn[d];
		x[d + half] = x2 * cs[d] + x1 * sn[d];
	}
}

static int cpu_rope_kv(struct backend *be, void *qkvv, struct kv_cache *kv, int layer, int n_heads)
{
	struct cpu *c = cpu_of(be);
	if (!c->have_step) return lm_err(_("rope_kv: no step set"));
	if (layer < 0 || layer >= kv->n_layers) return lm_err(_("rope_kv: layer %d out of range"), layer);
	const int hd = kv->head_dim, nkv = kv->n_kv_heads, half = hd / 2;
	const int width = (n_heads + 2 * nkv) * hd;
	float cs[half > 0 ? half : 1], sn[half > 0 ? half : 1];
	for (int i = 0; i < c->st.n; i++) {
		const int pos = c->st.pos0 + i;
		const int blk = kv_block_of(c, kv, pos);
		if (blk < 0) return lm_err(_("rope_kv: position %d is not covered by the block table"), pos);
		for (int d = 0; d < half; d++) {
			float a = (float)pos * c->st.inv_freq[d];
			cs[d] = cosf(a) * c->st.rope_mscale;
			sn[d] = sinf(a) * c->st.rope_mscale;
		}
		float *row = (float *)qkvv + (size_t)i * width;
		for (int h = 0; h < n_heads + nkv; h++) rope_row(row + (size_t)h * hd, hd, cs, sn); /* q heads, k heads */
		const int t = pos % kv->block_len;
		for (int h = 0; h < nkv; h++) {
			kv_store(kv, kv_row(kv, blk, layer, 0, h, t), row + (size_t)(n_heads + h) * hd);
			kv_store(kv, kv_row(kv, blk, layer, 1, h, t), row + (size_t)(n_heads + nkv + h) * hd);
		}
	}
	return LM_OK;
}

/* attention: one task per (token, KV head), which serves a group of nh/nkv q heads (transformers'
 * repeat_kv: KV head j serves q heads j*group .. j*group + group-1), so each cached K and V row is read and
 * dequantized once for the whole group. Threads take contiguous ranges of tasks. */
struct att_job {
	struct cpu *c;
	float *out;
	const float *qkv;
	const struct kv_cache *kv;
	int layer, n_heads;
	int *bad; /* set if a position is not covered by the block table */
};

SIMD_CLONES static void att_worker(void *arg, int tid, int nt)
{
	struct att_job *jb = arg;
	struct cpu *c = jb->c;
	const struct kv_cache *kv = jb->kv;
	const int hd = kv->head_dim, nkv = kv->n_kv_heads, nh = jb->n_heads, bl = kv->block_len;
	const int width = (nh + 2 * nkv) * hd, group = nh / nkv, ctx_max = c->st.pos0 + c->st.n;
	const float scale = 1.0f / sqrtf((float)hd);
	float *rowbuf = c->scratch[tid];         /* [hd] a dequantized K or V row */
	float *acc = rowbuf + hd;                /* [group][hd] outputs */
	float *score = acc + (size_t)group * hd; /* [group][ctx_max] scores, then probabilities */
	int lo, hi;
	split(c->st.n * nkv, tid, nt, &lo, &hi);
	for (int task = lo; task < hi; task++) {
		const int i = task / nkv, kvh = task % nkv;
		const int ctx = c->st.pos0 + i + 1; /* causal: positions 0 .. pos0 + i */
		const float *q = jb->qkv + (size_t)i * width + (size_t)kvh * group * hd; /* [group][hd] */
		/* scores q . k / sqrt(hd), a block of positions at a time */
		for (int p0 = 0; p0 < ctx; p0 += bl) {
			const int blk = kv_block_of(c, kv, p0);
			if (blk < 0) {
				*jb->bad = p0 + 1;
				return;
			}
			for (int p = p0; p < MIN(ctx, p0 + bl); p++) {
				const float *k = kv_load(kv, kv_row(kv, blk, jb->layer, 0, kvh, p - p0), rowbuf);
				for (int g = 0; g < group; g++)
					score[(size_t)g * ctx_max + p] = dot(q + (size_t)g * hd, k, hd) * scale;
			}
		}
		/* softmax per head, in float */
		for (int g = 0; g < group; g++) {
			float *sc = score + (size_t)g * ctx_max, mx = -INFINITY, sum = 0;
			for (int p = 0; p < ctx; p++) mx = sc[p] > mx ? sc[p] : mx; /* (fmaxf is a libm call) */
			for (int p = 0; p < ctx; p++) {
				sc[p] = expf(sc[p] - mx);
				sum += sc[p];
			}
			for (int p = 0; p < ctx; p++) sc[p] /= sum;
		}
		/* out = probabilities . v */
		memset(acc, 0, sizeof(float) * (size_t)group * hd);
		for (int p0 = 0; p0 < ctx; p0 += bl) {
			const int blk = kv_block_of(c, kv, p0);
			for (int p = p0; p < MIN(ctx, p0 + bl); p++) {
				const float *v = kv_load(kv, kv_row(kv, blk, jb->layer, 1, kvh, p - p0), rowbuf);
				for (int g = 0; g < group; g++)
					axpy(acc + (size_t)g * hd, score[(size_t)g * ctx_max + p], v, hd);
			}
		}
		memcpy(jb->out + (size_t)i * nh * hd + (size_t)kvh * group * hd, acc, sizeof(float) * (size_t)group * hd);
	}
}

static int cpu_attention(struct backend *be, void *out, const void *qkv, const struct kv_cache *kv, int layer,
			 int n_heads)
{
	struct cpu *c = cpu_of(be);
	if (!c->have_step) return lm_err(_("attention: no step set"));
	if (layer < 0 || layer >= kv->n_layers) return lm_err(_("attention: layer %d out of range"), layer);
	if (n_heads <= 0 || n_heads % kv->n_kv_heads)
		return lm_err(_("attention: %d heads do not group over %d KV heads"), n_heads, kv->n_kv_heads);
	const size_t group = n_heads / kv->n_kv_heads;
	if (scratch_reserve(c, (1 + group) * kv->head_dim + group * (size_t)(c->st.pos0 + c->st.n))) return LM_ERR;
	int bad = 0;
	struct att_job jb = { .c = c, .out = out, .qkv = qkv, .kv = kv, .layer = layer, .n_heads = n_heads, .bad = &bad };
	pool_run(&c->pool, att_worker, &jb);
	if (bad) return lm_err(_("attention: position %d is not covered by the block table"), bad - 1);
	return LM_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Creation */

static void cpu_destroy(struct backend *be)
{
	struct cpu *c = cpu_of(be);
	pool_destroy(&c->pool);
	for (int t = 0; c->scratch && t < c->pool.n; t++) cpu_free(be, c->scratch[t]);
	free(c->scratch);
	free(c->fold_ss);
	pthread_mutex_destroy(&c->mem_mu);
	free(c);
}

static const struct backend_i cpu_i = {
	.name = "cpu",
	.destroy = cpu_destroy,
	.alloc = cpu_alloc,
	.free = cpu_free,
	.upload = cpu_upload,
	.download = cpu_download,
	.sync = cpu_sync,
	.mem_stats = cpu_mem_stats,
	.weight_load = cpu_weight_load,
	.weight_random = cpu_weight_random,
	.weight_free = weight_free_parts,
	.kv_alloc = cpu_kv_alloc,
	.kv_free = cpu_kv_free,
	.kv_bytes_per_token = cpu_kv_bytes_per_token,
	.set_step = cpu_set_step,
	.embed = cpu_embed,
	.add_rmsnorm = cpu_add_rmsnorm,
	.matmul = cpu_matmul,
	.qk_norm = cpu_qk_norm,
	.rope_kv = cpu_rope_kv,
	.attention = cpu_attention,
	.swiglu = cpu_swiglu,
	.matmul_residual = cpu_matmul_residual,
	.norm_matmul = cpu_norm_matmul,
	.logits = cpu_logits,
	.argmax = NULL,      /* forward() takes the logits and picks on the host */
	.sample = cpu_sample, /* the logits, then the host sampler (src/sampler.c) */
	.graph_begin = NULL, /* nothing to capture on the host */
	.graph_end = NULL,
};

/* LMTERM_THREADS if set (1..256; anything else is an error, where a bad value used to be ignored silently),
 * else the CPUs this process may run on; -1 with a message */
static int cpu_threads(void)
{
	const char *e = getenv("LMTERM_THREADS");
	if (e && *e) {
		char *end;
		errno = 0;
		long n = strtol(e, &end, 10);
		if (errno || *end || n < 1 || n > 256)
			return lm_err(_("LMTERM_THREADS='%s': give a number of threads from 1 to 256"), e), -1;
		return (int)n;
	}
	return MIN(lm_cpu_count(), 256);
}

static void cpu_model_name(char *out, size_t cap, int threads)
{
	char model[64] = "CPU";
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (f) {
		char line[256];
		while (fgets(line, sizeof line, f))
			if (strncmp(line, "model name", 10) == 0) {
				char *v = strchr(line, ':');
				if (v) {
					v++;
					while (*v == ' ' || *v == '\t') v++;
					v[strcspn(v, "\n")] = 0;
					snprintf(model, sizeof model, "%s", v);
				}
				break;
			}
		fclose(f);
	}
	/* a device name, as a GPU's is: not translated (bench --json reports it too), but "1 thread" all the same */
	snprintf(out, cap, "%.40s, %d %s", model, threads, threads == 1 ? "thread" : "threads");
}

struct backend *backend_cpu_create(void)
{
	struct cpu *c = calloc(1, sizeof *c);
	if (!c) {
		lm_err(_("cpu backend: out of memory"));
		return NULL;
	}
	pthread_mutex_init(&c->mem_mu, NULL);
	c->be.i = &cpu_i;
	c->be.act_dt = DT_F32;
	c->be.act_size = sizeof(float);
	c->be.ctx = c;
	int nt = cpu_threads();
	if (nt < 0) {
		pthread_mutex_destroy(&c->mem_mu);
		free(c);
		return NULL;
	}
	if (pool_init(&c->pool, nt)) {
		pool_destroy(&c->pool);
		pthread_mutex_destroy(&c->mem_mu);
		free(c);
		return NULL;
	}
	c->be.n_threads = c->pool.n;
	c->scratch = calloc((size_t)c->pool.n, sizeof *c->scratch);
	if (!c->scratch) {
		cpu_destroy(&c->be);
		lm_err(_("cpu backend: out of memory"));
		return NULL;
	}
	cpu_model_name(c->name, sizeof c->name, c->pool.n);
	const char *fe = getenv("LMTERM_FOLD");
	c->fold = fe && !strcmp(fe, "1");
	return &c->be;
}
