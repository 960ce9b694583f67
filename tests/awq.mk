# awq tests
check_PROGRAMS += tests/test_awq_pack
TESTS += tests/test_awq_pack
tests_test_awq_pack_LDADD = $(LMTERM_TEST_LIBS)
