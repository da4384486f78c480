/*
 * Integration tests for the daemon core (SPEC §1, §2, §6) against the real
 * binary: usage errors exit 64, a listener that cannot open exits 71, a
 * restart binds a port whose old connections sit in TIME_WAIT, running out
 * of descriptors sheds connections without spinning, and the signals do
 * what the spec says. The echo service is the probe throughout: it is the
 * simplest way to ask "is this connection being served?".
 */
#include "harness.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define MAX_FDS 256

struct fixture {
    struct h_daemon d, d2;
    int fds[MAX_FDS];
    size_t nfds;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    h_init(&f->d);
    h_init(&f->d2);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    for (size_t i = 0; i < f->nfds; i++)
        if (f->fds[i] >= 0)
            close(f->fds[i]);
    h_cleanup(&f->d);
    h_cleanup(&f->d2);
    free(f);
    return 0;
}

static void
keep_fd(struct fixture *f, int fd)
{
    assert_true(f->nfds < MAX_FDS);
    f->fds[f->nfds++] = fd;
}

/* Send a short tagged message and expect it back. False if the connection
 * is closed or reset instead; fails the test if it neither echoes nor
 * closes within the deadline (a connection left hanging is neither served
 * nor shed). */
static bool
echo_ok(int fd, unsigned tag)
{
    char msg[32], back[32];
    int len = snprintf(msg, sizeof(msg), "ping %u\n", tag);
    int rc;

    if (send(fd, msg, (size_t)len, MSG_NOSIGNAL) != len)
        return false;
    if (h_read_exact(fd, back, (size_t)len, H_TIMEOUT_MS) == 0) {
        assert_memory_equal(msg, back, (size_t)len);
        return true;
    }
    rc = h_wait_closed(fd, 0, NULL);
    if (rc == -ETIMEDOUT)
        fail_msg("connection (tag %u) neither echoed nor closed within %d ms", tag, H_TIMEOUT_MS);
    return false;
}

/* ---- usage errors: exit 64, one line on stderr naming the culprit ---- */

struct bad_flag {
    const char *args[6];
    const char *needle; /* the message must contain this */
    const char *alt;    /* ... or this (NULL: no alternative) */
};

static void
test_core_bad_flags_exit_64_one_line_naming_it(void **state)
{
    static const struct bad_flag cases[] = {
        { { "--max-line", "0" }, "max-line", NULL },
        { { "--bogus" }, "bogus", NULL },
        { { "--chat" }, "chat", NULL },
        { { "--keepalive-idle", "abc" }, "keepalive-idle", NULL },
        { { "--no-keepalive", "--keepalive-idle", "5" }, "keepalive", NULL },
        { { "stray" }, "stray", NULL },
        { { "--echo", "127.0.0.1:99999" }, "echo", "99999" },
        { { "--max-output", "-5" }, "max-output", NULL },
        { { "--log-level", "loud" }, "log-level", "loud" },
        { { "--max-clients", "12x" }, "max-clients", NULL },
    };
    char out[1024], err[1024];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct bad_flag *c = &cases[i];
        int rc = h_run(c->args, out, sizeof(out), err, sizeof(err), H_TIMEOUT_MS);
        const char *nl = strchr(err, '\n');

        print_message("%s %s -> %d: %s", c->args[0], c->args[1] ? c->args[1] : "", rc, err);
        assert_int_equal(rc, 64);
        assert_string_equal(out, "");
        /* exactly one line, newline-terminated */
        assert_non_null(nl);
        assert_int_equal(nl[1], '\0');
        if (strstr(err, c->needle) == NULL && (c->alt == NULL || strstr(err, c->alt) == NULL))
            fail_msg("message for case %zu does not name \"%s\": %s", i, c->needle, err);
    }
}

static void
test_core_help_and_version_exit_0_on_stdout(void **state)
{
    static const char *const help[] = { "--help", NULL };
    static const char *const help_short[] = { "-h", NULL };
    static const char *const version[] = { "--version", NULL };
    static const char *const version_short[] = { "-V", NULL };
    static const char *const options[] = {
        "--chat", "--echo", "--keepalive-idle", "--max-output", "--shutdown-timeout", "--log-level"
    };
    char out[8192], err[1024];

    (void)state;
    assert_int_equal(h_run(help, out, sizeof(out), err, sizeof(err), H_TIMEOUT_MS), 0);
    assert_string_equal(err, "");
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
        if (strstr(out, options[i]) == NULL)
            fail_msg("--help does not mention %s", options[i]);
    assert_int_equal(h_run(help_short, out, sizeof(out), err, sizeof(err), H_TIMEOUT_MS), 0);
    assert_non_null(strstr(out, "--chat"));

    assert_int_equal(h_run(version, out, sizeof(out), err, sizeof(err), H_TIMEOUT_MS), 0);
    assert_string_equal(err, "");
    assert_non_null(strstr(out, ECHOCHAT_VERSION));
    assert_int_equal(h_run(version_short, out, sizeof(out), err, sizeof(err), H_TIMEOUT_MS), 0);
    assert_non_null(strstr(out, ECHOCHAT_VERSION));
}

/* ---- a listener that cannot open: exit 71, address and reason logged ---- */

static void
expect_exit_71_naming(struct fixture *f, const char *const *args, int port)
{
    char portstr[16];

    snprintf(portstr, sizeof(portstr), "%d", port);
    assert_int_equal(h_start_ex(&f->d, NULL, args, false, 0), -1);
    assert_int_equal(h_wait_exit(&f->d, 0), 71);
    assert_null(h_wait_notify(&f->d, "READY=1", 0));
    if (h_count_log(&f->d, "127.0.0.1") == 0 || h_count_log(&f->d, portstr) == 0 ||
        h_count_log(&f->d, "in use") == 0) {
        h_dump_log(&f->d);
        fail_msg("the log does not name 127.0.0.1:%d and \"in use\"", port);
    }
}

static void
test_core_port_in_use_exits_71_naming_address(void **state)
{
    struct fixture *f = *state;
    char spec[32];
    int port;
    const char *args[] = { "--chat", spec, NULL };

    keep_fd(f, h_listen(0, &port));
    snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
    expect_exit_71_naming(f, args, port);
}

/* The second listener fails after the first opened: still 71, no READY=1,
 * and the process is gone (nothing half-started keeps the first port). */
static void
test_core_second_listener_in_use_exits_71_nothing_left(void **state)
{
    struct fixture *f = *state;
    char spec[32], first[32];
    int port, free_port = h_free_port();
    const char *args[] = { "--echo", first, "--chat", spec, NULL };
    int fd;

    keep_fd(f, h_listen(0, &port));
    snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
    snprintf(first, sizeof(first), "127.0.0.1:%d", free_port);
    expect_exit_71_naming(f, args, port);
    /* the first port is free again */
    fd = h_listen(free_port, NULL);
    close(fd);
}

/* ---- restart while the old connections sit in TIME_WAIT ---- */

static void
start_on_port(struct h_daemon *d, int port)
{
    char spec[32];
    const char *args[] = { "--echo", spec, NULL };

    snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
    if (h_start_ex(d, NULL, args, false, 0) != 0) {
        h_dump_log(d);
        fail_msg("daemon on %s exited with %d before READY=1", spec, h_wait_exit(d, 0));
    }
}

static void
test_core_restart_binds_port_in_time_wait(void **state)
{
    struct fixture *f = *state;
    enum { N = 4 };
    int port = h_free_port();
    long deadline;
    int fd;

    start_on_port(&f->d, port);
    for (unsigned i = 0; i < N; i++) {
        keep_fd(f, h_connect(port));
        assert_true(echo_ok(f->fds[i], i));
    }
    /* the server closes first: we see its FIN, then our close completes
     * the exchange and its side of each connection enters TIME_WAIT */
    assert_int_equal(h_stop_clients(&f->d, f->fds, N, H_TIMEOUT_MS), 0);
    deadline = h_now_ms() + H_TIMEOUT_MS;
    while (h_time_wait_count(port) < N && h_now_ms() < deadline)
        poll(NULL, 0, 10);
    print_message("%d TIME_WAIT sockets on port %d\n", h_time_wait_count(port), port);
    assert_true(h_time_wait_count(port) >= N);

    start_on_port(&f->d2, port);
    fd = h_connect(port);
    keep_fd(f, fd);
    assert_true(echo_ok(fd, 99));
    assert_int_equal(h_stop_clients(&f->d2, f->fds, f->nfds, H_TIMEOUT_MS), 0);
}

/* ---- running out of file descriptors ---- */

/* Open clients until the daemon sheds one. Returns how many it serves. */
static size_t
fill_until_shed(struct fixture *f, int port)
{
    for (unsigned i = 0; i < 200; i++) {
        int fd = h_connect(port);

        if (!echo_ok(fd, i)) {
            close(fd);
            return f->nfds;
        }
        keep_fd(f, fd);
    }
    fail_msg("200 clients served under RLIMIT_NOFILE 64: nothing was shed");
    return 0;
}

/* Keep the daemon saturated for ms milliseconds: rounds of 16 connections
 * at once, each of which must be shed (closed or reset, not left hanging in
 * the backlog). Returns the number of connections shed. */
static unsigned
shed_for(int port, long ms)
{
    enum { ROUND = 16 };
    long end = h_now_ms() + ms;
    unsigned n = 0;

    while (h_now_ms() < end) {
        int fds[ROUND];

        for (int i = 0; i < ROUND; i++)
            fds[i] = h_connect(port);
        for (int i = 0; i < ROUND; i++) {
            int rc = h_wait_closed(fds[i], H_TIMEOUT_MS, NULL);

            if (rc != 0 && rc != -ECONNRESET)
                fail_msg("connection %u while saturated: %s", n, strerror(-rc));
            close(fds[i]);
            n++;
        }
    }
    return n;
}

static void
test_core_emfile_sheds_new_keeps_old_low_cpu_recovers(void **state)
{
    static const char *const names[] = { "echo", NULL };
    struct fixture *f = *state;
    size_t served;
    long cpu0, cpu;
    unsigned shed;
    long deadline;
    bool again = false;

    if (h_start_ex(&f->d, names, NULL, true, 64) != 0) {
        h_dump_log(&f->d);
        fail_msg("daemon under RLIMIT_NOFILE 64 exited with %d", h_wait_exit(&f->d, 0));
    }
    served = fill_until_shed(f, f->d.port[0]);
    print_message("served %zu clients, daemon holds %d fds\n", served, h_fd_count(f->d.pid));
    assert_true(served >= 8 && served < 64);
    for (size_t i = 0; i < f->nfds; i++)
        assert_true(echo_ok(f->fds[i], 1000 + (unsigned)i));

    cpu0 = h_cpu_ms(f->d.pid);
    shed = shed_for(f->d.port[0], 1000);
    cpu = h_cpu_ms(f->d.pid) - cpu0;
    print_message("saturated for 1 s: %u connections shed, daemon used %ld ms CPU\n", shed, cpu);
    assert_true(shed > 0);
    assert_true(cpu < 300);
    for (size_t i = 0; i < f->nfds; i++)
        assert_true(echo_ok(f->fds[i], 2000 + (unsigned)i));
    assert_true(h_wait_log(&f->d, "descriptor", H_TIMEOUT_MS));

    /* free a few descriptors: new connections are served again */
    for (size_t i = 0; i < 4; i++) {
        close(f->fds[--f->nfds]);
    }
    deadline = h_now_ms() + H_TIMEOUT_MS;
    while (!again && h_now_ms() < deadline) {
        int fd = h_connect(f->d.port[0]);

        if ((again = echo_ok(fd, 3000)))
            keep_fd(f, fd);
        else
            close(fd);
    }
    assert_true(again);
    for (size_t i = 0; i < f->nfds; i++)
        assert_true(echo_ok(f->fds[i], 4000 + (unsigned)i));
    assert_int_equal(h_stop_clients(&f->d, f->fds, f->nfds, H_TIMEOUT_MS), 0);
}

/* ---- signals ---- */

static void
test_core_sigusr1_stats_sighup_logged_sigterm_stopping_exit_0(void **state)
{
    static const char *const names[] = { "echo", NULL };
    struct fixture *f = *state;
    const char *ready, *stopping;
    int fd;

    h_start(&f->d, names, NULL);
    fd = h_connect(f->d.port[0]);
    keep_fd(f, fd);
    assert_true(echo_ok(fd, 1));
    assert_int_equal(h_count_log(&f->d, "stats"), 0);

    h_signal(&f->d, SIGUSR1);
    assert_true(h_wait_log(&f->d, "stats", H_TIMEOUT_MS));
    assert_int_equal(h_count_log(&f->d, "SIGHUP"), 0);
    h_signal(&f->d, SIGHUP);
    assert_true(h_wait_log(&f->d, "SIGHUP", H_TIMEOUT_MS));
    /* handled in order: one SIGUSR1 made exactly one statistics line */
    assert_int_equal(h_count_log(&f->d, "stats"), 1);
    /* neither signal stopped the service */
    assert_true(echo_ok(fd, 2));
    assert_null(h_wait_notify(&f->d, "STOPPING=1", 0));

    assert_int_equal(h_stop_clients(&f->d, f->fds, f->nfds, H_TIMEOUT_MS), 0);
    ready = h_wait_notify(&f->d, "READY=1", 0);
    stopping = h_wait_notify(&f->d, "STOPPING=1", 0);
    assert_non_null(ready);
    assert_non_null(stopping);
}

static void
test_core_sigint_graceful_exit_0(void **state)
{
    static const char *const names[] = { "echo", NULL };
    struct fixture *f = *state;
    int fd;

    h_start(&f->d, names, NULL);
    fd = h_connect(f->d.port[0]);
    keep_fd(f, fd);
    assert_true(echo_ok(fd, 1));
    h_signal(&f->d, SIGINT);
    assert_true(h_expect_eof(fd, H_TIMEOUT_MS));
    close(fd);
    f->fds[0] = -1;
    assert_int_equal(h_wait_exit(&f->d, H_TIMEOUT_MS), 0);
    assert_non_null(h_wait_notify(&f->d, "STOPPING=1", 0));
}

/* A peer that never closes cannot hold the shutdown hostage: it gets the
 * daemon's FIN at once, and the daemon exits 0 once --shutdown-timeout
 * has passed. */
static void
test_core_shutdown_bounded_by_timeout_when_peer_stays(void **state)
{
    static const char *const names[] = { "echo", NULL };
    static const char *const args[] = { "--shutdown-timeout", "1", NULL };
    struct fixture *f = *state;
    long t0;
    int fd;

    h_start(&f->d, names, args);
    fd = h_connect(f->d.port[0]);
    keep_fd(f, fd);
    assert_true(echo_ok(fd, 1));
    t0 = h_now_ms();
    h_signal(&f->d, SIGTERM);
    assert_true(h_expect_eof(fd, H_TIMEOUT_MS));
    assert_int_equal(h_wait_exit(&f->d, 1000 + H_TIMEOUT_MS), 0);
    print_message("exited %ld ms after SIGTERM with the peer still open\n", h_now_ms() - t0);
}

/* A client that leaves with megabytes of echo unread makes the daemon's
 * writes fail with EPIPE/ECONNRESET: SIGPIPE must not kill it (the harness
 * resets SIGPIPE to default before exec, so this is the daemon's doing). */
static void
test_core_peer_gone_with_output_pending_daemon_survives(void **state)
{
    static const char *const names[] = { "echo", NULL };
    struct fixture *f = *state;
    static char junk[64 * 1024];
    long end;
    int fd;

    h_start(&f->d, names, NULL);
    for (int round = 0; round < 3; round++) {
        fd = h_connect(f->d.port[0]);
        end = h_now_ms() + 300;
        while (h_now_ms() < end) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };

            if (send(fd, junk, sizeof(junk), MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EAGAIN)
                break;
            poll(&p, 1, 10);
        }
        close(fd); /* unread data pending: this sends a reset */
    }
    fd = h_connect(f->d.port[0]);
    keep_fd(f, fd);
    assert_true(echo_ok(fd, 7));
    assert_int_equal(h_wait_exit(&f->d, 0), -1);
    assert_int_equal(h_stop_clients(&f->d, f->fds, f->nfds, H_TIMEOUT_MS), 0);
}

/*
 * The daemon's own socket for our connection fd, borrowed with
 * pidfd_getfd(2) (we are its parent, and root in CI): the one whose peer is
 * our local address. Returns a descriptor of ours for it, or -1.
 */
static int
daemon_socket_for(pid_t pid, int fd)
{
    struct sockaddr_in mine, peer;
    socklen_t len = sizeof(mine);
    int pidfd, found = -1;

    assert_int_equal(getsockname(fd, (struct sockaddr *)&mine, &len), 0);
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    assert_true(pidfd >= 0);
    for (int n = 3; n < 256 && found < 0; n++) {
        int dup = (int)syscall(SYS_pidfd_getfd, pidfd, n, 0);

        if (dup < 0)
            continue;
        len = sizeof(peer);
        if (getpeername(dup, (struct sockaddr *)&peer, &len) == 0 && peer.sin_family == AF_INET &&
            peer.sin_port == mine.sin_port && peer.sin_addr.s_addr == mine.sin_addr.s_addr)
            found = dup;
        else
            close(dup);
    }
    close(pidfd);
    return found;
}

static int
sockopt_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);

    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

struct want_opts {
    int keepalive, idle, interval, count, user_timeout, nodelay;
};

static void
assert_opts(int fd, const struct want_opts *w)
{
    assert_int_equal(sockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), w->keepalive);
    if (w->keepalive) {
        assert_int_equal(sockopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), w->idle);
        assert_int_equal(sockopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), w->interval);
        assert_int_equal(sockopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT), w->count);
    }
    assert_int_equal(sockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), w->user_timeout);
    assert_int_equal(sockopt_int(fd, IPPROTO_TCP, TCP_NODELAY), w->nodelay);
}

/* Connect to both listeners of a running daemon and check the options of
 * the daemon's side of each connection: chat with TCP_NODELAY, echo without. */
static void
check_accepted_opts(struct fixture *f, struct want_opts w)
{
    struct h_conn *chat = h_conn_open(f->d.port[0]);
    int echo = h_connect(f->d.port[1]), theirs;

    keep_fd(f, echo);
    assert_true(h_conn_expect(chat, "welcome", NULL, 0, H_TIMEOUT_MS)); /* accepted by now */
    assert_true(echo_ok(echo, 1));
    w.nodelay = 1;
    assert_true((theirs = daemon_socket_for(f->d.pid, chat->fd)) >= 0);
    assert_opts(theirs, &w);
    close(theirs);
    w.nodelay = 0;
    assert_true((theirs = daemon_socket_for(f->d.pid, echo)) >= 0);
    assert_opts(theirs, &w);
    close(theirs);
    h_conn_close(chat);
}

/* SPEC §2: every accepted socket carries SO_KEEPALIVE with the knobs from
 * the flags, TCP_USER_TIMEOUT (derived from them unless given), and
 * TCP_NODELAY for chat, read back from the daemon's own descriptors. */
static void
test_core_keepalive_flags_land_on_accepted_sockets(void **state)
{
    static const char *const names[] = { "chat", "echo", NULL };
    static const char *const args[] = { "--keepalive-idle",
                                        "7",
                                        "--keepalive-interval",
                                        "3",
                                        "--keepalive-count",
                                        "4",
                                        "--user-timeout",
                                        "12345",
                                        NULL };
    struct fixture *f = *state;

    h_start(&f->d, names, args);
    check_accepted_opts(f, (struct want_opts){ 1, 7, 3, 4, 12345, 0 });
    assert_int_equal(h_stop_clients(&f->d, f->fds, f->nfds, H_TIMEOUT_MS), 0);
}

static void
test_core_keepalive_defaults_land_on_accepted_sockets(void **state)
{
    static const char *const names[] = { "chat", "echo", NULL };
    struct fixture *f = *state;

    h_start(&f->d, names, NULL);
    /* 60 s idle, 10 s x 6 probes; user timeout (60 + 10 x 6) s */
    check_accepted_opts(f, (struct want_opts){ 1, 60, 10, 6, 120000, 0 });
    assert_int_equal(h_stop_clients(&f->d, f->fds, f->nfds, H_TIMEOUT_MS), 0);
}

static void
test_core_no_keepalive_leaves_it_off(void **state)
{
    static const char *const names[] = { "chat", "echo", NULL };
    static const char *const args[] = { "--no-keepalive", "--user-timeout", "0", NULL };
    struct fixture *f = *state;

    h_start(&f->d, names, args);
    check_accepted_opts(f, (struct want_opts){ 0, 0, 0, 0, 0, 0 });
    assert_int_equal(h_stop_clients(&f->d, f->fds, f->nfds, H_TIMEOUT_MS), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_core_bad_flags_exit_64_one_line_naming_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_core_help_and_version_exit_0_on_stdout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_core_port_in_use_exits_71_naming_address, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_core_second_listener_in_use_exits_71_nothing_left,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_restart_binds_port_in_time_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_emfile_sheds_new_keeps_old_low_cpu_recovers,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_core_sigusr1_stats_sighup_logged_sigterm_stopping_exit_0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_sigint_graceful_exit_0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_shutdown_bounded_by_timeout_when_peer_stays,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_peer_gone_with_output_pending_daemon_survives,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_keepalive_flags_land_on_accepted_sockets, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_core_keepalive_defaults_land_on_accepted_sockets,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_no_keepalive_leaves_it_off, setup, teardown),
    };

    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
