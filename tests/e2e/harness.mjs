// harness.mjs - processes and browser for the end-to-end tests: the KATO
// simulator (tests/sim/kato_sim.py), a real katomon built from this tree,
// and Debian's chromium driven by playwright-core. Nothing is mocked.
//
// Environment (run.sh sets it): KATOMON, KM_PLUGIN_DIR, KM_WEB_ROOT,
// TOP_SRCDIR, CHROMIUM, PLAYWRIGHT_CORE (path of the package),
// E2E_SCREENSHOTS, E2E_TMP, E2E_DOCKER, E2E_CONTAINERS (the names of the
// containers run.sh started for this run), E2E_DOCKER_ERROR (why it could
// not).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';

export const env = {
  katomon: process.env.KATOMON,
  pluginDir: process.env.KM_PLUGIN_DIR,
  webRoot: process.env.KM_WEB_ROOT,
  srcdir: process.env.TOP_SRCDIR,
  chromium: process.env.CHROMIUM || '/usr/bin/chromium',
  screenshots: process.env.E2E_SCREENSHOTS,
  tmp: process.env.E2E_TMP || fs.mkdtempSync(path.join(os.tmpdir(), 'katomon-e2e-')),
};

for (const [k, v] of Object.entries({ KATOMON: env.katomon, KM_PLUGIN_DIR: env.pluginDir, KM_WEB_ROOT: env.webRoot, TOP_SRCDIR: env.srcdir })) {
  if (!v) throw new Error(`${k} is not set: run the tests with tests/e2e/run.sh`);
}

export async function loadPlaywright() {
  const where = process.env.PLAYWRIGHT_CORE;
  const mod = where ? await import(pathToFileURL(path.join(where, 'index.mjs')).href) : await import('playwright-core');
  return mod.chromium || mod.default.chromium;
}

/** Polls fn until it returns a truthy value; throws with `what` after timeout. */
export async function until(fn, what, timeout = 10000, step = 100) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    await sleep(step);
  }
}

async function json(url, opts = {}) {
  const r = await fetch(url, {
    method: opts.method || 'GET',
    headers: opts.body ? { 'Content-Type': 'application/json' } : {},
    body: opts.body ? JSON.stringify(opts.body) : undefined,
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${opts.method || 'GET'} ${url}: HTTP ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

function collect(child, sink) {
  let buf = '';
  const on = (d) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      sink.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  };
  child.stdout.on('data', on);
  child.stderr.on('data', on);
}

function stopChild(child, timeout = 5000) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) { resolve(); return; }
    const t = setTimeout(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } }, timeout);
    child.once('exit', () => { clearTimeout(t); resolve(); });
    child.kill('SIGTERM');
  });
}

// ---- the KATO simulator ------------------------------------------------------

let sims = 0; // simulators started by this process: each its own port file

export async function startSim() {
  const portFile = path.join(env.tmp, `sim-${process.pid}-${++sims}.port`);
  fs.rmSync(portFile, { force: true });
  const child = spawn('python3', [path.join(env.srcdir, 'tests/sim/kato_sim.py'), '--port', '0', '--port-file', portFile, '--sessions', '3'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  collect(child, log);
  const port = await until(() => fs.existsSync(portFile) && Number(fs.readFileSync(portFile, 'utf8').trim()), 'the simulator port file', 15000);
  const url = `http://127.0.0.1:${port}`;
  return {
    url, port, log, child,
    set: (values) => json(`${url}/_sim/set`, { method: 'POST', body: values }),
    createSessions: (count) => json(`${url}/_sim/sessions/create`, { method: 'POST', body: { count } }),
    destroySessions: (count) => json(`${url}/_sim/sessions/destroy`, { method: 'POST', body: { count } }),
    state: () => json(`${url}/_sim/state`),
    mode: (mode, paths) => json(`${url}/_sim/mode`, { method: 'POST', body: paths ? { mode, paths } : { mode } }),
    metrics: () => json(`${url}/metrics`),
    stop: () => stopChild(child),
  };
}

// ---- Redis (the fleet) -------------------------------------------------------

/** A free loopback TCP port (the kernel's pick; closed again before use). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** One RESP command on a fresh connection; resolves to the first reply line. */
function redisCmd(port, ...args) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = '';
    const done = (f, v) => { sock.destroy(); f(v); };
    sock.setTimeout(2000, () => done(reject, new Error('redis: no answer')));
    sock.on('error', (e) => done(reject, e));
    sock.on('data', (d) => {
      buf += d.toString();
      const i = buf.indexOf('\r\n');
      if (i >= 0) done(resolve, buf.slice(0, i));
    });
    sock.on('connect', () => sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`));
  });
}

/** Where redis-server is, or null (setup.sh installs it as root). */
export function redisServerPath() {
  for (const p of ['/usr/bin/redis-server', '/usr/local/bin/redis-server', '/usr/sbin/redis-server']) {
    if (fs.existsSync(p)) return p;
  }
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null;
}

/**
 * A private redis-server on a free loopback port: no persistence, its own
 * directory, in the foreground; resolves once PING answers PONG.
 */
export async function startRedis() {
  const bin = redisServerPath();
  if (!bin) throw new Error('redis-server not found (tests/e2e/setup.sh installs it as root: apt-get install redis-server)');
  const dir = path.join(env.tmp, `redis-${process.pid}`);
  fs.mkdirSync(dir, { recursive: true });
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--daemonize', 'no', '--dir', dir, '--protected-mode', 'yes'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const log = [];
    collect(child, log);
    try {
      await until(async () => {
        if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}: ${log.slice(-5).join(' | ')}`);
        return (await redisCmd(port, 'PING')) === '+PONG';
      }, 'redis-server to answer PING', 10000);
    } catch (e) {
      await stopChild(child);
      if (attempt < 2 && /exited/.test(e.message)) continue; // the port was taken meanwhile
      throw e;
    }
    return {
      port, url: `redis://127.0.0.1:${port}/0`, log, child,
      cmd: (...args) => redisCmd(port, ...args),
      stop: () => stopChild(child),
    };
  }
}

// ---- Docker ------------------------------------------------------------------

/**
 * The containers of this run (run.sh starts kme2e-PID-web and kme2e-PID-db
 * and removes them at exit): {names, error, optedOut}. katomon watches
 * exactly these names, never by presence: under `make -j2 check`
 * tests/integration/docker.py starts, stops and removes its own kato and
 * kato-redis meanwhile, and their container_down alerts would land in these
 * pages (an unread count in the title, a toast).
 */
export const docker = {
  names: (process.env.E2E_CONTAINERS || '').split(',').filter(Boolean),
  error: process.env.E2E_DOCKER_ERROR || '',
  optedOut: process.env.E2E_DOCKER === '0',
};

/**
 * For a test that needs the containers: true when they run; skips the test
 * only when E2E_DOCKER=0 asked for that; else throws with why Docker could
 * not be set up (a failure, not a skip).
 */
export function needContainers(t) {
  if (docker.names.length) return true;
  if (docker.optedOut) {
    t.skip('E2E_DOCKER=0: containers left out on request');
    return false;
  }
  throw new Error(`no containers: ${docker.error || 'run.sh did not start them (run the tests with tests/e2e/run.sh)'}`);
}

// ---- katomon -------------------------------------------------------------

/**
 * fleet: {hostName, hostStale, redisUrl, prefix} makes this katomon one
 * host of a fleet bridged over Redis ([core] host_name and host_stale,
 * [plugin redis_bridge]).
 */
export function katomonConfig({ port = 0, simUrl, stateDir, websocket = true, containers = [], fleet = null }) {
  // Docker: this run's containers, else a label nothing carries, so that
  // no container of this machine raises container_down alerts in the tests.
  const watch = containers.length ? `containers = ${containers.join(',')}` : 'label = katomon.e2e';
  const core = fleet ? `host_name = ${fleet.hostName}\nhost_stale = ${fleet.hostStale || '15s'}\n` : '';
  const bridge = fleet ? `
[plugin redis_bridge]
url = ${fleet.redisUrl}
prefix = ${fleet.prefix || 'katomon'}
timeout = 1
reconnect_min = 0.2
reconnect_max = 2
` : '';
  return `; written by tests/e2e/harness.mjs
[core]
plugin_dir = ${env.pluginDir}
state_dir = ${stateDir}
log_level = info
${core}
[http]
bind = 127.0.0.1
port = ${port}
web_root = ${env.webRoot}

[websocket]
enabled = ${websocket}
update_interval = 1

[plugin host_stats]
interval = 1

[plugin kato_metrics]
url = ${simUrl}
interval = 1
timeout = 2

[plugin session_events]
url = ${simUrl}
retry = 1

[plugin docker_stats]
interval = 2
${watch}

[plugin alert_manager]

[alert high_error_rate]
topic = metrics
path = performance.error_rate
warning = 0.05
critical = 0.10
cooldown = 60
message = High error rate: {value_pct}%

[alert kato_cpu]
topic = metrics
path = resources.cpu_percent
warning = 90
cooldown = 60
message = KATO CPU usage: {value}%

[alert container_down]
topic = containers
path = containers[*]
match = status != running
level = error
name_field = name
cooldown = 60
message = Container '{name}' is {value}
${bridge}`;
}

/**
 * Whether this katomon build can be one host of a fleet: --check-config of
 * a fleet config ([core] host_name, host_stale, [plugin redis_bridge]).
 * {ok, why}: why is what --check-config printed when it refused.
 */
export function fleetSupport() {
  const dir = path.join(env.tmp, 'fleet-check');
  fs.mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'katomon.conf');
  fs.writeFileSync(conf, katomonConfig({
    simUrl: 'http://127.0.0.1:9', stateDir: path.join(dir, 'state'),
    fleet: { hostName: 'check', hostStale: '3s', redisUrl: 'redis://127.0.0.1:9/0' },
  }));
  const r = spawnSync(env.katomon, ['--check-config', '-c', conf], { encoding: 'utf8', timeout: 20000 });
  return { ok: r.status === 0, why: `${r.stdout || ''}${r.stderr || ''}`.trim() };
}

export async function startKatomon({ simUrl, port = 0, name = 'katomon', stateDir, websocket = true, containers = docker.names, fleet = null }) {
  const dir = path.join(env.tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  stateDir = stateDir || path.join(dir, 'state');
  const conf = path.join(dir, 'katomon.conf');
  fs.writeFileSync(conf, katomonConfig({ port, simUrl, stateDir, websocket, containers, fleet }));
  const child = spawn(env.katomon, ['-f', '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  collect(child, log);
  const m = await until(() => {
    if (child.exitCode !== null) throw new Error(`katomon exited with ${child.exitCode}:\n${log.join('\n')}`);
    for (const l of log) {
      const x = /listening on http:\/\/([\d.]+):(\d+)/.exec(l);
      if (x) return x;
    }
    return null;
  }, 'katomon to listen', 15000);
  const url = `http://${m[1]}:${m[2]}`;
  return {
    url, port: Number(m[2]), log, child, stateDir, conf,
    api: (p, opts) => json(`${url}${p}`, opts),
    stop: () => stopChild(child),
    kill: () => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) { resolve(); return; }
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    }),
  };
}

// ---- the browser -------------------------------------------------------------

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export async function launchBrowser() {
  const chromium = await loadPlaywright();
  // launch() gives every run a fresh temporary user-data-dir of its own
  return chromium.launch({ executablePath: env.chromium, headless: true, args: CHROMIUM_ARGS });
}

/**
 * A page that records what a person would call an error: console errors,
 * uncaught exceptions, failed requests. Returns {page, problems, context}.
 */
export async function openPage(browser, url, { colorScheme = 'light', viewport = { width: 1280, height: 800 } } = {}) {
  const context = await browser.newContext({ colorScheme, viewport, deviceScaleFactor: 1, reducedMotion: 'reduce' });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`exception: ${e.message}`));
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.url()}`); });
  page.on('requestfailed', (r) => {
    const why = r.failure() && r.failure().errorText;
    if (why !== 'net::ERR_ABORTED') problems.push(`request failed: ${r.url()} ${why}`); // ABORTED: left by a navigation
  });
  await page.goto(url);
  return { page, problems, context };
}

export async function screenshot(page, name, opts = {}) {
  if (!env.screenshots) return null;
  fs.mkdirSync(env.screenshots, { recursive: true });
  const vp = page.viewportSize();
  await page.mouse.move(vp.width - 2, vp.height - 2); // no hover effect in the picture
  const file = path.join(env.screenshots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: opts.fullPage !== false, animations: 'disabled', caret: 'hide' });
  return file;
}
