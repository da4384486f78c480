/*
 * server: the daemon as a whole. It opens the listeners (or adopts them from
 * systemd) and maps each to a protocol's ops, accepts, applies the limits
 * that need a view of every client (--max-clients, --max-per-ip), sets the
 * per-connection socket options, and owns everything process-wide: signals,
 * the graceful shutdown and its deadline, the statistics line, and the
 * systemd notifications (READY, STATUS, STOPPING, WATCHDOG). It is the
 * layer that knows which listener or which flag an error belongs to, so it
 * logs; it never exits (main does).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "buf.h"
#include "chat.h"
#include "client_table.h"
#include "echo.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "server.h"
#include "sysd.h"
#include "util.h"

#define SERVER_LISTEN_MAX   64
#define SERVER_ACCEPT_BURST 64    /* accepts per readiness event: fairness */
#define SERVER_PAUSE_MS     100   /* accept pause when even the spare fd is gone */
#define SERVER_LINGER_MS    10000 /* a closing client silent this long is dropped */
#define SERVER_STATUS_MS    1000  /* STATUS= at most this often */
#define SERVER_FD_RESERVE   32    /* descriptors beyond the clients: listeners, epoll... */
#define SERVER_IPTAB_MIN    64

struct listener {
    struct server *srv;
    int fd;
    bool chat;
    char name[NET_ADDRSTRLEN];
};

/* Connections per source address, for --max-per-ip: an open-addressing hash
 * table keyed by the address bytes, with tombstones left as count 0. */
struct ip_slot {
    uint8_t key[16];
    uint8_t len; /* 0: never used */
    uint32_t count;
};

struct server {
    const struct cfg *cfg;
    struct loop *loop;
    struct client_table *clients;
    struct chat *chat;
    struct sysd_notify notify;
    struct listener lst[SERVER_LISTEN_MAX];
    size_t nlst;
    int spare; /* a descriptor held back to shed connections on EMFILE */
    bool stopping;
    bool paused; /* accepting paused: out of descriptors */
    size_t nchat, necho;
    uint64_t shed;
    uint64_t refused;
    uint64_t last_shed_log;
    struct ip_slot *ips;
    size_t nips;
    size_t ipused; /* slots with a key, counted or not */
    struct loop_timer pause_timer;
    struct loop_timer stop_timer;
    struct loop_timer status_timer;
    struct loop_timer watchdog_timer;
    uint64_t watchdog_ms;
    uint64_t status_sent;
};

/* --- per-address counts -------------------------------------------------- */

static uint32_t
ip_hash(const uint8_t *key, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < len; i++)
        h = (h ^ key[i]) * 16777619u;
    return h;
}

/* The slot for key: its own, or the first free one on its probe path.
 * XXX: tombstones (count 0) are reused only by the same key; the table is
 * rebuilt when it grows, which clears them. Fine for a per-IP counter. */
static struct ip_slot *
ip_find(struct server *srv, const uint8_t *key, size_t len)
{
    size_t mask = srv->nips - 1, i = ip_hash(key, len) & mask;

    for (;; i = (i + 1) & mask) {
        struct ip_slot *s = &srv->ips[i];
        if (s->len == 0 || (s->len == len && memcmp(s->key, key, len) == 0))
            return s;
    }
}

static void
ip_grow(struct server *srv)
{
    struct ip_slot *old = srv->ips;
    size_t n = srv->nips;

    srv->nips = n ? n * 2 : SERVER_IPTAB_MIN;
    srv->ips = xcalloc(srv->nips, sizeof(*srv->ips));
    srv->ipused = 0;
    for (size_t i = 0; i < n; i++) {
        if (old[i].count > 0) {
            *ip_find(srv, old[i].key, old[i].len) = old[i];
            srv->ipused++;
        }
    }
    free(old);
}

static uint32_t
ip_count(struct server *srv, const uint8_t *key, size_t len)
{
    return srv->ips ? ip_find(srv, key, len)->count : 0;
}

static void
ip_add(struct server *srv, const uint8_t *key, size_t len, int delta)
{
    struct ip_slot *s;

    if (srv->ips == NULL)
        ip_grow(srv);
    s = ip_find(srv, key, len);
    if (s->len == 0) {
        if (2 * (srv->ipused + 1) > srv->nips) { /* keep it at most half full */
            ip_grow(srv);
            s = ip_find(srv, key, len);
        }
        memcpy(s->key, key, len);
        s->len = (uint8_t)len;
        srv->ipused++;
    }
    s->count = (uint32_t)((int64_t)s->count + delta);
}

/* --- systemd status ------------------------------------------------------ */

static void
server_notify(struct server *srv, const char *msg)
{
    int rc = sysd_notify_send(&srv->notify, msg);

    if (rc < 0)
        log_debug("notify: %s: %s", msg, strerror(-rc));
}

static void
server_send_status(struct server *srv)
{
    char msg[128];

    snprintf(msg, sizeof(msg), "STATUS=%zu clients (%zu chat, %zu echo)", srv->nchat + srv->necho,
             srv->nchat, srv->necho);
    server_notify(srv, msg);
    srv->status_sent = loop_now(srv->loop);
}

static void
server_on_status(struct loop *l, struct loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    server_send_status(arg);
}

/* Coalesce STATUS= updates: the first change after a quiet second goes out
 * at the end of this iteration's timers, later ones wait for the second. */
static void
server_status_changed(struct server *srv)
{
    if (srv->notify.fd < 0 || loop_timer_armed(&srv->status_timer))
        return;
    loop_timer_set(srv->loop, &srv->status_timer,
                   UTIL_MAX(loop_now(srv->loop), srv->status_sent + SERVER_STATUS_MS));
}

static void
server_on_watchdog(struct loop *l, struct loop_timer *t, void *arg)
{
    struct server *srv = arg;

    server_notify(srv, "WATCHDOG=1");
    loop_timer_set(l, t, loop_now(l) + srv->watchdog_ms);
}

/* --- clients ------------------------------------------------------------- */

static void
server_on_client(struct client *c, bool opened, void *arg)
{
    struct server *srv = arg;
    uint8_t key[16];
    size_t len;
    int d = opened ? 1 : -1;

    if (client_ops_of(c) == &chat_ops)
        srv->nchat += (size_t)d;
    else
        srv->necho += (size_t)d;
    if (srv->cfg->max_per_ip && (len = client_addr_key(c, key)) > 0)
        ip_add(srv, key, len, d);
    server_status_changed(srv);
}

/* Which refusal applies to a new connection, or -1 to admit it. */
static int
server_refusal(struct server *srv, const struct net_addr *peer)
{
    uint8_t key[16];
    size_t len;

    if (srv->nchat + srv->necho >= srv->cfg->max_clients)
        return CLIENT_NOTICE_FULL;
    if (srv->cfg->max_per_ip && (len = net_addr_key((const struct sockaddr *)&peer->ss, key)) > 0 &&
        ip_count(srv, key, len) >= srv->cfg->max_per_ip)
        return CLIENT_NOTICE_PER_IP;
    return -1;
}

static void
server_admit(struct listener *lst, int fd, const struct net_addr *peer)
{
    struct server *srv = lst->srv;
    char who[NET_ADDRSTRLEN];
    int notice = server_refusal(srv, peer);

    if (notice >= 0) {
        net_addr_str((const struct sockaddr *)&peer->ss, who, sizeof(who));
        srv->refused++;
        log_notice("%s: refused on %s: %s", who, lst->name,
                   notice == CLIENT_NOTICE_FULL ? "--max-clients reached" : "--max-per-ip reached");
    }
    client_new(srv->clients, fd, peer, lst->chat ? &chat_ops : &echo_ops,
               lst->chat ? (void *)srv->chat : NULL, notice);
}

/* --- accepting ----------------------------------------------------------- */

static void server_on_accept(struct loop *l, int fd, uint32_t ev, void *arg);

static void
server_listen_pause(struct server *srv, bool pause)
{
    for (size_t i = 0; i < srv->nlst; i++)
        loop_mod(srv->loop, srv->lst[i].fd, pause ? 0 : LOOP_READ);
    srv->paused = pause;
    if (pause)
        loop_timer_set(srv->loop, &srv->pause_timer, loop_now(srv->loop) + SERVER_PAUSE_MS);
}

static void
server_on_pause_end(struct loop *l, struct loop_timer *t, void *arg)
{
    struct server *srv = arg;

    (void)l;
    (void)t;
    if (srv->spare < 0)
        srv->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!srv->stopping)
        server_listen_pause(srv, false);
}

/*
 * Out of descriptors. The pending connection would stay in the backlog and
 * keep the listener readable, so a level-triggered loop would spin on it.
 * Instead give back the spare descriptor, accept the connection and close
 * it at once (the peer sees the connection closed), and take the spare
 * again. Linux reports EMFILE before it looks at the queue, so the accept
 * made with the spare's slot is also what tells us the queue is empty: the
 * backlog has been shed. Then (or if the slot cannot be had back: ENFILE,
 * the whole system is out) stop watching the listeners for SERVER_PAUSE_MS.
 * While descriptors stay short, a connection flood then costs us one
 * drain of the backlog per pause, and the kernel's SYN handling the rest,
 * instead of CPU per connection: existing clients keep the machine. Returns
 * true to keep accepting.
 */
static bool
server_shed(struct listener *lst, int err)
{
    struct server *srv = lst->srv;
    uint64_t now = loop_now(srv->loop);
    int fd = -EMFILE;

    if (srv->spare >= 0) {
        close(srv->spare);
        srv->spare = -1;
        if ((fd = net_accept(lst->fd, NULL)) >= 0) {
            close(fd);
            srv->shed++;
        }
        srv->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (fd >= 0 && (now - srv->last_shed_log >= 1000 || srv->last_shed_log == 0)) {
        log_warn("%s: out of file descriptors (%s): shedding new connections, %zu clients served, "
                 "%llu shed so far",
                 lst->name, strerror(err), client_table_count(srv->clients),
                 (unsigned long long)srv->shed);
        srv->last_shed_log = now;
    }
    if (fd < 0 || srv->spare < 0) {
        server_listen_pause(srv, true);
        return false;
    }
    return true;
}

static void
server_on_accept(struct loop *l, int fd, uint32_t ev, void *arg)
{
    struct listener *lst = arg;

    (void)ev;
    for (int i = 0; i < SERVER_ACCEPT_BURST && !lst->srv->paused; i++) {
        struct net_addr peer;
        int cfd;

        /* a new client's idle clock starts when it is accepted, not when
         * this batch (or this burst of accepts) began: a vDSO clock read */
        loop_refresh(l);
        cfd = net_accept(fd, &peer);

        if (cfd >= 0) {
            server_admit(lst, cfd, &peer);
            continue;
        }
        switch (-cfd) {
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            if (!server_shed(lst, -cfd))
                return;
            continue;
        case ECONNABORTED:
        case EINTR:
        case EPROTO:
        case EPERM: /* firewall said no */
            continue;
        default:
            log_warn("%s: accept: %s", lst->name, strerror(-cfd));
            return;
        }
    }
}

/* --- shutdown and signals ------------------------------------------------ */

static void
server_close_listeners(struct server *srv)
{
    for (size_t i = 0; i < srv->nlst; i++) {
        loop_del(srv->loop, srv->lst[i].fd);
        close(srv->lst[i].fd);
    }
    srv->nlst = 0;
}

static void
server_force_close(struct client *c, void *arg)
{
    (void)arg;
    client_close(c, CLIENT_WHY_SHUTDOWN);
}

static void
server_on_stop_deadline(struct loop *l, struct loop_timer *t, void *arg)
{
    struct server *srv = arg;

    (void)t;
    log_notice("shutdown: %zu clients still closing after %u s: dropping them",
               client_table_count(srv->clients), srv->cfg->shutdown_timeout);
    client_table_each(srv->clients, server_force_close, NULL);
    loop_stop(l);
}

static void
server_say_goodbye(struct client *c, void *arg)
{
    const struct client_ops *ops = client_ops_of(c);

    (void)arg;
    if (ops->notice)
        ops->notice(c, CLIENT_NOTICE_SHUTDOWN);
    client_finish(c, CLIENT_WHY_SHUTDOWN);
}

/*
 * Graceful shutdown: new connections are refused at once (the listeners
 * close, so a restarted daemon can bind), every client is told and gets
 * what it is owed followed by our FIN, and the loop ends when the last one
 * has gone or at --shutdown-timeout, whichever comes first.
 */
static void
server_shutdown(struct server *srv, const char *why)
{
    if (srv->stopping) {
        log_notice("%s: second request: stopping now", why);
        client_table_each(srv->clients, server_force_close, NULL);
        loop_stop(srv->loop);
        return;
    }
    srv->stopping = true;
    log_notice("%s: shutting down, %zu clients, waiting up to %u s", why,
               client_table_count(srv->clients), srv->cfg->shutdown_timeout);
    server_notify(srv, "STOPPING=1");
    server_close_listeners(srv);
    loop_timer_stop(srv->loop, &srv->pause_timer);
    client_table_each(srv->clients, server_say_goodbye, NULL);
    loop_timer_set(srv->loop, &srv->stop_timer,
                   loop_now(srv->loop) + (uint64_t)srv->cfg->shutdown_timeout * 1000);
}

static void
server_log_stats(struct server *srv)
{
    const struct client_stats *st = client_table_stats(srv->clients);
    struct chat_stats cs = { 0 };

    if (srv->chat)
        chat_stats(srv->chat, &cs);
    log_notice("stats: clients %zu (chat %zu, echo %zu), rooms %zu, bytes in %llu out %llu, "
               "writes %llu held %llu, "
               "chat lines %llu relayed %llu, accepted %llu, closed: bye %llu error %llu "
               "output-limit %llu idle %llu linger %llu protocol %llu shutdown %llu, "
               "refused %llu, shed %llu",
               srv->nchat + srv->necho, srv->nchat, srv->necho, cs.rooms,
               (unsigned long long)st->bytes_in, (unsigned long long)st->bytes_out,
               (unsigned long long)st->writes, (unsigned long long)st->held,
               (unsigned long long)cs.lines, (unsigned long long)cs.relayed,
               (unsigned long long)st->accepted, (unsigned long long)st->closed[CLIENT_WHY_BYE],
               (unsigned long long)st->closed[CLIENT_WHY_ERROR],
               (unsigned long long)st->closed[CLIENT_WHY_OUTPUT],
               (unsigned long long)st->closed[CLIENT_WHY_IDLE],
               (unsigned long long)st->closed[CLIENT_WHY_LINGER],
               (unsigned long long)st->closed[CLIENT_WHY_PROTOCOL],
               (unsigned long long)st->closed[CLIENT_WHY_SHUTDOWN],
               (unsigned long long)srv->refused, (unsigned long long)srv->shed);
}

static void
server_on_signal(struct loop *l, int signo, void *arg)
{
    struct server *srv = arg;

    (void)l;
    switch (signo) {
    case SIGTERM:
        server_shutdown(srv, "SIGTERM");
        break;
    case SIGINT:
        server_shutdown(srv, "SIGINT");
        break;
    case SIGHUP:
        /* the hook for a future configuration reload */
        log_notice("SIGHUP: received; nothing to reload");
        break;
    case SIGUSR1:
        server_log_stats(srv);
        break;
    default:
        break;
    }
}

static void
server_before_wait(struct loop *l, void *arg)
{
    struct server *srv = arg;

    client_table_flush(srv->clients);
    if (srv->stopping && client_table_count(srv->clients) == 0)
        loop_stop(l);
}

/* --- listeners ----------------------------------------------------------- */

/*
 * The per-connection options, set once on the listener: Linux builds an
 * accepted socket as a clone of its listener, so SO_KEEPALIVE, the three
 * keepalive knobs, TCP_USER_TIMEOUT and TCP_NODELAY arrive already set on
 * every connection, at no syscall per accept (test_core reads them back
 * from the daemon's own accepted sockets). Keepalive turns a vanished peer
 * (power cut, NAT timeout) into an error in minutes instead of the kernel's
 * two hours; TCP_USER_TIMEOUT does the same for a peer that stops
 * acknowledging what we send; chat lines are small and interactive, so no
 * Nagle delay. A failure is logged and the listener kept: it works, only
 * less well guarded.
 */
static void
server_sockopts(struct server *srv, int fd, bool chat, const char *who)
{
    const struct cfg *cfg = srv->cfg;
    int rc;

    if (cfg->keepalive && (rc = net_keepalive(fd, cfg->keepalive_idle, cfg->keepalive_interval,
                                              cfg->keepalive_count)) < 0)
        log_warn("%s: keepalive: %s", who, strerror(-rc));
    if (cfg->user_timeout_ms && (rc = net_user_timeout(fd, cfg->user_timeout_ms)) < 0)
        log_warn("%s: TCP_USER_TIMEOUT: %s", who, strerror(-rc));
    if (chat && (rc = net_nodelay(fd)) < 0)
        log_warn("%s: TCP_NODELAY: %s", who, strerror(-rc));
}

static int
server_add_listener(struct server *srv, int fd, bool chat)
{
    struct listener *lst;
    struct net_addr a;

    if (srv->nlst == SERVER_LISTEN_MAX) {
        log_err("too many listeners (at most %d)", SERVER_LISTEN_MAX);
        close(fd);
        return -E2BIG;
    }
    lst = &srv->lst[srv->nlst++];
    lst->srv = srv;
    lst->fd = fd;
    lst->chat = chat;
    if (net_local_addr(fd, &a) == 0)
        net_addr_str((const struct sockaddr *)&a.ss, lst->name, sizeof(lst->name));
    else
        snprintf(lst->name, sizeof(lst->name), "fd %d", fd);
    server_sockopts(srv, fd, chat, lst->name);
    log_notice("listening on %s (%s)", lst->name, chat ? "chat" : "echo");
    return 0;
}

/* One --chat/--echo flag: the wildcard, or every address a name resolves to. */
static int
server_open_one(struct server *srv, const struct cfg_listen *cl)
{
    struct net_addr addrs[16];
    char text[NET_ADDRSTRLEN + CFG_HOST_MAX];
    bool chat = cl->proto == CFG_PROTO_CHAT;
    int n, fd, rc;

    if (cl->host[0] == '\0') {
        if ((fd = net_listen_any(cl->port, srv->cfg->backlog)) < 0) {
            log_err("*:%s: cannot listen: %s", cl->port, net_strerror(fd));
            return fd;
        }
        return server_add_listener(srv, fd, chat);
    }
    if ((n = net_resolve(cl->host, cl->port, addrs, UTIL_ARRAY_LEN(addrs))) < 0) {
        log_err("%s:%s: cannot resolve: %s", cl->host, cl->port, net_strerror(n));
        return NET_IS_EAI(n) ? -EADDRNOTAVAIL : n;
    }
    for (int i = 0; i < n; i++) {
        const struct sockaddr *sa = (const struct sockaddr *)&addrs[i].ss;
        if ((fd = net_listen(sa, addrs[i].len, srv->cfg->backlog)) < 0) {
            log_err("%s: cannot listen: %s", net_addr_str(sa, text, sizeof(text)),
                    net_strerror(fd));
            return fd;
        }
        if ((rc = server_add_listener(srv, fd, chat)) < 0)
            return rc;
    }
    return 0;
}

/* Sockets from systemd: a name of "echo" serves echo, any other chat. */
static int
server_adopt(struct server *srv, const struct sysd_listen *sl, int n)
{
    int rc;

    if (srv->cfg->nlisten > 0)
        log_notice("socket activation: ignoring --chat/--echo, using %d inherited sockets", n);
    for (int i = 0; i < n; i++) {
        if ((rc = net_check_listener(sl[i].fd)) < 0 || (rc = net_set_nonblock(sl[i].fd)) < 0) {
            log_err("inherited fd %d (%s): not a usable listening stream socket: %s", sl[i].fd,
                    sl[i].name[0] ? sl[i].name : "unnamed", net_strerror(rc));
            for (int j = i; j < n; j++)
                close(sl[j].fd);
            return rc;
        }
        if ((rc = server_add_listener(srv, sl[i].fd, strcmp(sl[i].name, "echo") != 0)) < 0)
            return rc;
    }
    return 0;
}

static int
server_open_listeners(struct server *srv)
{
    static const struct cfg_listen def = { CFG_PROTO_CHAT, "", CFG_DEFAULT_PORT };
    struct sysd_listen sl[SERVER_LISTEN_MAX];
    const struct cfg *cfg = srv->cfg;
    int n, rc;

    if ((n = sysd_listen_fds(sl, UTIL_ARRAY_LEN(sl))) < 0) {
        log_err("socket activation: bad LISTEN_FDS/LISTEN_PID: %s", strerror(-n));
        return n;
    }
    if (n > 0)
        return server_adopt(srv, sl, n);
    if (cfg->nlisten == 0)
        return server_open_one(srv, &def);
    for (size_t i = 0; i < cfg->nlisten; i++)
        if ((rc = server_open_one(srv, &cfg->listen[i])) < 0)
            return rc;
    return 0;
}

/*
 * Every client is a descriptor, so --max-clients needs RLIMIT_NOFILE above
 * it. Raise the soft limit as far as needed and the hard limit allows; when
 * that is not enough, say so with the numbers (EMFILE is then handled by
 * shedding, but the operator should know before it happens).
 */
static rlim_t
server_raise_nofile(const struct cfg *cfg)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)cfg->max_clients + SERVER_FD_RESERVE + SERVER_LISTEN_MAX;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    if (rl.rlim_cur < need && rl.rlim_cur != RLIM_INFINITY) {
        rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
        if (want > rl.rlim_cur) {
            struct rlimit nrl = { want, rl.rlim_max };
            if (setrlimit(RLIMIT_NOFILE, &nrl) == 0)
                rl.rlim_cur = want;
        }
    }
    if (rl.rlim_cur < need)
        log_warn("RLIMIT_NOFILE is %llu (hard %llu), below the %llu that --max-clients %u needs: "
                 "connections beyond about %llu will be shed",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                 (unsigned long long)need, cfg->max_clients,
                 (unsigned long long)(rl.rlim_cur > 10 ? rl.rlim_cur - 10 : 0));
    return rl.rlim_cur == RLIM_INFINITY ? need : rl.rlim_cur;
}

static int
server_make_chat(struct server *srv)
{
    const struct cfg *cfg = srv->cfg;
    struct chat_cfg cc = {
        .max_line = cfg->max_line,
        .rate_limit = cfg->rate_limit,
        .history = cfg->history,
        .announce_max = cfg->announce_max,
        .idle_timeout = cfg->idle_timeout,
    };
    int rc = chat_new(&srv->chat, &cc);

    if (rc < 0)
        log_err("chat: %s", strerror(-rc));
    return rc;
}

int
server_new(struct server **out, const struct cfg *cfg)
{
    static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
    struct server *srv = xcalloc(1, sizeof(*srv));
    struct client_limits lim = {
        .max_output = cfg->max_output,
        .idle_timeout = cfg->idle_timeout,
        .linger_ms = SERVER_LINGER_MS,
    };
    rlim_t nofile = server_raise_nofile(cfg);
    int rc;

    srv->cfg = cfg;
    srv->spare = -1;
    srv->notify.fd = -1;
    if ((rc = loop_new(&srv->loop)) < 0) {
        log_err("epoll: %s", strerror(-rc));
        goto fail;
    }
    loop_timer_init(&srv->pause_timer, server_on_pause_end, srv);
    loop_timer_init(&srv->stop_timer, server_on_stop_deadline, srv);
    loop_timer_init(&srv->status_timer, server_on_status, srv);
    loop_timer_init(&srv->watchdog_timer, server_on_watchdog, srv);
    if ((rc = sysd_notify_open(&srv->notify)) < 0)
        log_warn("NOTIFY_SOCKET: unusable, not notifying systemd: %s", strerror(-rc));
    if ((rc = server_make_chat(srv)) < 0)
        goto fail;
    if ((rc = server_open_listeners(srv)) < 0)
        goto fail;
    /* after the listeners: a slot holds the state of the protocols served */
    for (size_t i = 0; i < srv->nlst; i++)
        lim.data_max =
            UTIL_MAX(lim.data_max, (srv->lst[i].chat ? &chat_ops : &echo_ops)->data_size);
    if ((rc = client_table_new(&srv->clients, srv->loop, (int)UTIL_MIN(nofile, (rlim_t)1 << 20),
                               &lim)) < 0)
        goto fail;
    client_table_hook(srv->clients, server_on_client, srv);
    if ((srv->spare = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        log_warn("/dev/null: %s: cannot keep a spare descriptor for EMFILE", strerror(errno));
    if ((rc = loop_signals(srv->loop, sigs, UTIL_ARRAY_LEN(sigs), server_on_signal, srv)) < 0) {
        log_err("signalfd: %s", strerror(-rc));
        goto fail;
    }
    loop_before_wait(srv->loop, server_before_wait, srv);
    *out = srv;
    return 0;
fail:
    server_free(srv);
    return rc;
}

int
server_run(struct server *srv, int ready_fd)
{
    uint64_t wd_usec = sysd_watchdog_usec();
    int rc;

    for (size_t i = 0; i < srv->nlst; i++) {
        if ((rc = loop_add(srv->loop, srv->lst[i].fd, LOOP_READ, server_on_accept, &srv->lst[i])) <
            0) {
            log_err("%s: epoll: %s", srv->lst[i].name, strerror(-rc));
            return rc;
        }
    }
    if (wd_usec > 0) {
        /* ping at half the interval, as sd_watchdog_enabled(3) advises */
        srv->watchdog_ms = UTIL_MAX(wd_usec / 2000, 1);
        loop_timer_set(srv->loop, &srv->watchdog_timer, loop_now(srv->loop) + srv->watchdog_ms);
    }
    server_notify(srv, "READY=1");
    server_send_status(srv);
    if (ready_fd >= 0) {
        /* the daemonizing parent exits 0 only now that we serve */
        char ok = 0;
        if (write(ready_fd, &ok, 1) < 0)
            log_debug("ready pipe: %s", strerror(errno));
        close(ready_fd);
    }
    log_notice("echochatd %s ready, pid %d", ECHOCHAT_VERSION, (int)getpid());
    if ((rc = loop_run(srv->loop)) < 0) {
        log_err("event loop: %s", strerror(-rc));
        return rc;
    }
    client_table_flush(srv->clients);
    log_notice("stopped");
    return 0;
}

void
server_free(struct server *srv)
{
    if (srv == NULL)
        return;
    if (srv->clients)
        client_table_free(srv->clients);
    server_close_listeners(srv);
    if (srv->loop) {
        loop_timer_stop(srv->loop, &srv->pause_timer);
        loop_timer_stop(srv->loop, &srv->stop_timer);
        loop_timer_stop(srv->loop, &srv->status_timer);
        loop_timer_stop(srv->loop, &srv->watchdog_timer);
    }
    if (srv->chat)
        chat_free(srv->chat);
    if (srv->spare >= 0)
        close(srv->spare);
    sysd_notify_close(&srv->notify);
    loop_free(srv->loop);
    free(srv->ips);
    free(srv);
    buf_cache_trim(); /* every buf is gone: give back the blocks kept for reuse */
}
