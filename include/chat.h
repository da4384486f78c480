/*
 * chat: the line-based chat of SPEC section 5 over the client layer: nicks,
 * rooms, commands, relay and history. Sees client.h and the leaves (line,
 * telnet, text, room, rate) only: no epoll, no sockets.
 */
#ifndef ECHOCHAT_CHAT_H
#define ECHOCHAT_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"

struct chat;

struct chat_cfg {
    size_t max_line;       /* --max-line */
    unsigned rate_limit;   /* --rate-limit, lines/s, 0 = off */
    unsigned history;      /* --history */
    unsigned announce_max; /* --announce-max, 0 = never */
    unsigned idle_timeout; /* --idle-timeout, for the notice text */
};

struct chat_stats {
    size_t users;
    size_t rooms;
    uint64_t lines;   /* chat lines received (messages and commands) */
    uint64_t relayed; /* lines delivered to receivers */
};

/* The chat's shared state: the ctx of every chat client. Returns 0 or
 * -ENOMEM. */
int chat_new(struct chat **out, const struct chat_cfg *cfg);
void chat_free(struct chat *ch);
void chat_stats(const struct chat *ch, struct chat_stats *st);

extern const struct client_ops chat_ops;

#endif
