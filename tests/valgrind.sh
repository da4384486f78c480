#!/usr/bin/env bash
# Memcheck run (issue 6): builds the plain (non-sanitizer) daemon and tests
# in $BUILD (default build), runs every unit test under valgrind, then the
# integration tests with the daemon under valgrind (tests/valgrind-daemon.sh
# as ECHOCHATD). Fails on any test failure, any valgrind error in a unit
# test, and any report a daemon left, even one a test did not look at (a
# daemon killed on purpose never gets to exit 99).
#
#   tests/valgrind.sh [INTEGRATION_TEST_BINARY...]
#
# With no arguments: every binary in $BUILD/tests/integration. Environment:
#   BUILD=dir            build directory (default build)
#   VALGRIND_UNIT=0      skip the unit tests
#   VALGRIND_TIMEOUT=s   limit per test binary (default 1200)
# ECHOCHAT_SLOW=1 is exported: tests may scale down big transfers with it;
# and ECHOCHAT_VALGRIND=1: a test may skip() a check that cannot hold under
# valgrind (absolute RSS, latency bounds, RLIMIT_NOFILE, which valgrind
# lowers by the fds it keeps, the live environment block).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

BUILD=${BUILD:-build}
LIMIT=${VALGRIND_TIMEOUT:-1200}
export ECHOCHAT_SLOW=1 ECHOCHAT_VALGRIND=1

command -v valgrind >/dev/null || {
    echo "valgrind: not installed" >&2
    exit 1
}

unit_bins=()
for f in tests/unit/test_*.c; do
    unit_bins+=("$BUILD/tests/unit/$(basename "$f" .c)")
done
if [ $# -gt 0 ]; then
    itest_bins=("$@")
    build_itests=()
else
    itest_bins=()
    for f in tests/integration/test_*.c; do
        itest_bins+=("$BUILD/tests/integration/$(basename "$f" .c)")
    done
    build_itests=("${itest_bins[@]}")
fi

# SAN=0: ASan and valgrind cannot share a process
echo "==== valgrind: build in $BUILD"
make --no-print-directory -j2 SAN=0 BUILD="$BUILD" "$BUILD/echochatd" "$BUILD/echochat-bench" \
    "${unit_bins[@]}" "${build_itests[@]}" || exit 1

logdir=$(mktemp -d "${TMPDIR:-/tmp}/echochat-valgrind.XXXXXX")
trap 'rm -rf "$logdir"' EXIT
failed=()
start=$SECONDS

# run NAME CMD...: one test binary under the time limit; its output as is.
run() {
    local name=$1 t0=$SECONDS rc
    shift
    echo "==== valgrind: $name"
    timeout --kill-after=10 "$LIMIT" "$@"
    rc=$?
    [ "$rc" -eq 124 ] && echo "valgrind: $name: timed out after ${LIMIT}s"
    [ "$rc" -eq 0 ] || failed+=("$name(exit $rc)")
    echo "---- valgrind: $name: exit $rc in $((SECONDS - t0))s"
}

if [ "${VALGRIND_UNIT:-1}" != 0 ]; then
    for t in "${unit_bins[@]}"; do
        run "unit/$(basename "$t")" valgrind --quiet --error-exitcode=1 --leak-check=full \
            --suppressions=tests/valgrind.supp \
            --track-fds=no "$t"
    done
fi

# ECHOCHATD is a two-line script per test binary with the real daemon and
# the log directory written in: some tests start the daemon through a tool
# that passes it a clean environment (systemd-socket-activate -E).
export ECHOCHAT_BENCH=$PWD/$BUILD/echochat-bench
for t in "${itest_bins[@]}"; do
    name=$(basename "$t")
    vlog=$logdir/$name
    mkdir -p "$vlog"
    printf '#!/bin/sh\nREAL_ECHOCHATD=%s VALGRIND_LOG_DIR=%s exec %s "$@"\n' \
        "'$PWD/$BUILD/echochatd'" "'$vlog'" "'$PWD/tests/valgrind-daemon.sh'" >"$vlog/echochatd"
    chmod +x "$vlog/echochatd"
    ECHOCHATD=$vlog/echochatd run "integration/$name" "$t"
    for f in "$vlog"/daemon.*.log; do
        [ -s "$f" ] || continue
        echo "valgrind: $name: a daemon reported ($(basename "$f")):"
        cat "$f"
        failed+=("$name(daemon report)")
    done
done

echo "==== valgrind: $((SECONDS - start))s in all"
if [ ${#failed[@]} -gt 0 ]; then
    echo "valgrind: FAILED: ${failed[*]}"
    exit 1
fi
echo "valgrind: clean"
