# model tests: check_PROGRAMS += tests/xxx ; TESTS += tests/xxx ; tests_xxx_LDADD = $(LMTERM_TEST_LIBS)
check_PROGRAMS += tests/test_kvquant tests/test_backend_cpu
TESTS += tests/test_kvquant tests/test_backend_cpu
tests_test_kvquant_LDADD = $(LMTERM_TEST_LIBS)
check_PROGRAMS += tests/test_golden tests/st_tool
TESTS += tests/test_golden tests/test_generate.sh
EXTRA_DIST += tests/test_generate.sh
tests_test_golden_LDADD = $(LMTERM_TEST_LIBS)
tests_st_tool_LDADD = $(LMTERM_TEST_LIBS)
tests_test_backend_cpu_LDADD = $(LMTERM_TEST_LIBS)
