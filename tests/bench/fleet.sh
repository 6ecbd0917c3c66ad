#!/bin/bash
# fleet.sh - the fleet benchmark (issue 15): what the redis_bridge costs,
# side by side with katomon's local fan-out. Run through `make bench-fleet`
# on a plain optimized build (configure CFLAGS="-O2 -g").
#
#   L   latency and CPU per message, one event topic at BENCH_FLEET_HZ:
#       local    publisher (bench_pub) and WebSocket clients on the same katomon
#       bridged  bench_pub on host B, its redis_bridge -> a real redis-server ->
#                the edge's redis_bridge -> the edge's clients (katomon/1)
#       age = the client's CLOCK_MONOTONIC at receipt - the publisher's stamp
#       (one machine, one clock), so it is publish-to-client, Redis included.
#   F   50 hosts x 1 Hz (each a real katomon: bench_pub + redis_bridge) through
#       one edge to 1,000 katomon/1 clients: the edge's CPU and memory, what
#       each client receives, and that the edge sees every host up.
#
# Knobs: BENCH_RUNS (3), BENCH_DURATION (5 s), BENCH_WARMUP (2 s),
# BENCH_FLEET_HZ (200), BENCH_FLEET_CLIENTS (100, scenario L),
# BENCH_FLEET_HOSTS (50), BENCH_FLEET_N (1000), BENCH_OUT.
set -u

: "${top_builddir:?run me through make bench-fleet (top_builddir)}"
: "${top_srcdir:?run me through make bench-fleet (top_srcdir)}"
B=$top_builddir
S=$top_srcdir
BD=$S/tests/bench
RUNS=${BENCH_RUNS:-3}
WARMUP=${BENCH_WARMUP:-2}
DUR=${BENCH_DURATION:-5}
HZ=${BENCH_FLEET_HZ:-200}
NL=${BENCH_FLEET_CLIENTS:-100}
HOSTS=${BENCH_FLEET_HOSTS:-50}
NF=${BENCH_FLEET_N:-1000}
OUT=${BENCH_OUT:-$BD/results/issue-15.md}
PY=$(command -v python3 || echo /usr/bin/python3)
CLIENT=$B/tests/bench/bench_client
KATOMON=$B/katomon
REDIS=$(command -v redis-server || echo /usr/bin/redis-server)

PIDS=()
on_exit() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; }
. "$BD/lib.sh"
bench_init bench-fleet

[ -e "$REDIS" ] || die "$REDIS is missing: ./bootstrap installs redis-server"
bench_require bench-fleet "$CLIENT" "$KATOMON" "$B/.libs/bench_pub.so" "$B/.libs/redis_bridge.so"

# cpu_ticks PID: utime + stime of PID, in clock ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# conf FILE NAME PORT STATE_HZ EVENT_HZ SIZE BRIDGE(pub|sub|both|none) UPDATE
conf() {
    mkdir -p "$T/state-$2"
    cat >"$1" <<EOF
[core]
plugin_dir = $B/.libs
state_dir = $T/state-$2
log_level = warning
host_name = $2
max_hosts = 256
host_stale = 5
[http]
bind = 127.0.0.1
port = $3
web_root = $S/web
max_connections = 25000
[websocket]
update_interval = $8
[history]
enabled = false
[plugin bench_pub]
state_hz = $4
event_hz = $5
size = $6
EOF
    case $7 in
    none) ;;
    *) cat >>"$1" <<EOF
[plugin redis_bridge]
url = redis://127.0.0.1:$RPORT/0
publish = $([ "$7" = sub ] && echo false || echo true)
subscribe = $([ "$7" = pub ] && echo false || echo true)
EOF
    esac
}

# start_km NAME STATE_HZ EVENT_HZ SIZE BRIDGE UPDATE: sets KPORT, KPID
start_km() {
    KPORT=$(free_port)
    conf "$T/$1.conf" "$1" "$KPORT" "$2" "$3" "$4" "$5" "$6"
    "$KATOMON" -f -c "$T/$1.conf" 2>>"$T/$1.log" &
    KPID=$!
    PIDS+=("$KPID")
    wait_port "$KPORT" "$KPID" || { tail -n 20 "$T/$1.log" >&2; die "$1 did not start"; }
}

start_redis() {
    RPORT=$(free_port)
    "$REDIS" --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
        --logfile "$T/redis.log" &
    RPID=$!
    PIDS+=("$RPID")
    wait_port "$RPORT" "$RPID" || die "redis-server did not start"
}

# hosts_up PORT N: until the edge on PORT lists N hosts up (30 s)
hosts_up() {
    "$PY" - "$1" "$2" <<'EOF'
import json, sys, time, urllib.request
port, want = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 30
n = -1
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/hosts", timeout=2) as r:
            n = sum(1 for h in json.load(r)["hosts"] if h["up"])
        if n >= want:
            print(n)
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
print(n)
sys.exit(1)
EOF
}

# client OUT PORT PID ARGS...: one bench_client run against katomon PORT/PID
client() {
    local out=$1 port=$2 pid=$3
    shift 3
    "$CLIENT" -p "$port" --pid "$pid" --warmup "$WARMUP" --duration "$DUR" --out "$out" \
        --proto katomon/1 "$@" 2>>"$T/client.log" || log "client: exit $?"
}

SIZE=512
run_local() { # run number
    start_km edge "0" "$HZ" "$SIZE" none 1
    client "$RAW/L-local-$1.json" "$KPORT" "$KPID" -n "$NL" --sub bench_events --label local
    # one client: the per-message work with (almost) no fan-out
    client "$RAW/L1-local-$1.json" "$KPORT" "$KPID" -n 1 --sub bench_events --label local1
    stop_all
}

run_bridged() {
    start_redis
    start_km hostb "0" "$HZ" "$SIZE" pub 1
    local bpid=$KPID
    start_km edge "0" "0" "$SIZE" sub 1
    local epid=$KPID eport=$KPORT
    hosts_up "$eport" 2 >/dev/null || log "the edge does not see hostb up"
    local b0 r0 b1 r1 t0 t1
    b0=$(cpu_ticks "$bpid")
    r0=$(cpu_ticks "$RPID")
    t0=$(date +%s.%N)
    client "$RAW/L-bridged-$1.json" "$eport" "$epid" -n "$NL" --sub bench_events --label bridged
    t1=$(date +%s.%N)
    b1=$(cpu_ticks "$bpid")
    r1=$(cpu_ticks "$RPID")
    client "$RAW/L1-bridged-$1.json" "$eport" "$epid" -n 1 --sub bench_events --label bridged1
    # the publisher's and Redis's CPU over the client's whole run (connects and
    # warm-up included: they publish at the same rate throughout)
    echo "{\"pub_ticks\":$((b1 - b0)),\"redis_ticks\":$((r1 - r0)),\"seconds\":$(awk "BEGIN{print $t1 - $t0}")}" \
        >"$RAW/L-bridged-$1.side.json"
    stop_all
}

run_fleet() {
    start_redis
    local i
    for i in $(seq 1 "$HOSTS"); do
        start_km "h$i" 1 0 1024 pub 1
    done
    start_km edge 0 0 1024 sub 1
    local epid=$KPID eport=$KPORT
    local up
    up=$(hosts_up "$eport" $((HOSTS + 1))) || log "only $up hosts up on the edge"
    client "$RAW/F-$1.json" "$eport" "$epid" -n "$NF" --sub bench --label fleet
    local up_after
    up_after=$(hosts_up "$eport" $((HOSTS + 1)))
    "$PY" - "$eport" "$RAW/F-$1.hosts.json" "$up" "$up_after" <<'EOF'
import json, sys, urllib.request
port, out, up, up_after = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/hosts", timeout=5) as r:
    hosts = json.load(r)["hosts"]
json.dump({"up_before": int(up), "up_after": int(up_after), "hosts": len(hosts),
           "gaps": sum(h["gaps"] for h in hosts), "missed": sum(h["missed"] for h in hosts),
           "refused": sum(h["refused"] for h in hosts)}, open(out, "w"))
EOF
    stop_all
}

log "L: $HZ Hz events, $NL clients; F: $HOSTS hosts x 1 Hz -> $NF clients; $RUNS runs"
for r in $(seq 1 "$RUNS"); do
    log "run $r: local"
    run_local "$r"
    log "run $r: bridged"
    run_bridged "$r"
    log "run $r: fleet"
    run_fleet "$r"
done
"$PY" "$BD/fleet_report.py" "$RAW" "$HZ" "$NL" "$HOSTS" "$NF" "$DUR" >"$OUT" || die "report failed"
cat "$OUT"
log "written to $OUT"
