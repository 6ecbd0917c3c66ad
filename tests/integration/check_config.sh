#!/bin/sh
# check_config.sh - `katomon --check-config` runs exactly the checks
# start-up runs, and reports every problem at once (issue 13, item 4):
#
#  - a file with one error in [core], one in each of two plugin sections
#    (kato_metrics: a bad value; alert_manager: an unknown key) and one in
#    an [alert NAME] rule's grammar: all four, each with FILE:LINE, exit 1;
#  - the same file with the four lines fixed: accepted, and it starts
#    (katomon -f, port 0, both plugins loaded, stopped with SIGTERM: exit 0);
#  - a section of a kind no plugin reads: an error with a did-you-mean, and
#    start-up refuses it too; with its plugin disabled, only a warning;
#  - a rule error --check-config reports keeps start-up from running
#    alert_manager too (the check runs before init);
#  - an edge (issue 15): the fixed file with [core] host_name and collect =
#    false on both plugins is accepted and starts them passive (nothing of
#    theirs runs); collect = false on a plugin that does not name its topics
#    (kato_api) and a host_name that is not one are errors at their lines.
#
# Run by `make check` (automake test protocol: 0 pass, 77 skip, else fail);
# KEEP=1 keeps its scratch directory (configs, outputs, logs) for a look.
set -u

: "${top_builddir:?run me through make check}"
: "${top_srcdir:?run me through make check}"
: "${PLUGIN_BUILD_DIR:?run me through make check}"
KATOMON="$top_builddir/katomon"
T=$(mktemp -d "${TMPDIR:-/tmp}/km-check-config.XXXXXX")
PIDS=
fails=0
passes=0

cleanup() {
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT INT TERM

ok() { passes=$((passes + 1)); echo "ok - $1"; }
not_ok() { fails=$((fails + 1)); echo "not ok - $1"; [ $# -gt 1 ] && sed 's/^/    /' "$2" | tail -n 30; }

# wait_for FILE PATTERN SECONDS
wait_for() {
    i=0
    while [ $i -lt $(($3 * 10)) ]; do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# line_of FILE TEXT: number of the first line that is exactly TEXT
line_of() { grep -n -x -F -- "$2" "$1" | head -n 1 | cut -d: -f1; }

# a port nothing listens on, for kato_metrics' url (it only polls)
DEAD_URL=http://127.0.0.1:9

# write_conf FILE LOG_LEVEL INTERVAL AM_KEY OP: the four places errors go
write_conf() {
    cat >"$1" <<EOF
; --check-config test: every line below is read by someone
[core]
plugin_dir = $PLUGIN_BUILD_DIR
state_dir = $T/state
log_level = $2

[http]
bind = 127.0.0.1
port = 0
web_root = $top_srcdir/web

[plugin kato_metrics]
url = $DEAD_URL
interval = $3
timeout = 1

[plugin alert_manager]
$4 = 100

[alert high_error_rate]
topic = metrics
path = performance.error_rate
op = $5
warning = 0.05
critical = 0.10
message = High error rate: {value_pct}%

[alert container_down]
topic = containers
path = containers[*]
match = status != running || health == unhealthy
name_field = name
message = Container '{name}' is {value}
EOF
}

# ---- four errors, all reported ----------------------------------------------------
write_conf "$T/four.conf" verbose fast max_entrys '=>'
"$KATOMON" --check-config -c "$T/four.conf" >"$T/four.out" 2>&1
rc=$?
if [ $rc -eq 1 ]; then ok "four errors: exit 1"; else not_ok "four errors: exit $rc, not 1" "$T/four.out"; fi
for want in "log_level = verbose|bad value \`verbose\` for \`log_level\` in \\[core\\]" \
    "interval = fast|bad value \`fast\` for \`interval\` in \\[plugin kato_metrics\\]" \
    "max_entrys = 100|unknown key \`max_entrys\` in \\[plugin alert_manager\\]; did you mean \`max_entries\`?" \
    "op = =>|bad value \`=>\` for \`op\` in \\[alert high_error_rate\\]: expected one of >, >=, <, <="; do
    text=${want%%|*}
    pattern=${want#*|}
    n=$(line_of "$T/four.conf" "$text")
    if grep -q "^$T/four.conf:$n: $pattern" "$T/four.out"; then
        ok "reported at four.conf:$n: $text"
    else
        not_ok "no line four.conf:$n: $pattern" "$T/four.out"
    fi
done
if [ "$(grep -c "^$T/four.conf:[0-9]*: " "$T/four.out")" -eq 4 ]; then
    ok "exactly four problems, nothing else"
else
    not_ok "not exactly four problems" "$T/four.out"
fi
if grep -q "katomon: 4 errors in $T/four.conf; nothing was started" "$T/four.out"; then
    ok "a summary names the count"
else
    not_ok "summary line" "$T/four.out"
fi
# in file order
if grep "^$T/four.conf:" "$T/four.out" | cut -d: -f2 | sort -n -c 2>/dev/null; then
    ok "problems in file order"
else
    not_ok "problems not in file order" "$T/four.out"
fi
echo "# --check-config on four.conf said:"
sed "s|$T/||; s/^/#   /" "$T/four.out"

# ---- the same file fixed: accepted, and it starts ---------------------------------
write_conf "$T/good.conf" info 5 max_entries '>'
if "$KATOMON" --check-config -c "$T/good.conf" >"$T/good.out" 2>&1 &&
    grep -q "^$T/good.conf: configuration OK$" "$T/good.out"; then
    ok "the fixed file: --check-config says OK"
else
    not_ok "the fixed file refused" "$T/good.out"
fi
"$KATOMON" -f -c "$T/good.conf" >"$T/run.log" 2>&1 &
KPID=$!
PIDS="$PIDS $KPID"
if wait_for "$T/run.log" "katomon .* started" 15; then ok "a file --check-config accepts starts"; else not_ok "did not start" "$T/run.log"; fi
if grep -q "plugin kato_metrics .* loaded" "$T/run.log" &&
    grep -q "plugin alert_manager .* loaded" "$T/run.log" &&
    grep -q "plugin alert_manager: 2 alert rules" "$T/run.log"; then
    ok "both plugins loaded, both rules read"
else
    not_ok "plugins or rules missing" "$T/run.log"
fi
kill -TERM "$KPID"
i=0
while kill -0 "$KPID" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
wait "$KPID"
rc=$?
if [ $rc -eq 0 ] && grep -q "katomon stopped" "$T/run.log"; then ok "SIGTERM: exit 0"; else not_ok "SIGTERM: exit $rc" "$T/run.log"; fi
if grep -q " error: " "$T/run.log"; then not_ok "start-up logged errors" "$T/run.log"; else ok "no error at start-up"; fi

# ---- a kind no plugin reads ---------------------------------------------------------
sed 's/^\[alert container_down\]$/[alret container_down]/' "$T/good.conf" >"$T/kind.conf"
n=$(line_of "$T/kind.conf" "[alret container_down]")
"$KATOMON" --check-config -c "$T/kind.conf" >"$T/kind.out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "^$T/kind.conf:$n: no plugin reads \[alret NAME\] sections (1 in this file); did you mean \[alert container_down\]?" "$T/kind.out"; then
    ok "an unknown kind: error at its line, with a did-you-mean"
else
    not_ok "unknown kind (exit $rc)" "$T/kind.out"
fi
"$KATOMON" -f -c "$T/kind.conf" >"$T/kind.log" 2>&1 &
KPID=$!
PIDS="$PIDS $KPID"
i=0
while kill -0 "$KPID" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 "$KPID" 2>/dev/null; then
    kill -TERM "$KPID"
    not_ok "start-up went on with a section nobody reads" "$T/kind.log"
else
    wait "$KPID"
    rc=$?
    if [ $rc -ne 0 ] && grep -q "kind.conf:$n: no plugin reads \[alret NAME\]" "$T/kind.log"; then
        ok "start-up refuses it too (exit $rc)"
    else
        not_ok "start-up with an unknown kind: exit $rc" "$T/kind.log"
    fi
fi
# the plugin that reads [alert] is switched off: its rules are not a typo
sed 's/^\[plugin alert_manager\]$/[plugin alert_manager]\nenabled = false/' "$T/good.conf" >"$T/off.conf"
if "$KATOMON" --check-config -c "$T/off.conf" >"$T/off.out" 2>&1 &&
    grep -q "warning: no plugin loaded here reads \[alert NAME\] sections" "$T/off.out" &&
    grep -q "alert_manager (enabled = false)" "$T/off.out" &&
    grep -q "configuration OK (1 warning above)" "$T/off.out"; then
    ok "its plugin disabled: a warning, accepted"
else
    not_ok "disabled owner" "$T/off.out"
fi

# ---- a rule error stops alert_manager at start-up too -------------------------------
sed 's/^critical = 0.10$/critical = 0.01/' "$T/good.conf" |
    sed 's/^log_level = info$/log_level = info\nplugin_failure_fatal = true/' >"$T/rule.conf"
n=$(line_of "$T/rule.conf" "critical = 0.01")
"$KATOMON" --check-config -c "$T/rule.conf" >"$T/rule.out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "^$T/rule.conf:$n: critical (0.01) is less severe than warning (0.05)" "$T/rule.out"; then
    ok "--check-config: a rule's grammar at its line"
else
    not_ok "rule error (exit $rc)" "$T/rule.out"
fi
"$KATOMON" -f -c "$T/rule.conf" >"$T/rule.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "plugin alert_manager (.*): $T/rule.conf:$n: critical (0.01)" "$T/rule.log"; then
    ok "start-up: the same check disables alert_manager (fatal here)"
else
    not_ok "start-up with a rule error: exit $rc" "$T/rule.log"
fi

# ---- an edge: collect = false -------------------------------------------------------
sed 's/^log_level = info$/log_level = info\nhost_name = edge-1/' "$T/good.conf" |
    sed 's/^\(\[plugin .*\]\)$/\1\ncollect = false/' >"$T/edge.conf"
if "$KATOMON" --check-config -c "$T/edge.conf" >"$T/edge.out" 2>&1 &&
    grep -q "^$T/edge.conf: configuration OK$" "$T/edge.out"; then
    ok "an edge (collect = false on both plugins): --check-config says OK"
else
    not_ok "the edge file refused" "$T/edge.out"
fi
"$KATOMON" -f -c "$T/edge.conf" >"$T/edge.log" 2>&1 &
KPID=$!
PIDS="$PIDS $KPID"
if wait_for "$T/edge.log" "katomon .* started" 15 &&
    grep -q "this host is 'edge-1'" "$T/edge.log" &&
    grep -q "plugin kato_metrics .* passive (collect = false): 3 topics declared, not started" "$T/edge.log" &&
    grep -q "plugin alert_manager .* passive (collect = false): 2 topics declared, not started" "$T/edge.log"; then
    ok "the edge starts both plugins passive"
else
    not_ok "edge start-up" "$T/edge.log"
fi
kill -TERM "$KPID"
wait "$KPID"
rc=$?
if [ $rc -eq 0 ] && ! grep -q "alert rules\| error: " "$T/edge.log"; then
    ok "no plugin code ran, no error, exit 0"
else
    not_ok "edge run (exit $rc)" "$T/edge.log"
fi
cat >"$T/noedge.conf" <<EOF
[core]
plugin_dir = $PLUGIN_BUILD_DIR
state_dir = $T/state
host_name = edge:1
[plugin kato_api]
collect = false
EOF
"$KATOMON" --check-config -c "$T/noedge.conf" >"$T/noedge.out" 2>&1
rc=$?
if [ $rc -eq 1 ] &&
    grep -q "^$T/noedge.conf:4: bad value \`edge:1\` for \`host_name\` in \[core\]: expected a host name" "$T/noedge.out" &&
    grep -q "^$T/noedge.conf:6: plugin kato_api cannot run with collect = false" "$T/noedge.out"; then
    ok "a bad host_name and collect = false without .topics: errors at their lines"
else
    not_ok "noedge (exit $rc)" "$T/noedge.out"
fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
