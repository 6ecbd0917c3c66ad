// pages/overview.js - KATO cards, host cards, live charts, containers table.
// Subscribes to metrics, containers, host and kato_health.

import { h, replace, setText } from '../dom.js';
import {
  DASH, fmtBytes, fmtDuration, fmtFixed, fmtFraction, fmtInt, fmtNum, fmtPct, fmtSeconds, get, isNum,
} from '../format.js';
import { LiveChart } from '../charts.js';
import { card, emptyState, sourceChip } from '../ui.js';

export const TOPICS = ['metrics', 'containers', 'host', 'kato_health'];
export const ERROR_RATE_THRESHOLD = 0.05; // the original dashboard's warning level

const pct = (v, axis) => (axis ? `${v} %` : fmtPct(v));

function section(id, title, chip, ...content) {
  return h('section', { class: 'section', id, 'aria-labelledby': `${id}-h` },
    h('div', { class: 'section-head' }, h('h2', { id: `${id}-h` }, title), chip ? chip.el : null),
    ...content);
}

export function mount({ conn, store }) {
  const release = conn.claim('overview', TOPICS);

  // ---- KATO ----
  const katoChip = sourceChip();
  const health = h('span', { class: 'health-pill', hidden: true });
  const katoNotice = h('p', { class: 'notice', role: 'status', hidden: true });
  const k = {
    sessions: card('Active sessions', { key: 'active_sessions' }),
    requests: card('Total requests', { key: 'total_requests' }),
    errors: card('Error rate', { key: 'error_rate' }),
    rps: card('Requests / s', { key: 'requests_per_second' }),
    latency: card('Avg response time', { key: 'average_response_time' }),
    procs: card('Processors', { key: 'processors' }),
  };
  const katoSection = section('kato', 'KATO service', katoChip,
    katoNotice, h('dl', { class: 'cards' }, Object.values(k).map((c) => c.el)));
  katoSection.querySelector('.section-head').insertBefore(health, katoChip.el);

  // ---- host ----
  const hostChip = sourceChip();
  const hostName = h('span', { class: 'section-note' });
  const hc = {
    cpu: card('CPU', { key: 'host_cpu' }),
    mem: card('Memory', { key: 'host_memory' }),
    load: card('Load average', { key: 'host_load' }),
    uptime: card('Uptime', { key: 'host_uptime' }),
  };
  const hostNotice = h('p', { class: 'notice', role: 'status', hidden: true });
  const hostSection = section('host', 'Host', hostChip, hostNotice, h('dl', { class: 'cards cards-4' }, Object.values(hc).map((c) => c.el)));
  hostSection.querySelector('h2').append(hostName);

  // ---- charts ----
  const charts = [
    new LiveChart({
      id: 'chart-cpu', title: 'CPU', store, format: pct, yMax: 100,
      series: [
        { key: 'cpu.kato', label: 'KATO', color: '--s1' },
        { key: 'cpu.host', label: 'Host', color: '--s2' },
        { key: 'cpu.containers', label: 'Containers', color: '--s3' },
      ],
    }),
    new LiveChart({
      id: 'chart-memory', title: 'Memory', store, format: pct, yMax: 100,
      series: [
        { key: 'mem.kato', label: 'KATO', color: '--s1' },
        { key: 'mem.host', label: 'Host', color: '--s2' },
        { key: 'mem.containers', label: 'Containers', color: '--s3' },
      ],
    }),
    new LiveChart({
      id: 'chart-rps', title: 'Requests per second', store, format: (v) => fmtNum(v),
      series: [{ key: 'rps', label: 'Requests / s', color: '--s1' }],
    }),
    new LiveChart({
      id: 'chart-errors', title: 'Error rate', store, format: (v, axis) => (axis ? `${v} %` : fmtFraction(v / 100)), yMax: 10,
      series: [{ key: 'errors', label: 'Error rate', color: '--s4' }],
      threshold: { value: ERROR_RATE_THRESHOLD * 100, label: 'Threshold' },
    }),
  ];
  const chartSection = section('charts', 'Live charts', null, h('div', { class: 'charts' }, charts.map((c) => c.el)));
  chartSection.querySelector('h2').append(h('span', { class: 'section-note' }, 'fed by the live stream, up to 5 minutes'));

  // ---- containers ----
  const ctChip = sourceChip();
  const ctSummary = h('p', { class: 'section-summary' });
  const ctBody = h('div', { class: 'table-wrap' });
  const ctSection = section('containers', 'Containers', ctChip, ctSummary, ctBody);

  const el = h('section', { class: 'page page-overview' },
    h('header', { class: 'page-head' },
      h('h1', { tabindex: '-1' }, 'Overview'),
      h('p', { class: 'page-sub' }, 'The KATO service, the host and its containers, live.')),
    katoSection, hostSection, chartSection, ctSection);

  // ---- rendering ----
  function renderKato() {
    const m = store.get('metrics');
    const st = store.status('metrics');
    katoChip.set(st);
    const down = !m || m.error;
    katoNotice.hidden = st.kind !== 'error' && st.kind !== 'unconfigured';
    setText(katoNotice, st.kind === 'error' ? `${st.label}: ${st.detail}` : st.detail);
    katoSection.classList.toggle('is-stale', st.kind === 'stale' || st.kind === 'error');
    const perf = (m && m.performance) || {};
    const rates = (m && m.rates) || {};
    const pm = (m && m.processor_manager) || {};
    const sess = (m && m.sessions) || {};
    const active = isNum(sess.active) ? sess.active : m && m.active_sessions;
    setText(k.sessions.value, fmtInt(active));
    setText(k.sessions.sub, isNum(sess.total_created) ? `${fmtInt(sess.total_created)} created in total` : '\u00a0');
    setText(k.requests.value, fmtInt(perf.total_requests));
    setText(k.requests.sub, isNum(perf.total_errors) ? `${fmtInt(perf.total_errors)} failed` : '\u00a0');
    setText(k.errors.value, fmtFraction(perf.error_rate));
    const over = isNum(perf.error_rate) && perf.error_rate > ERROR_RATE_THRESHOLD;
    k.errors.el.classList.toggle('bad', over);
    setText(k.errors.sub, `${over ? 'Above the' : 'Threshold'} ${fmtFraction(ERROR_RATE_THRESHOLD, { trim: true })}${over ? ' threshold' : ''}`);
    setText(k.rps.value, fmtFixed(rates.requests_per_second, 1));
    setText(k.rps.sub, isNum(rates.requests_per_minute) ? `${fmtInt(rates.requests_per_minute)} per minute` : '\u00a0');
    setText(k.latency.value, fmtSeconds(perf.average_response_time));
    setText(k.latency.sub, m && !m.error ? 'mean per request' : '\u00a0');
    setText(k.procs.value, isNum(pm.total_processors) ? fmtInt(pm.total_processors) : DASH);
    setText(k.procs.sub, isNum(pm.max_processors) ? `of ${fmtInt(pm.max_processors)} max` : '\u00a0');
    for (const c of Object.values(k)) c.el.classList.toggle('muted-card', !!down);

    const kh = store.get('kato_health');
    if (kh && kh.status) {
      health.hidden = false;
      const s = kh.status === 'error' ? 'unreachable' : kh.status;
      health.dataset.status = s;
      health.textContent = `${s.charAt(0).toUpperCase()}${s.slice(1)}${isNum(kh.uptime_seconds) ? ` · up ${fmtDuration(kh.uptime_seconds)}` : ''}`;
      health.title = kh.error || (kh.issues && kh.issues.length ? kh.issues.join('; ') : 'KATO /health');
    } else {
      health.hidden = true;
    }
  }

  function renderHost() {
    const x = store.get('host');
    const st = store.status('host');
    hostChip.set(st);
    hostNotice.hidden = st.kind !== 'unconfigured';
    setText(hostNotice, st.detail);
    hostSection.classList.toggle('is-stale', st.kind === 'stale');
    setText(hostName, x && x.hostname ? x.hostname : '');
    const mem = (x && x.memory) || {};
    const load = (x && x.load) || {};
    setText(hc.cpu.value, fmtPct(x && x.cpu_percent));
    setText(hc.cpu.sub, x && isNum(x.cpu_count) ? `${x.cpu_count} CPU${x.cpu_count === 1 ? '' : 's'}` : '\u00a0');
    setText(hc.mem.value, fmtPct(mem.used_percent));
    setText(hc.mem.sub, isNum(mem.used_bytes) ? `${fmtBytes(mem.used_bytes)} of ${fmtBytes(mem.total_bytes)}` : '\u00a0');
    setText(hc.load.value, isNum(load['1m']) ? load['1m'].toFixed(2) : DASH);
    setText(hc.load.sub, isNum(load['5m']) ? `${load['5m'].toFixed(2)} · ${load['15m'].toFixed(2)} (5, 15 min)` : '\u00a0');
    setText(hc.uptime.value, fmtDuration(x && x.uptime_seconds));
    setText(hc.uptime.sub, x ? 'since the host booted' : '\u00a0');
  }

  let lastCtKey = null;
  function renderContainers() {
    const c = store.get('containers');
    const st = store.status('containers');
    ctChip.set(st);
    ctSection.classList.toggle('is-stale', st.kind === 'stale');
    const agg = (c && c.aggregated) || {};
    const list = (c && Array.isArray(c.containers)) ? c.containers : [];
    if (!c || st.kind === 'error' || st.kind === 'unconfigured' || !list.length) {
      setText(ctSummary, '');
      const key = `empty:${st.kind}:${st.detail}`;
      if (key === lastCtKey) return;
      lastCtKey = key;
      let body;
      if (st.kind === 'error') body = emptyState('Docker unavailable', st.detail);
      else if (st.kind === 'unconfigured') body = emptyState('Container stats are off', 'Enable [plugin docker_stats] in katomon.conf to see the KATO containers here.');
      else if (!c) body = emptyState('Waiting for container stats…');
      else body = emptyState('No containers', 'Docker answers, but no watched container exists.');
      body.classList.add(st.kind === 'error' ? 'empty-error' : 'empty-plain');
      replace(ctBody, body);
      return;
    }
    lastCtKey = null;
    setText(ctSummary, `${fmtInt(agg.container_count ?? list.length)} containers · CPU ${fmtPct(agg.total_cpu_percent)} · memory ${fmtMb(agg.total_memory_mb)} of ${fmtMb(agg.total_memory_limit_mb)} (${fmtPct(agg.total_memory_percent)})`);
    const sum = (f) => list.reduce((s, x) => s + (isNum(get(x, f)) ? get(x, f) : 0), 0);
    const table = h('table', { class: 'data-table' },
      h('caption', { class: 'sr-only' }, 'Containers and their resource use'),
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, 'Name'),
        h('th', { scope: 'col' }, 'Status'),
        h('th', { scope: 'col', class: 'num' }, 'CPU'),
        h('th', { scope: 'col', class: 'num' }, 'Memory'),
        h('th', { scope: 'col', class: 'num' }, 'Mem %'),
        h('th', { scope: 'col', class: 'num' }, 'Net rx / tx'),
        h('th', { scope: 'col', class: 'num' }, 'Block I/O r / w'),
        h('th', { scope: 'col', class: 'num' }, 'PIDs'))),
      h('tbody', null, list.map((x) => {
        const mem = x.memory || {};
        const net = x.network || {};
        const io = x.block_io || {};
        const status = String(x.status || 'unknown');
        const healthTxt = x.health ? ` (${x.health})` : '';
        const running = status === 'running';
        const bad = !running || x.health === 'unhealthy';
        const live = (text) => (running ? text : DASH); // a stopped container has no figures
        return h('tr', { dataset: { name: x.name || '' }, class: bad ? 'row-bad' : '' },
          h('th', { scope: 'row', class: 'name' }, x.name || DASH, x.id ? h('span', { class: 'cid' }, x.id) : null),
          h('td', { title: x.error || null }, h('span', { class: `status-dot st-${bad ? 'bad' : x.health === 'starting' ? 'warn' : 'ok'}` }), status + healthTxt),
          h('td', { class: 'num' }, live(fmtPct(x.cpu))),
          h('td', { class: 'num' }, live(`${fmtBytes(mem.usage_bytes)} / ${fmtBytes(mem.limit_bytes)}`)),
          h('td', { class: 'num' }, running ? meter(mem.usage_percent) : DASH),
          h('td', { class: 'num' }, live(`${fmtBytes(net.rx_bytes)} / ${fmtBytes(net.tx_bytes)}`)),
          h('td', { class: 'num' }, live(`${fmtBytes(io.read_bytes)} / ${fmtBytes(io.write_bytes)}`)),
          h('td', { class: 'num' }, live(fmtInt(x.pids))));
      })),
      h('tfoot', null, h('tr', null,
        h('th', { scope: 'row' }, 'Total'),
        h('td', null, `${list.filter((x) => x.status === 'running').length} of ${list.length} running`),
        h('td', { class: 'num' }, fmtPct(agg.total_cpu_percent)),
        h('td', { class: 'num' }, `${fmtMb(agg.total_memory_mb)} / ${fmtMb(agg.total_memory_limit_mb)}`),
        h('td', { class: 'num' }, meter(agg.total_memory_percent)),
        h('td', { class: 'num' }, `${fmtBytes(sum('network.rx_bytes'))} / ${fmtBytes(sum('network.tx_bytes'))}`),
        h('td', { class: 'num' }, `${fmtBytes(sum('block_io.read_bytes'))} / ${fmtBytes(sum('block_io.write_bytes'))}`),
        h('td', { class: 'num' }, fmtInt(sum('pids'))))));
    replace(ctBody, table);
  }

  let frame = 0;
  const dirty = new Set();
  function onChange(e) {
    dirty.add(e.detail.topic);
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      const all = dirty.has('*');
      if (all || dirty.has('metrics') || dirty.has('kato_health')) renderKato();
      if (all || dirty.has('host')) renderHost();
      if (all || dirty.has('containers')) renderContainers();
      if (all || dirty.has('metrics') || dirty.has('host') || dirty.has('containers')) charts.forEach((c) => c.update());
      dirty.clear();
    });
  }
  store.addEventListener('change', onChange);
  // staleness is a matter of time passing, not of new data
  const tick = setInterval(() => onChange({ detail: { topic: '*' } }), 5000);
  renderKato();
  renderHost();
  renderContainers();

  return {
    el,
    unmount() {
      release();
      clearInterval(tick);
      cancelAnimationFrame(frame);
      store.removeEventListener('change', onChange);
      charts.forEach((c) => c.destroy());
    },
  };
}

function fmtMb(mb) {
  return isNum(mb) ? fmtBytes(mb * 1024 * 1024) : DASH;
}

function meter(p) {
  if (!isNum(p)) return DASH;
  const level = p >= 95 ? 'bad' : p >= 85 ? 'warn' : 'ok';
  return h('span', { class: 'meter-cell' },
    h('span', { class: `meter meter-${level}`, 'aria-hidden': 'true' }, h('span', { style: `width:${Math.min(100, Math.max(0, p)).toFixed(1)}%` })),
    fmtPct(p));
}

