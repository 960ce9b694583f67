/* Option parsing: booleans are strict (LMDeploy once read "--search-scale False" as true), sizes and
 * fractions for --cache-max-entry-count, quant policies. */
#include "config.h"
#include "opts.h"
#include "common.h"
#include "backend.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int fails;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c); fails++; } } while (0)

int main(void)
{
	bool b = true;
	CHECK(opt_bool("--x", "False", &b) == LM_OK && b == false);
	CHECK(opt_bool("--x", "yes", &b) == LM_OK && b == true);
	CHECK(opt_bool("--x", "0", &b) == LM_OK && b == false);
	CHECK(opt_bool("--x", "maybe", &b) == LM_ERR && strstr(lm_errmsg(), "--x"));
	CHECK(opt_bool("--x", "", &b) == LM_ERR);

	struct kv_capacity c;
	CHECK(opt_kv_capacity("--c", "0.4", &c) == LM_OK && c.kind == KVCAP_FRACTION && fabs(c.fraction - 0.4) < 1e-12);
	CHECK(opt_kv_capacity("--c", "6GiB", &c) == LM_OK && c.kind == KVCAP_BYTES && c.bytes == 6ull << 30);
	CHECK(opt_kv_capacity("--c", "512MiB", &c) == LM_OK && c.kind == KVCAP_BYTES && c.bytes == 512ull << 20);
	CHECK(opt_kv_capacity("--c", "32768tok", &c) == LM_OK && c.kind == KVCAP_TOKENS && c.tokens == 32768);
	CHECK(opt_kv_capacity("--c", "1.5", &c) == LM_ERR);
	CHECK(opt_kv_capacity("--c", "0", &c) == LM_ERR);
	CHECK(opt_kv_capacity("--c", "-0.2", &c) == LM_ERR);
	CHECK(opt_kv_capacity("--c", "6 parsecs", &c) == LM_ERR);
	CHECK(opt_kv_capacity("--c", "abc", &c) == LM_ERR);
	/* far too large: a message that says so (the size overflowed uint64_t, undefined, and came out 0 bytes) */
	CHECK(opt_kv_capacity("--c", "1e300GiB", &c) == LM_ERR && strstr(lm_errmsg(), "too large"));
	CHECK(opt_kv_capacity("--c", "1e13tok", &c) == LM_ERR && strstr(lm_errmsg(), "too large"));
	CHECK(opt_kv_capacity("--c", "2.5tok", &c) == LM_ERR && strstr(lm_errmsg(), "whole number"));
	uint64_t u;
	CHECK(opt_u64("--seed", "18446744073709551615", &u) == LM_OK && u == UINT64_MAX);
	/* an integer past the type is too large, not 'not a non-negative integer' / 'not an integer' */
	CHECK(opt_u64("--seed", "18446744073709551616", &u) == LM_ERR && strstr(lm_errmsg(), "too large"));
	CHECK(opt_u64("--seed", " -5", &u) == LM_ERR); /* strtoull wrapped it to 2^64-5 */
	CHECK(opt_u64("--seed", "-5", &u) == LM_ERR);
	CHECK(opt_u64("--seed", "", &u) == LM_ERR);

	int p;
	CHECK(opt_quant_policy("--quant-policy", "8", &p) == LM_OK && p == 8);
	CHECK(opt_quant_policy("--quant-policy", "4", &p) == LM_OK && p == 4);
	CHECK(opt_quant_policy("--quant-policy", "2", &p) == LM_ERR);
	int v;
	CHECK(opt_int("-n", "12", 0, 100, &v) == LM_OK && v == 12);
	CHECK(opt_int("-n", "12x", 0, 100, &v) == LM_ERR);
	CHECK(opt_int("-n", "101", 0, 100, &v) == LM_ERR);
	CHECK(opt_int("-n", "99999999999999999999", 0, 100, &v) == LM_ERR && strstr(lm_errmsg(), "out of range"));
	CHECK(opt_int("-n", "-99999999999999999999", 0, 100, &v) == LM_ERR && strstr(lm_errmsg(), "out of range"));

	/* half-precision conversions round-trip every finite f16 value */
	for (uint32_t h = 0; h < 0x10000; h++) {
		if ((h & 0x7c00) == 0x7c00) continue;
		float f = f16_to_f32((uint16_t)h);
		if (f32_to_f16(f) != h) { fprintf(stderr, "f16 0x%04x -> %g -> 0x%04x\n", h, f, f32_to_f16(f)); fails++; break; }
	}
	CHECK(f32_to_bf16(1.0f) == 0x3f80 && bf16_to_f32(0x3f80) == 1.0f);
	CHECK(f32_to_f16(65520.0f) == 0x7c00); /* rounds to inf */

	/* LMDeploy's engine options */
	struct engine_extra x = { 0 };
	struct opt_iter it;
	char *av[] = { "--dtype", "bfloat16", "--rope-scaling-factor=2.5", "--eager-mode", "false", "--tp", "1",
		       "--device", "cuda", "--enable-prefix-caching", "--communicator", "native", "--session-len", "4" };
	int taken = 0, others = 0;
	opt_iter_init(&it, (int)(sizeof av / sizeof av[0]), av);
	x.eager = true;
	while (opt_next(&it)) {
		int r = opt_engine_extra(&it, &x);
		CHECK(r >= 0);
		if (r == 1) taken++;
		else { others++; opt_value(&it, &(const char *){ 0 }); } /* --session-len is chat's own */
	}
	CHECK(taken == 7 && others == 1);
	CHECK(x.dtype == DT_BF16 && fabs(x.rope_scaling_factor - 2.5) < 1e-12 && !x.eager);
	/* "--" ends the options: what follows is a positional even where it begins with '-' */
	char *av2[] = { "--json", "--", "--json", "-x" };
	opt_iter_init(&it, 4, av2);
	CHECK(opt_next(&it) && it.name && !strcmp(it.name, "json"));
	CHECK(opt_next(&it) && !it.name && !strcmp(it.arg, "--json"));
	CHECK(opt_next(&it) && !it.name && !strcmp(it.arg, "-x"));
	CHECK(!opt_next(&it));
	char *av3[] = { "m", "--" };
	opt_iter_init(&it, 2, av3);
	CHECK(opt_next(&it) && !it.name && !opt_next(&it));

	int dt = 99;
	CHECK(opt_dtype("--dtype", "auto", &dt) == LM_OK && dt == 0);
	CHECK(opt_dtype("--dtype", "float16", &dt) == LM_OK && dt == DT_F16 && dt != 0);
	CHECK(opt_dtype("--dtype", "float32", &dt) == LM_ERR && strstr(lm_errmsg(), "float32"));

	/* the note for a GPU that "auto" cannot use: only where an NVIDIA driver is present */
	char note[512];
	backend_fallback_text(note, sizeof note, true, false, "no CUDA-capable device is detected");
	CHECK(note[0] == '\0');
	backend_fallback_text(note, sizeof note, false, false, NULL);
	CHECK(note[0] == '\0');
	backend_fallback_text(note, sizeof note, true, true, "CUDA driver version is insufficient for CUDA runtime version");
	CHECK(strstr(note, "driver version is insufficient") && strstr(note, "CPU") && strstr(note, "--backend cpu"));
	backend_fallback_text(note, sizeof note, false, true, NULL);
	CHECK(strstr(note, "built without CUDA") && strstr(note, "--with-cuda"));

	if (fails) return 1;
	printf("opts: all checks passed\n");
	return 0;
}
