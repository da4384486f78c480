#!/bin/sh
# Stands in for echochatd in the integration tests (ECHOCHATD points here):
# runs $REAL_ECHOCHATD under valgrind. exec keeps the pid, so LISTEN_PID set
# by the harness before this exec still names the daemon. A memory error or
# a definite/indirect leak makes the daemon exit 99 instead of 0, which the
# tests' "SIGTERM exits 0" checks catch; with VALGRIND_LOG_DIR set every
# report also lands in a file of its own there (%p: one per process, so a
# --daemonize child gets its own), leaving the daemon's stderr, which the
# tests read, as the daemon wrote it.
: "${REAL_ECHOCHATD:?REAL_ECHOCHATD must name the real daemon}"
if [ -n "${VALGRIND_LOG_DIR:-}" ]; then
    exec valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect \
        --error-exitcode=99 --track-fds=no --log-file="$VALGRIND_LOG_DIR/daemon.%p.log" \
        "$REAL_ECHOCHATD" "$@"
fi
exec valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --error-exitcode=99 --track-fds=no "$REAL_ECHOCHATD" "$@"
