/*
 * rate: a token bucket per client. `per_sec` tokens a second, holding at most
 * 5 x per_sec (the burst). The caller passes `now` in milliseconds, so the
 * module has no clock and tests are exact. Leaf module: libc only.
 */
#ifndef ECHOCHAT_RATE_H
#define ECHOCHAT_RATE_H

#include <stdbool.h>
#include <stdint.h>

#define RATE_BURST 5

struct rate {
    uint32_t milli; /* tokens x 1000, so refill is exact integer math */
    uint32_t last;  /* now_ms of the last refill (low 32 bits: wraps fine) */
};

/* A full bucket at now_ms. */
void rate_init(struct rate *r, unsigned per_sec, uint64_t now_ms);
/* Take one token. Returns true when it was there; per_sec 0 always allows. */
bool rate_take(struct rate *r, unsigned per_sec, uint64_t now_ms);
/* Milliseconds until rate_take() can succeed (0 if it can now). */
uint64_t rate_wait_ms(struct rate *r, unsigned per_sec, uint64_t now_ms);

#endif
