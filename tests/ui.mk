# ui tests: layout and editor logic (pure), translations and POTFILES.in, the full screen in tmux.
check_PROGRAMS += tests/test_layout tests/test_input
TESTS += tests/test_layout tests/test_input
tests_test_layout_LDADD = $(UI_LIB) $(LMTERM_TEST_LIBS)
tests_test_input_LDADD = $(UI_LIB) $(LMTERM_TEST_LIBS)
