/*
 * buf: the byte queue behind every client's output. The properties that
 * matter upstream are checked directly on the struct: an empty buf owns no
 * storage (an idle client costs nothing), the bytes come out exactly as
 * they went in whatever the mix of appends, reserves and consumes (checked
 * against a plain array over thousands of seeded random operations), a
 * steady backlog slides into the dead head instead of reallocating, and an
 * impossible size fails with -ENOMEM and leaves the contents alone. Freed
 * minimum-size blocks are reused through a bounded LIFO cache that
 * buf_cache_trim() empties.
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

/* --- the block cache --------------------------------------------------------
 *
 * Freed minimum-size blocks are kept in a LIFO list for the next buf that
 * needs one. The cache is process-wide, so each test trims it first: it
 * then starts empty, and the test knows every block in it. Everything is
 * checked through the blocks' addresses (b.data) and the bytes, never by
 * reading a cached block, so none of it needs ASan to fail.
 */

/* The capacity of a buf's first block: the size that is cached. */
static size_t
min_cap(void)
{
    struct buf b = BUF_INIT;
    size_t cap;

    assert_int_equal(buf_append(&b, "x", 1), 0);
    cap = b.cap;
    buf_fini(&b);
    return cap;
}

/* A buf holding one byte, and so its own minimum-size block. */
static void
small(struct buf *b, uint8_t byte)
{
    buf_init(b);
    assert_int_equal(buf_append(b, &byte, 1), 0);
    assert_non_null(b->data);
}

static void
test_buf_freed_min_block_is_reused_lifo(void **state)
{
    struct buf a, b, c, d, e;
    const uint8_t *pa, *pb, *pc;
    size_t min = min_cap();
    uint8_t big[3000];

    (void)state;
    buf_cache_trim();
    small(&a, 'a');
    small(&b, 'b');
    assert_int_equal(a.cap, min);
    assert_int_equal(b.cap, min);
    pa = a.data;
    pb = b.data;
    assert_ptr_not_equal(pa, pb);
    buf_consume(&a, 1); /* empty: pa goes to the cache */
    buf_fini(&b);       /* then pb, on top */
    assert_buf_holds(&a, NULL, 0);

    small(&c, 'c');
    assert_ptr_equal(c.data, pb); /* the last block freed comes back first */
    small(&d, 'd');
    assert_ptr_equal(d.data, pa);
    assert_int_equal(c.cap, min);
    assert_int_equal(d.cap, min);
    assert_buf_holds(&c, (const uint8_t *)"c", 1);
    assert_buf_holds(&d, (const uint8_t *)"d", 1);

    /* a reused block is the buf's whole block: fill it to the brim */
    memset(big, 'q', sizeof(big));
    assert_int_equal(buf_append(&d, big, min - 1), 0);
    assert_ptr_equal(d.data, pa);
    assert_int_equal(buf_data(&d)[0], 'd');
    assert_memory_equal(buf_data(&d) + 1, big, min - 1);

    /* growing leaves the small block behind: the next small buf gets it */
    pc = c.data;
    assert_int_equal(buf_append(&c, big, min), 0);
    assert_int_equal(c.cap, 2 * min);
    assert_ptr_not_equal(c.data, pc);
    small(&e, 'e');
    assert_ptr_equal(e.data, pc);
    assert_buf_holds(&e, (const uint8_t *)"e", 1);
    assert_int_equal(buf_data(&c)[0], 'c');
    assert_memory_equal(buf_data(&c) + 1, big, min);

    /* reserve with nothing committed gives its block back too */
    buf_fini(&e);
    assert_non_null(buf_reserve(&e, 1));
    assert_ptr_equal(e.data, pc);
    buf_commit(&e, 0);
    assert_buf_holds(&e, NULL, 0);
    small(&e, 'E');
    assert_ptr_equal(e.data, pc);

    buf_fini(&c);
    buf_fini(&d);
    buf_fini(&e);
    buf_cache_trim();
}

static void
test_buf_other_block_sizes_are_not_cached(void **state)
{
    struct buf a, b = BUF_INIT, c = BUF_INIT;
    const uint8_t *pa;
    size_t min = min_cap();
    uint8_t big[3000];

    (void)state;
    memset(big, 'w', sizeof(big));
    buf_cache_trim();
    small(&a, 'a');
    pa = a.data;
    buf_fini(&a); /* the cache: pa */

    /* a larger block is never taken from the cache... */
    assert_int_equal(buf_append(&b, big, min + 1), 0);
    assert_true(b.cap > min);
    assert_ptr_not_equal(b.data, pa);
    assert_non_null(buf_reserve(&c, 4 * min));
    assert_true(c.cap >= 4 * min);
    assert_ptr_not_equal(c.data, pa);
    assert_buf_holds(&b, big, min + 1);
    /* ...nor put in it: after freeing both, pa is still on top */
    buf_consume(&b, min + 1);
    assert_buf_holds(&b, NULL, 0);
    buf_commit(&c, 0);
    assert_buf_holds(&c, NULL, 0);
    small(&a, 'A');
    assert_ptr_equal(a.data, pa);
    assert_int_equal(a.cap, min);
    assert_buf_holds(&a, (const uint8_t *)"A", 1);
    buf_fini(&a);
    buf_cache_trim();
}

/* Trimming frees what the cache holds: the next small bufs get blocks from
 * malloc (which may hand back some of the same addresses, but not in the
 * cache's LIFO order), and they work as usual. */
static void
test_buf_cache_trim_empties_cache_and_bufs_still_work(void **state)
{
    enum { K = 4 };
    struct buf b[K];
    const uint8_t *old[K];
    bool lifo = true;
    uint8_t data[700];

    (void)state;
    buf_cache_trim();
    buf_cache_trim(); /* on an empty cache: nothing to do */
    for (int i = 0; i < K; i++) {
        small(&b[i], (uint8_t)i);
        old[i] = b[i].data;
    }
    for (int i = 0; i < K; i++)
        buf_fini(&b[i]); /* the cache, top first: old[K-1] .. old[0] */
    buf_cache_trim();
    for (int i = 0; i < K; i++) {
        small(&b[i], (uint8_t)('0' + i));
        lifo = lifo && b[i].data == old[K - 1 - i];
    }
    assert_false(lifo);
    memset(data, 'd', sizeof(data));
    for (int i = 0; i < K; i++) {
        assert_int_equal(buf_append(&b[i], data, sizeof(data)), 0);
        assert_int_equal(buf_data(&b[i])[0], '0' + i);
        assert_memory_equal(buf_data(&b[i]) + 1, data, sizeof(data));
        buf_consume(&b[i], 1);
        assert_buf_holds(&b[i], data, sizeof(data));
        buf_consume(&b[i], sizeof(data));
        assert_buf_holds(&b[i], NULL, 0);
    }
    buf_cache_trim();
}

/*
 * The cache keeps at most CACHE_MAX blocks (BUF_CACHE_MAX in buf.c): of
 * CACHE_MAX + 1 freed in a row, the last is freed, and the top of the cache
 * is the CACHE_MAX-th. Done after a trim of a non-empty cache, so a trim
 * that forgot its count would show here as a smaller cache.
 */
enum { CACHE_MAX = 4096 };

static void
test_buf_cache_is_bounded_and_trim_resets_it(void **state)
{
    enum { N = CACHE_MAX + 1 };
    struct buf *b = calloc(N, sizeof(*b));
    const uint8_t **old = calloc(N, sizeof(*old));
    struct buf x, y;

    (void)state;
    assert_non_null(b);
    assert_non_null(old);
    buf_cache_trim();
    for (int i = 0; i < 8; i++)
        small(&b[i], 'z');
    for (int i = 0; i < 8; i++)
        buf_fini(&b[i]);
    buf_cache_trim(); /* 8 blocks: the count must go back to 0 */

    for (size_t i = 0; i < N; i++) {
        small(&b[i], (uint8_t)i);
        old[i] = b[i].data;
    }
    for (size_t i = 0; i < N; i++)
        buf_fini(&b[i]);
    small(&x, 'x');
    small(&y, 'y');
    assert_ptr_equal(x.data, old[CACHE_MAX - 1]);
    assert_ptr_equal(y.data, old[CACHE_MAX - 2]);
    assert_buf_holds(&x, (const uint8_t *)"x", 1);
    assert_buf_holds(&y, (const uint8_t *)"y", 1);
    buf_fini(&x);
    buf_fini(&y);
    buf_cache_trim();
    free(b);
    free(old);
}

/*
 * Many bufs trading blocks through the cache: random appends, reserves,
 * partial and whole consumes on 64 bufs, each checked against its own
 * model after every step. A block that two bufs shared, or a cache link
 * written over live bytes, shows as a mismatch. The test also keeps a
 * model of the cache (a stack of the freed minimum-size blocks) and checks
 * that a buf that takes a small block gets the top one, and that no block
 * is ever held by two live bufs.
 */
static void
test_buf_data_survives_block_reuse_across_many_bufs(void **state)
{
    enum { NB = 64, OPS = 40000, MODEL = 8192, STACK = 1 << 16 };
    struct buf *b = calloc(NB, sizeof(*b));
    uint8_t(*model)[MODEL] = calloc(NB, sizeof(*model));
    size_t mlen[NB] = { 0 };
    const uint8_t **stack = calloc(STACK, sizeof(*stack));
    size_t depth = 0, reused = 0, min = min_cap();
    uint64_t seed = 0x5eed5eed12345678u;
    uint8_t chunk[1200];

    (void)state;
    assert_non_null(b);
    assert_non_null(model);
    assert_non_null(stack);
    buf_cache_trim();
    for (int op = 0; op < OPS; op++) {
        size_t i = rng_below(&seed, NB), kind = rng_below(&seed, 10), n;
        const uint8_t *before = b[i].data;
        size_t cap_before = b[i].cap;
        uint8_t *p;

        if (kind < 4) { /* append: mostly within a small block */
            n = rng_below(&seed, kind == 0 ? sizeof(chunk) + 1 : min / 4);
            if (mlen[i] + n > MODEL)
                n = 0;
            fill_pattern(chunk, n, &seed);
            assert_int_equal(buf_append(&b[i], chunk, n), 0);
            memcpy(model[i] + mlen[i], chunk, n);
            mlen[i] += n;
        } else if (kind < 5) { /* reserve, commit part of it */
            size_t want = rng_below(&seed, min / 2);
            n = rng_below(&seed, want + 1);
            if (mlen[i] + want > MODEL)
                n = want = 0;
            assert_non_null(p = buf_reserve(&b[i], want));
            fill_pattern(p, n, &seed);
            memcpy(model[i] + mlen[i], p, n);
            buf_commit(&b[i], n);
            mlen[i] += n;
        } else if (kind < 8) { /* consume part */
            n = rng_below(&seed, mlen[i] + 1);
            buf_consume(&b[i], n);
            memmove(model[i], model[i] + n, mlen[i] - n);
            mlen[i] -= n;
        } else if (kind < 9) { /* consume all */
            buf_consume(&b[i], mlen[i]);
            mlen[i] = 0;
        } else {
            buf_fini(&b[i]);
            mlen[i] = 0;
        }
        assert_buf_holds(&b[i], model[i], mlen[i]);

        /* the cache model: at most one small block moves per step (a
         * growing buf takes a larger block before it frees its small one) */
        if (b[i].data != before) {
            if (before != NULL && cap_before == min) {
                assert_true(depth < STACK);
                stack[depth++] = before;
            }
            if (b[i].data != NULL && b[i].cap == min && depth > 0) {
                assert_ptr_equal(b[i].data, stack[--depth]);
                reused++;
            }
            for (size_t j = 0; b[i].data != NULL && j < NB; j++)
                if (j != i)
                    assert_ptr_not_equal(b[j].data, b[i].data);
        }
    }
    for (size_t i = 0; i < NB; i++) {
        assert_buf_holds(&b[i], model[i], mlen[i]);
        buf_fini(&b[i]);
    }
    assert_true(reused > 1000); /* the cache really was in play */
    buf_cache_trim();
    free(b);
    free(model);
    free(stack);
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
        cmocka_unit_test(test_buf_freed_min_block_is_reused_lifo),
        cmocka_unit_test(test_buf_other_block_sizes_are_not_cached),
        cmocka_unit_test(test_buf_cache_trim_empties_cache_and_bufs_still_work),
        cmocka_unit_test(test_buf_cache_is_bounded_and_trim_resets_it),
        cmocka_unit_test(test_buf_data_survives_block_reuse_across_many_bufs),
    };

    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
