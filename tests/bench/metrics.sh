#!/bin/bash
# metrics.sh - the history and /metrics benchmarks of issue 14
# (tests/bench/README.md, "History and /metrics").
#
# Runs, BENCH_RUNS times, interleaved (run 1 of everything, then run 2, ...):
#   hb       history_bench: render / walk / sample of 1,000 and 10,000 series
#            in-process, the 1 h query of 10 series, memory per sample;
#   scrape   GET /metrics over one kept-alive connection, BENCH_SCRAPES
#            scrapes at BENCH_SCRAPE_HZ, of katomon with bench_pub series =
#            1000 and series = 10000 (bench_pub's other topics idle), and of
#            Debian's prometheus-node-exporter (default collectors) started
#            here on a free loopback port;
#   fanout   the fan-out scenario S1 (BENCH_N1 clients, 10 Hz, 2 KB
#            realtime_update) against katomon with bench_pub also publishing
#            10,000 series at 1 Hz, with a scraper doing GET /metrics once a
#            second through warm-up and window ("scrape") and without
#            ("noscrape"), in alternating order.
# then prints the Markdown report (metrics_report.py) and writes it to
# tests/bench/results/issue-14.md (keeping what follows a
# "<!-- notes -->" line of the file there).
#
# Run through `make bench-history` (which builds what it needs). Knobs:
#   BENCH_RUNS=3            runs per figure (the report shows medians)
#   BENCH_FANOUT_RUNS=5     runs of the fan-out pair (noisier: more runs)
#   BENCH_SCRAPES=50        scrapes per target per run
#   BENCH_SCRAPE_HZ=5       their rate (an integer)
#   BENCH_HB_RUNS=200       repetitions inside history_bench per timing
#   BENCH_N1=1000           clients of the fan-out runs
#   BENCH_WARMUP=2          seconds after the last connect before measuring
#   BENCH_DURATION=10       seconds measured per fan-out run
#   BENCH_PARTS="hb scrape fanout"
#   BENCH_OUT=tests/bench/results/issue-14.md   (under top_srcdir; "-": none)
#   BENCH_RAW=DIR           keep the raw results there (default: temporary)
#   BENCH_NICE=-5           niceness of servers and clients (as root)
# A quick smoke run: BENCH_RUNS=1 BENCH_SCRAPES=10 BENCH_HB_RUNS=20 BENCH_DURATION=3 make bench-history
set -u

: "${top_builddir:?run me through make bench-history (top_builddir)}"
: "${top_srcdir:?run me through make bench-history (top_srcdir)}"
B=$top_builddir
S=$top_srcdir
BD=$S/tests/bench
RUNS=${BENCH_RUNS:-3}
FANOUT_RUNS=${BENCH_FANOUT_RUNS:-5}
SCRAPES=${BENCH_SCRAPES:-50}
SCRAPE_HZ=${BENCH_SCRAPE_HZ:-5}
HB_RUNS=${BENCH_HB_RUNS:-200}
N1=${BENCH_N1:-1000}
WARMUP=${BENCH_WARMUP:-2}
DUR=${BENCH_DURATION:-10}
PARTS=${BENCH_PARTS:-"hb scrape fanout"}
OUT=${BENCH_OUT:-$BD/results/issue-14.md}
if [ "$(id -u)" = 0 ]; then NICE=${BENCH_NICE:--5}; else NICE=${BENCH_NICE:-0}; fi
PY=$(command -v python3 || echo /usr/bin/python3)
CLIENT=$B/tests/bench/bench_client
HB=$B/tests/bench/history_bench
KATOMON=$B/katomon
NODE_EXPORTER=${BENCH_NODE_EXPORTER:-$(command -v prometheus-node-exporter)}

XPID=
on_exit() { [ -n "$XPID" ] && kill -KILL "$XPID" 2>/dev/null; }
# shared helpers: bench_init, bench_require, free_port, wait_port, stop
. "$BD/lib.sh"
bench_init bench-history

bench_require bench-history "$CLIENT" "$HB" "$KATOMON" "$B/.libs/bench_pub.so"
if [ -z "$NODE_EXPORTER" ]; then
    log "prometheus-node-exporter missing: tests/bench/setup.sh installs it"
    "$BD/setup.sh" >&2 || true
    NODE_EXPORTER=$(command -v prometheus-node-exporter)
    [ -n "$NODE_EXPORTER" ] || log "no node_exporter: the scrape comparison is skipped"
fi

# katomon_conf FILE PORT STATE_HZ SERIES: bench_pub with its bench topic at
# STATE_HZ (0: none) and SERIES series at 1 Hz; history on, default tiers,
# max_series above the series.
katomon_conf() {
    cat >"$1" <<EOF
[core]
plugin_dir = $B/.libs
state_dir = $T/state
log_level = warning
[http]
bind = 127.0.0.1
port = $2
web_root = $S/web
max_connections = 25000
[websocket]
update_interval = 0.1
[history]
max_series = 20000
flush_interval = 0
[plugin bench_pub]
state_hz = $3
event_hz = 0
topics = 1
size = 2048
series = $4
series_hz = 1
EOF
}

# start_katomon STATE_HZ SERIES: sets SPID, SPORT
start_katomon() {
    SPORT=$(free_port)
    rm -f "$T/state/history.db"
    katomon_conf "$T/k.conf" "$SPORT" "$1" "$2"
    nice -n "$NICE" "$KATOMON" -f -c "$T/k.conf" 2>>"$T/server.log" &
    SPID=$!
    wait_port "$SPORT" "$SPID" || { tail -n 20 "$T/server.log" >&2; stop; return 1; }
}

start_node_exporter() {
    SPORT=$(free_port)
    nice -n "$NICE" "$NODE_EXPORTER" --web.listen-address="127.0.0.1:$SPORT" \
        2>>"$T/node_exporter.log" &
    SPID=$!
    wait_port "$SPORT" "$SPID" || { tail -n 20 "$T/node_exporter.log" >&2; stop; return 1; }
}

# scraper PORT COUNT HZ OUT [PID]: COUNT scrapes of GET /metrics, HZ per
# second (an integer: curl --rate), by one curl over one kept-alive
# connection (curl reuses it for every URL of its command line; the
# num_connects column shows it); per scrape curl's time_total (request sent
# to the body's last byte; the first one includes the connect). Writes OUT
# as JSON with the server's CPU time across the scrapes (/proc/PID/stat).
scraper() {
    local port=$1 count=$2 hz=$3 out=$4 pid=${5:-} i args=() c0=0 c1=0 lines
    for i in $(seq 1 "$count"); do args+=(-o /dev/null "http://127.0.0.1:$port/metrics"); done
    lines=$(curl -s "http://127.0.0.1:$port/metrics" | grep -vc '^#')
    [ -n "$pid" ] && c0=$(proc_cpu_ticks "$pid")
    nice -n "$NICE" curl -s -H 'Accept: text/plain' --rate "$hz/s" \
        -w '%{time_total} %{size_download} %{http_code} %{num_connects}\n' "${args[@]}" \
        >"$out.txt"
    [ -n "$pid" ] && c1=$(proc_cpu_ticks "$pid")
    "$PY" - "$out.txt" "$lines" $((c1 - c0)) "$(getconf CLK_TCK)" >"$out" <<'EOF'
import json, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
ok = [r for r in rows if r[2] == "200"]
json.dump({"times_us": [float(r[0]) * 1e6 for r in ok[1:]],  # the first: connect
           "bytes": [int(r[1]) for r in ok[1:]], "sample_lines": int(sys.argv[2]),
           "errors": len(rows) - len(ok), "connects": sum(int(r[3]) for r in rows),
           "server_cpu_s": int(sys.argv[3]) / int(sys.argv[4])}, sys.stdout)
EOF
    rm -f "$out.txt"
}

# utime + stime of PID, clock ticks
proc_cpu_ticks() {
    awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"
}

# fanout_scraper PORT OUT: GET /metrics once a second until killed (curl
# --rate 1/s over one connection), a line per scrape in OUT (line-buffered:
# it is killed at the end).
fanout_scraper() {
    local i args=()
    for i in $(seq 1 600); do args+=(-o /dev/null "http://127.0.0.1:$1/metrics"); done
    exec nice -n "$NICE" stdbuf -oL curl -s --rate 1/s -w '%{time_total} %{size_download}\n' \
        "${args[@]}" >"$2"
}

# ---- parts ------------------------------------------------------------------

part_hb() { # RUN
    log "run $1/$RUNS: history_bench"
    nice -n "$NICE" "$HB" --runs "$HB_RUNS" >"$RAW/hb__$1.json" 2>>"$T/hb.log" ||
        log "history_bench failed (see its output)"
}

part_scrape() { # RUN
    local r=$1 n
    for n in 1000 10000; do
        log "run $r/$RUNS: scrape katomon, $n series"
        start_katomon 0 "$n" || continue
        sleep 3 # bench_series published, the series made, history sampling
        scraper "$SPORT" "$SCRAPES" "$SCRAPE_HZ" "$RAW/scrape__km$n.$r.json" "$SPID"
        stop
    done
    if [ -n "$NODE_EXPORTER" ]; then
        log "run $r/$RUNS: scrape node_exporter"
        if start_node_exporter; then
            sleep 1
            scraper "$SPORT" "$SCRAPES" "$SCRAPE_HZ" "$RAW/scrape__node.$r.json" "$SPID"
            stop
        fi
    fi
}

fanout_one() { # RUN MODE
    local r=$1 mode=$2
    log "run $r/$FANOUT_RUNS: fan-out S1 + 10,000 series, $mode"
    start_katomon 10 10000 || return
    sleep 2 # the 10,000 series exist and are sampled before the clients come
    if [ "$mode" = scrape ]; then
        fanout_scraper "$SPORT" "$RAW/fanout_scrapes__$r.txt" &
        XPID=$!
    fi
    nice -n "$NICE" "$CLIENT" -p "$SPORT" --pid "$SPID" --warmup "$WARMUP" --duration "$DUR" \
        --out "$RAW/fanout__$mode.$r.json" -n "$N1" --sub bench --label "S1-$mode" \
        2>>"$T/client.log" || log "client: exit $?"
    if [ -n "$XPID" ]; then
        kill -TERM "$XPID" 2>/dev/null
        wait "$XPID" 2>/dev/null
        XPID=
    fi
    stop
}

part_fanout() { # RUN: alternate which goes first
    if [ $(($1 % 2)) = 1 ]; then
        fanout_one "$1" noscrape
        fanout_one "$1" scrape
    else
        fanout_one "$1" scrape
        fanout_one "$1" noscrape
    fi
}

# ---- the run --------------------------------------------------------------------
START=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
log "parts: $PARTS; $RUNS run(s), the fan-out $FANOUT_RUNS"
ALL_RUNS=$((RUNS > FANOUT_RUNS ? RUNS : FANOUT_RUNS))
for r in $(seq 1 "$ALL_RUNS"); do
    for p in $PARTS; do
        if [ "$p" = fanout ]; then
            [ "$r" -le "$FANOUT_RUNS" ] && part_fanout "$r"
        else
            [ "$r" -le "$RUNS" ] && "part_$p" "$r"
        fi
    done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - START))

export BENCH_LOAD0="$LOAD0" BENCH_LOAD1="$LOAD1" BENCH_ELAPSED="$ELAPSED" BENCH_RUNS="$RUNS" \
    BENCH_FANOUT_RUNS="$FANOUT_RUNS" \
    BENCH_SCRAPES="$SCRAPES" BENCH_SCRAPE_HZ="$SCRAPE_HZ" BENCH_HB_RUNS="$HB_RUNS" \
    BENCH_N1="$N1" BENCH_WARMUP="$WARMUP" BENCH_DURATION="$DUR" BENCH_NICE="$NICE" \
    BENCH_SRCDIR="$S" BENCH_KATOMON="$KATOMON" BENCH_NODE_EXPORTER="$NODE_EXPORTER"
if [ "$OUT" = - ]; then
    "$PY" "$BD/metrics_report.py" "$RAW"
else
    mkdir -p "$(dirname "$OUT")"
    "$PY" "$BD/metrics_report.py" "$RAW" "$OUT" >"$OUT.tmp" && mv "$OUT.tmp" "$OUT" &&
        cat "$OUT"
    log "report written to $OUT"
fi
