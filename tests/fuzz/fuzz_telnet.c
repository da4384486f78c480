/*
 * libFuzzer harness for telnet.c. The first byte seeds the read sizes, the
 * rest is the stream. Stripping in one read, one byte per read and random
 * reads (those in place, out == in) must give the same bytes; that output
 * never holds 0xFF, is no longer than the input and is a subsequence of it
 * (the filter only removes), and equal to what a plain restatement of the
 * header's rules gives. Input without IAC passes unchanged, and after
 * any stream, IAC NOP IAC NOP "hello" ends the output with "hello": no state
 * (an unfinished command, option or subnegotiation) swallows what follows
 * for good.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "telnet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Mode 0: one read; 1: a byte per read; 2: random reads, in place. */
static size_t
strip(const uint8_t *in, size_t n, uint8_t seed, int mode, uint8_t *out, struct telnet *t)
{
    struct fuzz_rng rng;
    size_t i = 0, w = 0;

    fuzz_rng_init(&rng, seed);
    telnet_init(t);
    while (i < n) {
        size_t k = mode == 0 ? n : mode == 1 ? 1 : fuzz_rng_size(&rng, 32);
        size_t m;

        if (k > n - i)
            k = n - i;
        if (mode == 2) {
            uint8_t *tmp = malloc(k);

            FUZZ_CHECK(tmp != NULL);
            memcpy(tmp, in + i, k);
            m = telnet_strip(t, tmp, k, tmp);
            FUZZ_CHECK(m <= k);
            memcpy(out + w, tmp, m);
            free(tmp);
        } else {
            m = telnet_strip(t, in + i, k, out + w);
            FUZZ_CHECK(m <= k);
        }
        w += m;
        i += k;
    }
    return w;
}

/*
 * The header's contract walked over the whole stream at once with an
 * index, instead of a byte-at-a-time state machine: after IAC, WILL/WONT/
 * DO/DONT take one option byte, SB runs to IAC SE (IAC IAC inside is a
 * parameter byte, IAC plus any other command ends it and is read as that
 * command), and anything else is a two-byte command. Returns the index
 * after the command whose byte after IAC is p[i - 1].
 */
static size_t
ref_command(const uint8_t *p, size_t n, size_t i)
{
    uint8_t x = p[i - 1];

    for (;;) {
        if (x >= 251 && x <= 254)
            return i + 1; /* the option byte, if it came */
        if (x != 250)
            return i; /* two-byte command, IAC IAC, or not a command */
        for (;;) {    /* subnegotiation */
            while (i < n && p[i] != 0xFF)
                i++;
            if (i + 1 >= n)
                return n;
            x = p[i + 1];
            i += 2;
            if (x == 240)
                return i; /* IAC SE */
            if (x != 0xFF)
                break; /* IAC <command>: read as that command */
        }
    }
}

static size_t
reference(const uint8_t *p, size_t n, uint8_t *out)
{
    size_t i = 0, w = 0;

    while (i < n) {
        if (p[i] != 0xFF) {
            out[w++] = p[i++];
            continue;
        }
        if (i + 1 >= n)
            break;
        i = ref_command(p, n, i + 2);
    }
    return w;
}

static bool
is_subsequence(const uint8_t *sub, size_t m, const uint8_t *s, size_t n)
{
    size_t j = 0;

    for (size_t i = 0; i < n && j < m; i++)
        if (s[i] == sub[j])
            j++;
    return j == m;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t probe[] = { 0xFF, 0xF1, 0xFF, 0xF1, 'h', 'e', 'l', 'l', 'o' };
    uint8_t *out[3], tail[sizeof probe];
    size_t len[3], m;
    struct telnet t;

    if (size < 1)
        return 0;
    uint8_t seed = data[0];
    data++;
    size--;
    for (int k = 0; k < 3; k++) {
        out[k] = malloc(size + 1);
        FUZZ_CHECK(out[k] != NULL);
        len[k] = strip(data, size, seed, k, out[k], &t);
        FUZZ_CHECK(len[k] <= size);
        FUZZ_CHECK(memchr(out[k], 0xFF, len[k]) == NULL);
    }
    FUZZ_CHECK(len[1] == len[0] && memcmp(out[1], out[0], len[0]) == 0);
    FUZZ_CHECK(len[2] == len[0] && memcmp(out[2], out[0], len[0]) == 0);
    FUZZ_CHECK(is_subsequence(out[0], len[0], data, size));
    m = reference(data, size, out[1]);
    FUZZ_CHECK(m == len[0] && memcmp(out[1], out[0], m) == 0);
    if (memchr(data, 0xFF, size) == NULL)
        FUZZ_CHECK(len[0] == size && memcmp(out[0], data, size) == 0);
    /* t is in whatever state the random split left it */
    m = telnet_strip(&t, probe, sizeof probe, tail);
    FUZZ_CHECK(m >= 5 && memcmp(tail + m - 5, "hello", 5) == 0);
    for (int k = 0; k < 3; k++)
        free(out[k]);
    return 0;
}
