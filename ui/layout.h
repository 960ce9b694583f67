/* layout.h: where every panel goes, as a pure function of the terminal size and a few options.
 * No curses here, so tests/test_layout.c can check every size. A rectangle with h == 0 or w == 0 is not shown. */
#ifndef LMTERM_UI_LAYOUT_H
#define LMTERM_UI_LAYOUT_H

#include <stdbool.h>

struct rect { int y, x, h, w; };

static inline bool rect_shown(struct rect r) { return r.h > 0 && r.w > 0; }

enum layout_mode {
	LAYOUT_CHAT,      /* transcript, input, status bar, memory panel */
	LAYOUT_PROGRESS,  /* progress panel, memory panel, status bar */
};

enum overlay {
	OVERLAY_NONE,
	OVERLAY_HELP,
	OVERLAY_SETTINGS,
	OVERLAY_PROGRESS, /* model loading / KV rebuild over the chat */
	OVERLAY_CONFIRM,  /* "quit while a reply is streaming?" */
};

struct layout_opts {
	enum layout_mode mode;
	enum overlay overlay;
	bool mem_toggled;  /* the memory key was pressed: hides the side panel when wide, shows it when narrow */
	int input_lines;   /* lines the input text needs (>= 1); the input box grows up to a third of the screen */
	int status_lines;  /* lines the status bar's message needs (<= 1: one); up to 3 where the screen has room */
};

struct layout {
	bool wide;           /* the memory panel fits beside the chat */
	bool tiny;           /* degraded: the chat alone */
	struct rect transcript, input, status, mem, progress, overlay;
};

/* Thresholds, public so tests and the help text agree with them. */
enum {
	LAYOUT_WIDE_COLS = 100,  /* memory panel beside the chat from this width */
	LAYOUT_MEM_MIN_W = 34,
	LAYOUT_MEM_MAX_W = 52,
	LAYOUT_MEM_MIN_H = 9,    /* the bar and its legend */
	LAYOUT_TINY_COLS = 40,   /* below these, the chat alone */
	LAYOUT_TINY_ROWS = 10,
};

void layout_compute(struct layout *l, int cols, int rows, const struct layout_opts *o);

/* preferred overlay sizes (the overlay shrinks to the screen) */
void layout_overlay_size(enum overlay ov, int *h, int *w);

#endif
