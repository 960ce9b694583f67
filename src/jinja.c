/* jinja.c: a small Jinja interpreter for chat templates (see jinja.h).
 *
 * Three steps: the source is cut into text and tags, with Jinja's whitespace rules applied there
 * (trim_blocks, lstrip_blocks, '-' markers); the tags are parsed into a tree (statements, expressions);
 * the tree is evaluated against the context. Every value and node lives in one arena, freed at the end. */
#include "config.h"
#include "jinja.h"
#include "i18n.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ arena */

struct chunk {
	struct chunk *next;
	size_t used, cap;
	_Alignas(16) unsigned char data[];
};

struct jctx;
static void *ar_alloc(struct jctx *J, size_t n);

/* ------------------------------------------------------------------ values */

/* J_FUNC: a global function (range, namespace, raise_exception, strftime_now, dict), its name in u.s;
 * J_MACRO: a {% macro %}, its statement in u.m */
enum jt { J_UNDEF, J_NONE, J_BOOL, J_INT, J_FLOAT, J_STR, J_LIST, J_DICT, J_FUNC, J_MACRO };

struct jlist;
struct jdict;
struct stmt;
struct jval {
	enum jt t;
	union {
		bool b;
		long long i;
		double f;
		struct { const char *p; size_t n; } s;
		struct jlist *l;
		struct jdict *d;
		struct stmt *m;
	} u;
};
struct jlist { int n, cap; struct jval *v; bool tuple; /* a tuple: prints as one */ };
struct jdict { int n, cap; const char **k; struct jval *v; bool ns; };

/* ------------------------------------------------------------------ tree */

enum ek { E_LIT, E_NAME, E_LIST, E_DICT, E_ATTR, E_INDEX, E_SLICE, E_CALL, E_FILTER, E_TEST, E_UNARY, E_BIN,
	  E_COND };
struct expr {
	enum ek k;
	struct jval lit;
	const char *name;          /* E_NAME, E_ATTR attr, E_FILTER/E_TEST name, E_BIN/E_UNARY op */
	struct expr *a, *b, *c;    /* operands; E_SLICE: a[b:c:d] */
	struct expr *d;
	struct expr **args;        /* E_CALL / E_FILTER / E_TEST arguments, E_LIST items, E_DICT keys,values */
	const char **kw;           /* keyword argument names (NULL for positional) */
	int nargs;
	bool neg;                  /* E_TEST: "is not" */
};

enum sk { S_TEXT, S_OUT, S_IF, S_FOR, S_SET, S_MACRO, S_BREAK, S_CONTINUE, S_FILTER, S_WITH };
struct stmt {
	enum sk k;
	const char *text;
	size_t len;
	struct expr *e;            /* S_OUT value, S_FOR iterable, S_SET value, S_IF: unused */
	struct expr **conds;       /* S_IF: one per branch (NULL = else) */
	struct stmt ***bodies;     /* S_IF: statement lists per branch */
	int *nbody;
	int nbranch;
	const char *var, *var2;    /* S_FOR loop variables; S_SET target (var2: attribute of a namespace) */
	struct expr *filter;       /* S_FOR ... if cond */
	struct stmt **body, **else_body;  /* S_SET with a body: {% set x %}...{% endset %} */
	int nb, ne;
	const char **params;       /* S_MACRO parameter names, defaults[i] NULL when it has none; S_WITH names and
				    * values; S_SET "a, b = ..." targets (nparams > 1) */
	struct expr **defaults;
	int nparams;
};

/* ------------------------------------------------------------------ lexing the template */

enum tagk { T_TEXT, T_EXPR, T_STMT };
struct tag {
	enum tagk k;
	const char *p;
	size_t n;
};

/* tokens inside a tag */
enum tokk { K_END, K_NAME, K_STR, K_INT, K_FLOAT, K_OP };
struct tok {
	enum tokk k;
	const char *p;  /* K_NAME/K_OP text, K_STR decoded */
	size_t n;
	double num;
	long long inum;  /* K_INT */
};

struct scope {
	struct scope *up;
	int n, cap;
	const char **k;
	struct jval *v;
};

struct jctx {
	struct chunk *ar;
	char err[512];
	bool failed;
	/* parsing */
	struct tag *tags;
	int ntags, ti;
	struct tok *toks;
	int ntoks, pos;
	/* output */
	char *out;
	size_t olen, ocap;
	struct scope *sc, *global;
	int depth;
	int brk;                   /* {% break %} (1) or {% continue %} (2) pending in the innermost loop */
	size_t arena_bytes;        /* bounded too: MAX_ARENA */
	int ploops;                /* parsing: loops around the current statement (in the current macro) */
	int pdepth;                /* parsing: nesting of expressions and blocks, bounded so that the C stack is */
	long long steps;           /* statements and loop turns run, bounded so that no template runs forever */
	int edepth;                /* evaluation: nesting of expressions being evaluated (eval), bounded as pdepth */
};

static void jerr(struct jctx *J, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Working memory a template may take before it fails: much more than a conversation needs. Past it the
 * allocation still succeeds (callers do not check), the render fails and stops at the next statement. */
#define MAX_ARENA ((size_t)512 << 20)

static void *ar_alloc(struct jctx *J, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (!J->ar || J->ar->used + n > J->ar->cap) {
		size_t cap = n > 65536 ? n : 65536;
		J->arena_bytes += cap;
		if (J->arena_bytes > MAX_ARENA) jerr(J, "%s", _("chat template: more than 512 MiB of working memory"));
		struct chunk *c = malloc(sizeof *c + cap);
		if (!c) abort(); /* a template's working set is small; running out here is not recoverable */
		c->next = J->ar;
		c->used = 0;
		c->cap = cap;
		J->ar = c;
	}
	void *p = J->ar->data + J->ar->used;
	J->ar->used += n;
	memset(p, 0, n);
	return p;
}

static char *ar_strndup(struct jctx *J, const char *s, size_t n)
{
	char *p = ar_alloc(J, n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

static void jerr(struct jctx *J, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jerr(struct jctx *J, const char *fmt, ...)
{
	if (J->failed) return;
	J->failed = true;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(J->err, sizeof J->err, fmt, ap);
	va_end(ap);
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Cut the source into text and tags, applying whitespace control. */
static void cut_tags(struct jctx *J, const char *s)
{
	int cap = 64;
	J->tags = ar_alloc(J, sizeof *J->tags * cap);
	size_t i = 0, n = strlen(s);
	bool strip_next = false, trim_nl = false;
	while (i < n) {
		const char *open = NULL;
		for (size_t j = i; j + 1 < n; j++)
			if (s[j] == '{' && (s[j + 1] == '{' || s[j + 1] == '%' || s[j + 1] == '#')) {
				open = s + j;
				break;
			}
		size_t tend = open ? (size_t)(open - s) : n;
		const char *tp = s + i;
		size_t tn = tend - i;
		if (trim_nl && tn && tp[0] == '\n') tp++, tn--;
		if (strip_next)
			while (tn && is_ws(*tp)) tp++, tn--;
		if (open) {
			char kind = open[1];
			bool minus = tend + 2 < n && s[tend + 2] == '-', plus = tend + 2 < n && s[tend + 2] == '+';
			if (minus) {
				while (tn && is_ws(tp[tn - 1])) tn--;
			} else if (kind != '{' && !plus) { /* lstrip_blocks: spaces from the line start to the tag */
				size_t k = tn;
				while (k && (tp[k - 1] == ' ' || tp[k - 1] == '\t')) k--;
				if (k == 0 ? (tp == s || tp[-1] == '\n') : tp[k - 1] == '\n') tn = k;
			}
		}
		if (tn) {
			if (J->ntags == cap) {
				struct tag *t = ar_alloc(J, sizeof *t * cap * 2);
				memcpy(t, J->tags, sizeof *t * cap);
				J->tags = t;
				cap *= 2;
			}
			J->tags[J->ntags++] = (struct tag){ T_TEXT, tp, tn };
		}
		if (!open) break;
		char kind = open[1];
		const char *close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
		size_t b = tend + 2;
		if (b < n && (s[b] == '-' || s[b] == '+')) b++;
		/* The tag ends at the first close delimiter outside string literals and brackets: "{{- '}}' }}" and
		 * "{{ {'a': {}} }}" are one tag each, as Jinja's lexer reads them (Mistral's tool templates print "}}"
		 * that way). Comments have neither. */
		const char *e = NULL;
		char quote = 0;
		int depth = 0;
		for (size_t j = b; j + 1 < n; j++) {
			if (quote) {
				if (s[j] == '\\' && j + 2 < n) j++;
				else if (s[j] == quote) quote = 0;
			} else if (kind != '#' && (s[j] == '\'' || s[j] == '"')) {
				quote = s[j];
			} else if (kind != '#' && (s[j] == '(' || s[j] == '[' || s[j] == '{')) {
				depth++;
			} else if (kind != '#' && depth > 0 && (s[j] == ')' || s[j] == ']' || s[j] == '}')) {
				depth--;
			} else if (s[j] == close[0] && s[j + 1] == close[1]) {
				e = s + j;
				break;
			}
		}
		if (!e && quote) {
			jerr(J, _("chat template: unterminated string in the tag at offset %zu"), tend);
			return;
		}
		if (!e) {
			jerr(J, _("chat template: unclosed '{%c' at offset %zu"), kind, tend);
			return;
		}
		size_t ie = (size_t)(e - s);
		bool rminus = ie > b && s[ie - 1] == '-';
		bool rplus = kind != '{' && ie > b && s[ie - 1] == '+'; /* "+%}": no trim_blocks after this tag */
		if (kind == '%') {
			/* {% raw %}...{% endraw %}: the text between as it is */
			size_t tb = b, te = ie - (rminus || rplus ? 1 : 0);
			while (tb < te && is_ws(s[tb])) tb++;
			while (te > tb && is_ws(s[te - 1])) te--;
			if (te - tb == 3 && memcmp(s + tb, "raw", 3) == 0) {
				size_t rs = ie + 2, k = rs;
				const char *end = NULL;
				size_t after = 0;
				bool em = false, ep = false;
				for (; k + 1 < n; k++) {
					if (s[k] != '{' || s[k + 1] != '%') continue;
					size_t q = k + 2;
					bool lm = q < n && s[q] == '-';
					if (q < n && (s[q] == '-' || s[q] == '+')) q++;
					while (q < n && is_ws(s[q])) q++;
					if (n - q < 6 || memcmp(s + q, "endraw", 6) != 0) continue;
					q += 6;
					while (q < n && is_ws(s[q])) q++;
					em = q < n && s[q] == '-';
					ep = q < n && s[q] == '+';
					if (em || ep) q++;
					if (q + 1 < n && s[q] == '%' && s[q + 1] == '}') {
						end = s + k;
						after = q + 2;
						if (lm) while (end > s + rs && is_ws(end[-1])) end--;
						break;
					}
				}
				if (!end) {
					jerr(J, _("chat template: {%% raw %%} without {%% endraw %%}"));
					return;
				}
				const char *rp = s + rs;
				if (rminus) while (rp < end && is_ws(*rp)) rp++;
				if (end > rp) {
					if (J->ntags == cap) {
						struct tag *t = ar_alloc(J, sizeof *t * cap * 2);
						memcpy(t, J->tags, sizeof *t * cap);
						J->tags = t;
						cap *= 2;
					}
					J->tags[J->ntags++] = (struct tag){ T_TEXT, rp, (size_t)(end - rp) };
				}
				strip_next = em;
				trim_nl = !ep;
				i = after;
				continue;
			}
		}
		if (kind != '#') {
			if (J->ntags == cap) {
				struct tag *t = ar_alloc(J, sizeof *t * cap * 2);
				memcpy(t, J->tags, sizeof *t * cap);
				J->tags = t;
				cap *= 2;
			}
			J->tags[J->ntags++] = (struct tag){ kind == '{' ? T_EXPR : T_STMT, s + b, ie - b - (rminus || rplus ? 1 : 0) };
		}
		strip_next = rminus;
		trim_nl = kind != '{' && !rplus; /* trim_blocks: the newline after a block or comment tag */
		i = ie + 2;
	}
}

/* Tokenize one tag's inside. */
static void lex(struct jctx *J, const char *p, size_t n)
{
	int cap = 32;
	J->toks = ar_alloc(J, sizeof *J->toks * (cap + 1));
	J->ntoks = 0;
	J->pos = 0;
	size_t i = 0;
	while (i < n && !J->failed) {
		char c = p[i];
		if (is_ws(c)) {
			i++;
			continue;
		}
		if (J->ntoks == cap) {
			struct tok *t = ar_alloc(J, sizeof *t * (cap * 2 + 1));
			memcpy(t, J->toks, sizeof *t * cap);
			J->toks = t;
			cap *= 2;
		}
		struct tok *t = &J->toks[J->ntoks++];
		if (isalpha((unsigned char)c) || c == '_') {
			size_t j = i;
			while (j < n && (isalnum((unsigned char)p[j]) || p[j] == '_')) j++;
			*t = (struct tok){ K_NAME, p + i, j - i, 0, 0 };
			i = j;
		} else if (isdigit((unsigned char)c)) {
			/* Jinja's number literals: 0x/0o/0b integers, decimal ones, floats with a fraction and/or an
			 * exponent ("5." is 5 then '.'), '_' between digits */
			char digits[128];
			size_t k = 0, j = i;
			int base = 10;
			bool fl = false;
			if (c == '0' && j + 2 < n && strchr("xXoObB", p[j + 1]) && isxdigit((unsigned char)p[j + 2])) {
				base = tolower((unsigned char)p[j + 1]) == 'x' ? 16 : tolower((unsigned char)p[j + 1]) == 'o' ? 8 : 2;
				j += 2;
				while (j < n && (isxdigit((unsigned char)p[j]) || p[j] == '_') && k < sizeof digits - 1)
					if (p[j++] != '_') digits[k++] = p[j - 1];
			} else {
				while (j < n && (isdigit((unsigned char)p[j]) || p[j] == '_') && k < sizeof digits - 8)
					if (p[j++] != '_') digits[k++] = p[j - 1];
				if (j + 1 < n && p[j] == '.' && isdigit((unsigned char)p[j + 1])) {
					fl = true;
					digits[k++] = p[j++];
					while (j < n && (isdigit((unsigned char)p[j]) || p[j] == '_') && k < sizeof digits - 8)
						if (p[j++] != '_') digits[k++] = p[j - 1];
				}
				size_t e = j;
				if (e < n && (p[e] == 'e' || p[e] == 'E')) {
					e++;
					if (e < n && (p[e] == '+' || p[e] == '-')) e++;
					if (e < n && isdigit((unsigned char)p[e])) {
						fl = true;
						digits[k++] = 'e';
						if (p[j + 1] == '-' || p[j + 1] == '+') digits[k++] = p[j + 1];
						j = e;
						while (j < n && (isdigit((unsigned char)p[j]) || p[j] == '_') && k < sizeof digits - 1)
							if (p[j++] != '_') digits[k++] = p[j - 1];
					}
				}
			}
			digits[k] = 0;
			*t = (struct tok){ fl ? K_FLOAT : K_INT, p + i, j - i, 0, 0 };
			if (fl) {
				t->num = strtod(digits, NULL);
			} else {
				errno = 0;
				unsigned long long u = strtoull(digits, NULL, base);
				if (errno == ERANGE || u > (unsigned long long)LLONG_MAX) {
					jerr(J, _("chat template: integer literal %.*s beyond 64 bits"), (int)(j - i), p + i);
					return;
				}
				t->inum = (long long)u;
				t->num = (double)u;
			}
			i = j;
		} else if (c == '\'' || c == '"') {
			char *buf = ar_alloc(J, n - i + 1);
			size_t k = 0, j = i + 1;
			while (j < n && p[j] != c) {
				if (p[j] == '\\' && j + 1 < n) {
					/* Python's escapes, as Jinja decodes a literal; an unknown one keeps its backslash */
					j++;
					char e = p[j];
					const char *from = "ntrbfav0\\'\"", *to = "\n\t\r\b\f\a\v";
					const char *at = strchr(from, e);
					if (e && at && at - from < 7) {
						buf[k++] = to[at - from];
					} else if (e == '0') {
						buf[k++] = 0;
					} else if (e && at) {
						buf[k++] = e;
					} else if ((e == 'u' || e == 'x' || e == 'U') && j + (e == 'x' ? 2 : e == 'u' ? 4 : 8) < n) {
						int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
						unsigned long cp = 0;
						bool ok = true;
						for (int d = 1; d <= nd; d++) {
							char h = p[j + d];
							if (!isxdigit((unsigned char)h)) ok = false;
							cp = cp * 16 + (unsigned long)(isdigit((unsigned char)h) ? h - '0' : (tolower((unsigned char)h) - 'a' + 10));
						}
						if (!ok || cp > 0x10ffff) {
							jerr(J, _("chat template: bad \\%c escape in a string"), e);
							return;
						}
						j += (size_t)nd;
						/* UTF-8 */
						if (cp < 0x80) {
							buf[k++] = (char)cp;
						} else if (cp < 0x800) {
							buf[k++] = (char)(0xc0 | (cp >> 6));
							buf[k++] = (char)(0x80 | (cp & 0x3f));
						} else if (cp < 0x10000) {
							buf[k++] = (char)(0xe0 | (cp >> 12));
							buf[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
							buf[k++] = (char)(0x80 | (cp & 0x3f));
						} else {
							buf[k++] = (char)(0xf0 | (cp >> 18));
							buf[k++] = (char)(0x80 | ((cp >> 12) & 0x3f));
							buf[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
							buf[k++] = (char)(0x80 | (cp & 0x3f));
						}
					} else {
						buf[k++] = '\\';
						buf[k++] = e;
					}
				} else {
					buf[k++] = p[j];
				}
				j++;
			}
			if (j >= n) {
				jerr(J, _("chat template: unterminated string"));
				return;
			}
			*t = (struct tok){ K_STR, buf, k, 0, 0 };
			i = j + 1;
		} else {
			static const char *const two[] = { "==", "!=", "<=", ">=", "//", "**" };
			size_t len = 1;
			for (size_t k = 0; k < ARRAY_SIZE(two); k++)
				if (i + 1 < n && p[i] == two[k][0] && p[i + 1] == two[k][1]) len = 2;
			if (!strchr("()[]{}.,:|~+-*/%<>=!", c)) {
				jerr(J, _("chat template: unexpected character '%c'"), c);
				return;
			}
			*t = (struct tok){ K_OP, p + i, len, 0, 0 };
			i += len;
		}
	}
	J->toks[J->ntoks] = (struct tok){ K_END, "", 0, 0, 0 };
}

static struct tok *peek(struct jctx *J) { return &J->toks[J->pos]; }
static bool tok_is(const struct tok *t, enum tokk k, const char *s)
{
	return t->k == k && strlen(s) == t->n && memcmp(t->p, s, t->n) == 0;
}
static bool accept_op(struct jctx *J, const char *s)
{
	if (tok_is(peek(J), K_OP, s)) {
		J->pos++;
		return true;
	}
	return false;
}
static bool accept_name(struct jctx *J, const char *s)
{
	if (tok_is(peek(J), K_NAME, s)) {
		J->pos++;
		return true;
	}
	return false;
}
static void expect_op(struct jctx *J, const char *s)
{
	if (!accept_op(J, s)) jerr(J, _("chat template: expected '%s' near '%.*s'"), s, (int)peek(J)->n, peek(J)->p);
}
static const char *take_name(struct jctx *J)
{
	struct tok *t = peek(J);
	if (t->k != K_NAME) {
		jerr(J, _("chat template: expected a name near '%.*s'"), (int)t->n, t->p);
		return "";
	}
	J->pos++;
	return ar_strndup(J, t->p, t->n);
}

/* ------------------------------------------------------------------ expressions */

static struct expr *parse_expr(struct jctx *J);

/* far more than any conversation needs; a template that loops over range(10**6) thrice stops here. Loop
 * turns, statements and the inner steps of sorting and unique() count. */
#define MAX_STEPS 10000000LL
static bool work(struct jctx *J, long long steps)
{
	J->steps += steps;
	if (J->steps <= MAX_STEPS) return true;
	jerr(J, _("chat template: too much work (more than %lld steps)"), MAX_STEPS);
	return false;
}
static bool tick(struct jctx *J) { return work(J, 1); }

/* Nesting deeper than any real template (a C stack's worth of "((((" or "not not not") is an error. */
#define MAX_NEST 200
static bool too_deep(struct jctx *J)
{
	if (J->pdepth <= MAX_NEST) return false;
	jerr(J, _("chat template: nested more than %d deep"), MAX_NEST);
	return true;
}


static struct expr *mk(struct jctx *J, enum ek k)
{
	struct expr *e = ar_alloc(J, sizeof *e);
	e->k = k;
	return e;
}

static void parse_args(struct jctx *J, struct expr *e, const char *close)
{
	int cap = 8;
	e->args = ar_alloc(J, sizeof *e->args * cap);
	e->kw = ar_alloc(J, sizeof *e->kw * cap);
	while (!J->failed && !accept_op(J, close)) {
		if (e->nargs == cap) {
			jerr(J, _("chat template: too many arguments"));
			return;
		}
		if (peek(J)->k == K_NAME && tok_is(&J->toks[J->pos + 1], K_OP, "=")) {
			e->kw[e->nargs] = take_name(J);
			J->pos++;
		}
		e->args[e->nargs++] = parse_expr(J);
		if (!accept_op(J, ",")) {
			expect_op(J, close);
			return;
		}
	}
}

/* a call of FN, its "(" already taken: "f(a, k=b)" */
static struct expr *parse_call(struct jctx *J, struct expr *fn)
{
	struct expr *c = mk(J, E_CALL);
	c->a = fn;
	parse_args(J, c, ")");
	return c;
}

static struct expr *parse_primary(struct jctx *J)
{
	struct tok *t = peek(J);
	struct expr *e;
	if (t->k == K_STR) {
		J->pos++;
		e = mk(J, E_LIT);
		e->lit.t = J_STR;
		e->lit.u.s.p = t->p;
		e->lit.u.s.n = t->n;
		while (peek(J)->k == K_STR) { /* adjacent literals concatenate */
			struct tok *u = peek(J);
			char *p = ar_alloc(J, e->lit.u.s.n + u->n + 1);
			memcpy(p, e->lit.u.s.p, e->lit.u.s.n);
			memcpy(p + e->lit.u.s.n, u->p, u->n);
			e->lit.u.s.p = p;
			e->lit.u.s.n += u->n;
			J->pos++;
		}
	} else if (t->k == K_INT || t->k == K_FLOAT) {
		J->pos++;
		e = mk(J, E_LIT);
		if (t->k == K_INT) {
			e->lit.t = J_INT;
			e->lit.u.i = t->inum;
		} else {
			e->lit.t = J_FLOAT;
			e->lit.u.f = t->num;
		}
	} else if (t->k == K_NAME) {
		J->pos++;
		e = mk(J, E_LIT);
		if (tok_is(t, K_NAME, "true") || tok_is(t, K_NAME, "True")) {
			e->lit.t = J_BOOL;
			e->lit.u.b = true;
		} else if (tok_is(t, K_NAME, "false") || tok_is(t, K_NAME, "False")) {
			e->lit.t = J_BOOL;
		} else if (tok_is(t, K_NAME, "none") || tok_is(t, K_NAME, "None")) {
			e->lit.t = J_NONE;
		} else {
			e->k = E_NAME;
			e->name = ar_strndup(J, t->p, t->n);
		}
	} else if (accept_op(J, "(")) {
		if (accept_op(J, ")")) { /* the empty tuple */
			e = mk(J, E_LIST);
			e->neg = true;
			return e;
		}
		e = parse_expr(J);
		if (accept_op(J, ",")) { /* a tuple: a list that prints as a tuple */
			struct expr *t = mk(J, E_LIST);
			t->neg = true;
			t->args = ar_alloc(J, sizeof *t->args * 16);
			t->args[t->nargs++] = e;
			while (!J->failed && !tok_is(peek(J), K_OP, ")")) {
				if (t->nargs == 16) {
					jerr(J, _("chat template: tuple too long"));
					break;
				}
				t->args[t->nargs++] = parse_expr(J);
				if (!accept_op(J, ",")) break;
			}
			e = t;
		}
		expect_op(J, ")");
	} else if (accept_op(J, "[")) {
		e = mk(J, E_LIST);
		parse_args(J, e, "]");
	} else if (accept_op(J, "{")) {
		e = mk(J, E_DICT);
		int cap = 32;
		e->args = ar_alloc(J, sizeof *e->args * cap * 2);
		while (!J->failed && !accept_op(J, "}")) {
			if (e->nargs == cap) {
				jerr(J, _("chat template: dictionary literal too long"));
				break;
			}
			e->args[2 * e->nargs] = parse_expr(J);
			expect_op(J, ":");
			e->args[2 * e->nargs + 1] = parse_expr(J);
			e->nargs++;
			if (!accept_op(J, ",")) {
				expect_op(J, "}");
				break;
			}
		}
	} else {
		jerr(J, _("chat template: unexpected '%.*s'"), (int)t->n, t->p);
		e = mk(J, E_LIT);
	}
	return e;
}

static struct expr *parse_postfix(struct jctx *J)
{
	struct expr *e = parse_primary(J);
	while (!J->failed) {
		if (accept_op(J, ".")) {
			struct expr *a = mk(J, E_ATTR);
			a->a = e;
			a->name = take_name(J);
			e = a;
		} else if (accept_op(J, "[")) {
			struct expr *lo = NULL, *hi = NULL, *st = NULL;
			bool slice = false;
			if (!tok_is(peek(J), K_OP, ":")) lo = parse_expr(J);
			if (accept_op(J, ":")) {
				slice = true;
				if (!tok_is(peek(J), K_OP, ":") && !tok_is(peek(J), K_OP, "]")) hi = parse_expr(J);
				if (accept_op(J, ":") && !tok_is(peek(J), K_OP, "]")) st = parse_expr(J);
			}
			expect_op(J, "]");
			struct expr *x = mk(J, slice ? E_SLICE : E_INDEX);
			x->a = e;
			x->b = lo;
			x->c = hi;
			x->d = st;
			e = x;
		} else if (accept_op(J, "(")) {
			e = parse_call(J, e);
		} else {
			break;
		}
	}
	return e;
}

/* Filters and tests after an operand, as Jinja's parse_filter_expr: "x | f(a) | g", "x is not none",
 * "x is divisibleby 3", "x is in [1, 2]", and calls after them. */
static struct expr *parse_filtered(struct jctx *J, struct expr *e)
{
	while (!J->failed) {
		if (accept_op(J, "|")) {
			struct expr *f = mk(J, E_FILTER);
			f->a = e;
			f->name = take_name(J);
			if (accept_op(J, "(")) parse_args(J, f, ")");
			e = f;
		} else if (accept_name(J, "is")) {
			struct expr *t = mk(J, E_TEST);
			t->neg = accept_name(J, "not");
			t->a = e;
			t->name = take_name(J);
			struct tok *n = peek(J);
			if (accept_op(J, "(")) {
				parse_args(J, t, ")");
			} else if (n->k == K_STR || n->k == K_INT || n->k == K_FLOAT || tok_is(n, K_OP, "[") || tok_is(n, K_OP, "{") ||
				   (n->k == K_NAME && !tok_is(n, K_NAME, "else") && !tok_is(n, K_NAME, "or") &&
				    !tok_is(n, K_NAME, "and") && !tok_is(n, K_NAME, "if") && !tok_is(n, K_NAME, "is"))) {
				/* one argument without parentheses */
				t->args = ar_alloc(J, sizeof *t->args);
				t->args[0] = parse_postfix(J);
				t->nargs = 1;
			}
			e = t;
		} else if (tok_is(peek(J), K_OP, "(") && e->k == E_FILTER) {
			J->pos++;
			e = parse_call(J, e);
		} else {
			break;
		}
	}
	return e;
}

/* Jinja's parse_unary: a sign applies to the operand before its filters, "-3 | abs" is abs(-3) */
static struct expr *parse_unary_f(struct jctx *J, bool with_filter)
{
	struct expr *e;
	if (accept_op(J, "-") || accept_op(J, "+")) {
		e = mk(J, E_UNARY);
		e->name = J->toks[J->pos - 1].p[0] == '-' ? "-" : "+";
		J->pdepth++;
		e->a = too_deep(J) ? mk(J, E_LIT) : parse_unary_f(J, false);
		J->pdepth--;
	} else {
		e = parse_postfix(J);
	}
	return with_filter ? parse_filtered(J, e) : e;
}

static struct expr *parse_unary(struct jctx *J)
{
	struct expr *e = parse_unary_f(J, true);
	while (!J->failed && accept_op(J, "**")) {
		struct expr *p = mk(J, E_BIN);
		p->name = "**";
		p->a = e;
		p->b = parse_unary_f(J, true);
		e = p;
	}
	return e;
}

static struct expr *bin(struct jctx *J, const char *op, struct expr *a, struct expr *b)
{
	struct expr *e = mk(J, E_BIN);
	e->name = op;
	e->a = a;
	e->b = b;
	return e;
}

static struct expr *parse_mul(struct jctx *J)
{
	struct expr *e = parse_unary(J);
	for (;;) {
		if (accept_op(J, "*")) e = bin(J, "*", e, parse_unary(J));
		else if (accept_op(J, "//")) e = bin(J, "//", e, parse_unary(J));
		else if (accept_op(J, "/")) e = bin(J, "/", e, parse_unary(J));
		else if (accept_op(J, "%")) e = bin(J, "%", e, parse_unary(J));
		else return e;
	}
}

/* Jinja's order: '~' binds tighter than '+' and '-' ("1 + 2 ~ 'a'" is 1 + (2 ~ 'a')), looser than '*' */
static struct expr *parse_concat(struct jctx *J)
{
	struct expr *e = parse_mul(J);
	while (!J->failed && accept_op(J, "~")) e = bin(J, "~", e, parse_mul(J));
	return e;
}

static struct expr *parse_add(struct jctx *J)
{
	struct expr *e = parse_concat(J);
	for (;;) {
		if (accept_op(J, "+")) e = bin(J, "+", e, parse_concat(J));
		else if (accept_op(J, "-")) e = bin(J, "-", e, parse_concat(J));
		else return e;
	}
}

static struct expr *parse_cmp(struct jctx *J)
{
	struct expr *e = parse_add(J);
	for (;;) {
		static const char *const ops[] = { "==", "!=", "<=", ">=", "<", ">" };
		bool done = true;
		for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
			if (accept_op(J, ops[i])) {
				e = bin(J, ops[i], e, parse_add(J));
				done = false;
				break;
			}
		if (!done) continue;
		if (accept_name(J, "in")) {
			e = bin(J, "in", e, parse_add(J));
		} else if (tok_is(peek(J), K_NAME, "not") && tok_is(&J->toks[J->pos + 1], K_NAME, "in")) {
			J->pos += 2;
			e = bin(J, "notin", e, parse_add(J));
		} else {
			return e;
		}
	}
}

static struct expr *parse_not(struct jctx *J)
{
	if (accept_name(J, "not")) {
		struct expr *u = mk(J, E_UNARY);
		u->name = "not";
		J->pdepth++;
		u->a = too_deep(J) ? mk(J, E_LIT) : parse_not(J);
		J->pdepth--;
		return u;
	}
	return parse_cmp(J);
}

static struct expr *parse_and(struct jctx *J)
{
	struct expr *e = parse_not(J);
	while (accept_name(J, "and")) e = bin(J, "and", e, parse_not(J));
	return e;
}

static struct expr *parse_or(struct jctx *J)
{
	struct expr *e = parse_and(J);
	while (accept_name(J, "or")) e = bin(J, "or", e, parse_and(J));
	return e;
}

static struct expr *parse_expr(struct jctx *J)
{
	J->pdepth++;
	if (too_deep(J)) {
		J->pdepth--;
		return mk(J, E_LIT);
	}
	struct expr *e = parse_or(J);
	if (accept_name(J, "if")) {
		struct expr *c = mk(J, E_COND);
		c->a = e;
		c->b = parse_or(J);
		c->c = accept_name(J, "else") ? parse_expr(J) : NULL;
		e = c;
	}
	J->pdepth--;
	return e;
}

/* ------------------------------------------------------------------ statements */

/* Parse statements until a tag whose first word is one of `ends` (left unconsumed, name in *which). */
static struct stmt **parse_block(struct jctx *J, const char *const *ends, int *count, const char **which);

/* The body of a block tag ({% with %}, {% set x %}, {% macro %}, {% filter %}) up to its {% end<tag> %}: the tag ends
 * where its arguments do, a missing end tag is an error, and parsing goes on after the end tag. */
static struct stmt **parse_body(struct jctx *J, const char *tag, int *count)
{
	if (peek(J)->k != K_END) jerr(J, _("chat template: unexpected '%.*s'"), (int)peek(J)->n, peek(J)->p);
	char end[16];
	snprintf(end, sizeof end, "end%s", tag);
	const char *const ends[] = { end, NULL };
	const char *which;
	struct stmt **body = parse_block(J, ends, count, &which);
	if (!which) jerr(J, _("chat template: {%% %s %%} without {%% %s %%}"), tag, end);
	J->ti++;
	J->pos = J->ntoks;
	return body;
}

static struct stmt **parse_block(struct jctx *J, const char *const *ends, int *count, const char **which)
{
	int cap = 16, n = 0;
	struct stmt **list = ar_alloc(J, sizeof *list * cap);
	*which = NULL;
	if (too_deep(J)) {
		*count = 0;
		return list;
	}
	J->pdepth++;
	while (J->ti < J->ntags && !J->failed) {
		struct tag *t = &J->tags[J->ti];
		struct stmt *s = NULL;
		if (t->k == T_TEXT) {
			s = ar_alloc(J, sizeof *s);
			s->k = S_TEXT;
			s->text = t->p;
			s->len = t->n;
			J->ti++;
		} else if (t->k == T_EXPR) {
			lex(J, t->p, t->n);
			s = ar_alloc(J, sizeof *s);
			s->k = S_OUT;
			s->e = parse_expr(J);
			if (peek(J)->k != K_END) jerr(J, _("chat template: unexpected '%.*s' in {{ }}"), (int)peek(J)->n, peek(J)->p);
			J->ti++;
		} else {
			lex(J, t->p, t->n);
			struct tok *w = peek(J);
			for (int i = 0; ends && ends[i]; i++)
				if (tok_is(w, K_NAME, ends[i])) {
					*which = ends[i];
					*count = n;
					J->pdepth--;
					return list;
				}
			J->ti++;
			J->pos++;
			s = ar_alloc(J, sizeof *s);
			if (tok_is(w, K_NAME, "if")) {
				s->k = S_IF;
				int bcap = 16;
				s->conds = ar_alloc(J, sizeof *s->conds * bcap);
				s->bodies = ar_alloc(J, sizeof *s->bodies * bcap);
				s->nbody = ar_alloc(J, sizeof *s->nbody * bcap);
				struct expr *cond = parse_expr(J);
				for (;;) {
					static const char *const e_if[] = { "elif", "else", "endif", NULL };
					const char *which2;
					if (peek(J)->k != K_END) /* the tag's tokens are gone once the body is parsed */
						jerr(J, _("chat template: unexpected '%.*s'"), (int)peek(J)->n, peek(J)->p);
					if (s->nbranch == bcap) {
						jerr(J, _("chat template: too many elif"));
						break;
					}
					s->conds[s->nbranch] = cond;
					s->bodies[s->nbranch] = parse_block(J, e_if, &s->nbody[s->nbranch], &which2);
					s->nbranch++;
					if (!which2) {
						jerr(J, _("chat template: {%% if %%} without {%% endif %%}"));
						break;
					}
					J->ti++;
					J->pos++; /* the tag was lexed by parse_block */
					if (strcmp(which2, "endif") == 0) break;
					cond = strcmp(which2, "elif") == 0 ? parse_expr(J) : NULL;
					if (!cond && strcmp(which2, "else") != 0) break;
				}
			} else if (tok_is(w, K_NAME, "for")) {
				s->k = S_FOR;
				s->var = take_name(J);
				if (accept_op(J, ",")) s->var2 = take_name(J);
				if (!accept_name(J, "in")) jerr(J, _("chat template: expected 'in' in {%% for %%}"));
				s->e = parse_or(J);
				if (accept_name(J, "if")) s->filter = parse_or(J);
				accept_name(J, "recursive"); /* harmless without loop(...) calls, which fail as calls of a non-function */
				if (peek(J)->k != K_END) jerr(J, _("chat template: unexpected '%.*s'"), (int)peek(J)->n, peek(J)->p);
				static const char *const e_for[] = { "else", "endfor", NULL };
				const char *which2;
				J->ploops++;
				s->body = parse_block(J, e_for, &s->nb, &which2);
				J->ploops--;
				if (which2 && strcmp(which2, "else") == 0) {
					J->ti++;
					static const char *const e_end[] = { "endfor", NULL };
					s->else_body = parse_block(J, e_end, &s->ne, &which2);
				}
				if (!which2) jerr(J, _("chat template: {%% for %%} without {%% endfor %%}"));
				J->ti++;
			} else if (tok_is(w, K_NAME, "with")) {
				/* {% with a = 1, b = x %}...{% endwith %}: a scope of its own */
				s->k = S_WITH;
				int wcap = 16;
				s->params = ar_alloc(J, sizeof *s->params * wcap);
				s->defaults = ar_alloc(J, sizeof *s->defaults * wcap);
				while (!J->failed && peek(J)->k != K_END) {
					if (s->nparams == wcap) {
						jerr(J, _("chat template: too many names in {%% with %%}"));
						break;
					}
					s->params[s->nparams] = take_name(J);
					expect_op(J, "=");
					s->defaults[s->nparams++] = parse_expr(J);
					if (!accept_op(J, ",")) break;
				}
				s->body = parse_body(J, "with", &s->nb);
			} else if (tok_is(w, K_NAME, "set") && J->toks[J->pos].k == K_NAME && tok_is(&J->toks[J->pos + 1], K_OP, ",")) {
				/* {% set a, b = x %}: x's items to the names */
				s->k = S_SET;
				int tcap = 16;
				s->params = ar_alloc(J, sizeof *s->params * tcap);
				do {
					if (s->nparams == tcap) {
						jerr(J, _("chat template: too many names in {%% set %%}"));
						break;
					}
					s->params[s->nparams++] = take_name(J);
				} while (!J->failed && accept_op(J, ","));
				expect_op(J, "=");
				s->e = parse_expr(J);
				if (accept_op(J, ",")) { /* "= 1, 2": a tuple */
					struct expr *t = mk(J, E_LIST);
					t->args = ar_alloc(J, sizeof *t->args * 16);
					t->args[t->nargs++] = s->e;
					do {
						if (t->nargs == 16) {
							jerr(J, _("chat template: tuple too long"));
							break;
						}
						t->args[t->nargs++] = parse_expr(J);
					} while (!J->failed && accept_op(J, ","));
					s->e = t;
				}
			} else if (tok_is(w, K_NAME, "set")) {
				s->k = S_SET;
				s->var = take_name(J);
				if (accept_op(J, ".")) s->var2 = take_name(J);
				if (peek(J)->k == K_END && !s->var2) { /* {% set x %}...{% endset %}: x is the body's text */
					s->body = parse_body(J, "set", &s->nb);
				} else {
					expect_op(J, "=");
					s->e = parse_expr(J);
				}
			} else if (tok_is(w, K_NAME, "macro")) {
				/* {% macro name(a, b=default) %}...{% endmacro %} */
				s->k = S_MACRO;
				s->var = take_name(J);
				expect_op(J, "(");
				int pcap = 16;
				s->params = ar_alloc(J, sizeof *s->params * pcap);
				s->defaults = ar_alloc(J, sizeof *s->defaults * pcap);
				while (!J->failed && !accept_op(J, ")")) {
					if (s->nparams == pcap) {
						jerr(J, _("chat template: too many macro parameters"));
						break;
					}
					s->params[s->nparams] = take_name(J);
					if (accept_op(J, "=")) s->defaults[s->nparams] = parse_expr(J);
					s->nparams++;
					if (!accept_op(J, ",")) {
						expect_op(J, ")");
						break;
					}
				}
				int loops = J->ploops; /* {% break %} in a macro does not reach a loop around it */
				J->ploops = 0;
				s->body = parse_body(J, "macro", &s->nb);
				J->ploops = loops;
			} else if (tok_is(w, K_NAME, "filter")) {
				/* {% filter name(args) %}...{% endfilter %}: the body's text through the filter */
				s->k = S_FILTER;
				struct expr *f = mk(J, E_FILTER);
				f->name = take_name(J);
				if (accept_op(J, "(")) parse_args(J, f, ")");
				s->e = f;
				s->body = parse_body(J, "filter", &s->nb);
			} else if (tok_is(w, K_NAME, "break") || tok_is(w, K_NAME, "continue")) {
				/* transformers enables jinja2.ext.loopcontrols */
				s->k = w->p[0] == 'b' ? S_BREAK : S_CONTINUE;
				if (!J->ploops) jerr(J, _("chat template: {%% %.*s %%} outside a loop"), (int)w->n, w->p);
			} else if (tok_is(w, K_NAME, "generation") || tok_is(w, K_NAME, "endgeneration")) {
				continue; /* transformers' assistant-mask markers: no output */
			} else {
				jerr(J, _("chat template: unsupported tag '{%% %.*s %%}'"), (int)w->n, w->p);
				break;
			}
			if (s->k != S_IF && s->k != S_FOR && !(s->k == S_SET && s->body) && s->k != S_MACRO &&
			    s->k != S_FILTER && s->k != S_WITH && peek(J)->k != K_END)
				jerr(J, _("chat template: unexpected '%.*s'"), (int)peek(J)->n, peek(J)->p);
		}
		if (n == cap) {
			struct stmt **l2 = ar_alloc(J, sizeof *l2 * cap * 2);
			memcpy(l2, list, sizeof *l2 * cap);
			list = l2;
			cap *= 2;
		}
		list[n++] = s;
	}
	*count = n;
	J->pdepth--;
	return list;
}

/* ------------------------------------------------------------------ evaluation */

static struct jval v_undef(void) { return (struct jval){ .t = J_UNDEF }; }
static struct jval v_none(void) { return (struct jval){ .t = J_NONE }; }
static struct jval v_bool(bool b) { return (struct jval){ .t = J_BOOL, .u.b = b }; }
static struct jval v_int(long long i) { return (struct jval){ .t = J_INT, .u.i = i }; }
static struct jval v_str(const char *p, size_t n) { return (struct jval){ .t = J_STR, .u.s = { p, n } }; }
static struct jval v_cstr(const char *p) { return v_str(p, strlen(p)); }

static struct jlist *list_new(struct jctx *J, int cap)
{
	struct jlist *l = ar_alloc(J, sizeof *l);
	l->cap = cap > 4 ? cap : 4;
	l->v = ar_alloc(J, sizeof *l->v * l->cap);
	return l;
}
static void list_push(struct jctx *J, struct jlist *l, struct jval v)
{
	if (l->n == l->cap) {
		struct jval *nv = ar_alloc(J, sizeof *nv * l->cap * 2);
		memcpy(nv, l->v, sizeof *nv * l->n);
		l->v = nv;
		l->cap *= 2;
	}
	l->v[l->n++] = v;
}
static struct jdict *dict_new(struct jctx *J)
{
	struct jdict *d = ar_alloc(J, sizeof *d);
	d->cap = 8;
	d->k = ar_alloc(J, sizeof *d->k * d->cap);
	d->v = ar_alloc(J, sizeof *d->v * d->cap);
	return d;
}
static struct jval *dict_get(struct jdict *d, const char *k, size_t kn)
{
	for (int i = 0; i < d->n; i++)
		if (strlen(d->k[i]) == kn && memcmp(d->k[i], k, kn) == 0) return &d->v[i];
	return NULL;
}
static void dict_set(struct jctx *J, struct jdict *d, const char *k, struct jval v)
{
	struct jval *p = dict_get(d, k, strlen(k));
	if (p) {
		*p = v;
		return;
	}
	if (d->n == d->cap) {
		const char **nk = ar_alloc(J, sizeof *nk * d->cap * 2);
		struct jval *nv = ar_alloc(J, sizeof *nv * d->cap * 2);
		memcpy(nk, d->k, sizeof *nk * d->n);
		memcpy(nv, d->v, sizeof *nv * d->n);
		d->k = nk;
		d->v = nv;
		d->cap *= 2;
	}
	d->k[d->n] = k;
	d->v[d->n++] = v;
}

static bool truthy(struct jval v)
{
	switch (v.t) {
	case J_UNDEF: case J_NONE: return false;
	case J_BOOL: return v.u.b;
	case J_INT: return v.u.i != 0;
	case J_FLOAT: return v.u.f != 0;
	case J_STR: return v.u.s.n > 0;
	case J_LIST: return v.u.l->n > 0;
	case J_DICT: return v.u.d->n > 0;
	case J_FUNC: case J_MACRO: return true;
	}
	return false;
}

static struct jval lookup(struct jctx *J, const char *name)
{
	for (struct scope *s = J->sc; s; s = s->up)
		for (int i = s->n - 1; i >= 0; i--)
			if (strcmp(s->k[i], name) == 0) return s->v[i];
	/* the globals of Jinja and those transformers adds, so that "strftime_now is defined" holds as there */
	static const char *const funcs[] = { "range", "namespace", "dict", "raise_exception", "strftime_now" };
	for (size_t i = 0; i < ARRAY_SIZE(funcs); i++)
		if (!strcmp(name, funcs[i])) return (struct jval){ .t = J_FUNC, .u.s = { funcs[i], strlen(funcs[i]) } };
	return v_undef();
}

static void scope_set(struct jctx *J, const char *name, struct jval v)
{
	struct scope *s = J->sc;
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->k[i], name) == 0) {
			s->v[i] = v;
			return;
		}
	if (s->n == s->cap) {
		int cap = s->cap ? s->cap * 2 : 16;
		const char **nk = ar_alloc(J, sizeof *nk * cap);
		struct jval *nv = ar_alloc(J, sizeof *nv * cap);
		if (s->n) {
			memcpy(nk, s->k, sizeof *nk * s->n);
			memcpy(nv, s->v, sizeof *nv * s->n);
		}
		s->k = nk;
		s->v = nv;
		s->cap = cap;
	}
	s->k[s->n] = name;
	s->v[s->n++] = v;
}

/* text of a value as {{ }} prints it */
struct sbuf { char *p; size_t n, cap; struct jctx *J; };
static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->n + n > (256u << 20)) { /* no text of a template gets near this; stop before memory does */
		jerr(b->J, "%s", _("chat template: a string of more than 256 MiB"));
		return;
	}
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		while (cap < b->n + n + 1) cap *= 2;
		char *p = ar_alloc(b->J, cap);
		if (b->n) memcpy(p, b->p, b->n);
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}
static void sb_str(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void u8_put(struct sbuf *b, unsigned long cp)
{
	char u[4];
	size_t k;
	if (cp < 0x80) {
		u[0] = (char)cp;
		k = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		k = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		k = 3;
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		k = 4;
	}
	sb_put(b, u, k);
}

/* A float as Python's repr writes it (str() is the same): the shortest digits that read back to the same
 * double, positional between 1e-4 and 1e16, else with an exponent; "1.0", not "1". */
static void py_float(struct sbuf *b, double f)
{
	char num[64];
	if (f != f) {
		sb_str(b, "nan");
		return;
	}
	if (f > 1.7976931348623157e308 || f < -1.7976931348623157e308) {
		sb_str(b, f > 0 ? "inf" : "-inf");
		return;
	}
	int prec = 1;
	for (; prec < 17; prec++) {
		snprintf(num, sizeof num, "%.*e", prec - 1, f);
		if (strtod(num, NULL) == f) break;
	}
	snprintf(num, sizeof num, "%.*e", prec - 1, f);
	int exp = atoi(strchr(num, 'e') + 1);
	if (f != 0 && (exp < -4 || exp >= 16)) {
		/* mantissa without trailing zeros, exponent with a sign and at least two digits: 1e+16, 1.5e-05 */
		char *e = strchr(num, 'e');
		*e = 0;
		sb_str(b, num);
		snprintf(num, sizeof num, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
		sb_str(b, num);
		return;
	}
	int dec = prec - 1 - exp;
	snprintf(num, sizeof num, "%.*f", dec > 0 ? dec : 0, f);
	sb_str(b, num);
	if (!strchr(num, '.')) sb_str(b, ".0");
}

/* Python's repr of a string: single quotes unless it holds ' and no " */
static void py_repr_str(struct sbuf *b, const char *s, size_t n)
{
	char q = memchr(s, '\'', n) && !memchr(s, '"', n) ? '"' : '\'';
	sb_put(b, &q, 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char e[8];
		if (c == (unsigned char)q || c == '\\') { e[0] = '\\'; e[1] = (char)c; sb_put(b, e, 2); }
		else if (c == '\n') sb_str(b, "\\n");
		else if (c == '\t') sb_str(b, "\\t");
		else if (c == '\r') sb_str(b, "\\r");
		else if (c < 0x20 || c == 0x7f) { snprintf(e, sizeof e, "\\x%02x", c); sb_str(b, e); }
		else sb_put(b, (const char *)&c, 1);
	}
	sb_put(b, &q, 1);
}

/* Nested lists and dicts print recursively: a list that holds itself (l.append(l)) or a very deep value must end
 * in an error, not in a stack overflow. */
static bool value_too_deep(struct sbuf *b, int level)
{
	if (level <= MAX_NEST) return false;
	if (b->J) jerr(b->J, _("chat template: a value nested more than %d levels deep (a list that holds itself?)"), MAX_NEST);
	return true;
}

/* text of a value as {{ }} prints it: Python's str(), so lists and dicts as their repr */
static void to_text_lv(struct sbuf *b, struct jval v, bool repr, int level)
{
	char num[64];
	if ((v.t == J_LIST || v.t == J_DICT) && value_too_deep(b, level)) return;
	switch (v.t) {
	case J_UNDEF: break;
	case J_NONE: sb_str(b, "None"); break;
	case J_BOOL: sb_str(b, v.u.b ? "True" : "False"); break;
	case J_INT: snprintf(num, sizeof num, "%lld", v.u.i); sb_str(b, num); break;
	case J_FLOAT: py_float(b, v.u.f); break;
	case J_STR:
		if (repr) py_repr_str(b, v.u.s.p, v.u.s.n);
		else sb_put(b, v.u.s.p, v.u.s.n);
		break;
	case J_LIST:
		sb_str(b, v.u.l->tuple ? "(" : "[");
		for (int i = 0; i < v.u.l->n; i++) {
			if (i) sb_str(b, ", ");
			to_text_lv(b, v.u.l->v[i], true, level + 1);
		}
		sb_str(b, v.u.l->tuple ? v.u.l->n == 1 ? ",)" : ")" : "]");
		break;
	case J_DICT:
		if (v.u.d->ns) {
			sb_str(b, "<Namespace>");
			break;
		}
		sb_str(b, "{");
		for (int i = 0; i < v.u.d->n; i++) {
			if (i) sb_str(b, ", ");
			py_repr_str(b, v.u.d->k[i], strlen(v.u.d->k[i]));
			sb_str(b, ": ");
			to_text_lv(b, v.u.d->v[i], true, level + 1);
		}
		sb_str(b, "}");
		break;
	case J_FUNC: case J_MACRO: sb_str(b, "<function>"); break;
	}
}
static void to_text_r(struct sbuf *b, struct jval v, bool repr) { to_text_lv(b, v, repr, 0); }
static void to_text(struct sbuf *b, struct jval v) { to_text_r(b, v, false); }

/* a string as Python's json.dumps(ensure_ascii=False) writes it */
static void json_str(struct sbuf *b, const char *s, size_t n)
{
	sb_str(b, "\"");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char e[8];
		if (c == '"' || c == '\\') { e[0] = '\\'; e[1] = (char)c; sb_put(b, e, 2); }
		else if (c == '\n') sb_str(b, "\\n");
		else if (c == '\t') sb_str(b, "\\t");
		else if (c == '\r') sb_str(b, "\\r");
		else if (c == '\b') sb_str(b, "\\b");
		else if (c == '\f') sb_str(b, "\\f");
		else if (c < 0x20) { snprintf(e, sizeof e, "\\u%04x", c); sb_str(b, e); }
		else sb_put(b, (const char *)&c, 1);
	}
	sb_str(b, "\"");
}

/* Python's json.dumps: indent < 0 for none (items ", ", keys ": " unless separators say otherwise), else a newline
 * and indent spaces per level, items ending in "," */
struct jsonfmt { int indent; const char *item_sep, *key_sep; };
static void to_json_r(struct sbuf *b, struct jval v, const struct jsonfmt *f, int level)
{
	char num[64];
	switch (v.t) {
	case J_UNDEF: case J_NONE: sb_str(b, "null"); break;
	case J_BOOL: sb_str(b, v.u.b ? "true" : "false"); break;
	case J_INT: snprintf(num, sizeof num, "%lld", v.u.i); sb_str(b, num); break;
	case J_FLOAT:
		if (v.u.f != v.u.f) sb_str(b, "NaN");
		else if (v.u.f > 1.7976931348623157e308) sb_str(b, "Infinity");
		else if (v.u.f < -1.7976931348623157e308) sb_str(b, "-Infinity");
		else py_float(b, v.u.f);
		break;
	case J_STR: json_str(b, v.u.s.p, v.u.s.n); break;
	case J_LIST: case J_DICT: {
		if (value_too_deep(b, level)) break;
		bool list = v.t == J_LIST;
		int n = list ? v.u.l->n : v.u.d->n;
		sb_str(b, list ? "[" : "{");
		if (n == 0) {
			sb_str(b, list ? "]" : "}");
			break;
		}
		for (int i = 0; i < n; i++) {
			if (i) sb_str(b, f->item_sep);
			if (f->indent >= 0) {
				sb_str(b, "\n");
				/* until the string limit: a huge indent is a failed render, not billions of rounds */
				for (long long k = 0; k < (long long)(level + 1) * f->indent && !b->J->failed; k++) sb_str(b, " ");
			}
			if (list) {
				to_json_r(b, v.u.l->v[i], f, level + 1);
			} else {
				json_str(b, v.u.d->k[i], strlen(v.u.d->k[i]));
				sb_str(b, f->key_sep);
				to_json_r(b, v.u.d->v[i], f, level + 1);
			}
		}
		if (f->indent >= 0) {
			sb_str(b, "\n");
			for (long long k = 0; k < (long long)level * f->indent && !b->J->failed; k++) sb_str(b, " ");
		}
		sb_str(b, list ? "]" : "}");
		break;
	}
	case J_FUNC: case J_MACRO: sb_str(b, "null"); break;
	}
}

static struct jval as_str(struct jctx *J, struct jval v)
{
	if (v.t == J_STR) return v;
	struct sbuf b = { .J = J };
	to_text(&b, v);
	return v_str(b.p ? b.p : "", b.n);
}

/* Python compares nested lists element by element; past MAX_NEST levels (or for a list that holds itself) only
 * the same list is equal, so that the recursion is bounded */
static bool equal_lv(struct jval a, struct jval b, int level)
{
	if ((a.t == J_INT || a.t == J_FLOAT || a.t == J_BOOL) && (b.t == J_INT || b.t == J_FLOAT || b.t == J_BOOL)) {
		double x = a.t == J_INT ? a.u.i : a.t == J_FLOAT ? a.u.f : a.u.b;
		double y = b.t == J_INT ? b.u.i : b.t == J_FLOAT ? b.u.f : b.u.b;
		return x == y;
	}
	if (a.t != b.t) return (a.t == J_UNDEF || a.t == J_NONE) && (b.t == J_UNDEF || b.t == J_NONE) && a.t == b.t;
	if (a.t == J_STR) return a.u.s.n == b.u.s.n && memcmp(a.u.s.p, b.u.s.p, a.u.s.n) == 0;
	if (a.t == J_NONE || a.t == J_UNDEF) return true;
	if (a.t == J_LIST) {
		if (a.u.l->n != b.u.l->n) return false;
		if (level >= MAX_NEST) return a.u.l == b.u.l;
		for (int i = 0; i < a.u.l->n; i++)
			if (!equal_lv(a.u.l->v[i], b.u.l->v[i], level + 1)) return false;
		return true;
	}
	return a.u.d == b.u.d;
}
static bool equal(struct jval a, struct jval b) { return equal_lv(a, b, 0); }

static struct jval eval(struct jctx *J, struct expr *e);

static double num(struct jval v) { return v.t == J_INT ? (double)v.u.i : v.t == J_FLOAT ? v.u.f : v.t == J_BOOL ? v.u.b : 0; }

/* a value as an integer: integers as they are, floats truncated and clamped (casting an out-of-range double is
 * undefined in C), NaN as 0 */
static long long inum(struct jval v)
{
	if (v.t == J_INT) return v.u.i;
	double d = num(v);
	if (d != d) return 0;
	if (d >= 9.2233720368547758e18) return LLONG_MAX;
	if (d <= -9.2233720368547758e18) return LLONG_MIN;
	return (long long)d;
}

/* Python's type name of a value, for error messages */
static const char *py_type(struct jval v)
{
	switch (v.t) {
	case J_UNDEF: return "Undefined";
	case J_NONE: return "NoneType";
	case J_BOOL: return "bool";
	case J_INT: return "int";
	case J_FLOAT: return "float";
	case J_STR: return "str";
	case J_LIST: return "list";
	case J_DICT: return "dict";
	case J_FUNC: case J_MACRO: return "function";
	}
	return "?";
}

/* ------------------------------------------------------------------ strings as Python sees them */

/* Python's strings are sequences of code points; ours are UTF-8. Lengths, indexes and slices count code points
 * (a byte that does not start one is a continuation byte). */
static size_t u8_len(const char *p, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) k += ((unsigned char)p[i] & 0xc0) != 0x80;
	return k;
}

/* byte offsets of the code points of p, with n at the end: (*off)[0..len] */
static size_t u8_offsets(struct jctx *J, const char *p, size_t n, size_t **off)
{
	size_t len = u8_len(p, n), k = 0;
	*off = ar_alloc(J, sizeof **off * (len + 1));
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)p[i] & 0xc0) != 0x80) (*off)[k++] = i;
	(*off)[len] = n;
	return len;
}

static unsigned long u8_decode(const char *p, size_t n, size_t *used)
{
	unsigned char c = (unsigned char)p[0];
	int k = c < 0x80 ? 0 : c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
	if ((size_t)k >= n) k = 0;
	unsigned long cp = k == 0 ? c : c & (0x3f >> k);
	for (int i = 1; i <= k; i++) {
		if (((unsigned char)p[i] & 0xc0) != 0x80) { /* not UTF-8: the byte as it is */
			*used = 1;
			return c;
		}
		cp = cp << 6 | ((unsigned char)p[i] & 0x3f);
	}
	*used = (size_t)k + 1;
	return cp;
}

static void u8_put(struct sbuf *b, unsigned long cp);

/* Simple case mappings of the scripts chat text mostly has cases in: ASCII, Latin-1, Latin Extended-A, Greek,
 * Cyrillic, fullwidth Latin. Other code points have no case here. */
static unsigned long cp_upper(unsigned long c)
{
	if (c >= 'a' && c <= 'z') return c - 32;
	if (c < 0x80) return c;
	if ((c >= 0xe0 && c <= 0xfe && c != 0xf7)) return c - 32;
	if (c == 0xff) return 0x178;
	if ((c >= 0x100 && c <= 0x137) || (c >= 0x14a && c <= 0x177)) return c & 1 ? c - 1 : c;
	if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e)) return c & 1 ? c : c - 1;
	if (c == 0x3c2) return 0x3a3;
	if ((c >= 0x3b1 && c <= 0x3c1) || (c >= 0x3c3 && c <= 0x3cb)) return c - 32;
	if (c == 0x3ac) return 0x386;
	if (c >= 0x3ad && c <= 0x3af) return c - 37;
	if (c == 0x3cc) return 0x38c;
	if (c == 0x3cd || c == 0x3ce) return c - 63;
	if (c >= 0x430 && c <= 0x44f) return c - 32;
	if (c >= 0x450 && c <= 0x45f) return c - 80;
	if (c >= 0xff41 && c <= 0xff5a) return c - 32;
	return c;
}
static unsigned long cp_lower(unsigned long c)
{
	if (c >= 'A' && c <= 'Z') return c + 32;
	if (c < 0x80) return c;
	if ((c >= 0xc0 && c <= 0xde && c != 0xd7)) return c + 32;
	if (c == 0x178) return 0xff;
	if ((c >= 0x100 && c <= 0x137) || (c >= 0x14a && c <= 0x177)) return c & 1 ? c : c + 1;
	if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e)) return c & 1 ? c + 1 : c;
	if ((c >= 0x391 && c <= 0x3a1) || (c >= 0x3a3 && c <= 0x3ab)) return c + 32;
	if (c == 0x386) return 0x3ac;
	if (c >= 0x388 && c <= 0x38a) return c + 37;
	if (c == 0x38c) return 0x3cc;
	if (c == 0x38e || c == 0x38f) return c + 63;
	if (c >= 0x410 && c <= 0x42f) return c + 32;
	if (c >= 0x400 && c <= 0x40f) return c + 80;
	if (c >= 0xff21 && c <= 0xff3a) return c + 32;
	return c;
}
static bool cp_cased(unsigned long c) { return cp_upper(c) != c || cp_lower(c) != c || c == 0xdf; }

/* mode 'u' upper, 'l' lower, 't' str.title() (upper after an uncased character), 'c' capitalize(),
 * 'j' Jinja's title filter (upper after a run of '-', whitespace, '(', '{', '[', '<') */
static struct jval u8_case(struct jctx *J, const char *p, size_t n, char mode)
{
	struct sbuf b = { .J = J };
	bool prev_cased = false, start = true;
	for (size_t i = 0; i < n;) {
		size_t k;
		unsigned long c = u8_decode(p + i, n - i, &k);
		bool up;
		switch (mode) {
		case 'u': up = true; break;
		case 'l': up = false; break;
		case 't': up = !prev_cased; break;
		case 'c': up = i == 0; break;
		default: up = start; break;
		}
		unsigned long m = up ? cp_upper(c) : cp_lower(c);
		if (m == c) sb_put(&b, p + i, k); /* unchanged bytes as they were, valid UTF-8 or not */
		else u8_put(&b, m);
		prev_cased = cp_cased(c);
		start = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || (c < 0x80 && (is_ws((char)c) || c == '\v' || c == '\f'));
		i += k;
	}
	return v_str(b.p ? b.p : "", b.n);
}

static struct jval strip_chars(struct jval s, struct jval chars, bool left, bool right)
{
	const char *set = " \t\n\r\v\f";
	size_t setn = 6;
	if (chars.t == J_STR) {
		set = chars.u.s.p;
		setn = chars.u.s.n;
	}
	const char *p = s.u.s.p;
	size_t n = s.u.s.n;
	while (left && n && memchr(set, *p, setn)) p++, n--;
	while (right && n && memchr(set, p[n - 1], setn)) n--;
	return v_str(p, n);
}

static struct jval call_method(struct jctx *J, struct jval obj, const char *m, struct jval *a, int na)
{
	if (obj.t == J_STR) {
		if (!work(J, (long long)(obj.u.s.n >> 8))) return v_undef(); /* every method scans: a step per 256 bytes */
		const char *p = obj.u.s.p;
		size_t n = obj.u.s.n;
		if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
			/* a tuple of prefixes is any of them */
			int nx = na && a[0].t == J_LIST ? a[0].u.l->n : 1;
			for (int k = 0; k < nx; k++) {
				struct jval x = na ? as_str(J, a[0].t == J_LIST ? a[0].u.l->v[k] : a[0]) : v_cstr("");
				if (x.u.s.n > n) continue;
				const char *at = !strcmp(m, "startswith") ? p : p + n - x.u.s.n;
				if (memcmp(at, x.u.s.p, x.u.s.n) == 0) return v_bool(true);
			}
			return v_bool(false);
		}
		if (!strcmp(m, "strip")) return strip_chars(obj, na ? a[0] : v_none(), true, true);
		if (!strcmp(m, "lstrip")) return strip_chars(obj, na ? a[0] : v_none(), true, false);
		if (!strcmp(m, "rstrip")) return strip_chars(obj, na ? a[0] : v_none(), false, true);
		if (!strcmp(m, "upper") || !strcmp(m, "lower") || !strcmp(m, "title") || !strcmp(m, "capitalize"))
			return u8_case(J, p, n, m[0]);
		if (!strcmp(m, "find") || !strcmp(m, "count") || !strcmp(m, "index") || !strcmp(m, "rfind")) {
			struct jval x = na ? as_str(J, a[0]) : v_cstr("");
			long long found = -1, cnt = 0;
			for (size_t i = 0; i + x.u.s.n <= n; i++)
				if (memcmp(p + i, x.u.s.p, x.u.s.n) == 0) {
					if (found < 0 || m[0] == 'r') found = (long long)i;
					cnt++;
					if (m[0] == 'c' && x.u.s.n) i += x.u.s.n - 1;
				}
			if (m[0] == 'c') return v_int(cnt);
			if (m[0] == 'i' && found < 0) {
				jerr(J, _("chat template: substring not found"));
				return v_undef();
			}
			return v_int(found < 0 ? -1 : (long long)u8_len(p, (size_t)found)); /* in code points */
		}
		if (!strncmp(m, "is", 2) && (!strcmp(m + 2, "digit") || !strcmp(m + 2, "alpha") || !strcmp(m + 2, "alnum") ||
					      !strcmp(m + 2, "space") || !strcmp(m + 2, "lower") || !strcmp(m + 2, "upper"))) {
			bool r = n > 0, cased = false;
			for (size_t i = 0; i < n; i++) {
				int c = (unsigned char)p[i];
				switch (m[2]) {
				case 'd': r &= isdigit(c) != 0; break;
				case 'a': r &= m[4] == 'p' ? isalpha(c) != 0 : isalnum(c) != 0; break;
				case 's': r &= is_ws((char)c) || c == '\v' || c == '\f'; break;
				case 'l': r &= !isupper(c); cased |= islower(c) != 0; break;
				case 'u': r &= !islower(c); cased |= isupper(c) != 0; break;
				}
			}
			return v_bool(m[2] == 'l' || m[2] == 'u' ? r && cased : r);
		}
		if (!strcmp(m, "join") && na && a[0].t == J_LIST) {
			struct sbuf b = { .J = J };
			for (int i = 0; i < a[0].u.l->n; i++) {
				if (i) sb_put(&b, p, n);
				to_text(&b, a[0].u.l->v[i]);
			}
			return v_str(b.p ? b.p : "", b.n);
		}
		if (!strcmp(m, "splitlines")) {
			struct jlist *l = list_new(J, 4);
			size_t st = 0;
			for (size_t i = 0; i < n; i++)
				if (p[i] == '\n' || p[i] == '\r') {
					list_push(J, l, v_str(p + st, i - st));
					if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') i++;
					st = i + 1;
				}
			if (st < n) list_push(J, l, v_str(p + st, n - st));
			return (struct jval){ .t = J_LIST, .u.l = l };
		}
		if (!strcmp(m, "rsplit") && na && a[0].t == J_STR && a[0].u.s.n) {
			/* from the right, at most maxsplit cuts (all without it) */
			long long maxs = na > 1 ? inum(a[1]) : -1;
			const char *sep = a[0].u.s.p;
			size_t sn = a[0].u.s.n, end = n;
			struct jlist *rev = list_new(J, 4);
			long long i = (long long)n - (long long)sn;
			while (i >= 0 && maxs != 0) {
				if (memcmp(p + i, sep, sn) == 0) {
					list_push(J, rev, v_str(p + i + sn, end - (size_t)i - sn));
					end = (size_t)i;
					i -= (long long)sn;
					maxs--;
				} else {
					i--;
				}
			}
			list_push(J, rev, v_str(p, end));
			struct jlist *l = list_new(J, rev->n);
			for (int k = rev->n - 1; k >= 0; k--) list_push(J, l, rev->v[k]);
			return (struct jval){ .t = J_LIST, .u.l = l };
		}
		if (!strcmp(m, "split")) {
			struct jlist *l = list_new(J, 4);
			long long maxs = na > 1 ? inum(a[1]) : -1;
			if (na && a[0].t == J_STR && a[0].u.s.n) {
				const char *sep = a[0].u.s.p;
				size_t sn = a[0].u.s.n, i = 0, st = 0;
				while (i + sn <= n && maxs != 0) {
					if (memcmp(p + i, sep, sn) == 0) {
						list_push(J, l, v_str(p + st, i - st));
						i += sn;
						st = i;
						maxs--;
					} else {
						i++;
					}
				}
				list_push(J, l, v_str(p + st, n - st));
			} else { /* split on runs of whitespace */
				size_t i = 0;
				while (i < n) {
					while (i < n && is_ws(p[i])) i++;
					size_t st = i;
					while (i < n && !is_ws(p[i])) i++;
					if (i > st) list_push(J, l, v_str(p + st, i - st));
				}
			}
			return (struct jval){ .t = J_LIST, .u.l = l };
		}
		if (!strcmp(m, "replace") && na >= 2) {
			/* Python's: at most count replacements; an empty old string inserts between characters */
			struct jval f = as_str(J, a[0]), t = as_str(J, a[1]);
			long long count = na > 2 && a[2].t == J_INT && a[2].u.i >= 0 ? a[2].u.i : -1;
			struct sbuf b = { .J = J };
			size_t i = 0;
			if (!f.u.s.n && count != 0) {
				sb_put(&b, t.u.s.p, t.u.s.n);
				count--;
			}
			while (i < n) {
				if (count != 0 && f.u.s.n && i + f.u.s.n <= n && memcmp(p + i, f.u.s.p, f.u.s.n) == 0) {
					sb_put(&b, t.u.s.p, t.u.s.n);
					i += f.u.s.n;
					count--;
				} else {
					sb_put(&b, p + i, 1);
					i++;
					if (!f.u.s.n && count != 0) {
						sb_put(&b, t.u.s.p, t.u.s.n);
						count--;
					}
				}
			}
			return v_str(b.p ? b.p : "", b.n);
		}
	} else if (obj.t == J_DICT) {
		if (!strcmp(m, "get") && na) {
			struct jval k = as_str(J, a[0]);
			struct jval *v = dict_get(obj.u.d, k.u.s.p, k.u.s.n);
			return v ? *v : na > 1 ? a[1] : v_none();
		}
		if (!strcmp(m, "items") || !strcmp(m, "keys") || !strcmp(m, "values")) {
			struct jlist *l = list_new(J, obj.u.d->n);
			for (int i = 0; i < obj.u.d->n; i++) {
				struct jval k = v_cstr(obj.u.d->k[i]);
				if (m[0] == 'i') {
					struct jlist *pair = list_new(J, 2);
					pair->tuple = true;
					list_push(J, pair, k);
					list_push(J, pair, obj.u.d->v[i]);
					list_push(J, l, (struct jval){ .t = J_LIST, .u.l = pair });
				} else {
					list_push(J, l, m[0] == 'k' ? k : obj.u.d->v[i]);
				}
			}
			return (struct jval){ .t = J_LIST, .u.l = l };
		}
		if (!strcmp(m, "cycle") && na && dict_get(obj.u.d, "index0", 6)) { /* loop.cycle(a, b, ...) */
			struct jval *i0 = dict_get(obj.u.d, "index0", 6);
			return a[i0->u.i % na];
		}
		if (!strcmp(m, "changed") && dict_get(obj.u.d, "index0", 6)) {
			/* loop.changed(x...): true at the first call and whenever the values differ from the last call's;
			 * the last ones are kept in the loop object under a key no template can spell */
			struct jlist *l = list_new(J, na);
			for (int i = 0; i < na; i++) list_push(J, l, a[i]);
			struct jval now = { .t = J_LIST, .u.l = l }, *last = dict_get(obj.u.d, "\001changed", 8);
			bool r = !last || !equal(*last, now);
			dict_set(J, obj.u.d, "\001changed", now);
			return v_bool(r);
		}
	} else if (obj.t == J_LIST && !strcmp(m, "append") && na) {
		/* transformers' ImmutableSandboxedEnvironment refuses this; kept since other runners (llama.cpp) allow
		 * it and templates written for them use it */
		list_push(J, obj.u.l, a[0]);
		return v_none();
	}
	if (obj.t == J_UNDEF) {
		jerr(J, _("chat template: '%s' of an undefined value"), m);
		return v_undef();
	}
	jerr(J, _("chat template: unsupported method '%s'"), m);
	return v_undef();
}

/* Python's printf-style "fmt % args" (the format filter too): %s %r %d %i %f %e %g %x %o %c %% with flags, width and
 * precision; a list gives several arguments, a dict named ones "%(key)s" */
static struct jval py_percent(struct jctx *J, struct jval fmt, struct jval args)
{
	struct sbuf b = { .J = J };
	const char *p = fmt.u.s.p, *end = p + fmt.u.s.n;
	int ai = 0, nargs = args.t == J_LIST ? args.u.l->n : 1;
	while (p < end) {
		if (*p != '%') {
			sb_put(&b, p++, 1);
			continue;
		}
		p++;
		if (p < end && *p == '%') {
			sb_put(&b, p++, 1);
			continue;
		}
		struct jval v = v_undef();
		bool named = false;
		if (p < end && *p == '(' && args.t == J_DICT) {
			const char *k = ++p;
			while (p < end && *p != ')') p++;
			struct jval *x = dict_get(args.u.d, k, (size_t)(p - k));
			if (p < end) p++;
			if (!x) {
				jerr(J, _("chat template: no '%.*s' for the format"), (int)(p - k - 1), k);
				return v_undef();
			}
			v = *x;
			named = true;
		}
		char spec[32];
		size_t sn = 0;
		spec[sn++] = '%';
		while (p < end && strchr("-+ 0#", *p) && sn < 8) spec[sn++] = *p++;
		while (p < end && isdigit((unsigned char)*p) && sn < 16) spec[sn++] = *p++;
		if (p < end && *p == '.') {
			spec[sn++] = *p++;
			while (p < end && isdigit((unsigned char)*p) && sn < 24) spec[sn++] = *p++;
		}
		if (p >= end) {
			jerr(J, _("chat template: incomplete format"));
			return v_undef();
		}
		char conv = *p++;
		if (!named) {
			if (ai >= nargs) {
				jerr(J, _("chat template: not enough arguments for the format string"));
				return v_undef();
			}
			v = args.t == J_LIST ? args.u.l->v[ai] : args;
			ai++;
		}
		char out[512];
		switch (conv) {
		case 's': case 'r': {
			struct sbuf t = { .J = J };
			to_text_r(&t, v, conv == 'r');
			/* of the flags only '-' applies to strings ("%05s" pads with spaces in Python) */
			char ss[32];
			size_t w = 0, k = 1;
			ss[w++] = '%';
			bool left = false;
			while (k < sn && strchr("-+ 0#", spec[k])) left |= spec[k++] == '-';
			if (left) ss[w++] = '-';
			while (k < sn) ss[w++] = spec[k++];
			ss[w++] = 's';
			ss[w] = 0;
			memcpy(spec, ss, w + 1);
			sn = w;
			if (sn == 2) sb_put(&b, t.p ? t.p : "", t.n); /* no width: any length */
			else { snprintf(out, sizeof out, spec, t.p ? t.p : ""); sb_str(&b, out); }
			break;
		}
		case 'c': /* a code point, or a one-character string */
			if (v.t == J_STR && u8_len(v.u.s.p, v.u.s.n) == 1) sb_put(&b, v.u.s.p, v.u.s.n);
			else if (v.t == J_INT && v.u.i >= 0 && v.u.i <= 0x10ffff) u8_put(&b, (unsigned long)v.u.i);
			else {
				jerr(J, _("chat template: %%c requires an integer or a character"));
				return v_undef();
			}
			break;
		case 'd': case 'i': case 'x': case 'X': case 'o':
			if (v.t != J_INT && v.t != J_FLOAT && v.t != J_BOOL) {
				jerr(J, _("chat template: %%%c format: a number is required, not %s"), conv, py_type(v));
				return v_undef();
			}
			spec[sn++] = 'l';
			spec[sn++] = 'l';
			spec[sn++] = conv == 'i' ? 'd' : conv;
			spec[sn] = 0;
			snprintf(out, sizeof out, spec, inum(v));
			sb_str(&b, out);
			break;
		case 'f': case 'F': case 'e': case 'E': case 'g': case 'G':
			if (v.t != J_INT && v.t != J_FLOAT && v.t != J_BOOL) {
				jerr(J, _("chat template: %%%c format: a number is required, not %s"), conv, py_type(v));
				return v_undef();
			}
			spec[sn++] = conv;
			spec[sn] = 0;
			snprintf(out, sizeof out, spec, num(v));
			sb_str(&b, out);
			break;
		default:
			jerr(J, _("chat template: unsupported format character '%c'"), conv);
			return v_undef();
		}
	}
	if (args.t == J_LIST && ai < nargs) {
		jerr(J, _("chat template: not all arguments converted during string formatting"));
		return v_undef();
	}
	return v_str(b.p ? b.p : "", b.n);
}

/* str.format(): "{}" and "{0}" positional, "{name}" by keyword, "{{" and "}}"; no format specs */
static struct jval py_format(struct jctx *J, struct jval fmt, struct jval *a, const char **kw, int na)
{
	struct sbuf b = { .J = J };
	const char *p = fmt.u.s.p, *end = p + fmt.u.s.n;
	int auto_i = 0;
	while (p < end) {
		if ((*p == '{' || *p == '}') && p + 1 < end && p[1] == *p) {
			sb_put(&b, p, 1);
			p += 2;
			continue;
		}
		if (*p != '{') {
			sb_put(&b, p++, 1);
			continue;
		}
		const char *k = ++p;
		while (p < end && *p != '}') p++;
		if (p >= end) {
			jerr(J, _("chat template: unclosed '{' in a format string"));
			return v_undef();
		}
		size_t kn = (size_t)(p++ - k);
		struct jval v = v_undef();
		bool found = false;
		if (kn && memchr(k, ':', kn)) {
			jerr(J, _("chat template: format specs in str.format() are not supported"));
			return v_undef();
		}
		if (kn == 0 || isdigit((unsigned char)*k)) {
			int i = kn ? atoi(ar_strndup(J, k, kn)) : auto_i++;
			int pos = 0;
			for (int j = 0; j < na; j++)
				if (!(kw && kw[j]) && pos++ == i) {
					v = a[j];
					found = true;
					break;
				}
		} else {
			for (int j = 0; j < na; j++)
				if (kw && kw[j] && strlen(kw[j]) == kn && !memcmp(kw[j], k, kn)) {
					v = a[j];
					found = true;
				}
		}
		if (!found) {
			jerr(J, _("chat template: no argument '%.*s' for str.format()"), (int)kn, k);
			return v_undef();
		}
		to_text(&b, v);
	}
	return v_str(b.p ? b.p : "", b.n);
}

static bool test(struct jctx *J, const char *t, struct jval v, struct jval *a, int na);
static struct jval index_of(struct jctx *J, struct jval o, struct jval k);
static struct jval filter(struct jctx *J, const char *f, struct jval v, struct jval *a, const char **kw, int na);

/* item "a.b.0" of a value, as the attribute= arguments of map, selectattr, sort, ... look it up */
static struct jval attr_path(struct jctx *J, struct jval v, struct jval path)
{
	if (path.t == J_INT) return v.t == J_LIST && path.u.i >= 0 && path.u.i < v.u.l->n ? v.u.l->v[path.u.i] : v_undef();
	struct jval ps = as_str(J, path);
	const char *p = ps.u.s.p, *end = p + ps.u.s.n;
	while (p <= end) {
		const char *dot = memchr(p, '.', (size_t)(end - p));
		size_t kn = dot ? (size_t)(dot - p) : (size_t)(end - p);
		if (v.t == J_DICT) {
			struct jval *x = dict_get(v.u.d, p, kn);
			v = x ? *x : v_undef();
		} else if (v.t == J_LIST && kn && isdigit((unsigned char)*p)) {
			long long i = atoll(ar_strndup(J, p, kn));
			v = i < v.u.l->n ? v.u.l->v[i] : v_undef();
		} else {
			return v_undef();
		}
		if (!dot) break;
		p = dot + 1;
	}
	return v;
}

/* the items a filter iterates: a list's, a dict's keys, a string's characters */
static struct jlist *iter_items(struct jctx *J, struct jval v)
{
	if (v.t == J_LIST) return v.u.l;
	struct jlist *l = list_new(J, 4);
	if (v.t == J_DICT)
		for (int i = 0; i < v.u.d->n; i++) list_push(J, l, v_cstr(v.u.d->k[i]));
	else if (v.t == J_STR) {
		size_t *off, len = u8_offsets(J, v.u.s.p, v.u.s.n, &off);
		for (size_t i = 0; i < len; i++) list_push(J, l, v_str(v.u.s.p + off[i], off[i + 1] - off[i]));
	}
	return l;
}

static struct jval kwarg(const char **kw, struct jval *a, int na, const char *name, int pos, int npos)
{
	for (int i = 0; i < na; i++)
		if (kw && kw[i] && !strcmp(kw[i], name)) return a[i];
	return pos >= 0 && pos < npos ? a[pos] : v_undef();
}

static int cmp_vals(struct jval x, struct jval y, bool case_sensitive)
{
	if (x.t == J_STR && y.t == J_STR) {
		size_t m = MIN(x.u.s.n, y.u.s.n);
		for (size_t i = 0; i < m; i++) {
			int a = (unsigned char)x.u.s.p[i], b = (unsigned char)y.u.s.p[i];
			if (!case_sensitive) a = tolower(a), b = tolower(b);
			if (a != b) return a < b ? -1 : 1;
		}
		return (x.u.s.n > y.u.s.n) - (x.u.s.n < y.u.s.n);
	}
	double a = num(x), b = num(y);
	return (a > b) - (a < b);
}

/* Python's sorted(): stable, also with reverse (equal keys keep their order) */
struct sortkey { struct jval key, item; };
static void merge_sort(struct jctx *J, struct sortkey *a, struct sortkey *tmp, int n, bool case_sensitive, bool reverse)
{
	if (n < 2 || J->failed) return;
	int h = n / 2, i = 0, j = h, k = 0;
	merge_sort(J, a, tmp, h, case_sensitive, reverse);
	merge_sort(J, a + h, tmp, n - h, case_sensitive, reverse);
	while (i < h && j < n) {
		int c = cmp_vals(a[j].key, a[i].key, case_sensitive);
		tmp[k++] = (reverse ? c > 0 : c < 0) ? a[j++] : a[i++]; /* the right one only when strictly first */
	}
	while (i < h) tmp[k++] = a[i++];
	while (j < n) tmp[k++] = a[j++];
	memcpy(a, tmp, sizeof *a * (size_t)n);
	for (int s = 0; s < n / 64 + 1; s++) tick(J); /* about n log n steps in all */
}

static struct jval filter(struct jctx *J, const char *f, struct jval v, struct jval *a, const char **kw, int na)
{
	/* positional arguments come first; keyword ones (kw[i] set) after them */
	int npos = 0;
	if (!work(J, v.t == J_STR ? (long long)(v.u.s.n >> 8) : v.t == J_LIST ? v.u.l->n >> 5 : 0)) return v_undef();
	while (npos < na && !(kw && kw[npos])) npos++;
	if (!strcmp(f, "length") || !strcmp(f, "count")) {
		if (v.t != J_STR && v.t != J_LIST && v.t != J_DICT && v.t != J_UNDEF) {
			jerr(J, _("chat template: object of type '%s' has no len()"), py_type(v));
			return v_undef();
		}
		return v_int(v.t == J_STR ? (long long)u8_len(v.u.s.p, v.u.s.n) : v.t == J_LIST ? v.u.l->n : v.t == J_DICT ? v.u.d->n : 0);
	}
	if (!strcmp(f, "trim")) {
		struct jval chars = kwarg(kw, a, na, "chars", 0, npos);
		return strip_chars(as_str(J, v), chars, true, true);
	}
	if (!strcmp(f, "string")) return as_str(J, v);
	if (!strcmp(f, "safe")) return v; /* no autoescape in chat templates: nothing to mark safe */
	if (!strcmp(f, "e") || !strcmp(f, "escape") || !strcmp(f, "forceescape")) {
		/* markupsafe's escape, which the filter still does with autoescape off */
		struct jval sv = as_str(J, v);
		struct sbuf b = { .J = J };
		for (size_t i = 0; i < sv.u.s.n; i++) {
			char c = sv.u.s.p[i];
			if (c == '&') sb_str(&b, "&amp;");
			else if (c == '<') sb_str(&b, "&lt;");
			else if (c == '>') sb_str(&b, "&gt;");
			else if (c == '"') sb_str(&b, "&#34;");
			else if (c == '\'') sb_str(&b, "&#39;");
			else sb_put(&b, &c, 1);
		}
		return v_str(b.p ? b.p : "", b.n);
	}
	if (!strcmp(f, "upper") || !strcmp(f, "lower") || !strcmp(f, "capitalize"))
		return call_method(J, as_str(J, v), f, NULL, 0);
	if (!strcmp(f, "title")) {
		/* Jinja's title: each word, cut before runs of '-', spaces, '(', '{', '[', '<', as first upper, rest lower */
		struct jval sv = as_str(J, v);
		return u8_case(J, sv.u.s.p, sv.u.s.n, 'j');
	}
	if (!strcmp(f, "replace")) {
		struct jval x[3] = { kwarg(kw, a, na, "old", 0, npos), kwarg(kw, a, na, "new", 1, npos),
				     kwarg(kw, a, na, "count", 2, npos) };
		return call_method(J, as_str(J, v), "replace", x, x[2].t == J_UNDEF ? 2 : 3);
	}
	if (!strcmp(f, "tojson")) {
		/* transformers' tojson: json.dumps(x, ensure_ascii=False, indent=indent, separators=..., sort_keys=False) */
		struct jval ind = kwarg(kw, a, na, "indent", 1, npos), seps = kwarg(kw, a, na, "separators", 2, npos);
		struct jsonfmt fmt = { -1, ", ", ": " };
		if (ind.t == J_INT) {
			fmt.indent = ind.u.i < 0 ? 0 : (int)ind.u.i;
			fmt.item_sep = ",";
		}
		if (seps.t == J_LIST && seps.u.l->n == 2) {
			struct jval s0 = as_str(J, seps.u.l->v[0]), s1 = as_str(J, seps.u.l->v[1]);
			fmt.item_sep = ar_strndup(J, s0.u.s.p, s0.u.s.n);
			fmt.key_sep = ar_strndup(J, s1.u.s.p, s1.u.s.n);
		}
		if (truthy(kwarg(kw, a, na, "sort_keys", 3, npos)) || truthy(kwarg(kw, a, na, "ensure_ascii", 0, npos))) {
			jerr(J, _("chat template: tojson with sort_keys or ensure_ascii is not supported"));
			return v_undef();
		}
		struct sbuf b = { .J = J };
		to_json_r(&b, v, &fmt, 0);
		return v_str(b.p ? b.p : "", b.n);
	}
	if (!strcmp(f, "default") || !strcmp(f, "d")) {
		struct jval dv = kwarg(kw, a, na, "default_value", 0, npos), boolean = kwarg(kw, a, na, "boolean", 1, npos);
		if (dv.t == J_UNDEF) dv = v_cstr("");
		return v.t == J_UNDEF || (truthy(boolean) && !truthy(v)) ? dv : v;
	}
	if (!strcmp(f, "int")) {
		if (v.t == J_STR) {
			char *t = ar_strndup(J, v.u.s.p, v.u.s.n), *e;
			long long i = strtoll(t, &e, 10);
			if (*e == '.' || *e == 'e' || *e == 'E') /* through inum: casting 1e300 is undefined */
				i = inum((struct jval){ .t = J_FLOAT, .u.f = strtod(t, &e) });
			return v_int(e == t ? inum(kwarg(kw, a, na, "default", 0, npos)) : i);
		}
		return v_int(inum(v));
	}
	if (!strcmp(f, "float")) {
		if (v.t == J_STR) return (struct jval){ .t = J_FLOAT, .u.f = strtod(ar_strndup(J, v.u.s.p, v.u.s.n), NULL) };
		return (struct jval){ .t = J_FLOAT, .u.f = num(v) };
	}
	if (!strcmp(f, "abs")) {
		if (v.t == J_INT && v.u.i == LLONG_MIN) { /* as unary minus: 2**63 does not fit (llabs is undefined) */
			jerr(J, _("chat template: integer overflow in '%s'"), "abs");
			return v_undef();
		}
		return v.t == J_FLOAT ? (struct jval){ .t = J_FLOAT, .u.f = v.u.f < 0 ? -v.u.f : v.u.f } : v_int(llabs(inum(v)));
	}
	if (!strcmp(f, "round")) {
		struct jval pr = kwarg(kw, a, na, "precision", 0, npos), me = kwarg(kw, a, na, "method", 1, npos);
		long long prec = pr.t == J_UNDEF ? 0 : inum(pr);
		prec = prec < -30 ? -30 : prec > 30 ? 30 : prec;
		double m = pow(10, (double)prec), x = num(v) * m;
		if (me.t == J_STR && me.u.s.n == 4 && !memcmp(me.u.s.p, "ceil", 4)) x = ceil(x);
		else if (me.t == J_STR && me.u.s.n == 5 && !memcmp(me.u.s.p, "floor", 5)) x = floor(x);
		else x = nearbyint(x); /* Python's round(): halves to even, the default rounding mode */
		return (struct jval){ .t = J_FLOAT, .u.f = x / m };
	}
	if (!strcmp(f, "first") || !strcmp(f, "last")) {
		if (v.t == J_LIST && v.u.l->n) return v.u.l->v[f[0] == 'f' ? 0 : v.u.l->n - 1];
		if (v.t == J_STR && v.u.s.n) return index_of(J, v, v_int(f[0] == 'f' ? 0 : -1));
		if (v.t == J_DICT && v.u.d->n) return v_cstr(v.u.d->k[f[0] == 'f' ? 0 : v.u.d->n - 1]);
		return v_undef();
	}
	if (!strcmp(f, "join")) {
		struct jlist *l = iter_items(J, v);
		struct jval sep = kwarg(kw, a, na, "d", 0, npos), at = kwarg(kw, a, na, "attribute", 1, npos);
		sep = sep.t == J_UNDEF ? v_cstr("") : as_str(J, sep);
		struct sbuf b = { .J = J };
		for (int i = 0; i < l->n; i++) {
			if (i) sb_put(&b, sep.u.s.p, sep.u.s.n);
			to_text(&b, at.t == J_UNDEF ? l->v[i] : attr_path(J, l->v[i], at));
		}
		return v_str(b.p ? b.p : "", b.n);
	}
	if (!strcmp(f, "list") || !strcmp(f, "reverse")) {
		if (f[0] == 'r' && v.t == J_STR) { /* code points in reverse */
			size_t *off, len = u8_offsets(J, v.u.s.p, v.u.s.n, &off);
			struct sbuf b = { .J = J };
			for (size_t i = len; i-- > 0;) sb_put(&b, v.u.s.p + off[i], off[i + 1] - off[i]);
			return v_str(b.p ? b.p : "", b.n);
		}
		struct jlist *src = iter_items(J, v), *l = list_new(J, src->n);
		for (int i = 0; i < src->n; i++) list_push(J, l, src->v[f[0] == 'r' ? src->n - 1 - i : i]);
		return (struct jval){ .t = J_LIST, .u.l = l };
	}
	if (!strcmp(f, "items")) {
		if (v.t == J_DICT) return call_method(J, v, "items", NULL, 0);
		if (v.t == J_UNDEF) return (struct jval){ .t = J_LIST, .u.l = list_new(J, 1) };
	}
	if (!strcmp(f, "dictsort") && v.t == J_DICT) {
		struct jval items = call_method(J, v, "items", NULL, 0);
		struct jval cs = kwarg(kw, a, na, "case_sensitive", 0, npos), by = kwarg(kw, a, na, "by", 1, npos),
			    rev = kwarg(kw, a, na, "reverse", 2, npos);
		int k = by.t == J_STR && by.u.s.n == 5 && !memcmp(by.u.s.p, "value", 5) ? 1 : 0;
		struct jlist *l = items.u.l;
		struct sortkey *sk = ar_alloc(J, sizeof *sk * (size_t)(l->n + 1) * 2);
		for (int i = 0; i < l->n; i++) sk[i] = (struct sortkey){ l->v[i].u.l->v[k], l->v[i] };
		merge_sort(J, sk, sk + l->n, l->n, truthy(cs), truthy(rev));
		for (int i = 0; i < l->n; i++) l->v[i] = sk[i].item;
		return items;
	}
	if (!strcmp(f, "sort") || !strcmp(f, "unique") || !strcmp(f, "min") || !strcmp(f, "max")) {
		struct jlist *src = iter_items(J, v), *l = list_new(J, src->n);
		bool uniq = f[0] == 'u';
		struct jval rev = uniq || f[0] == 'm' ? v_bool(false) : kwarg(kw, a, na, "reverse", 0, npos),
			    cs = kwarg(kw, a, na, "case_sensitive", uniq || f[0] == 'm' ? 0 : 1, npos),
			    at = kwarg(kw, a, na, "attribute", uniq || f[0] == 'm' ? 1 : 2, npos);
		for (int i = 0; i < src->n; i++) {
			struct jval x = src->v[i], kx = at.t == J_UNDEF ? x : attr_path(J, x, at);
			bool dup = false;
			for (int j = 0; uniq && j < l->n && !dup && tick(J); j++) {
				struct jval ky = at.t == J_UNDEF ? l->v[j] : attr_path(J, l->v[j], at);
				dup = kx.t == J_STR && ky.t == J_STR ? cmp_vals(kx, ky, truthy(cs)) == 0 : equal(kx, ky);
			}
			if (!dup) list_push(J, l, x);
		}
		if (!uniq) {
			struct sortkey *sk = ar_alloc(J, sizeof *sk * (size_t)(l->n + 1) * 2);
			for (int i = 0; i < l->n; i++) sk[i] = (struct sortkey){ at.t == J_UNDEF ? l->v[i] : attr_path(J, l->v[i], at), l->v[i] };
			merge_sort(J, sk, sk + l->n, l->n, truthy(cs), truthy(rev));
			for (int i = 0; i < l->n; i++) l->v[i] = sk[i].item;
		}
		if (f[0] == 'm') return l->n ? l->v[!strcmp(f, "min") ? 0 : l->n - 1] : v_undef();
		return (struct jval){ .t = J_LIST, .u.l = l };
	}
	if (!strcmp(f, "sum")) {
		struct jlist *l = iter_items(J, v);
		struct jval at = kwarg(kw, a, na, "attribute", 0, npos), st = kwarg(kw, a, na, "start", 1, npos);
		bool fl = st.t == J_FLOAT;
		double tot = num(st);
		for (int i = 0; i < l->n; i++) {
			struct jval x = at.t == J_UNDEF ? l->v[i] : attr_path(J, l->v[i], at);
			fl |= x.t == J_FLOAT;
			tot += num(x);
		}
		return fl ? (struct jval){ .t = J_FLOAT, .u.f = tot } : v_int(inum((struct jval){ .t = J_FLOAT, .u.f = tot }));
	}
	if (!strcmp(f, "select") || !strcmp(f, "reject") || !strcmp(f, "selectattr") || !strcmp(f, "rejectattr")) {
		/* select(test, args...), selectattr(attribute, test, args...): no test means truthiness */
		bool attr = strstr(f, "attr") != NULL, keep = f[0] == 's';
		int t0 = attr ? 1 : 0;
		struct jlist *src = iter_items(J, v), *l = list_new(J, src->n);
		for (int i = 0; i < src->n && !J->failed; i++) {
			struct jval x = attr ? attr_path(J, src->v[i], npos ? a[0] : v_undef()) : src->v[i];
			bool r;
			if (npos > t0) {
				struct jval tn = as_str(J, a[t0]);
				r = test(J, ar_strndup(J, tn.u.s.p, tn.u.s.n), x, a + t0 + 1, npos - t0 - 1);
			} else {
				r = truthy(x);
			}
			if (r == keep) list_push(J, l, src->v[i]);
		}
		return (struct jval){ .t = J_LIST, .u.l = l };
	}
	if (!strcmp(f, "map")) {
		/* map(attribute='x', default=d) or map('filter', args...) */
		struct jlist *src = iter_items(J, v), *l = list_new(J, src->n);
		struct jval at = kwarg(kw, a, na, "attribute", -1, 0), dflt = kwarg(kw, a, na, "default", -1, 0);
		for (int i = 0; i < src->n && !J->failed; i++) {
			struct jval x;
			if (at.t != J_UNDEF) {
				x = attr_path(J, src->v[i], at);
				if (x.t == J_UNDEF && dflt.t != J_UNDEF) x = dflt;
			} else if (npos) {
				struct jval fn = as_str(J, a[0]);
				x = filter(J, ar_strndup(J, fn.u.s.p, fn.u.s.n), src->v[i], a + 1, kw ? kw + 1 : NULL, na - 1);
			} else {
				x = src->v[i];
			}
			list_push(J, l, x);
		}
		return (struct jval){ .t = J_LIST, .u.l = l };
	}
	if (!strcmp(f, "attr")) return v_undef(); /* Python attributes, not items: a dict's keys are not among them */
	if (!strcmp(f, "indent")) {
		/* Jinja's: lines after the first (all with first=true) get width spaces, blank lines only with blank=true */
		struct jval w = kwarg(kw, a, na, "width", 0, npos), first = kwarg(kw, a, na, "first", 1, npos),
			    blank = kwarg(kw, a, na, "blank", 2, npos);
		struct jval ind;
		if (w.t == J_STR) {
			ind = w;
		} else {
			long long k = w.t == J_UNDEF ? 4 : inum(w);
			if (k > 100000) {
				jerr(J, _("chat template: indent() wider than 100000"));
				return v_undef();
			}
			char *sp = ar_alloc(J, (size_t)(k > 0 ? k : 0) + 1);
			for (long long i = 0; i < k; i++) sp[i] = ' ';
			ind = v_str(sp, (size_t)(k > 0 ? k : 0));
		}
		struct jval sv = as_str(J, v);
		struct jlist *lines = call_method(J, sv, "splitlines", NULL, 0).u.l;
		struct sbuf b = { .J = J };
		if (truthy(first)) sb_put(&b, ind.u.s.p, ind.u.s.n);
		for (int i = 0; i < lines->n; i++) {
			struct jval ln = lines->v[i];
			if (i) {
				sb_str(&b, "\n");
				if (ln.u.s.n || truthy(blank)) sb_put(&b, ind.u.s.p, ind.u.s.n);
			}
			sb_put(&b, ln.u.s.p, ln.u.s.n);
		}
		/* "a\n" has one line for splitlines but Jinja appends a newline first, which keeps a trailing empty line */
		if (sv.u.s.n && (sv.u.s.p[sv.u.s.n - 1] == '\n' || sv.u.s.p[sv.u.s.n - 1] == '\r')) {
			sb_str(&b, "\n");
			if (truthy(blank)) sb_put(&b, ind.u.s.p, ind.u.s.n);
		}
		return v_str(b.p ? b.p : "", b.n);
	}
	if (!strcmp(f, "format")) {
		if (kw && na && kw[na - 1]) { /* format(name=...) fills "%(name)s" */
			struct jdict *d = dict_new(J);
			for (int i = 0; i < na; i++)
				if (kw[i]) dict_set(J, d, kw[i], a[i]);
			return py_percent(J, as_str(J, v), (struct jval){ .t = J_DICT, .u.d = d });
		}
		struct jlist *l = list_new(J, na); /* the arguments as a tuple, each one value */
		for (int i = 0; i < na; i++) list_push(J, l, a[i]);
		return py_percent(J, as_str(J, v), (struct jval){ .t = J_LIST, .u.l = l });
	}
	if (!strcmp(f, "center")) {
		/* str.center(): the odd space goes right unless the width is odd too */
		struct jval sv = as_str(J, v), w = kwarg(kw, a, na, "width", 0, npos);
		long long width = w.t == J_UNDEF ? 80 : inum(w), len = (long long)u8_len(sv.u.s.p, sv.u.s.n);
		if (width > 1000000) width = 1000000;
		long long marg = width - len, left = marg / 2 + (marg & width & 1);
		if (marg <= 0) return sv;
		struct sbuf b = { .J = J };
		for (long long i = 0; i < left; i++) sb_str(&b, " ");
		sb_put(&b, sv.u.s.p, sv.u.s.n);
		for (long long i = 0; i < marg - left; i++) sb_str(&b, " ");
		return v_str(b.p ? b.p : "", b.n);
	}
	if (!strcmp(f, "truncate")) {
		/* Jinja's: strings up to length + leeway (5) stay; else cut to length - len(end) code points, back to
		 * the last space unless killwords, and end appended */
		struct jval sv = as_str(J, v), ln = kwarg(kw, a, na, "length", 0, npos), kwds = kwarg(kw, a, na, "killwords", 1, npos),
			    end = kwarg(kw, a, na, "end", 2, npos), lw = kwarg(kw, a, na, "leeway", 3, npos);
		long long length = ln.t == J_UNDEF ? 255 : inum(ln), leeway = lw.t == J_UNDEF ? 5 : inum(lw);
		end = end.t == J_UNDEF ? v_cstr("...") : as_str(J, end);
		size_t *off, len = u8_offsets(J, sv.u.s.p, sv.u.s.n, &off), elen = u8_len(end.u.s.p, end.u.s.n);
		if (length < (long long)elen || leeway < 0) {
			jerr(J, _("chat template: truncate() length shorter than its end"));
			return v_undef();
		}
		if ((long long)len <= length || (long long)len - length <= leeway) return sv; /* length + leeway may overflow */
		size_t keep = off[length - (long long)elen];
		if (!truthy(kwds)) { /* rsplit(" ", 1)[0] */
			const char *sp = NULL;
			for (size_t i = keep; i-- > 0;)
				if (sv.u.s.p[i] == ' ') {
					sp = sv.u.s.p + i;
					break;
				}
			if (sp) keep = (size_t)(sp - sv.u.s.p);
		}
		struct sbuf b = { .J = J };
		sb_put(&b, sv.u.s.p, keep);
		sb_put(&b, end.u.s.p, end.u.s.n);
		return v_str(b.p ? b.p : "", b.n);
	}
	if (!strcmp(f, "batch") || !strcmp(f, "slice")) {
		/* batch(n): lists of n items (the last one filled up with fill_with if given); slice(n): n lists, the
		 * first len % n of them one item longer (the others filled up) */
		struct jlist *src = iter_items(J, v), *out = list_new(J, 4);
		struct jval cnt = kwarg(kw, a, na, f[0] == 'b' ? "linecount" : "slices", 0, npos), fill = kwarg(kw, a, na, "fill_with", 1, npos);
		long long k = inum(cnt);
		if (k <= 0) {
			jerr(J, _("chat template: %s() needs a positive count"), f);
			return v_undef();
		}
		if (k > 100000) k = 100000;
		bool filled = fill.t != J_UNDEF && fill.t != J_NONE;
		if (f[0] == 'b') {
			for (int i = 0; i < src->n; i += (int)k) {
				struct jlist *l = list_new(J, (int)k);
				for (int j = i; j < src->n && j < i + k; j++) list_push(J, l, src->v[j]);
				while (filled && l->n < k) list_push(J, l, fill);
				list_push(J, out, (struct jval){ .t = J_LIST, .u.l = l });
			}
		} else {
			long long per = src->n / k, extra = src->n % k, offset = 0;
			for (long long sn = 0; sn < k; sn++) {
				long long start = offset + sn * per;
				if (sn < extra) offset++;
				long long stop = offset + (sn + 1) * per;
				struct jlist *l = list_new(J, 4);
				for (long long j = start; j < stop; j++) list_push(J, l, src->v[j]);
				if (filled && sn >= extra) list_push(J, l, fill);
				list_push(J, out, (struct jval){ .t = J_LIST, .u.l = l });
			}
		}
		return (struct jval){ .t = J_LIST, .u.l = out };
	}
	if (!strcmp(f, "wordcount")) {
		struct jval sv = as_str(J, v);
		return v_int(call_method(J, sv, "split", NULL, 0).u.l->n);
	}
	jerr(J, _("chat template: unsupported filter '%s'"), f);
	return v_undef();
}

static bool test(struct jctx *J, const char *t, struct jval v, struct jval *a, int na)
{
	if (!strcmp(t, "defined")) return v.t != J_UNDEF;
	if (!strcmp(t, "undefined")) return v.t == J_UNDEF;
	if (!strcmp(t, "none")) return v.t == J_NONE;
	if (!strcmp(t, "string")) return v.t == J_STR;
	if (!strcmp(t, "number")) return v.t == J_INT || v.t == J_FLOAT || v.t == J_BOOL; /* bool is a Number */
	if (!strcmp(t, "float")) return v.t == J_FLOAT;
	if (!strcmp(t, "callable")) return v.t == J_FUNC || v.t == J_MACRO;
	if (!strcmp(t, "lower") || !strcmp(t, "upper"))
		return v.t == J_STR && truthy(call_method(J, v, t[0] == 'l' ? "islower" : "isupper", NULL, 0));
	if (!strcmp(t, "in")) {
		if (!na) return false;
		if (a[0].t == J_LIST)
			for (int i = 0; i < a[0].u.l->n; i++)
				if (equal(v, a[0].u.l->v[i])) return true;
		if (a[0].t == J_DICT && v.t == J_STR) return dict_get(a[0].u.d, v.u.s.p, v.u.s.n) != NULL;
		if (a[0].t == J_STR && v.t == J_STR)
			return v.u.s.n == 0 || (v.u.s.n <= a[0].u.s.n && memmem(a[0].u.s.p, a[0].u.s.n, v.u.s.p, v.u.s.n));
		return false;
	}
	if (!strcmp(t, "ne")) return na && !equal(v, a[0]);
	if (!strcmp(t, "lt") || !strcmp(t, "lessthan")) return na && cmp_vals(v, a[0], true) < 0;
	if (!strcmp(t, "le")) return na && cmp_vals(v, a[0], true) <= 0;
	if (!strcmp(t, "gt") || !strcmp(t, "greaterthan")) return na && cmp_vals(v, a[0], true) > 0;
	if (!strcmp(t, "ge")) return na && cmp_vals(v, a[0], true) >= 0;
	if (!strcmp(t, "integer")) return v.t == J_INT;
	if (!strcmp(t, "boolean")) return v.t == J_BOOL;
	if (!strcmp(t, "true")) return v.t == J_BOOL && v.u.b;
	if (!strcmp(t, "false")) return v.t == J_BOOL && !v.u.b;
	if (!strcmp(t, "mapping")) return v.t == J_DICT;
	if (!strcmp(t, "sequence") || !strcmp(t, "iterable")) return v.t == J_LIST || v.t == J_STR || v.t == J_DICT;
	if (!strcmp(t, "equalto") || !strcmp(t, "eq") || !strcmp(t, "sameas") || !strcmp(t, "==")) return na && equal(v, a[0]);
	if (!strcmp(t, "odd") || !strcmp(t, "even")) return v.t == J_INT && (v.u.i % 2 != 0) == (t[0] == 'o');
	if (!strcmp(t, "divisibleby")) { /* value % num == 0, in floats for a float divisor (inum(0.5) is 0) */
		if (!na || v.t != J_INT || num(a[0]) == 0) return false;
		if (a[0].t == J_FLOAT) return fmod((double)v.u.i, a[0].u.f) == 0;
		long long q = inum(a[0]);
		return q == -1 || v.u.i % q == 0; /* LLONG_MIN % -1 overflows */
	}
	jerr(J, _("chat template: unsupported test '%s'"), t);
	return false;
}

static long long norm_index(long long i, long long n) { return i < 0 ? i + n : i; }

static struct jval index_of(struct jctx *J, struct jval o, struct jval k)
{
	if (o.t == J_LIST && (k.t == J_INT || k.t == J_BOOL)) {
		long long i = norm_index(k.t == J_INT ? k.u.i : k.u.b, o.u.l->n);
		return i >= 0 && i < o.u.l->n ? o.u.l->v[i] : v_undef();
	}
	if (o.t == J_STR && k.t == J_INT) { /* the k-th code point */
		size_t *off, len = u8_offsets(J, o.u.s.p, o.u.s.n, &off);
		long long i = norm_index(k.u.i, (long long)len);
		return i >= 0 && i < (long long)len ? v_str(o.u.s.p + off[i], off[i + 1] - off[i]) : v_undef();
	}
	if (o.t == J_DICT && k.t == J_STR) {
		struct jval *v = dict_get(o.u.d, k.u.s.p, k.u.s.n);
		return v ? *v : v_undef();
	}
	return v_undef();
}

static void exec_list(struct jctx *J, struct stmt **l, int n);

/* Python's ordering where it has one: *c < 0, 0, > 0; false for types it does not order */
static bool order(struct jctx *J, struct jval a, struct jval b, int *c)
{
	bool an = a.t == J_INT || a.t == J_FLOAT || a.t == J_BOOL, bn = b.t == J_INT || b.t == J_FLOAT || b.t == J_BOOL;
	if (an && bn) {
		double x = num(a), y = num(b);
		*c = (x > y) - (x < y);
		return true;
	}
	if (a.t == J_STR && b.t == J_STR) {
		size_t m = MIN(a.u.s.n, b.u.s.n);
		int r = memcmp(a.u.s.p, b.u.s.p, m);
		*c = r ? (r > 0) - (r < 0) : (a.u.s.n > b.u.s.n) - (a.u.s.n < b.u.s.n);
		return true;
	}
	if (a.t == J_LIST && b.t == J_LIST) {
		for (int i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
			if (equal(a.u.l->v[i], b.u.l->v[i])) continue;
			return order(J, a.u.l->v[i], b.u.l->v[i], c);
		}
		*c = (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
		return true;
	}
	return false;
}

/* Run statements with the output going to a string of their own: {% set %} blocks, macros, {% filter %}. */
static struct jval capture(struct jctx *J, struct stmt **l, int n)
{
	char *so = J->out;
	size_t sl = J->olen, scap = J->ocap;
	J->out = NULL;
	J->olen = J->ocap = 0;
	exec_list(J, l, n);
	struct jval v = v_str(ar_strndup(J, J->out ? J->out : "", J->olen), J->olen);
	free(J->out);
	J->out = so;
	J->olen = sl;
	J->ocap = scap;
	return v;
}

/* English names whatever the C locale says, as Python's strftime in transformers (which never sets LC_TIME) */
static void strftime_en(struct sbuf *b, const char *fmt, size_t n, const struct tm *tm)
{
	static const char *const mon[] = { "January", "February", "March", "April", "May", "June", "July", "August",
					   "September", "October", "November", "December" };
	static const char *const day[] = { "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday" };
	for (size_t i = 0; i < n; i++) {
		if (fmt[i] != '%' || i + 1 >= n) {
			sb_put(b, fmt + i, 1);
			continue;
		}
		char c = fmt[++i], out[64];
		switch (c) {
		case 'b': sb_put(b, mon[tm->tm_mon], 3); break;
		case 'B': sb_str(b, mon[tm->tm_mon]); break;
		case 'a': sb_put(b, day[tm->tm_wday], 3); break;
		case 'A': sb_str(b, day[tm->tm_wday]); break;
		case 'p': sb_str(b, tm->tm_hour < 12 ? "AM" : "PM"); break;
		default: {
			char f[3] = { '%', c, 0 };
			size_t k = strftime(out, sizeof out, f, tm);
			sb_put(b, out, k);
		}
		}
	}
}

static struct jval call_value(struct jctx *J, struct jval f, const char *name, struct jval *a, const char **kw, int na)
{
	if (f.t == J_MACRO) {
		/* arguments by position, then by name, then the defaults; the body sees the template's globals */
		struct stmt *m = f.u.m;
		if (++J->depth > 64) {
			jerr(J, _("chat template: macros nested too deeply"));
			return v_undef();
		}
		struct scope sc = { .up = J->global }, *saved = J->sc;
		J->sc = &sc;
		int pos = 0;
		while (pos < na && !(kw && kw[pos])) pos++;
		if (pos > m->nparams) {
			jerr(J,
			     P_("chat template: macro '%s' takes %d argument",
				"chat template: macro '%s' takes %d arguments", m->nparams),
			     m->var, m->nparams);
			pos = m->nparams;
		}
		for (int i = 0; i < m->nparams && !J->failed; i++) {
			struct jval v = v_undef();
			bool set = false;
			if (i < pos) {
				v = a[i];
				set = true;
			}
			for (int k = pos; k < na && !set; k++)
				if (kw && kw[k] && !strcmp(kw[k], m->params[i])) {
					v = a[k];
					set = true;
				}
			if (!set && m->defaults[i]) v = eval(J, m->defaults[i]);
			scope_set(J, m->params[i], v);
		}
		int brk = J->brk;
		J->brk = 0;
		struct jval r = J->failed ? v_undef() : capture(J, m->body, m->nb);
		J->brk = brk;
		J->sc = saved;
		J->depth--;
		return r;
	}
	if (f.t != J_FUNC) {
		if (f.t == J_UNDEF) jerr(J, _("chat template: '%s' is undefined"), name);
		else jerr(J, _("chat template: '%s' is not callable"), name);
		return v_undef();
	}
	const char *fn = f.u.s.p;
	if (!strcmp(fn, "namespace") || !strcmp(fn, "dict")) {
		struct jdict *d = dict_new(J);
		d->ns = fn[0] == 'n';
		for (int i = 0; i < na; i++)
			if (kw && kw[i]) {
				dict_set(J, d, kw[i], a[i]);
			} else if (a[i].t == J_DICT) { /* namespace({'a': 1}), dict(other) */
				for (int k = 0; k < a[i].u.d->n; k++) dict_set(J, d, a[i].u.d->k[k], a[i].u.d->v[k]);
			}
		return (struct jval){ .t = J_DICT, .u.d = d };
	}
	if (!strcmp(fn, "range")) {
		long long lo = 0, hi = na ? inum(a[0]) : 0, st = 1;
		if (na >= 2) {
			lo = hi;
			hi = inum(a[1]);
		}
		if (na >= 3) st = inum(a[2]);
		if (st == 0) {
			jerr(J, _("chat template: range() step must not be zero"));
			return v_undef();
		}
		/* in unsigned arithmetic: hi - lo need not fit (range(-2**63, 2**63-1)), LLONG_MIN / -1 traps, and a
		 * step past the end need not either (range(2**63-2, 2**63-1, 10)) */
		unsigned long long span = st > 0 ? (hi > lo ? (unsigned long long)hi - (unsigned long long)lo : 0)
						 : (lo > hi ? (unsigned long long)lo - (unsigned long long)hi : 0);
		unsigned long long ast = st > 0 ? (unsigned long long)st : 0 - (unsigned long long)st;
		if (span / ast > 100000) {
			jerr(J, _("chat template: range() too long"));
			return v_undef();
		}
		long long count = span ? (long long)((span - 1) / ast) + 1 : 0;
		struct jlist *l = list_new(J, 4);
		for (long long k = 0; k < count; k++)
			list_push(J, l, v_int((long long)((unsigned long long)lo + (unsigned long long)k * (unsigned long long)st)));
		return (struct jval){ .t = J_LIST, .u.l = l };
	}
	if (!strcmp(fn, "raise_exception")) {
		struct jval m = na ? as_str(J, a[0]) : v_cstr("");
		jerr(J, _("chat template: %.*s"), (int)m.u.s.n, m.u.s.p);
		return v_undef();
	}
	if (!strcmp(fn, "strftime_now") && (na != 1 || (kw && kw[0]))) {
		jerr(J, _("chat template: strftime_now() takes one format argument"));
		return v_undef();
	}
	if (!strcmp(fn, "strftime_now")) {
		/* transformers' strftime_now: the local time now; SOURCE_DATE_EPOCH (UTC), where set, fixes the
		 * instant for reproducible output (the tests) */
		time_t now = time(NULL);
		struct tm tm;
		const char *sde = getenv("SOURCE_DATE_EPOCH");
		if (sde && *sde) {
			/* a value that is not a whole number of seconds, or whose year does not fit, gives no date:
			 * gmtime_r left tm unset ("abc" was 1970, 1e17 uninitialised memory) */
			char *end;
			errno = 0;
			long long v = strtoll(sde, &end, 10);
			now = (time_t)v;
			if (errno || *end || end == sde || !gmtime_r(&now, &tm)) {
				jerr(J, _("chat template: strftime_now(): SOURCE_DATE_EPOCH '%s' is not a usable number of "
					  "seconds since 1970"), sde);
				return v_undef();
			}
		} else {
			localtime_r(&now, &tm);
		}
		struct jval fmt = na ? as_str(J, a[0]) : v_cstr("");
		struct sbuf b = { .J = J };
		strftime_en(&b, fmt.u.s.p, fmt.u.s.n, &tm);
		return v_str(b.p ? b.p : "", b.n);
	}
	jerr(J, _("chat template: unsupported call '%s'"), fn);
	return v_undef();
}

/* The parser bounds nesting, but a flat chain of operators (1 ~ 1 ~ 1 ...) parses without recursion into a tree
 * as deep as the chain is long: evaluating it recurses that deep, so eval is bounded too. */
#define MAX_EVAL_DEPTH (8 * MAX_NEST)
static struct jval eval_node(struct jctx *J, struct expr *e);
static struct jval eval(struct jctx *J, struct expr *e)
{
	if (J->failed) return v_undef();
	if (J->edepth >= MAX_EVAL_DEPTH) {
		jerr(J, _("chat template: nested more than %d deep"), MAX_EVAL_DEPTH);
		return v_undef();
	}
	J->edepth++;
	struct jval v = eval_node(J, e);
	J->edepth--;
	return v;
}

static struct jval eval_node(struct jctx *J, struct expr *e)
{
	switch (e->k) {
	case E_LIT: return e->lit;
	case E_NAME: return lookup(J, e->name);
	case E_LIST: {
		struct jlist *l = list_new(J, e->nargs);
		l->tuple = e->neg;
		for (int i = 0; i < e->nargs; i++) list_push(J, l, eval(J, e->args[i]));
		return (struct jval){ .t = J_LIST, .u.l = l };
	}
	case E_DICT: {
		struct jdict *d = dict_new(J);
		for (int i = 0; i < e->nargs; i++) {
			struct jval k = as_str(J, eval(J, e->args[2 * i]));
			dict_set(J, d, ar_strndup(J, k.u.s.p, k.u.s.n), eval(J, e->args[2 * i + 1]));
		}
		return (struct jval){ .t = J_DICT, .u.d = d };
	}
	case E_ATTR: {
		struct jval o = eval(J, e->a);
		if (o.t == J_UNDEF) { /* as Jinja: an attribute of an undefined value is an error */
			jerr(J, _("chat template: '%s' of an undefined value"), e->name);
			return o;
		}
		if (o.t == J_DICT) {
			struct jval *v = dict_get(o.u.d, e->name, strlen(e->name));
			return v ? *v : v_undef();
		}
		return v_undef();
	}
	case E_INDEX: {
		struct jval o = eval(J, e->a);
		if (o.t == J_UNDEF) {
			jerr(J, _("chat template: an item of an undefined value"));
			return o;
		}
		return index_of(J, o, eval(J, e->b));
	}
	case E_SLICE: {
		struct jval o = eval(J, e->a);
		size_t *off = NULL;
		long long n = o.t == J_LIST ? o.u.l->n : o.t == J_STR ? (long long)u8_offsets(J, o.u.s.p, o.u.s.n, &off) : 0;
		long long st = e->d ? inum(eval(J, e->d)) : 1;
		if (st == 0) {
			jerr(J, _("chat template: slice step 0"));
			return v_undef();
		}
		long long lo, hi;
		if (st > 0) {
			lo = e->b ? norm_index(inum(eval(J, e->b)), n) : 0;
			hi = e->c ? norm_index(inum(eval(J, e->c)), n) : n;
			lo = lo < 0 ? 0 : lo > n ? n : lo;
			hi = hi < 0 ? 0 : hi > n ? n : hi;
		} else {
			lo = e->b ? norm_index(inum(eval(J, e->b)), n) : n - 1;
			hi = e->c ? norm_index(inum(eval(J, e->c)), n) : -1;
			lo = lo < -1 ? -1 : lo > n - 1 ? n - 1 : lo;
			hi = hi < -1 ? -1 : hi > n - 1 ? n - 1 : hi;
		}
		/* lo, lo + st, ... before hi, counted: adding a step near 2**63 to an index overflowed back into range */
		unsigned long long span = st > 0 ? (hi > lo ? (unsigned long long)(hi - lo) : 0)
						 : (lo > hi ? (unsigned long long)(lo - hi) : 0);
		long long cnt = span ? (long long)((span - 1) / (st > 0 ? (unsigned long long)st : 0 - (unsigned long long)st)) + 1 : 0;
		if (o.t == J_LIST) {
			struct jlist *l = list_new(J, 4);
			for (long long k = 0; k < cnt; k++) list_push(J, l, o.u.l->v[lo + k * st]);
			return (struct jval){ .t = J_LIST, .u.l = l };
		}
		if (o.t == J_STR) {
			struct sbuf b = { .J = J };
			for (long long k = 0; k < cnt; k++) {
				long long i = lo + k * st;
				sb_put(&b, o.u.s.p + off[i], off[i + 1] - off[i]);
			}
			return v_str(b.p ? b.p : "", b.n);
		}
		return v_undef();
	}
	case E_CALL: {
		struct jval a[8];
		for (int i = 0; i < e->nargs && i < 8; i++) a[i] = eval(J, e->args[i]);
		if (e->a->k == E_ATTR) {
			struct jval obj = eval(J, e->a->a);
			/* a macro kept in a dict or namespace is called, anything else has methods */
			if (obj.t == J_DICT) {
				struct jval *m = dict_get(obj.u.d, e->a->name, strlen(e->a->name));
				if (m && (m->t == J_MACRO || m->t == J_FUNC)) return call_value(J, *m, e->a->name, a, e->kw, e->nargs);
			}
			if (obj.t == J_STR && !strcmp(e->a->name, "format")) return py_format(J, obj, a, e->kw, e->nargs);
			return call_method(J, obj, e->a->name, a, e->nargs);
		}
		struct jval f = eval(J, e->a);
		return call_value(J, f, e->a->k == E_NAME ? e->a->name : "expression", a, e->kw, e->nargs);
	}
	case E_FILTER: {
		struct jval a[8];
		for (int i = 0; i < e->nargs && i < 8; i++) a[i] = eval(J, e->args[i]);
		return filter(J, e->name, eval(J, e->a), a, e->kw, e->nargs);
	}
	case E_TEST: {
		struct jval a[8];
		for (int i = 0; i < e->nargs && i < 8; i++) a[i] = eval(J, e->args[i]);
		return v_bool(test(J, e->name, eval(J, e->a), a, e->nargs) != e->neg);
	}
	case E_UNARY: {
		struct jval v = eval(J, e->a);
		if (!strcmp(e->name, "not")) return v_bool(!truthy(v));
		if (v.t == J_UNDEF) {
			jerr(J, _("chat template: an undefined value in '%s'"), e->name);
			return v;
		}
		if (v.t != J_INT && v.t != J_FLOAT && v.t != J_BOOL) {
			jerr(J, _("chat template: bad operand type for unary %s: '%s'"), e->name, py_type(v));
			return v_undef();
		}
		if (!strcmp(e->name, "+")) return v.t == J_BOOL ? v_int(v.u.b) : v;
		if (v.t == J_INT && v.u.i == LLONG_MIN) {
			jerr(J, _("chat template: integer overflow in '%s'"), "-");
			return v_undef();
		}
		return v.t == J_FLOAT ? (struct jval){ .t = J_FLOAT, .u.f = -v.u.f } : v_int(v.t == J_INT ? -v.u.i : -(long long)v.u.b);
	}
	case E_COND: return truthy(eval(J, e->b)) ? eval(J, e->a) : e->c ? eval(J, e->c) : v_undef();
	case E_BIN: {
		const char *op = e->name;
		if (!strcmp(op, "and")) {
			struct jval a = eval(J, e->a);
			return truthy(a) ? eval(J, e->b) : a;
		}
		if (!strcmp(op, "or")) {
			struct jval a = eval(J, e->a);
			return truthy(a) ? a : eval(J, e->b);
		}
		struct jval a = eval(J, e->a), b = eval(J, e->b);
		if (strcmp(op, "~") && strcmp(op, "==") && strcmp(op, "!=") && strcmp(op, "in") && strcmp(op, "notin") &&
		    (a.t == J_UNDEF || b.t == J_UNDEF)) {
			/* Jinja's Undefined fails in arithmetic ("x" + undefined too); only ~ prints it as "" */
			struct expr *u = a.t == J_UNDEF ? e->a : e->b;
			if (u->k == E_NAME) jerr(J, _("chat template: '%s' is undefined"), u->name);
			else jerr(J, _("chat template: an undefined value in '%s'"), op);
			return v_undef();
		}
		if (!strcmp(op, "~") || (!strcmp(op, "+") && a.t == J_STR && b.t == J_STR)) {
			struct jval x = as_str(J, a), y = as_str(J, b);
			if (x.u.s.n + y.u.s.n > (64u << 20)) {
				jerr(J, _("chat template: a string of more than 64 MiB"));
				return v_undef();
			}
			char *p = ar_alloc(J, x.u.s.n + y.u.s.n + 1);
			memcpy(p, x.u.s.p, x.u.s.n);
			memcpy(p + x.u.s.n, y.u.s.p, y.u.s.n);
			return v_str(p, x.u.s.n + y.u.s.n);
		}
		if (!strcmp(op, "+") && a.t == J_LIST && b.t == J_LIST) {
			struct jlist *l = list_new(J, a.u.l->n + b.u.l->n);
			for (int i = 0; i < a.u.l->n; i++) list_push(J, l, a.u.l->v[i]);
			for (int i = 0; i < b.u.l->n; i++) list_push(J, l, b.u.l->v[i]);
			return (struct jval){ .t = J_LIST, .u.l = l };
		}
		if (!strcmp(op, "==")) return v_bool(equal(a, b));
		if (!strcmp(op, "!=")) return v_bool(!equal(a, b));
		if (!strcmp(op, "in") || !strcmp(op, "notin")) {
			bool r = false;
			if (b.t == J_STR) {
				if (a.t != J_STR) {
					jerr(J, _("chat template: 'in <string>' requires a string on the left, not %s"), py_type(a));
					return v_undef();
				}
				struct jval x = a;
				work(J, (long long)(b.u.s.n >> 8)); /* scans count too */
				r = x.u.s.n == 0 || (x.u.s.n <= b.u.s.n && memmem(b.u.s.p, b.u.s.n, x.u.s.p, x.u.s.n));
			} else if (b.t == J_LIST) {
				work(J, b.u.l->n >> 5);
				for (int i = 0; i < b.u.l->n && !r; i++) r = equal(a, b.u.l->v[i]);
			} else if (b.t == J_DICT && a.t == J_STR) {
				r = dict_get(b.u.d, a.u.s.p, a.u.s.n) != NULL;
			} else if (b.t != J_DICT && b.t != J_UNDEF) { /* Undefined is an empty container; none is none */
				jerr(J, _("chat template: argument of type '%s' is not iterable"), py_type(b));
				return v_undef();
			}
			return v_bool(r == !strcmp(op, "in"));
		}
		bool an = a.t == J_INT || a.t == J_FLOAT || a.t == J_BOOL, bn = b.t == J_INT || b.t == J_FLOAT || b.t == J_BOOL;
		if (strchr("<>", op[0])) {
			/* Python orders numbers with numbers, strings with strings (by code point, which UTF-8's byte
			 * order is) and lists item by item; anything else is a TypeError */
			int c;
			if (!order(J, a, b, &c)) {
				jerr(J, _("chat template: '%s' not supported between '%s' and '%s'"), op, py_type(a), py_type(b));
				return v_undef();
			}
			return v_bool(!strcmp(op, "<") ? c < 0 : !strcmp(op, ">") ? c > 0 : !strcmp(op, "<=") ? c <= 0 : c >= 0);
		}
		if (!strcmp(op, "*") && ((a.t == J_LIST && b.t == J_INT) || (a.t == J_INT && b.t == J_LIST))) {
			struct jval l = a.t == J_LIST ? a : b;
			/* by division: n * k wraps for a k near 2**63, and [] * k is [] at once, not k empty rounds */
			long long k = !l.u.l->n ? 0 : a.t == J_INT ? a.u.i : b.u.i;
			if (k > 0 && (unsigned long long)k > 1000000u / (unsigned long long)l.u.l->n) {
				jerr(J, _("chat template: a list of more than a million items"));
				return v_undef();
			}
			struct jlist *r = list_new(J, 4);
			for (long long i = 0; i < k; i++)
				for (int j = 0; j < l.u.l->n; j++) list_push(J, r, l.u.l->v[j]);
			return (struct jval){ .t = J_LIST, .u.l = r };
		}
		if (a.t == J_STR && !strcmp(op, "%")) return py_percent(J, a, b); /* a list stands for a tuple */
		if (a.t == J_INT && b.t == J_STR && !strcmp(op, "*")) {
			struct jval t = a;
			a = b;
			b = t;
		}
		if (!(an && bn) && !(!strcmp(op, "*") && a.t == J_STR && b.t == J_INT)) {
			jerr(J, _("chat template: unsupported operand types for %s: '%s' and '%s'"), op, py_type(a), py_type(b));
			return v_undef();
		}
		if (a.t == J_STR && b.t == J_INT && !strcmp(op, "*")) {
			long long k = a.u.s.n ? b.u.i : 0; /* as for lists */
			if (k > 0 && (unsigned long long)k > (64u << 20) / a.u.s.n) {
				jerr(J, _("chat template: a string of more than 64 MiB"));
				return v_undef();
			}
			struct sbuf sb = { .J = J };
			for (long long i = 0; i < k; i++) sb_put(&sb, a.u.s.p, a.u.s.n);
			return v_str(sb.p ? sb.p : "", sb.n);
		}
		bool ints = a.t != J_FLOAT && b.t != J_FLOAT;
		if (ints && strcmp(op, "/") && !(!strcmp(op, "**") && (b.t == J_INT ? b.u.i : b.u.b) < 0)) {
			/* integers stay integers, as Python's; those have no limit and ours 64 bits, so an overflow fails */
			long long p = a.t == J_INT ? a.u.i : a.u.b, q = b.t == J_INT ? b.u.i : b.u.b, r = 0;
			bool of = false;
			if (!strcmp(op, "+")) {
				of = __builtin_add_overflow(p, q, &r);
			} else if (!strcmp(op, "-")) {
				of = __builtin_sub_overflow(p, q, &r);
			} else if (!strcmp(op, "*")) {
				of = __builtin_mul_overflow(p, q, &r);
			} else if (!strcmp(op, "**")) {
				if (p == 0 || p == 1) r = q == 0 ? 1 : p;
				else if (p == -1) r = q % 2 ? -1 : 1;
				else for (r = 1; q-- > 0 && !of;) of = __builtin_mul_overflow(r, p, &r); /* |p| >= 2: 63 turns at most */
			} else {
				if (q == 0) {
					jerr(J, _("chat template: division by zero"));
					return v_undef();
				}
				if (p == LLONG_MIN && q == -1) { /* the quotient does not fit; the remainder is 0 */
					if (!strcmp(op, "//")) of = true;
					else r = 0;
				} else { /* Python's floor division and modulo: the remainder takes the divisor's sign */
					long long d = p / q, m = p % q;
					if (m && ((m < 0) != (q < 0))) {
						d--;
						m += q;
					}
					r = !strcmp(op, "//") ? d : m;
				}
			}
			if (of) {
				jerr(J, _("chat template: integer overflow in '%s'"), op);
				return v_undef();
			}
			return v_int(r);
		}
		double x = num(a), y = num(b), r;
		if (!strcmp(op, "+")) r = x + y;
		else if (!strcmp(op, "-")) r = x - y;
		else if (!strcmp(op, "*")) r = x * y;
		else if (!strcmp(op, "**")) r = pow(x, y);
		else if (y == 0) {
			jerr(J, _("chat template: division by zero"));
			return v_undef();
		} else if (!strcmp(op, "/")) {
			r = x / y;
		} else { /* float // and %, as Python's divmod */
			double m = fmod(x, y);
			if (m != 0 && ((y < 0) != (m < 0))) m += y;
			r = !strcmp(op, "%") ? m : floor(x / y);
		}
		return (struct jval){ .t = J_FLOAT, .u.f = r };
	}
	}
	return v_undef();
}

static void out_put(struct jctx *J, const char *s, size_t n)
{
	if (J->olen + n > (256u << 20)) {
		jerr(J, _("chat template: output of more than 256 MiB"));
		return;
	}
	if (J->olen + n + 1 > J->ocap) {
		size_t cap = J->ocap ? J->ocap * 2 : 1024;
		while (cap < J->olen + n + 1) cap *= 2;
		char *p = realloc(J->out, cap);
		if (!p) {
			jerr(J, _("chat template: out of memory"));
			return;
		}
		J->out = p;
		J->ocap = cap;
	}
	memcpy(J->out + J->olen, s, n);
	J->olen += n;
	J->out[J->olen] = 0;
}

static void exec_list(struct jctx *J, struct stmt **l, int n);


static void exec(struct jctx *J, struct stmt *s)
{
	if (J->failed) return;
	if (!tick(J)) return;
	switch (s->k) {
	case S_TEXT: out_put(J, s->text, s->len); break;
	case S_OUT: {
		struct sbuf b = { .J = J };
		to_text(&b, eval(J, s->e));
		if (b.n) out_put(J, b.p, b.n);
		break;
	}
	case S_IF:
		for (int i = 0; i < s->nbranch; i++)
			if (!s->conds[i] || truthy(eval(J, s->conds[i]))) {
				exec_list(J, s->bodies[i], s->nbody[i]);
				break;
			}
		break;
	case S_BREAK: J->brk = 1; break;
	case S_CONTINUE: J->brk = 2; break;
	case S_MACRO: scope_set(J, s->var, (struct jval){ .t = J_MACRO, .u.m = s }); break;
	case S_FILTER: {
		struct jval body = capture(J, s->body, s->nb), a[8];
		for (int i = 0; i < s->e->nargs && i < 8; i++) a[i] = eval(J, s->e->args[i]);
		struct sbuf b = { .J = J };
		to_text(&b, filter(J, s->e->name, body, a, s->e->kw, s->e->nargs));
		if (b.n) out_put(J, b.p, b.n);
		break;
	}
	case S_WITH: {
		struct scope sc = { .up = J->sc };
		struct jval vals[16];
		for (int i = 0; i < s->nparams; i++) vals[i] = eval(J, s->defaults[i]); /* in the outer scope */
		J->sc = &sc;
		for (int i = 0; i < s->nparams; i++) scope_set(J, s->params[i], vals[i]);
		exec_list(J, s->body, s->nb);
		J->sc = sc.up;
		break;
	}
	case S_SET: {
		struct jval v = s->body ? capture(J, s->body, s->nb) : eval(J, s->e);
		if (s->nparams) { /* set a, b = ... */
			struct jlist *l = v.t == J_LIST || v.t == J_STR || v.t == J_DICT ? iter_items(J, v) : NULL;
			if (!l || l->n != s->nparams) {
				jerr(J, _("chat template: cannot unpack %s into %d names"), py_type(v), s->nparams);
				return;
			}
			for (int i = 0; i < s->nparams; i++) scope_set(J, s->params[i], l->v[i]);
			break;
		}
		if (s->var2) {
			struct jval ns = lookup(J, s->var);
			if (ns.t != J_DICT) {
				jerr(J, _("chat template: '%s' is not a namespace"), s->var);
				return;
			}
			dict_set(J, ns.u.d, s->var2, v);
		} else {
			scope_set(J, s->var, v);
		}
		break;
	}
	case S_FOR: {
		struct jval it = eval(J, s->e);
		struct jlist *items;
		if (it.t == J_LIST) {
			items = it.u.l;
		} else if (it.t == J_DICT) {
			items = list_new(J, it.u.d->n);
			for (int i = 0; i < it.u.d->n; i++) list_push(J, items, v_cstr(it.u.d->k[i]));
		} else if (it.t == J_STR) {
			items = iter_items(J, it); /* code points */
		} else if (it.t == J_UNDEF) {
			items = list_new(J, 1); /* Jinja's Undefined iterates as empty */
		} else {
			jerr(J, _("chat template: '%s' object is not iterable"), py_type(it));
			return;
		}
		if (++J->depth > 64) {
			jerr(J, _("chat template: loops nested too deeply"));
			return;
		}
		struct scope sc = { .up = J->sc };
		J->sc = &sc;
		/* with a filter, loop.* counts the items that pass it */
		struct jlist *pass = items;
		if (s->filter) {
			pass = list_new(J, items->n);
			for (int i = 0; i < items->n; i++) {
				scope_set(J, s->var, items->v[i]);
				if (truthy(eval(J, s->filter))) list_push(J, pass, items->v[i]);
			}
		}
		struct jdict *loop = NULL;
		for (int i = 0; i < pass->n && !J->failed; i++) {
			if (!tick(J)) break;
			sc.n = 0; /* a fresh scope per iteration, as Jinja's */
			struct jval x = pass->v[i];
			if (s->var2) {
				scope_set(J, s->var, x.t == J_LIST && x.u.l->n > 0 ? x.u.l->v[0] : v_undef());
				scope_set(J, s->var2, x.t == J_LIST && x.u.l->n > 1 ? x.u.l->v[1] : v_undef());
			} else {
				scope_set(J, s->var, x);
			}
			/* one loop object updated in place, as Jinja's LoopContext, so that a long loop does not fill the arena;
			 * its keys are set once and then its values by position */
			static const char *const lk[] = { "index0", "index", "revindex0", "revindex", "first", "last", "length",
							  "previtem", "nextitem", "depth", "depth0" };
			if (!loop) {
				loop = dict_new(J);
				for (size_t k = 0; k < ARRAY_SIZE(lk); k++) dict_set(J, loop, lk[k], v_none());
			}
			struct jval *lv = loop->v;
			lv[0] = v_int(i);
			lv[1] = v_int(i + 1);
			lv[2] = v_int(pass->n - 1 - i);
			lv[3] = v_int(pass->n - i);
			lv[4] = v_bool(i == 0);
			lv[5] = v_bool(i == pass->n - 1);
			lv[6] = v_int(pass->n);
			lv[7] = i > 0 ? pass->v[i - 1] : v_undef();
			lv[8] = i + 1 < pass->n ? pass->v[i + 1] : v_undef();
			lv[9] = v_int(1); /* no recursive loops: always the first level */
			lv[10] = v_int(0);
			scope_set(J, "loop", (struct jval){ .t = J_DICT, .u.d = loop });
			exec_list(J, s->body, s->nb);
			int brk = J->brk;
			J->brk = 0;
			if (brk == 1) break;
		}
		J->sc = sc.up;
		J->depth--;
		if (pass->n == 0 && s->else_body) exec_list(J, s->else_body, s->ne);
		break;
	}
	}
}

static void exec_list(struct jctx *J, struct stmt **l, int n)
{
	for (int i = 0; i < n && !J->failed && !J->brk; i++) exec(J, l[i]);
}

static int render(const char *tmpl, const struct chat_msg *msgs, int n, bool parts, bool add_generation_prompt,
		  const char *bos, const char *eos, char **out)
{
	struct jctx J;
	memset(&J, 0, sizeof J);
	*out = NULL;
	/* as Jinja's lexer: "\r\n" and "\r" read as "\n", and one newline at the very end is dropped
	 * (keep_trailing_newline is off in transformers) */
	size_t tl = strlen(tmpl);
	char *src = ar_alloc(&J, tl + 1), *w = src;
	for (size_t i = 0; i < tl; i++) {
		if (tmpl[i] == '\r') {
			*w++ = '\n';
			if (i + 1 < tl && tmpl[i + 1] == '\n') i++;
		} else {
			*w++ = tmpl[i];
		}
	}
	if (w > src && w[-1] == '\n') w--;
	*w = 0;
	cut_tags(&J, src);
	int nstmt = 0;
	const char *which = NULL;
	struct stmt **prog = J.failed ? NULL : parse_block(&J, NULL, &nstmt, &which);
	struct scope global = { 0 };
	J.sc = J.global = &global;
	if (!J.failed) {
		struct jlist *ml = list_new(&J, n);
		for (int i = 0; i < n; i++) {
			struct jdict *d = dict_new(&J);
			dict_set(&J, d, "role", v_cstr(msgs[i].role));
			if (parts) { /* [{"type": "text", "text": content}] */
				struct jdict *pd = dict_new(&J);
				dict_set(&J, pd, "type", v_cstr("text"));
				dict_set(&J, pd, "text", v_cstr(msgs[i].content));
				struct jlist *pl = list_new(&J, 1);
				list_push(&J, pl, (struct jval){ .t = J_DICT, .u.d = pd });
				dict_set(&J, d, "content", (struct jval){ .t = J_LIST, .u.l = pl });
			} else {
				dict_set(&J, d, "content", v_cstr(msgs[i].content));
			}
			list_push(&J, ml, (struct jval){ .t = J_DICT, .u.d = d });
		}
		scope_set(&J, "messages", (struct jval){ .t = J_LIST, .u.l = ml });
		scope_set(&J, "add_generation_prompt", v_bool(add_generation_prompt));
		if (bos) scope_set(&J, "bos_token", v_cstr(bos));
		if (eos) scope_set(&J, "eos_token", v_cstr(eos));
		/* apply_chat_template passes these, None without tools or documents */
		scope_set(&J, "tools", v_none());
		scope_set(&J, "documents", v_none());
		exec_list(&J, prog, nstmt);
	}
	int rc = LM_OK;
	if (J.failed) {
		rc = lm_err("%s", J.err);
		free(J.out);
	} else {
		*out = J.out ? J.out : strdup("");
	}
	while (J.ar) {
		struct chunk *c = J.ar->next;
		free(J.ar);
		J.ar = c;
	}
	return rc;
}

int jinja_render(const char *tmpl, const struct chat_msg *msgs, int n, bool add_generation_prompt, const char *bos,
		 const char *eos, char **out)
{
	return render(tmpl, msgs, n, false, add_generation_prompt, bos, eos, out);
}

int jinja_render_parts(const char *tmpl, const struct chat_msg *msgs, int n, bool add_generation_prompt,
		       const char *bos, const char *eos, char **out)
{
	return render(tmpl, msgs, n, true, add_generation_prompt, bos, eos, out);
}
