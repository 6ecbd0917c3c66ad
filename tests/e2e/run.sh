#!/bin/sh
# tests/e2e/run.sh - the dashboard's end-to-end tests in a real browser.
#
# Starts nothing itself: dashboard.test.mjs starts the KATO simulator and a
# freshly built katomon on ephemeral ports (short intervals) and drives
# Debian's chromium headless with playwright-core; fleet.test.mjs then starts
# a private redis-server and two katomons ("alpha", "beta") bridged over it
# (issue 15) and drives the Fleet page and the host picker. Screenshots (light and
# dark, desktop and phone) go to $E2E_SCREENSHOTS (default
# tests/e2e/screenshots in the source tree, or in the build tree when the
# source tree is read-only, as under distcheck).
#
# Environment: KATOMON (default $top_builddir/katomon), KM_PLUGIN_DIR
# (default $PLUGIN_BUILD_DIR or $top_builddir/.libs), top_srcdir,
# top_builddir (set by `make check`), E2E_KEEP_TMP=1 keeps the daemons'
# files, E2E_DOCKER=0 leaves the containers out (see below).
#
# Docker: the containers table, its sparklines and its phone layout are
# tested against two containers of this run's own, kme2e-PID-web (light
# bursts of CPU) and kme2e-PID-db (idle, 256 MiB limit), made from the
# image of tests/docker/setup.sh (which installs and starts dockerd as for
# the other Docker tests) and removed at exit, whatever happened. Their
# unique names keep them apart from tests/integration/docker.py's kato and
# kato-redis, which `make -j2 check` starts, stops and removes meanwhile:
# katomon here watches exactly ours. Not root: exit 77 (setup.sh's rule,
# as docker.py) unless E2E_DOCKER=0. Docker failing to come up as root
# fails the container tests, with setup.sh's reason; only E2E_DOCKER=0
# (machines without Docker) skips them.
#
# Exit: 0 pass, 1 fail, 77 skip (chromium cannot be installed here, or not
# root and E2E_DOCKER is not 0).
set -u

here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(cd "$here/../.." && pwd)}
top_builddir=${top_builddir:-$(pwd)}
KATOMON=${KATOMON:-$top_builddir/katomon}
KM_PLUGIN_DIR=${KM_PLUGIN_DIR:-${PLUGIN_BUILD_DIR:-$top_builddir/.libs}}
KM_WEB_ROOT=${KM_WEB_ROOT:-$top_srcdir/web}

if [ ! -x "$KATOMON" ]; then
    echo "e2e: no katomon binary at $KATOMON (build it, or set KATOMON)" >&2
    exit 1
fi
if [ ! -f "$KM_PLUGIN_DIR/kato_metrics.so" ]; then
    echo "e2e: no plugins in $KM_PLUGIN_DIR (build them, or set KM_PLUGIN_DIR)" >&2
    exit 1
fi
command -v node >/dev/null 2>&1 || { echo "e2e: node not found" >&2; exit 1; }

# node_modules: in the source tree when it is writable, else in the build tree
if [ -w "$here" ]; then
    nm_parent=$here
    E2E_SCREENSHOTS=${E2E_SCREENSHOTS:-$here/screenshots}
else
    nm_parent=$top_builddir/tests/e2e
    E2E_SCREENSHOTS=${E2E_SCREENSHOTS:-$top_builddir/tests/e2e/screenshots}
fi
sh "$here/setup.sh" "$nm_parent" || exit 1

if [ ! -x /usr/bin/chromium ]; then
    echo "e2e: SKIP: Debian's chromium is not installed and could not be installed here" \
         "(apt-get install chromium failed or needs root)" >&2
    exit 77
fi
if [ ! -f /usr/share/javascript/chart.js/chart.min.js ]; then
    echo "e2e: note: libjs-chart.js is missing, the dashboard will say charts are unavailable" >&2
fi

# ---- Docker: containers of this run's own (see the top) ---------------------
# dockerd, docker-init live in sbin; the engine is always the system one
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
DOCKER_HOST=unix:///var/run/docker.sock
export PATH DOCKER_HOST
E2E_DOCKER=${E2E_DOCKER:-1}
E2E_CONTAINERS=
E2E_DOCKER_ERROR=
ours="kme2e-$$-web kme2e-$$-db"
made=no

# leftovers: kme2e-PID-* of runs that were killed (no trap ran) and whose
# PID is gone; a live PID is another run's, left alone
sweep() {
    for n in $(docker ps -a --format '{{.Names}}' --filter name=kme2e- 2>/dev/null); do
        p=${n#kme2e-}
        p=${p%%-*}
        case $p in '' | *[!0-9]*) continue ;; esac
        kill -0 "$p" 2>/dev/null || docker rm -f "$n" >/dev/null 2>&1
    done
}

# start_containers: 0 and E2E_CONTAINERS set, or 1 and E2E_DOCKER_ERROR set
start_containers() {
    out=$(sh "$top_srcdir/tests/docker/setup.sh" 2>&1)
    st=$?
    printf '%s\n' "$out" | tail -n 3 | sed 's/^/e2e: docker: /'
    if [ $st = 77 ]; then
        echo "e2e: SKIP: $(printf '%s\n' "$out" | tail -n 1 | sed 's/^skip: //'); run with E2E_DOCKER=0 to test" \
             "without containers"
        exit 77
    fi
    if [ $st != 0 ]; then
        E2E_DOCKER_ERROR="tests/docker/setup.sh exited $st: $(printf '%s\n' "$out" | tail -n 1)"
        return 1
    fi
    sweep
    made=yes
    # shellcheck disable=SC2086
    docker rm -f $ours >/dev/null 2>&1 # a killed run of a reused PID
    # No katomon.test=1 label: docker.py's teardown removes those and its
    # label check counts them. --network none: no bridge needed. --init:
    # "docker stop" is immediate. A few percent of CPU in bursts (as
    # prometheus.py's container): a busy loop would take the CPU docker.py's
    # kato is checked to get when both run at once.
    err=$(docker run -d --name "kme2e-$$-web" --network none --init katomon-busybox \
        /bin/busybox sh -c \
        'while :; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 0.3; done' 2>&1 >/dev/null) ||
        { E2E_DOCKER_ERROR="docker run kme2e-$$-web failed: $err"; return 1; }
    err=$(docker run -d --name "kme2e-$$-db" --network none --init --memory 256m \
        katomon-busybox /bin/busybox sleep 86400 2>&1 >/dev/null) ||
        { E2E_DOCKER_ERROR="docker run kme2e-$$-db failed: $err"; return 1; }
    E2E_CONTAINERS="kme2e-$$-web,kme2e-$$-db"
    echo "e2e: containers kme2e-$$-web (light CPU bursts) and kme2e-$$-db (idle, 256 MiB)"
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/katomon-e2e.XXXXXX")
# shellcheck disable=SC2317,SC2086 # called by the trap; $ours: two names
cleanup() {
    [ $made = yes ] && docker rm -f $ours >/dev/null 2>&1
    if [ "${E2E_KEEP_TMP:-0}" = 1 ]; then
        echo "e2e: kept the daemons' files in $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$E2E_DOCKER" = 0 ]; then
    echo "e2e: E2E_DOCKER=0: no containers; the container tests are skipped on request"
elif ! start_containers; then
    echo "e2e: Docker could not be set up: $E2E_DOCKER_ERROR (the container tests will fail;" \
         "E2E_DOCKER=0 leaves them out on a machine without Docker)" >&2
fi
export E2E_DOCKER E2E_CONTAINERS E2E_DOCKER_ERROR
export KATOMON KM_PLUGIN_DIR KM_WEB_ROOT E2E_SCREENSHOTS
export TOP_SRCDIR=$top_srcdir
export PLAYWRIGHT_CORE=$nm_parent/node_modules/playwright-core
export CHROMIUM=/usr/bin/chromium
export E2E_TMP=$tmp
echo "e2e: katomon $KATOMON, plugins $KM_PLUGIN_DIR, web $KM_WEB_ROOT"
echo "e2e: screenshots in $E2E_SCREENSHOTS"
node --test --test-concurrency=1 --test-reporter=spec "$here/dashboard.test.mjs" "$here/fleet.test.mjs"
rc=$?
[ $rc -eq 0 ] || exit 1
exit 0
