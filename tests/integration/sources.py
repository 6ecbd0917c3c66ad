#!/usr/bin/env python3
"""sources.py - sources that go away are noticed (issue 16, point 1).

The built-in source_down rule against real parts: the KATO simulator
(tests/sim/kato_sim.py) and Debian's dockerd reached through a unix-socket
relay this test owns (stopping the relay is the socket going dead; the
engine itself is shared with other tests and stays up). Checked, for each
source:
  - stopped: a source_down alert (level error, with the reason) reaches a
    katomon/1 WebSocket client and the alert history within two intervals
    of the stop (the time is measured and printed);
  - `katomon_source_up{source=...}` is 0 on /metrics meanwhile;
  - back: the alert resolves within two intervals, source_up 1 again;
and katomon exits 0 on SIGTERM with no sanitizer report. Not root (no
dockerd to reach): exit 77, saying so, like docker.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import (WS, Checks, Katomon, Sim, base_conf, env, rmtree, tmpdir,  # noqa: E402
                    wait_until)

C = Checks()
W = tmpdir("km-sources.")
KATO_INTERVAL = 0.5    # [plugin kato_metrics] interval
DOCKER_INTERVAL = 1.0  # [plugin docker_stats] interval
DOCKER_SOCK = "/var/run/docker.sock"


class Relay:
    """A unix socket at `path` relaying every connection to dockerd's."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.srv: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()

    def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(64)
        threading.Thread(target=self._accept, args=(self.srv,), daemon=True).start()

    def stop(self) -> None:
        """The socket goes dead: listener and every relayed connection."""
        srv, self.srv = self.srv, None
        if srv:
            srv.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self.conns.clear()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                a, _ = srv.accept()
            except OSError:
                return
            b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                b.connect(DOCKER_SOCK)
            except OSError:
                a.close()
                continue
            with self.lock:
                self.conns += [a, b]
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(x, y), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def conf(sim: Sim, relay: str, state: str) -> str:
    return base_conf(state) + f"""
[websocket]
update_interval = 1

[plugin kato_metrics]
url = {sim.url}
interval = {KATO_INTERVAL}
timeout = 0.5

[plugin docker_stats]
socket = {relay}
interval = {DOCKER_INTERVAL}
timeout = 1
containers = *

[plugin alert_manager]
sync_interval = 0.5
"""


def source_up(k: Katomon, source: str, topic: str) -> float | None:
    st, text = k.get("/metrics")
    if st != 200 or not isinstance(text, str):
        return None
    want = f'katomon_source_up{{source="{source}",topic="{topic}"}} '
    for line in text.splitlines():
        if line.startswith(want):
            return float(line.split()[-1])
    return None


def alert_of(m: object, topic: str, state: str) -> dict | None:
    """The source_down item about `topic` in state `state` of a system_alert."""
    if not isinstance(m, dict) or m.get("type") != "system_alert":
        return None
    for a in m.get("alerts", []):
        if a.get("type") == "source_down" and a.get("topic") == topic and \
                a.get("state") == state:
            return a
    return None


def history_has(k: Katomon, topic: str, state: str) -> bool:
    st, body = k.get("/api/v1/alerts?type=source_down")
    return st == 200 and any(a.get("topic") == topic and a.get("state") == state
                             for a in body.get("alerts", []))


def outage(k: Katomon, ws: WS, name: str, source: str, topic: str, interval: float,
           stop, start) -> None:
    """Stops a source, expects source_down within two intervals; starts it
    again, expects the resolution within two intervals."""
    ws.drain()
    stop()
    t0 = time.monotonic()
    m = ws.next_match(lambda m: alert_of(m, topic, "firing") is not None, 2 * interval + 5)
    took = time.monotonic() - t0
    a = alert_of(m, topic, "firing") if m else None
    C.check(a is not None and took <= 2 * interval + 0.5,
            f"{name} stopped: source_down for {topic} at the client in {took:.2f} s "
            f"(two intervals: {2 * interval:g} s)", m)
    if a:
        C.check(a.get("level") == "error" and a.get("error") and
                a["error"] in a.get("message", ""),
                f"{name}: level error, the reason in the message ({a.get('message')!r})", a)
    C.check(wait_until(lambda: history_has(k, topic, "firing"), 5),
            f"{name}: source_down for {topic} in the alert history", k.get("/api/v1/alerts")[1])
    C.check(wait_until(lambda: source_up(k, source, topic) == 0, 5),
            f'{name}: katomon_source_up{{source="{source}",topic="{topic}"}} 0')
    ws.drain()
    start()
    t0 = time.monotonic()
    m = ws.next_match(lambda m: alert_of(m, topic, "resolved") is not None, 2 * interval + 10)
    took = time.monotonic() - t0
    C.check(m is not None and took <= 2 * interval + 2.0,
            f"{name} back: source_down for {topic} resolved in {took:.2f} s", m)
    C.check(wait_until(lambda: history_has(k, topic, "resolved"), 5),
            f"{name}: the resolution in the alert history")
    C.check(wait_until(lambda: source_up(k, source, topic) == 1, 5),
            f'{name}: katomon_source_up{{source="{source}",topic="{topic}"}} 1 again')


def main() -> int:
    if os.geteuid() != 0:
        print("# SKIP: not root: no dockerd to reach (tests/docker/setup.sh needs root)")
        return 77
    setup = os.path.join(env("top_srcdir"), "tests", "docker", "setup.sh")
    r = subprocess.run([setup], capture_output=True, text=True)
    if not C.check(r.returncode == 0, "dockerd is up (tests/docker/setup.sh)",
                   r.stdout[-2000:] + r.stderr[-2000:]):
        return C.done()
    sim = Sim(W)
    if not C.check(sim.start(), "the KATO simulator starts"):
        return C.done()
    port = sim.port
    relay = Relay(os.path.join(W, "docker.sock"))
    relay.start()
    state = os.path.join(W, "state")
    os.makedirs(state)
    k = Katomon(W, "k", conf(sim, relay.path, state))
    try:
        if not C.check(k.start(), "katomon starts", k.text()[-3000:]):
            return C.done()
        ws = WS(k.port)
        ws.send({"type": "subscribe", "protocol": "katomon/1",
                 "subscriptions": ["system_alerts"]})
        C.check(ws.next_type("subscription_ack", 5) is not None, "subscribed to system_alerts")
        C.check(wait_until(lambda: source_up(k, "kato", "metrics") == 1 and
                           source_up(k, "docker", "containers") == 1, 15),
                "both sources up at first", (source_up(k, "kato", "metrics"),
                                             source_up(k, "docker", "containers")))

        def sim_start() -> None:
            s = Sim(W, ["--port", str(port)])
            C.check(s.start() and s.port == port, f"the simulator is back on port {port}")
            nonlocal_sims.append(s)
        nonlocal_sims: list[Sim] = []
        outage(k, ws, "KATO", "kato", "metrics", KATO_INTERVAL, sim.stop, sim_start)
        outage(k, ws, "Docker", "docker", "containers", DOCKER_INTERVAL, relay.stop,
               relay.start)
        ws.close()
    finally:
        ok, why = k.stop()
        C.check(ok, "katomon stops cleanly", why)
        relay.stop()
        sim.stop()
        for s in locals().get("nonlocal_sims", []):
            s.stop()
    rmtree(W)
    return C.done()


if __name__ == "__main__":
    sys.exit(main())
