// containers.js - the overview's containers table: one row per container,
// a CPU sparkline (sparklines.js) per row, totals in the footer.
//
// On a phone the table would be cut at the right edge, so below 640 px the
// stylesheet lays each row out as a card of label/value pairs (the labels
// come from data-label). Display changes can strip a table's semantics in
// some browsers, hence the explicit ARIA table roles.

import { h } from './dom.js';
import { DASH, fmtBytes, fmtInt, fmtPct, get, isNum } from './format.js';

const COLUMNS = [
  { label: 'Status' },
  { label: 'CPU', num: true },
  { label: 'CPU trend', cls: 'spark-col' },
  { label: 'Memory', num: true },
  { label: 'Mem %', num: true },
  { label: 'Net rx / tx', num: true },
  { label: 'Block I/O r / w', num: true },
  { label: 'PIDs', num: true },
];

export function fmtMb(mb) {
  return isNum(mb) ? fmtBytes(mb * 1024 * 1024) : DASH;
}

export function meter(p) {
  if (!isNum(p)) return DASH;
  const level = p >= 95 ? 'bad' : p >= 85 ? 'warn' : 'ok';
  return h('span', { class: 'meter-cell' },
    h('span', { class: `meter meter-${level}`, 'aria-hidden': 'true' }, h('span', { style: `width:${Math.min(100, Math.max(0, p)).toFixed(1)}%` })),
    fmtPct(p));
}

/** A row: its header cell, then one cell per COLUMNS entry. */
function row(attrs, head, cells) {
  return h('tr', { role: 'row', ...attrs }, head,
    cells.map((c, i) => {
      const col = COLUMNS[i];
      const cls = [col.num ? 'num' : '', col.cls || ''].filter(Boolean).join(' ') || null;
      const { content, title } = c && typeof c === 'object' && 'content' in c ? c : { content: c };
      return h('td', { role: 'cell', class: cls, title: title || null, 'data-label': col.label }, content);
    }));
}

/**
 * The table for the containers topic's list and aggregate; sparks:
 * Sparklines; host: the host's name when the fleet has several (the
 * caption and each row say whose containers they are).
 */
export function containersTable(list, agg, sparks, host = '') {
  const sum = (f) => list.reduce((s, x) => s + (isNum(get(x, f)) ? get(x, f) : 0), 0);
  return h('table', { class: 'data-table containers-table', role: 'table', dataset: host ? { host } : {} },
    h('caption', { class: 'sr-only' }, host ? `Containers on host ${host} and their resource use` : 'Containers and their resource use'),
    h('thead', { role: 'rowgroup' }, h('tr', { role: 'row' },
      h('th', { scope: 'col', role: 'columnheader' }, 'Name'),
      COLUMNS.map((c) => h('th', { scope: 'col', role: 'columnheader', class: [c.num ? 'num' : '', c.cls || ''].filter(Boolean).join(' ') || null }, c.label)))),
    h('tbody', { role: 'rowgroup' }, list.map((x) => {
      const mem = x.memory || {};
      const net = x.network || {};
      const io = x.block_io || {};
      const status = String(x.status || 'unknown');
      const healthTxt = x.health ? ` (${x.health})` : '';
      const running = status === 'running';
      const bad = !running || x.health === 'unhealthy';
      const live = (text) => (running ? text : DASH); // a stopped container has no figures
      return row({ dataset: host ? { name: x.name || '', host } : { name: x.name || '' }, class: bad ? 'row-bad' : '' },
        h('th', { scope: 'row', role: 'rowheader', class: 'name' }, x.name || DASH, x.id ? h('span', { class: 'cid' }, x.id) : null),
        [
          { title: x.error, content: h('span', null, h('span', { class: `status-dot st-${bad ? 'bad' : x.health === 'starting' ? 'warn' : 'ok'}` }), status + healthTxt) },
          live(fmtPct(x.cpu)),
          sparks ? sparks.svg(x.name) : DASH,
          live(`${fmtBytes(mem.usage_bytes)} / ${fmtBytes(mem.limit_bytes)}`),
          running ? meter(mem.usage_percent) : DASH,
          live(`${fmtBytes(net.rx_bytes)} / ${fmtBytes(net.tx_bytes)}`),
          live(`${fmtBytes(io.read_bytes)} / ${fmtBytes(io.write_bytes)}`),
          live(fmtInt(x.pids)),
        ]);
    })),
    h('tfoot', { role: 'rowgroup' }, row({ class: 'total-row' },
      h('th', { scope: 'row', role: 'rowheader' }, 'Total'),
      [
        `${list.filter((x) => x.status === 'running').length} of ${list.length} running`,
        fmtPct(agg.total_cpu_percent),
        '',
        `${fmtMb(agg.total_memory_mb)} / ${fmtMb(agg.total_memory_limit_mb)}`,
        meter(agg.total_memory_percent),
        `${fmtBytes(sum('network.rx_bytes'))} / ${fmtBytes(sum('network.tx_bytes'))}`,
        `${fmtBytes(sum('block_io.read_bytes'))} / ${fmtBytes(sum('block_io.write_bytes'))}`,
        fmtInt(sum('pids')),
      ])));
}
