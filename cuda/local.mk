# cuda/: the CUDA backend, one kernel family per .cu file; built only when configure found CUDA.
SUFFIXES = .cu
NVCC_FLAGS = -O3 -std=c++17 $(CUDA_ARCH_FLAGS) -Xcompiler -fPIC -Xcompiler -Wall --expt-relaxed-constexpr \
	-I$(top_srcdir)/src -I$(top_builddir) $(NVCCFLAGS)
if HAVE_CUDA
noinst_LIBRARIES += cuda/liblmterm_cuda.a
cuda_liblmterm_cuda_a_SOURCES = cuda/backend_cuda.cu
include cuda/kernels.mk
CUDA_LIB = cuda/liblmterm_cuda.a
# -MD -MP: a .d file next to each object names the headers it includes (automake tracks only C sources)
.cu.$(OBJEXT):
	$(AM_V_GEN)$(NVCC) $(NVCC_FLAGS) -MD -MP -MF $(@:.$(OBJEXT)=.d) -c -o $@ $<
-include $(wildcard cuda/*.d)
CLEANFILES += cuda/*.d
else
CUDA_LIB =
EXTRA_DIST += cuda
endif
