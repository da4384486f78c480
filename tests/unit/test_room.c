/*
 * Unit tests for room.c: lookup ignoring case, table growth, join/leave
 * keeping every member's slot right, deletion, and the history ring.
 * Under ASan the teardown also proves that room_set_fini frees it all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "room.h"

struct member {
    int id;
    uint32_t slot;
};

static uint32_t *
slot_of(void *m)
{
    return &((struct member *)m)->slot;
}

static int
setup(void **state)
{
    struct room_set *rs = malloc(sizeof *rs);

    assert_non_null(rs);
    assert_int_equal(room_set_init(rs, 3), 0);
    *state = rs;
    return 0;
}

static int
teardown(void **state)
{
    struct room_set *rs = *state;

    room_set_fini(rs);
    free(rs);
    return 0;
}

/* Every member sits where its slot says. */
static void
assert_slots_consistent(const struct room *r)
{
    for (size_t i = 0; i < r->nmembers; i++)
        assert_int_equal(((struct member *)r->members[i])->slot, i);
}

static void
test_room_get_creates_and_find_ignores_case(void **state)
{
    struct room_set *rs = *state;
    struct room *r;

    assert_null(room_find(rs, "Lobby"));
    r = room_get(rs, "Lobby");
    assert_non_null(r);
    assert_string_equal(r->name, "Lobby");
    assert_int_equal(rs->nrooms, 1);
    assert_ptr_equal(room_find(rs, "lobby"), r);
    assert_ptr_equal(room_find(rs, "LOBBY"), r);
    assert_ptr_equal(room_get(rs, "lObBy"), r);
    assert_int_equal(rs->nrooms, 1);
    assert_string_equal(r->name, "Lobby"); /* the first spelling stays */
    assert_null(room_find(rs, "lobby2"));
    assert_null(room_find(rs, "lobb"));
}

static void
test_room_many_rooms_grow_table_all_found(void **state)
{
    struct room_set *rs = *state;
    struct room *rooms[1000];
    char name[TEXT_NAME_MAX + 1];

    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "Room-%d", i);
        rooms[i] = room_get(rs, name);
        assert_non_null(rooms[i]);
        assert_true(rs->nrooms <= rs->nbuckets); /* load factor at most 1 */
    }
    assert_int_equal(rs->nrooms, 1000);
    assert_true(rs->nbuckets >= 1000);
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "rOOM-%d", i);
        assert_ptr_equal(room_find(rs, name), rooms[i]);
    }
}

static void
test_room_delete_removes_only_that_room(void **state)
{
    struct room_set *rs = *state;
    char name[TEXT_NAME_MAX + 1];

    /* enough rooms that chains have several entries to unlink from */
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "r%d", i);
        assert_non_null(room_get(rs, name));
    }
    for (int i = 0; i < 300; i += 2) {
        snprintf(name, sizeof name, "R%d", i);
        room_delete(rs, room_find(rs, name));
    }
    assert_int_equal(rs->nrooms, 150);
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "r%d", i);
        if (i % 2)
            assert_non_null(room_find(rs, name));
        else
            assert_null(room_find(rs, name));
    }
    /* a deleted name can be created again, fresh */
    assert_non_null(room_get(rs, "r0"));
    assert_int_equal(rs->nrooms, 151);
}

static void
test_room_join_assigns_slots_in_order(void **state)
{
    struct room_set *rs = *state;
    struct room *r = room_get(rs, "lobby");
    struct member m[100];

    for (int i = 0; i < 100; i++) {
        m[i].id = i;
        m[i].slot = UINT32_MAX;
        assert_int_equal(room_join(r, &m[i], &m[i].slot), 0);
        assert_int_equal(m[i].slot, i);
    }
    assert_int_equal(r->nmembers, 100);
    assert_slots_consistent(r);
}

static void
test_room_leave_middle_moves_last_into_hole(void **state)
{
    struct room_set *rs = *state;
    struct room *r = room_get(rs, "lobby");
    struct member m[10];

    for (int i = 0; i < 10; i++) {
        m[i].id = i;
        assert_int_equal(room_join(r, &m[i], &m[i].slot), 0);
    }
    room_leave(r, m[4].slot, slot_of);
    assert_int_equal(r->nmembers, 9);
    assert_ptr_equal(r->members[4], &m[9]);
    assert_int_equal(m[9].slot, 4);
    assert_slots_consistent(r);
    /* the last one leaves: nothing moves */
    room_leave(r, m[8].slot, slot_of);
    assert_int_equal(r->nmembers, 8);
    assert_int_equal(m[9].slot, 4);
    assert_slots_consistent(r);
}

static void
test_room_leave_in_scrambled_order_keeps_slots_then_frees(void **state)
{
    enum { N = 1000 };
    struct room_set *rs = *state;
    struct room *r = room_get(rs, "crowd");
    struct member *m = calloc(N, sizeof *m);
    uint32_t seed = 7;

    assert_non_null(m);
    for (int i = 0; i < N; i++) {
        m[i].id = i;
        assert_int_equal(room_join(r, &m[i], &m[i].slot), 0);
    }
    for (int left = N; left > 0; left--) {
        /* pick any remaining member and make it leave by its own slot */
        seed = seed * 1103515245u + 12345u;
        struct member *who = r->members[(seed >> 8) % (uint32_t)left];

        room_leave(r, who->slot, slot_of);
        assert_int_equal(r->nmembers, left - 1);
        for (size_t i = 0; i < r->nmembers; i++)
            assert_ptr_not_equal(r->members[i], who);
        assert_slots_consistent(r);
        assert_true(r->nmembers == 0 || r->cap <= 4 * r->nmembers + 16);
    }
    assert_null(r->members);
    assert_int_equal(r->cap, 0);
    free(m);
}

static void
test_room_history_allocated_on_first_push_and_copied(void **state)
{
    struct room_set *rs = *state;
    struct room *r = room_get(rs, "lobby");
    char line[] = "<a> hi\r\n";

    assert_null(r->hist);
    assert_int_equal(room_history_push(r, line, strlen(line)), 0);
    assert_non_null(r->hist);
    line[4] = 'X'; /* the caller's buffer is reused: history must not change */
    assert_int_equal(r->hist_len, 1);
    assert_int_equal(room_history_at(r, 0)->len, 8);
    assert_memory_equal(room_history_at(r, 0)->text, "<a> hi\r\n", 8);
    assert_ptr_not_equal(room_history_at(r, 0)->text, line);
}

static void
test_room_history_ring_wraps_oldest_first(void **state)
{
    struct room_set *rs = *state; /* hist_max 3 */
    struct room *r = room_get(rs, "lobby");
    char line[16];

    for (int i = 0; i < 8; i++) {
        int n = snprintf(line, sizeof line, "line %d\r\n", i);

        assert_int_equal(room_history_push(r, line, (size_t)n), 0);
        assert_int_equal(r->hist_len, i < 3 ? i + 1 : 3);
    }
    for (size_t i = 0; i < 3; i++) {
        int n = snprintf(line, sizeof line, "line %zu\r\n", i + 5);

        assert_int_equal(room_history_at(r, i)->len, n);
        assert_memory_equal(room_history_at(r, i)->text, line, (size_t)n);
    }
}

static void
test_room_history_max_zero_keeps_nothing(void **state)
{
    struct room_set rs;
    struct room *r;

    (void)state;
    assert_int_equal(room_set_init(&rs, 0), 0);
    r = room_get(&rs, "quiet");
    assert_non_null(r);
    assert_int_equal(room_history_push(r, "x\r\n", 3), 0);
    assert_int_equal(r->hist_len, 0);
    assert_null(r->hist);
    room_set_fini(&rs);
}

static void
test_room_set_fini_frees_rooms_with_members_and_history(void **state)
{
    struct room_set rs;
    struct member m = { 1, 0 };
    char name[TEXT_NAME_MAX + 1];

    (void)state;
    assert_int_equal(room_set_init(&rs, 2), 0);
    for (int i = 0; i < 40; i++) {
        struct room *r;

        snprintf(name, sizeof name, "room%d", i);
        r = room_get(&rs, name);
        assert_non_null(r);
        assert_int_equal(room_join(r, &m, &m.slot), 0);
        assert_int_equal(room_history_push(r, "a\r\n", 3), 0);
        assert_int_equal(room_history_push(r, "b\r\n", 3), 0);
        assert_int_equal(room_history_push(r, "c\r\n", 3), 0);
    }
    room_set_fini(&rs); /* LeakSanitizer reports anything left */
    assert_null(rs.buckets);
    assert_int_equal(rs.nrooms, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_room_get_creates_and_find_ignores_case, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_room_many_rooms_grow_table_all_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_delete_removes_only_that_room, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_join_assigns_slots_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_leave_middle_moves_last_into_hole, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_room_leave_in_scrambled_order_keeps_slots_then_frees,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_history_allocated_on_first_push_and_copied, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_room_history_ring_wraps_oldest_first, setup, teardown),
        cmocka_unit_test(test_room_history_max_zero_keeps_nothing),
        cmocka_unit_test(test_room_set_fini_frees_rooms_with_members_and_history),
    };

    return cmocka_run_group_tests_name("room", tests, NULL, NULL);
}
