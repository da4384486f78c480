/*
 * line: turns a chat byte stream into lines. Every read first goes through
 * the telnet filter, straight into the free tail of the queue, and is then
 * framed in place. The queue stores each complete line as its bytes followed
 * by one '\n'; a line discarded as too long is stored as a lone '\r'. After
 * framing neither byte can occur inside a line (LF always ends one, CR always
 * ends one), so the separators are unambiguous and an entry never costs more
 * than the input it came from: memory is bounded by the unconsumed lines, at
 * most max bytes of partial line, and one read. The queue itself (a buf and
 * two counts) is allocated with the first pending byte and freed with the
 * last, so an idle reader is a pointer, the limit and two flag bytes. Knows
 * nothing of clients, text encoding or commands.
 */
#include "line.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LINE_END     '\n' /* ends a stored line */
#define LINE_TOOLONG '\r' /* a whole stored entry: a line discarded as too long */

enum {
    LINE_CR = 1 << 0,      /* last byte was a CR: a following LF or NUL belongs to it */
    LINE_DISCARD = 1 << 1, /* the current line passed max: drop it up to its end */
    LINE_TAKEN = 1 << 2,   /* the front entry was handed out: drop it on the next call */
};

void
line_init(struct line_reader *lr, size_t max)
{
    lr->q = NULL;
    lr->max = max > UINT32_MAX ? UINT32_MAX : (uint32_t)max;
    lr->flags = 0;
    telnet_init(&lr->telnet);
}

void
line_fini(struct line_reader *lr)
{
    if (lr->q != NULL) {
        buf_fini(&lr->q->b);
        free(lr->q);
    }
    line_init(lr, lr->max);
}

/* The queue, allocated if need be. NULL on ENOMEM. */
static struct line_queue *
line_queue(struct line_reader *lr)
{
    if (lr->q == NULL && (lr->q = calloc(1, sizeof(*lr->q))) != NULL)
        buf_init(&lr->q->b);
    return lr->q;
}

/* Free the queue once nothing is pending in it. */
static void
line_release(struct line_reader *lr)
{
    struct line_queue *q = lr->q;

    if (q == NULL || q->nlines > 0 || q->partial > 0 || (lr->flags & LINE_TAKEN))
        return;
    buf_fini(&q->b); /* empty by now: a no-op unless a reserve left a block */
    free(q);
    lr->q = NULL;
}

static uint32_t
line_count(const struct line_reader *lr)
{
    return lr->q ? lr->q->nlines : 0;
}

/* Size of the front entry, separator included. Only valid with a
 * complete entry queued: the search then cannot run into the partial. */
static size_t
line_front_size(const struct line_reader *lr)
{
    const uint8_t *p = buf_data(&lr->q->b);
    const uint8_t *end;

    assert(lr->q->nlines > 0 || (lr->flags & LINE_TAKEN));
    if (p[0] == LINE_TOOLONG)
        return 1;
    end = memchr(p, LINE_END, buf_len(&lr->q->b));
    assert(end != NULL);
    return (size_t)(end - p) + 1;
}

/*
 * line_next() cannot free the entry it returns (the caller still reads it),
 * so the entry is dropped on the next call instead. That call is also what
 * frees the storage once the queue and the partial are both empty.
 */
static void
line_drop_taken(struct line_reader *lr)
{
    if (!(lr->flags & LINE_TAKEN))
        return;
    buf_consume(&lr->q->b, line_front_size(lr));
    lr->flags &= ~LINE_TAKEN;
    line_release(lr);
}

/*
 * Frame the filtered bytes at q[start, start + n) in place. The partial
 * line from earlier reads sits just before start, so it can be extended or,
 * once it passes max, cut off. Each input byte yields at most one output
 * byte (CR ends the line at once; the LF or NUL after it yields nothing), so
 * writing never overtakes reading. Returns the new length of the live data,
 * which is below start when an old partial was cut off.
 */
static size_t
line_frame(struct line_reader *lr, uint8_t *q, size_t start, size_t n)
{
    struct line_queue *lq = lr->q;
    size_t w = start;

    for (size_t r = start; r < start + n; r++) {
        uint8_t c = q[r];
        bool after_cr = lr->flags & LINE_CR;

        lr->flags &= ~LINE_CR;
        if (after_cr && (c == '\n' || c == '\0'))
            continue; /* second half of CR LF / CR NUL (RFC 854 NVT) */
        if (c == '\n' || c == '\r') {
            if (c == '\r')
                lr->flags |= LINE_CR;
            q[w++] = (lr->flags & LINE_DISCARD) ? LINE_TOOLONG : LINE_END;
            lr->flags &= ~LINE_DISCARD;
            lq->partial = 0;
            lq->nlines++;
            continue;
        }
        if (lr->flags & LINE_DISCARD)
            continue;
        if (lq->partial == lr->max) {
            /* too long: forget what we kept of it; its end leaves a mark */
            w -= lq->partial;
            lq->partial = 0;
            lr->flags |= LINE_DISCARD;
            continue;
        }
        q[w++] = c;
        lq->partial++;
    }
    return w;
}

/*
 * A read of n bytes needs at most n more bytes of queue: the telnet filter
 * writes into the reserved tail, framing then compacts it in place. Only the
 * partial line (<= max) and lines not yet taken stay from earlier reads.
 */
int
line_feed(struct line_reader *lr, const void *p, size_t n)
{
    size_t start, end, m;
    struct line_queue *q;
    uint8_t *tail;

    line_drop_taken(lr);
    if (n == 0)
        return (int)line_count(lr);
    if ((q = line_queue(lr)) == NULL)
        return -ENOMEM;
    if ((tail = buf_reserve(&q->b, n)) == NULL) {
        line_release(lr);
        return -ENOMEM;
    }
    m = telnet_strip(&lr->telnet, p, n, tail);
    start = buf_len(&q->b);
    end = line_frame(lr, tail - start, start, m);
    if (end >= start) {
        buf_commit(&q->b, end - start); /* frees the block if nothing is live */
    } else if (end == 0) {
        buf_fini(&q->b);
    } else {
        /* XXX: buf has no truncate, so cut the old partial off by hand:
         * shortening len only forgets bytes at the end of the block */
        q->b.len = (uint32_t)end; /* end < start = the old len */
    }
    line_release(lr); /* only telnet bytes, an ending, or a discarded line */
    return (int)line_count(lr);
}

int
line_finish(struct line_reader *lr)
{
    uint8_t end;

    struct line_queue *q;

    line_drop_taken(lr);
    if ((lr->q == NULL || lr->q->partial == 0) && !(lr->flags & LINE_DISCARD))
        return (int)line_count(lr);
    end = (lr->flags & LINE_DISCARD) ? LINE_TOOLONG : LINE_END;
    if ((q = line_queue(lr)) == NULL)
        return -ENOMEM;
    if (buf_append(&q->b, &end, 1) < 0) {
        line_release(lr);
        return -ENOMEM;
    }
    lr->flags &= ~(LINE_DISCARD | LINE_CR);
    q->partial = 0;
    q->nlines++;
    return (int)q->nlines;
}

int
line_next(struct line_reader *lr, const uint8_t **line, size_t *len)
{
    const uint8_t *p;
    size_t size;

    line_drop_taken(lr);
    if (line_count(lr) == 0)
        return 0;
    p = buf_data(&lr->q->b);
    size = line_front_size(lr);
    lr->q->nlines--;
    lr->flags |= LINE_TAKEN;
    if (p[0] == LINE_TOOLONG)
        return -EMSGSIZE;
    *line = p;
    *len = size - 1;
    return 1;
}

uint32_t
line_queued(struct line_reader *lr)
{
    line_drop_taken(lr);
    return line_count(lr);
}
