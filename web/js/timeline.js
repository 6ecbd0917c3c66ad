// timeline.js - the points of one chart line (or one sparkline): katomon's
// history first, then the live stream appended to it.
//
// Times are ms on katomon's clock (the history's t * 1000, the stream's
// update timestamps: see Store.now). The line keeps one rule: x strictly
// increasing, so a live point at or before the last point held is dropped
// (the history already has it) and the first live point after the history
// simply continues the line. Holes (katomon down, a source failing) become
// a null point, which the chart draws as a gap, never as a straight line.
//
// A downsampled history (step > 1 s) keeps that resolution live too: the
// stream's points within one step of the last committed point are folded
// into one provisional point (average, min, max) that moves with the
// newest sample, so a week-long chart kept open does not grow by one point
// a second.

import { isNum } from './format.js';

/** Live updates may be seconds apart ([websocket] update_interval). */
export const LIVE_GAP_MS = 12000;

export class Timeline {
  constructor() {
    this.points = []; // {x, y, min, max}; y === null: a gap
    this.step = 1000; // resolution (ms) of the history loaded
    this.historyCount = 0; // points that came from history
    this.historyLast = null; // x of the last history point
    this._tail = null; // the provisional live point: {sum, n}
    this._committed = null; // x of the last point that is final
  }

  /**
   * Replaces everything with history points [[t, v(, min, max)], ...]
   * (t in unix seconds, ascending), `step` seconds apart at most, scaled.
   */
  setHistory(raw, step, scale = 1) {
    this.points = [];
    this.step = Math.max(1, Number(step) || 1) * 1000;
    this._tail = null;
    const gapAfter = 2.5 * this.step;
    let prev = null;
    for (const p of Array.isArray(raw) ? raw : []) {
      if (!Array.isArray(p) || !isNum(p[0])) continue;
      const x = p[0] * 1000;
      if (prev !== null && x <= prev) continue;
      const num = (v) => (isNum(v) ? v * scale : null);
      const y = num(p[1]);
      if (prev !== null && x - prev > gapAfter) this.points.push({ x: prev + 1, y: null, min: null, max: null });
      this.points.push({ x, y, min: p.length > 2 ? num(p[2]) : y, max: p.length > 3 ? num(p[3]) : y });
      prev = x;
    }
    this.historyCount = this.points.length;
    this.historyLast = prev;
    this._committed = prev;
  }

  get last() {
    return this.points.length ? this.points[this.points.length - 1] : null;
  }

  /** Appends one live sample (null y: the source has no value now). */
  push(x, y) {
    if (!isNum(x)) return;
    const last = this.last;
    if (last && x <= last.x) return;
    const v = isNum(y) ? y : null;
    if (last && last.y !== null && x - last.x > Math.max(LIVE_GAP_MS, 2.5 * this.step)) {
      this.points.push({ x: last.x + 1, y: null, min: null, max: null });
      this._tail = null;
      this._committed = last.x + 1;
    }
    // Within one step of the last final point: fold into the provisional one.
    if (this.step > 1000 && this._committed !== null && x - this._committed < this.step && v !== null) {
      if (this._tail && last && last.y !== null) {
        this._tail.sum += v;
        this._tail.n += 1;
        last.x = x;
        last.y = this._tail.sum / this._tail.n;
        last.min = Math.min(last.min, v);
        last.max = Math.max(last.max, v);
        return;
      }
      this._tail = { sum: v, n: 1 };
      this.points.push({ x, y: v, min: v, max: v });
      return;
    }
    this._tail = null;
    this._committed = x;
    if (v === null && (!last || last.y === null)) return; // one gap marker is enough
    this.points.push({ x, y: v, min: v, max: v });
  }

  /** Appends the live points of a store series ([{x, y}]) newer than the line. */
  follow(arr) {
    if (!arr) return;
    const last = this.last;
    let i = arr.length;
    while (i > 0 && (!last || arr[i - 1].x > last.x)) i--;
    for (; i < arr.length; i++) {
      // the store's own gap markers (x = previous + 1 ms) stay gaps here
      if (arr[i].y === null) {
        const l = this.last;
        if (l && l.y !== null) this.points.push({ x: arr[i].x, y: null, min: null, max: null });
        continue;
      }
      this.push(arr[i].x, arr[i].y);
    }
  }

  /** Drops points before `min` (ms), keeping the line's start honest. */
  trim(min) {
    let n = 0;
    while (n < this.points.length && this.points[n].x < min) n++;
    if (n) {
      this.points.splice(0, n);
      this.historyCount = Math.max(0, this.historyCount - n);
    }
    while (this.points.length && this.points[0].y === null) {
      this.points.shift();
      this.historyCount = Math.max(0, this.historyCount - 1);
    }
  }

  /** Points with a value. */
  count() {
    let n = 0;
    for (const p of this.points) if (p.y !== null) n++;
    return n;
  }

  first() {
    const p = this.points.find((q) => q.y !== null);
    return p ? p.x : null;
  }

  lastValue() {
    for (let i = this.points.length - 1; i >= 0; i--) if (this.points[i].y !== null) return this.points[i].y;
    return null;
  }
}
