/*
 * server: wires the daemon together. Opens (or adopts from systemd) the
 * listeners and maps each to its protocol's ops, accepts (shedding
 * connections instead of spinning when descriptors run out), enforces the
 * client limits, handles signals, the graceful shutdown deadline, the
 * statistics line and the systemd notifications. The only layer below main
 * that logs decisions about the process as a whole.
 */
#ifndef ECHOCHAT_SERVER_H
#define ECHOCHAT_SERVER_H

#include "cfg.h"

struct server;

/* Build the server for cfg: raise RLIMIT_NOFILE as needed, open or adopt
 * every listener, install signal handling. On failure the reason has been
 * logged and nothing is left open. Returns 0, -EADDRINUSE-style -errno for
 * a listener or OS failure (main exits 71). */
int server_new(struct server **out, const struct cfg *cfg);
/* Tell systemd (and a waiting parent, through ready_fd >= 0) that we serve,
 * then run until a graceful shutdown completes. Returns 0 or -errno. */
int server_run(struct server *srv, int ready_fd);
void server_free(struct server *srv);

#endif
