// pdl.cuh: programmatic dependent launch (Hopper), shared by every kernel family of the decode step.
//
// A decode step is ~10 kernels per layer, each too short to hide the gap between the end of one grid
// and the start of the next (the drain of the last wave, the launch, the ramp of loads in flight). With
// LMTERM_PDL=1 the backend launches kernels with the programmatic-serialization attribute, and each kernel
//   1. calls pdl_launch_dependents() first: the next kernel in the stream may then be scheduled as soon as
//      every block of this one has started, onto the multiprocessors this one's last wave leaves free;
//   2. may read what no earlier kernel writes (weights, the cached K/V of earlier steps) before
//   3. pdl_wait(), which returns once the preceding grid has completed and its writes are visible.
// Nothing is read from or written to activation buffers before pdl_wait(). Since every grid has at least one
// block that waits, a grid completes only after its predecessor has, so the order is transitive along the
// stream. Without the attribute both instructions are no-ops.
#ifndef LMTERM_CUDA_PDL_CUH
#define LMTERM_CUDA_PDL_CUH

#include <cuda_runtime.h>

#ifdef LMTERM_TRACE
// Measurement builds only (make NVCCFLAGS=-DLMTERM_TRACE; LMTERM_TRACE=FILE at run time, cuda/fill.cu): the
// last thread of block 0 of every kernel that waits records when its wait returned (%globaltimer, ns) and
// the grid's shape, which names the op. Waits return in stream order (each grid completes after the one
// before it), so the records come in launch order, and the interval from one record to the next is what
// that kernel cost inside the step: from its inputs being ready to the next kernel's being ready. Each .cu
// file has its own copy of the buffer's pointer, registered at start-up and set by k_trace_start.
extern "C" int k_trace_register(const void *symbol);
static __device__ unsigned long long *g_trace;
static const int trace_registered_ = k_trace_register((const void *)&g_trace);
enum { TRACE_CAP = 1 << 20 }; // records of two u64 after a u64 count
// Per-block records (LMTERM_TRACE_BLOCKS=LO:HI, kernels whose start sees the kernel count in [LO, HI)):
// at TRACE_BLK, a count, LO, HI, then records of 8 u64: start, wait, marks 1-4 (TRACE_MARK), end (ns) and
// the block's identity.
// Only kernels with TRACE_SCOPE at their top write them (at the exit of their thread 0).
enum { TRACE_BLK = 1 + 2 * TRACE_CAP, TRACE_BLK_CAP = 1 << 20 };
static __device__ __forceinline__ unsigned long long gtimer()
{
	unsigned long long t;
	asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
	return t;
}
static __device__ __forceinline__ unsigned long long *trace_sh()
{
	__shared__ unsigned long long s[7]; // start, wait, kernel count at the start (0: not recorded), marks 1-4
	return s;
}
static __device__ __forceinline__ void trace_start()
{
	unsigned long long *b = g_trace;
	if (!b || threadIdx.x) return;
	const unsigned long long k = *(volatile unsigned long long *)b;
	unsigned long long *s = trace_sh();
	s[2] = k >= b[TRACE_BLK + 1] && k < b[TRACE_BLK + 2] ? k + 1 : 0;
	s[3] = s[4] = s[5] = s[6] = 0;
	s[0] = gtimer();
}
struct trace_scope {
	__device__ ~trace_scope()
	{
		unsigned long long *b = g_trace;
		if (!b || threadIdx.x) return;
		unsigned long long *s = trace_sh();
		if (!s[2]) return;
		const unsigned long long i = atomicAdd(b + TRACE_BLK, 1ull);
		if (i >= TRACE_BLK_CAP) return;
		unsigned smid;
		asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
		unsigned long long *r = b + TRACE_BLK + 3 + 8 * i;
		r[0] = s[0];
		r[1] = s[1];
		for (int j = 0; j < 4; j++) r[2 + j] = s[3 + j];
		r[6] = gtimer();
		r[7] = (s[2] - 1) | (unsigned long long)smid << 24 | (unsigned long long)(blockIdx.x + gridDim.x * blockIdx.y) << 32;
	}
};
#define TRACE_SCOPE trace_scope trace_scope_
#define TRACE_MARK(j) do { if (g_trace && !threadIdx.x) trace_sh()[2 + (j)] = gtimer(); } while (0)
static __device__ __forceinline__ void trace_wait()
{
	unsigned long long *b = g_trace;
	if (!b) return;
	const unsigned long long t = gtimer();
	if (!threadIdx.x) trace_sh()[1] = t;
	if (threadIdx.x != blockDim.x - 1 || blockIdx.x || blockIdx.y || blockIdx.z) return;
	const unsigned long long i = atomicAdd(b, 1ull);
	if (i >= TRACE_CAP) return;
	b[1 + 2 * i] = t;
	b[2 + 2 * i] = (unsigned long long)gridDim.x | (unsigned long long)gridDim.y << 24 |
		       (unsigned long long)gridDim.z << 36 | (unsigned long long)blockDim.x << 48;
}
#endif

#ifndef TRACE_SCOPE
#define TRACE_SCOPE
#define TRACE_MARK(j)
#endif

static __device__ __forceinline__ void pdl_launch_dependents()
{
#ifdef LMTERM_TRACE
	trace_start();
#endif
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
	asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

static __device__ __forceinline__ void pdl_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
	asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
#ifdef LMTERM_TRACE
	trace_wait();
#endif
}

// a kernel that needs its inputs from the start
static __device__ __forceinline__ void pdl_wait_trigger()
{
	pdl_launch_dependents();
	pdl_wait();
}

// Each kernel family's file names itself before its first include (#define PDL_FAMILY "gemv"), so that
// LMTERM_PDL can list the families whose launches carry the attribute (cuda/fill.cu, k_pdl_for)
#ifndef PDL_FAMILY
#define PDL_FAMILY "other"
#endif
extern "C" bool k_pdl_for(const char *family);
// the default when LMTERM_PDL is unset (the backend turns it on for AWQ models)
extern "C" void k_pdl_prefer(bool on);

// the preferred shared-memory carveout of a kernel of this family, set when it changes (fill.cu)
extern "C" void k_carveout_apply(const void *kern, const char *family);

// kern<<<grid, block, smem, s>>>(args...), with the PDL attribute when enabled for this file's family, with the grid's x
// dimension cut into thread-block clusters of cx CTAs where cx > 0 (Hopper), and with the carveout its family prefers
template <typename... KArgs, typename... Args>
static cudaError_t klaunch_cluster(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
				   int cx, Args... args)
{
	cudaLaunchConfig_t cfg = {};
	cfg.gridDim = grid;
	cfg.blockDim = block;
	cfg.dynamicSmemBytes = smem;
	cfg.stream = s;
	cudaLaunchAttribute at[2];
	unsigned na = 0;
	if (k_pdl_for(PDL_FAMILY)) {
		at[na].id = cudaLaunchAttributeProgrammaticStreamSerialization;
		at[na++].val.programmaticStreamSerializationAllowed = 1;
	}
	if (cx > 0) {
		at[na].id = cudaLaunchAttributeClusterDimension;
		at[na].val.clusterDim.x = (unsigned)cx;
		at[na].val.clusterDim.y = 1;
		at[na++].val.clusterDim.z = 1;
	}
	cfg.attrs = at;
	cfg.numAttrs = na;
	k_carveout_apply((const void *)kern, PDL_FAMILY);
	return cudaLaunchKernelEx(&cfg, kern, ((KArgs)args)...);
}

template <typename... KArgs, typename... Args>
static cudaError_t klaunch(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args... args)
{
	return klaunch_cluster(kern, grid, block, smem, s, 0, args...);
}

#endif
