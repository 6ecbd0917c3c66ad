// sparklines.js - a small CPU trend per container row: inline SVG, no
// library. One history request covers every container (the selector
// katomon_container_cpu_percent alone matches them all); the containers
// topic then extends each line live. Follows the dashboard's TimeRange.

import { h, setText } from './dom.js';
import { fmtPct, get, isNum } from './format.js';
import { CONTAINER_CPU, fetchHistory, seriesHost } from './history.js';
import { LIVE_GAP_MS, Timeline } from './timeline.js';

const W = 72;
const H = 20;
const NS = 'http://www.w3.org/2000/svg';

export class Sparklines extends EventTarget {
  constructor({ api, store, range }) {
    super();
    this.api = api;
    this.store = store;
    this.range = range;
    this.host = store.fleet ? store.fleet.picked : ''; // the host whose containers it draws
    this.lines = new Map(); // container name -> Timeline
    this.state = 'loading';
    this._seq = 0;
    this._refillAt = 0;
    this._onRange = () => this.reload();
    range.addEventListener('change', this._onRange);
    this.reload();
  }

  async reload() {
    const seq = ++this._seq;
    this.state = 'loading';
    let answer = null;
    try {
      const fleet = this.store.fleet;
      answer = await fetchHistory(this.api, [fleet ? fleet.selector(CONTAINER_CPU, this.host) : CONTAINER_CPU], this.range.key);
    } catch {
      answer = null; // the rows still get the live points
    }
    if (seq !== this._seq || this.destroyed) return;
    this.lines = new Map();
    const hostKey = this.store.fleet ? this.store.fleet.key(this.host) : '';
    for (const s of (answer && answer.series) || []) {
      const name = s.labels && s.labels.container;
      if (!name || seriesHost(s) !== hostKey) continue;
      const l = new Timeline();
      l.setHistory(s.points, answer.step);
      this.lines.set(name, l);
    }
    this.state = answer ? 'ready' : 'error';
    this.follow();
    this.dispatchEvent(new Event('change'));
  }

  /** Appends the containers topic's latest sample to each container's line. */
  follow() {
    const body = this.store.get('containers', this.host);
    const t = this.store.sampleTime('containers', this.host);
    const list = body && Array.isArray(body.containers) ? body.containers : [];
    const min = this.store.now() - this.range.ms;
    let behind = false;
    for (const c of list) {
      if (!c || !c.name) continue;
      let l = this.lines.get(c.name);
      if (!l) this.lines.set(c.name, (l = new Timeline()));
      if (t === null) continue;
      const v = c.status === 'running' && isNum(get(c, 'cpu')) ? c.cpu : null;
      if (v !== null && l.last && l.last.y !== null && t - l.last.x > LIVE_GAP_MS) behind = true;
      l.push(t, v);
    }
    // updates missed meanwhile (a hidden tab, a long disconnect): history has them
    if (behind && this.state === 'ready' && Date.now() > this._refillAt) {
      this._refillAt = Date.now() + 30000;
      this.reload();
    }
    for (const l of this.lines.values()) l.trim(min);
  }

  /** The sparkline of one container: an <svg> (empty when no points). */
  svg(name) {
    const l = this.lines.get(name);
    const pts = l ? l.points : [];
    const min = this.store.now() - this.range.ms;
    const span = this.range.ms;
    const vals = pts.filter((p) => p.y !== null).map((p) => p.y);
    const lo = vals.length ? Math.min(...vals) : null;
    const hi = vals.length ? Math.max(...vals) : null;
    const top = Math.max(1, hi || 0); // flat near zero stays near the bottom
    let d = '';
    let pen = false;
    for (const p of pts) {
      if (p.y === null) { pen = false; continue; }
      const x = ((p.x - min) / span) * W;
      const y = H - 1 - (Math.max(0, p.y) / top) * (H - 2);
      d += `${pen ? 'L' : 'M'}${x.toFixed(1)} ${y.toFixed(1)}`;
      pen = true;
    }
    const n = vals.length;
    const label = n ? `CPU, ${this.range.name}: ${fmtPct(lo)} to ${fmtPct(hi)}` : `CPU, ${this.range.name}: no data`;
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('class', 'sparkline');
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('width', String(W));
    svg.setAttribute('height', String(H));
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
    svg.dataset.points = String(n);
    const title = document.createElementNS(NS, 'title');
    setText(title, label);
    svg.append(title);
    if (d) {
      const path = document.createElementNS(NS, 'path');
      path.setAttribute('d', d);
      svg.append(path);
    }
    return h('span', { class: 'spark', dataset: { points: String(n) } }, svg);
  }

  destroy() {
    this.destroyed = true;
    this.range.removeEventListener('change', this._onRange);
  }
}
