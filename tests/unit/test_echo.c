/*
 * echo: RFC 862 through the real client layer and loop, over loopback TCP
 * pairs (no wrapped calls). The test plays the peer from the loop's
 * before-wait hook: it writes what it still has to send, reads what came
 * back, and stops the loop once its condition holds. Three things matter:
 * every byte returns unchanged and nothing is added; a peer that stops
 * reading makes the server stop reading too (backpressure, not loss) until
 * it reads again; and after the peer's FIN everything still owed is sent,
 * then our FIN.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client_table.h"
#include "echo.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "util.h"

struct fx {
    struct loop *l;
    struct client_table *t;
    struct client_limits lim;
    struct loop_timer safety, tick;
    bool timed_out;
    bool (*done)(struct fx *f);
    struct client *c;
    int peer;
    /* the peer's side: what it sends, and what it got back */
    uint8_t *out;
    size_t total, sent;
    uint8_t *in;
    size_t got, incap;
    bool eof;
    bool peer_reads;    /* false: a peer that has stopped reading */
    bool fin_when_sent; /* shutdown(SHUT_WR) once everything is written */
    bool fin_sent;
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->peer = -1;
    f->lim.max_output = 1 << 20;
    f->lim.linger_ms = 5000;
    assert_int_equal(loop_new(&f->l), 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    client_table_free(f->t);
    loop_free(f->l);
    if (f->peer >= 0)
        close(f->peer);
    free(f->out);
    free(f->in);
    free(f);
    return 0;
}

/*
 * The echo client on the accepted end of a loopback connection, the peer
 * (non-blocking) on the other. Small socket buffers, when asked for, make
 * the kernel push back after a few kB instead of a few MB.
 */
static void
connect_echo(struct fx *f, int bufsize)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    struct net_addr local, peer;
    int lfd, fd;

    assert_int_equal(client_table_new(&f->t, f->l, 0, &f->lim), 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true((lfd = net_listen((struct sockaddr *)&sin, sizeof(sin), 4)) >= 0);
    assert_int_equal(net_local_addr(lfd, &local), 0);
    assert_true((f->peer = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
    /* before connect() and on the listener (accepted sockets inherit it):
     * the window is negotiated during the handshake */
    for (int i = 0; bufsize && i < 2; i++) {
        int s = i ? lfd : f->peer;
        assert_int_equal(setsockopt(s, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize)), 0);
        assert_int_equal(setsockopt(s, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize)), 0);
    }
    assert_int_equal(connect(f->peer, (struct sockaddr *)&local.ss, local.len), 0);
    assert_int_equal(fcntl(f->peer, F_SETFL, O_NONBLOCK), 0);
    assert_true((fd = net_accept(lfd, &peer)) >= 0);
    close(lfd);
    assert_non_null(f->c = client_new(f->t, fd, &peer, &echo_ops, NULL, -1));
}

/* Binary data with every byte value, position-dependent. */
static void
make_data(struct fx *f, size_t n)
{
    assert_non_null(f->out = malloc(n));
    for (size_t i = 0; i < n; i++)
        f->out[i] = (uint8_t)(i ^ (i >> 8) ^ (i >> 16));
    f->total = n;
    f->incap = n + 4096; /* room to notice anything added */
    assert_non_null(f->in = malloc(f->incap));
}

/* The peer's turn: write what the kernel takes, read what has come. */
static void
pump(struct fx *f)
{
    ssize_t n = -1;

    while (f->sent < f->total &&
           (n = write(f->peer, f->out + f->sent, UTIL_MIN(f->total - f->sent, 65536))) > 0)
        f->sent += (size_t)n;
    if (f->fin_when_sent && f->sent == f->total && !f->fin_sent) {
        assert_int_equal(shutdown(f->peer, SHUT_WR), 0);
        f->fin_sent = true;
    }
    if (!f->peer_reads || f->eof)
        return;
    while (f->got < f->incap && (n = read(f->peer, f->in + f->got, f->incap - f->got)) > 0)
        f->got += (size_t)n;
    if (n == 0)
        f->eof = true;
}

static void
hook(struct loop *l, void *arg)
{
    struct fx *f = arg;

    client_table_flush(f->t);
    pump(f);
    if (f->done(f))
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
    loop_timer_set(f->l, &f->tick, util_now_ms() + 2);
    loop_before_wait(f->l, hook, f);
    assert_int_equal(loop_run(f->l), 0);
    loop_timer_stop(f->l, &f->safety);
    loop_timer_stop(f->l, &f->tick);
    return !f->timed_out;
}

static bool
done_all_back(struct fx *f)
{
    return f->got >= f->total;
}

static bool
done_paused(struct fx *f)
{
    return client_read_paused(f->c);
}

static bool
done_eof(struct fx *f)
{
    return f->eof;
}

static bool
done_never(struct fx *f)
{
    (void)f;
    return false;
}

static bool
done_freed(struct fx *f)
{
    return client_table_count(f->t) == 0;
}

static void
assert_echoed_exactly(const struct fx *f)
{
    assert_int_equal(f->got, f->total);
    for (size_t i = 0; i < f->total; i++)
        if (f->in[i] != f->out[i])
            fail_msg("byte %zu: sent 0x%02x, got 0x%02x back", i, f->out[i], f->in[i]);
}

static void
test_echo_returns_every_byte_unchanged(void **state)
{
    struct fx *f = *state;

    connect_echo(f, 0);
    make_data(f, 300000);
    f->peer_reads = true;
    assert_true(run_until(f, done_all_back, 5000));
    /* and nothing more arrives */
    run_until(f, done_never, 50);
    assert_echoed_exactly(f);
    assert_false(f->eof);
    assert_int_equal(client_table_stats(f->t)->bytes_in, f->total);
    assert_int_equal(client_table_stats(f->t)->bytes_out, f->total);
    assert_false(client_read_paused(f->c));
}

static void
test_echo_pauses_for_a_peer_that_does_not_read_then_resumes(void **state)
{
    struct fx *f = *state;
    uint64_t in;

    f->lim.max_output = 16384;
    connect_echo(f, 4096);
    make_data(f, 1 << 20);
    f->peer_reads = false;
    assert_true(run_until(f, done_paused, 5000));
    assert_true(client_output_full(f->c));
    assert_true(f->sent < f->total);

    /* paused: the server reads nothing more, the kernel holds the rest */
    in = client_table_stats(f->t)->bytes_in;
    run_until(f, done_never, 100);
    assert_true(client_read_paused(f->c));
    assert_int_equal(client_table_stats(f->t)->bytes_in, in);

    f->peer_reads = true;
    assert_true(run_until(f, done_all_back, 10000));
    assert_echoed_exactly(f);
    assert_false(client_read_paused(f->c));
    assert_int_equal(client_output(f->c), 0);
    assert_int_equal(client_table_count(f->t), 1);
}

static void
test_echo_fin_returns_everything_owed_then_eof(void **state)
{
    struct fx *f = *state;

    f->lim.max_output = 16384;
    connect_echo(f, 4096);
    make_data(f, 200000);
    f->fin_when_sent = true;
    /* a backlog first: the peer reads nothing until the echo is paused */
    f->peer_reads = false;
    assert_true(run_until(f, done_paused, 5000));
    f->peer_reads = true;
    assert_true(run_until(f, done_eof, 10000));
    assert_true(f->fin_sent);
    assert_echoed_exactly(f);
    /* both FINs are out: nothing is left to wait for */
    assert_true(run_until(f, done_freed, 2000));
    assert_int_equal(client_table_stats(f->t)->closed[CLIENT_WHY_BYE], 1);
    f->c = NULL;
}

/* A FIN with nothing owed: our FIN follows at once. */
static void
test_echo_fin_with_nothing_owed_is_answered_by_fin(void **state)
{
    struct fx *f = *state;

    connect_echo(f, 0);
    make_data(f, 1);
    f->fin_when_sent = true;
    f->peer_reads = true;
    assert_true(run_until(f, done_eof, 2000));
    assert_echoed_exactly(f);
    assert_true(run_until(f, done_freed, 2000));
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_echo_returns_every_byte_unchanged),
        T(test_echo_pauses_for_a_peer_that_does_not_read_then_resumes),
        T(test_echo_fin_returns_everything_owed_then_eof),
        T(test_echo_fin_with_nothing_owed_is_answered_by_fin),
    };

    log_set_level(LOG_ERR);
    return cmocka_run_group_tests_name("echo", tests, NULL, NULL);
}
