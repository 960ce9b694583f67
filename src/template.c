/* template.c: chat templates; see template.h for the shape of a rendered conversation. */
#include "config.h"
#include "template.h"
#include "i18n.h"
#include "jinja.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const tmpl_builtin_names[] = { "internlm2", "chatml", "qwen3", "phi-3", "phi-4", "llama3", "llama2", "base",
					    NULL };

struct builtin {
	const char *name, *prefix, *system, *meta, *eosys, *user, *eoh, *assistant, *eoa, *sep;
	const char *stop[3];
	bool trim, always_gen, sys_in_user;
};

static const struct builtin builtins[] = {
	/* InternLM2/2.5 chat: ChatML with BOS written by the template ({{ bos_token }}) */
	{ "internlm2", "<s>", "<|im_start|>system\n", "", "<|im_end|>\n", "<|im_start|>user\n", "<|im_end|>\n",
	  "<|im_start|>assistant\n", "<|im_end|>", "\n", { "<|im_end|>", "<|action_end|>" }, false, false, false },
	/* Qwen2 and the demo models */
	{ "chatml", "", "<|im_start|>system\n", "", "<|im_end|>\n", "<|im_start|>user\n", "<|im_end|>\n",
	  "<|im_start|>assistant\n", "<|im_end|>", "\n", { "<|im_end|>", "<|endoftext|>" }, false, false, false },
	/* LMDeploy's "qwen3": ChatML, thinking left on (no empty <think></think> after the prompt), for a Qwen3 without
	 * its own template; Qwen3's own Jinja template (it drops the reasoning of earlier turns) is preferred */
	{ "qwen3", "", "<|im_start|>system\n", "", "<|im_end|>\n", "<|im_start|>user\n", "<|im_end|>\n",
	  "<|im_start|>assistant\n", "<|im_end|>", "\n", { "<|im_end|>", "<|endoftext|>" }, false, false, false },
	/* LMDeploy's "phi-3" (Phi-3, Phi-3.5): <|user|>\n{user}<|end|>\n<|assistant|>\n{reply}<|end|>\n, as their own
	 * templates write it */
	{ "phi-3", "", "<|system|>\n", "", "<|end|>\n", "<|user|>\n", "<|end|>\n", "<|assistant|>\n", "<|end|>\n", "",
	  { "<|end|>", "<|endoftext|>", "<|assistant|>" }, false, false, false },
	/* Phi-4's own template: ChatML with <|im_sep|> after the role and no newlines */
	{ "phi-4", "", "<|im_start|>system<|im_sep|>", "", "<|im_end|>", "<|im_start|>user<|im_sep|>", "<|im_end|>",
	  "<|im_start|>assistant<|im_sep|>", "<|im_end|>", "", { "<|im_end|>", "<|endoftext|>" }, false, false, false },
	{ "llama3", "<|begin_of_text|>", "<|start_header_id|>system<|end_header_id|>\n\n", "", "<|eot_id|>",
	  "<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>",
	  "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>", "",
	  { "<|eot_id|>", "<|end_of_text|>", "<|eom_id|>" }, true, true, false },
	/* <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {reply} </s><s>[INST] {user} [/INST] */
	{ "llama2", "<s>", "[INST] <<SYS>>\n", "", "\n<</SYS>>\n\n", "[INST] ", " [/INST] ", "", " </s>", "<s>",
	  { "</s>" }, true, false, true },
	/* no template: the text is continued as it is */
	{ "base", "", "", "", "", "", "", "", "", "", { NULL }, false, false, false },
};

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

static int from_builtin(struct chat_template *t, const struct builtin *b)
{
	memset(t, 0, sizeof *t);
	snprintf(t->name, sizeof t->name, "%s", b->name);
	t->prefix = dup_or_empty(b->prefix);
	t->system = dup_or_empty(b->system);
	t->meta_instruction = dup_or_empty(b->meta);
	t->eosys = dup_or_empty(b->eosys);
	t->user = dup_or_empty(b->user);
	t->eoh = dup_or_empty(b->eoh);
	t->assistant = dup_or_empty(b->assistant);
	t->eoa = dup_or_empty(b->eoa);
	t->separator = dup_or_empty(b->sep);
	for (int i = 0; i < 3 && b->stop[i]; i++) t->stop_words[t->n_stop++] = strdup(b->stop[i]);
	t->trim_content = b->trim;
	t->always_gen_prompt = b->always_gen;
	t->sys_in_first_user = b->sys_in_user;
	return LM_OK;
}

int tmpl_builtin(struct chat_template *t, const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(builtins); i++)
		if (strcmp(builtins[i].name, name) == 0) return from_builtin(t, &builtins[i]);
	return lm_err(_("--chat-template: unknown template '%s' (built in: internlm2, chatml, qwen3, phi-3, phi-4, llama3, llama2, base; "
			"or a JSON file in LMDeploy's format)"), name);
}

void tmpl_free(struct chat_template *t)
{
	char **f[] = { &t->prefix, &t->system, &t->meta_instruction, &t->eosys, &t->user, &t->eoh, &t->assistant,
		       &t->eoa, &t->separator };
	for (size_t i = 0; i < ARRAY_SIZE(f); i++) {
		free(*f[i]);
		*f[i] = NULL;
	}
	for (int i = 0; i < t->n_stop; i++) free(t->stop_words[i]);
	t->n_stop = 0;
	free(t->jinja);
	free(t->bos_text);
	free(t->eos_text);
	free(t->jinja_error);
	t->jinja = t->bos_text = t->eos_text = t->jinja_error = NULL;
}

int tmpl_load_json(struct chat_template *t, const char *path)
{
	char *buf;
	size_t len;
	if (read_file(path, &buf, &len) != LM_OK) return lm_err_prefix("--chat-template: ");
	cJSON *o = cJSON_ParseWithLength(buf, len);
	free(buf);
	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		return lm_err(_("%s: not a JSON object (expected LMDeploy's chat template format)"), path);
	}
	static const struct builtin empty = { "custom", "", "", "", "", "", "", "", "", "", { NULL }, 0, 0, 0 };
	from_builtin(t, &empty);
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "model_name");
	snprintf(t->name, sizeof t->name, "%s", cJSON_IsString(name) ? name->valuestring : "custom");
	static const char *const keys[] = { "system", "meta_instruction", "eosys", "user", "eoh", "assistant", "eoa",
					    "separator" };
	char **fields[] = { &t->system, &t->meta_instruction, &t->eosys, &t->user, &t->eoh, &t->assistant,
			    &t->eoa, &t->separator };
	int known = 0;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[i]);
		if (!v) continue;
		if (!cJSON_IsString(v)) {
			cJSON_Delete(o);
			tmpl_free(t);
			return lm_err(_("%s: \"%s\" must be a string"), path, keys[i]);
		}
		free(*fields[i]);
		*fields[i] = strdup(v->valuestring);
		known++;
	}
	const cJSON *sw = cJSON_GetObjectItemCaseSensitive(o, "stop_words");
	if (sw && !cJSON_IsArray(sw)) {
		cJSON_Delete(o);
		tmpl_free(t);
		return lm_err(_("%s: \"stop_words\" must be an array of strings"), path);
	}
	const cJSON *w;
	cJSON_ArrayForEach(w, sw) {
		if (!cJSON_IsString(w)) {
			cJSON_Delete(o);
			tmpl_free(t);
			return lm_err(_("%s: \"stop_words\" must be an array of strings"), path);
		}
		if (t->n_stop < TMPL_MAX_STOP) t->stop_words[t->n_stop++] = strdup(w->valuestring);
	}
	cJSON_Delete(o);
	if (!known) {
		tmpl_free(t);
		return lm_err(_("%s: none of system, user, eoh, assistant, eoa... found (LMDeploy's chat template format)"),
			      path);
	}
	return LM_OK;
}

/* Which built-in a Jinja chat_template text corresponds to, by its markers. */
static const char *guess_from_jinja(const char *j, const char *model_type)
{
	if (strstr(j, "<|start_header_id|>")) return "llama3";
	if (strstr(j, "<|im_sep|>")) return "phi-4"; /* before ChatML, whose markers it has too */
	if (strstr(j, "<|assistant|>") && strstr(j, "<|end|>")) return "phi-3";
	if (strstr(j, "<|im_start|>")) {
		if (strcmp(model_type, "internlm2") == 0 && strstr(j, "bos_token")) return "internlm2";
		if (strcmp(model_type, "qwen3") == 0) return "qwen3";
		return "chatml";
	}
	if (strstr(j, "[INST]")) return "llama2";
	return NULL;
}

static char *token_text(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
	return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

static int render_as(const char *jinja, bool parts, const struct chat_msg *m, int n, bool gen, const char *bos,
		     const char *eos, char **out)
{
	return (parts ? jinja_render_parts : jinja_render)(jinja, m, n, gen, bos, eos, out);
}

/* Does the built-in render these conversations exactly as the model's own template does? */
static bool builtin_matches(const struct chat_template *t, const char *jinja, bool parts, const char *bos,
			    const char *eos)
{
	static const struct chat_msg a[] = { { "user", "Hello" } };
	static const struct chat_msg b[] = { { "system", "Be brief." }, { "user", "Hi" }, { "assistant", "Hello!" },
					     { "user", "Tell me a story." } };
	static const struct chat_msg c[] = { { "user", "2+2?" }, { "assistant", "4" } };
	/* two user turns in a row (a reply that was cut off): Phi-4's template opens the assistant's turn after every
	 * user turn, which no built-in does */
	static const struct chat_msg d[] = { { "user", "Hello" }, { "user", "Who are you?" } };
	struct { const struct chat_msg *m; int n; bool gen; } probes[] = { { a, 1, true }, { b, 4, true }, { c, 2, false },
									   { d, 2, true } };
	for (size_t i = 0; i < ARRAY_SIZE(probes); i++) {
		struct tmpl_text tt;
		char *j;
		/* A probe the template refuses (Gemma's and Mistral's raise on a system message) says nothing either
		 * way; the built-in is taken when it renders every probe the template renders as it does (all of
		 * them when the template renders none: then it cannot be used anyway). */
		if (render_as(jinja, parts, probes[i].m, probes[i].n, probes[i].gen, bos, eos, &j) != LM_OK) {
			lm_err_clear();
			continue;
		}
		if (tmpl_render(t, probes[i].m, probes[i].n, probes[i].gen, &tt) != LM_OK) {
			free(j);
			return false;
		}
		/* the built-ins write BOS as a prefix; a template may leave it to the tokenizer */
		const char *r = tt.s;
		if (t->prefix[0] && strncmp(j, t->prefix, strlen(t->prefix)) != 0 &&
		    strncmp(r, t->prefix, strlen(t->prefix)) == 0)
			r += strlen(t->prefix);
		bool same = strcmp(r, j) == 0;
		free(j);
		tmpl_text_free(&tt);
		if (!same) return false;
	}
	return true;
}

/* The JSON object in path, or NULL where there is no such file. One that cannot be read or is not a JSON object
 * is an error: ignoring it chose the built-in "base" without a word, instead of the model's own template. */
static int json_object_file(const char *path, cJSON **out)
{
	*out = NULL;
	if (!file_exists(path)) return LM_OK;
	char *buf;
	size_t len;
	if (read_file(path, &buf, &len) != LM_OK) return LM_ERR;
	const char *end = NULL;
	cJSON *o = cJSON_ParseWithLengthOpts(buf, len, &end, false);
	size_t at = end && end >= buf && end <= buf + len ? (size_t)(end - buf) : 0;
	free(buf);
	if (!o) return lm_err(_("%s: not valid JSON (near byte %zu)"), path, at);
	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		return lm_err(_("%s: not a JSON object"), path);
	}
	*out = o;
	return LM_OK;
}

int tmpl_choose(struct chat_template *t, const char *arg, const char *model_dir, const char *model_type)
{
	if (!model_type) model_type = "";
	if (arg && *arg) {
		for (int i = 0; tmpl_builtin_names[i]; i++)
			if (strcmp(arg, tmpl_builtin_names[i]) == 0) return tmpl_builtin(t, arg);
		/* a path (it has a '/') that is missing says so, rather than "unknown template" */
		if (file_exists(arg) || strchr(arg, '/')) return tmpl_load_json(t, arg);
		return tmpl_builtin(t, arg); /* the unknown-name message */
	}
	const char *name = NULL;
	char *jinja = NULL, *bos = NULL, *eos = NULL;
	char path[4200];
	path_join(path, sizeof path, model_dir, "tokenizer_config.json");
	char *buf;
	size_t len;
	cJSON *o;
	if (json_object_file(path, &o) != LM_OK) return LM_ERR;
	if (o) {
		const cJSON *ct = cJSON_GetObjectItemCaseSensitive(o, "chat_template");
		if (cJSON_IsString(ct)) {
			jinja = strdup(ct->valuestring);
		} else if (cJSON_IsArray(ct)) { /* [{name, template}]: the "default" one */
			const cJSON *e;
			cJSON_ArrayForEach(e, ct) {
				const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
				const cJSON *tx = cJSON_GetObjectItemCaseSensitive(e, "template");
				if (cJSON_IsString(n) && cJSON_IsString(tx) && strcmp(n->valuestring, "default") == 0) {
					free(jinja); /* a later "default" wins, as in transformers' dict of them */
					jinja = strdup(tx->valuestring);
				}
			}
		}
		bos = token_text(o, "bos_token");
		eos = token_text(o, "eos_token");
		cJSON_Delete(o);
	}
	/* Newer transformers save the template beside tokenizer_config.json, as chat_template.jinja (or, for
	 * processors, chat_template.json); when there, it is the one transformers uses. */
	path_join(path, sizeof path, model_dir, "chat_template.jinja");
	if (file_exists(path)) {
		if (read_file(path, &buf, &len) != LM_OK) goto fail;
		free(jinja);
		jinja = buf;
	} else {
		path_join(path, sizeof path, model_dir, "chat_template.json");
		if (json_object_file(path, &o) != LM_OK) goto fail;
		const cJSON *ct = cJSON_GetObjectItemCaseSensitive(o, "chat_template");
		if (cJSON_IsString(ct)) {
			free(jinja);
			jinja = strdup(ct->valuestring);
		}
		cJSON_Delete(o);
	}
	if (jinja) name = guess_from_jinja(jinja, model_type);
	if (!name) {
		if (strcmp(model_type, "internlm2") == 0) name = "internlm2";
		else if (strcmp(model_type, "qwen2") == 0) name = "chatml";
		else if (strcmp(model_type, "qwen3") == 0) name = "qwen3";
		else if (strcmp(model_type, "phi3") == 0) name = "phi-3"; /* Phi-4 has a template of its own */
		else name = "base";
	}
	int rc = tmpl_builtin(t, name);
	/* the model's own template where the built-in would render differently (and the interpreter runs it) */
	if (rc == LM_OK && jinja) {
		char *probe = NULL, *pp = NULL, *err = NULL;
		static const struct chat_msg m[] = { { "user", "Hello" } };
		int prc = jinja_render(jinja, m, 1, true, bos, eos, &probe);
		bool parts = false;
		/* a processor's template (llava-hf's) iterates over a list of parts: a string's text is lost, or
		 * fails; such a template gets the parts form, as transformers' processors are given it */
		if (prc != LM_OK || !strstr(probe, "Hello")) {
			if (prc != LM_OK) err = strdup(lm_errmsg());
			if (jinja_render_parts(jinja, m, 1, true, bos, eos, &pp) == LM_OK && strstr(pp, "Hello")) {
				parts = true;
				prc = LM_OK;
			}
			if (err && prc != LM_OK) lm_err("%s", err);
		}
		free(err);
		free(probe);
		free(pp);
		if (prc != LM_OK) {
			/* the built-in stays, and the engine says why the model's own template could not be used */
			t->jinja_error = strdup(lm_errmsg());
		} else if (!builtin_matches(t, jinja, parts, bos, eos)) {
			snprintf(t->name, sizeof t->name, "jinja (%s)", name);
			t->jinja = jinja;
			t->bos_text = bos;
			t->eos_text = eos;
			t->content_parts = parts;
			jinja = bos = eos = NULL;
		}
		lm_err_clear();
	}
	free(jinja);
	free(bos);
	free(eos);
	return rc;
fail:
	free(jinja);
	free(bos);
	free(eos);
	return LM_ERR;
}

static int tt_put(struct tmpl_text *tt, const char *s, size_t n, bool user);

/* Jinja mode. Where the user texts lie in the output is found exactly: the template is run a second time with
 * each user text replaced by a placeholder (no whitespace, so trimming leaves it alone); putting the texts back
 * into that output must give the real output, and then the placeholders' places are the user ranges. A
 * template that transforms the texts fails that check; it is accepted only for texts with nothing that could
 * spell a special token ('<', '['), so that no user text can become a control token. */
int tmpl_render_jinja(const struct chat_template *t, const struct chat_msg *msgs, int n, bool add_generation_prompt,
		      struct tmpl_text *out)
{
	memset(out, 0, sizeof *out);
	char *real, *ph = NULL;
	if (render_as(t->jinja, t->content_parts, msgs, n, add_generation_prompt, t->bos_text, t->eos_text, &real) !=
	    LM_OK)
		return LM_ERR;
	struct chat_msg *pm = malloc(sizeof *pm * (n ? n : 1));
	char (*names)[24] = malloc(sizeof *names * (n ? n : 1));
	int rc = pm && names ? LM_OK : lm_err(_("chat template: out of memory"));
	for (int i = 0; i < n && rc == LM_OK; i++) {
		snprintf(names[i], sizeof names[i], "\x01%d\x02", i);
		pm[i] = msgs[i];
		if (strcmp(msgs[i].role, "user") == 0) pm[i].content = names[i];
	}
	bool exact = rc == LM_OK && render_as(t->jinja, t->content_parts, pm, n, add_generation_prompt, t->bos_text,
					      t->eos_text, &ph) == LM_OK;
	lm_err_clear();
	if (exact) { /* rebuild from the placeholders */
		const char *p = ph;
		while (*p && exact) {
			const char *q = strchr(p, '\x01');
			size_t lit = q ? (size_t)(q - p) : strlen(p);
			if (tt_put(out, p, lit, false) != LM_OK) exact = false;
			if (!q) break;
			char *end;
			long i = strtol(q + 1, &end, 10);
			if (*end != '\x02' || i < 0 || i >= n || strcmp(msgs[i].role, "user") != 0 ||
			    tt_put(out, msgs[i].content, strlen(msgs[i].content), true) != LM_OK) {
				exact = false;
				break;
			}
			p = end + 1;
		}
		exact = exact && out->s && strcmp(out->s, real) == 0;
	}
	free(ph);
	free(pm);
	free(names);
	if (rc == LM_OK && !exact) {
		tmpl_text_free(out);
		for (int i = 0; i < n; i++)
			if (strcmp(msgs[i].role, "user") == 0 && (strchr(msgs[i].content, '<') || strchr(msgs[i].content, '['))) {
				free(real);
				return lm_err(_("chat template: the model's template rewrote the user's text; it cannot be "
						"rendered safely (use --chat-template with a built-in name)"));
			}
		out->s = real;
		out->len = strlen(real);
		out->cap = out->len + 1;
		return LM_OK;
	}
	free(real);
	if (rc != LM_OK) tmpl_text_free(out);
	return rc;
}

/* ---- rendering ---- */

static int tt_put(struct tmpl_text *tt, const char *s, size_t n, bool user)
{
	if (tt->len + n + 1 > tt->cap) {
		size_t cap = tt->cap ? tt->cap : 256;
		while (cap < tt->len + n + 1) cap *= 2;
		char *p = realloc(tt->s, cap);
		if (!p) return lm_err(_("chat template: out of memory"));
		tt->s = p;
		tt->cap = cap;
	}
	if (user) {
		if (tt->n_user == tt->cap_user) {
			int cap = tt->cap_user ? tt->cap_user * 2 : 8;
			size_t *o = realloc(tt->user_off, sizeof *o * cap);
			if (o) tt->user_off = o;
			size_t *l = realloc(tt->user_len, sizeof *l * cap);
			if (l) tt->user_len = l;
			if (!o || !l) return lm_err(_("chat template: out of memory"));
			tt->cap_user = cap;
		}
		tt->user_off[tt->n_user] = tt->len;
		tt->user_len[tt->n_user++] = n;
	}
	memcpy(tt->s + tt->len, s, n);
	tt->len += n;
	tt->s[tt->len] = 0;
	return LM_OK;
}

static int tt_str(struct tmpl_text *tt, const char *s)
{
	return tt_put(tt, s, strlen(s), false);
}

/* content, trimmed as Jinja's |trim (Python's str.strip()) where the template does so */
static int tt_content(struct tmpl_text *tt, const struct chat_template *t, const char *c, bool user)
{
	size_t n = strlen(c);
	if (t->trim_content) {
		while (n && isspace((unsigned char)*c)) c++, n--;
		while (n && isspace((unsigned char)c[n - 1])) n--;
	}
	return tt_put(tt, c, n, user);
}

void tmpl_text_free(struct tmpl_text *tt)
{
	free(tt->s);
	free(tt->user_off);
	free(tt->user_len);
	memset(tt, 0, sizeof *tt);
}

int tmpl_render(const struct chat_template *t, const struct chat_msg *msgs, int n, bool add_generation_prompt,
		struct tmpl_text *out)
{
	memset(out, 0, sizeof *out);
	int rc = tt_str(out, t->prefix);
	bool pending_sys = false; /* llama2: system block opened, the first user turn continues it */
	for (int i = 0; i < n && rc == LM_OK; i++) {
		const char *role = msgs[i].role, *c = msgs[i].content;
		if (strcmp(role, "system") == 0) {
			rc = tt_str(out, t->system);
			if (!rc) rc = tt_content(out, t, c, true);
			if (!rc) rc = tt_str(out, t->eosys);
			pending_sys = t->sys_in_first_user;
		} else if (strcmp(role, "user") == 0) {
			if (!pending_sys) rc = tt_str(out, t->user);
			pending_sys = false;
			if (!rc) rc = tt_content(out, t, c, true);
			if (!rc) rc = tt_str(out, t->eoh);
		} else if (strcmp(role, "assistant") == 0) {
			rc = tt_str(out, t->assistant);
			if (!rc) rc = tt_content(out, t, c, false);
			if (!rc) rc = tt_str(out, t->eoa);
			if (!rc) rc = tt_str(out, t->separator);
		} else {
			rc = lm_err(_("chat template: unknown role '%s'"), role);
		}
	}
	if (rc == LM_OK && (add_generation_prompt || t->always_gen_prompt)) rc = tt_str(out, t->assistant);
	if (rc != LM_OK) tmpl_text_free(out);
	return rc;
}

int tmpl_turn(const struct chat_template *t, bool first, const char *system, const char *user,
	      struct tmpl_text *out)
{
	memset(out, 0, sizeof *out);
	int rc;
	bool sys_open = false;
	if (first) {
		rc = tt_str(out, t->prefix);
		const char *sys = system && *system ? system : t->meta_instruction;
		if (!rc && sys && *sys) {
			rc = tt_str(out, t->system);
			if (!rc) rc = tt_content(out, t, sys, system && *system);
			if (!rc) rc = tt_str(out, t->eosys);
			sys_open = t->sys_in_first_user;
		}
	} else {
		rc = tt_str(out, t->eoa);
		if (!rc) rc = tt_str(out, t->separator);
	}
	if (!rc && !sys_open) rc = tt_str(out, t->user);
	if (!rc) rc = tt_content(out, t, user, true);
	if (!rc) rc = tt_str(out, t->eoh);
	if (!rc) rc = tt_str(out, t->assistant);
	if (rc != LM_OK) tmpl_text_free(out);
	return rc;
}
