/*
 * Unit tests for line.c: every line ending, every split of a stream into
 * reads, overlong lines discarded with bounded memory and reported in
 * order, end of stream, and no heap held once the queue is drained.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "line.h"

#define MAX 64

static int
setup(void **state)
{
    struct line_reader *lr = malloc(sizeof *lr);

    assert_non_null(lr);
    line_init(lr, MAX);
    *state = lr;
    return 0;
}

static int
teardown(void **state)
{
    struct line_reader *lr = *state;

    line_fini(lr);
    free(lr);
    return 0;
}

static int
feed(struct line_reader *lr, const char *s)
{
    return line_feed(lr, s, strlen(s));
}

/* Take every queued entry: a line becomes "[text]", an overlong mark "!".
 * Returns the bytes written to out (lines may hold NUL bytes). */
static size_t
drain(struct line_reader *lr, char *out, size_t cap)
{
    const uint8_t *line;
    size_t len, w = 0;
    int rc;

    while ((rc = line_next(lr, &line, &len)) != 0) {
        if (rc == -EMSGSIZE) {
            assert_true(w + 1 <= cap);
            out[w++] = '!';
            continue;
        }
        assert_int_equal(rc, 1);
        assert_true(w + len + 2 <= cap);
        out[w++] = '[';
        memcpy(out + w, line, len);
        w += len;
        out[w++] = ']';
    }
    assert_int_equal(line_queued(lr), 0);
    return w;
}

static void
assert_drains_to_n(struct line_reader *lr, const char *want, size_t wn)
{
    char got[4096];
    size_t n = drain(lr, got, sizeof got);

    assert_int_equal(n, wn);
    assert_memory_equal(got, want, n);
}

static void
assert_drains_to(struct line_reader *lr, const char *want)
{
    assert_drains_to_n(lr, want, strlen(want));
}

static void
test_line_reader_fits_in_16_bytes(void **state)
{
    (void)state;
    assert_true(sizeof(struct line_reader) <= 16);
}

static void
test_line_each_ending_ends_a_line(void **state)
{
    struct line_reader *lr = *state;

    assert_int_equal(feed(lr, "lf\n"), 1);
    assert_int_equal(feed(lr, "crlf\r\n"), 2);
    assert_int_equal(line_feed(lr, "crnul\r\0", 7), 3);
    assert_int_equal(feed(lr, "cr\r"), 4);
    assert_drains_to(lr, "[lf][crlf][crnul][cr]");
}

static void
test_line_cr_then_other_byte_starts_next_line(void **state)
{
    struct line_reader *lr = *state;

    assert_int_equal(feed(lr, "a\rb"), 1);
    assert_drains_to(lr, "[a]");
    assert_int_equal(line_finish(lr), 1);
    assert_drains_to(lr, "[b]");
}

static void
test_line_cr_then_lf_in_next_read_is_one_line(void **state)
{
    struct line_reader *lr = *state;

    assert_int_equal(feed(lr, "a\r"), 1);
    assert_int_equal(feed(lr, "\n"), 1);
    assert_drains_to(lr, "[a]");
    assert_int_equal(feed(lr, "b\n"), 1);
    assert_drains_to(lr, "[b]");
}

static void
test_line_cr_then_nul_in_next_read_is_one_line(void **state)
{
    struct line_reader *lr = *state;

    assert_int_equal(feed(lr, "a\r"), 1);
    assert_int_equal(line_feed(lr, "\0", 1), 1);
    assert_int_equal(feed(lr, "b\n"), 2);
    assert_drains_to(lr, "[a][b]");
}

static void
test_line_cr_then_other_in_next_read_starts_line(void **state)
{
    struct line_reader *lr = *state;

    assert_int_equal(feed(lr, "a\r"), 1);
    assert_drains_to(lr, "[a]");
    assert_int_equal(feed(lr, "b\n"), 1);
    assert_drains_to(lr, "[b]");
}

static void
test_line_cr_cr_is_two_endings(void **state)
{
    struct line_reader *lr = *state;

    assert_int_equal(feed(lr, "a\r"), 1);
    assert_int_equal(feed(lr, "\r\n"), 2);
    assert_drains_to(lr, "[a][]");
}

static void
test_line_empty_lines_have_length_zero(void **state)
{
    struct line_reader *lr = *state;
    const uint8_t *line;
    size_t len = 99;

    assert_int_equal(feed(lr, "\n\r\n\r\0"), 3);
    assert_int_equal(line_next(lr, &line, &len), 1);
    assert_int_equal(len, 0);
    assert_drains_to(lr, "[][]");
}

static void
test_line_nul_inside_line_is_kept(void **state)
{
    struct line_reader *lr = *state;

    assert_int_equal(line_feed(lr, "a\0b\n", 4), 1);
    assert_drains_to_n(lr, "[a\0b]", 5);
}

/* One stream with every ending, telnet sequences (one hiding a LF inside a
 * subnegotiation) and an overlong line; every split must frame it alike. */
static const char split_stream[] =
    "one\r\ntwo\nthr\xff\xfb\x01"
    "ee\r\0four\rfive\n\n\xff\xfa\x18\n\xff\xf0six\r"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "\r\nlast";
static const char split_want[] = "[one][two][three][four][five][][six]![last]";

static void
test_line_stream_split_at_every_pair_of_points_same_lines(void **state)
{
    size_t n = sizeof split_stream - 1;

    (void)state;
    for (size_t i = 0; i <= n; i++) {
        for (size_t j = i; j <= n; j++) {
            struct line_reader lr;

            line_init(&lr, MAX);
            assert_true(line_feed(&lr, split_stream, i) >= 0);
            assert_true(line_feed(&lr, split_stream + i, j - i) >= 0);
            assert_true(line_feed(&lr, split_stream + j, n - j) >= 0);
            assert_int_equal(line_finish(&lr), 9);
            assert_drains_to(&lr, split_want);
            assert_null(lr.q);
            line_fini(&lr);
        }
    }
}

static void
test_line_stream_byte_at_a_time_drained_as_it_goes(void **state)
{
    struct line_reader *lr = *state;
    size_t n = sizeof split_stream - 1;
    char got[256];
    size_t w = 0;

    for (size_t i = 0; i < n; i++) {
        assert_true(line_feed(lr, split_stream + i, 1) >= 0);
        w += drain(lr, got + w, sizeof got - w);
    }
    assert_int_equal(line_finish(lr), 1);
    w += drain(lr, got + w, sizeof got - w);
    assert_int_equal(w, strlen(split_want));
    assert_memory_equal(got, split_want, w);
}

static void
test_line_many_lines_in_one_read_in_order(void **state)
{
    struct line_reader *lr = *state;
    char in[8000], want[8000], got[8000];
    size_t n = 0, wn = 0;

    for (int i = 0; i < 500; i++) {
        n += (size_t)sprintf(in + n, "L%d\r\n", i);
        wn += (size_t)sprintf(want + wn, "[L%d]", i);
    }
    assert_int_equal(line_feed(lr, in, n), 500);
    assert_int_equal(line_queued(lr), 500);
    assert_int_equal(drain(lr, got, sizeof got), wn);
    assert_memory_equal(got, want, wn);
}

static void
test_line_queued_counts_down_as_taken(void **state)
{
    struct line_reader *lr = *state;
    const uint8_t *line;
    size_t len;

    assert_int_equal(feed(lr, "a\nb\nc"), 2);
    assert_int_equal(line_next(lr, &line, &len), 1);
    assert_int_equal(line_queued(lr), 1);
    assert_int_equal(feed(lr, "\n"), 2); /* the taken "a" no longer counts */
    assert_drains_to(lr, "[b][c]");
}

static void
test_line_exactly_max_kept_one_more_discarded(void **state)
{
    struct line_reader *lr = *state;
    char in[3 * MAX], want[2 * MAX];

    memset(in, 'm', MAX);
    strcpy(in + MAX, "\r\n");
    assert_int_equal(feed(lr, in), 1);
    want[0] = '[';
    memset(want + 1, 'm', MAX);
    strcpy(want + 1 + MAX, "]");
    assert_drains_to(lr, want);

    memset(in, 'm', MAX + 1);
    strcpy(in + MAX + 1, "\n");
    assert_int_equal(feed(lr, in), 1);
    assert_drains_to(lr, "!");
}

static void
test_line_overlong_then_good_line_in_one_read(void **state)
{
    struct line_reader *lr = *state;
    char in[4 * MAX];

    strcpy(in, "before\n");
    memset(in + 7, 'x', 2 * MAX);
    strcpy(in + 7 + 2 * MAX, "\nafter\n");
    assert_int_equal(feed(lr, in), 3);
    assert_drains_to(lr, "[before]![after]");
    assert_null(lr->q);
}

/*
 * A 100 kB line in 64-byte reads, with max far below it: memory never
 * passes max plus one read, and the mark arrives when the line ends.
 */
static void
test_line_overlong_streamed_memory_stays_bounded(void **state)
{
    enum { BIG_MAX = 960, READ = 64 };
    struct line_reader *lr = *state;
    char chunk[READ];

    line_fini(lr);
    line_init(lr, BIG_MAX);
    memset(chunk, 'y', sizeof chunk);
    for (int i = 0; i < 100000 / READ; i++) {
        assert_int_equal(line_feed(lr, chunk, sizeof chunk), 0);
        assert_true(lr->q == NULL || lr->q->b.cap <= BIG_MAX + READ);
        assert_true(lr->q == NULL || lr->q->b.len <= BIG_MAX);
        if ((size_t)(i + 1) * READ > BIG_MAX)
            assert_null(lr->q); /* discarding, nothing queued: no memory */
    }
    assert_int_equal(feed(lr, "\r\nok\n"), 2);
    assert_drains_to(lr, "![ok]");
    assert_null(lr->q);
}

static void
test_line_finish_with_partial_makes_a_line(void **state)
{
    struct line_reader *lr = *state;

    assert_int_equal(feed(lr, "a\nend"), 1);
    assert_int_equal(line_finish(lr), 2);
    assert_drains_to(lr, "[a][end]");
    assert_null(lr->q);
}

static void
test_line_finish_without_partial_adds_nothing(void **state)
{
    struct line_reader *lr = *state;

    assert_int_equal(line_finish(lr), 0);
    assert_int_equal(feed(lr, "a\r"), 1);
    assert_int_equal(line_finish(lr), 1); /* the CR already ended it */
    assert_drains_to(lr, "[a]");
    assert_null(lr->q);
}

static void
test_line_finish_with_overlong_partial_makes_a_mark(void **state)
{
    struct line_reader *lr = *state;
    char in[2 * MAX];

    memset(in, 'z', sizeof in - 1);
    in[sizeof in - 1] = '\0';
    assert_int_equal(feed(lr, in), 0);
    assert_int_equal(line_finish(lr), 1);
    assert_drains_to(lr, "!");
}

static void
test_line_drained_queue_holds_no_memory(void **state)
{
    struct line_reader *lr = *state;

    assert_int_equal(feed(lr, "a\nb\nc"), 2);
    assert_drains_to(lr, "[a][b]");
    assert_non_null(lr->q); /* "c" is still partial */
    assert_non_null(lr->q->b.data);
    assert_int_equal(feed(lr, "\n"), 1);
    assert_drains_to(lr, "[c]");
    assert_null(lr->q);
}

static void
test_line_loop_on_queued_leaves_no_memory(void **state)
{
    struct line_reader *lr = *state;
    const uint8_t *line;
    size_t len;
    int taken = 0;

    assert_int_equal(feed(lr, "a\nb\n"), 2);
    while (line_queued(lr) > 0) {
        assert_int_equal(line_next(lr, &line, &len), 1);
        assert_int_equal(len, 1);
        assert_int_equal(line[0], taken ? 'b' : 'a');
        taken++;
    }
    assert_int_equal(taken, 2);
    assert_null(lr->q);
}

static void
test_line_read_of_only_telnet_or_ending_allocates_nothing(void **state)
{
    struct line_reader *lr = *state;

    assert_int_equal(feed(lr, "\xff\xfd\x01\xff\xf1"), 0);
    assert_null(lr->q);
    assert_int_equal(feed(lr, "a\r"), 1);
    assert_drains_to(lr, "[a]");
    assert_int_equal(feed(lr, "\n"), 0);
    assert_null(lr->q);
}

static void
test_line_max_zero_keeps_only_empty_lines(void **state)
{
    struct line_reader *lr = *state;

    line_fini(lr);
    line_init(lr, 0);
    assert_int_equal(feed(lr, "\na\n\n"), 3);
    assert_drains_to(lr, "[]![]");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_reader_fits_in_16_bytes),
        cmocka_unit_test_setup_teardown(test_line_each_ending_ends_a_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_cr_then_other_byte_starts_next_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_line_cr_then_lf_in_next_read_is_one_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_line_cr_then_nul_in_next_read_is_one_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_line_cr_then_other_in_next_read_starts_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_line_cr_cr_is_two_endings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_empty_lines_have_length_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_nul_inside_line_is_kept, setup, teardown),
        cmocka_unit_test(test_line_stream_split_at_every_pair_of_points_same_lines),
        cmocka_unit_test_setup_teardown(test_line_stream_byte_at_a_time_drained_as_it_goes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_line_many_lines_in_one_read_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_queued_counts_down_as_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_exactly_max_kept_one_more_discarded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_line_overlong_then_good_line_in_one_read, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_line_overlong_streamed_memory_stays_bounded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_line_finish_with_partial_makes_a_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_line_finish_without_partial_adds_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_line_finish_with_overlong_partial_makes_a_mark, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_line_drained_queue_holds_no_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_loop_on_queued_leaves_no_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_read_of_only_telnet_or_ending_allocates_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_max_zero_keeps_only_empty_lines, setup, teardown),
    };

    return cmocka_run_group_tests_name("line", tests, NULL, NULL);
}
