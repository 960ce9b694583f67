/* ui.c: the terminal (setup, restore on every exit path, keys, resize) and the chat screen's loop.
 *
 * The loop sleeps in poll() on stdin and the engine's eventfd (plus a 1 s timeout that asks the engine for
 * fresh memory figures, for the history graph); it never spins. Engine events update view states; keys go to
 * handlers that return KF_* flags; one pass then lays out (if needed), draws every panel into its window,
 * wnoutrefresh()es each and calls doupdate() once. SIGWINCH only sets a flag; the loop resizes. */
#include "config.h"
#include "histfile.h"
#include "i18n.h"
#include "transcript.h"
#include "ui.h"
#include "ui_int.h"

#include <errno.h>
#include <langinfo.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

bool ui_available(void) { return true; }

/* ------------------------------------------------------------------ terminal */

volatile sig_atomic_t ui_winch, ui_sigint;
static volatile sig_atomic_t term_active;
static SCREEN *screen;
static bool atexit_done;
static int key_ctrl_left, key_ctrl_right;
static bool bad_input; /* read_wch replaced bytes the locale could not decode: the chat says so once */
enum { KEY_PASTE_BEGIN = KEY_MAX + 100, KEY_PASTE_END = KEY_MAX + 101 };

#define PASTE_ON "\033[?2004h"
#define PASTE_OFF "\033[?2004l"

/* idempotent; also called from signal handlers (endwin is what every curses program does there) */
static void term_restore(void)
{
	if (!term_active) return;
	term_active = 0;
	ssize_t r = write(STDOUT_FILENO, PASTE_OFF, sizeof PASTE_OFF - 1);
	(void)r;
	endwin();
}

static void on_winch(int sig) { (void)sig; ui_winch = 1; }
static void on_int(int sig) { (void)sig; ui_sigint = 1; }
static void on_fatal(int sig)
{
	term_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

static struct sigaction old_sa[32];
static const int fatal_sigs[] = { SIGTERM, SIGHUP, SIGQUIT, SIGSEGV, SIGBUS, SIGFPE, SIGABRT, SIGILL };

int ui_term_begin(bool no_color)
{
	if (ui_term_check() != LM_OK) return LM_ERR;
	ui_utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
	screen = newterm(NULL, stdout, stdin);
	if (!screen) {
		const char *t = getenv("TERM");
		return lm_err(_("cannot use the terminal '%s'; use --no-tui"), t ? t : "");
	}
	set_term(screen);
	term_active = 1;
	bad_input = false;
	if (!atexit_done) { atexit(term_restore); atexit_done = true; }
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_fatal;
	for (size_t i = 0; i < ARRAY_SIZE(fatal_sigs); i++) sigaction(fatal_sigs[i], &sa, &old_sa[fatal_sigs[i]]);
	sa.sa_handler = on_winch;
	sigaction(SIGWINCH, &sa, &old_sa[SIGWINCH]);
	sa.sa_handler = on_int;
	sigaction(SIGINT, &sa, &old_sa[SIGINT]);
	ui_winch = ui_sigint = 0;

	raw();     /* Ctrl-C, Ctrl-Q, Ctrl-S reach us as keys */
	noecho();
	nonl();    /* Enter is '\r', Ctrl-J is '\n': two different keys */
	keypad(stdscr, TRUE);
	nodelay(stdscr, TRUE);
	set_escdelay(25);
	colors_init(no_color);
	mousemask(BUTTON4_PRESSED | BUTTON5_PRESSED, NULL);
	mouseinterval(0);
	define_key("\033[200~", KEY_PASTE_BEGIN);
	define_key("\033[201~", KEY_PASTE_END);
	key_ctrl_left = key_defined("\033[1;5D");
	key_ctrl_right = key_defined("\033[1;5C");
	if (key_ctrl_left <= 0) { key_ctrl_left = KEY_MAX + 102; define_key("\033[1;5D", key_ctrl_left); }
	if (key_ctrl_right <= 0) { key_ctrl_right = KEY_MAX + 103; define_key("\033[1;5C", key_ctrl_right); }
	fputs(PASTE_ON, stdout);
	fflush(stdout);
	curs_set(1);
	return LM_OK;
}

void ui_term_end(void)
{
	/* a terminal without an alternate screen (vt100, a console) keeps what was drawn: clear it, else the shell's
	 * next lines are written over the chat and its status bar */
	if (term_active && screen) {
		const char *rmcup = tigetstr("rmcup");
		if (!rmcup || rmcup == (const char *)-1 || !*rmcup) {
			clear();
			refresh();
		}
	}
	term_restore();
	if (screen) { delscreen(screen); screen = NULL; }
	for (size_t i = 0; i < ARRAY_SIZE(fatal_sigs); i++) sigaction(fatal_sigs[i], &old_sa[fatal_sigs[i]], NULL);
	sigaction(SIGWINCH, &old_sa[SIGWINCH], NULL);
	sigaction(SIGINT, &old_sa[SIGINT], NULL);
}

/* Ctrl-Z: raw mode hands it to us as a key, so the shell's job control never saw it. Leave the screen as on
 * quitting, stop the process group as the terminal driver would (the engine thread stops with it), and take
 * the screen back when the shell continues us (fg): bracketed paste on again and a full redraw. */
static void ui_suspend(void)
{
	if (!term_active) return;
	ssize_t r = write(STDOUT_FILENO, PASTE_OFF, sizeof PASTE_OFF - 1);
	(void)r;
	endwin();
	/* the default action stops us; ncurses' own SIGTSTP handler, if it installed one, would end the screen
	 * a second time and redraw behind our back */
	struct sigaction dfl, old;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGTSTP, &dfl, &old);
	run_clock_pause(); /* a reply stopped with us is timed without the stop (tokens/s) */
	kill(0, SIGTSTP);
	run_clock_resume();
	sigaction(SIGTSTP, &old, NULL);
	r = write(STDOUT_FILENO, PASTE_ON, sizeof PASTE_ON - 1);
	ui_winch = 1; /* the terminal may have been resized while we were stopped */
	clearok(curscr, TRUE);
	refresh();
}

bool ui_check_resize(void)
{
	if (!ui_winch) return false;
	ui_winch = 0;
	struct winsize ws;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0 || ws.ws_col == 0) return false;
	if (ws.ws_row == LINES && ws.ws_col == COLS) return false;
	resizeterm(ws.ws_row, ws.ws_col); /* queues KEY_RESIZE too */
	return true;
}

/* One character or key, as get_wch() returns it. The bytes are decoded here (mbrtowc, the locale's charset)
 * rather than by get_wch: ncurses 6.4's wget_wch, given a byte that cannot start a character (Latin-1 text
 * pasted, a stray byte, any non-ASCII byte in the C locale), goes on reading until the input pauses and then
 * drops everything it read, so one such byte lost the rest of a paste. Here a byte that does not start or
 * continue a character becomes U+FFFD (shown, so the user sees where), and the bytes after it are kept. */
static int read_wch(wint_t *ch)
{
	int c = getch();
	if (c == ERR) return ERR;
	if (c > 0xff) { *ch = (wint_t)c; return KEY_CODE_YES; } /* a function key */
	char b[MB_LEN_MAX];
	int n = 0;
	b[n++] = (char)c;
	for (;;) {
		mbstate_t st;
		memset(&st, 0, sizeof st);
		wchar_t wc;
		size_t r = mbrtowc(&wc, b, (size_t)n, &st);
		if (r != (size_t)-1 && r != (size_t)-2) { *ch = r == 0 ? 0 : (wint_t)wc; return OK; }
		if (r == (size_t)-1) {
			if (n > 1) ungetch((unsigned char)b[n - 1]); /* the byte that broke it may start the next one */
			break;
		}
		if (n == (int)sizeof b) break;
		/* the rest of the character may be a moment behind its first byte */
		timeout(100);
		int d = getch();
		nodelay(stdscr, TRUE);
		if (d == ERR) break;
		if (d > 0xff) { ungetch(d); break; }
		b[n++] = (char)d;
	}
	*ch = 0xfffd;
	bad_input = true;
	return OK;
}

bool ui_read_key(bool *is_code, wint_t *ch, bool *alt)
{
	*alt = false;
	int r = read_wch(ch);
	if (r == ERR) return false;
	*is_code = r == KEY_CODE_YES;
	if (!*is_code && *ch == 27) {
		/* ESC then a key within ESCDELAY: Alt + that key */
		wint_t c2;
		int r2 = read_wch(&c2);
		if (r2 == KEY_CODE_YES) {
			ungetch((int)c2); /* Esc, then a function key: two keys */
		} else if (r2 != ERR) {
			*alt = true;
			*ch = c2;
		}
	}
	if (*is_code && (int)*ch == key_ctrl_left) { *is_code = false; *alt = true; *ch = 'b'; }
	else if (*is_code && (int)*ch == key_ctrl_right) { *is_code = false; *alt = true; *ch = 'f'; }
	return true;
}

/* ------------------------------------------------------------------ chat screen */

enum { W_TRANSCRIPT, W_INPUT, W_STATUS, W_MEM, W_PROGRESS, W_OVERLAY, W_N };

struct chat_ui {
	struct engine *e;
	const struct ui_opts *o;
	struct layout lay;
	struct layout_opts lo;
	WINDOW *win[W_N];
	struct rect rect[W_N];

	struct chat_view chat;
	struct input_view input;
	struct mem_view mem;
	struct status_view status;
	struct settings_view settings;
	struct progress_view prog;
	int help_scroll;

	bool ready, streaming, rebuilding, dead, quit;
	int exit_code;
	struct sampling sampling;
	struct kv_capacity cap;
	struct kv_capacity cap_kept; /* the size in force before a rebuild, back if the rebuild fails */
	int policy;
	double t_submit, t_first, t_last_mem;
	int n_token_events;
	struct histfile hist;    /* the input history across sessions (hist.path NULL: none) */
	bool hist_failed;        /* its last write failed (and said so): the next failure says nothing new */
	char later_note[sizeof ((struct status_view *)0)->message]; /* report()'s note, for when the reply ends */
};

static void set_message(struct chat_ui *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_message(struct chat_ui *u, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(u->status.message, sizeof u->status.message, fmt, ap);
	va_end(ap);
}

static void note(struct chat_ui *u, enum chat_role r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(struct chat_ui *u, enum chat_role r, const char *fmt, ...)
{
	char buf[1400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	/* a note in the middle of a streaming reply would split it: put it after. A reply that has not begun (its
	 * entry still empty: the turn failed before the first token) moves below the note, else an empty
	 * "Assistant" would stay above the error once the turn ends. */
	struct chat_view *c = &u->chat;
	if (u->streaming && c->n > 0 && c->m[c->n - 1].role == ROLE_ASSISTANT && c->m[c->n - 1].len == 0)
		panel_chat_drop_last(c); /* its text and its wrap cache (freeing only the text leaked the cache) */
	panel_chat_add(c, r, buf, (int)strlen(buf));
	if (u->streaming) { panel_chat_add(c, ROLE_ASSISTANT, "", 0); }
}

/* A message that names a file (/save's result, the history file's trouble): in the status bar, and where it is
 * wider than the status bar, whole in the transcript too, as a note (not saved by /save). The status bar cut
 * such a message at its width, and at 160 bytes before: '... exists (not overwritten); try /save' lost the
 * free name it suggests. */
static void report(struct chat_ui *u, const char *msg)
{
	set_message(u, "%s", msg);
	int room = u->win[W_STATUS] ? getmaxx(u->win[W_STATUS]) - 2 : COLS - 2;
	if (str_cols(msg) <= room) return;
	/* not in the middle of a reply arriving (a note there splits it in two): after it */
	if (u->streaming) snprintf(u->later_note, sizeof u->later_note, "%s", msg);
	else note(u, ROLE_NOTE, "%s", msg);
}

static void flush_later_note(struct chat_ui *u)
{
	if (!u->later_note[0]) return;
	note(u, ROLE_NOTE, "%s", u->later_note);
	u->later_note[0] = 0;
}

static void relayout(struct chat_ui *u)
{
	int rows = LINES, cols = COLS;
	/* the input box's height depends on its text wrapped at the width it will have */
	u->lo.mode = LAYOUT_CHAT;
	u->lo.input_lines = 1;
	/* the status bar's message, wrapped as panel_status_draw wraps it */
	const char *msg = u->status.message;
	u->lo.status_lines = msg[0] && cols > 3 ? text_wrap(msg, (int)strlen(msg), cols - 2, true, NULL, 0) : 1;
	layout_compute(&u->lay, cols, rows, &u->lo);
	if (rect_shown(u->lay.input)) {
		u->lo.input_lines = panel_input_lines(&u->input, u->lay.input.w);
		layout_compute(&u->lay, cols, rows, &u->lo);
	}
	struct rect r[W_N] = { u->lay.transcript, u->lay.input, u->lay.status, u->lay.mem, u->lay.progress, u->lay.overlay };
	for (int i = 0; i < W_N; i++) {
		if (u->win[i] && memcmp(&r[i], &u->rect[i], sizeof r[i]) == 0) continue;
		if (u->win[i]) delwin(u->win[i]);
		u->win[i] = rect_shown(r[i]) ? newwin(r[i].h, r[i].w, r[i].y, r[i].x) : NULL;
		if (u->win[i]) { keypad(u->win[i], TRUE); leaveok(u->win[i], i != W_INPUT); }
		u->rect[i] = r[i];
	}
}

static const char *state_text(const struct chat_ui *u)
{
	if (u->dead) return C_("state|engine stopped");
	if (!u->ready) return C_("state|loading");
	if (u->streaming) return C_("state|generating"); /* a rebuild asked for meanwhile waits for the reply */
	if (u->rebuilding) return C_("state|rebuilding KV cache");
	return NULL;
}

static void draw(struct chat_ui *u)
{
	u->status.state = state_text(u);
	if (u->streaming && u->t_first > 0 && u->n_token_events > 1) {
		/* live speed while the reply streams (events are close to tokens); the final figure comes with
		 * EV_TURN_DONE */
		double dt = now_run_s() - u->t_first; /* as the engine times it: a stop (Ctrl-Z) is left out */
		if (dt > 0.2) { u->status.tok_s = (u->n_token_events - 1) / dt; u->status.have_stats = true; }
	}
	u->mem.rebuilding = u->rebuilding && !u->streaming; /* as the progress overlay: see sync_progress_overlay */
	if (u->status.have_info) {
		u->mem.kv_capacity_tokens = u->status.info.kv_capacity_tokens;
		u->mem.kv_bytes_per_token = u->status.info.kv_bytes_per_token;
	}
	if (u->win[W_TRANSCRIPT]) { panel_chat_draw(u->win[W_TRANSCRIPT], &u->chat); wnoutrefresh(u->win[W_TRANSCRIPT]); }
	if (u->win[W_MEM]) { panel_mem_draw(u->win[W_MEM], &u->mem); wnoutrefresh(u->win[W_MEM]); }
	if (u->win[W_STATUS]) { panel_status_draw(u->win[W_STATUS], &u->status, u->lay.tiny); wnoutrefresh(u->win[W_STATUS]); }
	int cy = 0, cx = 0;
	if (u->win[W_INPUT]) {
		u->input.hint = u->dead ? _("the engine stopped; F10 quits") : !u->ready ? _("loading the model...") : NULL;
		panel_input_draw(u->win[W_INPUT], &u->input, u->streaming, &cy, &cx);
	}
	WINDOW *ov = u->win[W_OVERLAY];
	if (ov) {
		if (u->win[W_INPUT]) wnoutrefresh(u->win[W_INPUT]);
		switch (u->lo.overlay) {
		case OVERLAY_HELP: panel_help_draw(ov, &u->help_scroll); break;
		case OVERLAY_SETTINGS: panel_settings_draw(ov, &u->settings); break;
		case OVERLAY_PROGRESS: panel_progress_draw(ov, &u->prog); break;
		case OVERLAY_CONFIRM: {
			werase(ov);
			draw_box(ov, C_("confirm|Quit"), col(COL_BORDER));
			int iw = getmaxx(ov) - 4;
			/* the reply may end while the question is up: say so rather than what is no longer true */
			const char *why = u->streaming ? _("A reply is being generated.") : _("The reply has finished.");
			if (getmaxy(ov) > 2) draw_str(ov, 1, 2, iw, why, col(COL_NORMAL));
			if (getmaxy(ov) > 3) draw_str(ov, 2, 2, iw, _("Quit anyway? (y/n)"), col(COL_WARN));
			break;
		}
		default: break;
		}
		wnoutrefresh(ov);
		curs_set(0);
	} else if (u->win[W_INPUT]) {
		wmove(u->win[W_INPUT], cy, cx);
		wnoutrefresh(u->win[W_INPUT]); /* last, so the terminal's cursor is left in the input box */
		curs_set(u->ready && !u->dead ? 1 : 0);
	}
	doupdate();
}

static void set_overlay(struct chat_ui *u, enum overlay ov)
{
	u->lo.overlay = ov;
	relayout(u);
}

/* the progress overlay is up while the model loads or the KV cache is rebuilt, unless another one is. A rebuild
 * applied while a reply is being generated begins when the reply ends (the engine takes it after the turn):
 * until then the reply stays in view (the overlay covered it, saying "rebuilding" while the reply went on). */
static void sync_progress_overlay(struct chat_ui *u)
{
	bool want = !u->dead && (!u->ready || (u->rebuilding && !u->streaming));
	if (want && u->lo.overlay == OVERLAY_NONE) set_overlay(u, OVERLAY_PROGRESS);
	else if (!want && u->lo.overlay == OVERLAY_PROGRESS) set_overlay(u, OVERLAY_NONE);
}

static void send_cmd(struct chat_ui *u, const struct cmd *c)
{
	if (engine_send(u->e, c) != LM_OK) set_message(u, "%s", lm_errmsg());
}

/* /save [FILE]: the messages and replies as the transcript shows them, without its notes and errors; a reply
 * still arriving is saved as far as it has come, marked incomplete */
static void save_chat(struct chat_ui *u, const char *arg)
{
	const struct chat_view *c = &u->chat;
	struct tr_msg *m = malloc((c->n + 1) * sizeof *m);
	if (!m) { set_message(u, "%s", _("out of memory")); return; }
	int n = 0;
	for (int i = 0; i < c->n; i++) {
		if (c->m[i].role != ROLE_USER && c->m[i].role != ROLE_ASSISTANT) continue;
		m[n++] = (struct tr_msg){ .role = c->m[i].role == ROLE_USER ? TR_USER : TR_ASSISTANT,
					  .state = c->m[i].stopped ? TR_STOPPED : c->m[i].cut ? TR_INCOMPLETE : TR_WHOLE,
					  .text = c->m[i].text, .len = (size_t)c->m[i].len };
	}
	/* the reply being generated: the last assistant entry (and the parts a note split from it) */
	bool partial = false;
	if (u->streaming && n > 0 && m[n - 1].role == TR_ASSISTANT) {
		m[n - 1].state = TR_INCOMPLETE;
		for (int i = n - 1; i >= 0 && m[i].role == TR_ASSISTANT; i--) partial |= m[i].len > 0;
	}
	const char *model = u->status.have_info && u->status.info.model_name[0] ? u->status.info.model_name
										: u->o->model_label;
	char *path;
	int k;
	if (transcript_save(arg, model, m, n, &path, &k) != LM_OK) {
		report(u, lm_errmsg());
	} else {
		char msg[sizeof u->status.message];
		if (partial)
			snprintf(msg, sizeof msg, P_("saved %d message to %s; the reply still arriving is marked incomplete",
						     "saved %d messages to %s; the reply still arriving is marked incomplete", k),
				 k, path);
		else
			snprintf(msg, sizeof msg, P_("saved %d message to %s", "saved %d messages to %s", k), k, path);
		report(u, msg);
		free(path);
	}
	free(m);
}

/* Commands typed as messages are recalled by Up in this session but not kept in the history file: a /quit
 * ending every session would be the first thing Up found in the next. */
static bool is_command(const char *t)
{
	const char *arg;
	return strcmp(t, "/quit") == 0 || strcmp(t, "/exit") == 0 || strcmp(t, "/reset") == 0 ||
	       strcmp(t, "/clear") == 0 || transcript_is_save(t, &arg);
}

/* the text just taken from the editor, into the history file; a failure is a message, never the chat's */
static void hist_record(struct chat_ui *u, const char *text)
{
	if (!u->hist.path || !u->input.ed.took_new || is_command(text)) return;
	if (histfile_append(&u->hist, text) == LM_OK) {
		u->hist_failed = false;
	} else {
		if (!u->hist_failed) report(u, lm_errmsg());
		u->hist_failed = true;
	}
}

static void submit(struct chat_ui *u)
{
	/* /save works in every state: while a reply arrives, and after the engine stopped, most of all */
	const char *arg;
	bool save = transcript_is_save(u->input.ed.buf, &arg);
	if (!save) {
		if (u->dead) { set_message(u, "%s", _("the engine stopped; F10 quits")); return; }
		if (!u->ready) { set_message(u, "%s", _("wait: the model is not ready yet")); return; }
		if (u->streaming) { set_message(u, "%s", _("wait: a reply is being generated (Ctrl-C stops it)")); return; }
		if (u->rebuilding) { set_message(u, "%s", _("wait: the KV cache is being rebuilt")); return; }
	}
	if (edit_blank(&u->input.ed)) return;
	char *text = edit_take(&u->input.ed);
	if (!text) { set_message(u, "%s", _("out of memory: the message was not sent (it is still in the input)")); return; }
	relayout(u);
	hist_record(u, text);
	if (save) {
		transcript_is_save(text, &arg);
		save_chat(u, arg);
		free(text);
		return;
	}
	if (strcmp(text, "/quit") == 0 || strcmp(text, "/exit") == 0) { u->quit = true; free(text); return; }
	if (strcmp(text, "/reset") == 0 || strcmp(text, "/clear") == 0) {
		struct cmd c = { .type = CMD_RESET };
		send_cmd(u, &c);
		free(text);
		return;
	}
	int len = (int)strlen(text);
	panel_chat_add(&u->chat, ROLE_USER, text, len);
	/* a long turn travels in several messages, each cut at a character boundary */
	int off = 0;
	do {
		struct cmd c = { .type = CMD_SUBMIT };
		int n = len - off;
		if (n > MSG_TEXT - 1) {
			n = MSG_TEXT - 1;
			while (n > 0 && ((unsigned char)text[off + n] & 0xC0) == 0x80) n--;
		}
		memcpy(c.u.submit.text, text + off, n);
		c.u.submit.len = n;
		off += n;
		c.u.submit.last = off >= len;
		send_cmd(u, &c);
	} while (off < len);
	free(text);
	panel_chat_add(&u->chat, ROLE_ASSISTANT, "", 0);
	u->chat.streaming = u->streaming = true;
	u->chat.scroll = 0;
	u->t_submit = now_s();
	u->t_first = 0;
	u->n_token_events = 0;
}

static void apply_settings(struct chat_ui *u, int action)
{
	if (action & SETA_SAMPLING) {
		struct cmd c = { .type = CMD_SET_SAMPLING };
		c.u.sampling = u->settings.sampling;
		send_cmd(u, &c);
		u->sampling = u->settings.sampling;
		note(u, ROLE_NOTE, _("sampling: temperature %.2f, top-p %.2f, top-k %d, repetition penalty %.2f"),
		     u->sampling.temperature, u->sampling.top_p, u->sampling.top_k, u->sampling.repetition_penalty);
	}
	if (action & SETA_KV) {
		struct cmd c = { .type = CMD_RECONFIG_KV };
		c.u.kv.cap = u->settings.cap;
		c.u.kv.policy = u->settings.policy;
		send_cmd(u, &c);
		u->cap_kept = u->cap;
		u->cap = u->settings.cap;
		u->rebuilding = true;
		panel_progress_reset(&u->prog, _("Rebuilding the KV cache"));
		char cs[32], k[16];
		fmt_capacity(cs, sizeof cs, &u->cap);
		kv_label(k, sizeof k, u->settings.policy, u->settings.act_dtype);
		snprintf(u->prog.stage, sizeof u->prog.stage, _("cache %s, policy %d (%s)"), cs, u->settings.policy, k);
		if (u->streaming) set_message(u, "%s", _("the KV cache will be rebuilt when the reply has finished"));
	}
}

static void want_quit(struct chat_ui *u)
{
	if (u->streaming && !u->dead) set_overlay(u, OVERLAY_CONFIRM);
	else u->quit = true;
}

static int handle_key(struct chat_ui *u, bool is_code, wint_t ch, bool alt)
{
	u->status.message[0] = 0;
	if (is_code && ch == KEY_RESIZE) return KF_RELAYOUT | KF_REDRAW;
	if (is_code && ch == KEY_MOUSE) {
		MEVENT me;
		if (getmouse(&me) == OK) {
			if (me.bstate & BUTTON4_PRESSED) panel_chat_scroll(&u->chat, 3);
#ifdef BUTTON5_PRESSED
			else if (me.bstate & BUTTON5_PRESSED) panel_chat_scroll(&u->chat, -3);
#endif
		}
		return KF_REDRAW;
	}
	if (is_code && ch == KEY_PASTE_BEGIN) { u->input.pasting = true; return KF_HANDLED; }
	if (is_code && ch == KEY_PASTE_END) { u->input.pasting = false; return KF_RELAYOUT | KF_REDRAW; }
	if (u->input.pasting) {
		/* pasted text is text: a control character in it (a form feed, a stray Ctrl-Q, Ctrl-U or Ctrl-W) ran
		 * its command, so a paste could quit and lose the input, or cut it. Printable characters, newlines and
		 * tabs go to the settings field when that dialog is open, else to the input box (also under the help
		 * or the quit question, which a pasted 'y' would have answered); the rest is dropped. */
		bool text = !is_code && (ch == '\r' || ch == '\n' || ch == '\t' || (ch >= 0x20 && ch != 0x7f));
		if (is_code && ch == KEY_ENTER) { text = true; is_code = false; ch = '\r'; }
		if (!text) return KF_HANDLED;
		if (u->lo.overlay == OVERLAY_SETTINGS) {
			if (ch < 0x20) return KF_HANDLED;
			int action;
			return panel_settings_key(&u->settings, false, ch, &action) | KF_REDRAW;
		}
		bool sub;
		return panel_input_key(&u->input, false, ch, false, &sub) | KF_REDRAW;
	}

	/* keys that work everywhere */
	if (!is_code && !alt && ch == 12) { clearok(curscr, TRUE); return KF_REDRAW; } /* Ctrl-L */
	if (!is_code && !alt && ch == 26) { ui_suspend(); return KF_RELAYOUT | KF_REDRAW; } /* Ctrl-Z */
	if ((is_code && ch == KEY_F(10)) || (!is_code && !alt && ch == 17)) { /* F10, Ctrl-Q */
		if (u->lo.overlay == OVERLAY_CONFIRM) u->quit = true;
		else want_quit(u);
		return KF_REDRAW;
	}
	if (!is_code && !alt && ch == 3) { /* Ctrl-C: stop the reply; while the model loads, stop that and quit */
		if (!u->ready && !u->dead && !u->rebuilding) {
			u->quit = true; /* nothing to lose yet; the engine stops the load at the next layer */
		} else if (u->streaming) {
			struct cmd c = { .type = CMD_CANCEL };
			send_cmd(u, &c);
			set_message(u, "%s", _("stopping the reply..."));
		} else {
			set_message(u, "%s", _("nothing to stop; F10 or Ctrl-Q quits"));
		}
		return KF_REDRAW;
	}

	switch (u->lo.overlay) {
	case OVERLAY_CONFIRM:
		if (!is_code && (ch == 'y' || ch == 'Y' || ch == '\r')) u->quit = true;
		else set_overlay(u, OVERLAY_NONE);
		return KF_REDRAW;
	case OVERLAY_HELP:
		if (is_code && (ch == KEY_DOWN || ch == KEY_NPAGE)) u->help_scroll += ch == KEY_DOWN ? 1 : 10;
		else if (is_code && (ch == KEY_UP || ch == KEY_PPAGE)) u->help_scroll -= ch == KEY_UP ? 1 : 10;
		else set_overlay(u, OVERLAY_NONE);
		return KF_REDRAW;
	case OVERLAY_SETTINGS: {
		if ((is_code && ch == KEY_F(2)) || (alt && (ch == 's' || ch == 'S'))) { set_overlay(u, OVERLAY_NONE); return KF_REDRAW; }
		int action;
		int f = panel_settings_key(&u->settings, is_code, alt ? 27 : ch, &action);
		if (action & SETA_CLOSE) {
			set_overlay(u, OVERLAY_NONE);
			apply_settings(u, action);
			sync_progress_overlay(u);
		}
		return f | KF_REDRAW;
	}
	default: break;
	}

	if ((is_code && ch == KEY_F(1)) || (alt && (ch == 'h' || ch == 'H'))) {
		u->help_scroll = 0;
		set_overlay(u, OVERLAY_HELP);
		return KF_REDRAW;
	}
	if ((is_code && ch == KEY_F(2)) || (alt && (ch == 's' || ch == 'S'))) {
		if (!u->ready || u->dead) { set_message(u, "%s", _("wait: the model is not ready yet")); return KF_REDRAW; }
		/* one rebuild at a time: the dialog opened over the rebuild's panel, and a second one applied there
		 * was queued behind the first */
		if (u->rebuilding) {
			set_message(u, "%s", u->streaming ? _("the KV cache will be rebuilt when the reply has finished")
							  : _("wait: the KV cache is being rebuilt"));
			return KF_REDRAW;
		}
		panel_settings_open(&u->settings, &u->sampling, &u->cap, u->policy,
				    u->status.have_info ? u->status.info.act_dtype : NULL);
		set_overlay(u, OVERLAY_SETTINGS);
		return KF_REDRAW;
	}
	if ((is_code && ch == KEY_F(3)) || (alt && (ch == 'm' || ch == 'M'))) {
		/* in a tiny terminal the toggle would change nothing now and, once the terminal grows, hide the panel
		 * the user asked for: say why instead */
		if (u->lay.tiny) {
			set_message(u, "%s", _("the terminal is too small for the memory panel"));
			return KF_REDRAW;
		}
		u->lo.mem_toggled = !u->lo.mem_toggled;
		relayout(u);
		if (u->lo.mem_toggled && !u->lay.wide && !rect_shown(u->lay.mem))
			set_message(u, "%s", _("the terminal is too small for the memory panel"));
		return KF_RELAYOUT | KF_REDRAW;
	}
	if ((is_code && ch == KEY_F(5)) || (alt && (ch == 'n' || ch == 'N'))) {
		if (u->streaming) { set_message(u, "%s", _("wait: a reply is being generated (Ctrl-C stops it)")); return KF_REDRAW; }
		struct cmd c = { .type = CMD_RESET };
		send_cmd(u, &c);
		return KF_REDRAW;
	}
	if (is_code && (ch == KEY_PPAGE || ch == KEY_NPAGE)) {
		int page = u->chat.page > 2 ? u->chat.page - 2 : 1;
		panel_chat_scroll(&u->chat, ch == KEY_PPAGE ? page : -page);
		return KF_REDRAW;
	}
	if (u->lo.overlay == OVERLAY_PROGRESS && !is_code && ch == 27) return KF_HANDLED; /* cannot close */
	/* Ctrl-D deletes the character under the cursor; in an empty input, where a shell would end, it did nothing
	 * at all. It does not quit (holding it down to clear a line would end the chat): it says what does. */
	if (!is_code && !alt && ch == 4 && u->input.ed.len == 0) {
		set_message(u, "%s", _("the input is empty; F10 or Ctrl-Q quits"));
		return KF_REDRAW;
	}
	bool sub;
	int f = panel_input_key(&u->input, is_code, ch, alt, &sub);
	if (sub) submit(u);
	return f | KF_REDRAW;
}

/* the reply of the last turn, for /save: stopped with Ctrl-C, or cut short (the session's end, an error) */
static void mark_reply(struct chat_ui *u, bool stopped)
{
	for (int i = u->chat.n - 1; i >= 0; i--) {
		struct chat_msg *m = &u->chat.m[i];
		if (m->role == ROLE_USER) break;
		if (m->role == ROLE_ASSISTANT && m->len > 0) {
			if (stopped) m->stopped = true;
			else m->cut = true;
			break;
		}
	}
}

/* The session is full: said once, here, with this screen's key for a new conversation (the engine sends no
 * error for it; an error and then a note said the same thing). A reply cut short at the limit is a note, as the
 * end of any reply; a message that could not be answered at all is an error, as one too long for any session. */
static void session_full(struct chat_ui *u, const struct turn_stats *t)
{
	/* what sets the length of a session: the KV cache (F2 resizes it), or --session-len below what it holds */
	const char *how = t->session_len < u->status.info.kv_capacity_tokens
				  ? _("F5 starts a new conversation; --session-len sets how long one may be.")
				  : _("F5 starts a new conversation; the KV cache's size (F2) sets how long one may be.");
	if (t->need_tokens > 0)
		/* TRANSLATORS: %s is "F5 starts a new conversation; ..." */
		note(u, ROLE_ERROR, _("The session is full: %d of %d tokens are used and this message needs %d. %s"),
		     t->context_used, t->session_len, t->need_tokens, how);
	else
		/* TRANSLATORS: %s is "F5 starts a new conversation; ..." */
		note(u, ROLE_NOTE, _("The session is full (%d of %d tokens): the reply was cut short. %s"),
		     t->context_used, t->session_len, how);
}

static void on_event(struct chat_ui *u, const struct engine_event *ev)
{
	switch (ev->type) {
	case EV_READY:
		u->ready = true;
		u->status.info = ev->u.info;
		u->status.have_info = true;
		u->policy = ev->u.info.kv_policy;
		if (ev->u.info.sampling.top_p > 0) u->sampling = ev->u.info.sampling; /* filled in by the engine */
		u->mem.kv_capacity_tokens = ev->u.info.kv_capacity_tokens;
		u->mem.kv_bytes_per_token = ev->u.info.kv_bytes_per_token;
		u->prog.active = false;
		/* the notes of the load (a CPU fallback, a sliding window, a session longer than the model's
		 * context, ...) came before this; anchored at the bottom, the first of them began above the top row
		 * of a small terminal, where nothing said there was more. They are read from the first line, with
		 * "N more lines below (PgDn)" where they do not fit; a message sent goes back to the bottom. */
		if (u->chat.n > 0) panel_chat_show_top(&u->chat);
		{
			struct cmd c = { .type = CMD_MEM_QUERY };
			send_cmd(u, &c);
		}
		break;
	case EV_TOKEN:
		if (u->t_first == 0) u->t_first = now_run_s();
		u->n_token_events++;
		if (u->chat.n == 0 || u->chat.m[u->chat.n - 1].role != ROLE_ASSISTANT)
			panel_chat_add(&u->chat, ROLE_ASSISTANT, "", 0);
		panel_chat_append(&u->chat, ev->u.token.text, ev->u.token.len);
		break;
	case EV_TURN_DONE: {
		const struct turn_stats *t = &ev->u.done;
		u->streaming = u->chat.streaming = false;
		/* a turn that produced nothing (refused, or stopped before the first token) keeps the last figures
		 * rather than showing 0.0 tok/s */
		if (t->gen_tokens > 0) {
			if (t->decode_s > 0) u->status.tok_s = t->gen_tokens / t->decode_s;
			u->status.ttft_s = t->ttft_s;
			u->status.have_stats = true;
		}
		/* "stopping the reply..." is done with, and so is the wait for it */
		if (strcmp(u->status.message, _("stopping the reply...")) == 0 ||
		    strcmp(u->status.message, _("the KV cache will be rebuilt when the reply has finished")) == 0)
			u->status.message[0] = 0;
		if (u->rebuilding) u->prog.t0 = now_s(); /* the rebuild that waited for the reply begins now */
		u->status.context_used = t->context_used;
		u->mem.context_used = t->context_used;
		/* an empty reply leaves no empty assistant entry behind */
		if (u->chat.n > 0 && u->chat.m[u->chat.n - 1].role == ROLE_ASSISTANT && u->chat.m[u->chat.n - 1].len == 0)
			panel_chat_drop_last(&u->chat);
		/* a stopped reply says so when saved (the "(stopped)" note below is not saved), as does one that the
		 * session's end cut short */
		if (t->cancelled) mark_reply(u, true);
		else if (t->hit_session_len) mark_reply(u, false);
		if (t->cancelled) note(u, ROLE_NOTE, "%s", _("(stopped)"));
		if (t->hit_session_len) session_full(u, t);
		flush_later_note(u);
		struct cmd c = { .type = CMD_MEM_QUERY };
		send_cmd(u, &c);
		break;
	}
	case EV_MEM:
		panel_mem_push(&u->mem, &ev->u.mem.mem, ev->u.mem.kv_used_bytes, ev->u.mem.context_used);
		if (ev->u.mem.context_used >= 0) u->status.context_used = ev->u.mem.context_used;
		break;
	case EV_PROGRESS:
		if (!u->prog.active) panel_progress_reset(&u->prog, u->ready ? _("Rebuilding the KV cache") : _("Loading the model"));
		panel_progress_update(&u->prog, ev->u.progress.stage, ev->u.progress.done, ev->u.progress.total,
				      ev->u.progress.extra);
		break;
	case EV_KV_REBUILT: {
		const struct engine_info *in = &ev->u.kv_rebuilt.info;
		u->rebuilding = false;
		u->prog.active = false;
		u->status.info = *in;
		u->status.have_info = true;
		u->policy = in->kv_policy;
		u->mem.kv_capacity_tokens = in->kv_capacity_tokens;
		u->mem.kv_bytes_per_token = in->kv_bytes_per_token;
		/* the figures after the rebuild; a full EV_MEM follows (the query below) */
		if (ev->u.kv_rebuilt.after.total_valid) panel_mem_push(&u->mem, &ev->u.kv_rebuilt.after, u->mem.kv_used, -1);
		if (ev->u.kv_rebuilt.reset) {
			/* the conversation could not be read into the cache (the error that follows says why): the
			 * transcript goes too, as with F5, so that the screen does not show one the model no longer has */
			panel_chat_clear(&u->chat);
			u->status.context_used = u->mem.context_used = 0;
		}
		if (ev->u.kv_rebuilt.kept) {
			/* the error said "KV cache not changed": the settings show the size in force again, not the
			 * one refused, and no "rebuilt" note contradicts the error */
			u->cap = u->cap_kept;
			struct cmd c = { .type = CMD_MEM_QUERY };
			send_cmd(u, &c);
			break;
		}
		char b0[32], b1[32], k[16];
		fmt_bytes(b0, sizeof b0, ev->u.kv_rebuilt.before.cat[MEM_KV]);
		fmt_bytes(b1, sizeof b1, ev->u.kv_rebuilt.after.cat[MEM_KV]);
		kv_label(k, sizeof k, in->kv_policy, in->act_dtype);
		note(u, ROLE_NOTE,
		     P_("KV cache rebuilt: policy %d (%s), %d token, %s (was %s)",
			"KV cache rebuilt: policy %d (%s), %d tokens, %s (was %s)", in->kv_capacity_tokens),
		     in->kv_policy, k, in->kv_capacity_tokens, b1, b0);
		struct cmd c = { .type = CMD_MEM_QUERY };
		send_cmd(u, &c);
		break;
	}
	case EV_SESSION_RESET:
		panel_chat_clear(&u->chat);
		u->streaming = false;
		u->status.context_used = u->mem.context_used = 0;
		note(u, ROLE_NOTE, "%s", _("New conversation."));
		break;
	case EV_ERROR:
		if (ev->u.error.warning) { /* nothing failed: a note, and the state stays as it is */
			note(u, ROLE_NOTE, "%s", ev->u.error.text);
			break;
		}
		if (ev->u.error.fatal && !u->ready) {
			/* the model did not load: leave the screen and say why on stderr */
			u->exit_code = 1;
			u->quit = true;
			lm_err("%s", ev->u.error.text);
			break;
		}
		if (u->streaming) mark_reply(u, false); /* what came of the reply before the error is not all of it */
		note(u, ROLE_ERROR, "%s", ev->u.error.text);
		if (ev->u.error.fatal) u->dead = true;
		u->streaming = u->chat.streaming = false;
		break;
	case EV_QUIT:
		if (!u->quit) u->dead = true;
		u->streaming = u->chat.streaming = false;
		flush_later_note(u);
		break;
	}
}

int ui_chat_run(struct engine *e, const struct ui_opts *o)
{
	struct chat_ui *u = calloc(1, sizeof *u);
	if (!u || !edit_init(&u->input.ed)) {
		free(u);
		fprintf(stderr, _("lmterm: %s\n"), _("out of memory"));
		return 1;
	}
	u->e = e;
	u->o = o;
	u->status.model_label = o->model_label;
	/* the settings dialog starts from the command line's values, else LMDeploy's defaults */
	/* until EV_READY says which sampling is in force (info.sampling), the engine's own defaults */
	u->sampling = (struct sampling){ .temperature = 0.8f, .top_p = 1.0f, .top_k = 0, .repetition_penalty = 1.0f };
	u->cap = (struct kv_capacity){ .kind = KVCAP_FRACTION, .fraction = 0.8 };
	if (o->engine) {
		u->sampling = o->engine->sampling;
		if (u->sampling.top_p == 0) u->sampling.top_p = 1.0f;
		if (u->sampling.repetition_penalty == 0) u->sampling.repetition_penalty = 1.0f;
		u->cap = o->engine->cap;
		u->policy = o->engine->kv_policy;
	}
	if (ui_term_begin(o->no_color) != LM_OK) {
		fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
		edit_free(&u->input.ed);
		free(u);
		return 1;
	}
	/* the input history of earlier sessions; without it the chat goes on, with a word in the status bar */
	if (histfile_path(&u->hist.path) != LM_OK || (u->hist.path && histfile_load(&u->hist, &u->input.ed) != LM_OK)) {
		report(u, lm_errmsg());
		u->hist_failed = true;
	}
	panel_progress_reset(&u->prog, _("Loading the model"));
	u->lo.overlay = OVERLAY_PROGRESS;
	relayout(u);
	int efd = engine_event_fd(e);
	bool need_layout = false;
	draw(u);
	while (!u->quit) {
		struct pollfd pf[2] = { { .fd = STDIN_FILENO, .events = POLLIN }, { .fd = efd, .events = POLLIN } };
		/* wake once a second: memory figures for the graph, elapsed time while loading or rebuilding */
		int r = poll(pf, 2, 1000);
		if (r < 0 && errno != EINTR) break;
		int flags = 0;
		if (ui_check_resize()) flags |= KF_RELAYOUT | KF_REDRAW;
		if (ui_sigint) { /* SIGINT from outside (raw mode keeps Ctrl-C a key): stop the reply */
			ui_sigint = 0;
			flags |= handle_key(u, false, 3, false);
		}
		if (r > 0 && (pf[1].revents & POLLIN)) {
			uint64_t v;
			ssize_t k = read(efd, &v, sizeof v);
			(void)k;
		}
		struct engine_event ev;
		int nev = 0;
		while (engine_poll(e, &ev) == 1) { on_event(u, &ev); nev++; }
		if (nev) flags |= KF_REDRAW;
		if (r > 0 && (pf[0].revents & (POLLHUP | POLLERR)) && !(pf[0].revents & POLLIN)) break; /* terminal gone */
		if (r > 0 && (pf[0].revents & POLLIN)) {
			bool is_code, alt;
			wint_t ch;
			while (!u->quit && ui_read_key(&is_code, &ch, &alt)) flags |= handle_key(u, is_code, ch, alt);
			if (bad_input) {
				bad_input = false;
				set_message(u, _("input that is not valid %s was replaced by \xef\xbf\xbd"), nl_langinfo(CODESET));
				flags |= KF_REDRAW;
			}
		}
		double t = now_s();
		if (u->ready && !u->dead && t - u->t_last_mem >= 1.0) {
			struct cmd c = { .type = CMD_MEM_QUERY };
			send_cmd(u, &c);
			u->t_last_mem = t;
		}
		if (r == 0 && (!u->ready || u->rebuilding || u->streaming)) flags |= KF_REDRAW; /* elapsed time */
		sync_progress_overlay(u);
		if (flags & KF_RELAYOUT) need_layout = true;
		if (need_layout || (flags & KF_REDRAW) || nev) {
			relayout(u);
			need_layout = false;
			draw(u);
		}
	}
	if (u->streaming && !u->dead) {
		struct cmd c = { .type = CMD_CANCEL };
		engine_send(e, &c);
	}
	for (int i = 0; i < W_N; i++)
		if (u->win[i]) delwin(u->win[i]);
	ui_term_end();
	int rc = u->exit_code;
	if (rc) fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
	panel_chat_free(&u->chat);
	edit_free(&u->input.ed);
	histfile_free(&u->hist);
	free(u);
	return rc;
}

/* ------------------------------------------------------------------ progress screen */

struct prog_shared {
	pthread_mutex_t mu;
	struct progress_view view;
	bool changed, finished;
	volatile sig_atomic_t cancel;
	int wake_fd;
	ui_work_fn work;
	void *ud;
	int rc;
	char err[1600];         /* the worker's error message (lm_err is per thread) */
	struct progress_sink sink;
};

static void prog_report(struct progress_sink *s, const char *stage, int64_t done, int64_t total, double extra)
{
	struct prog_shared *p = s->ud;
	pthread_mutex_lock(&p->mu);
	panel_progress_update(&p->view, stage, done, total, extra);
	p->changed = true;
	pthread_mutex_unlock(&p->mu);
	uint64_t one = 1;
	ssize_t k = write(p->wake_fd, &one, sizeof one);
	(void)k;
}

static bool prog_cancelled(struct progress_sink *s)
{
	struct prog_shared *p = s->ud;
	return p->cancel != 0;
}

static void *prog_worker(void *arg)
{
	struct prog_shared *p = arg;
	p->rc = p->work(p->ud, &p->sink);
	snprintf(p->err, sizeof p->err, "%s", lm_errmsg());
	pthread_mutex_lock(&p->mu);
	p->finished = true;
	pthread_mutex_unlock(&p->mu);
	uint64_t one = 1;
	ssize_t k = write(p->wake_fd, &one, sizeof one);
	(void)k;
	return NULL;
}

int ui_progress_run(const char *title, ui_work_fn work, void *ud, struct backend *be, const struct ui_opts *o)
{
	struct ui_opts dflt = { 0 };
	if (!o) o = &dflt;
	struct prog_shared *p = calloc(1, sizeof *p);
	if (!p) return LM_ERR;
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO) || ui_term_begin(o->no_color) != LM_OK) {
		/* no terminal: one line on stderr */
		free(p);
		struct progress_sink s;
		progress_stderr_init(&s);
		int rc = work(ud, &s);
		progress_stderr_finish(&s);
		return rc;
	}
	/* SIGTERM and SIGHUP stop the work as Ctrl-C does: ui_term_begin made them restore the terminal and end the
	 * process, which would leave the work's temporary output (auto_awq's DIR.tmp-*) behind; ui_term_end puts the
	 * caller's handlers back */
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_int;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	pthread_mutex_init(&p->mu, NULL);
	panel_progress_reset(&p->view, title);
	p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	p->work = work;
	p->ud = ud;
	p->sink = (struct progress_sink){ .report = prog_report, .cancelled = prog_cancelled, .ud = p };
	pthread_t th;
	if (p->wake_fd < 0 || pthread_create(&th, NULL, prog_worker, p) != 0) {
		ui_term_end();
		if (p->wake_fd >= 0) close(p->wake_fd);
		free(p);
		return lm_err(_("cannot start a worker thread"));
	}
	curs_set(0);
	struct layout_opts lo = { .mode = LAYOUT_PROGRESS };
	struct layout lay;
	WINDOW *wp = NULL, *wm = NULL, *ws = NULL;
	struct mem_view *mem = calloc(1, sizeof *mem);
	struct status_view st = { .model_label = title };
	struct progress_view view;
	double t_mem = 0;
	bool finished = false, need_layout = true;
	while (!finished) {
		double t = now_s();
		if (mem && t - t_mem >= 1.0) {
			/* the backend's figures, or without one (work on the host) what /proc says */
			struct mem_stats ms;
			memset(&ms, 0, sizeof ms);
			int rc;
			if (be && be->i->mem_stats) rc = be->i->mem_stats(be, &ms);
			else rc = mem_read_host(&ms);
			mem->cats_unknown = !(be && be->i->mem_stats);
			if (rc == LM_OK) panel_mem_push(mem, &ms, ms.cat[MEM_KV], -1);
			t_mem = t;
		}
		if (ui_check_resize()) need_layout = true;
		if (need_layout) {
			layout_compute(&lay, COLS, LINES, &lo);
			if (wp) delwin(wp);
			if (wm) delwin(wm);
			if (ws) delwin(ws);
			wp = rect_shown(lay.progress) ? newwin(lay.progress.h, lay.progress.w, lay.progress.y, lay.progress.x) : NULL;
			wm = rect_shown(lay.mem) ? newwin(lay.mem.h, lay.mem.w, lay.mem.y, lay.mem.x) : NULL;
			ws = rect_shown(lay.status) ? newwin(lay.status.h, lay.status.w, lay.status.y, lay.status.x) : NULL;
			need_layout = false;
		}
		pthread_mutex_lock(&p->mu);
		view = p->view;
		finished = p->finished;
		pthread_mutex_unlock(&p->mu);
		view.cancelling = p->cancel != 0;
		if (wp) { panel_progress_draw(wp, &view); wnoutrefresh(wp); }
		if (wm && mem) { panel_mem_draw(wm, mem); wnoutrefresh(wm); }
		if (ws) {
			/* the keys whole, in fewer words where the line is short (at 40 columns the Chinese was cut
			 * after "F3：内存面"); the title is also the progress panel's, so it goes first */
			const char *keys[] = { _("Ctrl-C: stop  F3: memory panel"), _("Ctrl-C: stop  F3: memory"),
					       _("Ctrl-C: stop") };
			const char *k = p->cancel ? _("stopping...") : keys[0];
			for (size_t i = 1; !p->cancel && i < ARRAY_SIZE(keys) && str_cols(k) > getmaxx(ws) - 2; i++)
				k = keys[i];
			if (str_cols(title) + 2 + str_cols(k) <= getmaxx(ws) - 2)
				snprintf(st.message, sizeof st.message, "%s  %s", title, k);
			else
				snprintf(st.message, sizeof st.message, "%s", k);
			panel_status_draw(ws, &st, lay.tiny);
			wnoutrefresh(ws);
		}
		doupdate();
		if (finished) break;
		struct pollfd pf[2] = { { .fd = STDIN_FILENO, .events = POLLIN }, { .fd = p->wake_fd, .events = POLLIN } };
		int r = poll(pf, 2, 500);
		if (r > 0 && (pf[1].revents & POLLIN)) {
			uint64_t v;
			ssize_t k = read(p->wake_fd, &v, sizeof v);
			(void)k;
		}
		if (ui_sigint) { ui_sigint = 0; p->cancel = 1; }
		bool is_code, alt;
		wint_t ch;
		while (ui_read_key(&is_code, &ch, &alt)) {
			if (!is_code && ch == 3) p->cancel = 1;
			else if (is_code && ch == KEY_RESIZE) need_layout = true;
			else if (!is_code && ch == 12) clearok(curscr, TRUE);
			else if ((is_code && ch == KEY_F(3)) || (alt && (ch == 'm' || ch == 'M'))) {
				lo.mem_toggled = !lo.mem_toggled;
				need_layout = true;
			}
		}
	}
	pthread_join(th, NULL);
	if (wp) delwin(wp);
	if (wm) delwin(wm);
	if (ws) delwin(ws);
	ui_term_end();
	free(mem);
	close(p->wake_fd);
	pthread_mutex_destroy(&p->mu);
	int rc = p->rc;
	/* hand the worker's message to the caller's thread */
	if (rc != LM_OK) lm_err("%s", p->err[0] ? p->err : (p->cancel ? _("interrupted") : ""));
	free(p);
	return rc;
}
