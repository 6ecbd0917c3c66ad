// conn.js - the live connection to katomon: one WebSocket per page load.
//
// Subscriptions. Every part of the UI that shows live data claims the
// topics it needs (claim(owner, topics) -> release function): the layout
// claims system_alerts, each page claims its own. The connection sends the
// UNION of all current claims in one `subscribe` (which replaces the set on
// the server) whenever that union changes, so one page leaving can never
// drop a topic another part still needs (the original dashboard's
// last-caller-wins bug).
//
// Event topics (session_events, system_alerts) carry a per-topic `seq`.
// The client remembers the seqs it has seen; every subscribe carries
// `since: {topic: last seq seen}` for the event topics in the union, so a
// reconnect replays what was published while the socket was down. Replies:
//   - replay_gap reason "since_ahead": katomon restarted and seq began again;
//     the seqs we have are meaningless, so we forget them and subscribe again
//     with since 0 to get everything the new run has published;
//   - replay_gap reason "not_in_ring": some events are gone for good; a `gap`
//     event tells the UI how many (alerts are then reloaded over REST).
// Every ack carries katomon's `epoch` (one per daemon run): a new epoch
// means a restart, so every seq we hold is reset to 0 and replayed anew -
// this catches a restart even when the new run has already passed our seq,
// which since_ahead alone cannot see.
// Duplicate deliveries (a replay overlapping live events) are dropped by
// seq. Topics listed in `historyTopics` (the session feed) are asked with
// since 0 on first subscribe, to fill the feed with recent history.
//
// Reconnect: exponential backoff from 1 s doubling up to 30 s, with jitter
// (half fixed, half random), never giving up; `online` and a tab becoming
// visible retry at once. While the socket is down the HTTP fallback polls
// the REST endpoints of the state topics in the union every 5 s (and emits
// `polltick` so other stores can poll too); it stops as soon as the socket
// is back.
//
// The fleet (issue 15). A katomon bridged over Redis also serves other
// hosts' data: realtime_update's `hosts` {"B": {topic: value}} holds each
// remote host's latest values (emitted as `state` with host "B"), and an
// event of a remote host carries "host":"B" and that host's own epoch and
// seq. The pages show one host's events (the picked one, setPicked), so
// besides this host's seqs only the picked remote host's are kept (a new
// epoch of it, in its events or in the ack's `epochs`, starts them again),
// and `since` then names both: {"session_events": {"A": 12, "B": 40}}
// (bounded: two hosts, whatever the size of the fleet). Other hosts'
// events are passed on as they come, not deduplicated nor replayed. History
// topics are filled (since 0) for the picked host. The HTTP fallback asks
// for the picked host with ?host= (pollHosts).
//
// Events dispatched (CustomEvent, payload in .detail):
//   status  {state: connecting|realtime|offline|error, detail}
//   state   {topic, body, ts (server time), via: ws|poll, host: null | "B"}
//   event   {topic, msg, seq, replayed, history, host: null | "B"}
//   gap     {topic, missed, reason, host: null | "B"}
//   ack     {subscriptions, unknown, host, hosts}
//   subscribed   after each subscription_ack (stores reload REST history)
//   polltick     every 5 s while disconnected
//   poll    {ok, error, status}

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const POLL_MS = 5000;
const PING_MS = 30000;
const DEAD_MS = 75000;
const REPLAY_WINDOW_MS = 300;
const SEEN_MAX = 4096;
const HOSTS_MAX = 1024;      // remote hosts taken from one realtime_update ([core] max_hosts' bound)
const POLL_HOSTS_MAX = 16;   // hosts polled over HTTP at once while the socket is down

export const EVENT_TOPICS = new Set(['session_events', 'system_alerts']);

/** REST fallback of each state topic; `map` turns the answer into the topic's shape. */
const POLL_ENDPOINTS = {
  metrics: { path: '/api/v1/system/metrics' },
  containers: { path: '/api/v1/system/container-stats' },
  sessions: {
    path: '/api/v1/sessions/count',
    map: (b) => ({ active_count: b.active_session_count }),
  },
  kato_health: { path: '/api/v1/system/kato-health' },
  host: { path: '/api/v1/topics/host/latest' },
  alerts_firing: { path: '/api/v1/topics/alerts_firing/latest' },
  hosts: { path: '/api/v1/hosts', localOnly: true },
};

// Close codes that mean "katomon refused us" rather than "katomon is gone".
const ERROR_CODES = new Set([1002, 1003, 1007, 1009, 1010, 1011, 1013]);

export class Connection extends EventTarget {
  constructor(api, { historyTopics = [] } = {}) {
    super();
    this.api = api;
    this.historyTopics = new Set(historyTopics);
    this.claims = new Map();
    this.state = 'connecting';
    this.detail = 'Connecting to katomon…';
    this.ws = null;
    this.open = false;
    this.everConnected = false;
    this.attempts = 0;
    this.nextRetryAt = null;
    this.seen = new Map();      // topic -> Set of seqs seen (insertion ordered)
    this.lastSeq = new Map();   // topic -> highest seq seen
    this.epoch = null;          // katomon run our seqs belong to (ack.epoch)
    this.localHost = '';        // this katomon's host name (ack.host)
    this.knownHosts = [];       // every host katomon knows (ack.hosts)
    this.remote = new Map();    // topic -> {seen: Set, last, epoch}: the picked remote host's seqs
    this.picked = '';           // the host the pages show ('' = this one): its history is filled
    this.pickedFill = new Set(); // `${topic}\u0000${host}` asked with since 0 for the picked remote host
    this.pollHosts = () => [''];  // hosts the HTTP fallback polls ('' = this one)
    this.sentKey = null;        // union last sent on this socket
    this.replayUntil = 0;       // events before this time (after an ack) are replays
    this.replayTopics = new Set();
    this.historyFill = new Set(); // topics whose current replay is the initial history
    this.unknown = new Set();
    this.lastRx = 0;
    this.stats = { connects: 0, messages: 0, events: 0, replayed: 0, duplicates: 0, polls: 0, pollFailures: 0, gaps: 0 };
    this.log = [];              // recent protocol notes, for debugging (not the console)
    this._timers = {};
    this._syncQueued = false;
  }

  // ---- subscriptions ----------------------------------------------------

  claim(owner, topics) {
    this.claims.set(owner, new Set(topics));
    this._queueSync();
    return () => {
      if (this.claims.get(owner)) {
        this.claims.delete(owner);
        this._queueSync();
      }
    };
  }

  topics() {
    const all = new Set();
    for (const set of this.claims.values()) for (const t of set) all.add(t);
    return [...all].sort();
  }

  _queueSync() {
    if (this._syncQueued) return;
    this._syncQueued = true;
    queueMicrotask(() => {
      this._syncQueued = false;
      const topics = this.topics();
      // a topic nobody wants any more: forget its seqs, so coming back to it
      // starts from now instead of replaying everything in between
      for (const t of [...this.seen.keys()]) {
        if (!topics.includes(t)) { this.seen.delete(t); this.lastSeq.delete(t); }
      }
      for (const t of [...this.remote.keys()]) if (!topics.includes(t)) this.remote.delete(t);
      if (this.open && topics.join(',') !== this.sentKey) this._subscribe();
      if (!this.open) this._poll();
    });
  }

  /**
   * The host whose history the pages show ('' = this host): its history
   * topics are asked anew from seq 0 (a page mounted for it starts empty),
   * the other hosts' carry on from their seqs.
   */
  setPicked(host) {
    host = host && host !== this.localHost ? host : '';
    this.picked = host;
    this.remote = new Map(); // another host's seqs, or none
    if (!host) {
      for (const t of this.historyTopics) {
        this.seen.delete(t);
        this.lastSeq.delete(t);
      }
    }
    this.sentKey = null; // the same topics, another since: subscribe again
    this._queueSync();
  }

  _subscribe() {
    const topics = this.topics();
    const since = {};
    // only what THIS subscribe asks with since 0 for the first time is history
    this.historyFill = new Set();
    this.pickedFill = new Set();
    for (const t of topics) {
      if (!EVENT_TOPICS.has(t) || this.unknown.has(t)) continue;
      let local = null;
      if (this.lastSeq.has(t)) local = this.lastSeq.get(t);
      else if (this.historyTopics.has(t) && !this.picked) { local = 0; this.historyFill.add(t); }
      // the picked remote host: its seqs, or its history
      const per = {};
      const r = this.picked ? this.remote.get(t) : null;
      if (r && Number.isInteger(r.last)) per[this.picked] = r.last;
      else if (this.picked && this.historyTopics.has(t)) {
        per[this.picked] = 0;
        this.pickedFill.add(`${t}\u0000${this.picked}`);
      }
      if (!Object.keys(per).length) {
        if (local !== null) since[t] = local;
        continue;
      }
      // per host: this host under its name (when known; else it is left
      // out, which asks for no replay of its events)
      if (local !== null && this.localHost) per[this.localHost] = local;
      since[t] = per;
      if (!this.localHost && local !== null) this.historyFill.delete(t);
    }
    // katomon's dialect (README "WebSocket protocol"): replace + ack + since
    // replay + errors; without `protocol` katomon speaks the original's.
    const msg = { type: 'subscribe', protocol: 'katomon/1', subscriptions: topics };
    if (Object.keys(since).length) msg.since = since;
    this.sentKey = topics.join(',');
    this.replayTopics = new Set(Object.keys(since));
    for (const t of this.replayTopics) if (!this.seen.has(t)) this.seen.set(t, new Set());
    this._send(JSON.stringify(msg));
  }

  // ---- connection -------------------------------------------------------

  start() {
    if (this._started) return;
    this._started = true;
    addEventListener('online', () => this.retryNow());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && !this.ws) this.retryNow();
    });
    this._connect();
  }

  retryNow() {
    if (this.ws) return;
    clearTimeout(this._timers.retry);
    this._connect();
  }

  _connect() {
    this.nextRetryAt = null;
    if (!this.everConnected) this._setState('connecting', 'Connecting to katomon…');
    else this._setState(this.state, `Reconnecting (attempt ${this.attempts + 1})…`);
    let ws;
    try {
      ws = new WebSocket(this.api.wsUrl());
    } catch (e) {
      this._closed(null, { code: 1006, reason: String(e.message || e) });
      return;
    }
    this.ws = ws;
    ws.onopen = () => this._opened(ws);
    ws.onmessage = (ev) => this._message(ws, ev.data);
    ws.onclose = (ev) => this._closed(ws, ev);
    ws.onerror = () => { /* onclose follows with the code */ };
  }

  _opened(ws) {
    if (ws !== this.ws) return;
    this.open = true;
    this.everConnected = true;
    this.attempts = 0;
    this.stats.connects++;
    this.lastRx = Date.now();
    this.sentKey = null;
    this._stopPolling();
    this._setState('realtime', 'Live updates over WebSocket');
    this._subscribe();
    clearInterval(this._timers.ping);
    this._timers.ping = setInterval(() => {
      if (!this.open) return;
      if (Date.now() - this.lastRx > DEAD_MS) {
        this._note('no data for a long time: reconnecting');
        this._drop(ws, 4000, 'no data');
        return;
      }
      this._send('ping');
    }, PING_MS);
  }

  /** Forgets a socket we gave up on and handles it as closed. */
  _drop(ws, code, reason) {
    ws.onclose = ws.onmessage = ws.onopen = null;
    try { ws.close(code, reason); } catch { /* already closed */ }
    this._closed(ws, { code: 1006, reason });
  }

  _closed(ws, ev) {
    if (ws && ws !== this.ws) return;
    const wasOpen = this.open;
    this.ws = null;
    this.open = false;
    this.sentKey = null;
    clearInterval(this._timers.ping);
    this.attempts++;
    let delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (this.attempts - 1));
    delay = delay / 2 + Math.random() * (delay / 2);
    if (ev.code === 1008 && wasOpen) delay = 250; // queue overflow: come back at once, with since
    const why = ev.reason ? `${ev.reason} (code ${ev.code})` : `code ${ev.code}`;
    if (ERROR_CODES.has(ev.code) || (ev.code >= 4000 && ev.code < 5000 && ev.code !== 4000)) {
      this._setState('error', `katomon closed the connection: ${why}`);
    } else if (this.state === 'error' && this._authError) {
      // keep the error shown by the REST poll
    } else {
      this._setState('offline', wasOpen ? 'Connection to katomon lost' : 'katomon is not reachable over WebSocket');
    }
    this._note(`closed: ${why}`);
    this.nextRetryAt = Date.now() + delay;
    clearTimeout(this._timers.retry);
    this._timers.retry = setTimeout(() => this._connect(), delay);
    this._emit('status', { state: this.state, detail: this.detail });
    this._startPolling();
  }

  _send(text) {
    if (this.ws && this.open) {
      try { this.ws.send(text); } catch { /* closing */ }
    }
  }

  _setState(state, detail) {
    const changed = state !== this.state || detail !== this.detail;
    this.state = state;
    this.detail = detail;
    if (changed) this._emit('status', { state, detail });
  }

  // ---- messages ---------------------------------------------------------

  _message(ws, data) {
    if (ws !== this.ws) return;
    this.lastRx = Date.now();
    this.stats.messages++;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      this._note('ignored a frame that is not JSON');
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'realtime_update': {
        this.replayUntil = Math.min(this.replayUntil, Date.now());
        const data = msg.data || {};
        for (const [topic, body] of Object.entries(data)) {
          this._emit('state', { topic, body, ts: msg.timestamp, via: 'ws', host: null });
        }
        // remote hosts' latest values (absent without a fleet)
        if (msg.hosts && typeof msg.hosts === 'object') {
          let n = 0;
          for (const [host, topics] of Object.entries(msg.hosts)) {
            if (++n > HOSTS_MAX || !topics || typeof topics !== 'object' || host === this.localHost) continue;
            for (const [topic, body] of Object.entries(topics)) {
              this._emit('state', { topic, body, ts: msg.timestamp, via: 'ws', host });
            }
          }
        }
        break;
      }
      case 'session_event':
        this._event('session_events', msg);
        break;
      case 'system_alert':
        this._event('system_alerts', msg);
        break;
      case 'event':
        if (typeof msg.topic === 'string') this._event(msg.topic, msg);
        break;
      case 'subscription_ack': {
        this.unknown = new Set(msg.unknown || []);
        const hadLocal = this.localHost;
        if (typeof msg.host === 'string') this.localHost = msg.host;
        if (Array.isArray(msg.hosts)) this.knownHosts = msg.hosts.filter((x) => typeof x === 'string').slice(0, HOSTS_MAX);
        if (this.picked && this.picked === this.localHost) this.picked = '';
        // the picked host's history was asked before this host's name was
        // known: ask again now that `since` can name every host
        if (!hadLocal && this.localHost && this.picked) {
          clearTimeout(this._timers.resub);
          this._timers.resub = setTimeout(() => { if (this.open) this._subscribe(); }, 50);
        }
        if (Number.isInteger(msg.epoch)) {
          if (this.epoch !== null && msg.epoch !== this.epoch) this._restarted(msg.epoch);
          this.epoch = msg.epoch;
        }
        this.replayUntil = Date.now() + REPLAY_WINDOW_MS;
        this._emit('ack', { subscriptions: msg.subscriptions || [], unknown: [...this.unknown], host: this.localHost, hosts: this.knownHosts });
        this._emit('subscribed', {});
        this._pickedEpoch(msg.epochs);
        this._baseline(ws, msg.last_seq, msg.hosts_last_seq);
        break;
      }
      case 'replay_gap':
        this._gap(msg);
        break;
      case 'error':
        this._note(`katomon: ${msg.error}: ${msg.detail || ''}`);
        if (msg.error === 'unknown_topic') {
          for (const t of msg.topics || []) this.unknown.add(t);
          this._emit('ack', { subscriptions: this.topics(), unknown: [...this.unknown], host: this.localHost, hosts: this.knownHosts });
        }
        break;
      case 'heartbeat':
      default:
        break; // unknown types are ignored, as the protocol allows
    }
  }

  _event(topic, msg) {
    const host = typeof msg.host === 'string' && msg.host && msg.host !== this.localHost ? msg.host : null;
    if (host) {
      this._remoteEvent(topic, msg, host);
      return;
    }
    const seq = Number.isInteger(msg.seq) ? msg.seq : null;
    if (seq !== null) {
      let seen = this.seen.get(topic);
      if (!seen) this.seen.set(topic, (seen = new Set()));
      if (seen.has(seq)) { this.stats.duplicates++; return; }
      seen.add(seq);
      if (seen.size > SEEN_MAX) seen.delete(seen.values().next().value);
      if (!(this.lastSeq.get(topic) >= seq)) this.lastSeq.set(topic, seq);
    }
    const replayed = this.replayTopics.has(topic) && Date.now() <= this.replayUntil;
    const history = replayed && this.historyFill.has(topic);
    this.stats.events++;
    if (replayed && !history) this.stats.replayed++;
    this._emit('event', { topic, msg, seq, replayed, history, host: null });
  }

  /** The picked remote host's seqs on a topic (made when new); null for another host. */
  _remoteState(topic, host) {
    if (!host || host !== this.picked) return null;
    let r = this.remote.get(topic);
    if (!r) this.remote.set(topic, (r = { seen: new Set(), last: null, epoch: null }));
    return r;
  }

  /**
   * An event of a remote host. The picked one's are deduplicated by its
   * own seq, and a new epoch of it (it restarted) starts its seqs again,
   * like ours on a new ack epoch; other hosts' go on as they come.
   */
  _remoteEvent(topic, msg, host) {
    const seq = Number.isInteger(msg.seq) ? msg.seq : null;
    const r = this._remoteState(topic, host);
    if (r && Number.isInteger(msg.epoch)) {
      if (r.epoch !== null && msg.epoch !== r.epoch) {
        this._note(`${host} restarted (epoch ${r.epoch} -> ${msg.epoch})`);
        r.seen = new Set();
        r.last = null;
        this._emit('gap', { topic, missed: null, reason: 'restart', host });
      }
      r.epoch = msg.epoch;
    }
    if (r && seq !== null) {
      if (r.seen.has(seq)) { this.stats.duplicates++; return; }
      r.seen.add(seq);
      if (r.seen.size > SEEN_MAX) r.seen.delete(r.seen.values().next().value);
      if (!(r.last >= seq)) r.last = seq;
    }
    const replayed = !!r && this.replayTopics.has(topic) && Date.now() <= this.replayUntil;
    const history = replayed && this.pickedFill.has(`${topic}\u0000${host}`);
    this.stats.events++;
    if (replayed && !history) this.stats.replayed++;
    this._emit('event', { topic, msg, seq, replayed, history, host });
  }

  /**
   * An event topic subscribed without `since` (we had seen none of its
   * events) starts "now": learn its current seq from /api/v1/topics, so a
   * later reconnect can ask for exactly what it missed. (Events that arrive
   * meanwhile only raise the mark.) Servers without that endpoint: skipped.
   */
  async _baseline(ws, ackSeqs, hostSeqs) {
    let need = this.topics().filter((t) => EVENT_TOPICS.has(t) && !this.lastSeq.has(t) && !this.unknown.has(t));
    if (ackSeqs && typeof ackSeqs === 'object') { // katomon says where each topic stands
      for (const t of need) {
        const v = ackSeqs[t];
        if (Number.isInteger(v)) this.lastSeq.set(t, v);
        else if (v && typeof v === 'object' && Number.isInteger(v[this.localHost])) this.lastSeq.set(t, v[this.localHost]);
      }
      need = need.filter((t) => !this.lastSeq.has(t));
    }
    // the picked remote host starts "now" too (ack.hosts_last_seq
    // {"B": {topic: seq}}), so a reconnect replays what it published meanwhile
    const theirs = hostSeqs && this.picked && hostSeqs[this.picked];
    if (theirs && typeof theirs === 'object') {
      for (const t of this.topics()) {
        if (!EVENT_TOPICS.has(t) || !Number.isInteger(theirs[t])) continue;
        const r = this._remoteState(t, this.picked);
        if (r && r.last === null && !this.pickedFill.has(`${t}\u0000${this.picked}`)) r.last = theirs[t];
      }
    }
    if (!need.length) return;
    let topics;
    try {
      topics = (await this.api.get('/api/v1/topics', { timeout: 4000 })).topics;
    } catch {
      return;
    }
    if (ws !== this.ws || !Array.isArray(topics)) return;
    for (const t of topics) {
      if (!need.includes(t.name) || !Number.isInteger(t.last_seq) || this.lastSeq.has(t.name)) continue;
      if (!this.topics().includes(t.name)) continue;
      this.lastSeq.set(t.name, t.last_seq);
    }
  }

  /**
   * The ack's `epochs` {"B": E}: the picked remote host restarted while we
   * were away when its epoch is not the one of the seqs we hold; its seqs
   * start again from 0 (the replay that follows shows its new run).
   */
  _pickedEpoch(epochs) {
    if (!this.picked || !epochs || typeof epochs !== 'object' || !Number.isInteger(epochs[this.picked])) return;
    const e = epochs[this.picked];
    let again = false;
    for (const [topic, r] of this.remote) {
      if (r.epoch === null || r.epoch === e) continue;
      this._note(`${this.picked} restarted (epoch ${r.epoch} -> ${e}); replaying its new history`);
      r.seen = new Set();
      r.last = 0;
      r.epoch = e;
      this._emit('gap', { topic, missed: null, reason: 'restart', host: this.picked });
      again = true;
    }
    if (again) {
      clearTimeout(this._timers.resub);
      this._timers.resub = setTimeout(() => { if (this.open) this._subscribe(); }, 50);
    }
  }

  /**
   * katomon restarted (a new epoch in the ack): every seq we hold names an
   * event of the previous run. Start every event topic again from 0; the
   * replay of the new run's events that follows is shown as replayed.
   */
  _restarted(epoch) {
    this._note(`katomon restarted (epoch ${this.epoch} -> ${epoch}); replaying its new history`);
    for (const topic of this.lastSeq.keys()) {
      this.seen.set(topic, new Set());
      this.lastSeq.set(topic, 0);
      this._emit('gap', { topic, missed: null, reason: 'restart', host: null });
    }
    clearTimeout(this._timers.resub);
    this._timers.resub = setTimeout(() => { if (this.open) this._subscribe(); }, 50);
  }

  _gap(msg) {
    const topic = msg.topic;
    const host = typeof msg.host === 'string' && msg.host && msg.host !== this.localHost ? msg.host : null;
    if (host) {
      if (msg.reason === 'since_ahead') { // that host restarted: its seqs began again
        this._note(`${topic}@${host}: ${host} restarted; replaying its new history`);
        const r = this._remoteState(topic, host);
        if (r) { r.seen = new Set(); r.last = 0; }
        this._emit('gap', { topic, missed: null, reason: 'restart', host });
        clearTimeout(this._timers.resub);
        this._timers.resub = setTimeout(() => { if (this.open) this._subscribe(); }, 50);
        return;
      }
      this.stats.gaps++;
      if (this.pickedFill.has(`${topic}\u0000${host}`)) return; // older history simply not kept
      this._emit('gap', { topic, missed: Number(msg.missed) || 0, reason: msg.reason || 'not_in_ring', host });
      return;
    }
    if (msg.reason === 'since_ahead') {
      // katomon restarted: its seqs began again. Start over for this topic.
      this._note(`${topic}: katomon restarted (seq ${msg.requested_since} > ${msg.last_seq}); replaying its new history`);
      // seq 0: the next subscribe asks since 0, as a replay (not as history)
      this.seen.set(topic, new Set());
      this.lastSeq.set(topic, 0);
      this._emit('gap', { topic, missed: null, reason: 'restart', host: null });
      // one subscribe for every topic of this burst of replies
      clearTimeout(this._timers.resub);
      this._timers.resub = setTimeout(() => { if (this.open) this._subscribe(); }, 50);
      return;
    }
    const missed = Number(msg.missed) || 0;
    this.stats.gaps++;
    if (this.historyFill.has(topic)) return; // older history simply not kept
    this._emit('gap', { topic, missed, reason: msg.reason || 'not_in_ring', host: null });
  }

  // ---- HTTP fallback ------------------------------------------------------

  _startPolling() {
    if (this._timers.poll) return;
    this._poll();
    this._timers.poll = setInterval(() => this._poll(), POLL_MS);
  }

  _stopPolling() {
    clearInterval(this._timers.poll);
    this._timers.poll = null;
    this._authError = false;
  }

  get polling() { return !!this._timers.poll; }

  async _poll() {
    if (this.open || !this._timers.poll) return;
    this.stats.polls++;
    this._emit('polltick', {});
    const hosts = [...new Set(this.pollHosts())].slice(0, POLL_HOSTS_MAX);
    const jobs = [];
    for (const topic of this.topics().filter((t) => POLL_ENDPOINTS[t])) {
      const ep = POLL_ENDPOINTS[topic];
      for (const h of ep.localOnly ? [''] : hosts) {
        const host = h && h !== this.localHost ? h : null;
        jobs.push((async () => {
          try {
            const q = host ? `${ep.path.includes('?') ? '&' : '?'}host=${encodeURIComponent(host)}` : '';
            const body = await this.api.get(ep.path + q, { timeout: 4000 });
            if (this.open) return { ok: true };
            this._emit('state', { topic, body: ep.map ? ep.map(body) : body, ts: null, via: 'poll', host });
            return { ok: true };
          } catch (e) {
            // 503: katomon is up but has no value for this topic yet;
            // 404: no such topic, or no such host (any more)
            return { ok: e.status === 503 || e.status === 404, status: e.status, error: e.message };
          }
        })());
      }
    }
    const results = await Promise.all(jobs);
    const bad = results.find((r) => !r.ok);
    if (bad) this.stats.pollFailures++;
    if (bad && bad.status === 401) {
      this._authError = true;
      this._setState('error', 'katomon needs an access token (open the page with ?token=…)');
    }
    this._emit('poll', bad ? { ok: false, error: bad.error, status: bad.status } : { ok: true });
  }

  // ---- misc -------------------------------------------------------------

  _note(text) {
    this.log.push(`${new Date().toISOString()} ${text}`);
    if (this.log.length > 100) this.log.shift();
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
