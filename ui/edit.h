/* edit.h: the input editor's logic, apart from curses so that tests/test_input.c can drive it.
 * The text is UTF-8; the cursor is a byte offset that always sits on a grapheme boundary, so it moves by
 * what the user sees as one character. Multi-line: '\n' separates lines. */
#ifndef LMTERM_UI_EDIT_H
#define LMTERM_UI_EDIT_H

#include <stdbool.h>

/* the history keeps the last EDIT_HIST_MAX texts (the history file, ui/histfile.c, as many) */
#define EDIT_HIST_MAX 1000

struct edit {
	char *buf;        /* NUL-terminated */
	int len, cap;
	int cur;          /* byte offset of the cursor */
	char **hist;      /* submitted texts, oldest first */
	int n_hist, cap_hist;
	int hist_pos;     /* n_hist = editing the new text; else browsing hist[hist_pos] */
	char *draft;      /* the new text, kept while browsing the history */
	bool took_new;    /* the last edit_take added its text to the history (not blank, not a repeat) */
};

bool edit_init(struct edit *e);                        /* false: out of memory */
void edit_free(struct edit *e);
void edit_clear(struct edit *e);
bool edit_set(struct edit *e, const char *s);          /* cursor at the end; false (text unchanged): out of memory */

/* Insert text at the cursor (invalid UTF-8 and control characters other than '\n' and '\t' are dropped,
 * "\r\n" and '\r' become '\n', '\t' becomes four spaces). False: out of memory, nothing inserted. */
bool edit_insert(struct edit *e, const char *s, int n);
bool edit_left(struct edit *e);
bool edit_right(struct edit *e);
void edit_home(struct edit *e);        /* start of the current line */
void edit_end(struct edit *e);         /* end of the current line */
void edit_word_left(struct edit *e);
void edit_word_right(struct edit *e);
bool edit_backspace(struct edit *e);
bool edit_delete(struct edit *e);
void edit_kill_line_start(struct edit *e);  /* Ctrl-U */
void edit_kill_line_end(struct edit *e);    /* Ctrl-K */
void edit_kill_word_back(struct edit *e);   /* Ctrl-W */
void edit_kill_word_fwd(struct edit *e);    /* Alt-D */
/* Up/Down: move between the lines of multi-line text, keeping the column; on the first (last) line,
 * step back (forward) through the history. Return false when there is nowhere to go. */
bool edit_up(struct edit *e);
bool edit_down(struct edit *e);
/* Take the text for submission: returns a malloc'd copy without its blank last lines (caller frees), records it
 * in the history unless blank or equal to the last entry (took_new says whether it did), and clears the editor.
 * NULL: out of memory, the editor is unchanged. */
char *edit_take(struct edit *e);
/* Add s to the end of the history unless blank or equal to the last entry; beyond EDIT_HIST_MAX the oldest
 * goes. True when added (false also without memory for it: the history is a convenience). */
bool edit_hist_add(struct edit *e, const char *s);
bool edit_blank(const struct edit *e);     /* only spaces and newlines */
int edit_lines(const struct edit *e);      /* '\n'-separated lines */

#endif
