#!/usr/bin/env python3
"""session_events.py - where session_events finds KATO's event stream
(issue 16): `url = ws://HOST:PORT/custom/path` is the stream itself, at
that path; `url = http://HOST:PORT/prefix` is KATO's base, the stream
below it at /prefix/ws/events.

Real sockets, the real katomon binary with this build's plugins, and
tests/sim/kato_sim.py serving the stream only at --ws-path (its
/ws/events then answers 404, as behind a reverse proxy that maps the
stream elsewhere). One "ok - ..." / "not ok - ..." line per check; exit 0
pass, 1 fail.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import WS, Checks, Katomon, Sim, base_conf, rmtree, tmpdir, wait_until  # noqa: E402

C = Checks()
W = tmpdir("km-session-events.")


def conf(url: str, sim: Sim, state: str) -> str:
    return base_conf(state) + f"""
[websocket]
update_interval = 1

[plugin kato_metrics]
url = {sim.url}
interval = 0.5
timeout = 1

[plugin session_events]
url = {url}
retry = 1
"""


def requests_at(sim: Sim, path: str) -> int:
    req = sim.ctl("state").get("requests", {})
    return sum(v.get("count", 0) for k, v in req.items() if k.endswith(path))


def stream_events(name: str, url: str, sim: Sim) -> None:
    """katomon with session_events at url: a session created on the
    simulator arrives as a session_event from the stream."""
    state = os.path.join(W, name)
    os.makedirs(state, exist_ok=True)
    k = Katomon(W, name, conf(url, sim, state))
    if not C.check(k.start(), f"{name}: katomon starts", k.text()[-3000:]):
        return
    try:
        C.check(k.wait_log(r"following KATO /ws/events at " + url.replace(".", r"\.")
                           .replace("http", "ws"), 10) is not None,
                f"{name}: session_events follows the stream at {url}", k.text()[-2000:])
        ws = WS(k.port)
        ws.send({"type": "subscribe", "protocol": "katomon/1",
                 "subscriptions": ["session_events"]})
        C.check(ws.next_type("subscription_ack", 5) is not None, f"{name}: subscribed")
        created = sim.create(1)
        ev = ws.next_type("session_event", 5, lambda m: m.get("data", {}).get("source") ==
                          "stream")
        C.check(ev is not None and ev["data"].get("session_id") == created[0],
                f"{name}: the created session arrives from the stream", ev)
        ws.close()
    finally:
        ok, why = k.stop()
        C.check(ok, f"{name}: katomon stops cleanly", why)


def main() -> int:
    sim = Sim(W, ["--ws-path", "/custom/path"])
    if not C.check(sim.start(), "the KATO simulator starts (stream at /custom/path)"):
        return C.done()
    try:
        # the stream's own url, any path: connected there, not to /ws/events
        stream_events("ws-url", f"ws://127.0.0.1:{sim.port}/custom/path", sim)
        C.check(requests_at(sim, "/ws/events") == 0,
                "ws-url: nothing asked for /ws/events", sim.ctl("state").get("requests"))
        # a base url: the stream below its path; /custom/path/ws/events is not
        # served here, so session_events says so and keeps retrying
        state = os.path.join(W, "base")
        os.makedirs(state, exist_ok=True)
        k = Katomon(W, "base", conf(f"http://127.0.0.1:{sim.port}/custom/path", sim, state))
        if C.check(k.start(), "base-url: katomon starts", k.text()[-3000:]):
            C.check(k.wait_log(r"/ws/events .*retrying", 10) is not None,
                    "base-url: the stream is PREFIX/ws/events (here: not served, retried)",
                    k.text()[-2000:])
            ok, why = k.stop()
            C.check(ok, "base-url: katomon stops cleanly", why)
        # a url that is neither: refused at start, saying what it takes
        k = Katomon(W, "bad", conf("ftp://127.0.0.1/x", sim, state))
        k.start(10)
        C.check(wait_until(lambda: "neither http(s)://" in k.text(), 10),
                "a ftp:// url is refused, naming both forms", k.text()[-2000:])
        k.stop()
    finally:
        sim.stop()
    rmtree(W)
    return C.done()


if __name__ == "__main__":
    sys.exit(main())
