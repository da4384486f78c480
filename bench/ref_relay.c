/*
 * bench-ref-relay: the smallest honest epoll line relay, the yardstick for
 * echochatd's chat fan-out. It reads lines and writes each complete line to
 * every OTHER connected client at once: one write per line per receiver,
 * keeping only what the kernel refuses (EPOLLOUT is watched only then). A
 * client that owes more than 1 MiB is dropped, so one stalled reader cannot
 * grow memory without bound. No nicks, rooms or sanitising: that is the
 * point, it stands for the cost of the writes alone. 127.0.0.1 only; prints
 * "READY port=N" when listening. libc only.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD    (1 << 20)
#define LINE_MAX (1 << 16)
#define OUT_MAX  (1 << 20)

struct client {
    int slot;   /* index in the member list; -1 when not connected */
    int doomed; /* over OUT_MAX: closed after the current broadcast */
    char *in;   /* the incomplete line so far (LINE_MAX) */
    size_t inlen;
    char *out; /* bytes the kernel refused */
    size_t off, len, cap;
};

static struct client *cl;
static int *members, nmembers, ndoomed, ep;
static char rbuf[1 << 16];

static void
watch(int op, int fd, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };

    if (epoll_ctl(ep, op, fd, &ev) < 0)
        perror("epoll_ctl"), exit(1);
}

static void
drop(int fd)
{
    struct client *c = &cl[fd];

    members[c->slot] = members[--nmembers];
    cl[members[c->slot]].slot = c->slot;
    free(c->in);
    free(c->out);
    memset(c, 0, sizeof(*c));
    c->slot = -1;
    close(fd);
}

static void
queue(int fd, const char *p, size_t n)
{
    struct client *c = &cl[fd];

    if (c->len + n > OUT_MAX) {
        c->doomed = 1;
        ndoomed++;
        return;
    }
    if (c->off + c->len + n > c->cap) {
        memmove(c->out, c->out + c->off, c->len);
        c->off = 0;
        if (c->len + n > c->cap) {
            c->cap = (c->len + n) * 2;
            if (!(c->out = realloc(c->out, c->cap)))
                perror("realloc"), exit(1);
        }
    }
    memcpy(c->out + c->off + c->len, p, n);
    c->len += n;
}

static void
broadcast(int from, const char *p, size_t n)
{
    for (int i = 0; i < nmembers; i++) {
        int fd = members[i];
        ssize_t w = 0;

        if (fd == from || cl[fd].doomed)
            continue;
        if (cl[fd].len == 0 && (w = send(fd, p, n, MSG_NOSIGNAL)) == (ssize_t)n)
            continue;
        if (w < 0 && errno != EAGAIN)
            continue; /* the read side will see the error and drop it */
        w = w < 0 ? 0 : w;
        if (cl[fd].len == 0)
            watch(EPOLL_CTL_MOD, fd, EPOLLIN | EPOLLOUT);
        queue(fd, p + w, n - (size_t)w);
    }
    for (int i = nmembers - 1; ndoomed && i >= 0; i--)
        if (cl[members[i]].doomed) {
            ndoomed--;
            drop(members[i]);
        }
}

static void
on_read(int fd)
{
    struct client *c = &cl[fd];
    ssize_t n = read(fd, rbuf, sizeof(rbuf));
    char *s = rbuf, *end, *nl;

    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0) {
        drop(fd);
        return;
    }
    for (end = rbuf + n; s < end && (nl = memchr(s, '\n', (size_t)(end - s))); s = nl + 1) {
        if (!c->inlen) {
            broadcast(fd, s, (size_t)(nl + 1 - s));
            continue;
        }
        size_t take =
            (size_t)(nl + 1 - s) < LINE_MAX - c->inlen ? (size_t)(nl + 1 - s) : LINE_MAX - c->inlen;
        memcpy(c->in + c->inlen, s, take);
        broadcast(fd, c->in, c->inlen + take);
        c->inlen = 0;
    }
    if (s < end) { /* keep the tail; an overlong line is relayed in pieces */
        if (!c->in && !(c->in = malloc(LINE_MAX)))
            perror("malloc"), exit(1);
        if (c->inlen + (size_t)(end - s) > LINE_MAX) {
            broadcast(fd, c->in, c->inlen);
            c->inlen = 0;
        }
        memcpy(c->in + c->inlen, s, (size_t)(end - s));
        c->inlen += (size_t)(end - s);
    }
}

static void
on_write(int fd)
{
    struct client *c = &cl[fd];

    while (c->len) {
        ssize_t w = send(fd, c->out + c->off, c->len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN)
                drop(fd);
            return;
        }
        c->off += (size_t)w;
        c->len -= (size_t)w;
    }
    c->off = 0;
    watch(EPOLL_CTL_MOD, fd, EPOLLIN);
}

int
main(int argc, char **argv)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    struct epoll_event evs[256];
    struct rlimit rl;
    int one = 1, lfd;

    if (argc != 2)
        return fprintf(stderr, "usage: bench-ref-relay PORT\n"), 64;
    sa.sin_port = htons((uint16_t)atoi(argv[1]));
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    cl = calloc(MAXFD, sizeof(*cl));
    members = calloc(MAXFD, sizeof(*members));
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (!cl || !members || bind(lfd, (struct sockaddr *)&sa, len) < 0 || listen(lfd, 4096) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) < 0 || (ep = epoll_create1(0)) < 0)
        return perror("bench-ref-relay"), 71;
    watch(EPOLL_CTL_ADD, lfd, EPOLLIN);
    printf("READY port=%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd, c;
            if (fd != lfd) {
                if (cl[fd].slot >= 0 && (evs[i].events & (EPOLLOUT | EPOLLERR)) && cl[fd].len)
                    on_write(fd);
                if (cl[fd].slot >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                    on_read(fd);
                continue;
            }
            while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                if (c >= MAXFD) {
                    close(c);
                    continue;
                }
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* as echochatd */
                cl[c].slot = nmembers;
                members[nmembers++] = c;
                watch(EPOLL_CTL_ADD, c, EPOLLIN);
            }
        }
    }
}
