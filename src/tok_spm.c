/* tok_spm.c: SentencePiece tokenizer.model, as the sentencepiece library encodes it (BPE models).
 * The ModelProto is parsed here by hand (protobuf wire format): pieces (piece, score, type), the trainer_spec
 * fields we need (model_type, byte_fallback, unk/bos/eos ids, unk_surface) and the normalizer_spec (rules as a
 * precompiled_charsmap, add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces). Encoding: the
 * normalizer (user-defined symbols kept, longest rule, spaces), then user-defined symbols as frozen symbols,
 * then BPE by piece score (highest first, leftmost on ties), then unknown pieces fall back to <0xNN> bytes
 * (or one fused <unk>). */
#include "config.h"
#include "tok_impl.h"
#include "i18n.h"

#include <stdlib.h>
#include <string.h>

struct pb { const unsigned char *p, *end; };

static int pb_varint(struct pb *b, uint64_t *v)
{
	uint64_t r = 0;
	for (int s = 0; s < 64; s += 7) {
		if (b->p >= b->end) return LM_ERR;
		unsigned char c = *b->p++;
		r |= (uint64_t)(c & 0x7f) << s;
		if (!(c & 0x80)) {
			*v = r;
			return LM_OK;
		}
	}
	return LM_ERR;
}

/* One field: number, wire type, and either its varint/fixed value or its bytes. */
struct pb_field { uint32_t num, wire; uint64_t v; const unsigned char *data; size_t len; };

static int pb_next(struct pb *b, struct pb_field *f)
{
	uint64_t key;
	if (pb_varint(b, &key)) return LM_ERR;
	f->num = (uint32_t)(key >> 3);
	f->wire = key & 7;
	f->data = NULL;
	f->len = 0;
	switch (f->wire) {
	case 0: return pb_varint(b, &f->v);
	case 1:
		if (b->end - b->p < 8) return LM_ERR;
		memcpy(&f->v, b->p, 8);
		b->p += 8;
		return LM_OK;
	case 5: {
		if (b->end - b->p < 4) return LM_ERR;
		uint32_t u;
		memcpy(&u, b->p, 4);
		f->v = u;
		b->p += 4;
		return LM_OK;
	}
	case 2: {
		uint64_t n;
		if (pb_varint(b, &n) || n > (uint64_t)(b->end - b->p)) return LM_ERR;
		f->data = b->p;
		f->len = (size_t)n;
		b->p += n;
		return LM_OK;
	}
	default: return LM_ERR;
	}
}

static int bad(const char *path, const char *what)
{
	return lm_err(_("%s: not a valid SentencePiece model (%s)"), path, what);
}

/* Count the pieces first so the arrays are allocated once. */
static int count_pieces(const char *path, const char *data, size_t len, int *n)
{
	struct pb b = { (const unsigned char *)data, (const unsigned char *)data + len };
	struct pb_field f;
	*n = 0;
	while (b.p < b.end) {
		if (pb_next(&b, &f)) return bad(path, _("truncated or corrupt protobuf"));
		if (f.num == 1) {
			if (f.wire != 2) return bad(path, _("piece is not a message"));
			if (*n == 1 << 24) return bad(path, _("too many pieces"));
			(*n)++;
		}
	}
	if (*n == 0) return bad(path, _("no pieces"));
	return LM_OK;
}

static int parse_piece(struct tokenizer *t, const char *path, int id, const struct pb_field *pf)
{
	struct pb b = { pf->data, pf->data + pf->len };
	struct pb_field f;
	bool have = false;
	while (b.p < b.end) {
		if (pb_next(&b, &f)) return bad(path, _("corrupt piece"));
		if (f.num == 1 && f.wire == 2) {
			if (tok_set_piece(t, id, (const char *)f.data, f.len)) return LM_ERR;
			have = true;
		} else if (f.num == 2 && f.wire == 5) {
			uint32_t u = (uint32_t)f.v;
			memcpy(&t->score[id], &u, 4);
		} else if (f.num == 3 && f.wire == 0) {
			if (f.v < PT_NORMAL || f.v > PT_BYTE) return bad(path, _("unknown piece type"));
			t->type[id] = (uint8_t)f.v;
		}
	}
	if (!have) return bad(path, _("piece without text"));
	return LM_OK;
}

/* precompiled_charsmap: uint32 trie size in bytes (little endian), the trie's units, then the replacement
 * strings. Checked here so that lookups cannot leave the arrays. */
static int load_charsmap(struct tokenizer *t, const char *path, const unsigned char *p, size_t n)
{
	if (n < 4) return bad(path, _("normalization rules too short"));
	uint32_t tsize = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	if (tsize == 0 || tsize % 4 || tsize > n - 4) return bad(path, _("normalization rules: bad trie size"));
	t->ntrie = tsize / 4;
	t->trie = malloc(tsize);
	t->nnorm_strs = n - 4 - tsize;
	t->norm_strs = malloc(t->nnorm_strs + 1);
	if (!t->trie || !t->norm_strs) return lm_err(_("out of memory"));
	for (size_t i = 0; i < t->ntrie; i++) {
		const unsigned char *u = p + 4 + 4 * i;
		t->trie[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
	}
	memcpy(t->norm_strs, p + 4 + tsize, t->nnorm_strs);
	t->norm_strs[t->nnorm_strs] = 0; /* a replacement running off the end stops here */
	return LM_OK;
}

/* darts-clone unit fields */
static inline bool unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t unit_value(uint32_t u) { return u & ((1u << 31) - 1); }
static inline uint32_t unit_label(uint32_t u) { return u & ((1u << 31) | 0xff); }
static inline uint32_t unit_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

/* Longest rule matching a prefix of s (darts commonPrefixSearch): its length, and *rep its replacement;
 * 0 if none. */
static size_t charsmap_match(const struct tokenizer *t, const char *s, size_t n, const char **rep)
{
	if (!t->trie) return 0;
	size_t best = 0;
	uint32_t pos = unit_offset(t->trie[0]);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		pos ^= c;
		if (pos >= t->ntrie) break;
		uint32_t u = t->trie[pos];
		if (unit_label(u) != c) break;
		pos ^= unit_offset(u);
		if (pos >= t->ntrie) break;
		if (unit_has_leaf(u)) {
			uint32_t v = unit_value(t->trie[pos]);
			if (v < t->nnorm_strs) {
				best = i + 1;
				*rep = t->norm_strs + v;
			}
		}
	}
	return best;
}

int tok_spm_load(struct tokenizer *t, const char *path, const char *data, size_t len)
{
	int n;
	if (count_pieces(path, data, len, &n) || tok_alloc(t, n)) return LM_ERR;
	/* proto defaults */
	t->add_dummy_prefix = t->remove_extra_ws = t->escape_ws = true;
	int64_t model_type = 1, unk_id = 0, bos_id = 1, eos_id = 2;
	const unsigned char *charsmap = NULL;
	size_t charsmap_len = 0;

	struct pb b = { (const unsigned char *)data, (const unsigned char *)data + len };
	struct pb_field f, g;
	int id = 0;
	while (b.p < b.end) {
		if (pb_next(&b, &f)) return bad(path, _("truncated or corrupt protobuf"));
		if (f.num == 1) {
			if (parse_piece(t, path, id++, &f)) return LM_ERR;
		} else if (f.num == 2 && f.wire == 2) { /* trainer_spec */
			struct pb s = { f.data, f.data + f.len };
			while (s.p < s.end) {
				if (pb_next(&s, &g)) return bad(path, _("corrupt trainer_spec"));
				if (g.wire == 0) {
					if (g.num == 3) model_type = (int64_t)g.v;
					else if (g.num == 35) t->byte_fallback = g.v != 0;
					else if (g.num == 40) unk_id = (int32_t)g.v;
					else if (g.num == 41) bos_id = (int32_t)g.v;
					else if (g.num == 42) eos_id = (int32_t)g.v;
				} else if (g.wire == 2 && g.num == 44) {
					free(t->unk_surface);
					t->unk_surface = strndup((const char *)g.data, g.len);
					if (!t->unk_surface) return lm_err(_("out of memory"));
				}
			}
		} else if (f.num == 3 && f.wire == 2) { /* normalizer_spec */
			struct pb s = { f.data, f.data + f.len };
			while (s.p < s.end) {
				if (pb_next(&s, &g)) return bad(path, _("corrupt normalizer_spec"));
				if (g.wire == 0 && g.num == 3) t->add_dummy_prefix = g.v != 0;
				else if (g.wire == 0 && g.num == 4) t->remove_extra_ws = g.v != 0;
				else if (g.wire == 0 && g.num == 5) t->escape_ws = g.v != 0;
				else if (g.wire == 2 && g.num == 2) {
					charsmap = g.data;
					charsmap_len = g.len;
				}
			}
		}
	}
	if (model_type != 2)
		return lm_err(_("%s: SentencePiece model type %lld is not supported (only BPE)"), path, (long long)model_type);
	if (charsmap_len && load_charsmap(t, path, charsmap, charsmap_len)) return LM_ERR;

	if (strmap_init(&t->ids, (size_t)n)) return LM_ERR;
	for (int i = 0; i < n; i++) {
		/* as sentencepiece's PieceToId: reserved (control, unknown, byte) pieces first, then the others */
		int ty = t->type[i];
		if (ty == PT_CONTROL || ty == PT_UNKNOWN || ty == PT_BYTE)
			if (strmap_put(&t->ids, t->piece[i], t->plen[i], i) < 0) return LM_ERR;
	}
	for (int i = 0; i < n; i++) {
		int ty = t->type[i];
		if (ty == PT_CONTROL || ty == PT_UNKNOWN || ty == PT_BYTE) {
			if (ty == PT_BYTE) {
				int v = tok_byte_piece(t->piece[i], t->plen[i]);
				if (v < 0) return bad(path, _("byte piece is not <0xNN>"));
				t->byte_id[v] = i;
			}
			continue;
		}
		if (strmap_put(&t->ids, t->piece[i], t->plen[i], i) < 0) return LM_ERR;
		if (ty == PT_USER && t->plen[i] > 0) {
			if (strmap_put(&t->user, t->piece[i], t->plen[i], i) < 0) return LM_ERR;
			t->user_maxlen = MAX(t->user_maxlen, t->plen[i]);
			t->user_first[(unsigned char)t->piece[i][0]] = true;
		}
	}
	t->unk = unk_id >= 0 && unk_id < n ? (int)unk_id : -1;
	if (t->unk < 0 || t->type[t->unk] != PT_UNKNOWN) return bad(path, _("unk_id is not an unknown piece"));
	t->bos = bos_id >= 0 && bos_id < n ? (int)bos_id : -1;
	t->eos = eos_id >= 0 && eos_id < n ? (int)eos_id : -1;
	if (t->byte_fallback)
		for (int v = 0; v < 256; v++)
			if (t->byte_id[v] < 0) return bad(path, _("byte_fallback without all 256 byte pieces"));
	return LM_OK;
}

/* Longest user-defined symbol at p (0 if none). */
static size_t user_match(const struct tokenizer *t, const char *p, size_t n)
{
	if (!t || !t->user.n || !n || !t->user_first[(unsigned char)p[0]]) return 0;
	for (size_t l = MIN(n, (size_t)t->user_maxlen); l > 0; l--)
		if (strmap_get(&t->user, p, l) >= 0) return l;
	return 0;
}

/* Length of the valid UTF-8 character at p (shortest form, no surrogates, at most U+10FFFF), 0 if malformed. */
static size_t utf8_valid_len(const char *p, size_t n)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t l = (size_t)utf8_len(u[0]);
	if (l == 0 || l > n) return 0;
	for (size_t k = 1; k < l; k++)
		if ((u[k] & 0xc0) != 0x80) return 0;
	if (l == 3 && ((u[0] == 0xe0 && u[1] < 0xa0) || (u[0] == 0xed && u[1] > 0x9f))) return 0;
	if (l == 4 && ((u[0] == 0xf0 && u[1] < 0x90) || (u[0] == 0xf4 && u[1] > 0x8f))) return 0;
	return l;
}

/* sentencepiece's normalizer: each step takes the longest user-defined symbol (kept as is), else the longest
 * normalization rule (its replacement), else one character (a malformed byte becomes U+FFFD); then spaces:
 * optional removal of extra ones, the dummy prefix, and ' ' -> U+2581. */
static size_t norm_prefix(const struct tokenizer *t, const struct tokenizer *ut, const char *s, size_t n,
			  const char **out, size_t *outlen)
{
	size_t l = user_match(ut, s, n);
	if (l) {
		*out = s;
		*outlen = l;
		return l;
	}
	const char *rep = NULL;
	l = charsmap_match(t, s, n, &rep);
	if (l) {
		*out = rep;
		*outlen = strlen(rep);
		return l;
	}
	l = utf8_valid_len(s, n);
	if (l == 0) {
		*out = "\xef\xbf\xbd";
		*outlen = 3;
		return 1;
	}
	*out = s;
	*outlen = l;
	return l;
}

static int spm_normalize(const struct tokenizer *t, const struct tokenizer *ut, const char *text, size_t len, struct buf *out)
{
	const char *ws = t->escape_ws ? "\xe2\x96\x81" : " ";
	size_t wsn = t->escape_ws ? 3 : 1;
	const char *p;
	size_t pl, i = 0;
	if (t->remove_extra_ws)
		while (i < len) { /* leading spaces, after normalization */
			size_t c = norm_prefix(t, ut, text + i, len - i, &p, &pl);
			if (pl != 1 || p[0] != ' ') break;
			i += c;
		}
	if (i == len) return LM_OK; /* nothing left: no dummy prefix either */
	if (t->add_dummy_prefix && buf_put(out, ws, wsn)) return LM_ERR;
	bool prev_space = t->remove_extra_ws;
	while (i < len) {
		i += norm_prefix(t, ut, text + i, len - i, &p, &pl);
		while (prev_space && pl > 0 && p[0] == ' ') { /* a space after a space goes */
			p++;
			pl--;
		}
		if (pl > 0) {
			for (size_t k = 0; k < pl; k++)
				if ((p[k] == ' ' && t->escape_ws) ? buf_put(out, ws, wsn) : buf_putc(out, p[k])) return LM_ERR;
			prev_space = p[pl - 1] == ' ';
		}
		if (!t->remove_extra_ws) prev_space = false;
	}
	/* trailing spaces removed */
	if (t->remove_extra_ws)
		while (out->n >= wsn && !memcmp(out->p + out->n - wsn, ws, wsn)) out->n -= wsn;
	return LM_OK;
}

struct spm_ctx { const struct tokenizer *t; bool match_special; };

static bool spm_pair(const void *ctx, const char *word, const struct bpe_sym *l, const struct bpe_sym *r, double *prio,
		     int32_t *id)
{
	const struct spm_ctx *c = ctx;
	const struct tokenizer *t = c->t;
	int32_t i = strmap_get(&t->ids, word + l->start, l->len + r->len);
	if (i < 0) return false;
	int ty = t->type[i];
	/* merges may only build pieces of sentencepiece's pieces_ map (normal, user-defined, unused) */
	if (ty != PT_NORMAL && ty != PT_USER && ty != PT_UNUSED) return false;
	/* the user's own text never becomes a special piece, not even by merging */
	if (!c->match_special && ty == PT_USER) return false;
	*prio = -(double)t->score[i];
	*id = i;
	return true;
}

int tok_spm_encode(const struct tokenizer *t, const char *text, size_t len, bool match_special, struct idvec *out)
{
	/* sentencepiece matches user-defined symbols always and control symbols never; without match_special
	 * (the chat's user text) user-defined symbols, which these models use for chat markers, are plain text */
	const struct tokenizer *ut = match_special ? t : NULL;
	struct spm_ctx ctx = { t, match_special };
	struct buf norm = { 0 };
	if (spm_normalize(t, ut, text, len, &norm)) {
		free(norm.p);
		return LM_ERR;
	}
	if (norm.n == 0) {
		free(norm.p);
		return LM_OK;
	}
	struct bpe_sym *sym = malloc(norm.n * sizeof(*sym));
	if (!sym) {
		free(norm.p);
		return lm_err(_("out of memory"));
	}
	/* initial symbols: user-defined symbols whole (frozen), else one UTF-8 character (one byte if invalid) */
	int n = 0;
	for (size_t i = 0; i < norm.n;) {
		size_t l = user_match(ut, norm.p + i, norm.n - i);
		bool frozen = l > 0;
		if (!l) {
			l = utf8_len((unsigned char)norm.p[i]);
			if (l == 0 || i + l > norm.n) l = 1;
		}
		sym[n] = (struct bpe_sym){ .start = (uint32_t)i, .len = (uint32_t)l, .prev = n - 1, .next = -1, .frozen = frozen };
		sym[n].id = strmap_get(&t->ids, norm.p + i, l);
		if (n > 0) sym[n - 1].next = n;
		n++;
		i += l;
	}
	int rc = bpe_merge(sym, n, norm.p, spm_pair, &ctx);
	for (int i = 0; rc == LM_OK && i >= 0 && n > 0; i = sym[i].next) {
		int32_t id = sym[i].id;
		if (id >= 0 && t->type[id] != PT_UNUSED) {
			rc = idvec_push(out, id);
		} else if (t->byte_fallback) {
			for (uint32_t k = 0; k < sym[i].len && rc == LM_OK; k++)
				rc = idvec_push(out, t->byte_id[(unsigned char)norm.p[sym[i].start + k]]);
		} else if (!(out->n > 0 && out->v[out->n - 1] == t->unk)) { /* consecutive unknowns fuse */
			rc = idvec_push(out, t->unk);
		}
	}
	free(sym);
	free(norm.p);
	return rc;
}
