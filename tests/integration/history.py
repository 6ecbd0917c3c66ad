#!/usr/bin/env python3
"""history.py - the history store across restarts, and GET /metrics (issue 14).

Real sockets, the real katomon binary ($top_builddir/katomon) with the
plugins of this build, the KATO simulator on an ephemeral port, katomon on
[http] port = 0, a [history] with short tiers (1s:10m 5s:1h) and a 2 s
flush so the test waits seconds, not minutes. The simulator's CPU figure is
changed every few samples, so the points compared are not all alike. One
"ok - ..." / "not ok - ..." line per check; exit 0 pass, 1 fail.

Covered:
  A  samples accumulate: katomon_kato_cpu_percent and katomon_host_cpu_percent
     hold points at whole seconds, the values are the simulator's; the
     series listing shows them with tiers; the coarse tier holds avg/min/max
  B  SIGTERM + restart: every point from before is answered again, equal
  C  kill -9 + restart: every point older than the last completed flush is
     answered again; what is lost is at most the flush interval
  D  a corrupt history file is logged, set aside as history.db.corrupt-*,
     and katomon starts and records anew
  E  bad requests: 400 with a detail (from after to, step 0 and 1 ns, 10 KiB
     of labels, too many selectors, a bad name), nothing crashes
  F  GET /metrics: text format 0.0.4 with HELP/TYPE, the same values as REST
and after each run of katomon: exit status 0 on SIGTERM and no sanitizer
report on its stderr.
"""

from __future__ import annotations

import glob
import os
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import Checks, Katomon, Sim, base_conf, rmtree, tmpdir, wait_until  # noqa: E402

C = Checks()
W = tmpdir("km-history.")
STATE = os.path.join(W, "state")
DB = os.path.join(STATE, "history.db")
FLUSH = 2.0
CPU = "katomon_kato_cpu_percent"
HOST_CPU = "katomon_host_cpu_percent"


def config(sim: Sim) -> str:
    return base_conf(STATE) + f"""
[history]
tiers = 1s:10m 5s:1h
flush_interval = {FLUSH}

[plugin host_stats]
interval = 1

[plugin kato_metrics]
url = {sim.url}
interval = 0.5
timeout = 1
"""


def history(k: Katomon, query: str) -> tuple[int, object]:
    return k.get("/api/v1/history?" + query)


def points(k: Katomon, series: str, extra: str = "since=10m") -> list:
    """The raw points of one series (selector text), or [] when none."""
    q = "series=" + urllib.parse.quote(series) + "&" + extra
    status, body = history(k, q)
    if status != 200 or not isinstance(body, dict) or not body.get("series"):
        return []
    return body["series"][0].get("points") or []


def wait_points(k: Katomon, series: str, n: int, timeout: float) -> list:
    got = wait_until(lambda: (lambda p: p if len(p) >= n else None)(points(k, series)),
                     timeout, 0.25)
    return got or points(k, series)


def vary_cpu(sim: Sim, k: Katomon, values: list) -> None:
    """Sets the simulator's CPU figure to each value in turn and waits until
    katomon's history holds it, so the stored points differ."""
    for v in values:
        sim.set(cpu_percent=v)
        wait_until(lambda: any(p[1] == v for p in points(k, CPU, "since=1m")), 15, 0.2)


def stop_ok(k: Katomon, name: str) -> None:
    ok, why = k.stop()
    C.check(ok, f"{name}: katomon exits 0 on SIGTERM, no sanitizer report", why)


def metrics_text(k: Katomon) -> tuple[int, str, str]:
    req = urllib.request.Request(k.base + "/metrics")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode("utf-8", "replace")


def part_a(k: Katomon, sim: Sim) -> list:
    vary_cpu(sim, k, [11.5, 22.25, 33.0, 44.75])
    pts = wait_points(k, CPU, 8, 30)
    C.check(len(pts) >= 8, "A: katomon_kato_cpu_percent has history points", pts[-3:])
    C.check(all(isinstance(p, list) and len(p) == 2 for p in pts),
            "A: raw points are [t, value] pairs", pts[:2])
    C.check(all(float(p[0]).is_integer() for p in pts),
            "A: points sit at whole seconds (the 1 s tier, aligned)", pts[:3])
    ts = [p[0] for p in pts]
    C.check(ts == sorted(set(ts)), "A: timestamps strictly increase", ts[:10])
    seen = {p[1] for p in pts}
    C.check({11.5, 22.25, 33.0, 44.75} <= seen,
            "A: the simulator's values are in the history, exactly", sorted(seen))
    host = wait_points(k, HOST_CPU, 3, 20)
    C.check(len(host) >= 3, "A: katomon_host_cpu_percent has points too", host[-2:])
    status, body = k.get("/api/v1/history/series?match=" + urllib.parse.quote(CPU))
    ok = (status == 200 and isinstance(body, dict) and body.get("count") == 1 and
          body["series"][0].get("name") == CPU and body["series"][0].get("live") is True)
    C.check(ok, "A: /api/v1/history/series lists the series, live", body)
    C.check(status == 200 and [t.get("step") for t in body.get("tiers", [])] == [1, 5],
            "A: the listing shows the configured tiers", body.get("tiers"))
    # the coarse tier: a 5 s step answers [t, avg, min, max]
    status, body = history(k, "series=" + CPU + "&since=10m&step=5")
    cpts = body["series"][0]["points"] if status == 200 and body.get("series") else []
    C.check(bool(cpts) and all(len(p) == 4 and p[2] <= p[1] <= p[3] for p in cpts) and
            body.get("downsampled") is True,
            "A: step=5 is downsampled: [t, avg, min, max] with min <= avg <= max", cpts[:3])
    return pts


def part_b(sim: Sim, k: Katomon) -> Katomon:
    before = points(k, CPU)
    stop_ok(k, "B")
    k2 = Katomon(W, "km-b", config(sim))
    C.check(k2.start(), "B: katomon starts again after SIGTERM", k2.text()[-2000:])
    after = points(k2, CPU)
    kept = [p for p in after if p[0] <= before[-1][0]] if before else []
    C.check(bool(before) and kept == before,
            f"B: all {len(before)} points from before SIGTERM are answered again, equal",
            {"before": before[-3:], "after": kept[-3:], "lost": len(before) - len(kept)})
    return k2


def part_c(sim: Sim, k: Katomon) -> Katomon:
    vary_cpu(sim, k, [55.5, 66.0])
    before = points(k, CPU)
    t_read = time.time()
    # wait for a flush that began after the read: the file's mtime moves past it
    flushed = wait_until(lambda: os.path.exists(DB) and os.path.getmtime(DB) > t_read + 0.05,
                         FLUSH * 5 + 10, 0.1)
    C.check(bool(flushed), "C: the history file is written every flush_interval",
            os.path.exists(DB))
    last = points(k, CPU)
    t_kill = time.time()
    k.kill9()
    k3 = Katomon(W, "km-c", config(sim))
    C.check(k3.start(), "C: katomon starts again after kill -9", k3.text()[-2000:])
    after = points(k3, CPU)
    kept = [p for p in after if p[0] <= before[-1][0]] if before else []
    C.check(bool(before) and kept == before,
            f"C: all {len(before)} points written before the last flush survive kill -9",
            {"before": before[-3:], "after": kept[-3:]})
    old = [p for p in after if p[0] <= t_kill]
    lost = (t_kill - old[-1][0]) if old else None
    C.check(lost is not None and lost <= FLUSH + 2.5,
            f"C: at most the flush interval ({FLUSH} s) plus one step is lost",
            {"newest kept": old[-1:] if old else None, "kill at": t_kill,
             "last seen": last[-1:]})
    return k3


def part_d(sim: Sim, k: Katomon) -> Katomon:
    stop_ok(k, "D (before)")
    size = os.path.getsize(DB)
    with open(DB, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\xde\xad\xbe\xef" * 8)
    k4 = Katomon(W, "km-d", config(sim))
    C.check(k4.start(), "D: katomon starts with a corrupt history file", k4.text()[-2000:])
    C.check(bool(k4.wait_log(r"history.*(corrupt|set aside|CRC|checksum)", 10)),
            "D: the corrupt file is logged", k4.text()[-2000:])
    aside = glob.glob(DB + ".corrupt-*")
    C.check(len(aside) == 1 and os.path.getsize(aside[0]) == size,
            "D: the corrupt file is set aside as history.db.corrupt-*, untouched", aside)
    pts = wait_points(k4, CPU, 2, 20)
    t0 = time.time()
    C.check(len(pts) >= 2 and all(p[0] > t0 - 30 for p in pts),
            "D: katomon records anew (only fresh points)", pts[:3])
    return k4


def part_e(k: Katomon) -> None:
    now = int(time.time())
    cases = [
        ("from after to", f"series={CPU}&from={now}&to={now - 60}"),
        ("step 0", f"series={CPU}&since=5m&step=0"),
        ("step 1 ns", f"series={CPU}&since=5m&step=0.000000001"),
        ("10 KiB of labels", "series=" + urllib.parse.quote(
            CPU + "{" + ",".join(f'l{i}="{"x" * 90}"' for i in range(110)) + "}")),
        ("65 selectors", "&".join(f"series={CPU}" for _ in range(65)) + "&since=1m"),
        ("a bad name", "series=" + urllib.parse.quote("9bad{x=\"1\"}")),
        ("a bad time", f"series={CPU}&from=yesterday"),
        ("an unknown parameter", f"series={CPU}&colour=blue"),
        ("no series", "since=5m"),
    ]
    for name, q in cases:
        status, body = history(k, q)
        C.check(status == 400 and isinstance(body, dict) and isinstance(body.get("detail"), str)
                and body["detail"], f"E: {name}: 400 with a detail", (status, body))
    status, body = history(k, "series=katomon_no_such_series&since=5m")
    C.check(status == 200 and body.get("series") == [],
            "E: an unknown series is an empty answer, not an error", (status, body))
    C.check(k.alive(), "E: katomon is still running")


def part_f(k: Katomon) -> None:
    status, ctype, text = metrics_text(k)
    C.check(status == 200 and ctype.startswith("text/plain") and "version=0.0.4" in ctype,
            "F: GET /metrics answers text/plain; version=0.0.4", (status, ctype))
    C.check(f"# HELP {CPU} " in text and f"# TYPE {CPU} gauge" in text,
            "F: HELP and TYPE for katomon_kato_cpu_percent", text[:400])
    line = next((l for l in text.splitlines() if l.startswith(CPU + " ")), "")
    st, m = k.get("/api/v1/system/metrics")
    want = m.get("resources", {}).get("cpu_percent") if st == 200 else None
    C.check(bool(line) and want is not None and float(line.split()[1]) == want,
            "F: its value is the one REST serves", (line, want))
    C.check('katomon_source_up{source="kato",topic="metrics"} 1' in text,
            "F: katomon_source_up for KATO is 1", [l for l in text.splitlines()
                                                    if "source_up" in l])


def main() -> int:
    os.makedirs(STATE, exist_ok=True)
    sim = Sim(W)
    k = None
    try:
        if not C.check(sim.start(), "the KATO simulator starts"):
            return C.done()
        k = Katomon(W, "km-a", config(sim))
        if not C.check(k.start(), "katomon starts", k.text()[-2000:]):
            return C.done()
        part_a(k, sim)
        part_f(k)
        part_e(k)
        k = part_b(sim, k)
        k = part_c(sim, k)
        k = part_d(sim, k)
        stop_ok(k, "D (after)")
        k = None
    finally:
        if k and k.alive():
            k.kill9()
        sim.stop()
    rc = C.done()
    if rc == 0:
        rmtree(W)
    return rc


if __name__ == "__main__":
    sys.exit(main())
