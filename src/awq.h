/* awq.h: 4-bit AWQ weight quantization (`lmterm lite auto_awq`), LMDeploy's algorithm written here.
 *
 * Calibration windows run through the model one decoder layer at a time, in float32 on the CPU or the GPU
 * (awq_dev.h), from the ORIGINAL checkpoint tensors (the loader fuses q/k/v and gate/up; the quantized
 * checkpoint must keep the separate ones). Per layer: per-input-channel mean |x| of every linear's input; activation-aware scales s
 * (s = x_mean^ratio normalized by sqrt(max*min), ratio 0.5 or searched on a 20-point grid) multiplied into
 * the linears' input columns and divided out of the preceding norm or linear; optionally a search of each
 * group's clipping range; then asymmetric round-to-nearest per group of the input dimension.
 * The result is written in AutoAWQ's "gemm" layout (DESIGN.md "AWQ"). */
#ifndef LMTERM_AWQ_H
#define LMTERM_AWQ_H

#include "common.h"
#include "progress.h"

struct awq_opts {
	const char *model_dir;
	const char *work_dir;    /* the output directory (written beside it under a temporary name, renamed) */
	const char *dataset;     /* calibration text file (see calib.h); unused when samples == 0 */
	int samples;             /* --calib-samples; 0 = plain round-to-nearest */
	int seqlen;              /* --calib-seqlen */
	int batch;               /* --batch-size: calibration windows per forward chunk */
	int bits;                /* --w-bits (4) */
	int group;               /* --w-group-size */
	bool search_scale;       /* --search-scale */
	bool search_clip;        /* clipping-range search (AutoAWQ's auto_clip) */
	int search_tokens;       /* calibration tokens the searches score on (0 = all, at most 16384) */
	int n_threads;           /* 0 = all cores */
	const char *backend;     /* where calibration runs: "auto" (NULL), "cpu", "cuda" (see awq_dev.h) */
	uint64_t seed;
};

/* Quantize opts->model_dir into opts->work_dir. Reports to sink (may be NULL); returns LM_ERR (message
 * set) on failure or when the sink says cancelled, leaving nothing at work_dir. */
int awq_quantize(const struct awq_opts *o, struct progress_sink *sink);

/* Checks that need only config.json and the safetensors headers (an already quantized model, an
 * architecture that is not supported, a group size that does not divide the input features). */
int awq_check_model(const char *model_dir, int group);

/* ---- the gemm layout, exposed for tests.
 * A linear W [out][in] quantized per group of g input features:
 *   codes [out][in] and zeros [out][in/g] are 4-bit values (0..15), scales float;
 *   qweight int32 [in][out/8], qzeros int32 [in/g][out/8], scales fp16 [in/g][out];
 *   nibble i of each int32 holds output column 8c + awq_order[i]. */
extern const int awq_order[8];
void awq_pack(const uint8_t *codes, const uint8_t *zeros, int out, int in, int group, int32_t *qweight,
	      int32_t *qzeros);
void awq_unpack(const int32_t *qweight, const int32_t *qzeros, int out, int in, int group, uint8_t *codes,
		uint8_t *zeros);
/* Round-to-nearest with a zero point, per group: fills codes/zeros ([out][in], [out][in/g]), scales16
 * (fp16 [in/g][out]) and, if deq is non-NULL, the dequantized weights [out][in] (what a reader computes
 * as (q - z) * s with the fp16 scale). */
void awq_quantize_rows(const float *w, int out, int in, int group, uint8_t *codes, uint8_t *zeros,
		       uint16_t *scales16, float *deq);

#endif
