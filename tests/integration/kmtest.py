"""kmtest - helpers for katomon's Python integration tests (stdlib only).

Used by tests/integration/kato.py (against the KATO simulator) and
tests/integration/docker.py (against a real dockerd). Everything talks over
real sockets to the real katomon binary:

  Checks    one "ok - ..." / "not ok - ..." line per check, a summary, and
            the automake exit code (0 pass, 1 fail; 77 skip is the caller's)
  Katomon   writes a config, starts `katomon -f`, parses the ephemeral port
            from "listening on http://ADDR:PORT", stops it with SIGTERM and
            judges the exit: status 0, no AddressSanitizer, LeakSanitizer or
            UBSan report and no "message refused" (a plugin publishing off
            its own schema) on stderr; or kill -9
  Sim       tests/sim/kato_sim.py on an ephemeral port, and its /_sim/ API
  WS        a small RFC 6455 client (masked frames, answers pings, echoes a
            close) with a reader thread queueing decoded messages
  http()    one HTTP request, JSON in and out
  Receiver  a local HTTP server recording POSTed JSON (webhook target)

Environment (set by `make check`, see Makefile.am): top_srcdir,
top_builddir, PLUGIN_BUILD_DIR.
"""

from __future__ import annotations

import base64
import hashlib
import http.server as httpserver
import json
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Optional

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "SUMMARY: AddressSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")


def env(name: str, default: Optional[str] = None) -> str:
    v = os.environ.get(name, default)
    if v is None:
        print(f"{name} is not set: run me through make check", file=sys.stderr)
        sys.exit(99)
    return v


def is_iso_z(s: Any) -> bool:
    return isinstance(s, str) and ISO_Z.match(s) is not None


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ---------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------

class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.t0 = time.monotonic()

    def ok(self, name: str) -> None:
        self.passed += 1
        print(f"ok - {name}", flush=True)

    def fail(self, name: str, detail: Any = None) -> None:
        self.failed += 1
        print(f"not ok - {name}", flush=True)
        if detail is not None:
            text = detail if isinstance(detail, str) else json.dumps(detail, indent=None,
                                                                      default=str)
            for line in text.splitlines()[-30:]:
                print(f"    {line[:400]}", flush=True)

    def check(self, cond: bool, name: str, detail: Any = None) -> bool:
        if cond:
            self.ok(name)
        else:
            self.fail(name, detail)
        return bool(cond)

    def note(self, text: str) -> None:
        print(f"# {text}", flush=True)

    def fields(self, obj: Any, spec: dict, name: str) -> bool:
        """Checks obj field by field against spec {key: predicate or type};
        a key ending in '?' is optional. Returns True when all hold."""
        problems = []
        if not isinstance(obj, dict):
            self.fail(f"{name}: is an object", obj)
            return False
        for key, want in spec.items():
            optional = key.endswith("?")
            k = key.rstrip("?")
            if k not in obj:
                if not optional:
                    problems.append(f"missing {k}")
                continue
            v = obj[k]
            good = want(v) if callable(want) and not isinstance(want, type) else isinstance(v, want)
            if isinstance(want, type) and want in (int, float) and isinstance(v, bool):
                good = False
            if not good:
                problems.append(f"{k} = {json.dumps(v, default=str)[:200]}")
        return self.check(not problems, f"{name}: fields {', '.join(k.rstrip('?') for k in spec)}",
                          "; ".join(problems) + "\n" + json.dumps(obj, default=str)[:1500])

    def done(self) -> int:
        took = time.monotonic() - self.t0
        print(f"{self.passed} passed, {self.failed} failed ({took:.1f} s)", flush=True)
        return 0 if self.failed == 0 and self.passed > 0 else 1


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

def http(method: str, url: str, body: Any = None, timeout: float = 5.0,
         raw: Optional[bytes] = None) -> tuple[int, Any]:
    """One request; returns (status, decoded JSON or text). Status 0 on a
    connection failure (the text says why)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    except (OSError, urllib.error.URLError) as e:
        return 0, str(e)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text.decode("utf-8", "replace")


def wait_until(pred: Callable[[], Any], timeout: float, step: float = 0.1) -> Any:
    """Polls pred until it returns something true; returns it (or the last
    false value at the deadline)."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


# ---------------------------------------------------------------------------
# the daemon
# ---------------------------------------------------------------------------

class Katomon:
    """One katomon -f process with its own config and stderr log."""

    def __init__(self, workdir: str, name: str, conf: str) -> None:
        self.workdir = workdir
        self.name = name
        self.conf_path = os.path.join(workdir, f"{name}.conf")
        self.log_path = os.path.join(workdir, f"{name}.log")
        with open(self.conf_path, "w") as f:
            f.write(conf)
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self.exit_status: Optional[int] = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> bool:
        binary = os.path.join(env("top_builddir"), "katomon")
        self.log = open(self.log_path, "ab")
        envv = dict(os.environ)
        # leaks are reported at exit; exit code 23 tells them from other errors
        envv.setdefault("ASAN_OPTIONS", "detect_leaks=1:exitcode=23")
        envv.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.offset = os.path.getsize(self.log_path)
        self.proc = subprocess.Popen([binary, "-f", "-c", self.conf_path], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=envv)
        self.exit_status = None
        m = wait_until(lambda: self.proc.poll() is not None or
                       re.search(r"listening on http://[0-9.]+:(\d+)", self.text()), timeout)
        if not isinstance(m, re.Match):
            return False
        self.port = int(m.group(1))
        return wait_until(lambda: "started" in self.text() or self.proc.poll() is not None,
                          timeout) and self.alive()

    def text(self) -> str:
        """stderr of the current run."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_log(self, pattern: str, timeout: float, start: int = 0) -> Optional[re.Match]:
        """Waits for pattern in this run's stderr from character `start` on."""
        m = wait_until(lambda: re.search(pattern, self.text()[start:]), timeout)
        return m if isinstance(m, re.Match) else None

    def stop(self, timeout: float = 30.0) -> tuple[bool, str]:
        """SIGTERM; True when it exits 0 with no sanitizer report."""
        if not self.proc:
            return False, "not started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.exit_status = self.proc.wait()
            return False, f"did not stop within {timeout} s on SIGTERM"
        finally:
            self.log.close()
        text = self.text()
        marks = [m for m in SANITIZER_MARKS if m in text]
        refused = [l for l in text.splitlines() if "message refused" in l]
        if self.exit_status != 0 or marks or refused:
            return False, (f"exit status {self.exit_status}, sanitizer marks {marks}, "
                           f"schema refusals {refused[:3]}\n" + text[-6000:])
        return True, "exit status 0"

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.exit_status = self.proc.wait()
        self.log.close()

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        return http("GET", self.base + path, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, raw: Optional[bytes] = None
                ) -> tuple[int, Any]:
        return http(method, self.base + path, body, raw=raw)


# ---------------------------------------------------------------------------
# the KATO simulator
# ---------------------------------------------------------------------------

class Sim:
    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> bool:
        script = os.path.join(env("top_srcdir"), "tests", "sim", "kato_sim.py")
        port_file = os.path.join(self.workdir, "kato_sim.port")
        self.log = open(os.path.join(self.workdir, "kato_sim.log"), "ab")
        self.proc = subprocess.Popen([sys.executable, script, "--port", "0", "--port-file",
                                      port_file], stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        ok = wait_until(lambda: os.path.exists(port_file) or self.proc.poll() is not None, 20)
        if not ok or self.proc.poll() is not None:
            return False
        with open(port_file) as f:
            self.port = int(f.read().strip())
        return True

    def ctl(self, path: str, body: Any = None) -> Any:
        status, reply = http("POST" if body is not None else "GET", self.url + "/_sim/" + path,
                             body)
        if status != 200:
            raise RuntimeError(f"/_sim/{path}: {status} {reply}")
        return reply

    def set(self, **kw: Any) -> Any:
        return self.ctl("set", kw)

    def mode(self, mode: str, **kw: Any) -> Any:
        return self.ctl("mode", dict(mode=mode, **kw))

    def create(self, n: int) -> list:
        return self.ctl("sessions/create", {"count": n})["created"]

    def destroy(self, **kw: Any) -> Any:
        return self.ctl("sessions/destroy", kw)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()


# ---------------------------------------------------------------------------
# WebSocket client
# ---------------------------------------------------------------------------

class WS:
    """Client of katomon's /ws: text messages decoded as JSON when they are."""

    def __init__(self, port: int, path: str = "/ws", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Origin: http://127.0.0.1:{port}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in lines[0] + " ":
            raise ConnectionError(f"handshake refused: {lines[0]}")
        want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip()
                for l in lines[1:] if ":" in l}
        if hdrs.get("sec-websocket-accept") != want:
            raise ConnectionError("bad Sec-WebSocket-Accept")
        self.sock.settimeout(None)
        self.q: "queue.Queue[Any]" = queue.Queue()
        self.lock = threading.Lock()
        self.closed = False
        self.close_code: Optional[int] = None
        self.all: list = []  # every message received, in order
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()

    def _recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        head = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head.append(0x80 | n)
        elif n < 65536:
            head.append(0x80 | 126)
            head += struct.pack("!H", n)
        else:
            head.append(0x80 | 127)
            head += struct.pack("!Q", n)
        mask = os.urandom(4)
        head += mask
        body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        with self.lock:
            self.sock.sendall(bytes(head) + body)

    def _read_loop(self) -> None:
        frags = b""
        try:
            while True:
                b0, b1 = self._recv_exact(2)
                op, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", self._recv_exact(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", self._recv_exact(8))
                payload = self._recv_exact(n)
                if op == 0x9:
                    self._send_frame(0xA, payload)
                elif op == 0x8:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    try:
                        self._send_frame(0x8, payload[:2])
                    except OSError:
                        pass
                    break
                elif op in (0x0, 0x1, 0x2):
                    frags += payload
                    if b0 & 0x80:
                        text = frags.decode("utf-8", "replace")
                        frags = b""
                        try:
                            msg = json.loads(text)
                        except ValueError:
                            msg = text
                        self.all.append((time.monotonic(), msg))
                        self.q.put(msg)
        except (EOFError, OSError):
            pass
        self.closed = True
        self.q.put(None)

    def send(self, obj: Any) -> None:
        self._send_frame(0x1, (obj if isinstance(obj, str) else json.dumps(obj)).encode())

    def next(self, timeout: float) -> Any:
        try:
            m = self.q.get(timeout=max(timeout, 0.001))
        except queue.Empty:
            return None
        if m is None:
            self.q.put(None)  # stay closed for later callers
        return m

    def next_match(self, pred: Callable[[Any], bool], timeout: float,
                   keep: Optional[list] = None) -> Any:
        """Next message for which pred holds; the others are dropped (or
        appended to keep)."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            m = self.next(left)
            if m is None:
                return None
            try:
                if pred(m):
                    return m
            except (KeyError, TypeError, AttributeError, IndexError):
                pass
            if keep is not None:
                keep.append(m)

    def next_type(self, mtype: str, timeout: float,
                  pred: Optional[Callable[[Any], bool]] = None) -> Any:
        return self.next_match(lambda m: isinstance(m, dict) and m.get("type") == mtype and
                               (pred is None or pred(m)), timeout)

    def drain(self) -> list:
        out = []
        while True:
            try:
                m = self.q.get_nowait()
            except queue.Empty:
                return out
            if m is None:
                self.q.put(None)
                return out
            out.append(m)

    def collect(self, seconds: float) -> list:
        """Every message arriving within the next `seconds`."""
        out, end = [], time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            m = self.next(left)
            if m is None:
                if self.closed:
                    break
                continue
            out.append(m)
        return out

    def close(self) -> None:
        try:
            self._send_frame(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.reader.join(2)


# ---------------------------------------------------------------------------
# webhook receiver
# ---------------------------------------------------------------------------

class Receiver:
    """HTTP server on an ephemeral port recording every POST (path, JSON)."""

    def __init__(self) -> None:
        posts: list = []
        self.posts = posts
        self.status = 200
        outer = self

        class Handler(httpserver.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = body.decode("utf-8", "replace")
                posts.append({"path": self.path, "type": self.headers.get("Content-Type"),
                              "body": doc, "at": time.monotonic()})
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a: Any) -> None:
                pass

        self.server = httpserver.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def shipped_alert_rules() -> str:
    """The [alert NAME] sections of the shipped etc/katomon.conf, verbatim."""
    path = os.path.join(env("top_srcdir"), "etc", "katomon.conf")
    out, keep = [], False
    with open(path) as f:
        for line in f:
            if line.startswith("["):
                keep = line.startswith("[alert ")
            if keep:
                out.append(line)
    return "".join(out)


def tmpdir(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("TMPDIR", "/tmp"))


def rmtree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
