/* awq_cmp: compare two AWQ checkpoints of the same model (e.g. quantized with --backend cpu and cuda).
 *   awq_cmp DIR_A DIR_B
 * For every linear (a .qweight tensor): the share of 4-bit codes that agree, of zero points that agree, of fp16
 * scales that are bit-identical, the largest scale difference relative to the scale; for every other tensor
 * of the same name (norms with 1/s folded in, biases, embeddings): the largest relative difference. Prints a
 * line per linear kind and a total line:
 *   total: codes P% equal (N of M), zeros P%, scales P% identical, max scale rel diff D, other tensors max rel diff E
 * Exits 1 when the two do not hold the same tensors with the same shapes. */
#include "config.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t nibbles_equal(const int32_t *a, const int32_t *b, size_t n)
{
	size_t eq = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t x = (uint32_t)a[i] ^ (uint32_t)b[i];
		for (int k = 0; k < 8; k++) eq += ((x >> (4 * k)) & 15) == 0;
	}
	return eq;
}

static float val(const struct st_tensor *t, size_t i)
{
	if (t->dt == DT_F16) return f16_to_f32(((const uint16_t *)t->data)[i]);
	if (t->dt == DT_BF16) return bf16_to_f32(((const uint16_t *)t->data)[i]);
	if (t->dt == DT_F32) return ((const float *)t->data)[i];
	return NAN;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: awq_cmp DIR_A DIR_B\n");
		return 2;
	}
	struct st_set *A, *B;
	if (st_set_open(&A, argv[1]) || st_set_open(&B, argv[2])) {
		fprintf(stderr, "awq_cmp: %s\n", lm_errmsg());
		return 1;
	}
	size_t codes = 0, codes_eq = 0, zeros = 0, zeros_eq = 0, scales = 0, scales_eq = 0;
	double max_sdiff = 0, max_other = 0;
	int bad = 0;
	for (int i = 0; i < st_set_count(A); i++) {
		const struct st_tensor *a = st_set_get(A, i), *b = st_set_find(B, a->name);
		if (!b || a->dt != b->dt || a->ndim != b->ndim || memcmp(a->shape, b->shape, sizeof(int64_t) * a->ndim)) {
			if (bad++ < 10) fprintf(stderr, "awq_cmp: %s: missing or of another dtype/shape in %s\n", a->name, argv[2]);
			continue;
		}
		if (ends_with(a->name, ".qzeros") || ends_with(a->name, ".scales")) continue; /* with their qweight */
		if (!ends_with(a->name, ".qweight")) {
			size_t n = a->bytes / dtype_size(a->dt);
			double mx = 0, md = 0;
			for (size_t k = 0; k < n; k++) {
				double x = val(a, k), y = val(b, k);
				mx = fmax(mx, fabs(x));
				md = fmax(md, fabs(x - y));
			}
			if (a->dt == DT_F16 || a->dt == DT_BF16 || a->dt == DT_F32) max_other = fmax(max_other, mx > 0 ? md / mx : md);
			continue;
		}
		char base[512], nz[600], ns[600];
		snprintf(base, sizeof base, "%.*s", (int)(strlen(a->name) - strlen(".qweight")), a->name);
		snprintf(nz, sizeof nz, "%s.qzeros", base);
		snprintf(ns, sizeof ns, "%s.scales", base);
		const struct st_tensor *za = st_set_find(A, nz), *zb = st_set_find(B, nz), *sa = st_set_find(A, ns),
				       *sb = st_set_find(B, ns);
		if (!za || !zb || !sa || !sb) { fprintf(stderr, "awq_cmp: %s: no qzeros/scales\n", base); bad++; continue; }
		int in = (int)a->shape[0], out = (int)a->shape[1] * 8, ng = (int)za->shape[0];
		/* the codes compared in place: nibble i of each int32 is one code, wherever it belongs */
		size_t ce = nibbles_equal(a->data, b->data, (size_t)in * (out / 8));
		size_t ze = nibbles_equal(za->data, zb->data, (size_t)ng * (out / 8)), se = 0;
		const uint16_t *s1 = sa->data, *s2 = sb->data;
		double msd = 0;
		for (size_t k = 0; k < (size_t)out * ng; k++) {
			se += s1[k] == s2[k];
			double x = f16_to_f32(s1[k]), y = f16_to_f32(s2[k]);
			msd = fmax(msd, fabs(x - y) / fmax(fabs(x), 1e-12));
		}
		printf("%-44s codes %8.4f%%  zeros %8.4f%%  scales %8.4f%% identical, max scale rel diff %.3g\n", base,
		       100.0 * ce / ((double)out * in), 100.0 * ze / ((double)out * ng), 100.0 * se / ((double)out * ng), msd);
		codes += (size_t)out * in;
		codes_eq += ce;
		zeros += (size_t)out * ng;
		zeros_eq += ze;
		scales += (size_t)out * ng;
		scales_eq += se;
		max_sdiff = fmax(max_sdiff, msd);
	}
	if (st_set_count(A) != st_set_count(B)) {
		fprintf(stderr, "awq_cmp: %d tensors in %s, %d in %s\n", st_set_count(A), argv[1], st_set_count(B), argv[2]);
		bad++;
	}
	printf("total: codes %.4f%% equal (%zu of %zu), zeros %.4f%%, scales %.4f%% identical, max scale rel diff %.3g, "
	       "other tensors max rel diff %.3g\n",
	       codes ? 100.0 * codes_eq / codes : 0, codes_eq, codes, zeros ? 100.0 * zeros_eq / zeros : 0,
	       scales ? 100.0 * scales_eq / scales : 0, max_sdiff, max_other);
	st_set_close(A);
	st_set_close(B);
	return bad ? 1 : 0;
}
