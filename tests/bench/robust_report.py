#!/usr/bin/env python3
"""robust_report.py RAWDIR [EXISTING_REPORT] - the Markdown table of tests/bench/robust.sh
(issue 17, points 2 and 3): medians over the runs, ratios, and a verdict per
criterion. Reads RAWDIR/{R0,R1,CH}__katomon__N.json (bench_client and
churn results) and the BENCH_* variables robust.sh exports. What follows a
line "<!-- notes -->" in EXISTING_REPORT is kept at the end (hand-written
notes survive a re-run)."""

import glob
import json
import os
import statistics
import sys

# katomon's cap on 503 answers in flight (core/server_conn.c
# KM_HTTP_MAX_REJECTS): past max_connections a socket is answered 503 (at
# most this many at once) or closed at once, so the fds never pass
# base + max_connections + this.
MAX_REJECTS = 64


def env(name, default=""):
    return os.environ.get(name, default)


def size_bytes(text):
    t = text.strip().lower()
    mult = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}.get(t[-1:], 1)
    return int(float(t.rstrip("kmg")) * mult)


def load(raw):
    runs = {}
    for path in sorted(glob.glob(os.path.join(raw, "*.json"))):
        sc = os.path.basename(path).split("__")[0]
        try:
            runs.setdefault(sc, []).append(json.load(open(path)))
        except (OSError, ValueError):
            print(f"<!-- unreadable: {path} -->")
    return runs


def med(runs, sc, *keys):
    vals = []
    for r in runs.get(sc, []):
        v = r
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)) and v >= 0:
            vals.append(v)
    return statistics.median(vals) if vals else None


def each(runs, sc, fn):
    out = []
    for r in runs.get(sc, []):
        try:
            out.append(fn(r))
        except (KeyError, TypeError, ZeroDivisionError):
            out.append(None)
    return out


def f(v, fmt="%.1f"):
    return "-" if v is None else fmt % v


def verdict(ok):
    return "n/a" if ok is None else ("**yes**" if ok else "**NO**")


def main():
    runs = load(sys.argv[1])
    n1 = int(env("BENCH_N1", "1000"))
    stall = int(env("BENCH_STALL", "10"))
    queue = size_bytes(env("BENCH_QUEUE", "256k"))
    limit = int(env("BENCH_LIMIT", "200"))
    print("# Stalled clients and connection churn (issue 17)\n")
    print(f"`make bench-robust`: {env('BENCH_RUNS')} run(s) of each scenario, interleaved; "
          f"medians. Load average {env('BENCH_LOAD0')} at the start, {env('BENCH_LOAD1')} "
          f"at the end; {env('BENCH_ELAPSED')} s in all. katomon: optimized build, "
          f"bench_pub (realtime_update 10 Hz, events {env('BENCH_EVENT_HZ')} Hz, 2,048-byte "
          f"payloads), [websocket] max_queue_bytes = {env('BENCH_QUEUE')}, "
          f"update_interval = 0.1.\n")

    # ---- stalled clients ----
    if "R0" in runs or "R1" in runs:
        print(f"## Stalled clients: {n1:,} readers, without (R0) and with (R1) {stall} "
              f"clients that never read\n")
        print(f"Window {env('BENCH_DURATION')} s after {env('BENCH_WARMUP')} s of warm-up; "
              "the latencies are the readers' only (server timestamp to client receipt).\n")
        print("| figure | R0: no stallers | R1: with stallers | R1 / R0 | target | met |")
        print("|---|---|---|---|---|---|")
        p0, p1 = med(runs, "R0", "lat_p99_us"), med(runs, "R1", "lat_p99_us")
        ratio = p1 / p0 if p0 and p1 is not None else None
        print(f"| readers' p99 latency, ms | {f(p0 and p0 / 1e3, '%.2f')} | "
              f"{f(p1 and p1 / 1e3, '%.2f')} | {f(ratio, '%.2f')} | <= 1.10 | "
              f"{verdict(ratio <= 1.10 if ratio is not None else None)} |")
        for key, name in (("lat_p50_us", "readers' p50 latency, ms"),
                          ("lat_max_us", "readers' max latency, ms")):
            a, b = med(runs, "R0", key), med(runs, "R1", key)
            print(f"| {name} | {f(a and a / 1e3, '%.2f')} | {f(b and b / 1e3, '%.2f')} | "
                  f"{f(b / a if a and b is not None else None, '%.2f')} | | |")
        a, b = med(runs, "R0", "msgs_per_s"), med(runs, "R1", "msgs_per_s")
        print(f"| readers' messages/s | {f(a, '%.0f')} | {f(b, '%.0f')} | "
              f"{f(b / a if a and b is not None else None, '%.3f')} | | |")
        a, b = med(runs, "R0", "closed_by_server"), med(runs, "R1", "closed_by_server")
        print(f"| readers closed by katomon | {f(a, '%.0f')} | {f(b, '%.0f')} | | 0 | "
              f"{verdict(b == 0 and a == 0 if a is not None and b is not None else None)} |")
        cs = med(runs, "R1", "km", "closed_slow_total")
        print(f"| stallers closed with 1008 (queue full) | | {f(cs, '%.0f')} of {stall} | | "
              f"all | {verdict(cs >= stall if cs is not None else None)} |")
        gone = each(runs, "R1", lambda r: r["n"] - r["km"]["clients_after"])
        gone = [g for g in gone if g is not None]
        gm = statistics.median(gone) if gone else None
        print(f"| stallers gone at the window's end (socket closed) | | {f(gm, '%.0f')} of "
              f"{stall} | | all | {verdict(gm >= stall if gm is not None else None)} |")
        b0, m0 = med(runs, "R0", "rss_base_kib"), med(runs, "R0", "rss_max_kib")
        b1, m1 = med(runs, "R1", "rss_base_kib"), med(runs, "R1", "rss_max_kib")
        print(f"| katomon VmRSS before the clients, MiB | {f(b0 and b0 / 1024, '%.1f')} | "
              f"{f(b1 and b1 / 1024, '%.1f')} | | | |")
        print(f"| katomon VmRSS max in the window, MiB | {f(m0 and m0 / 1024, '%.1f')} | "
              f"{f(m1 and m1 / 1024, '%.1f')} | {f(m1 / m0 if m0 and m1 else None, '%.3f')} "
              "| | |")
        # The bound: base + every client's fixed cost (R0's measured
        # per-connection growth) + max_queue_bytes per client.
        per = (m0 - b0) * 1024 / n1 if m0 and b0 else None
        n = n1 + stall
        bound = (b1 * 1024 + n * (per + queue)) / 1024 ** 2 if per is not None and b1 else None
        print(f"| bound: base + {n:,} x (per-client cost {f(per and per / 1024, '%.1f')} KiB "
              f"+ max_queue_bytes {queue // 1024} KiB), MiB | | {f(bound, '%.1f')} | | "
              f"RSS under it | {verdict(m1 / 1024 <= bound if bound and m1 else None)} |")
        extra = (m1 - m0) / 1024 if m0 and m1 else None
        eb = stall * queue / 1024 ** 2
        print(f"| R1 - R0 VmRSS max, MiB (the stallers' cost) | | {f(extra, '%.2f')} | | "
              f"<= {stall} x max_queue_bytes = {eb:.2f} | "
              f"{verdict(extra <= eb if extra is not None else None)} |")
        print()
        print("Per run (R0 / R1 readers' p99, ms): " + ", ".join(
            f"{f(a and a['lat_p99_us'] / 1e3, '%.2f')} / {f(b and b['lat_p99_us'] / 1e3, '%.2f')}"
            for a, b in zip(runs.get("R0", []), runs.get("R1", []))) + ".\n")

    # ---- churn ----
    if "CH" in runs:
        ch = runs["CH"]
        print(f"## Churn: {int(env('BENCH_CYCLES', '100000')):,} connect/disconnect cycles, "
              f"max_connections = {limit}, request_timeout = 2 s\n")
        print(f"{env('BENCH_INFLIGHT')} fast cycles at once (40 % clean close, 30 % RST after "
              "the 101, 30 % half an upgrade request or nothing, then close), 20 slowloris "
              "sockets (a byte a second) and 20 upgrades that never finish their first frame "
              "at once; before the churn, a burst of 300 sockets holding a request line "
              "(past the limit). A normal client sends GET /health on a fresh connection "
              "every 50 ms throughout the churn. The baseline is taken after a warm-up of "
              f"{int(env('BENCH_WARMUP_CYCLES', '100000')):,} cycles of the same mix and the "
              "burst, once katomon's fds are back to their idle count.\n")
        print("| figure | median | runs | target | met |")
        print("|---|---|---|---|---|")

        def row(name, fn, fmt="%.0f", target="", test=None):
            vals = [v for v in each(runs, "CH", fn) if v is not None]
            m = statistics.median(vals) if vals else None
            ok = None if test is None or m is None else all(test(v) for v in vals)
            print(f"| {name} | {f(m, fmt)} | {', '.join(fmt % v for v in vals)} | {target} | "
                  f"{verdict(ok) if test else ''} |")

        row("cycles", lambda r: r["cycles"])
        row("churn time, s", lambda r: r["churn_s"], "%.1f")
        row("cycles/s", lambda r: r["cycles"] / r["churn_s"])
        for k, good, label in (("clean", "ok", "clean: close echoed"),
                               ("rst", "ok", "RST after the 101"),
                               ("half", "ok", "half-open handshakes"),
                               ("slow", "408", "slowloris: cut with 408"),
                               ("nofin", "1008", "first frame never finished: cut with 1008")):
            row(f"{k}: started", lambda r, k=k: r["kinds"][k]["started"])
            row(f"... {label}", lambda r, k=k, good=good: r["kinds"][k][good])
            row(f"... {k}: refused (503)", lambda r, k=k: r["kinds"][k]["503"])
            row(f"... {k}: failed + stuck", lambda r, k=k: r["kinds"][k]["failed"] +
                r["kinds"][k]["stuck"], target="0", test=lambda v: v == 0)
        row("... slowloris: seconds held (max)", lambda r: r["kinds"]["slow"]["max_s"], "%.2f",
            "<= 2 + 1", lambda v: v <= 3)
        row("... unfinished frame: seconds held (max)", lambda r: r["kinds"]["nofin"]["max_s"],
            "%.2f", "<= 2 + 1", lambda v: v <= 3)
        row("burst: answered 503", lambda r: r["kinds"]["burst"]["503"])
        row("burst: let in, then 408", lambda r: r["kinds"]["burst"]["408"],
            target=f"<= {limit}", test=lambda v: v <= limit)
        row("burst: closed unanswered (past 64 rejects in flight)",
            lambda r: r["kinds"]["burst"]["failed"])
        row("katomon fds over baseline, peak in the burst",
            lambda r: r["fd_burst_max"] - r["fd_base"],
            target=f"<= {limit} + {MAX_REJECTS}", test=lambda v: v <= limit + MAX_REJECTS)
        row("katomon fds over baseline, peak in the churn", lambda r: r["fd_max"] - r["fd_base"],
            target=f"<= {limit} + {MAX_REJECTS}", test=lambda v: v <= limit + MAX_REJECTS)
        row("fd samples (every 50 ms)", lambda r: r["samples"])
        row("katomon fds: baseline", lambda r: r["fd_base"])
        row("katomon fds: after the churn", lambda r: r["fd_end"])
        row("fds after / baseline", lambda r: r["fd_end"] / r["fd_base"], "%.3f", "<= 1.05",
            lambda v: v <= 1.05)
        row("VmRSS baseline (after warm-up), KiB", lambda r: r["rss_base_kib"])
        row("VmRSS peak in the churn, KiB", lambda r: r["rss_max_kib"])
        row("VmRSS after the churn, KiB", lambda r: r["rss_end_kib"])
        row("VmRSS after / baseline", lambda r: r["rss_end_kib"] / r["rss_base_kib"], "%.3f",
            "<= 1.05", lambda v: v <= 1.05)
        row("settle time after the churn, s (-1: not within the deadline)",
            lambda r: r["settle_end_s"], "%.2f")
        row("normal client: answered 200", lambda r: r["probe_ok"])
        row("normal client: refused (503) or failed", lambda r: r["probe_503"] + r["probe_failed"],
            target="0", test=lambda v: v == 0)
        row("normal client: p50, ms", lambda r: r["probe_p50_ms"], "%.2f")
        row("normal client: p99, ms", lambda r: r["probe_p99_ms"], "%.2f")
        row("normal client: max, ms", lambda r: r["probe_max_ms"], "%.2f")
        print()
    if len(sys.argv) > 2 and os.path.exists(sys.argv[2]):
        text = open(sys.argv[2]).read()
        i = text.find("<!-- notes -->")
        if i >= 0:
            notes = text[i:]
            print(notes, end="" if notes.endswith("\n") else "\n")


if __name__ == "__main__":
    main()
