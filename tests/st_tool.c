/* st_tool: read a tensor of a safetensors file for shell tests.
 *   st_tool shape FILE NAME    prints "DTYPE d0 d1 ..."
 *   st_tool ints FILE NAME     prints the I32 tensor's values, space-separated
 *   st_tool argmax FILE NAME   prints the argmax of each row of a 2-D F32 tensor, space-separated */
#include "config.h"
#include "safetensors.h"

#include <stdio.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: st_tool shape|ints|argmax FILE NAME\n");
		return 2;
	}
	struct st_file *f;
	if (st_open(&f, argv[2])) {
		fprintf(stderr, "st_tool: %s\n", lm_errmsg());
		return 1;
	}
	const struct st_tensor *t = st_find(f, argv[3]);
	int rc = 0;
	if (!t) {
		fprintf(stderr, "st_tool: %s: no tensor '%s'\n", argv[2], argv[3]);
		rc = 1;
	} else if (strcmp(argv[1], "shape") == 0) {
		printf("%s", dtype_name(t->dt));
		for (int i = 0; i < t->ndim; i++) printf(" %lld", (long long)t->shape[i]);
		printf("\n");
	} else if (strcmp(argv[1], "ints") == 0 && t->dt == DT_I32) {
		const int32_t *v = t->data;
		for (size_t i = 0; i < t->bytes / 4; i++) printf(i ? " %d" : "%d", v[i]);
		printf("\n");
	} else if (strcmp(argv[1], "argmax") == 0 && t->dt == DT_F32 && t->ndim == 2) {
		const float *v = t->data;
		for (int64_t r = 0; r < t->shape[0]; r++) {
			const float *row = v + r * t->shape[1];
			int64_t b = 0;
			for (int64_t c = 1; c < t->shape[1]; c++)
				if (row[c] > row[b]) b = c;
			printf(r ? " %lld" : "%lld", (long long)b);
		}
		printf("\n");
	} else {
		fprintf(stderr, "st_tool: cannot '%s' a %s tensor\n", argv[1], dtype_name(t->dt));
		rc = 1;
	}
	st_close(f);
	return rc;
}
