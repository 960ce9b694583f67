/* test_input: the input editor (cursor by character over UTF-8, CJK, emoji and combining marks; Home/End;
 * word jumps; Delete/Backspace; kill keys; multi-line Up/Down; history), the history file (escaping, load and
 * append round trip, trimming, its path from the environment) and the display-width wrapping used by the
 * transcript and the input box. Pure functions: no terminal needed. */
#include "config.h"
#include "common.h"
#include "edit.h"
#include "histfile.h"
#include "text.h"

#include <locale.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

static int fails, checks;

#define CHECK(cond, ...) do { checks++; if (!(cond)) { fails++; printf("FAIL line %d: ", __LINE__); \
	printf(__VA_ARGS__); printf("\n"); } } while (0)
#define STR(e, want) CHECK(strcmp((e)->buf, want) == 0, "text '%s', want '%s'", (e)->buf, want)
#define CUR(e, want) CHECK((e)->cur == (want), "cursor %d, want %d (text '%s')", (e)->cur, want, (e)->buf)

static void ins(struct edit *e, const char *s) { edit_insert(e, s, (int)strlen(s)); }

static void test_edit(void)
{
	struct edit e;
	edit_init(&e);
	ins(&e, "héllo 世界");
	STR(&e, "héllo 世界");
	CUR(&e, (int)strlen("héllo 世界"));
	edit_left(&e); /* over 界 (3 bytes) */
	CUR(&e, (int)strlen("héllo 世"));
	edit_backspace(&e); /* removes 世 */
	STR(&e, "héllo 界");
	edit_home(&e);
	CUR(&e, 0);
	edit_right(&e);
	edit_right(&e); /* over h, é (2 bytes) */
	CUR(&e, 3);
	edit_delete(&e); /* removes l */
	STR(&e, "hélo 界");
	edit_end(&e);
	CUR(&e, e.len);

	/* a combining mark moves with its base: "e" + U+0301 is one character */
	edit_clear(&e);
	ins(&e, "ae\xcc\x81z");
	edit_end(&e);
	edit_left(&e);
	edit_left(&e);
	CUR(&e, 1);
	edit_delete(&e);
	STR(&e, "az");
	/* an emoji with a ZWJ sequence is one character */
	edit_clear(&e);
	ins(&e, "x\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9y"); /* x 👨‍👩 y */
	edit_left(&e);
	edit_left(&e);
	CUR(&e, 1);
	edit_backspace(&e);
	CUR(&e, 0);
	edit_delete(&e);
	STR(&e, "y");

	/* word jumps */
	edit_set(&e, "one two  three");
	edit_word_left(&e);
	CUR(&e, 9);
	edit_word_left(&e);
	CUR(&e, 4);
	edit_word_right(&e);
	CUR(&e, 7);
	edit_kill_word_back(&e);
	STR(&e, "one   three");
	CUR(&e, 4);
	edit_kill_line_end(&e);
	STR(&e, "one ");
	edit_kill_line_start(&e);
	STR(&e, "");

	/* control characters dropped, CRLF -> LF, tab -> spaces, invalid UTF-8 dropped */
	edit_clear(&e);
	ins(&e, "a\x1b[31mb\r\nc\td\xff");
	STR(&e, "a[31mb\nc    d");

	/* multi-line: Up/Down keep the column, Home/End work on the current line */
	edit_set(&e, "first line\nsecond\nthird line here");
	edit_up(&e);
	CUR(&e, (int)strlen("first line\nsecond"));
	edit_home(&e);
	CUR(&e, (int)strlen("first line\n"));
	edit_right(&e);
	edit_right(&e);
	edit_up(&e);
	CUR(&e, 2);
	edit_end(&e);
	CUR(&e, 10);
	edit_down(&e);
	CUR(&e, (int)strlen("first line\nsecond"));
	CHECK(edit_lines(&e) == 3, "lines %d", edit_lines(&e));
	/* columns are display columns: from under the 3rd column of "世界x" go up/down consistently */
	edit_set(&e, "abcd\n世界x");
	edit_left(&e);            /* before x: column 4 */
	edit_up(&e);
	CUR(&e, 4);               /* "abcd|" */

	/* history */
	struct edit h;
	edit_init(&h);
	ins(&h, "first");
	free(edit_take(&h));
	ins(&h, "second");
	char *t = edit_take(&h);
	CHECK(strcmp(t, "second") == 0, "take '%s'", t);
	free(t);
	STR(&h, "");
	ins(&h, "   ");
	free(edit_take(&h)); /* blank: not recorded */
	CHECK(h.n_hist == 2, "history holds %d entries, want 2", h.n_hist);
	/* a paste that ends with a newline: taken (and recorded) without its blank last lines */
	ins(&h, "pasted\n  line \n\n  \n");
	t = edit_take(&h);
	CHECK(strcmp(t, "pasted\n  line ") == 0, "take '%s'", t);
	CHECK(h.n_hist == 3 && strcmp(h.hist[2], t) == 0, "history: %d entries, the last '%s'", h.n_hist,
	      h.n_hist ? h.hist[h.n_hist - 1] : "");
	free(t);
	free(h.hist[--h.n_hist]); /* as it was for the checks below */
	h.hist_pos = h.n_hist;
	ins(&h, "draft");
	CHECK(edit_up(&h), "up into history");
	STR(&h, "second");
	edit_up(&h);
	STR(&h, "first");
	CHECK(!edit_up(&h), "up at the oldest entry stops");
	edit_down(&h);
	edit_down(&h);
	STR(&h, "draft"); /* the unfinished text comes back */
	CHECK(!edit_down(&h), "down at the newest stops");
	edit_free(&h);
	edit_free(&e);
}

static void test_width(void)
{
	CHECK(text_width("abc", 3) == 3, "ascii");
	CHECK(text_width("世界", 6) == 4, "CJK is double width: %d", text_width("世界", 6));
	CHECK(text_width("e\xcc\x81", 3) == 1, "combining mark adds nothing");
	CHECK(text_width("\xf0\x9f\x98\x80", 4) == 2, "emoji is double width");
	/* a ZWJ sequence takes the columns of its parts, as curses places them (else the next character would be
	 * drawn over it), though it stays one character for the cursor */
	CHECK(text_width("\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9", 11) == 4, "ZWJ sequence: the width of its parts");
	{
		int w, q = text_next("\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9x", 12, 0, &w, NULL);
		CHECK(q == 11 && w == 4, "ZWJ sequence: one grapheme of 4 columns (%d, %d)", q, w);
	}
	CHECK(text_width("\xe0\xa4\x95\xe0\xa4\xbf", 6) == 2, "a spacing vowel sign takes its column, as curses gives it");
	CHECK(text_width("\x1b", 1) == 0, "control characters take no column");
	CHECK(text_width("a\xff", 2) == 2, "invalid byte: one column");
}

/* every line fits, the lines cover the text in order, and no drawable character is lost */
static void check_wrap(const char *s, int width, bool word)
{
	int len = (int)strlen(s);
	struct wrap_line ln[256];
	int n = text_wrap(s, len, width, word, ln, 256);
	CHECK(n >= 1 && n <= 256, "line count %d", n);
	int prev_end = 0;
	long chars_in = 0, chars_out = 0;
	for (int i = 0; i < n; i++) {
		CHECK(ln[i].cols <= width || ln[i].end - ln[i].start <= 4, "w=%d line %d has %d cols: '%.*s'", width, i,
		      ln[i].cols, ln[i].end - ln[i].start, s + ln[i].start);
		CHECK(ln[i].cols == text_width(s + ln[i].start, ln[i].end - ln[i].start), "cols field");
		CHECK(ln[i].start >= prev_end, "lines in order");
		/* only spaces or one newline are skipped between lines */
		for (int k = prev_end; k < ln[i].start; k++)
			CHECK(s[k] == ' ' || s[k] == '\n', "w=%d skipped '%c' before line %d", width, s[k], i);
		prev_end = ln[i].end;
		for (int k = ln[i].start; k < ln[i].end; k++) chars_out += s[k] != ' ';
	}
	CHECK(prev_end == len, "last line ends at the text's end");
	for (int k = 0; k < len; k++) chars_in += s[k] != ' ' && s[k] != '\n';
	CHECK(chars_in == chars_out, "w=%d: %ld non-space bytes in, %ld out", width, chars_in, chars_out);
}

static void test_wrap(void)
{
	const char *texts[] = {
		"The quick brown fox jumps over the lazy dog.",
		"你好，世界！这是一个没有空格的中文句子，需要按显示宽度换行。",
		"Mixed 中文 and English words, with emoji \xf0\x9f\x98\x80\xf0\x9f\x8e\x89 and cafe\xcc\x81 too.",
		"line one\nline two\n\nline four after a blank line\n",
		"averyveryverylongwordthatcannotbebrokenatspacesatall and more",
		"",
	};
	for (size_t t = 0; t < sizeof texts / sizeof *texts; t++)
		for (int w = 1; w <= 50; w++) {
			check_wrap(texts[t], w, true);
			check_wrap(texts[t], w, false);
		}
	/* specific expectations */
	struct wrap_line ln[16];
	int n = text_wrap("hello world foo", 15, 11, true, ln, 16);
	CHECK(n == 2 && ln[0].end == 11 && ln[1].start == 12, "word wrap at the space: n=%d", n);
	n = text_wrap("世界世界世", 15, 5, true, ln, 16);
	CHECK(n == 3 && ln[0].cols == 4 && ln[1].cols == 4 && ln[2].cols == 2, "CJK: 2 per 5 columns, n=%d", n);
	n = text_wrap("ab\n", 3, 10, true, ln, 16);
	CHECK(n == 2 && ln[1].start == 3 && ln[1].end == 3, "a trailing newline opens an empty line");
	n = text_wrap("abcdef", 6, 4, false, ln, 16);
	CHECK(n == 2 && ln[0].cols == 4 && ln[1].cols == 2, "char wrap");
	CHECK(text_wrap("abc", 3, 10, true, NULL, 0) == 1, "count only");

	/* kinsoku: no line starts with closing punctuation or ends with an opening bracket, where the width leaves
	 * a choice (here from 6 columns: the widest unit, such as "（一" or "在：", takes 4) */
	const char *zh = "你好，世界！这是（一个）测试。“引号”也在内：好。《书名》、顿号；分号？问号";
	static const char *const closing[] = { "，", "！", "。", "）", "”", "：", "、", "；", "？", "》" };
	static const char *const opening[] = { "（", "“", "《" };
	for (int w = 6; w <= 60; w++) {
		check_wrap(zh, w, true);
		struct wrap_line zl[64];
		int zn = text_wrap(zh, (int)strlen(zh), w, true, zl, 64);
		for (int i = 0; i < zn && i < 64; i++) {
			const char *a = zh + zl[i].start, *b = zh + zl[i].end;
			for (size_t k = 0; k < sizeof closing / sizeof *closing; k++)
				CHECK(i == 0 || strncmp(a, closing[k], strlen(closing[k])) != 0,
				      "w=%d: line %d starts with '%s': '%.*s'", w, i, closing[k], (int)(b - a), a);
			for (size_t k = 0; k < sizeof opening / sizeof *opening; k++) {
				size_t ol = strlen(opening[k]);
				CHECK(i == zn - 1 || b - a < (long)ol || strncmp(b - ol, opening[k], ol) != 0,
				      "w=%d: line %d ends with '%s': '%.*s'", w, i, opening[k], (int)(b - a), a);
			}
		}
	}
	n = text_wrap("你好，世界", (int)strlen("你好，世界"), 4, true, ln, 16);
	CHECK(n == 3 && ln[0].cols == 2 && ln[1].cols == 4 && ln[2].cols == 4,
	      "'，' goes to the next line with '好': n=%d, %d/%d cols", n, ln[0].cols, n > 1 ? ln[1].cols : -1);
}

/* the lines of a file (-1: cannot be read); the last one in last (static) */
static int file_lines(const char *path, const char **last)
{
	static char buf[256];
	FILE *f = fopen(path, "r");
	if (!f) return -1;
	int n = 0;
	char line[256];
	buf[0] = 0;
	while (fgets(line, sizeof line, f)) {
		n++;
		snprintf(buf, sizeof buf, "%s", line);
	}
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
	if (last) *last = buf;
	return n;
}

static void test_histfile(void)
{
	/* escaping: one line per entry, \n and \\ escaped, any other backslash itself */
	const char *entries[] = { "one", "two\nlines", "back\\slash \\n not a newline", "ends in a backslash\\",
				  "\n\nblank lines around\n\n", "中文\n第二行", "a \\\nb" };
	const int ne = (int)(sizeof entries / sizeof *entries);
	char *x = histfile_escape("a\nb\\n\\");
	CHECK(x && strcmp(x, "a\\nb\\\\n\\\\") == 0, "escaped '%s'", x ? x : "(null)");
	if (x) {
		histfile_unescape(x);
		CHECK(strcmp(x, "a\nb\\n\\") == 0, "unescaped '%s'", x);
	}
	free(x);

	char dir[] = "/tmp/lmterm-hist.XXXXXX";
	if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return; }
	char path[256];
	/* directories that do not exist yet are made */
	snprintf(path, sizeof path, "%s/state/lmterm/history", dir);
	struct histfile h = { .path = strdup(path) };
	for (int i = 0; i < ne; i++) CHECK(histfile_append(&h, entries[i]) == LM_OK, "append %d: %s", i, lm_errmsg());
	CHECK(file_lines(path, NULL) == ne, "%d lines in the file, want %d (one per entry)", file_lines(path, NULL), ne);
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "mode %o, want 600", (unsigned)(st.st_mode & 0777));
	/* a new session reads the same entries, multi-line and backslashes intact */
	struct edit e;
	edit_init(&e);
	struct histfile h2 = { .path = strdup(path) };
	CHECK(histfile_load(&h2, &e) == LM_OK, "load: %s", lm_errmsg());
	CHECK(e.n_hist == ne, "loaded %d entries, want %d", e.n_hist, ne);
	for (int i = 0; i < ne && i < e.n_hist; i++)
		CHECK(strcmp(e.hist[i], entries[i]) == 0, "entry %d: '%s', want '%s'", i, e.hist[i], entries[i]);
	/* Up recalls the newest first */
	CHECK(edit_up(&e), "up into the loaded history");
	STR(&e, entries[ne - 1]);
	edit_free(&e);
	histfile_free(&h2);

	/* a file edited by hand: blank lines and repeats skipped, control characters dropped, unknown escapes kept */
	FILE *f = fopen(path, "w");
	fputs("first\n\nfirst\nsecond\\t\x1b[1m\n\n   \nthird\\\n", f);
	fclose(f);
	edit_init(&e);
	h2.path = strdup(path);
	CHECK(histfile_load(&h2, &e) == LM_OK, "load: %s", lm_errmsg());
	CHECK(e.n_hist == 3, "hand-edited file: %d entries, want 3", e.n_hist);
	if (e.n_hist == 3) {
		CHECK(strcmp(e.hist[0], "first") == 0, "'%s'", e.hist[0]);
		CHECK(strcmp(e.hist[1], "second\\t[1m") == 0, "'%s'", e.hist[1]);
		CHECK(strcmp(e.hist[2], "third\\") == 0, "'%s'", e.hist[2]);
	}
	edit_free(&e);
	histfile_free(&h2);
	/* CRLF line ends: the CR is not part of the entry (it became a trailing new line) */
	f = fopen(path, "w");
	fputs("one\r\ntwo\\nlines\r\n", f);
	fclose(f);
	edit_init(&e);
	h2.path = strdup(path);
	CHECK(histfile_load(&h2, &e) == LM_OK, "load: %s", lm_errmsg());
	CHECK(e.n_hist == 2 && strcmp(e.hist[0], "one") == 0 && strcmp(e.hist[1], "two\nlines") == 0,
	      "CRLF file: %d entries, the last '%s'", e.n_hist, e.n_hist ? e.hist[e.n_hist - 1] : "");
	edit_free(&e);
	histfile_free(&h2);

	/* trimming on loading: 1050 entries -> the last 1000, in memory and in the file */
	f = fopen(path, "w");
	for (int i = 0; i < EDIT_HIST_MAX + 50; i++) fprintf(f, "entry %d\n", i);
	fclose(f);
	edit_init(&e);
	h2.path = strdup(path);
	CHECK(histfile_load(&h2, &e) == LM_OK, "load: %s", lm_errmsg());
	CHECK(e.n_hist == EDIT_HIST_MAX && strcmp(e.hist[0], "entry 50") == 0, "%d entries loaded, the first '%s'",
	      e.n_hist, e.n_hist ? e.hist[0] : "");
	const char *last;
	CHECK(file_lines(path, &last) == EDIT_HIST_MAX, "after loading the file holds %d entries, want %d",
	      file_lines(path, NULL), EDIT_HIST_MAX);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "trimmed: mode %o, want 600", (unsigned)(st.st_mode & 0777));
	/* appending: not rewritten for HISTFILE_SLACK entries, then trimmed again */
	for (int i = 0; i < HISTFILE_SLACK; i++) {
		char t[32];
		snprintf(t, sizeof t, "new %d", i);
		histfile_append(&h2, t);
	}
	CHECK(file_lines(path, NULL) == EDIT_HIST_MAX + HISTFILE_SLACK, "%d lines, want %d (appended, not rewritten)",
	      file_lines(path, NULL), EDIT_HIST_MAX + HISTFILE_SLACK);
	CHECK(histfile_append(&h2, "the newest") == LM_OK, "append: %s", lm_errmsg());
	CHECK(file_lines(path, &last) == EDIT_HIST_MAX && strcmp(last, "the newest") == 0,
	      "past the slack: %d lines ending '%s', want %d ending 'the newest'", file_lines(path, NULL), last, EDIT_HIST_MAX);
	edit_free(&e);
	histfile_free(&h2);
	/* the editor's own history keeps the last EDIT_HIST_MAX too */
	edit_init(&e);
	for (int i = 0; i < EDIT_HIST_MAX + 5; i++) {
		char t[32];
		snprintf(t, sizeof t, "x%d", i);
		ins(&e, t);
		free(edit_take(&e));
	}
	CHECK(e.n_hist == EDIT_HIST_MAX && strcmp(e.hist[0], "x5") == 0, "in memory: %d entries, first '%s'", e.n_hist, e.hist[0]);
	CHECK(!e.took_new || strcmp(e.hist[e.n_hist - 1], "x1004") == 0, "the newest is last");
	ins(&e, "x1004");
	free(edit_take(&e));
	CHECK(!e.took_new, "a repeat of the last entry is not recorded");
	edit_free(&e);

	/* a history file that cannot be read or written (a directory): an error that names it */
	h2.path = strdup(dir);
	edit_init(&e);
	CHECK(histfile_load(&h2, &e) == LM_ERR && strstr(lm_errmsg(), dir), "loading a directory: '%s'", lm_errmsg());
	CHECK(histfile_append(&h2, "x") == LM_ERR && strstr(lm_errmsg(), dir), "appending to a directory: '%s'", lm_errmsg());
	edit_free(&e);
	histfile_free(&h2);
	/* a FIFO (no writer, no reader): an error at once, where opening it blocked the chat's start for ever */
	char fifo[600];
	snprintf(fifo, sizeof fifo, "%s/fifo", dir);
	if (mkfifo(fifo, 0600) == 0) {
		h2.path = strdup(fifo);
		edit_init(&e);
		alarm(10); /* a hang fails the test by SIGALRM instead of running into the harness's timeout */
		CHECK(histfile_load(&h2, &e) == LM_ERR && strstr(lm_errmsg(), "not a regular file"), "loading a FIFO: '%s'",
		      lm_errmsg());
		CHECK(histfile_append(&h2, "x") == LM_ERR, "appending to a FIFO succeeded");
		alarm(0);
		edit_free(&e);
		histfile_free(&h2);
		unlink(fifo);
	}
	histfile_free(&h);

	/* where the file is */
	char *p;
	setenv("HOME", "/home/someone", 1);
	unsetenv("XDG_STATE_HOME");
	unsetenv("LMTERM_HISTFILE");
	CHECK(histfile_path(&p) == LM_OK && p && strcmp(p, "/home/someone/.local/state/lmterm/history") == 0, "default: %s", p);
	free(p);
	setenv("XDG_STATE_HOME", "/xdg/state", 1);
	CHECK(histfile_path(&p) == LM_OK && p && strcmp(p, "/xdg/state/lmterm/history") == 0, "XDG_STATE_HOME: %s", p);
	free(p);
	setenv("XDG_STATE_HOME", "relative/state", 1); /* not absolute: ignored, as the XDG spec says */
	CHECK(histfile_path(&p) == LM_OK && p && strcmp(p, "/home/someone/.local/state/lmterm/history") == 0, "relative XDG_STATE_HOME: %s", p);
	free(p);
	setenv("LMTERM_HISTFILE", "/some/file", 1);
	CHECK(histfile_path(&p) == LM_OK && p && strcmp(p, "/some/file") == 0, "LMTERM_HISTFILE: %s", p);
	free(p);
	setenv("LMTERM_HISTFILE", "", 1);
	CHECK(histfile_path(&p) == LM_OK && p == NULL, "LMTERM_HISTFILE empty: no history file, got %s", p);
	free(p);
	unsetenv("LMTERM_HISTFILE");
	unsetenv("XDG_STATE_HOME");
	unsetenv("HOME");
	CHECK(histfile_path(&p) == LM_ERR && strstr(lm_errmsg(), "HOME"), "no HOME: '%s'", lm_errmsg());

	snprintf(path, sizeof path, "rm -rf '%s'", dir);
	CHECK(system(path) == 0, "rm -rf %s", dir);
}

/* Out of memory (the address space capped just above what the process uses): an insert, a history step and
 * a submission fail without losing or changing the text, where they aborted the process before. */
static void test_oom(void)
{
#if defined(__SANITIZE_ADDRESS__)
	printf("out-of-memory checks skipped under AddressSanitizer (it reserves the address space up front)\n");
#else
	size_t big_len = 256u << 20;
	char *big = malloc(big_len + 1);
	struct edit e;
	if (!big || !edit_init(&e)) { CHECK(0, "setup"); free(big); return; }
	memset(big, 'a', big_len);
	big[big_len] = 0;
	ins(&e, "kept");
	char *first = edit_take(&e); /* one history entry */
	ins(&e, "draft text");
	long pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	struct rlimit old;
	if (!f || fscanf(f, "%ld", &pages) != 1 || getrlimit(RLIMIT_AS, &old) != 0) {
		CHECK(0, "cannot read the process size");
		if (f) fclose(f);
		free(first); free(big); edit_free(&e);
		return;
	}
	fclose(f);
	struct rlimit lim = old;
	lim.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (64u << 20); /* room for small allocations, not for 256 MiB */
	if ((old.rlim_cur != RLIM_INFINITY && old.rlim_cur < lim.rlim_cur) || setrlimit(RLIMIT_AS, &lim) != 0) {
		/* an address-space limit already below ours (a container's): the check cannot be made here */
		printf("out-of-memory checks skipped: RLIMIT_AS cannot be set to %llu bytes\n",
		       (unsigned long long)lim.rlim_cur);
		free(first); free(big); edit_free(&e);
		return;
	}
	/* (the text is compared by length first: printing 256 MiB on a failure would bury the log) */
	edit_left(&e); /* the insert goes before the last character: the tail must come back too */
	bool ok = edit_insert(&e, big, (int)big_len);
	CHECK(!ok, "a 256 MiB insert under a 64 MiB margin succeeded");
	CHECK(e.len == 10 && e.cur == 9, "after the failed insert: length %d cursor %d, want 10 and 9", e.len, e.cur);
	if (e.len == 10) STR(&e, "draft text");
	CHECK(!edit_set(&e, big), "edit_set of 256 MiB succeeded");
	CHECK(e.len == 10 && e.cur == 9, "after the failed set: length %d cursor %d, want 10 and 9", e.len, e.cur);
	if (e.len == 10) STR(&e, "draft text");
	setrlimit(RLIMIT_AS, &old);
	edit_end(&e);
	/* the history still works afterwards, and the draft comes back */
	CHECK(edit_up(&e), "up to the history");
	STR(&e, "kept");
	CHECK(edit_down(&e), "back down");
	STR(&e, "draft text");
	free(first);
	free(big);
	edit_free(&e);
#endif
}

int main(void)
{
	setlocale(LC_ALL, "C.UTF-8");
	test_edit();
	test_width();
	test_wrap();
	test_histfile();
	test_oom();
	printf("%d checks, %d failures\n", checks, fails);
	return fails ? 1 : 0;
}
