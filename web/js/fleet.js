// fleet.js - the hosts this katomon knows and the one the dashboard shows.
//
// A katomon bridged over Redis (redis_bridge) serves the values of every
// host of the fleet: `realtime_update` carries this host's values in
// `data` and each remote host's in `hosts` {"B": {topic: value}}; events
// of a remote host carry "host":"B"; the core state topic `hosts` lists
// every host with up / last_seen / age_s (README "Fleet"). Without a
// bridge the fleet is this host alone, and nothing here shows.
//
// The picked host: every page shows one host's data, this host's unless
// another is picked. '' stands for this host, whatever its name (which is
// only known once katomon said it: subscription_ack's "host" or the hosts
// topic's "local"), so a page never waits for the name to show local
// data. The pick is kept in localStorage and in the page's URL (?host=B),
// so a link shows the same host; the URL wins over the stored pick.
//
// Events dispatched: `change` {picked} when another host is picked,
// `hosts` when the list of hosts or their status changed.

const HOST_KEY = 'katomon.host';
const HOST_RE = /^[A-Za-z0-9_.-]{1,64}$/; // km_host_name_valid
export const MAX_HOSTS = 1024; // [core] max_hosts' upper bound: never hold more

/** A valid host name, or '' (invalid names are ignored, never shown). */
export function hostName(s) {
  return typeof s === 'string' && HOST_RE.test(s) ? s : '';
}

function readStored() {
  try { return hostName(localStorage.getItem(HOST_KEY)); } catch { return ''; }
}

export class Fleet extends EventTarget {
  constructor(conn) {
    super();
    this.conn = conn;
    this.local = '';            // this katomon's host name, once known
    this.info = null;           // latest body of the `hosts` topic, or null
    this.infoAt = 0;            // when it came (browser clock, ms)
    this.named = new Set();     // remote names seen elsewhere (ack, realtime_update, events)
    const fromUrl = hostName(new URLSearchParams(location.search).get('host'));
    this.picked = fromUrl || readStored(); // '' = this host
    if (fromUrl) this._store(fromUrl);
    conn.addEventListener('ack', (e) => this._ack(e.detail));
    conn.addEventListener('state', (e) => this._state(e.detail));
    conn.addEventListener('event', (e) => this._seen(e.detail.host));
  }

  // ---- what katomon says ---------------------------------------------------

  _ack({ host, hosts }) {
    let changed = false;
    if (hostName(host) && host !== this.local) changed = this._setLocal(host);
    for (const n of Array.isArray(hosts) ? hosts : []) changed = this._seen(n, true) || changed;
    if (changed) this._hostsChanged();
  }

  _state({ topic, body, host }) {
    if (host) {
      this._seen(host);
      return;
    }
    if (topic !== 'hosts' || !body || typeof body !== 'object' || !Array.isArray(body.hosts)) return;
    this.info = body;
    this.infoAt = Date.now();
    if (hostName(body.local) && body.local !== this.local) this._setLocal(body.local);
    this._hostsChanged();
  }

  /** A remote host named by a message; true when it is new. */
  _seen(name, quiet = false) {
    name = hostName(name);
    if (!name || name === this.local || this.named.has(name) || this.named.size >= MAX_HOSTS) return false;
    this.named.add(name);
    if (!quiet) this._hostsChanged();
    return true;
  }

  _setLocal(name) {
    this.local = name;
    this.named.delete(name);
    if (this.picked === name) { // a link to this host by its name: it is this host
      this.picked = '';
      this._store('');
      this.dispatchEvent(new CustomEvent('change', { detail: { picked: '' } }));
    }
    return true;
  }

  _hostsChanged() {
    this.dispatchEvent(new CustomEvent('hosts'));
  }

  // ---- the hosts -----------------------------------------------------------

  /** The key of a host's data: '' for this host, else its name. */
  key(name) {
    return !name || name === this.local ? '' : name;
  }

  /** Every host: this one first, then the hosts topic's order, then others by name. */
  list() {
    const rows = [];
    const seen = new Set();
    const add = (r) => {
      const key = r.local ? '' : r.name;
      if (seen.has(key) || rows.length >= MAX_HOSTS) return;
      seen.add(key);
      rows.push(r);
    };
    const info = this.info && Array.isArray(this.info.hosts) ? this.info.hosts : [];
    const fresh = this.info ? (Date.now() - this.infoAt) / 1000 : 0; // seconds since the topic's value
    for (const x of info) {
      if (!x || !hostName(x.name)) continue;
      const local = x.local === true || x.name === this.local;
      add({
        ...x,
        local,
        known: true,
        // the topic says age at its publish time; it is republished every
        // second while remote hosts exist, so this is a small correction
        age_s: typeof x.age_s === 'number' ? x.age_s + (local ? 0 : fresh) : null,
      });
    }
    if (!seen.has('')) add({ name: this.local || '', local: true, up: true, known: true });
    for (const n of [...this.named].sort()) add({ name: n, local: false, up: null, known: false });
    return rows;
  }

  /** Number of hosts known (this one included). */
  get size() {
    return this.list().length;
  }

  /** More than one host: lists label their host. */
  get multi() {
    return this.size > 1 || this.picked !== '';
  }

  /** The picked host's name ('' for this host when its name is not known yet). */
  get pickedName() {
    return this.picked || this.local;
  }

  /** The hosts topic's entry of a host ('' = this one), or null. */
  entry(name) {
    const key = this.key(name);
    return this.list().find((r) => (r.local ? '' : r.name) === key) || null;
  }

  /** What to call a host in the page: its name, "this host" while unnamed. */
  label(name) {
    const key = this.key(name);
    if (key) return key;
    return this.local || 'this host';
  }

  // ---- the pick ------------------------------------------------------------

  /** Picks a host by name ('' or this host's name: this host). */
  pick(name) {
    const key = this.key(hostName(name));
    this._store(key);
    if (key === this.picked) return false;
    this.picked = key;
    this.dispatchEvent(new CustomEvent('change', { detail: { picked: key } }));
    return true;
  }

  _store(key) {
    try {
      if (key) localStorage.setItem(HOST_KEY, key);
      else localStorage.removeItem(HOST_KEY);
    } catch { /* storage off */ }
  }

  /** `?host=` (with &) for a REST path when a remote host is picked, else ''. */
  query(name = this.picked, sep = '?') {
    const key = this.key(name);
    return key ? `${sep}host=${encodeURIComponent(key)}` : '';
  }

  /**
   * A history selector of the picked host's series: a remote host's
   * series carry host="B" (this host's carry no host label); with remote
   * hosts about, this host's are asked with host="" (no such label), else
   * the bare name, as before there was a fleet.
   */
  selector(name, host = this.picked) {
    const key = this.key(host);
    if (key) return `${name}{host="${key}"}`;
    return this.size > 1 ? `${name}{host=""}` : name;
  }
}
