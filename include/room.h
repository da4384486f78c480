/*
 * room: rooms as data. A room has a name, a member array (members are opaque
 * pointers; each remembers its slot so leaving is O(1)) and a ring of its
 * recent lines. A room set finds rooms by name ignoring case, in a hash
 * table. Nothing here sends, logs or knows what a member is. Leaf: libc only.
 */
#ifndef ECHOCHAT_ROOM_H
#define ECHOCHAT_ROOM_H

#include <stddef.h>
#include <stdint.h>

#include "text.h"

struct room_line {
    char *text; /* a complete line as sent, CR LF included */
    size_t len;
};

struct room {
    char name[TEXT_NAME_MAX + 1];
    void **members;
    size_t nmembers;
    size_t cap;
    struct room_line *hist; /* ring of hist_max, allocated on first push */
    size_t hist_head;       /* index of the oldest line */
    size_t hist_len;
    size_t hist_max;
    struct room *next; /* hash chain */
};

struct room_set {
    struct room **buckets;
    size_t nbuckets;
    size_t nrooms;
    size_t hist_max;
};

/* An empty set whose rooms keep hist_max lines of history (0: none).
 * Returns 0 or -ENOMEM. */
int room_set_init(struct room_set *rs, size_t hist_max);
/* Free every room and its history (members are not touched). */
void room_set_fini(struct room_set *rs);

/* The room with this name, ignoring case, or NULL. */
struct room *room_find(const struct room_set *rs, const char *name);
/* Find or create. name must satisfy text_is_name(); a new room keeps this
 * spelling. NULL only on ENOMEM. */
struct room *room_get(struct room_set *rs, const char *name);
/* Remove and free a room (call when it is empty). */
void room_delete(struct room_set *rs, struct room *r);

/* Add member; *slot receives its index, kept current when others leave
 * (room_leave() rewrites the slot of the member it moves). Returns 0 or
 * -ENOMEM. */
int room_join(struct room *r, void *member, uint32_t *slot);
/* Remove the member at slot. slot_of(member) must return the address where
 * that member keeps its slot (the member moved into the hole gets updated).
 * The member array is freed when the room empties. */
void room_leave(struct room *r, uint32_t slot, uint32_t *(*slot_of)(void *member));

/* Append a copy of a complete line to the history ring, dropping the oldest
 * when full; a no-op with hist_max 0. The copy is also NUL-terminated.
 * Returns 0 or -ENOMEM. */
int room_history_push(struct room *r, const char *text, size_t len);
/* The i-th history line, oldest first (i < r->hist_len). */
const struct room_line *room_history_at(const struct room *r, size_t i);

#endif
