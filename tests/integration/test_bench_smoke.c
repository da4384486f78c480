/*
 * Smoke runs of echochat-bench against the real daemon (echo and chat
 * listeners, --rate-limit 0), about a second each. They assert correctness
 * only: exit status 0 and a RESULT line with nothing lost, corrupted or
 * reordered. Never a speed threshold: these machines are shared and noisy.
 * The tool is $ECHOCHAT_BENCH (set by make check), else build/echochat-bench.
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define RUN_LIMIT_MS 30000 /* the tool bounds itself; this catches a tool bug */
#define OUT_MAX      8192

struct fixture {
    struct h_daemon d;
    char port[2][16]; /* echo, chat */
    char pid[16];
    char out[OUT_MAX];
};

static const char *const names[] = { "echo", "chat", NULL };
static const char *const args[] = { "--rate-limit", "0", NULL };

static int
group_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    h_start(&f->d, names, args);
    snprintf(f->port[0], sizeof(f->port[0]), "%d", f->d.port[0]);
    snprintf(f->port[1], sizeof(f->port[1]), "%d", f->d.port[1]);
    snprintf(f->pid, sizeof(f->pid), "%d", (int)f->d.pid);
    *state = f;
    return 0;
}

static int
group_teardown(void **state)
{
    struct fixture *f = *state;
    int rc = h_stop(&f->d, 5000);

    h_cleanup(&f->d);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* Run the tool with argv[1..] and collect its stdout in f->out. Returns its
 * exit status; fails the test if it is killed or outlives RUN_LIMIT_MS. */
static int
run_bench(struct fixture *f, const char **argv)
{
    const char *tool = getenv("ECHOCHAT_BENCH");
    long deadline = h_now_ms() + RUN_LIMIT_MS;
    size_t len = 0;
    int pfd[2], status;
    pid_t pid;

    argv[0] = tool && *tool ? tool : "build/echochat-bench";
    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], STDOUT_FILENO);
        close(pfd[0]);
        close(pfd[1]);
        execv(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(pfd[1]);
    for (;;) {
        struct pollfd p = { .fd = pfd[0], .events = POLLIN };
        long left = deadline - h_now_ms();
        ssize_t n;

        if (left <= 0 || poll(&p, 1, (int)left) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            close(pfd[0]);
            fail_msg("%s %s did not finish within %d ms", argv[0], argv[1], RUN_LIMIT_MS);
        }
        n = read(pfd[0], f->out + len, sizeof(f->out) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    f->out[len] = '\0';
    close(pfd[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status))
        fail_msg("%s was killed by signal %d", argv[0], WTERMSIG(status));
    if (WEXITSTATUS(status) != 0)
        print_message("%s", f->out);
    return WEXITSTATUS(status);
}

/* The value of key in the RESULT line, as text; fails if missing. */
static const char *
result_value(const struct fixture *f, const char *key, char *val, size_t cap)
{
    const char *r = strstr(f->out, "RESULT mode="), *p;
    char pat[64];
    size_t n;

    assert_non_null(r);
    snprintf(pat, sizeof(pat), " %s=", key);
    p = strstr(r, pat);
    if (!p)
        fail_msg("RESULT line has no %s: %s", key, r);
    p += strlen(pat);
    n = strcspn(p, " \n");
    assert_true(n < cap);
    memcpy(val, p, n);
    val[n] = '\0';
    return val;
}

static void
assert_result(const struct fixture *f, const char *key, const char *want)
{
    char val[64];

    assert_string_equal(result_value(f, key, val, sizeof(val)), want);
}

static unsigned long long
result_ull(const struct fixture *f, const char *key)
{
    char val[64];

    return strtoull(result_value(f, key, val, sizeof(val)), NULL, 10);
}

static void
test_bench_smoke_echo_rr_no_loss(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = {
        NULL, "echo-rr", "-q", "-c", "4", "-P", "2", "-d", "1", f->port[0], NULL
    };

    assert_int_equal(run_bench(f, argv), 0);
    assert_result(f, "status", "ok");
    assert_result(f, "lost_bytes", "0");
    assert_result(f, "corrupt", "0");
    assert_result(f, "closed", "0");
    assert_true(result_ull(f, "round_trips") > 0);
}

static void
test_bench_smoke_echo_bulk_half_close_returns_every_byte(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = { NULL, "echo-bulk", "-q", "--half-close", "-d", "1", f->port[0], NULL };

    assert_int_equal(run_bench(f, argv), 0);
    assert_result(f, "status", "ok");
    assert_result(f, "lost_bytes", "0");
    assert_result(f, "corrupt", "0");
    assert_result(f, "half_close_ok", "4");
    assert_true(result_ull(f, "bytes") > 0);
}

static void
test_bench_smoke_chat_fanout_no_loss_no_self_echo(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = { NULL, "chat-fanout", "-q",  "-r", "20", "-k",       "2", "-w",
                           "4",  "-s",          "100", "-d", "1",  f->port[1], NULL };

    assert_int_equal(run_bench(f, argv), 0);
    assert_result(f, "status", "ok");
    assert_result(f, "lost", "0");
    assert_result(f, "reordered", "0");
    assert_result(f, "corrupt", "0");
    assert_result(f, "self_echo", "0"); /* SPEC 5: one's own message is not sent back */
    assert_true(result_ull(f, "deliveries") == 20 * result_ull(f, "sent"));
    assert_true(result_ull(f, "sent") > 0);
}

static void
test_bench_smoke_chat_fanout_at_fixed_rate_no_loss(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = { NULL, "chat-fanout", "-q",    "-r",   "50",       "--rate", "200",
                           "-d", "1",           "--pid", f->pid, f->port[1], NULL };

    assert_int_equal(run_bench(f, argv), 0);
    assert_result(f, "status", "ok");
    assert_result(f, "lost", "0");
    assert_result(f, "reordered", "0");
    assert_result(f, "corrupt", "0");
    assert_true(result_ull(f, "deliveries") == 50 * result_ull(f, "sent"));
}

static void
test_bench_smoke_idle_holds_every_connection(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = { NULL,  "idle",  "-q",   "-c",       "200", "-d",
                           "0.3", "--pid", f->pid, f->port[1], NULL };

    if (h_under_valgrind()) {
        print_message("skipped under valgrind: 200 connections take longer than the tool allows\n");
        skip();
    }

    assert_int_equal(run_bench(f, argv), 0);
    assert_result(f, "held", "200");
    assert_result(f, "dropped", "0");
    assert_true(result_ull(f, "server_fds") >= 200);
}

static void
test_bench_smoke_non_loopback_target_is_refused(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = { NULL, "echo-rr", "-d", "1", "192.0.2.1:7", NULL };

    assert_int_equal(run_bench(f, argv), 64);
    assert_null(strstr(f->out, "RESULT"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bench_smoke_echo_rr_no_loss),
        cmocka_unit_test(test_bench_smoke_echo_bulk_half_close_returns_every_byte),
        cmocka_unit_test(test_bench_smoke_chat_fanout_no_loss_no_self_echo),
        cmocka_unit_test(test_bench_smoke_chat_fanout_at_fixed_rate_no_loss),
        cmocka_unit_test(test_bench_smoke_idle_holds_every_connection),
        cmocka_unit_test(test_bench_smoke_non_loopback_target_is_refused),
    };

    return cmocka_run_group_tests_name("bench_smoke", tests, group_setup, group_teardown);
}
