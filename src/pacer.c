/*
 * pacer: when queued output is written (the policy is described in
 * pacer.h). The busy test is a token bucket of writing time: it fills at
 * PACER_SHARE_PCT of the wall-clock time and each flush drains what it
 * spent, so "credit <= 0" means writing has taken more than that share over
 * roughly the last PACER_BURST_US. A bucket rather than an average: it
 * needs no history, and its cap is the burst served at full speed after a
 * quiet spell (a broadcast to a big room, say).
 */
#include "pacer.h"
#include "util.h" /* UTIL_MIN, UTIL_MAX: macros only, nothing to link */

void
pacer_init(struct pacer *p, uint64_t now)
{
    *p = (struct pacer){ .credit = PACER_BURST_US, .refilled = now };
}

size_t
pacer_begin(struct pacer *p, uint64_t now, size_t queued, bool fresh)
{
    if (now > p->refilled) {
        /* clamped first: after a long quiet spell the bucket is just full */
        uint64_t dt = UTIL_MIN(now - p->refilled, 4 * (uint64_t)PACER_BURST_US);
        p->credit =
            UTIL_MIN(p->credit + (int64_t)(dt * PACER_SHARE_PCT / 100), (int64_t)PACER_BURST_US);
        p->refilled = now;
    }
    if (fresh) {
        if (p->last_fresh) {
            uint64_t gap = UTIL_MIN(now - p->last_fresh, (uint64_t)PACER_HOLD_MAX_US);
            /* the first interval sets the mean: a hold must not expire
             * early (and look wasted) while the mean is still warming up */
            p->gap8 = p->gap8 ? p->gap8 + gap - p->gap8 / 8 : gap * 8;
        }
        p->last_fresh = now;
    }
    if (p->holding && p->joined > 0)
        p->backoff = 0; /* holding pays here: start back-offs afresh */
    if (p->credit > 0 || now < p->quiet_until)
        return 0;
    return queued / 3;
}

void
pacer_spent(struct pacer *p, uint64_t us)
{
    int64_t spent = (int64_t)UTIL_MIN(us, (uint64_t)PACER_BURST_US);

    p->credit = UTIL_MAX(p->credit - spent, -(int64_t)PACER_BURST_US);
}

void
pacer_held(struct pacer *p)
{
    if (!p->holding) {
        p->holding = true;
        p->joined = 0;
    }
}

void
pacer_joined(struct pacer *p)
{
    if (p->holding)
        p->joined++;
}

bool
pacer_expired(struct pacer *p, uint64_t now)
{
    if (!p->holding)
        return false;
    if (p->joined > 0) {
        p->joined = 0; /* paid so far: judge the next stretch afresh */
        return false;
    }
    p->backoff =
        p->backoff ? UTIL_MIN(p->backoff * 2, (uint64_t)PACER_BACKOFF_MAX_US) : PACER_BACKOFF_US;
    p->quiet_until = now + p->backoff;
    p->holding = false;
    return true;
}

void
pacer_drained(struct pacer *p)
{
    p->holding = false;
    p->joined = 0;
}

uint64_t
pacer_hold_limit(const struct pacer *p)
{
    uint64_t limit = p->gap8 / 4; /* twice the mean */

    return UTIL_MAX((uint64_t)PACER_HOLD_MIN_US, UTIL_MIN(limit, (uint64_t)PACER_HOLD_MAX_US));
}

bool
pacer_holding(const struct pacer *p)
{
    return p->holding;
}
