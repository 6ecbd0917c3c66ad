#!/bin/bash
# latency.sh - the end-to-end latency benchmark (issue 17, point 6). Run
# through `make bench-latency` on a plain optimized build (configure
# CFLAGS="-O2 -g"); it writes tests/bench/results/issue-17-latency.md.
#
#   D   Docker: POST /containers/NAME/kill sent -> system_alert container_down
#       at a WebSocket client (real dockerd, Debian's docker.io, brought up by
#       tests/docker/setup.sh; Docker's own event latency included). katomon:
#       docker_stats (interval BENCH_DOCKER_INTERVAL, events on) and
#       alert_manager with the shipped container_down rule. Side by side, the
#       same with `events = false` (the poll alone), and, when
#       BENCH_OLD_PLUGIN_DIR names a plugin directory holding an older
#       docker_stats.so (e.g. main's before issue 17), that one too.
#       Needs root (dockerd); skipped otherwise.
#   K   KATO: the simulator (tests/sim/kato_sim.py) creates a session and
#       sends session.created on /ws/events -> session_event at a client.
#   F   fan-out: bench_pub's event topic at BENCH_FAN_HZ to BENCH_FAN_CLIENTS
#       katomon/1 clients (bench_client; latency from bench_pub's publish);
#       beside, the same clients against floor.c (one pre-built frame
#       write()n to every client per tick): the least any server can do.
#
# Knobs: BENCH_RUNS (3), BENCH_LAT_N (100 events per run, D and K),
# BENCH_DOCKER_INTERVAL (1), BENCH_FAN_CLIENTS (1000), BENCH_FAN_HZ (10),
# BENCH_DURATION (10 s window for F: 100 events at 10 Hz), BENCH_WARMUP (2),
# BENCH_LAT_SCENARIOS ("D K F"), BENCH_OLD_PLUGIN_DIR, BENCH_OUT, BENCH_RAW (a
# directory to keep each run's JSON in: every event's latency),
# BENCH_KATO_GAP (latency.py).
set -u

: "${top_builddir:?run me through make bench-latency (top_builddir)}"
: "${top_srcdir:?run me through make bench-latency (top_srcdir)}"
B=$top_builddir
S=$top_srcdir
BD=$S/tests/bench
RUNS=${BENCH_RUNS:-3}
N=${BENCH_LAT_N:-100}
DINT=${BENCH_DOCKER_INTERVAL:-1}
FAN_N=${BENCH_FAN_CLIENTS:-1000}
FAN_HZ=${BENCH_FAN_HZ:-10}
DUR=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
SCEN=${BENCH_LAT_SCENARIOS:-D K F}
OLD=${BENCH_OLD_PLUGIN_DIR:-}
OUT=${BENCH_OUT:-$BD/results/issue-17-latency.md}
PY=$(command -v python3 || echo /usr/bin/python3)
CLIENT=$B/tests/bench/bench_client
KATOMON=$B/katomon
PREFIX="kmlat$$-"
NAMES="${PREFIX}a,${PREFIX}b,${PREFIX}c,${PREFIX}d"

PIDS=()
DOCKER_MADE=
on_exit() {
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    if [ -n "$DOCKER_MADE" ]; then
        docker rm -f ${NAMES//,/ } >/dev/null 2>&1
    fi
}
. "$BD/lib.sh"
bench_init bench-latency

bench_require bench-latency "$CLIENT" "$KATOMON" "$B/.libs/bench_pub.so" \
    "$B/.libs/docker_stats.so" "$B/.libs/alert_manager.so" "$B/.libs/session_events.so"

# conf FILE NAME PORT PLUGIN_DIR: [core] [http] [websocket]; the plugin
# sections are appended by the caller
conf() {
    mkdir -p "$T/state-$2"
    cat >"$1" <<EOF
[core]
plugin_dir = $4
state_dir = $T/state-$2
log_level = info
[http]
bind = 127.0.0.1
port = $3
web_root = $S/web
max_connections = 25000
[websocket]
update_interval = 1
[history]
enabled = false
EOF
}

# start_km NAME CONF: sets KPID (KPORT is chosen before conf is written)
start_km() {
    "$KATOMON" -f -c "$2" 2>>"$T/$1.log" &
    KPID=$!
    PIDS+=("$KPID")
    wait_port "$KPORT" "$KPID" || { tail -n 20 "$T/$1.log" >&2; die "$1 did not start"; }
}

# ---- D: docker ----------------------------------------------------------------

docker_up() {
    if [ "$(id -u)" != 0 ]; then
        log "D skipped: not root (dockerd needs root)"
        return 1
    fi
    KM_DOCKER_PREFIX=$PREFIX "$S/tests/docker/setup.sh" >"$T/docker-setup.log" 2>&1 ||
        { tail -n 5 "$T/docker-setup.log" >&2; log "D skipped: tests/docker/setup.sh failed"; return 1; }
    local n
    DOCKER_MADE=yes
    for n in ${NAMES//,/ }; do
        docker rm -f "$n" >/dev/null 2>&1
        # --init: tini is PID 1, so a kill ends it at once, as for a real service
        docker run -d --name "$n" --init --network none --label "katomon.run=$PREFIX" \
            katomon-busybox /bin/busybox sleep 1000000 >/dev/null ||
            die "cannot start container $n"
    done
}

# the plugin dir of BENCH_OLD_PLUGIN_DIR's docker_stats.so beside this build's others
old_dir() {
    mkdir -p "$T/old-plugins"
    local f
    for f in "$B"/.libs/*.so; do ln -sf "$f" "$T/old-plugins/"; done
    ln -sf "$OLD/docker_stats.so" "$T/old-plugins/docker_stats.so"
    echo "$T/old-plugins"
}

run_docker() { # run, mode (events|poll|old)
    local dir=$B/.libs events=true
    [ "$2" = poll ] && events=false
    [ "$2" = old ] && dir=$(old_dir)
    KPORT=$(free_port)
    conf "$T/d.conf" "d-$2" "$KPORT" "$dir"
    cat >>"$T/d.conf" <<EOF
[plugin docker_stats]
socket = /var/run/docker.sock
containers = $NAMES
interval = $DINT
events = $events
[plugin alert_manager]
[alert container_down]
topic = containers
path = containers[*]
match = status != running || health == unhealthy
level = error
name_field = name
cooldown = 60
message = Container '{name}' is {value}
EOF
    start_km "d-$2" "$T/d.conf"
    "$PY" "$BD/latency.py" docker --port "$KPORT" --containers "$NAMES" --n "$N" \
        --label "$2" --out "$RAW/D-$2-$1.json" 2>>"$T/client.log" ||
        log "latency.py docker $2: exit $?"
    tail -n 1 "$T/client.log" >&2
    stop_all
}

# ---- K: KATO simulator ----------------------------------------------------------

run_kato() { # run
    local pf=$T/sim.port
    rm -f "$pf"
    "$PY" "$S/tests/sim/kato_sim.py" --port 0 --port-file "$pf" >>"$T/sim.log" 2>&1 &
    local spid=$!
    PIDS+=("$spid")
    local i=0
    while [ ! -s "$pf" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -s "$pf" ] || die "the KATO simulator did not start"
    local sport
    sport=$(cat "$pf")
    KPORT=$(free_port)
    conf "$T/k.conf" k "$KPORT" "$B/.libs"
    cat >>"$T/k.conf" <<EOF
[plugin kato_metrics]
url = http://127.0.0.1:$sport
interval = 5
[plugin session_events]
url = http://127.0.0.1:$sport
retry = 1
EOF
    start_km k "$T/k.conf"
    # the stream is followed once the log says so
    i=0
    while ! grep -q "following KATO /ws/events" "$T/k.log" && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    "$PY" "$BD/latency.py" kato --port "$KPORT" --sim-port "$sport" --n "$N" \
        --out "$RAW/K-$1.json" 2>>"$T/client.log" || log "latency.py kato: exit $?"
    tail -n 1 "$T/client.log" >&2
    stop_all
}

# ---- F: in-process fan-out --------------------------------------------------------

run_fan() { # run
    KPORT=$(free_port)
    conf "$T/f.conf" f "$KPORT" "$B/.libs"
    cat >>"$T/f.conf" <<EOF
[plugin bench_pub]
state_hz = 0
event_hz = $FAN_HZ
size = 512
EOF
    start_km f "$T/f.conf"
    "$CLIENT" -p "$KPORT" --pid "$KPID" --warmup "$WARMUP" --duration "$DUR" \
        --out "$RAW/F-$1.json" --proto katomon/1 -n "$FAN_N" --sub bench_events \
        --label fanout 2>>"$T/client.log" || log "bench_client: exit $?"
    stop_all
}

# the same clients against floor.c (epoll, one pre-built frame write()n to
# every client per tick): what any server costs on this machine
run_floor() { # run
    KPORT=$(free_port)
    "$B/tests/bench/floor" -p "$KPORT" --hz "$FAN_HZ" --size 512 2>>"$T/floor.log" &
    KPID=$!
    PIDS+=("$KPID")
    wait_port "$KPORT" "$KPID" || die "floor did not start"
    "$CLIENT" -p "$KPORT" --pid "$KPID" --warmup "$WARMUP" --duration "$DUR" \
        --out "$RAW/Ffloor-$1.json" -n "$FAN_N" --sub bench --label floor \
        2>>"$T/client.log" || log "bench_client (floor): exit $?"
    stop_all
}

has() { case " $SCEN " in *" $1 "*) return 0 ;; esac; return 1; }

DOCKER_OK=
if has D && docker_up; then DOCKER_OK=yes; fi
MODES="events poll"
[ -n "$OLD" ] && MODES="events old poll"
log "scenarios: $SCEN; $RUNS runs; $N events per run (D, K); F: $FAN_N clients, $FAN_HZ Hz, $DUR s"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$RUNS"); do
    if [ -n "$DOCKER_OK" ]; then
        for m in $MODES; do
            log "run $r: D ($m)"
            run_docker "$r" "$m"
        done
    fi
    if has K; then
        log "run $r: K"
        run_kato "$r"
    fi
    if has F; then
        log "run $r: F"
        run_fan "$r"
        log "run $r: F (floor)"
        run_floor "$r"
    fi
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
# the notes after "<!-- notes -->" in an earlier report are kept
[ -f "$OUT" ] && cp "$OUT" "$T/notes.md"
"$PY" "$BD/latency_report.py" "$RAW" "$DINT" "$FAN_N" "$FAN_HZ" "$LOAD0" "$LOAD1" \
    "$T/notes.md" >"$T/report.md" || die "report failed"
cp "$T/report.md" "$OUT"
cat "$OUT"
log "written to $OUT"
