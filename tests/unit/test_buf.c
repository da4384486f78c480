/*
 * buf: the byte queue behind every client's output. The properties that
 * matter upstream are checked directly on the struct: an empty buf owns no
 * storage (an idle client costs nothing), the bytes come out exactly as
 * they went in whatever the mix of appends, reserves and consumes (checked
 * against a plain array over thousands of seeded random operations), a
 * steady backlog slides into the dead head instead of reallocating, and an
 * impossible size fails with -ENOMEM and leaves the contents alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* A huge request must come back as -ENOMEM, not as ASan's abort on an
 * oversized malloc: ask ASan to return NULL like libc does. Unused (and
 * harmless) in a build without ASan. */
const char *__asan_default_options(void);
const char *
__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

/* xorshift64: a fixed seed gives the same operation sequence on every run. */
static uint64_t
rng_next(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static size_t
rng_below(uint64_t *s, size_t n)
{
    return n ? (size_t)(rng_next(s) % n) : 0;
}

static void
fill_pattern(uint8_t *p, size_t n, uint64_t *s)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rng_next(s);
}

/* The invariants every operation must keep. */
static void
assert_buf_holds(const struct buf *b, const uint8_t *want, size_t n)
{
    assert_int_equal(buf_len(b), n);
    assert_int_equal(buf_empty(b), n == 0);
    if (n == 0) {
        assert_null(b->data);
        assert_null(buf_data(b));
        assert_int_equal(b->cap, 0);
        return;
    }
    assert_non_null(b->data);
    assert_true(b->off + b->len <= b->cap);
    assert_memory_equal(buf_data(b), want, n);
}

static void
test_buf_empty_holds_no_storage(void **state)
{
    struct buf a = BUF_INIT, b;

    (void)state;
    memset(&b, 0xa5, sizeof(b));
    buf_init(&b);
    assert_buf_holds(&a, NULL, 0);
    assert_buf_holds(&b, NULL, 0);
    /* appending nothing must not allocate either */
    assert_int_equal(buf_append(&a, "x", 0), 0);
    assert_buf_holds(&a, NULL, 0);
    buf_fini(&a);
    assert_buf_holds(&a, NULL, 0);
}

static void
test_buf_consume_last_byte_frees_storage(void **state)
{
    struct buf b = BUF_INIT;

    (void)state;
    assert_int_equal(buf_append(&b, "hello", 5), 0);
    assert_buf_holds(&b, (const uint8_t *)"hello", 5);
    buf_consume(&b, 2);
    assert_buf_holds(&b, (const uint8_t *)"llo", 3);
    buf_consume(&b, 3);
    assert_buf_holds(&b, NULL, 0);
    /* and it is reusable afterwards */
    assert_int_equal(buf_append(&b, "again", 5), 0);
    assert_buf_holds(&b, (const uint8_t *)"again", 5);
    buf_fini(&b);
    assert_buf_holds(&b, NULL, 0);
}

static void
test_buf_fini_on_full_buf_frees_and_resets(void **state)
{
    struct buf b = BUF_INIT;
    uint8_t big[3000];

    (void)state;
    memset(big, 'z', sizeof(big));
    assert_int_equal(buf_append(&b, big, sizeof(big)), 0);
    buf_consume(&b, 100);
    buf_fini(&b);
    assert_buf_holds(&b, NULL, 0);
    assert_int_equal(b.off, 0);
}

static void
test_buf_reserve_commit_appends_written_part(void **state)
{
    struct buf b = BUF_INIT;
    uint8_t *p;

    (void)state;
    assert_int_equal(buf_append(&b, "ab", 2), 0);
    p = buf_reserve(&b, 100);
    assert_non_null(p);
    assert_ptr_equal(p, buf_data(&b) + 2);
    memcpy(p, "cde", 3);
    buf_commit(&b, 3);
    assert_buf_holds(&b, (const uint8_t *)"abcde", 5);
    /* a reserve with nothing committed changes nothing */
    assert_non_null(buf_reserve(&b, 4096));
    buf_commit(&b, 0);
    assert_buf_holds(&b, (const uint8_t *)"abcde", 5);
    buf_fini(&b);
}

static void
test_buf_commit_zero_on_empty_frees(void **state)
{
    struct buf b = BUF_INIT;

    (void)state;
    /* reserve(0) still hands back a usable pointer */
    assert_non_null(buf_reserve(&b, 0));
    buf_commit(&b, 0);
    assert_buf_holds(&b, NULL, 0);

    assert_non_null(buf_reserve(&b, 65536));
    assert_non_null(b.data);
    buf_commit(&b, 0);
    assert_buf_holds(&b, NULL, 0);
}

/*
 * The reference model is a plain array holding what the buf should hold.
 * Sizes go from 0 to a few kB so that both the sliding and the growing path
 * run often, and a consume of everything happens now and then.
 */
static void
test_buf_random_ops_match_reference_model(void **state)
{
    enum { OPS = 20000, MODEL = 1 << 20 };
    struct buf b = BUF_INIT;
    uint8_t *model = malloc(MODEL), chunk[4096];
    size_t mlen = 0, frees = 0;
    uint64_t seed = 0x9e3779b97f4a7c15u;

    (void)state;
    assert_non_null(model);
    for (int i = 0; i < OPS; i++) {
        size_t op = rng_below(&seed, 10), n;
        uint8_t *p;

        if (op < 4) { /* append */
            n = rng_below(&seed, sizeof(chunk) + 1);
            if (mlen + n > MODEL)
                n = 0;
            fill_pattern(chunk, n, &seed);
            assert_int_equal(buf_append(&b, chunk, n), 0);
            memcpy(model + mlen, chunk, n);
            mlen += n;
        } else if (op < 6) { /* reserve, write part of it, commit that part */
            size_t want = rng_below(&seed, sizeof(chunk) + 1);
            n = rng_below(&seed, want + 1);
            if (mlen + n > MODEL)
                n = want = 0;
            assert_non_null(p = buf_reserve(&b, want));
            fill_pattern(p, n, &seed);
            memcpy(model + mlen, p, n);
            buf_commit(&b, n);
            mlen += n;
        } else if (op < 9) { /* consume part */
            n = rng_below(&seed, mlen + 1);
            buf_consume(&b, n);
            memmove(model, model + n, mlen - n);
            mlen -= n;
        } else { /* consume all */
            buf_consume(&b, mlen);
            mlen = 0;
        }
        if (mlen == 0)
            frees++;
        assert_buf_holds(&b, model, mlen);
    }
    assert_true(frees > 100); /* the empty case really was visited */
    buf_fini(&b);
    free(model);
}

/*
 * A producer and a consumer in step, with a steady backlog: `backlog` bytes
 * stay queued while `chunk` go in and out per round. The bytes that leave
 * must be the oldest ones, and the capacity must settle instead of creeping
 * upwards with the offset. Returns the number of rounds (after warm-up) in
 * which the block moved or changed size.
 */
static int
steady_backlog(size_t backlog, size_t chunk, size_t *cap_out)
{
    struct buf b = BUF_INIT;
    uint8_t in[4096], out[4096];
    uint64_t seed = 42, check = 42;
    const uint8_t *block = NULL;
    size_t cap = 0;
    int moves = 0;

    assert_true(backlog <= sizeof(in) && chunk <= sizeof(out));
    fill_pattern(in, backlog, &seed);
    assert_int_equal(buf_append(&b, in, backlog), 0);
    for (int i = 0; i < 20000; i++) {
        fill_pattern(in, chunk, &seed);
        assert_int_equal(buf_append(&b, in, chunk), 0);
        fill_pattern(out, chunk, &check);
        assert_memory_equal(buf_data(&b), out, chunk);
        buf_consume(&b, chunk);
        assert_int_equal(buf_len(&b), backlog);
        if (i == 100) {
            block = b.data;
            cap = b.cap;
        } else if (i > 100 && (b.data != block || b.cap != cap)) {
            moves++;
        }
    }
    buf_fini(&b);
    *cap_out = cap;
    return moves;
}

/* The dead head outgrows the live part every round or two: the live bytes
 * slide back into it, and the block itself never changes. */
static void
test_buf_steady_backlog_reuses_dead_head(void **state)
{
    size_t cap;

    (void)state;
    assert_int_equal(steady_backlog(100, 300, &cap), 0);
    assert_true(cap <= 2 * (100 + 300));
}

/* A backlog larger than what passes per round: the capacity stays within a
 * small factor of the working size however long it runs. The block doubles
 * rather than being copied at the same size (so each byte moves O(1) times),
 * and slides once the dead head outgrows the live part: at most twice a
 * block twice the working size. */
static void
test_buf_steady_large_backlog_keeps_cap_bounded(void **state)
{
    size_t cap;

    (void)state;
    steady_backlog(1000, 300, &cap);
    assert_true(cap <= 4 * (1000 + 300));
}

static void
test_buf_huge_append_is_enomem_and_keeps_contents(void **state)
{
    struct buf b = BUF_INIT;
    static const uint8_t one = 1;

    (void)state;
    /* on an empty buf: nothing allocated afterwards */
    assert_int_equal(buf_append(&b, &one, SIZE_MAX), -ENOMEM);
    assert_buf_holds(&b, NULL, 0);
    assert_null(buf_reserve(&b, SIZE_MAX));
    assert_buf_holds(&b, NULL, 0);

    assert_int_equal(buf_append(&b, "keep", 4), 0);
    buf_consume(&b, 1);
    /* len + n overflows size_t */
    assert_int_equal(buf_append(&b, &one, SIZE_MAX - 1), -ENOMEM);
    assert_buf_holds(&b, (const uint8_t *)"eep", 3);
    /* representable, but no allocator can give it */
    assert_int_equal(buf_append(&b, &one, SIZE_MAX / 2), -ENOMEM);
    assert_buf_holds(&b, (const uint8_t *)"eep", 3);
    assert_null(buf_reserve(&b, SIZE_MAX / 2 + 1));
    assert_buf_holds(&b, (const uint8_t *)"eep", 3);
    /* still usable */
    assert_int_equal(buf_append(&b, "!", 1), 0);
    assert_buf_holds(&b, (const uint8_t *)"eep!", 4);
    buf_fini(&b);
}

/* The offsets are 32-bit: a size the allocator might grant must still be
 * refused once the buf would pass UINT32_MAX bytes (no silent wrap). */
static void
test_buf_append_past_uint32_is_enomem(void **state)
{
    struct buf b = BUF_INIT;
    static const uint8_t one = 1;

    (void)state;
    assert_int_equal(buf_append(&b, &one, (size_t)UINT32_MAX + 1), -ENOMEM);
    assert_null(buf_reserve(&b, (size_t)UINT32_MAX + 1));
    assert_buf_holds(&b, NULL, 0);
    assert_int_equal(buf_append(&b, "abc", 3), 0);
    assert_int_equal(buf_append(&b, &one, (size_t)UINT32_MAX - 2), -ENOMEM);
    assert_null(buf_reserve(&b, (size_t)UINT32_MAX - 2));
    assert_buf_holds(&b, (const uint8_t *)"abc", 3);
    buf_fini(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_empty_holds_no_storage),
        cmocka_unit_test(test_buf_consume_last_byte_frees_storage),
        cmocka_unit_test(test_buf_fini_on_full_buf_frees_and_resets),
        cmocka_unit_test(test_buf_reserve_commit_appends_written_part),
        cmocka_unit_test(test_buf_commit_zero_on_empty_frees),
        cmocka_unit_test(test_buf_random_ops_match_reference_model),
        cmocka_unit_test(test_buf_steady_backlog_reuses_dead_head),
        cmocka_unit_test(test_buf_steady_large_backlog_keeps_cap_bounded),
        cmocka_unit_test(test_buf_huge_append_is_enomem_and_keeps_contents),
        cmocka_unit_test(test_buf_append_past_uint32_is_enomem),
    };

    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
