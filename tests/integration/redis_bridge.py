#!/usr/bin/env python3
"""redis_bridge.py - the publishing half of the redis_bridge plugin
(issue 15) against a real redis-server and the KATO simulator (the
subscribing half and three hosts: fleet.py).

Real sockets, the real katomon binary ($top_builddir/katomon) with the
plugins of this build ($PLUGIN_BUILD_DIR), tests/sim/kato_sim.py and a
private redis-server with a password (kmtest.Redis), each on an ephemeral
port. A RESP client PSUBSCRIBEs katomon:* and reads what the bridge
publishes. One "ok - ..." / "not ok - ..." line per check; exit 0 pass,
1 fail, 77 skip (no redis-server).

Covered:
  A  channels katomon:HOST:metrics, :sessions, :kato_health,
     :session_events; never the bridge's own redis_bridge topic
  B  payload "KM1 SIG JSON": SIG verifies with Python's hmac and the
     shared secret; the envelope's keys exactly, v, host, topic (= the
     channel's), kind, seq (0 on state; increasing on session_events),
     epoch (= GET /api/v1/topics' epoch), time; body equal to what REST
     serves for the topic (GET /api/v1/topics/NAME/latest)
  C  the health topic: connected and subscribed, counters, _source
     healthy; our own messages coming back on the subscription are neither
     received nor refused; GET /metrics
     katomon_source_up{source="redis",topic="redis_bridge"} 1
  D  redis-server killed: katomon stays up and REST serves; source_up 0
     within a deadline, _source says why for both connections,
     dropped_disconnected grows
  E  redis-server restarted on the same port: the bridge reconnects within
     reconnect_max (plus the timeout), reconnects counted (both
     connections), publishing resumes, source_up 1 again
and at the end: exit status 0 on SIGTERM and no sanitizer report on stderr.
Waits are deadline polls; nothing depends on the jitter's value.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import queue
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import (Checks, Katomon, Redis, RespReader, Sim, base_conf, env,  # noqa: E402
                    is_int, resp_encode, rmtree, tmpdir, wait_until)

C = Checks()
W = tmpdir("km-redis-bridge.")
HOST = "km-test-1.example"
SECRET = "bridge secret/+ 1"
PASSWORD = "p@ss/word+1"
RECONNECT_MAX = 2.0
TIMEOUT = 1.0
ENVELOPE_KEYS = {"v", "host", "topic", "kind", "seq", "epoch", "time", "body"}
SOURCE_UP = re.compile(r'^katomon_source_up\{([^}]*)\} (\S+)$', re.M)


class Subscriber:
    """PSUBSCRIBE katomon:* on its own connection; a reader thread queues
    (channel, payload bytes) until Redis closes the connection."""

    def __init__(self, r: Redis) -> None:
        self.sock = socket.create_connection(("127.0.0.1", r.port), timeout=5)
        self.reader = RespReader(self.sock, decode=False)
        self.sock.sendall(resp_encode("AUTH", r.password))
        ok = self.reader.read()
        if ok != b"OK" and ok != "OK":
            raise RuntimeError(f"AUTH: {ok!r}")
        self.sock.sendall(resp_encode("PSUBSCRIBE", "katomon:*"))
        self.reader.read()  # ["psubscribe", "katomon:*", 1]
        self.sock.settimeout(None)
        self.q: "queue.Queue[tuple[str, bytes]]" = queue.Queue()
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self) -> None:
        try:
            while True:
                m = self.reader.read()
                if isinstance(m, list) and len(m) == 4 and m[0] == b"pmessage":
                    self.q.put((m[2].decode(), m[3]))
        except (OSError, ConnectionError, ValueError):
            pass

    def collect(self, until, timeout: float) -> list:
        """Reads messages until until(list) is true or the deadline."""
        got: list = []
        end = time.monotonic() + timeout
        while time.monotonic() < end and not until(got):
            try:
                got.append(self.q.get(timeout=0.1))
            except queue.Empty:
                pass
        return got

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def decode(payload: bytes) -> tuple[str, bytes, object]:
    """(sig, json bytes, parsed) of "KM1 SIG JSON"; raises ValueError."""
    if not payload.startswith(b"KM1 "):
        raise ValueError("no KM1")
    sig, _, js = payload[4:].partition(b" ")
    return sig.decode(), js, json.loads(js)


def signed_ok(sig: str, js: bytes) -> bool:
    want = hmac.new(SECRET.encode(), js, hashlib.sha256).hexdigest()
    return hmac.compare_digest(sig, want)


def source_up(k: Katomon) -> str | None:
    st, text = k.get("/metrics")
    if st != 200 or not isinstance(text, str):
        return None
    for labels, value in SOURCE_UP.findall(text):
        if 'source="redis"' in labels and 'topic="redis_bridge"' in labels:
            return value
    return None


def health(k: Katomon) -> dict:
    st, body = k.get("/api/v1/topics/redis_bridge/latest")
    return body if st == 200 and isinstance(body, dict) else {}


def main() -> int:
    Redis.skip_unless_available()
    sim = Sim(W)
    r = None
    k = None
    subs: list = []
    try:
        if not C.check(sim.start(), "the KATO simulator starts"):
            return C.done()
        r = Redis(password=PASSWORD, workdir=W)
        C.ok(f"redis-server with a password on 127.0.0.1:{r.port}")
        conf = base_conf(W).replace("[core]\n", f"[core]\nhost_name = {HOST}\n", 1) + f"""
[plugin kato_metrics]
url = {sim.url}
interval = 0.5
timeout = 1

[plugin session_events]
url = {sim.url}
retry = 1

[plugin redis_bridge]
url = {r.url}
secret = {SECRET}
timeout = {TIMEOUT}
reconnect_min = 0.2
reconnect_max = {RECONNECT_MAX}
"""
        k = Katomon(W, "bridge", conf)
        if not C.check(k.start(), "katomon starts with kato_metrics, session_events and "
                       "redis_bridge", k.text()[-3000:]):
            return C.done()
        run(k, sim, r, subs)
        good, detail = k.stop()
        C.check(good, "SIGTERM -> exit status 0, no sanitizer report", detail)
    finally:
        for s in subs:
            s.close()
        if k and k.alive():
            k.kill9()
        if r:
            r.close()
        sim.stop()
        rmtree(W)
    return C.done()


def run(k: Katomon, sim: Sim, r: Redis, subs: list) -> None:
    sub = Subscriber(r)
    subs.append(sub)
    want = {f"katomon:{HOST}:{t}" for t in ("metrics", "sessions", "kato_health")}

    # ---- A, B: channels and envelopes -------------------------------------
    got = sub.collect(lambda g: want <= {c for c, _ in g}, 15)
    chans = {c for c, _ in got}
    C.check(want <= chans, "A: channels katomon:HOST:metrics, :sessions, :kato_health",
            sorted(chans))
    # one event per session needs KATO's stream (counts alone may fold three into one)
    C.check(k.wait_log(r"following KATO /ws/events", 10) is not None,
            "session_events follows KATO's /ws/events", k.text()[-2000:])
    sim.create(3)  # session_events: three created events
    ev_chan = f"katomon:{HOST}:session_events"
    got += sub.collect(lambda g: sum(c == ev_chan for c, _ in g) >= 3, 15)
    C.check(sum(c == ev_chan for c, _ in got) >= 3, "A: session_events on its channel",
            sorted({c for c, _ in got}))
    C.check(f"katomon:{HOST}:redis_bridge" not in {c for c, _ in got},
            "A: the bridge's own topic is not published (topics = *)")

    st, topics = k.get("/api/v1/topics")
    epoch = topics.get("epoch") if st == 200 else None
    problems = []
    last: dict = {}
    seqs: list = []
    now_us = time.time() * 1e6
    for chan, payload in got:
        try:
            sig, js, env_ = decode(payload)
        except ValueError as e:
            problems.append(f"{chan}: {e}: {payload[:100]!r}")
            continue
        topic = chan.split(":")[2]
        if not signed_ok(sig, js):
            problems.append(f"{chan}: HMAC does not verify: {sig}")
        if not isinstance(env_, dict) or set(env_) != ENVELOPE_KEYS:
            problems.append(f"{chan}: keys {sorted(env_) if isinstance(env_, dict) else env_}")
            continue
        kind = "event" if topic == "session_events" else "state"
        if (env_["v"] != 1 or env_["host"] != HOST or env_["topic"] != topic or
                env_["kind"] != kind or env_["epoch"] != epoch or
                not is_int(env_["time"]) or abs(env_["time"] - now_us) > 120e6 or
                not isinstance(env_["body"], dict)):
            problems.append(f"{chan}: {json.dumps(env_)[:300]}")
        if kind == "state" and env_["seq"] != 0:
            problems.append(f"{chan}: state seq {env_['seq']}")
        if kind == "event":
            seqs.append(env_["seq"])
        last[topic] = env_["body"]
    C.check(not problems and len(got) > 0,
            f"B: {len(got)} payloads KM1 SIG JSON: HMAC verifies (Python hmac), envelope "
            "keys, v, host, topic, kind, epoch = GET /api/v1/topics' epoch, time", problems[:5])
    C.check(len(seqs) >= 3 and all(is_int(s) and s >= 1 for s in seqs) and
            all(b > a for a, b in zip(seqs, seqs[1:])),
            "B: session_events seqs >= 1 and increasing", seqs)

    # the body is what REST serves for the topic (the latest value; the
    # bridge sends each new one, so REST's must be among those received)
    def body_matches(topic: str) -> bool:
        bodies = [decode(p)[2]["body"] for c, p in got if c.endswith(":" + topic)]
        st, latest = k.get(f"/api/v1/topics/{topic}/latest")
        if st == 200 and latest in bodies:
            return True
        got.extend(sub.collect(lambda g: False, 0.3))
        return False
    for topic in ("metrics", "sessions"):
        C.check(wait_until(lambda: body_matches(topic), 10),
                f"B: body = GET /api/v1/topics/{topic}/latest", last.get(topic))

    # ---- C: health ---------------------------------------------------------
    h = wait_until(lambda: (lambda v: v if v.get("published", 0) > 0 else None)(health(k)),
                   10) or health(k)
    C.check(h.get("connected") is True and h.get("published", 0) > 0 and
            h.get("host") == HOST and h.get("prefix") == "katomon" and
            h.get("_source", {}).get("healthy") is True and
            PASSWORD not in json.dumps(h),
            "C: redis_bridge topic: connected, published > 0, _source healthy, no "
            "password in it", h)
    h = wait_until(lambda: (lambda v: v if v.get("subscribed") else None)(health(k)),
                   10) or health(k)
    refused = {x.get("reason"): x.get("count") for x in h.get("refused", [])
               if isinstance(x, dict)}
    C.check(h.get("publish") is True and h.get("subscribe") is True and
            h.get("subscribed") is True and h.get("received") == 0 and
            set(refused) >= {"garbage", "oversize", "bad_sig", "forged", "unknown_topic",
                             "schema", "kind", "stale", "hosts_full", "other"} and
            not any(refused.values()),
            "C: subscribed too; its own messages coming back are neither received nor "
            "refused", h)
    C.check(wait_until(lambda: source_up(k) == "1", 10),
            'C: GET /metrics katomon_source_up{source="redis",topic="redis_bridge"} 1')
    st, text = k.get("/metrics")
    C.check(st == 200 and "katomon_redis_bridge_published_total" in str(text) and
            "katomon_redis_bridge_dropped_disconnected_total" in str(text),
            "C: /metrics has katomon_redis_bridge_*_total counters",
            [l for l in str(text).splitlines() if "redis_bridge" in l][:10])

    # ---- D: Redis killed ---------------------------------------------------
    r.kill()
    C.check(wait_until(lambda: source_up(k) == "0", TIMEOUT + 10),
            'D: Redis killed -> katomon_source_up{source="redis",topic="redis_bridge"} 0')
    h1 = health(k)
    h1 = wait_until(lambda: (lambda v: v if v.get("subscribed") is False and
                             "subscribe:" in str(v.get("_source", {}).get("error"))
                             else None)(health(k)), 10) or health(k)
    C.check(h1.get("connected") is False and h1.get("subscribed") is False and
            h1.get("_source", {}).get("healthy") is False and
            "publish:" in str(h1.get("_source", {}).get("error")) and
            "subscribe:" in str(h1.get("_source", {}).get("error")),
            "D: health: connected and subscribed false, _source says why for each", h1)
    d0 = h1.get("dropped_disconnected", 0)
    C.check(wait_until(lambda: health(k).get("dropped_disconnected", 0) > d0, 15),
            "D: dropped_disconnected grows while Redis is down",
            [d0, health(k).get("dropped_disconnected")])
    st, body = k.get("/api/v1/topics/metrics/latest")
    C.check(k.alive() and st == 200 and isinstance(body, dict),
            "D: katomon stays up and REST still serves its local data", [st, k.alive()])
    C.check("redis_bridge" in k.text() and "retrying" in k.text(),
            "D: the loss is logged once with the retry", k.text()[-1500:])

    # ---- E: Redis back on the same port ------------------------------------
    r.start(r.port)
    t0 = time.monotonic()
    sub2 = Subscriber(r)
    subs.append(sub2)
    back = wait_until(lambda: health(k).get("connected") is True, RECONNECT_MAX + TIMEOUT + 5)
    took = time.monotonic() - t0
    C.check(back and took < RECONNECT_MAX + TIMEOUT + 5,
            f"E: Redis restarted -> the bridge reconnects ({took:.1f} s; reconnect_max "
            f"{RECONNECT_MAX})", health(k))
    C.check(wait_until(lambda: health(k).get("reconnects", 0) >= 1 and
                       health(k).get("sub_reconnects", 0) >= 1 and
                       health(k).get("subscribed") is True, 10),
            "E: reconnects counted (publishing and subscribing), subscribed again",
            health(k))
    got2 = sub2.collect(lambda g: any(c == f"katomon:{HOST}:metrics" for c, _ in g), 10)
    C.check(any(c == f"katomon:{HOST}:metrics" and signed_ok(*decode(p)[:2]) for c, p in got2),
            "E: publishing resumes (signed metrics on the new subscription)",
            [c for c, _ in got2][:10])
    C.check(wait_until(lambda: source_up(k) == "1", 15),
            'E: katomon_source_up{source="redis",topic="redis_bridge"} 1 again')
    C.check(k.alive(), "E: katomon still running")


if __name__ == "__main__":
    sys.exit(main())
