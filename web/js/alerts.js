// alerts.js - the alert history, kept by katomon (alert_manager) and
// mirrored here: loaded over REST (so it survives a reload and a new
// browser), then kept current by system_alert events. After every
// (re)subscription it is reloaded, which also covers alerts published while
// the socket was down; while the socket is down it is polled.
//
// REST: GET /api/v1/alerts?limit=N -> {"alerts":[newest first],"total","unread"}
//       GET /api/v1/alerts/active -> {"active":[{key,type,rule,level}]}
//       POST /api/v1/alerts/read {"ids":[...]} | {"all":true} -> {"marked","unread"}
//       DELETE /api/v1/alerts -> {"cleared"}
//
// The fleet (fleet.js): the history shown is the picked host's, the GETs
// above with ?host=B when a remote host is picked (its alerts as this
// katomon received them), and only that host's system_alert events are
// added live. Another host picked: the list starts again and loads. A
// remote host's history is read-only here (readOnly): its read marks and
// clearing belong to that host (katomon answers 400 to them), so nothing
// of it counts as unread and the actions are off.

const LIMIT = 500;

export const KNOWN_TYPES = ['high_cpu', 'high_memory', 'high_error_rate', 'container_down'];
export const LEVELS = ['error', 'warning', 'info'];

export class AlertStore extends EventTarget {
  constructor(api, conn, fleet) {
    super();
    this.api = api;
    this.conn = conn;
    this.fleet = fleet;
    this.host = fleet ? fleet.picked : ''; // whose alerts these are ('' = this host)
    this.list = [];          // newest first
    this.byId = new Map();
    this.total = 0;
    this.unread = 0;
    this.active = [];
    this.loaded = false;
    this.error = null;
    this.available = true;   // false when katomon has no alert history API
    conn.addEventListener('event', (e) => {
      if (e.detail.topic === 'system_alerts' && this._key(e.detail.host) === this.host) this._batch(e.detail);
    });
    if (fleet) fleet.addEventListener('change', () => this._switch());
    conn.addEventListener('subscribed', () => this.load());
    conn.addEventListener('polltick', () => this.load({ quiet: true }));
  }

  _key(host) {
    return this.fleet ? this.fleet.key(host) : '';
  }

  /** A remote host's alerts: shown, never marked read or cleared here. */
  get readOnly() {
    return !!this.host;
  }

  /** `?host=B` / `&host=B` for the host shown, '' for this host. */
  _q(sep = '?') {
    return this.host ? `${sep}host=${encodeURIComponent(this.host)}` : '';
  }

  /** Another host picked: its history, from the start. */
  _switch() {
    const host = this.fleet.picked;
    if (host === this.host) return;
    this.host = host;
    this.list = [];
    this.byId = new Map();
    this.total = 0;
    this.unread = 0;
    this.active = [];
    this.loaded = false;
    this.error = null;
    this.available = true;
    this._gen = (this._gen || 0) + 1; // answers for the previous host are dropped
    this._loading = null;
    this._changed();
    this.load();
  }

  /** Loads (or reloads) the history; new entries found are announced. */
  async load({ quiet = false } = {}) {
    if (this._loading) return this._loading;
    const gen = this._gen;
    const p = (async () => {
      try {
        const r = await this.api.get(`/api/v1/alerts?limit=${LIMIT}${this._q('&')}`);
        if (gen !== this._gen) return;
        const fresh = [];
        for (const a of r.alerts || []) {
          if (!a || typeof a.id !== 'string') continue;
          if (this.loaded && !this.byId.has(a.id)) fresh.push(a);
        }
        this.list = (r.alerts || []).filter((a) => a && typeof a.id === 'string');
        if (this.readOnly) for (const a of this.list) a.read = true;
        this.byId = new Map(this.list.map((a) => [a.id, a]));
        this.total = Number(r.total) || this.list.length;
        this.unread = this.readOnly ? 0 : Number(r.unread) || 0;
        this.error = null;
        this.available = true;
        const first = !this.loaded;
        this.loaded = true;
        this._changed();
        // alerts that reached the server while we were not listening
        if (!first && fresh.length) this.dispatchEvent(new CustomEvent('new', { detail: { alerts: fresh.reverse(), replayed: true } }));
        this.loadActive();
      } catch (e) {
        if (gen !== this._gen) return;
        // 404: a backend without katomon's alert history (the original
        // dashboard's), or no such host; live alerts are still listed as they come
        if (e.status === 404) { this.available = false; this.loaded = true; }
        if (!quiet || !this.loaded) this.error = e.message;
        this._changed();
      } finally {
        if (this._loading === p) this._loading = null;
      }
    })();
    this._loading = p;
    return p;
  }

  async loadActive() {
    const gen = this._gen;
    try {
      const r = await this.api.get(`/api/v1/alerts/active${this._q()}`);
      if (gen !== this._gen) return;
      this.active = Array.isArray(r.active) ? r.active : [];
      this._changed();
    } catch { /* optional */ }
  }

  _batch({ msg, replayed, history }) {
    if (history) return; // system_alerts history comes from REST
    const alerts = Array.isArray(msg.alerts) ? msg.alerts : [];
    const fresh = [];
    let repeated = false;
    alerts.forEach((a, i) => {
      if (!a || typeof a !== 'object') return;
      // the original protocol's alerts have no id of their own
      const id = typeof a.id === 'string' ? a.id : `${msg.id || 'alert'}#${i}`;
      const known = this.byId.get(id);
      if (known) {
        // a re-send of an alert still holding: its record counts it
        if (a.repeats > (known.repeats || 0)) {
          known.repeats = a.repeats;
          known.last_seen = a.last_seen || msg.timestamp;
          repeated = true;
        }
        return;
      }
      const entry = { ...a, id, timestamp: a.timestamp || msg.timestamp, batch: msg.id, read: this.readOnly };
      if (!entry.state) entry.state = 'firing';
      fresh.push(entry);
    });
    if (!fresh.length) {
      if (repeated) this._changed();
      return;
    }
    for (const e of fresh) this.byId.set(e.id, e);
    this.list = [...fresh.reverse(), ...this.list].slice(0, LIMIT);
    this.total += fresh.length;
    if (!this.readOnly) this.unread += fresh.length;
    this._changed();
    this.dispatchEvent(new CustomEvent('new', { detail: { alerts: fresh.slice().reverse(), replayed } }));
    clearTimeout(this._activeTimer);
    this._activeTimer = setTimeout(() => this.loadActive(), 200);
  }

  /** Distinct types: the known ones plus every one in the history. */
  types() {
    const s = new Set(KNOWN_TYPES);
    for (const a of this.list) if (a.type) s.add(a.type);
    return [...s].sort();
  }

  filtered({ level = '', type = '', state = '' } = {}) {
    return this.list.filter((a) => (!level || a.level === level) && (!type || a.type === type) && (!state || a.state === state));
  }

  async markRead(ids) {
    if (this.readOnly) return;
    ids = ids.filter((id) => this.byId.get(id) && !this.byId.get(id).read);
    if (!ids.length) return;
    for (const id of ids) this.byId.get(id).read = true;
    this.unread = Math.max(0, this.unread - ids.length);
    this._changed();
    try {
      const r = await this.api.post(`/api/v1/alerts/read${this._q()}`, { ids });
      if (r && Number.isInteger(r.unread)) this.unread = r.unread;
      this._changed();
    } catch (e) {
      this._failed('Could not mark the alert as read', e);
    }
  }

  async markAllRead() {
    if (this.readOnly) return;
    for (const a of this.list) a.read = true;
    this.unread = 0;
    this._changed();
    try {
      const r = await this.api.post(`/api/v1/alerts/read${this._q()}`, { all: true });
      if (r && Number.isInteger(r.unread)) this.unread = r.unread;
      this._changed();
    } catch (e) {
      this._failed('Could not mark the alerts as read', e);
    }
  }

  async clearAll() {
    if (this.readOnly) return;
    const keep = { list: this.list, total: this.total, unread: this.unread };
    this.list = [];
    this.byId = new Map();
    this.total = 0;
    this.unread = 0;
    this._changed();
    try {
      await this.api.del(`/api/v1/alerts${this._q()}`);
    } catch (e) {
      Object.assign(this, keep);
      this.byId = new Map(this.list.map((a) => [a.id, a]));
      this._failed('Could not clear the alert history', e);
    }
  }

  _failed(what, e) {
    this.error = `${what}: ${e.message}`;
    this._changed();
    this.load({ quiet: true });
  }

  _changed() {
    this.dispatchEvent(new CustomEvent('change'));
  }
}
