/*
 * bench-ref-echo: the smallest honest epoll echo server, the yardstick that
 * echochatd's echo listener is measured against. Read; write what was read;
 * keep only what the kernel refuses, and while anything is kept stop reading
 * that client (backpressure) and wait for EPOLLOUT, the only time it is
 * watched. A client's FIN is seen by the read that follows the backlog, so
 * it is answered (close sends our FIN) only after everything owed is written.
 * 127.0.0.1 only; prints "READY port=N" when listening. libc only.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD (1 << 20)

struct pend {
    char *data; /* what the kernel refused; NULL when nothing is owed */
    size_t off, len;
};

static char rbuf[1 << 16];

static void
watch(int ep, int op, int fd, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };

    if (epoll_ctl(ep, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL)
        perror("epoll_ctl"), exit(1);
}

static void
drop(struct pend *p, int fd)
{
    free(p->data);
    memset(p, 0, sizeof(*p));
    close(fd);
}

/* Write p's backlog; 1 when it is gone, 0 when the kernel still refuses. */
static int
flush(struct pend *p, int fd)
{
    while (p->len) {
        ssize_t w = send(fd, p->data + p->off, p->len, MSG_NOSIGNAL);
        if (w < 0)
            return errno == EAGAIN ? 0 : -1;
        p->off += (size_t)w;
        p->len -= (size_t)w;
    }
    free(p->data);
    p->data = NULL;
    p->off = 0;
    return 1;
}

static void
on_client(int ep, struct pend *p, int fd, uint32_t ev)
{
    ssize_t n, w;
    int rc;

    if (p->data && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        if ((rc = flush(p, fd)) < 0)
            drop(p, fd);
        else if (rc > 0)
            watch(ep, EPOLL_CTL_MOD, fd, EPOLLIN);
        return;
    }
    n = read(fd, rbuf, sizeof(rbuf));
    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0) {
        drop(p, fd); /* FIN with nothing owed (close sends ours), or an error */
        return;
    }
    w = send(fd, rbuf, (size_t)n, MSG_NOSIGNAL);
    if (w == n)
        return;
    if (w < 0 && errno != EAGAIN) {
        drop(p, fd);
        return;
    }
    w = w < 0 ? 0 : w;
    p->len = (size_t)(n - w);
    p->data = malloc(p->len);
    if (!p->data)
        perror("malloc"), exit(1);
    memcpy(p->data, rbuf + w, p->len);
    watch(ep, EPOLL_CTL_MOD, fd, EPOLLOUT); /* stop reading until the kernel takes it */
}

int
main(int argc, char **argv)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    struct epoll_event evs[256];
    struct rlimit rl;
    struct pend *pend;
    int one = 1, lfd, ep;

    if (argc != 2)
        return fprintf(stderr, "usage: bench-ref-echo PORT\n"), 64;
    sa.sin_port = htons((uint16_t)atoi(argv[1]));
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    pend = calloc(MAXFD, sizeof(*pend));
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (!pend || bind(lfd, (struct sockaddr *)&sa, len) < 0 || listen(lfd, 4096) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) < 0 || (ep = epoll_create1(0)) < 0)
        return perror("bench-ref-echo"), 71;
    watch(ep, EPOLL_CTL_ADD, lfd, EPOLLIN);
    printf("READY port=%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd, c;
            if (fd != lfd) {
                on_client(ep, &pend[fd], fd, evs[i].events);
                continue;
            }
            while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                if (c >= MAXFD) {
                    close(c);
                    continue;
                }
                watch(ep, EPOLL_CTL_ADD, c, EPOLLIN);
            }
        }
    }
}
