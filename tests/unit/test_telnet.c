/*
 * Unit tests for telnet.c: every kind of IAC sequence is removed, data
 * around it survives, and the result does not depend on where the stream
 * is split into reads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "telnet.h"

#define IAC  255
#define DONT 254
#define DO   253
#define WONT 252
#define WILL 251
#define SB   250
#define SE   240

/* A stream mixing every sequence kind with data, and the data alone. */
static const uint8_t mixed[] = {
    'h',  'i',  IAC,  241,  ' ', /* NOP */
    IAC,  WILL, 1,    'a',  IAC, WONT, 3,   'b', IAC, DO,  24,   'c',  IAC, DONT, 31,
    'd',                                                                               /* options */
    IAC,  SB,   24,   0,    'x', IAC,  IAC, 'y', IAC, SE,  'e',                        /* SB */
    IAC,  IAC,  'f',  IAC,  244, IAC,  246, 'g', IAC, 249, '\r', '\n', IAC, 242,  'k', /* cmds */
    0xC3, 0xA9, '\r', '\0',
};
static const char mixed_out[] = "hi abcdefg\r\nk\xC3\xA9\r";
/* mixed_out is a string literal: its final NUL is part of the stream */
#define MIXED_OUT_LEN sizeof mixed_out

static int
setup(void **state)
{
    static struct telnet t;

    telnet_init(&t);
    *state = &t;
    return 0;
}

/* Strip a whole buffer in one call into a fresh output array. */
static size_t
strip(struct telnet *t, const uint8_t *in, size_t n, uint8_t *out)
{
    memset(out, 0xAA, n);
    return telnet_strip(t, in, n, out);
}

static void
test_telnet_plain_bytes_pass_unchanged(void **state)
{
    struct telnet *t = *state;
    uint8_t in[255], out[255];

    for (int i = 0; i < 255; i++)
        in[i] = (uint8_t)i; /* every byte but IAC */
    assert_int_equal(strip(t, in, sizeof in, out), sizeof in);
    assert_memory_equal(out, in, sizeof in);
}

static void
test_telnet_two_byte_commands_removed(void **state)
{
    struct telnet *t = *state;
    /* SE (stray), NOP, DM, BRK, IP, AO, AYT, EC, EL, GA */
    for (int cmd = 240; cmd <= 249; cmd++) {
        uint8_t in[] = { 'a', IAC, (uint8_t)cmd, 'b' };
        uint8_t out[sizeof in];

        assert_int_equal(strip(t, in, sizeof in, out), 2);
        assert_memory_equal(out, "ab", 2);
    }
}

static void
test_telnet_option_negotiation_removed(void **state)
{
    struct telnet *t = *state;

    for (int verb = WILL; verb <= DONT; verb++) {
        /* the option byte is swallowed whatever it is, even IAC or LF */
        const uint8_t opts[] = { 0, 1, 24, '\n', IAC };

        for (size_t i = 0; i < sizeof opts; i++) {
            uint8_t in[] = { 'a', IAC, (uint8_t)verb, opts[i], 'b' };
            uint8_t out[sizeof in];

            assert_int_equal(strip(t, in, sizeof in, out), 2);
            assert_memory_equal(out, "ab", 2);
        }
    }
}

static void
test_telnet_subnegotiation_removed_with_contents(void **state)
{
    struct telnet *t = *state;
    /* NAWS-like payload with an escaped IAC IAC, a LF and text inside */
    uint8_t in[] = { 'a', IAC, SB, 31, 0, 80, IAC, IAC, '\n', 'z', 0, 24, IAC, SE, 'b' };
    uint8_t out[sizeof in];

    assert_int_equal(strip(t, in, sizeof in, out), 2);
    assert_memory_equal(out, "ab", 2);
}

static void
test_telnet_subnegotiation_se_alone_does_not_end_it(void **state)
{
    struct telnet *t = *state;
    /* a bare SE byte (not after IAC) is parameter data */
    uint8_t in[] = { IAC, SB, 24, SE, 'x', IAC, SE, 'b' };
    uint8_t out[sizeof in];

    assert_int_equal(strip(t, in, sizeof in, out), 1);
    assert_int_equal(out[0], 'b');
}

static void
test_telnet_subnegotiation_broken_by_command_ends_it(void **state)
{
    struct telnet *t = *state;
    /* IAC WILL inside SB without SE: the SB ends, WILL 1 is a command */
    uint8_t in[] = { IAC, SB, 24, 'x', IAC, WILL, 1, 'b', 'c' };
    uint8_t out[sizeof in];

    assert_int_equal(strip(t, in, sizeof in, out), 2);
    assert_memory_equal(out, "bc", 2);
}

static void
test_telnet_iac_iac_removed_never_emits_ff(void **state)
{
    struct telnet *t = *state;
    uint8_t in[64], out[64];

    memset(in, IAC, sizeof in);
    in[10] = 'q';
    assert_int_equal(strip(t, in, sizeof in, out), 1);
    assert_int_equal(out[0], 'q');
}

static void
test_telnet_iac_before_non_command_drops_both(void **state)
{
    struct telnet *t = *state;
    uint8_t in[] = { 'a', IAC, 'x', 'b' };
    uint8_t out[sizeof in];

    assert_int_equal(strip(t, in, sizeof in, out), 2);
    assert_memory_equal(out, "ab", 2);
}

static void
test_telnet_mixed_stream_in_place(void **state)
{
    struct telnet *t = *state;
    uint8_t buf[sizeof mixed];

    memcpy(buf, mixed, sizeof mixed);
    assert_int_equal(telnet_strip(t, buf, sizeof buf, buf), MIXED_OUT_LEN);
    assert_memory_equal(buf, mixed_out, MIXED_OUT_LEN);
}

static void
test_telnet_mixed_stream_split_anywhere_same_output(void **state)
{
    struct telnet *t = *state;
    uint8_t out[sizeof mixed];

    /* every pair of split points i <= j: three reads */
    for (size_t i = 0; i <= sizeof mixed; i++) {
        for (size_t j = i; j <= sizeof mixed; j++) {
            size_t w = 0;

            telnet_init(t);
            w += telnet_strip(t, mixed, i, out);
            w += telnet_strip(t, mixed + i, j - i, out + w);
            w += telnet_strip(t, mixed + j, sizeof mixed - j, out + w);
            assert_int_equal(w, MIXED_OUT_LEN);
            assert_memory_equal(out, mixed_out, MIXED_OUT_LEN);
        }
    }
}

static void
test_telnet_mixed_stream_byte_at_a_time_same_output(void **state)
{
    struct telnet *t = *state;
    uint8_t out[sizeof mixed];
    size_t w = 0;

    for (size_t i = 0; i < sizeof mixed; i++)
        w += telnet_strip(t, mixed + i, 1, out + w);
    assert_int_equal(w, MIXED_OUT_LEN);
    assert_memory_equal(out, mixed_out, MIXED_OUT_LEN);
}

static void
test_telnet_init_resets_mid_sequence(void **state)
{
    struct telnet *t = *state;
    uint8_t in[] = { IAC, SB, 24 };
    uint8_t out[4];

    assert_int_equal(telnet_strip(t, in, sizeof in, out), 0);
    telnet_init(t);
    assert_int_equal(telnet_strip(t, (const uint8_t *)"ok", 2, out), 2);
    assert_memory_equal(out, "ok", 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_telnet_plain_bytes_pass_unchanged, setup),
        cmocka_unit_test_setup(test_telnet_two_byte_commands_removed, setup),
        cmocka_unit_test_setup(test_telnet_option_negotiation_removed, setup),
        cmocka_unit_test_setup(test_telnet_subnegotiation_removed_with_contents, setup),
        cmocka_unit_test_setup(test_telnet_subnegotiation_se_alone_does_not_end_it, setup),
        cmocka_unit_test_setup(test_telnet_subnegotiation_broken_by_command_ends_it, setup),
        cmocka_unit_test_setup(test_telnet_iac_iac_removed_never_emits_ff, setup),
        cmocka_unit_test_setup(test_telnet_iac_before_non_command_drops_both, setup),
        cmocka_unit_test_setup(test_telnet_mixed_stream_in_place, setup),
        cmocka_unit_test_setup(test_telnet_mixed_stream_split_anywhere_same_output, setup),
        cmocka_unit_test_setup(test_telnet_mixed_stream_byte_at_a_time_same_output, setup),
        cmocka_unit_test_setup(test_telnet_init_resets_mid_sequence, setup),
    };

    return cmocka_run_group_tests_name("telnet", tests, NULL, NULL);
}
