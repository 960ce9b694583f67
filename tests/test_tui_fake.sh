#!/bin/sh
# test_tui_fake: tests/test_tui.sh against tests/tui_fake_engine, a scripted engine: the screen, keys, settings,
# resizing, Chinese and the terminal's restoration, independent of the model.
TUI_FAKE=1 exec sh "${top_srcdir:-.}/tests/test_tui.sh"
