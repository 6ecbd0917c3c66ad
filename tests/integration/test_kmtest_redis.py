#!/usr/bin/env python3
"""Self-test of kmtest.Redis: the private redis-server, the RESP2 client and
the writers of KATO's session keys (reference/kato-redis.md).

    python3 tests/integration/test_kmtest_redis.py

Exit status: 0 pass, 1 fail, 77 skipped (redis-server is not installed).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import (KATO_INDEX, KATO_PREFIX, Checks, Redis, RedisError,  # noqa: E402
                    wait_until)

SESSION_ID = re.compile(r"^session-[0-9a-f]{32}-[0-9]{13}$")
ISO_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?\+00:00$")
SESSION_FIELDS = {"session_id", "node_id", "created_at", "last_accessed", "expires_at",
                  "ttl_seconds", "access_count", "time", "metadata", "stm",
                  "emotives_accumulator", "metadata_accumulator", "percept_data",
                  "predictions", "session_config"}
BIG_FIELDS = ("stm", "emotives_accumulator", "metadata_accumulator", "percept_data",
              "predictions", "session_config")


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def sscan_all(r: Redis, key: str) -> list:
    """Every member through SSCAN (cursor until 0), as a consumer would."""
    out, cursor = [], "0"
    while True:
        cursor, members = r.cmd("SSCAN", key, cursor, "COUNT", 1)
        out += members
        if cursor == "0":
            return out


def test_client(C: Checks, r: Redis) -> None:
    C.check(r.cmd("PING") == "PONG", "PING -> PONG")
    C.check(r.url == f"redis://127.0.0.1:{r.port}/0" and r.port > 0, "url", r.url)
    conf = {k: r.cmd("CONFIG", "GET", k)[1] for k in ("save", "appendonly", "bind",
                                                       "daemonize", "requirepass")}
    C.check(conf == {"save": "", "appendonly": "no", "bind": "127.0.0.1", "daemonize": "no",
                     "requirepass": ""},
            "no persistence, loopback only, foreground, no password", conf)
    C.check(r.cmd("SET", "k", "wört ✓") == "OK" and r.cmd("GET", "k") == "wört ✓",
            "SET/GET round-trips UTF-8 (simple string OK, bulk string)")
    C.check(r.cmd("GET", "missing") is None, "GET of a missing key -> None (null bulk)")
    C.check(r.cmd("INCR", "n") == 1 and r.cmd("INCRBY", "n", 41) == 42, "integer replies")
    C.check(r.cmd("SET", "e", "") == "OK" and r.cmd("GET", "e") == "", "empty bulk string")
    C.check(r.cmd("SET", "b", b"\xff\x00\xfe") == "OK" and r.cmd("GET", "b") == b"\xff\x00\xfe",
            "binary value comes back as bytes")
    big = "y" * (1 << 20)
    C.check(r.cmd("SET", "big", big) == "OK" and r.cmd("GET", "big") == big,
            "1 MiB value round-trips")
    C.check(r.cmd("MGET", "k", "missing", "n") == ["wört ✓", None, "42"],
            "MGET: array with a null member")
    try:
        r.cmd("HGET", "k", "f")
        C.fail("an error reply raises RedisError")
    except RedisError as e:
        C.check("WRONGTYPE" in str(e), "an error reply raises RedisError", str(e))
    out = r.pipeline([("PING",), ("NOSUCHCOMMAND",), ("GET", "n")])
    C.check(out[0] == "PONG" and isinstance(out[1], RedisError) and out[2] == "42",
            "pipeline: replies in order, errors returned in place", [repr(x) for x in out])
    C.check(r.cmd("PING") == "PONG", "the connection stays usable after errors")
    r.cmd("FLUSHALL")


def test_kato_keys(C: Checks, r: Redis) -> None:
    created = datetime.datetime(2025, 11, 13, 12, 0, 0, 500000, tzinfo=datetime.timezone.utc)
    a = r.write_kato_session(node_id="node-a", ttl=600, created_at=created,
                             last_accessed=created.timestamp() + 30, access_count=7,
                             metadata={"user": "alice"})
    b = r.write_kato_session(node_id="node-b", ttl=120, big_state=False)
    stale = r.add_stale_index_member()
    ids = [a, b, stale]
    C.check(all(SESSION_ID.match(i) for i in ids) and len(set(ids)) == 3,
            "session ids have KATO's form session-<32 hex>-<ms>", ids)
    C.check(a.endswith(f"-{int(created.timestamp() * 1000)}"),
            "the id's ms part is created_at", a)

    members = sscan_all(r, KATO_INDEX)
    C.check(sorted(members) == sorted(ids) and r.cmd("SCARD", KATO_INDEX) == 3,
            "SSCAN of the active index sees both sessions and the stale member", members)
    docs = r.cmd("MGET", *(KATO_PREFIX + i for i in ids))
    C.check(isinstance(docs, list) and len(docs) == 3 and docs[2] is None
            and all(isinstance(d, str) for d in docs[:2]),
            "MGET: two session JSONs and nil for the stale member",
            [None if d is None else d[:60] for d in docs])
    da, db = (json.loads(d) for d in docs[:2])
    C.check(set(da) >= SESSION_FIELDS and set(db) >= SESSION_FIELDS,
            "session JSON has every field reference/kato-redis.md lists",
            sorted(SESSION_FIELDS - set(da)))
    C.check(da["session_id"] == a and da["node_id"] == "node-a" and da["ttl_seconds"] == 600
            and da["access_count"] == 7 and da["metadata"] == {"user": "alice"},
            "session JSON carries the given values", {k: da[k] for k in
                                                      ("session_id", "node_id", "ttl_seconds",
                                                       "access_count", "metadata")})
    C.check(da["created_at"] == "2025-11-13T12:00:00.500000+00:00"
            and da["last_accessed"] == "2025-11-13T12:00:30.500000+00:00"
            and da["expires_at"] == "2025-11-13T12:10:30.500000+00:00"
            and all(ISO_OFFSET.match(db[k]) for k in ("created_at", "last_accessed",
                                                       "expires_at")),
            "times are ISO 8601 with an offset; expires_at = last_accessed + ttl",
            {k: (da[k], db[k]) for k in ("created_at", "last_accessed", "expires_at")})
    big = sum(len(json.dumps(da[k])) for k in BIG_FIELDS)
    C.check(big > 50000 and len(docs[0]) > 50000 and len(docs[1]) < 5000,
            "big_state makes the working state large; big_state=False keeps it small",
            (big, len(docs[0]), len(docs[1])))
    C.check(isinstance(da["stm"], list) and all(isinstance(ev, list) and
                                                all(isinstance(x, str) for x in ev)
                                                for ev in da["stm"]),
            "stm is a list of events, each a list of strings")
    ta, tb = r.cmd("TTL", KATO_PREFIX + a), r.cmd("TTL", KATO_PREFIX + b)
    C.check(590 <= ta <= 600 and 110 <= tb <= 120, "session keys have their TTL", (ta, tb))
    na, nb = f"{KATO_PREFIX}node:node-a:active", f"{KATO_PREFIX}node:node-b:active"
    C.check(r.cmd("GET", na) == a and r.cmd("GET", nb) == b
            and 590 <= r.cmd("TTL", na) <= 600 and 110 <= r.cmd("TTL", nb) <= 120,
            "node keys name the session, with the same TTL")
    C.check(r.cmd("EXISTS", KATO_PREFIX + stale) == 0 and r.cmd("TYPE", KATO_INDEX) == "set",
            "the stale member has no key; the index is a set")
    C.check(r.kato_session(b)["session_id"] == b and r.kato_session(stale) is None,
            "kato_session() reads a session back")
    C.check(r.cmd("DBSIZE") == 5, "5 keys: 2 sessions, 2 node keys, the index",
            r.cmd("DBSIZE"))

    short = r.write_kato_session(node_id="node-c", ttl=1, big_state=False)
    gone = wait_until(lambda: r.cmd("EXISTS", KATO_PREFIX + short) == 0, 5, 0.05)
    C.check(gone and short in sscan_all(r, KATO_INDEX),
            "a session key expires by its TTL and its id stays in the index")


def test_lifecycle(C: Checks, r: Redis) -> None:
    port, url = r.port, r.url
    r.cmd("SET", "before", "1")
    r.kill()
    C.check(not r.alive() and r.proc is not None and r.proc.returncode == -9,
            "kill(): SIGKILL, the process is gone", r.proc.returncode if r.proc else None)
    C.check(refused(port), "kill(): the port refuses connections")
    try:
        r.cmd("PING")
        C.fail("cmd on a killed Redis raises")
    except OSError as e:
        C.ok(f"cmd on a killed Redis raises ({type(e).__name__})")
    r.restart()
    C.check(r.alive() and r.port == port and r.url == url and r.cmd("PING") == "PONG",
            "restart(): same port, answers PING", (port, r.port))
    C.check(r.cmd("DBSIZE") == 0, "restart(): empty (nothing persisted)")
    sid = r.write_kato_session(node_id="after-restart")
    C.check(r.cmd("SISMEMBER", KATO_INDEX, sid) == 1, "writes work after the restart")
    status = r.stop()
    C.check(status == 0 and refused(port), "stop(): SIGTERM, exit status 0, port closed",
            status)
    r.restart()
    C.check(r.cmd("PING") == "PONG" and r.port == port, "restart() after stop()")
    r.restart()
    C.check(r.cmd("PING") == "PONG" and r.port == port, "restart() of a running Redis")
    files = [f for f in os.listdir(r.dir) if f != "redis.log"]
    C.check(files == [], "no dump.rdb or appendonly file written", files)


def test_password(C: Checks) -> None:
    with Redis(password="pa:ss word") as p:
        C.check(p.url == f"redis://:pa%3Ass%20word@127.0.0.1:{p.port}/0",
                "url carries the password", p.url)
        C.check(p.cmd("PING") == "PONG", "cmd authenticates")
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = s.recv(200)
        s.close()
        C.check(reply.startswith(b"-NOAUTH"), "without AUTH: NOAUTH", reply)
        p.kill()
        p.restart()
        C.check(p.cmd("PING") == "PONG", "password kept across a restart")
        d = p.dir
    C.check(not os.path.exists(d) and refused(p.port), "close(): stopped, directory removed")


def main() -> int:
    Redis.skip_unless_available()
    C = Checks()
    C.note(Redis.available()[1])
    r = Redis()
    try:
        for t in (test_client, test_kato_keys, test_lifecycle):
            try:
                t(C, r)
            except Exception:  # noqa: BLE001 - a crash fails the group
                C.fail(f"{t.__name__} ran to completion", traceback.format_exc())
                if not r.alive():
                    r.start(r.port)
        try:
            test_password(C)
        except Exception:  # noqa: BLE001
            C.fail("test_password ran to completion", traceback.format_exc())
    finally:
        r.close()
    return C.done()


if __name__ == "__main__":
    sys.exit(main())
