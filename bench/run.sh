#!/bin/bash
# bench/run.sh: runs the issue-5 scenario set against echochatd, the two
# reference servers (bench/ref_echo.c, bench/ref_relay.c) and, when they are
# installed, socat and ncat. Servers of one scenario take turns run by run
# (A B C A B C ...), each run against a freshly started server, so drift on
# a noisy machine hits all of them alike. Prints per-run values, medians and
# per-run ratios against the reference. Every server it starts is killed on
# exit (trap), by process group, so socat's and ncat's children go too.
#
#   bench/run.sh [--quick] [--runs N] [--only NAME[,NAME]] [--build DIR] [--keep DIR]
#
# --quick: 1 run, 1-second measurements, smaller idle/concurrency counts (~1 min).
# Default: 5 runs, 3-second measurements (~9 min). --build: where echochatd,
# echochat-bench and bench-ref-* live (default build). --keep: also copy every
# tool output there.
set -u

BUILD=build
RUNS=5
QUICK=0
ONLY=""
KEEP=""
while [ $# -gt 0 ]; do
    case $1 in
    --quick) QUICK=1 ;;
    --runs) RUNS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --build) BUILD=$2; shift ;;
    --keep) KEEP=$2; shift ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 64 ;;
    esac
    shift
done

DUR=3 IDLE_N=10000 CONC_N=19898 CONC_RUNS=3
if [ "$QUICK" = 1 ]; then
    RUNS=1 DUR=1 IDLE_N=2000 CONC_N=2000 CONC_RUNS=1
fi
[ "$CONC_RUNS" -gt "$RUNS" ] && CONC_RUNS=$RUNS

BENCH=$BUILD/echochat-bench
DAEMON=$BUILD/echochatd
REF_ECHO=$BUILD/bench-ref-echo
REF_RELAY=$BUILD/bench-ref-relay
for f in "$BENCH" "$DAEMON" "$REF_ECHO" "$REF_RELAY"; do
    [ -x "$f" ] || { echo "run.sh: $f is missing: run make first" >&2; exit 1; }
done
HAVE_SOCAT=0 HAVE_NCAT=0
command -v socat >/dev/null && HAVE_SOCAT=1
command -v ncat >/dev/null && HAVE_NCAT=1
HAVE_TASKSET=0
command -v taskset >/dev/null && HAVE_TASKSET=1

TMP=$(mktemp -d /tmp/echochat-bench.XXXXXX)
[ -n "$KEEP" ] && mkdir -p "$KEEP"
SRV_PID=""
cleanup() {
    [ -n "$SRV_PID" ] && kill -TERM -- "-$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port for servers that cannot be told to pick one (socat, ncat).
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 30000))
        [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ] && { echo $p; return; }
    done
}

# wait until something accepts connections on port $1 (at most 5 s)
wait_listen() {
    local i
    for i in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# start_server KIND PIN: sets SRV_PID and SRV_PORT. The server is the leader
# of its own process group (setsid), so stop_server takes its children too.
start_server() {
    local kind=$1 pin=$2 pre="" log=$TMP/server.log i
    [ "$pin" = same ] && [ "$HAVE_TASKSET" = 1 ] && pre="taskset -c 0"
    : >"$log"
    case $kind in
    echochatd-echo | echochatd-chat)
        setsid $pre "$DAEMON" --rate-limit 0 --max-clients 20000 --echo 127.0.0.1:0 \
            --chat 127.0.0.1:0 --log-level notice 2>"$log" &
        SRV_PID=$!
        for i in $(seq 50); do grep -q ' ready' "$log" && break; sleep 0.1; done
        SRV_PORT=$(sed -n "s/.*listening on 127\.0\.0\.1:\([0-9]*\) (${kind#echochatd-}).*/\1/p" "$log")
        ;;
    ref-echo | ref-relay)
        setsid $pre "$BUILD/bench-$kind" 0 >"$log" &
        SRV_PID=$!
        for i in $(seq 50); do grep -q READY "$log" && break; sleep 0.1; done
        SRV_PORT=$(sed -n 's/^READY port=//p' "$log")
        ;;
    socat)
        SRV_PORT=$(free_port)
        setsid $pre socat "TCP-LISTEN:$SRV_PORT,fork,reuseaddr,bind=127.0.0.1" PIPE 2>"$log" &
        SRV_PID=$!
        wait_listen "$SRV_PORT"
        ;;
    ncat-exec)
        SRV_PORT=$(free_port)
        setsid $pre ncat -l 127.0.0.1 "$SRV_PORT" --keep-open --max-conns 20000 \
            --exec /bin/cat 2>"$log" &
        SRV_PID=$!
        wait_listen "$SRV_PORT"
        ;;
    ncat-chat)
        SRV_PORT=$(free_port)
        setsid $pre ncat -l 127.0.0.1 "$SRV_PORT" --chat --max-conns 20000 2>"$log" &
        SRV_PID=$!
        wait_listen "$SRV_PORT"
        ;;
    esac
    [ -n "${SRV_PORT:-}" ] && kill -0 "$SRV_PID" 2>/dev/null
}

stop_server() {
    [ -z "$SRV_PID" ] && return
    kill -TERM -- "-$SRV_PID" 2>/dev/null
    wait "$SRV_PID" 2>/dev/null
    SRV_PID=""
}

# The scenario table (issue 5). Fields: name|pin|servers|metrics|runs|tool
# arguments|title. A metric is KEY:hi or KEY:lo (which way is better); the
# first one is the one ratios are printed for. {PID} becomes the server's PID.
ECHO_SERVERS="echochatd-echo ref-echo"
CHAT_SERVERS="echochatd-chat ref-relay"
[ "$HAVE_SOCAT" = 1 ] && ECHO_SERVERS="$ECHO_SERVERS socat"
[ "$HAVE_NCAT" = 1 ] && ECHO_SERVERS="$ECHO_SERVERS ncat-exec" && CHAT_SERVERS="$CHAT_SERVERS ncat-chat"
SCENARIOS=(
    "rr1|same|$ECHO_SERVERS|rt_per_s:hi p50_us:lo|$RUNS|echo-rr -c 1 -s 64 -d $DUR|echo ping-pong, 1 connection, 64 B, server and client on CPU 0"
    "rr50|none|$ECHO_SERVERS|rt_per_s:hi p50_us:lo|$RUNS|echo-rr -c 50 -s 64 -d $DUR|echo ping-pong, 50 connections, 64 B"
    "bulk4|none|$ECHO_SERVERS|mb_per_s:hi|$RUNS|echo-bulk -c 4 --half-close -d $DUR --drain-timeout 3|echo bulk, 4 connections, unbounded in flight, half-close"
    "fan100|none|$CHAT_SERVERS|cpu_ns_per_op:lo p50_us:lo p99_us:lo|$RUNS|chat-fanout -r 100 -k 1 --rate 2000 -d $DUR --pid {PID}|chat fan-out, 100 receivers, 1 sender at 2000 msg/s (server CPU ns per delivery)"
    "fan1000|none|$CHAT_SERVERS|cpu_ns_per_op:lo p50_us:lo p99_us:lo|$RUNS|chat-fanout -r 1000 -k 1 --rate 200 -d $DUR --pid {PID}|chat fan-out, 1000 receivers, 200 msg/s (server CPU ns per delivery)"
    "fanw1|none|$CHAT_SERVERS|deliveries_per_s:hi p50_us:lo|$RUNS|chat-fanout -r 100 -k 1 -w 1 -d $DUR|chat fan-out, 100 receivers, 1 message in flight"
    "idle|none|$CHAT_SERVERS|rss_per_conn_bytes:lo server_fds:hi|$RUNS|idle -c $IDLE_N -d 2 --pid {PID}|idle connections: $IDLE_N, server RSS per connection"
    "conc|none|echochatd-chat ref-relay|max_us:lo connect_ms:lo server_rss_kib:lo|$CONC_RUNS|chat-fanout -r $CONC_N -k 1 -n 1 --setup-timeout 90 --pid {PID}|concurrency: $CONC_N receivers + 1 sender, one broadcast (max_us = time to reach all)"
)

RES=$TMP/results # scenario server run status key=value...
: >"$RES"

run_one() { # scenario pin server run args...
    local sc=$1 pin=$2 srv=$3 run=$4 args=$5 out=$TMP/out pre="" line st
    # a second try with another port: socat and ncat get a port we picked
    if ! start_server "$srv" "$pin" && { stop_server; ! start_server "$srv" "$pin"; }; then
        echo "$sc $srv $run start-failed" >>"$RES"
        printf '    %s run %s: did not start: %s\n' "$srv" "$run" "$(head -c 200 "$TMP/server.log")"
        stop_server
        return
    fi
    args=${args//\{PID\}/$SRV_PID}
    # ncat quits ("getpeername ... failed") when many connections arrive at
    # once; 8 at a time it copes. Set-up time is only scored in "conc".
    [[ $srv == ncat-* ]] && args="$args --connect-window 8"
    [[ $args != *--setup-timeout* ]] && args="$args --setup-timeout 15"
    [ "$pin" = same ] && [ "$HAVE_TASKSET" = 1 ] && pre="taskset -c 0"
    # shellcheck disable=SC2086
    timeout 300 $pre "$BENCH" $args -q "$SRV_PORT" >"$out" 2>&1
    line=$(grep '^RESULT ' "$out" | head -n 1)
    st=$(sed -n 's/.* status=\([a-z]*\).*/\1/p' <<<"$line")
    [ -n "$KEEP" ] && cp "$out" "$KEEP/$sc-$srv-$run.txt"
    echo "$sc $srv $run ${st:-no-result} ${line#RESULT }" >>"$RES"
    if [ "${st:-}" != ok ]; then
        printf '    %s run %s: %s (%s)\n' "$srv" "$run" "${st:-no-result}" \
            "$(grep FAILED "$out" | head -n 1 | sed 's/^echochat-bench: FAILED: //')"
    fi
    stop_server
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else printf "%.6g\n", (a[NR/2]+a[NR/2+1])/2}'; }

value_of() { # scenario server run key
    awk -v sc="$1" -v srv="$2" -v run="$3" -v key="$4" '$1==sc && $2==srv && $3==run && $4=="ok" {
        for (i = 5; i <= NF; i++) { split($i, kv, "="); if (kv[1]==key) print kv[2] } }' "$RES"
}

report() { # scenario servers metrics runs title
    local sc=$1 servers=$2 metrics=$3 runs=$4 title=$5 ref m key srv r v vals rv ratios
    case $servers in *ref-echo*) ref=ref-echo ;; *) ref=ref-relay ;; esac
    echo
    echo "== $sc: $title"
    for m in $metrics; do
        key=${m%%:*}
        printf '  %-16s %-14s %-12s %s\n' "$key (${m##*:})" median "vs $ref" "per run (ratio vs $ref)"
        for srv in $servers; do
            vals="" ratios=""
            for r in $(seq "$runs"); do
                v=$(value_of "$sc" "$srv" "$r" "$key")
                if [ -z "$v" ]; then
                    v=$(awk -v sc="$sc" -v srv="$srv" -v run="$r" '$1==sc && $2==srv && $3==run {print $4}' "$RES")
                    vals="$vals ${v:-skipped}"
                    continue
                fi
                rv=$(value_of "$sc" "$ref" "$r" "$key")
                vals="$vals $v"
                [ -n "$rv" ] && ratios="$ratios $(awk -v a="$v" -v b="$rv" 'BEGIN {if (b+0==0) print "-"; else printf "%.2f", a/b}')"
                [ -n "$rv" ] && vals="$vals($(awk -v a="$v" -v b="$rv" 'BEGIN {if (b+0==0) print "-"; else printf "%.2f", a/b}'))"
            done
            printf '  %-16s %-14s %-12s%s\n' "$srv" \
                "$(for x in $vals; do echo "$x"; done | sed 's/(.*//' | grep -E '^[0-9.]+$' | median)" \
                "$(for x in $ratios; do echo "$x"; done | grep -E '^[0-9.]+$' | median)" "$vals"
        done
    done
}

echo "echochat bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm), $(nproc) CPUs," \
    "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)"
echo "runs=$RUNS duration=${DUR}s socat=$HAVE_SOCAT ncat=$HAVE_NCAT taskset=$HAVE_TASKSET build=$BUILD"
for s in "${SCENARIOS[@]}"; do
    IFS='|' read -r sc pin servers metrics runs args title <<<"$s"
    if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$sc,"* ]]; then
        continue
    fi
    echo "-- $sc: $title"
    declare -A dead=()
    for r in $(seq "$runs"); do
        for srv in $servers; do
            # a peer that failed once (socat/ncat deadlock on half-close, ncat's
            # 1024-fd limit) is not run again: it would only burn the time budget
            if [ -n "${dead[$srv]:-}" ]; then
                echo "$sc $srv $r skipped" >>"$RES"
                continue
            fi
            run_one "$sc" "$pin" "$srv" "$r" "$args"
            if ! grep -q "^$sc $srv $r ok" "$RES" && [[ $srv != echochatd* && $srv != ref-* ]]; then
                dead[$srv]=1
            fi
        done
    done
    report "$sc" "$servers" "$metrics" "$runs" "$title"
    unset dead
done
echo
echo "medians of $RUNS runs; ratio = server / reference in the same run (for :lo metrics lower is better)"
# non-zero when echochatd or a reference failed a run (a peer tool failing is
# a finding, not an error of this script)
! awk '($2 ~ /^(echochatd|ref-)/) && $4 != "ok" {bad=1} END {exit !bad}' "$RES"
