# cuda tests: check_PROGRAMS += tests/xxx ; TESTS += tests/xxx ; tests_xxx_LDADD = $(LMTERM_TEST_LIBS)
# KV-touching kernels (attn): rope_kv and paged attention vs float references; exits 77 without a GPU
check_PROGRAMS += tests/test_attn_ops
TESTS += tests/test_attn_ops
tests_test_attn_ops_CPPFLAGS = $(AM_CPPFLAGS) $(CUDA_CFLAGS) -I$(top_srcdir)/cuda
tests_test_attn_ops_LDADD = $(LMTERM_TEST_LIBS)
# cuda backend (cuda): every op against the cpu backend; the golden model test on the cuda backend.
# Both exit 77 without a GPU.
check_PROGRAMS += tests/test_backend_ops
TESTS += tests/test_backend_ops tests/test_golden_cuda.sh tests/test_cuda_opts.sh
EXTRA_DIST += tests/test_golden_cuda.sh tests/test_cuda_opts.sh
tests_test_backend_ops_LDADD = $(LMTERM_TEST_LIBS)
# lmterm bench on the cpu backend (runs everywhere)
TESTS += tests/test_bench.sh
EXTRA_DIST += tests/test_bench.sh
# scripts/trace-step.py (the reader of a measurement build's kernel trace) on a trace written by the test
TESTS += tests/test_trace_step.sh tests/test_trace_build.sh
EXTRA_DIST += tests/test_trace_step.sh tests/test_trace_build.sh scripts/trace-step.py
# the W4A16 repacking against AutoAWQ's layout (host code, runs without a GPU)
check_PROGRAMS += tests/test_awq_layout
TESTS += tests/test_awq_layout
tests_test_awq_layout_LDADD = $(LMTERM_TEST_LIBS)
# the GPU round (one device call): build here, carry, run there
EXTRA_DIST += scripts/gpu-round.sh scripts/awq-probe.sh scripts/issue5-h100.sh
# W4A16 kernel speed per InternLM2.5-7B shape for the GPU rounds (not a test: prints, asserts nothing)
check_PROGRAMS += tests/bench_awq
tests_bench_awq_CPPFLAGS = $(AM_CPPFLAGS) $(CUDA_CFLAGS) -I$(top_srcdir)/cuda
tests_bench_awq_LDADD = $(LMTERM_TEST_LIBS)
EXTRA_DIST += scripts/awq-round.sh
EXTRA_DIST += scripts/sample-round.sh
# what handing results from one grid to the next costs: PDL, a counter, a grid barrier (prints, asserts nothing)
check_PROGRAMS += tests/bench_handoff
tests_bench_handoff_CPPFLAGS = $(AM_CPPFLAGS) $(CUDA_CFLAGS) -I$(top_srcdir)/cuda
tests_bench_handoff_LDADD = $(LMTERM_TEST_LIBS)
