// pages/sessions.js - active sessions, a chart of the count, and a live
// feed of session_created / session_destroyed events (with toasts).
// Subscribes to sessions and session_events. The feed starts with the
// recent events katomon still holds (since 0), then goes on live; after a
// reconnect the events missed meanwhile are replayed into it. In a fleet
// it shows the picked host: its values, and its events only (the
// connection fills its history anew when another host is picked).

import { h, icon, replace, setText } from '../dom.js';
import { fmtInt, isNum, parseTime, shortId } from '../format.js';
import { LiveChart } from '../charts.js';
import { pageRangePicker } from '../history.js';
import { card, emptyState, pageHost, relTimeEl, sourceChip } from '../ui.js';

export const TOPICS = ['sessions', 'session_events'];
const FEED_MAX = 200;
const HOUR = 3600 * 1000;

export function mount(ctx) {
  const { conn, store, toaster, api, range, fleet } = ctx;
  const release = conn.claim('sessions', TOPICS);
  const host = fleet.picked; // the host this page shows ('' = this one)
  const hostLine = pageHost(fleet);
  const picker = pageRangePicker(ctx);
  const feed = []; // newest first: {kind: 'event'|'note', ...}

  const chip = sourceChip();
  const c = {
    active: card('Active sessions', { key: 'active_sessions' }),
    total: card('Created in total', { key: 'total_created' }),
    created: card('Created (1 h)', { key: 'created_hour' }),
    ended: card('Ended (1 h)', { key: 'ended_hour' }),
  };
  const notice = h('p', { class: 'notice', role: 'status', hidden: true });
  const chart = new LiveChart({
    store, api, range, id: 'chart-sessions', title: 'Active sessions', format: (v, axis) => (axis ? String(v) : fmtInt(v)),
    series: [{ key: 'sessions', label: 'Active', color: '--s1', stepped: true }],
  });
  const feedCount = h('span', { class: 'section-note' });
  const list = h('ol', { class: 'feed', 'aria-label': 'Session events, newest first' });
  const feedBody = h('div', { class: 'feed-wrap' });
  const live = h('p', { class: 'sr-only', 'aria-live': 'polite' });

  const el = h('section', { class: 'page page-sessions' },
    h('header', { class: 'page-head' },
      h('h1', { tabindex: '-1' }, 'Sessions'),
      h('p', { class: 'page-sub' }, 'KATO sessions as they are created and end.'),
      hostLine.el),
    h('section', { class: 'section', 'aria-labelledby': 'sess-h' },
      h('div', { class: 'section-head' }, h('h2', { id: 'sess-h' }, 'Now'), chip.el),
      notice,
      h('dl', { class: 'cards cards-4' }, Object.values(c).map((x) => x.el))),
    h('div', { class: 'split' },
      h('section', { class: 'section', 'aria-labelledby': 'feed-h' },
        h('div', { class: 'section-head' }, h('h2', { id: 'feed-h' }, 'Live feed', feedCount)),
        feedBody),
      h('section', { class: 'section', 'aria-labelledby': 'schart-h' },
        h('div', { class: 'section-head section-head-wrap' }, h('h2', { id: 'schart-h' }, 'Trend'), picker.el),
        h('div', { class: 'charts charts-1' }, chart.el))),
    live);

  function renderCards() {
    const s = store.get('sessions');
    const st = store.status('sessions');
    chip.set(st);
    notice.hidden = st.kind !== 'error' && st.kind !== 'unconfigured';
    setText(notice, st.kind === 'error' ? `${st.label}: ${st.detail}` : st.detail);
    setText(c.active.value, fmtInt(s && s.active_count));
    setText(c.active.sub, lastEventText());
    setText(c.total.value, s && isNum(s.total_count) && s.total_count > 0 ? fmtInt(s.total_count) : '—');
    setText(c.total.sub, 'reported by KATO');
    const since = Date.now() - HOUR;
    let created = 0, ended = 0;
    for (const f of feed) {
      if (f.kind !== 'event' || f.t < since) continue;
      const n = Math.abs(f.delta) || 1;
      if (f.created) created += n; else ended += n;
    }
    setText(c.created.value, fmtInt(created));
    setText(c.ended.value, fmtInt(ended));
    setText(c.created.sub, 'from the live feed');
    setText(c.ended.sub, 'from the live feed');
  }

  function lastEventText() {
    const last = feed.find((f) => f.kind === 'event');
    if (!last) return '\u00a0';
    return `last change ${relText(last.t)}`;
  }

  function renderFeed() {
    const events = feed.filter((f) => f.kind === 'event').length;
    setText(feedCount, events ? `${events} event${events === 1 ? '' : 's'}` : '');
    if (!feed.length) {
      replace(feedBody, emptyState('No session events yet', 'Events appear here as soon as KATO creates or ends a session.'));
      return;
    }
    if (!list.isConnected) replace(feedBody, list);
  }

  function itemFor(f) {
    if (f.kind === 'note') {
      return h('li', { class: 'feed-item feed-note', dataset: { kind: 'note' } },
        h('span', { class: 'feed-icon' }, icon('info')),
        h('div', { class: 'feed-body' }, h('p', { class: 'feed-title' }, f.text)),
        h('div', { class: 'feed-side' }, relTimeEl(f.t)));
    }
    const n = Math.abs(f.delta) || 1;
    const title = f.created
      ? (n > 1 ? `${n} sessions created` : 'Session created')
      : (n > 1 ? `${n} sessions ended` : 'Session ended');
    return h('li', {
      class: `feed-item ${f.created ? 'created' : 'destroyed'}${f.replayed ? ' replayed' : ''}`,
      dataset: { kind: f.created ? 'session_created' : 'session_destroyed', seq: f.seq ?? '', sessionId: f.id || '' },
    },
    h('span', { class: 'feed-icon' }, icon(f.created ? 'plus' : 'minus')),
    h('div', { class: 'feed-body' },
      h('p', { class: 'feed-title' }, title,
        f.id ? h('code', { class: 'sid', title: `Session ${f.id}` }, shortId(f.id)) : null),
      h('p', { class: 'feed-meta' },
        isNum(f.prev) && isNum(f.cur) ? `${fmtInt(f.prev)} → ${fmtInt(f.cur)} active` : '',
        f.reason && f.reason !== 'explicit_delete' ? ` · ${f.reason}` : '',
        f.replayed ? h('span', { class: 'tag replay-tag' }, 'missed while offline') : null)),
    h('div', { class: 'feed-side' }, relTimeEl(f.ts || f.t)));
  }

  function add(entry) {
    // keep the list in time order even when a replay interleaves with live events
    let i = 0;
    while (i < feed.length && (feed[i].t > entry.t || (feed[i].t === entry.t && (feed[i].seq ?? 0) > (entry.seq ?? 0)))) i++;
    feed.splice(i, 0, entry);
    const li = itemFor(entry);
    const before = list.children[i] || null;
    list.insertBefore(li, before);
    while (feed.length > FEED_MAX) {
      feed.pop();
      list.lastElementChild.remove();
    }
    renderFeed();
    renderCards();
  }

  function onEvent(e) {
    const { topic, msg, seq, replayed, history } = e.detail;
    if (topic !== 'session_events' || fleet.key(e.detail.host) !== host) return;
    const d = msg.data || {};
    const created = msg.event_type === 'session_created' || (msg.event_type !== 'session_destroyed' && d.delta > 0);
    const t = parseTime(msg.timestamp);
    const entry = {
      kind: 'event', created, seq, ts: msg.timestamp, t: Number.isFinite(t) ? t : Date.now(),
      cur: d.current_count, prev: d.previous_count, delta: d.delta, id: d.session_id, reason: d.reason,
      replayed: replayed && !history,
    };
    add(entry);
    if (history) return;
    const n = Math.abs(entry.delta) || 1;
    const what = created ? (n > 1 ? `${n} sessions created` : 'Session created') : (n > 1 ? `${n} sessions ended` : 'Session ended');
    const body = `${isNum(entry.cur) ? `${fmtInt(entry.cur)} active` : ''}${entry.id ? ` · ${shortId(entry.id)}` : ''}${entry.replayed ? ' · while you were offline' : ''}`;
    toaster.show({ kind: 'session', level: created ? 'success' : 'info', title: what, body, timeout: 5000 });
    setText(live, `${what}. ${body}`);
  }

  function onGap(e) {
    const { topic, missed, reason } = e.detail;
    if (topic !== 'session_events' || fleet.key(e.detail.host) !== host) return;
    const text = reason === 'restart'
      ? `${host ? `katomon on ${host}` : 'katomon'} restarted; showing the events of its new run`
      : `${missed} session event${missed === 1 ? '' : 's'} could not be replayed (older than katomon keeps)`;
    add({ kind: 'note', t: Date.now(), text });
  }

  let frame = 0;
  const onChange = (e) => {
    if (frame || !['sessions', '*'].includes(e.detail.topic)) return;
    frame = requestAnimationFrame(() => { frame = 0; renderCards(); chart.update(); });
  };
  conn.addEventListener('event', onEvent);
  conn.addEventListener('gap', onGap);
  store.addEventListener('change', onChange);
  const tick = setInterval(() => onChange({ detail: { topic: '*' } }), 5000);
  renderCards();
  renderFeed();

  return {
    el,
    unmount() {
      release();
      clearInterval(tick);
      cancelAnimationFrame(frame);
      conn.removeEventListener('event', onEvent);
      conn.removeEventListener('gap', onGap);
      store.removeEventListener('change', onChange);
      chart.destroy();
      picker.destroy();
      hostLine.destroy();
    },
  };
}

function relText(t) {
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}
