// charts.js - the dashboard's line charts, drawn with Chart.js from
// Debian's libjs-chart.js, which katomon serves under /vendor/. The library
// is optional: without it each chart panel says so and still shows the
// current values in its legend.
//
// A chart covers the dashboard's time range (history.js): on mount and on
// every range change it asks katomon's history for its lines (one request
// per chart), then follows the live stream from the store (timeline.js
// joins the two). A downsampled answer is drawn as its average with a
// light min/max band.
//
// For the tests and for debugging, the figure carries what it shows:
// data-state (loading, ready, error), data-range, data-since (the since= of
// the last request), data-points, data-history-points, data-first and
// data-last (unix seconds), data-step (seconds); el.kmChart is the chart.

import { h, setText } from './dom.js';
import { clockTime, isNum } from './format.js';
import { LIVE_GAP_MS, Timeline } from './timeline.js';
import { HISTORY_SERIES, fetchHistory, findSeries, timeTicks, whenText } from './history.js';

// Debian 12's libjs-chart.js (Chart.js 3) ships chart.min.js; Chart.js 4
// packages ship chart.umd.js instead. Both are UMD builds defining window.Chart.
export const CHART_LIB_URLS = ['chart.min.js', 'chart.umd.js']
  .map((f) => new URL(`../vendor/chart.js/${f}`, import.meta.url).href);

let libPromise = null;

function loadScript(src) {
  return new Promise((resolve) => {
    const s = document.createElement('script');
    s.src = src;
    s.async = true;
    s.onload = () => resolve(true);
    s.onerror = () => { s.remove(); resolve(false); };
    document.head.append(s);
  });
}

/** Loads Chart.js once; resolves to the Chart class, or null when unavailable. */
export function loadChartLib() {
  if (libPromise) return libPromise;
  libPromise = (async () => {
    for (const url of CHART_LIB_URLS) {
      if (window.Chart) break;
      await loadScript(url);
    }
    return window.Chart || null;
  })();
  return libPromise;
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** '#2563eb' -> 'rgba(37, 99, 235, a)'; other colour forms are left alone. */
function alpha(color, a) {
  const m = /^#([0-9a-f]{6})$/i.exec(color);
  if (!m) return color;
  const n = parseInt(m[1], 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}

const REFILL_MS = 30000; // at most one history reload a line lost live points for

/**
 * One chart panel: title, a legend with the current values, a canvas.
 * series: [{key, label, color: '--css-var', stepped}] (keys of Store
 * SERIES and HISTORY_SERIES); format: value -> text; threshold: {value,
 * label} drawn as a dashed line; api, range: where history comes from and
 * the TimeRange it covers.
 */
export class LiveChart {
  constructor({ id, title, series, format, yMax, threshold, store, api, range }) {
    this.title = title;
    this.series = series;
    this.format = format;
    this.yMax = yMax;
    this.threshold = threshold;
    this.store = store;
    this.fleet = store && store.fleet;
    this.host = this.fleet ? this.fleet.picked : ''; // the host whose history it shows
    this.api = api;
    this.range = range;
    this.chart = null;
    this.lines = series.map(() => new Timeline());
    this.answer = null;
    this.error = null;
    this._seq = 0;
    this._refillAt = 0;
    this._ticks = [];
    this._labels = new Map();
    this.legendValues = new Map();
    const legend = h('ul', { class: 'chart-legend', 'aria-label': `${title}: current values` },
      series.map((s) => {
        const val = h('span', { class: 'legend-value' }, '—');
        this.legendValues.set(s.key, val);
        return h('li', null, h('span', { class: 'swatch', style: `background: var(${s.color})` }), h('span', { class: 'legend-label' }, s.label), val);
      }),
      threshold ? h('li', { class: 'legend-threshold' }, h('span', { class: 'swatch dashed', style: 'color: var(--err)' }),
        h('span', { class: 'legend-label' }, `${threshold.label} ${format(threshold.value, true)}`)) : null);
    this.emptyEl = h('p', { class: 'chart-empty', role: 'status', hidden: true });
    this.noteEl = h('p', { class: 'chart-note', hidden: true });
    this.canvasBox = h('div', { class: 'chart-box' }, this.emptyEl);
    this.el = h('figure', { class: 'panel chart-panel', id, dataset: { state: 'loading', range: range.key } },
      h('figcaption', { class: 'chart-head' }, h('h3', { class: 'chart-title' }, title), legend),
      this.canvasBox, this.noteEl);
    this.el.kmChart = this;
    this._onRange = () => this.reload();
    range.addEventListener('change', this._onRange);
    this._mount();
    this.reload();
  }

  /** Loads the history of the current range, then goes on live. */
  async reload() {
    const seq = ++this._seq;
    const range = this.range.range;
    this.el.dataset.state = 'loading';
    this.el.dataset.since = range.key;
    this.el.setAttribute('aria-busy', 'true');
    let answer = null;
    let error = null;
    try {
      // the picked host's series (fleet.js): host="B" for a remote host
      const sel = (name) => (this.fleet ? this.fleet.selector(name, this.host) : name);
      answer = await fetchHistory(this.api, this.series.map((s) => sel(HISTORY_SERIES[s.key].name)), range.key);
    } catch (e) {
      error = e;
    }
    if (seq !== this._seq || this.destroyed) return; // a newer range was picked meanwhile
    this.answer = answer;
    this.error = error;
    this.series.forEach((s, i) => {
      const hs = HISTORY_SERIES[s.key];
      const found = answer ? findSeries(answer, hs.name, {}, this.fleet ? this.fleet.key(this.host) : null) : null;
      this.lines[i].setHistory(found ? found.points : [], answer ? answer.step : 1, hs.scale || 1);
    });
    this.downsampled = !!(answer && answer.downsampled);
    this.el.dataset.range = range.key;
    this.el.dataset.state = error ? 'error' : 'ready';
    this.el.removeAttribute('aria-busy');
    if (this._canvas) this._canvas.setAttribute('aria-label', `${this.title}, ${range.name}`);
    this.update();
  }

  async _mount() {
    const Chart = await loadChartLib();
    if (this.destroyed) return;
    if (!Chart) {
      this.canvasBox.append(h('p', { class: 'chart-unavailable' },
        'Charts unavailable: the chart library is not installed on the katomon host (Debian package libjs-chart.js).'));
      this.el.classList.add('no-chart');
      return;
    }
    const canvas = h('canvas', { role: 'img', 'aria-label': `${this.title}, ${this.range.name}` });
    this._canvas = canvas;
    this.canvasBox.append(canvas);
    const datasets = this.series.map((s) => ({
      label: s.label, data: [], borderWidth: 2, pointRadius: 0, pointHitRadius: 6,
      tension: s.stepped ? 0 : 0.3, stepped: s.stepped ? 'after' : false,
      spanGaps: false, fill: false, _var: s.color,
    }));
    if (this.threshold) {
      datasets.push({
        label: this.threshold.label, data: [], borderWidth: 1.5, borderDash: [5, 4], pointRadius: 0,
        fill: false, _var: '--err', _aux: true,
      });
    }
    // min/max band of each line (filled only for downsampled answers)
    this._band = datasets.length;
    for (const s of this.series) {
      const band = { data: [], borderWidth: 0, pointRadius: 0, pointHitRadius: 0, tension: 0, spanGaps: false, _var: s.color, _aux: true };
      datasets.push({ ...band, label: `${s.label} min`, fill: false });
      datasets.push({ ...band, label: `${s.label} max`, fill: '-1', _band: true });
    }
    this.chart = new Chart(canvas, {
      type: 'line',
      data: { datasets },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, parsing: false, normalized: true,
        interaction: { mode: 'nearest', axis: 'x', intersect: false },
        plugins: {
          legend: { display: false },
          tooltip: {
            filter: (item) => !item.dataset._aux,
            callbacks: {
              title: (items) => (items.length ? this._when(items[0].parsed.x) : ''),
              label: (c) => ` ${c.dataset.label}: ${this.format(c.parsed.y)}`,
            },
          },
        },
        scales: {
          x: {
            type: 'linear', ticks: { maxRotation: 0, autoSkip: false, callback: (v) => this._labels.get(v) ?? '' },
            // round local times ("14:30", "Tue 3"), not round epoch values
            afterBuildTicks: (scale) => { scale.ticks = this._ticks.map((t) => ({ value: t.value })); },
            grid: { display: false },
          },
          y: {
            beginAtZero: true, suggestedMax: this.yMax,
            ticks: { maxTicksLimit: 5, callback: (v) => this.format(v, true) },
          },
        },
      },
    });
    this._theme();
    this._mq = matchMedia('(prefers-color-scheme: dark)');
    this._onScheme = () => { this._theme(); this.update(); };
    this._mq.addEventListener('change', this._onScheme);
    this.update();
  }

  _when(x) {
    return this.range.ms <= 3600 * 1000 ? clockTime(x) : `${whenText(x)}`;
  }

  _theme() {
    if (!this.chart) return;
    const muted = cssVar('--muted');
    const grid = cssVar('--grid');
    const font = { family: cssVar('--font'), size: 11 };
    for (const ds of this.chart.data.datasets) {
      const c = cssVar(ds._var);
      ds.borderColor = c;
      ds.backgroundColor = ds._band ? alpha(c, 0.14) : c;
    }
    const { x, y } = this.chart.options.scales;
    x.ticks.color = y.ticks.color = muted;
    x.ticks.font = y.ticks.font = font;
    y.grid.color = grid;
    x.border = { color: grid };
    y.border = { display: false };
  }

  /** Follows the store (called on every live update) and redraws. */
  update() {
    let any = false;
    for (const s of this.series) {
      const arr = this.store.series.get(s.key) || [];
      let last = null;
      for (let i = arr.length - 1; i >= 0; i--) if (arr[i].y !== null) { last = arr[i].y; break; }
      if (isNum(last)) any = true;
      const el = this.legendValues.get(s.key);
      setText(el, isNum(last) ? this.format(last) : '—');
      el.parentElement.classList.toggle('no-data', !isNum(last));
    }
    this.el.classList.toggle('empty', !any);
    const now = this.store.now();
    const min = now - this.range.ms;
    const loading = this.el.dataset.state === 'loading' && !this.answer && !this.error;
    this.series.forEach((s, i) => {
      const line = this.lines[i];
      const arr = this.store.series.get(s.key) || [];
      // live points lost meanwhile (a hidden tab, a long disconnect): ask history again
      if (!loading && line.last && arr.length && arr[0].x > line.last.x + LIVE_GAP_MS) this._refill();
      line.follow(arr);
      line.trim(min);
    });
    this._describe(min);
    if (!this.chart) return;
    this.series.forEach((s, i) => {
      const pts = this.lines[i].points;
      const ds = this.chart.data.datasets;
      ds[i].data = pts.slice();
      const band = this.downsampled;
      ds[this._band + 2 * i].data = band ? pts.map((p) => ({ x: p.x, y: p.min })) : [];
      ds[this._band + 2 * i + 1].data = band ? pts.map((p) => ({ x: p.x, y: p.max })) : [];
    });
    if (this.threshold) {
      this.chart.data.datasets[this.series.length].data = [{ x: min, y: this.threshold.value }, { x: now, y: this.threshold.value }];
    }
    const narrow = this.canvasBox.clientWidth < 420;
    this._ticks = timeTicks(min, now, narrow ? 3 : 6);
    this._labels = new Map(this._ticks.map((t) => [t.value, t.label]));
    const xs = this.chart.options.scales.x;
    xs.min = min;
    xs.max = now;
    this.chart.update('none');
  }

  /** The data attributes, the "no data" message and the history note. */
  _describe(min) {
    const d = this.el.dataset;
    let points = 0, hist = 0, first = null, last = null, histFirst = null;
    for (const l of this.lines) {
      points += l.count();
      hist += l.historyCount;
      const f = l.first();
      if (f !== null && (first === null || f < first)) first = f;
      if (l.historyCount && f !== null && (histFirst === null || f < histFirst)) histFirst = f;
      const p = l.last;
      if (p && (last === null || p.x > last)) last = p.x;
    }
    d.points = String(points);
    d.historyPoints = String(hist);
    d.first = first === null ? '' : String(first / 1000);
    d.last = last === null ? '' : String(last / 1000);
    d.step = this.answer ? String(this.answer.step) : '';
    const ready = d.state !== 'loading';
    this.emptyEl.hidden = !(ready && points === 0);
    setText(this.emptyEl, this.error
      ? `No data for this range: katomon's history is unavailable (${this.error.message}).`
      : 'No data for this range');
    let note = '';
    if (this.error && points) note = `History unavailable (${this.error.message}): showing the live stream since this page opened.`;
    else if (this.answer && points && histFirst === null) note = 'katomon has no history for this range: showing the live stream since this page opened.';
    else if (this.answer && histFirst !== null && histFirst - min > Math.max(3 * (this.answer.step || 1) * 1000, 60000)) {
      note = `katomon has no history before ${whenText(histFirst)}.`;
    }
    setText(this.noteEl, note);
    this.noteEl.hidden = !note;
  }

  _refill() {
    const now = Date.now();
    if (now < this._refillAt) return;
    this._refillAt = now + REFILL_MS;
    this.reload();
  }

  /** Timestamps (ms) of line i, gap markers included: for the tests. */
  timestamps(i = 0) {
    return this.lines[i].points.map((p) => p.x);
  }

  destroy() {
    this.destroyed = true;
    this.range.removeEventListener('change', this._onRange);
    if (this._mq) this._mq.removeEventListener('change', this._onScheme);
    if (this.chart) this.chart.destroy();
    this.chart = null;
  }
}
