// fleet.test.mjs - the dashboard's fleet (issue 15) in a real browser: a
// private redis-server on a free loopback port, two KATO simulators and two
// katomons, "alpha" and "beta", each with its collectors on its own
// simulator and the redis_bridge plugin on that Redis. The browser talks to
// alpha only: beta's data reaches it through Redis. Run with
// tests/e2e/run.sh (after dashboard.test.mjs).
//
// The tests run in order and share the processes: the last one kills beta.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  docker, env, fleetSupport, launchBrowser, openPage, screenshot, startKatomon, startRedis, startSim, until,
} from './harness.mjs';

const HOST_STALE_S = 3; // [core] host_stale of both: a killed host is stale after this
const PREFIX = `kme2e${process.pid}`; // channels of this run only
// each simulator says something the other does not, so a page shows whose data it is
const ALPHA_RPS = 11.5;
const BETA_RPS = 22.5;

let redis;
let simA;
let simB;
let alpha;
let beta;
let browser;
let support;
const opened = [];

async function open(url, opts = {}) {
  const o = await openPage(browser, url, opts);
  opened.push(o);
  return o;
}

async function realtime(page, timeout = 10000) {
  await page.locator('#conn-status[data-state="realtime"]').waitFor({ timeout });
}

async function cardValue(page, key) {
  return (await page.locator(`.card[data-key="${key}"] .card-value`).textContent()).trim();
}

/** The Fleet page's row of a host. */
const row = (page, host) => page.locator(`#fleet-table tbody tr[data-host="${host}"]`);

/** What a row's firing cell shows: its level tags ("1 warning", ...), or ['None']. */
const firingShown = async (page, host) => {
  const cell = row(page, host).locator('.firing-cell');
  const tags = await cell.locator('.level-tag').allTextContents();
  return tags.length ? tags : [(await cell.textContent()).trim()];
};

/**
 * What it should show: alpha's alerts_firing topic for that host (REST,
 * ?host=), by level. Alerts of their own may fire on either host (a
 * source_down when Docker is not there): the page must agree with katomon.
 */
async function firingWanted(host) {
  const body = await alpha.api(`/api/v1/topics/alerts_firing/latest?host=${host}`);
  const n = { error: 0, warning: 0, info: 0 };
  for (const a of body.alerts) if (a.firing > 0) n[a.level in n ? a.level : 'info'] += a.firing;
  const tags = [['error', 'error', 'errors'], ['warning', 'warning', 'warnings'], ['info', 'info', 'info']]
    .filter(([l]) => n[l] > 0).map(([l, one, many]) => `${n[l]} ${n[l] === 1 ? one : many}`);
  return { tags: tags.length ? tags : ['None'], body };
}

/** Waits until the row of a host shows what katomon says is firing there (and `extra` holds). */
async function firingAgrees(page, host, what, extra = () => true, timeout = 15000) {
  let last;
  await until(async () => {
    const want = await firingWanted(host);
    const shown = await firingShown(page, host);
    last = { want: want.tags, shown };
    return JSON.stringify(want.tags) === JSON.stringify(shown) && extra(want.body);
  }, what, timeout).catch((e) => { throw new Error(`${e.message}: ${JSON.stringify(last)}`); });
}

/** Alerts of a type firing in an alerts_firing body. */
const firingOf = (body, type) => body.alerts.filter((a) => a.type === type).reduce((s, a) => s + a.firing, 0);

function logs() {
  const tail = (n, p) => (p ? `\n--- ${n} ---\n${p.log.slice(-30).join('\n')}` : '');
  return `${tail('alpha', alpha)}${tail('beta', beta)}${tail('redis', redis)}`;
}

// A fleet needs the daemon's side (issue 15: [core] host_name, the hosts
// topic, the bridge's subscribing half). A build whose --check-config
// refuses the fleet config is not a fleet build yet: skipped with what it
// said; anything else that goes wrong fails.
support = fleetSupport();
const skip = support.ok ? false : `this katomon refuses a fleet config: ${support.why.split('\n').slice(0, 3).join(' / ')}`;

describe('the fleet: two katomons bridged over Redis', { concurrency: false, skip }, () => {
  before(async () => {
    redis = await startRedis();
    [simA, simB] = await Promise.all([startSim(), startSim()]);
    await simA.set({ requests_per_second: ALPHA_RPS, error_rate: 0.01, cpu_percent: 20 });
    await simB.set({ requests_per_second: BETA_RPS, error_rate: 0.01, cpu_percent: 30 });
    // with Docker, each host watches one of this run's two containers
    const [ca, cb] = docker.names.length ? [[docker.names[0]], [docker.names[1]]] : [[], []];
    const fleet = (hostName) => ({ hostName, hostStale: `${HOST_STALE_S}s`, redisUrl: redis.url, prefix: PREFIX });
    alpha = await startKatomon({ simUrl: simA.url, name: 'fleet-alpha', containers: ca, fleet: fleet('alpha') });
    beta = await startKatomon({ simUrl: simB.url, name: 'fleet-beta', containers: cb, fleet: fleet('beta') });
    browser = await launchBrowser();
    // alpha knows beta through Redis before any page is opened
    await until(async () => {
      const h = await alpha.api('/api/v1/hosts');
      return h.hosts.some((x) => x.name === 'beta' && x.up === true);
    }, 'alpha to list beta as up in /api/v1/hosts', 20000);
  });

  after(async () => {
    for (const o of opened) await o.context.close().catch(() => {});
    if (browser) await browser.close().catch(() => {});
    for (const p of [beta, alpha, simA, simB, redis]) if (p) await p.stop().catch(() => {});
    if (process.env.E2E_KEEP_TMP !== '1') fs.rmSync(env.tmp, { recursive: true, force: true });
  });

  it('lists both hosts on the Fleet page, up, with their CPU, memory, containers and alerts', { timeout: 40000 }, async () => {
    const { page, problems } = await open(`${alpha.url}/fleet`);
    await realtime(page);
    assert.equal(await page.locator('h1').textContent(), 'Fleet');
    assert.equal(await page.locator('nav a[aria-current="page"]').textContent(), 'Fleet');
    await row(page, 'alpha').waitFor();
    await row(page, 'beta').waitFor();
    assert.equal(await page.locator('#fleet-table tbody tr').count(), 2);
    // this host first, marked as such
    assert.equal(await page.locator('#fleet-table tbody tr').first().getAttribute('data-host'), 'alpha');
    assert.equal(await row(page, 'alpha').getAttribute('data-local'), 'true');
    assert.match(await row(page, 'alpha').locator('th').textContent(), /this host/);
    for (const host of ['alpha', 'beta']) {
      const r = row(page, host);
      await until(async () => (await r.getAttribute('data-status')) === 'up', `${host} up`);
      assert.match(await r.locator('.status-text').textContent(), /^Up$/);
      // CPU and memory from that host's host topic
      await until(async () => /\d+\.\d %/.test(await r.locator('.cpu-cell').textContent()), `${host}: CPU`);
      await until(async () => /\d+\.\d %/.test(await r.locator('.mem-cell').textContent()), `${host}: memory`);
      // firing alerts from its alerts_firing topic, by level, as katomon counts them
      await firingAgrees(page, host, `${host}: the firing alerts katomon counts`);
      if (docker.names.length) {
        await until(async () => (await r.locator('.ct-cell').textContent()).trim() === '1 / 1 running', `${host}: 1 / 1 containers running`);
      }
    }
    assert.match(await row(page, 'beta').locator('.seen-cell').textContent(), /just now|\d+ s ago/);
    assert.match(await page.locator('#fleet-summary').textContent(), /^2 hosts · 2 up$/);
    assert.equal(await page.locator('#fleet-summary').getAttribute('aria-live'), 'polite');
    // accessible table: column headers and a row header per host
    assert.equal(await page.locator('#fleet-table thead th[scope="col"]').count(), 7);
    assert.equal(await page.locator('#fleet-table tbody th[scope="row"]').count(), 2);
    // an alert firing on beta is counted on beta's row, by level, not on alpha's
    await simB.set({ error_rate: 0.07 });
    await firingAgrees(page, 'beta', 'beta: high_error_rate firing, on the page', (b) => firingOf(b, 'high_error_rate') === 1);
    assert.ok((await firingShown(page, 'beta')).some((t) => /^\d+ warnings?$/.test(t)), 'a warning on beta');
    await firingAgrees(page, 'alpha', 'alpha: no high_error_rate', (b) => firingOf(b, 'high_error_rate') === 0);
    await screenshot(page, 'fleet');
    await simB.set({ error_rate: 0.01 });
    await firingAgrees(page, 'beta', 'beta: high_error_rate resolved', (b) => firingOf(b, 'high_error_rate') === 0);
    assert.deepEqual(problems, [], problems.join('\n'));
  });

  it('shows the picked host on every page: the picker, the URL, the labels', { timeout: 60000 }, async () => {
    const { page, problems } = await open(`${alpha.url}/`);
    await realtime(page);
    const picker = page.locator('#host-picker');
    await page.locator('#host-pick').waitFor({ state: 'visible' });
    await until(async () => (await picker.locator('option').count()) === 2, 'two hosts in the picker');
    assert.deepEqual(await picker.locator('option').evaluateAll((o) => o.map((x) => [x.value, x.textContent])),
      [['', 'alpha (this host)'], ['beta', 'beta']]);
    assert.equal(await picker.inputValue(), '', 'this host by default');
    assert.equal(await page.locator('label[for="host-picker"]').textContent(), 'Host');
    // this host's data first
    await until(async () => (await cardValue(page, 'requests_per_second')) === String(ALPHA_RPS), `alpha's ${ALPHA_RPS} requests/s`);
    await page.locator('.page-host', { hasText: 'alpha' }).waitFor();

    // pick beta: its data, labelled, and the URL says so
    await picker.selectOption('beta');
    await until(async () => (await cardValue(page, 'requests_per_second')) === String(BETA_RPS), `beta's ${BETA_RPS} requests/s`, 10000);
    assert.equal(new URL(page.url()).searchParams.get('host'), 'beta');
    assert.equal(await page.evaluate(() => localStorage.getItem('katomon.host')), 'beta');
    await page.locator('.page-host[data-host="beta"]').waitFor();
    await page.locator('#containers .ct-host[data-host="beta"]').waitFor();
    if (docker.names.length) {
      // beta watches the second container of this run; alpha the first
      const r = page.locator(`#containers tbody tr[data-name="${docker.names[1]}"]`);
      await r.waitFor({ timeout: 10000 });
      assert.equal(await r.getAttribute('data-host'), 'beta');
      assert.equal(await page.locator(`#containers tbody tr[data-name="${docker.names[0]}"]`).count(), 0);
      assert.match(await page.locator('#containers caption').textContent(), /on host beta/);
    }
    // the charts ask for beta's series
    await until(async () => (await page.evaluate(() => performance.getEntriesByType('resource').map((e) => e.name)))
      .some((u) => u.includes('/api/v1/history?') && decodeURIComponent(u).includes('katomon_kato_cpu_percent{host="beta"}')),
    'a history request for beta\'s series');
    await screenshot(page, 'host-picker');

    // the pick holds across pages and a reload
    await page.locator('nav a[data-nav="sessions"]').click();
    await page.locator('body[data-page="sessions"]').waitFor();
    assert.equal(new URL(page.url()).searchParams.get('host'), 'beta');
    await page.reload();
    await realtime(page);
    assert.equal(await picker.inputValue(), 'beta');
    // beta's session events reach the page, not alpha's
    const { created: [idB] } = await simB.createSessions(1);
    const { created: [idA] } = await simA.createSessions(1);
    await page.locator(`.feed-item[data-session-id="${idB}"]`).waitFor({ timeout: 8000 });
    assert.equal(await page.locator(`.feed-item[data-session-id="${idA}"]`).count(), 0, 'alpha\'s session is not in beta\'s feed');

    // beta's alerts, labelled with beta
    await simB.set({ error_rate: 0.07 });
    await page.locator('nav a[data-nav="alerts"]').click();
    await page.locator('body[data-page="alerts"]').waitFor();
    const item = page.locator('.alert-history .alert-item[data-type="high_error_rate"][data-host="beta"]').first();
    await item.waitFor({ timeout: 15000 });
    assert.equal((await item.locator('.host-tag').textContent()).replace('Host ', ''), 'beta');
    // as many as katomon holds for beta (?host=beta)
    await until(async () => (await page.locator('.alert-history .alert-item').count())
      === (await alpha.api('/api/v1/alerts?host=beta&limit=500')).alerts.length, 'beta\'s alerts, all of them');
    // beta's read marks and clearing are beta's: read-only here, nothing unread
    await page.locator('.remote-note', { hasText: 'beta\'s own dashboard' }).waitFor();
    assert.ok(await page.locator('#alerts-read-all').isDisabled());
    assert.ok(await page.locator('#alerts-clear').isDisabled());
    assert.equal(await item.locator('.mark-read').count(), 0);
    assert.ok(await page.locator('#bell .badge').isHidden(), 'no unread badge for beta');
    await simB.set({ error_rate: 0.01 });

    // a link keeps the host: a new page opened with ?host=beta shows beta
    const other = await open(`${alpha.url}/?host=beta`);
    await realtime(other.page);
    await until(async () => (await cardValue(other.page, 'requests_per_second')) === String(BETA_RPS), 'beta from the link');

    // the Fleet page picks a host by a click on its name
    await page.locator('nav a[data-nav="fleet"]').click();
    await row(page, 'alpha').locator('a.host-link').click();
    await page.locator('body[data-page="overview"]').waitFor();
    await until(async () => (await cardValue(page, 'requests_per_second')) === String(ALPHA_RPS), 'alpha again after the click');
    assert.equal(await picker.inputValue(), '');
    assert.equal(new URL(page.url()).searchParams.get('host'), null, 'this host needs no ?host=');
    assert.deepEqual(problems, [], problems.join('\n'));
  });

  it('marks a host that stopped stale within host_stale', { timeout: 60000 }, async () => {
    const { page, problems } = await open(`${alpha.url}/fleet`);
    await realtime(page);
    await until(async () => (await row(page, 'beta').getAttribute('data-status')) === 'up', 'beta up');
    const t0 = Date.now();
    await beta.kill();
    // stale once its last message is older than host_stale: allow one
    // hosts publish (1 s), one update interval (1 s) and a busy machine
    await until(async () => (await row(page, 'beta').getAttribute('data-status')) === 'stale', 'beta stale', (HOST_STALE_S + 10) * 1000, 100);
    const took = (Date.now() - t0) / 1000;
    // not before: its last message came at most ~1 s before the kill (1 s intervals)
    assert.ok(took >= HOST_STALE_S - 1.5, `stale after ${took} s, host_stale is ${HOST_STALE_S} s`);
    const r = row(page, 'beta');
    assert.equal(await r.locator('.status-text').textContent(), 'Stale');
    assert.match(await r.locator('.status-detail').textContent(), /no data for \d+ s/);
    assert.ok(await r.evaluate((el) => el.classList.contains('row-stale')));
    // still listed, this host still up
    assert.equal(await row(page, 'alpha').getAttribute('data-status'), 'up');
    await until(async () => /^2 hosts · 1 up · 1 stale$/.test(await page.locator('#fleet-summary').textContent()), 'the summary says 1 stale');
    // the picker says so too
    await until(async () => (await page.locator('#host-picker option[value="beta"]').textContent()) === 'beta (stale)', 'beta (stale) in the picker');
    await screenshot(page, 'fleet-stale');
    assert.deepEqual(problems, [], problems.join('\n'));
  });
});

process.on('exit', (code) => {
  if (code !== 0) process.stderr.write(logs());
});
