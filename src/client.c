/*
 * client: connections and their table. This module owns every byte that
 * crosses a client socket, so the protocols above stay free of epoll and
 * sockets, and the policies that keep one bad peer from hurting the others
 * live in one place:
 *
 * - Input: one recv() per readiness event into a scratch buffer shared by all
 *   clients (an idle client holds no input buffer), handed to ops->read.
 *   Level-triggered epoll brings us back if more is waiting, which keeps a
 *   fast sender from starving the rest.
 * - Output: queued per client and written once at the end of the loop
 *   iteration, however many lines were queued; EPOLLOUT is armed only when
 *   the kernel refused part of it, and disarmed as soon as the queue drains.
 * - Closing is deferred to the end of the iteration (client_table_flush), so
 *   a client is never freed while a caller up the stack (a fan-out loop, say)
 *   still holds it. A graceful finish flushes, sends FIN, then reads and
 *   discards until the peer's FIN before closing: closing with unread input
 *   would make the kernel send RST, and a RST can destroy data still in
 *   flight towards the peer.
 * - Time: the idle list and the linger list are kept in last-activity order,
 *   so the oldest entry is the next to expire and one loop timer per list
 *   serves every client: no per-wakeup scan.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "log.h"
#include "util.h"

#define CLIENT_SCRATCH (64 * 1024)

enum {
    CL_OPENED = 1u << 0,    /* ops->open ran: ops->close and the hook are owed */
    CL_PAUSED = 1u << 1,    /* the protocol paused reading */
    CL_EOF = 1u << 2,       /* the peer's FIN arrived */
    CL_CLOSING = 1u << 3,   /* client_close: waiting to be freed */
    CL_FINISHING = 1u << 4, /* client_finish: flushing, then FIN */
    CL_WR_SHUT = 1u << 5,   /* our FIN is sent: lingering for theirs */
    CL_DIRTY = 1u << 6,     /* on the flush queue */
    CL_WANT_OUT = 1u << 7,  /* the kernel refused output: EPOLLOUT armed */
    CL_LISTED = 1u << 8     /* on the idle or the linger list */
};

struct client_list {
    struct client *head; /* oldest activity */
    struct client *tail;
};

/* Kept small on purpose: ten thousand idle clients are ten thousand of these
 * and nothing else (the buffers are empty, hence unallocated). */
struct client {
    int fd;
    uint16_t flags;
    uint8_t why;    /* enum client_why, once closing or finishing */
    uint8_t family; /* AF_INET or AF_INET6 */
    uint16_t port;
    uint16_t err; /* errno of the failure that closed it, for the log */
    uint8_t addr[16];
    const struct client_ops *ops;
    void *ctx;
    void *data;
    struct client_table *tab;
    struct buf out;
    struct client *prev, *next; /* idle or linger list; next: reap list */
    struct client *qnext;       /* flush queue */
    uint64_t active;            /* ms of the last activity */
    struct loop_timer *wake;    /* allocated by the first client_wake_at */
};

struct client_table {
    struct loop *loop;
    struct client **byfd;
    size_t nbyfd;
    size_t count;
    struct client_limits lim;
    struct client_list idle;   /* open clients, when --idle-timeout is set */
    struct client_list linger; /* finishing clients */
    struct loop_timer idle_timer;
    struct loop_timer linger_timer;
    struct client *dirty; /* flush queue, through qnext */
    struct client *reap;  /* closed clients to free, through next */
    client_hook_fn *hook;
    void *hookarg;
    struct client_stats st;
    uint8_t scratch[CLIENT_SCRATCH];
};

static const char *const client_whys[CLIENT_WHY_COUNT] = {
    [CLIENT_WHY_BYE] = "bye",
    [CLIENT_WHY_ERROR] = "error",
    [CLIENT_WHY_OUTPUT] = "output limit",
    [CLIENT_WHY_IDLE] = "idle timeout",
    [CLIENT_WHY_SHUTDOWN] = "shutdown",
    [CLIENT_WHY_REFUSED] = "refused",
    [CLIENT_WHY_LINGER] = "linger timeout",
    [CLIENT_WHY_PROTOCOL] = "protocol error",
};

const char *
client_why_str(enum client_why why)
{
    return (unsigned)why < CLIENT_WHY_COUNT ? client_whys[why] : "?";
}

/* --- the idle and linger lists ------------------------------------------- */

static void
list_unlink(struct client_list *l, struct client *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
}

static void
list_append(struct client_list *l, struct client *c)
{
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

static struct client_list *
client_list_of(struct client *c)
{
    return c->flags & CL_FINISHING ? &c->tab->linger : &c->tab->idle;
}

static uint64_t
client_list_ttl(const struct client_table *t, const struct client_list *l)
{
    return l == &t->idle ? (uint64_t)t->lim.idle_timeout * 1000 : t->lim.linger_ms;
}

static void
client_list_arm(struct client_table *t, struct client_list *l)
{
    struct loop_timer *tm = l == &t->idle ? &t->idle_timer : &t->linger_timer;

    /* lazily: an early expiry just re-arms for the head of the moment */
    if (l->head && !loop_timer_armed(tm))
        loop_timer_set(t->loop, tm, l->head->active + client_list_ttl(t, l));
}

static void
client_unlist(struct client *c)
{
    if (c->flags & CL_LISTED) {
        list_unlink(client_list_of(c), c);
        c->flags &= ~CL_LISTED;
    }
}

/* Note activity: the client moves to the young end of its list. */
static void
client_touch(struct client *c)
{
    struct client_table *t = c->tab;

    c->active = loop_now(t->loop);
    if (c->flags & CL_LISTED) {
        struct client_list *l = client_list_of(c);
        if (l->tail != c) {
            list_unlink(l, c);
            list_append(l, c);
        }
    }
}

static void
client_list_put(struct client *c)
{
    struct client_table *t = c->tab;
    struct client_list *l = client_list_of(c);

    if (l == &t->idle && t->lim.idle_timeout == 0)
        return; /* no idle timeout: no list to keep */
    c->active = loop_now(t->loop);
    list_append(l, c);
    c->flags |= CL_LISTED;
    client_list_arm(t, l);
}

/* --- events -------------------------------------------------------------- */

static void
client_update_events(struct client *c)
{
    uint32_t ev = 0;
    int rc;

    if (c->flags & CL_CLOSING)
        return;
    /* a finishing client reads (and discards) even if the protocol paused it */
    if (!(c->flags & CL_EOF) && (!(c->flags & CL_PAUSED) || (c->flags & CL_FINISHING)))
        ev |= LOOP_READ;
    if (c->flags & CL_WANT_OUT)
        ev |= LOOP_WRITE;
    if ((rc = loop_mod(c->tab->loop, c->fd, ev)) < 0) {
        c->err = (uint16_t)-rc;
        client_close(c, CLIENT_WHY_ERROR);
    }
}

static void
client_mark_dirty(struct client *c)
{
    if (c->flags & CL_DIRTY)
        return;
    c->flags |= CL_DIRTY;
    c->qnext = c->tab->dirty;
    c->tab->dirty = c;
}

static void client_reap_later(struct client *c);

static void
client_fail(struct client *c, int err)
{
    c->err = (uint16_t)err;
    client_close(c, CLIENT_WHY_ERROR);
}

/* Our FIN is out. With theirs already in, nothing is left to wait for. */
static void
client_shut(struct client *c)
{
    if (shutdown(c->fd, SHUT_WR) < 0 && errno != ENOTCONN) {
        client_fail(c, errno);
        return;
    }
    c->flags |= CL_WR_SHUT;
    if (c->flags & CL_EOF)
        client_close(c, (enum client_why)c->why);
}

/*
 * Write the queue once. A short write means the socket buffer is full: a
 * second send would only return EAGAIN, so arm EPOLLOUT instead of trying.
 */
static void
client_flush(struct client *c)
{
    struct client_table *t = c->tab;
    size_t len = buf_len(&c->out);
    bool progress = false;

    if (c->flags & (CL_CLOSING | CL_WR_SHUT))
        return;
    if (len > 0) {
        ssize_t n = send(c->fd, buf_data(&c->out), len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            client_fail(c, errno);
            return;
        }
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            t->st.bytes_out += (uint64_t)n;
            progress = true;
        }
    }
    if (buf_empty(&c->out) == !!(c->flags & CL_WANT_OUT)) {
        c->flags ^= CL_WANT_OUT;
        client_update_events(c);
    }
    if (progress && (c->flags & CL_FINISHING))
        client_touch(c);
    if (progress && (c->flags & CL_PAUSED) && buf_len(&c->out) <= t->lim.max_output / 2 &&
        c->ops->drain && !(c->flags & CL_CLOSING))
        c->ops->drain(c);
    if ((c->flags & (CL_FINISHING | CL_CLOSING)) == CL_FINISHING && buf_empty(&c->out))
        client_shut(c);
}

static void
client_read(struct client *c)
{
    struct client_table *t = c->tab;
    ssize_t n = recv(c->fd, t->scratch, sizeof(t->scratch), MSG_DONTWAIT);

    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            client_fail(c, errno);
        return;
    }
    if (n == 0) {
        c->flags |= CL_EOF;
        client_update_events(c); /* EOF stays readable: stop watching it */
        if (c->flags & CL_WR_SHUT)
            client_close(c, (enum client_why)c->why);
        else if (!(c->flags & CL_FINISHING))
            c->ops->eof(c);
        return;
    }
    t->st.bytes_in += (uint64_t)n;
    client_touch(c);
    if (c->flags & CL_FINISHING)
        return; /* closing: input is read only so that close sends no RST */
    int rc = c->ops->read(c, t->scratch, (size_t)n);
    if (rc < 0 && !(c->flags & CL_CLOSING)) {
        c->err = (uint16_t)-rc;
        client_close(c, CLIENT_WHY_PROTOCOL);
    }
}

static void
client_on_io(struct loop *l, int fd, uint32_t ev, void *arg)
{
    struct client *c = arg;

    (void)l;
    (void)fd;
    if ((ev & LOOP_WRITE) && !(c->flags & CL_CLOSING))
        client_flush(c);
    if (!(ev & LOOP_READ) || (c->flags & CL_CLOSING))
        return;
    if (!(c->flags & CL_EOF)) {
        client_read(c);
        return;
    }
    /*
     * Reading stopped at EOF, so this is epoll's error/hang-up report, which
     * it repeats on every wait whatever we watch. Before our own FIN a
     * hang-up means the peer reset: the connection is gone both ways, and
     * ignoring it would spin the loop until the protocol finishes.
     */
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err == 0)
        err = ECONNRESET;
    client_fail(c, err);
}

/* --- timers -------------------------------------------------------------- */

static void
client_on_idle(struct loop *l, struct loop_timer *tm, void *arg)
{
    struct client_table *t = arg;
    uint64_t ttl = (uint64_t)t->lim.idle_timeout * 1000;
    struct client *c;

    (void)tm;
    while ((c = t->idle.head) != NULL && c->active + ttl <= loop_now(l)) {
        char name[CLIENT_NAME_MAX];
        if (c->flags & CL_PAUSED) {
            /* paused reading (rate limit, backpressure): it has sent what
             * we have not consumed yet, which is the opposite of idle */
            client_touch(c);
            continue;
        }
        log_info("%s: idle for %u s", client_name(c, name, sizeof(name)), t->lim.idle_timeout);
        if (c->ops->notice)
            c->ops->notice(c, CLIENT_NOTICE_IDLE);
        client_finish(c, CLIENT_WHY_IDLE); /* moves it off the idle list */
    }
    client_list_arm(t, &t->idle);
}

static void
client_on_linger(struct loop *l, struct loop_timer *tm, void *arg)
{
    struct client_table *t = arg;
    struct client *c;

    (void)tm;
    while ((c = t->linger.head) != NULL && c->active + t->lim.linger_ms <= loop_now(l))
        client_close(c, c->why == CLIENT_WHY_BYE ? CLIENT_WHY_LINGER : (enum client_why)c->why);
    client_list_arm(t, &t->linger);
}

static void
client_on_wake(struct loop *l, struct loop_timer *tm, void *arg)
{
    struct client *c = arg;

    (void)l;
    (void)tm;
    if (!(c->flags & CL_CLOSING) && c->ops->wake)
        c->ops->wake(c);
}

void
client_wake_at(struct client *c, uint64_t when_ms)
{
    if (c->wake == NULL) {
        c->wake = xmalloc(sizeof(*c->wake));
        loop_timer_init(c->wake, client_on_wake, c);
    }
    loop_timer_set(c->tab->loop, c->wake, when_ms);
}

/* --- the table ----------------------------------------------------------- */

int
client_table_new(struct client_table **out, struct loop *l, int maxfd,
                 const struct client_limits *lim)
{
    struct client_table *t = xcalloc(1, sizeof(*t));

    t->loop = l;
    t->lim = *lim;
    t->nbyfd = maxfd > 0 ? (size_t)maxfd : 1024;
    t->byfd = xcalloc(t->nbyfd, sizeof(*t->byfd));
    loop_timer_init(&t->idle_timer, client_on_idle, t);
    loop_timer_init(&t->linger_timer, client_on_linger, t);
    *out = t;
    return 0;
}

void
client_table_hook(struct client_table *t, client_hook_fn *fn, void *arg)
{
    t->hook = fn;
    t->hookarg = arg;
}

size_t
client_table_count(const struct client_table *t)
{
    return t->count;
}

const struct client_stats *
client_table_stats(const struct client_table *t)
{
    return &t->st;
}

struct client *
client_table_get(const struct client_table *t, int fd)
{
    return fd >= 0 && (size_t)fd < t->nbyfd ? t->byfd[fd] : NULL;
}

void
client_table_each(struct client_table *t, void (*fn)(struct client *c, void *arg), void *arg)
{
    for (size_t i = 0; i < t->nbyfd; i++) {
        struct client *c = t->byfd[i];
        if (c && !(c->flags & CL_CLOSING))
            fn(c, arg);
    }
}

static void
client_log_close(const struct client *c)
{
    char name[CLIENT_NAME_MAX];
    int prio = LOG_INFO;

    client_name(c, name, sizeof(name));
    switch ((enum client_why)c->why) {
    case CLIENT_WHY_OUTPUT:
    case CLIENT_WHY_IDLE:
    case CLIENT_WHY_LINGER:
    case CLIENT_WHY_PROTOCOL:
        prio = LOG_NOTICE;
        break;
    case CLIENT_WHY_REFUSED:
        prio = LOG_DEBUG; /* the refusal itself was logged by the server */
        break;
    default:
        break;
    }
    if (c->err)
        log_msg(prio, "%s: closed: %s: %s", name, client_why_str(c->why), strerror(c->err));
    else
        log_msg(prio, "%s: closed: %s", name, client_why_str(c->why));
}

static void
client_free(struct client *c)
{
    struct client_table *t = c->tab;

    if (c->flags & CL_OPENED) {
        if (c->ops->close)
            c->ops->close(c);
        if (t->hook)
            t->hook(c, false, t->hookarg);
    }
    client_log_close(c);
    t->st.closed[c->why]++;
    if (c->wake) {
        loop_timer_stop(t->loop, c->wake);
        free(c->wake);
    }
    close(c->fd);
    t->byfd[c->fd] = NULL;
    t->count--;
    buf_fini(&c->out);
    free(c);
}

static void
client_reap_later(struct client *c)
{
    c->next = c->tab->reap;
    c->tab->reap = c;
}

void
client_table_flush(struct client_table *t)
{
    for (;;) {
        struct client *c;

        if ((c = t->reap) != NULL) {
            t->reap = c->next;
            client_free(c); /* may close or queue output for others */
            continue;
        }
        if ((c = t->dirty) != NULL) {
            t->dirty = c->qnext;
            c->qnext = NULL;
            c->flags &= ~CL_DIRTY;
            if (c->flags & CL_CLOSING)
                client_reap_later(c); /* client_close left it to us */
            else if (!(c->flags & CL_WANT_OUT))
                client_flush(c);
            continue;
        }
        break;
    }
}

void
client_table_free(struct client_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nbyfd; i++)
        if (t->byfd[i])
            client_close(t->byfd[i], CLIENT_WHY_SHUTDOWN);
    client_table_flush(t);
    loop_timer_stop(t->loop, &t->idle_timer);
    loop_timer_stop(t->loop, &t->linger_timer);
    free(t->byfd);
    free(t);
}

static void
client_set_peer(struct client *c, const struct net_addr *peer)
{
    uint8_t key[16];
    size_t n = peer ? net_addr_key((const struct sockaddr *)&peer->ss, key) : 0;

    c->family = n == 4 ? AF_INET : n == 16 ? AF_INET6 : AF_UNSPEC;
    memcpy(c->addr, key, n);
    c->port = n ? (uint16_t)net_addr_port((const struct sockaddr *)&peer->ss) : 0;
}

struct client *
client_new(struct client_table *t, int fd, const struct net_addr *peer,
           const struct client_ops *ops, void *ctx, int notice)
{
    struct client *c;
    char name[CLIENT_NAME_MAX];
    int rc;

    if ((size_t)fd >= t->nbyfd) {
        size_t n = UTIL_MAX(t->nbyfd * 2, (size_t)fd + 1);
        t->byfd = xrealloc(t->byfd, n * sizeof(*t->byfd));
        memset(t->byfd + t->nbyfd, 0, (n - t->nbyfd) * sizeof(*t->byfd));
        t->nbyfd = n;
    }
    c = xcalloc(1, sizeof(*c));
    c->fd = fd;
    c->ops = ops;
    c->ctx = ctx;
    c->tab = t;
    client_set_peer(c, peer);
    if ((rc = loop_add(t->loop, fd, LOOP_READ, client_on_io, c)) < 0) {
        log_warn("%s: cannot watch: %s", client_name(c, name, sizeof(name)), strerror(-rc));
        close(fd);
        free(c);
        return NULL;
    }
    t->byfd[fd] = c;
    t->count++;
    t->st.accepted++;
    client_list_put(c);
    if (notice >= 0) {
        if (ops->notice)
            ops->notice(c, (enum client_notice)notice);
        client_finish(c, CLIENT_WHY_REFUSED);
        return c;
    }
    log_info("%s: connected (%s)", client_name(c, name, sizeof(name)), ops->name);
    c->flags |= CL_OPENED;
    if (t->hook)
        t->hook(c, true, t->hookarg);
    if (ops->open && (rc = ops->open(c)) < 0 && !(c->flags & CL_CLOSING)) {
        c->err = (uint16_t)-rc;
        client_close(c, CLIENT_WHY_PROTOCOL);
    }
    return c;
}

/* --- what the protocols call --------------------------------------------- */

int
client_send(struct client *c, const void *p, size_t n)
{
    int rc;

    if (c->flags & (CL_CLOSING | CL_FINISHING))
        return 0;
    if ((rc = buf_append(&c->out, p, n)) < 0)
        return rc;
    client_mark_dirty(c);
    return 0;
}

/*
 * Write-through for echo: with nothing queued, hand the bytes to the kernel
 * straight from the caller's buffer; only the part it refuses is copied.
 */
int
client_write(struct client *c, const void *p, size_t n)
{
    ssize_t w;

    if (c->flags & (CL_CLOSING | CL_FINISHING))
        return 0;
    if (!buf_empty(&c->out) || (c->flags & CL_DIRTY))
        return client_send(c, p, n);
    w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            client_fail(c, errno);
            return 0;
        }
        w = 0;
    }
    c->tab->st.bytes_out += (uint64_t)w;
    if ((size_t)w == n)
        return 0;
    if (buf_append(&c->out, (const uint8_t *)p + w, n - (size_t)w) < 0)
        return -ENOMEM;
    c->flags |= CL_WANT_OUT; /* the kernel refused: wait for EPOLLOUT */
    client_update_events(c);
    return 0;
}

size_t
client_output(const struct client *c)
{
    return buf_len(&c->out);
}

bool
client_output_full(const struct client *c)
{
    return buf_len(&c->out) >= c->tab->lim.max_output;
}

void
client_pause_read(struct client *c)
{
    if (c->flags & CL_PAUSED)
        return;
    c->flags |= CL_PAUSED;
    client_update_events(c);
}

void
client_resume_read(struct client *c)
{
    if (!(c->flags & CL_PAUSED))
        return;
    c->flags &= ~CL_PAUSED;
    client_update_events(c);
}

bool
client_read_paused(const struct client *c)
{
    return c->flags & CL_PAUSED;
}

void
client_close(struct client *c, enum client_why why)
{
    if (c->flags & CL_CLOSING)
        return;
    client_unlist(c);
    c->flags |= CL_CLOSING;
    c->why = (uint8_t)why;
    loop_del(c->tab->loop, c->fd); /* no events for it any more */
    /* still on the flush queue: the queue hands it over, so that it is never
     * freed while the queue points at it (and never newly queued: sends to a
     * closing client are dropped) */
    if (!(c->flags & CL_DIRTY))
        client_reap_later(c);
}

void
client_finish(struct client *c, enum client_why why)
{
    if (c->flags & (CL_CLOSING | CL_FINISHING))
        return;
    client_unlist(c);
    c->flags |= CL_FINISHING;
    c->why = (uint8_t)why;
    c->active = loop_now(c->tab->loop);
    list_append(&c->tab->linger, c);
    c->flags |= CL_LISTED;
    client_list_arm(c->tab, &c->tab->linger);
    client_update_events(c);
    client_mark_dirty(c); /* the flush sends what is owed, then our FIN */
}

bool
client_closing(const struct client *c)
{
    return c->flags & (CL_CLOSING | CL_FINISHING);
}

void *
client_data(const struct client *c)
{
    return c->data;
}

void
client_set_data(struct client *c, void *data)
{
    c->data = data;
}

void *
client_ctx(const struct client *c)
{
    return c->ctx;
}

const struct client_ops *
client_ops_of(const struct client *c)
{
    return c->ops;
}

uint64_t
client_now(const struct client *c)
{
    return loop_now(c->tab->loop);
}

size_t
client_addr_key(const struct client *c, uint8_t key[16])
{
    size_t n = c->family == AF_INET ? 4 : c->family == AF_INET6 ? 16 : 0;

    memcpy(key, c->addr, n);
    return n;
}

char *
client_name(const struct client *c, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    char addr[NET_ADDRSTRLEN] = "?";

    memset(&ss, 0, sizeof(ss));
    if (c->family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(c->port);
        memcpy(&sin->sin_addr, c->addr, 4);
        net_addr_str((struct sockaddr *)&ss, addr, sizeof(addr));
    } else if (c->family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(c->port);
        memcpy(&sin6->sin6_addr, c->addr, 16);
        net_addr_str((struct sockaddr *)&ss, addr, sizeof(addr));
    }
    snprintf(buf, len, "client %d %s", c->fd, addr);
    return buf;
}
