/*
 * buf: a byte queue whose storage exists only while it holds data. Reads
 * consume from the front by moving an offset (no memmove per write); the
 * unread bytes are slid to the front only when the free tail cannot take an
 * append and the dead head is at least as large as the live part, so each
 * byte is moved O(1) times on average. When the last byte is consumed the
 * storage is freed: an idle client costs the struct and nothing else.
 * Leaf module: libc only.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define BUF_MIN_CAP   512
#define BUF_CACHE_MAX 4096 /* blocks kept for reuse: 2 MiB */

/*
 * Freed minimum-size blocks, kept for the next buf that needs one. A chat
 * fan-out allocates one per receiver and frees it once written, every
 * message: through malloc that is a trip through its bins for each, and a
 * room of a thousand receivers frees enough at once for malloc to give the
 * top of the heap back to the kernel and fault it in again next message.
 * A LIFO list reuses the block touched last (still in cache) in O(1). The
 * daemon is single-threaded, and this is allocator state like malloc's
 * own, so it is static. Under ASan a cached block is poisoned: a stale
 * pointer into it is still caught.
 */
struct buf_block {
    struct buf_block *next;
};
static struct buf_block *buf_cache;
static size_t buf_cached;

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define BUF_POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define BUF_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define BUF_POISON(p, n)   ((void)(p), (void)(n))
#define BUF_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static uint8_t *
buf_block_get(size_t cap)
{
    struct buf_block *b = buf_cache;

    if (cap != BUF_MIN_CAP || b == NULL)
        return malloc(cap);
    BUF_UNPOISON(b + 1, BUF_MIN_CAP - sizeof(*b));
    buf_cache = b->next;
    buf_cached--;
    return (uint8_t *)b;
}

static void
buf_block_put(uint8_t *p, size_t cap)
{
    struct buf_block *b = (struct buf_block *)(void *)p;

    if (p == NULL || cap != BUF_MIN_CAP || buf_cached >= BUF_CACHE_MAX) {
        free(p);
        return;
    }
    b->next = buf_cache;
    buf_cache = b;
    buf_cached++;
    /* not the link: LeakSanitizer follows no pointer kept in poisoned
     * memory, and would report every cached block below the top */
    BUF_POISON(b + 1, BUF_MIN_CAP - sizeof(*b));
}

void
buf_cache_trim(void)
{
    while (buf_cache) {
        struct buf_block *b = buf_cache;
        BUF_UNPOISON(b + 1, BUF_MIN_CAP - sizeof(*b));
        buf_cache = b->next;
        free(b);
    }
    buf_cached = 0;
}

void
buf_init(struct buf *b)
{
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

void
buf_fini(struct buf *b)
{
    buf_block_put(b->data, b->cap);
    buf_init(b);
}

/*
 * Make room for n more bytes after the live data. Sliding beats growing when
 * the dead head is at least as large as the live part: the buffer of a
 * client that keeps a steady backlog then stays near its working size.
 * Otherwise the block doubles: sliding a large live part for every small
 * append would cost O(len) per append, and a same-size copy would be the
 * same memmove plus an allocation.
 */
static int
buf_make_room(struct buf *b, size_t n)
{
    uint64_t need, cap;
    uint8_t *p;

    /* every size below stays within uint32_t: off + len <= cap < 2^32 */
    if (n > UINT32_MAX - b->len)
        return -ENOMEM;
    if ((size_t)b->cap - b->off - b->len >= n)
        return 0;
    if (b->off > 0 && b->off >= b->len && (size_t)b->cap - b->len >= n) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
        return 0;
    }
    need = (uint64_t)b->len + n;
    cap = b->cap ? (uint64_t)b->cap * 2 : BUF_MIN_CAP;
    while (cap < need)
        cap *= 2;
    if (cap > UINT32_MAX)
        cap = need; /* <= UINT32_MAX, checked above */
    /* realloc would copy the dead head too: allocate and copy the live part */
    if ((p = buf_block_get((size_t)cap)) == NULL)
        return -ENOMEM;
    if (b->len)
        memcpy(p, b->data + b->off, b->len);
    buf_block_put(b->data, b->cap);
    b->data = p;
    b->off = 0;
    b->cap = (uint32_t)cap;
    return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
    int rc;

    if (n == 0)
        return 0;
    if ((rc = buf_make_room(b, n)) < 0)
        return rc;
    memcpy(b->data + b->off + b->len, p, n);
    b->len += (uint32_t)n; /* buf_make_room checked len + n */
    return 0;
}

uint8_t *
buf_reserve(struct buf *b, size_t n)
{
    if (n == 0)
        n = 1; /* callers always want a valid pointer back */
    if (buf_make_room(b, n) < 0)
        return NULL;
    return b->data + b->off + b->len;
}

void
buf_commit(struct buf *b, size_t n)
{
    assert(n <= (size_t)b->cap - b->off - b->len); /* at most what was reserved */
    b->len += (uint32_t)n;
    if (b->len == 0)
        buf_fini(b); /* reserve with nothing written must not leak an idle block */
}

void
buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        buf_fini(b);
        return;
    }
    b->off += (uint32_t)n; /* n < len */
    b->len -= (uint32_t)n;
}
