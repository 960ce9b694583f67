/* ui_int.h: what the panels of the front end share. Only the UI thread includes this (curses lives here).
 * Each panel keeps a view state (a snapshot of what it shows, filled from engine events) and a draw function
 * that paints its WINDOW from that state; key handlers return KF_* flags that the loop in ui.c acts on. */
#ifndef LMTERM_UI_INT_H
#define LMTERM_UI_INT_H

#ifndef _XOPEN_SOURCE_EXTENDED
#define _XOPEN_SOURCE_EXTENDED 1
#endif
#include <curses.h>
#include <signal.h>
#include <wchar.h>

#include "edit.h"
#include "engine.h"
#include "layout.h"
#include "text.h"

/* ---- colors.c: semantic colours, mapped to a scheme or to monochrome attributes */
enum ui_color {
	COL_NORMAL, COL_USER, COL_ASSIST, COL_NOTE, COL_ERROR, COL_STATUS, COL_STATUS_KEY, COL_BORDER, COL_TITLE,
	COL_DIM, COL_SEL, COL_WARN, COL_BAR_DONE, COL_BAR_TODO,
	COL_MEM_WEIGHTS, COL_MEM_KV, COL_MEM_KVFREE, COL_MEM_ACT, COL_MEM_OTHER, COL_MEM_FREE, COL_GRAPH,
	COL_N
};
void colors_init(bool no_color);
attr_t col(enum ui_color c);

/* ---- draw.c: helpers every panel uses */
extern bool ui_utf8;    /* the locale's charset is UTF-8: box lines, braille and ellipses may be used */
/* Draw s[0..len) at (y, x), at most maxcols columns, grapheme by grapheme (so a width disagreement with
 * curses cannot shift the rest); control characters are skipped. Returns the columns used. */
int draw_text(WINDOW *w, int y, int x, int maxcols, const char *s, int len, attr_t a);
int draw_str(WINDOW *w, int y, int x, int maxcols, const char *s, attr_t a);
/* right-aligned in a field ending at column xend (exclusive) */
void draw_str_right(WINDOW *w, int y, int xend, int maxcols, const char *s, attr_t a);
void draw_box(WINDOW *w, const char *title, attr_t a);
void draw_hline(WINDOW *w, int y, int x, int n, attr_t a);
void draw_fill(WINDOW *w, int y, int x, int n, const char *cell, attr_t a); /* repeat one UTF-8 cell */
/* "1.25 GiB", "512 B": three significant digits */
void fmt_bytes(char *out, size_t n, size_t bytes);
/* "1:02:03", "2:05", "7s" */
void fmt_duration(char *out, size_t n, double s);
/* display width of a (translated) string */
int str_cols(const char *s);

enum { KF_HANDLED = 1, KF_REDRAW = 2, KF_RELAYOUT = 4, KF_QUIT = 8 };

/* ---- chat.c: the transcript */
enum chat_role { ROLE_USER, ROLE_ASSISTANT, ROLE_NOTE, ROLE_ERROR };
struct chat_msg {
	enum chat_role role;
	char *text;
	int len, cap;
	bool stopped;        /* a reply stopped with Ctrl-C (/save says so) */
	bool cut;            /* a reply cut short by the session's end or an error (/save: incomplete) */
	/* text[0..wrap_len) wrapped at wrap_w columns: a draw rewraps only a message whose text or width changed
	 * (rewrapping the whole transcript took 8 ms a draw at 150 KB of text, and a draw comes with every token) */
	struct wrap_line *wl;
	int nwl, wrap_w, wrap_len;
};
struct chat_view {
	struct chat_msg *m;
	int n, cap;
	int scroll;          /* lines scrolled up from the bottom */
	int last_total;      /* lines at the last draw (keeps the view still while scrolled and text arrives) */
	int last_w;          /* the window's width at the last draw */
	int anchor_msg, anchor_off; /* the bottom row's message and text offset (-1: its label, INT_MAX: the
				       blank after it), so that a new width (a resize, F3) keeps it at the bottom */
	int page;            /* rows at the last draw, for PgUp/PgDn */
	bool streaming;      /* the last message is a reply still arriving */
	bool from_top;       /* the next draw shows the first line on the top row (panel_chat_show_top) */
};
void panel_chat_add(struct chat_view *c, enum chat_role r, const char *text, int len);
void panel_chat_append(struct chat_view *c, const char *text, int len);
void panel_chat_clear(struct chat_view *c);
void panel_chat_drop_last(struct chat_view *c);
void panel_chat_free(struct chat_view *c);
void panel_chat_scroll(struct chat_view *c, int lines); /* > 0: up (older) */
/* scroll to the first line at the next draw, when the number of lines is known (the start-up notes) */
void panel_chat_show_top(struct chat_view *c);
void panel_chat_draw(WINDOW *w, struct chat_view *c);

/* ---- input.c: the input box */
struct input_view {
	struct edit ed;
	bool pasting;        /* inside a bracketed paste: Enter inserts a newline */
	const char *hint;    /* shown dimmed when empty */
	int width;           /* the box's width at the last draw (Up and Down move by the rows it shows) */
};
int panel_input_lines(const struct input_view *in, int width);
/* draws, and returns the cursor's screen position in *cy, *cx (window-relative) */
void panel_input_draw(WINDOW *w, struct input_view *in, bool busy, int *cy, int *cx);
/* editing keys; returns KF_* flags, or 0 if the key is not an editing key. *submit set on Enter. */
int panel_input_key(struct input_view *in, bool is_code, wint_t ch, bool alt, bool *submit);

/* ---- memory.c: the memory panel */
#define MEM_HIST 600
struct mem_view {
	struct mem_stats ms;
	bool have;
	size_t kv_used;
	int context_used, kv_capacity_tokens;
	size_t kv_bytes_per_token;
	float hist[MEM_HIST];    /* used bytes (GiB) over time, oldest first */
	int n_hist;
	bool rebuilding;
	bool cats_unknown;       /* figures from /proc only (no backend): per-category bytes are not known */
};
/* Host memory from /proc (MemTotal, MemAvailable, this process's RSS), for a task without a backend. */
int mem_read_host(struct mem_stats *ms);
void panel_mem_push(struct mem_view *m, const struct mem_stats *ms, size_t kv_used, int context_used);
void panel_mem_draw(WINDOW *w, const struct mem_view *m);

/* ---- statusbar.c */
struct status_view {
	struct engine_info info;
	bool have_info;
	int context_used;
	double tok_s, ttft_s;
	bool have_stats;
	const char *state;        /* "loading", "generating", "rebuilding KV cache", NULL */
	const char *model_label;
	char message[1024];       /* a transient message (errors, "busy"), shown until the next key */
};
void panel_status_draw(WINDOW *w, const struct status_view *s, bool tiny);
const char *kv_policy_name(int policy);
/* the KV cache's element type as the status bar shows it: policy 0 keeps the activation dtype (act_dtype, may be
 * NULL before the model is loaded), 8 and 4 are int8 and int4 */
void kv_label(char *out, size_t n, int policy, const char *act_dtype);

/* ---- settings.c (F2) */
enum { SET_CACHE, SET_POLICY, SET_TEMP, SET_TOP_P, SET_TOP_K, SET_REP, SET_N };
struct settings_view {
	struct sampling sampling;
	struct kv_capacity cap;
	int policy;
	/* what was in force when the dialog opened, to tell what changed */
	struct sampling sampling0;
	struct kv_capacity cap0;
	int policy0;
	char act_dtype[8];        /* what policy 0 stores (the activation dtype), "" when not known */
	int sel;
	bool editing;
	char buf[40];
	char msg[160];
};
void panel_settings_open(struct settings_view *s, const struct sampling *sp, const struct kv_capacity *cap,
			 int policy, const char *act_dtype);
/* returns KF_* flags; *action gets SETA_* bits */
enum { SETA_CLOSE = 1, SETA_KV = 2, SETA_SAMPLING = 4 };
int panel_settings_key(struct settings_view *s, bool is_code, wint_t ch, int *action);
void panel_settings_draw(WINDOW *w, const struct settings_view *s);
void fmt_capacity(char *out, size_t n, const struct kv_capacity *cap);

/* ---- help.c (F1) */
void panel_help_draw(WINDOW *w, int *scroll);

/* ---- progress.c */
struct progress_view {
	char title[96];
	char stage[96];
	int64_t done, total;
	double extra;           /* NAN if none */
	double t0;              /* when the task started (now_s) */
	double t_first;         /* when the first item was done (rate from there) */
	int64_t done_first;
	bool active;
	bool cancelling;
	char log[12][112];      /* the last items that reported a figure (per-layer error), newest last */
	int n_log;
	int64_t log_done;       /* done count of the last entry */
};
void panel_progress_reset(struct progress_view *p, const char *title);
void panel_progress_update(struct progress_view *p, const char *stage, int64_t done, int64_t total, double extra);
void panel_progress_draw(WINDOW *w, const struct progress_view *p);

/* ---- ui.c: terminal setup and restore, shared by the chat screen and the progress screen */
int ui_term_begin(bool no_color);
void ui_term_end(void);
extern volatile sig_atomic_t ui_winch, ui_sigint;
/* read one key: returns false if none; alt set when the key came after ESC */
bool ui_read_key(bool *is_code, wint_t *ch, bool *alt);
/* apply a pending SIGWINCH (resizeterm); true if the size changed */
bool ui_check_resize(void);

#endif
