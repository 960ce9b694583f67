/* cmd_lite.c: `lmterm lite auto_awq MODEL --work-dir DIR [...]`, LMDeploy's options and defaults. */
#include "config.h"
#include "awq.h"
#include "backend.h"
#include "calib.h"
#include "cmds.h"
#include "i18n.h"
#include "opts.h"
#include "progress.h"
#include "ui.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f, _("Usage: lmterm lite auto_awq MODEL [--work-dir DIR] [OPTIONS]\n"
		     "\n"
		     "Quantize MODEL's linear weights to 4 bits (AWQ, AutoAWQ gemm layout) into DIR.\n"
		     "\n"
		     "  --work-dir DIR            output directory (default ./work_dir); must not exist or be empty\n"
		     "  --calib-dataset NAME|PATH ptb, wikitext2, c4, pileval, or a .txt/.jsonl file (default ptb)\n"
		     "  --calib-samples N         calibration windows (default 128; 0 = round-to-nearest only)\n"
		     "  --calib-seqlen N          tokens per window (default 2048)\n"
		     "  --batch-size N            windows per forward chunk (default 1)\n"
		     "  --w-bits N                weight bits (4)\n"
		     "  --w-group-size N          input features per quantization group (default 128)\n"
		     "  --search-scale [BOOL]     search the smoothing ratio on a 20-point grid (default false)\n"
		     "  --search-clip [BOOL]      search each group's clipping range (default false)\n"
		     "  --dtype auto|float16|bfloat16   accepted for LMDeploy compatibility (calibration is float32)\n"
		     "  --backend auto|cpu|cuda   where calibration runs (auto: the GPU when there is one)\n"
		     "  --search-tokens N         calibration tokens the searches score on (default: all, at most 16384)\n"
		     "  --threads N               CPU threads (default: all cores)\n"
		     "  --device cuda, --clamp-zeros  accepted for LMDeploy compatibility (no effect)\n"
		     "\n"
		     "Named datasets are read from $LMTERM_DATA, then $XDG_CACHE_HOME/lmterm/datasets\n"
		     "(ptb.train.txt, wiki.train.raw, c4.jsonl, pileval.jsonl).\n"));
}

/* The quantizer runs on the progress panel's worker thread; lm_err's message is per thread, so it is
 * carried back here. */
struct job {
	const struct awq_opts *o;
	char err[1600];
};

static int work(void *ud, struct progress_sink *sink)
{
	struct job *j = ud;
	int rc = awq_quantize(j->o, sink);
	if (rc != LM_OK) snprintf(j->err, sizeof j->err, "%s", lm_errmsg());
	return rc;
}

int cmd_lite(int argc, char **argv)
{
	if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
		usage(argc < 1 ? stderr : stdout);
		return argc < 1 ? 2 : 0;
	}
	if (strcmp(argv[0], "auto_awq") != 0) {
		fprintf(stderr, _("lmterm: lite: unknown command '%s' (only auto_awq)\n"), argv[0]);
		return 2;
	}
	struct awq_opts o = {
		.work_dir = "./work_dir", .samples = 128, .seqlen = 2048, .batch = 1, .bits = 4, .group = 128,
		.search_scale = false, .search_clip = false, .seed = 0,
	};
	const char *dataset = "ptb", *dtype = "auto", *backend = "auto";
	struct opt_iter it;
	opt_iter_init(&it, argc - 1, argv + 1);
	while (opt_next(&it)) {
		const char *v = NULL;
		int e = LM_OK;
		if (!it.name) {
			if (o.model_dir) {
				fprintf(stderr, _("lmterm: lite auto_awq: unexpected argument '%s'\n"), it.arg);
				return 2;
			}
			o.model_dir = it.arg;
			continue;
		}
		const char *n = it.name;
		if (!strcmp(n, "help") || !strcmp(n, "h")) { usage(stdout); return 0; }
		if (!strcmp(n, "search-scale") || !strcmp(n, "search-clip")) {
			bool *dst = !strcmp(n, "search-scale") ? &o.search_scale : &o.search_clip;
			v = opt_value_optional(&it, opt_is_bool);
			/* a word that is not a boolean after MODEL was given can only be a bad value */
			if (!v && o.model_dir && it.i < it.argc && it.argv[it.i][0] != '-') v = it.argv[it.i++];
			if (!v) *dst = true;
			else e = opt_bool(it.arg, v, dst);
		} else if (!strcmp(n, "work-dir")) { e = opt_value(&it, &v); o.work_dir = v; }
		else if (!strcmp(n, "calib-dataset")) { e = opt_value(&it, &v); dataset = v; }
		else if (!strcmp(n, "dtype")) { e = opt_value(&it, &v); dtype = v; }
		else if (!strcmp(n, "backend")) { e = opt_value(&it, &v); backend = v; }
		else if (!strcmp(n, "calib-samples")) { if (!(e = opt_value(&it, &v))) e = opt_int("--calib-samples", v, 0, 1 << 20, &o.samples); }
		else if (!strcmp(n, "calib-seqlen")) { if (!(e = opt_value(&it, &v))) e = opt_int("--calib-seqlen", v, 1, 1 << 20, &o.seqlen); }
		else if (!strcmp(n, "batch-size")) { if (!(e = opt_value(&it, &v))) e = opt_int("--batch-size", v, 1, 4096, &o.batch); }
		else if (!strcmp(n, "w-bits")) { if (!(e = opt_value(&it, &v))) e = opt_int("--w-bits", v, 1, 16, &o.bits); }
		else if (!strcmp(n, "w-group-size")) { if (!(e = opt_value(&it, &v))) e = opt_int("--w-group-size", v, 1, 1 << 20, &o.group); }
		else if (!strcmp(n, "threads")) { if (!(e = opt_value(&it, &v))) e = opt_int("--threads", v, 1, 1024, &o.n_threads); }
		else if (!strcmp(n, "search-tokens")) { if (!(e = opt_value(&it, &v))) e = opt_int("--search-tokens", v, 1, 1 << 30, &o.search_tokens); }
		/* the rest of LMDeploy's auto_awq options */
		else if (!strcmp(n, "device")) {
			if (!(e = opt_value(&it, &v)) && strcmp(v, "cuda"))
				e = lm_err(_("--device %s: lmterm runs on NVIDIA GPUs (cuda) or on the CPU (--backend cpu)"), v);
		} else if (!strcmp(n, "revision") || !strcmp(n, "download-dir")) {
			e = opt_engine_extra(&it, &(struct engine_extra){ 0 }); /* lmterm does not download: the message */
		} else if (!strcmp(n, "w-sym")) {
			/* a boolean value may follow, as for --clamp-zeros: false is what lmterm does */
			bool sym = true;
			v = opt_value_optional(&it, opt_is_bool);
			if (v) e = opt_bool(it.arg, v, &sym);
			if (!e && sym)
				e = lm_err(_("--w-sym: symmetric weights are not supported; lmterm writes AutoAWQ's gemm "
					     "format with zero points, which LMDeploy's TurboMind, vLLM and AutoAWQ load"));
		} else if (!strcmp(n, "clamp-zeros")) {
			/* LMDeploy's guard against a division by a zero weight scale; lmterm's smoothing scales are bounded
			 * away from zero (make_scales in awq.c), so there is nothing to clamp */
			bool b;
			v = opt_value_optional(&it, opt_is_bool);
			if (v) e = opt_bool(it.arg, v, &b);
		} else {
			fprintf(stderr, _("lmterm: lite auto_awq: unknown option '%s'\n"), it.arg);
			return 2;
		}
		if (e) {
			fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
			return 2;
		}
	}
	if (!o.model_dir) {
		fprintf(stderr, _("lmterm: lite auto_awq: no MODEL given\n"));
		return 2;
	}
	if (o.bits != 4) {
		fprintf(stderr, _("lmterm: --w-bits %d: only 4-bit weights are supported\n"), o.bits);
		return 2;
	}
	/* the searches score on calibration activations: without any, asking for one would quietly give RTN */
	if (o.samples == 0 && (o.search_scale || o.search_clip)) {
		fprintf(stderr, _("lmterm: %s needs calibration data: --calib-samples 0 means plain round-to-nearest\n"),
			o.search_scale ? "--search-scale" : "--search-clip");
		return 2;
	}
	/* a result every backend loads: the cpu backend packs groups of 16 inputs (load_q4), the loader and the
	 * CUDA backend take multiples of 8; groups 1 and 8 wrote models that lmterm itself then refused on the cpu */
	if (o.group % 16) {
		fprintf(stderr, _("lmterm: --w-group-size %d: use a multiple of 16 (e.g. 32, 64, 128)\n"), o.group);
		return 2;
	}
	if (strcmp(dtype, "auto") && strcmp(dtype, "float16") && strcmp(dtype, "bfloat16")) {
		fprintf(stderr, _("lmterm: --dtype '%s': use auto, float16 or bfloat16\n"), dtype);
		return 2;
	}
	if (opt_backend(&backend)) {
		fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
		return 2;
	}
	o.backend = backend;

	/* everything that can be checked before the long part, so a mistake costs seconds */
	if (check_model_dir(o.model_dir) || awq_check_model(o.model_dir, o.group)) {
		fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
		return 1;
	}
	char dspath[4096];
	if (o.samples > 0) {
		if (calib_resolve(dataset, dspath, sizeof dspath)) {
			fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
			return 1;
		}
		o.dataset = dspath;
	}

	double t0 = now_s();
	int rc;
	if (isatty(0) && isatty(1) && isatty(2) && ui_available()) {
		struct ui_opts uo = { .no_color = getenv("NO_COLOR") && *getenv("NO_COLOR"), /* no-color.org: non-empty */ .model_label = o.model_dir };
		struct job j = { .o = &o };
		/* a cpu backend only for its memory figures (host total/free, this process's RSS) beside the panel */
		struct backend *be = backend_cpu_create();
		rc = ui_progress_run(_("lite auto_awq"), work, &j, be, &uo);
		if (be) backend_destroy(be);
		if (rc != LM_OK) lm_err("%s", j.err);
	} else {
		struct progress_sink s;
		progress_stderr_init(&s);
		rc = awq_quantize(&o, &s);
		progress_stderr_finish(&s);
	}
	/* after the progress panel, which would have covered it */
	if (*backend_fallback_note()) fprintf(stderr, _("lmterm: note: %s\n"), backend_fallback_note());
	if (rc != LM_OK) {
		fprintf(stderr, _("lmterm: %s\n"), lm_errmsg());
		return 1;
	}
	fprintf(stderr, _("lmterm: wrote %s (AWQ w4 g%d) in %.1f s\n"), o.work_dir, o.group, now_s() - t0);
	return 0;
}
