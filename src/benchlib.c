/*
 * benchlib: everything in echochat-bench that can be decided from bytes in
 * memory. The command-line parser is a small table walk rather than
 * getopt_long, because getopt keeps global state and permutes argv, and the
 * tests call the parser many times. Leaf module: libc only.
 */
#include "benchlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mode_names[] = {
    [BENCH_MODE_NONE] = "none",      [BENCH_ECHO_RR] = "echo-rr",
    [BENCH_ECHO_BULK] = "echo-bulk", [BENCH_CHAT_FANOUT] = "chat-fanout",
    [BENCH_IDLE] = "idle",
};

const char *
bench_mode_name(enum bench_mode m)
{
    if ((unsigned)m >= sizeof(mode_names) / sizeof(mode_names[0]))
        return "none";
    return mode_names[m];
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

bool
bench_addr_is_loopback(const struct sockaddr *sa)
{
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;

    if (sa->sa_family == AF_INET)
        return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family != AF_INET6)
        return false;
    if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
        return true;
    return IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) && s6->sin6_addr.s6_addr[12] == 127;
}

/* A port is 1..65535 in plain decimal: "0" would mean "any" to bind, which
 * makes no sense for a target. */
static int
parse_port(const char *s, uint16_t *port)
{
    char *end;
    unsigned long v;

    if (*s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || v == 0 || v > 65535)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

int
bench_addr_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len, char *err,
                 size_t errlen)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)ss;
    char host[128];
    const char *colon, *portstr;
    uint16_t port;

    memset(ss, 0, sizeof(*ss));
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':' || (size_t)(close - text - 1) >= sizeof(host))
            return fail(err, errlen, "target '%s': expected [V6ADDR]:PORT", text);
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        portstr = close + 2;
    } else if ((colon = strrchr(text, ':')) != NULL) {
        if (strchr(text, ':') != colon || (size_t)(colon - text) >= sizeof(host))
            return fail(err, errlen, "target '%s': put an IPv6 address in brackets", text);
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        portstr = colon + 1;
    } else {
        strcpy(host, "127.0.0.1");
        portstr = text;
    }
    if (parse_port(portstr, &port) < 0)
        return fail(err, errlen, "target '%s': '%s' is not a port in 1..65535", text, portstr);
    if (strcmp(host, "localhost") == 0 || host[0] == '\0')
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        *len = sizeof(*s4);
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        *len = sizeof(*s6);
    } else {
        return fail(err, errlen,
                    "target '%s': '%s' is not an IP address (only loopback targets are allowed)",
                    text, host);
    }
    if (!bench_addr_is_loopback((const struct sockaddr *)ss))
        return fail(err, errlen,
                    "target '%s' is not a loopback address: echochat-bench only loads "
                    "127.0.0.0/8 or ::1",
                    text);
    return 0;
}

enum opt_id {
    OPT_CONNS,
    OPT_SIZE,
    OPT_PIPELINE,
    OPT_DURATION,
    OPT_COUNT,
    OPT_HALF_CLOSE,
    OPT_RECEIVERS,
    OPT_SENDERS,
    OPT_RATE,
    OPT_WINDOW,
    OPT_PID,
    OPT_CONNECT_WINDOW,
    OPT_SETUP_TIMEOUT,
    OPT_DRAIN_TIMEOUT,
    OPT_QUIET,
    OPT_HELP,
    OPT_VERSION,
};

struct opt_def {
    const char *lng;
    char shrt;
    bool arg;
    enum opt_id id;
};

static const struct opt_def opt_defs[] = {
    { "conns", 'c', true, OPT_CONNS },
    { "size", 's', true, OPT_SIZE },
    { "pipeline", 'P', true, OPT_PIPELINE },
    { "duration", 'd', true, OPT_DURATION },
    { "count", 'n', true, OPT_COUNT },
    { "half-close", 0, false, OPT_HALF_CLOSE },
    { "receivers", 'r', true, OPT_RECEIVERS },
    { "senders", 'k', true, OPT_SENDERS },
    { "rate", 0, true, OPT_RATE },
    { "window", 'w', true, OPT_WINDOW },
    { "pid", 0, true, OPT_PID },
    { "connect-window", 0, true, OPT_CONNECT_WINDOW },
    { "setup-timeout", 0, true, OPT_SETUP_TIMEOUT },
    { "drain-timeout", 0, true, OPT_DRAIN_TIMEOUT },
    { "quiet", 'q', false, OPT_QUIET },
    { "help", 'h', false, OPT_HELP },
    { "version", 'V', false, OPT_VERSION },
};

static int
parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (*s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

/* Seconds, fractions allowed, into milliseconds within (0, max_ms]. */
static int
parse_secs(const char *s, uint64_t max_ms, uint64_t *out_ms)
{
    char *end;
    double v;

    if ((*s < '0' || *s > '9') && *s != '.')
        return -EINVAL;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || !(v * 1000.0 >= 1.0) || v * 1000.0 > (double)max_ms)
        return -EINVAL;
    *out_ms = (uint64_t)(v * 1000.0 + 0.5);
    return 0;
}

/* Bit per option seen, so per-mode defaults never override what was typed
 * and options that make no sense for the mode are refused, not ignored. */
#define SEEN(id) (1u << (id))

static int
apply_opt(struct bench_opts *o, const struct opt_def *d, const char *name, const char *val,
          char *err, size_t errlen)
{
    uint64_t v = 0;
    int rc = 0;

    switch (d->id) {
    case OPT_CONNS:
        rc = parse_uint(val, 1, BENCH_CONNS_MAX, &v);
        o->conns = (unsigned)v;
        break;
    case OPT_SIZE:
        rc = parse_uint(val, 0, BENCH_SIZE_MAX, &v);
        o->size = (size_t)v;
        break;
    case OPT_PIPELINE:
        rc = parse_uint(val, 1, 4096, &v);
        o->pipeline = (unsigned)v;
        break;
    case OPT_DURATION:
        rc = parse_secs(val, BENCH_DURATION_MAX_MS, &o->duration_ms);
        break;
    case OPT_COUNT:
        rc = parse_uint(val, 1, UINT64_MAX / 2, &o->count);
        break;
    case OPT_RECEIVERS:
        rc = parse_uint(val, 1, BENCH_CONNS_MAX, &v);
        o->receivers = (unsigned)v;
        break;
    case OPT_SENDERS:
        rc = parse_uint(val, 1, 10000, &v);
        o->senders = (unsigned)v;
        break;
    case OPT_RATE:
        rc = parse_uint(val, 1, 10000000, &v);
        o->rate = (unsigned)v;
        break;
    case OPT_WINDOW:
        rc = parse_uint(val, 1, 1000000, &v);
        o->window = (unsigned)v;
        break;
    case OPT_PID:
        rc = parse_uint(val, 1, 0x7fffffff, &v);
        o->pid = (long)v;
        break;
    case OPT_CONNECT_WINDOW:
        rc = parse_uint(val, 1, BENCH_CONNS_MAX, &v);
        o->connect_window = (unsigned)v;
        break;
    case OPT_SETUP_TIMEOUT:
        rc = parse_secs(val, BENCH_WAIT_MAX_MS, &o->setup_ms);
        break;
    case OPT_DRAIN_TIMEOUT:
        rc = parse_secs(val, BENCH_WAIT_MAX_MS, &o->drain_ms);
        break;
    case OPT_HALF_CLOSE:
        o->half_close = true;
        break;
    case OPT_QUIET:
        o->quiet = true;
        break;
    case OPT_HELP:
        o->help = true;
        break;
    case OPT_VERSION:
        o->version = true;
        break;
    }
    if (rc < 0)
        return fail(err, errlen, "%s: bad value '%s'", name, val);
    return 0;
}

static const struct opt_def *
find_long(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof(opt_defs) / sizeof(opt_defs[0]); i++)
        if (strlen(opt_defs[i].lng) == n && memcmp(opt_defs[i].lng, name, n) == 0)
            return &opt_defs[i];
    return NULL;
}

static const struct opt_def *
find_short(char c)
{
    for (size_t i = 0; i < sizeof(opt_defs) / sizeof(opt_defs[0]); i++)
        if (opt_defs[i].shrt == c)
            return &opt_defs[i];
    return NULL;
}

static enum bench_mode
mode_from_name(const char *s)
{
    for (size_t i = 1; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
        if (strcmp(s, mode_names[i]) == 0)
            return (enum bench_mode)i;
    return BENCH_MODE_NONE;
}

/* Which options each mode accepts, beyond the common ones. */
static uint32_t
mode_opts(enum bench_mode m)
{
    const uint32_t common = SEEN(OPT_DURATION) | SEEN(OPT_PID) | SEEN(OPT_CONNECT_WINDOW) |
                            SEEN(OPT_SETUP_TIMEOUT) | SEEN(OPT_DRAIN_TIMEOUT) | SEEN(OPT_QUIET) |
                            SEEN(OPT_HELP) | SEEN(OPT_VERSION);

    switch (m) {
    case BENCH_ECHO_RR:
        return common | SEEN(OPT_CONNS) | SEEN(OPT_SIZE) | SEEN(OPT_PIPELINE) | SEEN(OPT_COUNT);
    case BENCH_ECHO_BULK:
        return common | SEEN(OPT_CONNS) | SEEN(OPT_SIZE) | SEEN(OPT_HALF_CLOSE);
    case BENCH_CHAT_FANOUT:
        return common | SEEN(OPT_SIZE) | SEEN(OPT_COUNT) | SEEN(OPT_RECEIVERS) | SEEN(OPT_SENDERS) |
               SEEN(OPT_RATE) | SEEN(OPT_WINDOW);
    case BENCH_IDLE:
        return common | SEEN(OPT_CONNS);
    case BENCH_MODE_NONE:
        break;
    }
    return common;
}

static void
apply_defaults(struct bench_opts *o, uint32_t seen)
{
    static const unsigned conns[] = {
        [BENCH_ECHO_RR] = 1, [BENCH_ECHO_BULK] = 4, [BENCH_CHAT_FANOUT] = 0, [BENCH_IDLE] = 100
    };
    static const size_t size[] = {
        [BENCH_ECHO_RR] = 64, [BENCH_ECHO_BULK] = 65536, [BENCH_CHAT_FANOUT] = 0, [BENCH_IDLE] = 0
    };

    if (!(seen & SEEN(OPT_CONNS)))
        o->conns = conns[o->mode];
    if (!(seen & SEEN(OPT_SIZE)))
        o->size = size[o->mode];
    if (o->mode == BENCH_CHAT_FANOUT)
        o->conns = o->receivers + o->senders;
    if (o->mode == BENCH_CHAT_FANOUT && !o->rate && !o->window)
        o->window = 1;
}

static void
opts_init(struct bench_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->pipeline = 1;
    o->duration_ms = BENCH_DURATION_DEFAULT_MS;
    o->receivers = 10;
    o->senders = 1;
    o->connect_window = 256;
    o->setup_ms = BENCH_SETUP_DEFAULT_MS;
    o->drain_ms = BENCH_DRAIN_DEFAULT_MS;
}

/* One argument: an option (with its value taken from "=..." or the next
 * argument), or a positional. Returns how many argv entries it used. */
static int
parse_one(struct bench_opts *o, int argc, char *const argv[], int i, uint32_t *seen,
          const char **pos, int *npos, char *err, size_t errlen)
{
    const char *a = argv[i], *val = NULL, *eq;
    const struct opt_def *d;
    int used = 1, rc;

    if (a[0] != '-' || a[1] == '\0') {
        if (*npos >= 2)
            return fail(err, errlen, "unexpected argument '%s'", a);
        pos[(*npos)++] = a;
        return 1;
    }
    if (a[1] == '-') {
        eq = strchr(a + 2, '=');
        d = find_long(a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
        if (eq)
            val = eq + 1;
    } else {
        d = a[2] == '\0' ? find_short(a[1]) : NULL;
    }
    if (!d)
        return fail(err, errlen, "unknown option '%s'", a);
    if (d->arg && !val) {
        if (i + 1 >= argc)
            return fail(err, errlen, "%s needs a value", a);
        val = argv[i + 1];
        used = 2;
    } else if (!d->arg && val) {
        return fail(err, errlen, "%s takes no value", a);
    }
    if ((rc = apply_opt(o, d, a, val, err, errlen)) < 0)
        return rc;
    *seen |= SEEN(d->id);
    return used;
}

int
bench_opts_parse(struct bench_opts *o, int argc, char *const argv[], char *err, size_t errlen)
{
    const char *pos[2] = { NULL, NULL };
    uint32_t seen = 0;
    int npos = 0, rc;

    opts_init(o);
    for (int i = 1; i < argc; i += rc)
        if ((rc = parse_one(o, argc, argv, i, &seen, pos, &npos, err, errlen)) < 0)
            return rc;
    if (o->help || o->version)
        return 0;
    if (npos < 1)
        return fail(err, errlen, "missing mode: echo-rr, echo-bulk, chat-fanout or idle");
    if ((o->mode = mode_from_name(pos[0])) == BENCH_MODE_NONE)
        return fail(err, errlen, "unknown mode '%s': echo-rr, echo-bulk, chat-fanout or idle",
                    pos[0]);
    if (seen & ~mode_opts(o->mode)) {
        for (size_t i = 0; i < sizeof(opt_defs) / sizeof(opt_defs[0]); i++)
            if (seen & ~mode_opts(o->mode) & SEEN(opt_defs[i].id))
                return fail(err, errlen, "--%s does not apply to %s", opt_defs[i].lng, pos[0]);
    }
    if (npos < 2)
        return fail(err, errlen, "missing target [HOST:]PORT");
    if ((rc = bench_addr_parse(pos[1], &o->addr, &o->addrlen, err, errlen)) < 0)
        return rc;
    if (o->rate && o->window)
        return fail(err, errlen, "--rate and --window exclude each other");
    if ((seen & SEEN(OPT_SIZE)) && o->size == 0 && o->mode != BENCH_CHAT_FANOUT)
        return fail(err, errlen, "--size: must be at least 1 for %s", pos[0]);
    if (o->mode == BENCH_CHAT_FANOUT && o->size > 65536)
        return fail(err, errlen, "--size: chat lines are at most 65536 bytes");
    apply_defaults(o, seen);
    return 0;
}

/* Strict decimal field: 1..20 digits, no sign, no overflow; *p advances. */
static bool
field_u64(const char **p, const char *end, uint64_t *out)
{
    uint64_t v = 0;
    const char *s = *p;

    if (s >= end || *s < '0' || *s > '9')
        return false;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *p = s;
    *out = v;
    return true;
}

static bool
field_sep(const char **p, const char *end, char c)
{
    if (*p >= end || **p != c)
        return false;
    (*p)++;
    return true;
}

size_t
bench_token_format(char *buf, size_t cap, const struct bench_token *t)
{
    int n =
        snprintf(buf, cap, "#b:%" PRIu32 ":%" PRIu64 ":%" PRIu64 "#", t->sender, t->seq, t->t_us);

    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

static bool
token_at(const char *s, const char *end, struct bench_token *out)
{
    uint64_t sender, seq, t;

    if (!field_u64(&s, end, &sender) || sender > UINT32_MAX || !field_sep(&s, end, ':') ||
        !field_u64(&s, end, &seq) || !field_sep(&s, end, ':') || !field_u64(&s, end, &t) ||
        !field_sep(&s, end, '#'))
        return false;
    out->sender = (uint32_t)sender;
    out->seq = seq;
    out->t_us = t;
    return true;
}

int
bench_token_find(const char *p, size_t n, struct bench_token *out)
{
    const char *end = p + n, *m = p;
    bool marker = false;

    while ((m = memmem(m, (size_t)(end - m), "#b:", 3)) != NULL) {
        marker = true;
        if (token_at(m + 3, end, out))
            return 1;
        m += 3;
    }
    return marker ? -EBADMSG : 0;
}

size_t
bench_sync_format(char *buf, size_t cap, uint64_t n)
{
    int len = snprintf(buf, cap, "#s:%" PRIu64 "#", n);

    return len < 0 || (size_t)len >= cap ? 0 : (size_t)len;
}

int
bench_sync_find(const char *p, size_t n, uint64_t *out)
{
    const char *end = p + n, *m = p, *s;
    bool marker = false;

    while ((m = memmem(m, (size_t)(end - m), "#s:", 3)) != NULL) {
        marker = true;
        s = m + 3;
        if (field_u64(&s, end, out) && field_sep(&s, end, '#'))
            return 1;
        m += 3;
    }
    return marker ? -EBADMSG : 0;
}

void
bench_hist_init(struct bench_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

static size_t
hist_index(uint64_t v)
{
    unsigned e;

    if (v < BENCH_HIST_EXACT)
        return (size_t)v;
    e = 63u - (unsigned)__builtin_clzll(v); /* 7..63 */
    return BENCH_HIST_EXACT + (size_t)(e - 7) * BENCH_HIST_SUB +
           (size_t)((v >> (e - 6)) - BENCH_HIST_SUB);
}

/* The middle of bucket i's range: halves the worst-case error. */
static uint64_t
hist_value(size_t i)
{
    size_t k;
    unsigned shift;
    uint64_t low;

    if (i < BENCH_HIST_EXACT)
        return i;
    k = i - BENCH_HIST_EXACT;
    shift = (unsigned)(k / BENCH_HIST_SUB) + 1; /* e - 6 */
    low = (uint64_t)(BENCH_HIST_SUB + k % BENCH_HIST_SUB) << shift;
    return low + ((1ull << shift) >> 1);
}

void
bench_hist_add(struct bench_hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->n++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

uint64_t
bench_hist_pct(const struct bench_hist *h, double p)
{
    uint64_t rank, acc = 0, v;
    double r;

    if (h->n == 0)
        return 0;
    /* nearest rank: ceil(p/100 * n); the tiny shrink keeps 99.9% of 10000
     * at rank 9990 although 99.9 / 100 * 10000 is 9990.000000000002 */
    r = p * (double)h->n / 100.0 * (1.0 - 1e-12);
    rank = (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank >= h->n)
        return h->max;
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        acc += h->count[i];
        if (acc >= rank) {
            v = hist_value(i);
            return v < h->min ? h->min : v > h->max ? h->max : v;
        }
    }
    return h->max;
}

void
bench_seq_note(struct bench_seq *s, uint64_t seq, struct bench_tally *t)
{
    t->delivered++;
    if (seq == s->next) {
        s->next++;
    } else if (seq > s->next) {
        t->lost += seq - s->next;
        s->next = seq + 1;
    } else {
        t->reordered++;
        if (t->lost)
            t->lost--;
    }
}

void
bench_seq_finish(const struct bench_seq *s, uint64_t sent, struct bench_tally *t)
{
    if (sent > s->next)
        t->lost += sent - s->next;
}

/* xorshift64*: fast and good enough that no run of bytes repeats within a
 * period; the seed only makes different runs' streams differ. */
int
bench_pattern_init(struct bench_pattern *pat, size_t period, size_t span, uint64_t seed)
{
    uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ull; /* every seed its own non-zero state */

    if (x == 0)
        x = 1;
    pat->data = malloc(period + span);
    if (!pat->data)
        return -ENOMEM;
    pat->period = period;
    pat->span = span;
    for (size_t i = 0; i < period; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        pat->data[i] = (uint8_t)((x * 0x2545F4914F6CDD1Dull) >> 56);
    }
    for (size_t i = 0; i < span; i++)
        pat->data[period + i] = pat->data[i % period];
    return 0;
}

void
bench_pattern_fini(struct bench_pattern *pat)
{
    free(pat->data);
    pat->data = NULL;
}

const uint8_t *
bench_pattern_at(const struct bench_pattern *pat, uint64_t off)
{
    return pat->data + off % pat->period;
}

size_t
bench_pattern_check(const struct bench_pattern *pat, uint64_t off, const uint8_t *got, size_t n)
{
    const uint8_t *want = bench_pattern_at(pat, off);

    if (memcmp(want, got, n) == 0)
        return n;
    for (size_t i = 0; i < n; i++)
        if (want[i] != got[i])
            return i;
    return n;
}

/* The command name (field 2) may hold spaces and parentheses, so fields are
 * counted from the last ')'. utime and stime are fields 14 and 15. */
int
bench_parse_stat_ticks(const char *text, uint64_t *ticks)
{
    const char *p = strrchr(text, ')');
    unsigned long long ut, st;

    if (!p)
        return -EINVAL;
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -EINVAL;
    *ticks = ut + st;
    return 0;
}

int
bench_parse_statm_rss(const char *text, uint64_t *pages)
{
    unsigned long long size, rss;

    if (sscanf(text, "%llu %llu", &size, &rss) != 2)
        return -EINVAL;
    *pages = rss;
    return 0;
}
