/* memory.c: the memory panel. One data source (struct mem_stats from the engine), two renderings: a stacked
 * bar of where memory goes now, with exact figures per category, and a graph of the total in use over time.
 * The bar's parts use distinct fill characters, so it reads without colour. A figure the backend could not
 * read (valid flag false) shows as N/A, never as 0. On the cpu backend the figures are host memory. */
#include "config.h"
#include "i18n.h"
#include "ui_int.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int mem_read_host(struct mem_stats *ms)
{
	memset(ms, 0, sizeof *ms);
	ms->is_host = true;
	FILE *f = fopen("/proc/meminfo", "r");
	if (f) {
		char line[256];
		unsigned long long kb;
		while (fgets(line, sizeof line, f)) {
			if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) { ms->total = kb * 1024; ms->total_valid = true; }
			if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) { ms->free = kb * 1024; ms->free_valid = true; }
		}
		fclose(f);
	}
	f = fopen("/proc/self/statm", "r");
	if (f) {
		unsigned long long size, rss;
		if (fscanf(f, "%llu %llu", &size, &rss) == 2) {
			ms->used_by_process = rss * (unsigned long long)sysconf(_SC_PAGESIZE);
			ms->used_valid = true;
		}
		fclose(f);
	}
	return ms->total_valid || ms->free_valid ? LM_OK : LM_ERR;
}

void panel_mem_push(struct mem_view *m, const struct mem_stats *ms, size_t kv_used, int context_used)
{
	m->ms = *ms;
	m->have = true;
	m->kv_used = kv_used;
	if (context_used >= 0) m->context_used = context_used;
	size_t sum = 0;
	for (int i = 0; i < MEM_NCAT; i++) sum += ms->cat[i];
	double used = (ms->total_valid && ms->free_valid && ms->total >= ms->free) ? (double)(ms->total - ms->free) : (double)sum;
	if (m->n_hist == MEM_HIST) {
		memmove(m->hist, m->hist + 1, (MEM_HIST - 1) * sizeof *m->hist);
		m->n_hist--;
	}
	m->hist[m->n_hist++] = (float)used;
}

enum part { P_WEIGHTS, P_KV, P_KVFREE, P_ACT, P_OTHER, P_FREE, P_N };
static const char fill[P_N] = { '#', '=', '-', '+', '~', '.' };
static const enum ui_color part_col[P_N] = { COL_MEM_WEIGHTS, COL_MEM_KV, COL_MEM_KVFREE, COL_MEM_ACT, COL_MEM_OTHER, COL_MEM_FREE };

struct parts {
	double v[P_N];
	bool valid[P_N];
	double scale;  /* what the full bar stands for */
};

static void split(const struct mem_view *m, struct parts *p)
{
	const struct mem_stats *s = &m->ms;
	memset(p, 0, sizeof *p);
	size_t kv = s->cat[MEM_KV], kv_used = m->kv_used < kv ? m->kv_used : kv;
	p->v[P_WEIGHTS] = s->cat[MEM_WEIGHTS];
	p->v[P_KV] = kv_used;
	p->v[P_KVFREE] = kv - kv_used;
	p->v[P_ACT] = s->cat[MEM_ACT] + s->cat[MEM_OTHER]; /* activations and workspace */
	p->valid[P_WEIGHTS] = p->valid[P_KV] = p->valid[P_KVFREE] = p->valid[P_ACT] = !m->cats_unknown;
	double mine = m->cats_unknown ? 0 : p->v[P_WEIGHTS] + kv + p->v[P_ACT];
	if (s->total_valid && s->free_valid && s->total >= s->free) {
		/* runtime, cuBLAS, other processes: what is in use but not allocated through us */
		double o = (double)(s->total - s->free) - mine;
		p->v[P_OTHER] = o > 0 ? o : 0;
		p->valid[P_OTHER] = true;
	}
	if (s->free_valid) { p->v[P_FREE] = s->free; p->valid[P_FREE] = true; }
	if (s->total_valid) p->scale = s->total;
	else {
		p->scale = 0;
		for (int i = 0; i < P_N; i++) p->scale += p->v[i];
	}
	if (p->scale <= 0) p->scale = 1;
}

static void draw_bar(WINDOW *w, int y, int x, int n, const struct parts *p)
{
	/* cells per part, rounded so they add up; a part that is not zero gets at least one cell */
	int cells[P_N], sum = 0, biggest = 0;
	for (int i = 0; i < P_N; i++) {
		cells[i] = p->valid[i] ? (int)(p->v[i] / p->scale * n + 0.5) : 0;
		if (p->valid[i] && p->v[i] > 0 && cells[i] == 0) cells[i] = 1;
		sum += cells[i];
		if (cells[i] > cells[biggest]) biggest = i;
	}
	cells[biggest] -= sum - n; /* rounding error goes to the largest part */
	if (cells[biggest] < 0) cells[biggest] = 0;
	int cx = x;
	for (int i = 0; i < P_N; i++) {
		wattrset(w, col(part_col[i]));
		for (int k = 0; k < cells[i] && cx < x + n; k++) mvwaddch(w, y, cx++, fill[i]);
	}
	wattrset(w, col(COL_DIM));
	while (cx < x + n) mvwaddch(w, y, cx++, ' '); /* parts not known */
	wattrset(w, A_NORMAL);
}

/* "  # Weights ........ 1.23 GiB  12%" */
static void legend(WINDOW *w, int y, int x, int iw, char ch, enum ui_color c, const char *label, const char *value,
		   const char *pct)
{
	if (ch) {
		wattrset(w, col(c));
		mvwaddch(w, y, x, ch);
		wattrset(w, A_NORMAL);
	}
	int lc = draw_str(w, y, x + 2, iw - 2, label, col(COL_NORMAL));
	int pw = 5;
	if (pct) draw_str_right(w, y, x + iw, pw, pct, col(COL_DIM));
	int vend = x + iw - (pct ? pw + 1 : 0);
	draw_str_right(w, y, vend, vend - (x + 2 + lc + 1), value, col(COL_TITLE));
}

static void pct(char *out, size_t n, double v, double scale)
{
	double p = 100.0 * v / scale;
	if (p > 0 && p < 0.1) snprintf(out, n, "<0.1%%");
	else if (p < 10) snprintf(out, n, "%.1f%%", p);
	else snprintf(out, n, "%.0f%%", p);
}

static void draw_graph(WINDOW *w, int y0, int x0, int gh, int gw, const struct mem_view *m, double max)
{
	if (gh <= 0 || gw <= 0 || m->n_hist == 0) return;
	wattrset(w, col(COL_GRAPH));
	if (ui_utf8) {
		/* braille: each cell is 2 samples wide and 4 dots high; the newest sample at the right */
		static const int left[4] = { 0x40, 0x04, 0x02, 0x01 }, right[4] = { 0x80, 0x20, 0x10, 0x08 };
		int ns = 2 * gw;
		for (int cx = 0; cx < gw; cx++) {
			int hts[2];
			for (int k = 0; k < 2; k++) {
				int si = m->n_hist - ns + 2 * cx + k;
				hts[k] = si < 0 ? -1 : (int)(m->hist[si] / max * gh * 4 + 0.5);
				if (si >= 0 && m->hist[si] > 0 && hts[k] == 0) hts[k] = 1;
			}
			for (int r = 0; r < gh; r++) { /* r = 0: the bottom row */
				int bits = 0;
				for (int d = 0; d < 4; d++) {
					if (hts[0] > r * 4 + d) bits |= left[d];
					if (hts[1] > r * 4 + d) bits |= right[d];
				}
				if (!bits) continue;
				char g[4] = { (char)0xE2, (char)(0xA0 | ((bits >> 6) & 3)), (char)(0x80 | (bits & 0x3F)), 0 };
				mvwaddstr(w, y0 + gh - 1 - r, x0 + cx, g);
			}
		}
	} else {
		/* ASCII: one sample a column, two levels a row ('.' half, ':' full) */
		for (int cx = 0; cx < gw; cx++) {
			int si = m->n_hist - gw + cx;
			if (si < 0) continue;
			int ht = (int)(m->hist[si] / max * gh * 2 + 0.5);
			if (m->hist[si] > 0 && ht == 0) ht = 1;
			for (int r = 0; r < gh; r++) {
				int lv = ht - 2 * r;
				if (lv <= 0) break;
				mvwaddch(w, y0 + gh - 1 - r, x0 + cx, lv >= 2 ? ':' : '.');
			}
		}
	}
	wattrset(w, A_NORMAL);
}

void panel_mem_draw(WINDOW *w, const struct mem_view *m)
{
	int h = getmaxy(w), wd = getmaxx(w);
	werase(w);
	char title[128];
	if (m->have && m->ms.is_host) snprintf(title, sizeof title, "%s", _("Host memory"));
	else if (m->have && m->ms.device_name[0]) snprintf(title, sizeof title, _("GPU memory: %s"), m->ms.device_name);
	else snprintf(title, sizeof title, "%s", _("Memory"));
	draw_box(w, title, col(COL_BORDER));
	int x = 2, iw = wd - 4, y = 1, ymax = h - 1;
	if (iw < 10 || h < 3) return;
	if (m->rebuilding && y < ymax) draw_str(w, y++, x, iw, _("rebuilding the KV cache..."), col(COL_WARN));
	if (!m->have) {
		if (y < ymax) draw_str(w, y, x, iw, _("waiting for figures..."), col(COL_DIM));
		return;
	}
	struct parts p;
	split(m, &p);
	char na[32];
	snprintf(na, sizeof na, "%s", C_("mem|N/A"));
	if (y < ymax) {
		mvwaddch(w, y, x, '[');
		draw_bar(w, y, x + 1, iw - 2, &p);
		mvwaddch(w, y, x + iw - 1, ']');
		y++;
	}
	static const char *labels[P_N];
	labels[P_WEIGHTS] = C_("mem|Weights");
	labels[P_KV] = C_("mem|KV in use");
	labels[P_KVFREE] = C_("mem|KV allocated");
	labels[P_ACT] = C_("mem|Activations");
	labels[P_OTHER] = C_("mem|Other");
	labels[P_FREE] = C_("mem|Free");
	for (int i = 0; i < P_N && y < ymax; i++, y++) {
		char v[64], pc[16];
		double val = p.v[i];
		if (i == P_KVFREE) val = (double)m->ms.cat[MEM_KV]; /* the line says what is allocated in all */
		if (p.valid[i]) {
			fmt_bytes(v, sizeof v, (size_t)val);
			/* our own allocations to the byte, where the panel is wide enough for it */
			if (iw >= 46 && val >= 1024 && i != P_OTHER && i != P_FREE) snprintf(v + strlen(v), sizeof v - strlen(v), " (%zu B)", (size_t)val);
		}
		else snprintf(v, sizeof v, "%s", na);
		if (p.valid[i] && m->ms.total_valid) pct(pc, sizeof pc, val, p.scale);
		legend(w, y, x, iw, fill[i], part_col[i], labels[i], v, p.valid[i] && m->ms.total_valid ? pc : NULL);
	}
	if (y < ymax) {
		char v[32];
		if (m->ms.total_valid) fmt_bytes(v, sizeof v, m->ms.total);
		else snprintf(v, sizeof v, "%s", na);
		legend(w, y++, x, iw, 0, COL_NORMAL, C_("mem|Total"), v, NULL);
	}
	if (y < ymax && (!m->ms.is_host || m->cats_unknown)) {
		char v[32];
		if (m->ms.used_valid) fmt_bytes(v, sizeof v, m->ms.used_by_process);
		else snprintf(v, sizeof v, "%s", na);
		legend(w, y++, x, iw, 0, COL_NORMAL, C_("mem|This process"), v, NULL);
	}
	if (y < ymax && m->kv_capacity_tokens > 0) {
		char v[64];
		snprintf(v, sizeof v, P_("%d token", "%d tokens", m->kv_capacity_tokens), m->kv_capacity_tokens);
		legend(w, y++, x, iw, 0, COL_NORMAL, C_("mem|KV capacity"), v, NULL);
	}
	if (y < ymax && m->kv_bytes_per_token > 0) {
		char v[32];
		fmt_bytes(v, sizeof v, m->kv_bytes_per_token);
		legend(w, y++, x, iw, 0, COL_NORMAL, C_("mem|KV per token"), v, NULL);
	}
	if (y < ymax && m->kv_capacity_tokens > 0) {
		char v[64];
		snprintf(v, sizeof v, "%d / %d", m->context_used, m->kv_capacity_tokens);
		legend(w, y++, x, iw, 0, COL_NORMAL, C_("mem|Context"), v, NULL);
	}
	/* the graph takes what is left, when that is at least 3 rows */
	int gh = ymax - y - 1;
	if (gh >= 2) {
		/* a GPU's graph is scaled to the device (full = out of memory); the host's to what it has used in
		 * the window, since the host's total dwarfs one process's changes */
		double max = m->ms.total_valid && !m->ms.is_host ? (double)m->ms.total : 0;
		if (max <= 0) {
			for (int i = 0; i < m->n_hist; i++) max = m->hist[i] > max ? m->hist[i] : max;
			max *= 1.25;
		}
		if (max <= 0) max = 1;
		char t[96], b[32];
		fmt_bytes(b, sizeof b, (size_t)m->hist[m->n_hist - 1]);
		snprintf(t, sizeof t, _(" in use over time: %s "), b);
		draw_hline(w, y, x, iw, col(COL_BORDER));
		draw_str(w, y, x + 1, iw - 2, t, col(COL_DIM));
		draw_graph(w, y + 1, x, gh, iw, m, max);
	}
}
