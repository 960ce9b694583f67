/* histfile.h: the input editor's history kept across sessions (no curses; tests/test_input.c drives it).
 *
 * The file holds one entry per line, oldest first, in UTF-8: a newline inside an entry is written as the two
 * characters \n and a backslash as \\ (any other backslash is read as itself, so a file edited by hand cannot
 * be misread). Each submitted text is appended as one line; the file is not rewritten on every submit, only
 * trimmed to the last EDIT_HIST_MAX entries (a temporary file beside it, renamed over it) when it is loaded
 * with more, and when a session has appended HISTFILE_SLACK more. Appends and trims take an flock on the file,
 * so that two sessions appending at once lose nothing. Created with mode 0600, its directories with 0700. */
#ifndef LMTERM_UI_HISTFILE_H
#define LMTERM_UI_HISTFILE_H

#include "edit.h"

#define HISTFILE_SLACK 100

struct histfile {
	char *path;       /* NULL: no history file */
	int lines;        /* entries the file holds, as far as this session knows */
};

/* The history file's path (malloc'd): $LMTERM_HISTFILE, else $XDG_STATE_HOME/lmterm/history (an absolute
 * XDG_STATE_HOME only, as the XDG spec says), else $HOME/.local/state/lmterm/history. LM_OK with *path NULL:
 * LMTERM_HISTFILE is set and empty (no history file, as bash's HISTFILE). LM_ERR (with a message): no HOME, or
 * out of memory. */
int histfile_path(char **path);
/* Read the file into e's history (the last EDIT_HIST_MAX entries; blank ones and repeats skipped) and trim it
 * if it holds more. A missing file is an empty history. LM_ERR with a message naming the file: what could be
 * read is loaded all the same. */
int histfile_load(struct histfile *h, struct edit *e);
/* Append one entry (directories created as needed). LM_ERR with a message naming the file. */
int histfile_append(struct histfile *h, const char *entry);
void histfile_free(struct histfile *h);

/* the line an entry is written as (malloc'd, no newline at its end; NULL: out of memory), and back (in place) */
char *histfile_escape(const char *s);
void histfile_unescape(char *s);

#endif
