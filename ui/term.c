/* term.c: whether the terminal can show the full screen at all (term.h lives here alone: its capability macros,
 * such as lines and columns, would clash with names in the panels). */
#include "config.h"
#include "i18n.h"
#include "ui.h"

#include <stdlib.h>
#include <unistd.h>
#include <curses.h>
#include <term.h>

/* A terminal type that curses knows may still be unable to show a full screen: TERM=dumb (Emacs's shell,
 * some CI logs) has no cursor addressing, and drawing there garbled the screen. Checked with a terminfo entry
 * of its own, before newterm() writes anything. */
int ui_term_check(void)
{
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
		return lm_err(_("the full-screen interface needs a terminal; use --no-tui"));
	const char *t = getenv("TERM");
	int err = 0;
	TERMINAL *prev = cur_term;
	if (setupterm(NULL, STDOUT_FILENO, &err) != OK) {
		set_curterm(prev);
		return lm_err(_("cannot use the terminal '%s'"), t ? t : "");
	}
	const char *cup = tigetstr("cup");
	bool ok = cup && cup != (const char *)-1 && *cup;
	del_curterm(set_curterm(prev));
	if (!ok) return lm_err(_("the terminal '%s' cannot move the cursor, which the full screen needs"), t ? t : "");
	return LM_OK;
}
