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
 *   The flush queue is FIFO, and while writing keeps the server busy the
 *   pacer (pacer.h) may hold its newest third for a moment, so that the
 *   next lines for those clients share one write with these: a write costs
 *   per segment, not per byte.
 * - Closing is deferred to the end of the iteration (client_table_flush), so
 *   a client is never freed while a caller up the stack (a fan-out loop, say)
 *   still holds it. A graceful finish flushes, sends FIN, then reads and
 *   discards until the peer's FIN before closing: closing with unread input
 *   would make the kernel send RST, and a RST can destroy data still in
 *   flight towards the peer.
 * - Time: the idle list and the linger list are kept in last-activity order,
 *   so the oldest entry is the next to expire and one loop timer per list
 *   serves every client: no per-wakeup scan.
 * - Memory: clients live in a table indexed by file descriptor, and the
 *   table IS the client storage. A slot holds the struct client followed by
 *   the protocol's per-client state (data_max bytes), so a connection costs
 *   one slot: no malloc header and padding per client, no second allocation
 *   for the protocol, no array of pointers to find it. Slots come in chunks
 *   of CLIENT_CHUNK, allocated on first use and never moved (client pointers
 *   stay valid; the loop holds them) nor freed before the table: after a
 *   burst of connections the RSS stays at the peak number of descriptors,
 *   which a later burst reuses. A free slot is all zeros (no CL_USED).
 */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "client_table.h"
#include "log.h"
#include "pacer.h"
#include "util.h"

#define CLIENT_SCRATCH   (64 * 1024)
#define CLIENT_CHUNK     256 /* slots per chunk */
#define CLIENT_ALIGN     8   /* of the protocol state after the struct client */
#define CLIENT_ROUND(n)  (((n) + CLIENT_ALIGN - 1) & ~(size_t)(CLIENT_ALIGN - 1))
#define CLIENT_PROTO_MAX 8 /* distinct (ops, ctx) pairs per table */

enum {
    CL_OPENED = 1u << 0,    /* ops->open ran: ops->close and the hook are owed */
    CL_PAUSED = 1u << 1,    /* the protocol paused reading */
    CL_EOF = 1u << 2,       /* the peer's FIN arrived */
    CL_CLOSING = 1u << 3,   /* client_close: waiting to be freed */
    CL_FINISHING = 1u << 4, /* client_finish: flushing, then FIN */
    CL_WR_SHUT = 1u << 5,   /* our FIN is sent: lingering for theirs */
    CL_DIRTY = 1u << 6,     /* on the flush queue */
    CL_WANT_OUT = 1u << 7,  /* the kernel refused output: EPOLLOUT armed */
    CL_LISTED = 1u << 8,    /* on the idle or the linger list */
    CL_USED = 1u << 9       /* the slot holds a client (a free slot is zeros) */
};

/* Queue times are kept in 16 bits of 64 µs ticks: they wrap after 4.2 s,
 * and nothing waits in the queue for more than a hold limit (10 ms) plus
 * one loop iteration. */
#define CLIENT_TICK_SHIFT 6

struct client_list {
    struct client *head; /* oldest activity */
    struct client *tail;
};

/*
 * Kept small on purpose (88 bytes): ten thousand idle clients are ten
 * thousand slots of these plus protocol state, and nothing else (the buffers
 * are empty, hence unallocated). Hence the packing: the lists link clients
 * by descriptor (fd + 1, 0 for none) rather than by pointer, the protocol
 * and its ctx are an index into the table's few pairs, and the time of the
 * last activity is 48 bits of milliseconds since the table was created
 * (8,900 years: it never wraps, even for a year-long --idle-timeout).
 */
struct client {
    struct client_table *tab;
    struct loop_timer *wake; /* allocated by the first client_wake_at */
    struct buf out;
    int fd;
    uint32_t prev, next; /* idle or linger list; next: reap list */
    uint32_t qnext;      /* flush queue */
    uint32_t active;     /* ms of the last activity since t->epoch, low bits */
    uint16_t active_hi;  /* and high bits */
    uint16_t flags;
    uint16_t port;
    union {              /* one or the other: a closing client is never held */
        uint16_t err;    /* closing: errno of the failure, for the log */
        uint16_t queued; /* on the flush queue: when, in CLIENT_TICK_SHIFT ticks */
    };
    uint8_t why;    /* enum client_why, once closing or finishing */
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t proto;  /* its ops and ctx: t->protos[proto] */
    uint8_t addr[16];
};
_Static_assert(CLIENT_NAME_MAX >= NET_ADDRSTRLEN + 32, "client_name() needs the room");
_Static_assert(sizeof(struct client) <= 88, "struct client grew: every connection pays for it");

struct client_table {
    struct loop *loop;
    uint64_t epoch; /* loop time at creation: client times count from it */
    struct {
        const struct client_ops *ops;
        void *ctx;
    } protos[CLIENT_PROTO_MAX]; /* the protocols served, found by index */
    size_t nprotos;
    uint8_t **chunks; /* chunks[fd / CLIENT_CHUNK]: NULL until first used */
    size_t nchunks;
    size_t stride; /* bytes per slot: the client, then data_max of state */
    size_t count;
    struct client_limits lim;
    struct client_list idle;   /* open clients, when --idle-timeout is set */
    struct client_list linger; /* finishing clients */
    struct loop_timer idle_timer;
    struct loop_timer linger_timer;
    struct client *dirty; /* flush queue (FIFO, oldest first), through qnext */
    struct client *dirty_tail;
    size_t ndirty;                /* clients on the flush queue */
    bool fresh;                   /* clients were queued since the last flush */
    struct pacer pacer;           /* how much of the flush queue may wait */
    struct loop_timer hold_timer; /* when the oldest held output is due */
    struct client *reap;          /* closed clients to free, through next */
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

/* --- slots, links and times --------------------------------------------- */

/* The slot of fd, used or not; NULL when its chunk does not exist. */
static struct client *
client_slot(const struct client_table *t, size_t fd)
{
    uint8_t *chunk = fd / CLIENT_CHUNK < t->nchunks ? t->chunks[fd / CLIENT_CHUNK] : NULL;

    return chunk ? (struct client *)(chunk + fd % CLIENT_CHUNK * t->stride) : NULL;
}

/* A link to c (0: none), and back. */
static uint32_t
client_ref(const struct client *c)
{
    return c ? (uint32_t)c->fd + 1 : 0;
}

static struct client *
client_at(const struct client_table *t, uint32_t ref)
{
    return ref ? client_slot(t, ref - 1) : NULL;
}

static const struct client_ops *
client_ops(const struct client *c)
{
    return c->tab->protos[c->proto].ops;
}

static void
client_stamp(struct client *c)
{
    uint64_t ms = loop_now(c->tab->loop) - c->tab->epoch;

    c->active = (uint32_t)ms;
    c->active_hi = (uint16_t)(ms >> 32);
}

/* The loop time of c's last activity. */
static uint64_t
client_active(const struct client *c)
{
    return c->tab->epoch + ((uint64_t)c->active_hi << 32 | c->active);
}

/* --- the idle and linger lists ------------------------------------------- */

static void
list_unlink(struct client_list *l, struct client *c)
{
    struct client *prev = client_at(c->tab, c->prev);
    struct client *next = client_at(c->tab, c->next);

    if (prev)
        prev->next = c->next;
    else
        l->head = next;
    if (next)
        next->prev = c->prev;
    else
        l->tail = prev;
    c->prev = c->next = 0;
}

static void
list_append(struct client_list *l, struct client *c)
{
    c->next = 0;
    c->prev = client_ref(l->tail);
    if (l->tail)
        l->tail->next = client_ref(c);
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

/* When c, on list l, expires. Times are whole milliseconds and c's stamp
 * may be up to 1 ms older than its activity, so "silent for ttl" means a
 * clock reading past stamp + ttl: one more millisecond, never one less. */
static uint64_t
client_list_deadline(const struct client_table *t, const struct client_list *l,
                     const struct client *c)
{
    return client_active(c) + client_list_ttl(t, l) + 1;
}

static void
client_list_arm(struct client_table *t, struct client_list *l)
{
    struct loop_timer *tm = l == &t->idle ? &t->idle_timer : &t->linger_timer;

    /* lazily: an early expiry just re-arms for the head of the moment */
    if (l->head && !loop_timer_armed(tm))
        loop_timer_set(t->loop, tm, client_list_deadline(t, l, l->head));
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
    client_stamp(c);
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
    client_stamp(c);
    list_append(l, c);
    c->flags |= CL_LISTED;
    client_list_arm(t, l);
}

/* --- events -------------------------------------------------------------- */

static void client_fail(struct client *c, int err);

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
    if ((rc = loop_mod(c->tab->loop, c->fd, ev)) < 0)
        client_fail(c, -rc);
}

/* Queue c for the end-of-iteration flush, at the young end. Output for a
 * client that is already queued just joins what it has: if the pacer is
 * holding it, that is the batching paying off. */
static void
client_mark_dirty(struct client *c)
{
    struct client_table *t = c->tab;

    if (c->flags & CL_DIRTY) {
        pacer_joined(&t->pacer);
        return;
    }
    c->flags |= CL_DIRTY;
    c->queued = (uint16_t)(loop_now_us(t->loop) >> CLIENT_TICK_SHIFT);
    c->qnext = 0;
    if (t->dirty_tail)
        t->dirty_tail->qnext = client_ref(c);
    else
        t->dirty = c;
    t->dirty_tail = c;
    t->ndirty++;
    t->fresh = true;
}

static void client_reap_later(struct client *c);

/* Close c for an error; the errno is kept for the log line. */
static void
client_fail(struct client *c, int err)
{
    client_close(c, CLIENT_WHY_ERROR);
    c->err = (uint16_t)err;
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
        t->st.writes++;
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
        client_ops(c)->drain && !(c->flags & CL_CLOSING))
        client_ops(c)->drain(c);
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
            client_ops(c)->eof(c);
        return;
    }
    t->st.bytes_in += (uint64_t)n;
    client_touch(c);
    if (c->flags & CL_FINISHING)
        return; /* closing: input is read only so that close sends no RST */
    int rc = client_ops(c)->read(c, t->scratch, (size_t)n);
    if (rc < 0 && !(c->flags & CL_CLOSING)) {
        client_close(c, CLIENT_WHY_PROTOCOL);
        c->err = (uint16_t)-rc;
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
    struct client *c;

    (void)tm;
    while ((c = t->idle.head) != NULL && client_list_deadline(t, &t->idle, c) <= loop_now(l)) {
        char name[CLIENT_NAME_MAX];
        if (c->flags & CL_PAUSED) {
            /* paused reading (rate limit, backpressure): it has sent what
             * we have not consumed yet, which is the opposite of idle */
            client_touch(c);
            continue;
        }
        log_info("%s: idle for %u s", client_name(c, name, sizeof(name)), t->lim.idle_timeout);
        if (client_ops(c)->notice)
            client_ops(c)->notice(c, CLIENT_NOTICE_IDLE);
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
    while ((c = t->linger.head) != NULL && client_list_deadline(t, &t->linger, c) <= loop_now(l))
        client_close(c, c->why == CLIENT_WHY_BYE ? CLIENT_WHY_LINGER : (enum client_why)c->why);
    client_list_arm(t, &t->linger);
}

static void
client_on_wake(struct loop *l, struct loop_timer *tm, void *arg)
{
    struct client *c = arg;

    (void)l;
    (void)tm;
    if (!(c->flags & CL_CLOSING) && client_ops(c)->wake)
        client_ops(c)->wake(c);
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

/* How long c has been on the flush queue at now (µs), to a tick. */
static uint64_t
client_queued_for(const struct client *c, uint64_t now)
{
    uint16_t ticks = (uint16_t)((uint16_t)(now >> CLIENT_TICK_SHIFT) - c->queued);

    return (uint64_t)ticks << CLIENT_TICK_SHIFT;
}

/* The oldest held output is due: judge the hold (a wasted one turns
 * batching off for a while); the flush after the timers writes it. */
static void
client_on_hold(struct loop *l, struct loop_timer *tm, void *arg)
{
    struct client_table *t = arg;

    (void)tm;
    if (pacer_expired(&t->pacer, loop_now_us(l)))
        log_debug("output batching paused: held output was not joined by more");
}

/* --- the table ----------------------------------------------------------- */

int
client_table_new(struct client_table **out, struct loop *l, int maxfd,
                 const struct client_limits *lim)
{
    struct client_table *t = xcalloc(1, sizeof(*t));

    t->loop = l;
    t->epoch = loop_now(l);
    t->lim = *lim;
    t->stride = CLIENT_ROUND(CLIENT_ROUND(sizeof(struct client)) + lim->data_max);
    t->nchunks = ((maxfd > 0 ? (size_t)maxfd : 1024) + CLIENT_CHUNK - 1) / CLIENT_CHUNK;
    t->chunks = xcalloc(t->nchunks, sizeof(*t->chunks));
    loop_timer_init(&t->idle_timer, client_on_idle, t);
    loop_timer_init(&t->linger_timer, client_on_linger, t);
    loop_timer_init(&t->hold_timer, client_on_hold, t);
    pacer_init(&t->pacer, loop_now_us(l));
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
    struct client *c = fd >= 0 ? client_slot(t, (size_t)fd) : NULL;

    return c && (c->flags & CL_USED) ? c : NULL;
}

void
client_table_each(struct client_table *t, void (*fn)(struct client *c, void *arg), void *arg)
{
    for (size_t i = 0; i < t->nchunks; i++) {
        for (size_t j = 0; t->chunks[i] && j < CLIENT_CHUNK; j++) {
            struct client *c = (struct client *)(t->chunks[i] + j * t->stride);
            if ((c->flags & (CL_USED | CL_CLOSING)) == CL_USED)
                fn(c, arg);
        }
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
        if (client_ops(c)->close)
            client_ops(c)->close(c);
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
    t->count--;
    buf_fini(&c->out);
    memset(c, 0, t->stride); /* a free slot, and zeroed state for the next */
}

static void
client_reap_later(struct client *c)
{
    c->next = client_ref(c->tab->reap);
    c->tab->reap = c;
}

/*
 * Take clients off the flush queue, oldest first, and write each one's
 * output once; free the closed ones. The pacer says how many of the newest
 * may stay queued (held) when writing keeps the server busy; a held client
 * is still written once its hold limit has passed, and the hold timer
 * brings the loop back for that.
 */
void
client_table_flush(struct client_table *t)
{
    uint64_t start = 0, limit = 0;
    size_t take = SIZE_MAX;
    uint16_t tick = (uint16_t)(loop_now_us(t->loop) >> CLIENT_TICK_SHIFT);

    if (t->dirty) {
        size_t hold;
        start = util_now_us();
        hold = pacer_begin(&t->pacer, start, t->ndirty, t->fresh);
        t->fresh = false;
        if (hold > 0)
            take = t->ndirty - hold; /* and what is queued meanwhile waits too */
        limit = pacer_hold_limit(&t->pacer);
    }
    for (;;) {
        struct client *c;

        if ((c = t->reap) != NULL) {
            t->reap = client_at(t, c->next);
            client_free(c); /* may close or queue output for others */
            continue;
        }
        if ((c = t->dirty) != NULL) {
            if (take == 0 && !(c->flags & (CL_CLOSING | CL_WANT_OUT))) {
                uint64_t waited = client_queued_for(c, start);
                if (waited < limit) {
                    pacer_held(&t->pacer);
                    loop_timer_set(t->loop, &t->hold_timer, (start + limit - waited + 999) / 1000);
                    break;
                }
            }
            take -= take > 0;
            t->dirty = client_at(t, c->qnext);
            if (t->dirty == NULL)
                t->dirty_tail = NULL;
            t->ndirty--;
            c->qnext = 0;
            c->flags &= ~CL_DIRTY;
            if (c->flags & CL_CLOSING) {
                client_reap_later(c); /* client_close left it to us */
            } else if (!(c->flags & CL_WANT_OUT)) {
                /* queued in an earlier iteration: only a hold keeps it */
                if (c->queued != tick)
                    t->st.held++;
                client_flush(c);
            }
            continue;
        }
        break;
    }
    if (start)
        pacer_spent(&t->pacer, util_now_us() - start);
    if (t->dirty == NULL && pacer_holding(&t->pacer)) {
        pacer_drained(&t->pacer);
        loop_timer_stop(t->loop, &t->hold_timer);
    }
}

void
client_table_free(struct client_table *t)
{
    if (t == NULL)
        return;
    for (size_t fd = 0; fd < t->nchunks * CLIENT_CHUNK; fd++) {
        struct client *c = client_table_get(t, (int)fd);
        if (c)
            client_close(c, CLIENT_WHY_SHUTDOWN);
    }
    client_table_flush(t);
    loop_timer_stop(t->loop, &t->idle_timer);
    loop_timer_stop(t->loop, &t->linger_timer);
    loop_timer_stop(t->loop, &t->hold_timer);
    for (size_t i = 0; i < t->nchunks; i++)
        free(t->chunks[i]);
    free(t->chunks);
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

/* The slot for fd, creating its chunk (and growing the chunk index) first
 * if need be. Chunks never move, so client pointers stay valid. */
static struct client *
client_slot_new(struct client_table *t, size_t fd)
{
    size_t k = fd / CLIENT_CHUNK;

    if (k >= t->nchunks) {
        size_t n = UTIL_MAX(t->nchunks * 2, k + 1);
        t->chunks = xrealloc(t->chunks, n * sizeof(*t->chunks));
        memset(t->chunks + t->nchunks, 0, (n - t->nchunks) * sizeof(*t->chunks));
        t->nchunks = n;
    }
    if (t->chunks[k] == NULL)
        t->chunks[k] = xcalloc(CLIENT_CHUNK, t->stride);
    return client_slot(t, fd);
}

/* The index of (ops, ctx) in t->protos, adding it on first sight. A server
 * has two protocols; more than CLIENT_PROTO_MAX is a programmer error. */
static uint8_t
client_proto(struct client_table *t, const struct client_ops *ops, void *ctx)
{
    size_t i = 0;

    while (i < t->nprotos && (t->protos[i].ops != ops || t->protos[i].ctx != ctx))
        i++;
    if (i == t->nprotos) {
        assert(t->nprotos < CLIENT_PROTO_MAX);
        t->protos[i].ops = ops;
        t->protos[i].ctx = ctx;
        t->nprotos++;
    }
    return (uint8_t)i;
}

struct client *
client_new(struct client_table *t, int fd, const struct net_addr *peer,
           const struct client_ops *ops, void *ctx, int notice)
{
    struct client *c;
    char name[CLIENT_NAME_MAX];
    int rc;

    assert(fd >= 0 && ops->data_size <= t->lim.data_max);
    c = client_slot_new(t, (size_t)fd);
    assert(!(c->flags & CL_USED)); /* the kernel never hands out an open fd */
    c->flags = CL_USED;
    c->fd = fd;
    c->proto = client_proto(t, ops, ctx);
    c->tab = t;
    client_set_peer(c, peer);
    if ((rc = loop_add(t->loop, fd, LOOP_READ, client_on_io, c)) < 0) {
        log_warn("%s: cannot watch: %s", client_name(c, name, sizeof(name)), strerror(-rc));
        close(fd);
        memset(c, 0, t->stride);
        return NULL;
    }
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
        client_close(c, CLIENT_WHY_PROTOCOL);
        c->err = (uint16_t)-rc;
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
    c->err = 0;                    /* it held the queue time; a failure sets it after this */
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
    client_stamp(c);
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
    /* through uintptr_t: the state is the caller's to change, as before */
    return client_ops(c)->data_size ? (void *)((uintptr_t)c + CLIENT_ROUND(sizeof(*c))) : NULL;
}

struct client *
client_of_data(void *data)
{
    return (struct client *)((uint8_t *)data - CLIENT_ROUND(sizeof(struct client)));
}

void *
client_ctx(const struct client *c)
{
    return c->tab->protos[c->proto].ctx;
}

const struct client_ops *
client_ops_of(const struct client *c)
{
    return client_ops(c);
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
