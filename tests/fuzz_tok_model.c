/* libFuzzer target for the SentencePiece tokenizer.model parser (and, when the input starts with '{', the
 * tokenizer.json loader): whatever loads must also encode and decode without a fault.
 * Build and run: make fuzz-tok-model && tests/fuzz-tok-model -max_total_time=60 [corpus-dir]
 * (seed the corpus with models/tiny-en-zh/tokenizer.model). Not part of `make check`. */
#include "config.h"
#include "tok_impl.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tokenizer *t;
	bool json = size > 0 && data[0] == '{';
	if (tok_load_mem(&t, "fuzz-input", (const char *)data, size, json)) return 0;
	static const char *texts[] = { "Hello world", " <|im_end|>  x\n\n", "\xe4\xb8\x96\xff\xfe", "", "<s></s><unk>" };
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		for (int m = 0; m < 2; m++) {
			int32_t *ids;
			int n;
			if (tok_encode(t, texts[i], strlen(texts[i]), m, &ids, &n)) continue;
			char *d = NULL;
			if (tok_decode(t, ids, n, &d) == LM_OK) free(d);
			struct tok_stream s;
			char out[1024];
			tok_stream_init(&s, t, m);
			for (int k = 0; k < n; k++) tok_stream_next(&s, ids[k], out, sizeof(out));
			tok_stream_flush(&s, out, sizeof(out));
			free(ids);
		}
	}
	/* every id decodes */
	struct tok_stream s;
	char out[1024];
	tok_stream_init(&s, t, false);
	for (int id = -1; id <= tok_vocab_size(t) && id < 20000; id++) tok_stream_next(&s, id, out, sizeof(out));
	tok_free(t);
	return 0;
}
