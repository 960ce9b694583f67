#include "config.h"
#include "backend.h"
#include "i18n.h"

#include <string.h>

bool backend_cuda_built(void)
{
#if HAVE_CUDA
	return true;
#else
	return false;
#endif
}

int backend_create(struct backend **out, const char *name, enum dtype model_dtype)
{
	*out = NULL;
	if (!name || strcmp(name, "auto") == 0) {
#if HAVE_CUDA
		if (backend_cuda_available()) {
			*out = backend_cuda_create(model_dtype);
			if (*out) return LM_OK;
			return LM_ERR;
		}
#endif
		name = "cpu";
	}
	if (strcmp(name, "cpu") == 0) {
		*out = backend_cpu_create();
		return *out ? LM_OK : LM_ERR;
	}
	if (strcmp(name, "cuda") == 0) {
#if HAVE_CUDA
		*out = backend_cuda_create(model_dtype);
		return *out ? LM_OK : LM_ERR;
#else
		return lm_err(_("--backend cuda: this lmterm was built without CUDA (configure --with-cuda)"));
#endif
	}
	return lm_err(_("--backend: unknown backend '%s' (expected auto, cuda or cpu)"), name);
}

void backend_destroy(struct backend *be)
{
	if (be) be->i->destroy(be);
}
