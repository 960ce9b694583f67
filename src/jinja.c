/* jinja.c: a small Jinja interpreter for chat templates (see jinja.h).
 *
 * Three steps: the source is cut into text and tags, with Jinja's whitespace rules applied there
 * (trim_blocks, lstrip_blocks, '-' markers); the tags are parsed into a tree (statements, expressions);
 * the tree is evaluated against the context. Every value and node lives in one arena, freed at the end. */
#include "config.h"
#include "jinja.h"
#include "i18n.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A chat template comes with the model (tokenizer_config.json): a hostile or broken one must end in an error,
 * not in a stack overflow, an endless loop or all of memory. Real templates stay far below these. */
#define JINJA_MAX_DEPTH 100          /* nesting of expressions, blocks and values */
#define JINJA_MAX_ITEMS (1 << 20)    /* items of one list */
#define JINJA_MAX_STEPS (1 << 18)    /* loop iterations of one render */
#define JINJA_MAX_STR (32u << 20)    /* bytes of one string */
#define JINJA_MAX_ARENA (256u << 20) /* bytes of all values of one render */

/* ------------------------------------------------------------------ arena */

struct chunk {
	struct chunk *next;
	size_t used, cap;
	_Alignas(16) unsigned char data[];
};

struct jctx;
static void *ar_alloc(struct jctx *J, size_t n);

/* ------------------------------------------------------------------ values */

enum jt { J_UNDEF, J_NONE, J_BOOL, J_INT, J_FLOAT, J_STR, J_LIST, J_DICT };

struct jlist;
struct jdict;
struct jval {
	enum jt t;
	union {
		bool b;
		long long i;
		double f;
		struct { const char *p; size_t n; } s;
		struct jlist *l;
		struct jdict *d;
	} u;
};
struct jlist { int n, cap; struct jval *v; };
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

enum sk { S_TEXT, S_OUT, S_IF, S_FOR, S_SET };
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
	struct stmt **body, **else_body;
	int nb, ne;
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
	struct scope *sc;
	int depth;
	int nest;          /* parse, eval and value-traversal recursion, against JINJA_MAX_DEPTH */
	long steps;        /* loop iterations so far */
	size_t ar_total;   /* bytes in the arena */
};

static void jerr(struct jctx *J, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void *ar_alloc(struct jctx *J, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	J->ar_total += n;
	if (J->ar_total > JINJA_MAX_ARENA) /* evaluation stops at the next check of J->failed */
		jerr(J, _("chat template: needs more than %u MiB (a runaway loop?)"), JINJA_MAX_ARENA >> 20);
	if (!J->ar || J->ar->used + n > J->ar->cap) {
		size_t cap = n > 65536 ? n : 65536;
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

static void jerr(struct jctx *J, const char *fmt, ...)
{
	if (J->failed) return;
	J->failed = true;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(J->err, sizeof J->err, fmt, ap);
	va_end(ap);
}

/* One level deeper into a recursion; false (with the error) past JINJA_MAX_DEPTH. Pair with J->nest--. */
static bool deeper(struct jctx *J)
{
	if (++J->nest <= JINJA_MAX_DEPTH) return true;
	J->nest--;
	jerr(J, _("chat template: nested more than %d levels deep"), JINJA_MAX_DEPTH);
	return false;
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
		const char *e = strstr(s + b, close);
		if (!e) {
			jerr(J, _("chat template: unclosed '{%c' at offset %zu"), kind, tend);
			return;
		}
		size_t ie = (size_t)(e - s);
		bool rminus = ie > b && s[ie - 1] == '-';
		if (kind != '#') {
			if (J->ntags == cap) {
				struct tag *t = ar_alloc(J, sizeof *t * cap * 2);
				memcpy(t, J->tags, sizeof *t * cap);
				J->tags = t;
				cap *= 2;
			}
			J->tags[J->ntags++] = (struct tag){ kind == '{' ? T_EXPR : T_STMT, s + b, ie - b - (rminus ? 1 : 0) };
		}
		strip_next = rminus;
		trim_nl = kind != '{'; /* trim_blocks: the newline after a block or comment tag */
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
			*t = (struct tok){ K_NAME, p + i, j - i, 0 };
			i = j;
		} else if (isdigit((unsigned char)c)) {
			char *end;
			double v = strtod(p + i, &end);
			bool fl = false;
			for (const char *q = p + i; q < end; q++) fl |= *q == '.' || *q == 'e' || *q == 'E';
			*t = (struct tok){ fl ? K_FLOAT : K_INT, p + i, (size_t)(end - p - i), v };
			i = (size_t)(end - p);
		} else if (c == '\'' || c == '"') {
			char *buf = ar_alloc(J, n - i + 1);
			size_t k = 0, j = i + 1;
			while (j < n && p[j] != c) {
				if (p[j] == '\\' && j + 1 < n) {
					j++;
					char e = p[j];
					buf[k++] = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
				} else {
					buf[k++] = p[j];
				}
				j++;
			}
			if (j >= n) {
				jerr(J, _("chat template: unterminated string"));
				return;
			}
			*t = (struct tok){ K_STR, buf, k, 0 };
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
			*t = (struct tok){ K_OP, p + i, len, 0 };
			i += len;
		}
	}
	J->toks[J->ntoks] = (struct tok){ K_END, "", 0, 0 };
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
		if (t->k == K_INT && t->num < 9e18) { /* beyond long long: a float, as close as it gets */
			e->lit.t = J_INT;
			e->lit.u.i = (long long)t->num;
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
		e = parse_expr(J);
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
			struct expr *c = mk(J, E_CALL);
			c->a = e;
			parse_args(J, c, ")");
			e = c;
		} else {
			break;
		}
	}
	return e;
}

static struct expr *parse_filtered(struct jctx *J)
{
	struct expr *e = parse_postfix(J);
	while (!J->failed && accept_op(J, "|")) {
		struct expr *f = mk(J, E_FILTER);
		f->a = e;
		f->name = take_name(J);
		if (accept_op(J, "(")) parse_args(J, f, ")");
		e = f;
	}
	return e;
}

static struct expr *parse_unary(struct jctx *J)
{
	if (accept_op(J, "-")) {
		struct expr *u = mk(J, E_UNARY);
		u->name = "-";
		if (!deeper(J)) return mk(J, E_LIT);
		u->a = parse_unary(J);
		J->nest--;
		return u;
	}
	return parse_filtered(J);
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

static struct expr *parse_add(struct jctx *J)
{
	struct expr *e = parse_mul(J);
	for (;;) {
		if (accept_op(J, "+")) e = bin(J, "+", e, parse_mul(J));
		else if (accept_op(J, "-")) e = bin(J, "-", e, parse_mul(J));
		else if (accept_op(J, "~")) e = bin(J, "~", e, parse_mul(J));
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
		} else if (accept_name(J, "is")) {
			struct expr *t = mk(J, E_TEST);
			t->neg = accept_name(J, "not");
			t->a = e;
			t->name = take_name(J);
			if (accept_op(J, "(")) parse_args(J, t, ")");
			else if (peek(J)->k == K_STR || peek(J)->k == K_INT) { /* "is divisibleby 3", "is equalto 'x'" */
				t->args = ar_alloc(J, sizeof *t->args);
				t->args[0] = parse_primary(J);
				t->nargs = 1;
			}
			e = t;
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
		if (!deeper(J)) return mk(J, E_LIT);
		u->a = parse_not(J);
		J->nest--;
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
	if (!deeper(J)) return mk(J, E_LIT);
	struct expr *e = parse_or(J);
	if (accept_name(J, "if")) {
		struct expr *c = mk(J, E_COND);
		c->a = e;
		c->b = parse_or(J);
		c->c = accept_name(J, "else") ? parse_expr(J) : NULL;
		e = c;
	}
	J->nest--;
	return e;
}

/* ------------------------------------------------------------------ statements */

/* Parse statements until a tag whose first word is one of `ends` (left unconsumed, name in *which). */
static struct stmt **parse_block(struct jctx *J, const char *const *ends, int *count, const char **which)
{
	int cap = 16, n = 0;
	struct stmt **list = ar_alloc(J, sizeof *list * cap);
	*which = NULL;
	*count = 0;
	if (!deeper(J)) return list;
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
					J->nest--;
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
				static const char *const e_for[] = { "else", "endfor", NULL };
				const char *which2;
				s->body = parse_block(J, e_for, &s->nb, &which2);
				if (which2 && strcmp(which2, "else") == 0) {
					J->ti++;
					static const char *const e_end[] = { "endfor", NULL };
					s->else_body = parse_block(J, e_end, &s->ne, &which2);
				}
				if (!which2) jerr(J, _("chat template: {%% for %%} without {%% endfor %%}"));
				J->ti++;
			} else if (tok_is(w, K_NAME, "set")) {
				s->k = S_SET;
				s->var = take_name(J);
				if (accept_op(J, ".")) s->var2 = take_name(J);
				expect_op(J, "=");
				s->e = parse_expr(J);
			} else if (tok_is(w, K_NAME, "generation") || tok_is(w, K_NAME, "endgeneration")) {
				continue; /* transformers' assistant-mask markers: no output */
			} else {
				jerr(J, _("chat template: unsupported tag '{%% %.*s %%}'"), (int)w->n, w->p);
				break;
			}
			if (s->k != S_IF && s->k != S_FOR && peek(J)->k != K_END)
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
	J->nest--;
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
	if (l->n >= JINJA_MAX_ITEMS) {
		jerr(J, _("chat template: a list of more than %d items"), JINJA_MAX_ITEMS);
		return;
	}
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
	}
	return false;
}

static struct jval lookup(struct jctx *J, const char *name)
{
	for (struct scope *s = J->sc; s; s = s->up)
		for (int i = s->n - 1; i >= 0; i--)
			if (strcmp(s->k[i], name) == 0) return s->v[i];
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
	if (b->n + n > JINJA_MAX_STR) {
		jerr(b->J, _("chat template: a string of more than %u MiB"), JINJA_MAX_STR >> 20);
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

static void to_json(struct sbuf *b, struct jval v);
static void to_text(struct sbuf *b, struct jval v)
{
	char num[64];
	switch (v.t) {
	case J_UNDEF: break;
	case J_NONE: sb_str(b, "None"); break;
	case J_BOOL: sb_str(b, v.u.b ? "True" : "False"); break;
	case J_INT: snprintf(num, sizeof num, "%lld", v.u.i); sb_str(b, num); break;
	case J_FLOAT: snprintf(num, sizeof num, "%g", v.u.f); sb_str(b, num); break;
	case J_STR: sb_put(b, v.u.s.p, v.u.s.n); break;
	default: to_json(b, v); break; /* lists and dicts: close enough to Python's repr for templates */
	}
}

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
		else if (c < 0x20) { snprintf(e, sizeof e, "\\u%04x", c); sb_str(b, e); }
		else sb_put(b, (const char *)&c, 1);
	}
	sb_str(b, "\"");
}

static void to_json(struct sbuf *b, struct jval v)
{
	if ((v.t == J_LIST || v.t == J_DICT) && !deeper(b->J)) return; /* also a list that holds itself */
	switch (v.t) {
	case J_UNDEF: case J_NONE: sb_str(b, "null"); break;
	case J_BOOL: sb_str(b, v.u.b ? "true" : "false"); break;
	case J_STR: json_str(b, v.u.s.p, v.u.s.n); break;
	case J_LIST:
		sb_str(b, "[");
		for (int i = 0; i < v.u.l->n; i++) {
			if (i) sb_str(b, ", ");
			to_json(b, v.u.l->v[i]);
		}
		sb_str(b, "]");
		break;
	case J_DICT:
		sb_str(b, "{");
		for (int i = 0; i < v.u.d->n; i++) {
			if (i) sb_str(b, ", ");
			json_str(b, v.u.d->k[i], strlen(v.u.d->k[i]));
			sb_str(b, ": ");
			to_json(b, v.u.d->v[i]);
		}
		sb_str(b, "}");
		break;
	default: to_text(b, v); break;
	}
	if (v.t == J_LIST || v.t == J_DICT) b->J->nest--;
}

static struct jval as_str(struct jctx *J, struct jval v)
{
	if (v.t == J_STR) return v;
	struct sbuf b = { .J = J };
	to_text(&b, v);
	return v_str(b.p ? b.p : "", b.n);
}

static bool equal_at(struct jval a, struct jval b, int depth)
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
		if (depth >= JINJA_MAX_DEPTH) return a.u.l == b.u.l; /* deeper (or a list that holds itself): identity */
		for (int i = 0; i < a.u.l->n; i++)
			if (!equal_at(a.u.l->v[i], b.u.l->v[i], depth + 1)) return false;
		return true;
	}
	return a.u.d == b.u.d;
}
static bool equal(struct jval a, struct jval b) { return equal_at(a, b, 0); }

static struct jval eval(struct jctx *J, struct expr *e);

static double num(struct jval v) { return v.t == J_INT ? (double)v.u.i : v.t == J_FLOAT ? v.u.f : v.t == J_BOOL ? v.u.b : 0; }

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
		const char *p = obj.u.s.p;
		size_t n = obj.u.s.n;
		if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
			struct jval x = na ? as_str(J, a[0]) : v_cstr("");
			if (x.u.s.n > n) return v_bool(false);
			const char *at = !strcmp(m, "startswith") ? p : p + n - x.u.s.n;
			return v_bool(memcmp(at, x.u.s.p, x.u.s.n) == 0);
		}
		if (!strcmp(m, "strip")) return strip_chars(obj, na ? a[0] : v_none(), true, true);
		if (!strcmp(m, "lstrip")) return strip_chars(obj, na ? a[0] : v_none(), true, false);
		if (!strcmp(m, "rstrip")) return strip_chars(obj, na ? a[0] : v_none(), false, true);
		if (!strcmp(m, "upper") || !strcmp(m, "lower")) {
			char *q = ar_strndup(J, p, n);
			for (size_t i = 0; i < n; i++) q[i] = (char)(m[0] == 'u' ? toupper((unsigned char)q[i]) : tolower((unsigned char)q[i]));
			return v_str(q, n);
		}
		if (!strcmp(m, "split")) {
			struct jlist *l = list_new(J, 4);
			if (na && a[0].t == J_STR && a[0].u.s.n) {
				const char *sep = a[0].u.s.p;
				size_t sn = a[0].u.s.n, i = 0, st = 0;
				while (i + sn <= n) {
					if (memcmp(p + i, sep, sn) == 0) {
						list_push(J, l, v_str(p + st, i - st));
						i += sn;
						st = i;
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
			struct jval f = as_str(J, a[0]), t = as_str(J, a[1]);
			struct sbuf b = { .J = J };
			size_t i = 0;
			while (i < n) {
				if (f.u.s.n && i + f.u.s.n <= n && memcmp(p + i, f.u.s.p, f.u.s.n) == 0) {
					sb_put(&b, t.u.s.p, t.u.s.n);
					i += f.u.s.n;
				} else {
					sb_put(&b, p + i, 1);
					i++;
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
					list_push(J, pair, k);
					list_push(J, pair, obj.u.d->v[i]);
					list_push(J, l, (struct jval){ .t = J_LIST, .u.l = pair });
				} else {
					list_push(J, l, m[0] == 'k' ? k : obj.u.d->v[i]);
				}
			}
			return (struct jval){ .t = J_LIST, .u.l = l };
		}
	} else if (obj.t == J_LIST && !strcmp(m, "append") && na) {
		list_push(J, obj.u.l, a[0]);
		return v_none();
	}
	jerr(J, _("chat template: unsupported method '%s'"), m);
	return v_undef();
}

static struct jval filter(struct jctx *J, const char *f, struct jval v, struct jval *a, int na)
{
	if (!strcmp(f, "length") || !strcmp(f, "count")) {
		return v_int(v.t == J_STR ? (long long)v.u.s.n : v.t == J_LIST ? v.u.l->n : v.t == J_DICT ? v.u.d->n : 0);
	}
	if (!strcmp(f, "trim")) return v.t == J_STR ? strip_chars(v, v_none(), true, true) : v;
	if (!strcmp(f, "string")) return as_str(J, v);
	if (!strcmp(f, "safe") || !strcmp(f, "e") || !strcmp(f, "escape")) return v; /* no autoescape in chat */
	if (!strcmp(f, "upper") || !strcmp(f, "lower")) return call_method(J, as_str(J, v), f, NULL, 0);
	if (!strcmp(f, "tojson")) {
		struct sbuf b = { .J = J };
		to_json(&b, v);
		return v_str(b.p ? b.p : "", b.n);
	}
	if (!strcmp(f, "default") || !strcmp(f, "d")) return v.t == J_UNDEF ? (na ? a[0] : v_cstr("")) : v;
	if (!strcmp(f, "int")) return v.t == J_STR ? v_int(atoll(ar_strndup(J, v.u.s.p, v.u.s.n))) : v_int((long long)num(v));
	if (!strcmp(f, "first") || !strcmp(f, "last")) {
		if (v.t == J_LIST && v.u.l->n) return v.u.l->v[f[0] == 'f' ? 0 : v.u.l->n - 1];
		if (v.t == J_STR && v.u.s.n) return v_str(v.u.s.p + (f[0] == 'f' ? 0 : v.u.s.n - 1), 1);
		return v_undef();
	}
	if (!strcmp(f, "join") && v.t == J_LIST) {
		struct sbuf b = { .J = J };
		struct jval sep = na ? as_str(J, a[0]) : v_cstr("");
		for (int i = 0; i < v.u.l->n; i++) {
			if (i) sb_put(&b, sep.u.s.p, sep.u.s.n);
			to_text(&b, v.u.l->v[i]);
		}
		return v_str(b.p ? b.p : "", b.n);
	}
	if ((!strcmp(f, "list") || !strcmp(f, "reverse")) && v.t == J_LIST) {
		struct jlist *l = list_new(J, v.u.l->n);
		for (int i = 0; i < v.u.l->n; i++) list_push(J, l, v.u.l->v[f[0] == 'r' ? v.u.l->n - 1 - i : i]);
		return (struct jval){ .t = J_LIST, .u.l = l };
	}
	if (!strcmp(f, "items") && v.t == J_DICT) return call_method(J, v, "items", NULL, 0);
	jerr(J, _("chat template: unsupported filter '%s'"), f);
	return v_undef();
}

static bool test(struct jctx *J, const char *t, struct jval v, struct jval *a, int na)
{
	if (!strcmp(t, "defined")) return v.t != J_UNDEF;
	if (!strcmp(t, "undefined")) return v.t == J_UNDEF;
	if (!strcmp(t, "none")) return v.t == J_NONE;
	if (!strcmp(t, "string")) return v.t == J_STR;
	if (!strcmp(t, "number")) return v.t == J_INT || v.t == J_FLOAT;
	if (!strcmp(t, "integer")) return v.t == J_INT;
	if (!strcmp(t, "boolean")) return v.t == J_BOOL;
	if (!strcmp(t, "true")) return v.t == J_BOOL && v.u.b;
	if (!strcmp(t, "false")) return v.t == J_BOOL && !v.u.b;
	if (!strcmp(t, "mapping")) return v.t == J_DICT;
	if (!strcmp(t, "sequence") || !strcmp(t, "iterable")) return v.t == J_LIST || v.t == J_STR || v.t == J_DICT;
	if (!strcmp(t, "equalto") || !strcmp(t, "eq") || !strcmp(t, "sameas")) return na && equal(v, a[0]);
	if (!strcmp(t, "odd") || !strcmp(t, "even")) return v.t == J_INT && (v.u.i % 2 != 0) == (t[0] == 'o');
	if (!strcmp(t, "divisibleby")) return na && v.t == J_INT && num(a[0]) != 0 && v.u.i % (long long)num(a[0]) == 0;
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
	if (o.t == J_STR && k.t == J_INT) {
		long long i = norm_index(k.u.i, (long long)o.u.s.n);
		return i >= 0 && i < (long long)o.u.s.n ? v_str(o.u.s.p + i, 1) : v_undef();
	}
	if (o.t == J_DICT && k.t == J_STR) {
		struct jval *v = dict_get(o.u.d, k.u.s.p, k.u.s.n);
		return v ? *v : v_undef();
	}
	return v_undef();
}

static struct jval eval_node(struct jctx *J, struct expr *e);

static struct jval eval(struct jctx *J, struct expr *e)
{
	if (J->failed || !deeper(J)) return v_undef();
	struct jval v = eval_node(J, e);
	J->nest--;
	return v;
}

/* a number as an integer, clamped far inside long long (range bounds, repetition counts) */
static long long clamp_ll(double x)
{
	return x != x ? 0 : x > 4e18 ? (long long)4e18 : x < -4e18 ? (long long)-4e18 : (long long)x;
}

static struct jval eval_node(struct jctx *J, struct expr *e)
{
	switch (e->k) {
	case E_LIT: return e->lit;
	case E_NAME: return lookup(J, e->name);
	case E_LIST: {
		struct jlist *l = list_new(J, e->nargs);
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
		long long n = o.t == J_LIST ? o.u.l->n : o.t == J_STR ? (long long)o.u.s.n : 0;
		long long st = e->d ? (long long)num(eval(J, e->d)) : 1;
		if (st == 0) {
			jerr(J, _("chat template: slice step 0"));
			return v_undef();
		}
		long long lo, hi;
		if (st > 0) {
			lo = e->b ? norm_index((long long)num(eval(J, e->b)), n) : 0;
			hi = e->c ? norm_index((long long)num(eval(J, e->c)), n) : n;
			lo = lo < 0 ? 0 : lo > n ? n : lo;
			hi = hi < 0 ? 0 : hi > n ? n : hi;
		} else {
			lo = e->b ? norm_index((long long)num(eval(J, e->b)), n) : n - 1;
			hi = e->c ? norm_index((long long)num(eval(J, e->c)), n) : -1;
			lo = lo < -1 ? -1 : lo > n - 1 ? n - 1 : lo;
			hi = hi < -1 ? -1 : hi > n - 1 ? n - 1 : hi;
		}
		if (o.t == J_LIST) {
			struct jlist *l = list_new(J, 4);
			for (long long i = lo; st > 0 ? i < hi : i > hi; i += st) list_push(J, l, o.u.l->v[i]);
			return (struct jval){ .t = J_LIST, .u.l = l };
		}
		if (o.t == J_STR) {
			struct sbuf b = { .J = J };
			for (long long i = lo; st > 0 ? i < hi : i > hi; i += st) sb_put(&b, o.u.s.p + i, 1);
			return v_str(b.p ? b.p : "", b.n);
		}
		return v_undef();
	}
	case E_CALL: {
		struct jval a[8];
		for (int i = 0; i < e->nargs && i < 8; i++) a[i] = eval(J, e->args[i]);
		if (e->a->k == E_ATTR) return call_method(J, eval(J, e->a->a), e->a->name, a, e->nargs);
		if (e->a->k == E_NAME) {
			const char *f = e->a->name;
			if (!strcmp(f, "namespace")) {
				struct jdict *d = dict_new(J);
				d->ns = true;
				for (int i = 0; i < e->nargs; i++)
					if (e->kw[i]) dict_set(J, d, e->kw[i], a[i]);
				return (struct jval){ .t = J_DICT, .u.d = d };
			}
			if (!strcmp(f, "range")) {
				long long lo = 0, hi = e->nargs ? clamp_ll(num(a[0])) : 0, st = 1;
				if (e->nargs >= 2) {
					lo = hi;
					hi = clamp_ll(num(a[1]));
				}
				if (e->nargs >= 3) st = clamp_ll(num(a[2]));
				if (st == 0) {
					jerr(J, _("chat template: range() with a step of 0"));
					return v_undef();
				}
				struct jlist *l = list_new(J, 4);
				for (long long i = lo; (st > 0 ? i < hi : i > hi) && !J->failed; i += st) list_push(J, l, v_int(i));
				return (struct jval){ .t = J_LIST, .u.l = l };
			}
			if (!strcmp(f, "raise_exception")) {
				struct jval m = e->nargs ? as_str(J, a[0]) : v_cstr("");
				jerr(J, _("chat template: %.*s"), (int)m.u.s.n, m.u.s.p);
				return v_undef();
			}
			if (!strcmp(f, "strftime_now")) return v_cstr("");
		}
		jerr(J, _("chat template: unsupported call"));
		return v_undef();
	}
	case E_FILTER: {
		struct jval a[8];
		for (int i = 0; i < e->nargs && i < 8; i++) a[i] = eval(J, e->args[i]);
		return filter(J, e->name, eval(J, e->a), a, e->nargs);
	}
	case E_TEST: {
		struct jval a[8];
		for (int i = 0; i < e->nargs && i < 8; i++) a[i] = eval(J, e->args[i]);
		return v_bool(test(J, e->name, eval(J, e->a), a, e->nargs) != e->neg);
	}
	case E_UNARY: {
		struct jval v = eval(J, e->a);
		if (!strcmp(e->name, "not")) return v_bool(!truthy(v));
		if (v.t == J_INT && v.u.i == LLONG_MIN) return (struct jval){ .t = J_FLOAT, .u.f = -(double)v.u.i };
		return v.t == J_FLOAT ? (struct jval){ .t = J_FLOAT, .u.f = -v.u.f } : v.t == J_INT ? v_int(-v.u.i) : v_int(-clamp_ll(num(v)));
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
		if (!strcmp(op, "~") || (!strcmp(op, "+") && (a.t == J_STR || b.t == J_STR))) {
			if (!strcmp(op, "+") && (a.t != J_STR || b.t != J_STR) && !(a.t == J_UNDEF || b.t == J_UNDEF)) {
				jerr(J, _("chat template: cannot add a string and a non-string"));
				return v_undef();
			}
			struct jval x = as_str(J, a), y = as_str(J, b);
			if (x.u.s.n + y.u.s.n > JINJA_MAX_STR) {
				jerr(J, _("chat template: a string of more than %u MiB"), JINJA_MAX_STR >> 20);
				return v_undef();
			}
			char *p = ar_alloc(J, x.u.s.n + y.u.s.n + 1);
			memcpy(p, x.u.s.p, x.u.s.n);
			memcpy(p + x.u.s.n, y.u.s.p, y.u.s.n);
			return v_str(p, x.u.s.n + y.u.s.n);
		}
		if (!strcmp(op, "+") && a.t == J_LIST && b.t == J_LIST) {
			if (a.u.l->n + b.u.l->n > JINJA_MAX_ITEMS) {
				jerr(J, _("chat template: a list of more than %d items"), JINJA_MAX_ITEMS);
				return v_undef();
			}
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
				struct jval x = as_str(J, a);
				r = x.u.s.n == 0 || (x.u.s.n <= b.u.s.n && memmem(b.u.s.p, b.u.s.n, x.u.s.p, x.u.s.n));
			} else if (b.t == J_LIST) {
				for (int i = 0; i < b.u.l->n && !r; i++) r = equal(a, b.u.l->v[i]);
			} else if (b.t == J_DICT && a.t == J_STR) {
				r = dict_get(b.u.d, a.u.s.p, a.u.s.n) != NULL;
			}
			return v_bool(r == !strcmp(op, "in"));
		}
		if (a.t == J_STR && b.t == J_STR && strchr("<>", op[0])) {
			size_t m = MIN(a.u.s.n, b.u.s.n);
			int c = memcmp(a.u.s.p, b.u.s.p, m);
			if (!c) c = (a.u.s.n > b.u.s.n) - (a.u.s.n < b.u.s.n);
			return v_bool(!strcmp(op, "<") ? c < 0 : !strcmp(op, ">") ? c > 0 : !strcmp(op, "<=") ? c <= 0 : c >= 0);
		}
		double x = num(a), y = num(b);
		bool ints = a.t != J_FLOAT && b.t != J_FLOAT;
		if (!strcmp(op, "<")) return v_bool(x < y);
		if (!strcmp(op, ">")) return v_bool(x > y);
		if (!strcmp(op, "<=")) return v_bool(x <= y);
		if (!strcmp(op, ">=")) return v_bool(x >= y);
		/* integers as integers; where the result would not fit (Python's would grow), a float */
		long long xi = clamp_ll(x), yi = clamp_ll(y), r;
		if (a.t == J_INT) xi = a.u.i;
		if (b.t == J_INT) yi = b.u.i;
		if (!strcmp(op, "+"))
			return ints && !__builtin_add_overflow(xi, yi, &r) ? v_int(r) : (struct jval){ .t = J_FLOAT, .u.f = x + y };
		if (!strcmp(op, "-"))
			return ints && !__builtin_sub_overflow(xi, yi, &r) ? v_int(r) : (struct jval){ .t = J_FLOAT, .u.f = x - y };
		if (!strcmp(op, "*")) {
			if (a.t == J_STR && b.t == J_INT) {
				struct sbuf sb = { .J = J };
				for (long long i = 0; i < b.u.i && !J->failed; i++) sb_put(&sb, a.u.s.p, a.u.s.n);
				return v_str(sb.p ? sb.p : "", sb.n);
			}
			return ints && !__builtin_mul_overflow(xi, yi, &r) ? v_int(r) : (struct jval){ .t = J_FLOAT, .u.f = x * y };
		}
		if (y == 0) {
			jerr(J, _("chat template: division by zero"));
			return v_undef();
		}
		if (!strcmp(op, "/")) return (struct jval){ .t = J_FLOAT, .u.f = x / y };
		if (!strcmp(op, "//")) return v_int(clamp_ll(floor(x / y)));
		if (!strcmp(op, "%")) {
			if (!ints) return (struct jval){ .t = J_FLOAT, .u.f = x - y * floor(x / y) };
			if (yi == -1) return v_int(0); /* LLONG_MIN % -1 traps */
			long long m = xi % yi;
			return v_int(m && (m < 0) != (yi < 0) ? m + yi : m); /* Python's sign: the divisor's */
		}
		return v_undef();
	}
	}
	return v_undef();
}

static void out_put(struct jctx *J, const char *s, size_t n)
{
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
	case S_SET: {
		struct jval v = eval(J, s->e);
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
			items = list_new(J, (int)it.u.s.n);
			for (size_t i = 0; i < it.u.s.n; i++) list_push(J, items, v_str(it.u.s.p + i, 1));
		} else {
			items = list_new(J, 1);
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
		for (int i = 0; i < pass->n && !J->failed; i++) {
			if (++J->steps > JINJA_MAX_STEPS) {
				jerr(J, _("chat template: more than %d loop iterations"), JINJA_MAX_STEPS);
				break;
			}
			sc.n = 0; /* a fresh scope per iteration, as Jinja's */
			struct jval x = pass->v[i];
			if (s->var2) {
				scope_set(J, s->var, x.t == J_LIST && x.u.l->n > 0 ? x.u.l->v[0] : v_undef());
				scope_set(J, s->var2, x.t == J_LIST && x.u.l->n > 1 ? x.u.l->v[1] : v_undef());
			} else {
				scope_set(J, s->var, x);
			}
			struct jdict *loop = dict_new(J);
			dict_set(J, loop, "index0", v_int(i));
			dict_set(J, loop, "index", v_int(i + 1));
			dict_set(J, loop, "revindex0", v_int(pass->n - 1 - i));
			dict_set(J, loop, "revindex", v_int(pass->n - i));
			dict_set(J, loop, "first", v_bool(i == 0));
			dict_set(J, loop, "last", v_bool(i == pass->n - 1));
			dict_set(J, loop, "length", v_int(pass->n));
			dict_set(J, loop, "previtem", i > 0 ? pass->v[i - 1] : v_undef());
			dict_set(J, loop, "nextitem", i + 1 < pass->n ? pass->v[i + 1] : v_undef());
			scope_set(J, "loop", (struct jval){ .t = J_DICT, .u.d = loop });
			exec_list(J, s->body, s->nb);
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
	for (int i = 0; i < n && !J->failed; i++) exec(J, l[i]);
}

int jinja_render(const char *tmpl, const struct chat_msg *msgs, int n, bool add_generation_prompt, const char *bos,
		 const char *eos, char **out)
{
	struct jctx J;
	memset(&J, 0, sizeof J);
	*out = NULL;
	cut_tags(&J, tmpl);
	int nstmt = 0;
	const char *which = NULL;
	struct stmt **prog = J.failed ? NULL : parse_block(&J, NULL, &nstmt, &which);
	struct scope global = { 0 };
	J.sc = &global;
	if (!J.failed) {
		struct jlist *ml = list_new(&J, n);
		for (int i = 0; i < n; i++) {
			struct jdict *d = dict_new(&J);
			dict_set(&J, d, "role", v_cstr(msgs[i].role));
			dict_set(&J, d, "content", v_cstr(msgs[i].content));
			list_push(&J, ml, (struct jval){ .t = J_DICT, .u.d = d });
		}
		scope_set(&J, "messages", (struct jval){ .t = J_LIST, .u.l = ml });
		scope_set(&J, "add_generation_prompt", v_bool(add_generation_prompt));
		if (bos) scope_set(&J, "bos_token", v_cstr(bos));
		if (eos) scope_set(&J, "eos_token", v_cstr(eos));
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
