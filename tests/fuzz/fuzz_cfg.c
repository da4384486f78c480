/*
 * libFuzzer harness for cfg_parse(). The input, split on NUL bytes, is argv
 * after "echochatd". The parse must return CFG_RUN, CFG_HELP, CFG_VERSION or
 * -EINVAL, and give the same answer (and the same struct) a second time and
 * without an error buffer. An error fills err with one printable line that
 * starts with "--" or a quote. On CFG_RUN every field is within the range
 * SPEC section 1 and --help give it, the listeners are well-formed, and the
 * combinations cfg_parse() refuses are absent.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "cfg.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ARGV_MAX 128

static bool
listen_ok(const struct cfg_listen *l)
{
    size_t n = strnlen(l->host, CFG_HOST_MAX);

    return (l->proto == CFG_PROTO_CHAT || l->proto == CFG_PROTO_ECHO) && n < CFG_HOST_MAX &&
           memchr(l->host, '[', n) == NULL && memchr(l->host, ']', n) == NULL &&
           fuzz_port_ok(l->port);
}

#define IN(v, lo, hi) ((v) >= (lo) && (v) <= (hi))

static void
check_run(const struct cfg *c, char **argv, int argc)
{
    bool pid_in_argv = c->pid_file == NULL;

    FUZZ_CHECK(c->nlisten <= CFG_LISTEN_MAX);
    for (size_t i = 0; i < c->nlisten; i++)
        FUZZ_CHECK(listen_ok(&c->listen[i]));
    FUZZ_CHECK(IN(c->keepalive_idle, 1, 32767));
    FUZZ_CHECK(IN(c->keepalive_interval, 1, 32767));
    FUZZ_CHECK(IN(c->keepalive_count, 1, 127));
    FUZZ_CHECK(c->user_timeout_ms <= INT_MAX);
    FUZZ_CHECK(c->idle_timeout <= 31536000);
    FUZZ_CHECK(IN(c->max_clients, 1, 1000000));
    FUZZ_CHECK(c->max_per_ip <= 1000000);
    FUZZ_CHECK(IN(c->max_line, 16, 1048576));
    FUZZ_CHECK(IN(c->max_output, 1024, 1073741824));
    FUZZ_CHECK(c->max_output >= c->max_line);
    FUZZ_CHECK(c->rate_limit <= 1000000);
    FUZZ_CHECK(c->history <= 10000);
    FUZZ_CHECK(c->announce_max <= 1000000);
    FUZZ_CHECK(IN(c->backlog, 1, 65535));
    FUZZ_CHECK(c->shutdown_timeout <= 3600);
    FUZZ_CHECK(c->log_level == LOG_DEBUG || c->log_level == LOG_INFO ||
               c->log_level == LOG_NOTICE || c->log_level == LOG_WARNING ||
               c->log_level == LOG_ERR);
    /* --no-keepalive refuses the tuning flags, so the defaults stay */
    if (!c->keepalive)
        FUZZ_CHECK(c->keepalive_idle == 60 && c->keepalive_interval == 10 &&
                   c->keepalive_count == 6);
    /* the pid file is a non-empty piece of some argv string */
    for (int i = 1; i < argc && !pid_in_argv; i++) {
        size_t n = strlen(argv[i]);

        pid_in_argv = c->pid_file >= argv[i] && c->pid_file < argv[i] + n;
    }
    FUZZ_CHECK(pid_in_argv);
    FUZZ_CHECK(c->pid_file == NULL || c->pid_file[0] != '\0');
}

static void
check_err(const char *err, size_t errlen)
{
    size_t n = strnlen(err, errlen);

    FUZZ_CHECK(n > 0 && n < errlen);
    FUZZ_CHECK((n >= 2 && err[0] == '-' && err[1] == '-') || err[0] == '"');
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((uint8_t)err[i] >= 0x20 && (uint8_t)err[i] != 0x7F);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char prog[] = "echochatd";
    char *argv[ARGV_MAX + 1], *s = malloc(size + 1), err[512], small[8];
    struct cfg *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    int argc = 1, rc, rc2;

    FUZZ_CHECK(s != NULL && a != NULL && b != NULL);
    memcpy(s, data, size);
    s[size] = '\0';
    argv[0] = prog;
    for (size_t i = 0; i <= size && argc < ARGV_MAX; argc++) {
        argv[argc] = s + i;
        i += strlen(s + i) + 1;
    }
    if (size == 0)
        argc = 1;
    argv[argc] = NULL;

    memset(err, 'x', sizeof err);
    rc = cfg_parse(a, argc, argv, err, sizeof err);
    FUZZ_CHECK(rc == CFG_RUN || rc == CFG_HELP || rc == CFG_VERSION || rc == -EINVAL);
    if (rc == -EINVAL)
        check_err(err, sizeof err);
    if (rc == CFG_RUN)
        check_run(a, argv, argc);

    /* getopt is reset: the same argv parses the same way, with or without
     * room for the message, and a tiny buffer stays terminated */
    rc2 = cfg_parse(b, argc, argv, NULL, 0);
    FUZZ_CHECK(rc2 == rc);
    if (rc == CFG_RUN)
        FUZZ_CHECK(memcmp(a, b, sizeof *a) == 0);
    rc2 = cfg_parse(b, argc, argv, small, sizeof small);
    FUZZ_CHECK(rc2 == rc);
    if (rc == -EINVAL)
        FUZZ_CHECK(strnlen(small, sizeof small) < sizeof small &&
                   strncmp(small, err, strlen(small)) == 0);
    free(s);
    free(a);
    free(b);
    return 0;
}
