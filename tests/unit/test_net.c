/*
 * net: real sockets on loopback for everything the kernel can show us
 * (options read back with getsockopt, flags with fcntl), and accept4
 * wrapped (-Wl,--wrap=accept4) for the failures loopback cannot produce
 * on demand. Every net_accept() is preceded by a will_return telling the
 * wrapper to fail with an errno or pass through (0), so cmocka also checks
 * that net_accept really goes through accept4.
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

int __wrap_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags);
int __real_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags);

/* will_return(__wrap_accept4, 0) passes through; any other value is the
 * errno of a failed call. */
int
__wrap_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
    int err = mock_type(int);

    if (err == 0)
        return __real_accept4(fd, sa, len, flags);
    errno = err;
    return -1;
}

static int
accept_real(int lfd, struct net_addr *peer)
{
    will_return(__wrap_accept4, 0);
    return net_accept(lfd, peer);
}

static struct net_addr
addr_v4(const char *ip, unsigned port)
{
    struct net_addr a = { .len = sizeof(struct sockaddr_in) };
    struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;

    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    return a;
}

static struct net_addr
addr_v6(const char *ip, unsigned port)
{
    struct net_addr a = { .len = sizeof(struct sockaddr_in6) };
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;

    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    return a;
}

#define SA(a) ((struct sockaddr *)&(a).ss)

static unsigned
local_port(int fd)
{
    struct net_addr a;

    assert_int_equal(net_local_addr(fd, &a), 0);
    return net_addr_port(SA(a));
}

/* A listener on a loopback address with a kernel-chosen port. */
static int
listen_loopback(int family)
{
    struct net_addr a = family == AF_INET ? addr_v4("127.0.0.1", 0) : addr_v6("::1", 0);

    return net_listen(SA(a), a.len, 16);
}

/* A blocking client connected to 127.0.0.1:port; the listener is then
 * polled so that the connection is known to be in its accept queue. */
static int
connect_v4(int lfd, unsigned port)
{
    struct net_addr a = addr_v4("127.0.0.1", port);
    struct pollfd p = { .fd = lfd, .events = POLLIN };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_int_equal(connect(fd, SA(a), a.len), 0);
    assert_int_equal(poll(&p, 1, 2000), 1);
    return fd;
}

static int
int_opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;

    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

static void
assert_nonblock_cloexec(int fd)
{
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

static void
test_net_listen_v4_port_zero_reads_back_port(void **state)
{
    int fd = listen_loopback(AF_INET);
    struct net_addr a;
    char s[NET_ADDRSTRLEN], want[NET_ADDRSTRLEN];

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(net_local_addr(fd, &a), 0);
    assert_int_equal(a.ss.ss_family, AF_INET);
    assert_int_not_equal(net_addr_port(SA(a)), 0);
    snprintf(want, sizeof want, "127.0.0.1:%u", net_addr_port(SA(a)));
    assert_string_equal(net_addr_str(SA(a), s, sizeof s), want);
    assert_nonblock_cloexec(fd);
    assert_int_equal(int_opt(fd, SOL_SOCKET, SO_REUSEADDR), 1);
    assert_int_equal(net_check_listener(fd), 0);
    close(fd);
}

static void
test_net_listen_v6_loopback_port_zero_reads_back_port(void **state)
{
    int fd = listen_loopback(AF_INET6);
    struct net_addr a;
    char s[NET_ADDRSTRLEN], want[NET_ADDRSTRLEN];

    (void)state;
    if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL)
        skip(); /* no IPv6 loopback on this host */
    assert_true(fd >= 0);
    assert_int_equal(net_local_addr(fd, &a), 0);
    assert_int_equal(a.ss.ss_family, AF_INET6);
    assert_int_not_equal(net_addr_port(SA(a)), 0);
    snprintf(want, sizeof want, "[::1]:%u", net_addr_port(SA(a)));
    assert_string_equal(net_addr_str(SA(a), s, sizeof s), want);
    assert_nonblock_cloexec(fd);
    assert_int_equal(int_opt(fd, SOL_SOCKET, SO_REUSEADDR), 1);
    close(fd);
}

static void
test_net_listen_port_in_use_eaddrinuse(void **state)
{
    int fd = listen_loopback(AF_INET);
    struct net_addr a;

    (void)state;
    assert_true(fd >= 0);
    a = addr_v4("127.0.0.1", local_port(fd));
    assert_int_equal(net_listen(SA(a), a.len, 16), -EADDRINUSE);
    close(fd);
}

static void
test_net_listen_bad_family_returns_errno(void **state)
{
    struct net_addr a = { .len = sizeof(struct sockaddr_in) };

    (void)state;
    a.ss.ss_family = 12345;
    assert_int_equal(net_listen(SA(a), a.len, 16), -EAFNOSUPPORT);
    assert_int_equal(net_listen(NULL, 0, 16), -EINVAL);
}

static void
test_net_accept_options_read_back(void **state)
{
    int lfd = listen_loopback(AF_INET), cfd, fd;
    struct net_addr peer;
    unsigned ms = 0;
    socklen_t len = sizeof ms;

    (void)state;
    assert_true(lfd >= 0);
    cfd = connect_v4(lfd, local_port(lfd));
    fd = accept_real(lfd, &peer);
    assert_true(fd >= 0);
    assert_int_equal(peer.ss.ss_family, AF_INET);
    assert_int_equal(net_addr_port(SA(peer)), local_port(cfd));
    assert_nonblock_cloexec(fd);

    assert_int_equal(net_keepalive(fd, 7, 3, 4), 0);
    assert_int_equal(net_user_timeout(fd, 12345), 0);
    assert_int_equal(net_nodelay(fd), 0);
    assert_int_equal(int_opt(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
    assert_int_equal(int_opt(fd, IPPROTO_TCP, TCP_KEEPIDLE), 7);
    assert_int_equal(int_opt(fd, IPPROTO_TCP, TCP_KEEPINTVL), 3);
    assert_int_equal(int_opt(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, &len), 0);
    assert_int_equal(ms, 12345);
    assert_int_equal(int_opt(fd, IPPROTO_TCP, TCP_NODELAY), 1);
    close(fd);
    close(cfd);
    close(lfd);
}

static void
test_net_keepalive_bad_value_einval(void **state)
{
    int lfd = listen_loopback(AF_INET), cfd, fd;

    (void)state;
    cfd = connect_v4(lfd, local_port(lfd));
    fd = accept_real(lfd, NULL);
    assert_true(fd >= 0);
    /* the kernel caps TCP_KEEPCNT at 127 */
    assert_int_equal(net_keepalive(fd, 7, 3, 100000), -EINVAL);
    assert_int_equal(net_nodelay(-1), -EBADF);
    close(fd);
    close(cfd);
    close(lfd);
}

static void
test_net_accept_empty_queue_eagain(void **state)
{
    int lfd = listen_loopback(AF_INET);

    (void)state;
    assert_true(lfd >= 0);
    assert_int_equal(accept_real(lfd, NULL), -EAGAIN);
    close(lfd);
}

static void
test_net_accept_failures_returned_as_errno(void **state)
{
    static const int errs[] = { EMFILE, ENFILE, ECONNABORTED, ENOBUFS };
    struct net_addr peer;

    (void)state;
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        will_return(__wrap_accept4, errs[i]);
        assert_int_equal(net_accept(3, &peer), -errs[i]);
    }
}

static void
test_net_accept_eintr_retried(void **state)
{
    int lfd = listen_loopback(AF_INET), cfd, fd;

    (void)state;
    cfd = connect_v4(lfd, local_port(lfd));
    will_return(__wrap_accept4, EINTR);
    will_return(__wrap_accept4, 0);
    fd = net_accept(lfd, NULL);
    assert_true(fd >= 0);
    close(fd);
    close(cfd);
    close(lfd);
}

/* An IPv4 client reaches the [::] listener and shows up as IPv4 in text
 * and in the per-IP key, as it would through a 0.0.0.0 listener. */
static void
test_net_listen_any_dual_stack_accepts_ipv4(void **state)
{
    int lfd = net_listen_any("0", 16), cfd, fd;
    struct net_addr a, peer;
    uint8_t key[16];
    char s[NET_ADDRSTRLEN], want[NET_ADDRSTRLEN];

    (void)state;
    assert_true(lfd >= 0);
    assert_int_equal(net_local_addr(lfd, &a), 0);
    if (a.ss.ss_family == AF_INET6)
        assert_int_equal(int_opt(lfd, IPPROTO_IPV6, IPV6_V6ONLY), 0);
    assert_int_equal(int_opt(lfd, SOL_SOCKET, SO_REUSEADDR), 1);
    assert_nonblock_cloexec(lfd);

    cfd = connect_v4(lfd, net_addr_port(SA(a)));
    fd = accept_real(lfd, &peer);
    assert_true(fd >= 0);
    snprintf(want, sizeof want, "127.0.0.1:%u", local_port(cfd));
    assert_string_equal(net_addr_str(SA(peer), s, sizeof s), want);
    assert_int_equal(net_addr_key(SA(peer), key), 4);
    assert_memory_equal(key, "\x7f\x00\x00\x01", 4);
    close(fd);
    close(cfd);
    close(lfd);
}

static void
test_net_listen_any_bad_port_einval(void **state)
{
    (void)state;
    assert_int_equal(net_listen_any("65536", 16), -EINVAL);
    assert_int_equal(net_listen_any("", 16), -EINVAL);
    assert_int_equal(net_listen_any("-1", 16), -EINVAL);
    assert_int_equal(net_listen_any("80x", 16), -EINVAL);
    assert_int_equal(net_listen_any(NULL, 16), -EINVAL);
}

static void
test_net_addr_str_formats(void **state)
{
    struct net_addr v4 = addr_v4("1.2.3.4", 5), v6 = addr_v6("::1", 5);
    struct net_addr mapped = addr_v6("::ffff:1.2.3.4", 5), full = addr_v6("2001:db8::ff", 65535);
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    char s[NET_ADDRSTRLEN], small[6];

    (void)state;
    assert_string_equal(net_addr_str(SA(v4), s, sizeof s), "1.2.3.4:5");
    assert_string_equal(net_addr_str(SA(v6), s, sizeof s), "[::1]:5");
    assert_string_equal(net_addr_str(SA(mapped), s, sizeof s), "1.2.3.4:5");
    assert_string_equal(net_addr_str(SA(full), s, sizeof s), "[2001:db8::ff]:65535");
    assert_string_equal(net_addr_str((struct sockaddr *)&un, s, sizeof s), "unix");
    /* truncated, still a string */
    assert_string_equal(net_addr_str(SA(v4), small, sizeof small), "1.2.3");
}

static void
test_net_addr_key_mapped_matches_ipv4(void **state)
{
    struct net_addr v4 = addr_v4("10.0.0.9", 1), mapped = addr_v6("::ffff:10.0.0.9", 2);
    struct net_addr v6 = addr_v6("2001:db8::1", 3), other = addr_v4("10.0.0.8", 1);
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    uint8_t k1[16], k2[16], k3[16];

    (void)state;
    assert_int_equal(net_addr_key(SA(v4), k1), 4);
    assert_int_equal(net_addr_key(SA(mapped), k2), 4);
    assert_memory_equal(k1, k2, 4);
    assert_memory_equal(k1, "\x0a\x00\x00\x09", 4);
    assert_int_equal(net_addr_key(SA(other), k3), 4);
    assert_memory_not_equal(k1, k3, 4);
    assert_int_equal(net_addr_key(SA(v6), k3), 16);
    assert_memory_equal(k3, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
    assert_int_equal(net_addr_key((struct sockaddr *)&un, k3), 0);
    assert_int_equal(net_addr_port(SA(mapped)), 2);
    assert_int_equal(net_addr_port((struct sockaddr *)&un), 0);
}

static void
test_net_resolve_numeric_v4(void **state)
{
    struct net_addr out[4];
    struct sockaddr_in *sin = (struct sockaddr_in *)&out[0].ss;

    (void)state;
    assert_int_equal(net_resolve("127.0.0.1", "2323", out, 4), 1);
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(out[0].len, sizeof *sin);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
    assert_int_equal(net_addr_port(SA(out[0])), 2323);
}

static void
test_net_resolve_numeric_v6(void **state)
{
    struct net_addr out[4];
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out[0].ss;

    (void)state;
    assert_int_equal(net_resolve("::1", "7", out, 4), 1);
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    assert_int_equal(net_addr_port(SA(out[0])), 7);
}

/* "localhost" comes from /etc/hosts: loopback only, no duplicates. */
static void
test_net_resolve_localhost_loopback_distinct(void **state)
{
    struct net_addr out[8];
    uint8_t k[16];
    int n = net_resolve("localhost", "0", out, 8);

    (void)state;
    assert_true(n >= 1);
    for (int i = 0; i < n; i++) {
        size_t kl = net_addr_key(SA(out[i]), k);

        assert_true(kl == 4 || kl == 16);
        if (kl == 4)
            assert_int_equal(k[0], 127);
        else
            assert_memory_equal(k, &in6addr_loopback, 16);
        for (int j = 0; j < i; j++)
            assert_false(out[i].len == out[j].len && !memcmp(&out[i].ss, &out[j].ss, out[i].len));
    }
    assert_int_equal(net_resolve("localhost", "0", out, 1), 1);
}

/*
 * An unknown name gives an EAI code. The label is longer than DNS allows
 * (63 bytes), so the resolver refuses it without sending a query: the test
 * stays on loopback instead of asking the host's nameserver about
 * "no-such-host.invalid".
 */
static void
test_net_resolve_unknown_name_eai(void **state)
{
    char name[128];
    struct net_addr out[2];
    int rc;

    (void)state;
    memset(name, 'x', 70);
    strcpy(name + 70, ".no-such-host.invalid");
    rc = net_resolve(name, "2323", out, 2);
    assert_true(NET_IS_EAI(rc));
    assert_true(strlen(net_strerror(rc)) > 0);
    assert_string_not_equal(net_strerror(rc), "unknown error");
    assert_int_equal(net_resolve("", "2323", out, 2), -EINVAL);
    assert_int_equal(net_resolve("127.0.0.1", "2323", out, 0), -EINVAL);
}

static void
test_net_strerror_both_kinds(void **state)
{
    (void)state;
    assert_string_equal(net_strerror(-EADDRINUSE), strerror(EADDRINUSE));
    assert_string_equal(net_strerror(NET_EAI(EAI_NONAME)), gai_strerror(EAI_NONAME));
    assert_true(NET_IS_EAI(NET_EAI(EAI_AGAIN)));
    assert_false(NET_IS_EAI(-EMFILE));
    assert_string_equal(net_strerror(-NET_EAI_BIAS - 5000000), "unknown error");
    assert_string_equal(net_strerror(42), "unknown error");
    assert_non_null(net_strerror(-2000000000));
    assert_non_null(net_strerror(-0x7fffffff - 1));
    assert_true(strlen(net_strerror(-9999)) > 0);
}

static void
test_net_check_listener_kinds(void **state)
{
    int lfd = listen_loopback(AF_INET), cfd, fd, udp, p[2];

    (void)state;
    assert_int_equal(net_check_listener(lfd), 0);
    cfd = connect_v4(lfd, local_port(lfd));
    fd = accept_real(lfd, NULL);
    assert_true(fd >= 0);
    assert_int_equal(net_check_listener(fd), -EINVAL);
    assert_int_equal(net_check_listener(cfd), -EINVAL);
    udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(udp >= 0);
    assert_int_equal(net_check_listener(udp), -ESOCKTNOSUPPORT);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(net_check_listener(p[0]), -ENOTSOCK);
    assert_int_equal(net_check_listener(-1), -EBADF);
    close(p[0]);
    close(p[1]);
    close(udp);
    close(fd);
    close(cfd);
    close(lfd);
}

static void
test_net_set_nonblock_cloexec_on_plain_fd(void **state)
{
    int p[2];

    (void)state;
    assert_int_equal(pipe(p), 0);
    assert_false(fcntl(p[0], F_GETFL) & O_NONBLOCK);
    assert_false(fcntl(p[0], F_GETFD) & FD_CLOEXEC);
    assert_int_equal(net_set_nonblock(p[0]), 0);
    assert_int_equal(net_set_cloexec(p[0]), 0);
    assert_nonblock_cloexec(p[0]);
    assert_int_equal(net_set_nonblock(p[0]), 0); /* idempotent */
    assert_int_equal(net_set_nonblock(-1), -EBADF);
    assert_int_equal(net_set_cloexec(-1), -EBADF);
    close(p[0]);
    close(p[1]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_net_listen_v4_port_zero_reads_back_port),
        cmocka_unit_test(test_net_listen_v6_loopback_port_zero_reads_back_port),
        cmocka_unit_test(test_net_listen_port_in_use_eaddrinuse),
        cmocka_unit_test(test_net_listen_bad_family_returns_errno),
        cmocka_unit_test(test_net_accept_options_read_back),
        cmocka_unit_test(test_net_keepalive_bad_value_einval),
        cmocka_unit_test(test_net_accept_empty_queue_eagain),
        cmocka_unit_test(test_net_accept_failures_returned_as_errno),
        cmocka_unit_test(test_net_accept_eintr_retried),
        cmocka_unit_test(test_net_listen_any_dual_stack_accepts_ipv4),
        cmocka_unit_test(test_net_listen_any_bad_port_einval),
        cmocka_unit_test(test_net_addr_str_formats),
        cmocka_unit_test(test_net_addr_key_mapped_matches_ipv4),
        cmocka_unit_test(test_net_resolve_numeric_v4),
        cmocka_unit_test(test_net_resolve_numeric_v6),
        cmocka_unit_test(test_net_resolve_localhost_loopback_distinct),
        cmocka_unit_test(test_net_resolve_unknown_name_eai),
        cmocka_unit_test(test_net_strerror_both_kinds),
        cmocka_unit_test(test_net_check_listener_kinds),
        cmocka_unit_test(test_net_set_nonblock_cloexec_on_plain_fd),
    };

    return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
