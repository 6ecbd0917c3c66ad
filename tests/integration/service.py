#!/usr/bin/env python3
"""service.py - katomon as systemd runs it, and its 404s (issue 16).

The real katomon binary of this build, on an ephemeral port, with a
Python AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET.
One "ok - ..." / "not ok - ..." line per check; exit 0 pass, 1 fail.

Covered:
  A  sd_notify: READY=1 once listening with its plugins loaded (the port
     answers by then); WATCHDOG=1 again and again with WATCHDOG_USEC set;
     SIGHUP -> RELOADING=1 with MONOTONIC_USEC, then READY=1; SIGTERM ->
     STOPPING=1 and exit 0. Without NOTIFY_SOCKET nothing is sent.
     (A build --without-libsystemd sends nothing: A is skipped, said so.)
  B  logs: with JOURNAL_STREAM naming its stderr, lines are "<N>text" with
     N the syslog priority; JOURNAL_STREAM naming another file changes
     nothing.
  C  --state-dir DIR outranks [core] state_dir (alert history lands there)
     and a reload does not report it as changed.
  D  404s: unknown /api/... -> 404 JSON {"detail": ...}; /nonexistent.png,
     /nowhere, /fleet/ -> 404 HTML; /, /index.html and every route of
     web/js/app.js's ROUTES -> 200 with index.html (read from app.js, so
     core/server_static.c's list cannot drift from it); HEAD of a 404
     has no body.
and after each run of katomon: exit status 0 on SIGTERM, no sanitizer
report on its stderr.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import Checks, Katomon, base_conf, env, rmtree, tmpdir, wait_until  # noqa: E402

C = Checks()
W = tmpdir("km-service.")


class Notify:
    """systemd's side of sd_notify: a datagram socket, messages in order."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.msgs: list[dict[str, str]] = []

    def pump(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except (socket.timeout, BlockingIOError):
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            fields["_t"] = str(time.monotonic())
            self.msgs.append(fields)

    def wait(self, key: str, timeout: float, start: int = 0) -> int:
        """Index of the first message from `start` on holding key=1-ish, or -1."""
        def found() -> int:
            self.pump()
            for i in range(start, len(self.msgs)):
                if key in self.msgs[i]:
                    return i + 1
            return 0
        i = wait_until(found, timeout, step=0.05)
        return i - 1 if i else -1

    def close(self) -> None:
        self.sock.close()


def conf(state: str) -> str:
    return base_conf(state) + """
[plugin host_stats]
interval = 0.5
"""


def have_libsystemd() -> bool:
    """configure's choice, as the Makefile holds it (the unit's Type=)."""
    try:
        with open(os.path.join(env("top_builddir"), "Makefile")) as f:
            return re.search(r"^SERVICE_TYPE = notify$", f.read(), re.M) is not None
    except OSError:
        return False


def stop_ok(k: Katomon, name: str) -> None:
    good, why = k.stop()
    C.check(good, f"{name}: SIGTERM, exit 0, no sanitizer report", why)


# ---- A: sd_notify ------------------------------------------------------------------

def part_a() -> None:
    if not have_libsystemd():
        C.note("A skipped: built --without-libsystemd (sd_notify is a no-op)")
        return
    n = Notify(os.path.join(W, "notify.sock"))
    k = Katomon(W, "notify", conf(os.path.join(W, "state-a")),
                       extra_env={"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": "400000"})
    try:
        if not C.check(k.start(), "A: katomon starts with NOTIFY_SOCKET set", k.text()):
            return
        r = n.wait("READY", 20)
        C.check(r >= 0 and n.msgs[r].get("READY") == "1", "A: READY=1 sent", n.msgs)
        # READY is sent once the server listens: the port answers already
        st, _, _ = http_get(k, "/api/v1/health")
        C.check(st == 200, f"A: the port answers after READY=1 (GET /api/v1/health: {st})")
        C.check(r >= 0 and "STATUS" in n.msgs[r], "A: READY=1 comes with a STATUS= line",
                n.msgs[r:r + 1])
        # WATCHDOG_USEC=400000: a keep-alive every 0.2 s from the loop's timer
        w0 = n.wait("WATCHDOG", 10)
        w1 = n.wait("WATCHDOG", 10, w0 + 1) if w0 >= 0 else -1
        w2 = n.wait("WATCHDOG", 10, w1 + 1) if w1 >= 0 else -1
        C.check(w2 >= 0 and all(n.msgs[i].get("WATCHDOG") == "1" for i in (w0, w1, w2)),
                "A: WATCHDOG=1 sent again and again (WATCHDOG_USEC=400000)",
                [m for m in n.msgs if "WATCHDOG" in m][:5])
        C.check("systemd watchdog: keep-alive every 0.200 s" in k.text(),
                "A: the keep-alive runs at half WATCHDOG_USEC (logged)", k.text()[-2000:])
        mark = len(n.msgs)
        k.proc.send_signal(signal.SIGHUP)
        rl = n.wait("RELOADING", 20, mark)
        rd = n.wait("READY", 20, rl + 1) if rl >= 0 else -1
        C.check(rl >= 0 and n.msgs[rl].get("RELOADING") == "1",
                "A: SIGHUP -> RELOADING=1", n.msgs[mark:])
        C.check(rl >= 0 and re.fullmatch(r"\d+", n.msgs[rl].get("MONOTONIC_USEC", "")) is not None,
                "A: RELOADING=1 carries MONOTONIC_USEC=", n.msgs[rl:rl + 1] if rl >= 0 else None)
        C.check(rd > rl >= 0 and k.wait_log("reloaded", 10) is not None,
                "A: then READY=1 once reloaded", n.msgs[mark:])
        mark = len(n.msgs)
        good, why = k.stop()
        n.pump()
        stopping = [m for m in n.msgs[mark:] if "STOPPING" in m]
        C.check(len(stopping) == 1 and stopping[0]["STOPPING"] == "1",
                "A: SIGTERM -> STOPPING=1", n.msgs[mark:])
        C.check(good, "A: SIGTERM, exit 0, no sanitizer report", why)
        # the watchdog timer ended with the loop: nothing after STOPPING but
        # what the loop sent before it exited
    finally:
        if k.alive():
            k.kill9()
        n.close()

    # without NOTIFY_SOCKET: not one datagram (the socket still listens)
    n = Notify(os.path.join(W, "quiet.sock"))
    k = Katomon(W, "quiet", conf(os.path.join(W, "state-q")),
                       extra_env={"WATCHDOG_USEC": "400000"})
    try:
        if C.check(k.start(), "A: katomon starts without NOTIFY_SOCKET", k.text()):
            k.proc.send_signal(signal.SIGHUP)
            C.check(k.wait_log("reloaded", 10) is not None, "A: (reloaded)", k.text())
            stop_ok(k, "A, no NOTIFY_SOCKET")
            n.pump()
            C.check(n.msgs == [] and "watchdog" not in k.text(),
                    "A: without NOTIFY_SOCKET nothing is sent, no watchdog", n.msgs)
    finally:
        if k.alive():
            k.kill9()
        n.close()


# ---- B: journal priorities -----------------------------------------------------------

def part_b() -> None:
    def stream(k: Katomon) -> str:
        open(k.log_path, "ab").close()
        st = os.stat(k.log_path)
        return f"{st.st_dev}:{st.st_ino}"

    k = Katomon(W, "journal", conf(os.path.join(W, "state-b")),
                       extra_env={"JOURNAL_STREAM": stream})
    try:
        if C.check(k.start(), "B: katomon starts with JOURNAL_STREAM naming its stderr", k.text()):
            stop_ok(k, "B")
            text = k.text()
            C.check(re.search(r"^<5>katomon \S+ started", text, re.M) is not None,
                    "B: '<5>katomon ... started' (notice: priority 5, no own timestamp)",
                    text[-1500:])
            C.check(re.search(r"^<6>", text, re.M) is not None and
                    re.search(r"^\d{4}-\d\d-\d\dT.* katomon\[", text, re.M) is None,
                    "B: every line is '<N>text' (info: <6>)", text[-1500:])
    finally:
        if k.alive():
            k.kill9()
    # JOURNAL_STREAM inherited but stderr redirected elsewhere: plain lines
    k = Katomon(W, "notjournal", conf(os.path.join(W, "state-b2")),
                       extra_env={"JOURNAL_STREAM": "1:1"})
    try:
        if C.check(k.start(), "B: katomon starts with JOURNAL_STREAM naming another file",
                   k.text()):
            stop_ok(k, "B (other stream)")
            C.check(re.search(r"^\d{4}-\d\d-\d\dT\S+ katomon\[\d+\] notice: katomon \S+ started",
                              k.text(), re.M) is not None,
                    "B: ... then lines stay 'TIME katomon[PID] level: text'", k.text()[-1500:])
    finally:
        if k.alive():
            k.kill9()


# ---- C: --state-dir ----------------------------------------------------------------

def part_c() -> None:
    from_file = os.path.join(W, "state-file")
    from_cli = os.path.join(W, "state-cli")
    k = Katomon(W, "statedir", conf(from_file) + """
[plugin alert_manager]
""", args=["--state-dir", from_cli])
    try:
        if not C.check(k.start(), "C: katomon --state-dir DIR starts", k.text()):
            return
        k.proc.send_signal(signal.SIGHUP)
        C.check(k.wait_log("reloaded", 10) is not None, "C: (reloaded)", k.text())
        stop_ok(k, "C")
        C.check(os.path.isdir(from_cli) and not os.path.exists(from_file),
                "C: the state goes to --state-dir, not [core] state_dir",
                (os.listdir(W), k.text()[-1500:]))
        C.check("state_dir changed" not in k.text(),
                "C: a reload does not call the state_dir changed", k.text()[-1500:])
    finally:
        if k.alive():
            k.kill9()
    r = subprocess.run([os.path.join(env("top_builddir"), "katomon"), "-f", "--state-dir",
                        "relative/dir"], capture_output=True, text=True, timeout=30)
    C.check(r.returncode == 2 and "absolute" in r.stderr,
            f"C: --state-dir with a relative path: exit 2 and why ({r.stderr.strip()[:120]})")


# ---- D: 404s ---------------------------------------------------------------------

def http_get(k: Katomon, path: str, method: str = "GET") -> tuple[int, dict, bytes]:
    req = urllib.request.Request(k.base + path, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except OSError as e:
        return 0, {}, str(e).encode()


def app_routes() -> list[str]:
    """The keys of ROUTES in web/js/app.js, as server paths."""
    with open(os.path.join(env("top_srcdir"), "web", "js", "app.js")) as f:
        src = f.read()
    body = re.search(r"const ROUTES = \{(.*?)\n\};", src, re.S)
    if not body:
        return []
    keys = re.findall(r"^\s*('?)([\w-]*)\1\s*:", body.group(1), re.M)
    return ["/" + k for _, k in keys]


def part_d() -> None:
    k = Katomon(W, "web", conf(os.path.join(W, "state-d")))
    try:
        if not C.check(k.start(), "D: katomon starts", k.text()):
            return
        with open(os.path.join(env("top_srcdir"), "web", "index.html"), "rb") as f:
            index = f.read()
        routes = app_routes()
        C.check(len(routes) >= 4 and "/" in routes and "/fleet" in routes,
                f"D: web/js/app.js's ROUTES read: {routes}")
        for path in sorted(set(routes + ["/", "/index.html", "/alerts?level=error"])):
            st, hd, body = http_get(k, path)
            C.check(st == 200 and body == index and hd.get("Content-Type", "").startswith("text/html"),
                    f"D: GET {path} -> 200, the dashboard's index.html", (st, hd, body[:200]))
        for path in ("/api/v1/x", "/api/v1/nope/deeper", "/api/nope", "/api"):
            st, hd, body = http_get(k, path)
            try:
                import json
                j = json.loads(body)
            except ValueError:
                j = None
            C.check(st == 404 and hd.get("Content-Type") == "application/json" and
                    isinstance(j, dict) and isinstance(j.get("detail"), str),
                    f"D: GET {path} -> 404 JSON {{\"detail\": ...}} ({body[:80]!r})",
                    (st, hd, body[:200]))
        for path in ("/nonexistent.png", "/nowhere", "/fleet/", "/alerts/x", "/js/nope.js",
                     "/vendor/nope/x.js"):
            st, hd, body = http_get(k, path)
            C.check(st == 404 and hd.get("Content-Type", "").startswith("text/html") and
                    b"<h1>Page not found</h1>" in body and body != index and
                    hd.get("Cache-Control") == "no-store",
                    f"D: GET {path} -> 404, a small HTML page", (st, hd, body[:300]))
        st, hd, body = http_get(k, "/nowhere", "HEAD")
        C.check(st == 404 and body == b"" and int(hd.get("Content-Length", "0")) > 0,
                "D: HEAD /nowhere -> 404, no body (Content-Length of the GET)", (st, hd, body))
        st, hd, body = http_get(k, "/nowhere", "POST")
        C.check(st == 405 and "GET" in hd.get("Allow", "") and
                hd.get("Content-Type", "").startswith("text/html"),
                "D: POST /nowhere -> 405 HTML with Allow", (st, hd, body[:200]))
        stop_ok(k, "D")
    finally:
        if k.alive():
            k.kill9()


def main() -> int:
    try:
        part_a()
        part_b()
        part_c()
        part_d()
    finally:
        if C.failed == 0:
            rmtree(W)
        else:
            C.note(f"kept {W} for inspection")
    return C.done()


if __name__ == "__main__":
    sys.exit(main())
