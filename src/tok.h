/* tok.h: tokenizers, exact to their own libraries.
 *  - tokenizer.json: as the Hugging Face tokenizers library (BPE with merges, ByteLevel pre-tokenizer with the
 *    Llama-3/Qwen split regexes, Metaspace/Prepend/Replace/NFC normalizers, byte fallback, added tokens
 *    matched before BPE, decoders).
 *  - tokenizer.model: as sentencepiece (BPE by score, byte fallback, dummy prefix, user-defined symbols).
 * Where a model directory has both, tokenizer.json is used (as transformers and LMDeploy do). */
#ifndef LMTERM_TOK_H
#define LMTERM_TOK_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct tokenizer;

enum tok_kind { TOK_SPM, TOK_HF_JSON };

/* Load from a model directory (tokenizer.json preferred, else tokenizer.model). */
int tok_load_dir(struct tokenizer **t, const char *dir);
/* Load one file; the format is told by the name (.json / .model). */
int tok_load_file(struct tokenizer **t, const char *path);
/* A model or tokenizer directory (as tok_load_dir) or one tokenizer file (as tok_load_file): what the user
 * may name wherever a command takes a tokenizer (tokenize MODEL, ppl --tokenizer). */
int tok_load(struct tokenizer **t, const char *path);
void tok_free(struct tokenizer *t);
enum tok_kind tok_kind(const struct tokenizer *t);

int tok_vocab_size(const struct tokenizer *t);
/* The piece text of an id, as stored ("▁the", "<0x0A>", "<|im_end|>"); NULL if out of range. */
const char *tok_piece(const struct tokenizer *t, int id);
/* Id of an exact piece / special token text, or -1. */
int tok_piece_id(const struct tokenizer *t, const char *piece);
/* Whether id is a control/special token (never shown to the user). */
bool tok_is_special(const struct tokenizer *t, int id);
int tok_bos_id(const struct tokenizer *t); /* -1 if none */
int tok_eos_id(const struct tokenizer *t);

/* Encode text (no BOS/EOS added, like add_special_tokens=False). match_special: added/special tokens written
 * in the text are matched as tokens (the library's own behaviour for the format); false treats them as plain
 * text (chat: the user's own text). *ids is malloc'd; *n gets the count. */
int tok_encode(const struct tokenizer *t, const char *text, size_t len, bool match_special, int32_t **ids, int *n);

/* Decode a whole id sequence into a malloc'd NUL-terminated string (as the library's decode with
 * skip_special_tokens=false). */
int tok_decode(const struct tokenizer *t, const int32_t *ids, int n, char **text);

/* Incremental decoding for streaming: feed ids one by one, get the bytes that are complete. Bytes of an
 * unfinished UTF-8 character are held until it completes; special tokens produce nothing when skip_special. */
struct tok_stream {
	const struct tokenizer *t;
	bool skip_special;
	bool first;            /* no text emitted yet (a leading space of the first piece is dropped as the library does) */
	unsigned char pend[8];
	int npend;
	/* added by the tokenizer: decoder state */
	int ntok;              /* tokens fed so far (a Metaspace decoder strips the first token's space) */
	size_t nout;           /* surface bytes produced so far (before UTF-8 assembly) */
	bool ws_seen;          /* sentencepiece: the last piece consumed the leading space */
	int nstripped;         /* tokenizer.json Strip decoder: characters stripped from the start so far */
	unsigned char run[64]; /* tokenizer.json ByteFallback decoder: the current run of <0xNN> tokens, judged whole */
	int nrun;
};
void tok_stream_init(struct tok_stream *s, const struct tokenizer *t, bool skip_special);
/* Write the completed text for id to out (NUL-terminated, at most cap-1 bytes; longer text is cut, and 512
 * bytes always suffice for the vocabularies we know: the longest piece is 256 bytes); returns bytes written.
 * Invalid byte sequences become U+FFFD as the format's library does it (sentencepiece: one per bad byte;
 * tokenizer.json: a run of <0xNN> tokens that is not valid UTF-8 as a whole, one per byte, so such a run is
 * held until a token of another kind ends it; ByteLevel: one per broken sequence). A tokenizer may be shared
 * by threads (encode/decode only read it); a stream belongs to one thread. */
int tok_stream_next(struct tok_stream *s, int32_t id, char *out, size_t cap);
/* Flush held bytes (an incomplete character at the end becomes U+FFFD). */
int tok_stream_flush(struct tok_stream *s, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
