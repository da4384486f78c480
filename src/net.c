/*
 * net: every socket call the daemon makes, kept in one place so that the
 * options a listener or an accepted connection needs are set the same way
 * everywhere. It knows nothing of clients, loops or logging: each function
 * returns 0 (or an fd, or a count) or -errno, and getaddrinfo's EAI_* codes
 * travel as NET_EAI(code) so one int carries either kind of failure.
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int
set_int_opt(int fd, int level, int name, int val)
{
    if (setsockopt(fd, level, name, &val, sizeof val) < 0)
        return -errno;
    return 0;
}

/* Two results of one lookup are the same when their sockaddrs are byte-equal
 * (getaddrinfo zeroes the padding); /etc/hosts may list an address twice. */
static bool
addr_seen(const struct net_addr *out, int n, const struct addrinfo *ai)
{
    for (int i = 0; i < n; i++)
        if (out[i].len == ai->ai_addrlen && memcmp(&out[i].ss, ai->ai_addr, ai->ai_addrlen) == 0)
            return true;
    return false;
}

static int
gai_to_rc(int code)
{
    if (code == EAI_SYSTEM)
        return errno ? -errno : -EIO;
    return NET_EAI(code);
}

/*
 * Numeric addresses are tried first and without AI_ADDRCONFIG: that flag
 * makes glibc drop a family when the only addresses of that family are on
 * loopback, so "::1" would not resolve on a host whose only IPv6 address is
 * ::1, nor on an IPv4-only host. A literal address is what the operator
 * asked for; bind() is the right place to fail if it is not configured.
 * Host names keep AI_ADDRCONFIG, so "localhost" on an IPv4-only host does
 * not yield an IPv6 listener that cannot work.
 */
int
net_resolve(const char *host, const char *port, struct net_addr *out, size_t max)
{
    struct addrinfo hints = { 0 }, *res, *ai;
    int rc, n = 0;

    if (!host || !*host || !port || !out || max == 0)
        return -EINVAL;
    if (max > INT_MAX)
        max = INT_MAX;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
    errno = 0;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc == EAI_NONAME) {
        hints.ai_flags = AI_PASSIVE | AI_ADDRCONFIG;
        errno = 0;
        rc = getaddrinfo(host, port, &hints, &res);
    }
    if (rc != 0)
        return gai_to_rc(rc);

    for (ai = res; ai && (size_t)n < max; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof out[n].ss || addr_seen(out, n, ai))
            continue;
        memset(&out[n], 0, sizeof out[n]);
        memcpy(&out[n].ss, ai->ai_addr, ai->ai_addrlen);
        out[n].len = ai->ai_addrlen;
        n++;
    }
    freeaddrinfo(res);
    return n > 0 ? n : NET_EAI(EAI_NONAME);
}

static bool
is_v6_wildcard(const struct sockaddr *sa)
{
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

    return sa->sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
}

/*
 * SO_REUSEADDR lets a restarted daemon bind its port at once while the
 * previous run's connections still sit in TIME_WAIT; it does not let two
 * live listeners share a port (that would take SO_REUSEPORT). The IPv6
 * wildcard is made dual-stack explicitly rather than trusting the
 * net.ipv6.bindv6only sysctl; a specific IPv6 address keeps the default,
 * since it can never accept IPv4 anyway.
 */
int
net_listen(const struct sockaddr *sa, socklen_t len, int backlog)
{
    int fd, rc;

    if (!sa || len < sizeof(sa_family_t))
        return -EINVAL;
    fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if ((rc = set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1)) < 0)
        goto fail;
    if (is_v6_wildcard(sa) && (rc = set_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0)) < 0)
        goto fail;
    if (bind(fd, sa, len) < 0 || listen(fd, backlog) < 0) {
        rc = -errno;
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return rc;
}

/* A strict decimal port: digits only, 0..65535 (0 lets the kernel pick). */
static int
parse_port(const char *s, uint16_t *port)
{
    unsigned long v = 0;

    if (!s || !*s)
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > 65535)
            return -EINVAL;
    }
    *port = (uint16_t)v;
    return 0;
}

/* EAFNOSUPPORT is what socket(AF_INET6) says on a kernel booted with
 * ipv6.disable=1; only then do we settle for IPv4 alone. */
int
net_listen_any(const char *port, int backlog)
{
    struct sockaddr_in6 sin6 = { 0 };
    struct sockaddr_in sin = { 0 };
    uint16_t p;
    int fd;

    if ((fd = parse_port(port, &p)) < 0)
        return fd;
    sin6.sin6_family = AF_INET6;
    sin6.sin6_addr = in6addr_any;
    sin6.sin6_port = htons(p);
    fd = net_listen((struct sockaddr *)&sin6, sizeof sin6, backlog);
    if (fd != -EAFNOSUPPORT)
        return fd;
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_ANY);
    sin.sin_port = htons(p);
    return net_listen((struct sockaddr *)&sin, sizeof sin, backlog);
}

/* EINTR is retried here so callers only ever see "not now" (-EAGAIN),
 * "out of descriptors" (-EMFILE/-ENFILE) or a per-connection failure. */
int
net_accept(int lfd, struct net_addr *peer)
{
    struct sockaddr *sa = NULL;
    socklen_t *lenp = NULL;
    int fd;

    if (peer) {
        memset(peer, 0, sizeof *peer);
        peer->len = sizeof peer->ss;
        sa = (struct sockaddr *)&peer->ss;
        lenp = &peer->len;
    }
    do
        fd = accept4(lfd, sa, lenp, SOCK_NONBLOCK | SOCK_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

int
net_keepalive(int fd, int idle_s, int interval_s, int count)
{
    int rc;

    if ((rc = set_int_opt(fd, SOL_SOCKET, SO_KEEPALIVE, 1)) < 0 ||
        (rc = set_int_opt(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle_s)) < 0 ||
        (rc = set_int_opt(fd, IPPROTO_TCP, TCP_KEEPINTVL, interval_s)) < 0 ||
        (rc = set_int_opt(fd, IPPROTO_TCP, TCP_KEEPCNT, count)) < 0)
        return rc;
    return 0;
}

int
net_user_timeout(int fd, unsigned ms)
{
    if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms) < 0)
        return -errno;
    return 0;
}

int
net_nodelay(int fd)
{
    return set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
}

int
net_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0)
        return -errno;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

int
net_set_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFD);

    if (fl < 0)
        return -errno;
    if (!(fl & FD_CLOEXEC) && fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

/* For inherited descriptors: systemd may hand us anything the unit file
 * says, so a datagram socket or a pipe is refused before it reaches accept. */
int
net_check_listener(int fd)
{
    int type = 0, acc = 0;
    socklen_t len = sizeof type;

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return -errno;
    if (type != SOCK_STREAM)
        return -ESOCKTNOSUPPORT;
    len = sizeof acc;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0)
        return -errno;
    return acc == 1 ? 0 : -EINVAL;
}

int
net_local_addr(int fd, struct net_addr *out)
{
    memset(out, 0, sizeof *out);
    out->len = sizeof out->ss;
    if (getsockname(fd, (struct sockaddr *)&out->ss, &out->len) < 0)
        return -errno;
    return 0;
}

/* The 4 bytes of an IPv4 address, plain or IPv4-mapped (::ffff:a.b.c.d),
 * or NULL when sa holds neither. */
static const void *
v4_bytes(const struct sockaddr *sa)
{
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

    if (sa->sa_family == AF_INET)
        return &((const struct sockaddr_in *)sa)->sin_addr;
    if (sa->sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
        return NULL;
    return &sin6->sin6_addr.s6_addr[12];
}

/* A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; showing them
 * as plain IPv4 keeps logs the same whichever listener a client came in on. */
char *
net_addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    const void *v4;

    if (!buf || len == 0)
        return buf;
    if (!sa) {
        snprintf(buf, len, "?");
    } else if ((v4 = v4_bytes(sa))) {
        inet_ntop(AF_INET, v4, host, sizeof host);
        snprintf(buf, len, "%s:%u", host, net_addr_port(sa));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        if (sin6->sin6_scope_id)
            snprintf(buf, len, "[%s%%%u]:%u", host, (unsigned)sin6->sin6_scope_id,
                     net_addr_port(sa));
        else
            snprintf(buf, len, "[%s]:%u", host, net_addr_port(sa));
    } else if (sa->sa_family == AF_UNIX) {
        snprintf(buf, len, "unix");
    } else {
        snprintf(buf, len, "?");
    }
    return buf;
}

size_t
net_addr_key(const struct sockaddr *sa, uint8_t key[16])
{
    const void *v4;

    if (!sa)
        return 0;
    if ((v4 = v4_bytes(sa))) {
        memcpy(key, v4, 4);
        return 4;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 16;
    }
    return 0;
}

unsigned
net_addr_port(const struct sockaddr *sa)
{
    if (!sa)
        return 0;
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

/* EAI codes are small negative numbers; anything further below the bias is
 * not one of ours and gets the fixed text rather than gai_strerror's guess. */
const char *
net_strerror(int rc)
{
    const char *s = NULL;

    if (rc == 0)
        return "success";
    if (NET_IS_EAI(rc)) {
        int code = rc + NET_EAI_BIAS;

        if (code < 0 && code > -1000)
            s = gai_strerror(code);
    } else if (rc < 0) {
        s = strerror(-rc);
    }
    return s && *s ? s : "unknown error";
}
