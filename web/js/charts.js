// charts.js - live line charts over the last minutes, drawn with Chart.js
// from Debian's libjs-chart.js, which katomon serves under /vendor/. The
// library is optional: without it each chart panel says so and still shows
// the current values in its legend.

import { h, setText } from './dom.js';
import { clockTime, isNum } from './format.js';
import { SERIES_WINDOW_MS } from './store.js';

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

/**
 * One chart panel: title, a legend with the current values, a canvas.
 * series: [{key, label, color: '--css-var'}]; format: value -> text;
 * threshold: {value, label} drawn as a dashed line.
 */
export class LiveChart {
  constructor({ id, title, series, format, yMax, threshold, store }) {
    this.series = series;
    this.format = format;
    this.yMax = yMax;
    this.threshold = threshold;
    this.store = store;
    this.chart = null;
    this.legendValues = new Map();
    const legend = h('ul', { class: 'chart-legend', 'aria-label': `${title}: current values` },
      series.map((s) => {
        const val = h('span', { class: 'legend-value' }, '—');
        this.legendValues.set(s.key, val);
        return h('li', null, h('span', { class: 'swatch', style: `background: var(${s.color})` }), h('span', { class: 'legend-label' }, s.label), val);
      }),
      threshold ? h('li', { class: 'legend-threshold' }, h('span', { class: 'swatch dashed', style: 'color: var(--err)' }),
        h('span', { class: 'legend-label' }, `${threshold.label} ${format(threshold.value, true)}`)) : null);
    this.canvasBox = h('div', { class: 'chart-box' });
    this.el = h('figure', { class: 'panel chart-panel', id },
      h('figcaption', { class: 'chart-head' }, h('h3', { class: 'chart-title' }, title), legend),
      this.canvasBox);
    this._mount();
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
    const canvas = h('canvas', { role: 'img', 'aria-label': `${this.el.querySelector('h3').textContent}, up to the last 5 minutes` });
    this.canvasBox.append(canvas);
    const datasets = this.series.map((s) => ({
      label: s.label, data: [], borderWidth: 2, pointRadius: 0, pointHitRadius: 6,
      tension: s.stepped ? 0 : 0.3, stepped: s.stepped ? 'after' : false,
      spanGaps: false, fill: false, _var: s.color,
    }));
    if (this.threshold) {
      datasets.push({
        label: this.threshold.label, data: [], borderWidth: 1.5, borderDash: [5, 4], pointRadius: 0,
        fill: false, _var: '--err', _threshold: true,
      });
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
            filter: (item) => !item.dataset._threshold,
            callbacks: {
              title: (items) => (items.length ? clockTime(items[0].parsed.x) : ''),
              label: (c) => ` ${c.dataset.label}: ${this.format(c.parsed.y)}`,
            },
          },
        },
        scales: {
          x: {
            type: 'linear', ticks: { maxRotation: 0, autoSkip: false, callback: (v) => this._tick(v) },
            // ticks counted back from now ("now", "−30 s", "−1 min"), not at round epoch values
            afterBuildTicks: (scale) => {
              const ticks = [];
              for (let v = this._now; v >= scale.min - 1; v -= this._step) ticks.unshift({ value: v });
              scale.ticks = ticks;
            },
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

  _tick(v) {
    const s = Math.round((this._now - v) / 1000);
    if (s <= 0) return 'now';
    return s < 60 || s % 60 ? `−${s} s` : `−${s / 60} min`;
  }

  _theme() {
    if (!this.chart) return;
    const muted = cssVar('--muted');
    const grid = cssVar('--grid');
    const font = { family: cssVar('--font'), size: 11 };
    for (const ds of this.chart.data.datasets) {
      const c = cssVar(ds._var);
      ds.borderColor = c;
      ds.backgroundColor = c;
    }
    const { x, y } = this.chart.options.scales;
    x.ticks.color = y.ticks.color = muted;
    x.ticks.font = y.ticks.font = font;
    y.grid.color = grid;
    x.border = { color: grid };
    y.border = { display: false };
  }

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
    if (!this.chart) return;
    const now = Date.now();
    this._now = now;
    // The window grows from the first sample up to SERIES_WINDOW_MS, so a
    // page opened a moment ago still draws full-width lines.
    let oldest = now;
    this.series.forEach((s, i) => {
      const arr = this.store.series.get(s.key) || [];
      if (arr.length && arr[0].x < oldest) oldest = arr[0].x;
      this.chart.data.datasets[i].data = arr.slice();
    });
    const span = Math.min(SERIES_WINDOW_MS, Math.max(30000, now - oldest));
    const min = now - span;
    const narrow = this.canvasBox.clientWidth < 420;
    const steps = [10000, 15000, 30000, 60000, 120000];
    const want = span / (narrow ? 3 : 5);
    this._step = steps.find((st) => st >= want) || 120000;
    if (this.threshold) {
      this.chart.data.datasets[this.series.length].data = [{ x: min, y: this.threshold.value }, { x: now, y: this.threshold.value }];
    }
    const xs = this.chart.options.scales.x;
    xs.min = min;
    xs.max = now;
    this.chart.update('none');
  }

  destroy() {
    this.destroyed = true;
    if (this._mq) this._mq.removeEventListener('change', this._onScheme);
    if (this.chart) this.chart.destroy();
    this.chart = null;
  }
}
