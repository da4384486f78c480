/*
 * loop: one epoll instance, a timer heap and a signalfd. It maps a file
 * descriptor to (callback, arg) and knows nothing of clients, protocols or
 * sockets beyond that. Timers are embedded in their owners and kept in a
 * binary heap, so the next deadline is O(1) to find and O(log n) to change;
 * the loop's own epoll_wait timeout serves them, no timerfd needed.
 */
#ifndef ECHOCHAT_LOOP_H
#define ECHOCHAT_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct loop_timer;

#define LOOP_READ  0x1u
#define LOOP_WRITE 0x2u

/* ev is LOOP_READ and/or LOOP_WRITE; errors and hang-ups arrive as both, and
 * the next read() or write() reports what really happened. */
typedef void loop_fd_fn(struct loop *l, int fd, uint32_t ev, void *arg);
typedef void loop_timer_fn(struct loop *l, struct loop_timer *t, void *arg);
typedef void loop_signal_fn(struct loop *l, int signo, void *arg);
typedef void loop_hook_fn(struct loop *l, void *arg);

/* Embed one in the owner and loop_timer_init() it; unarmed until set. */
struct loop_timer {
    uint64_t when;     /* absolute, util_now_ms() clock */
    size_t slot;       /* heap index + 1; 0 while unarmed */
    loop_timer_fn *fn; /* called once per expiry, already unarmed */
    void *arg;
};

/* Create a loop. Returns 0 with *out set, or -errno. */
int loop_new(struct loop **out);
void loop_free(struct loop *l);

/* Watch fd for ev (may be 0: registered but quiet). Returns 0 or -errno. */
int loop_add(struct loop *l, int fd, uint32_t ev, loop_fd_fn *fn, void *arg);
/* Change the events watched on a registered fd; a no-op when unchanged. */
int loop_mod(struct loop *l, int fd, uint32_t ev);
/* Stop watching fd (call before close()). Events for it already fetched in
 * this iteration are dropped. Returns 0 or -errno. */
int loop_del(struct loop *l, int fd);
/* The events currently watched on fd (0 when not registered). */
uint32_t loop_events(const struct loop *l, int fd);

void loop_timer_init(struct loop_timer *t, loop_timer_fn *fn, void *arg);
/* Arm (or move) t to fire at absolute time when_ms. */
void loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t when_ms);
void loop_timer_stop(struct loop *l, struct loop_timer *t);

static inline bool
loop_timer_armed(const struct loop_timer *t)
{
    return t->slot != 0;
}

/* Time of the current iteration's wake-up: cheap, and stable while a batch
 * of events is dispatched. */
uint64_t loop_now(const struct loop *l);
/* The same instant in microseconds (same clock: loop_now() is this / 1000). */
uint64_t loop_now_us(const struct loop *l);
/* Re-read the clock into loop_now() (it never goes back) and return it: for
 * a handler whose timestamps matter that runs late in a long batch. */
uint64_t loop_refresh(struct loop *l);

/* Block the given signals and deliver them through a signalfd to fn.
 * Call once. Returns 0 or -errno. */
int loop_signals(struct loop *l, const int *signals, size_t n, loop_signal_fn *fn, void *arg);

/* fn runs after each batch of events and timers, before the loop sleeps:
 * the place for work collected during the batch (flushing output). */
void loop_before_wait(struct loop *l, loop_hook_fn *fn, void *arg);

/* Run until loop_stop(). Returns 0, or -errno if epoll itself failed. */
int loop_run(struct loop *l);
/* Make loop_run() return after the current iteration. */
void loop_stop(struct loop *l);

#endif
