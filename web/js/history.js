// history.js - the charts' past: the time ranges, the range picker shared
// by every chart of a page, and katomon's range API
// (GET /api/v1/history, DESIGN section 9, issue 14).
//
// The range is one for the whole dashboard: picked on any page, it applies
// to every chart and sparkline, is kept in localStorage and written to the
// page's URL query (?range=6h) so a link shows the same view.

import { h } from './dom.js';

const MIN = 60 * 1000;
const HOUR = 60 * MIN;

export const RANGES = [
  { key: '15m', label: '15 m', name: 'the last 15 minutes', ms: 15 * MIN },
  { key: '1h', label: '1 h', name: 'the last hour', ms: HOUR },
  { key: '6h', label: '6 h', name: 'the last 6 hours', ms: 6 * HOUR },
  { key: '24h', label: '24 h', name: 'the last 24 hours', ms: 24 * HOUR },
  { key: '7d', label: '7 d', name: 'the last 7 days', ms: 7 * 24 * HOUR },
];
export const DEFAULT_RANGE = '1h';
const RANGE_KEY = 'katomon.range';

/**
 * Chart line (Store SERIES key) -> katomon series. scale: the chart's unit
 * per the series' (the error rate is a ratio, the chart shows percent).
 */
export const HISTORY_SERIES = {
  'cpu.kato': { name: 'katomon_kato_cpu_percent' },
  'cpu.host': { name: 'katomon_host_cpu_percent' },
  'cpu.containers': { name: 'katomon_containers_cpu_percent' },
  'mem.kato': { name: 'katomon_kato_memory_percent' },
  'mem.host': { name: 'katomon_host_memory_used_percent' },
  'mem.containers': { name: 'katomon_containers_memory_percent' },
  rps: { name: 'katomon_kato_requests_per_second' },
  errors: { name: 'katomon_kato_error_rate_ratio', scale: 100 },
  sessions: { name: 'katomon_sessions_active' },
};

export const CONTAINER_CPU = 'katomon_container_cpu_percent';

export function rangeOf(key) {
  return RANGES.find((r) => r.key === key) || null;
}

/** The dashboard's current range; `change` when it is picked anew. */
export class TimeRange extends EventTarget {
  constructor() {
    super();
    let saved = null;
    try { saved = localStorage.getItem(RANGE_KEY); } catch { /* storage off */ }
    this.range = rangeOf(saved) || rangeOf(DEFAULT_RANGE);
  }

  get key() { return this.range.key; }
  get ms() { return this.range.ms; }
  get name() { return this.range.name; }

  /** Picks a range by key; false when the key is not one of RANGES. */
  set(key) {
    const r = rangeOf(key);
    if (!r) return false;
    try { localStorage.setItem(RANGE_KEY, r.key); } catch { /* storage off */ }
    if (r === this.range) return true;
    this.range = r;
    this.dispatchEvent(new CustomEvent('change', { detail: { key: r.key } }));
    return true;
  }
}

let pickers = 0;

/**
 * The picker: a row of radio buttons (arrow keys move between them, as
 * for any radio group), labelled "Time range". onPick(key) is called when
 * the person picks one; the picker follows range changes made elsewhere.
 * Returns {el, destroy}.
 */
export function rangePicker(range, onPick) {
  const name = `range-${++pickers}`;
  const inputs = RANGES.map((r) => h('input', {
    type: 'radio', name, value: r.key, 'aria-label': r.name.replace(/^the last/, 'Last'),
    checked: r.key === range.key,
    onchange: (e) => { if (e.target.checked) onPick(r.key); },
  }));
  const el = h('fieldset', { class: 'range-picker', dataset: { range: range.key } },
    h('legend', { class: 'sr-only' }, 'Time range'),
    h('span', { class: 'range-label', 'aria-hidden': 'true' }, 'Range'),
    RANGES.map((r, i) => h('label', { class: 'range-opt', title: r.name.replace(/^the last/, 'Last') }, inputs[i], h('span', null, r.label))));
  const sync = () => {
    el.dataset.range = range.key;
    for (const i of inputs) i.checked = i.value === range.key;
  };
  range.addEventListener('change', sync);
  return { el, destroy: () => range.removeEventListener('change', sync) };
}

/** The query string of a history request: several selectors, one range. */
export function historyQuery(selectors, since) {
  const q = new URLSearchParams();
  for (const s of selectors) q.append('series', s);
  q.set('since', since);
  return q.toString();
}

/**
 * GET /api/v1/history for the selectors over the last `since` (a RANGES
 * key). Resolves to the answer ({from, to, step, downsampled, series}), or
 * rejects with the Api's error (404 on a katomon without history, 503 when
 * [history] is disabled).
 */
export function fetchHistory(api, selectors, since) {
  return api.get(`/api/v1/history?${historyQuery(selectors, since)}`, { timeout: 15000 });
}

/**
 * The answer's series named `name` with these labels (any others allowed).
 * host: a host key ('' = this host: no host label; "B": host="B"), or
 * null for any host.
 */
export function findSeries(answer, name, labels = {}, host = null) {
  const list = (answer && Array.isArray(answer.series)) ? answer.series : [];
  return list.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels && s.labels[k] === v)
    && (host === null || seriesHost(s) === host)) || null;
}

/** The host key of a series of a history answer: its host label, '' without one. */
export function seriesHost(s) {
  return (s && s.labels && typeof s.labels.host === 'string') ? s.labels.host : '';
}

const tf = (opts) => new Intl.DateTimeFormat(undefined, opts);
const HM = tf({ hour: '2-digit', minute: '2-digit' });
const DAY = tf({ month: 'short', day: 'numeric' });
const DAYHM = tf({ weekday: 'short', hour: '2-digit', minute: '2-digit' });

/** "14:05" today, "Tue 14:05" before: when history begins, for the notes. */
export function whenText(ms) {
  const d = new Date(ms);
  return d.toDateString() === new Date().toDateString() ? HM.format(d) : DAYHM.format(d);
}

const TICK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880].map((m) => m * MIN);

/**
 * Ticks for a time axis from min to max (ms): round local times, about
 * `want` of them. Returns [{value, label}].
 */
export function timeTicks(min, max, want) {
  const span = max - min;
  const step = TICK_STEPS.find((s) => span / s <= want) || TICK_STEPS[TICK_STEPS.length - 1];
  const tz = new Date(min).getTimezoneOffset() * MIN;
  let v = Math.ceil((min - tz) / step) * step + tz; // round in local time
  const ticks = [];
  for (; v <= max; v += step) {
    const d = new Date(v);
    const midnight = d.getHours() === 0 && d.getMinutes() === 0;
    ticks.push({ value: v, label: step >= 1440 * MIN || (span > 24 * HOUR && midnight) ? DAY.format(d) : HM.format(d) });
  }
  return ticks;
}

/**
 * A page's picker: takes ?range= from the page's URL when there is one,
 * and writes the range picked back to it (setQuery: the router's).
 */
export function pageRangePicker({ range, params, setQuery }) {
  const fromUrl = params && params.get('range');
  if (fromUrl) range.set(fromUrl);
  return rangePicker(range, (key) => {
    range.set(key);
    if (setQuery) setQuery({ range: key });
  });
}
