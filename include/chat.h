/*
 * chat: the line-based chat of SPEC section 5 over the client layer: nicks,
 * rooms, commands, relay and history. Sees client.h and the leaves (line,
 * telnet, text, room, rate) only: no epoll, no sockets.
 *
 * Besides the protocol (chat_ops and its shared state) this header exports
 * the pure pieces the protocol is built from, so that they are unit-tested
 * with plain arrays: line parsing, line formatting and the nick table.
 */
#ifndef ECHOCHAT_CHAT_H
#define ECHOCHAT_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "text.h"

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
 * -ENOMEM. Free it only after every chat client is gone (their ops->close
 * uses it). */
int chat_new(struct chat **out, const struct chat_cfg *cfg);
void chat_free(struct chat *ch);
void chat_stats(const struct chat *ch, struct chat_stats *st);

extern const struct client_ops chat_ops;

/* What one received line is. */
enum chat_kind {
    CHAT_EMPTY,  /* nothing but spaces and tabs: ignored */
    CHAT_TEXT,   /* a message for the room: arg is the text, untrimmed */
    CHAT_COMMAND /* "/name args": name without the slash, arg trimmed */
};

/* A parsed line: pointers into the caller's line, not NUL-terminated. */
struct chat_parsed {
    enum chat_kind kind;
    const char *name; /* CHAT_COMMAND only (may be empty: a lone "/") */
    size_t name_len;
    const char *arg; /* the text, or the command's arguments (may be empty) */
    size_t arg_len;
};

/* Split one line (ending removed). A line starting with '/' is a command
 * whose name runs to the first space or tab; "//text" is the message
 * "/text". Returns out->kind. */
enum chat_kind chat_parse(const char *line, size_t len, struct chat_parsed *out);

/* Split s into its first word and the rest, both trimmed of spaces and tabs
 * (for "/msg NICK TEXT"). Either may come back empty. */
void chat_split_word(const char *s, size_t n, const char **word, size_t *wlen, const char **rest,
                     size_t *rlen);

/* The line forms of SPEC section 5 that carry user text. */
enum chat_form {
    CHAT_FORM_SAY,         /* <nick> text */
    CHAT_FORM_ACTION,      /* * nick text */
    CHAT_FORM_PRIVATE,     /* *nick* text      (to the receiver) */
    CHAT_FORM_PRIVATE_SENT /* -> *nick* text   (to the sender; nick = target) */
};

/* Bytes chat_format() may write for n bytes of text. */
#define CHAT_LINE_MAX(n) (TEXT_SANITIZED_MAX(n) + TEXT_NAME_MAX + 8)

/* Write the complete line for form into out (room for CHAT_LINE_MAX(n)):
 * the nick, then text sanitised (text_sanitize), then CR LF. Returns its
 * length. */
size_t chat_format(char *out, enum chat_form form, const char *nick, const char *text, size_t n);

/*
 * The nick table: every nick in use, found ignoring case in O(1) expected
 * time (a chained hash table that doubles when it holds more nicks than
 * buckets). Nodes are embedded in their owners; the table never frees them.
 */
struct chat_nick {
    char name[TEXT_NAME_MAX + 1];
    uint32_t hash;
    struct chat_nick *next;
};

struct chat_nicks {
    struct chat_nick **buckets;
    size_t nbuckets;
    size_t count;
};

/* An empty table. Returns 0 or -ENOMEM. */
int chat_nicks_init(struct chat_nicks *t);
/* Free the buckets (the nodes belong to their owners). */
void chat_nicks_fini(struct chat_nicks *t);
/* The node whose name equals name ignoring ASCII case, or NULL. */
struct chat_nick *chat_nicks_find(const struct chat_nicks *t, const char *name);
/* Insert n, whose name is set and not yet in the table. */
void chat_nicks_add(struct chat_nicks *t, struct chat_nick *n);
/* Remove n, which is in the table. */
void chat_nicks_remove(struct chat_nicks *t, struct chat_nick *n);

#endif
