# engine tests: check_PROGRAMS += tests/xxx ; TESTS += tests/xxx ; tests_xxx_LDADD = $(LMTERM_TEST_LIBS)
