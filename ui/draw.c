/* draw.c: drawing helpers shared by the panels: UTF-8 text by grapheme, boxes, numbers. */
#include "config.h"
#include "ui_int.h"

#include <stdio.h>
#include <string.h>
#include <utf8proc.h>

bool ui_utf8;

int draw_text(WINDOW *w, int y, int x, int maxcols, const char *s, int len, attr_t a)
{
	int p = 0, cols = 0;
	wattrset(w, a);
	while (p < len) {
		int cw, cp;
		int q = text_next(s, len, p, &cw, &cp);
		if (cols + cw > maxcols) break;
		if (cp == -1 || (cw > 0 && !ui_utf8 && (unsigned char)s[p] >= 0x80)) {
			/* invalid byte, or a character this terminal cannot show */
			for (int k = 0; k < cw; k++) mvwaddch(w, y, x + cols + k, '?');
		} else if (cw > 0 && text_drawable(cp)) {
			/* the grapheme without control characters (a tab is drawn as a space), cut at a character
			 * boundary when very long (a letter with dozens of combining marks): a partial character would
			 * be drawn by curses as several cells of escapes */
			char g[64];
			int gl = 0;
			for (int k = p; k < q;) {
				utf8proc_int32_t c;
				int n = (int)utf8proc_iterate((const utf8proc_uint8_t *)s + k, q - k, &c);
				if (n <= 0) break; /* not reached: a grapheme ends before an invalid byte */
				/* a character that wcwidth() does not know (an emoji newer than the C library): curses
				 * gives it one cell and draws that blank; U+FFFD shows something is there */
				bool rep = text_replaced(c);
				const char *b = rep ? "\xef\xbf\xbd" : s + k;
				int bn = rep ? 3 : n;
				if (gl + bn > (int)sizeof g - 1) break;
				/* a zero width joiner is not sent: terminals differ in whether they join the emoji around
				 * it into one glyph (and in how many columns they then take), curses does not; without it
				 * every terminal shows the parts in the columns counted for them. Nor a variation selector
				 * (VS15, VS16), for the same reason: some terminals draw "❤️" in two columns, curses
				 * counts one. */
				bool skip = c == 0x200D || c == 0xFE0E || c == 0xFE0F;
				if (text_drawable(c) && !skip) { memcpy(g + gl, b, bn); gl += bn; }
				k += n;
			}
			g[gl] = 0;
			mvwaddnstr(w, y, x + cols, g, gl);
		} else if (cp == '\t') {
			mvwaddch(w, y, x + cols, ' ');
		}
		cols += cw;
		p = q;
	}
	wattrset(w, A_NORMAL);
	return cols;
}

int draw_str(WINDOW *w, int y, int x, int maxcols, const char *s, attr_t a)
{
	return draw_text(w, y, x, maxcols, s, (int)strlen(s), a);
}

int str_cols(const char *s) { return text_width(s, (int)strlen(s)); }

void draw_str_right(WINDOW *w, int y, int xend, int maxcols, const char *s, attr_t a)
{
	int c = str_cols(s);
	if (c > maxcols) c = maxcols;
	draw_str(w, y, xend - c, maxcols, s, a);
}

void draw_fill(WINDOW *w, int y, int x, int n, const char *cell, attr_t a)
{
	wattrset(w, a);
	for (int i = 0; i < n; i++) mvwaddstr(w, y, x + i, cell);
	wattrset(w, A_NORMAL);
}

/* Lines are drawn with the Unicode box characters in a UTF-8 locale rather than the terminal's alternate
 * character set, which some terminals (and tmux's capture-pane) do not render; ASCII elsewhere. */
static void cc(cchar_t *c, const wchar_t *s, attr_t a)
{
	setcchar(c, s, a & ~A_COLOR, PAIR_NUMBER(a), NULL);
}

void draw_hline(WINDOW *w, int y, int x, int n, attr_t a)
{
	if (ui_utf8) {
		cchar_t h;
		cc(&h, L"\u2500", a);
		mvwhline_set(w, y, x, &h, n);
	} else {
		wattrset(w, a);
		mvwhline(w, y, x, '-', n);
		wattrset(w, A_NORMAL);
	}
}

void draw_box(WINDOW *w, const char *title, attr_t a)
{
	int h = getmaxy(w), wd = getmaxx(w);
	if (h >= 2 && wd >= 2) {
		if (ui_utf8) {
			cchar_t ls, hs, tl, tr, bl, br;
			cc(&ls, L"\u2502", a);
			cc(&hs, L"\u2500", a);
			cc(&tl, L"\u256d", a);
			cc(&tr, L"\u256e", a);
			cc(&bl, L"\u2570", a);
			cc(&br, L"\u256f", a);
			wborder_set(w, &ls, &ls, &hs, &hs, &tl, &tr, &bl, &br);
		} else {
			wattrset(w, a);
			wborder(w, '|', '|', '-', '-', '+', '+', '+', '+');
			wattrset(w, A_NORMAL);
		}
	}
	if (title && wd > 6) {
		mvwaddch(w, 0, 1, ' ');
		int c = draw_str(w, 0, 2, wd - 5, title, col(COL_TITLE));
		mvwaddch(w, 0, 2 + c, ' ');
	}
}

void fmt_bytes(char *out, size_t n, size_t b)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int u = 0;
	while (v >= 1024 && u < 4) v /= 1024, u++;
	if (u == 0) snprintf(out, n, "%zu B", b);
	else if (v < 10) snprintf(out, n, "%.2f %s", v, units[u]);
	else if (v < 100) snprintf(out, n, "%.1f %s", v, units[u]);
	else snprintf(out, n, "%.0f %s", v, units[u]);
}

void fmt_duration(char *out, size_t n, double s)
{
	if (s < 0 || s != s) s = 0;
	long t = (long)(s + 0.5);
	if (t >= 3600) snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
	else if (t >= 60) snprintf(out, n, "%ld:%02ld", t / 60, t % 60);
	else snprintf(out, n, "%lds", t);
}
