/* template.h: chat templates in LMDeploy's terms (system, meta_instruction, eosys, user, eoh, assistant, eoa,
 * separator, stop_words), built in for internlm2, chatml, qwen3, phi-3, phi-4, llama3, llama2 and base, or read
 * from a JSON file in LMDeploy's format. A conversation renders as
 *
 *   prefix [system (system text | meta_instruction) eosys]
 *   { user TEXT eoh  assistant REPLY eoa separator }*  [assistant]            (generation prompt)
 *
 * The engine renders one turn at a time (tmpl_turn): the close of the previous reply (eoa separator), the user
 * turn and the generation prompt, so that only new tokens are prefilled. The pieces are kept apart from the
 * user's own text (struct tmpl_text's user ranges) so that the engine can encode the user's text with
 * special-token matching off. */
#ifndef LMTERM_TEMPLATE_H
#define LMTERM_TEMPLATE_H

#include "common.h"

#define TMPL_MAX_STOP 8

struct chat_template {
	char name[64];
	char *prefix;            /* once at the start ("<s>", "<|begin_of_text|>"); "" = none */
	char *system, *meta_instruction, *eosys;
	char *user, *eoh, *assistant, *eoa, *separator;
	char *stop_words[TMPL_MAX_STOP];
	int n_stop;
	bool trim_content;       /* llama3's template trims each message's content */
	bool always_gen_prompt;  /* llama3's (as published) appends the assistant header even without
				  * add_generation_prompt */
	bool sys_in_first_user;  /* llama2: the system block sits inside the first [INST] */
	/* The model's own Jinja chat_template, when no built-in renders as it does (e.g. Qwen3's <think>
	 * handling): the engine then renders the whole conversation each turn and prefills from where the
	 * tokens differ from the cache. NULL for built-ins. bos/eos: the token texts the template may use. */
	char *jinja;
	char *bos_text, *eos_text;
	bool content_parts;      /* the template takes each message's content as a list of parts (a processor's
				  * chat_template.json, LLaVA's): with a plain string it would drop the text */
	/* Why the model's own chat_template is not used although it differs from the built-in: the interpreter's
	 * message for it (an unsupported construct, a raise_exception), for the engine to report; else NULL. */
	char *jinja_error;
};

struct chat_msg {
	const char *role;        /* "system", "user", "assistant" */
	const char *content;
};

/* A rendered piece of conversation: text, and where the user's own text lies in it. */
struct tmpl_text {
	char *s;
	size_t len, cap;
	size_t *user_off, *user_len;  /* [n_user] */
	int n_user, cap_user;
};

/* Built-in template by name: internlm2, chatml, qwen3, phi-3, phi-4, llama3, llama2, base. LM_ERR (message names
 * it) if unknown. */
int tmpl_builtin(struct chat_template *t, const char *name);
/* LMDeploy's JSON format; errors name the file and key. */
int tmpl_load_json(struct chat_template *t, const char *path);
/* --chat-template ARG (a built-in name or a JSON file), else from model_dir/tokenizer_config.json's
 * chat_template text and model_type (config.json's). */
int tmpl_choose(struct chat_template *t, const char *arg, const char *model_dir, const char *model_type);
void tmpl_free(struct chat_template *t);
/* Names of the built-ins, NULL-terminated. */
extern const char *const tmpl_builtin_names[];

/* Whole conversation as text (as transformers' apply_chat_template(tokenize=False) does). */
int tmpl_render(const struct chat_template *t, const struct chat_msg *msgs, int n, bool add_generation_prompt,
		struct tmpl_text *out);
/* One engine turn: first = start of the conversation (prefix, system block), else the close of the previous
 * reply; then the user turn and the generation prompt. system may be NULL (meta_instruction is used). */
int tmpl_turn(const struct chat_template *t, bool first, const char *system, const char *user,
	      struct tmpl_text *out);
void tmpl_text_free(struct tmpl_text *tt);
/* Jinja mode: render the conversation with the model's template and mark where the user texts are. */
int tmpl_render_jinja(const struct chat_template *t, const struct chat_msg *msgs, int n, bool add_generation_prompt,
		      struct tmpl_text *out);

#endif
