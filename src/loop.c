/*
 * loop: the event loop. One epoll instance (level-triggered: a handler that
 * reads once per wake-up is fair to everyone else, and nothing is lost if it
 * stops early), an fd-indexed table of (callback, arg, events), a binary
 * min-heap of timers embedded in their owners, and a signalfd so signals are
 * just another readable descriptor. Each iteration: wait (the timeout is the
 * nearest deadline), dispatch events, fire due timers, run the before-wait
 * hook. It knows nothing of clients, protocols or sockets.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "util.h"

#define LOOP_BATCH 256

/* The events watched live in a parallel byte array (l->evs): inside the
 * struct they would pad it from 16 to 24 bytes, for every descriptor. */
struct loop_fd {
    loop_fd_fn *fn; /* NULL: not registered */
    void *arg;
};

struct loop {
    int epfd;
    bool stop;
    uint64_t now_us;     /* the iteration's wake-up; loop_now() is its ms */
    struct loop_fd *fds; /* indexed by fd */
    uint8_t *evs;        /* indexed by fd: LOOP_READ | LOOP_WRITE */
    size_t nfds;         /* entries initialised: fds below are valid indexes */
    size_t capfds;       /* entries allocated */
    struct loop_timer **heap;
    size_t nheap;
    size_t heapcap;
    int sigfd;
    loop_signal_fn *sigfn;
    void *sigarg;
    loop_hook_fn *hook;
    void *hookarg;
};

int
loop_new(struct loop **out)
{
    struct loop *l = xcalloc(1, sizeof(*l));

    if ((l->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        int rc = -errno;
        free(l);
        return rc;
    }
    l->sigfd = -1;
    l->now_us = util_now_us();
    *out = l;
    return 0;
}

void
loop_free(struct loop *l)
{
    if (l == NULL)
        return;
    if (l->sigfd >= 0)
        close(l->sigfd);
    close(l->epfd);
    free(l->fds);
    free(l->evs);
    free(l->heap);
    free(l);
}

static uint32_t
loop_to_epoll(uint32_t ev)
{
    return (ev & LOOP_READ ? EPOLLIN | EPOLLRDHUP : 0) | (ev & LOOP_WRITE ? EPOLLOUT : 0);
}

int
loop_add(struct loop *l, int fd, uint32_t ev, loop_fd_fn *fn, void *arg)
{
    struct epoll_event e = { .events = loop_to_epoll(ev), .data.fd = fd };

    if (fd < 0)
        return -EBADF;
    if ((size_t)fd >= l->capfds) {
        /* grow geometrically */
        size_t n = UTIL_MAX(l->capfds * 2, (size_t)fd + 1);
        n = UTIL_MAX(n, (size_t)64);
        l->fds = xrealloc(l->fds, n * sizeof(*l->fds));
        l->evs = xrealloc(l->evs, n * sizeof(*l->evs));
        l->capfds = n;
    }
    if ((size_t)fd >= l->nfds) {
        /* zero (= unregistered) only up to fd: the pages of the spare
         * capacity stay untouched, so they cost no memory until used */
        memset(l->fds + l->nfds, 0, ((size_t)fd + 1 - l->nfds) * sizeof(*l->fds));
        memset(l->evs + l->nfds, 0, ((size_t)fd + 1 - l->nfds) * sizeof(*l->evs));
        l->nfds = (size_t)fd + 1;
    }
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &e) < 0)
        return -errno;
    l->fds[fd] = (struct loop_fd){ .fn = fn, .arg = arg };
    l->evs[fd] = (uint8_t)(ev & (LOOP_READ | LOOP_WRITE));
    return 0;
}

int
loop_mod(struct loop *l, int fd, uint32_t ev)
{
    struct epoll_event e = { .events = loop_to_epoll(ev), .data.fd = fd };

    if (fd < 0 || (size_t)fd >= l->nfds || l->fds[fd].fn == NULL)
        return -EBADF;
    ev &= LOOP_READ | LOOP_WRITE; /* all that l->evs keeps */
    if (l->evs[fd] == ev)
        return 0; /* no syscall when nothing changes */
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &e) < 0)
        return -errno;
    l->evs[fd] = (uint8_t)ev;
    return 0;
}

int
loop_del(struct loop *l, int fd)
{
    if (fd < 0 || (size_t)fd >= l->nfds || l->fds[fd].fn == NULL)
        return -EBADF;
    l->fds[fd].fn = NULL;
    l->fds[fd].arg = NULL;
    l->evs[fd] = 0;
    if (epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL) < 0)
        return -errno;
    return 0;
}

uint32_t
loop_events(const struct loop *l, int fd)
{
    if (fd < 0 || (size_t)fd >= l->nfds || l->fds[fd].fn == NULL)
        return 0;
    return l->evs[fd];
}

uint64_t
loop_now(const struct loop *l)
{
    return l->now_us / 1000;
}

uint64_t
loop_now_us(const struct loop *l)
{
    return l->now_us;
}

uint64_t
loop_refresh(struct loop *l)
{
    uint64_t now = util_now_us();

    if (now > l->now_us)
        l->now_us = now;
    return loop_now(l);
}

/* --- timers: a binary min-heap on `when`; slot = index + 1 --------------- */

static void
heap_place(struct loop *l, size_t i, struct loop_timer *t)
{
    l->heap[i] = t;
    t->slot = i + 1;
}

static void
heap_up(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->when <= t->when)
            break;
        heap_place(l, i, l->heap[parent]);
        i = parent;
    }
    heap_place(l, i, t);
}

static void
heap_down(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];

    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= l->nheap)
            break;
        if (child + 1 < l->nheap && l->heap[child + 1]->when < l->heap[child]->when)
            child++;
        if (t->when <= l->heap[child]->when)
            break;
        heap_place(l, i, l->heap[child]);
        i = child;
    }
    heap_place(l, i, t);
}

void
loop_timer_init(struct loop_timer *t, loop_timer_fn *fn, void *arg)
{
    t->when = 0;
    t->slot = 0;
    t->fn = fn;
    t->arg = arg;
}

void
loop_timer_stop(struct loop *l, struct loop_timer *t)
{
    size_t i;
    struct loop_timer *last;

    if (t->slot == 0)
        return;
    i = t->slot - 1;
    t->slot = 0;
    last = l->heap[--l->nheap];
    if (last == t)
        return;
    /* move the last timer into the hole, then restore order either way */
    heap_place(l, i, last);
    heap_up(l, i);
    heap_down(l, last->slot - 1);
}

void
loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t when_ms)
{
    loop_timer_stop(l, t);
    if (l->nheap == l->heapcap) {
        l->heapcap = l->heapcap ? l->heapcap * 2 : 16;
        l->heap = xrealloc(l->heap, l->heapcap * sizeof(*l->heap));
    }
    t->when = when_ms;
    l->heap[l->nheap] = t;
    t->slot = ++l->nheap;
    heap_up(l, l->nheap - 1);
}

/* Fire the timers that are due. A callback may re-arm a timer for a time
 * not after now; the budget keeps that from looping here (it fires on the
 * next iteration, whose wait then has a zero timeout). */
static void
loop_fire_timers(struct loop *l)
{
    size_t budget = l->nheap;

    while (budget-- > 0 && l->nheap > 0 && l->heap[0]->when <= loop_now(l)) {
        struct loop_timer *t = l->heap[0];
        loop_timer_stop(l, t);
        t->fn(l, t, t->arg);
    }
}

static int
loop_timeout(const struct loop *l)
{
    uint64_t when, now_us;

    if (l->stop)
        return 0;
    if (l->nheap == 0)
        return -1;
    /* from the time now, not the iteration's wake-up: a long iteration
     * (a big fan-out) would otherwise make every timer late by its length */
    when = l->heap[0]->when;
    now_us = util_now_us();
    if (when <= now_us / 1000)
        return 0;
    if (when - now_us / 1000 >= INT32_MAX)
        return INT32_MAX; /* and when * 1000 might not fit */
    /* rounded up: waking a fraction of a millisecond late beats spinning */
    return (int)((when * 1000 - now_us + 999) / 1000);
}

/* --- signals ------------------------------------------------------------- */

static void
loop_on_signal(struct loop *l, int fd, uint32_t ev, void *arg)
{
    struct signalfd_siginfo si;
    ssize_t n;

    (void)ev;
    (void)arg;
    while ((n = read(fd, &si, sizeof(si))) == (ssize_t)sizeof(si))
        l->sigfn(l, (int)si.ssi_signo, l->sigarg);
}

int
loop_signals(struct loop *l, const int *signals, size_t n, loop_signal_fn *fn, void *arg)
{
    sigset_t set;
    int rc;

    sigemptyset(&set);
    for (size_t i = 0; i < n; i++)
        sigaddset(&set, signals[i]);
    /* blocked first, so a signal between the two calls waits in the fd */
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -errno;
    if ((l->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
        return -errno;
    l->sigfn = fn;
    l->sigarg = arg;
    if ((rc = loop_add(l, l->sigfd, LOOP_READ, loop_on_signal, NULL)) < 0) {
        close(l->sigfd);
        l->sigfd = -1;
        return rc;
    }
    return 0;
}

void
loop_before_wait(struct loop *l, loop_hook_fn *fn, void *arg)
{
    l->hook = fn;
    l->hookarg = arg;
}

void
loop_stop(struct loop *l)
{
    l->stop = true;
}

/*
 * Dispatch one batch. An fd unregistered by an earlier handler of the same
 * batch has fn == NULL and its event is dropped; an fd closed and reused
 * within the batch could see a stale event, which costs one read that
 * returns EAGAIN and nothing else.
 */
static void
loop_dispatch(struct loop *l, const struct epoll_event *evs, int n)
{
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        uint32_t e = evs[i].events, ev = 0;
        struct loop_fd *f;

        if ((size_t)fd >= l->nfds || (f = &l->fds[fd])->fn == NULL)
            continue;
        if (e & (EPOLLERR | EPOLLHUP))
            ev = LOOP_READ | LOOP_WRITE; /* the next read/write tells what */
        if (e & (EPOLLIN | EPOLLRDHUP))
            ev |= LOOP_READ;
        if (e & EPOLLOUT)
            ev |= LOOP_WRITE;
        ev &= l->evs[fd] | (e & (EPOLLERR | EPOLLHUP) ? LOOP_READ | LOOP_WRITE : 0);
        if (ev)
            f->fn(l, fd, ev, f->arg);
    }
}

int
loop_run(struct loop *l)
{
    struct epoll_event evs[LOOP_BATCH];

    l->stop = false;
    while (!l->stop) {
        int n = epoll_wait(l->epfd, evs, LOOP_BATCH, loop_timeout(l));

        if (n < 0 && errno != EINTR)
            return -errno;
        l->now_us = util_now_us();
        if (n > 0)
            loop_dispatch(l, evs, n);
        loop_fire_timers(l);
        if (l->hook)
            l->hook(l, l->hookarg);
    }
    return 0;
}
