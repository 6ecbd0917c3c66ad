#!/usr/bin/env python3
"""slowloris.py - [http] request_timeout (issue 17, point 3): a request must
be whole within request_timeout of its first byte.

Real sockets against the real katomon binary (no plugins), request_timeout
= 2 s, checked:
  - 20 sockets each sending a request line, then one header line every
    0.5 s (each byte restarts the read timeout, so only the deadline can
    end them): every one answered 408 and closed within request_timeout
    (+ slack), while
  - a normal request on another connection is answered at once meanwhile;
  - a request sent slowly but whole within the deadline (a byte every
    0.1 s for about 1.5 s) is answered 200, not 408;
  - a keep-alive connection idle for longer than request_timeout between
    two requests is not cut: the deadline runs from a request's first byte;
  - katomon exits 0 on SIGTERM with no sanitizer report.
"""

from __future__ import annotations

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import Checks, Katomon, base_conf, rmtree, tmpdir  # noqa: E402

C = Checks()
W = tmpdir("km-slowloris.")
TIMEOUT = 2.0


def recv_all(s: socket.socket, until: float) -> bytes:
    """What the server sends until it closes (or `until`, monotonic)."""
    out = b""
    while time.monotonic() < until:
        s.settimeout(max(0.05, until - time.monotonic()))
        try:
            b = s.recv(4096)
        except socket.timeout:
            break
        except OSError:
            break
        if not b:
            break
        out += b
    return out


def main() -> int:
    state = os.path.join(W, "state")
    os.makedirs(state)
    k = Katomon(W, "k", base_conf(state, f"request_timeout = {TIMEOUT:g}"))
    if not C.check(k.start(), "katomon starts", k.text()[-3000:]):
        return C.done()
    try:
        # 20 slowloris sockets
        socks = []
        t0 = time.monotonic()
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", k.port))
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        closed_at: dict[int, float] = {}
        answers: dict[int, bytes] = {}
        for s in socks:
            s.setblocking(False)
        normal_ok = None
        while len(closed_at) < len(socks) and time.monotonic() - t0 < TIMEOUT + 5:
            for i, s in enumerate(socks):
                if i in closed_at:
                    continue
                try:
                    b = s.recv(4096)
                    answers[i] = answers.get(i, b"") + b
                    if not b:
                        closed_at[i] = time.monotonic() - t0
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    closed_at[i] = time.monotonic() - t0
                    continue
                try:
                    s.send(b"X-Slow: 1\r\n")
                except OSError:
                    pass
            if normal_ok is None and time.monotonic() - t0 > 1.0:
                st, body = k.get("/health", timeout=2)
                normal_ok = st == 200
            time.sleep(0.5)
        late = [round(t, 2) for t in closed_at.values() if t > TIMEOUT + 1.5]
        C.check(len(closed_at) == len(socks) and not late,
                f"20 sockets dribbling headers: all closed within request_timeout "
                f"({TIMEOUT:g} s) + 1.5 s (at {sorted(round(t, 2) for t in closed_at.values())})",
                {"open": len(socks) - len(closed_at), "late": late})
        C.check(all(a.startswith(b"HTTP/1.1 408") for a in answers.values() if a),
                "... each answered 408 Request Timeout", {i: a[:40] for i, a in answers.items()})
        C.check(normal_ok is True, "a normal request meanwhile is answered at once")
        for s in socks:
            s.close()

        # slow but whole within the deadline
        s = socket.create_connection(("127.0.0.1", k.port))
        req = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        step = 1.2 / len(req)
        for i in range(len(req)):
            s.send(req[i:i + 1])
            time.sleep(step)
        a = recv_all(s, time.monotonic() + 5)
        s.close()
        C.check(a.startswith(b"HTTP/1.1 200"), "a request dribbled over ~1.2 s, whole in time: 200",
                a[:60])

        # keep-alive: idle longer than the deadline between requests
        s = socket.create_connection(("127.0.0.1", k.port))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        a1 = s.recv(4096)
        time.sleep(TIMEOUT + 1)  # the idle gap under test: longer than the deadline
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        a2 = recv_all(s, time.monotonic() + 5)
        s.close()
        C.check(a1.startswith(b"HTTP/1.1 200") and a2.startswith(b"HTTP/1.1 200"),
                "keep-alive idle past request_timeout between requests: not cut (200, 200)",
                [a1[:40], a2[:40]])
        C.check("request not whole within 2 s ([http] request_timeout): 408" in k.text(),
                "logged, naming the key")
    finally:
        ok, why = k.stop()
        C.check(ok, "katomon stops cleanly", why)
    rmtree(W)
    return C.done()


if __name__ == "__main__":
    sys.exit(main())
