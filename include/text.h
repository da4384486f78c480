/*
 * text: making user text safe to show to someone else's terminal, and the
 * rules for names. Leaf module: libc only.
 */
#ifndef ECHOCHAT_TEXT_H
#define ECHOCHAT_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest nick or room name. */
#define TEXT_NAME_MAX 24
/* Output room text_sanitize() may need for n input bytes (each invalid byte
 * can become the 3-byte U+FFFD). */
#define TEXT_SANITIZED_MAX(n) ((n)*3)

/* Copy in to out (room for TEXT_SANITIZED_MAX(n) bytes), removing C0
 * controls except TAB, DEL and C1 controls (U+0080..U+009F), and replacing
 * each maximal invalid UTF-8 subsequence (overlong forms, surrogates, code
 * points past U+10FFFF, truncated sequences, stray continuation bytes) with
 * U+FFFD. Returns the bytes written: valid UTF-8 with no controls but TAB. */
size_t text_sanitize(const uint8_t *in, size_t n, char *out);

/* A nick or room name: 1..TEXT_NAME_MAX of A-Z a-z 0-9 _ -. */
bool text_is_name(const char *s, size_t n);
/*
 * The two below are inline so that room.c, a leaf that links nothing else,
 * can key its table on them and agree with chat.c on what "same name" means.
 * Names are ASCII; bytes >= 0x80 compare as themselves.
 */
static inline char
text_ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive (ASCII) equality of two NUL-terminated names. */
static inline bool
text_name_eq(const char *a, const char *b)
{
    while (*a && text_ascii_lower(*a) == text_ascii_lower(*b)) {
        a++;
        b++;
    }
    return text_ascii_lower(*a) == text_ascii_lower(*b);
}

/* A hash of a NUL-terminated name that ignores ASCII case (32-bit FNV-1a
 * of the lowercased bytes, then mixed): text_name_eq() names hash equal. */
static inline uint32_t
text_name_hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++) {
        h ^= (uint8_t)text_ascii_lower(*s);
        h *= 16777619u;
    }
    /* FNV-1a's low bits are weak on short names that differ at the end
     * ("room1", "room2"), and the room table indexes by low bits: finish
     * with an avalanche (MurmurHash3's fmix32 constants) */
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

#endif
