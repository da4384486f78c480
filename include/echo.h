/*
 * echo: RFC 862 over the client layer. Every byte comes back unchanged and
 * nothing is added; a peer that stops reading is slowed by flow control,
 * never answered with loss. Sees client.h only: no epoll, no sockets.
 */
#ifndef ECHOCHAT_ECHO_H
#define ECHOCHAT_ECHO_H

#include "client.h"

extern const struct client_ops echo_ops;

#endif
