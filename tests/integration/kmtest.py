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
  Redis     a private redis-server on a free loopback port, a small RESP2
            client (cmd) and writers of KATO's session keys exactly as
            reference/kato-redis.md describes them (write_kato_session,
            add_stale_index_member); Redis.available() for a skip (77)

Environment (set by `make check`, see Makefile.am): top_srcdir,
top_builddir, PLUGIN_BUILD_DIR.
"""

from __future__ import annotations

import base64
import datetime as _dt
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
import urllib.parse
import urllib.request
import uuid
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


def base_conf(state_dir: str, http_extra: str = "") -> str:
    """The [core] and [http] sections every test's katomon starts from: this
    build's plugins, its own state directory, an ephemeral port (read back
    from the log by Katomon.start) and the source tree's dashboard.
    http_extra: more [http] lines (auth_token = ...)."""
    return f"""[core]
plugin_dir = {env('PLUGIN_BUILD_DIR')}
state_dir = {state_dir}
log_level = info

[http]
bind = 127.0.0.1
port = 0
web_root = {env('top_srcdir')}/web
{http_extra}
"""


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

    def __init__(self, workdir: str, name: str, conf: str, args: Optional[list] = None,
                 extra_env: Optional[dict] = None) -> None:
        """args: more command-line options; extra_env: more environment
        (a value may be a callable taking this object, read at each start).
        systemd's variables (NOTIFY_SOCKET, WATCHDOG_*, JOURNAL_STREAM) are
        never inherited from the test's own environment: only extra_env
        sets them."""
        self.args = list(args or [])
        self.extra_env = dict(extra_env or {})
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
        envv = {k: v for k, v in os.environ.items()
                if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")}
        # leaks are reported at exit; exit code 23 tells them from other errors
        envv.setdefault("ASAN_OPTIONS", "detect_leaks=1:exitcode=23")
        envv.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        envv.update({k: v(self) if callable(v) else v for k, v in self.extra_env.items()})
        self.offset = os.path.getsize(self.log_path)
        self.proc = subprocess.Popen([binary, "-f", "-c", self.conf_path] + self.args,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=envv)
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
    def __init__(self, workdir: str, args: Optional[list] = None) -> None:
        self.workdir = workdir
        self.args = list(args or [])  # more kato_sim.py options
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
                                      port_file] + self.args, stdout=self.log,
                                     stderr=subprocess.STDOUT,
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


# ---------------------------------------------------------------------------
# a real Redis (Debian's redis-server) and KATO's session keys in it
# ---------------------------------------------------------------------------

class RedisError(Exception):
    """An error reply (-ERR ...) from Redis."""


def resp_encode(*args: Any) -> bytes:
    """One command as a RESP2 array of bulk strings (str, bytes, int, float)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode("utf-8")
        elif isinstance(a, (int, float)) and not isinstance(a, bool):
            b = str(a).encode("ascii")
        else:
            raise TypeError(f"cannot send {type(a).__name__} to Redis")
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class RespReader:
    """Parses RESP2 replies from a socket: +simple -> str, -error ->
    RedisError (raised at the top level, returned inside arrays), :int ->
    int, $bulk -> str (UTF-8; bytes when not UTF-8 or decode=False),
    $-1 / *-1 -> None, *array -> list (nested)."""

    def __init__(self, sock: socket.socket, decode: bool = True) -> None:
        self.sock = sock
        self.buf = b""
        self.decode = decode

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self) -> Any:
        line = self._line()
        if not line:
            raise ConnectionError("empty RESP line")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._exact(n)
            if self.decode:
                try:
                    return data.decode("utf-8")
                except UnicodeDecodeError:
                    return data
            return data
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.read() for _ in range(n)]
        raise ConnectionError(f"bad RESP reply {line[:80]!r}")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _iso(t: Any) -> str:
    """ISO 8601 with an offset, as KATO writes (datetime.isoformat())."""
    if t is None:
        t = time.time()
    if isinstance(t, str):
        return t
    if isinstance(t, _dt.datetime):
        return (t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)).isoformat()
    return _dt.datetime.fromtimestamp(float(t), _dt.timezone.utc).isoformat()


def _epoch(t: Any) -> float:
    if t is None:
        return time.time()
    if isinstance(t, str):
        return _dt.datetime.fromisoformat(t).timestamp()
    if isinstance(t, _dt.datetime):
        return (t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)).timestamp()
    return float(t)


KATO_PREFIX = "kato:session:"
KATO_INDEX = KATO_PREFIX + "_active_index"


def kato_session_id(created: Optional[float] = None) -> str:
    """KATO's session id: session-<32 hex>-<ms since the epoch>."""
    ms = int((time.time() if created is None else created) * 1000)
    return f"session-{uuid.uuid4().hex}-{ms}"


class Redis:
    """A private redis-server on 127.0.0.1:<free port> for one test.

        ok, why = Redis.available()      # or Redis.skip_unless_available()
        r = Redis()                      # started; r.url, r.port
        sid = r.write_kato_session(node_id="n1", ttl=600)
        r.cmd("SSCAN", KATO_INDEX, 0)    # -> ["0", [sid]]
        r.kill(); r.restart(); r.close()

    It runs in the foreground (daemonize no), without persistence
    (save "", appendonly no), in its own temporary directory, bound to the
    loopback address only; with ``password`` it requires AUTH (the url then
    carries it: redis://:PASSWORD@127.0.0.1:PORT/0). Starting waits until
    PING answers PONG (polling with a deadline). ``cmd`` speaks RESP2 on
    one kept connection, opened again after a restart.
    """

    def __init__(self, password: Optional[str] = None, start: bool = True,
                 timeout: float = 10.0, workdir: Optional[str] = None) -> None:
        ok, why = Redis.available()
        if not ok:
            raise RuntimeError(why)
        self.binary = Redis._binary()
        self.password = password
        self.timeout = timeout
        self.dir = tempfile.mkdtemp(prefix="kmtest-redis.",
                                    dir=workdir or os.environ.get("TMPDIR", "/tmp"))
        self.log_path = os.path.join(self.dir, "redis.log")
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None
        self._sock: Optional[socket.socket] = None
        self._reader: Optional[RespReader] = None
        self._lock = threading.Lock()
        if start:
            try:
                self.start()
            except BaseException:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise

    # -- availability -----------------------------------------------------

    @staticmethod
    def _binary() -> Optional[str]:
        return os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or \
            next((p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server")
                  if os.access(p, os.X_OK)), None)

    @staticmethod
    def available() -> tuple[bool, str]:
        """(True, version line) when redis-server can run, else (False, why)."""
        b = Redis._binary()
        if not b:
            return False, ("redis-server is not installed (Debian package redis-server; "
                           "./bootstrap installs it)")
        try:
            out = subprocess.run([b, "--version"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError) as e:
            return False, f"{b} does not run: {e}"
        if out.returncode != 0 or "Redis server" not in out.stdout:
            return False, f"{b} --version failed: {(out.stdout + out.stderr).strip()[:200]}"
        return True, out.stdout.strip()

    @staticmethod
    def skip_unless_available() -> None:
        """Exit 77 (automake: skipped) with the reason when there is no Redis."""
        ok, why = Redis.available()
        if not ok:
            print(f"SKIP: {why}", flush=True)
            sys.exit(77)

    # -- process ----------------------------------------------------------

    @property
    def url(self) -> str:
        auth = f":{urllib.parse.quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _spawn(self, port: int) -> subprocess.Popen:
        args = [self.binary, "--port", str(port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--daemonize", "no", "--supervised", "no", "--databases", "16",
                "--logfile", "", "--loglevel", "notice", "--protected-mode", "yes"]
        if self.password:
            args += ["--requirepass", self.password]
        log = open(self.log_path, "ab")
        try:
            return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.dir)
        finally:
            log.close()

    def _wait_ready(self) -> bool:
        """Polls PING until PONG, the process exits, or the deadline."""
        end = time.monotonic() + self.timeout
        while time.monotonic() < end:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                if self.cmd("PING") == "PONG":
                    return True
            except (OSError, RedisError):
                self._disconnect()
            time.sleep(0.02)
        return False

    def start(self, port: Optional[int] = None) -> None:
        """Starts redis-server (on ``port``, or a free one; a few tries if a
        free port is taken meanwhile) and waits until it answers PING."""
        if self.alive():
            return
        tries = 1 if port else 5
        last = ""
        for _ in range(tries):
            p = port or free_port()
            offset = len(self.log())
            self.port = p
            self.proc = self._spawn(p)
            if self._wait_ready():
                return
            last = self.log()[offset:]
            self._terminate(signal.SIGKILL)
        raise RuntimeError(f"redis-server did not answer PING on 127.0.0.1:{self.port}:\n"
                           + last[-3000:])

    def _terminate(self, sig: int, timeout: float = 10.0) -> Optional[int]:
        self._disconnect()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM (a clean shutdown, nothing saved); returns the exit status."""
        return self._terminate(signal.SIGTERM, timeout)

    def kill(self) -> Optional[int]:
        """SIGKILL: Redis vanishes at once, connections are reset."""
        return self._terminate(signal.SIGKILL)

    def restart(self) -> None:
        """Stops it if it runs, then starts it again on the same port (empty:
        nothing is persisted)."""
        if self.alive():
            self.stop()
        self.start(self.port)

    def close(self) -> None:
        """Stops it and removes its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Redis":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- RESP2 client -------------------------------------------------------

    def _disconnect(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._reader = None

    def _connect(self) -> None:
        self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = RespReader(self._sock)
        if self.password:
            self._sock.sendall(resp_encode("AUTH", self.password))
            r = self._reader.read()
            if isinstance(r, RedisError):
                self._disconnect()
                raise r

    def pipeline(self, commands: list, timeout: Optional[float] = None) -> list:
        """Sends several commands at once and returns their replies in order
        (error replies as RedisError objects, not raised)."""
        with self._lock:
            if self._sock is None:
                self._connect()
            assert self._sock is not None and self._reader is not None
            try:
                self._sock.settimeout(timeout or self.timeout)
                self._sock.sendall(b"".join(resp_encode(*c) for c in commands))
                return [self._reader.read() for _ in commands]
            except BaseException:
                self._disconnect()   # the stream is out of step now: start over next time
                raise

    def cmd(self, *args: Any, timeout: Optional[float] = None) -> Any:
        """One command, e.g. cmd("SET", "k", "v", "EX", 60); returns the
        parsed reply; raises RedisError on an error reply and OSError /
        ConnectionError when Redis is gone."""
        r = self.pipeline([args], timeout)[0]
        if isinstance(r, RedisError):
            raise r
        return r

    # -- KATO's keys (reference/kato-redis.md) --------------------------------

    def write_kato_session(self, session_id: Optional[str] = None, node_id: str = "node-1",
                           ttl: int = 3600, created_at: Any = None, last_accessed: Any = None,
                           access_count: int = 0, metadata: Optional[dict] = None,
                           big_state: bool = True, stm: Optional[list] = None,
                           index: bool = True, node_key: bool = True) -> str:
        """Writes one session as KATO does and returns its id:
        SET kato:session:<id> <JSON> EX ttl, SADD kato:session:_active_index
        <id>, SET kato:session:node:<node_id>:active <id> EX ttl.

        created_at / last_accessed: epoch seconds, a datetime or an ISO
        string (default now); expires_at = last_accessed + ttl. The JSON has
        every field the reference lists; with ``big_state`` the working
        state (stm, emotives_accumulator, metadata_accumulator,
        percept_data, predictions, session_config) is large (~100 KB), so
        a listing that ships it is caught."""
        created = _epoch(created_at)
        last = _epoch(last_accessed if last_accessed is not None else created_at)
        sid = session_id or kato_session_id(created)
        if stm is None:
            stm = ([[f"sym-{i}-{j}" for j in range(8)] for i in range(200)] if big_state
                   else [["hello", "world"], ["kato"]])
        pad = "x" * 200
        doc = {
            "session_id": sid,
            "node_id": node_id,
            "created_at": _iso(created),
            "last_accessed": _iso(last),
            "expires_at": _iso(last + ttl),
            "ttl_seconds": ttl,
            "access_count": access_count,
            "time": len(stm),
            "metadata": metadata if metadata is not None else {"source": "kmtest"},
            "stm": stm,
            "emotives_accumulator": ([{"joy": 0.5, "fear": -0.25, "pad": pad}] * 100
                                     if big_state else []),
            "metadata_accumulator": ([{"event": i, "pad": pad} for i in range(100)]
                                     if big_state else []),
            "percept_data": ({f"feature_{i}": [0.125] * 20 for i in range(50)}
                             if big_state else {}),
            "predictions": ([{"name": f"PTRN|{uuid.uuid4().hex}", "confidence": 0.5,
                              "past": [["a"]], "present": [["b"]], "future": [["c"]],
                              "pad": pad} for _ in range(50)] if big_state else []),
            "session_config": ({"max_pattern_length": 0, "persistence": 5,
                                "recall_threshold": 0.1, "notes": pad * 10}
                               if big_state else {}),
            "max_stm_size": 1000,
            "max_emotives_size": 100,
        }
        cmds: list = [("SET", KATO_PREFIX + sid, json.dumps(doc), "EX", ttl)]
        if index:
            cmds.append(("SADD", KATO_INDEX, sid))
        if node_key:
            cmds.append(("SET", f"{KATO_PREFIX}node:{node_id}:active", sid, "EX", ttl))
        for r in self.pipeline(cmds):
            if isinstance(r, RedisError):
                raise r
        return sid

    def add_stale_index_member(self, session_id: Optional[str] = None) -> str:
        """An expired session as KATO leaves it: its id in the active index,
        no session key. Returns the id."""
        sid = session_id or kato_session_id()
        self.cmd("DEL", KATO_PREFIX + sid)
        self.cmd("SADD", KATO_INDEX, sid)
        return sid

    def kato_session(self, session_id: str) -> Optional[dict]:
        """The stored session JSON (None when the key is gone)."""
        raw = self.cmd("GET", KATO_PREFIX + session_id)
        return None if raw is None else json.loads(raw)
