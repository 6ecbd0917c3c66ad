// pages/overview.js - KATO cards, host cards, charts (history, then live)
// with the time range picker, containers table with CPU sparklines.
// Subscribes to metrics, containers, host and kato_health.

import { h, replace, setText } from '../dom.js';
import {
  DASH, fmtBytes, fmtDuration, fmtFixed, fmtFraction, fmtInt, fmtNum, fmtPct, fmtSeconds, isNum,
} from '../format.js';
import { LiveChart } from '../charts.js';
import { pageRangePicker } from '../history.js';
import { Sparklines } from '../sparklines.js';
import { containersTable, fmtMb } from '../containers.js';
import { card, emptyState, hostTag, pageHost, sourceChip } from '../ui.js';

export const TOPICS = ['metrics', 'containers', 'host', 'kato_health'];
export const ERROR_RATE_THRESHOLD = 0.05; // the original dashboard's warning level

const pct = (v, axis) => (axis ? `${v} %` : fmtPct(v));

function section(id, title, chip, ...content) {
  return h('section', { class: 'section', id, 'aria-labelledby': `${id}-h` },
    h('div', { class: 'section-head' }, h('h2', { id: `${id}-h` }, title), chip ? chip.el : null),
    ...content);
}

export function mount(ctx) {
  const { conn, store, api, range, fleet } = ctx;
  const release = conn.claim('overview', TOPICS);
  const hostLine = pageHost(fleet); // which host this page shows, in a fleet
  const picker = pageRangePicker(ctx); // before the charts: ?range= decides their first request

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
  const hist = { store, api, range };
  const charts = [
    new LiveChart({
      ...hist, id: 'chart-cpu', title: 'CPU', format: pct, yMax: 100,
      series: [
        { key: 'cpu.kato', label: 'KATO', color: '--s1' },
        { key: 'cpu.host', label: 'Host', color: '--s2' },
        { key: 'cpu.containers', label: 'Containers', color: '--s3' },
      ],
    }),
    new LiveChart({
      ...hist, id: 'chart-memory', title: 'Memory', format: pct, yMax: 100,
      series: [
        { key: 'mem.kato', label: 'KATO', color: '--s1' },
        { key: 'mem.host', label: 'Host', color: '--s2' },
        { key: 'mem.containers', label: 'Containers', color: '--s3' },
      ],
    }),
    new LiveChart({
      ...hist, id: 'chart-rps', title: 'Requests per second', format: (v) => fmtNum(v),
      series: [{ key: 'rps', label: 'Requests / s', color: '--s1' }],
    }),
    new LiveChart({
      ...hist, id: 'chart-errors', title: 'Error rate', format: (v, axis) => (axis ? `${v} %` : fmtFraction(v / 100)), yMax: 10,
      series: [{ key: 'errors', label: 'Error rate', color: '--s4' }],
      threshold: { value: ERROR_RATE_THRESHOLD * 100, label: 'Threshold' },
    }),
  ];
  const chartSection = section('charts', 'Charts', null, h('div', { class: 'charts' }, charts.map((c) => c.el)));
  chartSection.querySelector('h2').append(h('span', { class: 'section-note' }, 'katomon\'s history, then live'));
  chartSection.querySelector('.section-head').append(picker.el);

  // ---- containers ----
  const ctChip = sourceChip();
  const ctSummary = h('p', { class: 'section-summary' });
  const ctBody = h('div', { class: 'table-wrap' });
  const ctSection = section('containers', 'Containers', ctChip, ctSummary, ctBody);
  const ctHost = h('span', { class: 'section-note ct-host' }); // "on beta", in a fleet
  ctSection.querySelector('h2').append(ctHost);
  const sparks = new Sparklines({ api, store, range });
  sparks.addEventListener('change', () => onChange({ detail: { topic: 'sparklines' } }));

  const el = h('section', { class: 'page page-overview' },
    h('header', { class: 'page-head' },
      h('h1', { tabindex: '-1' }, 'Overview'),
      h('p', { class: 'page-sub' }, 'The KATO service, the host and its containers, live.'),
      hostLine.el),
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
    const hostLabel = fleet.multi ? fleet.label(fleet.picked) : '';
    if (ctHost.dataset.host !== hostLabel) {
      ctHost.dataset.host = hostLabel;
      ctHost.replaceChildren(...(hostLabel ? ['on ', hostTag(hostLabel, { local: !fleet.picked })] : []));
      lastCtKey = null;
    }
    ctSection.classList.toggle('is-stale', st.kind === 'stale');
    const agg = (c && c.aggregated) || {};
    const list = (c && Array.isArray(c.containers)) ? c.containers : [];
    if (!c || st.kind === 'error' || st.kind === 'unconfigured' || !list.length) {
      setText(ctSummary, '');
      const key = `empty:${st.kind}:${st.detail}:${hostLabel}`;
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
    const table = containersTable(list, agg, sparks, hostLabel);
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
      if (dirty.has('containers')) sparks.follow();
      if (all || dirty.has('containers') || dirty.has('sparklines')) renderContainers();
      if (all || dirty.has('metrics') || dirty.has('host') || dirty.has('containers')) charts.forEach((c) => c.update());
      dirty.clear();
    });
  }
  store.addEventListener('change', onChange);
  // the fleet growing past one host labels the containers with their host
  const onHosts = () => {
    if ((fleet.multi ? fleet.label(fleet.picked) : '') !== (ctHost.dataset.host || '')) onChange({ detail: { topic: 'sparklines' } });
  };
  fleet.addEventListener('hosts', onHosts);
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
      sparks.destroy();
      picker.destroy();
      hostLine.destroy();
      fleet.removeEventListener('hosts', onHosts);
    },
  };
}
