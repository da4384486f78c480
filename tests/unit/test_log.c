/*
 * log unit tests. fd 2 is replaced by one end of a SOCK_SEQPACKET socket
 * pair: every write(2) arrives as its own record, so "one line, one write"
 * is checked directly, and the socket's device and inode stand in for
 * journald's stream in the JOURNAL_STREAM detection tests.
 */
#include "log.h"

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* The real stderr while fd 2 is the socket: cmocka's own failure text
 * would vanish into the socket, so the helpers below report here. */
static int real_stderr = -1;

struct fx {
    int saved_stderr; /* the real stderr, restored in teardown */
    int peer;         /* read side of the socket pair on fd 2 */
    char rec[8192];
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    int sv[2];

    assert_non_null(f);
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    f->saved_stderr = dup(STDERR_FILENO);
    assert_true(f->saved_stderr >= 0);
    real_stderr = f->saved_stderr;
    assert_int_equal(dup2(sv[0], STDERR_FILENO), STDERR_FILENO);
    close(sv[0]);
    f->peer = sv[1];
    unsetenv("JOURNAL_STREAM");
    log_init(LOG_INFO);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    dup2(f->saved_stderr, STDERR_FILENO);
    close(f->saved_stderr);
    close(f->peer);
    unsetenv("JOURNAL_STREAM");
    log_set_journal(false);
    log_set_level(LOG_INFO);
    free(f);
    return 0;
}

/* The next record written to fd 2, NUL-terminated in f->rec; -1 when there
 * is none. */
static ssize_t
next_record(struct fx *f)
{
    ssize_t n = recv(f->peer, f->rec, sizeof(f->rec) - 1, MSG_DONTWAIT);

    f->rec[n > 0 ? n : 0] = '\0';
    return n;
}

/* Nothing more was written; f->rec keeps the last record. */
static void
assert_no_record(struct fx *f)
{
    char extra[64];

    assert_int_equal(recv(f->peer, extra, sizeof(extra), MSG_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
}

static void
assert_matches(const char *s, const char *re)
{
    regex_t rx;
    int rc;

    assert_int_equal(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
    rc = regexec(&rx, s, 0, NULL, 0);
    regfree(&rx);
    if (rc != 0) {
        dprintf(real_stderr, "\"%s\" does not match %s\n", s, re);
        fail();
    }
}

#define STAMP_RE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "

/* Exactly one write, in the exact shape, in UTC even when TZ is not. */
static void
test_log_plain_line_format(void **state)
{
    struct fx *f = *state;
    struct tm tm = { 0 };
    time_t before, after, stamp;

    setenv("TZ", "XXX-5", 1); /* UTC+5: a local-time stamp would be 5 h off */
    tzset();
    before = time(NULL);
    log_info("hello %d", 42);
    after = time(NULL);
    assert_true(next_record(f) > 0);
    assert_no_record(f);
    assert_matches(f->rec, STAMP_RE "info: hello 42\n$");
    assert_non_null(strptime(f->rec, "%Y-%m-%dT%H:%M:%S", &tm));
    stamp = timegm(&tm);
    assert_true(stamp >= before - 1 && stamp <= after + 1);
    unsetenv("TZ");
    tzset();
}

static void
test_log_level_words(void **state)
{
    static const struct {
        int prio;
        const char *re;
    } words[] = {
        { LOG_DEBUG, STAMP_RE "debug: m\n$" },   { LOG_INFO, STAMP_RE "info: m\n$" },
        { LOG_NOTICE, STAMP_RE "notice: m\n$" }, { LOG_WARNING, STAMP_RE "warning: m\n$" },
        { LOG_ERR, STAMP_RE "error: m\n$" },
    };
    struct fx *f = *state;
    size_t i;

    log_set_level(LOG_DEBUG);
    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        log_msg(words[i].prio, "m");
        assert_true(next_record(f) > 0);
        assert_matches(f->rec, words[i].re);
    }
    log_debug("d");
    assert_true(next_record(f) > 0);
    assert_matches(f->rec, "debug: d\n$");
    log_warn("w");
    assert_true(next_record(f) > 0);
    assert_matches(f->rec, "warning: w\n$");
}

static void
test_log_journal_line_has_priority_prefix_only(void **state)
{
    struct fx *f = *state;

    log_set_journal(true);
    assert_true(log_is_journal());
    log_set_level(LOG_DEBUG);
    log_info("listening on %s", "[::]:2323");
    assert_true(next_record(f) > 0);
    assert_string_equal(f->rec, "<6>listening on [::]:2323\n");
    log_err("e");
    next_record(f);
    assert_string_equal(f->rec, "<3>e\n");
    log_warn("w");
    next_record(f);
    assert_string_equal(f->rec, "<4>w\n");
    log_notice("n");
    next_record(f);
    assert_string_equal(f->rec, "<5>n\n");
    log_debug("d");
    next_record(f);
    assert_string_equal(f->rec, "<7>d\n");
    assert_no_record(f);
}

static void
test_log_level_filter_drops_less_severe(void **state)
{
    struct fx *f = *state;

    log_set_level(LOG_NOTICE);
    log_info("dropped");
    log_debug("dropped too");
    assert_no_record(f);
    assert_false(log_enabled(LOG_INFO));
    assert_true(log_enabled(LOG_NOTICE));
    assert_true(log_enabled(LOG_ERR));
    log_notice("kept");
    assert_true(next_record(f) > 0);
    assert_matches(f->rec, "notice: kept\n$");
    log_err("kept too");
    assert_true(next_record(f) > 0);
    assert_no_record(f);

    log_init(LOG_ERR);
    log_warn("dropped");
    assert_no_record(f);
    log_init(LOG_DEBUG);
    log_debug("shown");
    assert_true(next_record(f) > 0);
}

static void
set_stream(dev_t dev, ino_t ino)
{
    char v[64];

    snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)dev, (unsigned long long)ino);
    assert_int_equal(setenv("JOURNAL_STREAM", v, 1), 0);
}

static void
test_log_journal_detected_when_stream_matches_stderr(void **state)
{
    struct fx *f = *state;
    struct stat st;

    assert_int_equal(fstat(STDERR_FILENO, &st), 0);
    set_stream(st.st_dev, st.st_ino);
    log_init(LOG_INFO);
    assert_true(log_is_journal());
    log_info("ready");
    assert_true(next_record(f) > 0);
    assert_string_equal(f->rec, "<6>ready\n");
}

/* An inherited JOURNAL_STREAM that names some other file, or garbage, must
 * not turn timestamps off. */
static void
test_log_journal_not_detected_when_stream_differs(void **state)
{
    static const char *const junk[] = { "", "abc", "12", "12:", ":34", "1:2x", "-1:2", "1:2:3" };
    struct fx *f = *state;
    struct stat st;
    size_t i;

    assert_int_equal(fstat(STDERR_FILENO, &st), 0);
    set_stream(st.st_dev, st.st_ino + 1);
    log_init(LOG_INFO);
    assert_false(log_is_journal());
    set_stream(st.st_dev + 1, st.st_ino);
    log_init(LOG_INFO);
    assert_false(log_is_journal());
    for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        /* start from "detected" so a parser that gives up early still fails */
        set_stream(st.st_dev, st.st_ino);
        log_init(LOG_INFO);
        assert_true(log_is_journal());
        setenv("JOURNAL_STREAM", junk[i], 1);
        log_init(LOG_INFO);
        if (log_is_journal())
            fail_msg("JOURNAL_STREAM=\"%s\" taken as the journal", junk[i]);
    }
    /* the right numbers with something around them */
    for (i = 0; i < 4; i++) {
        static const char *const around[][2] = {
            { "", "x" }, { " ", "" }, { "", ":0" }, { "+", "" }
        };
        char v[80];

        snprintf(v, sizeof(v), "%s%llu:%llu%s", around[i][0], (unsigned long long)st.st_dev,
                 (unsigned long long)st.st_ino, around[i][1]);
        setenv("JOURNAL_STREAM", v, 1);
        log_set_journal(true);
        log_init(LOG_INFO);
        if (log_is_journal())
            fail_msg("JOURNAL_STREAM=\"%s\" taken as the journal", v);
    }
    unsetenv("JOURNAL_STREAM");
    log_init(LOG_INFO);
    assert_false(log_is_journal());
    log_info("x");
    assert_true(next_record(f) > 0);
    assert_matches(f->rec, STAMP_RE "info: x\n$");
}

/* A huge message is cut, still one write, still one line ending in "\n". */
static void
test_log_long_message_truncated_to_one_line(void **state)
{
    struct fx *f = *state;
    size_t big = 100000, len;
    char *msg = malloc(big + 1);
    ssize_t n;

    assert_non_null(msg);
    memset(msg, 'a', big);
    msg[big] = '\0';
    log_warn("%s", msg);
    n = next_record(f);
    assert_true(n > 1000);
    assert_no_record(f);
    len = (size_t)n;
    assert_true(len < big);
    assert_int_equal(f->rec[len - 1], '\n');
    assert_ptr_equal(strchr(f->rec, '\n'), f->rec + len - 1);
    assert_memory_equal(f->rec + len - 4, "...", 3);
    assert_matches(f->rec, STAMP_RE "warning: aaaa");

    log_set_journal(true);
    log_warn("%s", msg);
    n = next_record(f);
    assert_true(n > 1000);
    assert_memory_equal(f->rec, "<4>aaaa", 7);
    assert_int_equal(f->rec[n - 1], '\n');
    assert_ptr_equal(strchr(f->rec, '\n'), f->rec + n - 1);
    free(msg);
}

static void
test_log_embedded_newlines_stay_one_line(void **state)
{
    struct fx *f = *state;

    log_set_journal(true);
    log_info("peer said %s", "hi\r\n<3>forged");
    assert_true(next_record(f) > 0);
    assert_no_record(f);
    assert_string_equal(f->rec, "<6>peer said hi  <3>forged\n");
}

/* A failing write (stderr closed) must not leak its errno to the caller. */
static void
test_log_errno_preserved_when_write_fails(void **state)
{
    (void)state;
    close(STDERR_FILENO);
    errno = EDOM;
    log_err("into the void");
    assert_int_equal(errno, EDOM);
    errno = ERANGE;
    log_debug("filtered out");
    assert_int_equal(errno, ERANGE);
}

static void
test_log_percent_m_is_callers_errno(void **state)
{
    struct fx *f = *state;
    char want[128];

    log_set_journal(true);
    snprintf(want, sizeof(want), "<3>open: %s\n", strerror(ENOENT));
    errno = ENOENT;
    log_err("open: %m");
    assert_int_equal(errno, ENOENT);
    assert_true(next_record(f) > 0);
    assert_string_equal(f->rec, want);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_log_plain_line_format),
        T(test_log_level_words),
        T(test_log_journal_line_has_priority_prefix_only),
        T(test_log_level_filter_drops_less_severe),
        T(test_log_journal_detected_when_stream_matches_stderr),
        T(test_log_journal_not_detected_when_stream_differs),
        T(test_log_long_message_truncated_to_one_line),
        T(test_log_embedded_newlines_stay_one_line),
        T(test_log_errno_preserved_when_write_fails),
        T(test_log_percent_m_is_callers_errno),
#undef T
    };

    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
