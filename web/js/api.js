// api.js - REST calls to katomon (/api/v1) and the /ws URL.
//
// Same origin by default. When katomon runs with [http] auth_token, the
// token is taken from ?token=... in the page URL (then kept in
// localStorage) and sent as "Authorization: Bearer" on REST and as
// ?token= on /ws (browsers cannot set headers on a WebSocket).

const TOKEN_KEY = 'katomon.token';

function readToken() {
  const q = new URLSearchParams(location.search);
  const t = q.get('token');
  try {
    if (t) localStorage.setItem(TOKEN_KEY, t);
    return t || localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return t || '';
  }
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

export class Api {
  // Paths are resolved against the dashboard's root (where js/ lives), so
  // katomon can sit behind a reverse proxy under a prefix
  // (https://host/katomon/ -> https://host/katomon/api/v1/...).
  constructor(base = new URL('..', import.meta.url)) {
    this.base = new URL('.', base);
    this.token = readToken();
  }

  url(path) {
    return new URL(path.replace(/^\//, ''), this.base);
  }

  setToken(t) {
    this.token = t || '';
    try {
      if (t) localStorage.setItem(TOKEN_KEY, t);
      else localStorage.removeItem(TOKEN_KEY);
    } catch { /* private mode */ }
  }

  wsUrl() {
    const u = this.url('/ws');
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    if (this.token) u.searchParams.set('token', this.token);
    return u.href;
  }

  async request(method, path, body, { timeout = 8000 } = {}) {
    const headers = { Accept: 'application/json' };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeout);
    let res;
    try {
      res = await fetch(this.url(path), {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        signal: ctl.signal, cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, e.name === 'AbortError' ? 'katomon did not answer in time' : 'katomon is unreachable');
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    try { data = await res.json(); } catch { /* empty or not JSON */ }
    if (!res.ok) throw new ApiError(res.status, (data && data.detail) || `HTTP ${res.status}`);
    return data;
  }

  get(path, opts) { return this.request('GET', path, undefined, opts); }
  post(path, body) { return this.request('POST', path, body); }
  del(path) { return this.request('DELETE', path); }
}
