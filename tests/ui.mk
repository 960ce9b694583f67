# ui tests: layout and editor logic (pure), translations and POTFILES.in, plural forms, the full screen in tmux.
check_PROGRAMS += tests/test_layout tests/test_input
TESTS += tests/test_layout tests/test_input
tests_test_layout_LDADD = $(UI_LIB) $(LMTERM_TEST_LIBS)
tests_test_input_LDADD = $(UI_LIB) $(LMTERM_TEST_LIBS)
# the transcript panel drawn into a curses window and read back (its wrap cache)
check_PROGRAMS += tests/test_chat_view
TESTS += tests/test_chat_view
tests_test_chat_view_LDADD = $(UI_LIB) $(LMTERM_TEST_LIBS) $(NCURSES_LIBS)
# the chat screen against a scripted engine (for looking at the screen; see tests/test_tui.sh)
check_PROGRAMS += tests/tui_fake_engine
tests_tui_fake_engine_LDADD = $(UI_LIB) $(LMTERM_TEST_LIBS) $(NCURSES_LIBS)
TESTS += tests/test_po.sh tests/test_plural.sh
EXTRA_DIST += tests/test_po.sh tests/test_plural.sh
# the full screen in tmux: lmterm chat on the demo model, and the same checks against the scripted engine
TESTS += tests/test_tui.sh tests/test_tui_fake.sh
EXTRA_DIST += tests/test_tui.sh tests/test_tui_fake.sh
# the dialogs' key hints at 40x14, in English and Chinese
TESTS += tests/test_tui_small.sh
EXTRA_DIST += tests/test_tui_small.sh
# the notes of the load at 40x14, read from the first
TESTS += tests/test_tui_notes.sh
EXTRA_DIST += tests/test_tui_notes.sh
# their tmux helpers, sourced
EXTRA_DIST += tests/tmux.sh
# the manual documents every command, option, environment variable and key
TESTS += tests/test_man.sh
EXTRA_DIST += tests/test_man.sh
