// handoff.cu: what it costs to hand results from one grid to the next (tests/bench_handoff; a measurement,
// used by no op). A decode step of the 7B AWQ model is five kernels per layer, and each kernel's blocks wait
// for the whole grid before them (pdl_wait). Measured alone, the four GEMVs and the attention of a layer sum to
// the step within 1% (docs/PERFORMANCE.md, session 19), so whatever a boundary costs is paid 160 times per
// step. These kernels do no work but the handoff: thread 0 of each block reads one word the previous stage
// wrote and writes one word, and a graph of `steps` stages is timed. Four ways:
//   HANDOFF_PLAIN   a launch per stage, stream order (no PDL attribute)
//   HANDOFF_PDL     a launch per stage with the PDL attribute; each block launch_dependents, then pdl_wait
//   HANDOFF_FLAG    a launch per stage with the PDL attribute; each block polls a counter in global memory
//                   that every block of the stage before bumps when done (release/acquire at gpu scope),
//                   and waits for its predecessor grid (pdl_wait) only at its end, so that completion
//                   stays ordered along the stream
//   HANDOFF_BARRIER one launch, `steps` stages separated by the same counter (a grid-wide barrier; every
//                   block is resident: the grid is at most one per multiprocessor's share)
#define PDL_FAMILY "handoff"
#include "config.h"
#include "kernels.h"
#include "ops_common.cuh"

static __device__ __forceinline__ void bump(unsigned *c)
{
	asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(c) : "memory");
}

static __device__ __forceinline__ unsigned poll(const unsigned *c)
{
	unsigned v;
	asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(c) : "memory");
	return v;
}

// one stage's "work": read what the previous stage left in slot (step - 1), leave something in slot step
static __device__ __forceinline__ void touch(unsigned *x, int step)
{
	const unsigned prev = step ? ((volatile unsigned *)x)[(step - 1) * gridDim.x + blockIdx.x] : 0u;
	x[step * gridDim.x + blockIdx.x] = prev + 1u;
}

__global__ void handoff_stage(unsigned *x, unsigned *count, int step, int mode)
{
	if (mode == HANDOFF_PDL) {
		pdl_launch_dependents();
		pdl_wait();
	} else if (mode == HANDOFF_FLAG) {
		pdl_launch_dependents();
		if (threadIdx.x == 0)
			while (poll(count) < (unsigned)step * gridDim.x) {
			}
		__syncthreads();
	}
	if (threadIdx.x == 0) {
		touch(x, step);
		if (mode == HANDOFF_FLAG) bump(count);
	}
	if (mode == HANDOFF_FLAG) pdl_wait();
}

__global__ void handoff_barrier(unsigned *x, unsigned *count, int steps)
{
	for (int step = 0; step < steps; step++) {
		if (threadIdx.x == 0) {
			touch(x, step);
			bump(count);
			while (poll(count) < (unsigned)(step + 1) * gridDim.x) {
			}
		}
		__syncthreads();
	}
}

static cudaError_t stage(cudaStream_t s, int blocks, int mode, unsigned *x, unsigned *count, int step)
{
	cudaLaunchConfig_t cfg = {};
	cfg.gridDim = dim3(blocks);
	cfg.blockDim = dim3(256);
	cfg.stream = s;
	cudaLaunchAttribute at;
	at.id = cudaLaunchAttributeProgrammaticStreamSerialization;
	at.val.programmaticStreamSerializationAllowed = 1;
	cfg.attrs = &at;
	cfg.numAttrs = mode == HANDOFF_PLAIN ? 0 : 1;
	return cudaLaunchKernelEx(&cfg, handoff_stage, x, count, step, mode);
}

#define HK(x)                                                                                                  \
	do {                                                                                                   \
		cudaError_t e_ = (x);                                                                          \
		if (e_ != cudaSuccess) {                                                                       \
			rc = lm_err("handoff: %s: %s", #x, cudaGetErrorString(e_));                            \
			goto out;                                                                              \
		}                                                                                              \
	} while (0)

extern "C" int k_handoff_bench(int mode, int blocks, int steps, int reps, float *us_per_stage)
{
	int rc = LM_OK;
	unsigned *x = NULL, *count = NULL;
	cudaStream_t s = NULL;
	cudaGraph_t g = NULL;
	cudaGraphExec_t ge = NULL;
	cudaEvent_t e0 = NULL, e1 = NULL;
	float best = 0.f;
	if (mode < HANDOFF_PLAIN || mode > HANDOFF_BARRIER || blocks < 1 || steps < 1 || reps < 1)
		return lm_err("handoff: bad arguments");
	HK(cudaMalloc(&x, sizeof(unsigned) * (size_t)blocks * steps));
	HK(cudaMalloc(&count, sizeof(unsigned)));
	HK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	HK(cudaEventCreate(&e0));
	HK(cudaEventCreate(&e1));
	// one graph: reset the counter, then the stages (or the one barrier kernel)
	HK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
	HK(cudaMemsetAsync(count, 0, sizeof(unsigned), s));
	if (mode == HANDOFF_BARRIER) {
		handoff_barrier<<<blocks, 256, 0, s>>>(x, count, steps);
		HK(cudaGetLastError());
	} else {
		for (int i = 0; i < steps; i++) HK(stage(s, blocks, mode, x, count, i));
	}
	HK(cudaStreamEndCapture(s, &g));
	HK(cudaGraphInstantiate(&ge, g, 0));
	HK(cudaGraphLaunch(ge, s)); // warm-up
	HK(cudaStreamSynchronize(s));
	for (int r = 0; r < reps; r++) {
		float ms = 0.f;
		HK(cudaEventRecord(e0, s));
		HK(cudaGraphLaunch(ge, s));
		HK(cudaEventRecord(e1, s));
		HK(cudaEventSynchronize(e1));
		HK(cudaEventElapsedTime(&ms, e0, e1));
		if (r == 0 || ms < best) best = ms;
	}
	*us_per_stage = 1000.f * best / steps;
out:
	if (ge) cudaGraphExecDestroy(ge);
	if (g) cudaGraphDestroy(g);
	if (e0) cudaEventDestroy(e0);
	if (e1) cudaEventDestroy(e1);
	if (s) cudaStreamDestroy(s);
	cudaFree(x);
	cudaFree(count);
	return rc;
}
