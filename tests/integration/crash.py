#!/usr/bin/env python3
"""crash.py - kill -9 durability of the alert history and the history file
(issue 17, point 4), in the style of redis's kill -9 tests.

Real sockets, the real katomon binary with this build's alert_manager and
the test plugin tests/plugins/test_flap.so (a value flapping hundreds of
times a second, and a state topic of many series). Fixed seed (CRASH_SEED,
default 17), every wait a deadline-polled condition; the kill moments are
drawn from the seed. CRASH_LONG=1: more kills, more alerts, more series.

A  alert history (plugins/alert_history.c, STATE_DIR/alerts.jsonl).
   Guarantee: a transition is written (one write(), in the kernel's page
   cache) before it is published on system_alerts, so an alert a client
   received survives kill -9 of katomon (a power loss may still take what
   the last `sync_interval` did not fdatasync). Each round: katomon with a
   threshold rule on test_flap's value (warning 50, for 1: a transition on
   every message, hundreds a second), a katomon/1 WebSocket client
   recording every system_alert it receives, SIGKILL after a seeded number
   of alerts, the client reads to EOF, katomon starts again on the same
   state_dir. The order is plugins/alert_manager.c's publish_batch (the
   records appended, then the batch published) and the bus's (a message
   published from a delivery goes out after that callback returns), so the
   record's write() always precedes the frame's; what the test catches is
   a write that lands after the frame (held back or batched: holding lines
   back until 200 KB makes round A1 miss all 368 alerts of A0).
   Then: every line of alerts.jsonl parses (a torn last line only
   while katomon appends); every alert the client received is a record of
   the file, in the order received, holding what was received (a
   resolution's level "info" of the compatible form is its state);
   GET /api/v1/alerts answers the last round's in the same order (newest
   first). Once, after a kill, half a record is appended without its
   newline (a torn write: power loss, a full disk) - the restart drops it
   and the next record starts on a line of its own (not glued onto the
   partial one, which would lose it at the next start).
B  history file (core/history_file.c, STATE_DIR/history.db, written by a
   forked child to history.db.tmp, fsync, rename).
   Guarantee: kill -9 keeps everything the last completed flush wrote;
   samples taken since are lost by design, at most `flush_interval` plus
   the time a write takes (man katomon.conf). Each round: the probe series
   are read over REST, two completed flushes are seen after that read (the
   file replaced twice: the second writer forked after the first finished,
   so after the read), then katomon is killed at a seeded moment - during
   a flush (its writer child stopped mid-write with SIGSTOP: once let go,
   it must end without replacing history.db), or its writer child is
   killed mid-write first
   and katomon later, or both at once (as systemd kills a unit's control
   group), or at a random time. After each restart: no
   history.db.corrupt-* and no corruption logged, and every point read
   before the kill is answered again, equal.
After the last round of each part katomon stops on SIGTERM with exit
status 0 and no sanitizer report. One "ok - ..." / "not ok - ..." line per
check; exit 0 pass, 1 fail.
"""

from __future__ import annotations

import glob
import json
import os
import random
import signal
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import WS, Checks, Katomon, base_conf, env, rmtree, tmpdir, wait_until  # noqa: E402

C = Checks()
W = tmpdir("km-crash.")
LONG = os.environ.get("CRASH_LONG", "") not in ("", "0")
SEED = int(os.environ.get("CRASH_SEED", "17"))
RNG = random.Random(SEED)

# part A: rounds (each ends in a kill -9), alerts received before the kill
A_ROUNDS = 12 if LONG else 4
A_MIN, A_MAX = (200, 3000) if LONG else (100, 600)
A_TORN_ROUND = 1  # after this round's kill, half a record is appended
FLAP_INTERVAL = 0.004  # 2 messages per tick: 500 transitions a second (long: 1,000)
FLAP_PER_TICK = 4 if LONG else 2
# part B: kills, probe and bulk series, flush interval
B_ROUNDS = 10 if LONG else 4
B_PROBE, B_BULK = (256, 12000) if LONG else (64, 3000)
B_FLUSH = 0.5


STARTED: list = []  # every Katomon made, stopped at the end whatever happens


def katomon(name: str, conf: str) -> Katomon:
    k = Katomon(W, name, conf)
    STARTED.append(k)
    return k


def test_flap() -> str:
    return os.path.join(env("top_builddir"), "tests", "plugins", ".libs", "test_flap.so")


def sigterm_ok(k: Katomon, name: str) -> None:
    ok, why = k.stop()
    C.check(ok, f"{name}: katomon stops on SIGTERM, exit 0, no sanitizer report", why)


# ---------------------------------------------------------------------------
# A: the alert history
# ---------------------------------------------------------------------------

A_STATE = os.path.join(W, "a-state")
A_FILE = os.path.join(A_STATE, "alerts.jsonl")


def a_conf() -> str:
    return base_conf(A_STATE) + f"""
[plugin test_flap]
file = {test_flap()}
interval = {FLAP_INTERVAL}
per_tick = {FLAP_PER_TICK}

[plugin alert_manager]
max_entries = 1000000
max_bytes = 1073741824
sync_interval = 5

[alert flap]
topic = flap
path = v
warning = 50
for = 1
cooldown = 3600
message = flap {{value}}
"""


def read_history_file(final: bool) -> tuple[list, list, str]:
    """(records in file order, bad lines, tail): every complete line must
    parse; the last one may be torn only while katomon runs (final False)."""
    with open(A_FILE, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    records, bad = [], []
    for i, line in enumerate(lines):
        try:
            obj = json.loads(line)
        except ValueError:
            bad.append((i + 1, line[:160]))
            continue
        if not isinstance(obj, dict):
            bad.append((i + 1, line[:160]))
        elif "op" not in obj and "id" in obj:
            records.append(obj)
    if final and tail:
        bad.append(("tail", tail[:160]))
    return records, bad, tail.decode("utf-8", "replace")


def alerts_of(ws: WS) -> list:
    """Every alert item of every system_alert the client received, in order."""
    out = []
    for _, m in list(ws.all):
        if isinstance(m, dict) and m.get("type") == "system_alert":
            out.extend(a for a in m.get("alerts", []) if isinstance(a, dict))
    return out


def same_alert(a: dict, rec: dict) -> bool:
    """The record holds what the client received (it adds timestamp, read...).
    The compatible form sends a resolution as level "info" without "state"
    (core/ws_proto.c, km_compat_alert)."""
    if not all(k in a and k in rec for k in ("id", "level", "type", "value", "transition")):
        return False
    for k, v in a.items():
        if k == "level" and v == "info":
            if rec.get("state") != "resolved":
                return False
        elif rec.get(k) != v:
            return False
    return True


def check_received(name: str, received: list, final: bool) -> int:
    """Every alert received (all rounds so far) is a record of the file, in
    order, equal. Returns the number checked."""
    records, bad, tail = read_history_file(final)
    C.check(not bad, f"{name}: every line of alerts.jsonl parses ({len(records)} records)",
            bad[:5])
    pos = {r["id"]: i for i, r in enumerate(records)}
    missing = [a["id"] for a in received if a.get("id") not in pos]
    C.check(not missing, f"{name}: all {len(received)} alerts the client received are in "
            "the file", {"missing": missing[:10], "count": len(missing)})
    idx = [pos[a["id"]] for a in received if a.get("id") in pos]
    disorder = [(received[i]["id"], received[i + 1]["id"]) for i in range(len(idx) - 1)
                if idx[i] >= idx[i + 1]]
    C.check(not disorder, f"{name}: ... in the order the client received them",
            disorder[:5])
    differ = [(a, records[pos[a["id"]]]) for a in received
              if a.get("id") in pos and not same_alert(a, records[pos[a["id"]]])]
    C.check(not differ, f"{name}: ... each the same as received", differ[:3])
    return len(received)


def check_rest(name: str, k: Katomon, last_round: list) -> None:
    """GET /api/v1/alerts (newest first) answers the last round's alerts in order."""
    st, body = k.get("/api/v1/alerts?type=flap&limit=10000")
    got = [a.get("id") for a in reversed(body.get("alerts", []))] if st == 200 and \
        isinstance(body, dict) else []
    pos = {i: n for n, i in enumerate(got)}
    want = [a["id"] for a in last_round]
    missing = [i for i in want if i not in pos]
    order = [pos[i] for i in want if i in pos]
    C.check(st == 200 and not missing and order == sorted(order),
            f"{name}: GET /api/v1/alerts answers the {len(want)} alerts of the last round, "
            "in order", {"status": st, "missing": missing[:10]})


def tear_tail() -> str:
    """Appends the first half of the file's last record, without newline (a
    torn write). Returns the id it carried."""
    records, _, _ = read_history_file(True)
    last = dict(records[-1]) if records else {"type": "flap", "level": "warning"}
    last["id"] = "a999999999"  # not one the client received
    text = json.dumps(last, separators=(",", ":")).encode()
    with open(A_FILE, "ab") as f:
        f.write(text[: len(text) // 2])
    return last["id"]


def part_a() -> dict:
    received: list = []  # every alert any client received, in order
    rounds = []
    checked = 0
    rate = []
    torn_at = None
    k = None
    for r in range(A_ROUNDS + 1):
        k = katomon(f"a{r}", a_conf())
        if not C.check(k.start(), f"A{r}: katomon starts" + (" again after kill -9" if r else ""),
                       k.text()[-3000:]):
            return {}
        if r > 0:
            checked = check_received(f"A{r}", received, final=False)
            check_rest(f"A{r}", k, rounds[-1])
        if torn_at is not None:
            C.check("torn last line" in k.text(),
                    f"A{r}: the torn last line is logged as cut", k.text()[-2000:])
            # the next records must start on a line of their own
            ok = wait_until(lambda: len(read_history_file(False)[0]) > checked + 20, 20)
            records, bad, _ = read_history_file(False)
            C.check(bool(ok) and not bad and all(x["id"] != torn_at for x in records),
                    f"A{r}: records appended after the torn line parse, the torn one is "
                    "dropped", bad[:3])
            torn_at = None
        if r == A_ROUNDS:
            break
        ws = WS(k.port)
        ws.send({"type": "subscribe", "protocol": "katomon/1",
                 "subscriptions": ["system_alerts"]})
        C.check(ws.next_type("subscription_ack", 10) is not None, f"A{r}: subscribed")
        target = RNG.randint(A_MIN, A_MAX)
        t0 = time.monotonic()
        n0 = len(alerts_of(ws))
        reached = wait_until(lambda: len(alerts_of(ws)) >= target, 60, 0.002)
        dt = time.monotonic() - t0
        n_at_kill = len(alerts_of(ws))
        k.kill9()
        C.check(bool(reached), f"A{r}: {target} alerts received before the kill")
        C.check(bool(wait_until(lambda: ws.closed, 10, 0.01)),
                f"A{r}: the client reads to EOF after the kill")
        got = alerts_of(ws)
        ws.close()
        if dt > 0:
            rate.append((n_at_kill - n0) / dt)
        received.extend(got)
        rounds.append(got)
        C.note(f"A{r}: killed after {n_at_kill} alerts at the client ({len(got)} read to "
               f"EOF), {rate[-1] if rate else 0:.0f} alerts/s")
        if r == A_TORN_ROUND:
            torn_at = tear_tail()
    checked = check_received("A-end", received, final=False)
    sigterm_ok(k, "A-end")
    _, bad, _ = read_history_file(True)
    C.check(not bad, "A-end: after SIGTERM every line of alerts.jsonl is whole", bad[:3])
    rate.sort()
    return {"kills": A_ROUNDS, "checked": checked,
            "rate": rate[len(rate) // 2] if rate else 0.0}


# ---------------------------------------------------------------------------
# B: the history file
# ---------------------------------------------------------------------------

B_STATE = os.path.join(W, "b-state")
B_DB = os.path.join(B_STATE, "history.db")
PROBE = "katomon_flap_wide_probe_v"


def b_conf() -> str:
    return base_conf(B_STATE) + f"""
[history]
tiers = 1s:10m 5s:1h
flush_interval = {B_FLUSH}
max_series = {B_PROBE + B_BULK + 200}

[plugin test_flap]
file = {test_flap()}
interval = 0
wide_interval = 0.5
probe = {B_PROBE}
bulk = {B_BULK}
"""


def probe_points(k: Katomon) -> dict | None:
    """{labels text: [[t, v], ...]} of every probe series, or None."""
    q = "series=" + urllib.parse.quote(PROBE) + "&since=10m"
    st, body = k.get("/api/v1/history?" + q, timeout=20)
    if st != 200 or not isinstance(body, dict):
        return None
    return {json.dumps(s.get("labels"), sort_keys=True): s.get("points") or []
            for s in body.get("series", [])}


def file_sig() -> tuple | None:
    try:
        st = os.stat(B_DB)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def wait_flushes(n: int, timeout: float) -> bool:
    """Waits until history.db was replaced n times from now."""
    seen, last = 0, file_sig()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        sig = file_sig()
        if sig is not None and sig != last:
            seen, last = seen + 1, sig
            if seen >= n:
                return True
        time.sleep(0.005)
    return False


def children(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def proc_state(pid: int) -> str:
    """R, S, D, T (stopped), Z (exited, not reaped); "" when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def catch_writer(k: Katomon, timeout: float) -> int | None:
    """A writer child stopped (SIGSTOP) mid-flush, at a seeded moment of it:
    its pid, or None. One that had already finished is let go (the next)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        kids = children(k.proc.pid)
        if not kids:
            time.sleep(0.001)
            continue
        moment = time.monotonic() + RNG.uniform(0, 0.01)  # a seeded moment, not a wait
        while time.monotonic() < moment:
            pass
        pid = kids[0]
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        wait_until(lambda: proc_state(pid) in ("T", "t", "Z", ""), 5, 0.001)
        if proc_state(pid) in ("T", "t"):
            return pid
        while children(k.proc.pid) == kids and time.monotonic() < end:
            time.sleep(0.001)  # finished before the stop: wait for the next
    return None


def flush_took(k: Katomon, timeout: float) -> float | None:
    """Seconds from the writer child appearing to history.db replaced (one
    flush seen from outside), or None."""
    end = time.monotonic() + timeout
    pid = k.proc.pid
    while children(pid) and time.monotonic() < end:  # one under way: the next
        time.sleep(0.001)
    while not children(pid) and time.monotonic() < end:
        time.sleep(0.001)
    t0, sig = time.monotonic(), file_sig()
    while file_sig() == sig and time.monotonic() < end:
        time.sleep(0.001)
    return time.monotonic() - t0 if file_sig() != sig else None


def part_b() -> dict:
    acked: dict = {}  # points read before the last kill, all durable
    kills = {"mid-flush": 0, "mid-flush, with its writer": 0, "writer, then katomon": 0,
             "random": 0}
    modes = list(kills)
    RNG.shuffle(modes)  # the short form tries each once
    points_checked = 0
    flush_ms = []
    aside: set = set()  # history.db.corrupt-* seen so far
    k = None
    for r in range(B_ROUNDS + 1):
        k = katomon(f"b{r}", b_conf())
        if not C.check(k.start(60), f"B{r}: katomon starts" + (" again after kill -9" if r else ""),
                       k.text()[-3000:]):
            return {}
        corrupt = sorted(set(glob.glob(B_DB + ".corrupt-*")) - aside)
        aside.update(corrupt)  # each one fails one round, not every later one
        C.check(not corrupt and "corrupt" not in k.text() and "starting empty" not in
                k.text()[: 100000] or r == 0,
                f"B{r}: the history file loads (no .corrupt-*, no corruption logged)",
                {"aside": corrupt, "log": k.text()[-2000:]})
        if acked:
            now = probe_points(k) or {}
            lost = []
            for key, pts in acked.items():
                have = {p[0]: p[1] for p in now.get(key, [])}
                lost.extend((key, p) for p in pts if have.get(p[0]) != p[1])
                points_checked += len(pts)
            C.check(not lost and len(now) >= len(acked),
                    f"B{r}: every point of {len(acked)} probe series read before the last "
                    "completed flush is answered again, equal "
                    f"({sum(len(p) for p in acked.values())} points)",
                    {"lost": lost[:5], "count": len(lost), "series now": len(now)})
        if r == B_ROUNDS:
            break
        # a read, then two completed flushes: what was read is on disk
        ok = wait_until(lambda: (lambda p: p if p and len(p) >= B_PROBE and
                                 all(len(v) >= 2 for v in p.values()) else None)(
                                     probe_points(k)), 30, 0.1)
        C.check(bool(ok), f"B{r}: {B_PROBE} probe series hold points")
        snap = probe_points(k) or {}
        flushed = wait_flushes(2, 30)
        C.check(flushed, f"B{r}: two flushes complete after the read")
        took = flush_took(k, 30)
        if took is not None:
            flush_ms.append(took * 1000)
        acked = snap
        mode = modes[r] if r < len(modes) else RNG.choice(modes)
        kills[mode] += 1
        if mode == "mid-flush":
            # kill katomon while its writer child is mid-write: the writer
            # must die with it (PR_SET_PDEATHSIG), or it could rename a file
            # over the one the next katomon's writer is writing
            kid = catch_writer(k, 30)
            C.check(kid is not None, f"B{r}: a writer caught mid-flush")
            k.kill9()
            if kid:
                # The orphan must not rename its file over history.db: it is
                # killed with katomon (PR_SET_PDEATHSIG) or, stopped before
                # it asked for that, exits when it sees its parent gone.
                sig = file_sig()
                os.kill(kid, signal.SIGCONT)
                died = wait_until(lambda: proc_state(kid) in ("", "Z"), 10, 0.05)
                C.check(bool(died), f"B{r}: the writer ended with katomon")
                C.check(file_sig() == sig,
                        f"B{r}: the orphaned writer did not replace history.db")
        elif mode == "mid-flush, with its writer":
            # both at once, as systemd kills a unit's control group: the
            # writer's half-written file must not be what the next start reads
            kid = catch_writer(k, 30)
            C.check(kid is not None, f"B{r}: a writer caught mid-flush")
            if kid:
                os.kill(kid, signal.SIGKILL)
            k.kill9()
        elif mode == "writer, then katomon":
            # the writer child dies mid-write first; the next flush must work
            kid = catch_writer(k, 30)
            C.check(kid is not None, f"B{r}: a writer caught mid-flush")
            if kid:
                os.kill(kid, signal.SIGKILL)
                C.check(k.wait_log(r"writer \(pid \d+\) killed by signal 9", 10)
                        is not None, f"B{r}: the killed writer is logged")
            C.check(wait_flushes(1, 30), f"B{r}: the next flush completes after a killed "
                    "writer")
            time.sleep(RNG.uniform(0, B_FLUSH))  # a seeded kill moment, not a wait
            k.kill9()
        else:
            time.sleep(RNG.uniform(0, B_FLUSH))  # a seeded kill moment, not a wait
            k.kill9()
        C.note(f"B{r}: kill -9 ({mode}), {sum(len(p) for p in acked.values())} points "
               f"of {len(acked)} probe series to keep")
    sigterm_ok(k, "B-end")
    flush_ms.sort()
    return {"kills": kills, "points": points_checked,
            "flush_ms": flush_ms[len(flush_ms) // 2] if flush_ms else 0.0}


def main() -> int:
    if not os.path.exists(test_flap()):
        print(f"1..0 # SKIP {test_flap()} not built")
        return 77
    try:
        a = part_a()
        b = part_b()
        C.note(f"A: {a.get('kills')} kills, {a.get('checked')} alerts checked, "
               f"{a.get('rate', 0):.0f} alerts/s (median); B: kills {b.get('kills')}, "
               f"{b.get('points')} point checks, a flush takes "
               f"{b.get('flush_ms', 0):.0f} ms (median; seed {SEED})")
    finally:
        for k in STARTED:  # a failed check may leave one running
            if k.alive():
                k.kill9()
    rc = C.done()
    if rc == 0:
        rmtree(W)
    else:
        print(f"# kept {W}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
