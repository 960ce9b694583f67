/* test_chat_view: the transcript panel (ui/chat.c) drawn into a curses window on /dev/null and read back:
 * each message's wrapped lines are cached, and the cache must follow the window's width and the text that
 * streams into the last message; the view stays anchored at the bottom, and a view scrolled back keeps its
 * bottom row's text there when the width changes. Text is measured as curses places it (a character that wcwidth()
 * does not know, VS16). */
#include "config.h"
#include "ui_int.h"

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <wchar.h>

static int fails, checks;

#define CHECK(cond, ...) do { checks++; if (!(cond)) { fails++; printf("FAIL line %d: ", __LINE__); \
	printf(__VA_ARGS__); printf("\n"); } } while (0)

/* row y of the window as text (trailing blanks cut) */
static const char *row(WINDOW *w, int y)
{
	static char buf[512];
	int n = mvwinnstr(w, y, 0, buf, (int)sizeof buf - 1);
	if (n < 0) n = 0;
	buf[n] = 0;
	while (n > 0 && buf[n - 1] == ' ') buf[--n] = 0;
	return buf;
}

/* every cached line of every message fits cols columns and the cache holds what text_wrap gives now */
static void check_cache(const struct chat_view *c, int cols, const char *when)
{
	for (int i = 0; i < c->n; i++) {
		const struct chat_msg *m = &c->m[i];
		int k = text_wrap(m->text, m->len, cols, true, NULL, 0);
		CHECK(m->wl && m->wrap_w == cols && m->nwl == k && m->wrap_len == m->len,
		      "%s: message %d: cache of width %d, %d lines, %d bytes; want width %d, %d lines, %d bytes", when, i,
		      m->wrap_w, m->nwl, m->wrap_len, cols, k, m->len);
		for (int j = 0; m->wl && j < m->nwl; j++)
			CHECK(m->wl[j].cols <= cols, "%s: message %d line %d takes %d columns of %d", when, i, j,
			      m->wl[j].cols, cols);
	}
}

/* a code point that this C library's wcwidth() does not know (-1): an emoji newer than its tables (Unicode 15,
 * 16), else one that is unassigned; 0 if it knows them all */
static int unknown_cp(void)
{
	static const int cand[] = { 0x1FAE8, 0x1FAE9, 0x1FADC, 0x0378 };
	for (size_t i = 0; i < sizeof cand / sizeof *cand; i++)
		if (wcwidth((wchar_t)cand[i]) < 0) return cand[i];
	return 0;
}

/* the first character of cell (y, x), with the combining ones after it in *rest (0 terminated) */
static wchar_t cell(WINDOW *w, int y, int x, wchar_t rest[CCHARW_MAX + 1])
{
	cchar_t cc;
	attr_t a;
	short pair;
	rest[0] = 0;
	if (mvwin_wch(w, y, x, &cc) == ERR || getcchar(&cc, rest, &a, &pair, NULL) == ERR) return 0;
	return rest[0];
}

/* Text measured as curses places it: the columns that text_width() counts are those that curses moves by when
 * it adds the same text (else the next character is drawn off from where it was counted), and draw_text() puts
 * nothing in a cell that curses would draw blank. curses gives a character that wcwidth() does not know one
 * cell and draws it blank: it is drawn as U+FFFD. A variation selector 16 does not widen a character in curses,
 * and terminals differ on it: it is not sent. */
static void check_widths(void)
{
	WINDOW *w = newwin(2, 40, 0, 0);
	char unk[8] = "";
	int u = unknown_cp();
	if (u) {
		utf8proc_ssize_t n = utf8proc_encode_char(u, (utf8proc_uint8_t *)unk);
		unk[n] = 0;
	} else {
		printf("note: wcwidth() knows every candidate code point: U+FFFD is not checked\n");
	}
	char s1[32];
	snprintf(s1, sizeof s1, "A%sB", unk);
	const char *texts[] = { s1, "C\xe2\x9d\xa4\xef\xb8\x8f" "D", /* a heart with VS16 */
				"1\xef\xb8\x8f\xe2\x83\xa3" "E", /* keycap one */
				"\xf0\x9f\x91\x8d\xef\xb8\x8f" "F", /* thumbs up with VS16 */
				"\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9" "G", "caf\x65\xcc\x81" "H" };
	for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
		const char *t = texts[i];
		werase(w);
		wmove(w, 0, 0);
		waddstr(w, t);
		int by_curses = getcurx(w);
		CHECK(text_width(t, (int)strlen(t)) == by_curses, "text %zu ('%s'): text_width %d columns, curses moves by %d",
		      i, t, text_width(t, (int)strlen(t)), by_curses);
		werase(w);
		int drawn = draw_text(w, 1, 0, 40, t, (int)strlen(t), A_NORMAL);
		wchar_t rest[CCHARW_MAX + 1];
		wchar_t last = cell(w, 1, drawn - 1, rest);
		CHECK(last == (wchar_t)t[strlen(t) - 1], "text %zu ('%s'): the last letter is not in the last of the %d columns",
		      i, t, drawn);
		for (int x = 0; x < drawn; x++) {
			wchar_t c = cell(w, 1, x, rest);
			CHECK(c == 0 || wcwidth(c) >= 0, "text %zu ('%s'): column %d holds U+%04X, which curses draws blank", i, t,
			      x, (unsigned)c);
			for (int k = 0; rest[k]; k++)
				CHECK(rest[k] != 0xFE0F, "text %zu ('%s'): column %d holds a VS16", i, t, x);
		}
	}
	if (u) {
		wchar_t rest[CCHARW_MAX + 1];
		werase(w);
		draw_text(w, 1, 0, 40, s1, (int)strlen(s1), A_NORMAL);
		CHECK(cell(w, 1, 1, rest) == 0xFFFD, "U+%04X: drawn as U+%04X, want U+FFFD", (unsigned)u,
		      (unsigned)cell(w, 1, 1, rest));
	}
	delwin(w);
}

int main(void)
{
	if (!setlocale(LC_ALL, "C.UTF-8")) setlocale(LC_ALL, "");
	FILE *null = fopen("/dev/null", "w");
	SCREEN *sc = null ? newterm("vt100", null, stdin) : NULL;
	if (!sc) {
		printf("SKIP: no curses terminal\n");
		return 77;
	}
	set_term(sc);
	ui_utf8 = true; /* as ui.c sets it in a UTF-8 locale */
	check_widths();
	const char *para = "The quick brown fox jumps over the lazy dog; 快速的棕色狐狸跳过了懒狗。 ";
	struct chat_view c = { 0 };
	for (int i = 0; i < 6; i++) {
		panel_chat_add(&c, i % 2 ? ROLE_ASSISTANT : ROLE_USER, "", 0);
		for (int j = 0; j < 4; j++) panel_chat_append(&c, para, (int)strlen(para));
	}
	WINDOW *wide = newwin(20, 100, 0, 0), *narrow = newwin(20, 40, 0, 0);
	panel_chat_draw(wide, &c);
	check_cache(&c, 97, "width 100"); /* the text is indented by 2, with a margin of 1 */
	/* a narrower window rewraps every message: a cache kept by message alone would keep 97-column lines */
	panel_chat_draw(narrow, &c);
	check_cache(&c, 37, "width 40");
	/* text streaming into the last message: its lines follow, and the bottom row shows the new end */
	panel_chat_append(&c, " END-OF-REPLY", 13);
	panel_chat_draw(narrow, &c);
	check_cache(&c, 37, "after an append");
	CHECK(strstr(row(narrow, 19), "END-OF-REPLY") != NULL, "the bottom row is '%s', want the reply's new end",
	      row(narrow, 19));
	/* the last message dropped (an empty reply): its cache goes with it, and a new message starts clean */
	panel_chat_drop_last(&c);
	CHECK(c.n == 5, "%d messages after dropping the last, want 5", c.n);
	panel_chat_add(&c, ROLE_ASSISTANT, "short", 5);
	CHECK(c.m[5].wl == NULL, "a new message has a cache before its first draw");
	panel_chat_draw(wide, &c);
	check_cache(&c, 97, "a new message");
	CHECK(strcmp(row(wide, 19), "  short") == 0, "the bottom row is '%s', want '  short'", row(wide, 19));
	panel_chat_free(&c);

	/* scrolled back, then the width changes (a resize, F3): the text that was on the bottom row stays there.
	 * Every word of message i is tagged "mNN:", so a row says which message it shows. The view kept the count
	 * of lines below it plus what the whole transcript gained in rewrapping, and moved by that much. */
	struct chat_view v = { 0 };
	for (int i = 0; i < 40; i++) {
		char t[400];
		int n = 0;
		for (int j = 0; j < 24; j++) n += snprintf(t + n, sizeof t - n, "m%02d:w%d ", i, j);
		panel_chat_add(&v, i % 2 ? ROLE_ASSISTANT : ROLE_USER, t, n);
	}
	panel_chat_draw(wide, &v);
	char tag[8] = "";
	for (int k = 0; k < 4 && !tag[0]; k++) { /* 25 lines back or a little more, to a row of text */
		panel_chat_scroll(&v, k ? 1 : 25);
		panel_chat_draw(wide, &v);
		const char *r = strchr(row(wide, 19), 'm');
		if (r) snprintf(tag, sizeof tag, "%.4s", r);
	}
	CHECK(tag[0] == 'm', "scrolled back 25 lines at width 100: no text on the bottom row ('%s')", row(wide, 19));
	panel_chat_draw(narrow, &v);
	CHECK(tag[0] && strstr(row(narrow, 19), tag) != NULL,
	      "width 100 -> 40 while scrolled back: the bottom row shows '%s', want the text of %s still there",
	      row(narrow, 19), tag);
	panel_chat_draw(wide, &v);
	CHECK(tag[0] && strstr(row(wide, 19), tag) != NULL,
	      "width 40 -> 100 while scrolled back: the bottom row shows '%s', want the text of %s still there",
	      row(wide, 19), tag);
	panel_chat_free(&v);

	/* the input box: Up and Down move by the rows it shows (a long line wraps over them), and only from the
	 * first row on into the history; Up in the middle of a long line put an older message in its place */
	struct input_view in = { 0 };
	edit_init(&in.ed);
	edit_hist_add(&in.ed, "an older message");
	in.ed.hist_pos = in.ed.n_hist;
	char longl[151];
	for (int i = 0; i < 150; i++) longl[i] = (char)('a' + i % 26);
	longl[150] = 0;
	edit_insert(&in.ed, longl, 150);
	WINDOW *box = newwin(6, 40, 0, 0); /* 38 columns of text beside the prompt: rows of 38, 38, 38, 36 */
	int cy, cx;
	bool sub;
	panel_input_draw(box, &in, false, &cy, &cx);
	static const int want[] = { 112, 74, 36 };
	for (int i = 0; i < 3; i++) {
		panel_input_key(&in, true, KEY_UP, false, &sub);
		CHECK(strcmp(in.ed.buf, longl) == 0 && in.ed.cur == want[i], "Up %d in a line of 4 rows: cursor at %d, want %d%s",
		      i + 1, in.ed.cur, want[i], strcmp(in.ed.buf, longl) ? " (the text was replaced)" : "");
		panel_input_draw(box, &in, false, &cy, &cx);
	}
	panel_input_key(&in, true, KEY_UP, false, &sub);
	CHECK(strcmp(in.ed.buf, "an older message") == 0, "Up from the first row: '%s', want the history's entry", in.ed.buf);
	panel_input_draw(box, &in, false, &cy, &cx);
	panel_input_key(&in, true, KEY_DOWN, false, &sub);
	CHECK(strcmp(in.ed.buf, longl) == 0 && in.ed.cur == 150, "Down back to the draft: cursor at %d", in.ed.cur);
	in.ed.cur = 10;
	panel_input_draw(box, &in, false, &cy, &cx);
	panel_input_key(&in, true, KEY_DOWN, false, &sub);
	CHECK(strcmp(in.ed.buf, longl) == 0 && in.ed.cur == 48, "Down from row 1, column 10: cursor at %d, want 48", in.ed.cur);
	edit_free(&in.ed);
	delwin(box);
	delwin(wide);
	delwin(narrow);
	endwin();
	delscreen(sc);
	fclose(null);
	printf("%d checks, %d failure(s)\n", checks, fails);
	return fails ? 1 : 0;
}
