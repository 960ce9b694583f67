/* ring.c: SPSC ring, see ring.h for the memory-ordering argument. */
#include "config.h"
#include "ring.h"
#include "i18n.h"

#include <stdlib.h>

int ring_init(struct ring *r, size_t capacity, size_t msg_size)
{
	memset(r, 0, sizeof *r);
	if (capacity < 2 || (capacity & (capacity - 1)) || msg_size == 0)
		return lm_err(_("ring: capacity %zu is not a power of two >= 2"), capacity);
	r->buf = aligned_alloc(RING_CACHE_LINE, ((capacity * msg_size + RING_CACHE_LINE - 1) / RING_CACHE_LINE) *
						   RING_CACHE_LINE);
	if (!r->buf) return lm_err(_("ring: out of memory for %zu messages of %zu bytes"), capacity, msg_size);
	r->cap = capacity;
	r->mask = capacity - 1;
	r->msg_size = msg_size;
	atomic_init(&r->head, 0);
	atomic_init(&r->tail, 0);
	return LM_OK;
}

void ring_free(struct ring *r)
{
	free(r->buf);
	r->buf = NULL;
}

bool ring_push(struct ring *r, const void *msg)
{
	size_t head = atomic_load_explicit(&r->head, memory_order_relaxed); /* only we write it */
	if (head - r->tail_cache == r->cap) {
		/* looks full: refresh our view of the consumer's progress; acquire pairs with its release, so
		 * the slot it freed is no longer being read when we overwrite it */
		r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
		if (head - r->tail_cache == r->cap) return false;
	}
	memcpy(r->buf + (head & r->mask) * r->msg_size, msg, r->msg_size);
	atomic_store_explicit(&r->head, head + 1, memory_order_release); /* publish the bytes written above */
	return true;
}

bool ring_pop(struct ring *r, void *msg)
{
	size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed); /* only we write it */
	if (tail == r->head_cache) {
		r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire); /* see the producer's bytes */
		if (tail == r->head_cache) return false;
	}
	memcpy(msg, r->buf + (tail & r->mask) * r->msg_size, r->msg_size);
	atomic_store_explicit(&r->tail, tail + 1, memory_order_release); /* the slot may now be reused */
	return true;
}

size_t ring_count(struct ring *r)
{
	size_t h = atomic_load_explicit(&r->head, memory_order_acquire);
	size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
	return h - t;
}
