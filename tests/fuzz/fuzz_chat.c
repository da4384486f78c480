/*
 * libFuzzer harness for chat.c. It links chat.c without client.c: the
 * client layer below is a fake that keeps each client's output in memory,
 * so a whole session of up to eight users runs without a socket or a loop.
 *
 * Every input first goes through the pure parsers as one line: chat_parse()
 * and chat_split_word() must return pieces inside the line that obey their
 * contracts, and chat_format() must produce one CR LF terminated line with
 * the nick in front. Then the input is read as a script (after five bytes of
 * configuration): users connect, type bytes, stall their reading, send FIN,
 * time passes, server notices arrive. Whatever a user receives must be
 * complete CR LF lines of valid UTF-8 with no control characters, each
 * either a server line ("*** ") or a user line that starts with a valid
 * nick in one of the SPEC section 5 forms; chat_stats() must agree with the
 * users still connected; and at the end, after a shutdown, nothing leaks.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "client.h"
#include "fuzz.h"
#include "log.h"
#include "text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define USERS 8

/* ---- the fake client layer ---- */

struct session;

struct client {
    struct session *s;
    struct chat *ctx;
    void *data; /* chat_ops.data_size bytes right after the struct, as in a slot */
    int id;
    bool opened;  /* ops->open succeeded: ops->close is owed */
    bool closing; /* client_close/finish called: freed at the next flush */
    bool paused;  /* client_pause_read */
    bool stalled; /* the peer does not read: output piles up */
    bool eof;     /* the peer sent FIN (delivered once its input is read) */
    bool eof_done;
    uint64_t wake_at; /* 0 = none */
    uint8_t *out;     /* output not yet taken by the peer */
    size_t outlen, outcap;
    uint8_t *in; /* bytes sent by the peer, not yet read by the server */
    size_t inlen, incap;
};

struct session {
    struct chat *ch;
    struct client *users[USERS];
    uint64_t now;
    size_t max_output;
    int next_id;
};

static void
grow(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    *cap = need * 2;
    *p = realloc(*p, *cap);
    FUZZ_CHECK(*p != NULL);
}

int
client_send(struct client *c, const void *p, size_t n)
{
    if (c->closing)
        return 0;
    grow(&c->out, &c->outcap, c->outlen + n);
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
    return 0;
}

bool
client_output_full(const struct client *c)
{
    return c->outlen >= c->s->max_output;
}

void
client_pause_read(struct client *c)
{
    c->paused = true;
}

void
client_resume_read(struct client *c)
{
    c->paused = false;
}

bool
client_read_paused(const struct client *c)
{
    return c->paused;
}

void
client_wake_at(struct client *c, uint64_t when_ms)
{
    FUZZ_CHECK(when_ms > c->s->now); /* a wake in the past would spin */
    c->wake_at = when_ms;
}

void
client_close(struct client *c, enum client_why why)
{
    FUZZ_CHECK(why < CLIENT_WHY_COUNT);
    if (!c->closing)
        c->outlen = 0; /* output is dropped */
    c->closing = true;
}

void
client_finish(struct client *c, enum client_why why)
{
    FUZZ_CHECK(why < CLIENT_WHY_COUNT);
    c->closing = true;
}

bool
client_closing(const struct client *c)
{
    return c->closing;
}

void *
client_data(const struct client *c)
{
    return c->data;
}

struct client *
client_of_data(void *data)
{
    return (struct client *)data - 1;
}

void *
client_ctx(const struct client *c)
{
    return c->ctx;
}

uint64_t
client_now(const struct client *c)
{
    return c->s->now;
}

char *
client_name(const struct client *c, char *buf, size_t len)
{
    snprintf(buf, len, "client %d", c->id);
    return buf;
}

/* ---- what a user may receive ---- */

/* The nick at p (up to the byte stop), which must be a valid name. */
static const uint8_t *
expect_nick(const uint8_t *p, const uint8_t *end, char stop)
{
    const uint8_t *q = memchr(p, stop, (size_t)(end - p));

    FUZZ_CHECK(q != NULL);
    FUZZ_CHECK(text_is_name((const char *)p, (size_t)(q - p)));
    return q + 1;
}

/* One line, CR LF removed: a server line, or user text behind its nick. */
static void
check_line(const uint8_t *p, size_t n)
{
    const uint8_t *end = p + n;
    size_t len;

    FUZZ_CHECK(fuzz_utf8_valid(p, n));
    for (size_t i = 0; i < n; i += len)
        FUZZ_CHECK(!fuzz_is_control(fuzz_utf8_decode(p + i, &len)));
    if (n >= 4 && memcmp(p, "*** ", 4) == 0)
        return;
    if (n >= 1 && p[0] == '<') {
        p = expect_nick(p + 1, end, '>'); /* <nick> text */
        FUZZ_CHECK(p < end && *p == ' ');
    } else if (n >= 2 && memcmp(p, "* ", 2) == 0) {
        expect_nick(p + 2, end, ' '); /* * nick text */
    } else if (n >= 4 && memcmp(p, "-> *", 4) == 0) {
        p = expect_nick(p + 4, end, '*'); /* -> *nick* text */
        FUZZ_CHECK(p < end && *p == ' ');
    } else {
        FUZZ_CHECK(n >= 1 && p[0] == '*'); /* *nick* text */
        p = expect_nick(p + 1, end, '*');
        FUZZ_CHECK(p < end && *p == ' ');
    }
}

/* The peer reads everything queued for it: whole lines only. */
static void
take_output(struct client *c)
{
    size_t i = 0;

    while (i < c->outlen) {
        const uint8_t *lf = memchr(c->out + i, '\n', c->outlen - i);
        size_t n;

        FUZZ_CHECK(lf != NULL); /* output is whole lines */
        n = (size_t)(lf - (c->out + i));
        FUZZ_CHECK(n >= 1 && c->out[i + n - 1] == '\r');
        FUZZ_CHECK(memchr(c->out + i, '\r', n - 1) == NULL);
        check_line(c->out + i, n - 1);
        i += n + 1;
    }
    c->outlen = 0;
}

/* ---- the session ---- */

/* The end of a loop iteration, as client_table_flush() does it: free the
 * closing clients (which may queue output for others), repeat, then the
 * peers that read take their output. */
static void
flush(struct session *s)
{
    bool again = true;

    while (again) {
        again = false;
        for (int k = 0; k < USERS; k++) {
            struct client *c = s->users[k];

            if (c == NULL || !c->closing)
                continue;
            if (c->opened)
                chat_ops.close(c);
            take_output(c); /* what it was owed (client_finish) */
            free(c->out);
            free(c->in);
            free(c);
            s->users[k] = NULL;
            again = true;
        }
    }
    for (int k = 0; k < USERS; k++)
        if (s->users[k] != NULL && !s->users[k]->stalled)
            take_output(s->users[k]);
}

static void
check_stats(struct session *s)
{
    struct chat_stats st;
    size_t live = 0;

    for (int k = 0; k < USERS; k++)
        live += s->users[k] != NULL && s->users[k]->opened;
    chat_stats(s->ch, &st);
    FUZZ_CHECK(st.users == live);
    FUZZ_CHECK(st.rooms <= st.users);
}

static struct client *
connect_user(struct session *s, int slot, int notice)
{
    /* the protocol's state follows the client, zeroed, as in a table slot */
    struct client *c = calloc(1, sizeof *c + chat_ops.data_size);

    FUZZ_CHECK(c != NULL);
    c->data = c + 1;
    c->s = s;
    c->ctx = s->ch;
    c->id = s->next_id++;
    s->users[slot] = c;
    if (notice >= 0) {
        /* refused (--max-clients and friends): told why, never opened */
        chat_ops.notice(c, (enum client_notice)notice);
        client_finish(c, CLIENT_WHY_REFUSED);
        return c;
    }
    if (chat_ops.open(c) == 0)
        c->opened = true;
    else
        client_close(c, CLIENT_WHY_ERROR);
    return c;
}

/* What the client layer does when the socket is readable: hand over what
 * the peer sent, unless reading is paused; then, with nothing left, FIN. */
static void
deliver(struct client *c)
{
    while (!c->closing && !c->paused && c->inlen > 0) {
        size_t k = c->inlen < 64 ? c->inlen : 64; /* one read */

        if (chat_ops.read(c, c->in, k) < 0)
            client_close(c, CLIENT_WHY_ERROR);
        memmove(c->in, c->in + k, c->inlen - k);
        c->inlen -= k;
    }
    if (!c->closing && !c->paused && c->inlen == 0 && c->eof && !c->eof_done) {
        c->eof_done = true;
        chat_ops.eof(c);
    }
}

static void
advance(struct session *s, uint64_t ms)
{
    s->now += ms;
    for (int k = 0; k < USERS; k++) {
        struct client *c = s->users[k];

        if (c != NULL && !c->closing && c->wake_at != 0 && c->wake_at <= s->now) {
            c->wake_at = 0;
            chat_ops.wake(c);
        }
    }
}

/* One step of the script; returns the bytes it used. */
static size_t
step(struct session *s, const uint8_t *p, size_t n)
{
    int slot = (p[0] >> 3) % USERS;
    struct client *c = s->users[slot];
    size_t used = 1;

    switch (p[0] & 7) {
    case 0: /* connect */
        if (c == NULL)
            connect_user(s, slot, -1);
        break;
    case 1:
    case 2: /* the user types a chunk */
        if (n < 2)
            return n;
        used = 2 + p[1] % 48;
        if (used > n)
            used = n;
        if (c != NULL && !c->eof && used > 2) {
            grow(&c->in, &c->incap, c->inlen + used - 2);
            memcpy(c->in + c->inlen, p + 2, used - 2);
            c->inlen += used - 2;
        }
        break;
    case 3: /* FIN */
        if (c != NULL)
            c->eof = true;
        break;
    case 4: /* time passes */
        if (n < 2)
            return n;
        advance(s, (uint64_t)p[1] * 20);
        used = 2;
        break;
    case 5: /* the user stops or starts reading */
        if (c != NULL)
            c->stalled = !c->stalled;
        break;
    case 6: /* idle timeout: told, then closed */
        if (c != NULL && !c->closing) {
            chat_ops.notice(c, CLIENT_NOTICE_IDLE);
            client_close(c, CLIENT_WHY_IDLE);
        }
        break;
    case 7: /* a refused connection */
        if (c == NULL)
            connect_user(s, slot, CLIENT_NOTICE_FULL + (p[0] >> 6) % 3);
        break;
    }
    for (int k = 0; k < USERS; k++)
        if (s->users[k] != NULL)
            deliver(s->users[k]);
    flush(s);
    check_stats(s);
    return used;
}

/* SIGTERM: everyone is told, then finished; the chat must end empty. */
static void
shutdown_session(struct session *s)
{
    struct chat_stats st;

    for (int k = 0; k < USERS; k++) {
        struct client *c = s->users[k];

        if (c != NULL && !c->closing) {
            c->stalled = false;
            chat_ops.notice(c, CLIENT_NOTICE_SHUTDOWN);
            client_finish(c, CLIENT_WHY_SHUTDOWN);
        }
    }
    flush(s);
    chat_stats(s->ch, &st);
    FUZZ_CHECK(st.users == 0 && st.rooms == 0);
    chat_free(s->ch);
}

static void
run_session(const uint8_t *p, size_t n)
{
    struct session s = { 0 };
    struct chat_cfg cfg;

    if (n < 5)
        return;
    cfg.max_line = 16 + p[0] % 128;
    cfg.rate_limit = p[1] % 4; /* 0 = off; else a few lines/s: pauses happen */
    cfg.history = p[2] % 6;
    cfg.announce_max = p[3] % 4;
    cfg.idle_timeout = 30;
    s.max_output = 1024 + (size_t)p[4] * 8;
    FUZZ_CHECK(chat_new(&s.ch, &cfg) == 0);
    p += 5;
    n -= 5;
    while (n > 0) {
        size_t used = step(&s, p, n);

        p += used;
        n -= used;
    }
    shutdown_session(&s);
}

/* ---- the pure parsers ---- */

static bool
is_space(char c)
{
    return c == ' ' || c == '\t';
}

static bool
inside(const char *q, size_t qn, const char *s, size_t n)
{
    return q >= s && q + qn <= s + n;
}

static bool
trimmed(const char *q, size_t qn)
{
    return qn == 0 || (!is_space(q[0]) && !is_space(q[qn - 1]));
}

static void
check_parse(const char *line, size_t len)
{
    struct chat_parsed p;
    enum chat_kind kind = chat_parse(line, len, &p);
    bool blank = true;

    for (size_t i = 0; i < len; i++)
        blank = blank && is_space(line[i]);
    FUZZ_CHECK(kind == p.kind);
    FUZZ_CHECK((kind == CHAT_EMPTY) == blank);
    if (kind == CHAT_TEXT) {
        bool slashes = len >= 2 && line[0] == '/' && line[1] == '/';

        FUZZ_CHECK(line[0] != '/' || slashes);
        FUZZ_CHECK(p.arg == line + slashes && p.arg_len == len - slashes);
    } else if (kind == CHAT_COMMAND) {
        FUZZ_CHECK(line[0] == '/' && !(len >= 2 && line[1] == '/'));
        FUZZ_CHECK(p.name == line + 1 && inside(p.name, p.name_len, line, len));
        for (size_t i = 0; i < p.name_len; i++)
            FUZZ_CHECK(!is_space(p.name[i]));
        FUZZ_CHECK(p.name_len == len - 1 || is_space(p.name[p.name_len]));
        FUZZ_CHECK(inside(p.arg, p.arg_len, line, len) && trimmed(p.arg, p.arg_len));
        FUZZ_CHECK(p.arg >= p.name + p.name_len);
        /* only spaces and tabs were trimmed away around the arguments */
        for (const char *q = p.name + p.name_len; q < p.arg; q++)
            FUZZ_CHECK(is_space(*q));
        for (const char *q = p.arg + p.arg_len; q < line + len; q++)
            FUZZ_CHECK(is_space(*q));
    }
}

static void
check_split(const char *s, size_t n)
{
    const char *w, *r;
    size_t wn, rn;

    chat_split_word(s, n, &w, &wn, &r, &rn);
    FUZZ_CHECK(inside(w, wn, s, n) && inside(r, rn, s, n));
    FUZZ_CHECK(trimmed(w, wn) && trimmed(r, rn));
    for (size_t i = 0; i < wn; i++)
        FUZZ_CHECK(!is_space(w[i]));
    for (const char *q = s; q < w; q++)
        FUZZ_CHECK(is_space(*q));
    /* the word is the first one: between it and the rest only blanks */
    FUZZ_CHECK(r >= w + wn);
    for (const char *q = w + wn; q < r; q++)
        FUZZ_CHECK(is_space(*q));
    for (const char *q = r + rn; q < s + n; q++)
        FUZZ_CHECK(is_space(*q));
    if (wn == 0)
        FUZZ_CHECK(rn == 0);
}

static void
check_format(const char *text, size_t n, uint8_t pick)
{
    static const char *const nicks[] = { "a", "guest1", "Zz_-09", "abcdefghijklmnopqrstuvwx" };
    const char *nick = nicks[pick % 4];
    enum chat_form form = (enum chat_form)((pick >> 2) % 4);
    char *out = malloc(CHAT_LINE_MAX(n));
    size_t k;

    FUZZ_CHECK(out != NULL);
    k = chat_format(out, form, nick, text, n);
    FUZZ_CHECK(k >= 2 && k <= CHAT_LINE_MAX(n));
    FUZZ_CHECK(out[k - 2] == '\r' && out[k - 1] == '\n');
    FUZZ_CHECK(memchr(out, '\n', k - 1) == NULL && memchr(out, '\r', k - 2) == NULL);
    check_line((const uint8_t *)out, k - 2);
    FUZZ_CHECK(memmem(out, k, nick, strlen(nick)) != NULL);
    free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line;

    if (size == 0)
        return 0;
    log_init(LOG_CRIT); /* quiet: info lines for every nick change */
    /* a copy, so that ASan catches a read past the end of the line */
    line = malloc(size);
    FUZZ_CHECK(line != NULL);
    memcpy(line, data, size);
    check_parse(line, size);
    check_split(line, size);
    check_format(line + 1, size - 1, (uint8_t)line[0]);
    free(line);
    run_session(data, size);
    return 0;
}
