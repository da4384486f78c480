/*
 * buf: a byte queue that owns heap storage only while it holds data. An idle
 * client's buffers are three words of zeros; the first append allocates and
 * the consume that empties it frees. Leaf module: libc only.
 */
#ifndef ECHOCHAT_BUF_H
#define ECHOCHAT_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 32-bit offsets keep it at 24 bytes (it is in every client and every chat
 * line reader); a buf holds less than 4 GiB, far above --max-output (at most
 * 1 GiB) and --max-line (at most 1 MiB). */
struct buf {
    uint8_t *data; /* NULL while empty */
    uint32_t off;  /* start of unread bytes in data */
    uint32_t len;  /* unread bytes */
    uint32_t cap;  /* bytes allocated */
};

#define BUF_INIT                                                                                   \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

void buf_init(struct buf *b);
/* Free the storage; the buf is empty and reusable afterwards. */
void buf_fini(struct buf *b);

/* Free the blocks kept for reuse (see buf.c): at exit, so that a leak
 * checker sees nothing held. Bufs stay usable. */
void buf_cache_trim(void);

/* Append n bytes. Returns 0 or -ENOMEM (nothing appended then; also when
 * the buf would pass UINT32_MAX bytes). */
int buf_append(struct buf *b, const void *p, size_t n);
/* Writable room for at least n bytes at the end, or NULL on ENOMEM (as for
 * buf_append).
 * buf_commit() then accounts for the bytes actually written. */
uint8_t *buf_reserve(struct buf *b, size_t n);
void buf_commit(struct buf *b, size_t n);
/* Drop n bytes from the front (n <= len); frees the storage when empty. */
void buf_consume(struct buf *b, size_t n);

static inline const uint8_t *
buf_data(const struct buf *b)
{
    return b->data ? b->data + b->off : NULL; /* NULL + 0 is UB */
}

static inline size_t
buf_len(const struct buf *b)
{
    return b->len;
}

static inline bool
buf_empty(const struct buf *b)
{
    return b->len == 0;
}

#endif
