#!/bin/sh
# tests/man/lint.sh - the man pages are clean under `mandoc -Tlint`.
#
# Lints the pages this build made (katomon(8), katomon.conf(5),
# katomon-plugin(7), from man/*.in with the configured paths): any message
# mandoc prints, at any level down to style, fails the test, and so does a
# non-zero exit. Then renders each page as text, so a page that lints but
# renders empty (a lost .Sh NAME) fails too.
#
# The pages are linted from a scratch man tree (man5/, man7/, man8/) put
# first in MANPATH, so their references to one another (.Xr katomon 8)
# resolve before `make install`. Two messages are about the machine, not the
# pages, and are not counted: a reference to another package's page that is
# not installed here (Docker images drop /usr/share/man), and a stale
# mandoc.db of the system's tree.
#
# Automake test protocol: exit 0 pass, 77 skip (no mandoc: apt-get install
# mandoc), 1 fail. Needs top_builddir (exported by `make check`).
set -u

say() { printf '%s\n' "$*" >&2; }

[ -n "${top_builddir:-}" ] || { say "SKIP: top_builddir is not set: run it through make check"; exit 77; }
command -v mandoc >/dev/null 2>&1 || { say "SKIP: mandoc is not installed (apt-get install mandoc)"; exit 77; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/katomon-man.XXXXXX") || { say "FAIL: mktemp -d"; exit 1; }
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM HUP
PAGES="katomon.8 katomon.conf.5 katomon-plugin.7"
for page in $PAGES; do
    mkdir -p "$TMP/man${page##*.}"
    cp "$top_builddir/man/$page" "$TMP/man${page##*.}/" 2>/dev/null
done
MANPATH="$TMP:$(manpath 2>/dev/null || echo /usr/share/man)"
export MANPATH

rc=0
for page in $PAGES; do
    f=$TMP/man${page##*.}/$page
    if [ ! -s "$f" ]; then
        say "FAIL: $top_builddir/man/$page was not made (make man/$page)"
        rc=1
        continue
    fi
    all=$(mandoc -Tlint -W style "$f" 2>&1)
    st=$?
    # what is left once the machine's own two messages are dropped
    out=$(printf '%s\n' "$all" | grep -v -e 'STYLE: referenced manual not found: Xr [a-z_.0-9]* [0-9]' \
        -e 'outdated mandoc.db' | grep -v '^$')
    ours=$(printf '%s\n' "$all" | grep -e 'not found: Xr katomon')
    if [ -n "$out" ] || [ -n "$ours" ]; then
        say "FAIL: mandoc -Tlint $page (exit $st):"
        say "$all"
        rc=1
        continue
    fi
    [ -z "$all" ] || say "note ($page, about this machine): $all"
    lines=$(mandoc -Tutf8 "$f" 2>/dev/null | wc -l)
    if [ "$lines" -lt 20 ]; then
        say "FAIL: $page renders to $lines lines of text"
        rc=1
        continue
    fi
    say "ok: $page: mandoc -Tlint clean, $lines lines"
done
exit $rc
