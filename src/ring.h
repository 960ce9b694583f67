/* ring.h: a single-producer single-consumer lock-free ring of fixed-size messages.
 *
 * Exactly one thread pushes and exactly one thread pops. head (next slot to write) is written only by the
 * producer, tail (next slot to read) only by the consumer; each publishes its index with a release store and
 * reads the other's with an acquire load, so a message's bytes are visible before the index that covers it.
 * head and tail live on separate cache lines so that the two threads do not false-share. The capacity is a
 * power of two: indices run freely (size_t, wrapping) and a slot is index & mask. */
#ifndef LMTERM_RING_H
#define LMTERM_RING_H

#include "common.h"

#include <stdatomic.h>

#define RING_CACHE_LINE 64

struct ring {
	_Alignas(RING_CACHE_LINE) _Atomic size_t head; /* producer's: messages ever pushed */
	size_t tail_cache;                              /* producer's last view of tail (saves acquire loads) */
	_Alignas(RING_CACHE_LINE) _Atomic size_t tail; /* consumer's: messages ever popped */
	size_t head_cache;                              /* consumer's last view of head */
	_Alignas(RING_CACHE_LINE) size_t cap, mask, msg_size;
	unsigned char *buf;                             /* [cap][msg_size] */
};

/* capacity: a power of two >= 2; msg_size: bytes per message. LM_ERR + message on a bad size or no memory. */
int ring_init(struct ring *r, size_t capacity, size_t msg_size);
void ring_free(struct ring *r);
/* Producer: copy msg in; false if the ring is full (nothing written). */
bool ring_push(struct ring *r, const void *msg);
/* Consumer: copy the oldest message out; false if the ring is empty. */
bool ring_pop(struct ring *r, void *msg);
/* Approximate number of messages waiting (exact from either end's own thread for its own bound). */
size_t ring_count(struct ring *r);

#endif
