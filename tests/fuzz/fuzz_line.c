/*
 * libFuzzer harness for line.c (with telnet.c underneath). The first input
 * byte picks --max-line (0..63, small so that overlong lines are common),
 * the second seeds the read sizes; the rest is the stream. The stream is
 * framed three ways: in one read, one byte per read, and in reads of random
 * size with the queue drained at random points in between. All three must
 * give the same sequence of lines and overlong marks, and that sequence
 * must match a plain reference framer written from the header's contract.
 * Every line is at most max bytes and holds no CR, LF or 0xFF, and once
 * everything is taken the reader holds no memory.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "line.h"
#include "telnet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The sequence of entries a reader produced: 'L', a size_t length and the
 * bytes for a line; 'O' for an overlong mark. */
struct trace {
    uint8_t *p;
    size_t len, cap;
};

static void
trace_put(struct trace *t, const void *p, size_t n)
{
    FUZZ_CHECK(t->len + n <= t->cap);
    memcpy(t->p + t->len, p, n);
    t->len += n;
}

static void
trace_line(struct trace *t, const uint8_t *line, size_t len)
{
    trace_put(t, "L", 1);
    trace_put(t, &len, sizeof len);
    trace_put(t, line, len);
}

static void
trace_init(struct trace *t, size_t n)
{
    /* each entry costs at least one input byte (its ending) */
    t->cap = (n + 1) * (1 + sizeof(size_t)) + n;
    t->p = malloc(t->cap);
    t->len = 0;
    FUZZ_CHECK(t->p != NULL);
}

/* Take up to want entries (SIZE_MAX: all), checking each. */
static void
drain(struct line_reader *lr, struct trace *t, size_t want)
{
    const uint8_t *line;
    size_t len;
    int rc;

    for (size_t k = 0; k < want; k++) {
        uint32_t queued = line_queued(lr);

        rc = line_next(lr, &line, &len);
        if (rc == 0) {
            FUZZ_CHECK(queued == 0);
            /* nothing queued and no partial: the reader owns no heap */
            FUZZ_CHECK(lr->q == NULL || lr->q->partial > 0);
            return;
        }
        FUZZ_CHECK(queued > 0);
        if (rc == -EMSGSIZE) {
            trace_put(t, "O", 1);
            continue;
        }
        FUZZ_CHECK(rc == 1);
        FUZZ_CHECK(len <= lr->max);
        FUZZ_CHECK(len == 0 || line != NULL);
        FUZZ_CHECK(memchr(line, '\n', len) == NULL);
        FUZZ_CHECK(memchr(line, '\r', len) == NULL);
        FUZZ_CHECK(memchr(line, 0xFF, len) == NULL);
        trace_line(t, line, len);
    }
}

/* Feed one read and check the count it reports against line_queued(). */
static void
feed(struct line_reader *lr, const uint8_t *p, size_t n)
{
    int rc = line_feed(lr, p, n);

    FUZZ_CHECK(rc >= 0);
    FUZZ_CHECK((uint32_t)rc == line_queued(lr));
    FUZZ_CHECK(lr->q == NULL || lr->q->partial <= lr->max);
}

static void
finish(struct line_reader *lr, struct trace *t)
{
    int rc = line_finish(lr);

    FUZZ_CHECK(rc >= 0 && (uint32_t)rc == line_queued(lr));
    drain(lr, t, SIZE_MAX);
    FUZZ_CHECK(line_queued(lr) == 0);
    FUZZ_CHECK(lr->q == NULL);
    line_fini(lr);
}

/* Mode 0: one read; mode 1: a byte per read; mode 2: random reads, random
 * draining in between. */
static void
frame(const uint8_t *p, size_t n, size_t max, uint8_t seed, int mode, struct trace *t)
{
    struct line_reader lr;
    struct fuzz_rng rng;
    size_t i = 0;

    fuzz_rng_init(&rng, seed);
    trace_init(t, n);
    line_init(&lr, max);
    while (i < n) {
        size_t k = mode == 0 ? n : mode == 1 ? 1 : fuzz_rng_size(&rng, 16);

        if (k > n - i)
            k = n - i;
        feed(&lr, p + i, k);
        i += k;
        if (mode == 2)
            drain(&lr, t, fuzz_rng_next(&rng) % 4);
        else if (mode == 1 && i % 7 == 0)
            drain(&lr, t, SIZE_MAX);
    }
    finish(&lr, t);
}

/*
 * The contract restated as simply as possible, on the telnet-stripped
 * stream: CR or LF ends a line, an LF or NUL right after a CR belongs to
 * it, a line that grows past max becomes one overlong mark, and end of
 * stream ends a non-empty (or overlong) partial line.
 */
static void
reference(const uint8_t *p, size_t n, size_t max, struct trace *t)
{
    struct telnet tn;
    uint8_t *s = malloc(n + 1), *cur = malloc(max + 1);
    size_t m, len = 0;
    bool after_cr = false, over = false;

    FUZZ_CHECK(s != NULL && cur != NULL);
    trace_init(t, n);
    telnet_init(&tn);
    m = telnet_strip(&tn, p, n, s);
    for (size_t i = 0; i < m; i++) {
        uint8_t c = s[i];
        bool cr = after_cr;

        after_cr = false;
        if (cr && (c == '\n' || c == '\0'))
            continue;
        if (c == '\r' || c == '\n') {
            after_cr = c == '\r';
            if (over)
                trace_put(t, "O", 1);
            else
                trace_line(t, cur, len);
            len = 0;
            over = false;
        } else if (!over && len == max) {
            over = true;
        } else if (!over) {
            cur[len++] = c;
        }
    }
    if (over)
        trace_put(t, "O", 1);
    else if (len > 0)
        trace_line(t, cur, len);
    free(s);
    free(cur);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct trace t[4];
    size_t max;
    uint8_t seed;

    if (size < 2)
        return 0;
    max = data[0] % 64;
    seed = data[1];
    data += 2;
    size -= 2;
    frame(data, size, max, seed, 0, &t[0]);
    frame(data, size, max, seed, 1, &t[1]);
    frame(data, size, max, seed, 2, &t[2]);
    reference(data, size, max, &t[3]);
    for (int k = 1; k < 4; k++) {
        FUZZ_CHECK(t[k].len == t[0].len);
        FUZZ_CHECK(memcmp(t[k].p, t[0].p, t[0].len) == 0);
    }
    for (int k = 0; k < 4; k++)
        free(t[k].p);
    return 0;
}
