/* safetensors.h: reading (mmap, validated header) and writing safetensors files, and sharded sets
 * (model.safetensors.index.json). Every error names the file and the tensor or key. */
#ifndef LMTERM_SAFETENSORS_H
#define LMTERM_SAFETENSORS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ST_MAX_DIMS 8

struct st_tensor {
	const char *name;
	enum dtype dt;
	int ndim;
	int64_t shape[ST_MAX_DIMS];
	const void *data;   /* inside the mapping; valid until the file is closed */
	size_t bytes;
	const char *file;   /* path of the file holding it */
};

struct st_file;
/* Map and validate: header JSON well formed, known dtypes, offsets inside the file, byte counts equal to
 * dtype size x shape, no overlapping tensors. */
int st_open(struct st_file **f, const char *path);
void st_close(struct st_file *f);
int st_count(const struct st_file *f);
const struct st_tensor *st_get(const struct st_file *f, int i);
const struct st_tensor *st_find(const struct st_file *f, const char *name);   /* NULL if absent */
const char *st_metadata(const struct st_file *f, const char *key);            /* __metadata__ value or NULL */

/* All tensors of a model directory: model.safetensors, or model.safetensors.index.json and its shards
 * (every shard named in the index must exist and hold the tensors the index says). */
struct st_set;
int st_set_open(struct st_set **s, const char *dir);
void st_set_close(struct st_set *s);
int st_set_count(const struct st_set *s);
const struct st_tensor *st_set_get(const struct st_set *s, int i);
const struct st_tensor *st_set_find(const struct st_set *s, const char *name); /* NULL if absent */
/* The names st_set_find is given are taken under a prefix, for the language model inside a vision-language
 * checkpoint: a name that starts with local is read as prefix + the rest of it; others as they are.
 * ("", "language_model.") puts every name under "language_model."; ("model.", "model.language_model.") reads
 * "model.layers.0..." as "model.language_model.layers.0..." and leaves "lm_head.weight" alone (LLaVA as
 * transformers 4.52 and later saves it).
 * st_set_full: the full name of a local one into buf, for messages and for writing. st_set_local: the local
 * name of a tensor's full name into buf, NULL when the tensor is outside (no local name gives it). */
int st_set_prefix(struct st_set *s, const char *local, const char *prefix);
const char *st_set_local(const struct st_set *s, const char *full, char *buf, size_t len);
const char *st_set_full(const struct st_set *s, const char *name, char *buf, size_t len);

/* Writing: tensors in the given order, 8-byte aligned header, optional __metadata__ (key, value pairs,
 * NULL-terminated list; may be NULL). Written to path.tmp and renamed, so a failure leaves no partial file.
 * On failure errno is the cause where creating, writing or renaming the file failed (ENOSPC: the disk is
 * full), else 0, for a caller that names the file in its own words. */
struct st_out {
	const char *name;
	enum dtype dt;
	int ndim;
	int64_t shape[ST_MAX_DIMS];
	const void *data;
};
int st_write(const char *path, const struct st_out *t, int n, const char *const *meta_kv);

#ifdef __cplusplus
}
#endif
#endif
