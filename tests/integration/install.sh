#!/bin/sh
# install.sh - the installed tree as a Debian operator meets it (issue 16):
# `make install DESTDIR=...` puts katomon.service in systemd's unit
# directory with this build's paths, its user (DynamicUser, StateDirectory)
# and its hardening; `systemd-analyze security --offline=true` rates the
# installed unit 2.0 or lower; no libtool .la file is installed; `make
# uninstall` leaves nothing behind but the configs and the (empty) state
# directory; a second `make install` keeps an edited config (the shipped
# text goes beside it as NAME.dist).
#
# Run by `make check` (automake test protocol: 0 pass, 77 skip, else fail).
# Skipped (77) only when systemd-analyze is absent or too old for
# --offline, after every other check passed: the score cannot be taken.
set -u

: "${top_builddir:?run me through make check}"
: "${top_srcdir:?run me through make check}"
T=$(mktemp -d "${TMPDIR:-/tmp}/km-install.XXXXXX")
ROOT="$T/root"
fails=0
passes=0
skip_reason=

cleanup() { rm -rf "$T"; }
trap cleanup EXIT INT TERM

ok() { passes=$((passes + 1)); echo "ok - $1"; }
not_ok() { fails=$((fails + 1)); echo "not ok - $1"; [ $# -gt 1 ] && [ -f "$2" ] && sed 's/^/    /' "$2" | tail -n 30; }

# this build's directories, as make knows them (prefix, sbindir, ...)
mkvar() { # mkvar NAME: the value of make variable NAME in the build tree
    printf 'print-var:\n\t@echo $(%s)\ninclude Makefile\n' "$1" >"$T/print.mk"
    (cd "$top_builddir" && env -u MAKEFLAGS -u MFLAGS make -s -f "$T/print.mk" print-var)
}
make_in_build() { # make_in_build TARGET...: quietly, our own jobserver
    (cd "$top_builddir" && env -u MAKEFLAGS -u MFLAGS make "$@")
}

sbindir=$(mkvar sbindir)
sysconfdir=$(mkvar sysconfdir)
pluginsdir=$(mkvar pluginsdir)
unitdir=$(mkvar systemdsystemunitdir)
statedir=$(mkvar statedir)
plugins=$(mkvar plugins_LTLIBRARIES)
echo "# sbindir=$sbindir sysconfdir=$sysconfdir unitdir=${unitdir:-none} plugins: $plugins"

# ---- make install DESTDIR=... ------------------------------------------------------
if make_in_build install DESTDIR="$ROOT" >"$T/install.log" 2>&1; then
    ok "make install DESTDIR=$ROOT"
else
    not_ok "make install" "$T/install.log"
fi
la=$(find "$ROOT" -name '*.la' | sed "s|^$ROOT||")
if [ -z "$la" ]; then ok "no libtool .la file installed"; else not_ok "installed .la files: $la"; fi
missing=
for p in $plugins; do
    [ -f "$ROOT$pluginsdir/${p%.la}.so" ] || missing="$missing ${p%.la}.so"
done
if [ -z "$missing" ] && [ -n "$plugins" ]; then ok "every plugin installed as NAME.so in $pluginsdir"; else not_ok "plugins missing:$missing"; fi

# ---- the unit ----------------------------------------------------------------------------
unit="$ROOT$unitdir/katomon.service"
if [ -z "$unitdir" ]; then
    # configure --with-systemdsystemunitdir=no, or no pkg-config systemd
    unit=
    u=$(find "$ROOT" -name katomon.service)
    if [ -z "$u" ]; then ok "no unit directory configured: no katomon.service installed"; else not_ok "katomon.service installed anyway: $u"; fi
    skip_reason="configured without a systemd unit directory (--with-systemdsystemunitdir): the unit's checks and score were not taken"
elif [ -f "$unit" ]; then
    ok "katomon.service installed in $unitdir"
else
    not_ok "no katomon.service in $unitdir" "$T/install.log"
fi
if [ -f "$unit" ]; then
    if grep -q '%[a-z_]*%' "$unit"; then not_ok "unit has unsubstituted %placeholders%" "$unit"; else ok "every %placeholder% substituted"; fi
    exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
    bin=${exec_start%% *}
    conf=$(echo "$exec_start" | sed -n 's/.* -c \([^ ]*\).*/\1/p')
    if [ "$bin" = "$sbindir/katomon" ] && [ -x "$ROOT$bin" ]; then
        ok "ExecStart runs the installed $bin"
    else
        not_ok "ExecStart binary '$bin' (want $sbindir/katomon, installed)" "$unit"
    fi
    if [ "$conf" = "$sysconfdir/katomon.conf" ] && [ -f "$ROOT$conf" ]; then
        ok "ExecStart reads the installed $conf"
    else
        not_ok "ExecStart config '$conf' (want $sysconfdir/katomon.conf, installed)" "$unit"
    fi
    if echo "$exec_start" | grep -q -- " -f " && echo "$exec_start" | grep -q -- "--state-dir /var/lib/katomon"; then
        ok "ExecStart: foreground, state in StateDirectory's /var/lib/katomon"
    else
        not_ok "ExecStart options: $exec_start"
    fi
    # notify, or simple in a build --without-libsystemd
    want_type=$(mkvar SERVICE_TYPE)
    for line in "Type=$want_type" DynamicUser=yes StateDirectory=katomon "ExecReload=/bin/kill -HUP \$MAINPID" \
        NoNewPrivileges=yes ProtectSystem=strict CapabilityBoundingSet= WantedBy=multi-user.target; do
        if grep -qxF -- "$line" "$unit"; then ok "unit: $line"; else not_ok "unit lacks $line" "$unit"; fi
    done
    if [ "$want_type" = notify ]; then
        if grep -q '^WatchdogSec=[1-9]' "$unit"; then ok "unit: WatchdogSec= set"; else not_ok "unit: no WatchdogSec=" "$unit"; fi
    elif grep -q '^WatchdogSec=' "$unit"; then
        not_ok "a Type=simple unit (no sd_notify) with WatchdogSec= would be killed" "$unit"
    else
        ok "unit: no WatchdogSec= without sd_notify"
    fi
    # the exposure systemd itself computes, on the installed file
    if ! command -v systemd-analyze >/dev/null 2>&1; then
        skip_reason="systemd-analyze not found (Debian package systemd): the unit's security score was not taken"
    else
        systemd-analyze security --offline=true --no-pager "$unit" >"$T/security.txt" 2>&1
        score=$(sed -n 's/.*Overall exposure level for katomon.service: \([0-9.]*\).*/\1/p' "$T/security.txt")
        if [ -z "$score" ]; then
            if grep -qi "unrecognized option\|unknown option" "$T/security.txt"; then
                skip_reason="systemd-analyze $(systemd-analyze --version | sed -n '1s/systemd //p') has no --offline (systemd 250 or later): score not taken"
            else
                not_ok "systemd-analyze security gave no score" "$T/security.txt"
            fi
        elif awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
            ok "systemd-analyze security --offline=true: $score (at most 2.0)"
        else
            not_ok "systemd-analyze security: $score, above 2.0" "$T/security.txt"
        fi
    fi
fi

# ---- a second make install keeps an edited config ----------------------------------------
echo "; edited by the operator" >>"$ROOT$sysconfdir/katomon.conf"
if make_in_build install DESTDIR="$ROOT" >"$T/install2.log" 2>&1 &&
    grep -q '^; edited by the operator$' "$ROOT$sysconfdir/katomon.conf" &&
    [ -f "$ROOT$sysconfdir/katomon.conf.dist" ]; then
    ok "a second make install keeps the edited katomon.conf (the shipped one: katomon.conf.dist)"
else
    not_ok "a second make install replaced the edited katomon.conf, or wrote no .dist" "$T/install2.log"
fi

# ---- make uninstall DESTDIR=... ------------------------------------------------------------
if make_in_build uninstall DESTDIR="$ROOT" >"$T/uninstall.log" 2>&1; then
    ok "make uninstall"
else
    not_ok "make uninstall" "$T/uninstall.log"
fi
# files and links: none but the configs (the operator's: a conffile);
# directories: none of katomon's but the state
left=$(find "$ROOT" ! -type d | sed "s|^$ROOT||" |
    grep -v -x -e "$sysconfdir/katomon.conf" -e "$sysconfdir/katomon-edge.conf")
if [ -z "$left" ]; then ok "make uninstall leaves no file but the configs"; else not_ok "left after uninstall: $left"; fi
for f in katomon.conf katomon-edge.conf; do
    if [ -f "$ROOT$sysconfdir/$f" ]; then ok "make uninstall leaves $f"; else not_ok "make uninstall removed $f"; fi
done
# (the directories above the state directory are the prefix's own, which
# may be named katomon-* too: distcheck's)
dirs=$(find "$ROOT" -type d -name '*katomon*' | sed "s|^$ROOT||" |
    awk -v s="$statedir" '$0 != s && index(s, $0 "/") != 1')
if [ -z "$dirs" ]; then ok "make uninstall leaves no katomon directory but the state ($statedir)"; else not_ok "directories left: $dirs"; fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ] || exit 1
if [ -n "$skip_reason" ]; then
    echo "SKIP: $skip_reason"
    exit 77
fi
exit 0
