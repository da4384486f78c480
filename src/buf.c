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

#define BUF_MIN_CAP 512

void
buf_init(struct buf *b)
{
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

void
buf_fini(struct buf *b)
{
    free(b->data);
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
    if ((p = malloc((size_t)cap)) == NULL)
        return -ENOMEM;
    if (b->len)
        memcpy(p, b->data + b->off, b->len);
    free(b->data);
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
