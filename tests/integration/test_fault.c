/*
 * Fault and load tests (issue 6): the real daemon under garbage, churn,
 * slowloris, resets in the middle of a fan-out, descriptor exhaustion and a
 * SIGTERM during heavy traffic. Each test drives hundreds or thousands of
 * connections from one epoll loop in this process (never a thread per
 * connection), with a fixed random seed, and checks what well-behaved
 * clients see meanwhile: every line intact, in order, clean on the wire.
 *
 * Every test is bounded in time: each phase has a deadline and a miss fails
 * the test with the numbers it got so far. The numbers (times, CPU, RSS, fd
 * counts) are printed, so a slow machine shows where the time went.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define LC_PART  (64 * 1024) /* longest line a line client accepts */
#define LC_OUT   (64 * 1024) /* unsent bytes a line client may hold */
#define NEVENTS  512
#define MAX_LINE 1024 /* --max-line where a test sets it */

static const char *const chat_names[] = { "chat", NULL };

struct fixture {
    struct h_daemon d;
    int ep;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    h_init(&f->d);
    f->ep = epoll_create1(EPOLL_CLOEXEC);
    assert_true(f->ep >= 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    h_cleanup(&f->d);
    close(f->ep);
    free(f);
    return 0;
}

static double
mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: a fixed seed makes every run send the same garbage. */
static uint64_t
rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static unsigned
rng_below(uint64_t *s, unsigned n)
{
    return (unsigned)(rng_next(s) % n);
}

/* ---- the test's own event loop ---- */

/* epoll data: which table (kind) and which entry (index). */
static uint64_t
tag(unsigned kind, unsigned idx)
{
    return (uint64_t)kind << 32 | idx;
}

static void
ep_set(int ep, int op, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event e = { .events = events, .data.u64 = data };

    if (epoll_ctl(ep, op, fd, &e) < 0)
        fail_msg("epoll_ctl(%d, fd %d): %s", op, fd, strerror(errno));
}

/* A non-blocking connect to 127.0.0.1:port; the fd or -errno. */
static int
nb_connect(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* Close with RST: SO_LINGER {1, 0} discards the queue and resets. */
static void
close_reset(int fd)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

static void
set_nonblock(int fd)
{
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

/* ---- what a chat client may receive ---- */

static bool
is_nick_char(uint8_t ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
}

/* Length of a nick at p (1..24 valid characters) followed by `end`, or 0. */
static size_t
nick_then(const char *p, size_t n, char end)
{
    size_t k = 0;

    while (k < n && k < 25 && is_nick_char((uint8_t)p[k]))
        k++;
    return k >= 1 && k <= 24 && k < n && p[k] == end ? k : 0;
}

/*
 * SPEC section 5: every line carries a nick or is the server's. A line that
 * passes this cannot be mistaken for another user's or the server's.
 */
static bool
chat_form_ok(const char *p, size_t n)
{
    size_t k;

    if (n >= 4 && memcmp(p, "*** ", 4) == 0)
        return true;
    if (n >= 3 && p[0] == '<' && (k = nick_then(p + 1, n - 1, '>')) > 0)
        return 1 + k + 1 == n || p[1 + k + 1] == ' ';
    if (n >= 3 && memcmp(p, "* ", 2) == 0 && nick_then(p + 2, n - 2, ' ') > 0)
        return true;
    if (n >= 3 && p[0] == '*' && (k = nick_then(p + 1, n - 1, '*')) > 0)
        return 1 + k + 1 == n || p[1 + k + 1] == ' ';
    if (n >= 5 && memcmp(p, "-> *", 4) == 0 && nick_then(p + 4, n - 4, '*') > 0)
        return true;
    return false;
}

/*
 * What no line on the wire may hold: C0 controls except TAB, DEL, C1
 * controls, 0xFF or any other invalid UTF-8 (overlong forms, surrogates,
 * code points past U+10FFFF, truncated sequences). Returns why, or NULL.
 */
static const char *
text_violation(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t b = p[i];
        uint32_t cp;
        size_t len;

        if (b < 0x80) {
            if ((b < 0x20 && b != '\t') || b == 0x7f)
                return b == 0x1b ? "ESC" : b == '\r' ? "bare CR" : "C0 control or DEL";
            i++;
            continue;
        }
        if (b >= 0xc2 && b <= 0xdf) {
            len = 2;
            cp = b & 0x1f;
        } else if (b >= 0xe0 && b <= 0xef) {
            len = 3;
            cp = b & 0x0f;
        } else if (b >= 0xf0 && b <= 0xf4) {
            len = 4;
            cp = b & 0x07;
        } else {
            return b == 0xff ? "0xFF byte" : "invalid UTF-8 lead byte";
        }
        if (i + len > n)
            return "truncated UTF-8";
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return "bad UTF-8 continuation";
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
            return "overlong UTF-8";
        if (cp >= 0xd800 && cp <= 0xdfff)
            return "UTF-8 surrogate";
        if (cp > 0x10ffff)
            return "code point past U+10FFFF";
        if (cp >= 0x80 && cp <= 0x9f)
            return "C1 control";
        i += len;
    }
    return NULL;
}

/* ---- line clients: well-behaved chat users inside the test's loop ---- */

struct lc;
/* A complete line (CR LF removed, NUL-terminated in place). Return false to
 * stop handing out lines for now (the rest stay buffered). */
typedef bool lc_line_fn(struct lc *c, char *line, size_t len, void *arg);

struct lc {
    int fd;
    int id;
    bool eof;     /* the daemon's FIN came */
    int err;      /* errno of a failed read or write; 0 if none */
    bool chat;    /* check the chat line forms too */
    size_t plen;  /* bytes in part */
    size_t olen;  /* bytes in out */
    size_t lines; /* complete lines received */
    char bad[200];
    char last[256]; /* the last line received */
    char part[LC_PART + 1];
    char out[LC_OUT];
};

static struct lc *
lc_new(int fd, int id)
{
    struct lc *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->fd = fd;
    c->id = id;
    c->chat = true;
    set_nonblock(fd);
    return c;
}

static void
lc_free(struct lc *c)
{
    if (c == NULL)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

static void
lc_bad(struct lc *c, const char *why, const char *line, size_t len)
{
    if (c->bad[0] == '\0')
        snprintf(c->bad, sizeof(c->bad), "client %d: %s in line %zu: \"%.*s\"", c->id, why,
                 c->lines, (int)(len < 80 ? len : 80), line);
}

/* Check one raw line (without its LF) and hand it on. */
static bool
lc_take(struct lc *c, char *line, size_t len, lc_line_fn *fn, void *arg)
{
    const char *why;

    c->lines++;
    if (len == 0 || line[len - 1] != '\r') {
        lc_bad(c, "LF without CR", line, len);
    } else {
        len--;
        if ((why = text_violation((const uint8_t *)line, len)) != NULL)
            lc_bad(c, why, line, len);
        else if (c->chat && !chat_form_ok(line, len))
            lc_bad(c, "not a chat line form", line, len);
    }
    line[len] = '\0';
    /* keep a prefix of the last line, for failure messages */
    size_t keep = len < sizeof(c->last) - 1 ? len : sizeof(c->last) - 1;
    memcpy(c->last, line, keep);
    c->last[keep] = '\0';
    return fn != NULL ? fn(c, line, len, arg) : true;
}

/* Hand out the complete lines already buffered. False if fn said stop. */
static bool
lc_lines(struct lc *c, lc_line_fn *fn, void *arg)
{
    size_t start = 0;
    bool go = true;
    char *nl;

    while (go && (nl = memchr(c->part + start, '\n', c->plen - start)) != NULL) {
        size_t len = (size_t)(nl - (c->part + start));
        go = lc_take(c, c->part + start, len, fn, arg);
        start += len + 1;
    }
    memmove(c->part, c->part + start, c->plen - start);
    c->plen -= start;
    return go;
}

/* Read what is there (until EAGAIN), handing out lines. Returns bytes read. */
static size_t
lc_pump(struct lc *c, lc_line_fn *fn, void *arg)
{
    size_t total = 0;

    if (!lc_lines(c, fn, arg))
        return 0;
    while (!c->eof && c->err == 0) {
        ssize_t n = recv(c->fd, c->part + c->plen, LC_PART - c->plen, MSG_DONTWAIT);

        if (n == 0) {
            c->eof = true;
            break;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                c->err = errno;
            break;
        }
        total += (size_t)n;
        c->plen += (size_t)n;
        if (!lc_lines(c, fn, arg))
            break;
        if (c->plen == LC_PART) {
            lc_bad(c, "line longer than the test's buffer", c->part, 80);
            c->plen = 0;
        }
    }
    return total;
}

/* Write what the kernel takes. True when nothing is left. */
static bool
lc_flush(struct lc *c)
{
    while (c->olen > 0 && c->err == 0) {
        ssize_t n = send(c->fd, c->out, c->olen, MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                c->err = errno;
            break;
        }
        memmove(c->out, c->out + n, c->olen - (size_t)n);
        c->olen -= (size_t)n;
    }
    return c->olen == 0;
}

static void
lc_queue(struct lc *c, const char *s, size_t n)
{
    if (c->olen + n > LC_OUT)
        fail_msg("client %d: test output queue full (daemon not reading?)", c->id);
    memcpy(c->out + c->olen, s, n);
    c->olen += n;
    lc_flush(c);
}

static void
lc_say(struct lc *c, const char *s)
{
    lc_queue(c, s, strlen(s));
}

struct lc_find {
    const char *needle;
    bool found;
};

static bool
lc_find_fn(struct lc *c, char *line, size_t len, void *arg)
{
    struct lc_find *w = arg;

    (void)c;
    (void)len;
    if (strstr(line, w->needle) == NULL)
        return true;
    w->found = true;
    return false; /* leave what follows for the caller */
}

/* Block (poll, deadline) until a line containing needle arrives; the lines
 * before it are checked and dropped. Fails the test on a miss. */
static void
lc_expect(struct lc *c, const char *needle, int timeout_ms)
{
    struct lc_find w = { needle, false };
    long deadline = h_now_ms() + timeout_ms;

    for (;;) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        long left;

        lc_flush(c);
        lc_pump(c, lc_find_fn, &w);
        if (w.found)
            return;
        if (c->eof || c->err)
            fail_msg("client %d: %s before \"%s\"", c->id, c->eof ? "EOF" : strerror(c->err),
                     needle);
        if ((left = deadline - h_now_ms()) <= 0)
            fail_msg("client %d: no \"%s\" within %d ms (last: \"%s\")", c->id, needle, timeout_ms,
                     c->last);
        poll(&p, 1, (int)left);
    }
}

/* A chat user: connect, welcome, optional nick and room. */
static struct lc *
lc_user(struct fixture *f, int id, const char *nick, const char *room)
{
    struct lc *c = lc_new(h_connect(f->d.port[0]), id);
    char cmd[96];

    lc_expect(c, "*** welcome", H_TIMEOUT_MS);
    if (nick != NULL) {
        snprintf(cmd, sizeof(cmd), "/nick %s\n", nick);
        lc_say(c, cmd);
        snprintf(cmd, sizeof(cmd), "you are now known as %s", nick);
        lc_expect(c, cmd, H_TIMEOUT_MS);
    }
    if (room != NULL) {
        snprintf(cmd, sizeof(cmd), "/join %s\n", room);
        lc_say(c, cmd);
        /* the reply names the room; the join is complete once it came */
        lc_expect(c, room, H_TIMEOUT_MS);
    }
    return c;
}

/* Fail with the first malformed line any of cs[] received. */
static void
lc_assert_clean(struct lc **cs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cs[i] != NULL && cs[i]->bad[0] != '\0')
            fail_msg("%s", cs[i]->bad);
}

/* True when the process maps a sanitizer runtime or valgrind's preload:
 * its memory figures then say nothing about ours. */
static bool
instrumented(pid_t pid)
{
    char path[64], line[512];
    bool hit = false;
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    if ((fp = fopen(path, "r")) == NULL)
        return false;
    while (!hit && fgets(line, sizeof(line), fp) != NULL)
        hit = strstr(line, "libasan") != NULL || strstr(line, "vgpreload") != NULL ||
              strstr(line, "libtsan") != NULL;
    fclose(fp);
    return hit;
}

/* A latency limit for the daemon as built: instrumented builds run several
 * times slower, so their limit is five times as long. */
static long
rtt_limit(const struct fixture *f, long ms)
{
    return instrumented(f->d.pid) ? 5 * ms : ms;
}

/* ---- a two-user conversation that must stay fast and whole ---- */

/*
 * Ping-pong in a room of its own: a says "ping N", b answers "pong N", a
 * records the round trip and, at most every period_ms, sends the next.
 * Every answer must come, in order; pingpong_check() fails the test
 * otherwise. It runs inside a test's loop through pingpong_step().
 */
struct pingpong {
    struct lc *a, *b;
    int period_ms;
    int sent, answered, forwarded; /* pings sent, pongs back, pings b saw */
    long sent_at;
    long max_rtt, sum_rtt;
    char err[200];
};

static bool
pp_b_line(struct lc *c, char *line, size_t len, void *arg)
{
    struct pingpong *pp = arg;
    char want[64], reply[64];

    (void)len;
    if (strncmp(line, "<pa> ping ", 10) != 0)
        return true;
    snprintf(want, sizeof(want), "<pa> ping %d", pp->forwarded);
    if (strcmp(line, want) != 0 && pp->err[0] == '\0')
        snprintf(pp->err, sizeof(pp->err), "b got \"%s\", want \"%s\"", line, want);
    snprintf(reply, sizeof(reply), "pong %d\n", pp->forwarded++);
    lc_say(c, reply);
    return true;
}

static bool
pp_a_line(struct lc *c, char *line, size_t len, void *arg)
{
    struct pingpong *pp = arg;
    char want[64];
    long rtt;

    (void)c;
    (void)len;
    if (strncmp(line, "<pb> pong ", 10) != 0)
        return true;
    snprintf(want, sizeof(want), "<pb> pong %d", pp->answered);
    if (strcmp(line, want) != 0 && pp->err[0] == '\0')
        snprintf(pp->err, sizeof(pp->err), "a got \"%s\", want \"%s\"", line, want);
    pp->answered++;
    rtt = h_now_ms() - pp->sent_at;
    pp->sum_rtt += rtt;
    if (rtt > pp->max_rtt)
        pp->max_rtt = rtt;
    return true;
}

static void
pingpong_start(struct fixture *f, struct pingpong *pp, int period_ms, unsigned kind)
{
    memset(pp, 0, sizeof(*pp));
    pp->period_ms = period_ms;
    pp->a = lc_user(f, 9001, "pa", "pingpong");
    pp->b = lc_user(f, 9002, "pb", "pingpong");
    ep_set(f->ep, EPOLL_CTL_ADD, pp->a->fd, EPOLLIN, tag(kind, 0));
    ep_set(f->ep, EPOLL_CTL_ADD, pp->b->fd, EPOLLIN, tag(kind, 1));
}

/* Read both ends; send the next ping when the last one is back and the
 * period has passed. Call on their events and on every loop turn. */
static void
pingpong_step(struct pingpong *pp)
{
    char msg[64];
    long now = h_now_ms();

    lc_pump(pp->b, pp_b_line, pp);
    lc_flush(pp->b);
    lc_pump(pp->a, pp_a_line, pp);
    if (pp->answered == pp->sent && now - pp->sent_at >= pp->period_ms) {
        snprintf(msg, sizeof(msg), "ping %d\n", pp->sent++);
        pp->sent_at = now;
        lc_say(pp->a, msg);
    }
    lc_flush(pp->a);
}

/* Wait (bounded) for the ping in flight, then check the whole exchange. */
static void
pingpong_finish(struct pingpong *pp, long max_rtt_ms)
{
    long deadline = h_now_ms() + H_TIMEOUT_MS;

    while (pp->answered < pp->sent && h_now_ms() < deadline) {
        struct pollfd p[2] = { { .fd = pp->a->fd, .events = POLLIN },
                               { .fd = pp->b->fd, .events = POLLIN } };
        poll(p, 2, 10);
        pp->period_ms = 1 << 30; /* no new pings */
        pingpong_step(pp);
    }
    print_message("pingpong: %d round trips, max %ld ms, mean %.1f ms\n", pp->answered, pp->max_rtt,
                  pp->answered ? (double)pp->sum_rtt / pp->answered : 0.0);
    if (pp->err[0] != '\0')
        fail_msg("pingpong: %s", pp->err);
    lc_assert_clean((struct lc *[]){ pp->a, pp->b }, 2);
    if (pp->a->eof || pp->a->err || pp->b->eof || pp->b->err)
        fail_msg("pingpong: a connection ended");
    assert_int_equal(pp->answered, pp->sent);
    assert_true(pp->sent > 0);
    if (pp->max_rtt > max_rtt_ms)
        fail_msg("pingpong: a round trip took %ld ms (limit %ld)", pp->max_rtt, max_rtt_ms);
}

/* Hand the line clients' fds over to fds[] (for h_stop_clients, which
 * closes them); returns how many. */
static size_t
lc_fds(struct lc **cs, size_t n, int *fds)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        if (cs[i] != NULL && cs[i]->fd >= 0) {
            fds[k++] = cs[i]->fd;
            cs[i]->fd = -1;
        }
    }
    return k;
}

/* A string literal as an initializer pair: its bytes and length (NULs count). */
#define P(s) (s), sizeof(s) - 1

/* The daemon flags of the load tests: quiet log (one line per connection
 * would be most of the work), no rate limit, room for everyone. */
#define LOAD_ARGS "--log-level", "notice", "--rate-limit", "0", "--max-clients", "20000"

/* ======================================================================
 * 10,000 connections of garbage while three users hold a conversation
 * ====================================================================== */

#define G_TOTAL    10000
#define G_WAVE     2000
#define G_INFLIGHT 512 /* connects not yet completed, below the backlog */
#define G_TALKERS  3
#define G_LINES    100 /* per talker: 300 in all */
#define G_CHUNK_MS 15  /* pause between a garbage client's chunks */
#define G_BUF      (48 * 1024)

enum g_state { G_FREE, G_CONNECTING, G_SENDING, G_WAITING, G_DRAINING };
enum g_end { G_END_CLOSE, G_END_RESET, G_END_HALF };

struct gconn {
    int fd;
    uint8_t state;
    uint8_t end;
    uint8_t chunks; /* pieces the garbage is written in */
    uint32_t len, off, next_cut;
    long due;  /* G_WAITING: when the next chunk goes; G_DRAINING: deadline */
    int qnext; /* the chunk-delay FIFO */
    uint8_t *buf;
};

struct garbage {
    struct gconn c[G_WAVE];
    int qhead, qtail; /* FIFO of waiting connections (same delay: sorted) */
    uint64_t rng;
    unsigned opened, done, connecting, live, wave_left;
    unsigned long long bytes;
    unsigned ends[3];
    unsigned refused; /* connects that failed (should be none) */
};

/* One piece of garbage appended at p; returns its length. */
static size_t
g_piece(uint64_t *r, uint8_t *p, size_t room)
{
    static const struct {
        const char *s;
        size_t n;
    } fixed[] = {
        { P("\xff\xfb\x01\xff\xfb\x03\xff\xfd\x18\xff\xfd\x1f") }, /* WILL ECHO, DO TTYPE... */
        { P("\xff\xfa\x18\x00xterm-256color\xff\xf0") },           /* SB TTYPE IS ... SE */
        { P("\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0") },             /* NAWS */
        { P("\xff\xf4\xff\xfd\x06") },                             /* IP, DO TM */
        { P("\xff\xff\xff\xff") },                                 /* escaped IAC */
        { P("\xff") },                                             /* lone IAC */
        { P("\x1b[2J\x1b[H") },                                    /* clear screen */
        { P("\x1b]0;owned\x07") },                                 /* set title */
        { P("\x1b[31mred\x1b[0m") },                               /* colour */
        { P("\23331m\302\23332m") }, /* C1 CSI, raw and UTF-8 encoded */
        { P("\xc0\x80\xe0\x80\xaf\xed\xa0\x80\xf4\x90\x80\x80") }, /* overlong, surrogate, big */
        { P("\xf8\x88\x80\x80\x80\x80\xbf\xe6\x97") },             /* 5-byte, stray, truncated */
        { P("*** server says hi\n") },                             /* forged server line */
        { P("<alice> forged\r\n") },                               /* forged user line */
        { P("\r\0") },                                             /* CR NUL */
        { P("\r") },                                               /* bare CR */
        { P("\n") },
        { P("\r\n") },
        { P("/me \x1b[5mblinks\n") },
        { P("/nick \x1b\n") },
        { P("/join \xff\xfe\n") },
        { P("/who\n") },
        { P("/rooms\n") },
        { P("/bogus\x07\n") },
        { P("//\x1b[1mslash\n") },
        { P("/msg t0 \x1b[2Jhi\n") },
        { P("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82\n") }, /* valid UTF-8 */
    };
    unsigned kind = rng_below(r, 10);
    size_t n = 0;

    if (kind < 4) { /* random bytes, LF rare */
        n = 1 + rng_below(r, 200);
        for (size_t i = 0; i < n && i < room; i++) {
            uint8_t b = (uint8_t)rng_next(r);
            p[i] = b == '\n' && rng_below(r, 4) ? 'x' : b;
        }
    } else if (kind < 5) { /* NUL or 0xFF runs */
        n = 1 + rng_below(r, 300);
        memset(p, rng_below(r, 2) ? 0xff : 0x00, n < room ? n : room);
    } else {
        unsigned k = rng_below(r, sizeof(fixed) / sizeof(fixed[0]));
        n = fixed[k].n;
        memcpy(p, fixed[k].s, n < room ? n : room);
    }
    return n < room ? n : room;
}

/* A garbage client's bytes: pieces, sometimes a line far past --max-line. */
static uint32_t
g_make(uint64_t *r, uint8_t *p, size_t cap)
{
    size_t len = 0, pieces = 1 + rng_below(r, 12);

    for (size_t i = 0; i < pieces && len < cap; i++) {
        if (rng_below(r, 40) == 0) { /* a huge line */
            size_t n = MAX_LINE + 1 + rng_below(r, 4 * MAX_LINE);
            if (n > cap - len)
                n = cap - len;
            for (size_t k = 0; k < n; k++)
                p[len + k] = (uint8_t)('A' + k % 26);
            if (rng_below(r, 2))
                p[len + n / 2] = 0xff;
            len += n;
            if (len < cap)
                p[len++] = '\n';
            continue;
        }
        len += g_piece(r, p + len, cap - len);
    }
    return (uint32_t)len;
}

/* The talkers' lines: numbered, with UTF-8 that must survive untouched. */
static void
talk_text(char *buf, size_t cap, int who, int seq)
{
    snprintf(buf, cap, "t%d line %03d caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82 end",
             who, seq);
}

struct talk {
    struct lc *t[G_TALKERS];
    int next[G_TALKERS][G_TALKERS]; /* [receiver][sender]: next seq expected */
    int sent[G_TALKERS];
    size_t relayed_other; /* lines from anyone else (garbage relays) */
    char err[600];
};

static bool
talk_line(struct lc *c, char *line, size_t len, void *arg)
{
    struct talk *tk = arg;
    char want[256], prefix[16];

    (void)len;
    for (int s = 0; s < G_TALKERS; s++) {
        int n = snprintf(prefix, sizeof(prefix), "<t%d> ", s);
        if (strncmp(line, prefix, (size_t)n) != 0)
            continue;
        if (s == c->id && tk->err[0] == '\0')
            snprintf(tk->err, sizeof(tk->err), "t%d got its own line back: %s", s, line);
        int *next = &tk->next[c->id][s];
        talk_text(want, sizeof(want), s, *next);
        if (strcmp(line + n, want) != 0 && tk->err[0] == '\0')
            snprintf(tk->err, sizeof(tk->err), "t%d: got \"%s\", want \"%s\"", c->id, line + n,
                     want);
        (*next)++;
        return true;
    }
    tk->relayed_other++;
    return true;
}

/* The conversation goes round: talker k%3 sends line k once everyone has
 * line k-1 and the garbage is far enough along (it is spread over the run). */
static void
talk_step(struct talk *tk, unsigned progress, unsigned total)
{
    int k = tk->sent[0] + tk->sent[1] + tk->sent[2];
    int who = k % G_TALKERS;
    char line[256];

    for (int i = 0; i < G_TALKERS; i++) {
        lc_pump(tk->t[i], talk_line, tk);
        lc_flush(tk->t[i]);
    }
    if (k >= G_TALKERS * G_LINES ||
        (unsigned long)k * total > (unsigned long)progress * G_TALKERS * G_LINES)
        return;
    if (k > 0) {
        int prev = (k - 1) % G_TALKERS, seq = (k - 1) / G_TALKERS;
        for (int i = 0; i < G_TALKERS; i++)
            if (i != prev && tk->next[i][prev] <= seq)
                return;
    }
    talk_text(line, sizeof(line) - 2, who, tk->sent[who]++);
    strcat(line, k % 2 ? "\r\n" : "\n");
    lc_say(tk->t[who], line);
}

static void
g_release(struct garbage *g, struct gconn *c)
{
    if (c->end == G_END_RESET)
        close_reset(c->fd);
    else
        close(c->fd); /* with the welcome unread, the kernel resets too */
    c->fd = -1;
    c->state = G_FREE;
    g->done++;
    g->live--;
}

/* All written: end the connection as planned. */
static void
g_end(struct fixture *f, struct garbage *g, struct gconn *c, int idx)
{
    g->ends[c->end]++;
    if (c->end != G_END_HALF) {
        g_release(g, c);
        return;
    }
    /* half-close: the daemon processes everything, then closes */
    shutdown(c->fd, SHUT_WR);
    c->state = G_DRAINING;
    c->due = h_now_ms() + 5000;
    ep_set(f->ep, EPOLL_CTL_MOD, c->fd, EPOLLIN, tag(1, (unsigned)idx));
}

static void
g_push(struct garbage *g, int idx)
{
    g->c[idx].qnext = -1;
    if (g->qtail >= 0)
        g->c[g->qtail].qnext = idx;
    else
        g->qhead = idx;
    g->qtail = idx;
}

/* Write the next chunk; the last one ends the connection. */
static void
g_write(struct fixture *f, struct garbage *g, int idx)
{
    struct gconn *c = &g->c[idx];

    while (c->off < c->next_cut) {
        ssize_t n = send(c->fd, c->buf + c->off, c->next_cut - c->off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            ep_set(f->ep, EPOLL_CTL_MOD, c->fd, EPOLLOUT, tag(1, (unsigned)idx));
            c->state = G_SENDING;
            return;
        }
        if (n < 0) { /* the daemon gave up on us (a huge line?): fine */
            g_end(f, g, c, idx);
            return;
        }
        c->off += (uint32_t)n;
        g->bytes += (unsigned long long)n;
    }
    if (c->off == c->len) {
        g_end(f, g, c, idx);
        return;
    }
    c->next_cut = c->off + (c->len - c->off) / (uint32_t)(c->chunks > 1 ? c->chunks-- : 1);
    if (c->next_cut == c->off)
        c->next_cut = c->len;
    c->state = G_WAITING;
    c->due = h_now_ms() + G_CHUNK_MS;
    ep_set(f->ep, EPOLL_CTL_MOD, c->fd, 0, tag(1, (unsigned)idx));
    g_push(g, idx);
}

static void
g_open(struct fixture *f, struct garbage *g, int idx)
{
    struct gconn *c = &g->c[idx];
    int fd = nb_connect(f->d.port[0]);

    if (fd < 0) {
        g->refused++;
        g->opened++;
        g->done++;
        return;
    }
    c->fd = fd;
    c->state = G_CONNECTING;
    c->end = (uint8_t)rng_below(&g->rng, 3);
    c->chunks = (uint8_t)(1 + rng_below(&g->rng, 3));
    c->len = g_make(&g->rng, c->buf, G_BUF);
    c->off = 0;
    c->next_cut = c->chunks == 1 ? c->len : c->len / c->chunks;
    if (c->chunks > 1)
        c->chunks--;
    g->opened++;
    g->connecting++;
    g->live++;
    ep_set(f->ep, EPOLL_CTL_ADD, fd, EPOLLOUT, tag(1, (unsigned)idx));
}

static void
g_event(struct fixture *f, struct garbage *g, int idx, uint32_t ev)
{
    struct gconn *c = &g->c[idx];
    char junk[16384];

    switch (c->state) {
    case G_CONNECTING:
        g->connecting--;
        if (ev & (EPOLLERR | EPOLLHUP)) {
            g->refused++;
            g_release(g, c);
            return;
        }
        g_write(f, g, idx);
        break;
    case G_SENDING:
        g_write(f, g, idx);
        break;
    case G_DRAINING:
        for (;;) {
            ssize_t n = recv(c->fd, junk, sizeof(junk), MSG_DONTWAIT);
            if (n > 0)
                continue;
            if (n < 0 && errno == EAGAIN)
                return;
            g_release(g, c); /* EOF or reset */
            return;
        }
    default:
        break;
    }
}

/* Start the next chunks that are due, and drop drainers past deadline. */
static void
g_timers(struct fixture *f, struct garbage *g)
{
    long now = h_now_ms();

    while (g->qhead >= 0 && g->c[g->qhead].due <= now) {
        int idx = g->qhead;
        g->qhead = g->c[idx].qnext;
        if (g->qhead < 0)
            g->qtail = -1;
        g_write(f, g, idx);
    }
}

static void
test_fault_garbage_10000_conversation_intact(void **state)
{
    static const char *const args[] = { LOAD_ARGS, "--max-line", "1024", NULL };
    struct fixture *f = *state;
    struct garbage *g = calloc(1, sizeof(*g));
    struct talk tk;
    struct epoll_event ev[NEVENTS];
    int fds[G_TALKERS];
    double t0;
    long deadline;

    assert_non_null(g);
    memset(&tk, 0, sizeof(tk));
    g->rng = 0x9e3779b97f4a7c15ULL;
    g->qhead = g->qtail = -1;
    for (int i = 0; i < G_WAVE; i++) {
        g->c[i].fd = -1;
        assert_non_null(g->c[i].buf = malloc(G_BUF));
    }
    h_start(&f->d, chat_names, args);
    for (int i = 0; i < G_TALKERS; i++) {
        char nick[16]; /* "t" and any int: -O1 checks the whole range */
        snprintf(nick, sizeof(nick), "t%d", i);
        tk.t[i] = lc_user(f, i, nick, NULL);
        ep_set(f->ep, EPOLL_CTL_ADD, tk.t[i]->fd, EPOLLIN, tag(0, (unsigned)i));
    }
    t0 = mono_s();
    deadline = h_now_ms() + 60000;
    while (g->done < G_TOTAL || tk.sent[0] + tk.sent[1] + tk.sent[2] < G_TALKERS * G_LINES ||
           tk.next[0][1] < G_LINES || tk.next[0][2] < G_LINES || tk.next[1][0] < G_LINES ||
           tk.next[1][2] < G_LINES || tk.next[2][0] < G_LINES || tk.next[2][1] < G_LINES) {
        int n;
        if (h_now_ms() > deadline)
            fail_msg("garbage: %u of %u done, conversation at %d/%d/%d lines after 60 s", g->done,
                     G_TOTAL, tk.sent[0], tk.sent[1], tk.sent[2]);
        /* a wave: up to G_WAVE live, refilled once it has all ended */
        if (g->live == 0 && g->opened < G_TOTAL)
            g->wave_left = G_TOTAL - g->opened < G_WAVE ? G_TOTAL - g->opened : G_WAVE;
        for (int i = 0; i < G_WAVE && g->wave_left > 0 && g->connecting < G_INFLIGHT; i++) {
            if (g->c[i].state != G_FREE)
                continue;
            g_open(f, g, i);
            g->wave_left--;
        }
        n = epoll_wait(f->ep, ev, NEVENTS, 5);
        for (int i = 0; i < n; i++) {
            unsigned kind = (unsigned)(ev[i].data.u64 >> 32), idx = (unsigned)ev[i].data.u64;
            if (kind == 1)
                g_event(f, g, (int)idx, ev[i].events);
        }
        g_timers(f, g);
        for (int i = 0; i < G_WAVE; i++) /* drainers past their deadline */
            if (g->c[i].state == G_DRAINING && g->c[i].due < h_now_ms())
                fail_msg("garbage: a half-closed client got no EOF within 5 s");
        talk_step(&tk, g->done, G_TOTAL);
        for (int i = 0; i < G_TALKERS; i++)
            if (tk.t[i]->eof || tk.t[i]->err)
                fail_msg("talker %d disconnected (%s) after %zu lines", i,
                         tk.t[i]->eof ? "EOF" : strerror(tk.t[i]->err), tk.t[i]->lines);
        if (tk.err[0] != '\0')
            fail_msg("%s", tk.err);
    }
    print_message("garbage: %u connections, %llu bytes (close %u, reset %u, half-close %u), "
                  "%u failed to connect, in %.1f s; talkers saw %zu other lines\n",
                  g->done, g->bytes, g->ends[0], g->ends[1], g->ends[2], g->refused, mono_s() - t0,
                  tk.relayed_other);
    lc_assert_clean(tk.t, G_TALKERS);
    assert_int_equal(g->refused, 0);
    /* the garbage did reach the talkers, so the checks above meant something */
    assert_true(tk.relayed_other > 1000);
    for (int i = 0; i < G_WAVE; i++)
        free(g->c[i].buf);
    free(g);
    assert_int_equal(h_stop_clients(&f->d, fds, lc_fds(tk.t, G_TALKERS, fds), 5000), 0);
    for (int i = 0; i < G_TALKERS; i++)
        lc_free(tk.t[i]);
}

/* ======================================================================
 * Connection churn: 50,000 connect/welcome/close cycles beside a chat
 * ====================================================================== */

#define CH_TOTAL    50000
#define CH_INFLIGHT 200
#define CH_WARMUP   2000 /* cycles before the baseline: the allocator's working set */

enum ch_state { CH_FREE, CH_CONNECTING, CH_READING };

struct churn {
    int fd[CH_INFLIGHT];
    uint8_t state[CH_INFLIGHT];
    uint16_t got[CH_INFLIGHT]; /* bytes of the welcome line so far */
    char line[CH_INFLIGHT][16];
    unsigned started, done, live, resets, failed;
    uint64_t rng;
};

static void
ch_open(struct fixture *f, struct churn *ch, int i)
{
    int fd = nb_connect(f->d.port[0]);

    if (fd < 0)
        fail_msg("churn: connect %u: %s", ch->started, strerror(-fd));
    ch->fd[i] = fd;
    ch->state[i] = CH_CONNECTING;
    ch->got[i] = 0;
    ch->started++;
    ch->live++;
    ep_set(f->ep, EPOLL_CTL_ADD, fd, EPOLLOUT, tag(1, (unsigned)i));
}

/* The welcome line has come (or the connection failed): close, one in
 * four with a reset, the rest with FIN (and a reset if more was unread). */
static void
ch_close(struct churn *ch, int i)
{
    if (rng_below(&ch->rng, 4) == 0) {
        close_reset(ch->fd[i]);
        ch->resets++;
    } else {
        close(ch->fd[i]);
    }
    ch->fd[i] = -1;
    ch->state[i] = CH_FREE;
    ch->done++;
    ch->live--;
}

static void
ch_event(struct fixture *f, struct churn *ch, int i, uint32_t ev)
{
    char buf[512];
    ssize_t n;

    if (ch->state[i] == CH_CONNECTING) {
        if (ev & (EPOLLERR | EPOLLHUP))
            fail_msg("churn: connection %u failed", ch->done);
        ch->state[i] = CH_READING;
        ep_set(f->ep, EPOLL_CTL_MOD, ch->fd[i], EPOLLIN, tag(1, (unsigned)i));
        return;
    }
    n = recv(ch->fd[i], buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0)
        fail_msg("churn: connection %u: %s before the welcome", ch->done,
                 n == 0 ? "EOF" : strerror(errno));
    for (ssize_t k = 0; k < n; k++) {
        if (ch->got[i] < sizeof(ch->line[i]))
            ch->line[i][ch->got[i]] = buf[k];
        ch->got[i]++;
        if (buf[k] != '\n')
            continue;
        if (memcmp(ch->line[i], "*** welcome", 11) != 0)
            fail_msg("churn: the first line is not the welcome");
        ch_close(ch, i);
        return;
    }
}

/* Run cycles until ch->done reaches `until`, with the ping-pong going. */
static void
ch_run(struct fixture *f, struct churn *ch, struct pingpong *pp, unsigned until, long deadline)
{
    struct epoll_event ev[NEVENTS];

    while (ch->done < until) {
        int n;

        if (h_now_ms() > deadline)
            fail_msg("churn: only %u of %u cycles in time", ch->done, until);
        for (int i = 0; i < CH_INFLIGHT && ch->started < until; i++)
            if (ch->state[i] == CH_FREE)
                ch_open(f, ch, i);
        n = epoll_wait(f->ep, ev, NEVENTS, 5);
        for (int i = 0; i < n; i++)
            if (ev[i].data.u64 >> 32 == 1)
                ch_event(f, ch, (int)(uint32_t)ev[i].data.u64, ev[i].events);
        pingpong_step(pp);
    }
}

/* The daemon's fd count once it has reaped the closed connections. */
static int
settled_fds(struct fixture *f, int want, int slack)
{
    long deadline = h_now_ms() + H_TIMEOUT_MS;
    int n;

    while ((n = h_fd_count(f->d.pid)) > want + slack && h_now_ms() < deadline)
        poll(NULL, 0, 10);
    return n;
}

static void
test_fault_churn_50000_fds_and_rss_return(void **state)
{
    static const char *const args[] = { LOAD_ARGS, NULL };
    struct fixture *f = *state;
    struct churn *ch = calloc(1, sizeof(*ch));
    struct pingpong pp;
    int fd_start, fds0, fds1, fds[2];
    long rss_cold, rss0, rss1, rss_peak;
    double t0, secs;

    assert_non_null(ch);
    ch->rng = 42;
    h_start(&f->d, chat_names, args);
    fd_start = h_fd_count(f->d.pid);
    pingpong_start(f, &pp, 10, 0);
    rss_cold = h_rss_kib(f->d.pid);
    ch_run(f, ch, &pp, CH_WARMUP, h_now_ms() + 10000);
    fds0 = settled_fds(f, fd_start + 2, 0); /* the warm-up has been reaped */
    rss0 = h_rss_kib(f->d.pid);
    t0 = mono_s();
    ch_run(f, ch, &pp, CH_WARMUP + CH_TOTAL, h_now_ms() + 45000);
    secs = mono_s() - t0;
    rss_peak = h_rss_kib(f->d.pid);
    pingpong_finish(&pp, rtt_limit(f, 1000));
    fds1 = settled_fds(f, fds0, 0);
    rss1 = h_rss_kib(f->d.pid);
    print_message("churn: %d cycles in %.1f s (%.0f/s), %u reset; daemon fds %d -> %d, "
                  "RSS %ld (cold) %ld (after %d warm-up cycles) -> %ld KiB (%ld at the end of "
                  "the run)\n",
                  CH_TOTAL, secs, CH_TOTAL / secs, ch->resets, fds0, fds1, rss_cold, rss0,
                  CH_WARMUP, rss1, rss_peak);
    assert_true(fds1 <= fds0 + 2);
    if (instrumented(f->d.pid)) {
        /* ASan's quarantine and valgrind hold freed memory on purpose */
        print_message("churn: the daemon runs under a sanitizer or valgrind: RSS not checked\n");
    } else {
        assert_true(rss1 - rss0 < 4096);
        assert_true(rss1 - rss_cold < 8192);
    }
    if (secs > 30)
        print_message("churn: WARNING: slower than the 30 s budget\n");
    free(ch);
    assert_int_equal(
        h_stop_clients(&f->d, fds, lc_fds((struct lc *[]){ pp.a, pp.b }, 2, fds), H_TIMEOUT_MS), 0);
    lc_free(pp.a);
    lc_free(pp.b);
}

/* ======================================================================
 * Slowloris: a thousand clients dribbling, a thousand saying nothing
 * ====================================================================== */

#define SL_MAX       1200
#define SL_PERIOD_MS 100 /* one byte per client this often */

/* A raw client that reads lines into a small buffer (notices are short)
 * and may dribble one byte per period. */
struct slow {
    int fd;
    bool connected, dribble, welcome, idle, eof, reset;
    int err;
    int qnext;
    long due;       /* next byte */
    long t_conn;    /* connect completed */
    long t_idle;    /* idle notice arrived */
    uint32_t sent;  /* bytes dribbled */
    uint32_t after; /* lines after the idle notice */
    uint16_t plen;
    char part[256];
};

struct slowset {
    struct slow c[SL_MAX];
    int n;
    int qhead, qtail; /* dribblers by due time (one period for all: a FIFO) */
    unsigned connected, ended, idle_told;
    unsigned long long dribbled;
};

static void
sl_push(struct slowset *ss, int i)
{
    ss->c[i].qnext = -1;
    if (ss->qtail >= 0)
        ss->c[ss->qtail].qnext = i;
    else
        ss->qhead = i;
    ss->qtail = i;
}

static void
sl_line(struct slowset *ss, struct slow *c, const char *line)
{
    if (c->idle)
        c->after++;
    if (strncmp(line, "*** welcome", 11) == 0)
        c->welcome = true;
    if (strncmp(line, "*** idle timeout (", 18) == 0 && !c->idle) {
        c->idle = true;
        c->t_idle = h_now_ms();
        ss->idle_told++;
    }
}

static void
sl_read(struct slowset *ss, struct slow *c)
{
    char buf[4096];

    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            c->eof = n == 0;
            c->err = n < 0 ? errno : 0;
            ss->ended++;
            return;
        }
        for (ssize_t k = 0; k < n; k++) {
            if (buf[k] != '\n') {
                if (c->plen < sizeof(c->part) - 1)
                    c->part[c->plen++] = buf[k];
                continue;
            }
            c->part[c->plen] = '\0';
            sl_line(ss, c, c->part);
            c->plen = 0;
        }
    }
}

static void
sl_open(struct fixture *f, struct slowset *ss, bool dribble)
{
    int i = ss->n++;
    struct slow *c = &ss->c[i];
    /* taken before connecting, so it cannot be later than the daemon's
     * accept even if we are preempted right after connect() returns */
    long t_conn = h_now_ms();
    int fd = nb_connect(f->d.port[0]);

    if (fd < 0)
        fail_msg("slowloris: connect %d: %s", i, strerror(-fd));
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->dribble = dribble;
    c->t_conn = t_conn;
    ep_set(f->ep, EPOLL_CTL_ADD, fd, EPOLLOUT, tag(1, (unsigned)i));
}

static void
sl_event(struct fixture *f, struct slowset *ss, int i, uint32_t ev)
{
    struct slow *c = &ss->c[i];

    if (c->eof || c->err)
        return;
    if (!c->connected) {
        if (ev & (EPOLLERR | EPOLLHUP))
            fail_msg("slowloris: connection %d failed", i);
        c->connected = true;
        ss->connected++;
        ep_set(f->ep, EPOLL_CTL_MOD, c->fd, EPOLLIN, tag(1, (unsigned)i));
        if (c->dribble) {
            /* spread the first bytes over one period */
            c->due = h_now_ms() + (long)(rng_next(&(uint64_t){ (uint64_t)i + 1 }) % SL_PERIOD_MS);
            sl_push(ss, i);
        }
        return;
    }
    sl_read(ss, c);
    if (c->eof || c->err)
        ep_set(f->ep, EPOLL_CTL_DEL, c->fd, 0, 0);
}

/* Send the bytes that are due: a line that never ends. The FIFO is in due
 * order only roughly (first bytes are spread), which is close enough. */
static void
sl_dribble(struct slowset *ss)
{
    static const char text[] = "this line is sent one byte at a time and never ends ";
    long now = h_now_ms();

    while (ss->qhead >= 0 && ss->c[ss->qhead].due <= now) {
        int i = ss->qhead;
        struct slow *c = &ss->c[i];

        ss->qhead = c->qnext;
        if (ss->qhead < 0)
            ss->qtail = -1;
        if (c->eof || c->err)
            continue;
        if (send(c->fd, &text[c->sent % (sizeof(text) - 1)], 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1) {
            c->sent++;
            ss->dribbled++;
        }
        c->due += SL_PERIOD_MS;
        sl_push(ss, i);
    }
}

/* Run the loop for ms (or until done() says so), pingpong included. */
static void
sl_run(struct fixture *f, struct slowset *ss, struct pingpong *pp, long ms,
       bool (*done)(struct slowset *))
{
    struct epoll_event ev[NEVENTS];
    long end = h_now_ms() + ms;

    while (h_now_ms() < end && (done == NULL || !done(ss))) {
        int n = epoll_wait(f->ep, ev, NEVENTS, 2);

        for (int i = 0; i < n; i++)
            if (ev[i].data.u64 >> 32 == 1)
                sl_event(f, ss, (int)(uint32_t)ev[i].data.u64, ev[i].events);
        sl_dribble(ss);
        pingpong_step(pp);
    }
}

static bool
sl_all_connected(struct slowset *ss)
{
    return ss->connected == (unsigned)ss->n;
}

static struct slowset *
sl_new(void)
{
    struct slowset *ss = calloc(1, sizeof(*ss));

    assert_non_null(ss);
    ss->qhead = ss->qtail = -1;
    return ss;
}

static void
sl_free(struct slowset *ss)
{
    for (int i = 0; i < ss->n; i++)
        if (ss->c[i].fd > 0)
            close(ss->c[i].fd);
    free(ss);
}

static void
test_fault_slowloris_1000_normal_pair_unaffected(void **state)
{
    static const char *const args[] = { LOAD_ARGS, NULL };
    struct fixture *f = *state;
    struct slowset *ss = sl_new();
    struct pingpong pp;
    int fds[2], held;

    h_start(&f->d, chat_names, args);
    pingpong_start(f, &pp, 20, 0);
    for (int i = 0; i < 1000; i++)
        sl_open(f, ss, true);
    sl_run(f, ss, &pp, H_TIMEOUT_MS, sl_all_connected);
    assert_int_equal(ss->connected, 1000);
    pp.max_rtt = 0; /* measure while all of them dribble */
    sl_run(f, ss, &pp, 3000, NULL);
    held = h_fd_count(f->d.pid);
    print_message("slowloris: %llu bytes dribbled by 1000 clients in 3 s; daemon holds %d fds\n",
                  ss->dribbled, held);
    assert_int_equal(ss->ended, 0);         /* no idle timeout: nobody is dropped */
    assert_true(ss->dribbled >= 1000 * 25); /* they really dribbled, ~10 bytes/s each */
    assert_true(held >= 1000);
    for (int i = 0; i < 1000; i++)
        assert_true(ss->c[i].welcome);
    pingpong_finish(&pp, rtt_limit(f, 200));
    assert_true(pp.answered >= 50);
    sl_free(ss);
    assert_int_equal(
        h_stop_clients(&f->d, fds, lc_fds((struct lc *[]){ pp.a, pp.b }, 2, fds), H_TIMEOUT_MS), 0);
    lc_free(pp.a);
    lc_free(pp.b);
}

static bool
sl_silent_cleared(struct slowset *ss)
{
    for (int i = 0; i < ss->n; i++)
        if (!ss->c[i].dribble && !(ss->c[i].eof || ss->c[i].err))
            return false;
    return true;
}

static void
test_fault_idle_timeout_clears_silent_keeps_dribblers(void **state)
{
    static const char *const args[] = { LOAD_ARGS, "--idle-timeout", "1", NULL };
    struct fixture *f = *state;
    struct slowset *ss = sl_new();
    struct pingpong pp;
    int fds[2], silent = 1000, dribblers = 200;
    long t0, early = 1 << 30, late = 0;

    h_start(&f->d, chat_names, args);
    pingpong_start(f, &pp, 50, 0);
    t0 = h_now_ms();
    for (int i = 0; i < silent + dribblers; i++)
        sl_open(f, ss, i % 6 == 5);
    sl_run(f, ss, &pp, 5000, sl_silent_cleared);
    print_message("idle: %u of %d silent clients told and closed within %ld ms\n", ss->idle_told,
                  silent, h_now_ms() - t0);
    for (int i = 0; i < ss->n; i++) {
        struct slow *c = &ss->c[i];
        if (c->dribble) {
            if (c->idle || c->eof || c->err)
                fail_msg("dribbler %d was dropped as idle (%s)", i,
                         c->err ? strerror(c->err) : "notice/EOF");
            continue;
        }
        if (!c->welcome || !c->idle || !c->eof)
            fail_msg("silent client %d: welcome %d, idle notice %d, EOF %d%s%s", i, c->welcome,
                     c->idle, c->eof, c->err ? ", error " : "", c->err ? strerror(c->err) : "");
        if (c->after != 0)
            fail_msg("silent client %d: %u lines after the idle notice", i, c->after);
        early = c->t_idle - c->t_conn < early ? c->t_idle - c->t_conn : early;
        late = c->t_idle - c->t_conn > late ? c->t_idle - c->t_conn : late;
    }
    print_message("idle: notices came %ld..%ld ms after connecting\n", early, late);
    /* never before --idle-timeout: the daemon waits a clock reading past
     * stamp + timeout, so even with both sides counting whole ms the
     * difference we see is at least the full second */
    assert_true(early >= 1000);
    assert_true(late <= 4000);
    pingpong_finish(&pp, rtt_limit(f, 500));
    sl_free(ss);
    assert_int_equal(
        h_stop_clients(&f->d, fds, lc_fds((struct lc *[]){ pp.a, pp.b }, 2, fds), H_TIMEOUT_MS), 0);
    lc_free(pp.a);
    lc_free(pp.b);
}

/* ======================================================================
 * Resets in the middle of a fan-out, while others join and leave
 * ====================================================================== */

#define RF_RECV  200
#define RF_RESET 50
#define RF_JOIN  50
#define RF_LEAVE 20 /* of the joiners, leave again with a clean close */
#define RF_LINES 500
#define RF_SPAN  600 /* ms over which the lines go out and the events happen */
#define RF_ALL   (RF_RECV + RF_JOIN)

struct rf_recv {
    struct lc *c;
    int next;      /* next sequence number expected; -1 before the first */
    long act_at;   /* when to reset (originals) or join (joiners); 0: never */
    long leave_at; /* joiners that leave again; 0: never */
    long stall_at; /* stop reading this long before the reset */
    bool gone;
    char err[160];
};

static bool
rf_line(struct lc *c, char *line, size_t len, void *arg)
{
    struct rf_recv *r = arg;
    int seq;

    (void)c;
    (void)len;
    if (sscanf(line, "<src> fan %d", &seq) != 1)
        return true;
    if (r->next >= 0 && seq != r->next && r->err[0] == '\0')
        snprintf(r->err, sizeof(r->err), "receiver %d: got line %d, want %d", c->id, seq, r->next);
    r->next = seq + 1;
    return true;
}

static void
rf_gone(struct fixture *f, struct rf_recv *r, bool reset)
{
    ep_set(f->ep, EPOLL_CTL_DEL, r->c->fd, 0, 0);
    if (reset)
        close_reset(r->c->fd);
    else
        close(r->c->fd);
    r->c->fd = -1;
    r->gone = true;
}

/* The timed events that are due: resets, joins, leaves. */
static void
rf_events(struct fixture *f, struct rf_recv *rs, long t0, unsigned *resets, unsigned *joins)
{
    long now = h_now_ms() - t0;

    for (int i = 0; i < RF_ALL; i++) {
        struct rf_recv *r = &rs[i];

        if (r->gone || r->act_at == 0)
            continue;
        if (i < RF_RECV && now >= r->act_at) {
            rf_gone(f, r, true);
            (*resets)++;
        } else if (i >= RF_RECV && r->c == NULL && now >= r->act_at) {
            int fd = nb_connect(f->d.port[0]);
            if (fd < 0)
                fail_msg("fan-out: joiner %d: %s", i, strerror(-fd));
            r->c = lc_new(fd, i);
            ep_set(f->ep, EPOLL_CTL_ADD, fd, EPOLLIN, tag(1, (unsigned)i));
            (*joins)++;
        } else if (i >= RF_RECV && r->c != NULL && r->leave_at && now >= r->leave_at) {
            rf_gone(f, r, false);
        }
    }
}

static bool
rf_done(struct rf_recv *rs)
{
    for (int i = 0; i < RF_ALL; i++)
        if (!rs[i].gone && rs[i].c != NULL && rs[i].next < RF_LINES)
            return false;
    return true;
}

static void
test_fault_reset_mid_fanout_others_get_every_line(void **state)
{
    static const char *const args[] = { LOAD_ARGS, NULL };
    struct fixture *f = *state;
    struct rf_recv *rs = calloc(RF_ALL, sizeof(*rs));
    struct epoll_event ev[NEVENTS];
    struct lc *src;
    uint64_t rng = 7;
    unsigned resets = 0, joins = 0, full = 0, joined_ok = 0;
    long errors;
    int sent = 0, *fds;
    size_t nfd;
    long t0, deadline;

    assert_non_null(rs);
    h_start(&f->d, chat_names, args);
    src = lc_user(f, 9000, "src", NULL);
    for (int i = 0; i < RF_RECV; i++) {
        rs[i].c = lc_user(f, i, NULL, NULL);
        rs[i].next = 0;
        ep_set(f->ep, EPOLL_CTL_ADD, rs[i].c->fd, EPOLLIN, tag(1, (unsigned)i));
    }
    /* RF_RESET distinct receivers reset at random moments, half of them
     * after they stopped reading (the daemon then holds output for them) */
    for (int k = 0; k < RF_RESET;) {
        struct rf_recv *r = &rs[rng_below(&rng, RF_RECV)];
        if (r->act_at)
            continue;
        r->act_at = 1 + rng_below(&rng, RF_SPAN);
        r->stall_at = k % 2 ? r->act_at - 100 : 0;
        k++;
    }
    for (int i = RF_RECV; i < RF_ALL; i++) {
        rs[i].next = -1;
        rs[i].act_at = 1 + rng_below(&rng, RF_SPAN / 2);
        if (i - RF_RECV < RF_LEAVE)
            rs[i].leave_at = rs[i].act_at + 1 + rng_below(&rng, RF_SPAN / 2);
    }
    t0 = h_now_ms();
    deadline = t0 + 10000;
    while (sent < RF_LINES || !rf_done(rs)) {
        long now = h_now_ms() - t0;
        int n;

        if (h_now_ms() > deadline)
            fail_msg("fan-out: %d lines sent, not all delivered within 10 s", sent);
        /* the sender keeps pace with the clock: the lines span RF_SPAN ms */
        while (sent < RF_LINES && (long)sent * RF_SPAN <= now * RF_LINES) {
            char line[64];
            snprintf(line, sizeof(line), "fan %03d\n", sent++);
            lc_say(src, line);
        }
        lc_flush(src);
        lc_pump(src, NULL, NULL);
        rf_events(f, rs, t0, &resets, &joins);
        n = epoll_wait(f->ep, ev, NEVENTS, 1);
        for (int i = 0; i < n; i++) {
            struct rf_recv *r = &rs[(uint32_t)ev[i].data.u64];
            if (r->gone || (r->stall_at && now >= r->stall_at))
                continue;
            lc_pump(r->c, rf_line, r);
            if (r->c->eof || r->c->err)
                fail_msg("fan-out: receiver %d lost its connection (%s) at line %d", r->c->id,
                         r->c->eof ? "EOF" : strerror(r->c->err), r->next);
            if (r->err[0] != '\0')
                fail_msg("fan-out: %s", r->err);
        }
        if (src->eof || src->err)
            fail_msg("fan-out: the sender lost its connection");
    }
    for (int i = 0; i < RF_ALL; i++) {
        if (rs[i].gone || rs[i].c == NULL)
            continue;
        lc_assert_clean(&rs[i].c, 1);
        if (i < RF_RECV)
            full++;
        else
            joined_ok++;
    }
    print_message("fan-out: %d lines, %u resets, %u joins (%d left again); %u receivers got all "
                  "%d lines, %u joiners every line from their first\n",
                  sent, resets, joins, RF_LEAVE, full, RF_LINES, joined_ok);
    assert_int_equal(resets, RF_RESET);
    assert_int_equal(joins, RF_JOIN);
    assert_int_equal(full, RF_RECV - RF_RESET);
    assert_int_equal(joined_ok, RF_JOIN - RF_LEAVE);
    /* the resets reached the daemon as errors, not as goodbyes */
    h_signal(&f->d, SIGUSR1);
    assert_true(h_wait_log(&f->d, "stats:", H_TIMEOUT_MS));
    errors = h_log_number(&f->d, "stats:", "error ");
    print_message("fan-out: the daemon counted %ld connections closed by an error\n", errors);
    assert_true(errors >= RF_RESET / 2);
    /* the daemon stays up and stops cleanly */
    fds = calloc(RF_ALL + 1, sizeof(*fds));
    assert_non_null(fds);
    nfd = 0;
    for (int i = 0; i < RF_ALL; i++) {
        if (rs[i].c != NULL && !rs[i].gone)
            nfd += lc_fds(&rs[i].c, 1, fds + nfd);
    }
    nfd += lc_fds(&src, 1, fds + nfd);
    assert_int_equal(h_stop_clients(&f->d, fds, nfd, 5000), 0);
    for (int i = 0; i < RF_ALL; i++)
        lc_free(rs[i].c);
    lc_free(src);
    free(fds);
    free(rs);
}

/* ======================================================================
 * Out of descriptors: a flood of connects under RLIMIT_NOFILE 128
 * ====================================================================== */

#define EM_LIMIT    128
#define EM_FLOOD    2000
#define EM_INFLIGHT 200
#define EM_PACE_MS  1 /* one connect per ms: the flood lasts about 2 s */

enum em_state { EM_FREE, EM_CONNECTING, EM_WAITING, EM_HELD };

struct emconn {
    int fd;
    uint8_t state;
};

struct emflood {
    struct emconn c[EM_FLOOD];
    unsigned started, inflight, held, shed, refused;
};

static void
em_event(struct fixture *f, struct emflood *e, int i, uint32_t ev)
{
    struct emconn *c = &e->c[i];
    char buf[512];
    ssize_t n;

    if (c->state == EM_CONNECTING) {
        if (ev & (EPOLLERR | EPOLLHUP)) { /* refused outright: counts as shed */
            e->refused++;
            e->inflight--;
            close(c->fd);
            c->state = EM_FREE;
            return;
        }
        c->state = EM_WAITING;
        ep_set(f->ep, EPOLL_CTL_MOD, c->fd, EPOLLIN, tag(1, (unsigned)i));
        return;
    }
    n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN)
        return;
    if (c->state == EM_HELD) {
        if (n <= 0)
            fail_msg("flood: an admitted client lost its connection");
        return; /* join notices: read and drop */
    }
    e->inflight--;
    if (n > 0 && memcmp(buf, "*** ", 4) == 0) {
        c->state = EM_HELD; /* admitted: keep it, holding a descriptor */
        e->held++;
        return;
    }
    /* shed: closed at once by the daemon, nothing said */
    if (n > 0)
        fail_msg("flood: a shed connection got \"%.*s\"", (int)n, buf);
    ep_set(f->ep, EPOLL_CTL_DEL, c->fd, 0, 0);
    close(c->fd);
    c->fd = -1;
    c->state = EM_FREE;
    e->shed++;
}

static void
test_fault_emfile_flood_keeps_serving_no_spin(void **state)
{
    static const char *const args[] = { "--rate-limit", "0", "--log-level", "notice", NULL };
    struct fixture *f = *state;
    struct emflood *e = calloc(1, sizeof(*e));
    struct epoll_event ev[NEVENTS];
    struct pingpong pp;
    struct lc *late = NULL;
    long cpu0, cpu, wall, t0, deadline, next = 0;
    int fds[3];

    assert_non_null(e);
    if (h_start_ex(&f->d, chat_names, args, true, EM_LIMIT) != 0) {
        h_dump_log(&f->d);
        fail_msg("daemon under RLIMIT_NOFILE %d exited with %d", EM_LIMIT, h_wait_exit(&f->d, 0));
    }
    pingpong_start(f, &pp, 20, 0);
    cpu0 = h_cpu_ms(f->d.pid);
    t0 = h_now_ms();
    deadline = t0 + 20000;
    while (e->started < EM_FLOOD || e->inflight > 0) {
        int n;

        if (h_now_ms() > deadline)
            fail_msg("flood: %u started, %u unresolved after 20 s", e->started, e->inflight);
        if (e->started < EM_FLOOD && e->inflight < EM_INFLIGHT && h_now_ms() >= next) {
            int fd = nb_connect(f->d.port[0]);
            if (fd < 0)
                fail_msg("flood: connect: %s", strerror(-fd));
            e->c[e->started] = (struct emconn){ fd, EM_CONNECTING };
            ep_set(f->ep, EPOLL_CTL_ADD, fd, EPOLLOUT, tag(1, e->started));
            e->started++;
            e->inflight++;
            next = h_now_ms() + EM_PACE_MS;
        }
        n = epoll_wait(f->ep, ev, NEVENTS, 1);
        for (int i = 0; i < n; i++)
            if (ev[i].data.u64 >> 32 == 1)
                em_event(f, e, (int)(uint32_t)ev[i].data.u64, ev[i].events);
        pingpong_step(&pp);
    }
    wall = h_now_ms() - t0;
    cpu = h_cpu_ms(f->d.pid) - cpu0;
    print_message("flood: %d connects in %ld ms: %u admitted, %u shed, %u refused; daemon CPU "
                  "%ld ms (%.0f%%), %d fds\n",
                  EM_FLOOD, wall, e->held, e->shed, e->refused, cpu, 100.0 * cpu / wall,
                  h_fd_count(f->d.pid));
    assert_true(e->held > 50 && e->held < EM_LIMIT);
    assert_true(e->shed + e->refused > EM_FLOOD / 2);
    assert_true(cpu * 2 < wall); /* no spinning: under half a core */
    assert_true(h_wait_log(&f->d, "out of file descriptors", H_TIMEOUT_MS));
    pingpong_finish(&pp, rtt_limit(f, 500));

    /* the flood ends: once descriptors are free, newcomers are admitted */
    for (int i = 0; i < EM_FLOOD; i++)
        if (e->c[i].state == EM_HELD)
            close(e->c[i].fd);
    deadline = h_now_ms() + H_TIMEOUT_MS;
    while (late == NULL && h_now_ms() < deadline) {
        int fd = h_try_connect(f->d.port[0]);
        struct pollfd p = { .fd = fd, .events = POLLIN };
        char buf[16];

        if (fd >= 0 && poll(&p, 1, 500) == 1 && recv(fd, buf, 4, MSG_PEEK) == 4 &&
            memcmp(buf, "*** ", 4) == 0) {
            late = lc_new(fd, 9100);
            break;
        }
        if (fd >= 0)
            close(fd);
        poll(NULL, 0, 20);
    }
    if (late == NULL)
        fail_msg("no client admitted within %d ms after the flood", H_TIMEOUT_MS);
    lc_expect(late, "*** welcome", H_TIMEOUT_MS);
    free(e);
    fds[0] = late->fd;
    late->fd = -1;
    lc_free(late);
    assert_int_equal(h_stop_clients(&f->d, fds,
                                    1 + lc_fds((struct lc *[]){ pp.a, pp.b }, 2, fds + 1),
                                    H_TIMEOUT_MS),
                     0);
    lc_free(pp.a);
    lc_free(pp.b);
}

/* ======================================================================
 * SIGTERM during heavy traffic
 * ====================================================================== */

#define ST_ECHO    50
#define ST_CHAT    50
#define ST_FLOOD   5          /* of the chat clients, these flood the room */
#define ST_EBYTES  (8u << 20) /* each echo client sends at most this */
#define ST_PAT     65521u     /* pattern period: a prime, so streams differ */
#define ST_TIMEOUT 3          /* --shutdown-timeout */
#define ST_READ    65536u
#define ST_PATBUF  (2 * ST_PAT + ST_READ) /* any window of a write or a read is contiguous */
#define ST_KEEP    (4u << 20)             /* before SIGTERM, read only beyond this in flight */

struct st_echo {
    int fd;
    uint64_t sent, got;
    bool eof;
    int err;
};

struct st_state {
    struct st_echo e[ST_ECHO];
    struct lc *c[ST_CHAT];
    int next[ST_CHAT][ST_FLOOD]; /* [receiver][flooder]: next line expected */
    int sent[ST_FLOOD];
    int told[ST_CHAT]; /* shutdown notices received */
    uint8_t *pat;      /* the pattern, repeated to ST_PATBUF bytes */
    bool term;         /* SIGTERM sent: read everything */
    char err[300];
};

static const uint8_t *
st_pat(struct st_state *st, int who, uint64_t off)
{
    return st->pat + (off + (uint64_t)who * 977u) % ST_PAT;
}

static void
st_echo_io(struct st_state *st, int i, bool write_more)
{
    struct st_echo *e = &st->e[i];
    uint8_t buf[ST_READ];

    while (write_more && !e->eof && e->err == 0 && e->sent < ST_EBYTES) {
        size_t n = ST_PAT < ST_EBYTES - e->sent ? ST_PAT : ST_EBYTES - e->sent;
        ssize_t w = send(e->fd, st_pat(st, i, e->sent), n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN)
                e->err = errno;
            break;
        }
        e->sent += (uint64_t)w;
    }
    /* keep MBs in flight: the daemon's queue full, reading paused */
    while (!e->eof && e->err == 0 && (st->term || e->sent - e->got > ST_KEEP)) {
        ssize_t r = recv(e->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r == 0) {
            e->eof = true;
            break;
        }
        if (r < 0) {
            if (errno != EAGAIN)
                e->err = errno;
            break;
        }
        if (e->got + (uint64_t)r > e->sent || memcmp(buf, st_pat(st, i, e->got), (size_t)r) != 0) {
            if (st->err[0] == '\0')
                snprintf(st->err, sizeof(st->err),
                         "echo client %d: bytes %llu..%llu differ from what it sent", i,
                         (unsigned long long)e->got, (unsigned long long)(e->got + (uint64_t)r));
        }
        e->got += (uint64_t)r;
    }
}

static bool
st_chat_line(struct lc *c, char *line, size_t len, void *arg)
{
    struct st_state *st = arg;
    int who, seq;

    (void)len;
    if (strcmp(line, "*** server shutting down") == 0) {
        st->told[c->id]++;
        return true;
    }
    if (sscanf(line, "<f%d> flood %d", &who, &seq) != 2 || who < 0 || who >= ST_FLOOD)
        return true;
    if (seq != st->next[c->id][who] && st->err[0] == '\0')
        snprintf(st->err, sizeof(st->err), "chat client %d: line %d from f%d, want %d", c->id, seq,
                 who, st->next[c->id][who]);
    st->next[c->id][who] = seq + 1;
    return true;
}

/* Flooders send at about 2 lines per ms each, while their queue allows. */
static void
st_flood(struct st_state *st, long elapsed)
{
    char line[160];

    for (int k = 0; k < ST_FLOOD; k++) {
        struct lc *c = st->c[k];
        while (!c->eof && c->err == 0 && st->sent[k] < 2 * elapsed && c->olen < LC_OUT / 2) {
            snprintf(line, sizeof(line), "flood %d %s\n", st->sent[k]++,
                     "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz");
            memcpy(c->out + c->olen, line, strlen(line));
            c->olen += strlen(line);
        }
        lc_flush(c);
    }
}

static bool
st_all_ended(struct st_state *st)
{
    for (int i = 0; i < ST_ECHO; i++)
        if (!st->e[i].eof && st->e[i].err == 0)
            return false;
    for (int i = 0; i < ST_CHAT; i++)
        if (!st->c[i]->eof && st->c[i]->err == 0)
            return false;
    return true;
}

static void
test_fault_sigterm_heavy_traffic_all_told_prefix_exit_0(void **state)
{
    static const char *const names[] = { "chat", "echo", NULL };
    static const char *const args[] = { "--rate-limit",       "0", "--log-level", "notice",
                                        "--shutdown-timeout", "3", NULL };
    struct fixture *f = *state;
    struct st_state *st = calloc(1, sizeof(*st));
    struct epoll_event ev[NEVENTS];
    uint64_t rng = 99, inflight = 0, owed_min = UINT64_MAX;
    long t0, term_at = 0, exit_ms = -1;
    int status = -1;

    assert_non_null(st);
    assert_non_null(st->pat = malloc(ST_PATBUF));
    for (unsigned i = 0; i < ST_PATBUF; i++)
        st->pat[i] = i < ST_PAT ? (uint8_t)rng_next(&rng) : st->pat[i - ST_PAT];
    h_start(&f->d, names, args);
    for (int i = 0; i < ST_CHAT; i++) {
        char nick[16]; /* "f" and any int */
        snprintf(nick, sizeof(nick), "f%d", i);
        st->c[i] = lc_user(f, i, i < ST_FLOOD ? nick : NULL, NULL);
        ep_set(f->ep, EPOLL_CTL_ADD, st->c[i]->fd, EPOLLIN | EPOLLOUT | EPOLLET,
               tag(0, (unsigned)i));
    }
    for (int i = 0; i < ST_ECHO; i++) {
        st->e[i].fd = h_connect(f->d.port[1]);
        set_nonblock(st->e[i].fd);
        ep_set(f->ep, EPOLL_CTL_ADD, st->e[i].fd, EPOLLIN | EPOLLOUT | EPOLLET,
               tag(1, (unsigned)i));
    }
    t0 = h_now_ms();
    while (status < 0) {
        long now = h_now_ms();
        int n;

        if (term_at == 0 && now - t0 >= 1000) {
            /* one second of traffic: everything is busy, buffers are full */
            for (int i = 0; i < ST_ECHO; i++) {
                uint64_t owed = st->e[i].sent - st->e[i].got;
                inflight += owed;
                owed_min = owed < owed_min ? owed : owed_min;
            }
            h_signal(&f->d, SIGTERM);
            term_at = h_now_ms();
            st->term = true;
        }
        if (term_at && now - term_at > (ST_TIMEOUT + 1) * 1000 + 500)
            break;
        n = epoll_wait(f->ep, ev, NEVENTS, 1);
        for (int i = 0; i < n; i++) {
            unsigned kind = (unsigned)(ev[i].data.u64 >> 32), idx = (uint32_t)ev[i].data.u64;
            if (kind == 1) {
                st_echo_io(st, (int)idx, true);
                continue;
            }
            lc_flush(st->c[idx]);
            lc_pump(st->c[idx], st_chat_line, st);
        }
        /* edge-triggered: give everyone a turn on the clock too */
        for (int i = 0; i < ST_ECHO; i++)
            st_echo_io(st, i, true);
        st_flood(st, now - t0);
        for (int i = 0; i < ST_CHAT; i++)
            lc_pump(st->c[i], st_chat_line, st);
        if (term_at && st_all_ended(st)) {
            /* everyone saw the daemon's FIN: close our side, it can go */
            for (int i = 0; i < ST_ECHO; i++)
                if (st->e[i].fd >= 0) {
                    close(st->e[i].fd);
                    st->e[i].fd = -1;
                }
            for (int i = 0; i < ST_CHAT; i++)
                if (st->c[i]->fd >= 0) {
                    close(st->c[i]->fd);
                    st->c[i]->fd = -1;
                }
        }
        if (term_at && (status = h_wait_exit(&f->d, 0)) >= 0)
            exit_ms = h_now_ms() - term_at;
    }
    print_message("sigterm: %llu MB in flight to %d echo clients (at least %llu KB each), "
                  "%d chat clients flooded with %d lines; exit %d after %ld ms\n",
                  (unsigned long long)(inflight >> 20), ST_ECHO,
                  (unsigned long long)(owed_min >> 10), ST_CHAT,
                  st->sent[0] + st->sent[1] + st->sent[2] + st->sent[3] + st->sent[4], status,
                  exit_ms);
    if (st->err[0] != '\0')
        fail_msg("%s", st->err);
    for (int i = 0; i < ST_ECHO; i++)
        if (!st->e[i].eof)
            fail_msg("echo client %d: %s instead of EOF (got %llu of %llu bytes)", i,
                     st->e[i].err ? strerror(st->e[i].err) : "nothing",
                     (unsigned long long)st->e[i].got, (unsigned long long)st->e[i].sent);
    for (int i = 0; i < ST_CHAT; i++) {
        struct lc *c = st->c[i];
        if (!c->eof)
            fail_msg("chat client %d: %s instead of EOF", i, c->err ? strerror(c->err) : "nothing");
        if (st->told[i] != 1 || strcmp(c->last, "*** server shutting down") != 0)
            fail_msg("chat client %d: told %d times; last line \"%s\"", i, st->told[i], c->last);
    }
    lc_assert_clean(st->c, ST_CHAT);
    if (status < 0)
        fail_msg("daemon still running %d s after SIGTERM", ST_TIMEOUT + 1);
    assert_int_equal(status, 0);
    assert_true(exit_ms <= (ST_TIMEOUT + 1) * 1000);
    assert_true(inflight > 50u << 20); /* it was heavy: MBs owed on average */
    for (int i = 0; i < ST_CHAT; i++)
        lc_free(st->c[i]);
    free(st->pat);
    free(st);
}

int
main(int argc, char **argv)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_fault_garbage_10000_conversation_intact),
        T(test_fault_churn_50000_fds_and_rss_return),
        T(test_fault_slowloris_1000_normal_pair_unaffected),
        T(test_fault_idle_timeout_clears_silent_keeps_dribblers),
        T(test_fault_reset_mid_fanout_others_get_every_line),
        T(test_fault_emfile_flood_keeps_serving_no_spin),
        T(test_fault_sigterm_heavy_traffic_all_told_prefix_exit_0),
    };
#undef T
    struct rlimit rl;

    /* thousands of sockets at once: take the whole hard limit */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    /* "test_fault '*churn*'" runs one test */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("fault", tests, NULL, NULL);
}
