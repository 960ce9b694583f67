/* sampler.c: next-token sampling on the host, in the order transformers applies its logits processors:
 * repetition penalty, temperature, top-k, top-p, min-p, then a draw from the renormalized distribution.
 * temperature 0 is greedy (argmax after the penalty). The generator is splitmix64 seeded with the seed, so a
 * seed reproduces a reply exactly. */
#include "config.h"
#include "sampler.h"
#include "i18n.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cand {
	float logit;
	int32_t id;
};

struct sampler {
	int vocab;
	struct sampling p;
	uint64_t rng;
	struct cand *c;    /* [vocab] candidates */
	uint32_t *seen;    /* [vocab] stamp of the last call that penalized the id (apply once per id) */
	uint32_t stamp;
};

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double rng_uniform(struct sampler *s) /* [0, 1) with 53 random bits */
{
	return (splitmix64(&s->rng) >> 11) * (1.0 / 9007199254740992.0);
}

int sampler_init(struct sampler **out, int vocab, const struct sampling *p)
{
	struct sampler *s = calloc(1, sizeof *s);
	if (!s || vocab <= 0) {
		free(s);
		return lm_err(_("sampler: cannot allocate for a vocabulary of %d"), vocab);
	}
	s->vocab = vocab;
	s->c = malloc(sizeof *s->c * vocab);
	s->seen = calloc(vocab, sizeof *s->seen);
	if (!s->c || !s->seen) {
		sampler_free(s);
		return lm_err(_("sampler: out of memory"));
	}
	sampler_set(s, p);
	*out = s;
	return LM_OK;
}

void sampler_set(struct sampler *s, const struct sampling *p)
{
	s->p = *p;
	s->rng = p->seed;
}

void sampler_free(struct sampler *s)
{
	if (!s) return;
	free(s->c);
	free(s->seen);
	free(s);
}

static int cmp_cand_desc(const void *a, const void *b)
{
	float x = ((const struct cand *)a)->logit, y = ((const struct cand *)b)->logit;
	if (x != y) return x > y ? -1 : 1;
	int32_t i = ((const struct cand *)a)->id, j = ((const struct cand *)b)->id;
	return (i > j) - (i < j); /* ties: lower id first, so results do not depend on qsort's order */
}

/* Move the k largest candidates to c[0..k) (unordered), quickselect. */
static void select_top(struct cand *c, int n, int k)
{
	int lo = 0, hi = n - 1;
	while (lo < hi) {
		struct cand pivot = c[(lo + hi) / 2];
		int i = lo, j = hi;
		while (i <= j) {
			while (cmp_cand_desc(&c[i], &pivot) < 0) i++;
			while (cmp_cand_desc(&c[j], &pivot) > 0) j--;
			if (i <= j) {
				struct cand t = c[i];
				c[i] = c[j];
				c[j] = t;
				i++;
				j--;
			}
		}
		if (k - 1 <= j) hi = j;
		else if (k - 1 >= i) lo = i;
		else break;
	}
}

static bool is_greedy(const struct sampling *p)
{
	return p->temperature <= 0 || p->top_k == 1;
}

int32_t sampler_sample(struct sampler *s, float *logits, const int32_t *history, int n_history)
{
	/* the uniform only where there is a draw, so a seed's stream is the same whatever greedy steps came */
	return sampler_sample_u(s, logits, history, n_history, is_greedy(&s->p) ? 0 : rng_uniform(s));
}

void sampler_args(struct sampler *s, const int32_t *history, int n_history, struct sample_args *a)
{
	const struct sampling *p = &s->p;
	*a = (struct sample_args){ .temperature = p->temperature, .top_p = p->top_p, .top_k = p->top_k,
				   .min_p = p->min_p, .repetition_penalty = p->repetition_penalty, .history = history,
				   .n_history = n_history, .vocab = s->vocab };
	if (!is_greedy(p)) a->u = rng_uniform(s);
}

int32_t sampler_sample_u(struct sampler *s, float *logits, const int32_t *history, int n_history, double u)
{
	const struct sampling *p = &s->p;
	int V = s->vocab;

	/* repetition penalty (CTRL paper, as transformers): each id seen in the context once */
	if (p->repetition_penalty > 0 && p->repetition_penalty != 1.0f && n_history > 0) {
		if (++s->stamp == 0) { /* wrapped: clear the stamps */
			memset(s->seen, 0, sizeof *s->seen * V);
			s->stamp = 1;
		}
		for (int i = 0; i < n_history; i++) {
			int32_t id = history[i];
			if (id < 0 || id >= V || s->seen[id] == s->stamp) continue;
			s->seen[id] = s->stamp;
			float *l = &logits[id];
			*l = *l > 0 ? *l / p->repetition_penalty : *l * p->repetition_penalty;
		}
	}

	/* greedy */
	if (is_greedy(p)) {
		int32_t best = 0;
		for (int i = 1; i < V; i++)
			if (logits[i] > logits[best]) best = i;
		return best;
	}

	/* temperature; keep only candidates that can matter: exp(-40) relative to the best is below any
	 * probability a float sum can register, so dropping them changes nothing but the sort's cost */
	float mx = -INFINITY;
	for (int i = 0; i < V; i++)
		if (logits[i] > mx) mx = logits[i];
	float inv_t = 1.0f / p->temperature, floor_l = mx - 40.0f * p->temperature;
	int n = 0;
	for (int i = 0; i < V; i++)
		if (logits[i] >= floor_l && !isnan(logits[i])) s->c[n++] = (struct cand){ logits[i] * inv_t, i };
	if (n == 0) return 0;

	/* top-k */
	if (p->top_k > 0 && p->top_k < n) {
		select_top(s->c, n, p->top_k);
		n = p->top_k;
	}
	qsort(s->c, n, sizeof *s->c, cmp_cand_desc);

	/* softmax (in double) over the survivors */
	double sum = 0, top = s->c[0].logit;
	double *pr = malloc(sizeof *pr * n);
	if (!pr) return s->c[0].id;
	for (int i = 0; i < n; i++) sum += pr[i] = exp(s->c[i].logit - top);
	for (int i = 0; i < n; i++) pr[i] /= sum;

	/* top-p: the smallest prefix whose mass reaches top_p (at least one) */
	if (p->top_p > 0 && p->top_p < 1) {
		double acc = 0;
		int keep = n;
		for (int i = 0; i < n; i++) {
			acc += pr[i];
			if (acc >= p->top_p) {
				keep = i + 1;
				break;
			}
		}
		n = keep;
	}
	/* min-p: drop tokens below min_p times the most likely one */
	if (p->min_p > 0) {
		int keep = 1;
		while (keep < n && pr[keep] >= p->min_p * pr[0]) keep++;
		n = keep;
	}

	double mass = 0;
	for (int i = 0; i < n; i++) mass += pr[i];
	double acc = 0;
	u *= mass;
	int32_t id = s->c[n - 1].id;
	for (int i = 0; i < n; i++) {
		acc += pr[i];
		if (u < acc) {
			id = s->c[i].id;
			break;
		}
	}
	free(pr);
	return id;
}

int sampler_pick(const struct sample_args *a, float *logits, int vocab, int32_t *token)
{
	struct sampling p = { .temperature = a->temperature, .top_p = a->top_p, .top_k = a->top_k, .min_p = a->min_p,
			      .repetition_penalty = a->repetition_penalty };
	struct sampler *s;
	if (sampler_init(&s, vocab, &p) != LM_OK) return LM_ERR;
	*token = sampler_sample_u(s, logits, a->history, a->n_history, a->u);
	sampler_free(s);
	return LM_OK;
}

bool sampler_on_device(const struct backend *be)
{
	static int host = -1; /* LMTERM_HOST_SAMPLING=1: the host sampler even where the backend has the op */
	if (host < 0) {
		const char *e = getenv("LMTERM_HOST_SAMPLING");
		host = e && *e && strcmp(e, "0") != 0;
	}
	return be->i->sample && !host;
}

int sampler_sample_device(struct sampler *s, struct backend *be, const void *h, const struct weight *lm_head,
			  const int32_t *history, int n_history, int32_t *token)
{
	struct sample_args a;
	sampler_args(s, history, n_history, &a);
	return be->i->sample(be, token, h, lm_head, &a);
}

/* One sampling field of generation_config.json: absent or null (unset, as transformers writes it) leaves *v
 * alone and returns false; a number within [lo, hi] (lo excluded where lo_open) is stored and returns true;
 * anything else returns false and adds "key value (why)" to the ignored list. */
static bool gen_num(const cJSON *o, const char *key, double lo, bool lo_open, double hi, double *v, char *ign,
		    size_t ign_len)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!j || cJSON_IsNull(j)) return false;
	char what[96];
	if (!cJSON_IsNumber(j)) {
		char *txt = cJSON_PrintUnformatted(j);
		snprintf(what, sizeof what, _("%s %.24s (not a number)"), key, txt ? txt : "?");
		free(txt);
	} else if (isnan(j->valuedouble) || j->valuedouble < lo || (lo_open && j->valuedouble == lo) ||
		   j->valuedouble > hi) {
		char range[48];
		if (hi >= 1e300)
			snprintf(range, sizeof range, "%s %g", lo_open ? ">" : ">=", lo);
		else
			snprintf(range, sizeof range, "%c%g, %g]", lo_open ? '(' : '[', lo, hi);
		snprintf(what, sizeof what, _("%s %g (must be %s)"), key, j->valuedouble, range);
	} else {
		*v = j->valuedouble;
		return true;
	}
	size_t used = strlen(ign);
	snprintf(ign + used, ign_len - used, "%s%s", used ? C_("list separator|, ") : "", what);
	return false;
}

int sampling_from_generation_config(struct sampling *p, const char *model_dir, char *warn, size_t warn_len)
{
	if (warn_len) warn[0] = 0;
	char path[4200];
	path_join(path, sizeof path, model_dir, "generation_config.json");
	if (!file_exists(path)) return LM_OK;
	char *buf;
	size_t len;
	if (read_file(path, &buf, &len) != LM_OK) return LM_ERR;
	cJSON *o = cJSON_ParseWithLength(buf, len);
	free(buf);
	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		return lm_err(_("%s: not a JSON object"), path);
	}
	/* The ranges are the command line's (chat's options). A value outside them is ignored, and the caller
	 * says so (a silent default hid a typo such as "top_p": 90); counts beyond int are clamped (converting
	 * 1e30 to int is undefined and gave INT_MIN, a negative max_new_tokens). */
	char ign[512] = "";
	const double inf = 1e308;
	double v;
	if (gen_num(o, "temperature", 0, false, 100, &v, ign, sizeof ign)) p->temperature = (float)v;
	if (gen_num(o, "top_p", 0, true, 1, &v, ign, sizeof ign)) p->top_p = (float)v;
	if (gen_num(o, "top_k", 0, false, inf, &v, ign, sizeof ign)) p->top_k = v < INT_MAX ? (int)v : INT_MAX;
	if (gen_num(o, "min_p", 0, false, 1, &v, ign, sizeof ign)) p->min_p = (float)v;
	if (gen_num(o, "repetition_penalty", 0.01, false, 100, &v, ign, sizeof ign)) p->repetition_penalty = (float)v;
	if (gen_num(o, "max_new_tokens", 1, false, inf, &v, ign, sizeof ign))
		p->max_new_tokens = v < INT_MAX ? (int)v : INT_MAX;
	/* do_sample false means greedy in transformers, whatever the temperature says */
	const cJSON *ds = cJSON_GetObjectItemCaseSensitive(o, "do_sample");
	if (cJSON_IsBool(ds) && !cJSON_IsTrue(ds)) p->temperature = 0;
	if (ign[0] && warn_len)
		snprintf(warn, warn_len, _("%s: ignored %s; the defaults or the command line's values are used"), path,
			 ign);
	cJSON_Delete(o);
	return LM_OK;
}
