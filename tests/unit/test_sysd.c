/*
 * sysd: the environment variables are set by the test and the sockets are
 * real. Adopting descriptors 3 and 4 happens in a forked child, since the
 * test process may be using those numbers itself; the child reports the
 * first failed check on stderr and through its exit status. Notification
 * goes to a datagram socket the test binds, at a path and in the abstract
 * namespace, and is read back.
 */
#include "sysd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static const char *const vars[] = {
    "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
};

static int
env_clear(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    return 0;
}

static void
setenv_pid(const char *name, pid_t pid)
{
    char s[32];

    snprintf(s, sizeof s, "%ld", (long)pid);
    assert_int_equal(setenv(name, s, 1), 0);
}

static bool
listen_env_gone(void)
{
    return !getenv("LISTEN_PID") && !getenv("LISTEN_FDS") && !getenv("LISTEN_FDNAMES");
}

/* ---- socket activation, in a child ---- */

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "child: line %d: check failed: %s\n", __LINE__, #c);                   \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

typedef int child_fn(void);

static void
run_in_child(child_fn *fn)
{
    int st;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fn());
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* Listening TCP sockets on fds 3.. without FD_CLOEXEC, as systemd passes
 * them. They are made at high numbers first so that placing one never
 * closes another that happened to get a low number. */
static int
place_listeners(int count)
{
    int hi[4];

    for (int i = 0; i < count; i++) {
        struct sockaddr_in sin = { .sin_family = AF_INET };
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(fd >= 0);
        CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
        CHECK(listen(fd, 4) == 0);
        CHECK((hi[i] = fcntl(fd, F_DUPFD, 100)) >= 100);
        close(fd);
    }
    for (int i = 0; i < count; i++) {
        CHECK(dup2(hi[i], SYSD_LISTEN_FDS_START + i) == SYSD_LISTEN_FDS_START + i);
        CHECK(!(fcntl(SYSD_LISTEN_FDS_START + i, F_GETFD) & FD_CLOEXEC));
        close(hi[i]);
    }
    return 0;
}

static int
child_two_named(void)
{
    struct sysd_listen out[4];
    char s[16];

    CHECK(place_listeners(2) == 0);
    snprintf(s, sizeof s, "%ld", (long)getpid());
    setenv("LISTEN_PID", s, 1);
    setenv("LISTEN_FDS", "2", 1);
    setenv("LISTEN_FDNAMES", "chat:echo", 1);
    CHECK(sysd_listen_fds(out, 4) == 2);
    CHECK(out[0].fd == 3 && out[1].fd == 4);
    CHECK(strcmp(out[0].name, "chat") == 0);
    CHECK(strcmp(out[1].name, "echo") == 0);
    CHECK(fcntl(3, F_GETFD) & FD_CLOEXEC);
    CHECK(fcntl(4, F_GETFD) & FD_CLOEXEC);
    CHECK(listen_env_gone());
    /* a second call finds nothing: the variables are gone */
    CHECK(sysd_listen_fds(out, 4) == 0);
    return 0;
}

static void
test_sysd_listen_fds_two_named_adopted(void **state)
{
    (void)state;
    run_in_child(child_two_named);
}

static int
child_fewer_names(void)
{
    struct sysd_listen out[4];
    char s[16];

    CHECK(place_listeners(3) == 0);
    snprintf(s, sizeof s, "%ld", (long)getpid());
    setenv("LISTEN_PID", s, 1);
    setenv("LISTEN_FDS", "3", 1);
    setenv("LISTEN_FDNAMES", ":echo", 1);
    memset(out, 'x', sizeof out);
    CHECK(sysd_listen_fds(out, 4) == 3);
    CHECK(strcmp(out[0].name, "") == 0);
    CHECK(strcmp(out[1].name, "echo") == 0);
    CHECK(strcmp(out[2].name, "") == 0);
    CHECK(out[2].fd == 5 && (fcntl(5, F_GETFD) & FD_CLOEXEC));

    /* no LISTEN_FDNAMES at all */
    setenv("LISTEN_PID", s, 1);
    setenv("LISTEN_FDS", "1", 1);
    memset(out, 'x', sizeof out);
    CHECK(sysd_listen_fds(out, 4) == 1);
    CHECK(out[0].fd == 3 && strcmp(out[0].name, "") == 0);
    return 0;
}

static void
test_sysd_listen_fds_fewer_names_left_empty(void **state)
{
    (void)state;
    run_in_child(child_fewer_names);
}

static int
child_closed_fd(void)
{
    struct sysd_listen out[2];
    char s[16];

    close(3);
    snprintf(s, sizeof s, "%ld", (long)getpid());
    setenv("LISTEN_PID", s, 1);
    setenv("LISTEN_FDS", "1", 1);
    CHECK(sysd_listen_fds(out, 2) == -EBADF);
    CHECK(listen_env_gone());
    return 0;
}

static void
test_sysd_listen_fds_closed_fd_ebadf(void **state)
{
    (void)state;
    run_in_child(child_closed_fd);
}

static int
child_long_name(void)
{
    struct sysd_listen out[2];
    char s[16], name[SYSD_NAME_MAX + 8];

    CHECK(place_listeners(1) == 0);
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(s, sizeof s, "%ld", (long)getpid());
    setenv("LISTEN_PID", s, 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_FDNAMES", name, 1);
    CHECK(sysd_listen_fds(out, 2) == -EINVAL);
    CHECK(listen_env_gone());
    return 0;
}

static void
test_sysd_listen_fds_name_too_long_einval(void **state)
{
    (void)state;
    run_in_child(child_long_name);
}

/* The rest never reach a descriptor, so they run in the test process. */

static void
test_sysd_listen_fds_unset_zero(void **state)
{
    struct sysd_listen out[1] = { { .fd = -7 } };

    (void)state;
    assert_int_equal(sysd_listen_fds(out, 1), 0);
    assert_int_equal(out[0].fd, -7);
    setenv_pid("LISTEN_PID", getpid()); /* no LISTEN_FDS */
    assert_int_equal(sysd_listen_fds(out, 1), 0);
    assert_int_equal(out[0].fd, -7);
}

/* sd_listen_fds(3) with unset_environment: the variables go even when they
 * were meant for another process. */
static void
test_sysd_listen_fds_other_pid_zero(void **state)
{
    struct sysd_listen out[2] = { { .fd = -7 }, { .fd = -7 } };

    (void)state;
    setenv_pid("LISTEN_PID", getpid() + 1);
    assert_int_equal(setenv("LISTEN_FDS", "2", 1), 0);
    assert_int_equal(setenv("LISTEN_FDNAMES", "chat:echo", 1), 0);
    assert_int_equal(sysd_listen_fds(out, 2), 0);
    assert_int_equal(out[0].fd, -7);
    assert_int_equal(out[1].fd, -7);
    assert_true(listen_env_gone());
}

static void
test_sysd_listen_fds_malformed_einval(void **state)
{
    static const char *const bad_fds[] = {
        "", "0", "-1", "+1", " 1", "1 ", "1x", "0x1", "99999999999999999999999", "2147483647",
    };
    static const char *const bad_pids[] = { "", "0", "-1", "abc", "12 ", "99999999999" };
    struct sysd_listen out[2] = { { .fd = -7 } };

    (void)state;
    for (size_t i = 0; i < sizeof bad_fds / sizeof bad_fds[0]; i++) {
        setenv_pid("LISTEN_PID", getpid());
        assert_int_equal(setenv("LISTEN_FDS", bad_fds[i], 1), 0);
        assert_int_equal(sysd_listen_fds(out, 2), -EINVAL);
        assert_true(listen_env_gone());
    }
    for (size_t i = 0; i < sizeof bad_pids / sizeof bad_pids[0]; i++) {
        assert_int_equal(setenv("LISTEN_PID", bad_pids[i], 1), 0);
        assert_int_equal(setenv("LISTEN_FDS", "1", 1), 0);
        assert_int_equal(sysd_listen_fds(out, 2), -EINVAL);
        assert_true(listen_env_gone());
    }
    assert_int_equal(out[0].fd, -7);
}

static void
test_sysd_listen_fds_more_than_max_e2big(void **state)
{
    struct sysd_listen out[2];

    (void)state;
    setenv_pid("LISTEN_PID", getpid());
    assert_int_equal(setenv("LISTEN_FDS", "3", 1), 0);
    assert_int_equal(sysd_listen_fds(out, 2), -E2BIG);
    assert_true(listen_env_gone());
}

/* ---- notification ---- */

struct receiver {
    int fd;
    char dir[48];
    char path[96];
};

/* A datagram socket bound at a fresh temporary path. */
static int
receiver_path_setup(void **state)
{
    struct receiver *r = calloc(1, sizeof *r);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };

    env_clear(state);
    if (!r)
        return -1;
    *state = r;
    r->fd = -1;
    snprintf(r->dir, sizeof r->dir, "/tmp/echochat-sysd-XXXXXX");
    if (!mkdtemp(r->dir))
        return -1;
    snprintf(r->path, sizeof r->path, "%s/notify", r->dir);
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", r->path);
    r->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (r->fd < 0 || bind(r->fd, (struct sockaddr *)&sun, sizeof sun) < 0)
        return -1;
    return 0;
}

static int
receiver_teardown(void **state)
{
    struct receiver *r = *state;

    env_clear(state);
    if (!r)
        return 0;
    if (r->fd >= 0)
        close(r->fd);
    if (r->path[0])
        unlink(r->path);
    if (r->dir[0])
        rmdir(r->dir);
    free(r);
    return 0;
}

/* The next datagram, within 2 s. */
static void
assert_received(int fd, const char *want)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char buf[256];
    ssize_t n;

    assert_int_equal(poll(&p, 1, 2000), 1);
    n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void
test_sysd_notify_path_received(void **state)
{
    struct receiver *r = *state;
    struct sysd_notify n;

    assert_int_equal(setenv("NOTIFY_SOCKET", r->path, 1), 0);
    assert_int_equal(sysd_notify_open(&n), 0);
    assert_true(n.fd >= 0);
    assert_true(fcntl(n.fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(n.fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(sysd_notify_send(&n, "READY=1"), 0);
    assert_received(r->fd, "READY=1");
    assert_int_equal(sysd_notify_send(&n, "STATUS=3 clients\nWATCHDOG=1"), 0);
    assert_received(r->fd, "STATUS=3 clients\nWATCHDOG=1");
    sysd_notify_close(&n);
    assert_int_equal(n.fd, -1);
}

/* The receiver binds exactly "\0name" (no trailing NUL); a sender whose
 * address length counted one more byte would name another socket and get
 * ECONNREFUSED instead of delivering. */
static void
test_sysd_notify_abstract_received(void **state)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct sysd_notify n;
    char name[64], env[80];
    socklen_t len;
    int fd;

    (void)state;
    snprintf(name, sizeof name, "echochat-test-%ld", (long)getpid());
    snprintf(env, sizeof env, "@%s", name);
    memcpy(sun.sun_path + 1, name, strlen(name));
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, len), 0);

    assert_int_equal(setenv("NOTIFY_SOCKET", env, 1), 0);
    assert_int_equal(sysd_notify_open(&n), 0);
    assert_int_equal(n.addrlen, len);
    assert_int_equal(n.addr.sun_path[0], '\0');
    assert_memory_equal(n.addr.sun_path + 1, name, strlen(name));
    assert_int_equal(sysd_notify_send(&n, "READY=1"), 0);
    assert_received(fd, "READY=1");
    sysd_notify_close(&n);
    close(fd);
}

static void
test_sysd_notify_unset_noop(void **state)
{
    struct sysd_notify n;

    (void)state;
    assert_int_equal(sysd_notify_open(&n), 0);
    assert_int_equal(n.fd, -1);
    assert_int_equal(sysd_notify_send(&n, "READY=1"), 0);
    sysd_notify_close(&n);
    assert_int_equal(n.fd, -1);
}

static void
test_sysd_notify_bad_value_einval(void **state)
{
    char longpath[200], longabs[200];
    const char *const bad[] = { "", "@", "run/notify", "vsock:2:1234", longpath, longabs };
    struct sysd_notify n;

    (void)state;
    longpath[0] = '/';
    memset(longpath + 1, 'p', sizeof longpath - 2);
    longpath[sizeof longpath - 1] = '\0';
    longabs[0] = '@';
    memset(longabs + 1, 'a', sizeof longabs - 2);
    longabs[sizeof longabs - 1] = '\0';
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(setenv("NOTIFY_SOCKET", bad[i], 1), 0);
        assert_int_equal(sysd_notify_open(&n), -EINVAL);
        assert_int_equal(n.fd, -1);
        assert_int_equal(sysd_notify_send(&n, "READY=1"), 0);
    }
}

/* No one is bound there: the failure comes back, it does not block. */
static void
test_sysd_notify_no_receiver_errno(void **state)
{
    struct receiver *r = *state;
    struct sysd_notify n;
    char gone[160];
    int rc;

    snprintf(gone, sizeof gone, "%s/gone", r->dir);
    assert_int_equal(setenv("NOTIFY_SOCKET", gone, 1), 0);
    assert_int_equal(sysd_notify_open(&n), 0);
    rc = sysd_notify_send(&n, "READY=1");
    assert_true(rc == -ENOENT || rc == -ECONNREFUSED);
    sysd_notify_close(&n);
}

/* ---- watchdog ---- */

static void
test_sysd_watchdog_usec_pid_rules(void **state)
{
    (void)state;
    assert_int_equal(sysd_watchdog_usec(), 0);
    assert_int_equal(setenv("WATCHDOG_USEC", "30000000", 1), 0);
    assert_int_equal(sysd_watchdog_usec(), 30000000);
    setenv_pid("WATCHDOG_PID", getpid());
    assert_int_equal(sysd_watchdog_usec(), 30000000);
    setenv_pid("WATCHDOG_PID", getpid() + 1);
    assert_int_equal(sysd_watchdog_usec(), 0);
    assert_int_equal(setenv("WATCHDOG_PID", "x", 1), 0);
    assert_int_equal(sysd_watchdog_usec(), 0);
    /* the variables are left alone: asking again gives the same answer */
    unsetenv("WATCHDOG_PID");
    assert_int_equal(setenv("WATCHDOG_USEC", "18446744073709551615", 1), 0);
    assert_true(sysd_watchdog_usec() == UINT64_MAX);
    assert_true(sysd_watchdog_usec() == UINT64_MAX);
}

static void
test_sysd_watchdog_usec_malformed_off(void **state)
{
    static const char *const bad[] = { "", "0", "-5", "+5", "5s", " 5", "18446744073709551616" };

    (void)state;
    setenv_pid("WATCHDOG_PID", getpid());
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(setenv("WATCHDOG_USEC", bad[i], 1), 0);
        assert_int_equal(sysd_watchdog_usec(), 0);
    }
}

#define ENV_TEST(t)  cmocka_unit_test_setup_teardown(t, env_clear, env_clear)
#define RECV_TEST(t) cmocka_unit_test_setup_teardown(t, receiver_path_setup, receiver_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        ENV_TEST(test_sysd_listen_fds_two_named_adopted),
        ENV_TEST(test_sysd_listen_fds_fewer_names_left_empty),
        ENV_TEST(test_sysd_listen_fds_closed_fd_ebadf),
        ENV_TEST(test_sysd_listen_fds_name_too_long_einval),
        ENV_TEST(test_sysd_listen_fds_unset_zero),
        ENV_TEST(test_sysd_listen_fds_other_pid_zero),
        ENV_TEST(test_sysd_listen_fds_malformed_einval),
        ENV_TEST(test_sysd_listen_fds_more_than_max_e2big),
        RECV_TEST(test_sysd_notify_path_received),
        ENV_TEST(test_sysd_notify_abstract_received),
        ENV_TEST(test_sysd_notify_unset_noop),
        ENV_TEST(test_sysd_notify_bad_value_einval),
        RECV_TEST(test_sysd_notify_no_receiver_errno),
        ENV_TEST(test_sysd_watchdog_usec_pid_rules),
        ENV_TEST(test_sysd_watchdog_usec_malformed_off),
    };

    return cmocka_run_group_tests_name("sysd", tests, NULL, NULL);
}
