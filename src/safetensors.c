/* safetensors.c: the safetensors format (an 8-byte little-endian header length, a JSON header, then the raw
 * tensor bytes), read through mmap and validated before anyone touches a tensor, and written the way the
 * Python library writes it. A header is untrusted input: every number in it is checked against the file's
 * real size before it becomes a pointer. */
#include "config.h"
#include "safetensors.h"
#include "i18n.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The Python library refuses headers above 100 MB; a real header is a few hundred kB at most. */
#define ST_MAX_HEADER (100u << 20)
/* Integers in the header must be exact in a double (cJSON parses numbers as doubles). */
#define ST_MAX_INT 9007199254740992.0 /* 2^53 */

struct st_file {
	char *path;
	void *map;        /* whole file, read-only */
	size_t size;
	int n;
	struct st_tensor *t;        /* [n] in header order */
	const struct st_tensor **by_name; /* [n] sorted by name, for st_find */
	int n_meta;
	char **meta;                /* [2 * n_meta]: key, value */
};

static int cmp_tensor_name(const void *a, const void *b)
{
	const struct st_tensor *x = *(const struct st_tensor *const *)a, *y = *(const struct st_tensor *const *)b;
	return strcmp(x->name, y->name);
}

static const struct st_tensor *find_sorted(const struct st_tensor *const *v, int n, const char *name)
{
	int lo = 0, hi = n - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2, c = strcmp(v[mid]->name, name);
		if (c == 0) return v[mid];
		if (c < 0) lo = mid + 1;
		else hi = mid - 1;
	}
	return NULL;
}

/* A non-negative integer that a double holds exactly. */
static int json_uint(const cJSON *j, uint64_t *out)
{
	if (!cJSON_IsNumber(j)) return LM_ERR;
	double d = j->valuedouble;
	if (!(d >= 0) || d > ST_MAX_INT || d != floor(d)) return LM_ERR;
	*out = (uint64_t)d;
	return LM_OK;
}

struct span { uint64_t begin, end; int idx; };

static int cmp_span(const void *a, const void *b)
{
	const struct span *x = a, *y = b;
	if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end) return x->end < y->end ? -1 : 1;
	return 0;
}

void st_close(struct st_file *f)
{
	if (!f) return;
	if (f->map && f->map != MAP_FAILED) munmap(f->map, f->size);
	for (int i = 0; i < f->n; i++) free((char *)f->t[i].name);
	free(f->t);
	free(f->by_name);
	for (int i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
	free(f->meta);
	free(f->path);
	free(f);
}

static int parse_metadata(struct st_file *f, const cJSON *m)
{
	if (!cJSON_IsObject(m)) return lm_err(_("%s: __metadata__ is not a JSON object"), f->path);
	int n = cJSON_GetArraySize(m);
	f->meta = calloc((size_t)2 * n + 1, sizeof *f->meta);
	if (!f->meta) return lm_err(_("%s: out of memory"), f->path);
	for (const cJSON *e = m->child; e; e = e->next) {
		if (!cJSON_IsString(e))
			return lm_err(_("%s: __metadata__ key '%s': value is not a string"), f->path, e->string);
		f->meta[2 * f->n_meta] = strdup(e->string);
		f->meta[2 * f->n_meta + 1] = strdup(e->valuestring);
		f->n_meta++;
		if (!f->meta[2 * f->n_meta - 2] || !f->meta[2 * f->n_meta - 1])
			return lm_err(_("%s: out of memory"), f->path);
	}
	return LM_OK;
}

/* One header entry: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, offsets relative to the
 * data section of data_len bytes. */
static int parse_tensor(struct st_file *f, struct st_tensor *t, const cJSON *e, const uint8_t *data, uint64_t data_len,
			struct span *sp)
{
	const char *name = e->string;
	if (!cJSON_IsObject(e)) return lm_err(_("%s: tensor '%s': header entry is not a JSON object"), f->path, name);
	const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
	const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
	const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
	if (!cJSON_IsString(jd)) return lm_err(_("%s: tensor '%s': missing or non-string \"dtype\""), f->path, name);
	if (dtype_from_name(jd->valuestring, &t->dt) != LM_OK)
		return lm_err(_("%s: tensor '%s': unknown dtype \"%s\""), f->path, name, jd->valuestring);
	if (!cJSON_IsArray(js)) return lm_err(_("%s: tensor '%s': missing or non-array \"shape\""), f->path, name);
	int nd = cJSON_GetArraySize(js);
	if (nd > ST_MAX_DIMS)
		return lm_err(_("%s: tensor '%s': %d dimensions (at most %d supported)"), f->path, name, nd, ST_MAX_DIMS);
	t->ndim = nd;
	/* element count, checked against overflow: it must fit in the data section anyway */
	uint64_t count = 1;
	bool huge = false;
	int k = 0;
	for (const cJSON *d = js->child; d; d = d->next, k++) {
		uint64_t v;
		if (json_uint(d, &v) != LM_OK)
			return lm_err(_("%s: tensor '%s': shape entry %d is not a non-negative integer"), f->path, name, k);
		t->shape[k] = (int64_t)v;
		if (v != 0 && count > UINT64_MAX / v) huge = true;
		else count *= v;
	}
	if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
		return lm_err(_("%s: tensor '%s': \"data_offsets\" is not an array of two integers"), f->path, name);
	uint64_t b, en;
	if (json_uint(jo->child, &b) != LM_OK || json_uint(jo->child->next, &en) != LM_OK)
		return lm_err(_("%s: tensor '%s': \"data_offsets\" is not an array of two integers"), f->path, name);
	if (b > en)
		return lm_err(_("%s: tensor '%s': data_offsets [%llu, %llu]: begin after end"), f->path, name,
			      (unsigned long long)b, (unsigned long long)en);
	if (en > data_len)
		return lm_err(P_("%s: tensor '%s': data_offsets [%llu, %llu] past the end of the file "
				 "(data section is %llu byte)",
				 "%s: tensor '%s': data_offsets [%llu, %llu] past the end of the file "
				 "(data section is %llu bytes)",
				 data_len),
			      f->path, name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)data_len);
	uint64_t es = dtype_size(t->dt);
	if (count && es > UINT64_MAX / count) huge = true;
	if (huge || count * es != en - b) {
		char sh[256];
		int p = 0;
		sh[0] = 0;
		for (int i = 0; i < nd && p < (int)sizeof sh - 24; i++)
			p += snprintf(sh + p, sizeof sh - p, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
		if (huge)
			return lm_err(P_("%s: tensor '%s': %llu byte in data_offsets, but %s [%s] needs more than 2^64",
					 "%s: tensor '%s': %llu bytes in data_offsets, but %s [%s] needs more than 2^64",
					 en - b),
				      f->path, name, (unsigned long long)(en - b), jd->valuestring, sh);
		return lm_err(P_("%s: tensor '%s': %llu byte in data_offsets, but %s [%s] needs %llu",
				 "%s: tensor '%s': %llu bytes in data_offsets, but %s [%s] needs %llu", en - b),
			      f->path, name, (unsigned long long)(en - b), jd->valuestring, sh,
			      (unsigned long long)(count * es));
	}
	t->name = strdup(name);
	if (!t->name) return lm_err(_("%s: out of memory"), f->path);
	t->data = data + b;
	t->bytes = (size_t)(en - b);
	t->file = f->path;
	sp->begin = b;
	sp->end = en;
	return LM_OK;
}

static int parse_header(struct st_file *f, const char *json, size_t hlen)
{
	const uint8_t *data = (const uint8_t *)f->map + 8 + hlen;
	uint64_t data_len = f->size - 8 - hlen;
	const char *endp = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(json, hlen, &endp, false);
	if (!root) {
		size_t at = endp && endp >= json && endp <= json + hlen ? (size_t)(endp - json) : 0;
		return lm_err(_("%s: header is not valid JSON (near byte %zu of %zu)"), f->path, at, hlen);
	}
	/* only padding (spaces, as the Python library writes, or NULs) may follow the JSON object */
	for (const char *p = endp; p && p < json + hlen; p++)
		if (*p != ' ' && *p != '\0' && *p != '\n' && *p != '\t' && *p != '\r') {
			cJSON_Delete(root);
			return lm_err(_("%s: header has trailing bytes after the JSON object"), f->path);
		}
	int rc = LM_OK;
	struct span *sp = NULL;
	if (!cJSON_IsObject(root)) {
		rc = lm_err(_("%s: header is not a JSON object"), f->path);
		goto out;
	}
	int n = cJSON_GetArraySize(root);
	f->t = calloc((size_t)n + 1, sizeof *f->t);
	f->by_name = calloc((size_t)n + 1, sizeof *f->by_name);
	sp = calloc((size_t)n + 1, sizeof *sp);
	if (!f->t || !f->by_name || !sp) {
		rc = lm_err(_("%s: out of memory"), f->path);
		goto out;
	}
	for (const cJSON *e = root->child; e; e = e->next) {
		if (strcmp(e->string, "__metadata__") == 0) {
			if (f->meta) {
				rc = lm_err(_("%s: __metadata__ appears twice"), f->path);
				goto out;
			}
			if ((rc = parse_metadata(f, e)) != LM_OK) goto out;
			continue;
		}
		if ((rc = parse_tensor(f, &f->t[f->n], e, data, data_len, &sp[f->n])) != LM_OK) goto out;
		sp[f->n].idx = f->n;
		f->by_name[f->n] = &f->t[f->n];
		f->n++;
	}
	/* names unique */
	qsort(f->by_name, f->n, sizeof *f->by_name, cmp_tensor_name);
	for (int i = 1; i < f->n; i++)
		if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0) {
			rc = lm_err(_("%s: tensor '%s' appears twice in the header"), f->path, f->by_name[i]->name);
			goto out;
		}
	/* no two tensors share a byte (empty tensors occupy none) */
	qsort(sp, f->n, sizeof *sp, cmp_span);
	int last = -1; /* the span reaching furthest so far */
	for (int i = 0; i < f->n; i++) {
		if (sp[i].begin == sp[i].end) continue;
		if (last >= 0 && sp[i].begin < sp[last].end) {
			rc = lm_err(_("%s: tensor '%s' (bytes %llu..%llu) overlaps tensor '%s' (bytes %llu..%llu)"), f->path,
				    f->t[sp[i].idx].name, (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end,
				    f->t[sp[last].idx].name, (unsigned long long)sp[last].begin,
				    (unsigned long long)sp[last].end);
			goto out;
		}
		if (last < 0 || sp[i].end > sp[last].end) last = i;
	}
out:
	free(sp);
	cJSON_Delete(root);
	return rc;
}

int st_open(struct st_file **out, const char *path)
{
	*out = NULL;
	struct st_file *f = calloc(1, sizeof *f);
	if (!f || !(f->path = strdup(path))) {
		free(f);
		return lm_err(_("%s: out of memory"), path);
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		st_close(f);
		return lm_err(_("%s: cannot open: %s"), path, strerror(e));
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		st_close(f);
		return lm_err(_("%s: not a regular file"), path);
	}
	f->size = (size_t)st.st_size;
	if (f->size < 8) {
		close(fd);
		st_close(f);
		return lm_err(P_("%s: truncated: %zu byte, too short for a safetensors header",
				 "%s: truncated: %zu bytes, too short for a safetensors header", (size_t)st.st_size),
			      path, (size_t)st.st_size);
	}
	f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
	int e = errno;
	close(fd);
	if (f->map == MAP_FAILED) {
		f->map = NULL;
		st_close(f);
		return lm_err(_("%s: cannot map: %s"), path, strerror(e));
	}
	const uint8_t *p = f->map;
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i]; /* little-endian on any host */
	if (hlen > ST_MAX_HEADER)
		lm_err(_("%s: header length %llu is not plausible (corrupt or not a safetensors file)"), path,
		       (unsigned long long)hlen);
	else if (hlen > f->size - 8)
		lm_err(_("%s: truncated: header length %llu runs past the end of the file (%zu bytes)"), path,
		       (unsigned long long)hlen, f->size);
	else if (hlen < 2)
		lm_err(_("%s: header is not valid JSON (length %llu)"), path, (unsigned long long)hlen);
	else if (parse_header(f, (const char *)p + 8, (size_t)hlen) == LM_OK) {
		*out = f;
		return LM_OK;
	}
	st_close(f);
	return LM_ERR;
}

int st_count(const struct st_file *f) { return f->n; }
const struct st_tensor *st_get(const struct st_file *f, int i) { return i >= 0 && i < f->n ? &f->t[i] : NULL; }
const struct st_tensor *st_find(const struct st_file *f, const char *name)
{
	return find_sorted(f->by_name, f->n, name);
}

const char *st_metadata(const struct st_file *f, const char *key)
{
	for (int i = 0; i < f->n_meta; i++)
		if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
	return NULL;
}

/* ---- sharded sets ---- */

struct st_set {
	int n_files;
	struct st_file **files;
	int n;
	const struct st_tensor **t;       /* [n] all tensors, shard by shard */
	const struct st_tensor **by_name; /* [n] sorted */
	char local[32], prefix[64];       /* st_set_prefix: a name starting with local is read as prefix + the rest */
};

void st_set_close(struct st_set *s)
{
	if (!s) return;
	for (int i = 0; i < s->n_files; i++) st_close(s->files[i]);
	free(s->files);
	free(s->t);
	free(s->by_name);
	free(s);
}

/* A shard file name from the index must stay in the model directory. */
static bool shard_name_ok(const char *name)
{
	if (!*name || name[0] == '/') return false;
	for (const char *p = name; *p; p++)
		if (p[0] == '.' && p[1] == '.' && (p == name || p[-1] == '/') && (p[2] == '/' || p[2] == 0)) return false;
	return true;
}

static int set_add_file(struct st_set *s, const char *path)
{
	struct st_file **nf = realloc(s->files, (size_t)(s->n_files + 1) * sizeof *nf);
	if (!nf) return lm_err(_("%s: out of memory"), path);
	s->files = nf;
	if (st_open(&s->files[s->n_files], path) != LM_OK) return LM_ERR;
	s->n_files++;
	return LM_OK;
}

static int set_index(struct st_set *s)
{
	int n = 0;
	for (int i = 0; i < s->n_files; i++) n += s->files[i]->n;
	s->t = calloc((size_t)n + 1, sizeof *s->t);
	s->by_name = calloc((size_t)n + 1, sizeof *s->by_name);
	if (!s->t || !s->by_name) return lm_err(_("out of memory indexing safetensors"));
	for (int i = 0; i < s->n_files; i++)
		for (int j = 0; j < s->files[i]->n; j++) s->t[s->n++] = &s->files[i]->t[j];
	memcpy(s->by_name, s->t, (size_t)n * sizeof *s->t);
	qsort(s->by_name, n, sizeof *s->by_name, cmp_tensor_name);
	for (int i = 1; i < n; i++)
		if (strcmp(s->by_name[i - 1]->name, s->by_name[i]->name) == 0)
			return lm_err(_("tensor '%s' is in both %s and %s"), s->by_name[i]->name, s->by_name[i - 1]->file,
				      s->by_name[i]->file);
	return LM_OK;
}

/* A shard of the set that the index does not name is never opened, so a tensor only there is missing: an
 * lm_head alone in the last shard, left out of the index, made the model tie its embeddings without a word.
 * The shard names say how many there are ("model-00002-of-00002.safetensors"): each one of that pattern that
 * exists but is not named is refused, naming a tensor it holds. Only the headers of such files are read. */
static int unnamed_shards(const struct st_set *s, const char *dir, const char *ipath, const char *named)
{
	const char *of = strstr(named, "-of-"), *num = of;
	while (num && num > named && num[-1] >= '0' && num[-1] <= '9') num--;
	char *end;
	long total = of ? strtol(of + 4, &end, 10) : 0;
	if (!of || num == of || of - num > 6 || total < 1 || total > 99999 || strcmp(end, ".safetensors") != 0)
		return LM_OK; /* not a numbered set: nothing to compare */
	char name[4096], path[4096];
	for (long i = 1; i <= total; i++) {
		snprintf(name, sizeof name, "%.*s%0*ld%s", (int)(num - named), named, (int)(of - num), i, of);
		path_join(path, sizeof path, dir, name);
		bool named_too = false;
		for (int k = 0; k < s->n_files && !named_too; k++) named_too = strcmp(s->files[k]->path, path) == 0;
		if (named_too || !file_exists(path)) continue;
		struct st_file *f;
		if (st_open(&f, path) != LM_OK) return LM_ERR;
		int n = f->n;
		int rc = n == 0 ? LM_OK
				: lm_err(P_("%s: shard %s is not in weight_map, but holds %d tensor ('%s'); add it to the "
					    "index or remove the file",
					    "%s: shard %s is not in weight_map, but holds %d tensors ('%s', ...); add them to "
					    "the index or remove the file",
					    n),
					 ipath, name, n, f->t[0].name);
		st_close(f);
		if (rc != LM_OK) return rc;
	}
	return LM_OK;
}

static int open_index(struct st_set *s, const char *dir, const char *ipath)
{
	char *buf;
	size_t len;
	if (read_file(ipath, &buf, &len) != LM_OK) return LM_ERR;
	cJSON *root = cJSON_ParseWithLength(buf, len);
	free(buf);
	if (!root) return lm_err(_("%s: not valid JSON"), ipath);
	int rc = LM_OK;
	const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	if (!cJSON_IsObject(wm)) {
		rc = lm_err(_("%s: key \"weight_map\": missing or not an object"), ipath);
		goto out;
	}
	/* open each distinct shard once, in order of first mention */
	char path[4096];
	for (const cJSON *e = wm->child; e; e = e->next) {
		if (!cJSON_IsString(e)) {
			rc = lm_err(_("%s: weight_map entry '%s': shard name is not a string"), ipath, e->string);
			goto out;
		}
		if (!shard_name_ok(e->valuestring)) {
			rc = lm_err(_("%s: weight_map entry '%s': shard name \"%s\" leaves the model directory"), ipath,
				    e->string, e->valuestring);
			goto out;
		}
		path_join(path, sizeof path, dir, e->valuestring);
		bool seen = false;
		for (int i = 0; i < s->n_files && !seen; i++) seen = strcmp(s->files[i]->path, path) == 0;
		if (seen) continue;
		if (!file_exists(path)) {
			rc = lm_err(_("%s: shard %s (named for tensor '%s') does not exist"), ipath, path, e->string);
			goto out;
		}
		if ((rc = set_add_file(s, path)) != LM_OK) goto out;
	}
	if (s->n_files == 0) {
		rc = lm_err(_("%s: key \"weight_map\" names no tensors"), ipath);
		goto out;
	}
	if ((rc = unnamed_shards(s, dir, ipath, wm->child->valuestring)) != LM_OK) goto out;
	/* every tensor the index names is where it says */
	for (const cJSON *e = wm->child; e; e = e->next) {
		path_join(path, sizeof path, dir, e->valuestring);
		for (int i = 0; i < s->n_files; i++)
			if (strcmp(s->files[i]->path, path) == 0 && !st_find(s->files[i], e->string)) {
				rc = lm_err(_("%s: tensor '%s' is not in shard %s, where the index says it is"), ipath,
					    e->string, path);
				goto out;
			}
	}
out:
	cJSON_Delete(root);
	return rc;
}

/* No safetensors: say what is there instead, when it is weights in a format lmterm does not read. */
static int no_weights(const char *dir)
{
	char path[4096];
	static const char *const bin[] = { "pytorch_model.bin", "pytorch_model.bin.index.json", "model.bin" };
	for (size_t i = 0; i < sizeof bin / sizeof *bin; i++) {
		path_join(path, sizeof path, dir, bin[i]);
		if (file_exists(path))
			return lm_err(_("%s: no model.safetensors or model.safetensors.index.json: the weights are PyTorch "
					"files (%s), which lmterm does not read; save them as safetensors (transformers: "
					"model.save_pretrained(dir, safe_serialization=True))"),
				      dir, bin[i]);
	}
	DIR *d = opendir(dir);
	const struct dirent *e;
	char gguf[256] = "";
	while (d && (e = readdir(d)) && !gguf[0])
		if (ends_with(e->d_name, ".gguf")) snprintf(gguf, sizeof gguf, "%s", e->d_name);
	if (d) closedir(d);
	if (gguf[0])
		return lm_err(_("%s: no model.safetensors or model.safetensors.index.json: %s is a GGUF file "
				"(llama.cpp's format), which lmterm does not read; use the model's Hugging Face directory"),
			      dir, gguf);
	return lm_err(_("%s: no model.safetensors or model.safetensors.index.json"), dir);
}

int st_set_open(struct st_set **out, const char *dir)
{
	*out = NULL;
	struct st_set *s = calloc(1, sizeof *s);
	if (!s) return lm_err(_("%s: out of memory"), dir);
	char path[4096];
	int rc;
	path_join(path, sizeof path, dir, "model.safetensors.index.json");
	if (file_exists(path)) {
		rc = open_index(s, dir, path);
	} else {
		path_join(path, sizeof path, dir, "model.safetensors");
		if (file_exists(path)) rc = set_add_file(s, path);
		else rc = no_weights(dir);
	}
	if (rc == LM_OK) rc = set_index(s);
	if (rc != LM_OK) {
		st_set_close(s);
		return LM_ERR;
	}
	*out = s;
	return LM_OK;
}

int st_set_count(const struct st_set *s) { return s->n; }
const struct st_tensor *st_set_get(const struct st_set *s, int i) { return i >= 0 && i < s->n ? s->t[i] : NULL; }
const struct st_tensor *st_set_find(const struct st_set *s, const char *name)
{
	if (!s->prefix[0] && !s->local[0]) return find_sorted(s->by_name, s->n, name);
	char full[512];
	size_t nl = strlen(s->local), n = strlen(name);
	if ((strncmp(name, s->local, nl) == 0 ? strlen(s->prefix) + n - nl : n) >= sizeof full) return NULL;
	return find_sorted(s->by_name, s->n, st_set_full(s, name, full, sizeof full));
}

int st_set_prefix(struct st_set *s, const char *local, const char *prefix)
{
	if (strlen(prefix) >= sizeof s->prefix || strlen(local) >= sizeof s->local)
		return lm_err(_("tensor name prefix '%s' is too long"), strlen(prefix) >= sizeof s->prefix ? prefix : local);
	snprintf(s->local, sizeof s->local, "%s", local);
	snprintf(s->prefix, sizeof s->prefix, "%s", prefix);
	return LM_OK;
}

/* The local name whose full name is full: local + the rest where full starts with prefix; else full itself,
 * unless it starts with local (the full name of such a local name is elsewhere: full is outside). */
const char *st_set_local(const struct st_set *s, const char *full, char *buf, size_t len)
{
	size_t np = strlen(s->prefix), nl = strlen(s->local);
	if (strncmp(full, s->prefix, np) == 0) {
		if (snprintf(buf, len, "%s%s", s->local, full + np) >= (int)len) return NULL;
		return buf;
	}
	if (strncmp(full, s->local, nl) == 0) return NULL;
	if (snprintf(buf, len, "%s", full) >= (int)len) return NULL;
	return buf;
}

const char *st_set_full(const struct st_set *s, const char *name, char *buf, size_t len)
{
	size_t nl = strlen(s->local);
	if (strncmp(name, s->local, nl) == 0) snprintf(buf, len, "%s%s", s->prefix, name + nl);
	else snprintf(buf, len, "%s", name);
	return buf;
}

/* ---- writing ---- */

static size_t out_bytes(const struct st_out *t)
{
	size_t n = dtype_size(t->dt);
	for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
	return n;
}

static int write_all(FILE *fp, const void *p, size_t n)
{
	return n == 0 || fwrite(p, 1, n, fp) == n ? LM_OK : LM_ERR;
}

/* The signals that end a process by default, held back while st_write has a temporary file: where one still has
 * its default action (handled or ignored ones are the program's business), a handler notes it instead, and it
 * is raised again with the default action restored once the file is in place or removed. Blocking would not do:
 * the backend's worker threads would receive it. */
static const int stop_signals[] = { SIGINT, SIGTERM, SIGHUP };
#define N_STOP_SIGNALS ((int)(sizeof stop_signals / sizeof stop_signals[0]))
static volatile sig_atomic_t stop_pending;

static void on_stop_signal(int sig) { stop_pending = sig; }

static bool stop_signals_hold(struct sigaction *old)
{
	stop_pending = 0;
	for (int i = 0; i < N_STOP_SIGNALS; i++) {
		sigaction(stop_signals[i], NULL, &old[i]);
		if (old[i].sa_handler != SIG_DFL || (old[i].sa_flags & SA_SIGINFO)) continue;
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_stop_signal;
		sa.sa_flags = SA_RESTART;
		sigemptyset(&sa.sa_mask);
		sigaction(stop_signals[i], &sa, NULL);
	}
	return true;
}

static void stop_signals_release(const struct sigaction *old)
{
	for (int i = 0; i < N_STOP_SIGNALS; i++)
		if (old[i].sa_handler == SIG_DFL && !(old[i].sa_flags & SA_SIGINFO)) sigaction(stop_signals[i], &old[i], NULL);
	if (stop_pending) raise(stop_pending);
}

int st_write(const char *path, const struct st_out *t, int n, const char *const *meta_kv)
{
	/* the file is written beside the target and renamed over it: that would replace a directory's entry
	 * for a device, a FIFO or a socket (/dev/stdout, /dev/null as root) with a regular file */
	struct stat sb;
	if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
		return lm_err(_("%s: exists and is not a regular file; give the name of a file to write"), path);
	cJSON *root = cJSON_CreateObject();
	if (!root) return lm_err(_("%s: out of memory"), path);
	int rc = LM_OK;
	char *json = NULL;
	FILE *fp = NULL;
	bool held = false; /* the stop signals wait (stop_signals_release at out) */
	int sys_err = 0;   /* errno of a failed create, write or rename, left in errno for the caller */
	struct sigaction old_act[N_STOP_SIGNALS];
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path);
	if (meta_kv && meta_kv[0]) {
		cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
		for (int i = 0; m && meta_kv[i] && meta_kv[i + 1]; i += 2) cJSON_AddStringToObject(m, meta_kv[i], meta_kv[i + 1]);
	}
	uint64_t off = 0;
	for (int i = 0; i < n; i++) {
		if (t[i].dt >= DT_COUNT || dtype_size(t[i].dt) == 0 || t[i].ndim < 0 || t[i].ndim > ST_MAX_DIMS) {
			rc = lm_err(_("%s: tensor '%s': cannot write dtype %s with %d dimensions"), path, t[i].name,
				    dtype_name(t[i].dt), t[i].ndim);
			goto out;
		}
		if (cJSON_GetObjectItemCaseSensitive(root, t[i].name) || strcmp(t[i].name, "__metadata__") == 0) {
			rc = lm_err(_("%s: tensor '%s' given twice"), path, t[i].name);
			goto out;
		}
		cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
		cJSON *sh = cJSON_CreateArray();
		cJSON *of = cJSON_CreateArray();
		if (!e || !sh || !of) {
			cJSON_Delete(sh);
			cJSON_Delete(of);
			rc = lm_err(_("%s: out of memory"), path);
			goto out;
		}
		cJSON_AddStringToObject(e, "dtype", dtype_name(t[i].dt));
		for (int d = 0; d < t[i].ndim; d++) {
			if (t[i].shape[d] < 0) {
				cJSON_Delete(sh);
				cJSON_Delete(of);
				rc = lm_err(_("%s: tensor '%s': negative dimension"), path, t[i].name);
				goto out;
			}
			cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].shape[d]));
		}
		cJSON_AddItemToObject(e, "shape", sh);
		uint64_t b = out_bytes(&t[i]);
		cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
		cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + b)));
		cJSON_AddItemToObject(e, "data_offsets", of);
		off += b;
	}
	json = cJSON_PrintUnformatted(root);
	if (!json) {
		rc = lm_err(_("%s: out of memory"), path);
		goto out;
	}
	/* pad with spaces so the data section starts 8-byte aligned, as the Python library does */
	size_t jl = strlen(json), hl = (jl + 7) & ~(size_t)7;
	uint8_t len8[8];
	for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hl >> (8 * i));
	/* Ctrl-C (or SIGTERM, SIGHUP) while the temporary file exists would end the process and leave it behind, as
	 * big as the logits: such a signal waits until the file is renamed into place or removed */
	held = stop_signals_hold(old_act);
	/* a fresh name: an existing "PATH.tmp" of the user's is not overwritten */
	int fd = mkstemp(tmp);
	if (fd < 0 || !(fp = fdopen(fd, "wb"))) {
		sys_err = errno;
		rc = lm_err(_("%s: cannot create: %s"), path, strerror(sys_err)); /* the name given, not the temporary one */
		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		goto out;
	}
	mode_t um = umask(0); /* mkstemp makes it 0600; the result should look like any other new file */
	umask(um);
	fchmod(fd, 0666 & ~um);
	static const char spaces[8] = "        ";
	bool ok = write_all(fp, len8, 8) == LM_OK && write_all(fp, json, jl) == LM_OK &&
		  write_all(fp, spaces, hl - jl) == LM_OK;
	for (int i = 0; ok && i < n; i++) ok = write_all(fp, t[i].data, out_bytes(&t[i])) == LM_OK;
	if (fflush(fp) != 0) ok = false;
	int e = errno;
	if (fclose(fp) != 0) {
		ok = false;
		e = errno;
	}
	fp = NULL;
	if (!ok) {
		unlink(tmp);
		sys_err = e;
		rc = lm_err(_("%s: write error: %s"), path, strerror(e));
		goto out;
	}
	if (rename(tmp, path) != 0) {
		e = sys_err = errno;
		unlink(tmp);
		rc = lm_err(_("%s: cannot rename %s into place: %s"), path, tmp, strerror(e));
	}
out:
	if (held) stop_signals_release(old_act);
	free(json);
	cJSON_Delete(root);
	if (rc != LM_OK) errno = sys_err;
	return rc;
}
