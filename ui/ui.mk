# ui sources: ui_liblmterm_ui_a_SOURCES += ui/xxx.c
