#!/usr/bin/env bash
# soak.sh: run echochatd under N minutes of mixed load and check that it stays
# flat. Not part of `make check` (it takes minutes); run it by hand before a
# release or after touching the client table, buffers or the event loop.
#
#   bench/soak.sh [-m MINUTES] [-s SECONDS] [--rss-growth KIB] [--fd-growth N]
#
#   -m MINUTES        how long to run (default 10)
#   -s SECONDS        the same in seconds (short runs, e.g. to try the script)
#   --rss-growth KIB  allowed RSS growth, first third to last third (8192)
#   --fd-growth N     allowed open-descriptor growth, same thirds (64)
#   ECHOCHATD         the daemon (default build/echochatd)
#   ECHOCHAT_BENCH    the load tool (default build/echochat-bench); when it is
#                     missing, a small python3 driver does the same kinds of load
#
# It starts its own daemon on 127.0.0.1 (chat and echo on ports the kernel
# picks, --rate-limit 0) and keeps these loads going side by side, each
# restarted when it ends, so connections also come and go all the time:
#   echo round trips (50 connections, 4 in flight each), echo bulk streams
#   with verification and half-close, chat fan-out (100 receivers, 2 senders,
#   200 lines/s each), 1000 idle chat connections, and bursts of 200
#   connect/close cycles.
# Every 10 s it prints the daemon's RSS, open descriptors and CPU use over the
# interval. At the end it compares the median RSS and descriptor count of the
# first third of the samples with the last third and exits 1 if either grew
# beyond its threshold, or if a load run reported lost or corrupted data
# (exit 1 from echochat-bench), or if the daemon died or did not exit 0 on
# SIGTERM. Loopback only; the daemon's log is kept in a temp directory that
# is printed at the end.
set -u

minutes=10
seconds=
rss_growth=8192
fd_growth=64
while [ $# -gt 0 ]; do
    case $1 in
    -m) minutes=$2; shift 2 ;;
    -s) seconds=$2; shift 2 ;;
    --rss-growth) rss_growth=$2; shift 2 ;;
    --fd-growth) fd_growth=$2; shift 2 ;;
    -h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak.sh: unknown argument '$1' (try --help)" >&2; exit 64 ;;
    esac
done
duration=${seconds:-$((minutes * 60))}
case $duration in
'' | *[!0-9]*) echo "soak.sh: duration must be a whole number" >&2; exit 64 ;;
esac
[ "$duration" -ge 30 ] || { echo "soak.sh: run for at least 30 s" >&2; exit 64; }

daemon=${ECHOCHATD:-build/echochatd}
bench=${ECHOCHAT_BENCH:-build/echochat-bench}
[ -x "$daemon" ] || { echo "soak.sh: no daemon at $daemon (make first)" >&2; exit 2; }
use_bench=1
if [ ! -x "$bench" ]; then
    use_bench=0
    command -v python3 >/dev/null || { echo "soak.sh: neither $bench nor python3" >&2; exit 2; }
    echo "soak.sh: $bench not found: using the python3 driver"
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null
dir=$(mktemp -d /tmp/echochat-soak-XXXXXX)
log=$dir/daemon.log
fails=$dir/failures
: >"$fails"
loads=()
dpid=

# Our own load loops and the runs they started, by process id.
stop_loads() {
    touch "$dir/stop" # each loop ends after its current run
    for p in "${loads[@]}"; do pkill -TERM -P "$p" 2>/dev/null; done
    for p in "${loads[@]}"; do wait "$p" 2>/dev/null; done
    loads=()
}

cleanup() {
    stop_loads
    if [ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null; then
        kill -KILL "$dpid" 2>/dev/null
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$daemon" --chat 127.0.0.1:0 --echo 127.0.0.1:0 --rate-limit 0 --max-clients 20000 \
    --log-level notice 2>"$log" &
dpid=$!
for _ in $(seq 50); do
    grep -q ' ready' "$log" && break
    kill -0 "$dpid" 2>/dev/null || break
    sleep 0.1
done
chat=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) (chat).*/\1/p' "$log" | head -n 1)
echo=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) (echo).*/\1/p' "$log" | head -n 1)
if [ -z "$chat" ] || [ -z "$echo" ]; then
    echo "soak.sh: the daemon did not start:" >&2
    cat "$log" >&2
    exit 2
fi
echo "soak: daemon pid $dpid, chat 127.0.0.1:$chat, echo 127.0.0.1:$echo, ${duration}s; log in $dir"

start=$(date +%s)
end=$((start + duration))
# the loads outlast the sampling, so that every sample is taken under load;
# they are stopped once the last sample is in
load_end=$((end + 30))

# Run one load over and over until the end; a run that exits 1 (data lost
# or corrupted) is recorded. Exit 2 (could not set up, e.g. the daemon was
# busy) is counted as a warning only.
repeat() {
    local name=$1
    shift
    local n=0
    while :; do
        local left=$((load_end - $(date +%s)))
        [ "$left" -ge 3 ] && [ ! -e "$dir/stop" ] || break
        local d=$((left < 60 ? left - 1 : 60))
        n=$((n + 1))
        "$@" "$d" >"$dir/$name.out" 2>&1
        local rc=$?
        [ -e "$dir/stop" ] && break # stopped by us, not a verdict
        if [ "$rc" -eq 1 ]; then
            echo "$name run $n: $(grep RESULT "$dir/$name.out" | tail -n 1)" >>"$fails"
        elif [ "$rc" -ne 0 ]; then
            echo "soak: warning: $name run $n exited $rc: $(tail -n 1 "$dir/$name.out")"
        fi
    done
}

bench_load() { # MODE ARGS... PORT DURATION
    local port=${*: -2:1} d=${*: -1}
    "$bench" "${@:1:$#-2}" -q -d "$d" "127.0.0.1:$port"
}

churn_load() { # PORT DURATION: bursts of short runs, each connecting anew
    local port=$1 d=$2 stop=$(($(date +%s) + $2))
    while [ "$(date +%s)" -lt "$stop" ] && [ ! -e "$dir/stop" ]; do
        "$bench" echo-rr -q -c 200 -n 2000 --connect-window 200 "127.0.0.1:$port" >/dev/null ||
            return 1
        sleep 0.2
    done
    return 0
}

python_load() { # KIND PORT DURATION: the fallback driver
    python3 - "$@" <<'EOF'
import os, selectors, socket, sys, time
kind, port, dur = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
stop = time.monotonic() + dur
sel = selectors.DefaultSelector()
def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setblocking(False)
    return s
if kind == "idle":
    held = [conn() for _ in range(1000)]
    while time.monotonic() < stop:
        time.sleep(1)
        for s in held:
            try:
                if s.recv(65536) == b"":
                    sys.exit(1)
            except BlockingIOError:
                pass
    sys.exit(0)
if kind == "churn":
    while time.monotonic() < stop:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.settimeout(5)
            if not s.recv(4096).startswith(b"*** "):
                sys.exit(1)
            s.close()
        time.sleep(0.2)
    sys.exit(0)
if kind == "echo":
    pat = os.urandom(65536)
    socks = []
    for i in range(20):
        s = conn()
        socks.append(s)
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, [i, 0, 0])
    while time.monotonic() < stop:
        for key, ev in sel.select(0.1):
            st = key.data
            if ev & selectors.EVENT_WRITE and st[1] - st[2] < 1 << 20:
                off = st[1] % 65536
                try:
                    st[1] += key.fileobj.send(pat[off:])
                except BlockingIOError:
                    pass
            if ev & selectors.EVENT_READ:
                d = key.fileobj.recv(65536)
                if not d:
                    sys.exit(1)
                off = st[2] % 65536
                want = (pat[off:] + pat)[: len(d)] if len(d) <= 65536 else None
                if want is not None and d != want:
                    sys.exit(1)
                st[2] += len(d)
    sys.exit(0)
if kind == "chat":
    recv = [conn() for _ in range(50)]
    sender = conn()
    sender.setblocking(True)
    seq, got = 0, [b""] * len(recv)
    nxt = [0] * len(recv)
    time.sleep(0.5)
    while time.monotonic() < stop:
        sender.sendall(b"soak %d\n" % seq)
        seq += 1
        time.sleep(0.005)
        for i, s in enumerate(recv):
            try:
                got[i] += s.recv(1 << 20)
            except BlockingIOError:
                continue
            *lines, got[i] = got[i].split(b"\r\n")
            for ln in lines:
                if b"> soak " in ln:
                    n = int(ln.rsplit(b" ", 1)[1])
                    if nxt[i] and n != nxt[i]:
                        sys.exit(1)
                    nxt[i] = n + 1
    sys.exit(0)
EOF
}

if [ "$use_bench" -eq 1 ]; then
    repeat echo-rr bench_load echo-rr -c 50 -P 4 "$echo" &
    loads+=($!)
    repeat echo-bulk bench_load echo-bulk -c 4 --half-close "$echo" &
    loads+=($!)
    repeat fanout bench_load chat-fanout -r 100 -k 2 --rate 200 "$chat" &
    loads+=($!)
    repeat idle bench_load idle -c 1000 "$chat" &
    loads+=($!)
    repeat churn churn_load "$echo" &
    loads+=($!)
else
    for k in echo chat idle churn; do
        p=$chat
        [ "$k" = echo ] && p=$echo
        repeat "py-$k" python_load "$k" "$p" &
        loads+=($!)
    done
fi

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$dpid/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$dpid/status"; }
fd_count() { ls "/proc/$dpid/fd" | wc -l; }

rss=()
fds=()
prev=$(cpu_ticks)
printf '%8s %10s %7s %6s\n' elapsed rss_kib fds cpu%
while [ "$(date +%s)" -lt "$end" ]; do
    sleep 10
    if ! kill -0 "$dpid" 2>/dev/null; then
        echo "soak: FAIL: the daemon died" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    now=$(cpu_ticks)
    r=$(rss_kib)
    n=$(fd_count)
    rss+=("$r")
    fds+=("$n")
    printf '%7ss %10s %7s %5s%%\n' $(($(date +%s) - start)) "$r" "$n" \
        "$(((now - prev) * 100 / hz / 10))"
    prev=$now
done

stop_loads

# Medians of the first and last third of the samples.
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
k=${#rss[@]}
third=$((k / 3))
[ "$third" -ge 1 ] || third=1
rss_a=$(median "${rss[@]:0:third}")
rss_b=$(median "${rss[@]:k-third}")
fds_a=$(median "${fds[@]:0:third}")
fds_b=$(median "${fds[@]:k-third}")
echo "soak: RSS median ${rss_a} -> ${rss_b} KiB (allowed +$rss_growth), fds ${fds_a} -> ${fds_b} (allowed +$fd_growth)"

kill -TERM "$dpid"
wait "$dpid"
drc=$?
dpid=
status=0
if [ "$drc" -ne 0 ]; then
    echo "soak: FAIL: the daemon exited $drc on SIGTERM" >&2
    status=1
fi
if [ $((rss_b - rss_a)) -gt "$rss_growth" ]; then
    echo "soak: FAIL: RSS grew by $((rss_b - rss_a)) KiB" >&2
    status=1
fi
if [ $((fds_b - fds_a)) -gt "$fd_growth" ]; then
    echo "soak: FAIL: descriptors grew by $((fds_b - fds_a))" >&2
    status=1
fi
if [ -s "$fails" ]; then
    echo "soak: FAIL: load runs lost or corrupted data:" >&2
    cat "$fails" >&2
    status=1
fi
grep -E 'warning|error' "$log" | grep -v RLIMIT_NOFILE | tail -n 5
[ "$status" -eq 0 ] && echo "soak: OK (log kept in $dir)"
exit "$status"
