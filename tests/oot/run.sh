#!/bin/sh
# tests/oot/run.sh - an out-of-tree plugin against the *installed* katomon.
#
# 1. `make install` of this build into a scratch DESTDIR (so nothing can
#    escape into the real system, whatever --prefix/--sysconfdir were);
# 2. builds tests/oot/hello.c with only what was installed:
#    cc -shared -fPIC $(pkg-config --cflags --libs katomon-plugin)
#    (with PKG_CONFIG_SYSROOT_DIR pointing pkg-config at the DESTDIR tree,
#    and the build's sanitizer flags, since an ASan daemon can only load
#    objects built for the same runtime);
# 3. runs the installed daemon's --check-config on a file hello's own
#    check refuses (an empty message): exit 1, the problem at its line;
# 4. runs the installed daemon in the foreground on a config naming only
#    [plugin hello], until its log shows the message published, then stops
#    it with SIGTERM;
# 5. checks the log: the plugin loaded, published on hello_topic, no error
#    line, and the daemon exited 0 (clean shutdown, no sanitizer report).
#
# Automake test protocol: exit 0 pass, 77 skip, 1 fail. Needs top_builddir
# and top_srcdir (exported by `make check`).
set -u

TMP=
PID=

say() { printf '%s\n' "$*" >&2; }

fail() {
    say "FAIL: $*"
    if [ -n "$TMP" ] && [ -s "$TMP/katomon.log" ]; then
        say "--- daemon log ($TMP/katomon.log):"
        cat "$TMP/katomon.log" >&2
    fi
    exit 1
}

skip() {
    say "SKIP: $*"
    exit 77
}

# shellcheck disable=SC2317 # called through trap
cleanup() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null
    fi
    [ -n "$TMP" ] && rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

[ -n "${top_builddir:-}" ] || skip "top_builddir is not set: run it through make check"
[ -n "${top_srcdir:-}" ] || skip "top_srcdir is not set: run it through make check"
command -v pkg-config >/dev/null 2>&1 || skip "pkg-config is not installed"
CC=${CC:-cc}
command -v "$CC" >/dev/null 2>&1 || skip "no C compiler ($CC)"
MAKE=${MAKE:-make}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/katomon-oot.XXXXXX") || fail "mktemp -d failed"
DEST=$TMP/dest
mkdir -p "$TMP/plugins" "$TMP/state" || fail "mkdir in $TMP failed"

# --- 1. install ------------------------------------------------------------
# The inner make must not inherit the outer `make check`'s command line
# (TESTS=..., jobserver descriptors), hence the scrubbed environment.
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
        "$MAKE" -C "$top_builddir" install DESTDIR="$DEST" >"$TMP/install.log" 2>&1; then
    cat "$TMP/install.log" >&2
    fail "make install DESTDIR=$DEST failed"
fi
PC=$(find "$DEST" -name katomon-plugin.pc | head -n 1)
BIN=$(find "$DEST" -type f -name katomon -path '*bin/katomon' | head -n 1)
HDR=$(find "$DEST" -type f -path '*/include/katomon/plugin.h' | head -n 1)
[ -n "$PC" ] || fail "katomon-plugin.pc was not installed"
[ -n "$BIN" ] || fail "the katomon binary was not installed"
[ -n "$HDR" ] || fail "katomon/plugin.h was not installed"

# --- 2. build the plugin with the installed headers only ------------------
PKG_CONFIG_PATH=$(dirname "$PC")
PKG_CONFIG_SYSROOT_DIR=$DEST
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
KM_CFLAGS=$(pkg-config --cflags katomon-plugin) || fail "pkg-config --cflags katomon-plugin failed"
KM_LIBS=$(pkg-config --libs katomon-plugin) || fail "pkg-config --libs katomon-plugin failed"
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
case "$KM_CFLAGS" in
*"$DEST"*) ;;
*) fail "pkg-config --cflags katomon-plugin gave '$KM_CFLAGS', not the installed include dir" ;;
esac
SAN_CFLAGS=$(sed -n 's/^SAN_CFLAGS = //p' "$top_builddir/Makefile")

# shellcheck disable=SC2086 # the flags are word lists
if ! "$CC" -std=c99 -Wall -Wextra -Werror $SAN_CFLAGS $KM_CFLAGS -shared -fPIC \
        -o "$TMP/plugins/hello.so" "$top_srcdir/tests/oot/hello.c" $KM_LIBS \
        >"$TMP/cc.log" 2>&1; then
    cat "$TMP/cc.log" >&2
    fail "hello.c does not build against the installed headers"
fi

# --- 3. --check-config loads it and runs its check --------------------------
printf '[core]\nplugin_dir = %s\n\n[plugin hello]\nmessage =\n' "$TMP/plugins" \
    >"$TMP/empty.conf"
"$BIN" --check-config -c "$TMP/empty.conf" >"$TMP/check.out" 2>&1
rc=$?
if [ $rc -ne 1 ] || ! grep -qF "$TMP/empty.conf:5: \`message\` is empty" "$TMP/check.out"; then
    cat "$TMP/check.out" >&2
    fail "--check-config did not report hello's check at empty.conf:5 (exit $rc)"
fi

# --- 4. run the installed daemon with it ----------------------------------
cat >"$TMP/katomon.conf" <<EOF
[core]
plugin_dir = $TMP/plugins
state_dir = $TMP/state
log_level = debug

[http]
bind = 127.0.0.1
port = 0
web_root = $top_srcdir/web

[plugin hello]
message = hello from out of tree
interval = 0.2
EOF

"$BIN" -f -c "$TMP/katomon.conf" >"$TMP/katomon.log" 2>&1 &
PID=$!
published="plugin hello: published on topic hello_topic ("
i=0
while [ $i -lt 150 ]; do
    grep -qF "$published" "$TMP/katomon.log" && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
    i=$((i + 1))
done
if kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID"
    wait "$PID"
    rc=$?
else
    wait "$PID"
    rc=$?
    PID=
    fail "katomon exited early (status $rc)"
fi
PID=

# --- 5. what the log says ------------------------------------------------------
grep -qF "plugin hello 0.1 loaded from $TMP/plugins/hello.so" "$TMP/katomon.log" ||
    fail "no 'plugin hello 0.1 loaded' line"
grep -qF "$published" "$TMP/katomon.log" || fail "no line saying hello_topic was published"
if grep -q ' error: ' "$TMP/katomon.log"; then
    fail "the daemon logged errors"
fi
[ "$rc" -eq 0 ] || fail "katomon exited with status $rc after SIGTERM"
say "PASS: out-of-tree plugin built with pkg-config katomon-plugin, loaded and published"
exit 0
