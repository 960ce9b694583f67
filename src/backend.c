#include "config.h"
#include "backend.h"
#include "i18n.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

bool backend_cuda_built(void)
{
#if HAVE_CUDA
	return true;
#else
	return false;
#endif
}

static char fallback_note[512];

void backend_fallback_text(char *buf, size_t n, bool built_cuda, bool nvidia_driver, const char *cuda_error)
{
	buf[0] = '\0';
	if (!nvidia_driver) return; /* no GPU to miss: the CPU is the only choice, nothing to say */
	if (!built_cuda)
		snprintf(buf, n, _("this machine has an NVIDIA GPU, but this lmterm was built without CUDA (configure "
				   "--with-cuda, with the CUDA toolkit installed): the model runs on the CPU, many times "
				   "slower (--backend cpu chooses the CPU without this note)"));
	else
		snprintf(buf, n, _("this machine has an NVIDIA driver, but CUDA cannot use its GPU (%s): the model runs "
				   "on the CPU, many times slower (--backend cpu chooses the CPU without this note)"),
			 cuda_error && *cuda_error ? cuda_error : _("no device"));
}

const char *backend_fallback_note(void) { return fallback_note; }

bool backend_auto_uses_cuda(void)
{
	/* the kernel module's file: present wherever the NVIDIA driver is loaded, GPU container runtimes included */
	const bool driver = access("/proc/driver/nvidia/version", R_OK) == 0;
#if HAVE_CUDA
	if (backend_cuda_available()) {
		fallback_note[0] = '\0';
		return true;
	}
	backend_fallback_text(fallback_note, sizeof fallback_note, true, driver, backend_cuda_why_not());
#else
	backend_fallback_text(fallback_note, sizeof fallback_note, false, driver, NULL);
#endif
	return false;
}

int backend_create(struct backend **out, const char *name, enum dtype model_dtype)
{
	*out = NULL;
	if (!name || strcmp(name, "auto") == 0) {
#if HAVE_CUDA
		if (backend_auto_uses_cuda()) {
			*out = backend_cuda_create(model_dtype);
			if (*out) return LM_OK;
			return LM_ERR;
		}
#else
		backend_auto_uses_cuda(); /* for its note */
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
