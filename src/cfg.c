/*
 * cfg: turns argv into a struct cfg. It owns the command-line contract of
 * SPEC §1: every option, its default and the range each value must fall in.
 * A leaf: libc only, no logging, no I/O. An error comes back as -EINVAL plus
 * one line of text that starts with the flag's long form (or the quoted
 * unknown argument), so that main can print it as is and exit 64. Values the
 * user typed are quoted with control bytes escaped, so the line stays one
 * line whatever argv holds.
 */
#include "cfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

/* Long-only options get values above any char, so one switch covers all. */
enum {
    OPT_KA_IDLE = 256,
    OPT_KA_INTERVAL,
    OPT_KA_COUNT,
    OPT_NO_KEEPALIVE,
    OPT_USER_TIMEOUT,
    OPT_IDLE_TIMEOUT,
    OPT_MAX_CLIENTS,
    OPT_MAX_PER_IP,
    OPT_MAX_LINE,
    OPT_MAX_OUTPUT,
    OPT_RATE_LIMIT,
    OPT_HISTORY,
    OPT_ANNOUNCE_MAX,
    OPT_BACKLOG,
    OPT_SHUTDOWN_TIMEOUT,
};

/*
 * "+" stops at the first non-option instead of permuting argv, so a stray
 * argument is reported where the user put it; ":" makes getopt return ':'
 * for a missing value, which we word ourselves (opterr is 0).
 */
static const char cfg_shortopts[] = "+:c:e:Dp:l:hV";

static const struct option cfg_longopts[] = {
    { "chat", required_argument, NULL, 'c' },
    { "echo", required_argument, NULL, 'e' },
    { "keepalive-idle", required_argument, NULL, OPT_KA_IDLE },
    { "keepalive-interval", required_argument, NULL, OPT_KA_INTERVAL },
    { "keepalive-count", required_argument, NULL, OPT_KA_COUNT },
    { "no-keepalive", no_argument, NULL, OPT_NO_KEEPALIVE },
    { "user-timeout", required_argument, NULL, OPT_USER_TIMEOUT },
    { "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
    { "max-clients", required_argument, NULL, OPT_MAX_CLIENTS },
    { "max-per-ip", required_argument, NULL, OPT_MAX_PER_IP },
    { "max-line", required_argument, NULL, OPT_MAX_LINE },
    { "max-output", required_argument, NULL, OPT_MAX_OUTPUT },
    { "rate-limit", required_argument, NULL, OPT_RATE_LIMIT },
    { "history", required_argument, NULL, OPT_HISTORY },
    { "announce-max", required_argument, NULL, OPT_ANNOUNCE_MAX },
    { "backlog", required_argument, NULL, OPT_BACKLOG },
    { "shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN_TIMEOUT },
    { "daemonize", no_argument, NULL, 'D' },
    { "pid-file", required_argument, NULL, 'p' },
    { "log-level", required_argument, NULL, 'l' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
};

/*
 * Accepted ranges. The keepalive bounds are the kernel's own (TCP_KEEPIDLE
 * and TCP_KEEPINTVL at most MAX_TCP_KEEPIDLE 32767, TCP_KEEPCNT at most 127),
 * so a value we accept never fails in setsockopt. TCP_USER_TIMEOUT is an int
 * in the kernel. The rest are sanity caps: a year of idle timeout, a million
 * clients, 1 GiB of output per client.
 */
#define CFG_USER_TIMEOUT_MAX 2147483647ULL

static const struct cfg_range {
    int val;
    unsigned long long min, max;
} cfg_ranges[] = {
    { OPT_KA_IDLE, 1, 32767 },
    { OPT_KA_INTERVAL, 1, 32767 },
    { OPT_KA_COUNT, 1, 127 },
    { OPT_USER_TIMEOUT, 0, CFG_USER_TIMEOUT_MAX },
    { OPT_IDLE_TIMEOUT, 0, 31536000 },
    { OPT_MAX_CLIENTS, 1, 1000000 },
    { OPT_MAX_PER_IP, 0, 1000000 },
    { OPT_MAX_LINE, 16, 1048576 },
    { OPT_MAX_OUTPUT, 1024, 1073741824 },
    { OPT_RATE_LIMIT, 0, 1000000 },
    { OPT_HISTORY, 0, 10000 },
    { OPT_ANNOUNCE_MAX, 0, 1000000 },
    { OPT_BACKLOG, 1, 65535 },
    { OPT_SHUTDOWN_TIMEOUT, 0, 3600 },
};

static const struct cfg_level {
    const char *name;
    int level;
} cfg_levels[] = {
    { "debug", LOG_DEBUG },     { "info", LOG_INFO }, { "notice", LOG_NOTICE },
    { "warning", LOG_WARNING }, { "error", LOG_ERR },
};

/* Which flags were given: the checks made after the loop need to know. */
struct cfg_seen {
    bool user_timeout;
    int keepalive_flag; /* the last --keepalive-* seen, 0 = none */
};

#define CFG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* Longest piece of user text echoed back in a message, before "..." */
#define CFG_QUOTE_MAX 48

static const char cfg_usage_text[] =
    "Usage: echochatd [OPTION]...\n"
    "A TCP chat server for telnet and nc, and an RFC 862 echo server.\n"
    "\n"
    "Listeners; each may repeat, at most 32 in all (default: --chat 2323).\n"
    "ADDR is an IPv4 address, a bracketed IPv6 address ([::1]:2323) or a host\n"
    "name; without ADDR, all interfaces. PORT is 0..65535; 0 picks a free port.\n"
    "  -c, --chat [ADDR:]PORT       serve chat\n"
    "  -e, --echo [ADDR:]PORT       serve echo (RFC 862)\n"
    "\n"
    "TCP keepalive, set on every accepted connection:\n"
    "      --keepalive-idle SECS    idle time before the first probe\n"
    "                               (default 60, range 1..32767)\n"
    "      --keepalive-interval SECS\n"
    "                               time between probes\n"
    "                               (default 10, range 1..32767)\n"
    "      --keepalive-count N      unanswered probes before the peer is dead\n"
    "                               (default 6, range 1..127)\n"
    "      --no-keepalive           do not set SO_KEEPALIVE; cannot be combined\n"
    "                               with the --keepalive-* options\n"
    "      --user-timeout MS        TCP_USER_TIMEOUT: drop a peer that leaves\n"
    "                               sent data unacknowledged this long;\n"
    "                               0 = kernel default (default: (idle +\n"
    "                               interval * count) * 1000, capped at the\n"
    "                               maximum; range 0..2147483647)\n"
    "      --idle-timeout SECS      disconnect a client silent for SECS;\n"
    "                               0 = off (default 0, range 0..31536000)\n"
    "\n"
    "Limits:\n"
    "      --max-clients N          connections across all listeners\n"
    "                               (default 10000, range 1..1000000)\n"
    "      --max-per-ip N           connections from one address; 0 = off\n"
    "                               (default 0, range 0..1000000)\n"
    "      --max-line BYTES         longest chat line\n"
    "                               (default 4096, range 16..1048576)\n"
    "      --max-output BYTES       unsent output one client may hold; at\n"
    "                               least --max-line\n"
    "                               (default 1048576, range 1024..1073741824)\n"
    "      --rate-limit LINES       chat lines per second per client, burst 5x;\n"
    "                               0 = off (default 20, range 0..1000000)\n"
    "      --history N              chat lines replayed on joining a room;\n"
    "                               0 = off (default 20, range 0..10000)\n"
    "      --announce-max N         announce joins, parts and nick changes only\n"
    "                               in rooms of at most N members; 0 = never\n"
    "                               (default 100, range 0..1000000)\n"
    "      --backlog N              listen() backlog\n"
    "                               (default 511, range 1..65535)\n"
    "      --shutdown-timeout SECS  how long a graceful shutdown waits for\n"
    "                               output to drain (default 5, range 0..3600)\n"
    "\n"
    "Process:\n"
    "  -D, --daemonize              detach (fork, setsid, fork); the default is\n"
    "                               to stay in the foreground, as systemd wants\n"
    "  -p, --pid-file FILE          write the PID to FILE and lock it; refuse to\n"
    "                               start if a live instance holds it\n"
    "  -l, --log-level LEVEL        debug, info, notice, warning or error\n"
    "                               (default info)\n"
    "  -h, --help                   print this help and exit\n"
    "  -V, --version                print the version and exit\n"
    "\n"
    "Exit status: 0 on success, 64 for a bad option, value or combination,\n"
    "71 when a listener cannot be opened.\n";

const char *
cfg_usage(void)
{
    return cfg_usage_text;
}

void
cfg_defaults(struct cfg *c)
{
    memset(c, 0, sizeof(*c));
    c->keepalive = true;
    c->keepalive_idle = 60;
    c->keepalive_interval = 10;
    c->keepalive_count = 6;
    c->user_timeout_ms = (60 + 10 * 6) * 1000;
    c->idle_timeout = 0;
    c->max_clients = 10000;
    c->max_per_ip = 0;
    c->max_line = 4096;
    c->max_output = 1048576;
    c->rate_limit = 20;
    c->history = 20;
    c->announce_max = 100;
    c->backlog = 511;
    c->shutdown_timeout = 5;
    c->daemonize = false;
    c->pid_file = NULL;
    c->log_level = LOG_INFO;
}

static int cfg_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fill err (if the caller gave room) and return -EINVAL, so every error
 * path is one statement. */
static int
cfg_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/*
 * Quote user text for a message: surrounding double quotes, control bytes,
 * quote and backslash escaped, and at most CFG_QUOTE_MAX bytes of input
 * shown before "...". argv can hold anything, including newlines, and the
 * error must stay one readable line.
 */
static const char *
cfg_quote(char *dst, size_t n, const char *s)
{
    size_t o = 0, i;

    /* worst case per input byte is 4 ("\xNN"), plus quotes, "..." and NUL */
    if (n < CFG_QUOTE_MAX * 4 + 6)
        return "\"?\"";
    dst[o++] = '"';
    for (i = 0; s[i] != '\0' && i < CFG_QUOTE_MAX; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch == '"' || ch == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            o += (size_t)snprintf(dst + o, n - o, "\\x%02x", ch);
        } else {
            dst[o++] = (char)ch;
        }
    }
    dst[o++] = '"';
    if (s[i] != '\0') {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
    return dst;
}

/*
 * Strict decimal: one or more ASCII digits and nothing else. strtoull alone
 * would accept " 5", "+5", "5x" (stopping early) and turn "-1" into
 * ULLONG_MAX, so the digits are checked first and strtoull is only left to
 * report overflow. Returns 0, -EINVAL (not a number) or -ERANGE.
 */
static int
cfg_decimal(const char *s, unsigned long long *out)
{
    unsigned long long v;
    const char *p;
    int saved = errno, rc = 0;

    if (*s == '\0')
        return -EINVAL;
    for (p = s; *p != '\0'; p++)
        if (*p < '0' || *p > '9')
            return -EINVAL;
    errno = 0;
    v = strtoull(s, NULL, 10);
    if (errno == ERANGE)
        rc = -ERANGE;
    errno = saved;
    *out = v;
    return rc;
}

/* The long name (without "--") of an option value, for messages; NULL when
 * val is no option of ours. */
static const char *
cfg_flag_name(int val)
{
    size_t i;

    for (i = 0; cfg_longopts[i].name != NULL; i++)
        if (cfg_longopts[i].val == val)
            return cfg_longopts[i].name;
    return NULL;
}

static const struct cfg_range *
cfg_range_of(int val)
{
    size_t i;

    for (i = 0; i < CFG_ARRAY_LEN(cfg_ranges); i++)
        if (cfg_ranges[i].val == val)
            return &cfg_ranges[i];
    return NULL;
}

/* Parse a numeric option's value against its range; the message names the
 * flag and says what was wrong with the value. */
static int
cfg_number(int val, const char *arg, unsigned long long *out, char *err, size_t errlen)
{
    const struct cfg_range *r = cfg_range_of(val);
    char q[CFG_QUOTE_MAX * 4 + 8];
    int rc;

    rc = cfg_decimal(arg, out);
    if (rc == -EINVAL)
        return cfg_fail(err, errlen, "--%s: %s is not a decimal number", cfg_flag_name(val),
                        cfg_quote(q, sizeof(q), arg));
    if (rc < 0 || *out < r->min || *out > r->max)
        return cfg_fail(err, errlen, "--%s: %s is out of range %llu..%llu", cfg_flag_name(val),
                        cfg_quote(q, sizeof(q), arg), r->min, r->max);
    return 0;
}

/* Store a range-checked number; every range fits its field. */
static void
cfg_store(struct cfg *c, int val, unsigned long long v)
{
    switch (val) {
    case OPT_KA_IDLE:
        c->keepalive_idle = (int)v;
        break;
    case OPT_KA_INTERVAL:
        c->keepalive_interval = (int)v;
        break;
    case OPT_KA_COUNT:
        c->keepalive_count = (int)v;
        break;
    case OPT_USER_TIMEOUT:
        c->user_timeout_ms = (unsigned)v;
        break;
    case OPT_IDLE_TIMEOUT:
        c->idle_timeout = (unsigned)v;
        break;
    case OPT_MAX_CLIENTS:
        c->max_clients = (unsigned)v;
        break;
    case OPT_MAX_PER_IP:
        c->max_per_ip = (unsigned)v;
        break;
    case OPT_MAX_LINE:
        c->max_line = (size_t)v;
        break;
    case OPT_MAX_OUTPUT:
        c->max_output = (size_t)v;
        break;
    case OPT_RATE_LIMIT:
        c->rate_limit = (unsigned)v;
        break;
    case OPT_HISTORY:
        c->history = (unsigned)v;
        break;
    case OPT_ANNOUNCE_MAX:
        c->announce_max = (unsigned)v;
        break;
    case OPT_BACKLOG:
        c->backlog = (int)v;
        break;
    case OPT_SHUTDOWN_TIMEOUT:
        c->shutdown_timeout = (unsigned)v;
        break;
    default:
        break;
    }
}

static bool
cfg_host_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '-';
}

/*
 * A bracketed IPv6 literal, without the brackets: hex digits, ':' and '.'
 * (for ::ffff:1.2.3.4), then optionally %zone naming an interface. The
 * address part must also pass inet_pton, so "[1:2]" fails here with a clear
 * message rather than later in getaddrinfo.
 */
static int
cfg_check_ipv6(const char *spec, const char *host, char *err, size_t errlen)
{
    char q[CFG_QUOTE_MAX * 4 + 8], addr[INET6_ADDRSTRLEN + 1];
    struct in6_addr a6;
    const char *zone = strchr(host, '%');
    size_t alen = zone != NULL ? (size_t)(zone - host) : strlen(host);
    size_t i;

    if (alen == 0 || alen >= sizeof(addr))
        return cfg_fail(err, errlen, "%s: not an IPv6 address inside [ ]",
                        cfg_quote(q, sizeof(q), spec));
    memcpy(addr, host, alen);
    addr[alen] = '\0';
    if (inet_pton(AF_INET6, addr, &a6) != 1)
        return cfg_fail(err, errlen, "%s: not an IPv6 address inside [ ]",
                        cfg_quote(q, sizeof(q), spec));
    if (zone == NULL)
        return 0;
    /* an interface name: IF_NAMESIZE - 1 bytes at most */
    if (zone[1] == '\0' || strlen(zone + 1) > 15)
        return cfg_fail(err, errlen, "%s: bad IPv6 zone after \"%%\"",
                        cfg_quote(q, sizeof(q), spec));
    for (i = 1; zone[i] != '\0'; i++)
        if (!cfg_host_char_ok(zone[i]) && zone[i] != '_')
            return cfg_fail(err, errlen, "%s: bad IPv6 zone after \"%%\"",
                            cfg_quote(q, sizeof(q), spec));
    return 0;
}

/* A host name or IPv4 address: letters, digits, '.' and '-'. A ':' means
 * an IPv6 address without brackets; the message shows the spec rewritten
 * with them, since that is what the user meant. */
static int
cfg_check_host(const char *spec, const char *host, const char *port, char *err, size_t errlen)
{
    char q[CFG_QUOTE_MAX * 4 + 8], fix[CFG_QUOTE_MAX * 4 + 8], want[CFG_HOST_MAX + 16];
    size_t i;

    for (i = 0; host[i] != '\0'; i++) {
        if (cfg_host_char_ok(host[i]))
            continue;
        if (host[i] == ':') {
            snprintf(want, sizeof(want), "[%s]:%.5s", host, port);
            return cfg_fail(err, errlen, "%s: put an IPv6 address in brackets: %s",
                            cfg_quote(q, sizeof(q), spec), cfg_quote(fix, sizeof(fix), want));
        }
        return cfg_fail(err, errlen,
                        "%s: bad character in host (allowed: letters, digits, \".\", \"-\")",
                        cfg_quote(q, sizeof(q), spec));
    }
    return 0;
}

static int
cfg_port(const char *spec, const char *port, struct cfg_listen *out, char *err, size_t errlen)
{
    char q[CFG_QUOTE_MAX * 4 + 8];
    unsigned long long v;
    int rc;

    if (*port == '\0')
        return cfg_fail(err, errlen, "%s: missing port; expected [ADDR:]PORT",
                        cfg_quote(q, sizeof(q), spec));
    rc = cfg_decimal(port, &v);
    if (rc == -EINVAL)
        return cfg_fail(err, errlen, "%s: port is not a decimal number; expected [ADDR:]PORT",
                        cfg_quote(q, sizeof(q), spec));
    if (rc < 0 || v > 65535)
        return cfg_fail(err, errlen, "%s: port is out of range 0..65535",
                        cfg_quote(q, sizeof(q), spec));
    /* normalised, so "0002323" still fits the 6-byte field */
    snprintf(out->port, sizeof(out->port), "%u", (unsigned)v);
    return 0;
}

/*
 * "[ADDR:]PORT". The split is on the last ':' of an unbracketed spec; a
 * spec with more than one ':' outside brackets must be an IPv6 address that
 * lost its brackets, and saying so is more useful than "bad host". ":PORT"
 * (empty ADDR) means all interfaces, like plain "PORT".
 */
int
cfg_parse_listen(const char *spec, struct cfg_listen *out, char *err, size_t errlen)
{
    char q[CFG_QUOTE_MAX * 4 + 8];
    const char *port, *colon;
    size_t hlen;
    int rc;

    memset(out, 0, sizeof(*out));
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');

        if (close == NULL)
            return cfg_fail(err, errlen, "%s: missing \"]\" after the IPv6 address",
                            cfg_quote(q, sizeof(q), spec));
        if (close[1] == '\0')
            return cfg_fail(err, errlen, "%s: missing \":PORT\" after \"]\"",
                            cfg_quote(q, sizeof(q), spec));
        if (close[1] != ':')
            return cfg_fail(err, errlen, "%s: expected \":PORT\" after \"]\"",
                            cfg_quote(q, sizeof(q), spec));
        hlen = (size_t)(close - spec - 1);
        if (hlen >= sizeof(out->host))
            return cfg_fail(err, errlen, "%s: address is longer than %zu bytes",
                            cfg_quote(q, sizeof(q), spec), sizeof(out->host) - 1);
        memcpy(out->host, spec + 1, hlen);
        out->host[hlen] = '\0';
        if ((rc = cfg_check_ipv6(spec, out->host, err, errlen)) < 0)
            return rc;
        port = close + 2;
    } else if ((colon = strrchr(spec, ':')) != NULL) {
        hlen = (size_t)(colon - spec);
        if (hlen >= sizeof(out->host))
            return cfg_fail(err, errlen, "%s: host is longer than %zu bytes",
                            cfg_quote(q, sizeof(q), spec), sizeof(out->host) - 1);
        memcpy(out->host, spec, hlen);
        out->host[hlen] = '\0';
        if ((rc = cfg_check_host(spec, out->host, colon + 1, err, errlen)) < 0)
            return rc;
        port = colon + 1;
    } else {
        port = spec;
    }
    return cfg_port(spec, port, out, err, errlen);
}

static int
cfg_add_listen(struct cfg *c, int val, const char *arg, char *err, size_t errlen)
{
    char sub[512];
    int rc;

    if (c->nlisten >= CFG_LISTEN_MAX)
        return cfg_fail(err, errlen, "--%s: too many listeners (at most %d)", cfg_flag_name(val),
                        CFG_LISTEN_MAX);
    rc = cfg_parse_listen(arg, &c->listen[c->nlisten], sub, sizeof(sub));
    if (rc < 0)
        return cfg_fail(err, errlen, "--%s: %s", cfg_flag_name(val), sub);
    c->listen[c->nlisten].proto = val == 'e' ? CFG_PROTO_ECHO : CFG_PROTO_CHAT;
    c->nlisten++;
    return 0;
}

static int
cfg_log_level(struct cfg *c, const char *arg, char *err, size_t errlen)
{
    char q[CFG_QUOTE_MAX * 4 + 8];
    size_t i;

    for (i = 0; i < CFG_ARRAY_LEN(cfg_levels); i++) {
        if (strcmp(arg, cfg_levels[i].name) == 0) {
            c->log_level = cfg_levels[i].level;
            return 0;
        }
    }
    return cfg_fail(err, errlen,
                    "--log-level: %s is not one of debug, info, notice, warning, error",
                    cfg_quote(q, sizeof(q), arg));
}

/*
 * getopt said '?' or ':'. With opterr = 0 the wording is ours: a known
 * option is named by its long form; an unknown one is quoted as typed.
 * glibc sets optopt to the option's value for a missing value (':') and for
 * a value given to a flag that takes none ("--daemonize=1"); to the
 * character for an unknown short option; and to 0 for an unknown or
 * ambiguous long option, which is then argv[optind - 1].
 */
static int
cfg_getopt_error(int opt, int argc, char *argv[], char *err, size_t errlen)
{
    char q[CFG_QUOTE_MAX * 4 + 8], name[CFG_QUOTE_MAX + 1];
    const char *arg;
    size_t i, n, matches = 0;

    const char *known = optopt != 0 ? cfg_flag_name(optopt) : NULL;

    if (opt == ':' && known != NULL)
        return cfg_fail(err, errlen, "--%s: missing value", known);
    if (known != NULL)
        return cfg_fail(err, errlen, "--%s: takes no value", known);
    if (optopt != 0) {
        char s[3] = { '-', (char)optopt, '\0' };

        return cfg_fail(err, errlen, "%s: unknown option", cfg_quote(q, sizeof(q), s));
    }
    arg = optind >= 1 && optind <= argc ? argv[optind - 1] : "";
    /* "--frobnicate=5": name the option, not its value */
    n = strcspn(arg, "=");
    if (n > CFG_QUOTE_MAX)
        n = CFG_QUOTE_MAX;
    memcpy(name, arg, n);
    name[n] = '\0';
    for (i = 0; cfg_longopts[i].name != NULL && n > 2; i++)
        if (strncmp(cfg_longopts[i].name, name + 2, n - 2) == 0)
            matches++;
    if (matches > 1)
        return cfg_fail(err, errlen, "%s: ambiguous option; spell it out",
                        cfg_quote(q, sizeof(q), name));
    return cfg_fail(err, errlen, "%s: unknown option", cfg_quote(q, sizeof(q), name));
}

/*
 * Combinations that only make sense once every flag is read: keepalive
 * tuning with keepalive off, an output limit that cannot hold one line, and
 * the derived user timeout, which follows the final keepalive values
 * whatever order the flags came in.
 */
static int
cfg_finish(struct cfg *c, const struct cfg_seen *seen, char *err, size_t errlen)
{
    unsigned long long ut;

    if (!c->keepalive && seen->keepalive_flag != 0)
        return cfg_fail(err, errlen, "--no-keepalive: cannot be combined with --%s",
                        cfg_flag_name(seen->keepalive_flag));
    /* --max-line's maximum is --max-output's default, so only an explicit
     * --max-output can be the one that is too small */
    if (c->max_output < c->max_line)
        return cfg_fail(err, errlen, "--max-output: %zu is smaller than --max-line %zu",
                        c->max_output, c->max_line);
    if (!seen->user_timeout) {
        /* at most (32767 + 32767 * 127) * 1000, which overflows an int: cap */
        ut = ((unsigned long long)c->keepalive_idle +
              (unsigned long long)c->keepalive_interval * (unsigned long long)c->keepalive_count) *
             1000ULL;
        c->user_timeout_ms = (unsigned)(ut > CFG_USER_TIMEOUT_MAX ? CFG_USER_TIMEOUT_MAX : ut);
    }
    return 0;
}

/* One option with its value; numeric options share one path. */
static int
cfg_option(struct cfg *c, struct cfg_seen *seen, int opt, const char *arg, char *err, size_t errlen)
{
    unsigned long long v;
    int rc;

    switch (opt) {
    case 'c':
    case 'e':
        return cfg_add_listen(c, opt, arg, err, errlen);
    case 'D':
        c->daemonize = true;
        return 0;
    case 'p':
        if (*arg == '\0')
            return cfg_fail(err, errlen, "--pid-file: empty file name");
        c->pid_file = arg;
        return 0;
    case 'l':
        return cfg_log_level(c, arg, err, errlen);
    case OPT_NO_KEEPALIVE:
        c->keepalive = false;
        return 0;
    default:
        break;
    }
    if (cfg_range_of(opt) == NULL)
        return cfg_fail(err, errlen, "internal error: option %d not handled", opt);
    if ((rc = cfg_number(opt, arg, &v, err, errlen)) < 0)
        return rc;
    cfg_store(c, opt, v);
    if (opt == OPT_KA_IDLE || opt == OPT_KA_INTERVAL || opt == OPT_KA_COUNT)
        seen->keepalive_flag = opt;
    seen->user_timeout |= opt == OPT_USER_TIMEOUT;
    return 0;
}

/*
 * getopt_long keeps its position in globals; optind = 0 makes glibc start
 * over completely (including the position inside a cluster like "-Dx"), so
 * a second call, as in the unit tests, parses its own argv from the start.
 */
int
cfg_parse(struct cfg *c, int argc, char *argv[], char *err, size_t errlen)
{
    struct cfg_seen seen = { 0 };
    char q[CFG_QUOTE_MAX * 4 + 8];
    int opt, rc;

    cfg_defaults(c);
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (argc < 1 || argv == NULL)
        return CFG_RUN;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, cfg_shortopts, cfg_longopts, NULL)) != -1) {
        if (opt == 'h')
            return CFG_HELP;
        if (opt == 'V')
            return CFG_VERSION;
        if (opt == '?' || opt == ':')
            return cfg_getopt_error(opt, argc, argv, err, errlen);
        if ((rc = cfg_option(c, &seen, opt, optarg, err, errlen)) < 0)
            return rc;
    }
    if (optind < argc)
        return cfg_fail(err, errlen, "%s: unexpected argument; options start with \"-\"",
                        cfg_quote(q, sizeof(q), argv[optind]));
    if ((rc = cfg_finish(c, &seen, err, errlen)) < 0)
        return rc;
    return CFG_RUN;
}
