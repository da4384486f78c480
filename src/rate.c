/*
 * rate: a token bucket in integer milli-tokens. per_sec tokens a second is
 * per_sec milli-tokens a millisecond, so refill is one multiplication, exact,
 * with no remainder to carry. The clock is the caller's (the loop's
 * monotonic milliseconds), which keeps the module pure and its tests exact.
 */
#include "rate.h"

static uint32_t
rate_cap(unsigned per_sec)
{
    uint64_t cap = (uint64_t)RATE_BURST * per_sec * 1000; /* < 2^55 for any unsigned */

    return cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap; /* see struct rate */
}

/*
 * Refill for the time since the last call, taken modulo 2^32 ms (struct
 * rate). Any gap of RATE_BURST seconds or more fills the bucket, so the gap
 * is clamped there before multiplying: elapsed x per_sec then stays below
 * 2^45, and the sum below 2^46, far from overflowing 64 bits.
 */
static void
rate_refill(struct rate *r, unsigned per_sec, uint64_t now_ms)
{
    uint64_t cap = rate_cap(per_sec);
    uint64_t elapsed = (uint32_t)((uint32_t)now_ms - r->last);
    uint64_t milli;

    r->last = (uint32_t)now_ms;
    if (elapsed > (uint64_t)RATE_BURST * 1000)
        elapsed = (uint64_t)RATE_BURST * 1000;
    milli = r->milli + elapsed * per_sec;
    r->milli = (uint32_t)(milli > cap ? cap : milli);
}

void
rate_init(struct rate *r, unsigned per_sec, uint64_t now_ms)
{
    r->milli = rate_cap(per_sec);
    r->last = (uint32_t)now_ms;
}

bool
rate_take(struct rate *r, unsigned per_sec, uint64_t now_ms)
{
    if (per_sec == 0)
        return true;
    rate_refill(r, per_sec, now_ms);
    if (r->milli < 1000)
        return false;
    r->milli -= 1000;
    return true;
}

/* The exact (ceiling) wait: after it, elapsed x per_sec covers the deficit;
 * one millisecond earlier it does not. */
uint64_t
rate_wait_ms(struct rate *r, unsigned per_sec, uint64_t now_ms)
{
    uint64_t deficit;

    if (per_sec == 0)
        return 0;
    rate_refill(r, per_sec, now_ms);
    if (r->milli >= 1000)
        return 0;
    deficit = 1000 - r->milli;
    return (deficit + per_sec - 1) / per_sec;
}
