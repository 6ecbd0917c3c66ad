#!/usr/bin/env python3
"""latency.py - the clients of the end-to-end latency benchmark (issue 17,
point 6), run by tests/bench/latency.sh against a katomon it started.

  latency.py docker --port P --containers a,b,c --n N --out FILE
      Each event: POST /containers/NAME/kill to Docker's API (unix socket,
      no CLI: its start-up is not Docker's latency) -> the system_alert
      carrying container_down "firing" for NAME at a WebSocket client of
      katomon. Latency = the frame's arrival - the moment the kill request
      was sent (one process, one clock: CLOCK_MONOTONIC), so Docker's own
      event latency is included. The containers are used in turn: after
      its alert a container is started again (POST .../start); the next
      kill waits for that alert's resolution and then for a steady state
      (a later poll listing every container running and sampled), as when
      a service dies after running a while, not in the middle of a poll
      that a restart started.
  latency.py kato --port P --sim-port S --n N --out FILE
      Each event: the simulator creates a session (POST /_sim/sessions/
      create) and emits session.created on its /ws/events; katomon's
      session_events follows that stream -> session_event at a WebSocket
      client. Latency = arrival - the session's birth: the simulator's wall
      clock when it made the session and queued the event, which its id
      carries in ms (floored; the later of that and our request is taken,
      so the figure errs late by under 1 ms); same machine, CLOCK_REALTIME.
      BENCH_KATO_BURST sessions (default 1) per request, each request
      BENCH_KATO_GAP seconds (default 0.02) after the previous one's
      events arrived.

The output is one JSON object: {"scenario", "n", "lat_ms": [...], "p50_ms",
"p99_ms", "max_ms", "lost"}. The WebSocket client is kmtest.WS (a thread
reading frames as they come and stamping each on arrival).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "integration"))
from kmtest import WS  # noqa: E402

DOCKER_SOCK = "/var/run/docker.sock"


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("docker", timeout=60)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(self.path)
        self.sock = s


def docker_post(path: str) -> tuple[float, int]:
    """POST to Docker's API; returns (monotonic time the request was sent,
    HTTP status). The connection is made first, so the stamp is the send."""
    c = UnixHTTP(DOCKER_SOCK)
    c.connect()
    t = time.monotonic()
    c.request("POST", "/v1.41" + path, body=b"", headers={"Content-Length": "0"})
    st = c.getresponse().status
    c.close()
    return t, st


def pct(vals: list, q: float) -> float:
    """Nearest rank (of 100 events, p99 is the 99th, not the largest)."""
    if not vals:
        return float("nan")
    s = sorted(vals)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def wait_for(ws: WS, pred, since: int, timeout: float):
    """The first message from ws.all[since:] for which pred holds, with the
    monotonic stamp the reader thread gave it on arrival and its index:
    (t, msg, index), or None
    at the deadline. Scans the record rather than the queue, so a message
    that came while we waited for another is not lost."""
    end = time.monotonic() + timeout
    i = since
    while True:
        while i < len(ws.all):
            t, m = ws.all[i]
            i += 1
            try:
                if pred(m):
                    return t, m, i - 1
            except (KeyError, TypeError, AttributeError):
                pass
        if time.monotonic() > end or ws.closed:
            return None
        time.sleep(0.0005)


def update(m: object):
    """The containers message of a realtime_update, or None."""
    if isinstance(m, dict) and m.get("type") == "realtime_update":
        return (m.get("data") or {}).get("containers")
    return None


def stamp_before(ws: WS, idx: int) -> str:
    """aggregated.timestamp of the last containers update before ws.all[idx]."""
    for _, m in reversed(ws.all[:idx]):
        cs = update(m)
        if cs:
            return (cs.get("aggregated") or {}).get("timestamp") or ""
    return ""


def settled(ws: WS, names: list, since: int, after: str):
    """A containers update from ws.all[since:], newer than `after` (its
    aggregated.timestamp: a later poll), listing every name running with a
    measured CPU figure."""
    def pred(m: object) -> bool:
        cs = update(m)
        if not cs or (cs.get("aggregated") or {}).get("timestamp", "") <= after:
            return False
        by = {c.get("name"): c for c in cs.get("containers", [])}
        return all(n in by and by[n].get("status") == "running" and
                   isinstance(by[n].get("cpu"), (int, float)) for n in names)
    return wait_for(ws, pred, since, 60)


def container_alert(name: str, state: str):
    def pred(m: object) -> bool:
        return isinstance(m, dict) and m.get("type") == "system_alert" and any(
            a.get("type") == "container_down" and a.get("container_name") == name and
            a.get("state") == state for a in m.get("alerts", []))
    return pred


def run_docker(a: argparse.Namespace) -> dict:
    names = a.containers.split(",")
    ws = WS(a.port)
    ws.send({"type": "subscribe", "protocol": "katomon/1",
             "subscriptions": ["system_alerts", "containers"]})
    if wait_for(ws, lambda m: m.get("type") == "subscription_ack", 0, 10) is None:
        sys.exit("latency.py: no subscription_ack")
    if settled(ws, names, 0, "") is None:
        sys.exit("latency.py: the containers are not all running and sampled")
    lat, lost = [], 0
    for i in range(a.n):
        name = names[i % len(names)]
        since = len(ws.all)
        t0, st = docker_post(f"/containers/{name}/kill")
        if st != 204:
            sys.exit(f"latency.py: kill {name}: HTTP {st}")
        got = wait_for(ws, container_alert(name, "firing"), since, 30)
        if got is None:
            lost += 1
        else:
            lat.append((got[0] - t0) * 1000)
        started = len(ws.all)
        _, st = docker_post(f"/containers/{name}/start")
        if st not in (204, 304):
            sys.exit(f"latency.py: start {name}: HTTP {st}")
        # its alert resolved (or no new one would fire), then a steady
        # state: a later poll with every container running and sampled, as
        # when a service dies after running a while
        got = wait_for(ws, container_alert(name, "resolved"), started, 60)
        if got is None:
            sys.exit(f"latency.py: container_down for {name} never resolved")
        if settled(ws, names, started, stamp_before(ws, got[2])) is None:
            sys.exit("latency.py: no steady state after the restart")
    ws.close()
    return {"scenario": "docker", "n": a.n, "lat_ms": lat, "lost": lost}


def sim_create(port: int, count: int) -> list:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/_sim/sessions/create",
                                 data=json.dumps({"count": count}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["created"]


def run_kato(a: argparse.Namespace) -> dict:
    ws = WS(a.port)
    ws.send({"type": "subscribe", "protocol": "katomon/1", "subscriptions": ["session_events"]})
    if wait_for(ws, lambda m: m.get("type") == "subscription_ack", 0, 10) is None:
        sys.exit("latency.py: no subscription_ack")
    gap = float(os.environ.get("BENCH_KATO_GAP", "0.02"))
    burst = int(os.environ.get("BENCH_KATO_BURST", "1"))
    lat, lost, warm = [], 0, []
    # wall - monotonic, to put the arrivals on the simulator's clock
    off = time.time() - time.monotonic()
    done = 0
    while done < a.n + 5:
        since = len(ws.all)
        sent = time.time()
        for sid in sim_create(a.sim_port, burst):
            # the id ends in the simulator's clock at creation, in ms
            # (floored): the birth is at or after both that and our
            # request, so the later of the two errs late (< 1 ms)
            born = max(int(sid.rsplit("-", 1)[1]) / 1000, sent)
            got = wait_for(ws, lambda m: m.get("type") == "session_event" and
                           m["data"].get("session_id") == sid, since, 10)
            done += 1
            if done <= 5:  # warm-up: the first ones open paths and caches
                if got is not None:
                    warm.append((got[0] + off - born) * 1000)
            elif got is None:
                lost += 1
            else:
                lat.append((got[0] + off - born) * 1000)
        time.sleep(gap)
    ws.close()
    return {"scenario": "kato", "n": a.n, "lat_ms": lat, "lost": lost, "warmup_ms": warm}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["docker", "kato"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--containers", default="")
    p.add_argument("--sim-port", type=int, default=0)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--label", default="")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    r = run_docker(a) if a.scenario == "docker" else run_kato(a)
    r["label"] = a.label
    r["p50_ms"], r["p99_ms"] = pct(r["lat_ms"], .5), pct(r["lat_ms"], .99)
    r["max_ms"] = max(r["lat_ms"]) if r["lat_ms"] else float("nan")
    with open(a.out, "w") as f:
        json.dump(r, f)
    print(f"latency.py {a.scenario} {a.label}: n={len(r['lat_ms'])} lost={r['lost']} "
          f"p50={r['p50_ms']:.2f} p99={r['p99_ms']:.2f} max={r['max_ms']:.2f} ms",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
