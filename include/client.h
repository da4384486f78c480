/*
 * client: one accepted connection and the fd-indexed table that holds them.
 * Clients live in a table indexed by file descriptor: the table is the
 * client storage, and each slot also holds the protocol's per-client state
 * (client_ops.data_size bytes, see client_data()).
 * This layer owns the socket I/O so that the protocols never see epoll or a
 * socket: it reads into a shared scratch buffer and hands the bytes to the
 * protocol's ops->read; it queues output, writes first and arms EPOLLOUT only
 * for what the kernel refused; it pauses and resumes reading; it keeps the
 * idle list (oldest activity first, so expiry is O(1)); and it closes in two
 * flavours, both deferred to the end of the loop iteration so that nobody up
 * the stack ever holds a freed client:
 *
 *   client_close()  at once: output is dropped (errors, limits);
 *   client_finish() gracefully: flush the output, shutdown(SHUT_WR), read and
 *                   discard until the peer's FIN (so unread input never turns
 *                   our close into a reset that destroys what we sent), close.
 *
 * This header is what a protocol sees: connections and what can be done with
 * them, in libc types only. The table that the server drives (accepting
 * into it, flushing it each iteration) is in client_table.h, which brings
 * in the loop and the socket types; no protocol includes it.
 *
 * Uses loop, net, buf, log and util.
 */
#ifndef ECHOCHAT_CLIENT_H
#define ECHOCHAT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client;

/* Why a client went away: logged, counted in the statistics. */
enum client_why {
    CLIENT_WHY_BYE,      /* the peer closed, or said /quit */
    CLIENT_WHY_ERROR,    /* a read or write failed (reset, timeout) */
    CLIENT_WHY_OUTPUT,   /* unsent output passed --max-output */
    CLIENT_WHY_IDLE,     /* silent longer than --idle-timeout */
    CLIENT_WHY_SHUTDOWN, /* the server is stopping */
    CLIENT_WHY_REFUSED,  /* --max-clients or --max-per-ip */
    CLIENT_WHY_LINGER,   /* a closing peer made no progress in time */
    CLIENT_WHY_PROTOCOL, /* the protocol gave up on it (see the log) */
    CLIENT_WHY_COUNT
};

/* What the server tells a client through its protocol (ops->notice). */
enum client_notice {
    CLIENT_NOTICE_SHUTDOWN, /* graceful shutdown begins */
    CLIENT_NOTICE_IDLE,     /* idle timeout: it is about to be closed */
    CLIENT_NOTICE_FULL,     /* refused: --max-clients reached */
    CLIENT_NOTICE_PER_IP,   /* refused: --max-per-ip reached */
    CLIENT_NOTICE_BUSY      /* refused: out of file descriptors */
};

/*
 * A protocol. Every callback may call client_send/close/finish on any
 * client; none of them frees anything directly.
 */
struct client_ops {
    const char *name; /* "chat", "echo": logs and statistics */
    /* Bytes of zeroed per-client protocol state kept with the client;
     * client_data() returns it. At most client_limits.data_max. */
    size_t data_size;
    /* A new connection (not called for refused ones). Set up the state in
     * client_data() and greet. Returns 0, or -errno to close it. */
    int (*open)(struct client *c);
    /* Bytes arrived (never 0 bytes). Returns 0, or -errno to close it. */
    int (*read)(struct client *c, const uint8_t *p, size_t n);
    /* The peer sent FIN: no more input will come. The protocol finishes what
     * it owes and calls client_finish(), now or later. */
    void (*eof)(struct client *c);
    /* A read-paused client's output fell to half of --max-output or less. */
    void (*drain)(struct client *c);
    /* A client_wake_at() time has come. */
    void (*wake)(struct client *c);
    /* Tell the client something on the server's behalf (chat: a "*** "
     * line; echo adds nothing to the stream). May be called before open. */
    void (*notice)(struct client *c, enum client_notice what);
    /* The client is being freed (at the end of the iteration, after it was
     * closed or finished). Release what the protocol state refers to (the
     * state itself goes with the client); output is no longer
     * possible for this client, but sending to others is. */
    void (*close)(struct client *c);
};

/* Queue bytes for c; they are written at the end of this loop iteration
 * (one write per client per iteration, however many lines it was sent),
 * or, while writing keeps the server busy, possibly held a little longer
 * so that c's next output shares the write (pacer.h: at most a hold limit,
 * at most 10 ms). A no-op for a closing client. Returns 0 or -ENOMEM. */
int client_send(struct client *c, const void *p, size_t n);
/* Like client_send(), but write at once when nothing is queued (echo: no
 * copy, no waiting for the end of the iteration). */
int client_write(struct client *c, const void *p, size_t n);
/* Unsent output held for c. */
size_t client_output(const struct client *c);
/* True once the unsent output has reached --max-output. */
bool client_output_full(const struct client *c);

/* Stop or restart reading from c (its kernel buffer then fills and TCP flow
 * control slows the sender: nothing is lost). */
void client_pause_read(struct client *c);
void client_resume_read(struct client *c);
bool client_read_paused(const struct client *c);

/* Call ops->wake(c) at absolute time when_ms (replacing an earlier time). */
void client_wake_at(struct client *c, uint64_t when_ms);

/* Close at once, dropping unsent output. Idempotent. */
void client_close(struct client *c, enum client_why why);
/* Close gracefully: flush, FIN, wait for the peer's FIN, close. */
void client_finish(struct client *c, enum client_why why);
/* True once close or finish was called. */
bool client_closing(const struct client *c);

/* The protocol's per-client state: ops->data_size bytes, zeroed when the
 * client is created, aligned for pointers and 64-bit integers, valid until
 * ops->close returns. NULL for a protocol with data_size 0. */
void *client_data(const struct client *c);
/* The client whose client_data() is data. */
struct client *client_of_data(void *data);
void *client_ctx(const struct client *c);
const struct client_ops *client_ops_of(const struct client *c);
/* The loop's current time, ms (for rate limits: protocols see no loop). */
uint64_t client_now(const struct client *c);
/* "client 7 [::1]:5012", for log lines. Returns buf. */
char *client_name(const struct client *c, char *buf, size_t len);
/* The peer's address as the per-IP limit keys it (see net_addr_key). */
size_t client_addr_key(const struct client *c, uint8_t key[16]);
/* The text of a why. */
const char *client_why_str(enum client_why why);

/* Room for client_name(): "client ", an fd and a formatted address. */
#define CLIENT_NAME_MAX 96

#endif
