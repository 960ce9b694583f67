# kernel .cu files: cuda_liblmterm_cuda_a_SOURCES += cuda/xxx.cu
