/*
 * telnet: a streaming filter that removes RFC 854 IAC sequences (commands,
 * WILL/WONT/DO/DONT option negotiation, SB ... IAC SE subnegotiation, and
 * IAC IAC) from a byte stream. Its state survives a sequence split across
 * reads. Nothing is answered: we never negotiate. IAC before a byte that is
 * not a command drops both; IAC plus a command other than SE or IAC inside
 * a subnegotiation ends it. Leaf module: libc only.
 */
#ifndef ECHOCHAT_TELNET_H
#define ECHOCHAT_TELNET_H

#include <stddef.h>
#include <stdint.h>

struct telnet {
    uint8_t state;
};

void telnet_init(struct telnet *t);
/* Filter n bytes from in to out (out may equal in; it needs n bytes).
 * Returns the number of bytes written; never writes 0xFF. */
size_t telnet_strip(struct telnet *t, const uint8_t *in, size_t n, uint8_t *out);

#endif
