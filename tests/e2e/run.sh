#!/bin/sh
# tests/e2e/run.sh - the dashboard's end-to-end tests in a real browser.
#
# Starts nothing itself: dashboard.test.mjs starts the KATO simulator and a
# freshly built katomon on ephemeral ports (short intervals) and drives
# Debian's chromium headless with playwright-core. Screenshots (light and
# dark, desktop and phone) go to $E2E_SCREENSHOTS (default
# tests/e2e/screenshots in the source tree, or in the build tree when the
# source tree is read-only, as under distcheck).
#
# Environment: KATOMON (default $top_builddir/katomon), KM_PLUGIN_DIR
# (default $PLUGIN_BUILD_DIR or $top_builddir/.libs), top_srcdir,
# top_builddir (set by `make check`), E2E_KEEP_TMP=1 keeps the daemons'
# files, E2E_DOCKER=1 adds real containers (see below). Exit: 0 pass, 1 fail, 77 skip (only when chromium cannot be
# installed here).
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

# Docker (optional): E2E_DOCKER=1 starts an engine with the two test
# containers (tests/docker/setup.sh, root only), so the containers table
# is exercised too; without it the dashboard shows Docker as unavailable
# (or, on a machine whose engine runs, no containers).
if [ "${E2E_DOCKER:-0}" = 1 ]; then
    sh "$top_srcdir/tests/docker/setup.sh" --containers >&2 ||
        echo "e2e: note: Docker could not be set up; going on without it" >&2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/katomon-e2e.XXXXXX")
if [ "${E2E_KEEP_TMP:-0}" = 1 ]; then
    echo "e2e: keeping the daemons' files in $tmp"
else
    trap 'rm -rf "$tmp"' EXIT INT TERM
fi
export KATOMON KM_PLUGIN_DIR KM_WEB_ROOT E2E_SCREENSHOTS
export TOP_SRCDIR=$top_srcdir
export PLAYWRIGHT_CORE=$nm_parent/node_modules/playwright-core
export CHROMIUM=/usr/bin/chromium
export E2E_TMP=$tmp
echo "e2e: katomon $KATOMON, plugins $KM_PLUGIN_DIR, web $KM_WEB_ROOT"
echo "e2e: screenshots in $E2E_SCREENSHOTS"
node --test --test-concurrency=1 --test-reporter=spec "$here/dashboard.test.mjs"
rc=$?
[ $rc -eq 0 ] || exit 1
exit 0
