/*
 * echochatd: the top. Parse the flags, set up logging, optionally detach and
 * take the pid file, build the server, run it. This is the only place that
 * turns failures into exit statuses: 64 (EX_USAGE) for a bad command line,
 * 71 (EX_OSERR) for anything the system refused, 0 after a clean shutdown.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "cfg.h"
#include "log.h"
#include "server.h"

struct pidfile {
    const char *path;
    int fd;
};

/*
 * The pid file is a lock, not a marker: held with flock() for our whole
 * life, so a stale file left by a crash (nobody holds its lock) is simply
 * taken over, while a live instance makes us refuse to start.
 */
static int
pidfile_take(struct pidfile *pf, const char *path)
{
    char buf[32];
    int fd, n;

    pf->path = path;
    pf->fd = -1;
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644)) < 0) {
        log_err("pid file %s: %s", path, strerror(errno));
        return -errno;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno;
        n = (int)read(fd, buf, sizeof(buf) - 1);
        buf[n > 0 ? n : 0] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        if (err == EWOULDBLOCK)
            log_err("pid file %s: another instance is running (pid %s)", path,
                    buf[0] ? buf : "unknown");
        else
            log_err("pid file %s: lock: %s", path, strerror(err));
        close(fd);
        return -err;
    }
    n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        int err = errno ? errno : EIO;
        log_err("pid file %s: write: %s", path, strerror(err));
        close(fd);
        return -err;
    }
    pf->fd = fd;
    return 0;
}

static void
pidfile_release(struct pidfile *pf)
{
    if (pf->fd < 0)
        return;
    unlink(pf->path); /* while still locked: a successor cannot lose its file */
    close(pf->fd);
    pf->fd = -1;
}

/*
 * Detach the SysV way: fork (the parent waits), setsid, fork again (the
 * session leader exits, so we can never reacquire a terminal), chdir /,
 * stdin and stdout to /dev/null. The original process exits only when the
 * daemon reports through the pipe: 0 once it serves, or the exit status it
 * failed with, so `echochatd -D && echo up` means what it says. Returns the
 * pipe's write end in the daemon.
 */
static int
daemonize(void)
{
    int p[2], null;
    pid_t pid;
    unsigned char code;

    if (pipe2(p, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
        log_err("daemonize: %s", strerror(errno));
        exit(EX_OSERR);
    }
    if (pid > 0) {
        close(p[1]);
        ssize_t n = read(p[0], &code, 1);
        waitpid(pid, NULL, 0); /* the intermediate child exits at once */
        _exit(n == 1 ? code : EX_OSERR);
    }
    close(p[0]);
    if (setsid() < 0 || (pid = fork()) < 0) {
        log_err("daemonize: %s", strerror(errno));
        _exit(EX_OSERR);
    }
    if (pid > 0)
        _exit(0);
    if (chdir("/") < 0)
        log_warn("daemonize: chdir /: %s", strerror(errno));
    umask(022);
    if ((null = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        if (null > STDERR_FILENO)
            close(null);
    }
    return p[1];
}

/* A daemon must not keep the terminal: stderr goes too if it is one. A file
 * or pipe the operator redirected it to stays, and keeps the log. */
static void
detach_stderr(void)
{
    int null;

    if (!isatty(STDERR_FILENO) || (null = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0)
        return;
    dup2(null, STDERR_FILENO);
    close(null);
}

/* -D changes directory to /, so a relative --pid-file is anchored to the
 * directory the operator started us in, where they will look for it. */
static const char *
pidfile_path(const char *path, char *buf, size_t len)
{
    char cwd[PATH_MAX];

    if (path[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
        return path;
    if ((size_t)snprintf(buf, len, "%s/%s", cwd, path) >= len)
        return path;
    return buf;
}

static void
report_failure(int ready_fd, unsigned char code)
{
    if (ready_fd >= 0 && write(ready_fd, &code, 1) < 0)
        log_debug("ready pipe: %s", strerror(errno));
}

int
main(int argc, char *argv[])
{
    struct cfg cfg;
    struct server *srv = NULL;
    struct pidfile pf = { NULL, -1 };
    char err[256], pidbuf[PATH_MAX];
    int rc, ready_fd = -1, status = 0;

    /* a peer that goes away mid-write must cost an EPIPE, not the process */
    signal(SIGPIPE, SIG_IGN);
    cfg_defaults(&cfg);
    rc = cfg_parse(&cfg, argc, argv, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "echochatd: %s\n", err);
        return EX_USAGE;
    }
    if (rc == CFG_HELP) {
        fputs(cfg_usage(), stdout);
        return 0;
    }
    if (rc == CFG_VERSION) {
        printf("echochatd %s\n", ECHOCHAT_VERSION);
        return 0;
    }
    log_init(cfg.log_level);
    if (cfg.pid_file)
        cfg.pid_file = pidfile_path(cfg.pid_file, pidbuf, sizeof(pidbuf));
    if (cfg.daemonize)
        ready_fd = daemonize();
    if (cfg.pid_file && pidfile_take(&pf, cfg.pid_file) < 0) {
        report_failure(ready_fd, EX_OSERR);
        return EX_OSERR;
    }
    if (server_new(&srv, &cfg) < 0) {
        pidfile_release(&pf);
        report_failure(ready_fd, EX_OSERR);
        return EX_OSERR;
    }
    if (cfg.daemonize)
        detach_stderr();
    if (server_run(srv, ready_fd) < 0)
        status = EX_OSERR;
    server_free(srv);
    pidfile_release(&pf);
    return status;
}
