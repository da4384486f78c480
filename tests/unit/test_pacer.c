/*
 * Unit tests for pacer.c: when writing counts as busy (the credit bucket,
 * its cap and its floor), how much may be held, the hold limit learnt from
 * the interval between flushes, and the back-off after holds that nothing
 * joined. Times are passed in, so every case is exact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pacer.h"

#define T0 1000000000u /* an arbitrary start, not 0 */

/* Flushes every `every` µs that each spend `spent` µs writing, 30 clients
 * queued each time, until one may hold; returns how many flushes ran
 * before it, or `max` if none did. */
static unsigned
flushes_until_busy(struct pacer *p, uint64_t *now, uint64_t every, uint64_t spent, unsigned max)
{
    for (unsigned i = 0; i < max; i++) {
        *now += every;
        if (pacer_begin(p, *now, 30, true) > 0)
            return i;
        pacer_spent(p, spent);
    }
    return max;
}

/* Top the credit up at now, then spend all of it and as much again: the
 * next pacer_begin at now finds the server busy. */
static void
spend_all(struct pacer *p, uint64_t now)
{
    assert_int_equal(pacer_begin(p, now, 0, false), 0);
    pacer_spent(p, PACER_BURST_US);
    pacer_spent(p, PACER_BURST_US);
}

/* Busy at *now: the credit is spent and the last flush says to hold. */
static void
make_busy(struct pacer *p, uint64_t *now)
{
    pacer_init(p, *now);
    spend_all(p, *now);
    assert_int_equal(pacer_begin(p, *now, 30, true), 10);
}

static void
test_pacer_starts_idle_and_writes_everything(void **state)
{
    struct pacer p;

    (void)state;
    pacer_init(&p, T0);
    assert_int_equal(pacer_begin(&p, T0, 30, true), 0);
    assert_int_equal(pacer_begin(&p, T0, 1000000, true), 0);
    assert_false(pacer_holding(&p));
}

static void
test_pacer_busy_once_writing_takes_more_than_half(void **state)
{
    struct pacer p;
    uint64_t now = T0;
    unsigned n;

    (void)state;
    pacer_init(&p, now);
    /* 800 µs of writing per 1000 µs earns 500 and spends 800: the 20 ms
     * of credit last about 20000 / 300 = 67 flushes, and not one less */
    n = flushes_until_busy(&p, &now, 1000, 800, 1000);
    assert_in_range(n, 66, 70);
    pacer_spent(&p, 800);
    /* and it stays busy while writing keeps taking that long */
    for (int i = 0; i < 100; i++) {
        now += 1000;
        assert_int_equal(pacer_begin(&p, now, 30, true), 10);
        pacer_spent(&p, 800);
    }
}

static void
test_pacer_never_busy_below_half(void **state)
{
    struct pacer p;
    uint64_t now = T0;

    (void)state;
    pacer_init(&p, now);
    assert_int_equal(flushes_until_busy(&p, &now, 1000, 490, 100000), 100000);
}

static void
test_pacer_not_busy_again_once_writing_eases(void **state)
{
    struct pacer p;
    uint64_t now = T0;

    (void)state;
    pacer_init(&p, now);
    assert_true(flushes_until_busy(&p, &now, 1000, 900, 1000) < 1000);
    /* writing drops to 10%: the debt (at most 20 ms) is repaid at 400 µs
     * per flush, so within about 50 flushes it writes everything again */
    for (int i = 0; i < 60; i++) {
        now += 1000;
        pacer_begin(&p, now, 30, true);
        pacer_spent(&p, 100);
    }
    now += 1000;
    assert_int_equal(pacer_begin(&p, now, 30, true), 0);
}

static void
test_pacer_holds_at_most_a_third(void **state)
{
    struct pacer p;
    uint64_t now = T0;

    (void)state;
    make_busy(&p, &now);
    assert_int_equal(pacer_begin(&p, now, 0, false), 0);
    assert_int_equal(pacer_begin(&p, now, 1, false), 0);
    assert_int_equal(pacer_begin(&p, now, 2, false), 0);
    assert_int_equal(pacer_begin(&p, now, 3, false), 1);
    assert_int_equal(pacer_begin(&p, now, 100, false), 33);
    assert_int_equal(pacer_begin(&p, now, 1000, false), 333);
}

static void
test_pacer_credit_capped_after_quiet_spell(void **state)
{
    struct pacer p;
    uint64_t now = T0;

    (void)state;
    make_busy(&p, &now);
    /* an hour of nothing: the bucket is full, not an hour's worth */
    now += 3600ull * 1000000u;
    assert_int_equal(pacer_begin(&p, now, 30, true), 0);
    pacer_spent(&p, PACER_BURST_US - 1);
    assert_int_equal(pacer_begin(&p, now, 30, true), 0);
    pacer_spent(&p, 1);
    assert_int_equal(pacer_begin(&p, now, 30, true), 10);
}

static void
test_pacer_debt_floored_at_one_burst(void **state)
{
    struct pacer p;
    uint64_t now = T0;

    (void)state;
    pacer_init(&p, now);
    pacer_spent(&p, 10u * 1000000u); /* two 10 s flushes */
    pacer_spent(&p, 10u * 1000000u);
    /* owed at most one burst, repaid at PACER_SHARE_PCT of the time */
    now += (uint64_t)PACER_BURST_US * 100 / PACER_SHARE_PCT;
    assert_int_equal(pacer_begin(&p, now, 30, true), 10); /* credit 0: still busy */
    now += 100 / PACER_SHARE_PCT;                         /* 1 µs of credit */
    assert_int_equal(pacer_begin(&p, now, 30, true), 0);
}

static void
test_pacer_hold_limit_is_twice_the_gap_between_fresh_flushes(void **state)
{
    struct pacer p;
    uint64_t now = T0;

    (void)state;
    pacer_init(&p, now);
    assert_int_equal(pacer_hold_limit(&p), PACER_HOLD_MIN_US); /* nothing learnt */
    pacer_begin(&p, now, 1, true);
    now += 3000;
    pacer_begin(&p, now, 1, true);
    /* the first interval sets the mean at once */
    assert_int_equal(pacer_hold_limit(&p), 6000);
    /* flushes with nothing new (a hold expiring) are not intervals */
    for (int i = 0; i < 50; i++) {
        now += 100;
        pacer_begin(&p, now, 1, false);
    }
    assert_int_equal(pacer_hold_limit(&p), 6000);
    /* a steady 2 ms rhythm pulls the mean to 2 ms */
    for (int i = 0; i < 200; i++) {
        now += 2000;
        pacer_begin(&p, now, 1, true);
    }
    assert_in_range(pacer_hold_limit(&p), 4000, 4010);
}

static void
test_pacer_hold_limit_bounded(void **state)
{
    struct pacer p;
    uint64_t now = T0;

    (void)state;
    pacer_init(&p, now);
    pacer_begin(&p, now, 1, true);
    now += 100; /* 0.1 ms apart: still held at least PACER_HOLD_MIN_US */
    pacer_begin(&p, now, 1, true);
    assert_int_equal(pacer_hold_limit(&p), PACER_HOLD_MIN_US);
    /* an hour apart counts as PACER_HOLD_MAX_US, no more: the mean of
     * 8 x 100 µs becomes 800 + 10000 - 800 / 8 = 10700 / 8 µs, so the
     * limit (twice the mean) is 10700 / 4 */
    now += 3600ull * 1000000u;
    pacer_begin(&p, now, 1, true);
    assert_int_equal(pacer_hold_limit(&p), 10700 / 4);
    /* and a steady 1 ms rhythm after it is learnt within a few dozen */
    for (int i = 0; i < 40; i++) {
        now += 1000;
        pacer_begin(&p, now, 1, true);
    }
    assert_in_range(pacer_hold_limit(&p), 2000, 2100);
    /* nothing is ever held longer than PACER_HOLD_MAX_US */
    for (int i = 0; i < 100; i++) {
        now += 60u * 1000000u;
        pacer_begin(&p, now, 1, true);
    }
    assert_int_equal(pacer_hold_limit(&p), PACER_HOLD_MAX_US);
}

static void
test_pacer_wasted_hold_turns_batching_off_for_a_second(void **state)
{
    struct pacer p;
    uint64_t now = T0;

    (void)state;
    make_busy(&p, &now);
    pacer_held(&p);
    assert_true(pacer_holding(&p));
    now += 2000;
    assert_true(pacer_expired(&p, now)); /* nothing joined: wasted */
    assert_false(pacer_holding(&p));
    /* still busy, but everything is written for the back-off period */
    spend_all(&p, now);
    assert_int_equal(pacer_begin(&p, now, 30, true), 0);
    spend_all(&p, now + PACER_BACKOFF_US - 1);
    assert_int_equal(pacer_begin(&p, now + PACER_BACKOFF_US - 1, 30, true), 0);
    spend_all(&p, now + PACER_BACKOFF_US);
    assert_int_equal(pacer_begin(&p, now + PACER_BACKOFF_US, 30, true), 10);
}

static void
test_pacer_backoff_doubles_up_to_its_cap(void **state)
{
    struct pacer p;
    uint64_t now = T0, expect = PACER_BACKOFF_US;

    (void)state;
    make_busy(&p, &now);
    for (int i = 0; i < 8; i++) {
        spend_all(&p, now);
        assert_int_equal(pacer_begin(&p, now, 30, true), 10);
        pacer_held(&p);
        assert_true(pacer_expired(&p, now));
        spend_all(&p, now + expect - 1);
        assert_int_equal(pacer_begin(&p, now + expect - 1, 30, true), 0);
        now += expect;
        expect = expect * 2 > PACER_BACKOFF_MAX_US ? PACER_BACKOFF_MAX_US : expect * 2;
    }
    assert_int_equal(expect, PACER_BACKOFF_MAX_US);
}

static void
test_pacer_paid_hold_resets_backoff(void **state)
{
    struct pacer p;
    uint64_t now = T0;

    (void)state;
    make_busy(&p, &now);
    pacer_held(&p);
    assert_true(pacer_expired(&p, now)); /* back-off 1 s, next would be 2 s */
    now += PACER_BACKOFF_US;
    spend_all(&p, now);
    assert_int_equal(pacer_begin(&p, now, 30, true), 10);
    pacer_held(&p);
    pacer_joined(&p); /* the next message joined the held clients */
    assert_int_equal(pacer_begin(&p, now, 30, true), 10); /* pays: keeps batching */
    /* a later wasted hold backs off 1 s again, not 2 */
    pacer_drained(&p);
    pacer_held(&p);
    assert_true(pacer_expired(&p, now));
    spend_all(&p, now + PACER_BACKOFF_US - 1);
    assert_int_equal(pacer_begin(&p, now + PACER_BACKOFF_US - 1, 30, true), 0);
    spend_all(&p, now + PACER_BACKOFF_US);
    assert_int_equal(pacer_begin(&p, now + PACER_BACKOFF_US, 30, true), 10);
}

static void
test_pacer_expiry_judges_each_stretch(void **state)
{
    struct pacer p;
    uint64_t now = T0;

    (void)state;
    make_busy(&p, &now);
    pacer_held(&p);
    pacer_joined(&p);
    assert_false(pacer_expired(&p, now)); /* joined: not wasted */
    assert_true(pacer_holding(&p));
    /* nothing joined since that expiry: this one is wasted */
    assert_true(pacer_expired(&p, now + 1000));
}

static void
test_pacer_joins_count_only_while_holding(void **state)
{
    struct pacer p;
    uint64_t now = T0;

    (void)state;
    make_busy(&p, &now);
    pacer_joined(&p); /* output joining a queued client, no hold yet */
    pacer_held(&p);
    assert_true(pacer_expired(&p, now));
}

static void
test_pacer_drained_ends_the_hold(void **state)
{
    struct pacer p;
    uint64_t now = T0;

    (void)state;
    make_busy(&p, &now);
    pacer_held(&p);
    pacer_drained(&p);
    assert_false(pacer_holding(&p));
    assert_false(pacer_expired(&p, now)); /* nothing held: nothing wasted */
    assert_int_equal(pacer_begin(&p, now, 30, true), 10);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pacer_starts_idle_and_writes_everything),
        cmocka_unit_test(test_pacer_busy_once_writing_takes_more_than_half),
        cmocka_unit_test(test_pacer_never_busy_below_half),
        cmocka_unit_test(test_pacer_not_busy_again_once_writing_eases),
        cmocka_unit_test(test_pacer_holds_at_most_a_third),
        cmocka_unit_test(test_pacer_credit_capped_after_quiet_spell),
        cmocka_unit_test(test_pacer_debt_floored_at_one_burst),
        cmocka_unit_test(test_pacer_hold_limit_is_twice_the_gap_between_fresh_flushes),
        cmocka_unit_test(test_pacer_hold_limit_bounded),
        cmocka_unit_test(test_pacer_wasted_hold_turns_batching_off_for_a_second),
        cmocka_unit_test(test_pacer_backoff_doubles_up_to_its_cap),
        cmocka_unit_test(test_pacer_paid_hold_resets_backoff),
        cmocka_unit_test(test_pacer_expiry_judges_each_stretch),
        cmocka_unit_test(test_pacer_joins_count_only_while_holding),
        cmocka_unit_test(test_pacer_drained_ends_the_hold),
    };

    return cmocka_run_group_tests_name("pacer", tests, NULL, NULL);
}
