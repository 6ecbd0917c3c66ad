// store.js - latest value of each state topic, its health, and the short
// time series the live charts draw. Fed by the connection (WebSocket or
// the HTTP fallback); pages read from it and listen for `change`.
//
// Values are kept per host (fleet.js): '' is this host, "B" a remote host
// whose values came in realtime_update's `hosts`. get/status/sampleTime
// answer for the picked host unless told another; the chart series follow
// the picked host only, and start again when another host is picked.

import { get, isNum, parseTime } from './format.js';

export const SERIES_WINDOW_MS = 5 * 60 * 1000;
const STALE_MIN_MS = 15000;
const GAP_MS = 12000;
const STORAGE_KEY = 'katomon.series.v1';
const HOSTS_MAX = 1024; // hosts whose values we keep

/** Series the charts draw: name -> [topic, path in that topic's body]. */
export const SERIES = {
  'cpu.kato': ['metrics', 'resources.cpu_percent'],
  'cpu.host': ['host', 'cpu_percent'],
  'cpu.containers': ['containers', 'aggregated.total_cpu_percent'],
  'mem.kato': ['metrics', 'resources.memory_percent'],
  'mem.host': ['host', 'memory.used_percent'],
  'mem.containers': ['containers', 'aggregated.total_memory_percent'],
  'rps': ['metrics', 'rates.requests_per_second'],
  'errors': ['metrics', 'performance.error_rate'],
  'sessions': ['sessions', 'active_count'],
};

export class Store extends EventTarget {
  constructor(conn, fleet) {
    super();
    this.conn = conn;
    this.fleet = fleet;
    this.byHost = new Map([['', new Map()]]); // host key -> (topic -> {body, at, t, via, lag, fetched, gap})
    this.series = new Map(Object.keys(SERIES).map((k) => [k, []]));
    this.unknown = new Set();
    this.skew = 0; // server clock - browser clock (ms), from the stream's timestamps
    conn.addEventListener('state', (e) => this._state(e.detail));
    if (fleet) {
      fleet.addEventListener('change', () => {
        // the charts show one host: its series start now (history fills them)
        for (const k of this.series.keys()) this.series.set(k, []);
        this._changed('*');
      });
    }
    conn.addEventListener('ack', (e) => {
      this.unknown = new Set(e.detail.unknown);
      this._changed('*');
    });
    conn.addEventListener('status', () => this._changed('*'));
    conn.addEventListener('poll', () => this._changed('*'));
    this._restore();
    addEventListener('pagehide', () => this._save());
    setInterval(() => this._save(), 10000);
  }

  // The chart series survive a reload of the tab (not a new browser:
  // katomon keeps no history of state topics).
  _save() {
    try {
      sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ at: Date.now(), host: this._picked(), series: Object.fromEntries(this.series) }));
    } catch { /* storage full or off */ }
  }

  _restore() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || 'null');
      if (!saved || !saved.series || (saved.host || '') !== this._picked()) return;
      const since = Date.now() - SERIES_WINDOW_MS;
      for (const [k, arr] of Object.entries(saved.series)) {
        if (!this.series.has(k) || !Array.isArray(arr)) continue;
        const pts = arr.filter((p) => p && isNum(p.x) && p.x >= since && (p.y === null || isNum(p.y)));
        if (pts.length) pts.push({ x: pts[pts.length - 1].x + 1, y: null }); // the reload is a gap
        this.series.set(k, pts);
      }
    } catch { /* bad data: start empty */ }
  }

  /** The picked host's key ('' = this host). */
  _picked() {
    return this.fleet ? this.fleet.picked : '';
  }

  _key(host) {
    if (host === undefined) return this._picked();
    return this.fleet ? this.fleet.key(host) : (host || '');
  }

  /** The picked host's values (topic -> entry). */
  get sources() {
    return this.hostSources();
  }

  /** A host's values (topic -> entry); host: a name, '' for this host, default the picked one. */
  hostSources(host) {
    return this.byHost.get(this._key(host)) || new Map();
  }

  /** The latest value of a topic on a host (default the picked one). */
  get(topic, host) {
    const s = this.hostSources(host).get(topic);
    return s ? s.body : undefined;
  }

  /** Now on katomon's clock (ms): the time base of the series and of history. */
  now() {
    return Date.now() + this.skew;
  }

  /** Time (katomon's clock, ms) of the latest sample of a topic, or null. */
  sampleTime(topic, host) {
    const s = this.hostSources(host).get(topic);
    return s ? s.t : null;
  }

  _state({ topic, body, ts, via, host }) {
    if (!body || typeof body !== 'object') return;
    const key = this._key(host || '');
    let sources = this.byHost.get(key);
    if (!sources) {
      if (this.byHost.size >= HOSTS_MAX) return;
      this.byHost.set(key, (sources = new Map()));
    }
    const now = Date.now();
    const prev = sources.get(topic);
    const src = body._source || {};
    // Times from the server are compared with the server's own clock (the
    // update's timestamp), so a skewed browser clock does not fake staleness.
    const serverNow = parseTime(ts);
    if (Number.isFinite(serverNow)) this.skew = serverNow - now;
    // Samples are stamped with katomon's time (the update's timestamp), the
    // clock of /api/v1/history, so live points continue the history exactly.
    const t = Number.isFinite(serverNow) ? serverNow : now + this.skew;
    const fetched = parseTime(src.fetched_at || body.timestamp);
    const lag = Number.isFinite(serverNow) && Number.isFinite(fetched) ? Math.max(0, serverNow - fetched) : 0;
    const entry = { body, at: now, t, via, lag, fetched: Number.isFinite(fetched) ? fetched : null, gap: prev ? prev.gap : 0 };
    // learn how often the source really produces data, to judge staleness
    if (prev && entry.fetched && prev.fetched && entry.fetched > prev.fetched) {
      const g = entry.fetched - prev.fetched;
      entry.gap = prev.gap ? prev.gap * 0.7 + g * 0.3 : g;
    }
    sources.set(topic, entry);
    if (key === this._picked()) this._sample(topic, body, t);
    this._changed(topic, key);
  }

  _sample(topic, body, now) {
    for (const [name, [t, path]] of Object.entries(SERIES)) {
      if (t !== topic) continue;
      const arr = this.series.get(name);
      let v = body.error ? null : get(body, path);
      if (!isNum(v)) v = null;
      if (v !== null && name === 'errors') v *= 100;
      const last = arr[arr.length - 1];
      if (last && now <= last.x) { // same or older stamp: keep the time line strictly increasing
        if (now === last.x) last.y = v;
        continue;
      }
      if (last && now - last.x > GAP_MS) arr.push({ x: last.x + 1, y: null }); // break the line
      arr.push({ x: now, y: v });
      while (arr.length && arr[0].x < now - SERIES_WINDOW_MS) arr.shift();
    }
  }

  /**
   * What a page should say about a topic's data:
   *   {kind: 'ok'|'poll'|'stale'|'error'|'missing'|'unconfigured', label, detail}
   */
  status(topic, host) {
    const s = this.hostSources(host).get(topic);
    if (this.unknown.has(topic) && !s) {
      return { kind: 'unconfigured', label: 'Not configured', detail: `No plugin publishes "${topic}"; enable it in katomon.conf.` };
    }
    if (!s) {
      const down = this.conn.state !== 'realtime';
      const key = this._key(host);
      const from = key ? ` from ${key}` : '';
      return { kind: 'missing', label: down ? 'No data' : 'Waiting', detail: down ? `No data received yet${from}` : `Waiting for the first sample${from}` };
    }
    const err = s.body.error || (s.body._source && s.body._source.healthy === false && s.body._source.error);
    if (err) {
      return { kind: 'error', label: errorLabel(topic, String(err)), detail: String(err) };
    }
    const now = Date.now();
    const limit = Math.max(STALE_MIN_MS, 3 * (s.gap || 0));
    const age = now - s.at + (s.lag || 0);
    if (age > limit) {
      return { kind: 'stale', label: 'Stale', detail: `Last update ${Math.round(age / 1000)} s ago`, age };
    }
    if (s.via === 'poll') return { kind: 'poll', label: 'Polling', detail: 'Updated over HTTP every 5 s while the live connection is down' };
    return { kind: 'ok', label: 'Live', detail: 'Live over WebSocket' };
  }

  /**
   * `change` {topic}: a value of the picked host (or, topic '*', anything);
   * `hostchange` {topic, host}: a value of any host (host: its key, absent
   * for '*'), for the pages that show every host (the Fleet page).
   */
  _changed(topic, host) {
    if (host === undefined || host === this._picked()) this.dispatchEvent(new CustomEvent('change', { detail: { topic } }));
    this.dispatchEvent(new CustomEvent('hostchange', { detail: { topic, host } }));
  }
}

function errorLabel(topic, err) {
  switch (topic) {
    case 'metrics':
    case 'sessions':
    case 'kato_health':
      return /unreachable|refused|timed? ?out|closed|reset|resolve/i.test(err) ? 'KATO unreachable' : 'KATO error';
    case 'containers':
      return 'Docker unavailable';
    default:
      return 'Unavailable';
  }
}
