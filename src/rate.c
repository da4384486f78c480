/*
 * rate: a token bucket in integer milli-tokens. per_sec tokens a second is
 * per_sec milli-tokens a millisecond, so refill is one multiplication, exact,
 * with no remainder to carry. The clock is the caller's (the loop's
 * monotonic milliseconds), which keeps the module pure and its tests exact.
 */
#include "rate.h"

static uint64_t
rate_cap(unsigned per_sec)
{
    return (uint64_t)RATE_BURST * per_sec * 1000; /* < 2^55 for any unsigned */
}

/*
 * Refill for the time since the last call. Any gap of RATE_BURST seconds or
 * more fills the bucket, so the gap is clamped there before multiplying:
 * that keeps elapsed x per_sec far from overflow whatever now_ms does. A
 * clock that steps back (it should not: callers pass CLOCK_MONOTONIC)
 * refills nothing and restarts from the new now.
 */
static void
rate_refill(struct rate *r, unsigned per_sec, uint64_t now_ms)
{
    uint64_t cap = rate_cap(per_sec);
    uint64_t elapsed = now_ms > r->last ? now_ms - r->last : 0;

    r->last = now_ms;
    if (elapsed > (uint64_t)RATE_BURST * 1000)
        elapsed = (uint64_t)RATE_BURST * 1000;
    r->milli += elapsed * per_sec;
    if (r->milli > cap)
        r->milli = cap;
}

void
rate_init(struct rate *r, unsigned per_sec, uint64_t now_ms)
{
    r->milli = rate_cap(per_sec);
    r->last = now_ms;
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
