// ui.js - pieces shared by the pages and the layout: source chips, alert
// list items, alert filters, empty states.

import { h, icon } from './dom.js';
import { absTime, fmtFraction, fmtNum, fmtPct, isNum, relTime } from './format.js';
import { LEVELS } from './alerts.js';

/** "high_error_rate" -> "High error rate". */
const UPPER = new Set(['cpu', 'kato', 'io', 'id', 'http', 'api', 'ws']);
export function humanize(s) {
  if (!s) return '';
  const t = String(s).replace(/[_-]+/g, ' ').trim()
    .split(' ').map((w) => (UPPER.has(w.toLowerCase()) ? w.toUpperCase() : w)).join(' ');
  return t.charAt(0).toUpperCase() + t.slice(1);
}

export const LEVEL_LABEL = { error: 'Error', warning: 'Warning', info: 'Info' };

/** <time> that the layout's ticker keeps saying "12 s ago". */
export function relTimeEl(ts) {
  const el = h('time', { datetime: typeof ts === 'string' ? ts : new Date(ts).toISOString(), title: absTime(ts), dataset: { rel: '' } }, relTime(ts));
  return el;
}

/** The small status chip of a data source. */
export function sourceChip() {
  const label = h('span', { class: 'chip-label' });
  const el = h('span', { class: 'src-chip', role: 'status' }, h('span', { class: 'dot', 'aria-hidden': 'true' }), label);
  return {
    el,
    set(st) {
      el.dataset.kind = st.kind;
      label.textContent = st.label;
      el.title = st.detail || '';
    },
  };
}

/** The value of an alert, in the unit of its type. */
export function alertValue(a) {
  if (!isNum(a.value)) return null;
  const frac = /error_rate|ratio|fraction/.test(a.type || '');
  const pct = /cpu|memory|disk|percent/.test(a.type || '');
  const f = frac ? fmtFraction : pct ? (v) => fmtPct(v) : fmtNum;
  const ft = frac ? (v) => fmtFraction(v, { trim: true }) : pct ? (v) => `${fmtNum(v)} %` : fmtNum;
  const v = f(a.value);
  return isNum(a.threshold) ? `${v} · threshold ${ft(a.threshold)}` : v;
}

/** A small tag naming the host a list item belongs to (the fleet). */
export function hostTag(name, { local = false } = {}) {
  return h('span', { class: `tag host-tag${local ? ' host-local' : ''}`, title: local ? `Host ${name} (this katomon)` : `Host ${name}` },
    h('span', { class: 'sr-only' }, 'Host '), name);
}

/** One alert of the history (sidebar and alerts page); host: {name, local} to label it with. */
export function alertItem(a, { onRead, host } = {}) {
  const level = LEVELS.includes(a.level) ? a.level : 'info';
  const resolved = a.state === 'resolved';
  const value = alertValue(a);
  const unread = !a.read;
  const li = h('li', {
    class: `alert-item level-${level}${resolved ? ' resolved' : ''}${unread ? ' unread' : ''}`,
    dataset: { id: a.id, level, type: a.type || '', state: a.state || 'firing', ...(host ? { host: host.name } : {}) },
  },
  h('span', { class: 'alert-mark', 'aria-hidden': 'true' }, icon(resolved ? 'check' : level === 'info' ? 'info' : 'alert')),
  h('div', { class: 'alert-body' },
    h('p', { class: 'alert-msg' }, a.message || humanize(a.type)),
    h('p', { class: 'alert-meta' },
      host ? hostTag(host.name, host) : null,
      h('span', { class: `tag level-tag level-${level}` }, LEVEL_LABEL[level]),
      h('span', { class: `tag state-tag ${resolved ? 'state-resolved' : 'state-firing'}` }, resolved ? 'Resolved' : 'Firing'),
      h('span', { class: 'tag type-tag' }, humanize(a.type)),
      value ? h('span', { class: 'alert-value' }, value) : null,
      // re-sent while it held (katomon counts them on the one record)
      a.repeats > 0 ? h('span', { class: 'alert-repeats', title: a.last_seen ? `last sent ${a.last_seen}` : '' },
        `sent again ${a.repeats}\u00d7`) : null),
  ),
  h('div', { class: 'alert-side' },
    relTimeEl(a.timestamp),
    unread && onRead
      ? h('button', { class: 'mark-read', type: 'button', title: 'Mark as read', 'aria-label': `Mark "${a.message || a.type}" as read`, onclick: () => onRead(a) },
        h('span', { class: 'unread-dot', 'aria-hidden': 'true' }))
      : h('span', { class: 'sr-only' }, unread ? 'Unread' : 'Read')));
  return li;
}

/** Level / type (/ state) selects; onChange gets the new filter object. */
export function alertFilters(filter, types, onChange, { withState = false, idPrefix = 'f' } = {}) {
  const sel = (name, label, options) => {
    const id = `${idPrefix}-${name}`;
    const s = h('select', { id, name, onchange: () => onChange({ ...filter, [name]: s.value }) },
      options.map(([v, t]) => h('option', { value: v, selected: (filter[name] || '') === v }, t)));
    return h('div', { class: 'field' }, h('label', { for: id }, label), s);
  };
  return h('div', { class: 'filters', role: 'group', 'aria-label': 'Filter alerts' },
    sel('level', 'Level', [['', 'All levels'], ...LEVELS.map((l) => [l, LEVEL_LABEL[l]])]),
    sel('type', 'Type', [['', 'All types'], ...types.map((t) => [t, humanize(t)])]),
    withState ? sel('state', 'State', [['', 'All states'], ['firing', 'Firing'], ['resolved', 'Resolved']]) : null);
}

export function emptyState(title, text, action) {
  return h('div', { class: 'empty' },
    h('p', { class: 'empty-title' }, title),
    text ? h('p', { class: 'empty-text' }, text) : null,
    action || null);
}

/** A definition-list card: label, big value, small line under it. */
export function card(label, { key, wide } = {}) {
  const value = h('dd', { class: 'card-value' }, '—');
  const sub = h('dd', { class: 'card-sub' }, '\u00a0');
  const el = h('div', { class: `card${wide ? ' wide' : ''}`, dataset: { key: key || '' } }, h('dt', { class: 'card-label' }, label), value, sub);
  return { el, value, sub };
}

/**
 * The line under a page's title naming the host it shows, once the fleet
 * has more than one host (fleet.js). Follows the fleet; {el, destroy}.
 */
export function pageHost(fleet) {
  const el = h('p', { class: 'page-host', hidden: true });
  let shown = null;
  const render = () => {
    el.hidden = !fleet.multi;
    if (el.hidden) return;
    const local = !fleet.picked;
    const name = fleet.label(fleet.picked);
    const entry = fleet.entry(fleet.picked);
    const stale = !local && !!entry && entry.up === false;
    const key = `${name}|${local}|${stale}`;
    if (key === shown) return; // the hosts topic comes every second
    shown = key;
    el.dataset.host = name;
    el.replaceChildren('Host ', hostTag(name, { local }), local ? ' (this host)' : '',
      stale ? h('span', { class: 'tag stale-tag' }, 'stale: no data for a while') : '',
      ' · ', h('a', { href: 'fleet' }, 'every host'));
  };
  fleet.addEventListener('hosts', render);
  fleet.addEventListener('change', render);
  render();
  return {
    el,
    destroy() {
      fleet.removeEventListener('hosts', render);
      fleet.removeEventListener('change', render);
    },
  };
}
