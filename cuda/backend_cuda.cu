// backend_cuda.cu: the CUDA backend. Placeholder until the kernels land: it reports GPUs but creates nothing.
#include "config.h"
#include "backend.h"
#include <cuda_runtime.h>

extern "C" int backend_cuda_available(void)
{
	int n = 0;
	return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

extern "C" struct backend *backend_cuda_create(enum dtype model_dtype)
{
	lm_err("the CUDA backend is not implemented yet");
	return NULL;
}
