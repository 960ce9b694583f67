/* Chat templates: the built-in chatml, internlm2 and llama3 templates reproduce, byte for byte, conversations
 * that Jinja rendered from the real chat_template texts ($TESTDATA/templates/goldens.json); turn-by-turn
 * rendering (what the engine prefills) concatenates to the same text; templates are chosen from
 * tokenizer_config.json; LMDeploy JSON templates load, and bad ones are refused with the file named. */
#include "config.h"
#include "template.h"

#include "json_file.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fails;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); fails++; } } while (0)

static void show(const char *what, const char *s)
{
	printf("  %s: \"", what);
	for (; *s; s++) {
		if (*s == '\n') printf("\\n");
		else putchar(*s);
	}
	printf("\"\n");
}

/* render every conversation of goldens[key] with template name; returns cases compared */
static int check_goldens(cJSON *g, const char *key, const char *name, int *matched)
{
	const cJSON *cases = cJSON_GetObjectItemCaseSensitive(g, key);
	if (!cJSON_IsArray(cases)) {
		printf("FAIL: goldens.json has no \"%s\"\n", key);
		fails++;
		return 0;
	}
	struct chat_template t;
	if (tmpl_builtin(&t, name) != LM_OK) {
		printf("FAIL: %s\n", lm_errmsg());
		fails++;
		return 0;
	}
	int n = 0;
	*matched = 0;
	const cJSON *c;
	cJSON_ArrayForEach(c, cases) {
		bool gen = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt"));
		const char *want = cJSON_GetObjectItemCaseSensitive(c, "rendered")->valuestring;
		struct chat_msg m[16];
		int nm = golden_msgs(c, m, 16, &fails);
		struct tmpl_text tt;
		if (tmpl_render(&t, m, nm, gen, &tt) != LM_OK) {
			printf("FAIL: render: %s\n", lm_errmsg());
			fails++;
			continue;
		}
		n++;
		if (strcmp(tt.s, want) == 0) {
			(*matched)++;
		} else {
			printf("%s case %d (%s) differs:\n", key, n, name);
			show("want", want);
			show("got ", tt.s);
		}
		/* turn by turn, as the engine renders: only for conversations ending with a user turn + prompt */
		if (gen && nm && strcmp(m[nm - 1].role, "user") == 0) {
			int i = 0;
			const char *sys = NULL;
			if (strcmp(m[0].role, "system") == 0) sys = m[i++].content;
			char *acc = calloc(1, 1);
			size_t alen = 0;
			bool first = true;
			for (; i < nm; i++) {
				if (strcmp(m[i].role, "user") == 0) {
					struct tmpl_text tu;
					tmpl_turn(&t, first, sys, m[i].content, &tu);
					acc = realloc(acc, alen + tu.len + 1);
					memcpy(acc + alen, tu.s, tu.len + 1);
					alen += tu.len;
					/* the user's text is marked as such */
					bool marked = false;
					for (int u = 0; u < tu.n_user; u++)
						marked |= tu.user_len[u] == strlen(m[i].content) &&
							  memcmp(tu.s + tu.user_off[u], m[i].content, tu.user_len[u]) == 0;
					CHECK(marked || t.trim_content, "%s: user text not marked in its turn", key);
					tmpl_text_free(&tu);
					first = false;
				} else { /* the reply as the model wrote it */
					size_t l = strlen(m[i].content);
					acc = realloc(acc, alen + l + 1);
					memcpy(acc + alen, m[i].content, l + 1);
					alen += l;
				}
			}
			CHECK(strcmp(acc, tt.s) == 0, "%s case %d: turn-by-turn rendering differs from the whole", key, n);
			free(acc);
		}
		tmpl_text_free(&tt);
	}
	tmpl_free(&t);
	printf("%-55s %-9s %d/%d byte-identical\n", key, name, *matched, n);
	return n;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

/* An unseen model directory: each real template of $TESTDATA/templates/extra.json as the chat_template of a
 * tokenizer_config.json, chosen with an unknown model_type. Whichever way tmpl_choose goes (a built-in that
 * renders as the template does, or the template itself through the interpreter), the conversations the engine
 * sends (user and assistant turns, the generation prompt) come out as Python's jinja2 rendered them
 * (extra_goldens.json), up to the BOS that a built-in writes and the template leaves to the tokenizer. */
static void check_unseen(const char *td, const char *dir)
{
	char dst[4200];
	cJSON *tj = load_json(td, "templates/extra.json", &fails), *gj = tj ? load_json(td, "templates/extra_goldens.json", &fails) : NULL;
	if (!gj) {
		cJSON_Delete(tj);
		return;
	}
	char epoch[32];
	snprintf(epoch, sizeof epoch, "%.0f", cJSON_GetObjectItem(gj, "source_date_epoch")->valuedouble);
	setenv("SOURCE_DATE_EPOCH", epoch, 1);
	snprintf(dst, sizeof dst, "%s/tokenizer_config.json", dir);
	const cJSON *t;
	int nt = 0, njinja = 0;
	cJSON_ArrayForEach(t, cJSON_GetObjectItem(tj, "templates")) {
		cJSON *cfg = cJSON_CreateObject();
		cJSON_AddItemToObject(cfg, "chat_template", cJSON_Duplicate(cJSON_GetObjectItem(t, "chat_template"), 1));
		cJSON_AddItemToObject(cfg, "bos_token", cJSON_Duplicate(cJSON_GetObjectItem(t, "bos_token"), 1));
		cJSON_AddItemToObject(cfg, "eos_token", cJSON_Duplicate(cJSON_GetObjectItem(t, "eos_token"), 1));
		char *txt = cJSON_Print(cfg);
		write_file(dst, txt);
		free(txt);
		cJSON_Delete(cfg);
		struct chat_template ct;
		nt++;
		if (tmpl_choose(&ct, NULL, dir, "unseen") != LM_OK) {
			printf("FAIL: %s: %s\n", t->string, lm_errmsg());
			fails++;
			continue;
		}
		njinja += ct.jinja != NULL;
		int n = 0, ok = 0;
		const cJSON *c;
		cJSON_ArrayForEach(c, cJSON_GetObjectItem(cJSON_GetObjectItem(gj, "goldens"), t->string)) {
			const cJSON *want = cJSON_GetObjectItem(c, "rendered");
			struct chat_msg m[16];
			int nm = golden_msgs(c, m, 16, &fails);
			bool sys = false;
			for (int i = 0; i < nm; i++) sys |= strcmp(m[i].role, "system") == 0;
			if (sys || !cJSON_IsString(want)) continue; /* the engine sends no system turn */
			bool gen = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
			struct tmpl_text tt;
			int rc = ct.jinja ? tmpl_render_jinja(&ct, m, nm, gen, &tt) : tmpl_render(&ct, m, nm, gen, &tt);
			n++;
			if (rc != LM_OK) {
				printf("FAIL: %s (%s): %s\n", t->string, ct.name, lm_errmsg());
				fails++;
				continue;
			}
			const char *r = tt.s, *w = want->valuestring;
			if (!ct.jinja && ct.prefix[0] && strncmp(w, ct.prefix, strlen(ct.prefix)) != 0 &&
			    strncmp(r, ct.prefix, strlen(ct.prefix)) == 0)
				r += strlen(ct.prefix);
			if (strcmp(r, w) == 0) {
				ok++;
			} else {
				printf("FAIL: %s (chose %s) differs\n", t->string, ct.name);
				show("want", w);
				show("got ", r);
				fails++;
			}
			tmpl_text_free(&tt);
		}
		printf("unseen %-44s -> %-22s %d/%d as jinja2\n", t->string, ct.name, ok, n);
		CHECK(n >= 3, "%s: only %d conversations", t->string, n);
		tmpl_free(&ct);
	}
	printf("unseen: %d templates, %d through the interpreter\n", nt, njinja);
	/* a template the interpreter cannot run: the built-in stays, and why is kept for the engine to report */
	write_file(dst, "{\"chat_template\": \"{% for m in messages %}{{ m.content | urlencode }}{% endfor %}\"}");
	struct chat_template ct;
	CHECK(tmpl_choose(&ct, NULL, dir, "unseen") == LM_OK && !ct.jinja && ct.jinja_error &&
	      strstr(ct.jinja_error, "urlencode"), "unsupported filter: jinja %p, error '%s'", (void *)ct.jinja,
	      ct.jinja_error ? ct.jinja_error : "(none)");
	tmpl_free(&ct);
	/* a list of named templates: the "default" one, the last where two are (transformers makes a dict of them) */
	write_file(dst, "{\"chat_template\": [{\"name\": \"default\", \"template\": \"{{ 'first' }}\"}, "
			"{\"name\": \"tool_use\", \"template\": \"{{ 'tools' }}\"}, "
			"{\"name\": \"default\", \"template\": \"{% for m in messages %}({{ m.content }}){% endfor %}\"}]}");
	{
		static const struct chat_msg hm[] = { { "user", "Hi" } };
		struct tmpl_text t2;
		CHECK(tmpl_choose(&ct, NULL, dir, "unseen") == LM_OK && ct.jinja &&
		      tmpl_render_jinja(&ct, hm, 1, true, &t2) == LM_OK && strcmp(t2.s, "(Hi)") == 0,
		      "two \"default\" templates: %s", ct.name);
		tmpl_text_free(&t2);
		tmpl_free(&ct);
	}
	/* newer transformers save the template as chat_template.jinja (processors: chat_template.json) beside a
	 * tokenizer_config.json without one; that file wins where both are */
	char side[4200];
	static const struct chat_msg um[] = { { "user", "Hi" } };
	struct tmpl_text tt;
	snprintf(side, sizeof side, "%s/chat_template.jinja", dir);
	write_file(side, "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<bot>{% endif %}\n");
	CHECK(tmpl_choose(&ct, NULL, dir, "unseen") == LM_OK && ct.jinja && tmpl_render_jinja(&ct, um, 1, true, &tt) == LM_OK &&
	      strcmp(tt.s, "<user>Hi<bot>") == 0, "chat_template.jinja over tokenizer_config.json's: %s", ct.name);
	tmpl_text_free(&tt);
	tmpl_free(&ct);
	unlink(side);
	snprintf(side, sizeof side, "%s/chat_template.json", dir);
	write_file(side, "{\"chat_template\": \"{% for m in messages %}[{{ m.content }}]{% endfor %}\"}");
	write_file(dst, "{\"bos_token\": \"<s>\"}");
	CHECK(tmpl_choose(&ct, NULL, dir, "unseen") == LM_OK && ct.jinja && tmpl_render_jinja(&ct, um, 1, true, &tt) == LM_OK &&
	      strcmp(tt.s, "[Hi]") == 0, "chat_template.json: %s", ct.name);
	tmpl_text_free(&tt);
	tmpl_free(&ct);
	/* llava-hf's chat_template.json (LLaVA 1.5, LLaVA-NeXT vicuna) renders only content parts of type "text":
	 * given a string it would drop the user's text, so it is given [{"type": "text", "text": ...}] as
	 * transformers' processors are; what it renders is what jinja2 renders for those messages */
	write_file(side, "{\"chat_template\": \"{% for message in messages %}{% if message['role'] != 'system' %}"
			 "{{ message['role'].upper() + ': '}}{% endif %}{# Render all images first #}{% for content in "
			 "message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
			 "{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in "
			 "message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}"
			 "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
			 "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
			 "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}\"}");
	{
		static const struct chat_msg conv[] = { { "user", "Hi" }, { "assistant", "Hello!" }, { "user", "2+2?" } };
		CHECK(tmpl_choose(&ct, NULL, dir, "llama") == LM_OK && ct.jinja && ct.content_parts &&
		      tmpl_render_jinja(&ct, conv, 3, true, &tt) == LM_OK &&
		      strcmp(tt.s, "USER: Hi ASSISTANT: Hello! USER: 2+2? ASSISTANT:") == 0 && tt.n_user == 2,
		      "llava's chat_template.json: %s, parts %d, '%s'", ct.name, ct.content_parts, tt.s ? tt.s : "");
		tmpl_text_free(&tt);
		tmpl_free(&ct);
	}
	/* a template that handles both forms (Qwen2-VL's) keeps the string */
	write_file(side, "{\"chat_template\": \"{% for m in messages %}{% if m.content is string %}<{{ m.content }}>"
			 "{% else %}{% for c in m.content %}({{ c.text }}){% endfor %}{% endif %}{% endfor %}\"}");
	CHECK(tmpl_choose(&ct, NULL, dir, "llama") == LM_OK && ct.jinja && !ct.content_parts &&
	      tmpl_render_jinja(&ct, um, 1, true, &tt) == LM_OK && strcmp(tt.s, "<Hi>") == 0,
	      "a template of both forms: %s", ct.name);
	tmpl_text_free(&tt);
	tmpl_free(&ct);
	unlink(side);
	unlink(dst);
	cJSON_Delete(tj);
	cJSON_Delete(gj);
}

int main(void)
{
	const char *td = getenv("TESTDATA");
	if (!td) td = "tests/data-unpacked";
	char path[4096], *buf;
	size_t len;
	cJSON *g = load_json(td, "templates/goldens.json", &fails);
	if (!g) return 1;
	int m, n;
	n = check_goldens(g, "tiny-en-zh (chatml)", "chatml", &m);
	CHECK(n >= 3 && m == n, "chatml: %d of %d", m, n);
	n = check_goldens(g, "internlm2 (InternLM2/2.5 chat, published template)", "internlm2", &m);
	CHECK(n >= 3 && m == n, "internlm2: %d of %d", m, n);
	n = check_goldens(g, "llama3", "llama3", &m);
	CHECK(n >= 3 && m == n, "llama3: %d of %d", m, n);
	/* Qwen3's own template adds <think> blocks that only its Jinja text reproduces: informational */
	check_goldens(g, "qwen3", "qwen3", &m);
	cJSON_Delete(g);
	/* the Phi built-ins against the models' own templates as jinja2 renders them, on the conversations a chat
	 * renders (a generation prompt, turns that alternate): without one Phi-3.5's ends with eos_token, and Phi-4's
	 * opens an assistant turn after every user turn, which the probes send to the template itself */
	if (!(g = load_json(td, "templates/extra_goldens.json", &fails))) return 1;
	static const struct { const char *key, *name; } phi[] = { { "phi-3.5-mini-instruct", "phi-3" }, { "phi-4", "phi-4" } };
	for (size_t k = 0; k < ARRAY_SIZE(phi); k++) {
		const cJSON *cases = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(g, "goldens"), phi[k].key);
		struct chat_template t;
		CHECK(tmpl_builtin(&t, phi[k].name) == LM_OK, "%s", lm_errmsg());
		const cJSON *c;
		n = m = 0;
		cJSON_ArrayForEach(c, cases) {
			struct chat_msg cm[16];
			int nm = golden_msgs(c, cm, 16, &fails);
			bool alt = true;
			for (int i = 1; i < nm; i++) alt &= strcmp(cm[i].role, cm[i - 1].role) != 0;
			if (!alt || !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt"))) continue;
			struct tmpl_text tt;
			n++;
			if (tmpl_render(&t, cm, nm, true, &tt) != LM_OK) continue;
			const char *want = cJSON_GetObjectItemCaseSensitive(c, "rendered")->valuestring;
			if (strcmp(tt.s, want) == 0) m++;
			else show("want", want), show("got ", tt.s);
			tmpl_text_free(&tt);
		}
		CHECK(n >= 3 && m == n, "%s built-in against %s's template: %d of %d", phi[k].name, phi[k].key, m, n);
		tmpl_free(&t);
	}
	cJSON_Delete(g);
	/* a Phi-3 without a template of its own gets LMDeploy's phi-3, which --chat-template names too */
	{
		char d0[] = "/tmp/lmterm-tmpl-phi-XXXXXX";
		struct chat_template t;
		CHECK(mkdtemp(d0) && tmpl_choose(&t, NULL, d0, "phi3") == LM_OK && strcmp(t.name, "phi-3") == 0 &&
		      t.n_stop == 3 && strcmp(t.stop_words[0], "<|end|>") == 0, "no tokenizer_config.json, model_type phi3: %s", t.name);
		tmpl_free(&t);
		CHECK(tmpl_choose(&t, "phi-4", d0, "phi3") == LM_OK && strcmp(t.name, "phi-4") == 0 &&
		      strcmp(t.stop_words[0], "<|im_end|>") == 0, "--chat-template phi-4");
		tmpl_free(&t);
		rmdir(d0);
	}

	/* choosing from tokenizer_config.json */
	char dir[] = "/tmp/lmterm-tmpl-XXXXXX";
	if (!mkdtemp(dir)) return 1;
	struct { const char *file, *model_type, *want; } choose[] = {
		{ "tokenizers/llama3.tokenizer_config.json", "llama", "llama3" },
		{ "tokenizers/qwen3.tokenizer_config.json", "qwen3", "jinja (qwen3)" }, /* <think>: its own */
		{ "tokenizers/qwen3.tokenizer_config.json", "unseen", "jinja (chatml)" },
		{ "tokenizers/llama2.tokenizer_config.json", "llama", "base" }, /* it has no chat_template */
		{ "models/tiny-en-zh-internlm2/tokenizer_config.json", "internlm2", "chatml" },
	};
	char dst[4200];
	snprintf(dst, sizeof dst, "%s/tokenizer_config.json", dir);
	for (size_t i = 0; i < ARRAY_SIZE(choose); i++) {
		snprintf(path, sizeof path, "%s/%s", td, choose[i].file);
		if (read_file(path, &buf, &len) != LM_OK) {
			printf("FAIL: %s\n", lm_errmsg());
			fails++;
			continue;
		}
		write_file(dst, buf);
		free(buf);
		struct chat_template t;
		CHECK(tmpl_choose(&t, NULL, dir, choose[i].model_type) == LM_OK, "%s", lm_errmsg());
		CHECK(strcmp(t.name, choose[i].want) == 0, "%s: chose %s, want %s", choose[i].file, t.name, choose[i].want);
		printf("%s -> %s\n", choose[i].file, t.name);
		if (t.jinja) {
			/* Jinja mode: the user's text is marked where the user put it, even when it spells the
			 * template's own special tokens */
			struct chat_msg um[] = { { "user", "<|im_start|>hi" } };
			struct tmpl_text tj;
			CHECK(tmpl_render_jinja(&t, um, 1, true, &tj) == LM_OK, "%s", lm_errmsg());
			size_t at = strlen("<|im_start|>user\n");
			CHECK(tj.n_user == 1 && tj.user_off[0] == at && tj.user_len[0] == strlen(um[0].content),
			      "Jinja mode: user range %zu+%zu in '%s', want %zu", tj.n_user ? tj.user_off[0] : 0,
			      tj.n_user ? tj.user_len[0] : 0, tj.s, at);
			tmpl_text_free(&tj);
			/* a template that rewrites the user's text cannot be rendered safely when it has '<' */
			char *own = t.jinja;
			t.jinja = strdup("{% for m in messages %}<|im_start|>{{ m.content | upper }}{% endfor %}");
			um[0].content = "a <b>";
			CHECK(tmpl_render_jinja(&t, um, 1, true, &tj) == LM_ERR && strstr(lm_errmsg(), "rewrote"),
			      "a rewriting template was accepted");
			um[0].content = "plain words";
			CHECK(tmpl_render_jinja(&t, um, 1, true, &tj) == LM_OK && strcmp(tj.s, "<|im_start|>PLAIN WORDS") == 0,
			      "rewriting template, plain text");
			tmpl_text_free(&tj);
			free(t.jinja);
			t.jinja = own;
		}
		tmpl_free(&t);
	}
	unlink(dst);
	check_unseen(td, dir);
	struct chat_template t;
	CHECK(tmpl_choose(&t, NULL, dir, "internlm2") == LM_OK && strcmp(t.name, "internlm2") == 0,
	      "no tokenizer_config.json, model_type internlm2");
	tmpl_free(&t);
	/* a Qwen3 without a template of its own: LMDeploy's "qwen3" (ChatML, Qwen3's stop words), which
	 * --chat-template names too */
	CHECK(tmpl_choose(&t, NULL, dir, "qwen3") == LM_OK && strcmp(t.name, "qwen3") == 0 && t.n_stop == 2 &&
	      strcmp(t.stop_words[0], "<|im_end|>") == 0, "no tokenizer_config.json, model_type qwen3: %s", t.name);
	tmpl_free(&t);
	CHECK(tmpl_choose(&t, "qwen3", dir, "llama") == LM_OK && strcmp(t.name, "qwen3") == 0, "--chat-template qwen3");
	{
		static const struct chat_msg q[] = { { "system", "S" }, { "user", "Hi" } };
		struct tmpl_text tq;
		CHECK(tmpl_render(&t, q, 2, true, &tq) == LM_OK &&
		      strcmp(tq.s, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n") == 0,
		      "qwen3 built-in: '%s'", tq.s ? tq.s : "");
		tmpl_text_free(&tq);
	}
	tmpl_free(&t);

	/* LMDeploy JSON templates */
	snprintf(dst, sizeof dst, "%s/tmpl.json", dir);
	write_file(dst, "{\"model_name\": \"mine\", \"system\": \"<|im_start|>system\\n\", \"meta_instruction\": \"Be brief.\","
			" \"eosys\": \"<|im_end|>\\n\", \"user\": \"<|im_start|>user\\n\", \"eoh\": \"<|im_end|>\\n\","
			" \"assistant\": \"<|im_start|>assistant\\n\", \"eoa\": \"<|im_end|>\", \"separator\": \"\\n\","
			" \"stop_words\": [\"<|im_end|>\"]}");
	CHECK(tmpl_choose(&t, dst, dir, "llama") == LM_OK, "%s", lm_errmsg());
	struct tmpl_text tt;
	tmpl_turn(&t, true, NULL, "Hi", &tt);
	const char *want = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
	CHECK(strcmp(tt.s, want) == 0 && t.n_stop == 1 && strcmp(t.name, "mine") == 0, "JSON template: got '%s'", tt.s);
	tmpl_text_free(&tt);
	tmpl_free(&t);
	write_file(dst, "{\"user\": 3}");
	CHECK(tmpl_load_json(&t, dst) == LM_ERR && strstr(lm_errmsg(), "tmpl.json") && strstr(lm_errmsg(), "user"),
	      "bad key type: '%s'", lm_errmsg());
	write_file(dst, "[1, 2");
	CHECK(tmpl_load_json(&t, dst) == LM_ERR && strstr(lm_errmsg(), "tmpl.json"), "malformed: '%s'", lm_errmsg());
	unlink(dst);
	CHECK(tmpl_choose(&t, "nonesuch", dir, "llama") == LM_ERR && strstr(lm_errmsg(), "nonesuch"), "unknown name");
	rmdir(dir);
	if (fails) return 1;
	printf("templates: all checks passed\n");
	return 0;
}
