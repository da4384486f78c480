/*
 * client: a real loop and real sockets (AF_UNIX socketpairs, and one
 * loopback TCP pair for the peer's name), driven by a small test protocol
 * that records every callback. send() and recv() are wrapped
 * (-Wl,--wrap=send,recv): every call is counted, and a test can script the
 * next calls to write fewer bytes or to fail with an errno; unscripted calls
 * go straight to libc. Each send is also logged (fd and size), and can be
 * made to cost time (a busy-wait), so that the pacer sees a busy server.
 * accept4 is wrapped too (net.o calls it) and always passes through. Peers
 * use read()/write(), which are not wrapped, so only the client layer's own
 * I/O is counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "client_table.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "pacer.h"
#include "util.h"

/* --- the libc edge ------------------------------------------------------- */

ssize_t __wrap_send(int fd, const void *p, size_t n, int flags);
ssize_t __real_send(int fd, const void *p, size_t n, int flags);
ssize_t __wrap_recv(int fd, void *p, size_t n, int flags);
ssize_t __real_recv(int fd, void *p, size_t n, int flags);
int __wrap_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags);
int __real_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags);

/* A scripted value >= 0 lets the call through with at most that many bytes;
 * a negative one fails it with that errno. */
#define WRAP_ALL LONG_MAX

enum { SENT_MAX = 4096 }; /* send calls recorded (the first ones) */

/* The calls seen and the will_return values queued. File scope because a
 * wrapper has no argument to carry it; setup() resets it. */
static struct {
    unsigned send_calls;
    unsigned recv_calls;
    unsigned send_queued;
    unsigned recv_queued;
    /* every send busy-waits this long first: writing then takes the time a
     * real fan-out's writes do, and the pacer sees a busy server */
    unsigned send_cost_us;
    struct {
        int fd;
        size_t n; /* bytes the client layer asked to write */
    } sent[SENT_MAX];
} wrap;

ssize_t
__wrap_send(int fd, const void *p, size_t n, int flags)
{
    long v = WRAP_ALL;

    if (wrap.send_calls < SENT_MAX) {
        wrap.sent[wrap.send_calls].fd = fd;
        wrap.sent[wrap.send_calls].n = n;
    }
    wrap.send_calls++;
    if (wrap.send_cost_us > 0) {
        uint64_t t0 = util_now_us();
        while (util_now_us() - t0 < wrap.send_cost_us)
            continue;
    }
    /* a vanished peer must not raise SIGPIPE, and no write may block */
    assert_int_equal(flags & (MSG_NOSIGNAL | MSG_DONTWAIT), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (wrap.send_queued > 0) {
        wrap.send_queued--;
        v = mock_type(long);
    }
    if (v < 0) {
        errno = (int)-v;
        return -1;
    }
    return __real_send(fd, p, UTIL_MIN(n, (size_t)v), flags);
}

ssize_t
__wrap_recv(int fd, void *p, size_t n, int flags)
{
    long v = WRAP_ALL;

    wrap.recv_calls++;
    assert_int_equal(flags & MSG_DONTWAIT, MSG_DONTWAIT);
    if (wrap.recv_queued > 0) {
        wrap.recv_queued--;
        v = mock_type(long);
    }
    if (v < 0) {
        errno = (int)-v;
        return -1;
    }
    return __real_recv(fd, p, UTIL_MIN(n, (size_t)v), flags);
}

int
__wrap_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
    return __real_accept4(fd, sa, len, flags);
}

static void
script_send(long v)
{
    will_return(__wrap_send, v);
    wrap.send_queued++;
}

static void
script_recv(long v)
{
    will_return(__wrap_recv, v);
    wrap.recv_queued++;
}

/* --- the test protocol --------------------------------------------------- */

struct fx;
struct crowd;

/* One client's view: what happened to it, and how the protocol behaves. */
struct rec {
    struct fx *f;
    int opens, reads, eofs, drains, wakes, notices, closes;
    int last_notice;
    uint64_t wake_at, notice_at; /* util_now_ms() */
    uint8_t in[256];
    size_t nin;
    /* behaviour */
    int open_rc;
    int read_rc;
    bool close_in_read;        /* client_close(c) from ops->read */
    size_t reply_parts;        /* send what arrives back in this many client_sends */
    struct client *close_peer; /* client_close() it from ops->close */
    struct client *send_peer;  /* client_send() to it from ops->close */
};

struct fx {
    struct loop *l;
    struct client_table *t;
    struct client_limits lim;
    struct loop_timer safety, tick;
    bool timed_out;
    bool no_tick;        /* run_until without the 2 ms tick */
    unsigned iterations; /* loop iterations seen by flush_hook */
    bool (*done)(struct fx *f);
    int hook_open, hook_close;
    char trace[64]; /* 'h' hook(opened), 'O' open, 'C' close, 'x' hook(closed) */
    size_t ntrace;
    int peers[40];
    size_t npeers;
    struct rec recs[4]; /* outlive the test body: teardown's closes use them */
    /* what the watched peer has read */
    int watch;
    uint8_t *got;
    size_t ngot, want;
    bool eof;
    /* for done_counter */
    const int *counter;
    int target;
    struct crowd *crowd; /* for done_crowd */
};

enum { GOT_MAX = 1 << 20 };

static void
trace(struct fx *f, char ch)
{
    if (f->ntrace + 1 < sizeof(f->trace))
        f->trace[f->ntrace++] = ch;
}

static int
t_open(struct client *c)
{
    struct rec *r = client_ctx(c);

    r->opens++;
    trace(r->f, 'O');
    return r->open_rc;
}

static int
t_read(struct client *c, const uint8_t *p, size_t n)
{
    struct rec *r = client_ctx(c);
    size_t k = UTIL_MIN(n, sizeof(r->in) - r->nin);

    assert_true(n > 0);
    r->reads++;
    memcpy(r->in + r->nin, p, k);
    r->nin += k;
    if (r->reply_parts) {
        size_t part = n / r->reply_parts;
        for (size_t i = 0; i < r->reply_parts; i++) {
            size_t len = i + 1 == r->reply_parts ? n - i * part : part;
            assert_int_equal(client_send(c, p + i * part, len), 0);
        }
    }
    if (r->close_in_read) {
        client_close(c, CLIENT_WHY_BYE);
        /* still a valid client, only a closing one */
        assert_true(client_closing(c));
        assert_ptr_equal(client_ctx(c), r);
        assert_int_equal(client_send(c, "late", 4), 0);
        assert_int_equal(client_output(c), 0);
        client_close(c, CLIENT_WHY_ERROR); /* idempotent: the first why stays */
        assert_int_equal(r->closes, 0);
    }
    return r->read_rc;
}

static void
t_eof(struct client *c)
{
    struct rec *r = client_ctx(c);

    r->eofs++;
}

static void
t_drain(struct client *c)
{
    struct rec *r = client_ctx(c);

    r->drains++;
}

static void
t_wake(struct client *c)
{
    struct rec *r = client_ctx(c);

    r->wakes++;
    r->wake_at = util_now_ms();
}

static void
t_notice(struct client *c, enum client_notice what)
{
    struct rec *r = client_ctx(c);

    r->notices++;
    r->last_notice = (int)what;
    r->notice_at = util_now_ms();
}

static void
t_close(struct client *c)
{
    struct rec *r = client_ctx(c);

    r->closes++;
    trace(r->f, 'C');
    if (r->close_peer)
        client_close(r->close_peer, CLIENT_WHY_SHUTDOWN);
    if (r->send_peer)
        assert_int_equal(client_send(r->send_peer, "bye", 3), 0);
}

static const struct client_ops test_ops = {
    .name = "test",
    .open = t_open,
    .read = t_read,
    .eof = t_eof,
    .drain = t_drain,
    .wake = t_wake,
    .notice = t_notice,
    .close = t_close,
};

static void
on_hook(struct client *c, bool opened, void *arg)
{
    struct fx *f = arg;

    assert_non_null(c);
    if (opened)
        f->hook_open++;
    else
        f->hook_close++;
    trace(f, opened ? 'h' : 'x');
}

/* --- fixture and loop driving -------------------------------------------- */

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    assert_non_null(f->got = malloc(GOT_MAX));
    memset(&wrap, 0, sizeof(wrap));
    f->lim.max_output = 1 << 20;
    f->lim.idle_timeout = 0;
    f->lim.linger_ms = 2000;
    f->watch = -1;
    assert_int_equal(loop_new(&f->l), 0);
    *state = f;
    return 0;
}

/* Tests adjust f->lim first, then create the table. */
static void
table(struct fx *f)
{
    assert_int_equal(client_table_new(&f->t, f->l, 0, &f->lim), 0);
    client_table_hook(f->t, on_hook, f);
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    client_table_free(f->t);
    loop_free(f->l);
    for (size_t i = 0; i < f->npeers; i++)
        close(f->peers[i]);
    free(f->got);
    free(f);
    return 0;
}

/* Recorder i, zeroed. */
static struct rec *
rec(struct fx *f, size_t i)
{
    assert_true(i < UTIL_ARRAY_LEN(f->recs));
    memset(&f->recs[i], 0, sizeof(f->recs[i]));
    f->recs[i].f = f;
    return &f->recs[i];
}

/* A client on one end of a socketpair; *peer is the other end. */
static struct client *
add_client(struct fx *f, struct rec *r, int notice, int *peer)
{
    int sv[2];

    assert_true(f->npeers < UTIL_ARRAY_LEN(f->peers));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    f->peers[f->npeers++] = sv[1];
    *peer = sv[1];
    r->f = f;
    return client_new(f->t, sv[0], NULL, &test_ops, r, notice);
}

/* Read what the watched peer has been sent, without blocking. */
static void
pump(struct fx *f)
{
    ssize_t n = -1;

    if (f->watch < 0 || f->eof)
        return;
    while (f->ngot < GOT_MAX && (n = read(f->watch, f->got + f->ngot, GOT_MAX - f->ngot)) > 0)
        f->ngot += (size_t)n;
    if (n == 0)
        f->eof = true;
}

static void
watch(struct fx *f, int peer, size_t want)
{
    f->watch = peer;
    f->ngot = 0;
    f->want = want;
    f->eof = false;
}

static bool
done_always(struct fx *f)
{
    (void)f;
    return true;
}

static bool
done_got(struct fx *f)
{
    pump(f);
    return f->ngot >= f->want;
}

static bool
done_eof(struct fx *f)
{
    pump(f);
    return f->eof;
}

static bool
done_counter(struct fx *f)
{
    return *f->counter >= f->target;
}

static bool
done_empty(struct fx *f)
{
    return client_table_count(f->t) == 0;
}

/* What the daemon's before-wait hook does, then the test's stop condition. */
static void
flush_hook(struct loop *l, void *arg)
{
    struct fx *f = arg;

    f->iterations++;
    client_table_flush(f->t);
    if (f->done && f->done(f))
        loop_stop(l);
}

static void
on_safety(struct loop *l, struct loop_timer *t, void *arg)
{
    struct fx *f = arg;

    (void)t;
    f->timed_out = true;
    loop_stop(l);
}

/* Keeps iterations coming, so the stop condition is checked while the
 * loop itself has nothing to do (a peer that reads only in done()). */
static void
on_tick(struct loop *l, struct loop_timer *t, void *arg)
{
    (void)arg;
    loop_timer_set(l, t, util_now_ms() + 2);
}

/* Run until done(f), at most ms. Returns true if done came first. */
static bool
run_until(struct fx *f, bool (*done)(struct fx *), unsigned ms)
{
    f->done = done;
    f->timed_out = false;
    loop_timer_init(&f->safety, on_safety, f);
    loop_timer_init(&f->tick, on_tick, f);
    loop_timer_set(f->l, &f->safety, util_now_ms() + ms);
    if (!f->no_tick)
        loop_timer_set(f->l, &f->tick, util_now_ms() + 2);
    loop_before_wait(f->l, flush_hook, f);
    assert_int_equal(loop_run(f->l), 0);
    loop_timer_stop(f->l, &f->safety);
    loop_timer_stop(f->l, &f->tick);
    f->done = NULL;
    return !f->timed_out;
}

static bool
run_until_count(struct fx *f, const int *counter, int target, unsigned ms)
{
    f->counter = counter;
    f->target = target;
    return run_until(f, done_counter, ms);
}

/* One iteration (what is ready now, or the next tick). */
static void
run_once(struct fx *f)
{
    run_until(f, done_always, 1000);
}

static void
pattern(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 131 + seed + (i >> 8));
}

/* Nothing waiting on a peer socket. */
static void
assert_peer_quiet(int peer)
{
    char b[1];

    assert_int_equal(read(peer, b, 1), -1);
    assert_int_equal(errno, EAGAIN);
}

/* The fd of a client, found through the table. */
static int
fd_of(struct fx *f, struct client *c)
{
    for (int fd = 0; fd < 1024; fd++)
        if (client_table_get(f->t, fd) == c)
            return fd;
    fail_msg("client not in the table");
    return -1;
}

/* --- opening ------------------------------------------------------------- */

static void
test_client_new_calls_hook_and_open(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    int peer;

    table(f);
    c = add_client(f, r, -1, &peer);
    assert_non_null(c);
    assert_int_equal(r->opens, 1);
    assert_int_equal(f->hook_open, 1);
    assert_int_equal(f->hook_close, 0);
    assert_int_equal(r->notices, 0);
    assert_int_equal(client_table_count(f->t), 1);
    assert_int_equal(client_table_stats(f->t)->accepted, 1);
    assert_ptr_equal(client_ctx(c), r);
    assert_ptr_equal(client_ops_of(c), &test_ops);
    assert_false(client_closing(c));
    assert_int_equal(client_output(c), 0);
}

static void
test_client_new_watches_for_read_only(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    int peer;

    table(f);
    c = add_client(f, r, -1, &peer);
    assert_int_equal(loop_events(f->l, fd_of(f, c)), LOOP_READ);
}

static void
test_client_open_failure_closes_as_protocol_error(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    int peer;

    r->open_rc = -EPROTO;
    table(f);
    c = add_client(f, r, -1, &peer);
    assert_non_null(c);
    assert_true(client_closing(c));
    client_table_flush(f->t);
    assert_int_equal(r->closes, 1);
    assert_int_equal(f->hook_close, 1);
    assert_int_equal(client_table_count(f->t), 0);
    assert_int_equal(client_table_stats(f->t)->closed[CLIENT_WHY_PROTOCOL], 1);
}

static void
test_client_refused_gets_notice_but_no_open_or_hook(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    int peer;

    table(f);
    c = add_client(f, r, CLIENT_NOTICE_FULL, &peer);
    assert_non_null(c);
    assert_int_equal(r->notices, 1);
    assert_int_equal(r->last_notice, CLIENT_NOTICE_FULL);
    assert_int_equal(r->opens, 0);
    assert_int_equal(f->hook_open, 0);
    assert_true(client_closing(c));
    /* finished: the peer sees our FIN, then we wait for its own */
    watch(f, peer, 0);
    assert_true(run_until(f, done_eof, 2000));
    assert_int_equal(f->ngot, 0);
    assert_int_equal(client_table_count(f->t), 1);
    assert_int_equal(shutdown(peer, SHUT_WR), 0);
    assert_true(run_until(f, done_empty, 2000));
    assert_int_equal(r->opens, 0);
    assert_int_equal(r->closes, 0);
    assert_int_equal(f->hook_open, 0);
    assert_int_equal(f->hook_close, 0);
    assert_int_equal(client_table_stats(f->t)->closed[CLIENT_WHY_REFUSED], 1);
}

/* A connected loopback TCP pair: returns the accepted end (for the client)
 * with its peer address in *peer; *cfd is the connecting end (the peer). */
static int
tcp_pair(struct fx *f, struct net_addr *peer, int *cfd)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    struct net_addr local;
    int lfd, fd;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true((lfd = net_listen((struct sockaddr *)&sin, sizeof(sin), 8)) >= 0);
    assert_int_equal(net_local_addr(lfd, &local), 0);
    assert_true((*cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
    f->peers[f->npeers++] = *cfd;
    assert_int_equal(connect(*cfd, (struct sockaddr *)&local.ss, local.len), 0);
    assert_true((fd = net_accept(lfd, peer)) >= 0);
    close(lfd);
    return fd;
}

static void
test_client_name_is_fd_and_peer_address(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct net_addr peer, mine;
    char want[CLIENT_NAME_MAX], name[CLIENT_NAME_MAX];
    uint8_t key[16];
    struct client *c;
    int cfd, fd;

    table(f);
    fd = tcp_pair(f, &peer, &cfd);
    assert_int_equal(net_local_addr(cfd, &mine), 0);
    c = client_new(f->t, fd, &peer, &test_ops, r, -1);
    assert_non_null(c);
    snprintf(want, sizeof(want), "client %d 127.0.0.1:%u", fd,
             net_addr_port((struct sockaddr *)&mine.ss));
    assert_string_equal(client_name(c, name, sizeof(name)), want);
    assert_int_equal(client_addr_key(c, key), 4);
    assert_memory_equal(key, "\x7f\x00\x00\x01", 4);
}

/* --- output -------------------------------------------------------------- */

static void
test_client_send_waits_for_flush_then_sends_once(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    char b[32];
    int peer;

    table(f);
    c = add_client(f, r, -1, &peer);
    assert_int_equal(client_send(c, "one ", 4), 0);
    assert_int_equal(client_send(c, "two ", 4), 0);
    assert_int_equal(client_send(c, "three", 5), 0);
    assert_int_equal(wrap.send_calls, 0);
    assert_int_equal(client_output(c), 13);
    assert_peer_quiet(peer);

    client_table_flush(f->t);
    assert_int_equal(wrap.send_calls, 1);
    assert_int_equal(read(peer, b, sizeof(b)), 13);
    assert_memory_equal(b, "one two three", 13);
    /* all taken: no storage held, no EPOLLOUT */
    assert_int_equal(client_output(c), 0);
    assert_false(client_output_full(c));
    assert_int_equal(loop_events(f->l, fd_of(f, c)), LOOP_READ);
    assert_int_equal(client_table_stats(f->t)->bytes_out, 13);
    /* a second flush has nothing to write */
    client_table_flush(f->t);
    assert_int_equal(wrap.send_calls, 1);
}

static void
test_client_replies_in_a_callback_go_out_in_one_send(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    int peer;

    r->reply_parts = 3;
    table(f);
    c = add_client(f, r, -1, &peer);
    assert_int_equal(write(peer, "abcdefghi", 9), 9);
    watch(f, peer, 9);
    assert_true(run_until(f, done_got, 2000));
    assert_int_equal(r->reads, 1);
    assert_memory_equal(r->in, "abcdefghi", 9);
    assert_int_equal(f->ngot, 9);
    assert_memory_equal(f->got, "abcdefghi", 9);
    assert_int_equal(wrap.send_calls, 1);
    assert_int_equal(client_output(c), 0);
    assert_int_equal(client_table_stats(f->t)->bytes_in, 9);
    assert_int_equal(client_table_stats(f->t)->bytes_out, 9);
}

static void
test_client_short_write_arms_write_until_drained(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    uint8_t data[1100];
    struct client *c;
    int peer, fd;

    table(f);
    c = add_client(f, r, -1, &peer);
    fd = fd_of(f, c);
    pattern(data, sizeof(data), 1);
    assert_int_equal(client_send(c, data, 1000), 0);
    script_send(100);
    client_table_flush(f->t);
    assert_int_equal(wrap.send_calls, 1);
    assert_int_equal(client_output(c), 900);
    assert_int_equal(loop_events(f->l, fd), LOOP_READ | LOOP_WRITE);

    /* more output waits for EPOLLOUT instead of trying again at once */
    assert_int_equal(client_send(c, data + 1000, 100), 0);
    client_table_flush(f->t);
    assert_int_equal(wrap.send_calls, 1);
    assert_int_equal(client_output(c), 1000);

    watch(f, peer, sizeof(data));
    assert_true(run_until(f, done_got, 2000));
    assert_int_equal(f->ngot, sizeof(data));
    assert_memory_equal(f->got, data, sizeof(data));
    assert_int_equal(client_output(c), 0);
    assert_int_equal(loop_events(f->l, fd), LOOP_READ);
}

static void
test_client_eagain_arms_write_until_drained(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    int peer, fd;

    table(f);
    c = add_client(f, r, -1, &peer);
    fd = fd_of(f, c);
    assert_int_equal(client_send(c, "hello", 5), 0);
    script_send(-EAGAIN);
    client_table_flush(f->t);
    assert_int_equal(client_output(c), 5);
    assert_int_equal(loop_events(f->l, fd), LOOP_READ | LOOP_WRITE);
    assert_false(client_closing(c));
    watch(f, peer, 5);
    assert_true(run_until(f, done_got, 2000));
    assert_memory_equal(f->got, "hello", 5);
    assert_int_equal(loop_events(f->l, fd), LOOP_READ);
}

/* A backlog far larger than one send takes, written in many short writes:
 * once it is gone the client holds no output at all. */
static void
test_client_drained_client_holds_no_output(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    enum { N = 200000 };
    uint8_t *data = malloc(N);
    struct client *c;
    int peer;

    assert_non_null(data);
    table(f);
    c = add_client(f, r, -1, &peer);
    pattern(data, N, 7);
    assert_int_equal(client_send(c, data, N), 0);
    for (int i = 0; i < 5; i++)
        script_send(4000);
    watch(f, peer, N);
    assert_true(run_until(f, done_got, 5000));
    assert_int_equal(f->ngot, N);
    assert_memory_equal(f->got, data, N);
    assert_true(wrap.send_calls >= 6);
    assert_int_equal(client_output(c), 0);
    assert_int_equal(loop_events(f->l, fd_of(f, c)), LOOP_READ);
    free(data);
}

static void
test_client_write_sends_at_once_and_queues_the_rest(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    char b[16];
    int peer, fd;

    table(f);
    c = add_client(f, r, -1, &peer);
    fd = fd_of(f, c);
    assert_int_equal(client_write(c, "now", 3), 0);
    assert_int_equal(wrap.send_calls, 1);
    assert_int_equal(read(peer, b, sizeof(b)), 3);
    assert_memory_equal(b, "now", 3);
    assert_int_equal(client_output(c), 0);

    script_send(2);
    assert_int_equal(client_write(c, "abcdef", 6), 0);
    assert_int_equal(wrap.send_calls, 2);
    assert_int_equal(client_output(c), 4);
    assert_int_equal(loop_events(f->l, fd), LOOP_READ | LOOP_WRITE);
    /* queued behind the rest, not written past it */
    assert_int_equal(client_write(c, "gh", 2), 0);
    assert_int_equal(wrap.send_calls, 2);
    watch(f, peer, 8);
    assert_true(run_until(f, done_got, 2000));
    assert_int_equal(f->ngot, 8);
    assert_memory_equal(f->got, "abcdefgh", 8);
    assert_int_equal(loop_events(f->l, fd), LOOP_READ);
}

/* --- errors -------------------------------------------------------------- */

static void
test_client_send_error_closes_with_error(void **state)
{
    struct fx *f = *state;
    const int errs[] = { EPIPE, ECONNRESET };
    struct rec *r[2] = { rec(f, 0), rec(f, 1) };
    int peer;

    table(f);
    for (size_t i = 0; i < UTIL_ARRAY_LEN(errs); i++) {
        struct client *c = add_client(f, r[i], -1, &peer);
        assert_int_equal(client_send(c, "doomed", 6), 0);
        script_send(-errs[i]);
        client_table_flush(f->t);
        assert_int_equal(r[i]->closes, 1);
        assert_int_equal(client_table_stats(f->t)->closed[CLIENT_WHY_ERROR], i + 1);
        /* the peer sees the connection go */
        watch(f, peer, 0);
        assert_true(done_eof(f));
        assert_int_equal(f->ngot, 0);
    }
    assert_int_equal(client_table_count(f->t), 0);
    assert_int_equal(f->hook_close, 2);
}

static void
test_client_recv_error_closes_with_error(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    int peer;

    table(f);
    add_client(f, r, -1, &peer);
    assert_int_equal(write(peer, "x", 1), 1);
    script_recv(-ECONNRESET);
    assert_true(run_until_count(f, &r->closes, 1, 2000));
    assert_int_equal(r->reads, 0);
    assert_int_equal(client_table_stats(f->t)->closed[CLIENT_WHY_ERROR], 1);
}

static void
test_client_read_failure_closes_as_protocol_error(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    int peer;

    r->read_rc = -EBADMSG;
    table(f);
    add_client(f, r, -1, &peer);
    assert_int_equal(write(peer, "x", 1), 1);
    assert_true(run_until_count(f, &r->closes, 1, 2000));
    assert_int_equal(r->reads, 1);
    assert_int_equal(client_table_stats(f->t)->closed[CLIENT_WHY_PROTOCOL], 1);
}

/* --- closing ------------------------------------------------------------- */

static void
stop_only(struct loop *l, void *arg)
{
    (void)arg;
    loop_stop(l);
}

static void
test_client_close_in_callback_is_deferred_to_flush(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    int peer, fd;

    r->close_in_read = true;
    table(f);
    c = add_client(f, r, -1, &peer);
    fd = fd_of(f, c);
    assert_int_equal(write(peer, "bye", 3), 3);
    /* one iteration without the flush: the client must still be there */
    loop_before_wait(f->l, stop_only, NULL);
    assert_int_equal(loop_run(f->l), 0);
    assert_int_equal(r->reads, 1);
    assert_int_equal(r->closes, 0);
    assert_int_equal(f->hook_close, 0);
    assert_ptr_equal(client_table_get(f->t, fd), c);
    assert_int_equal(client_table_count(f->t), 1);
    assert_int_equal(loop_events(f->l, fd), 0); /* no events for it any more */

    f->ntrace = 0;
    client_table_flush(f->t);
    assert_int_equal(r->closes, 1);
    assert_int_equal(f->hook_close, 1);
    assert_int_equal(f->ntrace, 2);
    assert_memory_equal(f->trace, "Cx", 2); /* ops->close, then the hook */
    assert_null(client_table_get(f->t, fd));
    assert_int_equal(client_table_count(f->t), 0);
    assert_int_equal(client_table_stats(f->t)->closed[CLIENT_WHY_BYE], 1);
    client_table_flush(f->t);
    assert_int_equal(r->closes, 1);
    watch(f, peer, 0);
    assert_true(done_eof(f));
}

static void
test_client_close_while_queued_for_flush_frees_once(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    int peer;

    table(f);
    c = add_client(f, r, -1, &peer);
    assert_int_equal(client_send(c, "dropped", 7), 0);
    client_close(c, CLIENT_WHY_OUTPUT);
    client_close(c, CLIENT_WHY_OUTPUT);
    client_table_flush(f->t);
    assert_int_equal(r->closes, 1);
    assert_int_equal(f->hook_close, 1);
    assert_int_equal(wrap.send_calls, 0); /* output is dropped */
    assert_int_equal(client_table_stats(f->t)->closed[CLIENT_WHY_OUTPUT], 1);
    watch(f, peer, 0);
    assert_true(done_eof(f));
    assert_int_equal(f->ngot, 0);
}

/* A closes B (queued for flush) and sends to C from its close callback: the
 * same client_table_flush frees both and still writes C's output. */
static void
test_client_close_callback_may_close_and_send_to_others(void **state)
{
    struct fx *f = *state;
    struct rec *ra = rec(f, 0), *rb = rec(f, 1), *rc = rec(f, 2);
    struct client *a, *b, *c;
    int pa, pb, pc;
    char buf[8];

    table(f);
    a = add_client(f, ra, -1, &pa);
    b = add_client(f, rb, -1, &pb);
    c = add_client(f, rc, -1, &pc);
    ra->close_peer = b;
    ra->send_peer = c;
    assert_int_equal(client_send(b, "never", 5), 0);
    client_close(a, CLIENT_WHY_BYE);
    client_table_flush(f->t);
    assert_int_equal(ra->closes, 1);
    assert_int_equal(rb->closes, 1);
    assert_int_equal(rc->closes, 0);
    assert_int_equal(client_table_count(f->t), 1);
    assert_int_equal(client_table_stats(f->t)->closed[CLIENT_WHY_SHUTDOWN], 1);
    assert_int_equal(wrap.send_calls, 1);
    assert_int_equal(read(pc, buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "bye", 3);
    assert_int_equal(client_output(c), 0);
}

static void
test_client_finish_sends_output_then_fin_then_waits_for_peer(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    int peer, fd;

    table(f);
    c = add_client(f, r, -1, &peer);
    fd = fd_of(f, c);
    assert_int_equal(client_send(c, "last words", 10), 0);
    client_finish(c, CLIENT_WHY_BYE);
    assert_true(client_closing(c));
    assert_int_equal(client_send(c, "more", 4), 0); /* dropped */
    watch(f, peer, 0);
    assert_true(run_until(f, done_eof, 2000));
    assert_int_equal(f->ngot, 10);
    assert_memory_equal(f->got, "last words", 10);
    /* our FIN is out; we now wait for the peer's, reading and discarding */
    assert_ptr_equal(client_table_get(f->t, fd), c);
    assert_int_equal(r->closes, 0);
    assert_int_equal(write(peer, "ignored", 7), 7);
    run_until(f, done_always, 100);
    run_until(f, done_always, 100);
    assert_int_equal(r->reads, 0);
    assert_ptr_equal(client_table_get(f->t, fd), c);
    assert_int_equal(shutdown(peer, SHUT_WR), 0);
    assert_true(run_until_count(f, &r->closes, 1, 2000));
    assert_null(client_table_get(f->t, fd));
    assert_int_equal(f->hook_close, 1);
    assert_int_equal(client_table_stats(f->t)->closed[CLIENT_WHY_BYE], 1);
}

static void
test_client_peer_fin_calls_eof_and_output_still_flows(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    int peer, fd;

    table(f);
    c = add_client(f, r, -1, &peer);
    fd = fd_of(f, c);
    assert_int_equal(write(peer, "data", 4), 4);
    assert_int_equal(shutdown(peer, SHUT_WR), 0);
    assert_true(run_until_count(f, &r->eofs, 1, 2000));
    assert_int_equal(r->eofs, 1);
    assert_int_equal(r->nin, 4);
    assert_false(client_closing(c));
    assert_int_equal(loop_events(f->l, fd) & LOOP_READ, 0); /* EOF stays readable */
    /* half-closed: we can still answer */
    assert_int_equal(client_send(c, "late", 4), 0);
    client_finish(c, CLIENT_WHY_BYE);
    watch(f, peer, 0);
    assert_true(run_until(f, done_empty, 2000));
    assert_true(done_eof(f));
    assert_int_equal(f->ngot, 4);
    assert_memory_equal(f->got, "late", 4);
    assert_int_equal(r->eofs, 1);
    assert_int_equal(r->closes, 1);
    assert_int_equal(client_table_stats(f->t)->closed[CLIENT_WHY_BYE], 1);
}

static void
test_client_table_free_closes_everyone(void **state)
{
    struct fx *f = *state;
    struct rec *r[3] = { rec(f, 0), rec(f, 1), rec(f, 2) };
    struct client *c[3];
    int peer[3];

    table(f);
    for (int i = 0; i < 3; i++)
        c[i] = add_client(f, r[i], -1, &peer[i]);
    /* open, finishing and closing alike */
    client_finish(c[1], CLIENT_WHY_BYE);
    client_close(c[2], CLIENT_WHY_BYE);
    client_table_free(f->t);
    f->t = NULL;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i]->closes, 1);
        watch(f, peer[i], 0);
        assert_true(done_eof(f));
    }
    assert_int_equal(f->hook_close, 3);
}

/* --- reading control ----------------------------------------------------- */

static void
test_client_pause_and_resume_toggle_reading(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    int peer, fd;

    table(f);
    c = add_client(f, r, -1, &peer);
    fd = fd_of(f, c);
    client_pause_read(c);
    client_pause_read(c);
    assert_true(client_read_paused(c));
    assert_int_equal(loop_events(f->l, fd), 0);
    assert_int_equal(write(peer, "wait", 4), 4);
    run_until(f, done_always, 100);
    run_until(f, done_always, 100);
    assert_int_equal(r->reads, 0);

    client_resume_read(c);
    assert_false(client_read_paused(c));
    assert_int_equal(loop_events(f->l, fd), LOOP_READ);
    assert_true(run_until_count(f, &r->reads, 1, 2000));
    assert_int_equal(r->nin, 4);
    assert_memory_equal(r->in, "wait", 4);
}

static void
test_client_drain_when_paused_output_falls_to_half(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    uint8_t data[1000];
    struct client *c;
    int peer;

    f->lim.max_output = 1000;
    table(f);
    c = add_client(f, r, -1, &peer);
    pattern(data, sizeof(data), 3);
    assert_int_equal(client_send(c, data, sizeof(data)), 0);
    assert_true(client_output_full(c));
    client_pause_read(c);
    script_send(100);
    client_table_flush(f->t);
    assert_int_equal(client_output(c), 900);
    assert_int_equal(r->drains, 0);

    script_send(300); /* 600 left: above half */
    run_once(f);
    assert_int_equal(client_output(c), 600);
    assert_int_equal(r->drains, 0);
    script_send(100); /* 500 left: half */
    run_once(f);
    assert_int_equal(client_output(c), 500);
    assert_int_equal(r->drains, 1);

    /* a client that is not paused is never told */
    client_resume_read(c);
    watch(f, peer, sizeof(data));
    assert_true(run_until(f, done_got, 2000));
    assert_memory_equal(f->got, data, sizeof(data));
    assert_int_equal(r->drains, 1);
}

/*
 * The peer sends FIN (ops->eof; this protocol finishes later, as chat does
 * while rate-limited lines are still queued), then resets the connection by
 * closing with our data unread. The socket now reports an error and a
 * hang-up on every epoll_wait, whatever it is watched for. The loop must
 * not spin on it: the client layer has to act on the error (close the
 * client) or stop the event, not ignore it in every iteration.
 */
static void
test_client_reset_after_eof_does_not_spin_the_loop(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct net_addr addr;
    struct client *c;
    int cfd, fd;

    table(f);
    fd = tcp_pair(f, &addr, &cfd);
    assert_non_null(c = client_new(f->t, fd, &addr, &test_ops, r, -1));
    assert_int_equal(client_send(c, "unread", 6), 0);
    assert_int_equal(shutdown(cfd, SHUT_WR), 0);
    assert_true(run_until_count(f, &r->eofs, 1, 2000));
    assert_int_equal(client_output(c), 0);
    /* closing with unread data makes the peer's kernel send RST */
    close(cfd);
    f->peers[--f->npeers] = -1;

    f->no_tick = true;
    f->iterations = 0;
    run_until(f, NULL, 200);
    f->no_tick = false;
    /* an idle loop wakes once (the 200 ms safety timer); allow slack */
    if (f->iterations >= 50)
        fail_msg("%u loop iterations in 200 ms", f->iterations);
}

/* --- time ---------------------------------------------------------------- */

static void
test_client_idle_timeout_notices_then_finishes(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    uint64_t start;
    int peer;

    f->lim.idle_timeout = 1;
    table(f);
    start = util_now_ms();
    c = add_client(f, r, -1, &peer);
    assert_true(run_until_count(f, &r->notices, 1, 3000));
    assert_int_equal(r->last_notice, CLIENT_NOTICE_IDLE);
    assert_true(r->notice_at >= start + 950);
    assert_true(r->notice_at < start + 2000);
    assert_true(client_closing(c));
    watch(f, peer, 0);
    assert_true(run_until(f, done_eof, 2000));
    close(peer);
    f->peers[--f->npeers] = -1;
    assert_true(run_until(f, done_empty, 2000));
    assert_int_equal(r->closes, 1);
    assert_int_equal(client_table_stats(f->t)->closed[CLIENT_WHY_IDLE], 1);
}

/* Paused reading means it has sent what we have not consumed: not idle. */
static void
test_client_paused_client_is_not_idle(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    int peer;

    f->lim.idle_timeout = 1;
    table(f);
    c = add_client(f, r, -1, &peer);
    client_pause_read(c);
    run_until(f, NULL, 1300);
    assert_int_equal(r->notices, 0);
    assert_false(client_closing(c));
    /* once it reads again, silence counts as usual */
    client_resume_read(c);
    assert_true(run_until_count(f, &r->notices, 1, 3000));
    assert_int_equal(r->last_notice, CLIENT_NOTICE_IDLE);
}

struct poke {
    struct loop_timer t;
    int fd;
};

static void
on_poke(struct loop *l, struct loop_timer *t, void *arg)
{
    struct poke *p = arg;

    (void)l;
    (void)t;
    assert_int_equal(write(p->fd, "!", 1), 1);
}

static void
test_client_idle_timeout_postponed_by_input(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct poke p;
    uint64_t start;

    f->lim.idle_timeout = 1;
    table(f);
    start = util_now_ms();
    add_client(f, r, -1, &p.fd);
    loop_timer_init(&p.t, on_poke, &p);
    loop_timer_set(f->l, &p.t, start + 600);
    assert_true(run_until_count(f, &r->notices, 1, 4000));
    assert_int_equal(r->reads, 1);
    assert_int_equal(r->last_notice, CLIENT_NOTICE_IDLE);
    assert_true(r->notice_at >= start + 1550);
    assert_true(r->notice_at < start + 2600);
}

static void
test_client_linger_closes_finishing_client_whose_peer_stays(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    uint64_t start;
    int peer;

    f->lim.linger_ms = 100;
    table(f);
    c = add_client(f, r, -1, &peer);
    start = util_now_ms();
    client_finish(c, CLIENT_WHY_BYE);
    assert_true(run_until_count(f, &r->closes, 1, 2000));
    assert_true(util_now_ms() >= start + 100);
    assert_int_equal(client_table_stats(f->t)->closed[CLIENT_WHY_LINGER], 1);
    assert_int_equal(client_table_stats(f->t)->closed[CLIENT_WHY_BYE], 0);
}

static void
test_client_wake_at_calls_wake_once_at_latest_time(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    uint64_t start;
    int peer;

    table(f);
    c = add_client(f, r, -1, &peer);
    start = util_now_ms();
    client_wake_at(c, start + 20);
    client_wake_at(c, start + 60); /* replaces the first */
    assert_true(run_until_count(f, &r->wakes, 1, 2000));
    assert_true(r->wake_at >= start + 60);
    run_until(f, done_always, 100);
    run_until(f, done_always, 100);
    assert_int_equal(r->wakes, 1);
}

static void
test_client_wake_skips_closed_client(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec(f, 0);
    struct client *c;
    int peer;

    table(f);
    c = add_client(f, r, -1, &peer);
    client_wake_at(c, loop_now(f->l));
    client_close(c, CLIENT_WHY_BYE);
    assert_true(run_until(f, done_empty, 2000));
    assert_int_equal(r->wakes, 0);
    assert_int_equal(r->closes, 1);
    run_until(f, done_always, 50);
    assert_int_equal(r->wakes, 0);
}

/* --- pacing -------------------------------------------------------------- */

/*
 * A crowd: CROWD clients sharing one recorder (a table serves at most 8
 * distinct (ops, ctx) pairs), each sent numbered lines of LINE bytes. What
 * the peers read is collected at the end and compared line by line. With
 * wrap.send_cost_us set, writing the whole crowd takes a few ms, and flushes
 * called back to back keep writing busy: the pacer's credit (20 ms of
 * writing, refilled at half the wall time) runs out after a few rounds.
 */
enum { CROWD = 30, LINE = 8, CROWD_LINES = 160, CROWD_COST_US = 200, RAMP_MAX = 40 };

struct crowd {
    struct client *c[CROWD];
    int peer[CROWD];
    unsigned lines[CROWD];  /* lines queued to client i */
    unsigned expect[CROWD]; /* lines its peer must read (fewer if closed) */
    bool closed[CROWD];     /* client_close()d: no more lines queued */
    bool eof[CROWD];        /* its peer read EOF */
    uint8_t got[CROWD][CROWD_LINES * LINE];
    size_t ngot[CROWD];
};

static bool
under_valgrind(void)
{
    return getenv("ECHOCHAT_VALGRIND") != NULL;
}

/* Line j of client i: "ii:jjjj\n". */
static void
crowd_line(char out[LINE + 1], unsigned i, unsigned j)
{
    snprintf(out, LINE + 1, "%02u:%04u\n", i % 100, j % 10000);
}

static struct crowd *
crowd_new(struct fx *f)
{
    struct crowd *cr = calloc(1, sizeof(*cr));
    struct rec *r = rec(f, 0);

    assert_non_null(cr);
    f->crowd = cr;
    for (unsigned i = 0; i < CROWD; i++)
        assert_non_null(cr->c[i] = add_client(f, r, -1, &cr->peer[i]));
    return cr;
}

/* Queue the next line to every open client of the crowd, in index order.
 * The loop's clock is read first: the flush measures how long a client
 * has waited from it, and these sends come from outside any iteration. */
static unsigned
crowd_queue(struct fx *f, struct crowd *cr)
{
    unsigned n = 0;

    loop_refresh(f->l);
    for (unsigned i = 0; i < CROWD; i++) {
        char line[LINE + 1];
        if (cr->closed[i])
            continue;
        assert_true(cr->lines[i] < CROWD_LINES);
        crowd_line(line, i, cr->lines[i]++);
        cr->expect[i] = cr->lines[i];
        assert_int_equal(client_send(cr->c[i], line, LINE), 0);
        n++;
    }
    return n;
}

/* One flush; the number of send calls it made. */
static unsigned
crowd_flush(struct fx *f)
{
    unsigned before = wrap.send_calls;

    client_table_flush(f->t);
    return wrap.send_calls - before;
}

/* Queue a line to everyone and flush, back to back, until a flush writes
 * fewer clients than were queued (the pacer holds some). Returns the sends
 * of that flush. */
static unsigned
crowd_ramp(struct fx *f, struct crowd *cr)
{
    for (unsigned round = 0; round < RAMP_MAX; round++) {
        unsigned queued = crowd_queue(f, cr);
        unsigned sent = crowd_flush(f);
        if (sent < queued)
            return sent;
        assert_int_equal(sent, queued);
    }
    fail_msg("%d rounds of %d sends of %d us each and nothing was held", RAMP_MAX, CROWD,
             CROWD_COST_US);
    return 0;
}

/* Read what every peer has been sent, without blocking. */
static void
crowd_pump(struct crowd *cr)
{
    for (unsigned i = 0; i < CROWD; i++) {
        ssize_t n = -1;
        while (!cr->eof[i] && cr->ngot[i] < sizeof(cr->got[i]) &&
               (n = read(cr->peer[i], cr->got[i] + cr->ngot[i], sizeof(cr->got[i]) - cr->ngot[i])) >
                   0)
            cr->ngot[i] += (size_t)n;
        if (n == 0)
            cr->eof[i] = true;
    }
}

static bool
done_crowd(struct fx *f)
{
    struct crowd *cr = f->crowd;

    crowd_pump(cr);
    for (unsigned i = 0; i < CROWD; i++)
        if (cr->ngot[i] < cr->expect[i] * LINE)
            return false;
    return true;
}

/* Every peer read exactly its lines, whole and in order. */
static void
crowd_check(struct crowd *cr)
{
    crowd_pump(cr);
    for (unsigned i = 0; i < CROWD; i++) {
        assert_int_equal(cr->ngot[i], cr->expect[i] * LINE);
        for (unsigned j = 0; j < cr->expect[i]; j++) {
            char line[LINE + 1];
            crowd_line(line, i, j);
            if (memcmp(cr->got[i] + j * LINE, line, LINE) != 0)
                fail_msg("client %u: line %u is \"%.*s\", not \"%.*s\"", i, j, LINE - 1,
                         (const char *)cr->got[i] + j * LINE, LINE - 1, line);
        }
    }
}

/* After a flush that held output: the first `sent` clients (queue order is
 * index order here) were written, the rest still hold one line each. */
static void
assert_newest_held(struct crowd *cr, unsigned sent)
{
    for (unsigned i = 0; i < CROWD; i++)
        assert_int_equal(client_output(cr->c[i]), i < sent ? 0 : LINE);
}

/* Not busy: one flush writes every queued client once, oldest first (the
 * queue is FIFO: here the reverse of the fd order), and holds nothing. */
static void
test_client_flush_not_busy_writes_every_client_once_in_queue_order(void **state)
{
    struct fx *f = *state;
    struct crowd *cr;

    table(f);
    cr = crowd_new(f);
    for (unsigned round = 0; round < 3; round++) {
        unsigned base = wrap.send_calls;
        loop_refresh(f->l);
        for (unsigned k = 0; k < CROWD; k++) {
            unsigned i = CROWD - 1 - k;
            char line[LINE + 1];
            crowd_line(line, i, cr->lines[i]++);
            cr->expect[i] = cr->lines[i];
            assert_int_equal(client_send(cr->c[i], line, LINE), 0);
        }
        assert_int_equal(crowd_flush(f), CROWD);
        for (unsigned k = 0; k < CROWD; k++) {
            assert_int_equal(wrap.sent[base + k].fd, fd_of(f, cr->c[CROWD - 1 - k]));
            assert_int_equal(wrap.sent[base + k].n, LINE);
        }
        for (unsigned i = 0; i < CROWD; i++)
            assert_int_equal(client_output(cr->c[i]), 0);
        assert_int_equal(crowd_flush(f), 0); /* nothing left over */
    }
    crowd_check(cr);
    free(cr);
}

/*
 * Busy: once the credit is spent, a flush writes the oldest two thirds of
 * the queue and holds the newest third; the next line for a held client
 * joins the one waiting, and one send carries both. So fewer sends than
 * lines, and every peer still reads every line, whole and in order. Held
 * output whose hold limit has passed is written by the next flush.
 */
static void
test_client_flush_busy_holds_newest_third_and_batches_their_next_line(void **state)
{
    struct fx *f = *state;
    enum { BUSY_ROUNDS = 30 };
    unsigned sent, sends = 0, lines = 0, pairs = 0, held = 0, base;
    uint64_t queued_at;
    struct crowd *cr;

    table(f);
    cr = crowd_new(f);
    wrap.send_cost_us = CROWD_COST_US;
    sent = crowd_ramp(f, cr);
    /* the newest third (10 of 30) was held; a held client whose own limit
     * had passed would have been written, so allow more, never fewer */
    assert_true(sent >= CROWD - CROWD / 3);
    assert_true(sent < CROWD);
    assert_newest_held(cr, sent);

    base = wrap.send_calls;
    for (unsigned round = 0; round < BUSY_ROUNDS; round++) {
        lines += crowd_queue(f, cr);
        sends += crowd_flush(f);
    }
    assert_true(wrap.send_calls <= SENT_MAX);
    for (unsigned k = base; k < wrap.send_calls; k++) {
        /* whole lines, and a held client waits for one flush at most */
        assert_int_equal(wrap.sent[k].n % LINE, 0);
        assert_true(wrap.sent[k].n <= 2 * LINE);
        pairs += wrap.sent[k].n == 2 * LINE;
    }
    /* about two thirds of a send per line; 4/5 leaves room for a flush
     * that found credit again */
    if (sends * 5 > lines * 4)
        fail_msg("%u sends for %u lines while busy", sends, lines);
    assert_true(pairs >= BUSY_ROUNDS);

    /* One more round that holds, then nothing new: once the hold limit
     * (at most PACER_HOLD_MAX_US) of what is held has passed, the next
     * flush writes all of it, busy as it still is. */
    crowd_ramp(f, cr);
    queued_at = loop_now_us(f->l); /* crowd_queue() read it */
    for (unsigned i = 0; i < CROWD; i++)
        held += client_output(cr->c[i]) > 0;
    assert_true(held > 0);
    while (util_now_us() < queued_at + PACER_HOLD_MAX_US + 1000)
        usleep(1000);
    assert_int_equal(crowd_flush(f), held);
    for (unsigned i = 0; i < CROWD; i++)
        assert_int_equal(client_output(cr->c[i]), 0);

    assert_true(run_until(f, done_crowd, 3000));
    crowd_check(cr);
    lines = 0;
    for (unsigned i = 0; i < CROWD; i++)
        lines += cr->lines[i];
    assert_true(wrap.send_calls < lines);
    free(cr);
}

/*
 * Held output that nothing joins is written when its hold limit (at most
 * 10 ms) passes: the hold timer wakes the loop, with no other timer or
 * event to do it. That hold was wasted, so batching is off for a while
 * (1 s): busy flushes right after write every queued client.
 */
static void
test_client_hold_limit_writes_held_output_and_wasted_hold_stops_batching(void **state)
{
    struct fx *f = *state;
    unsigned sent;
    uint64_t t0, waited;
    struct crowd *cr;

    table(f);
    cr = crowd_new(f);
    wrap.send_cost_us = CROWD_COST_US;
    sent = crowd_ramp(f, cr);
    assert_newest_held(cr, sent);
    t0 = util_now_us();

    f->no_tick = true; /* only the hold timer (and the 3 s safety) wake it */
    assert_true(run_until(f, done_crowd, 3000));
    f->no_tick = false;
    waited = util_now_us() - t0;
    if (!under_valgrind() && waited >= 100000)
        fail_msg("held output written after %llu us", (unsigned long long)waited);
    assert_newest_held(cr, CROWD); /* nothing held any more */
    crowd_check(cr);

    /* as busy as before, but batching is backing off: nothing is held */
    for (unsigned round = 0; round < 10; round++) {
        unsigned queued = crowd_queue(f, cr);
        sent = crowd_flush(f);
        if (sent != queued)
            fail_msg("round %u after a wasted hold: %u of %u written", round, sent, queued);
    }
    assert_true(run_until(f, done_crowd, 3000));
    crowd_check(cr);
    free(cr);
}

/*
 * A held client that is closed: its held line is dropped (never written),
 * it is freed once (ops->close, the hook), its slot serves the next client
 * on the same fd, and the other held clients still get their lines.
 */
static void
test_client_close_while_held_frees_once_and_drops_held_output(void **state)
{
    struct fx *f = *state;
    struct rec *r;
    unsigned sent, v, mark;
    struct client *victim, *c;
    struct crowd *cr;
    char b[16];
    int fd, peer;

    table(f);
    cr = crowd_new(f);
    r = &f->recs[0];
    wrap.send_cost_us = CROWD_COST_US;
    sent = crowd_ramp(f, cr);
    assert_newest_held(cr, sent);
    v = sent + (CROWD - sent) / 2; /* in the middle of the held ones */
    victim = cr->c[v];
    fd = fd_of(f, victim);

    client_close(victim, CLIENT_WHY_BYE);
    cr->closed[v] = true;
    cr->expect[v] = cr->lines[v] - 1; /* the held line is dropped */
    assert_int_equal(r->closes, 0);
    mark = wrap.send_calls;

    /* the next busy flush reaches it among the held ones and frees it */
    crowd_queue(f, cr);
    crowd_flush(f);
    assert_int_equal(r->closes, 1);
    assert_int_equal(f->hook_close, 1);
    assert_null(client_table_get(f->t, fd));
    assert_int_equal(client_table_count(f->t), CROWD - 1);
    assert_int_equal(client_table_stats(f->t)->closed[CLIENT_WHY_BYE], 1);
    crowd_queue(f, cr);
    crowd_flush(f);
    assert_int_equal(r->closes, 1);
    for (unsigned k = mark; k < wrap.send_calls && k < SENT_MAX; k++)
        assert_int_not_equal(wrap.sent[k].fd, fd);

    /* its fd is the lowest free one again: the next client gets its slot */
    c = add_client(f, r, -1, &peer);
    assert_ptr_equal(c, victim);
    assert_int_equal(fd_of(f, c), fd);
    assert_int_equal(r->opens, CROWD + 1);
    assert_false(client_closing(c));
    assert_int_equal(client_output(c), 0);
    assert_int_equal(client_send(c, "reused!\n", 8), 0);

    assert_true(run_until(f, done_crowd, 3000));
    crowd_check(cr);
    assert_true(cr->eof[v]); /* the closed client's peer: its lines, then EOF */
    watch(f, peer, 8);
    assert_true(run_until(f, done_got, 3000));
    assert_int_equal(f->ngot, 8);
    assert_memory_equal(f->got, "reused!\n", 8);
    assert_int_equal(read(peer, b, sizeof(b)), -1);
    assert_int_equal(r->closes, 1);
    free(cr);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(void)
{
    int rc;
    const struct CMUnitTest tests[] = {
        T(test_client_new_calls_hook_and_open),
        T(test_client_new_watches_for_read_only),
        T(test_client_open_failure_closes_as_protocol_error),
        T(test_client_refused_gets_notice_but_no_open_or_hook),
        T(test_client_name_is_fd_and_peer_address),
        T(test_client_send_waits_for_flush_then_sends_once),
        T(test_client_replies_in_a_callback_go_out_in_one_send),
        T(test_client_short_write_arms_write_until_drained),
        T(test_client_eagain_arms_write_until_drained),
        T(test_client_drained_client_holds_no_output),
        T(test_client_write_sends_at_once_and_queues_the_rest),
        T(test_client_send_error_closes_with_error),
        T(test_client_recv_error_closes_with_error),
        T(test_client_read_failure_closes_as_protocol_error),
        T(test_client_close_in_callback_is_deferred_to_flush),
        T(test_client_close_while_queued_for_flush_frees_once),
        T(test_client_close_callback_may_close_and_send_to_others),
        T(test_client_finish_sends_output_then_fin_then_waits_for_peer),
        T(test_client_peer_fin_calls_eof_and_output_still_flows),
        T(test_client_table_free_closes_everyone),
        T(test_client_pause_and_resume_toggle_reading),
        T(test_client_drain_when_paused_output_falls_to_half),
        T(test_client_reset_after_eof_does_not_spin_the_loop),
        T(test_client_idle_timeout_notices_then_finishes),
        T(test_client_idle_timeout_postponed_by_input),
        T(test_client_paused_client_is_not_idle),
        T(test_client_linger_closes_finishing_client_whose_peer_stays),
        T(test_client_wake_at_calls_wake_once_at_latest_time),
        T(test_client_wake_skips_closed_client),
        T(test_client_flush_not_busy_writes_every_client_once_in_queue_order),
        T(test_client_flush_busy_holds_newest_third_and_batches_their_next_line),
        T(test_client_hold_limit_writes_held_output_and_wasted_hold_stops_batching),
        T(test_client_close_while_held_frees_once_and_drops_held_output),
    };

    log_set_level(LOG_ERR);
    rc = cmocka_run_group_tests_name("client", tests, NULL, NULL);
    /* as the daemon does at exit: under ASan the cached blocks are
     * poisoned, which hides their links from LeakSanitizer */
    buf_cache_trim();
    return rc;
}
