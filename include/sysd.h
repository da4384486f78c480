/*
 * sysd: the two systemd protocols a daemon needs, without libsystemd.
 * Socket activation: LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES describe sockets
 * passed from fd 3 on. Notification: NOTIFY_SOCKET names an AF_UNIX datagram
 * socket (a path, or "@name" in the abstract namespace) that takes
 * "READY=1"-style messages. libc only; returns -errno, never logs.
 */
#ifndef ECHOCHAT_SYSD_H
#define ECHOCHAT_SYSD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#define SYSD_LISTEN_FDS_START 3
#define SYSD_NAME_MAX         256

struct sysd_listen {
    int fd;
    char name[SYSD_NAME_MAX]; /* from LISTEN_FDNAMES, "" when absent */
};

/* Adopt the sockets passed to us: only when LISTEN_PID is our pid. Marks
 * them close-on-exec and unsets LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES
 * so children do not inherit them. Returns how many (0: none for us,
 * out untouched), or -EINVAL (malformed variables), -E2BIG (more than max). */
int sysd_listen_fds(struct sysd_listen *out, size_t max);

struct sysd_notify {
    int fd; /* -1 when NOTIFY_SOCKET is unset */
    struct sockaddr_un addr;
    socklen_t addrlen; /* exact: abstract names are not NUL-terminated */
};

/* Read NOTIFY_SOCKET and open a datagram socket for it. With the variable
 * unset, n->fd is -1 and every send is a successful no-op. Returns 0, or
 * -EINVAL (unusable address) / -errno. */
int sysd_notify_open(struct sysd_notify *n);
/* Send one message ("READY=1", "STATUS=...", may hold several lines).
 * Returns 0 or -errno; never blocks. */
int sysd_notify_send(const struct sysd_notify *n, const char *msg);
void sysd_notify_close(struct sysd_notify *n);

/* The watchdog interval from WATCHDOG_USEC, honouring WATCHDOG_PID when set.
 * Returns the interval in microseconds, 0 when the watchdog is off. */
uint64_t sysd_watchdog_usec(void);

#endif
