#!/usr/bin/env python3
"""Self-test of tests/sim/kato_sim.py (standard library only).

Starts the simulator as a subprocess on an ephemeral port, exercises every
KATO endpoint, every /_sim/ control endpoint and failure mode and the
/ws/events WebSocket (with a raw-socket client), then stops it with SIGTERM.
A second run checks --demo and SIGINT.

    python3 tests/sim/test_kato_sim.py [-v]

Prints one line per check and a final "N passed, N failed"; exits non-zero
when any check failed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from typing import Any, Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
SIM = os.path.join(HERE, "kato_sim.py")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERBOSE = "-v" in sys.argv

passed = 0
failed = 0


def wait_until(pred: Callable[[], Any], timeout: float = 5.0, step: float = 0.02) -> Any:
    """Poll pred until it returns something true or the deadline passes;
    returns its last value."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


def check(name: str, cond: bool, detail: Any = "") -> bool:
    """Record one check."""
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   - {name}")
    else:
        failed += 1
        print(f"FAIL - {name}" + (f": {detail}" if detail != "" else ""))
    sys.stdout.flush()
    return bool(cond)


# ---------------------------------------------------------------------------
# Simulator process
# ---------------------------------------------------------------------------

class Sim:
    """The simulator subprocess and small HTTP helpers against it."""

    def __init__(self, *extra: str) -> None:
        self.tmp = tempfile.mkdtemp(prefix="kato_sim_test.")
        self.port_file = os.path.join(self.tmp, "port")
        self.proc = subprocess.Popen(
            [sys.executable, SIM, "--port", "0", "--port-file", self.port_file, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 10
        while not os.path.exists(self.port_file):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("simulator did not start: " + self.proc.stderr.read())
            time.sleep(0.02)
        with open(self.port_file) as f:
            self.port = int(f.read().strip())
        self.first_line = self.proc.stdout.readline().strip()
        self.base = f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: Any = None, timeout: float = 5.0,
                raw: Optional[bytes] = None) -> tuple[int, dict[str, str], bytes]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def get_json(self, path: str) -> tuple[int, Any]:
        st, _, body = self.request("GET", path)
        return st, json.loads(body)

    def ctl(self, path: str, body: Optional[dict[str, Any]] = None) -> tuple[int, Any]:
        st, _, out = self.request("POST", "/_sim/" + path, body if body is not None else {})
        return st, json.loads(out)

    def state(self) -> dict[str, Any]:
        return self.get_json("/_sim/state")[1]

    def stop(self, sig: int = signal.SIGTERM) -> tuple[Optional[int], str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            return None, out, err
        return self.proc.returncode, out, err


# ---------------------------------------------------------------------------
# Raw-socket WebSocket client
# ---------------------------------------------------------------------------

class WS:
    """A minimal RFC 6455 client built on a plain socket."""

    def __init__(self, port: int, path: str = "/ws/events", version: str = "13",
                 upgrade: bool = True, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            self._handshake(port, path, version, upgrade)
        except BaseException:
            self.sock.close()
            raise

    def _handshake(self, port: int, path: str, version: str, upgrade: bool) -> None:
        self.key = base64.b64encode(os.urandom(16)).decode()
        hdrs = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        if upgrade:
            hdrs += ["Upgrade: websocket", "Connection: Upgrade"]
        hdrs += [f"Sec-WebSocket-Key: {self.key}", f"Sec-WebSocket-Version: {version}"]
        self.sock.sendall(("\r\n".join(hdrs) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("closed during handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip()
                        for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        self.body = b""
        if self.status != 101:
            n = int(self.headers.get("content-length", "0"))
            while len(self.buf) < n:
                self.buf += self.sock.recv(4096)
            self.body, self.buf = self.buf[:n], self.buf[n:]

    def accept_ok(self) -> bool:
        want = base64.b64encode(hashlib.sha1((self.key + WS_GUID).encode()).digest()).decode()
        return self.headers.get("sec-websocket-accept") == want

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self, timeout: float = 5.0) -> tuple[bool, int, bytes]:
        self.sock.settimeout(timeout)
        b0, b1 = self._need(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._need(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._need(8))
        if b1 & 0x80:
            raise AssertionError("server frame is masked")
        return bool(b0 & 0x80), b0 & 0x0F, self._need(n)

    def recv_text(self, timeout: float = 5.0) -> str:
        fin, op, payload = self.recv_frame(timeout)
        if op != 0x1 or not fin:
            raise AssertionError(f"expected text frame, got opcode {op}")
        return payload.decode()

    def recv_json(self, timeout: float = 5.0) -> Any:
        return json.loads(self.recv_text(timeout))

    def recv_until(self, pred: Callable[[Any], bool], timeout: float = 5.0) -> Any:
        """Next JSON message for which pred(msg) holds (skipping others)."""
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("no matching message")
            msg = self.recv_json(left)
            if pred(msg):
                return msg

    def send_frame(self, opcode: int, payload: bytes = b"", fin: bool = True,
                   mask: bool = True, length_override: Optional[int] = None) -> None:
        head = bytearray([(0x80 if fin else 0) | opcode])
        n = len(payload) if length_override is None else length_override
        mbit = 0x80 if mask else 0
        if n < 126:
            head.append(mbit | n)
        elif n < 1 << 16:
            head.append(mbit | 126)
            head += struct.pack("!H", n)
        else:
            head.append(mbit | 127)
            head += struct.pack("!Q", n)
        if mask:
            key = os.urandom(4)
            head += key
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(head) + payload)

    def send_text(self, text: str) -> None:
        self.send_frame(0x1, text.encode())

    def expect_eof(self, timeout: float = 5.0) -> bool:
        """True if the server closes the TCP connection (frames are skipped)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                self.recv_frame(timeout)
        except EOFError:
            return True
        except OSError:           # reset counts as closed too
            return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def close_code(payload: bytes) -> Optional[int]:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

METRICS_KEYS = {"timestamp", "sessions", "performance", "resources", "databases",
                "processor_manager", "rates"}
SECTION_KEYS = {
    "sessions": {"total_created", "total_deleted", "active", "operations_total"},
    "performance": {"total_requests", "total_errors", "error_rate", "average_response_time"},
    "resources": {"cpu_percent", "memory_percent", "disk_percent"},
    "databases": {"clickhouse", "qdrant", "redis"},
    "processor_manager": {"total_processors", "max_processors", "eviction_ttl_seconds",
                          "processors"},
    "rates": {"requests_per_second", "requests_per_minute", "errors_per_minute"},
}
PROCESSOR_KEYS = {"processor_id", "node_id", "created_at", "last_accessed", "access_count",
                  "idle_seconds"}
STATS_SERIES = (
    "kato_cpu_usage_percent", "kato_memory_usage_percent", "kato_memory_usage_bytes",
    "kato_disk_usage_percent", "load_average_1m", "kato_requests_total",
    "kato_request_duration_seconds", "kato_errors_total", "sessions_created",
    "sessions_deleted", "session_operations",
    "clickhouse_operations", "clickhouse_response_time", "clickhouse_errors",
    "qdrant_operations", "qdrant_response_time", "qdrant_errors",
    "redis_operations", "redis_response_time", "redis_errors",
)
NEW_PATHS = ("/stats", "/cache/stats", "/connection-pools", "/distributed-stm/stats",
             "/sessions/{id}/stm")
SESSION_ID = re.compile(r"^session-[0-9a-f]{32}-[0-9]{13}$")


def test_startup(sim: Sim) -> None:
    check("stdout line names the port",
          sim.first_line == f"kato_sim listening on http://127.0.0.1:{sim.port}", sim.first_line)
    check("port file holds a port", sim.port > 0)
    check("no temp file left beside the port file",
          os.listdir(sim.tmp) == ["port"], os.listdir(sim.tmp))


def test_metrics(sim: Sim) -> None:
    st, hdrs, body = sim.request("GET", "/metrics")
    m = json.loads(body)
    check("/metrics 200 application/json",
          st == 200 and hdrs.get("Content-Type") == "application/json", (st, hdrs))
    check("/metrics top-level keys", set(m) == METRICS_KEYS, sorted(m))
    for sec, keys in SECTION_KEYS.items():
        check(f"/metrics {sec} keys", set(m.get(sec, {})) == keys, sorted(m.get(sec, {})))
    for db in ("clickhouse", "qdrant", "redis"):
        check(f"/metrics databases.{db} keys",
              set(m["databases"][db]) == {"operations", "errors", "avg_response_time"})
    check("/metrics timestamp is epoch float",
          isinstance(m["timestamp"], float) and abs(m["timestamp"] - time.time()) < 5)
    pm = m["processor_manager"]
    check("default 2 processors", pm["total_processors"] == 2 and len(pm["processors"]) == 2)
    check("processor keys", all(set(p) == PROCESSOR_KEYS for p in pm["processors"]),
          pm["processors"])
    perf = m["performance"]
    check("total_requests is an int >= 10000",
          isinstance(perf["total_requests"], int) and perf["total_requests"] >= 10000, perf)
    check("default values match the reference example",
          m["resources"] == {"cpu_percent": 12.5, "memory_percent": 44.9, "disk_percent": 41.2}
          and perf["average_response_time"] == 0.025 and perf["error_rate"] == 0.0, m)

    # requests grow with the configured rate
    sim.ctl("set", {"requests_per_second": 200})
    t0 = time.monotonic()
    a = sim.get_json("/metrics")[1]["performance"]["total_requests"]
    b = wait_until(lambda: (lambda m: m if m["performance"]["total_requests"] - a >= 100
                            else None)(sim.get_json("/metrics")[1]), 5)
    took = time.monotonic() - t0
    check("total_requests grows at requests_per_second",
          b is not None and 0.3 <= took <= 2.0, took)
    b = b or sim.get_json("/metrics")[1]
    check("rates follow requests_per_second",
          b["rates"]["requests_per_second"] == 200 and b["rates"]["requests_per_minute"] == 12000,
          b["rates"])
    st, _ = sim.ctl("set", {"total_requests": 50000, "requests_per_second": 0})
    m = sim.get_json("/metrics")[1]
    check("total_requests settable, rate 0 freezes it",
          st == 200 and m["performance"]["total_requests"] == 50000, m["performance"])

    # error rate and resources
    st, out = sim.ctl("set", {"error_rate": 0.07, "cpu_percent": 91.5, "memory_percent": 63.25,
                              "disk_percent": 80, "average_response_time": 0.5,
                              "requests_per_second": 10})
    check("/_sim/set answers ok with settings",
          st == 200 and out["ok"] and out["settings"]["error_rate"] == 0.07, out)
    m = sim.get_json("/metrics")[1]
    perf = m["performance"]
    check("error_rate reflected at once", perf["error_rate"] == 0.07, perf)
    check("total_errors = round(total_requests * error_rate)",
          perf["total_errors"] == round(perf["total_requests"] * 0.07), perf)
    check("cpu/memory/disk reflected",
          m["resources"] == {"cpu_percent": 91.5, "memory_percent": 63.25, "disk_percent": 80.0},
          m["resources"])
    check("average_response_time reflected", perf["average_response_time"] == 0.5, perf)
    check("errors_per_minute = rps*60*error_rate",
          abs(m["rates"]["errors_per_minute"] - 42.0) < 1e-6, m["rates"])

    # processors
    sim.ctl("set", {"processors": 3})
    pm = sim.get_json("/metrics")[1]["processor_manager"]
    check("processors settable as a count",
          pm["total_processors"] == 3 and len(pm["processors"]) == 3, pm)
    sim.ctl("set", {"processors": [{"processor_id": "p1", "node_id": "n1", "access_count": 7}]})
    pm = sim.get_json("/metrics")[1]["processor_manager"]
    check("processors settable as a list",
          pm["total_processors"] == 1 and pm["processors"][0]["processor_id"] == "p1"
          and pm["processors"][0]["access_count"] == 7
          and set(pm["processors"][0]) == PROCESSOR_KEYS, pm)
    sim.ctl("set", {"processors": 0})
    pm = sim.get_json("/metrics")[1]["processor_manager"]
    check("zero processors", pm["total_processors"] == 0 and pm["processors"] == [], pm)

    # validation: errors are 400 and nothing is applied
    before = sim.state()["settings"]
    for bad in ({"bogus": 1}, {"cpu_percent": 150}, {"cpu_percent": "high"},
                {"error_rate": 1.5}, {"status": "fine"}, {"ws_events": "yes"},
                {"processors": "two"}, {"processors": [1]}, {"cpu_percent": 50, "bogus": 1}):
        st, out = sim.ctl("set", bad)
        check(f"/_sim/set rejects {json.dumps(bad)}", st == 400 and "error" in out, (st, out))
    check("rejected sets change nothing", sim.state()["settings"] == before)
    st, _, body = sim.request("POST", "/_sim/set", raw=b"{not json")
    check("/_sim/set with bad JSON is 400", st == 400, (st, body))
    st, _, _ = sim.request("GET", "/_sim/set")
    check("/_sim/set by GET is 405", st == 405, st)
    st, _, _ = sim.request("POST", "/_sim/nothing", {})
    check("unknown control endpoint is 404", st == 404, st)
    st, help_ = sim.get_json("/_sim")
    check("GET /_sim lists the control API", st == 200 and "/_sim/set" in help_["endpoints"])


def test_health_status_stats(sim: Sim) -> None:
    sim.ctl("reset")
    st, h = sim.get_json("/health")
    check("/health keys",
          st == 200 and set(h) == {"status", "processor_status", "service_name",
                                   "uptime_seconds", "issues", "metrics_collected",
                                   "last_collection", "active_sessions", "timestamp"}, h)
    check("/health healthy by default, no issues",
          h["status"] == "healthy" and h["issues"] == [] and h["service_name"] == "kato", h)
    check("/health timestamp is ISO with offset",
          isinstance(h["timestamp"], str) and h["timestamp"].endswith("+00:00"), h["timestamp"])
    check("/health last_collection is epoch float", isinstance(h["last_collection"], float))
    for s in ("degraded", "unhealthy", "healthy"):
        sim.ctl("set", {"status": s})
        h = sim.get_json("/health")[1]
        check(f"/health status {s}", h["status"] == s and (s == "healthy") == (h["issues"] == []),
              h)
    sim.ctl("set", {"error_rate": 0.2})
    h = sim.get_json("/health")[1]
    check("/health lists a high error rate issue", any("error rate" in i for i in h["issues"]), h)
    sim.ctl("set", {"error_rate": 0})

    st, s = sim.get_json("/status")
    check("/status keys",
          st == 200 and set(s) == {"status", "base_processor_id", "uptime_seconds",
                                   "sessions", "processors", "version"}, s)
    check("/status sessions keys and version",
          set(s["sessions"]) == {"total_sessions", "active_sessions", "expired_sessions",
                                 "backend"} and s["version"] == "3.10.1", s)

    # the sampler runs every 0.2 s in this test
    wait_until(lambda: len(sim.get_json("/stats?minutes=10")[1]["time_series"]
                           ["kato_cpu_usage_percent"]) >= 2, 5)
    st, s = sim.get_json("/stats?minutes=10")
    check("/stats keys",
          st == 200 and set(s) == {"time_range_minutes", "timestamp", "processor_manager",
                                   "current_status", "time_series", "summary"}, sorted(s))
    check("/stats time_range_minutes and epoch timestamp",
          s["time_range_minutes"] == 10 and isinstance(s["timestamp"], float)
          and abs(s["timestamp"] - time.time()) < 5, s["timestamp"])
    check("/stats lists KATO's 20 series",
          list(s["time_series"]) == list(STATS_SERIES), list(s["time_series"]))
    cpu = s["time_series"].get("kato_cpu_usage_percent", [])
    check("/stats time series points",
          len(cpu) >= 2 and all(set(p) == {"timestamp", "value", "labels"} for p in cpu)
          and all(p["labels"] == {} and isinstance(p["timestamp"], float) for p in cpu), cpu[:2])
    check("/stats every series has the same number of points",
          len({len(v) for v in s["time_series"].values()}) == 1,
          {k: len(v) for k, v in s["time_series"].items()})
    check("/stats cpu and memory values follow the settings",
          cpu[-1]["value"] == 12.5
          and s["time_series"]["kato_memory_usage_percent"][-1]["value"] == 44.9, cpu[-1])
    check("/stats current_status is the /health body",
          set(s["current_status"]) == {"status", "processor_status", "service_name",
                                       "uptime_seconds", "issues", "metrics_collected",
                                       "last_collection", "active_sessions", "timestamp"},
          s["current_status"])
    check("/stats summary sections",
          set(s["summary"]) == {"sessions", "performance", "resources", "databases"})
    st, s = sim.get_json("/stats")
    check("/stats defaults to 10 minutes", st == 200 and s["time_range_minutes"] == 10)
    for bad in ("abc", "1.5", "", "1e3", "10x"):
        st, _, body = sim.request("GET", f"/stats?minutes={bad}")
        d = json.loads(body).get("detail")
        check(f"/stats?minutes={bad!r} is 422 like FastAPI",
              st == 422 and isinstance(d, list) and d[0]["loc"] == ["query", "minutes"]
              and d[0]["type"] == "int_parsing" and d[0]["input"] == bad, (st, body))
    for m in (0, -5):
        st, s = sim.get_json(f"/stats?minutes={m}")
        check(f"/stats?minutes={m}: 200, KATO checks no range, every series empty",
              st == 200 and s["time_range_minutes"] == m
              and list(s["time_series"]) == list(STATS_SERIES)
              and all(v == [] for v in s["time_series"].values()), (st, s.get("time_series")))

    # the number of points depends on minutes
    st, out = sim.ctl("stats/backfill", {"minutes": 30, "interval": 60})
    check("/_sim/stats/backfill", st == 200 and out == {"ok": True, "samples": 30}, out)

    def old_points(minutes: int) -> tuple[int, int]:
        """(points older than 50 s, all points) of /stats?minutes=N."""
        t = time.time()
        pts = sim.get_json(f"/stats?minutes={minutes}")[1]["time_series"]["kato_cpu_usage_percent"]
        return sum(1 for p in pts if p["timestamp"] < t - 50), len(pts)

    got = {m: old_points(m) for m in (1, 10, 30, 60, 1440)}
    check("/stats: points depend on minutes (one backfilled sample a minute)",
          got[1][0] == 0 and 9 <= got[10][0] <= 10 and 29 <= got[30][0] <= 30
          and got[60][0] == got[1440][0] == 30 and got[10][1] < got[30][1], got)
    for bad in ({"minutes": -1}, {"minutes": 10, "interval": 0}, {"minutes": "x"},
                {"minutes": 1440, "interval": 1}):
        st, out = sim.ctl("stats/backfill", bad)
        check(f"/_sim/stats/backfill rejects {json.dumps(bad)}", st == 400 and "error" in out,
              (st, out))


def test_sessions_http(sim: Sim) -> None:
    sim.ctl("reset")
    st, c = sim.get_json("/sessions/count")
    check("/sessions/count shape", st == 200 and c == {"active_session_count": 0}, c)
    st, _, body = sim.request("POST", "/sessions")
    s = json.loads(body)
    check("POST /sessions creates one",
          st == 200 and SESSION_ID.match(s["session_id"])
          and abs(int(s["session_id"].rsplit("-", 1)[1]) / 1000 - time.time()) < 60
          and {"session_id", "node_id", "created_at", "expires_at", "ttl_seconds", "metadata",
               "session_config"} == set(s), s)
    sid = s["session_id"]
    st, s2 = sim.get_json(f"/sessions/{sid}")
    check("GET /sessions/{id}", st == 200 and s2["session_id"] == sid, s2)
    st, s3 = sim.request("POST", "/sessions", {"node_id": "alice", "ttl_seconds": 60,
                                               "metadata": {"k": 1}})[0:3:2]
    s3 = json.loads(s3)
    check("POST /sessions honours node_id/ttl/metadata",
          st == 200 and s3["node_id"] == "alice" and s3["ttl_seconds"] == 60
          and s3["metadata"] == {"k": 1}, s3)
    st, _, body = sim.request("POST", "/sessions", raw=b"{nope")
    check("POST /sessions with bad JSON is 422", st == 422, (st, body))
    check("/sessions/count counts them",
          sim.get_json("/sessions/count")[1] == {"active_session_count": 2})
    m = sim.get_json("/metrics")[1]["sessions"]
    check("/metrics sessions section", m["active"] == 2 and m["total_created"] == 2, m)
    st, _, body = sim.request("DELETE", f"/sessions/{sid}")
    check("DELETE /sessions/{id}",
          st == 200 and json.loads(body) == {"status": "deleted", "session_id": sid}, body)
    st, _, body = sim.request("GET", f"/sessions/{sid}")
    check("GET deleted session is 404 with KATO's detail",
          st == 404 and json.loads(body) == {"detail": f"Session {sid} not found or expired"},
          (st, body))
    st, _, body = sim.request("DELETE", f"/sessions/{sid}")
    check("DELETE again is 404 with KATO's detail",
          st == 404 and json.loads(body) == {"detail": f"Session {sid} not found"}, (st, body))
    m = sim.get_json("/metrics")[1]["sessions"]
    check("/metrics counts the delete", m["active"] == 1 and m["total_deleted"] == 1, m)

    st, out = sim.ctl("sessions/create", {"count": 3})
    check("/_sim/sessions/create", st == 200 and len(out["created"]) == 3 and out["active"] == 4,
          out)
    st, out2 = sim.ctl("sessions/destroy", {"count": 2})
    check("/_sim/sessions/destroy destroys the oldest",
          st == 200 and out2["destroyed"][0] == s3["session_id"] and out2["active"] == 2, out2)
    st, out3 = sim.ctl("sessions/destroy", {"session_ids": [out["created"][2], "nope"]})
    check("/_sim/sessions/destroy by id", out3["destroyed"] == [out["created"][2]], out3)
    st, out4 = sim.ctl("sessions/create", {"count": -1})
    check("/_sim/sessions/create rejects a bad count", st == 400, out4)

    st, _, body = sim.request("GET", "/nope")
    check("unknown path: 404 {\"detail\":\"Not Found\"}",
          st == 404 and json.loads(body) == {"detail": "Not Found"}, (st, body))
    st, hd, body = sim.request("POST", "/metrics", {})
    check("wrong method: 405", st == 405 and json.loads(body)["detail"] == "Method Not Allowed",
          (st, body))


def test_stm(sim: Sim) -> None:
    sim.ctl("reset")
    ids = sim.ctl("sessions/create", {"count": 2, "node_id": "n-stm"})[1]["created"]
    check("/_sim/sessions/create ids have KATO's form",
          all(SESSION_ID.match(i) for i in ids), ids)
    a, b = ids
    st, body = sim.get_json(f"/sessions/{a}/stm")
    check("GET /sessions/{id}/stm of a new session",
          st == 200 and body == {"stm": [], "session_id": a, "length": 0}, (st, body))
    stm = [["hello", "world"], ["kato"], [], ["ünïcode", "with space", "a/b"]]
    st, out = sim.ctl("sessions/stm", {"session_id": a, "stm": stm})
    check("/_sim/sessions/stm sets it",
          st == 200 and out == {"ok": True, "session_id": a, "length": 4}, out)
    st, body = sim.get_json(f"/sessions/{a}/stm")
    check("GET /sessions/{id}/stm returns it as set",
          st == 200 and body == {"stm": stm, "session_id": a, "length": 4}, body)
    st, body = sim.get_json(f"/sessions/{b}/stm")
    check("... and only for that session", body["stm"] == [], body)
    st, _, raw = sim.request("GET", "/sessions/session-nope/stm")
    check("GET /sessions/{unknown}/stm is 404 with KATO's detail",
          st == 404 and json.loads(raw) == {"detail": "Session session-nope not found or expired"},
          (st, raw))
    st, _, raw = sim.request("POST", f"/sessions/{a}/stm", {})
    check("POST /sessions/{id}/stm is 405", st == 405, (st, raw))
    for bad in ({"session_id": a, "stm": "x"}, {"session_id": a, "stm": [["a", 1]]},
                {"session_id": a, "stm": ["a"]}, {"session_id": 5, "stm": []},
                {"stm": []}):
        st, out = sim.ctl("sessions/stm", bad)
        check(f"/_sim/sessions/stm rejects {json.dumps(bad)[:60]}", st == 400 and "error" in out,
              (st, out))
    st, out = sim.ctl("sessions/stm", {"session_id": "session-nope", "stm": []})
    check("/_sim/sessions/stm for an unknown session is 404", st == 404, (st, out))
    check("rejected STM changes nothing", sim.get_json(f"/sessions/{a}/stm")[1]["stm"] == stm)
    sim.request("DELETE", f"/sessions/{a}")
    st, _ = sim.get_json(f"/sessions/{a}/stm")
    check("a deleted session has no STM (404)", st == 404, st)
    ds = sim.get_json("/distributed-stm/stats")[1]["performance_stats"]
    check("/distributed-stm/stats counts STM events per node",
          ds["nodes"]["n-stm"]["sessions"] == 1 and ds["nodes"]["n-stm"]["stm_events"] == 0, ds)
    sim.ctl("sessions/stm", {"session_id": b, "stm": [["x"], ["y"], ["z"]]})
    ds = sim.get_json("/distributed-stm/stats")[1]["performance_stats"]
    check("... and follows /_sim/sessions/stm",
          ds["nodes"]["n-stm"]["stm_events"] == 3 and ds["total_stm_events"] == 3
          and ds["nodes"]["n-stm"]["sync_operations"] == 16, ds)


def test_monitoring_endpoints(sim: Sim) -> None:
    """/cache/stats, /connection-pools, /distributed-stm/stats."""
    sim.ctl("reset")
    sim.ctl("set", {"requests_per_second": 0, "total_requests": 10000})
    sim.ctl("sessions/create", {"count": 6})

    st, hd, raw = sim.request("GET", "/cache/stats")
    c = json.loads(raw)
    check("/cache/stats 200 application/json",
          st == 200 and hd.get("Content-Type") == "application/json", st)
    check("/cache/stats shape",
          set(c) == {"cache_performance", "cache_health", "timestamp"}
          and set(c["cache_performance"]) == {"status", "hits", "misses", "total_requests",
                                              "hit_rate", "size", "max_size", "evictions",
                                              "memory_usage_bytes", "ttl_seconds"}
          and set(c["cache_health"]) == {"status", "redis_connected", "latency_ms"}
          and c["timestamp"].endswith("+00:00"), c)
    cp = c["cache_performance"]
    check("/cache/stats figures follow the state",
          cp["total_requests"] == 6000 and cp["hits"] == 5100 and cp["misses"] == 900
          and cp["hit_rate"] == 0.85 and cp["size"] == 2 * 40 + 6 * 12
          and c["cache_health"]["status"] == "healthy", cp)
    c2 = sim.get_json("/cache/stats")[1]
    check("/cache/stats is deterministic given the state",
          {k: v for k, v in c2.items() if k != "timestamp"}
          == {k: v for k, v in c.items() if k != "timestamp"}, (c, c2))
    sim.ctl("set", {"cache_hit_rate": 0.5})
    cp = sim.get_json("/cache/stats")[1]["cache_performance"]
    check("cache_hit_rate settable", cp["hit_rate"] == 0.5 and cp["hits"] == 3000, cp)

    st, p = sim.get_json("/connection-pools")
    check("/connection-pools shape",
          st == 200 and set(p) == {"status", "health", "pool_statistics",
                                   "connection_optimization", "performance_improvements",
                                   "timestamp"}
          and set(p["health"]) == set(p["pool_statistics"]) == {"clickhouse", "qdrant", "redis"}
          and all(set(v) == {"size", "in_use", "available", "max_overflow",
                             "total_connections_created"} for v in p["pool_statistics"].values())
          and all(set(v) == {"healthy", "last_check", "error"} for v in p["health"].values()), p)
    ps = p["pool_statistics"]
    check("/connection-pools figures follow the sessions",
          p["status"] == "healthy"
          and [ps[db]["in_use"] for db in ("clickhouse", "qdrant", "redis")] == [2, 2, 4]
          and all(v["in_use"] + v["available"] == v["size"] for v in ps.values()), ps)
    st, out = sim.ctl("set", {"unhealthy_databases": ["qdrant"]})
    p = sim.get_json("/connection-pools")[1]
    check("unhealthy_databases: pool unhealthy, status degraded",
          st == 200 and p["status"] == "degraded" and p["health"]["qdrant"]["healthy"] is False
          and isinstance(p["health"]["qdrant"]["error"], str)
          and p["pool_statistics"]["qdrant"]["available"] == 0
          and p["health"]["redis"]["healthy"] is True, p)
    sim.ctl("set", {"unhealthy_databases": ["redis"]})
    check("unhealthy redis: /cache/stats health unhealthy",
          sim.get_json("/cache/stats")[1]["cache_health"]["status"] == "unhealthy")
    for bad in ({"unhealthy_databases": "redis"}, {"unhealthy_databases": ["mongo"]},
                {"cache_hit_rate": 2}):
        st, out = sim.ctl("set", bad)
        check(f"/_sim/set rejects {json.dumps(bad)}", st == 400, (st, out))
    sim.ctl("set", {"unhealthy_databases": []})
    check("unhealthy_databases cleared",
          sim.get_json("/connection-pools")[1]["status"] == "healthy")

    st, d = sim.get_json("/distributed-stm/stats")
    check("/distributed-stm/stats shape",
          st == 200 and set(d) == {"status", "distributed_stm_enabled", "performance_stats",
                                   "processor_info", "expected_improvements", "timestamp"}
          and d["status"] == "active" and d["distributed_stm_enabled"] is True
          and d["processor_info"] == {"sample_processor_id": "kato-sim-processor-1",
                                      "total_active_processors": 2}, d)
    perf = d["performance_stats"]
    nodes = perf["nodes"]
    check("/distributed-stm/stats per node",
          all(set(n) == {"processor_id", "sessions", "stm_events", "sync_operations",
                         "sync_errors", "avg_sync_latency_ms"} for n in nodes.values())
          and sum(n["sessions"] for n in nodes.values()) == 6 == perf["total_sessions"]
          and perf["total_nodes"] == len(nodes)
          and nodes["sim-node-1"]["processor_id"] == "kato-sim-processor-1", perf)
    sim.ctl("set", {"processors": 0})
    d = sim.get_json("/distributed-stm/stats")[1]
    check("/distributed-stm/stats with no processor: KATO's disabled body",
          d["status"] == "disabled" and d["distributed_stm_enabled"] is False
          and isinstance(d["reason"], str)
          and d["processor_info"] == {"total_active_processors": 0}, d)
    for path in ("/cache/stats", "/connection-pools", "/distributed-stm/stats"):
        st, _, _ = sim.request("POST", path, {})
        check(f"POST {path} is 405", st == 405, st)


def test_cache(sim: Sim) -> None:
    sim.ctl("reset")
    sim.ctl("set", {"cache_seconds": 1.0})
    a = sim.get_json("/metrics")[1]
    c1 = sim.get_json("/sessions/count")[1]
    sim.ctl("set", {"cpu_percent": 77})
    sim.ctl("sessions/create", {"count": 2})
    b = sim.get_json("/metrics")[1]
    c2 = sim.get_json("/sessions/count")[1]
    check("cache on: /metrics is stale", b == a, (a["resources"], b["resources"]))
    check("cache on: /sessions/count is stale", c2 == c1, (c1, c2))
    wait_until(lambda: sim.get_json("/metrics")[1]["resources"]["cpu_percent"] == 77, 5)
    wait_until(lambda: sim.get_json("/sessions/count")[1] != c1, 5)
    b = sim.get_json("/metrics")[1]
    c2 = sim.get_json("/sessions/count")[1]
    check("cache expires: /metrics fresh", b["resources"]["cpu_percent"] == 77, b["resources"])
    check("cache expires: /sessions/count fresh", c2 == {"active_session_count": 2}, c2)
    sim.ctl("set", {"cache_seconds": 0})
    sim.ctl("set", {"cpu_percent": 5})
    check("cache off again: changes seen at once",
          sim.get_json("/metrics")[1]["resources"]["cpu_percent"] == 5)
    check("cache is off by default", sim.state()["settings"]["cache_seconds"] == 0)


def test_websocket(sim: Sim) -> None:
    sim.ctl("reset")
    sim.ctl("sessions/create", {"count": 2})
    a = WS(sim.port)
    check("ws handshake 101", a.status == 101, (a.status, a.body))
    check("ws Sec-WebSocket-Accept", a.accept_ok(), a.headers)
    snap = a.recv_json()
    check("ws state.snapshot on connect",
          snap == {"event_type": "state.snapshot",
                   "data": {"active_sessions": 2, "system_status": "healthy"}}, snap)
    b = WS(sim.port)
    snap_b = b.recv_json()
    check("second client gets its snapshot", snap_b["event_type"] == "state.snapshot")
    check("/_sim/state counts ws clients", sim.state()["ws"]["clients"] == 2)

    st, out = sim.ctl("sessions/create", {"count": 2, "node_id": "n7"})
    for name, cl in (("A", a), ("B", b)):
        evs = [cl.recv_json(), cl.recv_json()]
        ok = all(e["event_type"] == "session.created" and isinstance(e["timestamp"], float)
                 and set(e["data"]) == {"session_id", "node_id", "created_at"}
                 and e["data"]["node_id"] == "n7" for e in evs)
        check(f"client {name}: session.created events", ok, evs)
        check(f"client {name}: event ids match, in order",
              [e["data"]["session_id"] for e in evs] == out["created"], evs)

    st, _, body = sim.request("POST", "/sessions", {"node_id": "via-http"})
    sid = json.loads(body)["session_id"]
    e = a.recv_json()
    check("POST /sessions emits session.created",
          e["event_type"] == "session.created" and e["data"]["session_id"] == sid, e)
    b.recv_json()

    sim.request("DELETE", f"/sessions/{sid}")
    e = a.recv_json()
    check("DELETE emits session.destroyed",
          e["event_type"] == "session.destroyed" and isinstance(e["timestamp"], float)
          and e["data"] == {"session_id": sid, "destroyed_at": e["data"]["destroyed_at"],
                            "reason": "explicit_delete"}
          and e["data"]["destroyed_at"].endswith("+00:00"), e)
    b.recv_json()
    st, out = sim.ctl("sessions/destroy", {"count": 1})
    e = a.recv_json()
    check("/_sim/sessions/destroy emits session.destroyed",
          e["event_type"] == "session.destroyed" and e["data"]["session_id"] == out["destroyed"][0]
          and e["data"]["reason"] == "explicit_delete", e)
    b.recv_json()

    a.send_text("ping")
    check("text ping -> text pong", a.recv_text() == "pong")
    a.send_frame(0x9, b"abc")
    f = a.recv_frame()
    check("control ping -> pong with payload", f == (True, 0xA, b"abc"), f)
    a.send_frame(0xA, b"unsolicited")
    a.send_text('{"type":"subscribe"}')        # other messages are ignored
    a.send_frame(0x1, b"pi", fin=False)
    a.send_frame(0x9, b"mid")                  # control frame inside a fragmented message
    a.send_frame(0x0, b"ng", fin=True)
    f1 = a.recv_frame()
    f2 = a.recv_frame()
    check("fragmented ping with an interleaved control ping",
          f1 == (True, 0xA, b"mid") and f2 == (True, 0x1, b"pong"), (f1, f2))
    a.send_frame(0x1, b"x" * 70000)            # 64-bit length form, ignored
    a.send_frame(0x1, b"y" * 300)              # 16-bit length form, ignored
    a.send_text("ping")
    check("large frames are read and ignored", a.recv_text() == "pong")

    st, out = sim.ctl("ws/send", {"text": "not json at all"})
    check("/_sim/ws/send pushes raw text to every client",
          out["clients"] == 2 and a.recv_text() == "not json at all"
          and b.recv_text() == "not json at all", out)
    st, out = sim.ctl("ws/send", {"json": {"event_type": "system.error", "data": {}}})
    check("/_sim/ws/send pushes JSON", a.recv_json()["event_type"] == "system.error")
    b.recv_json()

    a.send_frame(0x8, struct.pack("!H", 1000) + b"bye")
    f = a.recv_frame()
    check("client close is echoed", f[1] == 0x8 and close_code(f[2]) == 1000, f)
    check("server closes TCP after the close handshake", a.expect_eof())
    a.close()
    deadline = time.time() + 3
    while sim.state()["ws"]["clients"] != 1 and time.time() < deadline:
        time.sleep(0.05)
    check("closed client is unregistered", sim.state()["ws"]["clients"] == 1)

    # protocol errors
    c = WS(sim.port)
    c.recv_json()
    c.send_frame(0x1, b"ping", mask=False)
    f = c.recv_frame()
    check("unmasked client frame -> close 1002", f[1] == 0x8 and close_code(f[2]) == 1002, f)
    check("... and the connection is closed", c.expect_eof())
    c.close()
    c = WS(sim.port)
    c.recv_json()
    c.send_frame(0x1, b"", length_override=1 << 40)
    f = c.recv_frame()
    check("oversized frame -> close 1009", f[1] == 0x8 and close_code(f[2]) == 1009, f)
    c.close()
    c = WS(sim.port)
    c.recv_json()
    c.send_frame(0x1, b"\xff\xfe")
    f = c.recv_frame()
    check("invalid UTF-8 -> close 1007", f[1] == 0x8 and close_code(f[2]) == 1007, f)
    c.close()
    c = WS(sim.port)
    c.recv_json()
    c.send_frame(0x9, b"z" * 200)
    f = c.recv_frame()
    check("control frame > 125 bytes -> close 1002", f[1] == 0x8 and close_code(f[2]) == 1002, f)
    c.close()
    c = WS(sim.port)
    c.recv_json()
    c.send_frame(0x3, b"")
    f = c.recv_frame()
    check("reserved opcode -> close 1002", f[1] == 0x8 and close_code(f[2]) == 1002, f)
    c.close()

    # handshake variants
    c = WS(sim.port, upgrade=False)
    check("plain GET /ws/events is 404", c.status == 404, c.status)
    c.close()
    c = WS(sim.port, version="8")
    check("unsupported WebSocket version is 426",
          c.status == 426 and c.headers.get("sec-websocket-version") == "13", c.headers)
    c.close()

    # server-initiated close
    st, out = sim.ctl("ws/close", {"code": 1012, "reason": "restart"})
    f = b.recv_frame()
    check("/_sim/ws/close sends close frames", out["clients"] == 1 and f[1] == 0x8
          and close_code(f[2]) == 1012 and f[2][2:] == b"restart", (out, f))
    b.send_frame(0x8, struct.pack("!H", 1012))
    check("... and closes after the client's reply", b.expect_eof())
    b.close()

    # ws_events off: 404, existing clients get 1001
    d = WS(sim.port)
    d.recv_json()
    sim.ctl("set", {"ws_events": False})
    f = d.recv_frame()
    check("ws_events=false closes clients with 1001", f[1] == 0x8 and close_code(f[2]) == 1001, f)
    check("... and drops them if they do not answer", d.expect_eof(timeout=5))
    d.close()
    c = WS(sim.port)
    check("ws_events=false: /ws/events is 404",
          c.status == 404 and json.loads(c.body) == {"detail": "Not Found"}, (c.status, c.body))
    c.close()
    sim.ctl("set", {"ws_events": True})
    c = WS(sim.port)
    check("ws_events=true again: 101", c.status == 101 and c.recv_json()["event_type"]
          == "state.snapshot")
    c.close()

    # many clients, one broadcast
    many = [WS(sim.port) for _ in range(10)]
    for w in many:
        w.recv_json()
    sim.ctl("sessions/create", {"count": 1})
    got = 0
    for w in many:
        try:
            if w.recv_json()["event_type"] == "session.created":
                got += 1
        except Exception:
            pass
        w.close()
    check("10 concurrent clients all get the event", got == 10, got)


def test_modes(sim: Sim) -> None:
    sim.ctl("reset")
    st, out = sim.ctl("mode", {"mode": "bogus"})
    check("/_sim/mode rejects an unknown mode", st == 400, out)
    st, out = sim.ctl("mode", {"mode": "slow", "delay": -1})
    check("/_sim/mode rejects a negative delay", st == 400, out)

    sid = sim.ctl("sessions/create", {"count": 1})[1]["created"][0]
    # down
    w = WS(sim.port)
    w.recv_json()
    st, out = sim.ctl("mode", {"mode": "down"})
    check("/_sim/mode down", st == 200 and out["mode"] == "down", out)
    try:
        r = sim.request("GET", "/metrics", timeout=3)
        check("down: no answer", False, r)
    except (urllib.error.URLError, ConnectionError, OSError) as e:
        check("down: connection closed without an answer", "timed out" not in str(e), repr(e))
    check("down: ws clients dropped without a close frame", w.expect_eof(timeout=3))
    w.close()
    s = socket.create_connection(("127.0.0.1", sim.port), timeout=3)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    check("down: raw socket sees EOF, no bytes", s.recv(100) == b"")
    s.close()
    try:
        ws = WS(sim.port)
        check("down: ws handshake refused", False, ws.status)
    except (EOFError, OSError):
        check("down: ws handshake gets no answer", True)
    for path in NEW_PATHS:
        try:
            r = sim.request("GET", path.replace("{id}", sid), timeout=3)
            check(f"down: {path} gets no answer", False, r)
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            check(f"down: {path} gets no answer", "timed out" not in str(e), repr(e))
    st = sim.state()
    check("down: /_sim/ still answers and counts attempts",
          st["requests"]["/metrics"]["count"] >= 1 and st["mode"]["mode"] == "down", st["mode"])

    # bad_json
    sim.ctl("mode", {"mode": "bad_json"})
    st, hd, body = sim.request("GET", "/metrics")
    try:
        json.loads(body)
        check("bad_json: 200 with invalid JSON", False, body)
    except ValueError:
        check("bad_json: 200 with invalid JSON",
              st == 200 and hd.get("Content-Type") == "application/json", st)
    st, _, body = sim.request("GET", "/sessions/count")
    check("bad_json applies to every KATO path", st == 200 and not body.startswith(b'{"active'))
    for path in NEW_PATHS:
        st, _, body = sim.request("GET", path.replace("{id}", sid))
        try:
            json.loads(body)
            check(f"bad_json: {path} is not JSON", False, body)
        except ValueError:
            check(f"bad_json: {path} is not JSON", st == 200, st)

    # slow
    sim.ctl("mode", {"mode": "slow", "delay": 0.6})
    t = time.time()
    st, m = sim.get_json("/metrics")
    dt = time.time() - t
    check("slow: answer delayed, body intact", st == 200 and dt >= 0.55 and "performance" in m, dt)
    sim.ctl("mode", {"mode": "slow", "delay": 0.6, "paths": ["/metrics"]})
    t = time.time()
    st, _ = sim.get_json("/health")
    check("mode paths: /health not slowed", st == 200 and time.time() - t < 0.4)
    t = time.time()
    sim.get_json("/metrics")
    check("mode paths: /metrics slowed", time.time() - t >= 0.55)
    t = time.time()
    sim.get_json("/_sim/state")
    check("/_sim/ never slowed", time.time() - t < 0.4)
    for path in NEW_PATHS:
        sim.ctl("mode", {"mode": "slow", "delay": 0.6, "paths": [path]})
        t = time.time()
        st, _ = sim.get_json(path.replace("{id}", sid))
        check(f"slow: {path} delayed, then 200", st == 200 and time.time() - t >= 0.55)

    # error_body
    sim.ctl("sessions/create", {"count": 2})
    sim.ctl("mode", {"mode": "error_body"})
    st, m = sim.get_json("/metrics")
    check("error_body: reduced /metrics body",
          st == 200 and set(m) == {"error", "timestamp", "processor_manager", "uptime_seconds",
                                   "active_sessions"} and m["active_sessions"] == 3
          and "total_processors" in m["processor_manager"], m)
    st, h = sim.get_json("/health")
    check("error_body: other endpoints normal", st == 200 and h["status"] == "healthy")
    st, x = sim.get_json("/stats?minutes=5")
    check("error_body: KATO's /stats error body",
          st == 200 and set(x) == {"error", "time_range_minutes", "timestamp",
                                   "processor_manager"} and x["time_range_minutes"] == 5, x)
    st, x = sim.get_json("/cache/stats")
    check("error_body: KATO's /cache/stats error body",
          st == 200 and set(x) == {"cache_performance", "cache_health", "timestamp"}
          and x["cache_performance"]["status"] == "error"
          and isinstance(x["cache_performance"]["error"], str)
          and x["cache_health"]["status"] == "error", x)
    for path in ("/connection-pools", "/distributed-stm/stats"):
        st, x = sim.get_json(path)
        check(f"error_body: KATO's {path} error body",
              st == 200 and set(x) == {"status", "error", "timestamp"} and x["status"] == "error",
              x)
    st, x = sim.get_json(f"/sessions/{sid}/stm")
    check("error_body: /sessions/{id}/stm normal", st == 200 and x["session_id"] == sid, x)

    # http500
    sim.ctl("mode", {"mode": "http500"})
    st, _, body = sim.request("GET", "/metrics")
    check("http500: 500 {\"detail\":...}", st == 500 and "detail" in json.loads(body), (st, body))
    c = WS(sim.port)
    check("http500: ws handshake gets 500", c.status == 500, c.status)
    c.close()
    for path in NEW_PATHS:
        st, _, body = sim.request("GET", path.replace("{id}", sid))
        check(f"http500: {path} 500 {{\"detail\"}}", st == 500 and "detail" in json.loads(body),
              (st, body))

    sim.ctl("mode", {"mode": "normal"})
    st, m = sim.get_json("/metrics")
    check("normal again", st == 200 and "performance" in m)


def test_counters(sim: Sim) -> None:
    sim.ctl("reset_counters")
    check("reset_counters empties counters", sim.state()["requests"] == {})
    for _ in range(3):
        sim.request("GET", "/metrics")
    sim.request("GET", "/health")
    sid = json.loads(sim.request("POST", "/sessions")[2])["session_id"]
    sim.request("GET", f"/sessions/{sid}")
    sim.request("GET", f"/sessions/{sid}/stm")
    sim.request("GET", "/sessions/session-nope/stm")
    sim.request("DELETE", f"/sessions/{sid}")
    for _ in range(2):
        sim.request("GET", "/cache/stats")
    sim.request("GET", "/stats?minutes=abc")
    st = sim.state()
    r = st["requests"]
    check("/sessions/{id}/stm counted as one path, 404s included",
          r.get("/sessions/{id}/stm", {}).get("count") == 2, r)
    check("new paths counted, 422s included",
          r.get("/cache/stats", {}).get("count") == 2 and r.get("/stats", {}).get("count") == 1, r)
    check("per-path counters", r["/metrics"]["count"] == 3 and r["/health"]["count"] == 1, r)
    check("per-path timestamps",
          r["/metrics"]["first"] <= r["/metrics"]["last"] and len(r["/metrics"]["recent"]) == 3)
    check("session paths are normalised", r.get("/sessions/{id}", {}).get("count") == 2, r)
    check("per-method counters",
          st["requests_by_method"].get("GET /metrics") == 3
          and st["requests_by_method"].get("DELETE /sessions/{id}") == 1,
          st["requests_by_method"])
    check("/_sim/ requests are not counted", not any(p.startswith("/_sim") for p in r), r)
    check("/_sim/state has the documented sections",
          {"settings", "mode", "total_requests", "total_errors", "sessions", "processors",
           "requests", "requests_by_method", "ws", "uptime_seconds", "pid"} <= set(st), sorted(st))


def test_robustness(sim: Sim) -> None:
    sim.ctl("reset")

    def raw(data: bytes, read: bool = True) -> bytes:
        s = socket.create_connection(("127.0.0.1", sim.port), timeout=3)
        try:
            s.sendall(data)
            if not read:
                return b""
            s.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    return out
                out += chunk
        except OSError:
            return b""
        finally:
            s.close()

    out = raw(b"GARBAGE\r\n\r\n")
    check("garbage request line -> 400 JSON", out.startswith(b"HTTP/1.1 400 ")
          and b'{"detail":' in out, out[:60])
    raw(os.urandom(3000))
    raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200))  # a TLS hello
    raw(b"GET /metrics HTTP/1.1\r\nHost: x", read=False)                      # half a request
    raw(b"POST /sessions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"a\"", read=False)
    raw(b"POST /sessions HTTP/1.1\r\nContent-Length: -5\r\n\r\n")
    raw(b"POST /sessions HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")
    out = raw(b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"a" * 70000 + b"\r\n\r\n")
    check("oversized header -> 4xx with JSON body",
          out.startswith(b"HTTP/1.1 4") and out.rstrip().endswith(b"}"), out[:80])
    out = raw(b"GET /metrics\r\n")
    check("HTTP/0.9 request -> 400 with a status line", out.startswith(b"HTTP/1.1 400 "),
          out[:80])
    # a client that disconnects before reading the response
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", sim.port), timeout=3)
        s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()                                   # RST
    # WebSocket client that vanishes mid-frame
    w = WS(sim.port)
    w.recv_json()
    w.sock.sendall(b"\x81\xfe\x01")
    w.close()
    w = WS(sim.port)
    w.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    w.close()
    sim.ctl("sessions/create", {"count": 3})       # broadcast to dead clients
    st, h = sim.get_json("/health")
    check("server survives garbage and rude clients", st == 200 and h["status"] == "healthy")

    # keep-alive: several requests on one connection
    s = socket.create_connection(("127.0.0.1", sim.port), timeout=3)
    s.sendall(b"GET /sessions/count HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
    data = b""
    end = time.monotonic() + 5
    while data.count(b"HTTP/1.1 200 OK") < 3 or not data.endswith(b"}"):
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    s.close()
    check("HTTP/1.1 keep-alive, pipelined requests", data.count(b"HTTP/1.1 200 OK") == 3,
          data[:200])

    # concurrency
    errors: list[Any] = []

    def worker() -> None:
        for i in range(15):
            try:
                path = ("/metrics", "/sessions/count", "/health")[i % 3]
                st, _ = sim.get_json(path)
                if st != 200:
                    errors.append(st)
            except Exception as e:      # noqa: BLE001 - collected and reported
                errors.append(repr(e))

    ts = [threading.Thread(target=worker) for _ in range(16)]
    creator = threading.Thread(target=lambda: [sim.ctl("sessions/create", {"count": 1})
                                               for _ in range(20)])
    for t in ts + [creator]:
        t.start()
    for t in ts + [creator]:
        t.join(30)
    check("240 concurrent requests while sessions churn", not errors, errors[:5])
    check("state consistent after concurrency",
          sim.get_json("/sessions/count")[1]["active_session_count"] == 23)

    st, out = sim.ctl("reset")
    s = sim.state()
    check("/_sim/reset restores defaults",
          s["settings"]["cpu_percent"] == 12.5 and s["sessions"]["active"] == 0
          and s["mode"]["mode"] == "normal" and s["requests"] == {}, s["settings"])


def test_sigterm(sim: Sim) -> None:
    w = WS(sim.port)
    w.recv_json()
    rc, out, err = sim.stop(signal.SIGTERM)
    check("SIGTERM: exits 0", rc == 0, (rc, err[-2000:]))
    check("SIGTERM: prints 'kato_sim stopped'", "kato_sim stopped" in out, out)
    try:
        f = w.recv_frame(timeout=3)
        check("SIGTERM: ws clients get close 1001", f[1] == 0x8 and close_code(f[2]) == 1001, f)
    except (EOFError, OSError) as e:
        check("SIGTERM: ws clients get close 1001", False, repr(e))
    w.close()
    check("SIGTERM: no tracebacks or warnings on stderr",
          "Traceback" not in err and "Warning" not in err, err[-3000:])


def test_demo() -> None:
    sim = Sim("--demo", "--demo-speed", "25", "--seed", "1", "--sample-interval", "0.2")
    try:
        w = WS(sim.port)
        w.recv_json()
        cpus, rates, statuses, events = set(), [], set(), 0
        deadline = time.time() + 8
        while time.time() < deadline:
            m = sim.get_json("/metrics")[1]
            cpus.add(m["resources"]["cpu_percent"])
            rates.append(m["performance"]["error_rate"])
            statuses.add(sim.get_json("/health")[1]["status"])
            try:
                while True:
                    w.recv_json(timeout=0.01)
                    events += 1
            except (TimeoutError, socket.timeout):
                pass
            time.sleep(0.05)
        check("demo: cpu varies", len(cpus) > 5, sorted(cpus)[:10])
        check("demo: error rate goes above 5 %", any(0.05 < r <= 0.10 for r in rates), max(rates))
        check("demo: error rate goes above 10 %", any(r > 0.10 for r in rates), max(rates))
        check("demo: error rate comes back down", rates[-1] < 0.05 or min(rates) < 0.05)
        check("demo: status degraded during the critical phase", "degraded" in statuses, statuses)
        check("demo: sessions come and go over /ws/events", events >= 3, events)
        st = sim.state()
        check("demo: sessions created and destroyed",
              st["sessions"]["total_created"] > 5 and st["sessions"]["total_deleted"] > 0,
              st["sessions"])
        w.close()
    finally:
        rc, out, err = sim.stop(signal.SIGINT)
    check("SIGINT: exits 0", rc == 0, (rc, err[-2000:]))
    check("demo: no tracebacks or warnings on stderr",
          "Traceback" not in err and "Warning" not in err, err[-3000:])


def main() -> int:
    sim = Sim("--sample-interval", "0.2")
    try:
        for t in (test_startup, test_metrics, test_health_status_stats, test_sessions_http,
                  test_stm, test_monitoring_endpoints, test_cache, test_websocket, test_modes,
                  test_counters, test_robustness):
            try:
                t(sim)
            except Exception:        # noqa: BLE001 - a crash in one group fails it
                check(f"{t.__name__} ran to completion", False, traceback.format_exc())
        test_sigterm(sim)
    finally:
        if sim.proc.poll() is None:
            sim.proc.kill()
            sim.proc.communicate()
    try:
        test_demo()
    except Exception:                # noqa: BLE001
        check("test_demo ran to completion", False, traceback.format_exc())
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
