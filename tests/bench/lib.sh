# lib.sh - what the benchmark scripts (run.sh, metrics.sh, fleet.sh,
# robust.sh, latency.sh) share; sourced, never run. Expects PY (a python3),
# KATOMON (the binary under test) and uses SPID (the server's pid).

# bench_init NAME: log/die lines prefixed "NAME:", a scratch directory T
# (removed at exit) with T/state, RAW (BENCH_RAW, else T/raw) for the raw
# figures, SPID killed at exit; a script with more to undo defines on_exit
bench_init() {
    BENCH_NAME=$1
    T=$(mktemp -d "${TMPDIR:-/tmp}/km-$1.XXXXXX")
    RAW=${BENCH_RAW:-$T/raw}
    mkdir -p "$RAW" "$T/state"
    SPID=
    trap bench_exit EXIT
    trap 'exit 130' INT TERM
}
bench_exit() {
    if type on_exit >/dev/null 2>&1; then on_exit; fi
    [ -n "$SPID" ] && kill -KILL "$SPID" 2>/dev/null
    rm -rf "$T"
}
log() { echo "$BENCH_NAME: $*" >&2; }
die() { log "$*"; exit 1; }

# bench_require TARGET FILE...: every FILE built (else: "run make TARGET"),
# KATOMON a plain build (sanitizers would measure ASan), the fd limit raised
# to the hard limit for the servers (the clients raise their own)
bench_require() {
    local target=$1 f
    shift
    for f in "$@"; do
        [ -e "$f" ] || die "$f is missing: run 'make $target' (it builds it)"
    done
    if ldd "$KATOMON" 2>/dev/null | grep -q 'libasan\|libubsan'; then
        die "katomon is built with sanitizers: benchmark a plain build (configure CFLAGS='-O2 -g')"
    fi
    ulimit -n "$(ulimit -Hn)" 2>/dev/null
}

# free_port: a loopback TCP port nothing listens on now
free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT PID: until something accepts on PORT (10 s), or PID dies
wait_port() {
    local i=0
    while [ $i -lt 100 ]; do
        kill -0 "$2" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# stop: SIGTERM to the server SPID, SIGKILL after 5 s; clears SPID
stop() {
    [ -n "$SPID" ] || return 0
    kill -TERM "$SPID" 2>/dev/null
    local i=0
    while kill -0 "$SPID" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    SPID=
}

# stop_all: SIGTERM to every pid of the array PIDS at once, then each
# waited for (SIGKILL after 5 s); empties PIDS
stop_all() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        local i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    PIDS=()
}

# server_up NAME: until the server SPID accepts on SPORT; if it dies or
# never does, its log's tail (T/server.log), stopped, and return 1
server_up() {
    wait_port "$SPORT" "$SPID" && return 0
    log "$1 did not start; its log:"
    tail -n 20 "$T/server.log" >&2
    stop
    return 1
}
