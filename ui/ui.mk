# ui sources: one file per panel; layout, text and edit are pure (no curses) and unit-tested.
ui_liblmterm_ui_a_SOURCES += ui/layout.c ui/layout.h ui/text.c ui/text.h ui/edit.c ui/edit.h
