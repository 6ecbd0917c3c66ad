#!/usr/bin/python3
"""ws_python.py - peer of katomon's fan-out benchmark: a broadcast server on
Python websockets (Debian's python3-websockets, asyncio), written the usual
way: a set of connections and websockets.broadcast().

    /usr/bin/python3 ws_python.py --port P [--hz R] [--size BYTES]

Its publisher does what bench_pub does for katomon: every 1/R seconds it
builds the realtime_update text once,
  {"type":"realtime_update","timestamp":"<UTC, us>","data":{"bench":
   {"t":<CLOCK_MONOTONIC us>,"seq":S,"pad":"xxx..."}}}
padded to exactly BYTES of payload, and broadcasts it (websockets encodes
the text once and frames it per connection). Client messages are read and
ignored. Compression off; ping_interval as websockets' default.
"""
import argparse
import asyncio
import resource
import sys
import time

import websockets

CLIENTS = set()


async def handler(ws, path=None):
    CLIENTS.add(ws)
    try:
        async for _ in ws:
            pass
    except websockets.ConnectionClosed:
        pass
    finally:
        CLIENTS.discard(ws)


def iso(us):
    sec, frac = divmod(us, 1000000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + ".%06dZ" % frac


async def publisher(hz, size):
    loop = asyncio.get_running_loop()
    iv = 1.0 / hz
    nxt = loop.time() + iv
    seq = 0
    while True:
        await asyncio.sleep(max(0.0, nxt - loop.time()))
        nxt += iv
        if nxt < loop.time():
            nxt = loop.time() + iv
        seq += 1
        t = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        ts = iso(time.clock_gettime_ns(time.CLOCK_REALTIME) // 1000)
        pre = '{"type":"realtime_update","timestamp":"%s","data":{"bench":{"t":%d,"seq":%d,"pad":"' % (
            ts, t, seq)
        text = pre + "x" * (size - len(pre) - 4) + '"}}}'
        websockets.broadcast(CLIENTS, text)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--hz", type=float, default=10)
    ap.add_argument("--size", type=int, default=2048)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, max(hard, 65536)))
    except (ValueError, OSError):  # no CAP_SYS_RESOURCE: the hard limit it is
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    async with websockets.serve(handler, "127.0.0.1", a.port, compression=None,
                                backlog=4096, max_size=64 * 1024):
        print("ws_python: listening on 127.0.0.1:%d, %g Hz, %d bytes" % (a.port, a.hz, a.size),
              file=sys.stderr, flush=True)
        if a.hz > 0:
            await publisher(a.hz, a.size)
        else:
            await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
