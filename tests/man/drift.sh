#!/bin/sh
# tests/man/drift.sh - check_man_keys can fail: it is run on copies of the
# built katomon.conf.5 with one key's entry removed, one unknown key added
# and one default changed, and must refuse each (exit 1, naming the key).
# The real comparison is check_man_keys itself, run as its own test.
#
# Automake test protocol: exit 0 pass, 1 fail. Needs top_builddir.
set -u

say() { printf '%s\n' "$*" >&2; }
[ -n "${top_builddir:-}" ] || { say "SKIP: top_builddir is not set: run it through make check"; exit 77; }

CHK=$top_builddir/tests/man/check_man_keys
PAGE=$top_builddir/man/katomon.conf.5
[ -x "$CHK" ] && [ -s "$PAGE" ] || { say "FAIL: $CHK or $PAGE was not built"; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/katomon-drift.XXXXXX") || { say "FAIL: mktemp -d"; exit 1; }
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM HUP

# expect NAME FILE TEXT: check_man_keys on FILE exits 1 and says TEXT
expect() {
    "$CHK" "$2" >"$TMP/out" 2>&1
    st=$?
    if [ $st -ne 1 ] || ! grep -qF -- "$3" "$TMP/out"; then
        cat "$TMP/out" >&2
        say "FAIL: $1: exit $st, wanted 1 and '$3'"
        rc=1
    else
        say "ok: $1 refused"
    fi
}

rc=0
"$CHK" "$PAGE" >"$TMP/out" 2>&1 || { cat "$TMP/out" >&2; say "FAIL: the page itself does not pass"; exit 1; }

sed '/^\.It Cm host_forget /d' "$PAGE" >"$TMP/missing.5"
expect "a key of the code left out" "$TMP/missing.5" "[core] host_forget (duration) is in the code but not documented"

awk '{ print } /^\.It Cm proc_path /{ print "x"; print ".It Cm no_such_key Ar x" }' "$PAGE" >"$TMP/extra.5"
expect "a key the code lacks" "$TMP/extra.5" "[plugin host_stats] no_such_key is documented but no table"

sed 's|^\.Pa /proc \.$|.Pa /sys .|' "$PAGE" >"$TMP/default.5"
expect "a wrong default" "$TMP/default.5" "[plugin host_stats] proc_path: its default '/proc' is not in its entry"
exit $rc
