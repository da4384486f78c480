/*
 * Shared pieces of the libFuzzer harnesses: an invariant check that aborts
 * (libFuzzer then saves the input as a crash), a strict UTF-8 validator
 * written independently of text.c so that the two cannot share a mistake,
 * and a tiny deterministic generator that turns a seed byte from the input
 * into read sizes, so every split is reproducible from the crash file.
 */
#ifndef ECHOCHAT_FUZZ_H
#define ECHOCHAT_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond);                                                  \
    } while (0)

static inline void
fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: invariant violated: %s\n", file, line, what);
    abort();
}

/*
 * Strict UTF-8 (RFC 3629): decode each sequence to its code point, then
 * reject what the decode shows to be wrong: a form longer than the code
 * point needs, a surrogate, anything past U+10FFFF. Decoding first and
 * judging the value after is the opposite of text.c's table of second-byte
 * ranges, which is the point.
 */
static inline bool
fuzz_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint32_t cp, min;
        size_t len;

        if (p[i] < 0x80) {
            i++;
            continue;
        }
        if ((p[i] & 0xE0) == 0xC0) {
            len = 2, cp = p[i] & 0x1F, min = 0x80;
        } else if ((p[i] & 0xF0) == 0xE0) {
            len = 3, cp = p[i] & 0x0F, min = 0x800;
        } else if ((p[i] & 0xF8) == 0xF0) {
            len = 4, cp = p[i] & 0x07, min = 0x10000;
        } else {
            return false; /* continuation byte or F8..FF as a lead */
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* The code point of the valid sequence at p (length *len), for callers that
 * have already run fuzz_utf8_valid() on the whole string. */
static inline uint32_t
fuzz_utf8_decode(const uint8_t *p, size_t *len)
{
    static const uint8_t mask[] = { 0, 0x7F, 0x1F, 0x0F, 0x07 };
    size_t n = p[0] < 0x80 ? 1 : (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3 : 4;
    uint32_t cp = p[0] & mask[n];

    for (size_t k = 1; k < n; k++)
        cp = (cp << 6) | (p[k] & 0x3F);
    *len = n;
    return cp;
}

/* True for what SPEC section 5 says must never reach a terminal: C0 but
 * TAB, DEL, C1. */
static inline bool
fuzz_is_control(uint32_t cp)
{
    return (cp < 0x20 && cp != '\t') || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F);
}

/* xorshift32: good enough to pick read sizes; never seeded with 0. */
struct fuzz_rng {
    uint32_t s;
};

static inline void
fuzz_rng_init(struct fuzz_rng *r, uint32_t seed)
{
    r->s = seed * 2654435761u + 0x9E3779B9u;
    if (r->s == 0)
        r->s = 1;
}

static inline uint32_t
fuzz_rng_next(struct fuzz_rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 17;
    r->s ^= r->s << 5;
    return r->s;
}

/* 1..max inclusive. */
static inline size_t
fuzz_rng_size(struct fuzz_rng *r, size_t max)
{
    return 1 + fuzz_rng_next(r) % max;
}

/* A canonical port: "0" or 1..5 digits without a leading zero, at most
 * 65535 (what cfg_parse_listen stores). */
static inline bool
fuzz_port_ok(const char *p)
{
    size_t n = strnlen(p, 6);
    unsigned long v = 0;

    if (n == 0 || n > 5 || (p[0] == '0' && n > 1))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    return v <= 65535;
}

#endif
