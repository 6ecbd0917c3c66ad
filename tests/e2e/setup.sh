#!/bin/sh
# tests/e2e/setup.sh - installs what the browser tests need; idempotent.
#
#   - Debian's chromium (the browser), libjs-chart.js (the dashboard's
#     chart library, served by katomon under /vendor/) and redis-server
#     (the fleet test's Redis, run privately on a free port), with apt-get
#     when missing (needs root; skipped with a message otherwise);
#   - playwright-core, pinned by package-lock.json, with `npm ci` into
#     NODE_MODULES_DIR (default: tests/e2e/node_modules). Never
#     `npx playwright install`: the tests drive Debian's chromium.
#
# Usage: tests/e2e/setup.sh [NODE_MODULES_PARENT_DIR]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-$here}

need=
[ -x /usr/bin/chromium ] || need="$need chromium"
[ -f /usr/share/javascript/chart.js/chart.min.js ] || need="$need libjs-chart.js"
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need="$need redis-server"
if [ -n "$need" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "e2e setup: apt-get install$need"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q $need >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $need >/dev/null; } ||
            echo "e2e setup: apt-get install$need failed" >&2
    else
        echo "e2e setup: missing$need; install it with: apt-get install$need (as root)" >&2
    fi
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "e2e setup: npm not found (apt-get install npm, or the machine's Node.js)" >&2
    exit 1
fi
mkdir -p "$dest"
if [ "$dest" != "$here" ]; then
    cp "$here/package.json" "$here/package-lock.json" "$dest/"
fi
want=$(sed -n 's/.*"playwright-core": *"\([0-9.]*\)".*/\1/p' "$here/package.json" | head -n 1)
have=$(sed -n 's/.*"version": *"\([0-9.]*\)".*/\1/p' "$dest/node_modules/playwright-core/package.json" 2>/dev/null | head -n 1)
if [ "$have" != "$want" ]; then
    echo "e2e setup: npm ci in $dest (playwright-core $want)"
    (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error)
fi
