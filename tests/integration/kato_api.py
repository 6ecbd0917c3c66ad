#!/usr/bin/env python3
"""kato_api.py - the kato_api plugin against the KATO simulator and a real
Redis (issue 12: every monitoring route the original dashboard serves).

Real sockets, the real katomon binary ($top_builddir/katomon) with the
plugins of this build ($PLUGIN_BUILD_DIR), tests/sim/kato_sim.py and a
private redis-server (kmtest.Redis), each on an ephemeral port. One
"ok - ..." / "not ok - ..." line per check; exit 0 pass, 1 fail, 77 skip
(no redis-server: automake protocol).

Covered:
  A  GET /api/v1/system/stats (KATO's body, minutes), the 422s of minutes
     (0, 1441, abc); cache-stats, connection-pools, distributed-stm passed
     through; two requests within cache_ttl -> one KATO call; concurrent
     requests joined into one KATO call
  B  GET /api/v1/analytics/overview composed from the metrics topic
  C  GET /api/v1/sessions from KATO's Redis: fields, no large state, sort
     (created_at desc), paging, status and search filters, expired index
     members dropped and counted, the 422s (skip -1, limit 0 / 100000 /
     abc, search too long); /sessions/statistics/overview; /sessions/{id}
     from KATO, from Redis, 404; /sessions/{id}/stm and its 404; bad ids
     ('/', %00, control bytes, 300 B, 10 KiB); /sessions/count stays the
     core's; 501 for out-of-scope routes and for writes; Redis sees only
     reading commands
  D  KATO failing: slow beyond the timeout (504 in time, /health answers
     meanwhile), bad JSON, HTTP 500, dropped connections (502), stopped
     (502 connection refused), KATO's 4xx passed through
  E  Redis failing: hung (SIGSTOP: 503 within redis_timeout), killed (503
     at once, the rest of katomon unaffected), restarted (works again)
  F  redis_url unset (503 naming redis_url); no kato_metrics (overview
     503 naming it); kato_api not loaded (503 naming [plugin kato_api]);
     a Redis with a password and max_sessions (truncated, said so); a
     wrong password (503 naming AUTH)
and after each run of katomon: exit status 0 on SIGTERM and no sanitizer
(ASan/LSan/UBSan) report on its stderr.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import (KATO_INDEX, KATO_PREFIX, Checks, Katomon, Redis, Sim, env, http,  # noqa: E402
                    is_int, is_iso_z, is_num, rmtree, tmpdir, wait_until)

C = Checks()
W = tmpdir("km-kato-api.")
TIMEOUT = 1.0        # [plugin kato_api] timeout
REDIS_TIMEOUT = 1.0  # [plugin kato_api] redis_timeout
CACHE_TTL = 1.0      # [plugin kato_api] cache_ttl
BIG_FIELDS = {"stm", "emotives_accumulator", "metadata_accumulator", "percept_data",
              "predictions", "session_config"}
LIST_FIELDS = {"session_id", "node_name", "node_id", "redis_key", "status",
               "session_reference", "source", "created_at", "last_active", "expires_at",
               "access_count", "user_id"}


def config(sim: Sim, kato_api: str | None, metrics: bool = True) -> str:
    """[core], [http], kato_metrics (optional) and [plugin kato_api] with
    the given lines (None: not loaded)."""
    out = f"""[core]
plugin_dir = {env('PLUGIN_BUILD_DIR')}
state_dir = {W}
log_level = info

[http]
bind = 127.0.0.1
port = 0
web_root = {env('top_srcdir')}/web
"""
    if metrics:
        out += f"\n[plugin kato_metrics]\nurl = {sim.url}\ninterval = 0.5\ntimeout = 1\n"
    if kato_api is not None:
        out += f"\n[plugin kato_api]\nurl = {sim.url}\n{kato_api}\n"
    return out


def stop_clean(k: Katomon, what: str) -> None:
    good, detail = k.stop()
    C.check(good, f"{what}: SIGTERM -> exit status 0, no sanitizer report", detail)


def timed_get(k: Katomon, path: str, timeout: float = 10.0) -> tuple[int, object, float]:
    t0 = time.monotonic()
    st, body = k.get(path, timeout=timeout)
    return st, body, time.monotonic() - t0


def detail_of(body: object) -> str:
    d = body.get("detail") if isinstance(body, dict) else None
    return d if isinstance(d, str) else json.dumps(d)


def is_422(body: object, name: str, typ: str, inp: str) -> bool:
    try:
        d = body["detail"][0]
        return (len(body["detail"]) == 1 and d["type"] == typ and d["loc"] == ["query", name]
                and isinstance(d["msg"], str) and d["input"] == inp)
    except (KeyError, TypeError, IndexError):
        return False


def requests_to(sim: Sim, path: str) -> int:
    return sim.ctl("state").get("requests", {}).get(path, {}).get("count", 0)


def main() -> int:
    Redis.skip_unless_available()
    sim = Sim(W)
    daemons: list = []
    redises: list = []
    try:
        if not C.check(sim.start(), "the KATO simulator starts"):
            return C.done()
        return run(sim, daemons, redises)
    finally:
        for p in daemons:  # a run cut short: leave nothing behind
            if p.alive():
                p.kill9()
        for r in redises:
            if r.proc and r.proc.poll() is None:
                try:
                    os.kill(r.proc.pid, signal.SIGCONT)
                except OSError:
                    pass
            r.close()
        sim.stop()
        if C.failed == 0:
            rmtree(W)
        else:
            C.note(f"kept {W} for inspection")


def run(sim: Sim, daemons: list, redises: list) -> int:
    def katomon(name: str, conf: str) -> Katomon:
        d = Katomon(W, name, conf)
        daemons.append(d)
        return d

    def redis(**kw) -> Redis:
        r = Redis(workdir=W, **kw)
        redises.append(r)
        return r

    r = redis()
    lines = (f"timeout = {TIMEOUT}\ncache_ttl = {CACHE_TTL}\nredis_url = {r.url}\n"
             f"redis_timeout = {REDIS_TIMEOUT}\n")
    k = katomon("main", config(sim, lines))
    if not C.check(k.start(), f"katomon starts with kato_api (port {k.port})", k.text()[-3000:]):
        return C.done()
    C.check("plugin kato_api 1.0 loaded" in k.text(), "kato_api is loaded", k.text()[-2000:])

    system_routes(k, sim)
    overview(k, sim)
    sessions(k, sim, r)
    kato_failures(k, sim, r)
    redis_failures(k, sim, r)
    C.check(k.alive(), "katomon is still running after every failure")
    stop_clean(k, "main run")

    other_configs(sim, katomon, redis)

    # KATO stopped: connection refused, named, at once (the last: the
    # simulator is gone afterwards)
    k2 = katomon("nokato", config(sim, lines))
    C.check(k2.start(), "katomon starts (for KATO stopped)", k2.text()[-2000:])
    sim.stop()
    st, body, took = timed_get(k2, "/api/v1/system/cache-stats")
    C.check(st == 502 and "is unreachable" in detail_of(body) and sim.url in detail_of(body)
            and took < TIMEOUT + 1.5,
            f"KATO stopped: /system/cache-stats -> 502 naming KATO's URL and the cause "
            f"({took:.2f} s)", body)
    st, body = k2.get("/health")
    C.check(st == 200 and body.get("status") == "healthy", "KATO stopped: /health is fine", body)
    stop_clean(k2, "KATO-stopped run")
    return C.done()


# ---------------------------------------------------------------------------
# A: /system/...
# ---------------------------------------------------------------------------

def system_routes(k: Katomon, sim: Sim) -> None:
    st, body = k.get("/api/v1/system/stats")
    C.check(st == 200 and body.get("time_range_minutes") == 10 and
            isinstance(body.get("time_series"), dict) and len(body["time_series"]) == 20 and
            {"timestamp", "current_status", "summary"} <= set(body),
            "GET /api/v1/system/stats -> KATO's /stats body, minutes 10 by default", body)
    st, body = k.get("/api/v1/system/stats?minutes=1440")
    C.check(st == 200 and body.get("time_range_minutes") == 1440,
            "GET /api/v1/system/stats?minutes=1440 -> KATO's body for 1440", body)
    for raw, typ in (("0", "greater_than_equal"), ("1441", "less_than_equal"),
                     ("abc", "int_parsing"), ("-3", "greater_than_equal"),
                     ("99999999999999999999", "less_than_equal")):
        st, body = k.get(f"/api/v1/system/stats?minutes={raw}")
        C.check(st == 422 and is_422(body, "minutes", typ, raw),
                f"minutes={raw} -> 422 FastAPI-style ({typ})", body)

    for route, kato, keys in (
            ("cache-stats", "/cache/stats", {"cache_performance", "cache_health", "timestamp"}),
            ("connection-pools", "/connection-pools",
             {"status", "health", "pool_statistics", "timestamp"}),
            ("distributed-stm", "/distributed-stm/stats",
             {"status", "distributed_stm_enabled", "timestamp"})):
        st, body = k.get(f"/api/v1/system/{route}")
        _, want = http("GET", sim.url + kato)
        C.check(st == 200 and isinstance(body, dict) and set(body) == set(want) and
                keys <= set(body), f"GET /api/v1/system/{route} -> KATO's {kato} body", body)

    # cache: two requests within cache_ttl -> one KATO call
    sim.ctl("reset_counters", {})
    a = k.get("/api/v1/system/stats?minutes=7")
    b = k.get("/api/v1/system/stats?minutes=7")
    C.check(a[0] == b[0] == 200 and a[1] == b[1] and requests_to(sim, "/stats") == 1,
            "two requests within cache_ttl -> the same body, one KATO call",
            sim.ctl("state").get("requests", {}).get("/stats"))
    got = wait_until(lambda: k.get("/api/v1/system/stats?minutes=7")[0] == 200 and
                     requests_to(sim, "/stats") == 2, CACHE_TTL + 3)
    C.check(bool(got), "after cache_ttl the next request asks KATO again")
    k.get("/api/v1/system/stats?minutes=8")
    C.check(requests_to(sim, "/stats") == 3, "another minutes value is another KATO call")

    # concurrent requests for one path: joined into one KATO call
    sim.ctl("reset_counters", {})
    sim.mode("slow", delay=0.4, paths=["/connection-pools"])
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(
        k.get("/api/v1/system/connection-pools"))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    sim.mode("normal")
    C.check(len(results) == 6 and all(s == 200 for s, _ in results) and
            requests_to(sim, "/connection-pools") == 1,
            "6 concurrent requests while KATO is slow -> 6 answers, one KATO call",
            {"statuses": [s for s, _ in results],
             "kato calls": requests_to(sim, "/connection-pools")})

    # KATO's own error body on a 200 is KATO's business: passed through
    # (once the body cached above has expired)
    sim.mode("error_body", paths=["/cache/stats"])
    last: list = [None]

    def error_body() -> bool:
        last[0] = k.get("/api/v1/system/cache-stats")
        return last[0][0] == 200 and last[0][1].get("cache_performance", {}).get(
            "status") == "error"
    got = wait_until(error_body, CACHE_TTL + 3)
    sim.mode("normal")
    C.check(bool(got), "KATO's error-path body (200) is passed through as KATO sent it",
            last[0])


# ---------------------------------------------------------------------------
# B: /analytics/overview
# ---------------------------------------------------------------------------

def overview(k: Katomon, sim: Sim) -> None:
    got = wait_until(lambda: k.get("/api/v1/analytics/overview")[0] == 200, 5)
    st, body = k.get("/api/v1/analytics/overview")
    _, m = http("GET", sim.url + "/metrics")
    if not C.check(bool(got) and st == 200, "GET /api/v1/analytics/overview -> 200", body):
        return
    pm = m["processor_manager"]
    C.check(set(body) == {"timestamp", "sessions", "processors", "vector_collections",
                          "performance", "resources", "redis"},
            "overview: exactly the original's keys", sorted(body))
    C.check(is_num(body["timestamp"]) and set(body["sessions"]) == {"active", "total_created"}
            and all(is_num(v) for v in body["sessions"].values()),
            "overview: timestamp and sessions {active, total_created} from /metrics", body)
    C.check(body["processors"] == {"total": pm["total_processors"],
                                   "processor_ids": [p["processor_id"]
                                                     for p in pm["processors"]]},
            "overview: processors from processor_manager", body["processors"])
    C.check(body["vector_collections"] == {"total": 0, "collections": []} and
            body["redis"] == {"connected_clients": 0, "used_memory_human": "unknown"},
            "overview: vector_collections and redis: zero / empty / unknown (not read)", body)
    C.check(set(body["performance"]) == set(m["performance"]) and
            body["performance"]["error_rate"] == m["performance"]["error_rate"] and
            body["resources"] == m["resources"],
            "overview: performance and resources as KATO sent them",
            {"katomon": body["performance"], "kato": m["performance"]})


# ---------------------------------------------------------------------------
# C: sessions
# ---------------------------------------------------------------------------

def listing(k: Katomon, query: str = "") -> tuple[int, dict]:
    return k.get("/api/v1/sessions" + query)


def sessions(k: Katomon, sim: Sim, r: Redis) -> None:
    now = time.time()
    # 5 sessions, created 1..5 minutes ago, nodes a, b, a, b, c
    nodes = ["node-a", "node-b", "node-a", "node-b", "node-c"]
    ids = [r.write_kato_session(node_id=nodes[i], created_at=now - 60 * (i + 1),
                                last_accessed=now - 10 * i, access_count=i + 1)
           for i in range(5)]
    stale = [r.add_stale_index_member() for _ in range(2)]
    # KATO's active index is read with SSCAN: the listing is wait-until-fresh
    got = wait_until(lambda: listing(k)[1].get("total") == 5, CACHE_TTL + 5)
    st, body = listing(k)
    if not C.check(bool(got) and st == 200, "GET /api/v1/sessions -> 200, 5 sessions", body):
        return
    C.check([s["session_id"] for s in body["sessions"]] == ids,
            "sorted by created_at, newest first (and says so)", [body.get("sort")] +
            [s["session_id"][-13:] for s in body["sessions"]])
    C.check(body.get("sort") == "created_at desc", "sort: created_at desc", body.get("sort"))
    C.fields(body, {"sessions": list, "total": lambda v: v == 5, "skip": lambda v: v == 0,
                    "limit": lambda v: v == 50, "page": lambda v: v == 1,
                    "pages": lambda v: v == 1, "source": lambda v: v == "redis",
                    "expired_index_members": lambda v: v == 2,
                    "index_members": lambda v: v == 7, "truncated": lambda v: v is False,
                    "generated_at": is_iso_z}, "listing")
    s0 = body["sessions"][0]
    C.check(set(s0) == LIST_FIELDS, "each session: the original's fields + created_at, "
            "last_active, expires_at, access_count; none of the large state", sorted(s0))
    C.fields(s0, {"session_id": lambda v: v == ids[0], "node_name": lambda v: v == "node-a",
                  "redis_key": lambda v: v == KATO_PREFIX + ids[0],
                  "status": lambda v: v == "active",
                  "session_reference": lambda v: v == ids[0],
                  "source": lambda v: v == "redis", "created_at": str,
                  "last_active": str, "expires_at": str, "access_count": lambda v: v == 1,
                  "user_id": lambda v: v is None}, "first session")
    C.check(len(json.dumps(body)) < 8000 and not (BIG_FIELDS & set().union(
        *[set(s) for s in body["sessions"]])),
            f"the answer is small ({len(json.dumps(body))} bytes for 5 sessions of "
            "~100 KB each in Redis)")
    C.check(not any(s["session_id"] in stale for s in body["sessions"]),
            "expired index members are not listed")

    # paging
    st, body = listing(k, "?limit=2")
    C.check(st == 200 and [s["session_id"] for s in body["sessions"]] == ids[:2] and
            body["pages"] == 3 and body["page"] == 1 and body["total"] == 5,
            "limit=2: the first 2, page 1 of 3", body)
    st, body = listing(k, "?skip=2&limit=2")
    C.check(st == 200 and [s["session_id"] for s in body["sessions"]] == ids[2:4] and
            body["page"] == 2 and body["skip"] == 2, "skip=2&limit=2: the 3rd and 4th, page 2",
            body)
    st, body = listing(k, "?skip=4&limit=2")
    C.check(st == 200 and [s["session_id"] for s in body["sessions"]] == ids[4:] and
            body["page"] == 3, "skip=4&limit=2: the last one, page 3", body)
    st, body = listing(k, "?skip=50")
    C.check(st == 200 and body["sessions"] == [] and body["total"] == 5,
            "skip past the end: no sessions, total 5", body)
    # filters
    st, body = listing(k, "?search=NODE-B")
    C.check(st == 200 and [s["session_id"] for s in body["sessions"]] == [ids[1], ids[3]] and
            body["total"] == 2, "search=NODE-B: the node-b sessions (case-insensitive)", body)
    part = ids[2][8:20]
    st, body = listing(k, f"?search={part}")
    C.check(st == 200 and [s["session_id"] for s in body["sessions"]] == [ids[2]],
            "search=<part of a session id>: that session", body)
    st, body = listing(k, "?status=active&search=node-a&limit=1")
    C.check(st == 200 and body["total"] == 2 and len(body["sessions"]) == 1 and
            body["pages"] == 2, "status=active&search=node-a&limit=1: 2 found, 1 shown", body)
    st, body = listing(k, "?status=idle")
    C.check(st == 200 and body["total"] == 0 and body["sessions"] == [],
            "status=idle: none (KATO's index holds active sessions only)", body)
    # 422s
    for q, name, typ, raw in (("skip=-1", "skip", "greater_than_equal", "-1"),
                              ("limit=0", "limit", "greater_than_equal", "0"),
                              ("limit=100000", "limit", "less_than_equal", "100000"),
                              ("limit=201", "limit", "less_than_equal", "201"),
                              ("limit=abc", "limit", "int_parsing", "abc"),
                              ("skip=1.5", "skip", "int_parsing", "1.5")):
        st, body = listing(k, "?" + q)
        C.check(st == 422 and is_422(body, name, typ, raw), f"{q} -> 422 ({typ})", body)
    for n in (300, 3000):
        st, body = listing(k, "?search=" + "x" * n)
        C.check(st == 422 and body["detail"][0]["type"] == "string_too_long",
                f"search of {n} characters -> 422 string_too_long", body)

    # statistics
    st, body = k.get("/api/v1/sessions/statistics/overview")
    C.fields(body, {"redis_total": lambda v: v == 7, "redis_active": lambda v: v == 5,
                    "redis_idle": lambda v: v == 0, "redis_expired": lambda v: v == 2,
                    "source": lambda v: v == "redis", "note": str, "timestamp": is_iso_z},
             "GET /api/v1/sessions/statistics/overview")

    # one session
    sim_id = sim.create(1)[0]
    sim.ctl("sessions/stm", {"session_id": sim_id, "stm": [["a", "b"], ["c"]]})
    st, body = k.get(f"/api/v1/sessions/{sim_id}")
    _, want = http("GET", f"{sim.url}/sessions/{sim_id}")
    C.check(st == 200 and body.get("session_id") == sim_id and set(body) == set(want),
            "GET /api/v1/sessions/{id} of a KATO session -> KATO's body", body)
    st, body = k.get(f"/api/v1/sessions/{ids[0]}")
    C.check(st == 200 and body.get("source") == "redis" and body.get("session_id") == ids[0]
            and body.get("metadata") == {"source": "kmtest"} and body.get("ttl_seconds") == 3600
            and not (BIG_FIELDS & set(body)) and body.get("node_name") == "node-a",
            "GET /api/v1/sessions/{id} KATO does not know -> the session from Redis "
            "(listing fields + metadata, ttl_seconds)", body)
    st, body = k.get("/api/v1/sessions/session-nosuch")
    C.check(st == 404 and body == {"detail": "Session session-nosuch not found"},
            "GET /api/v1/sessions/{unknown} -> 404 Session ... not found", body)
    st, body = k.get(f"/api/v1/sessions/{stale[0]}")
    C.check(st == 404, "an expired index member -> 404", body)
    st, body = k.get(f"/api/v1/sessions/{sim_id}/stm")
    _, want = http("GET", f"{sim.url}/sessions/{sim_id}/stm")
    C.check(st == 200 and body == want and body.get("stm") == [["a", "b"], ["c"]],
            "GET /api/v1/sessions/{id}/stm -> KATO's body", body)
    st, body = k.get("/api/v1/sessions/session-nosuch/stm")
    C.check(st == 404 and "session-nosuch" in detail_of(body) and
            "not found" in detail_of(body), "stm of an unknown session -> 404 with KATO's "
            "error as detail", body)
    st, body = k.get("/api/v1/sessions/count")
    C.check(st == 200 and body == {"active_session_count": 1} or
            wait_until(lambda: k.get("/api/v1/sessions/count")[1] ==
                       {"active_session_count": 1}, 3),
            "GET /api/v1/sessions/count is still the core's (exact beats the prefix)", body)

    # bad ids: a clear error, no crash
    for path, want_st, what in (
            ("/api/v1/sessions/a%2Fb", 404, "'/' (encoded)"),
            ("/api/v1/sessions/a/b/c", 404, "'/'"),
            ("/api/v1/sessions/a%00b", 400, "%00"),
            ("/api/v1/sessions/a%01b", 404, "a control byte"),
            ("/api/v1/sessions/" + "s" * 300, 404, "300 bytes"),
            ("/api/v1/sessions/" + "s" * 10240, 414, "10 KiB")):
        st, body = k.get(path)
        C.check(st == want_st and isinstance(body, dict) and len(detail_of(body)) > 10,
                f"session id with {what} -> {want_st} with a clear detail", body)
    st, body = k.get("/health")
    C.check(st == 200 and k.alive(), "after the bad ids katomon is up", body)

    # out of scope, and writes
    for method, path, word in (
            ("DELETE", f"/api/v1/sessions/{ids[0]}", "never writes"),
            ("POST", "/api/v1/sessions/bulk-delete", "never writes"),
            ("POST", "/api/v1/sessions/redis-keys/cleanup", "never writes"),
            ("GET", "/api/v1/sessions/redis-keys/diagnostic", "Redis"),
            ("GET", "/api/v1/databases/qdrant/collections", "Qdrant"),
            ("POST", "/api/v1/databases/redis/flush", "never writes"),
            ("GET", "/api/v1/analytics/patterns/frequency?limit=5", "analytics")):
        st, body = k.request(method, path, body={"session_ids": ids} if method == "POST"
                             else None)
        C.check(st == 501 and detail_of(body).startswith(
            f"katomon does not serve {method} {path.split('?')[0]}: ") and word in detail_of(body),
                f"{method} {path.split('?')[0]} -> 501 naming why", body)
    C.check(r.kato_session(ids[0]) is not None, "the session is still in Redis after DELETE")

    # Redis saw reading commands only (from katomon; the test's own are
    # CONFIG/INFO here): a new listing (once the last one expired), one
    # session
    before = listing(k)[1].get("generated_at")
    r.cmd("CONFIG", "RESETSTAT")
    wait_until(lambda: listing(k)[1].get("generated_at") != before, CACHE_TTL + 3)
    k.get(f"/api/v1/sessions/{ids[1]}")
    info = r.cmd("INFO", "commandstats")
    cmds = {line.split(":")[0][len("cmdstat_"):].split("|")[0]  # config|resetstat
            for line in info.splitlines() if line.startswith("cmdstat_")}
    C.check(cmds and cmds <= {"scard", "sscan", "mget", "get", "config", "info", "ping",
                              "auth", "select"} and "sscan" in cmds and "mget" in cmds,
            "Redis ran only reading commands (SCARD, SSCAN, MGET, GET) for katomon",
            sorted(cmds))

    # Redis closing katomon's idle connection (its `timeout`) is no failure
    before = listing(k)[1].get("generated_at")
    r.cmd("CLIENT", "KILL", "TYPE", "normal")  # every client but the caller
    statuses: list = []

    def relisted() -> bool:
        st, body = listing(k)
        statuses.append(st)
        return body.get("generated_at") not in (None, before)
    got = wait_until(relisted, CACHE_TTL + 3)
    C.check(bool(got) and set(statuses) == {200},
            "Redis closes the idle connection: the next listing reconnects, no error",
            statuses)


# ---------------------------------------------------------------------------
# D: KATO failing
# ---------------------------------------------------------------------------

def kato_failures(k: Katomon, sim: Sim, r: Redis) -> None:
    # each case asks for a minutes value nothing asked before: never cached
    # slow beyond the timeout: 504 in time; the daemon answers meanwhile
    sim.ctl("reset_counters", {})
    sim.mode("slow", delay=TIMEOUT + 2, paths=["/stats"])
    slow: list = []
    t = threading.Thread(target=lambda: slow.append(
        timed_get(k, "/api/v1/system/stats?minutes=13")))
    t.start()
    wait_until(lambda: requests_to(sim, "/stats") == 1, 5)  # KATO got it, is sleeping
    st, body, took = timed_get(k, "/health")
    C.check(st == 200 and took < 0.5, f"while KATO is slow, /health answers ({took:.2f} s)")
    st, body, took = timed_get(k, "/api/v1/system/connection-pools")
    C.check(st == 200 and took < 1.0,
            f"while KATO is slow on /stats, /system/connection-pools answers ({took:.2f} s)")
    t.join(10)
    st, body, took = slow[0] if slow else (0, None, 99.0)
    C.check(st == 504 and "did not answer GET /stats?minutes=13 within" in detail_of(body) and
            sim.url in detail_of(body) and TIMEOUT - 0.1 < took < TIMEOUT + 1.5,
            f"KATO slower than timeout -> 504 naming KATO and the timeout ({took:.2f} s)", body)
    sim.mode("bad_json", paths=["/stats"])
    st, body = k.get("/api/v1/system/stats?minutes=14")
    C.check(st == 502 and "bad JSON" in detail_of(body) and sim.url in detail_of(body),
            "KATO sends bad JSON -> 502 saying so", body)
    sim.mode("http500", paths=["/stats"])
    st, body = k.get("/api/v1/system/stats?minutes=15")
    C.check(st == 502 and "HTTP 500" in detail_of(body), "KATO answers 500 -> 502 saying so",
            body)
    sim.mode("down", paths=["/stats"])
    st, body, took = timed_get(k, "/api/v1/system/stats?minutes=16")
    C.check(st == 502 and "unreachable" in detail_of(body) and took < TIMEOUT + 1.5,
            f"KATO drops the connection -> 502 with the cause ({took:.2f} s)", body)
    # a session while KATO drops everything: Redis still answers
    sim.mode("down")
    sid = r.write_kato_session(node_id="node-z")
    st, body = k.get(f"/api/v1/sessions/{sid}")
    C.check(st == 200 and body.get("source") == "redis" and "unreachable" in
            body.get("kato_error", ""), "KATO down: /sessions/{id} from Redis, with KATO's "
            "error noted", body)
    st, body = k.get("/api/v1/sessions/session-nosuch/stm")
    C.check(st == 502 and "unreachable" in detail_of(body), "KATO down: stm -> 502", body)
    sim.mode("normal")
    # errors are not cached: KATO is back at once
    st, body = k.get("/api/v1/system/stats?minutes=16")
    C.check(st == 200 and body.get("time_range_minutes") == 16,
            "KATO back: answers again at once (errors are not cached)", body)


# ---------------------------------------------------------------------------
# E: Redis failing
# ---------------------------------------------------------------------------

def redis_failures(k: Katomon, sim: Sim, r: Redis) -> None:
    # hung: the connection makes no progress -> dropped after redis_timeout
    # (the first polls may still get the listing of the last cache_ttl)
    os.kill(r.proc.pid, signal.SIGSTOP)
    try:
        last: list = [(0, None, 0.0)]

        def failed() -> bool:
            last[0] = timed_get(k, "/api/v1/sessions")
            return last[0][0] != 200
        wait_until(failed, CACHE_TTL + REDIS_TIMEOUT + 5)
        st, body, took = last[0]
        C.check(st == 503 and f"did not answer within {REDIS_TIMEOUT:g} s" in detail_of(body)
                and f"127.0.0.1:{r.port}" in detail_of(body) and took < REDIS_TIMEOUT + 1.5,
                f"Redis hung -> 503 within redis_timeout ({took:.2f} s)", body)
        st, body, took = timed_get(k, "/api/v1/system/stats")
        C.check(st == 200 and took < 1.0, "Redis hung: the rest of katomon is unaffected")
    finally:
        os.kill(r.proc.pid, signal.SIGCONT)
    # killed: refused at once
    r.kill()
    got = wait_until(lambda: k.get("/api/v1/sessions")[0] == 503, REDIS_TIMEOUT + 10)
    st, body, took = timed_get(k, "/api/v1/sessions/statistics/overview")
    C.check(bool(got) and st == 503 and "Redis at 127.0.0.1" in detail_of(body) and
            took < REDIS_TIMEOUT + 1.0,
            f"Redis killed -> 503 with the reason ({took:.2f} s)", body)
    for path in ("/health", "/api/v1/system/metrics", "/api/v1/analytics/overview",
                 "/api/v1/system/stats"):
        st, _ = k.get(path)
        C.check(st == 200, f"Redis killed: GET {path} -> 200")
    # restarted (empty): works again after the backoff
    r.restart()
    sid = r.write_kato_session(node_id="node-back")
    got = wait_until(lambda: listing(k)[1].get("total") == 1, 15)
    st, body = listing(k)
    C.check(bool(got) and body["sessions"][0]["session_id"] == sid,
            "Redis restarted: the listing works again (reconnected)", body)
    C.check("connected to Redis at" in k.text(), "the reconnection is logged once",
            k.text()[-1500:])


# ---------------------------------------------------------------------------
# F: other configurations
# ---------------------------------------------------------------------------

def other_configs(sim: Sim, katomon, redis) -> None:
    # no redis_url, no kato_metrics
    k = katomon("noredis", config(sim, f"timeout = {TIMEOUT}", metrics=False))
    if C.check(k.start(), "katomon starts with kato_api without redis_url", k.text()[-2000:]):
        for path in ("/api/v1/sessions", "/api/v1/sessions/statistics/overview"):
            st, body = k.get(path)
            C.check(st == 503 and "set redis_url in [plugin kato_api]" in detail_of(body),
                    f"no redis_url: GET {path} -> 503 naming redis_url", body)
        sid = sim.create(1)[0]
        st, body = k.get(f"/api/v1/sessions/{sid}")
        C.check(st == 200 and body.get("session_id") == sid,
                "no redis_url: /sessions/{id} still comes from KATO", body)
        st, body = k.get("/api/v1/sessions/session-nosuch")
        C.check(st == 404, "no redis_url: an unknown session -> 404", body)
        st, body = k.get("/api/v1/analytics/overview")
        C.check(st == 503 and "kato_metrics" in detail_of(body),
                "no kato_metrics: /analytics/overview -> 503 naming it", body)
        st, body = k.get("/api/v1/system/stats?minutes=2")
        C.check(st == 200 and body.get("time_range_minutes") == 2,
                "no redis_url: /system/stats works", body)
        stop_clean(k, "run without redis_url")

    # kato_api not loaded: its routes say so
    k = katomon("noapi", config(sim, None))
    if C.check(k.start(), "katomon starts without kato_api", k.text()[-2000:]):
        for path in ("/api/v1/system/stats?minutes=5", "/api/v1/system/cache-stats",
                     "/api/v1/analytics/overview", "/api/v1/sessions",
                     "/api/v1/sessions/statistics/overview", "/api/v1/sessions/x",
                     "/api/v1/sessions/x/stm"):
            st, body = k.get(path)
            C.check(st == 503 and "enable [plugin kato_api]" in detail_of(body),
                    f"kato_api not loaded: GET {path.split('?')[0]} -> 503 naming it", body)
        st, body = k.request("DELETE", "/api/v1/sessions/x")
        C.check(st == 501, "kato_api not loaded: DELETE a session -> 501 all the same", body)
        stop_clean(k, "run without kato_api")

    # a Redis with a password; max_sessions caps the listing
    rp = redis(password="s3cr3t/+")
    ids = [rp.write_kato_session(node_id="np", created_at=time.time() - i, big_state=False)
           for i in range(5)]
    k = katomon("auth", config(sim, f"redis_url = {rp.url}\nmax_sessions = 3\n"
                                    "redis_timeout = 1\n"))
    if C.check(k.start(), "katomon starts with a password in redis_url", k.text()[-2000:]):
        st, body = listing(k)
        C.check(st == 200 and body.get("truncated") is True and body.get("scanned") == 3 and
                body.get("total") == 3 and body.get("index_members") == 5 and
                "max_sessions" in body.get("note", "") and
                {s["session_id"] for s in body["sessions"]} <= set(ids),
                "AUTH with the url's password; max_sessions = 3 -> 3 of 5 read, truncated, "
                "said so", body)
        stop_clean(k, "run with a password")
    bad = rp.url.replace("s3cr3t", "wrong")
    k = katomon("badauth", config(sim, f"redis_url = {bad}\nredis_timeout = 1\n"))
    if C.check(k.start(), "katomon starts with a wrong password in redis_url", k.text()[-2000:]):
        st, body, took = timed_get(k, "/api/v1/sessions")
        C.check(st == 503 and "AUTH" in detail_of(body) and took < 2.5,
                "a wrong password -> 503 naming AUTH", body)
        stop_clean(k, "run with a wrong password")
    k = katomon("badurl", config(sim, "redis_url = redis://redis.example:6379/0\n"))
    C.check(k.start() and "plugin kato_api" in k.text() and "numeric" in k.text(),
            "redis_url with a host name: kato_api is disabled, saying why (no blocking "
            "lookup)", k.text()[-1500:])
    st, body = k.get("/api/v1/plugins")
    ka = [p for p in body.get("plugins", []) if p["name"] == "kato_api"] if st == 200 else []
    C.check(ka and ka[0]["state"] == "disabled" and "numeric" in (ka[0].get("reason") or ""),
            "GET /api/v1/plugins: kato_api disabled, with the reason", ka)
    stop_clean(k, "run with a bad redis_url")


if __name__ == "__main__":
    sys.exit(main())
