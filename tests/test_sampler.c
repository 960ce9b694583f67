/* Sampler: greedy, top-k=1, seed reproducibility, repetition penalty, the uniform handed to device sampling
 * (sampler_args, sampler_sample_u), and that the empirical distribution of draws matches softmax(logits / T)
 * after top-k / top-p / min-p truncation. */
#include "config.h"
#include "sampler.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int fails;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); fails++; } } while (0)

#define V 1000

static void fill_random(float *l, uint64_t seed)
{
	for (int i = 0; i < V; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		l[i] = (float)((seed >> 40) % 10000) / 1000.0f - 5.0f;
	}
}

static struct sampling base(void)
{
	return (struct sampling){ .temperature = 1, .top_p = 1, .top_k = 0, .min_p = 0, .repetition_penalty = 1,
				  .seed = 1234 };
}

/* draw n samples from logits (copied each time) and return frequencies of ids 0..k-1 */
static void freqs(const struct sampling *p, const float *logits, int n, double *f, int k)
{
	struct sampler *s;
	sampler_init(&s, V, p);
	float *l = malloc(sizeof *l * V);
	for (int i = 0; i < k; i++) f[i] = 0;
	for (int t = 0; t < n; t++) {
		memcpy(l, logits, sizeof *l * V);
		int32_t id = sampler_sample(s, l, NULL, 0);
		if (id < k) f[id] += 1.0 / n;
	}
	free(l);
	sampler_free(s);
}

int main(void)
{
	float l[V], l2[V];
	struct sampler *s;

	/* greedy: temperature 0 and top-k 1 both give the argmax */
	fill_random(l, 7);
	int am = 0;
	for (int i = 1; i < V; i++) if (l[i] > l[am]) am = i;
	struct sampling p = base();
	p.temperature = 0;
	sampler_init(&s, V, &p);
	memcpy(l2, l, sizeof l);
	int32_t g = sampler_sample(s, l2, NULL, 0);
	CHECK(g == am, "greedy picked %d, argmax is %d", g, am);
	p = base();
	p.top_k = 1;
	sampler_set(s, &p);
	int agree = 0;
	for (int t = 0; t < 100; t++) { memcpy(l2, l, sizeof l); agree += sampler_sample(s, l2, NULL, 0) == am; }
	CHECK(agree == 100, "top-k 1 agreed with argmax %d/100 times", agree);

	/* seed: same seed, same sequence; another seed, another sequence */
	p = base();
	int32_t a[200], b[200], c[200];
	sampler_set(s, &p);
	for (int t = 0; t < 200; t++) { memcpy(l2, l, sizeof l); a[t] = sampler_sample(s, l2, NULL, 0); }
	sampler_set(s, &p);
	for (int t = 0; t < 200; t++) { memcpy(l2, l, sizeof l); b[t] = sampler_sample(s, l2, NULL, 0); }
	p.seed = 99;
	sampler_set(s, &p);
	for (int t = 0; t < 200; t++) { memcpy(l2, l, sizeof l); c[t] = sampler_sample(s, l2, NULL, 0); }
	CHECK(memcmp(a, b, sizeof a) == 0, "the same seed gave different sequences");
	CHECK(memcmp(a, c, sizeof a) != 0, "seeds 1234 and 99 gave the same 200 draws");

	/* repetition penalty: a positive logit divided, a negative one multiplied, once per id */
	p = base();
	p.temperature = 0;
	p.repetition_penalty = 2.0f;
	sampler_set(s, &p);
	for (int i = 0; i < V; i++) l2[i] = -10;
	l2[5] = 4.0f; l2[6] = 3.0f; l2[7] = -1.0f;
	int32_t hist[] = { 5, 5, 5, 7 };
	g = sampler_sample(s, l2, hist, 4);
	CHECK(g == 6, "with id 5 penalized (4 -> 2) the greedy pick should be 6 (3.0), got %d", g);
	CHECK(l2[5] == 2.0f && l2[7] == -2.0f, "penalized logits 5: %g (want 2), 7: %g (want -2)", l2[5], l2[7]);
	sampler_free(s);

	/* the pieces device sampling uses: sampler_args draws the uniform sampler_sample would draw (none on
	 * greedy steps), and sampler_sample_u with that uniform picks sampler_sample's token */
	{
		struct sampling q = base();
		q.temperature = 0.9f;
		q.top_k = 50;
		q.top_p = 0.9f;
		q.min_p = 0.01f;
		q.repetition_penalty = 1.2f;
		struct sampler *s1, *s2;
		sampler_init(&s1, V, &q);
		sampler_init(&s2, V, &q);
		int32_t hh[64];
		int same = 0, greedy_steps = 0;
		for (int t = 0; t < 300; t++) {
			for (int i = 0; i < 64; i++) hh[i] = (t * 7 + i * 13) % V;
			if (t % 50 == 49) { /* a greedy stretch and back, as /set does: both reset to the seed */
				q.temperature = q.temperature > 0 ? 0 : 0.9f;
				sampler_set(s1, &q);
				sampler_set(s2, &q);
			}
			fill_random(l, 100 + t);
			memcpy(l2, l, sizeof l);
			int32_t r1 = sampler_sample(s1, l2, hh, 64);
			struct sample_args sa;
			sampler_args(s2, hh, 64, &sa);
			CHECK(sa.temperature == q.temperature && sa.top_k == 50 && sa.top_p == q.top_p && sa.min_p == q.min_p &&
			      sa.repetition_penalty == q.repetition_penalty && sa.history == hh && sa.n_history == 64 &&
			      sa.vocab == V, "sampler_args: parameters not passed on");
			CHECK(sa.u >= 0 && sa.u < 1, "sampler_args: uniform %g", sa.u);
			if (q.temperature <= 0) greedy_steps++;
			memcpy(l2, l, sizeof l);
			same += sampler_sample_u(s2, l2, hh, 64, sa.u) == r1;
		}
		CHECK(same == 300, "sampler_args + sampler_sample_u agreed with sampler_sample %d/300 times", same);
		CHECK(greedy_steps > 0, "no greedy steps were tested");
		/* u = 0: the most likely candidate; u just below 1: the last one kept (top-k 2: the second) */
		q = base();
		q.top_k = 2;
		sampler_set(s1, &q);
		for (int i = 0; i < V; i++) l[i] = -5;
		l[10] = 3;
		l[20] = 2;
		l[30] = 1;
		memcpy(l2, l, sizeof l);
		int32_t u0 = sampler_sample_u(s1, l2, NULL, 0, 0.0);
		memcpy(l2, l, sizeof l);
		int32_t u1 = sampler_sample_u(s1, l2, NULL, 0, 0.9999999999);
		CHECK(u0 == 10 && u1 == 20, "u 0 picked %d (want 10), u ~1 picked %d (want 20)", u0, u1);
		sampler_free(s1);
		sampler_free(s2);
	}

	/* distributions: three live tokens with probabilities 0.5, 0.3, 0.2, the rest impossible */
	for (int i = 0; i < V; i++) l[i] = -1e9f;
	l[0] = logf(0.5f); l[1] = logf(0.3f); l[2] = logf(0.2f);
	double f[3];
	const int N = 100000;
	const double tol = 0.01;
	struct { const char *name; struct sampling p; double want[3]; } cases[] = {
		{ "T=1", base(), { 0.5, 0.3, 0.2 } },
		{ "T=2", base(), { 0, 0, 0 } },
		{ "top-k 2", base(), { 0.625, 0.375, 0 } },
		{ "top-p 0.7", base(), { 0.625, 0.375, 0 } },
		{ "top-p 0.5", base(), { 1, 0, 0 } },
		{ "min-p 0.5", base(), { 0.625, 0.375, 0 } },
	};
	cases[1].p.temperature = 2;
	{ /* softmax(log p / 2) = sqrt(p) normalized */
		double z = sqrt(0.5) + sqrt(0.3) + sqrt(0.2);
		cases[1].want[0] = sqrt(0.5) / z; cases[1].want[1] = sqrt(0.3) / z; cases[1].want[2] = sqrt(0.2) / z;
	}
	cases[2].p.top_k = 2;
	cases[3].p.top_p = 0.7f;
	cases[4].p.top_p = 0.5f;
	cases[5].p.min_p = 0.5f;
	for (size_t k = 0; k < ARRAY_SIZE(cases); k++) {
		freqs(&cases[k].p, l, N, f, 3);
		double err = 0;
		for (int i = 0; i < 3; i++) err = fmax(err, fabs(f[i] - cases[k].want[i]));
		printf("%-10s freq %.4f %.4f %.4f  want %.4f %.4f %.4f\n", cases[k].name, f[0], f[1], f[2],
		       cases[k].want[0], cases[k].want[1], cases[k].want[2]);
		CHECK(err < tol, "%s: frequencies off by %.4f", cases[k].name, err);
	}

	/* generation_config.json: fields read, do_sample=false means greedy, missing file is fine */
	char dir[] = "/tmp/lmterm-sampler-XXXXXX", warn[1024];
	if (mkdtemp(dir)) {
		char path[256];
		snprintf(path, sizeof path, "%s/generation_config.json", dir);
		FILE *fp = fopen(path, "w");
		fprintf(fp, "{\"temperature\": 0.7, \"top_p\": 0.8, \"top_k\": 50, \"repetition_penalty\": 1.1}");
		fclose(fp);
		p = base();
		CHECK(sampling_from_generation_config(&p, dir, warn, sizeof warn) == LM_OK, "%s", lm_errmsg());
		CHECK(fabsf(p.temperature - 0.7f) < 1e-6 && fabsf(p.top_p - 0.8f) < 1e-6 && p.top_k == 50 &&
		      fabsf(p.repetition_penalty - 1.1f) < 1e-6, "generation_config values not read");
		/* absurd values: ignored or clamped, never a float infinity or an undefined conversion to int */
		fp = fopen(path, "w");
		fprintf(fp, "{\"temperature\": 1e300, \"top_k\": 1e30, \"max_new_tokens\": 1e30, \"repetition_penalty\": 1e300}");
		fclose(fp);
		p = base();
		CHECK(sampling_from_generation_config(&p, dir, warn, sizeof warn) == LM_OK && p.temperature == base().temperature &&
		      p.top_k == INT_MAX && p.max_new_tokens == INT_MAX && p.repetition_penalty == base().repetition_penalty,
		      "absurd values: temperature %g top_k %d max_new_tokens %d repetition_penalty %g", p.temperature, p.top_k,
		      p.max_new_tokens, p.repetition_penalty);
		CHECK(strstr(warn, "temperature 1e+300 (must be [0, 100])") && strstr(warn, "repetition_penalty") &&
		      !strstr(warn, "top_k") && !strstr(warn, "max_new_tokens"), "warning: '%s'", warn);
		/* wrong types and values out of range: each named in the warning, none used; null is "unset" */
		fp = fopen(path, "w");
		fprintf(fp, "{\"temperature\": \"0.7\", \"top_p\": 90, \"top_k\": -1, \"min_p\": null, "
			    "\"max_new_tokens\": 0, \"repetition_penalty\": 1.05}");
		fclose(fp);
		p = base();
		CHECK(sampling_from_generation_config(&p, dir, warn, sizeof warn) == LM_OK, "%s", lm_errmsg());
		CHECK(p.temperature == base().temperature && p.top_p == base().top_p && p.top_k == base().top_k &&
		      p.min_p == base().min_p && p.max_new_tokens == base().max_new_tokens &&
		      fabsf(p.repetition_penalty - 1.05f) < 1e-6, "bad values were used");
		printf("warning: %s\n", warn);
		CHECK(strstr(warn, "generation_config.json: ignored temperature \"0.7\" (not a number), top_p 90 (must be "
			       "(0, 1]), top_k -1 (must be >= 0), max_new_tokens 0 (must be >= 1)"),
		      "warning: '%s'", warn);
		fp = fopen(path, "w");
		fprintf(fp, "{\"temperature\": 0.7, \"do_sample\": false}");
		fclose(fp);
		CHECK(sampling_from_generation_config(&p, dir, warn, sizeof warn) == LM_OK && p.temperature == 0 &&
			      !warn[0], "do_sample false");
		fp = fopen(path, "w");
		fprintf(fp, "{\"temperature\": ");
		fclose(fp);
		CHECK(sampling_from_generation_config(&p, dir, warn, sizeof warn) == LM_ERR && strstr(lm_errmsg(), "generation_config"),
		      "malformed file: '%s'", lm_errmsg());
		unlink(path);
		CHECK(sampling_from_generation_config(&p, dir, warn, sizeof warn) == LM_OK, "missing file is not an error");
		rmdir(dir);
	}
	/* the cpu backend's sample op (what the engine calls where a backend has one): its logits of h, then
	 * the host sampler with the uniform given; and given logits directly */
	{
		struct backend *be = backend_cpu_create();
		CHECK(be && be->i->sample, "cpu backend without a sample op");
		if (be && be->i->sample) {
			enum { D = 16 };
			static float w[V * D], h[D];
			for (int i = 0; i < V * D; i++) w[i] = (float)((i * 2654435761u) % 1000) / 250.0f - 2.0f;
			for (int i = 0; i < D; i++) h[i] = (float)(i % 5) - 2.0f;
			struct host_weight hw = { .dt = DT_F32, .rows = V, .cols = D, .data = w };
			struct weight lm;
			memset(&lm, 0, sizeof lm);
			void *hb = be->i->alloc(be, sizeof h, MEM_ACT), *lb = be->i->alloc(be, sizeof(float) * V, MEM_ACT);
			CHECK(hb && lb && be->i->weight_load(be, &lm, &hw) == LM_OK && be->i->upload(be, hb, h, sizeof h) == LM_OK,
			      "cpu backend setup: %s", lm_errmsg());
			float ref[V];
			for (int r = 0; r < V; r++) {
				double acc = 0;
				for (int k = 0; k < D; k++) acc += (double)w[r * D + k] * h[k];
				ref[r] = (float)acc;
			}
			CHECK(be->i->upload(be, lb, ref, sizeof ref) == LM_OK, "upload");
			struct sampling q = base();
			q.top_k = 20;
			q.top_p = 0.9f;
			q.repetition_penalty = 1.3f;
			struct sampler *sa, *sb;
			sampler_init(&sa, V, &q);
			sampler_init(&sb, V, &q);
			int32_t hh[3] = { 1, 2, 1 };
			int agree = 0, agree_l = 0;
			for (int t = 0; t < 50; t++) {
				struct sample_args a;
				sampler_args(sa, hh, 3, &a);
				int32_t t1 = -1, t2 = -1;
				CHECK(be->i->sample(be, &t1, hb, &lm, &a) == LM_OK, "sample: %s", lm_errmsg());
				CHECK(be->i->sample(be, &t2, lb, NULL, &a) == LM_OK, "sample (logits): %s", lm_errmsg());
				float l3[V];
				be->i->logits(be, l3, hb, &lm, 1);
				int32_t want = sampler_sample_u(sb, l3, hh, 3, a.u);
				agree += t1 == want;
				memcpy(l3, ref, sizeof ref);
				agree_l += t2 == sampler_sample_u(sb, l3, hh, 3, a.u);
			}
			CHECK(agree == 50 && agree_l == 50, "cpu sample op agreed with the host sampler %d/50 (h), %d/50 (logits)",
			      agree, agree_l);
			float back[V];
			be->i->download(be, back, lb, sizeof back);
			CHECK(memcmp(back, ref, sizeof ref) == 0, "the sample op changed the logits it was given");
			sampler_free(sa);
			sampler_free(sb);
			be->i->weight_free(be, &lm);
			be->i->free(be, hb);
			be->i->free(be, lb);
		}
		backend_destroy(be);
	}

	if (fails) return 1;
	printf("sampler: all checks passed\n");
	return 0;
}
