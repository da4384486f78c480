/*
 * harness: the integration tests' side of the systemd contract (SPEC §3).
 * It plays the service manager: binds the listeners, hands them to the
 * daemon from fd 3 with LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID, owns the
 * NOTIFY_SOCKET datagram socket, and waits for READY=1 before a test talks
 * to the daemon. It also plays the client: loopback connections whose every
 * read and write polls against a deadline, so a hung daemon fails a test
 * instead of hanging the suite. Failures are cmocka failures; nothing here
 * knows what the tests check.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>

#include <cmocka.h>

#define H_NOTE_MAX 4096

bool
h_under_valgrind(void)
{
    const char *v = getenv("ECHOCHAT_VALGRIND");

    return v != NULL && strcmp(v, "1") == 0;
}

long
h_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
h_left_ms(long deadline)
{
    long n = deadline - h_now_ms();

    return n > 0 ? (int)n : 0;
}

/* A daemon's wait status as the exit code the tests compare. */
static int
exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

const char *
h_daemon_path(void)
{
    const char *p = getenv("ECHOCHATD");

    return p != NULL && *p != '\0' ? p : "build/echochatd";
}

void
h_init(struct h_daemon *d)
{
    memset(d, 0, sizeof(*d));
    d->pid = -1;
    d->notify_fd = -1;
    d->status = -1;
}

/* Keep every datagram; when the table is full the oldest goes, since tests
 * look for recent events (STOPPING=1) more than for early ones. */
static void
store_note(struct h_daemon *d, const char *msg)
{
    char *copy = strdup(msg);

    assert_non_null(copy);
    if (d->nnotes == H_MAX_NOTIFY) {
        free(d->notes[0]);
        memmove(d->notes, d->notes + 1, (H_MAX_NOTIFY - 1) * sizeof(d->notes[0]));
        d->nnotes--;
    }
    d->notes[d->nnotes++] = copy;
}

/* Drain the notify socket without blocking. Returns the number received. */
static int
pump_notes(struct h_daemon *d)
{
    char buf[H_NOTE_MAX + 1];
    int got = 0;

    if (d->notify_fd < 0)
        return 0;
    for (;;) {
        ssize_t n = recv(d->notify_fd, buf, H_NOTE_MAX, MSG_DONTWAIT);

        if (n < 0)
            return got;
        buf[n] = '\0';
        store_note(d, buf);
        got++;
    }
}

/* Wait up to ms for a datagram (or just sleep ms when there is no socket),
 * then drain what came. Sleeping on the notify socket rather than a plain
 * timer means notifications are collected as soon as they arrive. */
static void
wait_notes(struct h_daemon *d, int ms)
{
    struct pollfd p = { .fd = d->notify_fd, .events = POLLIN };

    poll(&p, d->notify_fd >= 0 ? 1 : 0, ms);
    pump_notes(d);
}

static const char *
find_note(const struct h_daemon *d, const char *needle)
{
    for (size_t i = 0; i < d->nnotes; i++)
        if (strstr(d->notes[i], needle) != NULL)
            return d->notes[i];
    return NULL;
}

/* Reap the daemon if it has exited. True once it is gone. */
static bool
reap(struct h_daemon *d)
{
    int st;

    if (d->pid <= 0 || d->status != -1)
        return true;
    if (waitpid(d->pid, &st, WNOHANG) != d->pid)
        return false;
    d->status = st;
    return true;
}

void
h_dump_log(const struct h_daemon *d)
{
    char buf[4096];
    size_t n;
    FILE *f;

    if (d->log_path[0] == '\0' || (f = fopen(d->log_path, "r")) == NULL)
        return;
    fprintf(stderr, "---- %s (pid %d) ----\n", d->log_path, (int)d->pid);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, stderr);
    fprintf(stderr, "---- end of log ----\n");
    fclose(f);
}

/* The temp directory holding the notify socket and the log. */
static void
h_dir(const struct h_daemon *d, char *dir, size_t cap)
{
    char *slash;

    snprintf(dir, cap, "%s", d->log_path);
    if ((slash = strrchr(dir, '/')) != NULL)
        *slash = '\0';
}

/* Parent side of the set-up: the temp directory, the notify socket bound in
 * it and the log file the child will inherit as stderr. */
static int
prepare_files(struct h_daemon *d)
{
    char dir[] = "/tmp/echochat-itest-XXXXXX";
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    assert_non_null(mkdtemp(dir));
    snprintf(d->notify_path, sizeof(d->notify_path), "%s/notify", dir);
    snprintf(d->log_path, sizeof(d->log_path), "%s/daemon.log", dir);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->notify_path);
    d->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(d->notify_fd >= 0);
    assert_int_equal(bind(d->notify_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    fd = open(d->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    return fd;
}

int
h_listen(int port, int *bound)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    socklen_t len = sizeof(sa);
    int one = 1;
    int fd;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        fail_msg("bind 127.0.0.1:%d: %s", port, strerror(errno));
    assert_int_equal(listen(fd, 1024), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    if (bound != NULL)
        *bound = ntohs(sa.sin_port);
    return fd;
}

int
h_free_port(void)
{
    int port;
    int fd = h_listen(0, &port);

    close(fd);
    return port;
}

/* Move fds[0..n) to 3..3+n. Everything is first lifted above 3+n so that a
 * dup2 onto 3+i never clobbers a listener still waiting for its turn. */
static void
child_place_listeners(const int *fds, size_t n)
{
    int tmp[H_MAX_LISTEN];

    for (size_t i = 0; i < n; i++)
        if ((tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3 + (int)n)) < 0)
            _exit(126);
    for (size_t i = 0; i < n; i++) {
        /* dup2 leaves FD_CLOEXEC clear on the new descriptor */
        if (dup2(tmp[i], 3 + (int)i) < 0)
            _exit(126);
        close(tmp[i]);
    }
    /* like a service manager, hand over nothing else: descriptors our own
     * parent leaked to us would skew the daemon's fd counts and limits */
    close_range(3 + (unsigned)n, ~0U, 0);
}

/* stdin and stdout from /dev/null, stderr to the log. Done before the
 * listeners move, while fds 0..2 cannot collide with anything we keep. */
static void
child_stdio(int logfd)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);

    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(logfd, 2) < 0)
        _exit(126);
}

static void
child_env(const struct h_daemon *d, const char *const *names, bool set_env)
{
    char buf[512] = "";

    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    /* our log file is not the journal: keep the plain timestamped format */
    unsetenv("JOURNAL_STREAM");
    setenv("NOTIFY_SOCKET", d->notify_path, 1);
    if (!set_env)
        return;
    for (size_t i = 0; i < d->nlisten; i++) {
        if (i > 0)
            strcat(buf, ":");
        strncat(buf, names[i], sizeof(buf) - strlen(buf) - 2);
    }
    setenv("LISTEN_FDNAMES", buf, 1);
    snprintf(buf, sizeof(buf), "%zu", d->nlisten);
    setenv("LISTEN_FDS", buf, 1);
    snprintf(buf, sizeof(buf), "%d", (int)getpid());
    setenv("LISTEN_PID", buf, 1);
}

/* Build argv for execv: the binary, then args. execv wants mutable strings,
 * so the child copies them (it is about to be replaced anyway). */
static void
child_exec(const char *const *args)
{
    char *argv[64];
    size_t n = 0;
    sigset_t none;

    argv[n++] = strdup(h_daemon_path());
    for (size_t i = 0; args != NULL && args[i] != NULL && n < 63; i++)
        argv[n++] = strdup(args[i]);
    argv[n] = NULL;
    /* an ignored SIGPIPE would survive exec: let the daemon show it copes */
    signal(SIGPIPE, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(argv[0], argv);
    dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Wait for READY=1 while watching for an early exit. Returns 0 or -1. */
static int
wait_ready(struct h_daemon *d)
{
    long deadline = h_now_ms() + H_READY_MS;

    while (h_now_ms() < deadline) {
        wait_notes(d, 20);
        if (find_note(d, "READY=1") != NULL)
            return 0;
        if (reap(d) && d->status != -1) {
            pump_notes(d);
            return find_note(d, "READY=1") != NULL ? 0 : -1;
        }
    }
    h_dump_log(d);
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &d->status, 0);
    fail_msg("daemon pid %d sent no READY=1 within %d ms", (int)d->pid, H_READY_MS);
    return -1;
}

int
h_start_ex(struct h_daemon *d, const char *const *names, const char *const *args, bool set_env,
           long rlimit_nofile)
{
    int lfd[H_MAX_LISTEN];
    int logfd;

    signal(SIGPIPE, SIG_IGN);
    h_init(d);
    for (size_t i = 0; set_env && names != NULL && names[i] != NULL; i++) {
        assert_true(i < H_MAX_LISTEN);
        lfd[i] = h_listen(0, &d->port[i]);
        d->nlisten = i + 1;
    }
    logfd = prepare_files(d);
    d->pid = fork();
    assert_true(d->pid >= 0);
    if (d->pid == 0) {
        struct rlimit rl = { (rlim_t)rlimit_nofile, (rlim_t)rlimit_nofile };

        child_stdio(logfd);
        child_place_listeners(lfd, d->nlisten);
        child_env(d, names, set_env);
        if (rlimit_nofile > 0 && setrlimit(RLIMIT_NOFILE, &rl) < 0)
            _exit(126);
        child_exec(args);
    }
    /* the daemon holds the listeners now: if we kept them, connections
     * would still queue after the daemon stopped accepting */
    for (size_t i = 0; i < d->nlisten; i++)
        close(lfd[i]);
    close(logfd);
    return wait_ready(d);
}

void
h_start(struct h_daemon *d, const char *const *names, const char *const *args)
{
    if (h_start_ex(d, names, args, true, 0) == 0)
        return;
    h_dump_log(d);
    fail_msg("daemon exited (status %d) before READY=1", exit_code(d->status));
}

void
h_signal(struct h_daemon *d, int sig)
{
    assert_true(d->pid > 0);
    assert_int_equal(kill(d->pid, sig), 0);
}

int
h_wait_exit(struct h_daemon *d, int timeout_ms)
{
    long deadline = h_now_ms() + timeout_ms;

    for (;;) {
        if (reap(d))
            break;
        if (h_now_ms() >= deadline)
            return -1;
        /* notifications sent during shutdown (STOPPING=1) are kept too */
        wait_notes(d, h_left_ms(deadline) < 5 ? h_left_ms(deadline) : 5);
    }
    pump_notes(d);
    return exit_code(d->status);
}

int
h_stop(struct h_daemon *d, int timeout_ms)
{
    int rc;

    assert_true(d->pid > 0);
    if (d->status == -1)
        kill(d->pid, SIGTERM);
    if ((rc = h_wait_exit(d, timeout_ms)) >= 0)
        return rc;
    h_dump_log(d);
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &d->status, 0);
    fail_msg("daemon pid %d did not exit within %d ms of SIGTERM", (int)d->pid, timeout_ms);
    return -1;
}

int
h_stop_clients(struct h_daemon *d, int *fds, size_t n, int timeout_ms)
{
    long deadline = h_now_ms() + timeout_ms;
    int rc;

    h_signal(d, SIGTERM);
    for (size_t i = 0; i < n; i++) {
        if (fds[i] < 0)
            continue;
        if ((rc = h_wait_closed(fds[i], h_left_ms(deadline), NULL)) != 0)
            fail_msg("client %zu (fd %d): no EOF after SIGTERM: %s", i, fds[i], strerror(-rc));
        close(fds[i]);
        fds[i] = -1;
    }
    if ((rc = h_wait_exit(d, h_left_ms(deadline))) >= 0)
        return rc;
    h_dump_log(d);
    fail_msg("daemon pid %d did not exit within %d ms of SIGTERM", (int)d->pid, timeout_ms);
    return -1;
}

void
h_cleanup(struct h_daemon *d)
{
    char dir[sizeof(d->log_path)];

    if (d->pid > 0 && !reap(d)) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, &d->status, 0);
    }
    if (d->notify_path[0] != '\0' && d->notify_fd >= 0)
        close(d->notify_fd);
    d->notify_fd = -1;
    for (size_t i = 0; i < d->nnotes; i++)
        free(d->notes[i]);
    d->nnotes = 0;
    if (d->log_path[0] == '\0')
        return;
    if (getenv("H_SHOW_LOG") != NULL)
        h_dump_log(d);
    h_dir(d, dir, sizeof(dir));
    if (getenv("H_KEEP_LOG") != NULL) {
        fprintf(stderr, "harness: kept %s\n", dir);
    } else {
        unlink(d->notify_path);
        unlink(d->log_path);
        rmdir(dir);
    }
    d->log_path[0] = '\0';
    d->notify_path[0] = '\0';
}

const char *
h_wait_notify(struct h_daemon *d, const char *needle, int timeout_ms)
{
    long deadline = h_now_ms() + timeout_ms;
    const char *hit;

    pump_notes(d);
    while ((hit = find_note(d, needle)) == NULL && h_now_ms() < deadline)
        wait_notes(d, h_left_ms(deadline));
    return hit;
}

int
h_count_log(struct h_daemon *d, const char *needle)
{
    char *line = NULL;
    size_t cap = 0;
    int count = 0;
    FILE *f = fopen(d->log_path, "r");

    if (f == NULL)
        return 0;
    while (getline(&line, &cap, f) >= 0)
        if (strstr(line, needle) != NULL)
            count++;
    free(line);
    fclose(f);
    return count;
}

long
h_log_number(struct h_daemon *d, const char *needle, const char *key)
{
    char *line = NULL;
    size_t cap = 0;
    const char *p = NULL;
    long v;
    FILE *f = fopen(d->log_path, "r");

    assert_non_null(f);
    while (p == NULL && getline(&line, &cap, f) >= 0)
        if (strstr(line, needle) != NULL && (p = strstr(line, key)) == NULL)
            fail_msg("no \"%s\" in the log line: %s", key, line);
    fclose(f);
    if (p == NULL)
        fail_msg("no log line contains \"%s\"", needle);
    v = strtol(p + strlen(key), NULL, 10);
    free(line);
    return v;
}

/* A log file has nothing to poll() on, so re-read it every few ms until the
 * deadline. The daemon writes whole lines, so a partial read is harmless. */
bool
h_wait_log(struct h_daemon *d, const char *needle, int timeout_ms)
{
    long deadline = h_now_ms() + timeout_ms;

    for (;;) {
        if (h_count_log(d, needle) > 0)
            return true;
        if (h_now_ms() >= deadline)
            return false;
        wait_notes(d, h_left_ms(deadline) < 10 ? h_left_ms(deadline) : 10);
    }
}

/* Read a whole small /proc file into buf, NUL-terminated. */
static ssize_t
read_proc(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t len = 0;
    ssize_t n;

    if (fd < 0)
        return -errno;
    while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

long
h_rss_kib(pid_t pid)
{
    char path[64];
    char buf[8192];
    const char *p;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (read_proc(path, buf, sizeof(buf)) < 0 || (p = strstr(buf, "\nVmRSS:")) == NULL)
        fail_msg("no VmRSS for pid %d", (int)pid);
    return strtol(p + strlen("\nVmRSS:"), NULL, 10);
}

int
h_fd_count(pid_t pid)
{
    char path[64];
    struct dirent *e;
    int count = 0;
    DIR *dir;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    if ((dir = opendir(path)) == NULL)
        fail_msg("opendir %s: %s", path, strerror(errno));
    while ((e = readdir(dir)) != NULL)
        if (e->d_name[0] != '.')
            count++;
    closedir(dir);
    return count;
}

/* utime and stime are fields 14 and 15 of /proc/PID/stat; the command name
 * (field 2) may hold spaces, so count from the last ')'. */
long
h_cpu_ms(pid_t pid)
{
    char path[64];
    char buf[2048];
    unsigned long ut, st;
    const char *p;
    long hz = sysconf(_SC_CLK_TCK);

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (read_proc(path, buf, sizeof(buf)) < 0 || (p = strrchr(buf, ')')) == NULL)
        fail_msg("cannot read %s", path);
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        fail_msg("cannot parse %s", path);
    return (long)((ut + st) * 1000 / (unsigned long)hz);
}

/* /proc/net/tcp lines: "sl local_address rem_address st ...", the address
 * as hex IP:PORT and st 06 for TIME_WAIT. */
static int
count_tw(const char *path, int port)
{
    char line[512];
    int count = 0;
    FILE *f = fopen(path, "r");

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        char local[64];
        unsigned st;
        const char *colon;

        if (sscanf(line, " %*d: %63s %*s %x", local, &st) != 2)
            continue;
        if ((colon = strrchr(local, ':')) == NULL)
            continue;
        if (st == 0x06 && strtol(colon + 1, NULL, 16) == port)
            count++;
    }
    fclose(f);
    return count;
}

int
h_time_wait_count(int port)
{
    return count_tw("/proc/net/tcp", port) + count_tw("/proc/net/tcp6", port);
}

/* Drain a pipe into out[cap) (NUL-terminated), discarding the excess. */
static bool
drain_pipe(int fd, char *out, size_t cap, size_t *len)
{
    char junk[4096];
    char *dst = junk;
    size_t room = sizeof(junk);
    ssize_t n;

    if (out != NULL && *len + 1 < cap) {
        dst = out + *len;
        room = cap - 1 - *len;
    }
    n = read(fd, dst, room);
    if (n <= 0)
        return false;
    if (dst != junk) {
        *len += (size_t)n;
        out[*len] = '\0';
    }
    return true;
}

static void
run_child(const char *const *args, int out, int err)
{
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

    if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        _exit(126);
    close_range(3, ~0U, 0);
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
    unsetenv("NOTIFY_SOCKET");
    unsetenv("JOURNAL_STREAM");
    child_exec(args);
}

int
h_run(const char *const *args, char *out, size_t outcap, char *err, size_t errcap, int timeout_ms)
{
    int po[2], pe[2], st;
    size_t olen = 0, elen = 0;
    bool open_o = true, open_e = true;
    long deadline = h_now_ms() + timeout_ms;
    pid_t pid;

    if (out != NULL && outcap > 0)
        out[0] = '\0';
    if (err != NULL && errcap > 0)
        err[0] = '\0';
    assert_int_equal(pipe2(po, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pe, O_CLOEXEC), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        run_child(args, po[1], pe[1]);
    close(po[1]);
    close(pe[1]);
    while ((open_o || open_e) && h_now_ms() < deadline) {
        struct pollfd p[2] = { { .fd = open_o ? po[0] : -1, .events = POLLIN },
                               { .fd = open_e ? pe[0] : -1, .events = POLLIN } };

        if (poll(p, 2, h_left_ms(deadline)) <= 0)
            continue;
        if (p[0].revents != 0)
            open_o = drain_pipe(po[0], out, outcap, &olen);
        if (p[1].revents != 0)
            open_e = drain_pipe(pe[0], err, errcap, &elen);
    }
    close(po[0]);
    close(pe[0]);
    /* both pipes closed: the process is exiting or gone; wait for it */
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (h_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        poll(NULL, 0, 5);
    }
    return exit_code(st);
}

int
h_try_connect(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    struct pollfd p;
    socklen_t len = sizeof(int);
    int fd, err = 0;

    signal(SIGPIPE, SIG_IGN);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    /* non-blocking connect, so a full accept queue costs a deadline, not
     * the kernel's SYN retry schedule */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        err = -errno;
        goto fail;
    }
    p = (struct pollfd){ .fd = fd, .events = POLLOUT };
    if (poll(&p, 1, H_TIMEOUT_MS) <= 0) {
        err = -ETIMEDOUT;
        goto fail;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
        err = -(err != 0 ? err : errno);
        goto fail;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
fail:
    close(fd);
    return err;
}

int
h_connect(int port)
{
    int fd = h_try_connect(port);

    if (fd < 0)
        fail_msg("connect 127.0.0.1:%d: %s", port, strerror(-fd));
    return fd;
}

void
h_write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    long deadline = h_now_ms() + H_TIMEOUT_MS;

    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        struct pollfd pf = { .fd = fd, .events = POLLOUT };

        if (w > 0) {
            s += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            fail_msg("write fd %d: %s", fd, strerror(errno));
        if (h_now_ms() >= deadline)
            fail_msg("write fd %d: peer not reading, %zu bytes left", fd, n);
        poll(&pf, 1, h_left_ms(deadline));
    }
}

/* One poll-then-recv step. Returns bytes read, 0 on EOF, -ETIMEDOUT past
 * the deadline, -errno on error. */
static ssize_t
recv_by(int fd, void *p, size_t n, long deadline)
{
    for (;;) {
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        ssize_t r = recv(fd, p, n, MSG_DONTWAIT);

        if (r >= 0)
            return r;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        if (h_now_ms() >= deadline)
            return -ETIMEDOUT;
        poll(&pf, 1, h_left_ms(deadline));
    }
}

int
h_read_exact(int fd, void *p, size_t n, int timeout_ms)
{
    char *s = p;
    long deadline = h_now_ms() + timeout_ms;

    while (n > 0) {
        ssize_t r = recv_by(fd, s, n, deadline);

        if (r <= 0)
            return -1;
        s += r;
        n -= (size_t)r;
    }
    return 0;
}

int
h_wait_closed(int fd, int timeout_ms, size_t *junk)
{
    char buf[4096];
    long deadline = h_now_ms() + timeout_ms;

    for (;;) {
        ssize_t r = recv_by(fd, buf, sizeof(buf), deadline);

        if (r <= 0)
            return (int)r;
        if (junk != NULL)
            *junk += (size_t)r;
    }
}

bool
h_expect_eof(int fd, int timeout_ms)
{
    size_t junk = 0;

    return h_wait_closed(fd, timeout_ms, &junk) == 0 && junk == 0;
}

struct h_conn *
h_conn_open(int port)
{
    struct h_conn *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->fd = h_connect(port);
    return c;
}

void
h_conn_close(struct h_conn *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    free(c);
}

void
h_conn_send(struct h_conn *c, const char *s)
{
    h_write_all(c->fd, s, strlen(s));
}

/* Hand out the first line in c->buf, CR LF (or LF) removed. A buffer full
 * of one line without LF is handed out whole rather than wedging. */
static int
take_line(struct h_conn *c, char *line, size_t cap, bool force)
{
    char *nl = memchr(c->buf, '\n', c->len);
    size_t used, len;

    if (nl == NULL && !force)
        return -1;
    used = nl != NULL ? (size_t)(nl - c->buf) + 1 : c->len;
    len = nl != NULL ? used - 1 : used;
    if (len > 0 && c->buf[len - 1] == '\r')
        len--;
    if (line != NULL && cap > 0) {
        size_t k = len < cap - 1 ? len : cap - 1;

        memcpy(line, c->buf, k);
        line[k] = '\0';
    }
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
    return (int)len;
}

int
h_conn_line(struct h_conn *c, char *line, size_t cap, int timeout_ms)
{
    long deadline = h_now_ms() + timeout_ms;

    for (;;) {
        int n = take_line(c, line, cap, c->len == sizeof(c->buf));
        ssize_t r;

        if (n >= 0)
            return n;
        r = recv_by(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, deadline);
        if (r == -ETIMEDOUT)
            return -1;
        if (r <= 0)
            return -2;
        c->len += (size_t)r;
    }
}

bool
h_conn_expect(struct h_conn *c, const char *needle, char *line, size_t cap, int timeout_ms)
{
    char buf[sizeof(c->buf)];
    long deadline = h_now_ms() + timeout_ms;

    for (;;) {
        int n = h_conn_line(c, buf, sizeof(buf), h_left_ms(deadline));

        if (n < 0)
            return false;
        if (strstr(buf, needle) == NULL)
            continue;
        if (line != NULL && cap > 0)
            snprintf(line, cap, "%s", buf);
        return true;
    }
}

bool
h_conn_quiet(struct h_conn *c, int timeout_ms)
{
    return h_conn_line(c, NULL, 0, timeout_ms) == -1;
}

void
h_conn_drain(struct h_conn *c, int quiet_ms)
{
    long deadline = h_now_ms() + 10L * H_TIMEOUT_MS;

    while (h_now_ms() < deadline && h_conn_line(c, NULL, 0, quiet_ms) >= 0)
        ;
}
