# cuda tests: check_PROGRAMS += tests/xxx ; TESTS += tests/xxx ; tests_xxx_LDADD = $(LMTERM_TEST_LIBS)
# KV-touching kernels (attn): rope_kv and paged attention vs float references; exits 77 without a GPU
check_PROGRAMS += tests/test_attn_ops
TESTS += tests/test_attn_ops
tests_test_attn_ops_CPPFLAGS = $(AM_CPPFLAGS) $(CUDA_CFLAGS) -I$(top_srcdir)/cuda
tests_test_attn_ops_LDADD = $(LMTERM_TEST_LIBS)
