/* statusbar.c: one line at the bottom: model, backend, weights, KV policy, context, speed of the last reply,
 * and the keys. Segments are dropped from the right when the line is too narrow. */
#include "config.h"
#include "i18n.h"
#include "ui_int.h"

#include <stdio.h>
#include <string.h>

const char *kv_policy_name(int policy)
{
	switch (policy) {
	case 8: return C_("kv|int8");
	case 4: return C_("kv|int4");
	default: return C_("kv|fp16");
	}
}

void kv_label(char *out, size_t n, int policy, const char *act_dtype)
{
	if (policy == 0 && act_dtype && *act_dtype) {
		snprintf(out, n, "%s", act_dtype);
		for (char *p = out; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	} else {
		snprintf(out, n, "%s", kv_policy_name(policy));
	}
}

void panel_status_draw(WINDOW *w, const struct status_view *s, bool tiny)
{
	int wd = getmaxx(w);
	wbkgdset(w, ' ' | col(COL_STATUS));
	werase(w);
	char seg[10][160];
	int prio[10]; /* which segment goes first when the line is short: the highest number */
	int n = 0;
	if (s->message[0]) {
		/* a message takes the whole bar until the next key, wrapped over its rows (the layout gives a long one
		 * up to three) */
		struct wrap_line wl[3];
		int len = (int)strlen(s->message), rows = MIN(getmaxy(w), 3);
		int k = wd > 3 && rows > 0 ? text_wrap(s->message, len, wd - 2, true, wl, rows) : 0;
		if (k < 1) {
			draw_str(w, 0, 1, wd - 1, s->message, col(COL_STATUS));
			return;
		}
		if (k > rows) { k = rows; wl[k - 1].end = len; } /* more lines than rows: the last is cut at the edge */
		for (int i = 0; i < k; i++)
			draw_text(w, i, 1, wd - 1, s->message + wl[i].start, wl[i].end - wl[i].start, col(COL_STATUS));
		return;
	}
	const char *model = s->have_info && s->info.model_name[0] ? s->info.model_name : s->model_label ? s->model_label : "";
	prio[n] = 0;
	snprintf(seg[n++], sizeof seg[0], "%s", model);
	if (s->state) { prio[n] = 1; snprintf(seg[n++], sizeof seg[0], "%s", s->state); }
	if (s->have_info) {
		prio[n] = 5;
		snprintf(seg[n++], sizeof seg[0], "%s", s->info.backend);
		prio[n] = 6;
		snprintf(seg[n++], sizeof seg[0], "%s/%s", s->info.weight_format, s->info.act_dtype);
		prio[n] = 4;
		/* policy 0 keeps the activation dtype: F32 on the cpu reference, F16/BF16 on the GPU */
		char kvname[16];
		kv_label(kvname, sizeof kvname, s->info.kv_policy, s->info.act_dtype);
		snprintf(seg[n++], sizeof seg[0], C_("status|KV %s"), kvname);
		prio[n] = 2;
		snprintf(seg[n++], sizeof seg[0], C_("status|ctx %d/%d"), s->context_used, s->info.session_len);
	}
	if (s->have_stats) {
		prio[n] = 3;
		snprintf(seg[n++], sizeof seg[0], C_("status|%.1f tok/s"), s->tok_s);
		prio[n] = 5;
		snprintf(seg[n++], sizeof seg[0], C_("status|TTFT %.2fs"), s->ttft_s);
	}
	/* the keys, shortened when the figures need the room */
	const char *keys = tiny ? C_("status|F1 help") : C_("status|F1 help  F2 settings  F3 memory  F10 quit");
	int need = 1;
	for (int i = 0; i < n; i++) need += str_cols(seg[i]) + (i ? 3 : 0);
	if (!tiny && need + str_cols(keys) + 4 > wd) keys = C_("status|F1 help  F10 quit");
	if (need + str_cols(keys) + 4 > wd) keys = C_("status|F1 help");
	int kw = str_cols(keys);
	int avail = wd - kw - 4;
	if (avail < 8) { kw = 0; avail = wd - 1; } /* no room for the keys: the figures matter more */
	/* drop the least important segments until the rest fits */
	for (;;) {
		int need = 1;
		for (int i = 0; i < n; i++) need += str_cols(seg[i]) + (i ? 3 : 0);
		if (need <= avail || n <= 1) break;
		int worst = 0;
		for (int i = 1; i < n; i++)
			if (prio[i] > prio[worst]) worst = i;
		memmove(seg[worst], seg[worst + 1], (n - worst - 1) * sizeof seg[0]);
		memmove(prio + worst, prio + worst + 1, (n - worst - 1) * sizeof prio[0]);
		n--;
	}
	int x = 1;
	const char *sep = ui_utf8 ? " \xe2\x94\x82 " : " | ";
	for (int i = 0; i < n; i++) {
		int c = str_cols(seg[i]);
		int nd = c + (i ? 3 : 0);
		if (x + nd > avail) {
			if (i == 0) draw_str(w, 0, x, avail - x, seg[i], col(COL_STATUS) | A_BOLD);
			break;
		}
		if (i) x += draw_str(w, 0, x, 3, sep, col(COL_STATUS));
		attr_t a = col(COL_STATUS);
		if (i == 0) a |= A_BOLD;
		if (s->state && i == 1) a = col(COL_STATUS_KEY);
		x += draw_str(w, 0, x, avail - x, seg[i], a);
	}
	if (kw) draw_str(w, 0, wd - kw - 1, kw, keys, col(COL_STATUS_KEY));
}
