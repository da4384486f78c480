/*
 * log: formats one line per event and writes it to stderr. It alone knows
 * the two line shapes: "<N>text" when stderr is the journal (journald reads
 * the priority from the prefix and stamps the time itself) and
 * "2026-11-24T04:15:10.123Z info: text" otherwise. Each line leaves in a
 * single write(2) from a stack buffer, so lines from a forked child or a
 * shared terminal never interleave mid-line, and errno is what the caller
 * left it. Its level and journal flag are the daemon's only globals.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Longest line written, newline included; longer messages are cut short
 * and end in "...". Big enough for any event line, small enough for the
 * stack and for a single atomic write to a pipe (PIPE_BUF is 4096). */
#define LOG_LINE_MAX 2048

static int log_level = LOG_INFO;
static bool log_journal;

/* Level words, indexed by syslog priority. */
static const char *const log_words[] = {
    "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

/*
 * systemd sets JOURNAL_STREAM="DEV:INO" (decimal) for a service whose
 * stderr is connected to journald. The variable is inherited by anything
 * the service starts, so it counts only when it names the very file that
 * fd 2 is now: a daemon run by hand from a unit's shell, or with stderr
 * redirected, must keep timestamps.
 */
static bool
log_detect_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    char *end;

    if (js == NULL || js[0] < '0' || js[0] > '9')
        return false;
    errno = 0;
    dev = strtoull(js, &end, 10);
    if (errno != 0 || *end != ':' || end[1] < '0' || end[1] > '9')
        return false;
    ino = strtoull(end + 1, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    if (fstat(STDERR_FILENO, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void
log_init(int level)
{
    int saved = errno;

    log_level = level;
    log_journal = log_detect_journal();
    errno = saved;
}

void
log_set_journal(bool on)
{
    log_journal = on;
}

bool
log_is_journal(void)
{
    return log_journal;
}

void
log_set_level(int level)
{
    log_level = level;
}

bool
log_enabled(int prio)
{
    return LOG_PRI(prio) <= log_level;
}

/* "<N>" for the journal, else the UTC timestamp and the level word.
 * Returns the prefix length. */
static size_t
log_prefix(char *buf, size_t size, int prio)
{
    struct timespec ts;
    struct tm tm;
    size_t n;
    int r;

    if (log_journal) {
        r = snprintf(buf, size, "<%d>", LOG_PRI(prio));
        return r > 0 ? (size_t)r : 0;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(buf + n, size - n, ".%03ldZ %s: ", ts.tv_nsec / 1000000L,
                 log_words[LOG_PRI(prio)]);
    return n + (r > 0 ? (size_t)r : 0);
}

/* Write all of it: retry on EINTR and after a short write (rare on a pipe
 * or terminal, but the line must not be lost in half). A line that cannot
 * be written is dropped: there is nowhere left to report it. */
static void
log_write(const char *buf, size_t len)
{
    ssize_t w;

    while (len > 0) {
        w = write(STDERR_FILENO, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        buf += w;
        len -= (size_t)w;
    }
}

/*
 * Format into one buffer, then one write. Newlines and carriage returns in
 * the message (a peer's address, an error string) become spaces, so one call
 * is one line for journald and for grep. errno is restored before the
 * caller's format runs, so "%m" reports the caller's error, and again on the
 * way out.
 */
void
log_msg(int prio, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    int saved = errno, r;
    size_t n, m, i, room;
    va_list ap;

    if (!log_enabled(prio))
        return;
    n = log_prefix(line, sizeof(line), prio);
    room = sizeof(line) - n - 1; /* keep one byte for the newline */
    errno = saved;
    va_start(ap, fmt);
    r = vsnprintf(line + n, room, fmt, ap);
    va_end(ap);
    if (r < 0) {
        m = (size_t)snprintf(line + n, room, "(unprintable log message)");
    } else if ((size_t)r >= room) {
        m = room - 1;
        memcpy(line + n + m - 3, "...", 3);
    } else {
        m = (size_t)r;
    }
    for (i = n; i < n + m; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[n + m] = '\n';
    log_write(line, n + m + 1);
    errno = saved;
}
