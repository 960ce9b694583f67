/* calib.c: calibration datasets (see calib.h). */
#include "config.h"
#include "calib.h"
#include "i18n.h"
#include "tok.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name, *file, *url;
} datasets[] = {
	{ "ptb", "ptb.train.txt", "https://raw.githubusercontent.com/tomsercu/lstm/master/data/ptb.train.txt" },
	{ "wikitext2", "wiki.train.raw",
	  "https://huggingface.co/datasets/Salesforce/wikitext (wikitext-2-raw-v1: wiki.train.raw)" },
	{ "c4", "c4.jsonl",
	  "https://huggingface.co/datasets/allenai/c4 (en/c4-train.00000-of-01024.json.gz, gunzip to c4.jsonl)" },
	{ "pileval", "pileval.jsonl",
	  "https://huggingface.co/datasets/mit-han-lab/pile-val-backup (val.jsonl.zst, unzstd to pileval.jsonl)" },
};

static void cache_dir(char *out, size_t n)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	if (xdg && *xdg) snprintf(out, n, "%s/lmterm/datasets", xdg);
	else snprintf(out, n, "%s/.cache/lmterm/datasets", home && *home ? home : ".");
}

int calib_resolve(const char *arg, char *out, size_t n)
{
	for (size_t i = 0; i < ARRAY_SIZE(datasets); i++) {
		if (strcmp(arg, datasets[i].name) != 0) continue;
		const char *env = getenv("LMTERM_DATA");
		char cache[2048];
		cache_dir(cache, sizeof cache);
		if (env && *env) {
			path_join(out, n, env, datasets[i].file);
			if (file_exists(out)) return LM_OK;
		}
		path_join(out, n, cache, datasets[i].file);
		if (file_exists(out)) return LM_OK;
		return lm_err(_("--calib-dataset %s: %s not found; put it in %s%s%s (or point --calib-dataset at a "
				".txt or .jsonl file). Download: %s"),
			      arg, datasets[i].file, env && *env ? env : "", env && *env ? _(" ($LMTERM_DATA) or ") : "",
			      cache, datasets[i].url);
	}
	if (!file_exists(arg))
		return lm_err(_("--calib-dataset: '%s' is neither a dataset name (ptb, wikitext2, c4, pileval) nor an "
				"existing file"),
			      arg);
	snprintf(out, n, "%s", arg);
	return LM_OK;
}

/* A "\u0000" in a record's text would end the C string that cJSON returns, and the rest of the record with it
 * (a record that began with one gave "0 tokens, too short"). A NUL is no meaningful text: it becomes a space,
 * and the text after it is kept. An escaped backslash is stepped over whole: "\\u0000" is the text \u0000. */
static void nul_escapes_to_spaces(char *line)
{
	for (char *p = line; *p; p++) {
		if (*p != '\\' || !p[1]) continue;
		if (strncmp(p + 1, "u0000", 5) == 0) memcpy(p + 1, "u0020", 5);
		p++;
	}
}

int calib_read_text(const char *path, size_t max_bytes, char **text, size_t *len)
{
	char *buf;
	size_t n;
	if (read_file(path, &buf, &n) != LM_OK) return LM_ERR;
	if (!ends_with(path, ".jsonl") && !ends_with(path, ".json")) {
		if (max_bytes && n > max_bytes) buf[n = max_bytes] = 0;
		*text = buf;
		*len = n;
		return LM_OK;
	}
	/* jsonl: one record per line with a "text" string */
	size_t cap = n + 1, used = 0;
	char *out = malloc(cap);
	if (!out) { free(buf); return lm_err(_("%s: out of memory"), path); }
	int line = 0, records = 0;
	for (char *p = buf, *e; p < buf + n; p = e + 1) {
		e = memchr(p, '\n', buf + n - p);
		if (!e) e = buf + n;
		line++;
		*e = 0;
		if (strspn(p, " \t\r") == (size_t)(e - p)) continue;
		nul_escapes_to_spaces(p);
		/* one JSON value per line, as json.loads reads it: what follows the object is not skipped ("{...} x",
		 * or two records run together, of which the second was lost) */
		const char *rest = NULL;
		cJSON *j = cJSON_ParseWithOpts(p, &rest, false);
		const cJSON *t = j ? cJSON_GetObjectItemCaseSensitive(j, "text") : NULL;
		if (!cJSON_IsString(t) || strspn(rest, " \t\r") != strlen(rest)) {
			cJSON_Delete(j);
			free(buf);
			free(out);
			return lm_err(_("%s:%d: not a JSON object with a \"text\" string"), path, line);
		}
		size_t tl = strlen(t->valuestring);
		if (used + tl + 2 >= cap) { /* cannot happen: a record's text is shorter than its line */
			cJSON_Delete(j);
			break;
		}
		if (records++) { out[used++] = '\n'; out[used++] = '\n'; }
		memcpy(out + used, t->valuestring, tl);
		used += tl;
		cJSON_Delete(j);
		if (max_bytes && used >= max_bytes) break;
	}
	free(buf);
	out[used] = 0;
	*text = out;
	*len = used;
	return LM_OK;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

int calib_windows(const struct tokenizer *t, const char *text, size_t len, const char *path, int n_samples,
		  int seqlen, uint64_t seed, int32_t **ids_out)
{
	const size_t need = (size_t)n_samples * seqlen;
	/* Tokenize in pieces of about 256 KiB cut after a blank line (else a line end), which is where the
	 * text's own paragraphs end, so cutting changes almost nothing. Enough tokens for 8x the windows are
	 * plenty of choice; stopping there keeps huge datasets (c4) quick. */
	size_t cap = 1 << 16, n = 0;
	int32_t *all = malloc(cap * sizeof *all);
	if (!all) return lm_err(_("out of memory"));
	const size_t piece = 256 * 1024;
	for (size_t off = 0; off < len && n < 8 * need;) {
		size_t end = off + piece < len ? off + piece : len;
		if (end < len) {
			const char *cut = NULL;
			for (const char *p = text + end; p > text + off + piece / 2; p--)
				if (p[-1] == '\n' && p[-2] == '\n') { cut = p; break; }
			if (!cut) {
				const char *nl = memchr(text + end, '\n', len - end);
				cut = nl ? nl + 1 : text + len;
			}
			end = cut - text;
		}
		int32_t *ids;
		int k;
		if (tok_encode(t, text + off, end - off, false, &ids, &k) != LM_OK) {
			free(all);
			return lm_err_prefix("%s: ", path);
		}
		if (n + k > cap) {
			while (n + k > cap) cap *= 2;
			int32_t *na = realloc(all, cap * sizeof *all);
			if (!na) { free(ids); free(all); return lm_err(_("out of memory")); }
			all = na;
		}
		memcpy(all + n, ids, k * sizeof *ids);
		n += k;
		free(ids);
		off = end;
	}
	if (n < need) {
		free(all);
		char has[48], needs[48];
		snprintf(has, sizeof has, P_("%zu token", "%zu tokens", n), n);
		snprintf(needs, sizeof needs, P_("%zu token", "%zu tokens", need), need);
		/* TRANSLATORS: the first %s is the text's "%zu tokens", the last %s the "%zu tokens" needed */
		return lm_err(_("%s: %s, too short for --calib-samples %d x --calib-seqlen %d = %s"), path, has,
			      n_samples, seqlen, needs);
	}
	int32_t *ids = malloc(need * sizeof *ids);
	if (!ids) { free(all); return lm_err(_("out of memory")); }
	uint64_t s = seed;
	for (int i = 0; i < n_samples; i++) {
		size_t start = n == (size_t)seqlen ? 0 : splitmix64(&s) % (n - seqlen + 1);
		memcpy(ids + (size_t)i * seqlen, all + start, seqlen * sizeof *ids);
	}
	free(all);
	*ids_out = ids;
	return LM_OK;
}
