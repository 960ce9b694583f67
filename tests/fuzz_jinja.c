/* fuzz_jinja: libFuzzer target for the chat-template interpreter (src/jinja.c), which runs templates taken
 * from model directories, so any text must give a result or an error, never a crash, a hang or a leak.
 *   make fuzz-jinja && ./tests/fuzz-jinja -max_total_time=300 -max_len=8192 CORPUS
 * A corpus to start from: each template of tests/data/templates/extra.json and snippet_goldens.json in a
 * file of its own (tests/engine.mk). Each input is rendered for a four-message conversation, with and without
 * the generation prompt, and in the parts form (content as a list of text parts). */
#include "config.h"
#include "jinja.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *t = malloc(size + 1);
	if (!t) return 0;
	memcpy(t, data, size);
	t[size] = '\0';
	static const struct chat_msg m[] = { { "system", "Be brief." }, { "user", "Hi {{ x }} %s" },
					     { "assistant", "Hello!" }, { "user", "你好" } };
	for (int k = 0; k < 3; k++) {
		char *out = NULL;
		int rc = k == 2 ? jinja_render_parts(t, m, 4, true, "<s>", "</s>", &out)
				: jinja_render(t, m, 4, k == 0, k ? NULL : "<s>", "</s>", &out);
		if (rc == LM_OK) free(out);
		lm_err_clear();
	}
	free(t);
	return 0;
}
