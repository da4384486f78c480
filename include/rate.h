/*
 * rate: a token bucket per client. `per_sec` tokens a second, holding at most
 * 5 x per_sec (the burst; capped, see struct rate). The caller passes `now` in milliseconds, so the
 * module has no clock and tests are exact. Leaf module: libc only.
 */
#ifndef ECHOCHAT_RATE_H
#define ECHOCHAT_RATE_H

#include <stdbool.h>
#include <stdint.h>

#define RATE_BURST 5

/*
 * 8 bytes, since every chat user embeds one. Both fields are 32-bit:
 * - milli saturates at UINT32_MAX, so the burst is capped at 4,294,967
 *   lines (reached above 858,993 lines/s; --rate-limit allows 1,000,000):
 *   the refill rate itself stays exact.
 * - last keeps the low 32 bits of now_ms and the gap is taken modulo 2^32
 *   (wrap-safe across the clock's 32-bit crossings). A gap of 5 s or more
 *   fills the bucket; only a gap within 5 s after a multiple of 2^32 ms
 *   (49.7 days) looks short and refills less, which at worst delays a
 *   user's next burst of lines. A clock stepping back (callers pass a
 *   monotonic one) looks like a long gap and fills the bucket.
 */
struct rate {
    uint32_t milli; /* tokens x 1000: per_sec milli-tokens accrue per ms, exactly */
    uint32_t last;  /* now_ms of the last refill, modulo 2^32 */
};

/* A full bucket at now_ms. */
void rate_init(struct rate *r, unsigned per_sec, uint64_t now_ms);
/* Take one token. Returns true when it was there; per_sec 0 always allows. */
bool rate_take(struct rate *r, unsigned per_sec, uint64_t now_ms);
/* Milliseconds until rate_take() can succeed (0 if it can now). */
uint64_t rate_wait_ms(struct rate *r, unsigned per_sec, uint64_t now_ms);

#endif
