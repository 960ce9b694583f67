/* ui.h: the ncurses front end's entry points. Only the UI thread calls these; they own the terminal
 * between their start and their return, and restore it on every exit path. */
#ifndef LMTERM_UI_H
#define LMTERM_UI_H

#include "engine.h"
#include "progress.h"

struct ui_opts {
	bool no_color;      /* --no-color or NO_COLOR set */
	const char *model_label;
	/* added by the ui: the options the engine was started with, for the settings dialog's initial cache
	 * size and sampling values (NULL: LMDeploy's defaults are shown) */
	const struct engine_opts *engine;
};

/* Full-screen chat driving a running engine until the user quits. Returns an exit status. */
int ui_chat_run(struct engine *e, const struct ui_opts *o);

/* Run work(ud, sink) on a worker thread while the progress panel (and the memory panel beside it) shows
 * its reports; be may be NULL (no memory panel figures). Ctrl-C sets the sink's cancelled flag.
 * Returns work's status. */
typedef int (*ui_work_fn)(void *ud, struct progress_sink *sink);
int ui_progress_run(const char *title, ui_work_fn work, void *ud, struct backend *be, const struct ui_opts *o);

/* false when the front end is not built in (then callers use the plain REPL / stderr progress) */
bool ui_available(void);
/* LM_OK if stdin and stdout are a terminal that can show the full screen; else LM_ERR with the reason
 * (not a terminal, an unknown TERM, no cursor addressing as with TERM=dumb) */
int ui_term_check(void);

#endif
