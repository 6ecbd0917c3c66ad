#!/usr/bin/env python3
"""rfc6455.py - WebSocket conformance of katomon's /ws (RFC 6455), case by
case after the Autobahn testsuite's server cases (issue 17).

Real TCP sockets against the real katomon binary (no plugins); the frame
encoder/decoder is written here (stdlib only), so any frame can be sent:
bad bits, bad opcodes, unmasked, split at any byte. Every case opens its own
connection and is named after its Autobahn case number(s). katomon is not an
echo server, so where Autobahn expects an echo the case sends a request
katomon answers: the text "ping" padded with whitespace to the length under
test (any byte changed in transit makes it something else, which katomon
drops silently) answered by a heartbeat, or, where the payload is not a
request, proves the connection is still open by a ping answered by a pong.
A passing case ends with a clean close (1000 echoed, then the server's FIN).

Every frame katomon sends is checked too (RFC 6455 5.1/5.2): never masked,
no RSV bit, a known opcode, control frames whole and <= 125 bytes, data
messages in one FIN frame (katomon never fragments what it sends).

Cases (expected result after the arrow; "hb" = heartbeat reply, "alive" =
no close, a ping still answered):
  1.1.1-1.1.8   text of 0, 125, 126, 127, 128, 65535, 65536 bytes, and
                65536 written in 997-byte chops -> hb (0 bytes: alive)
  1.2.1-1.2.8   the same as binary -> hb (binary carries requests too)
  2.1-2.4       ping with no, text, binary, 125-byte payload -> pong, same
                payload
  2.5           ping with 126-byte payload -> 1002
  2.6           125-byte ping written octet by octet -> pong
  2.7-2.9       unsolicited pong (empty, with payload, then a ping) ->
                ignored; only the ping is answered
  2.10, 2.11    10 pings at once / octet-wise -> 10 pongs in order
  3.1-3.7       RSV 1..7 on text, binary, ping, close (after a good
                message, before a ping) -> 1002, the ping not answered
  4.1.1-4.1.5   reserved data opcodes 3-7 -> 1002
  4.2.1-4.2.5   reserved control opcodes 0xB-0xF -> 1002
  5.1, 5.2      ping / pong in 2 fragments -> 1002
  5.3-5.5       text in 2 fragments (one write, frame-wise, octet-wise)
                -> hb
  5.6-5.8       the same with a ping between the fragments -> pong, then hb
  5.9-5.14      continuation (FIN set / not set) with nothing to continue
                -> 1002, the text after it not answered
  5.15          whole fragmented message, then a stray continuation -> hb,
                then 1002
  5.16, 5.17    stray continuation, then a fragmented message -> 1002
  5.18          new text frame while a fragmented one is open -> 1002
  5.19, 5.20    text in 5 fragments, pings between them, each pong awaited
                before the next fragment (frame-wise, octet-wise) -> pongs,
                then hb
  6.1.1-6.1.3   empty text, empty fragments, empty + "ping" + empty -> alive,
                alive, hb
  6.2.1-6.2.4   valid multi-byte UTF-8 in one frame, in 2 fragments, in one
                fragment per byte (code points split) -> hb
  6.3.1, 6.3.2  invalid UTF-8 (a surrogate) in one frame, one fragment per
                byte -> 1007
  6.4.1-6.4.4   fail fast: invalid UTF-8 in fragment 2 of 3 / in chunk 2
                of one frame -> 1007 before the rest is sent
  6.5.1-6.23.7  Markus Kuhn's UTF-8 decoder tests as Autobahn lists them
                (valid: prefixes, boundaries, non-characters, specials;
                invalid: 5/6-byte forms, > U+10FFFF, stray continuations,
                lonely starts, truncations, impossible bytes, overlongs,
                surrogates), each in one frame and again one fragment per
                byte -> valid: alive; invalid: 1007 right after the byte
                that makes it invalid (a ping after each earlier fragment is
                still answered)
  7.1.1         hb, then close 1000 -> 1000 echoed, server's FIN
  7.1.2         two closes -> one close back
  7.1.3, 7.1.4  ping / text after the close -> not answered
  7.1.5         text fragment, close, continuation -> close, no hb
  7.1.6         60 KiB text, close, ping -> hb, close, no pong
  7.3.1         close with no payload -> close (no code or 1000)
  7.3.2         close with a 1-byte payload -> 1002
  7.3.3-7.3.5   close 1000 with no / short / 123-byte reason -> 1000
  7.3.6         close reason of 124 bytes (payload 126) -> 1002
  7.5.1         close reason not UTF-8 -> 1007
  7.7.1-7.7.13  valid codes 1000-1003, 1007-1011, 3000, 3999, 4000, 4999
                -> echoed (and 1012-1014, registered, as 7.7.x-iana)
  7.9.1-7.9.9   invalid codes 0, 999, 1004, 1005, 1006, 1016, 1100, 2000,
                2999 -> 1002 (and 1015, as 7.9.x-1015)
  7.13.1, 7.13.2 codes 5000, 65535 -> 1002
  9.1.1/9.2.1   text/binary of max_message_bytes (64 KiB) -> hb
  9.1.2/9.2.2   one byte more -> 1009
  9.1.3-9.1.6   256 KiB, 1, 4, 16 MiB announced (header + 4 KiB sent)
  9.2.3-9.2.6   -> 1009 at once, without waiting for the rest
  9.3.x/9.4.x   64 KiB text/binary in fragments of 64 B .. 64 KiB -> hb;
                fragments adding up past the limit -> 1009
  9.5.x/9.6.x   64 KiB text/binary written in chops of 64 B .. 2 KiB -> hb
  9.7, 9.8      90 text/binary requests at once -> 90 hb in order (Autobahn
                sends 1,000; katomon answers 100 at once, 20/s after: its
                documented flood limit)
  9.x-flood     3,000 frames at once -> alive; 50,000 at once -> 1008
                (documented: 1008 past 4,000 messages at once)
  10.1.1        N/A: katomon echoes nothing, and never fragments its own
                messages (checked on every frame it sends, see above)
  12.x/13.x     N/A beyond the handshake: permessage-deflate offered ->
                101 with no Sec-WebSocket-Extensions (declined); then a
                frame with RSV1 set (a "compressed" message) -> 1002
  mask.1-mask.4 (RFC 6455 5.1) unmasked text, ping, close, continuation
                -> 1002

Limits of this daemon the cases use: [websocket] max_message_bytes = 64k
(set below), flood buckets of ws_conn.c (README, WebSocket). Waits are
deadlines on socket reads (RFC6455_TIMEOUT seconds, default 15), never
fixed sleeps.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import socket
import struct
import sys
import time
import traceback
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import WS_GUID, Checks, Katomon, base_conf, rmtree, tmpdir  # noqa: E402

C = Checks()
W = tmpdir("km-rfc6455.")
T = float(os.environ.get("RFC6455_TIMEOUT", "15"))
MAX = 64 * 1024  # [websocket] max_message_bytes of this test's katomon
RNG = random.Random(6455)  # masks and padding: fixed seed

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
KNOWN_OPS = (OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG)
KOSME = "κόσμε".encode()  # ce ba e1 bd b9 cf 83 ce bc ce b5
BAD_KOSME = KOSME + b"\xed\xa0\x80" + b"edited"  # a UTF-16 surrogate inside


class CaseFail(Exception):
    pass


def need(cond: object, what: str) -> None:
    if not cond:
        raise CaseFail(what)


def padded_ping(n: int) -> bytes:
    """n bytes: "ping" inside whitespace katomon trims (n >= 4)."""
    ws = b" \t\r\n"
    left = (n - 4) // 2
    pad = bytes(RNG.choice(ws) for _ in range(n - 4))
    return pad[:left] + b"ping" + pad[left:]


def mask_bytes(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return b""
    m = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")


def frame(op: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
          masked: bool = True, length: int = -1) -> bytes:
    """One client frame; length: the length to announce (default: the
    payload's)."""
    n = len(payload) if length < 0 else length
    head = bytearray([(0x80 if fin else 0) | (rsv & 7) << 4 | op])
    mbit = 0x80 if masked else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if not masked:
        return bytes(head) + payload
    key = bytes(RNG.getrandbits(8) for _ in range(4))
    return bytes(head) + key + mask_bytes(payload, key)


def chops(data: bytes, size: int) -> list:
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


class Peer:
    """One raw client connection to /ws."""

    def __init__(self, port: int, extra_headers: str = "") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=T)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(bytes(RNG.getrandbits(8) for _ in range(16))).decode()
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Origin: http://127.0.0.1:{port}\r\n{extra_headers}\r\n").encode())
        head = b""
        deadline = time.monotonic() + T
        while b"\r\n\r\n" not in head:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CaseFail("closed during the handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        need(lines[0].startswith("HTTP/1.1 101 "), f"handshake: {lines[0]}")
        self.headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip()
                        for l in lines[1:] if ":" in l}
        want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        need(self.headers.get("sec-websocket-accept") == want, "bad Sec-WebSocket-Accept")
        self.log: list = []  # (kind, data) of every frame received, in order
        self.violations: list = []  # server frames breaking RFC 6455 5.1/5.2
        self.eof = False
        self.pings = 0

    # ---- sending ----
    def send(self, data: bytes, chop: int = 0) -> None:
        """Writes data, in writes of chop bytes when chop > 0 (TCP_NODELAY:
        each goes out as its own segment as far as the kernel is concerned)."""
        try:
            for piece in (chops(data, chop) if chop else [data]):
                self.sock.sendall(piece)
        except OSError:
            pass  # the server may have closed already; reading says what it sent

    def send_frame(self, op: int, payload: bytes = b"", chop: int = 0, **kw) -> None:
        self.send(frame(op, payload, **kw), chop)

    def ping(self, payload: bytes) -> None:
        self.send_frame(OP_PING, payload)

    # ---- receiving ----
    def _fill(self, n: int, deadline: float) -> None:
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(262144)
            except socket.timeout:
                raise TimeoutError
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise EOFError
            self.buf += chunk

    def read(self, deadline: float):
        """The next frame as (kind, data): ("text"|"binary", payload),
        ("ping"|"pong", payload), ("close", (code or None, reason bytes)),
        ("eof", None); None at the deadline."""
        if self.eof:
            return ("eof", None)
        try:
            self._fill(2, deadline)
            b0, b1 = self.buf[0], self.buf[1]
            n, hl = b1 & 0x7F, 2
            if n == 126:
                self._fill(4, deadline)
                n, hl = struct.unpack("!H", self.buf[2:4])[0], 4
            elif n == 127:
                self._fill(10, deadline)
                n, hl = struct.unpack("!Q", self.buf[2:10])[0], 10
            masked = b1 & 0x80
            if masked:
                hl += 4
            self._fill(hl + n, deadline)
        except TimeoutError:
            return None
        except EOFError:
            self.eof = True
            self.log.append(("eof", None))
            return ("eof", None)
        payload = self.buf[hl:hl + n]
        if masked:
            payload = mask_bytes(payload, self.buf[hl - 4:hl])
        self.buf = self.buf[hl + n:]
        fin, rsv, op = b0 & 0x80, (b0 >> 4) & 7, b0 & 0x0F
        bad = []
        if masked:
            bad.append("masked")
        if rsv:
            bad.append(f"RSV {rsv}")
        if op not in KNOWN_OPS:
            bad.append(f"opcode {op:#x}")
        if not fin:
            bad.append("fragmented (katomon never fragments)")
        if op >= 8 and n > 125:
            bad.append(f"control frame of {n} bytes")
        if op == OP_CLOSE and n == 1:
            bad.append("close payload of 1 byte")
        if bad:
            self.violations.append((op, bad))
        if op == OP_CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if n >= 2 else None
            ev = ("close", (code, payload[2:]))
        else:
            ev = ({OP_TEXT: "text", OP_BIN: "binary", OP_PING: "ping",
                   OP_PONG: "pong"}.get(op, f"op{op}"), payload)
        self.log.append(ev)
        return ev

    def wait(self, want, what: str, timeout: float = T):
        """Reads until want(event) holds; fails on a close or EOF first (unless
        want accepts it) or at the deadline. Server pings are answered."""
        deadline = time.monotonic() + timeout
        while True:
            ev = self.read(deadline)
            if ev is None:
                raise CaseFail(f"{what}: nothing within {timeout:g} s")
            if want(ev):
                return ev
            if ev[0] == "ping":
                self.send_frame(OP_PONG, ev[1])
            elif ev[0] in ("close", "eof"):
                raise CaseFail(f"{what}: got {ev[0]} {ev[1]!r} first")

    def pong(self, payload: bytes, what: str = "") -> None:
        self.wait(lambda e: e == ("pong", payload), what or f"pong {payload[:20]!r}")

    def heartbeat(self, what: str = "heartbeat") -> None:
        self.wait(lambda e: e[0] == "text" and b'"heartbeat"' in e[1], what)

    def alive(self, what: str = "still open: ping answered") -> None:
        self.pings += 1
        token = b"alive-%d" % self.pings
        self.ping(token)
        self.pong(token, what)

    def closed(self, code, what: str = "") -> tuple:
        """Waits for the server's close frame with `code` (None: no code),
        answers it and waits for the server to close TCP. Returns the frames
        received before the close."""
        start = len(self.log)
        ev = self.wait(lambda e: e[0] in ("close", "eof"), what or f"close {code}")
        need(ev[0] == "close", f"{what or 'close'}: TCP closed without a close frame")
        got = ev[1][0]
        ok = got == code or (isinstance(code, tuple) and got in code)
        need(ok, f"close code {got} ({ev[1][1][:80]!r}), want {code}")
        before = self.log[start:-1]
        self.send_frame(OP_CLOSE, struct.pack("!H", got) if got is not None else b"")
        deadline = time.monotonic() + T
        while not self.eof:
            e = self.read(deadline)
            need(e is not None, f"no FIN from the server within {T:g} s after the close")
            need(e[0] != "close", "a second close frame")
        return before

    def clean_close(self) -> None:
        """The end of a passing case: close 1000 -> 1000 echoed -> FIN."""
        self.send_frame(OP_CLOSE, struct.pack("!H", 1000))
        ev = self.wait(lambda e: e[0] in ("close", "eof"), "close echo")
        need(ev[0] == "close" and ev[1][0] == 1000, f"clean close: got {ev!r}")
        deadline = time.monotonic() + T
        while not self.eof:
            e = self.read(deadline)
            need(e is not None, "no FIN after the close echo")
            need(e[0] != "close", "a second close frame")

    def count(self, kind: str, data=None, since: int = 0) -> int:
        return sum(1 for e in self.log[since:]
                   if e[0] == kind and (data is None or e[1] == data or
                                        (kind == "text" and data in e[1])))

    def close_sock(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# the case runner
# ---------------------------------------------------------------------------

CASES: list = []


def peer_case(cid: str, title: str):
    """Registers fn(p) as a case run on a fresh connection."""
    def reg(fn):
        def body(port: int):
            body.p = None
            p = Peer(port)
            body.p = p
            fn(p)
            return p
        CASES.append((cid, title, body))
        return fn
    return reg


def run_case(port: int, cid: str, title: str, fn) -> None:
    """Runs one case; a failing one prints the last frames its peer got."""
    peer = None
    try:
        peer = fn(port)
        if peer is not None:
            need(not peer.violations, f"server frames break RFC 6455: {peer.violations[:3]}")
        C.ok(f"{cid} {title}")
    except CaseFail as e:
        p = getattr(fn, "p", None)
        log = [(k, d[:60] if isinstance(d, (bytes, bytearray)) else d)
               for k, d in (p.log[-12:] if p else [])]
        C.fail(f"{cid} {title}", f"{e}\nlast frames received: {log}")
    except Exception:
        C.fail(f"{cid} {title}", traceback.format_exc())
    finally:
        p = getattr(fn, "p", None)
        if p is not None:
            p.close_sock()
            fn.p = None


# ---------------------------------------------------------------------------
# 1: framing, payload lengths
# ---------------------------------------------------------------------------

def lengths_cases(grp: str, op: int, kind: str) -> None:
    for i, n in enumerate((0, 125, 126, 127, 128, 65535, 65536), 1):
        def f(p: Peer, n=n) -> None:
            p.send_frame(op, padded_ping(n) if n else b"")
            if n:
                p.heartbeat()
            else:
                p.alive()  # an empty message is no request: nothing to answer
            p.clean_close()
        peer_case(f"{grp}.{i}", f"{kind} message of {n} bytes -> "
                  f"{'processed (heartbeat)' if n else 'accepted (still open)'}")(f)

    def f8(p: Peer) -> None:
        p.send(frame(op, padded_ping(65536)), chop=997)
        p.heartbeat()
        p.clean_close()
    peer_case(f"{grp}.8", f"{kind} message of 65536 bytes written in 997-byte chops -> "
              "processed")(f8)


lengths_cases("1.1", OP_TEXT, "text")
lengths_cases("1.2", OP_BIN, "binary")

# ---------------------------------------------------------------------------
# 2: pings and pongs
# ---------------------------------------------------------------------------

for cid, title, payload in (("2.1", "ping with no payload", b""),
                            ("2.2", "ping with a small text payload", b"Hello, world!"),
                            ("2.3", "ping with a small binary payload",
                             bytes([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff])),
                            ("2.4", "ping with a 125-byte binary payload",
                             bytes(RNG.getrandbits(8) for _ in range(125)))):
    def f(p: Peer, payload=payload) -> None:
        p.ping(payload)
        p.pong(payload)
        p.clean_close()
    peer_case(cid, f"{title} -> pong with the same payload")(f)


@peer_case("2.5", "ping with a 126-byte payload -> 1002")
def c2_5(p: Peer) -> None:
    p.send_frame(OP_PING, b"\xfe" * 126)
    p.closed(1002)
    need(p.count("pong") == 0, "no pong")


@peer_case("2.6", "125-byte ping written octet by octet -> pong")
def c2_6(p: Peer) -> None:
    payload = b"\xfe" * 125
    p.send_frame(OP_PING, payload, chop=1)
    p.pong(payload)
    p.clean_close()


@peer_case("2.7", "unsolicited pong with no payload -> ignored")
def c2_7(p: Peer) -> None:
    p.send_frame(OP_PONG)
    p.alive()
    p.clean_close()


@peer_case("2.8", "unsolicited pong with payload -> ignored")
def c2_8(p: Peer) -> None:
    p.send_frame(OP_PONG, b"unsolicited pong payload")
    p.alive()
    need(p.count("pong") == 1, "only the ping answered")
    p.clean_close()


@peer_case("2.9", "unsolicited pong, then a ping -> pong for the ping only")
def c2_9(p: Peer) -> None:
    p.send(frame(OP_PONG, b"unsolicited pong payload") + frame(OP_PING, b"ping payload"))
    p.pong(b"ping payload")
    need(p.count("pong") == 1, "one pong")
    p.clean_close()


for cid, chop, how in (("2.10", 0, "in one write"), ("2.11", 1, "octet by octet")):
    def f(p: Peer, chop=chop) -> None:
        data = b"".join(frame(OP_PING, b"payload-%d" % i) for i in range(10))
        p.send(data, chop)
        for i in range(10):
            p.pong(b"payload-%d" % i, f"pong {i} (in order)")
        p.clean_close()
    peer_case(cid, f"10 pings {how} -> 10 pongs in order")(f)

# ---------------------------------------------------------------------------
# 3: reserved bits
# ---------------------------------------------------------------------------


@peer_case("3.1", "text with RSV = 1 -> 1002")
def c3_1(p: Peer) -> None:
    p.send_frame(OP_TEXT, b"ping", rsv=1)
    p.closed(1002)
    need(p.count("text", b"heartbeat") == 0, "the bad frame not processed")


def rsv_after_good(rsv: int, chop: int, op: int = OP_TEXT) -> None:
    def f(p: Peer) -> None:
        p.send(frame(OP_TEXT, b"ping") + frame(op, b"ping", rsv=rsv) +
               frame(OP_PING, b"after"), chop)
        p.closed(1002)
        need(p.count("text", b"heartbeat") == 1, "the good message before it answered")
        need(p.count("pong") == 0, "the ping after the bad frame not answered")
    return f


peer_case("3.2", "text, text with RSV = 2, ping -> hb, 1002, no pong")(rsv_after_good(2, 0))
peer_case("3.3", "the same with RSV = 3, one write -> hb, 1002, no pong")(
    rsv_after_good(3, 0))
peer_case("3.4", "the same with RSV = 4, octet by octet -> hb, 1002, no pong")(
    rsv_after_good(4, 1))


@peer_case("3.5", "binary with RSV = 5 -> 1002")
def c3_5(p: Peer) -> None:
    p.send_frame(OP_BIN, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", rsv=5)
    p.closed(1002)


@peer_case("3.6", "ping with RSV = 6 -> 1002, no pong")
def c3_6(p: Peer) -> None:
    p.send_frame(OP_PING, b"Hello, world!", rsv=6)
    p.closed(1002)
    need(p.count("pong") == 0, "no pong")


@peer_case("3.7", "close with RSV = 7 -> 1002")
def c3_7(p: Peer) -> None:
    p.send_frame(OP_CLOSE, struct.pack("!H", 1000), rsv=7)
    p.closed(1002)

# ---------------------------------------------------------------------------
# 4: reserved opcodes
# ---------------------------------------------------------------------------


def reserved_op_cases(grp: str, ops: tuple, kind: str) -> None:
    o1, o2, o3, o4, o5 = ops

    def only(op, payload):
        def f(p: Peer) -> None:
            p.send_frame(op, payload)
            p.closed(1002)
        return f

    def between(op, payload, chop):
        def f(p: Peer) -> None:
            p.send(frame(OP_TEXT, b"ping") + frame(op, payload) + frame(OP_PING, b"after"),
                   chop)
            p.closed(1002)
            need(p.count("text", b"heartbeat") == 1, "the good message before it answered")
            need(p.count("pong") == 0, "the ping after it not answered")
        return f

    peer_case(f"{grp}.1", f"reserved {kind} opcode {o1:#x}, empty -> 1002")(only(o1, b""))
    peer_case(f"{grp}.2", f"reserved {kind} opcode {o2:#x} with payload -> 1002")(
        only(o2, b"reserved opcode payload"))
    peer_case(f"{grp}.3", f"text, opcode {o3:#x}, ping -> hb, 1002, no pong")(
        between(o3, b"", 0))
    peer_case(f"{grp}.4", f"text, opcode {o4:#x} with payload, ping -> hb, 1002, no pong")(
        between(o4, b"reserved opcode payload", 0))
    peer_case(f"{grp}.5", f"the same with opcode {o5:#x}, octet by octet -> 1002")(
        between(o5, b"reserved opcode payload", 1))


reserved_op_cases("4.1", (3, 4, 5, 6, 7), "data")
reserved_op_cases("4.2", (0xB, 0xC, 0xD, 0xE, 0xF), "control")

# ---------------------------------------------------------------------------
# 5: fragmentation
# ---------------------------------------------------------------------------


@peer_case("5.1", "ping in 2 fragments -> 1002")
def c5_1(p: Peer) -> None:
    p.send(frame(OP_PING, b"fragment1", fin=False) + frame(OP_CONT, b"fragment2"))
    p.closed(1002)
    need(p.count("pong") == 0, "no pong")


@peer_case("5.2", "pong in 2 fragments -> 1002")
def c5_2(p: Peer) -> None:
    p.send(frame(OP_PONG, b"fragment1", fin=False) + frame(OP_CONT, b"fragment2"))
    p.closed(1002)


def two_frags(ping_between: bool, mode: str):
    def f(p: Peer) -> None:
        frames = [frame(OP_TEXT, b" pi", fin=False)]
        if ping_between:
            frames.append(frame(OP_PING, b"between"))
        frames.append(frame(OP_CONT, b"ng "))
        if mode == "one":
            p.send(b"".join(frames))
        else:
            for fr in frames:
                p.send(fr, 1 if mode == "octet" else 0)
        if ping_between:
            p.pong(b"between")
            need(p.count("text", b"heartbeat") == 0, "the pong before the message's reply")
        p.heartbeat()
        p.clean_close()
    return f


for cid, pb, mode, how in (("5.3", False, "one", "in one write"),
                           ("5.4", False, "frame", "frame by frame"),
                           ("5.5", False, "octet", "octet by octet"),
                           ("5.6", True, "one", "in one write"),
                           ("5.7", True, "frame", "frame by frame"),
                           ("5.8", True, "octet", "octet by octet")):
    peer_case(cid, f"text in 2 fragments{' with a ping between them' if pb else ''}, "
              f"{how} -> {'pong, then ' if pb else ''}hb")(two_frags(pb, mode))


def stray_cont(fin: bool, mode: str):
    def f(p: Peer) -> None:
        frames = [frame(OP_CONT, b"fragment1", fin=fin), frame(OP_TEXT, b"ping")]
        if mode == "one":
            p.send(b"".join(frames))
        else:
            for fr in frames:
                p.send(fr, 1 if mode == "octet" else 0)
        p.closed(1002)
        need(p.count("text", b"heartbeat") == 0, "the text after it not answered")
    return f


for cid, fin, mode in (("5.9", True, "one"), ("5.10", True, "frame"), ("5.11", True, "octet"),
                       ("5.12", False, "one"), ("5.13", False, "frame"),
                       ("5.14", False, "octet")):
    peer_case(cid, f"continuation (FIN {'set' if fin else 'clear'}) with nothing to "
              f"continue, then text ({ {'one': 'one write', 'frame': 'frame by frame', 'octet': 'octet by octet'}[mode]}) -> 1002")(
        stray_cont(fin, mode))


@peer_case("5.15", "text in 2 fragments, stray continuation, text -> hb, then 1002")
def c5_15(p: Peer) -> None:
    p.send(frame(OP_TEXT, b"pi", fin=False) + frame(OP_CONT, b"ng") +
           frame(OP_CONT, b"fragment3", fin=False) + frame(OP_TEXT, b"ping"))
    p.closed(1002)
    need(p.count("text", b"heartbeat") == 1, "the first message answered, the last not")


for cid, fin in (("5.16", False), ("5.17", True)):
    def f(p: Peer, fin=fin) -> None:
        one = (frame(OP_CONT, b"fragment1", fin=fin) + frame(OP_TEXT, b"pi", fin=False) +
               frame(OP_CONT, b"ng"))
        p.send(one + one)
        p.closed(1002)
        need(p.count("text", b"heartbeat") == 0, "nothing answered")
    peer_case(cid, f"(continuation FIN {'set' if fin else 'clear'} with nothing to "
              "continue, text in 2 fragments) twice -> 1002")(f)


@peer_case("5.18", "text frame while a fragmented text is open -> 1002")
def c5_18(p: Peer) -> None:
    p.send(frame(OP_TEXT, b"pi", fin=False) + frame(OP_TEXT, b"ng"))
    p.closed(1002)
    need(p.count("text", b"heartbeat") == 0, "nothing answered")


for cid, chop in (("5.19", 0), ("5.20", 1)):
    def f(p: Peer, chop=chop) -> None:
        parts = [b"  ", b" p", b"i", b"n", b"g "]
        p.send(frame(OP_TEXT, parts[0], fin=False) + frame(OP_CONT, parts[1], fin=False) +
               frame(OP_PING, b"pongme 1!"), chop)
        p.pong(b"pongme 1!")
        p.send(frame(OP_CONT, parts[2], fin=False) + frame(OP_CONT, parts[3], fin=False) +
               frame(OP_PING, b"pongme 2!"), chop)
        p.pong(b"pongme 2!")
        need(p.count("text", b"heartbeat") == 0, "no reply before the last fragment")
        p.send(frame(OP_CONT, parts[4]), chop)
        p.heartbeat()
        p.clean_close()
    peer_case(cid, "text in 5 fragments, pings between them, each pong awaited "
              f"({'octet by octet' if chop else 'frame by frame'}) -> pongs, then hb")(f)

# ---------------------------------------------------------------------------
# 6: UTF-8
# ---------------------------------------------------------------------------


@peer_case("6.1.1", "empty text message -> accepted")
def c6_1_1(p: Peer) -> None:
    p.send_frame(OP_TEXT)
    p.alive()
    p.clean_close()


@peer_case("6.1.2", "text message of 3 empty fragments -> accepted")
def c6_1_2(p: Peer) -> None:
    p.send(frame(OP_TEXT, fin=False) + frame(OP_CONT, fin=False) + frame(OP_CONT))
    p.alive()
    p.clean_close()


@peer_case("6.1.3", "empty fragment, \"ping\", empty fragment -> hb")
def c6_1_3(p: Peer) -> None:
    p.send(frame(OP_TEXT, fin=False) + frame(OP_CONT, b"ping", fin=False) + frame(OP_CONT))
    p.heartbeat()
    p.clean_close()


HELLO = '{"type":"ping","text":"Hello-µ@ßöäüàá-UTF-8!!"}'.encode()
KOSME_REQ = b'{"type":"ping","text":"' + KOSME + b'"}'


def utf8_frags(payload: bytes, cut: list):
    def f(p: Peer) -> None:
        pieces, prev = [], 0
        for c in cut + [len(payload)]:
            pieces.append(payload[prev:c])
            prev = c
        out = b""
        for i, piece in enumerate(pieces):
            out += frame(OP_TEXT if i == 0 else OP_CONT, piece, fin=i == len(pieces) - 1)
        p.send(out)
        p.heartbeat()
        p.clean_close()
    return f


peer_case("6.2.1", "valid UTF-8 (\"Hello-µ@ßöäüàá-UTF-8!!\" request) in one frame -> hb")(
    utf8_frags(HELLO, []))
peer_case("6.2.2", "the same in 2 fragments, split at a code point -> hb")(
    utf8_frags(HELLO, [HELLO.index("ß".encode())]))
peer_case("6.2.3", "the same, one fragment per byte (code points split) -> hb")(
    utf8_frags(HELLO, list(range(1, len(HELLO)))))
peer_case("6.2.4", "\"κόσμε\" request, one fragment per byte -> hb")(
    utf8_frags(KOSME_REQ, list(range(1, len(KOSME_REQ)))))


@peer_case("6.3.1", "invalid UTF-8 (a surrogate) in one frame -> 1007")
def c6_3_1(p: Peer) -> None:
    p.send_frame(OP_TEXT, BAD_KOSME)
    p.closed(1007)


# Well-formed UTF-8 (Unicode 15, table 3-7): lead byte -> the allowed range of
# each following byte. Written from the table, not from katomon's code.
UTF8_FORMS = {}
for _b in range(0x00, 0x80):
    UTF8_FORMS[_b] = ()
for _b in range(0xC2, 0xE0):
    UTF8_FORMS[_b] = ((0x80, 0xBF),)
UTF8_FORMS[0xE0] = ((0xA0, 0xBF), (0x80, 0xBF))
for _b in list(range(0xE1, 0xED)) + [0xEE, 0xEF]:
    UTF8_FORMS[_b] = ((0x80, 0xBF), (0x80, 0xBF))
UTF8_FORMS[0xED] = ((0x80, 0x9F), (0x80, 0xBF))
UTF8_FORMS[0xF0] = ((0x90, 0xBF), (0x80, 0xBF), (0x80, 0xBF))
for _b in (0xF1, 0xF2, 0xF3):
    UTF8_FORMS[_b] = ((0x80, 0xBF), (0x80, 0xBF), (0x80, 0xBF))
UTF8_FORMS[0xF4] = ((0x80, 0x8F), (0x80, 0xBF), (0x80, 0xBF))


def fail_pos(seq: bytes) -> int:
    """Index of the first byte after which seq can no longer be the start of
    well-formed UTF-8 (what a fail-fast validator detects, as Autobahn's
    does); len(seq) when only its end says so (a truncated sequence); -1
    when seq is valid."""
    i = 0
    while i < len(seq):
        form = UTF8_FORMS.get(seq[i])
        if form is None:
            return i
        for j, (lo, hi) in enumerate(form, 1):
            if i + j >= len(seq):
                return len(seq)
            if not lo <= seq[i + j] <= hi:
                return i + j
        i += 1 + len(form)
    return -1


def bytewise_invalid(seq: bytes):
    """seq one byte per fragment; after each fragment before the bad byte a
    ping must still be answered (katomon reads in order), and the close 1007
    must come right after the fragment holding the bad byte, before anything
    more is sent. A sequence only its end makes invalid fails at FIN (an
    empty last fragment)."""
    pos = fail_pos(seq)
    assert pos >= 0, seq

    def f(p: Peer) -> None:
        for i in range(pos):
            p.send_frame(OP_TEXT if i == 0 else OP_CONT, seq[i:i + 1], fin=False)
            p.ping(b"frag %d" % i)
            p.pong(b"frag %d" % i, f"fragment {i} (before the bad byte) accepted")
        if pos < len(seq):
            p.send_frame(OP_TEXT if pos == 0 else OP_CONT, seq[pos:pos + 1], fin=False)
        else:
            p.send_frame(OP_CONT, b"", fin=True)
        p.closed(1007, f"close 1007 right after the fragment with byte {pos}")
    return f


peer_case("6.3.2", "the same, one fragment per byte -> 1007 at the bad byte")(
    bytewise_invalid(BAD_KOSME))


def fail_fast(pieces: list, one_frame: bool):
    """pieces[0], pieces[1] are sent; the close must come before pieces[2]."""
    def f(p: Peer) -> None:
        total = b"".join(pieces)
        if one_frame:
            data = frame(OP_TEXT, total)
            cut = len(data) - len(total) + len(pieces[0])
            p.send(data[:cut])  # (no ping can prove it taken: we are inside a frame)
            p.send(data[cut:cut + len(pieces[1])])
        else:
            p.send_frame(OP_TEXT, pieces[0], fin=False)
            p.alive("fragment 1 accepted")
            p.send_frame(OP_CONT, pieces[1], fin=False)
        p.closed(1007, "1007 before the rest is sent")
    return f


peer_case("6.4.1", "fail fast: fragment 1 valid, fragment 2 invalid (f4 90 80 80), "
          "fragment 3 unsent -> 1007")(
    fail_fast([KOSME, b"\xf4\x90\x80\x80", b"edited"], False))
peer_case("6.4.2", "fail fast: invalid sequence split (…f4 | 90 | 80 80…) -> 1007 "
          "after fragment 2")(
    fail_fast([KOSME + b"\xf4", b"\x90", b"\x80\x80edited"], False))
peer_case("6.4.3", "fail fast inside one frame: chunk 2 invalid, chunk 3 unsent -> "
          "1007")(fail_fast([KOSME, b"\xf4\x90\x80\x80", b"edited"], True))
peer_case("6.4.4", "fail fast inside one frame: invalid sequence split across chunks "
          "-> 1007")(fail_fast([KOSME + b"\xf4", b"\x90", b"\x80\x80edited"], True))


def utf8_sequences() -> list:
    """Autobahn's case 6.5-6.23 sequences (Markus Kuhn's UTF-8 decoder test):
    [(title, [(valid, bytes), ...]), ...] in its order."""
    vss = KOSME
    out = [("valid UTF-8", [(True, b"hello\x24world"), (True, b"hello\xc2\xa2world"),
                            (True, b"hello\xe2\x82\xacworld"),
                            (True, b"hello\xf0\xa4\xad\xa2world"), (True, vss)])]
    out.append(("prefixes of valid multi-byte text",
                [(fail_pos(vss[:i]) < 0, vss[:i]) for i in range(1, len(vss) + 1)]))
    out.append(("first sequence of each length",
                [(True, b"\x00"), (True, b"\xc2\x80"), (True, b"\xe0\xa0\x80"),
                 (True, b"\xf0\x90\x80\x80")]))
    out.append(("first 5/6-byte sequence (no such code point)",
                [(False, b"\xf8\x88\x80\x80\x80"), (False, b"\xfc\x84\x80\x80\x80\x80")]))
    out.append(("last sequence of each length",
                [(True, b"\x7f"), (True, b"\xdf\xbf"), (True, b"\xef\xbf\xbf"),
                 (True, b"\xf4\x8f\xbf\xbf")]))
    out.append(("last 4/5/6-byte sequence (past U+10FFFF)",
                [(False, b"\xf7\xbf\xbf\xbf"), (False, b"\xfb\xbf\xbf\xbf\xbf"),
                 (False, b"\xfd\xbf\xbf\xbf\xbf\xbf")]))
    out.append(("other boundaries",
                [(True, b"\xed\x9f\xbf"), (True, b"\xee\x80\x80"), (True, b"\xef\xbf\xbd"),
                 (True, b"\xf4\x8f\xbf\xbf"), (False, b"\xf4\x90\x80\x80")]))
    out.append(("unexpected continuation bytes",
                [(False, b"\x80"), (False, b"\xbf"), (False, b"\x80\xbf"),
                 (False, b"\x80\xbf\x80"), (False, b"\x80\xbf\x80\xbf"),
                 (False, b"\x80\xbf\x80\xbf\x80"), (False, b"\x80\xbf\x80\xbf\x80\xbf"),
                 (False, bytes(range(0x80, 0xbf)))]))
    out.append(("lonely start bytes",
                [(False, b"".join(bytes([i, 0x20]) for i in range(a, b)))
                 for a, b in ((0xc0, 0xdf), (0xe0, 0xef), (0xf0, 0xf7), (0xf8, 0xfb),
                              (0xfc, 0xfd))]))
    k = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80", b"\xfc\x80\x80\x80\x80",
         b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf", b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    out.append(("last continuation byte missing", [(False, x) for x in k]))
    out.append(("concatenated incomplete sequences", [(False, b"".join(k))]))
    out.append(("impossible bytes",
                [(False, b"\xfe"), (False, b"\xff"), (False, b"\xfe\xfe\xff\xff")]))
    out.append(("overlong '/'",
                [(False, b"\xc0\xaf"), (False, b"\xe0\x80\xaf"), (False, b"\xf0\x80\x80\xaf"),
                 (False, b"\xf8\x80\x80\x80\xaf"), (False, b"\xfc\x80\x80\x80\x80\xaf")]))
    out.append(("maximum overlong sequences",
                [(False, b"\xc1\xbf"), (False, b"\xe0\x9f\xbf"), (False, b"\xf0\x8f\xbf\xbf"),
                 (False, b"\xf8\x87\xbf\xbf\xbf"), (False, b"\xfc\x83\xbf\xbf\xbf\xbf")]))
    out.append(("overlong NUL",
                [(False, b"\xc0\x80"), (False, b"\xe0\x80\x80"), (False, b"\xf0\x80\x80\x80"),
                 (False, b"\xf8\x80\x80\x80\x80"), (False, b"\xfc\x80\x80\x80\x80\x80")]))
    out.append(("single UTF-16 surrogates",
                [(False, x) for x in (b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80",
                                      b"\xed\xaf\xbf", b"\xed\xb0\x80", b"\xed\xbe\x80",
                                      b"\xed\xbf\xbf")]))
    hi = (b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf")
    out.append(("paired UTF-16 surrogates",
                [(False, h + lo) for h in hi for lo in (b"\xed\xb0\x80", b"\xed\xbf\xbf")]))
    nonchars = [b"\xef\xbf\xbe", b"\xef\xbf\xbf"]
    for z1 in (0xf0, 0xf1, 0xf2, 0xf3, 0xf4):
        for z2 in (0x8f, 0x9f, 0xaf, 0xbf):
            if z1 == 0xf4 and z2 != 0x8f:
                continue  # past U+10FFFF
            for z3 in (0xbe, 0xbf):
                zz = bytes([z1, z2, 0xbf, z3])
                if zz not in (b"\xf0\x8f\xbf\xbe", b"\xf0\x8f\xbf\xbf"):  # overlong
                    nonchars.append(zz)
    out.append(("non-characters (valid UTF-8)", [(True, x) for x in nonchars]))
    out.append(("Unicode specials",
                [(True, bytes([0xef, 0xbf, b])) for b in range(0xb9, 0xc0)]))
    return out


def one_frame_seq(valid: bool, seq: bytes):
    def f(p: Peer) -> None:
        p.send_frame(OP_TEXT, seq)
        if valid:
            p.alive()
            p.clean_close()
        else:
            p.closed(1007)
    return f


def bytewise_valid(seq: bytes):
    def f(p: Peer) -> None:
        data = b"".join(frame(OP_TEXT if i == 0 else OP_CONT, seq[i:i + 1],
                              fin=i == len(seq) - 1) for i in range(len(seq)))
        p.send(data)
        p.alive()
        p.clean_close()
    return f


for gi, (title, seqs) in enumerate(utf8_sequences(), 5):
    for si, (valid, seq) in enumerate(seqs, 1):
        # the table agrees with table 3-7 and with Python's own decoder
        assert (fail_pos(seq) < 0) == valid, (gi, si, seq)
        assert (fail_pos(seq) < 0) == (seq.decode("utf-8", "replace").encode() == seq), seq
        show = seq.hex() if len(seq) <= 12 else seq[:10].hex() + f"..({len(seq)} B)"
        want = "accepted" if valid else "1007"
        peer_case(f"6.{gi}.{si}", f"{title}: {show} in one frame -> {want}")(
            one_frame_seq(valid, seq))
        peer_case(f"6.{gi}.{si}/bytes", f"{title}: {show}, one fragment per byte -> "
                  f"{want}{'' if valid else ' at byte %d' % fail_pos(seq)}")(
            bytewise_valid(seq) if valid else bytewise_invalid(seq))

# ---------------------------------------------------------------------------
# 7: closing
# ---------------------------------------------------------------------------


@peer_case("7.1.1", "text (hb), then close 1000 -> 1000 echoed, server's FIN")
def c7_1_1(p: Peer) -> None:
    p.send_frame(OP_TEXT, b"ping")
    p.heartbeat()
    p.clean_close()


@peer_case("7.1.2", "two close frames -> one close back")
def c7_1_2(p: Peer) -> None:
    p.send(frame(OP_CLOSE, struct.pack("!H", 1000)) + frame(OP_CLOSE, struct.pack("!H", 1000)))
    p.closed(1000)  # fails on a second close frame


@peer_case("7.1.3", "close, then ping -> close, no pong")
def c7_1_3(p: Peer) -> None:
    p.send(frame(OP_CLOSE, struct.pack("!H", 1000)) + frame(OP_PING, b"after close"))
    p.closed(1000)
    need(p.count("pong") == 0, "no pong after the close")


@peer_case("7.1.4", "close, then text -> close, text not answered")
def c7_1_4(p: Peer) -> None:
    p.send(frame(OP_CLOSE, struct.pack("!H", 1000)) + frame(OP_TEXT, b"ping"))
    p.closed(1000)
    need(p.count("text", b"heartbeat") == 0, "nothing answered after the close")


@peer_case("7.1.5", "text fragment, close, continuation -> close, no hb")
def c7_1_5(p: Peer) -> None:
    p.send(frame(OP_TEXT, b"pi", fin=False) + frame(OP_CLOSE, struct.pack("!H", 1000)) +
           frame(OP_CONT, b"ng"))
    p.closed(1000)
    need(p.count("text", b"heartbeat") == 0, "nothing answered after the close")


@peer_case("7.1.6", "60 KiB text, close, ping -> hb, close, no pong")
def c7_1_6(p: Peer) -> None:
    p.send(frame(OP_TEXT, padded_ping(60 * 1024)) + frame(OP_CLOSE, struct.pack("!H", 1000)) +
           frame(OP_PING, b"after close"))
    before = p.closed(1000)
    need(any(e[0] == "text" and b"heartbeat" in e[1] for e in before), "hb before the close")
    need(p.count("pong") == 0, "no pong after the close")


@peer_case("7.3.1", "close with no payload -> close (no code, or 1000)")
def c7_3_1(p: Peer) -> None:
    p.send_frame(OP_CLOSE)
    p.closed((None, 1000))


@peer_case("7.3.2", "close with a 1-byte payload -> 1002")
def c7_3_2(p: Peer) -> None:
    p.send_frame(OP_CLOSE, b"\x03")
    p.closed(1002)


for cid, reason, what in (("7.3.3", b"", "no reason"), ("7.3.4", b"Hello World!", "a reason"),
                          ("7.3.5", b"*" * 123, "a 123-byte reason")):
    def f(p: Peer, reason=reason) -> None:
        p.send_frame(OP_CLOSE, struct.pack("!H", 1000) + reason)
        p.closed(1000)
    peer_case(cid, f"close 1000 with {what} -> 1000")(f)


@peer_case("7.3.6", "close with a 124-byte reason (payload 126) -> 1002")
def c7_3_6(p: Peer) -> None:
    p.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"*" * 124)
    p.closed(1002)


@peer_case("7.5.1", "close reason not UTF-8 -> 1007")
def c7_5_1(p: Peer) -> None:
    p.send_frame(OP_CLOSE, struct.pack("!H", 1000) + BAD_KOSME)
    p.closed(1007)


def close_code(code: int, want):
    def f(p: Peer) -> None:
        p.send_frame(OP_CLOSE, struct.pack("!H", code))
        p.closed(want)
    return f


for i, code in enumerate((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999,
                          4000, 4999), 1):
    peer_case(f"7.7.{i}", f"close with valid code {code} -> echoed")(
        close_code(code, (code, 1000)))
for code in (1012, 1013, 1014):
    peer_case(f"7.7.x-iana", f"close with registered code {code} -> echoed")(
        close_code(code, (code, 1000)))
for i, code in enumerate((0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999), 1):
    peer_case(f"7.9.{i}", f"close with invalid code {code} -> 1002")(close_code(code, 1002))
peer_case("7.9.x-1015", "close with code 1015 (never sent, RFC 6455 7.4.1) -> 1002")(
    close_code(1015, 1002))
peer_case("7.13.1", "close with code 5000 -> 1002")(close_code(5000, 1002))
peer_case("7.13.2", "close with code 65535 -> 1002")(close_code(65535, 1002))

# ---------------------------------------------------------------------------
# 9: limits (katomon's: max_message_bytes, flood buckets)
# ---------------------------------------------------------------------------


def big_cases(grp: str, op: int, kind: str) -> None:
    def at_limit(p: Peer) -> None:
        p.send_frame(op, padded_ping(MAX))
        p.heartbeat()
        p.clean_close()
    peer_case(f"{grp}.1", f"{kind} of max_message_bytes (64 KiB) -> hb")(at_limit)

    def over(p: Peer) -> None:
        p.send_frame(op, padded_ping(MAX + 1))
        p.closed(1009)
        need(p.count("text", b"heartbeat") == 0, "not processed")
    peer_case(f"{grp}.2", f"{kind} of 64 KiB + 1 byte -> 1009")(over)
    for i, size in enumerate((256 << 10, 1 << 20, 4 << 20, 16 << 20), 3):
        def announced(p: Peer, size=size) -> None:
            data = frame(op, padded_ping(4096), length=size)
            p.send(data)  # the header says `size`; only 4 KiB follow
            p.closed(1009, "1009 from the header, not waiting for the payload")
        peer_case(f"{grp}.{i}", f"{kind} of {size >> 10} KiB announced -> 1009 at once")(
            announced)


big_cases("9.1", OP_TEXT, "text")
big_cases("9.2", OP_BIN, "binary")


def frag_cases(grp: str, op: int, kind: str) -> None:
    for i, fs in enumerate((64, 256, 1024, 4096, 16384, 65536), 1):
        def f(p: Peer, fs=fs) -> None:
            pieces = chops(padded_ping(MAX), fs)
            p.send(b"".join(frame(op if j == 0 else OP_CONT, x, fin=j == len(pieces) - 1)
                            for j, x in enumerate(pieces)))
            p.heartbeat()
            p.clean_close()
        peer_case(f"{grp}.{i}", f"64 KiB {kind} in fragments of {fs} bytes -> hb")(f)

    def past(p: Peer) -> None:
        pieces = chops(padded_ping(MAX + 64), 4096)
        p.send(b"".join(frame(op if j == 0 else OP_CONT, x, fin=j == len(pieces) - 1)
                        for j, x in enumerate(pieces)))
        p.closed(1009)
    peer_case(f"{grp}.x-past", f"{kind} fragments adding up past 64 KiB -> 1009")(past)


frag_cases("9.3", OP_TEXT, "text")
frag_cases("9.4", OP_BIN, "binary")


def chop_cases(grp: str, op: int, kind: str) -> None:
    for i, cs in enumerate((64, 128, 256, 512, 1024, 2048), 1):
        def f(p: Peer, cs=cs) -> None:
            p.send(frame(op, padded_ping(MAX)), chop=cs)
            p.heartbeat()
            p.clean_close()
        peer_case(f"{grp}.{i}", f"64 KiB {kind} written in chops of {cs} bytes -> hb")(f)


chop_cases("9.5", OP_TEXT, "text")
chop_cases("9.6", OP_BIN, "binary")

for cid, op, kind in (("9.7", OP_TEXT, "text"), ("9.8", OP_BIN, "binary")):
    def f(p: Peer, op=op) -> None:
        p.send(b"".join(frame(op, padded_ping(4 + i % 60)) for i in range(90)))
        for i in range(90):
            p.heartbeat(f"heartbeat {i + 1} of 90")
        p.clean_close()
    peer_case(cid, f"90 small {kind} requests at once -> 90 hb (within the flood limit)")(f)


@peer_case("9.x-frames", "3,000 small frames at once (unsolicited pongs) -> still open")
def c9_frames(p: Peer) -> None:
    p.send(b"".join(frame(OP_PONG, b"%d" % i) for i in range(3000)))
    p.alive()
    p.clean_close()


@peer_case("9.x-flood", "50,000 frames at once -> 1008 (flood limit: 4,000 at once)")
def c9_flood(p: Peer) -> None:
    # 50,000: even a daemon taking 20 s over them (2,000/s refill) must trip
    p.send(b"".join(frame(OP_PONG, b"") for _ in range(50000)))
    p.closed(1008)

# ---------------------------------------------------------------------------
# 12/13: permessage-deflate (not negotiated), RFC 5.1: masking
# ---------------------------------------------------------------------------


def deflate_case(port: int):
    p = Peer(port, "Sec-WebSocket-Extensions: permessage-deflate; "
                   "client_max_window_bits\r\n")
    deflate_case.p = p
    need("sec-websocket-extensions" not in p.headers,
         f"extension declined: {p.headers.get('sec-websocket-extensions')}")
    p.send_frame(OP_TEXT, b"ping")
    p.heartbeat("plain frames work")
    co = zlib.compressobj(wbits=-15)
    body = co.compress(b"ping") + co.flush(zlib.Z_SYNC_FLUSH)
    p.send_frame(OP_TEXT, body[:-4], rsv=4)  # RSV1: "compressed"
    p.closed(1002)
    return p


CASES.append(("12.x/13.x", "permessage-deflate offered -> declined (no "
              "Sec-WebSocket-Extensions); a frame with RSV1 then -> 1002", deflate_case))


@peer_case("mask.1", "RFC 6455 5.1: unmasked text frame -> 1002")
def cmask1(p: Peer) -> None:
    p.send_frame(OP_TEXT, b"ping", masked=False)
    p.closed(1002)
    need(p.count("text", b"heartbeat") == 0, "not processed")


@peer_case("mask.2", "RFC 6455 5.1: unmasked ping -> 1002, no pong")
def cmask2(p: Peer) -> None:
    p.send_frame(OP_PING, b"hello", masked=False)
    p.closed(1002)
    need(p.count("pong") == 0, "no pong")


@peer_case("mask.3", "RFC 6455 5.1: unmasked close -> 1002")
def cmask3(p: Peer) -> None:
    p.send_frame(OP_CLOSE, struct.pack("!H", 1000), masked=False)
    p.closed(1002)


@peer_case("mask.4", "RFC 6455 5.1: masked start, unmasked continuation -> 1002")
def cmask4(p: Peer) -> None:
    p.send(frame(OP_TEXT, b"pi", fin=False) + frame(OP_CONT, b"ng", masked=False))
    p.closed(1002)
    need(p.count("text", b"heartbeat") == 0, "not processed")


# ---------------------------------------------------------------------------

def main() -> int:
    state = os.path.join(W, "state")
    os.makedirs(state)
    conf = base_conf(state) + f"""
[websocket]
max_message_bytes = {MAX}
"""
    k = Katomon(W, "k", conf)
    if not C.check(k.start(), "katomon starts", k.text()[-3000:]):
        return C.done()
    only = os.environ.get("RFC6455_CASES")  # e.g. "6.4" : run those only
    C.note(f"{len(CASES)} cases (Autobahn numbering; see this file's header)")
    C.note("10.1.1 (auto-fragmentation of echoed messages): N/A, katomon echoes "
           "nothing; every frame it sent here was checked unfragmented")
    try:
        for cid, title, fn in CASES:
            if only and not any(cid == o or cid.startswith(o + ".") or
                                cid.startswith(o + "/") or cid.startswith(o + "-")
                                for o in only.split(",")):
                continue
            if not k.alive():
                C.fail(f"{cid} {title}", "katomon is gone")
                continue
            run_case(k.port, cid, title, fn)
    finally:
        ok, why = k.stop()
        C.check(ok, "katomon stops cleanly (no sanitizer report)", why)
    rmtree(W)
    return C.done()


if __name__ == "__main__":
    sys.exit(main())
