# model tests: check_PROGRAMS += tests/xxx ; TESTS += tests/xxx ; tests_xxx_LDADD = $(LMTERM_TEST_LIBS)
check_PROGRAMS += tests/test_kvquant
TESTS += tests/test_kvquant
tests_test_kvquant_LDADD = $(LMTERM_TEST_LIBS)
