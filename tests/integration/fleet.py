#!/usr/bin/env python3
"""fleet.py - three katomon hosts bridged over a real Redis (issue 15).

A private redis-server (password) on a free loopback port, two KATO
simulators, and three katomon processes on ephemeral ports with their own
state directories, all with redis_bridge (shared secret):

  A, B  collectors (kato_metrics, session_events on their own simulator,
        docker_stats on a socket that does not exist), alert_manager with
        the shipped rules, redis_bridge publishing and subscribing
  E     the edge: the same collectors with `collect = false` (it knows
        their topics and publishes nothing of them), alert_manager,
        redis_bridge with publish = false (etc/katomon-edge.conf's choice)

One "ok - ..." / "not ok - ..." line per check; exit 0 pass, 1 fail, 77
skip (no redis-server). Every wait is a deadline poll.

  V  the fleet view on E (a katomon/1 WebSocket client): A's and B's
     metrics, sessions and containers in realtime_update's "hosts" map
     within two update intervals of the host having them, each under its
     own host (A has 2 sessions, B 5); their session events and B's
     high_error_rate alert labelled "host"; nothing of E's own; `since`
     {"session_events": {"A": a, "B": b}} after a reconnect replays exactly
     what each host sent meanwhile
  X  bad input published on Redis with redis-cli: garbage, a channel that
     is not PREFIX:HOST:TOPIC, a wrong kind and a wrong type (schema), a
     forged host (channel host != envelope host), a valid envelope signed
     with another secret claiming host A, a wrong HMAC, an unknown topic, a
     replayed event (stale), a 10 MiB payload: each refused and counted by
     reason (redis_bridge's `refused`, and
     katomon_redis_bridge_refused_total{reason=...}), one log line per
     burst and reason plus a summary, none of it reaching A's values on E;
     the 10 MiB one drops E's subscription, which comes back; every
     daemon survives
  R  redis-server killed: every katomon stays up and serves its local data;
     each bridge reports unhealthy (REST, katomon_source_up{source="redis"}
     0) and source_down fires; restarted on the same port: the fleet view
     is back within one backoff step (reconnect_max + timeout), the events
     lost meanwhile are reported as a gap (GET /api/v1/hosts: gaps, missed),
     source_down resolves
  D  collector host B killed (-9): host_down fires on A and E within
     host_stale, B is shown down; B started again: resolved, B up, its
     restart counted
and at the end SIGTERM: exit status 0, no sanitizer report.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import (Checks, Katomon, Redis, Sim, WS, base_conf, rmtree,  # noqa: E402
                    shipped_alert_rules, tmpdir, wait_until, SANITIZER_MARKS)

C = Checks()
W = tmpdir("km-fleet.")
INTERVAL = 0.5      # [websocket] update_interval
POLL = 0.25         # kato_metrics interval
STALE = 3.0         # [core] host_stale
RMIN, RMAX = 0.2, 1.0  # redis_bridge reconnect_min, reconnect_max
TIMEOUT = 1.0       # redis_bridge timeout
LOG_EVERY = 1.0     # redis_bridge log_interval
SECRET = "fleet secret/1"
PASSWORD = "fleet-pass+1"
SOURCE_UP = re.compile(r'^katomon_source_up\{([^}]*)\} (\S+)$', re.M)
REASONS = ("garbage", "oversize", "bad_sig", "forged", "unknown_topic", "schema", "kind",
           "stale", "hosts_full", "other")
WS_TOPICS = ["metrics", "sessions", "containers", "session_events", "system_alerts"]


# ---------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------

def core(name: str) -> str:
    os.makedirs(f"{W}/{name}", exist_ok=True)
    return base_conf(f"{W}/{name}").replace(
        "[core]\n", f"[core]\nhost_name = {name}\nhost_stale = {STALE:g}s\n", 1) + f"""
[websocket]
update_interval = {INTERVAL}
"""


def bridge(r: Redis, extra: str = "") -> str:
    return f"""
[plugin redis_bridge]
url = {r.url}
secret = {SECRET}
timeout = {TIMEOUT}
reconnect_min = {RMIN}
reconnect_max = {RMAX}
log_interval = {LOG_EVERY}
resend_interval = 1
{extra}
"""


def collector_conf(name: str, sim: Sim, r: Redis) -> str:
    return core(name) + f"""
[plugin kato_metrics]
url = {sim.url}
interval = {POLL}
timeout = 1

[plugin session_events]
url = {sim.url}
retry = 1

[plugin docker_stats]
socket = {W}/{name}/no-docker.sock
interval = 1
events = false

[plugin alert_manager]
sync_interval = 0.5

{shipped_alert_rules()}
""" + bridge(r)


def edge_conf(r: Redis) -> str:
    return core("E") + """
[plugin kato_metrics]
collect = false

[plugin session_events]
collect = false

[plugin docker_stats]
collect = false

[plugin alert_manager]
sync_interval = 0.5

""" + shipped_alert_rules() + bridge(r, "publish = false")


# ---------------------------------------------------------------------------
# reading the daemons
# ---------------------------------------------------------------------------

def get(k: Katomon, path: str) -> Any:
    st, body = k.get(path)
    return body if st == 200 else None


def health(k: Katomon) -> dict:
    b = get(k, "/api/v1/topics/redis_bridge/latest")
    return b if isinstance(b, dict) else {}


def refused(k: Katomon) -> dict:
    return {x.get("reason"): x.get("count") for x in health(k).get("refused", [])
            if isinstance(x, dict)}


def source_up(k: Katomon) -> Optional[str]:
    st, text = k.get("/metrics")
    if st != 200 or not isinstance(text, str):
        return None
    for labels, value in SOURCE_UP.findall(text):
        if 'source="redis"' in labels and "host=" not in labels:
            return value
    return None


def metric(k: Katomon, name: str, labels: str) -> Optional[float]:
    st, text = k.get("/metrics")
    if st != 200 or not isinstance(text, str):
        return None
    for line in text.splitlines():
        if line.startswith(name + "{") and labels in line and "host=" not in line:
            try:
                return float(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return None


def hosts_view(k: Katomon) -> dict:
    """GET /api/v1/hosts as {name: item}."""
    b = get(k, "/api/v1/hosts")
    if not isinstance(b, dict):
        return {}
    return {h.get("name"): h for h in b.get("hosts", []) if isinstance(h, dict)}


def active(k: Katomon, host: Optional[str] = None) -> list:
    b = get(k, "/api/v1/alerts/active" + (f"?host={host}" if host else ""))
    return b.get("active", []) if isinstance(b, dict) else []


def firing(k: Katomon, atype: str, text: str, host: Optional[str] = None) -> list:
    return [a for a in active(k, host) if isinstance(a, dict) and a.get("type") == atype and
            text in json.dumps(a)]


def latest(k: Katomon, topic: str, host: Optional[str] = None) -> Any:
    return get(k, f"/api/v1/topics/{topic}/latest" + (f"?host={host}" if host else ""))


def lines(k: Katomon, pattern: str) -> list:
    return [l for l in k.text().splitlines() if re.search(pattern, l)]


def ws_find(ws: WS, pred: Callable[[Any], bool], timeout: float, start: int = 0
            ) -> tuple[Optional[float], Any]:
    """The first message of ws.all from index `start` on for which pred
    holds, waiting up to timeout: (its arrival time, it), or (None, None)."""
    def look() -> Any:
        for t, m in ws.all[start:]:
            try:
                if pred(m):
                    return (t, m)
            except (KeyError, TypeError, AttributeError, IndexError):
                pass
        return None
    got = wait_until(look, timeout, 0.02)
    return got if got else (None, None)


def remote_value(m: Any, host: str, topic: str) -> Any:
    if not isinstance(m, dict) or m.get("type") != "realtime_update":
        return None
    return (m.get("hosts") or {}).get(host, {}).get(topic)


def events_of(ws: WS, host: str, start: int = 0) -> list:
    return [m for _, m in ws.all[start:] if isinstance(m, dict) and
            m.get("type") == "session_event" and m.get("host") == host]


# ---------------------------------------------------------------------------
# publishing on Redis as the test
# ---------------------------------------------------------------------------

def envelope(host: str, topic: str, kind: str, seq: int, epoch: int, body: Any) -> bytes:
    """The JSON of an envelope, in the format's key order, compact."""
    return json.dumps({"v": 1, "host": host, "topic": topic, "kind": kind, "seq": seq,
                       "epoch": epoch, "time": int(time.time() * 1e6), "body": body},
                      separators=(",", ":")).encode()


def signed(js: bytes, secret: str = SECRET) -> bytes:
    return b"KM1 " + hmac.new(secret.encode(), js, hashlib.sha256).hexdigest().encode() + \
        b" " + js


def redis_publish(r: Redis, channel: str, payload: bytes) -> Optional[int]:
    """PUBLISH with redis-cli (payload on stdin, -x); the test's own RESP
    client when there is no redis-cli. Returns the receivers, None on error."""
    cli = shutil.which("redis-cli")
    if cli:
        out = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(r.port), "--no-auth-warning",
                              "-a", PASSWORD, "-x", "PUBLISH", channel], input=payload,
                             capture_output=True, timeout=30)
        try:
            return int(out.stdout.strip() or b"x")
        except ValueError:
            return None
    try:
        return r.cmd("PUBLISH", channel, payload)
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------------------

class Fleet:
    def __init__(self) -> None:
        self.r: Optional[Redis] = None
        self.sims: dict = {}
        self.k: dict = {}
        self.ws: list = []
        self.view: Optional[WS] = None  # the edge's katomon/1 client, from V on


def check_edge_conf() -> None:
    """The shipped etc/katomon-edge.conf passes --check-config (with this
    build's plugins)."""
    src = os.path.join(os.environ["top_srcdir"], "etc", "katomon-edge.conf")
    with open(src) as fh:
        text = fh.read().replace("[core]\n", f"[core]\nplugin_dir = "
                                 f"{os.environ['PLUGIN_BUILD_DIR']}\n", 1)
    path = os.path.join(W, "edge-shipped.conf")
    with open(path, "w") as fh:
        fh.write(text)
    out = subprocess.run([os.path.join(os.environ["top_builddir"], "katomon"),
                          "--check-config", "-c", path], capture_output=True, text=True,
                         timeout=60)
    C.check(out.returncode == 0, "etc/katomon-edge.conf passes katomon --check-config",
            out.stdout + out.stderr)


def main() -> int:
    Redis.skip_unless_available()
    f = Fleet()
    try:
        check_edge_conf()
        f.r = Redis(password=PASSWORD, workdir=W)
        C.ok(f"redis-server with a password on 127.0.0.1:{f.r.port}")
        for name in ("A", "B"):
            os.makedirs(f"{W}/{name}", exist_ok=True)
            sim = Sim(f"{W}/{name}")
            if not C.check(sim.start(), f"the KATO simulator of {name} starts"):
                return C.done()
            f.sims[name] = sim
        f.k["A"] = Katomon(W, "A", collector_conf("A", f.sims["A"], f.r))
        f.k["B"] = Katomon(W, "B", collector_conf("B", f.sims["B"], f.r))
        f.k["E"] = Katomon(W, "E", edge_conf(f.r))
        for name, k in f.k.items():
            if not C.check(k.start(), f"katomon {name} starts (port {k.port})",
                           k.text()[-3000:]):
                return C.done()
        for name in ("A", "B"):
            C.check(f.k[name].wait_log(r"following KATO /ws/events", 10) is not None,
                    f"{name}: session_events follows its simulator's /ws/events",
                    f.k[name].text()[-2000:])
        ready = wait_until(lambda: all(health(f.k[n]).get("connected") for n in "AB") and
                           all(health(k).get("subscribed") for k in f.k.values()), 15)
        C.check(ready, "every bridge connected; every one subscribed",
                {n: health(k) for n, k in f.k.items()})
        he = health(f.k["E"])
        C.check(he.get("publish") is False and he.get("connected") is False and
                he.get("_source", {}).get("healthy") is True,
                "E: publish = false: no publishing connection, healthy all the same", he)

        for phase in (phase_view, phase_bad_input, phase_redis_down, phase_host_down):
            if os.environ.get("FLEET_PHASES") and \
                    phase.__name__ not in os.environ["FLEET_PHASES"]:
                continue
            C.note(phase.__name__)
            phase(f)
            gone = [n for n, k in f.k.items() if not k.alive()]
            if not C.check(not gone, f"{phase.__name__}: every katomon still running", gone):
                break

        for name, k in f.k.items():
            good, detail = stop(k)
            C.check(good, f"{name}: SIGTERM -> exit status 0, no sanitizer report", detail)
    finally:
        for ws in f.ws:
            ws.close()
        for k in f.k.values():
            if k.alive():
                k.kill9()
        if f.r:
            f.r.close()
        for sim in f.sims.values():
            sim.stop()
        if C.failed == 0:
            rmtree(W)
        else:
            C.note(f"kept {W} for inspection")
    return C.done()


def stop(k: Katomon) -> tuple[bool, str]:
    """SIGTERM: exit status 0 and no sanitizer report. Schema refusals of
    the messages this test forged are expected; any other is not."""
    good, detail = k.stop()
    if good:
        return good, detail
    text = k.text()
    marks = [m for m in SANITIZER_MARKS if m in text]
    # the schema burst's body (X's sessions with a string active_count)
    others = [l for l in text.splitlines() if "message refused" in l and
              "active_count: expected integer or null, got string" not in l]
    if k.exit_status == 0 and not marks and not others:
        return True, "exit status 0"
    return False, detail


# ---------------------------------------------------------------------------
# V: the fleet view on the edge
# ---------------------------------------------------------------------------

def phase_view(f: Fleet) -> None:
    A, B, E = f.k["A"], f.k["B"], f.k["E"]
    ws = WS(E.port)
    f.ws.append(ws)
    ws.send({"type": "subscribe", "protocol": "katomon/1", "subscriptions": WS_TOPICS})
    _, ack = ws_find(ws, lambda m: m.get("type") == "subscription_ack", 3)
    C.check(isinstance(ack, dict) and ack.get("host") == "E" and
            isinstance(ack.get("hosts"), list) and "E" in ack["hosts"],
            "V: subscription_ack says this host (E) and the hosts known", ack)
    _, ru = ws_find(ws, lambda m: remote_value(m, "A", "metrics") is not None and
                    remote_value(m, "B", "metrics") is not None, 10)
    C.check(ru is not None, "V: realtime_update on E holds A's and B's metrics under "
            "\"hosts\"", ws.all[-3:])
    if ru:
        C.check(not (ru.get("data") or {}).get("metrics") and "E" not in ru["hosts"],
                "V: the edge collects nothing itself: no local metrics, no \"E\" in hosts",
                {"data": ru.get("data"), "hosts": sorted(ru["hosts"])})

    # distinct values per host: A gets 2 sessions, B 5
    mark = len(ws.all)
    a_ids = f.sims["A"].create(2)
    b_ids = f.sims["B"].create(5)
    for name, n in (("A", 2), ("B", 5)):
        k = f.k[name]
        t_host = wait_until(lambda: (lambda v: time.monotonic() if isinstance(v, dict) and
                                     v.get("active_count") == n else None)(latest(k, "sessions")),
                            10, 0.02)
        t_e, m = ws_find(ws, lambda m: (remote_value(m, name, "sessions") or {})
                         .get("active_count") == n, 10, mark)
        took = (t_e - t_host) if t_e and t_host else None
        C.check(took is not None and took <= 2 * INTERVAL,
                f"V: {name}'s sessions ({n} active) reach the edge's client under \"{name}\" "
                f"within two update intervals ({took if took is None else round(took, 3)} s)",
                {"host": t_host, "edge": t_e})
    _, m = ws_find(ws, lambda m: remote_value(m, "A", "sessions") is not None and
                   remote_value(m, "B", "sessions") is not None, 5, mark)
    # docker_stats published its error value once at start and then waits its
    # backoff: the edge has it because the bridge sends every state again
    # each resend_interval (pub/sub kept nothing for a late subscriber)
    _, m = ws_find(ws, lambda m: remote_value(m, "A", "containers") is not None and
                   remote_value(m, "B", "containers") is not None and
                   remote_value(m, "A", "sessions") is not None, 5, mark)
    C.check(m is not None,
            "V: A's and B's containers on the edge too (each with its own _source)",
            m and {h: sorted(v) for h, v in m["hosts"].items()})
    last_a = (remote_value(m, "A", "sessions") or {}).get("active_count") if m else None
    C.check(last_a == 2, "V: A's value is A's (2 sessions), not B's (5)", m and m["hosts"])

    # session events, labelled, per-host seqs
    def evs_ok() -> bool:
        return len(events_of(ws, "A")) >= 2 and len(events_of(ws, "B")) >= 5
    wait_until(evs_ok, 10)
    ea, eb = events_of(ws, "A"), events_of(ws, "B")
    C.check(sorted(e["data"].get("session_id") for e in ea) == sorted(a_ids) and
            sorted(e["data"].get("session_id") for e in eb) == sorted(b_ids),
            "V: A's 2 and B's 5 session events on the edge, each with its host",
            {"A": [e.get("data") for e in ea], "B": [e.get("data") for e in eb]})
    C.check([e.get("seq") for e in ea] == [1, 2] and [e.get("seq") for e in eb] ==
            [1, 2, 3, 4, 5] and all(isinstance(e.get("epoch"), int) for e in ea + eb),
            "V: each host's own seqs (A 1-2, B 1-5) and epoch",
            {"A": [e.get("seq") for e in ea], "B": [e.get("seq") for e in eb]})
    C.check(not [m for _, m in ws.all if isinstance(m, dict) and m.get("type") ==
                 "session_event" and "host" not in m],
            "V: no session event without a host (E has none of its own)")

    # B's alert, labelled B, within two update intervals of B firing it
    mark = len(ws.all)
    f.sims["B"].set(error_rate=0.07)
    t_b = wait_until(lambda: time.monotonic() if firing(B, "high_error_rate", "") else None,
                     10, 0.02)
    t_e, al = ws_find(ws, lambda m: m.get("type") == "system_alert" and m.get("host") == "B"
                      and any(a.get("type") == "high_error_rate" for a in m["alerts"]), 10,
                      mark)
    took = (t_e - t_b) if t_e and t_b else None
    C.check(took is not None and took <= 2 * INTERVAL,
            f"V: B's high_error_rate alert reaches the edge's client labelled \"B\" within "
            f"two update intervals ({took if took is None else round(took, 3)} s)",
            {"B fired": t_b, "edge": t_e, "alert": al})
    C.check(not [m for _, m in ws.all[mark:] if isinstance(m, dict) and
                 m.get("type") == "system_alert" and m.get("host") != "B" and
                 any(a.get("type") == "high_error_rate" for a in m.get("alerts", []))],
            "V: the alert is B's alone (A's error rate is 0)")
    C.check(wait_until(lambda: firing(E, "high_error_rate", "", host="B"), 5),
            "V: GET /api/v1/alerts/active?host=B on the edge lists it",
            active(E, "B"))
    C.check(not firing(E, "high_error_rate", ""),
            "V: ... and the edge's own active alerts do not", active(E))
    f.sims["B"].set(error_rate=0.0)

    # since: per-host replay after a reconnect, exact
    la, lb = events_of(ws, "A")[-1]["seq"], events_of(ws, "B")[-1]["seq"]
    ws.close()
    f.ws.remove(ws)
    watch = WS(E.port)  # sees the events arrive on E while the client is away
    f.ws.append(watch)
    watch.send({"type": "subscribe", "protocol": "katomon/1",
                "subscriptions": ["session_events"]})
    ws_find(watch, lambda m: m.get("type") == "subscription_ack", 3)
    new_a = f.sims["A"].create(3)
    new_b = f.sims["B"].create(1)
    C.check(wait_until(lambda: len(events_of(watch, "A")) >= 3 and
                       len(events_of(watch, "B")) >= 1, 10),
            "V: the edge got A's 3 and B's 1 new events while the client was away",
            [m for _, m in watch.all][-6:])
    ws = WS(E.port)
    f.ws.append(ws)
    ws.send({"type": "subscribe", "protocol": "katomon/1", "subscriptions": WS_TOPICS,
             "since": {"session_events": {"A": la, "B": lb}}})
    wait_until(lambda: len(events_of(ws, "A")) >= 3 and len(events_of(ws, "B")) >= 1, 5)
    # one live event more per host: each host's events arrive in order, so a
    # duplicate or a late replay would come before it
    new_a += f.sims["A"].create(1)
    new_b += f.sims["B"].create(1)
    wait_until(lambda: any(e["data"].get("session_id") == new_a[-1]
                           for e in events_of(ws, "A")) and
               any(e["data"].get("session_id") == new_b[-1] for e in events_of(ws, "B")), 10)
    ra, rb = events_of(ws, "A"), events_of(ws, "B")
    C.check([e.get("seq") for e in ra] == [la + 1, la + 2, la + 3, la + 4] and
            [e.get("seq") for e in rb] == [lb + 1, lb + 2] and
            [e["data"].get("session_id") for e in ra][:3] == new_a[:3] and
            [e["data"].get("session_id") for e in rb] == new_b,
            f"V: reconnect with since {{A: {la}, B: {lb}}}: exactly A's 3 and B's 1 "
            "missed events, once each, labelled, then the live ones",
            {"A": [(e.get("seq"), e["data"].get("session_id")) for e in ra],
             "B": [(e.get("seq"), e["data"].get("session_id")) for e in rb],
             "want": [new_a, new_b]})
    C.check(not [m for _, m in ws.all if isinstance(m, dict) and
                 m.get("type") == "replay_gap"],
            "V: no replay_gap (everything missed was still held)")
    watch.close()
    f.ws.remove(watch)
    f.view = ws


# ---------------------------------------------------------------------------
# X: bad input on the channel
# ---------------------------------------------------------------------------

def phase_bad_input(f: Fleet) -> None:
    A, E, r = f.k["A"], f.k["E"], f.r
    epoch = int(time.time() * 1e6)
    n = 5  # messages per burst
    before = {name: refused(k) for name, k in f.k.items()}
    log0 = len(E.text())
    sub0 = health(E).get("sub_reconnects", 0)
    good_body = {"active_count": 999, "total_count": 999}
    # one burst per reason (each message different, so none is a duplicate)
    bursts = {
        "garbage": [("katomon:X:sessions", b"hello %d" % i) for i in range(n)] +
                   [("katomon:bad:host:sessions", signed(envelope(
                       "X", "sessions", "state", 0, epoch, good_body)))],
        "kind": [("katomon:X:sessions", signed(envelope("X", "sessions", "event", i + 1,
                                                        epoch, good_body)))
                 for i in range(n)],
        "schema": [("katomon:X:sessions", signed(envelope(
            "X", "sessions", "state", 0, epoch, {"active_count": "many", "total_count": i})))
            for i in range(n)],
        "forged": [("katomon:A:sessions", signed(envelope(
            "X", "sessions", "state", 0, epoch, dict(good_body, n=i)))) for i in range(n)],
        "bad_sig": [("katomon:A:sessions", signed(envelope(
            "A", "sessions", "state", 0, epoch, dict(good_body, n=i)), "another secret"))
            for i in range(n)] +
                   [("katomon:A:sessions", b"KM1 " + b"0" * 64 + b" " + envelope(
                       "A", "sessions", "state", 0, epoch, dict(good_body, n=i)))
                    for i in range(n)],
        "unknown_topic": [("katomon:X:no_such_topic", signed(envelope(
            "X", "no_such_topic", "state", 0, epoch, {"i": i}))) for i in range(n)],
    }
    # a replayed event: one of A's own session events as Redis carried it
    cap = capture(r, "katomon:A:session_events", lambda: f.sims["A"].create(1))
    if cap:
        bursts["stale"] = [("katomon:A:session_events", cap)] * n
    C.check(cap is not None, "X: captured one of A's session events on Redis (to replay it)")
    sent = {}
    for reason, msgs in bursts.items():
        for ch, payload in msgs:
            redis_publish(r, ch, payload)
        sent[reason] = len(msgs)

    def counted() -> bool:
        now = refused(E)
        return all(now.get(k, 0) - before["E"].get(k, 0) >= v for k, v in sent.items())
    C.check(wait_until(counted, 10), "X: E refused and counted each by reason " +
            ", ".join(f"{k} {v}" for k, v in sent.items()),
            {"before": before["E"], "now": refused(E)})
    now = refused(E)
    C.check(all(now.get(k, 0) - before["E"].get(k, 0) == v for k, v in sent.items()) and
            now.get("other", 0) == before["E"].get("other", 0),
            "X: ... exactly (nothing counted twice, nothing as \"other\")",
            {k: now.get(k, 0) - before["E"].get(k, 0) for k in REASONS})
    C.check(wait_until(lambda: refused(A).get("garbage", 0) - before["A"].get("garbage", 0)
                       >= sent["garbage"], 5),
            "X: A (a collector host, subscribing too) refused the garbage as well",
            refused(A))
    for reason in sent:
        v = metric(E, "katomon_redis_bridge_refused_total", f'reason="{reason}"')
        if not C.check(v is not None and v >= now.get(reason, 0),
                       f"X: /metrics katomon_redis_bridge_refused_total"
                       f"{{reason=\"{reason}\"}} = {v}", now):
            break
    # once per burst: one detail line per reason, then one summary
    for reason, count in sent.items():
        pat = rf"refused a message from Redis \({reason}\)"
        summ = rf"(\d+) more messages from Redis refused \({reason}\)"
        m = wait_until(lambda: (lambda xs: xs if sum(xs) >= count - 1 else None)(
            [int(x) for l in lines(E, summ) for x in re.findall(summ, l)]),
            LOG_EVERY * 3 + 2) or [int(x) for l in lines(E, summ) for x in re.findall(summ, l)]
        detail = [l for l in E.text()[log0:].splitlines() if re.search(pat, l)]
        C.check(len(detail) == 1 and sum(m or []) == count - 1,
                f"X: {reason}: logged once with its detail, then one summary of "
                f"{count - 1} more", {"detail": detail, "summaries": m})
    bus_lines = [l for l in E.text()[log0:].splitlines() if "message refused" in l]
    C.check(len(bus_lines) <= 1, "X: the bus's schema refusals are not a line per message "
            f"either ({len(bus_lines)})", bus_lines[:6])

    # none of it reached A's values on the edge
    vals = [remote_value(m, "A", "sessions") for _, m in f.view.all] if f.view else []
    C.check(not [v for v in vals if isinstance(v, dict) and v.get("active_count") == 999],
            "X: no forged value ever reached A's sessions on the edge's client")
    hv = hosts_view(E)
    C.check("X" not in hv, "X: no host X appeared on the edge (nothing of it was taken)",
            sorted(hv))

    # 10 MiB: the reader's bound drops the subscription, which comes back
    big = b"KM1 - " + b"{" + b" " * (10 << 20) + b"}"
    ov0 = refused(E).get("oversize", 0)
    redis_publish(r, "katomon:X:sessions", big)
    C.check(wait_until(lambda: refused(E).get("oversize", 0) > ov0, 15),
            "X: a 10 MiB payload: refused as oversize", refused(E))
    C.check(wait_until(lambda: health(E).get("sub_reconnects", 0) > sub0 and
                       health(E).get("subscribed") is True, RMAX + TIMEOUT + 5),
            "X: ... by dropping the subscription while it arrived; subscribed again",
            health(E))
    C.check(len(lines(E, r"refused a message from Redis \(oversize\)")) == 1,
            "X: ... logged once", lines(E, r"oversize"))
    # E still takes A's messages after all this
    mark = len(f.view.all) if f.view else 0
    f.sims["A"].create(1)
    if f.view:
        _, m = ws_find(f.view, lambda m: m.get("type") == "session_event" and
                       m.get("host") == "A", 10, mark)
        C.check(m is not None, "X: A's next event still reaches the edge's client", m)
    C.check(all(k.alive() for k in f.k.values()) and
            all(get(k, "/api/v1/topics") is not None for k in f.k.values()),
            "X: every daemon survived and answers REST")


def capture(r: Redis, channel: str, act: Callable[[], Any]) -> Optional[bytes]:
    """One payload published on channel after act(), read with a
    subscription of our own."""
    import socket
    from kmtest import RespReader, resp_encode
    s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
    try:
        rd = RespReader(s, decode=False)
        s.sendall(resp_encode("AUTH", PASSWORD) + resp_encode("SUBSCRIBE", channel))
        rd.read()
        rd.read()
        act()
        m = rd.read()
        if isinstance(m, list) and len(m) == 3 and m[0] == b"message":
            return m[2]
    except (OSError, ConnectionError, ValueError):
        pass
    finally:
        s.close()
    return None


# ---------------------------------------------------------------------------
# R: Redis killed and restarted
# ---------------------------------------------------------------------------

def phase_redis_down(f: Fleet) -> None:
    A, B, E, r = f.k["A"], f.k["B"], f.k["E"], f.r
    r.kill()
    for name, k in f.k.items():
        C.check(wait_until(lambda: source_up(k) == "0", TIMEOUT + 10),
                f'R: {name}: katomon_source_up{{source="redis"}} 0', source_up(k))
        h = health(k)
        C.check(h.get("_source", {}).get("healthy") is False and h.get("subscribed") is False,
                f"R: {name}: GET .../redis_bridge/latest: unhealthy, not subscribed", h)
    C.check(latest(A, "metrics") is not None and latest(B, "sessions") is not None,
            "R: A and B still serve their local data")
    C.check(get(E, "/api/v1/topics") is not None, "R: E still answers")
    for name in ("A", "E"):
        k = f.k[name]
        C.check(wait_until(lambda: firing(k, "source_down", "redis_bridge"), 10),
                f"R: {name}: source_down fires for the redis_bridge topic", active(k))
    # events A publishes while Redis is away are lost on the way: a gap
    seq_before = hosts_view(E).get("A", {})
    f.sims["A"].create(2)
    C.check(wait_until(lambda: health(A).get("dropped_disconnected", 0) > 0, 10),
            "R: A's bridge drops (and counts) what it cannot send", health(A))

    r.start(r.port)
    t0 = time.monotonic()
    back = wait_until(lambda: all(health(k).get("subscribed") for k in f.k.values()) and
                      all(health(f.k[n]).get("connected") for n in "AB"),
                      RMAX + TIMEOUT + 5, 0.05)
    took = time.monotonic() - t0
    C.check(back and took <= RMAX + TIMEOUT + 0.5,
            f"R: Redis back: every bridge connected and subscribed again within one "
            f"backoff step ({took:.2f} s; reconnect_max {RMAX}, timeout {TIMEOUT})",
            {n: health(k) for n, k in f.k.items()})
    if f.view:
        ws = f.view
        mark = len(ws.all)
        n_a = (latest(A, "sessions") or {}).get("active_count")
        t_e, m = ws_find(ws, lambda m: (remote_value(m, "A", "sessions") or {})
                         .get("active_count") == n_a, RMAX + TIMEOUT + 2 * INTERVAL + 2, mark)
        C.check(m is not None, f"R: the fleet view is back: A's current sessions ({n_a}, "
                "changed while Redis was away) on the edge's client", ws.all[-2:])
    f.sims["A"].create(1)  # the next event after the lost ones
    C.check(wait_until(lambda: hosts_view(E).get("A", {}).get("gaps", 0) >
                       seq_before.get("gaps", 0) and
                       hosts_view(E).get("A", {}).get("missed", 0) >=
                       seq_before.get("missed", 0) + 2, 10),
            "R: the gap is reported: GET /api/v1/hosts on E counts A's gap and the 2 "
            "events missed", {"before": seq_before, "now": hosts_view(E).get("A")})
    for name in ("A", "E"):
        k = f.k[name]
        C.check(wait_until(lambda: not firing(k, "source_down", "redis_bridge") and
                           source_up(k) == "1", 10),
                f"R: {name}: source_down resolved, source_up 1", active(k))
    # an outage longer than host_stale makes the other hosts stale: they
    # must all be up again (and host_down resolved) before D
    C.check(wait_until(lambda: all(hosts_view(E).get(n, {}).get("up") is True
                                   for n in "AB") and not firing(E, "host_down", ""), 10),
            "R: on E, A and B up again, no host_down firing",
            {"hosts": hosts_view(E), "active": active(E)})


# ---------------------------------------------------------------------------
# D: a collector host goes away and comes back
# ---------------------------------------------------------------------------

def phase_host_down(f: Fleet) -> None:
    A, B, E = f.k["A"], f.k["B"], f.k["E"]
    restarts0 = hosts_view(E).get("B", {}).get("restarts", 0)
    B.kill9()
    t0 = time.monotonic()
    for name in ("A", "E"):
        k = f.k[name]
        got = wait_until(lambda: firing(k, "host_down", "B"), STALE + 5, 0.05)
        took = time.monotonic() - t0
        C.check(got and took <= STALE + 1.0,
                f"D: {name}: host_down fires for B within host_stale ({took:.2f} s; "
                f"host_stale {STALE:g} s)", active(k))
        C.check(hosts_view(k).get("B", {}).get("up") is False,
                f"D: {name}: GET /api/v1/hosts shows B down", hosts_view(k).get("B"))
    C.check(hosts_view(E).get("A", {}).get("up") is True, "D: ... and A still up",
            hosts_view(E).get("A"))
    if not C.check(B.start(), f"D: B starts again (port {B.port})", B.text()[-2000:]):
        return
    for name in ("A", "E"):
        k = f.k[name]
        C.check(wait_until(lambda: not firing(k, "host_down", "B") and
                           hosts_view(k).get("B", {}).get("up") is True, 15),
                f"D: {name}: host_down for B resolved, B up again", active(k))
    C.check(wait_until(lambda: hosts_view(E).get("B", {}).get("restarts", 0) > restarts0, 5),
            "D: E counts B's restart (a new epoch)", hosts_view(E).get("B"))
    b = get(E, "/api/v1/alerts?type=host_down&limit=100")
    states = [a.get("state") for a in (b or {}).get("alerts", []) if "B" in json.dumps(a)]
    C.check("resolved" in states, "D: E's alert history has host_down for B resolved",
            b)


if __name__ == "__main__":
    sys.exit(main())
