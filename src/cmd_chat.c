/* cmd_chat.c: `lmterm chat [MODEL]`: the full-screen chat when stdin and stdout are terminals, else (or with
 * --no-tui) a line REPL with LMDeploy's conventions. The REPL is a second front end of the same engine: it
 * talks to it only through the rings (engine_send / engine_poll) and sleeps in poll() on the engine's eventfd,
 * stdin and a self-pipe that the SIGINT handler writes to. */
#include "config.h"
#include "cmds.h"
#include "engine.h"
#include "i18n.h"
#include "opts.h"
#include "text.h"
#include "transcript.h"
#include "ui.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

#define PROMPT "double enter to end input >>> "

static void chat_usage(FILE *f)
{
	fprintf(f, _("Usage: lmterm chat [MODEL] [--backend auto|cuda|cpu] [--model-format hf|awq|gptq] [--quant-policy 0|4|8]\n"
		     "         [--cache-max-entry-count F|SIZE] [--cache-block-seq-len N] [--session-len N]\n"
		     "         [--chat-template NAME|FILE] [--temperature T] [--top-p P] [--top-k K] [--min-p P]\n"
		     "         [--repetition-penalty R] [--seed S] [--max-new-tokens N] [--no-tui] [--no-color]\n"
		     "         [--dtype auto|float16|bfloat16] [--rope-scaling-factor F] [--eager-mode]\n"
		     "LMDeploy's --tp 1, --device cuda, --enable-prefix-caching and --communicator are accepted.\n"
		     "Without MODEL the bundled demo model is opened. In the plain REPL an empty line sends the\n"
		     "input, 'end' starts a new session, 'exit' quits, Ctrl-C stops a reply, and /save [FILE] writes\n"
		     "the conversation as Markdown (default lmterm-chat-YYYYMMDD-HHMMSS.md).\n"));
}

/* ------------------------------------------------------------------ option parsing */

/* returns 0 ok, 2 usage error (message printed), -1 help printed */
static int parse_chat_opts(int argc, char **argv, struct engine_opts *o, bool *no_tui, bool *no_color)
{
	struct opt_iter it;
	opt_iter_init(&it, argc, argv);
	const char *model = NULL, *val;
	double d;
	int iv;
	while (opt_next(&it)) {
		const char *n = it.name;
		if (!n) {
			if (model) {
				fprintf(stderr, _("lmterm: chat: unexpected argument '%s' (one MODEL only)\n"), it.arg);
				return 2;
			}
			model = it.arg;
			continue;
		}
		if (strcmp(n, "help") == 0 || strcmp(n, "h") == 0) {
			chat_usage(stdout);
			return -1;
		}
		if (strcmp(n, "no-tui") == 0 || strcmp(n, "no-color") == 0) {
			bool b = true;
			const char *v = opt_value_optional(&it, opt_is_bool);
			if (v && opt_bool(it.arg, v, &b) != LM_OK) goto bad;
			*(strcmp(n, "no-tui") == 0 ? no_tui : no_color) = b;
			continue;
		}
		/* each option that takes a value reads it in its own branch (opt_value: "option '--seed' needs a value"),
		 * so an unknown option reaches the last branch whether or not an argument follows it */
		char optname[80];
		snprintf(optname, sizeof optname, "--%s", n);
		if (strcmp(n, "backend") == 0) {
			if (opt_value(&it, &val) || opt_backend(&val)) goto bad;
			o->backend = val;
		} else if (strcmp(n, "model-format") == 0) {
			if (opt_value(&it, &val)) goto bad;
			if (strcmp(val, "hf") == 0) o->format = FMT_HF;
			else if (strcmp(val, "awq") == 0) o->format = FMT_AWQ;
			else if (strcmp(val, "gptq") == 0) o->format = FMT_GPTQ;
			else {
				lm_err(_("--model-format: '%s' is not a model format (hf, awq or gptq)"), val);
				goto bad;
			}
		} else if (strcmp(n, "quant-policy") == 0) {
			if (opt_value(&it, &val) || opt_quant_policy(optname, val, &o->kv_policy)) goto bad;
		} else if (strcmp(n, "cache-max-entry-count") == 0) {
			if (opt_value(&it, &val) || opt_kv_capacity(optname, val, &o->cap)) goto bad;
		} else if (strcmp(n, "cache-block-seq-len") == 0) {
			if (opt_value(&it, &val) || opt_int(optname, val, 1, 1 << 20, &o->block_len)) goto bad;
		} else if (strcmp(n, "session-len") == 0) {
			if (opt_value(&it, &val) || opt_int(optname, val, 2, 1 << 30, &o->session_len)) goto bad;
		} else if (strcmp(n, "chat-template") == 0) {
			if (opt_value(&it, &o->chat_template)) goto bad;
		} else if (strcmp(n, "temperature") == 0) {
			if (opt_value(&it, &val) || opt_float(optname, val, 0, 100, &d)) goto bad;
			o->sampling.temperature = (float)d;
			o->sampling_given[SG_TEMPERATURE] = true;
		} else if (strcmp(n, "top-p") == 0) {
			if (opt_value(&it, &val) || opt_float(optname, val, 0, 1, &d)) goto bad;
			if (d <= 0) {
				lm_err(_("--top-p: must be greater than 0 (1 turns it off)"));
				goto bad;
			}
			o->sampling.top_p = (float)d;
			o->sampling_given[SG_TOP_P] = true;
		} else if (strcmp(n, "top-k") == 0) {
			if (opt_value(&it, &val) || opt_int(optname, val, 0, 1 << 30, &iv)) goto bad;
			o->sampling.top_k = iv;
			o->sampling_given[SG_TOP_K] = true;
		} else if (strcmp(n, "min-p") == 0) {
			if (opt_value(&it, &val) || opt_float(optname, val, 0, 1, &d)) goto bad;
			o->sampling.min_p = (float)d;
			o->sampling_given[SG_MIN_P] = true;
		} else if (strcmp(n, "repetition-penalty") == 0) {
			if (opt_value(&it, &val) || opt_float(optname, val, 0.01, 100, &d)) goto bad;
			o->sampling.repetition_penalty = (float)d;
			o->sampling_given[SG_REPETITION_PENALTY] = true;
		} else if (strcmp(n, "seed") == 0) {
			if (opt_value(&it, &val) || opt_u64(optname, val, &o->sampling.seed)) goto bad;
			o->sampling_given[SG_SEED] = true;
		} else if (strcmp(n, "max-new-tokens") == 0) {
			if (opt_value(&it, &val) || opt_int(optname, val, 1, 1 << 30, &iv)) goto bad;
			o->sampling.max_new_tokens = iv;
			o->sampling_given[SG_MAX_NEW_TOKENS] = true;
		} else if (strcmp(n, "threads") == 0) {
			if (opt_value(&it, &val) || opt_int(optname, val, 1, 1024, &o->n_threads)) goto bad;
		} else if ((iv = opt_engine_extra(&it, &o->x)) != 0) { /* LMDeploy's engine options: --dtype, --tp, ... */
			if (iv < 0) goto bad;
		} else {
			fprintf(stderr, _("lmterm: chat: unknown option '%s'\n"), it.arg);
			chat_usage(stderr);
			return 2;
		}
	}
	o->model_dir = model; /* NULL: the demo model, chosen by cmd_chat */
	return 0;
bad:
	fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
	return 2;
}

/* ------------------------------------------------------------------ the REPL */

static int sig_pipe[2] = { -1, -1 };
static volatile sig_atomic_t got_sigint;

static void on_sigint(int sig)
{
	(void)sig;
	got_sigint = 1;
	int saved = errno;
	ssize_t r = write(sig_pipe[1], "", 1);
	(void)r;
	errno = saved;
}

/* Ctrl-Z (the terminal sends SIGTSTP): freeze the engine's run clock, stop as the default action would, and
 * start the clock again at fg, so that a reply stopped with us is timed without the stop (tokens/s, the
 * prompt's time), as in the chat screen (ui_suspend). The handler runs with the action reset to the default and
 * SIGTSTP unblocked (SA_RESETHAND | SA_NODEFER), so raise() stops us there; in an orphaned process group it
 * does not, as the default action would not. The clock is atomics and clock_gettime(): async-signal-safe. */
static void on_sigtstp(int sig);

static void install_sigtstp(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigtstp;
	sa.sa_flags = SA_RESETHAND | SA_NODEFER | SA_RESTART; /* SA_RESTART: a reply's write is not cut short */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTSTP, &sa, NULL);
}

static void on_sigtstp(int sig)
{
	int saved = errno;
	run_clock_pause();
	raise(sig); /* returns at SIGCONT */
	install_sigtstp();
	run_clock_resume();
	errno = saved;
}

static void drain_sig_pipe(void)
{
	char buf[64];
	while (read(sig_pipe[0], buf, sizeof buf) > 0) {}
}

struct repl {
	struct engine *e;
	bool tty_err;         /* stderr is a terminal: progress lines are rewritten in place */
	char inbuf[65536];    /* stdin bytes not yet consumed */
	size_t inlen;
	bool in_eof;
	int exit_code;
	int out_errno;        /* a write to stdout failed (reader gone, disk full): the reply stops, the REPL ends */
	int in_errno;         /* reading stdin failed (it is a directory, an I/O error): not an end of input */
	struct transcript log; /* this session's messages and replies, for /save */
	bool turn_error;      /* an error came during the turn: its reply, if any, was cut short */
	char model[128];
};

enum { LINE_OK, LINE_EOF, LINE_INTR, LINE_NOMEM };

/* Control characters are dropped as the chat screen's editor drops them (ui/edit.c), the rest of the line
 * kept: a NUL ended the line's C string and the text after it with it, and an ESC or a Ctrl-A went to the
 * model. The '\r' of a "\r\n" line end goes the same way. A tab is kept, and so are bytes that are not UTF-8
 * (the tokenizer reads them as bytes). Returns the new length. */
static size_t drop_controls(char *s, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		utf8proc_int32_t c;
		utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &c);
		if (k <= 0) {
			s[o++] = s[i++];
			continue;
		}
		if (c == '\t' || text_drawable(c)) {
			memmove(s + o, s + i, k);
			o += k;
		}
		i += k;
	}
	return o;
}

/* One line of stdin (without the newline, control characters dropped) into a malloc'd *out; waits in poll()
 * so Ctrl-C is seen. */
static int read_line(struct repl *r, char **out)
{
	size_t cap = 256, len = 0;
	char *line = malloc(cap);
	if (!line) return LINE_NOMEM;
	for (;;) {
		char *nl = memchr(r->inbuf, '\n', r->inlen);
		size_t take = nl ? (size_t)(nl - r->inbuf) : r->inlen;
		if (len + take + 1 > cap) {
			while (len + take + 1 > cap) cap *= 2;
			char *p = realloc(line, cap);
			if (!p) {
				free(line);
				return LINE_NOMEM;
			}
			line = p;
		}
		memcpy(line + len, r->inbuf, take);
		len += take;
		size_t used = take + (nl ? 1 : 0);
		memmove(r->inbuf, r->inbuf + used, r->inlen - used);
		r->inlen -= used;
		if (nl || (r->in_eof && len)) {
			len = drop_controls(line, len);
			line[len] = 0;
			*out = line;
			return LINE_OK;
		}
		if (r->in_eof) {
			free(line);
			return LINE_EOF;
		}
		struct pollfd p[2] = { { .fd = 0, .events = POLLIN }, { .fd = sig_pipe[0], .events = POLLIN } };
		if (poll(p, 2, -1) < 0 && errno != EINTR) {
			r->in_errno = errno;
			free(line);
			return LINE_EOF;
		}
		if (got_sigint) {
			got_sigint = 0;
			drain_sig_pipe();
			free(line);
			return LINE_INTR;
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(0, r->inbuf + r->inlen, sizeof r->inbuf - r->inlen);
			if (n > 0) r->inlen += n;
			else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
				r->in_eof = true;
				/* EBADF: a closed stdin, which main reopened write-only, is an empty one */
				if (n < 0 && errno != EBADF) r->in_errno = errno;
			}
		}
	}
}

static void print_progress(struct repl *r, const struct engine_event *ev)
{
	if (!r->tty_err) return;
	if (ev->u.progress.total > 0)
		fprintf(stderr, "\r%s %lld/%lld  %.1f s\033[K", ev->u.progress.stage, (long long)ev->u.progress.done,
			(long long)ev->u.progress.total, ev->u.progress.elapsed_s);
	else
		fprintf(stderr, "\r%s\033[K", ev->u.progress.stage);
	fflush(stderr);
}

static void clear_progress(struct repl *r)
{
	if (r->tty_err) fprintf(stderr, "\r\033[K");
}

/* Wait for events until one of type `until` arrives (EV_READY or EV_TURN_DONE); returns false when the
 * engine stopped (fatal error) or the user interrupted while waiting for EV_READY. */
static void send_cancel(struct repl *r, bool *sent)
{
	if (*sent) return;
	struct cmd c;
	memset(&c, 0, sizeof c);
	c.type = CMD_CANCEL;
	engine_send(r->e, &c);
	*sent = true;
}

static bool pump(struct repl *r, enum ev_type until, struct turn_stats *done)
{
	bool cancel_sent = false;
	for (;;) {
		struct engine_event ev;
		while (engine_poll(r->e, &ev)) {
			switch (ev.type) {
			case EV_TOKEN:
				transcript_append(&r->log, ev.u.token.text, (size_t)ev.u.token.len);
				fwrite(ev.u.token.text, 1, ev.u.token.len, stdout);
				/* with nobody to read it (SIGPIPE ignored) the reply went on to the session's end */
				if (fflush(stdout) != 0 && !r->out_errno) {
					r->out_errno = errno ? errno : EIO;
					send_cancel(r, &cancel_sent);
				}
				break;
			case EV_PROGRESS: print_progress(r, &ev); break;
			case EV_ERROR:
				clear_progress(r);
				fflush(stdout);
				fprintf(stderr, "%slmterm: %s\n", until == EV_TURN_DONE ? "\n" : "", ev.u.error.text);
				if (until == EV_TURN_DONE && !ev.u.error.warning) r->turn_error = true;
				if (ev.u.error.fatal) {
					r->exit_code = 1;
					return false;
				}
				break;
			case EV_READY: {
				clear_progress(r);
				const struct engine_info *in = &ev.u.info;
				snprintf(r->model, sizeof r->model, "%s", in->model_name);
				char kv[64], sess[64];
				snprintf(kv, sizeof kv,
					 P_("KV cache %d token", "KV cache %d tokens", in->kv_capacity_tokens),
					 in->kv_capacity_tokens);
				snprintf(sess, sizeof sess, P_("session %d token", "session %d tokens", in->session_len),
					 in->session_len);
				/* TRANSLATORS: the fourth %s is "KV cache %d tokens", the fifth "session %d tokens" */
				fprintf(stderr,
					_("%s: %s, %s weights, %s (policy %d, %zu bytes/token), %s, template %s\n"),
					in->model_name, in->backend, in->weight_format, kv, in->kv_policy,
					in->kv_bytes_per_token, sess, in->template_name);
				if (until == EV_READY) return true;
				break;
			}
			case EV_TURN_DONE:
				if (done) *done = ev.u.done;
				if (until == EV_TURN_DONE) return true;
				break;
			case EV_SESSION_RESET:
				if (until == EV_SESSION_RESET) return true;
				break;
			case EV_QUIT: return false;
			default: break;
			}
		}
		struct pollfd p[2] = { { .fd = engine_event_fd(r->e), .events = POLLIN },
				       { .fd = sig_pipe[0], .events = POLLIN } };
		poll(p, 2, -1);
		if (p[0].revents & POLLIN) {
			uint64_t v;
			ssize_t n = read(p[0].fd, &v, sizeof v);
			(void)n;
		}
		if (got_sigint) {
			got_sigint = 0;
			drain_sig_pipe();
			if (until == EV_READY) { /* Ctrl-C while loading: quit */
				r->exit_code = 130;
				return false;
			}
			send_cancel(r, &cancel_sent);
		}
	}
}

static int send_text(struct engine *e, const char *s)
{
	size_t n = strlen(s);
	struct cmd c;
	memset(&c, 0, sizeof c);
	c.type = CMD_SUBMIT;
	do {
		/* split at UTF-8 character boundaries */
		size_t k = n < MSG_TEXT ? n : MSG_TEXT;
		if (k < n) {
			while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80) k--;
			if (k == 0) k = MSG_TEXT; /* no character starts there (not UTF-8): cut anywhere, not at 0 */
		}
		memcpy(c.u.submit.text, s, k);
		c.u.submit.len = (int)k;
		c.u.submit.last = k == n;
		if (engine_send(e, &c) != LM_OK) return LM_ERR;
		s += k;
		n -= k;
	} while (n > 0);
	return LM_OK;
}

static int repl_run(struct repl *r)
{
	if (!pump(r, EV_READY, NULL)) return r->exit_code ? r->exit_code : 1;
	for (;;) {
		/* read lines until an empty one (LMDeploy: '\n'.join(iter(input, ''))) */
		fputs(PROMPT, stdout);
		fflush(stdout);
		char *text = NULL;
		size_t tlen = 0;
		bool eof = false;
		for (;;) {
			char *line;
			int rc = read_line(r, &line);
			if (rc == LINE_INTR) { /* Ctrl-C at the prompt quits */
				free(text);
				fputc('\n', stdout);
				return 0;
			}
			if (rc == LINE_NOMEM) { /* a line longer than memory: say so rather than crash */
				free(text);
				fprintf(stderr, _("lmterm: %s\n"), _("out of memory"));
				return 1;
			}
			if (rc == LINE_EOF && r->in_errno) { /* it ended the REPL with exit 0, as at the end of input */
				free(text);
				fprintf(stderr, _("lmterm: cannot read standard input: %s\n"), strerror(r->in_errno));
				return 1;
			}
			if (rc == LINE_EOF) {
				eof = true;
				break;
			}
			if (!*line) {
				free(line);
				break;
			}
			size_t l = strlen(line);
			char *t = realloc(text, tlen + l + 2);
			if (!t) {
				free(text);
				free(line);
				fprintf(stderr, _("lmterm: %s\n"), _("out of memory"));
				return 1;
			}
			text = t;
			if (tlen) text[tlen++] = '\n';
			memcpy(text + tlen, line, l + 1);
			tlen += l;
			free(line);
		}
		if (!text) {
			if (eof) {
				fputc('\n', stdout);
				return 0;
			}
			continue; /* nothing typed */
		}
		if (strcmp(text, "exit") == 0) {
			free(text);
			return 0;
		}
		const char *arg;
		if (transcript_is_save(text, &arg)) {
			char *path;
			int k;
			if (r->log.oom) lm_err("%s", _("out of memory: the conversation was not kept, so it cannot be saved"));
			if (!r->log.oom && transcript_save(arg, r->model, r->log.m, r->log.n, &path, &k) == LM_OK) {
				fprintf(stderr, "lmterm: ");
				fprintf(stderr, P_("saved %d message to %s", "saved %d messages to %s", k), k, path);
				fputc('\n', stderr);
				free(path);
			} else {
				fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
			}
			free(text);
			if (eof) return 0;
			continue;
		}
		if (strcmp(text, "end") == 0) {
			free(text);
			struct cmd c;
			memset(&c, 0, sizeof c);
			c.type = CMD_RESET;
			if (engine_send(r->e, &c) != LM_OK || !pump(r, EV_SESSION_RESET, NULL)) return 1;
			transcript_clear(&r->log);
			fputs(_("(new session)\n"), stdout);
			if (eof) return 0;
			continue;
		}
		transcript_add(&r->log, TR_USER, text, strlen(text));
		transcript_add(&r->log, TR_ASSISTANT, "", 0); /* the reply, as it arrives */
		int rc = send_text(r->e, text);
		free(text);
		if (rc != LM_OK) {
			fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
			return 1;
		}
		struct turn_stats st;
		memset(&st, 0, sizeof st);
		r->turn_error = false;
		if (!pump(r, EV_TURN_DONE, &st)) return r->exit_code ? r->exit_code : 1;
		transcript_drop_empty(&r->log); /* a refused message or a reply stopped before its first token */
		/* a reply cut short by the session's end or by an error is saved as incomplete, not as a whole one */
		if (r->log.n > 0 && r->log.m[r->log.n - 1].role == TR_ASSISTANT)
			r->log.m[r->log.n - 1].state = st.cancelled ? TR_STOPPED
						       : st.hit_session_len || r->turn_error ? TR_INCOMPLETE : TR_WHOLE;
		if (r->out_errno) {
			fprintf(stderr, _("lmterm: cannot write to standard output: %s\n"), strerror(r->out_errno));
			return 1;
		}
		double rate = st.decode_s > 0 ? st.gen_tokens / st.decode_s : 0;
		char gen[64], prompt[96];
		snprintf(gen, sizeof gen, P_("%d token", "%d tokens", st.gen_tokens), st.gen_tokens);
		snprintf(prompt, sizeof prompt,
			 P_("prompt %d token in %.2f s", "prompt %d tokens in %.2f s", st.prompt_tokens),
			 st.prompt_tokens, st.prefill_s);
		/* TRANSLATORS: %s: "stopped, " or nothing, then "%d tokens", then "prompt %d tokens in %.2f s" */
		printf(_("\n(%s%s, %.1f tokens/s, %s, context %d)\n"), st.cancelled ? _("stopped, ") : "", gen, rate,
		       prompt, st.context_used);
		/* the engine leaves this to the front end, which knows how a new session is started here */
		if (st.hit_session_len && st.need_tokens > 0) {
			fflush(stdout);
			fprintf(stderr,
				_("lmterm: the session is full: %d of %d tokens are used and this message needs %d; type "
				  "'end' for a new session, or give a larger --session-len or --cache-max-entry-count\n"),
				st.context_used, st.session_len, st.need_tokens);
		} else if (st.hit_session_len) {
			printf(_("(the session is full, %d of %d tokens: type 'end' for a new session, or give a larger "
				 "--session-len or --cache-max-entry-count)\n"),
			       st.context_used, st.session_len);
		}
		fflush(stdout);
		if (eof) return 0;
	}
}

int cmd_chat(int argc, char **argv)
{
	struct engine_opts o;
	memset(&o, 0, sizeof o);
	o.backend = "auto";
	o.cap = (struct kv_capacity){ .kind = KVCAP_FRACTION, .fraction = 0.8 };
	o.block_len = 64;
	bool no_tui = false, no_color = getenv("NO_COLOR") && *getenv("NO_COLOR");
	int rc = parse_chat_opts(argc, argv, &o, &no_tui, &no_color);
	if (rc) return rc < 0 ? 0 : rc;
	if (!o.sampling_given[SG_SEED]) o.sampling.seed = seed_from_clock();
	const bool demo = !o.model_dir;
	if (demo) o.model_dir = demo_model_dir();
	char cfg[4200];
	path_join(cfg, sizeof cfg, o.model_dir, "config.json");
	if (!file_exists(cfg)) {
		/* with no MODEL given, the path came from the environment or the installation: say which */
		const char *env = getenv("LMTERM_DEMO_MODEL");
		if (demo && env && *env)
			fprintf(stderr, _("lmterm: LMTERM_DEMO_MODEL=%s: not a model directory (no config.json)\n"), env);
		else if (demo)
			fprintf(stderr, _("lmterm: the demo model %s is missing (no config.json): give a MODEL, or set "
					  "LMTERM_DEMO_MODEL to a model directory\n"), o.model_dir);
		else if (check_model_dir(o.model_dir) != LM_OK)
			fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
		return 1;
	}

	bool tui = !no_tui && isatty(0) && isatty(1) && ui_available(), plain_term = false;
	if (tui && ui_term_check() != LM_OK) {
		/* a terminal that cannot show the full screen (TERM=dumb, an unknown TERM) still has the REPL */
		fprintf(stderr, _("lmterm: %s; using the plain prompt (--no-tui)\n"), lm_errmsg());
		tui = false;
		plain_term = true;
	}
	struct engine *e;
	struct sigaction old_tstp;
	if (!tui) { /* the handler must be in place before Ctrl-C can arrive */
		if (pipe(sig_pipe) != 0) {
			fprintf(stderr, "lmterm: pipe: %s\n", strerror(errno));
			return 1;
		}
		fcntl(sig_pipe[0], F_SETFL, O_NONBLOCK);
		fcntl(sig_pipe[1], F_SETFL, O_NONBLOCK);
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_sigint;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: poll() returns at once */
		sigaction(SIGTSTP, NULL, &old_tstp);
		if (old_tstp.sa_handler != SIG_IGN) install_sigtstp(); /* ignored by who started us: it stays so */
	}
	if (engine_start(&e, &o) != LM_OK) {
		fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
		return 1;
	}
	if (tui) {
		const char *slash = strrchr(o.model_dir, '/');
		struct ui_opts uo = { .no_color = no_color, .model_label = slash && slash[1] ? slash + 1 : o.model_dir,
				      .engine = &o };
		rc = ui_chat_run(e, &uo);
		engine_stop(e);
		return rc;
	}
	struct repl *r = calloc(1, sizeof *r);
	r->e = e;
	r->tty_err = term_erases_line(2) && !plain_term; /* the progress line's \033[K needs a terminal that knows it */
	rc = repl_run(r);
	engine_stop(e);
	transcript_free(&r->log);
	free(r);
	signal(SIGINT, SIG_DFL);
	sigaction(SIGTSTP, &old_tstp, NULL);
	close(sig_pipe[0]);
	close(sig_pipe[1]);
	return rc;
}
