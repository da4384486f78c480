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
/* Case-insensitive (ASCII) equality of two names. */
bool text_name_eq(const char *a, const char *b);
/* A hash of a name that ignores ASCII case. */
uint32_t text_name_hash(const char *s);

#endif
