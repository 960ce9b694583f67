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

static __device__ __forceinline__ void pdl_launch_dependents()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
	asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

static __device__ __forceinline__ void pdl_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
	asm volatile("griddepcontrol.wait;" ::: "memory");
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

// kern<<<grid, block, smem, s>>>(args...), with the PDL attribute when enabled for this file's family, and with the grid's x
// dimension cut into thread-block clusters of cx CTAs where cx > 0 (Hopper)
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
	return cudaLaunchKernelEx(&cfg, kern, ((KArgs)args)...);
}

template <typename... KArgs, typename... Args>
static cudaError_t klaunch(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args... args)
{
	return klaunch_cluster(kern, grid, block, smem, s, 0, args...);
}

#endif
