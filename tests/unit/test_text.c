/*
 * Unit tests for text.c: every single byte, every UTF-8 edge (overlong,
 * surrogate, past U+10FFFF, truncated, stray continuation), controls, the
 * invariants (output is valid UTF-8 without controls, sanitising twice
 * changes nothing) over generated input, and the name rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

#define FFFD "\xEF\xBF\xBD"

/*
 * An independent strict decoder for the checks: decode the code point the
 * long way, then reject by value (overlong for its length, surrogate, past
 * U+10FFFF) rather than by the lead-byte table text.c uses.
 */
static bool
valid_utf8_no_controls(const uint8_t *s, size_t n)
{
    static const uint32_t min_for_len[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    size_t i = 0;

    while (i < n) {
        uint8_t b = s[i];
        size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
        uint32_t cp;

        if (len == 0 || i + len > n)
            return false;
        cp = len == 1 ? b : (uint32_t)(b & (0x7F >> len));
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (len > 1 && cp < min_for_len[len])
            return false;
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return false;
        if ((cp < 0x20 && cp != '\t') || (cp >= 0x7F && cp <= 0x9F))
            return false;
        i += len;
    }
    return true;
}

/* Sanitize len bytes and compare with want (a string). */
static void
check(const char *in, size_t len, const char *want)
{
    char out[TEXT_SANITIZED_MAX(64) + 1];
    size_t n;

    assert_true(len <= 64);
    n = text_sanitize((const uint8_t *)in, len, out);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

#define CHECK(lit, want) check(lit, sizeof lit - 1, want)

static void
test_text_every_single_byte_class(void **state)
{
    (void)state;
    for (int b = 0; b < 256; b++) {
        char in[1] = { (char)b };
        char want[4];

        if (b == '\t' || (b >= 0x20 && b < 0x7F))
            want[0] = (char)b, want[1] = '\0'; /* printable ASCII and TAB stay */
        else if (b < 0x80)
            want[0] = '\0'; /* C0 and DEL go */
        else
            strcpy(want, FFFD); /* no byte >= 0x80 is UTF-8 on its own */
        check(in, 1, want);
    }
}

static void
test_text_valid_utf8_passes_byte_identical(void **state)
{
    static const char *ok[] = {
        "plain ascii ~!@#",
        "caf\xC3\xA9",                          /* é */
        "\xE6\x97\xA5\xE6\x9C\xAC",             /* 日本 */
        "\xF0\x9F\x98\x80",                     /* U+1F600 */
        "\xF4\x8F\xBF\xBF",                     /* U+10FFFF */
        "\xC2\xA0\xDF\xBF",                     /* U+00A0 U+07FF */
        "\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80", /* U+0800 U+D7FF U+E000 */
        "\xEF\xBF\xBD\xEF\xBF\xBF",             /* U+FFFD U+FFFF */
        "\xF0\x90\x80\x80\xF3\xBF\xBF\xBF",     /* U+10000 U+FFFFF */
        "tab\there",
    };

    (void)state;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        check(ok[i], strlen(ok[i]), ok[i]);
}

static void
test_text_controls_removed(void **state)
{
    (void)state;
    CHECK("a\x1b[31mred\x1b[0m", "a[31mred[0m");
    CHECK("bell\x07 del\x7f nul\0!", "bell del nul!");
    CHECK("\r\n\x08x", "x");
    /* C1 as code points: U+0080, U+0085 (NEL), U+009B (CSI), U+009F */
    CHECK("a\xC2\x80"
          "b\xC2\x85"
          "c\xC2\x9B"
          "d\xC2\x9F"
          "e",
          "abcde");
    CHECK("\xC2\xA0", "\xC2\xA0"); /* U+00A0 is the first after C1 */
}

static void
test_text_overlong_forms_replaced(void **state)
{
    (void)state;
    CHECK("\xC0\x80", FFFD FFFD);          /* NUL, 2 bytes */
    CHECK("\xC1\xBF", FFFD FFFD);          /* U+007F, 2 bytes */
    CHECK("\xE0\x80\x80", FFFD FFFD FFFD); /* E0 80..9F */
    CHECK("\xE0\x9F\xBF", FFFD FFFD FFFD);
    CHECK("\xF0\x80\x80\x80", FFFD FFFD FFFD FFFD); /* F0 80..8F */
    CHECK("\xF0\x8F\xBF\xBF", FFFD FFFD FFFD FFFD);
}

static void
test_text_surrogates_replaced(void **state)
{
    (void)state;
    CHECK("\xED\xA0\x80", FFFD FFFD FFFD);                            /* U+D800 */
    CHECK("\xED\xBF\xBF", FFFD FFFD FFFD);                            /* U+DFFF */
    CHECK("\xED\xA0\xBD\xED\xB8\x80", FFFD FFFD FFFD FFFD FFFD FFFD); /* CESU pair */
}

static void
test_text_past_max_code_point_replaced(void **state)
{
    (void)state;
    CHECK("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD); /* U+110000 */
    CHECK("\xF5\x80\x80\x80", FFFD FFFD FFFD FFFD);
    CHECK("\xF7\xBF\xBF\xBF", FFFD FFFD FFFD FFFD);
    CHECK("\xF8\x88\x80\x80\x80", FFFD FFFD FFFD FFFD FFFD); /* old 5-byte form */
    CHECK("\xFE\xFF", FFFD FFFD);
}

static void
test_text_truncated_sequences_one_replacement_each(void **state)
{
    (void)state;
    CHECK("\xC3", FFFD);
    CHECK("\xC3x", FFFD "x");
    CHECK("\xE6\x97", FFFD);
    CHECK("\xE6\x97x", FFFD "x");
    CHECK("\xF0\x9F\x98", FFFD);
    CHECK("\xF0\x9F\x98x", FFFD "x");
    CHECK("\xF0\x9Fx", FFFD "x");
    /* a new lead byte ends the broken sequence and starts its own */
    CHECK("\xE6\x97\xC3\xA9", FFFD "\xC3\xA9");
    CHECK("\xF0\x9F\x98\xF0\x9F\x98\x80", FFFD "\xF0\x9F\x98\x80");
}

static void
test_text_lone_continuation_bytes_replaced_each(void **state)
{
    (void)state;
    CHECK("\x80", FFFD);
    CHECK("a\x80\xBF"
          "b",
          "a" FFFD FFFD "b");
    CHECK("\xC3\xA9\xA9", "\xC3\xA9" FFFD); /* one continuation too many */
}

static void
test_text_unicode_table_3_8_example(void **state)
{
    (void)state;
    /* The example of Unicode 15 section 3.9, table 3-8 */
    CHECK("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64",
          "a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d");
}

/* Deterministic generator biased towards bytes that matter in UTF-8. */
static uint32_t
lcg(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static void
test_text_output_valid_and_idempotent_for_generated_input(void **state)
{
    static const uint8_t palette[] = { 0x00, 0x09, 0x0A, 0x1B, 0x20, 'a',  0x7F, 0x80, 0x85,
                                       0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF,
                                       0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF };
    uint32_t seed = 12345;
    uint8_t in[32];
    char once[TEXT_SANITIZED_MAX(32)];
    char twice[TEXT_SANITIZED_MAX(TEXT_SANITIZED_MAX(32))];

    (void)state;
    for (int iter = 0; iter < 200000; iter++) {
        size_t n = lcg(&seed) % (sizeof in + 1);
        size_t n1, n2;

        for (size_t i = 0; i < n; i++) {
            uint32_t r = lcg(&seed);
            in[i] = (r & 1) ? palette[(r >> 1) % sizeof palette] : (uint8_t)(r >> 1);
        }
        n1 = text_sanitize(in, n, once);
        assert_true(n1 <= TEXT_SANITIZED_MAX(n));
        assert_true(valid_utf8_no_controls((const uint8_t *)once, n1));
        n2 = text_sanitize((const uint8_t *)once, n1, twice);
        assert_int_equal(n2, n1);
        assert_memory_equal(twice, once, n1);
    }
}

static void
test_text_validator_rejects_what_it_must(void **state)
{
    /* the checker above must itself catch each class, or the invariant
     * test proves nothing */
    static const char *bad[] = { "\x01",         "\x7F",         "\xC2\x9B",         "\xC0\x80",
                                 "\xE0\x9F\xBF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\x80",
                                 "\xE6\x97" };

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(valid_utf8_no_controls((const uint8_t *)bad[i], strlen(bad[i])));
    assert_true(valid_utf8_no_controls((const uint8_t *)"\t\xF4\x8F\xBF\xBF", 5));
}

static void
test_text_name_lengths(void **state)
{
    const char *s = "abcdefghijklmnopqrstuvwxyz";

    (void)state;
    assert_false(text_is_name(s, 0));
    assert_true(text_is_name(s, 1));
    assert_true(text_is_name(s, TEXT_NAME_MAX));
    assert_false(text_is_name(s, TEXT_NAME_MAX + 1));
}

static void
test_text_name_every_character_class(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        char one[1] = { (char)c };
        char mid[3] = { 'a', (char)c, 'b' };
        bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';

        assert_int_equal(text_is_name(one, 1), want);
        assert_int_equal(text_is_name(mid, 3), want);
    }
    /* the length is what counts, not a NUL */
    assert_true(text_is_name("ab cd", 2));
    assert_false(text_is_name("ab cd", 3));
}

static void
test_text_name_eq_ignores_ascii_case_only(void **state)
{
    (void)state;
    assert_true(text_name_eq("Alice_-9", "aLICE_-9"));
    assert_true(text_name_eq("", ""));
    assert_false(text_name_eq("alice", "alicf"));
    assert_false(text_name_eq("ali", "alice"));
    assert_false(text_name_eq("alice", "ali"));
    /* pairs 0x20 apart that are not letters */
    assert_false(text_name_eq("[", "{"));
    assert_false(text_name_eq("@", "`"));
    assert_false(text_name_eq("_", "\x7F"));
}

static void
test_text_name_hash_ignores_case_and_spreads(void **state)
{
    enum { N = 2000 };
    uint32_t *h = malloc(N * sizeof *h);
    char name[16];
    size_t distinct_low = 0;
    bool seen[1024] = { false };

    (void)state;
    assert_non_null(h);
    assert_int_equal(text_name_hash("Lobby"), text_name_hash("lOBBY"));
    assert_int_equal(text_name_hash("A-b_9"), text_name_hash("a-B_9"));
    assert_int_not_equal(text_name_hash("lobby"), text_name_hash("lobbz"));
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "room%d", i);
        h[i] = text_name_hash(name);
        if (!seen[h[i] & 1023]) {
            seen[h[i] & 1023] = true;
            distinct_low++;
        }
    }
    /* similar names must still fill most of a 1024-bucket table */
    assert_true(distinct_low > 800);
    free(h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_every_single_byte_class),
        cmocka_unit_test(test_text_valid_utf8_passes_byte_identical),
        cmocka_unit_test(test_text_controls_removed),
        cmocka_unit_test(test_text_overlong_forms_replaced),
        cmocka_unit_test(test_text_surrogates_replaced),
        cmocka_unit_test(test_text_past_max_code_point_replaced),
        cmocka_unit_test(test_text_truncated_sequences_one_replacement_each),
        cmocka_unit_test(test_text_lone_continuation_bytes_replaced_each),
        cmocka_unit_test(test_text_unicode_table_3_8_example),
        cmocka_unit_test(test_text_validator_rejects_what_it_must),
        cmocka_unit_test(test_text_output_valid_and_idempotent_for_generated_input),
        cmocka_unit_test(test_text_name_lengths),
        cmocka_unit_test(test_text_name_every_character_class),
        cmocka_unit_test(test_text_name_eq_ignores_ascii_case_only),
        cmocka_unit_test(test_text_name_hash_ignores_case_and_spreads),
    };

    return cmocka_run_group_tests_name("text", tests, NULL, NULL);
}
