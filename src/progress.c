#include "config.h"
#include "progress.h"
#include "i18n.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;
static double t0;
static bool tty, ansi; /* stderr a terminal; one that knows ESC [ K (not TERM=dumb) */
static int last_len;    /* bytes of the last line, which a dumb terminal's next line must cover */

static void on_sigint(int sig) { (void)sig; interrupted = 1; }

static void report(struct progress_sink *s, const char *stage, int64_t done, int64_t total, double extra)
{
	double el = now_s() - t0;
	char ex[32] = "", lf[64] = "";
	if (!isnan(extra)) snprintf(ex, sizeof ex, _("  err %.3g"), extra);
	/* the time left once an item has finished (before, "0s left" claimed the run was about to end) */
	if (done > 0 && total > done) snprintf(lf, sizeof lf, _(", %.0fs left"), el / done * (total - done));
	char line[512];
	int n = snprintf(line, sizeof line, _("%s  %lld/%lld  %.0fs elapsed%s%s"), stage, (long long)done,
			 (long long)total, el, lf, ex);
	if (n < 0) return;
	if (n >= (int)sizeof line) n = (int)sizeof line - 1;
	if (!tty)
		fprintf(stderr, "%s\n", line);
	else if (ansi)
		fprintf(stderr, "\r\033[K%s", line);
	else /* TERM=dumb: a carriage return only, and spaces over what the longer last line left */
		fprintf(stderr, "\r%s%*s", line, last_len > n ? last_len - n : 0, "");
	last_len = n;
	fflush(stderr);
}

static bool cancelled(struct progress_sink *s) { return interrupted != 0; }

void progress_stderr_init(struct progress_sink *s)
{
	/* SIGTERM and SIGHUP stop the work the way Ctrl-C does, so that it cleans up after itself (the quantizer
	 * removes its half-written directory); a reader of stderr that went away (`2>&1 | head`) does not kill it */
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigint;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	interrupted = 0;
	t0 = now_s();
	tty = isatty(2);
	ansi = term_erases_line(2);
	last_len = 0;
	s->report = report;
	s->cancelled = cancelled;
	s->ud = NULL;
}

void progress_stderr_finish(struct progress_sink *s)
{
	if (tty) fputc('\n', stderr);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
}
