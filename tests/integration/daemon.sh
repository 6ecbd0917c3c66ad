#!/bin/sh
# daemon.sh - the katomon binary as an operator meets it: options,
# --check-config, foreground and background start, pid file, SIGHUP reload,
# SIGTERM shut-down (plugins in reverse order), and a valgrind leak check.
#
# Run by `make check` (automake test protocol: 0 pass, 77 skip, else fail).
set -u

: "${top_builddir:?run me through make check}"
: "${top_srcdir:?run me through make check}"
: "${TEST_PLUGIN_DIR:?run me through make check}"
KATOMON="$top_builddir/katomon"
T=$(mktemp -d "${TMPDIR:-/tmp}/km-daemon.XXXXXX")
PIDS=
fails=0
passes=0

cleanup() {
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

ok() { passes=$((passes + 1)); echo "ok - $1"; }
not_ok() { fails=$((fails + 1)); echo "not ok - $1"; [ $# -gt 1 ] && sed 's/^/    /' "$2" | tail -n 30; }

# wait_for FILE PATTERN SECONDS: wait until FILE contains PATTERN
wait_for() {
    i=0
    while [ $i -lt $(($3 * 10)) ]; do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# wait_exit PID SECONDS: wait for PID to end; its status in $exit_status
wait_exit() {
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt $(($2 * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$1" 2>/dev/null; then
        exit_status=timeout
        return 1
    fi
    wait "$1"
    exit_status=$?
    return 0
}

write_conf() { # write_conf FILE LOG_LEVEL PORT
    cat >"$1" <<EOF
[core]
plugin_dir = $TEST_PLUGIN_DIR
state_dir = $T/state
log_level = $2

[http]
bind = 127.0.0.1
port = $3
web_root = $top_srcdir/web

[plugin test_good]
interval = 0.2
greeting = hello

[plugin host_stats]
file = ${PLUGIN_BUILD_DIR}/host_stats.so
interval = 0.5
EOF
}

# ---- options ----------------------------------------------------------------
"$KATOMON" -V >"$T/v.out" 2>&1
if grep -q "^katomon [0-9]" "$T/v.out"; then ok "-V prints the version"; else not_ok "-V" "$T/v.out"; fi
"$KATOMON" -h >"$T/h.out" 2>&1
if grep -q -- "--check-config" "$T/h.out"; then ok "-h lists the options"; else not_ok "-h" "$T/h.out"; fi
"$KATOMON" --bogus >"$T/bogus.out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "katomon --help" "$T/bogus.out"; then ok "unknown option: error and a hint"; else not_ok "unknown option" "$T/bogus.out"; fi

# ---- --check-config ---------------------------------------------------------------
write_conf "$T/good.conf" info 0
if "$KATOMON" --check-config -c "$T/good.conf" >"$T/check.out" 2>&1 && grep -q "configuration OK" "$T/check.out"; then
    ok "--check-config accepts a good file"
else
    not_ok "--check-config good file" "$T/check.out"
fi
# the shipped file, pointed at the plugins of this build
sed "s|^;plugin_dir = .*|plugin_dir = $PLUGIN_BUILD_DIR|" "$top_srcdir/etc/katomon.conf" >"$T/shipped.conf"
if "$KATOMON" --check-config -c "$T/shipped.conf" >"$T/shipped.out" 2>&1 && grep -q "configuration OK" "$T/shipped.out"; then
    ok "--check-config accepts the shipped katomon.conf with every plugin it names"
else
    not_ok "--check-config shipped file" "$T/shipped.out"
fi
cp "$T/good.conf" "$T/bad.conf"
printf '\n[http]\nprot = 80\n' >>"$T/bad.conf" # line 20, 21 of the file
line=$(grep -n '^prot' "$T/bad.conf" | cut -d: -f1)
"$KATOMON" --check-config -c "$T/bad.conf" >"$T/bad.out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "$T/bad.conf:" "$T/bad.out"; then
    ok "--check-config on a broken file: non-zero and FILE:LINE ($(head -c 160 "$T/bad.out"))"
else
    not_ok "--check-config broken file (rc $rc, bad line $line)" "$T/bad.out"
fi
sed 's/^interval = 0.2$/interval = fast/' "$T/good.conf" >"$T/badval.conf"
"$KATOMON" --check-config -c "$T/badval.conf" >"$T/badval.out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "badval.conf:[0-9]*:" "$T/badval.out"; then
    ok "--check-config: a bad plugin value names FILE:LINE"
else
    not_ok "--check-config bad plugin value (rc $rc)" "$T/badval.out"
fi
"$KATOMON" --check-config -c "$T/missing.conf" >"$T/missing.out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "missing.conf" "$T/missing.out" && grep -q -- "-c" "$T/missing.out"; then
    ok "missing config file: named, with what to do"
else
    not_ok "missing config file" "$T/missing.out"
fi

# ---- foreground run, reload, stop -------------------------------------------------
write_conf "$T/run.conf" info 0
"$KATOMON" -f -c "$T/run.conf" -p "$T/katomon.pid" >"$T/run.log" 2>&1 &
KPID=$!
PIDS="$PIDS $KPID"
if wait_for "$T/run.log" "katomon .* started" 10; then ok "katomon -f starts"; else not_ok "katomon -f start" "$T/run.log"; fi
if [ "$(cat "$T/katomon.pid" 2>/dev/null)" = "$KPID" ]; then ok "pid file holds the pid"; else not_ok "pid file"; fi
if grep -q "plugin test_good.* loaded" "$T/run.log" && grep -q "plugin host_stats.* loaded" "$T/run.log"; then
    ok "both plugins loaded"
else
    not_ok "plugins loaded" "$T/run.log"
fi
"$KATOMON" -f -c "$T/run.conf" -p "$T/katomon.pid" >"$T/second.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "another katomon is running" "$T/second.log"; then ok "a second instance on the same pid file refuses"; else not_ok "second instance (rc $rc)" "$T/second.log"; fi

# reload: log level goes live; a port change needs a restart
write_conf "$T/run.conf" debug 1
kill -HUP "$KPID"
if wait_for "$T/run.log" "reloaded" 5; then ok "SIGHUP reloads"; else not_ok "SIGHUP reload" "$T/run.log"; fi
if grep -q "\[http\] bind/port changed; restart katomon" "$T/run.log"; then ok "reload reports what needs a restart"; else not_ok "restart-needed line" "$T/run.log"; fi
if wait_for "$T/run.log" " debug: " 5; then ok "new log level applied live"; else not_ok "log level live" "$T/run.log"; fi
echo "this is not ini" >>"$T/run.conf"
kill -HUP "$KPID"
if wait_for "$T/run.log" "reload failed: .*run.conf:[0-9]*:" 5 && kill -0 "$KPID"; then
    ok "a broken file on reload is reported and changes nothing"
else
    not_ok "broken reload" "$T/run.log"
fi

kill -TERM "$KPID"
wait_exit "$KPID" 10
if [ "$exit_status" = 0 ] && grep -q "katomon stopped" "$T/run.log"; then ok "SIGTERM: clean exit 0"; else not_ok "SIGTERM exit ($exit_status)" "$T/run.log"; fi
if [ ! -e "$T/katomon.pid" ]; then ok "pid file removed at exit"; else not_ok "pid file left behind"; fi
# plugins shut down in reverse load order: host_stats (loaded second) first
order=$(sed -n 's/.* plugin \([a-z_]*\): shut down$/\1/p' "$T/run.log" | tr '\n' ' ')
if [ "$order" = "host_stats test_good " ]; then ok "plugins shut down in reverse load order"; else not_ok "shutdown order: '$order'" "$T/run.log"; fi

# ---- background (daemon) mode -------------------------------------------------------
write_conf "$T/bg.conf" info 0
if "$KATOMON" -c "$T/bg.conf" -p "$T/bg.pid"; then
    BPID=$(cat "$T/bg.pid" 2>/dev/null)
    PIDS="$PIDS $BPID"
    if [ -n "$BPID" ] && kill -0 "$BPID" 2>/dev/null; then ok "background mode: detached daemon runs"; else not_ok "background daemon"; fi
    kill -TERM "$BPID" 2>/dev/null
    i=0
    while kill -0 "$BPID" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if ! kill -0 "$BPID" 2>/dev/null && [ ! -e "$T/bg.pid" ]; then ok "background daemon stops on SIGTERM"; else not_ok "background stop"; fi
else
    not_ok "background start failed"
fi
# a start-up failure is reported to the shell even in background mode
printf '[core]\nplugin_dir = %s\nplugin_failure_fatal = true\n[plugin nosuch]\n' "$T" >"$T/bgfatal.conf"
"$KATOMON" -c "$T/bgfatal.conf" -p "$T/bgfatal.pid" 2>/dev/null
rc=$?
if [ $rc -ne 0 ]; then ok "background start failure gives a non-zero exit"; else not_ok "background failure exit"; fi

# ---- valgrind: start, publish for a while, SIGTERM; no definite leak ----------------
if [ -n "${VALGRIND:-}" ] && [ -x "${VALGRIND}" ] && ! grep -q -- "-fsanitize" "$top_builddir/Makefile" 2>/dev/null; then
    write_conf "$T/vg.conf" info 0
    # katomon links the core statically: $KATOMON is the real binary, no libtool wrapper
    "$VALGRIND" --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 \
        --log-file="$T/vg.txt" "$KATOMON" -f -c "$T/vg.conf" >"$T/vg.log" 2>&1 &
    VPID=$!
    PIDS="$PIDS $VPID"
    if wait_for "$T/vg.log" "katomon .* started" 60; then
        sleep 2
        kill -TERM "$VPID"
        wait_exit "$VPID" 60
        if [ "$exit_status" = 0 ] && grep -q "definitely lost: 0 bytes\|no leaks are possible" "$T/vg.txt"; then
            ok "valgrind: no definite leak after SIGTERM ($(grep -o 'in use at exit: .*' "$T/vg.txt" | head -n1))"
        else
            not_ok "valgrind (exit $exit_status)" "$T/vg.txt"
        fi
    else
        not_ok "katomon under valgrind did not start" "$T/vg.log"
    fi
else
    echo "# valgrind leak check skipped: sanitizer build or no valgrind (ASan's leak check covers this build)"
fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
