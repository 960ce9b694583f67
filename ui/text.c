/* text.c: UTF-8 display width and wrapping, on grapheme clusters from utf8proc. */
#include "config.h"
#include "text.h"

#include <langinfo.h>
#include <string.h>
#include <utf8proc.h>
#include <wchar.h>

bool text_drawable(int cp)
{
	return cp >= 0x20 && cp != 0x7f && !(cp >= 0x80 && cp < 0xa0);
}

static bool utf8_locale(void)
{
	return strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
}

bool text_replaced(int cp)
{
	return text_drawable(cp) && wcwidth((wchar_t)cp) < 0 && utf8_locale();
}

/* width of one code point as curses places it: curses (and the terminals it drives) give every code point of a
 * grapheme its own wcwidth() cells, so a width of our own (utf8proc's, or one glyph for a ZWJ emoji sequence)
 * would let the next grapheme overwrite part of this one. A code point that wcwidth() does not know (-1: an
 * emoji newer than the C library's tables, an unassigned one) gets one cell from curses, which draws it blank:
 * one column, drawn as U+FFFD (text_replaced). In a locale that is not UTF-8 every such character is drawn as
 * '?' per column: utf8proc's width. */
static int cp_width(int cp)
{
	if (cp < 0) return 1;
	if (!text_drawable(cp)) return cp == '\t' ? 1 : 0;
	int w = wcwidth((wchar_t)cp);
	if (w < 0) w = utf8_locale() ? 1 : utf8proc_charwidth(cp);
	return w < 0 ? 0 : w > 2 ? 2 : w;
}

int text_next(const char *s, int len, int pos, int *width, int *cp)
{
	const utf8proc_uint8_t *u = (const utf8proc_uint8_t *)s;
	utf8proc_int32_t c;
	utf8proc_ssize_t n = utf8proc_iterate(u + pos, len - pos, &c);
	if (n <= 0) { /* invalid byte: one column, shown as '?' */
		*width = 1;
		if (cp) *cp = -1;
		return pos + 1;
	}
	if (cp) *cp = c;
	int w = cp_width(c);
	pos += (int)n;
	if (c == '\n' || c == '\r') { *width = 0; return pos; }
	utf8proc_int32_t state = 0, prev = c;
	while (pos < len) {
		utf8proc_int32_t d;
		n = utf8proc_iterate(u + pos, len - pos, &d);
		if (n <= 0 || d == '\n' || d == '\r') break;
		if (utf8proc_grapheme_break_stateful(prev, d, &state)) break;
		/* a variation selector 16 adds no column, as in curses (draw_text does not send it) */
		w += cp_width(d);
		prev = d;
		pos += (int)n;
	}
	*width = w;
	return pos;
}

int text_prev(const char *s, int len, int pos)
{
	/* walk forward from the start of the line (graphemes are only well defined forward) */
	int ls = pos - 1;
	while (ls > 0 && s[ls - 1] != '\n') ls--;
	if (pos - 1 >= 0 && s[pos - 1] == '\n') return pos - 1;
	int p = ls, last = ls, w;
	while (p < pos) {
		last = p;
		p = text_next(s, len, p, &w, NULL);
	}
	return last;
}

int text_width(const char *s, int len)
{
	int p = 0, cols = 0, w;
	while (p < len) {
		p = text_next(s, len, p, &w, NULL);
		cols += w;
	}
	return cols;
}

/* Chinese and Japanese line breaking (kinsoku): a line does not start with closing punctuation nor end with an
 * opening bracket, so "（" stays with what it opens and "，" with what it follows. Only between wide characters:
 * ASCII text breaks at its spaces. */
static bool no_break_before(int cp)
{
	static const int close[] = { 0x3001, 0x3002, 0xff0c, 0xff0e, 0xff1a, 0xff1b, 0xff01, 0xff1f, 0xff09, 0x300b,
				     0x300d, 0x300f, 0x3011, 0x3009, 0x3015, 0x3017, 0x201d, 0x2019, 0x2026, 0xff5e,
				     0x30fc, 0xff3d, 0xff5d, 0x00b7, 0x30fb };
	for (size_t i = 0; i < sizeof close / sizeof *close; i++)
		if (cp == close[i]) return true;
	return false;
}

static bool no_break_after(int cp)
{
	static const int open[] = { 0xff08, 0x300a, 0x300c, 0x300e, 0x3010, 0x3008, 0x3014, 0x3016, 0x201c, 0x2018,
				    0xff3b, 0xff5b };
	for (size_t i = 0; i < sizeof open / sizeof *open; i++)
		if (cp == open[i]) return true;
	return false;
}

int text_wrap(const char *s, int len, int width, bool word, struct wrap_line *out, int max)
{
	if (width < 1) width = 1;
	int n = 0;
#define EMIT(a, b, c) do { if (out && n < max) { out[n].start = (a); out[n].end = (b); out[n].cols = (c); } n++; } while (0)
	int start = 0, cols = 0, p = 0, prev_cp = -1;
	int brk = -1, brk_cols = 0, brk_next = 0; /* last break: line ends at brk, next line starts at brk_next */
	int pbrk = -1, pbrk_cols = 0, pbrk_next = 0; /* the one before it, for when kinsoku takes the last back */
#define SET_BRK(a, b, c) do { pbrk = brk, pbrk_cols = brk_cols, pbrk_next = brk_next; brk = (a), brk_cols = (b), brk_next = (c); } while (0)
	while (p < len) {
		int w, cp;
		int q = text_next(s, len, p, &w, &cp);
		if (cp == '\n') {
			EMIT(start, p, cols);
			start = p = q;
			cols = 0;
			brk = pbrk = -1;
			prev_cp = -1;
			continue;
		}
		/* closing punctuation: the break just before it (after the wide character before) is not one */
		if (word && brk == p && brk_next == p && no_break_before(cp)) {
			brk = pbrk, brk_cols = pbrk_cols, brk_next = pbrk_next;
			pbrk = -1;
		}
		if (word && cp == ' ' && cols + w > width) { /* the space itself overflows: break here */
			EMIT(start, p, cols);
			start = p = q;
			cols = 0;
			brk = -1;
			continue;
		}
		bool wrapped = false;
		while (cols + w > width && cols > 0) {
			if (word && brk > start) {
				EMIT(start, brk, brk_cols);
				/* carry the part after the break to the new line */
				start = brk_next;
				cols = text_width(s + start, p - start);
			} else {
				EMIT(start, p, cols);
				start = p;
				cols = 0;
			}
			brk = pbrk = -1;
			wrapped = true;
		}
		/* a space that falls on the wrap is not carried to the start of the next line */
		if (wrapped && word && start == p && cp == ' ') { start = p = q; prev_cp = cp; continue; }
		if (word) {
			if (cp == ' ') SET_BRK(p, cols, q);
			else if (w >= 2 && p > start && !no_break_after(prev_cp) && !no_break_before(cp)) SET_BRK(p, cols, p);
		}
		cols += w;
		p = q;
		if (word && w >= 2 && !no_break_after(cp)) SET_BRK(p, cols, p);
		prev_cp = cp;
	}
	EMIT(start, len, cols);
#undef SET_BRK
#undef EMIT
	return n;
}
