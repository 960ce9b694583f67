/* input.c: the input box: a rule line, then the text wrapped by display width (anywhere, so that the cursor
 * maps simply), scrolled so that the cursor's line is visible. The editing itself is edit.c. */
#include "config.h"
#include "i18n.h"
#include "ui_int.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define PROMPT "> "
#define PROMPT_COLS 2

/* wrapped lines of the text, plus one when the cursor sits past a full last line */
static int wrap(const struct input_view *in, int width, struct wrap_line **out)
{
	int tw = width - PROMPT_COLS > 1 ? width - PROMPT_COLS : 1;
	int n = text_wrap(in->ed.buf, in->ed.len, tw, false, NULL, 0);
	*out = malloc((n + 1) * sizeof **out);
	if (!*out) abort();
	text_wrap(in->ed.buf, in->ed.len, tw, false, *out, n);
	return n;
}

/* the line and column of the cursor in the wrapped text */
static void cursor_at(const struct input_view *in, const struct wrap_line *wl, int n, int tw, int *line, int *colm)
{
	int cur = in->ed.cur;
	int l = 0;
	for (int i = 0; i < n; i++)
		if (wl[i].start <= cur) l = i;
	/* the end of a full line that the next line continues: show the cursor at the next line's start */
	while (l + 1 < n && wl[l + 1].start == cur && wl[l].end == cur) l++;
	int c = text_width(in->ed.buf + wl[l].start, cur - wl[l].start);
	if (c >= tw) { l++; c = 0; } /* past a full last line */
	*line = l;
	*colm = c;
}

int panel_input_lines(const struct input_view *in, int width)
{
	struct wrap_line *wl;
	int n = wrap(in, width, &wl);
	int tw = width - PROMPT_COLS > 1 ? width - PROMPT_COLS : 1, l, c;
	cursor_at(in, wl, n, tw, &l, &c);
	free(wl);
	return l + 1 > n ? l + 1 : n;
}

/* Up/Down by the rows the box shows: a long line wraps over several rows, and Up in its middle went to the
 * history (an older message in place of the text) instead of to the row above. False from the first (last)
 * row: the editor's Up (Down) then goes on into the history. */
static bool move_row(struct input_view *in, int dir)
{
	if (in->width <= 0) return false;
	struct wrap_line *wl;
	int n = wrap(in, in->width, &wl);
	int tw = in->width - PROMPT_COLS > 1 ? in->width - PROMPT_COLS : 1, l, c;
	cursor_at(in, wl, n, tw, &l, &c);
	int t = l + dir;
	bool ok = t >= 0 && t < n;
	if (ok) {
		/* the same column in row t, short of the end of a row that wraps on: that offset is shown at the
		 * start of the next row */
		const char *b = in->ed.buf;
		bool wraps = t + 1 < n && wl[t + 1].start == wl[t].end;
		int p = wl[t].start, col = 0, w;
		while (p < wl[t].end) {
			int q = text_next(b, in->ed.len, p, &w, NULL);
			if (col + w > c || (wraps && q >= wl[t].end)) break;
			col += w;
			p = q;
		}
		in->ed.cur = p;
	}
	free(wl);
	return ok;
}

void panel_input_draw(WINDOW *w, struct input_view *in, bool busy, int *cy, int *cx)
{
	int h = getmaxy(w), wd = getmaxx(w);
	in->width = wd;
	werase(w);
	int y0 = 0;
	if (h >= 2) { /* the rule line, with a hint about multi-line input when there is room */
		draw_hline(w, 0, 0, wd, col(COL_BORDER));
		const char *hint = busy ? _(" generating: Ctrl-C stops ") : _(" Enter: send  Alt-Enter/Ctrl-J: new line ");
		if (str_cols(hint) + 2 < wd) draw_str(w, 0, wd - str_cols(hint) - 1, wd, hint, col(COL_DIM));
		y0 = 1;
	}
	int rows = h - y0;
	struct wrap_line *wl;
	int n = wrap(in, wd, &wl);
	int tw = wd - PROMPT_COLS > 1 ? wd - PROMPT_COLS : 1, l, c;
	cursor_at(in, wl, n, tw, &l, &c);
	int top = l - rows + 1 > 0 ? l - rows + 1 : 0; /* keep the cursor's line in view */
	for (int r = 0; r < rows; r++) {
		int i = top + r;
		/* the prompt on the first line; a mark on the top row when earlier lines are scrolled away */
		if (i == 0) draw_str(w, y0 + r, 0, wd, PROMPT, col(COL_USER));
		else if (r == 0) draw_str(w, y0 + r, 0, wd, ui_utf8 ? "\xe2\x80\xa6" : "^", col(COL_USER));
		if (i >= n) continue;
		draw_text(w, y0 + r, PROMPT_COLS, tw, in->ed.buf + wl[i].start, wl[i].end - wl[i].start, col(COL_NORMAL));
	}
	if (in->ed.len == 0 && in->hint && rows > 0)
		draw_str(w, y0, PROMPT_COLS, tw, in->hint, col(COL_DIM));
	*cy = y0 + (l - top < rows ? l - top : rows - 1);
	*cx = PROMPT_COLS + c < wd ? PROMPT_COLS + c : wd - 1;
	free(wl);
}

int panel_input_key(struct input_view *in, bool is_code, wint_t ch, bool alt, bool *submit)
{
	struct edit *e = &in->ed;
	*submit = false;
	if (is_code) {
		switch (ch) {
		case KEY_LEFT: edit_left(e); return KF_HANDLED | KF_REDRAW;
		case KEY_RIGHT: edit_right(e); return KF_HANDLED | KF_REDRAW;
		case KEY_HOME: edit_home(e); return KF_HANDLED | KF_REDRAW;
		case KEY_END: edit_end(e); return KF_HANDLED | KF_REDRAW;
		case KEY_BACKSPACE: edit_backspace(e); return KF_HANDLED | KF_RELAYOUT;
		case KEY_DC: edit_delete(e); return KF_HANDLED | KF_RELAYOUT;
		case KEY_UP: if (!move_row(in, -1)) edit_up(e); return KF_HANDLED | KF_RELAYOUT;
		case KEY_DOWN: if (!move_row(in, +1)) edit_down(e); return KF_HANDLED | KF_RELAYOUT;
		case KEY_ENTER:
			if (in->pasting) { edit_insert(e, "\n", 1); return KF_HANDLED | KF_RELAYOUT; }
			*submit = true;
			return KF_HANDLED;
		}
		return 0;
	}
	if (alt) {
		switch (ch) {
		case '\r': case '\n': edit_insert(e, "\n", 1); return KF_HANDLED | KF_RELAYOUT;
		case 'b': case 'B': edit_word_left(e); return KF_HANDLED | KF_REDRAW;
		case 'f': case 'F': edit_word_right(e); return KF_HANDLED | KF_REDRAW;
		case 127: case 8: edit_kill_word_back(e); return KF_HANDLED | KF_RELAYOUT;
		case 'd': case 'D': edit_kill_word_fwd(e); return KF_HANDLED | KF_RELAYOUT;
		}
		return 0;
	}
	switch (ch) {
	case '\r':
		if (in->pasting) { edit_insert(e, "\n", 1); return KF_HANDLED | KF_RELAYOUT; }
		*submit = true;
		return KF_HANDLED;
	case '\n': /* Ctrl-J */
		edit_insert(e, "\n", 1);
		return KF_HANDLED | KF_RELAYOUT;
	case 1: edit_home(e); return KF_HANDLED | KF_REDRAW;      /* Ctrl-A */
	case 5: edit_end(e); return KF_HANDLED | KF_REDRAW;       /* Ctrl-E */
	case 2: edit_left(e); return KF_HANDLED | KF_REDRAW;      /* Ctrl-B */
	case 6: edit_right(e); return KF_HANDLED | KF_REDRAW;     /* Ctrl-F */
	case 4: edit_delete(e); return KF_HANDLED | KF_RELAYOUT;  /* Ctrl-D */
	case 8: case 127: edit_backspace(e); return KF_HANDLED | KF_RELAYOUT;
	case 11: edit_kill_line_end(e); return KF_HANDLED | KF_RELAYOUT;   /* Ctrl-K */
	case 21: edit_kill_line_start(e); return KF_HANDLED | KF_RELAYOUT; /* Ctrl-U */
	case 23: edit_kill_word_back(e); return KF_HANDLED | KF_RELAYOUT;  /* Ctrl-W */
	case 16: if (!move_row(in, -1)) edit_up(e); return KF_HANDLED | KF_RELAYOUT;   /* Ctrl-P */
	case 14: if (!move_row(in, +1)) edit_down(e); return KF_HANDLED | KF_RELAYOUT; /* Ctrl-N */
	case '\t': edit_insert(e, "\t", 1); return KF_HANDLED | KF_RELAYOUT;
	}
	if (ch >= 0x20 && ch != 0x7f) {
		/* the text is UTF-8 in every locale (the engine reads UTF-8; a locale that cannot show a character
		 * draws it as '?'), so not wcrtomb, which dropped every non-ASCII character outside UTF-8 locales */
		utf8proc_uint8_t mb[8];
		utf8proc_ssize_t k = utf8proc_encode_char((utf8proc_int32_t)ch, mb);
		if (k > 0) edit_insert(e, (const char *)mb, (int)k);
		return KF_HANDLED | KF_RELAYOUT;
	}
	return 0;
}
