/* engine.c: the engine thread. It owns the backend, the model, the tokenizer, the chat template, the KV cache
 * and the session; the UI talks to it only through two SPSC rings (src/ring.h) and two eventfds.
 *
 * Why it cannot deadlock and never loses an event:
 *  - The UI never waits for the engine except in engine_send() when the command ring is full, and then only
 *    with a timeout. The engine drains the command ring whenever it waits for anything.
 *  - The engine never drops an event. Token text goes into a pending EV_TOKEN that is pushed as soon as the
 *    event ring has room; while the ring is full, further token text is coalesced (appended) into that
 *    pending message, so generation goes on without waiting. Only when the pending message is itself full,
 *    or a non-token event must follow it (order is kept), does the engine wait for room: in a loop of timed
 *    sleeps (poll on the command eventfd, 2 ms) that keeps draining commands, acting on CANCEL and QUIT at
 *    once and keeping every other command, in order, in a local FIFO to run afterwards. So a UI that is slow
 *    to read can always still cancel or quit, and nothing it sends or would receive is lost.
 *  - engine_stop() keeps reading (and discarding) events until the thread has finished, so the engine is
 *    never left waiting on a ring that nobody reads.
 *
 * The session: ctx[0..n_ctx) are exactly the tokens whose K/V are in the cache. A turn prefills only its new
 * tokens (the close of the previous reply, the user turn, the generation prompt); the reply's tokens enter
 * the cache as they are generated; a stop token is never fed, its text (eoa) is prefilled with the next turn. */
#include "config.h"
#include "engine.h"
#include "forward.h"
#include "i18n.h"
#include "kvmgr.h"
#include "ring.h"
#include "sampler.h"
#include "template.h"
#include "tok.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define CMD_RING_CAP 64
#define EV_RING_CAP 256
#define PREFILL_CHUNK 512
#define MiB (1024.0 * 1024.0)

struct engine {
	struct ring cmdq, evq;
	int ev_fd;                 /* engine -> UI: events are waiting */
	int cmd_fd;                /* UI -> engine: commands are waiting (wakes an idle engine) */
	pthread_t th;
	bool thread_started;
	_Atomic int finished;      /* the engine thread has pushed EV_QUIT and is about to return */
	_Atomic int stop_load;     /* engine_stop was called: a load under way stops at the next layer */
	double load_t0;

	struct engine_opts o;      /* strings below are owned copies */
	char *model_dir, *backend_name, *chat_template;

	/* ---- engine thread only ---- */
	struct backend *be;
	struct model m;
	bool model_loaded;
	struct tokenizer *tok;
	struct chat_template tmpl;
	bool tmpl_loaded;
	struct fwd f;
	bool fwd_ok;
	int prefill_chunk;
	struct kvmgr kv;
	struct kv_plan plan;
	struct kv_seq seq;
	struct sampler *smp;
	struct sampling sp;
	float *logits;             /* [vocab] */
	const void *h_last;        /* backend memory: the last position's normed hidden state (device sampling) */
	int32_t *ctx;              /* [session_len_max] tokens in the cache */
	int n_ctx;
	int session_len;           /* effective: min(requested, cache capacity) */
	int session_len_req;       /* requested (--session-len or the model's max_position_embeddings) */
	char load_warn[1024];      /* what loading ignored (generation_config.json's bad values), "" if nothing */
	int32_t stop_ids[16];
	int n_stop;
	const char *stop_text[TMPL_MAX_STOP]; /* stop words that are no single token: matched in the text */
	int n_stop_text;
	char hold[4 * MSG_TEXT];   /* reply text held back while it could be the start of a text stop word */
	int n_hold;
	bool add_bos;
	struct engine_info info;

	struct cmd *deferred;      /* FIFO of commands to run after the current work */
	int def_head, def_n, def_cap;
	bool cancel, quit;

	struct engine_event pend;  /* EV_TOKEN text not yet pushed */
	bool have_pend;

	/* Jinja mode (the model's own template): the conversation as messages, re-rendered every turn */
	struct chat_msg *msgs;
	int n_msgs, cap_msgs;
	char *reply;               /* the reply being generated, as shown */
	size_t rlen, rcap;

	char *utext;               /* the user turn being assembled from CMD_SUBMIT pieces */
	size_t ulen, ucap;
};

/* ------------------------------------------------------------------ events */

static void signal_fd(int fd)
{
	uint64_t one = 1;
	ssize_t r = write(fd, &one, sizeof one);
	(void)r; /* EAGAIN only when the counter is near 2^64: the reader is already signalled */
}

static void defer_cmd(struct engine *e, const struct cmd *c)
{
	if (e->def_n == e->def_cap) {
		int cap = e->def_cap ? e->def_cap * 2 : 16;
		struct cmd *d = malloc(sizeof *d * cap);
		if (!d) return; /* out of memory: nothing sane left to do with it */
		for (int i = 0; i < e->def_n; i++) d[i] = e->deferred[(e->def_head + i) % e->def_cap];
		free(e->deferred);
		e->deferred = d;
		e->def_cap = cap;
		e->def_head = 0;
	}
	e->deferred[(e->def_head + e->def_n++) % e->def_cap] = *c;
}

static void push_mem(struct engine *e);

/* While busy: take every waiting command. CANCEL and QUIT act now; new sampling parameters apply from the
 * next token on; a memory query is answered now if can_push (not from inside push_wait); the rest (a new
 * turn, reset, KV rebuild) wait their turn in the FIFO. */
static void drain_cmds_busy(struct engine *e, bool can_push)
{
	uint64_t v;
	ssize_t r = read(e->cmd_fd, &v, sizeof v);
	(void)r;
	struct cmd c;
	while (ring_pop(&e->cmdq, &c)) {
		if (c.type == CMD_CANCEL) {
			e->cancel = true;
		} else if (c.type == CMD_QUIT) {
			e->quit = e->cancel = true;
		} else if (c.type == CMD_SET_SAMPLING && e->smp) {
			e->sp = c.u.sampling;
			sampler_set(e->smp, &e->sp);
		} else if (c.type == CMD_MEM_QUERY && can_push && e->be) {
			push_mem(e);
		} else {
			defer_cmd(e, &c);
		}
	}
}

/* Push an event, waiting for room if need be (see the comment at the top: commands keep being drained). */
static void push_wait(struct engine *e, const struct engine_event *ev)
{
	while (!ring_push(&e->evq, ev)) {
		signal_fd(e->ev_fd); /* make sure the reader knows there is something to read */
		drain_cmds_busy(e, false);
		struct pollfd p = { .fd = e->cmd_fd, .events = POLLIN };
		poll(&p, 1, 2);
	}
	signal_fd(e->ev_fd);
}

static void flush_text(struct engine *e)
{
	if (!e->have_pend) return;
	push_wait(e, &e->pend);
	e->have_pend = false;
}

static void push_event(struct engine *e, const struct engine_event *ev)
{
	flush_text(e); /* keep the order: text before what follows it */
	push_wait(e, ev);
}

/* Token text: coalesced into the pending event, pushed when the ring has room. Text longer than what fits
 * is split between events at UTF-8 character boundaries (each event holds complete characters). */
static void emit_text(struct engine *e, const char *s, int n)
{
	if (n > 0 && e->tmpl.jinja) { /* keep the reply: the next turn renders it into the conversation */
		if (e->rlen + n + 1 > e->rcap) {
			size_t cap = MAX(e->rcap * 2, e->rlen + n + 256);
			char *p = realloc(e->reply, cap);
			if (p) {
				e->reply = p;
				e->rcap = cap;
			}
		}
		if (e->rlen + n + 1 <= e->rcap) {
			memcpy(e->reply + e->rlen, s, n);
			e->rlen += n;
			e->reply[e->rlen] = 0;
		}
	}
	while (n > 0) {
		if (e->have_pend && e->pend.u.token.len + MIN(n, 4) > MSG_TEXT - 1) flush_text(e);
		if (!e->have_pend) {
			memset(&e->pend, 0, sizeof e->pend);
			e->pend.type = EV_TOKEN;
			e->have_pend = true;
		}
		int room = MSG_TEXT - 1 - e->pend.u.token.len, k = n;
		if (k > room) {
			k = room;
			while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80) k--; /* s[k] starts the next event */
			if (k == 0) { /* not even one character fits: start a new event */
				flush_text(e);
				continue;
			}
		}
		memcpy(e->pend.u.token.text + e->pend.u.token.len, s, k);
		e->pend.u.token.len += k;
		e->pend.u.token.text[e->pend.u.token.len] = 0;
		s += k;
		n -= k;
		if (n > 0) flush_text(e);
	}
	if (e->have_pend && ring_push(&e->evq, &e->pend)) {
		e->have_pend = false;
		signal_fd(e->ev_fd);
	}
}

/* an EV_ERROR: fatal = the engine stops; warning = a notice, nothing failed (the chat screen shows a note) */
static void push_msg(struct engine *e, bool fatal, bool warning, const char *fmt, va_list ap)
{
	struct engine_event ev;
	memset(&ev, 0, sizeof ev);
	ev.type = EV_ERROR;
	ev.u.error.fatal = fatal;
	ev.u.error.warning = warning;
	vsnprintf(ev.u.error.text, sizeof ev.u.error.text, fmt, ap);
	push_event(e, &ev);
}

static void push_error(struct engine *e, bool fatal, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void push_error(struct engine *e, bool fatal, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	push_msg(e, fatal, false, fmt, ap);
	va_end(ap);
}

static void push_warning(struct engine *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void push_warning(struct engine *e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	push_msg(e, false, true, fmt, ap);
	va_end(ap);
}

static void push_progress(struct engine *e, const char *stage, int64_t done, int64_t total, double t0)
{
	struct engine_event ev;
	memset(&ev, 0, sizeof ev);
	ev.type = EV_PROGRESS;
	snprintf(ev.u.progress.stage, sizeof ev.u.progress.stage, "%s", stage);
	ev.u.progress.done = done;
	ev.u.progress.total = total;
	ev.u.progress.elapsed_s = now_s() - t0;
	ev.u.progress.extra = NAN;
	push_event(e, &ev);
}

static void get_mem(struct engine *e, struct mem_stats *ms)
{
	memset(ms, 0, sizeof *ms);
	if (e->be && e->be->i->mem_stats) e->be->i->mem_stats(e->be, ms);
}

static void push_mem(struct engine *e)
{
	struct engine_event ev;
	memset(&ev, 0, sizeof ev);
	ev.type = EV_MEM;
	get_mem(e, &ev.u.mem.mem);
	ev.u.mem.kv_used_bytes = e->kv.allocated ? kvmgr_used_bytes(&e->kv, &e->seq) : 0;
	ev.u.mem.context_used = e->n_ctx;
	push_event(e, &ev);
}

/* ------------------------------------------------------------------ loading */

static bool load_progress(void *ud, int done, int total)
{
	struct engine *e = ud;
	push_progress(e, _("loading weights"), done, total, e->load_t0);
	return !atomic_load(&e->stop_load); /* engine_stop: the chat quit while loading */
}

/* tokenizer_config.json's add_bos_token (absent: true when the tokenizer has a BOS) */
static bool read_add_bos(const char *dir, bool dflt)
{
	char path[4200], *buf;
	size_t len;
	path_join(path, sizeof path, dir, "tokenizer_config.json");
	if (!file_exists(path) || read_file(path, &buf, &len) != LM_OK) return dflt;
	cJSON *o = cJSON_ParseWithLength(buf, len);
	free(buf);
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "add_bos_token");
	bool r = cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
	cJSON_Delete(o);
	return r;
}

static void add_stop(struct engine *e, int id)
{
	if (id < 0) return;
	for (int i = 0; i < e->n_stop; i++)
		if (e->stop_ids[i] == id) return;
	if (e->n_stop < (int)ARRAY_SIZE(e->stop_ids)) e->stop_ids[e->n_stop++] = id;
}

static bool is_stop(const struct engine *e, int id)
{
	for (int i = 0; i < e->n_stop; i++)
		if (e->stop_ids[i] == id) return true;
	return false;
}

static void fill_info(struct engine *e)
{
	struct engine_info *in = &e->info;
	const struct model_config *c = &e->m.cfg;
	const char *slash = strrchr(e->model_dir, '/');
	const char *name = slash && slash[1] ? slash + 1 : e->model_dir;
	snprintf(in->model_name, sizeof in->model_name, "%s", name);
	snprintf(in->backend, sizeof in->backend, "%s", e->be->i->name);
	if (c->quant_bits) snprintf(in->weight_format, sizeof in->weight_format, "%s w%dg%d",
				    c->quant == QUANT_GPTQ ? "gptq" : "awq", c->quant_bits, c->group_size);
	else snprintf(in->weight_format, sizeof in->weight_format, "%s", c->dtype == DT_BF16 ? "bf16" :
		      c->dtype == DT_F16 ? "fp16" : "fp32");
	snprintf(in->act_dtype, sizeof in->act_dtype, "%s", dtype_name(e->be->act_dt));
	in->kv_policy = e->plan.policy;
	in->session_len = e->session_len;
	in->kv_capacity_tokens = e->plan.capacity_tokens;
	in->kv_bytes_per_token = e->kv.kv.bytes_per_token ? e->kv.kv.bytes_per_token : e->plan.bytes_per_token;
	in->n_layers = c->n_layers;
	snprintf(in->template_name, sizeof in->template_name, "%.*s", (int)sizeof in->template_name - 1, e->tmpl.name);
	in->sampling = e->sp;
}

/* Plan and allocate the cache; the session length is what fits. Warns (non-fatal) when it is cut. */
static int setup_kv(struct engine *e, const struct kv_capacity *cap, int policy)
{
	if (kvmgr_plan(e->be, &e->m.cfg, cap, policy, e->o.block_len, e->session_len_req, &e->plan) != LM_OK)
		return LM_ERR;
	if (kvmgr_alloc(&e->kv, e->be, &e->m.cfg, &e->plan) != LM_OK) return LM_ERR;
	e->session_len = MIN(e->session_len_req, e->plan.capacity_tokens);
	return LM_OK;
}

static void warn_session_fit(struct engine *e)
{
	if (e->plan.capacity_tokens >= e->session_len_req) return;
	const double need = (double)e->session_len_req * e->plan.bytes_per_token / MiB;
	if (e->o.session_len > 0)
		push_warning(e,
			     P_("--session-len %d does not fit: the KV cache holds %d token (%.1f MiB at %zu bytes per "
				"token); %d tokens would need %.1f MiB. Sessions are limited to %d token.",
				"--session-len %d does not fit: the KV cache holds %d tokens (%.1f MiB at %zu bytes per "
				"token); %d tokens would need %.1f MiB. Sessions are limited to %d tokens.",
				e->plan.capacity_tokens),
			     e->session_len_req, e->plan.capacity_tokens, e->plan.bytes / MiB, e->plan.bytes_per_token,
			     e->session_len_req, need, e->session_len);
	else /* the length was the model's context, not something the user asked for */
		push_warning(e,
			     P_("sessions are limited to %d token: the KV cache holds that many (%.1f MiB at %zu bytes "
				"per token); the model's context of %d tokens would need %.1f MiB "
				"(--cache-max-entry-count sets the cache size).",
				"sessions are limited to %d tokens: the KV cache holds that many (%.1f MiB at %zu bytes "
				"per token); the model's context of %d tokens would need %.1f MiB "
				"(--cache-max-entry-count sets the cache size).",
				e->session_len),
			     e->session_len, e->plan.bytes / MiB, e->plan.bytes_per_token, e->session_len_req, need);
}

/* Notes from loading, shown once before EV_READY: a session longer than the model was trained for (past
 * max_position_embeddings the replies of a model without dynamic RoPE scaling degrade; LMDeploy lets it
 * run, so this is a note, not an error), a session longer than Mistral's or Phi-3's sliding window (full attention
 * here), and generation_config.json's values that were ignored. */
static void warn_load(struct engine *e)
{
	const struct model_config *c = &e->m.cfg;
	if (e->o.session_len > c->max_pos && c->rope.type != ROPE_DYNAMIC)
		push_warning(e,
			     _("--session-len %d is longer than the model's context of %d tokens "
			       "(max_position_embeddings in config.json); replies past %d tokens may degrade."),
			     e->o.session_len, c->max_pos, c->max_pos);
	if (c->sliding_window > 0 && e->session_len > c->sliding_window)
		push_warning(e,
			     _("this model attends to its last %d tokens only (sliding_window in config.json), which "
			       "lmterm does not do: past %d tokens of conversation, its replies differ from transformers'."),
			     c->sliding_window, c->sliding_window);
	if (e->load_warn[0]) push_warning(e, "%s", e->load_warn);
	if (c->wrapper[0])
		push_warning(e, _("%s is a vision-language model: lmterm runs its language model, so the chat is text "
				  "only (images are not supported)."),
			     c->wrapper);
}

static int engine_load(struct engine *e)
{
	e->load_t0 = now_s();
	struct model_config cfg;
	char path[4200];
	path_join(path, sizeof path, e->model_dir, "config.json");
	if (config_load(&cfg, path) != LM_OK) return LM_ERR;
	if (backend_create(&e->be, e->backend_name, e->o.x.dtype ? (enum dtype)e->o.x.dtype : cfg.dtype) != LM_OK)
		return LM_ERR;
	if (e->o.n_threads > 0) e->be->n_threads = e->o.n_threads;
	if (*backend_fallback_note()) push_warning(e, "%s", backend_fallback_note()); /* a GPU it cannot use */
	push_progress(e, _("loading weights"), 0, cfg.n_layers, e->load_t0);
	if (model_load(&e->m, e->model_dir, e->be, e->o.format, load_progress, e) != LM_OK) return LM_ERR;
	e->model_loaded = true;
	if (e->o.x.rope_scaling_factor > 0) config_rope_dynamic(&e->m.cfg, e->o.x.rope_scaling_factor);
	const struct model_config *c = &e->m.cfg;
	push_progress(e, _("loading tokenizer"), 0, 1, e->load_t0);
	if (tok_load_dir(&e->tok, e->model_dir) != LM_OK) return LM_ERR;
	if (tmpl_choose(&e->tmpl, e->chat_template, e->model_dir, c->model_type) != LM_OK) return LM_ERR;
	e->tmpl_loaded = true;
	if (e->tmpl.jinja_error) /* not fatal: the built-in guessed from it still chats, perhaps not as trained */
		push_error(e, false, _("the model's chat_template cannot be used (%s); using the built-in template %s"),
			   e->tmpl.jinja_error, e->tmpl.name);

	/* BOS at the start of a conversation unless the template writes its own */
	e->add_bos = !e->tmpl.prefix[0] && tok_bos_id(e->tok) >= 0 && read_add_bos(e->model_dir, true);
	for (int i = 0; i < c->n_eos; i++) add_stop(e, c->eos_ids[i]);
	add_stop(e, tok_eos_id(e->tok));
	for (int i = 0; i < e->tmpl.n_stop; i++) {
		int id = tok_piece_id(e->tok, e->tmpl.stop_words[i]);
		if (id >= 0) add_stop(e, id);
		else if (e->tmpl.stop_words[i][0] && strlen(e->tmpl.stop_words[i]) < sizeof e->hold / 2)
			e->stop_text[e->n_stop_text++] = e->tmpl.stop_words[i];
	}

	e->session_len_req = e->o.session_len > 0 ? e->o.session_len : (c->max_pos > 0 ? c->max_pos : 4096);
	e->prefill_chunk = MIN(PREFILL_CHUNK, e->session_len_req);
	if (fwd_init(&e->f, &e->m, e->prefill_chunk) != LM_OK) return LM_ERR;
	e->fwd_ok = true;
	e->f.eager = e->o.x.eager;
	e->logits = malloc(sizeof *e->logits * c->vocab);
	e->ctx = malloc(sizeof *e->ctx * e->session_len_req);
	if (!e->logits || !e->ctx) return lm_err(_("out of memory"));

	/* the KV cache comes last: a fraction is of what is free after weights and workspace */
	if (setup_kv(e, &e->o.cap, e->o.kv_policy) != LM_OK) return LM_ERR;

	/* sampling: built-in defaults, then generation_config.json, then what the command line gave */
	struct sampling sp = { .temperature = 0.8f, .top_p = 1.0f, .top_k = 0, .min_p = 0, .repetition_penalty = 1.0f,
			       .seed = e->o.sampling.seed, .max_new_tokens = 0 };
	if (sampling_from_generation_config(&sp, e->model_dir, e->load_warn, sizeof e->load_warn) != LM_OK)
		return LM_ERR;
	const struct sampling *g = &e->o.sampling;
	const bool *given = e->o.sampling_given;
	if (given[SG_TEMPERATURE]) sp.temperature = g->temperature;
	if (given[SG_TOP_P]) sp.top_p = g->top_p;
	if (given[SG_TOP_K]) sp.top_k = g->top_k;
	if (given[SG_MIN_P]) sp.min_p = g->min_p;
	if (given[SG_REPETITION_PENALTY]) sp.repetition_penalty = g->repetition_penalty;
	if (given[SG_MAX_NEW_TOKENS]) sp.max_new_tokens = g->max_new_tokens;
	sp.seed = g->seed;
	e->sp = sp;
	if (sampler_init(&e->smp, c->vocab, &sp) != LM_OK) return LM_ERR;
	fill_info(e);
	return LM_OK;
}

static void engine_unload(struct engine *e)
{
	kvmgr_seq_free(&e->kv, &e->seq);
	kvmgr_free(&e->kv);
	if (e->fwd_ok) fwd_free(&e->f);
	e->fwd_ok = false;
	if (e->model_loaded) model_free(&e->m);
	e->model_loaded = false;
	if (e->tok) tok_free(e->tok);
	e->tok = NULL;
	if (e->tmpl_loaded) tmpl_free(&e->tmpl);
	e->tmpl_loaded = false;
	sampler_free(e->smp);
	e->smp = NULL;
	backend_destroy(e->be);
	e->be = NULL;
	free(e->logits);
	free(e->ctx);
	e->logits = NULL;
	e->ctx = NULL;
}

/* ------------------------------------------------------------------ encoding a turn */

/* Template special tokens in s[off, off+len): "<...>" spans that are pieces of the vocabulary. Calls fn for
 * each text run (special = -1) and each special (its id). */
static int split_specials(const struct tokenizer *tok, const char *s, size_t off, size_t len,
			  int (*fn)(void *ud, const char *s, size_t n, int special), void *ud)
{
	size_t i = off, run = off, end = off + len;
	while (i < end) {
		if (s[i] == '<') {
			size_t j = i + 1;
			while (j < end && j - i < 64 && s[j] != '>' && s[j] != '<' && s[j] != ' ' && s[j] != '\n') j++;
			if (j < end && s[j] == '>') {
				char piece[72];
				memcpy(piece, s + i, j + 1 - i);
				piece[j + 1 - i] = 0;
				int id = tok_piece_id(tok, piece);
				if (id >= 0) {
					if (i > run && fn(ud, s + run, i - run, -1) != LM_OK) return LM_ERR;
					if (fn(ud, piece, j + 1 - i, id) != LM_OK) return LM_ERR;
					i = run = j + 1;
					continue;
				}
			}
		}
		i++;
	}
	if (end > run) return fn(ud, s + run, end - run, -1);
	return LM_OK;
}

struct idbuf {
	int32_t *ids;
	int n, cap;
	const struct tokenizer *tok;
	char *acc;               /* text waiting to be encoded (template text and the user's, together) */
	size_t acc_len, acc_cap;
};

static int idbuf_add(struct idbuf *b, const int32_t *ids, int n)
{
	if (b->n + n > b->cap) {
		int cap = MAX(b->cap * 2, b->n + n + 64);
		int32_t *p = realloc(b->ids, sizeof *p * cap);
		if (!p) return lm_err(_("out of memory"));
		b->ids = p;
		b->cap = cap;
	}
	memcpy(b->ids + b->n, ids, sizeof *ids * n);
	b->n += n;
	return LM_OK;
}

static int first_special(const struct tokenizer *tok, const int32_t *ids, int n)
{
	for (int i = 0; i < n; i++)
		if (tok_is_special(tok, ids[i])) return i;
	return -1;
}

/* Encode text as plain text. Should the tokenizer still produce a special token (sentencepiece matches its
 * user-defined symbols whatever it is asked), the text is cut inside that token's spelling and the parts are
 * encoded apart, so no user text can become a control token. */
static int encode_plain(struct idbuf *b, const char *s, size_t n)
{
	if (n == 0) return LM_OK;
	int32_t *ids;
	int m;
	if (tok_encode(b->tok, s, n, false, &ids, &m) != LM_OK) return LM_ERR;
	int k = first_special(b->tok, ids, m);
	if (k >= 0 && n > 1) {
		const char *piece = tok_piece(b->tok, ids[k]);
		const char *at = piece && *piece ? memmem(s, n, piece, strlen(piece)) : NULL;
		if (at) {
			free(ids);
			size_t cut = (size_t)(at - s) + 1;
			int rc = encode_plain(b, s, cut);
			return rc ? rc : encode_plain(b, s + cut, n - cut);
		}
	}
	int rc = idbuf_add(b, ids, m);
	free(ids);
	return rc;
}

static int acc_flush(struct idbuf *b)
{
	int rc = encode_plain(b, b->acc, b->acc_len);
	b->acc_len = 0;
	return rc;
}

static int acc_put(struct idbuf *b, const char *s, size_t n)
{
	if (b->acc_len + n > b->acc_cap) {
		size_t cap = MAX(b->acc_cap * 2, b->acc_len + n + 256);
		char *p = realloc(b->acc, cap);
		if (!p) return lm_err(_("out of memory"));
		b->acc = p;
		b->acc_cap = cap;
	}
	memcpy(b->acc + b->acc_len, s, n);
	b->acc_len += n;
	return LM_OK;
}

/* split_specials callback: a special token is its id; text waits to be encoded with what follows it */
static int seg_put(void *ud, const char *s, size_t n, int special)
{
	struct idbuf *b = ud;
	if (special < 0) return acc_put(b, s, n);
	int32_t id = special;
	int rc = acc_flush(b);
	return rc ? rc : idbuf_add(b, &id, 1);
}

/* split_specials callback: only collect the specials' ids */
static int seg_count(void *ud, const char *s, size_t n, int special)
{
	struct idbuf *b = ud;
	int32_t id = special;
	return special >= 0 ? idbuf_add(b, &id, 1) : LM_OK;
}

/* Walk a rendered turn: template text through split_specials (fn), the user's text as plain text. */
static int walk_turn(const struct tokenizer *tok, const struct tmpl_text *tt,
		     int (*fn)(void *ud, const char *s, size_t n, int special), struct idbuf *b, bool user_text)
{
	size_t pos = 0;
	for (int u = 0; u <= tt->n_user; u++) {
		size_t end = u < tt->n_user ? tt->user_off[u] : tt->len;
		if (end > pos && split_specials(tok, tt->s, pos, end - pos, fn, b) != LM_OK) return LM_ERR;
		if (u == tt->n_user) break;
		if (user_text && acc_put(b, tt->s + tt->user_off[u], tt->user_len[u]) != LM_OK) return LM_ERR;
		pos = tt->user_off[u] + tt->user_len[u];
	}
	return user_text ? acc_flush(b) : LM_OK;
}

static bool same_ids(const int32_t *a, int na, const int32_t *b, int nb)
{
	return na == nb && (na == 0 || memcmp(a, b, sizeof *a * na) == 0);
}

/* The ids of one turn. The template's special tokens must become their ids and the user's text must not be
 * able to produce one. Preferred: encode the whole turn with special matching on, exactly as the model saw
 * its training text (no spurious word-start marks after special tokens), but only when the user's text holds
 * nothing a tokenizer would match as special (it encodes the same either way, with no special id) and every
 * template special came out as its id, in order. Otherwise: the template's specials as ids, the text between
 * them (the user's included) encoded as plain text. */
static int encode_text(struct engine *e, bool first, bool add_bos, struct tmpl_text *ttp, int32_t **out, int *n_out)
{
	struct tmpl_text tt = *ttp;
	struct idbuf b = { .tok = e->tok };
	int rc = LM_OK;
	if (add_bos) {
		int32_t bos = tok_bos_id(e->tok);
		rc = idbuf_add(&b, &bos, 1);
	}
	bool safe = true;
	for (int u = 0; u < tt.n_user && safe && rc == LM_OK; u++) {
		int32_t *a = NULL, *c = NULL;
		int na = 0, nc = 0;
		if (tok_encode(e->tok, tt.s + tt.user_off[u], tt.user_len[u], true, &a, &na) != LM_OK ||
		    tok_encode(e->tok, tt.s + tt.user_off[u], tt.user_len[u], false, &c, &nc) != LM_OK)
			rc = LM_ERR;
		else
			safe = same_ids(a, na, c, nc) && first_special(e->tok, c, nc) < 0;
		free(a);
		free(c);
	}
	bool done = false;
	if (safe && rc == LM_OK) {
		struct idbuf sp = { .tok = e->tok };
		rc = walk_turn(e->tok, &tt, seg_count, &sp, false);
		int32_t *w;
		int nw;
		if (rc == LM_OK && tok_encode(e->tok, tt.s, tt.len, true, &w, &nw) == LM_OK) {
			int skip = 0;
			/* a word-start mark the tokenizer put before a leading special token mid-conversation */
			if (!first && sp.n > 0 && nw > 1 && w[0] != sp.ids[0] && w[1] == sp.ids[0] &&
			    strncmp(tt.s, tok_piece(e->tok, sp.ids[0]), strlen(tok_piece(e->tok, sp.ids[0]))) == 0)
				skip = 1;
			int k = 0, n_sp = 0; /* the template's specials appear, in order, and no others */
			for (int i = skip; i < nw; i++) {
				if (k < sp.n && w[i] == sp.ids[k]) k++;
				if (tok_is_special(e->tok, w[i])) n_sp++;
			}
			if (k == sp.n && n_sp == sp.n) {
				rc = idbuf_add(&b, w + skip, nw - skip);
				done = true;
			}
			free(w);
		} else if (rc == LM_OK) {
			rc = LM_ERR;
		}
		free(sp.ids);
	}
	if (!done && rc == LM_OK) rc = walk_turn(e->tok, &tt, seg_put, &b, true);
	free(b.acc);
	if (rc != LM_OK) {
		free(b.ids);
		return LM_ERR;
	}
	*out = b.ids;
	*n_out = b.n;
	return LM_OK;
}

static int encode_turn(struct engine *e, bool first, const char *text, int32_t **out, int *n_out)
{
	struct tmpl_text tt;
	if (tmpl_turn(&e->tmpl, first, NULL, text, &tt) != LM_OK) return LM_ERR;
	int rc = encode_text(e, first, first && e->add_bos, &tt, out, n_out);
	tmpl_text_free(&tt);
	return rc;
}

/* ------------------------------------------------------------------ Jinja mode: the conversation */

static int add_msg(struct engine *e, const char *role, const char *text)
{
	if (e->n_msgs == e->cap_msgs) {
		int cap = e->cap_msgs ? e->cap_msgs * 2 : 16;
		struct chat_msg *m = realloc(e->msgs, sizeof *m * cap);
		if (!m) return lm_err(_("out of memory"));
		e->msgs = m;
		e->cap_msgs = cap;
	}
	char *t = strdup(text);
	if (!t) return lm_err(_("out of memory"));
	e->msgs[e->n_msgs++] = (struct chat_msg){ role, t };
	return LM_OK;
}

static void pop_msgs(struct engine *e, int keep)
{
	while (e->n_msgs > keep) free((char *)e->msgs[--e->n_msgs].content);
}

/* The whole conversation (with the new user turn) rendered by the model's template and encoded; *keep gets
 * how many tokens of the cache still hold (the common prefix with what is there). */
static int encode_conversation(struct engine *e, int32_t **out, int *n_out, int *keep)
{
	struct tmpl_text tt;
	if (tmpl_render_jinja(&e->tmpl, e->msgs, e->n_msgs, true, &tt) != LM_OK) return LM_ERR;
	const char *bt = e->tmpl.bos_text;
	bool bos = e->add_bos && !(bt && *bt && strncmp(tt.s, bt, strlen(bt)) == 0);
	int rc = encode_text(e, true, bos, &tt, out, n_out);
	tmpl_text_free(&tt);
	if (rc != LM_OK) return rc;
	int p = 0;
	while (p < e->n_ctx && p < *n_out && e->ctx[p] == (*out)[p]) p++;
	if (p == *n_out) p--; /* the last token is fed again for its logits */
	*keep = p < 0 ? 0 : p;
	return LM_OK;
}

/* ------------------------------------------------------------------ running */

/* Feed ids[0..n) at the end of the session. want_logits: logits of the last position into e->logits
 * (or, with argmax, just the greedy token). Checks for CANCEL between chunks. */
static int feed_ex(struct engine *e, const int32_t *ids, int n, bool want_logits, int32_t *argmax, bool on_dev,
		   bool *cancelled)
{
	/* LongRoPE's switch between its factors: what the cache holds is fed again from position 0 (its ids are
	 * e->ctx), rotated as the new tokens are */
	const int again = fwd_rope_refeed(&e->f, e->n_ctx, n);
	e->f.rope_len = e->n_ctx + n; /* the RoPE of the whole sequence, whatever the chunks */
	if (fwd_feed_again(&e->f, &e->kv.kv, e->ctx, again, e->prefill_chunk, e->seq.blocks, e->seq.n_blocks)) {
		e->f.rope_len = 0;
		return LM_ERR;
	}
	int rc = LM_OK;
	for (int i = 0; i < n && rc == LM_OK;) {
		int c = MIN(e->prefill_chunk, n - i);
		bool last = i + c == n;
		int nl = last && want_logits ? (argmax ? -1 : on_dev ? -2 : 1) : 0;
		if (kvmgr_seq_fit(&e->kv, &e->seq, e->n_ctx + c) != LM_OK ||
		    forward(&e->f, &e->kv.kv, ids + i, c, e->n_ctx, e->seq.blocks, e->seq.n_blocks, nl, e->logits,
			    argmax) != LM_OK) {
			rc = LM_ERR;
			break;
		}
		if (nl == -2) /* the last position's normed hidden state, for the device sampler */
			e->h_last = (const char *)e->f.h + (size_t)(c - 1) * e->m.cfg.dim * e->be->act_size;
		memcpy(e->ctx + e->n_ctx, ids + i, sizeof *ids * c);
		e->n_ctx += c;
		i += c;
		if (cancelled && !last) {
			drain_cmds_busy(e, true);
			if (e->cancel) {
				*cancelled = true;
				break;
			}
		}
	}
	e->f.rope_len = 0;
	return rc;
}

static bool greedy_fast(const struct engine *e)
{
	return e->sp.temperature <= 0 && (e->sp.repetition_penalty == 1.0f || e->sp.repetition_penalty <= 0);
}

static int feed(struct engine *e, const int32_t *ids, int n, bool want_logits, int32_t *argmax, bool *cancelled)
{
	return feed_ex(e, ids, n, want_logits, argmax, false, cancelled);
}

/* Greedy decoding one step ahead of the host: fwd_greedy_ahead on the session's cache, with the blocks for id's
 * position (and with then the next one) taken first. On an error e->n_ctx stays, as feed_ex's does; what is left
 * started is for drop_ahead. */
static int feed_ahead(struct engine *e, int32_t id, bool then, bool *ahead, int32_t *next)
{
	const int pos = e->n_ctx;
	if (!*ahead && kvmgr_seq_fit(&e->kv, &e->seq, pos + 1) != LM_OK) return LM_ERR;
	/* no block for the next position: that token goes one step at a time, and fails there, as it did */
	then = then && kvmgr_seq_fit(&e->kv, &e->seq, pos + 2) == LM_OK;
	if (fwd_greedy_ahead(&e->f, &e->kv.kv, id, pos, then, e->seq.blocks, e->seq.n_blocks, ahead, next) != LM_OK)
		return LM_ERR;
	e->ctx[pos] = id;
	e->n_ctx = pos + 1;
	return LM_OK;
}

/* The end of a reply: takes and drops the greedy ids still started, those of a step after the last token
 * that was fed for nothing (that token a stop id, or a text stop word, a cancel or an error came first). The
 * cache beyond e->n_ctx is overwritten by the next turn; the block taken for it is given back. */
static int drop_ahead(struct engine *e)
{
	if (e->f.n_pend == 0) return LM_OK;
	int rc = fwd_drop(&e->f);
	kvmgr_seq_trim(&e->kv, &e->seq, e->n_ctx);
	return rc;
}

/* The next token from the last position fed: the greedy token computed with it, or sampled on the device
 * (the logits stayed there), or by the host sampler from e->logits. */
static int next_token(struct engine *e, bool greedy, bool on_dev, int32_t next, int32_t *id)
{
	if (greedy) {
		*id = next;
		return LM_OK;
	}
	if (on_dev) return sampler_sample_device(e->smp, e->be, e->h_last, &e->m.lm_head, e->ctx, e->n_ctx, id);
	*id = sampler_sample(e->smp, e->logits, e->ctx, e->n_ctx);
	return LM_OK;
}

/* Reply text, checked against the text stop words: text that might be the start of one is held back until
 * it is known not to be; returns true when a stop word is complete (the text before it has been emitted). */
static bool reply_text(struct engine *e, const char *s, int n)
{
	if (!e->n_stop_text) {
		emit_text(e, s, n);
		return false;
	}
	if (n > (int)sizeof e->hold - e->n_hold) { /* cannot happen with the sizes above; keep it safe */
		emit_text(e, e->hold, e->n_hold);
		e->n_hold = 0;
	}
	memcpy(e->hold + e->n_hold, s, n);
	e->n_hold += n;
	for (int k = 0; k < e->n_stop_text; k++) {
		const char *at = memmem(e->hold, e->n_hold, e->stop_text[k], strlen(e->stop_text[k]));
		if (at) {
			emit_text(e, e->hold, (int)(at - e->hold));
			e->n_hold = 0;
			return true;
		}
	}
	/* keep the longest tail that is a proper prefix of a stop word; emit the rest */
	int keep = 0;
	for (int k = 0; k < e->n_stop_text; k++) {
		int L = (int)strlen(e->stop_text[k]);
		for (int t = MIN(L - 1, e->n_hold); t > keep; t--)
			if (memcmp(e->hold + e->n_hold - t, e->stop_text[k], t) == 0) {
				keep = t;
				break;
			}
	}
	emit_text(e, e->hold, e->n_hold - keep);
	memmove(e->hold, e->hold + e->n_hold - keep, keep);
	e->n_hold = keep;
	return false;
}

static void turn_done(struct engine *e, struct turn_stats *st)
{
	struct engine_event ev;
	memset(&ev, 0, sizeof ev);
	ev.type = EV_TURN_DONE;
	st->context_used = e->n_ctx;
	st->session_len = e->session_len;
	ev.u.done = *st;
	push_event(e, &ev);
}

static void run_turn(struct engine *e, const char *text)
{
	struct turn_stats st;
	memset(&st, 0, sizeof st);
	e->cancel = false;
	e->n_hold = 0;
	/* the turn's times on the clock that leaves out a stop (Ctrl-Z): tokens/s is the speed of the generation */
	double t0 = now_run_s();
	int32_t *ids;
	int n;
	bool first = e->n_ctx == 0;
	int n_msgs0 = e->n_msgs, keep = e->n_ctx;
	e->rlen = 0;
	if (e->reply) e->reply[0] = 0; /* a reply with no text is an empty message, not the one before */
	if (e->tmpl.jinja) {
		int rc = add_msg(e, "user", text);
		if (rc == LM_OK) rc = encode_conversation(e, &ids, &n, &keep);
		if (rc != LM_OK) {
			push_error(e, false, "%s", lm_errmsg());
			pop_msgs(e, n_msgs0);
			turn_done(e, &st);
			return;
		}
		/* prefill from where the tokens part from the cache */
		memmove(ids, ids + keep, sizeof *ids * (n - keep));
		n -= keep;
	} else if (encode_turn(e, first, text, &ids, &n) != LM_OK) {
		push_error(e, false, "%s", lm_errmsg());
		turn_done(e, &st);
		return;
	}
	if (keep < e->n_ctx) { /* Jinja mode: the cache beyond the common prefix is rewritten */
		e->n_ctx = keep;
		kvmgr_seq_trim(&e->kv, &e->seq, e->n_ctx);
	}
	if (e->n_ctx + n + 1 > e->session_len) { /* room for the turn and at least one token of reply */
		if (n + 1 > e->session_len) {
			/* not even an empty session holds it: a new session would not help, so do not suggest one */
			push_error(e, false,
				   _("the message is too long: it needs %d tokens and the session holds %d. Shorten it, "
				     "or give a larger --session-len or --cache-max-entry-count."),
				   n + 1, e->session_len);
		} else {
			st.hit_session_len = true; /* the front end says so, with its key for a new session */
			st.need_tokens = n + 1;
		}
		free(ids);
		pop_msgs(e, n_msgs0);
		turn_done(e, &st);
		return;
	}
	int start = e->n_ctx;
	bool greedy = greedy_fast(e), cancelled = false;
	bool on_dev = !greedy && sampler_on_device(e->be); /* sample where the logits are */
	int32_t next = -1;
	if (feed_ex(e, ids, n, true, greedy ? &next : NULL, on_dev, &cancelled) != LM_OK) {
		push_error(e, false, _("prefill failed: %s"), lm_errmsg());
		e->n_ctx = start; /* the cache beyond start is overwritten by the next turn */
		kvmgr_seq_trim(&e->kv, &e->seq, e->n_ctx);
		free(ids);
		pop_msgs(e, n_msgs0);
		turn_done(e, &st);
		return;
	}
	free(ids);
	if (cancelled) {
		e->n_ctx = start;
		kvmgr_seq_trim(&e->kv, &e->seq, e->n_ctx);
		pop_msgs(e, n_msgs0);
		st.cancelled = true;
		st.prefill_s = now_run_s() - t0;
		turn_done(e, &st);
		return;
	}
	st.prompt_tokens = n;
	double t1 = now_run_s();
	st.prefill_s = t1 - t0;

	struct tok_stream ts;
	tok_stream_init(&ts, e->tok, true);
	char piece[MSG_TEXT];
	int max_new = e->sp.max_new_tokens > 0 ? e->sp.max_new_tokens : INT_MAX;
	/* greedy: one step ahead of the host (feed_ahead), so that the GPU never waits for it between tokens. Not
	 * with LongRoPE, whose switch of factors may feed the cache again between two steps. LMTERM_CHAIN=0: one
	 * step at a time */
	const bool chain = e->m.cfg.rope.type != ROPE_LONGROPE && !env_is("LMTERM_CHAIN", "0");
	bool ahead = false; /* the chained step has fed next at e->n_ctx already */
	for (;;) {
		int32_t id;
		if (next_token(e, greedy, on_dev, next, &id) != LM_OK) {
			push_error(e, false, _("sampling failed: %s"), lm_errmsg());
			break;
		}
		if (st.gen_tokens == 0) st.ttft_s = now_run_s() - t0;
		if (is_stop(e, id)) break;
		if (e->n_ctx + 1 > e->session_len) {
			st.hit_session_len = true;
			break;
		}
		greedy = greedy_fast(e); /* sampling may have changed mid-reply */
		on_dev = !greedy && sampler_on_device(e->be);
		bool more = st.gen_tokens + 1 < max_new;
		int rc;
		if (ahead || (chain && greedy && more)) {
			/* the step after id's only where this loop would feed that token anyway, unless it is a stop
			 * id: the token wanted with its successor, and room for it in the session */
			bool then = chain && greedy && st.gen_tokens + 2 < max_new && e->n_ctx + 2 <= e->session_len;
			rc = feed_ahead(e, id, then, &ahead, &next);
			/* next is a greedy id even where sampling has been turned on since its step was enqueued: it
			 * is the next token, sampling applies to the one after */
			greedy = true;
		} else {
			rc = feed_ex(e, &id, 1, more, greedy ? &next : NULL, on_dev, NULL);
		}
		if (rc != LM_OK) {
			push_error(e, false, _("decode failed: %s"), lm_errmsg());
			break;
		}
		st.gen_tokens++;
		if (reply_text(e, piece, tok_stream_next(&ts, id, piece, sizeof piece))) break; /* a text stop word */
		if (!more) break;
		/* between tokens: CANCEL/QUIT now; sampling changes apply to the next token */
		drain_cmds_busy(e, true);
		if (e->cancel) {
			st.cancelled = true;
			break;
		}
	}
	if (drop_ahead(e) != LM_OK) push_error(e, false, _("decode failed: %s"), lm_errmsg());
	if (!reply_text(e, piece, tok_stream_flush(&ts, piece, sizeof piece))) emit_text(e, e->hold, e->n_hold);
	e->n_hold = 0;
	st.decode_s = now_run_s() - t1;
	if (e->tmpl.jinja && add_msg(e, "assistant", e->reply ? e->reply : "") != LM_OK)
		push_error(e, false, "%s", lm_errmsg());
	turn_done(e, &st);
}

static void reset_session(struct engine *e)
{
	pop_msgs(e, 0);
	e->n_ctx = 0;
	kvmgr_seq_trim(&e->kv, &e->seq, 0);
	struct engine_event ev;
	memset(&ev, 0, sizeof ev);
	ev.type = EV_SESSION_RESET;
	push_event(e, &ev);
}

/* Drop the cache, allocate it anew, re-read the conversation into it. A cache too small for the conversation so
 * far is refused, as one that does not fit in memory is: the previous cache is set up again and the conversation
 * read back into it (it was reset, while the screen went on showing it). Should the conversation not be read in
 * all the same (out of memory, a backend error), the session is empty and EV_KV_REBUILT says so (reset), before
 * the error that says why, so that the screen clears its transcript first. */
static void reconfig_kv(struct engine *e, const struct kv_capacity *cap, int policy)
{
	struct engine_event ev;
	memset(&ev, 0, sizeof ev);
	ev.type = EV_KV_REBUILT;
	get_mem(e, &ev.u.kv_rebuilt.before);
	struct kv_plan old = e->plan;
	struct kv_capacity old_cap = e->o.cap;
	int old_policy = e->plan.policy;
	int n = e->n_ctx;

	e->seq.n_blocks = 0; /* the blocks die with the pool */
	kvmgr_free(&e->kv);
	int rc = setup_kv(e, cap, policy);
	if (rc == LM_OK && n > e->session_len) { /* a full session (n == session_len) still fits */
		rc = lm_err(_("the conversation so far (%d tokens) does not fit a cache of %d tokens: start a new "
			      "conversation first, or choose a larger size"), n, e->session_len);
		kvmgr_free(&e->kv);
	}
	if (rc != LM_OK) {
		push_error(e, false, _("KV cache not changed: %s"), lm_errmsg());
		ev.u.kv_rebuilt.kept = true;
		if (setup_kv(e, &old_cap, old_policy) != LM_OK) {
			push_error(e, true, _("the previous KV cache (%.1f MiB) could not be allocated again: %s"),
				   old.bytes / MiB, lm_errmsg());
			e->quit = true;
			return;
		}
	} else {
		e->o.cap = *cap;
	}
	char why[MSG_TEXT] = "";
	if (n > e->session_len) /* the previous cache, set up again, is smaller than it was */
		snprintf(why, sizeof why, _("the conversation (%d tokens) does not fit the KV cache (%d tokens) any more: "
					    "a new conversation begins"), n, e->session_len);
	int32_t *ids = !why[0] && n > 0 ? malloc(sizeof *ids * n) : NULL;
	if (!why[0] && n > 0 && !ids)
		snprintf(why, sizeof why, "%s", _("out of memory re-reading the conversation: a new conversation begins"));
	if (ids) {
		/* re-prefill in chunks, reporting progress */
		memcpy(ids, e->ctx, sizeof *ids * n);
		e->n_ctx = 0;
		double t0 = now_s();
		for (int i = 0; i < n;) {
			int c = MIN(e->prefill_chunk, n - i);
			push_progress(e, _("re-reading the conversation"), i, n, t0);
			bool last = i + c == n;
			if (feed(e, ids + i, c, last, NULL, NULL) != LM_OK) {
				snprintf(why, sizeof why, _("re-reading the conversation failed (%s): a new conversation begins"),
					 lm_errmsg());
				break;
			}
			i += c;
		}
		push_progress(e, _("re-reading the conversation"), n, n, t0);
		free(ids);
	}
	if (why[0]) { /* nothing of the conversation is in the cache: the session starts again, all of it */
		e->n_ctx = 0;
		kvmgr_seq_trim(&e->kv, &e->seq, 0);
		pop_msgs(e, 0);
		ev.u.kv_rebuilt.reset = true;
	}
	fill_info(e);
	get_mem(e, &ev.u.kv_rebuilt.after);
	ev.u.kv_rebuilt.info = e->info;
	push_event(e, &ev);
	if (why[0]) push_error(e, false, "%s", why);
	warn_session_fit(e);
	push_mem(e);
}

static bool next_cmd(struct engine *e, struct cmd *c)
{
	if (e->def_n) {
		*c = e->deferred[e->def_head];
		e->def_head = (e->def_head + 1) % e->def_cap;
		e->def_n--;
		return true;
	}
	for (;;) {
		if (ring_pop(&e->cmdq, c)) return true;
		struct pollfd p = { .fd = e->cmd_fd, .events = POLLIN };
		poll(&p, 1, 1000);
		uint64_t v;
		ssize_t r = read(e->cmd_fd, &v, sizeof v);
		(void)r;
	}
}

static void append_user(struct engine *e, const char *s, int n)
{
	if (n < 0) n = 0;
	if (n > MSG_TEXT) n = MSG_TEXT;
	if (e->ulen + n + 1 > e->ucap) {
		size_t cap = MAX(e->ucap * 2, e->ulen + n + 1024);
		char *p = realloc(e->utext, cap);
		if (!p) return;
		e->utext = p;
		e->ucap = cap;
	}
	memcpy(e->utext + e->ulen, s, n);
	e->ulen += n;
	e->utext[e->ulen] = 0;
}

static void *engine_main(void *arg)
{
	struct engine *e = arg;
	if (engine_load(e) != LM_OK) {
		push_error(e, true, "%s", lm_errmsg());
	} else {
		struct engine_event ev;
		memset(&ev, 0, sizeof ev);
		warn_load(e); /* before EV_READY, which the plain prompt waits for */
		warn_session_fit(e);
		ev.type = EV_READY;
		ev.u.info = e->info;
		push_event(e, &ev);
		push_mem(e);
		struct cmd c;
		while (!e->quit && next_cmd(e, &c)) {
			switch (c.type) {
			case CMD_SUBMIT:
				append_user(e, c.u.submit.text, c.u.submit.len);
				if (c.u.submit.last) {
					run_turn(e, e->utext ? e->utext : "");
					e->ulen = 0;
					if (e->utext) e->utext[0] = 0;
				}
				break;
			case CMD_CANCEL: break; /* nothing is running */
			case CMD_RESET: reset_session(e); break;
			case CMD_SET_SAMPLING:
				e->sp = c.u.sampling;
				sampler_set(e->smp, &e->sp);
				break;
			case CMD_RECONFIG_KV: reconfig_kv(e, &c.u.kv.cap, c.u.kv.policy); break;
			case CMD_MEM_QUERY: push_mem(e); break;
			case CMD_QUIT: e->quit = true; break;
			}
		}
	}
	flush_text(e);
	engine_unload(e);
	struct engine_event ev;
	memset(&ev, 0, sizeof ev);
	ev.type = EV_QUIT;
	push_wait(e, &ev);
	atomic_store(&e->finished, 1);
	signal_fd(e->ev_fd);
	return NULL;
}

/* ------------------------------------------------------------------ the UI's side */

static void engine_destroy(struct engine *e)
{
	if (!e) return;
	ring_free(&e->cmdq);
	ring_free(&e->evq);
	if (e->ev_fd >= 0) close(e->ev_fd);
	if (e->cmd_fd >= 0) close(e->cmd_fd);
	free(e->model_dir);
	free(e->backend_name);
	free(e->chat_template);
	free(e->deferred);
	free(e->utext);
	pop_msgs(e, 0);
	free(e->msgs);
	free(e->reply);
	free(e->seq.blocks);
	free(e);
}

int engine_start(struct engine **out, const struct engine_opts *o)
{
	*out = NULL;
	struct engine *e = calloc(1, sizeof *e);
	if (!e) return lm_err(_("out of memory"));
	e->ev_fd = e->cmd_fd = -1;
	e->o = *o;
	e->model_dir = strdup(o->model_dir ? o->model_dir : ".");
	e->backend_name = strdup(o->backend ? o->backend : "auto");
	e->chat_template = o->chat_template ? strdup(o->chat_template) : NULL;
	if (e->o.block_len <= 0) e->o.block_len = 64;
	if (ring_init(&e->cmdq, CMD_RING_CAP, sizeof(struct cmd)) != LM_OK ||
	    ring_init(&e->evq, EV_RING_CAP, sizeof(struct engine_event)) != LM_OK) {
		engine_destroy(e);
		return LM_ERR;
	}
	e->ev_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	e->cmd_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (e->ev_fd < 0 || e->cmd_fd < 0) {
		int err = errno;
		engine_destroy(e);
		return lm_err(_("eventfd: %s"), strerror(err));
	}
	int rc = pthread_create(&e->th, NULL, engine_main, e);
	if (rc) {
		engine_destroy(e);
		return lm_err(_("cannot start the engine thread: %s"), strerror(rc));
	}
	e->thread_started = true;
	*out = e;
	return LM_OK;
}

int engine_send(struct engine *e, const struct cmd *c)
{
	double t0 = now_s();
	while (!ring_push(&e->cmdq, c)) {
		if (atomic_load(&e->finished)) return lm_err(_("the engine has stopped"));
		if (now_s() - t0 > 10.0) return lm_err(_("the engine is not taking commands (busy for 10 s)"));
		signal_fd(e->cmd_fd);
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	signal_fd(e->cmd_fd);
	return LM_OK;
}

int engine_poll(struct engine *e, struct engine_event *ev)
{
	return ring_pop(&e->evq, ev) ? 1 : 0;
}

int engine_event_fd(struct engine *e)
{
	return e->ev_fd;
}

void engine_stop(struct engine *e)
{
	if (!e) return;
	if (e->thread_started) {
		/* quitting while the model loads: the rest of the load was waited for, the screen already gone (a
		 * terminal that did nothing for the seconds a large model takes) */
		atomic_store(&e->stop_load, 1);
		struct cmd c;
		memset(&c, 0, sizeof c);
		c.type = CMD_QUIT;
		/* keep reading events (and dropping them: nobody will show them now) until the thread is done,
		 * so that it never waits on a full event ring; the QUIT goes in as soon as there is room */
		bool sent = false;
		struct engine_event ev;
		while (!atomic_load(&e->finished)) {
			if (!sent) sent = ring_push(&e->cmdq, &c);
			if (sent) signal_fd(e->cmd_fd);
			while (engine_poll(e, &ev)) {}
			struct pollfd p = { .fd = e->ev_fd, .events = POLLIN };
			poll(&p, 1, 10);
			uint64_t v;
			ssize_t r = read(e->ev_fd, &v, sizeof v);
			(void)r;
		}
		pthread_join(e->th, NULL);
	}
	engine_destroy(e);
}
