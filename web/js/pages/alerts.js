// pages/alerts.js - the whole alert history kept by katomon: filters
// (level, type, state; kept in the URL so a filtered view can be linked),
// what is firing now, mark all read, clear all. Needs only system_alerts,
// which the layout already subscribes to. In a fleet: the picked host's
// alerts (alerts.js), each labelled with its host.

import { h, replace, setText } from '../dom.js';
import { fmtInt } from '../format.js';
import { LEVELS } from '../alerts.js';
import { alertFilters, alertItem, emptyState, hostTag, humanize, LEVEL_LABEL, pageHost } from '../ui.js';

export const TOPICS = ['system_alerts'];

export function mount({ conn, alerts, fleet, params, armClear, setQuery }) {
  const release = conn.claim('alerts-page', TOPICS);
  const hostLine = pageHost(fleet);
  // in a fleet every alert says whose it is
  const itemHost = () => (fleet.multi ? { name: fleet.label(alerts.host), local: !alerts.host } : null);
  let filter = {
    level: LEVELS.includes(params.get('level')) ? params.get('level') : '',
    type: params.get('type') || '',
    state: ['firing', 'resolved'].includes(params.get('state')) ? params.get('state') : '',
  };

  const readAll = h('button', { class: 'btn', type: 'button', id: 'alerts-read-all', onclick: () => alerts.markAllRead() }, 'Mark all read');
  const clear = h('button', { class: 'btn btn-danger', type: 'button', id: 'alerts-clear' }, 'Clear all');
  armClear(clear);
  const summary = h('p', { class: 'section-summary', 'aria-live': 'polite' });
  const filters = h('div', { class: 'filters-wrap' });
  const activeBox = h('div', { class: 'active-strip' });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const remoteNote = h('p', { class: 'notice info-note remote-note', hidden: true });
  const body = h('div', { class: 'alert-history' });

  const el = h('section', { class: 'page page-alerts' },
    h('header', { class: 'page-head page-head-actions' },
      h('div', null,
        h('h1', { tabindex: '-1' }, 'Alerts'),
        h('p', { class: 'page-sub' }, 'Every alert katomon raised, newest first. The history is kept by katomon, so it survives reloads.'),
        hostLine.el),
      h('div', { class: 'actions' }, readAll, clear)),
    h('section', { class: 'section', 'aria-labelledby': 'active-h' },
      h('div', { class: 'section-head' }, h('h2', { id: 'active-h' }, 'Firing now')),
      activeBox),
    h('section', { class: 'section', 'aria-labelledby': 'hist-h' },
      h('div', { class: 'section-head section-head-wrap' }, h('h2', { id: 'hist-h' }, 'History'), filters),
      summary, remoteNote, error, body));

  function setFilter(f) {
    filter = f;
    setQuery(filter);
    render();
    const id = document.activeElement && document.activeElement.id;
    if (id) { const again = document.getElementById(id); if (again) again.focus(); }
  }

  let filtersKey = null;
  function render() {
    // rebuilt only when its options change, so an open select is left alone
    const key = JSON.stringify([filter, alerts.types()]);
    if (key !== filtersKey) {
      filtersKey = key;
      replace(filters, alertFilters(filter, alerts.types(), setFilter, { withState: true, idPrefix: 'alerts' }));
    }
    readAll.disabled = alerts.readOnly || alerts.unread === 0;
    clear.disabled = alerts.readOnly || alerts.list.length === 0;
    remoteNote.hidden = !alerts.readOnly;
    setText(remoteNote, alerts.readOnly
      ? `These are ${alerts.host}'s alerts as this katomon received them. They are marked read and cleared on ${alerts.host}'s own dashboard.`
      : '');
    error.hidden = !alerts.error;
    setText(error, alerts.error || '');

    const active = alerts.active || [];
    const ih = itemHost();
    replace(activeBox, active.length
      ? h('ul', { class: 'active-list', 'aria-label': 'Alerts firing now' }, active.map((a) => h('li', { class: `active-chip level-${a.level}` },
        h('span', { class: 'dot', 'aria-hidden': 'true' }),
        ih ? hostTag(ih.name, ih) : null,
        h('span', null, humanize(a.type)),
        a.key && a.key !== a.type ? h('span', { class: 'muted' }, a.key.replace(`${a.type}_`, '')) : null,
        h('span', { class: 'sr-only' }, `, ${LEVEL_LABEL[a.level] || a.level}`))))
      : h('p', { class: 'muted ok-line' }, alerts.loaded ? 'Nothing is firing. All watched values are within their thresholds.' : 'Loading…'));

    const list = alerts.filtered(filter);
    const filtered = filter.level || filter.type || filter.state;
    setText(summary, alerts.loaded
      ? `${filtered ? `${fmtInt(list.length)} of ` : ''}${fmtInt(alerts.list.length)} alert${alerts.list.length === 1 ? '' : 's'}${alerts.readOnly ? '' : ` · ${fmtInt(alerts.unread)} unread`}`
      : '');
    let content;
    if (!alerts.available && !alerts.list.length) content = emptyState('Alert history unavailable', 'katomon keeps no alert history (is the alert_manager plugin loaded in katomon.conf?). New alerts still appear here as they come.');
    else if (!alerts.loaded) content = emptyState(alerts.error ? 'Could not load the alert history' : 'Loading alerts…', alerts.error);
    else if (!alerts.list.length) content = emptyState('No alerts yet', 'katomon raises an alert when a rule of katomon.conf fires: high CPU, high memory, a high error rate, a container down. They appear here and as notifications.');
    else if (!list.length) {
      content = emptyState('No alerts match these filters', null,
        h('button', { class: 'btn', type: 'button', onclick: () => setFilter({ level: '', type: '', state: '' }) }, 'Reset filters'));
    } else {
      content = h('ul', { class: 'alert-list', 'aria-label': 'Alert history' },
        list.map((a) => alertItem(a, { onRead: alerts.readOnly ? null : (x) => alerts.markRead([x.id]), host: ih })));
    }
    replace(body, content);
  }

  alerts.addEventListener('change', render);
  let multi = fleet.multi;
  const onHosts = () => { if (fleet.multi !== multi) { multi = fleet.multi; render(); } };
  fleet.addEventListener('hosts', onHosts);
  render();
  alerts.load({ quiet: true });
  alerts.loadActive();

  return {
    el,
    unmount() {
      release();
      hostLine.destroy();
      fleet.removeEventListener('hosts', onHosts);
      alerts.removeEventListener('change', render);
    },
  };
}
