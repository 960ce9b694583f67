/* test_layout: the layout is a pure function of (cols, rows, options); for every size from 20x6 to 300x100
 * (and a few degenerate ones) every shown rectangle is non-empty, inside the screen, and the panels do not
 * overlap; the chat is always there; tiny terminals keep the chat alone. */
#include "config.h"
#include "layout.h"

#include <stdio.h>
#include <string.h>

static int fails, checks;

static void check(bool ok, const char *what, int c, int r, const struct layout_opts *o)
{
	checks++;
	if (!ok && fails++ < 20)
		printf("FAIL %dx%d mode %d overlay %d toggled %d lines %d status %d: %s\n", c, r, o->mode, o->overlay,
		       o->mem_toggled, o->input_lines, o->status_lines, what);
}

static bool inside(struct rect a, int c, int r)
{
	return a.y >= 0 && a.x >= 0 && a.y + a.h <= r && a.x + a.w <= c;
}

static bool overlap(struct rect a, struct rect b)
{
	if (!rect_shown(a) || !rect_shown(b)) return false;
	return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

static void one(int c, int r, const struct layout_opts *o)
{
	struct layout l, l2;
	layout_compute(&l, c, r, o);
	layout_compute(&l2, c, r, o);
	check(memcmp(&l, &l2, sizeof l) == 0, "same input, same output", c, r, o);
	struct rect rs[] = { l.transcript, l.input, l.status, l.mem, l.progress };
	const char *names[] = { "transcript", "input", "status", "mem", "progress" };
	for (int i = 0; i < 5; i++) {
		char what[96];
		/* hidden rectangles are all zero; shown ones are non-empty and inside */
		if (!rect_shown(rs[i])) {
			snprintf(what, sizeof what, "%s hidden but not zeroed", names[i]);
			check(rs[i].h == 0 && rs[i].w == 0, what, c, r, o);
			continue;
		}
		snprintf(what, sizeof what, "%s (%d,%d %dx%d) outside the screen", names[i], rs[i].y, rs[i].x,
			 rs[i].h, rs[i].w);
		check(inside(rs[i], c, r), what, c, r, o);
		for (int j = i + 1; j < 5; j++) {
			snprintf(what, sizeof what, "%s overlaps %s", names[i], names[j]);
			check(!overlap(rs[i], rs[j]), what, c, r, o);
		}
	}
	if (o->mode == LAYOUT_CHAT) {
		check(rect_shown(l.input), "input shown", c, r, o);
		if (r >= 4) check(rect_shown(l.transcript), "transcript shown", c, r, o);
		check(!rect_shown(l.progress), "no progress panel in chat mode", c, r, o);
		/* the input box holds its lines (plus a rule) when there is room */
		if (r >= 30 && o->input_lines <= 5)
			check(l.input.h == o->input_lines + 1, "input box fits its lines", c, r, o);
		if (r >= 12) check(l.transcript.h >= 3, "transcript keeps 3 rows", c, r, o);
	} else {
		check(rect_shown(l.progress), "progress shown", c, r, o);
		check(!rect_shown(l.transcript) && !rect_shown(l.input), "no chat in progress mode", c, r, o);
	}
	if (r >= 4) check(rect_shown(l.status) && l.status.y + l.status.h == r && l.status.w == c, "status bar at bottom", c, r, o);
	if (r >= 4) {
		int want = o->status_lines < 1 ? 1 : o->status_lines > 3 ? 3 : o->status_lines;
		check(l.status.h == (r >= 12 ? want : 1), "status bar as tall as its message, up to 3 rows from 12", c, r, o);
	}
	if (l.tiny) check(!rect_shown(l.mem), "tiny: chat alone", c, r, o);
	check(l.tiny == (c < LAYOUT_TINY_COLS || r < LAYOUT_TINY_ROWS), "tiny flag", c, r, o);
	if (l.wide && !o->mem_toggled) check(rect_shown(l.mem) && l.mem.w >= LAYOUT_MEM_MIN_W, "wide: memory beside", c, r, o);
	if (l.wide && o->mem_toggled && o->mode == LAYOUT_CHAT) check(!rect_shown(l.mem), "wide + toggled: memory hidden", c, r, o);
	if (!l.wide && !l.tiny && o->mode == LAYOUT_CHAT && !o->mem_toggled)
		check(!rect_shown(l.mem), "narrow: memory one key away", c, r, o);
	if (!l.wide && !l.tiny && o->mode == LAYOUT_CHAT && o->mem_toggled && r >= 20)
		check(rect_shown(l.mem) && l.mem.h >= LAYOUT_MEM_MIN_H, "narrow + toggled: memory shown", c, r, o);
	if (rect_shown(l.mem)) check(l.mem.h >= LAYOUT_MEM_MIN_H || l.mem.h == r - 1, "memory panel tall enough", c, r, o);
	if (o->overlay != OVERLAY_NONE) {
		check(rect_shown(l.overlay) && inside(l.overlay, c, r), "overlay shown inside", c, r, o);
	} else {
		check(!rect_shown(l.overlay), "no overlay", c, r, o);
	}
	/* the panels cover the whole screen: no stray cells left undrawn */
	long area = 0;
	for (int i = 0; i < 5; i++) area += (long)rs[i].h * rs[i].w;
	check(area == (long)c * r, "panels tile the screen", c, r, o);
}

int main(void)
{
	struct layout_opts o = { 0 };
	int sizes = 0;
	for (int c = 20; c <= 300; c += (c < 130 ? 1 : 7))
		for (int r = 6; r <= 100; r += (r < 50 ? 1 : 5)) {
			sizes++;
			for (int mode = 0; mode < 2; mode++)
				for (int ov = 0; ov <= OVERLAY_CONFIRM; ov++)
					for (int t = 0; t < 2; t++)
						for (int lines = 1; lines <= 12; lines += 5)
							for (int sl = 0; sl <= 4; sl += 2) {
								o.mode = mode;
								o.overlay = ov;
								o.mem_toggled = t;
								o.input_lines = lines;
								o.status_lines = sl;
								one(c, r, &o);
							}
		}
	/* degenerate sizes must not crash or produce garbage */
	for (int c = 1; c < 20; c++)
		for (int r = 1; r < 6; r++) {
			o = (struct layout_opts){ .input_lines = 1 };
			struct layout l;
			layout_compute(&l, c, r, &o);
			struct rect rs[] = { l.transcript, l.input, l.status, l.mem };
			for (int i = 0; i < 4; i++)
				if (rect_shown(rs[i])) check(inside(rs[i], c, r), "degenerate: inside", c, r, &o);
			check(rect_shown(l.input), "degenerate: input shown", c, r, &o);
		}
	/* spot checks of the intended arrangement */
	struct layout l;
	o = (struct layout_opts){ .input_lines = 1 };
	layout_compute(&l, 120, 40, &o);
	check(l.wide && l.mem.x + l.mem.w == 120 && l.transcript.w == l.mem.x, "120x40: memory on the right", 120, 40, &o);
	layout_compute(&l, 60, 20, &o);
	check(!l.wide && !l.tiny && !rect_shown(l.mem), "60x20: narrow", 60, 20, &o);
	layout_compute(&l, 20, 6, &o);
	check(l.tiny && !rect_shown(l.mem), "20x6: chat alone", 20, 6, &o);
	printf("%d sizes, %d checks, %d failures\n", sizes, checks, fails);
	return fails ? 1 : 0;
}
