# awq tests
check_PROGRAMS += tests/test_awq_pack tests/test_awq_layouts tests/awq_ppl tests/test_awq_quality_kl
TESTS += tests/test_awq_pack tests/test_awq_layouts tests/test_lite_bad.sh tests/test_awq_quality.sh tests/test_vlm.sh
EXTRA_DIST += tests/test_lite_bad.sh tests/test_awq_quality.sh tests/test_vlm.sh tests/make_vlm.py tests/st_io.py
tests_test_awq_pack_LDADD = $(LMTERM_TEST_LIBS)
tests_test_awq_layouts_LDADD = $(LMTERM_TEST_LIBS)
tests_awq_ppl_LDADD = $(LMTERM_TEST_LIBS)
tests_test_awq_quality_kl_LDADD = $(LMTERM_TEST_LIBS)
# AWQ calibration on the GPU: every op of src/awq_dev.h cuda vs cpu; whole runs cpu vs cuda (both exit 77
# without a GPU); the random-weight model writer (runs everywhere); scripts/awq-gpu-round.sh times the 7B run.
check_PROGRAMS += tests/test_awq_ops tests/rand_model tests/awq_cmp
TESTS += tests/test_awq_ops tests/test_rand_model.sh tests/test_awq_cuda.sh
EXTRA_DIST += tests/test_rand_model.sh tests/test_awq_cuda.sh scripts/awq-gpu-round.sh
tests_test_awq_ops_LDADD = $(LMTERM_TEST_LIBS)
tests_rand_model_LDADD = $(LMTERM_TEST_LIBS)
tests_awq_cmp_LDADD = $(LMTERM_TEST_LIBS)
# GPTQ checkpoints (--model-format gptq): the hand-packed layout, and fixtures quantized by tests/make_gptq.py
# against their exact dequantization
check_PROGRAMS += tests/test_gptq_pack
TESTS += tests/test_gptq_pack tests/test_gptq.sh
EXTRA_DIST += tests/test_gptq.sh tests/make_gptq.py
tests_test_gptq_pack_LDADD = $(LMTERM_TEST_LIBS)
