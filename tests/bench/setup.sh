#!/bin/sh
# setup.sh - installs the benchmark's peers (run.sh calls it when needed):
#   - Node's ws package, pinned in package.json / package-lock.json (npm ci);
#   - Debian's python3-websockets (apt-get, when root and it is missing);
#   - Debian's prometheus-node-exporter, the scrape the /metrics benchmark
#     compares with (tests/apt-quiet-install.sh: its system service is not
#     left running; the benchmark starts its own node_exporter).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if command -v npm >/dev/null 2>&1; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
else
    echo "setup: npm not found: the Node ws peer is skipped (apt-get install nodejs npm)" >&2
fi
py=${BENCH_PYTHON:-/usr/bin/python3}
if ! "$py" -c 'import websockets' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y -q python3-websockets >&2
    else
        echo "setup: python3-websockets missing: apt-get install python3-websockets" >&2
        exit 1
    fi
fi
if ! command -v prometheus-node-exporter >/dev/null 2>&1; then
    rc=0
    "$here/../apt-quiet-install.sh" prometheus-node-exporter >&2 || rc=$?
    [ $rc -eq 0 ] || echo "setup: prometheus-node-exporter missing: the scrape comparison is skipped" >&2
fi
