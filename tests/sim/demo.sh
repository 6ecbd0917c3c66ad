#!/bin/sh
# tests/sim/demo.sh - `make demo`: every dashboard widget alive in one command.
#
# Starts the KATO simulator in --demo mode (changing CPU, memory and request
# rate, sessions created and destroyed every few seconds, an error-rate
# spike every two minutes that raises and resolves alerts), then katomon
# with a demo configuration (host, KATO metrics, session events, Docker
# where the machine has it, alerts), and prints the dashboard's URL.
# Ctrl-C stops everything; nothing is left behind (the alert history of a
# demo lives in a temporary directory).
#
# Docker: when an engine answers on /var/run/docker.sock, its containers are
# shown; otherwise, as root on a machine with Debian's docker.io, the demo
# starts one with tests/docker/setup.sh (two small busybox containers,
# "kato" busy and "kato-redis" idle) and stops it again on exit. Elsewhere
# the containers panel says Docker is unavailable. DEMO_DOCKER=no skips it.
#
# Environment: KATOMON (default ./katomon), KM_PLUGIN_DIR (default ./.libs),
# top_srcdir, DEMO_PORT (default 8080; a free port is taken when it is
# busy), DEMO_BIND (default 127.0.0.1), DEMO_DOCKER (auto|no).
set -u

srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
KATOMON=${KATOMON:-$(pwd)/katomon}
KM_PLUGIN_DIR=${KM_PLUGIN_DIR:-$(pwd)/.libs}
PORT=${DEMO_PORT:-8080}
BIND=${DEMO_BIND:-127.0.0.1}
DOCKER_MODE=${DEMO_DOCKER:-auto}

[ -x "$KATOMON" ] || { echo "demo: no katomon at $KATOMON (run make first)" >&2; exit 1; }
[ -f "$KM_PLUGIN_DIR/kato_metrics.so" ] || { echo "demo: no plugins in $KM_PLUGIN_DIR (run make first)" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "demo: python3 is needed for the KATO simulator" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/katomon-demo.XXXXXX")
sim_pid=
km_pid=
docker_started=

cleanup() {
    trap - EXIT INT TERM
    [ -n "$km_pid" ] && kill "$km_pid" 2>/dev/null && wait "$km_pid" 2>/dev/null
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
    if [ -n "$docker_started" ]; then
        echo "demo: stopping the demo's Docker engine"
        sh "$srcdir/tests/docker/teardown.sh" >/dev/null 2>&1
    fi
    rm -rf "$dir"
    echo "demo: stopped"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# ---- the KATO simulator -----------------------------------------------------
python3 "$srcdir/tests/sim/kato_sim.py" --port 0 --port-file "$dir/sim.port" \
    --demo --sessions 6 >"$dir/sim.log" 2>&1 &
sim_pid=$!
i=0
while [ ! -s "$dir/sim.port" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$sim_pid" 2>/dev/null; then
        echo "demo: the KATO simulator did not start:" >&2
        cat "$dir/sim.log" >&2
        exit 1
    fi
    sleep 0.1
done
sim_url=http://127.0.0.1:$(cat "$dir/sim.port")

# ---- Docker, where the machine has it -----------------------------------------
docker_section="; Docker: not used (DEMO_DOCKER=no)"
if [ "$DOCKER_MODE" != no ]; then
    containers='*'
    if [ ! -S /var/run/docker.sock ] && [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null 2>&1; then
        echo "demo: starting a Docker engine with two small containers (DEMO_DOCKER=no skips this)"
        if sh "$srcdir/tests/docker/setup.sh" --containers >"$dir/docker.log" 2>&1; then
            docker_started=1
            containers=kato,kato-redis
        else
            echo "demo: Docker could not be started (see below); going on without it" >&2
            tail -n 3 "$dir/docker.log" >&2
        fi
    fi
    docker_section="[plugin docker_stats]
; every container ('*'), or the demo's own when it started the engine
containers = $containers
interval = 2"
fi

# ---- katomon --------------------------------------------------------------
write_config() {
    cat >"$dir/katomon.conf" <<EOF
; katomon demo configuration (written by tests/sim/demo.sh)
[core]
plugin_dir = $KM_PLUGIN_DIR
state_dir = $dir/state
log_level = notice

[http]
bind = $BIND
port = $1
web_root = $srcdir/web

[websocket]
update_interval = 2

[plugin host_stats]
interval = 2

[plugin kato_metrics]
url = $sim_url
interval = 2

[plugin session_events]
url = $sim_url
retry = 5

$docker_section

[plugin alert_manager]

[alert high_cpu]
topic = containers
path = aggregated.total_cpu_percent
warning = 80
critical = 90
message = High CPU usage: {value}%

[alert high_memory]
topic = containers
path = aggregated.total_memory_percent
warning = 85
critical = 95
message = High memory usage: {value}%

[alert high_error_rate]
topic = metrics
path = performance.error_rate
warning = 0.05
critical = 0.10
message = High error rate: {value_pct}%

[alert container_down]
topic = containers
path = containers[*]
match = status != running
level = error
name_field = name
message = Container '{name}' is {value}
EOF
}

start_katomon() {
    write_config "$1"
    : >"$dir/katomon.log"
    "$KATOMON" -f -c "$dir/katomon.conf" 2>"$dir/katomon.log" &
    km_pid=$!
    i=0
    while :; do
        url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$dir/katomon.log" | head -n 1)
        [ -n "$url" ] && return 0
        if ! kill -0 "$km_pid" 2>/dev/null; then
            wait "$km_pid" 2>/dev/null
            km_pid=
            return 1
        fi
        i=$((i + 1))
        [ $i -gt 150 ] && return 1
        sleep 0.1
    done
}

if ! start_katomon "$PORT"; then
    if grep -q 'in use' "$dir/katomon.log"; then
        echo "demo: port $PORT is busy; using a free one"
        start_katomon 0 || { cat "$dir/katomon.log" >&2; exit 1; }
    else
        echo "demo: katomon did not start:" >&2
        cat "$dir/katomon.log" >&2
        exit 1
    fi
fi
case $url in
    http://0.0.0.0:*) url="http://127.0.0.1:${url##*:}" ;;
esac

cat <<EOF

  katomon demo is running

    Dashboard       $url/
    KATO simulator  $sim_url   (control API: $sim_url/_sim/state)
    Logs            $dir/katomon.log

  Sessions come and go every few seconds; about every two minutes the error
  rate rises (a warning, then an error) and falls back (resolved alerts).
  Press Ctrl-C to stop.

EOF
wait "$km_pid"
status=$?
km_pid=
echo "demo: katomon exited with status $status; its log:" >&2
tail -n 20 "$dir/katomon.log" >&2
exit "$status"
