#!/usr/bin/env python3
"""kato.py - the collector plugins against the KATO simulator (issue 4).

Real sockets, the real katomon binary ($top_builddir/katomon) with the
plugins of this build ($PLUGIN_BUILD_DIR), tests/sim/kato_sim.py on an
ephemeral port, katomon on [http] port = 0 (the port is read from its
"listening on http://ADDR:PORT" line). One "ok - ..." / "not ok - ..." line
per check; exit 0 pass, 1 fail (automake protocol).

Covered:
  A  realtime_update, heartbeat and the REST fallback endpoints, field by
     field against the original dashboard's shapes (metrics = the KATO body
     + _source; sessions {"active_count","total_count"}; containers error
     shape while Docker is unreachable; kato_health)
  B  session_events from KATO's /ws/events: 2 created, 1 destroyed, with
     ids, the right counts and deltas; the stream stays open while idle
  C  alerts: error rate 0.07 -> warning, 0.12 -> error (the shipped rule,
     messages as the original's), cooldown, "for" samples, hysteresis,
     resolved messages; the webhook (Slack-style "text")
  D  GET /api/v1/alerts filters (level, type, since, limit), POST
     /api/v1/alerts/read (ids, all), errors
  E  KATO down / slow / bad_json / http500 / error_body: the error shape
     with _source.healthy false, never the last good figures; no alert is
     resolved while the source is unknown; recovery
  F  session_events falling back to count differences (ws_events=false)
     and going back to the stream
  H  alert history across SIGTERM + restart, kill -9, DELETE
  I  history bounded by max_entries / max_age_days with rotation; a torn
     last line is skipped
  J  history = transitions (issue 16): a rule with cooldown 0.2 s polled
     every 0.1 s (an hour of a 60 s cooldown's re-sends in a few seconds):
     every re-send is published, the history holds exactly fired,
     escalated, resolved with the re-sends counted; SIGHUP with the rules
     unchanged adds no record and re-fires nothing; a changed rule resolves
     its alert ("rule changed"); the webhook posts transitions only
and after each run of katomon: exit status 0 on SIGTERM and no sanitizer
(ASan/LSan/UBSan) report on its stderr.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import (Checks, Katomon, Receiver, Sim, WS, env, http, is_int, is_iso_z,  # noqa: E402
                    is_num, rmtree, shipped_alert_rules, tmpdir, wait_until)

C = Checks()
W = tmpdir("km-kato.")
STATE = os.path.join(W, "state")

# ---------------------------------------------------------------------------
# shapes (the original dashboard's, plus katomon's _source)
# ---------------------------------------------------------------------------

SOURCE = {"healthy": bool, "error": lambda v: v is None or isinstance(v, str),
          "fetched_at": is_iso_z, "failures": is_int}


def source_ok(name: str, src: object, healthy: bool) -> bool:
    good = C.fields(src, SOURCE, f"{name} _source")
    return C.check(isinstance(src, dict) and src.get("healthy") is healthy and
                   (src.get("error") is None) == healthy,
                   f"{name} _source.healthy is {str(healthy).lower()}", src) and good


def check_metrics_body(name: str, m: dict, sim_metrics: dict) -> None:
    """The KATO /metrics body as KATO sends it, section by section."""
    num_fields = lambda keys: {k: is_num for k in keys}  # noqa: E731
    C.fields(m, {"timestamp": is_num, "sessions": dict, "performance": dict,
                 "resources": dict, "databases": dict, "processor_manager": dict,
                 "rates": dict, "_source": dict}, f"{name}")
    C.fields(m.get("sessions"), num_fields(["total_created", "total_deleted", "active",
                                             "operations_total"]), f"{name}.sessions")
    C.fields(m.get("performance"), num_fields(["total_requests", "total_errors", "error_rate",
                                                "average_response_time"]),
             f"{name}.performance")
    C.fields(m.get("resources"), num_fields(["cpu_percent", "memory_percent", "disk_percent"]),
             f"{name}.resources")
    dbs = m.get("databases") or {}
    C.check(sorted(dbs) == ["clickhouse", "qdrant", "redis"] and
            all(sorted(v) == ["avg_response_time", "errors", "operations"] for v in dbs.values()),
            f"{name}.databases: clickhouse, qdrant, redis with operations/errors/avg_response_time",
            dbs)
    pm = m.get("processor_manager") or {}
    C.fields(pm, {"total_processors": is_int, "max_processors": is_int,
                  "eviction_ttl_seconds": is_int, "processors": list}, f"{name}.processor_manager")
    procs = pm.get("processors") or []
    C.check(len(procs) == 2 and all(set(p) >= {"processor_id", "node_id", "created_at",
                                               "last_accessed", "access_count", "idle_seconds"}
                                    for p in procs),
            f"{name}.processor_manager.processors: 2 items with their fields", procs)
    C.fields(m.get("rates"), num_fields(["requests_per_second", "requests_per_minute",
                                          "errors_per_minute"]), f"{name}.rates")
    # the values are KATO's, unchanged
    same = all(m.get(sec, {}).get(k) == sim_metrics[sec][k]
               for sec in ("resources", "processor_manager") for k in sim_metrics[sec]
               if k != "processors")
    C.check(same and m["performance"]["error_rate"] == sim_metrics["performance"]["error_rate"]
            and m["performance"]["average_response_time"] ==
            sim_metrics["performance"]["average_response_time"],
            f"{name}: values are KATO's (resources, processor_manager, error rate, response time)",
            {"katomon": {k: m.get(k) for k in ("resources", "performance")},
             "kato": {k: sim_metrics.get(k) for k in ("resources", "performance")}})
    C.check(set(m) - {"_source"} == set(sim_metrics),
            f"{name}: exactly KATO's sections plus _source", sorted(m))
    source_ok(name, m.get("_source"), True)


HEALTH_FIELDS = {"status": str, "processor_status": str, "service_name": str,
                 "uptime_seconds": is_num, "issues": list, "metrics_collected": is_int,
                 "last_collection": is_num, "active_sessions": is_int, "timestamp": str}


def check_session_event(name: str, e: dict, etype: str, cur: int, prev: int, source: str,
                        sid: object = None) -> None:
    ok = C.fields(e, {"type": lambda v: v == "session_event", "event_type": lambda v: v == etype,
                      "timestamp": is_iso_z, "data": dict, "seq": is_int}, f"{name}")
    d = e.get("data") if isinstance(e, dict) else None
    C.fields(d, {"current_count": lambda v: v == cur, "previous_count": lambda v: v == prev,
                 "delta": lambda v: v == cur - prev, "time_since_last_event": is_num,
                 "source": lambda v: v == source}, f"{name} data ({prev} -> {cur}, {source})")
    if sid is not None:
        C.check(isinstance(d, dict) and d.get("session_id") == sid,
                f"{name} data.session_id is the session's", d)
    elif isinstance(d, dict):
        C.check("session_id" not in d, f"{name}: no session_id from counts", d)
    _ = ok


def alert_of(batch: dict, atype: str) -> dict | None:
    for a in batch.get("alerts", []) if isinstance(batch, dict) else []:
        if a.get("type") == atype:
            return a
    return None


def check_batch(name: str, b: dict) -> None:
    C.fields(b, {"type": lambda v: v == "system_alert", "id": lambda v: isinstance(v, str) and
                 re.match(r"^alert_\d+$", v) is not None, "timestamp": is_iso_z,
                 "alerts": lambda v: isinstance(v, list) and len(v) > 0, "seq": is_int},
             f"{name}: system_alert")


def check_threshold_alert(name: str, a: dict | None, level: str, message: str, value: float,
                          threshold: float, state: str) -> None:
    C.fields(a, {"level": lambda v: v == level, "type": str,
                 "message": lambda v: v == message,
                 "value": lambda v: is_num(v) and abs(v - value) < 1e-9,
                 "threshold": lambda v: is_num(v) and abs(v - threshold) < 1e-9,
                 "state": lambda v: v == state, "id": str},
             f"{name} ({level}, '{message}', value {value}, threshold {threshold}, {state})")


# ---------------------------------------------------------------------------
# the daemon's config
# ---------------------------------------------------------------------------

def config(sim: Sim, hook_port: int, extra_am: str = "", rules: str | None = None,
           state: str = STATE, interval: float = 0.5, test_rule: bool = True) -> str:
    return f"""[core]
plugin_dir = {env('PLUGIN_BUILD_DIR')}
state_dir = {state}
log_level = info

[http]
bind = 127.0.0.1
port = 0
web_root = {env('top_srcdir')}/web

[websocket]
update_interval = 1

[plugin kato_metrics]
url = {sim.url}
interval = {interval}
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
{extra_am}

; no Docker here on purpose: its built-in source_down alert would be in
; every count of this test (the fleet kinds are tests/unit/check_alert_*)
[alert source_down]
enabled = false

[plugin alert_webhook]
url = http://127.0.0.1:{hook_port}/hooks/katomon
timeout = 2
retries = 1

{shipped_alert_rules() if rules is None else rules}
{ERR_HYST if test_rule else ""}"""


ERR_HYST = """; a rule of the test's: the same value, with hysteresis, 2 samples, short cooldown
[alert err_hyst]
topic = metrics
path = performance.error_rate
warning = 0.05
critical = 0.10
clear = 0.03
for = 2
cooldown = 3
message = Error rate {value_pct}% (test rule)
"""


def stop_clean(k: Katomon, what: str) -> None:
    good, detail = k.stop()
    C.check(good, f"{what}: SIGTERM -> exit status 0, no sanitizer report, no schema refusal",
            detail)


def rest_wait(k: Katomon, path: str, pred, timeout: float):
    """Polls GET path until pred(body) holds; returns the last (status, body)."""
    last = [(0, None)]

    def probe():
        last[0] = k.get(path)
        try:
            return last[0][0] == 200 and pred(last[0][1])
        except (KeyError, TypeError, AttributeError):
            return False
    wait_until(probe, timeout)
    return last[0]


def main() -> int:
    sim = Sim(W)
    hook = None
    daemons: list = []
    try:
        if not C.check(sim.start(), "the KATO simulator starts"):
            return C.done()
        hook = Receiver()
        return run(sim, hook, daemons)
    finally:
        for p in daemons:  # a run cut short: leave nothing behind
            if p.alive():
                p.kill9()
        sim.stop()
        if hook:
            hook.stop()
        if C.failed == 0:
            rmtree(W)
        else:
            C.note(f"kept {W} for inspection")


def run(sim: Sim, hook: Receiver, daemons: list) -> int:
    def katomon(name: str, conf: str) -> Katomon:
        d = Katomon(W, name, conf)
        daemons.append(d)
        return d

    k = katomon("run1", config(sim, hook.port))
    if not C.check(k.start(), f"katomon starts (port {k.port})", k.text()[-3000:]):
        return C.done()
    loaded = re.findall(r"plugin (\w+) [\d.]+ loaded", k.text())
    C.check(sorted(loaded) == ["alert_manager", "alert_webhook", "docker_stats", "kato_metrics",
                               "session_events"], "all five collector plugins loaded", loaded)
    C.check("5 alert rules" in k.text(), "the shipped four rules + the test's are loaded",
            k.text()[-2000:])

    # ---- A: shapes --------------------------------------------------------
    ws = WS(k.port)
    first = ws.next_type("realtime_update", 5, lambda m: all(
        isinstance(m["data"].get(t), dict) and "_source" in m["data"][t]
        for t in ("metrics", "sessions", "containers", "kato_health")))
    C.check(first is not None, "realtime_update with metrics, sessions, containers, kato_health "
            "to a client that never subscribed")
    sim_metrics = http("GET", sim.url + "/metrics")[1]
    if first:
        C.fields(first, {"type": str, "timestamp": is_iso_z, "data": dict}, "realtime_update")
        d = first["data"]
        check_metrics_body("realtime_update data.metrics", d["metrics"], sim_metrics)
        C.fields(d["sessions"], {"active_count": lambda v: v == 0, "total_count": is_int,
                                 "_source": dict}, "data.sessions")
        source_ok("data.sessions", d["sessions"].get("_source"), True)
        cs = d["containers"]
        C.check(isinstance(cs.get("error"), str) and cs.get("containers") == [] and
                cs.get("aggregated") == {}, "data.containers while Docker is unreachable: "
                "{error, containers: [], aggregated: {}} (the original's shape)", cs)
        source_ok("data.containers", cs.get("_source"), False)
        C.fields(d["kato_health"], HEALTH_FIELDS, "data.kato_health (KATO /health body)")
        source_ok("data.kato_health", d["kato_health"].get("_source"), True)
    ws.send("ping")
    hb = ws.next_type("heartbeat", 3)
    C.check(isinstance(hb, dict) and set(hb) == {"type", "timestamp"} and
            is_iso_z(hb.get("timestamp")), "text ping -> {type: heartbeat, timestamp ...Z}", hb)

    st, body = k.get("/api/v1/health")
    C.check(st == 200 and body.get("status") == "healthy" and isinstance(body.get("service"), str)
            and isinstance(body.get("version"), str) and set(body) == {"status", "service", "version"},
            "GET /api/v1/health -> {status: healthy, service, version}", body)
    st, body = k.get("/health")
    C.check(st == 200 and body.get("status") == "healthy", "GET /health", body)
    st, body = k.get("/api/v1/system/metrics")
    if C.check(st == 200, "GET /api/v1/system/metrics -> 200", body):
        check_metrics_body("GET /api/v1/system/metrics", body, sim_metrics)
    st, body = k.get("/api/v1/system/container-stats")
    C.check(st == 200 and isinstance(body.get("error"), str) and body.get("containers") == [] and
            body.get("aggregated") == {}, "GET /api/v1/system/container-stats: the error shape",
            body)
    st, body = k.get("/api/v1/system/container-stats/kato")
    C.check(st == 404 and isinstance(body, dict) and isinstance(body.get("detail"), str),
            "GET /api/v1/system/container-stats/kato (no such container) -> 404 {detail}", body)
    st, body = k.get("/api/v1/sessions/count")
    C.check(st == 200 and body == {"active_session_count": 0},
            "GET /api/v1/sessions/count -> {active_session_count: 0}", body)
    st, body = k.get("/api/v1/system/kato-health")
    if C.check(st == 200, "GET /api/v1/system/kato-health -> 200", body):
        C.fields(body, HEALTH_FIELDS, "GET /api/v1/system/kato-health (KATO /health body)")
    st, body = k.get("/api/v1/alerts")
    C.check(st == 200 and body == {"alerts": [], "total": 0, "unread": 0},
            "GET /api/v1/alerts on an empty history", body)

    # ---- B: session events from the /ws/events stream ---------------------
    C.check(k.wait_log(r"following KATO /ws/events", 5) is not None,
            "session_events follows KATO's /ws/events", k.text()[-2000:])
    ws.send({"type": "subscribe", "protocol": "katomon/1",
             "subscriptions": ["sessions", "session_events"]})
    ack = ws.next_type("subscription_ack", 3)
    C.check(ack is not None and sorted(ack.get("subscriptions", [])) ==
            ["session_events", "sessions"], "subscribe -> subscription_ack", ack)
    ru = ws.next_type("realtime_update", 3)
    C.check(ru is not None and set(ru["data"]) == {"sessions"},
            "realtime_update trimmed to the subscribed state topic (sessions)", ru)
    t_stream_open = time.monotonic()
    ws.drain()
    created = sim.create(2)
    e1 = ws.next_type("session_event", 3)
    e2 = ws.next_type("session_event", 3)
    check_session_event("1st session_event", e1, "session_created", 1, 0, "stream", created[0])
    check_session_event("2nd session_event", e2, "session_created", 2, 1, "stream", created[1])
    C.check(e1 and e2 and e2["seq"] == e1["seq"] + 1 and e1["timestamp"] != e2["timestamp"],
            "the two events: consecutive seq, distinct timestamps (the original frontend keys "
            "its toasts by timestamp + event_type)", [e1, e2])
    sim.destroy(session_ids=[created[0]])
    e3 = ws.next_type("session_event", 3)
    check_session_event("session_event after DELETE", e3, "session_destroyed", 1, 2, "stream",
                        created[0])
    ru = ws.next_type("realtime_update", 4, lambda m: m["data"]["sessions"]["active_count"] == 1
                      and m["data"]["sessions"]["total_count"] == 2)
    C.check(ru is not None, "realtime_update sessions: active_count 1, total_count 2 "
            "(active from active_session_count, total from sessions.total_created)", ws.drain()[-2:])
    st, body = k.get("/api/v1/sessions/count")
    C.check(body == {"active_session_count": 1}, "GET /api/v1/sessions/count -> 1", body)
    extra = [m for m in ws.collect(1.5) if isinstance(m, dict) and m.get("type") == "session_event"]
    C.check(not extra, "no duplicate events from the count polls while the stream is open", extra)
    # junk on KATO's stream: logged and ignored, the stream stays open
    sim.ctl("ws/send", {"text": "{not json"})
    sim.ctl("ws/send", {"json": {"event_type": "session.renamed", "data": {}}})
    sim.ctl("ws/send", {"json": {"event_type": "session.created", "data": "nonsense"}})
    C.check(k.wait_log(r"/ws/events sent a message that is not JSON", 3) is not None and
            k.alive(), "bad JSON on /ws/events: one warning, katomon stays up")
    junk = [m for m in ws.collect(1.0) if isinstance(m, dict) and m.get("type") == "session_event"]
    C.check(not junk and "/ws/events failed" not in k.text() and
            "/ws/events was closed" not in k.text(),
            "unknown or malformed stream events are ignored; the stream stays open", junk)
    st, body = k.get("/api/v1/sessions/count")
    C.check(body == {"active_session_count": 1}, "... and the count is still KATO's (1)", body)
    t_last_frame = time.monotonic()  # the stream is idle from here on (no pings for 30 s)

    # ---- C: alerts -------------------------------------------------------------
    wa = WS(k.port)
    wa.send({"type": "subscribe", "protocol": "katomon/1", "subscriptions": ["system_alerts"]})
    wa.next_type("subscription_ack", 3)
    batches: list = []

    def collect_alerts(seconds: float) -> list:
        """Every system_alert within `seconds` (also kept in batches)."""
        got = [m for m in wa.collect(seconds) if isinstance(m, dict) and
               m.get("type") == "system_alert"]
        batches.extend(got)
        return got

    def next_alert(atype: str, timeout: float, pred=lambda a: True) -> tuple:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            b = wa.next_type("system_alert", end - time.monotonic())
            if b is None:
                break
            batches.append(b)
            a = alert_of(b, atype)
            if a and pred(a):
                return b, a
        return None, None

    sim.set(error_rate=0.07)
    b, a = next_alert("high_error_rate", 4)
    if C.check(b is not None, "error rate 0.07 -> a system_alert"):
        check_batch("0.07", b)
        check_threshold_alert("high_error_rate at 0.07", a, "warning", "High error rate: 7.0%",
                              0.07, 0.05, "firing")
        C.check(alert_of(b, "err_hyst") is None, "for = 2: the test rule waits for a 2nd sample",
                b)
    b2, a2 = next_alert("err_hyst", 3)
    C.check(a2 is not None and a2["level"] == "warning" and b2["id"] != b["id"],
            "for = 2: the test rule fires on the 2nd sample, in a later batch", a2)
    sim.set(error_rate=0.12)
    t_err = time.monotonic()
    b, a = next_alert("high_error_rate", 4)
    if C.check(b is not None, "error rate 0.12 -> a system_alert"):
        check_batch("0.12", b)
        check_threshold_alert("high_error_rate at 0.12", a, "error", "High error rate: 12.0%",
                              0.12, 0.10, "firing")
    # cooldown: high_error_rate (60 s) is quiet; err_hyst (3 s) reminds
    wait_s = 4.5 - (time.monotonic() - t_err)
    seen = []
    end = time.monotonic() + max(wait_s, 0)
    while time.monotonic() < end:
        m = wa.next_type("system_alert", end - time.monotonic())
        if m:
            batches.append(m)
            seen.append(m)
    her = [x for m in seen for x in m["alerts"] if x["type"] == "high_error_rate"]
    hyst = [x for m in seen for x in m["alerts"] if x["type"] == "err_hyst"]
    C.check(not her, "cooldown 60 s: high_error_rate is not sent again while it holds", her)
    C.check(any(x["state"] == "firing" and x["level"] == "error" for x in hyst),
            "cooldown 3 s: the test rule reminds (error, firing) while it holds", hyst)
    sim.set(error_rate=0.04)
    b, a = next_alert("high_error_rate", 4, lambda a: a["state"] == "resolved")
    if C.check(a is not None, "0.04: high_error_rate resolved (clear defaults to the warning "
               "threshold)"):
        C.check(a["message"].endswith("(resolved)") and a["value"] == 0.04 and
                a["level"] in ("warning", "error"), "resolved alert: message, value", a)
    hold = [x for m in collect_alerts(2.0) for x in m["alerts"]
            if x["type"] == "err_hyst" and x["state"] == "resolved"]
    C.check(not hold, "hysteresis: the test rule (clear 0.03) is not resolved at 0.04", hold)
    sim.set(error_rate=0.01)
    b, a = next_alert("err_hyst", 4, lambda a: a["state"] == "resolved")
    C.check(a is not None, "0.01: the test rule resolved (below clear)", a)
    collect_alerts(0.5)

    # webhook
    def posts_cover():
        texts = "\n".join(p["body"].get("text", "") for p in hook.posts
                          if isinstance(p["body"], dict))
        return ("[warning] High error rate: 7.0%" in texts and "[error] High error rate: 12.0%"
                in texts and "(resolved)" in texts)
    wait_until(posts_cover, 5)
    C.check(posts_cover(), f"webhook: {len(hook.posts)} posts; Slack 'text' lines "
            "'[warning] High error rate: 7.0%', '[error] ...12.0%' and a resolved one",
            [p["body"] for p in hook.posts][:6])
    C.check(hook.posts and all(isinstance(p["body"], dict) and isinstance(p["body"].get("text"), str)
                               and isinstance(p["body"].get("alerts"), list) and
                               p["type"] == "application/json" and p["path"] == "/hooks/katomon"
                               for p in hook.posts),
            "webhook: every post is JSON {text, id, timestamp, alerts} to the configured path",
            hook.posts[:3])
    # the webhook posts transitions: a batch of re-sends only is not posted
    ws_ids = [b["id"] for b in batches if any(a.get("repeats") == 0 for a in b["alerts"])]
    hook_ids = [p["body"].get("id") for p in hook.posts]
    C.check(hook_ids == ws_ids[:len(hook_ids)] and len(hook_ids) >= len(ws_ids) - 1,
            "webhook: the batches with a transition in order, as on /ws",
            {"ws": ws_ids, "hook": hook_ids})
    C.check(all(a.get("repeats") == 0 for p in hook.posts for a in p["body"].get("alerts", [])),
            "webhook: no re-send posted (repeats 0 on every alert)",
            [p["body"] for p in hook.posts if any(a.get("repeats") for a in
                                                  p["body"].get("alerts", []))][:2])

    # ---- D: alerts REST -----------------------------------------------------------
    # the history holds the transitions sent (repeats 0); a re-send carries its
    # record's id and count
    n_alerts = sum(1 for b in batches for a in b["alerts"] if a.get("repeats") == 0)
    st, body = k.get("/api/v1/alerts?limit=10000")
    hist = body.get("alerts", []) if isinstance(body, dict) else []
    C.check(st == 200 and body.get("total") == n_alerts and len(hist) == n_alerts and
            body.get("unread") == n_alerts,
            f"GET /api/v1/alerts: every transition sent ({n_alerts}), all unread",
            {"total": body.get("total") if isinstance(body, dict) else body, "ws": n_alerts})
    C.check(all(isinstance(e.get("id"), str) and e.get("level") in ("warning", "error") and
                isinstance(e.get("type"), str) and isinstance(e.get("message"), str) and
                e.get("state") in ("firing", "resolved") and is_iso_z(e.get("timestamp")) and
                e.get("read") is False and is_int(e.get("repeats")) and
                is_iso_z(e.get("last_seen")) and e["last_seen"] >= e["timestamp"] for e in hist),
            "history entries: id, level, type, message, state, timestamp, read, repeats, "
            "last_seen", hist[:2])
    stamps = [e["timestamp"] for e in hist]
    C.check(stamps == sorted(stamps, reverse=True), "history: newest first", stamps)
    ws_alert_ids = sorted(a["id"] for b in batches for a in b["alerts"] if a.get("repeats") == 0)
    C.check(sorted(e["id"] for e in hist) == ws_alert_ids,
            "history ids are the ids of the transitions sent on /ws",
            {"hist": [e["id"] for e in hist]})
    resent: dict = {}
    for b in batches:
        for a in b["alerts"]:
            resent[a["id"]] = max(resent.get(a["id"], 0), a.get("repeats", -1))
    by_id = {e["id"]: e for e in hist}
    C.check(any(resent.values()) and all(by_id.get(i, {}).get("repeats") == n
                                         for i, n in resent.items()),
            "each re-send on /ws is counted on its record (repeats as sent)",
            {"ws": resent, "hist": {i: e["repeats"] for i, e in by_id.items()}})
    st, body = k.get("/api/v1/alerts?level=error")
    errs = [e for e in hist if e["level"] == "error"]
    C.check(st == 200 and len(errs) > 0 and [e["id"] for e in body["alerts"]] ==
            [e["id"] for e in errs] and body["total"] == len(errs),
            f"?level=error: the {len(errs)} errors only", body)
    st, body = k.get("/api/v1/alerts?type=err_hyst")
    hy = [e for e in hist if e["type"] == "err_hyst"]
    C.check(st == 200 and [e["id"] for e in body["alerts"]] == [e["id"] for e in hy],
            f"?type=err_hyst: the {len(hy)} alerts of that type only", body)
    st, body = k.get("/api/v1/alerts?type=err_hyst&level=warning&limit=1")
    want = [e for e in hy if e["level"] == "warning"]
    C.check(st == 200 and len(body["alerts"]) == 1 and body["alerts"][0]["id"] == want[0]["id"]
            and body["total"] == len(want), "?type&level&limit=1: the newest match, total of all",
            body)
    st, body = k.get("/api/v1/alerts?limit=2")
    C.check(st == 200 and [e["id"] for e in body["alerts"]] == [e["id"] for e in hist[:2]] and
            body["total"] == n_alerts, "?limit=2: the 2 newest, total unchanged", body)
    pivot = hist[len(hist) // 2]
    newer = [e["id"] for e in hist if e["timestamp"] > pivot["timestamp"]]
    st, body = k.get("/api/v1/alerts?since=" + pivot["timestamp"])
    C.check(st == 200 and [e["id"] for e in body["alerts"]] == newer,
            f"?since=<ISO timestamp>: the {len(newer)} strictly newer ones", body)
    iso_plus = pivot["timestamp"].replace("Z", "+00:00")
    st, body = k.get("/api/v1/alerts?since=" + iso_plus.replace("+", "%2B"))
    C.check(st == 200 and [e["id"] for e in body["alerts"]] == newer,
            "?since=...+00:00 (Python's isoformat) works the same", body)
    ts = calendar.timegm(time.strptime(pivot["timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
    ts += float("0" + pivot["timestamp"][19:-1]) + 0.0005
    st, body = k.get(f"/api/v1/alerts?since={ts:.4f}")
    C.check(st == 200 and [e["id"] for e in body["alerts"]] == newer,
            "?since=<epoch seconds> works the same", body)
    for q in ("limit=0", "limit=abc", "since=yesterday"):
        st, body = k.get("/api/v1/alerts?" + q)
        C.check(st == 400 and isinstance(body, dict) and isinstance(body.get("detail"), str),
                f"?{q} -> 400 {{detail}}", (st, body))
    two = [hist[0]["id"], hist[-1]["id"]]
    st, body = k.request("POST", "/api/v1/alerts/read", {"ids": two + ["a999999"]})
    C.check(st == 200 and body.get("marked") == 2 and body.get("unread") == n_alerts - 2,
            "POST /api/v1/alerts/read {ids}: marked 2 (an unknown id is ignored)", body)
    st, body = k.get("/api/v1/alerts?limit=10000")
    reads = {e["id"]: e["read"] for e in body["alerts"]}
    C.check(all(reads[i] for i in two) and sum(reads.values()) == 2 and
            body["unread"] == n_alerts - 2, "GET shows exactly those two as read", body["unread"])
    for bad in (b"not json", b"{}", b'{"ids": "a1"}', b"[]"):
        st, body = k.request("POST", "/api/v1/alerts/read", raw=bad)
        C.check(st == 400 and isinstance(body, dict) and "detail" in body,
                f"POST read {bad.decode()!r} -> 400 {{detail}}", (st, body))
    st, body = k.request("POST", "/api/v1/alerts/read", {"all": True})
    C.check(st == 200 and body.get("marked") == n_alerts - 2 and body.get("unread") == 0,
            "POST /api/v1/alerts/read {all: true}: the rest marked, unread 0", body)
    st, body = k.request("PUT", "/api/v1/alerts")
    C.check(st in (404, 405) and isinstance(body, dict) and "detail" in body,
            "PUT /api/v1/alerts -> 404/405 {detail}", (st, body))

    # webhook receiver failing: retried (retries = 1, after 2 s), then given up;
    # the queue goes on in order once it answers again
    hook.status = 500
    mark = len(k.text())
    sim.set(error_rate=0.07)
    b, a = next_alert("high_error_rate", 4)
    tries = wait_until(lambda: [p for p in hook.posts if p["body"].get("id") == b["id"]]
                       if b and len([p for p in hook.posts if p["body"].get("id") == b["id"]]) >= 2
                       else None, 6) if b else None
    C.check(tries and len(tries) == 2 and tries[1]["at"] - tries[0]["at"] >= 1.5,
            "webhook answering 500: the post is retried once, ~2 s later",
            [(p["body"].get("id"), round(p["at"], 2)) for p in hook.posts[-4:]])
    C.check(k.wait_log(r"giving up on an alert post to .* after 2 tries", 3, mark) is not None,
            "... then given up with one error line", k.text()[mark:][-800:])
    hook.status = 200
    sim.set(error_rate=0.0)
    b2, a2 = next_alert("high_error_rate", 4, lambda a: a["state"] == "resolved")
    ok_post = wait_until(lambda: b2 and any(p["body"].get("id") == b2["id"] for p in hook.posts),
                         8)
    C.check(bool(ok_post), "webhook back: the next batches are delivered",
            [p["body"].get("id") for p in hook.posts[-4:]])
    collect_alerts(0.5)

    # ---- E: KATO failing ------------------------------------------------------------
    idle = time.monotonic() - t_last_frame
    if idle < 12:  # KATO's stream is silent while nothing happens: stay idle past 10 s
        time.sleep(12 - idle)
    C.check(len(re.findall(r"following KATO /ws/events", k.text())) == 1 and
            "/ws/events timed out" not in k.text(),
            f"the /ws/events stream stayed open for {time.monotonic() - t_stream_open:.0f} s, "
            f"the last {time.monotonic() - t_last_frame:.0f} s without a frame", [l for l in k.text().splitlines() if "ws/events" in l])
    sim.set(error_rate=0.12)
    b, a = next_alert("high_error_rate", 4, lambda a: a["state"] == "firing")
    C.check(a is not None and a["level"] == "error", "0.12 again: high_error_rate fires", a)
    wa.drain()
    last_good = http("GET", sim.url + "/metrics")[1]
    for mode in ("down", "slow", "bad_json", "http500", "error_body"):
        sim.mode(mode, delay=2.5)
        st, m = rest_wait(k, "/api/v1/system/metrics",
                          lambda m: m["_source"]["healthy"] is False and
                          m["_source"]["failures"] >= 1, 6)
        unhealthy = C.check(st == 200 and isinstance(m, dict) and
                            m.get("_source", {}).get("healthy") is False,
                            f"KATO {mode}: metrics marked unhealthy", m)
        if unhealthy:
            C.fields(m["_source"], SOURCE, f"KATO {mode}: metrics _source")
        if unhealthy and mode == "error_body":
            C.check(isinstance(m.get("error"), str) and "processor_manager" in m and
                    "performance" not in m and "resources" not in m and
                    m["_source"]["error"] and m["error"] in m["_source"]["error"],
                    "KATO error_body: KATO's reduced body as sent (error, processor_manager, no "
                    "performance), _source says why", m)
        elif unhealthy:
            C.check(set(m) == {"error", "_source"} and isinstance(m["error"], str) and
                    m["_source"]["error"] == m["error"],
                    f"KATO {mode}: metrics is {{error, _source}} only, no stale figures "
                    f"({m.get('error', '')[:70]})", m)
            st, h = rest_wait(k, "/api/v1/system/kato-health",
                              lambda h: h["_source"]["healthy"] is False, 4)
            C.check(st == 200 and h.get("status") == "error" and isinstance(h.get("error"), str)
                    and h["_source"]["healthy"] is False and "uptime_seconds" not in h,
                    f"KATO {mode}: kato-health {{status: error, error}}", h)
            sess = None
            m2 = ws.next_type("realtime_update", 3, lambda x: x["data"]["sessions"]["_source"]
                              ["healthy"] is False)
            if m2:
                sess = m2["data"]["sessions"]
            C.check(sess is not None and sess.get("active_count") is None and
                    isinstance(sess.get("error"), str) and is_int(sess.get("total_count")),
                    f"KATO {mode}: sessions {{active_count: null, error}} on /ws", sess)
        C.check(k.alive() and k.get("/health")[0] == 200, f"KATO {mode}: katomon stays up")
        sim.mode("normal")
        st, m = rest_wait(k, "/api/v1/system/metrics",
                          lambda m: m["_source"]["healthy"] is True and "performance" in m, 6)
        C.check(st == 200 and m.get("_source", {}).get("healthy") is True and
                m.get("performance", {}).get("error_rate") == last_good["performance"]["error_rate"],
                f"KATO back after {mode}: fresh figures, healthy", m and m.get("_source"))
    resolved = [x for m in wa.drain() if isinstance(m, dict) and m.get("type") == "system_alert"
                for x in m["alerts"] if x["type"] == "high_error_rate"]
    C.check(not resolved, "while KATO failed, high_error_rate was neither resolved nor re-sent "
            "(unknown is not recovered)", resolved)
    sim.set(error_rate=0.0)
    b, a = next_alert("high_error_rate", 4, lambda a: a["state"] == "resolved")
    C.check(a is not None, "error rate 0: high_error_rate resolved", a)
    wa.collect(0.5)

    # ---- F: count fallback -------------------------------------------------------------
    k.wait_log(r"(?s)HTTP 500.*following KATO /ws/events", 5)  # back on the stream after E
    mark = len(k.text())
    sim.set(ws_events=False)
    C.check(k.wait_log(r"/ws/events was closed by KATO", 5, mark) is not None and
            k.wait_log(r"/ws/events is not offered \(HTTP 404\)", 5, mark) is not None,
            "ws_events=false: the stream closes and /ws/events answers 404",
            k.text()[mark:][-1500:])
    time.sleep(1.2)  # a poll of /sessions/count after the switch
    ws.drain()
    base = http("GET", sim.url + "/sessions/count")[1]["active_session_count"]
    sim.create(2)
    e = ws.next_type("session_event", 4)
    check_session_event("count fallback: +2", e, "session_created", base + 2, base, "count")
    sim.destroy(count=1)
    e = ws.next_type("session_event", 4)
    check_session_event("count fallback: -1", e, "session_destroyed", base + 1, base + 2, "count")
    mark = len(k.text())
    sim.set(ws_events=True)
    C.check(k.wait_log(r"following KATO /ws/events", 5, mark) is not None,
            "ws_events=true: back on the stream", k.text()[mark:][-1000:])
    time.sleep(0.5)
    extra = [m for m in ws.drain() if isinstance(m, dict) and m.get("type") == "session_event"]
    C.check(not extra, "back on the stream: the snapshot matches, no spurious event", extra)
    new = sim.create(1)
    e = ws.next_type("session_event", 4)
    check_session_event("back on the stream", e, "session_created", base + 2, base + 1, "stream",
                        new[0])
    ws.close()
    wa.close()

    # ---- H: history across restarts ------------------------------------------------
    st, before = k.get("/api/v1/alerts?limit=10000")
    stop_clean(k, "run 1")
    k2 = katomon("run2", config(sim, hook.port))
    C.check(k2.start(), "restart with the same state_dir", k2.text()[-2000:])
    st, after = k2.get("/api/v1/alerts?limit=10000")
    C.check(st == 200 and after == before, f"after SIGTERM + restart: the same {before['total']} "
            "alerts, same ids, order and read flags", {"before": before.get("total"),
                                                      "after": after})
    max_id = max(int(e["id"][1:]) for e in before["alerts"])
    wa = WS(k2.port)
    wa.send({"type": "subscribe", "protocol": "katomon/1", "subscriptions": ["system_alerts"]})
    wa.next_type("subscription_ack", 3)
    sim.set(error_rate=0.07)
    b = wa.next_type("system_alert", 4, lambda m: alert_of(m, "high_error_rate") is not None)
    new_id = alert_of(b, "high_error_rate")["id"] if b else "a0"
    C.check(b is not None and int(new_id[1:]) > max_id,
            f"a new alert after the restart gets a new id ({new_id} > a{max_id})", b)
    k2.kill9()
    C.check(k2.exit_status == -9, "kill -9 right after the alert", k2.exit_status)
    sim.set(error_rate=0.0)
    k3 = katomon("run3", config(sim, hook.port))
    C.check(k3.start(), "restart after kill -9", k3.text()[-2000:])
    st, body = k3.get("/api/v1/alerts?limit=10000")
    C.check(st == 200 and body["alerts"] and body["alerts"][0]["id"] == new_id and
            body["total"] == before["total"] + 1,
            "after kill -9: the last alert is in the history, nothing lost", body.get("total"))
    wa.close()
    st, body = k3.request("DELETE", "/api/v1/alerts")
    C.check(st == 200 and body == {"cleared": before["total"] + 1}, "DELETE /api/v1/alerts",
            body)
    st, body = k3.get("/api/v1/alerts")
    C.check(body == {"alerts": [], "total": 0, "unread": 0}, "history empty after DELETE", body)
    stop_clean(k3, "run 3")
    k4 = katomon("run4", config(sim, hook.port))
    C.check(k4.start(), "restart after DELETE", k4.text()[-2000:])
    st, body = k4.get("/api/v1/alerts")
    C.check(body == {"alerts": [], "total": 0, "unread": 0}, "still empty after a restart",
            body)
    sim.set(error_rate=0.12)
    body = rest_wait(k4, "/api/v1/alerts", lambda b: b["total"] > 0, 4)[1]
    ids = [int(e["id"][1:]) for e in body.get("alerts", [])]
    C.check(ids and min(ids) > int(new_id[1:]),
            "ids go on after DELETE + restart (no id is given twice)", ids)
    sim.set(error_rate=0.0)
    with open(os.path.join(STATE, "alerts.jsonl")) as f:
        lines = f.read().splitlines()
    C.check(lines and all(isinstance(json.loads(l), dict) for l in lines),
            f"state_dir/alerts.jsonl: {len(lines)} JSON lines", lines[-3:])
    stop_clean(k4, "run 4")

    # ---- I: bounded history, rotation, torn line ------------------------------------
    path = os.path.join(STATE, "alerts.jsonl")
    now = time.time()

    def iso(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
    with open(path, "w") as f:
        for i in range(1, 301):
            t = now - 3 * 86400 + i if i <= 100 else now - 600 + i
            f.write(json.dumps({"id": f"a{i}", "level": "warning", "type": "seeded",
                                "state": "firing", "message": f"seeded {i}", "timestamp": iso(t),
                                "read": False, "pad": "x" * 160}) + "\n")
        f.write('{"id": "a301", "level": "warn')  # torn by a kill -9 mid-write
    k5 = katomon("run5", config(sim, hook.port, "max_entries = 50\nmax_bytes = 65536\n"
                                   "max_age_days = 1\n"))
    C.check(k5.start(), "start on a big history with a torn last line", k5.text()[-2000:])
    st, body = k5.get("/api/v1/alerts?limit=10000")
    ids = [e["id"] for e in body.get("alerts", [])]
    C.check(st == 200 and body["total"] == 50 and ids[0] == "a300" and ids[-1] == "a251",
            "max_entries = 50: the 50 newest kept (a251..a300); older than max_age_days and the "
            "torn line dropped", {"total": body.get("total"), "first": ids[:1], "last": ids[-1:]})
    C.check("torn or unreadable lines skipped" in k5.text(), "the torn line is reported",
            k5.text()[-1500:])
    size = os.path.getsize(path)
    C.check(size <= 50 * 400 and os.path.exists(path + ".1"),
            f"compacted at start: alerts.jsonl {size} bytes, the old file kept as alerts.jsonl.1",
            os.listdir(STATE))
    sim.set(error_rate=0.07)
    body = rest_wait(k5, "/api/v1/alerts?type=high_error_rate", lambda b: b["total"] > 0, 4)[1]
    C.check(body.get("total", 0) > 0 and all(int(e["id"][1:]) > 300 for e in body["alerts"]),
            "new ids go on after the largest on file", body)
    sim.set(error_rate=0.0)
    stop_clean(k5, "run 5")
    transitions(sim, hook, katomon)
    return C.done()


FAST = """[alert fast]
topic = metrics
path = performance.error_rate
warning = {warning}
critical = 0.10
cooldown = 0.2
message = Fast {{value_pct}}%
"""


def transitions(sim: Sim, hook: Receiver, katomon) -> None:
    """J: the history of a long firing with many re-sends holds its transitions."""
    state = os.path.join(W, "state-j")
    os.makedirs(state, exist_ok=True)

    def conf(warning: float) -> str:
        return config(sim, hook.port, rules=FAST.format(warning=warning), state=state,
                      interval=0.1, test_rule=False)
    hook.posts.clear()
    k = katomon("run6", conf(0.05))
    if not C.check(k.start(), "J: katomon with a 0.2 s cooldown, KATO polled every 0.1 s",
                   k.text()[-2000:]):
        return
    wa = WS(k.port)
    wa.send({"type": "subscribe", "protocol": "katomon/1", "subscriptions": ["system_alerts"]})
    wa.next_type("subscription_ack", 3)
    sent: list = []  # every "fast" alert published, in order

    def take(seconds: float) -> None:
        for m in wa.collect(seconds):
            if isinstance(m, dict) and m.get("type") == "system_alert":
                sent.extend((m["id"], a) for a in m["alerts"] if a.get("type") == "fast")

    def resends_of(level: str) -> int:
        return sum(1 for _, a in sent if a.get("repeats", 0) > 0 and a["level"] == level)

    def until(pred, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not pred():
            take(0.3)
        return bool(pred())

    def history() -> list:
        st, body = k.get("/api/v1/alerts?type=fast&limit=10000")
        return body.get("alerts", []) if st == 200 and isinstance(body, dict) else []

    sim.set(error_rate=0.07)
    # 40 + 15 + 5 re-sends: an hour of the original's 60 s cooldown
    C.check(until(lambda: resends_of("warning") >= 40, 40),
            f"J: 0.07 held: {resends_of('warning')} re-sends published (warning)")
    sim.set(error_rate=0.12)
    C.check(until(lambda: resends_of("error") >= 15, 30),
            f"J: 0.12 held: {resends_of('error')} re-sends published (error)")
    # SIGHUP, rules unchanged: no record, nothing re-fires, the re-sends go on
    # counting on the same record
    before = [(e["id"], e.get("transition")) for e in history()]
    mark = len(k.text())
    k.proc.send_signal(signal.SIGHUP)
    C.check(k.wait_log(r"reloaded ", 5, mark) is not None, "J: SIGHUP -> reloaded",
            k.text()[mark:][-800:])
    n_sent = len(sent)
    seen_before = resends_of("error")
    until(lambda: resends_of("error") >= seen_before + 5, 15)
    after_hup = [a for _, a in sent[n_sent:]]
    C.check(after_hup and all(a.get("repeats", 0) > 0 for a in after_hup) and
            [e["id"] for e in after_hup] == [before[0][0]] * len(after_hup) and
            after_hup[0]["repeats"] > seen_before - 1,
            "J: after SIGHUP with unchanged rules only re-sends of the open record, counting on",
            [(a["id"], a.get("repeats"), a.get("transition")) for a in after_hup][:5])
    C.check([(e["id"], e.get("transition")) for e in history()] == before,
            "J: SIGHUP with unchanged rules adds no record", {"before": before,
                                                             "after": history()[:3]})
    sim.set(error_rate=0.0)
    until(lambda: any(a["state"] == "resolved" for _, a in sent), 10)
    take(0.5)
    hist = list(reversed(history()))
    want = [("fired", "warning", "firing"), ("escalated", "error", "firing"),
            ("resolved", "error", "resolved")]
    got = [(e.get("transition"), e.get("level"), e.get("state")) for e in hist]
    C.check(got == want, f"J: the history of {len(sent)} alerts published holds exactly the "
            "3 transitions: fired, escalated, resolved", got)
    counted = {e["id"]: e.get("repeats") for e in hist}
    live: dict = {}
    for _, a in sent:
        live[a["id"]] = max(live.get(a["id"], 0), a.get("repeats", 0))
    C.check(counted == live and sum(counted.values()) == len(sent) - 3,
            "J: every re-send counted on its record (repeats), last_seen at the last one",
            {"history": counted, "live": live})
    C.check(all(e["last_seen"] >= e["timestamp"] for e in hist) and
            hist[0]["last_seen"] > hist[0]["timestamp"], "J: last_seen moves with the re-sends",
            [(e["timestamp"], e["last_seen"]) for e in hist])
    # a changed rule resolves its alert with a reason
    sim.set(error_rate=0.07)
    until(lambda: sum(1 for _, a in sent if a.get("transition") == "fired") >= 2, 10)
    with open(k.conf_path, "w") as f:
        f.write(conf(0.06))
    mark = len(k.text())
    k.proc.send_signal(signal.SIGHUP)
    C.check(k.wait_log(r"reloaded ", 5, mark) is not None, "J: SIGHUP with the rule changed",
            k.text()[mark:][-800:])
    until(lambda: any(a.get("reason") == "rule changed" for _, a in sent), 5)
    why = [a for _, a in sent if a.get("reason")]
    C.check(len(why) == 1 and why[0]["state"] == "resolved" and
            why[0]["message"].endswith("(resolved: rule changed)"),
            "J: the changed rule's alert resolved: reason 'rule changed'", why)
    until(lambda: sum(1 for _, a in sent if a.get("transition") == "fired") >= 3, 5)
    got = [(e.get("transition"), e.get("reason")) for e in reversed(history())][3:]
    C.check(got == [("fired", None), ("resolved", "rule changed"), ("fired", None)],
            "J: in the history: resolved (rule changed), then fired again under the new rule",
            got)
    sim.set(error_rate=0.0)
    until(lambda: sum(1 for _, a in sent if a.get("transition") == "resolved") >= 3, 10)
    # the webhook got the transitions only, in order
    trans = [bid for bid, a in sent if a.get("repeats") == 0]
    wait_until(lambda: len(hook.posts) >= len(trans), 10)
    posted = [a for p in hook.posts for a in p["body"].get("alerts", [])]
    C.check([a["id"] for a in posted] == [a["id"] for _, a in sent if a.get("repeats") == 0],
            f"J: the webhook posted the {len(posted)} transitions, none of the "
            f"{len(sent) - len(posted)} re-sends", [(a["id"], a.get("repeats")) for a in posted])
    wa.close()
    with open(os.path.join(state, "alerts.jsonl")) as f:
        lines = [json.loads(l) for l in f.read().splitlines()]
    recs = [l for l in lines if "id" in l and "op" not in l]
    C.check(len(recs) == len(history()) and all(l.get("op") == "seen" for l in lines
                                                if l not in recs),
            f"J: alerts.jsonl holds the {len(recs)} records (+ {len(lines) - len(recs)} "
            "'seen' lines counting the re-sends)", lines[-3:])
    stop_clean(k, "run 6")


if __name__ == "__main__":
    sys.exit(main())
