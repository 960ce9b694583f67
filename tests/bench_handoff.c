/* bench_handoff: what handing results from one grid to the next costs on this GPU (cuda/handoff.cu), for the
 * GPU rounds (not a test: it asserts nothing; speed is measured, never asserted). For each grid size (the
 * multiprocessor count, twice it, 256 and 512 blocks of 256 threads: the decode step's GEMVs and attention
 * span that range), microseconds per stage of a graph of 200 stages, the best of 20 replays:
 *   plain    a launch per stage in stream order
 *   pdl      a launch per stage under PDL, each block waiting for the whole grid before it (as the decode
 *            kernels do)
 *   flag     a launch per stage under PDL, each block polling a counter the previous stage's blocks bump
 *   barrier  one launch, the stages separated by a grid-wide barrier on that counter
 * Prints one line per grid size; exits 77 without a GPU. */
#include "config.h"
#include "common.h"

#include <stdio.h>

#if HAVE_CUDA
#include <cuda_runtime_api.h>
#include "kernels.h"

int main(void)
{
	int n = 0, sms = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
		printf("SKIP: no CUDA device\n");
		return 77;
	}
	if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess || sms < 1) sms = 132;
	const char *names[] = { "plain", "pdl", "flag", "barrier" };
	const int grids[] = { sms, 2 * sms, 256, 512 };
	printf("handoff: us per stage (200 stages, best of 20 graph replays), %d multiprocessors\n", sms);
	printf("%8s %9s %9s %9s %9s\n", "blocks", names[0], names[1], names[2], names[3]);
	for (int g = 0; g < 4; g++) {
		printf("%8d", grids[g]);
		for (int m = HANDOFF_PLAIN; m <= HANDOFF_BARRIER; m++) {
			float us = 0.f;
			// the barrier needs every block resident: at most 4 blocks of 256 threads per multiprocessor
			if (m == HANDOFF_BARRIER && grids[g] > 4 * sms) {
				printf(" %9s", "-");
				continue;
			}
			if (k_handoff_bench(m, grids[g], 200, 20, &us)) {
				printf("\nFAIL: %s\n", lm_errmsg());
				return 1;
			}
			printf(" %9.2f", us);
		}
		printf("\n");
	}
	return 0;
}
#else
int main(void)
{
	printf("SKIP: built without CUDA\n");
	return 77;
}
#endif
