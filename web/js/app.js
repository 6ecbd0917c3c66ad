// app.js - the katomon dashboard: layout (status, host picker, bell, alert
// sidebar, toasts, connection banner) and the client-side router.
//
// Routes live in the URL fragment (#/, #/sessions, #/alerts?level=error),
// so any deep link works whatever serves the files.

import { Api } from './api.js';
import { Connection } from './conn.js';
import { Store } from './store.js';
import { Fleet, hostName } from './fleet.js';
import { AlertStore } from './alerts.js';
import { Toaster } from './toasts.js';
import { TimeRange } from './history.js';
import { h, replace, setText } from './dom.js';
import { relTime } from './format.js';
import { alertFilters, alertItem, emptyState, humanize, LEVEL_LABEL } from './ui.js';
import * as overview from './pages/overview.js';
import * as sessions from './pages/sessions.js';
import * as alertsPage from './pages/alerts.js';
import * as fleetPage from './pages/fleet.js';

const ROUTES = {
  '': { page: overview, title: 'Overview', nav: 'overview' },
  sessions: { page: sessions, title: 'Sessions', nav: 'sessions' },
  alerts: { page: alertsPage, title: 'Alerts', nav: 'alerts' },
  fleet: { page: fleetPage, title: 'Fleet', nav: 'fleet' },
};

const STATUS_LABEL = { connecting: 'Connecting', realtime: 'Real-time', offline: 'Offline', error: 'Error' };

const api = new Api();
const conn = new Connection(api, { historyTopics: ['session_events'] });
const fleet = new Fleet(conn);
const store = new Store(conn, fleet);
const alerts = new AlertStore(api, conn, fleet);
const range = new TimeRange(); // the charts' time range, one for every page
const $ = (id) => document.getElementById(id);

// ---- toasts ------------------------------------------------------------------

const toaster = new Toaster($('toasts'), { onOpen: () => openDrawer() });

alerts.addEventListener('new', (e) => {
  const { alerts: list, replayed } = e.detail;
  for (const a of list.slice(-3)) {
    const resolved = a.state === 'resolved';
    toaster.show({
      kind: 'alert',
      level: resolved ? 'success' : a.level === 'error' ? 'error' : a.level === 'warning' ? 'warning' : 'info',
      title: a.message || humanize(a.type),
      body: `${fleet.multi ? `${fleet.label(alerts.host)} · ` : ''}${replayed ? 'While you were offline · ' : ''}${resolved ? 'Resolved' : LEVEL_LABEL[a.level] || 'Alert'} · ${humanize(a.type)}`,
      timeout: 10000,
    });
  }
});

// ---- connection status and banner -----------------------------------------

const statusEl = $('conn-status');
const banner = $('banner');
const bannerText = banner.querySelector('.banner-text');
const retryBtn = banner.querySelector('button');
retryBtn.addEventListener('click', () => conn.retryNow());

let lastPoll = null;
conn.addEventListener('poll', (e) => { lastPoll = e.detail; renderStatus(); });
conn.addEventListener('status', () => renderStatus());

function renderStatus() {
  const st = conn.state;
  statusEl.dataset.state = st;
  setText(statusEl.querySelector('.conn-label'), STATUS_LABEL[st]);
  statusEl.title = conn.detail;
  document.body.dataset.conn = st;
  const down = st === 'offline' || st === 'error';
  banner.hidden = !down;
  if (!down) return;
  const secs = conn.nextRetryAt ? Math.max(0, Math.ceil((conn.nextRetryAt - Date.now()) / 1000)) : null;
  const retry = conn.ws ? 'Reconnecting…' : secs !== null ? `Retrying in ${secs} s.` : '';
  let poll;
  if (!lastPoll) poll = 'Falling back to HTTP polling every 5 s.';
  else if (lastPoll.ok) poll = 'Showing data polled over HTTP every 5 s.';
  else poll = `HTTP fallback failing too (${lastPoll.error}).`;
  banner.dataset.poll = lastPoll ? (lastPoll.ok ? 'ok' : 'failing') : 'pending';
  setText(bannerText, `${conn.detail}. ${poll} ${retry}`);
  retryBtn.hidden = !!conn.ws;
}
setInterval(() => { if (conn.state !== 'realtime') renderStatus(); }, 1000);

// ---- the alert bell and sidebar ---------------------------------------------

const bell = $('bell');
const badge = bell.querySelector('.badge');
const drawer = $('alert-drawer');
const drawerList = $('drawer-list');
const drawerFilters = $('drawer-filters');
const drawerCount = $('drawer-count');
const drawerError = $('drawer-error');
let drawerFilter = { level: '', type: '' };

function renderBadge() {
  const n = alerts.unread;
  badge.hidden = n <= 0;
  setText(badge, n > 9 ? '9+' : String(n));
  bell.setAttribute('aria-label', n > 0 ? `Alerts, ${n} unread` : 'Alerts, none unread');
  document.title = `${n > 0 ? `(${n > 99 ? '99+' : n}) ` : ''}${currentTitle} · katomon`;
}

let drawerFiltersKey = null;
function renderDrawer() {
  if (!drawer.open) return;
  const key = JSON.stringify([drawerFilter, alerts.types()]);
  if (key !== drawerFiltersKey) {
    // rebuilt only when its options change, so an open select is left alone
    drawerFiltersKey = key;
    const focused = document.activeElement && document.activeElement.id;
    replace(drawerFilters, alertFilters(drawerFilter, alerts.types(), (f) => {
      drawerFilter = f;
      renderDrawer();
    }, { idPrefix: 'drawer' }));
    const again = focused && document.getElementById(focused);
    if (again && drawerFilters.contains(again)) again.focus();
  }
  const list = alerts.filtered(drawerFilter);
  setText(drawerCount, alerts.readOnly ? `${alerts.host}'s alerts (read and cleared on ${alerts.host})`
    : alerts.unread ? `${alerts.unread} unread` : 'All read');
  drawerError.hidden = !alerts.error;
  setText(drawerError, alerts.error || '');
  let body;
  if (!alerts.available && !alerts.list.length) body = emptyState('Alert history unavailable', 'katomon keeps no alert history (is the alert_manager plugin loaded?). New alerts still appear here as they come.');
  else if (!alerts.loaded) body = emptyState('Loading alerts…');
  else if (!alerts.list.length) body = emptyState('No alerts', 'katomon has not raised any alert. New ones appear here and as notifications.');
  else if (!list.length) {
    body = emptyState('No alerts match these filters', null,
      h('button', { class: 'btn', type: 'button', onclick: () => { drawerFilter = { level: '', type: '' }; renderDrawer(); } }, 'Reset filters'));
  } else {
    body = h('ul', { class: 'alert-list compact', 'aria-label': 'Alert history' },
      list.slice(0, 100).map((a) => alertItem(a, {
        onRead: alerts.readOnly ? null : (x) => alerts.markRead([x.id]),
        host: fleet.multi ? { name: fleet.label(alerts.host), local: !alerts.host } : null,
      })));
  }
  replace(drawerList, body);
  $('drawer-read-all').disabled = alerts.readOnly || alerts.unread === 0;
  $('drawer-clear').disabled = alerts.readOnly || alerts.list.length === 0;
}

function openDrawer() {
  if (drawer.open) return;
  drawer.showModal();
  bell.setAttribute('aria-expanded', 'true');
  renderDrawer();
  alerts.load({ quiet: true });
}

function closeDrawer() {
  drawer.close();
}

drawer.addEventListener('close', () => {
  bell.setAttribute('aria-expanded', 'false');
  resetClear($('drawer-clear'));
});
drawer.addEventListener('click', (e) => { if (e.target === drawer) closeDrawer(); });
bell.addEventListener('click', () => (drawer.open ? closeDrawer() : openDrawer()));
$('drawer-close').addEventListener('click', closeDrawer);
$('drawer-read-all').addEventListener('click', () => alerts.markAllRead());
$('drawer-full').addEventListener('click', () => closeDrawer());
armClear($('drawer-clear'));

/** Clear all asks once more before it deletes the history. */
export function armClear(btn) {
  const label = btn.textContent;
  btn.dataset.label = label;
  btn.addEventListener('click', () => {
    if (btn.dataset.confirm === '1') {
      resetClear(btn);
      alerts.clearAll();
      return;
    }
    btn.dataset.confirm = '1';
    btn.textContent = 'Click again to clear';
    btn.classList.add('danger-armed');
    clearTimeout(btn._t);
    btn._t = setTimeout(() => resetClear(btn), 4000);
  });
}
function resetClear(btn) {
  clearTimeout(btn._t);
  btn.dataset.confirm = '';
  btn.textContent = btn.dataset.label || 'Clear all';
  btn.classList.remove('danger-armed');
}

alerts.addEventListener('change', () => { renderBadge(); renderDrawer(); });

// ---- the host picker ----------------------------------------------------
//
// One host's data on every page (fleet.js): a select in the header, shown
// once katomon knows more than one host (or a remote host is picked, so
// there is a way back). Options: this host first, then the fleet; a stale
// host says so. The pick goes to localStorage and the URL (?host=B).

const picker = $('host-pick');
const pickerSel = $('host-picker');
let pickerKey = null;

function renderPicker() {
  const rows = fleet.list();
  if (fleet.picked && !rows.some((r) => !r.local && r.name === fleet.picked)) {
    rows.push({ name: fleet.picked, local: false, up: null, known: false, missing: true });
  }
  picker.hidden = rows.length < 2;
  document.body.dataset.fleet = rows.length > 1 ? 'multi' : 'single';
  const opts = rows.map((r) => {
    const value = r.local ? '' : r.name;
    let text = r.local ? `${r.name || 'This host'} (this host)` : r.name;
    if (r.missing) text += ' (not seen)';
    else if (!r.local && r.up === false) text += ' (stale)';
    return [value, text];
  });
  const key = JSON.stringify([opts, fleet.picked]);
  if (key === pickerKey) return;
  pickerKey = key;
  const focused = document.activeElement === pickerSel;
  replace(pickerSel, opts.map(([value, text]) => h('option', { value, selected: value === fleet.picked }, text)));
  pickerSel.value = fleet.picked;
  picker.dataset.picked = fleet.pickedName;
  if (focused) pickerSel.focus();
}

pickerSel.addEventListener('change', () => fleet.pick(pickerSel.value));
fleet.addEventListener('hosts', renderPicker);
fleet.addEventListener('change', () => {
  conn.setPicked(fleet.picked);
  renderPicker();
  route(); // every page shows the picked host: mount it anew
});
conn.pollHosts = () => (document.body.dataset.page === 'fleet'
  ? fleet.list().map((r) => (r.local ? '' : r.name))
  : [fleet.picked]);

// ---- relative times keep moving ------------------------------------------

setInterval(() => {
  const now = Date.now();
  for (const t of document.querySelectorAll('time[data-rel]')) setText(t, relTime(t.getAttribute('datetime'), now));
}, 5000);

// ---- router -------------------------------------------------------------
//
// Routes are paths under the dashboard's root (/, /sessions, /alerts?...),
// which katomon answers with index.html, so every deep link loads the app.
// The root is where this module lives, one level up (js/app.js), so the
// dashboard also works behind a reverse proxy under a prefix. Old-style
// fragment links (#/alerts) are rewritten to paths.

const ROOT = new URL('..', import.meta.url);
const main = $('main');
let current = null;
let currentTitle = 'Overview';
let firstRoute = true;

function parseLocation() {
  let rel = location.pathname.startsWith(ROOT.pathname) ? location.pathname.slice(ROOT.pathname.length) : location.pathname.replace(/^\//, '');
  rel = decodeURIComponent(rel).replace(/\/+$/, '');
  if (rel === 'index.html') rel = '';
  return { path: rel, params: new URLSearchParams(location.search) };
}

/** Goes to a route (a path relative to the root, with an optional query). */
function navigate(to, { replace: rep = false } = {}) {
  const url = new URL(to, ROOT);
  if (url.href === location.href) return;
  history[rep ? 'replaceState' : 'pushState'](null, '', url.href);
  route();
}

function route() {
  const { path, params } = parseLocation();
  // a link naming a host picks it (the change routes again)
  const urlHost = hostName(params.get('host'));
  if (urlHost && fleet.key(urlHost) !== fleet.picked) {
    fleet.pick(urlHost);
    return;
  }
  const r = ROUTES[path];
  if (current) {
    try { current.unmount(); } catch { /* page gone */ }
    current = null;
  }
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (r && a.dataset.nav === r.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const ctx = { api, conn, store, alerts, fleet, toaster, range, params, openDrawer, armClear, setQuery, navigate };
  if (!r) {
    currentTitle = 'Not found';
    replace(main, h('section', { class: 'page' },
      h('header', { class: 'page-head' }, h('h1', { tabindex: '-1' }, 'Page not found')),
      emptyState(`There is no page at /${path}.`, null, h('a', { class: 'btn', href: ROOT.href }, 'Go to the overview'))));
    current = { unmount() {} };
  } else {
    currentTitle = r.title;
    current = r.page.mount(ctx);
    replace(main, current.el);
  }
  document.body.dataset.page = r ? r.nav : 'notfound';
  // the URL names the picked host (none for this host), so a link keeps it
  if ((params.get('host') || '') !== fleet.picked) setQuery({ host: fleet.picked });
  renderBadge();
  if (!firstRoute) {
    const h1 = main.querySelector('h1');
    if (h1) h1.focus({ preventScroll: true });
    scrollTo(0, 0);
  }
  firstRoute = false;
}

/** Rewrites the query of the current route without re-rendering it. */
function setQuery(obj) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(obj)) {
    if (v) q.set(k, v);
    else q.delete(k);
  }
  const s = q.toString();
  history.replaceState(null, '', `${location.pathname}${s ? `?${s}` : ''}`);
}

// links inside the app change the route without reloading the page
document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest && e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(ROOT.pathname) || (url.hash && url.pathname === location.pathname)) return;
  const rel = url.pathname.slice(ROOT.pathname.length).replace(/\/+$/, '');
  if (!(rel in ROUTES) && rel !== 'index.html') return;
  e.preventDefault();
  navigate(url.href);
});

addEventListener('popstate', route);

// skip link: focus the content without touching the URL
$('skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

// old fragment routes: #/alerts?level=error -> alerts?level=error
if (location.hash.startsWith('#/')) {
  history.replaceState(null, '', new URL(location.hash.slice(2), ROOT).href);
}

// ---- start -----------------------------------------------------------------

conn.claim('layout', ['system_alerts', 'hosts']);
conn.setPicked(fleet.picked);
renderPicker();
route();
renderStatus();
renderBadge();
alerts.load();
conn.start();

// for the end-to-end tests and for debugging from the console
window.katomon = { api, conn, store, alerts, fleet, toaster, range, navigate, version: '1' };
