/* opts.h: strict parsing of option values. Every parser names the option in its message. */
#ifndef LMTERM_OPTS_H
#define LMTERM_OPTS_H

#include "common.h"
#include "engine.h"

/* true/false/yes/no/1/0 (any case) and nothing else */
int opt_bool(const char *opt, const char *val, bool *out);
/* whether val is one of those (a probe for opt_value_optional: it leaves no message) */
bool opt_is_bool(const char *val);
int opt_int(const char *opt, const char *val, long lo, long hi, int *out);
int opt_u64(const char *opt, const char *val, uint64_t *out);
int opt_float(const char *opt, const char *val, double lo, double hi, double *out);
/* --cache-max-entry-count: F in (0,1), or SIZE with KiB/MiB/GiB/KB/MB/GB/B, or Ntok */
int opt_kv_capacity(const char *opt, const char *val, struct kv_capacity *out);
/* --backend auto|cuda|cpu (whether this build has CUDA is the backend's to say); LMDeploy's engine names
 * turbomind and pytorch become auto in *val */
int opt_backend(const char **val);
/* --quant-policy 0|4|8 */
int opt_quant_policy(const char *opt, const char *val, int *out);

/* LMDeploy's engine options (struct engine_extra, engine.h) */
struct opt_iter;
/* If the current option is one of them, read and check its value: 1 (taken), LM_ERR (a bad value or one
 * lmterm cannot honour, with the message set); 0 if it is none of them. */
int opt_engine_extra(struct opt_iter *it, struct engine_extra *x);
/* --dtype auto|float16|bfloat16 into 0, DT_F16, DT_BF16 */
int opt_dtype(const char *opt, const char *val, int *out);
/* The model directory a command was given exists and holds config.json; else LM_ERR with a message that,
 * for something that looks like a Hugging Face model id (org/name), says how to download it. */
int check_model_dir(const char *dir);
/* generate and ppl: a note on stderr where a sequence of tokens outgrows Mistral's sliding window, which lmterm
 * does not apply (the chat says it in its own words, engine.c) */
void note_sliding_window(const struct model_config *c, int tokens);

/* Simple long-option scanner over argv: for each argv[i] starting with "--", splits "--name=value"; after "--"
 * everything is a positional (tokenize's TEXT "-x", a MODEL named "--m").
 * getopt is avoided so that "--search-scale" may take an optional value and errors name the option. */
struct opt_iter {
	int argc, i;
	char **argv;
	const char *name;   /* current option without leading dashes, '_' read as '-'; NULL for a positional */
	const char *value;  /* value given with '=' or NULL */
	const char *arg;    /* the positional or the raw argument */
	char namebuf[64];
	bool ended;         /* "--" was seen: every argument after it is a positional */
};
void opt_iter_init(struct opt_iter *it, int argc, char **argv);
/* returns 1 with it->name/arg set, 0 at the end */
int opt_next(struct opt_iter *it);
/* the value of the current option: "=value" or the next argument; LM_ERR if missing */
int opt_value(struct opt_iter *it, const char **val);
/* optional value: "=value", or the next argument if it does not start with '-'; NULL if none */
const char *opt_value_optional(struct opt_iter *it, bool (*accept)(const char *));

/* The demo model shipped with lmterm: $LMTERM_DEMO_MODEL, else the source tree's for the lmterm run from its
 * build tree, else the installed copy (an installed lmterm never looks into the build or source tree). */
const char *demo_model_dir(void);

#endif
