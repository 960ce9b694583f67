#!/usr/bin/env python3
"""Render the chat templates of extra.json with Python's jinja2 set up as transformers' apply_chat_template does
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, tojson with ensure_ascii=False,
raise_exception, strftime_now; tools and documents passed as None) into extra_goldens.json, for tests/test_jinja.

strftime_now reads the clock at SOURCE_DATE_EPOCH (UTC), which test_jinja sets to the same value, so that the
goldens of templates printing today's date stay reproducible.

Run: python3 gen_extra_goldens.py extra.json extra_goldens.json (needs jinja2 only)."""
import json
import sys
from datetime import datetime, timezone

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

EPOCH = 1733270400  # 2024-12-04 00:00:00 UTC; test_jinja sets SOURCE_DATE_EPOCH to it


def raise_exception(message):
	raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
	return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
	return datetime.fromtimestamp(EPOCH, timezone.utc).strftime(fmt)


def env():
	e = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
	e.filters["tojson"] = tojson
	e.globals["raise_exception"] = raise_exception
	e.globals["strftime_now"] = strftime_now
	return e


S = {"role": "system", "content": "You are a helpful assistant."}
U1 = {"role": "user", "content": "Hello"}
A1 = {"role": "assistant", "content": "Hi there"}
U2 = {"role": "user", "content": "Who are you?"}
A2 = {"role": "assistant", "content": "   I am an assistant   "}
U3 = {"role": "user", "content": "你好, \"quoted\" and 'single' \\ back"}
AT = {"role": "assistant", "content": "<think>\nLet me think.\n</think>\n\nThe answer is 4."}

CONVERSATIONS = [
	([U1], True),
	([S, U1], True),
	([S, U1], False),
	([U1, A1, U2], True),
	([S, U1, A1, U2, A2, U3], True),
	([U1, A1], False),
	([S, U1, AT, U2], True),
	([U1, U2], True),          # roles not alternating: Mistral/Gemma templates raise
	([S, U1, A1], False),
]


def main():
	src, dst = sys.argv[1], sys.argv[2]
	with open(src) as f:
		templates = json.load(f)["templates"]
	e = env()
	out = {}
	for name, t in templates.items():
		tmpl = e.from_string(t["chat_template"])
		cases = []
		for msgs, gen in CONVERSATIONS:
			ctx = {"messages": msgs, "tools": None, "documents": None, "add_generation_prompt": gen}
			if t.get("bos_token") is not None:
				ctx["bos_token"] = t["bos_token"]
			if t.get("eos_token") is not None:
				ctx["eos_token"] = t["eos_token"]
			case = {"messages": msgs, "add_generation_prompt": gen}
			try:
				case["rendered"] = tmpl.render(**ctx)
			except jinja2.exceptions.TemplateError as x:
				case["error"] = str(x)
			cases.append(case)
		out[name] = cases
	with open(dst, "w") as f:
		json.dump({"source_date_epoch": EPOCH, "goldens": out}, f, ensure_ascii=False, indent=1)
		f.write("\n")


if __name__ == "__main__":
	main()
