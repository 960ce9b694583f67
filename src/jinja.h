/* jinja.h: a small Jinja interpreter for the chat_template of tokenizer_config.json, as transformers'
 * apply_chat_template runs it (trim_blocks, lstrip_blocks; messages, add_generation_prompt, bos_token,
 * eos_token in the context). It covers what chat templates use: text, {{ }}, {% if/elif/else %},
 * {% for %} with loop.*, {% set %} (also namespace attributes), whitespace control with '-', expressions with
 * literals, lists, dicts, attribute and item access, slices, the usual operators, tests (defined, none,
 * string, ...), filters (length, trim, tojson, join, ...), string methods (startswith, split, strip, ...),
 * namespace(), range() and raise_exception(). Templates that need more get a clear error. */
#ifndef LMTERM_JINJA_H
#define LMTERM_JINJA_H

#include "common.h"
#include "template.h"

/* Render tmpl for the conversation into a malloc'd string. bos/eos may be NULL (undefined). */
int jinja_render(const char *tmpl, const struct chat_msg *msgs, int n, bool add_generation_prompt, const char *bos,
		 const char *eos, char **out);

#endif
