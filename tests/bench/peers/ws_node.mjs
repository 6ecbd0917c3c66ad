// ws_node.mjs - peer of katomon's fan-out benchmark: a broadcast server on
// Node's `ws` package (pinned in ../package.json), written the usual way.
//
//   node ws_node.mjs --port P [--hz R] [--size BYTES]
//
// Its publisher does what bench_pub does for katomon: every 1/R seconds it
// builds the realtime_update text once,
//   {"type":"realtime_update","timestamp":"<UTC, µs>","data":{"bench":
//    {"t":<CLOCK_MONOTONIC µs>,"seq":S,"pad":"xxx..."}}}
// padded to exactly BYTES of payload, makes it a Buffer once, and sends
// that Buffer to every open client (ws frames it per client, which is how
// ws broadcasts). Client messages (the subscribe) are read and ignored.
// No compression (permessage-deflate off, as is the ws default on servers).
import { WebSocketServer, WebSocket } from 'ws';

function arg(name, def) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : def;
}
const port = Number(arg('--port', 0));
const hz = Number(arg('--hz', 10));
const size = Number(arg('--size', 2048));

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  backlog: 4096,
  perMessageDeflate: false,
  maxPayload: 64 * 1024,
});
wss.on('connection', (ws) => {
  ws.on('message', () => {});
  ws.on('error', () => {});
});
wss.on('listening', () => {
  process.stderr.write(`ws_node: listening on 127.0.0.1:${port}, ${hz} Hz, ${size} bytes\n`);
});

// CLOCK_MONOTONIC in µs (process.hrtime is CLOCK_MONOTONIC on Linux) and the
// wall clock in µs (performance.timeOrigin has µs precision).
const monoUs = () => process.hrtime.bigint() / 1000n;
const wallUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
function iso(us) {
  const s = new Date(Math.floor(us / 1000)).toISOString(); // ...HH:MM:SS.mmmZ
  return s.slice(0, 19) + '.' + String(us % 1000000).padStart(6, '0') + 'Z';
}

let seq = 0;
const head = '{"type":"realtime_update","timestamp":"';
function publish() {
  seq++;
  const t = monoUs();
  const ts = iso(wallUs());
  const pre = `${head}${ts}","data":{"bench":{"t":${t},"seq":${seq},"pad":"`;
  const text = pre + 'x'.repeat(size - pre.length - 4) + '"}}}';
  const buf = Buffer.from(text);
  for (const c of wss.clients) {
    if (c.readyState === WebSocket.OPEN) c.send(buf, { binary: false });
  }
}

// drift-free schedule, like a timerfd
if (hz > 0) {
  const iv = 1000 / hz;
  let next = performance.now() + iv;
  const tick = () => {
    publish();
    next += iv;
    const now = performance.now();
    if (next < now) next = now + iv;
    setTimeout(tick, next - now);
  };
  setTimeout(tick, iv);
}
process.on('SIGTERM', () => process.exit(0));
