/* edit.c: the input editor's text operations (no curses). */
#include "config.h"
#include "edit.h"
#include "text.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* Room for n more bytes and the NUL. Out of memory: false, and the text stays as it was (what was typed is
 * never lost; the edit that needed the room is not done). */
static bool reserve(struct edit *e, int n)
{
	if (e->len + n + 1 <= e->cap) return true;
	int cap = e->cap ? e->cap : 64;
	while (cap < e->len + n + 1) {
		if (cap > INT_MAX / 2) return false;
		cap *= 2;
	}
	char *b = realloc(e->buf, cap);
	if (!b) return false;
	e->buf = b;
	e->cap = cap;
	return true;
}

bool edit_init(struct edit *e)
{
	memset(e, 0, sizeof *e);
	if (!reserve(e, 0)) return false;
	e->buf[0] = 0;
	return true;
}

void edit_free(struct edit *e)
{
	free(e->buf);
	for (int i = 0; i < e->n_hist; i++) free(e->hist[i]);
	free(e->hist);
	free(e->draft);
	memset(e, 0, sizeof *e);
}

void edit_clear(struct edit *e)
{
	e->len = e->cur = 0;
	e->buf[0] = 0;
}

bool edit_set(struct edit *e, const char *s)
{
	size_t n = strlen(s);
	if (n > INT_MAX / 2) return false;
	const int len = e->len, cur = e->cur;
	e->len = e->cur = 0; /* the room needed is n, not the old text's length + n */
	if (!reserve(e, (int)n)) {
		e->len = len;
		e->cur = cur;
		return false;
	}
	memcpy(e->buf, s, n + 1);
	e->len = e->cur = (int)n;
	return true;
}

static bool put(struct edit *e, const char *s, int n)
{
	if (!reserve(e, n)) return false;
	memmove(e->buf + e->cur + n, e->buf + e->cur, e->len - e->cur + 1);
	memcpy(e->buf + e->cur, s, n);
	e->len += n;
	e->cur += n;
	return true;
}

bool edit_insert(struct edit *e, const char *s, int n)
{
	const utf8proc_uint8_t *u = (const utf8proc_uint8_t *)s;
	const int cur0 = e->cur;
	for (int i = 0; i < n;) {
		utf8proc_int32_t c;
		utf8proc_ssize_t k = utf8proc_iterate(u + i, n - i, &c);
		if (k <= 0) { i++; continue; } /* invalid byte: dropped */
		bool ok = true;
		if (c == '\r') {
			ok = put(e, "\n", 1);
			if (i + 1 < n && s[i + 1] == '\n') i++;
		} else if (c == '\n') {
			ok = put(e, "\n", 1);
		} else if (c == '\t') {
			ok = put(e, "    ", 4);
		} else if (text_drawable(c)) {
			ok = put(e, s + i, (int)k);
		}
		if (!ok) { /* all or nothing: a paste cut short would send half of what the user meant */
			memmove(e->buf + cur0, e->buf + e->cur, e->len - e->cur + 1);
			e->len -= e->cur - cur0;
			e->cur = cur0;
			return false;
		}
		i += (int)k;
	}
	return true;
}

bool edit_left(struct edit *e)
{
	if (e->cur == 0) return false;
	e->cur = text_prev(e->buf, e->len, e->cur);
	return true;
}

bool edit_right(struct edit *e)
{
	if (e->cur >= e->len) return false;
	int w;
	e->cur = text_next(e->buf, e->len, e->cur, &w, NULL);
	return true;
}

static int line_start(const struct edit *e, int p)
{
	while (p > 0 && e->buf[p - 1] != '\n') p--;
	return p;
}

static int line_end(const struct edit *e, int p)
{
	while (p < e->len && e->buf[p] != '\n') p++;
	return p;
}

void edit_home(struct edit *e) { e->cur = line_start(e, e->cur); }
void edit_end(struct edit *e) { e->cur = line_end(e, e->cur); }

/* word characters: letters, digits, '_' and every wide (CJK) character */
static bool is_word_at(const struct edit *e, int p)
{
	utf8proc_int32_t c;
	if (utf8proc_iterate((const utf8proc_uint8_t *)e->buf + p, e->len - p, &c) <= 0) return false;
	if (c == '_') return true;
	utf8proc_category_t cat = utf8proc_category(c);
	return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
	       (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

void edit_word_left(struct edit *e)
{
	/* skip non-word characters, then the word */
	while (e->cur > 0) {
		int p = text_prev(e->buf, e->len, e->cur);
		if (is_word_at(e, p)) break;
		e->cur = p;
	}
	while (e->cur > 0) {
		int p = text_prev(e->buf, e->len, e->cur);
		if (!is_word_at(e, p)) break;
		e->cur = p;
	}
}

void edit_word_right(struct edit *e)
{
	int w;
	while (e->cur < e->len && !is_word_at(e, e->cur)) e->cur = text_next(e->buf, e->len, e->cur, &w, NULL);
	while (e->cur < e->len && is_word_at(e, e->cur)) e->cur = text_next(e->buf, e->len, e->cur, &w, NULL);
}

static void cut(struct edit *e, int a, int b)
{
	if (b <= a) return;
	memmove(e->buf + a, e->buf + b, e->len - b + 1);
	e->len -= b - a;
	if (e->cur > b) e->cur -= b - a;
	else if (e->cur > a) e->cur = a;
}

bool edit_backspace(struct edit *e)
{
	if (e->cur == 0) return false;
	int p = text_prev(e->buf, e->len, e->cur);
	cut(e, p, e->cur);
	return true;
}

bool edit_delete(struct edit *e)
{
	if (e->cur >= e->len) return false;
	int w, q = text_next(e->buf, e->len, e->cur, &w, NULL);
	cut(e, e->cur, q);
	return true;
}

void edit_kill_line_start(struct edit *e) { cut(e, line_start(e, e->cur), e->cur); }

void edit_kill_line_end(struct edit *e)
{
	int q = line_end(e, e->cur);
	if (q == e->cur && q < e->len) q++; /* at the end of a line: join the next one */
	cut(e, e->cur, q);
}

void edit_kill_word_back(struct edit *e)
{
	int end = e->cur;
	edit_word_left(e);
	cut(e, e->cur, end);
}

void edit_kill_word_fwd(struct edit *e)
{
	int a = e->cur;
	edit_word_right(e);
	int b = e->cur;
	e->cur = a;
	cut(e, a, b);
}

/* the position in line [ls, le) nearest to display column col */
static int at_column(const struct edit *e, int ls, int le, int col)
{
	int p = ls, c = 0, w;
	while (p < le) {
		int q = text_next(e->buf, e->len, p, &w, NULL);
		if (c + w > col) break;
		c += w;
		p = q;
	}
	return p;
}

static bool hist_load(struct edit *e, int pos)
{
	if (!edit_set(e, pos < e->n_hist ? e->hist[pos] : (e->draft ? e->draft : ""))) return false;
	e->hist_pos = pos;
	return true;
}

bool edit_up(struct edit *e)
{
	int ls = line_start(e, e->cur);
	if (ls > 0) {
		int col = text_width(e->buf + ls, e->cur - ls);
		int pls = line_start(e, ls - 1);
		e->cur = at_column(e, pls, ls - 1, col);
		return true;
	}
	if (e->hist_pos == 0 || e->n_hist == 0) return false;
	if (e->hist_pos == e->n_hist) { /* keep the new text; without memory for it, stay on it */
		char *d = strdup(e->buf);
		if (!d) return false;
		free(e->draft);
		e->draft = d;
	}
	return hist_load(e, e->hist_pos - 1);
}

bool edit_down(struct edit *e)
{
	int le = line_end(e, e->cur);
	if (le < e->len) {
		int ls = line_start(e, e->cur);
		int col = text_width(e->buf + ls, e->cur - ls);
		e->cur = at_column(e, le + 1, line_end(e, le + 1), col);
		return true;
	}
	if (e->hist_pos >= e->n_hist) return false;
	return hist_load(e, e->hist_pos + 1);
}

bool edit_blank(const struct edit *e)
{
	for (int i = 0; i < e->len; i++)
		if (e->buf[i] != ' ' && e->buf[i] != '\n') return false;
	return true;
}

int edit_lines(const struct edit *e)
{
	int n = 1;
	for (int i = 0; i < e->len; i++) n += e->buf[i] == '\n';
	return n;
}

static bool blank(const char *s)
{
	for (; *s; s++)
		if (*s != ' ' && *s != '\n') return false;
	return true;
}

bool edit_hist_add(struct edit *e, const char *s)
{
	if (blank(s) || (e->n_hist > 0 && strcmp(e->hist[e->n_hist - 1], s) == 0)) return false;
	char *c = strdup(s);
	if (!c) return false;
	if (e->n_hist == EDIT_HIST_MAX) { /* the oldest goes */
		free(e->hist[0]);
		memmove(e->hist, e->hist + 1, (e->n_hist - 1) * sizeof *e->hist);
		e->n_hist--;
	} else if (e->n_hist == e->cap_hist) {
		int cap = e->cap_hist ? 2 * e->cap_hist : 16;
		if (cap > EDIT_HIST_MAX) cap = EDIT_HIST_MAX;
		char **h = realloc(e->hist, cap * sizeof *h);
		if (!h) {
			free(c);
			return false;
		}
		e->hist = h;
		e->cap_hist = cap;
	}
	e->hist[e->n_hist++] = c;
	return true;
}

char *edit_take(struct edit *e)
{
	char *s = strdup(e->buf);
	if (!s) return NULL; /* the text stays in the editor */
	/* blank lines at the end go: text pasted from a file ends with a newline, which was sent to the model and
	 * shown, saved and recalled as an empty last line. Spaces at the end of the last line stay. */
	size_t n = strlen(s);
	for (;;) {
		size_t k = n;
		while (k > 0 && s[k - 1] == ' ') k--;
		if (k == 0 || s[k - 1] != '\n') break;
		n = k - 1;
	}
	s[n] = 0;
	/* without memory for the history entry the text is sent all the same */
	e->took_new = edit_hist_add(e, s);
	e->hist_pos = e->n_hist;
	free(e->draft);
	e->draft = NULL;
	edit_clear(e);
	return s;
}
