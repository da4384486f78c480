/*
 * Integration tests for the systemd side of the daemon (SPEC §3, issue 4)
 * against the real binary: socket activation (by setting the variables
 * ourselves and through systemd-socket-activate), refusal of a bad inherited
 * fd, the notify protocol (READY, STATUS, STOPPING, WATCHDOG; path and
 * abstract sockets), the journald line prefix, --daemonize with --pid-file,
 * and raising RLIMIT_NOFILE. The harness's h_start() covers the common
 * case; the others need control over fd 3, the environment and the limits
 * that h_start_ex() does not give, so this file has its own launcher,
 * spawn(), which fills a struct h_daemon so that the harness's waits,
 * h_stop() and h_cleanup() work on what it starts. Every wait has a
 * deadline; nothing sleeps and hopes.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define NOTE_MAX     4096
#define LOG_LINE_CAP 4096

struct fixture {
    struct h_daemon d, d2;
    pid_t daemon_pid; /* a --daemonize'd daemon: not our child */
    char dir[64];     /* scratch directory for pid files */
    char pid_path[128];
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    h_init(&f->d);
    h_init(&f->d2);
    f->daemon_pid = -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/echochat-systest-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->pid_path, sizeof(f->pid_path), "%s/echochatd.pid", f->dir);
    *state = f;
    return 0;
}

/*
 * Wait for a process that is not our child (the --daemonize'd daemon) to
 * exit. A pidfd becomes readable when it exits, whoever reaps it, so this
 * waits on an event rather than polling kill(pid, 0).
 */
static bool
wait_gone(pid_t pid, int timeout_ms)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    struct pollfd p;
    int rc;

    if (fd < 0)
        return errno == ESRCH;
    p = (struct pollfd){ .fd = fd, .events = POLLIN };
    rc = poll(&p, 1, timeout_ms);
    close(fd);
    return rc == 1;
}

/* The pid in a pid file, or -1 when it cannot be read. */
static pid_t
pid_file_pid(const char *path)
{
    char buf[32];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return atoi(buf) > 0 ? (pid_t)atoi(buf) : -1;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    /* a test that failed before it learnt the daemon's pid: the pid file
     * in our private directory can still name it */
    if (f->daemon_pid <= 0)
        f->daemon_pid = pid_file_pid(f->pid_path);
    if (f->daemon_pid > 0 && kill(f->daemon_pid, SIGKILL) == 0)
        wait_gone(f->daemon_pid, H_TIMEOUT_MS);
    h_cleanup(&f->d);
    h_cleanup(&f->d2);
    unlink(f->pid_path);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- our own launcher ---------------------------------------------------- */

enum journal { JOURNAL_UNSET, JOURNAL_MATCH, JOURNAL_OTHER };

struct spawn {
    const char *exe;         /* NULL: the daemon; else a program found in PATH */
    const char *const *args; /* after argv[0], NULL-terminated (may be NULL) */
    const char *const *env;  /* "NAME=VALUE"; VALUE "$PID" is the child's pid,
                                "$PPID" the test's */
    const int *fds;          /* moved to fd 3, 4, ... */
    size_t nfds;
    const char *abstract;          /* NOTIFY_SOCKET=@abstract instead of a path */
    bool no_notify;                /* leave NOTIFY_SOCKET unset */
    enum journal journal;          /* JOURNAL_STREAM vs. the log file's dev:ino */
    long nofile_soft, nofile_hard; /* RLIMIT_NOFILE; 0: inherit */
};

/* The temp directory, the notify socket (bound to a path, or to an abstract
 * name of exactly strlen(name) bytes) and the log file, as the harness lays
 * them out, so h_cleanup() removes them. Returns the log's fd. */
static int
spawn_files(struct h_daemon *d, const struct spawn *sp)
{
    char dir[] = "/tmp/echochat-systest-XXXXXX";
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    socklen_t len = sizeof(sa);
    int fd;

    h_init(d);
    assert_non_null(mkdtemp(dir));
    snprintf(d->notify_path, sizeof(d->notify_path), "%s/notify", dir);
    snprintf(d->log_path, sizeof(d->log_path), "%s/daemon.log", dir);
    if (sp->abstract != NULL) {
        size_t n = strlen(sp->abstract);

        assert_true(n + 1 < sizeof(sa.sun_path));
        memcpy(sa.sun_path + 1, sp->abstract, n);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    } else {
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->notify_path);
    }
    d->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(d->notify_fd >= 0);
    assert_int_equal(bind(d->notify_fd, (struct sockaddr *)&sa, len), 0);
    fd = open(d->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    return fd;
}

/* Child side: fds[] to 3.., lifted above 3+n first so that no dup2 clobbers
 * one still waiting for its turn (dup2 clears FD_CLOEXEC on the copy). */
static void
child_fds(const struct spawn *sp, int logfd)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    int tmp[H_MAX_LISTEN];

    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(logfd, 2) < 0)
        _exit(126);
    if (sp->nfds > H_MAX_LISTEN)
        _exit(126);
    for (size_t i = 0; i < sp->nfds; i++)
        if ((tmp[i] = fcntl(sp->fds[i], F_DUPFD_CLOEXEC, 3 + (int)sp->nfds)) < 0)
            _exit(126);
    for (size_t i = 0; i < sp->nfds; i++)
        if (dup2(tmp[i], 3 + (int)i) < 0)
            _exit(126);
}

static void
child_env(const struct h_daemon *d, const struct spawn *sp)
{
    static const char *const clear[] = { "LISTEN_PID",    "LISTEN_FDS",   "LISTEN_FDNAMES",
                                         "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM",
                                         "NOTIFY_SOCKET" };
    char buf[512];
    struct stat st;

    for (size_t i = 0; i < sizeof(clear) / sizeof(clear[0]); i++)
        unsetenv(clear[i]);
    if (sp->abstract != NULL)
        snprintf(buf, sizeof(buf), "@%s", sp->abstract);
    else
        snprintf(buf, sizeof(buf), "%s", d->notify_path);
    if (!sp->no_notify)
        setenv("NOTIFY_SOCKET", buf, 1);
    if (sp->journal != JOURNAL_UNSET && fstat(2, &st) == 0) {
        /* systemd's form: st_dev and st_ino in decimal */
        snprintf(buf, sizeof(buf), "%llu:%llu", (unsigned long long)st.st_dev,
                 (unsigned long long)st.st_ino + (sp->journal == JOURNAL_OTHER ? 1 : 0));
        setenv("JOURNAL_STREAM", buf, 1);
    }
    for (size_t i = 0; sp->env != NULL && sp->env[i] != NULL; i++) {
        const char *eq = strchr(sp->env[i], '=');
        char name[64];

        if (eq == NULL || (size_t)(eq - sp->env[i]) >= sizeof(name))
            _exit(126);
        snprintf(name, sizeof(name), "%.*s", (int)(eq - sp->env[i]), sp->env[i]);
        if (strcmp(eq + 1, "$PID") == 0)
            snprintf(buf, sizeof(buf), "%d", (int)getpid());
        else if (strcmp(eq + 1, "$PPID") == 0)
            snprintf(buf, sizeof(buf), "%d", (int)getppid());
        else
            snprintf(buf, sizeof(buf), "%s", eq + 1);
        setenv(name, buf, 1);
    }
}

static void
child_exec(const struct spawn *sp)
{
    struct rlimit rl = { (rlim_t)sp->nofile_soft, (rlim_t)sp->nofile_hard };
    char *argv[64];
    size_t n = 0;
    sigset_t none;

    if (sp->nofile_hard > 0 && setrlimit(RLIMIT_NOFILE, &rl) < 0)
        _exit(126);
    argv[n++] = strdup(sp->exe != NULL ? sp->exe : h_daemon_path());
    for (size_t i = 0; sp->args != NULL && sp->args[i] != NULL && n < 63; i++)
        argv[n++] = strdup(sp->args[i]);
    argv[n] = NULL;
    signal(SIGPIPE, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (sp->exe != NULL)
        execvp(argv[0], argv);
    else
        execv(argv[0], argv);
    dprintf(2, "systest: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Fork and exec sp with logfd (from spawn_files) as its stderr, without
 * waiting for anything; d->pid is the child. */
static void
spawn_run(struct h_daemon *d, const struct spawn *sp, int logfd)
{
    signal(SIGPIPE, SIG_IGN);
    d->pid = fork();
    assert_true(d->pid >= 0);
    if (d->pid == 0) {
        child_fds(sp, logfd);
        child_env(d, sp);
        child_exec(sp);
    }
    close(logfd);
}

static void
spawn(struct h_daemon *d, const struct spawn *sp)
{
    spawn_run(d, sp, spawn_files(d, sp));
}

/* READY=1 within the deadline: 0; the process exited first: -1 (its exit
 * status is then in d->status). */
static int
wait_ready(struct h_daemon *d, int timeout_ms)
{
    long deadline = h_now_ms() + timeout_ms;

    while (h_wait_notify(d, "READY=1", 20) == NULL) {
        if (h_wait_exit(d, 0) >= 0)
            return h_wait_notify(d, "READY=1", 0) != NULL ? 0 : -1;
        if (h_now_ms() >= deadline) {
            h_dump_log(d);
            fail_msg("pid %d sent no READY=1 within %d ms", (int)d->pid, timeout_ms);
        }
    }
    return 0;
}

static void
spawn_ready(struct h_daemon *d, const struct spawn *sp)
{
    spawn(d, sp);
    if (wait_ready(d, H_READY_MS) < 0) {
        h_dump_log(d);
        fail_msg("daemon exited (status %d) before READY=1", h_wait_exit(d, 0));
    }
}

/* The next datagram on our notify socket, read directly so that the caller
 * sees each one once, in order. Returns its length, -1 past the deadline. */
static ssize_t
note_next(struct h_daemon *d, char *buf, size_t cap, long deadline)
{
    for (;;) {
        struct pollfd p = { .fd = d->notify_fd, .events = POLLIN };
        ssize_t n = recv(d->notify_fd, buf, cap - 1, MSG_DONTWAIT);

        if (n >= 0) {
            buf[n] = '\0';
            return n;
        }
        if (errno != EAGAIN && errno != EINTR)
            fail_msg("notify socket: %s", strerror(errno));
        if (h_now_ms() >= deadline)
            return -1;
        poll(&p, 1, h_left_ms(deadline));
    }
}

/* Read datagrams until one contains needle; false on timeout. */
static bool
note_expect(struct h_daemon *d, const char *needle, int timeout_ms)
{
    long deadline = h_now_ms() + timeout_ms;
    char buf[NOTE_MAX];

    while (note_next(d, buf, sizeof(buf), deadline) >= 0)
        if (strstr(buf, needle) != NULL)
            return true;
    return false;
}

/* How many datagrams containing needle arrive within ms; the last one's
 * text goes to last[cap] (left alone when none). */
static int
note_count(struct h_daemon *d, const char *needle, int ms, char *last, size_t cap)
{
    long deadline = h_now_ms() + ms;
    char buf[NOTE_MAX];
    int count = 0;

    while (note_next(d, buf, sizeof(buf), deadline) >= 0) {
        if (strstr(buf, needle) == NULL)
            continue;
        count++;
        if (last != NULL)
            snprintf(last, cap, "%s", buf);
    }
    return count;
}

/* ---- reading the daemon's log and /proc --------------------------------- */

/* The first log line containing a and b (b may be NULL), into line[cap]. */
static bool
log_find(const struct h_daemon *d, const char *a, const char *b, char *line, size_t cap)
{
    char buf[LOG_LINE_CAP];
    bool found = false;
    FILE *fp = fopen(d->log_path, "r");

    assert_non_null(fp);
    while (!found && fgets(buf, sizeof(buf), fp) != NULL) {
        if (strstr(buf, a) == NULL || (b != NULL && strstr(buf, b) == NULL))
            continue;
        buf[strcspn(buf, "\n")] = '\0';
        if (line != NULL)
            snprintf(line, cap, "%s", buf);
        found = true;
    }
    fclose(fp);
    return found;
}

/* The port of the daemon's "listening on 127.0.0.1:PORT (proto)" line. */
static int
log_port(const struct h_daemon *d, const char *proto)
{
    char tag[16], line[LOG_LINE_CAP];
    const char *p;

    snprintf(tag, sizeof(tag), "(%s)", proto);
    if (!log_find(d, "listening on 127.0.0.1:", tag, line, sizeof(line))) {
        h_dump_log(d);
        fail_msg("no \"listening on 127.0.0.1:... %s\" line", tag);
    }
    p = strstr(line, "listening on 127.0.0.1:") + strlen("listening on 127.0.0.1:");
    return atoi(p);
}

/* Field `field` (1-based, as proc(5) numbers them) of /proc/PID/stat. */
static unsigned long long
proc_stat_field(pid_t pid, int field)
{
    char path[64], buf[2048];
    char *p, *save = NULL;
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    assert_non_null(fp = fopen(path, "r"));
    assert_non_null(fgets(buf, sizeof(buf), fp));
    fclose(fp);
    /* the command name (field 2) may hold spaces: count from its ')' */
    assert_non_null(p = strrchr(buf, ')'));
    p = strtok_r(p + 1, " ", &save);
    for (int i = 3; p != NULL && i < field; i++)
        p = strtok_r(NULL, " ", &save);
    assert_non_null(p);
    return strtoull(p, NULL, 10);
}

/*
 * Is NAME= in the daemon's live environment? /proc/PID/environ cannot tell:
 * it shows the strings the process was started with, and unsetenv() leaves
 * those alone, only removing the pointer from the environ array. That array
 * sits on the stack right after argv, and startstack (stat field 28) is the
 * address of argc, so it can be read through /proc/PID/mem. This holds as
 * long as the daemon never calls setenv()/putenv() (which would move the
 * array to the heap); the callers check a variable that must be present as
 * a control.
 */
static bool
proc_env_live(pid_t pid, const char *name)
{
    char path[64], s[512];
    uintptr_t argc, ptr;
    size_t len = strlen(name);
    off_t at = (off_t)proc_stat_field(pid, 28);
    bool found = false;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        fail_msg("%s: %s (needs ptrace access to our own child)", path, strerror(errno));
    assert_int_equal(pread(fd, &argc, sizeof(argc), at), sizeof(argc));
    assert_true(argc >= 1 && argc < 64);
    at += (off_t)((argc + 2) * sizeof(uintptr_t)); /* argc, argv[], NULL */
    for (int i = 0; i < 4096 && !found; i++, at += (off_t)sizeof(ptr)) {
        ssize_t n;

        assert_int_equal(pread(fd, &ptr, sizeof(ptr), at), sizeof(ptr));
        if (ptr == 0)
            break;
        n = pread(fd, s, sizeof(s) - 1, (off_t)ptr);
        assert_true(n > 0);
        s[n] = '\0';
        found = strncmp(s, name, len) == 0 && s[len] == '=';
    }
    close(fd);
    return found;
}

/* Whether NAME= is among the strings the process was started with. */
static bool
proc_env_initial(pid_t pid, const char *name)
{
    char path[64], buf[16384];
    size_t len = strlen(name);
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    assert_true((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n > 0);
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1)
        if (strncmp(buf + i, name, len) == 0 && buf[i + (ssize_t)len] == '=')
            return true;
    return false;
}

/* "Max open files  SOFT  HARD  files" from /proc/PID/limits. */
static void
proc_nofile(pid_t pid, unsigned long *soft, unsigned long *hard)
{
    char path[64], line[256];
    bool found = false;
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
    assert_non_null(fp = fopen(path, "r"));
    while (!found && fgets(line, sizeof(line), fp) != NULL)
        found = sscanf(line, "Max open files %lu %lu", soft, hard) == 2;
    fclose(fp);
    assert_true(found);
}

/* The inode of the LISTEN-state socket on 127.0.0.1:port, 0 if none. */
static unsigned long
listen_inode(int port)
{
    char line[512];
    unsigned long inode = 0;
    FILE *fp = fopen("/proc/net/tcp", "r");

    assert_non_null(fp);
    while (inode == 0 && fgets(line, sizeof(line), fp) != NULL) {
        unsigned addr, lport, st;
        unsigned long ino;

        if (sscanf(line, " %*d: %8x:%4x %*s %x %*s %*s %*s %*u %*u %lu", &addr, &lport, &st,
                   &ino) != 4)
            continue;
        if ((int)lport == port && st == 0x0A && ntohl(addr) == INADDR_LOOPBACK)
            inode = ino;
    }
    fclose(fp);
    return inode;
}

/* Does pid hold the listening socket of 127.0.0.1:port? */
static bool
pid_listens_on(pid_t pid, int port)
{
    char path[64], want[64], got[64];
    unsigned long inode = listen_inode(port);

    if (inode == 0)
        return false;
    snprintf(want, sizeof(want), "socket:[%lu]", inode);
    for (int fd = 0; fd < 1024; fd++) {
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
        if ((n = readlink(path, got, sizeof(got) - 1)) < 0)
            continue;
        got[n] = '\0';
        if (strcmp(got, want) == 0)
            return true;
    }
    return false;
}

static void
link_is(pid_t pid, const char *what, const char *want)
{
    char path[64], got[256];
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
    assert_true((n = readlink(path, got, sizeof(got) - 1)) > 0);
    got[n] = '\0';
    if (strcmp(got, want) != 0)
        fail_msg("%s is %s, want %s", path, got, want);
}

/* ---- protocol probes ---------------------------------------------------- */

/* The chat port greets with a server line. */
static void
expect_chat(int port)
{
    struct h_conn *c = h_conn_open(port);
    char line[512];

    if (h_conn_line(c, line, sizeof(line), H_TIMEOUT_MS) < 0)
        fail_msg("port %d: no greeting", port);
    if (strncmp(line, "*** ", 4) != 0)
        fail_msg("port %d: greeting is not a server line: \"%s\"", port, line);
    h_conn_close(c);
}

/* The echo port sends every byte value back unchanged, and nothing else. */
static void
expect_echo(int port)
{
    unsigned char out[256], back[256];
    int fd = h_connect(port);

    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (unsigned char)(255 - i);
    h_write_all(fd, out, sizeof(out));
    if (h_read_exact(fd, back, sizeof(back), H_TIMEOUT_MS) < 0)
        fail_msg("port %d: fewer than %zu bytes echoed", port, sizeof(out));
    assert_memory_equal(out, back, sizeof(out));
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    assert_true(h_expect_eof(fd, H_TIMEOUT_MS));
    close(fd);
}

/* ---- socket activation -------------------------------------------------- */

static void
test_systemd_activation_env_two_named_fds_serve_chat_and_echo(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = { "chat", "echo", NULL };

    h_start(&f->d, names, NULL);
    expect_chat(f->d.port[0]);
    expect_echo(f->d.port[1]);
    assert_int_equal(h_stop(&f->d, H_TIMEOUT_MS * 3), 0);
}

/* The full path of program `name` from PATH into out[cap]; false when it
 * is not installed (the test is then skipped, not failed). */
static bool
find_tool(const char *name, char *out, size_t cap)
{
    const char *path = getenv("PATH");
    char dirs[4096], *dir, *save = NULL;

    snprintf(dirs, sizeof(dirs), "%s", path != NULL ? path : "/usr/bin:/bin");
    for (dir = strtok_r(dirs, ":", &save); dir != NULL; dir = strtok_r(NULL, ":", &save)) {
        snprintf(out, cap, "%s/%s", dir, name);
        if (access(out, X_OK) == 0)
            return true;
    }
    return false;
}

/* Wait until pid listens on both ports; false if it exits first or the
 * deadline passes. Watching /proc rather than connecting matters here: a
 * probe connection would itself trigger the activation. */
static bool
wait_listening(struct h_daemon *d, int p1, int p2)
{
    long deadline = h_now_ms() + H_TIMEOUT_MS;

    while (!pid_listens_on(d->pid, p1) || !pid_listens_on(d->pid, p2)) {
        if (h_wait_exit(d, 0) >= 0 || h_now_ms() >= deadline)
            return false;
        poll(NULL, 0, 5);
    }
    return true;
}

/*
 * Start systemd-socket-activate with a chat and an echo socket on two free
 * ports. It binds without retrying, and a port that was free a moment ago
 * can be taken by another process's outgoing connection in between, so a
 * start that exits before listening is retried with new ports. The tool
 * (systemd 252, Debian 12) execs the daemon in place, same pid, only on
 * the first connection; it has no option to exec at once.
 */
static void
activate_tool_start(struct h_daemon *d, const char *tool, int *chat, int *echo)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        char l1[64], l2[64], env[160];
        const char *const args[] = { "-l", l1,  "--fdname=chat", "-l", l2, "--fdname=echo",
                                     "-E", env, h_daemon_path(), NULL };
        struct spawn sp = { .exe = tool, .args = args, .no_notify = true };
        int logfd;

        *chat = h_free_port();
        while ((*echo = h_free_port()) == *chat)
            ;
        snprintf(l1, sizeof(l1), "127.0.0.1:%d", *chat);
        snprintf(l2, sizeof(l2), "127.0.0.1:%d", *echo);
        h_cleanup(d);
        logfd = spawn_files(d, &sp);
        snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", d->notify_path);
        spawn_run(d, &sp, logfd);
        if (wait_listening(d, *chat, *echo))
            return;
        h_dump_log(d);
    }
    fail_msg("%s did not listen on two free ports in 3 attempts", tool);
}

static void
test_systemd_activation_socket_activate_tool_two_named_fds(void **state)
{
    struct fixture *f = *state;
    char tool[512];
    unsigned char out[] = "\x00\xff\r\n\x1b[2J binary";
    unsigned char back[sizeof(out)];
    int chat, echo, fd;

    if (!find_tool("systemd-socket-activate", tool, sizeof(tool)))
        skip();
    activate_tool_start(&f->d, tool, &chat, &echo);
    /* this connection waits in the echo socket's backlog while the tool
     * execs the daemon, which must then serve it */
    fd = h_connect(echo);
    h_write_all(fd, out, sizeof(out));
    if (wait_ready(&f->d, H_READY_MS) < 0) {
        h_dump_log(&f->d);
        fail_msg("daemon exited (status %d) before READY=1", h_wait_exit(&f->d, 0));
    }
    assert_int_equal(h_read_exact(fd, back, sizeof(back), H_TIMEOUT_MS), 0);
    assert_memory_equal(out, back, sizeof(out));
    close(fd);
    expect_chat(chat);
    expect_echo(echo);
    /* the tool passed its names: the daemon was told which one is echo */
    assert_true(proc_env_initial(f->d.pid, "LISTEN_FDNAMES"));
    assert_int_equal(h_stop(&f->d, H_TIMEOUT_MS * 3), 0);
}

static void
test_systemd_activation_listen_vars_unset_after_adoption(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = { "chat", "echo", NULL };
    static const char *const vars[] = { "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES" };

    if (h_under_valgrind()) {
        print_message("skipped under valgrind: valgrind lays out the environment block itself\n");
        skip();
    }

    h_start(&f->d, names, NULL);
    /* control: a variable the daemon keeps is found by the same reader */
    assert_true(proc_env_live(f->d.pid, "NOTIFY_SOCKET"));
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        /* control: it was passed, so its absence below is an unsetenv */
        if (!proc_env_initial(f->d.pid, vars[i]))
            fail_msg("%s was never passed to the daemon", vars[i]);
        if (proc_env_live(f->d.pid, vars[i]))
            fail_msg("%s is still in the daemon's environment after adoption", vars[i]);
    }
    assert_int_equal(h_stop(&f->d, H_TIMEOUT_MS * 3), 0);
}

/* fd kinds that are not a listening stream socket */
enum bad_fd { BAD_PIPE, BAD_UDP, BAD_TCP_UNLISTENED };

static int
make_bad_fd(enum bad_fd kind, int *extra)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    int p[2], fd;

    *extra = -1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    switch (kind) {
    case BAD_PIPE:
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        *extra = p[1];
        return p[0];
    case BAD_UDP:
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        break;
    default:
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        break;
    }
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void
test_systemd_activation_bad_inherited_fd_exits_71_naming_it(void **state)
{
    struct fixture *f = *state;
    static const char *const what[] = { "pipe", "UDP socket", "unlistened TCP socket" };
    static const char *const env[] = { "LISTEN_FDS=1", "LISTEN_PID=$PID", "LISTEN_FDNAMES=chat",
                                       NULL };

    for (int kind = BAD_PIPE; kind <= BAD_TCP_UNLISTENED; kind++) {
        int extra, fd = make_bad_fd((enum bad_fd)kind, &extra);
        struct spawn sp = { .env = env, .fds = &fd, .nfds = 1 };
        int rc;

        h_cleanup(&f->d);
        spawn(&f->d, &sp);
        close(fd);
        if (extra >= 0)
            close(extra);
        assert_int_equal(wait_ready(&f->d, H_READY_MS), -1);
        if ((rc = h_wait_exit(&f->d, H_TIMEOUT_MS)) != 71) {
            h_dump_log(&f->d);
            fail_msg("%s at fd 3: exit %d, want 71", what[kind], rc);
        }
        if (!log_find(&f->d, "fd 3", NULL, NULL, 0)) {
            h_dump_log(&f->d);
            fail_msg("%s at fd 3: no log line naming fd 3", what[kind]);
        }
    }
}

static void
test_systemd_activation_other_pid_not_adopted_opens_own(void **state)
{
    struct fixture *f = *state;
    static const char *const env[] = { "LISTEN_FDS=1", "LISTEN_PID=$PPID", "LISTEN_FDNAMES=chat",
                                       NULL };
    static const char *const args[] = { "--chat", "127.0.0.1:0", NULL };
    int inherited, lfd = h_listen(0, &inherited);
    struct spawn sp = { .args = args, .env = env, .fds = &lfd, .nfds = 1 };
    struct h_conn *c;

    spawn_ready(&f->d, &sp);
    close(lfd);
    expect_chat(log_port(&f->d, "chat"));
    /* the socket meant for someone else queues connections but nobody
     * serves them */
    c = h_conn_open(inherited);
    assert_true(h_conn_quiet(c, 300));
    h_conn_close(c);
    assert_false(log_find(&f->d, "socket activation", NULL, NULL, 0));
    assert_int_equal(h_stop(&f->d, H_TIMEOUT_MS * 3), 0);
}

/* ---- notifications ------------------------------------------------------ */

static void
test_systemd_notify_status_tracks_client_counts(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = { "chat", "echo", NULL };
    struct h_conn *c;
    int e;

    h_start(&f->d, names, NULL);
    c = h_conn_open(f->d.port[0]);
    /* STATUS may wait up to a second behind the previous one */
    if (!note_expect(&f->d, "STATUS=1 clients (1 chat, 0 echo)", H_TIMEOUT_MS + 1000))
        fail_msg("no STATUS for one chat client");
    e = h_connect(f->d.port[1]);
    if (!note_expect(&f->d, "STATUS=2 clients (1 chat, 1 echo)", H_TIMEOUT_MS + 1000))
        fail_msg("no STATUS for one chat and one echo client");
    h_conn_close(c);
    close(e);
    if (!note_expect(&f->d, "STATUS=0 clients", H_TIMEOUT_MS + 1000))
        fail_msg("no STATUS after both clients left");
    assert_int_equal(h_stop(&f->d, H_TIMEOUT_MS * 3), 0);
}

static void
test_systemd_notify_status_at_most_once_a_second(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = { "echo", NULL };
    char last[NOTE_MAX] = "";
    int n;

    h_start(&f->d, names, NULL);
    /* the STATUS sent with READY=1; everything after it is new */
    assert_non_null(h_wait_notify(&f->d, "STATUS=", H_TIMEOUT_MS));
    for (int i = 0; i < 20; i++) {
        int fd = h_connect(f->d.port[0]);
        char b = 'x';

        /* an echo proves the daemon counted this client before it goes */
        h_write_all(fd, &b, 1);
        assert_int_equal(h_read_exact(fd, &b, 1, H_TIMEOUT_MS), 0);
        close(fd);
    }
    n = note_count(&f->d, "STATUS=", 1500, last, sizeof(last));
    if (n > 3)
        fail_msg("%d STATUS datagrams in 1.5 s for 40 changes", n);
    /* coalescing must not lose the final state */
    if (strstr(last, "STATUS=0 clients") == NULL &&
        !note_expect(&f->d, "STATUS=0 clients", H_TIMEOUT_MS))
        fail_msg("the last STATUS is \"%s\", not 0 clients", last);
    assert_int_equal(h_stop(&f->d, H_TIMEOUT_MS * 3), 0);
}

static void
test_systemd_notify_stopping_on_sigterm(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = { "chat", NULL };
    struct h_conn *c;

    h_start(&f->d, names, NULL);
    c = h_conn_open(f->d.port[0]);
    assert_true(h_conn_expect(c, "*** ", NULL, 0, H_TIMEOUT_MS));
    assert_null(h_wait_notify(&f->d, "STOPPING=1", 0));
    h_signal(&f->d, SIGTERM);
    assert_non_null(h_wait_notify(&f->d, "STOPPING=1", H_TIMEOUT_MS));
    h_conn_close(c);
    assert_int_equal(h_stop(&f->d, H_TIMEOUT_MS * 3), 0);
}

static void
test_systemd_notify_watchdog_pings_at_half_interval(void **state)
{
    struct fixture *f = *state;
    static const char *const env[] = { "WATCHDOG_USEC=200000", NULL };
    static const char *const args[] = { "--chat", "127.0.0.1:0", NULL };
    struct spawn sp = { .args = args, .env = env };
    int n;

    spawn_ready(&f->d, &sp);
    /* every 100 ms: about 10 in a second; 3 is the floor with slack for a
     * loaded machine, 20 the ceiling that catches a unit mix-up */
    n = note_count(&f->d, "WATCHDOG=1", 1000, NULL, 0);
    if (n < 3 || n > 20)
        fail_msg("%d WATCHDOG=1 in 1 s with WATCHDOG_USEC=200000", n);
    assert_int_equal(h_stop(&f->d, H_TIMEOUT_MS * 3), 0);
}

static void
test_systemd_notify_watchdog_pid_honoured(void **state)
{
    struct fixture *f = *state;
    static const char *const ours[] = { "WATCHDOG_USEC=200000", "WATCHDOG_PID=$PID", NULL };
    static const char *const other[] = { "WATCHDOG_USEC=200000", "WATCHDOG_PID=$PPID", NULL };
    static const char *const args[] = { "--chat", "127.0.0.1:0", NULL };
    struct spawn sp1 = { .args = args, .env = ours };
    struct spawn sp2 = { .args = args, .env = other };
    int n;

    spawn_ready(&f->d, &sp1);
    spawn_ready(&f->d2, &sp2);
    if ((n = note_count(&f->d, "WATCHDOG=1", 600, NULL, 0)) < 2)
        fail_msg("WATCHDOG_PID naming the daemon: %d pings in 600 ms", n);
    /* six intervals: pings would have shown by now */
    if ((n = note_count(&f->d2, "WATCHDOG=1", 600, NULL, 0)) != 0)
        fail_msg("WATCHDOG_PID naming another process: %d pings", n);
    assert_null(h_wait_notify(&f->d2, "WATCHDOG=1", 0));
    assert_int_equal(h_stop(&f->d, H_TIMEOUT_MS * 3), 0);
    assert_int_equal(h_stop(&f->d2, H_TIMEOUT_MS * 3), 0);
}

/* An abstract name is matched byte for byte over the address length: a
 * sender that counts a NUL or pads to sizeof(sockaddr_un) misses us. */
static void
test_systemd_notify_abstract_socket_ready_and_stopping(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = { "--chat", "127.0.0.1:0", NULL };
    char name[64];
    struct spawn sp = { .args = args, .abstract = name };

    snprintf(name, sizeof(name), "echochat-systest-%d-%ld", (int)getpid(), h_now_ms());
    spawn_ready(&f->d, &sp);
    expect_chat(log_port(&f->d, "chat"));
    h_signal(&f->d, SIGTERM);
    assert_non_null(h_wait_notify(&f->d, "STOPPING=1", H_TIMEOUT_MS));
    assert_int_equal(h_stop(&f->d, H_TIMEOUT_MS * 3), 0);
}

/* ---- journald ----------------------------------------------------------- */

/* Every log line matches re; at least min lines. */
static void
log_all_match(const struct h_daemon *d, const char *re, int min)
{
    char line[LOG_LINE_CAP];
    int n = 0;
    regex_t rx;
    FILE *fp;

    assert_int_equal(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
    assert_non_null(fp = fopen(d->log_path, "r"));
    while (fgets(line, sizeof(line), fp) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (regexec(&rx, line, 0, NULL, 0) != 0) {
            h_dump_log(d);
            fail_msg("log line \"%s\" does not match %s", line, re);
        }
        n++;
    }
    fclose(fp);
    regfree(&rx);
    if (n < min)
        fail_msg("%d log lines, want at least %d", n, min);
}

#define TIMESTAMP "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"

static void
test_systemd_journal_stream_match_priority_prefix_no_time(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = { "--chat", "127.0.0.1:0", NULL };
    struct spawn sp = { .args = args, .journal = JOURNAL_MATCH };
    regex_t rx;

    spawn_ready(&f->d, &sp);
    assert_int_equal(h_stop(&f->d, H_TIMEOUT_MS * 3), 0);
    /* "<N>" and the text: no timestamp anywhere, journald adds its own */
    log_all_match(&f->d, "^<[0-7]>[^<0-9]", 2);
    assert_int_equal(regcomp(&rx, TIMESTAMP, REG_EXTENDED | REG_NOSUB), 0);
    {
        char line[LOG_LINE_CAP];
        FILE *fp = fopen(f->d.log_path, "r");

        assert_non_null(fp);
        while (fgets(line, sizeof(line), fp) != NULL)
            if (regexec(&rx, line, 0, NULL, 0) == 0)
                fail_msg("journal line with a timestamp: %s", line);
        fclose(fp);
    }
    regfree(&rx);
}

static void
test_systemd_journal_stream_other_file_timestamps(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = { "--chat", "127.0.0.1:0", NULL };
    struct spawn sp = { .args = args, .journal = JOURNAL_OTHER };

    spawn_ready(&f->d, &sp);
    assert_int_equal(h_stop(&f->d, H_TIMEOUT_MS * 3), 0);
    log_all_match(&f->d, "^" TIMESTAMP, 2);
}

/* ---- --daemonize and --pid-file ----------------------------------------- */

static pid_t
read_pid_file(const char *path)
{
    pid_t pid = pid_file_pid(path);

    if (pid <= 0)
        fail_msg("pid file %s: missing or unreadable (%s)", path, strerror(errno));
    return pid;
}

/* Reap our child the moment it exits (a pidfd wakes us at once, where the
 * harness's h_wait_exit looks every few ms) and store its status where the
 * harness expects it. Returns the exit code, or -1 past the deadline. */
static int
wait_child_now(struct h_daemon *d, int timeout_ms)
{
    int fd = (int)syscall(SYS_pidfd_open, d->pid, 0);
    struct pollfd p = { .fd = fd, .events = POLLIN };

    assert_true(fd >= 0);
    if (poll(&p, 1, timeout_ms) != 1) {
        close(fd);
        return -1;
    }
    close(fd);
    assert_int_equal(waitpid(d->pid, &d->status, 0), d->pid);
    return h_wait_exit(d, 0);
}

/*
 * Run `echochatd -D --pid-file F --echo 127.0.0.1:0` and check the moment
 * the launcher exits 0: the daemon must then already serve. The launcher
 * is our child; the daemon, two forks down, is not, and must be a
 * different, live process that holds the listening socket. Returns the
 * echo port.
 */
static int
daemonize_start(struct fixture *f)
{
    const char *const args[] = { "-D", "--pid-file", f->pid_path, "--echo", "127.0.0.1:0", NULL };
    struct spawn sp = { .args = args, .no_notify = true };
    int rc, port, fd;

    spawn(&f->d, &sp);
    if ((rc = wait_child_now(&f->d, H_READY_MS)) != 0) {
        h_dump_log(&f->d);
        fail_msg("echochatd -D exited %d, want 0", rc);
    }
    /* no waiting from here on: all of this must hold already */
    port = log_port(&f->d, "echo");
    f->daemon_pid = read_pid_file(f->pid_path);
    /* right now, with no retry: the launcher promised we are served */
    fd = h_try_connect(port);
    if (fd < 0)
        fail_msg("connect right after the launcher returned: %s", strerror(-fd));
    close(fd);
    expect_echo(port);
    assert_true(f->daemon_pid > 0);
    assert_int_not_equal(f->daemon_pid, f->d.pid);
    assert_int_equal(kill(f->daemon_pid, 0), 0);
    assert_true(pid_listens_on(f->daemon_pid, port));
    return port;
}

static void
test_systemd_daemonize_returns_when_serving_pid_file_names_daemon(void **state)
{
    struct fixture *f = *state;

    daemonize_start(f);
    /* detached the SysV way: not a session leader (second fork), out of
     * our session, in /, stdin and stdout on /dev/null */
    assert_int_not_equal(getsid(f->daemon_pid), f->daemon_pid);
    assert_int_not_equal(getsid(f->daemon_pid), getsid(0));
    link_is(f->daemon_pid, "cwd", "/");
    link_is(f->daemon_pid, "fd/0", "/dev/null");
    link_is(f->daemon_pid, "fd/1", "/dev/null");
}

/* -D changes directory to /, so a relative --pid-file must be anchored to
 * the directory the daemon was started in, not written to /. */
static void
test_systemd_daemonize_relative_pid_file_lands_in_start_dir(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {
        "-D", "--pid-file", "echochatd.pid", "--echo", "127.0.0.1:0", NULL
    };
    char exe[PATH_MAX], cwd[PATH_MAX];
    struct spawn sp = { .exe = exe, .args = args, .no_notify = true };
    int rc;

    assert_non_null(realpath(h_daemon_path(), exe));
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(f->dir), 0); /* the child starts here */
    spawn(&f->d, &sp);
    assert_int_equal(chdir(cwd), 0);
    if ((rc = wait_child_now(&f->d, H_READY_MS)) != 0) {
        h_dump_log(&f->d);
        fail_msg("echochatd -D --pid-file echochatd.pid exited %d, want 0", rc);
    }
    /* f->pid_path is that same name inside f->dir */
    f->daemon_pid = read_pid_file(f->pid_path);
    assert_true(f->daemon_pid > 0);
    assert_int_equal(kill(f->daemon_pid, 0), 0);
    link_is(f->daemon_pid, "cwd", "/");
}

static void
test_systemd_daemonize_second_instance_refused_71(void **state)
{
    struct fixture *f = *state;
    const char *const fg[] = { "--pid-file", f->pid_path, "--echo", "127.0.0.1:0", NULL };
    const char *const bg[] = { "-D", "--pid-file", f->pid_path, "--echo", "127.0.0.1:0", NULL };
    struct spawn sp = { .args = bg, .no_notify = true };
    char err[1024], pid[16];
    int rc;

    daemonize_start(f);
    snprintf(pid, sizeof(pid), "%d", (int)f->daemon_pid);
    /* in the foreground: refused, and the message names the file and the
     * pid that holds it */
    rc = h_run(fg, NULL, 0, err, sizeof(err), H_READY_MS);
    if (rc != 71 || strstr(err, f->pid_path) == NULL || strstr(err, pid) == NULL)
        fail_msg("second instance: exit %d, stderr \"%s\"; want 71 naming %s and pid %s", rc, err,
                 f->pid_path, pid);
    /* daemonizing: the launcher reports the daemon's refusal */
    spawn(&f->d2, &sp);
    if ((rc = h_wait_exit(&f->d2, H_READY_MS)) != 71) {
        h_dump_log(&f->d2);
        fail_msg("second instance with -D: launcher exit %d, want 71", rc);
    }
    assert_true(log_find(&f->d2, f->pid_path, pid, NULL, 0));
    /* the refused ones left the first instance and its file alone */
    assert_int_equal(read_pid_file(f->pid_path), f->daemon_pid);
    assert_int_equal(kill(f->daemon_pid, 0), 0);
}

static void
test_systemd_daemonize_sigterm_removes_pid_file(void **state)
{
    struct fixture *f = *state;

    daemonize_start(f);
    assert_int_equal(kill(f->daemon_pid, SIGTERM), 0);
    if (!wait_gone(f->daemon_pid, H_TIMEOUT_MS * 3))
        fail_msg("daemon %d still running after SIGTERM", (int)f->daemon_pid);
    f->daemon_pid = -1; /* gone: teardown must not signal a recycled pid */
    /* removed before exit, so it must be gone now */
    if (access(f->pid_path, F_OK) == 0 || errno != ENOENT)
        fail_msg("pid file %s left behind", f->pid_path);
    assert_true(h_wait_log(&f->d, "stopped", H_TIMEOUT_MS));
}

static void
test_systemd_daemonize_port_in_use_launcher_exits_71(void **state)
{
    struct fixture *f = *state;
    char addr[32];
    const char *const args[] = { "-D", "--pid-file", f->pid_path, "--echo", addr, NULL };
    struct spawn sp = { .args = args, .no_notify = true };
    int port, busy = h_listen(0, &port);
    int rc;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    spawn(&f->d, &sp);
    rc = h_wait_exit(&f->d, H_READY_MS);
    close(busy);
    if (rc != 71) {
        h_dump_log(&f->d);
        fail_msg("echochatd -D on a busy port: launcher exit %d, want 71", rc);
    }
    assert_true(log_find(&f->d, addr, NULL, NULL, 0));
    /* nothing left half-started */
    assert_int_equal(access(f->pid_path, F_OK), -1);
}

/* ---- RLIMIT_NOFILE ------------------------------------------------------ */

static void
test_systemd_rlimit_nofile_soft_raised_for_max_clients(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = { "--max-clients", "1000", "--chat", "127.0.0.1:0", NULL };
    struct spawn sp = { .args = args, .nofile_soft = 256, .nofile_hard = 4096 };
    unsigned long soft, hard;

    if (h_under_valgrind()) {
        print_message(
            "skipped under valgrind: valgrind lowers RLIMIT_NOFILE by the descriptors it keeps\n");
        skip();
    }

    spawn_ready(&f->d, &sp);
    proc_nofile(f->d.pid, &soft, &hard);
    if (soft <= 1000 || soft > 4096 || hard != 4096)
        fail_msg("RLIMIT_NOFILE %lu/%lu after --max-clients 1000 from 256/4096", soft, hard);
    assert_false(log_find(&f->d, "RLIMIT_NOFILE", NULL, NULL, 0));
    assert_int_equal(h_stop(&f->d, H_TIMEOUT_MS * 3), 0);
}

static void
test_systemd_rlimit_nofile_hard_too_low_warns_with_numbers(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = { "--max-clients", "1000", "--chat", "127.0.0.1:0", NULL };
    struct spawn sp = { .args = args, .nofile_soft = 256, .nofile_hard = 256 };
    char line[LOG_LINE_CAP];
    unsigned long soft, hard;

    if (h_under_valgrind()) {
        print_message(
            "skipped under valgrind: valgrind lowers RLIMIT_NOFILE by the descriptors it keeps\n");
        skip();
    }

    spawn_ready(&f->d, &sp);
    proc_nofile(f->d.pid, &soft, &hard);
    assert_int_equal(soft, 256);
    if (!log_find(&f->d, "256", "1000", line, sizeof(line)) || strstr(line, "warning") == NULL) {
        h_dump_log(&f->d);
        fail_msg("no warning line naming the limit 256 and --max-clients 1000");
    }
    assert_int_equal(h_stop(&f->d, H_TIMEOUT_MS * 3), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_systemd_activation_env_two_named_fds_serve_chat_and_echo),
        T(test_systemd_activation_socket_activate_tool_two_named_fds),
        T(test_systemd_activation_listen_vars_unset_after_adoption),
        T(test_systemd_activation_bad_inherited_fd_exits_71_naming_it),
        T(test_systemd_activation_other_pid_not_adopted_opens_own),
        T(test_systemd_notify_status_tracks_client_counts),
        T(test_systemd_notify_status_at_most_once_a_second),
        T(test_systemd_notify_stopping_on_sigterm),
        T(test_systemd_notify_watchdog_pings_at_half_interval),
        T(test_systemd_notify_watchdog_pid_honoured),
        T(test_systemd_notify_abstract_socket_ready_and_stopping),
        T(test_systemd_journal_stream_match_priority_prefix_no_time),
        T(test_systemd_journal_stream_other_file_timestamps),
        T(test_systemd_daemonize_returns_when_serving_pid_file_names_daemon),
        T(test_systemd_daemonize_relative_pid_file_lands_in_start_dir),
        T(test_systemd_daemonize_second_instance_refused_71),
        T(test_systemd_daemonize_sigterm_removes_pid_file),
        T(test_systemd_daemonize_port_in_use_launcher_exits_71),
        T(test_systemd_rlimit_nofile_soft_raised_for_max_clients),
        T(test_systemd_rlimit_nofile_hard_too_low_warns_with_numbers),
    };

    return cmocka_run_group_tests_name("systemd", tests, NULL, NULL);
}
