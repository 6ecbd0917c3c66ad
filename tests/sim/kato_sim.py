#!/usr/bin/env python3
"""kato_sim - a scriptable simulator of the KATO service HTTP API.

KATO itself cannot run on the katomon build machines, so katomon's tests
and ``make demo`` talk to this simulator instead.  It serves the exact
shapes documented in the KATO API reference (GET /metrics, /sessions/count,
/health, /status, /stats, /cache/stats, /connection-pools,
/distributed-stm/stats, the session endpoints including /sessions/{id}/stm
and the /ws/events WebSocket stream) and adds a control API under ``/_sim/``
with which a test sets values, creates and destroys sessions, sets a
session's STM and switches failure modes.

Python 3.11 standard library only: ``http.server`` (ThreadingHTTPServer)
for HTTP and a small hand-written RFC 6455 server for /ws/events.

Usage::

    python3 tests/sim/kato_sim.py --port 0 --port-file /tmp/kato.port
    python3 tests/sim/kato_sim.py --port 8000 --demo

See tests/sim/README.md for the control API.

Design notes
------------
* All mutable state lives in one :class:`SimState`, guarded by one lock.
  WebSocket events are queued to each client *under that lock*, so every
  client sees the snapshot and the events in the same order as the state
  changed; a per-client writer thread drains the queue, so a stuck client
  never blocks the others or the HTTP side (its bounded queue overflows and
  it is dropped).
* ``cache_seconds`` (default 0 = off) reproduces KATO's ~5 s response cache
  for /metrics and /sessions/count.
* Failure modes apply to every KATO path (everything outside /_sim/), or to
  the paths listed in the mode's ``paths``.  The /_sim/ control API is never
  affected.  ``down`` keeps the listening socket open (so /_sim/ stays
  reachable) and closes each KATO connection right after reading the
  request, without writing a byte; WebSocket clients are dropped without a
  close frame.  To test "connection refused", stop the process instead.
* Sessions never expire by themselves; they go away by DELETE or
  /_sim/sessions/destroy.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import math
import os
import queue
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

KATO_VERSION = "3.10.1"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

MODES = ("normal", "down", "bad_json", "slow", "error_body", "http500")
STATUSES = ("healthy", "degraded", "unhealthy")

#: Largest request body accepted (HTTP) and largest WebSocket message.
MAX_BODY = 1 << 20
MAX_WS_MESSAGE = 1 << 20
#: Frames queued per WebSocket client before the client is dropped.
WS_QUEUE_LIMIT = 4096
#: Seconds a client gets to answer our close frame before we cut it off.
WS_CLOSE_TIMEOUT = 2.0

# WebSocket opcodes (RFC 6455 section 5.2).
OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

# A body that starts like /metrics and then stops being JSON.
BAD_JSON_BODY = b'{"timestamp":1699900000.0,"sessions":{"active":3,,"total_created": <html>oops'


def iso_now(ts: Optional[float] = None) -> str:
    """Return an ISO 8601 UTC timestamp (``2025-11-13T12:00:00.123456+00:00``)."""
    if ts is None:
        ts = time.time()
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def encode_json(obj: Any) -> bytes:
    """Encode like Starlette's JSONResponse: compact separators, UTF-8."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


# ---------------------------------------------------------------------------
# WebSocket framing (RFC 6455)
# ---------------------------------------------------------------------------

class WSProtocolError(Exception):
    """A client broke the WebSocket protocol; close with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def ws_accept_key(key: str) -> str:
    """Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key."""
    digest = hashlib.sha1((key + WS_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def ws_encode_frame(opcode: int, payload: bytes = b"", fin: bool = True,
                    mask: Optional[bytes] = None) -> bytes:
    """Build one WebSocket frame; ``mask`` (4 bytes) for client frames."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
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
        head += mask
        payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return bytes(head) + payload


def ws_close_payload(code: int, reason: str = "") -> bytes:
    """Payload of a close frame: 2-byte code and UTF-8 reason (<=123 bytes)."""
    return struct.pack("!H", code) + reason.encode("utf-8")[:123]


def _read_exact(rfile: Any, n: int) -> bytes:
    data = rfile.read(n) if n else b""
    if len(data) < n:
        raise EOFError("connection closed mid-frame")
    return data


def _unmask(payload: bytes, mask: bytes) -> bytes:
    # XOR through int arithmetic: fast enough for test traffic.
    n = len(payload)
    if not n:
        return payload
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def ws_read_frame(rfile: Any, max_payload: int = MAX_WS_MESSAGE) -> tuple[bool, int, bytes]:
    """Read one client frame from ``rfile``; return (fin, opcode, payload).

    Raises EOFError when the peer goes away and WSProtocolError when the
    frame breaks RFC 6455 (unmasked, RSV bits, bad control frame, too big).
    """
    b0, b1 = _read_exact(rfile, 2)
    fin = bool(b0 & 0x80)
    opcode = b0 & 0x0F
    if b0 & 0x70:
        raise WSProtocolError(1002, "RSV bits set without extension")
    if not b1 & 0x80:
        raise WSProtocolError(1002, "client frame not masked")
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _read_exact(rfile, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _read_exact(rfile, 8))
        if length >> 63:
            raise WSProtocolError(1002, "bad payload length")
    if opcode >= 0x8:
        if not fin or length > 125:
            raise WSProtocolError(1002, "bad control frame")
        if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
            raise WSProtocolError(1002, "unknown opcode")
    elif opcode not in (OP_CONT, OP_TEXT, OP_BINARY):
        raise WSProtocolError(1002, "unknown opcode")
    if length > max_payload:
        raise WSProtocolError(1009, "frame too big")
    mask = _read_exact(rfile, 4)
    return fin, opcode, _unmask(_read_exact(rfile, length), mask)


class WSClient:
    """One connected /ws/events client: a bounded queue and a writer thread.

    Anything may queue frames (under the state lock); only the writer
    thread writes to the socket.  The handler thread reads.
    """

    _ids = itertools.count(1)

    def __init__(self, sock: socket.socket, addr: Any) -> None:
        self.id = next(WSClient._ids)
        self.sock = sock
        self.addr = addr
        self.connected_at = time.time()
        self.messages_sent = 0
        self.messages_received = 0
        self.close_sent = False
        self.dead = threading.Event()
        self._q: "queue.Queue[Optional[bytes]]" = queue.Queue(WS_QUEUE_LIMIT)
        self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                        name=f"ws-writer-{self.id}")
        self._close_timer: Optional[threading.Timer] = None

    def start(self) -> None:
        self._writer.start()

    def _put(self, frame: Optional[bytes]) -> bool:
        if self.dead.is_set():
            return False
        try:
            self._q.put_nowait(frame)
            return True
        except queue.Full:
            self.abort()   # a client this far behind is gone for practical purposes
            return False

    def send_text(self, text: str) -> bool:
        """Queue one text frame; False if the client is gone."""
        if self.close_sent:
            return False
        ok = self._put(ws_encode_frame(OP_TEXT, text.encode("utf-8")))
        if ok:
            self.messages_sent += 1
        return ok

    def send_control(self, opcode: int, payload: bytes = b"") -> bool:
        """Queue one control frame (ping/pong)."""
        return self._put(ws_encode_frame(opcode, payload))

    def send_close(self, code: Optional[int] = 1000, reason: str = "",
                   wait_reply: bool = False) -> None:
        """Queue a close frame (once).  With ``wait_reply`` the client gets
        WS_CLOSE_TIMEOUT seconds to answer before the connection is cut."""
        if self.close_sent:
            return
        self.close_sent = True
        payload = b"" if code is None else ws_close_payload(code, reason)
        self._put(ws_encode_frame(OP_CLOSE, payload))
        if wait_reply:
            self._close_timer = threading.Timer(WS_CLOSE_TIMEOUT, self.abort)
            self._close_timer.daemon = True
            self._close_timer.start()

    def abort(self) -> None:
        """Drop the connection at once, without a close frame."""
        self.dead.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def finish(self) -> None:
        """Flush what is queued (bounded wait), then stop the writer."""
        try:
            self._q.put(None, timeout=1.0)
        except queue.Full:
            self.dead.set()
        if self._writer.is_alive():
            self._writer.join(timeout=WS_CLOSE_TIMEOUT)
        self.dead.set()
        if self._close_timer:
            self._close_timer.cancel()

    def _write_loop(self) -> None:
        while True:
            try:
                frame = self._q.get(timeout=0.25)
            except queue.Empty:
                if self.dead.is_set():
                    return
                continue
            if frame is None or self.dead.is_set():
                return
            try:
                self.sock.sendall(frame)
            except OSError:
                self.abort()
                return


# ---------------------------------------------------------------------------
# Simulated KATO state
# ---------------------------------------------------------------------------

# Settings accepted by POST /_sim/set: name -> (kind, lo, hi).
_NUMERIC_SETTINGS: dict[str, tuple[float, float]] = {
    "cpu_percent": (0.0, 100.0),
    "memory_percent": (0.0, 100.0),
    "disk_percent": (0.0, 100.0),
    "error_rate": (0.0, 1.0),
    "requests_per_second": (0.0, 1e9),
    "average_response_time": (0.0, 1e6),
    "cache_seconds": (0.0, 3600.0),
    "total_requests": (0.0, 1e15),
    "max_processors": (0.0, 1e9),
    "eviction_ttl_seconds": (0.0, 1e9),
    "cache_hit_rate": (0.0, 1.0),
}
SETTABLE = tuple(_NUMERIC_SETTINGS) + ("processors", "status", "ws_events",
                                       "unhealthy_databases")
DATABASES = ("clickhouse", "qdrant", "redis")

DEFAULTS: dict[str, Any] = {
    "cpu_percent": 12.5,
    "memory_percent": 44.9,
    "disk_percent": 41.2,
    "error_rate": 0.0,
    "requests_per_second": 1.2,
    "average_response_time": 0.025,
    "cache_seconds": 0.0,
    "max_processors": 100,
    "eviction_ttl_seconds": 3600,
    "status": "healthy",
    "ws_events": True,
    "cache_hit_rate": 0.85,
    "unhealthy_databases": [],
}
DEFAULT_TOTAL_REQUESTS = 10000.0
DEFAULT_PROCESSORS = 2

# Paths whose responses KATO caches when cache_seconds > 0.
CACHED_PATHS = ("/metrics", "/sessions/count")

#: The time series KATO's GET /stats always lists (in KATO's order); each is
#: a list of {timestamp, value, labels}, empty when no sample is in range.
STATS_SERIES = (
    "kato_cpu_usage_percent", "kato_memory_usage_percent", "kato_memory_usage_bytes",
    "kato_disk_usage_percent", "load_average_1m", "kato_requests_total",
    "kato_request_duration_seconds", "kato_errors_total", "sessions_created",
    "sessions_deleted", "session_operations",
    "clickhouse_operations", "clickhouse_response_time", "clickhouse_errors",
    "qdrant_operations", "qdrant_response_time", "qdrant_errors",
    "redis_operations", "redis_response_time", "redis_errors",
)
#: Samples kept for /stats (one hour at the default 5 s interval).
HISTORY_LEN = 720
#: /stats?minutes=N: FastAPI parses N as an int (422 otherwise).
_INT_QUERY = re.compile(r"^[+-]?[0-9]+$")

_SESSION_PATH = re.compile(r"^/sessions/([^/]+)$")
_SESSION_STM_PATH = re.compile(r"^/sessions/([^/]+)/stm$")


def default_settings() -> dict[str, Any]:
    """A fresh copy of DEFAULTS (its lists are not shared)."""
    return {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULTS.items()}


def new_session_id(now: Optional[float] = None) -> str:
    """KATO's session id: ``session-<32 hex>-<ms since the epoch>``."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"session-{uuid.uuid4().hex}-{ms}"


def normalize_path(path: str) -> str:
    """Collapse per-session paths so request counters stay readable."""
    if path != "/sessions/count" and _SESSION_PATH.match(path):
        return "/sessions/{id}"
    if _SESSION_STM_PATH.match(path):
        return "/sessions/{id}/stm"
    return path


class SimState:
    """Everything the simulator knows, behind one lock (``self.lock``)."""

    def __init__(self, cache_seconds: float = 0.0) -> None:
        self.lock = threading.RLock()
        self.start_wall = time.time()
        self.settings: dict[str, Any] = dict(default_settings(),
                                             cache_seconds=float(cache_seconds))
        self.mode = "normal"
        self.delay = 2.0
        self.mode_paths: Optional[list[str]] = None
        self._req_base = DEFAULT_TOTAL_REQUESTS
        self._req_mark = time.monotonic()
        self.processors: list[dict[str, Any]] = []
        self.sessions: dict[str, dict[str, Any]] = {}   # insertion order = age
        self.stm: dict[str, list[list[str]]] = {}       # session id -> its STM
        self.total_created = 0
        self.total_deleted = 0
        self.operations_total = 0
        self.requests: dict[str, dict[str, Any]] = {}
        self.requests_by_method: dict[str, int] = {}
        self.metrics_collected = 0
        self.last_collection = self.start_wall
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_LEN)
        self._cache: dict[str, tuple[float, bytes]] = {}
        self.ws_clients: dict[int, WSClient] = {}
        self.ws_connections_total = 0
        self.events_broadcast = 0
        self._node_seq = 0
        self.set_processors(DEFAULT_PROCESSORS)
        self.sample()

    # -- helpers -----------------------------------------------------------

    def uptime(self) -> float:
        return time.time() - self.start_wall

    def total_requests(self) -> int:
        """Requests served so far: a base plus requests_per_second * time."""
        with self.lock:
            rps = self.settings["requests_per_second"]
            return int(self._req_base + rps * (time.monotonic() - self._req_mark))

    def _rebase_requests(self, value: Optional[float] = None) -> None:
        now = time.monotonic()
        if value is None:
            rps = self.settings["requests_per_second"]
            value = self._req_base + rps * (now - self._req_mark)
        self._req_base, self._req_mark = float(value), now

    def set_processors(self, spec: Any) -> None:
        """Replace the processor list: an int N (generated) or a list of objects."""
        now = time.time()
        if isinstance(spec, bool) or not isinstance(spec, (int, list)):
            raise ValueError("processors must be an integer or a list of objects")
        if isinstance(spec, int):
            if spec < 0 or spec > 100000:
                raise ValueError("processors out of range")
            spec = [{} for _ in range(spec)]
        procs = []
        for i, p in enumerate(spec, 1):
            if not isinstance(p, dict):
                raise ValueError("each processor must be an object")
            try:
                idle = float(p.get("idle_seconds", 3.0 * i))
            except (TypeError, ValueError):
                raise ValueError("idle_seconds must be a number") from None
            proc = {
                "processor_id": f"kato-sim-processor-{i}",
                "node_id": f"sim-node-{i}",
                "created_at": iso_now(now - 600 - 60 * i),
                "last_accessed": iso_now(now - idle),
                "access_count": 5 * i,
                "idle_seconds": idle,
            }
            proc.update(p)
            proc["_last_access_wall"] = now - idle
            procs.append(proc)
        with self.lock:
            self.processors = procs

    def processor_stats(self) -> dict[str, Any]:
        now = time.time()
        procs = []
        for p in self.processors:
            q = {k: v for k, v in p.items() if not k.startswith("_")}
            q["idle_seconds"] = round(now - p["_last_access_wall"], 1)
            procs.append(q)
        return {
            "total_processors": len(procs),
            "max_processors": int(self.settings["max_processors"]),
            "eviction_ttl_seconds": int(self.settings["eviction_ttl_seconds"]),
            "processors": procs,
        }

    # -- settings, modes ---------------------------------------------------

    def apply_settings(self, changes: dict[str, Any]) -> None:
        """Validate every key first, then apply all of them (atomically)."""
        if not isinstance(changes, dict):
            raise ValueError("body must be a JSON object")
        clean: dict[str, Any] = {}
        for key, val in changes.items():
            if key in _NUMERIC_SETTINGS:
                lo, hi = _NUMERIC_SETTINGS[key]
                if isinstance(val, bool) or not isinstance(val, (int, float)) \
                        or not math.isfinite(val) or not lo <= val <= hi:
                    raise ValueError(f"{key} must be a number in [{lo:g}, {hi:g}]")
                clean[key] = float(val)
            elif key == "status":
                if val not in STATUSES:
                    raise ValueError(f"status must be one of {', '.join(STATUSES)}")
                clean[key] = val
            elif key == "ws_events":
                if not isinstance(val, bool):
                    raise ValueError("ws_events must be true or false")
                clean[key] = val
            elif key == "processors":
                if isinstance(val, bool) or not isinstance(val, (int, list)):
                    raise ValueError("processors must be an integer or a list of objects")
                clean[key] = val
            elif key == "unhealthy_databases":
                if not isinstance(val, list) or not all(v in DATABASES for v in val):
                    raise ValueError("unhealthy_databases must be a list of "
                                     + ", ".join(DATABASES))
                clean[key] = sorted(set(val))
            else:
                raise ValueError(f"unknown setting: {key}")
        with self.lock:
            if "processors" in clean:
                self.set_processors(clean.pop("processors"))
            if "requests_per_second" in clean:
                self._rebase_requests()
            if "total_requests" in clean:
                self._rebase_requests(clean.pop("total_requests"))
            for k in ("max_processors", "eviction_ttl_seconds"):
                if k in clean:
                    clean[k] = int(clean[k])
            self.settings.update(clean)
            if "cache_seconds" in clean:
                self._cache.clear()
            if clean.get("ws_events") is False:
                for c in list(self.ws_clients.values()):
                    c.send_close(1001, "event stream disabled", wait_reply=True)

    def set_mode(self, mode: Any, delay: Any = None, paths: Any = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, (int, float))
                                  or not 0 <= delay <= 3600):
            raise ValueError("delay must be a number of seconds in [0, 3600]")
        if paths is not None and (not isinstance(paths, list)
                                  or not all(isinstance(p, str) for p in paths)):
            raise ValueError("paths must be a list of strings")
        with self.lock:
            self.mode = mode
            if delay is not None:
                self.delay = float(delay)
            self.mode_paths = [normalize_path(p) for p in paths] if paths else None
            if mode == "down" and self._mode_applies("/ws/events"):
                for c in list(self.ws_clients.values()):
                    c.abort()

    def _mode_applies(self, path: str) -> bool:
        return self.mode_paths is None or path in self.mode_paths

    def mode_for(self, path: str) -> tuple[str, float]:
        """The failure mode in force for KATO ``path`` and the slow delay."""
        with self.lock:
            if self.mode != "normal" and self._mode_applies(path):
                return self.mode, self.delay
            return "normal", 0.0

    # -- request accounting --------------------------------------------------

    def count_request(self, method: str, path: str) -> None:
        now = time.time()
        with self.lock:
            r = self.requests.get(path)
            if r is None:
                r = self.requests[path] = {"count": 0, "first": now, "last": now,
                                           "recent": deque(maxlen=50)}
            r["count"] += 1
            r["last"] = now
            r["recent"].append(round(now, 3))
            key = f"{method} {path}"
            self.requests_by_method[key] = self.requests_by_method.get(key, 0) + 1

    def reset_counters(self) -> None:
        with self.lock:
            self.requests.clear()
            self.requests_by_method.clear()

    def reset(self) -> None:
        """Back to start-up defaults (sessions cleared without events)."""
        with self.lock:
            self.settings = default_settings()
            self.mode, self.delay, self.mode_paths = "normal", 2.0, None
            self._rebase_requests(DEFAULT_TOTAL_REQUESTS)
            self.set_processors(DEFAULT_PROCESSORS)
            self.sessions.clear()
            self.stm.clear()
            self.total_created = self.total_deleted = self.operations_total = 0
            self._cache.clear()
            self.reset_counters()
            self.history.clear()
            self.sample()

    def cached(self, path: str, build: Callable[[], Any]) -> bytes:
        """Encode ``build()``, through KATO's TTL cache when it is on."""
        with self.lock:
            ttl = self.settings["cache_seconds"]
            now = time.monotonic()
            if ttl > 0:
                hit = self._cache.get(path)
                if hit and now < hit[0]:
                    return hit[1]
            body = encode_json(build())
            if ttl > 0:
                self._cache[path] = (now + ttl, body)
            return body

    # -- sessions and events ---------------------------------------------------

    def _broadcast(self, event: dict[str, Any]) -> int:
        """Queue ``event`` to every WebSocket client (caller holds the lock)."""
        text = json.dumps(event, separators=(",", ":"))
        n = 0
        for c in list(self.ws_clients.values()):
            if c.send_text(text):
                n += 1
        self.events_broadcast += 1
        return n

    def broadcast_text(self, text: str) -> int:
        with self.lock:
            return sum(1 for c in list(self.ws_clients.values()) if c.send_text(text))

    def create_session(self, node_id: Optional[str] = None, ttl_seconds: Optional[int] = None,
                       metadata: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """Create one session, emit session.created; return its record."""
        with self.lock:
            now = time.time()
            if node_id is None:
                self._node_seq += 1
                node_id = f"sim-node-{(self._node_seq - 1) % 5 + 1}"
            ttl = 3600 if ttl_seconds is None else int(ttl_seconds)
            sid = new_session_id(now)
            rec = {
                "session_id": sid,
                "node_id": node_id,
                "created_at": iso_now(now),
                "expires_at": iso_now(now + ttl),
                "ttl_seconds": ttl,
                "metadata": metadata or {},
                "session_config": {},
            }
            self.sessions[sid] = rec
            self.stm[sid] = []
            self.total_created += 1
            self.operations_total += 1
            self._broadcast({
                "event_type": "session.created",
                "timestamp": now,
                "data": {"session_id": sid, "node_id": node_id, "created_at": rec["created_at"]},
            })
            return dict(rec)

    def destroy_session(self, sid: str, reason: str = "explicit_delete") -> bool:
        """Destroy session ``sid``, emit session.destroyed; False if unknown."""
        with self.lock:
            if sid not in self.sessions:
                return False
            del self.sessions[sid]
            self.stm.pop(sid, None)
            now = time.time()
            self.total_deleted += 1
            self.operations_total += 1
            self._broadcast({
                "event_type": "session.destroyed",
                "timestamp": now,
                "data": {"session_id": sid, "destroyed_at": iso_now(now), "reason": reason},
            })
            return True

    def destroy_oldest(self, count: int, reason: str = "explicit_delete") -> list[str]:
        with self.lock:
            victims = list(self.sessions)[:count]
            for sid in victims:
                self.destroy_session(sid, reason)
            return victims

    # -- WebSocket clients -------------------------------------------------------

    def ws_register(self, client: WSClient) -> None:
        """Add a client and queue its snapshot, atomically w.r.t. events."""
        with self.lock:
            self.ws_clients[client.id] = client
            self.ws_connections_total += 1
            client.send_text(json.dumps({
                "event_type": "state.snapshot",
                "data": {"active_sessions": len(self.sessions),
                         "system_status": self.settings["status"]},
            }, separators=(",", ":")))

    def ws_unregister(self, client: WSClient) -> None:
        with self.lock:
            self.ws_clients.pop(client.id, None)

    def ws_close_all(self, code: int = 1001, reason: str = "", abort: bool = False) -> int:
        with self.lock:
            clients = list(self.ws_clients.values())
        for c in clients:
            if abort:
                c.abort()
            else:
                c.send_close(code, reason, wait_reply=True)
        return len(clients)

    # -- bodies ------------------------------------------------------------------

    def _sample_at(self, ts: float, tr: int) -> dict[str, Any]:
        """One time-series sample taken at ``ts`` with ``tr`` requests so far."""
        with self.lock:
            s = self.settings
            return {
                "timestamp": ts,
                "kato_cpu_usage_percent": s["cpu_percent"],
                "kato_memory_usage_percent": s["memory_percent"],
                "kato_memory_usage_bytes": round(s["memory_percent"] / 100 * 16 * 2 ** 30),
                "kato_disk_usage_percent": s["disk_percent"],
                "load_average_1m": round(s["cpu_percent"] / 25.0, 2),
                "kato_requests_total": tr,
                "kato_request_duration_seconds": s["average_response_time"],
                "kato_errors_total": round(tr * s["error_rate"]),
                "sessions_created": self.total_created,
                "sessions_deleted": self.total_deleted,
                "session_operations": self.operations_total,
                **{f"{db}_{m}": v for db, d in self._databases(tr).items()
                   for m, v in (("operations", d["operations"]), ("errors", d["errors"]),
                                ("response_time", d["avg_response_time"]))},
            }

    def sample(self) -> None:
        """Record one time-series sample (called every --sample-interval s)."""
        with self.lock:
            self.metrics_collected += 1
            self.last_collection = time.time()
            self.history.append(self._sample_at(self.last_collection, self.total_requests()))

    def backfill(self, minutes: Any, interval: Any) -> int:
        """Replace the /stats history with samples every ``interval`` seconds
        over the past ``minutes`` minutes (current values; the request total
        counted back at requests_per_second).  Returns the number of samples."""
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) \
                or not 0 <= minutes <= 1440:
            raise ValueError("minutes must be a number in [0, 1440]")
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
                or not 0.1 <= interval <= 3600:
            raise ValueError("interval must be a number of seconds in [0.1, 3600]")
        n = int(minutes * 60 // interval)
        if n > HISTORY_LEN:
            raise ValueError(f"{n} samples: at most {HISTORY_LEN} are kept")
        with self.lock:
            now = time.time()
            tr = self.total_requests()
            rps = self.settings["requests_per_second"]
            self.history.clear()
            for k in range(n, 0, -1):
                age = k * interval
                self.history.append(self._sample_at(now - age, max(0, int(tr - rps * age))))
            return n

    def _databases(self, tr: int) -> dict[str, dict[str, Any]]:
        er = self.settings["error_rate"]
        out = {}
        for name, share, rt in (("clickhouse", 0.25, 0.004), ("qdrant", 0.2, 0.006),
                                ("redis", 0.5, 0.0008)):
            ops = int(tr * share)
            out[name] = {"operations": ops, "errors": round(ops * er / 10),
                         "avg_response_time": rt}
        return out

    def metrics_body(self) -> dict[str, Any]:
        """The full GET /metrics body."""
        with self.lock:
            s = self.settings
            tr = self.total_requests()
            er, rps = s["error_rate"], s["requests_per_second"]
            return {
                "timestamp": time.time(),
                "sessions": {"total_created": self.total_created,
                             "total_deleted": self.total_deleted,
                             "active": len(self.sessions),
                             "operations_total": self.operations_total},
                "performance": {"total_requests": tr,
                                "total_errors": round(tr * er),
                                "error_rate": er,
                                "average_response_time": s["average_response_time"]},
                "resources": {"cpu_percent": s["cpu_percent"],
                              "memory_percent": s["memory_percent"],
                              "disk_percent": s["disk_percent"]},
                "databases": self._databases(tr),
                "processor_manager": self.processor_stats(),
                "rates": {"requests_per_second": round(rps, 3),
                          "requests_per_minute": round(rps * 60, 3),
                          "errors_per_minute": round(rps * 60 * er, 3)},
            }

    def error_metrics_body(self) -> dict[str, Any]:
        """KATO's reduced /metrics body from its error path."""
        with self.lock:
            return {
                "error": "Metrics collection failed: simulated collector failure",
                "timestamp": time.time(),
                "processor_manager": self.processor_stats(),
                "uptime_seconds": round(self.uptime(), 3),
                "active_sessions": len(self.sessions),
            }

    def issues(self) -> list[str]:
        s = self.settings
        out = []
        if s["status"] != "healthy":
            out.append(f"Simulated status: {s['status']}")
        if s["cpu_percent"] > 90:
            out.append(f"High CPU usage: {s['cpu_percent']:.1f}%")
        if s["memory_percent"] > 90:
            out.append(f"High memory usage: {s['memory_percent']:.1f}%")
        if s["disk_percent"] > 90:
            out.append(f"High disk usage: {s['disk_percent']:.1f}%")
        if s["error_rate"] > 0.05:
            out.append(f"High error rate: {s['error_rate'] * 100:.1f}%")
        return out

    def health_body(self) -> dict[str, Any]:
        with self.lock:
            st = self.settings["status"]
            return {
                "status": st,
                "processor_status": st,
                "service_name": "kato",
                "uptime_seconds": round(self.uptime(), 3),
                "issues": self.issues(),
                "metrics_collected": self.metrics_collected,
                "last_collection": self.last_collection,
                "active_sessions": len(self.sessions),
                "timestamp": iso_now(),
            }

    def status_body(self) -> dict[str, Any]:
        with self.lock:
            n = len(self.sessions)
            return {
                "status": self.settings["status"],
                "base_processor_id": "kato-sim",
                "uptime_seconds": round(self.uptime(), 3),
                "sessions": {"total_sessions": n, "active_sessions": n,
                             "expired_sessions": 0, "backend": "redis"},
                "processors": self.processor_stats(),
                "version": KATO_VERSION,
            }

    def stats_body(self, minutes: int) -> dict[str, Any]:
        """GET /stats?minutes=N: every series, the samples of the last N
        minutes (none when N <= 0, as KATO's window is then empty)."""
        with self.lock:
            now = time.time()
            if minutes > 0:
                since = now - minutes * 60
                samples = [h for h in self.history if h["timestamp"] >= since]
            else:
                samples = []
            summary = self.metrics_body()
            return {
                "time_range_minutes": minutes,
                "timestamp": now,
                "processor_manager": self.processor_stats(),
                "current_status": self.health_body(),
                "time_series": {name: [{"timestamp": h["timestamp"], "value": h[name], "labels": {}}
                                       for h in samples] for name in STATS_SERIES},
                "summary": {k: summary[k] for k in ("sessions", "performance",
                                                    "resources", "databases")},
            }

    def error_stats_body(self, minutes: int) -> dict[str, Any]:
        """KATO's /stats body from its error path."""
        with self.lock:
            return {
                "error": "Stats collection failed: simulated collector failure",
                "time_range_minutes": minutes,
                "timestamp": time.time(),
                "processor_manager": self.processor_stats(),
            }

    # -- /cache/stats, /connection-pools, /distributed-stm/stats -----------------
    #
    # Their outer shapes are KATO's (kato/api/schemas/monitoring.py); the inner
    # objects are KATO's business and are invented here, derived only from the
    # simulator's state so that a test can predict them.

    def cache_stats_body(self) -> dict[str, Any]:
        """GET /cache/stats: KATO's Redis pattern cache."""
        with self.lock:
            s = self.settings
            lookups = int(self.total_requests() * 0.6)
            hits = round(lookups * s["cache_hit_rate"])
            misses = lookups - hits
            max_size = 10000
            size = min(max_size, 40 * len(self.processors) + 12 * len(self.sessions))
            ok = s["status"] != "unhealthy" and "redis" not in s["unhealthy_databases"]
            return {
                "cache_performance": {
                    "status": "active",
                    "hits": hits,
                    "misses": misses,
                    "total_requests": lookups,
                    "hit_rate": round(hits / lookups, 4) if lookups else 0.0,
                    "size": size,
                    "max_size": max_size,
                    "evictions": max(0, misses - size),
                    "memory_usage_bytes": size * 512,
                    "ttl_seconds": 3600,
                },
                "cache_health": {
                    "status": "healthy" if ok else "unhealthy",
                    "redis_connected": ok,
                    "latency_ms": 0.8 if ok else None,
                },
                "timestamp": iso_now(),
            }

    def error_cache_stats_body(self) -> dict[str, Any]:
        err = "simulated cache failure"
        return {"cache_performance": {"status": "error", "error": err},
                "cache_health": {"status": "error", "error": err},
                "timestamp": iso_now()}

    def connection_pools_body(self) -> dict[str, Any]:
        """GET /connection-pools: one pool per database KATO uses."""
        with self.lock:
            active = len(self.sessions)
            bad = self.settings["unhealthy_databases"]
            now = iso_now()
            sizes = {"clickhouse": 10, "qdrant": 10, "redis": 50}
            busy = {"clickhouse": (active + 3) // 4, "qdrant": (active + 4) // 5,
                    "redis": active // 2 + 1}
            health, pools = {}, {}
            for db in DATABASES:
                ok = db not in bad
                health[db] = {"healthy": ok, "last_check": now,
                              "error": None if ok else f"{db}: connection refused (simulated)"}
                in_use = min(sizes[db], busy[db]) if ok else 0
                pools[db] = {"size": sizes[db], "in_use": in_use,
                             "available": sizes[db] - in_use if ok else 0,
                             "max_overflow": sizes[db] // 2,
                             "total_connections_created": sizes[db] + self.total_created // 10}
            return {
                "status": "healthy" if not bad else "degraded",
                "health": health,
                "pool_statistics": pools,
                "connection_optimization": {
                    "clickhouse": {"pool_size_optimized": True, "connection_reuse": True,
                                   "health_monitoring": True,
                                   "features": ["http_client", "compression",
                                                "connection_pooling"]},
                    "redis": {"pool_size_optimized": True, "connection_reuse": True,
                              "health_monitoring": True,
                              "features": ["socket_keepalive", "retry_on_timeout",
                                           "health_check"]},
                    "qdrant": {"grpc_optimized": True, "connection_reuse": True,
                               "health_monitoring": True,
                               "features": ["prefer_grpc", "timeout_handling"]},
                },
                "performance_improvements": {
                    "expected_connection_overhead_reduction": "60-80%",
                    "expected_concurrent_performance_improvement": "40-60%",
                    "expected_memory_efficiency_improvement": "30-50%",
                },
                "timestamp": now,
            }

    @staticmethod
    def error_status_body(what: str) -> dict[str, Any]:
        """KATO's error path of /connection-pools and /distributed-stm/stats."""
        return {"status": "error", "error": f"simulated {what} failure",
                "timestamp": iso_now()}

    def distributed_stm_body(self) -> dict[str, Any]:
        """GET /distributed-stm/stats: STM statistics per node."""
        with self.lock:
            n_procs = len(self.processors)
            if not n_procs:
                return {"status": "disabled", "distributed_stm_enabled": False,
                        "reason": "No processors with distributed STM available",
                        "processor_info": {"total_active_processors": 0},
                        "timestamp": iso_now()}
            nodes: dict[str, dict[str, Any]] = {}
            for p in self.processors:
                nid = str(p.get("node_id"))
                nodes.setdefault(nid, {"processor_id": p.get("processor_id"), "sessions": 0,
                                       "stm_events": 0})
            for sid, rec in self.sessions.items():
                n = nodes.setdefault(str(rec["node_id"]), {"processor_id": None, "sessions": 0,
                                                           "stm_events": 0})
                n["sessions"] += 1
                n["stm_events"] += len(self.stm.get(sid, []))
            for n in nodes.values():
                n["sync_operations"] = 10 * n["sessions"] + 2 * n["stm_events"]
                n["sync_errors"] = 0
                n["avg_sync_latency_ms"] = 1.5 if n["sessions"] else 0.0
            ops = sum(n["sync_operations"] for n in nodes.values())
            return {
                "status": "active",
                "distributed_stm_enabled": True,
                "performance_stats": {
                    "total_nodes": len(nodes),
                    "total_sessions": len(self.sessions),
                    "total_stm_events": sum(n["stm_events"] for n in nodes.values()),
                    "total_sync_operations": ops,
                    "total_sync_errors": 0,
                    "avg_sync_latency_ms": 1.5 if ops else 0.0,
                    "nodes": {k: nodes[k] for k in sorted(nodes)},
                },
                "processor_info": {
                    "sample_processor_id": self.processors[0].get("processor_id"),
                    "total_active_processors": n_procs,
                },
                "expected_improvements": {
                    "stm_coordination_overhead_reduction": "50-70%",
                    "distributed_state_consistency": "near real-time",
                    "horizontal_scaling_support": "enabled",
                },
                "timestamp": iso_now(),
            }

    # -- short-term memory -------------------------------------------------------

    def stm_body(self, sid: str) -> Optional[dict[str, Any]]:
        """GET /sessions/{id}/stm, or None for an unknown session."""
        with self.lock:
            if sid not in self.sessions:
                return None
            self.operations_total += 1
            stm = [list(ev) for ev in self.stm.get(sid, [])]
            return {"stm": stm, "session_id": sid, "length": len(stm)}

    def set_stm(self, sid: Any, stm: Any) -> int:
        """Replace a session's STM (a list of events, each a list of strings)."""
        if not isinstance(sid, str):
            raise ValueError("session_id must be a string")
        if not isinstance(stm, list) or not all(
                isinstance(ev, list) and all(isinstance(x, str) for x in ev) for ev in stm):
            raise ValueError("stm must be a list of events, each a list of strings")
        with self.lock:
            if sid not in self.sessions:
                raise KeyError(sid)
            self.stm[sid] = [list(ev) for ev in stm]
            return len(stm)

    def state_body(self) -> dict[str, Any]:
        """Everything, for GET /_sim/state."""
        with self.lock:
            tr = self.total_requests()
            return {
                "settings": dict(self.settings),
                "mode": {"mode": self.mode, "delay": self.delay, "paths": self.mode_paths},
                "total_requests": tr,
                "total_errors": round(tr * self.settings["error_rate"]),
                "sessions": {"active": len(self.sessions),
                             "ids": list(self.sessions),
                             "total_created": self.total_created,
                             "total_deleted": self.total_deleted,
                             "operations_total": self.operations_total},
                "processors": len(self.processors),
                "requests": {p: {"count": r["count"], "first": r["first"], "last": r["last"],
                                 "recent": list(r["recent"])}
                             for p, r in self.requests.items()},
                "requests_by_method": dict(self.requests_by_method),
                "ws": {"clients": len(self.ws_clients),
                       "connections_total": self.ws_connections_total,
                       "events_broadcast": self.events_broadcast},
                "uptime_seconds": round(self.uptime(), 3),
                "pid": os.getpid(),
            }


# ---------------------------------------------------------------------------
# HTTP server
# ---------------------------------------------------------------------------

class KatoSimServer(ThreadingHTTPServer):
    """Threading HTTP server carrying the shared :class:`SimState`."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], sim: SimState, verbose: bool = False,
                 ws_path: Optional[str] = None) -> None:
        self.sim = sim
        self.verbose = verbose
        self.ws_path = ws_path  # another path the /ws/events stream is served at
        super().__init__(addr, KatoSimHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, EOFError)):
            return                                    # client went away: normal
        sys.stderr.write(f"kato_sim: error serving {client_address}: {exc!r}\n")
        if self.verbose:
            traceback.print_exc()


class _Reply(Exception):
    """Raised inside a handler to answer at once with (status, body)."""

    def __init__(self, status: int, body: Any, headers: Optional[dict[str, str]] = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


# KATO routes: path -> allowed methods.  "/sessions/{id}" is a pattern.
KATO_ROUTES: dict[str, tuple[str, ...]] = {
    "/metrics": ("GET",),
    "/sessions/count": ("GET",),
    "/health": ("GET",),
    "/status": ("GET",),
    "/stats": ("GET",),
    "/sessions": ("POST",),
    "/sessions/{id}": ("GET", "DELETE"),
    "/sessions/{id}/stm": ("GET",),
    "/cache/stats": ("GET",),
    "/connection-pools": ("GET",),
    "/distributed-stm/stats": ("GET",),
    "/ws/events": ("GET",),
}

CONTROL_ROUTES: dict[str, tuple[str, ...]] = {
    "/_sim": ("GET",),
    "/_sim/state": ("GET",),
    "/_sim/set": ("POST",),
    "/_sim/mode": ("POST",),
    "/_sim/sessions/create": ("POST",),
    "/_sim/sessions/destroy": ("POST",),
    "/_sim/sessions/stm": ("POST",),
    "/_sim/stats/backfill": ("POST",),
    "/_sim/ws/send": ("POST",),
    "/_sim/ws/close": ("POST",),
    "/_sim/reset_counters": ("POST",),
    "/_sim/reset": ("POST",),
}


class KatoSimHandler(BaseHTTPRequestHandler):
    """Serves KATO's API, the /ws/events stream and the /_sim/ control API."""

    server: KatoSimServer
    protocol_version = "HTTP/1.1"       # keep-alive, like uvicorn
    server_version = "uvicorn"
    timeout = 120                       # idle keep-alive connections are closed

    def version_string(self) -> str:
        return self.server_version

    def parse_request(self) -> bool:
        """Refuse HTTP/0.9 (no status line, no headers), as uvicorn does."""
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(400, "Invalid HTTP request received.")
            return False
        return True

    def send_error(self, code: int, message: Optional[str] = None,
                   explain: Optional[str] = None) -> None:
        """Errors found while parsing (bad request line, huge headers...):
        always a status line and a JSON body, then close."""
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"     # make send_response write a status line
        self.close_connection = True
        try:
            phrase = self.responses.get(code, ("Error",))[0]
            body = encode_json({"detail": message or phrase})
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            sys.stderr.write("kato_sim: %s %s\n" % (self.address_string(), format % args))

    # Every method goes through one dispatcher.
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    # -- plumbing ------------------------------------------------------------

    def _send_bytes(self, status: int, body: bytes, ctype: str = "application/json",
                    headers: Optional[dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, headers: Optional[dict[str, str]] = None) -> None:
        self._send_bytes(status, obj if isinstance(obj, bytes) else encode_json(obj),
                         headers=headers)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise _Reply(411, {"detail": "kato_sim needs Content-Length, not chunked bodies"})
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            n = int(raw)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise _Reply(400, {"detail": "bad Content-Length"})
        if n > MAX_BODY:
            self.close_connection = True
            raise _Reply(413, {"detail": "request body too large"})
        body = self.rfile.read(n)
        if len(body) < n:
            raise EOFError("client went away mid-body")
        return body

    def _drop(self) -> None:
        """'down' mode: close the connection without answering."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _dispatch(self, method: str) -> None:
        try:
            try:
                self._route(method)
            except _Reply as r:
                self._send_json(r.status, r.body, r.headers)
        except (ConnectionError, TimeoutError, EOFError, OSError):
            self.close_connection = True
        except Exception:   # a bug here must not take the server down
            self.close_connection = True
            sys.stderr.write("kato_sim: internal error on %s %s\n%s"
                             % (method, self.path, traceback.format_exc()))
            try:
                self._send_json(500, {"detail": "Internal Server Error"})
            except OSError:
                pass

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path
        if self.server.ws_path and path == self.server.ws_path:
            path = "/ws/events"  # the stream where a proxy would put it
        elif path == "/ws/events" and self.server.ws_path:
            raise _Reply(404, {"detail": "Not Found"})
        if path == "/_sim" or path.startswith("/_sim/"):
            self._control(method, path.rstrip("/") or "/_sim", self._read_body())
            return
        body = self._read_body()
        sim = self.server.sim
        norm = normalize_path(path)
        sim.count_request(method, normalize_path(url.path))  # as asked, before --ws-path
        mode, delay = sim.mode_for(norm)
        if mode == "down":
            self._drop()
            return
        if mode == "slow":
            time.sleep(delay)
        elif mode == "http500":
            raise _Reply(500, {"detail": "Internal Server Error: simulated failure"})
        elif mode == "bad_json" and norm != "/ws/events":
            self._send_bytes(200, BAD_JSON_BODY)
            return
        allowed = KATO_ROUTES.get(norm)
        if allowed is None:
            raise _Reply(404, {"detail": "Not Found"})
        if method not in allowed:
            raise _Reply(405, {"detail": "Method Not Allowed"}, {"Allow": ", ".join(allowed)})
        self._kato(method, norm, path, url.query, body, mode)

    # -- KATO endpoints ------------------------------------------------------

    def _kato(self, method: str, norm: str, path: str, query: str, body: bytes,
              mode: str) -> None:
        sim = self.server.sim
        if norm == "/metrics":
            if mode == "error_body":
                self._send_json(200, sim.error_metrics_body())
            else:
                self._send_json(200, sim.cached("/metrics", sim.metrics_body))
        elif norm == "/sessions/count":
            self._send_json(200, sim.cached("/sessions/count",
                                            lambda: {"active_session_count": len(sim.sessions)}))
        elif norm == "/health":
            self._send_json(200, sim.health_body())
        elif norm == "/status":
            self._send_json(200, sim.status_body())
        elif norm == "/stats":
            # KATO declares `minutes: int = 10`: FastAPI checks that it is an
            # integer and nothing else (no range), so 0 or -5 answer 200 with
            # empty series.
            raw = parse_qs(query, keep_blank_values=True).get("minutes", ["10"])[-1]
            if not _INT_QUERY.match(raw):
                raise _Reply(422, {"detail": [{
                    "type": "int_parsing", "loc": ["query", "minutes"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "input": raw}]})
            minutes = int(raw)
            if mode == "error_body":
                self._send_json(200, sim.error_stats_body(minutes))
            else:
                self._send_json(200, sim.stats_body(minutes))
        elif norm == "/cache/stats":
            self._send_json(200, sim.error_cache_stats_body() if mode == "error_body"
                            else sim.cache_stats_body())
        elif norm == "/connection-pools":
            self._send_json(200, sim.error_status_body("connection pool") if mode == "error_body"
                            else sim.connection_pools_body())
        elif norm == "/distributed-stm/stats":
            self._send_json(200, sim.error_status_body("distributed STM") if mode == "error_body"
                            else sim.distributed_stm_body())
        elif norm == "/sessions/{id}/stm":
            sid = path.split("/")[2]
            body_ = sim.stm_body(sid)
            if body_ is None:
                raise _Reply(404, {"detail": f"Session {sid} not found or expired"})
            self._send_json(200, body_)
        elif norm == "/sessions":
            self._send_json(200, sim.create_session(**self._session_request(body)))
        elif norm == "/sessions/{id}":
            sid = path.rsplit("/", 1)[1]
            with sim.lock:
                if method == "GET":
                    rec = sim.sessions.get(sid)
                    if rec is not None:
                        sim.operations_total += 1
                        rec = dict(rec)
                elif sim.destroy_session(sid):
                    rec = {"status": "deleted", "session_id": sid}
                else:
                    rec = None
            if rec is None:
                # KATO's words: GET says "not found or expired", DELETE "not found"
                raise _Reply(404, {"detail": f"Session {sid} not found"
                                             + (" or expired" if method == "GET" else "")})
            self._send_json(200, rec)
        elif norm == "/ws/events":
            self._websocket()

    @staticmethod
    def _session_request(body: bytes) -> dict[str, Any]:
        """Parse POST /sessions' optional body (node_id, metadata, ttl_seconds)."""
        if not body.strip():
            return {}
        try:
            req = json.loads(body)
        except ValueError as e:
            raise _Reply(422, {"detail": [{"type": "json_invalid", "loc": ["body", 0],
                                           "msg": "JSON decode error",
                                           "ctx": {"error": str(e)}}]})
        if not isinstance(req, dict):
            raise _Reply(422, {"detail": [{"type": "model_attributes_type", "loc": ["body"],
                                           "msg": "Input should be a valid dictionary"}]})
        out: dict[str, Any] = {}
        if isinstance(req.get("node_id"), str):
            out["node_id"] = req["node_id"]
        if isinstance(req.get("ttl_seconds"), int) and not isinstance(req["ttl_seconds"], bool):
            out["ttl_seconds"] = req["ttl_seconds"]
        if isinstance(req.get("metadata"), dict):
            out["metadata"] = req["metadata"]
        return out

    # -- WebSocket /ws/events ----------------------------------------------------

    def _websocket(self) -> None:
        sim = self.server.sim
        with sim.lock:
            enabled = sim.settings["ws_events"]
        if not enabled:
            raise _Reply(404, {"detail": "Not Found"})
        h = self.headers
        if "websocket" not in h.get("Upgrade", "").lower() \
                or "upgrade" not in h.get("Connection", "").lower():
            # Starlette: a plain HTTP request to a websocket route is a 404.
            raise _Reply(404, {"detail": "Not Found"})
        if h.get("Sec-WebSocket-Version", "").strip() != "13":
            raise _Reply(426, {"detail": "Unsupported WebSocket version"},
                         {"Sec-WebSocket-Version": "13"})
        key = h.get("Sec-WebSocket-Key", "").strip()
        try:
            if len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError
        except ValueError:
            raise _Reply(400, {"detail": "Missing or bad Sec-WebSocket-Key"})

        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", ws_accept_key(key))
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        self.connection.settimeout(None)        # event streams idle for long

        client = WSClient(self.connection, self.client_address)
        sim.ws_register(client)
        client.start()
        try:
            self._ws_read_loop(client)
        finally:
            sim.ws_unregister(client)
            client.finish()

    def _ws_read_loop(self, client: WSClient) -> None:
        frag_op: Optional[int] = None
        frag = bytearray()
        while not client.dead.is_set():
            try:
                fin, op, payload = ws_read_frame(self.rfile)
                if op == OP_CLOSE:
                    if len(payload) == 1:
                        raise WSProtocolError(1002, "bad close payload")
                    if not client.close_sent:        # echo the client's close
                        client.send_close(struct.unpack("!H", payload[:2])[0]
                                          if payload else None)
                    return
                if op == OP_PING:
                    client.send_control(OP_PONG, payload)
                    continue
                if op == OP_PONG:
                    continue
                if op == OP_CONT:
                    if frag_op is None:
                        raise WSProtocolError(1002, "continuation without a start frame")
                    frag += payload
                elif frag_op is not None:
                    raise WSProtocolError(1002, "new message inside a fragmented one")
                else:
                    frag_op, frag = op, bytearray(payload)
                if len(frag) > MAX_WS_MESSAGE:
                    raise WSProtocolError(1009, "message too big")
                if not fin:
                    continue
                msg_op, msg = frag_op, bytes(frag)
                frag_op, frag = None, bytearray()
                client.messages_received += 1
                if msg_op == OP_TEXT:
                    try:
                        text = msg.decode("utf-8")
                    except UnicodeDecodeError:
                        raise WSProtocolError(1007, "invalid UTF-8 in text frame")
                    if text == "ping" and not client.close_sent:
                        client.send_text("pong")
                    # Like KATO, any other client message is ignored.
            except WSProtocolError as e:
                client.send_close(e.code, e.reason)
                return
            except (EOFError, OSError, ValueError):
                return

    # -- control API ---------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> None:
        sim = self.server.sim
        allowed = CONTROL_ROUTES.get(path)
        if allowed is None:
            raise _Reply(404, {"error": f"unknown control endpoint {path}",
                               "endpoints": sorted(CONTROL_ROUTES)})
        if method not in allowed:
            raise _Reply(405, {"error": f"{path} takes {', '.join(allowed)}"},
                         {"Allow": ", ".join(allowed)})
        req: Any = {}
        if body.strip():
            try:
                req = json.loads(body)
            except ValueError as e:
                raise _Reply(400, {"error": f"bad JSON: {e}"})
        if not isinstance(req, dict):
            raise _Reply(400, {"error": "body must be a JSON object"})
        try:
            out = self._control_op(sim, path, req)
        except ValueError as e:
            raise _Reply(400, {"error": str(e)})
        self._send_json(200, out)

    @staticmethod
    def _count_arg(req: dict[str, Any]) -> int:
        n = req.get("count", 1)
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 100000:
            raise ValueError("count must be an integer in [0, 100000]")
        return n

    def _control_op(self, sim: SimState, path: str, req: dict[str, Any]) -> dict[str, Any]:
        if path == "/_sim":
            return {"endpoints": CONTROL_ROUTES, "settable": list(SETTABLE), "modes": list(MODES)}
        if path == "/_sim/state":
            return sim.state_body()
        if path == "/_sim/set":
            sim.apply_settings(req)
            with sim.lock:
                return {"ok": True, "settings": dict(sim.settings),
                        "processors": len(sim.processors)}
        if path == "/_sim/mode":
            sim.set_mode(req.get("mode"), req.get("delay"), req.get("paths"))
            with sim.lock:
                return {"ok": True, "mode": sim.mode, "delay": sim.delay, "paths": sim.mode_paths}
        if path == "/_sim/sessions/create":
            n = self._count_arg(req)
            node = req.get("node_id")
            if node is not None and not isinstance(node, str):
                raise ValueError("node_id must be a string")
            with sim.lock:
                ids = [sim.create_session(node)["session_id"] for _ in range(n)]
                return {"ok": True, "created": ids, "active": len(sim.sessions)}
        if path == "/_sim/sessions/destroy":
            reason = req.get("reason", "explicit_delete")
            if not isinstance(reason, str):
                raise ValueError("reason must be a string")
            with sim.lock:
                if "session_ids" in req:
                    ids = req["session_ids"]
                    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                        raise ValueError("session_ids must be a list of strings")
                    done = [i for i in ids if sim.destroy_session(i, reason)]
                else:
                    done = sim.destroy_oldest(self._count_arg(req), reason)
                return {"ok": True, "destroyed": done, "active": len(sim.sessions)}
        if path == "/_sim/sessions/stm":
            try:
                n = sim.set_stm(req.get("session_id"), req.get("stm"))
            except KeyError:
                raise _Reply(404, {"error": f"no session {req.get('session_id')}"})
            return {"ok": True, "session_id": req["session_id"], "length": n}
        if path == "/_sim/stats/backfill":
            n = sim.backfill(req.get("minutes", 60), req.get("interval", 5))
            return {"ok": True, "samples": n}
        if path == "/_sim/ws/send":
            if "text" in req and isinstance(req["text"], str):
                text = req["text"]
            elif "json" in req:
                text = json.dumps(req["json"], separators=(",", ":"))
            else:
                raise ValueError('give {"text": "..."} or {"json": ...}')
            return {"ok": True, "clients": sim.broadcast_text(text)}
        if path == "/_sim/ws/close":
            code = req.get("code", 1001)
            if isinstance(code, bool) or not isinstance(code, int) or not 1000 <= code <= 4999:
                raise ValueError("code must be an integer in [1000, 4999]")
            n = sim.ws_close_all(code, str(req.get("reason", "")), bool(req.get("abort", False)))
            return {"ok": True, "clients": n}
        if path == "/_sim/reset_counters":
            sim.reset_counters()
            return {"ok": True}
        if path == "/_sim/reset":
            sim.reset()
            return {"ok": True}
        raise ValueError("unreachable")


# ---------------------------------------------------------------------------
# Background threads: sampler and --demo
# ---------------------------------------------------------------------------

def sampler_loop(sim: SimState, interval: float, stop: threading.Event) -> None:
    """Take a time-series sample every ``interval`` seconds (for /stats)."""
    while not stop.wait(interval):
        sim.sample()


def demo_loop(sim: SimState, stop: threading.Event, seed: Optional[int] = None,
              speed: float = 1.0) -> None:
    """Keep every dashboard widget alive for ``make demo``.

    CPU, memory and request rate drift smoothly; sessions come and go every
    few seconds; every 2 minutes the error rate climbs above 5 % (warning)
    for ~20 s and then above 10 % (critical, status degraded) for ~15 s.
    ``speed`` > 1 runs that script faster (the self-test uses it).
    """
    rng = random.Random(seed)
    t0 = time.monotonic()
    next_churn = t0 + 2.0 / speed
    if not sim.sessions:
        for _ in range(5):
            sim.create_session()
    while not stop.wait(0.5 / max(1.0, speed)):
        t = (time.monotonic() - t0) * speed
        cpu = 35 + 25 * math.sin(t / 20) + 8 * math.sin(t / 7.3) + rng.uniform(-2, 2)
        mem = 55 + 12 * math.sin(t / 45 + 1) + rng.uniform(-0.5, 0.5)
        rps = max(0.5, 20 + 14 * math.sin(t / 30) + rng.uniform(-1, 1))
        phase = (t + 30) % 120          # first warning ~30 s after start
        if 60 <= phase < 80:
            er, status = 0.07 + rng.uniform(-0.005, 0.005), "healthy"
        elif 80 <= phase < 95:
            er, status = 0.13 + rng.uniform(-0.01, 0.01), "degraded"
        else:
            er, status = max(0.0, 0.01 + rng.uniform(-0.008, 0.008)), "healthy"
        with sim.lock:
            n_active = len(sim.sessions)
            n_procs = len(sim.processors)
        want_procs = max(1, min(8, (n_active + 1) // 2))
        try:
            if want_procs != n_procs:
                sim.apply_settings({"processors": want_procs})
            sim.apply_settings({
                "cpu_percent": round(min(100, max(0, cpu)), 1),
                "memory_percent": round(min(100, max(0, mem)), 1),
                "disk_percent": round(min(100, 41.2 + t / 3600), 2),
                "requests_per_second": round(rps, 2),
                "average_response_time": round(0.015 + 0.05 * max(0, cpu) / 100, 4),
                "error_rate": round(er, 4),
                "status": status,
            })
        except ValueError as e:   # cannot happen; never let the demo die
            sys.stderr.write(f"kato_sim demo: {e}\n")
        now = time.monotonic()
        if now >= next_churn:
            next_churn = now + rng.uniform(2.0, 5.0) / speed
            if n_active < 3 or (n_active < 25 and rng.random() < 0.55):
                for _ in range(rng.randint(1, 3)):
                    sid = sim.create_session()["session_id"]
                    words = ("hello", "world", "kato", "sensor", "alpha", "beta", "gamma")
                    try:
                        sim.set_stm(sid, [sorted(rng.sample(words, rng.randint(1, 3)))
                                          for _ in range(rng.randint(0, 4))])
                    except KeyError:        # destroyed meanwhile through /_sim/
                        pass
            else:
                sim.destroy_oldest(rng.randint(1, 2))


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def write_port_file(path: str, port: int) -> None:
    """Write ``port`` to ``path`` atomically (temp file in the same dir, rename)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{port}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Scriptable KATO service simulator "
                                            "(see tests/sim/README.md).")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port; 0 = ephemeral (default 8000)")
    p.add_argument("--port-file", help="write the bound port here (atomically)")
    p.add_argument("--demo", action="store_true",
                   help="vary values and sessions in the background, for make demo")
    p.add_argument("--seed", type=int, help="random seed for --demo")
    p.add_argument("--demo-speed", type=float, default=1.0,
                   help="run the --demo script N times faster (default 1)")
    p.add_argument("--sessions", type=int, default=0, help="sessions to create at start")
    p.add_argument("--cache-seconds", type=float, default=0.0,
                   help="KATO's /metrics and /sessions/count cache (default 0 = off)")
    p.add_argument("--sample-interval", type=float, default=5.0,
                   help="seconds between /stats time-series samples (default 5)")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    p.add_argument("--ws-path", help="serve the /ws/events stream at this path instead "
                   "(as a reverse proxy might), e.g. /custom/path")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    sim = SimState(cache_seconds=max(0.0, args.cache_seconds))
    for _ in range(max(0, args.sessions)):
        sim.create_session()
    try:
        server = KatoSimServer((args.host, args.port), sim, verbose=args.verbose,
                               ws_path=args.ws_path)
    except OSError as e:
        sys.stderr.write(f"kato_sim: cannot listen on {args.host}:{args.port}: {e}\n")
        return 1
    host, port = server.server_address[:2]
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    threads = [threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                daemon=True, name="http"),
               threading.Thread(target=sampler_loop, args=(sim, max(0.1, args.sample_interval), stop),
                                daemon=True, name="sampler")]
    if args.demo:
        threads.append(threading.Thread(target=demo_loop,
                                        args=(sim, stop, args.seed, max(0.01, args.demo_speed)),
                                        daemon=True, name="demo"))
    for t in threads:
        t.start()
    if args.port_file:
        write_port_file(args.port_file, port)
    shown = host if ":" not in host else f"[{host}]"
    print(f"kato_sim listening on http://{shown}:{port}", flush=True)

    while not stop.wait(0.5):
        pass
    server.shutdown()
    sim.ws_close_all(1001, "server shutting down")
    time.sleep(0.1)                     # let writers flush the close frames
    server.server_close()
    print("kato_sim stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
