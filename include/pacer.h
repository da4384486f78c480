/*
 * pacer: when queued output is written. A fan-out server spends its time in
 * writes, and a write costs per segment, not per byte: each send() of a
 * short line is a trip through the TCP stack (on loopback, through the
 * receiver's too, charged to the sender), about 4 µs here, of which the
 * daemon's own code is a few percent. Two lines in one write cost about
 * what one does. So the client table asks the pacer, at each flush, how
 * much of its queue (oldest first) it may leave for later:
 *
 * - Nothing, while writing takes less than half of the time: every client's
 *   output goes out at the end of the loop iteration, at the lowest latency.
 * - Once writing takes more than that (the server is busy), the newest third
 *   of the queue is held: whatever is queued next for those clients joins
 *   them, and one write carries both. Holding at most a third keeps the
 *   median delivery in the part written at once, so batching costs the tail
 *   a little latency and the median none.
 * - Held output waits at most the hold limit: twice the usual interval
 *   between flushes that brought new output (waiting longer is waiting for
 *   a message that is not coming), never more than PACER_HOLD_MAX_US (to
 *   the loop timer's millisecond).
 * - A hold that nothing joined was pure delay: the traffic is closed-loop
 *   (the next message waits for this one, as in request/response), and
 *   holding only slows it. Batching is then off for a back-off period (1 s,
 *   doubling up to 16 s, back to 1 s once a hold pays off).
 *
 * Pure logic: the caller passes the times (µs, one monotonic clock) and
 * counts; no clock, no sockets, no clients. Leaf module.
 */
#ifndef ECHOCHAT_PACER_H
#define ECHOCHAT_PACER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PACER_SHARE_PCT      50       /* busy: writing took more than this share */
#define PACER_BURST_US       20000    /* the share is measured over about this */
#define PACER_HOLD_MAX_US    10000    /* no output is held longer */
#define PACER_HOLD_MIN_US    1000     /* nor a hold limit made shorter */
#define PACER_BACKOFF_US     1000000  /* batching off after a wasted hold... */
#define PACER_BACKOFF_MAX_US 16000000 /* ...doubling up to this */

struct pacer {
    int64_t credit;       /* µs of writing allowed now; <= 0: busy */
    uint64_t refilled;    /* when credit was last topped up */
    uint64_t last_fresh;  /* the last flush that brought new output (0: none) */
    uint64_t gap8;        /* 8 × the mean interval between those */
    uint64_t quiet_until; /* batching is off until then (back-off) */
    uint64_t backoff;     /* the next back-off period, 0: none pending */
    uint64_t joined;      /* output queued for held clients since the hold began */
    bool holding;         /* the last flush left output held */
};

void pacer_init(struct pacer *p, uint64_t now);

/* A flush begins at now with queued clients in the queue; fresh says if any
 * were queued since the previous flush. Returns how many of the newest may
 * be held (0: write everything). */
size_t pacer_begin(struct pacer *p, uint64_t now, size_t queued, bool fresh);
/* The flush spent us µs writing. */
void pacer_spent(struct pacer *p, uint64_t us);
/* The flush ended with output held. */
void pacer_held(struct pacer *p);
/* Output was queued for a client already waiting in the queue. */
void pacer_joined(struct pacer *p);
/* The hold limit of the oldest held output has passed at now: it will be
 * written. Returns true if the hold was wasted (batching now backs off). */
bool pacer_expired(struct pacer *p, uint64_t now);
/* The queue is empty: no hold is in progress any more. */
void pacer_drained(struct pacer *p);
/* How long output may be held, in µs. */
uint64_t pacer_hold_limit(const struct pacer *p);
bool pacer_holding(const struct pacer *p);

#endif
