/* backend_weight.c: the parts of a struct weight, allocated and freed through any backend's vtable
 * (shared by the cpu and cuda backends; kept apart from backend.c so that tests built from the cpu backend's
 * sources alone need not link the CUDA registration). */
#include "config.h"
#include "backend.h"

#include <string.h>

int weight_alloc_part(struct backend *be, struct weight *w, void **p, size_t bytes)
{
	*p = be->i->alloc(be, bytes, MEM_WEIGHTS);
	if (!*p) return LM_ERR;
	w->bytes += bytes;
	return LM_OK;
}

void weight_free_parts(struct backend *be, struct weight *w)
{
	if (!w) return;
	if (!w->shared) {
		void *parts[] = { w->data, w->qweight, w->qzeros, w->scales, w->bias };
		for (size_t i = 0; i < ARRAY_SIZE(parts); i++)
			if (parts[i]) be->i->free(be, parts[i]);
	}
	memset(w, 0, sizeof *w);
}
