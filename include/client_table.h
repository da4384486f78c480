/*
 * client_table: the server's side of the client layer (client.c). The table
 * holds the clients in slots indexed by file descriptor; the server adopts
 * accepted sockets into it, drives it once per loop iteration
 * (client_table_flush) and reads its statistics. Protocols include client.h
 * only and never see this header, the loop or a socket address.
 */
#ifndef ECHOCHAT_CLIENT_TABLE_H
#define ECHOCHAT_CLIENT_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "loop.h"
#include "net.h"

struct client_table;

/* Called by the table when a client opens or is freed (server statistics,
 * per-address counts, STATUS=). */
typedef void client_hook_fn(struct client *c, bool opened, void *arg);

struct client_limits {
    size_t max_output;     /* bytes of unsent output (--max-output) */
    unsigned idle_timeout; /* s, 0 = off (--idle-timeout) */
    unsigned linger_ms;    /* a closing client with no progress this long is dropped */
    size_t data_max;       /* the largest client_ops.data_size served */
};

/* Counters, for SIGUSR1. */
struct client_stats {
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t writes; /* sends of queued output */
    uint64_t held;   /* of which output that the pacer had held (batched) */
    uint64_t accepted;
    uint64_t closed[CLIENT_WHY_COUNT];
};

/* Create a table on loop l for descriptors up to about maxfd (a hint that
 * sizes the chunk index; higher ones work too). Returns 0 or -errno. */
int client_table_new(struct client_table **out, struct loop *l, int maxfd,
                     const struct client_limits *lim);
/* Close every client at once (without notices) and free the table. */
void client_table_free(struct client_table *t);
void client_table_hook(struct client_table *t, client_hook_fn *fn, void *arg);
size_t client_table_count(const struct client_table *t);
const struct client_stats *client_table_stats(const struct client_table *t);
/* Call fn for every live client (not the closing ones). fn may close or
 * finish clients; they are freed only later. */
void client_table_each(struct client_table *t, void (*fn)(struct client *c, void *arg), void *arg);
/* End of a loop iteration: free the clients closed during it (calling
 * ops->close) and write each client's queued output once. Repeats until
 * neither is left, since a close can queue output for others. */
void client_table_flush(struct client_table *t);
/* The client on fd, or NULL. */
struct client *client_table_get(const struct client_table *t, int fd);

/* Adopt an accepted, non-blocking socket: register it, then ops->open(c).
 * ctx is the protocol's shared state (client_ctx()); a table keeps at most
 * 8 distinct (ops, ctx) pairs, so that a client stores an index, not both. If notice is >= 0 the
 * client is refused instead: ops->notice(c, notice), then finished, and open
 * is never called. Returns the client (NULL if the fd could not be
 * registered: then fd has been closed). */
struct client *client_new(struct client_table *t, int fd, const struct net_addr *peer,
                          const struct client_ops *ops, void *ctx, int notice);

#endif
