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
  - WebSocket frames (the same deadline, per frame): 10 upgraded clients
    that send a partial frame header and stop, and 5 that send a header
    and then dribble the payload a byte every 0.5 s, are each closed with
    1008 within request_timeout (+ slack) of their frame's first byte;
  - an upgraded client that sends nothing and only reads is not cut by it
    (still open, answering a ping, 2 x request_timeout later), and a ping
    frame dribbled over ~1.2 s, whole in time, gets its pong;
  - SIGHUP with request_timeout = 1 applies to frames at once: a client
    stuck in a frame header is then closed after ~1 s, and the log says 1 s;
  - katomon exits 0 on SIGTERM with no sanitizer report.
"""

from __future__ import annotations

import base64
import os
import random
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import Checks, Katomon, base_conf, rmtree, tmpdir  # noqa: E402

C = Checks()
W = tmpdir("km-slowloris.")
RNG = random.Random(17)  # fixed seed: keys, masks and payloads
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


def ws_open(port: int) -> socket.socket:
    """An upgraded WebSocket client socket, the 101 read (nothing past it)."""
    key = base64.b64encode(bytes(RNG.getrandbits(8) for _ in range(16))).decode()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    s.settimeout(5)
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(1)  # byte by byte: nothing past the 101 is taken
        if not b:
            break
        head += b
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"upgrade refused: {head[:60]!r}")
    return s


def ws_frame(op: int, payload: bytes) -> bytes:
    """A masked client frame (FIN set), payload <= 125 bytes."""
    mask = bytes(RNG.getrandbits(8) for _ in range(4))
    return (bytes([0x80 | op, 0x80 | len(payload)]) + mask +
            bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def ws_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Whole server frames in buf (opcode, payload) and the rest."""
    out = []
    while len(buf) >= 2:
        n, h = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, h = struct.unpack(">H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, h = struct.unpack(">Q", buf[2:10])[0], 10
        if len(buf) < h + n:
            break
        out.append((buf[0] & 0x0F, buf[h:h + n]))
        buf = buf[h + n:]
    return out, buf


def ws_checks(k: Katomon) -> None:
    """The frame deadline of upgraded clients (see the docstring)."""
    stuck = [ws_open(k.port) for _ in range(10)]
    drib = [ws_open(k.port) for _ in range(5)]
    listener = ws_open(k.port)
    t0 = time.monotonic()
    for s in stuck:
        s.sendall(b"\x81\xfd")  # FIN text, masked, 125 bytes: the mask never comes
    frames = [ws_frame(0x1, bytes(RNG.getrandbits(6) + 32 for _ in range(125)))
              for _ in drib]
    for s, f in zip(drib, frames):
        s.sendall(f[:6])  # header and mask; the payload a byte at a time below
    socks = stuck + drib
    for s in socks + [listener]:
        s.setblocking(False)
    bufs = [b""] * len(socks)
    closed_at: dict[int, float] = {}
    close_code: dict[int, int] = {}
    sent = [6] * len(drib)
    lbuf = b""
    while len(closed_at) < len(socks) and time.monotonic() - t0 < TIMEOUT + 5:
        for i, s in enumerate(socks):
            if i in closed_at:
                continue
            try:
                b = s.recv(65536)
                if not b:
                    closed_at[i] = time.monotonic() - t0
                    continue
                bufs[i] += b
                fr, bufs[i] = ws_frames(bufs[i])
                for op, pl in fr:
                    if op == 0x8 and i not in close_code:
                        close_code[i] = struct.unpack(">H", pl[:2])[0] if len(pl) >= 2 else 0
            except BlockingIOError:
                pass
            except OSError:
                closed_at[i] = time.monotonic() - t0
                continue
            j = i - len(stuck)
            if j >= 0 and i not in close_code and sent[j] < len(frames[j]):
                try:
                    s.send(frames[j][sent[j]:sent[j] + 1])
                    sent[j] += 1
                except OSError:
                    pass
        try:
            while True:  # the listener reads whatever comes (realtime_update)
                b = listener.recv(65536)
                if not b:
                    break
                lbuf += b
        except BlockingIOError:
            pass
        time.sleep(0.5)
    times = sorted(round(t, 2) for t in closed_at.values())
    late = [t for t in times if t > TIMEOUT + 2.5]
    early = [t for t in times if t < TIMEOUT - 0.5]
    # slack: housekeeping runs every request_timeout / 4, this loop polls every 0.5 s
    C.check(len(closed_at) == len(socks) and not late and not early,
            f"10 WebSocket clients stuck in a frame header and 5 dribbling a payload: all "
            f"closed {TIMEOUT:g} s (-0.5/+2.5 s) after their frame began (at {times})",
            {"open": len(socks) - len(closed_at), "late": late, "early": early})
    C.check(len(close_code) == len(socks) and set(close_code.values()) == {1008},
            "... each with a close frame, code 1008", close_code)
    for s in socks:
        s.close()

    # the listener: sent nothing, read everything; wait past 2 x the deadline
    while time.monotonic() - t0 < 2 * TIMEOUT + 0.5:
        time.sleep(0.1)
    listener.setblocking(True)
    listener.settimeout(5)
    got_close = any(op == 0x8 for op, _ in ws_frames(lbuf)[0])
    pong = None
    payload = b"listener-1"
    try:
        listener.sendall(ws_frame(0x9, payload))
        end = time.monotonic() + 5
        while time.monotonic() < end and pong is None:
            b = listener.recv(65536)
            if not b:
                break
            lbuf += b
            fr, rest = ws_frames(lbuf)
            got_close = got_close or any(op == 0x8 for op, _ in fr)
            pong = next((pl for op, pl in fr if op == 0xA), None)
    except OSError:
        pass
    C.check(not got_close and pong == payload,
            f"an upgraded client that only listens is not cut ({2 * TIMEOUT:g} s later it "
            "gets a pong for its ping)", {"close": got_close, "pong": pong})
    listener.close()

    # a ping frame dribbled over ~1.2 s: whole within the deadline
    s = ws_open(k.port)
    f = ws_frame(0x9, b"slow-but-whole")
    for i in range(len(f)):
        s.send(f[i:i + 1])
        time.sleep(1.2 / len(f))
    buf, pong, end = b"", None, time.monotonic() + 5
    s.settimeout(5)
    while time.monotonic() < end and pong is None:
        try:
            b = s.recv(65536)
        except OSError:
            break
        if not b:
            break
        buf += b
        fr, _ = ws_frames(buf)
        if any(op == 0x8 for op, _ in fr):
            break
        pong = next((pl for op, pl in fr if op == 0xA), None)
    s.close()
    C.check(pong == b"slow-but-whole", "a ping frame dribbled over ~1.2 s, whole in time: "
            "its pong, no close", pong)
    C.check(k.wait_log(r"frame not whole within 2 s \(\[http\] request_timeout\): "
                       r"closing with 1008", 5) is not None,
            "logged, naming the key")


def sighup_check(k: Katomon) -> None:
    """request_timeout is live for frames too: 2 s -> 1 s by SIGHUP."""
    mark = len(k.text())
    with open(k.conf_path) as f:
        conf = f.read()
    with open(k.conf_path, "w") as f:
        f.write(conf.replace(f"request_timeout = {TIMEOUT:g}", "request_timeout = 1"))
    k.proc.send_signal(signal.SIGHUP)
    if not C.check(k.wait_log(r"http: reloaded", 10, mark) is not None, "SIGHUP -> reloaded"):
        return
    s = ws_open(k.port)
    t0 = time.monotonic()
    s.sendall(b"\x81\xfd")
    buf, closed_at = b"", None
    s.settimeout(0.5)
    while time.monotonic() - t0 < 6 and closed_at is None:
        try:
            b = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            b = b""
        if not b:
            closed_at = time.monotonic() - t0
        buf += b
    s.close()
    fr, _ = ws_frames(buf)
    # housekeeping every request_timeout / 4 (0.25 s) past the 1 s deadline
    C.check(closed_at is not None and 0.75 <= closed_at <= 3.0 and
            any(op == 0x8 for op, _ in fr),
            f"after SIGHUP to request_timeout = 1: a client stuck in a frame header closed "
            f"after {closed_at and round(closed_at, 2)} s (0.75 .. 3 s), with a close frame",
            buf[:20])
    C.check(k.wait_log(r"frame not whole within 1 s", 5, mark) is not None,
            "... and the log says 1 s")


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
        ws_checks(k)
        sighup_check(k)
    finally:
        ok, why = k.stop()
        C.check(ok, "katomon stops cleanly", why)
    rmtree(W)
    return C.done()


if __name__ == "__main__":
    sys.exit(main())
