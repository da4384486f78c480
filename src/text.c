/*
 * text: what may reach another user's terminal. text_sanitize() decodes
 * UTF-8 strictly (Unicode 15 table 3-7, "well-formed UTF-8 byte sequences"),
 * replaces each maximal subpart of an ill-formed sequence with one U+FFFD
 * (the W3C/WHATWG practice Unicode recommends in section 3.9, "U+FFFD
 * Substitution of Maximal Subparts"), and removes the code points that
 * drive a terminal: C0 except TAB, DEL, and C1 (where CSI, U+009B, lives).
 * Also the name rules for nicks and rooms. Knows nothing of lines or users.
 */
#include "text.h"

#include <string.h>

static const char text_fffd[3] = { (char)0xEF, (char)0xBF, (char)0xBD };

/*
 * Length of a sequence starting with lead byte b (0 for a byte that cannot
 * start one: a continuation byte, C0/C1 overlong leads, F5..FF) and the
 * range its second byte must fall in. Only the second byte has a narrowed
 * range (E0: no overlong, ED: no surrogate, F0: no overlong, F4: not past
 * U+10FFFF); the rest are plain continuation bytes 80..BF.
 */
static size_t
text_lead(uint8_t b, uint8_t *lo, uint8_t *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF)
        return 2;
    if (b >= 0xE0 && b <= 0xEF) {
        if (b == 0xE0)
            *lo = 0xA0;
        else if (b == 0xED)
            *hi = 0x9F;
        return 3;
    }
    if (b >= 0xF0 && b <= 0xF4) {
        if (b == 0xF0)
            *lo = 0x90;
        else if (b == 0xF4)
            *hi = 0x8F;
        return 4;
    }
    return 0;
}

/*
 * How many bytes at in[0..n) form one well-formed sequence (returned as a
 * positive count), or the length of the maximal ill-formed subpart there,
 * returned negated. The subpart is the lead plus every byte that was still
 * a valid continuation when the sequence broke off, never less than one.
 */
static long
text_scan(const uint8_t *in, size_t n)
{
    uint8_t lo, hi;
    size_t need = text_lead(in[0], &lo, &hi);

    if (in[0] < 0x80)
        return 1;
    if (need == 0)
        return -1;
    for (size_t i = 1; i < need; i++) {
        if (i >= n || in[i] < lo || in[i] > hi)
            return -(long)i;
        lo = 0x80;
        hi = 0xBF;
    }
    return (long)need;
}

static bool
text_is_control(const uint8_t *seq, size_t len)
{
    if (len == 1)
        return (seq[0] < 0x20 && seq[0] != '\t') || seq[0] == 0x7F;
    return len == 2 && seq[0] == 0xC2 && seq[1] <= 0x9F; /* U+0080..U+009F */
}

size_t
text_sanitize(const uint8_t *in, size_t n, char *out)
{
    size_t w = 0;
    size_t i = 0;

    while (i < n) {
        long len = text_scan(in + i, n - i);

        if (len < 0) {
            memcpy(out + w, text_fffd, sizeof text_fffd);
            w += sizeof text_fffd;
            i += (size_t)-len;
            continue;
        }
        if (!text_is_control(in + i, (size_t)len)) {
            memcpy(out + w, in + i, (size_t)len);
            w += (size_t)len;
        }
        i += (size_t)len;
    }
    return w;
}

bool
text_is_name(const char *s, size_t n)
{
    if (n == 0 || n > TEXT_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';

        if (!ok)
            return false;
    }
    return true;
}
