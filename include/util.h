/*
 * util: the few helpers every upper layer shares. Allocation failure is
 * fatal (logged, then abort): the daemon's limits, not malloc, are what keep
 * memory bounded, so there is no partial-failure path to test.
 */
#ifndef ECHOCHAT_UTIL_H
#define ECHOCHAT_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* malloc/calloc/realloc/strdup that never return NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* Milliseconds on CLOCK_MONOTONIC: only differences mean anything. */
uint64_t util_now_ms(void);
/* The same clock in microseconds. */
uint64_t util_now_us(void);

#define UTIL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define UTIL_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define UTIL_MAX(a, b)    ((a) > (b) ? (a) : (b))

#endif
