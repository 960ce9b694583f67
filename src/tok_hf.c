/* tok_hf.c: tokenizer.json, as the Hugging Face tokenizers library encodes and decodes it (BPE models).
 * Pipeline per text: added tokens with normalized=false are cut out of the raw text first (leftmost-longest);
 * each stretch between them is normalized (NFC/NFKC/NFD/NFKD, Prepend, Replace, Lowercase, Sequence) and the
 * added tokens with normalized=true are cut out of that; what remains is pre-tokenized into words (Split with
 * the Llama-3, Qwen or GPT-2 regex, ByteLevel, Metaspace, Sequence) and each word goes through BPE by merge
 * rank (byte_fallback, ignore_merges, unk fusing). The split regexes are written by hand against utf8proc's
 * Unicode categories, following the alternation order and backtracking of the original patterns.
 * Decoders (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence) give each token's surface
 * bytes, so decoding streams (tok.c); a run of <0xNN> tokens is judged whole, as ByteFallback does. */
#include "config.h"
#include "tok_impl.h"
#include "i18n.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

enum norm_kind { N_NFC, N_NFKC, N_NFD, N_NFKD, N_PREPEND, N_REPLACE, N_LOWERCASE };
struct norm_step { enum norm_kind kind; char *a, *b; };

/* The split regexes we know, by their exact pattern text. */
enum re_kind { RE_LLAMA3, RE_QWEN, RE_GPT2 };
static const char *const re_text[] = {
	[RE_LLAMA3] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
	[RE_QWEN] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
	[RE_GPT2] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
};

enum pre_kind { P_SPLIT, P_BYTELEVEL, P_METASPACE };
enum prepend_scheme { PS_ALWAYS, PS_FIRST, PS_NEVER };
struct pre_step {
	enum pre_kind kind;
	enum re_kind re;
	bool add_prefix_space, use_regex, split;
	enum prepend_scheme scheme;
	char repl[8];
};

enum dec_kind { D_BYTELEVEL, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_METASPACE };
struct dec_step {
	enum dec_kind kind;
	char *a, *b;
	int start;
	bool fused; /* a Fuse came before: Strip acts on the whole text */
	enum prepend_scheme scheme;
	char repl[8];
};

struct added {
	int id;
	char *content;
	size_t len;
	bool special, lstrip, rstrip, single_word, normalized;
	char *match;           /* what is looked for: content, or for a normalized token its normalized content */
	size_t mlen;
};

/* Added tokens by the first byte of what they match, longest first: pass 0 looks in the raw text for the
 * tokens with normalized=false, pass 1 in each normalized stretch for those with normalized=true. */
struct added_index {
	int *order;            /* indices into added */
	int first[257];        /* order[first[c] .. first[c+1]) start with byte c */
};

struct hf {
	struct norm_step *norm;
	int nnorm;
	struct pre_step *pre;
	int npre;
	struct dec_step *dec;
	int ndec;
	struct strmap vocab;   /* the model's vocabulary only (added tokens are matched apart) */
	struct pairmap merges;
	bool byte_fallback, ignore_merges, fuse_unk;
	int unk;
	struct added *added;
	int nadded;
	int *added_of_id;      /* [n] index into added, or -1 */
	struct added_index idx[2];
};

/* GPT-2's byte <-> character table of the ByteLevel pre-tokenizer and decoder. */
static uint32_t byte_cp[256];
static int cp_byte[512];

static void bytelevel_fill(void)
{
	for (int i = 0; i < 512; i++) cp_byte[i] = -1;
	int extra = 0;
	for (int b = 0; b < 256; b++) {
		bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
		byte_cp[b] = printable ? (uint32_t)b : (uint32_t)(256 + extra++);
		cp_byte[byte_cp[b]] = b;
	}
}

static void bytelevel_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT; /* tokenizers may be loaded from several threads */
	pthread_once(&once, bytelevel_fill);
}

void tok_hf_free(struct hf *hf)
{
	if (!hf) return;
	for (int i = 0; i < hf->nnorm; i++) {
		free(hf->norm[i].a);
		free(hf->norm[i].b);
	}
	for (int i = 0; i < hf->ndec; i++) {
		free(hf->dec[i].a);
		free(hf->dec[i].b);
	}
	for (int i = 0; i < hf->nadded; i++) {
		if (hf->added[i].match != hf->added[i].content) free(hf->added[i].match);
		free(hf->added[i].content);
	}
	free(hf->norm);
	free(hf->pre);
	free(hf->dec);
	free(hf->added);
	free(hf->added_of_id);
	free(hf->idx[0].order);
	free(hf->idx[1].order);
	strmap_free(&hf->vocab);
	pairmap_free(&hf->merges);
	free(hf);
}

static int normalize(const struct hf *hf, const char *s, size_t n, struct buf *out);

/* ---- loading ---- */

static const char *jstr(const cJSON *o, const char *key)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static bool jbool(const cJSON *o, const char *key, bool dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static int copy_str(char **dst, const char *s)
{
	*dst = strdup(s ? s : "");
	return *dst ? LM_OK : lm_err(_("out of memory"));
}

static int unsupported(const char *path, const char *what, const char *type)
{
	return lm_err(_("%s: %s \"%s\" is not supported"), path, what, type ? type : "?");
}

static int parse_scheme(const char *path, const cJSON *o, enum prepend_scheme *ps)
{
	const char *s = jstr(o, "prepend_scheme");
	if (!s) *ps = jbool(o, "add_prefix_space", true) ? PS_ALWAYS : PS_NEVER; /* older files */
	else if (!strcmp(s, "always")) *ps = PS_ALWAYS;
	else if (!strcmp(s, "first")) *ps = PS_FIRST;
	else if (!strcmp(s, "never")) *ps = PS_NEVER;
	else return unsupported(path, "Metaspace prepend_scheme", s);
	return LM_OK;
}

static int parse_repl(const char *path, const cJSON *o, char repl[8])
{
	const char *r = jstr(o, "replacement");
	if (!r) r = "\xe2\x96\x81";
	if (strlen(r) >= 8 || !*r) return lm_err(_("%s: Metaspace replacement must be one character"), path);
	strcpy(repl, r);
	return LM_OK;
}

static int parse_normalizer(struct hf *hf, const char *path, const cJSON *o)
{
	if (!o || cJSON_IsNull(o)) return LM_OK;
	const char *type = jstr(o, "type");
	if (!type) return lm_err(_("%s: normalizer without a type"), path);
	if (!strcmp(type, "Sequence")) {
		const cJSON *e, *arr = cJSON_GetObjectItemCaseSensitive(o, "normalizers");
		if (!cJSON_IsArray(arr)) return lm_err(_("%s: Sequence normalizer without \"normalizers\""), path);
		cJSON_ArrayForEach(e, arr) if (parse_normalizer(hf, path, e)) return LM_ERR;
		return LM_OK;
	}
	struct norm_step st = { 0 };
	if (!strcmp(type, "NFC")) st.kind = N_NFC;
	else if (!strcmp(type, "NFKC")) st.kind = N_NFKC;
	else if (!strcmp(type, "NFD")) st.kind = N_NFD;
	else if (!strcmp(type, "NFKD")) st.kind = N_NFKD;
	else if (!strcmp(type, "Lowercase")) st.kind = N_LOWERCASE;
	else if (!strcmp(type, "Prepend")) {
		st.kind = N_PREPEND;
		if (!jstr(o, "prepend")) return lm_err(_("%s: Prepend normalizer without \"prepend\""), path);
		if (copy_str(&st.a, jstr(o, "prepend"))) return LM_ERR;
	} else if (!strcmp(type, "Replace")) {
		st.kind = N_REPLACE;
		const char *pat = jstr(cJSON_GetObjectItemCaseSensitive(o, "pattern"), "String");
		if (!pat || !*pat || !jstr(o, "content"))
			return lm_err(_("%s: Replace normalizer: only a non-empty \"String\" pattern is supported"), path);
		if (copy_str(&st.a, pat) || copy_str(&st.b, jstr(o, "content"))) {
			free(st.a);
			return LM_ERR;
		}
	} else {
		return unsupported(path, "normalizer", type);
	}
	void *p = realloc(hf->norm, sizeof(*hf->norm) * (size_t)(hf->nnorm + 1));
	if (!p) {
		free(st.a);
		free(st.b);
		return lm_err(_("out of memory"));
	}
	hf->norm = p;
	hf->norm[hf->nnorm++] = st;
	return LM_OK;
}

static int parse_pretok(struct hf *hf, const char *path, const cJSON *o)
{
	if (!o || cJSON_IsNull(o)) return LM_OK;
	const char *type = jstr(o, "type");
	if (!type) return lm_err(_("%s: pre_tokenizer without a type"), path);
	if (!strcmp(type, "Sequence")) {
		const cJSON *e, *arr = cJSON_GetObjectItemCaseSensitive(o, "pretokenizers");
		if (!cJSON_IsArray(arr)) return lm_err(_("%s: Sequence pre_tokenizer without \"pretokenizers\""), path);
		cJSON_ArrayForEach(e, arr) if (parse_pretok(hf, path, e)) return LM_ERR;
		return LM_OK;
	}
	struct pre_step st = { 0 };
	if (!strcmp(type, "Split")) {
		st.kind = P_SPLIT;
		const char *re = jstr(cJSON_GetObjectItemCaseSensitive(o, "pattern"), "Regex");
		const char *beh = jstr(o, "behavior");
		size_t k;
		for (k = 0; k < ARRAY_SIZE(re_text); k++)
			if (re && !strcmp(re, re_text[k])) break;
		if (k == ARRAY_SIZE(re_text))
			return lm_err(_("%s: Split pre_tokenizer: only the Llama-3, Qwen and GPT-2 regexes are supported"), path);
		/* these patterns match every character, so Isolated, MergedWith* and Contiguous all keep each match */
		if (!beh || !strcmp(beh, "Removed") || jbool(o, "invert", false))
			return unsupported(path, "Split behavior", beh);
		st.re = (enum re_kind)k;
	} else if (!strcmp(type, "ByteLevel")) {
		st.kind = P_BYTELEVEL;
		st.add_prefix_space = jbool(o, "add_prefix_space", true);
		st.use_regex = jbool(o, "use_regex", true);
		st.re = RE_GPT2;
	} else if (!strcmp(type, "Metaspace")) {
		st.kind = P_METASPACE;
		st.split = jbool(o, "split", true);
		if (parse_scheme(path, o, &st.scheme) || parse_repl(path, o, st.repl)) return LM_ERR;
	} else {
		return unsupported(path, "pre_tokenizer", type);
	}
	void *p = realloc(hf->pre, sizeof(*hf->pre) * (size_t)(hf->npre + 1));
	if (!p) return lm_err(_("out of memory"));
	hf->pre = p;
	hf->pre[hf->npre++] = st;
	return LM_OK;
}

static int parse_decoder(struct hf *hf, const char *path, const cJSON *o, bool *fused)
{
	if (!o || cJSON_IsNull(o)) return LM_OK;
	const char *type = jstr(o, "type");
	if (!type) return lm_err(_("%s: decoder without a type"), path);
	if (!strcmp(type, "Sequence")) {
		const cJSON *e, *arr = cJSON_GetObjectItemCaseSensitive(o, "decoders");
		if (!cJSON_IsArray(arr)) return lm_err(_("%s: Sequence decoder without \"decoders\""), path);
		cJSON_ArrayForEach(e, arr) if (parse_decoder(hf, path, e, fused)) return LM_ERR;
		return LM_OK;
	}
	struct dec_step st = { 0 };
	if (!strcmp(type, "ByteLevel")) st.kind = D_BYTELEVEL;
	else if (!strcmp(type, "ByteFallback")) st.kind = D_BYTEFALLBACK;
	else if (!strcmp(type, "Fuse")) {
		st.kind = D_FUSE;
		*fused = true;
	} else if (!strcmp(type, "Strip")) {
		st.kind = D_STRIP;
		const cJSON *start = cJSON_GetObjectItemCaseSensitive(o, "start"), *stop = cJSON_GetObjectItemCaseSensitive(o, "stop");
		if (!cJSON_IsNumber(start) || start->valueint < 0) return lm_err(_("%s: Strip decoder without \"start\""), path);
		if (cJSON_IsNumber(stop) && stop->valueint != 0)
			return lm_err(_("%s: Strip decoder: stripping the end (\"stop\") is not supported"), path);
		st.start = start->valueint;
		st.fused = *fused;
		if (copy_str(&st.a, jstr(o, "content") ? jstr(o, "content") : " ")) return LM_ERR;
	} else if (!strcmp(type, "Replace")) {
		st.kind = D_REPLACE;
		const char *pat = jstr(cJSON_GetObjectItemCaseSensitive(o, "pattern"), "String");
		if (!pat || !*pat || !jstr(o, "content"))
			return lm_err(_("%s: Replace decoder: only a non-empty \"String\" pattern is supported"), path);
		if (copy_str(&st.a, pat) || copy_str(&st.b, jstr(o, "content"))) {
			free(st.a);
			return LM_ERR;
		}
	} else if (!strcmp(type, "Metaspace")) {
		st.kind = D_METASPACE;
		if (parse_scheme(path, o, &st.scheme) || parse_repl(path, o, st.repl)) return LM_ERR;
	} else {
		return unsupported(path, "decoder", type);
	}
	void *p = realloc(hf->dec, sizeof(*hf->dec) * (size_t)(hf->ndec + 1));
	if (!p) {
		free(st.a);
		free(st.b);
		return lm_err(_("out of memory"));
	}
	hf->dec = p;
	hf->dec[hf->ndec++] = st;
	return LM_OK;
}

/* "bos_token": "<s>" or {"content": "<s>", ...} in tokenizer_config.json */
static int config_token(const struct tokenizer *t, const cJSON *cfg, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
	const char *s = cJSON_IsString(v) ? v->valuestring : jstr(v, "content");
	return s ? tok_piece_id(t, s) : -1;
}

/* BOS/EOS are not in tokenizer.json: read the tokenizer_config.json beside it ("x.tokenizer.json" pairs with
 * "x.tokenizer_config.json"), else guess from the usual names. */
static void find_bos_eos(struct tokenizer *t, const char *path)
{
	char cfgpath[4096];
	size_t n = strlen(path);
	bool found = false;
	if (n >= 14 && !strcmp(path + n - 14, "tokenizer.json") && n - 14 + 21 < sizeof(cfgpath)) {
		memcpy(cfgpath, path, n - 14);
		strcpy(cfgpath + n - 14, "tokenizer_config.json");
		char *data;
		size_t len;
		if (file_exists(cfgpath) && read_file(cfgpath, &data, &len) == LM_OK) {
			cJSON *cfg = cJSON_ParseWithLength(data, len);
			free(data);
			if (cfg) {
				t->bos = config_token(t, cfg, "bos_token");
				t->eos = config_token(t, cfg, "eos_token");
				found = true;
				cJSON_Delete(cfg);
			}
		}
		lm_err_clear();
	}
	if (found) return;
	static const char *bos[] = { "<s>", "<|begin_of_text|>" }, *eos[] = { "</s>", "<|end_of_text|>", "<|endoftext|>" };
	for (size_t i = 0; i < ARRAY_SIZE(bos) && t->bos < 0; i++) t->bos = tok_piece_id(t, bos[i]);
	for (size_t i = 0; i < ARRAY_SIZE(eos) && t->eos < 0; i++) t->eos = tok_piece_id(t, eos[i]);
}

/* order of the added-token index: by first byte, then longest first, then as listed */
static bool added_before(const struct added *ad, int a, int b)
{
	unsigned char fa = (unsigned char)ad[a].match[0], fb = (unsigned char)ad[b].match[0];
	if (fa != fb) return fa < fb;
	if (ad[a].mlen != ad[b].mlen) return ad[a].mlen > ad[b].mlen;
	return a < b;
}

static int build_index(struct hf *hf, int pass)
{
	struct added_index *x = &hf->idx[pass];
	int n = 0;
	x->order = malloc(sizeof(int) * (size_t)(hf->nadded + 1));
	if (!x->order) return lm_err(_("out of memory"));
	for (int i = 0; i < hf->nadded; i++) { /* insertion sort: added tokens are few */
		if (hf->added[i].normalized != (pass == 1) || hf->added[i].mlen == 0) continue;
		int j = n++;
		while (j > 0 && added_before(hf->added, i, x->order[j - 1])) {
			x->order[j] = x->order[j - 1];
			j--;
		}
		x->order[j] = i;
	}
	for (int c = 0, k = 0; c <= 256; c++) {
		while (k < n && (unsigned char)hf->added[x->order[k]].match[0] < c) k++;
		x->first[c] = k;
	}
	return LM_OK;
}

/* Merges come as "a b" strings or as [a, b] arrays. */
static int parse_merge(const char *path, const cJSON *m, int rank, const char **a, size_t *al, const char **b, size_t *bl,
		       char **tmp)
{
	*tmp = NULL;
	if (cJSON_IsString(m)) {
		const char *s = m->valuestring, *sp = strchr(s, ' ');
		if (!sp || strchr(sp + 1, ' ')) return lm_err(_("%s: merge %d \"%s\" is not two tokens"), path, rank, s);
		*a = s;
		*al = (size_t)(sp - s);
		*b = sp + 1;
		*bl = strlen(sp + 1);
		return LM_OK;
	}
	if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
	    cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
		*a = cJSON_GetArrayItem(m, 0)->valuestring;
		*b = cJSON_GetArrayItem(m, 1)->valuestring;
		*al = strlen(*a);
		*bl = strlen(*b);
		return LM_OK;
	}
	return lm_err(_("%s: merge %d is neither \"a b\" nor [a, b]"), path, rank);
}

static int load_model(struct tokenizer *t, struct hf *hf, const char *path, const cJSON *root)
{
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
	if (!cJSON_IsObject(model)) return lm_err(_("%s: no \"model\" object"), path);
	const char *type = jstr(model, "type");
	if (type && strcmp(type, "BPE")) return unsupported(path, "model type", type);
	const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
	const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
	if (!cJSON_IsObject(vocab)) return lm_err(_("%s: model has no \"vocab\" object"), path);
	if (!cJSON_IsArray(merges)) return lm_err(_("%s: model has no \"merges\" array"), path);
	const char *csp = jstr(model, "continuing_subword_prefix"), *eow = jstr(model, "end_of_word_suffix");
	if ((csp && *csp) || (eow && *eow))
		return lm_err(_("%s: BPE continuing_subword_prefix/end_of_word_suffix are not supported"), path);
	hf->byte_fallback = jbool(model, "byte_fallback", false);
	hf->ignore_merges = jbool(model, "ignore_merges", false);
	hf->fuse_unk = jbool(model, "fuse_unk", false);

	/* the id space: the vocabulary's ids and the added tokens' */
	const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
	if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added)) return lm_err(_("%s: \"added_tokens\" is not an array"), path);
	long maxid = -1;
	const cJSON *e;
	cJSON_ArrayForEach(e, vocab) {
		if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= (1 << 24) || e->valuedouble != (int)e->valuedouble)
			return lm_err(_("%s: vocab entry \"%s\" has no valid id"), path, e->string);
		maxid = MAX(maxid, (long)e->valueint);
	}
	int nadded = 0;
	cJSON_ArrayForEach(e, added) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
		const char *content = jstr(e, "content");
		if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= (1 << 24) || !content || !*content)
			return lm_err(_("%s: added token %d needs an \"id\" and a non-empty \"content\""), path, nadded);
		maxid = MAX(maxid, (long)id->valueint);
		nadded++;
	}
	if (maxid < 0) return lm_err(_("%s: empty vocabulary"), path);
	if (tok_alloc(t, (int)maxid + 1) || strmap_init(&hf->vocab, (size_t)cJSON_GetArraySize(vocab))) return LM_ERR;
	cJSON_ArrayForEach(e, vocab) {
		int id = e->valueint;
		if (t->piece[id]) return lm_err(_("%s: vocab id %d is used twice"), path, id);
		if (tok_set_piece(t, id, e->string, strlen(e->string))) return LM_ERR;
		if (strmap_put(&hf->vocab, t->piece[id], t->plen[id], id) < 0) return LM_ERR;
		if (hf->byte_fallback) {
			int b = tok_byte_piece(t->piece[id], t->plen[id]);
			if (b >= 0) {
				t->type[id] = PT_BYTE;
				t->byte_id[b] = id;
			}
		}
	}
	const char *unk = jstr(model, "unk_token");
	hf->unk = unk ? strmap_get(&hf->vocab, unk, strlen(unk)) : -1;
	if (unk && hf->unk < 0) return lm_err(_("%s: unk_token \"%s\" is not in the vocabulary"), path, unk);
	t->unk = hf->unk;
	if (t->unk >= 0) t->type[t->unk] = PT_UNKNOWN;

	/* added tokens: matched in the text before anything else */
	hf->added = calloc((size_t)nadded + 1, sizeof(*hf->added));
	hf->added_of_id = malloc(sizeof(int) * (size_t)t->n);
	if (!hf->added || !hf->added_of_id) return lm_err(_("out of memory"));
	for (int i = 0; i < t->n; i++) hf->added_of_id[i] = -1;
	cJSON_ArrayForEach(e, added) {
		struct added *a = &hf->added[hf->nadded];
		a->id = cJSON_GetObjectItemCaseSensitive(e, "id")->valueint;
		if (copy_str(&a->content, jstr(e, "content"))) return LM_ERR;
		hf->nadded++;
		a->len = strlen(a->content);
		a->special = jbool(e, "special", false);
		a->lstrip = jbool(e, "lstrip", false);
		a->rstrip = jbool(e, "rstrip", false);
		a->single_word = jbool(e, "single_word", false);
		a->normalized = jbool(e, "normalized", !a->special);
		a->match = a->content;
		a->mlen = a->len;
		hf->added_of_id[a->id] = hf->nadded - 1;
		if (!t->piece[a->id] && tok_set_piece(t, a->id, a->content, a->len)) return LM_ERR;
		t->type[a->id] = a->special ? PT_CONTROL : PT_USER;
	}
	for (int i = 0; i < t->n; i++)
		if (!t->piece[i] && tok_set_piece(t, i, "", 0)) return LM_ERR;

	/* tok_piece_id: the vocabulary, then the added tokens */
	if (strmap_init(&t->ids, (size_t)t->n)) return LM_ERR;
	for (int i = 0; i < t->n; i++)
		if (t->plen[i] && strmap_put(&t->ids, t->piece[i], t->plen[i], i) < 0) return LM_ERR;
	for (int i = 0; i < hf->nadded; i++)
		if (strmap_put(&t->ids, hf->added[i].content, hf->added[i].len, hf->added[i].id) < 0) return LM_ERR;

	/* merges: (left id, right id) -> (rank, merged id) */
	int nm = cJSON_GetArraySize(merges), rank = 0;
	if (pairmap_init(&hf->merges, (size_t)nm)) return LM_ERR;
	char *cat = NULL;
	size_t catcap = 0;
	cJSON_ArrayForEach(e, merges) {
		const char *a = NULL, *b = NULL;
		size_t al = 0, bl = 0;
		char *tmp;
		if (parse_merge(path, e, rank, &a, &al, &b, &bl, &tmp)) {
			free(cat);
			return LM_ERR;
		}
		int32_t ia = strmap_get(&hf->vocab, a, al), ib = strmap_get(&hf->vocab, b, bl);
		if (al + bl + 1 > catcap) {
			catcap = 2 * (al + bl + 1);
			char *p = realloc(cat, catcap);
			if (!p) {
				free(cat);
				return lm_err(_("out of memory"));
			}
			cat = p;
		}
		memcpy(cat, a, al);
		memcpy(cat + al, b, bl);
		int32_t im = strmap_get(&hf->vocab, cat, al + bl);
		if (ia < 0 || ib < 0 || im < 0) {
			free(cat);
			return lm_err(_("%s: merge %d (\"%.*s\" \"%.*s\") uses a token that is not in the vocabulary"), path,
				      rank, (int)al, a, (int)bl, b);
		}
		if (pairmap_put(&hf->merges, ia, ib, rank, im) < 0) {
			free(cat);
			return LM_ERR;
		}
		rank++;
	}
	free(cat);
	return LM_OK;
}

int tok_hf_load(struct tokenizer *t, const char *path, const char *data, size_t len)
{
	bytelevel_init();
	/* an empty file (a download that failed) said "malformed JSON near byte 0" */
	if (len == 0) return lm_err(_("%s: the file is empty"), path);
	cJSON *root = cJSON_ParseWithLength(data, len);
	if (!root) {
		const char *at = cJSON_GetErrorPtr();
		return lm_err(_("%s: malformed JSON near byte %ld"), path, at && at >= data && at <= data + len ? (long)(at - data) : 0L);
	}
	struct hf *hf = calloc(1, sizeof(*hf));
	if (!hf) {
		cJSON_Delete(root);
		return lm_err(_("out of memory"));
	}
	t->hf = hf;
	hf->unk = -1;
	bool fused = false;
	int rc = cJSON_IsObject(root) ? LM_OK : lm_err(_("%s: not a JSON object"), path);
	if (!rc) rc = load_model(t, hf, path, root);
	if (!rc) rc = parse_normalizer(hf, path, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
	if (!rc) rc = parse_pretok(hf, path, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
	if (!rc) rc = parse_decoder(hf, path, cJSON_GetObjectItemCaseSensitive(root, "decoder"), &fused);
	cJSON_Delete(root);
	/* normalized added tokens are looked for, normalized, in normalized text */
	for (int i = 0; !rc && i < hf->nadded; i++) {
		struct added *a = &hf->added[i];
		if (!a->normalized) continue;
		struct buf nb = { 0 };
		rc = normalize(hf, a->content, a->len, &nb);
		if (!rc) {
			a->match = nb.p ? nb.p : strdup("");
			a->mlen = nb.n;
			if (!a->match) rc = lm_err(_("out of memory"));
		}
	}
	if (!rc) rc = build_index(hf, 0);
	if (!rc) rc = build_index(hf, 1);
	if (!rc) find_bos_eos(t, path);
	return rc;
}

/* ---- Unicode classes as the regexes see them ---- */

static bool is_letter(int32_t c)
{
	if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
	utf8proc_category_t k = utf8proc_category(c);
	return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
	       k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO;
}

static bool is_number(int32_t c)
{
	if (c < 0x80) return c >= '0' && c <= '9';
	utf8proc_category_t k = utf8proc_category(c);
	return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/* \s: Unicode White_Space */
static bool is_space(int32_t c)
{
	if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0d);
	return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
	       c == 0x202f || c == 0x205f || c == 0x3000;
}

static bool is_nl(int32_t c) { return c == '\r' || c == '\n'; }
static bool is_other(int32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); } /* [^\s\p{L}\p{N}] */

/* case folding as far as the contraction letters need it (U+017F LONG S folds to s) */
static int32_t fold(int32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c == 0x17f ? 's' : c; }

/* 's|'t|'re|'ve|'m|'ll|'d (caseless for Llama-3/Qwen): the length matched at i, or 0 */
static int contraction(const int32_t *c, int n, int i, bool caseless)
{
	if (c[i] != '\'' || i + 1 >= n) return 0;
	int32_t a = caseless ? fold(c[i + 1]) : c[i + 1];
	if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
	if (i + 2 >= n) return 0;
	int32_t b = caseless ? fold(c[i + 2]) : c[i + 2];
	if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
	return 0;
}

/* Length in code points of the regex match starting at i (every position matches something). */
static int re_match(enum re_kind re, const int32_t *c, int n, int i)
{
	int j, k;
	if ((k = contraction(c, n, i, re != RE_GPT2))) return k;
	if (re == RE_GPT2) {
		/* ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+' */
		k = c[i] == ' ' && i + 1 < n ? i + 1 : i;
		bool (*cls[])(int32_t) = { is_letter, is_number, is_other };
		for (int m = 0; m < 3; m++) {
			int s = cls[m](c[k]) ? k : cls[m](c[i]) ? i : -1;
			if (s < 0) continue;
			for (j = s; j < n && cls[m](c[j]);) j++;
			return j - i;
		}
	} else {
		/* [^\r\n\p{L}\p{N}]?\p{L}+ */
		if (is_letter(c[i]) || (!is_nl(c[i]) && !is_number(c[i]) && i + 1 < n && is_letter(c[i + 1]))) {
			for (j = i + 1; j < n && is_letter(c[j]);) j++;
			return j - i;
		}
		/* \p{N}{1,3} (Llama-3) or \p{N} (Qwen) */
		if (is_number(c[i])) {
			int max = re == RE_LLAMA3 ? 3 : 1;
			for (j = i + 1; j < n && j - i < max && is_number(c[j]);) j++;
			return j - i;
		}
		/* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
		k = c[i] == ' ' && i + 1 < n && is_other(c[i + 1]) ? i + 1 : i;
		if (is_other(c[k])) {
			for (j = k; j < n && is_other(c[j]);) j++;
			while (j < n && is_nl(c[j])) j++;
			return j - i;
		}
		/* \s*[\r\n]+ : up to and including the last newline of the whitespace run */
		if (is_space(c[i])) {
			int last = -1;
			for (j = i; j < n && is_space(c[j]); j++)
				if (is_nl(c[j])) last = j;
			if (last >= 0) return last + 1 - i;
		}
	}
	/* \s+(?!\S) then \s+ */
	if (is_space(c[i])) {
		for (j = i; j < n && is_space(c[j]);) j++;
		if (j == n) return j - i;
		if (j - 1 > i) return j - 1 - i;
		return j - i;
	}
	return 1;
}

/* ---- encoding ---- */

/* Words being pre-tokenized: spans of one byte buffer. first: the word starts the original text (Metaspace
 * "first" prepends only there). */
struct words {
	struct buf text;
	struct span { uint32_t off, len; bool first; } *w;
	int n, cap;
};

static int words_add(struct words *ws, const char *s, size_t n, bool first)
{
	if (ws->n == ws->cap) {
		int c = ws->cap ? ws->cap * 2 : 16;
		void *p = realloc(ws->w, sizeof(*ws->w) * (size_t)c);
		if (!p) return lm_err(_("out of memory"));
		ws->w = p;
		ws->cap = c;
	}
	ws->w[ws->n++] = (struct span){ (uint32_t)ws->text.n, (uint32_t)n, first };
	return buf_put(&ws->text, s, n);
}

static void words_free(struct words *ws)
{
	free(ws->text.p);
	free(ws->w);
	memset(ws, 0, sizeof(*ws));
}

static int replace_all(struct buf *out, const char *s, size_t n, const char *pat, const char *with)
{
	size_t pl = strlen(pat), wl = strlen(with);
	for (size_t i = 0; i < n;) {
		if (i + pl <= n && !memcmp(s + i, pat, pl)) {
			if (buf_put(out, with, wl)) return LM_ERR;
			i += pl;
		} else {
			if (buf_putc(out, s[i])) return LM_ERR;
			i++;
		}
	}
	return LM_OK;
}

/* Decode UTF-8 into code points with their byte offsets; an invalid byte stands for itself (U+FFFD class). */
static int to_cps(const char *s, size_t n, int32_t **cps, uint32_t **offs, int *ncp)
{
	*cps = malloc(sizeof(int32_t) * (n + 1));
	*offs = malloc(sizeof(uint32_t) * (n + 1));
	if (!*cps || !*offs) return lm_err(_("out of memory"));
	int k = 0;
	for (size_t i = 0; i < n;) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
		if (l <= 0) {
			cp = 0xfffd;
			l = 1;
		}
		(*cps)[k] = cp;
		(*offs)[k++] = (uint32_t)i;
		i += (size_t)l;
	}
	(*offs)[k] = (uint32_t)n;
	*ncp = k;
	return LM_OK;
}

static int normalize(const struct hf *hf, const char *s, size_t n, struct buf *out)
{
	if (buf_put(out, s, n)) return LM_ERR;
	for (int i = 0; i < hf->nnorm; i++) {
		const struct norm_step *st = &hf->norm[i];
		struct buf nb = { 0 };
		int rc = LM_OK;
		switch (st->kind) {
		case N_NFC: case N_NFKC: case N_NFD: case N_NFKD: case N_LOWERCASE: {
			if (!out->n) continue;
			int opt = UTF8PROC_STABLE;
			if (st->kind == N_NFC) opt |= UTF8PROC_COMPOSE;
			else if (st->kind == N_NFKC) opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
			else if (st->kind == N_NFD) opt |= UTF8PROC_DECOMPOSE;
			else if (st->kind == N_NFKD) opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
			if (st->kind == N_LOWERCASE) {
				int32_t *cps;
				uint32_t *offs;
				int ncp;
				rc = to_cps(out->p, out->n, &cps, &offs, &ncp);
				for (int k = 0; rc == LM_OK && k < ncp; k++) {
					utf8proc_uint8_t enc[4];
					if (cps[k] == 0x130) { /* Rust's char::to_lowercase: the one unconditional two-character case */
						rc = buf_put(&nb, "i\xcc\x87", 3);
						continue;
					}
					utf8proc_ssize_t l = utf8proc_encode_char(utf8proc_tolower(cps[k]), enc);
					rc = buf_put(&nb, enc, (size_t)l);
				}
				free(cps);
				free(offs);
				break;
			}
			utf8proc_uint8_t *res = NULL;
			utf8proc_ssize_t l = utf8proc_map((const utf8proc_uint8_t *)out->p, (utf8proc_ssize_t)out->n, &res, opt);
			if (l < 0) { /* not valid UTF-8: leave it as it is */
				free(res);
				continue;
			}
			rc = buf_put(&nb, res, (size_t)l);
			free(res);
			break;
		}
		case N_PREPEND:
			if (!out->n) continue;
			rc = buf_put(&nb, st->a, strlen(st->a));
			if (rc == LM_OK) rc = buf_put(&nb, out->p, out->n);
			break;
		case N_REPLACE:
			rc = replace_all(&nb, out->p, out->n, st->a, st->b);
			if (rc == LM_OK && !nb.p) rc = buf_put(&nb, "", 0);
			break;
		}
		/* a Sequence of Replace steps can grow the text geometrically (a -> aaa..., eight times over): stop at
		 * a bound far above what NFKD or any real normalizer does */
		if (rc == LM_OK && nb.n > 64 * n + 65536)
			rc = lm_err(_("tokenizer: the normalizer makes the text more than 64 times longer (a broken tokenizer.json?)"));
		if (rc) {
			free(nb.p);
			return LM_ERR;
		}
		free(out->p);
		*out = nb;
	}
	return LM_OK;
}

static int split_regex(enum re_kind re, const char *s, size_t n, bool first, struct words *out)
{
	int32_t *cps;
	uint32_t *offs;
	int ncp, rc = to_cps(s, n, &cps, &offs, &ncp);
	for (int i = 0; rc == LM_OK && i < ncp;) {
		int m = re_match(re, cps, ncp, i);
		rc = words_add(out, s + offs[i], offs[i + m] - offs[i], first && i == 0);
		i += m;
	}
	free(cps);
	free(offs);
	return rc;
}

static int pretokenize(const struct hf *hf, struct words *ws)
{
	for (int p = 0; p < hf->npre; p++) {
		const struct pre_step *st = &hf->pre[p];
		struct words nw = { 0 };
		int rc = LM_OK;
		for (int i = 0; rc == LM_OK && i < ws->n; i++) {
			const char *s = ws->text.p + ws->w[i].off;
			size_t n = ws->w[i].len;
			bool first = ws->w[i].first;
			if (st->kind == P_SPLIT) {
				rc = split_regex(st->re, s, n, first, &nw);
			} else if (st->kind == P_BYTELEVEL) {
				struct buf pre = { 0 };
				if (st->add_prefix_space && (n == 0 || s[0] != ' ')) rc = buf_putc(&pre, ' ');
				if (rc == LM_OK) rc = buf_put(&pre, s, n);
				struct words parts = { 0 };
				if (rc == LM_OK) rc = st->use_regex ? split_regex(RE_GPT2, pre.p, pre.n, first, &parts)
								    : words_add(&parts, pre.p, pre.n, first);
				for (int k = 0; rc == LM_OK && k < parts.n; k++) {
					/* each byte becomes its printable stand-in character */
					struct buf m = { 0 };
					for (uint32_t b = 0; rc == LM_OK && b < parts.w[k].len; b++) {
						utf8proc_uint8_t enc[4];
						utf8proc_ssize_t l = utf8proc_encode_char((utf8proc_int32_t)byte_cp[(unsigned char)parts.text.p[parts.w[k].off + b]], enc);
						rc = buf_put(&m, enc, (size_t)l);
					}
					if (rc == LM_OK && m.n) rc = words_add(&nw, m.p, m.n, parts.w[k].first);
					free(m.p);
				}
				words_free(&parts);
				free(pre.p);
			} else { /* Metaspace */
				struct buf m = { 0 };
				rc = replace_all(&m, s, n, " ", st->repl);
				size_t rl = strlen(st->repl);
				bool starts = m.n >= rl && !memcmp(m.p, st->repl, rl);
				if (rc == LM_OK && !starts && (st->scheme == PS_ALWAYS || (st->scheme == PS_FIRST && first))) {
					struct buf q = { 0 };
					rc = buf_put(&q, st->repl, rl);
					if (rc == LM_OK && m.n) rc = buf_put(&q, m.p, m.n);
					free(m.p);
					m = q;
				}
				if (rc == LM_OK && st->split) {
					/* each replacement character starts a new word */
					size_t from = 0;
					for (size_t k = rl; rc == LM_OK && k + rl <= m.n; k++)
						if (!memcmp(m.p + k, st->repl, rl)) {
							rc = words_add(&nw, m.p + from, k - from, first && from == 0);
							from = k;
						}
					if (rc == LM_OK && m.n > from) rc = words_add(&nw, m.p + from, m.n - from, first && from == 0);
				} else if (rc == LM_OK && m.n) {
					rc = words_add(&nw, m.p, m.n, first);
				}
				free(m.p);
			}
		}
		words_free(ws);
		*ws = nw;
		if (rc) return LM_ERR;
	}
	return LM_OK;
}

struct hf_ctx { const struct tokenizer *t; bool match_special; };

static bool hf_pair(const void *ctx, const char *word, const struct bpe_sym *l, const struct bpe_sym *r, double *prio,
		    int32_t *id)
{
	const struct hf_ctx *c = ctx;
	int32_t rank;
	if (!pairmap_get(&c->t->hf->merges, l->id, r->id, &rank, id)) return false;
	/* without match_special the text never becomes a special token, not even by merging */
	if (!c->match_special && c->t->type[*id] == PT_CONTROL) return false;
	*prio = rank;
	return true;
}

static int bpe_word(const struct tokenizer *t, bool match_special, const char *w, size_t n, struct idvec *out)
{
	const struct hf *hf = t->hf;
	if (!n) return LM_OK;
	int32_t whole = strmap_get(&hf->vocab, w, n);
	if (hf->ignore_merges && whole >= 0 && (match_special || t->type[whole] != PT_CONTROL)) return idvec_push(out, whole);
	struct bpe_sym *sym = malloc(sizeof(*sym) * n);
	if (!sym) return lm_err(_("out of memory"));
	int ns = 0;
	bool prev_unk = false;
	for (size_t i = 0; i < n;) {
		size_t l = (size_t)utf8_len((unsigned char)w[i]);
		if (l == 0 || i + l > n) l = 1;
		int32_t id = strmap_get(&hf->vocab, w + i, l);
		if (id >= 0) {
			sym[ns] = (struct bpe_sym){ .start = (uint32_t)i, .len = (uint32_t)l, .id = id };
			ns++;
			prev_unk = false;
		} else {
			bool all = hf->byte_fallback;
			for (size_t k = 0; all && k < l; k++) all = t->byte_id[(unsigned char)w[i + k]] >= 0;
			if (all) {
				for (size_t k = 0; k < l; k++)
					sym[ns++] = (struct bpe_sym){ .start = (uint32_t)(i + k), .len = 1,
								      .id = t->byte_id[(unsigned char)w[i + k]] };
				prev_unk = false;
			} else if (hf->unk >= 0) {
				if (hf->fuse_unk && prev_unk) {
					sym[ns - 1].len += (uint32_t)l;
				} else {
					sym[ns++] = (struct bpe_sym){ .start = (uint32_t)i, .len = (uint32_t)l, .id = hf->unk };
				}
				prev_unk = true;
			} /* no unk token: the character is dropped, as tokenizers does */
		}
		i += l;
	}
	for (int k = 0; k < ns; k++) {
		sym[k].prev = k - 1;
		sym[k].next = k + 1 < ns ? k + 1 : -1;
	}
	struct hf_ctx ctx = { t, match_special };
	int rc = ns ? bpe_merge(sym, ns, w, hf_pair, &ctx) : LM_OK;
	for (int k = 0; rc == LM_OK && ns && k >= 0; k = sym[k].next) rc = idvec_push(out, sym[k].id);
	free(sym);
	return rc;
}

static bool word_char(const char *s, size_t n, size_t at, bool before)
{
	/* the code point just before/after byte position at */
	if (before) {
		if (at == 0) return false;
		size_t i = at - 1;
		while (i > 0 && ((unsigned char)s[i] & 0xc0) == 0x80) i--;
		utf8proc_int32_t cp;
		if (utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(at - i), &cp) <= 0) return false;
		return cp == '_' || is_letter(cp) || is_number(cp);
	}
	if (at >= n) return false;
	utf8proc_int32_t cp;
	if (utf8proc_iterate((const utf8proc_uint8_t *)s + at, (utf8proc_ssize_t)(n - at), &cp) <= 0) return false;
	return cp == '_' || is_letter(cp) || is_number(cp);
}

static bool ws_byte(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static int scan_added(const struct tokenizer *t, int pass, const char *text, size_t len, bool match_special,
		      bool at_start, struct idvec *out);

/* A stretch of normalized text between added tokens: pre-tokenize, BPE. */
static int encode_words(const struct tokenizer *t, bool match_special, const char *s, size_t n, bool at_start,
			struct idvec *out)
{
	if (!n) return LM_OK;
	struct words ws = { 0 };
	int rc = words_add(&ws, s, n, at_start);
	if (rc == LM_OK) rc = pretokenize(t->hf, &ws);
	for (int i = 0; rc == LM_OK && i < ws.n; i++) rc = bpe_word(t, match_special, ws.text.p + ws.w[i].off, ws.w[i].len, out);
	words_free(&ws);
	return rc;
}

/* A stretch of raw text between added tokens: normalize, then look for normalized added tokens in it. */
static int encode_segment(const struct tokenizer *t, bool match_special, const char *s, size_t n, bool at_start,
			  struct idvec *out)
{
	if (!n) return LM_OK;
	struct buf norm = { 0 };
	int rc = normalize(t->hf, s, n, &norm);
	if (rc == LM_OK) rc = scan_added(t, 1, norm.p ? norm.p : "", norm.n, match_special, at_start, out);
	free(norm.p);
	return rc;
}

/* Cut added tokens out of text (leftmost-longest), passing the stretches between them on. */
static int scan_added(const struct tokenizer *t, int pass, const char *text, size_t len, bool match_special,
		      bool at_start, struct idvec *out)
{
	const struct hf *hf = t->hf;
	const struct added_index *x = &hf->idx[pass];
	int (*next)(const struct tokenizer *, bool, const char *, size_t, bool, struct idvec *) =
		pass == 0 ? encode_segment : encode_words;
	size_t seg = 0; /* start of the pending stretch of plain text */
	for (size_t i = 0; i < len;) {
		int best = -1;
		unsigned char c = (unsigned char)text[i];
		/* candidates with this first byte, longest first: the first that fits is the leftmost-longest match */
		for (int k = x->first[c]; k < x->first[c + 1]; k++) {
			const struct added *a = &hf->added[x->order[k]];
			if (a->special && !match_special) continue;
			if (a->mlen > len - i || memcmp(text + i, a->match, a->mlen)) continue;
			if (a->single_word && (word_char(text, len, i, true) || word_char(text, len, i + a->mlen, false))) continue;
			best = x->order[k];
			break;
		}
		if (best < 0) {
			i++;
			continue;
		}
		const struct added *a = &hf->added[best];
		size_t s = i, e = i + a->mlen;
		if (a->lstrip)
			while (s > seg && ws_byte(text[s - 1])) s--;
		if (a->rstrip)
			while (e < len && ws_byte(text[e])) e++;
		if (next(t, match_special, text + seg, s - seg, at_start && seg == 0, out) || idvec_push(out, a->id)) return LM_ERR;
		i = seg = e;
	}
	return next(t, match_special, text + seg, len - seg, at_start && seg == 0, out);
}

int tok_hf_encode(const struct tokenizer *t, const char *text, size_t len, bool match_special, struct idvec *out)
{
	return scan_added(t, 0, text, len, match_special, true, out);
}

/* ---- decoding ---- */

static bool valid_utf8(const unsigned char *p, int n)
{
	for (int i = 0; i < n;) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t l = utf8proc_iterate(p + i, n - i, &cp);
		if (l <= 0) return false;
		i += (int)l;
	}
	return true;
}

/* The text of the first n bytes of the byte run, as tokenizers' ByteFallback gives it: the bytes if they are
 * valid UTF-8 as a whole, else one U+FFFD per byte. */
static int run_resolve(struct tok_stream *s, int n, struct buf *out)
{
	int rc = LM_OK;
	if (valid_utf8(s->run, n)) rc = buf_put(out, s->run, (size_t)n);
	else
		for (int i = 0; i < n && rc == LM_OK; i++) rc = buf_put(out, "\xef\xbf\xbd", 3);
	memmove(s->run, s->run + n, (size_t)(s->nrun - n));
	s->nrun -= n;
	return rc;
}

/* A full run: give out its whole characters (a longer run is judged in parts; only exact for valid text). */
static int run_overflow(struct tok_stream *s, struct buf *out)
{
	int k = s->nrun;
	for (int back = 1; back <= 4 && back <= s->nrun; back++) { /* keep a character cut at the end */
		int l = utf8_len(s->run[s->nrun - back]);
		if (l > 1) {
			if (l > back) k = s->nrun - back;
			break;
		}
		if ((s->run[s->nrun - back] & 0xc0) != 0x80) break;
	}
	if (k == 0) k = s->nrun;
	return run_resolve(s, k, out);
}

/* Run the decoder steps from step `from` on cur (a token's text, or text released by a byte run). */
static int run_steps(const struct tokenizer *t, struct tok_stream *s, struct buf cur, int from, struct buf *out)
{
	const struct hf *hf = t->hf;
	int rc = LM_OK;
	if (!cur.p) rc = buf_put(&cur, "", 0);
	for (int d = from; rc == LM_OK && d < hf->ndec; d++) {
		const struct dec_step *st = &hf->dec[d];
		struct buf nb = { 0 };
		switch (st->kind) {
		case D_FUSE:
			continue;
		case D_REPLACE:
			rc = replace_all(&nb, cur.p, cur.n, st->a, st->b);
			break;
		case D_BYTEFALLBACK: {
			/* <0xNN> tokens gather into a run; the run is released before the next other token */
			int b = tok_byte_piece(cur.p, cur.n);
			if (b >= 0) {
				cur.n = 0;
				if (s->nrun == (int)sizeof(s->run)) rc = run_overflow(s, &nb);
				s->run[s->nrun++] = (unsigned char)b;
			} else if (s->nrun > 0) {
				rc = run_resolve(s, s->nrun, &nb);
			}
			if (rc == LM_OK) rc = buf_put(&nb, cur.p, cur.n);
			break;
		}
		case D_STRIP: {
			/* after Fuse the text is one string: only its very start is stripped */
			size_t cl = strlen(st->a), k = 0;
			int left = st->fused ? st->start - s->nstripped : st->start;
			if (st->fused && (s->nout > 0 || left <= 0)) continue;
			while (left > 0 && k + cl <= cur.n && !memcmp(cur.p + k, st->a, cl)) {
				k += cl;
				left--;
				if (st->fused) s->nstripped++;
			}
			rc = buf_put(&nb, cur.p + k, cur.n - k);
			break;
		}
		case D_BYTELEVEL: {
			int32_t *cps;
			uint32_t *offs;
			int ncp;
			rc = to_cps(cur.p, cur.n, &cps, &offs, &ncp);
			bool all = true;
			for (int k = 0; rc == LM_OK && k < ncp && all; k++) all = cps[k] < 512 && cp_byte[cps[k]] >= 0;
			for (int k = 0; rc == LM_OK && all && k < ncp; k++) rc = buf_putc(&nb, (char)cp_byte[cps[k]]);
			if (rc == LM_OK && !all) rc = buf_put(&nb, cur.p, cur.n); /* a character outside the table: as is */
			free(cps);
			free(offs);
			break;
		}
		case D_METASPACE: {
			/* the replacement becomes a space, except in the first token, where it is dropped */
			size_t rl = strlen(st->repl);
			bool drop = s->ntok == 0 && st->scheme != PS_NEVER;
			for (size_t k = 0; rc == LM_OK && k < cur.n;) {
				if (k + rl <= cur.n && !memcmp(cur.p + k, st->repl, rl)) {
					if (!drop) rc = buf_putc(&nb, ' ');
					k += rl;
				} else {
					rc = buf_putc(&nb, cur.p[k++]);
				}
			}
			break;
		}
		}
		if (rc == LM_OK && !nb.p) rc = buf_put(&nb, "", 0);
		free(cur.p);
		cur = nb;
	}
	if (rc == LM_OK && cur.n) {
		rc = buf_put(out, cur.p, cur.n);
		s->nout += cur.n;
	}
	free(cur.p);
	return rc;
}

int tok_hf_surface(const struct tokenizer *t, struct tok_stream *s, int32_t id, struct buf *out)
{
	const struct hf *hf = t->hf;
	struct buf cur = { 0 };
	int ai = hf->added_of_id[id];
	/* an added token decodes as what it matches: tokenizers gives a normalized token its normalized form */
	const char *p = ai >= 0 ? hf->added[ai].match : t->piece[id];
	if (buf_put(&cur, p, ai >= 0 ? hf->added[ai].mlen : t->plen[id])) return LM_ERR;
	return run_steps(t, s, cur, 0, out);
}

bool tok_hf_skipped(const struct tokenizer *t, int32_t id)
{
	/* tokenizers skips by the token's text: a normalized special token whose normalized form differs from
	 * its content ("\xe2\x96\x81</s>" for "</s>") is not recognised as special, and shows */
	int ai = t->hf->added_of_id[id];
	if (ai < 0 || !t->hf->added[ai].special) return false;
	const struct added *a = &t->hf->added[ai];
	return a->mlen == a->len && !memcmp(a->match, a->content, a->len);
}

int tok_hf_flush(const struct tokenizer *t, struct tok_stream *s, struct buf *out)
{
	const struct hf *hf = t->hf;
	if (!s->nrun) return LM_OK;
	int d = 0;
	while (d < hf->ndec && hf->dec[d].kind != D_BYTEFALLBACK) d++;
	struct buf cur = { 0 };
	if (run_resolve(s, s->nrun, &cur)) {
		free(cur.p);
		return LM_ERR;
	}
	return run_steps(t, s, cur, d + 1, out);
}
