/*
 * telnet: removes RFC 854 IAC sequences from a byte stream, one byte at a
 * time through a small state machine, so a sequence split anywhere across
 * reads is still recognised. We never negotiate (no option is ever agreed, so
 * the peer stays in the NVT default), and we never pass 0xFF on: chat text is
 * UTF-8, where 0xFF cannot occur, so even the escaped data byte IAC IAC is
 * dropped. Knows nothing about lines; line.c runs every read through here.
 */
#include "telnet.h"

#include <assert.h>

/* RFC 854 "TELNET COMMAND STRUCTURE"; RFC 855 for SB/SE. */
enum {
    TELNET_SE = 240,
    TELNET_SB = 250,
    TELNET_WILL = 251,
    TELNET_DONT = 254,
    TELNET_IAC = 255,
};

enum telnet_state {
    TELNET_DATA,   /* plain data */
    TELNET_CMD,    /* after IAC */
    TELNET_OPT,    /* after IAC WILL/WONT/DO/DONT: the option byte follows */
    TELNET_SUB,    /* inside IAC SB ... */
    TELNET_SUBIAC, /* after IAC inside a subnegotiation */
};

void
telnet_init(struct telnet *t)
{
    t->state = TELNET_DATA;
}

/*
 * The byte after IAC. Any command byte other than the four option verbs and
 * SB is a complete two-byte command (NOP, DM, BRK, IP, AO, AYT, EC, EL, GA,
 * a stray SE). A byte below 240 is not a command at all; RFC 854 does not
 * say what it means, and we drop it with its IAC rather than guess.
 */
static uint8_t
telnet_after_iac(uint8_t c)
{
    if (c >= TELNET_WILL && c <= TELNET_DONT)
        return TELNET_OPT;
    if (c == TELNET_SB)
        return TELNET_SUB;
    return TELNET_DATA; /* IAC IAC lands here too: dropped */
}

/*
 * Inside a subnegotiation everything is dropped until IAC SE (RFC 855); an
 * escaped IAC IAC there is part of the parameters. IAC followed by any other
 * command is malformed: like BSD telnetd we take it as the end of the
 * subnegotiation and interpret that command, so a broken peer cannot make
 * us swallow the rest of its stream waiting for an SE that never comes.
 */
static uint8_t
telnet_after_sub_iac(uint8_t c)
{
    if (c == TELNET_SE)
        return TELNET_DATA;
    if (c == TELNET_IAC)
        return TELNET_SUB;
    return telnet_after_iac(c);
}

size_t
telnet_strip(struct telnet *t, const uint8_t *in, size_t n, uint8_t *out)
{
    uint8_t st = t->state;
    size_t w = 0;

    for (size_t i = 0; i < n; i++) {
        uint8_t c = in[i];

        switch (st) {
        case TELNET_DATA:
            if (c == TELNET_IAC)
                st = TELNET_CMD;
            else
                out[w++] = c; /* w <= i, so out == in is safe */
            break;
        case TELNET_CMD:
            st = telnet_after_iac(c);
            break;
        case TELNET_OPT:
            st = TELNET_DATA; /* the option code itself */
            break;
        case TELNET_SUB:
            if (c == TELNET_IAC)
                st = TELNET_SUBIAC;
            break;
        case TELNET_SUBIAC:
            st = telnet_after_sub_iac(c);
            break;
        default:
            assert(!"bad telnet state");
            st = TELNET_DATA;
        }
    }
    t->state = st;
    return w;
}
