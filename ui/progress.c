/* progress.c: the progress panel: title, stage, item i of n, a bar, rate, elapsed, time left. Used over the
 * chat while the model loads or the KV cache is rebuilt, and full-screen by ui_progress_run (auto_awq). */
#include "config.h"
#include "i18n.h"
#include "ui_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void panel_progress_reset(struct progress_view *p, const char *title)
{
	memset(p, 0, sizeof *p);
	snprintf(p->title, sizeof p->title, "%s", title);
	p->extra = NAN;
	p->t0 = now_s();
	p->active = true;
}

void panel_progress_update(struct progress_view *p, const char *stage, int64_t done, int64_t total, double extra)
{
	if (!p->active) {
		char t[sizeof p->title];
		memcpy(t, p->title, sizeof t);
		panel_progress_reset(p, t);
	}
	snprintf(p->stage, sizeof p->stage, "%s", stage ? stage : "");
	if (done > 0 && p->t_first == 0) { p->t_first = now_s(); p->done_first = done; }
	p->done = done;
	p->total = total;
	p->extra = extra;
	if (!isnan(extra) && (p->n_log == 0 || done != p->log_done)) { /* one entry per finished item */
		int n = (int)(sizeof p->log / sizeof p->log[0]);
		if (p->n_log == n) {
			memmove(p->log, p->log + 1, (n - 1) * sizeof p->log[0]);
			p->n_log--;
		}
		snprintf(p->log[p->n_log++], sizeof p->log[0], "%s  %.4g", p->stage, extra);
		p->log_done = done;
	}
}

void panel_progress_draw(WINDOW *w, const struct progress_view *p)
{
	int h = getmaxy(w), wd = getmaxx(w);
	werase(w);
	draw_box(w, p->title[0] ? p->title : C_("progress|Working"), col(COL_BORDER));
	int x = 2, iw = wd - 4, y = 1;
	if (iw < 8 || h < 3) return;
	double now = now_s(), el = now - p->t0;
	/* rate from the first finished item on, so that a slow start (loading, warm-up) does not skew it */
	double rate = 0, left = NAN;
	if (p->t_first > 0 && p->done > p->done_first && now > p->t_first) {
		rate = (p->done - p->done_first) / (now - p->t_first);
		if (p->total > p->done && rate > 0) left = (p->total - p->done) / rate;
	} else if (p->done > 0 && el > 0) {
		rate = p->done / el;
		if (p->total > p->done) left = (p->total - p->done) / rate;
	}
	if (y < h - 1) draw_str(w, y++, x, iw, p->stage[0] ? p->stage : "...", col(COL_NORMAL) | A_BOLD);
	if (y < h - 1 && p->total > 0) {
		/* "[#######.......]  42%" */
		double f = (double)p->done / p->total;
		if (f > 1) f = 1;
		char pc[16];
		snprintf(pc, sizeof pc, " %3.0f%%", f * 100);
		int bw = iw - 2 - (int)strlen(pc);
		if (bw >= 4) {
			int full = (int)(f * bw + 0.5);
			mvwaddch(w, y, x, '[');
			draw_fill(w, y, x + 1, full, "#", col(COL_BAR_DONE));
			draw_fill(w, y, x + 1 + full, bw - full, ".", col(COL_BAR_TODO));
			mvwaddch(w, y, x + 1 + bw, ']');
			draw_str(w, y, x + 2 + bw, iw - bw - 2, pc, col(COL_NORMAL));
		}
		y++;
	}
	char line[256], e[32], l[32];
	fmt_duration(e, sizeof e, el);
	if (isnan(left)) snprintf(l, sizeof l, "--");
	else fmt_duration(l, sizeof l, left);
	if (y < h - 1) {
		if (p->total > 0 && rate > 0) {
			/* where the line does not fit, the rate goes first, then the time elapsed: the time left was
			 * what a narrow panel cut ("...elapsed 0s  left") */
			snprintf(line, sizeof line, _("%lld of %lld  %.2f/s  elapsed %s  left %s"), (long long)p->done,
				 (long long)p->total, rate, e, l);
			if (str_cols(line) > iw)
				snprintf(line, sizeof line, _("%lld of %lld  elapsed %s  left %s"), (long long)p->done,
					 (long long)p->total, e, l);
			if (str_cols(line) > iw)
				snprintf(line, sizeof line, _("%lld of %lld  left %s"), (long long)p->done, (long long)p->total, l);
		} else if (p->total > 0)
			snprintf(line, sizeof line, _("%lld of %lld  elapsed %s"), (long long)p->done, (long long)p->total, e);
		else
			snprintf(line, sizeof line, _("elapsed %s"), e);
		draw_str(w, y++, x, iw, line, col(COL_NORMAL));
	}
	if (y < h - 1 && !isnan(p->extra)) {
		/* the figure is lite auto_awq's (the only work that reports one): the layer's relative output error */
		snprintf(line, sizeof line, _("error of the last layer: %.4g"), p->extra);
		draw_str(w, y++, x, iw, line, col(COL_DIM));
	}
	if (y < h - 1 && p->cancelling) draw_str(w, y++, x, iw, _("stopping..."), col(COL_WARN));
	/* the recent figures, as many as fit */
	if (p->n_log > 0 && y + 2 < h - 1) {
		y++;
		draw_str(w, y++, x, iw, _("recent layers and their errors:"), col(COL_DIM));
		int rows = h - 1 - y, first = p->n_log > rows ? p->n_log - rows : 0;
		for (int i = first; i < p->n_log && y < h - 1; i++) draw_str(w, y++, x + 2, iw - 2, p->log[i], col(COL_NORMAL));
	}
}
