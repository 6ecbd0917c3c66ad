#!/bin/bash
# robust.sh - katomon under stalled clients and connection churn (issue 17,
# points 2 and 3; tests/bench/README.md, "Stalled clients and churn").
#
# Three scenarios, BENCH_RUNS times, interleaved (run 1 of each, then run
# 2, ...), each against a fresh katomon (optimized build, bench_pub):
#   R0  1,000 clients that read, subscribed to bench (realtime_update,
#       10 Hz) and bench_events (events, BENCH_EVENT_HZ): the reference;
#   R1  the same 1,000 plus BENCH_STALL clients that never read after their
#       handshake (4 KiB receive buffer): the readers' p99 is compared with
#       R0's, the stallers must be closed (1008) once their queue is full,
#       and RSS must stay under the bound robust_report.py states;
#   CH  tests/bench/churn: BENCH_CYCLES connect/disconnect cycles (clean
#       close, RST, half an upgrade, slowloris, a frame never finished)
#       against max_connections = BENCH_LIMIT and request_timeout = 2 s,
#       after a burst of more sockets than the limit; RSS and fds before and
#       after, the fd peak, a normal client's answers during the churn.
# Then robust_report.py prints the Markdown table (medians, ratios, pass or
# fail per criterion) and writes it to BENCH_OUT (keeping what follows a
# "<!-- notes -->" line of the file there).
#
# Run through `make bench-robust` (it builds what it needs). Knobs:
#   BENCH_RUNS=3  BENCH_WARMUP=2  BENCH_DURATION=20 (R0/R1 window, s)
#   BENCH_N1=1000  BENCH_STALL=10  BENCH_EVENT_HZ=20  BENCH_QUEUE=256k
#   BENCH_CYCLES=100000  BENCH_WARMUP_CYCLES=$BENCH_CYCLES (the same mix,
#   before the baseline: glibc's heap reaches its high-water mark in the
#   first ~100,000 cycles and stays there)  BENCH_LIMIT=200  BENCH_INFLIGHT=60
#   BENCH_SCENARIOS="R0 R1 CH"
#   BENCH_OUT=tests/bench/results/issue-17-clients.md ("-": stdout only)
#   BENCH_RAW=DIR (keep the JSON results)  BENCH_NICE=-5 (as root)
# Smoke run: BENCH_RUNS=1 BENCH_DURATION=5 BENCH_CYCLES=5000 make bench-robust
set -u

: "${top_builddir:?run me through make bench-robust (top_builddir)}"
: "${top_srcdir:?run me through make bench-robust (top_srcdir)}"
B=$top_builddir
S=$top_srcdir
BD=$S/tests/bench
RUNS=${BENCH_RUNS:-3}
WARMUP=${BENCH_WARMUP:-2}
DUR=${BENCH_DURATION:-20}
N1=${BENCH_N1:-1000}
STALL=${BENCH_STALL:-10}
EVENT_HZ=${BENCH_EVENT_HZ:-20}
QUEUE=${BENCH_QUEUE:-256k}
CYCLES=${BENCH_CYCLES:-100000}
WARM_CYCLES=${BENCH_WARMUP_CYCLES:-$CYCLES}
LIMIT=${BENCH_LIMIT:-200}
INFLIGHT=${BENCH_INFLIGHT:-60}
SCENARIOS=${BENCH_SCENARIOS:-"R0 R1 CH"}
OUT=${BENCH_OUT:-$BD/results/issue-17-clients.md}
if [ "$(id -u)" = 0 ]; then NICE=${BENCH_NICE:--5}; else NICE=${BENCH_NICE:-0}; fi
PY=$(command -v python3 || echo /usr/bin/python3)
CLIENT=$B/tests/bench/bench_client
CHURN=$B/tests/bench/churn
KATOMON=$B/katomon

. "$BD/lib.sh"
bench_init bench-robust

bench_require bench-robust "$CLIENT" "$CHURN" "$KATOMON" "$B/.libs/bench_pub.so"

# conf FILE PORT: the stalled-client scenarios (R0, R1) and the churn (CH)
# share it; CH adds its limits. [websocket] keys not set keep their defaults
# (ping 30 s, idle timeout 120 s).
conf() {
    cat >"$1" <<EOF
[core]
plugin_dir = $B/.libs
state_dir = $T/state
log_level = error
[http]
bind = 127.0.0.1
port = $2
web_root = $S/web
max_connections = ${3:-25000}
request_timeout = ${4:-30}
[websocket]
update_interval = 0.1
max_queue_bytes = $QUEUE
[plugin bench_pub]
state_hz = 10
event_hz = $EVENT_HZ
topics = 1
size = 2048
EOF
}

# start [MAX_CONNECTIONS REQUEST_TIMEOUT]: sets SPID, SPORT
start() {
    SPORT=$(free_port)
    conf "$T/k.conf" "$SPORT" "$@"
    nice -n "$NICE" "$KATOMON" -f -c "$T/k.conf" 2>>"$T/server.log" &
    SPID=$!
    server_up katomon
}

client() {
    local out=$1
    shift
    nice -n "$NICE" "$CLIENT" -p "$SPORT" --pid "$SPID" --warmup "$WARMUP" --duration "$DUR" \
        --sub bench,bench_events --km-stats --out "$out" "$@" 2>>"$T/client.log" ||
        log "client: exit $? (see the result's open/failed counts)"
}

one() {
    local sc=$1 r=$2 f="$RAW/$1__katomon__$2.json"
    case $sc in
    R0) start && client "$f" -n "$N1" --label R0 ;;
    R1) start && client "$f" -n $((N1 + STALL)) --stall "$STALL" --label R1 ;;
    CH) start "$LIMIT" 2 &&
        nice -n "$NICE" "$CHURN" -p "$SPORT" --pid "$SPID" --cycles "$CYCLES" --warmup "$WARM_CYCLES" \
            --inflight "$INFLIGHT" --limit "$LIMIT" --seed "$r" --out "$f" 2>>"$T/client.log" ||
        log "churn: exit $?" ;;
    *) die "unknown scenario $sc" ;;
    esac
    stop
}

START=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
log "scenarios: $SCENARIOS; $RUNS run(s); R0/R1 ${WARMUP}s warm-up, ${DUR}s measured"
for r in $(seq 1 "$RUNS"); do
    for sc in $SCENARIOS; do
        log "run $r/$RUNS: $sc"
        one "$sc" "$r"
    done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - START))
if grep -q . "$T/client.log" 2>/dev/null; then
    log "client messages (last 5):"
    tail -n 5 "$T/client.log" >&2
fi

export BENCH_LOAD0="$LOAD0" BENCH_LOAD1="$LOAD1" BENCH_ELAPSED="$ELAPSED" BENCH_RUNS="$RUNS" \
    BENCH_WARMUP="$WARMUP" BENCH_DURATION="$DUR" BENCH_N1="$N1" BENCH_STALL="$STALL" \
    BENCH_EVENT_HZ="$EVENT_HZ" BENCH_QUEUE="$QUEUE" BENCH_CYCLES="$CYCLES" BENCH_WARMUP_CYCLES="$WARM_CYCLES" \
    BENCH_LIMIT="$LIMIT" BENCH_INFLIGHT="$INFLIGHT" BENCH_NICE="$NICE"
if [ "$OUT" = - ]; then
    "$PY" "$BD/robust_report.py" "$RAW"
else
    mkdir -p "$(dirname "$OUT")"
    "$PY" "$BD/robust_report.py" "$RAW" "$OUT" >"$OUT.tmp" && mv "$OUT.tmp" "$OUT" &&
        cat "$OUT"
    log "report written to $OUT"
fi
