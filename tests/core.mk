check_PROGRAMS += tests/test_opts
TESTS += tests/test_opts
tests_test_opts_LDADD = $(LMTERM_TEST_LIBS)
