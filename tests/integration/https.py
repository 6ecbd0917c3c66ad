#!/usr/bin/env python3
"""https.py - outbound HTTPS and WSS through libcurl (issue 13).

A throwaway CA and a server certificate for 127.0.0.1 (IP SAN) are made
with the openssl CLI in a temporary directory. TLS relays (Python's ssl
module, one thread per connection, loopback only) terminate TLS with that
certificate in front of the KATO simulator (tests/sim/kato_sim.py: /metrics,
/health, /sessions/count and the /ws/events WebSocket) and of a webhook
receiver (kmtest.Receiver). The real katomon binary then runs three times:

  1  ca_file = the throwaway CA: kato_metrics polls https:// (metrics
     flow, _source.healthy true), session_events follows wss://.../ws/events
     (session ids arrive), alert_webhook POSTs an alert over https://
  2  no ca_file (the system store does not know the CA): every one of them
     is refused with a clear log line ("TLS: certificate verify failed"),
     the metrics carry _source.healthy false with that error, no POST lands
  3  tls_verify = false: a warning at start naming the plugin and the URL,
     and everything flows again
  4  a missing ca_file: the plugin says so at start and is disabled

Each run of katomon ends with SIGTERM: exit status 0, no sanitizer report.
One "ok - ..." / "not ok - ..." line per check; exit 0 pass, 1 fail, 77
skip (no openssl CLI).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import (Checks, Katomon, Receiver, Sim, WS, env, rmtree, tmpdir,  # noqa: E402
                    wait_until)

C = Checks()
W = tmpdir("km-https.")


# ---------------------------------------------------------------------------
# a throwaway CA and a certificate for 127.0.0.1
# ---------------------------------------------------------------------------

def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], cwd=W, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_pki() -> tuple[str, str, str]:
    """Returns (ca.pem, server.pem, server.key) in W."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=katomon https.py throwaway CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    with open(os.path.join(W, "server.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    return tuple(os.path.join(W, n) for n in ("ca.pem", "server.pem", "server.key"))


# ---------------------------------------------------------------------------
# TLS relay: https/wss on one loopback port, plain HTTP behind it
# ---------------------------------------------------------------------------

class TLSRelay:
    """Accepts TLS on an ephemeral 127.0.0.1 port and relays each connection,
    decrypted, to 127.0.0.1:upstream. One thread per connection; the TLS
    socket is only ever used by that thread (non-blocking, select)."""

    def __init__(self, upstream: int, cert: str, key: str) -> None:
        self.upstream = upstream
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.lis = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lis.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lis.bind(("127.0.0.1", 0))
        self.lis.listen(64)
        self.port = self.lis.getsockname()[1]
        self.handshakes = 0         # completed TLS handshakes
        self.refused = 0            # handshakes the client broke off
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.lis.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            self.refused += 1      # e.g. the client does not trust our certificate
            raw.close()
            return
        self.handshakes += 1
        try:
            up = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
        except OSError:
            tls.close()
            return
        tls.setblocking(False)
        up.setblocking(False)
        try:
            self._relay(tls, up)
        finally:
            for s in (tls, up):
                try:
                    s.close()
                except OSError:
                    pass

    @staticmethod
    def _send_all(s: socket.socket, data: bytes) -> None:
        while data:
            try:
                n = s.send(data)
                data = data[n:]
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                select.select([], [s], [], 1)

    def _relay(self, tls: ssl.SSLSocket, up: socket.socket) -> None:
        while not self.stopping:
            ready = [tls] if tls.pending() else select.select([tls, up], [], [], 0.5)[0]
            for s in ready:
                other = up if s is tls else tls
                try:
                    data = s.recv(65536)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    continue
                except (OSError, ssl.SSLError):
                    return
                if not data:
                    return
                try:
                    self._send_all(other, data)
                except (OSError, ssl.SSLError):
                    return

    def stop(self) -> None:
        self.stopping = True
        self.lis.close()


# ---------------------------------------------------------------------------
# katomon
# ---------------------------------------------------------------------------

def config(kato_url: str, hook_url: str, tls: str) -> str:
    """kato_metrics, session_events and alert_webhook at the relays, each with
    the `tls` lines; one alert rule that fires at once, whatever KATO does
    (host_stats: the machine has been up for more than a second)."""
    return f"""
[core]
plugin_dir = {env('PLUGIN_BUILD_DIR')}
state_dir = {W}/state
log_level = info

[http]
bind = 127.0.0.1
port = 0
web_root = {env('top_srcdir')}/web

[plugin kato_metrics]
url = {kato_url}
interval = 0.5
timeout = 2
{tls}

[plugin session_events]
url = {kato_url}
retry = 1
{tls}

[plugin host_stats]
interval = 0.5

[plugin alert_manager]
sync_interval = 0.5

[plugin alert_webhook]
url = {hook_url}/hooks/katomon
timeout = 2
retries = 0
{tls}

[alert https_hook]
topic = host
path = uptime_seconds
warning = 1
cooldown = 600
message = Up for {{value}} s: an alert for the webhook over https
"""


def stop_clean(k: Katomon, what: str) -> None:
    good, detail = k.stop()
    C.check(good, f"{what}: SIGTERM -> exit status 0, no sanitizer report", detail)


def metrics(k: Katomon) -> dict:
    st, body = k.get("/api/v1/system/metrics")
    return body if st == 200 and isinstance(body, dict) else {}


def run(sim: Sim, hook: Receiver, kato: TLSRelay, rcv: TLSRelay, ca: str,
        daemons: list) -> None:
    def katomon(name: str, tls: str) -> Katomon:
        d = Katomon(W, name, config(kato.url, rcv.url, tls))
        daemons.append(d)
        return d

    sim.set(error_rate=0.2)

    # ---- 1: ca_file -----------------------------------------------------------
    k = katomon("with-ca", f"ca_file = {ca}")
    if not C.check(k.start(), "ca_file: katomon starts", k.text()[-3000:]):
        return
    m = wait_until(lambda: metrics(k).get("_source", {}).get("healthy") is True and metrics(k), 8)
    C.check(isinstance(m, dict) and m.get("performance", {}).get("error_rate") == 0.2,
            "ca_file: kato_metrics reaches KATO over https (metrics flow, _source.healthy true)",
            m or k.text()[-2000:])
    C.check(k.wait_log(r"following KATO /ws/events at wss://127\.0\.0\.1:%d/ws/events" % kato.port,
                       8) is not None,
            "ca_file: session_events follows wss://.../ws/events", k.text()[-2000:])
    ws = WS(k.port)
    ws.send({"type": "subscribe", "protocol": "katomon/1", "subscriptions": ["session_events"]})
    ws.next_type("subscription_ack", 3)
    created = sim.create(1)
    e = ws.next_type("session_event", 5)
    C.check(isinstance(e, dict) and e.get("event_type") == "session_created" and
            e.get("data", {}).get("source") == "stream" and
            e.get("data", {}).get("session_id") == created[0],
            "ca_file: a session created in KATO arrives over wss with its id", [e, created])
    ws.close()
    post = wait_until(lambda: [p for p in hook.posts if "over https" in str(p["body"])], 8)
    C.check(bool(post) and post[0]["path"] == "/hooks/katomon" and
            post[0]["type"] == "application/json",
            "ca_file: alert_webhook POSTs the alert over https", hook.posts[:2] or k.text()[-2000:])
    C.check("tls_verify = false" not in k.text(), "ca_file: no tls_verify warning")
    stop_clean(k, "ca_file")

    # ---- 2: the system store does not know the CA ----------------------------
    refused_before = kato.refused
    hook.posts.clear()
    k = katomon("no-ca", "")
    if not C.check(k.start(), "no ca_file: katomon starts", k.text()[-3000:]):
        return
    m = wait_until(lambda: (metrics(k).get("_source") or {}).get("healthy") is False and
                   metrics(k), 8)
    err = (m or {}).get("_source", {}).get("error") or ""
    C.check(isinstance(m, dict) and "TLS: certificate verify failed" in err and
            "performance" not in m,
            "no ca_file: metrics carry _source.healthy false with the TLS error, no figures",
            m or k.text()[-2000:])
    C.check(k.wait_log(r"metrics: KATO unreachable: GET https://127\.0\.0\.1:\d+/metrics: "
                       r"TLS: certificate verify failed", 5) is not None,
            "no ca_file: kato_metrics logs the refusal clearly", k.text()[-2000:])
    C.check(k.wait_log(r"/ws/events .*TLS: certificate verify failed", 5) is not None,
            "no ca_file: session_events logs the refusal clearly", k.text()[-2000:])
    C.check(k.wait_log(r"giving up on an alert post to https://127\.0\.0\.1:\d+/hooks/katomon "
                       r"after 1 tries: TLS: certificate verify failed", 8) is not None,
            "no ca_file: alert_webhook logs the refusal clearly", k.text()[-2000:])
    C.check(not hook.posts and kato.refused > refused_before,
            "no ca_file: nothing reached the receiver; katomon broke off the handshakes",
            {"posts": hook.posts[:2], "refused": kato.refused - refused_before})
    stop_clean(k, "no ca_file")

    # ---- 3: tls_verify = false ------------------------------------------------
    k = katomon("insecure", "tls_verify = false")
    if not C.check(k.start(), "tls_verify = false: katomon starts", k.text()[-3000:]):
        return
    for plugin, url in (("kato_metrics", kato.url), ("session_events", kato.url),
                        ("alert_webhook", rcv.url + "/hooks/katomon")):
        C.check(re.search(r"warning: plugin %s: tls_verify = false: the certificate of %s is "
                          r"not verified" % (plugin, re.escape(url)), k.text()) is not None,
                f"tls_verify = false: {plugin} warns at start, naming the URL",
                [l for l in k.text().splitlines() if "tls_verify" in l])
    m = wait_until(lambda: metrics(k).get("_source", {}).get("healthy") is True and metrics(k), 8)
    C.check(isinstance(m, dict) and m.get("performance", {}).get("error_rate") == 0.2,
            "tls_verify = false: metrics flow", m or k.text()[-2000:])
    C.check(k.wait_log(r"following KATO /ws/events", 8) is not None,
            "tls_verify = false: session_events follows wss", k.text()[-2000:])
    post = wait_until(lambda: [p for p in hook.posts if "over https" in str(p["body"])], 8)
    C.check(bool(post), "tls_verify = false: the webhook POST arrives", k.text()[-2000:])
    stop_clean(k, "tls_verify = false")

    # ---- 4: a ca_file that is not there ------------------------------------------
    k = katomon("missing-ca", f"ca_file = {W}/nope.pem")
    C.check(k.start(), "missing ca_file: katomon starts (the plugins are disabled)",
            k.text()[-3000:])
    C.check(k.wait_log(r"plugin kato_metrics: ca_file '[^']*nope\.pem' cannot be read", 3)
            is not None, "missing ca_file: kato_metrics says so at start", k.text()[-2000:])
    stop_clean(k, "missing ca_file")


def main() -> int:
    if not shutil.which("openssl"):
        print("SKIP: no openssl CLI (apt-get install openssl)")
        return 77
    sim = Sim(W)
    hook = Receiver()
    relays: list = []
    daemons: list = []
    try:
        ca, cert, key = make_pki()
        C.check(True, "a throwaway CA and a certificate for 127.0.0.1 (openssl CLI)")
        if not C.check(sim.start(), "the KATO simulator starts"):
            return C.done()
        kato = TLSRelay(sim.port, cert, key)
        rcv = TLSRelay(hook.port, cert, key)
        relays += [kato, rcv]
        run(sim, hook, kato, rcv, ca, daemons)
        return C.done()
    finally:
        for d in daemons:  # a run cut short: leave nothing behind
            if d.alive():
                d.kill9()
        for r in relays:
            r.stop()
        sim.stop()
        hook.stop()
        if C.failed == 0:
            rmtree(W)
        else:
            C.note(f"kept {W} for inspection")


if __name__ == "__main__":
    sys.exit(main())
