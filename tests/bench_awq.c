/* bench_awq: kernel-level speed of the W4A16 matmul (cuda/awq_gemm.cu) on the InternLM2.5-7B shapes, for
 * the GPU rounds (not a test: it asserts nothing; speed is measured, never asserted).
 *
 *   bench_awq decode     batch 1..8: the AWQ GEMV (whichever layout LMTERM_AWQ_LAYOUT selects) and the
 *                        fp16 GEMV (cuda/gemv.cu) for comparison. Each case is a CUDA graph of one launch
 *                        per copy of the weight, with enough copies (>= 400 MB) that nothing stays in the
 *                        L2; replayed, median of 7. Bytes = codes + scale/zero pairs + x + y (fp16: W + x + y).
 *   bench_awq prefill    n = 512 and 2048 through the backend (struct backend_i matmul: dequantize + cuBLAS
 *                        for AWQ), against the fp16 weight of the same shape; median of 5 synchronized calls.
 *
 * BENCH_AWQ_ONLY=wqkv|wo|w13|w2: that shape at batch 1 only (for a profiler). BENCH_AWQ_NB="1 8": those
 * batches only (default 1 2 3 4 6 8).
 * Prints one line per case with GB/s (decode) or TFLOP/s (prefill) and the ratio to the device-to-device
 * copy bandwidth (bytes read + written, best of 10 copies of 1 GiB). */
#include "config.h"
#include "backend.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if HAVE_CUDA
#include <cuda_runtime_api.h>
#include "kernels.h"

#define CK(x)                                                                                            \
	do {                                                                                             \
		cudaError_t e_ = (x);                                                                    \
		if (e_ != cudaSuccess) {                                                                 \
			printf("FAIL: %s: %s (line %d)\n", #x, cudaGetErrorString(e_), __LINE__);         \
			exit(1);                                                                         \
		}                                                                                        \
	} while (0)
#define LMOK(x)                                                                                          \
	do {                                                                                             \
		if ((x) != LM_OK) {                                                                      \
			printf("FAIL: %s: %s (line %d)\n", #x, lm_errmsg(), __LINE__);                    \
			exit(1);                                                                         \
		}                                                                                        \
	} while (0)

static const int shapes[][2] = { { 6144, 4096 }, { 4096, 4096 }, { 28672, 4096 }, { 4096, 14336 } };
static const char *names[] = { "wqkv", "wo", "w13", "w2" };

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

static double copy_bw(void)
{
	const size_t n = (size_t)1 << 30;
	void *a, *b;
	CK(cudaMalloc(&a, n));
	CK(cudaMalloc(&b, n));
	LMOK(k_fill_bytes(a, n, 7, 0));
	cudaEvent_t e0, e1;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	float best = 1e30f;
	for (int r = 0; r < 12; r++) {
		float ms;
		CK(cudaEventRecord(e0, 0));
		CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, 0));
		CK(cudaEventRecord(e1, 0));
		CK(cudaEventSynchronize(e1));
		CK(cudaEventElapsedTime(&ms, e0, e1));
		if (r >= 2 && ms < best) best = ms;
	}
	cudaFree(a), cudaFree(b), cudaEventDestroy(e0), cudaEventDestroy(e1);
	return 2.0 * n / (best * 1e-3);
}

/* median time of one launch (us): a graph of `copies` launches, replayed */
typedef int (*launch_fn)(int i, cudaStream_t s, void *ctx);
static double time_graph(launch_fn f, void *ctx, int copies)
{
	cudaStream_t st;
	CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
	for (int i = 0; i < copies; i++) LMOK(f(i, st, ctx)); /* warm-up, first-launch costs */
	CK(cudaStreamSynchronize(st));
	cudaGraph_t g;
	cudaGraphExec_t ex;
	CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
	for (int i = 0; i < copies; i++) LMOK(f(i, st, ctx));
	CK(cudaStreamEndCapture(st, &g));
	CK(cudaGraphInstantiate(&ex, g, 0));
	cudaEvent_t e0, e1;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	enum { REPS = 7 };
	float ms[REPS];
	CK(cudaGraphLaunch(ex, st));
	for (int r = 0; r < REPS; r++) {
		CK(cudaEventRecord(e0, st));
		CK(cudaGraphLaunch(ex, st));
		CK(cudaEventRecord(e1, st));
		CK(cudaEventSynchronize(e1));
		CK(cudaEventElapsedTime(&ms[r], e0, e1));
	}
	qsort(ms, REPS, sizeof(float), cmp_float);
	cudaGraphExecDestroy(ex);
	cudaGraphDestroy(g);
	cudaEventDestroy(e0);
	cudaEventDestroy(e1);
	cudaStreamDestroy(st);
	return ms[REPS / 2] * 1e3 / copies;
}

struct dctx {
	int N, K, nb, group;
	void **qw, **sz, **w16;
	void *x, *y;
};

static int launch_awq(int i, cudaStream_t s, void *p)
{
	struct dctx *c = p;
	return k_awq_gemv(c->y, c->x, c->qw[i], c->sz[i], NULL, c->nb, c->N, c->K, c->group, DT_F16, s);
}

static int launch_f16(int i, cudaStream_t s, void *p)
{
	struct dctx *c = p;
	return k_gemv(c->y, c->x, c->w16[i], NULL, c->nb, c->N, c->K, DT_F16, false, s);
}

static int launch_dequant(int i, cudaStream_t s, void *p)
{
	struct dctx *c = p;
	return k_awq_dequant(c->y, c->qw[i], c->sz[i], 0, c->N, c->N, c->K, c->group, DT_F16, s);
}

static void bench_decode(double bw, int group, bool with_f16)
{
	const char *only = getenv("BENCH_AWQ_ONLY"); /* one shape, batch 1 only (for ncu) */
	for (size_t si = 0; si < ARRAY_SIZE(shapes); si++) {
		if (only && strcmp(only, names[si])) continue;
		const int N = shapes[si][0], K = shapes[si][1];
		const size_t qb = (size_t)N * K / 2, sb = (size_t)N * (K / group) * 4, wb = (size_t)N * K * 2;
		int copies = (int)((400u << 20) / (qb + sb)) + 1, copies16 = (int)((400u << 20) / wb) + 1;
		if (copies < 2) copies = 2;
		if (copies16 < 2) copies16 = 2;
		struct dctx c = { .N = N, .K = K, .group = group };
		c.qw = calloc(copies, sizeof(void *));
		c.sz = calloc(copies, sizeof(void *));
		c.w16 = calloc(copies16, sizeof(void *));
		for (int i = 0; i < copies; i++) {
			CK(cudaMalloc(&c.qw[i], qb));
			CK(cudaMalloc(&c.sz[i], sb));
			LMOK(k_fill_bytes(c.qw[i], qb, 100 + i, 0));
			LMOK(k_fill_half2(c.sz[i], sb / 4, 1e-3f, 8.f, 0));
		}
		if (with_f16)
			for (int i = 0; i < copies16; i++) {
				CK(cudaMalloc(&c.w16[i], wb));
				LMOK(k_fill_random(c.w16[i], (size_t)N * K, 0.02f, 200 + i, DT_F16, 0));
			}
		CK(cudaMalloc(&c.x, (size_t)8 * K * 2));
		CK(cudaMalloc(&c.y, (size_t)8 * N * 2));
		LMOK(k_fill_random(c.x, (size_t)8 * K, 1.f, 3, DT_F16, 0));
		CK(cudaDeviceSynchronize());
		int nbs[8] = { 1, 2, 3, 4, 6, 8 }, nnb = 6;
		const char *nbe = getenv("BENCH_AWQ_NB"); /* e.g. "1 8": those batches only */
		if (nbe && *nbe) {
			nnb = 0;
			for (char *p = (char *)nbe, *q; nnb < 8; p = q) {
				const long v = strtol(p, &q, 10);
				if (q == p) break;
				if (v >= 1 && v <= 8) nbs[nnb++] = (int)v;
			}
		}
		for (int b = 0; b < (only ? 1 : nnb); b++) {
			c.nb = nbs[b];
			const double io = (double)c.nb * (K + N) * 2;
			const double t = time_graph(launch_awq, &c, copies);
			const double gbs = (qb + sb + io) / (t * 1e-6) / 1e9;
			printf("decode %-4s [%5d x %5d] g%d n %d layout %-5s: %8.2f us %7.0f GB/s %5.1f%% of copy", names[si], N,
			       K, group, c.nb, awq_tiled_layout(N, K, group) ? "tiled" : "row", t, gbs,
			       100 * gbs * 1e9 / bw);
			if (with_f16) {
				const double t16 = time_graph(launch_f16, &c, copies16);
				const double g16 = (wb + io) / (t16 * 1e-6) / 1e9;
				printf(" | fp16 gemv %8.2f us %7.0f GB/s %5.1f%%; awq/fp16 time %.3f", t16, g16,
				       100 * g16 * 1e9 / bw, t / t16);
			}
			printf("\n");
			fflush(stdout);
		}
		if (with_f16) { /* the prefill's dequantization alone: codes + scales read, fp16 written */
			cudaFree(c.y);
			CK(cudaMalloc(&c.y, wb));
			const double t = time_graph(launch_dequant, &c, copies < 4 ? copies : 4);
			const double gbs = (qb + sb + wb) / (t * 1e-6) / 1e9;
			printf("dequant %-4s [%5d x %5d] g%d: %8.2f us %7.0f GB/s %5.1f%% of copy\n", names[si], N, K, group, t,
			       gbs, 100 * gbs * 1e9 / bw);
		}
		for (int i = 0; i < copies; i++) cudaFree(c.qw[i]), cudaFree(c.sz[i]);
		for (int i = 0; i < copies16 && with_f16; i++) cudaFree(c.w16[i]);
		cudaFree(c.x), cudaFree(c.y);
		free(c.qw), free(c.sz), free(c.w16);
	}
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double time_matmul(struct backend *be, void *y, void *x, struct weight *w, int n)
{
	double t[5];
	LMOK(be->i->matmul(be, y, x, w, n)); /* warm-up: scratch, cuBLAS heuristics */
	LMOK(be->i->sync(be));
	for (int r = 0; r < 5; r++) {
		double t0 = now();
		LMOK(be->i->matmul(be, y, x, w, n));
		LMOK(be->i->sync(be));
		t[r] = now() - t0;
	}
	for (int i = 0; i < 5; i++) /* median */
		for (int j = i + 1; j < 5; j++)
			if (t[j] < t[i]) {
				double u = t[i];
				t[i] = t[j], t[j] = u;
			}
	return t[2];
}

static void bench_prefill(void)
{
	struct backend *be = backend_cuda_create(DT_F16);
	if (!be) {
		printf("FAIL: backend: %s\n", lm_errmsg());
		exit(1);
	}
	const int ns[] = { 512, 2048 };
	for (size_t si = 0; si < ARRAY_SIZE(shapes); si++) {
		const int N = shapes[si][0], K = shapes[si][1];
		struct weight wq = { .group = 128 }, wf = { 0 };
		LMOK(be->i->weight_random(be, &wq, DT_Q4, N, K, 0.02f, 11));
		LMOK(be->i->weight_random(be, &wf, DT_F16, N, K, 0.02f, 12));
		for (size_t b = 0; b < ARRAY_SIZE(ns); b++) {
			const int n = ns[b];
			void *x = be->i->alloc(be, (size_t)n * K * 2, MEM_ACT), *y = be->i->alloc(be, (size_t)n * N * 2, MEM_ACT);
			if (!x || !y) LMOK(LM_ERR);
			LMOK(k_fill_random(x, (size_t)n * K, 1.f, 5, DT_F16, 0));
			LMOK(be->i->sync(be));
			const double tq = time_matmul(be, y, x, &wq, n), tf = time_matmul(be, y, x, &wf, n);
			const double fl = 2.0 * n * N * K;
			printf("prefill %-4s [%5d x %5d] n %4d: awq %8.1f us %6.0f TFLOP/s | fp16 %8.1f us %6.0f TFLOP/s | "
			       "awq/fp16 time %.3f\n",
			       names[si], N, K, n, tq * 1e6, fl / tq / 1e12, tf * 1e6, fl / tf / 1e12, tq / tf);
			fflush(stdout);
			be->i->free(be, x);
			be->i->free(be, y);
		}
		be->i->weight_free(be, &wq);
		be->i->weight_free(be, &wf);
	}
	backend_destroy(be);
}
#endif

int main(int argc, char **argv)
{
#if !HAVE_CUDA
	(void)argc, (void)argv;
	printf("SKIP: built without CUDA\n");
	return 77;
#else
	if (!backend_cuda_available()) {
		printf("SKIP: no usable CUDA GPU\n");
		return 77;
	}
	const char *mode = argc > 1 ? argv[1] : "decode";
	if (!strcmp(mode, "prefill")) {
		bench_prefill();
		return 0;
	}
	const double bw = copy_bw();
	struct cudaDeviceProp p;
	CK(cudaGetDeviceProperties(&p, 0));
	printf("device %s, %d SMs, L2 %d MB, copy bandwidth %.0f GB/s\n", p.name, p.multiProcessorCount,
	       p.l2CacheSize >> 20, bw / 1e9);
	const int group = argc > 2 ? atoi(argv[2]) : 128;
	bench_decode(bw, group, argc > 3 && !strcmp(argv[3], "f16"));
	return 0;
#endif
}
