# model tests: check_PROGRAMS += tests/xxx ; TESTS += tests/xxx ; tests_xxx_LDADD = $(LMTERM_TEST_LIBS)
# cpu backend, forward pass, generate (branch cpu)
check_PROGRAMS += tests/test_kvquant tests/test_backend_cpu
TESTS += tests/test_kvquant tests/test_backend_cpu
tests_test_kvquant_LDADD = $(LMTERM_TEST_LIBS)
check_PROGRAMS += tests/test_golden tests/st_tool
TESTS += tests/test_golden tests/test_generate.sh tests/test_lmdeploy_opts.sh tests/test_golden_fold.sh
EXTRA_DIST += tests/test_generate.sh tests/test_lmdeploy_opts.sh tests/test_golden_fold.sh
# Qwen3 (q/k norms) against an independent reference forward: fp32, KV int8/int4, AWQ round trip
TESTS += tests/test_qwen3.sh
EXTRA_DIST += tests/test_qwen3.sh tests/make_qwen3.py
# Phi-3 (fused qkv_proj and gate_up_proj, LongRoPE) against an independent reference forward: fp32, KV int8,
# AWQ and GPTQ round trips
TESTS += tests/test_phi3.sh
EXTRA_DIST += tests/test_phi3.sh tests/make_phi3.py
tests_test_golden_LDADD = $(LMTERM_TEST_LIBS)
tests_st_tool_LDADD = $(LMTERM_TEST_LIBS)
tests_test_backend_cpu_LDADD = $(LMTERM_TEST_LIBS)

# loader: safetensors, config.json, RoPE, fused weights, bad input
check_PROGRAMS += tests/test_loader
TESTS += tests/test_loader
tests_test_loader_LDADD = $(LMTERM_TEST_LIBS)

# the same test with AddressSanitizer and UBSan, built from the loader's sources directly
if HAVE_ASAN
check_PROGRAMS += tests/test_loader_asan
TESTS += tests/test_loader_asan
tests_test_loader_asan_SOURCES = tests/test_loader.c src/safetensors.c src/config.c src/model.c src/common.c
tests_test_loader_asan_CFLAGS = $(AM_CFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=undefined
tests_test_loader_asan_LDFLAGS = $(AM_LDFLAGS) -fsanitize=address,undefined
tests_test_loader_asan_LDADD = $(CJSON_LIBS) $(LIBINTL) -lm
endif

# libFuzzer target for safetensors headers and config.json (needs clang; not part of make check):
#   make fuzz-loader && ./tests/fuzz_loader -max_total_time=60
EXTRA_DIST += tests/fuzz_loader.c
fuzz-loader: tests/fuzz_loader
tests/fuzz_loader: $(srcdir)/tests/fuzz_loader.c $(srcdir)/src/safetensors.c $(srcdir)/src/config.c $(srcdir)/src/common.c
	$(AM_V_CC)$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -I$(srcdir)/src -I$(top_builddir) \
		$(CJSON_CFLAGS) -o $@ $(srcdir)/tests/fuzz_loader.c $(srcdir)/src/safetensors.c $(srcdir)/src/config.c \
		$(srcdir)/src/common.c $(CJSON_LIBS) -lm
CLEANFILES += tests/fuzz_loader
.PHONY: fuzz-loader

# the cpu backend, forward pass and goldens again under AddressSanitizer and UBSan, from the sources directly
if HAVE_ASAN
check_PROGRAMS += tests/test_golden_asan tests/test_kvquant_asan tests/test_backend_cpu_asan
TESTS += tests/test_golden_asan tests/test_kvquant_asan tests/test_backend_cpu_asan
CPU_ASAN_SRC = src/backend_cpu.c src/sampler.c src/backend_weight.c src/forward.c src/kvquant.c src/model.c src/config.c src/safetensors.c src/common.c
CPU_ASAN_CF = $(AM_CFLAGS) -DTEST_CPU_ONLY -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=undefined
CPU_ASAN_LF = $(AM_LDFLAGS) -fsanitize=address,undefined
CPU_ASAN_LIBS = $(CJSON_LIBS) $(LIBINTL) -lm
tests_test_golden_asan_SOURCES = tests/test_golden.c $(CPU_ASAN_SRC)
tests_test_golden_asan_CFLAGS = $(CPU_ASAN_CF)
tests_test_golden_asan_LDFLAGS = $(CPU_ASAN_LF)
tests_test_golden_asan_LDADD = $(CPU_ASAN_LIBS)
tests_test_kvquant_asan_SOURCES = tests/test_kvquant.c $(CPU_ASAN_SRC)
tests_test_kvquant_asan_CFLAGS = $(CPU_ASAN_CF)
tests_test_kvquant_asan_LDFLAGS = $(CPU_ASAN_LF)
tests_test_kvquant_asan_LDADD = $(CPU_ASAN_LIBS)
tests_test_backend_cpu_asan_SOURCES = tests/test_backend_cpu.c $(CPU_ASAN_SRC)
tests_test_backend_cpu_asan_CFLAGS = $(CPU_ASAN_CF)
tests_test_backend_cpu_asan_LDFLAGS = $(CPU_ASAN_LF)
tests_test_backend_cpu_asan_LDADD = $(CPU_ASAN_LIBS)
endif
