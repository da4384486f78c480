/*
 * sysd: socket activation and readiness notification as systemd defines
 * them (sd_listen_fds(3), sd_notify(3), sd_watchdog_enabled(3)), written
 * against libc so the daemon needs no libsystemd at build or run time. It
 * reads the environment and talks to one datagram socket; it knows nothing
 * of listeners' protocols, the loop or logging.
 */
#include "sysd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A strict decimal: digits only (no sign, no space, no suffix), no overflow.
 * The variables come from the service manager, so anything else means the
 * environment is not what we think it is. */
static bool
parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (!s || !*s)
        return false;
    for (; *s; s++) {
        unsigned d = (unsigned)(*s - '0');

        if (*s < '0' || *s > '9' || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* -1: malformed, 0: another process's, 1: ours. */
static int
pid_is_ours(const char *s)
{
    uint64_t pid;

    if (!parse_u64(s, &pid) || pid == 0 || pid > INT_MAX)
        return -1;
    return (pid_t)pid == getpid();
}

static void
listen_env_clear(void)
{
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

/* Copies the i-th ':'-separated field of names into out; a missing field
 * (fewer names than fds) leaves "". A name that does not fit is malformed:
 * systemd caps FileDescriptorName= at 255 bytes, so it cannot be ours. */
static int
listen_name(const char *names, size_t i, char out[SYSD_NAME_MAX])
{
    const char *p = names, *end;
    size_t len;

    out[0] = '\0';
    if (!p)
        return 0;
    for (; i > 0; i--) {
        if (!(p = strchr(p, ':')))
            return 0;
        p++;
    }
    end = strchr(p, ':');
    len = end ? (size_t)(end - p) : strlen(p);
    if (len >= SYSD_NAME_MAX)
        return -EINVAL;
    memcpy(out, p, len);
    out[len] = '\0';
    return 0;
}

static int
listen_fds_parse(struct sysd_listen *out, size_t max)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    uint64_t n;
    int rc, ours;

    if (!pid)
        return 0;
    if ((ours = pid_is_ours(pid)) <= 0)
        return ours < 0 ? -EINVAL : 0;
    if (!fds)
        return 0;
    if (!parse_u64(fds, &n) || n == 0 || n > (uint64_t)(INT_MAX - SYSD_LISTEN_FDS_START))
        return -EINVAL;
    if (n > max)
        return -E2BIG;
    for (size_t i = 0; i < n; i++) {
        int fd = SYSD_LISTEN_FDS_START + (int)i;
        int fl = fcntl(fd, F_GETFD);

        if (fl < 0 || (!(fl & FD_CLOEXEC) && fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0))
            return -errno;
        out[i].fd = fd;
        if ((rc = listen_name(names, i, out[i].name)) < 0)
            return rc;
    }
    return (int)n;
}

/*
 * Follows sd_listen_fds(3) with unset_environment=1: the three variables
 * are removed whatever the outcome, including when LISTEN_PID names another
 * process. Such variables were meant for someone else (a parent that was
 * activated and forgot to unset them); they are never going to become ours,
 * and keeping them would only pass the confusion on to our children. Extra
 * names beyond LISTEN_FDS are ignored, where sd_listen_fds_with_names(3)
 * would refuse them; fewer names leave "" (served as chat by the caller).
 */
int
sysd_listen_fds(struct sysd_listen *out, size_t max)
{
    int rc = listen_fds_parse(out, max);

    listen_env_clear();
    return rc;
}

/*
 * NOTIFY_SOCKET is either a filesystem path or, with a leading '@', a name
 * in Linux's abstract namespace: there sun_path[0] is NUL and the name is
 * exactly the following addrlen - offsetof(sun_path) - 1 bytes, with no
 * terminating NUL, so the length must not count one. Other forms systemd
 * knows (vsock:) are refused as -EINVAL; we only speak AF_UNIX.
 */
static int
notify_addr(const char *e, struct sockaddr_un *sun, socklen_t *len)
{
    size_t n = strlen(e);

    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    if (e[0] == '@') {
        if (n < 2 || n > sizeof sun->sun_path)
            return -EINVAL;
        memcpy(sun->sun_path + 1, e + 1, n - 1);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        return 0;
    }
    if (e[0] != '/' || n >= sizeof sun->sun_path)
        return -EINVAL;
    memcpy(sun->sun_path, e, n);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

int
sysd_notify_open(struct sysd_notify *n)
{
    const char *e = getenv("NOTIFY_SOCKET");
    int rc;

    memset(n, 0, sizeof *n);
    n->fd = -1;
    if (!e)
        return 0;
    if ((rc = notify_addr(e, &n->addr, &n->addrlen)) < 0)
        return rc;
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (n->fd < 0)
        return -errno;
    return 0;
}

/* MSG_DONTWAIT on top of the non-blocking socket: a service manager that is
 * not draining its queue must cost us a lost status line, never a stall. */
int
sysd_notify_send(const struct sysd_notify *n, const char *msg)
{
    if (!n || n->fd < 0)
        return 0;
    if (sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT,
               (const struct sockaddr *)&n->addr, n->addrlen) < 0)
        return -errno;
    return 0;
}

void
sysd_notify_close(struct sysd_notify *n)
{
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
}

/* As sd_watchdog_enabled(3) with unset_environment=0: the variables stay,
 * so asking twice gives the same answer. A malformed value means "off". */
uint64_t
sysd_watchdog_usec(void)
{
    const char *pid = getenv("WATCHDOG_PID");
    uint64_t usec;

    if (!parse_u64(getenv("WATCHDOG_USEC"), &usec) || usec == 0)
        return 0;
    if (pid && pid_is_ours(pid) != 1)
        return 0;
    return usec;
}
