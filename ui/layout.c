/* layout.c: panel rectangles from (cols, rows, options). Pure: no curses, no globals.
 *
 *  wide (cols >= 100):                 narrow, memory toggled on:     tiny (< 40x10):
 *  +------------------+--------+       +---------------------+         +-----------+
 *  | transcript       | memory |       | memory              |         | transcript|
 *  |                  |        |       +---------------------+         |           |
 *  +------------------+        |       | transcript          |         +-----------+
 *  | input            |        |       +---------------------+         | input     |
 *  +------------------+--------+       | input               |         +-----------+
 *  | status bar                |       +---------------------+         | status    |
 *  +---------------------------+       | status bar          |         +-----------+
 */
#include "config.h"
#include "layout.h"

static struct rect mk(int y, int x, int h, int w)
{
	struct rect r = { y, x, h, w };
	if (h <= 0 || w <= 0) r.h = r.w = 0, r.y = r.x = 0;
	return r;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

void layout_overlay_size(enum overlay ov, int *h, int *w)
{
	switch (ov) {
	case OVERLAY_HELP: *h = 22; *w = 78; break;
	case OVERLAY_SETTINGS: *h = 17; *w = 64; break;
	case OVERLAY_PROGRESS: *h = 8; *w = 60; break;
	case OVERLAY_CONFIRM: *h = 6; *w = 50; break;
	default: *h = *w = 0; break;
	}
}

void layout_compute(struct layout *l, int cols, int rows, const struct layout_opts *o)
{
	struct layout z = { 0 };
	*l = z;
	if (cols <= 0 || rows <= 0) return;
	l->tiny = cols < LAYOUT_TINY_COLS || rows < LAYOUT_TINY_ROWS;
	l->wide = !l->tiny && cols >= LAYOUT_WIDE_COLS;

	/* status bar: the bottom row, when there is room for it and something above it; a message too long for one
	 * row (at 40 columns "wait: a reply is being generated (Ctrl-" was all there was of one) takes up to three
	 * while it is shown, where the screen has twelve rows or more */
	int body_h = rows;
	if (rows >= 4) {
		int sh = clampi(o->status_lines, 1, rows >= 12 ? 3 : 1);
		l->status = mk(rows - sh, 0, sh, cols);
		body_h = rows - sh;
	}

	/* the memory panel: beside the body when wide (unless toggled off), above the chat when toggled on
	 * in a narrow-but-not-tiny terminal */
	bool mem_side = l->wide && !o->mem_toggled;
	bool mem_top = !l->tiny && !l->wide && o->mem_toggled;
	int body_w = cols;
	if (mem_side) {
		int mw = clampi(cols * 32 / 100, LAYOUT_MEM_MIN_W, LAYOUT_MEM_MAX_W);
		body_w = cols - mw;
		l->mem = mk(0, body_w, body_h, mw);
	}

	if (o->mode == LAYOUT_PROGRESS) {
		if (!mem_side && !l->tiny) {
			/* narrow: the progress panel on top, the memory panel below it where there is room */
			int ph = clampi(body_h / 2, 1, 9);
			if (body_h - ph < LAYOUT_MEM_MIN_H) ph = body_h;
			l->progress = mk(0, 0, ph, body_w);
			if (ph < body_h) l->mem = mk(ph, 0, body_h - ph, body_w);
		} else {
			l->progress = mk(0, 0, body_h, body_w);
		}
	} else {
		int y0 = 0;
		if (mem_top) {
			/* the memory panel takes the top, the transcript keeps at least 3 rows */
			int avail = body_h - 2; /* minus a minimal input box */
			int mh = clampi(avail - 3, 0, 16);
			if (mh >= LAYOUT_MEM_MIN_H) {
				l->mem = mk(0, 0, mh, body_w);
				y0 = mh;
			}
		}
		int h = body_h - y0;
		/* the input box: a rule line plus its text lines, at most a third of the screen */
		int il = o->input_lines < 1 ? 1 : o->input_lines;
		int ih;
		if (h >= 4) {
			ih = clampi(il + 1, 2, h / 3 > 2 ? h / 3 : 2);
		} else {
			ih = h >= 2 ? 1 : h; /* no rule line */
		}
		l->input = mk(y0 + h - ih, 0, ih, body_w);
		l->transcript = mk(y0, 0, h - ih, body_w);
	}

	if (o->overlay != OVERLAY_NONE) {
		int oh, ow;
		layout_overlay_size(o->overlay, &oh, &ow);
		/* keep one cell of the screen around it where possible, so it reads as a window */
		int maxh = rows >= 8 ? rows - 2 : rows, maxw = cols >= 24 ? cols - 4 : cols;
		oh = clampi(oh, 1, maxh);
		ow = clampi(ow, 1, maxw);
		l->overlay = mk((rows - oh) / 2, (cols - ow) / 2, oh, ow);
	}
}
