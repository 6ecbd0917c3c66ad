#!/bin/bash
# run.sh - katomon's fan-out benchmark (issue 6; tests/bench/README.md).
#
# Runs every scenario against every server, BENCH_RUNS times (interleaved:
# run 1 of everything, then run 2, ...), with the same load client
# (bench_client), then prints the Markdown table (report.py: medians,
# ratios, targets) and writes it to tests/bench/results/latest.md.
#
# Run through `make bench` (which builds what it needs), or by hand with
# top_builddir and top_srcdir set. Knobs (environment):
#   BENCH_RUNS=3            runs per figure (the table shows medians)
#   BENCH_WARMUP=2          seconds after the last connect before measuring
#   BENCH_DURATION=5        seconds measured per run
#   BENCH_N1=1000           clients in S1, S1e, S3, S5
#   BENCH_N2=10000          clients in S2, S4
#   BENCH_IDLE_SECONDS=10   S6 measuring window
#   BENCH_SCENARIOS="S1 S1e S2 S3 S3u S4 S5 S6 C1"
#   BENCH_SERVERS="katomon floor node python"
#   BENCH_OUT=tests/bench/results/latest.md   (under top_srcdir; "-": none)
#   BENCH_RAW=DIR           keep the raw JSON results there (default: a
#                           temporary directory, removed)
#   BENCH_PYTHON=/usr/bin/python3   interpreter of the websockets peer
#   BENCH_NICE=-5           niceness of every server and of the client (as
#                           root; 0 otherwise): the same for all, it keeps
#                           unrelated load on a shared machine out of the way
# A quick smoke run: BENCH_RUNS=1 BENCH_N1=200 BENCH_N2=1000 BENCH_DURATION=2 make bench
set -u

: "${top_builddir:?run me through make bench (top_builddir)}"
: "${top_srcdir:?run me through make bench (top_srcdir)}"
B=$top_builddir
S=$top_srcdir
BD=$S/tests/bench
RUNS=${BENCH_RUNS:-3}
WARMUP=${BENCH_WARMUP:-2}
DUR=${BENCH_DURATION:-5}
N1=${BENCH_N1:-1000}
N2=${BENCH_N2:-10000}
IDLE_S=${BENCH_IDLE_SECONDS:-10}
SCENARIOS=${BENCH_SCENARIOS:-"S1 S1e S2 S3 S3u S4 S5 S6 C1"}
SERVERS=${BENCH_SERVERS:-"katomon floor node python"}
OUT=${BENCH_OUT:-$BD/results/latest.md}
PY_PEER=${BENCH_PYTHON:-/usr/bin/python3}
if [ "$(id -u)" = 0 ]; then NICE=${BENCH_NICE:--5}; else NICE=${BENCH_NICE:-0}; fi
NODE=${NODE:-node}
[ -n "$NODE" ] || NODE=node
PY=$(command -v python3 || echo /usr/bin/python3)
CLIENT=$B/tests/bench/bench_client
FLOOR=$B/tests/bench/floor
KATOMON=$B/katomon
SIZE=2048

# shared helpers: bench_init, bench_require, free_port, wait_port, stop
. "$BD/lib.sh"
bench_init bench

# ---- preconditions ------------------------------------------------------------
bench_require bench "$CLIENT" "$FLOOR" "$KATOMON" "$B/.libs/bench_pub.so"
have_server() {
    case $1 in
    node) [ -d "$BD/node_modules/ws" ] ;;
    python) "$PY_PEER" -c 'import websockets' 2>/dev/null ;;
    *) true ;;
    esac
}
case " $SERVERS " in *" node "*|*" python "*)
    if ! have_server node || ! have_server python; then
        log "setting up the peers (tests/bench/setup.sh)"
        "$BD/setup.sh" >&2 || log "setup failed; servers that are missing are skipped"
    fi ;;
esac
for s in $SERVERS; do
    if have_server "$s"; then OK_SERVERS="${OK_SERVERS:-} $s"; else log "skipping $s (not set up)"; fi
done
SERVERS=${OK_SERVERS:-}

if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((N2 + 100)) ]; then
    die "fd limit $(ulimit -n) < $((N2 + 100)): raise it (ulimit -Hn) or lower BENCH_N2"
fi

# ---- servers ------------------------------------------------------------------
# katomon_conf FILE PORT STATE_HZ EVENT_HZ TOPICS UPDATE_INTERVAL
katomon_conf() {
    cat >"$1" <<EOF
; katomon under the fan-out benchmark: only the bench_pub publisher, so what
; the clients receive is exactly the benchmark's payload. [websocket] keys
; not set here keep their defaults (ping 30 s, idle timeout 120 s, 1 MiB queue).
[core]
plugin_dir = $B/.libs
state_dir = $T/state
log_level = warning
[http]
bind = 127.0.0.1
port = $2
web_root = $S/web
; above the default 10000: S2 and S4 hold 10,000 clients plus the stats request
max_connections = 25000
[websocket]
update_interval = $6
[plugin bench_pub]
state_hz = $3
event_hz = $4
topics = $5
size = $SIZE
EOF
}

# The shipped katomon.conf with only its paths and port changed (S6).
default_conf() {
    sed -e "s|^port = .*|port = $2|" \
        -e "s|^;plugin_dir = .*|plugin_dir = $B/.libs|" \
        -e "s|^;state_dir = .*|state_dir = $T/state|" \
        -e "s|^;web_root = .*|web_root = $S/web|" \
        "$S/etc/katomon.conf" >"$1"
}

# start SERVER HZ [katomon: EVENT_HZ TOPICS UPDATE_INTERVAL [PRELOAD]]: sets SPID, SPORT
start() {
    local server=$1 hz=$2
    SPORT=$(free_port)
    case $server in
    katomon)
        katomon_conf "$T/k.conf" "$SPORT" "$hz" "$3" "$4" "$5"
        if [ -n "${6:-}" ]; then
            rm -f "$T/memcount"
            MEMCOUNT_FILE=$T/memcount LD_PRELOAD=$6 nice -n "$NICE" "$KATOMON" -f -c "$T/k.conf" 2>>"$T/server.log" &
        else
            nice -n "$NICE" "$KATOMON" -f -c "$T/k.conf" 2>>"$T/server.log" &
        fi ;;
    katomon-default)
        default_conf "$T/d.conf" "$SPORT"
        nice -n "$NICE" "$KATOMON" -f -c "$T/d.conf" 2>>"$T/server.log" & ;;
    floor) nice -n "$NICE" "$FLOOR" -p "$SPORT" --hz "$hz" --size $SIZE 2>>"$T/server.log" & ;;
    node) nice -n "$NICE" "$NODE" "$BD/peers/ws_node.mjs" --port "$SPORT" --hz "$hz" --size $SIZE 2>>"$T/server.log" & ;;
    python) nice -n "$NICE" "$PY_PEER" "$BD/peers/ws_python.py" --port "$SPORT" --hz "$hz" --size $SIZE 2>>"$T/server.log" & ;;
    esac
    SPID=$!
    server_up "$server"
}

# client OUTFILE ARGS...: the load client against the running server
client() {
    local out=$1
    shift
    nice -n "$NICE" "$CLIENT" -p "$SPORT" --pid "$SPID" --warmup "$WARMUP" --duration "$DUR" --out "$out" "$@" \
        2>>"$T/client.log" || log "client: exit $? (see the result's open/failed counts)"
}

# ---- scenarios ------------------------------------------------------------------
TOPICS10=bench0,bench1,bench2,bench3,bench4,bench5,bench6,bench7,bench8,bench9

# one SCENARIO SERVER RUN
one() {
    local sc=$1 sv=$2 r=$3 f="$RAW/$1__$2__$3.json" ks=
    [ "$sv" = katomon ] && ks=--km-stats
    case $sc in
    S1) start "$sv" 10 0 1 0.1 && client "$f" -n "$N1" --sub bench $ks --label "$sc" ;;
    S1e) [ "$sv" = katomon ] || return 0
        start "$sv" 0 10 1 0.1 && client "$f" -n "$N1" --sub bench_events $ks --label "$sc" ;;
    S2) start "$sv" 1 0 1 1 && client "$f" -n "$N2" --sub bench $ks --label "$sc" ;;
    S3) [ "$sv" = katomon ] || return 0
        start "$sv" 10 0 10 0.1 &&
            client "$f" -n "$N1" --sub "$TOPICS10" --sub-random 5 --seed "$r" $ks --label "$sc" ;;
    S3u) [ "$sv" = katomon ] || return 0
        start "$sv" 10 0 10 0.1 && client "$f" -n "$N1" --sub "$TOPICS10" $ks --label "$sc" ;;
    S4) start "$sv" 0 0 1 1 && client "$f" -n "$N2" --sub bench --idle --settle 2 --label "$sc" ;;
    S5) start "$sv" 10 0 1 0.1 && client "$f" -n "$N1" --sub bench --stall 1 $ks --label "$sc" ;;
    S6) [ "$sv" = katomon ] || return 0
        start katomon-default 0 && idle_measure "$f" ;;
    C1) [ "$sv" = katomon ] || return 0 # copy count: S1 with memcount.so preloaded
        start "$sv" 10 0 1 0.1 "$B/tests/bench/.libs/memcount.so" &&
            client "$f" -n "$N1" --sub bench $ks --memcount "$T/memcount" --label "$sc" ;;
    *) die "unknown scenario $sc" ;;
    esac
    stop
}

# S6: the daemon with the shipped config, no client: CPU share and RSS.
idle_measure() {
    sleep "$WARMUP"
    "$PY" - "$SPID" "$IDLE_S" "$1" <<'EOF'
import os, sys, time, json
pid, secs, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
tck = os.sysconf("SC_CLK_TCK")
def stat():
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tck
def sched():
    s = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            s += int(open("/proc/%d/task/%s/schedstat" % (pid, t)).read().split()[0]) / 1e9
        except OSError:
            pass
    return s
def rss():
    for l in open("/proc/%d/status" % pid):
        if l.startswith("VmRSS:"):
            return int(l.split()[1])
c0, s0, t0 = stat(), sched(), time.monotonic()
time.sleep(secs)
c1, s1, t1 = stat(), sched(), time.monotonic()
w = t1 - t0
json.dump({"label": "S6", "window_s": w, "server_cpu_s": c1 - c0, "server_sched_s": s1 - s0,
           "server_cpu_pct": (c1 - c0) / w * 100, "sched_cpu_pct": (s1 - s0) / w * 100,
           "rss_end_kib": rss()}, open(out, "w"))
EOF
}

# ---- the run --------------------------------------------------------------------
START=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
log "servers: $SERVERS; scenarios: $SCENARIOS; $RUNS run(s), ${WARMUP}s warm-up, ${DUR}s measured"
for r in $(seq 1 "$RUNS"); do
    for sc in $SCENARIOS; do
        for sv in $SERVERS; do
            case $sc in S1e|S3|S3u|S6|C1) [ "$sv" = katomon ] || continue ;; esac
            log "run $r/$RUNS: $sc $sv"
            one "$sc" "$sv" "$r"
        done
    done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - START))

export BENCH_LOAD0="$LOAD0" BENCH_LOAD1="$LOAD1" BENCH_ELAPSED="$ELAPSED" BENCH_RUNS="$RUNS" \
    BENCH_WARMUP="$WARMUP" BENCH_DURATION="$DUR" BENCH_N1="$N1" BENCH_N2="$N2" \
    BENCH_IDLE_SECONDS="$IDLE_S" BENCH_SERVERS="$SERVERS" BENCH_NODE="$NODE" \
    BENCH_PY_PEER="$PY_PEER" BENCH_SRCDIR="$S" BENCH_KATOMON="$KATOMON" BENCH_NICE="$NICE"
if [ "$OUT" = - ]; then
    "$PY" "$BD/report.py" "$RAW"
else
    mkdir -p "$(dirname "$OUT")"
    "$PY" "$BD/report.py" "$RAW" | tee "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
    log "table written to $OUT"
fi
