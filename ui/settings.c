/* settings.c: the settings dialog (F2). Up/Down pick a field, Left/Right change it by a step, or type a value;
 * Enter applies: a changed cache size or KV policy is sent as CMD_RECONFIG_KV (the engine rebuilds the cache
 * and re-reads the conversation), changed sampling as CMD_SET_SAMPLING. Esc closes without change. */
#include "config.h"
#include "i18n.h"
#include "opts.h"
#include "ui_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fmt_capacity(char *out, size_t n, const struct kv_capacity *cap)
{
	switch (cap->kind) {
	case KVCAP_BYTES: {
		uint64_t b = cap->bytes;
		if (b % (1ull << 30) == 0) snprintf(out, n, "%lluGiB", (unsigned long long)(b >> 30));
		else if (b % (1ull << 20) == 0) snprintf(out, n, "%lluMiB", (unsigned long long)(b >> 20));
		else snprintf(out, n, "%lluB", (unsigned long long)b);
		break;
	}
	case KVCAP_TOKENS: snprintf(out, n, "%llutok", (unsigned long long)cap->tokens); break;
	default: snprintf(out, n, "%.2f", cap->fraction); break;
	}
}

void panel_settings_open(struct settings_view *s, const struct sampling *sp, const struct kv_capacity *cap,
			 int policy, const char *act_dtype)
{
	memset(s, 0, sizeof *s);
	snprintf(s->act_dtype, sizeof s->act_dtype, "%s", act_dtype ? act_dtype : "");
	s->sampling = s->sampling0 = *sp;
	s->cap = s->cap0 = *cap;
	s->policy = s->policy0 = policy;
}

static const char *field_label(int f)
{
	switch (f) {
	case SET_CACHE: return C_("settings|KV cache size");
	case SET_POLICY: return C_("settings|KV quant policy");
	case SET_TEMP: return C_("settings|Temperature");
	case SET_TOP_P: return C_("settings|Top-p");
	case SET_TOP_K: return C_("settings|Top-k");
	default: return C_("settings|Repeat penalty"); /* as llama.cpp says; at 40 columns labels get 15 */
	}
}

static const char *field_hint(int f)
{
	switch (f) {
	case SET_CACHE: return _("fraction of free memory (0.8), or a size: 2GiB, 4096tok");
	case SET_POLICY: return _("0 = fp16/bf16, 8 = int8, 4 = int4 (less memory per token)");
	case SET_TEMP: return _("0 = greedy; higher is more random");
	case SET_TOP_P: return _("keep the most likely tokens up to this probability; 1 = off");
	case SET_TOP_K: return _("keep the K most likely tokens; 0 = off");
	default: return _("penalize repeated tokens; 1 = off");
	}
}

static void field_value(const struct settings_view *s, int f, char *out, size_t n)
{
	switch (f) {
	case SET_CACHE: fmt_capacity(out, n, &s->cap); break;
	case SET_POLICY: {
		char k[16];
		kv_label(k, sizeof k, s->policy, s->act_dtype); /* what the status bar will say */
		snprintf(out, n, "%d (%s)", s->policy, k);
		break;
	}
	case SET_TEMP: snprintf(out, n, "%.2f", s->sampling.temperature); break;
	case SET_TOP_P: snprintf(out, n, "%.2f", s->sampling.top_p); break;
	case SET_TOP_K: snprintf(out, n, "%d", s->sampling.top_k); break;
	default: snprintf(out, n, "%.2f", s->sampling.repetition_penalty); break;
	}
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

static void step(struct settings_view *s, int dir)
{
	struct sampling *sp = &s->sampling;
	switch (s->sel) {
	case SET_CACHE:
		if (s->cap.kind == KVCAP_FRACTION) s->cap.fraction = clampd(round((s->cap.fraction + 0.05 * dir) * 20) / 20, 0.05, 0.95);
		else if (s->cap.kind == KVCAP_BYTES) {
			int64_t b = (int64_t)s->cap.bytes + dir * (int64_t)(256ull << 20);
			s->cap.bytes = b < (int64_t)(256ull << 20) ? (256ull << 20) : (uint64_t)b;
		} else {
			int64_t t = (int64_t)s->cap.tokens + dir * 1024;
			s->cap.tokens = t < 1024 ? 1024 : (uint64_t)t;
		}
		break;
	case SET_POLICY: { /* 0 -> 8 -> 4: each step halves the bytes per token */
		static const int order[3] = { 0, 8, 4 };
		int i = s->policy == 8 ? 1 : s->policy == 4 ? 2 : 0;
		s->policy = order[(i + (dir > 0 ? 1 : 2)) % 3];
		break;
	}
	case SET_TEMP: sp->temperature = (float)clampd(round((sp->temperature + 0.05 * dir) * 100) / 100, 0, 2); break;
	case SET_TOP_P: sp->top_p = (float)clampd(round((sp->top_p + 0.05 * dir) * 100) / 100, 0.05, 1); break;
	case SET_TOP_K: sp->top_k = (int)clampd(sp->top_k + (sp->top_k >= 10 ? 5 : 1) * dir, 0, 1000); break;
	default: sp->repetition_penalty = (float)clampd(round((sp->repetition_penalty + 0.05 * dir) * 100) / 100, 1, 2); break;
	}
}

/* the typed value into the field; false (with msg) if it does not parse */
static bool commit(struct settings_view *s)
{
	if (!s->editing) return true;
	double d;
	int k;
	int rc = LM_OK;
	switch (s->sel) {
	case SET_CACHE: {
		struct kv_capacity c;
		rc = opt_kv_capacity("--cache-max-entry-count", s->buf, &c);
		if (rc == LM_OK) s->cap = c;
		break;
	}
	case SET_POLICY:
		rc = opt_quant_policy("--quant-policy", s->buf, &k);
		if (rc == LM_OK) s->policy = k;
		break;
	case SET_TEMP:
		rc = opt_float("--temperature", s->buf, 0, 100, &d);
		if (rc == LM_OK) s->sampling.temperature = (float)d;
		break;
	case SET_TOP_P:
		rc = opt_float("--top-p", s->buf, 0, 1, &d);
		/* as the command line says (cmd_chat.c): top-p 0 keeps no token; the arrows stop at 0.05 */
		if (rc == LM_OK && d <= 0) rc = lm_err(_("--top-p: must be greater than 0 (1 turns it off)"));
		if (rc == LM_OK) s->sampling.top_p = (float)d;
		break;
	case SET_TOP_K:
		rc = opt_int("--top-k", s->buf, 0, 1000000, &k);
		if (rc == LM_OK) s->sampling.top_k = k;
		break;
	default:
		rc = opt_float("--repetition-penalty", s->buf, 0.01, 100, &d);
		if (rc == LM_OK) s->sampling.repetition_penalty = (float)d;
		break;
	}
	if (rc != LM_OK) {
		snprintf(s->msg, sizeof s->msg, "%s", lm_errmsg());
		return false;
	}
	s->editing = false;
	s->msg[0] = 0;
	return true;
}

static bool cap_equal(const struct kv_capacity *a, const struct kv_capacity *b)
{
	if (a->kind != b->kind) return false;
	switch (a->kind) {
	case KVCAP_BYTES: return a->bytes == b->bytes;
	case KVCAP_TOKENS: return a->tokens == b->tokens;
	default: return fabs(a->fraction - b->fraction) < 1e-9;
	}
}

int panel_settings_key(struct settings_view *s, bool is_code, wint_t ch, int *action)
{
	*action = 0;
	if (is_code) {
		switch (ch) {
		case KEY_UP: if (commit(s)) s->sel = (s->sel + SET_N - 1) % SET_N; return KF_HANDLED | KF_REDRAW;
		case KEY_DOWN: if (commit(s)) s->sel = (s->sel + 1) % SET_N; return KF_HANDLED | KF_REDRAW;
		case KEY_LEFT: if (!s->editing) step(s, -1); return KF_HANDLED | KF_REDRAW;
		case KEY_RIGHT: if (!s->editing) step(s, +1); return KF_HANDLED | KF_REDRAW;
		case KEY_BACKSPACE:
			if (s->editing && s->buf[0]) s->buf[strlen(s->buf) - 1] = 0;
			return KF_HANDLED | KF_REDRAW;
		case KEY_ENTER: break;
		default: return KF_HANDLED;
		}
		ch = '\r';
	}
	switch (ch) {
	case 27: /* Esc: typing is dropped first, then the dialog */
		if (s->editing) { s->editing = false; s->msg[0] = 0; }
		else *action = SETA_CLOSE;
		return KF_HANDLED | KF_REDRAW;
	case '\t': if (commit(s)) s->sel = (s->sel + 1) % SET_N; return KF_HANDLED | KF_REDRAW;
	case 127: case 8:
		if (s->editing && s->buf[0]) s->buf[strlen(s->buf) - 1] = 0;
		return KF_HANDLED | KF_REDRAW;
	case '\r': case '\n':
		if (!commit(s)) return KF_HANDLED | KF_REDRAW;
		*action = SETA_CLOSE;
		if (!cap_equal(&s->cap, &s->cap0) || s->policy != s->policy0) *action |= SETA_KV;
		if (memcmp(&s->sampling, &s->sampling0, sizeof s->sampling) != 0) *action |= SETA_SAMPLING;
		return KF_HANDLED | KF_REDRAW;
	}
	if (ch > 0x20 && ch < 0x7f) { /* typing a value */
		if (!s->editing) { s->editing = true; s->buf[0] = 0; }
		size_t l = strlen(s->buf);
		if (l + 1 < sizeof s->buf) { s->buf[l] = (char)ch; s->buf[l + 1] = 0; }
		return KF_HANDLED | KF_REDRAW;
	}
	return KF_HANDLED;
}

void panel_settings_draw(WINDOW *w, const struct settings_view *s)
{
	int h = getmaxy(w), wd = getmaxx(w);
	werase(w);
	draw_box(w, C_("settings|Settings"), col(COL_BORDER));
	int x = 2, iw = wd - 4;
	if (iw < 8) return;
	/* the fields below a blank row; in a short window without it, and scrolled so that the selected field is
	 * in view (else Up/Down changed a value that could not be seen) */
	int y = h - 3 >= SET_N ? 2 : 1, rows = h - 1 - y;
	/* the selected field's hint, or the last error, goes between the fields and the keys. An error is read whole:
	 * where it has no room, the fields give up the blank row above them, then rows (at 40x14 the error lost its
	 * end, "nor a size such as 6GiB, 512MiB or 32768tok", which says what to type) */
	const char *t = s->msg[0] ? s->msg : field_hint(s->sel);
	struct wrap_line wl[4];
	int nt = MIN(text_wrap(t, (int)strlen(t), iw, true, wl, 4), 4);
	if (s->msg[0] && 1 + SET_N + nt + 1 > h - 2) {
		y = 1;
		rows = MIN(SET_N, MAX(1, h - 3 - nt));
	}
	int first = rows > 0 && s->sel >= rows ? s->sel - rows + 1 : 0;
	int lw = 0;
	for (int f = 0; f < SET_N; f++) lw = MAX(lw, str_cols(field_label(f)));
	lw = MIN(lw + 2, iw / 2);
	for (int f = first; f < SET_N && f < first + rows && y < h - 1; f++, y++) {
		bool sel = f == s->sel;
		attr_t a = sel ? col(COL_SEL) : col(COL_NORMAL);
		if (sel) draw_fill(w, y, x - 1, iw + 2, " ", a);
		/* a label cut short keeps a column before the value */
		draw_str(w, y, x, lw - 1, field_label(f), a | (sel ? A_BOLD : 0));
		char v[64];
		if (sel && s->editing) snprintf(v, sizeof v, "%s_", s->buf);
		else field_value(s, f, v, sizeof v);
		char shown[80];
		snprintf(shown, sizeof shown, sel && !s->editing ? "< %s >" : "  %s  ", v);
		draw_str(w, y, x + lw, iw - lw, shown, a);
	}
	bool kv_changed = !cap_equal(&s->cap, &s->cap0) || s->policy != s->policy0;
	/* the keys at the bottom, on two lines where the width needs them; where the full list takes more, or
	 * leaves no row for the field's hint, the short form on one line (at 40 columns the Chinese list takes
	 * three lines, and at 14 rows none of it was drawn) */
	int avail = h - 1 - y; /* the rows below the fields, above the border */
	const char *keys = _("Up/Down: field  Left/Right: change  type a value  Enter: apply  Esc: cancel");
	int nk = text_wrap(keys, (int)strlen(keys), iw, true, NULL, 0);
	if (nk > 2 || nk >= avail) {
		keys = _("Enter: apply  Esc: cancel");
		nk = 1;
	}
	if (nk > avail) nk = MAX(avail, 0);
	struct wrap_line kl[2];
	text_wrap(keys, (int)strlen(keys), iw, true, kl, 2);
	int ky = h - 1 - nk;
	/* the hint or the error: after a blank row where there is room for it, else right below the fields */
	int n = s->msg[0] ? nt : MIN(nt, 3);
	if (n < ky - y) y++;
	for (int i = 0; i < n && y < ky; i++, y++)
		draw_text(w, y, x, iw, t + wl[i].start, wl[i].end - wl[i].start, s->msg[0] ? col(COL_ERROR) : col(COL_DIM));
	if (kv_changed) { /* above the keys, on two lines where there is room (one cut off the end at 40 columns) */
		const char *warn = _("Applying rebuilds the KV cache; the conversation is kept.");
		struct wrap_line ww[2];
		int nw = MIN(text_wrap(warn, (int)strlen(warn), iw, true, ww, 2), 2);
		if (ky - nw <= y) nw = 1;
		for (int i = 0; i < nw && ky - nw > y; i++)
			draw_text(w, ky - nw + i, x, iw, warn + ww[i].start, ww[i].end - ww[i].start, col(COL_WARN));
	}
	for (int i = 0; i < nk; i++)
		draw_text(w, ky + i, x, iw, keys + kl[i].start, kl[i].end - kl[i].start, col(COL_DIM));
}
