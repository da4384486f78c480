/*
 * echochat-bench: a load generator for echochatd and for any echo server or
 * line relay on loopback. It owns the sockets, the clock and the output; the
 * decisions that can be made from bytes alone (argument parsing, the chat
 * token, percentiles, loss accounting, the byte pattern) live in benchlib.
 *
 * The event handling is written directly on epoll rather than on loop.c: the
 * tool is the measuring instrument, so it wants microsecond timestamps taken
 * where the bytes arrive, edge-triggered registrations that are never
 * modified, and no dependency on the code it measures (a slow loop.c must
 * not make the daemon look slow, nor a bug in it hide the daemon's). From the
 * daemon's modules it uses buf (pending output) and util (allocation).
 *
 * Every run goes through the same phases, each with its own deadline, so no
 * run can hang: connect (bounded in-flight set-up), sync (chat: every
 * receiver has seen a probe line, so no message is sent to someone who is not
 * yet in the room), settle (idle: the server holds every connection), run
 * (--duration or --count), drain (whatever is owed must arrive) and done.
 */
#include "benchlib.h"
#include "buf.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NEVENTS        1024
#define RBUF_SIZE      (256u * 1024u)
#define PAT_PERIOD     1048573u /* a prime: 2^20 - 3 */
#define PROBE_MS       300      /* how long the first connection waits for a greeting */
#define SYNC_EVERY_MS  100
#define SETTLE_POLL_MS 100
#define TIMER_ID       UINT32_MAX
#define OUT_HIGH       (256u * 1024u) /* a sender stops queueing above this */
#define EX_FAIL        1
#define EX_SETUP       2

enum role { ROLE_ECHO, ROLE_RECV, ROLE_SEND, ROLE_IDLE };
enum cstate { CS_NEW, CS_CONNECTING, CS_OPEN, CS_SHUT, CS_CLOSED };
enum phase { PH_CONNECT, PH_SYNC, PH_SETTLE, PH_RUN, PH_DRAIN, PH_DONE };

struct conn {
    int fd;
    uint8_t role;
    uint8_t state;
    bool greeted;     /* the server has sent us something */
    bool confirmed;   /* counted as set up */
    bool wblocked;    /* the kernel refused a write; wait for EPOLLOUT */
    bool synced;      /* chat: saw this run's probe line */
    bool finished;    /* drain: nothing more is owed to it */
    uint32_t id;      /* sender or receiver number */
    uint64_t tx, rx;  /* echo: bytes sent and received */
    uint64_t base;    /* echo: this stream's offset into the pattern */
    uint64_t started; /* echo-rr: messages issued */
    uint64_t done;    /* echo-rr: messages returned */
    uint64_t *stamps; /* echo-rr: issue time of the messages in flight (ring) */
    struct buf part;  /* chat: an incomplete line */
    struct buf out;   /* chat: bytes the kernel refused */
};

struct sender {
    uint64_t sent;
    uint64_t acked; /* window: every receiver has everything below this */
    uint32_t *acks; /* window: receivers that got seq, at seq % window */
};

struct bench {
    const struct bench_opts *o;
    int ep;
    int tfd;
    enum phase phase;
    struct conn *c;
    unsigned n;
    unsigned next;    /* next connection to start */
    unsigned pending; /* started, not yet confirmed */
    unsigned confirmed;
    unsigned setup_failed; /* idle: connections lost before they were confirmed */
    bool probing;          /* waiting for the first connection's greeting */
    bool greets;           /* the server speaks first */
    unsigned unfinished;   /* drain: connections still owed something */
    bool aborted;
    int exit_code;
    char why[256];

    uint64_t t0, t_phase, t_deadline, t_run, t_stop, t_connected;
    uint64_t t_tick, t_sync;
    struct bench_pattern pat;
    struct bench_hist hist;
    uint8_t *rbuf;
    char *line;

    /* counters */
    uint64_t ops_run;   /* round trips / deliveries completed while running */
    uint64_t bytes_run; /* echo bytes received while running */
    uint64_t issued;    /* echo-rr messages issued */
    uint64_t half_closed_ok;
    uint64_t lost_bytes, corrupt, stale, self_echo, errors, closed;
    uint64_t prog_last;
    struct bench_tally tally;

    /* chat */
    struct sender *snd;
    struct bench_seq *seq; /* receivers x senders */
    uint64_t sent_total;
    uint64_t sync_base;
    unsigned synced;
    unsigned sync_needed;

    /* server /proc figures */
    uint64_t cpu0, cpu1;
    long rss_before_kib, rss_with_kib;
    int fds_before, fds_with;
};

static uint64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void bench_fail(struct bench *b, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Remember the first failure (it is usually the cause of the others) and
 * the worst exit code. */
static void
bench_fail(struct bench *b, int code, const char *fmt, ...)
{
    va_list ap;

    if (!b->why[0]) {
        va_start(ap, fmt);
        vsnprintf(b->why, sizeof(b->why), fmt, ap);
        va_end(ap);
    }
    if (code > b->exit_code)
        b->exit_code = code;
}

/* ---- server figures from /proc ---- */

static int
read_small(const char *path, char *buf, size_t cap)
{
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return 0;
}

static uint64_t
proc_cpu_ms(long pid)
{
    char path[64], text[1024];
    uint64_t ticks;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if (read_small(path, text, sizeof(text)) < 0 || bench_parse_stat_ticks(text, &ticks) < 0)
        return 0;
    return ticks * 1000u / (uint64_t)sysconf(_SC_CLK_TCK);
}

static long
proc_rss_kib(long pid)
{
    char path[64], text[256];
    uint64_t pages;

    snprintf(path, sizeof(path), "/proc/%ld/statm", pid);
    if (read_small(path, text, sizeof(text)) < 0 || bench_parse_statm_rss(text, &pages) < 0)
        return -1;
    return (long)(pages * (uint64_t)sysconf(_SC_PAGESIZE) / 1024u);
}

static int
proc_fd_count(long pid)
{
    char path[64];
    struct dirent *e;
    DIR *d;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
    if (!(d = opendir(path)))
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* ---- connections ---- */

static void
conn_close(struct bench *b, struct conn *c)
{
    if (c->state == CS_CLOSED || c->state == CS_NEW)
        return;
    close(c->fd); /* also leaves the epoll set: the fd was never duplicated */
    c->fd = -1;
    c->state = CS_CLOSED;
    buf_fini(&c->part);
    buf_fini(&c->out);
    if (!c->finished && b->phase == PH_DRAIN) {
        c->finished = true;
        b->unfinished--;
    }
}

/* A connection broke. Outside the idle mode this ends the run: the numbers
 * after such an event would describe a different experiment. */
static void
conn_fail(struct bench *b, struct conn *c, const char *what, int err)
{
    unsigned idx = (unsigned)(c - b->c);

    if (c->role == ROLE_ECHO && c->tx > c->rx)
        b->lost_bytes += c->tx - c->rx;
    b->closed++;
    if (!c->confirmed && c->state != CS_NEW) {
        b->pending--;
        b->setup_failed++;
    }
    if (err)
        bench_fail(b, EX_FAIL, "connection %u: %s: %s", idx, what, strerror(err));
    else
        bench_fail(b, EX_FAIL, "connection %u: %s", idx, what);
    conn_close(b, c);
    if (b->o->mode != BENCH_IDLE)
        b->aborted = true;
}

static void
conn_confirm(struct bench *b, struct conn *c)
{
    if (c->confirmed)
        return;
    c->confirmed = true;
    b->pending--;
    b->confirmed++;
}

/*
 * Tens of thousands of connections from one source address to one port
 * crowd the kernel's ephemeral-port search (connect() slows to about a
 * millisecond each), which would time the client instead of the server.
 * Above 4096 connections, each block of 4096 leaves from its own loopback
 * address, 127.0.k.1; the port is still picked at connect() time.
 */
static void
spread_source(const struct bench *b, const struct conn *c)
{
    struct sockaddr_in src = { .sin_family = AF_INET };
    unsigned k = (unsigned)(c - b->c) / 4096u;
    int one = 1;

    if (b->o->addr.ss_family != AF_INET || b->n <= 4096u || k == 0)
        return;
    src.sin_addr.s_addr = htonl((127u << 24) | ((k & 0xffffu) << 8) | 1u);
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    bind(c->fd, (const struct sockaddr *)&src, sizeof(src)); /* best effort */
}

static int
conn_start(struct bench *b, struct conn *c)
{
    const struct bench_opts *o = b->o;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET };
    int one = 1;

    c->fd = socket(o->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -errno;
    c->state = CS_CONNECTING;
    b->pending++;
    /* a load generator wants each message on the wire now, not coalesced */
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ev.data.u32 = (uint32_t)(c - b->c);
    if (epoll_ctl(b->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        return -errno;
    spread_source(b, c);
    if (connect(c->fd, (const struct sockaddr *)&o->addr, o->addrlen) == 0 || errno == EINPROGRESS)
        return 0; /* completion arrives as EPOLLOUT either way */
    return -errno;
}

static void
conn_connected(struct bench *b, struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        /* a refused connection means the run cannot be what was asked */
        bench_fail(b, EX_SETUP, "connection %u: connect: %s", (unsigned)(c - b->c), strerror(err));
        conn_fail(b, c, "connect", err);
        b->aborted = true;
        return;
    }
    c->state = CS_OPEN;
    if (!b->greets && !b->probing)
        conn_confirm(b, c);
}

/* ---- echo modes ---- */

static void
echo_write(struct bench *b, struct conn *c, uint64_t goal)
{
    ssize_t w;
    size_t n;

    while (!c->wblocked && c->tx < goal && c->state == CS_OPEN) {
        n = (size_t)UTIL_MIN(goal - c->tx, (uint64_t)b->pat.span);
        w = send(c->fd, bench_pattern_at(&b->pat, c->base + c->tx), n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN)
                c->wblocked = true;
            else if (errno != EINTR)
                conn_fail(b, c, "write", errno);
            if (errno != EINTR)
                return;
            continue;
        }
        c->tx += (uint64_t)w;
    }
}

/* Keep --pipeline messages in flight; each one's issue time goes into the
 * ring so its return gives the round-trip latency. */
static void
rr_issue(struct bench *b, struct conn *c, uint64_t now)
{
    const struct bench_opts *o = b->o;

    while (b->phase == PH_RUN && c->started - c->done < o->pipeline &&
           (o->count == 0 || b->issued < o->count)) {
        c->stamps[c->started % o->pipeline] = now;
        c->started++;
        b->issued++;
    }
    echo_write(b, c, c->started * o->size);
}

static void
echo_check_finished(struct bench *b, struct conn *c)
{
    uint64_t owed = b->o->mode == BENCH_ECHO_RR ? c->started * b->o->size : c->tx;

    if (b->phase != PH_DRAIN || c->finished || c->rx < owed)
        return;
    if (b->o->half_close && c->state != CS_CLOSED)
        return; /* the EOF must come too */
    c->finished = true;
    b->unfinished--;
}

static void
echo_on_data(struct bench *b, struct conn *c, const uint8_t *p, size_t n, uint64_t now)
{
    const struct bench_opts *o = b->o;
    size_t bad;

    if (c->rx + n > c->tx) {
        b->corrupt++;
        conn_fail(b, c, "received more bytes than were sent", 0);
        return;
    }
    if ((bad = bench_pattern_check(&b->pat, c->base + c->rx, p, n)) < n) {
        b->corrupt++;
        bench_fail(b, EX_FAIL, "connection %u: byte %" PRIu64 " differs from what was sent",
                   (unsigned)(c - b->c), c->rx + bad);
        conn_close(b, c);
        b->aborted = true;
        return;
    }
    c->rx += n;
    if (b->phase == PH_RUN)
        b->bytes_run += n;
    if (o->mode == BENCH_ECHO_RR) {
        for (uint64_t done = c->rx / o->size; c->done < done; c->done++) {
            bench_hist_add(&b->hist, now - c->stamps[c->done % o->pipeline]);
            if (b->phase == PH_RUN)
                b->ops_run++;
        }
        rr_issue(b, c, now);
    }
    echo_check_finished(b, c);
}

static void
echo_on_eof(struct bench *b, struct conn *c)
{
    if (c->state != CS_SHUT) {
        conn_fail(b, c, "server closed the connection", 0);
        return;
    }
    if (c->rx == c->tx) {
        b->half_closed_ok++;
    } else {
        b->lost_bytes += c->tx - c->rx;
        bench_fail(b, EX_FAIL, "connection %u: EOF after %" PRIu64 " of %" PRIu64 " bytes",
                   (unsigned)(c - b->c), c->rx, c->tx);
    }
    conn_close(b, c);
    echo_check_finished(b, c);
}

/* ---- chat fan-out ---- */

static void
chat_flush(struct bench *b, struct conn *c)
{
    ssize_t w;

    while (!c->wblocked && !buf_empty(&c->out) && c->state == CS_OPEN) {
        w = send(c->fd, buf_data(&c->out), buf_len(&c->out), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN)
                c->wblocked = true;
            else if (errno != EINTR)
                conn_fail(b, c, "write", errno);
            if (errno != EINTR)
                return;
            continue;
        }
        buf_consume(&c->out, (size_t)w);
    }
}

static void
chat_queue_buf(struct buf *q, const char *p, size_t n)
{
    if (buf_append(q, p, n) < 0) {
        fprintf(stderr, "echochat-bench: out of memory\n");
        abort();
    }
}

/* One message: the token, padding up to --size, LF. The send time is taken
 * here, so latency includes any time the line waits in our own queue. */
static void
chat_send_one(struct bench *b, unsigned k, uint64_t now)
{
    struct conn *c = &b->c[k];
    struct sender *s = &b->snd[k];
    struct bench_token t = { .sender = k, .seq = s->sent, .t_us = now };
    size_t n = bench_token_format(b->line, BENCH_TOKEN_MAX, &t);

    if (b->o->size > n + 1) {
        memset(b->line + n, 'x', b->o->size - 1 - n);
        n = b->o->size - 1;
    }
    b->line[n++] = '\n';
    chat_queue_buf(&c->out, b->line, n);
    s->sent++;
    b->sent_total++;
}

static bool
sender_may_send(const struct bench *b, const struct sender *s, const struct conn *c)
{
    const struct bench_opts *o = b->o;

    if (b->phase != PH_RUN || c->state != CS_OPEN || buf_len(&c->out) > OUT_HIGH)
        return false;
    if (o->count && s->sent >= o->count)
        return false;
    return o->rate || s->sent - s->acked < o->window;
}

/* Window mode: after every batch of events, top each sender up to --window
 * messages in flight; rate mode: send what the timer says is due. */
static void
chat_pump(struct bench *b, uint64_t due)
{
    uint64_t now = now_us();

    for (unsigned k = 0; k < b->o->senders; k++) {
        struct conn *c = &b->c[k];
        uint64_t budget = b->o->rate ? due : UINT64_MAX;

        while (budget-- > 0 && sender_may_send(b, &b->snd[k], c))
            chat_send_one(b, k, now);
        chat_flush(b, c);
    }
}

static void
chat_on_token(struct bench *b, struct conn *c, const struct bench_token *t, uint64_t now)
{
    const struct bench_opts *o = b->o;
    struct sender *s;

    if (b->phase < PH_RUN || t->t_us < b->t_run) {
        b->stale++; /* history replayed from an earlier run */
        return;
    }
    if (t->sender >= o->senders || t->seq >= b->snd[t->sender].sent || t->t_us > now) {
        b->corrupt++;
        bench_fail(b, EX_FAIL, "a token names a message that was never sent");
        return;
    }
    if (c->role == ROLE_SEND) {
        if (t->sender == c->id)
            b->self_echo++;
        return;
    }
    bench_seq_note(&b->seq[(size_t)c->id * o->senders + t->sender], t->seq, &b->tally);
    bench_hist_add(&b->hist, now - t->t_us);
    if (b->phase == PH_RUN)
        b->ops_run++;
    if (o->window) {
        s = &b->snd[t->sender];
        if (t->seq >= s->acked && t->seq < s->acked + o->window)
            s->acks[t->seq % o->window]++;
        while (s->acked < s->sent && s->acks[s->acked % o->window] >= o->receivers)
            s->acks[s->acked++ % o->window] = 0;
    }
}

static void
chat_on_line(struct bench *b, struct conn *c, const char *p, size_t n, uint64_t now)
{
    struct bench_token t;
    uint64_t sync;
    int rc;

    if ((rc = bench_token_find(p, n, &t)) == 1) {
        chat_on_token(b, c, &t, now);
    } else if (rc < 0) {
        b->corrupt++;
        bench_fail(b, EX_FAIL, "a received line holds a mangled token: %.*s", (int)UTIL_MIN(n, 80),
                   p);
    } else if (bench_sync_find(p, n, &sync) == 1 && sync >= b->sync_base && b->sync_base &&
               !c->synced) {
        c->synced = true;
        if (!(c->role == ROLE_SEND && c->id == 0))
            b->synced++;
    }
}

/* Keep an incomplete line for the next read. A line longer than any the
 * server should send is judged on what arrived so far, then dropped. */
static void
chat_keep_part(struct bench *b, struct conn *c, const char *s, size_t n, uint64_t now)
{
    if (buf_len(&c->part) + n > b->o->size + 4096) {
        chat_on_line(b, c, (const char *)buf_data(&c->part), buf_len(&c->part), now);
        buf_consume(&c->part, buf_len(&c->part));
    }
    chat_queue_buf(&c->part, s, n);
}

/* Lines are processed straight from the read buffer; only an incomplete
 * tail is copied into the connection's own (lazily allocated) buffer. */
static void
chat_on_data(struct bench *b, struct conn *c, const uint8_t *p, size_t n, uint64_t now)
{
    const char *s = (const char *)p, *end = s + n, *nl;

    if (!buf_empty(&c->part)) {
        if (!(nl = memchr(s, '\n', n))) {
            chat_keep_part(b, c, s, n, now);
            return;
        }
        chat_queue_buf(&c->part, s, (size_t)(nl - s));
        chat_on_line(b, c, (const char *)buf_data(&c->part), buf_len(&c->part), now);
        buf_consume(&c->part, buf_len(&c->part));
        s = nl + 1;
    }
    while (s < end && (nl = memchr(s, '\n', (size_t)(end - s))) != NULL) {
        chat_on_line(b, c, s, (size_t)(nl - s), now);
        s = nl + 1;
    }
    if (s < end)
        chat_keep_part(b, c, s, (size_t)(end - s), now);
}

/* ---- dispatch ---- */

static void
conn_on_data(struct bench *b, struct conn *c, const uint8_t *p, size_t n, uint64_t now)
{
    if (!c->greeted) {
        c->greeted = true;
        if (b->probing) {
            b->probing = false;
            b->greets = true;
        }
        if (c->state == CS_OPEN)
            conn_confirm(b, c);
    }
    switch (c->role) {
    case ROLE_ECHO:
        echo_on_data(b, c, p, n, now);
        break;
    case ROLE_RECV:
    case ROLE_SEND:
        chat_on_data(b, c, p, n, now);
        break;
    default:
        break; /* idle: welcome lines and notices are read and dropped */
    }
}

static void
conn_read(struct bench *b, struct conn *c)
{
    ssize_t r;

    while (c->state == CS_OPEN || c->state == CS_SHUT) {
        r = read(c->fd, b->rbuf, RBUF_SIZE);
        if (r > 0) {
            conn_on_data(b, c, b->rbuf, (size_t)r, now_us());
        } else if (r == 0) {
            if (c->role == ROLE_ECHO)
                echo_on_eof(b, c);
            else
                conn_fail(b, c, "server closed the connection", 0);
        } else if (errno == EAGAIN) {
            return;
        } else if (errno != EINTR) {
            conn_fail(b, c, "read", errno);
        }
    }
}

static void
conn_write(struct bench *b, struct conn *c)
{
    const struct bench_opts *o = b->o;

    if (c->role == ROLE_SEND || c->role == ROLE_RECV)
        chat_flush(b, c);
    else if (c->role == ROLE_ECHO && o->mode == BENCH_ECHO_RR)
        rr_issue(b, c, now_us());
    else if (c->role == ROLE_ECHO && b->phase == PH_RUN)
        echo_write(b, c, UINT64_MAX);
}

static void
conn_event(struct bench *b, struct conn *c, uint32_t ev)
{
    if (c->state == CS_CONNECTING) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        conn_connected(b, c);
    }
    if (ev & EPOLLOUT)
        c->wblocked = false;
    conn_read(b, c);
    if (c->state == CS_OPEN)
        conn_write(b, c);
}

static void
timer_event(struct bench *b)
{
    uint64_t due;

    if (read(b->tfd, &due, sizeof(due)) != sizeof(due))
        return;
    chat_pump(b, UTIL_MIN(due, 10000));
}

/* ---- phases ---- */

static const char *const phase_names[] = { "connect", "sync", "settle", "run", "drain", "done" };

static void phase_enter(struct bench *b, enum phase ph, uint64_t now);

static void
run_start(struct bench *b, uint64_t now)
{
    const struct bench_opts *o = b->o;
    struct itimerspec its = { 0 };

    b->t_run = now;
    b->t_deadline = now + o->duration_ms * 1000u;
    if (o->pid) {
        /* after sync every receiver has been accepted, even by a silent server */
        b->rss_with_kib = proc_rss_kib(o->pid);
        b->fds_with = proc_fd_count(o->pid);
        b->cpu0 = proc_cpu_ms(o->pid);
    }
    for (unsigned i = 0; i < b->n; i++)
        if (b->c[i].role == ROLE_ECHO && b->c[i].state == CS_OPEN)
            conn_write(b, &b->c[i]);
    if (o->mode == BENCH_CHAT_FANOUT && o->rate) {
        its.it_interval.tv_nsec = (long)(1000000000ull / o->rate);
        its.it_interval.tv_sec = its.it_interval.tv_nsec / 1000000000;
        its.it_interval.tv_nsec %= 1000000000;
        its.it_value.tv_nsec = 1; /* first messages at once */
        timerfd_settime(b->tfd, 0, &its, NULL);
    }
    if (o->mode == BENCH_CHAT_FANOUT && o->window)
        chat_pump(b, 0); /* the first window's worth goes out now, not at the next wake-up */
}

static void
drain_start(struct bench *b, uint64_t now)
{
    const struct bench_opts *o = b->o;
    struct itimerspec off = { 0 };

    b->t_stop = now;
    b->t_deadline = now + o->drain_ms * 1000u;
    if (o->mode == BENCH_CHAT_FANOUT && o->rate)
        timerfd_settime(b->tfd, 0, &off, NULL);
    b->unfinished = 0;
    for (unsigned i = 0; i < b->n; i++) {
        struct conn *c = &b->c[i];

        if (c->state == CS_CLOSED || c->role != ROLE_ECHO) {
            c->finished = true;
            continue;
        }
        b->unfinished++;
        if (o->half_close && shutdown(c->fd, SHUT_WR) == 0)
            c->state = CS_SHUT;
        echo_check_finished(b, c);
    }
}

static bool
drained(const struct bench *b)
{
    if (b->o->mode == BENCH_CHAT_FANOUT)
        return b->tally.delivered >= (uint64_t)b->o->receivers * b->sent_total;
    return b->unfinished == 0;
}

static void
phase_enter(struct bench *b, enum phase ph, uint64_t now)
{
    const struct bench_opts *o = b->o;

    b->phase = ph;
    b->t_phase = now;
    switch (ph) {
    case PH_SYNC:
        b->sync_base = now;
        b->t_sync = now;
        break;
    case PH_SETTLE:
        b->t_sync = now;
        break;
    case PH_RUN:
        run_start(b, now);
        break;
    case PH_DRAIN:
        drain_start(b, now);
        if (drained(b))
            phase_enter(b, PH_DONE, now);
        break;
    case PH_DONE:
        if (o->pid && b->t_run)
            b->cpu1 = proc_cpu_ms(o->pid);
        break;
    case PH_CONNECT:
        break;
    }
}

/* Everyone is connected (and greeted when the server greets): move on. */
static void
setup_done(struct bench *b, uint64_t now)
{
    const struct bench_opts *o = b->o;

    b->t_connected = now;
    if (o->mode == BENCH_CHAT_FANOUT)
        phase_enter(b, PH_SYNC, now);
    else if (o->mode == BENCH_IDLE && o->pid)
        phase_enter(b, PH_SETTLE, now);
    else
        phase_enter(b, PH_RUN, now);
}

/* While probing, only the first connection may start. */
static bool
can_start(const struct bench *b)
{
    return b->next < b->n && b->pending < b->o->connect_window && (!b->probing || b->next == 0);
}

static void
tick_connect(struct bench *b, uint64_t now)
{
    int rc;

    if (b->probing && b->c[0].state == CS_OPEN && now - b->t_phase > PROBE_MS * 1000u) {
        b->probing = false; /* silent server: confirm on connect from now on */
        conn_confirm(b, &b->c[0]);
    }
    while (can_start(b)) {
        if ((rc = conn_start(b, &b->c[b->next++])) < 0) {
            bench_fail(b, EX_SETUP, "connection %u of %u: %s%s", b->next, b->n, strerror(-rc),
                       rc == -EMFILE ? " (RLIMIT_NOFILE)" : "");
            b->aborted = true;
            return;
        }
    }
    if (b->confirmed + b->setup_failed == b->n)
        setup_done(b, now);
}

static void
tick_sync(struct bench *b, uint64_t now)
{
    if (b->synced >= b->sync_needed) {
        phase_enter(b, PH_RUN, now);
        return;
    }
    if (now >= b->t_sync) {
        size_t n = bench_sync_format(b->line, BENCH_TOKEN_MAX, now);

        b->line[n++] = '\n';
        chat_queue_buf(&b->c[0].out, b->line, n);
        chat_flush(b, &b->c[0]);
        b->t_sync = now + SYNC_EVERY_MS * 1000u;
    }
}

static void
tick_settle(struct bench *b, uint64_t now)
{
    int fds;

    if (now < b->t_sync)
        return;
    b->t_sync = now + SETTLE_POLL_MS * 1000u;
    fds = proc_fd_count(b->o->pid);
    if (fds >= 0 && fds >= b->fds_before + (int)b->n) {
        b->fds_with = fds;
        phase_enter(b, PH_RUN, now);
    }
}

static bool
run_over(const struct bench *b, uint64_t now)
{
    const struct bench_opts *o = b->o;

    if (now >= b->t_deadline)
        return true;
    if (o->count == 0)
        return false;
    if (o->mode == BENCH_ECHO_RR)
        return b->issued >= o->count;
    if (o->mode == BENCH_CHAT_FANOUT) {
        for (unsigned k = 0; k < o->senders; k++)
            if (b->snd[k].sent < o->count)
                return false;
        return true;
    }
    return false;
}

static void
idle_finish(struct bench *b)
{
    if (b->o->pid) {
        b->rss_with_kib = proc_rss_kib(b->o->pid);
        b->fds_with = proc_fd_count(b->o->pid);
    }
}

static void
tick(struct bench *b, uint64_t now)
{
    bool setup = b->phase < PH_RUN;

    if (b->aborted && b->phase != PH_DONE) {
        phase_enter(b, PH_DONE, now);
        return;
    }
    if (setup && now >= b->t0 + b->o->setup_ms * 1000u) {
        bench_fail(b, EX_SETUP, "set-up timed out in the %s phase (%u of %u connections ready%s)",
                   phase_names[b->phase], b->confirmed, b->n,
                   b->phase == PH_SYNC ? ", not every receiver saw the probe line" : "");
        phase_enter(b, PH_DONE, now);
        return;
    }
    switch (b->phase) {
    case PH_CONNECT:
        tick_connect(b, now);
        break;
    case PH_SYNC:
        tick_sync(b, now);
        break;
    case PH_SETTLE:
        tick_settle(b, now);
        break;
    case PH_RUN:
        if (b->o->mode == BENCH_CHAT_FANOUT && b->o->window)
            chat_pump(b, 0);
        if (run_over(b, now)) {
            if (b->o->mode == BENCH_IDLE)
                idle_finish(b);
            phase_enter(b, PH_DRAIN, now);
        }
        break;
    case PH_DRAIN:
        if (drained(b)) {
            phase_enter(b, PH_DONE, now);
        } else if (now >= b->t_deadline) {
            bench_fail(b, EX_FAIL, "drain timed out: not everything sent came back within %.1fs",
                       (double)b->o->drain_ms / 1000.0);
            phase_enter(b, PH_DONE, now);
        }
        break;
    case PH_DONE:
        break;
    }
}

static int
next_timeout_ms(const struct bench *b, uint64_t now)
{
    uint64_t t = b->t_tick;

    if (b->phase < PH_RUN)
        t = UTIL_MIN(t, b->t0 + b->o->setup_ms * 1000u);
    else
        t = UTIL_MIN(t, b->t_deadline);
    if (b->phase == PH_SYNC || b->phase == PH_SETTLE)
        t = UTIL_MIN(t, b->t_sync);
    if (b->probing)
        t = UTIL_MIN(t, b->t_phase + PROBE_MS * 1000u + 1000u);
    if (b->phase == PH_CONNECT && can_start(b))
        return 0;
    return t <= now ? 0 : (int)((t - now + 999) / 1000);
}

static void
progress(struct bench *b, uint64_t now)
{
    uint64_t ops = b->o->mode == BENCH_ECHO_BULK ? b->bytes_run : b->ops_run;
    double secs = (double)(now - b->t0) / 1e6;

    if (b->phase == PH_RUN && b->o->mode == BENCH_ECHO_BULK)
        fprintf(stderr, "\r\033[K[%5.1fs] run: %.1f MB/s", secs,
                (double)(ops - b->prog_last) / 1e6);
    else if (b->phase == PH_RUN && b->o->mode != BENCH_IDLE)
        fprintf(stderr, "\r\033[K[%5.1fs] run: %" PRIu64 " %s/s, p50 %" PRIu64 " us", secs,
                ops - b->prog_last, b->o->mode == BENCH_ECHO_RR ? "round trips" : "deliveries",
                bench_hist_pct(&b->hist, 50));
    else
        fprintf(stderr, "\r\033[K[%5.1fs] %s: %u/%u connections ready", secs, phase_names[b->phase],
                b->confirmed, b->n);
    b->prog_last = ops;
}

static void
dispatch(struct bench *b, const struct epoll_event *ev)
{
    if (ev->data.u32 == TIMER_ID)
        timer_event(b);
    else if (b->c[ev->data.u32].state != CS_CLOSED)
        conn_event(b, &b->c[ev->data.u32], ev->events);
}

static int
bench_loop(struct bench *b)
{
    struct epoll_event evs[NEVENTS];
    bool show = !b->o->quiet && isatty(STDERR_FILENO);
    uint64_t now = now_us();
    int n;

    b->t0 = now;
    b->t_tick = now + 1000000u;
    phase_enter(b, PH_CONNECT, now);
    while (b->phase != PH_DONE) {
        n = epoll_wait(b->ep, evs, NEVENTS, next_timeout_ms(b, now));
        if (n < 0 && errno != EINTR)
            return -errno;
        for (int i = 0; i < n; i++)
            dispatch(b, &evs[i]);
        now = now_us();
        tick(b, now);
        if (now >= b->t_tick) {
            if (show)
                progress(b, now);
            b->t_tick = now + 1000000u;
        }
    }
    if (show)
        fputs("\r\033[K", stderr);
    return 0;
}

/* ---- set-up and report ---- */

/* Idle mode holds as many sockets as asked; other modes may need more than
 * the default 1024 too. Only the soft limit can move, up to the hard one. */
static int
raise_nofile(unsigned need, bool always)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    if ((always || rl.rlim_cur < need) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            return -errno;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        fprintf(stderr,
                "echochat-bench: %u connections need %u file descriptors; RLIMIT_NOFILE "
                "allows %llu\n",
                need - 16, need, (unsigned long long)rl.rlim_cur);
        return -EMFILE;
    }
    return 0;
}

static int
bench_init(struct bench *b, const struct bench_opts *o)
{
    size_t span = UTIL_MAX((size_t)RBUF_SIZE, o->size);
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = TIMER_ID };
    int rc;

    memset(b, 0, sizeof(*b));
    b->o = o;
    b->n = o->conns;
    bench_hist_init(&b->hist);
    if ((b->ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        return -errno;
    b->tfd = -1;
    if ((rc = bench_pattern_init(&b->pat, PAT_PERIOD, span, (uint64_t)now_us())) < 0)
        return rc;
    b->rbuf = xmalloc(RBUF_SIZE);
    b->line = xmalloc(UTIL_MAX(o->size, (size_t)BENCH_TOKEN_MAX) + 2);
    b->c = xcalloc(b->n, sizeof(*b->c));
    for (unsigned i = 0; i < b->n; i++) {
        struct conn *c = &b->c[i];

        c->fd = -1;
        c->base = (uint64_t)i * 104729u; /* streams start apart: cross-talk shows */
        c->role = o->mode == BENCH_IDLE ? ROLE_IDLE : ROLE_ECHO;
        if (o->mode == BENCH_ECHO_RR)
            c->stamps = xcalloc(o->pipeline, sizeof(*c->stamps));
        if (o->mode == BENCH_CHAT_FANOUT) {
            c->role = i < o->senders ? ROLE_SEND : ROLE_RECV;
            c->id = i < o->senders ? i : i - o->senders;
        }
    }
    /* the probe tells whether a server speaks first; echo servers never do */
    b->probing = o->mode == BENCH_CHAT_FANOUT || o->mode == BENCH_IDLE;
    if (o->mode == BENCH_CHAT_FANOUT) {
        b->snd = xcalloc(o->senders, sizeof(*b->snd));
        for (unsigned k = 0; k < o->senders && o->window; k++)
            b->snd[k].acks = xcalloc(o->window, sizeof(uint32_t));
        b->seq = xcalloc((size_t)o->receivers * o->senders, sizeof(*b->seq));
        b->sync_needed = b->n - 1;
        b->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (b->tfd < 0 || epoll_ctl(b->ep, EPOLL_CTL_ADD, b->tfd, &ev) < 0)
            return -errno;
    }
    if (o->pid) {
        b->rss_before_kib = proc_rss_kib(o->pid);
        b->fds_before = proc_fd_count(o->pid);
        if (b->rss_before_kib < 0)
            fprintf(stderr, "echochat-bench: warning: cannot read /proc/%ld\n", o->pid);
    }
    return 0;
}

static void
bench_fini(struct bench *b)
{
    for (unsigned i = 0; i < b->n; i++) {
        conn_close(b, &b->c[i]);
        free(b->c[i].stamps);
    }
    if (b->snd)
        for (unsigned k = 0; k < b->o->senders; k++)
            free(b->snd[k].acks);
    free(b->snd);
    free(b->seq);
    free(b->c);
    free(b->rbuf);
    free(b->line);
    bench_pattern_fini(&b->pat);
    if (b->tfd >= 0)
        close(b->tfd);
    close(b->ep);
}

/* The verdict: loss, corruption and reordering all fail the run. */
static void
bench_judge(struct bench *b)
{
    const struct bench_opts *o = b->o;

    if (o->mode == BENCH_CHAT_FANOUT && b->phase == PH_DONE && b->t_run) {
        for (unsigned r = 0; r < o->receivers; r++)
            for (unsigned k = 0; k < o->senders; k++)
                bench_seq_finish(&b->seq[(size_t)r * o->senders + k], b->snd[k].sent, &b->tally);
        if (b->tally.lost)
            bench_fail(b, EX_FAIL, "%" PRIu64 " deliveries lost", b->tally.lost);
        if (b->tally.reordered)
            bench_fail(b, EX_FAIL, "%" PRIu64 " deliveries out of order", b->tally.reordered);
    }
    if (b->lost_bytes)
        bench_fail(b, EX_FAIL, "%" PRIu64 " bytes never came back", b->lost_bytes);
    if (o->mode == BENCH_IDLE && b->closed)
        bench_fail(b, EX_FAIL, "the server dropped %" PRIu64 " idle connections", b->closed);
}

static const char *
status_word(const struct bench *b)
{
    if (!b->exit_code)
        return "ok";
    if (b->corrupt)
        return "corruption";
    if (b->tally.lost || b->lost_bytes)
        return "loss";
    if (b->tally.reordered)
        return "reorder";
    if (b->exit_code == EX_SETUP)
        return "setup";
    if (b->closed)
        return "closed";
    return "timeout";
}

static void
report_latency(const struct bench *b, char *out, size_t cap)
{
    const struct bench_hist *h = &b->hist;

    snprintf(out, cap,
             "p50_us=%" PRIu64 " p99_us=%" PRIu64 " p999_us=%" PRIu64 " max_us=%" PRIu64
             " mean_us=%" PRIu64,
             bench_hist_pct(h, 50), bench_hist_pct(h, 99), bench_hist_pct(h, 99.9),
             h->n ? h->max : 0, h->n ? h->sum / h->n : 0);
}

static void
report_server(const struct bench *b, uint64_t ops, char *out, size_t cap)
{
    uint64_t cpu = b->t_run && b->cpu1 >= b->cpu0 ? b->cpu1 - b->cpu0 : 0;

    if (!b->o->pid) {
        out[0] = '\0';
        return;
    }
    snprintf(out, cap,
             " server_cpu_ms=%" PRIu64 " cpu_ns_per_op=%.0f server_rss_kib=%ld server_fds=%d", cpu,
             ops ? (double)cpu * 1e6 / (double)ops : 0.0, b->rss_with_kib, b->fds_with);
}

static void
bench_report(const struct bench *b)
{
    const struct bench_opts *o = b->o;
    double secs = b->t_stop > b->t_run ? (double)(b->t_stop - b->t_run) / 1e6 : 0.0;
    double connect_ms = b->t_connected ? (double)(b->t_connected - b->t0) / 1e3 : 0.0;
    double rate = secs > 0 ? (double)b->ops_run / secs : 0.0;
    char lat[256], srv[256], head[128];

    report_latency(b, lat, sizeof(lat));
    snprintf(head, sizeof(head), "RESULT mode=%s status=%s", bench_mode_name(o->mode),
             status_word(b));
    switch (o->mode) {
    case BENCH_ECHO_RR:
        report_server(b, b->ops_run, srv, sizeof(srv));
        printf("echo-rr: %u connections, %zu-byte messages, pipeline %u: %.0f round trips/s over "
               "%.2fs\n  latency: %s\n",
               o->conns, o->size, o->pipeline, rate, secs, lat);
        printf("%s conns=%u size=%zu pipeline=%u duration_s=%.3f round_trips=%" PRIu64
               " rt_per_s=%.0f %s lost_bytes=%" PRIu64 " corrupt=%" PRIu64 " closed=%" PRIu64
               "%s\n",
               head, o->conns, o->size, o->pipeline, secs, b->ops_run, rate, lat, b->lost_bytes,
               b->corrupt, b->closed, srv);
        break;
    case BENCH_ECHO_BULK: {
        double mbps = secs > 0 ? (double)b->bytes_run / secs / 1e6 : 0.0;
        report_server(b, b->bytes_run, srv, sizeof(srv));
        printf("echo-bulk: %u connections: %.1f MB/s over %.2fs, every byte verified%s\n", o->conns,
               mbps, secs, o->half_close ? ", half-close at the end" : "");
        printf("%s conns=%u size=%zu half_close=%d duration_s=%.3f bytes=%" PRIu64
               " mb_per_s=%.1f lost_bytes=%" PRIu64 " corrupt=%" PRIu64 " half_close_ok=%" PRIu64
               " closed=%" PRIu64 "%s\n",
               head, o->conns, o->size, o->half_close, secs, b->bytes_run, mbps, b->lost_bytes,
               b->corrupt, b->half_closed_ok, b->closed, srv);
        break;
    }
    case BENCH_CHAT_FANOUT:
        report_server(b, b->tally.delivered, srv, sizeof(srv));
        printf("chat-fanout: %u receivers, %u senders, %s %u: %.0f deliveries/s over %.2fs\n"
               "  latency: %s\n  sent %" PRIu64 ", delivered %" PRIu64 ", lost %" PRIu64
               ", out of order %" PRIu64 ", sender gets its own line: %s\n",
               o->receivers, o->senders, o->rate ? "rate" : "window", o->rate ? o->rate : o->window,
               rate, secs, lat, b->sent_total, b->tally.delivered, b->tally.lost,
               b->tally.reordered, b->self_echo ? "yes" : "no");
        printf("%s receivers=%u senders=%u rate=%u window=%u size=%zu duration_s=%.3f sent=%" PRIu64
               " deliveries=%" PRIu64 " deliveries_per_s=%.0f %s lost=%" PRIu64
               " reordered=%" PRIu64 " corrupt=%" PRIu64 " stale=%" PRIu64
               " self_echo=%d connect_ms=%.1f closed=%" PRIu64 "%s\n",
               head, o->receivers, o->senders, o->rate, o->window, o->size, secs, b->sent_total,
               b->tally.delivered, rate, lat, b->tally.lost, b->tally.reordered, b->corrupt,
               b->stale, b->self_echo > 0, connect_ms, b->closed, srv);
        break;
    case BENCH_IDLE: {
        uint64_t held = 0;
        long per = o->pid && b->rss_before_kib >= 0 && b->rss_with_kib >= 0
                       ? (b->rss_with_kib - b->rss_before_kib) * 1024 / (long)b->n
                       : -1;

        printf("idle: %u connections held for %.2fs (%" PRIu64 " dropped), connected in %.0f ms",
               o->conns, secs, b->closed, connect_ms);
        if (o->pid)
            printf("; server RSS %ld -> %ld KiB = %ld bytes per connection, %d fds",
                   b->rss_before_kib, b->rss_with_kib, per, b->fds_with);
        for (unsigned i = 0; i < b->n; i++)
            held += b->c[i].state == CS_OPEN;
        printf("\n%s conns=%u held=%" PRIu64 " dropped=%" PRIu64 " hold_s=%.3f connect_ms=%.1f",
               head, o->conns, held, b->closed, secs, connect_ms);
        if (o->pid)
            printf(" rss_before_kib=%ld rss_with_kib=%ld rss_per_conn_bytes=%ld server_fds=%d",
                   b->rss_before_kib, b->rss_with_kib, per, b->fds_with);
        printf("\n");
        break;
    }
    case BENCH_MODE_NONE:
        break;
    }
    if (b->why[0])
        fprintf(stderr, "echochat-bench: FAILED: %s\n", b->why);
}

static void
usage(FILE *f)
{
    fputs("usage: echochat-bench MODE [OPTION]... [HOST:]PORT\n"
          "Load generator for echochatd (and any echo server or line relay) on loopback.\n"
          "HOST must be a loopback address (127.0.0.0/8, ::1, localhost; default 127.0.0.1).\n"
          "\n"
          "modes:\n"
          "  echo-rr       round trips: C connections, S-byte messages, P in flight each\n"
          "  echo-bulk     C connections stream verified bytes, unbounded in flight\n"
          "  chat-fanout   R receivers + K senders; tokens carry sender, sequence, send time\n"
          "  idle          hold C connections; with --pid, server RSS per connection\n"
          "\n"
          "options:\n"
          "  -c, --conns N          connections (echo-rr 1, echo-bulk 4, idle 100)\n"
          "  -s, --size BYTES       echo-rr message (64), echo-bulk write (65536),\n"
          "                         chat line length with the token (0: token only)\n"
          "  -P, --pipeline N       echo-rr: messages in flight per connection (1)\n"
          "  -d, --duration SECS    measuring time, or idle hold time (5, at most 600)\n"
          "  -n, --count N          echo-rr: round trips in all; chat: messages per sender\n"
          "      --half-close       echo-bulk: shut down writing at the end; every byte\n"
          "                         must come back, then EOF\n"
          "  -r, --receivers N      chat receivers (10)\n"
          "  -k, --senders N        chat senders (1)\n"
          "      --rate N           chat: messages per second per sender\n"
          "  -w, --window N         chat: messages per sender not yet at every receiver\n"
          "                         (default 1 when --rate is not given)\n"
          "      --pid PID          the server's PID: report its CPU, RSS and fds (/proc)\n"
          "      --connect-window N connections being set up at once (256)\n"
          "      --setup-timeout S  connecting and joining must finish within S (30)\n"
          "      --drain-timeout S  after the run, what is owed must arrive within S (5)\n"
          "  -q, --quiet            no progress line on a terminal\n"
          "  -h, --help / -V, --version\n"
          "\n"
          "Prints a summary and one line 'RESULT mode=... key=value...'. Exits 0 when\n"
          "nothing was lost, corrupted or reordered, 1 when something was, 2 when the run\n"
          "could not be set up, 64 on a usage error.\n"
          "echochatd limits each chat client to 20 lines/s by default: benchmark it with\n"
          "--rate-limit 0.\n",
          f);
}

int
main(int argc, char *argv[])
{
    struct bench_opts o;
    struct bench b;
    char err[256];
    int rc;

    if (bench_opts_parse(&o, argc, argv, err, sizeof(err)) < 0) {
        fprintf(stderr, "echochat-bench: %s (try --help)\n", err);
        return BENCH_EX_USAGE;
    }
    if (o.help || o.version) {
        if (o.help)
            usage(stdout);
        else
            printf("echochat-bench %s\n", ECHOCHAT_VERSION);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    if (raise_nofile(o.conns + 16, o.mode == BENCH_IDLE) < 0)
        return EX_SETUP;
    if ((rc = bench_init(&b, &o)) < 0) {
        fprintf(stderr, "echochat-bench: set-up: %s\n", strerror(-rc));
        return EX_SETUP;
    }
    if ((rc = bench_loop(&b)) < 0)
        bench_fail(&b, EX_SETUP, "epoll_wait: %s", strerror(-rc));
    bench_judge(&b);
    bench_report(&b);
    rc = b.exit_code;
    bench_fini(&b);
    return rc;
}
