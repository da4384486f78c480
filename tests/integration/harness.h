/*
 * harness: runs the real echochatd the way systemd does and talks to it over
 * loopback. h_start() binds 127.0.0.1:0 listeners in the test process, forks,
 * and in the child moves them to fd 3.. and sets LISTEN_FDS, LISTEN_FDNAMES,
 * LISTEN_PID=getpid() and NOTIFY_SOCKET (a datagram socket the harness owns)
 * before exec'ing $ECHOCHATD (default build/echochatd). The parent blocks
 * until READY=1 arrives, so no test ever sleeps and hopes. Every wait has a
 * deadline (H_TIMEOUT_MS unless said otherwise) and a miss fails the test.
 * The daemon's stderr goes to a log file the tests can search.
 * A failed assertion leaves the test at once: keep struct h_daemon in the
 * fixture and call h_cleanup() from the teardown, so a failing test leaves
 * no daemon running and no files behind.
 */
#ifndef ECHOCHAT_HARNESS_H
#define ECHOCHAT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define H_TIMEOUT_MS 2000
#define H_READY_MS   5000 /* how long h_start waits for READY=1 */
#define H_MAX_LISTEN 8
#define H_MAX_NOTIFY 256

struct h_daemon {
    pid_t pid;
    size_t nlisten;
    int port[H_MAX_LISTEN]; /* the port of each listener, in the order given */
    int notify_fd;          /* our end of NOTIFY_SOCKET */
    char notify_path[108];
    char log_path[256];        /* the daemon's stderr */
    char *notes[H_MAX_NOTIFY]; /* every datagram received so far */
    size_t nnotes;
    int status; /* wait status once reaped, else -1 */
};

/* Put d in the "not started" state so h_cleanup() is safe on it (a zeroed
 * struct is safe too). h_start and h_start_ex call it themselves. */
void h_init(struct h_daemon *d);
/* Start the daemon with one listener per name in names[] ("chat", "echo";
 * the LISTEN_FDNAMES entries) and the extra NULL-terminated argv in args
 * (may be NULL). Waits for READY=1. Fails the test on any error. */
void h_start(struct h_daemon *d, const char *const *names, const char *const *args);
/* Like h_start, with full control: set_env==false skips LISTEN_* (the daemon
 * opens its own listeners from args; names is then ignored and d->nlisten
 * is 0); NOTIFY_SOCKET is always set. rlimit_nofile>0 sets RLIMIT_NOFILE
 * (soft and hard) in the child before exec. Returns 0 when READY=1 came,
 * -1 when the daemon exited first (its status is then in d->status). */
int h_start_ex(struct h_daemon *d, const char *const *names, const char *const *args, bool set_env,
               long rlimit_nofile);
/* SIGTERM, then wait up to timeout_ms for exit. Returns the exit code
 * (0..255), 128+signal if killed by a signal, or fails the test on timeout. */
int h_stop(struct h_daemon *d, int timeout_ms);
/* Graceful stop with clients connected: SIGTERM, then on each fds[i] >= 0
 * read (and discard) until the daemon's EOF and close it, setting fds[i] to
 * -1, then wait for the exit. The daemon waits for its peers' FIN after its
 * own (up to --shutdown-timeout), so a test that keeps sockets open across
 * h_stop only measures that timeout. Returns the exit code; fails the test
 * if a connection sees no EOF or the daemon no exit within timeout_ms. */
int h_stop_clients(struct h_daemon *d, int *fds, size_t n, int timeout_ms);
/* Send a signal to the daemon. */
void h_signal(struct h_daemon *d, int sig);
/* Wait up to timeout_ms for the daemon to exit; returns as h_stop, -1 on
 * timeout (the daemon is then still running). */
int h_wait_exit(struct h_daemon *d, int timeout_ms);
/* Remove the log file and notify socket; kill the daemon if still alive.
 * With H_SHOW_LOG set in the environment it prints the log first; with
 * H_KEEP_LOG set it keeps the files and prints where they are. */
void h_cleanup(struct h_daemon *d);
/* Copy the daemon's log to stderr (for a failing test's post-mortem). */
void h_dump_log(const struct h_daemon *d);

/* The daemon binary: $ECHOCHATD, else "build/echochatd". */
const char *h_daemon_path(void);
/* Run the daemon binary in the foreground with args (NULL-terminated, may be
 * NULL), no LISTEN_* and no NOTIFY_SOCKET, stdin from /dev/null; its stdout
 * and stderr are captured NUL-terminated into out[outcap] and err[errcap]
 * (either may be NULL; excess is dropped). Returns the exit code as h_stop
 * does, or -1 if it ran past timeout_ms (it is then killed). */
int h_run(const char *const *args, char *out, size_t outcap, char *err, size_t errcap,
          int timeout_ms);
/* A TCP listener of ours on 127.0.0.1:port (0 = any; SO_REUSEADDR, backlog
 * 1024, close-on-exec). Returns the fd and stores the port in *bound (may be
 * NULL). Fails the test on error. */
int h_listen(int port, int *bound);
/* A port that was free on 127.0.0.1 a moment ago (bound to :0, then closed). */
int h_free_port(void);
/* How many TCP sockets with local port `port` are in TIME_WAIT, from
 * /proc/net/tcp (IPv4) and /proc/net/tcp6. */
int h_time_wait_count(int port);

/* Wait for a notify datagram containing needle (e.g. "STOPPING=1"), counting
 * ones already received. Returns its text or NULL on timeout. */
const char *h_wait_notify(struct h_daemon *d, const char *needle, int timeout_ms);
/* Wait for a daemon log line containing needle. Returns true if seen. */
bool h_wait_log(struct h_daemon *d, const char *needle, int timeout_ms);
/* How many log lines so far contain needle. */
int h_count_log(struct h_daemon *d, const char *needle);
/* The number after key in the first log line containing needle; fails the
 * test if there is none (needle "stats:", key "held ": a SIGUSR1 count). */
long h_log_number(struct h_daemon *d, const char *needle, const char *key);

/* True when tests/valgrind.sh runs the daemon under valgrind (it exports
 * ECHOCHAT_VALGRIND=1): a check that cannot hold there (RLIMIT_NOFILE, which
 * valgrind lowers by the descriptors it keeps; the live environment block it
 * lays out differently; a long load run) skip()s with its reason. */
bool h_under_valgrind(void);

/* Milliseconds on CLOCK_MONOTONIC, and what is left before a deadline in
 * those units (never negative: a poll() timeout). */
long h_now_ms(void);
int h_left_ms(long deadline);

/* The daemon's resident set in KiB and its open fd count (from /proc). */
long h_rss_kib(pid_t pid);
int h_fd_count(pid_t pid);
/* CPU time (user+system) the process has used, in ms. */
long h_cpu_ms(pid_t pid);

/* A blocking, close-on-exec TCP connection to 127.0.0.1:port, connected
 * within H_TIMEOUT_MS (fails the test if refused or late). Every harness
 * read and write on it polls with a deadline, so blocking mode never hangs
 * a test. */
int h_connect(int port);
/* Same, returning -errno instead of failing (-ETIMEDOUT when late). */
int h_try_connect(int port);
/* Write everything within H_TIMEOUT_MS (fails the test on error or when the
 * peer stops reading for that long). */
void h_write_all(int fd, const void *p, size_t n);
/* Read exactly n bytes within timeout_ms. Returns 0, or -1 on timeout/EOF/error. */
int h_read_exact(int fd, void *p, size_t n, int timeout_ms);
/* True if the peer's EOF arrives within timeout_ms with no data before it
 * (a reset is not an EOF). */
bool h_expect_eof(int fd, int timeout_ms);
/* Wait up to timeout_ms for the connection to end: 0 on EOF, -errno on an
 * error such as -ECONNRESET, -ETIMEDOUT if it stays open; data is read and
 * counted into *junk (may be NULL). */
int h_wait_closed(int fd, int timeout_ms, size_t *junk);

/* A line-oriented connection (chat). */
struct h_conn {
    int fd;
    size_t len;
    char buf[1 << 16];
};

/* Connect to 127.0.0.1:port (fails the test if refused). Heap-allocated. */
struct h_conn *h_conn_open(int port);
void h_conn_close(struct h_conn *c);
/* Send a string as is (add "\n" yourself). */
void h_conn_send(struct h_conn *c, const char *s);
/* The next line without its CR LF, NUL-terminated in line[cap]. Returns its
 * length, or -1 on timeout, -2 on EOF. */
int h_conn_line(struct h_conn *c, char *line, size_t cap, int timeout_ms);
/* Read lines until one contains needle; returns true (line copied out if
 * line != NULL) or false on timeout/EOF. Skipped lines are discarded. */
bool h_conn_expect(struct h_conn *c, const char *needle, char *line, size_t cap, int timeout_ms);
/* True if no line arrives within timeout_ms (for "nothing is sent" checks);
 * false if a line or EOF does. */
bool h_conn_quiet(struct h_conn *c, int timeout_ms);
/* Read and discard lines until none arrives for quiet_ms (or EOF; at most
 * 10 * H_TIMEOUT_MS in all). */
void h_conn_drain(struct h_conn *c, int quiet_ms);

#endif
