/*
 * line: framing of a chat byte stream into lines. Bytes pass through the
 * telnet filter, then LF, CR LF and CR NUL end a line (a lone CR followed by
 * anything else also ends one, as telnet clients in line mode send it). A
 * CR ends its line at once; an LF or NUL right after it, even in the next
 * read, is swallowed as the rest of that ending. A line longer than max is
 * discarded while it streams in, so memory stays bounded by max plus one
 * read; its place in the order is reported.
 *
 * The reader queues complete lines so that a rate-limited consumer can take
 * them one at a time later: line_feed() accepts bytes, line_next() hands out
 * the oldest line. Storage exists only while something is queued or partial:
 * once line_next() has returned 0, or line_queued() has returned 0, with no
 * partial line, q is NULL (the queue and its bytes are freed).
 * Leaf module: libc (and buf, telnet) only.
 */
#ifndef ECHOCHAT_LINE_H
#define ECHOCHAT_LINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "telnet.h"

/* The pending input: allocated when bytes arrive, freed when all are
 * taken. b holds each complete line as its bytes plus '\n', an overlong mark
 * as a lone '\r', then the bytes of the partial line. */
struct line_queue {
    struct buf b;     /* queued entries, then the partial line */
    uint32_t partial; /* bytes of the partial line at the end of b */
    uint32_t nlines;  /* complete entries (lines or overlong marks) not yet taken */
};

/* Embedded in every chat client, so an idle one is 16 bytes: the queue is
 * elsewhere, and only while something is pending. */
struct line_reader {
    struct line_queue *q; /* NULL while nothing is queued or partial */
    uint32_t max;         /* longest line kept, in bytes, excluding the ending */
    uint8_t flags;        /* CR seen, discarding an overlong line, front entry taken */
    struct telnet telnet;
};

/* An empty reader keeping lines of up to max bytes (at most UINT32_MAX; a
 * larger max is taken as UINT32_MAX, more than a buf can hold anyway). */
void line_init(struct line_reader *lr, size_t max);
void line_fini(struct line_reader *lr);

/* Take n raw bytes. Returns the number of complete entries now queued
 * (lines plus overlong marks), or -ENOMEM. */
int line_feed(struct line_reader *lr, const void *p, size_t n);
/* End of stream: an unterminated partial line becomes a complete line
 * (an overlong one becomes an overlong mark). Returns entries queued. */
int line_finish(struct line_reader *lr);

/* The oldest entry. Returns 1 with line and len set (valid until the next
 * call on lr; not NUL-terminated, ending removed; len may be 0 for an empty
 * line), -EMSGSIZE for a line that was discarded as longer than max, or 0
 * when nothing complete is queued. The entry is dropped on the next call. */
int line_next(struct line_reader *lr, const uint8_t **line, size_t *len);

/* Complete entries waiting for line_next(). Like every call on lr it first
 * drops the entry line_next() handed out last, so a consumer looping on
 * `while (line_queued(lr) > 0) line_next(...)` leaves no storage behind. */
uint32_t line_queued(struct line_reader *lr);

#endif
