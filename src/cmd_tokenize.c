/* lmterm tokenize MODEL [TEXT] [--json]: print the ids of TEXT (or of all of stdin) space-separated, without
 * BOS, with added tokens written in the text matched as the format's library does. --json reads a JSON array
 * of strings on stdin and prints a JSON array of id arrays. MODEL is a model directory or a tokenizer file. */
#include "config.h"
#include "cmds.h"
#include "i18n.h"
#include "opts.h"
#include "tok.h"
#include "tok_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int read_stdin(char **buf, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *p = malloc(cap);
	if (!p) return LM_ERR;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			char *q = realloc(p, cap *= 2);
			if (!q) {
				free(p);
				return LM_ERR;
			}
			p = q;
		}
		size_t k = fread(p + n, 1, cap - n - 1, stdin);
		n += k;
		if (k == 0) break;
	}
	if (ferror(stdin)) {
		int e = errno;
		free(p);
		errno = e;
		return LM_ERR;
	}
	p[n] = 0;
	*buf = p;
	*len = n;
	return LM_OK;
}

/* The --json input, read here rather than with cJSON so that strings may hold "\u0000". */
struct jtext { char *s; size_t n; };
struct jreader { const char *p, *start, *end; };

static void jws(struct jreader *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static int hex4(const char *p, uint32_t *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0) return LM_ERR;
		*v = *v * 16 + (uint32_t)d;
	}
	return LM_OK;
}

static int put_utf8(struct buf *b, uint32_t c)
{
	char e[4];
	int n;
	if (c < 0x80) { e[0] = (char)c; n = 1; }
	else if (c < 0x800) { e[0] = (char)(0xc0 | c >> 6); e[1] = (char)(0x80 | (c & 0x3f)); n = 2; }
	else if (c < 0x10000) { e[0] = (char)(0xe0 | c >> 12); e[1] = (char)(0x80 | ((c >> 6) & 0x3f)); e[2] = (char)(0x80 | (c & 0x3f)); n = 3; }
	else { e[0] = (char)(0xf0 | c >> 18); e[1] = (char)(0x80 | ((c >> 12) & 0x3f)); e[2] = (char)(0x80 | ((c >> 6) & 0x3f)); e[3] = (char)(0x80 | (c & 0x3f)); n = 4; }
	return buf_put(b, e, (size_t)n);
}

/* A JSON string at r->p (just after its opening quote) into out. */
static int jstring(struct jreader *r, struct buf *out)
{
	if (buf_put(out, "", 0)) return LM_ERR;
	while (r->p < r->end) {
		unsigned char c = (unsigned char)*r->p++;
		if (c == '"') return LM_OK;
		if (c < 0x20) return LM_ERR;
		if (c != '\\') {
			if (buf_putc(out, (char)c)) return LM_ERR;
			continue;
		}
		if (r->p >= r->end) return LM_ERR;
		char e = *r->p++;
		static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
		const char *simple = e ? strchr(from, e) : NULL;
		if (simple) {
			if (buf_putc(out, to[simple - from])) return LM_ERR;
			continue;
		}
		uint32_t u, lo;
		if (e != 'u' || r->end - r->p < 4 || hex4(r->p, &u)) return LM_ERR;
		r->p += 4;
		if (u >= 0xd800 && u < 0xdc00) { /* a surrogate pair */
			if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u' || hex4(r->p + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
				return LM_ERR;
			r->p += 6;
			u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
		} else if (u >= 0xdc00 && u < 0xe000) {
			return LM_ERR;
		}
		if (put_utf8(out, u)) return LM_ERR;
	}
	return LM_ERR;
}

/* A JSON array of strings; on error a message that says where. */
static int jarray(const char *in, size_t len, struct jtext **texts, int *n)
{
	struct jreader r = { in, in, in + len };
	*texts = NULL;
	*n = 0;
	jws(&r);
	if (r.p >= r.end || *r.p != '[') goto bad;
	r.p++;
	jws(&r);
	if (r.p < r.end && *r.p == ']') {
		r.p++;
		goto end;
	}
	for (;;) {
		jws(&r);
		if (r.p >= r.end) goto bad;
		if (*r.p != '"') {
			lm_err(_("stdin: element %d of the JSON array is not a string"), *n);
			return LM_ERR;
		}
		r.p++;
		struct buf b = { 0 };
		if (jstring(&r, &b)) {
			free(b.p);
			goto bad;
		}
		void *q = realloc(*texts, sizeof(**texts) * (size_t)(*n + 1));
		if (!q) {
			free(b.p);
			return lm_err(_("out of memory"));
		}
		*texts = q;
		(*texts)[(*n)++] = (struct jtext){ b.p, b.n };
		jws(&r);
		if (r.p < r.end && *r.p == ',') {
			r.p++;
			continue;
		}
		if (r.p < r.end && *r.p == ']') {
			r.p++;
			break;
		}
		goto bad;
	}
end:
	jws(&r);
	if (r.p == r.end) return LM_OK;
bad:
	return lm_err(_("stdin: expected a JSON array of strings (malformed JSON at byte %ld)"), (long)(r.p - r.start));
}

static void print_ids(FILE *f, const int32_t *ids, int n, const char *sep)
{
	for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? sep : "", ids[i]);
}

/* The --json answer, built whole in *out (malloc'd) before any of it is written: a text that fails to encode
 * leaves nothing on stdout (the arrays before it were printed, which a reader could take for the answer). */
static int json_answer(const struct tokenizer *t, const struct jtext *texts, int nt, char **out, size_t *len)
{
	FILE *m = open_memstream(out, len);
	if (!m) return lm_err(_("out of memory"));
	int rc = LM_OK;
	fputc('[', m);
	for (int i = 0; i < nt; i++) {
		int32_t *ids;
		int nid;
		if ((rc = tok_encode(t, texts[i].s, texts[i].n, true, &ids, &nid)) != LM_OK) break;
		fputs(i ? ", [" : "[", m);
		print_ids(m, ids, nid, ", ");
		fputc(']', m);
		free(ids);
	}
	fputs("]\n", m);
	if (fclose(m) != 0 && rc == LM_OK) rc = lm_err(_("out of memory"));
	if (rc != LM_OK) free(*out);
	return rc;
}

static int usage_to(FILE *f)
{
	/* "Usage:" as every other command says it; "--" before a TEXT that begins with '-' */
	fprintf(f, _("Usage: lmterm tokenize MODEL [--] [TEXT] [--json]\n"));
	return 2;
}
static int usage(void) { return usage_to(stderr); }

int cmd_tokenize(int argc, char **argv)
{
	const char *model = NULL, *text = NULL;
	bool json = false;
	struct opt_iter it;
	opt_iter_init(&it, argc, argv);
	while (opt_next(&it)) {
		if (!it.name) {
			if (!model) model = it.arg;
			else if (!text) text = it.arg;
			else {
				fprintf(stderr, _("lmterm: tokenize: unexpected argument '%s'\n"), it.arg);
				return usage();
			}
		} else if (!strcmp(it.name, "json")) {
			if (it.value) {
				fprintf(stderr, _("lmterm: --json takes no value\n"));
				return 2;
			}
			json = true;
		} else if (!strcmp(it.name, "help") || !strcmp(it.name, "h")) {
			usage_to(stdout);
			return 0;
		} else {
			fprintf(stderr, _("lmterm: tokenize: unknown option '%s'\n"), it.arg);
			return usage();
		}
	}
	if (!model) return usage();
	if (json && text) {
		fprintf(stderr, _("lmterm: tokenize: --json reads its texts from stdin; drop the TEXT argument\n"));
		return 2;
	}

	struct tokenizer *t;
	if ((access(model, F_OK) != 0 && check_model_dir(model)) || tok_load(&t, model)) { /* missing: a model id? */
		fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
		return 1;
	}

	char *in = NULL;
	size_t len = 0;
	if (!text) {
		if (read_stdin(&in, &len)) {
			fprintf(stderr, _("lmterm: cannot read standard input: %s\n"), strerror(errno));
			tok_free(t);
			return 1;
		}
	}
	int status = 0;
	if (!json) {
		const char *s = text ? text : in;
		size_t n = text ? strlen(text) : len;
		int32_t *ids;
		int nid;
		if (tok_encode(t, s, n, true, &ids, &nid)) {
			fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
			status = 1;
		} else {
			print_ids(stdout, ids, nid, " ");
			putchar('\n');
			free(ids);
		}
	} else {
		struct jtext *texts;
		int nt;
		if (jarray(in, len, &texts, &nt)) {
			fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
			status = 1;
		} else {
			char *ans;
			size_t alen;
			if (json_answer(t, texts, nt, &ans, &alen)) {
				fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
				status = 1;
			} else {
				fwrite(ans, 1, alen, stdout);
				free(ans);
			}
		}
		for (int i = 0; i < nt; i++) free(texts[i].s);
		free(texts);
	}
	free(in);
	tok_free(t);
	return status; /* main reports a failed write to stdout */
}
