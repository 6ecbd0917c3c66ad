#!/bin/bash
# run.sh - `make fuzz`, `make fuzz-merge`: builds the libFuzzer harnesses
# tests/fuzz/fuzz_*.c with clang (-fsanitize=fuzzer,address,undefined)
# against the core's own sources compiled the same way, runs each for
# FUZZ_SECONDS (or FUZZ_RUNS executions) on a working copy of its corpus,
# and prints executions, exec/s, coverage and findings per harness. See
# README.md beside it. Make passes everything through the environment:
#
#   FUZZ_CC            clang that links -fsanitize=fuzzer (configure); empty: none
#   FUZZ_STATUS        configure's word on it (why it is missing)
#   FUZZ_SRCDIR        the source tree (absolute)
#   FUZZ_BUILDDIR      the build tree (absolute): everything made goes under
#                      $FUZZ_BUILDDIR/tests/fuzz/{build,work}
#   arguments          the preprocessor flags of the core library
#   FUZZ_CFLAGS, FUZZ_LIBS   its compiler flags (pkg-config's) and libraries
#   FUZZ_CORE_SOURCES  libkmcore's sources (relative to the source tree)
#   FUZZ               harness names (fuzz_NAME.c), blank-separated; empty: all
#   FUZZ_SECONDS       seconds per harness (default 60; 0: no time limit)
#   FUZZ_RUNS          executions per harness (libFuzzer -runs; default: none)
#   FUZZ_JOBS          harnesses run at once (default 1)
#   FUZZ_RESULTS       also write the Markdown table to this file
#   FUZZ_ARGS          more libFuzzer flags, for every harness
#   FUZZ_MODE          run (default), build, merge (minimize the new
#                      inputs of the last run into the tree's corpus), or
#                      report (the table of the last run of each harness)
set -u
cppflags=("$@")

mode=${FUZZ_MODE:-run}
src=${FUZZ_SRCDIR:?}
top=${FUZZ_BUILDDIR:?}
out=$top/tests/fuzz
seconds=${FUZZ_SECONDS:-60}
runs=${FUZZ_RUNS:-}
jobs=${FUZZ_JOBS:-1}
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# the core's objects: coverage everywhere but in ignorelist.txt's functions
covign="-fsanitize-coverage-ignorelist=$src/tests/fuzz/ignorelist.txt"

die() { echo "make fuzz: $*" >&2; exit 1; }

if [ -z "${FUZZ_CC:-}" ]; then
    die "no clang with libFuzzer (${FUZZ_STATUS:-not found}): install clang (./bootstrap as root installs it), then re-run configure"
fi

# ---- which harnesses ----
all=$(cd "$src/tests/fuzz" && ls fuzz_*.c 2>/dev/null | sed 's/^fuzz_//; s/\.c$//')
names=${FUZZ:-$all}
for n in $names; do
    [ -f "$src/tests/fuzz/fuzz_$n.c" ] || die "no harness tests/fuzz/fuzz_$n.c (have: $(echo $all))"
done

# ---- build ----
mkdir -p "$out/build/obj" "$out/work" || exit 1
cd "$top" || exit 1
# the core's objects: rebuilt when their source or any core header is newer
newest_h=$(ls -t "$src"/core/*.h "$src"/include/katomon/*.h "$src/tests/fuzz/ignorelist.txt" | head -1)
objs=()
stale=()
for s in $FUZZ_CORE_SOURCES; do
    case $s in *.c) ;; *) continue ;; esac
    o=$out/build/obj/$(echo "${s%.c}" | tr / _).o
    objs+=("$o")
    if [ ! -f "$o" ] || [ "$src/$s" -nt "$o" ] || [ "$newest_h" -nt "$o" ]; then
        stale+=("$s")
    fi
done
compile() { # source (relative to $src) -> its object
    local s=$1 o=$out/build/obj/$(echo "${1%.c}" | tr / _).o
    eval "local cpp=($FUZZ_CPPFLAGS_Q)"
    $FUZZ_CC -g -O1 -fsanitize=fuzzer-no-link $san $covign "${cpp[@]}" $FUZZ_CFLAGS \
        -c "$src/$s" -o "$o" || { rm -f "$o"; return 1; }
}
export -f compile
printf -v FUZZ_CPPFLAGS_Q '%q ' "${cppflags[@]}"
export FUZZ_CC FUZZ_CPPFLAGS_Q FUZZ_CFLAGS out src san covign
if [ ${#stale[@]} -gt 0 ]; then
    echo "make fuzz: compiling ${#stale[@]} core sources with $FUZZ_CC"
    printf '%s\n' "${stale[@]}" | xargs -P 2 -I{} bash -c 'compile "$1"' _ {} ||
        die "compiling the core with $FUZZ_CC failed"
    rm -f "$out/build/libkmcore-fuzz.a"
fi
if [ ! -f "$out/build/libkmcore-fuzz.a" ]; then
    ar rcs "$out/build/libkmcore-fuzz.a" "${objs[@]}" || die "ar failed"
fi
for n in $names; do
    h=$src/tests/fuzz/fuzz_$n.c
    bin=$out/build/fuzz_$n
    # a harness may name more sources (a plugin's) on a line
    # "FUZZ_SOURCES: plugins/x.c ..." of its comment; relative to the tree
    extra=$(sed -n 's/.*FUZZ_SOURCES:\([^*]*\).*/\1/p' "$h")
    deps=("$h" "$out/build/libkmcore-fuzz.a" "$src/tests/fuzz/fuzz.h")
    for e in $extra; do deps+=("$src/$e"); done
    rebuild=
    for d in "${deps[@]}"; do [ "$d" -nt "$bin" ] && rebuild=1; done
    [ -f "$bin" ] || rebuild=1
    [ -n "$rebuild" ] || continue
    echo "make fuzz: building fuzz_$n"
    srcs=("$h")
    for e in $extra; do srcs+=("$src/$e"); done
    $FUZZ_CC -g -O1 -fsanitize=fuzzer $san "${cppflags[@]}" -I"$src/tests/fuzz" $FUZZ_CFLAGS \
        "${srcs[@]}" "$out/build/libkmcore-fuzz.a" $FUZZ_LIBS -o "$bin" ||
        die "building fuzz_$n failed"
done
[ "$mode" = build ] && exit 0
cmd="make fuzz${FUZZ:+ FUZZ=\"$FUZZ\"} FUZZ_SECONDS=$seconds${runs:+ FUZZ_RUNS=$runs} FUZZ_JOBS=$jobs"

# ---- merge: the last run's new inputs that add coverage, into the tree ----
if [ "$mode" = merge ]; then
    for n in $names; do
        w=$out/work/$n/corpus
        [ -d "$w" ] || { echo "make fuzz-merge: $n: no run yet ($w)"; continue; }
        mkdir -p "$src/tests/fuzz/corpus/$n"
        before=$(ls "$src/tests/fuzz/corpus/$n" | wc -l)
        "$out/build/fuzz_$n" -merge=1 "$src/tests/fuzz/corpus/$n" "$w" \
            >"$out/work/$n/merge.log" 2>&1 || die "$n: merge failed (see $out/work/$n/merge.log)"
        after=$(ls "$src/tests/fuzz/corpus/$n" | wc -l)
        echo "make fuzz-merge: $n: $((after - before)) inputs added to tests/fuzz/corpus/$n (now $after; review and commit them)"
    done
    exit 0
fi

# ---- run ----
run_one() { # name: runs it, leaves work/NAME/{log,rc}
    local n=$1 w=$out/work/$1
    rm -rf "$w/artifacts" "$w/log" "$w/rc"
    mkdir -p "$w/corpus" "$w/artifacts"
    local dirs=("$w/corpus" "$src/tests/fuzz/corpus/$n")
    [ -d "$src/tests/fuzz/regress/$n" ] && dirs+=("$src/tests/fuzz/regress/$n")
    local lim=()
    [ "$seconds" != 0 ] && lim+=("-max_total_time=$seconds")
    [ -n "$runs" ] && lim+=("-runs=$runs")
    local t0=$(date +%s)
    # new inputs go to work/NAME/corpus (the first directory); the tree's
    # corpus and regress directories are only read
    # a harness may ask for libFuzzer flags on a line "FUZZ_FLAGS: -max_len=N"
    local own=$(sed -n 's/.*FUZZ_FLAGS:\([^*]*\).*/\1/p' "$src/tests/fuzz/fuzz_$n.c")
    (cd "$w" && "$out/build/fuzz_$n" "${lim[@]}" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="$w/artifacts/" $own ${FUZZ_ARGS:-} "${dirs[@]}") \
        >"$w/log" 2>&1
    echo $? >"$w/rc"
    echo $(($(date +%s) - t0)) >"$w/secs"
    echo "$cmd" >"$w/cmd"
}
if [ "$mode" = report ]; then
    started="(see each harness)"
    load0=$(cut -d' ' -f1-3 /proc/loadavg)" (now)"
    for n in $names; do [ -f "$out/work/$n/rc" ] || die "$n: no run yet"; done
else
echo "make fuzz: running $(echo $names) for ${runs:+$runs executions or }${seconds} s each, $jobs at a time (logs: $out/work/NAME/log)"
started=$(date -u '+%Y-%m-%d %H:%M UTC')
load0=$(cut -d' ' -f1-3 /proc/loadavg)
active=0
for n in $names; do
    if [ "$active" -ge "$jobs" ]; then
        wait -n
        active=$((active - 1))
    fi
    echo "make fuzz: fuzz_$n started $(date -u +%H:%M:%S)"
    run_one "$n" &
    active=$((active + 1))
done
wait
fi

# ---- report ----
stat_of() { sed -n "s/^stat::$2: *//p" "$1" | tail -1; }
table="| harness | seconds | executions | exec/s | cov | ft | corpus | new inputs | findings |
|---|---:|---:|---:|---:|---:|---:|---:|---|"
cmds=""
failed=
for n in $names; do
    w=$out/work/$n
    log=$w/log
    rc=$(cat "$w/rc" 2>/dev/null || echo 1)
    execs=$(stat_of "$log" number_of_executed_units)
    eps=$(stat_of "$log" average_exec_per_sec)
    newu=$(stat_of "$log" new_units_added)
    last=$(grep -a ' cov: ' "$log" | tail -1)
    cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    ncorp=$(($(ls "$w/corpus" | wc -l) + $(ls "$src/tests/fuzz/corpus/$n" 2>/dev/null | wc -l)))
    arts=$(cd "$w/artifacts" && ls 2>/dev/null | grep -Ev '^slow-unit-' | tr '\n' ' ')
    find=0
    if [ "$rc" = 72 ] && [ -z "$arts" ]; then
        find="0 (stopped early: interrupted)" # libFuzzer's exit code on SIGINT
    elif [ "$rc" != 0 ] || [ -n "$arts" ]; then
        failed="$failed $n"
        find="**FAILED** (exit $rc): ${arts:-see $log}"
        find="$find$(grep -a -m1 -E 'ERROR: |property violated|runtime error' "$log" | sed 's/^/ - /' | cut -c1-160)"
    fi
    c=$(cat "$w/cmd" 2>/dev/null || echo "$cmd")
    case "$cmds" in *"$c"*) ;; *) cmds="$cmds\`$c\`; " ;; esac
    table="$table
| $n | $(cat "$w/secs") | ${execs:-?} | ${eps:-?} | ${cov:-?} | ${ft:-?} | $ncorp | ${newu:-?} | $find |"
done
machine="$(uname -srm), $(nproc) CPUs ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)), load average at start $load0"
report="Command: ${cmds%; }

Machine: $machine; $($FUZZ_CC --version | head -1); started $started.

$table

cov/ft: libFuzzer's coverage (edges) and features at the end of the run;
corpus: files in the working corpus plus the tree's seeds; findings:
crashes, leaks, timeouts and property violations (inputs under
$out/work/NAME/artifacts)."
echo
echo "$report"
if [ -n "${FUZZ_RESULTS:-}" ]; then
    printf '%s\n' "$report" >"$FUZZ_RESULTS" && echo && echo "make fuzz: table written to $FUZZ_RESULTS"
fi
if [ -n "$failed" ]; then
    echo
    for n in $failed; do
        echo "make fuzz: fuzz_$n FAILED: $(ls "$out/work/$n/artifacts" 2>/dev/null | sed "s|^|$out/work/$n/artifacts/|" | tr '\n' ' ')(log: $out/work/$n/log)"
    done
    echo "make fuzz: replay one with $out/build/fuzz_NAME FILE (or tests/fuzz/fuzz_NAME_replay FILE); copy it into tests/fuzz/regress/NAME/ once fixed"
    exit 1
fi
exit 0
