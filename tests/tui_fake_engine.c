/* tui_fake_engine: the chat screen driven by a scripted stand-in for the engine (same engine.h calls), so the
 * front end can be looked at and tested in tmux without a model: canned replies (English, Chinese, emoji)
 * streamed word by word (slowly for a message that begins with "Slow"), memory figures that follow the KV policy, a load with progress, a rebuild
 * (FAKE_REREAD_FAIL: one that cannot read the conversation back).
 * Usage: tui_fake_engine [--no-color] [--fail-load] */
#include "config.h"
#include "engine.h"
#include "ui.h"
#include "i18n.h"

#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define Q 4096
struct engine {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct cmd cmds[64];
	int nc;
	struct engine_event *evs;
	int eh, et;
	int efd;
	bool fail_load;
	struct engine_info info;
	int ctx;
	int submit_bytes;  /* of the message being submitted (it may come in several parts) */
	bool slow;         /* it began with "Slow" */
	bool cancel;
	struct cmd later;  /* a command that came during a reply (a KV rebuild): done after it, as the engine does */
	bool have_later;
	bool quit;         /* engine_stop was called: a load in progress stops, as the engine's does */
};

static void push(struct engine *e, const struct engine_event *ev)
{
	pthread_mutex_lock(&e->mu);
	e->evs[e->et % Q] = *ev;
	e->et++;
	pthread_mutex_unlock(&e->mu);
	uint64_t one = 1;
	ssize_t k = write(e->efd, &one, 8);
	(void)k;
}

static void sleep_ms(int ms) { struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L }; nanosleep(&ts, NULL); }

static void mem(struct engine *e)
{
	struct engine_event ev = { .type = EV_MEM };
	struct mem_stats *m = &ev.u.mem.mem;
	m->cat[MEM_WEIGHTS] = 18u << 20;
	m->cat[MEM_KV] = (size_t)e->info.kv_capacity_tokens * e->info.kv_bytes_per_token;
	m->cat[MEM_ACT] = 3u << 20;
	m->cat[MEM_OTHER] = 1u << 20;
	m->total = 256ull << 20;
	m->free = (160ull << 20) - (size_t)(e->ctx & 0xff) * 4096;
	m->total_valid = m->free_valid = true;
	m->used_by_process = 60u << 20;
	m->used_valid = true;
	m->is_host = true;
	ev.u.mem.kv_used_bytes = (size_t)e->ctx * e->info.kv_bytes_per_token;
	ev.u.mem.context_used = e->ctx;
	push(e, &ev);
}

static bool take(struct engine *e, struct cmd *c, bool wait)
{
	pthread_mutex_lock(&e->mu);
	while (wait && e->nc == 0) pthread_cond_wait(&e->cv, &e->mu);
	bool got = e->nc > 0;
	if (got) { *c = e->cmds[0]; memmove(e->cmds, e->cmds + 1, --e->nc * sizeof *c); }
	pthread_mutex_unlock(&e->mu);
	return got;
}

static const char *reply[] = { "Hello! ", "This ", "is ", "a ", "scripted ", "reply ", "from ", "the ", "fake ", "engine. ",
	"中文", "也", "可以", "显示", "：", "你好，", "世界！", " \xf0\x9f\x98\x80 ", "Combining: cafe\xcc\x81. ",
	"A long sentence follows so that wrapping by display width can be seen in a narrow terminal window. ", "Done." };

static void *run(void *arg)
{
	struct engine *e = arg;
	for (int i = 1; i <= 5; i++) {
		struct engine_event ev = { .type = EV_PROGRESS };
		snprintf(ev.u.progress.stage, sizeof ev.u.progress.stage, "loading shard %d", (i + 1) / 3 + 1);
		ev.u.progress.done = i;
		ev.u.progress.total = 5;
		ev.u.progress.extra = 0.0 / 0.0;
		push(e, &ev);
		/* FAKE_SLOW_LOAD: a load of seconds, for keys pressed while it runs; it stops once told to quit */
		for (int t = 0; t < (getenv("FAKE_SLOW_LOAD") ? 10 : 1) && !__atomic_load_n(&e->quit, __ATOMIC_RELAXED); t++)
			sleep_ms(100);
		if (__atomic_load_n(&e->quit, __ATOMIC_RELAXED)) return NULL;
	}
	if (e->fail_load) {
		struct engine_event ev = { .type = EV_ERROR };
		snprintf(ev.u.error.text, sizeof ev.u.error.text, "models/x/config.json: unknown architecture 'Foo'");
		ev.u.error.fatal = true;
		push(e, &ev);
		struct engine_event q = { .type = EV_QUIT };
		push(e, &q);
		return NULL;
	}
	struct engine_info *in = &e->info;
	snprintf(in->model_name, sizeof in->model_name, "tiny-en-zh");
	snprintf(in->backend, sizeof in->backend, "cpu");
	snprintf(in->weight_format, sizeof in->weight_format, "bf16");
	snprintf(in->act_dtype, sizeof in->act_dtype, "f32");
	in->kv_policy = 0;
	in->session_len = 2048;
	in->kv_capacity_tokens = 2048;
	in->kv_bytes_per_token = 3072;
	in->n_layers = 6;
	in->sampling = (struct sampling){ .temperature = 0.7f, .top_p = 0.9f, .top_k = 40, .repetition_penalty = 1.1f };
	struct engine_event ev = { .type = EV_READY };
	ev.u.info = *in;
	push(e, &ev);
	struct cmd c;
	for (;;) {
		if (e->have_later) { c = e->later; e->have_later = false; }
		else take(e, &c, true);
		switch (c.type) {
		case CMD_QUIT: { struct engine_event q = { .type = EV_QUIT }; push(e, &q); return NULL; }
		case CMD_MEM_QUERY: mem(e); break;
		case CMD_RESET: { e->ctx = 0; struct engine_event r = { .type = EV_SESSION_RESET }; push(e, &r); break; }
		case CMD_RECONFIG_KV: {
			struct engine_event r = { .type = EV_KV_REBUILT };
			r.u.kv_rebuilt.before.cat[MEM_KV] = (size_t)in->kv_capacity_tokens * in->kv_bytes_per_token;
			for (int i = 1; i <= 3; i++) {
				struct engine_event p = { .type = EV_PROGRESS };
				snprintf(p.u.progress.stage, sizeof p.u.progress.stage, "re-prefill");
				p.u.progress.done = i;
				p.u.progress.total = 3;
				p.u.progress.extra = 0.0 / 0.0;
				push(e, &p);
				sleep_ms(150);
			}
			in->kv_policy = c.u.kv.policy;
			in->kv_bytes_per_token = c.u.kv.policy == 8 ? 1536 + 96 : c.u.kv.policy == 4 ? 768 + 96 : 3072;
			r.u.kv_rebuilt.after.cat[MEM_KV] = (size_t)in->kv_capacity_tokens * in->kv_bytes_per_token;
			r.u.kv_rebuilt.info = *in;
			/* FAKE_REREAD_FAIL: the conversation cannot be read into the new cache, as when the backend fails:
			 * the session is empty, and the error comes after the event, as the engine sends them */
			bool fail = getenv("FAKE_REREAD_FAIL") && e->ctx > 0;
			if (fail) { e->ctx = 0; r.u.kv_rebuilt.reset = true; }
			push(e, &r);
			if (fail) {
				struct engine_event er = { .type = EV_ERROR };
				snprintf(er.u.error.text, sizeof er.u.error.text, "re-reading the conversation failed (a "
					 "backend error): a new conversation begins");
				push(e, &er);
			}
			mem(e);
			break;
		}
		case CMD_SUBMIT: {
			/* a message that begins with "Slow" is answered at 0.3 s a word (time to act while it streams) */
			if (e->submit_bytes == 0) e->slow = strncmp(c.u.submit.text, "Slow", 4) == 0;
			/* a message longer than the session (as the engine counts it: ~5 bytes a token) is refused */
			e->submit_bytes += c.u.submit.len;
			if (!c.u.submit.last) break;
			if (e->submit_bytes / 5 + 1 > in->session_len) {
				struct engine_event er = { .type = EV_ERROR };
				snprintf(er.u.error.text, sizeof er.u.error.text, "the message is too long: it needs %d tokens "
					 "and the session holds %d.", e->submit_bytes / 5 + 1, in->session_len);
				push(e, &er);
				struct engine_event d = { .type = EV_TURN_DONE };
				d.u.done.context_used = e->ctx;
				push(e, &d);
				e->submit_bytes = 0;
				break;
			}
			e->submit_bytes = 0;
			e->ctx += 12;
			int n = 0;
			bool cancelled = false;
			double t1 = now_run_s(); /* timed as the engine times its replies: a stop (Ctrl-Z) left out */
			for (size_t i = 0; i < sizeof reply / sizeof *reply; i++) {
				struct cmd c2;
				if (take(e, &c2, false)) {
					if (c2.type == CMD_CANCEL) { cancelled = true; break; }
					if (c2.type == CMD_MEM_QUERY) mem(e);
					if (c2.type == CMD_RECONFIG_KV || c2.type == CMD_RESET) { e->later = c2; e->have_later = true; }
				}
				struct engine_event t = { .type = EV_TOKEN };
				t.u.token.len = (int)strlen(reply[i]);
				memcpy(t.u.token.text, reply[i], t.u.token.len);
				push(e, &t);
				n++;
				e->ctx++;
				sleep_ms(e->slow ? 300 : 40);
			}
			struct engine_event d = { .type = EV_TURN_DONE };
			d.u.done.gen_tokens = n;
			d.u.done.decode_s = now_run_s() - t1;
			d.u.done.ttft_s = 0.05;
			d.u.done.context_used = e->ctx;
			d.u.done.cancelled = cancelled;
			push(e, &d);
			break;
		}
		default: break;
		}
	}
}

int engine_start(struct engine **out, const struct engine_opts *o)
{
	struct engine *e = calloc(1, sizeof *e);
	e->evs = calloc(Q, sizeof *e->evs);
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	e->efd = eventfd(0, EFD_NONBLOCK);
	e->fail_load = o->model_dir && strcmp(o->model_dir, "fail") == 0;
	pthread_create(&e->th, NULL, run, e);
	*out = e;
	return LM_OK;
}

int engine_send(struct engine *e, const struct cmd *c)
{
	pthread_mutex_lock(&e->mu);
	/* full: wait for room, as the real engine's engine_send does (a long paste comes in many parts; dropping one
	 * left the screen "generating" for ever) */
	while (e->nc >= 64) {
		pthread_mutex_unlock(&e->mu);
		sleep_ms(1);
		pthread_mutex_lock(&e->mu);
	}
	e->cmds[e->nc++] = *c;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	return LM_OK;
}

int engine_poll(struct engine *e, struct engine_event *ev)
{
	pthread_mutex_lock(&e->mu);
	int got = e->eh < e->et;
	if (got) *ev = e->evs[e->eh++ % Q];
	pthread_mutex_unlock(&e->mu);
	return got;
}

int engine_event_fd(struct engine *e) { return e->efd; }

void engine_stop(struct engine *e)
{
	__atomic_store_n(&e->quit, true, __ATOMIC_RELAXED);
	struct cmd c = { .type = CMD_QUIT };
	engine_send(e, &c);
	pthread_join(e->th, NULL);
	close(e->efd);
	free(e->evs);
	free(e);
}

/* --progress: a fake quantization through ui_progress_run, 12 layers of 4 stages */
static int fake_work(void *ud, struct progress_sink *s)
{
	int ms = *(int *)ud;
	for (int l = 0; l < 12; l++)
		for (int st = 0; st < 4; st++) {
			if (s->cancelled(s)) return lm_err("interrupted");
			static const char *stages[] = { "calibrate", "search scales", "search clipping", "quantize" };
			char stage[64];
			snprintf(stage, sizeof stage, "layer %d/12: %s", l + 1, stages[st]);
			s->report(s, stage, l * 4 + st, 48, st == 3 ? 0.001 * (l + 1) : 0.0 / 0.0);
			sleep_ms(ms);
		}
	s->report(s, "done", 48, 48, 0.0 / 0.0);
	return LM_OK;
}

static int fake_mem_stats(struct backend *be, struct mem_stats *m)
{
	memset(m, 0, sizeof *m);
	m->cat[MEM_WEIGHTS] = 300u << 20;
	m->cat[MEM_ACT] = 40u << 20;
	m->total = 8ull << 30;
	m->free = 5ull << 30;
	m->total_valid = m->free_valid = true;
	snprintf(m->device_name, sizeof m->device_name, "Fake GPU");
	return LM_OK;
}

int main(int argc, char **argv)
{
	setlocale(LC_ALL, "");
#if ENABLE_NLS
	const char *ld = getenv("LMTERM_LOCALEDIR");
	bindtextdomain(PACKAGE, ld && *ld ? ld : LOCALEDIR);
	textdomain(PACKAGE);
#endif
	struct engine_opts eo = { .cap = { .kind = KVCAP_FRACTION, .fraction = 0.8 },
				  .sampling = { .temperature = 0.7f, .top_p = 0.9f, .top_k = 40, .repetition_penalty = 1.0f } };
	struct ui_opts uo = { .model_label = "tiny-en-zh", .engine = &eo };
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--no-color") == 0) uo.no_color = true;
		if (strcmp(argv[i], "--fail-load") == 0) eo.model_dir = "fail";
	}
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--progress") == 0) {
			static const struct backend_i bi = { .mem_stats = fake_mem_stats };
			struct backend be = { .i = &bi };
			int ms = i + 1 < argc ? atoi(argv[i + 1]) : 100;
			/* --progress N host: no backend, host memory from /proc */
			bool host = i + 2 < argc && strcmp(argv[i + 2], "host") == 0;
			int rc = ui_progress_run("lite auto_awq", fake_work, &ms, host ? NULL : &be, &uo);
			printf("work returned %d\n", rc);
			return rc == LM_OK ? 0 : 1;
		}
	struct engine *e;
	engine_start(&e, &eo);
	int rc = ui_chat_run(e, &uo);
	engine_stop(e);
	return rc;
}
