/*
 * Unit tests for the pure parts of the chat: splitting a line into a
 * command or a message, the line forms of SPEC section 5 (with their
 * sanitising), and the case-insensitive nick table. The protocol itself runs
 * against the real daemon in tests/integration/test_chat.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

/* Parse a C string. */
static enum chat_kind
parse(const char *s, struct chat_parsed *p)
{
    return chat_parse(s, strlen(s), p);
}

static void
assert_span(const char *p, size_t n, const char *want)
{
    assert_int_equal(n, strlen(want));
    if (n > 0)
        assert_memory_equal(p, want, n);
}

/* ---- chat_parse ---- */

static void
test_chat_parse_empty_and_blank_lines_are_empty(void **state)
{
    struct chat_parsed p;

    (void)state;
    assert_int_equal(chat_parse("", 0, &p), CHAT_EMPTY);
    assert_int_equal(parse("   ", &p), CHAT_EMPTY);
    assert_int_equal(parse(" \t ", &p), CHAT_EMPTY);
}

static void
test_chat_parse_plain_text_is_text_untrimmed(void **state)
{
    struct chat_parsed p;

    (void)state;
    assert_int_equal(parse("  hello world  ", &p), CHAT_TEXT);
    assert_span(p.arg, p.arg_len, "  hello world  ");
    assert_int_equal(p.name_len, 0);
}

static void
test_chat_parse_command_name_and_arg(void **state)
{
    struct chat_parsed p;

    (void)state;
    assert_int_equal(parse("/nick alice", &p), CHAT_COMMAND);
    assert_span(p.name, p.name_len, "nick");
    assert_span(p.arg, p.arg_len, "alice");
}

static void
test_chat_parse_command_arg_is_trimmed(void **state)
{
    struct chat_parsed p;

    (void)state;
    assert_int_equal(parse("/msg \t bob  hi there \t ", &p), CHAT_COMMAND);
    assert_span(p.name, p.name_len, "msg");
    assert_span(p.arg, p.arg_len, "bob  hi there");
}

static void
test_chat_parse_command_tab_ends_name(void **state)
{
    struct chat_parsed p;

    (void)state;
    assert_int_equal(parse("/join\tdev", &p), CHAT_COMMAND);
    assert_span(p.name, p.name_len, "join");
    assert_span(p.arg, p.arg_len, "dev");
}

static void
test_chat_parse_command_without_arg_has_empty_arg(void **state)
{
    struct chat_parsed p;

    (void)state;
    assert_int_equal(parse("/who", &p), CHAT_COMMAND);
    assert_span(p.name, p.name_len, "who");
    assert_int_equal(p.arg_len, 0);
    assert_int_equal(parse("/who   ", &p), CHAT_COMMAND);
    assert_span(p.name, p.name_len, "who");
    assert_int_equal(p.arg_len, 0);
}

static void
test_chat_parse_double_slash_is_text_without_one_slash(void **state)
{
    struct chat_parsed p;

    (void)state;
    assert_int_equal(parse("//nick is a command", &p), CHAT_TEXT);
    assert_span(p.arg, p.arg_len, "/nick is a command");
    assert_int_equal(parse("//", &p), CHAT_TEXT);
    assert_span(p.arg, p.arg_len, "/");
}

static void
test_chat_parse_lone_slash_is_command_with_empty_name(void **state)
{
    struct chat_parsed p;

    (void)state;
    assert_int_equal(parse("/", &p), CHAT_COMMAND);
    assert_int_equal(p.name_len, 0);
    assert_int_equal(p.arg_len, 0);
    assert_int_equal(parse("/ x", &p), CHAT_COMMAND);
    assert_int_equal(p.name_len, 0);
    assert_span(p.arg, p.arg_len, "x");
}

static void
test_chat_parse_leading_space_before_slash_is_text(void **state)
{
    struct chat_parsed p;

    (void)state;
    assert_int_equal(parse(" /nick x", &p), CHAT_TEXT);
    assert_span(p.arg, p.arg_len, " /nick x");
}

static void
test_chat_parse_respects_len_not_nul(void **state)
{
    struct chat_parsed p;

    (void)state;
    /* the line is not NUL-terminated: only the first 5 bytes count */
    assert_int_equal(chat_parse("/nickalice", 5, &p), CHAT_COMMAND);
    assert_span(p.name, p.name_len, "nick");
    assert_int_equal(p.arg_len, 0);
}

/* ---- chat_split_word ---- */

static void
test_chat_split_word_word_and_rest(void **state)
{
    const char *w, *r;
    size_t wn, rn;
    const char *s = "  bob \t hi  there  ";

    (void)state;
    chat_split_word(s, strlen(s), &w, &wn, &r, &rn);
    assert_span(w, wn, "bob");
    assert_span(r, rn, "hi  there");
}

static void
test_chat_split_word_single_word_has_empty_rest(void **state)
{
    const char *w, *r;
    size_t wn, rn;

    (void)state;
    chat_split_word("bob  ", 5, &w, &wn, &r, &rn);
    assert_span(w, wn, "bob");
    assert_int_equal(rn, 0);
    chat_split_word("   ", 3, &w, &wn, &r, &rn);
    assert_int_equal(wn, 0);
    assert_int_equal(rn, 0);
}

/* ---- chat_format ---- */

static void
assert_format(enum chat_form form, const char *nick, const char *text, const char *want)
{
    char out[CHAT_LINE_MAX(64)];
    size_t n;

    assert_true(strlen(text) <= 64);
    n = chat_format(out, form, nick, text, strlen(text));
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void
test_chat_format_every_form(void **state)
{
    (void)state;
    assert_format(CHAT_FORM_SAY, "alice", "hi there", "<alice> hi there\r\n");
    assert_format(CHAT_FORM_ACTION, "alice", "waves", "* alice waves\r\n");
    assert_format(CHAT_FORM_PRIVATE, "alice", "psst", "*alice* psst\r\n");
    assert_format(CHAT_FORM_PRIVATE_SENT, "bob", "psst", "-> *bob* psst\r\n");
}

static void
test_chat_format_forged_lines_keep_the_sender_first(void **state)
{
    (void)state;
    assert_format(CHAT_FORM_SAY, "alice", "*** fake", "<alice> *** fake\r\n");
    assert_format(CHAT_FORM_SAY, "alice", "<bob> hi", "<alice> <bob> hi\r\n");
    /* an embedded line break cannot start a second, forged line */
    assert_format(CHAT_FORM_SAY, "alice", "x\r\n*** fake", "<alice> x*** fake\r\n");
}

static void
test_chat_format_controls_removed_utf8_kept(void **state)
{
    (void)state;
    assert_format(CHAT_FORM_SAY, "a", "\x1b[2Jred\x7f\xc2\x9b!", "<a> [2Jred!\r\n");
    assert_format(CHAT_FORM_SAY, "a", "tab\there", "<a> tab\there\r\n");
    assert_format(CHAT_FORM_SAY, "a", "caf\xc3\xa9 \xe6\x97\xa5",
                  "<a> caf\xc3\xa9 \xe6\x97\xa5\r\n");
}

static void
test_chat_format_invalid_utf8_becomes_replacement(void **state)
{
    (void)state;
    assert_format(CHAT_FORM_SAY, "a", "x\xffy", "<a> x\xef\xbf\xbdy\r\n");
}

static void
test_chat_format_worst_case_fits_line_max(void **state)
{
    enum { N = 100 };
    char text[N];
    char *out = malloc(CHAT_LINE_MAX(N) + 16);
    const char *nick = "abcdefghijklmnopqrstuvwx"; /* TEXT_NAME_MAX long */
    size_t n;

    (void)state;
    assert_non_null(out);
    memset(text, 0xff, sizeof text); /* each byte becomes 3 */
    memset(out, 0x5a, CHAT_LINE_MAX(N) + 16);
    n = chat_format(out, CHAT_FORM_PRIVATE_SENT, nick, text, N);
    assert_int_equal(n, 4 + 24 + 2 + 3 * N + 2);
    assert_true(n <= CHAT_LINE_MAX(N));
    for (size_t i = CHAT_LINE_MAX(N); i < CHAT_LINE_MAX(N) + 16; i++)
        assert_int_equal((unsigned char)out[i], 0x5a);
    free(out);
}

/* ---- the nick table ---- */

struct nick_fixture {
    struct chat_nicks t;
    struct chat_nick n[2000];
};

static int
nick_setup(void **state)
{
    struct nick_fixture *f = calloc(1, sizeof *f);

    if (f == NULL || chat_nicks_init(&f->t) < 0)
        return -1;
    *state = f;
    return 0;
}

static int
nick_teardown(void **state)
{
    struct nick_fixture *f = *state;

    chat_nicks_fini(&f->t);
    free(f);
    return 0;
}

static void
add(struct nick_fixture *f, size_t i, const char *name)
{
    size_t n = strlen(name);

    assert_true(n <= TEXT_NAME_MAX);
    memcpy(f->n[i].name, name, n + 1);
    chat_nicks_add(&f->t, &f->n[i]);
}

static void
test_chat_nicks_find_ignores_case(void **state)
{
    struct nick_fixture *f = *state;

    add(f, 0, "Alice");
    add(f, 1, "bob");
    assert_ptr_equal(chat_nicks_find(&f->t, "alice"), &f->n[0]);
    assert_ptr_equal(chat_nicks_find(&f->t, "ALICE"), &f->n[0]);
    assert_ptr_equal(chat_nicks_find(&f->t, "Bob"), &f->n[1]);
    assert_null(chat_nicks_find(&f->t, "carol"));
    assert_null(chat_nicks_find(&f->t, "alic"));
    assert_int_equal(f->t.count, 2);
}

static void
test_chat_nicks_remove_frees_the_name(void **state)
{
    struct nick_fixture *f = *state;

    add(f, 0, "alice");
    add(f, 1, "bob");
    chat_nicks_remove(&f->t, &f->n[0]);
    assert_null(chat_nicks_find(&f->t, "alice"));
    assert_ptr_equal(chat_nicks_find(&f->t, "bob"), &f->n[1]);
    assert_int_equal(f->t.count, 1);
    add(f, 2, "ALICE");
    assert_ptr_equal(chat_nicks_find(&f->t, "alice"), &f->n[2]);
}

static void
test_chat_nicks_grow_keeps_every_nick(void **state)
{
    struct nick_fixture *f = *state;
    char name[32];
    size_t before = f->t.nbuckets;

    for (size_t i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "guest%zu", i);
        add(f, i, name);
    }
    assert_true(f->t.nbuckets > before);
    assert_true(f->t.nbuckets >= f->t.count / 2); /* chains stay short */
    for (size_t i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "GUEST%zu", i);
        assert_ptr_equal(chat_nicks_find(&f->t, name), &f->n[i]);
    }
    for (size_t i = 0; i < 2000; i += 2)
        chat_nicks_remove(&f->t, &f->n[i]);
    assert_int_equal(f->t.count, 1000);
    for (size_t i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "guest%zu", i);
        if (i % 2 == 0)
            assert_null(chat_nicks_find(&f->t, name));
        else
            assert_ptr_equal(chat_nicks_find(&f->t, name), &f->n[i]);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_parse_empty_and_blank_lines_are_empty),
        cmocka_unit_test(test_chat_parse_plain_text_is_text_untrimmed),
        cmocka_unit_test(test_chat_parse_command_name_and_arg),
        cmocka_unit_test(test_chat_parse_command_arg_is_trimmed),
        cmocka_unit_test(test_chat_parse_command_tab_ends_name),
        cmocka_unit_test(test_chat_parse_command_without_arg_has_empty_arg),
        cmocka_unit_test(test_chat_parse_double_slash_is_text_without_one_slash),
        cmocka_unit_test(test_chat_parse_lone_slash_is_command_with_empty_name),
        cmocka_unit_test(test_chat_parse_leading_space_before_slash_is_text),
        cmocka_unit_test(test_chat_parse_respects_len_not_nul),
        cmocka_unit_test(test_chat_split_word_word_and_rest),
        cmocka_unit_test(test_chat_split_word_single_word_has_empty_rest),
        cmocka_unit_test(test_chat_format_every_form),
        cmocka_unit_test(test_chat_format_forged_lines_keep_the_sender_first),
        cmocka_unit_test(test_chat_format_controls_removed_utf8_kept),
        cmocka_unit_test(test_chat_format_invalid_utf8_becomes_replacement),
        cmocka_unit_test(test_chat_format_worst_case_fits_line_max),
        cmocka_unit_test_setup_teardown(test_chat_nicks_find_ignores_case, nick_setup,
                                        nick_teardown),
        cmocka_unit_test_setup_teardown(test_chat_nicks_remove_frees_the_name, nick_setup,
                                        nick_teardown),
        cmocka_unit_test_setup_teardown(test_chat_nicks_grow_keeps_every_nick, nick_setup,
                                        nick_teardown),
    };

    return cmocka_run_group_tests_name("chat", tests, NULL, NULL);
}
