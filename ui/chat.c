/* chat.c: the transcript. Messages are kept as text; each draw wraps them to the window's width by display
 * columns (text_wrap), so a resize rewraps everything. The view is anchored at the bottom; scroll counts lines
 * up from there, and stays put while a reply streams in below. */
#include "config.h"
#include "i18n.h"
#include "ui_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static void msg_append(struct chat_msg *m, const char *t, int n)
{
	if (m->len + n + 1 > m->cap) {
		int cap = m->cap ? m->cap : 256;
		while (cap < m->len + n + 1) cap *= 2;
		char *p = realloc(m->text, cap);
		if (!p) abort(); /* out of memory in the UI */
		m->text = p;
		m->cap = cap;
	}
	memcpy(m->text + m->len, t, n);
	m->len += n;
	m->text[m->len] = 0;
}

void panel_chat_add(struct chat_view *c, enum chat_role r, const char *text, int len)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 32;
		c->m = realloc(c->m, c->cap * sizeof *c->m);
		if (!c->m) abort();
	}
	struct chat_msg *m = &c->m[c->n++];
	memset(m, 0, sizeof *m);
	m->role = r;
	msg_append(m, text, len);
}

void panel_chat_append(struct chat_view *c, const char *text, int len)
{
	if (c->n == 0) panel_chat_add(c, ROLE_ASSISTANT, "", 0);
	msg_append(&c->m[c->n - 1], text, len);
}

static void msg_free(struct chat_msg *m)
{
	free(m->text);
	free(m->wl);
}

void panel_chat_drop_last(struct chat_view *c)
{
	if (c->n > 0) msg_free(&c->m[--c->n]);
}

void panel_chat_clear(struct chat_view *c)
{
	for (int i = 0; i < c->n; i++) msg_free(&c->m[i]);
	c->n = 0;
	c->scroll = 0;
	c->last_total = 0;
	c->streaming = false;
	c->from_top = false;
}

void panel_chat_free(struct chat_view *c)
{
	panel_chat_clear(c);
	free(c->m);
	memset(c, 0, sizeof *c);
}

void panel_chat_scroll(struct chat_view *c, int lines)
{
	c->scroll += lines;
	if (c->scroll < 0) c->scroll = 0;
	/* the upper bound is applied at the next draw, when the number of lines is known */
}

void panel_chat_show_top(struct chat_view *c) { c->from_top = true; }

static const char *role_label(enum chat_role r)
{
	switch (r) {
	case ROLE_USER: return C_("chat|You");
	case ROLE_ASSISTANT: return C_("chat|Assistant");
	case ROLE_NOTE: return C_("chat|Note");
	default: return C_("chat|Error");
	}
}

static attr_t role_attr(enum chat_role r)
{
	switch (r) {
	case ROLE_USER: return col(COL_USER);
	case ROLE_ASSISTANT: return col(COL_ASSIST);
	case ROLE_NOTE: return col(COL_NOTE);
	default: return col(COL_ERROR);
	}
}

/* one screen line of the transcript: a label line, a text line, or a blank line between messages */
struct tline { int msg; int kind; int start, end; };
enum { TL_LABEL, TL_TEXT, TL_BLANK };

/* the message's text wrapped at tw columns, from the cache where neither changed */
static const struct wrap_line *msg_wrap(struct chat_msg *m, int tw, int *k)
{
	if (!m->wl || m->wrap_w != tw || m->wrap_len != m->len) {
		int nl = text_wrap(m->text, m->len, tw, true, NULL, 0);
		struct wrap_line *wl = realloc(m->wl, nl * sizeof *wl);
		if (!wl) abort(); /* out of memory in the UI */
		text_wrap(m->text, m->len, tw, true, wl, nl);
		m->wl = wl;
		m->nwl = nl;
		m->wrap_w = tw;
		m->wrap_len = m->len;
	}
	*k = m->nwl;
	return m->wl;
}

/* lines of message i at width (the label line, the text indented by 2, a blank line after) */
static int msg_lines(struct chat_msg *m, int width, struct tline *out, int max, int i)
{
	int n = 0, k, tw = width - 3 > 1 ? width - 3 : 1; /* indent 2, margin 1 */
	if (out && n < max) out[n] = (struct tline){ i, TL_LABEL, 0, 0 };
	n++;
	const struct wrap_line *wl = msg_wrap(m, tw, &k);
	for (int j = 0; j < k; j++) {
		if (out && n < max) out[n] = (struct tline){ i, TL_TEXT, wl[j].start, wl[j].end };
		n++;
	}
	if (out && n < max) out[n] = (struct tline){ i, TL_BLANK, 0, 0 };
	n++;
	return n;
}

void panel_chat_draw(WINDOW *w, struct chat_view *c)
{
	int h = getmaxy(w), wd = getmaxx(w);
	werase(w);
	c->page = h;
	if (c->n == 0) {
		const char *hello = _("Type a message and press Enter. F1: help, F2: settings, F10: quit.");
		struct wrap_line wl[8];
		int k = text_wrap(hello, (int)strlen(hello), wd - 2 > 1 ? wd - 2 : 1, true, wl, 8);
		for (int j = 0; j < k && j < 8 && j < h; j++)
			draw_text(w, j, 1, wd - 1, hello + wl[j].start, wl[j].end - wl[j].start, col(COL_DIM));
		return;
	}
	/* lines of every message; only the visible ones are kept */
	int total = 0;
	int *counts = malloc(c->n * sizeof *counts);
	if (!counts) abort();
	for (int i = 0; i < c->n; i++) total += counts[i] = msg_lines(&c->m[i], wd, NULL, 0, i);
	total--; /* no blank line after the last message */
	if (c->scroll > 0 && wd != c->last_w && c->anchor_msg < c->n) {
		/* a new width rewraps every message, so the count of lines below says nothing any more: the text
		 * that was on the bottom row goes back there (counting the lines that the whole transcript gained
		 * or lost moved a long transcript by as many lines, far from what was being read) */
		int line = 0, k, tw = wd - 3 > 1 ? wd - 3 : 1;
		for (int i = 0; i < c->anchor_msg; i++) line += counts[i];
		if (c->anchor_off == INT_MAX) { /* the blank line after the message */
			line += counts[c->anchor_msg] - 1;
		} else if (c->anchor_off >= 0) {
			const struct wrap_line *wl = msg_wrap(&c->m[c->anchor_msg], tw, &k);
			int j = 0;
			while (j + 1 < k && wl[j + 1].start <= c->anchor_off) j++;
			line += 1 + j;
		}
		c->scroll = total - 1 - line > 0 ? total - 1 - line : 0;
	} else if (c->scroll > 0 && total > c->last_total) {
		/* text arriving below a scrolled view moves the view up with it, so what is read stays put */
		c->scroll += total - c->last_total;
	}
	c->last_total = total;
	c->last_w = wd;
	int maxscroll = total > h ? total - h : 0;
	if (c->from_top) c->scroll = maxscroll;
	c->from_top = false;
	if (c->scroll > maxscroll) c->scroll = maxscroll;
	int first = total - h - c->scroll; /* index of the line at the top row */
	if (first < 0) first = 0;
	int line = 0;
	for (int i = 0; i < c->n && line < first + h; i++) {
		if (line + counts[i] <= first) { line += counts[i]; continue; }
		struct tline *tl = malloc(counts[i] * sizeof *tl);
		if (!tl) abort();
		msg_lines(&c->m[i], wd, tl, counts[i], i);
		const struct chat_msg *m = &c->m[i];
		for (int j = 0; j < counts[i] && line < first + h; j++, line++) {
			if (line < first) continue;
			int y = line - first;
			if (y == h - 1) {
				c->anchor_msg = i;
				c->anchor_off = tl[j].kind == TL_LABEL ? -1 : tl[j].kind == TL_TEXT ? tl[j].start : INT_MAX;
			}
			if (tl[j].kind == TL_LABEL) {
				attr_t a = role_attr(m->role);
				int cx = draw_str(w, y, 0, wd, role_label(m->role), a);
				if (i == c->n - 1 && c->streaming && cx + 2 < wd) draw_str(w, y, cx + 1, wd - cx - 1, ui_utf8 ? "…" : "...", col(COL_DIM));
			} else if (tl[j].kind == TL_TEXT) {
				attr_t a = m->role == ROLE_ERROR ? col(COL_ERROR) : m->role == ROLE_NOTE ? col(COL_NOTE) : col(COL_NORMAL);
				/* a bar in the role's colour marks whose text this is, also without colour */
				wattrset(w, role_attr(m->role));
				mvwaddch(w, y, 0, m->role == ROLE_USER ? '>' : ' ');
				wattrset(w, A_NORMAL);
				draw_text(w, y, 2, wd - 2, m->text + tl[j].start, tl[j].end - tl[j].start, a);
			}
		}
		free(tl);
	}
	free(counts);
	if (c->scroll > 0 && wd > 12) {
		char more[64];
		snprintf(more, sizeof more, P_(" %d more line below (PgDn) ", " %d more lines below (PgDn) ", c->scroll),
			 c->scroll);
		int cw = str_cols(more);
		draw_str(w, h - 1, wd - cw > 0 ? wd - cw : 0, wd, more, col(COL_SEL));
	}
}
