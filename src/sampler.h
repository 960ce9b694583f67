/* sampler.h: next-token sampling on the host: repetition penalty, temperature, top-k, top-p, min-p, seed.
 * temperature 0 is greedy. */
#ifndef LMTERM_SAMPLER_H
#define LMTERM_SAMPLER_H

#include "common.h"
#include "engine.h"

struct sampler;
int sampler_init(struct sampler **s, int vocab, const struct sampling *p);
void sampler_set(struct sampler *s, const struct sampling *p);
/* logits[vocab] may be modified; history: ids already in the context (for the repetition penalty) */
int32_t sampler_sample(struct sampler *s, float *logits, const int32_t *history, int n_history);
void sampler_free(struct sampler *s);
/* Defaults from the model's generation_config.json (temperature, top_p, top_k, repetition_penalty...);
 * fields absent there keep their values in *p. Missing file is not an error. */
int sampling_from_generation_config(struct sampling *p, const char *model_dir);

#endif
