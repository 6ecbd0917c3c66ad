#!/usr/bin/env python3
"""frontend.py - katomon against a client that behaves like the unchanged
KATO Dashboard v0.3.7 frontend, and against katomon's own dialect.

The original frontend shares ONE WebSocket between three React components
that each re-send their subscribe set on every render, and every message
the page receives renders them again (../shared/reference/
kato-dashboard-protocol.md, "Client -> server"). This test plays that page:

  - one socket; three "components" with the sets [system_alerts],
    [metrics, containers, system_alerts] and [sessions, session_events];
  - after every message received, each component re-sends its set; a
    "render timer" also re-sends all three every 10 ms (300 subscribes/s),
    for more than 20 update intervals;
  - meanwhile the KATO simulator creates and destroys sessions (katomon
    follows KATO's /ws/events) and its error rate fires, escalates and
    resolves the high_error_rate alert.

It asserts: zero frames sent in reply to a subscribe (the realtime_update
count follows the timer, the server counts no reply frame), zero closes,
every session event and every alert transition exactly once, the union's
state topics in every realtime_update, resolved notices as level info.

A second client in the same run speaks katomon/1 ("protocol":"katomon/1"):
it still gets subscription_ack (epoch, last_seq), trimming, seq, "state":
"resolved", and an exact `since` replay after reconnecting.

Run by `make check` (needs top_srcdir, PLUGIN_BUILD_DIR).
"""

from __future__ import annotations

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import (Checks, Katomon, Sim, WS, base_conf, rmtree, shipped_alert_rules,  # noqa: E402
                    tmpdir, wait_until)

C = Checks()
W = tmpdir("km-frontend.")
INTERVAL = 0.5  # [websocket] update_interval
RUN_INTERVALS = 24  # more than the 20 the issue asks for

LAYOUT = {"type": "subscribe", "subscriptions": ["system_alerts"]}
DASHBOARD = {"type": "subscribe", "subscriptions": ["metrics", "containers", "system_alerts"]}
SESSIONS = {"type": "subscribe", "subscriptions": ["sessions", "session_events"]}
UNION_STATE = {"metrics", "containers", "sessions"}


def config(sim: Sim) -> str:
    return base_conf(f"{W}/state") + f"""
[websocket]
update_interval = {INTERVAL}

[plugin host_stats]
interval = 1

[plugin kato_metrics]
url = {sim.url}
interval = 0.25
timeout = 1

[plugin session_events]
url = {sim.url}
retry = 1

[plugin docker_stats]
socket = {W}/no-docker.sock
interval = 1
events = false

[plugin alert_manager]
sync_interval = 0.5

; no Docker here on purpose: its built-in source_down alert would be an
; event before the test's own
[alert source_down]
enabled = false

{shipped_alert_rules()}
"""


class Page:
    """The original frontend's page: one socket, three components."""

    def __init__(self, port: int) -> None:
        self.ws = WS(port)
        self.sent = 0
        self.stop = threading.Event()
        self.send_lock = threading.Lock()
        self.render_all()  # on open, every component subscribes
        self.timer = threading.Thread(target=self._render_timer, daemon=True)
        self.timer.start()

    def render_all(self) -> None:
        with self.send_lock:
            for s in (LAYOUT, DASHBOARD, SESSIONS):
                self.ws.send(s)
                self.sent += 1

    def _render_timer(self) -> None:
        while not self.stop.wait(0.01):
            if self.ws.closed:
                return
            try:
                self.render_all()
            except OSError:
                return

    def run(self, seconds: float) -> list:
        """Every message for `seconds`, re-rendering after each."""
        got, end = [], time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            m = self.ws.next(left)
            if m is None:
                if self.ws.closed:
                    break
                continue
            got.append(m)
            try:
                self.render_all()
            except OSError:
                break
        return got


def main() -> int:
    sim = Sim(W)
    k = None
    try:
        if not C.check(sim.start(), "the KATO simulator starts"):
            return C.done()
        k = Katomon(W, "frontend", config(sim))
        if not C.check(k.start(), f"katomon starts (port {k.port})", k.text()[-3000:]):
            return C.done()
        C.check(k.wait_log(r"following KATO /ws/events", 10) is not None,
                "session_events follows KATO's /ws/events", k.text()[-2000:])
        return scenario(sim, k)
    finally:
        if k is not None and k.alive():
            good, detail = k.stop()
            C.check(good, "katomon: SIGTERM -> exit status 0, no sanitizer report", detail)
        sim.stop()
        if C.failed == 0:
            rmtree(W)
        else:
            C.note(f"kept {W} for inspection")


def ws_stats(k: Katomon) -> dict:
    st, body = k.get("/api/v1/ws/subscriptions")
    return body if st == 200 else {}


def scenario(sim: Sim, k: Katomon) -> int:
    # katomon/1 client: subscribes once, like web/ does
    kw = WS(k.port)
    kw.send({"type": "subscribe", "protocol": "katomon/1",
             "subscriptions": ["metrics", "session_events", "system_alerts"]})
    ack = kw.next_type("subscription_ack", 3)
    C.check(isinstance(ack, dict) and isinstance(ack.get("epoch"), int) and
            ack.get("last_seq") == {"session_events": 0, "system_alerts": 0},
            "katomon/1: subscription_ack with epoch and last_seq per event topic", ack)
    ru = kw.next_type("realtime_update", 3)
    C.check(isinstance(ru, dict) and set(ru["data"]) == {"metrics"},
            "katomon/1: an immediate realtime_update, trimmed to metrics", ru)

    page = Page(k.port)
    t0 = time.monotonic()
    before = ws_stats(k)

    # the world changes while the page renders
    created: list = []
    destroyed: list = []

    def destroy(ids: list) -> None:
        sim.destroy(session_ids=ids)
        destroyed.extend(ids)

    plan = [
        (1.0, lambda: created.extend(sim.create(2))),
        (2.0, lambda: sim.set(error_rate=0.07)),   # high_error_rate: warning
        (3.0, lambda: destroy(created[:1])),
        (4.5, lambda: sim.set(error_rate=0.12)),   # escalates to error
        (5.5, lambda: created.extend(sim.create(3))),
        (7.0, lambda: sim.set(error_rate=0.0)),    # resolves
        (8.5, lambda: destroy(created[1:3])),
    ]
    got: list = []
    for at, act in plan:
        got += page.run(max(0.0, t0 + at - time.monotonic()))
        act()
    got += page.run(max(0.0, t0 + RUN_INTERVALS * INTERVAL - time.monotonic()))
    # let the last events arrive, then a text ping as the frontend sends every 30 s
    got += page.run(1.0)
    page.ws.send("ping")
    got += page.run(1.0)
    elapsed = time.monotonic() - t0
    page.stop.set()
    page.timer.join(2)
    after = ws_stats(k)

    # ---- the compatible page --------------------------------------------------
    C.check(not page.ws.closed and page.ws.close_code is None,
            f"the page's socket stayed open for {elapsed:.1f} s "
            f"({elapsed / INTERVAL:.0f} update intervals)", page.ws.close_code)
    C.check(page.sent >= 300 * 10, f"the page sent {page.sent} subscribes "
            f"({page.sent / elapsed:.0f} per second)", page.sent)
    types: dict = {}
    for m in got:
        t = m.get("type") if isinstance(m, dict) else repr(m)
        types[t] = types.get(t, 0) + 1
    C.check(set(types) <= {"realtime_update", "session_event", "system_alert", "heartbeat"},
            "only the original's message types reach the page (no ack, no error, no replay_gap)",
            types)
    rus = [m for m in got if isinstance(m, dict) and m.get("type") == "realtime_update"]
    ticks = elapsed / INTERVAL
    C.check(0.6 * ticks <= len(rus) <= ticks + 2,
            f"{len(rus)} realtime_update in {elapsed:.1f} s: one per tick ({ticks:.0f}), "
            "none in reply to a subscribe", types)
    bad = [sorted(m["data"]) for m in rus if set(m["data"]) != UNION_STATE]
    C.check(not bad, "every realtime_update holds exactly the union's state topics "
            "(metrics, containers, sessions)", bad[:5])
    C.check(types.get("heartbeat") == 1, "text ping -> exactly one heartbeat", types)
    leaked = [m for m in got if isinstance(m, dict) and "seq" in m]
    C.check(not leaked, "no katomon seq on the page's events", leaked[:2])

    clients = {c["id"]: c for c in after.get("clients", [])}
    me = [c for c in clients.values() if c.get("dialect") == "compatible"]
    C.check(len(me) == 1 and sorted(me[0]["topics"]) ==
            sorted({"system_alerts", "metrics", "containers", "sessions", "session_events"}),
            "the server holds the union of the three sets for the page", me)
    sb, sa = before.get("stats", {}), after.get("stats", {})
    private = sa.get("private_frames", 0) - sb.get("private_frames", 0)
    C.check(private == 1, "the server sent the page exactly one one-client frame (the "
            "heartbeat): zero in reply to subscribes", {"private_frames": private})
    unchanged = sa.get("subscribes_unchanged", 0) - sb.get("subscribes_unchanged", 0)
    C.check(unchanged >= page.sent - 10, f"{unchanged} of {page.sent} subscribes recognised "
            "as unchanged (no parse, no allocation, no send)", sa)
    C.check(sa.get("closed_protocol", 0) == sb.get("closed_protocol", 0), "zero closes", sa)
    if me:
        # the server may have sent one more update while its counters were
        # read: everything it counted must arrive, and nothing it did not
        sent = me[0]["frames_out"]
        late: list = []
        wait_until(lambda: late.extend(page.ws.drain()) or len(got) + len(late) >= sent, 3)
        C.check(len(got) <= sent <= len(got) + len(late), "frames the server sent the page = "
                "messages it received", {"server": sent, "page": len(got), "after": len(late)})

    # session events: every one, exactly once
    sev = [m for m in got if isinstance(m, dict) and m.get("type") == "session_event"]
    seen = [(m["event_type"], m["data"].get("session_id")) for m in sev]
    want = [("session_created", s) for s in created] + \
        [("session_destroyed", s) for s in destroyed]
    C.check(len(created) == 5 and len(destroyed) == 3, "the simulator created 5 sessions and "
            "destroyed 3", [created, destroyed])
    C.check(sorted(seen) == sorted(want) and len(seen) == len(set(seen)),
            f"every session event exactly once ({len(want)})", {"got": seen, "want": want})

    # alerts: every transition, exactly once, resolved as info
    items = [a for m in got if isinstance(m, dict) and m.get("type") == "system_alert"
             for a in m.get("alerts", [])]
    err = [a for a in items if a.get("type") == "high_error_rate"]
    st, hist = k.get("/api/v1/alerts?type=high_error_rate&limit=1000")
    want_ids = sorted(a["id"] for a in hist.get("alerts", [])) if st == 200 else None
    C.check(want_ids is not None and sorted(a.get("id") for a in err) == want_ids,
            "every high_error_rate transition in katomon's history reached the page exactly once",
            {"page": [(a.get("id"), a.get("level")) for a in err], "history": want_ids})
    levels = [a.get("level") for a in err]
    C.check(levels[:2] == ["warning", "error"] and len(levels) == 3,
            "fired (warning), escalated (error), resolved: three transitions", levels)
    res = err[-1] if err else {}
    C.check(res.get("level") == "info" and "resolved" in res.get("message", "") and
            "state" not in res, "the resolved notice: level info, a message that says resolved, "
            "no katomon state", res)

    # ---- the katomon/1 client in the same run ------------------------------------
    kgot = kw.drain()
    kev = [m for m in kgot if isinstance(m, dict) and m.get("type") == "session_event"]
    kal = [m for m in kgot if isinstance(m, dict) and m.get("type") == "system_alert"]
    C.check([m.get("seq") for m in kev] == list(range(1, len(want) + 1)),
            "katomon/1: every session event with seq 1..N", [m.get("seq") for m in kev])
    kres = [a for m in kal for a in m["alerts"] if a.get("state") == "resolved"]
    C.check(len(kres) == 1 and kres[0].get("level") in ("warning", "error"),
            "katomon/1: the resolved alert keeps its level with state resolved", kres)
    kru = [m for m in kgot if isinstance(m, dict) and m.get("type") == "realtime_update"]
    C.check(kru and all(set(m["data"]) == {"metrics"} for m in kru),
            "katomon/1: realtime_update trimmed to its set", [sorted(m["data"]) for m in kru[:3]])
    # reconnect with since: exactly what was missed
    last = kev[1]["seq"] if len(kev) > 1 else 0
    kw.close()
    kw = WS(k.port)
    kw.send({"type": "subscribe", "protocol": "katomon/1", "subscriptions": ["session_events"],
             "since": {"session_events": last}})
    ack = kw.next_type("subscription_ack", 3)
    C.check(isinstance(ack, dict) and ack.get("last_seq", {}).get("session_events") == len(want),
            "katomon/1 reconnect: the ack says where the topic stands", ack)
    replay = []
    wait_until(lambda: replay.extend(m for m in kw.drain() if isinstance(m, dict) and
                                     m.get("type") == "session_event") or
               len(replay) >= len(want) - last, 3)
    C.check([m.get("seq") for m in replay] == list(range(last + 1, len(want) + 1)),
            f"katomon/1: since {last} replays exactly seq {last + 1}..{len(want)}",
            [m.get("seq") for m in replay])
    kw.send({"type": "subscribe", "subscriptions": ["nope!"]})
    e = kw.next_type("error", 3)
    C.check(isinstance(e, dict) and e.get("error") == "bad_request",
            "katomon/1 (declared once, for the connection): a bad subscribe gets an error", e)
    kw.close()
    page.ws.close()
    return C.done()


if __name__ == "__main__":
    sys.exit(main())
