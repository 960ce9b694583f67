# ui/: the ncurses front end, one file per panel. Only the UI thread calls into here.
noinst_LIBRARIES += ui/liblmterm_ui.a
ui_liblmterm_ui_a_SOURCES = ui/ui.h
include ui/ui.mk
UI_LIB = ui/liblmterm_ui.a
