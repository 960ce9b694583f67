/* sampler.h: next-token sampling on the host: repetition penalty, temperature, top-k, top-p, min-p, seed.
 * temperature 0 is greedy. */
#ifndef LMTERM_SAMPLER_H
#define LMTERM_SAMPLER_H

#include "common.h"
#include "backend.h"
#include "engine.h"

struct sampler;
int sampler_init(struct sampler **s, int vocab, const struct sampling *p);
void sampler_set(struct sampler *s, const struct sampling *p);
/* logits[vocab] may be modified; history: ids already in the context (for the repetition penalty) */
int32_t sampler_sample(struct sampler *s, float *logits, const int32_t *history, int n_history);
/* sampler_sample with the uniform u in [0, 1) given (the generator untouched): the reference for device
 * sampling */
int32_t sampler_sample_u(struct sampler *s, float *logits, const int32_t *history, int n_history, double u);
/* The same step for a backend's sample op: the parameters in force, and the uniform drawn from the generator
 * exactly where sampler_sample would draw it (none for greedy steps). */
void sampler_args(struct sampler *s, const int32_t *history, int n_history, struct sample_args *a);
/* The step described by a (sampler_args) on host logits[vocab] (modified): a backend's sample op without a
 * device (the cpu backend's). */
int sampler_pick(const struct sample_args *a, float *logits, int vocab, int32_t *token);
/* Whether to sample on the device: the backend has the op, and LMTERM_HOST_SAMPLING does not ask for the
 * host sampler. */
bool sampler_on_device(const struct backend *be);
/* sampler_sample for the logits h[dim] . lm_head^T, computed and sampled by the backend (h: backend memory,
 * a row of the forward pass's normed output); only the token comes back. */
int sampler_sample_device(struct sampler *s, struct backend *be, const void *h, const struct weight *lm_head,
			  const int32_t *history, int n_history, int32_t *token);
void sampler_free(struct sampler *s);
/* Defaults from the model's generation_config.json (temperature, top_p, top_k, repetition_penalty...);
 * fields absent there keep their values in *p. Missing file is not an error. Values of the wrong type or
 * outside the command line's range are ignored and named in warn ("" when none), for the caller to show. */
int sampling_from_generation_config(struct sampling *p, const char *model_dir, char *warn, size_t warn_len);

#endif
