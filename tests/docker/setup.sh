#!/bin/sh
# tests/docker/setup.sh - bring up a real Docker engine for the docker_stats tests.
#
# Usage: tests/docker/setup.sh [--containers]
#
#   1. as root only: otherwise prints "skip: not root (...)" and exits 77
#      (automake's "skipped" code);
#   2. installs Debian's docker.io and busybox-static with apt when missing
#      (apt-get update only when apt does not know the packages yet, or an
#      install from the current lists failed);
#   3. if no engine answers on /var/run/docker.sock, starts dockerd in the
#      background, logs to $KM_DOCKER_STATE/dockerd.log, records its pid in
#      $KM_DOCKER_STATE/dockerd.pid (teardown.sh stops only a daemon whose
#      pid is there) and waits up to $KM_DOCKER_WAIT (30) s for the socket;
#   4. builds the local image katomon-busybox from busybox-static (no
#      registry is reachable), unless it exists already;
#   5. with --containers: (re)creates the test containers
#        kato        - burns one CPU (busy shell loop)
#        kato-redis  - idle (sleep), --memory 256m so its memory limit is
#                      not the host's RAM
#      on the default bridge network, or with --network none when the
#      engine has no bridge network (dockerd --bridge=none) or when
#      KM_DOCKER_NETWORK=none;
#   6. prints a last line "docker ready: <server version>, image katomon-busybox".
#
# Idempotent: run it as often as you like; teardown.sh undoes it.
#
# Environment:
#   KM_DOCKER_STATE    state dir (pid file, log)   default /tmp/katomon-docker
#   KM_DOCKER_WAIT     seconds to wait for dockerd default 30
#   KM_DOCKERD_FLAGS   if set, dockerd is started with exactly these flags
#                      (no automatic fallback)
#   KM_DOCKER_NETWORK  "none" forces --network none for the test containers
#   KM_DOCKER_PREFIX   with --containers: a prefix for the containers' names
#                      ([a-z0-9_.-]*, default none: kato, kato-redis), and
#                      the label katomon.run=PREFIX instead of katomon.test=1
#                      (which a teardown.sh without a prefix, of any version,
#                      removes), so that runs sharing one engine (several
#                      checkouts testing at once) do not replace or remove
#                      each other's containers
#
# Exit status: 0 ready, 77 skipped (not root), 1 failure (reason on stderr).
set -u

STATE=${KM_DOCKER_STATE:-/tmp/katomon-docker}
WAIT=${KM_DOCKER_WAIT:-30}
SOCK=/var/run/docker.sock
IMAGE=katomon-busybox
PIDFILE=$STATE/dockerd.pid
LOG=$STATE/dockerd.log
# dockerd, docker-init and iptables live in sbin; CI's PATH may lack it.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
# Always talk to the engine on the system socket, whatever DOCKER_HOST says.
DOCKER_HOST=unix://$SOCK
export PATH DOCKER_HOST

containers=no
for arg in "$@"; do
    case $arg in
    --containers) containers=yes ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument: $arg" >&2; exit 1 ;;
    esac
done

if [ "$(id -u)" != 0 ]; then
    echo "skip: not root (the Docker tests need root to start dockerd)"
    exit 77
fi

die() { echo "setup.sh: $*" >&2; exit 1; }
say() { echo "setup.sh: $*"; }
mkdir -p "$STATE" || die "cannot create $STATE"
# One setup at a time: docker.py, prometheus.py and the browser tests call
# this at once under make -j2 check, and on a fresh machine two of them
# would each install packages and start a dockerd. The lock is fd 9, closed
# for everything that outlives this script (apt's children, dockerd).
exec 9>"$STATE/setup.lock" || die "cannot open $STATE/setup.lock"
flock 9 || die "cannot lock $STATE/setup.lock"

# ---------------------------------------------------------------- packages
pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=
# dockerd may come from another package (docker-ce); any working one will do.
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
# Only the static busybox runs in an image with no libc; the "busybox"
# package is dynamically linked, so busybox-static is required by name.
pkg_installed busybox-static || missing="$missing busybox-static"

if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    need_update=no
    for p in $missing; do
        apt-cache show "$p" >/dev/null 2>&1 || need_update=yes
    done
    if [ $need_update = yes ]; then
        say "apt-get update"
        apt-get update -q >/dev/null 9>&- || die "apt-get update failed"
    fi
    say "apt-get install$missing"
    # --no-install-recommends: dockerd needs only the Depends (containerd,
    # runc, tini, iptables); Recommends would pull git, apparmor, etc.
    # shellcheck disable=SC2086
    if ! apt-get install -y -q --no-install-recommends $missing >"$STATE/apt.log" 2>&1 9>&-; then
        # stale package lists (404 on a superseded version): refresh once
        apt-get update -q >/dev/null 2>&1 9>&-
        # shellcheck disable=SC2086
        apt-get install -y -q --no-install-recommends $missing >"$STATE/apt.log" 2>&1 9>&- ||
            { tail -20 "$STATE/apt.log" >&2; die "apt-get install$missing failed"; }
    fi
    rm -f "$STATE/apt.log"
    command -v dockerd >/dev/null 2>&1 || die "no dockerd after installing docker.io"
fi
command -v docker >/dev/null 2>&1 || die "no docker client in PATH"

# ---------------------------------------------------------------- engine
# server_version: prints the engine's version if one answers on $SOCK.
server_version() {
    timeout 10 docker version --format '{{.Server.Version}}' 2>/dev/null
}

# is_dockerd PID: true if PID is a live dockerd process
is_dockerd() {
    [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = dockerd ]
}

# wait_engine PID: wait up to $WAIT s for the engine to answer; 0 if it does,
# 1 if it did not or PID is no longer a dockerd.
wait_engine() {
    i=0
    while [ $i -lt "$WAIT" ]; do
        v=$(server_version)
        [ -n "$v" ] && return 0
        is_dockerd "$1" || return 1
        sleep 1
        i=$((i + 1))
    done
    return 1
}

# stop_pid PID: SIGTERM, up to 20 s to exit (dockerd stops its containers
# and its containerd first), then SIGKILL.
stop_pid() {
    is_dockerd "$1" || return 0
    kill -TERM "$1" 2>/dev/null
    j=0
    while is_dockerd "$1" && [ $j -lt 20 ]; do sleep 1; j=$((j + 1)); done
    is_dockerd "$1" && kill -KILL "$1" 2>/dev/null
    return 0
}

# start_dockerd FLAGS...: start dockerd in the background; 0 once it answers.
start_dockerd() {
    echo "=== $(date -u '+%Y-%m-%dT%H:%M:%SZ') setup.sh: dockerd $*" >>"$LOG"
    logstart=$(wc -l <"$LOG")
    # setsid: its own session, so a Ctrl-C or the test harness killing the
    # process group of the test that ran setup.sh does not take dockerd down
    # with it; teardown.sh stops it by pid. (When run from a job-control
    # shell setsid has to fork, so $! may be setsid's pid: the pid that
    # counts is the one dockerd writes to /var/run/docker.pid.)
    pre=$(cat /var/run/docker.pid 2>/dev/null)
    # 3>&- ... 9>&-: hold none of the caller's other fds (a test harness
    # waiting for a pipe to close would hang on a daemon that keeps it).
    setsid dockerd "$@" </dev/null >>"$LOG" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
    started=$!
    sleep 1
    p=$(cat /var/run/docker.pid 2>/dev/null)
    is_dockerd "$p" || p=$started
    echo "$p" >"$PIDFILE"
    if wait_engine "$p"; then
        p2=$(cat /var/run/docker.pid 2>/dev/null)
        is_dockerd "$p2" && echo "$p2" >"$PIDFILE"
        return 0
    fi
    # not up: stop what we started, keep the log for the report
    stop_pid "$p"
    p2=$(cat /var/run/docker.pid 2>/dev/null)
    [ "$p2" != "$p" ] && [ "$p2" != "$pre" ] && stop_pid "$p2"
    rm -f "$PIDFILE"
    return 1
}

# A pid file whose daemon is gone is stale. One whose daemon lives but does
# not answer (still starting, from a setup.sh run that was interrupted) gets
# $WAIT seconds, then is stopped and started anew.
if [ -f "$PIDFILE" ]; then
    p=$(cat "$PIDFILE" 2>/dev/null)
    if ! is_dockerd "$p"; then
        rm -f "$PIDFILE"
    elif [ -z "$(server_version)" ] && ! wait_engine "$p"; then
        say "our dockerd (pid $p) does not answer; restarting it"
        stop_pid "$p"
        rm -f "$PIDFILE"
    fi
fi

version=$(server_version)
if [ -n "$version" ]; then
    if [ -f "$PIDFILE" ]; then
        say "engine $version already running (started by setup.sh, pid $(cat "$PIDFILE"))"
    else
        say "engine $version already running (not ours: teardown.sh will leave it alone)"
    fi
else
    if [ -n "${KM_DOCKERD_FLAGS+set}" ]; then
        # shellcheck disable=SC2086
        start_dockerd $KM_DOCKERD_FLAGS ||
            { tail -n +"$logstart" "$LOG" | tail -30 >&2; die "dockerd $KM_DOCKERD_FLAGS did not answer on $SOCK within ${WAIT}s (log: $LOG)"; }
    # First try: plain dockerd. On this project's machines (Debian 12 VM,
    # kernel with overlayfs, nf_tables, cgroup v1 hierarchies mounted, no
    # systemd) it comes up with its defaults: storage driver overlay2,
    # cgroup driver cgroupfs, default bridge docker0 with iptables NAT.
    elif start_dockerd; then
        :
    else
        say "plain dockerd did not start; its last log lines:"
        tail -n +"$logstart" "$LOG" | tail -15 | sed 's/^/    /'
        say "retrying with fallback flags"
        # Fallback for sandboxes that refuse what the defaults need:
        #   --storage-driver=vfs  overlay2 needs overlayfs in the kernel and a
        #                         backing fs that supports it (not overlayfs
        #                         itself, not some tmpfs/9p); vfs is plain
        #                         copies and works on any filesystem.
        #   --iptables=false      dockerd refuses to start when it cannot add
        #                         its iptables chains (no nf_tables/ip_tables
        #                         in the kernel, or no CAP_NET_ADMIN).
        #   --bridge=none         without iptables it must not create docker0
        #                         either (creating a bridge can also fail in a
        #                         sandbox); containers then need --network
        #                         none, which --containers detects.
        start_dockerd --storage-driver=vfs --iptables=false --bridge=none ||
            { tail -n +"$logstart" "$LOG" | tail -30 >&2; die "dockerd did not answer on $SOCK within ${WAIT}s, even with fallback flags (log: $LOG)"; }
    fi
    version=$(server_version)
    say "started dockerd $version (pid $(cat "$PIDFILE"), log $LOG)"
fi

# ---------------------------------------------------------------- image
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    tmp=$(mktemp -d) || die "mktemp failed"
    mkdir -p "$tmp/bin" "$tmp/tmp" "$tmp/etc" "$tmp/proc" "$tmp/sys" "$tmp/dev"
    chmod 1777 "$tmp/tmp"
    cp /bin/busybox "$tmp/bin/busybox" || die "no /bin/busybox"
    # Relative links, one per applet ("busybox --install -s DIR" would make
    # absolute links to $tmp/bin/busybox, dangling inside the image).
    for a in $(/bin/busybox --list); do
        [ "$a" = busybox ] || ln -s busybox "$tmp/bin/$a"
    done
    echo "root:x:0:0:root:/root:/bin/sh" >"$tmp/etc/passwd"
    echo "root:x:0:" >"$tmp/etc/group"
    tar -C "$tmp" -c . | docker import -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
    st=$?
    rm -rf "$tmp"
    [ $st = 0 ] || die "docker import $IMAGE failed"
    say "built image $IMAGE from $(/bin/busybox | head -1)"
fi

# ---------------------------------------------------------------- containers
if [ $containers = yes ]; then
    P=${KM_DOCKER_PREFIX:-}
    case $P in *[!a-z0-9_.-]*) die "KM_DOCKER_PREFIX must match [a-z0-9_.-]*: $P" ;; esac
    run_label='--label katomon.test=1'
    [ -n "$P" ] && run_label="--label katomon.run=$P"
    docker rm -f "${P}kato" "${P}kato-redis" >/dev/null 2>&1
    net='' netname=bridge
    if [ "${KM_DOCKER_NETWORK:-}" = none ] || ! docker network inspect bridge >/dev/null 2>&1; then
        net="--network none" netname=none
    fi
    # --init: docker-init (tini) is PID 1 and passes SIGTERM on, so
    #         "docker stop" ends the container at once instead of waiting
    #         10 s and killing a PID-1 shell that ignores SIGTERM.
    # --label katomon.test=1: teardown.sh also removes any other container
    #         a test made with this label.
    # shellcheck disable=SC2086
    docker run -d --name "${P}kato" $net --init $run_label "$IMAGE" \
        /bin/busybox sh -c 'while :; do :; done' >/dev/null ||
        die "cannot start container ${P}kato"
    # shellcheck disable=SC2086
    docker run -d --name "${P}kato-redis" $net --init $run_label \
        --memory 256m "$IMAGE" /bin/busybox sleep 86400 >/dev/null ||
        die "cannot start container ${P}kato-redis"
    say "containers ${P}kato (CPU burner) and ${P}kato-redis (idle, 256 MiB limit) running, network $netname"
fi

echo "docker ready: $version, image $IMAGE"
