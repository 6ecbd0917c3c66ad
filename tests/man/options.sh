#!/bin/sh
# tests/man/options.sh - katomon(8) documents exactly the options of
# `katomon --help`.
#
# The options a user can give are those the binary's own --help lists (its
# text and core/main.c's getopt table are side by side). This test takes
# every -x and --long-name from `katomon --help` and every `Fl` argument of
# the `.It` lines under .Sh OPTIONS of the built katomon.8, and fails on an
# option one has and the other lacks, naming it.
#
# Automake test protocol: exit 0 pass, 1 fail. Needs top_builddir.
set -u

say() { printf '%s\n' "$*" >&2; }
[ -n "${top_builddir:-}" ] || { say "SKIP: top_builddir is not set: run it through make check"; exit 77; }

BIN=$top_builddir/katomon
PAGE=$top_builddir/man/katomon.8
[ -x "$BIN" ] || { say "FAIL: $BIN was not built"; exit 1; }
[ -s "$PAGE" ] || { say "FAIL: $PAGE was not made"; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/katomon-opts.XXXXXX") || { say "FAIL: mktemp -d"; exit 1; }
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM HUP

"$BIN" --help >"$TMP/help" 2>&1 || { cat "$TMP/help" >&2; say "FAIL: katomon --help exited non-zero"; exit 1; }
# option lines start with blanks then a dash: "  -c, --config FILE ..."
grep -E '^ +-' "$TMP/help" | grep -oE '(^|[ ,])--?[A-Za-z][A-Za-z-]*' |
    tr -d ' ,' | sort -u >"$TMP/code"
# .It Fl c Ar file , Fl -config Ns = Ns Ar file -> -c, --config
awk '/^\.Sh /{ in_opts = ($2 == "OPTIONS") } in_opts && /^\.It Fl /{
        for (i = 2; i < NF; i++) if ($i == "Fl") print "-" $(i + 1) }' "$PAGE" |
    sort -u >"$TMP/page"

[ -s "$TMP/code" ] || { cat "$TMP/help" >&2; say "FAIL: no option found in katomon --help"; exit 1; }
rc=0
for o in $(comm -23 "$TMP/code" "$TMP/page"); do
    say "FAIL: katomon --help has $o but katomon.8 (OPTIONS) does not document it"
    rc=1
done
for o in $(comm -13 "$TMP/code" "$TMP/page"); do
    say "FAIL: katomon.8 documents $o but katomon --help has no such option"
    rc=1
done
[ $rc -eq 0 ] && say "ok: $(wc -l <"$TMP/code") options, documented in katomon.8 and listed by --help"
exit $rc
