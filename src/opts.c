#include "config.h"
#include "opts.h"
#include "i18n.h"

#include <ctype.h>
#include <stdio.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

int opt_bool(const char *opt, const char *val, bool *out)
{
	static const char *yes[] = { "true", "yes", "1" }, *no[] = { "false", "no", "0" };
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(val, yes[i]) == 0) { *out = true; return LM_OK; }
		if (strcasecmp(val, no[i]) == 0) { *out = false; return LM_OK; }
	}
	return lm_err(_("%s: '%s' is not a boolean (use true/false, yes/no or 1/0)"), opt, val);
}

bool opt_is_bool(const char *val)
{
	bool b;
	const bool ok = opt_bool("", val, &b) == LM_OK;
	lm_err_clear();
	return ok;
}

int opt_int(const char *opt, const char *val, long lo, long hi, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(val, &end, 10);
	if (!*val || *end || (errno && errno != ERANGE)) return lm_err(_("%s: '%s' is not an integer"), opt, val);
	if (errno == ERANGE) /* an integer, only too long for a long: it said 'not an integer' */
		return lm_err(_("%s: %s is out of range [%ld, %ld]"), opt, val, lo, hi);
	if (v < lo || v > hi) return lm_err(_("%s: %ld is out of range [%ld, %ld]"), opt, v, lo, hi);
	*out = (int)v;
	return LM_OK;
}

int opt_u64(const char *opt, const char *val, uint64_t *out)
{
	char *end;
	errno = 0;
	/* digits only: strtoull would skip blanks and wrap " -5" around to 2^64-5 */
	if (!isdigit((unsigned char)*val)) return lm_err(_("%s: '%s' is not a non-negative integer"), opt, val);
	unsigned long long v = strtoull(val, &end, 10);
	if (*end || (errno && errno != ERANGE)) return lm_err(_("%s: '%s' is not a non-negative integer"), opt, val);
	if (errno == ERANGE) return lm_err(_("%s: %s is too large (at most %llu)"), opt, val, (unsigned long long)UINT64_MAX);
	*out = v;
	return LM_OK;
}

int opt_float(const char *opt, const char *val, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(val, &end);
	if (!*val || *end || errno || !isfinite(v)) return lm_err(_("%s: '%s' is not a number"), opt, val);
	if (v < lo || v > hi) return lm_err(_("%s: %g is out of range [%g, %g]"), opt, v, lo, hi);
	*out = v;
	return LM_OK;
}

int opt_kv_capacity(const char *opt, const char *val, struct kv_capacity *out)
{
	char *end;
	errno = 0;
	double v = strtod(val, &end);
	if (end == val || errno || !isfinite(v) || v <= 0)
		return lm_err(_("%s: '%s' is neither a fraction in (0,1) nor a size such as 6GiB, 512MiB or 32768tok"),
			      opt, val);
	memset(out, 0, sizeof *out);
	if (!*end) {
		if (v >= 1.0)
			return lm_err(_("%s: a fraction must lie in (0,1); for an absolute size add a unit (GiB, MiB, tok)"),
				      opt);
		out->kind = KVCAP_FRACTION;
		out->fraction = v;
		return LM_OK;
	}
	static const struct { const char *unit; double mul; } units[] = {
		{ "B", 1 }, { "KB", 1e3 }, { "MB", 1e6 }, { "GB", 1e9 }, { "KiB", 1024.0 }, { "MiB", 1048576.0 },
		{ "GiB", 1073741824.0 }, { "K", 1024.0 }, { "M", 1048576.0 }, { "G", 1073741824.0 },
	};
	if (strcasecmp(end, "tok") == 0 || strcasecmp(end, "tokens") == 0) {
		if (v != floor(v)) return lm_err(_("%s: '%s': a token count must be a whole number"), opt, val);
		if (v > 1e12) return lm_err(_("%s: '%s' is too large"), opt, val);
		out->kind = KVCAP_TOKENS;
		out->tokens = (uint64_t)v;
		return LM_OK;
	}
	for (size_t i = 0; i < ARRAY_SIZE(units); i++)
		if (strcmp(end, units[i].unit) == 0) {
			if (v * units[i].mul > 1e18) /* beyond any memory, and beyond uint64_t a little further */
				return lm_err(_("%s: '%s' is too large"), opt, val);
			out->kind = KVCAP_BYTES;
			out->bytes = (uint64_t)(v * units[i].mul);
			return LM_OK;
		}
	return lm_err(_("%s: unknown unit '%s' in '%s' (use B, KiB, MiB, GiB, KB, MB, GB or tok)"), opt, end, val);
}

int opt_backend(const char **val)
{
	/* LMDeploy's --backend picks one of its two engines; lmterm has one, which runs where "auto" says, so a
	 * command copied from an LMDeploy tutorial works as it is */
	if (!strcmp(*val, "turbomind") || !strcmp(*val, "pytorch")) *val = "auto";
	if (strcmp(*val, "auto") && strcmp(*val, "cuda") && strcmp(*val, "cpu"))
		return lm_err(_("--backend: unknown backend '%s' (expected auto, cuda or cpu)"), *val);
	return LM_OK;
}

int opt_quant_policy(const char *opt, const char *val, int *out)
{
	if (strcmp(val, "0") == 0) *out = 0;
	else if (strcmp(val, "4") == 0) *out = 4;
	else if (strcmp(val, "8") == 0) *out = 8;
	else return lm_err(_("%s: '%s' is not a KV quant policy (0 = fp16/bf16, 8 = int8, 4 = int4)"), opt, val);
	return LM_OK;
}

int opt_dtype(const char *opt, const char *val, int *out)
{
	if (!strcmp(val, "auto")) *out = 0;
	else if (!strcmp(val, "float16")) *out = DT_F16;
	else if (!strcmp(val, "bfloat16")) *out = DT_BF16;
	else return lm_err(_("%s: '%s' is not auto, float16 or bfloat16"), opt, val);
	return LM_OK;
}

int opt_engine_extra(struct opt_iter *it, struct engine_extra *x)
{
	const char *n = it->name, *val;
	if (!n) return 0;
	char opt[80];
	snprintf(opt, sizeof opt, "--%s", n);
	if (!strcmp(n, "dtype")) {
		if (opt_value(it, &val) || opt_dtype(opt, val, &x->dtype)) return LM_ERR;
	} else if (!strcmp(n, "rope-scaling-factor")) {
		/* LMDeploy (TurboMind): a factor other than 0 makes the RoPE dynamic NTK with that factor */
		double f;
		if (opt_value(it, &val) || opt_float(opt, val, 0, 1e6, &f)) return LM_ERR;
		if (f > 0 && f < 1)
			return lm_err(_("%s: %g: the factor of dynamic NTK RoPE must be at least 1 (0 turns it off)"), opt, f);
		x->rope_scaling_factor = f;
	} else if (!strcmp(n, "eager-mode") || !strcmp(n, "enable-prefix-caching")) {
		/* flags in LMDeploy; a boolean value may follow here, as for --no-tui */
		bool b = true;
		const char *v = opt_value_optional(it, opt_is_bool);
		if (v && opt_bool(opt, v, &b)) return LM_ERR;
		/* prefix caching needs nothing: a conversation's KV cache is kept between turns, and a turn
		 * prefills only the tokens that differ from it, which is what the cache gives a single chat */
		if (!strcmp(n, "eager-mode")) x->eager = b;
	} else if (!strcmp(n, "tp")) { /* tensor parallelism: lmterm runs a model on one GPU */
		int tp;
		if (opt_value(it, &val) || opt_int(opt, val, 1, 1 << 10, &tp)) return LM_ERR;
		if (tp != 1) return lm_err(_("--tp %d: lmterm runs a model on one GPU (--tp 1)"), tp);
	} else if (!strcmp(n, "device")) {
		if (opt_value(it, &val)) return LM_ERR;
		if (strcmp(val, "cuda"))
			return lm_err(_("--device %s: lmterm runs on NVIDIA GPUs (cuda) or on the CPU (--backend cpu)"), val);
	} else if (!strcmp(n, "communicator")) { /* how TurboMind's GPUs talk: nothing to do on one GPU */
		if (opt_value(it, &val)) return LM_ERR;
		if (strcmp(val, "nccl") && strcmp(val, "native") && strcmp(val, "cuda-ipc"))
			return lm_err(_("--communicator: '%s' is not nccl, native or cuda-ipc"), val);
	} else if (!strcmp(n, "adapters")) {
		return lm_err(_("--adapters: LoRA adapters are not supported; merge the adapter into the model first "
				"(peft's merge_and_unload) and give the merged model's directory"));
	} else if (!strcmp(n, "revision") || !strcmp(n, "download-dir")) {
		return lm_err(_("%s: lmterm does not download models; download the model first (for example "
				"huggingface-cli download ORG/NAME --revision REV --local-dir DIR) and give its directory"),
			      opt);
	} else {
		return 0;
	}
	return 1;
}

/* org/name with the characters a Hugging Face model id may hold, and no path of its own */
static bool looks_like_hub_id(const char *s)
{
	const char *slash = strchr(s, '/');
	if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/') || s[0] == '.' || s[0] == '~') return false;
	for (const char *c = s; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("/._-", *c)) return false;
	return true;
}

int check_model_dir(const char *dir)
{
	struct stat st;
	if (stat(dir, &st) != 0) {
		int e = errno;
		if (e == ENOENT && looks_like_hub_id(dir))
			return lm_err(_("%s: no such directory. lmterm runs a model from a local directory and does not "
					"download it; if this is a Hugging Face model id, download it first, e.g. "
					"huggingface-cli download %s --local-dir %s"),
				      dir, dir, strchr(dir, '/') + 1);
		return lm_err("%s: %s", dir, strerror(e));
	}
	if (!S_ISDIR(st.st_mode))
		return lm_err(_("%s: not a directory (a model is a directory with config.json and its weights)"), dir);
	char cfg[4200];
	path_join(cfg, sizeof cfg, dir, "config.json");
	if (stat(cfg, &st) != 0) {
		/* a directory that cannot be read (no permission) was "not a model directory (no config.json)" */
		if (errno != ENOENT) return lm_err("%s: %s", cfg, strerror(errno));
		return lm_err(_("%s: not a model directory (no config.json)"), dir);
	}
	return LM_OK;
}

void opt_iter_init(struct opt_iter *it, int argc, char **argv)
{
	memset(it, 0, sizeof *it);
	it->argc = argc;
	it->argv = argv;
	it->i = 0;
}

int opt_next(struct opt_iter *it)
{
	if (it->i >= it->argc) return 0;
	const char *a = it->argv[it->i++];
	/* "--" ends the options, as getopt's does: `lmterm tokenize MODEL -- -x` had no way to say TEXT "-x" */
	if (!it->ended && strcmp(a, "--") == 0) {
		it->ended = true;
		if (it->i >= it->argc) return 0;
		a = it->argv[it->i++];
	}
	it->arg = a;
	it->value = NULL;
	it->name = NULL;
	if (it->ended) return 1;
	if (a[0] == '-' && a[1] == '-' && a[2]) {
		const char *eq = strchr(a + 2, '=');
		size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		if (n >= sizeof it->namebuf) n = sizeof it->namebuf - 1;
		memcpy(it->namebuf, a + 2, n);
		it->namebuf[n] = 0;
		/* LMDeploy's Python spelling (session_len) names the same option as its command line's (session-len) */
		for (char *c = it->namebuf; *c; c++)
			if (*c == '_') *c = '-';
		it->name = it->namebuf;
		if (eq) it->value = eq + 1;
	} else if (a[0] == '-' && a[1] && a[1] != '-' && !(isdigit((unsigned char)a[1]) || a[1] == '.')) {
		/* short option: -p, -n */
		snprintf(it->namebuf, sizeof it->namebuf, "%s", a + 1);
		it->name = it->namebuf;
	}
	return 1;
}

int opt_value(struct opt_iter *it, const char **val)
{
	if (it->value) { *val = it->value; return LM_OK; }
	if (it->i >= it->argc) return lm_err(_("option '%s' needs a value"), it->arg);
	*val = it->argv[it->i++];
	return LM_OK;
}

const char *opt_value_optional(struct opt_iter *it, bool (*accept)(const char *))
{
	if (it->value) return it->value;
	if (it->i < it->argc && it->argv[it->i][0] != '-' && (!accept || accept(it->argv[it->i])))
		return it->argv[it->i++];
	return NULL;
}

void note_sliding_window(const struct model_config *c, int tokens)
{
	if (c->sliding_window > 0 && tokens > c->sliding_window)
		fprintf(stderr, _("lmterm: note: this model attends to its last %d tokens only (sliding_window in "
				  "config.json), which lmterm does not do: past %d tokens, the output differs from "
				  "transformers'\n"), c->sliding_window, c->sliding_window);
}

/* Whether this process is the lmterm that make built in the build tree (its executable lies in LMTERM_BUILDDIR),
 * not an installed copy: only that one may read the source tree, which an installed program must not depend on
 * (it may have been moved, changed or deleted). Decided at run time because make install copies the same binary.
 * Without /proc (not Linux) the answer is no: the installed paths, or LMTERM_DEMO_MODEL, are used. */
static bool running_from_build_tree(void)
{
	char exe[4096], builddir[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0) return false;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (!slash) return false;
	*slash = '\0';
	/* /proc/self/exe is already resolved; resolve the build directory the same way */
	return realpath(LMTERM_BUILDDIR, builddir) && strcmp(exe, builddir) == 0;
}

const char *demo_model_dir(void)
{
	static char buf[4096];
	const char *env = getenv("LMTERM_DEMO_MODEL");
	if (env && *env) return env;
	/* the uninstalled binary opens the source tree's model, not whatever an earlier make install left */
	if (running_from_build_tree())
		snprintf(buf, sizeof buf, "%s/models/tiny-en-zh", LMTERM_SRCDIR);
	else
		snprintf(buf, sizeof buf, "%s/models/tiny-en-zh", PKGDATADIR);
	return buf;
}
