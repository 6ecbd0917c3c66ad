// format.js - number, size, duration and time formatting for the dashboard.

const nf = (opts) => new Intl.NumberFormat(undefined, opts);
const INT = nf({ maximumFractionDigits: 0 });

export const DASH = '—';

export const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

export function fmtInt(v) {
  return isNum(v) ? INT.format(Math.round(v)) : DASH;
}

/** 1.5, 12.3, 1,234 - fewer decimals as numbers grow. */
const UPTO1 = nf({ maximumFractionDigits: 1 });
const UPTO2 = nf({ maximumFractionDigits: 2 });
export function fmtNum(v) {
  if (!isNum(v)) return DASH;
  const a = Math.abs(v);
  if (a >= 1000) return INT.format(v);
  if (a >= 100) return UPTO1.format(v);
  return UPTO2.format(v);
}

/** A fixed number of decimals (steady width for live values). */
export function fmtFixed(v, digits = 1) {
  if (!isNum(v)) return DASH;
  return nf({ minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v);
}

/** A percentage given in percent (12.5 -> "12.5 %"). */
export function fmtPct(v, digits = 1) {
  if (!isNum(v)) return DASH;
  return `${v.toFixed(digits)} %`;
}

/** A fraction as a percentage (0.0523 -> "5.23 %"). */
export function fmtFraction(v, { trim = false } = {}) {
  if (!isNum(v)) return DASH;
  const p = v * 100;
  let s = p < 10 ? p.toFixed(2) : p.toFixed(1);
  if (trim) s = s.replace(/\.?0+$/, '');
  return `${s} %`;
}

/** A short form of a session id: "session-3f2a9c1e-..." -> "3f2a9c1e". */
export function shortId(id) {
  if (typeof id !== 'string') return '';
  const rest = id.replace(/^(session|sess)[-_:]/i, '');
  return rest.length > 10 ? rest.slice(0, 8) : rest;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
export function fmtBytes(v) {
  if (!isNum(v)) return DASH;
  let i = 0;
  let n = Math.abs(v);
  while (n >= 1024 && i < UNITS.length - 1) { n /= 1024; i++; }
  const s = i === 0 ? String(Math.round(n)) : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
  return `${v < 0 ? '-' : ''}${s} ${UNITS[i]}`;
}

/** Seconds as "350 ms" / "1.25 s". */
export function fmtSeconds(v) {
  if (!isNum(v)) return DASH;
  if (v < 1) return `${(v * 1000).toFixed(v < 0.01 ? 1 : 0)} ms`;
  return `${v.toFixed(2)} s`;
}

/** Long durations: "3 d 4 h", "2 h 5 min", "42 s". */
export function fmtDuration(sec) {
  if (!isNum(sec)) return DASH;
  sec = Math.max(0, Math.floor(sec));
  const d = Math.floor(sec / 86400), hh = Math.floor((sec % 86400) / 3600);
  const m = Math.floor((sec % 3600) / 60), s = sec % 60;
  if (d) return `${d} d ${hh} h`;
  if (hh) return `${hh} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

/** Parses an ISO 8601 string or epoch seconds; returns ms or NaN. */
export function parseTime(t) {
  if (isNum(t)) return t > 1e12 ? t : t * 1000;
  if (typeof t !== 'string') return NaN;
  return Date.parse(t);
}

/** "just now", "12 s ago", "5 min ago", "3 h ago", "2 d ago", then a date. */
export function relTime(t, now = Date.now()) {
  const ms = parseTime(t);
  if (!Number.isFinite(ms)) return DASH;
  const s = Math.round((now - ms) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  if (s < 7 * 86400) return `${Math.floor(s / 86400)} d ago`;
  return new Date(ms).toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
}

export function absTime(t) {
  const ms = parseTime(t);
  return Number.isFinite(ms) ? new Date(ms).toLocaleString() : '';
}

export function clockTime(t) {
  const ms = parseTime(t);
  return Number.isFinite(ms)
    ? new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })
    : DASH;
}

/** Reads a dotted path ("performance.error_rate") from an object. */
export function get(obj, path) {
  let v = obj;
  for (const k of path.split('.')) {
    if (v == null || typeof v !== 'object') return undefined;
    v = v[k];
  }
  return v;
}
