/* engine.h: the engine thread and the messages between it and the UI.
 *
 *   ui thread  --cmd ring (SPSC, lock-free)-->  engine thread (owns backend, model, KV cache)
 *              <--event ring (SPSC, lock-free)--
 *
 * Messages are fixed-size plain structs; text is copied in (no heap pointer crosses a ring). A user turn
 * longer than one message's text travels as several CMD_SUBMIT messages, the last with `last` set.
 * The engine signals an eventfd after pushing events, so the UI sleeps in poll() and never spins. */
#ifndef LMTERM_ENGINE_H
#define LMTERM_ENGINE_H

#include "backend.h"
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MSG_TEXT 1024

enum cmd_type {
	CMD_SUBMIT,        /* a user turn (text; several messages if long, last one has last=true) */
	CMD_CANCEL,        /* stop the reply being generated */
	CMD_RESET,         /* clear the session (conversation and its KV) */
	CMD_SET_SAMPLING,  /* new sampling parameters */
	CMD_RECONFIG_KV,   /* new cache capacity and/or policy: rebuild the cache, re-prefill the conversation (a
			    * cache too small for it is refused) */
	CMD_MEM_QUERY,     /* ask for an EV_MEM now */
	CMD_QUIT,
};

struct sampling {
	float temperature;  /* 0 = greedy */
	float top_p;        /* 1 = off */
	int top_k;          /* 0 = off */
	float min_p;        /* 0 = off */
	float repetition_penalty; /* 1 = off */
	uint64_t seed;
	int max_new_tokens; /* 0 = up to the session length */
};

/* --cache-max-entry-count: a fraction of free memory, or an absolute size */
struct kv_capacity {
	enum { KVCAP_FRACTION, KVCAP_BYTES, KVCAP_TOKENS } kind;
	double fraction;
	uint64_t bytes;
	uint64_t tokens;
};

struct cmd {
	enum cmd_type type;
	union {
		struct { char text[MSG_TEXT]; int len; bool last; } submit;
		struct sampling sampling;
		struct { struct kv_capacity cap; int policy; } kv;
	} u;
};

enum ev_type {
	EV_READY,          /* model loaded; info filled */
	EV_TOKEN,          /* text of the reply (complete UTF-8 characters only) */
	EV_TURN_DONE,      /* reply finished (stats filled) */
	EV_MEM,            /* memory statistics */
	EV_PROGRESS,       /* a long task: stage, done/total */
	EV_KV_REBUILT,     /* the KV cache was rebuilt (mem before and after in kv_rebuilt) */
	EV_SESSION_RESET,
	EV_ERROR,          /* text holds the message; fatal = the engine stopped */
	EV_QUIT,           /* the engine thread has finished */
};

struct engine_info {
	char model_name[128];
	char backend[16];
	char weight_format[16];   /* "bf16", "fp16", "awq w4g128" */
	char act_dtype[8];
	int kv_policy;
	int session_len;          /* tokens the session may hold */
	int kv_capacity_tokens;   /* tokens the cache can hold */
	size_t kv_bytes_per_token;
	int n_layers;
	char template_name[32];
	struct sampling sampling;  /* added for the ui: the sampling in force (defaults, generation_config.json,
				    * command line resolved); all zero = not filled in */
};

struct turn_stats {
	int prompt_tokens;        /* tokens prefilled for this turn */
	int gen_tokens;
	double prefill_s, decode_s, ttft_s;
	int context_used;         /* tokens in the session after the turn */
	bool cancelled;
	bool hit_session_len;     /* stopped because the session is full; no EV_ERROR says so: each front end does,
				   * naming its own way to a new session */
	int need_tokens;          /* hit_session_len before any reply: the tokens this turn needed (its message and
				   * one of reply); 0: the reply was cut short */
	int session_len;          /* tokens the session may hold */
};

struct engine_event {
	enum ev_type type;
	union {
		struct { char text[MSG_TEXT]; int len; } token;
		struct turn_stats done;
		struct { struct mem_stats mem; size_t kv_used_bytes; int context_used; } mem;
		struct { char stage[64]; int64_t done, total; double elapsed_s; double extra; } progress;
		/* kept: the new cache could not be set up, or was too small for the conversation (an error said why),
		 * and the previous one is back; reset: the conversation could not be read into the cache, the session
		 * is empty (an error follows that says why) */
		struct { struct mem_stats before, after; struct engine_info info; bool kept, reset; } kv_rebuilt;
		struct { char text[MSG_TEXT]; bool fatal, warning; } error; /* warning: a notice, nothing failed */
		struct engine_info info;
	} u;
};

/* LMDeploy's engine options (lmdeploy chat's list) that chat, generate and ppl take (opt_engine_extra); what
 * lmterm does with each is in the man page. All zero is LMDeploy's defaults. dtype: 0 auto (the model's: fp16
 * for fp16/fp32 models, bf16 for bf16), else DT_F16 or DT_BF16 (both non-zero); rope_scaling_factor: 0 off,
 * else dynamic NTK RoPE with that factor (as TurboMind); eager: no CUDA graphs (the PyTorch engine's eager
 * mode). */
struct engine_extra {
	int dtype;
	double rope_scaling_factor;
	bool eager;
};

struct engine_opts {
	const char *model_dir;
	const char *backend;        /* auto|cuda|cpu */
	enum model_format format;
	int kv_policy;
	struct kv_capacity cap;
	int block_len;              /* --cache-block-seq-len */
	int session_len;            /* 0 = model's max_position_embeddings */
	const char *chat_template;  /* NULL = from tokenizer_config.json */
	struct sampling sampling;
	bool sampling_given[8];     /* which sampling fields came from the command line (else generation_config);
				     * indexed by SG_* below */
	int n_threads;
	struct engine_extra x;
};

/* indices of engine_opts.sampling_given */
enum { SG_TEMPERATURE, SG_TOP_P, SG_TOP_K, SG_MIN_P, SG_REPETITION_PENALTY, SG_SEED, SG_MAX_NEW_TOKENS };

struct engine;

/* Start the engine thread (it loads the model and reports EV_READY or EV_ERROR). */
int engine_start(struct engine **e, const struct engine_opts *o);
/* Send a command; returns LM_ERR only if the ring stays full (the engine is stuck) for seconds. */
int engine_send(struct engine *e, const struct cmd *c);
/* Pop one event; returns 1 if one was read, 0 if none. */
int engine_poll(struct engine *e, struct engine_event *ev);
/* File descriptor that becomes readable when events are waiting (eventfd); read it to clear. */
int engine_event_fd(struct engine *e);
/* Send CMD_QUIT, join the thread, free everything. */
void engine_stop(struct engine *e);

#ifdef __cplusplus
}
#endif
#endif
