#!/bin/sh
# tests/docker/capture-fixtures.sh - record real Docker Engine API answers
# into tests/fixtures/docker/ (pretty-printed with python3, which keeps
# 64-bit integers exact; jq would round them to doubles).
#
# Usage (root): tests/docker/capture-fixtures.sh [OUTDIR]
#
# Runs setup.sh --containers, adds short-lived helper containers
# (kato-health, kato-sick, kato-io), captures every endpoint the
# docker_stats plugin uses, stops/starts kato-redis to see what a stopped
# container and the events stream look like, removes the helpers and leaves
# kato and kato-redis running. Not part of the test suite: run it by hand
# when the fixtures need refreshing, then review the diff.
set -u
cd "$(dirname "$0")" || exit 1
HERE=$(pwd)
OUT=${1:-$HERE/../fixtures/docker}
SOCK=/var/run/docker.sock
API=v1.41
export DOCKER_HOST=unix://$SOCK

"$HERE/setup.sh" --containers || exit $?
command -v python3 >/dev/null 2>&1 || { echo "capture-fixtures.sh: needs python3" >&2; exit 1; }
command -v curl >/dev/null 2>&1 || { echo "capture-fixtures.sh: needs curl" >&2; exit 1; }
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)

get() { curl -sS --max-time 20 --unix-socket "$SOCK" "http://localhost$1"; }
# pretty FILE: stdin (one JSON document) -> FILE, 2-space indent, key order kept
pretty() {
    python3 -c 'import json, sys
d = json.load(sys.stdin)
with open(sys.argv[1], "w") as f:
    json.dump(d, f, indent=2)
    f.write("\n")' "$1"
}
save() { get "$1" | pretty "$OUT/$2" && echo "saved $2  <- GET $1"; }

t0=$(date +%s)
helpers="kato-health kato-sick kato-io"
# shellcheck disable=SC2086
docker rm -f $helpers >/dev/null 2>&1

# kato-health: health check passing every second -> "Up 3 seconds (healthy)",
#              and --network none -> no "networks" key in its stats.
docker run -d --name kato-health --init --label katomon.test=1 --network none \
    --health-cmd true --health-interval 1s --health-retries 1 \
    katomon-busybox /bin/busybox sleep 86400 >/dev/null
# kato-sick: health check failing -> "(unhealthy)" and health_status events.
docker run -d --name kato-sick --init --label katomon.test=1 --network none \
    --health-cmd false --health-interval 1s --health-retries 1 \
    katomon-busybox /bin/busybox sleep 86400 >/dev/null
# kato-io: the kernel here counts cgroup-v1 blkio only once blk-throttle is
# active on the disk (some cgroup has a bps/iops limit on it), so give it a
# (never reached) 1 GB/s limit on the root disk and do 8 MiB of direct I/O
# each way.
rootdev=$(findmnt -no SOURCE / 2>/dev/null)
if [ -b "$rootdev" ]; then
    docker run -d --name kato-io --init --label katomon.test=1 \
        --device-read-bps "$rootdev:1gb" --device-write-bps "$rootdev:1gb" \
        katomon-busybox /bin/busybox sleep 86400 >/dev/null &&
    docker exec kato-io /bin/busybox sh -c \
        'dd if=/dev/zero of=/tmp/f bs=1M count=8 oflag=direct && dd if=/tmp/f of=/dev/null bs=1M iflag=direct && rm /tmp/f &&
         dd if=/dev/zero of=/tmp/cache bs=1M count=16' 2>/dev/null
    # (the last dd leaves 16 MiB of page cache charged to kato-io, so its
    # memory_stats show a non-zero (total_)inactive_file to subtract)
fi
sleep 4   # let kato burn CPU and the health checks settle

save "/$API/version" version.json
save "/$API/containers/json?all=true" containers-json.json

# The stats requests in parallel, as the plugin does them (each takes ~1 s).
for c in kato kato-redis kato-health kato-io; do
    save "/$API/containers/$c/stats?stream=false" "stats-$c.json" &
done
save "/$API/containers/kato/stats?stream=false&one-shot=true" stats-kato-oneshot.json &
wait

# A container stopping while a stats request waits for its second sample:
# the answer has the zero "read" time and empty cpu/memory stats, but a
# real precpu_stats (the first sample).
# Whether the first sample was taken before the stop depends on the phase
# of dockerd's 1 s sampling tick, so try a few delays until it was.
for delay in 0.5 0.8 0.3 0.9 0.6; do
    docker start kato-redis >/dev/null
    sleep 1
    get "/$API/containers/kato-redis/stats?stream=false" >"$OUT/.stopping" &
    sleep $delay
    docker stop kato-redis >/dev/null
    wait
    grep -q '"preread":"0001-' "$OUT/.stopping" || break
done
pretty "$OUT/stats-kato-redis-stopping.json" <"$OUT/.stopping" && rm -f "$OUT/.stopping" &&
    echo "saved stats-kato-redis-stopping.json  <- GET /$API/containers/kato-redis/stats?stream=false (stopped ${delay}s in)"
# A stopped container: the same request answers at once with zeros.
save "/$API/containers/kato-redis/stats?stream=false" stats-kato-redis-stopped.json
save "/$API/containers/json?all=true" containers-json-stopped.json

# The live events stream while kato-redis starts and dies, raw on the wire
# (HTTP headers, chunk sizes in hex, CRLFs) to show the framing.
# Only the events the plugin wants: without an "event" filter a health
# check floods the stream with exec_create/exec_start/exec_die every interval.
filters=$(python3 -c 'import json, urllib.parse
print(urllib.parse.quote(json.dumps({"type": ["container"], "event": ["start", "die", "health_status"]}, separators=(",", ":"))))')
curl -sS -N --raw -i --max-time 8 --unix-socket "$SOCK" \
    "http://localhost/$API/events?filters=$filters" >"$OUT/events-live-raw-http.txt" 2>/dev/null &
evpid=$!
sleep 1
docker start kato-redis >/dev/null
docker kill kato-redis >/dev/null         # die with exitCode 137
sleep 1
docker start kato-redis >/dev/null
wait $evpid
echo "saved events-live-raw-http.txt  <- GET /$API/events?filters=$filters (raw, 8 s)"

# History: since/until answers the past events, then ends the stream.
t1=$(date +%s)
get "/$API/events?since=$t0&until=$t1&filters=$filters" >"$OUT/events.jsonl"
echo "saved events.jsonl  <- GET /$API/events?since=$t0&until=$t1&filters=... (as sent: one object per line)"
python3 -c 'import json, sys
evs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
with open(sys.argv[2], "w") as f:
    json.dump(evs, f, indent=2)
    f.write("\n")' "$OUT/events.jsonl" "$OUT/events-pretty.json"
echo "saved events-pretty.json (the same events as a pretty JSON array; NOT the wire format)"

# shellcheck disable=SC2086
docker rm -f $helpers >/dev/null 2>&1
docker info --format 'cgroup v{{.CgroupVersion}}, cgroup driver {{.CgroupDriver}}, storage driver {{.Driver}}, kernel {{.KernelVersion}}, {{.NCPU}} CPUs, {{.MemTotal}} bytes RAM'
