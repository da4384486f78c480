/*
 * room: rooms as plain data for chat.c. A room set is a chained hash table
 * keyed on the name ignoring ASCII case (text_name_hash/text_name_eq, inline
 * in text.h so this leaf links nothing else), doubled when the load passes
 * one. A room's members are an unordered array of opaque pointers; leaving
 * swaps the last member into the hole, so both join and leave are O(1) as
 * long as each member remembers its slot. History is a ring of copied lines,
 * allocated only when the first line arrives. Nothing here sends or logs.
 */
#include "room.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ROOM_BUCKETS_MIN 16 /* a power of two: bucket = hash & (n - 1) */
#define ROOM_MEMBERS_MIN 4

int
room_set_init(struct room_set *rs, size_t hist_max)
{
    rs->buckets = calloc(ROOM_BUCKETS_MIN, sizeof *rs->buckets);
    if (rs->buckets == NULL)
        return -ENOMEM;
    rs->nbuckets = ROOM_BUCKETS_MIN;
    rs->nrooms = 0;
    rs->hist_max = hist_max;
    return 0;
}

static void
room_free(struct room *r)
{
    for (size_t i = 0; i < r->hist_len; i++)
        free(r->hist[(r->hist_head + i) % r->hist_max].text);
    free(r->hist);
    free(r->members);
    free(r);
}

void
room_set_fini(struct room_set *rs)
{
    for (size_t i = 0; i < rs->nbuckets; i++) {
        struct room *r = rs->buckets[i];

        while (r != NULL) {
            struct room *next = r->next;

            room_free(r);
            r = next;
        }
    }
    free(rs->buckets);
    rs->buckets = NULL;
    rs->nbuckets = rs->nrooms = 0;
}

static struct room **
room_bucket(const struct room_set *rs, const char *name)
{
    return &rs->buckets[text_name_hash(name) & (rs->nbuckets - 1)];
}

struct room *
room_find(const struct room_set *rs, const char *name)
{
    for (struct room *r = *room_bucket(rs, name); r != NULL; r = r->next)
        if (text_name_eq(r->name, name))
            return r;
    return NULL;
}

/*
 * Double the table. A failed allocation is not an error: the old table
 * still works, just with longer chains, and the next insert tries again.
 */
static void
room_set_grow(struct room_set *rs)
{
    size_t n = rs->nbuckets * 2;
    struct room **b = calloc(n, sizeof *b);

    if (b == NULL)
        return;
    for (size_t i = 0; i < rs->nbuckets; i++) {
        struct room *r = rs->buckets[i];

        while (r != NULL) {
            struct room *next = r->next;
            struct room **head = &b[text_name_hash(r->name) & (n - 1)];

            r->next = *head;
            *head = r;
            r = next;
        }
    }
    free(rs->buckets);
    rs->buckets = b;
    rs->nbuckets = n;
}

struct room *
room_get(struct room_set *rs, const char *name)
{
    struct room *r;
    struct room **head;
    size_t len = strlen(name);

    if ((r = room_find(rs, name)) != NULL)
        return r;
    assert(len > 0 && len <= TEXT_NAME_MAX); /* callers check text_is_name() */
    if ((r = calloc(1, sizeof *r)) == NULL)
        return NULL;
    memcpy(r->name, name, len + 1); /* as first spelled; lookups ignore case */
    r->hist_max = rs->hist_max;
    head = room_bucket(rs, name);
    r->next = *head;
    *head = r;
    if (++rs->nrooms > rs->nbuckets)
        room_set_grow(rs);
    return r;
}

void
room_delete(struct room_set *rs, struct room *r)
{
    struct room **pp = room_bucket(rs, r->name);

    while (*pp != r) {
        assert(*pp != NULL); /* r must belong to rs */
        pp = &(*pp)->next;
    }
    *pp = r->next;
    rs->nrooms--;
    room_free(r);
}

int
room_join(struct room *r, void *member, uint32_t *slot)
{
    assert(r->nmembers < UINT32_MAX);
    if (r->nmembers == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : ROOM_MEMBERS_MIN;
        void **m = realloc(r->members, cap * sizeof *m);

        if (m == NULL)
            return -ENOMEM;
        r->members = m;
        r->cap = cap;
    }
    *slot = (uint32_t)r->nmembers;
    r->members[r->nmembers++] = member;
    return 0;
}

/*
 * Swap-remove, then give memory back: the array is freed when the room
 * empties and halved when a crowd has left, so a room that once held
 * thousands does not keep their array. A failed shrink keeps the old one.
 */
void
room_leave(struct room *r, uint32_t slot, uint32_t *(*slot_of)(void *member))
{
    size_t last;

    assert(slot < r->nmembers);
    last = r->nmembers - 1;
    if (slot != last) {
        r->members[slot] = r->members[last];
        *slot_of(r->members[slot]) = slot;
    }
    r->nmembers = last;
    if (r->nmembers == 0) {
        free(r->members);
        r->members = NULL;
        r->cap = 0;
    } else if (r->cap > ROOM_MEMBERS_MIN * 4 && r->nmembers < r->cap / 4) {
        void **m = realloc(r->members, r->cap / 2 * sizeof *m);

        if (m != NULL) {
            r->members = m;
            r->cap /= 2;
        }
    }
}

int
room_history_push(struct room *r, const char *text, size_t len)
{
    struct room_line *slot;
    char *copy;

    if (r->hist_max == 0)
        return 0;
    if (r->hist == NULL && (r->hist = calloc(r->hist_max, sizeof *r->hist)) == NULL)
        return -ENOMEM;
    /* NUL-terminated too, so a caller may treat it as a string */
    if ((copy = malloc(len + 1)) == NULL)
        return -ENOMEM;
    if (len > 0)
        memcpy(copy, text, len);
    copy[len] = '\0';
    if (r->hist_len == r->hist_max) {
        slot = &r->hist[r->hist_head];
        free(slot->text);
        r->hist_head = (r->hist_head + 1) % r->hist_max;
    } else {
        slot = &r->hist[(r->hist_head + r->hist_len) % r->hist_max];
        r->hist_len++;
    }
    slot->text = copy;
    slot->len = len;
    return 0;
}

const struct room_line *
room_history_at(const struct room *r, size_t i)
{
    assert(i < r->hist_len);
    return &r->hist[(r->hist_head + i) % r->hist_max];
}
