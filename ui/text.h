/* text.h: display width and wrapping of UTF-8 text by terminal columns (graphemes from utf8proc, widths from
 * wcwidth() as curses uses them): CJK and emoji take two columns, combining marks none, control characters none
 * (they are not drawn). Pure functions, no curses. */
#ifndef LMTERM_UI_TEXT_H
#define LMTERM_UI_TEXT_H

#include <stdbool.h>

/* One grapheme cluster (what the user sees as one character) starting at s[pos]: returns the position after
 * it and its width in columns in *width: the sum of its code points' wcwidth(), as curses places them (a ZWJ
 * emoji sequence takes the columns of its parts; a VS16 adds none; a code point that wcwidth() does not know
 * takes 1, see text_replaced). Invalid bytes count as one column each (drawn as '?');
 * *cp gets the first code point (or -1 for an invalid byte). pos must be < len. */
int text_next(const char *s, int len, int pos, int *width, int *cp);
/* The start of the grapheme cluster that ends at pos (pos > 0). */
int text_prev(const char *s, int len, int pos);
/* Columns taken by s[0..len). '\n' counts as 0. */
int text_width(const char *s, int len);
/* Is this code point drawn? (not a control character) */
bool text_drawable(int cp);
/* Is it drawn as U+FFFD? A code point that wcwidth() does not know (an emoji newer than the C library) in a
 * UTF-8 locale: curses would draw its cell blank. */
bool text_replaced(int cp);

struct wrap_line {
	int start, end;  /* bytes [start, end) of the text shown on this line (no '\n', no break space) */
	int cols;        /* display width of that range */
};

/* Wrap s[0..len) into lines of at most width columns. word: break after spaces and around wide (CJK)
 * characters where possible; else break anywhere. '\n' always ends a line. Text ending in '\n' gets an empty
 * last line. Writes at most max lines (out may be NULL to count); returns the number of lines needed (>= 1). */
int text_wrap(const char *s, int len, int width, bool word, struct wrap_line *out, int max);

#endif
