/* test_golden: every model against the goldens transformers computed (float32, from the saved weights).
 * Per model and case:
 *   1. input_ids through forward() in one call: the stored logits rows (the last K positions) within a
 *      relative error ||a - b|| / ||b|| <= rtol, and the argmax equal at every position;
 *   2. greedy generation with the KV cache (the prompt in one call, then one token at a time, over a
 *      reversed block table of short blocks) equal to greedy_ids.
 * Environment (so that other backends reuse the test):
 *   LMTERM_TEST_BACKEND  cpu (default), cuda or auto; cuda without a GPU skips
 *   LMTERM_TEST_RTOL     relative logits error bound (default 1e-4)
 *   LMTERM_TEST_ARGMAX_MISMATCH  prompt positions per case whose argmax may differ decisively (default 0);
 *                        a near tie (the golden argmax within 4x the measured rms logit error of our top
 *                        logit) is reported but not counted
 *   LMTERM_TEST_ARGMAX_AGREE  fraction of all positions whose argmax must agree decisively (default 1)
 *   LMTERM_TEST_GREEDY_MIN       greedy tokens that must match from the start (default: all); parting
 *                        earlier at a near tie (the two tokens' logits, from this backend's prefill of the
 *                        golden tokens up to there, within the margin above) is reported, not counted
 *   LMTERM_TEST_MODELS   space-separated subset of the model names below (default: all)
 *   LMTERM_TEST_KV_POLICY  KV cache quant policy 0 (default), 8 or 4 (then loosen the bounds above)
 * The prefill also checks the forward pass's tap hook: 4 calls per layer, in order, with their widths. */
#include "config.h"
#include "backend.h"
#include "forward.h"
#include "model.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

struct golden_model {
	const char *name;
	int in_srcdir;            /* models/ of the source tree (the demo model), else $TESTDATA/<sub> */
	const char *sub;          /* fixtures or models */
	const char *cases[4];
};

static const struct golden_model models[] = {
	{ "llama3-rand", 0, "fixtures", { "random_ids", "text" } },
	{ "llama3-rand-awq", 0, "fixtures", { "random_ids", "text" } },
	{ "qwen2-rand", 0, "fixtures", { "random_ids", "text" } },
	{ "llama-dynrope-rand", 0, "fixtures", { "random_ids", "text" } },
	{ "internlm2-rand", 0, "fixtures", { "random_ids", "text" } },
	{ "tiny-en-zh", 1, "models", { "en_story", "zh_story", "chat_en" } },
	{ "tiny-en-zh-internlm2", 0, "models", { "en_story", "zh_story", "chat_en" } },
	{ "small-en-zh", 0, "models", { "en_story", "zh_story", "chat_en" } },
};

#ifdef TEST_CPU_ONLY /* the sanitizer build links the cpu backend's sources alone, without backend.c */
#define backend_create(be, name, dt) ((*(be) = backend_cpu_create()) ? LM_OK : LM_ERR)
#define backend_destroy(be) ((be)->i->destroy(be))
#undef HAVE_CUDA
#endif

static double rtol = 1e-4;
static int kv_policy = KV_POLICY_NONE;
static int argmax_slack = 0, greedy_min = -1;
static long total_pos, total_mism, total_ties, total_greedy_ties; /* over all cases */

static double env_num(const char *name, double def)
{
	const char *e = getenv(name);
	return e && *e ? atof(e) : def;
}

static const struct st_tensor *need(const struct st_file *f, const char *path, const char *name, enum dtype dt)
{
	const struct st_tensor *t = st_find(f, name);
	if (!t || t->dt != dt) {
		printf("FAIL: %s: no %s tensor '%s'\n", path, dtype_name(dt), name);
		return NULL;
	}
	return t;
}

static int32_t argmax_row(const float *v, int n)
{
	int32_t b = 0;
	for (int i = 1; i < n; i++)
		if (v[i] > v[b]) b = i;
	return b;
}

/* the tap hook: every linear input of every layer, in order, with its width */
struct tap_count {
	int calls, bad, n;
	const struct model_config *c;
};
static void tap_fn(void *ud, int layer, int point, const void *x, int n, int width)
{
	struct tap_count *t = ud;
	const struct model_config *c = t->c;
	const int widths[4] = { c->dim, c->n_heads * c->head_dim, c->dim, c->ffn };
	if (layer != t->calls / 4 || point != t->calls % 4 || width != widths[point] || n != t->n || !x) t->bad++;
	t->calls++;
}

/* one case; returns 0 pass, 1 fail */
static int run_case(struct model *m, const char *mname, const char *cname, const char *path)
{
	struct st_file *f;
	if (st_open(&f, path)) {
		printf("FAIL: %s\n", lm_errmsg());
		return 1;
	}
	const struct st_tensor *tin = need(f, path, "input_ids", DT_I32), *tlog = need(f, path, "logits", DT_F32),
			       *targ = need(f, path, "argmax_ids", DT_I32), *tgr = need(f, path, "greedy_ids", DT_I32);
	if (!tin || !tlog || !targ || !tgr) {
		st_close(f);
		return 1;
	}
	const int T = (int)tin->shape[0], K = (int)tlog->shape[0], V = (int)tlog->shape[1], G = (int)tgr->shape[0];
	const int32_t *ids = tin->data, *am = targ->data, *greedy = tgr->data;
	const float *gl = tlog->data;
	int bad = 0;
	if (V != m->cfg.vocab || K > T || (int)targ->shape[0] != T) {
		printf("FAIL: %s: shapes disagree with the model (vocab %d)\n", path, m->cfg.vocab);
		st_close(f);
		return 1;
	}

	/* a cache of short blocks in reversed order, enough for the prompt and the continuation */
	struct backend *be = m->be;
	struct kv_cache kv = { .n_layers = m->cfg.n_layers, .n_kv_heads = m->cfg.n_kv_heads,
			       .head_dim = m->cfg.head_dim, .block_len = 16, .policy = kv_policy };
	kv.n_blocks = (T + G + kv.block_len - 1) / kv.block_len;
	int32_t *blocks = malloc(sizeof(int32_t) * kv.n_blocks);
	if (blocks)
		for (int b = 0; b < kv.n_blocks; b++) blocks[b] = kv.n_blocks - 1 - b; /* reversed: paging is used */
	struct fwd fw;
	float *logits = malloc(sizeof(float) * (size_t)T * V);
	int32_t *gen = malloc(sizeof(int32_t) * (G + 1));
	if (!blocks || !logits || !gen || be->i->kv_alloc(be, &kv) || fwd_init(&fw, m, T + G)) {
		printf("FAIL: %s: %s\n", path, lm_errmsg());
		free(blocks);
		free(logits);
		free(gen);
		st_close(f);
		return 1;
	}

	/* 1. one forward over the prompt (with the tap hook counting the linear inputs) */
	struct tap_count tc = { .n = T, .c = &m->cfg };
	fw.tap = tap_fn;
	fw.tap_ud = &tc;
	double t0 = now_s();
	int rc = forward(&fw, &kv, ids, T, 0, blocks, kv.n_blocks, T, logits, NULL);
	double t_prefill = now_s() - t0;
	fw.tap = NULL;
	if (!rc && (tc.calls != 4 * m->cfg.n_layers || tc.bad)) {
		printf("FAIL: %s/%s: tap hook called %d times (%d wrong), expected %d\n", mname, cname, tc.calls, tc.bad,
		       4 * m->cfg.n_layers);
		bad = 1;
	}
	double num = 0, den = 0;
	int mism = 0, ties = 0, first_mism = -1;
	if (rc) {
		printf("FAIL: %s/%s: forward: %s\n", mname, cname, lm_errmsg());
		bad = 1;
	} else {
		for (int r = 0; r < K; r++)
			for (int v = 0; v < V; v++) {
				double a = logits[(size_t)(T - K + r) * V + v], b = gl[(size_t)r * V + v];
				num += (a - b) * (a - b);
				den += b * b;
			}
		/* A position whose golden argmax lies within the measured logit error of our top logit is a near
		 * tie that 16-bit arithmetic may resolve either way (random-weight fixtures have many): it is
		 * counted apart. The margin is 4 x the rms absolute logit error measured on the stored rows
		 * (a difference of two errors), so it is 0 for the float32 backend's own tolerance of 1e-4 only
		 * in the limit: there ties are vanishingly rare and every mismatch still counts. */
		const double tie = 4.0 * sqrt(num / ((double)K * V));
		for (int i = 0; i < T; i++) {
			const float *row = logits + (size_t)i * V;
			int32_t a = argmax_row(row, V);
			if (a == am[i]) continue;
			if (am[i] >= 0 && am[i] < V && row[a] - row[am[i]] <= tie) {
				ties++;
				continue;
			}
			if (first_mism < 0) first_mism = i;
			mism++;
		}
	}
	double err = den > 0 ? sqrt(num / den) : INFINITY;

	/* 2. greedy: the prompt in one call, then one token at a time */
	int ok_prefix = 0;
	t0 = now_s();
	if (!rc) {
		rc = forward(&fw, &kv, ids, T, 0, blocks, kv.n_blocks, -1, NULL, &gen[0]);
		for (int j = 1; !rc && j < G; j++)
			rc = forward(&fw, &kv, &gen[j - 1], 1, T + j - 1, blocks, kv.n_blocks, -1, NULL, &gen[j]);
		if (rc) {
			printf("FAIL: %s/%s: greedy: %s\n", mname, cname, lm_errmsg());
			bad = 1;
		}
		while (!rc && ok_prefix < G && gen[ok_prefix] == greedy[ok_prefix]) ok_prefix++;
	}
	double t_gen = now_s() - t0;

	/* 2b. the same, one step ahead of the host as generate and bench decode (forward -3: each step is
	 * enqueued, fed the id of the step before on the device, before that id is taken): the very same ids */
	if (!rc && G > 1) {
		int32_t *gen2 = calloc((size_t)G, sizeof(int32_t));
		int j = 1;
		rc = gen2 ? forward(&fw, &kv, ids, T, 0, blocks, kv.n_blocks, -1, NULL, &gen2[0]) : lm_err("out of memory");
		if (!rc) rc = forward(&fw, &kv, &gen2[0], 1, T, blocks, kv.n_blocks, -3, NULL, NULL);
		for (; !rc && j < G; j++) {
			if (j + 1 < G) rc = forward(&fw, &kv, NULL, 1, T + j, blocks, kv.n_blocks, -3, NULL, NULL);
			if (!rc) rc = fwd_take(&fw, &gen2[j]);
		}
		if (rc) {
			printf("FAIL: %s/%s: greedy one step ahead: %s\n", mname, cname, lm_errmsg());
			bad = 1;
		} else if (memcmp(gen, gen2, sizeof(int32_t) * (size_t)G) != 0) {
			for (j = 0; gen[j] == gen2[j]; j++) {
			}
			printf("FAIL: %s/%s: greedy one step ahead gives %d at token %d, one at a time %d\n", mname, cname,
			       gen2[j], j, gen[j]);
			bad = 1;
		}
		free(gen2);
	}

	/* Where greedy parts from the golden, is it a near tie? The golden's tokens up to there in one prefill
	 * call on this backend, and the two candidates' logits at the last position compared with the tie margin
	 * of the prompt's logits. A decode path that disagrees with this backend's own prefill is no tie. */
	double gap = -1, tie_g = 0;
	if (!rc && ok_prefix < G) {
		int32_t *seq = malloc(sizeof(int32_t) * (size_t)(T + G));
		if (seq) {
			memcpy(seq, ids, sizeof(int32_t) * (size_t)T);
			memcpy(seq + T, greedy, sizeof(int32_t) * (size_t)ok_prefix);
			tie_g = 4.0 * sqrt(num / ((double)K * V));
			if (gen[ok_prefix] >= 0 && gen[ok_prefix] < V && greedy[ok_prefix] >= 0 && greedy[ok_prefix] < V &&
			    !forward(&fw, &kv, seq, T + ok_prefix, 0, blocks, kv.n_blocks, 1, logits, NULL))
				gap = fabs((double)logits[gen[ok_prefix]] - logits[greedy[ok_prefix]]);
			free(seq);
		}
	}

	int need_greedy = greedy_min < 0 ? G : MIN(greedy_min, G);
	printf("%-22s %-10s T=%-3d rel err %.3g (bound %g), argmax %d/%d equal (%d near ties), greedy %d/%d equal  "
	       "[%.2fs prefill, %.2fs greedy]\n",
	       mname, cname, T, err, rtol, T - mism - ties, T, ties, ok_prefix, G, t_prefill, t_gen);
	total_pos += T;
	total_mism += mism;
	total_ties += ties;
	if (!rc) {
		if (!(err <= rtol)) {
			printf("FAIL: %s/%s: logits error %g > %g\n", mname, cname, err, rtol);
			bad = 1;
		}
		if (mism > argmax_slack) {
			printf("FAIL: %s/%s: argmax differs at %d positions (first at %d: %d, golden %d)\n", mname, cname,
			       mism, first_mism, argmax_row(logits + (size_t)first_mism * V, V), am[first_mism]);
			bad = 1;
		}
		if (ok_prefix < need_greedy && gap >= 0 && gap <= tie_g) {
			printf("     %s/%s: greedy parts from the golden at token %d (%d, golden %d) at a near tie: logits "
			       "%.4g apart, margin %.4g\n", mname, cname, ok_prefix, gen[ok_prefix], greedy[ok_prefix], gap,
			       tie_g);
			total_greedy_ties++;
		} else if (ok_prefix < need_greedy) {
			printf("FAIL: %s/%s: greedy token %d is %d, golden %d (logits %.4g apart here, near-tie margin %.4g)\n"
			       "  got:   ", mname, cname, ok_prefix, gen[ok_prefix], greedy[ok_prefix], gap, tie_g);
			for (int j = 0; j < G; j++) printf(" %d", gen[j]);
			printf("\n  golden:");
			for (int j = 0; j < G; j++) printf(" %d", greedy[j]);
			printf("\n");
			bad = 1;
		}
	}
	fwd_free(&fw);
	be->i->kv_free(be, &kv);
	free(blocks);
	free(logits);
	free(gen);
	st_close(f);
	return bad;
}

static bool selected(const char *name)
{
	const char *sel = getenv("LMTERM_TEST_MODELS");
	if (!sel || !*sel) return true;
	size_t n = strlen(name);
	for (const char *p = sel; (p = strstr(p, name)); p += n)
		if ((p == sel || p[-1] == ' ') && (p[n] == 0 || p[n] == ' ')) return true;
	return false;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0); /* lines reach the log even if the test crashes */
	const char *testdata = getenv("TESTDATA"), *srcdir = getenv("top_srcdir");
	const char *bname = getenv("LMTERM_TEST_BACKEND");
	if (!bname || !*bname) bname = "cpu";
	if (!testdata || !srcdir) {
		printf("SKIP: TESTDATA and top_srcdir must be set (run through make check)\n");
		return 77;
	}
	rtol = env_num("LMTERM_TEST_RTOL", 1e-4);
	argmax_slack = (int)env_num("LMTERM_TEST_ARGMAX_MISMATCH", 0);
	greedy_min = (int)env_num("LMTERM_TEST_GREEDY_MIN", -1);
	kv_policy = (int)env_num("LMTERM_TEST_KV_POLICY", 0);
	if (strcmp(bname, "cuda") == 0) {
#if HAVE_CUDA
		if (!backend_cuda_available()) {
			printf("SKIP: no usable CUDA GPU\n");
			return 77;
		}
#else
		printf("SKIP: built without CUDA\n");
		return 77;
#endif
	}

	int fails = 0, ran = 0;
	for (size_t mi = 0; mi < ARRAY_SIZE(models); mi++) {
		const struct golden_model *gm = &models[mi];
		if (!selected(gm->name)) continue;
		char dir[4096], path[4096];
		if (gm->in_srcdir) snprintf(dir, sizeof dir, "%s/models/%s", srcdir, gm->name);
		else snprintf(dir, sizeof dir, "%s/%s/%s", testdata, gm->sub, gm->name);

		struct model_config cfg;
		char cfgpath[4200];
		snprintf(cfgpath, sizeof cfgpath, "%s/config.json", dir);
		struct backend *be = NULL;
		if (config_load(&cfg, cfgpath) || backend_create(&be, bname, cfg.dtype)) {
			printf("FAIL: %s: %s\n", gm->name, lm_errmsg());
			fails++;
			continue;
		}
		struct model m;
		double t0 = now_s();
		if (model_load(&m, dir, be, FMT_AUTO, NULL, NULL)) {
			printf("FAIL: %s: model_load: %s\n", gm->name, lm_errmsg());
			fails++;
			backend_destroy(be);
			continue;
		}
		printf("%s: loaded in %.2fs (%s backend, %d threads)\n", gm->name, now_s() - t0, be->i->name,
		       be->n_threads);
		for (int ci = 0; ci < 4 && gm->cases[ci]; ci++) {
			snprintf(path, sizeof path, "%s/golden/%s/%s.safetensors", testdata, gm->name, gm->cases[ci]);
			fails += run_case(&m, gm->name, gm->cases[ci], path);
			ran++;
		}
		model_free(&m);
		/* everything the model, cache and workspace took must have been given back */
		struct mem_stats ms;
		if (!be->i->mem_stats(be, &ms) && (ms.cat[MEM_WEIGHTS] || ms.cat[MEM_KV] || ms.cat[MEM_ACT])) {
			printf("FAIL: %s: memory still allocated after freeing: weights %zu, kv %zu, act %zu\n", gm->name,
			       ms.cat[MEM_WEIGHTS], ms.cat[MEM_KV], ms.cat[MEM_ACT]);
			fails++;
		}
		backend_destroy(be);
	}
	/* over all cases: decisive argmax agreement (near ties apart) of at least LMTERM_TEST_ARGMAX_AGREE */
	const double agree = env_num("LMTERM_TEST_ARGMAX_AGREE", 1.0);
	printf("argmax over all cases: %ld/%ld positions equal, %ld near ties, %ld decisive mismatches (at most %.1f%% allowed)\n",
	       total_pos - total_mism - total_ties, total_pos, total_ties, total_mism, 100.0 * (1.0 - agree));
	if (total_pos && (double)(total_pos - total_mism) < agree * (double)total_pos) {
		printf("FAIL: argmax agreement %.2f%% < %.2f%%\n", 100.0 * (total_pos - total_mism) / total_pos, 100.0 * agree);
		fails++;
	}
	if (total_greedy_ties) printf("greedy parted at a near tie in %ld case(s)\n", total_greedy_ties);
	printf("%d case(s), %d failure(s)\n", ran, fails);
	if (!ran) return 77;
	return fails ? 1 : 0;
}
