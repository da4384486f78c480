/*
 * benchlib: the pure parts of echochat-bench, kept apart from its sockets so
 * they can be tested with plain arrays: the command line into a struct
 * (including the loopback-only rule for targets), the chat token that rides in
 * every fan-out message, latency percentiles, per-stream loss and reordering
 * accounting, the verification pattern for echo streams and the /proc parsers.
 * Leaf module: libc only, no I/O, no clock, no logging.
 */
#ifndef ECHOCHAT_BENCHLIB_H
#define ECHOCHAT_BENCHLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum bench_mode {
    BENCH_MODE_NONE = 0,
    BENCH_ECHO_RR,
    BENCH_ECHO_BULK,
    BENCH_CHAT_FANOUT,
    BENCH_IDLE,
};

#define BENCH_DURATION_DEFAULT_MS 5000u
#define BENCH_DURATION_MAX_MS     600000u /* hard cap on --duration: 10 minutes */
#define BENCH_SETUP_DEFAULT_MS    30000u  /* connecting (and joining) must finish by then */
#define BENCH_DRAIN_DEFAULT_MS    5000u   /* after the run, owed bytes/lines must arrive by then */
#define BENCH_WAIT_MAX_MS         120000u /* cap on --setup-timeout and --drain-timeout */
#define BENCH_CONNS_MAX           1000000u
#define BENCH_SIZE_MAX            (1u << 20)
#define BENCH_EX_USAGE            64

struct bench_opts {
    enum bench_mode mode;
    struct sockaddr_storage addr; /* the target; always loopback */
    socklen_t addrlen;
    unsigned conns;          /* echo-rr, echo-bulk, idle */
    size_t size;             /* rr message, bulk write chunk, chat line length (0: token only) */
    unsigned pipeline;       /* echo-rr messages in flight per connection */
    uint64_t duration_ms;    /* measuring (or, for idle, holding) time */
    uint64_t count;          /* echo-rr: round trips in total; chat: messages per sender; 0 = off */
    bool half_close;         /* echo-bulk: shutdown(SHUT_WR) at the end, expect all bytes + EOF */
    unsigned receivers;      /* chat-fanout */
    unsigned senders;        /* chat-fanout */
    unsigned rate;           /* chat: messages/s per sender; 0 = window mode */
    unsigned window;         /* chat: messages per sender not yet delivered to every receiver */
    long pid;                /* server PID for /proc figures; 0 = none */
    unsigned connect_window; /* connections set up at once (not yet confirmed) */
    uint64_t setup_ms;
    uint64_t drain_ms;
    bool quiet; /* no progress line even on a terminal */
    bool help;
    bool version;
};

/* Fill o from argv (argv[0] is the program name): MODE [OPTION]... [HOST:]PORT.
 * Returns 0, or -EINVAL with one line naming the bad argument in err. With
 * --help or --version, returns 0 with o->help / o->version set and nothing
 * else checked. */
int bench_opts_parse(struct bench_opts *o, int argc, char *const argv[], char *err, size_t errlen);

/* Parse "PORT", "HOST:PORT" or "[V6]:PORT"; HOST is an IPv4 or IPv6 literal
 * or "localhost". Anything that is not loopback (127.0.0.0/8, ::1,
 * ::ffff:127.0.0.0/104) is refused. Returns 0 or -EINVAL with text in err. */
int bench_addr_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len, char *err,
                     size_t errlen);
bool bench_addr_is_loopback(const struct sockaddr *sa);

/* The mode's name as typed on the command line ("echo-rr"...). */
const char *bench_mode_name(enum bench_mode m);

/* Chat token "#b:<sender>:<seq>:<send_time_us>#": found anywhere in a line,
 * so a server may prefix, suffix or re-terminate lines at will. */
struct bench_token {
    uint32_t sender;
    uint64_t seq;
    uint64_t t_us;
};

#define BENCH_TOKEN_MAX 72 /* "#b:" + 10 + ":" + 20 + ":" + 20 + "#" + NUL, rounded up */

/* Write the token and a NUL into buf[cap]. Returns its length (without the
 * NUL), or 0 when cap is too small. */
size_t bench_token_format(char *buf, size_t cap, const struct bench_token *t);
/* Find the first well-formed token in p[n]. Returns 1 (out filled), 0 when
 * there is no "#b:" marker at all, -EBADMSG when markers exist but none is
 * well-formed (a server mangled it: corruption). */
int bench_token_find(const char *p, size_t n, struct bench_token *out);

/* The fan-out's start-up probe "#s:<n>#", same rules as the token. */
size_t bench_sync_format(char *buf, size_t cap, uint64_t n);
int bench_sync_find(const char *p, size_t n, uint64_t *out);

/* Latency histogram: exact below 128, then 64 sub-buckets per power of two
 * (relative error under 1%). Values are whatever unit the caller adds. */
#define BENCH_HIST_EXACT   128u
#define BENCH_HIST_SUB     64u
#define BENCH_HIST_BUCKETS (BENCH_HIST_EXACT + 57u * BENCH_HIST_SUB)

struct bench_hist {
    uint64_t n;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint64_t count[BENCH_HIST_BUCKETS];
};

void bench_hist_init(struct bench_hist *h);
void bench_hist_add(struct bench_hist *h, uint64_t v);
/* Nearest-rank percentile (0 < p <= 100): the smallest recorded value with at
 * least p% of the samples at or below it, to the histogram's precision and
 * clipped to [min, max]. 0 when empty. */
uint64_t bench_hist_pct(const struct bench_hist *h, double p);

/* In-order delivery accounting for one (sender, receiver) stream. A gap
 * counts its missing messages as lost; a message older than one already seen
 * counts as reordered and fills one of those gaps again. A duplicate looks
 * like a late arrival: it, too, is counted as reordered. */
struct bench_seq {
    uint64_t next; /* one past the highest sequence number seen */
};

struct bench_tally {
    uint64_t delivered;
    uint64_t lost;
    uint64_t reordered;
};

void bench_seq_note(struct bench_seq *s, uint64_t seq, struct bench_tally *t);
/* At the end: whatever the sender sent past the last one seen is lost. */
void bench_seq_finish(const struct bench_seq *s, uint64_t sent, struct bench_tally *t);

/* The byte stream echo modes send: pseudo-random, with a prime period so a
 * shifted, repeated or dropped chunk never lines up with the expected bytes.
 * data holds period + span bytes, so any span bytes from any offset are
 * contiguous. */
struct bench_pattern {
    uint8_t *data;
    size_t period;
    size_t span;
};

/* Allocate and fill. Returns 0 or -ENOMEM. */
int bench_pattern_init(struct bench_pattern *pat, size_t period, size_t span, uint64_t seed);
void bench_pattern_fini(struct bench_pattern *pat);
/* The stream's bytes from offset off on; valid for pat->span bytes. */
const uint8_t *bench_pattern_at(const struct bench_pattern *pat, uint64_t off);
/* Index of the first byte of got[n] (n <= span) that differs from the stream
 * at off, or n when all match. */
size_t bench_pattern_check(const struct bench_pattern *pat, uint64_t off, const uint8_t *got,
                           size_t n);

/* /proc/PID/stat text → utime + stime in clock ticks. Returns 0 or -EINVAL. */
int bench_parse_stat_ticks(const char *text, uint64_t *ticks);
/* /proc/PID/statm text → resident pages. Returns 0 or -EINVAL. */
int bench_parse_statm_rss(const char *text, uint64_t *pages);

#endif
