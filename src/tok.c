/* tok.c: loading by format, the shared hash maps and BPE merge loop, and decoding (whole and streamed).
 * Decoding is one path: each id becomes its surface bytes (as the format's decoder would produce them), and
 * those bytes go through a UTF-8 assembler that holds an unfinished character until it completes, so the
 * whole decode and a stream fed one id at a time give the same text. */
#include "config.h"
#include "tok_impl.h"
#include "i18n.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- hashing and maps ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a, then a final mix so low bits spread */
	for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	h ^= h >> 29; h *= 0xbf58476d1ce4e5b9ull; h ^= h >> 32;
	return h;
}

static size_t pow2_at_least(size_t n)
{
	size_t c = 16;
	while (c < n) c <<= 1;
	return c;
}

int strmap_init(struct strmap *m, size_t expect)
{
	m->cap = pow2_at_least(expect * 2 + 1);
	m->n = 0;
	m->slots = calloc(m->cap, sizeof(*m->slots));
	if (!m->slots) return lm_err(_("out of memory"));
	return LM_OK;
}

void strmap_free(struct strmap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = m->n = 0;
}

static int strmap_grow(struct strmap *m)
{
	struct strmap nm = { .cap = m->cap * 2 };
	nm.slots = calloc(nm.cap, sizeof(*nm.slots));
	if (!nm.slots) return lm_err(_("out of memory"));
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->slots[i].key) continue;
		size_t j = m->slots[i].hash & (nm.cap - 1);
		while (nm.slots[j].key) j = (j + 1) & (nm.cap - 1);
		nm.slots[j] = m->slots[i];
	}
	nm.n = m->n;
	free(m->slots);
	*m = nm;
	return LM_OK;
}

int strmap_put(struct strmap *m, const char *key, size_t len, int32_t id)
{
	if (!m->slots && strmap_init(m, 16)) return LM_ERR;
	if ((m->n + 1) * 2 > m->cap && strmap_grow(m)) return LM_ERR;
	uint64_t h = hash_bytes(key, len);
	size_t j = h & (m->cap - 1);
	while (m->slots[j].key) {
		if (m->slots[j].hash == h && m->slots[j].len == len && !memcmp(m->slots[j].key, key, len)) return 0;
		j = (j + 1) & (m->cap - 1);
	}
	m->slots[j] = (struct strmap_slot){ .key = key, .len = (uint32_t)len, .id = id, .hash = h };
	m->n++;
	return 1;
}

int32_t strmap_get(const struct strmap *m, const char *key, size_t len)
{
	if (!m->slots) return -1;
	uint64_t h = hash_bytes(key, len);
	size_t j = h & (m->cap - 1);
	while (m->slots[j].key) {
		if (m->slots[j].hash == h && m->slots[j].len == len && !memcmp(m->slots[j].key, key, len))
			return m->slots[j].id;
		j = (j + 1) & (m->cap - 1);
	}
	return -1;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
	return x;
}

int pairmap_init(struct pairmap *m, size_t expect)
{
	m->cap = pow2_at_least(expect * 2 + 1);
	m->n = 0;
	m->slots = calloc(m->cap, sizeof(*m->slots));
	if (!m->slots) return lm_err(_("out of memory"));
	return LM_OK;
}

void pairmap_free(struct pairmap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = m->n = 0;
}

int pairmap_put(struct pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id)
{
	if (!m->slots && pairmap_init(m, 16)) return LM_ERR;
	if ((m->n + 1) * 2 > m->cap) {
		struct pairmap nm;
		if (pairmap_init(&nm, m->cap)) return LM_ERR;
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->slots[i].key) continue;
			size_t j = mix64(m->slots[i].key) & (nm.cap - 1);
			while (nm.slots[j].key) j = (j + 1) & (nm.cap - 1);
			nm.slots[j] = m->slots[i];
		}
		nm.n = m->n;
		free(m->slots);
		*m = nm;
	}
	uint64_t key = ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
	size_t j = mix64(key) & (m->cap - 1);
	while (m->slots[j].key) {
		if (m->slots[j].key == key) return 0;
		j = (j + 1) & (m->cap - 1);
	}
	m->slots[j] = (struct pairmap_slot){ .key = key, .rank = rank, .id = id };
	m->n++;
	return 1;
}

bool pairmap_get(const struct pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id)
{
	if (!m->slots || a < 0 || b < 0) return false;
	uint64_t key = ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
	size_t j = mix64(key) & (m->cap - 1);
	while (m->slots[j].key) {
		if (m->slots[j].key == key) {
			*rank = m->slots[j].rank;
			*id = m->slots[j].id;
			return true;
		}
		j = (j + 1) & (m->cap - 1);
	}
	return false;
}

int buf_put(struct buf *b, const void *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t c = b->cap ? b->cap : 64;
		while (c < b->n + n + 1) c *= 2;
		char *p = realloc(b->p, c);
		if (!p) return lm_err(_("out of memory"));
		b->p = p;
		b->cap = c;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
	return LM_OK;
}

int idvec_push(struct idvec *v, int32_t id)
{
	if (v->n == v->cap) {
		int c = v->cap ? v->cap * 2 : 64;
		int32_t *p = realloc(v->v, (size_t)c * sizeof(*p));
		if (!p) return lm_err(_("out of memory"));
		v->v = p;
		v->cap = c;
	}
	v->v[v->n++] = id;
	return LM_OK;
}

/* ---- the BPE merge loop ---- */

struct bpe_cand { double prio; int left, right; uint32_t len; int32_t id; };

/* heap order: lower prio first, then the leftmost */
static bool cand_before(const struct bpe_cand *a, const struct bpe_cand *b)
{
	if (a->prio != b->prio) return a->prio < b->prio;
	return a->left < b->left;
}

struct heap { struct bpe_cand *v; int n, cap; };

static int heap_push(struct heap *h, struct bpe_cand c)
{
	if (h->n == h->cap) {
		int nc = h->cap ? h->cap * 2 : 32;
		struct bpe_cand *p = realloc(h->v, (size_t)nc * sizeof(*p));
		if (!p) return lm_err(_("out of memory"));
		h->v = p;
		h->cap = nc;
	}
	int i = h->n++;
	while (i > 0) {
		int up = (i - 1) / 2;
		if (!cand_before(&c, &h->v[up])) break;
		h->v[i] = h->v[up];
		i = up;
	}
	h->v[i] = c;
	return LM_OK;
}

static struct bpe_cand heap_pop(struct heap *h)
{
	struct bpe_cand top = h->v[0], last = h->v[--h->n];
	int i = 0;
	for (;;) {
		int c = 2 * i + 1;
		if (c >= h->n) break;
		if (c + 1 < h->n && cand_before(&h->v[c + 1], &h->v[c])) c++;
		if (!cand_before(&h->v[c], &last)) break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n > 0) h->v[i] = last;
	return top;
}

static int try_pair(struct heap *h, struct bpe_sym *sym, int l, const char *word, bpe_pair_fn pair, const void *ctx)
{
	if (l < 0) return LM_OK;
	int r = sym[l].next;
	if (r < 0 || sym[l].frozen || sym[r].frozen) return LM_OK;
	struct bpe_cand c = { .left = l, .right = r, .len = sym[l].len + sym[r].len };
	if (!pair(ctx, word, &sym[l], &sym[r], &c.prio, &c.id)) return LM_OK;
	return heap_push(h, c);
}

int bpe_merge(struct bpe_sym *sym, int n, const char *word, bpe_pair_fn pair, const void *ctx)
{
	struct heap h = { 0 };
	int rc = LM_OK;
	for (int i = 0; i < n && rc == LM_OK; i++) rc = try_pair(&h, sym, i, word, pair, ctx);
	while (rc == LM_OK && h.n > 0) {
		struct bpe_cand c = heap_pop(&h);
		/* stale: one side was merged away or changed since the candidate was queued */
		if (sym[c.left].len == 0 || sym[c.right].len == 0 || sym[c.left].next != c.right ||
		    sym[c.left].len + sym[c.right].len != c.len)
			continue;
		struct bpe_sym *l = &sym[c.left], *r = &sym[c.right];
		l->len += r->len;
		l->id = c.id;
		l->next = r->next;
		if (r->next >= 0) sym[r->next].prev = c.left;
		r->len = 0;
		rc = try_pair(&h, sym, l->prev, word, pair, ctx);
		if (rc == LM_OK) rc = try_pair(&h, sym, c.left, word, pair, ctx);
	}
	free(h.v);
	return rc;
}

/* ---- the tokenizer object ---- */

int tok_alloc(struct tokenizer *t, int n)
{
	t->n = n;
	t->piece = calloc((size_t)n, sizeof(*t->piece));
	t->plen = calloc((size_t)n, sizeof(*t->plen));
	t->type = calloc((size_t)n, sizeof(*t->type));
	t->score = calloc((size_t)n, sizeof(*t->score));
	if (!t->piece || !t->plen || !t->type || !t->score) return lm_err(_("out of memory"));
	for (int i = 0; i < n; i++) t->type[i] = PT_NORMAL;
	return LM_OK;
}

int tok_set_piece(struct tokenizer *t, int id, const char *s, size_t len)
{
	char *p = malloc(len + 1);
	if (!p) return lm_err(_("out of memory"));
	memcpy(p, s, len);
	p[len] = 0;
	free(t->piece[id]);
	t->piece[id] = p;
	t->plen[id] = (uint32_t)len;
	return LM_OK;
}

int tok_byte_piece(const char *s, size_t len)
{
	if (len != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
	int v = 0;
	for (int i = 3; i < 5; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0) return -1;
		v = v * 16 + d;
	}
	return v;
}

int utf8_len(unsigned char c)
{
	if (c < 0x80) return 1;
	if (c >= 0xc2 && c <= 0xdf) return 2;
	if (c >= 0xe0 && c <= 0xef) return 3;
	if (c >= 0xf0 && c <= 0xf4) return 4;
	return 0;
}

void tok_free(struct tokenizer *t)
{
	if (!t) return;
	for (int i = 0; i < t->n; i++) free(t->piece ? t->piece[i] : NULL);
	free(t->piece);
	free(t->plen);
	free(t->type);
	free(t->score);
	strmap_free(&t->ids);
	strmap_free(&t->user);
	free(t->unk_surface);
	free(t->trie);
	free(t->norm_strs);
	tok_hf_free(t->hf);
	free(t);
}

int tok_load_mem(struct tokenizer **out, const char *name, const char *data, size_t len, bool json)
{
	*out = NULL;
	struct tokenizer *t = calloc(1, sizeof(*t));
	if (!t) return lm_err(_("out of memory"));
	t->bos = t->eos = t->unk = -1;
	for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
	t->kind = json ? TOK_HF_JSON : TOK_SPM;
	int rc = json ? tok_hf_load(t, name, data, len) : tok_spm_load(t, name, data, len);
	if (rc) {
		tok_free(t);
		return LM_ERR;
	}
	*out = t;
	return LM_OK;
}

int tok_load_file(struct tokenizer **out, const char *path)
{
	*out = NULL;
	char *data;
	size_t len;
	if (read_file(path, &data, &len)) return LM_ERR;
	/* the name tells the format; otherwise a file that starts with '{' is JSON */
	bool json = ends_with(path, ".json");
	if (!json && !ends_with(path, ".model")) {
		size_t i = 0;
		while (i < len && (data[i] == ' ' || data[i] == '\n' || data[i] == '\t' || data[i] == '\r')) i++;
		json = i < len && data[i] == '{';
	}
	int rc = tok_load_mem(out, path, data, len, json);
	free(data);
	return rc;
}

int tok_load_dir(struct tokenizer **t, const char *dir)
{
	char p[4096];
	path_join(p, sizeof(p), dir, "tokenizer.json");
	if (file_exists(p)) return tok_load_file(t, p);
	path_join(p, sizeof(p), dir, "tokenizer.model");
	if (file_exists(p)) return tok_load_file(t, p);
	*t = NULL;
	/* a directory that cannot be read (no permission) has them, for all we know: say why */
	struct stat st;
	if (stat(p, &st) != 0 && errno != ENOENT) return lm_err("%s: %s", p, strerror(errno));
	return lm_err(_("%s: no tokenizer.json or tokenizer.model"), dir);
}

int tok_load(struct tokenizer **t, const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? tok_load_dir(t, path) : tok_load_file(t, path);
}

enum tok_kind tok_kind(const struct tokenizer *t) { return t->kind; }
int tok_vocab_size(const struct tokenizer *t) { return t->n; }
int tok_bos_id(const struct tokenizer *t) { return t->bos; }
int tok_eos_id(const struct tokenizer *t) { return t->eos; }

const char *tok_piece(const struct tokenizer *t, int id)
{
	return id >= 0 && id < t->n ? t->piece[id] : NULL;
}

int tok_piece_id(const struct tokenizer *t, const char *piece)
{
	return strmap_get(&t->ids, piece, strlen(piece));
}

bool tok_is_special(const struct tokenizer *t, int id)
{
	if (id < 0 || id >= t->n) return false;
	/* sentencepiece models declare chat markers (<|im_end|>) as user-defined symbols: special for display */
	return t->type[id] == PT_CONTROL || (t->kind == TOK_SPM && t->type[id] == PT_USER);
}

int tok_encode(const struct tokenizer *t, const char *text, size_t len, bool match_special, int32_t **ids, int *n)
{
	struct idvec v = { 0 };
	int rc = t->kind == TOK_SPM ? tok_spm_encode(t, text, len, match_special, &v)
				    : tok_hf_encode(t, text, len, match_special, &v);
	if (rc) {
		free(v.v);
		*ids = NULL;
		*n = 0;
		return LM_ERR;
	}
	if (!v.v) v.v = malloc(sizeof(int32_t)); /* a valid pointer even for no ids */
	*ids = v.v;
	*n = v.n;
	return LM_OK;
}

/* ---- decoding ---- */

/* sentencepiece's decoder for one piece: control pieces vanish, unknown shows the unk surface, byte pieces
 * give their byte, others turn U+2581 into spaces, and the first piece of the text loses one leading space
 * (the dummy prefix) as DecodeSentencePiece does. */
static int spm_surface(const struct tokenizer *t, struct tok_stream *s, int32_t id, struct buf *out)
{
	int ty = t->type[id];
	if (ty == PT_BYTE) {
		int b = tok_byte_piece(t->piece[id], t->plen[id]);
		s->nout++;
		return buf_putc(out, (char)(b < 0 ? 0 : b));
	}
	if (s->ws_seen || s->nout > 0) s->first = false;
	s->ws_seen = false;
	if (ty == PT_CONTROL) return LM_OK;
	if (ty == PT_UNKNOWN) {
		const char *u = t->unk_surface ? t->unk_surface : " \xe2\x81\x87 ";
		s->nout += strlen(u);
		return buf_put(out, u, strlen(u));
	}
	const char *p = t->piece[id];
	size_t n = t->plen[id];
	if (s->first && (t->add_dummy_prefix || t->remove_extra_ws) && n >= 3 && !memcmp(p, "\xe2\x96\x81", 3)) {
		p += 3;
		n -= 3;
		s->ws_seen = true;
	}
	size_t before = out->n;
	for (size_t i = 0; i < n;) {
		if (i + 3 <= n && !memcmp(p + i, "\xe2\x96\x81", 3)) {
			if (buf_putc(out, ' ')) return LM_ERR;
			i += 3;
		} else {
			if (buf_putc(out, p[i])) return LM_ERR;
			i++;
		}
	}
	s->nout += out->n - before;
	return LM_OK;
}

static const char repl[] = "\xef\xbf\xbd"; /* U+FFFD */

/* Does byte c continue the pending sequence (given its lead and position)? */
static bool utf8_continues(const struct tok_stream *s, unsigned char c)
{
	if ((c & 0xc0) != 0x80) return false;
	if (s->npend == 1) {
		unsigned char l = s->pend[0];
		if (l == 0xe0 && c < 0xa0) return false;
		if (l == 0xed && c > 0x9f) return false;
		if (l == 0xf0 && c < 0x90) return false;
		if (l == 0xf4 && c > 0x8f) return false;
	}
	return true;
}

/* An unfinished sequence that cannot complete: sentencepiece replaces every byte, tokenizers (Rust's lossy
 * conversion) the maximal prefix as one. */
static int utf8_drop_pending(struct tok_stream *s, struct buf *out)
{
	int reps = s->t->kind == TOK_SPM ? s->npend : (s->npend > 0);
	s->npend = 0;
	for (int i = 0; i < reps; i++)
		if (buf_put(out, repl, 3)) return LM_ERR;
	return LM_OK;
}

static int utf8_feed(struct tok_stream *s, const unsigned char *p, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		if (s->npend > 0) {
			if (utf8_continues(s, c)) {
				s->pend[s->npend++] = c;
				if (s->npend == utf8_len(s->pend[0])) {
					if (buf_put(out, s->pend, (size_t)s->npend)) return LM_ERR;
					s->npend = 0;
				}
				continue;
			}
			if (utf8_drop_pending(s, out)) return LM_ERR;
		}
		int l = utf8_len(c);
		if (l == 1) {
			if (buf_putc(out, (char)c)) return LM_ERR;
		} else if (l == 0) {
			if (buf_put(out, repl, 3)) return LM_ERR;
		} else {
			s->pend[0] = c;
			s->npend = 1;
		}
	}
	return LM_OK;
}

void tok_stream_init(struct tok_stream *s, const struct tokenizer *t, bool skip_special)
{
	memset(s, 0, sizeof(*s));
	s->t = t;
	s->skip_special = skip_special;
	s->first = true;
}

static int stream_step(struct tok_stream *s, int32_t id, struct buf *out)
{
	const struct tokenizer *t = s->t;
	if (id < 0 || id >= t->n) return LM_OK; /* an id the model cannot produce: nothing to show */
	if (s->skip_special && (t->kind == TOK_SPM ? tok_is_special(t, id) : tok_hf_skipped(t, id))) return LM_OK;
	struct buf raw = { 0 };
	int rc = t->kind == TOK_SPM ? spm_surface(t, s, id, &raw) : tok_hf_surface(t, s, id, &raw);
	s->ntok++;
	if (rc == LM_OK && raw.n) rc = utf8_feed(s, (const unsigned char *)raw.p, raw.n, out);
	free(raw.p);
	return rc;
}

/* End of text: what the decoder still holds, then an unfinished character as U+FFFD. */
static int stream_finish(struct tok_stream *s, struct buf *out)
{
	if (s->t->kind == TOK_HF_JSON) {
		struct buf raw = { 0 };
		int rc = tok_hf_flush(s->t, s, &raw);
		if (rc == LM_OK && raw.n) rc = utf8_feed(s, (const unsigned char *)raw.p, raw.n, out);
		free(raw.p);
		if (rc) return LM_ERR;
	}
	return utf8_drop_pending(s, out);
}

static int copy_out(const struct buf *b, char *out, size_t cap)
{
	if (!cap) return 0;
	size_t n = MIN(b->n, cap - 1);
	if (n) memcpy(out, b->p, n);
	out[n] = 0;
	return (int)n;
}

int tok_stream_next(struct tok_stream *s, int32_t id, char *out, size_t cap)
{
	struct buf b = { 0 };
	stream_step(s, id, &b);
	int n = copy_out(&b, out, cap);
	free(b.p);
	return n;
}

int tok_stream_flush(struct tok_stream *s, char *out, size_t cap)
{
	struct buf b = { 0 };
	stream_finish(s, &b);
	int n = copy_out(&b, out, cap);
	free(b.p);
	return n;
}

int tok_decode(const struct tokenizer *t, const int32_t *ids, int n, char **text)
{
	struct tok_stream s;
	struct buf b = { 0 };
	tok_stream_init(&s, t, false);
	int rc = buf_put(&b, "", 0);
	for (int i = 0; i < n && rc == LM_OK; i++) rc = stream_step(&s, ids[i], &b);
	if (rc == LM_OK) rc = stream_finish(&s, &b);
	if (rc) {
		free(b.p);
		*text = NULL;
		return LM_ERR;
	}
	*text = b.p;
	return LM_OK;
}
