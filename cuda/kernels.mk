# kernel .cu files: cuda_liblmterm_cuda_a_SOURCES += cuda/xxx.cu
# KV-touching kernels (attn): RoPE fused with the KV write/quantization, paged prefill/decode attention
cuda_liblmterm_cuda_a_SOURCES += cuda/rope_kv.cu cuda/attention.cu cuda/attention.h cuda/kv_layout.cuh \
	cuda/attn_common.cuh cuda/rope_row.cuh cuda/cp_async.cuh
# the backend's own kernels (cuda): one family per file, launchers in cuda/kernels.h
cuda_liblmterm_cuda_a_SOURCES += cuda/kernels.h cuda/ops_common.cuh cuda/pdl.cuh cuda/embed.cu cuda/rmsnorm.cu cuda/swiglu.cu \
	cuda/gemv.cu cuda/awq_gemm.cu cuda/sample.cu cuda/fill.cu
# AWQ calibration on the GPU (awq): the cuda implementation of src/awq_dev.h
cuda_liblmterm_cuda_a_SOURCES += cuda/awq_calib.cu
# measurement only (tests/bench_handoff): what a grid-to-grid handoff costs
cuda_liblmterm_cuda_a_SOURCES += cuda/handoff.cu
