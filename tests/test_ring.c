/* SPSC ring stress: a producer and a consumer thread pass millions of messages through a small ring (so it
 * is full and empty often); the consumer checks that every message arrives once, in order, with its bytes
 * intact. Built a second time with -fsanitize=thread (tests/test_ring_tsan) where the compiler supports it. */
#include "config.h"
#include "ring.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef RING_N
#define RING_N 4000000ull
#endif

struct msg {
	uint64_t seq;
	uint64_t check; /* a function of seq, to catch torn copies */
	unsigned char pad[40];
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static struct ring r;
static uint64_t n_msgs;

static void *producer(void *arg)
{
	(void)arg;
	struct msg m;
	for (uint64_t i = 0; i < n_msgs; i++) {
		m.seq = i;
		m.check = mix(i);
		memset(m.pad, (int)(i & 0xff), sizeof m.pad);
		while (!ring_push(&r, &m)) sched_yield();
	}
	return NULL;
}

int main(void)
{
	int fails = 0;
	n_msgs = RING_N;
	const char *env = getenv("RING_STRESS_N");
	if (env) n_msgs = strtoull(env, NULL, 10);

	/* API edge cases */
	struct ring bad;
	if (ring_init(&bad, 3, 8) == LM_OK) { printf("FAIL: capacity 3 accepted\n"); fails++; ring_free(&bad); }
	struct ring small;
	if (ring_init(&small, 4, sizeof(int)) != LM_OK) { printf("FAIL: init: %s\n", lm_errmsg()); return 1; }
	int v;
	for (int i = 0; i < 4; i++)
		if (!ring_push(&small, &i)) { printf("FAIL: push %d into a ring of 4\n", i); fails++; }
	if (ring_push(&small, &v)) { printf("FAIL: push into a full ring succeeded\n"); fails++; }
	if (ring_count(&small) != 4) { printf("FAIL: count %zu != 4\n", ring_count(&small)); fails++; }
	for (int i = 0; i < 4; i++)
		if (!ring_pop(&small, &v) || v != i) { printf("FAIL: pop %d got %d\n", i, v); fails++; }
	if (ring_pop(&small, &v)) { printf("FAIL: pop from an empty ring succeeded\n"); fails++; }
	ring_free(&small);

	/* two-thread stress */
	if (ring_init(&r, 64, sizeof(struct msg)) != LM_OK) { printf("FAIL: init: %s\n", lm_errmsg()); return 1; }
	pthread_t th;
	pthread_create(&th, NULL, producer, NULL);
	struct msg m;
	uint64_t got = 0, bad_msgs = 0;
	while (got < n_msgs) {
		if (!ring_pop(&r, &m)) { sched_yield(); continue; }
		bool ok = m.seq == got && m.check == mix(got);
		for (size_t k = 0; ok && k < sizeof m.pad; k++) ok = m.pad[k] == (unsigned char)(got & 0xff);
		if (!ok && bad_msgs++ < 5)
			printf("FAIL: message %llu arrived as seq %llu (check %s)\n", (unsigned long long)got,
			       (unsigned long long)m.seq, m.check == mix(m.seq) ? "ok" : "torn");
		got++;
	}
	pthread_join(th, NULL);
	if (ring_pop(&r, &m)) { printf("FAIL: extra message after %llu\n", (unsigned long long)n_msgs); fails++; }
	ring_free(&r);
	if (bad_msgs) fails++;
	printf("ring: %llu messages through a ring of 64: %llu out of order or torn\n", (unsigned long long)got,
	       (unsigned long long)bad_msgs);
	return fails ? 1 : 0;
}
