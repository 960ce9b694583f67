#!/usr/bin/env python3
"""Small templates, one Jinja or Python rule each, rendered with Python's jinja2 under transformers' settings
(gen_extra_goldens.env()) into snippet_goldens.json for tests/test_jinja: a rendered text must come out byte for
byte, an error (raise_exception, TypeError, UndefinedError, ...) must be an error in lmterm too. KNOWN lists the
cases lmterm knowingly does otherwise, with the reason; test_jinja holds it to exactly that.

Run: python3 gen_snippet_goldens.py snippet_goldens.json (needs jinja2 only)."""
import json
import sys

import gen_extra_goldens as g

# templates exercising Jinja semantics; rendered with messages=[user '  hi  ', assistant 'yo'], bos/eos, gen true
S = r'''
{{ x in undefined_thing }}
{{ 'a' in undefined_thing }}
{% for x in none %}{{ x }}{% endfor %}
{% for x in undefined_thing %}{{ x }}{% else %}empty{% endfor %}
{{ none | length }}
{{ undefined_thing | length }}
{{ undefined_thing | string }}
{{ undefined_thing is none }}
{{ none ~ 'x' }}
{{ true ~ 1 ~ 1.5 }}
{{ [1, 2] ~ 'x' }}
{{ {'a': 'b'} ~ '' }}
{{ 1 == 1.0 }}
{{ 'a' < 'b' }}
{{ 3 // 2 }}{{ 3 / 2 }}{{ 4 / 2 }}{{ 3 % 2 }}{{ -3 // 2 }}{{ 3.5 // 1 }}
{{ 2 ** 3 ** 2 }}
{{ -2 ** 2 }}
{{ not 1 == 2 }}
{{ 1 if none else 2 }}
{{ 'x' if false }}
{{ messages[0] }}
{{ messages | length }}{{ messages | first }}
{{ messages | last | attr('role') }}
{{ messages | map(attribute='role') | list }}
{{ messages | selectattr('role', 'in', ['user', 'system']) | list | length }}
{{ messages | selectattr('missing') | list }}
{{ messages | selectattr('role', 'defined') | list | length }}
{{ [1, none, 2] | select('none') | list }}
{{ [1, 2, 3] | map('string') | join('-') }}
{{ ['a', 'b'] | map('upper') | list }}
{{ 'abc' | list }}
{{ {'b': 1, 'a': 2} | list }}
{{ {'b': 1, 'a': 2} | dictsort }}
{{ {'b': 1, 'a': 2} | items | list }}
{{ [3, 'a'] | join }}
{{ 'Hello World' | lower }}{{ 'x' | upper }}
{{ '  x  ' | trim }}|{{ 'xxaxx' | trim('x') }}
{{ 'abc' | length }}{{ 'abc' | count }}
{{ [1, 2, 3][1:] }}{{ [1, 2, 3][:-1] }}{{ [1, 2, 3][::2] }}{{ 'hello'[1:3] }}{{ 'hello'[-3:] }}
{{ [1, 2, 3][-1] }}{{ 'abc'[0] }}
{{ [1, 2, 3][5] }}
{{ {'a': 1}['a'] }}{{ {'a': 1}.a }}{{ {'a': 1}.b }}
{{ {'a': 1}.get('a') }}{{ {'a': 1}.get('b') }}{{ {'a': 1}.get('b', 'dflt') }}
{{ {'a': 1}.keys() | list }}{{ {'a': 1}.values() | list }}
{{ 'a b c'.split() }}{{ 'a,b'.split(',') }}{{ ' a '.strip() }}{{ 'xa'.lstrip('x') }}{{ 'ax'.rstrip('x') }}
{{ 'abc'.upper() }}{{ 'ABC'.lower() }}{{ 'hello world'.title() }}{{ 'hello'.capitalize() }}
{{ 'hello'.startswith('he') }}{{ 'hello'.endswith('lo') }}{{ 'hello'.find('l') }}{{ 'hello'.count('l') }}
{{ 'a-b-c'.replace('-', '+') }}{{ '-'.join(['a', 'b']) }}
{{ '{} and {}'.format('x', 'y') }}
{{ 'x' * 3 }}{{ [1] * 2 }}
{{ range(5) | list }}{{ range(1, 5) | list }}{{ range(5, 0, -2) | list }}
{{ range(3) | sum }}{{ [1.5, 2] | sum }}
{{ [3, 1, 2] | sort(reverse=true) | list }}{{ ['b', 'A', 'c'] | sort | list }}{{ ['b', 'A', 'c'] | sort(case_sensitive=true) | list }}
{{ [{'n': 2}, {'n': 1}] | sort(attribute='n') | map(attribute='n') | list }}
{{ [1, 2, 3] | min }}{{ [1, 2, 3] | max }}
{{ ['a', 'A', 'b'] | unique | list }}
{{ 'hello' | replace('l', 'L') }}{{ 'hello' | replace('l', 'L', 1) }}
{{ 'a\nb' | indent }}
{{ 42 | string | length }}
{{ '42' | int + 1 }}{{ '4.5' | float }}{{ 'x' | int }}{{ 3.9 | int }}
{{ 3.14159 | round(2) }}{{ 3.5 | round }}{{ 4.5 | round }}{{ 3.14159 | round(1, 'floor') }}{{ 3.11 | round(1, 'ceil') }}
{{ -5 | abs }}{{ -5.5 | abs }}
{{ none | default('d') }}{{ undefined_thing | default('d') }}{{ false | default('d', true) }}
{{ [] | first }}{{ [] | last }}
{{ 'abc' | first }}{{ 'abc' | last }}{{ 'abc' | reverse }}
{{ [1, 2] | reverse | list }}
{{ {'a': [1, {'b': none}]} | tojson }}
{{ 'é"\n\t\\' | tojson }}
{{ 1.5 | tojson }}{{ 1.0 | tojson }}{{ true | tojson }}{{ none | tojson }}
{{ [] | tojson(indent=2) }}{{ {} | tojson(indent=2) }}
{{ [1, [2, 3]] | tojson(indent=1) }}
{{ 'x' is string }}{{ 1 is number }}{{ 1.5 is float }}{{ 1 is integer }}{{ true is boolean }}{{ none is none }}
{{ [] is sequence }}{{ {} is mapping }}{{ 'a' is iterable }}{{ 1 is iterable }}
{{ 2 is even }}{{ 3 is odd }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}
{{ 'a' is eq 'a' }}{{ 'a' is equalto 'b' }}{{ 1 is ne 2 }}{{ 1 is lt 2 }}{{ 2 is ge 2 }}
{{ 'abc' is lower }}{{ 'ABC' is upper }}
{{ x is not defined }}{{ messages is defined }}{{ messages[0].role is defined }}{{ messages[0].foo is undefined }}
{{ true is true }}{{ false is false }}{{ 1 is true }}
{{ namespace is callable }}{{ 'x' is callable }}
{% set a = 1 %}{% if a %}{% set a = 2 %}{% endif %}{{ a }}
{% set a = 1 %}{% for i in range(2) %}{% set a = a + i %}{{ a }}{% endfor %}{{ a }}
{% set ns = namespace(a=1, b='x') %}{% set ns.a = ns.a + 1 %}{{ ns.a }}{{ ns.b }}
{% for a, b in [[1, 2], [3, 4]] %}{{ a }}{{ b }}{% endfor %}
{% for k, v in {'x': 1}.items() %}{{ k }}={{ v }}{% endfor %}
{% for x in [1, 2, 3] if x > 1 %}{{ loop.index }}{{ x }}{{ loop.length }}{% endfor %}
{% for x in [1, 2, 3] %}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{% endfor %}
{% for x in 'ab' %}{{ loop.previtem }}{{ loop.nextitem }}|{% endfor %}
{% for x in [] %}a{% else %}b{% endfor %}
{% for x in [1, 2] %}{% for y in [3, 4] %}{{ loop.index }}{{ x }}{{ y }} {% endfor %}{% endfor %}
{% for i in range(5) %}{% if i is odd %}{% continue %}{% endif %}{{ i }}{% endfor %}
{% macro m(a, b=2) %}{{ a }}-{{ b }}{% endmacro %}{{ m(1) }}{{ m(1, 3) }}{{ m(b=5, a=0) }}
{% macro m() %}x{% endmacro %}{{ m() ~ m() }}{{ m() | length }}
{% set s %}  a  {% endset %}[{{ s }}]{{ s | trim }}
{% filter trim %}  a  {% endfilter %}|
{% filter replace('a', 'b') %}aaa{% endfilter %}
{%- if true -%}  a  {%- endif -%}|
x {#- c -#} y
{% raw %}{{ not rendered }}{% endraw %}
{{ "a" "b" }}
{{ 'it''s' }}
{{ '\u00e9\x41' }}
{{ 1e3 }}{{ 1_000 }}{{ 0.5 }}{{ .5 if false else 5. }}
{{ (1, 2) }}{{ () }}
{{ [1, 2] + [3] }}
{{ 'ab' ~ 1 + 2 }}
{{ 1 + 2 ~ 'ab' }}
{{ 'a' + 1 }}
{{ 1 + 'a' }}
{{ none + 1 }}
{{ [1] + none }}
{{ {'a': 1} + {'b': 2} }}
{{ 'x'.nonexistent() }}
{{ messages.nonexistent }}
{{ bos_token }}{{ eos_token }}{{ unk_token }}
{{ add_generation_prompt }}{{ tools }}{{ documents }}
{{ raise_exception('boom') }}
{% set x = [1, 2] %}{{ x.append(3) }}{{ x }}
{{ {'a': 1}.update({'b': 2}) }}
{{ dict(a=1, b=2) }}{{ dict({'c': 3}) }}
{{ namespace(a=1).a }}
{{ lipsum(1) }}
{{ cycler('a', 'b').next() }}
{{ joiner(',')() }}
{% with x = 1 %}{{ x }}{% endwith %}{{ x }}
{% include 'foo' %}
{% extends 'foo' %}
{% block b %}x{% endblock %}
{% import 'foo' as f %}
{% call m() %}x{% endcall %}
{{ 'abc' | center(7) }}
{{ 'a b' | wordcount }}{{ 'hello world' | truncate(8) }}
{{ [1, 2, 3, 4] | batch(2) | list }}
{{ [1, 2, 3, 4] | slice(2) | list }}
{{ 'a<b' | e }}{{ 'a<b' | escape }}{{ 'a<b' | safe }}
{{ 'x%sy' | format('z') }}{{ '%d' % 3 }}
{{ 'abc' | striptags }}{{ 'a b' | urlencode }}
{{ [1, 2] | length }}{{ ['x'] | join(', ') }}
{{ messages | groupby('role') | list | length }}
{{ 'abc' | map('upper') | join }}
{{ 'A' in 'ABC' and 'B' in ['B'] or false }}
{{ not none }}{{ not [] }}{{ not 'x' }}
{{ 0 or 'a' }}{{ 1 and 'b' }}{{ none or none }}
{{ 'a' if 'b' in 'abc' else 'c' }}
{{ (messages | length) > 1 }}
{{ messages[0]['content'] | trim | length > 1 }}
{{ -messages | length }}
{{ messages[0].content.strip().upper() | replace('I', 'i') }}
{{ [0.1, 1e-7, 1e22, 123456789.0, 1/3, 2.0**0.5 if false else 1.25] }}
{{ 7 // 0 }}
{{ 7 % 0 }}
{{ 1 / 0 }}
{{ 'abc'[5] }}
{{ 'a' < 1 }}
{{ [1] < [2] }}
{{ loop }}
{% for x in [1] %}{{ loop.cycle('a', 'b') }}{{ loop.depth }}{{ loop.depth0 }}{% endfor %}
{% for x in [1, 1, 2] %}{{ loop.changed(x) }}{% endfor %}
{% for i in range(3) recursive %}{{ i }}{% endfor %}
{% set a, b = 1, 2 %}{{ a }}{{ b }}
{% set a = b = 1 %}{{ a }}
{{ strftime_now('%A %B %d %Y %H:%M:%S %j %p %I %y %%') }}
{{ strftime_now() }}
{%- generation -%}x{%- endgeneration -%}
{% break %}
{% for x in [1] %}{% macro m() %}{% break %}{% endmacro %}{% endfor %}
{{ x | frobnicate }}
{{ x is frobnicate }}
{{ 'é'|length }}{{ 'é'[0] }}{{ 'héllo'|upper }}{{ 'héllo'|reverse }}{{ 'héllo'.title() }}{{ 'é' | tojson }}
{{ 'hé'[::-1] }}{{ 'aé'[1:] }}
'''
CASES = [line for line in S.strip('\n').split('\n')]

CASES += [
 "a\n  {%- if true %}\nb\n  {%- endif %}\nc",
 "{% if true %}\n  c\n{% endif %}\nd",
 "  {% for x in [1, 2] %}\n  {{ x }}\n  {% endfor %}\nend",
 "{%+ if true %}x{% endif +%}\ny",
 "a {# c #}\n b",
 "  {# c #}\nb",
 "{{ 'a' }}\n{{ 'b' }}\n",
 "{% set x = 1 -%}\n\n  y",
 "{% macro m(x) -%}\n  [{{ x }}]\n{%- endmacro %}\n{{ m(1) }}\n{{ m(2) }}",
 "x\r\n{% if true %}\r\ny{% endif %}\r\nz",
]
CASES += [
 "{{ '%s-%d-%05.2f-%x-%r-%%' % ('a', 3, 2.5, 255, 'q') }}",
 "{{ '%(a)s=%(b)d' % {'a': 'x', 'b': 2} }}",
 "{{ '%s' | format([1, 2]) }}|{{ '%s and %s' | format('a', 'b') }}|{{ '%-4s|' | format('a') }}",
 "{{ '{} {}'.format('a', 1) }}|{{ '{1}{0}'.format('a', 'b') }}|{{ '{x}!'.format(x=3) }}|{{ '{{}}'.format() }}",
 "{% with a = 1, b = messages | length %}{{ a }}{{ b }}{% set a = 5 %}{{ a }}{% endwith %}[{{ a }}]",
 "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set x, y = [3, 4] %}{{ x + y }}",
 "{% set a, b = [1] %}",
 "{{ '%d' % 'x' }}",
 "{{ '%s %s' % ('a',) }}",
]

CASES += [
 "{{ 'a' in none }}",
 "{{ 1 in 'abc' }}",
 "{{ 'a' in {'a': 1} }}{{ 1 in {'a': 1} }}",
]
CASES += [
 "[{{ 'ab' | center(7) }}][{{ 'abc' | center(6) }}][{{ 'abcdef' | center(3) }}][{{ 'é' | center(4) }}]",
 "{{ 'hello world and more words here' | truncate(12) }}|{{ 'hello world and more words here' | truncate(12, true) }}|{{ 'short' | truncate(9) }}|{{ 'hello world and more' | truncate(12, false, '~', 0) }}",
 "{{ [1, 2, 3, 4, 5] | batch(2) | list }}{{ [1, 2, 3] | batch(2, 'x') | list }}",
 "{{ [1, 2, 3, 4, 5] | slice(3) | list }}{{ [1, 2, 3, 4] | slice(3, 0) | list }}",
 "{% for x in [1, 1, 2, 2, 1] %}{% if loop.changed(x) %}{{ x }}{% endif %}{% endfor %}",
 "{{ (1,) }}{{ ('a', [1], none) }}{{ {'k': (1, 2)} }}",
 "{% for k, v in {'b': 1, 'a': 2} | dictsort(by='value') %}{{ k }}{{ v }}{% endfor %}",
]
CASES += [
 "{{ 2 ** 10 }} {{ 2 ** -1 }} {{ 2.0 ** 0.5 }} {{ (-2) ** 3 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 7 % -3 }} {{ -7 // 2.0 }} {{ 1 / 4 }}",
 "{{ 9223372036854775807 + 0 }} {{ -9223372036854775807 - 1 }}",
 "{{ '%c%c' % (65, 'é') }}|{{ '%05s|%-4s|%.2s' % ('a', 'b', 'xyz') }}|{{ '%+d %05d % d' % (3, 42, 7) }}",
 "{{ true + 1 }}{{ true * 2.5 }}",
 "{{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 1_000_000 }} {{ 1_0.5 }} {{ 2e3 }} {{ 2.5e-3 }} {{ 1E2 }}",
 "{{ 99999999999999999999 }}",
]
CASES += [  # Qwen3's chat template, one of its constructs at a time
 "{% set ns = namespace(a=true, i=messages|length - 1) %}{% for m in messages[::-1] %}{% set index = (messages|length - 1) - loop.index0 %}{% if ns.a and m.role == 'user' %}{% set ns.a = false %}{% set ns.i = index %}{% endif %}{% endfor %}{{ ns.i }}{{ ns.a }}",
 "{% set c = '<think>\\nr1\\n</think>\\n\\nanswer' %}[{{ c.split('</think>')[-1].lstrip('\\n') }}][{{ c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}]",
 "[{{ '\\n x\\n\\n'.strip('\\n') }}]{{ 'abc'.startswith('<tool_response>') }}{{ 'x</tool_response>'.endswith('</tool_response>') }}{{ not('a'.startswith('a') and 'b'.endswith('c')) }}",
 "{% set m = {'role': 'assistant', 'content': 'x', 'reasoning_content': 'r'} %}{{ m.reasoning_content is defined and m.reasoning_content is not none }}{{ messages[1].reasoning_content is defined }}",
 "{% if enable_thinking is defined and enable_thinking is false %}off{% endif %}|{% set enable_thinking = false %}{% if enable_thinking is defined and enable_thinking is false %}off{% endif %}{{ 0 is false }}{{ none is false }}",
 "{% for m in messages %}{% if loop.last or (not loop.last and m.content) %}[{{ loop.index0 }}{{ messages[loop.index0 - 1].role }}]{% endif %}{% endfor %}",
]
CASES += [  # syntax errors: each must fail, none may pass silently
 "{% if true false %}x{% endif %}",
 "{% for x in [1] junk %}x{% endfor %}",
 "{% if false %}a{% elif true junk %}b{% endif %}",
 "{{ 1 2 }}",
 "{% set x = 1 2 %}",
 "{% endif %}",
 "{% for x in [1] %}",
 "{{ x | }}",
 "{{ }}",
 "{% %}",
 "{{ 'a' ~ }}",
 "{{ [1, 2 }}",
 "{{ {'a' 1} }}",
 "{% macro %}{% endmacro %}",
 "{% if %}{% endif %}",
]

# what lmterm does otherwise: "unsupported" (fails with a message naming the construct) or "renders" (where
# transformers fails)
KNOWN = {
	"{% set x = [1, 2] %}{{ x.append(3) }}{{ x }}": "renders: list.append works (transformers' sandbox refuses it)",
	"{%- generation -%}x{%- endgeneration -%}": "renders: transformers' AssistantTracker tag, which plain jinja2 lacks",
	"{{ lipsum(1) }}": "unsupported",
	"{{ cycler('a', 'b').next() }}": "unsupported",
	"{{ joiner(',')() }}": "unsupported",
	"{% block b %}x{% endblock %}": "unsupported",
	"{{ 'abc' | striptags }}{{ 'a b' | urlencode }}": "unsupported",
	"{{ messages | groupby('role') | list | length }}": "unsupported",
	"{{ 99999999999999999999 }}": "unsupported: integers beyond 64 bits",
}


def main():
	e = g.env()
	ctx = dict(messages=[{"role": "user", "content": "  hi  "}, {"role": "assistant", "content": "yo"}],
		   add_generation_prompt=True, bos_token="<s>", eos_token="</s>", tools=None, documents=None)
	out = []
	for c in CASES:
		d = {"template": c}
		try:
			d["rendered"] = e.from_string(c).render(**ctx)
		except Exception as x:
			d["error"] = type(x).__name__ + ": " + str(x)
		if c in KNOWN:
			d["lmterm"] = KNOWN[c]
		out.append(d)
	assert all(any(d["template"] == k for d in out) for k in KNOWN)
	with open(sys.argv[1], "w") as f:
		json.dump({"source_date_epoch": g.EPOCH, "cases": out}, f, ensure_ascii=False, indent=1)
		f.write("\n")


if __name__ == "__main__":
	main()
