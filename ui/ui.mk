# ui sources: one file per panel; layout, text, edit and histfile are pure (no curses) and unit-tested.
ui_liblmterm_ui_a_SOURCES += ui/layout.c ui/layout.h ui/text.c ui/text.h ui/edit.c ui/edit.h \
	ui/histfile.c ui/histfile.h
ui_liblmterm_ui_a_SOURCES += ui/ui_int.h ui/ui.c ui/colors.c ui/draw.c ui/chat.c ui/input.c ui/memory.c \
	ui/settings.c ui/help.c ui/progress.c ui/statusbar.c ui/term.c
