/* tok_impl.h: what the tokenizer files share (private to tok*.c): the tokenizer struct, a string->id hash map,
 * a pair->merge hash map, a growable byte buffer and the BPE merge loop that both formats run. */
#ifndef LMTERM_TOK_IMPL_H
#define LMTERM_TOK_IMPL_H

#include "tok.h"

/* Piece types, numbered as sentencepiece's ModelProto.SentencePiece.Type; tokenizer.json maps onto them
 * (special added token -> CONTROL, other added token -> USER, <0xNN> with byte_fallback -> BYTE). */
enum { PT_NORMAL = 1, PT_UNKNOWN = 2, PT_CONTROL = 3, PT_USER = 4, PT_UNUSED = 5, PT_BYTE = 6 };

/* Open-addressing map from a byte string to an id. Keys point into storage that outlives the map
 * (the tokenizer's piece strings). */
struct strmap {
	struct strmap_slot { const char *key; uint32_t len; int32_t id; uint64_t hash; } *slots;
	size_t cap, n;
};
int strmap_init(struct strmap *m, size_t expect);
void strmap_free(struct strmap *m);
/* Insert key -> id; keeps an existing entry (first wins) and returns 0 then, 1 when inserted, LM_ERR on OOM. */
int strmap_put(struct strmap *m, const char *key, size_t len, int32_t id);
int32_t strmap_get(const struct strmap *m, const char *key, size_t len); /* -1 if absent */

/* Map from an ordered pair of ids to (rank, merged id): the BPE merges of tokenizer.json. */
struct pairmap {
	struct pairmap_slot { uint64_t key; int32_t rank, id; } *slots; /* key 0 never used: ids are +1 */
	size_t cap, n;
};
int pairmap_init(struct pairmap *m, size_t expect);
void pairmap_free(struct pairmap *m);
int pairmap_put(struct pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id); /* first wins */
bool pairmap_get(const struct pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id);

struct buf { char *p; size_t n, cap; };
int buf_put(struct buf *b, const void *s, size_t n);
static inline int buf_putc(struct buf *b, char c) { return buf_put(b, &c, 1); }

/* Token id list being built. */
struct idvec { int32_t *v; int n, cap; };
int idvec_push(struct idvec *v, int32_t id);

/* The BPE merge loop, shared: symbols are byte ranges of one word, each with an id (or -1), merged pairwise
 * by a priority given by `pair` (lower is better; ties go to the leftmost pair), with a binary heap, so a
 * word of n symbols costs O(n log n). */
struct bpe_sym { uint32_t start, len; int32_t id; int prev, next; bool frozen; };
/* Return true and fill *prio, *id when symbols l and r may merge. */
typedef bool (*bpe_pair_fn)(const void *ctx, const char *word, const struct bpe_sym *l, const struct bpe_sym *r,
			    double *prio, int32_t *id);
int bpe_merge(struct bpe_sym *sym, int n, const char *word, bpe_pair_fn pair, const void *ctx);

struct hf; /* tokenizer.json specifics (tok_hf.c) */

struct tokenizer {
	enum tok_kind kind;
	int n;                 /* ids are 0..n-1 */
	char **piece;          /* [n] NUL-terminated piece text; "" for a gap in the id space */
	uint32_t *plen;        /* [n] byte length of piece */
	uint8_t *type;         /* [n] PT_* */
	float *score;          /* [n] sentencepiece scores (0 for tokenizer.json) */
	struct strmap ids;     /* piece text -> id */
	int bos, eos, unk;
	int byte_id[256];      /* id of <0xNN>, -1 where missing */

	/* sentencepiece */
	bool add_dummy_prefix, remove_extra_ws, escape_ws, byte_fallback;
	char *unk_surface;
	struct strmap user;    /* user-defined symbols, matched before BPE */
	uint32_t user_maxlen;
	bool user_first[256]; /* first bytes of user-defined symbols: most positions need no lookup */
	/* normalization rules (precompiled_charsmap): a darts-clone double-array trie over UTF-8 input whose
	 * values are offsets of NUL-terminated replacements in norm_strs */
	uint32_t *trie;
	size_t ntrie;
	char *norm_strs;
	size_t nnorm_strs;

	struct hf *hf;
};

/* Load from memory; name is the file named in messages (and, for JSON, where tokenizer_config.json is looked
 * for). The fuzzer's entry point. */
int tok_load_mem(struct tokenizer **t, const char *name, const char *data, size_t len, bool json);

/* Allocate the per-id arrays for n ids (pieces ""); LM_ERR on OOM. */
int tok_alloc(struct tokenizer *t, int n);
int tok_set_piece(struct tokenizer *t, int id, const char *s, size_t len);
/* "<0x0A>" -> 10; -1 if s is not a byte piece */
int tok_byte_piece(const char *s, size_t len);

int tok_spm_load(struct tokenizer *t, const char *path, const char *data, size_t len);
int tok_spm_encode(const struct tokenizer *t, const char *text, size_t len, bool match_special, struct idvec *out);

int tok_hf_load(struct tokenizer *t, const char *path, const char *data, size_t len);
int tok_hf_encode(const struct tokenizer *t, const char *text, size_t len, bool match_special, struct idvec *out);
void tok_hf_free(struct hf *hf);
/* Surface bytes of one token for the decoder (stream state s), appended to out. */
int tok_hf_surface(const struct tokenizer *t, struct tok_stream *s, int32_t id, struct buf *out);
/* Whether a stream that skips special tokens drops id, as tokenizers' decode(skip_special_tokens=True) does. */
bool tok_hf_skipped(const struct tokenizer *t, int32_t id);
/* Release what the decoder still holds (a run of byte tokens) at the end of the text. */
int tok_hf_flush(const struct tokenizer *t, struct tok_stream *s, struct buf *out);

/* UTF-8: length of the sequence that starts with byte c (0 if c cannot start one). */
int utf8_len(unsigned char c);

#endif
