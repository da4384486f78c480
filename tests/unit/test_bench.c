/*
 * Unit tests for benchlib: the command line (and its loopback-only rule),
 * the chat token, percentiles, loss/reorder accounting, the echo pattern and
 * the /proc parsers. Everything here is pure; no sockets.
 */
#include "benchlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int
parse(struct bench_opts *o, int argc, const char *const *argv, char *err)
{
    return bench_opts_parse(o, argc, (char *const *)(uintptr_t)argv, err, 256);
}

static void
test_bench_opts_echo_rr_defaults(void **state)
{
    const char *argv[] = { "b", "echo-rr", "7000" };
    struct bench_opts o;
    char err[256];
    struct sockaddr_in *sa = (struct sockaddr_in *)&o.addr;

    (void)state;
    assert_int_equal(parse(&o, ARGC(argv), argv, err), 0);
    assert_int_equal(o.mode, BENCH_ECHO_RR);
    assert_int_equal(o.conns, 1);
    assert_int_equal(o.size, 64);
    assert_int_equal(o.pipeline, 1);
    assert_int_equal(o.duration_ms, BENCH_DURATION_DEFAULT_MS);
    assert_int_equal(sa->sin_family, AF_INET);
    assert_int_equal(ntohs(sa->sin_port), 7000);
    assert_int_equal(ntohl(sa->sin_addr.s_addr), INADDR_LOOPBACK);
}

static void
test_bench_opts_values_and_forms(void **state)
{
    const char *argv[] = { "b",   "-c", "50",   "echo-rr", "--size=128",    "-P", "4", "--duration",
                           "0.5", "-n", "1000", "-q",      "localhost:7001" };
    struct bench_opts o;
    char err[256];

    (void)state;
    assert_int_equal(parse(&o, ARGC(argv), argv, err), 0);
    assert_int_equal(o.conns, 50);
    assert_int_equal(o.size, 128);
    assert_int_equal(o.pipeline, 4);
    assert_int_equal(o.duration_ms, 500);
    assert_int_equal(o.count, 1000);
    assert_true(o.quiet);
}

static void
test_bench_opts_chat_defaults_to_window_one(void **state)
{
    const char *argv[] = { "b", "chat-fanout", "-r", "100", "7000" };
    const char *rated[] = { "b", "chat-fanout", "--rate", "2000", "7000" };
    struct bench_opts o;
    char err[256];

    (void)state;
    assert_int_equal(parse(&o, ARGC(argv), argv, err), 0);
    assert_int_equal(o.receivers, 100);
    assert_int_equal(o.senders, 1);
    assert_int_equal(o.window, 1);
    assert_int_equal(o.rate, 0);
    assert_int_equal(o.conns, 101);
    assert_int_equal(parse(&o, ARGC(rated), rated, err), 0);
    assert_int_equal(o.rate, 2000);
    assert_int_equal(o.window, 0);
}

static void
test_bench_opts_non_loopback_target_is_refused(void **state)
{
    static const char *const bad[] = { "10.0.0.1:7",         "192.168.1.1:7", "0.0.0.0:7",
                                       "[2001:db8::1]:7",    "[::]:7",        "example.com:7",
                                       "[::ffff:10.0.0.1]:7" };
    struct bench_opts o;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *argv[] = { "b", "echo-rr", bad[i] };

        err[0] = '\0';
        assert_int_equal(parse(&o, ARGC(argv), argv, err), -EINVAL);
        assert_non_null(strstr(err, "loopback"));
    }
}

static void
test_bench_opts_loopback_forms_are_accepted(void **state)
{
    static const char *const good[] = { "7", "localhost:7", "127.1.2.3:7", "[::1]:7",
                                        "[::ffff:127.0.0.1]:7" };
    struct bench_opts o;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *argv[] = { "b", "idle", good[i] };

        assert_int_equal(parse(&o, ARGC(argv), argv, err), 0);
        assert_true(bench_addr_is_loopback((const struct sockaddr *)&o.addr));
    }
}

static void
test_bench_opts_bad_port_is_refused(void **state)
{
    static const char *const bad[] = { "0", "65536", "abc", "127.0.0.1:", "::1:7", "-5" };
    struct bench_opts o;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *argv[] = { "b", "echo-rr", bad[i] };

        assert_int_equal(parse(&o, ARGC(argv), argv, err), -EINVAL);
    }
}

static void
test_bench_opts_bad_combinations_are_refused(void **state)
{
    static const char *const cases[][5] = {
        { "b", "echo-rr", "--half-close", "7", NULL }, /* bulk only */
        { "b", "echo-bulk", "-P", "4", "7" },          /* rr only */
        { "b", "idle", "--rate", "5", "7" },           /* chat only */
        { "b", "echo-rr", "-d", "601", "7" },          /* over the hard cap */
        { "b", "echo-rr", "-d", "0", "7" },            /* not positive */
        { "b", "echo-rr", "-c", "0", "7" },            /* no connections */
        { "b", "echo-rr", "-c", "12x", "7" },          /* not a number */
        { "b", "echo-rr", "--bogus", "7", NULL },      /* unknown option */
        { "b", "fly", "7", NULL, NULL },               /* unknown mode */
        { "b", "echo-rr", NULL, NULL, NULL },          /* no target */
        { "b", "echo-rr", "7", "8", NULL },            /* two targets */
        { "b", "echo-rr", "-c", NULL, NULL },          /* missing value */
        { "b", "echo-rr", "--size", "0", "7" },        /* empty message */
    };
    const char *both[] = { "b", "chat-fanout", "--rate", "5", "-w", "2", "7" };
    struct bench_opts o;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int argc = 0;

        while (argc < 5 && cases[i][argc])
            argc++;
        err[0] = '\0';
        assert_int_equal(parse(&o, argc, cases[i], err), -EINVAL);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(parse(&o, ARGC(both), both, err), -EINVAL);
    assert_non_null(strstr(err, "--rate"));
}

static void
test_bench_opts_help_skips_other_checks(void **state)
{
    const char *argv[] = { "b", "--help" };
    struct bench_opts o;
    char err[256];

    (void)state;
    assert_int_equal(parse(&o, ARGC(argv), argv, err), 0);
    assert_true(o.help);
}

static void
test_bench_token_round_trip(void **state)
{
    static const struct bench_token cases[] = {
        { 0, 0, 0 },
        { 7, 123456, 987654321 },
        { UINT32_MAX, UINT64_MAX, UINT64_MAX },
    };
    char buf[BENCH_TOKEN_MAX];
    struct bench_token t;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = bench_token_format(buf, sizeof(buf), &cases[i]);

        assert_true(n > 0);
        assert_int_equal(strlen(buf), n);
        memset(&t, 0xa5, sizeof(t));
        assert_int_equal(bench_token_find(buf, n, &t), 1);
        assert_int_equal(t.sender, cases[i].sender);
        assert_true(t.seq == cases[i].seq);
        assert_true(t.t_us == cases[i].t_us);
    }
}

static void
test_bench_token_found_after_any_prefix(void **state)
{
    const char *line = "<guest12> hello #b:3:41:5000#xxxxxxxx\r";
    struct bench_token t;

    (void)state;
    assert_int_equal(bench_token_find(line, strlen(line), &t), 1);
    assert_int_equal(t.sender, 3);
    assert_int_equal(t.seq, 41);
    assert_int_equal(t.t_us, 5000);
}

static void
test_bench_token_absent_is_zero(void **state)
{
    const char *line = "*** welcome to echochat, you are guest1 in lobby";
    struct bench_token t;

    (void)state;
    assert_int_equal(bench_token_find(line, strlen(line), &t), 0);
    assert_int_equal(bench_token_find("", 0, &t), 0);
}

static void
test_bench_token_garbage_is_badmsg(void **state)
{
    static const char *const bad[] = {
        "#b:1:x:3#",          "#b:1:2#",
        "#b:1:2:3",           "#b::2:3#",
        "#b:1:2:3x",          "#b:-1:2:3#",
        "#b:1 :2:3#",         "x #b:",
        "#b:4294967296:1:1#", "#b:1:99999999999999999999:1#", /* 20 digits, over UINT64_MAX */
    };
    struct bench_token t;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(bench_token_find(bad[i], strlen(bad[i]), &t), -EBADMSG);
}

static void
test_bench_token_length_bound_is_respected(void **state)
{
    /* the valid token sits past n: it must not be read */
    const char *line = "#b:1:2:3#";
    struct bench_token t;
    char small[8];
    struct bench_token big = { 1, 2, 3 };

    (void)state;
    assert_int_equal(bench_token_find(line, 8, &t), -EBADMSG);
    assert_int_equal(bench_token_format(small, sizeof(small), &big), 0);
}

static void
test_bench_token_mangled_then_valid_is_found(void **state)
{
    const char *line = "#b:9:zz #b:2:5:6#";
    struct bench_token t;

    (void)state;
    assert_int_equal(bench_token_find(line, strlen(line), &t), 1);
    assert_int_equal(t.sender, 2);
    assert_int_equal(t.seq, 5);
}

static void
test_bench_sync_round_trip(void **state)
{
    char buf[BENCH_TOKEN_MAX];
    uint64_t v = 0;
    size_t n = bench_sync_format(buf, sizeof(buf), 1234567);
    const char *line = "<guest1> #s:1234567#";

    (void)state;
    assert_int_equal(bench_sync_find(buf, n, &v), 1);
    assert_int_equal(v, 1234567);
    v = 0;
    assert_int_equal(bench_sync_find(line, strlen(line), &v), 1);
    assert_int_equal(v, 1234567);
    assert_int_equal(bench_sync_find("#s:12", 5, &v), -EBADMSG);
    assert_int_equal(bench_sync_find("#b:1:2:3#", 9, &v), 0);
}

static int
hist_setup(void **state)
{
    struct bench_hist *h = malloc(sizeof(*h));

    if (!h)
        return -1;
    bench_hist_init(h);
    *state = h;
    return 0;
}

static int
hist_teardown(void **state)
{
    free(*state);
    return 0;
}

static void
test_bench_hist_small_values_are_exact(void **state)
{
    struct bench_hist *h = *state;

    /* 100..1 in reverse: order of insertion must not matter */
    for (uint64_t v = 100; v >= 1; v--)
        bench_hist_add(h, v);
    assert_int_equal(bench_hist_pct(h, 50), 50);
    assert_int_equal(bench_hist_pct(h, 99), 99);
    assert_int_equal(bench_hist_pct(h, 99.9), 100);
    assert_int_equal(bench_hist_pct(h, 100), 100);
    assert_int_equal(bench_hist_pct(h, 1), 1);
    assert_int_equal(bench_hist_pct(h, 0.5), 1);
    assert_int_equal(h->n, 100);
    assert_int_equal(h->sum, 5050);
}

static void
test_bench_hist_skewed_array_nearest_rank(void **state)
{
    struct bench_hist *h = *state;

    /* 990 samples of 10 and 10 of 90: p99 is 10 (rank 990), p99.9 is 90 */
    for (int i = 0; i < 990; i++)
        bench_hist_add(h, 10);
    for (int i = 0; i < 10; i++)
        bench_hist_add(h, 90);
    assert_int_equal(bench_hist_pct(h, 50), 10);
    assert_int_equal(bench_hist_pct(h, 99), 10);
    assert_int_equal(bench_hist_pct(h, 99.1), 90);
    assert_int_equal(bench_hist_pct(h, 99.9), 90);
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void
test_bench_hist_large_values_within_one_percent(void **state)
{
    struct bench_hist *h = *state;
    static const double pcts[] = { 1, 10, 50, 90, 99, 99.9 };
    uint64_t v[10000], x = 88172645463325252ull;

    for (size_t i = 0; i < 10000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[i] = 200 + x % 5000000; /* 200 us .. 5 s */
        bench_hist_add(h, v[i]);
    }
    qsort(v, 10000, sizeof(v[0]), cmp_u64);
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        uint64_t want = v[(size_t)(pcts[i] * 100.0 + 0.5) - 1]; /* rank ceil(p*n/100) */
        uint64_t got = bench_hist_pct(h, pcts[i]);
        double err = got > want ? (double)(got - want) : (double)(want - got);

        assert_true(err <= (double)want * 0.01);
    }
    assert_int_equal(bench_hist_pct(h, 100), v[9999]);
}

static void
test_bench_hist_empty_is_zero(void **state)
{
    struct bench_hist *h = *state;

    assert_int_equal(bench_hist_pct(h, 50), 0);
    bench_hist_add(h, 123456789);
    assert_int_equal(bench_hist_pct(h, 50), 123456789); /* clipped to min/max */
}

static void
test_bench_seq_in_order_has_no_loss(void **state)
{
    struct bench_seq s = { 0 };
    struct bench_tally t = { 0 };

    (void)state;
    for (uint64_t i = 0; i < 1000; i++)
        bench_seq_note(&s, i, &t);
    bench_seq_finish(&s, 1000, &t);
    assert_int_equal(t.delivered, 1000);
    assert_int_equal(t.lost, 0);
    assert_int_equal(t.reordered, 0);
}

static void
test_bench_seq_gap_counts_lost(void **state)
{
    struct bench_seq s = { 0 };
    struct bench_tally t = { 0 };

    (void)state;
    bench_seq_note(&s, 0, &t);
    bench_seq_note(&s, 1, &t);
    bench_seq_note(&s, 5, &t); /* 2, 3, 4 missing */
    bench_seq_finish(&s, 6, &t);
    assert_int_equal(t.delivered, 3);
    assert_int_equal(t.lost, 3);
    assert_int_equal(t.reordered, 0);
}

static void
test_bench_seq_late_arrival_is_reordered_not_lost(void **state)
{
    struct bench_seq s = { 0 };
    struct bench_tally t = { 0 };

    (void)state;
    bench_seq_note(&s, 0, &t);
    bench_seq_note(&s, 2, &t);
    bench_seq_note(&s, 1, &t); /* fills the gap late */
    bench_seq_note(&s, 3, &t);
    bench_seq_finish(&s, 4, &t);
    assert_int_equal(t.delivered, 4);
    assert_int_equal(t.lost, 0);
    assert_int_equal(t.reordered, 1);
}

static void
test_bench_seq_missing_tail_is_lost(void **state)
{
    struct bench_seq s = { 0 };
    struct bench_tally t = { 0 };

    (void)state;
    bench_seq_note(&s, 0, &t);
    bench_seq_note(&s, 1, &t);
    bench_seq_finish(&s, 10, &t);
    assert_int_equal(t.lost, 8);
    bench_seq_finish(&(struct bench_seq){ 0 }, 0, &t); /* nothing sent, nothing owed */
    assert_int_equal(t.lost, 8);
}

static void
test_bench_pattern_detects_a_changed_byte(void **state)
{
    struct bench_pattern p, q;
    uint8_t got[4096];

    (void)state;
    assert_int_equal(bench_pattern_init(&p, 1021, 4096, 42), 0);
    /* any window, also one wrapping past the period, matches the stream */
    for (uint64_t off = 0; off < 3000; off += 509) {
        for (size_t i = 0; i < sizeof(got); i++)
            got[i] = p.data[(off + i) % 1021];
        assert_int_equal(bench_pattern_check(&p, off, got, sizeof(got)), sizeof(got));
        got[777] ^= 1;
        assert_int_equal(bench_pattern_check(&p, off, got, sizeof(got)), 777);
    }
    /* shifted by one byte: differs almost at once */
    memcpy(got, bench_pattern_at(&p, 1), 100);
    assert_true(bench_pattern_check(&p, 0, got, 100) < 8);
    /* another seed, another stream */
    assert_int_equal(bench_pattern_init(&q, 1021, 64, 43), 0);
    assert_true(bench_pattern_check(&p, 0, q.data, 64) < 8);
    bench_pattern_fini(&p);
    bench_pattern_fini(&q);
}

static void
test_bench_parse_proc_stat_and_statm(void **state)
{
    const char *stat = "4242 (a) (weird) name) S 1 4242 4242 0 -1 4194560 120 0 0 0 "
                       "250 75 0 0 20 0 1 0 100 12345678 300 18446744073709551615";
    uint64_t v = 0;

    (void)state;
    assert_int_equal(bench_parse_stat_ticks(stat, &v), 0);
    assert_int_equal(v, 325);
    assert_int_equal(bench_parse_stat_ticks("garbage", &v), -EINVAL);
    assert_int_equal(bench_parse_statm_rss("2000 517 300 10 0 200 0\n", &v), 0);
    assert_int_equal(v, 517);
    assert_int_equal(bench_parse_statm_rss("x", &v), -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bench_opts_echo_rr_defaults),
        cmocka_unit_test(test_bench_opts_values_and_forms),
        cmocka_unit_test(test_bench_opts_chat_defaults_to_window_one),
        cmocka_unit_test(test_bench_opts_non_loopback_target_is_refused),
        cmocka_unit_test(test_bench_opts_loopback_forms_are_accepted),
        cmocka_unit_test(test_bench_opts_bad_port_is_refused),
        cmocka_unit_test(test_bench_opts_bad_combinations_are_refused),
        cmocka_unit_test(test_bench_opts_help_skips_other_checks),
        cmocka_unit_test(test_bench_token_round_trip),
        cmocka_unit_test(test_bench_token_found_after_any_prefix),
        cmocka_unit_test(test_bench_token_absent_is_zero),
        cmocka_unit_test(test_bench_token_garbage_is_badmsg),
        cmocka_unit_test(test_bench_token_length_bound_is_respected),
        cmocka_unit_test(test_bench_token_mangled_then_valid_is_found),
        cmocka_unit_test(test_bench_sync_round_trip),
        cmocka_unit_test_setup_teardown(test_bench_hist_small_values_are_exact, hist_setup,
                                        hist_teardown),
        cmocka_unit_test_setup_teardown(test_bench_hist_skewed_array_nearest_rank, hist_setup,
                                        hist_teardown),
        cmocka_unit_test_setup_teardown(test_bench_hist_large_values_within_one_percent, hist_setup,
                                        hist_teardown),
        cmocka_unit_test_setup_teardown(test_bench_hist_empty_is_zero, hist_setup, hist_teardown),
        cmocka_unit_test(test_bench_seq_in_order_has_no_loss),
        cmocka_unit_test(test_bench_seq_gap_counts_lost),
        cmocka_unit_test(test_bench_seq_late_arrival_is_reordered_not_lost),
        cmocka_unit_test(test_bench_seq_missing_tail_is_lost),
        cmocka_unit_test(test_bench_pattern_detects_a_changed_byte),
        cmocka_unit_test(test_bench_parse_proc_stat_and_statm),
    };

    return cmocka_run_group_tests_name("bench", tests, NULL, NULL);
}
