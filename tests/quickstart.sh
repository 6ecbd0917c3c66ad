#!/bin/sh
# tests/quickstart.sh - the README's Quick start run command, as a user runs
# it from this checkout: it builds, installs and starts katomon. The one
# difference: `katomon -f` (the foreground daemon the command ends with) is
# run here until GET /health answers, then stopped with SIGTERM, which must
# end it with status 0. .ci/run runs this, then the test command, then this
# again, so the two commands are known to work in either order, twice, in
# the same checkout (issue 16).
set -u
cd "$(dirname "$0")/.."
say() { echo "quickstart: $*"; }

cmd=$(sed -n '/^Quick start$/,/^Running$/p' README | grep -m1 '^    \./bootstrap' | sed 's/^    //')
case $cmd in
*'&& katomon -f') ;;
*) say "the README's run command does not end in '&& katomon -f': '$cmd'"; exit 1 ;;
esac
build=${cmd%&& katomon -f}
say "running: $build"
sh -c "$build" >quickstart.out 2>&1 || { tail -n 40 quickstart.out; say "the build failed"; exit 1; }
rm -f quickstart.out

# The installed katomon with its installed config, as the command starts it.
katomon -f 2>quickstart.log &
pid=$!
python3 - "$pid" <<'PY'
import json, os, sys, time, urllib.request
pid, deadline = int(sys.argv[1]), time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("quickstart: katomon exited before /health answered")
    try:
        with urllib.request.urlopen("http://127.0.0.1:8080/health", timeout=2) as r:
            body = json.load(r)
        print("quickstart: GET /health ->", r.status, json.dumps(body)[:200])
        sys.exit(0)
    except Exception:
        time.sleep(0.2)
sys.exit("quickstart: no answer from http://127.0.0.1:8080/health within 60 s")
PY
ok=$?
kill -TERM "$pid" 2>/dev/null
wait "$pid"
status=$?
if [ $ok -ne 0 ] || [ $status -ne 0 ]; then
    tail -n 40 quickstart.log
    say "failed (health check $ok, exit status $status)"
    exit 1
fi
rm -f quickstart.log
say "ok: built, installed, started, answered, stopped (status 0)"
