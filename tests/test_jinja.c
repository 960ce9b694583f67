/* The Jinja interpreter runs the real chat_template texts of Llama 3, Qwen3 (with its <think> handling) and the
 * demo models and reproduces $TESTDATA/templates/goldens.json byte for byte; plus expression and whitespace
 * cases whose results Jinja defines, and errors for what it does not support. */
#include "config.h"
#include "jinja.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

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

/* chat_template and bos/eos token texts of a tokenizer_config.json */
static char *load_cfg(const char *path, char **bos, char **eos)
{
	char *buf;
	size_t len;
	if (read_file(path, &buf, &len) != LM_OK) return NULL;
	cJSON *o = cJSON_Parse(buf);
	free(buf);
	const cJSON *t = cJSON_GetObjectItem(o, "chat_template");
	char *r = cJSON_IsString(t) ? strdup(t->valuestring) : NULL;
	const char *keys[2] = { "bos_token", "eos_token" };
	char **outs[2] = { bos, eos };
	for (int k = 0; k < 2; k++) {
		const cJSON *v = cJSON_GetObjectItem(o, keys[k]);
		if (cJSON_IsObject(v)) v = cJSON_GetObjectItem(v, "content");
		*outs[k] = cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
	}
	cJSON_Delete(o);
	return r;
}

static void check_goldens(cJSON *g, const char *key, const char *cfg_path)
{
	char *bos, *eos, *tmpl = load_cfg(cfg_path, &bos, &eos);
	if (!tmpl) {
		printf("FAIL: no chat_template in %s\n", cfg_path);
		fails++;
		return;
	}
	const cJSON *cases = cJSON_GetObjectItem(g, key), *c;
	int n = 0, ok = 0;
	cJSON_ArrayForEach(c, cases) {
		struct chat_msg m[16];
		int nm = 0;
		const cJSON *e;
		cJSON_ArrayForEach(e, cJSON_GetObjectItem(c, "messages")) {
			m[nm].role = cJSON_GetObjectItem(e, "role")->valuestring;
			m[nm].content = cJSON_GetObjectItem(e, "content")->valuestring;
			nm++;
		}
		bool gen = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
		const char *want = cJSON_GetObjectItem(c, "rendered")->valuestring;
		char *got;
		n++;
		if (jinja_render(tmpl, m, nm, gen, bos, eos, &got) != LM_OK) {
			printf("FAIL: %s case %d: %s\n", key, n, lm_errmsg());
			fails++;
			continue;
		}
		if (strcmp(got, want) == 0) {
			ok++;
		} else {
			printf("FAIL: %s case %d differs\n", key, n);
			show("want", want);
			show("got ", got);
			fails++;
		}
		free(got);
	}
	printf("%-22s %d/%d byte-identical (its own chat_template through the interpreter)\n", key, ok, n);
	CHECK(n >= 3, "%s: only %d cases", key, n);
	free(tmpl);
	free(bos);
	free(eos);
}

static void expect(const char *tmpl, const char *want)
{
	struct chat_msg m[2] = { { "user", "  hi  " }, { "assistant", "yo" } };
	char *got;
	if (jinja_render(tmpl, m, 2, true, "<s>", "</s>", &got) != LM_OK) {
		printf("FAIL: '%s': %s\n", tmpl, lm_errmsg());
		fails++;
		return;
	}
	CHECK(strcmp(got, want) == 0, "'%s' rendered '%s', want '%s'", tmpl, got, want);
	free(got);
}

static void expect_error(const char *tmpl, const char *pat)
{
	char *got;
	int rc = jinja_render(tmpl, NULL, 0, false, NULL, NULL, &got);
	CHECK(rc == LM_ERR && strstr(lm_errmsg(), pat), "'%s' should fail with '%s', got rc %d '%s'", tmpl, pat, rc,
	      lm_errmsg());
	if (rc == LM_OK) free(got);
}

int main(void)
{
	const char *td = getenv("TESTDATA"), *src = getenv("top_srcdir");
	if (!td) td = "tests/data-unpacked";
	if (!src) src = ".";
	char path[4096];
	snprintf(path, sizeof path, "%s/templates/goldens.json", td);
	char *buf;
	size_t len;
	if (read_file(path, &buf, &len) != LM_OK) {
		printf("FAIL: %s\n", lm_errmsg());
		return 1;
	}
	cJSON *g = cJSON_Parse(buf);
	free(buf);
	snprintf(path, sizeof path, "%s/tokenizers/llama3.tokenizer_config.json", td);
	check_goldens(g, "llama3", path);
	snprintf(path, sizeof path, "%s/tokenizers/qwen3.tokenizer_config.json", td);
	check_goldens(g, "qwen3", path);
	snprintf(path, sizeof path, "%s/models/tiny-en-zh/tokenizer_config.json", src);
	check_goldens(g, "tiny-en-zh (chatml)", path);
	cJSON_Delete(g);

	/* expressions and whitespace, as Jinja (trim_blocks, lstrip_blocks) renders them */
	expect("{{ messages[0].content | trim }}|{{ messages | length }}", "hi|2");
	expect("{% for m in messages %}{{ loop.index }}{{ m.role[0] }}{% if not loop.last %},{% endif %}{% endfor %}", "1u,2a");
	expect("{% for m in messages[::-1] %}{{ m.role }} {% endfor %}", "assistant user ");
	expect("  {% if true %}\nA\n  {% endif %}\nB", "A\nB");
	expect("x {{- ' y ' -}} z|a  {{- 1 }}", "x y z|a1");
	expect("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}", "2");
	expect("{% set x = 1 %}{% for m in messages %}{% set x = 5 %}{% endfor %}{{ x }}", "1");
	expect("{{ 'a,b,,c'.split(',') | join('-') }} {{ 'abc'[1:] }} {{ 'x' if 1 > 2 else 'y' }}", "a-b--c bc y");
	expect("{{ 'b' in 'abc' }} {{ 'z' not in ['a'] }} {{ none is none }} {{ foo is defined }}", "True True True False");
	expect("{{ {'a': [1, 'two']} | tojson }} {{ 7 // 2 }} {{ 2 * 3 + 1 }} {{ bos_token ~ eos_token }}",
	       "{\"a\": [1, \"two\"]} 3 7 <s></s>");
	expect("{# a comment #}{{ messages[0]['role'] }}{{ messages[5] }}", "user");
	expect_error("{{ messages[5].role }}", "undefined");
	expect_error("{% if true %}never closed", "endif");
	expect_error("{{ 'unterminated }}", "unterminated");
	expect_error("{% macro m() %}{% endmacro %}", "macro");
	expect_error("{{ raise_exception('Only user and assistant roles') }}", "Only user and assistant roles");
	expect_error("{{ x | frobnicate }}", "frobnicate");

	/* a hostile template (it comes with the model): an error, not a crash, a hang or all of memory */
	expect("{{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ -7 // 2 }} {{ 5 % 0.5 }} {{ (-4611686018427387904 * 2) % -1 }}",
	       "1 2 -2 -4 0 0");
	expect("{{ 9223372036854775807 + 1 > 0 }} {{ -(-4611686018427387904 * 2) > 0 }} {{ 4611686018427387904 * 4 > 0 }}",
	       "True True True");
	expect_error("{% for i in range(10, 0, 0) %}x{% endfor %}", "step of 0");
	expect_error("{% for i in range(10000000000) %}{% endfor %}", "items");
	expect_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "iterations");
	expect_error("{{ 'x' * 1000000000000 }}", "MiB");
	expect_error("{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
		     "MiB");
	expect_error("{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
		     "items");
	expect_error("{% set l = [] %}{{ l.append(l) }}{{ l | tojson }}", "levels");
	{
		static const char *const open[] = { "(", "-", "not ", "{% if 1 %}", "[" };
		static const char *const close[] = { ")", "", "", "{% endif %}", "]" };
		for (size_t k = 0; k < sizeof open / sizeof *open; k++) {
			size_t n = 100000, lo = strlen(open[k]), lc = strlen(close[k]);
			char *t = malloc(n * (lo + lc) + 16), *p = t;
			if (k != 3) p += sprintf(p, "{{ ");
			for (size_t i = 0; i < n; i++) p += sprintf(p, "%s", open[k]);
			*p++ = '1';
			for (size_t i = 0; i < n; i++) p += sprintf(p, "%s", close[k]);
			if (k != 3) p += sprintf(p, " }}");
			*p = 0;
			expect_error(t, "levels");
			free(t);
		}
		size_t n = 100000; /* a long chain of operators nests the same way when it is evaluated */
		char *t = malloc(4 * n + 16), *p = t;
		p += sprintf(p, "{{ 1");
		for (size_t i = 0; i < n; i++) p += sprintf(p, " ~ 1");
		sprintf(p, " }}");
		expect_error(t, "levels");
		free(t);
	}
	if (fails) return 1;
	printf("jinja: all checks passed\n");
	return 0;
}
