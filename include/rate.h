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

/*
 * milli is 64-bit because a full bucket is RATE_BURST x per_sec x 1000
 * milli-tokens, which passes 2^32 above 858,993 lines/s (--rate-limit allows
 * 1,000,000). With a 64-bit milli the struct is 16 bytes anyway, so last
 * keeps the whole clock: no wraparound, and any gap, however long, refills.
 */
struct rate {
    uint64_t milli; /* tokens x 1000: per_sec milli-tokens accrue per ms, exactly */
    uint64_t last;  /* now_ms of the last refill */
};

/* A full bucket at now_ms. */
void rate_init(struct rate *r, unsigned per_sec, uint64_t now_ms);
/* Take one token. Returns true when it was there; per_sec 0 always allows. */
bool rate_take(struct rate *r, unsigned per_sec, uint64_t now_ms);
/* Milliseconds until rate_take() can succeed (0 if it can now). */
uint64_t rate_wait_ms(struct rate *r, unsigned per_sec, uint64_t now_ms);

#endif
