/*
 * cfg unit tests: every option of SPEC §1 through cfg_parse, the defaults,
 * each malformed value and combination rejected with one line that names
 * the flag, listener specs through cfg_parse_listen, and a second parse in
 * the same process starting afresh.
 */
#include "cfg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define ARGS_MAX 128
#define ERR_LEN  512

/* Parsing state: argv copies (pid_file points into them) and the result. */
struct fx {
    struct cfg cfg;
    char err[ERR_LEN];
    char *argv[ARGS_MAX];
    int argc;
};

static void
fx_clear_args(struct fx *f)
{
    int i;

    for (i = 0; i < f->argc; i++)
        free(f->argv[i]);
    f->argc = 0;
}

/* Parse "echochatd" followed by args (NULL-terminated), on writable copies
 * as getopt may permute argv. */
static int
fx_parse_v(struct fx *f, const char *const *args)
{
    int i;

    fx_clear_args(f);
    f->argv[f->argc++] = strdup("echochatd");
    for (i = 0; args[i] != NULL; i++) {
        assert_true(f->argc < ARGS_MAX - 1);
        f->argv[f->argc++] = strdup(args[i]);
    }
    f->argv[f->argc] = NULL;
    memset(f->err, 0, sizeof(f->err));
    return cfg_parse(&f->cfg, f->argc, f->argv, f->err, sizeof(f->err));
}

#define PARSE(f, ...) fx_parse_v((f), (const char *const[]){ __VA_ARGS__, NULL })

/* The error is one line that starts with prefix. */
static void
assert_err(const struct fx *f, const char *prefix)
{
    if (strncmp(f->err, prefix, strlen(prefix)) != 0)
        fail_msg("error \"%s\" does not start with \"%s\"", f->err, prefix);
    assert_null(strchr(f->err, '\n'));
    assert_true(strlen(f->err) > strlen(prefix));
}

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    fx_clear_args(f);
    free(f);
    return 0;
}

/* Numeric options: name, range, and where the value lands. */
struct num_opt {
    const char *name;
    unsigned long long min, max;
    size_t off, size;
};

#define NUM(name, min, max, field)                                                                 \
    {                                                                                              \
        name, min, max, offsetof(struct cfg, field), sizeof(((struct cfg *)0)->field)              \
    }

static const struct num_opt num_opts[] = {
    NUM("--keepalive-idle", 1, 32767, keepalive_idle),
    NUM("--keepalive-interval", 1, 32767, keepalive_interval),
    NUM("--keepalive-count", 1, 127, keepalive_count),
    NUM("--user-timeout", 0, 2147483647, user_timeout_ms),
    NUM("--idle-timeout", 0, 31536000, idle_timeout),
    NUM("--max-clients", 1, 1000000, max_clients),
    NUM("--max-per-ip", 0, 1000000, max_per_ip),
    NUM("--max-line", 16, 1048576, max_line),
    NUM("--max-output", 1024, 1073741824, max_output),
    NUM("--rate-limit", 0, 1000000, rate_limit),
    NUM("--history", 0, 10000, history),
    NUM("--announce-max", 0, 1000000, announce_max),
    NUM("--backlog", 1, 65535, backlog),
    NUM("--shutdown-timeout", 0, 3600, shutdown_timeout),
};

/* Every numeric field is a non-negative int, unsigned or size_t. */
static unsigned long long
num_get(const struct cfg *c, const struct num_opt *o)
{
    const char *p = (const char *)c + o->off;

    if (o->size == sizeof(unsigned)) {
        unsigned v;

        memcpy(&v, p, sizeof(v));
        return v;
    }
    assert_int_equal(o->size, sizeof(size_t));
    {
        size_t v;

        memcpy(&v, p, sizeof(v));
        return v;
    }
}

static void
test_cfg_defaults_match_spec(void **state)
{
    struct fx *f = *state;
    struct cfg d;

    assert_int_equal(PARSE(f, "--daemonize"), CFG_RUN);
    f->cfg.daemonize = false;
    cfg_defaults(&d);
    assert_memory_equal(&d, &f->cfg, sizeof(d));
    assert_int_equal(d.nlisten, 0);
    assert_true(d.keepalive);
    assert_int_equal(d.keepalive_idle, 60);
    assert_int_equal(d.keepalive_interval, 10);
    assert_int_equal(d.keepalive_count, 6);
    assert_int_equal(d.user_timeout_ms, 120000);
    assert_int_equal(d.idle_timeout, 0);
    assert_int_equal(d.max_clients, 10000);
    assert_int_equal(d.max_per_ip, 0);
    assert_int_equal(d.max_line, 4096);
    assert_int_equal(d.max_output, 1048576);
    assert_int_equal(d.rate_limit, 20);
    assert_int_equal(d.history, 20);
    assert_int_equal(d.announce_max, 100);
    assert_int_equal(d.backlog, 511);
    assert_int_equal(d.shutdown_timeout, 5);
    assert_false(d.daemonize);
    assert_null(d.pid_file);
    assert_int_equal(d.log_level, LOG_INFO);
}

static void
test_cfg_no_arguments_gives_defaults(void **state)
{
    struct fx *f = *state;
    struct cfg d;

    /* dirty the struct first: cfg_parse must start from the defaults */
    memset(&f->cfg, 0x5a, sizeof(f->cfg));
    assert_int_equal(fx_parse_v(f, (const char *const[]){ NULL }), CFG_RUN);
    cfg_defaults(&d);
    assert_memory_equal(&d, &f->cfg, sizeof(d));
    assert_string_equal(f->err, "");
}

/* Both spellings, "--x=V" and "--x V", at both ends of every range. The
 * --max-line 16 in front keeps --max-output's minimum legal. */
static void
test_cfg_numeric_options_accept_range_bounds(void **state)
{
    struct fx *f = *state;
    char val[32], eq[64];
    size_t i;

    for (i = 0; i < sizeof(num_opts) / sizeof(num_opts[0]); i++) {
        const struct num_opt *o = &num_opts[i];

        snprintf(val, sizeof(val), "%llu", o->min);
        if (PARSE(f, "--max-line=16", o->name, val) != CFG_RUN)
            fail_msg("%s %s: %s", o->name, val, f->err);
        assert_int_equal(num_get(&f->cfg, o), o->min);

        snprintf(eq, sizeof(eq), "%s=%llu", o->name, o->max);
        if (PARSE(f, "--max-line=16", eq) != CFG_RUN)
            fail_msg("%s: %s", eq, f->err);
        assert_int_equal(num_get(&f->cfg, o), o->max);
    }
}

static void
test_cfg_numeric_options_out_of_range_rejected(void **state)
{
    struct fx *f = *state;
    char val[32], prefix[64], range[64];
    size_t i;

    for (i = 0; i < sizeof(num_opts) / sizeof(num_opts[0]); i++) {
        const struct num_opt *o = &num_opts[i];

        snprintf(prefix, sizeof(prefix), "%s: ", o->name);
        snprintf(range, sizeof(range), "out of range %llu..%llu", o->min, o->max);
        snprintf(val, sizeof(val), "%llu", o->max + 1);
        assert_int_equal(PARSE(f, "--max-line=16", o->name, val), -EINVAL);
        assert_err(f, prefix);
        assert_non_null(strstr(f->err, range));
        assert_non_null(strstr(f->err, val));
        if (o->min == 0)
            continue;
        snprintf(val, sizeof(val), "%llu", o->min - 1);
        assert_int_equal(PARSE(f, "--max-line=16", o->name, val), -EINVAL);
        assert_err(f, prefix);
        assert_non_null(strstr(f->err, range));
    }
}

static void
test_cfg_max_line_message_exact(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "--max-line", "10"), -EINVAL);
    assert_string_equal(f->err, "--max-line: \"10\" is out of range 16..1048576");
}

/* Signs, blanks, junk, hex, empty and overflow: strtoull alone would take
 * several of these. */
static void
test_cfg_numeric_malformed_values_rejected(void **state)
{
    static const char *const bad[] = {
        "-1", "", " 5", "5 ", "5x", "0x10", "+5", "1e3", "99999999999999999999999", "١",
    };
    struct fx *f = *state;
    char prefix[64], eq[128];
    size_t i, j;

    for (i = 0; i < sizeof(num_opts) / sizeof(num_opts[0]); i++) {
        snprintf(prefix, sizeof(prefix), "%s: ", num_opts[i].name);
        for (j = 0; j < sizeof(bad) / sizeof(bad[0]); j++) {
            if (PARSE(f, num_opts[i].name, bad[j]) != -EINVAL)
                fail_msg("%s \"%s\" accepted", num_opts[i].name, bad[j]);
            assert_err(f, prefix);
            snprintf(eq, sizeof(eq), "%s=%s", num_opts[i].name, bad[j]);
            assert_int_equal(PARSE(f, eq), -EINVAL);
            assert_err(f, prefix);
        }
    }
}

static void
test_cfg_not_a_number_message_exact(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "--backlog=0x10"), -EINVAL);
    assert_string_equal(f->err, "--backlog: \"0x10\" is not a decimal number");
}

static void
test_cfg_leading_zeros_are_decimal(void **state)
{
    struct fx *f = *state;

    /* decimal, not octal: "010" is ten */
    assert_int_equal(PARSE(f, "--history", "010"), CFG_RUN);
    assert_int_equal(f->cfg.history, 10);
}

static void
test_cfg_missing_value_names_long_flag(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "--keepalive-idle"), -EINVAL);
    assert_string_equal(f->err, "--keepalive-idle: missing value");
    assert_int_equal(PARSE(f, "-D", "-c"), -EINVAL);
    assert_string_equal(f->err, "--chat: missing value");
    assert_int_equal(PARSE(f, "-l"), -EINVAL);
    assert_string_equal(f->err, "--log-level: missing value");
}

static void
test_cfg_unknown_long_option_quoted(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "--frobnicate"), -EINVAL);
    assert_string_equal(f->err, "\"--frobnicate\": unknown option");
    /* the value is not part of the name */
    assert_int_equal(PARSE(f, "--max-line", "100", "--frobnicate=7"), -EINVAL);
    assert_string_equal(f->err, "\"--frobnicate\": unknown option");
}

static void
test_cfg_unknown_short_option_quoted(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "-x"), -EINVAL);
    assert_string_equal(f->err, "\"-x\": unknown option");
    assert_int_equal(PARSE(f, "-Dq"), -EINVAL);
    assert_string_equal(f->err, "\"-q\": unknown option");
}

static void
test_cfg_ambiguous_abbreviation_rejected(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "--max", "5"), -EINVAL);
    assert_err(f, "\"--max\": ");
    assert_non_null(strstr(f->err, "ambiguous"));
}

static void
test_cfg_unique_abbreviation_accepted(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "--backl", "7"), CFG_RUN);
    assert_int_equal(f->cfg.backlog, 7);
}

static void
test_cfg_value_on_flag_without_value_rejected(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "--daemonize=yes"), -EINVAL);
    assert_err(f, "--daemonize: ");
    assert_int_equal(PARSE(f, "--no-keepalive=1"), -EINVAL);
    assert_err(f, "--no-keepalive: ");
}

static void
test_cfg_stray_argument_rejected(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "foo"), -EINVAL);
    assert_err(f, "\"foo\": ");
    assert_int_equal(PARSE(f, "--max-line", "100", "bar", "-D"), -EINVAL);
    assert_err(f, "\"bar\": ");
    assert_int_equal(PARSE(f, "--", "baz"), -EINVAL);
    assert_err(f, "\"baz\": ");
    assert_int_equal(PARSE(f, "-D", "--"), CFG_RUN);
    assert_true(f->cfg.daemonize);
}

/* Whatever argv holds, the message stays one line. */
static void
test_cfg_control_bytes_in_value_escaped(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "--history", "1\n2"), -EINVAL);
    assert_err(f, "--history: ");
    assert_non_null(strstr(f->err, "\\x0a"));
    assert_int_equal(PARSE(f, "--chat", "evil\nhost:7"), -EINVAL);
    assert_err(f, "--chat: ");
}

/* Long values are cut in the message, not the parse. */
static void
test_cfg_long_value_shortened_in_message(void **state)
{
    struct fx *f = *state;
    char big[2000];

    memset(big, '7', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(PARSE(f, "--backlog", big), -EINVAL);
    assert_err(f, "--backlog: ");
    assert_true(strlen(f->err) < 200);
    assert_non_null(strstr(f->err, "..."));
}

static void
test_cfg_small_error_buffer_truncated_safely(void **state)
{
    struct fx *f = *state;
    char *argv[] = { f->err, NULL, NULL };
    char small[9], arg[] = "--max-line=3";
    struct cfg c;

    strcpy(f->err, "echochatd");
    argv[1] = arg;
    memset(small, 'z', sizeof(small));
    assert_int_equal(cfg_parse(&c, 2, argv, small, 8), -EINVAL);
    assert_string_equal(small, "--max-l");
    assert_int_equal(small[8], 'z');
    /* no buffer at all is allowed too */
    assert_int_equal(cfg_parse(&c, 2, argv, NULL, 0), -EINVAL);
}

static void
test_cfg_no_keepalive_clears_flag(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "--no-keepalive"), CFG_RUN);
    assert_false(f->cfg.keepalive);
    /* TCP_USER_TIMEOUT does not depend on SO_KEEPALIVE: still allowed */
    assert_int_equal(PARSE(f, "--no-keepalive", "--user-timeout", "5000"), CFG_RUN);
    assert_int_equal(f->cfg.user_timeout_ms, 5000);
}

static void
test_cfg_no_keepalive_with_keepalive_option_rejected(void **state)
{
    static const char *const ka[] = {
        "--keepalive-idle",
        "--keepalive-interval",
        "--keepalive-count",
    };
    struct fx *f = *state;
    size_t i;

    for (i = 0; i < 3; i++) {
        assert_int_equal(PARSE(f, "--no-keepalive", ka[i], "5"), -EINVAL);
        assert_err(f, "--no-keepalive: ");
        assert_non_null(strstr(f->err, ka[i]));
        /* order does not matter */
        assert_int_equal(PARSE(f, ka[i], "5", "--no-keepalive"), -EINVAL);
        assert_err(f, "--no-keepalive: ");
        assert_non_null(strstr(f->err, ka[i]));
    }
}

static void
test_cfg_max_output_below_max_line_rejected(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "--max-line", "8192", "--max-output", "4096"), -EINVAL);
    assert_err(f, "--max-output: ");
    assert_non_null(strstr(f->err, "--max-line"));
    assert_int_equal(PARSE(f, "--max-line", "1048576", "--max-output=1048575"), -EINVAL);
    assert_err(f, "--max-output: ");
    /* against the default --max-line too */
    assert_int_equal(PARSE(f, "--max-output", "2048"), -EINVAL);
    assert_string_equal(f->err, "--max-output: 2048 is smaller than --max-line 4096");
    /* the largest --max-line fits the default --max-output */
    assert_int_equal(PARSE(f, "--max-line", "1048576"), CFG_RUN);
    assert_int_equal(PARSE(f, "--max-line", "2048", "--max-output", "2048"), CFG_RUN);
    assert_int_equal(f->cfg.max_output, 2048);
}

static void
test_cfg_user_timeout_derived_after_all_flags(void **state)
{
    struct fx *f = *state;

    assert_int_equal(
        PARSE(f, "--keepalive-idle", "30", "--keepalive-interval", "5", "--keepalive-count", "3"),
        CFG_RUN);
    assert_int_equal(f->cfg.user_timeout_ms, (30 + 5 * 3) * 1000);
    /* one knob changed: the others keep their defaults in the sum */
    assert_int_equal(PARSE(f, "--keepalive-count", "2"), CFG_RUN);
    assert_int_equal(f->cfg.user_timeout_ms, (60 + 10 * 2) * 1000);
}

static void
test_cfg_user_timeout_derived_capped_at_int_max(void **state)
{
    struct fx *f = *state;

    assert_int_equal(
        PARSE(f, "--keepalive-idle=32767", "--keepalive-interval=32767", "--keepalive-count=127"),
        CFG_RUN);
    assert_int_equal(f->cfg.user_timeout_ms, 2147483647u);
}

static void
test_cfg_user_timeout_explicit_wins(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "--user-timeout", "7", "--keepalive-idle", "100"), CFG_RUN);
    assert_int_equal(f->cfg.user_timeout_ms, 7);
    assert_int_equal(PARSE(f, "--keepalive-idle", "100", "--user-timeout=9000"), CFG_RUN);
    assert_int_equal(f->cfg.user_timeout_ms, 9000);
    /* explicit 0 means "kernel default", not "derive one" */
    assert_int_equal(PARSE(f, "--user-timeout", "0", "--keepalive-count", "9"), CFG_RUN);
    assert_int_equal(f->cfg.user_timeout_ms, 0);
}

static void
test_cfg_help_and_version(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "--help"), CFG_HELP);
    assert_int_equal(PARSE(f, "-h"), CFG_HELP);
    assert_int_equal(PARSE(f, "--max-line", "100", "-h"), CFG_HELP);
    assert_int_equal(PARSE(f, "--version"), CFG_VERSION);
    assert_int_equal(PARSE(f, "-V"), CFG_VERSION);
    assert_int_equal(PARSE(f, "-DV"), CFG_VERSION);
}

static void
test_cfg_listeners_repeat_in_order(void **state)
{
    struct fx *f = *state;
    const struct cfg_listen *l = f->cfg.listen;

    assert_int_equal(PARSE(f, "-c", "2323", "-e", "7", "--chat", "[::1]:2324", "--echo=localhost:0",
                           "--chat=127.0.0.1:2325"),
                     CFG_RUN);
    assert_int_equal(f->cfg.nlisten, 5);
    assert_int_equal(l[0].proto, CFG_PROTO_CHAT);
    assert_string_equal(l[0].host, "");
    assert_string_equal(l[0].port, "2323");
    assert_int_equal(l[1].proto, CFG_PROTO_ECHO);
    assert_string_equal(l[1].host, "");
    assert_string_equal(l[1].port, "7");
    assert_int_equal(l[2].proto, CFG_PROTO_CHAT);
    assert_string_equal(l[2].host, "::1");
    assert_string_equal(l[2].port, "2324");
    assert_int_equal(l[3].proto, CFG_PROTO_ECHO);
    assert_string_equal(l[3].host, "localhost");
    assert_string_equal(l[3].port, "0");
    assert_int_equal(l[4].proto, CFG_PROTO_CHAT);
    assert_string_equal(l[4].host, "127.0.0.1");
    assert_string_equal(l[4].port, "2325");
}

static void
test_cfg_too_many_listeners_rejected(void **state)
{
    struct fx *f = *state;
    const char *args[2 * CFG_LISTEN_MAX + 3];
    size_t i;

    for (i = 0; i < CFG_LISTEN_MAX; i++) {
        args[2 * i] = i % 2 ? "-e" : "-c";
        args[2 * i + 1] = "0";
    }
    args[2 * CFG_LISTEN_MAX] = NULL;
    assert_int_equal(fx_parse_v(f, args), CFG_RUN);
    assert_int_equal(f->cfg.nlisten, CFG_LISTEN_MAX);
    args[2 * CFG_LISTEN_MAX] = "--echo";
    args[2 * CFG_LISTEN_MAX + 1] = "9";
    args[2 * CFG_LISTEN_MAX + 2] = NULL;
    assert_int_equal(fx_parse_v(f, args), -EINVAL);
    assert_err(f, "--echo: ");
}

static void
test_cfg_short_options(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "-c", "1", "-e", "2", "-D", "-p", "/run/e.pid", "-l", "debug"),
                     CFG_RUN);
    assert_int_equal(f->cfg.nlisten, 2);
    assert_int_equal(f->cfg.listen[0].proto, CFG_PROTO_CHAT);
    assert_string_equal(f->cfg.listen[0].port, "1");
    assert_int_equal(f->cfg.listen[1].proto, CFG_PROTO_ECHO);
    assert_string_equal(f->cfg.listen[1].port, "2");
    assert_true(f->cfg.daemonize);
    assert_string_equal(f->cfg.pid_file, "/run/e.pid");
    assert_int_equal(f->cfg.log_level, LOG_DEBUG);
    /* clustered, and attached values */
    assert_int_equal(PARSE(f, "-Dlwarning", "-c9", "-p/tmp/x"), CFG_RUN);
    assert_true(f->cfg.daemonize);
    assert_int_equal(f->cfg.log_level, LOG_WARNING);
    assert_string_equal(f->cfg.listen[0].port, "9");
    assert_string_equal(f->cfg.pid_file, "/tmp/x");
}

static void
test_cfg_process_long_options(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "--daemonize", "--pid-file", "/run/p", "--log-level=notice"),
                     CFG_RUN);
    assert_true(f->cfg.daemonize);
    /* pid_file points into argv: no copy to free */
    assert_ptr_equal(f->cfg.pid_file, f->argv[3]);
    assert_int_equal(f->cfg.log_level, LOG_NOTICE);
    assert_int_equal(PARSE(f, "--pid-file="), -EINVAL);
    assert_err(f, "--pid-file: ");
}

static void
test_cfg_log_levels_map_to_syslog(void **state)
{
    static const struct {
        const char *word;
        int level;
    } map[] = {
        { "debug", LOG_DEBUG },     { "info", LOG_INFO }, { "notice", LOG_NOTICE },
        { "warning", LOG_WARNING }, { "error", LOG_ERR },
    };
    static const char *const bad[] = { "verbose", "", "INFO", "warn", "6", "info " };
    struct fx *f = *state;
    size_t i;

    for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        assert_int_equal(PARSE(f, "--log-level", map[i].word), CFG_RUN);
        assert_int_equal(f->cfg.log_level, map[i].level);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(PARSE(f, "-l", bad[i]), -EINVAL);
        assert_err(f, "--log-level: ");
    }
}

/* A first parse that fails in the middle of "-xD" leaves getopt pointing
 * into that cluster; the second parse must still start at its own argv[1]. */
static void
test_cfg_parse_twice_starts_afresh(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "--max-line", "100", "-xD", "-e", "5"), -EINVAL);
    assert_int_equal(PARSE(f, "-c", "7"), CFG_RUN);
    assert_int_equal(f->cfg.nlisten, 1);
    assert_string_equal(f->cfg.listen[0].port, "7");
    /* nothing from the first parse survives */
    assert_int_equal(f->cfg.max_line, 4096);
    assert_false(f->cfg.daemonize);
    assert_int_equal(PARSE(f, "--history", "3"), CFG_RUN);
    assert_int_equal(f->cfg.history, 3);
    assert_int_equal(f->cfg.nlisten, 0);
}

static void
test_cfg_listen_good_specs(void **state)
{
    static const struct {
        const char *spec, *host, *port;
    } good[] = {
        { "2323", "", "2323" },
        { "127.0.0.1:2323", "127.0.0.1", "2323" },
        { "[::1]:2323", "::1", "2323" },
        { "[::]:7", "::", "7" },
        { "localhost:2323", "localhost", "2323" },
        { "host.example:0", "host.example", "0" },
        { ":2323", "", "2323" },
        { "[::ffff:10.0.0.1]:65535", "::ffff:10.0.0.1", "65535" },
        { "[fe80::1%eth0]:7", "fe80::1%eth0", "7" },
        { "my-host:00080", "my-host", "80" },
    };
    struct cfg_listen l;
    char err[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        err[0] = '\0';
        if (cfg_parse_listen(good[i].spec, &l, err, sizeof(err)) != 0)
            fail_msg("\"%s\" rejected: %s", good[i].spec, err);
        assert_string_equal(l.host, good[i].host);
        assert_string_equal(l.port, good[i].port);
    }
}

static void
test_cfg_listen_bad_specs_rejected(void **state)
{
    static const char *const bad[] = {
        "",         ":",        "[::1]",       "::1:2323", "[::1",        "1.2.3.4:",
        "x:65536",  "x:-1",     "x:+1",        "x: 1",     "x:1x",        "localhost",
        "ho$t:7",   "a_b:7",    "h/x:7",       "[::1]x:7", "[::1]:",      "[]:7",
        "[::g]:7",  "[1:2]:7",  "[1.2.3.4]:7", "[::1%]:7", "[::1%a/b]:7", "x:99999999999999999999",
        "[::1]]:7", "[[::1]:7",
    };
    struct cfg_listen l;
    char err[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (cfg_parse_listen(bad[i], &l, err, sizeof(err)) != -EINVAL)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_true(strlen(err) > 0);
        assert_null(strchr(err, '\n'));
    }
}

static void
test_cfg_listen_host_too_long_rejected(void **state)
{
    struct cfg_listen l;
    char spec[CFG_HOST_MAX + 8], err[256];

    (void)state;
    /* CFG_HOST_MAX - 1 bytes fit */
    memset(spec, 'a', CFG_HOST_MAX - 1);
    strcpy(spec + CFG_HOST_MAX - 1, ":7");
    assert_int_equal(cfg_parse_listen(spec, &l, err, sizeof(err)), 0);
    assert_int_equal(strlen(l.host), CFG_HOST_MAX - 1);
    memset(spec, 'a', CFG_HOST_MAX);
    strcpy(spec + CFG_HOST_MAX, ":7");
    assert_int_equal(cfg_parse_listen(spec, &l, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "longer"));
}

static void
test_cfg_listen_unbracketed_ipv6_suggests_brackets(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "--echo", "::1:2323"), -EINVAL);
    assert_string_equal(f->err,
                        "--echo: \"::1:2323\": put an IPv6 address in brackets: \"[::1]:2323\"");
}

static void
test_cfg_listen_errors_name_the_flag(void **state)
{
    struct fx *f = *state;

    assert_int_equal(PARSE(f, "-c", "x:65536"), -EINVAL);
    assert_string_equal(f->err, "--chat: \"x:65536\": port is out of range 0..65535");
    assert_int_equal(PARSE(f, "-e", "[::1]"), -EINVAL);
    assert_err(f, "--echo: \"[::1]\": ");
    assert_int_equal(PARSE(f, "--chat="), -EINVAL);
    assert_err(f, "--chat: \"\": ");
}

/* Every option appears in --help, and every line fits a terminal. */
static void
test_cfg_usage_lists_every_option_within_80_columns(void **state)
{
    static const char *const opts[] = {
        "-c, --chat",         "-e, --echo",      "--keepalive-idle", "--keepalive-interval",
        "--keepalive-count",  "--no-keepalive",  "--user-timeout",   "--idle-timeout",
        "--max-clients",      "--max-per-ip",    "--max-line",       "--max-output",
        "--rate-limit",       "--history",       "--announce-max",   "--backlog",
        "--shutdown-timeout", "-D, --daemonize", "-p, --pid-file",   "-l, --log-level",
        "-h, --help",         "-V, --version",
    };
    const char *u = cfg_usage(), *p, *nl;
    char range[64];
    size_t i;

    (void)state;
    assert_non_null(u);
    assert_int_equal(u[strlen(u) - 1], '\n');
    for (p = u; *p != '\0'; p = nl + 1) {
        nl = strchr(p, '\n');
        assert_non_null(nl);
        if (nl - p > 79)
            fail_msg("usage line too long: %.*s", (int)(nl - p), p);
    }
    for (i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
        if (strstr(u, opts[i]) == NULL)
            fail_msg("usage lacks %s", opts[i]);
    for (i = 0; i < sizeof(num_opts) / sizeof(num_opts[0]); i++) {
        snprintf(range, sizeof(range), "%llu..%llu", num_opts[i].min, num_opts[i].max);
        if (strstr(u, range) == NULL)
            fail_msg("usage lacks range %s of %s", range, num_opts[i].name);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_cfg_defaults_match_spec),
        T(test_cfg_no_arguments_gives_defaults),
        T(test_cfg_numeric_options_accept_range_bounds),
        T(test_cfg_numeric_options_out_of_range_rejected),
        T(test_cfg_max_line_message_exact),
        T(test_cfg_numeric_malformed_values_rejected),
        T(test_cfg_not_a_number_message_exact),
        T(test_cfg_leading_zeros_are_decimal),
        T(test_cfg_missing_value_names_long_flag),
        T(test_cfg_unknown_long_option_quoted),
        T(test_cfg_unknown_short_option_quoted),
        T(test_cfg_ambiguous_abbreviation_rejected),
        T(test_cfg_unique_abbreviation_accepted),
        T(test_cfg_value_on_flag_without_value_rejected),
        T(test_cfg_stray_argument_rejected),
        T(test_cfg_control_bytes_in_value_escaped),
        T(test_cfg_long_value_shortened_in_message),
        T(test_cfg_small_error_buffer_truncated_safely),
        T(test_cfg_no_keepalive_clears_flag),
        T(test_cfg_no_keepalive_with_keepalive_option_rejected),
        T(test_cfg_max_output_below_max_line_rejected),
        T(test_cfg_user_timeout_derived_after_all_flags),
        T(test_cfg_user_timeout_derived_capped_at_int_max),
        T(test_cfg_user_timeout_explicit_wins),
        T(test_cfg_help_and_version),
        T(test_cfg_listeners_repeat_in_order),
        T(test_cfg_too_many_listeners_rejected),
        T(test_cfg_short_options),
        T(test_cfg_process_long_options),
        T(test_cfg_log_levels_map_to_syslog),
        T(test_cfg_parse_twice_starts_afresh),
        T(test_cfg_listen_good_specs),
        T(test_cfg_listen_bad_specs_rejected),
        T(test_cfg_listen_host_too_long_rejected),
        T(test_cfg_listen_unbracketed_ipv6_suggests_brackets),
        T(test_cfg_listen_errors_name_the_flag),
        T(test_cfg_usage_lists_every_option_within_80_columns),
#undef T
    };

    return cmocka_run_group_tests_name("cfg", tests, NULL, NULL);
}
