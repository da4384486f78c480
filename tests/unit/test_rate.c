/*
 * Unit tests for rate.c: burst, exact refill, exact waits, the unlimited
 * setting, large rates and clock values that would overflow or wrap
 * narrower arithmetic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rate.h"

#define T0 1000000u /* an arbitrary start, not 0 */

/* Take until refused at now; returns how many were granted. */
static uint64_t
take_all(struct rate *r, unsigned per_sec, uint64_t now)
{
    uint64_t n = 0;

    while (rate_take(r, per_sec, now))
        n++;
    return n;
}

static void
test_rate_starts_full_with_burst(void **state)
{
    struct rate r;

    (void)state;
    rate_init(&r, 20, T0);
    assert_int_equal(take_all(&r, 20, T0), RATE_BURST * 20);
    rate_init(&r, 1, T0);
    assert_int_equal(take_all(&r, 1, T0), RATE_BURST);
}

static void
test_rate_refills_one_token_per_interval(void **state)
{
    struct rate r;

    (void)state;
    rate_init(&r, 20, T0);
    take_all(&r, 20, T0);
    assert_false(rate_take(&r, 20, T0 + 49)); /* 20/s: one token per 50 ms */
    assert_true(rate_take(&r, 20, T0 + 50));
    assert_false(rate_take(&r, 20, T0 + 50));
    /* partial progress is kept across calls: 20 ms + 30 ms is a token */
    assert_false(rate_take(&r, 20, T0 + 70));
    assert_true(rate_take(&r, 20, T0 + 100));
}

static void
test_rate_refill_stops_at_burst(void **state)
{
    struct rate r;

    (void)state;
    rate_init(&r, 20, T0);
    take_all(&r, 20, T0);
    assert_int_equal(take_all(&r, 20, T0 + 60000), RATE_BURST * 20);
}

static void
test_rate_wait_ms_zero_when_token_there(void **state)
{
    struct rate r;

    (void)state;
    rate_init(&r, 20, T0);
    assert_int_equal(rate_wait_ms(&r, 20, T0), 0);
    take_all(&r, 20, T0);
    assert_int_equal(rate_wait_ms(&r, 20, T0), 50);
    assert_int_equal(rate_wait_ms(&r, 20, T0 + 10), 40);
    assert_int_equal(rate_wait_ms(&r, 20, T0 + 50), 0);
}

/* For each rate, from an empty bucket: one ms before the wait a take is
 * refused, at the wait it is granted. Uneven rates check the ceiling. */
static void
test_rate_wait_ms_is_exact(void **state)
{
    static const unsigned rates[] = { 1, 3, 7, 20, 333, 999, 1001, 65537, 1000000 };

    (void)state;
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        unsigned ps = rates[i];
        struct rate r, early;
        uint64_t w;

        rate_init(&r, ps, T0);
        take_all(&r, ps, T0);
        w = rate_wait_ms(&r, ps, T0);
        assert_int_equal(w, (1000 + ps - 1) / ps); /* ceil(1 token / per-ms rate) */
        early = r;
        assert_false(rate_take(&early, ps, T0 + w - 1));
        assert_true(rate_take(&r, ps, T0 + w));
    }
}

static void
test_rate_wait_ms_counts_partial_tokens(void **state)
{
    struct rate r, early;

    (void)state;
    rate_init(&r, 3, T0);
    take_all(&r, 3, T0);
    /* 100 ms at 3/s is 0.3 token: 0.7 token = 700/3 ms to go, rounded up */
    assert_int_equal(rate_wait_ms(&r, 3, T0 + 100), 234);
    early = r;
    assert_false(rate_take(&early, 3, T0 + 333));
    assert_true(rate_take(&r, 3, T0 + 334));
}

static void
test_rate_zero_per_sec_is_unlimited(void **state)
{
    struct rate r;

    (void)state;
    rate_init(&r, 0, T0);
    for (int i = 0; i < 100000; i++)
        assert_true(rate_take(&r, 0, T0));
    assert_int_equal(rate_wait_ms(&r, 0, T0), 0);
}

/* 5,000,000 tokens = 5e9 milli-tokens, more than 32 bits hold: the burst
 * saturates at UINT32_MAX milli-tokens, the refill rate stays exact. */
static void
test_rate_million_per_sec_burst_saturates_at_32_bits(void **state)
{
    struct rate r;

    (void)state;
    rate_init(&r, 1000000, T0);
    assert_int_equal(take_all(&r, 1000000, T0), UINT32_MAX / 1000);
    assert_int_equal(rate_wait_ms(&r, 1000000, T0), 1);
    assert_int_equal(take_all(&r, 1000000, T0 + 1), 1000);
    /* a long gap fills it to the same cap, not past it (no wrap to little) */
    take_all(&r, 1000000, T0 + 1);
    assert_int_equal(take_all(&r, 1000000, T0 + 60000), UINT32_MAX / 1000);
}

static void
test_rate_huge_gap_fills_exactly_to_burst(void **state)
{
    struct rate r;
    /* the longest gap the 32-bit clock tells apart: (2^32 - 1) x 4e9/s is
     * past 2^64, so an unclamped product would wrap */
    const unsigned ps = 4000000000u;
    const uint64_t far = T0 + UINT32_MAX;

    (void)state;
    rate_init(&r, 100, T0);
    take_all(&r, 100, T0);
    assert_int_equal(take_all(&r, 100, far), RATE_BURST * 100);
    rate_init(&r, ps, T0);
    take_all(&r, ps, T0);
    assert_int_equal(take_all(&r, ps, far), UINT32_MAX / 1000);
}

static void
test_rate_clock_crossing_32_bits_refills_normally(void **state)
{
    const uint64_t t = ((uint64_t)1 << 32) - 10;
    struct rate r;

    (void)state;
    rate_init(&r, 20, t);
    take_all(&r, 20, t);
    assert_false(rate_take(&r, 20, t + 49));
    assert_true(rate_take(&r, 20, t + 50));
    assert_int_equal(rate_wait_ms(&r, 20, t + 50), 50);
}

/* The documented limit of the 32-bit clock (struct rate): a gap of 2^32 ms
 * plus 5 s or more still fills the bucket; 2^32 + 5 ms looks like 5 ms. */
static void
test_rate_gap_longer_than_32_bits_of_ms_is_taken_modulo(void **state)
{
    struct rate r;

    (void)state;
    rate_init(&r, 20, T0);
    take_all(&r, 20, T0);
    assert_int_equal(take_all(&r, 20, T0 + ((uint64_t)1 << 32) + 5000), RATE_BURST * 20);
    assert_int_equal(take_all(&r, 20, T0 + ((uint64_t)2 << 32) + 5000 + 100), 2);
}

/* Modulo 2^32 a step back is a long gap: it fills the bucket (no more than
 * the burst), and the refill then resumes from the new now. */
static void
test_rate_clock_stepping_back_fills_at_most_burst(void **state)
{
    struct rate r;

    (void)state;
    rate_init(&r, 20, T0);
    take_all(&r, 20, T0);
    assert_int_equal(take_all(&r, 20, T0 - 500), RATE_BURST * 20);
    assert_false(rate_take(&r, 20, T0 - 451));
    assert_true(rate_take(&r, 20, T0 - 450));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_starts_full_with_burst),
        cmocka_unit_test(test_rate_refills_one_token_per_interval),
        cmocka_unit_test(test_rate_refill_stops_at_burst),
        cmocka_unit_test(test_rate_wait_ms_zero_when_token_there),
        cmocka_unit_test(test_rate_wait_ms_is_exact),
        cmocka_unit_test(test_rate_wait_ms_counts_partial_tokens),
        cmocka_unit_test(test_rate_zero_per_sec_is_unlimited),
        cmocka_unit_test(test_rate_million_per_sec_burst_saturates_at_32_bits),
        cmocka_unit_test(test_rate_huge_gap_fills_exactly_to_burst),
        cmocka_unit_test(test_rate_clock_crossing_32_bits_refills_normally),
        cmocka_unit_test(test_rate_gap_longer_than_32_bits_of_ms_is_taken_modulo),
        cmocka_unit_test(test_rate_clock_stepping_back_fills_at_most_burst),
    };

    return cmocka_run_group_tests_name("rate", tests, NULL, NULL);
}
