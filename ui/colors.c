/* colors.c: semantic colour names mapped to a scheme on the terminal's default background
 * (use_default_colors), or to plain attributes when there is no colour, --no-color or NO_COLOR. */
#include "config.h"
#include "ui_int.h"

#include <stdlib.h>

static attr_t attrs[COL_N];

/* fg, bg (-1 = the terminal's default), extra attributes */
static const struct { short fg, bg; attr_t a; } scheme[COL_N] = {
	[COL_NORMAL] = { -1, -1, 0 },
	[COL_USER] = { COLOR_CYAN, -1, A_BOLD },
	[COL_ASSIST] = { COLOR_GREEN, -1, A_BOLD },
	[COL_NOTE] = { COLOR_YELLOW, -1, 0 },
	[COL_ERROR] = { COLOR_RED, -1, A_BOLD },
	[COL_STATUS] = { COLOR_BLACK, COLOR_CYAN, 0 },
	[COL_STATUS_KEY] = { COLOR_WHITE, COLOR_BLUE, A_BOLD },
	[COL_BORDER] = { COLOR_BLUE, -1, 0 },
	[COL_TITLE] = { COLOR_CYAN, -1, A_BOLD },
	[COL_DIM] = { -1, -1, A_DIM },
	[COL_SEL] = { COLOR_BLACK, COLOR_CYAN, 0 },
	[COL_WARN] = { COLOR_YELLOW, -1, A_BOLD },
	[COL_BAR_DONE] = { COLOR_GREEN, -1, A_BOLD },
	[COL_BAR_TODO] = { -1, -1, A_DIM },
	[COL_MEM_WEIGHTS] = { COLOR_MAGENTA, -1, A_BOLD },
	[COL_MEM_KV] = { COLOR_GREEN, -1, A_BOLD },
	[COL_MEM_KVFREE] = { COLOR_GREEN, -1, 0 },
	[COL_MEM_ACT] = { COLOR_YELLOW, -1, A_BOLD },
	[COL_MEM_OTHER] = { COLOR_RED, -1, 0 },
	[COL_MEM_FREE] = { -1, -1, A_DIM },
	[COL_GRAPH] = { COLOR_CYAN, -1, 0 },
};

/* without colour: what still tells the parts apart */
static const attr_t mono[COL_N] = {
	[COL_USER] = A_BOLD, [COL_ASSIST] = A_BOLD, [COL_NOTE] = 0, [COL_ERROR] = A_BOLD,
	[COL_STATUS] = A_REVERSE, [COL_STATUS_KEY] = A_REVERSE | A_BOLD, [COL_TITLE] = A_BOLD, [COL_DIM] = A_DIM,
	[COL_SEL] = A_REVERSE, [COL_WARN] = A_BOLD, [COL_BAR_DONE] = A_BOLD, [COL_MEM_WEIGHTS] = A_BOLD,
};

void colors_init(bool no_color)
{
	const char *nc = getenv("NO_COLOR");
	if (nc && *nc) no_color = true; /* https://no-color.org: any non-empty value */
	if (no_color || !has_colors() || start_color() == ERR) {
		for (int i = 0; i < COL_N; i++) attrs[i] = mono[i];
		return;
	}
	bool dflt = use_default_colors() == OK;
	for (int i = 0; i < COL_N; i++) {
		short fg = scheme[i].fg, bg = scheme[i].bg;
		if (!dflt) { /* no default colours: white on black */
			if (fg < 0) fg = COLOR_WHITE;
			if (bg < 0) bg = COLOR_BLACK;
		}
		if (i + 1 < COLOR_PAIRS && init_pair(i + 1, fg, bg) == OK)
			attrs[i] = COLOR_PAIR(i + 1) | scheme[i].a;
		else
			attrs[i] = mono[i];
	}
}

attr_t col(enum ui_color c) { return attrs[c]; }
