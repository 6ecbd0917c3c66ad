#!/usr/bin/env python3
"""fleet_report.py RAW HZ NL HOSTS NF DUR - the fleet benchmark's Markdown
(tests/bench/fleet.sh): medians over the runs, ratios, the targets."""
import glob
import json
import os
import statistics
import sys

raw, hz, nl, hosts, nf, dur = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
tick = os.sysconf("SC_CLK_TCK")


def load(pattern):
    return [json.load(open(f)) for f in sorted(glob.glob(os.path.join(raw, pattern)))]


def med(rows, key, scale=1.0):
    vals = [r[key] * scale for r in rows if r.get(key) is not None and r[key] >= 0]
    return statistics.median(vals) if vals else float("nan")


local, bridged = load("L-local-*[0-9].json"), load("L-bridged-*[0-9].json")
local1, bridged1 = load("L1-local-*[0-9].json"), load("L1-bridged-*[0-9].json")
side = load("L-bridged-*.side.json")
fleet, fhosts = load("F-*[0-9].json"), load("F-*.hosts.json")
if not local or not bridged or not fleet:
    sys.exit("fleet_report: missing results in " + raw)


def per_msg_us(rows):
    # the server's CPU in the window over the messages published in it
    return med(rows, "server_cpu_s") / (hz * med(rows, "window_s")) * 1e6


l_p50, l_p99, l_p999 = (med(local, k) / 1000 for k in ("age_p50_us", "age_p99_us", "age_p999_us"))
b_p50, b_p99, b_p999 = (med(bridged, k) / 1000 for k in ("age_p50_us", "age_p99_us", "age_p999_us"))
l_cpu, b_cpu = per_msg_us(local), per_msg_us(bridged)
l1_cpu, b1_cpu = per_msg_us(local1), per_msg_us(bridged1)
pub_us = statistics.median(s["pub_ticks"] / tick / (hz * s["seconds"]) * 1e6 for s in side)
redis_us = statistics.median(s["redis_ticks"] / tick / (hz * s["seconds"]) * 1e6 for s in side)
gaps = sum(r.get("gaps", 0) for r in local + bridged)
runs = len(local)

print("# Fleet benchmark (issue 15)\n")
print(f"`make bench-fleet` on a plain `-O2 -g` build; {runs} runs per scenario, medians; "
      f"{dur:g} s windows. One machine: every process shares its 2 cores.\n")
print(f"## L: one event topic at {hz:g} Hz, {nl} katomon/1 clients, {512} B payloads\n")
print("| path | age p50 ms | age p99 ms | age p99.9 ms | edge CPU per message µs | "
      "msgs/s to clients |")
print("|---|---|---|---|---|---|")
print(f"| local (publisher on the serving katomon) | {l_p50:.3f} | {l_p99:.3f} | {l_p999:.3f} | "
      f"{l_cpu:.1f} | {med(local, 'msgs_per_s'):.0f} |")
print(f"| bridged (host B -> Redis -> edge) | {b_p50:.3f} | {b_p99:.3f} | {b_p999:.3f} | "
      f"{b_cpu:.1f} | {med(bridged, 'msgs_per_s'):.0f} |")
print(f"| **ratio bridged / local** | {b_p50 / l_p50:.2f} | {b_p99 / l_p99:.2f} | "
      f"{b_p999 / l_p999:.2f} | {b_cpu / l_cpu:.2f} | |\n")
print(f"\nWith one client (the per-message work, almost no fan-out): edge CPU per message "
      f"local {l1_cpu:.1f} µs, bridged {b1_cpu:.1f} µs (ratio {b1_cpu / l1_cpu:.2f}); "
      f"age p99 local {med(local1, 'age_p99_us') / 1000:.3f} ms, bridged "
      f"{med(bridged1, 'age_p99_us') / 1000:.3f} ms. The fan-out to {nl} clients adds about "
      f"{(l_cpu - l1_cpu) / (nl - 1):.1f} µs per client and message on either path.\n")
print(f"- Target: bridged p99 under 5 ms on loopback: **{b_p99:.3f} ms, "
      f"{'met' if b_p99 < 5 else 'NOT met'}**.")
print(f"- Host B's CPU per published message (bench_pub + the bridge's encode and PUBLISH): "
      f"{pub_us:.1f} µs; redis-server's: {redis_us:.1f} µs.")
print(f"- Edge CPU per bridged message = the subscribing connection's read, the envelope's checks "
      f"(unsigned here), the JSON parse, publish_remote and the fan-out to {nl} clients; local = "
      f"bench_pub building the message in the same process, publish and the same fan-out. "
      f"CPU is read from /proc in clock ticks (10 ms) over the window: about +-10 µs a message.")
print(f"- seq gaps seen by clients: {gaps}.\n")

cpu_pct = med(fleet, "server_cpu_pct")
print(f"## F: {hosts} hosts x 1 Hz (state topic, 1 KiB each) through one edge to {nf} clients\n")
print("| edge CPU % | edge RSS max MiB | clients open | msgs/s per client | KiB/s per client | "
      "age p50 ms | age p99 ms | hosts up (before, after) | gaps / missed / refused |")
print("|---|---|---|---|---|---|---|---|---|")
h = fhosts[len(fhosts) // 2]
print(f"| {cpu_pct:.1f} | {med(fleet, 'rss_max_kib') / 1024:.1f} | {med(fleet, 'open'):.0f} | "
      f"{med(fleet, 'msgs_per_s') / nf:.2f} | {med(fleet, 'bytes_per_s') / nf / 1024:.1f} | "
      f"{med(fleet, 'age_p50_us') / 1000:.1f} | {med(fleet, 'age_p99_us') / 1000:.1f} | "
      f"{h['up_before']}, {h['up_after']} of {h['hosts']} | {h['gaps']} / {h['missed']} / "
      f"{h['refused']} |\n")
print("- age here includes the wait for the next realtime_update tick (update_interval 1 s): "
      "state topics conflate, so it is at most a tick plus the path.")
print(f"- hosts: the edge's own plus {hosts}; every one must stay up for the whole run.")
