# awq tests
check_PROGRAMS += tests/test_awq_pack tests/test_awq_layouts tests/awq_ppl tests/test_awq_quality_kl
TESTS += tests/test_awq_pack tests/test_awq_layouts tests/test_lite_bad.sh tests/test_awq_quality.sh
EXTRA_DIST += tests/test_lite_bad.sh tests/test_awq_quality.sh
tests_test_awq_pack_LDADD = $(LMTERM_TEST_LIBS)
tests_test_awq_layouts_LDADD = $(LMTERM_TEST_LIBS)
tests_awq_ppl_LDADD = $(LMTERM_TEST_LIBS)
tests_test_awq_quality_kl_LDADD = $(LMTERM_TEST_LIBS)
