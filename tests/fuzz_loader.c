/* fuzz_loader: libFuzzer target for the loader's untrusted inputs (not part of make check).
 * The first byte picks the parser: even -> a safetensors file (st_open), odd -> config.json (config_load);
 * the rest is the file. Whatever is accepted is walked, so ASan sees any out-of-bounds pointer.
 *   make fuzz-loader && ./tests/fuzz_loader -max_total_time=60 */
#include "config.h"
#include "model.h"
#include "safetensors.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1) return 0;
	int fd = memfd_create("fuzz", 0);
	if (fd < 0) return 0;
	if (size > 1 && write(fd, data + 1, size - 1) != (ssize_t)(size - 1)) {
		close(fd);
		return 0;
	}
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	if (data[0] % 2 == 0) {
		struct st_file *f;
		if (st_open(&f, path) == LM_OK) {
			volatile uint8_t sum = 0;
			for (int i = 0; i < st_count(f); i++) {
				const struct st_tensor *t = st_get(f, i);
				for (size_t k = 0; k < t->bytes; k++) sum += ((const uint8_t *)t->data)[k];
				if (st_find(f, t->name) == NULL) __builtin_trap();
			}
			st_metadata(f, "format");
			st_close(f);
		}
	} else {
		struct model_config c;
		if (config_load(&c, path) == LM_OK) {
			float inv[1 << 15];
			if (c.head_dim / 2 <= (int)(sizeof inv / sizeof *inv)) rope_inv_freq(&c, c.max_pos * 2, inv, NULL);
		}
	}
	close(fd);
	return 0;
}
