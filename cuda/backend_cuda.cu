// backend_cuda.cu: the CUDA backend: struct backend_i on one GPU and one stream.
//
// - Memory: every device allocation goes through cu_alloc() with a category; a table of live allocations
//   gives exact bytes and peaks per category. Device free/total and this process's usage come from NVML
//   (libnvidia-ml.so.1 loaded with dlopen, so the program runs where the driver's library is missing),
//   else cudaMemGetInfo. What the driver gave the process before our first allocation (context, cuBLAS)
//   is measured once and reported as mem_stats.runtime.
// - Activations in the model's type: F16 for F16 models, BF16 for BF16 models, F16 for F32 models (the
//   10-bit mantissa keeps the golden tests tight; F32 checkpoints are small test models). Weights are
//   stored in the activation type (F32 converted on the device), norm weights and biases in float, AWQ
//   weights repacked (cuda/awq_gemm.cu).
// - GEMM: batch 1..8 (decode) by our own GEMV (cuda/gemv.cu, cuda/awq_gemm.cu): at that size the work is
//   reading the weights once, which cuBLAS does not do at the copy bandwidth. Larger batches (prefill) by
//   cuBLAS (tensor cores, fp32 accumulation); AWQ prefill dequantizes slabs of rows for cuBLAS.
// - Step state (ids, pos0, block table, RoPE frequencies) lives in device buffers that set_step fills with
//   asynchronous copies from pinned staging. The ops read it from there, so a decode step captured once
//   as a CUDA graph replays correctly for the next token. A graph is thrown away when anything is
//   allocated or freed (the pointers it baked in may be gone) or when the context outgrows the bound the
//   attention grid was sized for (rounded up to GRAPH_CTX_STEP tokens).
// - Errors: every CUDA/cuBLAS call is checked and turned into an lm_err message; nothing exits.
#include "config.h"
#include "backend.h"
#include "i18n.h"
#include "attention.h"
#include "kernels.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#define GRAPH_CTX_STEP 1024
#define MAX_GRAPHS BACKEND_MAX_GRAPHS
// AWQ prefill dequantizes at most this many weights at a time into the scratch (128 MiB in 16 bits: on the
// H200, 64 MiB made w2 and w13 at 512 tokens 8-15% slower, 16-32 MiB much slower, 256 MiB was no better)
#define AWQ_SLAB_ELEMS (64u << 20)
// logits are computed at most this many floats at a time (64 MiB)
#define LOGITS_CHUNK_FLOATS (16u << 20)

// ------------------------------------------------------------------------------------------------------
// NVML through dlopen (no nvml.h needed; the types are the stable ABI's)

typedef int nvml_ret;
typedef struct nvml_device *nvml_dev;
struct nvml_memory {
	unsigned long long total, free, used;
};
struct nvml_proc_v2 { // nvmlProcessInfo_t of the _v2 and _v3 calls
	unsigned int pid;
	unsigned long long used;
	unsigned int gpu_instance, compute_instance;
};
struct nvml_proc_v1 {
	unsigned int pid;
	unsigned long long used;
};
#define NVML_VALUE_NOT_AVAILABLE_ULL (~0ull)

struct nvml {
	void *lib;
	nvml_dev dev;
	nvml_ret (*shutdown)(void);
	nvml_ret (*mem)(nvml_dev, struct nvml_memory *);
	nvml_ret (*procs)(nvml_dev, unsigned int *, void *);
	bool procs_v2; // the call takes nvml_proc_v2 records
};

static void nvml_open(struct nvml *n, int cuda_dev)
{
	memset(n, 0, sizeof *n);
	void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!lib) return;
	nvml_ret (*init)(void) = (nvml_ret(*)(void))dlsym(lib, "nvmlInit_v2");
	nvml_ret (*by_bus)(const char *, nvml_dev *) =
		(nvml_ret(*)(const char *, nvml_dev *))dlsym(lib, "nvmlDeviceGetHandleByPciBusId_v2");
	n->shutdown = (nvml_ret(*)(void))dlsym(lib, "nvmlShutdown");
	n->mem = (nvml_ret(*)(nvml_dev, struct nvml_memory *))dlsym(lib, "nvmlDeviceGetMemoryInfo");
	void *p3 = dlsym(lib, "nvmlDeviceGetComputeRunningProcesses_v3");
	void *p2 = dlsym(lib, "nvmlDeviceGetComputeRunningProcesses_v2");
	void *p1 = dlsym(lib, "nvmlDeviceGetComputeRunningProcesses");
	n->procs = (nvml_ret(*)(nvml_dev, unsigned int *, void *))(p3 ? p3 : p2 ? p2 : p1);
	n->procs_v2 = p3 || p2;
	char bus[64];
	if (!init || !by_bus || !n->mem || init() != 0) {
		dlclose(lib);
		memset(n, 0, sizeof *n);
		return;
	}
	// the CUDA device's PCI address names the same GPU whatever CUDA_VISIBLE_DEVICES says
	if (cudaDeviceGetPCIBusId(bus, sizeof bus, cuda_dev) != cudaSuccess || by_bus(bus, &n->dev) != 0) {
		if (n->shutdown) n->shutdown();
		dlclose(lib);
		memset(n, 0, sizeof *n);
		return;
	}
	n->lib = lib;
}

static void nvml_close(struct nvml *n)
{
	if (!n->lib) return;
	if (n->shutdown) n->shutdown();
	dlclose(n->lib);
	memset(n, 0, sizeof *n);
}

// bytes the driver says this process uses on the device; false if it cannot say
static bool nvml_process_used(struct nvml *n, size_t *used)
{
	if (!n->lib || !n->procs) return false;
	unsigned int cnt = 256;
	void *buf = calloc(cnt, sizeof(struct nvml_proc_v2)); // big enough for either record
	if (!buf) return false;
	const struct nvml_proc_v2 *v2 = (const struct nvml_proc_v2 *)buf;
	const struct nvml_proc_v1 *v1 = (const struct nvml_proc_v1 *)buf;
	if (n->procs(n->dev, &cnt, buf) != 0) {
		free(buf);
		return false;
	}
	bool found = false;
	const unsigned int me = (unsigned int)getpid();
	for (unsigned int i = 0; i < cnt && i < 256; i++) {
		unsigned int pid = n->procs_v2 ? v2[i].pid : v1[i].pid;
		unsigned long long u = n->procs_v2 ? v2[i].used : v1[i].used;
		if (pid == me && u != NVML_VALUE_NOT_AVAILABLE_ULL) {
			*used = (size_t)u;
			found = true;
			break;
		}
	}
	free(buf);
	return found;
}

// ------------------------------------------------------------------------------------------------------
// state

struct graph_slot {
	cudaGraphExec_t exec;
	uint64_t gen;   // allocation generation it was captured in
	int bound;      // the max_ctx its attention launches were sized for
	int n;          // tokens per step
	float mscale;   // RoPE scale baked into it
	bool argmax;    // it ends with an argmax_start's lm_head and argmax: each launch starts an id
};

struct cuda_be {
	struct backend be;
	int dev;
	cudaStream_t s;
	cublasHandle_t blas;
	void *blas_ws;
	char name[64];
	struct nvml nvml;

	std::mutex mu; // the allocation table and counters (mem_stats may be read from another thread)
	std::unordered_map<void *, std::pair<size_t, int>> allocs;
	size_t cat[MEM_NCAT], peak[MEM_NCAT];
	uint64_t gen; // bumped by every alloc and free: captured graphs hold raw pointers
	size_t runtime;
	bool runtime_valid;

	// step state: device copies, pinned staging, and the host's view
	int32_t *d_ids, *d_blocks, *d_pos0;
	float *d_inv;
	int ids_cap, blocks_cap, inv_cap;
	void *h_stage; // pinned: [pos0][inv_cap floats][ids_cap][blocks_cap]; d_pos0 is the same on the device
	size_t stage_bytes;
	cudaEvent_t staged; // the last step's copies out of h_stage have finished
	bool stage_pending;
	std::vector<int32_t> ids; // host copy, for the range check
	int n, pos0, n_blocks;
	float mscale;
	bool have_step;
	int max_ctx; // attention's split bound for the ops being issued

	int sms;         // multiprocessors
	int kv_head_dim; // of the last cache allocated: the length of inv_freq
	int vocab;       // of the last embedding table used (graph replays check ids against it)
	int attn_nh, attn_hd;
	void *attn_ws;
	size_t attn_ws_bytes;

	float *d_logits;
	size_t logits_cap;
	int32_t *d_tok, *h_tok;
	// greedy decoding one step ahead (argmax_start, argmax_take): the argmax kernel writes each started id
	// into a slot of h_tok [1 + BACKEND_MAX_PENDING] (mapped: no copy in the stream), tok_ev[slot] marks it;
	// tok_head is the oldest slot not taken, tok_n how many are pending. tok_on_dev: d_tok holds the id of
	// the last step (argmax, sample, argmax_start), which a chained step embeds
	int32_t *h_tok_dev;
	cudaEvent_t tok_ev[BACKEND_MAX_PENDING];
	int tok_head, tok_n;
	bool tok_on_dev;
	// the last graph launched ends with an argmax that advanced the arena to position adv_pos0 (k_step_adv):
	// a chained step there with the same block table and frequencies needs no copy
	bool adv_valid;
	int adv_pos0;
	// device sampling (cu_sample): scratch, the penalty's stamps [smp_vocab], the history ids on the device
	// and the host copy of what was uploaded (only a changed tail is sent again)
	void *smp_ws;
	uint32_t *smp_seen;
	int smp_vocab;
	uint32_t smp_stamp;
	int32_t *d_hist, *h_hist;
	int hist_cap, n_hist_up;
	int smp_blocks; // cooperative grid size; 0 = not yet known
	bool smp_radix_only; // LMTERM_SAMPLE_FAST=0: never the sorted finish

	void *awq_scratch;
	size_t awq_scratch_bytes;
	// the norms folded into the AWQ GEMVs (matmul_residual, norm_matmul), unless LMTERM_FOLD=0: the sums of squares
	// between the two ops; NULL when not folding
	float *norm_part;
	size_t norm_part_cap; // floats: tokens x rows / 16

	struct graph_slot graphs[MAX_GRAPHS];
	int capturing;    // key + 1 while a capture is open
	bool eager;       // graph_begin ran the ops without a graph
	bool capture_bad; // an op failed while capturing
	bool capture_argmax; // argmax_start was captured
	double copy_bw;
};

static struct cuda_be *cb(struct backend *be) { return (struct cuda_be *)be->ctx; }

static int cuda_fail(cudaError_t e, const char *what)
{
	return lm_err(_("CUDA: %s: %s"), what, cudaGetErrorString(e));
}
#define CK(call, what)                                                                                          \
	do {                                                                                                    \
		cudaError_t e_ = (call);                                                                        \
		if (e_ != cudaSuccess) return cuda_fail(e_, what);                                              \
	} while (0)

static const char *blas_str(cublasStatus_t st)
{
	switch (st) {
	case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized";
	case CUBLAS_STATUS_ALLOC_FAILED: return "allocation failed";
	case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
	case CUBLAS_STATUS_ARCH_MISMATCH: return "architecture mismatch";
	case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
	case CUBLAS_STATUS_INTERNAL_ERROR: return "internal error";
	case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
	default: return "error";
	}
}

// an op's status; a failure while capturing poisons the capture (graph_end then drops it)
static int op_rc(struct cuda_be *c, int rc)
{
	if (rc && c->capturing) c->capture_bad = true;
	return rc;
}

static cudaDataType_t cuda_type(enum dtype dt)
{
	return dt == DT_BF16 ? CUDA_R_16BF : dt == DT_F32 ? CUDA_R_32F : CUDA_R_16F;
}

// ------------------------------------------------------------------------------------------------------
// memory

static void graphs_drop(struct cuda_be *c)
{
	for (int i = 0; i < MAX_GRAPHS; i++) {
		if (c->graphs[i].exec) cudaGraphExecDestroy(c->graphs[i].exec);
		memset(&c->graphs[i], 0, sizeof c->graphs[i]);
	}
}

static void *cu_alloc(struct backend *be, size_t bytes, enum mem_cat cat)
{
	struct cuda_be *c = cb(be);
	if ((int)cat < 0 || cat >= MEM_NCAT) {
		lm_err(_("CUDA: allocation with an unknown category %d"), (int)cat);
		return NULL;
	}
	if (c->capturing) {
		lm_err(_("CUDA: allocation of %zu bytes while a graph is being captured"), bytes);
		c->capture_bad = true;
		return NULL;
	}
	void *p = NULL;
	cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
	if (e != cudaSuccess) {
		cudaGetLastError(); // clear the sticky-less allocation error
		size_t fr = 0, tot = 0;
		cudaMemGetInfo(&fr, &tot);
		lm_err(_("CUDA: cannot allocate %.1f MiB of device memory (%.1f MiB free of %.1f MiB): %s"),
		       bytes / 1048576.0, fr / 1048576.0, tot / 1048576.0, cudaGetErrorString(e));
		return NULL;
	}
	std::lock_guard<std::mutex> lk(c->mu);
	try {
		c->allocs[p] = std::make_pair(bytes, (int)cat);
	} catch (...) { // host memory for the table: give the device memory back
		cudaFree(p);
		lm_err(_("out of memory"));
		return NULL;
	}
	c->cat[cat] += bytes;
	if (c->cat[cat] > c->peak[cat]) c->peak[cat] = c->cat[cat];
	c->gen++;
	return p;
}

static void cu_free(struct backend *be, void *p)
{
	struct cuda_be *c = cb(be);
	if (!p) return;
	{
		std::lock_guard<std::mutex> lk(c->mu);
		auto it = c->allocs.find(p);
		if (it == c->allocs.end()) return; // not ours: never hand it to cudaFree
		c->cat[it->second.second] -= it->second.first;
		c->allocs.erase(it);
		c->gen++;
	}
	graphs_drop(c);
	cudaFree(p);
}

static int cu_upload(struct backend *be, void *dst, const void *src, size_t bytes)
{
	struct cuda_be *c = cb(be);
	if (!bytes) return LM_OK;
	CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->s), "upload");
	CK(cudaStreamSynchronize(c->s), "upload");
	return LM_OK;
}

static int cu_download(struct backend *be, void *dst, const void *src, size_t bytes)
{
	struct cuda_be *c = cb(be);
	if (!bytes) return LM_OK;
	CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->s), "download");
	CK(cudaStreamSynchronize(c->s), "download");
	return LM_OK;
}

static int cu_sync(struct backend *be)
{
	CK(cudaStreamSynchronize(cb(be)->s), "synchronize");
	return LM_OK;
}

static int cu_mem_stats(struct backend *be, struct mem_stats *out)
{
	struct cuda_be *c = cb(be);
	memset(out, 0, sizeof *out);
	{
		std::lock_guard<std::mutex> lk(c->mu);
		for (int i = 0; i < MEM_NCAT; i++) {
			out->cat[i] = c->cat[i];
			out->peak[i] = c->peak[i];
		}
	}
	struct nvml_memory m;
	if (c->nvml.lib && c->nvml.mem(c->nvml.dev, &m) == 0) {
		out->total = (size_t)m.total;
		out->free = (size_t)m.free;
		out->total_valid = out->free_valid = true;
	} else {
		size_t fr, tot;
		if (cudaMemGetInfo(&fr, &tot) == cudaSuccess) {
			out->total = tot;
			out->free = fr;
			out->total_valid = out->free_valid = true;
		} else {
			cudaGetLastError();
		}
	}
	out->used_valid = nvml_process_used(&c->nvml, &out->used_by_process);
	out->runtime = c->runtime;
	out->runtime_valid = c->runtime_valid;
	snprintf(out->device_name, sizeof out->device_name, "%s", c->name);
	return LM_OK;
}

// ------------------------------------------------------------------------------------------------------
// weights

// host values of any float type -> device dst of type dt (act or F32); conversions go through float in
// chunks, the narrowing on the device
static int put_converted(struct backend *be, void *dst, enum dtype dst_dt, const void *src, enum dtype src_dt,
			 size_t n)
{
	struct cuda_be *c = cb(be);
	const size_t esz = dtype_size(src_dt);
	if (src_dt == dst_dt) return cu_upload(be, dst, src, n * esz);
	const size_t chunk = MIN(n, (size_t)(4u << 20));
	float *host = NULL, *tmp = NULL;
	if (src_dt != DT_F32 && !(host = (float *)malloc(chunk * sizeof(float)))) return lm_err(_("out of memory"));
	if (dst_dt != DT_F32) {
		tmp = (float *)cu_alloc(be, chunk * sizeof(float), MEM_OTHER);
		if (!tmp) {
			free(host);
			return LM_ERR;
		}
	}
	int rc = LM_OK;
	for (size_t i = 0; i < n && !rc; i += chunk) {
		const size_t m = MIN(chunk, n - i);
		const void *s = (const char *)src + i * esz;
		const float *f = (const float *)s;
		if (src_dt != DT_F32) {
			to_f32(host, s, src_dt, m);
			f = host;
		}
		if (dst_dt == DT_F32) {
			rc = cu_upload(be, (float *)dst + i, f, m * sizeof(float));
		} else {
			rc = cu_upload(be, tmp, f, m * sizeof(float));
			if (!rc) rc = k_f32_to_act((char *)dst + i * dtype_size(dst_dt), tmp, m, dst_dt, c->s);
			if (!rc) rc = cu_sync(be); // tmp is reused by the next chunk
		}
	}
	cu_free(be, tmp);
	free(host);
	return rc;
}

static int load_q4(struct backend *be, struct weight *w, const struct host_weight *src)
{
	const int N = src->rows, K = src->cols, g = src->group;
	if (g <= 0 || g % 8 || K % g || N % 8 || !src->qweight || !src->qzeros || !src->scales)
		return lm_err(_("AWQ weight [%d x %d]: unsupported shape or group size %d (the CUDA backend needs "
				"output rows a multiple of 8 and a group size a multiple of 8 dividing the inputs)"),
			      N, K, g);
	const size_t nw = (size_t)N * K / 8, nsz = (size_t)N * (K / g);
	uint32_t *qw = (uint32_t *)malloc(nw * 4);
	uint16_t *sz = (uint16_t *)malloc(nsz * 4);
	int rc = qw && sz ? LM_OK : lm_err(_("out of memory"));
	// w13 for the SwiGLU in the folded GEMV's epilogue (k_awq_gemv_norm): its rows interleaved (no
	// architecture has a bias on w13; one would stay in the plain order)
	const bool gu = cb(be)->norm_part && src->gate_up && !src->bias && awq_tiled_layout(N, K, g);
	if (!rc && awq_tiled_layout(N, K, g))
		awq_repack_tiled(qw, sz, src->qweight, src->qzeros, src->scales, N, K, g, gu);
	else if (!rc) awq_repack(qw, sz, src->qweight, src->qzeros, src->scales, N, K, g);
	if (!rc) rc = weight_alloc_part(be, w, &w->qweight, nw * 4);
	if (!rc) rc = weight_alloc_part(be, w, &w->scales, nsz * 4);
	if (!rc) rc = cu_upload(be, w->qweight, qw, nw * 4);
	if (!rc) rc = cu_upload(be, w->scales, sz, nsz * 4);
	free(qw);
	free(sz);
	if (rc) return LM_ERR;
	w->dt = DT_Q4;
	w->group = g;
	w->gu_interleaved = gu;
	k_pdl_prefer(true); // AWQ decode gains from PDL (cuda/fill.cu)
	return LM_OK;
}

static int cu_weight_load(struct backend *be, struct weight *w, const struct host_weight *src)
{
	memset(w, 0, sizeof *w);
	w->rows = src->rows;
	w->cols = src->cols;
	if (src->rows <= 0 || src->cols <= 0) return lm_err(_("weight of shape [%d x %d]"), src->rows, src->cols);
	int rc;
	if (src->dt == DT_Q4) {
		rc = load_q4(be, w, src);
	} else if (src->dt == DT_F32 || src->dt == DT_F16 || src->dt == DT_BF16) {
		const size_t nel = (size_t)src->rows * src->cols;
		// vectors (norm weights) in float; matrices in the activation type
		const enum dtype dt = src->rows == 1 ? DT_F32 : be->act_dt;
		rc = weight_alloc_part(be, w, &w->data, nel * dtype_size(dt));
		if (!rc) rc = put_converted(be, w->data, dt, src->data, src->dt, nel);
		w->dt = dt;
	} else {
		rc = lm_err(_("CUDA backend: weights of dtype %s are not supported"), dtype_name(src->dt));
	}
	if (!rc && src->bias) {
		if (src->bias_dt != DT_F32 && src->bias_dt != DT_F16 && src->bias_dt != DT_BF16)
			rc = lm_err(_("CUDA backend: bias of dtype %s is not supported"), dtype_name(src->bias_dt));
		else if (!(rc = weight_alloc_part(be, w, &w->bias, (size_t)src->rows * sizeof(float))))
			rc = put_converted(be, w->bias, DT_F32, src->bias, src->bias_dt, (size_t)src->rows);
	}
	if (rc) weight_free_parts(be, w);
	return rc;
}

static int cu_weight_random(struct backend *be, struct weight *w, enum dtype dt, int rows, int cols, float scale,
			    uint64_t seed)
{
	struct cuda_be *c = cb(be);
	const int group_hint = w->group; // model_init_dummy says the AWQ group size here
	const bool gate_up = w->gate_up; // and whether this is w13
	memset(w, 0, sizeof *w);
	w->rows = rows;
	w->cols = cols;
	if (rows <= 0 || cols <= 0) return lm_err(_("weight of shape [%d x %d]"), rows, cols);
	const size_t nel = (size_t)rows * cols;
	int rc;
	if (dt == DT_Q4) {
		const int g = group_hint > 0 ? group_hint : 128;
		if (g % 8 || cols % g || rows % 8)
			return lm_err(_("AWQ weight [%d x %d]: unsupported shape or group size %d"), rows, cols, g);
		const size_t nsz = (size_t)rows * (cols / g);
		rc = weight_alloc_part(be, w, &w->qweight, nel / 2);
		if (!rc) rc = weight_alloc_part(be, w, &w->scales, nsz * 4);
		if (!rc) rc = k_fill_bytes(w->qweight, nel / 2, seed, c->s);
		// zero point 8 centres the random codes; scale / 8 keeps |w| under scale
		if (!rc) rc = k_fill_half2(w->scales, nsz, scale / 8, 8.f, c->s);
		w->dt = DT_Q4;
		w->group = g;
		w->gu_interleaved = c->norm_part && gate_up && awq_tiled_layout(rows, cols, g); // random rows: any order
		k_pdl_prefer(true);
	} else if (dt == DT_F32 || dt == DT_F16 || dt == DT_BF16) {
		const enum dtype sdt = rows == 1 ? DT_F32 : be->act_dt;
		rc = weight_alloc_part(be, w, &w->data, nel * dtype_size(sdt));
		if (!rc) rc = k_fill_random(w->data, nel, scale, seed, sdt, c->s);
		w->dt = sdt;
		if (!rc && rows == 1) { // norm weights near 1, as model_init_dummy's own fallback makes them
			float *v = (float *)malloc(nel * sizeof(float));
			rc = v ? cu_download(be, v, w->data, nel * sizeof(float)) : lm_err(_("out of memory"));
			for (size_t i = 0; i < nel && !rc; i++) v[i] += 1.0f;
			if (!rc) rc = cu_upload(be, w->data, v, nel * sizeof(float));
			free(v);
		}
	} else {
		return lm_err(_("CUDA backend: weights of dtype %s are not supported"), dtype_name(dt));
	}
	if (!rc) rc = cu_sync(be);
	if (rc) weight_free_parts(be, w);
	return rc;
}

// ------------------------------------------------------------------------------------------------------
// KV cache (layout and launchers: cuda/kv_layout.cuh, cuda/attention.h)

static size_t cu_kv_bytes_per_token(struct backend *be, const struct kv_cache *kv)
{
	return attn_kv_bytes_per_token(kv, be->act_dt);
}

static int cu_kv_alloc(struct backend *be, struct kv_cache *kv)
{
	struct cuda_be *c = cb(be);
	kv->pool = NULL;
	kv->bytes = 0;
	if (kv->n_blocks <= 0) return lm_err(_("KV cache: %d blocks"), kv->n_blocks);
	if (attn_kv_check(kv, be->act_dt)) return LM_ERR;
	size_t bytes = attn_kv_pool_bytes(kv, be->act_dt);
	void *p = cu_alloc(be, bytes, MEM_KV);
	if (!p) return lm_err_prefix(_("KV cache (%d blocks of %d tokens): "), kv->n_blocks, kv->block_len);
	// defined contents: a bug that reads an unwritten slot then gives the same answer every run
	cudaError_t e = cudaMemsetAsync(p, 0, bytes, c->s);
	if (e != cudaSuccess) {
		cu_free(be, p);
		return cuda_fail(e, "KV cache clear");
	}
	kv->pool = p;
	kv->bytes = bytes;
	kv->bytes_per_token = attn_kv_bytes_per_token(kv, be->act_dt);
	c->kv_head_dim = kv->head_dim;
	k_carveout_need(attn_decode_cta_smem(kv, be->act_dt));
	return LM_OK;
}

static void cu_kv_free(struct backend *be, struct kv_cache *kv)
{
	cu_free(be, kv->pool);
	kv->pool = NULL;
	kv->bytes = 0;
}

// ------------------------------------------------------------------------------------------------------
// step state

// Whether the arena already holds step s: the graph before it advanced the state to s's position (and chained
// it), and s has the block table, frequencies and scale that were last uploaded (the staging buffer holds them).
// LMTERM_STEP_COPY=1 copies every step (measurement).
static bool step_advanced(struct cuda_be *c, const struct step *s, int nf)
{
	static const bool copy = env_is("LMTERM_STEP_COPY", "1");
	if (copy || !c->adv_valid || s->n != 1 || s->pos0 != c->adv_pos0 || s->n_blocks != c->n_blocks ||
	    s->rope_mscale != c->mscale || !c->h_stage)
		return false;
	const float *h_inv = (const float *)((char *)c->h_stage + 16);
	const int32_t *h_blocks = (const int32_t *)(h_inv + c->inv_cap) + c->ids_cap;
	return !memcmp(h_inv, s->inv_freq, sizeof(float) * (size_t)nf) &&
	       !memcmp(h_blocks, s->blocks, sizeof(int32_t) * (size_t)s->n_blocks);
}

// the slot of h_tok (and tok_ev) that the next id started fills (argmax_start)
static int tok_next_slot(const struct cuda_be *c)
{
	return (c->tok_head + c->tok_n) % BACKEND_MAX_PENDING;
}

// The step's state into the staging buffer (the previous copy out of it: cu_set_step), then up in one copy to
// the arena (its layout: cu_set_step)
static int step_upload(struct cuda_be *c, const struct step *s, int nf)
{
	const size_t need = 16 + ((size_t)c->inv_cap + c->ids_cap + c->blocks_cap) * 4;
	if (c->stage_bytes < need) {
		if (c->h_stage) cudaFreeHost(c->h_stage);
		c->h_stage = NULL;
		c->stage_bytes = 0;
		CK(cudaHostAlloc(&c->h_stage, need, cudaHostAllocDefault), "pinned staging buffer");
		c->stage_bytes = need;
	}
	char *h = (char *)c->h_stage;
	int32_t *h_pos0 = (int32_t *)h;
	float *h_inv = (float *)(h + 16);
	int32_t *h_ids = (int32_t *)(h_inv + c->inv_cap);
	int32_t *h_blocks = h_ids + c->ids_cap;
	h_pos0[0] = s->pos0;
	h_pos0[1] = s->chain; // the embedding's flag: the token is d_tok
	h_pos0[2] = tok_next_slot(c); // the slot of h_tok an argmax_start fills
	memcpy(h_inv, s->inv_freq, (size_t)nf * sizeof(float));
	for (int i = 0; i < nf; i++) { // the angle as the device forms it (a float product), then exact sin/cos
		const double a = (double)((float)s->pos0 * s->inv_freq[i]);
		h_inv[nf + i] = (float)cos(a);
		h_inv[2 * nf + i] = (float)sin(a);
	}
	if (!s->chain) memcpy(h_ids, s->ids, (size_t)s->n * sizeof(int32_t));
	memcpy(h_blocks, s->blocks, (size_t)s->n_blocks * sizeof(int32_t));
	CK(cudaMemcpyAsync(c->d_pos0, h, (size_t)((char *)(h_blocks + s->n_blocks) - h), cudaMemcpyHostToDevice, c->s),
	   "step state");
	CK(cudaEventRecord(c->staged, c->s), "step state");
	c->stage_pending = true;
	return LM_OK;
}

static int cu_set_step(struct backend *be, const struct step *s)
{
	struct cuda_be *c = cb(be);
	if (c->capturing) return lm_err(_("set_step: a graph capture is open"));
	if (s->n <= 0 || s->pos0 < 0 || (!s->ids && !s->chain) || !s->inv_freq || !s->blocks || s->n_blocks <= 0)
		return lm_err(_("set_step: bad step (n %d, pos0 %d, %d blocks)"), s->n, s->pos0, s->n_blocks);
	if (s->chain && (s->n != 1 || !c->tok_on_dev))
		return lm_err(_("set_step: a chained step needs one token and a device argmax before it"));
	if (c->kv_head_dim <= 0) return lm_err(_("set_step: no KV cache has been allocated"));
	const int nf = c->kv_head_dim / 2;
	// the previous step's copy must be out of the staging buffer and the arena before either is replaced
	if (c->stage_pending) CK(cudaEventSynchronize(c->staged), "step state");
	c->stage_pending = false;
	// One device arena laid out as the pinned staging buffer, [pos0, 16 bytes][inv_cap floats][ids_cap]
	// [blocks_cap], so that a step's state goes up in one copy: four copies were four operations in the stream
	// before the step's first kernel, and four API calls on the host while the GPU waited for them.
	// d_inv: inv_freq [nf], then cos [nf] and sin [nf] of pos0 * inv_freq[i] (attn_step.rope_cs).
	bool fresh = false; // a new arena: nothing of the step on the device yet
	if (c->ids_cap < s->n || c->blocks_cap < s->n_blocks || c->inv_cap < 3 * nf) {
		const int ids_cap = MAX(s->n, 2 * c->ids_cap), blocks_cap = MAX(s->n_blocks, 2 * c->blocks_cap);
		const int inv_cap = MAX(3 * nf, c->inv_cap);
		char *d = (char *)cu_alloc(be, 16 + ((size_t)inv_cap + ids_cap + blocks_cap) * 4, MEM_OTHER);
		if (!d) return LM_ERR;
		cu_free(be, c->d_pos0); // the previous arena (its base), if any
		c->d_pos0 = (int32_t *)d;
		c->d_inv = (float *)(d + 16);
		c->d_ids = (int32_t *)(c->d_inv + inv_cap);
		c->d_blocks = c->d_ids + ids_cap;
		c->ids_cap = ids_cap;
		c->blocks_cap = blocks_cap;
		c->inv_cap = inv_cap;
		fresh = true;
	}
	// the argmax before a chained step may have made its state on the device already: no copy then
	const bool advanced = !fresh && s->chain && step_advanced(c, s, nf);
	c->adv_valid = false;
	if (!advanced && step_upload(c, s, nf)) return LM_ERR;
	try {
		if (s->chain) c->ids.clear(); // an argmax's id: in the vocabulary of the lm_head
		else c->ids.assign(s->ids, s->ids + s->n);
	} catch (...) {
		return lm_err(_("out of memory"));
	}
	c->n = s->n;
	c->pos0 = s->pos0;
	c->n_blocks = s->n_blocks;
	c->mscale = s->rope_mscale;
	c->max_ctx = s->pos0 + s->n;
	c->have_step = true;
	return LM_OK;
}

static struct attn_step attn_st(struct cuda_be *c)
{
	struct attn_step st;
	st.pos0 = c->d_pos0;
	st.blocks = c->d_blocks;
	st.inv_freq = c->d_inv;
	st.rope_cs = c->d_inv + c->kv_head_dim / 2;
	st.rope_mscale = c->mscale;
	st.n = c->n;
	st.max_ctx = c->max_ctx;
	return st;
}

static int check_ids(struct cuda_be *c, int vocab)
{
	for (int i = 0; i < (int)c->ids.size(); i++)
		if (c->ids[i] < 0 || c->ids[i] >= vocab)
			return lm_err(_("token id %d is outside the vocabulary (0..%d)"), c->ids[i], vocab - 1);
	return LM_OK;
}

// ------------------------------------------------------------------------------------------------------
// ops

static int cu_embed(struct backend *be, void *x, const struct weight *table)
{
	struct cuda_be *c = cb(be);
	if (!c->have_step) return op_rc(c, lm_err(_("embed: no step set")));
	if (table->dt != be->act_dt || !table->data) return op_rc(c, lm_err(_("embed: the embedding table must be dense")));
	if (check_ids(c, table->rows)) return op_rc(c, LM_ERR);
	c->vocab = table->rows;
	return op_rc(c, k_embed(x, table->data, c->d_ids, c->d_pos0 + 1, c->d_tok, c->n, table->cols, table->rows,
				be->act_dt, c->s));
}

// The first layer's norm in the embedding's kernel: one kernel and one wait fewer per step. LMTERM_EMBED_NORM=0:
// two kernels (measurement).
static int cu_embed_norm(struct backend *be, void *x, void *h, const struct weight *table, const struct weight *w,
			 int n, float eps)
{
	struct cuda_be *c = cb(be);
	static const bool off = env_is("LMTERM_EMBED_NORM", "0");
	if (off || !c->have_step || table->dt != be->act_dt || !table->data || w->dt != DT_F32 || !w->data ||
	    w->cols != table->cols || !k_embed_rmsnorm_supported(table->cols))
		return 1;
	if (check_ids(c, table->rows)) return op_rc(c, LM_ERR);
	c->vocab = table->rows;
	return op_rc(c, k_embed_rmsnorm(h, x, table->data, c->d_ids, c->d_pos0 + 1, c->d_tok, table->rows,
					(const float *)w->data, n, table->cols, eps, be->act_dt, c->s));
}

static int cu_add_rmsnorm(struct backend *be, void *h, void *x, const void *dx, const struct weight *w, int n,
			  float eps)
{
	struct cuda_be *c = cb(be);
	if (w->dt != DT_F32 || !w->data) return op_rc(c, lm_err(_("rmsnorm: the norm weight must be a float vector")));
	return op_rc(c, k_add_rmsnorm(h, x, dx, (const float *)w->data, n, w->cols, eps, be->act_dt, c->s));
}

static int cu_qk_norm(struct backend *be, void *qkv, const struct weight *qn, const struct weight *kn, int n,
		      int n_heads, int n_kv_heads, float eps)
{
	struct cuda_be *c = cb(be);
	if (qn->dt != DT_F32 || kn->dt != DT_F32 || !qn->data || !kn->data || qn->rows != 1 || kn->rows != 1 ||
	    qn->cols != kn->cols)
		return op_rc(c, lm_err(_("qk_norm: the norm weights must be float vectors of head_dim")));
	return op_rc(c, k_qk_norm(qkv, (const float *)qn->data, (const float *)kn->data, n, n_heads, n_kv_heads,
				  qn->cols, eps, be->act_dt, c->s));
}

// y[n][N] = x[n][K] . W^T through cuBLAS; A is W (row-major [N][K] = column-major K x N, transposed)
static int blas_gemm(struct cuda_be *c, void *y, cudaDataType_t yt, const void *x, const void *w, enum dtype wdt,
		     int n, int N, int K, int ldy)
{
	const float one = 1.f, zero = 0.f;
	cublasStatus_t st = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, n, K, &one, w, cuda_type(wdt), K, x,
					 cuda_type(wdt), K, &zero, y, yt, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
	if (st != CUBLAS_STATUS_SUCCESS)
		return lm_err(_("cuBLAS: GEMM [%d x %d] x [%d x %d]^T: %s"), n, K, N, K, blas_str(st));
	return LM_OK;
}

static int awq_scratch(struct backend *be, size_t bytes)
{
	struct cuda_be *c = cb(be);
	if (c->awq_scratch_bytes >= bytes) return LM_OK;
	void *p = cu_alloc(be, bytes, MEM_OTHER);
	if (!p) return LM_ERR;
	cu_free(be, c->awq_scratch);
	c->awq_scratch = p;
	c->awq_scratch_bytes = bytes;
	return LM_OK;
}

// AWQ through cuBLAS: dequantize slabs of output rows into the scratch, one GEMM per slab
static int awq_gemm(struct backend *be, void *y, const void *x, const struct weight *w, int n)
{
	struct cuda_be *c = cb(be);
	const int N = w->rows, K = w->cols;
	int slab = (int)MIN((size_t)N, MAX((size_t)64, AWQ_SLAB_ELEMS / (size_t)K));
	slab = slab >= 64 ? slab / 16 * 16 : slab; // whole row tiles of the tiled layout
	if (awq_scratch(be, (size_t)slab * K * be->act_size)) return LM_ERR;
	for (int r0 = 0; r0 < N; r0 += slab) {
		const int rows = MIN(slab, N - r0);
		if (k_awq_dequant(c->awq_scratch, (const uint32_t *)w->qweight, w->scales, r0, rows, N, K, w->group,
				  be->act_dt, c->s))
			return LM_ERR;
		if (blas_gemm(c, (char *)y + (size_t)r0 * be->act_size, cuda_type(be->act_dt), x, c->awq_scratch,
			      be->act_dt, n, rows, K, N))
			return LM_ERR;
	}
	return w->bias ? k_add_bias(y, (const float *)w->bias, n, N, be->act_dt, c->s) : LM_OK;
}

static int cu_matmul(struct backend *be, void *y, const void *x, const struct weight *w, int n)
{
	struct cuda_be *c = cb(be);
	const int N = w->rows, K = w->cols;
	if (n <= 0) return LM_OK;
	if (w->dt == DT_Q4) {
		if (k_awq_gemv_supported(n, N, K, w->group))
			return op_rc(c, k_awq_gemv(y, x, (const uint32_t *)w->qweight, w->scales, (const float *)w->bias, n,
						   N, K, w->group, be->act_dt, c->s));
		return op_rc(c, awq_gemm(be, y, x, w, n));
	}
	if (w->dt != be->act_dt || !w->data)
		return op_rc(c, lm_err(_("matmul: weight of dtype %s with %s activations"), dtype_name(w->dt),
				       dtype_name(be->act_dt)));
	if (k_gemv_supported(n, K))
		return op_rc(c, k_gemv(y, x, w->data, (const float *)w->bias, n, N, K, be->act_dt, false, c->s));
	if (blas_gemm(c, y, cuda_type(be->act_dt), x, w->data, w->dt, n, N, K, N)) return op_rc(c, LM_ERR);
	if (w->bias) return op_rc(c, k_add_bias(y, (const float *)w->bias, n, N, be->act_dt, c->s));
	return LM_OK;
}

// w13 and SwiGLU: fused in the GEMV at batch 1..8 (16-bit weights), else the GEMM then the swiglu kernel.
// AWQ: two fused tiled kernels were measured and dropped (H200, 2026-12-04): with two register stages
// 24.8-32.2 us against 21.7 + 2.3; one block on the gate and the up tile, 21.1 us against 21.0 + 2.3 as an
// op, but no faster as a decode step under PDL (494.0 and 500.1 against 498.8 tokens/s), so AWQ takes the
// two ops.
static int cu_matmul_swiglu(struct backend *be, void *out, void *gu, const void *x, const struct weight *w, int n)
{
	struct cuda_be *c = cb(be);
	if (n <= 0) return LM_OK;
	if (w->dt == be->act_dt && w->data && w->rows % 2 == 0 && k_gemv_supported(n, w->cols))
		return op_rc(c, k_gemv_swiglu(out, x, w->data, (const float *)w->bias, n, w->rows, w->cols, be->act_dt,
					      c->s));
	if (cu_matmul(be, gu, x, w, n)) return LM_ERR;
	return op_rc(c, k_swiglu(out, gu, n, w->rows / 2, w->gu_interleaved, be->act_dt, c->s));
}

// The norms folded into the AWQ GEMVs (backend.h; cuda/awq_gemm.cu, struct tile_epi), unless LMTERM_FOLD=0: wo
// and w2 end their residual branch, wqkv and w13 apply the norm's scale. A layer is then four GEMVs and the
// attention: the two add_rmsnorm kernels and the swiglu kernel (2-2.5 us each on the H200 at batch 1, mostly
// launch and ramp) are gone.
static int cu_matmul_residual(struct backend *be, void *x, void *xw, const void *a, const struct weight *w,
			      const struct weight *nw, int n)
{
	struct cuda_be *c = cb(be);
	const int N = w->rows, K = w->cols;
	if (!c->norm_part || n <= 0 || w->dt != DT_Q4 || w->gu_interleaved || nw->dt != DT_F32 || !nw->data ||
	    nw->cols != N || (size_t)n * (N / 16) > c->norm_part_cap || !k_awq_fold_supported(n, N, K, w->group))
		return 1;
	return op_rc(c, k_awq_gemv_residual(x, xw, c->norm_part, a, (const uint32_t *)w->qweight, w->scales,
					    (const float *)w->bias, (const float *)nw->data, n, N, K, w->group, be->act_dt,
					    c->s));
}

static int cu_norm_matmul(struct backend *be, void *y, void *gu, void *xw, const struct weight *w, int n, float eps)
{
	struct cuda_be *c = cb(be);
	const int N = w->rows, K = w->cols;
	if (!c->norm_part) return op_rc(c, lm_err(_("norm_matmul: no matmul_residual before it")));
	if (n <= 0) return LM_OK;
	if (w->dt == DT_Q4 && (!gu || w->gu_interleaved) && (size_t)n * (K / 16) <= c->norm_part_cap &&
	    k_awq_fold_supported(n, N, K, w->group))
		return op_rc(c, k_awq_gemv_norm(y, xw, c->norm_part, eps, gu != NULL, (const uint32_t *)w->qweight,
						w->scales, (const float *)w->bias, n, N, K, w->group, be->act_dt, c->s));
	// a weight the epilogue cannot take: finish the norm (xw becomes h), then the plain op
	if (op_rc(c, k_norm_apply(xw, c->norm_part, n, K, eps, be->act_dt, c->s))) return LM_ERR;
	return gu ? cu_matmul_swiglu(be, y, gu, xw, w, n) : cu_matmul(be, y, xw, w, n);
}

static int cu_rope_kv(struct backend *be, void *qkv, struct kv_cache *kv, int layer, int n_heads)
{
	struct cuda_be *c = cb(be);
	if (!c->have_step) return op_rc(c, lm_err(_("rope_kv: no step set")));
	struct attn_step st = attn_st(c);
	return op_rc(c, attn_launch_rope_kv(qkv, be->act_dt, kv, layer, n_heads, &st, c->s));
}

// the split-K partials of decode attention; its largest size does not depend on the context
static size_t attn_ws_need(int nh, int hd, int n) { return attn_workspace_bytes(nh, hd, n, 1 << 30); }

// attention and rope_attention: the decode path's split-K workspace, sized outside captures
static int attn_ws_ensure(struct backend *be, const struct kv_cache *kv, int n_heads)
{
	struct cuda_be *c = cb(be);
	c->attn_nh = n_heads;
	c->attn_hd = kv->head_dim;
	// attn_launch_attention takes the split-K path while the prefill grid would leave most multiprocessors
	// idle; size its workspace outside captures (a decode graph is sized for any context up front)
	const int rows = c->n * (n_heads / MAX(kv->n_kv_heads, 1));
	const bool split = 2 * ((rows + 63) / 64 * kv->n_kv_heads) < c->sms;
	const size_t need = !split ? 0
			    : c->n == 1 ? attn_ws_need(n_heads, kv->head_dim, 1)
					: attn_workspace_bytes(n_heads, kv->head_dim, c->n, c->max_ctx);
	if (need > c->attn_ws_bytes && !c->capturing) {
		void *p = cu_alloc(be, need, MEM_OTHER);
		if (!p) return LM_ERR;
		cu_free(be, c->attn_ws);
		c->attn_ws = p;
		c->attn_ws_bytes = need;
	}
	return LM_OK;
}

static int cu_attention(struct backend *be, void *out, const void *qkv, const struct kv_cache *kv, int layer,
			int n_heads)
{
	struct cuda_be *c = cb(be);
	if (!c->have_step) return op_rc(c, lm_err(_("attention: no step set")));
	if (attn_ws_ensure(be, kv, n_heads)) return LM_ERR;
	struct attn_step st = attn_st(c);
	return op_rc(c, attn_launch_attention(out, qkv, be->act_dt, kv, layer, n_heads, &st, c->attn_ws,
					      c->attn_ws_bytes, c->s));
}

// LMTERM_ROPE_KV_KERNEL=1 keeps the separate rope_kv kernel before a decode attention (measurement)
static int cu_rope_attention(struct backend *be, void *out, void *qkv, struct kv_cache *kv, int layer, int n_heads)
{
	struct cuda_be *c = cb(be);
	if (!c->have_step) return op_rc(c, lm_err(_("attention: no step set")));
	static const bool separate = env_is("LMTERM_ROPE_KV_KERNEL", "1");
	if (separate) return cu_rope_kv(be, qkv, kv, layer, n_heads) || cu_attention(be, out, qkv, kv, layer, n_heads);
	if (attn_ws_ensure(be, kv, n_heads)) return LM_ERR;
	struct attn_step st = attn_st(c);
	return op_rc(c, attn_launch_rope_attention(out, qkv, be->act_dt, kv, layer, n_heads, &st, c->attn_ws,
						   c->attn_ws_bytes, c->s));
}

static int cu_swiglu(struct backend *be, void *out, const void *gu, int n, int ffn)
{
	struct cuda_be *c = cb(be);
	return op_rc(c, k_swiglu(out, gu, n, ffn, false, be->act_dt, c->s));
}

static int logits_buf(struct backend *be, size_t floats)
{
	struct cuda_be *c = cb(be);
	if (c->logits_cap >= floats) return LM_OK;
	float *p = (float *)cu_alloc(be, floats * sizeof(float), MEM_OTHER);
	if (!p) return LM_ERR;
	cu_free(be, c->d_logits);
	c->d_logits = p;
	c->logits_cap = floats;
	return LM_OK;
}

// float logits of rows [0, n) of h into d_logits
static int logits_dev(struct backend *be, const void *h, const struct weight *lm, int n)
{
	struct cuda_be *c = cb(be);
	if (lm->dt != be->act_dt || !lm->data)
		return lm_err(_("logits: the output head must be dense %s"), dtype_name(be->act_dt));
	if (k_gemv_supported(n, lm->cols))
		return k_gemv(c->d_logits, h, lm->data, (const float *)lm->bias, n, lm->rows, lm->cols, be->act_dt, true,
			      c->s);
	if (blas_gemm(c, c->d_logits, CUDA_R_32F, h, lm->data, lm->dt, n, lm->rows, lm->cols, lm->rows)) return LM_ERR;
	if (lm->bias) return lm_err(_("logits: a biased output head is not supported"));
	return LM_OK;
}

static int cu_logits(struct backend *be, float *logits_host, const void *h, const struct weight *lm_head, int n)
{
	struct cuda_be *c = cb(be);
	if (c->capturing) return lm_err(_("logits: not allowed in a graph"));
	const int V = lm_head->rows;
	const int chunk = (int)MAX((size_t)1, MIN((size_t)n, LOGITS_CHUNK_FLOATS / (size_t)V));
	if (logits_buf(be, (size_t)chunk * V)) return LM_ERR;
	for (int r0 = 0; r0 < n; r0 += chunk) {
		const int m = MIN(chunk, n - r0);
		if (logits_dev(be, (const char *)h + (size_t)r0 * lm_head->cols * be->act_size, lm_head, m)) return LM_ERR;
		CK(cudaMemcpyAsync(logits_host + (size_t)r0 * V, c->d_logits, (size_t)m * V * sizeof(float),
				   cudaMemcpyDeviceToHost, c->s),
		   "logits");
		CK(cudaStreamSynchronize(c->s), "logits");
	}
	return LM_OK;
}

// the sampler's scratch (also the multi-block argmax's) and its settings, once
static int sample_setup(struct backend *be)
{
	struct cuda_be *c = cb(be);
	if (c->smp_ws) return LM_OK;
	if (!(c->smp_ws = cu_alloc(be, k_sample_ws_bytes(), MEM_OTHER))) return LM_ERR;
	CK(cudaMemsetAsync(c->smp_ws, 0, k_sample_ws_bytes(), c->s), "sample");
	const char *e = getenv("LMTERM_SAMPLE_BLOCKS");
	c->smp_blocks = e && *e ? MAX(1, atoi(e)) : k_sample_max_blocks();
	c->smp_blocks = MIN(c->smp_blocks, k_sample_max_blocks());
	c->smp_radix_only = env_is("LMTERM_SAMPLE_FAST", "0");
	return LM_OK;
}

// the lm_head and the argmax into d_tok and host[*slot] (mapped host memory; host[0] without slot), enqueued
// (their buffers made on the first call; in a capture they must exist: cu_argmax_start)
static int argmax_enqueue(struct backend *be, const void *h, const struct weight *lm_head, int32_t *host,
			  const int32_t *slot, k_step_adv adv)
{
	struct cuda_be *c = cb(be);
	if (logits_buf(be, (size_t)lm_head->rows) || sample_setup(be) || logits_dev(be, h, lm_head, 1) ||
	    (c->smp_blocks > 1 ? k_argmax_multi(c->d_tok, host, slot, adv, c->d_logits, lm_head->rows, c->smp_ws, c->s)
			       : k_argmax(c->d_tok, host, slot, adv, c->d_logits, lm_head->rows, c->s)))
		return LM_ERR;
	c->tok_on_dev = true;
	return LM_OK;
}

static int cu_argmax(struct backend *be, int32_t *token_host, const void *h, const struct weight *lm_head)
{
	struct cuda_be *c = cb(be);
	if (c->capturing) return lm_err(_("argmax: not allowed in a graph"));
	if (argmax_enqueue(be, h, lm_head, c->h_tok_dev, NULL, k_step_adv{})) return LM_ERR;
	CK(cudaStreamSynchronize(c->s), "argmax");
	*token_host = *(volatile int32_t *)c->h_tok;
	return LM_OK;
}

// whether another id may be started
static int tok_room(const struct cuda_be *c)
{
	if (c->tok_n >= BACKEND_MAX_PENDING) return lm_err(_("argmax: %d ids started and not taken"), c->tok_n);
	return LM_OK;
}

// an id started by argmax_start (or a graph that holds one) is in the stream: its event, one more pending
static int tok_post(struct cuda_be *c)
{
	CK(cudaEventRecord(c->tok_ev[tok_next_slot(c)], c->s), "argmax");
	c->tok_n++;
	return LM_OK;
}

// a graph that ends with argmax_start's kernels was launched: an id started, the state advanced (k_step_adv)
static int graph_started_id(struct cuda_be *c)
{
	c->adv_valid = true;
	c->adv_pos0 = c->pos0 + 1;
	return tok_post(c);
}

// Greedy decoding one step ahead of the host: the next step (a chained one) is enqueued before this one's id
// is taken, so the GPU goes from step to step without waiting for the host's round trip (the copy of the id,
// the wake-up, the next step's state and launch: 25-30 us of a 2.04 ms step of the 7B AWQ model on the H100).
// May be captured (after a first call outside a graph has made its buffers): the graph then ends with the
// lm_head and the argmax under PDL, and each launch starts an id. The id goes to the slot of h_tok that the
// step state names (set_step: the slot of the next start), so one graph serves both slots; every launch of
// such a graph follows its own set_step (forward.c).
static int cu_argmax_start(struct backend *be, const void *h, const struct weight *lm_head)
{
	struct cuda_be *c = cb(be);
	if (c->capturing) { // (the pending count is checked where the graph is launched)
		if (!c->smp_ws || c->logits_cap < (size_t)lm_head->rows)
			return op_rc(c, lm_err(_("argmax: captured before its buffers were made")));
		c->capture_argmax = true;
		const k_step_adv adv = { c->d_pos0, c->d_inv, c->kv_head_dim / 2, BACKEND_MAX_PENDING };
		return op_rc(c, argmax_enqueue(be, h, lm_head, c->h_tok_dev + 1, c->d_pos0 + 2, adv));
	}
	// outside a graph the slot is known here (the step state's is that of the first start after set_step)
	if (tok_room(c) || argmax_enqueue(be, h, lm_head, c->h_tok_dev + 1 + tok_next_slot(c), NULL, k_step_adv{}))
		return LM_ERR;
	return tok_post(c);
}

static int cu_argmax_take(struct backend *be, int32_t *token_host)
{
	struct cuda_be *c = cb(be);
	if (c->tok_n <= 0) return lm_err(_("argmax: no id started"));
	const int slot = c->tok_head;
	c->tok_head = (c->tok_head + 1) % BACKEND_MAX_PENDING;
	c->tok_n--;
	CK(cudaEventSynchronize(c->tok_ev[slot]), "argmax");
	*token_host = ((volatile int32_t *)c->h_tok)[1 + slot];
	return LM_OK;
}

// ------------------------------------------------------------------------------------------------------
// graphs

static int cu_graph_begin(struct backend *be, int key)
{
	struct cuda_be *c = cb(be);
	if (key < 0 || key >= MAX_GRAPHS) return lm_err(_("graph key %d out of range"), key);
	if (c->capturing || c->eager) return lm_err(_("graph_begin: a graph is already open"));
	if (!c->have_step) return lm_err(_("graph_begin: no step set"));
	struct graph_slot *g = &c->graphs[key];
	const int ctx = c->pos0 + c->n;
	uint64_t gen;
	{
		std::lock_guard<std::mutex> lk(c->mu);
		gen = c->gen;
	}
	if (g->exec && g->gen == gen && g->n == c->n && ctx <= g->bound && g->mscale == c->mscale) {
		if (check_ids(c, c->vocab)) return LM_ERR;
		if (g->argmax && tok_room(c)) return LM_ERR;
		c->max_ctx = g->bound;
		CK(cudaGraphLaunch(g->exec, c->s), "graph launch");
		if (g->argmax && graph_started_id(c)) return LM_ERR;
		return 1;
	}
	// the first step of a shape runs plainly: it sizes the workspaces (no allocation may happen in a capture)
	if (!c->attn_nh || c->attn_ws_bytes < attn_ws_need(c->attn_nh, c->attn_hd, c->n) || !c->vocab) {
		c->eager = true;
		return 0;
	}
	c->max_ctx = (ctx + GRAPH_CTX_STEP - 1) / GRAPH_CTX_STEP * GRAPH_CTX_STEP;
	CK(cudaStreamBeginCapture(c->s, cudaStreamCaptureModeThreadLocal), "graph capture");
	c->capturing = key + 1;
	c->capture_bad = false;
	c->capture_argmax = false;
	return 0;
}

static int cu_graph_end(struct backend *be, int key)
{
	struct cuda_be *c = cb(be);
	if (c->eager) {
		c->eager = false;
		return LM_OK;
	}
	if (!c->capturing) return LM_OK; // replayed
	if (c->capturing != key + 1) return lm_err(_("graph_end: key %d does not match the open capture"), key);
	cudaGraph_t graph = NULL;
	cudaError_t e = cudaStreamEndCapture(c->s, &graph);
	c->capturing = 0;
	const int bound = c->max_ctx;
	c->max_ctx = c->pos0 + c->n;
	if (c->capture_bad) { // the op's message stands
		if (graph) cudaGraphDestroy(graph);
		return LM_ERR;
	}
	if (e != cudaSuccess) {
		if (graph) cudaGraphDestroy(graph);
		return cuda_fail(e, "graph capture");
	}
	struct graph_slot *g = &c->graphs[key];
	if (g->exec) cudaGraphExecDestroy(g->exec);
	memset(g, 0, sizeof *g);
	e = cudaGraphInstantiate(&g->exec, graph, 0);
	cudaGraphDestroy(graph);
	if (e != cudaSuccess) {
		g->exec = NULL;
		return cuda_fail(e, "graph instantiate");
	}
	{
		std::lock_guard<std::mutex> lk(c->mu);
		g->gen = c->gen;
	}
	g->bound = bound;
	g->n = c->n;
	g->mscale = c->mscale;
	g->argmax = c->capture_argmax;
	if (g->argmax && tok_room(c)) return LM_ERR;
	CK(cudaGraphLaunch(g->exec, c->s), "graph launch");
	return g->argmax ? graph_started_id(c) : LM_OK;
}

// ------------------------------------------------------------------------------------------------------
// copy bandwidth (bench): one large device-to-device copy, bytes read + written, best of a few

static double cu_copy_bandwidth(struct backend *be)
{
	struct cuda_be *c = cb(be);
	if (c->copy_bw > 0) return c->copy_bw;
	const size_t bytes = (size_t)1 << 30;
	// plain cudaMalloc: two transient GiB must not show as the "other" category's peak
	void *a = NULL, *b = NULL;
	if (c->capturing) return 0;
	if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
		cudaGetLastError();
		if (a) cudaFree(a);
		lm_err(_("copy bandwidth: cannot allocate 2 GiB of device memory"));
		return 0;
	}
	cudaEvent_t e0 = NULL, e1 = NULL;
	double best = 0;
	if (a && b && cudaEventCreate(&e0) == cudaSuccess && cudaEventCreate(&e1) == cudaSuccess) {
		// random contents (never time zeros), then one warm-up copy
		if (!k_fill_bytes(a, bytes, 12345, c->s) && cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->s) == cudaSuccess) {
			for (int i = 0; i < 10; i++) {
				cudaEventRecord(e0, c->s);
				cudaMemcpyAsync(i & 1 ? a : b, i & 1 ? b : a, bytes, cudaMemcpyDeviceToDevice, c->s);
				cudaEventRecord(e1, c->s);
				float ms = 0;
				if (cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
					break;
				double bw = 2.0 * bytes / (ms * 1e-3);
				if (bw > best) best = bw;
			}
		}
	}
	cudaError_t e = cudaGetLastError();
	if (e0) cudaEventDestroy(e0);
	if (e1) cudaEventDestroy(e1);
	cudaFree(a);
	cudaFree(b);
	if (e != cudaSuccess) {
		cuda_fail(e, "copy bandwidth");
		return 0;
	}
	if (best <= 0) lm_err(_("copy bandwidth: the timed copies failed"));
	c->copy_bw = best;
	return best;
}

// sampling on the device (cuda/sample.cu): the logits of h (or the float logits given) stay on the device,
// only the token comes back
static int cu_sample(struct backend *be, int32_t *token_host, const void *h, const struct weight *lm_head,
		     const struct sample_args *a)
{
	struct cuda_be *c = cb(be);
	if (c->capturing) return lm_err(_("sample: not allowed in a graph"));
	const int V = lm_head ? lm_head->rows : a->vocab;
	if (V <= 0) return lm_err(_("sample: empty vocabulary"));
	if (logits_buf(be, (size_t)V)) return LM_ERR;
	if (sample_setup(be)) return LM_ERR;
	if (c->smp_vocab < V) {
		uint32_t *seen = (uint32_t *)cu_alloc(be, (size_t)V * sizeof(uint32_t), MEM_OTHER);
		if (!seen) return LM_ERR;
		cu_free(be, c->smp_seen);
		c->smp_seen = seen;
		c->smp_vocab = V;
		c->smp_stamp = 0;
		CK(cudaMemsetAsync(seen, 0, (size_t)V * sizeof(uint32_t), c->s), "sample");
	}
	bool penalty = a->repetition_penalty > 0 && a->repetition_penalty != 1.0f && a->n_history > 0;
	int n_hist = penalty ? a->n_history : 0;
	if (n_hist) { // the history on the device: only what differs from the last upload is sent
		if (n_hist > c->hist_cap) {
			int cap = MAX(n_hist, 2 * c->hist_cap);
			int32_t *d = (int32_t *)cu_alloc(be, (size_t)cap * sizeof(int32_t), MEM_OTHER);
			int32_t *hh = (int32_t *)realloc(c->h_hist, (size_t)cap * sizeof(int32_t));
			if (!d || !hh) {
				cu_free(be, d);
				if (hh) c->h_hist = hh;
				return lm_err(_("out of memory"));
			}
			cu_free(be, c->d_hist);
			c->d_hist = d;
			c->h_hist = hh;
			c->hist_cap = cap;
			c->n_hist_up = 0;
		}
		int same = 0, lim = MIN(c->n_hist_up, n_hist);
		while (same < lim && c->h_hist[same] == a->history[same]) same++;
		if (same < n_hist) {
			memcpy(c->h_hist + same, a->history + same, (size_t)(n_hist - same) * sizeof(int32_t));
			CK(cudaMemcpyAsync(c->d_hist + same, c->h_hist + same, (size_t)(n_hist - same) * sizeof(int32_t),
					   cudaMemcpyHostToDevice, c->s),
			   "sample");
		}
		c->n_hist_up = n_hist;
		if (++c->smp_stamp == 0) { // wrapped: clear the stamps
			CK(cudaMemsetAsync(c->smp_seen, 0, (size_t)c->smp_vocab * sizeof(uint32_t), c->s), "sample");
			c->smp_stamp = 1;
		}
	}
	if (lm_head) {
		if (logits_dev(be, h, lm_head, 1)) return LM_ERR;
	} else {
		CK(cudaMemcpyAsync(c->d_logits, h, (size_t)V * sizeof(float), cudaMemcpyDeviceToDevice, c->s), "sample");
	}
	k_sample_params kp = {};
	kp.temperature = a->temperature;
	kp.inv_t = a->temperature > 0 ? 1.0f / a->temperature : 0;
	kp.top_p = a->top_p;
	kp.min_p = a->min_p;
	kp.rep = penalty ? a->repetition_penalty : 1.0f;
	kp.top_k = a->top_k;
	kp.greedy = a->temperature <= 0 || a->top_k == 1;
	kp.u = a->u;
	kp.sort_few = !c->smp_radix_only;
	if (k_sample(c->d_tok, c->d_logits, V, &kp, c->d_hist, n_hist, c->smp_seen, c->smp_stamp, c->smp_ws,
		     c->smp_blocks, c->s))
		return LM_ERR;
	c->tok_on_dev = true;
	CK(cudaMemcpyAsync(c->h_tok, c->d_tok, sizeof(int32_t), cudaMemcpyDeviceToHost, c->s), "sample");
	CK(cudaStreamSynchronize(c->s), "sample");
	*token_host = *c->h_tok;
	return LM_OK;
}

// ------------------------------------------------------------------------------------------------------
// lifecycle

static void cu_destroy(struct backend *be)
{
	if (!be) return;
	struct cuda_be *c = cb(be);
	if (c->capturing) {
		cudaGraph_t g = NULL;
		cudaStreamEndCapture(c->s, &g);
		if (g) cudaGraphDestroy(g);
	}
	if (c->s) cudaStreamSynchronize(c->s);
#ifdef LMTERM_TRACE
	k_trace_dump();
#endif
	graphs_drop(c);
	if (c->blas) cublasDestroy(c->blas);
	for (auto &kv : c->allocs) cudaFree(kv.first);
	c->allocs.clear();
	if (c->h_stage) cudaFreeHost(c->h_stage);
	if (c->h_tok) cudaFreeHost(c->h_tok);
	for (cudaEvent_t ev : c->tok_ev)
		if (ev) cudaEventDestroy(ev);
	free(c->h_hist);
	if (c->staged) cudaEventDestroy(c->staged);
	if (c->s) cudaStreamDestroy(c->s);
	nvml_close(&c->nvml);
	delete c;
}

static const struct backend_i cuda_i = {
	.name = "cuda",
	.destroy = cu_destroy,
	.alloc = cu_alloc,
	.free = cu_free,
	.upload = cu_upload,
	.download = cu_download,
	.sync = cu_sync,
	.mem_stats = cu_mem_stats,
	.weight_load = cu_weight_load,
	.weight_random = cu_weight_random,
	.weight_free = weight_free_parts,
	.kv_alloc = cu_kv_alloc,
	.kv_free = cu_kv_free,
	.kv_bytes_per_token = cu_kv_bytes_per_token,
	.set_step = cu_set_step,
	.embed = cu_embed,
	.embed_norm = cu_embed_norm,
	.add_rmsnorm = cu_add_rmsnorm,
	.matmul = cu_matmul,
	.qk_norm = cu_qk_norm,
	.rope_kv = cu_rope_kv,
	.attention = cu_attention,
	.rope_attention = cu_rope_attention,
	.swiglu = cu_swiglu,
	.matmul_swiglu = cu_matmul_swiglu,
	.matmul_residual = cu_matmul_residual,
	.norm_matmul = cu_norm_matmul,
	.logits = cu_logits,
	.argmax = cu_argmax,
	.argmax_start = cu_argmax_start,
	.argmax_take = cu_argmax_take,
	.sample = cu_sample,
	.graph_begin = cu_graph_begin,
	.graph_end = cu_graph_end,
	.copy_bandwidth = cu_copy_bandwidth,
};

__global__ void probe_kernel(int *p)
{
	if (p) *p = 1;
}

extern "C" void backend_cuda_describe(char *buf, size_t n)
{
	int rt = 0, drv = 0, ndev = 0;
	cudaRuntimeGetVersion(&rt);
	cudaDriverGetVersion(&drv);
	int len = drv ? snprintf(buf, n, _("CUDA runtime %d.%d, driver %d.%d; "), rt / 1000, rt % 1000 / 10, drv / 1000,
				 drv % 1000 / 10)
		      : snprintf(buf, n, _("CUDA runtime %d.%d, no NVIDIA driver; "), rt / 1000, rt % 1000 / 10);
	if (len < 0 || (size_t)len >= n) return;
	if (!drv) { /* CUDA's error would say the driver is too old for the runtime, of a driver that is not there */
		snprintf(buf + len, n - (size_t)len, _("GPU: none"));
		return;
	}
	cudaError_t e = cudaGetDeviceCount(&ndev);
	if (e != cudaSuccess || ndev <= 0) {
		snprintf(buf + len, n - (size_t)len, _("GPU: none usable (%s)"),
			 cudaGetErrorString(e != cudaSuccess ? e : cudaErrorNoDevice));
		cudaGetLastError();
		return;
	}
	cudaDeviceProp p;
	if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
		cudaGetLastError();
		snprintf(buf + len, n - (size_t)len, _("GPU: %d device(s), properties unreadable"), ndev);
		return;
	}
	snprintf(buf + len, n - (size_t)len, _("GPU 0 of %d: %s (sm_%d%d, %.1f GiB)"), ndev, p.name, p.major, p.minor,
		 p.totalGlobalMem / 1073741824.0);
}

static char cuda_why_not[160];

extern "C" const char *backend_cuda_why_not(void) { return cuda_why_not; }

extern "C" int backend_cuda_available(void)
{
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);
	if (e != cudaSuccess) {
		snprintf(cuda_why_not, sizeof cuda_why_not, "%s", cudaGetErrorString(e));
		cudaGetLastError();
		return 0;
	}
	if (n <= 0) snprintf(cuda_why_not, sizeof cuda_why_not, "%s", cudaGetErrorString(cudaErrorNoDevice));
	return n > 0;
}

#define CREATE_CK(call, what)                                                                                  \
	do {                                                                                                   \
		cudaError_t e_ = (call);                                                                       \
		if (e_ != cudaSuccess) {                                                                       \
			cuda_fail(e_, what);                                                                   \
			cu_destroy(&c->be);                                                                    \
			return NULL;                                                                           \
		}                                                                                              \
	} while (0)

extern "C" struct backend *backend_cuda_create(enum dtype model_dtype)
{
	int ndev = 0;
	cudaError_t e = cudaGetDeviceCount(&ndev);
	if (e != cudaSuccess || ndev <= 0) {
		cudaGetLastError();
		lm_err(_("CUDA: no usable GPU (%s)"), e != cudaSuccess ? cudaGetErrorString(e) : "no devices");
		return NULL;
	}
	struct cuda_be *c = new (std::nothrow) cuda_be();
	if (!c) {
		lm_err(_("out of memory"));
		return NULL;
	}
	c->be.i = &cuda_i;
	c->be.ctx = c;
	c->be.act_dt = model_dtype == DT_BF16 ? DT_BF16 : DT_F16;
	c->be.act_size = 2;
	c->be.n_threads = 1;
	c->dev = 0;
	CREATE_CK(cudaSetDevice(c->dev), "select device 0");
	cudaDeviceProp prop;
	CREATE_CK(cudaGetDeviceProperties(&prop, c->dev), "device properties");
	snprintf(c->name, sizeof c->name, "%.63s", prop.name);
	c->sms = prop.multiProcessorCount;
	// kernels built for this GPU? (sm_90a plus compute_90 PTX by default)
	cudaFuncAttributes fa;
	e = cudaFuncGetAttributes(&fa, probe_kernel);
	if (e != cudaSuccess) {
		cudaGetLastError();
		lm_err(_("CUDA: %s (compute capability %d.%d) cannot run this build's kernels (%s); rebuild with "
			 "CUDA_ARCH_FLAGS for it"),
		       prop.name, prop.major, prop.minor, cudaGetErrorString(e));
		cu_destroy(&c->be);
		return NULL;
	}
	CREATE_CK(cudaFree(0), "context");
	nvml_open(&c->nvml, c->dev);
	CREATE_CK(cudaStreamCreateWithFlags(&c->s, cudaStreamNonBlocking), "stream");
	CREATE_CK(cudaEventCreateWithFlags(&c->staged, cudaEventDisableTiming), "event");
	CREATE_CK(cudaHostAlloc((void **)&c->h_tok, sizeof(int32_t) * (1 + BACKEND_MAX_PENDING), cudaHostAllocMapped),
		  "pinned buffer");
	CREATE_CK(cudaHostGetDevicePointer((void **)&c->h_tok_dev, c->h_tok, 0), "pinned buffer");
	for (cudaEvent_t &ev : c->tok_ev) CREATE_CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "event");
	cublasStatus_t bs = cublasCreate(&c->blas);
	if (bs != CUBLAS_STATUS_SUCCESS) {
		lm_err(_("cuBLAS: cannot create a handle: %s"), blas_str(bs));
		c->blas = NULL;
		cu_destroy(&c->be);
		return NULL;
	}
	// our own cuBLAS workspace: counted, and no allocation inside cuBLAS calls
	const size_t blas_ws = 32u << 20;
	c->blas_ws = cu_alloc(&c->be, blas_ws, MEM_OTHER);
	c->d_tok = c->blas_ws ? (int32_t *)cu_alloc(&c->be, sizeof(int32_t), MEM_OTHER) : NULL;
	if (!c->d_tok || cublasSetStream(c->blas, c->s) != CUBLAS_STATUS_SUCCESS ||
	    cublasSetWorkspace(c->blas, c->blas_ws, blas_ws) != CUBLAS_STATUS_SUCCESS) {
		if (c->d_tok) lm_err(_("cuBLAS: cannot set the stream or workspace"));
		cu_destroy(&c->be);
		return NULL;
	}
	cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH);
	// on unless LMTERM_FOLD=0: measured on the H100 (2026-12-05), AWQ decode 468-475 tokens/s folded against
	// 448-452 (docs/PERFORMANCE.md); 16-bit weights decline it and keep their step
	const char *fe = getenv("LMTERM_FOLD");
	if (!fe || strcmp(fe, "0")) { // allocated here, since a decode graph's capture may be the first to need it
		c->norm_part_cap = (size_t)8 * 8192; // 8 tokens of a model width up to 131072
		c->norm_part = (float *)cu_alloc(&c->be, c->norm_part_cap * sizeof(float), MEM_OTHER);
		if (!c->norm_part) {
			cu_destroy(&c->be);
			return NULL;
		}
	}
#ifdef LMTERM_TRACE
	k_trace_start();
#endif
	// what the driver holds for us beyond our allocations: context, module images, cuBLAS
	CREATE_CK(cudaDeviceSynchronize(), "initialization");
	size_t used = 0;
	if (nvml_process_used(&c->nvml, &used)) {
		size_t ours = 0;
		for (int i = 0; i < MEM_NCAT; i++) ours += c->cat[i];
		c->runtime = used > ours ? used - ours : 0;
		c->runtime_valid = true;
	}
	return &c->be;
}
