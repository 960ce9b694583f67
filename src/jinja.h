/* jinja.h: a Jinja interpreter for the chat_template of tokenizer_config.json, run as transformers'
 * apply_chat_template runs it: trim_blocks, lstrip_blocks, loop controls, no autoescape, one trailing newline
 * dropped; messages, add_generation_prompt, bos_token, eos_token, tools and documents (none) in the context;
 * raise_exception and strftime_now among the globals. Values, printing and errors follow Python's (str() and
 * repr(), float digits, floor division, TypeErrors for mixed operands, strings counted in code points).
 *
 * It covers the language real chat templates use: text, {{ }}, if/elif/else, for (unpacking, filters, else,
 * loop.*, break/continue), set (names, namespace attributes, tuples, blocks), macros, with, filter blocks, raw;
 * literals, tuples, slices, the operators; Jinja's tests and filters (tojson with indent and separators,
 * selectattr/map/join/sort/dictsort/indent/...); str, dict and list methods; printf-style '%' and str.format.
 * What it does not have (include/extends/blocks, call blocks, lipsum/cycler/joiner, groupby, urlencode,
 * striptags, integers beyond 64 bits) is an error naming the construct, as are a template's own
 * raise_exception and Python's TypeErrors. Nesting, steps, memory and output are bounded: no template hangs or
 * crashes the caller. tests/test_jinja checks it against Python's jinja2 on 45 real templates and 219 small
 * ones. */
#ifndef LMTERM_JINJA_H
#define LMTERM_JINJA_H

#include "common.h"
#include "template.h"

/* Render tmpl for the conversation into a malloc'd string. bos/eos may be NULL (undefined). */
int jinja_render(const char *tmpl, const struct chat_msg *msgs, int n, bool add_generation_prompt, const char *bos,
		 const char *eos, char **out);

/* The same with each message's content a list of one part, [{"type": "text", "text": CONTENT}], as a processor's
 * chat template takes it (llava-hf's chat_template.json renders only the parts of type "text"). */
int jinja_render_parts(const char *tmpl, const struct chat_msg *msgs, int n, bool add_generation_prompt,
		       const char *bos, const char *eos, char **out);

#endif
