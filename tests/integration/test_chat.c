/*
 * Integration tests for the chat service (SPEC section 5) against the real
 * daemon, with several real clients over loopback: every command and its
 * errors, the exact line forms, no echo to the sender, room isolation,
 * history, hostile bytes (escapes, telnet IAC, forged lines, bad UTF-8),
 * overlong lines, fan-out order, the rate limit, slow readers, connection
 * limits, idle timeout, half-close with nc and graceful shutdown.
 *
 * "Nothing arrives" is checked without sleeping: a sync marker (an unknown
 * command, whose error reply comes back through the same output queue) is
 * sent after the event; every line before the marker's reply is what the
 * client got, and the server handled the event before the marker.
 */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define LINE_MAX_TEST 16384
#define WAIT_MS       H_TIMEOUT_MS

struct fixture {
    struct h_daemon d;
    int seq; /* sync markers */
};

static const char *const chat_names[] = { "chat", NULL };

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    h_init(&f->d);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    h_cleanup(&f->d);
    free(f);
    return 0;
}

/* Start the daemon with these extra flags (NULL-terminated). */
static void
start(struct fixture *f, const char *const *args)
{
    h_start(&f->d, chat_names, args);
}

/* The next line, which must come within WAIT_MS. */
static void
next_line(struct h_conn *c, char *line, size_t cap)
{
    int n = h_conn_line(c, line, cap, WAIT_MS);

    if (n < 0)
        fail_msg("expected a line, got %s", n == -1 ? "a timeout" : "EOF");
}

static void
expect(struct h_conn *c, const char *needle)
{
    char line[LINE_MAX_TEST];

    if (!h_conn_expect(c, needle, line, sizeof(line), WAIT_MS))
        fail_msg("no line containing \"%s\"", needle);
}

/* The next line must be exactly want. */
static void
expect_exact(struct h_conn *c, const char *want)
{
    char line[LINE_MAX_TEST];

    next_line(c, line, sizeof(line));
    if (strcmp(line, want) != 0)
        fail_msg("got \"%s\", want \"%s\"", line, want);
}

/* Skip to the first line containing needle; it must be exactly want. */
static void
expect_match(struct h_conn *c, const char *needle, const char *want)
{
    char line[LINE_MAX_TEST];

    if (!h_conn_expect(c, needle, line, sizeof(line), WAIT_MS))
        fail_msg("no line containing \"%s\"", needle);
    if (strcmp(line, want) != 0)
        fail_msg("got \"%s\", want \"%s\"", line, want);
}

/* Send a marker and collect every line before its reply into out (joined
 * with '\n'): everything the server sent c so far. */
static void
sync_collect(struct fixture *f, struct h_conn *c, char *out, size_t cap)
{
    char marker[64], cmd[80], line[LINE_MAX_TEST];
    size_t len = 0;

    snprintf(marker, sizeof(marker), "/sync-%d", ++f->seq);
    snprintf(cmd, sizeof(cmd), "%s\n", marker);
    h_conn_send(c, cmd);
    out[0] = '\0';
    for (;;) {
        next_line(c, line, sizeof(line));
        if (strstr(line, "unknown command") != NULL && strstr(line, marker) != NULL)
            return;
        len += (size_t)snprintf(out + len, len < cap ? cap - len : 0, "%s\n", line);
        if (len >= cap)
            len = cap - 1;
    }
}

/* Nothing containing needle reached c (after the server handled all of c's
 * and, through the caller's ordering, everyone else's earlier input). */
static void
sync_absent(struct fixture *f, struct h_conn *c, const char *needle)
{
    char got[1 << 16];

    sync_collect(f, c, got, sizeof(got));
    if (strstr(got, needle) != NULL)
        fail_msg("\"%s\" arrived: %s", needle, got);
}

/* A connected user; with nick != NULL it renames itself first. The
 * welcome line names the guest nick, copied to guest (may be NULL). */
static struct h_conn *
user(struct fixture *f, const char *nick, char *guest)
{
    struct h_conn *c = h_conn_open(f->d.port[0]);
    char line[LINE_MAX_TEST], cmd[64];
    const char *g;

    next_line(c, line, sizeof(line));
    assert_non_null(strstr(line, "*** welcome"));
    assert_non_null(g = strstr(line, "guest"));
    if (guest != NULL)
        sscanf(g, "%31[A-Za-z0-9_-]", guest);
    if (nick != NULL) {
        snprintf(cmd, sizeof(cmd), "/nick %s\n", nick);
        h_conn_send(c, cmd);
        snprintf(line, sizeof(line), "*** you are now known as %s", nick);
        expect(c, line);
    }
    return c;
}

/* ---- arriving ---- */

static void
test_chat_welcome_names_unique_guest_ends_crlf(void **state)
{
    struct fixture *f = *state;
    char buf[512], g2[32];
    size_t n = 0;
    int fd;
    struct h_conn *b;

    start(f, NULL);
    fd = h_connect(f->d.port[0]);
    /* raw bytes: the line must end in CR LF */
    while (n < sizeof(buf) - 1 && (n < 2 || buf[n - 1] != '\n')) {
        assert_int_equal(h_read_exact(fd, buf + n, 1, WAIT_MS), 0);
        n++;
    }
    buf[n] = '\0';
    assert_memory_equal(buf, "*** welcome", 11);
    assert_non_null(strstr(buf, "guest"));
    assert_non_null(strstr(buf, "/help"));
    assert_memory_equal(buf + n - 2, "\r\n", 2);
    b = user(f, NULL, g2);
    assert_null(strstr(buf, g2)); /* a different guest number */
    h_conn_close(b);
    close(fd);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

static void
test_chat_join_and_part_announced_to_others(void **state)
{
    struct fixture *f = *state;
    struct h_conn *a, *b, *c;
    char g[32], line[128];

    start(f, NULL);
    a = user(f, "alice", NULL);
    b = user(f, NULL, g);
    snprintf(line, sizeof(line), "*** %s joined lobby", g);
    expect_exact(a, line);
    h_conn_send(b, "/nick bob\n");
    snprintf(line, sizeof(line), "*** %s is now known as bob", g);
    expect_exact(a, line);
    expect_exact(b, "*** you are now known as bob");
    c = user(f, "carol", NULL);
    expect(a, "carol");
    h_conn_send(b, "/quit see you\n");
    expect_match(b, "goodbye", "*** goodbye");
    assert_int_equal(h_conn_line(b, line, sizeof(line), WAIT_MS), -2); /* EOF */
    expect_exact(a, "*** bob left (see you)");
    expect_exact(c, "*** bob left (see you)");
    h_conn_close(c); /* no /quit: the room is still told */
    expect_exact(a, "*** carol left (disconnected)");
    h_conn_close(a);
    h_conn_close(b);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

static void
test_chat_announce_max_suppresses_joins_in_bigger_rooms(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = { "--announce-max", "1", NULL };
    struct h_conn *a, *b;

    start(f, args);
    a = user(f, "alice", NULL);
    b = user(f, "bob", NULL);
    h_conn_send(b, "/who\n");
    expect(b, "2 in lobby");
    sync_absent(f, a, "joined");
    sync_absent(f, a, "known as");
    h_conn_close(b);
    h_conn_close(a);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

/* ---- messages ---- */

static void
test_chat_message_reaches_room_not_sender(void **state)
{
    struct fixture *f = *state;
    struct h_conn *a, *b, *c;

    start(f, NULL);
    a = user(f, "alice", NULL);
    b = user(f, "bob", NULL);
    c = user(f, "carol", NULL);
    h_conn_send(a, "hello there\n");
    expect(b, "<alice> hello there");
    expect(c, "<alice> hello there");
    sync_absent(f, a, "hello there");
    h_conn_send(b, "/me waves\n");
    expect_exact(a, "* bob waves");
    expect_exact(c, "* bob waves");
    sync_absent(f, b, "waves");
    h_conn_send(b, "/me\n");
    expect_exact(b, "*** usage: /me TEXT");
    h_conn_close(a);
    h_conn_close(b);
    h_conn_close(c);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

static void
test_chat_private_message_and_errors(void **state)
{
    struct fixture *f = *state;
    struct h_conn *a, *b, *c;

    start(f, NULL);
    a = user(f, "alice", NULL);
    b = user(f, "bob", NULL);
    c = user(f, "carol", NULL);
    h_conn_drain(a, 50);
    h_conn_send(a, "/msg BOB psst, a secret\n"); /* nicks ignore case */
    expect(b, "*alice* psst, a secret");
    expect_exact(a, "-> *bob* psst, a secret");
    sync_absent(f, c, "secret");
    h_conn_send(a, "/msg nobody hi\n");
    expect_exact(a, "*** no such nick: nobody");
    h_conn_send(a, "/msg bob\n");
    expect_exact(a, "*** usage: /msg NICK TEXT");
    h_conn_send(a, "/msg\n");
    expect_exact(a, "*** usage: /msg NICK TEXT");
    /* private messages reach other rooms too */
    h_conn_send(c, "/join dev\n");
    expect(c, "you joined dev");
    h_conn_send(a, "/msg carol across\n");
    expect(c, "*alice* across");
    h_conn_close(a);
    h_conn_close(b);
    h_conn_close(c);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

static void
test_chat_double_slash_empty_and_unknown(void **state)
{
    struct fixture *f = *state;
    struct h_conn *a, *b;

    start(f, NULL);
    a = user(f, "alice", NULL);
    b = user(f, "bob", NULL);
    h_conn_drain(a, 50);
    h_conn_send(a, "//nick is how you rename\n");
    expect_exact(b, "<alice> /nick is how you rename");
    h_conn_send(a, "/frobnicate now\n");
    expect_exact(a, "*** unknown command /frobnicate (try /help)");
    h_conn_send(a, "\n\r\n   \n\t\n");
    sync_collect(f, a, (char[256]){ 0 }, 256);
    sync_absent(f, b, "<alice>");
    h_conn_send(a, "/\n");
    expect_exact(a, "*** unknown command / (try /help)");
    h_conn_close(a);
    h_conn_close(b);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

static void
test_chat_help_lists_every_command(void **state)
{
    struct fixture *f = *state;
    static const char *const cmds[] = { "/nick",  "/who",  "/me",   "/msg", "/join",
                                        "/rooms", "/quit", "/help", "//" };
    struct h_conn *a;
    char got[1 << 14];

    start(f, NULL);
    a = user(f, NULL, NULL);
    h_conn_send(a, "/help\n");
    sync_collect(f, a, got, sizeof(got));
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strstr(got, cmds[i]) == NULL)
            fail_msg("/help does not mention %s: %s", cmds[i], got);
    for (char *p = got; *p != '\0'; p = strchr(p, '\n') + 1)
        assert_memory_equal(p, "*** ", 4);
    h_conn_close(a);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

/* ---- nicks ---- */

static void
test_chat_nick_rules(void **state)
{
    struct fixture *f = *state;
    struct h_conn *a, *b;

    start(f, NULL);
    a = user(f, "alice", NULL);
    b = user(f, "bob", NULL);
    h_conn_drain(a, 50);
    h_conn_send(b, "/nick ALICE\n");
    expect_exact(b, "*** nick alice is taken");
    h_conn_send(b, "/nick a!b\n");
    expect(b, "*** invalid nick");
    h_conn_send(b, "/nick two words\n");
    expect(b, "*** invalid nick");
    h_conn_send(b, "/nick abcdefghijklmnopqrstuvwxy\n"); /* 25 */
    expect(b, "*** invalid nick");
    h_conn_send(b, "/nick\n");
    expect_exact(b, "*** usage: /nick NAME");
    h_conn_send(b, "/nick abcdefghijklmnopqrstuvwx\n"); /* 24 */
    expect_exact(b, "*** you are now known as abcdefghijklmnopqrstuvwx");
    expect_exact(a, "*** bob is now known as abcdefghijklmnopqrstuvwx");
    /* changing the case of one's own nick is allowed */
    h_conn_send(a, "/nick ALICE\n");
    expect_exact(a, "*** you are now known as ALICE");
    expect_exact(b, "*** alice is now known as ALICE");
    h_conn_send(a, "hi\n");
    expect_exact(b, "<ALICE> hi");
    /* the old nick is free again */
    h_conn_send(b, "/nick bob\n");
    expect_exact(b, "*** you are now known as bob");
    h_conn_close(a);
    expect(b, "ALICE left");
    h_conn_send(b, "/nick alice\n");
    expect_exact(b, "*** you are now known as alice");
    h_conn_close(b);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

static void
test_chat_who_lists_own_room_only(void **state)
{
    struct fixture *f = *state;
    struct h_conn *a, *b, *c;
    char line[LINE_MAX_TEST];

    start(f, NULL);
    a = user(f, "alice", NULL);
    b = user(f, "bob", NULL);
    c = user(f, "carol", NULL);
    h_conn_send(c, "/join dev\n");
    expect(c, "you joined dev");
    h_conn_drain(a, 50);
    h_conn_send(a, "/who\n");
    next_line(a, line, sizeof(line));
    assert_memory_equal(line, "*** 2 in lobby:", 15);
    assert_non_null(strstr(line, " alice"));
    assert_non_null(strstr(line, " bob"));
    assert_null(strstr(line, "carol"));
    h_conn_close(a);
    h_conn_close(b);
    h_conn_close(c);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

/* ---- rooms ---- */

static void
test_chat_rooms_isolated_created_and_removed(void **state)
{
    struct fixture *f = *state;
    struct h_conn *a, *b, *c;

    start(f, NULL);
    a = user(f, "alice", NULL);
    b = user(f, "bob", NULL);
    c = user(f, "carol", NULL);
    h_conn_drain(a, 50);
    h_conn_drain(b, 50);
    h_conn_send(a, "/join dev\n");
    expect_exact(a, "*** you joined dev");
    expect_exact(b, "*** alice left lobby");
    h_conn_send(a, "in dev\n");
    h_conn_send(a, "/join Dev\n"); /* room names ignore case */
    expect_exact(a, "*** you are already in dev");
    sync_absent(f, b, "in dev");
    h_conn_send(c, "/join DEV\n");
    expect_match(c, "you joined", "*** you joined dev");
    expect_exact(c, "<alice> in dev"); /* history */
    expect_exact(a, "*** carol joined dev");
    h_conn_send(b, "/rooms\n");
    expect_match(b, "rooms:", "*** 2 rooms: dev (2), lobby (1)");
    h_conn_send(b, "/join bad!room\n");
    expect(b, "*** invalid room name");
    h_conn_send(b, "/join\n");
    expect_match(b, "usage", "*** usage: /join ROOM");
    h_conn_send(a, "/join lobby\n");
    expect(a, "you joined lobby");
    h_conn_send(c, "/join lobby\n");
    expect(c, "you joined lobby");
    h_conn_send(b, "/rooms\n");
    expect_match(b, "room:", "*** 1 room: lobby (3)"); /* empty dev is gone */
    h_conn_send(a, "/join dev\n");
    expect(a, "you joined dev");
    sync_absent(f, a, "<alice> in dev"); /* a new dev: no old history */
    h_conn_close(a);
    h_conn_close(b);
    h_conn_close(c);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

static void
test_chat_history_replayed_on_join(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = { "--history", "2", NULL };
    struct h_conn *a, *b;
    char line[LINE_MAX_TEST];

    start(f, args);
    a = user(f, "alice", NULL);
    h_conn_send(a, "one\ntwo\n/me three\n");
    sync_collect(f, a, (char[256]){ 0 }, 256);
    b = h_conn_open(f->d.port[0]);
    next_line(b, line, sizeof(line));
    assert_non_null(strstr(line, "welcome"));
    expect_exact(b, "<alice> two");
    expect_exact(b, "* alice three");
    sync_absent(f, b, "one");
    h_conn_close(a);
    h_conn_close(b);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

static void
test_chat_history_zero_replays_nothing(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = { "--history", "0", NULL };
    struct h_conn *a, *b;

    start(f, args);
    a = user(f, "alice", NULL);
    h_conn_send(a, "one\ntwo\n");
    sync_collect(f, a, (char[256]){ 0 }, 256);
    b = user(f, NULL, NULL);
    sync_absent(f, b, "<alice>");
    h_conn_close(a);
    h_conn_close(b);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

/* ---- hostile input ---- */

static void
test_chat_forged_lines_carry_sender_nick(void **state)
{
    struct fixture *f = *state;
    struct h_conn *a, *b;

    start(f, NULL);
    a = user(f, "alice", NULL);
    b = user(f, "bob", NULL);
    h_conn_send(a, "*** fake server line\n<bob> fake bob\n* bob fakes\n");
    expect_exact(b, "<alice> *** fake server line");
    expect_exact(b, "<alice> <bob> fake bob");
    expect_exact(b, "<alice> * bob fakes");
    h_conn_close(a);
    h_conn_close(b);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

/* True if s holds a C0 control other than TAB, DEL, a C1 control (as UTF-8
 * C2 80..C2 9F or a raw 80..9F byte after no lead) or a 0xFF byte. */
static bool
has_controls(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < n; i++) {
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f || p[i] == 0xff)
            return true;
        if (p[i] == 0xc2 && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)
            return true;
    }
    return false;
}

static void
test_chat_escapes_and_telnet_never_reach_others(void **state)
{
    struct fixture *f = *state;
    struct h_conn *a, *b;
    char line[LINE_MAX_TEST], got[1 << 14];
    /* ESC [2J, CSI as C1 (C2 9B), raw C1 byte, DEL, BEL, BS, NUL; telnet
     * IAC WILL ECHO, IAC SB TTYPE ... IAC SE, IAC IP, IAC IAC */
    static const char evil[] = "a\x1b[2Jb\xc2\x9b"
                               "31mc\x9b"
                               "d\x7f\x07\x08\x00"
                               "e\xff\xfb\x01"
                               "f\xff\xfa\x18\x01\xff\xf0"
                               "g\xff\xf4h\xff\xffi\n";
    int n;

    start(f, NULL);
    a = user(f, "alice", NULL);
    b = user(f, "bob", NULL);
    h_write_all(a->fd, evil, sizeof(evil) - 1);
    n = h_conn_line(b, line, sizeof(line), WAIT_MS);
    assert_true(n > 0);
    assert_false(has_controls(line, (size_t)n));
    assert_memory_equal(line, "<alice> ", 8);
    /* text survives around what was removed; the raw C1 byte is invalid
     * UTF-8 and shows as U+FFFD */
    assert_non_null(strstr(line, "a[2Jb31mc\xef\xbf\xbd"));
    assert_non_null(strstr(line, "defghi"));
    /* nothing negotiated back to the sender */
    sync_collect(f, a, got, sizeof(got));
    assert_null(strchr(got, '\xff'));
    h_conn_close(a);
    h_conn_close(b);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

static void
test_chat_invalid_utf8_replaced_valid_kept(void **state)
{
    struct fixture *f = *state;
    struct h_conn *a, *b;

    start(f, NULL);
    a = user(f, "alice", NULL);
    b = user(f, "bob", NULL);
    h_conn_send(a, "x\xc3(y \xed\xa0\x80 caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\n");
    expect_exact(b, "<alice> x\xef\xbf\xbd(y \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd caf\xc3\xa9 "
                    "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80");
    h_conn_close(a);
    h_conn_close(b);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

static void
test_chat_overlong_line_discarded_connection_stays(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = { "--max-line", "100", NULL };
    struct h_conn *a, *b;
    char big[400];

    start(f, args);
    a = user(f, "alice", NULL);
    b = user(f, "bob", NULL);
    h_conn_drain(a, 50);
    memset(big, 'x', sizeof(big) - 2);
    big[sizeof(big) - 2] = '\n';
    big[sizeof(big) - 1] = '\0';
    h_conn_send(a, big);
    expect_exact(a, "*** line too long (max 100 bytes), discarded");
    h_conn_send(a, "still here\n");
    expect_exact(b, "<alice> still here");
    sync_absent(f, b, "xxxx");
    h_conn_close(a);
    h_conn_close(b);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

/* ---- volume ---- */

/* n lines "tag i" from a, read in order by each receiver. */
static void
expect_sequence(struct h_conn *r, const char *nick, const char *tag, int n)
{
    char line[LINE_MAX_TEST], want[128];

    for (int i = 0; i < n; i++) {
        snprintf(want, sizeof(want), "<%s> %s %d", nick, tag, i);
        next_line(r, line, sizeof(line));
        if (strcmp(line, want) != 0)
            fail_msg("line %d: got \"%s\", want \"%s\"", i, line, want);
    }
}

static char *
numbered_lines(const char *tag, int n, size_t *len)
{
    size_t cap = (size_t)n * (strlen(tag) + 16) + 1, k = 0;
    char *p = malloc(cap);

    assert_non_null(p);
    for (int i = 0; i < n; i++)
        k += (size_t)snprintf(p + k, cap - k, "%s %d\n", tag, i);
    *len = k;
    return p;
}

static void
test_chat_fanout_1000_lines_in_order_to_3(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = { "--rate-limit", "0", NULL };
    struct h_conn *a, *r[3];
    size_t len;
    char *text;

    start(f, args);
    a = user(f, "alice", NULL);
    r[0] = user(f, "r0", NULL);
    r[1] = user(f, "r1", NULL);
    r[2] = user(f, "r2", NULL);
    h_conn_drain(r[0], 50);
    h_conn_drain(r[1], 50);
    text = numbered_lines("fan", 1000, &len);
    h_write_all(a->fd, text, len);
    for (int i = 0; i < 3; i++)
        expect_sequence(r[i], "alice", "fan", 1000);
    sync_absent(f, a, "<alice>");
    free(text);
    for (int i = 0; i < 3; i++)
        h_conn_close(r[i]);
    h_conn_close(a);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

static void
test_chat_fanout_under_load_batched_without_loss(void **state)
{
    enum { NRECV = 400, NLINES = 500 };
    static const char *const args[] = { "--rate-limit", "0", "--announce-max", "0", NULL };
    struct fixture *f = *state;
    struct h_conn *a, **r = calloc(NRECV, sizeof(*r));
    const struct timespec gap = { 0, 200 * 1000 };
    long writes, held;

    assert_non_null(r);
    start(f, args);
    a = user(f, "alice", NULL);
    for (int i = 0; i < NRECV; i++)
        r[i] = user(f, NULL, NULL);
    for (int i = 0; i < NLINES; i++) {
        char line[32];
        int n = snprintf(line, sizeof(line), "load %d\n", i);
        h_write_all(a->fd, line, (size_t)n);
        nanosleep(&gap, NULL);
    }
    for (int i = 0; i < NRECV; i++)
        expect_sequence(r[i], "alice", "load", NLINES);
    h_signal(&f->d, SIGUSR1);
    assert_true(h_wait_log(&f->d, "stats:", WAIT_MS));
    writes = h_log_number(&f->d, "stats:", "writes ");
    held = h_log_number(&f->d, "stats:", "held ");
    print_message("fan-out under load: %d deliveries in %ld writes, %ld of them held\n",
                  NRECV * NLINES, writes, held);
    assert_true(held > 0);
    assert_true(writes < (long)NRECV * NLINES);
    for (int i = 0; i < NRECV; i++)
        h_conn_close(r[i]);
    h_conn_close(a);
    free(r);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

/* --rate-limit 50 (burst 250): 400 pasted lines all arrive in order, the
 * last 150 paced at 50/s, so it takes about 3 s; the sender stays. */
static void
test_chat_rate_limit_delays_without_loss(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = { "--rate-limit", "50", NULL };
    struct h_conn *a, *b;
    size_t len;
    char *text;
    long t0, took;

    start(f, args);
    a = user(f, "alice", NULL);
    b = user(f, "bob", NULL);
    text = numbered_lines("paste", 400, &len);
    t0 = h_now_ms();
    h_write_all(a->fd, text, len);
    expect_sequence(b, "alice", "paste", 400);
    took = h_now_ms() - t0;
    print_message("400 lines at 50/s, burst 250: %ld ms\n", took);
    assert_true(took >= 2500);
    assert_true(took < 8000);
    h_conn_send(a, "/who\n"); /* not kicked */
    expect(a, "2 in lobby");
    assert_int_equal(h_count_log(&f->d, "closed"), 0);
    free(text);
    h_conn_close(a);
    h_conn_close(b);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

/* A client that stops reading while the room is flooded is dropped once
 * its queue passes --max-output; a reading client gets every line. */
static void
test_chat_slow_reader_dropped_others_keep_receiving(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = { "--max-output", "65536", "--rate-limit", "0", NULL };
    struct h_conn *a, *c, *s;
    char slow[32], msg[1100], line[LINE_MAX_TEST], want[1200], part[64];
    int small = 4096;
    bool parted = false;
    enum { CHUNKS = 400, PER = 20 }; /* 8000 lines of ~1 KB: 8 MB */

    start(f, args);
    a = user(f, "alice", NULL);
    s = user(f, NULL, slow);
    assert_int_equal(setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    c = user(f, "carol", NULL);
    h_conn_drain(c, 50);
    snprintf(part, sizeof(part), "*** %s left (disconnected)", slow);
    memset(msg, 'm', sizeof(msg));
    for (int k = 0; k < CHUNKS; k++) {
        char chunk[PER * 1100];
        size_t n = 0;

        for (int i = 0; i < PER; i++)
            n += (size_t)snprintf(chunk + n, sizeof(chunk) - n, "%d %.1000s\n", k * PER + i, msg);
        h_write_all(a->fd, chunk, n);
        for (int i = 0; i < PER; i++) {
            snprintf(want, sizeof(want), "<alice> %d %.1000s", k * PER + i, msg);
            next_line(c, line, sizeof(line));
            if (strcmp(line, want) != 0) {
                if (strcmp(line, part) == 0 && !parted) {
                    parted = true;
                    i--; /* the slow reader's part notice */
                    continue;
                }
                fail_msg("line %d: got \"%.60s\"", k * PER + i, line);
            }
        }
        if (h_count_log(&f->d, "output limit") > 0 && k > 0)
            break;
    }
    assert_true(h_wait_log(&f->d, "output limit", WAIT_MS));
    if (!parted)
        expect(c, part);
    h_conn_send(a, "after\n");
    expect(c, "<alice> after");
    h_conn_close(s);
    h_conn_close(a);
    h_conn_close(c);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

/* ---- limits ---- */

/* The refused connection gets exactly one "*** " line, then EOF. */
static void
expect_refused(struct fixture *f, const char *what)
{
    struct h_conn *x = h_conn_open(f->d.port[0]);
    char line[LINE_MAX_TEST];

    next_line(x, line, sizeof(line));
    assert_memory_equal(line, "*** ", 4);
    if (strstr(line, what) == NULL)
        fail_msg("refusal \"%s\" does not say \"%s\"", line, what);
    assert_int_equal(h_conn_line(x, line, sizeof(line), WAIT_MS), -2);
    h_conn_close(x);
}

static void
test_chat_max_clients_refuses_with_notice(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = { "--max-clients", "2", NULL };
    struct h_conn *a, *b;

    start(f, args);
    a = user(f, "alice", NULL);
    b = user(f, "bob", NULL);
    expect_refused(f, "full");
    h_conn_send(a, "still fine\n");
    expect(b, "<alice> still fine");
    h_conn_close(a);
    h_conn_close(b);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

static void
test_chat_max_per_ip_refuses_with_notice(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = { "--max-per-ip", "1", NULL };
    struct h_conn *a;

    start(f, args);
    a = user(f, "alice", NULL);
    expect_refused(f, "too many connections");
    h_conn_send(a, "/who\n");
    expect(a, "1 in lobby");
    h_conn_close(a);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

static void
test_chat_idle_timeout_tells_and_closes(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = { "--idle-timeout", "1", NULL };
    struct h_conn *a;
    char line[LINE_MAX_TEST];

    start(f, args);
    a = user(f, NULL, NULL);
    /* 1 s of silence, plus slack for a loaded machine */
    assert_true(h_conn_line(a, line, sizeof(line), 4000) > 0);
    assert_string_equal(line, "*** idle timeout (1 s), disconnecting");
    assert_int_equal(h_conn_line(a, line, sizeof(line), WAIT_MS), -2);
    h_conn_close(a);
    assert_true(h_wait_log(&f->d, "idle", WAIT_MS));
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

/* ---- half-close and shutdown ---- */

/* Run a shell pipeline into nc -N and capture its output. */
static void
run_nc(struct fixture *f, const char *input, char *out, size_t cap)
{
    char cmd[512];
    FILE *p;
    size_t n;

    snprintf(cmd, sizeof(cmd), "printf '%s' | timeout 5 nc -N 127.0.0.1 %d", input, f->d.port[0]);
    assert_non_null(p = popen(cmd, "r"));
    n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0); /* nc exits by itself: we closed */
}

static void
test_chat_half_close_nc_gets_replies_then_close(void **state)
{
    struct fixture *f = *state;
    struct h_conn *a;
    char out[8192];

    start(f, NULL);
    a = user(f, "alice", NULL);
    run_nc(f, "/who\\n", out, sizeof(out));
    assert_non_null(strstr(out, "*** welcome"));
    assert_non_null(strstr(out, "2 in lobby"));
    assert_non_null(strstr(out, "alice"));
    /* a final line without newline is still processed */
    run_nc(f, "/nick ncuser\\nlast words", out, sizeof(out));
    assert_non_null(strstr(out, "you are now known as ncuser"));
    expect(a, "<ncuser> last words");
    h_conn_close(a);
    assert_int_equal(h_stop(&f->d, WAIT_MS), 0);
}

static void
test_chat_shutdown_tells_everyone_then_eof(void **state)
{
    struct fixture *f = *state;
    struct h_conn *u[3];
    char line[LINE_MAX_TEST];

    start(f, NULL);
    for (int i = 0; i < 3; i++) {
        u[i] = user(f, NULL, NULL);
        sync_collect(f, u[i], (char[4096]){ 0 }, 4096);
    }
    for (int i = 0; i < 3; i++)
        h_conn_drain(u[i], 20);
    h_signal(&f->d, SIGTERM);
    for (int i = 0; i < 3; i++) {
        expect_exact(u[i], "*** server shutting down");
        /* no part notices for the others going away */
        assert_int_equal(h_conn_line(u[i], line, sizeof(line), WAIT_MS), -2);
        h_conn_close(u[i]);
    }
    assert_int_equal(h_wait_exit(&f->d, WAIT_MS), 0);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_chat_welcome_names_unique_guest_ends_crlf),
        T(test_chat_join_and_part_announced_to_others),
        T(test_chat_announce_max_suppresses_joins_in_bigger_rooms),
        T(test_chat_message_reaches_room_not_sender),
        T(test_chat_private_message_and_errors),
        T(test_chat_double_slash_empty_and_unknown),
        T(test_chat_help_lists_every_command),
        T(test_chat_nick_rules),
        T(test_chat_who_lists_own_room_only),
        T(test_chat_rooms_isolated_created_and_removed),
        T(test_chat_history_replayed_on_join),
        T(test_chat_history_zero_replays_nothing),
        T(test_chat_forged_lines_carry_sender_nick),
        T(test_chat_escapes_and_telnet_never_reach_others),
        T(test_chat_invalid_utf8_replaced_valid_kept),
        T(test_chat_overlong_line_discarded_connection_stays),
        T(test_chat_fanout_1000_lines_in_order_to_3),
        T(test_chat_fanout_under_load_batched_without_loss),
        T(test_chat_rate_limit_delays_without_loss),
        T(test_chat_slow_reader_dropped_others_keep_receiving),
        T(test_chat_max_clients_refuses_with_notice),
        T(test_chat_max_per_ip_refuses_with_notice),
        T(test_chat_idle_timeout_tells_and_closes),
        T(test_chat_half_close_nc_gets_replies_then_close),
        T(test_chat_shutdown_tells_everyone_then_eof),
    };
#undef T

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("chat integration", tests, NULL, NULL);
}
