#!/usr/bin/env python3
"""latency_report.py RAW DOCKER_INTERVAL FAN_N FAN_HZ LOAD0 LOAD1 [NOTES_FROM]
- the end-to-end latency benchmark's Markdown (tests/bench/latency.sh):
per scenario the median over runs of each run's p50, p99 and max, the
target, and for Docker the poll-only (and old plugin) runs as ratios.
NOTES_FROM: an earlier report whose text after "<!-- notes -->" is kept."""
import glob
import json
import math
import os
import statistics
import sys

raw, dint, fan_n, fan_hz = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
load0, load1 = sys.argv[5], sys.argv[6]
notes_from = sys.argv[7] if len(sys.argv) > 7 else ""


def pct(vals, q):
    """Nearest rank: the smallest value with at least q of them at or below
    it (of 100 events, p99 is the 99th, not the largest)."""
    s = sorted(vals)
    return s[max(0, math.ceil(q * len(s)) - 1)] if s else float("nan")


def load(pattern):
    rows = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(raw, pattern)))]
    for r in rows:  # D and K: every event's figure is there
        if "lat_ms" in r:
            r["p50_ms"], r["p99_ms"] = pct(r["lat_ms"], .5), pct(r["lat_ms"], .99)
            r["max_ms"] = max(r["lat_ms"]) if r["lat_ms"] else float("nan")
    return rows


def med(rows, key, scale=1.0):
    vals = [r[key] * scale for r in rows if r.get(key) is not None and
            not (isinstance(r[key], float) and math.isnan(r[key])) and r[key] >= 0]
    return statistics.median(vals) if vals else float("nan")


def fmt(v):
    return "-" if math.isnan(v) else (f"{v:.2f}" if v < 100 else f"{v:.0f}")


def met(p99, target):
    return "-" if math.isnan(p99) else ("yes" if p99 < target else "**no**")


rows = []  # (scenario, path, runs, events, lost, p50, p99, max, target)
docker = {m: load(f"D-{m}-*.json") for m in ("events", "old", "poll")}
names = {"events": f"docker_stats events on (interval {dint:g} s): the kill (SIGKILL) or die "
                   "event publishes",
         "old": f"older docker_stats.so (BENCH_OLD_PLUGIN_DIR), interval {dint:g} s",
         "poll": f"`events = false`: the poll alone, interval {dint:g} s"}
for m in ("events", "old", "poll"):
    rs = docker[m]
    if rs:
        rows.append(("D: docker kill -> container_down", names[m], len(rs),
                     sum(len(r["lat_ms"]) for r in rs), sum(r["lost"] for r in rs),
                     med(rs, "p50_ms"), med(rs, "p99_ms"), med(rs, "max_ms"),
                     100 if m == "events" else None))
kato = load("K-*.json")
if kato:
    rows.append(("K: KATO session.created -> session_event", "simulator -> session_events",
                 len(kato), sum(len(r["lat_ms"]) for r in kato), sum(r["lost"] for r in kato),
                 med(kato, "p50_ms"), med(kato, "p99_ms"), med(kato, "max_ms"), 10))
fan, floor = load("F-*.json"), load("Ffloor-*.json")
if fan:
    rows.append((f"F: bus publish -> frame, {fan_n} clients",
                 f"bench_pub event topic at {fan_hz:g} Hz, 512 B", len(fan),
                 sum(r.get("n_age", r.get("msgs", 0)) for r in fan),
                 sum(r.get("gaps", 0) for r in fan),
                 med(fan, "age_p50_us", 1e-3), med(fan, "age_p99_us", 1e-3),
                 med(fan, "age_max_us", 1e-3), 5))
if floor:
    rows.append((f"F: the floor, {fan_n} clients", "floor.c: one pre-built frame write()n "
                 "to each client", len(floor), sum(r.get("msgs", 0) for r in floor),
                 sum(r.get("gaps", 0) for r in floor), med(floor, "age_p50_us", 1e-3),
                 med(floor, "age_p99_us", 1e-3), med(floor, "age_max_us", 1e-3), None))

print("# End-to-end latency (issue 17, point 6)\n")
print("`make bench-latency` (tests/bench/latency.sh) on a plain `-O2 -g` build. Each figure "
      "is the median over the runs of that run's p50 / p99 / max (ms). One machine: "
      "katomon, the clients, dockerd and the simulator share its cores. Load average "
      f"(1, 5, 15 min) {load0} before, {load1} after.\n")
print("| scenario | path | runs | events | lost | p50 ms | p99 ms | max ms | target p99 | met |")
print("|---|---|---|---|---|---|---|---|---|---|")
for sc, path, runs, n, lost, p50, p99, mx, target in rows:
    print(f"| {sc} | {path} | {runs} | {n} | {lost} | {fmt(p50)} | {fmt(p99)} | {fmt(mx)} | "
          f"{'< %g ms' % target if target else '-'} | {met(p99, target) if target else '-'} |")
ev = docker["events"]
for m in ("old", "poll"):
    if ev and docker[m]:
        e50, e99 = med(ev, "p50_ms"), med(ev, "p99_ms")
        o50, o99 = med(docker[m], "p50_ms"), med(docker[m], "p99_ms")
        print(f"\nDocker, {names[m].split(':')[0]} / events on: p50 {o50 / e50:.1f}x, "
              f"p99 {o99 / e99:.1f}x slower.")
if fan and floor:
    print(f"\nFan-out, katomon / floor: p50 {med(fan, 'age_p50_us') / med(floor, 'age_p50_us'):.2f}x,"
          f" p99 {med(fan, 'age_p99_us') / med(floor, 'age_p99_us'):.2f}x.")
print("\nD counts from the moment the kill request is written to Docker's API socket "
      "(Docker's own die latency included) to the system_alert frame's arrival at a Python "
      "WebSocket client (kmtest.WS), one clock. K counts from the session's birth "
      "(the simulator's clock when it made it and queued session.created: its id's ms, erring "
      "late by < 1 ms) to the session_event frame's arrival. F is bench_client's age: bench_pub's CLOCK_MONOTONIC at publish to "
      "the frame's arrival, over every client and event of the window "
      "(\"events\" = samples, \"lost\" = seq gaps).")
if notes_from and os.path.exists(notes_from):
    text = open(notes_from).read()
    if "<!-- notes -->" in text:
        print("\n<!-- notes -->" + text.split("<!-- notes -->", 1)[1].rstrip("\n"))
