/*
 * util: allocation that never returns NULL, and the monotonic clock. Out of
 * memory is fatal by design (STYLE.md): the configured limits bound what
 * the daemon holds, so a failed malloc means the machine is in trouble and
 * limping on with half-built clients would only hide it. Uses libc and log.
 */
#include "util.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static void
util_oom(size_t n)
{
    log_err("out of memory: cannot allocate %zu bytes", n);
    abort();
}

/* Size 0 still yields a unique pointer, so callers never special-case an
 * empty allocation and NULL keeps meaning "not found". */
void *
xmalloc(size_t n)
{
    void *p = malloc(n != 0 ? n : 1);

    if (p == NULL)
        util_oom(n);
    return p;
}

void *
xcalloc(size_t n, size_t size)
{
    void *p;

    if (n == 0 || size == 0)
        n = size = 1;
    if ((p = calloc(n, size)) == NULL)
        util_oom(size > 0 && n > SIZE_MAX / size ? SIZE_MAX : n * size);
    return p;
}

/* realloc(p, 0) may free p and return NULL; asking for one byte keeps the
 * "never NULL" promise without that trap. */
void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n != 0 ? n : 1);

    if (q == NULL)
        util_oom(n);
    return q;
}

char *
xstrdup(const char *s)
{
    char *d = strdup(s);

    if (d == NULL)
        util_oom(strlen(s) + 1);
    return d;
}

uint64_t
util_now_us(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail on Linux; if it did, every timer would lie */
    if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0) {
        log_err("clock_gettime(CLOCK_MONOTONIC) failed");
        abort();
    }
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t
util_now_ms(void)
{
    return util_now_us() / 1000u;
}
