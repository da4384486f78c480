/*
 * loop: real descriptors (pipes, AF_UNIX socketpairs), real time, real
 * signals. Every run is bounded by a safety timer that stops the loop and
 * records that it had to, so a callback that never comes fails the test
 * instead of hanging it. The timer heap is checked against a model: each
 * expiry must be the earliest deadline still armed, while callbacks stop,
 * re-set and re-arm timers (their own and others') at random.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "util.h"

struct fx {
    struct loop *l;
    struct loop_timer safety;
    bool timed_out;
    int fds[4];
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    assert_int_equal(loop_new(&f->l), 0);
    for (size_t i = 0; i < UTIL_ARRAY_LEN(f->fds); i++)
        f->fds[i] = -1;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    loop_free(f->l);
    for (size_t i = 0; i < UTIL_ARRAY_LEN(f->fds); i++)
        if (f->fds[i] >= 0)
            close(f->fds[i]);
    free(f);
    return 0;
}

static void
on_safety(struct loop *l, struct loop_timer *t, void *arg)
{
    struct fx *f = arg;

    (void)t;
    f->timed_out = true;
    loop_stop(l);
}

/* Run the loop until something calls loop_stop(), or ms have passed. */
static void
run_for(struct fx *f, unsigned ms)
{
    f->timed_out = false;
    loop_timer_init(&f->safety, on_safety, f);
    loop_timer_set(f->l, &f->safety, util_now_ms() + ms);
    assert_int_equal(loop_run(f->l), 0);
    loop_timer_stop(f->l, &f->safety);
}

static void
stop_hook(struct loop *l, void *arg)
{
    (void)arg;
    loop_stop(l);
}

/* One iteration: whatever is ready now, or a wait of at most ms. */
static void
run_once(struct fx *f, unsigned ms)
{
    loop_before_wait(f->l, stop_hook, NULL);
    run_for(f, ms);
    loop_before_wait(f->l, NULL, NULL);
}

static void
make_pipe(struct fx *f, int slot)
{
    assert_int_equal(pipe2(&f->fds[slot], O_NONBLOCK | O_CLOEXEC), 0);
}

static void
make_pair(struct fx *f, int slot)
{
    assert_int_equal(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, &f->fds[slot]), 0);
}

/* --- descriptors --------------------------------------------------------- */

struct fdrec {
    int calls;
    uint32_t ev;      /* union of the events seen */
    bool stop;        /* loop_stop() from the callback */
    int del;          /* fd to loop_del() from the callback, or -1 */
    struct fdrec *of; /* shared counter for the batch test */
};

static void
on_fd(struct loop *l, int fd, uint32_t ev, void *arg)
{
    struct fdrec *r = arg;
    char b[64];

    r->calls++;
    r->ev |= ev;
    if (r->of)
        r->of->calls++;
    if (ev & LOOP_READ)
        while (read(fd, b, sizeof(b)) > 0)
            ;
    if (r->del >= 0)
        assert_int_equal(loop_del(l, r->del), 0);
    if (r->stop)
        loop_stop(l);
}

static void
test_loop_readable_pipe_fires_read_callback(void **state)
{
    struct fx *f = *state;
    struct fdrec r = { .stop = true, .del = -1 };

    make_pipe(f, 0);
    assert_int_equal(loop_add(f->l, f->fds[0], LOOP_READ, on_fd, &r), 0);
    assert_int_equal(loop_events(f->l, f->fds[0]), LOOP_READ);
    assert_int_equal(write(f->fds[1], "x", 1), 1);
    run_for(f, 1000);
    assert_false(f->timed_out);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.ev, LOOP_READ);
}

static void
test_loop_quiet_fd_does_not_fire(void **state)
{
    struct fx *f = *state;
    struct fdrec r = { .del = -1 }, w = { .del = -1 };

    make_pipe(f, 0);
    make_pair(f, 2);
    /* an empty pipe, and a writable socket watched for nothing */
    assert_int_equal(loop_add(f->l, f->fds[0], LOOP_READ, on_fd, &r), 0);
    assert_int_equal(loop_add(f->l, f->fds[2], 0, on_fd, &w), 0);
    run_for(f, 50);
    assert_true(f->timed_out);
    assert_int_equal(r.calls, 0);
    assert_int_equal(w.calls, 0);
}

static void
test_loop_mod_changes_interest(void **state)
{
    struct fx *f = *state;
    struct fdrec r = { .del = -1 };
    int fd;

    make_pair(f, 0);
    fd = f->fds[0];
    assert_int_equal(loop_add(f->l, fd, 0, on_fd, &r), 0);
    run_once(f, 30);
    assert_int_equal(r.calls, 0);

    assert_int_equal(loop_mod(f->l, fd, LOOP_WRITE), 0);
    assert_int_equal(loop_events(f->l, fd), LOOP_WRITE);
    run_once(f, 1000);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.ev, LOOP_WRITE);

    /* back to reading with nothing to read: quiet although writable */
    assert_int_equal(loop_mod(f->l, fd, LOOP_READ), 0);
    assert_int_equal(loop_events(f->l, fd), LOOP_READ);
    r.ev = 0;
    run_once(f, 30);
    assert_int_equal(r.calls, 1);

    assert_int_equal(write(f->fds[1], "y", 1), 1);
    run_once(f, 1000);
    assert_int_equal(r.calls, 2);
    assert_int_equal(r.ev, LOOP_READ);
}

/* Two descriptors ready in the same batch; whichever is dispatched first
 * unregisters the other, whose already-fetched event must then be dropped. */
static void
test_loop_del_in_callback_drops_event_of_same_batch(void **state)
{
    struct fx *f = *state;
    struct fdrec total = { .del = -1 };
    struct fdrec a = { .of = &total }, b = { .of = &total };

    make_pipe(f, 0);
    make_pipe(f, 2);
    a.del = f->fds[2];
    b.del = f->fds[0];
    assert_int_equal(loop_add(f->l, f->fds[0], LOOP_READ, on_fd, &a), 0);
    assert_int_equal(loop_add(f->l, f->fds[2], LOOP_READ, on_fd, &b), 0);
    assert_int_equal(write(f->fds[1], "a", 1), 1);
    assert_int_equal(write(f->fds[3], "b", 1), 1);
    run_once(f, 1000);
    assert_int_equal(total.calls, 1);
    /* the survivor is still registered, the other is not */
    assert_int_equal(loop_events(f->l, a.calls ? f->fds[0] : f->fds[2]), LOOP_READ);
    assert_int_equal(loop_events(f->l, a.calls ? f->fds[2] : f->fds[0]), 0);
}

static void
test_loop_hangup_arrives_as_read_and_write(void **state)
{
    struct fx *f = *state;
    struct fdrec r = { .stop = true, .del = -1 };

    make_pair(f, 0);
    /* watched for nothing: a hang-up is reported anyway */
    assert_int_equal(loop_add(f->l, f->fds[0], 0, on_fd, &r), 0);
    close(f->fds[1]);
    f->fds[1] = -1;
    run_for(f, 1000);
    assert_false(f->timed_out);
    assert_int_equal(r.ev, LOOP_READ | LOOP_WRITE);
}

static void
test_loop_bad_descriptors_are_rejected(void **state)
{
    struct fx *f = *state;
    struct fdrec r = { .del = -1 };
    int fd;

    make_pipe(f, 0);
    fd = f->fds[0];
    assert_int_equal(loop_add(f->l, -1, LOOP_READ, on_fd, &r), -EBADF);
    assert_int_equal(loop_mod(f->l, fd, LOOP_READ), -EBADF);
    assert_int_equal(loop_del(f->l, fd), -EBADF);
    assert_int_equal(loop_events(f->l, fd), 0);
    assert_int_equal(loop_events(f->l, 100000), 0);
    assert_int_equal(loop_add(f->l, fd, LOOP_READ, on_fd, &r), 0);
    assert_int_equal(loop_add(f->l, fd, LOOP_READ, on_fd, &r), -EEXIST);
    assert_int_equal(loop_del(f->l, fd), 0);
    assert_int_equal(loop_del(f->l, fd), -EBADF);
    assert_int_equal(loop_events(f->l, fd), 0);
}

/* --- timers --------------------------------------------------------------- */

enum { MODEL_TIMERS = 300, MODEL_NEVER = 20 };

/*
 * The model: which timers should be armed, and when. The first MODEL_NEVER
 * are never armed, or armed and stopped before the loop runs.
 */
struct tmodel {
    struct loop_timer t[MODEL_TIMERS];
    bool armed[MODEL_TIMERS];
    uint64_t when[MODEL_TIMERS];
    int fired[MODEL_TIMERS];
    int narmed;
    int budget; /* re-arms left, so that the run ends */
    uint64_t seed;
};

static uint64_t
rng_next(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static uint64_t
rng_below(uint64_t *s, uint64_t n)
{
    return rng_next(s) % n;
}

/* A deadline from 10 ms in the past to 30 ms in the future. */
static uint64_t
model_deadline(struct tmodel *m, uint64_t now)
{
    uint64_t d = rng_below(&m->seed, 41);

    return now >= 10 ? now - 10 + d : now + d;
}

static void
model_set(struct loop *l, struct tmodel *m, size_t i, uint64_t when)
{
    if (!m->armed[i])
        m->narmed++;
    m->armed[i] = true;
    m->when[i] = when;
    loop_timer_set(l, &m->t[i], when);
}

static void
model_stop(struct loop *l, struct tmodel *m, size_t i)
{
    if (m->armed[i])
        m->narmed--;
    m->armed[i] = false;
    loop_timer_stop(l, &m->t[i]);
}

static void
on_model_timer(struct loop *l, struct loop_timer *t, void *arg)
{
    struct tmodel *m = arg;
    size_t i = (size_t)(t - m->t);

    assert_true(i < MODEL_TIMERS);
    assert_true(i >= MODEL_NEVER);
    assert_true(m->armed[i]);
    assert_false(loop_timer_armed(t));
    assert_true(m->when[i] <= loop_now(l));
    /* the earliest deadline still armed */
    for (size_t j = 0; j < MODEL_TIMERS; j++)
        if (m->armed[j] && j != i && m->when[j] < m->when[i])
            fail_msg("timer %zu (when %llu) fired before timer %zu (when %llu)", i,
                     (unsigned long long)m->when[i], j, (unsigned long long)m->when[j]);
    m->armed[i] = false;
    m->narmed--;
    m->fired[i]++;

    /* then change the heap under the loop's feet */
    for (int k = 0; k < 2 && m->budget > 0; k++) {
        size_t j = MODEL_NEVER + rng_below(&m->seed, MODEL_TIMERS - MODEL_NEVER);
        switch (rng_below(&m->seed, 4)) {
        case 0: /* stop another timer */
            model_stop(l, m, j);
            break;
        case 1: /* re-set another (or this) timer, maybe into the past */
        case 2:
            m->budget--;
            model_set(l, m, j, model_deadline(m, loop_now(l)));
            break;
        default:
            break;
        }
    }
    if (m->narmed == 0)
        loop_stop(l);
}

static void
test_loop_timers_fire_in_deadline_order(void **state)
{
    struct fx *f = *state;
    struct tmodel *m = calloc(1, sizeof(*m));
    uint64_t now = loop_now(f->l);
    int total = 0;

    assert_non_null(m);
    m->seed = 0x2545f4914f6cdd1du;
    m->budget = 600;
    for (size_t i = 0; i < MODEL_TIMERS; i++)
        loop_timer_init(&m->t[i], on_model_timer, m);
    for (size_t i = 0; i < MODEL_TIMERS; i++)
        model_set(f->l, m, i, model_deadline(m, now));
    /* the never-firing group: stopped now, re-set then stopped, or both */
    for (size_t i = 0; i < MODEL_NEVER; i++) {
        model_stop(f->l, m, i);
        if (i % 2)
            loop_timer_set(f->l, &m->t[i], now + 5);
        loop_timer_stop(f->l, &m->t[i]);
    }
    run_for(f, 3000);
    assert_false(f->timed_out);
    assert_int_equal(m->narmed, 0);
    for (size_t i = 0; i < MODEL_TIMERS; i++) {
        assert_false(loop_timer_armed(&m->t[i]));
        if (i < MODEL_NEVER)
            assert_int_equal(m->fired[i], 0);
        total += m->fired[i];
    }
    assert_true(total >= MODEL_TIMERS - MODEL_NEVER);
    free(m);
}

struct trec {
    struct loop_timer t;
    int fired;
    uint64_t at;               /* util_now_ms() when it fired */
    struct loop_timer *victim; /* stopped from this callback */
    bool stop;
};

static void
on_trec(struct loop *l, struct loop_timer *t, void *arg)
{
    struct trec *r = arg;

    (void)t;
    r->fired++;
    r->at = util_now_ms();
    if (r->victim)
        loop_timer_stop(l, r->victim);
    if (r->stop)
        loop_stop(l);
}

static void
test_loop_timer_stopped_by_another_timer_never_fires(void **state)
{
    struct fx *f = *state;
    struct trec a = { .fired = 0 }, same = { .fired = 0 }, killer = { .fired = 0 },
                later = { .fired = 0 }, end = { .stop = true };
    uint64_t now = util_now_ms();

    loop_timer_init(&a.t, on_trec, &a);
    loop_timer_init(&same.t, on_trec, &same);
    loop_timer_init(&killer.t, on_trec, &killer);
    loop_timer_init(&later.t, on_trec, &later);
    loop_timer_init(&end.t, on_trec, &end);
    /* due in the same iteration: whichever fires first stops the other */
    a.victim = &same.t;
    same.victim = &a.t;
    killer.victim = &later.t;
    loop_timer_set(f->l, &a.t, now + 5);
    loop_timer_set(f->l, &same.t, now + 5);
    loop_timer_set(f->l, &killer.t, now + 10);
    loop_timer_set(f->l, &later.t, now + 25);
    loop_timer_set(f->l, &end.t, now + 50);
    run_for(f, 1000);
    assert_false(f->timed_out);
    assert_int_equal(a.fired + same.fired, 1);
    assert_int_equal(killer.fired, 1);
    assert_int_equal(later.fired, 0);
    assert_false(loop_timer_armed(&later.t));
    assert_int_equal(end.fired, 1);
}

static void
test_loop_unarmed_timer_never_fires(void **state)
{
    struct fx *f = *state;
    struct trec never = { .fired = 0 }, stopped = { .fired = 0 }, end = { .stop = true };

    loop_timer_init(&never.t, on_trec, &never);
    loop_timer_init(&stopped.t, on_trec, &stopped);
    loop_timer_init(&end.t, on_trec, &end);
    assert_false(loop_timer_armed(&never.t));
    loop_timer_set(f->l, &stopped.t, loop_now(f->l));
    assert_true(loop_timer_armed(&stopped.t));
    loop_timer_stop(f->l, &stopped.t);
    assert_false(loop_timer_armed(&stopped.t));
    loop_timer_stop(f->l, &stopped.t); /* twice is harmless */
    loop_timer_set(f->l, &end.t, util_now_ms() + 20);
    run_for(f, 1000);
    assert_false(f->timed_out);
    assert_int_equal(end.fired, 1);
    assert_int_equal(never.fired, 0);
    assert_int_equal(stopped.fired, 0);
}

/* The wait lasts until the nearest deadline, not the latest one, and a
 * deadline is never served early. */
static void
test_loop_wait_ends_at_nearest_deadline(void **state)
{
    struct fx *f = *state;
    struct trec near = { .stop = true }, far = { .stop = true };
    uint64_t start = util_now_ms();

    loop_timer_init(&near.t, on_trec, &near);
    loop_timer_init(&far.t, on_trec, &far);
    loop_timer_set(f->l, &far.t, start + 600);
    loop_timer_set(f->l, &near.t, start + 40);
    run_for(f, 2000);
    assert_false(f->timed_out);
    assert_int_equal(near.fired, 1);
    assert_int_equal(far.fired, 0);
    assert_true(near.at >= start + 40);
    assert_true(loop_now(f->l) >= start + 40);
    assert_true(near.at < start + 400);
    loop_timer_stop(f->l, &far.t);
}

/* A deadline set from a callback while the loop already knows a later one
 * must shorten the next wait. */
static void
on_fd_sets_timer(struct loop *l, int fd, uint32_t ev, void *arg)
{
    struct trec *r = arg;
    char b[8];

    (void)ev;
    while (read(fd, b, sizeof(b)) > 0)
        ;
    loop_timer_set(l, &r->t, util_now_ms() + 20);
}

static void
test_loop_deadline_set_in_callback_shortens_wait(void **state)
{
    struct fx *f = *state;
    struct trec near = { .stop = true }, far = { .stop = true };
    uint64_t start = util_now_ms();

    make_pipe(f, 0);
    loop_timer_init(&near.t, on_trec, &near);
    loop_timer_init(&far.t, on_trec, &far);
    loop_timer_set(f->l, &far.t, start + 800);
    assert_int_equal(loop_add(f->l, f->fds[0], LOOP_READ, on_fd_sets_timer, &near), 0);
    assert_int_equal(write(f->fds[1], "x", 1), 1);
    run_for(f, 2000);
    assert_false(f->timed_out);
    assert_int_equal(near.fired, 1);
    assert_int_equal(far.fired, 0);
    assert_true(near.at < start + 500);
    loop_timer_stop(f->l, &far.t);
}

/* A handler that runs 40 ms, then sets a timer 10 ms after its own end. */
static void
on_fd_slow_sets_timer(struct loop *l, int fd, uint32_t ev, void *arg)
{
    struct trec *r = arg;
    uint64_t until = util_now_ms() + 40;
    char b[8];

    (void)ev;
    while (read(fd, b, sizeof(b)) > 0)
        ;
    while (util_now_ms() < until)
        ;
    loop_timer_set(l, &r->t, util_now_ms() + 10);
}

/* The wait is measured from the time the loop goes to sleep, not from the
 * iteration's wake-up: measured from the wake-up, a timer set late in a
 * long iteration fires late by the iteration's length (here ~40 ms). */
static void
test_loop_timer_after_long_iteration_not_late_by_it(void **state)
{
    struct fx *f = *state;
    struct trec near = { .stop = true };
    uint64_t start = util_now_ms();

    make_pipe(f, 0);
    loop_timer_init(&near.t, on_trec, &near);
    assert_int_equal(loop_add(f->l, f->fds[0], LOOP_READ, on_fd_slow_sets_timer, &near), 0);
    assert_int_equal(write(f->fds[1], "x", 1), 1);
    run_for(f, 2000);
    assert_false(f->timed_out);
    assert_int_equal(near.fired, 1);
    assert_true(near.at >= start + 50);
    if (near.at >= start + 75)
        fail_msg("the timer due at +50 ms fired at +%llu ms",
                 (unsigned long long)(near.at - start));
}

/*
 * Deadlines so far away that the epoll timeout must be clamped: the loop
 * still serves a ready descriptor at once. The exact boundary, INT32_MAX ms
 * from now, is the interesting one: the timeout is computed as an int.
 */
static void
test_loop_far_deadline_keeps_serving_descriptors(void **state)
{
    struct fx *f = *state;
    const uint64_t aheads[] = { (uint64_t)INT32_MAX - 1, (uint64_t)INT32_MAX,
                                (uint64_t)INT32_MAX + 1, UINT64_MAX / 2 };
    struct trec far = { .fired = 0 };

    make_pipe(f, 0);
    loop_timer_init(&far.t, on_trec, &far);
    for (size_t i = 0; i < UTIL_ARRAY_LEN(aheads); i++) {
        struct fdrec r = { .stop = true, .del = -1 };

        assert_int_equal(loop_add(f->l, f->fds[0], LOOP_READ, on_fd, &r), 0);
        assert_int_equal(write(f->fds[1], "x", 1), 1);
        loop_timer_set(f->l, &far.t, loop_now(f->l) + aheads[i]);
        loop_before_wait(f->l, stop_hook, NULL);
        /* no safety timer here: it would be the nearest deadline */
        assert_int_equal(loop_run(f->l), 0);
        loop_before_wait(f->l, NULL, NULL);
        assert_int_equal(r.calls, 1);
        assert_int_equal(far.fired, 0);
        assert_int_equal(loop_del(f->l, f->fds[0]), 0);
    }
    loop_timer_stop(f->l, &far.t);
}

struct spin {
    struct loop_timer t;
    int fires;
    int fires_this_iteration;
    int iterations;
    int fd_calls;
};

static void
on_spin_timer(struct loop *l, struct loop_timer *t, void *arg)
{
    struct spin *s = arg;

    s->fires++;
    if (++s->fires_this_iteration > 1000)
        fail_msg("a timer re-armed into the past keeps the iteration from ending");
    loop_timer_set(l, t, loop_now(l) - 1);
}

static void
spin_hook(struct loop *l, void *arg)
{
    struct spin *s = arg;

    s->fires_this_iteration = 0;
    if (++s->iterations == 5)
        loop_stop(l);
}

static void
on_spin_fd(struct loop *l, int fd, uint32_t ev, void *arg)
{
    struct spin *s = arg;

    (void)l;
    (void)fd;
    (void)ev;
    s->fd_calls++; /* left readable: it is ready in every iteration */
}

static void
test_loop_timer_rearmed_to_past_in_callback_ends_iteration(void **state)
{
    struct fx *f = *state;
    struct spin s = { .fires = 0 };

    make_pipe(f, 0);
    assert_int_equal(write(f->fds[1], "x", 1), 1);
    assert_int_equal(loop_add(f->l, f->fds[0], LOOP_READ, on_spin_fd, &s), 0);
    loop_timer_init(&s.t, on_spin_timer, &s);
    loop_timer_set(f->l, &s.t, loop_now(f->l));
    loop_before_wait(f->l, spin_hook, &s);
    run_for(f, 2000);
    loop_before_wait(f->l, NULL, NULL);
    assert_false(f->timed_out);
    assert_int_equal(s.iterations, 5);
    assert_true(s.fires >= 5);
    /* descriptors kept being served in between */
    assert_int_equal(s.fd_calls, 5);
    loop_timer_stop(f->l, &s.t);
}

/* --- signals, hook, stop ------------------------------------------------- */

struct sigrec {
    int calls;
    int signo;
};

static void
on_signal(struct loop *l, int signo, void *arg)
{
    struct sigrec *r = arg;

    r->calls++;
    r->signo = signo;
    loop_stop(l);
}

static void
test_loop_signal_reaches_callback_with_signo(void **state)
{
    struct fx *f = *state;
    struct sigrec r = { 0 };
    const int sigs[] = { SIGUSR1, SIGUSR2 };

    assert_int_equal(loop_signals(f->l, sigs, UTIL_ARRAY_LEN(sigs), on_signal, &r), 0);
    assert_int_equal(raise(SIGUSR1), 0); /* blocked: waits in the signalfd */
    run_for(f, 1000);
    assert_false(f->timed_out);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.signo, SIGUSR1);

    assert_int_equal(raise(SIGUSR2), 0);
    run_for(f, 1000);
    assert_false(f->timed_out);
    assert_int_equal(r.calls, 2);
    assert_int_equal(r.signo, SIGUSR2);
}

struct trace {
    struct loop_timer t;
    char log[64];
    size_t n;
    int fires;
};

static void
on_trace_timer(struct loop *l, struct loop_timer *t, void *arg)
{
    struct trace *tr = arg;

    if (tr->n + 1 < sizeof(tr->log))
        tr->log[tr->n++] = 'T';
    if (++tr->fires == 5)
        loop_stop(l);
    else
        loop_timer_set(l, t, util_now_ms() + 2);
}

static void
trace_hook(struct loop *l, void *arg)
{
    struct trace *tr = arg;

    (void)l;
    if (tr->n + 1 < sizeof(tr->log))
        tr->log[tr->n++] = 'H';
}

static void
test_loop_before_wait_runs_after_every_iteration(void **state)
{
    struct fx *f = *state;
    struct trace tr = { .n = 0 };

    loop_timer_init(&tr.t, on_trace_timer, &tr);
    loop_timer_set(f->l, &tr.t, util_now_ms() + 2);
    loop_before_wait(f->l, trace_hook, &tr);
    run_for(f, 2000);
    loop_before_wait(f->l, NULL, NULL);
    assert_false(f->timed_out);
    assert_int_equal(tr.fires, 5);
    /* every expiry is followed by the hook before the next one, and the
     * iteration that stops the loop still runs it */
    assert_null(strstr(tr.log, "TT"));
    assert_true(tr.n >= 10);
    assert_int_equal(tr.log[tr.n - 1], 'H');
    assert_int_equal(tr.log[tr.n - 2], 'T');
}

static void
test_loop_stop_ends_run_and_run_can_restart(void **state)
{
    struct fx *f = *state;
    struct trec a = { .stop = true }, b = { .stop = true };

    loop_timer_init(&a.t, on_trec, &a);
    loop_timer_init(&b.t, on_trec, &b);
    loop_timer_set(f->l, &a.t, util_now_ms() + 5);
    loop_timer_set(f->l, &b.t, util_now_ms() + 60);
    run_for(f, 1000);
    assert_false(f->timed_out);
    assert_int_equal(a.fired, 1);
    assert_int_equal(b.fired, 0); /* stopped before b was due */
    run_for(f, 1000);
    assert_false(f->timed_out);
    assert_int_equal(b.fired, 1);
    assert_true(b.at >= a.at);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

/* loop_refresh moves the cached time to the clock, never backwards, and
 * loop_now reports the refreshed value from then on. */
static void
test_loop_refresh_moves_now_forward(void **state)
{
    struct fx *f = *state;
    uint64_t before = loop_now(f->l), after;

    while (util_now_ms() < before + 3)
        ; /* let the clock move on */
    after = loop_refresh(f->l);
    assert_true(after >= before + 3);
    assert_int_equal(loop_now(f->l), after);
    assert_true(loop_refresh(f->l) >= after);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_loop_refresh_moves_now_forward),
        T(test_loop_readable_pipe_fires_read_callback),
        T(test_loop_quiet_fd_does_not_fire),
        T(test_loop_mod_changes_interest),
        T(test_loop_del_in_callback_drops_event_of_same_batch),
        T(test_loop_hangup_arrives_as_read_and_write),
        T(test_loop_bad_descriptors_are_rejected),
        T(test_loop_timers_fire_in_deadline_order),
        T(test_loop_timer_stopped_by_another_timer_never_fires),
        T(test_loop_unarmed_timer_never_fires),
        T(test_loop_wait_ends_at_nearest_deadline),
        T(test_loop_deadline_set_in_callback_shortens_wait),
        T(test_loop_timer_after_long_iteration_not_late_by_it),
        T(test_loop_timer_rearmed_to_past_in_callback_ends_iteration),
        T(test_loop_signal_reaches_callback_with_signo),
        T(test_loop_before_wait_runs_after_every_iteration),
        T(test_loop_stop_ends_run_and_run_can_restart),
        /* last: under UBSan a failure here ends the binary */
        T(test_loop_far_deadline_keeps_serving_descriptors),
    };

    log_set_level(LOG_ERR);
    return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
