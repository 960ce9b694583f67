/* tok_hf.c: tokenizer.json (stub until the HF path lands) */
#include "config.h"
#include "tok_impl.h"
#include "i18n.h"

int tok_hf_load(struct tokenizer *t, const char *path, const char *data, size_t len)
{
	return lm_err(_("%s: tokenizer.json is not supported yet"), path);
}
int tok_hf_encode(const struct tokenizer *t, const char *text, size_t len, bool match_special, struct idvec *out)
{
	return LM_ERR;
}
void tok_hf_free(struct hf *hf) {}
int tok_hf_surface(const struct tokenizer *t, struct tok_stream *s, int32_t id, struct buf *out) { return LM_OK; }
