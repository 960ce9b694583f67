/* progress.h: how a long task (model loading, auto_awq) reports progress without knowing who shows it:
 * the TUI's progress panel, or one line on stderr. report() may be called from a worker thread. */
#ifndef LMTERM_PROGRESS_H
#define LMTERM_PROGRESS_H

#include "common.h"

struct progress_sink {
	/* stage: short text ("layer 3/32: search scales"); done of total items; extra: a per-item figure
	 * (e.g. the layer's output error), NAN if none */
	void (*report)(struct progress_sink *s, const char *stage, int64_t done, int64_t total, double extra);
	/* true once the user asked to stop (Ctrl-C): the task cleans up and returns LM_ERR */
	bool (*cancelled)(struct progress_sink *s);
	void *ud;
};

/* A sink that rewrites one line on stderr (rate, elapsed, time left), and notices SIGINT, SIGTERM and SIGHUP
 * (SIGPIPE is ignored while it runs). */
void progress_stderr_init(struct progress_sink *s);
void progress_stderr_finish(struct progress_sink *s);

#endif
