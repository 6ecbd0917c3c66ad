#!/bin/sh
# tests/docker/teardown.sh - undo tests/docker/setup.sh.
#
# Usage: tests/docker/teardown.sh [--containers]
#
#   - removes the test containers kato and kato-redis, and any other
#     container labelled katomon.test=1 or katomon.run, if an engine answers;
#   - stops dockerd, but only one that setup.sh started (its pid is in
#     $KM_DOCKER_STATE/dockerd.pid and that process is still a dockerd);
#     a daemon that was already running before setup.sh is left alone.
#   --containers: remove the containers only, keep the daemon running.
#   KM_DOCKER_PREFIX set (as for setup.sh): remove only that run's
#   containers (label katomon.run=PREFIX), leaving other runs' alone.
#
# The image katomon-busybox is kept (it lives in /var/lib/docker; setup.sh
# reuses it). Idempotent; exits 0 when there is nothing to do.
set -u

STATE=${KM_DOCKER_STATE:-/tmp/katomon-docker}
SOCK=/var/run/docker.sock
PIDFILE=$STATE/dockerd.pid
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
DOCKER_HOST=unix://$SOCK
export PATH DOCKER_HOST

only_containers=no
for arg in "$@"; do
    case $arg in
    --containers) only_containers=yes ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "teardown.sh: unknown argument: $arg" >&2; exit 1 ;;
    esac
done

if [ "$(id -u)" != 0 ]; then
    echo "teardown.sh: not root, nothing to do"
    exit 0
fi

is_dockerd() {
    [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = dockerd ]
}

if command -v docker >/dev/null 2>&1 &&
   [ -n "$(timeout 10 docker version --format '{{.Server.Version}}' 2>/dev/null)" ]; then
    if [ -n "${KM_DOCKER_PREFIX:-}" ]; then
        ids=$(docker ps -aq --filter "label=katomon.run=$KM_DOCKER_PREFIX" 2>/dev/null)
        # shellcheck disable=SC2086
        [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1
        echo "teardown.sh: test containers of run $KM_DOCKER_PREFIX removed"
    else
        ids="$(docker ps -aq --filter label=katomon.test=1 2>/dev/null)
$(docker ps -aq --filter label=katomon.run 2>/dev/null)"
        # shellcheck disable=SC2086
        docker rm -f kato kato-redis $ids >/dev/null 2>&1
        echo "teardown.sh: test containers removed"
    fi
fi

[ $only_containers = yes ] && exit 0

if [ -f "$PIDFILE" ]; then
    p=$(cat "$PIDFILE" 2>/dev/null)
    if is_dockerd "$p"; then
        # SIGTERM: dockerd stops its containers and its own containerd,
        # removes /var/run/docker.sock and exits (a few seconds).
        kill -TERM "$p" 2>/dev/null
        i=0
        while is_dockerd "$p" && [ $i -lt 30 ]; do sleep 1; i=$((i + 1)); done
        if is_dockerd "$p"; then
            echo "teardown.sh: dockerd (pid $p) ignored SIGTERM for 30 s; killing it" >&2
            kill -KILL "$p" 2>/dev/null
        fi
        echo "teardown.sh: stopped dockerd (pid $p) started by setup.sh"
    fi
    rm -f "$PIDFILE"
else
    echo "teardown.sh: no dockerd started by setup.sh; daemon left as it is"
fi
exit 0
