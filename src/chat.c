/*
 * chat: the chat protocol of SPEC section 5 on top of the client layer. It
 * owns the users (nick, room, line reader, rate bucket), the nick table, the
 * room set, the command table and the relay. It never sees epoll, a socket
 * or the clock: bytes arrive through chat_ops.read, output leaves through
 * client_send() (queued, written once per client per loop iteration), time
 * comes from client_now() and the rate limit sleeps with client_wake_at().
 *
 * Every line that carries user text starts with the sender's nick and every
 * line the server says itself starts with "*** ", and user text always goes
 * through text_sanitize(): nobody can forge a server line or another user's
 * line, or send a terminal escape sequence to someone else.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chat.h"
#include "line.h"
#include "log.h"
#include "rate.h"
#include "room.h"
#include "text.h"
#include "util.h"

#define CHAT_LOBBY      "lobby"
#define CHAT_NICKS_MIN  64  /* initial nick table buckets (a power of two) */
#define CHAT_LIST_WIDTH 400 /* /who and /rooms wrap their lines here */
#define CHAT_NOTICE_MIN 1024

struct chat {
    struct chat_cfg cfg;
    struct room_set rooms;
    struct chat_nicks nicks;
    uint32_t next_guest;
    bool stopping; /* a graceful shutdown began: no more part notices */
    uint64_t lines;
    uint64_t relayed;
    /*
     * Scratch buffers, one for the whole chat: a line is formatted here once
     * and then copied into each receiver's output queue by client_send().
     * Nothing keeps a pointer into them across calls.
     */
    char *text; /* sanitised user text: TEXT_SANITIZED_MAX(max_line) */
    char *line; /* one formatted output line: linecap */
    size_t linecap;
};

/*
 * One chat user: small on purpose (an idle user costs this struct and
 * nothing else). It is the client's protocol state (chat_ops.data_size), so
 * it lives in the client's slot: no allocation of its own, and its client is
 * client_of_data(u). The nick lives in a fixed array inside the table node
 * (an empty name: open failed, the user is not set up) and the line reader
 * owns heap storage only while bytes are pending.
 */
struct chat_user {
    struct chat_nick nick;
    struct room *room; /* NULL once it has left (/quit) */
    uint32_t slot;     /* index in room->members */
    bool eof;          /* the peer sent FIN: finish once the queue is done */
    bool idle;         /* told it idled out: the part notice says so */
    struct rate rate;
    struct line_reader lr;
};

static struct client *
chat_client(struct chat_user *u)
{
    return client_of_data(u);
}

/* c's user, or NULL while it is not set up (refused, or open failed). */
static struct chat_user *
chat_user_of(struct client *c)
{
    struct chat_user *u = client_data(c);

    return u->nick.name[0] != '\0' ? u : NULL;
}

static struct chat_user *
chat_user_of_nick(struct chat_nick *n)
{
    return (struct chat_user *)((char *)n - offsetof(struct chat_user, nick));
}

static uint32_t *
chat_slot_of(void *member)
{
    return &((struct chat_user *)member)->slot;
}

/* ---- pure helpers (exported for the unit test) ---- */

static bool
chat_is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

static void
chat_trim(const char **s, size_t *n)
{
    while (*n > 0 && chat_is_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && chat_is_space((*s)[*n - 1]))
        (*n)--;
}

enum chat_kind
chat_parse(const char *line, size_t len, struct chat_parsed *out)
{
    const char *s = line;
    size_t n = len;

    memset(out, 0, sizeof *out);
    chat_trim(&s, &n);
    if (n == 0)
        return out->kind = CHAT_EMPTY;
    /* SPEC: a line *starting* with '/' is a command; " /x" is text */
    if (line[0] != '/' || (len >= 2 && line[1] == '/')) {
        out->kind = CHAT_TEXT;
        out->arg = line[0] == '/' ? line + 1 : line; /* "//text" is "/text" */
        out->arg_len = line[0] == '/' ? len - 1 : len;
        return out->kind;
    }
    out->kind = CHAT_COMMAND;
    out->name = line + 1;
    while (out->name_len < len - 1 && !chat_is_space(out->name[out->name_len]))
        out->name_len++;
    out->arg = out->name + out->name_len;
    out->arg_len = len - 1 - out->name_len;
    chat_trim(&out->arg, &out->arg_len);
    return out->kind;
}

void
chat_split_word(const char *s, size_t n, const char **word, size_t *wlen, const char **rest,
                size_t *rlen)
{
    size_t i = 0;

    chat_trim(&s, &n);
    while (i < n && !chat_is_space(s[i]))
        i++;
    *word = s;
    *wlen = i;
    *rest = s + i;
    *rlen = n - i;
    chat_trim(rest, rlen);
}

/* The part of a line before the user text: "<nick> ", "* nick ", ... */
static size_t
chat_prefix(char *out, enum chat_form form, const char *nick)
{
    static const char *const open[] = { "<", "* ", "*", "-> *" };
    static const char *const close[] = { "> ", " ", "* ", "* " };
    size_t k = 0, n;

    n = strlen(open[form]);
    memcpy(out + k, open[form], n);
    k += n;
    n = strnlen(nick, TEXT_NAME_MAX);
    memcpy(out + k, nick, n);
    k += n;
    n = strlen(close[form]);
    memcpy(out + k, close[form], n);
    return k + n;
}

size_t
chat_format(char *out, enum chat_form form, const char *nick, const char *text, size_t n)
{
    size_t k = chat_prefix(out, form, nick);

    k += text_sanitize((const uint8_t *)text, n, out + k);
    out[k++] = '\r';
    out[k++] = '\n';
    return k;
}

/* ---- the nick table ---- */

int
chat_nicks_init(struct chat_nicks *t)
{
    t->count = 0;
    t->nbuckets = CHAT_NICKS_MIN;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    return t->buckets != NULL ? 0 : -ENOMEM;
}

void
chat_nicks_fini(struct chat_nicks *t)
{
    free(t->buckets);
    t->buckets = NULL;
    t->nbuckets = t->count = 0;
}

struct chat_nick *
chat_nicks_find(const struct chat_nicks *t, const char *name)
{
    struct chat_nick *n = t->buckets[text_name_hash(name) & (t->nbuckets - 1)];

    while (n != NULL && !text_name_eq(n->name, name))
        n = n->next;
    return n;
}

/*
 * Double the buckets once the table holds more nicks than buckets, so the
 * chains stay short. The hash is kept in each node, so rehashing touches no
 * name. If the allocation fails the table keeps working with longer chains.
 */
static void
chat_nicks_grow(struct chat_nicks *t)
{
    size_t nb = t->nbuckets * 2;
    struct chat_nick **b = calloc(nb, sizeof *b);

    if (b == NULL)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct chat_nick *n = t->buckets[i], *next;

        for (; n != NULL; n = next) {
            next = n->next;
            n->next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
}

void
chat_nicks_add(struct chat_nicks *t, struct chat_nick *n)
{
    struct chat_nick **head;

    if (t->count >= t->nbuckets)
        chat_nicks_grow(t);
    n->hash = text_name_hash(n->name);
    head = &t->buckets[n->hash & (t->nbuckets - 1)];
    n->next = *head;
    *head = n;
    t->count++;
}

void
chat_nicks_remove(struct chat_nicks *t, struct chat_nick *n)
{
    struct chat_nick **pp = &t->buckets[n->hash & (t->nbuckets - 1)];

    while (*pp != n) {
        assert(*pp != NULL); /* n must be in t */
        pp = &(*pp)->next;
    }
    *pp = n->next;
    n->next = NULL;
    t->count--;
}

/* ---- output ---- */

/*
 * Queue one complete line for c. A receiver whose unsent output reaches
 * --max-output has stopped reading: drop it (the client layer logs "output
 * limit") rather than slow the sender or anyone else. The close is deferred,
 * so a fan-out loop over the room stays valid.
 */
static void
chat_send(struct client *c, const char *p, size_t n)
{
    if (client_send(c, p, n) < 0) {
        client_close(c, CLIENT_WHY_ERROR);
        return;
    }
    if (client_output_full(c))
        client_close(c, CLIENT_WHY_OUTPUT);
}

/* Format a "*** " line into ch->line (truncated to fit); returns its
 * length, CR LF included. */
static size_t __attribute__((format(printf, 2, 0)))
chat_vfmt(struct chat *ch, const char *fmt, va_list ap)
{
    size_t room = ch->linecap - 2, n;
    int rc;

    memcpy(ch->line, "*** ", 4);
    rc = vsnprintf(ch->line + 4, room - 4, fmt, ap);
    n = rc < 0 ? 4 : UTIL_MIN(4 + (size_t)rc, room - 1);
    ch->line[n++] = '\r';
    ch->line[n++] = '\n';
    return n;
}

/* Format a "*** " line into ch->line without sending it (for fan-out). */
static size_t __attribute__((format(printf, 2, 3)))
chat_fmt_notice(struct chat *ch, const char *fmt, ...)
{
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    n = chat_vfmt(ch, fmt, ap);
    va_end(ap);
    return n;
}

/* A "*** " line from the server to one client. */
static void __attribute__((format(printf, 3, 4)))
chat_notice(struct chat *ch, struct client *c, const char *fmt, ...)
{
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    n = chat_vfmt(ch, fmt, ap);
    va_end(ap);
    chat_send(c, ch->line, n);
}

/*
 * Send one formatted line to every member of r but except. The line was
 * formatted once; client_send() copies it into each receiver's queue. For
 * lines of ~100 bytes that memcpy is cheaper than sharing one refcounted
 * buffer: sharing needs a queue node per receiver anyway (an allocation and
 * a pointer chase, more than copying the bytes), and the client layer
 * already coalesces everything a receiver gets in one loop iteration (or,
 * when busy, in one hold: pacer.h) into one contiguous write. Returns the
 * number of receivers.
 */
static size_t
chat_room_send(struct room *r, struct chat_user *except, const char *p, size_t n)
{
    size_t sent = 0;

    for (size_t i = 0; i < r->nmembers; i++) {
        struct chat_user *m = r->members[i];

        if (m == except || client_closing(chat_client(m)))
            continue;
        chat_send(chat_client(m), p, n);
        sent++;
    }
    return sent;
}

/* Join, part and nick notices go only to rooms of at most --announce-max
 * members (the subject counted), so a crowd joining does not cost N^2. */
static bool
chat_announces(const struct chat *ch, const struct room *r)
{
    return ch->cfg.announce_max > 0 && r->nmembers <= ch->cfg.announce_max;
}

/* ---- rooms ---- */

/* Put u in room name: replay its history to u, tell the others. */
static int
chat_enter(struct chat *ch, struct chat_user *u, const char *name)
{
    struct room *r = room_get(&ch->rooms, name);
    size_t n;
    int rc;

    if (r == NULL)
        return -ENOMEM;
    if ((rc = room_join(r, u, &u->slot)) < 0) {
        if (r->nmembers == 0)
            room_delete(&ch->rooms, r);
        return rc;
    }
    u->room = r;
    for (size_t i = 0; i < r->hist_len; i++) {
        const struct room_line *l = room_history_at(r, i);

        chat_send(chat_client(u), l->text, l->len);
    }
    if (chat_announces(ch, r)) {
        n = chat_fmt_notice(ch, "%s joined %s", u->nick.name, r->name);
        chat_room_send(r, u, ch->line, n);
    }
    log_debug("chat: %s joined %s (%zu members)", u->nick.name, r->name, r->nmembers);
    return 0;
}

/* Take u out of its room; first tell the others the part line p (formatted
 * in ch->line, may be NULL) if the room announces. Empty rooms go away. */
static void
chat_leave(struct chat *ch, struct chat_user *u, const char *p, size_t n)
{
    struct room *r = u->room;

    if (r == NULL)
        return;
    if (p != NULL && chat_announces(ch, r))
        chat_room_send(r, u, p, n);
    room_leave(r, u->slot, chat_slot_of);
    u->room = NULL;
    if (r->nmembers == 0)
        room_delete(&ch->rooms, r);
}

/* A message or an action to the room: formatted once, sanitised, sent to
 * everyone else, kept in the history. Text that sanitises to nothing is
 * dropped. */
static void
chat_relay(struct chat *ch, struct chat_user *u, enum chat_form form, const char *text, size_t n)
{
    size_t k, tn;

    if (u->room == NULL)
        return;
    k = chat_prefix(ch->line, form, u->nick.name);
    if ((tn = text_sanitize((const uint8_t *)text, n, ch->line + k)) == 0)
        return;
    k += tn;
    ch->line[k++] = '\r';
    ch->line[k++] = '\n';
    ch->relayed += chat_room_send(u->room, u, ch->line, k);
    (void)room_history_push(u->room, ch->line, k); /* ENOMEM: no history, no harm */
}

/* ---- commands ---- */

typedef void chat_cmd_fn(struct chat *ch, struct chat_user *u, const char *arg, size_t n);

struct chat_cmd {
    const char *name;
    chat_cmd_fn *fn;
    const char *usage;
    const char *help;
    bool need_arg;
};

static chat_cmd_fn chat_cmd_help;

/* Copy a validated name out of a line into a NUL-terminated array. */
static bool
chat_take_name(const char *s, size_t n, char name[TEXT_NAME_MAX + 1])
{
    if (!text_is_name(s, n))
        return false;
    memcpy(name, s, n);
    name[n] = '\0';
    return true;
}

static void
chat_cmd_nick(struct chat *ch, struct chat_user *u, const char *arg, size_t n)
{
    char name[TEXT_NAME_MAX + 1], old[TEXT_NAME_MAX + 1], who[CLIENT_NAME_MAX];
    struct chat_nick *other;
    size_t k;

    if (!chat_take_name(arg, n, name)) {
        chat_notice(ch, chat_client(u), "invalid nick: use 1-%d of A-Z a-z 0-9 _ -", TEXT_NAME_MAX);
        return;
    }
    if (strcmp(name, u->nick.name) == 0) {
        chat_notice(ch, chat_client(u), "you are already %s", name);
        return;
    }
    /* taken by someone else; changing the case of one's own nick is fine */
    if ((other = chat_nicks_find(&ch->nicks, name)) != NULL && other != &u->nick) {
        chat_notice(ch, chat_client(u), "nick %s is taken", other->name);
        return;
    }
    memcpy(old, u->nick.name, sizeof old);
    chat_nicks_remove(&ch->nicks, &u->nick);
    memcpy(u->nick.name, name, sizeof name);
    chat_nicks_add(&ch->nicks, &u->nick);
    log_info("%s: nick %s is now %s", client_name(chat_client(u), who, sizeof who), old, name);
    chat_notice(ch, chat_client(u), "you are now known as %s", name);
    if (u->room != NULL && chat_announces(ch, u->room)) {
        k = chat_fmt_notice(ch, "%s is now known as %s", old, name);
        chat_room_send(u->room, u, ch->line, k);
    }
}

/*
 * Lists (/who, /rooms) are written as "*** header: item item ..." lines of
 * at most CHAT_LIST_WIDTH bytes, continued on further "*** " lines, so a
 * crowded room never makes one enormous line.
 */
struct chat_list {
    struct chat *ch;
    struct client *c;
    size_t len;
    const char *sep; /* between items on one line */
    bool fresh;      /* no item on this line yet */
};

static void
chat_list_flush(struct chat_list *l)
{
    l->ch->line[l->len++] = '\r';
    l->ch->line[l->len++] = '\n';
    chat_send(l->c, l->ch->line, l->len);
    memcpy(l->ch->line, "***", 3);
    l->len = 3;
    l->fresh = true;
}

static void
chat_list_add(struct chat_list *l, const char *item, size_t n)
{
    const char *sep = l->fresh ? " " : l->sep;
    size_t sn = strlen(sep);

    if (!l->fresh && l->len + sn + n + 2 > CHAT_LIST_WIDTH) {
        chat_list_flush(l);
        sep = " ";
        sn = 1;
    }
    memcpy(l->ch->line + l->len, sep, sn);
    memcpy(l->ch->line + l->len + sn, item, n);
    l->len += sn + n;
    l->fresh = false;
}

static void
chat_cmd_who(struct chat *ch, struct chat_user *u, const char *arg, size_t n)
{
    struct room *r = u->room;
    struct chat_list l = { ch, chat_client(u), 0, " ", true };

    (void)arg;
    (void)n;
    if (r == NULL)
        return;
    l.len = (size_t)snprintf(ch->line, ch->linecap, "*** %zu in %s:", r->nmembers, r->name);
    for (size_t i = 0; i < r->nmembers; i++) {
        struct chat_user *m = r->members[i];

        chat_list_add(&l, m->nick.name, strlen(m->nick.name));
    }
    chat_list_flush(&l);
}

static int
chat_room_cmp(const void *a, const void *b)
{
    const struct room *ra = *(const struct room *const *)a;
    const struct room *rb = *(const struct room *const *)b;

    return strcasecmp(ra->name, rb->name);
}

static void
chat_cmd_rooms(struct chat *ch, struct chat_user *u, const char *arg, size_t n)
{
    struct chat_list l = { ch, chat_client(u), 0, ", ", true };
    struct room **v = xmalloc((ch->rooms.nrooms + 1) * sizeof *v);
    size_t nv = 0;
    char item[TEXT_NAME_MAX + 32];

    (void)arg;
    (void)n;
    for (size_t i = 0; i < ch->rooms.nbuckets; i++)
        for (struct room *r = ch->rooms.buckets[i]; r != NULL; r = r->next)
            v[nv++] = r;
    qsort(v, nv, sizeof *v, chat_room_cmp);
    l.len = (size_t)snprintf(ch->line, ch->linecap, "*** %zu room%s:", nv, nv == 1 ? "" : "s");
    for (size_t i = 0; i < nv; i++) {
        int k = snprintf(item, sizeof item, "%s (%zu)", v[i]->name, v[i]->nmembers);

        chat_list_add(&l, item, (size_t)k);
    }
    chat_list_flush(&l);
    free(v);
}

static void
chat_cmd_me(struct chat *ch, struct chat_user *u, const char *arg, size_t n)
{
    chat_relay(ch, u, CHAT_FORM_ACTION, arg, n);
}

static void
chat_cmd_msg(struct chat *ch, struct chat_user *u, const char *arg, size_t n)
{
    char name[TEXT_NAME_MAX + 1];
    const char *word, *text;
    size_t wn, tn, k;
    struct chat_nick *to = NULL;
    struct chat_user *t;

    chat_split_word(arg, n, &word, &wn, &text, &tn);
    if (tn == 0) {
        chat_notice(ch, chat_client(u), "usage: /msg NICK TEXT");
        return;
    }
    if (chat_take_name(word, wn, name))
        to = chat_nicks_find(&ch->nicks, name);
    if (to == NULL || client_closing(chat_client(chat_user_of_nick(to)))) {
        if (text_is_name(word, wn))
            chat_notice(ch, chat_client(u), "no such nick: %s", name);
        else
            chat_notice(ch, chat_client(u), "no such nick");
        return;
    }
    t = chat_user_of_nick(to);
    if ((tn = text_sanitize((const uint8_t *)text, tn, ch->text)) == 0)
        return;
    k = chat_prefix(ch->line, CHAT_FORM_PRIVATE, u->nick.name);
    memcpy(ch->line + k, ch->text, tn);
    memcpy(ch->line + k + tn, "\r\n", 2);
    chat_send(chat_client(t), ch->line, k + tn + 2);
    ch->relayed++;
    k = chat_prefix(ch->line, CHAT_FORM_PRIVATE_SENT, t->nick.name);
    memcpy(ch->line + k, ch->text, tn);
    memcpy(ch->line + k + tn, "\r\n", 2);
    chat_send(chat_client(u), ch->line, k + tn + 2);
}

static void
chat_cmd_join(struct chat *ch, struct chat_user *u, const char *arg, size_t n)
{
    char name[TEXT_NAME_MAX + 1];
    struct room *r;
    size_t k;
    int rc;

    if (!chat_take_name(arg, n, name)) {
        chat_notice(ch, chat_client(u), "invalid room name: use 1-%d of A-Z a-z 0-9 _ -",
                    TEXT_NAME_MAX);
        return;
    }
    if (u->room != NULL && text_name_eq(u->room->name, name)) {
        chat_notice(ch, chat_client(u), "you are already in %s", u->room->name);
        return;
    }
    if (u->room != NULL) {
        k = chat_fmt_notice(ch, "%s left %s", u->nick.name, u->room->name);
        chat_leave(ch, u, ch->line, k);
    }
    /* an existing room keeps the spelling of whoever created it */
    r = room_find(&ch->rooms, name);
    chat_notice(ch, chat_client(u), "you joined %s", r != NULL ? r->name : name);
    if ((rc = chat_enter(ch, u, name)) < 0) {
        char who[CLIENT_NAME_MAX];

        log_err("%s: cannot join %s: %s", client_name(chat_client(u), who, sizeof who), name,
                strerror(-rc));
        client_close(chat_client(u), CLIENT_WHY_ERROR);
    }
}

static void
chat_cmd_quit(struct chat *ch, struct chat_user *u, const char *arg, size_t n)
{
    size_t k = 0, tn;

    chat_notice(ch, chat_client(u), "goodbye");
    if (u->room != NULL) {
        tn = text_sanitize((const uint8_t *)arg, n, ch->text);
        if (tn > 0)
            k = chat_fmt_notice(ch, "%s left (%.*s)", u->nick.name, (int)tn, ch->text);
        else
            k = chat_fmt_notice(ch, "%s left", u->nick.name);
        chat_leave(ch, u, ch->line, k);
    }
    log_debug("chat: %s quit", u->nick.name);
    client_finish(chat_client(u), CLIENT_WHY_BYE);
}

static const struct chat_cmd chat_cmds[] = {
    { "nick", chat_cmd_nick, "/nick NAME", "change your nick", true },
    { "who", chat_cmd_who, "/who", "list the people in your room", false },
    { "me", chat_cmd_me, "/me TEXT", "send an action", true },
    { "msg", chat_cmd_msg, "/msg NICK TEXT", "send a private message", true },
    { "join", chat_cmd_join, "/join ROOM", "leave your room and join (or create) ROOM", true },
    { "rooms", chat_cmd_rooms, "/rooms", "list the rooms", false },
    { "quit", chat_cmd_quit, "/quit [REASON]", "leave the chat", false },
    { "help", chat_cmd_help, "/help", "this list", false },
};
static const size_t chat_ncmds = UTIL_ARRAY_LEN(chat_cmds);

static void
chat_cmd_help(struct chat *ch, struct chat_user *u, const char *arg, size_t n)
{
    (void)arg;
    (void)n;
    chat_notice(ch, chat_client(u), "commands:");
    for (size_t i = 0; i < chat_ncmds; i++)
        chat_notice(ch, chat_client(u), "  %-16s %s", chat_cmds[i].usage, chat_cmds[i].help);
    chat_notice(ch, chat_client(u), "  %-16s %s", "//text", "send a message that starts with /");
    chat_notice(ch, chat_client(u), "anything else is a message to your room");
}

static void
chat_command(struct chat *ch, struct chat_user *u, const struct chat_parsed *p)
{
    const struct chat_cmd *cmd = NULL;
    size_t tn;

    for (size_t i = 0; i < chat_ncmds && cmd == NULL; i++)
        if (strlen(chat_cmds[i].name) == p->name_len &&
            strncasecmp(chat_cmds[i].name, p->name, p->name_len) == 0)
            cmd = &chat_cmds[i];
    if (cmd == NULL) {
        tn = text_sanitize((const uint8_t *)p->name, p->name_len, ch->text);
        chat_notice(ch, chat_client(u), "unknown command /%.*s (try /help)", (int)tn, ch->text);
        return;
    }
    if (cmd->need_arg && p->arg_len == 0) {
        chat_notice(ch, chat_client(u), "usage: %s", cmd->usage);
        return;
    }
    cmd->fn(ch, u, p->arg, p->arg_len);
}

/* ---- input ---- */

/* One complete line from u (ending removed). */
static void
chat_line(struct chat *ch, struct chat_user *u, const char *line, size_t len)
{
    struct chat_parsed p;

    if (chat_parse(line, len, &p) == CHAT_EMPTY)
        return;
    (void)rate_take(&u->rate, ch->cfg.rate_limit, client_now(chat_client(u)));
    ch->lines++;
    if (p.kind == CHAT_TEXT)
        chat_relay(ch, u, CHAT_FORM_SAY, p.arg, p.arg_len);
    else
        chat_command(ch, u, &p);
}

/*
 * Handle queued lines while the rate budget allows. When it runs out, the
 * rest stays queued in the line reader, reading pauses (the kernel buffer
 * fills and TCP slows the sender: nothing is dropped) and a wake-up is set
 * for when the next token arrives. Reading resumes only once the queue is
 * empty, so memory stays bounded by what was read before the pause. After
 * the peer's FIN, the queue is worked off (over several wakes if need be)
 * and then the connection is finished.
 */
static void
chat_process(struct chat *ch, struct chat_user *u)
{
    struct client *c = chat_client(u);
    const uint8_t *line;
    size_t len;
    uint64_t now, wait;
    int rc;

    while (!client_closing(c) && line_queued(&u->lr) > 0) {
        now = client_now(c);
        if ((wait = rate_wait_ms(&u->rate, ch->cfg.rate_limit, now)) > 0) {
            client_pause_read(c);
            client_wake_at(c, now + wait);
            return;
        }
        rc = line_next(&u->lr, &line, &len);
        if (rc == -EMSGSIZE) {
            (void)rate_take(&u->rate, ch->cfg.rate_limit, now);
            ch->lines++;
            chat_notice(ch, c, "line too long (max %zu bytes), discarded", ch->cfg.max_line);
            continue;
        }
        if (rc <= 0)
            break;
        chat_line(ch, u, (const char *)line, len);
    }
    if (client_closing(c))
        return;
    if (u->eof)
        client_finish(c, CLIENT_WHY_BYE);
    else if (client_read_paused(c))
        client_resume_read(c);
}

/* ---- client ops ---- */

static void
chat_guest_nick(struct chat *ch, char name[TEXT_NAME_MAX + 1])
{
    do
        snprintf(name, TEXT_NAME_MAX + 1, "guest%" PRIu32, ++ch->next_guest);
    while (chat_nicks_find(&ch->nicks, name) != NULL);
}

static int
chat_open(struct client *c)
{
    struct chat *ch = client_ctx(c);
    struct chat_user *u = client_data(c);
    int rc;

    line_init(&u->lr, ch->cfg.max_line);
    rate_init(&u->rate, ch->cfg.rate_limit, client_now(c));
    chat_guest_nick(ch, u->nick.name);
    chat_nicks_add(&ch->nicks, &u->nick);
    chat_notice(ch, c, "welcome to echochat, you are %s in %s; type /help for commands",
                u->nick.name, CHAT_LOBBY);
    if ((rc = chat_enter(ch, u, CHAT_LOBBY)) < 0) {
        chat_nicks_remove(&ch->nicks, &u->nick);
        line_fini(&u->lr);
        u->nick.name[0] = '\0'; /* not set up: chat_close has nothing to undo */
    }
    return rc;
}

static int
chat_read(struct client *c, const uint8_t *p, size_t n)
{
    struct chat_user *u = chat_user_of(c);
    int rc;

    if (u == NULL || client_closing(c))
        return 0;
    if ((rc = line_feed(&u->lr, p, n)) < 0)
        return rc;
    chat_process(client_ctx(c), u);
    return 0;
}

static void
chat_eof(struct client *c)
{
    struct chat_user *u = chat_user_of(c);

    if (u == NULL || client_closing(c))
        return;
    u->eof = true;
    (void)line_finish(&u->lr);
    chat_process(client_ctx(c), u);
}

/* Chat never pauses reading for its own output (a full receiver is dropped
 * instead), so a drain has nothing to resume; a rate pause ends in wake. */
static void
chat_drain(struct client *c)
{
    (void)c;
}

static void
chat_wake(struct client *c)
{
    struct chat_user *u = chat_user_of(c);

    if (u != NULL && !client_closing(c))
        chat_process(client_ctx(c), u);
}

static void
chat_on_notice(struct client *c, enum client_notice what)
{
    struct chat *ch = client_ctx(c);
    struct chat_user *u = chat_user_of(c);

    switch (what) {
    case CLIENT_NOTICE_SHUTDOWN:
        ch->stopping = true;
        chat_notice(ch, c, "server shutting down");
        break;
    case CLIENT_NOTICE_IDLE:
        if (u != NULL)
            u->idle = true;
        chat_notice(ch, c, "idle timeout (%u s), disconnecting", ch->cfg.idle_timeout);
        break;
    case CLIENT_NOTICE_FULL:
        chat_notice(ch, c, "server full, try again later");
        break;
    case CLIENT_NOTICE_PER_IP:
        chat_notice(ch, c, "too many connections from your address");
        break;
    case CLIENT_NOTICE_BUSY:
        chat_notice(ch, c, "server busy, try again later");
        break;
    }
}

/* Reap time: the user leaves its room (told, unless the server is going
 * down), its nick becomes free, its state goes. */
static void
chat_close(struct client *c)
{
    struct chat *ch = client_ctx(c);
    struct chat_user *u = chat_user_of(c);
    size_t k;

    if (u == NULL)
        return;
    if (u->room != NULL && !ch->stopping) {
        k = chat_fmt_notice(ch, "%s left (%s)", u->nick.name,
                            u->idle ? "idle timeout" : "disconnected");
        chat_leave(ch, u, ch->line, k);
    } else {
        chat_leave(ch, u, NULL, 0);
    }
    chat_nicks_remove(&ch->nicks, &u->nick);
    line_fini(&u->lr);
    u->nick.name[0] = '\0';
}

const struct client_ops chat_ops = {
    .name = "chat",
    .data_size = sizeof(struct chat_user),
    .open = chat_open,
    .read = chat_read,
    .eof = chat_eof,
    .drain = chat_drain,
    .wake = chat_wake,
    .notice = chat_on_notice,
    .close = chat_close,
};

/* ---- shared state ---- */

int
chat_new(struct chat **out, const struct chat_cfg *cfg)
{
    struct chat *ch = xcalloc(1, sizeof *ch);
    int rc;

    ch->cfg = *cfg;
    if ((rc = room_set_init(&ch->rooms, cfg->history)) < 0) {
        free(ch);
        return rc;
    }
    if ((rc = chat_nicks_init(&ch->nicks)) < 0) {
        room_set_fini(&ch->rooms);
        free(ch);
        return rc;
    }
    ch->text = xmalloc(TEXT_SANITIZED_MAX(cfg->max_line) + 1);
    ch->linecap = UTIL_MAX(CHAT_LINE_MAX(cfg->max_line) + 64, (size_t)CHAT_NOTICE_MIN);
    ch->line = xmalloc(ch->linecap);
    *out = ch;
    return 0;
}

void
chat_free(struct chat *ch)
{
    if (ch == NULL)
        return;
    room_set_fini(&ch->rooms);
    chat_nicks_fini(&ch->nicks);
    free(ch->text);
    free(ch->line);
    free(ch);
}

void
chat_stats(const struct chat *ch, struct chat_stats *st)
{
    st->users = ch->nicks.count;
    st->rooms = ch->rooms.nrooms;
    st->lines = ch->lines;
    st->relayed = ch->relayed;
}
