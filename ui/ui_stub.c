/* Placeholder until the full-screen front end lands: reports that it is not available. */
#include "config.h"
#include "ui.h"
#include "i18n.h"

bool ui_available(void) { return false; }

int ui_chat_run(struct engine *e, const struct ui_opts *o)
{
	lm_err(_("the full-screen interface is not built in; use --no-tui"));
	return 1;
}

int ui_progress_run(const char *title, ui_work_fn work, void *ud, struct backend *be, const struct ui_opts *o)
{
	struct progress_sink s;
	progress_stderr_init(&s);
	int rc = work(ud, &s);
	progress_stderr_finish(&s);
	return rc;
}
