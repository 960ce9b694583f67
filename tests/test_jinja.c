/* The Jinja interpreter runs the real chat_template texts of Llama 3, Qwen3 (with its <think> handling) and the
 * demo models and reproduces $TESTDATA/templates/goldens.json byte for byte; it runs 46 more real templates of
 * popular models (templates/extra.json: Llama 3.1-3.3, Qwen2.5, Qwen3, QwQ, Mistral v0.1-v7/Nemo/Small 3.2, Gemma 1-3,
 * Phi-3/3.5/4, DeepSeek, GLM, Granite, gpt-oss, Command R, Kimi, ...) as Python's jinja2 does under transformers'
 * settings (extra_goldens.json) and 225 small templates, one rule each (snippet_goldens.json); plus expression and
 * whitespace cases whose results Jinja defines, errors for what it does not support, and its bounds. */
#include "config.h"
#include "jinja.h"

#include "json_file.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		int nm = golden_msgs(c, m, 16, &fails);
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

/* The real chat templates of $TESTDATA/templates/extra.json (Llama 3.1-3.3, Qwen2.5, Mistral, Gemma, Phi-3, DeepSeek,
 * GLM, ...), each rendered for the conversations of extra_goldens.json: as Python's jinja2 rendered them under
 * transformers' settings (gen_extra_goldens.py), byte for byte, or failing with the same raise_exception message. */
static void check_extra(const char *td)
{
	cJSON *tj = load_json(td, "templates/extra.json", &fails), *gj = tj ? load_json(td, "templates/extra_goldens.json", &fails) : NULL;
	if (!gj) {
		cJSON_Delete(tj);
		return;
	}
	/* strftime_now reads this instant, as the generator's did */
	char epoch[32];
	snprintf(epoch, sizeof epoch, "%.0f", cJSON_GetObjectItem(gj, "source_date_epoch")->valuedouble);
	setenv("SOURCE_DATE_EPOCH", epoch, 1);
	const cJSON *t, *golds = cJSON_GetObjectItem(gj, "goldens");
	int ntmpl = 0;
	cJSON_ArrayForEach(t, cJSON_GetObjectItem(tj, "templates")) {
		const char *tmpl = cJSON_GetObjectItem(t, "chat_template")->valuestring;
		const cJSON *b = cJSON_GetObjectItem(t, "bos_token"), *e = cJSON_GetObjectItem(t, "eos_token");
		const char *bos = cJSON_IsString(b) ? b->valuestring : NULL, *eos = cJSON_IsString(e) ? e->valuestring : NULL;
		const cJSON *c;
		int n = 0, ok = 0, nerr = 0;
		ntmpl++;
		cJSON_ArrayForEach(c, cJSON_GetObjectItem(golds, t->string)) {
			struct chat_msg m[16];
			int nm = golden_msgs(c, m, 16, &fails);
			bool gen = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
			const cJSON *want = cJSON_GetObjectItem(c, "rendered"), *werr = cJSON_GetObjectItem(c, "error");
			char *got = NULL;
			int rc = jinja_render(tmpl, m, nm, gen, bos, eos, &got);
			n++;
			if (werr) {
				nerr++;
				if (rc == LM_ERR && strstr(lm_errmsg(), werr->valuestring)) ok++;
				else {
					printf("FAIL: %s case %d: want the error '%s', got rc %d '%s'\n", t->string, n,
					       werr->valuestring, rc, rc == LM_OK ? got : lm_errmsg());
					fails++;
				}
			} else if (rc != LM_OK) {
				printf("FAIL: %s case %d: %s\n", t->string, n, lm_errmsg());
				fails++;
			} else if (strcmp(got, want->valuestring) == 0) {
				ok++;
			} else {
				printf("FAIL: %s case %d differs\n", t->string, n);
				show("want", want->valuestring);
				show("got ", got);
				fails++;
			}
			free(got);
		}
		printf("%-44s %d/%d as jinja2 (%d of them its own error)\n", t->string, ok, n, nerr);
		CHECK(n >= 5, "%s: only %d cases", t->string, n);
	}
	CHECK(ntmpl >= 30, "only %d templates in extra.json", ntmpl);
	cJSON_Delete(tj);
	cJSON_Delete(gj);
}

/* $TESTDATA/templates/snippet_goldens.json: small templates, one rule of Jinja or Python each, as jinja2 rendered
 * them under transformers' settings (gen_snippet_goldens.py), byte for byte; where jinja2 failed (a TypeError, an
 * undefined name, raise_exception) lmterm fails too. The cases marked "lmterm" are what it knowingly does
 * otherwise: "unsupported" ones fail with a message, "renders" ones render where transformers fails. */
static void check_snippets(const char *td)
{
	cJSON *j = load_json(td, "templates/snippet_goldens.json", &fails);
	if (!j) return;
	struct chat_msg m[2] = { { "user", "  hi  " }, { "assistant", "yo" } };
	const cJSON *c;
	int n = 0, ok = 0, nerr = 0, known = 0;
	cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases")) {
		const char *t = cJSON_GetObjectItem(c, "template")->valuestring;
		const cJSON *want = cJSON_GetObjectItem(c, "rendered"), *werr = cJSON_GetObjectItem(c, "error"),
			    *mark = cJSON_GetObjectItem(c, "lmterm");
		char *got = NULL;
		int rc = jinja_render(t, m, 2, true, "<s>", "</s>", &got);
		bool good;
		n++;
		if (mark) {
			known++;
			good = strncmp(mark->valuestring, "unsupported", 11) == 0 ? rc == LM_ERR : rc == LM_OK;
		} else if (werr) {
			nerr++;
			good = rc == LM_ERR;
		} else {
			good = rc == LM_OK && strcmp(got, want->valuestring) == 0;
		}
		if (good) {
			ok++;
		} else {
			printf("FAIL: snippet '%s'\n", t);
			show("want", mark ? mark->valuestring : werr ? werr->valuestring : want->valuestring);
			show("got ", rc == LM_OK ? got : lm_errmsg());
			fails++;
		}
		free(got);
	}
	printf("snippets: %d/%d as jinja2 (%d of them errors there; %d knowingly otherwise)\n", ok, n, nerr, known);
	CHECK(n >= 150, "only %d snippets", n);
	cJSON_Delete(j);
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
	cJSON *g = load_json(td, "templates/goldens.json", &fails);
	if (!g) return 1;
	snprintf(path, sizeof path, "%s/tokenizers/llama3.tokenizer_config.json", td);
	check_goldens(g, "llama3", path);
	snprintf(path, sizeof path, "%s/tokenizers/qwen3.tokenizer_config.json", td);
	check_goldens(g, "qwen3", path);
	snprintf(path, sizeof path, "%s/models/tiny-en-zh/tokenizer_config.json", src);
	check_goldens(g, "tiny-en-zh (chatml)", path);
	cJSON_Delete(g);
	check_extra(td);
	check_snippets(td);

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
	expect_error("{% with a = 1 %}x", "{% with %} without {% endwith %}");
	expect_error("{% set x %}x", "{% set %} without {% endset %}");
	expect_error("{% macro m() %}x", "{% macro %} without {% endmacro %}");
	expect_error("{% filter upper %}x", "{% filter %} without {% endfilter %}");
	expect_error("{% filter upper x %}y{% endfilter %}", "unexpected 'x'");
	expect_error("{{ 'unterminated }}", "unterminated");
	expect_error("{{ raise_exception('Only user and assistant roles') }}", "Only user and assistant roles");
	expect_error("{{ x | frobnicate }}", "frobnicate");

	/* a hostile template (it comes with the model): an error, not a crash, a hang or all of memory */
	/* Python's floor division and modulo (the remainder takes the divisor's sign); integers are 64-bit, and what
	 * would not fit is an error (Python would grow the integer) */
	expect("{{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ -7 // 2 }} {{ 5 % 0.5 }} {{ (-4611686018427387904 * 2) % -1 }}",
	       "1 2 -2 -4 0.0 0");
	/* divisibleby as Python's value % num == 0: a float divisor below 1 and -1 under the smallest integer were
	 * an integer division by 0 and an overflow (SIGFPE) */
	expect("{{ 10 is divisibleby 0.5 }} {{ 10 is divisibleby 3.0 }} {{ 9 is divisibleby 3 }} "
	       "{{ (-4611686018427387904 * 2) is divisibleby(-1) }}",
	       "True False True True");
	expect_error("{{ 9223372036854775807 + 1 }}", "overflow");
	expect_error("{{ -(-4611686018427387904 * 2) }}", "overflow");
	expect_error("{{ 4611686018427387904 * 4 }}", "overflow");
	expect_error("{{ (-4611686018427387904 * 2) // -1 }}", "overflow");
	/* a string of a float past 64 bits: clamped as every float made an integer (the cast, undefined, gave -2**63) */
	expect("{{ '1e300' | int }} {{ '-1e300' | int }} {{ '2.7' | int }} {{ 'x' | int(5) }}",
	       "9223372036854775807 -9223372036854775808 2 5");
	expect_error("{{ (-4611686018427387904 * 2) | abs }}", "overflow in 'abs'"); /* it printed -9223372036854775808 */
	expect("{{ -5 | abs }} {{ (-4611686018427387904 * 2 + 1) | abs }} {{ -2.5 | abs }}", "5 9223372036854775807 2.5");
	expect_error("{% for i in range(10, 0, 0) %}x{% endfor %}", "step must not be zero");
	expect_error("{% for i in range(10000000000) %}{% endfor %}", "too long");
	/* range()'s length where hi - lo does not fit in 64 bits, or the step past the end does not (they were an
	 * endless loop that took all memory, and LLONG_MIN / -1, a SIGFPE) */
	expect_error("{{ range(0, -4611686018427387904 * 2, -1) | length }}", "too long");
	expect_error("{{ range(-4611686018427387904 * 2, 9223372036854775807) | length }}", "too long");
	expect("{{ range(9223372036854775806, 9223372036854775807, 10) | list }} {{ range(-9223372036854775807, "
	       "-4611686018427387904 * 2, -3) | list }} {{ range(3, 0, -1) | list }} {{ range(0, 7, 3) | list }} "
	       "{{ range(5, 1) | list }}",
	       "[9223372036854775806] [-9223372036854775807] [3, 2, 1] [0, 3, 6] []");
	/* tojson's indent of 2e9 spaces a line: it stops at the memory limit (it went on writing single spaces past
	 * it, 2e9 rounds, over a minute; the render failed only then) */
	double t0 = now_s();
	expect_error("{{ [1] | tojson(indent=2000000000) }}", "chat template:");
	CHECK(now_s() - t0 < 20, "tojson(indent=2000000000) took %.0f s", now_s() - t0);
	/* repetition: n * k wrapped past 2**64 to a small size (then took memory until abort()), and an empty list or
	 * string was repeated k times (for ever) */
	expect_error("{{ ([1, 2, 3, 4] * 4611686018427387904) | length }}", "more than a million");
	expect_error("{{ ('abcd' * 4611686018427387904) | length }}", "more than 64 MiB");
	expect("{{ ([] * 9223372036854775807) | length }} {{ ('' * 9223372036854775807) | length }} {{ [1, 2] * 3 }} "
	       "{{ 'ab' * 3 }} {{ ([1, 2] * 500000) | length }}",
	       "0 0 [1, 2, 1, 2, 1, 2] ababab 1000000");
	/* truncate() with length + leeway past 2**63 (it wrapped negative and cut at an offset past the string's end) */
	expect("{{ 'hello world' | truncate(9223372036854775807) }}|{{ 'hello world' | truncate(100000000, leeway=9223372036854775807) }}|"
	       "{{ 'hello world' | truncate(7, leeway=0) }}|{{ 'hello world' | truncate(7, leeway=4) }}",
	       "hello world|hello world|hell...|hello world");
	/* a slice whose step, added to an index, overflowed back into range (it read outside the string or list) */
	expect("{{ 'abc'[1::9223372036854775807] }} {{ [1, 2, 3][2::9223372036854775806] }} {{ 'abcdef'[5:0:-4611686018427387904 * 2] }} "
	       "{{ 'abcdef'[::-2] }} {{ [1, 2, 3, 4, 5][1:4:2] }} {{ 'abcdef'[-2::-1] }}",
	       "b [3] f fdb [2, 4] edcba");
	expect_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "chat template:");
	expect_error("{{ 'x' * 1000000000000 }}", "chat template:");
	expect_error("{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
		     "chat template:");
	expect_error("{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
		     "chat template:");
	/* a list that holds itself: printing it, its JSON and comparing it end (Python prints [[...]]; an error here) */
	expect_error("{% set l = [] %}{{ l.append(l) }}{{ l | tojson }}", "levels deep");
	expect_error("{% set l = [] %}{{ l.append(l) }}{{ l }}", "levels deep");
	expect("{% set l = [] %}{{ l.append(l) }}{{ l == l }}", "NoneTrue");
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
			expect_error(t, "nested more than");
			free(t);
		}
		size_t n = 100000; /* a long chain of operators nests the same way when it is evaluated */
		char *t = malloc(4 * n + 16), *p = t;
		p += sprintf(p, "{{ 1");
		for (size_t i = 0; i < n; i++) p += sprintf(p, " ~ 1");
		sprintf(p, " }}");
		expect_error(t, "nested more than");
		free(t);
	}

	/* What real templates use beyond the above (macros, {% set %} blocks, loop controls, selectattr/map/tojson(indent)
	 * and the other filters, Python's repr and float printing, string escapes, "}}" inside strings, strftime_now at
	 * the SOURCE_DATE_EPOCH check_extra set). The expected texts were worked out by hand from Jinja's and Python's
	 * rules and then confirmed with Python's jinja2 3.1.6 under transformers' settings (gen_extra_goldens.env()). */
	expect("{{ \"}}\" }}|{{ '%}' }}|{{ \"a'b\" }}",
	       "}}|%}|a'b");
	expect("{{ 'a\\x41\\u00e9\\d\\'' }}",
	       "aAé\\d'");
	expect("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('bob') }} {{ greet('al', punct='?') }} {{ greet(punct='.', name='cy') }}",
	       "Hi bob! Hi al? Hi cy.");
	expect("{% set x %}A{{ 1 + 1 }}{% endset %}[{{ x }}]",
	       "[A2]");
	expect("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i > 4 %}{% break %}{% endif %}{{ i }}{% endfor %}",
	       "0134");
	expect("{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | map('trim') | join(',') }}",
	       "hi");
	expect("{{ messages | rejectattr('role', 'eq', 'user') | list | length }} {{ [0, 1, '', 'a'] | select | list }} {{ [1, 2, 3, 4] | reject('odd') | list }}",
	       "1 [1, 'a'] [2, 4]");
	expect("{{ [3, 1, 2] | sort | join }}{{ [1, 2, 2, 1] | unique | list }}{{ [1, 2, 3] | sum }}{{ ['b', 'A'] | max }}{{ messages | map(attribute='role') | sort(reverse=true) | first }}",
	       "123[1, 2]6buser");
	expect("{{ {'a': [1, 2.5, none, true], 'b': 'x', 'c': {}} | tojson(indent=2) }}",
	       "{\n  \"a\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"b\": \"x\",\n  \"c\": {}\n}");
	expect("{{ {'a': 1, 'b': 'é\"'} | tojson(separators=(',', ':')) }}",
	       "{\"a\":1,\"b\":\"é\\\"\"}");
	expect("{{ 'hello world-foo(bar' | title }} {{ \"they're here\".title() }} {{ 'hELLO wORLD' | capitalize }}",
	       "Hello World-Foo(Bar They'Re Here Hello world");
	expect("[{{ 'a\\nb\\n\\nc' | indent(2) }}][{{ 'a\\nb\\n' | indent(2, true) }}][{{ 'x\\n\\ny' | indent(1, blank=true) }}]",
	       "[a\n  b\n\n  c][  a\n  b\n][x\n \n y]");
	expect("{{ [1, 'a', {'k': none}, \"it's\"] }} {{ 1.0 }} {{ 2.5e-7 }} {{ 1e16 }} {{ 7 / 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 0.1 + 0.2 }} {{ 100.0 }}",
	       "[1, 'a', {'k': None}, \"it's\"] 1.0 2.5e-07 1e+16 3.5 -4 2 1024 0.30000000000000004 100.0");
	expect("{{ strftime_now('%Y-%m-%d %a %b %d') }} {{ strftime_now is defined }}",
	       "2024-12-04 Wed Dec 04 True");
	{ /* a SOURCE_DATE_EPOCH that gives no date is an error: "abc" was 1970, and past gmtime's years the date
	   * was read from an uninitialised struct tm */
		char keep[64];
		snprintf(keep, sizeof keep, "%s", getenv("SOURCE_DATE_EPOCH") ? getenv("SOURCE_DATE_EPOCH") : "");
		static const char *const bad[] = { "abc", "12x", "99999999999999999", "-99999999999999999",
						   "99999999999999999999" };
		for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
			setenv("SOURCE_DATE_EPOCH", bad[i], 1);
			expect_error("{{ strftime_now('%Y') }}", "SOURCE_DATE_EPOCH");
		}
		setenv("SOURCE_DATE_EPOCH", "0", 1);
		expect("{{ strftime_now('%Y-%m-%d %H:%M %a') }}", "1970-01-01 00:00 Thu");
		setenv("SOURCE_DATE_EPOCH", keep, 1);
	}
	expect("{{ 'X' is upper }} {{ 3 is in [1, 3] }} {{ 'a,b,c'.rsplit(',', 1) }} {{ 'abc'.startswith(('x', 'a')) }} {{ 'a b  c'.split(none, 1) if false else 'a,b,c'.split(',', 1) }}",
	       "True True ['a,b', 'c'] True ['a', 'b,c']");
	expect("{% filter upper %}abc{{ 'd' }}{% endfilter %}",
	       "ABCD");
	expect("{{ 'aaa'.replace('a', 'b', 2) }} {{ 'a-b' | replace('-', '+') }}",
	       "bba a+b");
	expect("{% for k, v in {'x': 1, 'y': 2} | dictsort(reverse=true) %}{{ k }}{{ v }}{% endfor %}{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}{{ v }}{% endfor %}",
	       "y2x1b1a2");
	expect("{{ loop_undefined ~ 'x' }}{{ range(3) | list }}{{ dict(a=1) }}",
	       "x[0, 1, 2]{'a': 1}");
	expect("{% for m in messages %}{{ loop.cycle('odd', 'even') }}{% endfor %}",
	       "oddeven");
	expect("{{ 'abc' | reverse }}{{ 'x' * 3 }}{{ 3.7 | round }}{{ 2.5 | round }}{{ 3.14159 | round(2) }}{{ -3 | abs }}",
	       "cbaxxx4.02.03.143");
	expect("{{ messages[0].content | default('none', true) }}|{{ '' | default('empty', true) }}|{{ nope | default('d') }}",
	       "  hi  |empty|d");
	expect("{% set ns = namespace(items=[]) %}{% for m in messages %}{% set ns.items = ns.items + [m.role] %}{% endfor %}{{ ns.items | join('/') }}",
	       "user/assistant");
	expect("{%- macro r(m) -%}\n  <{{ m.role }}>\n{%- endmacro -%}\n{% for m in messages %}\n  {{ r(m) }}\n{% endfor %}",
	       "  <user>\n  <assistant>\n");
	expect("{{ 'Hi' if messages | length > 1 else 'Lo' }}{{ messages[-1]['content'][::-1] }}{{ (1, 2) | list }}",
	       "Hioy[1, 2]");
	/* jinja2: 'undefined_name' is undefined */
	expect_error("{{ 'a' + undefined_name }}", "'undefined_name' is undefined");
	/* jinja2: 'break' outside loop (<template>, line 11) */
	expect_error("{% break %}", "outside a loop");
	/* jinja2: no loader for this environment specified */
	expect_error("{% include 'x' %}", "include");
	/* jinja2: 'nothing' is undefined */
	expect_error("{{ nothing() }}", "'nothing' is undefined");
	/* bounded where Jinja would run for ever or exhaust memory: fail, never hang or crash */
	expect_error("{% set r = range(1000) %}{% for i in r %}{% for j in r %}{% for k in r %}{% endfor %}{% endfor %}{% endfor %}",
		     "too much work");
	expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested too deeply");
	/* sorting is n log n (a million items in well under a second); unique() is quadratic and bounded by the steps */
	expect("{{ (range(100000) | list * 10) | sort(reverse=true) | first }} {{ range(1000) | reverse | sort | first }}", "99999 0");
	expect_error("{{ (range(100000) | list * 10) | unique | list | length }}", "too much work");
	expect_error("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "64 MiB");
	{
		static char deep[3000]; /* "{{" 1000 "(", "x", 1000 ")" "}}" */
		memcpy(deep, "{{", 2);
		memset(deep + 2, '(', 1000);
		deep[1002] = 'x';
		memset(deep + 1003, ')', 1000);
		memcpy(deep + 2003, "}}", 3);
		expect_error(deep, "nested more than");
	}
	if (fails) return 1;
	printf("jinja: all checks passed\n");
	return 0;
}
