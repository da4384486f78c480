/*
 * log: one line per event on stderr. Levels are syslog's numbers (<syslog.h>
 * LOG_ERR..LOG_DEBUG). When stderr is the journal (JOURNAL_STREAM names its
 * device and inode) each line gets a "<N>" priority prefix and no timestamp,
 * which journald parses; otherwise an ISO-8601 UTC timestamp and the level
 * word. The only module with global state: its level and the journal flag.
 */
#ifndef ECHOCHAT_LOG_H
#define ECHOCHAT_LOG_H

#include <stdbool.h>
#include <syslog.h>

/* Set the level and detect whether stderr is the journal. */
void log_init(int level);
/* Override journal detection (tests, and the daemonized child). */
void log_set_journal(bool on);
bool log_is_journal(void);
void log_set_level(int level);
/* True when a message at prio would be written. */
bool log_enabled(int prio);

/* Write one line; fmt has no trailing newline. */
void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)  log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)   log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warn(...)   log_msg(LOG_WARNING, __VA_ARGS__)
#define log_err(...)    log_msg(LOG_ERR, __VA_ARGS__)

#endif
