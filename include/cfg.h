/*
 * cfg: argv to struct cfg, every value range-checked. Leaf module: it prints
 * nothing; an error comes back as -EINVAL with one line of text, naming the
 * flag, in the caller's buffer (main prints it and exits 64).
 */
#ifndef ECHOCHAT_CFG_H
#define ECHOCHAT_CFG_H

#include <stdbool.h>
#include <stddef.h>

#define CFG_LISTEN_MAX   32
#define CFG_HOST_MAX     256
#define CFG_DEFAULT_PORT "2323"

enum cfg_proto { CFG_PROTO_CHAT, CFG_PROTO_ECHO };

struct cfg_listen {
    enum cfg_proto proto;
    char host[CFG_HOST_MAX]; /* "" = all interfaces; no brackets for IPv6 */
    char port[6];            /* decimal 0..65535 */
};

struct cfg {
    struct cfg_listen listen[CFG_LISTEN_MAX];
    size_t nlisten; /* 0: none given (the server then uses --chat 2323) */

    bool keepalive;            /* false with --no-keepalive */
    int keepalive_idle;        /* s, default 60 */
    int keepalive_interval;    /* s, default 10 */
    int keepalive_count;       /* default 6 */
    unsigned user_timeout_ms;  /* default (idle + interval * count) * 1000 */
    unsigned idle_timeout;     /* s, 0 = off */
    unsigned max_clients;      /* default 10000 */
    unsigned max_per_ip;       /* 0 = off */
    size_t max_line;           /* bytes, default 4096 */
    size_t max_output;         /* bytes, default 1 MiB */
    unsigned rate_limit;       /* lines/s, 0 = off, default 20 */
    unsigned history;          /* lines, default 20 */
    unsigned announce_max;     /* members, default 100, 0 = never */
    int backlog;               /* default 511 */
    unsigned shutdown_timeout; /* s, default 5 */
    bool daemonize;
    const char *pid_file; /* points into argv; NULL = none */
    int log_level;        /* LOG_DEBUG..LOG_ERR from <syslog.h> */
};

enum { CFG_RUN = 0, CFG_HELP = 1, CFG_VERSION = 2 };

/* Fill every field with its default. */
void cfg_defaults(struct cfg *c);
/* Parse argv (argv[0] is the program name) on top of the defaults, which it
 * sets itself. Returns CFG_RUN, CFG_HELP or CFG_VERSION, or -EINVAL with a
 * one-line message (no newline) starting with the offending flag's long
 * form, or the quoted unknown argument, in err (err may be NULL). Resets
 * getopt, so it may be called again; not thread-safe (getopt globals). */
int cfg_parse(struct cfg *c, int argc, char *argv[], char *err, size_t errlen);
/* Parse "[ADDR:]PORT" ("2323", "127.0.0.1:7", "[::1]:7", "host:7"; ":7"
 * is all interfaces). Returns 0 or -EINVAL with err filled: one line that
 * starts with the quoted spec; the caller prefixes the flag. */
int cfg_parse_listen(const char *spec, struct cfg_listen *out, char *err, size_t errlen);
/* The --help text, ending in a newline. */
const char *cfg_usage(void);

#endif
