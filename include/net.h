/*
 * net: the socket calls, in one place. Every function returns 0 (or an fd,
 * or a count) or -errno and never logs: the caller knows which listener or
 * client it is and writes the message. Host-name failures from getaddrinfo
 * come back as NET_EAI(code); net_strerror() renders either kind.
 */
#ifndef ECHOCHAT_NET_H
#define ECHOCHAT_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* "[ffff:...:ffff]:65535" plus NUL, with room to spare */
#define NET_ADDRSTRLEN 64

/* getaddrinfo's EAI_* codes (negative) mapped below every errno value. */
#define NET_EAI_BIAS   100000
#define NET_EAI(code)  (-(NET_EAI_BIAS - (code)))
#define NET_IS_EAI(rc) ((rc) <= -NET_EAI_BIAS)

struct net_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* Resolve a numeric address or a host name for a passive (listening)
 * socket. host must not be empty. Fills up to max entries. Returns the count
 * (>= 1) or -errno / NET_EAI(code). */
int net_resolve(const char *host, const char *port, struct net_addr *out, size_t max);

/* A listening TCP socket on sa: SO_REUSEADDR, non-blocking, close-on-exec,
 * IPV6_V6ONLY=0 on the IPv6 wildcard. Returns the fd or -errno. */
int net_listen(const struct sockaddr *sa, socklen_t len, int backlog);
/* The wildcard listener for port: [::] dual-stack, or 0.0.0.0 when the
 * kernel has no IPv6. Returns the fd or -errno. */
int net_listen_any(const char *port, int backlog);

/* accept4(SOCK_NONBLOCK|SOCK_CLOEXEC). Returns the fd or -errno (-EAGAIN
 * when the queue is empty). peer may be NULL. */
int net_accept(int lfd, struct net_addr *peer);

/* SO_KEEPALIVE on, with TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT. */
int net_keepalive(int fd, int idle_s, int interval_s, int count);
/* TCP_USER_TIMEOUT in ms (0: the kernel default). */
int net_user_timeout(int fd, unsigned ms);
int net_nodelay(int fd);
int net_set_nonblock(int fd);
int net_set_cloexec(int fd);

/* 0 when fd is a listening SOCK_STREAM socket; -ENOTSOCK, -ESOCKTNOSUPPORT
 * (not a stream) or -EINVAL (not listening) otherwise. */
int net_check_listener(int fd);
/* The local address of a socket. */
int net_local_addr(int fd, struct net_addr *out);

/* "1.2.3.4:5" or "[::1]:5"; IPv4-mapped IPv6 is shown as IPv4. Returns buf. */
char *net_addr_str(const struct sockaddr *sa, char *buf, size_t len);
/* The address family and raw bytes that identify a peer's host (for the
 * per-IP limit): IPv4-mapped IPv6 counts as IPv4. Returns the byte count
 * (4 or 16) written to key[16], or 0 for other families. */
size_t net_addr_key(const struct sockaddr *sa, uint8_t key[16]);
/* Port in host order, 0 for other families. */
unsigned net_addr_port(const struct sockaddr *sa);

/* Text for any value returned by this module. */
const char *net_strerror(int rc);

#endif
