// pages/fleet.js - every host this katomon knows, one row each: status
// (up, or stale when its data stopped coming), last seen, CPU and memory
// (its host topic), containers (its containers topic: running of total)
// and what is firing (its alerts_firing topic, by level). The host's name
// is a link that picks it: every page then shows that host.
//
// The list is the core's `hosts` topic (README "Fleet"); hosts named only
// by their data (a katomon without the topic) are listed too, with an
// unknown status. Without a bridge the fleet is this host alone: one row,
// and a note saying how hosts join.

import { h, replace, setText } from '../dom.js';
import { DASH, fmtInt, fmtPct, isNum } from '../format.js';
import { meter } from '../containers.js';
import { emptyState, sourceChip } from '../ui.js';

export const TOPICS = ['hosts', 'host', 'containers', 'alerts_firing'];
const LEVELS = [['error', 'error', 'errors'], ['warning', 'warning', 'warnings'], ['info', 'info', 'info']];

/** "just now", "12 s ago", "5 min ago" from an age in seconds. */
export function ageText(s) {
  if (!isNum(s)) return DASH;
  if (s < 2) return 'just now';
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** Firing alerts of an alerts_firing body: {error, warning, info, total}, or null. */
export function firingCounts(body) {
  if (!body || !Array.isArray(body.alerts)) return null;
  const n = { error: 0, warning: 0, info: 0, total: 0 };
  for (const a of body.alerts) {
    if (!a || !isNum(a.firing) || a.firing <= 0) continue;
    const lvl = a.level in n && a.level !== 'total' ? a.level : 'info';
    n[lvl] += a.firing;
    n.total += a.firing;
  }
  return n;
}

/** Containers of a containers body: {running, total}, or null. */
export function containerCounts(body) {
  if (!body || body.error || !Array.isArray(body.containers)) return null;
  const running = body.containers.filter((c) => c && (c.status === 'running' || c.running === true)).length;
  return { running, total: body.containers.length };
}

export function mount({ conn, store, fleet, navigate }) {
  const release = conn.claim('fleet', TOPICS);
  const chip = sourceChip();
  const summary = h('p', { class: 'section-summary', id: 'fleet-summary', 'aria-live': 'polite' });
  const notice = h('p', { class: 'notice info-note', role: 'status', hidden: true });
  // explicit ARIA table roles: the phone layout displays the rows as
  // blocks, which strips a table's semantics in some browsers
  const col = (label, cls) => h('th', { scope: 'col', role: 'columnheader', class: cls || null }, label);
  const tbody = h('tbody', { role: 'rowgroup' });
  const table = h('table', { class: 'data-table fleet-table', id: 'fleet-table', role: 'table' },
    h('caption', { class: 'sr-only' }, 'Hosts of the fleet: status, last seen, CPU, memory, containers and firing alerts'),
    h('thead', { role: 'rowgroup' }, h('tr', { role: 'row' },
      col('Host'), col('Status'), col('Last seen'), col('CPU', 'num'), col('Memory', 'num'), col('Containers', 'num'), col('Firing alerts'))),
    tbody);
  const body = h('div', { class: 'table-wrap' }, table);

  const el = h('section', { class: 'page page-fleet' },
    h('header', { class: 'page-head' },
      h('h1', { tabindex: '-1' }, 'Fleet'),
      h('p', { class: 'page-sub' }, 'Every host this katomon receives data from. Pick one to see its data on every page.')),
    h('section', { class: 'section', id: 'fleet', 'aria-labelledby': 'fleet-h' },
      h('div', { class: 'section-head' }, h('h2', { id: 'fleet-h' }, 'Hosts'), chip.el),
      summary, notice, body));

  const rows = new Map(); // host key -> {tr, key}

  function hostLink(r) {
    const key = r.local ? '' : r.name;
    const name = r.local ? (r.name || 'This host') : r.name;
    // a link, so it can be opened in a new tab; the name in the URL picks the host
    const href = r.local && !r.name ? './' : `./?host=${encodeURIComponent(r.name)}`;
    return h('a', {
      href,
      class: 'host-link',
      'aria-label': `Show ${r.local ? `this host, ${name}` : `host ${name}`} on every page`,
      // this host before its name is known: the URL cannot name it
      onclick: href === './' ? (e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        fleet.pick(key);
        navigate('./');
      } : null,
    }, name);
  }

  function statusOf(r) {
    if (r.local) return { kind: 'up', text: 'Up', detail: 'this host' };
    if (r.up === true) return { kind: 'up', text: 'Up', detail: '' };
    if (r.up === false) return { kind: 'stale', text: 'Stale', detail: isNum(r.age_s) ? `no data for ${Math.round(r.age_s)} s` : 'no data' };
    return { kind: 'unknown', text: 'Unknown', detail: 'not in the hosts topic' };
  }

  function cells(r) {
    const key = r.local ? '' : r.name;
    const st = statusOf(r);
    const hs = store.get('host', key);
    const cpu = hs && !hs.error ? hs.cpu_percent : null;
    const mem = hs && !hs.error && hs.memory ? hs.memory.used_percent : null;
    const cc = containerCounts(store.get('containers', key));
    const fc = firingCounts(store.get('alerts_firing', key));
    const seen = r.local ? (r.last_seen ? ageText(r.age_s) : 'now') : ageText(r.age_s);
    return { key, st, cpu, mem, cc, fc, seen, name: r.name, local: r.local, picked: key === fleet.picked, lastSeen: r.last_seen || '' };
  }

  function renderRow(c, r) {
    const firing = !c.fc ? DASH : c.fc.total === 0
      ? h('span', { class: 'muted' }, 'None')
      : h('span', { class: 'firing' }, LEVELS.filter(([l]) => c.fc[l] > 0).map(([l, one, many]) => h('span', { class: `tag level-tag level-${l}` }, `${fmtInt(c.fc[l])} ${c.fc[l] === 1 ? one : many}`)));
    const td = (label, cls, ...content) => h('td', { role: 'cell', class: cls, 'data-label': label }, ...content);
    return h('tr', {
      role: 'row',
      class: `fleet-row row-${c.st.kind}${c.picked ? ' row-picked' : ''}`,
      dataset: { host: c.name || '', status: c.st.kind, local: c.local ? 'true' : 'false' },
      'aria-current': c.picked ? 'true' : null,
    },
    h('th', { scope: 'row', role: 'rowheader', class: 'name' },
      hostLink(r),
      c.local ? h('span', { class: 'tag host-local' }, 'this host') : null,
      c.picked ? h('span', { class: 'tag picked-tag' }, 'shown') : null),
    td('Status', 'status-cell', h('span', null,
      h('span', { class: `status-dot st-${c.st.kind === 'up' ? 'ok' : c.st.kind === 'stale' ? 'bad' : 'warn'}`, 'aria-hidden': 'true' }),
      h('span', { class: 'status-text' }, c.st.text),
      c.st.detail ? h('span', { class: 'status-detail muted' }, ` · ${c.st.detail}`) : null)),
    td('Last seen', 'seen-cell', c.lastSeen ? h('time', { datetime: c.lastSeen, title: c.lastSeen }, c.seen) : c.seen),
    td('CPU', 'num cpu-cell', isNum(c.cpu) ? meter(c.cpu) : DASH),
    td('Memory', 'num mem-cell', isNum(c.mem) ? meter(c.mem) : DASH),
    td('Containers', 'num ct-cell', c.cc ? `${fmtInt(c.cc.running)} / ${fmtInt(c.cc.total)} running` : DASH),
    td('Firing alerts', 'firing-cell', firing));
  }

  function render() {
    const list = fleet.list();
    const stale = list.filter((r) => !r.local && r.up === false).length;
    const up = list.filter((r) => r.local || r.up === true).length;
    const st = store.status('hosts', '');
    chip.set(fleet.info ? { kind: 'ok', label: 'Live', detail: 'The hosts topic' } : st);
    setText(summary, `${list.length} host${list.length === 1 ? '' : 's'} · ${up} up${stale ? ` · ${stale} stale` : ''}`);
    notice.hidden = list.length > 1;
    setText(notice, 'This katomon receives no other host\'s data. Hosts join the fleet through Redis: configure [plugin redis_bridge] on each of them (README "Fleet").');
    // rows are replaced only when what they show changed, and the
    // focused link keeps its focus
    const focusedHost = document.activeElement && document.activeElement.closest
      ? (document.activeElement.closest('tr[data-host]') || {}).dataset : null;
    const keep = new Set();
    let prev = null;
    for (const r of list) {
      const c = cells(r);
      const k = JSON.stringify(c);
      keep.add(c.key);
      let row = rows.get(c.key);
      if (!row || row.k !== k) {
        const tr = renderRow(c, r);
        if (row) row.tr.replaceWith(tr);
        rows.set(c.key, (row = { tr, k }));
        if (focusedHost && focusedHost.host === (c.name || '')) {
          const a = tr.querySelector('a');
          if (a) a.focus({ preventScroll: true });
        }
      }
      // keep the list's order
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== row.tr) tbody.insertBefore(row.tr, want);
      prev = row.tr;
    }
    for (const [key, row] of rows) {
      if (!keep.has(key)) { row.tr.remove(); rows.delete(key); }
    }
    if (!list.length) replace(body, emptyState('No hosts yet'));
  }

  let frame = 0;
  const schedule = () => {
    if (frame) return;
    frame = requestAnimationFrame(() => { frame = 0; render(); });
  };
  const onChange = (e) => { if (e.detail.topic === '*' || TOPICS.includes(e.detail.topic)) schedule(); };
  store.addEventListener('hostchange', onChange);
  fleet.addEventListener('hosts', schedule);
  fleet.addEventListener('change', schedule);
  const tick = setInterval(schedule, 1000); // ages move on
  render();

  return {
    el,
    unmount() {
      release();
      clearInterval(tick);
      cancelAnimationFrame(frame);
      store.removeEventListener('hostchange', onChange);
      fleet.removeEventListener('hosts', schedule);
      fleet.removeEventListener('change', schedule);
    },
  };
}
